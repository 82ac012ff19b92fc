"""Running blocking engine calls on a bounded worker pool, with real cancellation.

``run_cancellable(fn, cancel, limiter)`` runs ``fn()`` on an anyio worker thread (at most
``limiter.total_tokens`` at a time).  When the awaiting task is cancelled (``task.cancel()``,
``asyncio.wait_for`` timing out, a trio/anyio cancel scope), ``cancel()`` is called to stop the
work in the thread, and the task waits (shielded, at most ``CANCEL_WAIT_S``) for the thread to
return before the cancellation propagates, so the VM or lease is free again when it does.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional, Tuple, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

T = TypeVar("T")

#: How long a cancelled call waits for its worker to return before giving up on it.
CANCEL_WAIT_S = 2.0


class _Call:
    """The state one call shares with its worker thread."""

    __slots__ = ("lock", "started", "abandoned", "outcome", "waiter", "done")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False         # the worker began fn()
        self.abandoned = False       # cancelled before that: the worker must not begin
        self.outcome: Optional[Tuple[bool, Any]] = None
        self.waiter = False          # the cancelled task waits for `done`
        self.done: Optional[anyio.Event] = None


async def run_cancellable(fn: Callable[[], T], cancel: Callable[[], Any],
                          limiter: anyio.CapacityLimiter,
                          after_cancel: Optional[Callable[[], Any]] = None) -> T:
    """See the module docstring.  `after_cancel` (optional) runs when the work did not return
    within 50 ms of `cancel` (e.g. to kill processes a blocked call waits on)."""
    call = _Call()

    def work() -> None:
        with call.lock:
            if call.abandoned:
                return
            call.started = True
        try:
            outcome: Tuple[bool, Any] = (True, fn())
        except BaseException as error:  # handed to the awaiting task
            outcome = (False, error)
        with call.lock:
            call.outcome = outcome
            notify = call.waiter
        if notify and call.done is not None:
            try:
                anyio.from_thread.run_sync(call.done.set)
            except RuntimeError:  # the event loop is gone
                pass

    try:
        await anyio.to_thread.run_sync(work, limiter=limiter, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            call.done = anyio.Event()
            with call.lock:
                if not call.started:
                    call.abandoned = True
                pending = call.started and call.outcome is None
                call.waiter = pending
            if pending:
                cancel()
                with anyio.move_on_after(0.05):
                    await call.done.wait()
                if call.outcome is None and after_cancel is not None:
                    after_cancel()
                with anyio.move_on_after(CANCEL_WAIT_S):
                    await call.done.wait()
        raise
    outcome = call.outcome
    assert outcome is not None
    if outcome[0]:
        return outcome[1]  # type: ignore[no-any-return]
    raise outcome[1]
