"""Guarded Lua execution: timeout, host cancel and memory cap around one run of Lua code.

Shared by runlua requests and runtime-lease evals.  Public pieces:

* ``prepare_guarded_vm(vm)``: once per VM, by its owner, which keeps the returned control.
  Picks the guard mechanism (luaskills_runtime.lua.guard_mechanism) and binds that timeout guard
  to the VM: the native ``TimeoutGuard`` with the JIT on (``jit-profile``: it stops compiled code
  too) or off (``jit-off-hook``: the JIT is turned off, its traces flushed, and ``jit.on`` raises,
  since compiled traces never look at hooks), or ``LuaHookGuard`` where lupa's Lua C API cannot be
  reached (``lua-hook``, JIT off as well).  Every guard wraps ``debug.sethook`` so user hooks
  cannot remove the guard's, and raises on every instruction once fired, so the run-outcome
  protocol below reads any one's stop the same way (``guard.fired``).  ``jit.profile`` is hidden.
* ``guarded_run(control, code, chunkname, timeout_ms=..., cancel=..., cwd=...)`` compiles and runs
  `code` and returns a :class:`GuardedResult` (status, returned values, error text).  It never
  raises for a failure of the Lua code itself.
* ``CancelToken``: hand one to ``guarded_run`` and call ``token.cancel()`` from any thread.
* ``control.current_limits()``: the deadline / cancel state of the run in progress, for Python
  primitives that block (managed ``io.popen`` reads) so they give up on time too (hand the bound
  method to them as their limits provider).

Error texts follow the reference, whose messages are mlua errors shown with Display:
``runtime error: <message>``, ``syntax error: <message>``, ``memory error: <message>`` (the
reference also appends a stack traceback, which is left out here, as in run_lua).
"""
from __future__ import annotations

import functools
import math
import time
from typing import Optional, Union

from luaskills_runtime.lua_engine import lupa_engine

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.chunk_files import read_chunk
from luaskills_runtime.lua.cwd import CwdLockTimeout, working_directory

from luaskills_runtime.lua.guard_mechanism import JIT_PROFILE, guard_mechanism, new_timeout_guard
from luaskills_runtime.lua.outcome import (OUT_OF_MEMORY, RunOutcome, RunStatus, answer_outcome,
                                           lua_error_text, outcome)

CANCEL_MESSAGE = "luaexec execution cancelled by the host"
_DEADLINE_SLACK_SEC = 0.002  # a blocking call capped at the deadline may return this early

_GUARD_SOURCE = read_chunk("luaskills_runtime.lua", "guard.lua")


@functools.lru_cache(maxsize=64)
def timeout_message(timeout_ms: int) -> str:
    return f"luaexec execution timed out after {timeout_ms} ms"


def memory_limit_message(limit_bytes: int) -> str:
    return f"luaexec memory limit of {limit_bytes} bytes exceeded"


# The guard's results are the run-outcome protocol's (luaskills_runtime.lua.outcome).
GuardedResult = RunOutcome
_result = outcome


class CancelToken:
    """Lets a host stop one guarded run from another thread (before or while it runs).

    No lock: `cancel` writes `cancelled` before it reads the attached guard, and `_attach` writes
    the guard before it reads `cancelled`, so one of them always sees the other (the GIL orders
    the two threads' steps); the run then either never starts or its guard is cancelled.
    """

    __slots__ = ("_guard", "cancelled", "message")

    def __init__(self):
        self._guard = None
        self.cancelled = False
        self.message = CANCEL_MESSAGE

    def cancel(self, message: str = CANCEL_MESSAGE) -> bool:
        """Stop the run; True when it was running (it ends with `message`), False when it had not
        started yet (it will end at once when it does) or had already been cancelled."""
        if self.cancelled:
            return False
        self.message = message
        self.cancelled = True
        guard = self._guard
        if guard is not None:
            return bool(guard.cancel(message))
        return False

    def _attach(self, guard) -> bool:
        """Returns False when the token was cancelled before the run started."""
        self._guard = guard
        return not self.cancelled

    def _detach(self) -> None:
        self._guard = None


class ExecutionLimits:
    """The deadline and cancel state of a guarded run, for blocking Python primitives."""

    __slots__ = ("deadline", "timeout_text", "cancel")

    def __init__(self, deadline: float, timeout_text: str, cancel: Optional[CancelToken]):
        self.deadline = deadline
        self.timeout_text = timeout_text
        self.cancel = cancel

    def remaining(self) -> float:
        """Seconds left (0 when the deadline passed or the run was cancelled)."""
        if self.cancel is not None and self.cancel.cancelled:
            return 0.0
        return max(self.deadline - time.monotonic(), 0.0)

    def cap_ms(self, timeout_ms: Optional[Union[int, float]]) -> int:
        """A blocking call's own timeout (None: none) bounded by the run's deadline, in whole
        ms (at least 1, so the call still returns what is already there)."""
        left = max(int(math.ceil(self.remaining() * 1000)), 1)
        return left if timeout_ms is None else min(timeout_ms, left)

    def raise_if_over(self, capped: bool) -> None:
        """After a blocking call whose timeout cap_ms shortened (`capped`): when the run was
        cancelled or its time is up, raise its stop error (as a managed pipe read does), so the
        call hands no result of its own to a run that is over."""
        reason = self.stop_reason()
        if reason is None and capped and self.remaining() < _DEADLINE_SLACK_SEC:
            reason = self.timeout_text   # the call's cap was the deadline, due within a ms
        if reason is not None:
            raise LuaSkillsError(reason)

    def stop_reason(self) -> Optional[str]:
        """The message the run must stop with now, or None while it may go on."""
        if self.cancel is not None and self.cancel.cancelled:
            return self.cancel.message
        if time.monotonic() >= self.deadline:
            return self.timeout_text
        return None


