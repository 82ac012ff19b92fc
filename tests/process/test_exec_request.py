"""exec request validation (both surfaces) and result building; no child process is started."""
import math

from _engine_support import lupa_engine
import pytest
from hypothesis import given, strategies as st

from luaskills_runtime import LuaEngine, LuaSkillsError
from luaskills_runtime.process.exec_request import (RESULT_FIELDS, exec_error_result, exec_result,
                                            parse_lua_exec_spec, parse_python_exec_args,
                                            shell_launcher)
from luaskills_runtime._ref.rust import rust_float as rust_float_text
from luaskills_runtime.process.exec_run import exec_command
from luaskills_runtime.text import TextMode

F = "process.exec"
X = "vulcan.process.exec, "   # the call prefix of most cases


@pytest.fixture(scope="module")
def lua_engine():
    with LuaEngine() as engine:
        yield engine


def pcall_message(engine, call):
    return engine.run_lua(f"local ok, err = pcall({call}) assert(not ok, 'no error') return err")


# Every rule of the reference's parser, in its wording.
LUA_CASES = [
    # the spec itself
    ("vulcan.process.exec", f"{F}: expected a string or table, got nil"),
    (X + "5", f"{F}: expected a string or table, got number"),
    (X + "true", f"{F}: expected a string or table, got boolean"),
    (X + "print", f"{F}: expected a string or table, got function"),
    (X + "coroutine.create(function() end)", f"{F}: expected a string or table, got thread"),
    (X + "newproxy()", f"{F}: expected a string or table, got userdata"),
    (X + "''", f"{F}: command must not be empty"),
    (X + "' \\t\\n'", f"{F}: command must not be empty"),
    (X + "'echo a\\0b'", f"{F}: command must not contain NUL bytes"),
    (X + "'echo \\255'", f"{F}: command must be a valid UTF-8 string"),
    # command / program
    (X + "{command=5}", f"{F}: command must be a string, got number"),
    (X + "{command=''}", f"{F}: command must not be empty"),
    (X + "{command='a\\0'}", f"{F}: command must not contain NUL bytes"),
    (X + "{program={}}", f"{F}: program must be a string, got table"),
    (X + "{program='  '}", f"{F}: program must not be empty"),
    (X + "{program='\\200x'}", f"{F}: program must be a valid UTF-8 string"),
    # args
    (X + "{program='x', args='a'}", f"{F}: args must be a table, got string"),
    (X + "{program='x', args=5}", f"{F}: args must be a table, got number"),
    (X + "{program='x', args={{}}}", f"{F}: args[1] must be a string: table"),
    (X + "{program='x', args={'a', print}}",
     f"{F}: args[2] must be a string: function"),
    (X + "{program='x', args={0/0}}", f"{F}: args[1] must be a finite number"),
    (X + "{program='x', args={'a', 'b', -1/0}}",
     f"{F}: args[3] must be a finite number"),
    (X + "{program='x', args={'a\\0'}}",
     f"{F}: args[1] must not contain NUL bytes"),
    (X + "{program='x', args={'\\255'}}",
     f"{F}: args[1] must be a valid UTF-8 string"),
    # cwd
    (X + "{program='x', cwd=''}", f"{F}: cwd must not be empty"),
    (X + "{program='x', cwd=5}", f"{F}: cwd must be a string, got number"),
    (X + "{program='x', cwd='a\\0'}", f"{F}: cwd must not contain NUL bytes"),
    # env
    (X + "{program='x', env='A=1'}", f"{F}: env must be a table, got string"),
    (X + "{program='x', env={'a'}}", f"{F}: env.<key> must be a string, got number"),
    (X + "{program='x', env={[true]='a'}}",
     f"{F}: env.<key> must be a string, got boolean"),
    (X + "{program='x', env={[' ']='a'}}", f"{F}: env.<key> must not be empty"),
    (X + "{program='x', env={['A\\0']='a'}}",
     f"{F}: env.<key> must not contain NUL bytes"),
    (X + "{program='x', env={A={}}}", f"{F}: env.A must be a string: table"),
    (X + "{program='x', env={A=0/0}}", f"{F}: env.A must be a finite number"),
    (X + "{program='x', env={A='x\\0'}}", f"{F}: env.A must not contain NUL bytes"),
    # stdin
    (X + "{program='x', stdin=5}", f"{F}: stdin must be a string, got number"),
    (X + "{program='x', stdin={}}", f"{F}: stdin must be a string, got table"),
    (X + "{program='x', stdin='a\\0b'}", f"{F}: stdin must not contain NUL bytes"),
    (X + "{program='x', stdin='\\255'}", f"{F}: stdin must be a valid UTF-8 string"),
    # timeout_ms
    *[(X + f"{{program='x', timeout_ms={value}}}",
       f"{F}: timeout_ms must be a positive integer in milliseconds: {kind}")
      for value, kind in [("0", "number"), ("-5", "number"), ("1.5", "number"), ("0/0", "number"),
                          ("1/0", "number"), ("'100'", "string"), ("true", "boolean"),
                          ("{}", "table")]],
    # shell
    (X + "{program='x', shell='no'}",
     f"{F}: shell must be a boolean when provided: string"),
    (X + "{command='x', shell=0}", f"{F}: shell must be a boolean when provided: number"),
    # encodings
    *[(X + f"{{program='x', {name}='klingon'}}",
       f"{F}: {name}: unsupported text encoding `klingon`")
      for name in ("encoding", "stdout_encoding", "stderr_encoding", "stdin_encoding")],
    *[(X + f"{{program='x', {name}=' '}}", f"{F}: {name} must not be empty")
      for name in ("encoding", "stdout_encoding", "stderr_encoding", "stdin_encoding")],
    (X + "{program='x', encoding=8}", f"{F}: encoding must be a string, got number"),
    (X + "{program='x', encoding=' UTF 8 '}",
     f"{F}: encoding: unsupported text encoding ` UTF 8 `"),
    # modes
    (X + "{command='x', shell=false}",
     f"{F}: shell=false cannot be used with command mode"),
    (X + "{command='x', args={'a'}}", f"{F}: args is only supported with program mode"),
    (X + "{program='x', shell=true}", f"{F}: shell=true requires command mode"),
    (X + "{command='x', program='y'}",
     f"{F}: command and program are mutually exclusive"),
    (X + "{}", f"{F}: expected a string command or a table with command"),
    (X + "{args={'a'}, shell=true}",
     f"{F}: expected a string command or a table with command"),
    # order: fields in the reference's order, mode rules last
    (X + "{command=1, program=2}", f"{F}: command must be a string, got number"),
    (X + "{program=2, args=3}", f"{F}: program must be a string, got number"),
    (X + "{args=3, cwd=4}", f"{F}: args must be a table, got number"),
    (X + "{cwd=4, env=5}", f"{F}: cwd must be a string, got number"),
    (X + "{env=5, stdin=6}", f"{F}: env must be a table, got number"),
    (X + "{stdin=6, timeout_ms=0}", f"{F}: stdin must be a string, got number"),
    (X + "{timeout_ms=0, shell=1}",
     f"{F}: timeout_ms must be a positive integer in milliseconds: number"),
    (X + "{shell=1, encoding='?'}", f"{F}: shell must be a boolean when provided: number"),
    (X + "{encoding='?', stdout_encoding='!'}",
     f"{F}: encoding: unsupported text encoding `?`"),
    (X + "{stdout_encoding='!', stderr_encoding='#'}",
     f"{F}: stdout_encoding: unsupported text encoding `!`"),
    (X + "{stderr_encoding='#', stdin_encoding='%'}",
     f"{F}: stderr_encoding: unsupported text encoding `#`"),
    (X + "{command='x', program='y', stdin_encoding='%'}",
     f"{F}: stdin_encoding: unsupported text encoding `%`"),
    (X + "{command='x', program='y', shell=false}",
     f"{F}: command and program are mutually exclusive"),
    (X + "{command='x', shell=false, args={'a'}}",
     f"{F}: shell=false cannot be used with command mode"),
    # the alias is the same function
    ("vulcan.exec, {command='x', program='y'}", f"{F}: command and program are mutually exclusive"),
    ("vulcan.exec, 42", f"{F}: expected a string or table, got number"),
]


