"""The one run-outcome protocol between Lua runner chunks and Python.

Every runner chunk (lua/chunks/runner.lua, guard.lua, runlua's luaexec_env.lua, the lease's
lease_run.lua) answers ``status, ...``: ``"ok", values...`` or ``"error"|"syntax"|"scope",
message``.  :func:`answer_outcome` reads such an answer; the guard adds the outcomes Lua cannot
report itself (timeout, cancelled, memory).  runlua, leases, ``run_lua`` and the luaexec bridge
all see a :class:`RunOutcome`.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple, Tuple


OUT_OF_MEMORY = "not enough memory"


def lua_text(value) -> str:
    """A value from Lua as Python text (Lua strings arrive as bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def lua_error_text(error: Exception) -> str:
    """LuaError text without lupa's appended stack traceback."""
    text = str(error)
    cut = text.find("\nstack traceback:")
    return text if cut < 0 else text[:cut]


class RunStatus(str, Enum):
    """How a run of Lua code ended (a str, so it compares equal to its value)."""

    OK = "ok"
    ERROR = "error"          # a Lua runtime error
    SYNTAX = "syntax"        # the code did not compile
    SCOPE = "scope"          # the request scope could not be reset (namespace damaged)
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    MEMORY = "memory"

    def __str__(self) -> str:
        return self.value


# The reference's display prefixes (mlua error Display, or its scope-reset wording).
_PREFIX = {RunStatus.ERROR: "runtime error: ", RunStatus.SYNTAX: "syntax error: ",
           RunStatus.TIMEOUT: "runtime error: ", RunStatus.CANCELLED: "runtime error: ",
           RunStatus.MEMORY: "memory error: ", RunStatus.SCOPE: "request scope reset failed: "}

_BY_NAME = {status.value.encode(): status for status in RunStatus}


class RunOutcome(NamedTuple):
    """Outcome of one run.

    values: the values the code returned (status OK), as lupa gives them (strings as bytes).
    reason: the plain message (e.g. ``luaexec execution timed out after 50 ms``), "" when ok.
    error: the reference's display text (``runtime error: <reason>``), "" when ok.
    """

    status: RunStatus
    values: Tuple[Any, ...] = ()
    reason: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.OK


def outcome(status: RunStatus, reason: str = "", values: Tuple[Any, ...] = ()) -> RunOutcome:
    return RunOutcome(status, values, reason, (_PREFIX[status] + reason) if reason else "")


OK_EMPTY = RunOutcome(RunStatus.OK)


def answer_outcome(answer, memory_reason: str = OUT_OF_MEMORY) -> RunOutcome:
    """A runner chunk's answer (``status, ...``) as a RunOutcome; a runtime error whose message
    is Lua's out-of-memory text becomes MEMORY with `memory_reason`."""
    if not isinstance(answer, tuple):
        answer = (answer,)
    status = _BY_NAME.get(answer[0], RunStatus.ERROR)
    if status is RunStatus.OK:
        return RunOutcome(RunStatus.OK, answer[1:])
    message = answer[1] if len(answer) > 1 else None
    reason = lua_text(message) if message is not None else "nil"
    if status is RunStatus.ERROR and reason == OUT_OF_MEMORY:
        return outcome(RunStatus.MEMORY, memory_reason)
    return outcome(status, reason)
