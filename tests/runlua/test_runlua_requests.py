"""runlua requests: parsing and request errors, the request environment, lua.exec, pool use."""
import json
import os
import threading

import pytest

from _engine_support import IS_LUAJIT, luajit_only

from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError


@pytest.fixture(scope="module")
def engine():
    with LuaEngine(HostOptions(runlua_pool=(1, 4, 60))) as eng:
        yield eng


def returned(report):
    """The returned-value blocks of a SUCCESS report as (format, content) pairs."""
    assert report.startswith("# Runtime Execution Result\n"), report
    blocks = report.split("## Returned Values\n", 1)[1].split("\n\n")
    values = []
    for block in blocks:
        _, fence, rest = block.split("\n", 2)
        values.append((fence[3:], rest[: -len("\n```")]))
    return values


def error_text(report):
    assert report.startswith("# Runtime Execution Error\n"), report
    return report.split("## Error\n```text\n", 1)[1].split("\n```", 1)[0]


# ---- request errors (raised, never rendered) ---------------------------------------------------

@pytest.mark.parametrize("text, detail", [
    ("", "EOF while parsing a value at line 1 column 0"),
    ("{", "EOF while parsing an object at line 1 column 1"),
    ('{"code": "x"', "EOF while parsing an object at line 1 column 12"),
    ('{"code": ', "EOF while parsing a value at line 1 column 9"),
    ("{} x", "trailing characters at line 1 column 4"),
    ("nope", "expected value at line 1 column 1"),
    ("5", "invalid type: integer `5`, expected struct RunLuaExecRequest"),
    ("null", "invalid type: null, expected struct RunLuaExecRequest"),
    ('"s"', 'invalid type: string "s", expected struct RunLuaExecRequest'),
    ('{"task": 5}', "invalid type: integer `5`, expected a string"),
    ('{"task": null}', "invalid type: null, expected a string"),
    ('{"code": true}', "invalid type: boolean `true`, expected a string"),
    ('{"file": []}', "invalid type: sequence, expected a string"),
    ('{"caller_tool_name": {}}', "invalid type: map, expected a string"),
    ('{"timeout_ms": -1}', "invalid value: integer `-1`, expected u64"),
    ('{"timeout_ms": 1.5}', "invalid type: floating point `1.5`, expected u64"),
    ('{"timeout_ms": 100.0}', "invalid type: floating point `100.0`, expected u64"),
    ('{"timeout_ms": "100"}', 'invalid type: string "100", expected u64'),
    ('{"timeout_ms": null}', "invalid type: null, expected u64"),
    ('[1, 2, 3, 4, 5, 6, 7]',
     "invalid length 7, expected struct RunLuaExecRequest with 6 elements"),
])
def test_invalid_request_json(engine, text, detail):
    with pytest.raises(LuaSkillsError) as info:
        engine.execute_runlua_request_json_inline(text)
    assert str(info.value) == f"Invalid luaexec request JSON: {detail}"


def test_request_json_must_be_text(engine):
    with pytest.raises(LuaSkillsError, match="^Invalid luaexec request JSON: "):
        engine.execute_runlua_request_json_inline(12)


@pytest.mark.parametrize("request_data, message", [
    ({"code": "return 1", "file": "x.lua"}, "luaexec accepts either code or file, but not both"),
    ({}, "luaexec requires code or file"),
    ({"code": " \n\t ", "file": "  "}, "luaexec requires code or file"),
    ({"code": None, "file": None}, "luaexec requires code or file"),
    ({"code": "return 1", "timeout_ms": 0}, "luaexec timeout_ms must be greater than 0"),
    ({"timeout_ms": 0}, "luaexec timeout_ms must be greater than 0"),
    ({"file": "table: 0x55aa"}, "luaexec: file looks like a coerced Lua object string "
                                "`table: 0x55aa`"),
])
def test_request_errors_are_raised(engine, request_data, message):
    with pytest.raises(LuaSkillsError) as info:
        engine.execute_runlua_request_json_inline(json.dumps(request_data))
    assert str(info.value) == message
    with pytest.raises(LuaSkillsError) as info:
        engine.execute_runlua_request_inline(request_data)
    assert str(info.value) == message


def test_dict_twin_type_errors(engine):
    with pytest.raises(LuaSkillsError) as info:
        engine.execute_runlua_request_inline({"code": 5})
    assert str(info.value) == "Invalid luaexec request: invalid type: integer `5`, expected a string"


