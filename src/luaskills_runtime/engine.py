"""LuaEngine: the host-facing object that owns the VM pools, sessions and leases."""
from __future__ import annotations

import threading
from typing import Any, Hashable, Optional

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.guard import CancelToken
from luaskills_runtime.guard_mechanism import select_mechanism
from luaskills_runtime.leases import PUBLIC, SYSTEM, RuntimeLeases, dump_payload
from luaskills_runtime.options import HostOptions
from luaskills_runtime.pool import VmPool
from luaskills_runtime.run_lua_guard import check_timeout_ms, run_guarded_chunk
from luaskills_runtime.runlua import RunluaService, parse_request_json, request_from_mapping
from luaskills_runtime.text import default_mode, normalize_encoding
from luaskills_runtime.vm import MAIN, RUN_LUA_WRAPPER, LuaVM
from luaskills_runtime.luajson import json_to_lua, lua_to_json


class EngineState:
    """What every VM of one engine shares: options, default text mode, the engine itself."""

    def __init__(self, engine: "LuaEngine", options: HostOptions):
        self.engine = engine
        self.options = options
        label = options.default_text_encoding
        if label is None or not str(label).strip():
            self.default_text_mode = default_mode()
        else:
            self.default_text_mode = normalize_encoding(label)


class LuaEngine:
    """Runs Lua code for a host.  Thread-safe; use as a context manager or call close()."""

    def __init__(self, options: Optional[HostOptions] = None):
        self.options = options if options is not None else HostOptions()
        self._state = EngineState(self, self.options)
        self._closed = False
        self._close_lock = threading.Lock()
        self._main_pool = VmPool(self.options.main_pool, lambda: LuaVM(self._state, MAIN), "main")
        self.runlua_service = RunluaService(self._state)
        self._runtime_leases = RuntimeLeases(self._state)

    # ---- run_lua -------------------------------------------------------------------------------
    def run_lua(self, code: str, args: Any = None, *, timeout_ms: Optional[int] = None,
                cancel: Optional[CancelToken] = None) -> Any:
        """Run code on a main VM with `args` as a local; returns its first value as JSON data.

        timeout_ms (None: no deadline) and cancel (a guard.CancelToken; call its cancel() from any
        thread) stop the code through the timeout guard (run_lua_guard.py)."""
        self._check_open()
        timeout_ms = check_timeout_ms(timeout_ms)
        if not isinstance(code, str):
            raise LuaSkillsError(f"run_lua: code must be a string, got {type(code).__name__}")
        vm = self._main_pool.acquire()
        try:
            vm.reset_scope()
            run_error = result = None
            try:
                vm.set_global("__runlua_args", json_to_lua(vm.runtime, args if args is not None else {},
                                                           top_level_args=True))
                wrapped = RUN_LUA_WRAPPER.format(code=code)
                if timeout_ms is None and cancel is None:
                    values = vm.run_chunk(wrapped, "=run_lua")
                else:
                    values = run_guarded_chunk(vm, wrapped, "=run_lua", timeout_ms=timeout_ms,
                                               cancel=cancel)
                result = lua_to_json(values[0] if values else None)
            except LuaSkillsError as error:
                run_error = f"Lua run_lua error: {error}"
            cleanup_error = None
            try:
                vm.reset_scope()
            except LuaSkillsError as error:
                cleanup_error = str(error)
        finally:
            self._main_pool.release(vm)
        if run_error and cleanup_error:
            raise LuaSkillsError(f"{run_error}; pooled Lua VM cleanup failed: {cleanup_error}")
        if run_error or cleanup_error:
            raise LuaSkillsError(run_error or cleanup_error)
        return result

    # ---- runlua (luaskills_runtime.runlua) ------------------------------------------------------
    def execute_runlua_request_json_inline(self, request_json: str, *,
                                           request_id: Optional[Hashable] = None) -> str:
        """Run a runlua request given as JSON; returns the Markdown report (SPEC 8).

        Request errors raise LuaSkillsError; pass `request_id` to be able to cancel_runlua()."""
        self._check_open()
        return self.runlua_service.execute(parse_request_json(request_json), request_id)

    def execute_runlua_request_inline(self, request: dict, *,
                                      request_id: Optional[Hashable] = None) -> str:
        """Dict twin of execute_runlua_request_json_inline (same fields, same Markdown)."""
        self._check_open()
        return self.runlua_service.execute(request_from_mapping(request), request_id)

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

    def _lease_dict(self, op: str, profile: str, request: Optional[dict], fields: dict) -> dict:
        self._check_open()
        if request is not None and fields:
            raise TypeError("pass the request as a dict or as keyword arguments, not both")
        return getattr(self._runtime_leases, op)(request if request is not None else fields,
                                                 profile, from_json=False)

    def create_runtime_lease_json(self, request_json: str) -> str:
        return self._lease_json("create", PUBLIC, request_json)

    def eval_runtime_lease_json(self, request_json: str) -> str:
        return self._lease_json("eval", PUBLIC, request_json)

    def runtime_lease_status_json(self, request_json: str) -> str:
        return self._lease_json("status", PUBLIC, request_json)

    def list_runtime_leases_json(self, request_json: str) -> str:
        return self._lease_json("list", PUBLIC, request_json)

    def close_runtime_lease_json(self, request_json: str) -> str:
        return self._lease_json("close", PUBLIC, request_json)

    def cancel_runtime_lease_json(self, request_json: str) -> str:
        return self._lease_json("cancel", PUBLIC, request_json)

    def create_system_runtime_lease_json(self, request_json: str) -> str:
        return self._lease_json("create", SYSTEM, request_json)

    def eval_system_runtime_lease_json(self, request_json: str) -> str:
        return self._lease_json("eval", SYSTEM, request_json)

    def system_runtime_lease_status_json(self, request_json: str) -> str:
        return self._lease_json("status", SYSTEM, request_json)

    def list_system_runtime_leases_json(self, request_json: str) -> str:
        return self._lease_json("list", SYSTEM, request_json)

    def close_system_runtime_lease_json(self, request_json: str) -> str:
        return self._lease_json("close", SYSTEM, request_json)

    def cancel_system_runtime_lease_json(self, request_json: str) -> str:
        return self._lease_json("cancel", SYSTEM, request_json)

    def create_runtime_lease(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("create", PUBLIC, request, fields)

    def eval_runtime_lease(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("eval", PUBLIC, request, fields)

    def runtime_lease_status(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("status", PUBLIC, request, fields)

    def list_runtime_leases(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("list", PUBLIC, request, fields)

    def close_runtime_lease(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("close", PUBLIC, request, fields)

    def cancel_runtime_lease(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("cancel", PUBLIC, request, fields)

    def create_system_runtime_lease(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("create", SYSTEM, request, fields)

    def eval_system_runtime_lease(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("eval", SYSTEM, request, fields)

    def system_runtime_lease_status(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("status", SYSTEM, request, fields)

    def list_system_runtime_leases(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("list", SYSTEM, request, fields)

    def close_system_runtime_lease(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("close", SYSTEM, request, fields)

    def cancel_system_runtime_lease(self, request: Optional[dict] = None, **fields: Any) -> dict:
        return self._lease_dict("cancel", SYSTEM, request, fields)


    # ---- lifetime ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise LuaSkillsError("LuaEngine is closed")

    @property
    def guard_mechanism(self) -> str:
        """The timeout guard VMs created now get: "jit-profile" or "jit-off-hook"."""
        return select_mechanism()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close leases, kill every process session the engine's VMs opened, free the VMs."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._runtime_leases.shutdown()
        self.runlua_service.close()
        self._main_pool.close()

    def __enter__(self) -> "LuaEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
