"""runlua (SPEC 8): one isolated Lua request on a pooled VM, answered with a Markdown report.

A request ``{task?, code?, file?, args?={}, timeout_ms?=60000, caller_tool_name?}`` runs as the body
of a function whose local ``args`` holds the arguments; every value it returns is kept.  Malformed
requests raise LuaSkillsError with the reference's text; failures of the Lua code are rendered as a
FAILED report.

A pooled VM is a :class:`RunluaVM`: a LuaVM built by the vulcan factory, wrapped with its guard
control (luaskills_runtime.lua.guard), managed io and the environment chunk (chunks/luaexec_env.lua).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, NamedTuple, Optional, Tuple

from luaskills_runtime.lua_engine import lupa_engine

from luaskills_runtime.lua.chunk_files import read_chunk
from luaskills_runtime._ref.lua_args import validate_path_text
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.guard import (CANCEL_MESSAGE, CancelToken, GuardedResult, guarded_call,
                                     guarded_run, memory_limit_message, prepare_guarded_vm,
                                     runner_outcome, timeout_message)
from luaskills_runtime.lua.outcome import RunOutcome, RunStatus, outcome
from luaskills_runtime.lua.vm_thread import VmAbandoned, VmThread
from luaskills_runtime.lua.luajson import json_to_lua
from luaskills_runtime.runlua.markdown import NO_VALUES, render_error, render_success, render_value
from luaskills_runtime.lua.pool import PoolWaitOver, VmPool
from luaskills_runtime._ref.rust import os_error_text, rust_trim
from luaskills_runtime._ref.serde_text import (JsonSyntaxError, load_json, request_text, u64_detail,
                                              unexpected)
from luaskills_runtime.lua.vm import RUNLUA, LuaVM
from luaskills_runtime.vulcan import new_vm
from luaskills_runtime.vulcan.io_compat import install_managed_io

__all__ = ["RunluaRequest", "RunluaReport", "RunluaService", "parse_request_json",
           "request_from_mapping",
           "CancelToken", "GuardedResult", "guarded_call", "guarded_run", "timeout_message",
           "memory_limit_message", "DEFAULT_TIMEOUT_MS"]

DEFAULT_TIMEOUT_MS = 60_000
_STRUCT = "struct RunLuaExecRequest"
_FIELDS = ("task", "code", "file", "args", "timeout_ms", "caller_tool_name")

# The reference's wrapper: user code starts on line 4, `args` is a local, all values are kept.
WRAPPER = ("return (function()\n  local args = __runlua_args\n  return table.pack((function()\n"
           "{code}\nend)())\nend)()")

_ENV_SOURCE = read_chunk("luaskills_runtime.runlua", "luaexec_env.lua")
_TOUCH_GUARD_SOURCE = read_chunk("luaskills_runtime.runlua", "touch_guard.lua")

# After a request the VM is dropped instead of reused when its heap stays above this (KiB), so a
# request that filled memory does not keep it; with a memory cap, above half the cap.
_MAX_RETAINED_KIB = 64 * 1024


# ---- requests -------------------------------------------------------------------------------

@dataclass
class RunluaRequest:
    task: str = ""
    code: Optional[str] = None
    file: Optional[str] = None
    args: Any = field(default_factory=dict)
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    caller_tool_name: Optional[str] = None


def parse_request_json(text) -> RunluaRequest:
    """Parse request JSON; errors read ``Invalid luaexec request JSON: <detail>``."""
    prefix = "Invalid luaexec request JSON: "
    try:
        text = request_text(text)
    except JsonSyntaxError as error:
        raise LuaSkillsError(prefix + str(error)) from None
    if not isinstance(text, str):
        raise LuaSkillsError(f"{prefix}request must be a JSON string, got {type(text).__name__}")
    try:
        data = load_json(text)
    except JsonSyntaxError as error:
        raise LuaSkillsError(prefix + str(error)) from None
    return request_from_mapping(data, prefix)


def request_from_mapping(data: Any, prefix: str = "Invalid luaexec request: ") -> RunluaRequest:
    """Build a request from decoded JSON data with serde's rules for the reference's struct:
    missing fields take their defaults, unknown fields are ignored, an array fills the fields in
    order, and a wrong type is an error ``<prefix><serde-style detail>``."""
    if isinstance(data, list):
        if len(data) > len(_FIELDS):
            raise LuaSkillsError(f"{prefix}invalid length {len(data)}, expected {_STRUCT} "
                                 f"with {len(_FIELDS)} elements")
        data = dict(zip(_FIELDS, data))
    elif not isinstance(data, dict):
        raise LuaSkillsError(f"{prefix}invalid type: {unexpected(data)}, expected {_STRUCT}")
    request = RunluaRequest()
    if "task" in data:
        request.task = _string_field(data["task"], prefix, optional=False)
    for name in ("code", "file", "caller_tool_name"):
        if name in data:
            setattr(request, name, _string_field(data[name], prefix, optional=True))
    if "args" in data:
        request.args = data["args"]
    if "timeout_ms" in data:
        request.timeout_ms = _u64_field(data["timeout_ms"], prefix)
    return request


def _string_field(value: Any, prefix: str, optional: bool) -> Optional[str]:
    if isinstance(value, str):
        return value
    if value is None and optional:
        return None
    raise LuaSkillsError(f"{prefix}invalid type: {unexpected(value)}, expected a string")


def _u64_field(value: Any, prefix: str) -> int:
    problem = u64_detail(value)
    if problem is not None:
        raise LuaSkillsError(prefix + problem)
    return value


def resolve_source(request: RunluaRequest) -> Tuple[str, Optional[str]]:
    """(code, absolute file path or None) of a request; raises LuaSkillsError like the reference."""
    code = rust_trim(request.code) if request.code is not None else ""
    file_text = rust_trim(request.file) if request.file is not None else ""
    if code and file_text:
        raise LuaSkillsError("luaexec accepts either code or file, but not both")
    if not code and not file_text:
        raise LuaSkillsError("luaexec requires code or file")
    if code:
        return code, None
    validate_path_text(file_text, "luaexec", "file")
    path = file_text if os.path.isabs(file_text) else os.path.join(_current_dir(), file_text)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        detail = os_error_text(error)
        raise LuaSkillsError(f"Failed to read luaexec file {path}: {detail}: {detail}") from None
    except ValueError:  # NUL in the path
        detail = "file name contained an unexpected NUL byte"
        raise LuaSkillsError(f"Failed to read luaexec file {path}: {detail}: {detail}") from None
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError:
        detail = "stream did not contain valid UTF-8"
        raise LuaSkillsError(f"Failed to read luaexec file {path}: {detail}: {detail}") from None
    return _script_body(source), path


def _current_dir() -> str:
    try:
        return os.getcwd()
    except OSError as error:
        raise LuaSkillsError(
            f"Failed to resolve luaexec relative file path: {os_error_text(error)}") from None


def _script_body(source: str) -> str:
    """Beyond the reference: a script file may start with a BOM or a `#!` line (which Lua skips
    only at the very start of a chunk, not inside the wrapper); the BOM is dropped and the `#`
    line becomes a comment, so line numbers stay the same."""
    if source.startswith("\ufeff"):
        source = source[1:]
    if source.startswith("#"):
        source = "--" + source
    return source


# ---- running --------------------------------------------------------------------------------

class RunluaReport(NamedTuple):
    """A finished request: its Markdown and how the code ended."""

    markdown: str
    status: RunStatus

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class RunluaVM:
    """A pooled runlua VM: a LuaVM (with vulcan) wrapped with its guard control, managed io and
    environment controls."""

    def __init__(self, vm: LuaVM):
        self.vm = vm
        self.thread = VmThread("luaskills-runlua-vm")
        g = vm.runtime.globals()
        self.control = prepare_guarded_vm(vm)
        self.managed_io = install_managed_io(vm, self.control.current_limits)
        io_reset = self.managed_io.lua_reset if self.managed_io else None
        # Handing the VM's scope reset to the environment lets a request set and clear its scope
        # without extra calls from Python.
        env = vm.runtime.execute(_ENV_SOURCE, g, io_reset, vm.scope_reset, vm.lua_message_of,
                                 vm.policy.full_debug)
        self.run = env[b"run"]
        self.printed = env[b"printed"]
        self.restore = env[b"restore"]
        self.tostring = g[b"tostring"]
        # True when the last request opened a door restore cannot close (chunks/touch_guard.lua)
        self.touched = vm.runtime.execute(_TOUCH_GUARD_SOURCE, g)
        env[b"snapshot"]()
        cap = vm.runtime.get_max_memory()
        self.retain_limit_kib = min(_MAX_RETAINED_KIB, cap // 2048) if cap else _MAX_RETAINED_KIB

    @property
    def broken(self) -> bool:
        return self.vm.broken

    def close(self) -> None:
        self.vm.close()
        self.thread.close()

    def inline(self, value) -> str:
        """A value's one-line text (Lua's tostring) for values JSON cannot show."""
        text = self.tostring(value)
        return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


# Returned values that reach Python as these types are rendered without calling into Lua.
_PLAIN_TYPES = frozenset((type(None), bytes, bool, int, float))


def _lua_text(text: Optional[str]) -> Optional[bytes]:
    return None if text is None else text.encode("utf-8", "surrogateescape")


def _padded(answer, size: int) -> tuple:
    answer = answer if isinstance(answer, tuple) else (answer,)
    return answer + (None,) * (size - len(answer))


def new_runlua_vm(engine_state) -> RunluaVM:
    options = engine_state.options
    vm = None
    try:
        vm = new_vm(engine_state, RUNLUA, max_memory=options.max_memory_bytes)
        return RunluaVM(vm)
    except lupa_engine.LuaMemoryError:
        if vm is not None:
            vm.close()
        raise LuaSkillsError(
            f"luaexec memory limit of {options.max_memory_bytes} bytes is too small to set up "
            "a runlua VM") from None
    except BaseException:
        if vm is not None:
            vm.close()
        raise


class _Verdict:
    """How a finished request hands its VM back (set on the VM's thread, read by the caller)."""

    __slots__ = ("discard", "cleanup_error")

    def __init__(self):
        self.discard = False
        self.cleanup_error: Optional[str] = None


class RunluaService:
    """The engine's runlua side: its VM pool and the requests in flight (for cancel)."""

    def __init__(self, engine_state):
        self._state = engine_state
        self.pool = VmPool(engine_state.options.runlua_pool,
                           lambda: new_runlua_vm(engine_state), "runlua")
        self._lock = threading.Lock()
        self._running: Dict[Hashable, CancelToken] = {}
        self._anonymous: set = set()
        self._vm_of: Dict[CancelToken, LuaVM] = {}  # the VM each running request is on
        self._closed = False

    # -- public --------------------------------------------------------------------------------
    def execute(self, request: RunluaRequest, request_id: Optional[Hashable] = None) -> str:
        """The Markdown report of one request; request errors raise LuaSkillsError."""
        return self.run(request, request_id).markdown

    def run(self, request: RunluaRequest, request_id: Optional[Hashable] = None) -> "RunluaReport":
        """Like execute, also telling whether the code succeeded (for the CLI's exit status)."""
        if request.timeout_ms == 0:
            raise LuaSkillsError("luaexec timeout_ms must be greater than 0")
        code, entry_file = resolve_source(request)
        token = self._register(request_id)
        try:
            return self._execute(request, code, entry_file, token)
        finally:
            self._unregister(request_id, token)

    def cancel(self, request_id: Hashable, message: str = CANCEL_MESSAGE) -> bool:
        """Stop the running request registered under request_id; False when there is none."""
        with self._lock:
            token = self._running.get(request_id)
            vm = self._vm_of.get(token) if token is not None else None
        if token is None:
            return False
        token.cancel(message)
        if vm is not None:  # its sessions and exec trees die now (a blocked read returns)
            vm.kill_resources()
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            tokens = list(self._running.values()) + list(self._anonymous)
        for token in tokens:
            token.cancel("luaexec execution cancelled: the engine is closing")
        self.pool.close()

    # -- internals -----------------------------------------------------------------------------
    def _register(self, request_id) -> CancelToken:
        token = CancelToken()
        with self._lock:
            if self._closed:
                raise LuaSkillsError("LuaEngine is closed")
            if request_id is None:
                self._anonymous.add(token)
            elif request_id in self._running:
                raise LuaSkillsError(f"luaexec request id `{request_id}` is already running")
            else:
                self._running[request_id] = token
        return token

    def _unregister(self, request_id, token) -> None:
        with self._lock:
            if request_id is None:
                self._anonymous.discard(token)
            elif self._running.get(request_id) is token:
                del self._running[request_id]

    def _execute(self, request: RunluaRequest, code: str, entry_file: Optional[str],
                 token: CancelToken) -> "RunluaReport":
        # Waiting for a VM counts against the request's timeout (same timeout error).
        deadline = time.monotonic() + request.timeout_ms / 1000.0
        try:
            state: RunluaVM = self.pool.acquire(deadline=deadline, cancel=token)
        except PoolWaitOver as over:
            return self._stopped_report(request, token, over.cancelled)
        vm = state.vm
        with self._lock:
            self._vm_of[token] = vm
        verdict = _Verdict()
        try:
            # On the VM's own thread: code that cannot be stopped in place (one long C call, a
            # looping finalizer or hook) still lets this caller answer on time (lua.vm_thread).
            return state.thread.call(self._run_on_vm, state, request, code, entry_file, deadline,
                                     token, verdict, deadline=deadline, cancel=token,
                                     on_stop=vm.kill_resources)
        except VmAbandoned:
            return self._stopped_report(request, token, token.cancelled)
        finally:
            with self._lock:
                self._vm_of.pop(token, None)
            if state.thread.abandoned:
                vm.kill_resources()   # its sessions and exec trees die now
                self.pool.abandon(state)
            else:
                self.pool.release(state, discard=verdict.discard or vm.broken)
                if verdict.cleanup_error is not None:
                    raise LuaSkillsError(verdict.cleanup_error)

    @staticmethod
    def _stopped_report(request: RunluaRequest, token: CancelToken,
                        cancelled: bool) -> "RunluaReport":
        """The report of a request stopped from outside its VM (waiting for one, or stuck)."""
        if cancelled:
            stopped = outcome(RunStatus.CANCELLED, token.message)
        else:
            stopped = outcome(RunStatus.TIMEOUT, timeout_message(request.timeout_ms))
        return RunluaReport(render_error(request.task, [], stopped.error), stopped.status)

    def _run_on_vm(self, state: "RunluaVM", request: RunluaRequest, code: str,
                   entry_file: Optional[str], deadline: float, token: CancelToken,
                   verdict: "_Verdict") -> "RunluaReport":
        """The request on its VM (runs on the VM's thread); `verdict` says how to hand the VM
        back (the caller does that, unless the VM was abandoned meanwhile)."""
        vm = state.vm
        entry_dir = os.path.dirname(entry_file) if entry_file else None
        restored = None  # the restore answer when the run already restored the VM
        try:
            args = None  # the environment makes an empty table itself (saves a call)
            if not (isinstance(request.args, dict) and not request.args):
                try:
                    args = json_to_lua(vm.runtime, request.args, top_level_args=True)
                except BaseException:
                    verdict.discard = True
                    raise
            chunkname = ("@" + entry_file) if entry_file else "luaexec"
            wrapped = WRAPPER.format(code=code).encode("utf-8")
            # `untrusted` code reaches the request's file folder too (set for every request)
            if entry_dir or vm.policy.request_roots:
                vm.policy.set_request_roots((entry_dir,) if entry_dir else ())
            timeout_ms = max(int((deadline - time.monotonic()) * 1000), 1)
            result = guarded_call(state.control, state.run, wrapped, chunkname.encode("utf-8"),
                                  args, _lua_text(entry_file), _lua_text(entry_dir),
                                  _lua_text(request.caller_tool_name), timeout_ms=timeout_ms,
                                  timeout_text=timeout_message(request.timeout_ms),
                                  cancel=token, cwd=entry_dir)
            if result.ok:
                # The environment answers: status, print capture (count, text), restore report
                # (3 fields, -1 when deferred), then the protocol's payload (the message, or
                # the counted values).
                answer = result.values[0]
                count, text = answer[1], answer[2]
                if answer[3] != -1:
                    restored = answer[3:6]
                if answer[0] == b"ok":   # the common case, read without the general decoder
                    result = self._render_values(vm, state, answer[6:], request, deadline, token)
                else:
                    result = runner_outcome(state.control, answer[:1] + answer[6:])
                    if result.status is RunStatus.SCOPE:
                        verdict.discard = True
                        raise LuaSkillsError(result.error)
            else:
                count, text = self._printed_after_stop(vm, state)
            printed = [text.decode("utf-8", "replace")] if count else []
            if result.ok:
                values = result.values or NO_VALUES
                return RunluaReport(render_success(request.task, printed, values), RunStatus.OK)
            return RunluaReport(render_error(request.task, printed, result.error),
                                result.status)
        finally:
            # The request owns what it started: sessions and exec trees it left open end now.
            vm.kill_resources()
            if state.managed_io is not None:   # (the VM's io state stays tracked)
                vm.track(state.managed_io)
            cleanup_error = None if verdict.discard else self._cleanup(vm, state, restored)
            if cleanup_error is not None:
                verdict.discard = True
                if cleanup_error is not True:
                    verdict.cleanup_error = cleanup_error

    @staticmethod
    def _printed_after_stop(vm, state: RunluaVM):
        """The print capture of a run the guard or the memory cap stopped (a full heap may need a
        collection before the lines can be joined)."""
        for _ in range(2):
            try:
                return state.printed()
            except lupa_engine.LuaError:
                vm.runtime.gccollect()
        return 0, b""

    def _render_values(self, vm, state, counted, request, deadline, token) -> GuardedResult:
        """Render the returned values (counted = (n, values...)).  Strings, numbers, booleans
        and nil need no Lua; anything else is read through Lua (metamethods may run), so that is
        done under the guard again, with the rest of the request's time (at least one second)."""
        total = int(counted[0])
        values = counted[1:1 + total]
        if len(values) < total:
            values += (None,) * (total - len(values))
        if not any(type(value) not in _PLAIN_TYPES for value in values):
            return RunOutcome(RunStatus.OK, tuple([render_value(v, state.inline) for v in values]))

        def render():
            return tuple(render_value(value, state.inline) for value in values)

        remaining_ms = max(int((deadline - time.monotonic()) * 1000), 1000)
        rendered = guarded_call(state.control, render, timeout_ms=remaining_ms,
                                timeout_text=timeout_message(request.timeout_ms), cancel=token)
        if not rendered.ok:
            return rendered
        return RunOutcome(RunStatus.OK, rendered.values[0])

    def _cleanup(self, vm, state: RunluaVM, restored=None):
        """Put the VM back the way the next request must find it.  Returns None when it can be
        reused, True when it must be discarded quietly, or the reference's cleanup error text."""
        try:
            status, kib, message = _padded(restored or state.restore(), 3)
            if state.managed_io and state.managed_io.open_count:
                state.managed_io.close_all()
            if status != 3 and kib > state.retain_limit_kib:
                vm.runtime.gccollect()
                status, kib, message = _padded(state.restore(), 3)
        except lupa_engine.LuaError:
            return True
        if status == 3:
            text = message.decode("utf-8", "replace")
            if text == "not enough memory":  # a capped heap still full: drop the VM quietly
                return True
            return f"request scope reset failed: {text}"
        if status == 2 or kib > state.retain_limit_kib:
            return True
        try:
            if state.touched():   # registry, upvalues, finalizers: a fresh VM for the next one
                return True
        except lupa_engine.LuaError:
            return True
        return None
