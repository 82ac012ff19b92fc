"""luaskills engine options (`{"pool_config", "host_options"}` of engine_new_json) -> HostOptions.

Only what this runtime uses is taken over: the pool sizes, the temp/resources/system_lua_lib
folders and the managed-io switch.  The other host options configure skill loading, databases and
downloads, which this runtime does not do; they are checked for shape and kept in
HostOptions.extra.  Like the 0.4.5+ core (and the 0.4.6 SDK's examples expect), a given
`runtime_root` makes `<runtime_root>/system_lua_lib` the system_lua_lib folder unless
`system_lua_lib_dir` names one.
"""
from __future__ import annotations

import os

from luaskills_runtime.options import HostOptions


def _pool(config: dict) -> tuple:
    return (config["min_size"], config["max_size"], config["idle_ttl_secs"])


def host_options_from(options: dict) -> HostOptions:
    """`options` as decoded by requests.ENGINE_OPTIONS."""
    host = options["host_options"]
    pool = _pool(options["pool_config"])
    runlua_pool = host["runlua_pool_config"]
    system_lua_lib_dir = host["system_lua_lib_dir"]
    if not system_lua_lib_dir and host["runtime_root"]:
        system_lua_lib_dir = os.path.join(host["runtime_root"], "system_lua_lib")
    return HostOptions(
        enable_managed_io_compat=host["capabilities"]["enable_managed_io_compat"],
        system_lua_lib_dir=system_lua_lib_dir or None,
        main_pool=pool,
        runlua_pool=_pool(runlua_pool) if runlua_pool is not None else pool,
        temp_dir=host["temp_dir"] or None,
        resources_dir=host["resources_dir"] or None,
        extra={"host_options": host},
    )
