"""Foundation numbers: ring-buffer throughput and run_lua latency, each against its anchor.

run_lua is measured on the process's engine (LuaJIT) against a bare runtime of that engine, then
again in a child process on the lua51 engine (LUASKILLS_LUA_ENGINE=lua51, what lupa's macOS wheels
give) against a bare ``lupa.lua51`` runtime: the engine is chosen once per process.

    python benchmarks/bench_foundation.py
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import best_of, report_ratio  # noqa: E402
from luaskills_runtime import LuaEngine  # noqa: E402
from luaskills_runtime.lua_engine import ENGINE, ENGINE_ENV, LUA51, lupa_engine  # noqa: E402
from luaskills_runtime._native.ringbuf import RingBuffer  # noqa: E402


class PyRing:
    """The obvious pure-Python equivalent: a bytearray that keeps the newest `capacity` bytes."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.data = bytearray()

    def append(self, chunk):
        self.data += chunk
        if len(self.data) > self.capacity:
            del self.data[: len(self.data) - self.capacity]

    def drain(self, max_bytes):
        out = bytes(self.data[:max_bytes])
        del self.data[:max_bytes]
        return out


def ring_throughput(ring, chunk, rounds):
    def run():
        for _ in range(rounds):
            ring.append(chunk)
            ring.drain(len(chunk))
    seconds = best_of(run, repeat=5)
    return len(chunk) * rounds / seconds / 1e9  # GB/s


def main():
    print("== ring buffer: append + drain throughput ==")
    for size in (4096, 65536, 1 << 20):
        chunk = os.urandom(size)
        rounds = max(50, (256 << 20) // size // 4)
        native = ring_throughput(RingBuffer(1 << 20), chunk, rounds)
        python = ring_throughput(PyRing(1 << 20), chunk, rounds)
        print(f"chunk {size:>8} B: native {native:6.2f} GB/s vs bytearray {python:6.2f} GB/s "
              f"-> {native / python:.2f}x")

    run_lua_latency()
    if ENGINE != LUA51:
        # the same measure on the lua51 engine, in a child (its rows go to run_all.py as well)
        env = dict(os.environ, **{ENGINE_ENV: LUA51})
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--run-lua-only"],
                              env=env, stdout=subprocess.PIPE, text=True, check=True)
        print(done.stdout, end="")


# run_lua wraps the code (request scope, args, the run-outcome protocol) around the bare execute.
GOAL = ""  # no goal (run_all.py shows "-"): printed to compare the two engines


def run_lua_latency():
    print(f"== run_lua('return 1') latency, engine {ENGINE} ==")
    bare = lupa_engine.LuaRuntime()
    anchor = best_of(lambda: bare.execute("return 1"), repeat=7, number=2000)
    with LuaEngine() as engine:
        engine.run_lua("return 1")
        ours = best_of(lambda: engine.run_lua("return 1"), repeat=7, number=2000)
    report_ratio(f"run_lua('return 1') vs bare lupa.{ENGINE} LuaRuntime().execute('return 1')",
                 ours, anchor, GOAL)


if __name__ == "__main__":
    if sys.argv[1:] == ["--run-lua-only"]:
        run_lua_latency()
    else:
        main()
