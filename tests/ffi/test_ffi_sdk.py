"""The unmodified luaskills SDK (luaskills-sdk 0.4.6) driving this runtime through the C ABI."""
import json
import os
import subprocess
import sys

import luaskills
import pytest
from luaskills import LuaSkillsClient

from _ffi_support import child_env, library_path


@pytest.fixture
def runtime_root(tmp_path):
    return tmp_path / "luaskills-runtime"


@pytest.fixture
def client(runtime_root):
    with LuaSkillsClient(library_path=library_path(), runtime_root=runtime_root) as sdk_client:
        yield sdk_client


def _example(name: str, cwd) -> str:
    result = subprocess.run([sys.executable, "-m", f"luaskills.examples.{name}"], cwd=cwd,
                            env=child_env(LUASKILLS_LIB=library_path()), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_shipped_basic_example_prints_the_version(tmp_path):
    out = _example("basic", tmp_path)
    assert out.strip() == str({"ffi_version": "0.4.2", "protocol": "json-cabi"})


def test_shipped_runtime_lease_example(tmp_path):
    lines = _example("runtime_lease", tmp_path).splitlines()
    assert lines[0].startswith("Lease created: rt_")
    lease_id = lines[0].split(": ", 1)[1]
    assert lines[1] == "First eval result: {'counter': 1, 'persisted': True}"
    assert lines[2] == "Second eval result: {'counter': 2, 'persisted': True}"
    root = os.path.realpath(tmp_path / "luaskills-runtime")
    assert lines[3].startswith("Lease status result: {")
    assert f"'cwd': '{root}/system_lua_lib'" in lines[3] and "'closed': False" in lines[3]
    assert lines[4].startswith("Lease close result: {") and "'closed': True" in lines[4]
    assert lines[5] == ("Post-close eval result: {'error_code': 'lease_closed', 'message': "
                        f"'runtime session lease `{lease_id}` is closed (sid "
                        "`python-wheel-runtime-lease-demo`, generation 1)', 'ok': False}")


def test_version_and_describe():
    assert LuaSkillsClient.version(library_path=library_path()) == {
        "ffi_version": "0.4.2", "protocol": "json-cabi"}
    described = LuaSkillsClient.describe(library_path=library_path())
    assert described["ffi_version"] == "0.4.2"
    names = described["exported_functions"]
    for name in ("luaskills_ffi_run_lua_json", "luaskills_ffi_system_runtime_lease_eval_json",
                 "luaskills_ffi_set_sqlite_provider_json_callback", "luaskills_ffi_buffer_free"):
        assert name in names
    import ctypes
    library = ctypes.CDLL(library_path())
    for name in names:  # every described name is a real symbol
        getattr(library, name)


def test_run_lua_with_args(client):
    assert client.run_lua("return args.a + args.b", {"a": 2, "b": 40}) == 42
    assert client.run_lua("return {n = #args.list, s = args.s}", {"list": [1, 2, 3], "s": "é"}) == {
        "n": 3, "s": "é"}
    assert client.run_lua("return nil") is None


def test_run_lua_invocation_context_fills_vulcan_context_for_that_call(client):
    context = {
        "request_context": {"request_id": "req-1", "client_name": "tester",
                            "client_info": {"name": "cli", "version": "1"},
                            "client_capabilities": {"markdown": True}},
        "client_budget": {"tool_result": {"bytes": 100}},
        "tool_config": {"mode": "fast"},
    }
    code = ("local c = vulcan.context return {request = c.request, info = c.client_info, "
            "caps = c.client_capabilities, budget = c.client_budget, tool = c.tool_config}")
    seen = client.run_lua(code, invocation_context=context)
    assert seen["request"]["request_id"] == "req-1"
    assert seen["request"]["client_name"] == "tester"
    assert seen["info"] == {"name": "cli", "version": "1"}
    assert seen["caps"] == {"markdown": True}
    assert seen["budget"] == {"tool_result": {"bytes": 100}}
    assert seen["tool"] == {"mode": "fast"}
    # the next call without a context sees the defaults again
    after = client.run_lua("return {tool = vulcan.context.tool_config, id = vulcan.context.request.request_id}")
    assert after["tool"] in ({}, []) and "id" not in after


def test_lease_eval_invocation_context(client):
    handle = client.runtime_leases().create_handle("ctx-sid", ttl_sec=60)
    answer = handle.eval("return {vulcan.context.tool_config.k, vulcan.context.request.request_id, args.x}",
                         args={"x": 7},
                         invocation_context={"request_context": {"request_id": "r9"},
                                             "tool_config": {"k": "v"}})
    assert answer["ok"] is True and answer["result"] == ["v", "r9", 7]
    handle.close()


def test_public_lease_flow_through_handles_and_call_raw(client):
    leases = client.runtime_leases()
    handle = leases.create_handle("public-sid", ttl_sec=30)
    assert handle.generation == 1 and handle.sid == "public-sid"
    assert handle.eval("counter = (counter or 0) + 1 return counter")["result"] == 1
    assert handle.eval("counter = counter + 1 return counter")["result"] == 2
    status = handle.status()
    assert status["ok"] is True and status["profile"] == "public" and status["ttl_sec"] == 30
    listed = leases.list()
    assert [entry["lease_id"] for entry in listed["leases"]] == [handle.lease_id]
    assert leases.find_handle("public-sid").lease_id == handle.lease_id
    raw = leases.call_raw("eval", {"lease_id": handle.lease_id, "code": "return counter * 10"})
    assert raw["ok"] is True and raw["result"] == 20
    assert handle.close()["closed"] is True
    after = leases.call_raw("status", {"lease_id": handle.lease_id})
    assert after["ok"] is False and after["error_code"] == "lease_closed"
    assert leases.list()["leases"] == []


def test_system_lease_flow(client, runtime_root):
    system = client.system().runtime_leases()
    assert system.uses_system_runtime_lease_endpoints()
    handle = system.create_handle("system-sid")
    status = handle.status()
    assert status["profile"] == "system_lua_lib" and status["lifetime"] == "infinite"
    assert status["system_lua_lib"] == os.path.realpath(runtime_root / "system_lua_lib")
    assert handle.eval("x = 5 return x")["result"] == 5
    raw = system.call_raw("eval", {"lease_id": handle.lease_id, "code": "return x + 1"})
    assert raw == {**raw, "ok": True, "result": 6}
    # the public endpoints do not see the system lease
    public = client.runtime_leases().call_raw("status", {"lease_id": handle.lease_id})
    assert public["ok"] is False and public["error_code"] == "lease_profile_mismatch"
    assert handle.close()["closed"] is True
    delegated = client.system("delegated_tool").runtime_leases().create_handle("delegated-sid")
    assert delegated.status()["profile"] == "system_lua_lib"


def test_system_lease_without_authority_is_a_request_error(client):
    with pytest.raises(luaskills.LuaSkillsError) as caught:
        client.ffi.call_json("luaskills_ffi_system_runtime_lease_list_json",
                             {"engine_id": client.engine_id})
    assert str(caught.value) == (
        "luaskills_ffi_system_runtime_lease_list_json: luaskills_ffi_system_runtime_lease_list_json "
        "requires host-injected authority: use 'system' or 'delegated_tool'")


def test_lease_error_codes_surface_as_the_sdk_runtime_error(client):
    leases = client.runtime_leases()
    first = leases.create("dup-sid")
    with pytest.raises(RuntimeError) as caught:
        leases.create("dup-sid")
    assert str(caught.value) == (f"runtime lease create failed: lease_exists: runtime session SID "
                                 f"`dup-sid` already has lease `{first['lease_id']}`")
    with pytest.raises(RuntimeError) as caught:
        leases.eval("rt_missing", "return 1")
    assert str(caught.value) == ("runtime lease eval failed: lease_not_found: runtime session lease "
                                 "`rt_missing` was not found")
    failed = leases.call_raw("eval", {"lease_id": first["lease_id"], "code": "error('boom')"})
    assert failed["ok"] is False and "boom" in failed["message"]


def test_request_errors_keep_the_reference_text(client):
    with pytest.raises(luaskills.LuaSkillsError) as caught:
        client.ffi.call_json("luaskills_ffi_run_lua_json", {"engine_id": client.engine_id, "code": 5})
    assert str(caught.value) == (
        "luaskills_ffi_run_lua_json: luaskills_ffi_run_lua_json received invalid JSON input: "
        "invalid type: integer `5`, expected a string at line 1 column 23")
    assert caught.value.function_name == "luaskills_ffi_run_lua_json"
    with pytest.raises(luaskills.LuaSkillsError, match="FFI engine 987654 not found"):
        client.ffi.call_json("luaskills_ffi_run_lua_json", {"engine_id": 987654, "code": "return 1"})
    with pytest.raises(luaskills.LuaSkillsError, match="Lua run_lua error: .*kaput"):
        client.run_lua("error('kaput')")


def test_engine_options_serde_rules(runtime_root):
    with pytest.raises(luaskills.LuaSkillsError) as caught:
        LuaSkillsClient(library_path=library_path(), runtime_root=runtime_root,
                        host_options={"capabilities": {"enable_managed_io_compat": None}})
    assert "luaskills_ffi_engine_new_json received invalid JSON input: invalid type: null, " \
           "expected a boolean at line 1 column" in str(caught.value)
    options = {"pool_config": {"min_size": 1, "max_size": 2, "idle_ttl_secs": 5},
               "host_options": {"dependency_dir_name": "", "state_dir_name": "",
                                "database_dir_name": "", "allow_network_download": False,
                                "reserved_entry_names": [], "capabilities": {}}}
    text = json.dumps({"options": options}, separators=(",", ":"))
    with pytest.raises(luaskills.LuaSkillsError) as caught:
        LuaSkillsClient(library_path=library_path(), engine_options=options)
    assert str(caught.value).endswith(
        "missing field `enable_managed_io_compat` at line 1 column "
        f"{text.index('{}') + 2}")
    options["host_options"]["capabilities"] = {"enable_managed_io_compat": False}
    with LuaSkillsClient(library_path=library_path(), engine_options=options) as sdk_client:
        # managed io off: the plain io library is there
        assert sdk_client.run_lua("return type(io.open)") == "function"


def test_engine_free(runtime_root):
    sdk_client = LuaSkillsClient(library_path=library_path(), runtime_root=runtime_root)
    engine_id = sdk_client.engine_id
    assert sdk_client.close() == {"freed": True}
    with pytest.raises(RuntimeError, match=f"LuaSkills engine {engine_id} is already closed"):
        sdk_client.run_lua("return 1")
    with pytest.raises(luaskills.LuaSkillsError, match=f"FFI engine {engine_id} not found"):
        sdk_client.ffi.call_json("luaskills_ffi_engine_free_json", {"engine_id": engine_id})


def test_skill_entry_points_answer_that_skills_are_outside(client):
    with pytest.raises(luaskills.LuaSkillsError, match="skill packages are outside this runtime"):
        client.list_entries()
    with pytest.raises(luaskills.LuaSkillsError, match="skill packages are outside this runtime"):
        client.call_skill("demo-tool")
    with pytest.raises(luaskills.LuaSkillsError, match="skill packages are outside this runtime"):
        client.config.list()
    with pytest.raises(luaskills.LuaSkillsError, match="provider"):
        client.ffi.set_sqlite_provider_json_callback(lambda request: {})
    client.ffi.clear_sqlite_provider_json_callback()  # nothing registered: a no-op


def test_flattened_context_fields_are_accepted(client):
    """The core's flattened fields (request_context / client_budget / tool_config at the top)
    work like an invocation_context, for run_lua and lease evals."""
    code = "return {vulcan.context.request.request_id, vulcan.context.client_budget.b, vulcan.context.tool_config.t}"
    flat = {"request_context": {"request_id": "flat"}, "client_budget": {"b": 1}, "tool_config": {"t": 2}}
    assert client.ffi.call_json("luaskills_ffi_run_lua_json",
                                {"engine_id": client.engine_id, "code": code, **flat}) == ["flat", 1, 2]
    leases = client.runtime_leases()
    lease = leases.create("flat-sid")
    answer = leases.call_raw("eval", {"lease_id": lease["lease_id"], "code": code, **flat})
    assert answer["ok"] is True and answer["result"] == ["flat", 1, 2]
