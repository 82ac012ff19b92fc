"""`vulcan.runtime` (log, cwd, temp_dir, resources_dir, internal, lua) and `vulcan.context`."""
from __future__ import annotations

import logging
import os
import tempfile

from luaskills_runtime._ref.lua_args import lua_type_name

LOGGER = logging.getLogger("luaskills_runtime.lua")


def log_level_for(level: str) -> int:
    lowered = level.lower()
    if "error" in lowered or "fatal" in lowered:
        return logging.ERROR
    if "warn" in lowered:
        return logging.WARNING
    return logging.INFO


def _lua_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return f"<{lua_type_name(value)}>"


def install(vm, vulcan) -> None:
    bridge = vm.bridge
    options = vm.options

    def log(level=None, message=None):
        level_text = _lua_text(level) if level is not None else "info"
        # extra: the VM kind and what the running request put in vm.log_fields (lease sid and
        # id, request id), so a host's handler can route or filter by them.
        LOGGER.log(log_level_for(level_text), "[LuaSkill:%s] %s", level_text, _lua_text(message),
                   extra={"luaskills_vm_kind": vm.kind, **vm.log_fields})
        return None

    def cwd():
        return os.getcwd().encode("utf-8", "surrogateescape")

    temp_dir = options.temp_dir or tempfile.gettempdir()
    runtime = bridge.table(
        log=bridge.function("vulcan.runtime.log", log),
        cwd=bridge.function("vulcan.runtime.cwd", cwd),
        temp_dir=temp_dir.encode(),
        internal=bridge.table(),
        lua=bridge.table(),
    )
    if options.resources_dir:
        runtime[b"resources_dir"] = options.resources_dir.encode()
    vulcan[b"runtime"] = runtime
    vulcan[b"context"] = bridge.table()
