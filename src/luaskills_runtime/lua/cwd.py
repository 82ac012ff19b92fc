"""The process-wide current-directory switch shared by runlua file mode and runtime leases.

The working directory belongs to the whole process, so every temporary switch goes through one
lock: two requests never change it at the same time, and it is always restored, also when the code
that ran inside the switch failed.  The lock is re-entrant so a request that already holds it (a
lease eval that starts a nested run in the same thread) does not deadlock.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

_CWD_LOCK = threading.RLock()


class CwdLockTimeout(Exception):
    """The lock could not be taken before the caller's deadline."""


@contextmanager
def working_directory(path: Optional[str], timeout: Optional[float] = None) -> Iterator[None]:
    """Run the block with the process cwd set to `path` (None: no switch, no lock).

    `timeout` (seconds) bounds the wait for the lock; CwdLockTimeout is raised when it passes.
    OSError from the switch itself propagates unchanged (the cwd is then untouched).
    """
    if path is None:
        yield
        return
    if timeout is None or timeout >= threading.TIMEOUT_MAX:
        _CWD_LOCK.acquire()
    elif not _CWD_LOCK.acquire(timeout=max(timeout, 0.0)):
        raise CwdLockTimeout(path)
    try:
        original = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(original)
    finally:
        _CWD_LOCK.release()