class _GuardControl:
    """Per-VM state of prepare_guarded_vm, kept by the VM's owner (runlua VM, lease VM)."""

    def __init__(self, vm):
        self.vm = vm
        g = vm.runtime.globals()
        self.mechanism = guard_mechanism()   # "jit-profile", "jit-off-hook" or "lua-hook"
        jit_profile = self.mechanism == JIT_PROFILE
        controls = vm.runtime.execute(_GUARD_SOURCE, g, vm.lua_message_of, jit_profile)
        self.runner = vm.lua_run   # runner.lua's run: "ok", values... | status, message
        self.collect = controls[b"collect"]
        # the native guard loads itself with loadlib, which the policy may have removed; the Lua
        # hook takes the host's debug library and FFI from the policy
        with vm.policy.host_loadlib(vm.runtime):
            self.guard = new_timeout_guard(vm.runtime, self.mechanism, vm.policy)
        self.limits: Optional[ExecutionLimits] = None
        self.memory_cap = vm.runtime.get_max_memory() or None
        vm.current_limits = self.current_limits   # what the VM's blocking primitives obey


    def current_limits(self) -> Optional[ExecutionLimits]:
        return self.limits


def prepare_guarded_vm(vm) -> _GuardControl:
    """Make `vm` ready for guarded runs; returns its guard control (call once per VM)."""
    return _GuardControl(vm)


def guarded_call(control: _GuardControl, fn, *args, timeout_ms: int, timeout_text: Optional[str] = None,
                 cancel: Optional[CancelToken] = None, cwd: Optional[str] = None) -> GuardedResult:
    """Call `fn(*args)` (a Lua function, or Python code that calls into this VM's Lua) with the
    guard armed for `timeout_ms`, inside `cwd` when given.  Status "ok" carries fn's return value
    as the only element of `values`; Lua errors, timeouts, cancels and memory errors become the
    other statuses.  Python exceptions other than lupa's Lua errors propagate.

    The guard is armed before the cwd lock is taken, as in the reference, so time spent waiting
    for another request's directory switch counts against this run's timeout.
    """
    message = timeout_text or timeout_message(timeout_ms)
    guard = control.guard
    if cancel is not None and not cancel._attach(guard):
        return _result(RunStatus.CANCELLED, cancel.message)
    control.limits = ExecutionLimits(time.monotonic() + timeout_ms / 1000.0, message, cancel)
    raised: Optional[BaseException] = None
    answer = None
    try:
        guard.arm(timeout_ms, message)
        try:
            if cancel is not None and cancel.cancelled:  # cancelled between attach and arm
                guard.cancel(cancel.message)
            if cwd is None:
                answer = fn(*args)
            else:
                with working_directory(cwd, timeout=control.limits.remaining()):
                    answer = fn(*args)
        finally:
            guard.disarm()
    except CwdLockTimeout:
        return _result(RunStatus.TIMEOUT, message)
    except lupa_engine.LuaMemoryError:
        raised = MemoryError()
    except lupa_engine.LuaError as error:
        raised = error
    except OSError as error:  # the cwd switch itself failed
        if cwd is None:
            raise
        return _result(RunStatus.ERROR, f"luaexec set cwd: {error.strerror or error}")
    finally:
        if cancel is not None:
            cancel._detach()
        control.limits = None
    if guard.fired:
        if cancel is not None and cancel.cancelled:
            return _result(RunStatus.CANCELLED, cancel.message)
        return _result(RunStatus.TIMEOUT, message)
    if isinstance(raised, MemoryError):
        return _memory_result(control)
    if raised is not None:
        reason = lua_error_text(raised)
        if reason == OUT_OF_MEMORY:
            return _memory_result(control)
        return _result(RunStatus.ERROR, reason)
    return _result(RunStatus.OK, values=(answer,))


def guarded_run(control: _GuardControl, code, chunkname=b"=luaexec", *, timeout_ms: int,
                timeout_text: Optional[str] = None, cancel: Optional[CancelToken] = None,
                cwd: Optional[str] = None) -> GuardedResult:
    """Compile and run `code` on the control's VM under the guard; values are what the code
    returned."""
    if isinstance(code, str):
        code = code.encode("utf-8")
    if isinstance(chunkname, str):
        chunkname = chunkname.encode("utf-8")
    outcome = guarded_call(control, control.runner, code, chunkname, timeout_ms=timeout_ms,
                           timeout_text=timeout_text, cancel=cancel, cwd=cwd)
    if not outcome.ok:
        return outcome
    return runner_outcome(control, outcome.values[0])


def runner_outcome(control: _GuardControl, answer) -> GuardedResult:
    """The outcome a runner chunk reported itself (``status, ...``), with the memory cap's
    wording for out-of-memory errors."""
    return answer_outcome(answer, _memory_reason(control))


def _memory_reason(control: _GuardControl) -> str:
    if control.memory_cap:
        return memory_limit_message(control.memory_cap)
    return OUT_OF_MEMORY


def _memory_result(control: _GuardControl) -> GuardedResult:
    return _result(RunStatus.MEMORY, _memory_reason(control))
