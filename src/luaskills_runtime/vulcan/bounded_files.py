"""Opening and reading files whose open or read can block -- a FIFO without a writer (or, for
writing, without a reader) -- within a guarded run's deadline and cancel.

Regular files go straight to ``open``.  A FIFO is opened non-blocking and waited for in slices,
looking at the run's limits (anything with ``stop_reason()`` and ``remaining()``, or None: then
nothing is bounded); when they say stop, LuaSkillsError with their reason is raised (the guard
then stops the code with the request's timeout or cancel error).  OSError is raised as ``open``
would, for the caller to word.  POSIX only; elsewhere plain ``open``.
"""
from __future__ import annotations

import errno
import os
import select
import stat
import time
from typing import IO

from luaskills_runtime.errors import LuaSkillsError

_SLICE_SEC = 0.01   # how often a wait looks at the run's limits
_CHUNK = 65536


def _is_fifo(name: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(name).st_mode)
    except (OSError, ValueError):
        return False   # open says why


def _wait_slice(limits) -> float:
    reason = limits.stop_reason()
    if reason is not None:
        raise LuaSkillsError(reason)
    return min(limits.remaining(), _SLICE_SEC) or _SLICE_SEC


def _wait_readable(fd: int, limits) -> int:
    """Poll events of a non-blocking FIFO reader once a writer wrote or left."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        events = poller.poll(_wait_slice(limits) * 1000)
        if events:
            return events[0][1]


def open_file(name: str, py_mode: str, limits) -> IO:
    """open(name, py_mode) whose wait for a FIFO's other side obeys `limits`."""
    if limits is None or os.name != "posix" or not _is_fifo(name):
        return open(name, py_mode)
    if py_mode.startswith("r") and "+" not in py_mode:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            _wait_readable(fd, limits)   # a blocking open would return once a writer came
        except BaseException:
            os.close(fd)
            raise
    elif "+" in py_mode:
        return open(name, py_mode)   # read-write opens of a FIFO do not block
    else:
        flags = os.O_WRONLY | os.O_NONBLOCK | (os.O_APPEND if py_mode.startswith("a") else 0)
        while True:
            try:
                fd = os.open(name, flags)
                break
            except OSError as error:
                if error.errno != errno.ENXIO:   # no reader yet
                    raise
                time.sleep(_wait_slice(limits))
    os.set_blocking(fd, True)
    return os.fdopen(fd, py_mode)


def read_file(name: str, limits) -> bytes:
    """The whole content of `name`; a FIFO is read until its writer closes, within `limits`."""
    if limits is None or os.name != "posix" or not _is_fifo(name):
        with open(name, "rb") as handle:
            return handle.read()
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    try:
        parts = []
        while True:
            _wait_readable(fd, limits)
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                continue
            if not data:   # the writer closed (poll said so): end of file
                return b"".join(parts)
            parts.append(data)
    finally:
        os.close(fd)
