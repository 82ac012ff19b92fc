"""`vulcan.process.exec(spec)` and its alias `vulcan.exec` (SPEC 7): one-shot process execution.

The request is checked with the reference's rules and texts (``process.exec: ...`` errors raised
in Lua); the run itself happens without the GIL in the native process core and always yields a
result table, also for spawn failures and timeouts.  While it runs the child tree is tracked by
the VM, so closing the VM (or the engine) from another thread ends it.
"""
from __future__ import annotations

import dataclasses

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.process.exec_request import FN_NAME, parse_lua_exec_spec, result_to_lua
from luaskills_runtime.process.exec_run import run_exec_request


def install(vm, vulcan) -> None:
    runtime = vm.runtime
    default_mode = vm.default_text_mode

    def process_exec(spec=None, *_ignored):
        vm.policy.check_process(f"vulcan.{FN_NAME}")
        request = parse_lua_exec_spec(spec, default_mode)
        limits = vm.current_limits()
        if limits is None:
            result = run_exec_request(request, track=track_one_shot)
        else:
            # The run's deadline bounds the exec too; past it (or cancelled) the run's error.
            wanted = request.timeout_ms
            request = dataclasses.replace(request, timeout_ms=limits.cap_ms(wanted))
            result = run_exec_request(request, track=track_one_shot)
            limits.raise_if_over(wanted is None or request.timeout_ms < wanted)
        cap = vm.max_memory
        if cap:   # the captured output would land in the VM: it counts against the cap
            size = sum(len(result.get(key) or "") for key in ("stdout", "stderr"))
            if size > cap:
                raise LuaSkillsError(f"{FN_NAME}: captured output of {size} bytes exceeds the "
                                     f"memory limit of {cap} bytes")
        return result_to_lua(runtime, result)

    def track_one_shot(run):
        vm.track(run, one_shot=True)   # a stopped run kills its exec tree at once

    exec_fn = vm.bridge.function(FN_NAME, process_exec)
    process = vulcan[b"process"]
    if process is None:   # whichever process area installs first creates the table
        process = vm.bridge.table()
        vulcan[b"process"] = process
    process[b"exec"] = exec_fn
    vulcan[b"exec"] = exec_fn
