"""luaskills-runtime: the LuaSkills runtime core (luaskills 0.4.2 compatible) for Python hosts."""
import logging

from luaskills_runtime._version import __version__
from luaskills_runtime.engine import LuaEngine
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.options import HostOptions

from luaskills_runtime.lease_handle import Lease, LeaseError

# Quiet by default: a host that never configured logging sees nothing (no lastResort output on
# stderr).  Areas log below this one: luaskills_runtime.lua, .process, .leases.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__", "HostOptions", "Lease", "LeaseError", "LuaEngine", "LuaSkillsError"]
