"""`vulcan.runtime.lua.exec(input)` on main VMs: runs a runlua request and returns its Markdown.

The input table is the request (`task`, `code` | `file`, `args`, `timeout_ms`); the caller tool
name is taken from `vulcan.runtime.internal.tool_name` of the calling VM, as the reference does.
Runlua and lease VMs do not get this function (no nesting).
"""
from __future__ import annotations

from luaskills_runtime._ref.lua_args import require_table
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.luajson import lua_to_json

_FN = "runtime.lua.exec"


def install(vm, vulcan) -> None:
    if vm.kind != "main":
        return
    from luaskills_runtime.runlua import request_from_mapping  # runlua imports the VM layer

    def caller_tool_name():
        try:
            internal = vm.runtime.globals()[b"vulcan"][b"runtime"][b"internal"]
            name = internal[b"tool_name"]
        except Exception:
            raise LuaSkillsError("vulcan.runtime.internal is not available") from None
        if not isinstance(name, bytes):
            return None
        text = name.decode("utf-8", "replace").strip()
        return text or None

    def lua_exec(value=None):
        table = require_table(value, _FN, "input")
        request = request_from_mapping(lua_to_json(table), "luaexec input is invalid: ")
        request.caller_tool_name = caller_tool_name()
        markdown = vm.state.engine.runlua_service.execute(request)
        return markdown.encode("utf-8")

    vulcan[b"runtime"][b"lua"][b"exec"] = vm.bridge.function("vulcan.runtime.lua.exec", lua_exec)
