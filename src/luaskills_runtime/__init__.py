"""luaskills-runtime: the LuaSkills runtime core (luaskills 0.4.2 compatible) for Python hosts."""
from luaskills_runtime._version import __version__
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.options import HostOptions

__all__ = ["LuaEngine", "HostOptions", "LuaSkillsError", "__version__", "engine_info"]


def __getattr__(name: str):
    # LuaEngine and engine_info load lupa and the Lua stack; importing only the process core
    # (luaskills_runtime.process) must not pay for that, so both load on first use.
    if name == "LuaEngine":
        from luaskills_runtime.engine import LuaEngine
        return LuaEngine
    if name == "engine_info":
        from luaskills_runtime.lua.runtime_info import engine_info
        return engine_info
    raise AttributeError(f"module 'luaskills_runtime' has no attribute {name!r}")
