"""Process-session benchmark: ratios against anchors measured in the same run.

    PYTHONPATH=src python3 benchmarks/bench_process.py [--quick]

1. Echo round trip through `cat` (write + read until a marker) with ProcessSession, against a raw
   os.write/os.read pipe echo through the same `cat` (goal <= 1.5x) and against pexpect's
   PopenSpawn send/expect (goal: ProcessSession >= 4x faster).
2. status() against a bare os.waitid(P_PID, pid, WEXITED|WNOHANG|WNOWAIT) (goal <= 4x).
3. OS threads added by 500 live sessions (goal <= 8).
"""
import gc
import os
import statistics
import subprocess
import sys
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from _timing import report, timings  # noqa: E402
from luaskills_runtime.process import ProcessSession  # noqa: E402

QUICK = "--quick" in sys.argv
ROUNDS = 5                      # best-of, to damp noise from other work on the machine
ECHOES = 300 if QUICK else 2000
STATUS_CALLS = 20000 if QUICK else 200000
SESSIONS = 500


def best_per_op(fn, count):
    """Best and median over ROUNDS of the mean time per operation, in microseconds."""
    results = [seconds / count * 1e6 for seconds in timings(lambda: fn(count), ROUNDS)]
    return min(results), statistics.median(results)


def messages(count):
    return [f"ping{i};".encode() for i in range(count)]


def bench_raw_echo(count):
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    fd_in, fd_out = proc.stdin.fileno(), proc.stdout.fileno()
    msgs = messages(count)

    def run(n):
        for msg in msgs[:n]:
            os.write(fd_in, msg)
            got = os.read(fd_out, 65536)
            while not got.endswith(b";"):
                got += os.read(fd_out, 65536)

    try:
        return best_per_op(run, count)
    finally:
        proc.stdin.close()
        proc.wait()
        proc.stdout.close()


def bench_session_echo(count):
    session = ProcessSession.open("cat")
    texts = [m.decode() for m in messages(count)]
    write, read = session.write, session.read

    def run(n):
        for text in texts[:n]:
            write(text)
            result = read(timeout_ms=5000, until_text=";")
            assert result["stdout"] == text, result

    try:
        return best_per_op(run, count)
    finally:
        session.close()


def bench_pexpect_echo(count):
    from pexpect.popen_spawn import PopenSpawn

    child = PopenSpawn(["cat"], timeout=5)
    texts = [m.decode() for m in messages(count)]

    def run(n):
        for text in texts[:n]:
            child.send(text)
            child.expect_exact(";")

    try:
        return best_per_op(run, count)
    finally:
        child.sendeof()
        child.wait()


def bench_status(count):
    session = ProcessSession.open("cat")
    pid = session.pid
    status = session.status
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT

    def run_waitid(n):
        waitid, p_pid = os.waitid, os.P_PID
        for _ in range(n):
            waitid(p_pid, pid, flags)

    def run_status(n):
        for _ in range(n):
            status()

    try:
        assert status()["running"] is True
        return best_per_op(run_waitid, count), best_per_op(run_status, count)
    finally:
        session.close()


def raise_fd_limit(count):
    """Each live session holds about five descriptors; raise the soft limit where needed."""
    try:
        import resource
    except ImportError:   # Windows: handles are not limited this way
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = count * 5 + 256
    if soft < need and (hard == resource.RLIM_INFINITY or hard >= need):
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def bench_threads(count):
    raise_fd_limit(count)
    me = psutil.Process()
    before = me.num_threads()
    sessions = []
    try:
        start = time.perf_counter()
        for _ in range(count):
            sessions.append(ProcessSession.open("cat"))
        opened = time.perf_counter() - start
        during = me.num_threads()
        for i, session in enumerate(sessions):   # every one of them is live and answering
            session.write(f"{i};")
        for i, session in enumerate(sessions):
            assert session.read(timeout_ms=10000, until_text=";")["stdout"] == f"{i};"
    finally:
        start = time.perf_counter()
        for session in sessions:
            session.kill()
        closed = time.perf_counter() - start
        session = None
        del sessions
        gc.collect()
    deadline = time.monotonic() + 5
    while me.num_threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    return before, during, me.num_threads(), opened, closed


def main():
    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs"
          f"{' (quick)' if QUICK else ''}; best of {ROUNDS} rounds, median in brackets")

    raw, raw_med = bench_raw_echo(ECHOES)
    ours, ours_med = bench_session_echo(ECHOES)
    pex, pex_med = bench_pexpect_echo(max(ECHOES // 4, 100))
    print("\n1. echo round trip through cat (write + read until marker), per round trip")
    print(f"   raw os.write/os.read pipe   {raw:8.1f} us  [{raw_med:.1f}]   (anchor)")
    print(f"   ProcessSession              {ours:8.1f} us  [{ours_med:.1f}]   "
          f"{ours / raw:.2f}x raw   (goal <= 1.5x)")
    print(f"   pexpect PopenSpawn          {pex:8.1f} us  [{pex_med:.1f}]   "
          f"ProcessSession is {pex / ours:.1f}x faster   (goal >= 4x)")
    report("echo round trip: ProcessSession vs raw pipe", ours / raw, "<= 1.5x")
    report("echo round trip: pexpect time / ProcessSession time", pex / ours, ">= 4x")

    print("\n2. non-reaping status probe, per call")
    if hasattr(os, "waitid"):
        (wait, wait_med), (stat, stat_med) = bench_status(STATUS_CALLS)
        print(f"   os.waitid(WNOWAIT)          {wait:8.2f} us  [{wait_med:.2f}]   (anchor)")
        print(f"   ProcessSession.status()     {stat:8.2f} us  [{stat_med:.2f}]   "
              f"{stat / wait:.2f}x waitid   (goal <= 4x)")
        report("ProcessSession.status() vs os.waitid(WNOWAIT)", stat / wait, "<= 4x")
    else:
        print("   skipped: no os.waitid anchor on this platform")

    before, during, after, opened, closed = bench_threads(SESSIONS)
    print(f"\n3. OS threads with {SESSIONS} live sessions")
    print(f"   before {before}, with {SESSIONS} sessions {during}, after closing {after}: "
          f"{during - before} added   (goal <= 8)")
    report(f"OS threads added by {SESSIONS} live sessions (a count)", during - before, "<= 8")
    print(f"   open {opened / SESSIONS * 1e3:.2f} ms/session, kill {closed / SESSIONS * 1e3:.2f} ms/session")


if __name__ == "__main__":
    main()
