"""Guarded Lua execution: timeout, host cancel and memory cap around one run of Lua code.

Shared by runlua requests and runtime-lease evals.  Public pieces:

* ``prepare_guarded_vm(vm)``: once per VM.  Picks the guard mechanism (guard_mechanism.py): with
  ``jit-profile`` the JIT stays on; with ``jit-off-hook`` it turns the JIT off and flushes its
  traces (compiled traces never look at hooks) and makes ``jit.on`` raise.  Hides ``jit.profile``
  and binds a native ``TimeoutGuard`` to the VM (which also wraps ``debug.sethook`` so user hooks
  cannot remove the guard's).
* ``guarded_run(vm, code, chunkname, timeout_ms=..., cancel=..., cwd=...)`` compiles and runs
  `code` and returns a :class:`GuardedResult` (status, returned values, error text).  It never
  raises for a failure of the Lua code itself.
* ``CancelToken``: hand one to ``guarded_run`` and call ``token.cancel()`` from any thread.
* ``current_limits(vm)``: the deadline / cancel state of the run in progress, for Python
  primitives that block (managed ``io.popen`` reads) so they give up on time too.

Error texts follow the reference, whose messages are mlua errors shown with Display:
``runtime error: <message>``, ``syntax error: <message>``, ``memory error: <message>`` (the
reference also appends a stack traceback, which is left out here, as in run_lua).
"""
from __future__ import annotations

import functools
import time
from importlib import resources
from typing import Any, NamedTuple, Optional, Tuple

import lupa.luajit21 as lupa_engine

from luaskills_runtime.cwd import CwdLockTimeout, working_directory

from luaskills_runtime._native.luahook import TimeoutGuard
from luaskills_runtime.guard_mechanism import JIT_PROFILE, select_mechanism
from luaskills_runtime.vm import lua_error_text, lua_text

CANCEL_MESSAGE = "luaexec execution cancelled by the host"
OUT_OF_MEMORY = "not enough memory"

_GUARD_SOURCE = resources.files("luaskills_runtime").joinpath("guard.lua").read_text("utf-8")


@functools.lru_cache(maxsize=64)
def timeout_message(timeout_ms: int) -> str:
    return f"luaexec execution timed out after {timeout_ms} ms"


def memory_limit_message(limit_bytes: int) -> str:
    return f"luaexec memory limit of {limit_bytes} bytes exceeded"


class GuardedResult(NamedTuple):
    """Outcome of one guarded run.

    status: "ok", "error" (Lua runtime error), "syntax", "timeout", "cancelled" or "memory".
    values: the values the code returned (status "ok"), as lupa gives them (strings as bytes).
    reason: the plain message (e.g. ``luaexec execution timed out after 50 ms``), "" when ok.
    error: the reference's display text (``runtime error: <reason>``), "" when ok.
    """

    status: str
    values: Tuple[Any, ...]
    reason: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


_PREFIX = {"error": "runtime error: ", "syntax": "syntax error: ", "timeout": "runtime error: ",
           "cancelled": "runtime error: ", "memory": "memory error: "}


def _result(status: str, reason: str = "", values: Tuple[Any, ...] = ()) -> GuardedResult:
    return GuardedResult(status, values, reason, (_PREFIX[status] + reason) if reason else "")


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

    def stop_reason(self) -> Optional[str]:
        """The message the run must stop with now, or None while it may go on."""
        if self.cancel is not None and self.cancel.cancelled:
            return self.cancel.message
        if time.monotonic() >= self.deadline:
            return self.timeout_text
        return None


class _GuardControl:
    """Per-VM state of prepare_guarded_vm (kept on the VM as `vm.guard_control`)."""

    def __init__(self, vm):
        g = vm.runtime.globals()
        self.mechanism = select_mechanism()
        jit_profile = self.mechanism == JIT_PROFILE
        controls = vm.runtime.execute(_GUARD_SOURCE, g, vm.lua_message_of, jit_profile)
        self.runner = controls[b"run"]
        self.collect = controls[b"collect"]
        self.guard = TimeoutGuard(vm.runtime, jit_profile=jit_profile)
        self.limits: Optional[ExecutionLimits] = None
        self.memory_cap = vm.runtime.get_max_memory() or None


