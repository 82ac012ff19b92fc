"""Foundation numbers: ring-buffer throughput and run_lua latency, each against its anchor.

    python benchmarks/bench_foundation.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lupa.luajit21 as lupa_engine  # noqa: E402

from _timing import best_of, ratio_line  # noqa: E402
from luaskills_runtime import LuaEngine  # noqa: E402
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

    print("== run_lua('return 1') latency ==")
    bare = lupa_engine.LuaRuntime()
    anchor = best_of(lambda: bare.execute("return 1"), repeat=7, number=2000)
    with LuaEngine() as engine:
        engine.run_lua("return 1")
        ours = best_of(lambda: engine.run_lua("return 1"), repeat=7, number=2000)
    print(ratio_line("run_lua('return 1') vs bare LuaRuntime().execute('return 1')", ours, anchor))


if __name__ == "__main__":
    main()
