"""A VM's own thread, so a caller answers on time even when Lua code cannot be stopped in place.

The guard stops Lua code at its next instruction, but some code reaches no instruction for a
long time: one long C call (``string.find`` backtracking), a finalizer or a user hook that loops
(hooks do not run inside hooks).  Guarded work therefore runs on a thread owned by the VM
(:class:`VmThread`); the caller waits for it until the request's deadline plus
:data:`GRACE_SEC` (or :data:`CANCEL_GRACE_SEC` after a cancel).  If the work has not come back by
then the VM is *abandoned*: the caller answers its timeout or cancel error, the VM's owner takes
it out of service (a pool creates a replacement, a lease becomes a tombstone), and the thread
closes the VM when the work finally returns (``on_return``).  Stuck threads are counted
process-wide (:func:`stuck_stats`), bounded by :data:`MAX_STUCK_THREADS` and logged.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Callable, Optional

LOGGER = logging.getLogger("luaskills_runtime.lua")

# Past the deadline the guard needs a few ms to stop ordinary code; whatever is still running
# after GRACE_SEC is stuck (the bound is deadline + 500 ms, with room for a loaded host).
GRACE_SEC = 0.25
# After a cancel the request must be answered within 100 ms.
CANCEL_GRACE_SEC = 0.05
_POLL_SEC = 0.01   # how often a waiting caller looks at its cancel token
# At the deadline the primitives' own caps (and the guard) stop ordinary work; what still runs
# this much later has its trees killed (on_stop) so a blocked primitive returns.
_STOP_DELAY_SEC = 0.03
_CANCEL_STOP_DELAY_SEC = 0.015   # (the same after a cancel, within its tighter budget)
# How many abandoned threads may run at once before abandoned VMs stop being replaced (their pool
# slot is then given back only when the thread returns, so stuck code cannot grow threads
# without bound).
MAX_STUCK_THREADS = 16

_stuck_lock = threading.Lock()
_stuck_now = 0
_stuck_total = 0


def stuck_stats() -> dict:
    """Threads abandoned with their VM and still running (`stuck`), and abandoned ever
    (`abandoned_total`), in this process."""
    with _stuck_lock:
        return {"stuck": _stuck_now, "abandoned_total": _stuck_total,
                "max_stuck": MAX_STUCK_THREADS}


def _count_stuck(name: str) -> bool:
    """Count one more stuck thread; False when the bound is reached (no replacement then)."""
    global _stuck_now, _stuck_total
    with _stuck_lock:
        _stuck_now += 1
        _stuck_total += 1
        now = _stuck_now
    LOGGER.warning("Lua code on %s cannot be stopped in place; its VM is taken out of service "
                   "(%d stuck thread(s) now)", name, now)
    return now <= MAX_STUCK_THREADS


def _uncount_stuck(name: str) -> None:
    global _stuck_now
    with _stuck_lock:
        _stuck_now -= 1
        now = _stuck_now
    LOGGER.info("stuck Lua code on %s came back; its VM is freed (%d stuck thread(s) now)",
                name, now)


_LINUX = sys.platform.startswith("linux")


def _thread_nice() -> Optional[int]:
    """This thread's nice value (Linux: PRIO_PROCESS with a thread id is per thread)."""
    if not _LINUX:
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except OSError:
        return None


class _Job:
    __slots__ = ("fn", "args", "done", "result", "error", "nice")

    def __init__(self, fn, args):
        self.fn, self.args = fn, args
        # The work runs at its caller's priority (aio workers run niced, so the event loop
        # wins the CPU while Lua computes).
        self.nice = _thread_nice()
        self.done = threading.Event()
        self.result = None
        self.error: Optional[BaseException] = None


