"""Which Lua engine the package runs on (luaskills_runtime.lua_engine): LuaJIT 2.1 where lupa ships
it, PUC Lua 5.1 where it does not, either one forced by LUASKILLS_LUA_ENGINE; chosen once per
process, so every VM, guard and compiled chunk of the process uses that one module."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from _engine_support import ENGINE, IS_LUAJIT, lupa_engine
from _process_support import child_env

from luaskills_runtime import HostOptions, LuaEngine, engine_info
from luaskills_runtime.lua_engine import ENGINE_ENV

IMPLEMENTATION = {"luajit21": "LuaJIT 2.1", "lua51": "Lua 5.1"}
# The guards each engine may run (luaskills_runtime.lua.guard_mechanism): PUC Lua's hooks are per
# coroutine, so lua51 runs the Lua-hook guard.
GUARDS = {"luajit21": ("jit-profile", "jit-off-hook"), "lua51": ("lua-hook",)}
HAS_LUAJIT = importlib.util.find_spec("lupa.luajit21") is not None
needs_luajit = pytest.mark.skipif(not HAS_LUAJIT, reason="lupa ships no lupa.luajit21 here")

# A child that reports its engine, runs code through run_lua and a runlua request that must time
# out (the guard), and prints one JSON line.  BLOCK names lupa engine modules whose import fails,
# as on a platform whose lupa wheel ships no such module.
CHILD = textwrap.dedent("""
    import json, sys
    blocked = set(sys.argv[1].split(",")) - {""}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name in blocked:
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, Block())
    import luaskills_runtime
    from luaskills_runtime import HostOptions, LuaEngine
    info = luaskills_runtime.engine_info()
    with LuaEngine(HostOptions()) as engine:
        version = engine.run_lua("return _VERSION .. (jit and (' ' .. jit.version) or '')")
        timed_out = engine.execute_runlua_request_json_inline(
            '{"code": "while true do end", "timeout_ms": 150}')
    print(json.dumps({"engine": info["engine"], "guard": info["guard"], "version": version,
                      "timed_out": "timed out after 150 ms" in timed_out,
                      "loaded": sorted(m for m in sys.modules if m.startswith(("lupa.lua", "lupa.luajit")))}))
""")


def run_child(blocked=(), **env):
    full_env = child_env()
    full_env.pop(ENGINE_ENV, None)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", CHILD, ",".join(blocked)], capture_output=True,
                          text=True, timeout=120, env=full_env)


def child_report(blocked=(), **env):
    done = run_child(blocked, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_this_process_runs_the_engine_it_asked_for():
    wanted = os.environ.get(ENGINE_ENV, "").strip().lower() or "auto"
    assert ENGINE == (("luajit21" if HAS_LUAJIT else "lua51") if wanted == "auto" else wanted)
    assert lupa_engine is sys.modules[f"lupa.{ENGINE}"]
    assert IS_LUAJIT == (ENGINE == "luajit21")
    runtime = lupa_engine.LuaRuntime()
    assert runtime.lua_implementation.startswith(IMPLEMENTATION[ENGINE])
    assert engine_info()["engine"] == ENGINE
    with LuaEngine(HostOptions()) as engine:   # the VMs the package builds run on that engine
        assert engine.run_lua("return type(jit)") == ("table" if IS_LUAJIT else "nil")
        assert engine.run_lua("return _VERSION") == "Lua 5.1"


@pytest.mark.parametrize("forced", [pytest.param("luajit21", marks=needs_luajit), "lua51"])
def test_forced_engine_is_used_throughout(forced):
    report = child_report(**{ENGINE_ENV: forced})
    assert report["engine"] == forced
    if forced == "luajit21":
        assert report["version"].startswith("Lua 5.1 LuaJIT 2.1")
    else:
        assert report["version"] == "Lua 5.1"
    if sys.platform != "win32":   # (lupa's Windows modules export no Lua C API: lua-hook there)
        assert report["guard"] in GUARDS[forced]
    assert report["timed_out"]
    assert report["loaded"] == [f"lupa.{forced}"]   # the other engine is never loaded


def test_lua51_is_taken_automatically_when_lupa_ships_no_luajit():
    report = child_report(blocked=["lupa.luajit21"])
    assert report["engine"] == "lua51"
    assert report["version"] == "Lua 5.1"
    assert report["guard"] == "lua-hook"
    assert report["timed_out"]
    assert report["loaded"] == ["lupa.lua51"]


@needs_luajit
def test_luajit_is_preferred_when_both_exist():
    assert child_report()["engine"] == "luajit21"


def test_forcing_a_missing_engine_fails_on_import():
    done = run_child(blocked=["lupa.luajit21"], **{ENGINE_ENV: "luajit21"})
    assert done.returncode != 0
    assert "No module named 'lupa.luajit21'" in done.stderr


def test_unknown_engine_name_is_refused():
    done = run_child(**{ENGINE_ENV: "lua54"})
    assert done.returncode != 0
    assert "LUASKILLS_LUA_ENGINE must be one of luajit21, lua51 or auto, got 'lua54'" in done.stderr
