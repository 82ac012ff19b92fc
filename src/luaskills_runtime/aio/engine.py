"""AsyncLuaEngine: every public LuaEngine method as a coroutine, for asyncio and trio hosts.

Lua work runs on a bounded pool of worker threads (``max_workers``, default 4), so the event loop
stays responsive while it runs.  Cancelling the awaiting task (``task.cancel()``,
``asyncio.wait_for`` timing out, a trio or anyio cancel scope) really stops the work: run_lua
calls and runlua requests are cancelled through their request id (one is made up when the caller
gives none), lease evals through ``cancel_runtime_lease``; the process sessions and exec trees
the work started are killed; the task sees the cancellation as soon as the worker returned
(within about 100 ms), and the VM or lease is usable again.

    async with AsyncLuaEngine() as engine:
        value = await engine.run_lua("return args.n + 1", {"n": 41})
        async with await engine.open_lease("agent-1") as lease:
            await lease.eval("counter = (counter or 0) + 1; return counter")
"""
from __future__ import annotations

import itertools
import json
from types import TracebackType
from typing import Any, Callable, Hashable, Mapping, Optional, Type, TypeVar

import anyio

from luaskills_runtime.aio._worker import WorkerPool, run_cancellable
from luaskills_runtime.engine import LuaEngine
from luaskills_runtime.lease_handle import (DEFAULT_LEASE_EVAL_TIMEOUT_MS, Lease, check_failure,
                                            eval_fields)
from luaskills_runtime.options import HostOptions
from luaskills_runtime.types import (CreateLeaseFields, EvalLeaseFields, LeaseCancelPayload,
                                     LeaseClosePayload, LeaseCreatePayload, LeaseEvalPayload,
                                     LeaseIdentityFields, LeaseListPayload, LeaseStatusPayload,
                                     ListLeaseFields, OpenLeaseFields, Unpack)

__all__ = ["AsyncLuaEngine", "AsyncLease", "DEFAULT_MAX_WORKERS"]

T = TypeVar("T")
DEFAULT_MAX_WORKERS = 4
#: How much lower than the host's the Lua worker threads' priority is (Linux), so the event loop
#: wins the CPU while Lua code computes.
DEFAULT_WORKER_NICE = 5
_request_numbers = itertools.count(1)


def _lease_id_of_json(request_json: str) -> Optional[str]:
    """The lease_id of an eval request given as JSON (None when it has none we can read)."""
    try:
        data = json.loads(request_json)
    except (TypeError, ValueError):
        return None
    lease_id = data.get("lease_id") if isinstance(data, dict) else None
    return lease_id if isinstance(lease_id, str) else None


def _noop() -> None:
    return None


