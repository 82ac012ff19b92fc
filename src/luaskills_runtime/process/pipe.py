"""A shell command whose stdout is read through a pipe: the child side of Lua's `io.popen`.

The child runs through the shell with stdin from the null device (it must not read the host's
stdin), in its own process group (a new session on POSIX, a new process group on Windows), so
a timeout, a cancel or closing the handle reaches the whole tree.  Reads and close() take the
guarded run's limits (anything with ``stop_reason()`` and ``remaining()``, or None): when they
say stop, the group is killed and reaped and LuaSkillsError(reason) is raised.

Not yet on the native process core: its output rings drop the oldest bytes instead of applying
back-pressure, and it cannot close the read end (which is what makes a producer stop with SIGPIPE
on close) nor report the signal that ended a child, all of which `io.popen` needs.
"""
from __future__ import annotations

import errno as errno_codes
import os
import select
import subprocess
import sys
import threading
from collections import deque

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.process.foreign_tree import ForeignTree

_WINDOWS = sys.platform == "win32"
_POLL_SLICE = 0.05  # how often a blocked pipe read looks at the cancel flag


class ShellPipe:
    """A shell command whose stdout we read (io.popen in read mode)."""

    def __init__(self, command: str):
        kwargs = dict(shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, bufsize=0)
        if _WINDOWS:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # own process group: close/kill reach the tree
            self._tree = ForeignTree()          # ... and escaped descendants too
            kwargs["env"] = self._tree.environment()
        self.proc = subprocess.Popen(command, **kwargs)
        self._fd = self.proc.stdout.fileno()
        self._closed = False
        if _WINDOWS:  # no select() on Windows pipes: a thread drains them
            self._chunks: deque = deque()
            self._eof = False
            self._cond = threading.Condition()
            self._reader = threading.Thread(target=self._drain, daemon=True)
            self._reader.start()

    # -- reading -----------------------------------------------------------------------------
    def read1(self, size: int, limits) -> bytes:
        if _WINDOWS:
            return self._read_windows(size, limits)
        while True:
            wait = None
            if limits is not None:
                reason = limits.stop_reason()
                if reason is not None:
                    self.kill()
                    raise LuaSkillsError(reason)
                wait = min(limits.remaining(), _POLL_SLICE)
            try:
                ready, _, _ = select.select([self._fd], [], [], wait)
                if not ready:
                    continue
                data = os.read(self._fd, size)
            except InterruptedError:
                continue
            except (OSError, ValueError):
                # our end closed under us: a cancel stopped the run and killed the tree (its
                # on_stop runs on the caller's thread), so the run's error, not EBADF
                self._raise_stop_reason(limits)
                raise
            if not data:
                # EOF because a cancel killed the tree after stopping the run: its error
                self._raise_stop_reason(limits)
            return data

    def _raise_stop_reason(self, limits) -> None:
        """Raise the run's stop error (after killing the tree) if the run was stopped."""
        reason = limits.stop_reason() if limits is not None else None
        if reason is not None:
            self.kill()
            raise LuaSkillsError(reason)

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError:
                data = b""
            with self._cond:
                if data:
                    self._chunks.append(data)
                else:
                    self._eof = True
                self._cond.notify_all()
            if not data:
                return

    def _read_windows(self, size: int, limits) -> bytes:
        with self._cond:
            while not self._chunks and not self._eof:
                if limits is not None:
                    reason = limits.stop_reason()
                    if reason is not None:
                        self.kill()
                        raise LuaSkillsError(reason)
                    self._cond.wait(min(limits.remaining(), _POLL_SLICE))
                else:
                    self._cond.wait()
            if not self._chunks:
                return b""
            data = self._chunks.popleft()
            if len(data) > size:
                self._chunks.appendleft(data[size:])
                data = data[:size]
            return data

    def write(self, data):
        raise OSError(errno_codes.EBADF, os.strerror(errno_codes.EBADF))

    def seek(self, offset, whence):
        raise OSError(errno_codes.ESPIPE, os.strerror(errno_codes.ESPIPE))

    def flush(self):
        pass

    # -- ending ------------------------------------------------------------------------------
    def close(self, limits):
        """Close our end, wait for the exit status, kill what the group left behind."""
        if not _WINDOWS:
            self._close_fd()
        if limits is None:
            self.proc.wait()
        else:
            while True:
                reason = limits.stop_reason()
                if reason is not None:
                    self.kill()
                    raise LuaSkillsError(reason)
                try:
                    self.proc.wait(timeout=min(limits.remaining(), _POLL_SLICE) or 0.001)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._kill_group()
        self._finish()
        code = self.proc.returncode
        if code < 0:
            return (None, b"signal", -code)
        return (True if code == 0 else None, b"exit", code)

    def kill(self) -> None:
        """Kill the whole group now and reap the shell (idempotent)."""
        self._kill_group()
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        self._close_fd()
        self._finish()

    def _kill_group(self) -> None:
        if _WINDOWS:
            if self.proc.poll() is None:
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.proc.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return
        self._tree.kill(self.proc)

    def _close_fd(self) -> None:
        if not self._closed:
            self._closed = True
            self.proc.stdout.close()

    def _finish(self) -> None:
        if _WINDOWS:
            self._reader.join()
            self._close_fd()
