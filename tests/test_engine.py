"""LuaEngine basics: Lua gets no door into Python, run_lua semantics (which engine runs:
tests/lua/test_lua_engine.py)."""
import threading

import pytest

from _engine_support import luajit_only

import luaskills_runtime
from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError


def test_version_is_exposed():
    assert luaskills_runtime.__version__.count(".") == 2


@luajit_only
def test_engine_is_luajit(engine):
    version = engine.run_lua("return jit and jit.version")
    assert version.startswith("LuaJIT 2.1")
    assert engine.run_lua("return _VERSION") == "Lua 5.1"


def test_args_are_a_local(engine):
    assert engine.run_lua("return args.a + args.b", {"a": 2, "b": 40}) == 42
    assert engine.run_lua("return args", None) == []
    assert engine.run_lua("return args", 5) == []  # non-container args -> empty table


def test_first_return_value_only(engine):
    assert engine.run_lua("return 1, 2, 3") == 1
    assert engine.run_lua("local x = 1") is None


@pytest.mark.parametrize("code", [
    "return python",
    "return package.loaded.python",
    "return type(python_eval)",
])
def test_no_python_module(engine, code):
    assert engine.run_lua(code) in (None, "nil")


def test_python_objects_have_no_attributes(engine):
    # Every vulcan function is a Lua closure; even reaching the Python callback object through the
    # debug library gives no attribute access.
    code = """
    local f = vulcan.json.encode
    local up
    for i = 1, 10 do
      local name, value = debug.getupvalue(f, i)
      if type(value) == "userdata" then up = value end
    end
    local ok, err = pcall(function() return up.__globals__ end)
    return {ok = ok, has_up = up ~= nil}
    """
    with LuaEngine(HostOptions(policy="trusted")) as trusted:   # debug.getupvalue exists there
        result = trusted.run_lua(code)
    assert result["ok"] is False
    assert result["has_up"] is True


def test_runtime_error_message(engine):
    with pytest.raises(LuaSkillsError, match=r"^Lua run_lua error: run_lua:3: boom$"):
        engine.run_lua("error('boom')")
    with pytest.raises(LuaSkillsError, match=r"^Lua run_lua error: run_lua:3: .*expected near"):
        engine.run_lua("this is not lua")
    with pytest.raises(LuaSkillsError, match="Cannot convert Lua function to JSON"):
        engine.run_lua("return print")


def test_error_objects_that_are_not_strings(engine):
    with pytest.raises(LuaSkillsError, match=r"^Lua run_lua error: table: 0x"):
        engine.run_lua("error({})")
    with pytest.raises(LuaSkillsError, match=r"^Lua run_lua error: custom$"):
        engine.run_lua("error(setmetatable({}, {__tostring = function() return 'custom' end}))")


def test_request_scope_is_reset_between_requests(engine):
    engine.run_lua("vulcan.context.request.x = 1; vulcan.runtime.internal.tool_name = 'x'; __runlua_args = 7")
    assert engine.run_lua("return vulcan.context.request") == []
    assert engine.run_lua("return vulcan.runtime.internal.tool_name") is None
    assert engine.run_lua("return vulcan.runtime.internal.luaexec_active") is False
    assert engine.run_lua("return vulcan.context.tool_config") == []


def test_vm_with_broken_namespace_is_discarded():
    with LuaEngine(HostOptions(main_pool=(1, 1, 60))) as engine:
        engine.run_lua("MARK = 1")
        assert engine.run_lua("return MARK") == 1  # same VM reused
        with pytest.raises(LuaSkillsError, match="vulcan.context is not a table"):
            engine.run_lua("vulcan.context = nil return 1")
        assert engine.run_lua("return MARK") is None  # a fresh VM
        assert engine.run_lua("return type(vulcan.context)") == "table"


def test_main_vm_keeps_native_io(engine):
    assert engine.run_lua("return io.type(io.stdout)") == "file"


def test_concurrent_run_lua_uses_bounded_pool():
    with LuaEngine(HostOptions(main_pool=(1, 2, 60))) as engine:
        errors = []

        def work(n):
            try:
                for i in range(20):
                    assert engine.run_lua("return args.n * 2", {"n": n + i}) == 2 * (n + i)
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert engine._main_pool.stats()["total"] <= 2
        assert engine._main_pool.created <= 2


def test_run_lua_grows_the_pool_to_max_then_waits_for_a_free_vm():
    from _lease_support import wait_until

    with LuaEngine(HostOptions(main_pool=(1, 2, 60))) as engine:
        pool = engine._main_pool
        first, second = pool.acquire(), pool.acquire()   # grows from min 1 to max 2
        assert pool.stats()["total"] == 2 and pool.created == 2
        got = []
        worker = threading.Thread(target=lambda: got.append(engine.run_lua("return 7")))
        worker.start()
        assert wait_until(lambda: len(pool._cond._waiters) == 1)   # run_lua is waiting
        assert got == []
        pool.release(first)
        worker.join(10)
        assert got == [7]
        assert pool.created == 2   # it ran on the released VM, no third one
        pool.release(second)


def test_closed_engine_refuses_work():
    engine = LuaEngine()
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(LuaSkillsError, match="closed"):
        engine.run_lua("return 1")


def test_invalid_default_encoding_fails_engine_creation():
    with pytest.raises(LuaSkillsError, match="unsupported text encoding `klingon`"):
        LuaEngine(HostOptions(default_text_encoding="klingon"))
    LuaEngine(HostOptions(default_text_encoding="  ")).close()  # blank = platform default


def test_code_must_be_a_string(engine):
    with pytest.raises(LuaSkillsError, match="code must be a string"):
        engine.run_lua(b"return 1")


def test_pool_config_is_normalised():
    options = HostOptions(main_pool=(0, -3, 0), runlua_pool=(5, 2, 9))
    assert options.main_pool == (1, 1, 1)
    assert options.runlua_pool == (5, 5, 9)


def test_callbacks_building_large_values_near_the_memory_cap_do_not_crash():
    """A vulcan callback that builds a big table close to the cap must not hit the cap inside
    lupa's unprotected API calls; the request fails or succeeds cleanly and the VM stays usable."""
    with LuaEngine(HostOptions(max_memory_bytes=24_000_000)) as engine:
        report = engine.execute_runlua_request_inline({
            "code": "local keep = string.rep('x', 20e6) "
                    "local t = vulcan.json.decode('[' .. string.rep('1,', 3e5) .. '1]') return #t",
            "timeout_ms": 10000})
        assert report.startswith("# Runtime Execution")
        assert "## Status\nSUCCESS" in report or "memory" in report
        assert engine.execute_runlua_request_inline({"code": "return 7"}).endswith("```json\n7\n```")