class VmThread:
    """Runs one VM's guarded work on the VM's own thread, one job at a time.

    ``call(fn, *args, deadline=..., cancel=...)`` returns ``fn(*args)`` (or raises what it
    raised).  When the work overruns (see the module doc) ``abandoned`` becomes True and ``call``
    raises :class:`VmAbandoned` (or re-raises the caller's own interrupt, e.g.
    KeyboardInterrupt); the owner must then stop using the VM and hand :meth:`set_on_return`
    what frees it, which runs on the thread when the work comes back.
    """

    def __init__(self, name: str):
        self.name = name
        self._cond = threading.Condition(threading.Lock())
        self._job: Optional[_Job] = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self.abandoned = False
        self._on_return: Optional[Callable[[bool], None]] = None
        self.replaceable = True
        self._nice = None  # the VM thread's nice value when it last changed it

    # ---- caller side ------------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, deadline: float, cancel=None,
             on_stop: Optional[Callable[[], None]] = None) -> Any:
        """`on_stop()` runs on the caller's thread once, when the deadline passes or the cancel
        is seen while the work still runs: it kills the process trees the work started, so a
        primitive blocked on them (exec, a session read, a pipe) returns at once."""
        job = _Job(fn, args)
        with self._cond:
            if self._closed or self.abandoned:
                raise RuntimeError(f"{self.name}: VM thread is closed")
            self._job = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
        try:
            finished = _wait(job, deadline, cancel, on_stop)
        except BaseException:
            # The caller was interrupted (Ctrl-C): stop the work, give it the cancel grace.
            if cancel is not None:
                cancel.cancel()
            if not job.done.wait(CANCEL_GRACE_SEC):
                self._abandon()
            raise
        if not finished and self._abandon():
            raise VmAbandoned()
        if job.error is not None:
            error, job.error = job.error, None
            raise error
        return job.result

    def _abandon(self) -> bool:
        """Mark the running work abandoned; False when it came back just now (nothing is
        stuck: its answer stands)."""
        with self._cond:
            if self._job is None or self._job.done.is_set():
                return False
            self.abandoned = True
            self.replaceable = _count_stuck(self.name)
            return True

    def set_on_return(self, on_return: Callable[[bool], None]) -> None:
        """What the thread runs when abandoned work comes back: ``on_return(replaced)``, where
        replaced tells whether a replacement was allowed when the VM was abandoned.  Runs at
        once (on the caller's thread) when the work already came back."""
        with self._cond:
            if self._job is not None:   # still running: the thread will call it
                self._on_return = on_return
                return
        on_return(self.replaceable)

    def close(self) -> None:
        """Let the idle thread end (an abandoned one ends when its work comes back)."""
        with self._cond:
            self._closed = True
            thread = self._thread
            running = self._job is not None
            self._cond.notify()
        if thread is not None and not running and thread is not threading.current_thread():
            thread.join(1.0)

    # ---- the VM's thread --------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                job = self._job
                if job is None:
                    return
            if job.nice is not None and job.nice != self._nice:
                try:
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), job.nice)
                    self._nice = job.nice
                except OSError:  # raising priority back may need privileges: keep the current
                    pass
            try:
                job.result = job.fn(*job.args)
            except BaseException as error:  # handed to the caller
                job.error = error
            with self._cond:
                self._job = None
                job.done.set()
                if not self.abandoned:
                    continue
                on_return, self._on_return = self._on_return, None
                replaced = self.replaceable
            job.result = job.error = None
            _uncount_stuck(self.name)
            if on_return is not None:
                try:
                    on_return(replaced)
                except Exception:  # freeing a VM that is going away anyway
                    LOGGER.exception("freeing the VM of %s failed", self.name)
            return


class VmAbandoned(Exception):
    """The work overran its deadline (or cancel) past the grace: the VM was taken out of
    service."""


def _wait(job: _Job, deadline: float, cancel, on_stop) -> bool:
    """Wait for `job` until the deadline or a cancel, then run on_stop and give the work
    GRACE_SEC (CANCEL_GRACE_SEC after a cancel) to come back.  True when it finished."""
    if cancel is None:
        finished = job.done.wait(max(deadline - time.monotonic(), 0.0))
    else:
        while True:
            if cancel.cancelled:
                finished = job.done.is_set()
                break
            left = deadline - time.monotonic()
            if left <= 0:
                finished = job.done.is_set()
                break
            if job.done.wait(min(left, _POLL_SEC)):
                return True
    if finished:
        return True
    cancelled = cancel is not None and cancel.cancelled
    delay = _CANCEL_STOP_DELAY_SEC if cancelled else _STOP_DELAY_SEC
    if job.done.wait(delay):
        return True   # stopped in place by the guard and the primitives' own limits
    if on_stop is not None:
        on_stop()
    return job.done.wait((CANCEL_GRACE_SEC if cancelled else GRACE_SEC) - delay)
