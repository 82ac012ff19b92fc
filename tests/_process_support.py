"""Helpers shared by the tests/test_process_*.py files (process trees, descriptors, threads)."""
import os
import sys
import time

import psutil


def gone(pid: int) -> bool:
    """True when pid no longer runs (absent, or a zombie awaiting some other parent's reap)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE and proc.ppid() != os.getpid()
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.01)
    return gone(pid)


def kill_if_alive(pid: int) -> None:
    try:
        psutil.Process(pid).kill()
    except psutil.NoSuchProcess:
        pass


def open_fds() -> set:
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set(
        str(fd) for fd in range(1024) if _fd_open(fd))


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def os_threads() -> int:
    return psutil.Process().num_threads()


def wait_threads_at_most(count: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while os_threads() > count and time.monotonic() < deadline:
        time.sleep(0.01)
    return os_threads()


def our_children():
    return psutil.Process().children(recursive=False)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env() -> dict:
    """The environment for a child Python that must import the package under test."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


def session_tree_lua(pid_file: str, tail: str = "") -> str:
    """Lua that opens a session whose shell starts a grandchild and writes its pid to pid_file,
    then runs `tail`."""
    return ("local s = vulcan.process.session.open{program='sh', args={'-c', "
            f"'sleep 30 & echo $! > {pid_file}; wait'}}}}\n{tail}")


def read_pid_file(path: str):
    """The pid written to path, or None while the file is absent or still empty."""
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def wait_pid_file(path: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid_file(path)
        if pid is not None:
            return pid
        time.sleep(0.01)
    raise AssertionError(f"no pid appeared in {path}")
