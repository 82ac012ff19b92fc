"""Typed shapes of the payloads and results the public API returns (for type checkers).

(No ``from __future__ import annotations`` here: TypedDict needs real annotations at run time to
tell required from NotRequired keys.)

They are plain dicts at run time; these TypedDicts only describe their keys.  Payloads of the
lease methods are either a success shape (``ok`` True) or :class:`LeaseFailurePayload`.
"""

import sys
from typing import Any, Dict, List, Optional, Union

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict, Unpack
else:  # pragma: no cover - exercised on the older interpreters only
    from typing_extensions import NotRequired, TypedDict, Unpack

__all__ = [
    "JsonValue", "LeaseFailurePayload", "LeaseCreatePayload", "LeaseEvalPayload",
    "LeaseStatusPayload", "LeaseClosePayload", "LeaseCancelPayload", "LeaseListPayload",
    "LeasePayload", "ExecResult", "ReadResult", "ProcessStatus", "CreateLeaseFields",
    "EvalLeaseFields", "LeaseIdentityFields", "ListLeaseFields", "OpenLeaseFields", "Unpack",
]

#: What run_lua and lease evals return: the JSON form of a Lua value.
JsonValue = Union[None, bool, int, float, str, List[Any], Dict[str, Any]]


class LeaseFailurePayload(TypedDict):
    """``{"ok": false, ...}``: why a lease call failed (``error_code`` e.g. ``lease_not_found``)."""
    ok: bool
    error_code: str
    message: str


class _LeaseIdentity(TypedDict):
    # A payload of the dict lease methods is either the success shape (these keys) or, with
    # ok False, the failure shape (error_code and message): hence NotRequired everywhere but ok.
    # Lease handles raise LeaseError instead of returning failures.
    ok: bool
    error_code: NotRequired[str]
    message: NotRequired[str]
    sid: NotRequired[str]
    lease_id: NotRequired[str]
    generation: NotRequired[int]
    profile: NotRequired[str]
    lifetime: NotRequired[str]           # "finite" or "infinite"
    cwd: NotRequired[Optional[str]]
    system_lua_lib: NotRequired[Optional[str]]
    policy: NotRequired[str]             # the lease's policy profile (README "Safety")
    expires_at_unix_ms: NotRequired[Optional[int]]


class LeaseCreatePayload(_LeaseIdentity):
    """What create returns."""
    workspace_root: NotRequired[Optional[str]]
    ttl_sec: NotRequired[Optional[int]]


class LeaseEvalPayload(_LeaseIdentity):
    """What eval returns; ``result`` is the JSON form of the first returned value."""
    result: NotRequired[Any]


class LeaseStatusPayload(_LeaseIdentity):
    """What status (and each entry of list) returns."""
    workspace_root: NotRequired[Optional[str]]
    ttl_sec: NotRequired[Optional[int]]
    closed: NotRequired[bool]
    expired: NotRequired[bool]


class LeaseClosePayload(LeaseStatusPayload):
    """What a successful close returns (the status at the time of closing)."""


class LeaseCancelPayload(_LeaseIdentity):
    """What cancel returns; ``cancelled`` tells whether an eval was running."""
    cancelled: NotRequired[bool]


class LeaseListPayload(TypedDict):
    """What list returns."""
    ok: bool
    error_code: NotRequired[str]
    message: NotRequired[str]
    leases: NotRequired[List[LeaseStatusPayload]]


#: Any payload of the dict lease methods.
LeasePayload = Union[LeaseCreatePayload, LeaseEvalPayload, LeaseStatusPayload, LeaseCancelPayload,
                     LeaseListPayload, LeaseFailurePayload]


# ---- request fields of the dict lease methods (keyword arguments or the request dict) ----------

class CreateLeaseFields(TypedDict, total=False):
    """create / create_system: ``sid`` is required."""
    sid: str
    ttl_sec: Optional[int]
    replace: bool
    cwd: Optional[str]
    workspace_root: Optional[str]
    lua_roots: List[str]
    c_roots: List[str]
    mounts: Dict[str, Any]
    policy: Optional[str]                # "default", "trusted" or "untrusted" (None: the host's)


class OpenLeaseFields(TypedDict, total=False):
    """The create fields ``open_lease`` takes besides sid, ttl_sec and replace."""
    cwd: Optional[str]
    workspace_root: Optional[str]
    lua_roots: List[str]
    c_roots: List[str]
    mounts: Dict[str, Any]
    policy: Optional[str]                # "default", "trusted" or "untrusted" (None: the host's)


class EvalLeaseFields(TypedDict, total=False):
    """eval / eval_system: ``lease_id`` and ``code`` are required."""
    lease_id: str
    code: str
    sid: Optional[str]
    generation: Optional[int]
    args: Any
    timeout_ms: int
    request_context: Optional[Dict[str, Any]]
    client_budget: Any
    tool_config: Any


class LeaseIdentityFields(TypedDict, total=False):
    """status / close / cancel: ``lease_id`` is required; ``sid`` and ``generation`` are checked
    when given."""
    lease_id: str
    sid: Optional[str]
    generation: Optional[int]


class ListLeaseFields(TypedDict, total=False):
    """list: optionally only the leases of one SID."""
    sid: Optional[str]


class ExecResult(TypedDict):
    """The result of ``exec_command`` (``vulcan.process.exec``)."""
    ok: bool
    success: bool
    code: Optional[int]
    stdout: str
    stderr: str
    stdout_encoding: str
    stderr_encoding: str
    stdout_lossy: bool
    stderr_lossy: bool
    stdout_base64: Optional[str]
    stderr_base64: Optional[str]
    timed_out: bool
    error: Optional[str]


class ReadResult(TypedDict):
    """The result of ``ProcessSession.read``."""
    stdout: str
    stderr: str
    stdout_encoding: str
    stderr_encoding: str
    stdout_lossy: bool
    stderr_lossy: bool
    stdout_base64: Optional[str]
    stderr_base64: Optional[str]
    timed_out: bool


class ProcessStatus(TypedDict):
    """The result of ``ProcessSession.status`` / ``close``."""
    running: bool
    exited: bool
    success: Optional[bool]
    code: Optional[int]
