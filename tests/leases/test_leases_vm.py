"""Lease VMs: persistent globals, request scope, module roots, cwd, the system_lua_lib profile,
memory cap, timeouts (also in JIT-compiled loops), cancellation, parallel evals, teardown."""
import os
import sys
import threading
import time

import pytest

from _engine_support import luajit_only
from _lease_support import create, evaluate, KillRecorder, lease_vm, make_leases, wait_until
from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError
from luaskills_runtime.leases import PUBLIC, SYSTEM


SEP = "\\" if sys.platform == "win32" else "/"
NATIVE = ".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so"


def lua_patterns(*roots):
    return "".join(f"{root}{SEP}?.lua;{root}{SEP}?{SEP}init.lua;" for root in roots)


def os_error_text(call, *args):
    """How the reference prints the OSError `call(*args)` raises here (Rust's io::Error)."""
    try:
        call(*args)
    except OSError as error:
        return f"{error.strerror} (os error {error.errno})"
    raise AssertionError("expected an OSError")


def result_of(leases, lease_id, code, profile=PUBLIC, **fields):
    payload = evaluate(leases, profile, lease_id=lease_id, code=code, **fields)
    assert payload["ok"] is True, payload
    return payload["result"]


def failure_of(leases, lease_id, code, profile=PUBLIC, **fields):
    payload = evaluate(leases, profile, lease_id=lease_id, code=code, **fields)
    assert payload["ok"] is False and payload["error_code"] == "eval_failed", payload
    return payload["message"]


# ---- state and scope ----------------------------------------------------------------------------

def test_globals_persist_per_lease_and_replace_starts_fresh(lease_env):
    leases, _ = lease_env
    a = create(leases, sid="a")["lease_id"]
    b = create(leases, sid="b")["lease_id"]
    counter = "counter = (counter or 0) + 1 return counter"
    assert [result_of(leases, a, counter) for _ in range(3)] == [1, 2, 3]
    assert result_of(leases, b, counter) == 1
    fresh = create(leases, sid="a", replace=True)["lease_id"]
    assert result_of(leases, fresh, counter) == 1
    assert evaluate(leases, lease_id=a, code="return counter")["error_code"] == "lease_replaced"


