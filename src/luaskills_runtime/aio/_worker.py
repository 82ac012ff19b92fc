"""Running blocking engine calls on a bounded worker pool, with real cancellation.

``WorkerPool(size, nice)`` owns up to `size` threads (started on demand, kept for reuse); jobs
beyond that wait in a queue without a thread.  On Linux the threads lower their own scheduling
priority by `nice`, so the event loop's thread wins the CPU whenever it has something to do
while Lua code computes.

``run_cancellable(fn, cancel, pool)`` runs ``fn()`` on the pool and wakes the awaiting task
without blocking the worker (asyncio: ``call_soon_threadsafe``; trio: the trio token).  When the
awaiting task is cancelled (``task.cancel()``, ``asyncio.wait_for`` timing out, a trio/anyio
cancel scope), ``cancel()`` is called to stop the work in the thread, and the task waits
(shielded, at most ``CANCEL_WAIT_S``) for the worker to return before the cancellation
propagates, so the VM or lease is free again when it does.  A job cancelled before a worker took
it never starts.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from typing import Any, Callable, List, Optional, Tuple, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

T = TypeVar("T")

#: How long a cancelled call waits for its worker to return before giving up on it.
CANCEL_WAIT_S = 2.0
#: How long after cancel() a call may stay blocked before `after_cancel` runs.
AFTER_CANCEL_S = 0.05

_Job = Optional[Callable[[], None]]


class WorkerPool:
    """Up to `size` daemon threads running queued jobs (see the module docstring)."""

    def __init__(self, size: int, *, nice: int = 0, name: str = "luaskills-worker") -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self.nice = nice
        self.name = name
        self._jobs: "queue.SimpleQueue[_Job]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job`; start a thread when none is idle and the pool is not full."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            start = self._idle == 0 and len(self._threads) < self.size
            if start:
                thread = threading.Thread(target=self._main, daemon=True,
                                          name=f"{self.name}-{len(self._threads) + 1}")
                self._threads.append(thread)
            else:
                self._idle -= 1   # that idle thread takes this job
        self._jobs.put(job)
        if start:
            thread.start()

    def _main(self) -> None:
        if self.nice and sys.platform.startswith("linux"):
            try:  # on Linux, PRIO_PROCESS with a thread id sets that thread's nice value
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                               os.getpriority(os.PRIO_PROCESS, 0) + self.nice)
            except OSError:
                pass
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Let the threads end once the queued jobs ran (does not wait for them)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            count = len(self._threads)
        for _ in range(count):
            self._jobs.put(None)

    @property
    def threads(self) -> int:
        """How many threads the pool started."""
        with self._lock:
            return len(self._threads)


def _loop_waker() -> Callable[[Callable[[], None]], None]:
    """A function a worker thread calls to run a callback on the current event loop, soon and
    without waiting for it."""
    import asyncio
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio
        pass
    else:
        def via_asyncio(callback: Callable[[], None]) -> None:
            loop.call_soon_threadsafe(callback)
        return via_asyncio
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return trio.lowlevel.current_trio_token().run_sync_soon  # type: ignore[no-any-return]
        except RuntimeError:  # not trio either
            pass
    token = anyio.lowlevel.current_token()

    def via_anyio(callback: Callable[[], None]) -> None:
        threading.Thread(target=anyio.from_thread.run_sync, args=(callback,),
                         kwargs={"token": token}, daemon=True).start()
    return via_anyio


class _Call:
    """The state one call shares with its worker thread."""

    __slots__ = ("lock", "started", "abandoned", "outcome")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False         # the worker began fn()
        self.abandoned = False       # cancelled before that: the worker must not begin
        self.outcome: Optional[Tuple[bool, Any]] = None


async def run_cancellable(fn: Callable[[], T], cancel: Callable[[], Any], pool: WorkerPool,
                          after_cancel: Optional[Callable[[], Any]] = None) -> T:
    """See the module docstring.  `after_cancel` (optional) runs when the work did not return
    within AFTER_CANCEL_S of `cancel` (e.g. to kill processes a blocked call waits on)."""
    call = _Call()
    done = anyio.Event()
    wake = _loop_waker()

    def work() -> None:
        with call.lock:
            if call.abandoned:
                return
            call.started = True
        try:
            outcome: Tuple[bool, Any] = (True, fn())
        except BaseException as error:  # handed to the awaiting task
            outcome = (False, error)
        call.outcome = outcome
        try:
            wake(done.set)
        except RuntimeError:  # the event loop is gone
            pass

    pool.submit(work)
    try:
        await done.wait()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            with call.lock:
                if not call.started:
                    call.abandoned = True
                pending = call.started and call.outcome is None
            if pending:
                cancel()
                with anyio.move_on_after(AFTER_CANCEL_S):
                    await done.wait()
                if call.outcome is None and after_cancel is not None:
                    after_cancel()
                with anyio.move_on_after(CANCEL_WAIT_S):
                    await done.wait()
        raise
    outcome = call.outcome
    assert outcome is not None
    if outcome[0]:
        return outcome[1]  # type: ignore[no-any-return]
    raise outcome[1]
