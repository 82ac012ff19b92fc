"""Running one exec request on the native process core, and the Python API ``exec_command``.

How a run ends (SPEC 7 and beyond):

* The child starts in its own process group (Windows: Job Object) with stdout and stderr drained
  in the background, losslessly, and stdin written by a helper thread, so a child that never
  reads a large stdin cannot block the run past its timeout.
* The run waits for the root process.  With ``timeout_ms`` it ends at the deadline: the whole
  tree is killed, so exec returns on time even when a grandchild holds the pipes open, and
  ``timed_out`` is true.
* When the root exits, descendants that still hold stdout/stderr open (``cmd &``) get
  :data:`ORPHAN_GRACE_MS` (never past the deadline) to finish writing; then the rest of the tree
  is killed and the result is the root's.  The reference
  would wait for such pipes until they close -- possibly forever; a one-shot exec returning when
  its command returned, like a shell prompt does, is what callers expect.
* Nothing exec started outlives it: when it returns, every process still in the child's group is
  gone (a daemon that called setsid() left the group on purpose and is not ours).
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import weakref
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.process.exec_request import (ExecRequest, exec_error_result, exec_result,
                                            parse_python_exec_args)
from luaskills_runtime.text import default_mode, encode_text
from luaskills_runtime.types import ExecResult

#: How long descendants may keep stdout/stderr open after the root process exited.
ORPHAN_GRACE_MS = 200

# A timeout this long is no deadline at all (and keeps the monotonic arithmetic in range).
_NO_DEADLINE_MS = 1 << 52

_WINDOWS = sys.platform == "win32"

# Runs in progress, so the ones still going when the interpreter exits (on other threads) are
# killed with their trees.
_live_runs: "weakref.WeakSet" = weakref.WeakSet()


def _native():
    from luaskills_runtime._native import exec as native_exec
    return native_exec


def _child_env(overrides: dict) -> Optional[list]:
    """The child's full environment: ours with the overrides applied, or None to inherit ours."""
    if not overrides:
        return None
    if _WINDOWS:   # names are case-insensitive there: an override replaces any spelling
        merged = {name.upper(): (name, value) for name, value in os.environ.items()}
        for name, value in overrides.items():
            merged[name.upper()] = (name, value)
        return [f"{name}={value}".encode("utf-8") for name, value in merged.values()]
    merged = dict(os.environb)
    for name, value in overrides.items():
        merged[name.encode("utf-8")] = value.encode("utf-8")
    return [name + b"=" + value for name, value in merged.items()]


def _resolve_program(program: str, overrides: dict) -> str:
    """With PATH overridden, a bare program name is looked up on the child's PATH (as Rust's
    Command does); the spawn itself searches ours."""
    if _WINDOWS:
        path = next((value for name, value in overrides.items() if name.upper() == "PATH"), None)
    else:
        path = overrides.get("PATH")
    if path is None or os.sep in program or (os.altsep and os.altsep in program):
        return program
    return shutil.which(program, path=path) or program


def _stdin_bytes(request: ExecRequest) -> Optional[bytes]:
    if request.stdin is None or isinstance(request.stdin, bytes):
        return request.stdin
    return encode_text(request.stdin, request.stdin_encoding)


def run_exec_request(request: ExecRequest, *, track: Optional[Callable] = None) -> dict:
    """Run a validated request and return the thirteen result fields.

    Never raises for what happens to the child: encoding, spawn and wait failures are results,
    as in the reference.  `track(resource)` (e.g. ``LuaVM.track``) is handed the running child,
    whose ``kill()`` ends the tree early.
    """
    try:
        stdin = _stdin_bytes(request)
    except LuaSkillsError as error:
        return exec_error_result(f"failed to encode process stdin: {error}", request)
    program, args = request.argv()
    program = _resolve_program(program, request.env)
    timeout_ms = request.timeout_ms
    if timeout_ms is not None and timeout_ms >= _NO_DEADLINE_MS:
        timeout_ms = None
    native = _native()
    try:
        run = native.ExecRun(
            program.encode("utf-8"), [arg.encode("utf-8") for arg in args],
            request.cwd.encode("utf-8") if request.cwd is not None else None,
            _child_env(request.env), stdin, timeout_ms or 0, ORPHAN_GRACE_MS)
    except native.ExecSpawnError as error:
        return exec_error_result(f"failed to spawn process: {error}", request)
    _live_runs.add(run)
    if track is not None:
        track(run)
    try:
        outcome = run.finish()
    except native.ExecWaitError as error:
        message, timed_out = error.args
        return exec_error_result(f"failed to wait for process: {message}", request, timed_out)
    finally:
        run.close()
    if outcome.status_lost:   # reaped behind our back (a host SIGCHLD handler): no status
        return exec_error_result("failed to wait for process: waitid: No child processes",
                                 request, outcome.timed_out)
    return exec_result(request, outcome.stdout, outcome.stderr, outcome.code,
                       outcome.success, outcome.timed_out)


def check_exec_arg_types(*, command: Any, program: Any, args: Any, cwd: Any) -> None:
    """Python callers get Python type names (``exec_command: command must be a str, got
    list``) before the request is parsed with the Lua API's rules."""
    for key, value in (("command", command), ("program", program), ("cwd", cwd)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"exec_command: {key} must be a str, got {type(value).__name__}")
    if args is not None and not isinstance(args, (list, tuple)):
        raise TypeError(f"exec_command: args must be a list or tuple of str, "
                        f"got {type(args).__name__}")


def exec_command(command: Optional[str] = None, program: Optional[str] = None,
                 args: Iterable[Any] = (), cwd: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, stdin: Optional[Union[str, bytes]] = None,
                 timeout_ms: Optional[int] = None, shell: Optional[bool] = None,
                 encoding: Optional[str] = None, stdout_encoding: Optional[str] = None,
                 stderr_encoding: Optional[str] = None,
                 stdin_encoding: Optional[str] = None) -> "ExecResult":
    """Run one command to completion and return the result dict of ``vulcan.process.exec``.

    ``command`` runs through the platform shell (``sh -c`` / ``cmd.exe /C``); ``program`` with
    ``args`` runs directly (looked up on PATH).  ``env`` adds to / overrides our environment;
    ``stdin`` (str, encoded with ``stdin_encoding``; bytes are written unchanged) is fed to the
    child, which otherwise reads the null device.  Encodings take the labels of SPEC 2; the
    default is ``system`` on Windows and ``utf-8`` elsewhere.  Invalid arguments raise
    :class:`LuaSkillsError` with the texts of the Lua API (``process.exec: ...``); everything
    that happens to the child is reported in the result (``ok``, ``success``, ``code``,
    ``stdout``, ``stderr``, ``*_encoding``, ``*_lossy``, ``*_base64``, ``timed_out``, ``error``).
    """
    check_exec_arg_types(command=command, program=program, args=args, cwd=cwd)
    request = parse_python_exec_args(
        command, program, args, cwd, env, stdin, timeout_ms, shell, encoding, stdout_encoding,
        stderr_encoding, stdin_encoding, default_mode=default_mode())
    return run_exec_request(request)  # type: ignore[return-value]


@atexit.register
def _kill_live_runs() -> None:
    for run in list(_live_runs):
        try:
            run.kill()
        except Exception:  # teardown must reach every run
            pass


__all__ = ["exec_command", "check_exec_arg_types", "run_exec_request", "ORPHAN_GRACE_MS"]
