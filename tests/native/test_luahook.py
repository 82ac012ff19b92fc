"""Native timeout guard (native/luahook.c): stops runaway Lua, leaves the VM healthy, one watchdog."""
import gc
import os
import random
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from _engine_support import ENGINE, interpreted, luajit_only, lupa_engine as lupa

from luaskills_runtime import LuaSkillsError  # noqa: E402
from luaskills_runtime._native import luahook  # noqa: E402
from luaskills_runtime._native.luahook import TimeoutGuard  # noqa: E402

# The native guard needs lupa's exported Lua C API; lupa's Windows wheels export none (there the
# Lua-hook guard is used instead, tests/lua/test_lua_hook_guard.py), nor on Lua 5.1, whose hooks
# are per coroutine (luaskills_runtime.lua.lua_hook_guard).
pytestmark = [luajit_only,
              pytest.mark.skipif(luahook.c_api_error() is not None,
                                 reason=f"native guard unavailable: {luahook.c_api_error()}")]

TIMEOUT_MS = 250
SLACK_S = 0.5  # "returns within timeout + 0.5 s"
MESSAGE = b"luaexec execution timed out after 250 ms"


def new_runtime(**extra):
    return lupa.LuaRuntime(register_eval=False, register_builtins=False,
                           unpack_returned_tuples=True, encoding=None,
                           attribute_filter=_deny, **extra)


def _deny(obj, name, is_setting):
    raise AttributeError("denied")


@pytest.fixture
def vm():
    runtime = new_runtime()
    interpreted(runtime)  # as runlua runs requests: hooks need the interpreter
    guard = TimeoutGuard(runtime)
    yield runtime, guard
    guard.disarm()


def run_guarded(runtime, guard, code, timeout_ms=TIMEOUT_MS, message=MESSAGE):
    """Run code under the guard; returns (error text or None, elapsed seconds)."""
    start = time.monotonic()
    try:
        with guard.armed(timeout_ms, message):
            runtime.execute(code)
    except lupa.LuaError as error:
        return str(error), time.monotonic() - start
    return None, time.monotonic() - start


def no_hook(runtime, user_hook_was_set=False):
    """debug.gethook() shows no hook.  LuaJIT's debug.gethook reports the last function user code
    gave debug.sethook even after another hook replaced it, so code that set its own hook leaves
    that name behind; the mask and count still show that nothing is installed."""
    func, mask, count = runtime.eval(b"debug.gethook()")
    return (mask, count) == (b"", 0) and (func is None or user_hook_was_set)


def assert_healthy(runtime, guard, user_hook_was_set=False):
    """No hook left, no stale deadline, and a following armed call runs normally."""
    assert guard.state == "idle"
    assert no_hook(runtime, user_hook_was_set)
    with guard.armed(10_000, b"generous"):
        assert no_hook(runtime, user_hook_was_set)  # nothing installed before the deadline
        total = runtime.execute(b"local s = 0 for i = 1, 200000 do s = s + i end return s")
    assert total == 200000 * 200001 // 2
    assert not guard.fired
    assert guard.raised_count == 0
    assert no_hook(runtime, user_hook_was_set)


RUNAWAYS = {
    "busy_loop": b"while true do end",
    "pcall_busy_function": b"while true do pcall(function() while true do end end) end",
    "xpcall_busy_function":
        b"while true do xpcall(function() while true do end end, function(e) return e end) end",
    "pcall_error_loop": b"while true do pcall(error, 'again') end",
    "coroutine_busy_loop": b"""
        local co = coroutine.create(function() while true do end end)
        while true do coroutine.resume(co) co = coroutine.create(function() while true do end end) end
    """,
    "coroutine_wrap_inside_pcall": b"""
        while true do pcall(coroutine.wrap(function() local n = 0 while true do n = n + 1 end end)) end
    """,
    "allocation_loop": b"""
        local keep = {}
        while true do
          local s = string.rep('x', 1000)
          keep[#keep % 64 + 1] = {s, s .. 'y', {}}
        end
    """,
    # The VM's own lua_sethook calls race with the watchdog's: the debug.sethook wrapper puts
    # the hook back at once, and for the original (dug out of the registry) the watchdog's
    # re-assert looks win within a few ms.
    "clears_hooks_in_a_loop": b"while true do debug.sethook() end",
    "pcall_clears_hooks_in_a_loop": b"while true do pcall(debug.sethook) end",
    "sets_own_hook_in_a_loop": b"local sh = debug.sethook while true do sh(function() end, '', 5) end",
    "original_sethook_from_registry": b"""
        local original
        for k, v in pairs(debug.getregistry()) do
          if type(k) == 'userdata' and type(v) == 'function' then original = v end
        end
        assert(original)
        while true do pcall(original) end
    """,
}


