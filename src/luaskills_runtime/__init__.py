"""luaskills-runtime: the LuaSkills runtime core (luaskills 0.4.2 compatible) for Python hosts."""
import logging
from typing import TYPE_CHECKING

from luaskills_runtime._version import __version__
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lease_handle import Lease, LeaseError
from luaskills_runtime.options import HostOptions

if TYPE_CHECKING:  # type checkers see the real class; at run time it loads on first use
    from luaskills_runtime.engine import LuaEngine
    from luaskills_runtime.lua.runtime_info import engine_info

# Quiet by default: a host that never configured logging sees nothing (no lastResort output on
# stderr).  Areas log below this one: luaskills_runtime.lua, .process, .leases.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__", "HostOptions", "Lease", "LeaseError", "LuaEngine", "LuaSkillsError",
           "engine_info", "ffi_library_path"]


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


def ffi_library_path() -> str:
    """Path of the shared library exporting the luaskills JSON C ABI (for LUASKILLS_LIB)."""
    from luaskills_runtime.ffi import library_path
    return library_path()
