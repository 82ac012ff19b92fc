"""Bad input stays a LuaSkillsError: hypothesis feeds JSON values to every `*_json` method and
Lua values to every `vulcan.*` function.  Only LuaSkillsErrors (or payloads) and Lua errors in the
reference's wording may come out: never RecursionError, TypeError, ValueError or
UnicodeEncodeError, nor Python's own argument messages."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError

JSON_METHODS = sorted(name for name in dir(LuaEngine)
                      if name.endswith("_json") and not name.startswith("_"))

FIELDS = ("sid", "lease_id", "code", "task", "file", "args", "timeout_ms", "generation", "ttl_sec",
          "cwd", "workspace_root", "lua_roots", "c_roots", "mounts", "replace", "policy",
          "request_context", "client_budget", "tool_config", "caller_tool_name")


def _json_children(children):
    return st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(
        max_size=5), children, max_size=4)


JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
                | st.sampled_from(["return 1", "\ud800", "rt_1_1", "x" * 3, "error('x')"]))
JSON_VALUES = st.recursive(JSON_SCALARS, _json_children, max_leaves=12)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    options = HostOptions(policy="untrusted", runlua_pool=(1, 1, 60), main_pool=(1, 1, 60),
                          system_lua_lib_dir=str(tmp_path_factory.mktemp("system_lua_lib")),
                          output=lambda stream, text: None)
    with LuaEngine(options) as eng:
        yield eng


def call_json(engine, method, payload):
    try:
        answer = getattr(engine, method)(payload)
    except LuaSkillsError:
        return
    assert isinstance(answer, str)


@pytest.mark.parametrize("method", JSON_METHODS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(value=JSON_VALUES)
def test_json_values_into_json_methods(engine, method, value):
    call_json(engine, method, json.dumps(value))


HOSTILE = {
    "not a string": 5,
    "none": None,
    "a dict": {"code": "return 1"},
    "depth 100000": "[" * 100000 + "]" * 100000,
    "object depth 100000": '{"a":' * 100000 + "1" + "}" * 100000,
    "5000-digit integer": '{"sid": "s", "code": "return 1", "timeout_ms": ' + "9" * 5000 + "}",
    "5000-digit integer in args": '{"code": "return 1", "args": {"a": ' + "9" * 5000 + "}}",
    "escaped lone surrogate": '{"sid": "\\ud800", "code": "return \'\\ud800\'", "task": "\\ud800"}',
    "raw lone surrogate": '{"sid": "\ud800", "code": "return \'\ud800\'", "task": "\ud800"}',
    "50 MB": '{"sid": "s", "code": "return 1", "task": "' + "a" * 50_000_000 + '"}',
    "invalid bytes": b'{"code": "\xff"}',
}


@pytest.mark.parametrize("method", JSON_METHODS)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_inputs_into_json_methods(engine, method, name):
    call_json(engine, method, HOSTILE[name])


# ---- Lua values into vulcan.* ------------------------------------------------------------------

LIST_FUNCTIONS = """
local found = {}
local function walk(t, prefix, seen)
  if seen[t] then return end
  seen[t] = true
  for k, v in pairs(t) do
    if type(k) == "string" then
      if type(v) == "function" then found[#found + 1] = prefix .. k
      elseif type(v) == "table" then walk(v, prefix .. k .. ".", seen) end
    end
  end
end
walk(vulcan, "vulcan.", {})
table.sort(found)
return found
"""

LUA_VALUES = st.sampled_from([
    "nil", "true", "false", "0", "-1", "1.5", "1e308", "0/0", "2^53", "''", "'x'", "'\\0'",
    "'/'", "'.'", "'utf-8'", "'gbk'", "'\\255\\254'", "string.rep('a', 300)", "{}", "{1, 2}",
    "{encoding = 'utf-8'}", "{encoding = 5}", "{command = 'true'}", "{program = 'true'}",
    "{timeout_ms = -1}", "{{}}", "print", "coroutine.create(print)", "newproxy()",
    "setmetatable({}, {__index = function() error('meta') end})",
    "string.rep('[', 100000)", "'1' .. string.rep('0', 5000)", "'\"\\ud800\"'",
    "(function() local t = {} t.t = t return t end)()",
    "(function() local t = {} for i = 1, 1000 do t = {t} end return t end)()",
])

PYTHON_WORDING = ("positional argument", "<locals>", "Traceback", "object has no attribute",
                  "NoneType", "keyword argument", "<lambda>", "object is not", "bytes object",
                  "got an unexpected")


@pytest.fixture(scope="module")
def vulcan_functions(engine):
    return engine.run_lua(LIST_FUNCTIONS)


def test_vulcan_namespace_is_listed(vulcan_functions):
    assert "vulcan.json.encode" in vulcan_functions and "vulcan.fs.read" in vulcan_functions


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_lua_values_into_vulcan_functions(engine, vulcan_functions, data):
    name = data.draw(st.sampled_from(vulcan_functions))
    args = data.draw(st.lists(LUA_VALUES, max_size=4))
    code = (f"local ok, err = pcall({name}, {', '.join(args)}) "
            "return {ok = ok, err = (not ok) and tostring(err) or nil}")
    try:
        answer = engine.run_lua(code)
    except LuaSkillsError as error:   # a value that has no JSON form: still the package's error
        answer = {"ok": True, "err": None, "run_error": str(error)}
    if not answer["ok"]:
        message = answer["err"]
        assert not any(word in message for word in PYTHON_WORDING), (name, args, message)


@pytest.mark.parametrize("text,message", [
    ("string.rep('[', 100000)", "vulcan.json.decode: recursion limit exceeded"),
    ("'1' .. string.rep('0', 5000)", "vulcan.json.decode: number out of range"),
])
def test_json_decode_limits_in_serde_words(engine, text, message):
    assert engine.run_lua(f"return select(2, pcall(vulcan.json.decode, {text}))") == message


def test_extra_arguments_are_dropped_as_lua_does(engine):
    # was: "install.<locals>.<lambda>() takes 0 positional arguments but 2 were given"
    assert engine.run_lua("return vulcan.os.info(1, 2).os") in ("linux", "macos", "windows")
    assert engine.run_lua("return vulcan.runtime.cwd('extra') ~= nil") is True


def test_vulcan_io_options_take_the_reference_forms(engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("io_options")
    with LuaEngine(HostOptions(policy="trusted")) as trusted:
        answer = trusted.run_lua(f"""
          local path = '{folder}/t.txt'
          vulcan.io.write_text(path, 'hé', {{encoding = 'utf-8'}})
          return {{vulcan.io.read_text(path), vulcan.io.read_text(path, 'utf-8'),
                  vulcan.io.read_text(path, {{encoding = 'utf-8'}}), vulcan.io.read_text(path, {{}})}}""")
    assert answer == ["hé"] * 4