@pytest.mark.parametrize("call,message", LUA_CASES)
def test_lua_validation_messages(lua_engine, call, message):
    assert pcall_message(lua_engine, call) == message


def test_coerced_cwd_is_rejected_before_mode_rules(lua_engine):
    got = lua_engine.run_lua(
        "local s = tostring({}) local ok, err = pcall(vulcan.exec, {cwd=s, command='a', "
        "program='b'}) return {err, s}")
    assert got[0] == f"{F}: cwd looks like a coerced Lua object string `{got[1]}`"


def test_args_are_read_raw_and_stop_at_the_first_hole(lua_engine):
    # An __index that answers every key must not make the reader loop for ever (mlua reads the
    # sequence raw); a hole ends the list, so the bad value after it is never looked at.
    runtime = lupa_engine.LuaRuntime(encoding=None)
    spec = runtime.eval("{program='x', args=setmetatable({'a', nil, {}}, "
                        "{__index=function() return 'more' end})}")
    request = parse_lua_exec_spec(spec, TextMode.UTF8)
    assert request.args == ("a",)


def lua_request(source, default=TextMode.UTF8):
    runtime = lupa_engine.LuaRuntime(encoding=None)
    return parse_lua_exec_spec(runtime.eval(source), default)


def test_blank_means_rust_white_space():
    # U+001C..U+001F are not White_Space for Rust's trim, so they make a (strange) command;
    # U+3000 is, so it counts as empty.
    assert lua_request("{command='\\028'}").command == "\x1c"
    with pytest.raises(LuaSkillsError, match="command must not be empty"):
        lua_request("{command='\\227\\128\\128 '}")


