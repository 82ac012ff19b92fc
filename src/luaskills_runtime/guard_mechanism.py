"""Which timeout-guard mechanism new guarded VMs use (see native/jitguard.h and luahook.h).

* ``JIT_PROFILE`` (``"jit-profile"``): the JIT stays on; the watchdog stops compiled code through
  LuaJIT's profiler line mode.  Chosen when the self-check of lupa's LuaJIT build passes (its
  version symbol is the verified one and internal offsets show up in round trips).
* ``JIT_OFF_HOOK`` (``"jit-off-hook"``): today's guard; guarded VMs run with the JIT off.  Used
  when the self-check refuses the build, or when ``LUASKILLS_JIT_GUARD=off`` forces it (tests).

While ``JIT_PROFILE`` is in use nothing else in the process may use LuaJIT's profiler
(``jit.profile``, ``luaJIT_profile_start``): guarded VMs hide ``jit.profile`` from Lua.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from luaskills_runtime._native.luahook import JIT_OFF_HOOK, JIT_PROFILE, jit_guard_check

ENV_VAR = "LUASKILLS_JIT_GUARD"
__all__ = ["ENV_VAR", "JIT_OFF_HOOK", "JIT_PROFILE", "select_mechanism", "refusal"]

_LOGGER = logging.getLogger("luaskills_runtime")
_logged = False


def refusal() -> Optional[str]:
    """Why the JIT-on mechanism is not used (forced off, or the self-check's reason), or None."""
    if os.environ.get(ENV_VAR, "").strip().lower() == "off":
        return f"{ENV_VAR}=off"
    return jit_guard_check()


def select_mechanism() -> str:
    """The mechanism for a VM created now (read per VM, so the environment variable applies to
    VMs created after it is set).  Logs the fallback once per process."""
    global _logged
    why = refusal()
    if why is None:
        return JIT_PROFILE
    if not _logged:
        _logged = True
        _LOGGER.info("timeout guard: %s (JIT-on guard not used: %s)", JIT_OFF_HOOK, why)
    return JIT_OFF_HOOK
