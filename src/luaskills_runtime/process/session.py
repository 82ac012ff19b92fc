"""Managed interactive process sessions for Python hosts, without Lua (SPEC section 6).

``ProcessSession.open("cat")`` starts a child in its own process tree with piped stdin; its stdout
and stderr are drained in the background into bounded buffers that keep the newest
``buffer_limit_bytes`` each.  Options, result fields and error texts are those of the reference's
``vulcan.process.session`` (the Lua tables become dicts)::

    with ProcessSession.open("sh", ["-c", "read x; echo got $x"]) as session:
        session.write("hi\\n")
        session.read(timeout_ms=1000, until_text="got")["stdout"]   # 'got hi\\n'

Reads wake as soon as output arrives (no polling) and release the GIL while they wait.  The whole
tree is killed by ``close()`` / ``kill()``, by leaving the ``with`` block, when the last reference
is dropped, and at interpreter exit.
"""
from __future__ import annotations

import atexit
import logging
import math
import sys
import weakref
from typing import Any, Dict, Iterable, Optional, Union

from luaskills_runtime._native.process import ProcessCore
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime._ref.lua_args import lua_type_name, require_string
from luaskills_runtime._ref.rust import is_blank, rust_float
from luaskills_runtime.text import decode_text, default_mode, encode_text, normalize_encoding
from luaskills_runtime.types import ProcessStatus

__all__ = ["ProcessSession"]

_UTF8 = "must be valid UTF-8"   # this surface's wording (exec says "a valid UTF-8 string")

DEFAULT_READ_TIMEOUT_MS = 100
DEFAULT_CLOSE_TIMEOUT_MS = 1000
DEFAULT_MAX_READ_BYTES = 64 * 1024
DEFAULT_BUFFER_LIMIT_BYTES = 1024 * 1024

OPEN = "process.session.open"
WRITE = "process.session.write"
READ = "process.session.read"
STATUS = "process.session.status"
CLOSE = "process.session.close"
KILL = "process.session.kill"

LOGGER = logging.getLogger("luaskills_runtime.process")
_WINDOWS = sys.platform == "win32"
_U64_MAX = 2**64 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_UTF8_LIKE = ("utf-8",) if _WINDOWS else ("utf-8", "system", "oem")


def _positive(value: Any, fn: str, key: str, default: int) -> int:
    """A positive number option; like the reference, fractions truncate and huge values
    saturate (so 0.5 becomes 0)."""
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        if value > 0:
            return min(value, _U64_MAX)
    elif isinstance(value, float) and math.isfinite(value) and value > 0.0:
        return min(int(value), _U64_MAX)
    raise LuaSkillsError(f"{fn}: {key} must be a positive number, got {lua_type_name(value)}")


def _encoding(value: Any, fn: str, key: str):
    """An optional encoding label; None when absent.  A blank label is unsupported."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise LuaSkillsError(f"{fn}: {key} must be UTF-8") from None
    elif not isinstance(value, str):
        raise LuaSkillsError(f"{fn}: {key} must be a string, got {lua_type_name(value)}")
    if is_blank(value):
        raise LuaSkillsError(f"{fn}: unsupported text encoding `{value}`")
    try:
        return normalize_encoding(value)
    except LuaSkillsError as error:
        raise LuaSkillsError(f"{fn}: {error}") from None


def _session_text(value: Any) -> Union[str, bytes]:
    """One write value as text: strings, numbers and booleans, as the reference converts them
    (a number with an integral value that fits i64 is written as an integer)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise LuaSkillsError(f"{WRITE}: string must be valid UTF-8") from None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and _I64_MIN <= value <= _I64_MAX:
            return str(int(value))
        return rust_float(value)
    raise LuaSkillsError(f"{WRITE}: unsupported value {lua_type_name(value)}")


