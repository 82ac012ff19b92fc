"""The synchronous host API added for agent hosts: engine.cancel(request_id) for run_lua and
runlua (process trees die), lease handles, keyword checks, and the session wake-up pipe the
async API waits on."""
import os
import select
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from luaskills_runtime import Lease, LeaseError, LuaSkillsError
from luaskills_runtime.process import ProcessSession
from _process_support import session_tree_lua, wait_gone, wait_pid_file


def _run_in_thread(fn):
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as error:
            box["error"] = error
    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def test_cancel_run_lua_by_request_id_kills_its_tree(engine, tmp_path):
    pid_file = str(tmp_path / "pid")
    thread, box = _run_in_thread(lambda: engine.run_lua(session_tree_lua(pid_file, "while true do end"), request_id="job"))
    pid = wait_pid_file(pid_file)
    assert engine.cancel("job") is True
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(box.get("error"), LuaSkillsError)
    assert "luaexec execution cancelled by the host" in str(box["error"])
    assert wait_gone(pid, 1.0)
    assert engine.cancel("job") is False
    assert engine.run_lua("return 'ok'", request_id="job") == "ok"   # id free again


def test_run_lua_timeout_kills_its_tree(engine, tmp_path):
    # timeout_ms goes through the same guarded path as cancel: the run stops with the
    # reference's timeout text and the process trees its VM started die with it.
    pid_file = str(tmp_path / "pid")
    started = time.monotonic()
    with pytest.raises(LuaSkillsError) as caught:
        engine.run_lua(session_tree_lua(pid_file, "while true do end"), timeout_ms=300)
    assert str(caught.value) == "Lua run_lua error: luaexec execution timed out after 300 ms"
    assert time.monotonic() - started < 5
    assert wait_gone(wait_pid_file(pid_file), 1.0)


