"""A pool of Lua VMs: LIFO reuse of idle VMs, growth up to max, waiting beyond (SPEC 5)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, List, Optional, Tuple

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.options import PoolConfig, normalize_pool_config


_CANCEL_POLL_SEC = 0.01  # how often a caller waiting for a VM looks at its cancel token


class PoolWaitOver(Exception):
    """Waiting for a VM ended: the deadline passed (cancelled=False) or the request was
    cancelled."""

    def __init__(self, cancelled: bool):
        super().__init__("cancelled" if cancelled else "deadline passed")
        self.cancelled = cancelled


class VmPool:
    """Thread-safe pool.  `factory()` builds a VM; a VM marked `broken` is discarded on release.

    Idle VMs above `min` are closed once idle longer than the TTL; the check runs on every
    acquire and release, so an idle pool costs no thread.
    """

    def __init__(self, config: PoolConfig, factory: Callable[[], object], name: str,
                 clock=time.monotonic):
        self.min, self.max, self.idle_ttl = normalize_pool_config(config)
        self.name = name
        self._factory = factory
        self._clock = clock
        self._idle: List[Tuple[object, float]] = []  # (vm, idle since); the end is the newest
        self._total = 0
        self._closed = False
        self._cond = threading.Condition()
        self.created = 0
        self.abandoned = 0

    def acquire(self, deadline: Optional[float] = None, cancel=None):
        """An idle VM, a new one, or (at max) the next one released.  With a `deadline`
        (time.monotonic) or a `cancel` token (anything with `.cancelled`), waiting ends with
        PoolWaitOver at the deadline or once cancelled."""
        with self._cond:
            while True:
                if self._closed:
                    raise LuaSkillsError(f"{self.name} VM pool is closed")
                self._reap_locked()
                if self._idle:
                    return self._idle.pop()[0]
                if self._total < self.max:
                    self._total += 1
                    break
                if deadline is None and cancel is None:
                    self._cond.wait()
                    continue
                if cancel is not None and cancel.cancelled:
                    raise PoolWaitOver(cancelled=True)
                slice_sec = _CANCEL_POLL_SEC if cancel is not None else None
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        raise PoolWaitOver(cancelled=False)
                    slice_sec = left if slice_sec is None else min(left, slice_sec)
                self._cond.wait(slice_sec)
        try:
            vm = self._factory()
        except BaseException:
            with self._cond:
                self._total -= 1
                self._cond.notify()
            raise
        self.created += 1
        return vm

    def release(self, vm, discard: bool = False) -> None:
        discard = discard or getattr(vm, "broken", False)
        with self._cond:
            if discard or self._closed:
                self._total -= 1
                to_close = vm
            else:
                self._idle.append((vm, self._clock()))
                to_close = None
            self._reap_locked()
            self._cond.notify()
        if to_close is not None:
            to_close.close()

    def abandon(self, vm) -> None:
        """`vm` (with a lua.vm_thread VmThread as `vm.thread`) is stuck in code that cannot be
        stopped: it leaves service without being closed now; its thread closes it when it comes
        back.  Its slot is free at once, so a replacement can be created, unless too many
        threads are stuck (the thread said so when it was abandoned): then the slot comes back
        with the thread, so stuck code cannot grow threads without bound."""
        replaceable = vm.thread.replaceable
        with self._cond:
            self.abandoned += 1
            if replaceable:
                self._total -= 1
                self._cond.notify()
        vm.thread.set_on_return(lambda replaced: self._free_abandoned(vm, replaceable))

    def _free_abandoned(self, vm, slot_given_back: bool) -> None:
        vm.close()
        if not slot_given_back:
            with self._cond:
                self._total -= 1
                self._cond.notify()

    @contextmanager
    def lease(self):
        vm = self.acquire()
        try:
            yield vm
        except BaseException:
            self.release(vm)
            raise
        else:
            self.release(vm)

    def _reap_locked(self) -> None:
        now = self._clock()
        while len(self._idle) > 0 and self._total > self.min:
            vm, since = self._idle[0]
            if now - since < self.idle_ttl:
                break
            self._idle.pop(0)
            self._total -= 1
            vm.close()

    def stats(self) -> dict:
        with self._cond:
            return {"total": self._total, "idle": len(self._idle), "created": self.created,
                    "abandoned": self.abandoned}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle = [vm for vm, _ in self._idle]
            self._total -= len(idle)
            self._idle.clear()
            self._cond.notify_all()
        for vm in idle:
            vm.close()
