"""Soak of the JIT-on guard against a LuaJIT built with its own checks (LUA_USE_ASSERT,
LUA_USE_APICHECK): .ci/build-debug-lupa.sh builds lupa 2.8's luajit21 module that way and
LUASKILLS_DEBUG_LUPA names the directory.  Each run compiles new code, so deadlines often land while
the trace recorder is busy: a watchdog write that raced the recorder (the J->state race of
native/jitguard.h) makes the debug LuaJIT fail an assertion and abort.  Bounded in time."""
import os
import subprocess
import sys
import textwrap

import pytest

from _engine_support import luajit_only

DEBUG_LUPA = os.environ.get("LUASKILLS_DEBUG_LUPA")
SOAK_SECONDS = 40

pytestmark = [
    luajit_only,
    pytest.mark.soak,
    pytest.mark.skipif(not DEBUG_LUPA, reason="needs LUASKILLS_DEBUG_LUPA (.ci/build-debug-lupa.sh)"),
]

SOAK = textwrap.dedent("""
    import os, random, sys, threading, time
    import lupa.luajit21 as lupa
    assert lupa.__file__.startswith(os.environ["LUASKILLS_DEBUG_LUPA"]), lupa.__file__
    from luaskills_runtime._native import luahook
    assert luahook.jit_guard_check() is None, luahook.jit_guard_check()

    TEMPLATES = [
        "local x = 0 for i = 1, 1e15 do x = x + i % {k} end",
        "local t = {{}} local i = 0 while true do i = i + 1 t[i % {k} + 1] = {{ i }} end",
        "local s = 0 while true do for j = 1, {k} do s = s + j end pcall(tostring, s) end",
        "local t, s = {{ a = 1, b = {k} }}, 0 while true do for _, v in pairs(t) do s = s + v end end",
        "local function f(n) if n == 0 then return 0 end return 1 + f(n - 1) end "
        "while true do f({k} % 50) end",
        "local s = ('a'):rep({k} % 97 + 3) while true do s:gsub('a', function(c) return c end) end",
        # new hot loops all the time: the recorder is busy for much of the run
        "local n = {k} while true do n = n + 1 "
        "load('local x = 0 for i = 1, 300 do x = x + i % ' .. n .. ' end return x')() end",
        "local n = {k} while true do n = n + 1 "
        "load('local t = {{}} for i = 1, 300 do t[i % 7 + 1] = i * ' .. n .. ' end')() end",
    ]
    stop_at = time.monotonic() + float(sys.argv[1])
    counts = []

    def worker(seed):
        rng = random.Random(seed)
        rt = lupa.LuaRuntime()
        guard = luahook.TimeoutGuard(rt, jit_profile=True)
        runs = 0
        while time.monotonic() < stop_at:
            # fresh code every run: its first milliseconds are spent recording traces
            code = rng.choice(TEMPLATES).format(k=rng.randint(2, 10**6))
            loop = rt.eval("function() %s end" % code)
            try:
                guard.call(loop, timeout_ms=rng.randint(1, 10), message="stop")
                raise SystemExit("a loop was not stopped")
            except lupa.LuaError:
                assert guard.fired
            runs += 1
            if runs % 200 == 0:
                rt.execute("jit.flush()")  # on the VM's own thread: allowed
        counts.append(runs)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(counts) == 3, counts
    print("soak ok", sum(counts), "runs")
""")


def test_soak_against_a_debug_luajit(child_env):
    # The debug lupa first, then the package under test where this Python finds it.
    env = dict(child_env, PYTHONPATH=os.pathsep.join([DEBUG_LUPA, child_env["PYTHONPATH"]]))
    done = subprocess.run([sys.executable, "-c", SOAK, str(SOAK_SECONDS)], env=env,
                          capture_output=True, text=True, timeout=SOAK_SECONDS + 120)
    assert done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-4000:])
    assert "soak ok" in done.stdout
