"""LuaEngine: the host-facing object that owns the VM pools, sessions and leases."""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Dict, Hashable, Mapping, Optional, Tuple

from luaskills_runtime._ref.rust import is_blank
from luaskills_runtime._ref.serde_text import RequestShapeError
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.guard import CANCEL_MESSAGE, CancelToken, prepare_guarded_vm
from luaskills_runtime.lua.guard_mechanism import guard_mechanism
from luaskills_runtime.lease_handle import Lease, check_failure
from luaskills_runtime.leases.requests import CreateRequest, EvalRequest, LeaseRequest, ListRequest
from luaskills_runtime.leases.requests import invocation_scope
from luaskills_runtime.leases import PUBLIC, SYSTEM, RuntimeLeases, dump_payload
from luaskills_runtime.options import HostOptions
from luaskills_runtime.lua.outcome import RunStatus
from luaskills_runtime.lua.pool import VmPool
from luaskills_runtime.lua.run_lua_guard import check_timeout_ms, run_guarded_chunk, run_values
from luaskills_runtime.runlua import RunluaService, parse_request_json, request_from_mapping
from luaskills_runtime.text import default_mode, normalize_encoding
from luaskills_runtime.lua.vm import MAIN, RUN_LUA_WRAPPER, LuaVM
from luaskills_runtime.lua.luajson import json_to_lua, lua_to_json
from luaskills_runtime.vulcan import new_vm
from luaskills_runtime.types import (CreateLeaseFields, EvalLeaseFields, LeaseCancelPayload,
                                     LeaseClosePayload, LeaseCreatePayload, LeaseEvalPayload,
                                     LeaseIdentityFields, LeaseListPayload, LeaseStatusPayload,
                                     ListLeaseFields, OpenLeaseFields, Unpack)

# The request fields each dict lease method accepts (unknown keyword arguments raise TypeError).
_LEASE_FIELDS = {
    "create": frozenset(f.name for f in dataclasses.fields(CreateRequest)),
    "eval": frozenset(f.name for f in dataclasses.fields(EvalRequest)),
    "status": frozenset(f.name for f in dataclasses.fields(LeaseRequest)),
    "close": frozenset(f.name for f in dataclasses.fields(LeaseRequest)),
    "cancel": frozenset(f.name for f in dataclasses.fields(LeaseRequest)),
    "list": frozenset(f.name for f in dataclasses.fields(ListRequest)),
}


class MainVM:
    """A pooled run_lua VM: a LuaVM (with vulcan) and, once a cancellable run needed it, its
    guard control (prepared lazily: most run_lua calls carry no request_id)."""

    def __init__(self, vm: LuaVM):
        self.vm = vm
        self._control = None   # prepare_guarded_vm's control, made on first use

    @property
    def broken(self) -> bool:
        return self.vm.broken

    def guard_control(self):
        if self._control is None:
            self._control = prepare_guarded_vm(self.vm)
        return self._control

    def close(self) -> None:
        self.vm.close()


class EngineState:
    """What every VM of one engine shares: options, default text mode, the engine itself."""

    def __init__(self, engine: "LuaEngine", options: HostOptions):
        self.engine = engine
        self.options = options
        label = options.default_text_encoding
        if label is None or is_blank(str(label)):
            self.default_text_mode = default_mode()
        else:
            self.default_text_mode = normalize_encoding(label)