@pytest.mark.parametrize("name", sorted(RUNAWAYS))
def test_runaway_code_stops_and_vm_stays_healthy(vm, name):
    runtime, guard = vm
    error, elapsed = run_guarded(runtime, guard, RUNAWAYS[name])
    assert error is not None, "runaway code returned normally"
    assert guard.fired
    assert TIMEOUT_MS / 1000 - 0.01 <= elapsed < TIMEOUT_MS / 1000 + SLACK_S
    if name != "xpcall_busy_function":
        # A plain string without position; lupa appends its traceback after a newline.
        assert error.startswith(MESSAGE.decode() + "\n") or error == MESSAGE.decode()
    assert_healthy(runtime, guard, user_hook_was_set=name == "sets_own_hook_in_a_loop")


def test_xpcall_message_handler_runs_once_and_the_caller_checks_fired(vm):
    # LuaJIT (like PUC Lua and the reference) runs a message handler raised from inside a hook
    # with hooks disabled: the handler runs to completion, then the run ends.  The caller learns
    # that the guard stopped the code from guard.fired, not from the text.
    runtime, guard = vm
    run = runtime.eval(b"function() return xpcall(function() while true do end end, "
                       b"function(e) return 'handled: ' .. tostring(e) end) end")
    start = time.monotonic()
    with guard.armed(TIMEOUT_MS, MESSAGE):
        result = run()  # tail call: no bytecode runs after xpcall returns
    assert time.monotonic() - start < TIMEOUT_MS / 1000 + SLACK_S
    assert guard.fired
    assert result == (False, b"handled: " + MESSAGE)
    assert_healthy(runtime, guard)


def test_nothing_is_installed_before_the_deadline(vm):
    runtime, guard = vm
    guard.arm(60_000, MESSAGE)
    try:
        assert guard.state == "armed"
        assert runtime.eval(b"debug.gethook()")[0] is None
    finally:
        guard.disarm()
    assert guard.state == "idle" and not guard.fired and guard.fired_at_ms is None


def test_user_hooks_work_while_the_guard_is_not_firing(vm):
    runtime, guard = vm
    count_calls = b"""
        hook_calls = 0
        debug.sethook(function() hook_calls = hook_calls + 1 end, '', 10)
        for i = 1, 1000 do end
        debug.sethook()
        return hook_calls
    """
    assert runtime.execute(count_calls) > 50  # debug.sethook (wrapped) behaves as before
    with guard.armed(60_000, MESSAGE):
        assert runtime.execute(count_calls) > 50
        runtime.execute(b"debug.sethook(function() end, '', 1000)")
    assert runtime.eval(b"debug.gethook()")[0] is not None  # disarm removes only its own hook
    runtime.execute(b"debug.sethook()")
    assert runtime.eval(b"debug.gethook()")[0] is None
    with pytest.raises(lupa.LuaError, match="bad argument"):
        runtime.execute(b"debug.sethook(function() end, 42, 'x')")  # the original's errors


