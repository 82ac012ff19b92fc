"""Lua chunks shipped as `.lua` files next to the code that runs them (`<package>/chunks/`)."""
from __future__ import annotations

import functools
from importlib import resources

from luaskills_runtime.lua_engine import lupa_engine


def read_chunk(package: str, name: str) -> str:
    """The source of `<package>/chunks/<name>` (installed with the wheel as package data)."""
    return resources.files(package).joinpath("chunks").joinpath(name).read_text("utf-8")


@functools.lru_cache(maxsize=None)
def chunk_bytecode(package: str, name: str) -> bytes:
    """`<package>/chunks/<name>` compiled to the engine's bytecode once per process, named `=<name>` (so
    tracebacks and error positions say `<name>:line`); run it with `execute(..., mode="b")`.

    For chunks run in every new VM, where parsing costs more than loading (compat52.lua: ~0.4 ms
    parsed vs ~20 us loaded).  The bytecode comes from this process's own engine (loadstring: Lua 5.1 has no load of a string), so every VM of
    the process accepts it; it keeps debug info (string.dump without strip)."""
    source = read_chunk(package, name).encode("utf-8")
    compiler = lupa_engine.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
    return compiler.execute(b"local source, name = ... "
                            b"return string.dump(assert((loadstring or load)(source, name)))",
                            source, b"=" + name.encode("utf-8"))