def test_missing_file_error_text(engine, tmp_path):
    path = tmp_path / "missing.lua"
    with pytest.raises(LuaSkillsError) as info:
        engine.execute_runlua_request_inline({"file": str(path)})
    detail = "No such file or directory (os error 2)"
    assert str(info.value) == f"Failed to read luaexec file {path}: {detail}: {detail}"


def test_directory_and_bad_utf8_file_errors(engine, tmp_path):
    with pytest.raises(LuaSkillsError) as info:
        engine.execute_runlua_request_inline({"file": str(tmp_path)})
    assert str(info.value).endswith("Is a directory (os error 21): Is a directory (os error 21)")
    bad = tmp_path / "bad.lua"
    bad.write_bytes(b"return '\xff'")
    with pytest.raises(LuaSkillsError) as info:
        engine.execute_runlua_request_inline({"file": str(bad)})
    assert str(info.value) == (f"Failed to read luaexec file {bad}: stream did not contain valid "
                               "UTF-8: stream did not contain valid UTF-8")


def test_defaults_unknown_fields_and_positional_form(engine):
    report = engine.execute_runlua_request_json_inline(
        '{"code": "return 7", "unknown": [1, 2], "args": null}')
    assert returned(report) == [("json", "7")]
    report = engine.execute_runlua_request_json_inline('["my task", "return args.x", null, {"x": 3}]')
    assert "## Task\nmy task\n" in report and returned(report) == [("json", "3")]


def test_code_is_trimmed(engine):
    report = engine.execute_runlua_request_inline({"code": "\n\n  error('x')\n\n"})
    assert error_text(report) == 'runtime error: [string "luaexec"]:4: x'


# ---- the request environment -----------------------------------------------------------------

def test_runlua_environment(engine):
    report = engine.execute_runlua_request_inline({"code": """
        local internal, context = vulcan.runtime.internal, vulcan.context
        return {
          log = type(vulcan.runtime.log), put = type(vulcan.cache.put),
          get = type(vulcan.cache.get), delete = type(vulcan.cache.delete),
          lua_exec = type(vulcan.runtime.lua.exec), active = internal.luaexec_active,
          caller = internal.luaexec_caller_tool_name or "none",
          jit = type(jit) == "table" and tostring(jit.status()) or "absent",
          transport = context.request.transport_name, session = context.request.session_id,
          client = context.client_info.name, kind = context.client_info.kind,
          version = context.client_info.version, entry_file = context.entry_file or "none",
          pack = table.pack(1, nil, 3).n, unpack = select("#", table.unpack({1, 2})),
          io_managed = debug.getinfo(io.open, "S").what, same_io = package.loaded.io == io,
          preload = package.preload.io() == io, cwd = vulcan.runtime.cwd(),
        }""", "caller_tool_name": "caller-tool"})
    values = json.loads(returned(report)[0][1])
    assert values == {
        "log": "nil", "put": "nil", "get": "nil", "delete": "nil", "lua_exec": "nil",
        "active": True, "caller": "caller-tool", "transport": "luaexec_call",
        # the JIT is on exactly when the JIT-on guard runs (issue 18); lua51 has no jit at all
        "jit": (str(engine.guard_mechanism == "jit-profile").lower() if IS_LUAJIT
                else "absent"),
        "session": "luaexec-call-internal", "client": "luaexec_call", "kind": "runtime",
        "version": "internal-runtime", "entry_file": "none", "pack": 3, "unpack": 2,
        "io_managed": "Lua", "same_io": True, "preload": True, "cwd": os.getcwd(),
    }


@luajit_only
def test_jit_cannot_be_turned_back_on(jit_off_hook):
    # the jit-off-hook guard's own rule (the jit-profile guard keeps the JIT on)
    with LuaEngine(HostOptions(runlua_pool=(1, 1, 60))) as engine:
        assert "jit.on is not available here" in error_text(
            engine.execute_runlua_request_inline({"code": "jit.on()"}))
        report = engine.execute_runlua_request_inline({"code": "return (jit.status())"})
        assert report.endswith("```json\nfalse\n```")


def test_os_exit_does_not_end_the_host(engine):
    assert error_text(engine.execute_runlua_request_inline({"code": "os.exit(3)"})) == (
        'runtime error: [string "luaexec"]:4: os.exit is not available in luaexec: '
        'return from the code instead')


def test_huge_timeout_is_accepted(engine, tmp_path):
    script = tmp_path / "s.lua"
    script.write_text("return 'ok'")
    for request in ({"code": "return 'ok'"}, {"file": str(script)}):
        report = engine.execute_runlua_request_inline({**request, "timeout_ms": 2**64 - 1})
        assert report.endswith("```text\nok\n```")


