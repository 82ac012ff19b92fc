"""Managed child processes without Lua: ProcessSession (interactive) and exec_command (one-shot)."""
from luaskills_runtime.process.exec_run import exec_command
from luaskills_runtime.process.session import ProcessSession

__all__ = ["ProcessSession", "exec_command"]
