"""Child processes opened by lease code live across evals and die with the lease: when it is
closed, replaced, expires, or the engine closes."""
import sys
import time
import uuid

import psutil
import pytest

from _lease_support import wait_until
from luaskills_runtime import HostOptions, LuaEngine
from luaskills_runtime.leases import PUBLIC

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses sh and sleep")


def tagged_children(tag: str):
    """Our descendants whose command line carries `tag`."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if tag in " ".join(child.cmdline()):
                found.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


def all_gone(procs) -> bool:
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def sleeper_command(tag: str) -> str:
    return f"sleep {tag}"


def new_tag() -> str:
    """A sleep length unique to one test: it finds the child again in the process table."""
    return f"{300 + uuid.uuid4().int % 10_000}.{uuid.uuid4().int % 1000:03d}1"


def open_pipe(leases, lease_id, tag):
    payload = leases.eval({"lease_id": lease_id, "code": f"P = io.popen('{sleeper_command(tag)}') "
                                                         "return io.type(P)"}, PUBLIC, from_json=False)
    assert payload["ok"] is True and payload["result"] == "file", payload
    assert wait_until(lambda: tagged_children(tag), 5)
    return tagged_children(tag)


def test_popen_child_lives_across_evals_and_dies_on_close(lease_env):
    leases, _ = lease_env
    lease_id = leases.create({"sid": "a"}, PUBLIC, from_json=False)["lease_id"]
    tag = new_tag()
    procs = open_pipe(leases, lease_id, tag)
    for _ in range(3):
        again = leases.eval({"lease_id": lease_id, "code": "return io.type(P)"}, PUBLIC, from_json=False)
        assert again["result"] == "file"
    assert not all_gone(procs)
    leases.close({"lease_id": lease_id}, PUBLIC, from_json=False)
    assert wait_until(lambda: all_gone(procs), 5)  # close kills synchronously; allow the reap


def test_popen_child_dies_on_replace_and_on_expiry(lease_env):
    leases, clock = lease_env
    replaced = leases.create({"sid": "a"}, PUBLIC, from_json=False)["lease_id"]
    first = open_pipe(leases, replaced, new_tag())
    leases.create({"sid": "a", "replace": True}, PUBLIC, from_json=False)
    assert wait_until(lambda: all_gone(first), 5)

    expiring = leases.create({"sid": "b", "ttl_sec": 30}, PUBLIC, from_json=False)["lease_id"]
    second = open_pipe(leases, expiring, new_tag())
    clock.advance(29)
    leases.manager.sweep()
    assert not all_gone(second)
    clock.advance(1)
    leases.manager.sweep()
    assert wait_until(lambda: all_gone(second), 5)


def test_engine_close_kills_children_of_every_lease(tmp_path):
    engine = LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "s")))
    procs = []
    for sid in ("a", "b"):
        lease_id = engine.create_runtime_lease(sid=sid)["lease_id"]
        tag = new_tag()
        result = engine.eval_runtime_lease(lease_id=lease_id, code=f"P = io.popen('{sleeper_command(tag)}')")
        assert result["ok"] is True
        assert wait_until(lambda: tagged_children(tag), 5)
        procs += tagged_children(tag)
    engine.close()
    assert wait_until(lambda: all_gone(procs), 5)


def test_real_sweeper_kills_an_expired_lease_child(tmp_path):
    with LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "s"))) as engine:
        lease_id = engine.create_runtime_lease(sid="a", ttl_sec=1)["lease_id"]
        tag = new_tag()
        assert engine.eval_runtime_lease(lease_id=lease_id, code=f"P = io.popen('{sleeper_command(tag)}')")["ok"]
        assert wait_until(lambda: tagged_children(tag), 5)
        procs = tagged_children(tag)
        started = time.monotonic()
        assert wait_until(lambda: all_gone(procs), 6)  # no call needed: the sweeper does it
        assert time.monotonic() - started < 6


def _has_process_sessions() -> bool:
    with LuaEngine() as engine:
        lease_id = engine.create_runtime_lease(sid="probe")["lease_id"]
        payload = engine.eval_runtime_lease(
            lease_id=lease_id, code="return type(vulcan.process) == 'table' and "
                                    "type(vulcan.process.session) == 'table' and "
                                    "type(vulcan.process.session.open) == 'function'")
        return payload.get("result") is True


@pytest.mark.skipif(not _has_process_sessions(), reason="vulcan.process.session is not installed yet")
def test_process_session_kept_across_evals_and_killed_with_the_lease(lease_env):
    leases, _ = lease_env
    lease_id = leases.create({"sid": "a"}, PUBLIC, from_json=False)["lease_id"]
    tag = new_tag()
    opened = leases.eval({"lease_id": lease_id, "code": (
        f"S = vulcan.process.session.open{{ program = 'sleep', args = {{ '{tag}' }} }} "
        "return S:status().running")}, PUBLIC, from_json=False)
    assert opened["result"] is True, opened
    procs = tagged_children(tag)
    assert procs
    for _ in range(3):
        status = leases.eval({"lease_id": lease_id, "code": "return S:status().running"}, PUBLIC,
                             from_json=False)
        assert status["result"] is True
    leases.close({"lease_id": lease_id}, PUBLIC, from_json=False)
    assert wait_until(lambda: all_gone(procs), 5)


@pytest.mark.skipif(not _has_process_sessions(), reason="vulcan.process.session is not installed yet")
def test_process_sessions_die_on_replace_expiry_and_shutdown(lease_env):
    leases, clock = lease_env

    def open_session(lease_id):
        tag = new_tag()
        opened = leases.eval({"lease_id": lease_id, "code": (
            f"S = vulcan.process.session.open{{ program = 'sleep', args = {{ '{tag}' }} }} "
            "return S:status().running")}, PUBLIC, from_json=False)
        assert opened["result"] is True, opened
        assert wait_until(lambda: tagged_children(tag), 5)
        return tagged_children(tag)

    replaced = open_session(leases.create({"sid": "r"}, PUBLIC, from_json=False)["lease_id"])
    expiring = open_session(leases.create({"sid": "e", "ttl_sec": 10}, PUBLIC, from_json=False)["lease_id"])
    remaining = open_session(leases.create({"sid": "k"}, PUBLIC, from_json=False)["lease_id"])
    leases.create({"sid": "r", "replace": True}, PUBLIC, from_json=False)
    assert wait_until(lambda: all_gone(replaced), 5)
    clock.advance(10)
    leases.manager.sweep()
    assert wait_until(lambda: all_gone(expiring), 5)
    assert not all_gone(remaining)
    leases.shutdown()
    assert wait_until(lambda: all_gone(remaining), 5)
