"""JSON <-> Lua value conversion (SPEC 3).

Lua -> JSON walks lupa tables from Python with an explicit depth bound and a set of tables on the
current path, so cyclic or absurdly deep tables give a clear error instead of a crash or a hang.
"""
from __future__ import annotations

import math
from typing import Any

from luaskills_runtime._ref.lua_args import lua_type_name, lupa_object_type
from luaskills_runtime.errors import LuaSkillsError

MAX_DEPTH = 256
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _number_to_json(value: float | int):
    if isinstance(value, int):
        return value
    if math.isnan(value) or math.isinf(value):
        return None
    if value.is_integer() and -(2.0**63) <= value < 2.0**63:
        return int(value)
    return value


def _key_to_json(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    if isinstance(key, bool):
        raise LuaSkillsError(f"Table key: unsupported key type boolean")
    if isinstance(key, (int, float)):
        converted = _number_to_json(key)
        if converted is None:
            return "nan" if isinstance(key, float) and math.isnan(key) else ("inf" if key > 0 else "-inf")
        return str(converted)
    raise LuaSkillsError(f"Table key: unsupported key type {lua_type_name(key)}")


def lua_to_json(value: Any) -> Any:
    """Convert a Lua value (as lupa hands it over) into a JSON-compatible Python value."""
    return _to_json(value, 0, set())


def _to_json(value: Any, depth: int, path: set) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _number_to_json(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    kind = lupa_object_type(value)
    if kind != "table":
        raise LuaSkillsError(f"Cannot convert Lua {kind} to JSON")
    if depth >= MAX_DEPTH:
        raise LuaSkillsError(f"Cannot convert Lua table to JSON: nested deeper than {MAX_DEPTH} levels")
    ident = _table_identity(value)  # lupa makes a new wrapper per access: compare Lua identity
    if ident in path:
        raise LuaSkillsError("Cannot convert cyclic Lua table to JSON")
    path.add(ident)
    try:
        length = len(value)
        if length > 0:
            return [_to_json(value[i], depth + 1, path) for i in range(1, length + 1)]
        items = {}
        for key, item in value.items():
            items[_key_to_json(key)] = _to_json(item, depth + 1, path)
        if not items:
            return []
        return dict(sorted(items.items()))
    finally:
        path.discard(ident)


def _table_identity(table) -> str:
    # repr() of a lupa table names its Lua address ("<Lua table at 0x...>"), which is the table's
    # identity inside one VM for as long as we hold a reference to it.
    return repr(table)


def json_to_lua(runtime, value: Any, *, top_level_args: bool = False):
    """Convert a JSON value into a Lua value of `runtime` (str -> bytes, dict/list -> tables).

    With top_level_args a non-container becomes an empty table, as the reference does for args.
    """
    if top_level_args and not isinstance(value, (dict, list)):
        return runtime.table()
    return _to_lua(runtime, value, 0)


def _to_lua(runtime, value: Any, depth: int):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _I64_MIN <= value <= _I64_MAX else float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return value
    if depth >= MAX_DEPTH:
        raise LuaSkillsError(f"Cannot convert JSON to Lua: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[str(key).encode("utf-8", "surrogatepass")] = _to_lua(runtime, item, depth + 1)
        return table
    if isinstance(value, (list, tuple)):
        table = runtime.table()
        for index, item in enumerate(value, 1):
            if item is not None:
                table[index] = _to_lua(runtime, item, depth + 1)
        return table
    raise LuaSkillsError(f"Cannot convert Python {type(value).__name__} to Lua")
