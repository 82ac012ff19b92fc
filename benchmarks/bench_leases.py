"""Runtime leases: eval latency and parallel evals, as ratios against anchors measured in this run.

1. A trivial eval through the JSON API (`eval_runtime_lease_json`, `return 1`) against creating
   a bare `lupa.luajit21.LuaRuntime()` (what a host without leases would pay per call at least).
   Goal <= 0.3x.
2. Two CPU-bound evals on two leases in two threads against the same two evals one after the
   other.  Goal >= 1.6x speed-up on 2 cores (Lua runs without the GIL and the lease manager's
   lock is not held during an eval).  Rounds are interleaved and the best of each kind is kept;
   the machine may be shared, so the printed numbers are what this run measured.

Run: PYTHONPATH=src python3 benchmarks/bench_leases.py [--rounds 7] [--loop 20000000]
"""
import argparse
import json
import os
import sys
import threading
import time

import lupa.luajit21 as lupa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_of, report, report_ratio  # noqa: E402

from luaskills_runtime import LuaEngine  # noqa: E402

CPU_CODE = "local s = 0 for i = 1, args.n do s = s + i % 7 end return s"


def trivial_eval_latency(engine, rounds):
    lease_id = engine.create_runtime_lease(sid="bench-latency")["lease_id"]
    request = json.dumps({"lease_id": lease_id, "code": "return 1"})
    for _ in range(200):  # warm up
        engine.eval_runtime_lease_json(request)
    ours = best_of(lambda: engine.eval_runtime_lease_json(request), repeat=rounds, number=500)
    dict_twin = best_of(lambda: engine.eval_runtime_lease(lease_id=lease_id, code="return 1"),
                        repeat=rounds, number=500)
    anchor = best_of(lupa.LuaRuntime, repeat=rounds, number=100)
    engine.close_runtime_lease(lease_id=lease_id)
    report_ratio("trivial eval (JSON API) vs bare LuaRuntime()", ours, anchor, "<= 0.3x")
    report_ratio("trivial eval (dict twin) vs bare LuaRuntime()", dict_twin, anchor, "<= 0.3x")


def cpu_eval(engine, lease_id, n):
    payload = engine.eval_runtime_lease(lease_id=lease_id, code=CPU_CODE, args={"n": n})
    assert payload["ok"], payload


def parallel_speedup(engine, rounds, n):
    leases = [engine.create_runtime_lease(sid=f"bench-cpu-{i}")["lease_id"] for i in range(2)]
    cpu_eval(engine, leases[0], n // 10)  # warm up both VMs
    cpu_eval(engine, leases[1], n // 10)
    best_seq = best_par = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for lease_id in leases:
            cpu_eval(engine, lease_id, n)
        best_seq = min(best_seq, time.perf_counter() - start)

        threads = [threading.Thread(target=cpu_eval, args=(engine, lease_id, n)) for lease_id in leases]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        best_par = min(best_par, time.perf_counter() - start)
    for lease_id in leases:
        engine.close_runtime_lease(lease_id=lease_id)
    print(f"two CPU-bound evals: sequential {best_seq * 1e3:.1f} ms, two threads {best_par * 1e3:.1f} ms"
          f" -> speed-up {best_seq / best_par:.2f}x (goal >= 1.6x on 2 cores; "
          f"{os.cpu_count()} CPUs here, shared with other work)")
    report("two CPU-bound lease evals: speed-up of two threads", best_seq / best_par, ">= 1.6x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--loop", type=int, default=20_000_000, help="iterations of each CPU eval")
    options = parser.parse_args()
    with LuaEngine() as engine:
        trivial_eval_latency(engine, options.rounds)
        parallel_speedup(engine, options.rounds, options.loop)


if __name__ == "__main__":
    main()
