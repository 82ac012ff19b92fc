"""Resources: no descriptor, thread or zombie left behind; one drainer thread for many sessions;
the GIL is free while a read waits; a flooding child never blocks and the newest bytes stay."""
import gc
import inspect
import sys
import threading
import time

import psutil
import pytest

from luaskills_runtime.process import ProcessSession
from _lease_support import wait_until
from _process_support import open_fds, os_threads, wait_gone, wait_threads_at_most

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX descriptors and threads")


def test_no_fd_thread_or_zombie_after_100_open_close_cycles():
    gc.collect()   # objects of earlier tests must not close their fds during the measurement
    threads_before = os_threads()
    fds_before = open_fds()
    pids = []
    for i in range(100):
        session = ProcessSession.open("cat")
        pids.append(session.pid)
        if i % 2:
            session.write("x")
            assert session.read(timeout_ms=5000)["stdout"] == "x"
            session.close(timeout_ms=1000)
        else:
            session.kill()
        del session
    gc.collect()
    fds_after = open_fds()
    assert fds_after - fds_before == set() and len(fds_after) <= len(fds_before)   # none leaked
    assert wait_threads_at_most(threads_before) <= threads_before
    for pid in pids:   # reaped: not even a zombie of ours
        with pytest.raises(psutil.NoSuchProcess):
            psutil.Process(pid).status()


def test_one_drainer_thread_serves_many_sessions():
    threads_before = os_threads()
    sessions = [ProcessSession.open("cat") for _ in range(50)]
    try:
        assert os_threads() - threads_before <= 1
        for i, session in enumerate(sessions):
            session.write(f"{i};")
        for i, session in enumerate(sessions):
            assert session.read(timeout_ms=5000, until_text=";")["stdout"] == f"{i};"
    finally:
        for session in sessions:
            session.kill()
    del sessions, session
    gc.collect()
    assert wait_threads_at_most(threads_before) <= threads_before


def test_dropping_sessions_without_close_releases_everything():
    gc.collect()
    threads_before = os_threads()
    fds_before = open_fds()
    pids = [ProcessSession.open("sleep", ["30"]).pid for _ in range(10)]   # dropped at once
    gc.collect()
    for pid in pids:
        assert wait_gone(pid)
    assert open_fds() - fds_before == set()
    assert wait_threads_at_most(threads_before) <= threads_before


def test_a_blocked_read_does_not_hold_the_gil():
    with ProcessSession.open("sleep", ["30"]) as session:
        result = {}

        def reader():
            result["read"] = session.read(timeout_ms=1000)

        thread = threading.Thread(target=reader)
        thread.start()
        start = last = time.monotonic()
        longest_gap = 0.0
        while thread.is_alive():
            now = time.monotonic()
            longest_gap = max(longest_gap, now - last)
            last = now
        elapsed = last - start
        thread.join()
        assert result["read"]["timed_out"] is True
        # the main thread kept running Python bytecode for the whole one-second wait: a read
        # holding the GIL would have frozen this loop for about that long
        assert elapsed > 0.5 and longest_gap < 0.25


def test_close_from_another_thread_wakes_a_blocked_reader():
    session = ProcessSession.open("sleep", ["30"])
    result = {}

    def reader():
        start = time.monotonic()
        result["read"] = session.read(timeout_ms=30000)
        result["elapsed"] = time.monotonic() - start

    source, first = inspect.getsourcelines(reader)
    read_line = first + next(i for i, line in enumerate(source) if "session.read(" in line)

    def reader_is_reading():
        # the reader thread's innermost Python frame stands on the read call: it is in the
        # native read (which waits without the GIL, so this thread gets to look)
        frame = sys._current_frames().get(thread.ident)
        return frame is not None and frame.f_code is reader.__code__ and frame.f_lineno == read_line

    thread = threading.Thread(target=reader)
    thread.start()
    assert wait_until(reader_is_reading)
    session.kill()
    thread.join(10)
    assert not thread.is_alive()
    assert result["read"]["timed_out"] is False and result["elapsed"] < 5


def test_flooding_child_never_blocks_and_the_newest_bytes_are_kept():
    limit = 64 * 1024
    # ~8 MB of numbered lines, far beyond the buffer; the child must finish without a reader.
    with ProcessSession.open("seq", ["-w", "1", "1000000"], buffer_limit_bytes=limit) as session:
        exited = session._wait_exit(20000)
        assert exited["exited"] is True and exited["success"] is True
        # both streams reach EOF once the drainer has taken everything
        deadline = time.monotonic() + 10
        while not all(session._streams()[3:]) and time.monotonic() < deadline:
            time.sleep(0.01)
        result = session.read(timeout_ms=1000, max_bytes=10 * limit)
        data = result["stdout"]
        assert len(data) == limit
        assert data.endswith("0999999\n1000000\n")
        lines = data.split("\n")[1:-1]          # the first line is cut by the window
        numbers = [int(line) for line in lines]
        assert numbers == list(range(numbers[0], 1000001))


def test_concurrent_readers_and_writers_on_one_session():
    with ProcessSession.open("cat") as session:
        got = []
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                got.append(session.read(timeout_ms=50)["stdout"])

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for thread in threads:
            thread.start()
        for i in range(200):
            session.write(f"<{i}>")
        deadline = time.monotonic() + 10
        while "".join(got).count("<") < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        for thread in threads:
            thread.join()
        # chunks taken by different readers may land in `got` out of order: compare contents
        assert sorted("".join(got)) == sorted("".join(f"<{i}>" for i in range(200)))


def test_output_after_a_read_is_still_drained_without_a_reader():
    # A read leaves stdout with the reader's fast path; with no reader coming back, the drainer
    # must take it over again, so a child that then floods the pipe still finishes.
    with ProcessSession.open("sh", ["-c", "echo ready; read _; seq 1 300000; echo END"],
                             buffer_limit_bytes=4096) as session:
        assert session.read(timeout_ms=5000, until_text="ready")["stdout"] == "ready\n"
        session.write("go\n")
        exited = session._wait_exit(20000)
        assert exited["exited"] is True and exited["success"] is True
        deadline = time.monotonic() + 10
        while not all(session._streams()[3:]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.read(timeout_ms=1000, max_bytes=1 << 20)["stdout"].endswith("300000\nEND\n")