def test_args_and_request_scope(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    code = """return {
      args = args,
      request = vulcan.context.request,
      client_info = vulcan.context.client_info,
      caps = vulcan.context.client_capabilities,
      budget = vulcan.context.client_budget,
      tool = vulcan.context.tool_config,
      active = vulcan.runtime.internal.luaexec_active,
      skill_dir = vulcan.context.skill_dir or "nil",
    }"""
    scoped = result_of(leases, lease_id, code, args={"n": [1, 2]},
                       request_context={"session_id": "s1", "transport_name": "mcp",
                                        "client_info": {"name": "host", "extra": 1},
                                        "client_capabilities": {"sampling": True}, "other": 5},
                       client_budget={"tokens": 10}, tool_config={"mode": "x"})
    assert scoped == {
        "args": {"n": [1, 2]},
        "request": {"session_id": "s1", "transport_name": "mcp", "client_info": {"name": "host"},
                    "client_capabilities": {"sampling": True}},
        "client_info": {"name": "host"},
        "caps": {"sampling": True},
        "budget": {"tokens": 10},
        "tool": {"mode": "x"},
        "active": True,
        "skill_dir": "nil",
    }
    plain = result_of(leases, lease_id, code, args=7)
    assert plain == {"args": [], "request": [], "caps": [], "budget": [], "tool": [],
                     "active": True, "skill_dir": "nil"}


def test_a_broken_namespace_fails_evals_with_the_scope_error(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    assert result_of(leases, lease_id, "vulcan.context = nil return 1") == 1
    message = failure_of(leases, lease_id, "return 2")
    assert message.startswith("request scope reset failed: vulcan.context is not a table")


# ---- module roots ---------------------------------------------------------------------------------

def test_lua_and_c_roots_are_prepended_in_order(lease_env, tmp_path):
    leases, _ = lease_env
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    (r1 / "pkg").mkdir(parents=True)
    r2.mkdir()
    (r1 / "alpha.lua").write_text("return { name = 'alpha' }")
    (r1 / "pkg" / "init.lua").write_text("return { name = 'pkg' }")
    (r2 / "alpha.lua").write_text("return { name = 'shadowed' }")
    (r2 / "beta.lua").write_text("return { name = 'beta' }")
    lease_id = create(leases, sid="a", lua_roots=[str(r1), " ", str(r2)], c_roots=["/c1"])["lease_id"]
    got = result_of(leases, lease_id, """return { require('alpha').name, require('pkg').name,
        require('beta').name, package.path, package.cpath }""")
    assert got[:3] == ["alpha", "pkg", "beta"]
    assert got[3].startswith(lua_patterns(r1, r2))
    assert got[4].startswith(f"/c1{SEP}?{NATIVE};/c1{SEP}?{SEP}init{NATIVE};")


def test_no_roots_leave_the_default_paths(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    other = create(leases, sid="b", lua_roots=["/x"])["lease_id"]
    default = result_of(leases, lease_id, "return package.path")
    assert result_of(leases, other, "return package.path") == lua_patterns("/x") + default


# ---- cwd -------------------------------------------------------------------------------------------

def test_cwd_applies_during_eval_and_is_restored(lease_env, tmp_path):
    leases, _ = lease_env
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.txt").write_text("hello")
    before = os.getcwd()
    lease = create(leases, sid="a", cwd=f" {work} ")
    assert lease["cwd"] == str(work)
    got = result_of(leases, lease["lease_id"], "return { vulcan.runtime.cwd(), vulcan.fs.read('data.txt') }")
    assert got == [os.path.realpath(work), "hello"]
    assert os.getcwd() == before
    failure_of(leases, lease["lease_id"], "error('x')")
    assert os.getcwd() == before


def test_missing_cwd_fails_the_eval_with_the_os_error(lease_env, tmp_path):
    leases, _ = lease_env
    missing = tmp_path / "missing"
    lease_id = create(leases, sid="a", cwd=str(missing))["lease_id"]
    assert failure_of(leases, lease_id, "return 1") == (
        f"Runtime session eval error: runtime error: runtime lease set cwd {missing}: "
        f"{os_error_text(os.chdir, missing)}")


def test_cwd_lock_wait_honours_timeout_and_cancel(lease_env, tmp_path):
    leases, _ = lease_env
    holder = create(leases, sid="holder", cwd=str(tmp_path))["lease_id"]
    waiter = create(leases, sid="waiter", cwd=str(tmp_path))["lease_id"]
    # the holder leaves a mark in its cwd once it runs there, i.e. holds the cwd lock
    spinning = threading.Thread(target=evaluate, args=(leases,), kwargs=dict(
        lease_id=holder, code="io.open('holder-entered', 'w'):close() while true do end",
        timeout_ms=30_000))
    spinning.start()
    try:
        assert wait_until(lambda: (tmp_path / "holder-entered").exists())
        started = time.monotonic()
        assert failure_of(leases, waiter, "return 1", timeout_ms=300) == (
            "Runtime session eval error: runtime error: luaexec execution timed out after 300 ms")
        assert time.monotonic() - started < 5
        result = {}
        waiting = threading.Thread(target=lambda: result.update(evaluate(
            leases, lease_id=waiter, code="return 1", timeout_ms=30_000)))
        waiting.start()
        assert wait_until(lambda: leases.manager._leases[waiter].busy.locked())
        assert leases.cancel({"lease_id": waiter}, PUBLIC, from_json=False)["cancelled"] is True
        waiting.join(5)
        assert result["message"] == (f"Runtime session eval error: runtime error: runtime session lease `{waiter}` "
                                     "eval was cancelled by the host")
    finally:
        leases.cancel({"lease_id": holder}, PUBLIC, from_json=False)
        spinning.join(10)
    assert not spinning.is_alive()
    assert result_of(leases, waiter, "return 2") == 2


# ---- system_lua_lib profile ------------------------------------------------------------------------

def test_system_profile_uses_its_dir_as_cwd_and_first_root(tmp_path):
    system_dir = tmp_path / "deep" / "system_lua_lib"
    engine, leases, _ = make_leases(tmp_path, system_lua_lib_dir=str(system_dir))
    try:
        assert not system_dir.exists()
        lease = create(leases, SYSTEM, sid="s", lua_roots=[str(tmp_path)])
        assert system_dir.is_dir()  # created on demand
        assert lease["system_lua_lib"] == str(system_dir) and lease["cwd"] == str(system_dir)
        (system_dir / "syslib.lua").write_text("return 'from system'")
        got = result_of(leases, lease["lease_id"],
                        "return { require('syslib'), vulcan.runtime.cwd(), package.path }", SYSTEM)
        assert got[0] == "from system" and got[1] == os.path.realpath(system_dir)
        assert got[2].startswith(lua_patterns(system_dir, tmp_path))
        # a host-given cwd wins; the system dir listed by the host is not added twice
        other = tmp_path / "other"
        other.mkdir()
        lease2 = create(leases, SYSTEM, sid="s2", cwd=str(other), lua_roots=[str(tmp_path), str(system_dir)])
        assert lease2["cwd"] == str(other) and lease2["system_lua_lib"] == str(system_dir)
        path = result_of(leases, lease2["lease_id"], "return package.path", SYSTEM)
        assert path.startswith(lua_patterns(tmp_path, system_dir))
        assert path.count(f"{system_dir}{SEP}?.lua;") == 1
        # public leases never get the system dir
        public = create(leases, sid="p")
        assert public["system_lua_lib"] is None and public["cwd"] is None
    finally:
        leases.shutdown()
        engine.close()


def test_system_dir_that_cannot_be_created_is_raised(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    engine, leases, _ = make_leases(tmp_path, system_lua_lib_dir=str(blocker / "lib"))
    try:
        with pytest.raises(LuaSkillsError) as info:
            create(leases, SYSTEM, sid="s")
        assert str(info.value) == (f"failed to create system_lua_lib_dir {blocker / 'lib'}: "
                                   f"{os_error_text(os.makedirs, blocker / 'lib')}")
    finally:
        leases.shutdown()
        engine.close()


def test_default_system_dir_is_documented_per_user_location(monkeypatch, tmp_path):
    from luaskills_runtime.leases.vm import default_system_lua_lib_dir
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_system_lua_lib_dir() == str(tmp_path / "xdg" / "luaskills-runtime" / "system_lua_lib")


# ---- memory cap ------------------------------------------------------------------------------------

def test_memory_cap_ends_runaway_allocation_cleanly(tmp_path):
    engine, leases, _ = make_leases(tmp_path, max_memory_bytes=16 * 1024 * 1024)
    try:
        lease_id = create(leases, sid="m")["lease_id"]
        message = failure_of(leases, lease_id, "local t = {} for i = 1, 1e9 do t[i] = {i} end")
        assert message == "Runtime session eval error: memory error: luaexec memory limit of 16777216 bytes exceeded"
        assert result_of(leases, lease_id, "collectgarbage() return 1 + 1") == 2
    finally:
        leases.shutdown()
        engine.close()


# ---- timeouts --------------------------------------------------------------------------------------

def test_timeout_in_a_plain_loop(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    started = time.monotonic()
    assert failure_of(leases, lease_id, "while true do end", timeout_ms=200) == (
        "Runtime session eval error: runtime error: luaexec execution timed out after 200 ms")
    assert 0.15 < time.monotonic() - started < 5
    assert result_of(leases, lease_id, "return 'still usable'") == "still usable"


@luajit_only
@pytest.mark.usefixtures("jit_off_hook")  # that mechanism's own behaviour
def test_timeout_fires_in_a_loop_the_jit_compiled_earlier(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    lvm = leases.manager._leases[lease_id].lvm
    # Compile the loop with the JIT on, as code that got hold of the real jit.on could (lease
    # code cannot: its jit.on refuses), then show the next eval still stops at its deadline.
    lvm._jit_on()
    traces = lvm.vm.runtime.execute(b"""
        function spin(n) local s = 0 for i = 1, n do s = s + i % 7 end return s end
        spin(3e6)
        local jutil, count = require('jit.util'), 0
        for i = 1, 256 do if jutil.traceinfo(i) then count = count + 1 end end
        return count""")
    assert traces >= 1  # the loop runs as a compiled trace now
    started = time.monotonic()
    assert failure_of(leases, lease_id, "return spin(1e15)", timeout_ms=300) == (
        "Runtime session eval error: runtime error: luaexec execution timed out after 300 ms")
    assert time.monotonic() - started < 5
    assert result_of(leases, lease_id, "return { spin(10), (jit.status()) }") == [
        sum(i % 7 for i in range(1, 11)), False]


@luajit_only
@pytest.mark.usefixtures("jit_off_hook")  # that mechanism's own behaviour
def test_lease_code_cannot_turn_the_jit_on(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    message = failure_of(leases, lease_id, "jit.on()")
    assert message == ("Runtime session eval error: runtime error: runtime_lease:3: jit.on is not "
                       "available here: guarded Lua code runs with the JIT off")
    code = "pcall(jit.on) pcall(require('jit').on) local s = 0 while true do s = s + 1 end"
    assert failure_of(leases, lease_id, code, timeout_ms=300) == (
        "Runtime session eval error: runtime error: luaexec execution timed out after 300 ms")


def test_timeout_cannot_be_swallowed_by_pcall(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    code = "while true do pcall(function() while true do end end) end"
    assert failure_of(leases, lease_id, code, timeout_ms=200) == (
        "Runtime session eval error: runtime error: luaexec execution timed out after 200 ms")


# ---- cancellation ----------------------------------------------------------------------------------

def test_cancel_a_running_eval(lease_env):
    leases, _ = lease_env
    lease = create(leases, sid="a")
    lease_id = lease["lease_id"]
    idle = leases.cancel({"lease_id": lease_id}, PUBLIC, from_json=False)
    assert idle["ok"] is True and idle["cancelled"] is False
    assert set(idle) == {"ok", "sid", "lease_id", "generation", "profile", "lifetime", "cwd",
                         "system_lua_lib", "expires_at_unix_ms", "cancelled", "policy"}
    assert result_of(leases, lease_id, "return 1") == 1  # an idle cancel does not stick
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(evaluate(
        leases, lease_id=lease_id, code="x = 0 while true do x = x + 1 end", timeout_ms=60_000)))
    started = time.monotonic()
    worker.start()
    assert wait_until(lambda: leases.manager._leases[lease_id].busy.locked())
    time.sleep(0.05)
    answer = leases.cancel({"lease_id": lease_id, "sid": "a", "generation": 1}, PUBLIC, from_json=False)
    assert answer["cancelled"] is True
    worker.join(10)
    assert time.monotonic() - started < 10
    assert outcome == {"ok": False, "error_code": "eval_failed",
                       "message": f"Runtime session eval error: runtime error: runtime session lease `{lease_id}` "
                                  "eval was cancelled by the host"}
    assert result_of(leases, lease_id, "return x > 0") is True  # globals survive a cancel


def test_cancel_errors(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    cancel = lambda **f: leases.cancel(f, PUBLIC, from_json=False)
    assert cancel(lease_id="nope")["error_code"] == "lease_not_found"
    assert cancel(lease_id=lease_id, sid="b")["error_code"] == "lease_sid_mismatch"
    assert cancel(lease_id=lease_id, generation=9)["error_code"] == "lease_generation_mismatch"
    leases.close({"lease_id": lease_id}, PUBLIC, from_json=False)
    assert cancel(lease_id=lease_id)["error_code"] == "lease_closed"


def test_cancel_through_the_engine_json_api(tmp_path):
    import json
    with LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "s"))) as engine:
        lease_id = engine.create_runtime_lease(sid="a")["lease_id"]
        outcome = {}
        worker = threading.Thread(target=lambda: outcome.update(json.loads(engine.eval_runtime_lease_json(
            json.dumps({"lease_id": lease_id, "code": "while true do end"})))))
        worker.start()
        assert wait_until(lambda: engine.runtime_lease_status(lease_id=lease_id)["ok"] is False)
        answer = json.loads(engine.cancel_runtime_lease_json(json.dumps({"lease_id": lease_id})))
        assert answer["cancelled"] is True
        worker.join(10)
        assert "eval was cancelled by the host" in outcome["message"]


# ---- parallel evals ----------------------------------------------------------------------------------

def test_evals_of_different_leases_run_at_the_same_time(lease_env, tmp_path):
    leases, _ = lease_env
    waiter = create(leases, sid="waiter")["lease_id"]
    signaller = create(leases, sid="signaller")["lease_id"]
    flag = str(tmp_path / "flag")
    outcome = {}
    # the waiter's Lua code spins until the signaller's Lua code writes the flag: both must be
    # inside Lua at once, or the waiter would run into its timeout
    worker = threading.Thread(target=lambda: outcome.update(evaluate(
        leases, lease_id=waiter, code="while not vulcan.fs.exists(args.flag) do end return 'seen'",
        args={"flag": flag}, timeout_ms=20_000)))
    worker.start()
    assert wait_until(lambda: leases.manager._leases[waiter].busy.locked())
    assert result_of(leases, signaller, "vulcan.fs.write(args.flag, 'x') return 1", args={"flag": flag}) == 1
    worker.join(20)
    assert outcome["result"] == "seen"


# ---- teardown -----------------------------------------------------------------------------------------

def test_close_replace_and_engine_close_kill_tracked_resources(tmp_path):
    engine = LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "s")))
    leases = engine._runtime_leases
    closed = engine.create_runtime_lease(sid="a")["lease_id"]
    replaced = engine.create_runtime_lease(sid="b")["lease_id"]
    kept = engine.create_system_runtime_lease(sid="c")["lease_id"]
    recorders = {}
    for lease_id in (closed, replaced, kept):
        recorders[lease_id] = KillRecorder()
        lease_vm(leases, lease_id).track(recorders[lease_id])
    engine.close_runtime_lease(lease_id=closed)
    assert recorders[closed].killed.is_set()
    engine.create_runtime_lease(sid="b", replace=True)
    assert recorders[replaced].killed.is_set()
    assert not recorders[kept].killed.is_set()
    engine.close()
    assert recorders[kept].killed.is_set()


def test_engine_close_stops_a_running_eval(tmp_path):
    engine = LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "s")))
    lease_id = engine.create_runtime_lease(sid="a")["lease_id"]
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(engine.eval_runtime_lease(
        lease_id=lease_id, code="while true do end")))
    worker.start()
    assert wait_until(lambda: engine._runtime_leases.manager._leases[lease_id].busy.locked())
    started = time.monotonic()
    engine.close()
    worker.join(10)
    assert time.monotonic() - started < 10
    assert outcome["message"] == "Runtime session eval error: runtime error: LuaEngine is closing"
    assert not any(t.name == "luaskills-lease-sweeper" for t in threading.enumerate())


