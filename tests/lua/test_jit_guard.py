"""The JIT-on timeout guard ("jit-profile", native/jitguard.c): loops stopped inside compiled
traces in runlua, lease evals and run_lua; cancel from another thread; several VMs in parallel;
the VM keeps compiling after a timeout; user code cannot reach jit.profile or break the guard
with jit.off/on/flush; a refused self-check falls back to the JIT-off guard."""
import os
import platform
import random
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from _engine_support import luajit_only, lupa_engine as lupa  # noqa: E402

# The JIT-on guard is LuaJIT's (on the lua51 engine there is no JIT and no native guard).
pytestmark = luajit_only

from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError  # noqa: E402
from luaskills_runtime._native import luahook  # noqa: E402
from luaskills_runtime.lua import guard_mechanism as mechanisms  # noqa: E402
from luaskills_runtime.lua.guard_mechanism import JIT_OFF_HOOK, JIT_PROFILE, guard_mechanism  # noqa: E402

VERIFIED_PLATFORM = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")
# .ci/run reruns the guard tests with LUASKILLS_GUARD=lua-hook; the JIT-on guard is not in use then.
LUA_HOOK_FORCED = os.environ.get(mechanisms.GUARD_ENV, "").strip().lower() == mechanisms.LUA_HOOK
needs_jit_guard = pytest.mark.skipif(not VERIFIED_PLATFORM or LUA_HOOK_FORCED,
                                     reason="the JIT guard is verified on Linux x86-64 only, "
                                            "and LUASKILLS_GUARD=lua-hook is not forced")

DEADLINE_MS = 100
LATE_MS = 50  # the bound: stopped within deadline + 50 ms

# Every shape runs forever unless stopped.
LOOP_SHAPES = {
    "empty while": "while true do end",
    "counter": "local x = 0 while true do x = x + 1 end",
    "numeric for": "local x = 0 for i = 1, 1e15 do x = x + i % 7 end",
    "branches on several lines": """
        local x = 0
        for i = 1, 1e15 do
          if i % 3 == 0 then
            x = x + 1
          elseif i % 5 == 0 then
            x = x - 1
          else
            x = x + 2
          end
        end""",
    "calls and small tables": """
        local function pair(i) return { i, i + 1 } end
        local s = 0
        for i = 1, 1e15 do local t = pair(i) s = s + t[1] + t[2] end""",
    "string-key table updates": """
        local t, keys = {}, { "alpha", "beta", "gamma", "delta" }
        for i = 1, 1e15 do local k = keys[i % 4 + 1] t[k] = (t[k] or 0) + 1 end""",
    "pcall loop": "while true do pcall(function() local s = 0 for i = 1, 100 do s = s + i end end) end",
    "xpcall nest": """
        local function f() local s = 0 for i = 1, 1000 do s = s + i end return s end
        while true do xpcall(function() return xpcall(f, tostring) end, tostring) end""",
    "error loop": "while true do pcall(error, 'boom') end",
    "pcall swallowing the stop": "while true do pcall(function() while true do end end) end",
    "coroutine ping-pong": """
        local co = coroutine.wrap(function() while true do coroutine.yield(1) end end)
        local s = 0
        while true do s = s + co() end""",
    "loop inside a coroutine": """
        local co = coroutine.create(function() local x = 0 while true do x = x + 1 end end)
        while true do coroutine.resume(co) end""",
    "allocation": """
        local t, i = {}, 0
        while true do i = i + 1 t[i % 1000 + 1] = { i, tostring(i) } end""",
    "string building": """
        local s = ""
        while true do s = s .. "x" if #s > 100000 then s = "" end end""",
    "gsub callback": """
        local s = string.rep("a", 1000)
        while true do s:gsub("a", function(c) return c end) end""",
    "sort callback": """
        local t = {}
        for i = 1, 200 do t[i] = (i * 7919) % 211 end
        while true do table.sort(t, function(a, b) return a > b end) end""",
    "recursion": """
        local function depth(n) if n == 0 then return 0 end return 1 + depth(n - 1) end
        while true do depth(200) end""",
    "endless tail calls": "local function f(n) return f(n + 1) end f(1)",
    "pairs": "local t, s = { a = 1, b = 2, c = 3 }, 0 while true do for _, v in pairs(t) do s = s + v end end",
    "ipairs": "local t, s = { 1, 2, 3, 4, 5 }, 0 while true do for _, v in ipairs(t) do s = s + v end end",
    "inlined math builtins": "local s = 0 for i = 1, 1e15 do s = s + math.floor(math.sqrt(i)) end",
    "stitched C calls": "local s = 0 while true do s = s + select('#', 1, 2) + os.time() % 2 end",
    "string builtins": "local s = 0 while true do s = s + #string.format('%d', s % 100) + ('a'):byte() end",
    "user jit.off/on/flush first": "jit.off() jit.on() jit.flush() local x = 0 while true do x = x + 1 end",
    "user jit.flush in the loop": "local x = 0 while true do x = x + 1 if x % 100000 == 0 then jit.flush() end end",
    "user count hook": """
        debug.sethook(function() end, "", 1000000)
        local x = 0 while true do x = x + 1 end""",
}

