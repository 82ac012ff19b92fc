"""The luaskills C ABI: what a call through the luaskills SDK adds over calling LuaEngine directly.

1. `client.run_lua("return 1")` (luaskills SDK -> ctypes -> C entry point -> dispatcher ->
   LuaEngine.run_lua) against `engine.run_lua("return 1")` on an engine of the same options.
2. A trivial lease eval, `handle.eval("return 1")` through the SDK, against
   `engine.eval_runtime_lease(...)` with the same identity fields.

Each is measured twice against the direct call (the anchor): through the SDK as a host calls it,
and through the bare C ABI (ctypes with the request bytes built once, the answer decoded with
json.loads: what the C entry point, the GIL hand-off and the dispatcher add, without the SDK's
own Python work such as its per-call json.dumps and ctypes array building).  Printed: per-call
times, the difference (goal: the C ABI adds <= 15 us) and the ratio against the anchor.  Rounds
of the paths are interleaved and the best of each is kept; the machine may be shared, so the
numbers are what this run measured.

Run: PYTHONPATH=src python3 benchmarks/bench_ffi.py [--rounds 7] [--number 2000]
"""
import argparse
import ctypes
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_of  # noqa: E402

from luaskills import LuaSkillsClient  # noqa: E402

import luaskills_runtime  # noqa: E402
from luaskills_runtime import LuaEngine  # noqa: E402
from luaskills_runtime.ffi.dispatch import ENGINES  # noqa: E402


class Buffer(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def bare_call(library, function_name: str, request: dict):
    """A call of one entry point with the request bytes prepared once (a lean host)."""
    function = getattr(library, function_name)
    function.argtypes, function.restype = [Buffer], Buffer
    free = library.luaskills_ffi_buffer_free
    free.argtypes, free.restype = [Buffer], None
    data = json.dumps(request, separators=(",", ":")).encode("utf-8")
    storage = ctypes.create_string_buffer(data, len(data))
    borrowed = Buffer(ctypes.addressof(storage), len(data))
    string_at, loads = ctypes.string_at, json.loads

    def call():
        out = function(borrowed)
        envelope = loads(string_at(out.ptr, out.len))
        free(out)
        if envelope["ok"] is not True:
            raise RuntimeError(envelope["error"])
        return envelope["result"]

    return call, storage


def interleaved(calls, rounds, number):
    """Best per-call time of each callable, rounds interleaved."""
    for _ in range(number // 4):  # warm up every path
        for call in calls:
            call()
    best = [float("inf")] * len(calls)
    for _ in range(rounds):
        for index, call in enumerate(calls):
            best[index] = min(best[index], best_of(call, repeat=1, number=number))
    return best


def report(label, path, ours, direct, goal=""):
    print(f"{label} via {path}: {ours * 1e6:.2f} us vs LuaEngine {direct * 1e6:.2f} us (anchor) -> "
          f"{ours / direct:.2f}x, adds {(ours - direct) * 1e6:.2f} us per call{goal}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as root, \
            LuaSkillsClient(library_path=luaskills_runtime.ffi_library_path(),
                            runtime_root=root) as client:
        # the LuaEngine behind the SDK client: the direct calls run on the very same engine
        engine: LuaEngine = ENGINES.get(client.engine_id)

        library = ctypes.CDLL(luaskills_runtime.ffi_library_path())  # not the SDK's: own argtypes
        bare_run, keep_run = bare_call(library, "luaskills_ffi_run_lua_json",
                                       {"engine_id": client.engine_id, "code": "return 1", "args": {},
                                        "invocation_context": None})
        sdk, bare, direct = interleaved([lambda: client.run_lua("return 1"), bare_run,
                                         lambda: engine.run_lua("return 1", {})],
                                        options.rounds, options.number)
        report("run_lua('return 1')", "the SDK", sdk, direct)
        report("run_lua('return 1')", "the bare C ABI", bare, direct, " (goal <= 15 us)")

        handle = client.runtime_leases().create_handle("bench-ffi", ttl_sec=600)
        identity = {"lease_id": handle.lease_id, "sid": handle.sid, "generation": handle.generation}
        bare_eval, keep_eval = bare_call(library, "luaskills_ffi_runtime_lease_eval_json",
                                         {"engine_id": client.engine_id, "code": "return 1", "args": {},
                                          "timeout_ms": 60_000, "invocation_context": None, **identity})
        sdk, bare, direct = interleaved(
            [lambda: handle.eval("return 1"), bare_eval,
             lambda: engine.eval_runtime_lease(code="return 1", args={}, timeout_ms=60_000, **identity)],
            options.rounds, options.number)
        report("lease eval('return 1')", "the SDK", sdk, direct)
        report("lease eval('return 1')", "the bare C ABI", bare, direct, " (goal <= 15 us)")
        handle.close()


if __name__ == "__main__":
    main()
