"""Complete teardown (issue 13): no descendant survives, even one that left the session's process
group or session, on every teardown path; and none survives the host being SIGKILLed.

Each case starts `bash -c SCRIPT` where SCRIPT starts one escaping descendant whose argv[0] is a
marker unique to the case, waits until it runs (pgrep), prints "ready" and sleeps.  After the
teardown call returns, no live process may carry the marker within 1 s.
"""
import gc
import os
import shlex
import subprocess
import sys
import textwrap
import time

import pytest

from _teardown_support import (ALL, ESCAPES, assert_gone_within_1s, escapes_script, new_marker,
                               root_script, survivors)
from luaskills_runtime import HostOptions, LuaEngine
from luaskills_runtime.process import ProcessSession, exec_command

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="complete teardown of escaped descendants is Linux-only")

def lua_quote(text: str) -> str:
    return f"[==[{text}]==]"


# ---- teardown paths: each starts the script, waits for "ready", tears down -----------------------

def session_close(script, engine):
    session = ProcessSession.open("bash", ["-c", script])
    assert "ready" in session.read(timeout_ms=10_000, until_text="ready")["stdout"]
    session.close(timeout_ms=1)


def session_kill(script, engine):
    session = ProcessSession.open("bash", ["-c", script])
    assert "ready" in session.read(timeout_ms=10_000, until_text="ready")["stdout"]
    session.kill()


def session_drop(script, engine):
    session = ProcessSession.open("bash", ["-c", script])
    assert "ready" in session.read(timeout_ms=10_000, until_text="ready")["stdout"]
    del session
    gc.collect()


def exec_timeout(script, engine):
    result = exec_command(program="bash", args=["-c", script], timeout_ms=2000)
    assert result["timed_out"] is True and "ready" in result["stdout"], result


def lua_session_close(script, engine):
    assert engine.run_lua(f"""
        local s = vulcan.process.session.open{{program = "bash", args = {{"-c", {lua_quote(script)}}}}}
        local r = s:read{{timeout_ms = 10000, until_text = "ready"}}
        s:close{{timeout_ms = 1}}
        s = nil
        collectgarbage()   -- the closed session's native object goes with Lua's next GC cycle
        return r.stdout""").startswith("ready")


def lua_session_kill(script, engine):
    assert engine.run_lua(f"""
        local s = vulcan.process.session.open{{program = "bash", args = {{"-c", {lua_quote(script)}}}}}
        local r = s:read{{timeout_ms = 10000, until_text = "ready"}}
        s:kill()
        s = nil
        collectgarbage()
        return r.stdout""").startswith("ready")


def lua_exec_timeout(script, engine):
    result = engine.run_lua(f"""
        return vulcan.process.exec{{program = "bash", args = {{"-c", {lua_quote(script)}}},
                                   timeout_ms = 2000}}""")
    assert result["timed_out"] is True and "ready" in result["stdout"], result


OPEN_IN_LEASE = """S = vulcan.process.session.open{{program = "bash", args = {{"-c", {script}}}}}
    local r = S:read{{timeout_ms = 10000, until_text = "ready"}}
    assert(r.stdout:find("ready"), r.stdout)"""


def _lease_with_session(engine, script):
    lease_id = engine.create_runtime_lease(sid=new_marker())["lease_id"]
    opened = engine.eval_runtime_lease(lease_id=lease_id,
                                       code=OPEN_IN_LEASE.format(script=lua_quote(script)))
    assert opened["ok"] is True, opened
    return lease_id


def lease_close(script, engine):
    lease_id = _lease_with_session(engine, script)
    assert engine.close_runtime_lease(lease_id=lease_id)["ok"] is True


def lease_eval_timeout(script, engine):
    """An eval that opened a session times out.  The lease outlives its eval's timeout (the
    reference keeps a lease whose eval stopped in place), so its trees go when it is closed."""
    lease_id = engine.create_runtime_lease(sid=new_marker())["lease_id"]
    result = engine.eval_runtime_lease(
        lease_id=lease_id, timeout_ms=2000,
        code=OPEN_IN_LEASE.format(script=lua_quote(script)) + "\nwhile true do end")
    assert result["ok"] is False, result
    assert engine.close_runtime_lease(lease_id=lease_id)["ok"] is True


