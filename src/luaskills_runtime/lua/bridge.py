"""How Python functions become `vulcan.*` Lua functions, and the reference's argument checks.

Conventions every vulcan module follows:

* A Python callback is never handed to Lua directly.  ``LuaBridge.function(name, fn)`` returns a
  Lua closure that calls ``fn`` through a private upvalue; the runtime's attribute filter denies
  every attribute access on Python objects, so Lua code has no door into Python.
* ``fn`` receives Lua values as lupa gives them (strings as ``bytes``) and returns one value or a
  tuple of values.  Strings going back to Lua must be ``bytes``; use ``bridge.to_lua(value)`` for
  dicts/lists/str.  Raising :class:`LuaSkillsError` raises a Lua error whose message is exactly
  ``str(error)`` (no position prefix), as the reference's runtime errors read.
* Lua-facing functions that Lua calls with ``:`` syntax simply take the object as first argument.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from luaskills_runtime.lua.chunk_files import read_chunk
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.luajson import json_to_lua, lua_to_json
from luaskills_runtime.lua.outcome import OUT_OF_MEMORY

_WRAPPER_FACTORY = read_chunk("luaskills_runtime.lua", "callback_wrapper.lua")

# Room kept free under the cap for pushing an answer (string headers, the error text).
_PUSH_MARGIN = 64 * 1024
_NO_MEMORY = (False, OUT_OF_MEMORY.encode())


def _answer_size(result) -> int:
    """Bytes of the strings a callback answers with (tables it built are already counted)."""
    values = result if isinstance(result, tuple) else (result,)
    return sum(len(value) for value in values if isinstance(value, (bytes, str)))


def _positional_capacity(fn) -> Optional[int]:
    """How many positional arguments fn takes (None: any number)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


class LuaBridge:
    """Per-VM helper that exposes Python callbacks as Lua functions."""

    def __init__(self, runtime):
        self.runtime = runtime
        self._factory = runtime.eval("function(...) " + _WRAPPER_FACTORY + " end")
        self._vm_state = runtime.table()   # callback_wrapper.lua's `vm_state`
        # The cap a callback lifted, put back by `_recap` once its answer is pushed (0: none).
        self._pending_cap = 0
        if runtime.get_max_memory():
            self._vm_state[b"capped"] = True

    def _recap(self) -> None:
        cap = self._pending_cap
        if cap:
            self._pending_cap = 0
            self.runtime.set_max_memory(cap)

    def close(self) -> None:
        """Callbacks refuse from now on without entering Python (finalizers that run while the
        VM is freed must not call back into a half-destroyed runtime)."""
        self._vm_state[b"closed"] = True

    def function(self, name: str, fn: Callable[..., Any]):
        """A Lua function named `name` (used in unexpected-error messages) that calls fn."""

        runtime = self.runtime
        max_args = _positional_capacity(fn)

        def call(*args):
            if max_args is not None and len(args) > max_args:
                args = args[:max_args]   # Lua drops extra arguments; so do vulcan functions
            # lupa's Python-side Lua API calls (building tables, pushing strings) run outside a
            # protected call: hitting the VM's memory cap there aborts or hangs the process.  So
            # the cap is lifted while a callback builds its answer and until the answer is on
            # the Lua stack (callback_wrapper.lua calls _recap); an answer that would not fit
            # under the cap is refused with Lua's memory error first.
            cap = runtime.get_max_memory() or self._pending_cap
            if cap:
                runtime.set_max_memory(0)
                self._pending_cap = cap
            try:
                result = fn(*args)
            except LuaSkillsError as error:
                return (False, str(error).encode("utf-8", "replace"))
            except Exception as error:  # a bug or an OS error: still a clean Lua error
                return (False, f"{name}: {error}".encode("utf-8", "replace"))
            if cap and _answer_size(result) + _PUSH_MARGIN > cap - runtime.get_memory_used():
                return _NO_MEMORY
            if isinstance(result, tuple):
                return (True,) + result
            return (True, result)

        return self._factory(call, self._vm_state, self._recap)

    def table(self, **fields):
        table = self.runtime.table()
        for key, value in fields.items():
            table[key.encode()] = value
        return table

    def to_lua(self, value: Any):
        return json_to_lua(self.runtime, value)

    @staticmethod
    def to_json(value: Any):
        return lua_to_json(value)