class AsyncLuaEngine:
    """Async twin of :class:`~luaskills_runtime.LuaEngine` (see the module docstring).

    ``max_workers`` bounds how many Lua calls run at once (and so the threads they use); more
    wait for a free worker without holding a thread.  On Linux the workers run ``worker_nice``
    steps below the host's priority (0: same priority).  ``engine`` is the synchronous engine."""

    def __init__(self, options: Optional[HostOptions] = None, *,
                 max_workers: int = DEFAULT_MAX_WORKERS,
                 worker_nice: int = DEFAULT_WORKER_NICE) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive int, got {max_workers!r}")
        if isinstance(worker_nice, bool) or not isinstance(worker_nice, int) or worker_nice < 0:
            raise ValueError(f"worker_nice must be an int >= 0, got {worker_nice!r}")
        self.engine = LuaEngine(options)
        self._engine = self.engine
        self._workers = WorkerPool(max_workers, nice=worker_nice, name="luaskills-lua")

    @property
    def options(self) -> HostOptions:
        """The engine's HostOptions."""
        return self._engine.options

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._engine.closed

    async def _call(self, fn: Callable[[], T]) -> T:
        return await self._run(fn, _noop)

    async def _run(self, fn: Callable[[], T], cancel: Callable[[], Any],
                   after_cancel: Optional[Callable[[], Any]] = None) -> T:
        self._engine._check_open()  # a closed engine says so (its worker pool is gone too)
        return await run_cancellable(fn, cancel, self._workers, after_cancel)

    # ---- run_lua and runlua --------------------------------------------------------------------
    async def run_lua(self, code: str, args: Any = None, *, timeout_ms: Optional[int] = None,
                      request_id: Optional[Hashable] = None,
                      invocation_context: Optional[Mapping[str, Any]] = None) -> Any:
        """Run code on a main VM (see ``LuaEngine.run_lua``); cancellable."""
        rid = request_id if request_id is not None else ("aio-run_lua", next(_request_numbers))
        engine = self._engine
        return await self._run(lambda: engine.run_lua(code, args, timeout_ms=timeout_ms,
                                                      request_id=rid,
                                                      invocation_context=invocation_context),
                               lambda: engine.cancel(rid))

    async def execute_runlua_request_json_inline(self, request_json: str, *,
                                                 request_id: Optional[Hashable] = None) -> str:
        """A runlua request given as JSON; returns the Markdown report.  Cancellable."""
        rid = request_id if request_id is not None else ("aio-runlua", next(_request_numbers))
        engine = self._engine
        return await self._run(
            lambda: engine.execute_runlua_request_json_inline(request_json, request_id=rid),
            lambda: engine.cancel(rid))

    async def execute_runlua_request_inline(self, request: Mapping[str, Any], *,
                                            request_id: Optional[Hashable] = None) -> str:
        """Dict twin of execute_runlua_request_json_inline.  Cancellable."""
        rid = request_id if request_id is not None else ("aio-runlua", next(_request_numbers))
        engine = self._engine
        return await self._run(
            lambda: engine.execute_runlua_request_inline(dict(request), request_id=rid),
            lambda: engine.cancel(rid))

    async def cancel_runlua(self, request_id: Hashable) -> bool:
        """Stop the runlua request started with `request_id` (see ``LuaEngine.cancel_runlua``)."""
        return self._engine.cancel_runlua(request_id)

    async def cancel(self, request_id: Hashable) -> bool:
        """Stop the run_lua call or runlua request started with `request_id`."""
        return self._engine.cancel(request_id)

    # ---- runtime leases ------------------------------------------------------------------------
    async def _lease_eval(self, fn: Callable[[], T], lease_id: Optional[str], system: bool) -> T:
        engine = self._engine
        if lease_id is None:
            return await self._call(fn)
        cancel_lease = (engine.cancel_system_runtime_lease if system
                        else engine.cancel_runtime_lease)
        return await self._run(fn, lambda: cancel_lease(lease_id=lease_id),
                               lambda: engine._kill_lease_processes(lease_id))

    async def create_runtime_lease_json(self, request_json: str) -> str:
        """Create a runtime lease (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.create_runtime_lease_json(request_json))

    async def create_runtime_lease(
            self, request: Optional[CreateLeaseFields] = None,
            **fields: Unpack[CreateLeaseFields]) -> LeaseCreatePayload:
        """Create a runtime lease (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.create_runtime_lease(request, **fields))

    async def eval_runtime_lease_json(self, request_json: str) -> str:
        """Run code in a runtime lease, cancellable (JSON in, JSON out)."""
        engine = self._engine
        return await self._lease_eval(lambda: engine.eval_runtime_lease_json(request_json),
                                      _lease_id_of_json(request_json), False)

    async def eval_runtime_lease(
            self, request: Optional[EvalLeaseFields] = None,
            **fields: Unpack[EvalLeaseFields]) -> LeaseEvalPayload:
        """Run code in a runtime lease, cancellable (dict or keywords in, dict out)."""
        engine = self._engine
        lease_id = (request if request is not None else fields).get("lease_id")
        return await self._lease_eval(
            lambda: engine.eval_runtime_lease(request, **fields),
            lease_id if isinstance(lease_id, str) else None, False)

    async def runtime_lease_status_json(self, request_json: str) -> str:
        """The status of a runtime lease (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.runtime_lease_status_json(request_json))

    async def runtime_lease_status(
            self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseStatusPayload:
        """The status of a runtime lease (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.runtime_lease_status(request, **fields))

    async def list_runtime_leases_json(self, request_json: str) -> str:
        """List the runtime leases (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.list_runtime_leases_json(request_json))

    async def list_runtime_leases(
            self, request: Optional[ListLeaseFields] = None,
            **fields: Unpack[ListLeaseFields]) -> LeaseListPayload:
        """List the runtime leases (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.list_runtime_leases(request, **fields))

    async def close_runtime_lease_json(self, request_json: str) -> str:
        """Close a runtime lease (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.close_runtime_lease_json(request_json))

    async def close_runtime_lease(
            self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseClosePayload:
        """Close a runtime lease (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.close_runtime_lease(request, **fields))

    async def cancel_runtime_lease_json(self, request_json: str) -> str:
        """Stop the eval running in a runtime lease (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.cancel_runtime_lease_json(request_json))

    async def cancel_runtime_lease(
            self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseCancelPayload:
        """Stop the eval running in a runtime lease (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.cancel_runtime_lease(request, **fields))

    async def create_system_runtime_lease_json(self, request_json: str) -> str:
        """Create a system runtime lease (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.create_system_runtime_lease_json(request_json))

    async def create_system_runtime_lease(
            self, request: Optional[CreateLeaseFields] = None,
            **fields: Unpack[CreateLeaseFields]) -> LeaseCreatePayload:
        """Create a system runtime lease (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.create_system_runtime_lease(request, **fields))

    async def eval_system_runtime_lease_json(self, request_json: str) -> str:
        """Run code in a system runtime lease, cancellable (JSON in, JSON out)."""
        engine = self._engine
        return await self._lease_eval(lambda: engine.eval_system_runtime_lease_json(request_json),
                                      _lease_id_of_json(request_json), True)

    async def eval_system_runtime_lease(
            self, request: Optional[EvalLeaseFields] = None,
            **fields: Unpack[EvalLeaseFields]) -> LeaseEvalPayload:
        """Run code in a system runtime lease, cancellable (dict or keywords in, dict out)."""
        engine = self._engine
        lease_id = (request if request is not None else fields).get("lease_id")
        return await self._lease_eval(
            lambda: engine.eval_system_runtime_lease(request, **fields),
            lease_id if isinstance(lease_id, str) else None, True)

    async def system_runtime_lease_status_json(self, request_json: str) -> str:
        """The status of a system runtime lease (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.system_runtime_lease_status_json(request_json))

    async def system_runtime_lease_status(
            self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseStatusPayload:
        """The status of a system runtime lease (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.system_runtime_lease_status(request, **fields))

    async def list_system_runtime_leases_json(self, request_json: str) -> str:
        """List the system runtime leases (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.list_system_runtime_leases_json(request_json))

    async def list_system_runtime_leases(
            self, request: Optional[ListLeaseFields] = None,
            **fields: Unpack[ListLeaseFields]) -> LeaseListPayload:
        """List the system runtime leases (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.list_system_runtime_leases(request, **fields))

    async def close_system_runtime_lease_json(self, request_json: str) -> str:
        """Close a system runtime lease (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.close_system_runtime_lease_json(request_json))

    async def close_system_runtime_lease(
            self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseClosePayload:
        """Close a system runtime lease (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.close_system_runtime_lease(request, **fields))

    async def cancel_system_runtime_lease_json(self, request_json: str) -> str:
        """Stop the eval running in a system runtime lease (JSON in, JSON out)."""
        engine = self._engine
        return await self._call(lambda: engine.cancel_system_runtime_lease_json(request_json))

    async def cancel_system_runtime_lease(
            self, request: Optional[LeaseIdentityFields] = None,
            **fields: Unpack[LeaseIdentityFields]) -> LeaseCancelPayload:
        """Stop the eval running in a system runtime lease (dict or keywords in, dict out)."""
        engine = self._engine
        return await self._call(
            lambda: engine.cancel_system_runtime_lease(request, **fields))

    async def open_lease(self, sid: str, *, ttl_sec: Optional[int] = None, replace: bool = False,
                         system: bool = False,
                         **create_fields: Unpack[OpenLeaseFields]) -> "AsyncLease":
        """Create a runtime lease and return its async handle (see ``LuaEngine.open_lease``)."""
        engine = self._engine
        lease = await self._call(lambda: engine.open_lease(
            sid, ttl_sec=ttl_sec, replace=replace, system=system, **create_fields))
        return AsyncLease(self, lease, system)

    # ---- lifetime ------------------------------------------------------------------------------
    async def close(self) -> None:
        """Close the engine (cancels running work, closes leases, kills sessions)."""
        await anyio.to_thread.run_sync(self._engine.close)
        self._workers.close()

    async def __aenter__(self) -> "AsyncLuaEngine":
        """Use with ``async with``: the engine is closed when the block ends."""
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()