def _byte_marker(marker: str, mode) -> Optional[bytes]:
    """The marker as bytes when a byte search in the raw stream is equivalent to the reference's
    search in the decoded text; b"" when it can never match; None when only decoding can tell."""
    if mode in _UTF8_LIKE:
        # UTF-8 is self-synchronising, so a complete-character marker matches the bytes exactly
        # where it matches the text -- unless it contains U+FFFD, which lossy decoding produces.
        return None if "\ufffd" in marker else marker.encode("utf-8")
    if mode == "latin1":
        try:
            return marker.encode("latin-1")
        except UnicodeEncodeError:
            return b""   # latin1 text never holds a character above U+00FF
    return None


class ProcessSession(ProcessCore):
    """An interactive child process (see the module docstring).

    The native base class answers the common calls directly; the methods here carry the
    reference's validation, conversion and text-encoding rules for everything else."""

    __slots__ = ("_modes",)

    def __init__(
        self,
        program: Union[str, bytes],
        args: Iterable[Union[str, bytes]] = (),
        cwd: Optional[Union[str, bytes]] = None,
        encoding: Optional[str] = None,
        stdout_encoding: Optional[str] = None,
        stderr_encoding: Optional[str] = None,
        stdin_encoding: Optional[str] = None,
        buffer_limit_bytes: Optional[Union[int, float]] = DEFAULT_BUFFER_LIMIT_BYTES,
        *,
        default_encoding: Optional[str] = None,
    ) -> None:
        program = require_string(program, OPEN, "program", False, utf8_error=_UTF8)
        if args is None:
            args = ()
        elif not isinstance(args, (list, tuple)):
            raise LuaSkillsError(f"{OPEN}: args must be an array table, got {lua_type_name(args)}")
        arg_list = [require_string(a, OPEN, "args", True, utf8_error=_UTF8) for a in args]
        cwd = None if cwd is None else require_string(cwd, OPEN, "cwd", False, utf8_error=_UTF8)
        base = _encoding(encoding, OPEN, "encoding")
        if base is None:
            base = normalize_encoding(default_encoding) if default_encoding else default_mode()
        out_mode = _encoding(stdout_encoding, OPEN, "stdout_encoding") or base
        err_mode = _encoding(stderr_encoding, OPEN, "stderr_encoding") or base
        in_mode = _encoding(stdin_encoding, OPEN, "stdin_encoding") or base
        limit = _positive(buffer_limit_bytes, OPEN, "buffer_limit_bytes", DEFAULT_BUFFER_LIMIT_BYTES)
        modes = self._modes = (out_mode, err_mode, in_mode)
        self._set_text(out_mode in _UTF8_LIKE, err_mode in _UTF8_LIKE, in_mode in _UTF8_LIKE,
                       lambda data, index: decode_text(data, modes[index]))
        self._spawn(
            program.encode("utf-8"),
            [a.encode("utf-8") for a in arg_list],
            None if cwd is None else cwd.encode("utf-8"),
            min(max(limit, 1), sys.maxsize),   # like the reference, a 0.5 limit keeps 1 byte
        )
        _live.add(self)

    @classmethod
    def open(cls, program: str, args: Iterable[str] = (), *, cwd: Optional[str] = None,
             encoding: Optional[str] = None, stdout_encoding: Optional[str] = None,
             stderr_encoding: Optional[str] = None, stdin_encoding: Optional[str] = None,
             buffer_limit_bytes: Optional[int] = DEFAULT_BUFFER_LIMIT_BYTES,
             default_encoding: Optional[str] = None) -> "ProcessSession":
        """Start ``program`` with ``args`` (no shell) and return its session; the options are
        keyword-only (unknown ones raise TypeError)."""
        return cls(program, args, cwd, encoding, stdout_encoding, stderr_encoding,
                   stdin_encoding, buffer_limit_bytes, default_encoding=default_encoding)

    # write(*values) -> True is native; this is its general path.
    def _write_values(self, values) -> bool:
        mode = self._modes[2]
        chunks = []
        try:
            for value in values:
                text = _session_text(value)
                try:
                    chunks.append(encode_text(text, mode))
                except LuaSkillsError as error:
                    raise LuaSkillsError(f"{WRITE}: {error}") from None
        except LuaSkillsError:
            # The values before the bad one are written first, as the reference does; a
            # closed stdin is reported before anything else.
            self._write_bytes(b"".join(chunks), WRITE)
            raise
        return self._write_bytes(b"".join(chunks), WRITE)

    # read(timeout_ms=100, max_bytes=65536, until_text=None) -> dict is native; this is its
    # general path (other number types, validation errors, a new or a text-only marker).
    def _read_slow(self, timeout_ms, max_bytes, until_text) -> Dict[str, Any]:
        timeout = _positive(timeout_ms, READ, "timeout_ms", DEFAULT_READ_TIMEOUT_MS)
        limit = min(_positive(max_bytes, READ, "max_bytes", DEFAULT_MAX_READ_BYTES), sys.maxsize)
        if until_text is None:
            return self._read_text(timeout, limit)
        plan = self._marker_plan(until_text)
        if plan[0]:
            return self._read_text(timeout, limit, plan[1], plan[2], True)
        return self._drain_text(limit, self._wait_decoded_marker(plan[1], timeout))

    def _marker_plan(self, until_text) -> tuple:
        """``(True, stdout_marker, stderr_marker)`` for a byte search (None: that stream never
        matches), or ``(False, marker_text)`` when the buffered text must be decoded."""
        plans = self.marker_plans
        plan = plans.get(until_text) if type(until_text) is str else None
        if plan is not None:
            return plan
        marker = require_string(until_text, READ, "until_text", False, utf8_error=_UTF8)
        out_marker = _byte_marker(marker, self._modes[0])
        err_marker = _byte_marker(marker, self._modes[1])
        if out_marker is not None and err_marker is not None:
            plan = (True, out_marker or None, err_marker or None)
        else:
            plan = (False, marker)
        if type(until_text) is str:
            if len(plans) >= 32:
                plans.clear()
            plans[until_text] = plan
        return plan

    def _wait_decoded_marker(self, marker: str, timeout: int) -> bool:
        """The reference's marker check, for encodings where a byte search is not equivalent:
        decode everything buffered and search the text, again after each change.  Returns
        whether the timeout passed first."""
        deadline = self._deadline(timeout)
        out_mode, err_mode = self._modes[0], self._modes[1]
        while True:
            seq, held_out, held_err, eof_out, eof_err = self._streams()
            if held_out or held_err:
                if (marker in decode_text(self._peek(1), out_mode).text
                        or marker in decode_text(self._peek(2), err_mode).text):
                    return False
            if eof_out and eof_err:
                return False
            now = self._now_ms()
            if deadline >= 0 and now >= deadline:
                return True
            # in slices, so signals (Ctrl-C) are handled between them
            self._wait_change(seq, now + 50 if deadline < 0 else min(deadline, now + 50))

    # status() -> dict and kill() -> True are native.

    def close(self, timeout_ms: Optional[Union[int, float]] = DEFAULT_CLOSE_TIMEOUT_MS
              ) -> "ProcessStatus":
        """Close stdin, give the child up to ``timeout_ms`` to exit, then kill the whole tree and
        reap it; returns the final status.  Idempotent: later calls return the cached status.
        Output buffered before stays readable."""
        timeout = _positive(timeout_ms, CLOSE, "timeout_ms", DEFAULT_CLOSE_TIMEOUT_MS)
        return self._close(timeout, CLOSE)  # type: ignore[return-value]

    def __enter__(self) -> "ProcessSession":
        """Use as a context manager: the session is closed (tree killed) when the block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leaving the ``with`` block closes the session (the whole tree dies)."""
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.status()["running"] else "exited"
        return f"<ProcessSession pid={self.pid} {state}>"


# Sessions still alive at interpreter exit are killed with their trees (weak: a dropped session
# is torn down by its own finaliser at once).
_live: "weakref.WeakSet[ProcessSession]" = weakref.WeakSet()


@atexit.register
def _kill_live_sessions() -> None:
    for session in list(_live):
        try:
            session.kill()
        except Exception as error:  # teardown must reach every session
            LOGGER.debug("killing session pid %s at exit failed: %s", session.pid, error)
