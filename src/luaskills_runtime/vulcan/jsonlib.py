"""`vulcan.json.encode/decode` over the SPEC 3 conversion."""
from __future__ import annotations

import json
import math

from luaskills_runtime._ref.lua_args import require_string
from luaskills_runtime.errors import LuaSkillsError


def _parse_int(text: str):
    """serde_json reads an integer beyond 64 bits as a float; Python's int() would refuse
    literals over 4300 digits in its own words."""
    if len(text) <= 20:
        return int(text)
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def install(vm, vulcan) -> None:
    bridge = vm.bridge

    def encode(value=None):
        try:
            data = bridge.to_json(value)
        except LuaSkillsError as error:
            raise LuaSkillsError(f"vulcan.json.encode: {error}") from None
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    def decode(text=None):
        source = require_string(text, "vulcan.json.decode", "text", allow_blank=True)
        try:
            value = json.loads(source, parse_int=_parse_int)
        except RecursionError:   # serde_json's nesting limit, in its words
            raise LuaSkillsError("vulcan.json.decode: recursion limit exceeded") from None
        except ValueError as error:
            raise LuaSkillsError(f"vulcan.json.decode: {error}") from None
        return bridge.to_lua(value)

    vulcan[b"json"] = bridge.table(
        encode=bridge.function("vulcan.json.encode", encode),
        decode=bridge.function("vulcan.json.decode", decode),
    )
