"""luaskills-runtime: the LuaSkills runtime core (luaskills 0.4.2 compatible) for Python hosts."""
from luaskills_runtime._version import __version__
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.options import HostOptions

__all__ = ["LuaEngine", "HostOptions", "LuaSkillsError", "__version__"]


def __getattr__(name: str):
    # LuaEngine loads lupa and the whole Lua stack; importing only the process core
    # (luaskills_runtime.process) must not pay for that, so the engine loads on first use.
    if name == "LuaEngine":
        from luaskills_runtime.engine import LuaEngine
        return LuaEngine
    raise AttributeError(f"module 'luaskills_runtime' has no attribute {name!r}")