def test_run_lua_timeout_and_request_id_together(engine):
    # a deadline far away: the cancel wins; a near one with nobody cancelling: the timeout wins
    thread, box = _run_in_thread(lambda: engine.run_lua("while true do end", timeout_ms=60_000,
                                                        request_id="both"))
    deadline = time.monotonic() + 5
    while not engine.cancel("both"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    thread.join(5)
    assert "luaexec execution cancelled by the host" in str(box["error"])
    with pytest.raises(LuaSkillsError, match="timed out after 100 ms"):
        engine.run_lua("while true do end", timeout_ms=100, request_id="both")
    assert engine.run_lua("return args.n", {"n": 3}, timeout_ms=1000, request_id="both") == 3


def test_cancel_run_lua_blocked_in_exec(engine, tmp_path):
    pid_file = str(tmp_path / "pid")
    code = f"return vulcan.process.exec{{command='sleep 30 & echo $! > {pid_file}; wait'}}"
    thread, box = _run_in_thread(lambda: engine.run_lua(code, request_id=("exec", 1)))
    pid = wait_pid_file(pid_file)
    t0 = time.monotonic()
    assert engine.cancel(("exec", 1))
    thread.join(5)
    assert time.monotonic() - t0 < 1.0
    assert wait_gone(pid, 1.0)


def test_cancel_runlua_request_kills_its_tree(engine, tmp_path):
    pid_file = str(tmp_path / "pid")
    request = {"code": session_tree_lua(pid_file, "while true do end"), "timeout_ms": 30000}
    thread, box = _run_in_thread(
        lambda: engine.execute_runlua_request_inline(request, request_id="rl"))
    pid = wait_pid_file(pid_file)
    assert engine.cancel("rl") is True
    thread.join(5)
    assert "luaexec execution cancelled by the host" in box["value"]
    assert wait_gone(pid, 1.0)


def test_duplicate_run_lua_request_id_is_rejected(engine):
    thread, box = _run_in_thread(lambda: engine.run_lua("while true do end", request_id="dup"))
    deadline = time.monotonic() + 5
    while "dup" not in engine._run_lua_running and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(LuaSkillsError, match="already running"):
        engine.run_lua("return 1", request_id="dup")
    engine.cancel("dup")
    thread.join(5)


def test_run_lua_request_id_is_keyword_only(engine):
    with pytest.raises(TypeError):
        engine.run_lua("return 1", None, "id")


def test_cancellable_run_lua_keeps_its_invocation_context(engine):
    # request_id takes the guarded path; the invocation context must reach vulcan.context there
    # too, and only for that call
    context = {"request_context": {"session_id": "s9"}, "client_budget": {}, "tool_config": {}}
    code = "return vulcan.context.request.session_id"
    assert engine.run_lua(code, invocation_context=context, request_id="ctx") == "s9"
    assert engine.run_lua(code, request_id="ctx") is None
    thread, box = _run_in_thread(lambda: engine.run_lua(
        "while true do end", invocation_context=context, request_id="spin"))
    deadline = time.monotonic() + 5
    while "spin" not in engine._run_lua_running and time.monotonic() < deadline:
        time.sleep(0.005)
    assert engine.cancel("spin") is True
    thread.join(5)
    assert "luaexec execution cancelled by the host" in str(box.get("error"))


def test_lease_handle_lifecycle(engine):
    with engine.open_lease("handle", ttl_sec=60) as lease:
        assert isinstance(lease, Lease)
        assert lease.sid == "handle" and lease.generation >= 1
        assert lease.eval("x = (x or 0) + args.n return x", {"n": 2}) == 2
        assert lease.eval("return x", timeout_ms=1000) == 2
        with pytest.raises(LeaseError) as info:
            lease.eval("while true do end", timeout_ms=50)
        assert info.value.error_code == "eval_failed"
        assert "timed out after 50 ms" in str(info.value)
        assert info.value.payload["ok"] is False
        status = lease.status()
        assert status["lease_id"] == lease.lease_id and status["ok"]
        assert lease.cancel() is False
        lease_id = lease.lease_id
    assert engine.runtime_lease_status(lease_id=lease_id)["ok"] is False
    assert lease.close() is None   # idempotent


def test_open_lease_conflicts_and_replace(engine):
    first = engine.open_lease("same")
    with pytest.raises(LeaseError) as info:
        engine.open_lease("same")
    assert info.value.error_code == "lease_exists"
    second = engine.open_lease("same", replace=True)
    assert second.generation > first.generation
    with pytest.raises(LeaseError):
        first.eval("return 1")   # the old handle cannot drive the new lease
    assert second.eval("return 1") == 1


def test_open_system_lease(engine):
    lease = engine.open_lease("sys", system=True)
    assert lease.profile == "system_lua_lib"
    assert lease.eval("return 5") == 5
    lease.close()


@pytest.mark.parametrize("call", [
    lambda e: e.create_runtime_lease(sidd="x"),
    lambda e: e.eval_runtime_lease(lease_id="l", code="return 1", timeout=5),
    lambda e: e.runtime_lease_status(lease="l"),
    lambda e: e.list_system_runtime_leases(sids="x"),
    lambda e: e.open_lease("x", ttl=3),
])
def test_unknown_keyword_arguments_raise_type_error(engine, call):
    with pytest.raises(TypeError):
        call(engine)


def test_unknown_session_option_raises_type_error():
    with pytest.raises(TypeError):
        ProcessSession.open("cat", timeout=3)


# ---- the wake-up pipe ---------------------------------------------------------------------------

def _readable(fd, timeout):
    return bool(select.select([fd], [], [], timeout)[0])


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


@settings(max_examples=15, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=6))
def test_wake_pipe_signals_every_output(chunks):
    # Model: after each write that the child echoes, the pipe turns readable and the session
    # holds exactly the bytes written so far (minus what was drained).
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    session = ProcessSession.open("cat", stdout_encoding="base64")
    try:
        session._set_wake_fd(w)
        expected = b""
        for chunk in chunks:
            _drain(r)
            session._write_bytes(chunk)
            expected += chunk
            deadline = time.monotonic() + 5
            while len(session._peek(1)) < len(expected):
                assert _readable(r, max(deadline - time.monotonic(), 0)), "no wake-up byte"
                _drain(r)
            assert session._peek(1) == expected
        session._close_stdin()
        assert _readable(r, 5)    # EOF / exit wake the loop too
        session._set_wake_fd(-1)
        _drain(r)
        session.close()
        assert not _readable(r, 0.05)  # nothing is written after -1
    finally:
        session.kill()
        os.close(r)
        os.close(w)
