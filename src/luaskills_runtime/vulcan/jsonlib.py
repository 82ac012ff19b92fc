"""`vulcan.json.encode/decode` over the SPEC 3 conversion."""
from __future__ import annotations

import json

from luaskills_runtime._ref.lua_args import require_string
from luaskills_runtime.errors import LuaSkillsError


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
            value = json.loads(source)
        except ValueError as error:
            raise LuaSkillsError(f"vulcan.json.decode: {error}") from None
        return bridge.to_lua(value)

    vulcan[b"json"] = bridge.table(
        encode=bridge.function("vulcan.json.encode", encode),
        decode=bridge.function("vulcan.json.decode", decode),
    )
