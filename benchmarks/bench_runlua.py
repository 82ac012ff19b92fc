"""runlua benchmark: ratios against anchors measured in the same run.

1. CPU-bound loop under runlua (timeout guard armed) vs the same loop in a bare lupa.luajit21
   runtime with no hook, the JIT on or off as runlua runs it (engine.guard_mechanism).
                                                                          goal <= 1.05x
2. Latency of a trivial request (`return 1`) vs creating a bare LuaRuntime().   goal <= 0.5x
3. The isolation mechanism's per-request cost (the snapshot comparison after a request that changed
   nothing, and the restore after one that replaced library functions), also as a share of (2).

Run: PYTHONPATH=src python3 benchmarks/bench_runlua.py [--quick]
"""
from __future__ import annotations

import statistics
import sys

import lupa.luajit21 as lupa_engine

from _timing import median_of, report, timed
from luaskills_runtime import HostOptions, LuaEngine

LOOP_BODY = """
local s = 0
for i = 1, {n} do
  s = (s + i * 3) % 1000003
end
return s
"""


def per_call(fn, calls: int, repeat: int) -> float:
    """Median over `repeat` batches of `calls` calls of the time of one call (seconds); the
    machine is shared, so the median."""
    return median_of(fn, repeat, number=calls)


def main(quick: bool = False) -> None:
    n = 3_000_000 if quick else 10_000_000
    repeat = 5 if quick else 9
    code = LOOP_BODY.format(n=n)

    with LuaEngine(HostOptions(runlua_pool=(1, 1, 60))) as engine:
        # The anchor runs the way runlua does: JIT on under the jit-profile guard, off otherwise.
        jit_on = engine.guard_mechanism == "jit-profile"
        bare = lupa_engine.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
        if not jit_on:
            bare.execute("jit.off() jit.flush()")
        bare_loop = bare.compile(code)
        request = {"code": code, "timeout_ms": 600_000}
        expected = bare_loop()
        markdown = engine.execute_runlua_request_inline(request)
        assert f"\n{expected}\n" in markdown, markdown

        # 1. CPU-bound loop; alternate the two so load changes on the shared machine hit both.
        bare_times, runlua_times = [], []
        for _ in range(repeat):
            bare_times.append(timed(bare_loop)[0])
            runlua_times.append(timed(engine.execute_runlua_request_inline, request)[0])
        t_bare, t_runlua = statistics.median(bare_times), statistics.median(runlua_times)
        print(f"[1] CPU loop ({n:,} iterations)")
        print(f"    bare lupa, {'jit on ' if jit_on else 'jit.off'}, no hook: {t_bare * 1e3:8.1f} ms")
        print(f"    runlua request (guard armed): {t_runlua * 1e3:8.1f} ms")
        print(f"    ratio                       : {t_runlua / t_bare:8.3f}x   (goal <= 1.05x)")
        report("runlua CPU loop (guard armed) vs bare lupa, JIT as runlua runs it", t_runlua / t_bare, "<= 1.05x")

        # 2. Trivial request vs creating a bare runtime.
        calls = 200 if quick else 1000
        trivial = {"code": "return 1"}
        for _ in range(50):
            engine.execute_runlua_request_inline(trivial)
        t_request = per_call(lambda: engine.execute_runlua_request_inline(trivial), calls, repeat)
        t_create = per_call(lupa_engine.LuaRuntime, calls // 2, repeat)
        print("[2] trivial request `return 1`")
        print(f"    LuaRuntime() creation       : {t_create * 1e6:8.1f} us")
        print(f"    runlua request              : {t_request * 1e6:8.1f} us")
        print(f"    ratio                       : {t_request / t_create:8.3f}x   (goal <= 0.5x)")
        report("runlua trivial request vs LuaRuntime() creation", t_request / t_create, "<= 0.5x")

        # 3. Isolation cost: call the VM's restore directly, on a clean VM and after a request
        # that changed library tables, globals and a metatable.
        pool = engine.runlua_service.pool
        state = pool.acquire()   # a RunluaVM: the pooled LuaVM with its environment
        vm = state.vm
        try:
            t_clean = per_call(state.restore, calls, repeat)
            in_lua = vm.runtime.eval(
                "function(f, n) local c = os.clock() for i = 1, n do f() end "
                "return (os.clock() - c) / n end")
            t_clean_lua = statistics.median(in_lua(state.restore, calls) for _ in range(repeat))
            entries = vm.runtime.eval(
                "function() local seen, n = {}, 0 local function walk(t) if seen[t] then return end "
                "seen[t] = true for k, v in pairs(t) do n = n + 1 if type(v) == 'table' then "
                "walk(v) end end end walk(_G) return n end")()
            dirty_code = ("string.rep = nil; table.concat = print; x_new_global = {}; "
                          "getmetatable('').__index = {}; vulcan.fs = nil")
            dirty = vm.runtime.compile(dirty_code)

            def dirty_then_restore():
                dirty()
                state.restore()

            t_dirty = per_call(dirty_then_restore, calls, repeat) - per_call(dirty, calls, repeat)
        finally:
            pool.release(state)
        print(f"[3] isolation (compare ~{entries} snapshot entries / restore after each request)")
        print(f"    compare, nothing changed    : {t_clean * 1e6:8.1f} us from Python, "
              f"{t_clean_lua * 1e6:.1f} us inside Lua "
              f"({t_clean / t_request * 100:4.1f}% of a trivial request)")
        print(f"    restore after changes       : {max(t_dirty, 0.0) * 1e6:8.1f} us")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
