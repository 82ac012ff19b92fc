"""run_lua under the timeout guard: a deadline and/or a host cancel on a main VM.

The main VM gets the same guard as runlua and leases (guard.prepare_guarded_vm, once per VM): with
the ``jit-profile`` mechanism the JIT stays on, as run_lua always had it; with the ``jit-off-hook``
fallback the VM runs interpreted from its first guarded run on.
"""
from __future__ import annotations

import operator
from typing import Optional

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.guard import CancelToken, guarded_run

# A cancel-only run still needs a deadline for the guard: ~292 million years.
_NO_DEADLINE_MS = 1 << 53


def check_timeout_ms(timeout_ms) -> Optional[int]:
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


def run_guarded_chunk(vm, code: str, chunkname: str, *, timeout_ms: Optional[int],
                      cancel: Optional[CancelToken]) -> tuple:
    """vm.run_chunk under the guard: the returned values, or LuaSkillsError with Lua's message,
    the timeout message (``luaexec execution timed out after N ms``) or the cancel message."""
    if cancel is not None and not isinstance(cancel, CancelToken):
        raise LuaSkillsError(f"run_lua: cancel must be a CancelToken, got {type(cancel).__name__}")
    outcome = guarded_run(vm, code, chunkname,
                          timeout_ms=timeout_ms if timeout_ms is not None else _NO_DEADLINE_MS,
                          cancel=cancel)
    if not outcome.ok:
        raise LuaSkillsError(outcome.reason)
    return outcome.values