def test_error_raised_after_a_python_callback_returns(vm):
    runtime, guard = vm
    runtime.globals()[b"pysleep"] = lambda: time.sleep(0.6)
    error, elapsed = run_guarded(runtime, guard, b"pysleep() while true do end", timeout_ms=100)
    assert error is not None and error.startswith(MESSAGE.decode())
    assert 0.6 <= elapsed < 0.6 + SLACK_S
    assert_healthy(runtime, guard)


def test_rearm_replaces_deadline_and_message(vm):
    runtime, guard = vm
    guard.arm(10, b"first")
    guard.arm(TIMEOUT_MS, b"second")
    start = time.monotonic()
    with pytest.raises(lupa.LuaError) as info:
        runtime.execute(b"while true do end")
    guard.disarm()
    assert str(info.value).startswith("second")
    assert time.monotonic() - start >= TIMEOUT_MS / 1000 - 0.05
    # Re-arming a guard that fired (without disarm) removes its hook at once.
    guard.arm(10, b"x")
    with pytest.raises(lupa.LuaError):
        runtime.execute(b"while true do end")
    assert guard.state == "firing"
    guard.arm(10_000, b"later")
    assert runtime.eval(b"debug.gethook()")[0] is None and not guard.fired
    guard.disarm()


def test_call_returns_results_and_disarms(vm):
    runtime, guard = vm
    add = runtime.eval(b"function(a, b) return a + b, a * b end")
    assert guard.call(add, 6, 7, timeout_ms=1000, message=MESSAGE) == (13, 42)
    assert guard.state == "idle" and not guard.fired


def test_jit_compiled_loop_times_out_with_jit_off():
    runtime = new_runtime()
    guard = TimeoutGuard(runtime)
    assert runtime.eval(b"jit.status()")[0] is True
    loop = runtime.eval(b"function(n) local x = 0 for i = 1, n do x = x + i % 7 end return x end")
    assert loop(200_000) > 0  # hot loop: LuaJIT compiles it now
    assert runtime.eval(b"require('jit.util').traceinfo(1)") is not None, "loop was not compiled"
    start = time.monotonic()
    with pytest.raises(lupa.LuaError) as info:
        guard.call(loop, 10**12, timeout_ms=TIMEOUT_MS, message=MESSAGE, jit_off=True)
    assert time.monotonic() - start < TIMEOUT_MS / 1000 + SLACK_S
    assert str(info.value).startswith(MESSAGE.decode())
    assert guard.fired
    assert runtime.eval(b"jit.status()")[0] is True  # the JIT is back on afterwards
    assert runtime.eval(b"debug.gethook()")[0] is None
    assert loop(1000) > 0


def test_jit_off_stays_off_when_it_was_off(vm):
    runtime, guard = vm
    assert runtime.eval(b"jit.status()")[0] is False
    guard.call(runtime.eval(b"function() return 1 end"), timeout_ms=1000, message=b"x", jit_off=True)
    assert runtime.eval(b"jit.status()")[0] is False


def test_jit_off_uses_functions_captured_at_install(vm):
    runtime, guard = vm
    runtime.execute(b"jit.status = function() error('tampered') end jit.off = jit.status")
    loop = runtime.eval(b"function() while true do end end")
    with pytest.raises(lupa.LuaError):
        guard.call(loop, timeout_ms=100, message=b"stopped", jit_off=True)
    assert guard.fired


def test_cancel_from_another_thread(vm):
    runtime, guard = vm
    assert guard.cancel(b"idle guard") is False  # nothing armed: nothing to stop
    timer = threading.Timer(0.2, guard.cancel, args=(b"luaexec execution cancelled by host",))
    start = time.monotonic()
    timer.start()
    try:
        error, elapsed = run_guarded(runtime, guard, b"while true do pcall(function() end) end",
                                     timeout_ms=60_000)
    finally:
        timer.join()
    assert error is not None and error.startswith("luaexec execution cancelled by host")
    assert 0.2 <= time.monotonic() - start < 0.2 + SLACK_S
    assert guard.fired
    assert_healthy(runtime, guard)


