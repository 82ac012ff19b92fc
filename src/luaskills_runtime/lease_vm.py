"""The Lua side of one runtime lease: a dedicated LuaVM, its module roots, and running an eval.

An eval is guarded by the native TimeoutGuard (luaskills_runtime._native.luahook), which stops
the code at its deadline or when the host cancels it, also inside loops the JIT has compiled.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional

from luaskills_runtime._native.luahook import TimeoutGuard, monotonic_ms
from luaskills_runtime.cwd import CWD_LOCK, working_directory
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lease_requests import EvalRequest
from luaskills_runtime.luajson import json_to_lua, lua_to_json
from luaskills_runtime.vm import LEASE, RUN_LUA_WRAPPER, LuaVM

LOGGER = logging.getLogger("luaskills_runtime")

EVAL_CHUNKNAME = b"=runtime_lease"

# Prepends given as one Lua chunk so a lease VM is configured in a single call.
_PREPEND_ROOTS = b"""
local path_prefix, cpath_prefix = ...
if path_prefix ~= "" then package.path = path_prefix .. package.path end
if cpath_prefix ~= "" then package.cpath = cpath_prefix .. package.cpath end
"""

# Turns the JIT off for good (flushing traces compiled so far) and hides jit.on from user code;
# returns the real jit.status, an off-and-flush function for the host's per-eval check, and the
# real jit.on (held by the host only).
_JIT_LOCKDOWN = b"""
local jit = jit
if type(jit) ~= "table" then
  return function() return false end, function() end, function() end
end
local status, on, off, flush, error = jit.status, jit.on, jit.off, jit.flush, error
off() flush()
jit.on = function()
  error("jit.on: the JIT stays off in runtime leases so that timeouts and cancellation can stop any loop", 2)
end
return function() return (status()) end, function() off() flush() end, on
"""


@dataclass
class LeasePaths:
    """Host-owned path context of one lease (already normalised)."""
    cwd: Optional[str] = None
    workspace_root: Optional[str] = None
    lua_roots: List[str] = field(default_factory=list)
    c_roots: List[str] = field(default_factory=list)
    mounts: Any = None
    system_lua_lib_dir: Optional[str] = None


def default_system_lua_lib_dir() -> str:
    """Where the system_lua_lib profile keeps its library when HostOptions names no folder: the
    per-user data folder of the platform (the reference falls back to `skills` under the process
    cwd, which would scatter folders over whatever directory the host happens to run in)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "luaskills-runtime", "system_lua_lib")


def _module_patterns(roots: List[str], suffixes: List[str]) -> bytes:
    sep = "\\" if sys.platform == "win32" else "/"
    parts = []
    for root in roots:
        for suffix in suffixes:
            parts.append(f"{root}{sep}{suffix};")
    return os.fsencode("".join(parts)) if parts else b""


def _native_suffixes() -> List[str]:
    if sys.platform == "win32":
        return ["?.dll", "?\\init.dll"]
    if sys.platform == "darwin":
        return ["?.dylib", "?/init.dylib"]
    return ["?.so", "?/init.so"]


def _lua_suffixes() -> List[str]:
    return ["?.lua", "?\\init.lua"] if sys.platform == "win32" else ["?.lua", "?/init.lua"]


def _os_error_text(error: OSError) -> str:
    """An OS error the way the reference (Rust std::io::Error) prints it."""
    if error.errno is not None and error.strerror:
        return f"{error.strerror} (os error {error.errno})"
    return str(error)


class EvalFailure(Exception):
    """An eval that failed; str() is the `message` of the eval_failed payload."""


