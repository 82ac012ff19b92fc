"""runlua timeouts, host cancel, memory cap, and the guarded-run API shared with leases."""
import threading
import time

import pytest

from _engine_support import luajit_only
from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError
from luaskills_runtime.lua.guard import CancelToken, guarded_call, guarded_run, prepare_guarded_vm
from luaskills_runtime.lua.vm import LEASE
from luaskills_runtime.vulcan import new_vm

TIMEOUT_MS = 300
SLACK_S = 0.5  # every stopped request must return within its timeout + this


@pytest.fixture(scope="module")
def engine():
    # one VM: every request below runs on the same VM as the ones before it
    with LuaEngine(HostOptions(runlua_pool=(1, 1, 60))) as eng:
        yield eng


def error_text(report):
    assert report.startswith("# Runtime Execution Error\n"), report
    return report.split("## Error\n```text\n", 1)[1].split("\n```", 1)[0]


def timed(engine, code, timeout_ms=TIMEOUT_MS, **extra):
    start = time.monotonic()
    report = engine.execute_runlua_request_inline({"code": code, "timeout_ms": timeout_ms, **extra})
    return report, time.monotonic() - start


LOOPS = {
    "busy": "while true do end",
    "numeric for": "local s = 0 for i = 1, 1e15 do s = s + i end",
    "pcall body": "while true do pcall(function() local x = 1 end) end",
    "repeating error in pcall": "while true do pcall(error, 'again') end",
    "error handler loop": "while true do xpcall(function() while true do end end, "
                          "function(e) return e end) end",
    "coroutine": "local co = coroutine.wrap(function() while true do end end) co()",
    "coroutine resume loop": "while true do coroutine.resume(coroutine.create("
                             "function() while true do end end)) end",
    "string allocation": "local s = '' while true do s = s .. 'x' if #s > 4096 then s = '' end end",
    "user hook set first": "local n = 0 debug.sethook(function() n = n + 1 end, '', 100) "
                           "while true do end",
    "hook setter loop": "while true do debug.sethook(function() end, '', 10) debug.sethook() end",
    "table allocation": "local t = {} local i = 0 while true do i = i + 1 "
                        "t[i % 5000 + 1] = {i, tostring(i)} end",
}


@pytest.mark.parametrize("name", list(LOOPS))
def test_loops_stop_on_time_and_the_vm_stays_healthy(engine, name):
    report, elapsed = timed(engine, "print('started') " + LOOPS[name])
    assert error_text(report) == f"runtime error: luaexec execution timed out after {TIMEOUT_MS} ms"
    assert report.endswith("## Printed Output\n```text\nstarted\n```")
    assert TIMEOUT_MS / 1000 - 0.05 <= elapsed < TIMEOUT_MS / 1000 + SLACK_S, elapsed
    # the next request on the same VM is not affected by the guard that fired
    report, elapsed = timed(engine, "local s = 0 for i = 1, 200000 do s = s + i end "
                                    "local ok, e = pcall(error, 'caught') return ok, e, s",
                            timeout_ms=60_000)
    assert report.endswith("```json\nfalse\n```\n\n2. \n```text\ncaught\n```\n\n3. \n"
                           "```json\n20000100000\n```"), report
    assert elapsed < 2
    assert engine.runlua_service.pool.stats()["created"] == 1


def test_guard_does_not_cut_short_a_long_enough_timeout(engine):
    report, elapsed = timed(engine, "local t0 = os.clock() while os.clock() - t0 < 0.2 do end "
                                    "return 'done'", timeout_ms=5_000)
    assert report.endswith("```text\ndone\n```")


def test_cancel_a_running_request(engine):
    outcome = {}

    def run():
        outcome["report"] = engine.execute_runlua_request_inline(
            {"code": "print('working') while true do pcall(function() end) end",
             "timeout_ms": 30_000}, request_id="job-1")

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 5
    while engine.runlua_service._running.get("job-1") is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    start = time.monotonic()
    assert engine.cancel_runlua("job-1") is True
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - start < SLACK_S
    assert error_text(outcome["report"]) == "runtime error: luaexec execution cancelled by the host"
    assert "working" in outcome["report"]
    assert engine.cancel_runlua("job-1") is False  # no longer running
    assert engine.cancel_runlua("never-started") is False
    # healthy afterwards
    assert engine.execute_runlua_request_inline({"code": "return 5"}).endswith("```json\n5\n```")


