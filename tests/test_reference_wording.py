"""One wording module (luaskills_runtime._ref): every surface words the same input the same way."""
import errno
import json

import pytest
from hypothesis import given, strategies as st

from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError
from luaskills_runtime._ref.rust import os_error_text, rust_float, rust_trim
from luaskills_runtime._ref.serde_text import JsonSyntaxError, json_error_detail, u64_detail

RUNLUA_PREFIX = "Invalid luaexec request JSON: "
LEASE_PREFIX = "Invalid runtime session create JSON: "


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    options = HostOptions(system_lua_lib_dir=str(tmp_path_factory.mktemp("system_lua_lib")))
    with LuaEngine(options) as eng:
        yield eng


def detail(call, prefix, text):
    with pytest.raises(LuaSkillsError) as info:
        call(text)
    message = str(info.value)
    assert message.startswith(prefix), message
    return message[len(prefix):]


@pytest.mark.parametrize("text, expected", [
    ("", "EOF while parsing a value at line 1 column 0"),
    ("{", "EOF while parsing an object at line 1 column 1"),
    ('{"code": ', "EOF while parsing a value at line 1 column 9"),
    ('{"code": "x"', "EOF while parsing an object at line 1 column 12"),
    ('{"code": "x', "EOF while parsing a string at line 1 column 11"),
    ("[1", "EOF while parsing a list at line 1 column 2"),
    ("{} x", "trailing characters at line 1 column 4"),
    ('{"a" 1}', "expected `:` at line 1 column 6"),
    ('{\n"a": 1,\n', "EOF while parsing a value at line 3 column 0"),
    ('{"é" 1}', "expected `:` at line 1 column 7"),     # columns count UTF-8 bytes
    (b'{"code": "\xff"}', "invalid unicode code point at line 1 column 11"),
    ('{"timeout_ms": NaN}', "expected value (got `NaN`)"),
])
def test_runlua_leases_and_the_c_abi_word_malformed_json_alike(engine, text, expected):
    runlua = detail(engine.execute_runlua_request_json_inline, RUNLUA_PREFIX, text)
    lease = detail(engine.create_runtime_lease_json, LEASE_PREFIX, text)
    assert runlua == lease == expected
    if isinstance(text, str):  # the C ABI refuses non-UTF-8 bytes before JSON (its own text)
        assert c_abi_detail(text) == expected


def c_abi_detail(text: str) -> str:
    from luaskills_runtime.ffi.requests import RUN_LUA, FfiRequestError, decode
    data = text.encode("utf-8")
    with pytest.raises(FfiRequestError) as info:
        decode("fn", data, len(data), RUN_LUA)
    prefix = "fn received invalid JSON input: "
    message = str(info.value)
    assert message.startswith(prefix), message
    return message[len(prefix):]


@given(st.text(max_size=12))
def test_every_syntax_error_gets_a_position(text):
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        assert " at line " in json_error_detail(error)
    except (ValueError, RecursionError):
        pass


def test_u64_detail_follows_serde():
    assert u64_detail(5) is None and u64_detail(0) is None and u64_detail(2**64 - 1) is None
    assert u64_detail(-1) == "invalid value: integer `-1`, expected u64"
    assert u64_detail(1.5) == "invalid type: floating point `1.5`, expected u64"
    assert u64_detail(True) == "invalid type: boolean `true`, expected u64"
    # serde_json reads a literal beyond u64 as a float
    assert u64_detail(2**64) == "invalid type: floating point `18446744073709552000.0`, expected u64"


def test_rust_helpers():
    assert rust_trim("\u3000 x \x1c") == "x \x1c"          # U+001C is not White_Space in Rust
    assert [rust_float(v) for v in (1e-7, 1e20, -0.0, 2.5, float("nan"), float("-inf"))] == [
        "0.0000001", "100000000000000000000", "-0", "2.5", "NaN", "-inf"]
    assert os_error_text(OSError(errno.ENOENT, "No such file or directory")) == (
        f"No such file or directory (os error {errno.ENOENT})")
    assert os_error_text(OSError("plain")) == "plain"


def test_json_syntax_error_is_a_value_error():
    assert issubclass(JsonSyntaxError, ValueError)