def test_boolean_keys_are_not_list_items():
    assert lua_request("{program='x', args={[true]='no', [1.5]='no'}}").args == ()


def test_scalar_arguments_and_env_values_become_text():
    request = lua_request("{program='p', args={'', 1, -7, 2.5, true, false, 1e20, 1e-7, -0.0, "
                          "2^53, 0.1, -1.25e-5, 2^63}, env={N=3, F=0.5, B=true, S=''}}")
    assert request.args == ("", "1", "-7", "2.5", "true", "false", "100000000000000000000",
                            "0.0000001", "0", "9007199254740992", "0.1", "-0.0000125",
                            "9223372036854776000")
    assert request.env == {"N": "3", "F": "0.5", "B": "true", "S": ""}


def test_string_spec_is_shell_mode_with_defaults():
    request = parse_lua_exec_spec(b"echo hi", TextMode.LATIN1)
    assert request.command == "echo hi" and request.program is None
    assert request.argv() == (shell_launcher()[0], (shell_launcher()[1], "echo hi"))
    assert (request.cwd, request.env, request.stdin, request.timeout_ms) == (None, {}, None, None)
    assert {request.stdout_encoding, request.stderr_encoding, request.stdin_encoding} == {
        TextMode.LATIN1}


def test_encoding_fields_fall_back_to_encoding_then_default():
    request = lua_request("{program='p', encoding=' GBK ', stdout_encoding='Latin-1'}",
                          TextMode.BASE64)
    assert (request.stdout_encoding, request.stderr_encoding, request.stdin_encoding) == (
        TextMode.LATIN1, TextMode.GBK, TextMode.GBK)
    request = lua_request("{program='p', stdin_encoding='bytes'}", TextMode.GB18030)
    assert (request.stdout_encoding, request.stderr_encoding, request.stdin_encoding) == (
        TextMode.GB18030, TextMode.GB18030, TextMode.BASE64)


def test_accepted_shapes():
    assert lua_request("{command='x', shell=true}").command == "x"
    request = lua_request("{program='x', shell=false, args={'a', 'b'}, cwd='.', stdin='', "
                          "timeout_ms=2.0}")
    assert request.argv() == ("x", ("a", "b"))
    assert (request.cwd, request.stdin, request.timeout_ms) == (".", "", 2)
    assert lua_request("{program='x', timeout_ms=1e15}").timeout_ms == 10**15


