"""Decoding of C ABI requests the way the reference's serde structs decode them.

A request is refused with the reference's texts: `<fn> requires one non-null JSON buffer`,
`<fn> received invalid UTF-8 input: ...`, `<fn> received invalid JSON input: <serde detail>`,
where the serde detail of a refused field carries serde_json's ` at line L column C`.  Fields are
checked in document order (as serde reads them), missing required fields after the whole object,
unknown fields are ignored.  The value checks, the JSON loader and the positions are
_ref.serde_text's, shared with runlua and the lease requests.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from luaskills_runtime._ref.serde_text import (
    JsonSyntaxError, RequestShapeError, expect_bool, expect_optional_string, expect_optional_u64,
    expect_string, expect_u64, invalid_type, load_json, located, unexpected, utf8_error_text,
)


class FfiRequestError(Exception):
    """A request the C ABI refuses; str() is the whole error text of the envelope."""


class _Refused(Exception):
    """A field check failed at `path` (at_start: refused before reading a map/sequence)."""

    def __init__(self, detail: str, path: tuple, at_start: bool = False):
        super().__init__(detail)
        self.detail, self.path, self.at_start = detail, path, at_start


def _json_value(value: Any) -> Any:
    return value  # a serde_json::Value field: whatever json decoded is valid


def _usize(value: Any) -> int:
    return expect_u64(value, "usize")


def _strings(value: Any) -> list:
    if not isinstance(value, list):
        raise invalid_type(value, "a sequence")
    return value  # items are checked by Struct._read with their own positions


def _authority(value: Any) -> Optional[str]:
    """SkillManagementAuthority (snake_case unit variants), optional."""
    if value is None:
        return None
    if not isinstance(value, str):
        # serde_json's deserialize_enum accepts only a string or a map here
        raise RequestShapeError("expected value")
    if value not in ("system", "delegated_tool"):
        raise RequestShapeError(f"unknown variant `{value}`, expected `system` or `delegated_tool`")
    return value


class Field:
    __slots__ = ("check", "required", "default", "struct", "optional_struct", "items")

    def __init__(self, check: Optional[Callable[[Any], Any]] = None, *, required: bool = False,
                 default: Any = None, struct: "Optional[Struct]" = None, optional: bool = False,
                 items: Optional[Callable[[Any], Any]] = None):
        self.check = check
        self.required = required
        self.default = default
        self.struct = struct
        self.optional_struct = optional
        self.items = items


def _fresh(default):
    return default() if callable(default) else default


class Struct:
    """One serde struct: its name (for "expected struct X") and fields."""

    def __init__(self, name: str, fields: Dict[str, Field]):
        self.name = name
        self.fields = fields

    def read(self, value: Any, path: tuple = ()) -> dict:
        if not isinstance(value, dict):
            raise _Refused(f"invalid type: {unexpected(value)}, expected struct {self.name}", path,
                           at_start=isinstance(value, list))
        out = {}
        fields = self.fields
        for key, item in value.items():  # a repeated key: its last value (unchecked)
            field = fields.get(key)
            if field is None:
                continue
            struct = field.struct
            if struct is not None:
                out[key] = None if item is None and field.optional_struct else struct.read(item, path + (key,))
                continue
            try:
                out[key] = field.check(item)
            except RequestShapeError as error:
                raise _Refused(str(error), path + (key,), isinstance(item, (dict, list))) from None
            if field.items is not None:
                self._read_items(field.items, item, path + (key,))
        if len(out) != len(fields):
            for key, field in fields.items():
                if key not in out:
                    if field.required:
                        raise _Refused(f"missing field `{key}`", path)
                    out[key] = _fresh(field.default)
        return out

    @staticmethod
    def _read_items(check, items: list, path: tuple) -> None:
        for index, element in enumerate(items):
            try:
                check(element)
            except RequestShapeError as error:
                raise _Refused(str(error), path + (index,), isinstance(element, (dict, list))) from None


def decode(function_name: str, data: Optional[bytes], length: int, struct: Struct) -> Tuple[dict, str]:
    """The request of one call as (fields, JSON text); raises FfiRequestError."""
    if data is None:
        if length == 0:
            raise FfiRequestError(f"{function_name} requires one non-null JSON buffer")
        raise FfiRequestError(f"{function_name} received null JSON buffer with non-zero len")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FfiRequestError(f"{function_name} received invalid UTF-8 input: "
                              f"{utf8_error_text(error)}") from None
    try:
        value = load_json(text)
        return struct.read(value), text
    except JsonSyntaxError as error:  # the detail already has the position
        raise FfiRequestError(f"{function_name} received invalid JSON input: {error}") from None
    except _Refused as refused:
        detail = located(refused.detail, text, refused.path, refused.at_start)
        raise FfiRequestError(f"{function_name} received invalid JSON input: {detail}") from None
    except RecursionError:
        raise FfiRequestError(f"{function_name} received invalid JSON input: "
                              f"recursion limit exceeded") from None


# ---- the reference's request structs (luaskills 0.4.2 src/ffi, runtime_options) ---------------

def _optional_path(value: Any) -> Optional[str]:
    return expect_optional_string(value)


def _dict():
    return {}


ENGINE_ID = Field(expect_u64, required=True)
AUTHORITY = Field(_authority)

POOL_CONFIG = Struct("LuaRuntimePoolConfig", {
    "min_size": Field(_usize, required=True),
    "max_size": Field(_usize, required=True),
    "idle_ttl_secs": Field(expect_u64, required=True),
})

CAPABILITIES = Struct("LuaRuntimeCapabilityOptions", {
    "enable_skill_management_bridge": Field(expect_bool, default=False),
    "enable_managed_io_compat": Field(expect_bool, required=True),
})

_HOST_PATHS = ("runtime_root", "temp_dir", "resources_dir", "lua_packages_dir",
               "host_provided_tool_root", "host_provided_lua_root", "host_provided_ffi_root",
               "system_lua_lib_dir", "download_cache_root", "skill_config_file_path",
               "sqlite_library_path", "lancedb_library_path")

HOST_OPTIONS = Struct("LuaRuntimeHostOptions", {
    **{name: Field(_optional_path) for name in _HOST_PATHS},
    "dependency_dir_name": Field(expect_string, required=True),
    "state_dir_name": Field(expect_string, required=True),
    "database_dir_name": Field(expect_string, required=True),
    "allow_network_download": Field(expect_bool, required=True),
    "github_base_url": Field(expect_optional_string),
    "github_api_base_url": Field(expect_optional_string),
    "reserved_entry_names": Field(_strings, required=True, items=expect_string),
    "ignored_skill_ids": Field(_strings, default=list, items=expect_string),
    "runlua_pool_config": Field(struct=POOL_CONFIG, optional=True),
    "capabilities": Field(struct=CAPABILITIES, default=lambda: {
        "enable_skill_management_bridge": False, "enable_managed_io_compat": True}),
})

ENGINE_OPTIONS = Struct("LuaEngineOptions", {
    "pool_config": Field(struct=POOL_CONFIG, required=True),
    "host_options": Field(struct=HOST_OPTIONS, required=True),
})

ENGINE_NEW = Struct("EngineNewJsonRequest", {"options": Field(struct=ENGINE_OPTIONS, required=True)})
ENGINE_ID_REQUEST = Struct("EngineIdJsonRequest", {"engine_id": ENGINE_ID})

CLIENT_INFO = Struct("RuntimeClientInfo", {
    "kind": Field(expect_optional_string), "name": Field(expect_optional_string), "version": Field(expect_optional_string),
})

REQUEST_CONTEXT = Struct("RuntimeRequestContext", {
    "request_id": Field(expect_optional_string),
    "client_name": Field(expect_optional_string),
    "transport_name": Field(expect_optional_string),
    "session_id": Field(expect_optional_string),
    "client_info": Field(struct=CLIENT_INFO, optional=True),
    "client_capabilities": Field(_json_value, default=_dict),
})

INVOCATION_CONTEXT = Struct("LuaInvocationContext", {
    "request_context": Field(struct=REQUEST_CONTEXT, optional=True),
    "client_budget": Field(_json_value, required=True),
    "tool_config": Field(_json_value, required=True),
})

RUN_LUA = Struct("RunLuaJsonRequest", {
    "engine_id": ENGINE_ID,
    "code": Field(expect_string, required=True),
    "args": Field(_json_value, default=_dict),
    "invocation_context": Field(struct=INVOCATION_CONTEXT, optional=True),
    # the flattened fields of the core's eval request, used when invocation_context is absent
    "request_context": Field(struct=REQUEST_CONTEXT, optional=True),
    "client_budget": Field(_json_value),
    "tool_config": Field(_json_value),
})

LEASE_CREATE = Struct("RuntimeSessionCreateJsonRequest", {
    "engine_id": ENGINE_ID,
    "sid": Field(expect_string, required=True),
    "ttl_sec": Field(expect_optional_u64),
    "replace": Field(expect_bool, default=False),
    "cwd": Field(expect_optional_string),
    "workspace_root": Field(expect_optional_string),
    "lua_roots": Field(_strings, default=list, items=expect_string),
    "c_roots": Field(_strings, default=list, items=expect_string),
    "mounts": Field(_json_value, default=_dict),
    "authority": AUTHORITY,
})

LEASE_EVAL = Struct("RuntimeSessionEvalJsonRequest", {
    "engine_id": ENGINE_ID,
    "lease_id": Field(expect_string, required=True),
    "sid": Field(expect_optional_string),
    "generation": Field(expect_optional_u64),
    "code": Field(expect_string, required=True),
    "args": Field(_json_value, default=_dict),
    "timeout_ms": Field(expect_u64, default=60_000),
    "invocation_context": Field(struct=INVOCATION_CONTEXT, optional=True),
    "request_context": Field(struct=REQUEST_CONTEXT, optional=True),
    "client_budget": Field(_json_value),
    "tool_config": Field(_json_value),
    "authority": AUTHORITY,
})

LEASE_ADDRESS = Struct("RuntimeSessionLeaseJsonRequest", {
    "engine_id": ENGINE_ID,
    "lease_id": Field(expect_string, required=True),
    "sid": Field(expect_optional_string),
    "generation": Field(expect_optional_u64),
    "authority": AUTHORITY,
})

LEASE_LIST = Struct("RuntimeSessionListJsonRequest", {
    "engine_id": ENGINE_ID,
    "sid": Field(expect_optional_string),
    "authority": AUTHORITY,
})

# skill-package entry points: only the engine id is read (then they answer that skills are not
# part of this runtime)
ENGINE_ONLY = Struct("EngineJsonRequest", {"engine_id": ENGINE_ID})


def invocation_fields(request: dict) -> dict:
    """The context of a run_lua / eval request as the core's flattened fields (invocation_context
    first, else the flattened fields given directly; `{}` defaults)."""
    context = request["invocation_context"]
    if context is None:
        context = request
    budget = context.get("client_budget")
    tool_config = context.get("tool_config")
    return {
        "request_context": context.get("request_context"),
        "client_budget": {} if budget is None else budget,
        "tool_config": {} if tool_config is None else tool_config,
    }