class LuaEngine:
    """Runs Lua code for a host.  Thread-safe; use as a context manager or call close()."""

    def __init__(self, options: Optional[HostOptions] = None) -> None:
        self.options = options if options is not None else HostOptions()
        self._state = EngineState(self, self.options)
        self._closed = False
        self._close_lock = threading.Lock()
        self._main_pool = VmPool(
            self.options.main_pool,
            lambda: MainVM(new_vm(self._state, MAIN, lua_exec=self._lua_exec)), "main")
        self.runlua_service = RunluaService(self._state)
        self._runtime_leases = RuntimeLeases(self._state)
        self._run_lua_lock = threading.Lock()
        self._run_lua_running: Dict[Hashable, Tuple[CancelToken, LuaVM]] = {}

    # ---- run_lua -------------------------------------------------------------------------------
    def run_lua(self, code: str, args: Any = None, *, timeout_ms: Optional[int] = None,
                request_id: Optional[Hashable] = None,
                invocation_context: Optional[Mapping[str, Any]] = None) -> Any:
        """Run code on a main VM with `args` as a local; returns its first value as JSON data.

        `timeout_ms` (None: no deadline) stops the run through the timeout guard after that many
        milliseconds (it raises LuaSkillsError ``... luaexec execution timed out after N ms``).
        With `request_id`, ``engine.cancel(request_id)`` from another thread stops the run (it
        raises LuaSkillsError ``... luaexec execution cancelled by the host``).  Either way the
        process sessions and exec trees its VM started are killed.  With the ``jit-profile``
        guard the JIT stays on for such runs.  `invocation_context` (`{request_context,
        client_budget, tool_config}`, as luaskills' LuaInvocationContext) fills `vulcan.context`
        for this call.  Lua errors raise LuaSkillsError."""
        self._check_open()
        timeout_ms = check_timeout_ms(timeout_ms)
        if not isinstance(code, str):
            raise LuaSkillsError(f"run_lua: code must be a string, got {type(code).__name__}")
        scope: Dict[str, Any] = {}
        if invocation_context is not None:
            try:
                scope = invocation_scope(invocation_context)
            except RequestShapeError as error:
                raise LuaSkillsError(f"run_lua: invalid invocation_context: {error}") from None
        main_vm: MainVM = self._main_pool.acquire()
        vm = main_vm.vm
        token = None
        try:
            if request_id is not None:
                token = self._register_run_lua(request_id, vm)
                vm.set_log_fields(luaskills_request_id=request_id)
            vm.reset_scope(**scope)
            run_error = result = None
            try:
                vm.set_global("__runlua_args", json_to_lua(vm.runtime, args if args is not None else {},
                                                           top_level_args=True))
                wrapped = RUN_LUA_WRAPPER.format(code=code)
                if token is None and timeout_ms is None:
                    values = vm.run_chunk(wrapped, "=run_lua")
                else:
                    values = _run_guarded(main_vm, wrapped, timeout_ms, token)
                result = lua_to_json(values[0] if values else None)
            except LuaSkillsError as error:
                run_error = f"Lua run_lua error: {error}"
            cleanup_error = None
            try:
                vm.reset_scope()
            except LuaSkillsError as error:
                cleanup_error = str(error)
        finally:
            if token is not None:
                self._unregister_run_lua(request_id, token)
                vm.set_log_fields(luaskills_request_id=None)
            self._main_pool.release(main_vm)
        if run_error and cleanup_error:
            raise LuaSkillsError(f"{run_error}; pooled Lua VM cleanup failed: {cleanup_error}")
        if run_error or cleanup_error:
            raise LuaSkillsError(run_error or cleanup_error)
        return result

    def _register_run_lua(self, request_id: Hashable, vm: LuaVM) -> CancelToken:
        token = CancelToken()
        with self._run_lua_lock:
            if request_id in self._run_lua_running:
                raise LuaSkillsError(f"run_lua request id `{request_id}` is already running")
            self._run_lua_running[request_id] = (token, vm)
        return token

    def _unregister_run_lua(self, request_id: Hashable, token: CancelToken) -> None:
        with self._run_lua_lock:
            entry = self._run_lua_running.get(request_id)
            if entry is not None and entry[0] is token:
                del self._run_lua_running[request_id]

    def cancel(self, request_id: Hashable) -> bool:
        """Stop the run_lua call or runlua request started with `request_id` and kill the
        process trees its VM started; the call then fails with ``luaexec execution cancelled by
        the host``.  False when nothing with that id is running.  Callable from any thread."""
        found = self._cancel_run_lua(request_id)
        return self.runlua_service.cancel(request_id) or found

    def _cancel_run_lua(self, request_id: Hashable) -> bool:
        """Stop the run_lua call running under `request_id` and kill its VM's process trees."""
        with self._run_lua_lock:
            entry = self._run_lua_running.get(request_id)
        if entry is None:
            return False
        token, vm = entry
        token.cancel(CANCEL_MESSAGE)
        vm.kill_resources()  # a session read or exec blocked in Python returns at once
        return True

    # ---- runlua (luaskills_runtime.runlua) ------------------------------------------------------
    def execute_runlua_request_json_inline(self, request_json: str, *,
                                           request_id: Optional[Hashable] = None) -> str:
        """Run a runlua request given as JSON; returns the Markdown report (SPEC 8).

        Request errors raise LuaSkillsError; pass `request_id` to be able to cancel_runlua()."""
        self._check_open()
        return self.runlua_service.run(parse_request_json(request_json), request_id).markdown

    def execute_runlua_request_inline(self, request: Mapping[str, Any], *,
                                      request_id: Optional[Hashable] = None) -> str:
        """Dict twin of execute_runlua_request_json_inline (same fields, same Markdown)."""
        self._check_open()
        return self.runlua_service.run(request_from_mapping(request), request_id).markdown

    def _lua_exec(self, data: Any, caller_tool_name: Optional[str]) -> str:
        """`vulcan.runtime.lua.exec` of main VMs: a runlua request from Lua."""
        request = request_from_mapping(data, "luaexec input is invalid: ")
        request.caller_tool_name = caller_tool_name
        return self.runlua_service.execute(request)

    def cancel_runlua(self, request_id: Hashable) -> bool:
        """Stop the runlua request started with `request_id`; it ends as FAILED with
        `luaexec execution cancelled by the host`.  False when no such request is running."""
        return self.runlua_service.cancel(request_id)

    # ---- runtime leases (luaskills_runtime.leases) ----------------------------------------------
    # Each *_json method takes and returns JSON text like the reference; its twin without the
    # suffix takes a dict (or keyword arguments) and returns the payload dict.  Malformed
    # requests raise LuaSkillsError; lease-level failures are {"ok": false, ...} payloads.
    def _lease_json(self, op: str, profile: str, request_json: str) -> str:
        self._check_open()
        return dump_payload(getattr(self._runtime_leases, op)(request_json, profile, from_json=True))

    def _lease_dict(self, op: str, profile: str, request: Optional[Mapping[str, Any]],
                    fields: Mapping[str, Any]) -> Dict[str, Any]:
        self._check_open()
        if request is not None and fields:
            raise TypeError("pass the request as a dict or as keyword arguments, not both")
        unknown = sorted(set(fields) - _LEASE_FIELDS[op])
        if unknown:
            name = ("" if profile == PUBLIC else "system_") + op
            raise TypeError(f"{name} runtime lease: unexpected keyword argument(s) "
                            f"{', '.join(unknown)}; accepted: "
                            f"{', '.join(sorted(_LEASE_FIELDS[op]))}")
        return getattr(self._runtime_leases, op)(  # type: ignore[no-any-return]
            request if request is not None else dict(fields), profile, from_json=False)

    def create_runtime_lease_json(self, request_json: str) -> str:
        """Create a runtime lease (JSON in, JSON out)."""
        return self._lease_json("create", PUBLIC, request_json)

    def eval_runtime_lease_json(self, request_json: str) -> str:
        """Run code in a runtime lease (JSON in, JSON out)."""
        return self._lease_json("eval", PUBLIC, request_json)

    def runtime_lease_status_json(self, request_json: str) -> str:
        """The status of a runtime lease (JSON in, JSON out)."""
        return self._lease_json("status", PUBLIC, request_json)

    def list_runtime_leases_json(self, request_json: str) -> str:
        """List the runtime leases (JSON in, JSON out)."""
        return self._lease_json("list", PUBLIC, request_json)

    def close_runtime_lease_json(self, request_json: str) -> str:
        """Close a runtime lease (JSON in, JSON out)."""
        return self._lease_json("close", PUBLIC, request_json)

    def cancel_runtime_lease_json(self, request_json: str) -> str:
        """Stop the eval running in a runtime lease (JSON in, JSON out)."""
        return self._lease_json("cancel", PUBLIC, request_json)

    def create_system_runtime_lease_json(self, request_json: str) -> str:
        """Create a system runtime lease (JSON in, JSON out)."""
        return self._lease_json("create", SYSTEM, request_json)

    def eval_system_runtime_lease_json(self, request_json: str) -> str:
        """Run code in a system runtime lease (JSON in, JSON out)."""
        return self._lease_json("eval", SYSTEM, request_json)

    def system_runtime_lease_status_json(self, request_json: str) -> str:
        """The status of a system runtime lease (JSON in, JSON out)."""
        return self._lease_json("status", SYSTEM, request_json)

    def list_system_runtime_leases_json(self, request_json: str) -> str:
        """List the system runtime leases (JSON in, JSON out)."""
        return self._lease_json("list", SYSTEM, request_json)

    def close_system_runtime_lease_json(self, request_json: str) -> str:
        """Close a system runtime lease (JSON in, JSON out)."""
        return self._lease_json("close", SYSTEM, request_json)

    def cancel_system_runtime_lease_json(self, request_json: str) -> str:
        """Stop the eval running in a system runtime lease (JSON in, JSON out)."""
        return self._lease_json("cancel", SYSTEM, request_json)

    def create_runtime_lease(self, request: Optional[CreateLeaseFields] = None,
            **fields: Unpack[CreateLeaseFields]) -> LeaseCreatePayload:
        """Create a runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("create", PUBLIC, request, fields)  # type: ignore[return-value]

    def eval_runtime_lease(self, request: Optional[EvalLeaseFields] = None,
            **fields: Unpack[EvalLeaseFields]) -> LeaseEvalPayload:
        """Run code in a runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("eval", PUBLIC, request, fields)  # type: ignore[return-value]

    def runtime_lease_status(self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseStatusPayload:
        """The status of a runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("status", PUBLIC, request, fields)  # type: ignore[return-value]

    def list_runtime_leases(self, request: Optional[ListLeaseFields] = None,
            **fields: Unpack[ListLeaseFields]) -> LeaseListPayload:
        """List the runtime leases (dict or keywords in, dict out)."""
        return self._lease_dict("list", PUBLIC, request, fields)  # type: ignore[return-value]

    def close_runtime_lease(self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseClosePayload:
        """Close a runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("close", PUBLIC, request, fields)  # type: ignore[return-value]

    def cancel_runtime_lease(self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseCancelPayload:
        """Stop the eval running in a runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("cancel", PUBLIC, request, fields)  # type: ignore[return-value]

    def create_system_runtime_lease(self, request: Optional[CreateLeaseFields] = None,
            **fields: Unpack[CreateLeaseFields]) -> LeaseCreatePayload:
        """Create a system runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("create", SYSTEM, request, fields)  # type: ignore[return-value]

    def eval_system_runtime_lease(self, request: Optional[EvalLeaseFields] = None,
            **fields: Unpack[EvalLeaseFields]) -> LeaseEvalPayload:
        """Run code in a system runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("eval", SYSTEM, request, fields)  # type: ignore[return-value]

    def system_runtime_lease_status(self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseStatusPayload:
        """The status of a system runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("status", SYSTEM, request, fields)  # type: ignore[return-value]

    def list_system_runtime_leases(self, request: Optional[ListLeaseFields] = None,
            **fields: Unpack[ListLeaseFields]) -> LeaseListPayload:
        """List the system runtime leases (dict or keywords in, dict out)."""
        return self._lease_dict("list", SYSTEM, request, fields)  # type: ignore[return-value]

    def close_system_runtime_lease(self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseClosePayload:
        """Close a system runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("close", SYSTEM, request, fields)  # type: ignore[return-value]

    def cancel_system_runtime_lease(self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseCancelPayload:
        """Stop the eval running in a system runtime lease (dict or keywords in, dict out)."""
        return self._lease_dict("cancel", SYSTEM, request, fields)  # type: ignore[return-value]


    def _kill_lease_processes(self, lease_id: str) -> bool:
        """Kill what the lease's VM started (sessions, exec trees); for cancels that must not
        wait for a blocked read or exec."""
        return self._runtime_leases.manager.kill_processes(lease_id)

    # ---- lease handles (luaskills_runtime.lease_handle) ------------------------------------------
    def open_lease(self, sid: str, *, ttl_sec: Optional[int] = None, replace: bool = False,
                   system: bool = False,
                   **create_fields: Unpack[OpenLeaseFields]) -> Lease:
        """Create a runtime lease for `sid` and return its handle (see :class:`Lease`).

        `create_fields` are the other create request fields (``cwd``, ``workspace_root``,
        ``lua_roots``, ``c_roots``, ``mounts``); `system` selects the system_lua_lib profile.
        Raises LeaseError when the lease cannot be created (e.g. ``lease_exists``)."""
        create = self.create_system_runtime_lease if system else self.create_runtime_lease
        payload = create(sid=sid, ttl_sec=ttl_sec, replace=replace, **create_fields)
        check_failure(payload)
        return Lease(payload, self._lease_caller(system))  # type: ignore[arg-type]

    def _lease_caller(self, system: bool) -> Callable[[str, Dict[str, Any]], Dict[str, Any]]:
        profile = SYSTEM if system else PUBLIC

        def call(op: str, fields: Dict[str, Any]) -> Dict[str, Any]:
            return self._lease_dict(op, profile, None, fields)
        return call

    # ---- lifetime ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise LuaSkillsError("LuaEngine is closed")

    @property
    def guard_mechanism(self) -> str:
        """The timeout guard VMs created now get: "jit-profile", "jit-off-hook" or "lua-hook"
        (luaskills_runtime.lua.guard_mechanism; engine_info()["guard"] says the same)."""
        return guard_mechanism()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    def close(self) -> None:
        """Close leases, kill every process session the engine's VMs opened, free the VMs."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        with self._run_lua_lock:
            running = list(self._run_lua_running.values())
        for token, vm in running:
            token.cancel("luaexec execution cancelled: the engine is closing")
            vm.kill_resources()
        self._runtime_leases.shutdown()
        self.runlua_service.close()
        self._main_pool.close()

    def __enter__(self) -> "LuaEngine":
        """Use as a context manager: the engine is closed when the block ends."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Leaving the ``with`` block closes the engine."""
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _run_guarded(main_vm: MainVM, wrapped: str, timeout_ms: Optional[int],
                 token: Optional[CancelToken]) -> Tuple[Any, ...]:
    """Run wrapped run_lua code under the VM's guard (deadline and/or `token`); returns its values
    or raises LuaSkillsError with the plain reason (as vm.run_chunk does).  A stopped run's
    process trees die with it."""
    outcome = run_guarded_chunk(main_vm.guard_control(), wrapped, b"=run_lua",
                                timeout_ms=timeout_ms, cancel=token)
    if outcome.status in (RunStatus.CANCELLED, RunStatus.TIMEOUT):
        main_vm.vm.kill_resources()
    return run_values(outcome)
