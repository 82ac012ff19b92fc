"""Whole-tree teardown and non-reaping status, checked with psutil."""
import gc
import os
import sys
import time

import psutil
import pytest

from luaskills_runtime.process import ProcessSession
from _process_support import gone, kill_if_alive, wait_gone

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")


def start_with_grandchild(script_tail="wait"):
    """sh that starts `sleep 30` in the background and prints its pid."""
    session = ProcessSession.open("sh", ["-c", f"sleep 30 & echo \"$! ;\"; {script_tail}"])
    out = session.read(timeout_ms=5000, until_text=";")["stdout"]
    grandchild = int(out.split()[0])
    assert os.getpgid(grandchild) == session.pid   # in the session's process group
    return session, grandchild


@pytest.mark.parametrize("how", ["close", "kill"])
def test_grandchild_is_gone_after_close_or_kill(how):
    session, grandchild = start_with_grandchild()
    try:
        if how == "close":
            final = session.close(timeout_ms=100)
            assert final["exited"] is True and final["success"] is False
        else:
            assert session.kill() is True
        assert wait_gone(grandchild)
        assert wait_gone(session.pid)
    finally:
        kill_if_alive(grandchild)


def test_dropped_session_takes_its_tree_down():
    session, grandchild = start_with_grandchild()
    pid = session.pid
    try:
        del session
        gc.collect()
        assert wait_gone(grandchild)
        assert wait_gone(pid)
        with pytest.raises(psutil.NoSuchProcess):   # reaped by us, not left as our zombie
            psutil.Process(pid).status()
    finally:
        kill_if_alive(grandchild)


def test_descendants_die_even_when_the_root_already_exited():
    # The root exits at once; its background child keeps the stdout pipe open.
    session, grandchild = start_with_grandchild(script_tail="exit 3")
    try:
        deadline = time.monotonic() + 5
        while session.status()["running"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.status() == {"running": False, "exited": True, "success": False, "code": 3}
        assert not gone(grandchild)
        # the pipe is still held, so a read waits for its timeout
        assert session.read(timeout_ms=100)["timed_out"] is True
        final = session.close(timeout_ms=100)
        assert final == {"running": False, "exited": True, "success": False, "code": 3}
        assert wait_gone(grandchild)
        assert session.read(timeout_ms=1000)["timed_out"] is False   # both streams at EOF now
    finally:
        kill_if_alive(grandchild)


def test_status_does_not_reap():
    session = ProcessSession.open("sh", ["-c", "exit 5"])
    deadline = time.monotonic() + 5
    while session.status()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    expected = {"running": False, "exited": True, "success": False, "code": 5}
    assert session.status() == expected
    zombie = psutil.Process(session.pid)
    assert zombie.status() == psutil.STATUS_ZOMBIE and zombie.ppid() == os.getpid()
    assert session.status() == expected            # still a zombie of ours after more probes
    assert psutil.Process(session.pid).status() == psutil.STATUS_ZOMBIE
    assert session.close() == expected
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(session.pid).status()
    assert session.status() == expected


def test_escaped_descendant_holding_the_pipe_does_not_hang_close():
    # setsid moves the grandchild out of the process group, so killpg cannot reach it; close
    # returns promptly with the final status and, on Linux, kills it too (complete teardown,
    # tests/process/test_process_teardown.py).  Elsewhere it keeps stdout open: the drain wait is bounded.
    session = ProcessSession.open(
        "sh", ["-c", "setsid sh -c 'echo \"$$ ;\"; exec sleep 30' & wait"])
    escaped = int(session.read(timeout_ms=5000, until_text=";")["stdout"].split()[0])
    try:
        start = time.monotonic()
        final = session.close(timeout_ms=50)
        assert time.monotonic() - start < 4
        assert final["exited"] is True
        result = session.read(timeout_ms=2000)
        assert result["timed_out"] is False          # streams detached: EOF, not a hang
        if sys.platform.startswith("linux"):
            assert wait_gone(escaped, 1.0)           # found by its tree tag, killed
        else:
            assert not gone(escaped)                 # process groups only (README, Safety)
    finally:
        kill_if_alive(escaped)
        wait_gone(escaped)
