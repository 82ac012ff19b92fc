"""`vulcan.runtime.lua.exec(input)` on main VMs: runs a runlua request and returns its Markdown.

The input table is the request (`task`, `code` | `file`, `args`, `timeout_ms`); the caller tool
name is taken from `vulcan.runtime.internal.tool_name` of the calling VM, as the reference does.
The run itself is the `lua_exec` callable the VM's builder hands in (the engine's runlua service);
runlua and lease VMs do not get this function (no nesting).
"""
from __future__ import annotations

from luaskills_runtime._ref.lua_args import require_table
from luaskills_runtime._ref.rust import rust_trim
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.luajson import lua_to_json

_FN = "runtime.lua.exec"


def install(vm, vulcan, lua_exec) -> None:
    def caller_tool_name():
        try:
            internal = vm.runtime.globals()[b"vulcan"][b"runtime"][b"internal"]
            name = internal[b"tool_name"]
        except Exception:
            raise LuaSkillsError("vulcan.runtime.internal is not available") from None
        if not isinstance(name, bytes):
            return None
        text = rust_trim(name.decode("utf-8", "replace"))
        return text or None

    def exec_request(value=None):
        table = require_table(value, _FN, "input")
        return lua_exec(lua_to_json(table), caller_tool_name()).encode("utf-8")

    vulcan[b"runtime"][b"lua"][b"exec"] = vm.bridge.function("vulcan.runtime.lua.exec", exec_request)
