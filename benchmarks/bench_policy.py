"""Cost of the policy profiles (README "Safety"), as ratios against no policy in the same run.

For the trivial runlua request (`execute_runlua_request_json_inline`, `return 1`) and a trivial
lease eval (`eval_runtime_lease_json`, `return 1`), each of the `default`, `trusted` and
`untrusted` policies is timed against an anchor engine whose VMs get no policy at all (the policy
chunk swapped for one that leaves the standard library as lupa opened it).  Goal <= 1.05x.
Rounds are interleaved and the best of each kind is kept (the machine is shared and noisy).

Run: PYTHONPATH=src python3 benchmarks/bench_policy.py [--rounds 60] [--number 100]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_of, report_ratio  # noqa: E402

import luaskills_runtime.lua.policy as policy_module  # noqa: E402
from luaskills_runtime import HostOptions, LuaEngine  # noqa: E402

# The anchor's policy chunk: hands back the controls the host needs and changes nothing.
NO_POLICY_SOURCE = "local G = ... return { full_debug = G.debug }"
RUNLUA_REQUEST = json.dumps({"code": "return 1"})
POLICIES = ("default", "trusted", "untrusted")


def engine_for(policy):
    """An engine under `policy`, or (None) one whose VMs get no policy; its VMs are built now."""
    real_source = policy_module._POLICY_SOURCE
    if policy is None:
        policy_module._POLICY_SOURCE = NO_POLICY_SOURCE
    try:
        engine = LuaEngine(HostOptions(policy=policy or "default", runlua_pool=(1, 1, 600)))
        engine.execute_runlua_request_json_inline(RUNLUA_REQUEST)
        lease_id = engine.create_runtime_lease(sid="bench")["lease_id"]
    finally:
        policy_module._POLICY_SOURCE = real_source
    eval_request = json.dumps({"lease_id": lease_id, "code": "return 1"})
    return engine, eval_request


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--number", type=int, default=100)
    options = parser.parse_args()
    engines = {name: engine_for(name) for name in (None,) + POLICIES}
    best = {(name, kind): float("inf") for name in engines for kind in ("runlua", "eval")}
    for _ in range(options.rounds):   # interleaved: every engine sees the same machine load
        for name, (engine, eval_request) in engines.items():
            runlua = best_of(lambda: engine.execute_runlua_request_json_inline(RUNLUA_REQUEST),
                             repeat=1, number=options.number)
            evaluate = best_of(lambda: engine.eval_runtime_lease_json(eval_request),
                               repeat=1, number=options.number)
            best[(name, "runlua")] = min(best[(name, "runlua")], runlua)
            best[(name, "eval")] = min(best[(name, "eval")], evaluate)
    for kind, label in (("runlua", "trivial runlua request"), ("eval", "trivial lease eval")):
        for name in POLICIES:
            report_ratio(f"{label}, {name} policy vs no policy", best[(name, kind)],
                         best[(None, kind)], "<= 1.05x")
    for engine, _ in engines.values():
        engine.close()


if __name__ == "__main__":
    main()
