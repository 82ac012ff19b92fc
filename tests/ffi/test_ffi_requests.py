"""C ABI request decoding: serde_json's error positions and Rust's UTF-8 error text, checked
against simple models, and the decoded shapes the dispatcher relies on."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from luaskills_runtime.ffi import requests as rq
from luaskills_runtime.ffi.requests import FfiRequestError, decode
from luaskills_runtime._ref.serde_text import serde_position, utf8_error_text, value_span

# ---- value_span / serde_position vs a serializer that records where it wrote each value -------

SPACE = st.sampled_from(["", " ", "\n", "  \n\t", "\r\n "])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.text(alphabet="aé\"\\\n€x", max_size=4))


def _containers_of(inner):
    return st.one_of(st.lists(inner, max_size=3),
                     st.dictionaries(st.text(alphabet="ké\"", max_size=3), inner, max_size=3))


VALUES = st.recursive(SCALARS, _containers_of, max_leaves=12)


def write(value, spaces, path, spans, out):
    """Serialise `value` into `out` (a list of str pieces), recording the span of every value by
    path; `spaces` yields the whitespace put between tokens."""
    start = sum(map(len, out))
    if isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            out.append(next(spaces) + ("," + next(spaces) if index else ""))
            out.append(json.dumps(key) + next(spaces) + ":" + next(spaces))
            write(item, spaces, path + (key,), spans, out)
        out.append(next(spaces) + "}")
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            out.append(next(spaces) + ("," + next(spaces) if index else ""))
            write(item, spaces, path + (index,), spans, out)
        out.append(next(spaces) + "]")
    else:
        out.append(json.dumps(value))
    spans[path] = (start, sum(map(len, out)))


@settings(max_examples=200, deadline=None)
@given(VALUES, st.lists(SPACE, min_size=1, max_size=8), st.data())
def test_value_span_matches_where_the_serializer_wrote_each_value(value, space_cycle, data):
    def spaces():
        while True:
            yield from space_cycle
    spans, out = {}, []
    leading = next(spaces())
    out.append(leading)
    write(value, spaces(), (), spans, out)
    text = "".join(out)
    path = data.draw(st.sampled_from(sorted(spans, key=repr)))
    assert value_span(text, path) == spans[path]
    index = data.draw(st.integers(0, len(text)))
    prefix = text[:index]
    assert serde_position(text, index) == (
        f" at line {prefix.count(chr(10)) + 1} column {len(prefix.split(chr(10))[-1].encode())}")


# ---- utf8_error_text vs a model of Rust's str::from_utf8 ---------------------------------------

def rust_utf8_error(data: bytes):
    """(valid_up_to, error_len or None) as core::str::from_utf8 computes them; None if valid."""
    index = 0
    while index < len(data):
        first = data[index]
        if first < 0x80:
            index += 1
            continue
        width = 2 if 0xC2 <= first <= 0xDF else 3 if 0xE0 <= first <= 0xEF else 4 if 0xF0 <= first <= 0xF4 else 0
        if width == 0:
            return index, 1
        def at(offset):
            return data[index + offset] if index + offset < len(data) else None
        second = at(1)
        if second is None:
            return index, None
        if width == 2:
            if not 0x80 <= second <= 0xBF:
                return index, 1
        else:
            low, high = 0x80, 0xBF
            if first == 0xE0:
                low = 0xA0
            elif first == 0xED:
                high = 0x9F
            elif first == 0xF0:
                low = 0x90
            elif first == 0xF4:
                high = 0x8F
            if not low <= second <= high:
                return index, 1
            for offset in range(2, width):
                following = at(offset)
                if following is None:
                    return index, None
                if not 0x80 <= following <= 0xBF:
                    return index, offset
        index += width
    return None


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=3), st.sampled_from(
    [b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80", b"\xe0\x80", b"\xf4\x90", b"\xc0\xaf"])),
    max_size=6).map(b"".join))
def test_utf8_error_text_matches_rust(data):
    expected = rust_utf8_error(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        assert expected is not None
        valid_up_to, error_len = expected
        if error_len is None:
            assert utf8_error_text(error) == f"incomplete utf-8 byte sequence from index {valid_up_to}"
        else:
            assert utf8_error_text(error) == (
                f"invalid utf-8 sequence of {error_len} bytes from index {valid_up_to}")
    else:
        assert expected is None


# ---- decoding ---------------------------------------------------------------------------------

def _decode(struct, text):
    return decode("fn", text.encode("utf-8"), len(text.encode("utf-8")), struct)[0]


def test_defaults_and_document_order():
    request = _decode(rq.LEASE_EVAL, '{"engine_id":3,"lease_id":"rt","code":"return 1"}')
    assert request == {"engine_id": 3, "lease_id": "rt", "code": "return 1", "sid": None,
                       "generation": None, "args": {}, "timeout_ms": 60000,
                       "invocation_context": None, "request_context": None,
                       "client_budget": None, "tool_config": None, "authority": None}
    # the first refused field in document order is reported, before missing fields
    with pytest.raises(FfiRequestError) as caught:
        _decode(rq.LEASE_EVAL, '{"timeout_ms": "x",\n "engine_id": true}')
    assert str(caught.value) == ('fn received invalid JSON input: invalid type: string "x", '
                                 'expected u64 at line 1 column 18')


@pytest.mark.parametrize("text, detail", [
    ('{"engine_id":1,"sid":"s","lua_roots":["a",2]}',
     "invalid type: integer `2`, expected a string at line 1 column 43"),
    ('{"engine_id":1,"sid":"s","mounts":null,"replace":"yes"}',
     'invalid type: string "yes", expected a boolean at line 1 column 54'),
    ('{"engine_id":1,"sid":"s","authority":"admin"}',
     "unknown variant `admin`, expected `system` or `delegated_tool` at line 1 column 44"),
    ('{"engine_id":1,"sid":"s","ttl_sec":-5}',
     "invalid value: integer `-5`, expected u64 at line 1 column 37"),
    ('{"engine_id":1,"sid":{"a":1}}',
     "invalid type: map, expected a string at line 1 column 21"),
    ('{"engine_id":1}', "missing field `sid` at line 1 column 15"),
    ('{"engine_id":1,"sid":"é","ttl_sec":1.5}',
     "invalid type: floating point `1.5`, expected u64 at line 1 column 39"),  # é: 2 bytes
])
def test_create_request_errors(text, detail):
    with pytest.raises(FfiRequestError) as caught:
        _decode(rq.LEASE_CREATE, text)
    assert str(caught.value) == f"fn received invalid JSON input: {detail}"


def test_engine_options_runtime_root_sets_the_system_lua_lib_folder(tmp_path):
    from luaskills_runtime.ffi.engine_options import host_options_from
    text = json.dumps({"options": {
        "pool_config": {"min_size": 2, "max_size": 3, "idle_ttl_secs": 9},
        "host_options": {"runtime_root": str(tmp_path), "dependency_dir_name": "",
                         "state_dir_name": "", "database_dir_name": "",
                         "allow_network_download": True, "reserved_entry_names": ["x"],
                         "temp_dir": str(tmp_path / "t"),
                         "capabilities": {"enable_skill_management_bridge": False,
                                          "enable_managed_io_compat": False}}}})
    options = host_options_from(_decode(rq.ENGINE_NEW, text)["options"])
    assert options.system_lua_lib_dir == str(tmp_path / "system_lua_lib")
    assert options.main_pool == (2, 3, 9) and options.runlua_pool == (2, 3, 9)
    assert options.enable_managed_io_compat is False
    assert options.temp_dir == str(tmp_path / "t")
    with pytest.raises(FfiRequestError, match="missing field `max_size` at line 1 column 40"):
        _decode(rq.ENGINE_NEW, '{"options":{"pool_config":{"min_size":1}}}')


@pytest.mark.parametrize("text, detail", [
    ("{", "EOF while parsing an object at line 1 column 1"),
    ('{"engine_id":1', "EOF while parsing an object at line 1 column 14"),
    ('{"engine_id":', "EOF while parsing a value at line 1 column 13"),
    ('{"engine_id":1,', "EOF while parsing a value at line 1 column 15"),
    ('{"args":[1,2', "EOF while parsing a list at line 1 column 12"),
    ('{"code":"ret', "EOF while parsing a string at line 1 column 12"),
    ('{"code" ', "EOF while parsing an object at line 1 column 8"),
    ('{"args":{}\n  ', "EOF while parsing an object at line 2 column 2"),
    ("  \n ", "EOF while parsing a value at line 2 column 1"),
    ("{} x", "trailing characters at line 1 column 4"),
])
def test_syntax_errors_use_serde_json_wording(text, detail):
    with pytest.raises(FfiRequestError) as caught:
        _decode(rq.RUN_LUA, text)
    assert str(caught.value) == f"fn received invalid JSON input: {detail}"


def test_engine_run_lua_invocation_context(engine):
    from luaskills_runtime import LuaSkillsError
    seen = engine.run_lua(
        "return {vulcan.context.request.session_id, vulcan.context.client_info.kind, "
        "vulcan.context.client_budget.max, vulcan.context.tool_config.on}",
        invocation_context={"request_context": {"session_id": "s1", "client_info": {"kind": "ide"}},
                            "client_budget": {"max": 3}, "tool_config": {"on": True}})
    assert seen == ["s1", "ide", 3, True]
    # only for that call
    assert engine.run_lua("return vulcan.context.request.session_id") is None
    with pytest.raises(LuaSkillsError) as caught:
        engine.run_lua("return 1", invocation_context={"client_budget": {}})
    assert str(caught.value) == "run_lua: invalid invocation_context: missing field `tool_config`"


KEYS = st.sampled_from(["engine_id", "code", "args", "sid", "lease_id", "authority", "options",
                        "invocation_context", "client_budget", "tool_config", "timeout_ms", "x"])


def _request_containers_of(inner):
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4))


def _json_bytes(value) -> bytes:
    return json.dumps(value).encode()


JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
                                 st.text(max_size=3)),
                       _request_containers_of, max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(__import__("luaskills_runtime.ffi.dispatch", fromlist=["HANDLERS"]).HANDLERS)
                       + ["luaskills_ffi_list_entries_json", "luaskills_ffi_unknown_json"]),
       st.one_of(st.none(), st.binary(max_size=40),
                 JSONISH.map(_json_bytes)))
def test_dispatch_always_answers_an_envelope(name, data):
    """Whatever arrives, the dispatcher answers one JSON envelope (engine ids here never exist,
    so no Lua runs)."""
    from luaskills_runtime.ffi.dispatch import dispatch
    if name == "luaskills_ffi_engine_new_json":
        return  # a valid request would create an engine; engine_new is covered above
    answer = json.loads(dispatch(name, data, 0 if data is None else len(data)))
    assert set(answer) in ({"ok", "result"}, {"ok", "error"})
    if answer["ok"] is False:
        assert isinstance(answer["error"], str) and answer["error"]
        assert "internal error" not in answer["error"]
