"""The child side of a managed ``os.execute(command)``: the command through ``/bin/sh -c`` with
the host's stdin/stdout/stderr (as C's system()), in its own process group, so the whole tree
can be killed when the run that waits for it is stopped.

``run_shell_status(command, limits, track)`` returns system()'s raw wait status (exit code << 8,
or the signal number) or -1 when the shell could not be started.  `limits` is a guarded run's
limits (anything with ``stop_reason()`` and ``remaining()``, or None): when they say stop, the
tree is killed and LuaSkillsError with their reason is raised at once.  `track(tree)` hands the running tree (with ``kill()``) to an owner
that may end it early from another thread.
"""
from __future__ import annotations

import subprocess
from typing import Callable, Optional

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.process.foreign_tree import ForeignTree

_POLL_SLICE = 0.01   # how often the wait looks at the run's limits
SHELL = "/bin/sh"


class ShellTree:
    """A running ``sh -c`` and its descendants (one process group)."""

    def __init__(self, proc: subprocess.Popen, tree: ForeignTree):
        self.proc, self.tree = proc, tree

    def kill(self) -> None:
        self.tree.kill(self.proc)


def run_shell_status(command: bytes, limits, track: Optional[Callable] = None) -> int:
    try:
        foreign = ForeignTree()
        proc = subprocess.Popen([SHELL.encode(), b"-c", command], start_new_session=True,
                                env=foreign.environment())
    except OSError:
        return -1
    tree = ShellTree(proc, foreign)
    if track is not None:
        track(tree)
    try:
        while True:
            wait = None
            if limits is not None:
                reason = limits.stop_reason()
                if reason is not None:
                    tree.kill()
                    proc.wait()
                    raise LuaSkillsError(reason)   # the run is over: its error, no status
                wait = min(max(limits.remaining(), 0.0), _POLL_SLICE) or _POLL_SLICE
            try:
                code = proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        tree.kill()   # what the shell left running in its group ends with it
    if limits is not None:
        # A cancel kills the tree right after stopping the run, so the shell may end (killed)
        # before the loop saw the stop: the run's error, not the kill's status.
        reason = limits.stop_reason()
        if reason is not None:
            raise LuaSkillsError(reason)
    return code << 8 if code >= 0 else -code
