"""Lease handles: one object per runtime lease, over the engine's dict lease methods.

``engine.open_lease(sid)`` creates the lease and returns a :class:`Lease`; ``lease.eval(code)``
returns the eval's result value and raises :class:`LeaseError` when the lease answers
``{"ok": false, ...}``.  The handle remembers ``lease_id``, ``sid`` and ``generation`` and sends
them with every call, so a replaced lease (same SID, new generation) is never driven by an old
handle by mistake.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, cast

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.types import (LeaseCancelPayload, LeaseClosePayload, LeaseCreatePayload,
                                     LeaseEvalPayload, LeaseStatusPayload)

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Type

__all__ = ["Lease", "LeaseError", "DEFAULT_LEASE_EVAL_TIMEOUT_MS", "check_failure"]

DEFAULT_LEASE_EVAL_TIMEOUT_MS = 60_000


class LeaseError(LuaSkillsError):
    """A lease call answered ``{"ok": false, ...}``.

    ``error_code`` is the payload's code (``eval_failed``, ``lease_not_found``, ...), ``payload``
    the whole payload; ``str(err)`` is its message."""

    def __init__(self, payload: Mapping[str, Any]):
        self.payload: Dict[str, Any] = dict(payload)
        self.error_code: str = str(payload.get("error_code", ""))
        super().__init__(str(payload.get("message", "")))


def check_failure(payload: Mapping[str, Any]) -> None:
    """Raise LeaseError when `payload` is a failure payload (it has an ``error_code``)."""
    if payload.get("ok") is False and "error_code" in payload:
        raise LeaseError(payload)


def eval_fields(lease_id: str, sid: str, generation: int, code: str, args: Any, timeout_ms: int,
                request_context: Optional[Mapping[str, Any]], client_budget: Any,
                tool_config: Any) -> Dict[str, Any]:
    """The eval request a handle sends (shared by the sync and async handles)."""
    if not isinstance(code, str):
        raise TypeError(f"Lease.eval: code must be a str, got {type(code).__name__}")
    fields: Dict[str, Any] = {"lease_id": lease_id, "sid": sid, "generation": generation,
                              "code": code, "timeout_ms": timeout_ms}
    if args is not None:
        fields["args"] = args
    if request_context is not None:
        fields["request_context"] = dict(request_context)
    if client_budget is not None:
        fields["client_budget"] = client_budget
    if tool_config is not None:
        fields["tool_config"] = tool_config
    return fields


class Lease:
    """A runtime lease held by a host (see the module docstring).  A context manager: leaving
    the ``with`` block closes the lease."""

    __slots__ = ("lease_id", "sid", "generation", "profile", "created", "_call")

    def __init__(self, created: LeaseCreatePayload,
                 call: Callable[[str, Dict[str, Any]], Dict[str, Any]]):
        self.created: LeaseCreatePayload = created
        self.lease_id: str = created["lease_id"]
        self.sid: str = created["sid"]
        self.generation: int = created["generation"]
        self.profile: str = created["profile"]
        self._call = call  # (operation, request fields) -> payload dict

    def _identity(self) -> Dict[str, Any]:
        return {"lease_id": self.lease_id, "sid": self.sid, "generation": self.generation}

    def eval(self, code: str, args: Any = None, *, timeout_ms: int = DEFAULT_LEASE_EVAL_TIMEOUT_MS,
             request_context: Optional[Mapping[str, Any]] = None, client_budget: Any = None,
             tool_config: Any = None) -> Any:
        """Run `code` in the lease (with `args` as a local) and return its first value as JSON
        data; raises LeaseError (``error_code`` ``eval_failed`` for a Lua error or timeout)."""
        payload = cast(LeaseEvalPayload, self._call("eval", eval_fields(
            self.lease_id, self.sid, self.generation, code, args, timeout_ms, request_context,
            client_budget, tool_config)))
        check_failure(payload)
        return payload["result"]

    def status(self) -> LeaseStatusPayload:
        """The lease's status payload; raises LeaseError when it is gone."""
        payload = self._call("status", self._identity())
        check_failure(payload)
        return cast(LeaseStatusPayload, payload)

    def cancel(self) -> bool:
        """Stop the eval running in this lease (from another thread); True when one ran."""
        payload = cast(LeaseCancelPayload, self._call("cancel", self._identity()))
        check_failure(payload)
        return bool(payload["cancelled"])

    def close(self) -> Optional[LeaseClosePayload]:
        """Close the lease (kills its sessions, frees its VM).  Idempotent: closing a lease that
        is already gone returns None."""
        payload = self._call("close", self._identity())
        if payload.get("ok") is False and "error_code" in payload:
            return None
        return cast(LeaseClosePayload, payload)

    def __enter__(self) -> "Lease":
        """Use as a context manager: the lease is closed when the block ends."""
        return self

    def __exit__(self, exc_type: "Optional[Type[BaseException]]", exc: Optional[BaseException],
                 tb: "Optional[TracebackType]") -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Lease {self.lease_id} sid={self.sid!r} generation={self.generation}>"
