"""vulcan.process.session from Lua: method calls, result tables, reference error texts, teardown."""
import sys

import pytest

from _process_support import kill_if_alive, wait_gone

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX commands (sh, cat)")


def lua_error(engine, call):
    """The message of an error raised by `call` (a Lua expression), caught with pcall."""
    return engine.run_lua(f"local ok, err = pcall(function() return {call} end)\n"
                          "assert(not ok, 'expected an error')\nreturn err")


def test_round_trip_with_method_calls(engine):
    result = engine.run_lua("""
        local s = vulcan.process.session.open{program = "cat", args = {}}
        assert(s:write("ping ", 7, " ", 2.5, " ", true, ";") == true)
        local r = s:read{timeout_ms = 5000, until_text = ";"}
        local status = s:status()
        local final = s:close{timeout_ms = 2000}
        return {read = r, status = status, final = final, kind = type(s), pid = type(s.pid)}
    """)
    assert result["read"] == {"stdout": "ping 7 2.5 true;", "stderr": "",
                              "stdout_encoding": "utf-8", "stderr_encoding": "utf-8",
                              "stdout_lossy": False, "stderr_lossy": False, "timed_out": False}
    assert result["status"] == {"running": True, "exited": False}   # success/code are nil
    assert result["final"] == {"running": False, "exited": True, "success": True, "code": 0}
    assert result["kind"] == "userdata"


def test_defaults_and_reads_after_close(engine):
    result = engine.run_lua("""
        local s = vulcan.process.session.open{program = "sh",
            args = {"-c", "echo out; echo err >&2; exit 4"}}
        local final = s:close()
        local r = s:read()
        return {final = final, out = r.stdout, err = r.stderr, again = s:close(), killed = s:kill()}
    """)
    assert result == {"final": {"running": False, "exited": True, "success": False, "code": 4},
                      "out": "out\n", "err": "err\n",
                      "again": {"running": False, "exited": True, "success": False, "code": 4},
                      "killed": True}


def test_lossy_output_reports_base64(engine):
    result = engine.run_lua(r"""
        local s = vulcan.process.session.open{program = "sh", args = {"-c", "printf '\\377'"}}
        local r = s:read{timeout_ms = 5000}
        s:close()
        return {r.stdout_lossy, r.stdout_base64}
    """)
    assert result == [True, "/w=="]


@pytest.mark.parametrize("call, message", [
    ("vulcan.process.session.open(5)", "process.session.open: spec must be a table, got number"),
    ("vulcan.process.session.open()", "process.session.open: spec must be a table, got nil"),
    ("vulcan.process.session.open('cat')", "process.session.open: spec must be a table, got string"),
    ("vulcan.process.session.open{}", "process.session.open: program must be a string, got nil"),
    ("vulcan.process.session.open{program = ''}", "process.session.open: program must not be empty"),
    ("vulcan.process.session.open{program = 'a\\0b'}",
     "process.session.open: program must not contain NUL bytes"),
    ("vulcan.process.session.open{program = '\\255'}", "process.session.open: program must be valid UTF-8"),
    ("vulcan.process.session.open{program = 'cat', args = 'x'}",
     "process.session.open: args must be an array table, got string"),
    ("vulcan.process.session.open{program = 'cat', args = {1}}",
     "process.session.open: args must be a string, got number"),
    ("vulcan.process.session.open{program = 'cat', args = {{}}}",
     "process.session.open: args must be a string, got table"),
    ("vulcan.process.session.open{program = 'cat', cwd = ' '}", "process.session.open: cwd must not be empty"),
    ("vulcan.process.session.open{program = 'cat', encoding = 'klingon'}",
     "process.session.open: unsupported text encoding `klingon`"),
    ("vulcan.process.session.open{program = 'cat', stdin_encoding = print}",
     "process.session.open: stdin_encoding must be a string, got function"),
    ("vulcan.process.session.open{program = 'cat', buffer_limit_bytes = 0}",
     "process.session.open: buffer_limit_bytes must be a positive number, got number"),
    ("vulcan.process.session.open{program = 'cat', buffer_limit_bytes = '5'}",
     "process.session.open: buffer_limit_bytes must be a positive number, got string"),
    ("vulcan.process.session.open{program = 'luaskills-no-such-program'}",
     "process.session.open: posix_spawn: No such file or directory"),
])
def test_open_errors(engine, call, message):
    assert lua_error(engine, call) == message


@pytest.mark.parametrize("call, message", [
    ("s:read('x')", "process.session.read: options must be a table, got string"),
    ("s:read(5)", "process.session.read: options must be a table, got number"),
    ("s:read{timeout_ms = 0}", "process.session.read: timeout_ms must be a positive number, got number"),
    ("s:read{timeout_ms = true}", "process.session.read: timeout_ms must be a positive number, got boolean"),
    ("s:read{max_bytes = {}}", "process.session.read: max_bytes must be a positive number, got table"),
    ("s:read{until_text = ''}", "process.session.read: until_text must not be empty"),
    ("s:read{until_text = 5}", "process.session.read: until_text must be a string, got number"),
    ("s:read{until_text = '\\255'}", "process.session.read: until_text must be valid UTF-8"),
    ("s:close('x')", "process.session.close: options must be a table, got string"),
    ("s:close{timeout_ms = -1}", "process.session.close: timeout_ms must be a positive number, got number"),
    ("s:write({})", "process.session.write: unsupported value table"),
    ("s:write('ok', nil)", "process.session.write: unsupported value nil"),
    ("s:write('\\255')", "process.session.write: string must be valid UTF-8"),
    ("s.read{timeout_ms = 5}",
     "process.session.read: expected a session, call it as session:read(...)"),
])
def test_method_errors(engine, call, message):
    engine.run_lua("session_under_test = vulcan.process.session.open{program = 'cat'}")
    try:
        assert lua_error(engine, call.replace("s:", "session_under_test:")
                         .replace("s.", "session_under_test.")) == message
    finally:
        engine.run_lua("session_under_test:kill(); session_under_test = nil")


def test_write_after_close_reports_closed_stdin(engine):
    message = engine.run_lua("""
        local s = vulcan.process.session.open{program = "cat"}
        s:close()
        local ok, err = pcall(s.write, s, "late")
        return err
    """)
    assert message == "process.session.write: stdin is closed"


def test_collected_session_takes_its_tree_down(engine):
    grandchild = int(engine.run_lua("""
        local s = vulcan.process.session.open{program = "sh",
            args = {"-c", "sleep 30 & echo \\"$! ;\\"; wait"}}
        local pid = s:read{timeout_ms = 5000, until_text = ";"}.stdout:match("%d+")
        s = nil
        collectgarbage(); collectgarbage()
        return pid
    """))
    try:
        assert wait_gone(grandchild)
    finally:
        kill_if_alive(grandchild)


def test_engine_close_kills_open_sessions():
    from luaskills_runtime import LuaEngine

    engine = LuaEngine()
    try:
        grandchild = int(engine.run_lua("""
            keep = vulcan.process.session.open{program = "sh",
                args = {"-c", "sleep 30 & echo \\"$! ;\\"; wait"}}
            return keep:read{timeout_ms = 5000, until_text = ";"}.stdout:match("%d+")
        """))
    finally:
        engine.close()
    try:
        assert wait_gone(grandchild)
    finally:
        kill_if_alive(grandchild)
