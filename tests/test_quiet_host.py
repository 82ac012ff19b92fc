"""A host that configured nothing: importing installs no signal handler, failed lease evals
print nothing, log records carry the SID / request id; blocking session calls give way to
Ctrl-C within about 50 ms."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from _process_support import child_env

ENV = child_env()


def python(code: str, **kwargs):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env=ENV, **kwargs)


# sigaction(sig, NULL, &old) through ctypes: the first field of struct sigaction is the handler
# on Linux and macOS, so reading it tells SIG_DFL (0) from an installed handler.
SIGACTION_PROBE = """
import ctypes, signal
libc = ctypes.CDLL(None, use_errno=True)
def handler_of(sig):
    buf = ctypes.create_string_buffer(256)
    assert libc.sigaction(sig, None, buf) == 0
    return ctypes.c_void_p.from_buffer(buf).value or 0
"""


@pytest.mark.skipif(not hasattr(signal, "SIGRTMAX"), reason="real-time signals are POSIX")
def test_import_installs_no_signal_handler_and_the_first_guard_does():
    done = python(SIGACTION_PROBE + """
import luaskills_runtime, luaskills_runtime.aio, luaskills_runtime._native.luahook
from luaskills_runtime import LuaEngine
before = handler_of(signal.SIGRTMAX)
engine = LuaEngine()
engine.run_lua("return 1")          # unguarded: still nothing
middle = handler_of(signal.SIGRTMAX)
engine.run_lua("return 1", request_id="r")   # the first guard claims the pause signal
after = handler_of(signal.SIGRTMAX)
print(before, middle, after != 0, luaskills_runtime.engine_info()["guard"])
""")
    assert done.returncode == 0, done.stderr
    # (the Lua-hook guard, lua51's, pauses no thread: it never installs the handler)
    before, middle, after, guard = done.stdout.split()
    assert [before, middle, after] == ["0", "0", str(guard != "lua-hook")]


def test_failed_lease_eval_prints_nothing_to_an_unconfigured_host():
    done = python("""
from luaskills_runtime import LuaEngine
with LuaEngine() as engine:
    lease = engine.open_lease("quiet")
    try:
        lease.eval("error('boom')")
    except Exception as error:
        print(type(error).__name__, error.error_code)
    engine.run_lua("vulcan.runtime.log('error', 'from lua')")
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "LeaseError eval_failed\n"
    assert done.stderr == ""


def test_log_records_carry_area_logger_and_ids(caplog):
    import logging

    from luaskills_runtime import LuaEngine
    assert any(isinstance(h, logging.NullHandler)
               for h in logging.getLogger("luaskills_runtime").handlers)
    with caplog.at_level(logging.INFO, logger="luaskills_runtime"):
        with LuaEngine() as engine:
            lease = engine.open_lease("logged")
            lease.eval("vulcan.runtime.log('info', 'in lease')")
            with pytest.raises(Exception):
                lease.eval("error('bad')")
            engine.run_lua("vulcan.runtime.log('warn', 'in run_lua')", request_id="req-7")
    by_message = {r.getMessage(): r for r in caplog.records}
    lease_line = by_message["[LuaSkill:info] in lease"]
    assert lease_line.name == "luaskills_runtime.lua"
    assert lease_line.luaskills_sid == "logged"
    assert lease_line.luaskills_lease_id == lease.lease_id
    failed = next(r for r in caplog.records if "bad" in r.getMessage())
    assert failed.name == "luaskills_runtime.leases" and failed.luaskills_sid == "logged"
    assert by_message["[LuaSkill:warn] in run_lua"].luaskills_request_id == "req-7"


@pytest.mark.parametrize("call", ["session.read(timeout_ms=15000)",
                                  "session.read(timeout_ms=15000, until_text='never')",
                                  "session.close(timeout_ms=15000)"])
def test_blocking_session_calls_give_way_to_ctrl_c(call):
    code = textwrap.dedent(f"""
        import sys
        from luaskills_runtime.process import ProcessSession
        session = ProcessSession.open("sh", ["-c", "trap '' HUP; exec sleep 30 < /dev/null"])
        print(session.pid, flush=True)
        try:
            {call}
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            session.kill()
            sys.exit(0)
        print("not interrupted", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        proc.stdout.readline()
        time.sleep(0.3)   # inside the call by now
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == "interrupted\n", err
    assert elapsed < 1.0, elapsed
