"""VmPool with an injected clock: idle-TTL reaping, LIFO reuse, waiting at the limit, discard."""
import threading

import pytest

from _lease_support import FakeClock, wait_until
from luaskills_runtime import LuaSkillsError
from luaskills_runtime.lua.pool import VmPool


class FakeVM:
    def __init__(self, number):
        self.number = number
        self.broken = False
        self.closed = False

    def close(self):
        self.closed = True


class Factory:
    def __init__(self):
        self.made = []

    def __call__(self):
        vm = FakeVM(len(self.made))
        self.made.append(vm)
        return vm


def make_pool(config):
    clock, factory = FakeClock(), Factory()
    return VmPool(config, factory, "test", clock=clock.monotonic), clock, factory


def test_idle_vms_above_min_are_reaped_after_the_ttl_oldest_first():
    pool, clock, factory = make_pool((1, 3, 10))
    first, second, third = pool.acquire(), pool.acquire(), pool.acquire()
    pool.release(first)
    clock.advance(4)
    pool.release(second)
    clock.advance(4)
    pool.release(third)
    assert pool.stats() == {"total": 3, "idle": 3, "created": 3, "abandoned": 0}
    clock.advance(3)          # first idle 11 s, second 7 s, third 3 s
    vm = pool.acquire()       # the check runs on acquire: only `first` is past the TTL
    assert first.closed and not second.closed and not third.closed
    assert vm is third        # and the newest idle VM is handed out
    pool.release(vm)
    clock.advance(100)        # everything is past the TTL now, but `min` VMs stay
    pool.release(pool.acquire())
    assert pool.stats()["total"] == 1
    assert [vm.closed for vm in factory.made] == [True, True, False]


def test_idle_vms_are_reused_last_in_first_out():
    pool, _, factory = make_pool((1, 4, 60))
    vms = [pool.acquire() for _ in range(3)]
    for vm in vms:
        pool.release(vm)
    assert [pool.acquire() for _ in range(3)] == vms[::-1]
    assert len(factory.made) == 3


def test_acquire_waits_at_the_limit_until_a_vm_is_released():
    pool, _, factory = make_pool((1, 1, 60))
    held = pool.acquire()
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire()))
    waiter.start()
    # the waiter is parked on the pool's condition (white-box: no sleep needed)
    assert wait_until(lambda: len(pool._cond._waiters) == 1)
    assert got == []
    pool.release(held)
    waiter.join(10)
    assert got == [held] and len(factory.made) == 1


def test_broken_and_discarded_vms_are_closed_and_free_their_slot():
    pool, _, factory = make_pool((1, 1, 60))
    vm = pool.acquire()
    vm.broken = True
    pool.release(vm)
    assert vm.closed and pool.stats()["total"] == 0
    other = pool.acquire()
    pool.release(other, discard=True)
    assert other.closed and len(factory.made) == 2


def test_a_failing_factory_frees_its_slot():
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("no VM")
        return FakeVM(len(calls))

    pool = VmPool((1, 1, 60), factory, "test", clock=FakeClock().monotonic)
    with pytest.raises(RuntimeError):
        pool.acquire()
    assert pool.acquire().number == 2


def test_closing_wakes_waiters_and_closes_idle_vms():
    pool, _, _ = make_pool((1, 1, 60))
    held = pool.acquire()
    errors = []

    def wait():
        try:
            pool.acquire()
        except LuaSkillsError as error:
            errors.append(str(error))

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert wait_until(lambda: len(pool._cond._waiters) == 1)
    pool.close()
    waiter.join(10)
    assert errors == ["test VM pool is closed"]
    pool.release(held)        # a VM in use when the pool closed is closed on release
    assert held.closed