def test_cancel_keeps_the_first_reason(vm):
    runtime, guard = vm
    guard.arm(60_000, MESSAGE)
    assert guard.cancel(b"first reason") is True
    assert guard.cancel(b"second reason") is True
    with pytest.raises(lupa.LuaError) as info:
        runtime.execute(b"return 1")
    guard.disarm()
    assert str(info.value).startswith("first reason")


def _watchdog_threads():
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as fh:
                names.append(fh.read().strip())
        except FileNotFoundError:
            pass
    return names.count("lsr-luahook")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc thread names")
def test_one_watchdog_thread_for_many_guards():
    pairs = [(rt, TimeoutGuard(rt)) for rt in (new_runtime() for _ in range(24))]
    for index, (_, guard) in enumerate(pairs):
        guard.arm(60_000 + index, MESSAGE)
    assert luahook.watchdog_running()
    assert _watchdog_threads() == 1
    before = len(os.listdir("/proc/self/task"))
    for _ in range(50):  # arming again is cheap: no thread per call
        for _, guard in pairs:
            guard.arm(60_000, MESSAGE)
    assert len(os.listdir("/proc/self/task")) == before
    for _, guard in pairs:
        guard.disarm()
    assert _watchdog_threads() == 1


def test_watchdog_stops_joins_and_restarts_lazily(vm):
    runtime, guard = vm
    guard.arm(60_000, MESSAGE)
    guard.disarm()
    luahook.stop_watchdog()
    assert not luahook.watchdog_running()
    if os.path.isdir("/proc/self/task"):
        assert _watchdog_threads() == 0
    error, elapsed = run_guarded(runtime, guard, b"while true do end")
    assert error is not None and luahook.watchdog_running()
    assert elapsed < TIMEOUT_MS / 1000 + SLACK_S