TIMED_OUT = f"luaexec execution timed out after {DEADLINE_MS} ms"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    options = HostOptions(runlua_pool=(1, 1, 60), main_pool=(1, 1, 60),
                          system_lua_lib_dir=str(tmp_path_factory.mktemp("system_lua_lib")))
    with LuaEngine(options) as eng:
        yield eng


@pytest.fixture(scope="module")
def lease_id(engine):
    return engine.create_runtime_lease(sid="jit-guard")["lease_id"]


def elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0


def stopped_on_time(run) -> None:
    """run() runs a loop under a DEADLINE_MS guard and checks how it ended; it must return within
    DEADLINE_MS + LATE_MS.  One retry: on this shared 2-core machine the VM's own thread may wait
    for a core now and then (the JIT-off guard shows the same tail); a guard that misses fails
    both tries, and the soak below bounds how often lateness happens."""
    took = []
    for _ in range(2):
        started = time.monotonic()
        run()
        took.append(elapsed_ms(started))
        if took[-1] <= DEADLINE_MS + LATE_MS:
            return
    raise AssertionError(f"stopped after {took} ms, deadline {DEADLINE_MS} ms")


@needs_jit_guard
def test_self_check_accepts_this_build():
    assert luahook.VERIFIED_LUAJIT == "luaJIT_version_2_1_1774896198"
    assert luahook.jit_guard_check() is None
    assert guard_mechanism() == JIT_PROFILE


@needs_jit_guard
def test_every_vm_kind_runs_with_the_jit_on(engine, lease_id):
    assert engine.guard_mechanism == JIT_PROFILE
    assert engine.run_lua("return (jit.status())", timeout_ms=1000) is True
    report = engine.execute_runlua_request_inline({"code": "return tostring((jit.status()))"})
    assert "true" in report
    assert engine.eval_runtime_lease(lease_id=lease_id, code="return (jit.status())")["result"] is True


@needs_jit_guard
@pytest.mark.parametrize("shape", sorted(LOOP_SHAPES))
def test_loop_stopped_in_run_lua(engine, shape):
    def run():
        started = time.monotonic()
        with pytest.raises(LuaSkillsError) as caught:
            engine.run_lua(LOOP_SHAPES[shape], timeout_ms=DEADLINE_MS)
        assert str(caught.value) == f"Lua run_lua error: {TIMED_OUT}"
        assert elapsed_ms(started) >= DEADLINE_MS - 5  # not before the deadline
    stopped_on_time(run)


@needs_jit_guard
@pytest.mark.parametrize("shape", sorted(LOOP_SHAPES))
def test_loop_stopped_in_runlua(engine, shape):
    def run():
        report = engine.execute_runlua_request_inline(
            {"code": LOOP_SHAPES[shape], "timeout_ms": DEADLINE_MS})
        assert "FAILED" in report and f"runtime error: {TIMED_OUT}" in report, report
    stopped_on_time(run)


@needs_jit_guard
@pytest.mark.parametrize("shape", sorted(LOOP_SHAPES))
def test_loop_stopped_in_lease_eval(engine, lease_id, shape):
    def run():
        payload = engine.eval_runtime_lease(lease_id=lease_id, code=LOOP_SHAPES[shape],
                                            timeout_ms=DEADLINE_MS)
        assert payload["ok"] is False
        assert payload["message"] == f"Runtime session eval error: runtime error: {TIMED_OUT}"
    stopped_on_time(run)


TRACE_COUNT = """
    local jutil, count = require("jit.util"), 0
    for i = 1, 4000 do if jutil.traceinfo(i) then count = count + 1 end end
    return count"""


