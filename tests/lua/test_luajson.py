"""JSON <-> Lua conversion (SPEC 3), including cycles and depth limits."""
import math

from _engine_support import lupa_engine
import pytest
from hypothesis import given, settings, strategies as st

from luaskills_runtime import LuaSkillsError
from luaskills_runtime.lua.luajson import MAX_DEPTH, json_to_lua, lua_to_json


@pytest.fixture(scope="module")
def lua():
    return lupa_engine.LuaRuntime(encoding=None, unpack_returned_tuples=True)


@pytest.mark.parametrize("code,expected", [
    ("return nil", None),
    ("return 3.0", 3),
    ("return 2.5", 2.5),
    ("return 0/0", None),
    ("return 1/0", None),
    ("return -1/0", None),
    ("return 'h\\195\\169'", "hé"),
    ("return {}", []),
    ("return {1, 2, 3}", [1, 2, 3]),
    ("return {1, 2, x = 'dropped'}", [1, 2]),
    ("return {b = 1, a = 2}", {"a": 2, "b": 1}),
    ("return {[10] = 'x', [2.5] = 'y'}", {"10": "x", "2.5": "y"}),
    ("return {a = {b = {c = true}}}", {"a": {"b": {"c": True}}}),
])
def test_lua_to_json(lua, code, expected):
    assert lua_to_json(lua.execute(code)) == expected


def test_object_keys_are_sorted(lua):
    result = lua_to_json(lua.execute("return {zeta = 1, alpha = 2, mid = 3}"))
    assert list(result) == ["alpha", "mid", "zeta"]


@pytest.mark.parametrize("code,message", [
    ("return print", "Cannot convert Lua function to JSON"),
    ("return coroutine.create(function() end)", "Cannot convert Lua thread to JSON"),
    ("return io.stdout", "Cannot convert Lua userdata to JSON"),
    ("return {[true] = 1}", "Table key: unsupported key type boolean"),
    ("return {[{}] = 1}", "Table key: unsupported key type table"),
])
def test_unconvertible_values(lua, code, message):
    with pytest.raises(LuaSkillsError, match=message):
        lua_to_json(lua.execute(code))


def test_cycles_are_reported(lua):
    with pytest.raises(LuaSkillsError, match="Cannot convert cyclic Lua table to JSON"):
        lua_to_json(lua.execute("local t = {} t.self = t return t"))
    with pytest.raises(LuaSkillsError, match="cyclic"):
        lua_to_json(lua.execute("local a, b = {}, {} a[1] = b b[1] = a return a"))


def test_shared_subtables_are_not_cycles(lua):
    assert lua_to_json(lua.execute("local s = {1} return {s, s}")) == [[1], [1]]


def test_depth_limit(lua):
    deep = lua.execute(f"local t = {{}} for i = 1, {MAX_DEPTH + 10} do t = {{t}} end return t")
    with pytest.raises(LuaSkillsError, match=f"nested deeper than {MAX_DEPTH}"):
        lua_to_json(deep)
    ok = lua.execute(f"local t = 1 for i = 1, {MAX_DEPTH - 1} do t = {{t}} end return t")
    assert lua_to_json(ok) is not None


def test_json_to_lua_shapes(lua):
    table = json_to_lua(lua, {"a": [1, None, 3], "b": {"c": "x"}, "big": 2**70})
    check = lua.eval("function(t) return t.a[1], t.a[2] == nil, t.a[3], t.b.c, type(t.big) end")
    assert check(table) == (1, True, 3, b"x", b"number")
    assert lua.eval("function(t) return next(t) end")(json_to_lua(lua, 7, top_level_args=True)) is None


def test_json_to_lua_depth_limit(lua):
    value = []
    for _ in range(MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(LuaSkillsError, match="nested deeper"):
        json_to_lua(lua, value)


def json_containers(children):
    # a named function: hypothesis reads a multi-line lambda's source unreliably (and warns)
    present = children.filter(lambda v: v is not None)
    keys = st.text(min_size=1, max_size=8).filter(lambda k: not k.lstrip("-").isdigit())
    return (st.lists(present, min_size=1, max_size=5)
            | st.dictionaries(keys, present, min_size=1, max_size=5))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.text(max_size=20),
    json_containers,
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_round_trip(lua, value):
    """JSON -> Lua -> JSON is the identity for values without holes or empty containers."""
    back = lua_to_json(json_to_lua(lua, value))
    if isinstance(value, float):
        assert math.isclose(back, value)
    else:
        assert back == value