def test_parallel_vms_fire_at_their_own_deadlines():
    timeouts = [300, 700, 1100]
    results = {}

    def worker(timeout_ms):
        runtime = new_runtime()
        interpreted(runtime)
        guard = TimeoutGuard(runtime)
        message = f"timed out after {timeout_ms} ms".encode()
        error, elapsed = run_guarded(runtime, guard, b"local n = 0 while true do n = n + 1 end",
                                     timeout_ms=timeout_ms, message=message)
        results[timeout_ms] = (error, elapsed, guard.fired)

    threads = [threading.Thread(target=worker, args=(t,)) for t in timeouts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for timeout_ms in timeouts:
        error, elapsed, fired = results[timeout_ms]
        assert fired and error.startswith(f"timed out after {timeout_ms} ms")
        assert timeout_ms / 1000 - 0.01 <= elapsed < timeout_ms / 1000 + SLACK_S


def test_hook_message_is_a_plain_string_in_lua(vm):
    runtime, guard = vm
    # pcall hands the error value to Python before any more bytecode runs (the hook raises on
    # every instruction): it is exactly the message, no position prefix.
    runner = runtime.eval(b"function(f) return pcall(f) end")  # tail call: no bytecode after
    busy = runtime.eval(b"function() while true do end end")
    with guard.armed(100, MESSAGE):
        result = runner(busy)
    assert result == (False, MESSAGE)


def test_destroying_guard_while_armed_or_fired():
    runtime = new_runtime()
    interpreted(runtime)
    guard = TimeoutGuard(runtime)
    guard.arm(50, MESSAGE)
    del guard
    gc.collect()
    time.sleep(0.15)  # past the deadline: the watchdog must not touch the released slot
    assert runtime.eval(b"debug.gethook()")[0] is None
    assert runtime.execute(b"local n = 0 for i = 1, 100000 do n = n + 1 end return n") == 100000

    guard = TimeoutGuard(runtime)  # the state accepts a new guard once the old one is gone
    assert runtime.execute(b"local n = 0 debug.sethook(function() n = n + 1 end, '', 1) "
                           b"for i = 1, 10 do end debug.sethook() return n") > 10
    guard.arm(20, MESSAGE)
    with pytest.raises(lupa.LuaError):
        runtime.execute(b"while true do end")
    del guard  # dropped while firing: its hook goes with it
    gc.collect()
    assert runtime.eval(b"debug.gethook()")[0] is None


def test_destroying_runtime_and_guard_while_armed_many_times():
    # Tiny deadlines race the watchdog against release and lua_close; it must never touch a
    # closed state (a use-after-free would crash or corrupt this process).
    rng = random.Random(5)
    for _ in range(150):
        runtime = new_runtime()
        guard = TimeoutGuard(runtime)
        guard.arm(rng.choice([1, 2, 3]), MESSAGE)
        if rng.random() < 0.5:
            time.sleep(rng.choice([0, 0.001, 0.003]))
        del runtime  # the guard keeps the runtime alive ...
        assert guard.bound
        del guard  # ... until here
        if rng.random() < 0.2:
            gc.collect()
    gc.collect()
    time.sleep(0.05)


def _live_count(kind) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


def test_guard_in_a_reference_cycle_with_its_runtime():
    runtime = new_runtime()
    runtime_type = type(runtime)
    gc.collect()
    guards_before, runtimes_before = _live_count(TimeoutGuard), _live_count(runtime_type)
    guard = TimeoutGuard(runtime)
    runtime.globals()[b"guard_ref"] = guard  # runtime -> guard -> runtime
    guard.arm(30, MESSAGE)
    del runtime, guard
    gc.collect()
    # the cycle collector freed both, the armed guard included
    assert _live_count(TimeoutGuard) == guards_before
    assert _live_count(runtime_type) == runtimes_before - 1
    time.sleep(0.1)  # past the freed guard's deadline: its timer must not touch freed memory
    other = new_runtime()
    interpreted(other)
    fresh = TimeoutGuard(other)
    fresh.arm(20, MESSAGE)
    try:
        with pytest.raises(lupa.LuaError, match=MESSAGE.decode()):
            other.execute(b"while true do end")
    finally:
        fresh.disarm()


def test_dropping_guard_while_its_lua_runs_in_another_thread():
    runtime = new_runtime()
    interpreted(runtime)
    guard = TimeoutGuard(runtime)
    finished = threading.Event()
    outcome = []

    def work():
        try:
            outcome.append(runtime.execute(
                b"local n = 0 for i = 1, 3000000 do n = n + 1 end return n"))
        except lupa.LuaError as error:
            outcome.append(str(error))
        finished.set()

    guard.arm(60_000, MESSAGE)
    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.01)
    del guard
    gc.collect()
    assert finished.wait(20)
    thread.join()
    assert outcome == [3000000]
    assert runtime.eval(b"debug.gethook()")[0] is None


def test_max_memory_runtime(vm):
    runtime = new_runtime(max_memory=64 * 1024 * 1024)
    interpreted(runtime)
    guard = TimeoutGuard(runtime)
    error, elapsed = run_guarded(runtime, guard, RUNAWAYS["allocation_loop"])
    assert error is not None and guard.fired and elapsed < TIMEOUT_MS / 1000 + SLACK_S
    assert_healthy(runtime, guard)


def test_bad_input_is_rejected_clearly(vm):
    runtime, guard = vm
    with pytest.raises(TypeError, match=f"lupa.{ENGINE}.LuaRuntime"):
        TimeoutGuard(object())
    lua54 = pytest.importorskip("lupa.lua54")
    with pytest.raises(TypeError, match=f"lupa.{ENGINE}.LuaRuntime"):
        TimeoutGuard(lua54.LuaRuntime())
    with pytest.raises(ValueError, match="timeout_ms must be greater than 0"):
        guard.arm(0, MESSAGE)
    with pytest.raises(ValueError, match="timeout_ms must be greater than 0"):
        guard.arm(-5, MESSAGE)
    with pytest.raises(TypeError, match="timeout_ms"):
        guard.arm(True, MESSAGE)
    with pytest.raises(TypeError, match="timeout_ms"):
        guard.arm(1.5, MESSAGE)
    with pytest.raises(TypeError, match="message"):
        guard.arm(10, 42)
    with pytest.raises(ValueError, match="longer than 4096 bytes"):
        guard.arm(10, b"x" * 4097)
    with pytest.raises(TypeError, match="timeout_ms"):
        guard.armed("10", MESSAGE)
    assert guard.state == "idle"
    guard.arm(2**70, "a str message is UTF-8 encoded")  # saturates: never fires
    guard.disarm()


