"""The `vulcan` namespace given to Lua code: one module per area, installed by install_vulcan."""
from __future__ import annotations

from luaskills_runtime.vulcan import (cache, fs, jsonlib, luaexec, process_exec, process_session,
                                      runtime)

# Installers run in this order; each adds its tables to `vulcan`.  Modules of later areas
# (process, managed io, runlua bridge) add themselves here.
INSTALLERS = (runtime.install, jsonlib.install, cache.install, fs.install, process_exec.install,
              process_session.install, luaexec.install)


def install_vulcan(vm) -> None:
    vulcan = vm.bridge.table(io=vm.bridge.table())
    vm.runtime.globals()[b"vulcan"] = vulcan
    for install in INSTALLERS:
        install(vm, vulcan)
