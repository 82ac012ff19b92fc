"""The `vulcan` namespace given to Lua code: one module per area, installed by whoever builds a VM.

``new_vm`` is the VM factory every service uses: a LuaVM with the namespace installed.  Services
hand in what the namespace needs from above (``lua_exec``: how `vulcan.runtime.lua.exec` runs a
runlua request), so this layer never imports them.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from luaskills_runtime.lua.vm import LuaVM
from luaskills_runtime.options import memory_cap_for
from luaskills_runtime.vulcan import (cache, fs, jsonlib, luaexec, os_execute, output, process_exec,
                                      process_session, runtime)

# Installers run in this order; each adds its tables to `vulcan`.
INSTALLERS = (output.install, runtime.install, jsonlib.install, cache.install, fs.install,
              process_exec.install, process_session.install, os_execute.install)

# `vulcan.runtime.lua.exec`'s runner: (decoded input, caller tool name or None) -> Markdown.
LuaExec = Callable[[Any, Optional[str]], str]


def install_vulcan(vm: LuaVM, *, lua_exec: Optional[LuaExec] = None) -> None:
    vulcan = vm.bridge.table(io=vm.bridge.table())
    vm.runtime.globals()[b"vulcan"] = vulcan
    for install in INSTALLERS:
        install(vm, vulcan)
    if lua_exec is not None:   # main VMs only: runlua and lease VMs get no nesting
        luaexec.install(vm, vulcan, lua_exec)


def new_vm(engine_state, kind: str, *, max_memory: Optional[int] = None,
           lua_exec: Optional[LuaExec] = None, policy: Optional[str] = None) -> LuaVM:
    """A LuaVM of `kind` under `policy` (default: the host's) with the vulcan namespace
    installed; `untrusted` VMs get the untrusted memory cap when `max_memory` is None."""
    policy = policy or engine_state.options.policy
    if max_memory is None:
        max_memory = memory_cap_for(engine_state.options, policy)
    vm = LuaVM(engine_state, kind, max_memory=max_memory, policy=policy)
    try:
        install_vulcan(vm, lua_exec=lua_exec)
    except BaseException:
        vm.close()
        raise
    return vm