def test_one_live_guard_per_runtime(vm):
    runtime, guard = vm
    with pytest.raises(LuaSkillsError, match="already has a TimeoutGuard"):
        TimeoutGuard(runtime)
    # The failed install left the existing guard working.
    error, _ = run_guarded(runtime, guard, b"while true do end", timeout_ms=50)
    assert error is not None and guard.fired


def test_lua_code_cannot_bind_or_reach_the_guard(vm):
    runtime, guard = vm
    runtime.globals()[b"hook_path"] = os.fsencode(luahook.__file__)
    ok, text = runtime.execute(
        b"local f = package.loadlib(hook_path, 'luaopen_luaskills_hook') return pcall(f, 12345)")
    assert ok is False and b"already has a TimeoutGuard" in text
    fresh = new_runtime()
    fresh.globals()[b"hook_path"] = os.fsencode(luahook.__file__)
    ok, text = fresh.execute(
        b"local f = package.loadlib(hook_path, 'luaopen_luaskills_hook') return pcall(f, 12345)")
    assert ok is False and text == b"luaskills hook: unknown binding token"
    ok, text = fresh.execute(
        b"local f = package.loadlib(hook_path, 'luaopen_luaskills_hook') "
        b"return coroutine.resume(coroutine.create(function() return f(1) end))")
    assert ok is False and text == b"luaskills hook: bind from the main Lua thread"
    anchor_mt = runtime.execute(
        b"for k, v in pairs(debug.getregistry()) do "
        b"  if type(k) == 'userdata' and type(v) == 'userdata' then return getmetatable(v) end "
        b"end")
    assert anchor_mt is False  # the anchor hides its metatable


def test_install_needs_package_loadlib():
    runtime = new_runtime()
    runtime.execute(b"package.loadlib = nil")
    with pytest.raises(LuaSkillsError, match="package.loadlib"):
        TimeoutGuard(runtime)


def test_deadline_heap_against_a_model():
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    size = 12
    op = st.one_of(
        st.tuples(st.just("push"), st.integers(0, size - 1), st.integers(-5, 20)),
        st.tuples(st.just("update"), st.integers(0, size - 1), st.integers(-5, 20)),
        st.tuples(st.just("remove"), st.integers(0, size - 1), st.just(0)),
        st.tuples(st.just("pop"), st.just(0), st.just(0)),
    )

    @hypothesis.settings(max_examples=120, deadline=None)
    @hypothesis.given(st.lists(op, max_size=80))
    def check(ops):
        heap = luahook._DeadlineHeap(size)
        model = {}  # node -> (key, seq)
        seq = 0
        for name, node, key in ops:
            if name == "push":
                if node in model:
                    with pytest.raises(ValueError):
                        heap.push(node, key)
                    continue
                heap.push(node, key)
                model[node] = (key, seq)
                seq += 1
            elif name == "update":
                if node not in model:
                    with pytest.raises(ValueError):
                        heap.update(node, key)
                    continue
                heap.update(node, key)
                model[node] = (key, model[node][1])
            elif name == "remove":
                heap.remove(node)
                model.pop(node, None)
            else:
                expected = min(model, key=model.get) if model else None
                got = heap.pop()
                assert (got[0] if got else None) == expected
                if expected is not None:
                    assert got[1] == model.pop(expected)[0]
            assert len(heap) == len(model)
            assert all((n in heap) == (n in model) for n in range(size))
            top = heap.top()
            assert (top[0] if top else None) == (min(model, key=model.get) if model else None)
        order = []
        while len(heap):
            order.append(heap.pop()[0])
        assert order == sorted(model, key=model.get)

    check()


