"""`luaskills-runtime mcp` over stdio, as ratios against an anchor measured in this run.

1. Round trip of a trivial runlua tool call (`return 1`) from the `mcp` SDK client to the server
   subprocess over stdio and back, against the same runlua request on LuaEngine directly
   (``execute_runlua_request_inline``, anchor): what the protocol, JSON-RPC and the process hop
   add to one call.
2. Cancel latency over stdio: from sending notifications/cancelled for a runlua call spinning in
   `while true do end` (with a process tree) to the tree being gone; the issue's goal is 100 ms.

Result rows (_timing.report, tabulated by run_all.py): the round-trip ratio (no goal set: it is
what the protocol costs) and the median and worst cancel latency in ms (goal <= 100).

Run: PYTHONPATH=src python3 benchmarks/bench_mcp.py [--rounds 7] [--calls 50]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import anyio

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The tests' MCP client helpers (server command line, SDK client session, process trees).
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
from _timing import best_of, report, report_ratio  # noqa: E402

import mcp.types as types  # noqa: E402

from luaskills_runtime import LuaEngine  # noqa: E402
from _mcp_support import stdio_session, wait_pid_file_async  # noqa: E402
from _process_support import gone, session_tree_lua  # noqa: E402

REQUEST = {"code": "return 1", "task": "bench"}


async def mcp_round_trip(rounds: int, calls: int) -> float:
    async with stdio_session() as session:
        for _ in range(20):                       # warm the VM pool and both ends
            await session.call_tool("runlua", REQUEST)
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                await session.call_tool("runlua", REQUEST)
            best = min(best, (time.perf_counter() - start) / calls)
        return best


async def cancel_latencies(samples: int) -> list:
    latencies = []
    async with stdio_session() as session:
        for index in range(samples):
            with tempfile.TemporaryDirectory() as folder:
                pid_file = os.path.join(folder, "pid")
                code = session_tree_lua(pid_file, "while true do end")

                async def call():
                    try:
                        await session.call_tool("runlua", {"code": code, "timeout_ms": 60000})
                    except Exception:  # the cancelled request answers with an error
                        pass
                async with anyio.create_task_group() as group:
                    request_id = session._request_id
                    group.start_soon(call)
                    pid = await wait_pid_file_async(pid_file)
                    await anyio.sleep(0.05)       # let the loop spin
                    t0 = time.perf_counter()
                    await session.send_notification(types.ClientNotification(
                        types.CancelledNotification(params=types.CancelledNotificationParams(
                            requestId=request_id))))
                    with anyio.fail_after(10):
                        while not gone(pid):
                            await anyio.sleep(0.001)
                    latencies.append(time.perf_counter() - t0)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--cancels", type=int, default=5)
    options = parser.parse_args()
    with LuaEngine() as engine:
        for _ in range(20):
            engine.execute_runlua_request_inline(REQUEST)
        direct = best_of(lambda: engine.execute_runlua_request_inline(REQUEST),
                         repeat=options.rounds, number=options.calls)
    over_mcp = anyio.run(mcp_round_trip, options.rounds, options.calls)
    report_ratio("runlua `return 1`: MCP tool call over stdio (SDK client) vs LuaEngine direct",
                 over_mcp, direct, "")
    print(f"  protocol + process hop adds {(over_mcp - direct) * 1e6:.0f} us per call")
    latencies = anyio.run(cancel_latencies, options.cancels)
    print(f"cancel over stdio (notifications/cancelled -> process tree gone): median "
          f"{statistics.median(latencies) * 1e3:.1f} ms, worst {max(latencies) * 1e3:.1f} ms "
          f"over {len(latencies)} (goal 100 ms)")
    report("cancel over stdio, median ms", statistics.median(latencies) * 1e3, "<= 100")
    report("cancel over stdio, worst ms", max(latencies) * 1e3, "<= 100")


if __name__ == "__main__":
    main()
