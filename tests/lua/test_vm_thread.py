"""VmThread: guarded work on a VM's own thread, answered on time even when it cannot be stopped.

Plain Python functions stand in for Lua work here (an Event the test holds plays the stuck C
call), so the timing rules are checked without a VM: the caller gets the result, the error, or
VmAbandoned by deadline + GRACE_SEC (cancel: CANCEL_GRACE_SEC), and the abandoned work's
`on_return` runs on the thread once it comes back.
"""
import threading
import time

import pytest

from luaskills_runtime.lua.guard import CancelToken
from luaskills_runtime.lua.vm_thread import (CANCEL_GRACE_SEC, GRACE_SEC, VmAbandoned, VmThread,
                                             stuck_stats)

SLACK = 0.25  # the machine is shared: scheduling may add this much


def test_result_error_and_reuse():
    vm_thread = VmThread("test-vm")
    try:
        far = time.monotonic() + 10
        assert vm_thread.call(lambda a, b: a + b, 2, 3, deadline=far) == 5
        with pytest.raises(ZeroDivisionError):
            vm_thread.call(lambda: 1 / 0, deadline=far)
        names = set()
        for _ in range(3):
            vm_thread.call(lambda: names.add(threading.current_thread().name), deadline=far)
        assert names == {"test-vm"} and not vm_thread.abandoned
    finally:
        vm_thread.close()


def _stuck_call(vm_thread, release, deadline, cancel=None):
    start = time.monotonic()
    with pytest.raises(VmAbandoned):
        vm_thread.call(release.wait, 30, deadline=deadline, cancel=cancel)
    return time.monotonic() - start


def test_overrun_is_abandoned_on_time_and_freed_when_it_returns():
    vm_thread = VmThread("test-vm")
    release = threading.Event()
    freed = threading.Event()
    before = stuck_stats()
    elapsed = _stuck_call(vm_thread, release, time.monotonic() + 0.1)
    assert 0.1 + GRACE_SEC - 0.02 <= elapsed <= 0.1 + GRACE_SEC + SLACK
    assert vm_thread.abandoned
    assert stuck_stats()["stuck"] == before["stuck"] + 1
    assert stuck_stats()["abandoned_total"] == before["abandoned_total"] + 1
    vm_thread.set_on_return(lambda replaced: freed.set())
    assert not freed.is_set()
    release.set()
    assert freed.wait(5)
    deadline = time.monotonic() + 5
    while stuck_stats()["stuck"] != before["stuck"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stuck_stats()["stuck"] == before["stuck"]
    with pytest.raises(RuntimeError):   # an abandoned VM thread is never reused
        vm_thread.call(lambda: 1, deadline=time.monotonic() + 1)


def test_cancel_answers_within_the_cancel_grace():
    vm_thread = VmThread("test-vm")
    release = threading.Event()
    token = CancelToken()
    timer = threading.Timer(0.2, token.cancel)
    timer.start()
    start = time.monotonic()
    with pytest.raises(VmAbandoned):
        vm_thread.call(release.wait, 30, deadline=time.monotonic() + 10, cancel=token)
    after_cancel = time.monotonic() - start - 0.2
    assert after_cancel <= CANCEL_GRACE_SEC + 0.05 + SLACK / 2
    release.set()
    vm_thread.set_on_return(lambda replaced: None)


def test_work_that_ends_after_a_cancel_is_not_abandoned():
    vm_thread = VmThread("test-vm")
    try:
        token = CancelToken()
        token.cancel()
        assert vm_thread.call(time.sleep, 0.001, deadline=time.monotonic() + 5, cancel=token) is None
        assert not vm_thread.abandoned
    finally:
        vm_thread.close()


def test_close_ends_the_idle_thread():
    vm_thread = VmThread("test-vm-close")
    vm_thread.call(lambda: None, deadline=time.monotonic() + 5)
    vm_thread.close()
    assert not any(t.name == "test-vm-close" for t in threading.enumerate())
