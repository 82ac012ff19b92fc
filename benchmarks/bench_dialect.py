"""Cost of the Lua dialect's wrappers (compat52.lua): library calls it wraps, in a LuaJIT VM with
the dialect installed, against the same loop in a bare lupa LuaJIT VM (the anchor), with the JIT
on (main VMs) and off (runlua and lease VMs run with the JIT off).

    python benchmarks/bench_dialect.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lupa.luajit21 as lupa_engine  # noqa: E402

from _timing import best_of, ratio_line  # noqa: E402
from luaskills_runtime.lua.vm import install_dialect  # noqa: E402

LOOPS = {
    "pairs over 4 keys": "local t = {a = 1, b = 2, c = 3, d = 4} local s = 0 "
                         "for i = 1, N do for k, v in pairs(t) do s = s + v end end return s",
    "ipairs over 4 items": "local t = {1, 2, 3, 4} local s = 0 "
                           "for i = 1, N do for _, v in ipairs(t) do s = s + v end end return s",
    "string.find with init": "local s, n = 'hello world', 0 "
                             "for i = 1, N do if s:find('o', 5, true) then n = n + 1 end end return n",
    "string.match": "local s, n = 'key=value', 0 "
                    "for i = 1, N do if s:match('^(%w+)=') then n = n + 1 end end return n",
    "coroutine.running": "local n = 0 for i = 1, N do local co = coroutine.running() n = n + 1 end return n",
}
N = 200_000


def runtime(with_dialect: bool, jit_on: bool):
    lua = lupa_engine.LuaRuntime()
    if with_dialect:
        install_dialect(lua, main_vm=False)
    lua.execute("jit.on()" if jit_on else "jit.off()")
    return lua


def creation(with_dialect: bool, main_vm: bool):
    def run():
        lua = lupa_engine.LuaRuntime()
        if with_dialect:
            install_dialect(lua, main_vm)
    return run


def main():
    anchor = best_of(creation(False, False), repeat=7, number=20)
    for label, main_vm in (("runlua/lease VM", False), ("main VM (+ FFI pipe close)", True)):
        print(ratio_line(f"LuaRuntime() + compat52.lua, {label}",
                         best_of(creation(True, main_vm), repeat=7, number=20), anchor))
    print(f"dialect wrappers vs bare LuaJIT builtins, {N} iterations per call")
    for jit_on in (True, False):
        ours, anchor = runtime(True, jit_on), runtime(False, jit_on)
        for label, body in LOOPS.items():
            code = body.replace("N", str(N))
            ours_fn, anchor_fn = ours.eval(f"function() {code} end"), anchor.eval(f"function() {code} end")
            assert ours_fn() == anchor_fn()
            t_ours, t_anchor = best_of(ours_fn, repeat=5), best_of(anchor_fn, repeat=5)
            print(ratio_line(f"{label} (JIT {'on' if jit_on else 'off'})", t_ours, t_anchor,
                             unit="ms", scale=1e3))


if __name__ == "__main__":
    main()
