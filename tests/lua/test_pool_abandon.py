"""VmPool.abandon and acquire's deadline/cancel: a stuck VM's slot is free at once (a
replacement is made) unless too many threads are stuck, then it comes back with the thread;
the VM is closed when its thread returns; waiting for a VM ends at the deadline or a cancel."""
import threading
import time

import pytest

from luaskills_runtime.lua import vm_thread
from luaskills_runtime.lua.guard import CancelToken
from luaskills_runtime.lua.pool import PoolWaitOver, VmPool
from luaskills_runtime.lua.vm_thread import VmAbandoned, VmThread


class ThreadedVM:
    def __init__(self):
        self.thread = VmThread("test-pool-vm")
        self.closed = threading.Event()
        self.broken = False

    def close(self):
        self.closed.set()
        self.thread.close()


def _stuck(pool, release):
    vm = pool.acquire()
    with pytest.raises(VmAbandoned):
        vm.thread.call(release.wait, 30, deadline=time.monotonic() + 0.01)
    pool.abandon(vm)
    return vm


@pytest.mark.parametrize("bound, replaced", [(16, True), (0, False)])
def test_abandoned_vm_slot_and_close(monkeypatch, bound, replaced):
    monkeypatch.setattr(vm_thread, "MAX_STUCK_THREADS", bound)
    pool = VmPool((0, 1, 60), ThreadedVM, "test")
    release = threading.Event()
    stuck = _stuck(pool, release)
    assert not stuck.closed.is_set()
    assert pool.stats()["abandoned"] == 1
    assert (pool.stats()["total"] == 0) is replaced
    if replaced:
        fresh = pool.acquire()   # a replacement at once
        assert fresh is not stuck
        pool.release(fresh)
    else:
        with pytest.raises(PoolWaitOver):
            pool.acquire(deadline=time.monotonic() + 0.05)
    release.set()
    assert stuck.closed.wait(5)
    deadline = time.monotonic() + 5
    while pool.stats()["total"] > (1 if replaced else 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    vm = pool.acquire(deadline=time.monotonic() + 1)
    assert vm is not stuck
    pool.release(vm)
    pool.close()


def test_waiting_for_a_vm_ends_at_the_deadline_or_on_cancel():
    pool = VmPool((0, 1, 60), ThreadedVM, "test")
    held = pool.acquire()
    start = time.monotonic()
    with pytest.raises(PoolWaitOver) as over:
        pool.acquire(deadline=time.monotonic() + 0.1)
    assert not over.value.cancelled and 0.09 <= time.monotonic() - start <= 0.5
    token = CancelToken()
    threading.Timer(0.1, token.cancel).start()
    start = time.monotonic()
    with pytest.raises(PoolWaitOver) as over:
        pool.acquire(cancel=token)
    assert over.value.cancelled and time.monotonic() - start <= 0.3
    pool.release(held)
    assert pool.acquire(deadline=time.monotonic() + 0.1) is held
    pool.close()