def test_request_ids_must_be_unique_while_running(engine):
    started = threading.Event()
    outcome = {}

    def run():
        outcome["report"] = engine.execute_runlua_request_inline(
            {"code": "while true do end", "timeout_ms": 400}, request_id="dup")

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 5
    while "dup" not in engine.runlua_service._running and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(LuaSkillsError, match="luaexec request id `dup` is already running"):
        engine.execute_runlua_request_inline({"code": "return 1"}, request_id="dup")
    thread.join(5)
    assert "timed out after 400 ms" in outcome["report"]


def test_engine_close_stops_running_requests():
    eng = LuaEngine(HostOptions(runlua_pool=(1, 1, 60)))
    outcome = {}

    def run():
        outcome["report"] = eng.execute_runlua_request_inline(
            {"code": "while true do end", "timeout_ms": 30_000})

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 5
    while not eng.runlua_service._anonymous and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    start = time.monotonic()
    eng.close()
    thread.join(5)
    assert time.monotonic() - start < SLACK_S
    assert error_text(outcome["report"]) == (
        "runtime error: luaexec execution cancelled: the engine is closing")


# ---- memory cap --------------------------------------------------------------------------------

MEMORY_CAP = 24 * 1024 * 1024


@pytest.fixture(scope="module")
def capped():
    with LuaEngine(HostOptions(runlua_pool=(1, 1, 60), max_memory_bytes=MEMORY_CAP)) as eng:
        yield eng


@pytest.mark.parametrize("code", [
    "local t = {} for i = 1, 1e9 do t[i] = {i} end",
    "local s = string.rep('x', 4e8)",
    "local parts = {} while true do parts[#parts + 1] = string.rep('y', 1e6) .. #parts end",
    "local t = {} while true do pcall(function() t[#t + 1] = string.rep('z', 1e5) .. #t end) end",
])
def test_memory_cap_fails_the_request_and_the_vm_recovers(capped, code):
    report, elapsed = timed(capped, code, timeout_ms=10_000)
    assert error_text(report) == (
        f"memory error: luaexec memory limit of {MEMORY_CAP} bytes exceeded"), report
    assert elapsed < 10
    report = capped.execute_runlua_request_inline({"code": "return #string.rep('ok', 1000)"})
    assert report.endswith("```json\n2000\n```")


def test_memory_error_caught_by_the_code_is_its_own_business(capped):
    report = capped.execute_runlua_request_inline(
        {"code": "local ok, err = pcall(string.rep, 'x', 4e8) return ok, err"})
    assert report.endswith("```json\nfalse\n```\n\n2. \n```text\nnot enough memory\n```")


def test_memory_cap_too_small_for_a_vm():
    with LuaEngine(HostOptions(max_memory_bytes=4096)) as eng:
        with pytest.raises(LuaSkillsError, match="too small to set up a runlua VM"):
            eng.execute_runlua_request_inline({"code": "return 1"})


# ---- guarded-run API (shared with leases) -------------------------------------------------------

@pytest.fixture
def lease_vm():
    with LuaEngine() as eng:
        vm = new_vm(eng._state, LEASE)
        yield prepare_guarded_vm(vm)
        vm.close()


def test_guarded_run_results(lease_vm):
    ok = guarded_run(lease_vm, "return 1, 'two'", timeout_ms=1000)
    assert ok.ok and ok.values == (1, b"two") and ok.error == ""
    err = guarded_run(lease_vm, "error('bad', 0)", timeout_ms=1000)
    assert (err.status, err.reason, err.error) == ("error", "bad", "runtime error: bad")
    syntax = guarded_run(lease_vm, "return +", b"=lease", timeout_ms=1000)
    assert syntax.status == "syntax" and syntax.error.startswith("syntax error: lease:1:")
    start = time.monotonic()
    slow = guarded_run(lease_vm, "while true do end", timeout_ms=100, timeout_text="stop now")
    assert (slow.status, slow.error) == ("timeout", "runtime error: stop now")
    assert time.monotonic() - start < 0.1 + SLACK_S
    # globals persist on a lease VM (no isolation there), and the guard is disarmed
    assert guarded_run(lease_vm, "x = 5", timeout_ms=1000).ok
    assert guarded_run(lease_vm, "return x", timeout_ms=1000).values == (5,)