@needs_jit_guard
def test_the_vm_keeps_compiling_after_a_timeout(engine):
    # The stopped loop ran compiled, and after the stop new loops compile again: no hook, no
    # profiler bit and no aborted recorder state is left behind.
    # `trusted`: the last check reads the hook with debug.gethook, which `default` removes
    lease_id = engine.create_runtime_lease(sid="keeps-compiling", policy="trusted")["lease_id"]
    code = "local s = 0 for i = 1, 1e15 do s = s + i % 7 end"
    for _ in range(3):
        payload = engine.eval_runtime_lease(lease_id=lease_id, code=code, timeout_ms=50)
        assert payload["message"].endswith("timed out after 50 ms")
    eval_ = engine.eval_runtime_lease
    assert eval_(lease_id=lease_id, code="jit.flush() return 0")["result"] == 0
    fresh = "local s = 0 for i = 1, 3e6 do s = s + i % 5 end return s"
    assert eval_(lease_id=lease_id, code=fresh)["result"] == sum(i % 5 for i in range(1, 3 * 10**6 + 1))
    assert eval_(lease_id=lease_id, code=TRACE_COUNT)["result"] >= 1
    assert eval_(lease_id=lease_id, code="return debug.gethook() == nil")["result"] is True


@needs_jit_guard
def test_jit_profile_is_out_of_reach(engine, lease_id):
    probe = """
        local ok = pcall(require, "jit.profile")
        return tostring(not ok and package.loaded["jit.profile"] == nil
                        and package.preload["jit.profile"] == nil)"""
    assert engine.run_lua(probe, timeout_ms=1000) == "true"
    assert engine.eval_runtime_lease(lease_id=lease_id, code=probe)["result"] == "true"
    assert "true" in engine.execute_runlua_request_inline({"code": f"return (function() {probe} end)()"})


def test_jit_profile_is_hidden_in_fresh_main_vms():
    # Also before any guarded run: a main VM's code could otherwise keep jit.profile for a later
    # guarded run and switch its VM to profiler mode "f" (loops in one function unstoppable).
    with LuaEngine(HostOptions(main_pool=(1, 1, 60))) as eng:
        assert eng.run_lua("return (pcall(require, 'jit.profile'))") is False
        assert eng.run_lua("return package.preload['jit.profile'] == nil") is True


@needs_jit_guard
def test_arm_puts_line_mode_back():
    rt = lupa.LuaRuntime()
    profile = rt.eval("require('jit.profile')")  # the host's own reference, out of Lua's reach
    guard = luahook.TimeoutGuard(rt, jit_profile=True)
    profile.start("f", rt.eval("function() end"))  # a non-owner: only the mode changes
    loop = rt.eval("function() local x = 0 while true do x = x + 1 end end")
    started = time.monotonic()
    with pytest.raises(lupa.LuaError):
        guard.call(loop, timeout_ms=DEADLINE_MS, message="stop")
    assert guard.fired and elapsed_ms(started) <= DEADLINE_MS + LATE_MS


@needs_jit_guard
def test_cancel_from_another_thread(engine, lease_id):
    cancelled_at = []

    def cancel():
        cancelled_at.append(time.monotonic())
        assert engine.cancel("jit-run-lua")

    timer = threading.Timer(0.1, cancel)
    timer.start()
    with pytest.raises(LuaSkillsError, match="cancelled by the host"):
        engine.run_lua("local x = 0 while true do x = x + 1 end", request_id="jit-run-lua")
    assert elapsed_ms(cancelled_at[0]) < LATE_MS
    timer.join()
    # the cancellable run kept the JIT on (jit-profile)
    assert engine.run_lua("return (jit.status())", request_id="jit-run-lua") is True
    # runlua: cancel by request id
    timer = threading.Timer(0.1, engine.cancel_runlua, args=("jit-cancel",))
    timer.start()
    report = engine.execute_runlua_request_inline(
        {"code": "local x = 0 for i = 1, 1e15 do x = x + i end", "timeout_ms": 60000},
        request_id="jit-cancel")
    timer.join()
    assert "luaexec execution cancelled by the host" in report


def test_run_lua_timeout_argument_checks(engine):
    for bad in (0, -5, True, 1.5, "10"):
        with pytest.raises(LuaSkillsError, match="timeout_ms"):
            engine.run_lua("return 1", timeout_ms=bad)
    assert engine.run_lua("return args.n + 1", {"n": 41}, timeout_ms=1000) == 42
    with pytest.raises(LuaSkillsError, match="Lua run_lua error: .*boom"):
        engine.run_lua("error('boom')", timeout_ms=1000)


