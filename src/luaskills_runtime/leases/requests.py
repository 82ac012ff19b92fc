"""Parsing of runtime-lease requests (SPEC 9): JSON text or a dict -> typed request objects.

The reference decodes requests with serde; hosts may show its error details to users, so the
details here use serde's wording ("missing field `sid`", "invalid type: integer `5`, expected a
string", "expected value at line 1 column 1").  Type errors carry no line/column (serde adds
one; we only have it for syntax errors).  Unknown fields are ignored, as serde does by default.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime._ref.rust import rust_trim
from luaskills_runtime._ref.serde_text import (
    JsonSyntaxError, RequestShapeError, expect_bool, expect_optional_string, expect_optional_u64,
    expect_string, expect_u64, invalid_type, load_json, request_text, unexpected,
)

DEFAULT_EVAL_TIMEOUT_MS = 60_000
PUBLIC_DEFAULT_TTL_SEC = 600
TTL_MIN_SEC, TTL_MAX_SEC = 1, 3_600
SID_MAX_BYTES = 128


# ---- serde-like value checks (the generic ones are _ref.serde_text's expect_*) ------------------

def _string_list(value: Any) -> List[str]:
    if not isinstance(value, (list, tuple)):
        raise invalid_type(value, "a sequence")
    return [expect_string(item) for item in value]


def _json_value(value: Any) -> Any:
    """A serde_json::Value field: anything JSON can hold (dict twins may pass tuples)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise RequestShapeError(f"key must be a string, got {unexpected(key)}")
            out[key] = _json_value(item)
        return out
    raise RequestShapeError(f"invalid type: {unexpected(value)}, expected any valid JSON value")


_MISSING = object()


class _Fields:
    """Field access on one request object with serde's missing/duplicate rules."""

    __slots__ = ("data", "duplicates")

    def __init__(self, data: Any, struct_name: str):
        if not isinstance(data, dict):
            raise invalid_type(data, f"struct {struct_name}")
        self.data = data
        self.duplicates = getattr(data, "duplicate_keys", None)

    def get(self, name: str, convert, default=None, required: bool = False):
        value = self.data.get(name, _MISSING)
        if self.duplicates and name in self.duplicates:
            raise RequestShapeError(f"duplicate field `{name}`")
        if value is _MISSING:
            if required:
                raise RequestShapeError(f"missing field `{name}`")
            return default() if callable(default) else default
        return convert(value)


# ---- JSON text -> Python values -----------------------------------------------------------------

def _load_json(text: Any) -> Any:
    try:
        text = request_text(text)
    except JsonSyntaxError as error:
        raise RequestShapeError(str(error)) from None
    if not isinstance(text, str):
        raise RequestShapeError(f"request must be a JSON string, got {type(text).__name__}")
    try:
        return load_json(text)
    except JsonSyntaxError as error:
        raise RequestShapeError(str(error)) from None


def decode_request(raw: Any, what: str, *, from_json: bool):
    """JSON text (or, for the dict twins, a dict) -> Python data; bad JSON raises the reference's
    `Invalid runtime session <what> JSON: <detail>`."""
    try:
        return _load_json(raw) if from_json else raw
    except RequestShapeError as error:
        raise LuaSkillsError(f"Invalid runtime session {what} JSON: {error}") from None


def shape_error(what: str, error: RequestShapeError) -> LuaSkillsError:
    return LuaSkillsError(f"Invalid runtime session {what} JSON: {error}")


# ---- request types ------------------------------------------------------------------------------

@dataclass
class CreateRequest:
    sid: str
    ttl_sec: Optional[int] = None
    replace: bool = False
    cwd: Optional[str] = None
    workspace_root: Optional[str] = None
    lua_roots: List[str] = field(default_factory=list)
    c_roots: List[str] = field(default_factory=list)
    mounts: Any = field(default_factory=dict)
    policy: Optional[str] = None   # beyond the reference: the lease's policy profile


@dataclass
class EvalRequest:
    lease_id: str
    code: str
    sid: Optional[str] = None
    generation: Optional[int] = None
    args: Any = field(default_factory=dict)
    timeout_ms: int = DEFAULT_EVAL_TIMEOUT_MS
    request_context: Optional[dict] = None  # serialised RuntimeRequestContext, or None
    client_budget: Any = field(default_factory=dict)
    tool_config: Any = field(default_factory=dict)


@dataclass
class LeaseRequest:
    """status / close / cancel: which lease, with optional identity echoes."""
    lease_id: str
    sid: Optional[str] = None
    generation: Optional[int] = None


@dataclass
class ListRequest:
    sid: Optional[str] = None


def parse_create(data: Any) -> CreateRequest:
    f = _Fields(data, "RuntimeSessionCreateRequest")
    return CreateRequest(
        sid=f.get("sid", expect_string, required=True),
        ttl_sec=f.get("ttl_sec", expect_optional_u64),
        replace=f.get("replace", expect_bool, False),
        cwd=f.get("cwd", expect_optional_string),
        workspace_root=f.get("workspace_root", expect_optional_string),
        lua_roots=f.get("lua_roots", _string_list, list),
        c_roots=f.get("c_roots", _string_list, list),
        mounts=f.get("mounts", _json_value, dict),
        policy=f.get("policy", expect_optional_string),
    )


