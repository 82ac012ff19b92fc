"""luaskills-runtime: the LuaSkills runtime core (luaskills 0.4.2 compatible) for Python hosts."""
from luaskills_runtime._version import __version__
from luaskills_runtime.errors import LuaSkillsError

__all__ = ["__version__", "LuaSkillsError"]