def _lease_eval_times_out(engine, code):
    lease_id = engine.create_runtime_lease(sid=new_marker())["lease_id"]
    result = engine.eval_runtime_lease(lease_id=lease_id, timeout_ms=2000, code=code)
    assert result["ok"] is False and "timed out" in result["message"], result
    assert engine.close_runtime_lease(lease_id=lease_id)["ok"] is True


def popen_timeout(script, engine):
    """io.popen's child goes through subprocess, not the process core: same teardown."""
    _lease_eval_times_out(engine, f"""
        local h = io.popen("bash -c " .. {lua_quote(shlex.quote(script))})
        assert(h:read("*l") == "ready")
        return h:read("*a")""")


def os_execute_timeout(script, engine):
    _lease_eval_times_out(engine, f"""
        return os.execute("bash -c " .. {lua_quote(shlex.quote(script))} .. " >/dev/null")""")


def engine_close(script, engine):
    own = LuaEngine(HostOptions(system_lua_lib_dir=engine._test_tmp))
    _lease_with_session(own, script)
    own.close()


PATHS = {f.__name__: f for f in (session_close, session_kill, session_drop, exec_timeout,
                                 lua_session_close, lua_session_kill, lua_exec_timeout,
                                 lease_close, lease_eval_timeout, popen_timeout,
                                 os_execute_timeout, engine_close)}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("teardown") / "system_lua_lib")
    with LuaEngine(HostOptions(system_lua_lib_dir=tmp)) as shared:
        shared._test_tmp = tmp
        yield shared


# Paths that wait for a timeout run once with every escape in the tree, to keep the file fast.
TIMED = {"exec_timeout", "lua_exec_timeout", "lease_eval_timeout", "popen_timeout",
         "os_execute_timeout"}
MATRIX = [(kind, path) for path in PATHS for kind in ([ALL] if path in TIMED else list(ESCAPES))]


@pytest.mark.parametrize("kind,path", MATRIX)
def test_no_escaped_descendant_survives(kind, path, engine):
    marker = new_marker()
    PATHS[path](root_script(kind, marker), engine)
    assert_gone_within_1s(marker)


def test_all_escapes_at_once_from_an_exec_whose_root_exits_first():
    """The root exits normally while the escapees run on: they are no longer its children (init
    or another subreaper adopted them), so only their tag finds them."""
    marker = new_marker()
    script = escapes_script(ALL, marker) + "exit 3"
    result = exec_command(program="bash", args=["-c", script], timeout_ms=10_000)
    assert result["code"] == 3, result
    assert_gone_within_1s(marker)


HOST = textwrap.dedent("""
    import sys, time
    from luaskills_runtime.process import ProcessSession, exec_command
    import threading
    script = sys.argv[1]
    sessions = [ProcessSession.open("bash", ["-c", script]) for _ in range(2)]
    for s in sessions:
        s.read(timeout_ms=10000, until_text="ready")
    threading.Thread(target=exec_command, kwargs=dict(program="bash", args=["-c", script]),
                     daemon=True).start()
    print("held", flush=True)
    time.sleep(600)
""")


def test_host_killed_with_sigkill_leaves_no_survivor(child_env):
    marker = new_marker()
    script = root_script(ALL, marker)
    host = subprocess.Popen([sys.executable, "-c", HOST, script], stdout=subprocess.PIPE,
                            env=child_env)
    try:
        assert host.stdout.readline() == b"held\n"
        # the exec runs in a thread: wait until all three trees' escapees run
        deadline = time.monotonic() + 15
        while len(survivors(marker)) < 3 * len(ESCAPES) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(survivors(marker)) == 3 * len(ESCAPES)
    finally:
        host.kill()
        host.wait()
        host.stdout.close()
    time.sleep(2.0)
    left = survivors(marker)
    for pid in left:
        os.kill(pid, 9)
    assert left == []
