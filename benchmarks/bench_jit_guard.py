"""JIT-on timeout guard benchmark (issue 18): ratios against an anchor measured in the same run.

For four loop shapes (arithmetic; multi-line with branches; calls + small tables; string-key table
updates), the time of one guarded run (deadline armed, never reached) against the same code in a
bare lupa.luajit21 runtime with the JIT on and no hook:

* runlua request (engine.execute_runlua_request_inline)          goal <= 1.10x
* lease eval (engine.eval_runtime_lease)                          goal <= 1.10x
* for comparison, the same two under the JIT-off guard (LUASKILLS_JIT_GUARD=off), today's 1.44x-28x.

Each figure is the median of several runs; the kinds are interleaved so that load on a shared
machine hits them alike.  Run: PYTHONPATH=src python3 benchmarks/bench_jit_guard.py [--quick]
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile

import lupa.luajit21 as lupa_engine

from _timing import report, timed
from luaskills_runtime import HostOptions, LuaEngine

SHAPES = {
    "arithmetic": """
local s = 0
for i = 1, {n} do s = (s + i * 3) % 1000003 end
return s""",
    "multi-line branches": """
local s = 0
for i = 1, {n} do
  if i % 3 == 0 then
    s = s + 1
  elseif i % 5 == 0 then
    s = s - 1
  else
    s = s + 2
  end
end
return s""",
    "calls + small tables": """
local function pair(i) return {{ i, i + 1 }} end
local s = 0
for i = 1, {n} do
  local t = pair(i)
  s = (s + t[1] + t[2]) % 1000003
end
return s""",
    "string-key table updates": """
local t, keys = {{}}, {{ "alpha", "beta", "gamma", "delta" }}
for i = 1, {n} do
  local k = keys[i % 4 + 1]
  t[k] = (t[k] or 0) + 1
end
return t.alpha""",
}
SIZES = {"arithmetic": 30_000_000, "multi-line branches": 40_000_000,
         "calls + small tables": 30_000_000, "string-key table updates": 200_000_000}
TIMEOUT_MS = 600_000


def runners(engine: LuaEngine, lease_id: str, code: str):
    request = {"code": code, "timeout_ms": TIMEOUT_MS}

    def runlua():
        report = engine.execute_runlua_request_inline(request)
        assert report.startswith("# Runtime Execution Result"), report[:400]

    def lease():
        payload = engine.eval_runtime_lease(lease_id=lease_id, code=code, timeout_ms=TIMEOUT_MS)
        assert payload["ok"], payload

    return runlua, lease


def main(quick: bool = False) -> None:
    repeat = 3 if quick else 7
    scale = 0.25 if quick else 1.0
    lib_dir = tempfile.mkdtemp(prefix="bench_jit_guard_")
    options = dict(runlua_pool=(1, 1, 60), system_lua_lib_dir=lib_dir)
    bare = lupa_engine.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)

    engines = {}
    previous = os.environ.pop("LUASKILLS_JIT_GUARD", None)
    try:
        for label, env in (("jit-profile", None), ("jit-off-hook", "off")):
            if env is None:
                os.environ.pop("LUASKILLS_JIT_GUARD", None)
            else:
                os.environ["LUASKILLS_JIT_GUARD"] = env
            engine = LuaEngine(HostOptions(**options))
            lease_id = engine.create_runtime_lease(sid=label)["lease_id"]
            engine.execute_runlua_request_inline({"code": "return 1"})  # VMs exist from here on
            engines[label] = (engine, lease_id)
    finally:
        if previous is None:
            os.environ.pop("LUASKILLS_JIT_GUARD", None)
        else:
            os.environ["LUASKILLS_JIT_GUARD"] = previous
    print(f"guard mechanisms: {engines['jit-profile'][0].guard_mechanism} (default) "
          f"vs jit-off-hook (LUASKILLS_JIT_GUARD=off); bare lupa {lupa_engine.LUA_VERSION} JIT on")

    try:
        for shape, template in SHAPES.items():
            n = int(SIZES[shape] * scale)
            code = template.format(n=n)
            anchor_fn = bare.compile(code)
            kinds = {"bare": anchor_fn}
            for label, (engine, lease_id) in engines.items():
                runlua, lease = runners(engine, lease_id, code)
                kinds[f"runlua {label}"] = runlua
                kinds[f"lease {label}"] = lease
            for fn in kinds.values():  # warm up: VM pools, first compile
                fn()
            times = {name: [] for name in kinds}
            for _ in range(repeat):
                for name, fn in kinds.items():
                    times[name].append(timed(fn)[0])
            medians = {name: statistics.median(values) for name, values in times.items()}
            anchor = medians["bare"]
            print(f"\n{shape} (n={n:,}): bare lupa, JIT on: {anchor * 1000:.1f} ms")
            for name, value in medians.items():
                if name == "bare":
                    continue
                goal = "  (goal <= 1.10x)" if name.endswith("jit-profile") else ""
                print(f"  {name:<22} {value * 1000:8.1f} ms  -> {value / anchor:.2f}x{goal}")
                if goal:
                    report(f"{name} vs bare JIT-on lupa, {shape}", value / anchor, "<= 1.10x")
    finally:
        for engine, _ in engines.values():
            engine.close()


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