@needs_jit_guard
def test_four_vms_in_four_threads():
    runtimes = [lupa.LuaRuntime() for _ in range(4)]
    guards = [luahook.TimeoutGuard(rt, jit_profile=True) for rt in runtimes]
    late = []

    def worker(rt, guard, seed):
        rng = random.Random(seed)
        shapes = [LOOP_SHAPES[k] for k in ("counter", "calls and small tables",
                                           "string-key table updates", "pcall loop")]
        for _ in range(15):
            loop = rt.eval("function() %s end" % rng.choice(shapes))
            deadline = rng.randint(20, 60)
            started = time.monotonic()
            try:
                guard.call(loop, timeout_ms=deadline, message="stop")
                late.append(("not stopped", deadline))
            except lupa.LuaError:
                took = elapsed_ms(started)
                # 4 busy threads on a small shared CI machine: allow for scheduling
                if not guard.fired or took > deadline + 250:
                    late.append((took, deadline, guard.fired))

    threads = [threading.Thread(target=worker, args=(rt, g, i))
               for i, (rt, g) in enumerate(zip(runtimes, guards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert late == []


@pytest.mark.soak
@needs_jit_guard
def test_five_thousand_random_deadlines():
    rt = lupa.LuaRuntime()
    guard = luahook.TimeoutGuard(rt, jit_profile=True)
    shapes = [rt.eval("function() %s end" % LOOP_SHAPES[k]) for k in (
        "counter", "branches on several lines", "calls and small tables",
        "string-key table updates", "pcall loop", "allocation", "recursion", "gsub callback")]
    rng = random.Random(18)
    misses, latenesses = [], []
    for i in range(5000):
        deadline = rng.randint(1, 10)  # arm() takes at least 1 ms
        loop = shapes[i % len(shapes)]
        started = time.monotonic()
        try:
            guard.call(loop, timeout_ms=deadline, message="stop")
            misses.append((i, "returned"))
            continue
        except lupa.LuaError:
            pass
        took = elapsed_ms(started)
        latenesses.append(took - deadline)
        # A miss is a run the guard did not stop; a lost hook or profiler bit would show up as
        # a run that ends much later (the watchdog repairs it on its next looks) or never.
        if not guard.fired or took > deadline + 1000:
            misses.append((i, deadline, took, guard.fired))
    latenesses.sort()
    summary = {q: round(latenesses[int(q * (len(latenesses) - 1))], 1)
               for q in (0.5, 0.95, 0.99, 1.0)}
    assert misses == [], (misses[:10], summary)
    # Under load the VM's thread itself may wait for a core: the JIT-off guard shows the same
    # tail on a busy machine (p99 ~25-50 ms with load 7 on 2 cores).  The bulk stays well within
    # the deadline + 50 ms.
    assert summary[0.5] <= 10 and summary[0.95] <= LATE_MS, summary


FALLBACK_SCRIPT = textwrap.dedent("""
    import sys, time
    from luaskills_runtime._native import luahook
    reason = luahook.jit_guard_check("luaJIT_version_2_1_0_unknown_build")
    assert reason and "luaJIT_version_2_1_0_unknown_build" in reason, reason
    assert luahook.jit_guard_check() == reason  # refused for the life of the process
    from luaskills_runtime import LuaEngine, LuaSkillsError
    with LuaEngine() as engine:
        assert engine.guard_mechanism == "jit-off-hook"
        started = time.monotonic()
        try:
            engine.run_lua("local x = 0 while true do x = x + 1 end", timeout_ms=100)
            raise SystemExit("run_lua was not stopped")
        except LuaSkillsError as error:
            assert "timed out after 100 ms" in str(error), error
        assert time.monotonic() - started < 2
        assert engine.run_lua("return (jit.status())") is False  # the JIT-off guard's VM
        report = engine.execute_runlua_request_inline(
            {"code": "local s = 0 for i = 1, 1e15 do s = s + i end", "timeout_ms": 100})
        assert "timed out after 100 ms" in report, report
    print("fallback ok")
""")


def test_refused_self_check_falls_back_to_the_jit_off_guard(child_env):
    env = dict(child_env)
    env.pop("LUASKILLS_JIT_GUARD", None)
    env.pop("LUASKILLS_GUARD", None)
    done = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fallback ok" in done.stdout


def test_env_var_forces_the_jit_off_guard(jit_off_hook, tmp_path):
    assert guard_mechanism() == JIT_OFF_HOOK
    with LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path))) as eng:
        assert eng.guard_mechanism == JIT_OFF_HOOK
        report = eng.execute_runlua_request_inline(
            {"code": "return tostring((jit.status()))"})
        assert "false" in report
        lease = eng.create_runtime_lease(sid="off")["lease_id"]
        payload = eng.eval_runtime_lease(lease_id=lease, code=LOOP_SHAPES["numeric for"],
                                         timeout_ms=DEADLINE_MS)
        assert payload["message"].endswith(TIMED_OUT)
        assert eng.eval_runtime_lease(lease_id=lease, code="return (jit.status())")["result"] is False
