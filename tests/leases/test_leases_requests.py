"""Runtime lease requests: malformed JSON, SID / TTL / path rules, dict twins (SPEC 1, 9)."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError
from luaskills_runtime.leases import dump_payload


@pytest.fixture
def engine(tmp_path):
    with LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "sys"))) as eng:
        yield eng


def raises_text(fn, *args, **kwargs) -> str:
    with pytest.raises(LuaSkillsError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def create(engine, **fields):
    return json.loads(engine.create_runtime_lease_json(json.dumps(fields)))


# ---- malformed requests raise with the reference's prefix -------------------------------------

@pytest.mark.parametrize("method, what", [
    ("create_runtime_lease_json", "create"),
    ("eval_runtime_lease_json", "eval"),
    ("runtime_lease_status_json", "status"),
    ("list_runtime_leases_json", "list"),
    ("close_runtime_lease_json", "close"),
    ("cancel_runtime_lease_json", "cancel"),
    ("create_system_runtime_lease_json", "create"),
    ("eval_system_runtime_lease_json", "eval"),
    ("system_runtime_lease_status_json", "status"),
    ("list_system_runtime_leases_json", "list"),
    ("close_system_runtime_lease_json", "close"),
    ("cancel_system_runtime_lease_json", "cancel"),
])
def test_syntax_errors_name_the_operation(engine, method, what):
    fn = getattr(engine, method)
    assert raises_text(fn, "nope") == f"Invalid runtime session {what} JSON: expected value at line 1 column 1"
    assert raises_text(fn, "") == f"Invalid runtime session {what} JSON: EOF while parsing a value at line 1 column 0"
    assert raises_text(fn, "{} x") == f"Invalid runtime session {what} JSON: trailing characters at line 1 column 4"
    assert raises_text(fn, "[1]").startswith(f"Invalid runtime session {what} JSON: invalid type: sequence, expected struct ")


@pytest.mark.parametrize("request_json, detail", [
    ('{}', "missing field `sid`"),
    ('{"sid": 5}', "invalid type: integer `5`, expected a string"),
    ('{"sid": null}', "invalid type: null, expected a string"),
    ('{"sid": "a", "ttl_sec": -1}', "invalid value: integer `-1`, expected u64"),
    ('{"sid": "a", "ttl_sec": 1.5}', "invalid type: floating point `1.5`, expected u64"),
    ('{"sid": "a", "ttl_sec": "9"}', 'invalid type: string "9", expected u64'),
    ('{"sid": "a", "replace": 1}', "invalid type: integer `1`, expected a boolean"),
    ('{"sid": "a", "replace": null}', "invalid type: null, expected a boolean"),
    ('{"sid": "a", "lua_roots": "x"}', 'invalid type: string "x", expected a sequence'),
    ('{"sid": "a", "c_roots": [1]}', "invalid type: integer `1`, expected a string"),
    ('{"sid": "a", "cwd": true}', "invalid type: boolean `true`, expected a string"),
    ('{"sid": "a", "sid": "b"}', "duplicate field `sid`"),
    ('{"sid": NaN}', "expected value (got `NaN`)"),
])
def test_create_field_errors(engine, request_json, detail):
    assert raises_text(engine.create_runtime_lease_json, request_json) == \
        f"Invalid runtime session create JSON: {detail}"


@pytest.mark.parametrize("fields, detail", [
    ({"code": "return 1"}, "missing field `lease_id`"),
    ({"lease_id": "x"}, "missing field `code`"),
    ({"lease_id": "x", "code": "", "timeout_ms": None}, "invalid type: null, expected u64"),
    ({"lease_id": "x", "code": "", "generation": -2}, "invalid value: integer `-2`, expected u64"),
    ({"lease_id": "x", "code": "", "request_context": []},
     "invalid type: sequence, expected struct RuntimeRequestContext"),
    ({"lease_id": "x", "code": "", "request_context": {"client_info": 3}},
     "invalid type: integer `3`, expected struct RuntimeClientInfo"),
    ({"lease_id": "x", "code": "", "request_context": {"session_id": 3}},
     "invalid type: integer `3`, expected a string"),
])
def test_eval_field_errors(engine, fields, detail):
    assert raises_text(engine.eval_runtime_lease_json, json.dumps(fields)) == \
        f"Invalid runtime session eval JSON: {detail}"


def test_unknown_fields_are_ignored(engine):
    payload = create(engine, sid="a", something_else={"x": 1})
    assert payload["ok"] is True


def test_eval_timeout_zero_is_raised(engine):
    lease = create(engine, sid="a")
    assert raises_text(engine.eval_runtime_lease, lease_id=lease["lease_id"], code="return 1",
                       timeout_ms=0) == "runtime session eval timeout_ms must be greater than 0"


# ---- SID normalisation -------------------------------------------------------------------------

@pytest.mark.parametrize("sid, message", [
    ("", "runtime session sid must not be empty"),
    (" \t\n", "runtime session sid must not be empty"),
    ("x" * 129, "runtime session sid must not exceed 128 bytes"),
    ("\u00e9" * 65, "runtime session sid must not exceed 128 bytes"),  # 130 bytes of UTF-8
    ("a\0b", "runtime session sid must not contain NUL bytes"),
])
def test_bad_sids_are_raised_on_every_surface(engine, sid, message):
    assert raises_text(engine.create_runtime_lease, sid=sid) == message
    assert raises_text(engine.create_system_runtime_lease, sid=sid) == message
    assert raises_text(engine.eval_runtime_lease, lease_id="x", code="", sid=sid) == message
    assert raises_text(engine.runtime_lease_status, lease_id="x", sid=sid) == message
    assert raises_text(engine.close_runtime_lease, lease_id="x", sid=sid) == message
    assert raises_text(engine.list_runtime_leases, sid=sid) == message


def test_sid_is_trimmed_and_128_bytes_is_allowed(engine):
    assert create(engine, sid="  task-1 \n")["sid"] == "task-1"
    long_sid = "y" * 128
    assert create(engine, sid=long_sid)["sid"] == long_sid
    listed = engine.list_runtime_leases(sid=" task-1 ")["leases"]
    assert [entry["sid"] for entry in listed] == ["task-1"]


# ---- TTL rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ttl, expected", [(None, 600), (1, 1), (599, 599), (3600, 3600),
                                           (3601, 3600), (10**12, 3600)])
def test_public_ttl_default_and_clamp(engine, ttl, expected):
    fields = {"sid": f"t{ttl}"}
    if ttl is not None:
        fields["ttl_sec"] = ttl
    payload = create(engine, **fields)
    assert payload["ttl_sec"] == expected and payload["lifetime"] == "finite"


def test_public_ttl_zero_is_rejected(engine):
    assert raises_text(engine.create_runtime_lease, sid="a", ttl_sec=0) == \
        "runtime lease ttl_sec must be greater than 0"


@pytest.mark.parametrize("ttl, expected, lifetime", [(None, None, "infinite"), (0, None, "infinite"),
                                                     (5, 5, "finite"), (7200, 3600, "finite")])
def test_system_ttl(engine, ttl, expected, lifetime):
    payload = engine.create_system_runtime_lease(sid=f"s{ttl}", ttl_sec=ttl)
    assert payload["ttl_sec"] == expected and payload["lifetime"] == lifetime
    if expected is None:
        assert payload["expires_at_unix_ms"] is None


# ---- path fields -------------------------------------------------------------------------------

def test_path_field_rules(engine):
    assert raises_text(engine.create_runtime_lease, sid="a", cwd="x\0y") == "cwd must not contain NUL bytes"
    assert raises_text(engine.create_runtime_lease, sid="a", workspace_root="\0") == \
        "workspace_root must not contain NUL bytes"
    assert raises_text(engine.create_runtime_lease, sid="a", lua_roots=["ok", "b\0"]) == \
        "lua_roots[1] must not contain NUL bytes"
    assert raises_text(engine.create_runtime_lease, sid="a", c_roots=["\0"]) == \
        "c_roots[0] must not contain NUL bytes"
    assert raises_text(engine.create_runtime_lease, sid="a", mounts=[1]) == \
        "runtime lease mounts must be one JSON object when present"
    assert raises_text(engine.create_runtime_lease, sid="a", mounts="m") == \
        "runtime lease mounts must be one JSON object when present"
    payload = engine.create_runtime_lease(sid="a", cwd="   ", workspace_root=" /w ", mounts=None)
    assert payload["cwd"] is None and payload["workspace_root"] == "/w"


# ---- dict twins --------------------------------------------------------------------------------

def test_dict_twins_accept_a_dict_or_keywords(engine):
    by_dict = engine.create_runtime_lease({"sid": "d"})
    by_kwargs = engine.create_runtime_lease(sid="k")
    assert by_dict["ok"] and by_kwargs["ok"]
    with pytest.raises(TypeError):
        engine.create_runtime_lease({"sid": "d"}, sid="k")
    assert raises_text(engine.create_runtime_lease) == "Invalid runtime session create JSON: missing field `sid`"
    assert raises_text(engine.create_runtime_lease, sid="a", lua_roots=("x", 2)) == \
        "Invalid runtime session create JSON: invalid type: integer `2`, expected a string"
    assert raises_text(engine.eval_runtime_lease, lease_id="x", code="", args={"s": {1, 2}}) == \
        "Invalid runtime session eval JSON: invalid type: value of Python type set, expected any valid JSON value"


def test_json_output_is_compact_with_sorted_keys(engine):
    text = engine.create_runtime_lease_json('{"sid":"j"}')
    payload = json.loads(text)
    assert text == json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = engine.eval_runtime_lease_json(json.dumps(
        {"lease_id": payload["lease_id"], "code": "return {b = 'é', a = 1}"}))
    assert '"result":{"a":1,"b":"é"}' in text


def test_closed_engine_raises(tmp_path):
    engine = LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "s")))
    engine.close()
    assert raises_text(engine.create_runtime_lease_json, '{"sid":"a"}') == "LuaEngine is closed"
    assert raises_text(engine.list_runtime_leases) == "LuaEngine is closed"


def json_containers(children):
    # a named function: hypothesis reads a multi-line lambda's source unreliably (and warns)
    return st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.text() |
    st.floats(allow_nan=False, allow_infinity=False),
    json_containers,
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=8))
def test_payload_encoding_matches_sorted_compact_json(payload):
    assert dump_payload(payload) == json.dumps(payload, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False)