# ---- the Python surface ------------------------------------------------------------------------

PY_CASES = [
    (dict(), f"{F}: expected a string command or a table with command"),
    (dict(command=""), f"{F}: command must not be empty"),
    (dict(command="a\0"), f"{F}: command must not contain NUL bytes"),
    (dict(command="\udc80"), f"{F}: command must be a valid UTF-8 string"),
    (dict(program="x", args=[{}]), f"{F}: args[1] must be a string: table"),
    (dict(program="x", args=["a", None]), f"{F}: args[2] must be a string: nil"),
    (dict(program="x", args=[math.nan]), f"{F}: args[1] must be a finite number"),
    (dict(program="x", cwd=""), f"{F}: cwd must not be empty"),
    (dict(program="x", env="A=1"), f"{F}: env must be a table, got string"),
    (dict(program="x", env=["a"]), f"{F}: env.<key> must be a string, got number"),
    (dict(program="x", env={1: "a"}), f"{F}: env.<key> must be a string, got number"),
    (dict(program="x", env={"A": object()}), f"{F}: env.A must be a string: userdata"),
    (dict(program="x", stdin=5), f"{F}: stdin must be a string, got number"),
    (dict(program="x", stdin="a\0"), f"{F}: stdin must not contain NUL bytes"),
    (dict(program="x", timeout_ms=0),
     f"{F}: timeout_ms must be a positive integer in milliseconds: number"),
    (dict(program="x", timeout_ms=True),
     f"{F}: timeout_ms must be a positive integer in milliseconds: boolean"),
    (dict(program="x", timeout_ms="5"),
     f"{F}: timeout_ms must be a positive integer in milliseconds: string"),
    (dict(program="x", timeout_ms=2.5),
     f"{F}: timeout_ms must be a positive integer in milliseconds: number"),
    (dict(program="x", shell="yes"), f"{F}: shell must be a boolean when provided: string"),
    (dict(program="x", encoding="ebcdic"), f"{F}: encoding: unsupported text encoding `ebcdic`"),
    (dict(program="x", stdin_encoding=""), f"{F}: stdin_encoding must not be empty"),
    (dict(command="x", shell=False), f"{F}: shell=false cannot be used with command mode"),
    (dict(command="x", args=["a"]), f"{F}: args is only supported with program mode"),
    (dict(program="x", shell=True), f"{F}: shell=true requires command mode"),
    (dict(command="x", program="y"), f"{F}: command and program are mutually exclusive"),
]


@pytest.mark.parametrize("kwargs,message", PY_CASES)
def test_python_validation_messages(kwargs, message):
    with pytest.raises(LuaSkillsError) as info:
        exec_command(**kwargs)
    assert str(info.value) == message


# Wrong Python types are TypeErrors that name Python types (issue 15); the values inside are
# then checked with the Lua API's rules above.
PY_TYPE_CASES = [
    (dict(command=["ls"]), "exec_command: command must be a str, got list"),
    (dict(command=5), "exec_command: command must be a str, got int"),
    (dict(program=["ls"]), "exec_command: program must be a str, got list"),
    (dict(program="x", cwd=b"."), "exec_command: cwd must be a str, got bytes"),
    (dict(program="x", args="abc"), "exec_command: args must be a list or tuple of str, got str"),
    (dict(program="x", args=5), "exec_command: args must be a list or tuple of str, got int"),
]


@pytest.mark.parametrize("kwargs,message", PY_TYPE_CASES)
def test_python_type_errors_name_python_types(kwargs, message):
    with pytest.raises(TypeError) as info:
        exec_command(**kwargs)
    assert str(info.value) == message


def test_python_arguments():
    request = parse_python_exec_args(program="p", args=("a", 3, 3.0, 0.25, False), cwd=".",
                                     env={"K": 1}, stdin=b"\x00\xff", timeout_ms=10.0,
                                     stdout_encoding="base64", default_mode=TextMode.UTF8)
    assert request.argv() == ("p", ("a", "3", "3", "0.25", "false"))
    assert request.env == {"K": "1"} and request.stdin == b"\x00\xff"   # bytes stay raw
    assert request.timeout_ms == 10 and request.stdout_encoding is TextMode.BASE64
    assert request.stderr_encoding is TextMode.UTF8


