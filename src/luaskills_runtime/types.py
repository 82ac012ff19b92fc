"""Typed shapes of the payloads and results the public API returns (for type checkers).

They are plain dicts at run time; these TypedDicts only describe their keys.  Payloads of the
lease methods are either a success shape (``ok`` True) or :class:`LeaseFailurePayload`.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Union

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:  # pragma: no cover - exercised on the older interpreters only
    from typing_extensions import NotRequired, TypedDict

__all__ = [
    "JsonValue", "LeaseFailurePayload", "LeaseCreatePayload", "LeaseEvalPayload",
    "LeaseStatusPayload", "LeaseClosePayload", "LeaseCancelPayload", "LeaseListPayload",
    "LeasePayload", "ExecResult", "ReadResult", "ProcessStatus",
]

#: What run_lua and lease evals return: the JSON form of a Lua value.
JsonValue = Union[None, bool, int, float, str, List[Any], Dict[str, Any]]


class LeaseFailurePayload(TypedDict):
    """``{"ok": false, ...}``: why a lease call failed (``error_code`` e.g. ``lease_not_found``)."""
    ok: bool
    error_code: str
    message: str


class _LeaseIdentity(TypedDict):
    ok: bool
    sid: str
    lease_id: str
    generation: int
    profile: str
    lifetime: str                    # "finite" or "infinite"
    cwd: Optional[str]
    system_lua_lib: Optional[str]
    expires_at_unix_ms: Optional[int]


class LeaseCreatePayload(_LeaseIdentity):
    """What a successful create returns."""
    workspace_root: Optional[str]
    ttl_sec: Optional[int]


class LeaseEvalPayload(_LeaseIdentity):
    """What a successful eval returns; ``result`` is the JSON form of the first returned value."""
    result: Any


class LeaseStatusPayload(_LeaseIdentity):
    """What status (and each entry of list) returns."""
    workspace_root: Optional[str]
    ttl_sec: Optional[int]
    closed: bool
    expired: bool


class LeaseClosePayload(LeaseStatusPayload):
    """What a successful close returns (the status at the time of closing)."""


class LeaseCancelPayload(_LeaseIdentity):
    """What cancel returns; ``cancelled`` tells whether an eval was running."""
    cancelled: bool


class LeaseListPayload(TypedDict):
    """What list returns."""
    ok: bool
    leases: List[LeaseStatusPayload]


#: Any payload of the dict lease methods.
LeasePayload = Union[LeaseCreatePayload, LeaseEvalPayload, LeaseStatusPayload, LeaseCancelPayload,
                     LeaseListPayload, LeaseFailurePayload]


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
    error: NotRequired[Optional[str]]
