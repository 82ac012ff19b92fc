"""What this installation runs on: the Lua engine, lupa's version and the timeout guard in use."""
from __future__ import annotations

from importlib import metadata
from typing import Any, Dict

from luaskills_runtime._version import __version__
from luaskills_runtime.lua_engine import ENGINE, lupa_engine
from luaskills_runtime.lua.guard_mechanism import guard_mechanism


def engine_info() -> Dict[str, Any]:
    """A dict: ``engine`` (lupa's engine module: "luajit21", or "lua51" where lupa ships no LuaJIT;
    see luaskills_runtime.lua_engine), ``lua_version`` (the engine's own version string),
    ``lupa_version``, ``guard`` (the mechanism guarded VMs get now: "jit-profile", "jit-off-hook"
    or "lua-hook", see luaskills_runtime.lua.guard_mechanism) and ``version`` (this package's)."""
    module = lupa_engine
    runtime = module.LuaRuntime(register_eval=False, register_builtins=False)
    lua_version = runtime.eval("jit and jit.version or _VERSION")
    try:
        lupa_version = metadata.version("lupa")
    except metadata.PackageNotFoundError:  # lupa used from a source tree
        lupa_version = getattr(module, "__version__", "unknown")
    return {
        "version": __version__,
        "engine": ENGINE,
        "lua_version": lua_version,
        "lupa_version": lupa_version,
        "guard": guard_mechanism(),
    }