# Coroutines made by an earlier run (a lease keeps them) and resumed by a later one.  LuaJIT's
# hook is global to the state; PUC Lua's is per coroutine, so there the guard's hook must have
# been given to each coroutine when it was made (lua_hook_guard.lua).
EARLIER_COROUTINES = {
    "create": ("co = coroutine.create(function() coroutine.yield() while true do end end) "
               "coroutine.resume(co)", "coroutine.resume(co)"),
    "wrap": ("w = coroutine.wrap(function() coroutine.yield() while true do pcall(error, 'x') end "
             "end) w()", "w()"),
    "nested": ("inner = coroutine.wrap(function() coroutine.yield() while true do end end) inner() "
               "outer = coroutine.create(function() coroutine.yield() inner() end) "
               "coroutine.resume(outer)", "print(coroutine.resume(outer))"),
    "pcall resume loop": ("co = coroutine.create(function() while true do coroutine.yield() end end)",
                          "while true do pcall(coroutine.resume, co) end"),
}


@pytest.mark.parametrize("name", sorted(EARLIER_COROUTINES))
def test_coroutines_from_an_earlier_run_are_stopped_too(lease_vm, name):
    setup, resume = EARLIER_COROUTINES[name]
    assert guarded_run(lease_vm, setup, timeout_ms=5000).ok
    start = time.monotonic()
    result = guarded_run(lease_vm, resume, timeout_ms=150, timeout_text="stopped")
    assert (result.status, result.error) == ("timeout", "runtime error: stopped")
    assert time.monotonic() - start < 0.15 + SLACK_S
    assert guarded_run(lease_vm, "return 1", timeout_ms=1000).values == (1,)


@luajit_only
@pytest.mark.usefixtures("jit_off_hook")  # that mechanism's own behaviour
def test_guarded_run_jit_is_off_for_lease_vms(lease_vm):
    assert guarded_run(lease_vm, "return (jit.status())", timeout_ms=1000).values == (False,)


def test_cancel_token_before_and_during(lease_vm):
    token = CancelToken()
    token.cancel("early")
    result = guarded_run(lease_vm, "return 1", timeout_ms=1000, cancel=token)
    assert (result.status, result.error) == ("cancelled", "runtime error: early")

    token = CancelToken()
    timer = threading.Timer(0.1, token.cancel)
    timer.start()
    result = guarded_run(lease_vm, "while true do end", timeout_ms=30_000, cancel=token)
    timer.join()
    assert (result.status, result.reason) == ("cancelled", "luaexec execution cancelled by the host")


def test_guarded_call_for_python_code_that_calls_lua(lease_vm):
    loop = lease_vm.vm.runtime.eval("function() while true do end end")
    result = guarded_call(lease_vm, lambda: loop(), timeout_ms=100)
    assert result.status == "timeout"
    result = guarded_call(lease_vm, lambda: 7, timeout_ms=100)
    assert result.ok and result.values == (7,)


def test_cwd_lock_wait_counts_against_the_timeout(lease_vm, tmp_path):
    from luaskills_runtime.lua.cwd import working_directory

    holder_ready, release = threading.Event(), threading.Event()

    def hold():
        with working_directory(str(tmp_path)):
            holder_ready.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    holder_ready.wait(5)
    try:
        start = time.monotonic()
        result = guarded_run(lease_vm, "return 1", timeout_ms=150, cwd=str(tmp_path))
        assert result.status == "timeout"
        assert time.monotonic() - start < 0.15 + SLACK_S
    finally:
        release.set()
        thread.join(5)
