"""luaskills-runtime: the LuaSkills runtime core (luaskills 0.4.2 compatible) for Python hosts."""
from luaskills_runtime._version import __version__
from luaskills_runtime.engine import LuaEngine
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.options import HostOptions
from luaskills_runtime.runtime_info import engine_info

__all__ = ["__version__", "HostOptions", "LuaEngine", "LuaSkillsError", "engine_info"]
