"""Which timeout guard a new guarded VM gets: the one place the mechanism is chosen.

Three mechanisms, all with the same ``arm`` / ``disarm`` / ``cancel`` / ``fired`` contract:

* ``JIT_PROFILE`` (``"jit-profile"``): the native ``TimeoutGuard`` with the JIT on; the watchdog
  also stops compiled code through LuaJIT's profiler line mode (native/jitguard.h).  Needs the
  Lua C API and a passing self-check of lupa's LuaJIT build (its version symbol is the verified
  one and internal offsets show up in round trips).
* ``JIT_OFF_HOOK`` (``"jit-off-hook"``): the native ``TimeoutGuard`` with the JIT off in guarded
  VMs (compiled traces never look at hooks).  Used when the self-check refuses the build, or
  when ``LUASKILLS_JIT_GUARD=off`` forces it.
* ``LUA_HOOK`` (``"lua-hook"``): ``LuaHookGuard`` (luaskills_runtime.lua.lua_hook_guard), a Lua
  count hook for builds whose Lua C API cannot be bound (lupa's Windows wheels); JIT off too.
  Also the one used on the lua51 engine (PUC Lua's hooks are per coroutine; both native
  mechanisms are unavailable there, see native_guard_error).

``LUASKILLS_GUARD=native`` or ``LUASKILLS_GUARD=lua-hook`` forces the C-API guards or the Lua
hook; unset (or ``auto``) takes the native guard when lupa's Lua C API can be bound, else the Lua
hook.  Among the native ones, jit-profile wins unless its self-check fails or
``LUASKILLS_JIT_GUARD=off``.  The environment is read per VM (so tests can switch it); the checks
run once per process.  ``guard_mechanism()`` is what ``engine_info()["guard"]`` reports.

While ``JIT_PROFILE`` is in use nothing else in the process may use LuaJIT's profiler
(``jit.profile``, ``luaJIT_profile_start``): every VM hides ``jit.profile`` from Lua.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Optional

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua_engine import ENGINE, IS_LUAJIT

GUARD_ENV = "LUASKILLS_GUARD"
JIT_GUARD_ENV = "LUASKILLS_JIT_GUARD"
NATIVE = "native"             # LUASKILLS_GUARD value: one of the two C-API guards below
JIT_PROFILE = "jit-profile"   # as _native.luahook.JIT_PROFILE (TimeoutGuard.mechanism)
JIT_OFF_HOOK = "jit-off-hook"  # as _native.luahook.JIT_OFF_HOOK
LUA_HOOK = "lua-hook"
MECHANISMS = (JIT_PROFILE, JIT_OFF_HOOK, LUA_HOOK)

_LOGGER = logging.getLogger("luaskills_runtime")
_logged_fallback = False


@functools.lru_cache(maxsize=1)
def native_guard_error() -> Optional[str]:
    """Why the native guard cannot work in this process, or None when it can."""
    if not IS_LUAJIT:
        # PUC Lua keeps a hook per coroutine (new ones copy their creator's), LuaJIT one per
        # state: the native guard's late hook on the main thread never reaches a coroutine that
        # loops.  The Lua hook, set at arm, is inherited by every coroutine the run creates.
        return (f"the native guard hooks the main thread only, and lupa.{ENGINE}'s hooks are per "
                "coroutine")
    try:
        from luaskills_runtime._native import luahook
    except ImportError as error:
        return f"the native guard module does not load: {error}"
    return luahook.c_api_error()


def jit_guard_refusal() -> Optional[str]:
    """Why the JIT-on native mechanism is not used (forced off, or the self-check's reason), or
    None.  Only meaningful where the native guard binds."""
    if os.environ.get(JIT_GUARD_ENV, "").strip().lower() == "off":
        return f"{JIT_GUARD_ENV}=off"
    from luaskills_runtime._native.luahook import jit_guard_check
    return jit_guard_check()  # once per process inside


def _native_mechanism() -> str:
    global _logged_fallback
    why = jit_guard_refusal()
    if why is None:
        return JIT_PROFILE
    if not _logged_fallback:
        _logged_fallback = True
        _LOGGER.info("timeout guard: %s (JIT-on guard not used: %s)", JIT_OFF_HOOK, why)
    return JIT_OFF_HOOK


def guard_mechanism() -> str:
    """The guard a VM created now gets: "jit-profile", "jit-off-hook" or "lua-hook"."""
    wanted = os.environ.get(GUARD_ENV, "").strip().lower() or "auto"
    if wanted == LUA_HOOK:
        return LUA_HOOK
    if wanted == NATIVE:
        problem = native_guard_error()
        if problem is not None:
            raise LuaSkillsError(f"{GUARD_ENV}=native, but {problem}")
        return _native_mechanism()
    if wanted != "auto":
        raise LuaSkillsError(f"{GUARD_ENV} must be native, lua-hook or auto, got {wanted!r}")
    return _native_mechanism() if native_guard_error() is None else LUA_HOOK


def new_timeout_guard(runtime, mechanism: str, policy=None):
    """A timeout guard of `mechanism` (from guard_mechanism()) bound to `runtime`.  `policy`: the
    VM's PolicyControls (luaskills_runtime.lua.policy), whose full debug library and FFI the
    Lua-hook guard uses where the policy took them from Lua code (the native guard needs neither,
    but loads itself with package.loadlib: build it inside policy.host_loadlib)."""
    if mechanism == LUA_HOOK:
        from luaskills_runtime.lua.lua_hook_guard import LuaHookGuard
        if policy is None:
            return LuaHookGuard(runtime)
        return LuaHookGuard(runtime, host_debug=policy.full_debug, host_ffi=policy.host_ffi)
    from luaskills_runtime._native.luahook import TimeoutGuard
    return TimeoutGuard(runtime, jit_profile=mechanism == JIT_PROFILE)