class AsyncLease:
    """Async handle of a runtime lease (from ``await AsyncLuaEngine.open_lease(...)``); an async
    context manager that closes the lease.  ``eval`` is cancellable like every Lua call."""

    __slots__ = ("_owner", "_lease", "_system")

    def __init__(self, owner: AsyncLuaEngine, lease: Lease, system: bool) -> None:
        self._owner = owner
        self._lease = lease
        self._system = system

    @property
    def lease_id(self) -> str:
        """The lease's id."""
        return self._lease.lease_id

    @property
    def sid(self) -> str:
        """The SID the lease was created for."""
        return self._lease.sid

    @property
    def generation(self) -> int:
        """The lease's generation (bumped when a lease of the same SID is replaced)."""
        return self._lease.generation

    @property
    def created(self) -> LeaseCreatePayload:
        """The create payload."""
        return self._lease.created

    async def eval(self, code: str, args: Any = None, *,
                   timeout_ms: int = DEFAULT_LEASE_EVAL_TIMEOUT_MS,
                   request_context: Optional[Mapping[str, Any]] = None,
                   client_budget: Any = None, tool_config: Any = None) -> Any:
        """Run `code` in the lease and return its result value; raises LeaseError."""
        fields = eval_fields(self.lease_id, self.sid, self.generation, code, args, timeout_ms,
                             request_context, client_budget, tool_config)
        engine = self._owner.engine
        evaluate = engine.eval_system_runtime_lease if self._system else engine.eval_runtime_lease
        payload = await self._owner._lease_eval(
            lambda: evaluate(fields), self.lease_id,  # type: ignore[arg-type]
            self._system)
        check_failure(payload)
        return payload["result"]

    async def status(self) -> LeaseStatusPayload:
        """The lease's status payload; raises LeaseError when it is gone."""
        return await self._owner._call(self._lease.status)

    async def cancel(self) -> bool:
        """Stop the eval running in this lease; True when one ran."""
        return self._lease.cancel()

    async def close(self) -> Optional[LeaseClosePayload]:
        """Close the lease; None when it was already gone."""
        return await self._owner._call(self._lease.close)

    async def __aenter__(self) -> "AsyncLease":
        """Use with ``async with``: the lease is closed when the block ends."""
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()

    def __repr__(self) -> str:
        return f"<AsyncLease {self.lease_id} sid={self.sid!r} generation={self.generation}>"
