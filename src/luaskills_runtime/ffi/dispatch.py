"""The one Python function the exported C entry points call (native/ffi_json.c).

dispatch(function_name, request_bytes_or_None, length) -> the UTF-8 envelope
`{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.  Engines live in a registry keyed by
the ids engine_new_json hands out.  Nothing here holds a lock while Lua runs, so calls on
different engines (and threads) run in parallel; lupa releases the GIL while Lua runs.
"""
from __future__ import annotations

import itertools
import json
import threading
from typing import Callable, Dict, Optional

from luaskills_runtime.engine import LuaEngine
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.ffi import requests as rq
from luaskills_runtime.ffi.engine_options import host_options_from
from luaskills_runtime.ffi.requests import FfiRequestError, decode
from luaskills_runtime.leases import dump_payload

FFI_VERSION = "0.4.2"
PROTOCOL = "json-cabi"

SKILLS_OUTSIDE = ("skill packages are outside this runtime: luaskills-runtime runs Lua code "
                  "(run_lua and runtime leases) and does not load, list, call, configure or "
                  "manage skills")


class EngineRegistry:
    """Engines by FFI id.  Ids count up from 1 and are never reused."""

    def __init__(self):
        self._lock = threading.Lock()
        self._engines: Dict[int, LuaEngine] = {}
        self._ids = itertools.count(1)

    def add(self, engine: LuaEngine) -> int:
        with self._lock:
            engine_id = next(self._ids)
            self._engines[engine_id] = engine
        return engine_id

    def get(self, engine_id: int) -> LuaEngine:
        engine = self._engines.get(engine_id)  # a dict read is atomic: no lock on the hot path
        if engine is None:
            raise FfiRequestError(f"FFI engine {engine_id} not found")
        return engine

    def remove(self, engine_id: int) -> LuaEngine:
        with self._lock:
            engine = self._engines.pop(engine_id, None)
        if engine is None:
            raise FfiRequestError(f"FFI engine {engine_id} not found")
        return engine


ENGINES = EngineRegistry()


# ---- handlers: (function name, request bytes, length) -> result as JSON text --------------------

def _version(name, data, length) -> str:
    return dump_payload({"ffi_version": FFI_VERSION, "protocol": PROTOCOL})


def _describe(name, data, length) -> str:
    from luaskills_runtime._native.ffi import exported_functions
    return dump_payload({"ffi_version": FFI_VERSION, "exported_functions": exported_functions()})


def _engine_new(name, data, length) -> str:
    request, _ = decode(name, data, length, rq.ENGINE_NEW)
    engine = LuaEngine(host_options_from(request["options"]))
    return '{"engine_id":%d}' % ENGINES.add(engine)


def _engine_free(name, data, length) -> str:
    request, _ = decode(name, data, length, rq.ENGINE_ID_REQUEST)
    ENGINES.remove(request["engine_id"]).close()
    return '{"freed":true}'


def _run_lua(name, data, length) -> str:
    request, _ = decode(name, data, length, rq.RUN_LUA)
    engine = ENGINES.get(request["engine_id"])
    context = None
    if request["invocation_context"] is not None or request["request_context"] is not None \
            or request["client_budget"] is not None or request["tool_config"] is not None:
        context = rq.invocation_fields(request)
    return dump_payload(engine.run_lua(request["code"], request["args"], invocation_context=context))


def _require_authority(name: str, request: dict) -> None:
    if request["authority"] is None:
        raise FfiRequestError(f"{name} requires host-injected authority: use 'system' or 'delegated_tool'")


def _lease_handler(action: str, struct: rq.Struct, system: bool) -> Callable:
    method_name = {
        "create": "create_{}runtime_lease", "eval": "eval_{}runtime_lease",
        "status": "{}runtime_lease_status", "list": "list_{}runtime_leases",
        "close": "close_{}runtime_lease",
    }[action].format("system_" if system else "")
    method = getattr(LuaEngine, method_name)

    def handler(name, data, length) -> str:
        request, _ = decode(name, data, length, struct)
        if system:
            _require_authority(name, request)
        engine = ENGINES.get(request.pop("engine_id"))
        request.pop("authority")
        if action == "eval":
            request.update(rq.invocation_fields(request))
            del request["invocation_context"]
        return dump_payload(method(engine, request))

    return handler


def _skills_outside(name, data, length) -> str:
    request, _ = decode(name, data, length, rq.ENGINE_ONLY)
    ENGINES.get(request["engine_id"])
    raise FfiRequestError(SKILLS_OUTSIDE)


HANDLERS: Dict[str, Callable] = {
    "luaskills_ffi_version_json": _version,
    "luaskills_ffi_describe_json": _describe,
    "luaskills_ffi_engine_new_json": _engine_new,
    "luaskills_ffi_engine_free_json": _engine_free,
    "luaskills_ffi_run_lua_json": _run_lua,
}
_LEASE_STRUCTS = {"create": rq.LEASE_CREATE, "eval": rq.LEASE_EVAL, "status": rq.LEASE_ADDRESS,
                  "list": rq.LEASE_LIST, "close": rq.LEASE_ADDRESS}
for _action, _struct in _LEASE_STRUCTS.items():
    HANDLERS[f"luaskills_ffi_runtime_lease_{_action}_json"] = _lease_handler(_action, _struct, False)
    HANDLERS[f"luaskills_ffi_system_runtime_lease_{_action}_json"] = _lease_handler(_action, _struct, True)


def _error(message: str) -> bytes:
    return json.dumps({"ok": False, "error": message}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8", "replace")


def dispatch(name: str, data: Optional[bytes], length: int) -> bytes:
    """Answer one C ABI call (see the module docstring); never raises for request or runtime
    errors, which become error envelopes."""
    try:
        result = HANDLERS.get(name, _skills_outside)(name, data, length)
    except (FfiRequestError, LuaSkillsError) as error:
        return _error(str(error))
    except Exception as error:  # a bug must reach the host as an answer, not kill its process
        return _error(f"{name}: internal error: {type(error).__name__}: {error}")
    return ('{"ok":true,"result":' + result + "}").encode("utf-8", "replace")
