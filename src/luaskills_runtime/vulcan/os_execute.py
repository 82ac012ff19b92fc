"""Managed ``os.execute(command)``: LuaJIT's own runs system(), which blocks in C where neither
the guard nor a cancel reaches it, and leaves the child running when the request ends.  Here the
command runs through luaskills_runtime.process.shell_status: bounded by the guarded run's
deadline and cancel, its tree tracked by the VM (killed when the run is stopped or the VM
closes).  The dialect's wrapper (lua/chunks/compat52.lua) keeps turning the raw status into
``true|nil, "exit"|"signal", code``: only the system() call under it is replaced.  Under the
``untrusted`` policy os.execute stays the policy's refusal (lua/chunks/policy.lua).
"""
from __future__ import annotations

import os

from luaskills_runtime.lua.chunk_files import read_chunk
from luaskills_runtime.process.shell_status import run_shell_status

_SOURCE = read_chunk("luaskills_runtime.vulcan", "os_execute.lua")


def install(vm, vulcan) -> None:
    if os.name != "posix":
        return   # Windows keeps LuaJIT's own (system() through cmd.exe)
    if vm.policy.untrusted:
        return   # no process creation: the policy's refusal stays os.execute

    def raw_execute(command):
        vm.policy.check_process("os.execute")
        if isinstance(command, (int, float)):
            command = str(command).encode()
        return run_shell_status(command, vm.current_limits(),
                                lambda tree: vm.track(tree, one_shot=True))

    # The chunk reaches the dialect wrapper's upvalue through the debug library as the policy
    # found it (default removes getupvalue / setupvalue from Lua code's debug).
    vm.runtime.execute(_SOURCE, vm.bridge.function("os.execute", raw_execute),
                       vm.policy.full_debug)
