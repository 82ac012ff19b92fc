"""The reference's checks of function arguments and their wording (``<fn>: <param> must ...``).

Works on values as lupa hands them over (Lua strings arrive as bytes) and on the Python values of
the Python-surface APIs, without importing lupa: a lupa object can only exist once lupa is loaded.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Optional

from luaskills_runtime._ref.rust import is_blank
from luaskills_runtime.errors import LuaSkillsError

_THREAD_WRAPPERS = ("_LuaThread", "_LuaCoroutineFunction")

# Text that Lua's tostring gives for objects: never a real path (the reference refuses it).
COERCED_PREFIXES = (b"table: 0x", b"function: 0x", b"thread: 0x", b"userdata: 0x")

VALID_UTF8 = "must be a valid UTF-8 string"


def lua_type_name(value: Any) -> str:
    """The Lua type name the reference reports for a value ("got number", "got table", ...).

    A dict or list stands for a table and a callable for a function (Python-surface values).
    """
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (bytes, str, bytearray)):
        return "string"
    if isinstance(value, (dict, list, tuple)):
        return "table"
    if type(value).__module__.split(".")[0] != "lupa":
        return "function" if callable(value) else "userdata"
    return lupa_object_type(value)


def lupa_object_type(value: Any) -> str:
    """The Lua type of an object lupa handed over."""
    kind = sys.modules[type(value).__module__].lua_type(value)   # the lupa flavour that made it
    if kind is None:
        return "userdata"  # a Python object: Lua sees it as userdata
    if kind == "function" and type(value).__name__ in _THREAD_WRAPPERS:
        return "thread"  # lupa hands Lua threads over as coroutine wrappers
    return kind


def require_string(value: Any, fn_name: str, param: str, allow_blank: bool = False, *,
                   utf8_error: str = VALID_UTF8) -> str:
    """The reference's require_string_arg: a string (bytes from Lua, str or a path from Python),
    valid UTF-8, not blank unless allowed (Rust's trim), without NUL.  `utf8_error` is the
    surface's wording for invalid UTF-8."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise LuaSkillsError(f"{fn_name}: {param} {utf8_error}") from None
    elif isinstance(value, str):
        text = value
        if not text.isascii():
            try:
                text.encode("utf-8")   # lone surrogates cannot become a Rust string either
            except UnicodeEncodeError:
                raise LuaSkillsError(f"{fn_name}: {param} {utf8_error}") from None
    else:
        raise LuaSkillsError(f"{fn_name}: {param} must be a string, got {lua_type_name(value)}")
    if not allow_blank and is_blank(text):
        raise LuaSkillsError(f"{fn_name}: {param} must not be empty")
    if "\0" in text:
        raise LuaSkillsError(f"{fn_name}: {param} must not contain NUL bytes")
    return text


def optional_string(value: Any, fn_name: str, param: str, allow_blank: bool = False) -> Optional[str]:
    return None if value is None else require_string(value, fn_name, param, allow_blank)


def validate_path_text(text: str, fn_name: str, param: str) -> str:
    """Refuse a path that is really a coerced Lua object (`table: 0x...`)."""
    if text.encode("utf-8", "surrogatepass").startswith(COERCED_PREFIXES):
        raise LuaSkillsError(f"{fn_name}: {param} looks like a coerced Lua object string `{text}`")
    return text


def require_path(value: Any, fn_name: str, param: str) -> str:
    return validate_path_text(require_string(value, fn_name, param), fn_name, param)


def require_table(value: Any, fn_name: str, param: str):
    if lua_type_name(value) != "table":
        raise LuaSkillsError(f"{fn_name}: {param} must be a table, got {lua_type_name(value)}")
    return value


def optional_u64_arg(value: Any, fn_name: str, param: str) -> Optional[int]:
    """A non-negative integral number argument (Lua numbers may arrive as floats), or None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value == value and value != float("inf") \
            and value >= 0 and value.is_integer():
        return int(value)
    raise LuaSkillsError(f"{fn_name}: {param} must be a non-negative integer: {lua_type_name(value)}")
