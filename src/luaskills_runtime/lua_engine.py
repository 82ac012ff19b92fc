"""The one place that picks lupa's Lua engine module; every module that talks to lupa imports
``lupa_engine`` from here, so the whole process runs on one engine, chosen once at import.

LuaJIT 2.1 (``lupa.luajit21``) is the engine wherever lupa ships it.  Where it does not (lupa
2.8's macOS wheels ship ``lua51``..``lua55`` only) the package runs on PUC Lua 5.1
(``lupa.lua51``), the closest to LuaJIT's language: same API, same guard guarantees (PUC Lua calls
hooks on every path, there is no JIT to turn off; its hooks are per coroutine, so the Lua-hook
guard is the one used there, see luaskills_runtime.lua.lua_hook_guard), LuaJIT 2.1's library
extensions added by lua/chunks/compat_lua51.lua, and no ``jit``, ``ffi`` or ``bit`` modules.

``LUASKILLS_LUA_ENGINE=luajit21`` or ``=lua51`` forces one (an engine lupa lacks is then an
import error); unset (or ``auto``) takes LuaJIT when it imports, else Lua 5.1.
"""
from __future__ import annotations

import importlib
import os

from luaskills_runtime.errors import LuaSkillsError

ENGINE_ENV = "LUASKILLS_LUA_ENGINE"
LUAJIT = "luajit21"
LUA51 = "lua51"
ENGINES = (LUAJIT, LUA51)   # in order of preference


def _import_engine(wanted: str):
    if wanted in ENGINES:
        return importlib.import_module(f"lupa.{wanted}")
    if wanted != "auto":
        raise LuaSkillsError(f"{ENGINE_ENV} must be one of {', '.join(ENGINES)} or auto, "
                             f"got {wanted!r}")
    try:
        return importlib.import_module(f"lupa.{LUAJIT}")
    except ImportError:
        return importlib.import_module(f"lupa.{LUA51}")


lupa_engine = _import_engine(os.environ.get(ENGINE_ENV, "").strip().lower() or "auto")
# The engine's module name in lupa ("luajit21" or "lua51").
ENGINE = lupa_engine.__name__.rsplit(".", 1)[-1]
# True on LuaJIT: the `jit`, `ffi` and `bit` modules exist and guarded VMs turn the JIT off.
IS_LUAJIT = ENGINE == LUAJIT