class LeaseVM:
    """A dedicated LuaVM for one lease.  One eval at a time (the lease's busy lock ensures it);
    cancel() may be called from any thread.

    The JIT stays off in lease VMs: compiled traces never look at hooks, so a loop the JIT had
    compiled could not be stopped by a timeout or a cancel.  User code gets a `jit.on` that
    says so instead of silently defeating the guard."""

    def __init__(self, engine_state, paths: LeasePaths):
        options = engine_state.options
        self.paths = paths
        self.vm = LuaVM(engine_state, LEASE, max_memory=options.max_memory_bytes)
        # The cap applies while the lease's Lua code runs.  Host-side work on the VM (scope reset,
        # args and result conversion) runs uncapped: lupa makes those Lua API calls unprotected,
        # and an allocation failure there aborts the process ("PANIC: unprotected error").
        self._memory_cap = options.max_memory_bytes
        if self._memory_cap:
            self.vm.runtime.set_max_memory(0)
        try:
            self._prepend_roots()
            if options.enable_managed_io_compat:
                from luaskills_runtime.vulcan.io_compat import install_managed_io
                install_managed_io(self.vm)
            self.guard = TimeoutGuard(self.vm.runtime)
            # _jit_on: the real jit.on, out of Lua's reach (tests use it to compile a loop
            # before an eval, to show the per-eval check flushes it).
            self._jit_status, self._jit_off_and_flush, self._jit_on = \
                self.vm.runtime.execute(_JIT_LOCKDOWN)
        except BaseException:
            self.vm.close()
            raise
        self._state_lock = threading.Lock()  # orders arm/disarm against cancel()
        self._running = False
        self._cancel_message: Optional[bytes] = None
        self._cancel_accepted = False

    def _prepend_roots(self) -> None:
        lua = _module_patterns(self.paths.lua_roots, _lua_suffixes())
        native = _module_patterns(self.paths.c_roots, _native_suffixes())
        if lua or native:
            try:
                self.vm.runtime.execute(_PREPEND_ROOTS, lua, native)
            except Exception as error:
                raise LuaSkillsError(f"Failed to set runtime lease package.path: {error}") from None

    # ---- eval ----------------------------------------------------------------------------------
    def eval(self, request: EvalRequest) -> Any:
        """Run one eval request; returns the JSON form of the first returned value or raises
        EvalFailure with the reference's message."""
        vm = self.vm
        context = request.request_context
        try:
            vm.reset_scope(
                request=context if context is not None else {},
                client_info=context.get("client_info") if context else None,
                client_capabilities=context.get("client_capabilities") if context else {},
                client_budget=request.client_budget,
                tool_config=request.tool_config,
                luaexec_active=True,
            )
            vm.set_global("__runlua_args", json_to_lua(vm.runtime, request.args, top_level_args=True))
        except LuaSkillsError as error:
            raise EvalFailure(str(error)) from None
        code = RUN_LUA_WRAPPER.format(code=request.code)
        timeout_text = f"luaexec execution timed out after {request.timeout_ms} ms".encode()
        try:
            try:
                values = self._run_guarded(code, request.timeout_ms, timeout_text)
            except LuaSkillsError as error:
                message = f"Runtime session eval error: {error}"
                LOGGER.error("[LuaSkill:error] %s", message)
                raise EvalFailure(message) from None
            try:
                return lua_to_json(values[0] if values else None)
            except LuaSkillsError as error:
                raise EvalFailure(str(error)) from None
        finally:
            try:
                vm.set_global("__runlua_args", None)
            except Exception:
                pass

    def _run_guarded(self, code: str, timeout_ms: int, timeout_text: bytes):
        """Run the wrapped code under the guard (and in the lease's cwd); a run the guard stopped
        reports the guard's message whatever error text the code saw."""
        if self._jit_status():  # only code that found the real jit.on can have turned it on
            self._jit_off_and_flush()
        deadline = time.monotonic() + timeout_ms / 1000.0
        with self._state_lock:
            if self._cancel_message is not None:
                raise LuaSkillsError(self._cancel_message.decode("utf-8", "replace"))
            armed_at = monotonic_ms()
            self.guard.arm(timeout_ms, timeout_text)
            self._running = True
        failure: Optional[LuaSkillsError] = None
        values = ()
        try:
            values = self._run_in_cwd(code, deadline, timeout_text)
        except LuaSkillsError as error:
            failure = error
        finally:
            with self._state_lock:
                self._running = False
                self.guard.disarm()  # before any other Lua call: a fired guard raises on each
        if failure is None:
            return values
        if self.guard.fired:
            fired_at = self.guard.fired_at_ms
            timed_out = fired_at is not None and fired_at >= armed_at + timeout_ms
            if self._cancel_accepted and not timed_out:
                raise LuaSkillsError(self._cancel_message.decode("utf-8", "replace"))
            raise LuaSkillsError(timeout_text.decode())
        if str(failure) == "not enough memory":
            # free what the failed code left behind, so the next eval starts with room
            self.vm.run_chunk(b"collectgarbage()", b"=runtime_lease_gc")
        raise failure

    def _run_in_cwd(self, code: str, deadline: float, timeout_text: bytes):
        cwd = self.paths.cwd
        if cwd is None:
            return self._run_capped(code)
        self._wait_for_cwd_lock(deadline, timeout_text)
        try:
            try:
                switcher = working_directory(cwd)
                switcher.__enter__()
            except OSError as error:
                raise LuaSkillsError(f"runtime lease set cwd {cwd}: {_os_error_text(error)}") from None
            outcome = None
            try:
                return self._run_capped(code)
            except BaseException as error:
                outcome = error
                raise
            finally:
                try:
                    switcher.__exit__(None, None, None)
                except OSError as error:
                    if outcome is None or isinstance(outcome, LuaSkillsError):
                        raise LuaSkillsError(f"runtime lease restore cwd: {_os_error_text(error)}") from None
        finally:
            CWD_LOCK.release()

    def _run_capped(self, code: str):
        if not self._memory_cap:
            return self.vm.run_chunk(code, EVAL_CHUNKNAME)
        runtime = self.vm.runtime
        runtime.set_max_memory(self._memory_cap)
        try:
            return self.vm.run_chunk(code, EVAL_CHUNKNAME)
        finally:
            runtime.set_max_memory(0)

    def _wait_for_cwd_lock(self, deadline: float, timeout_text: bytes) -> None:
        """Take the process-wide cwd lock, giving up at the eval's deadline or on cancel (another
        lease or runlua file run may hold it for as long as its own code runs)."""
        while not CWD_LOCK.acquire(timeout=0.05):
            with self._state_lock:
                cancelled = self._cancel_message
            if cancelled is not None:
                raise LuaSkillsError(cancelled.decode("utf-8", "replace"))
            if time.monotonic() >= deadline:
                raise LuaSkillsError(timeout_text.decode())

    def begin(self) -> None:
        """Called (under the lease's busy lock) before an eval: forget earlier cancellations."""
        with self._state_lock:
            self._cancel_message = None
            self._cancel_accepted = False

    def cancel(self, message: str) -> bool:
        """Stop the running eval (or the one about to start) with `message`; True if one was
        running or starting."""
        text = message.encode("utf-8")
        with self._state_lock:
            self._cancel_message = text
            if self._running and self.guard.cancel(text):
                self._cancel_accepted = True
                return True
        return False

    def close(self) -> None:
        self.vm.close()
