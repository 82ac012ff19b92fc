"""The one exception type hosts catch."""


class LuaSkillsError(RuntimeError):
    """A LuaSkills runtime failure; ``str(err)`` is the reference's message text."""