def _client_info(value: Any) -> Optional[dict]:
    if value is None:
        return None
    f = _Fields(value, "RuntimeClientInfo")
    info = {}
    for key in ("kind", "name", "version"):
        text = f.get(key, expect_optional_string)
        if text is not None:
            info[key] = text
    return info


def _request_context(value: Any) -> Optional[dict]:
    """RuntimeRequestContext as the reference serialises it into `vulcan.context.request`:
    absent optional fields are left out, client_capabilities defaults to {}."""
    if value is None:
        return None
    f = _Fields(value, "RuntimeRequestContext")
    context = {}
    for key in ("request_id", "client_name", "transport_name", "session_id"):
        text = f.get(key, expect_optional_string)
        if text is not None:
            context[key] = text
    info = f.get("client_info", _client_info)
    if info is not None:
        context["client_info"] = info
    context["client_capabilities"] = f.get("client_capabilities", _json_value, dict)
    return context


def invocation_scope(context: Any) -> dict:
    """A LuaInvocationContext (`{request_context, client_budget, tool_config}`, the last two
    required as in the reference) -> the request-scope fields it sets in `vulcan.context` for one
    call, the same ones a lease eval's flattened fields set.  Raises RequestShapeError."""
    f = _Fields(context, "LuaInvocationContext")
    request = f.get("request_context", _request_context)
    return {
        "request": request,
        "client_info": None if request is None else request.get("client_info"),
        "client_capabilities": None if request is None else request.get("client_capabilities"),
        "client_budget": f.get("client_budget", _json_value, required=True),
        "tool_config": f.get("tool_config", _json_value, required=True),
    }


def parse_eval(data: Any) -> EvalRequest:
    f = _Fields(data, "RuntimeSessionEvalRequest")
    return EvalRequest(
        lease_id=f.get("lease_id", expect_string, required=True),
        sid=f.get("sid", expect_optional_string),
        generation=f.get("generation", expect_optional_u64),
        code=f.get("code", expect_string, required=True),
        args=f.get("args", _json_value, dict),
        timeout_ms=f.get("timeout_ms", expect_u64, DEFAULT_EVAL_TIMEOUT_MS),
        request_context=f.get("request_context", _request_context),
        client_budget=f.get("client_budget", _json_value, dict),
        tool_config=f.get("tool_config", _json_value, dict),
    )


def parse_lease(data: Any) -> LeaseRequest:
    f = _Fields(data, "RuntimeSessionLeaseRequest")
    return LeaseRequest(
        lease_id=f.get("lease_id", expect_string, required=True),
        sid=f.get("sid", expect_optional_string),
        generation=f.get("generation", expect_optional_u64),
    )


def parse_list(data: Any) -> ListRequest:
    f = _Fields(data, "RuntimeSessionListRequest")
    return ListRequest(sid=f.get("sid", expect_optional_string))


# ---- normalisation rules of the reference (raised as LuaSkillsError) --------------------------

def normalize_sid(value: str) -> str:
    sid = rust_trim(value)
    if not sid:
        raise LuaSkillsError("runtime session sid must not be empty")
    if len(sid.encode("utf-8", "surrogatepass")) > SID_MAX_BYTES:
        raise LuaSkillsError("runtime session sid must not exceed 128 bytes")
    if "\0" in sid:
        raise LuaSkillsError("runtime session sid must not contain NUL bytes")
    return sid


def resolve_ttl(system_profile: bool, requested: Optional[int]) -> Optional[int]:
    """Public: default 600 s, 0 rejected, clamped 1..3600.  System: none/0 = no expiry."""
    if requested is None:
        return None if system_profile else PUBLIC_DEFAULT_TTL_SEC
    if requested == 0:
        if system_profile:
            return None
        raise LuaSkillsError("runtime lease ttl_sec must be greater than 0")
    return min(max(requested, TTL_MIN_SEC), TTL_MAX_SEC)


def _has_invalid_windows_path_syntax(text: str) -> bool:
    trimmed = rust_trim(text)
    if trimmed.startswith("\\\\?\\"):
        return False
    for index, ch in enumerate(trimmed):
        if ch in '<>"|?*' or (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F):
            return True
        if ch == ":" and not (index == 1 and trimmed[0].isascii() and trimmed[0].isalpha()):
            return True
    return False


def normalize_optional_path(value: Optional[str], field_name: str) -> Optional[str]:
    """Trimmed path text; blank means absent.  Kept as given (relative paths stay relative)."""
    if value is None:
        return None
    trimmed = rust_trim(value)
    if not trimmed:
        return None
    if "\0" in trimmed:
        raise LuaSkillsError(f"{field_name} must not contain NUL bytes")
    if sys.platform == "win32" and _has_invalid_windows_path_syntax(trimmed):
        raise LuaSkillsError(f"{field_name} contains unsupported Windows path syntax")
    return trimmed


def normalize_path_list(values: List[str], field_name: str) -> List[str]:
    out = []
    for index, value in enumerate(values):
        item = normalize_optional_path(value, f"{field_name}[{index}]")
        if item is not None:
            out.append(item)
    return out


def host_visible_path(path: Optional[str]) -> Optional[str]:
    """Path text shown to hosts: Windows verbatim prefixes are dropped."""
    if path is None:
        return None
    if os.name == "nt":
        if path.startswith("\\\\?\\UNC\\"):
            return "\\\\" + path[8:]
        if path.startswith("\\\\?\\"):
            return path[4:]
    return path
