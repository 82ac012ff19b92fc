"""The async host API (luaskills_runtime.aio), as ratios against anchors measured in this run.

1. Loop lag while 4 CPU-bound evals run through AsyncLuaEngine: the worst and the median delay
   of a 5 ms ticker, against the same ticker on an idle loop (anchor).  Goal: <= 5 ms worst lag.
   For contrast, the lag when the same eval is called synchronously from the loop is printed.
2. Await overhead: a trivial lease eval (`return 1`) awaited through AsyncLease.eval, against the
   sync Lease.eval call (anchor).  Goal <= 1.3x.
3. Threads for 1,000 concurrent AsyncProcessSession.read() waits: OS threads before and while they
   wait (goal: <= 2 more), against how many a thread-per-waiter design would need (1,000).
4. Cancel latency: from cancelling a task running `while true do end` to the task seeing it.

Run: PYTHONPATH=src python3 benchmarks/bench_aio.py [--backend asyncio|trio] [--rounds 5]
"""
import argparse
import os
import statistics
import sys
import time

import anyio
import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_of, ratio_line  # noqa: E402

from luaskills_runtime.aio import AsyncLuaEngine, AsyncProcessSession  # noqa: E402
from luaskills_runtime.aio._worker import run_cancellable  # noqa: E402

CPU_CODE = "local s = 0 for i = 1, 2e7 do s = s + i % 7 end return s"
TICK_S = 0.005


async def _ticker(lags):
    while True:
        start = time.perf_counter()
        await anyio.sleep(TICK_S)
        lags.append(time.perf_counter() - start - TICK_S)


async def loop_lag(engine: AsyncLuaEngine):
    idle = []
    async with anyio.create_task_group() as group:
        group.start_soon(_ticker, idle)
        await anyio.sleep(0.5)
        group.cancel_scope.cancel()
    busy = []
    async with anyio.create_task_group() as group:
        group.start_soon(_ticker, busy)
        t0 = time.perf_counter()
        async with anyio.create_task_group() as evals:
            for _ in range(4):
                evals.start_soon(engine.run_lua, CPU_CODE)
        evals_s = time.perf_counter() - t0
        group.cancel_scope.cancel()
    blocking = []
    async with anyio.create_task_group() as group:
        group.start_soon(_ticker, blocking)
        await anyio.sleep(0.02)
        engine.engine.run_lua(CPU_CODE)   # what a host without the aio API does
        await anyio.sleep(0.02)
        group.cancel_scope.cancel()
    ms = 1000.0
    print(f"loop lag, 4 CPU-bound evals ({evals_s:.2f} s): worst {max(busy) * ms:.2f} ms, "
          f"median {statistics.median(busy) * ms:.2f} ms; idle loop anchor worst "
          f"{max(idle) * ms:.2f} ms, median {statistics.median(idle) * ms:.2f} ms (goal <= 5 ms)")
    print(f"  contrast: one synchronous eval on the loop: worst lag {max(blocking) * ms:.1f} ms")


def _noop():
    return None


async def await_overhead(engine: AsyncLuaEngine, rounds: int):
    lease = await engine.open_lease("bench-await")
    sync_lease = engine.engine.open_lease("bench-sync")
    for _ in range(200):
        await lease.eval("return 1")
        sync_lease.eval("return 1")
    number = 300
    best_async = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            await lease.eval("return 1")
        best_async = min(best_async, (time.perf_counter() - start) / number)
    best_sync = best_of(lambda: sync_lease.eval("return 1"), repeat=rounds, number=number)
    print(ratio_line("await AsyncLease.eval('return 1') vs sync Lease.eval", best_async,
                     best_sync, "<= 1.3x"))
    best_hop = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            await run_cancellable(_noop, _noop, engine._workers)
        best_hop = min(best_hop, (time.perf_counter() - start) / number)
    print(f"  of which the worker-thread round trip alone (a no-op on the same pool): "
          f"{best_hop * 1e6:.2f} us")
    await lease.close()
    sync_lease.close()


async def read_threads(count: int):
    sessions = [await AsyncProcessSession.open("cat") for _ in range(count)]
    try:
        before = psutil.Process().num_threads()
        during = []
        async with anyio.create_task_group() as group:
            for session in sessions:
                group.start_soon(lambda s=session: s.read(timeout_ms=30000, until_text="x"))
            await anyio.sleep(0.5)
            during.append(psutil.Process().num_threads())
            for session in sessions:
                await session.write("x")
        print(f"threads for {count} concurrent session reads: {before} before, {max(during)} "
              f"while waiting (+{max(during) - before}; goal <= +2; a thread per waiter: "
              f"+{count})")
    finally:
        for session in sessions:
            session.kill()
        for session in sessions:
            await session.close(timeout_ms=1)


async def cancel_latency(engine: AsyncLuaEngine, rounds: int):
    samples = []
    for _ in range(rounds):
        async with anyio.create_task_group() as group:
            group.start_soon(engine.run_lua, "while true do end")
            await anyio.sleep(0.1)
            t0 = time.perf_counter()
            group.cancel_scope.cancel()
        samples.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    await engine.run_lua("return 1")
    print(f"cancel of a running eval seen by the task after: best {min(samples) * 1000:.2f} ms, "
          f"worst {max(samples) * 1000:.2f} ms (goal <= 100 ms); next call "
          f"{(time.perf_counter() - t0) * 1000:.2f} ms")


async def main(args):
    async with AsyncLuaEngine(max_workers=4) as engine:
        await loop_lag(engine)
        await await_overhead(engine, args.rounds)
        await cancel_latency(engine, args.rounds)
    await read_threads(args.sessions)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=1000)
    options = parser.parse_args()
    print(f"backend: {options.backend}")
    anyio.run(main, options, backend=options.backend)
