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

from typing import Any, Callable

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.luajson import json_to_lua, lua_to_json, lua_type_name

# Builds the Lua-side wrapper of one Python callback.  `check` turns the callback's
# (ok, values...) answer into returned values or a plain-message error.
_WRAPPER_FACTORY = """
local pyfn = ...
local error, select = error, select
local function check(ok, ...)
  if ok then return ... end
  error((...), 0)
end
return function(...) return check(pyfn(...)) end
"""

_COERCED_PREFIXES = (b"table: 0x", b"function: 0x", b"thread: 0x", b"userdata: 0x")


class LuaBridge:
    """Per-VM helper that exposes Python callbacks as Lua functions."""

    def __init__(self, runtime):
        self.runtime = runtime
        self._factory = runtime.eval("function(...) " + _WRAPPER_FACTORY + " end")

    def function(self, name: str, fn: Callable[..., Any]):
        """A Lua function named `name` (used in unexpected-error messages) that calls fn."""

        runtime = self.runtime

        def call(*args):
            # lupa's Python-side Lua API calls (building tables, pushing strings) run outside a
            # protected call: hitting the VM's memory cap there aborts or hangs the process.  So
            # the cap is lifted while a callback builds its answer and restored right after; the
            # Lua code that called us meets the cap again at its next allocation.
            cap = runtime.get_max_memory()
            if cap:
                runtime.set_max_memory(0)
            try:
                result = fn(*args)
            except LuaSkillsError as error:
                return (False, str(error).encode("utf-8", "replace"))
            except Exception as error:  # a bug or an OS error: still a clean Lua error
                return (False, f"{name}: {error}".encode("utf-8", "replace"))
            finally:
                if cap:
                    runtime.set_max_memory(cap)
            if isinstance(result, tuple):
                return (True,) + result
            return (True, result)

        return self._factory(call)

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


# ---- argument checks with the reference's wording -------------------------------------------

def require_string_arg(value: Any, fn_name: str, param: str, allow_blank: bool = False) -> str:
    if not isinstance(value, bytes):
        raise LuaSkillsError(f"{fn_name}: {param} must be a string, got {lua_type_name(value)}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise LuaSkillsError(f"{fn_name}: {param} must be a valid UTF-8 string") from None
    if not allow_blank and not text.strip():
        raise LuaSkillsError(f"{fn_name}: {param} must not be empty")
    if "\0" in text:
        raise LuaSkillsError(f"{fn_name}: {param} must not contain NUL bytes")
    return text


def validate_path_text(text: str, fn_name: str, param: str) -> str:
    if text.encode("utf-8", "surrogatepass").startswith(_COERCED_PREFIXES):
        raise LuaSkillsError(f"{fn_name}: {param} looks like a coerced Lua object string `{text}`")
    return text


def require_path_arg(value: Any, fn_name: str, param: str) -> str:
    return validate_path_text(require_string_arg(value, fn_name, param), fn_name, param)


def require_table_arg(value: Any, fn_name: str, param: str):
    if lua_type_name(value) != "table":
        raise LuaSkillsError(f"{fn_name}: {param} must be a table, got {lua_type_name(value)}")
    return value


def optional_u64_arg(value: Any, fn_name: str, param: str):
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, int) and value >= 0:
            return value
        if isinstance(value, float) and value == value and value not in (float("inf"),) \
                and value >= 0 and value.is_integer():
            return int(value)
    raise LuaSkillsError(f"{fn_name}: {param} must be a non-negative integer: {lua_type_name(value)}")
