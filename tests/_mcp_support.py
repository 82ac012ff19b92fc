"""Helpers for the MCP server tests: start `luaskills-runtime mcp` as a real client does (the
console script when the package is installed, else `python -m luaskills_runtime` on the source
tree) over stdio or Streamable HTTP, and make sure every server process is gone afterwards."""
import contextlib
import datetime
import os
import re
import subprocess
import sys
import threading
import time
from typing import Dict, Iterator, List, Optional, Tuple

import anyio
import psutil

import luaskills_runtime
from _process_support import REPO_ROOT, child_env, gone, read_pid_file, wait_gone

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(luaskills_runtime.__file__)))
REPO_SRC = os.path.join(REPO_ROOT, "src")
# Every request of a test session is bounded (the SDK raises when no answer came in time).
REQUEST_TIMEOUT = datetime.timedelta(seconds=60)
_URL = re.compile(r"serving Streamable HTTP at (http://\S+)")


def server_command() -> Tuple[List[str], Dict[str, str]]:
    """argv and environment that start the server: the installed console script when the tests
    run against an installed package, the source tree through `-m` otherwise."""
    script = os.path.join(os.path.dirname(sys.executable),
                          "luaskills-runtime.exe" if os.name == "nt" else "luaskills-runtime")
    if os.path.abspath(PACKAGE_PARENT) != os.path.abspath(REPO_SRC) and os.path.exists(script):
        return [script, "mcp"], dict(os.environ)
    return [sys.executable, "-m", "luaskills_runtime", "mcp"], child_env()


def descendants() -> List[psutil.Process]:
    return psutil.Process().children(recursive=True)


def assert_no_new_descendants(before: List[psutil.Process], timeout: float = 10.0) -> None:
    """Every process started since `before` is gone (or an unreaped zombie of another parent)."""
    known = {p.pid for p in before}
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in descendants():
            if proc.pid in known:
                continue
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not alive, f"processes survived: {[(p.pid, p.name()) for p in alive]}"


@contextlib.asynccontextmanager
async def stdio_session(*extra: str):
    """An initialized ClientSession on a new stdio server process."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    argv, env = server_command()
    params = StdioServerParameters(command=argv[0], args=argv[1:] + list(extra), env=env)
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT) as session:
                with anyio.fail_after(60):
                    await session.initialize()
                yield session


class HttpServer:
    """`luaskills-runtime mcp --http 127.0.0.1:0` in a subprocess; `url` once it listens."""

    def __init__(self, *extra: str, address: str = "127.0.0.1:0") -> None:
        argv, env = server_command()
        self.process = subprocess.Popen(argv + ["--http", address] + list(extra), env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self.stderr_lines: List[str] = []
        self._url_ready = threading.Event()
        self.url: Optional[str] = None
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._url_ready.wait(60) or self.url is None:
            self.stop()
            raise AssertionError(f"server did not announce its URL: {self.stderr_lines}")

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace")
            self.stderr_lines.append(line)
            match = _URL.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self._url_ready.set()
        self._url_ready.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        assert wait_gone(self.process.pid, 5)
        self._reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def http_server(*extra: str) -> Iterator[HttpServer]:
    server = HttpServer(*extra)
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def http_session(url: str):
    """An initialized ClientSession on a Streamable HTTP server; ends the MCP session (DELETE)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url) as (read, write, _session_id):
        async with ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT) as session:
            with anyio.fail_after(60):
                await session.initialize()
            yield session


async def wait_pid_file_async(path: str, timeout: float = 30) -> int:
    """_process_support.wait_pid_file without blocking the event loop."""
    with anyio.fail_after(timeout):
        while True:
            pid = read_pid_file(path)
            if pid is not None:
                return pid
            await anyio.sleep(0.01)


async def wait_gone_async(pid: int, timeout: float) -> bool:
    """wait_gone without blocking the event loop (the client's transport tasks must run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        await anyio.sleep(0.005)
    return gone(pid)
