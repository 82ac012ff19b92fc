"""run_lua under the timeout guard: a deadline and/or a host cancel on a main VM.

The main VM gets the same guard as runlua and leases (guard.prepare_guarded_vm, once per VM, kept
by the engine's MainVM): with the ``jit-profile`` mechanism the JIT stays on, as run_lua always
had it; with the ``jit-off-hook`` or ``lua-hook`` fallback the VM runs interpreted from its first
guarded run on.
"""
from __future__ import annotations

import operator
from typing import Any, Optional, Tuple

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.guard import CancelToken, GuardedResult, guarded_run

# A cancel-only run still arms the guard (the cancel fires it): ten years.
NO_TIMEOUT_MS = 10 * 365 * 24 * 3600 * 1000


def check_timeout_ms(timeout_ms: Any) -> Optional[int]:
    """timeout_ms as given to run_lua: None, or an integer number of milliseconds > 0."""
    if timeout_ms is None:
        return None
    if isinstance(timeout_ms, bool):
        raise LuaSkillsError("run_lua: timeout_ms must be an integer number of milliseconds")
    try:
        value = operator.index(timeout_ms)
    except TypeError:
        raise LuaSkillsError("run_lua: timeout_ms must be an integer number of milliseconds, "
                             f"got {type(timeout_ms).__name__}") from None
    if value <= 0:
        raise LuaSkillsError("run_lua: timeout_ms must be greater than 0")
    return value


def run_guarded_chunk(control, code: str, chunkname: bytes, *, timeout_ms: Optional[int],
                      cancel: Optional[CancelToken]) -> GuardedResult:
    """Run `code` on the control's VM under the guard; the outcome says whether it returned
    (``.values``) or why not (``.reason``: Lua's message, ``luaexec execution timed out after N
    ms`` or the cancel message)."""
    return guarded_run(control, code, chunkname,
                       timeout_ms=timeout_ms if timeout_ms is not None else NO_TIMEOUT_MS,
                       cancel=cancel)


def run_values(outcome: GuardedResult) -> Tuple[Any, ...]:
    """The values of a run that returned, else LuaSkillsError with its plain reason (as
    LuaVM.run_chunk raises)."""
    if not outcome.ok:
        raise LuaSkillsError(outcome.reason)
    return outcome.values