def test_print_is_captured_not_written(engine, capfd):
    report = engine.execute_runlua_request_inline({"code": 'print("captured line") return 1'})
    assert "captured line" in report
    out, err = capfd.readouterr()
    assert "captured line" not in out + err


def test_main_vm_keeps_native_io_and_runtime_lua_exec(engine):
    assert engine.run_lua("return debug.getinfo(io.open, 'S').what") == "C"
    assert engine.run_lua("return type(vulcan.runtime.lua.exec)") == "function"


def test_runtime_lua_exec_bridge(engine):
    report = engine.run_lua("""
        vulcan.runtime.internal.tool_name = "  outer_tool  "
        return vulcan.runtime.lua.exec({task = "nested", code = [[
            print("in runlua")
            return vulcan.runtime.internal.luaexec_caller_tool_name, args.n * 2]],
          args = {n = 21}})""")
    assert report.startswith("# Runtime Execution Result\n\n## Task\nnested\n")
    assert "## Printed Output\n```text\nin runlua\n```" in report
    assert returned(report) == [("text", "outer_tool"), ("json", "42")]


def test_runtime_lua_exec_blank_tool_name_is_no_caller(engine):
    report = engine.run_lua("""
        vulcan.runtime.internal.tool_name = "   "
        return vulcan.runtime.lua.exec({code = "return vulcan.runtime.internal.luaexec_caller_tool_name"})""")
    assert returned(report) == [("json", "null")]


@pytest.mark.parametrize("call, message", [
    ('vulcan.runtime.lua.exec("return 1")', "runtime.lua.exec: input must be a table, got string"),
    ("vulcan.runtime.lua.exec()", "runtime.lua.exec: input must be a table, got nil"),
    ("vulcan.runtime.lua.exec({code = 5})",
     "luaexec input is invalid: invalid type: integer `5`, expected a string"),
    ("vulcan.runtime.lua.exec({code = 'x', timeout_ms = -3})",
     "luaexec input is invalid: invalid value: integer `-3`, expected u64"),
    ("vulcan.runtime.lua.exec({})", "luaexec requires code or file"),
    ("vulcan.runtime.lua.exec({code = 'return 1', timeout_ms = 0})",
     "luaexec timeout_ms must be greater than 0"),
    ("vulcan.runtime.lua.exec({code = 'return 1', file = 'f.lua'})",
     "luaexec accepts either code or file, but not both"),
])
def test_runtime_lua_exec_errors(engine, call, message):
    code = f"local ok, err = pcall(function() return {call} end) return err"
    assert engine.run_lua(code) == message


def test_runlua_failure_is_a_report_not_an_error_for_lua_exec(engine):
    report = engine.run_lua("return vulcan.runtime.lua.exec({code = 'error(\"inner\", 0)'})")
    assert error_text(report) == "runtime error: inner"


# ---- pool use -----------------------------------------------------------------------------------

def test_sequential_requests_reuse_one_vm():
    with LuaEngine(HostOptions(runlua_pool=(1, 4, 60))) as eng:
        for index in range(10):
            report = eng.execute_runlua_request_inline({"code": f"return {index}"})
            assert returned(report) == [("json", str(index))]
        stats = eng.runlua_service.pool.stats()
        assert stats["created"] == 1 and stats["total"] == 1


def test_concurrent_requests_8_threads_x_20():
    results = {}
    errors = []
    with LuaEngine(HostOptions(runlua_pool=(1, 4, 60))) as eng:
        def worker(thread_no):
            try:
                for index in range(20):
                    report = eng.execute_runlua_request_inline({
                        "code": "leaked = args.id; local s = 0 for i = 1, 2000 do s = s + i end "
                                "print(args.id) return args.id, s",
                        "args": {"id": f"{thread_no}-{index}"}})
                    results[(thread_no, index)] = report
            except Exception as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert len(results) == 160
        for (thread_no, index), report in results.items():
            ident = f"{thread_no}-{index}"
            assert returned(report) == [("text", ident), ("json", "2001000")]
            assert f"## Printed Output\n```text\n{ident}\n```" in report
        stats = eng.runlua_service.pool.stats()
        assert 1 <= stats["created"] <= 4 and stats["total"] <= 4
        # no request saw another one's global
        report = eng.execute_runlua_request_inline({"code": "return leaked"})
        assert returned(report) == [("json", "null")]


def test_closed_engine_rejects_requests():
    eng = LuaEngine()
    eng.close()
    with pytest.raises(LuaSkillsError, match="LuaEngine is closed"):
        eng.execute_runlua_request_inline({"code": "return 1"})
