"""The Lua side of one runtime lease: a dedicated LuaVM, its module roots, and running an eval.

Evals run through the shared guard (luaskills_runtime.lua.guard): the timeout guard stops the
code at its deadline or when the host cancels it.  With the jit-profile guard the JIT stays on
(the guard stops compiled loops too); with the jit-off-hook or lua-hook guard lease VMs run with
the JIT off for good (compiled traces never look at hooks, so a compiled loop could not be stopped
otherwise; the guard makes `jit.on` refuse for user code).
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional

from luaskills_runtime.lua.chunk_files import read_chunk
from luaskills_runtime.lua.cwd import CwdLockTimeout, working_directory
from luaskills_runtime._ref.rust import os_error_text
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.guard import CancelToken, guarded_call, prepare_guarded_vm, runner_outcome
from luaskills_runtime.lua.guard_mechanism import JIT_PROFILE
from luaskills_runtime.lua.outcome import RunStatus
from luaskills_runtime.leases.requests import EvalRequest
from luaskills_runtime.lua.luajson import json_to_lua, lua_to_json
from luaskills_runtime.lua.vm import LEASE, RUN_LUA_WRAPPER
from luaskills_runtime.vulcan import new_vm
from luaskills_runtime.vulcan.io_compat import install_managed_io

LOGGER = logging.getLogger("luaskills_runtime.leases")

EVAL_CHUNKNAME = b"=runtime_lease"
_CWD_WAIT_SLICE = 0.05  # how often an eval waiting for the cwd lock looks at its cancel token

_JIT_FUNCTIONS = read_chunk("luaskills_runtime.leases", "jit_functions.lua").encode()

_LEASE_RUN = read_chunk("luaskills_runtime.leases", "lease_run.lua").encode()

_RELEASE_HEAP = read_chunk("luaskills_runtime.leases", "release_heap.lua").encode()

_PREPEND_ROOTS = read_chunk("luaskills_runtime.leases", "prepend_roots.lua").encode()


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


def _table_or_none(to_lua, value):
    """A scope value for Lua; None where the scope's default ({} for these fields) applies."""
    if value is None or value == {} or value == []:
        return None
    return to_lua(value)


class EvalFailure(Exception):
    """An eval that failed; str() is the `message` of the eval_failed payload."""


class _ScopeFailure(Exception):
    """The request scope could not be reset (lease code damaged the vulcan namespace)."""


class _CwdFailure(Exception):
    """The lease's cwd could not be entered or restored; str() is the reference's text."""


class LeaseVM:
    """A dedicated LuaVM for one lease.  One eval at a time (the lease's busy lock ensures it);
    cancel() may be called from any thread."""

    def __init__(self, engine_state, paths: LeasePaths):
        options = engine_state.options
        self.paths = paths
        self.vm = new_vm(engine_state, LEASE, max_memory=options.max_memory_bytes)
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
            self.managed_io = install_managed_io(self.vm, self.control.current_limits)
            # The VM's scope reset (what vm.reset_scope calls) goes to the run function, which
            # saves a call from Python per eval (runlua does the same).
            globals_table = self.vm.runtime.globals()
            self._tables_to_release = (globals_table, globals_table[b"package"][b"loaded"])
            # The per-eval JIT-off check only matters to the guards that need the JIT off.
            jit_check = (None, None, None) if self.control.mechanism == JIT_PROFILE else \
                (self._jit_status, self._jit_off, self._jit_flush)
            self._run = self.vm.runtime.execute(
                _LEASE_RUN, globals_table, self.vm.scope_reset, self.vm.lua_message_of,
                *jit_check)
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
        to_lua = vm.bridge.to_lua
        args = request.args
        # Scope fields at their default ({} / nil) go over as nil: scope.lua fills them in.
        scope = (None if context is None else to_lua(context),
                 None if context is None or context.get("client_info") is None
                 else to_lua(context["client_info"]),
                 None if context is None else _table_or_none(to_lua, context.get("client_capabilities")),
                 _table_or_none(to_lua, request.client_budget),
                 _table_or_none(to_lua, request.tool_config))
        lua_args = json_to_lua(vm.runtime, args) if isinstance(args, (dict, list)) and args else None
        code = RUN_LUA_WRAPPER.format(code=request.code).encode("utf-8")
        try:
            values = self._run_guarded((code, EVAL_CHUNKNAME, lua_args) + scope, request.timeout_ms)
        except _ScopeFailure as error:
            vm.mark_broken()
            raise EvalFailure(f"request scope reset failed: {error}") from None
        except LuaSkillsError as error:
            message = f"Runtime session eval error: {error}"
            LOGGER.error("[LuaSkill:error] %s", message, extra=dict(vm.log_fields))
            raise EvalFailure(message) from None
        try:
            return lua_to_json(values[0] if values else None)
        except LuaSkillsError as error:
            raise EvalFailure(str(error)) from None

    def _run_guarded(self, run_args: tuple, timeout_ms: int) -> tuple:
        """Run the eval under the guard (in the lease's cwd, under the memory cap); returns the
        code's values or raises LuaSkillsError with the reference's display text."""
        token = self._token if self._token is not None else CancelToken()
        try:
            outcome = guarded_call(self.control, self._run_in_cwd, run_args, timeout_ms=timeout_ms,
                                   cancel=token)
        except _CwdFailure as error:
            raise LuaSkillsError(f"runtime error: {error}") from None
        if outcome.ok:   # the run chunk answered: its own outcome
            outcome = runner_outcome(self.control, outcome.values[0])
            if outcome.ok:
                return outcome.values
            if outcome.status is RunStatus.SCOPE:
                raise _ScopeFailure(outcome.reason)
        if outcome.status is RunStatus.MEMORY:
            # free what the failed code left behind, so the next eval starts with room
            self.vm.runtime.gccollect()
        raise LuaSkillsError(outcome.error)

    def _run_in_cwd(self, run_args: tuple):
        cwd = self.paths.cwd
        if cwd is None:
            return self._run_capped(run_args)
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
                raise _CwdFailure(f"runtime lease set cwd {cwd}: {os_error_text(error)}") from None
        failed = True
        try:
            answer = self._run_capped(run_args)
            failed = False
            return answer
        finally:
            try:
                switch.__exit__(None, None, None)
            except OSError as error:
                if not failed:
                    raise _CwdFailure(f"runtime lease restore cwd: {os_error_text(error)}") from None

    def _run_capped(self, run_args: tuple):
        if not self._memory_cap:
            return self._run(*run_args)
        runtime = self.vm.runtime
        runtime.set_max_memory(self._memory_cap)
        try:
            return self._run(*run_args)
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

    def close(self, release_heap: bool = True) -> None:
        """Kill what the lease's code opened (sessions, pipes, files) and, with release_heap,
        drop everything its globals and modules hold so the Lua heap shrinks now: the LuaVM
        object itself goes with Python's next cycle collection (the vulcan callbacks and the VM
        refer to each other), which can be much later than the lease's end.  Only call with
        release_heap while no eval runs on this VM."""
        self.vm.close()
        if release_heap:
            try:
                self._run = None
                self.vm.runtime.execute(_RELEASE_HEAP, *self._tables_to_release)
            except Exception:  # best effort: the VM is going away in any case
                pass
