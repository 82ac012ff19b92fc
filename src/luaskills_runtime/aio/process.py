"""AsyncProcessSession and exec_command for asyncio and trio hosts.

A session's reads wait on its native notifier through the event loop: the C core writes a byte
to a pipe whenever output, EOF or the exit arrives, and the loop watches the pipe's read end
(``anyio.wait_readable``), so a thousand sessions waiting for output hold no thread at all.
(Windows has no such pipe; there each read waits on a worker thread.)
"""
from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any, Iterable, List, Mapping, Optional, Type, Union, cast

import anyio
import anyio.to_thread

from luaskills_runtime.aio._worker import WorkerPool, run_cancellable
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.process.exec_request import parse_python_exec_args
from luaskills_runtime.process.session import (DEFAULT_BUFFER_LIMIT_BYTES, DEFAULT_CLOSE_TIMEOUT_MS,
                                               DEFAULT_MAX_READ_BYTES, DEFAULT_READ_TIMEOUT_MS,
                                               ProcessSession)
from luaskills_runtime.process.exec_run import check_exec_arg_types, run_exec_request
from luaskills_runtime.text import decode_text, default_mode
from luaskills_runtime.types import ExecResult, ProcessStatus, ReadResult

__all__ = ["AsyncProcessSession", "exec_command"]

_WATCH_FD = sys.platform != "win32"
#: Commands waited for at once (more wait in a queue without a thread).
EXEC_CONCURRENCY = 16
_exec_workers = WorkerPool(EXEC_CONCURRENCY, name="luaskills-exec")