def test_watchdog_fires_in_deadline_order_randomized():
    # Real guards (no Lua running): the watchdog installs each hook when its deadline passes.
    # fired_at must respect every deadline, follow deadline order, and skip disarmed guards.
    rng = random.Random(1234)
    pairs = [(rt, TimeoutGuard(rt)) for rt in (new_runtime() for _ in range(16))]
    for _ in range(3):
        deadlines = {}
        for index, (_, guard) in enumerate(pairs):
            timeout = rng.randint(5, 250)
            start = luahook.monotonic_ms()
            guard.arm(timeout, MESSAGE)
            deadlines[index] = start + timeout
            if rng.random() < 0.3:  # re-arm: the heap entry moves
                timeout = rng.randint(5, 250)
                start = luahook.monotonic_ms()
                guard.arm(timeout, MESSAGE)
                deadlines[index] = start + timeout
        disarmed = set(rng.sample(sorted(deadlines), 4))
        for index in disarmed:
            pairs[index][1].disarm()
        time.sleep(0.25 + 0.3)
        fired = {}
        for index, (_, guard) in enumerate(pairs):
            if index in disarmed:
                assert guard.state == "idle" and guard.fired_at_ms is None
                continue
            assert guard.state == "firing"
            fired[index] = guard.fired_at_ms
            assert fired[index] >= deadlines[index]
        by_deadline = sorted(fired, key=lambda i: deadlines[i])
        times = [fired[i] for i in by_deadline]
        assert times == sorted(times)
        for _, guard in pairs:
            guard.disarm()
            assert guard.state == "idle"


def test_concurrent_arm_disarm_cancel_stress():
    runtimes = [new_runtime() for _ in range(4)]
    for runtime in runtimes:
        interpreted(runtime)
    guards = [TimeoutGuard(rt) for rt in runtimes]
    stop = time.monotonic() + 1.5
    failures = []

    def runner(index):
        rng = random.Random(index)
        runtime, guard = runtimes[index], guards[index]
        while time.monotonic() < stop:
            try:
                with guard.armed(rng.randint(1, 30), b"stress"):
                    runtime.execute(b"local n = 0 for i = 1, 20000 do n = n + 1 end return n")
            except lupa.LuaError as error:
                if not str(error).startswith(("stress", "cancel")):
                    failures.append(str(error))
            if runtime.eval(b"debug.gethook()")[0] is not None:
                failures.append("hook left after disarm")

    def canceller():
        rng = random.Random(99)
        while time.monotonic() < stop:
            rng.choice(guards).cancel(b"cancel")
            time.sleep(0.002)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=canceller))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures


def test_watchdog_is_joined_at_interpreter_exit():
    script = textwrap.dedent("""
        import atexit, os, sys
        def check():  # registered before luahook's handler, so it runs after it
            from luaskills_runtime._native import luahook
            print("running-after-exit", luahook.watchdog_running(), flush=True)
        atexit.register(check)
        from luaskills_runtime.lua_engine import lupa_engine as L
        from luaskills_runtime._native.luahook import TimeoutGuard
        rt = L.LuaRuntime(encoding=None)
        guard = TimeoutGuard(rt)
        guard.arm(60_000, b"left armed on purpose")
        leaked = guard
        print("running", __import__("luaskills_runtime._native.luahook").
              _native.luahook.watchdog_running(), flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert "running True" in done.stdout
    assert "running-after-exit False" in done.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_guard_works_in_a_forked_child(vm):
    import warnings

    runtime, guard = vm
    guard.arm(60_000, MESSAGE)  # the watchdog runs in the parent at fork time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: the watchdog is restarted for the armed guard
        code = 1
        try:
            guard.arm(100, b"child timed out")
            try:
                runtime.execute(b"while true do end")
            except lupa.LuaError as error:
                code = 0 if str(error).startswith("child timed out") else 2
        finally:
            os._exit(code)
    guard.disarm()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
