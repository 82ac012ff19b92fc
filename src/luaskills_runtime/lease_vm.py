"""The Lua side of one runtime lease: a dedicated LuaVM, its module roots, and running an eval.

Evals run through the shared guard (luaskills_runtime.guard): the native TimeoutGuard stops the
code at its deadline or when the host cancels it, and lease VMs run with the JIT off for good
(compiled traces never look at hooks, so a compiled loop could not be stopped otherwise; the
guard makes `jit.on` refuse for user code).
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional

from luaskills_runtime.cwd import CwdLockTimeout, working_directory
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.guard import CancelToken, guarded_call, prepare_guarded_vm, runner_failure
from luaskills_runtime.lease_requests import EvalRequest
from luaskills_runtime.luajson import json_to_lua, lua_to_json
from luaskills_runtime.vm import LEASE, RUN_LUA_WRAPPER, LuaVM
from luaskills_runtime.vulcan.io_compat import install_managed_io

LOGGER = logging.getLogger("luaskills_runtime")

EVAL_CHUNKNAME = b"=runtime_lease"
_CWD_WAIT_SLICE = 0.05  # how often an eval waiting for the cwd lock looks at its cancel token

# The VM's own jit functions, taken before the guard hides jit.on: the host checks before each
# eval that the JIT is still off (code that dug the real jit.on out of the registry could have
# turned it on and compiled a loop the guard cannot stop).
_JIT_FUNCTIONS = b"""
local jit = jit
if type(jit) ~= "table" then return nil end
return jit.status, jit.off, jit.flush, jit.on
"""

# Prepends given as one Lua chunk so a lease VM is configured in a single call.
_PREPEND_ROOTS = b"""
local path_prefix, cpath_prefix = ...
if path_prefix ~= "" then package.path = path_prefix .. package.path end
if cpath_prefix ~= "" then package.cpath = cpath_prefix .. package.cpath end
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


class _CwdFailure(Exception):
    """The lease's cwd could not be entered or restored; str() is the reference's text."""


class LeaseVM:
    """A dedicated LuaVM for one lease.  One eval at a time (the lease's busy lock ensures it);
    cancel() may be called from any thread."""

    def __init__(self, engine_state, paths: LeasePaths):
        options = engine_state.options
        self.paths = paths
        self.vm = LuaVM(engine_state, LEASE, max_memory=options.max_memory_bytes)
        try:
            jit_functions = self.vm.runtime.execute(_JIT_FUNCTIONS)
            # _jit_on: the real jit.on, out of Lua's reach (tests use it to compile a loop
            # outside an eval, to show the per-eval check flushes it).
            self._jit_status, self._jit_off, self._jit_flush, self._jit_on = \
                jit_functions if jit_functions else (None, None, None, None)
            self.control = prepare_guarded_vm(self.vm)
            # The cap applies while lease code runs.  Host-side work on the VM (scope reset, args
            # and result conversion) runs uncapped: lupa makes those Lua API calls unprotected,
            # and an allocation failure there aborts the process ("PANIC: unprotected error").
            self._memory_cap = options.max_memory_bytes
            if self._memory_cap:
                self.vm.runtime.set_max_memory(0)
            self._prepend_roots()
            install_managed_io(self.vm)
        except BaseException:
            self.vm.close()
            raise
        self._token: Optional[CancelToken] = None

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
        try:
            try:
                values = self._run_guarded(code, request.timeout_ms)
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

    def _run_guarded(self, code: str, timeout_ms: int) -> tuple:
        """Run the wrapped code under the guard (in the lease's cwd, under the memory cap);
        returns its values or raises LuaSkillsError with the reference's display text."""
        if self._jit_status is not None:
            state = self._jit_status()
            if state[0] if isinstance(state, tuple) else state:
                self._jit_off()
                self._jit_flush()
        token = self._token if self._token is not None else CancelToken()
        try:
            outcome = guarded_call(self.vm, self._run_in_cwd, code.encode("utf-8"),
                                   timeout_ms=timeout_ms, cancel=token)
        except _CwdFailure as error:
            raise LuaSkillsError(f"runtime error: {error}") from None
        if outcome.ok:
            answer = outcome.values[0]
            if not isinstance(answer, tuple):
                answer = (answer,)
            if answer[0] == b"ok":
                return answer[1:]
            outcome = runner_failure(self.vm, answer[0], answer[1] if len(answer) > 1 else None)
        if outcome.status == "memory":
            # free what the failed code left behind, so the next eval starts with room
            self.vm.runtime.gccollect()
        raise LuaSkillsError(outcome.error)

    def _run_in_cwd(self, code: bytes):
        cwd = self.paths.cwd
        if cwd is None:
            return self._run_capped(code)
        while True:  # wait for the process-wide cwd lock in slices, to notice a cancel
            limits = self.control.limits
            stop = limits.stop_reason() if limits is not None else None
            if stop is not None:
                return (b"error", stop.encode("utf-8"))
            try:
                switch = working_directory(cwd, timeout=min(limits.remaining(), _CWD_WAIT_SLICE)
                                           if limits is not None else None)
                switch.__enter__()
                break
            except CwdLockTimeout:
                continue
            except OSError as error:
                raise _CwdFailure(f"runtime lease set cwd {cwd}: {_os_error_text(error)}") from None
        failed = True
        try:
            answer = self._run_capped(code)
            failed = False
            return answer
        finally:
            try:
                switch.__exit__(None, None, None)
            except OSError as error:
                if not failed:
                    raise _CwdFailure(f"runtime lease restore cwd: {_os_error_text(error)}") from None

    def _run_capped(self, code: bytes):
        runner = self.control.runner
        if not self._memory_cap:
            return runner(code, EVAL_CHUNKNAME)
        runtime = self.vm.runtime
        runtime.set_max_memory(self._memory_cap)
        try:
            return runner(code, EVAL_CHUNKNAME)
        finally:
            runtime.set_max_memory(0)

    def begin(self) -> None:
        """Called (under the manager lock, with the lease claimed) before an eval: a fresh
        cancel token, so cancel() from now on reaches this eval."""
        self._token = CancelToken()

    def cancel(self, message: str) -> None:
        """Stop the eval in progress (or the one about to start) with `message`."""
        token = self._token
        if token is not None:
            token.cancel(message)

    def close(self) -> None:
        self.vm.close()
