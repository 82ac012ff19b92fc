"""The Lua engine this test process runs on (luaskills_runtime.lua_engine), and the one marker for
tests that only make sense on LuaJIT (jit.*, ffi, bit, the JIT-off guard steps, the dialect
differential test against the reference luajit).  Everything else runs on both engines:
`LUASKILLS_LUA_ENGINE=lua51 python -m pytest` is the second pass of .ci/run."""
import pytest

from luaskills_runtime.lua_engine import ENGINE, IS_LUAJIT, lupa_engine

__all__ = ["ENGINE", "IS_LUAJIT", "lupa_engine", "luajit_only", "interpreted"]

luajit_only = pytest.mark.skipif(
    not IS_LUAJIT, reason=f"LuaJIT only; this process runs lupa.{ENGINE} (LUASKILLS_LUA_ENGINE)")


def interpreted(runtime) -> None:
    """Turn the JIT off and flush its traces, as guarded VMs run (compiled traces never look at
    hooks); nothing to do on Lua 5.1, which has no JIT."""
    if IS_LUAJIT:
        runtime.execute(b"jit.off() jit.flush()")
