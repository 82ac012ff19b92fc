"""The watchdog installs its hook while the VM's thread is paused (native/luaapi.h, luahook.c).

LuaJIT flips a "hook running" bit in its hook mask around every hook call and every __gc
finalizer, without atomics.  A lua_sethook issued from the watchdog thread while the VM ran could
write that bit back after the VM had cleared it; LuaJIT then never called a hook again and the
guarded loop ran forever (seen once as a hung runlua test, "user hook set first").  These runs fire
the guard thousands of times while the VM flips that bit as fast as it can; before the fix a few
per thousand never stopped.
"""
import signal
import sys
import threading
import time

import pytest

from _engine_support import ENGINE, interpreted, luajit_only, lupa_engine as lupa

from luaskills_runtime._native import luahook  # noqa: E402
from luaskills_runtime._native.luahook import TimeoutGuard  # noqa: E402

# The native guard needs lupa's exported Lua C API; lupa's Windows wheels export none (there the
# Lua-hook guard is used instead, tests/lua/test_lua_hook_guard.py), nor on Lua 5.1, whose hooks
# are per coroutine (luaskills_runtime.lua.lua_hook_guard).
pytestmark = [luajit_only,
              pytest.mark.skipif(luahook.c_api_error() is not None,
                                 reason=f"native guard unavailable: {luahook.c_api_error()}")]

MESSAGE = b"stopped"
ESCAPED = b"escaped"  # what the loops return when the guard did not stop them in time

# Each loop flips the "hook running" bit all the time, and runs at most 3 s of CPU time by itself,
# so that a run the guard cannot stop ends (and fails the test) instead of hanging it.
FLIPPING_LOOPS = {
    # a user count hook: the bit is set while the hook function runs
    "user count hook": b"""
        debug.sethook(function() end, '', 50)
        local t0 = os.clock()
        while os.clock() - t0 < 3 do end
        return 'escaped'""",
    # __gc finalizers: the bit is set (with the GC bit) while each finalizer runs
    "finalizers": b"""
        local function fin() local x = 0 for i = 1, 20 do x = x + i end end
        local t0 = os.clock()
        while os.clock() - t0 < 3 do
          for i = 1, 50 do getmetatable(newproxy(true)).__gc = fin end
        end
        return 'escaped'""",
}


def new_vm():
    runtime = lupa.LuaRuntime(register_eval=False, register_builtins=False,
                              unpack_returned_tuples=True, encoding=None)
    interpreted(runtime)
    return runtime, TimeoutGuard(runtime), runtime.eval(b"function(code) return load(code)() end")


def stop_many_times(loop, rounds, failures):
    runtime, guard, run = new_vm()
    for round_no in range(rounds):
        start = time.monotonic()
        try:
            result = guard.call(run, loop, timeout_ms=2, message=MESSAGE)
        except lupa.LuaError as error:
            result = str(error).encode()
        took = time.monotonic() - start
        if not guard.fired or took > 2.0:
            failures.append(f"round {round_no}: {result!r} after {took:.2f} s, "
                            f"raised {guard.raised_count}")
            return
        if runtime.eval(b"debug.gethook()")[1] != b"":
            failures.append(f"round {round_no}: a hook is left after disarm")
            return


@pytest.mark.soak
def test_guard_stops_code_that_flips_the_hook_running_bit_every_time():
    failures = []
    threads = [threading.Thread(target=stop_many_times, args=(loop, 1500, failures))
               for loop in FLIPPING_LOOPS.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures, failures


def test_pausing_is_available():
    assert luahook.pause_error() is None


def test_python_callback_sleeping_through_the_deadline_is_not_disturbed():
    # The watchdog keeps re-installing the hook while the VM sits in a Python call after the
    # deadline; pausing that thread (a signal on POSIX) must not break the call.
    runtime, guard, _ = new_vm()
    slept = []

    def nap():
        start = time.monotonic()
        time.sleep(0.4)
        slept.append(time.monotonic() - start)
        return 7

    runtime.globals()[b"nap"] = nap
    start = time.monotonic()
    with pytest.raises(lupa.LuaError, match="stopped"):
        guard.call(runtime.eval(b"function() local v = nap() while true do end end"),
                   timeout_ms=20, message=MESSAGE)
    assert guard.fired
    assert slept and 0.39 <= slept[0] < 1.5
    assert time.monotonic() - start < 2


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal masks")
def test_thread_that_blocks_the_pause_signal_is_still_stopped():
    # The pause cannot happen: after REASSERT_FAST_FOR ms the watchdog writes the hook anyway.
    runtime, guard, run = new_vm()
    outcome = {}

    def work():
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals()))
        start = time.monotonic()
        try:
            guard.call(run, b"while true do end", timeout_ms=30, message=MESSAGE)
        except lupa.LuaError as error:
            outcome["error"] = str(error)
        outcome["took"] = time.monotonic() - start

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome["error"].startswith("stopped")
    assert 0.25 <= outcome["took"] < 2