def test_python_accepts_path_like_cwd(tmp_path):
    request = parse_python_exec_args(command="true", cwd=tmp_path, default_mode=TextMode.UTF8)
    assert request.cwd == str(tmp_path)


# ---- Rust float text ---------------------------------------------------------------------------

@pytest.mark.parametrize("number,text", [
    (0.5, "0.5"), (-1.5, "-1.5"), (1e-7, "0.0000001"), (1e20, "100000000000000000000"),
    (123456.789, "123456.789"), (0.1 + 0.2, "0.30000000000000004"), (-0.0, "-0"),
    (5e-324, "0." + "0" * 323 + "5"), (1e300, "1" + "0" * 300),
])
def test_rust_float_text_examples(number, text):
    assert rust_float_text(number) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_rust_float_text_is_positional_shortest_round_trip(number):
    text = rust_float_text(number)
    assert "e" not in text and "E" not in text
    assert float(text) == number
    # The significant digits are the shortest round-trip digits (those of repr).
    digits = text.lstrip("-").replace(".", "").strip("0") or "0"
    mantissa = repr(abs(number)).split("e")[0].replace(".", "").strip("0") or "0"
    assert digits == mantissa


# ---- results -----------------------------------------------------------------------------------

def request_for(**kwargs):
    kwargs.setdefault("program", "p")
    return parse_python_exec_args(default_mode=TextMode.UTF8, **kwargs)


def test_success_result():
    result = exec_result(request_for(), b"out\n", b"", 0, True, False)
    assert list(result) == list(RESULT_FIELDS)
    assert result == {"ok": True, "success": True, "code": 0, "stdout": "out\n", "stderr": "",
                      "stdout_encoding": "utf-8", "stderr_encoding": "utf-8",
                      "stdout_lossy": False, "stderr_lossy": False, "stdout_base64": None,
                      "stderr_base64": None, "timed_out": False, "error": None}


def test_failure_results():
    result = exec_result(request_for(), b"", b"boom", 3, False, False)
    assert (result["ok"], result["success"], result["code"], result["error"], result["stderr"]) == (
        False, False, 3, "process exited with code 3", "boom")
    result = exec_result(request_for(), b"", b"", None, False, False)
    assert result["error"] == "process terminated without an exit code"
    assert result["code"] is None


def test_timeout_text_is_appended_to_stderr():
    request = request_for(timeout_ms=250)
    result = exec_result(request, b"", b"", None, False, True)
    assert result["stderr"] == result["error"] == "process execution timed out after 250 ms"
    assert result["timed_out"] and not result["ok"] and not result["success"]
    result = exec_result(request, b"x", b"partial", 0, True, True)
    assert result["stderr"] == "partial\nprocess execution timed out after 250 ms"
    assert result["code"] == 0 and result["success"] is False and result["stdout"] == "x"


def test_decoding_is_reported_per_stream():
    request = request_for(stdout_encoding="base64", stderr_encoding="utf-8")
    result = exec_result(request, b"\x00\xff", b"\xffa", 0, True, False)
    assert (result["stdout"], result["stdout_encoding"], result["stdout_base64"]) == (
        "AP8=", "base64", "AP8=")
    assert (result["stderr"], result["stderr_lossy"], result["stderr_base64"]) == (
        "\ufffda", True, "/2E=")


def test_error_result_reports_requested_labels():
    request = request_for(encoding="system", stdout_encoding="gbk", stderr_encoding="bytes")
    result = exec_error_result("failed to spawn process: x", request)
    assert result == {"ok": False, "success": False, "code": None, "stdout": "",
                      "stderr": "failed to spawn process: x", "stdout_encoding": "gbk",
                      "stderr_encoding": "base64", "stdout_lossy": False, "stderr_lossy": False,
                      "stdout_base64": None, "stderr_base64": None, "timed_out": False,
                      "error": "failed to spawn process: x"}