class AsyncProcessSession:
    """An interactive child process for async hosts (see ``ProcessSession``); open it with
    ``await AsyncProcessSession.open(...)``.  An async context manager that closes the session
    (the whole process tree dies).  ``session`` is the synchronous session underneath."""

    __slots__ = ("session", "_wake_r", "_wake_w", "__weakref__")

    def __init__(self, session: ProcessSession) -> None:
        self.session = session
        self._wake_r = self._wake_w = -1
        if _WATCH_FD:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            session._set_wake_fd(self._wake_w)

    @classmethod
    async def open(cls, program: str, args: Iterable[str] = (), *, cwd: Optional[str] = None,
                   encoding: Optional[str] = None, stdout_encoding: Optional[str] = None,
                   stderr_encoding: Optional[str] = None, stdin_encoding: Optional[str] = None,
                   buffer_limit_bytes: int = DEFAULT_BUFFER_LIMIT_BYTES
                   ) -> "AsyncProcessSession":
        """Start `program` with `args` (no shell) in its own process tree."""
        if not isinstance(program, str):
            raise TypeError(f"AsyncProcessSession.open: program must be a str, "
                            f"got {type(program).__name__}")
        if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
            raise TypeError(f"AsyncProcessSession.open: args must be a list or tuple of str, "
                            f"got {type(args).__name__}")
        session = ProcessSession.open(
            program, list(args), cwd=cwd, encoding=encoding, stdout_encoding=stdout_encoding,
            stderr_encoding=stderr_encoding, stdin_encoding=stdin_encoding,
            buffer_limit_bytes=buffer_limit_bytes)
        return cls(session)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.session.pid

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _ready(self, until_text: Optional[str]) -> bool:
        """The sync read would return at once: output (or the marker) is there, or both
        streams ended."""
        session = self.session
        _, held_out, held_err, eof_out, eof_err = session._streams()
        if eof_out and eof_err:
            return True
        if until_text is None:
            return bool(held_out or held_err)
        modes = session._modes
        return bool((held_out and until_text in decode_text(session._peek(1), modes[0]).text)
                    or (held_err and until_text in decode_text(session._peek(2), modes[1]).text))

    async def _wait(self, until_text: Optional[str], timeout_ms: float) -> None:
        """Wait (no thread) until _ready or the timeout."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            self._drain_wake()
            if self._ready(until_text):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with anyio.move_on_after(remaining):
                await anyio.wait_readable(self._wake_r)

    async def read(self, timeout_ms: int = DEFAULT_READ_TIMEOUT_MS,
                   max_bytes: int = DEFAULT_MAX_READ_BYTES,
                   until_text: Optional[str] = None) -> ReadResult:
        """Wait for output (or `until_text`), the end of both streams or `timeout_ms`, then take
        up to `max_bytes` per stream (see ``ProcessSession.read``).  Cancelling the awaiting task
        stops the wait at once (the session stays open)."""
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)):
            raise TypeError(f"read: timeout_ms must be an int, got {type(timeout_ms).__name__}")
        if until_text is not None and not isinstance(until_text, str):
            raise TypeError(f"read: until_text must be a str, got {type(until_text).__name__}")
        if not _WATCH_FD:
            session = self.session
            return cast(ReadResult, await anyio.to_thread.run_sync(
                lambda: session.read(timeout_ms, max_bytes, until_text)))
        if timeout_ms > 0:
            await self._wait(until_text, timeout_ms)
        # Ready or timed out: the sync read answers at once (after 1 ms at most when nothing
        # arrived), with the reference's fields and its timed_out flag.
        return self.session.read(1, max_bytes, until_text)

    async def write(self, *values: Union[str, bytes, int, float, bool]) -> bool:
        """Write the values to the child's stdin (see ``ProcessSession.write``)."""
        session = self.session
        return await anyio.to_thread.run_sync(lambda: session.write(*values))

    def status(self) -> ProcessStatus:
        """The child's status (running, exited, success, code)."""
        return self.session.status()

    async def close(self, timeout_ms: int = DEFAULT_CLOSE_TIMEOUT_MS) -> ProcessStatus:
        """Close stdin, wait up to `timeout_ms` (on the loop, no thread) for the child to exit,
        then kill the whole tree; returns the final status."""
        session = self.session
        if _WATCH_FD and self._wake_r >= 0 and session.status()["running"]:
            try:
                session._close_stdin()
            except LuaSkillsError:
                pass
            deadline = time.monotonic() + max(timeout_ms, 1) / 1000.0
            with anyio.CancelScope(shield=True):
                while session.status()["running"]:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    with anyio.move_on_after(min(remaining, 0.05)):
                        await anyio.wait_readable(self._wake_r)
                    self._drain_wake()
        if _WATCH_FD:
            result = session.close(1)   # the wait is done: kill what is left and reap
        else:
            result = await anyio.to_thread.run_sync(lambda: session.close(timeout_ms))
        self._release_pipe()
        return result

    def kill(self) -> bool:
        """Kill the whole process tree now."""
        return bool(self.session.kill())

    def _release_pipe(self) -> None:
        if self._wake_r >= 0:
            try:
                self.session._set_wake_fd(-1)   # no signal touches the pipe after this returns
            except LuaSkillsError:  # the session never started: nothing can signal
                pass
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def __del__(self) -> None:
        try:
            self._release_pipe()
        except Exception:
            pass

    async def __aenter__(self) -> "AsyncProcessSession":
        """Use with ``async with``: the session is closed (tree killed) when the block ends."""
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()

    def __repr__(self) -> str:
        return f"<AsyncProcessSession pid={self.pid}>"


async def exec_command(command: Optional[str] = None, *, program: Optional[str] = None,
                       args: Iterable[str] = (), cwd: Optional[str] = None,
                       env: Optional[Mapping[str, str]] = None,
                       stdin: Optional[Union[str, bytes]] = None, timeout_ms: Optional[int] = None,
                       shell: Optional[bool] = None, encoding: Optional[str] = None,
                       stdout_encoding: Optional[str] = None,
                       stderr_encoding: Optional[str] = None,
                       stdin_encoding: Optional[str] = None) -> ExecResult:
    """Run one command to completion (see ``luaskills_runtime.process.exec_command``).
    Cancelling the awaiting task kills the command's whole process tree."""
    check_exec_arg_types(command=command, program=program, args=args, cwd=cwd)
    request = parse_python_exec_args(
        command, program, args, cwd, env, stdin, timeout_ms, shell, encoding, stdout_encoding,
        stderr_encoding, stdin_encoding, default_mode=default_mode())
    runs: List[Any] = []

    def kill() -> None:
        for run in runs:
            run.kill()
    return cast(ExecResult, await run_cancellable(
        lambda: run_exec_request(request, track=runs.append), kill, _exec_workers))
