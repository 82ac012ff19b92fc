"""Leak checks for the deadline paths (issue 12): repeated timeouts and cancels of blocking
primitives, and stuck VMs once their threads came back, leave no fd, thread or zombie behind.
Counts are modest so the file runs in seconds."""
import threading
import time

import psutil

from luaskills_runtime import HostOptions, LuaEngine
from luaskills_runtime.lua.vm_thread import stuck_stats

from _process_support import open_fds, os_threads, wait_threads_at_most

# ~1 s in C: longer than the deadline + grace (a ~0.2 s call came back inside the grace, and
# under the Lua-hook guard (lua51) no hook ran before it returned: the run succeeded).
SHORT_STUCK = "return string.find(string.rep('a', 125), '.-.-.-.-b')"


def zombies():
    return [child for child in psutil.Process().children(recursive=True)
            if child.status() == psutil.STATUS_ZOMBIE]


def wait_no_stuck(baseline, timeout=30.0):
    deadline = time.monotonic() + timeout
    while stuck_stats()["stuck"] > baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    return stuck_stats()["stuck"]


def runlua(engine, code, timeout_ms, request_id=None):
    return engine.execute_runlua_request_inline({"code": code, "timeout_ms": timeout_ms},
                                                request_id=request_id)


def test_no_growth_over_timeout_cancel_and_stuck_cycles():
    baseline_stuck = stuck_stats()["stuck"]
    with LuaEngine(HostOptions()) as engine:
        lease_id = engine.create_runtime_lease({"sid": "leaks"})["lease_id"]
        # warm up every path once (pool VM thread, lease VM thread, guard watchdog)
        runlua(engine, "return os.execute('sleep 5')", 50)
        engine.eval_runtime_lease({"lease_id": lease_id, "code": "return 1"})
        fds, threads = len(open_fds()), os_threads()
        for cycle in range(20):
            runlua(engine, "return vulcan.process.exec{command='sleep 5'}", 30)
            runlua(engine, "return os.execute('sleep 5')", 30)
            runlua(engine, "local p = io.popen('sleep 5') return p:read('*a')", 30)
            engine.eval_runtime_lease({"lease_id": lease_id, "timeout_ms": 30,
                                       "code": "return vulcan.process.exec{command='sleep 5'}"})
            cancel = threading.Timer(0.03, engine.cancel_runlua, args=("c",))
            cancel.start()
            runlua(engine, "return os.execute('sleep 5')", 60_000, request_id="c")
            cancel.join()
        for cycle in range(3):   # stuck VMs: abandoned, then freed when their thread comes back
            assert "timed out after 20 ms" in runlua(engine, SHORT_STUCK, 20)
            sid = f"stuck-{cycle}"
            stuck_lease = engine.create_runtime_lease({"sid": sid})["lease_id"]
            answer = engine.eval_runtime_lease({"lease_id": stuck_lease, "code": SHORT_STUCK,
                                                "timeout_ms": 20})
            assert "timed out after 20 ms" in answer["message"]
            assert wait_no_stuck(baseline_stuck) == baseline_stuck
        assert engine.stats()["abandoned_total"] >= 1
        assert "SUCCESS" in runlua(engine, "return 1", 1000)
        assert len(open_fds()) <= fds + 2
        assert wait_threads_at_most(threads + 1) <= threads + 1   # (one replacement VM thread)
        assert not zombies()
