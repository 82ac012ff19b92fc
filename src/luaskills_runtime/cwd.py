"""Process-wide working-directory switching for Lua runs (runlua files, lease evals).

The current directory belongs to the whole process, so every switch happens under one lock and
the previous directory is restored on the way out, whatever the code did.  The lock is
re-entrant so a caller may take it first (for example to give up waiting when a request is
cancelled) and then enter working_directory() without deadlocking.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator, Union

PathText = Union[str, bytes, "os.PathLike[str]"]

CWD_LOCK = threading.RLock()


@contextmanager
def working_directory(path: PathText) -> Iterator[None]:
    """Run the block with the process cwd set to `path`, under CWD_LOCK.

    Raises OSError (unchanged) when the current directory cannot be read or `path` cannot be
    entered; the directory is restored even when the block raises.  A failure to restore is
    raised after the block's own outcome (callers report it)."""
    with CWD_LOCK:
        original = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(original)