def prepare_guarded_vm(vm) -> _GuardControl:
    """Make `vm` ready for guarded runs (idempotent); returns its guard control."""
    control = getattr(vm, "guard_control", None)
    if control is None:
        control = _GuardControl(vm)
        vm.guard_control = control
    return control


def current_limits(vm) -> Optional[ExecutionLimits]:
    control = getattr(vm, "guard_control", None)
    return control.limits if control is not None else None


def guarded_call(vm, fn, *args, timeout_ms: int, timeout_text: Optional[str] = None,
                 cancel: Optional[CancelToken] = None, cwd: Optional[str] = None) -> GuardedResult:
    """Call `fn(*args)` (a Lua function, or Python code that calls into this VM's Lua) with the
    guard armed for `timeout_ms`, inside `cwd` when given.  Status "ok" carries fn's return value
    as the only element of `values`; Lua errors, timeouts, cancels and memory errors become the
    other statuses.  Python exceptions other than lupa's Lua errors propagate.

    The guard is armed before the cwd lock is taken, as in the reference, so time spent waiting
    for another request's directory switch counts against this run's timeout.
    """
    control = prepare_guarded_vm(vm)
    message = timeout_text or timeout_message(timeout_ms)
    guard = control.guard
    if cancel is not None and not cancel._attach(guard):
        return _result("cancelled", cancel.message)
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
        return _result("timeout", message)
    except lupa_engine.LuaMemoryError:
        raised = MemoryError()
    except lupa_engine.LuaError as error:
        raised = error
    except OSError as error:  # the cwd switch itself failed
        if cwd is None:
            raise
        return _result("error", f"luaexec set cwd: {error.strerror or error}")
    finally:
        if cancel is not None:
            cancel._detach()
        control.limits = None
    if guard.fired:
        if cancel is not None and cancel.cancelled:
            return _result("cancelled", cancel.message)
        return _result("timeout", message)
    if isinstance(raised, MemoryError):
        return _memory_result(control)
    if raised is not None:
        reason = lua_error_text(raised)
        if reason == OUT_OF_MEMORY:
            return _memory_result(control)
        return _result("error", reason)
    return _result("ok", values=(answer,))


def guarded_run(vm, code, chunkname=b"=luaexec", *, timeout_ms: int,
                timeout_text: Optional[str] = None, cancel: Optional[CancelToken] = None,
                cwd: Optional[str] = None) -> GuardedResult:
    """Compile and run `code` on `vm` under the guard; values are what the code returned."""
    if isinstance(code, str):
        code = code.encode("utf-8")
    if isinstance(chunkname, str):
        chunkname = chunkname.encode("utf-8")
    control = prepare_guarded_vm(vm)
    outcome = guarded_call(vm, control.runner, code, chunkname, timeout_ms=timeout_ms,
                           timeout_text=timeout_text, cancel=cancel, cwd=cwd)
    if not outcome.ok:
        return outcome
    answer = outcome.values[0]
    if not isinstance(answer, tuple):
        answer = (answer,)
    if answer[0] == b"ok":
        return _result("ok", values=answer[1:])
    return runner_failure(vm, answer[0], answer[1] if len(answer) > 1 else None)


def runner_failure(vm, status: bytes, message) -> GuardedResult:
    """The result for a run that reported (status, message) itself: b"syntax" for a compile
    error, anything else a runtime error (a memory error when the message says so)."""
    reason = lua_text(message) if message is not None else "nil"
    if status == b"syntax":
        return _result("syntax", reason)
    if reason == OUT_OF_MEMORY:
        return _memory_result(prepare_guarded_vm(vm))
    return _result("error", reason)


def _memory_result(control: _GuardControl) -> GuardedResult:
    if control.memory_cap:
        return _result("memory", memory_limit_message(control.memory_cap))
    return _result("memory", OUT_OF_MEMORY)