# ---- managed io ---------------------------------------------------------------------------------

def test_managed_io_is_installed_and_files_persist_across_evals(lease_env, tmp_path):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    target = tmp_path / "out.txt"
    assert result_of(leases, lease_id, "return select(2, pcall(io.popen, 'true', 'w'))") == \
        "vulcan.io.popen: write mode is not implemented yet"
    assert result_of(leases, lease_id, "F = io.open(args.path, 'w') F:write('abc') return io.type(F)",
                     args={"path": str(target)}) == "file"
    assert result_of(leases, lease_id, "F:write('def') F:close() return io.type(F)") == "closed file"
    assert target.read_text() == "abcdef"


def test_native_io_when_the_host_disables_managed_io(tmp_path):
    engine, leases, _ = make_leases(tmp_path, enable_managed_io_compat=False)
    try:
        lease_id = create(leases, sid="a")["lease_id"]
        assert result_of(leases, lease_id, "return package.preload.io == nil and io.popen ~= nil") is True
    finally:
        leases.shutdown()
        engine.close()


def test_largest_timeout_is_accepted(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    assert result_of(leases, lease_id, "return 1", timeout_ms=2**64 - 1) == 1


def test_closing_a_lease_releases_its_lua_heap_at_once(tmp_path):
    engine, leases, _ = make_leases(tmp_path, max_memory_bytes=256 * 1024 * 1024)
    try:
        lease_id = create(leases, sid="a")["lease_id"]
        runtime = leases.manager._leases[lease_id].lvm.vm.runtime
        assert result_of(leases, lease_id, "big = string.rep('x', 40 * 1024 * 1024) return #big") > 0
        assert runtime.get_memory_used() > 40 * 1024 * 1024
        leases.close({"lease_id": lease_id}, PUBLIC, from_json=False)
        # the heap is emptied by the close itself, not by a later garbage collection
        assert runtime.get_memory_used() < 4 * 1024 * 1024
    finally:
        leases.shutdown()
        engine.close()
