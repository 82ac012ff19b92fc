"""Complete teardown for trees started through Python's ``subprocess`` rather than the process
core: ``io.popen`` (``pipe.py``) and the managed ``os.execute`` (``shell_status.py``) run
``sh -c`` there.  Their child gets the same environment tag as the core's own trees, and
:meth:`ForeignTree.kill` sweeps escaped descendants (``setsid``, double-fork daemons, ``set -m``
jobs, ``setpgid``) before the group goes, as the core's teardown does (``native/tree_posix.h``);
the host-death watchdog covers them too.  POSIX only: on Windows the callers use ``taskkill /T``.
"""
import os
import signal
import subprocess
from typing import Dict, Optional

from luaskills_runtime._native.process import foreign_tree_tag, kill_foreign_tree
from luaskills_runtime.errors import LuaSkillsError


class ForeignTree:
    """The tag of one ``subprocess``-started tree and its teardown."""

    __slots__ = ("tag",)

    def __init__(self) -> None:
        try:
            self.tag = foreign_tree_tag()
        except LuaSkillsError:   # no watchdog: the process group still holds the tree
            self.tag = ""

    def environment(self) -> Optional[Dict[str, str]]:
        """The child's environment: the host's plus the tag (None: inherit it unchanged)."""
        if not self.tag:
            return None
        name, value = self.tag.split("=", 1)
        env = dict(os.environ)
        env[name] = value
        return env

    def kill(self, proc: "subprocess.Popen[bytes]") -> None:
        """SIGKILL every process of the tree but leave the root to its caller's wait: escaped
        descendants first (by parent links while the root is unreaped, and by the tag), then the
        root's process group."""
        try:
            kill_foreign_tree(proc.pid, proc.returncode is None, self.tag)
        except LuaSkillsError:   # /proc unreadable: the group kill below still runs
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
