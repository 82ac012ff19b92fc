# cython: language_level=3
"""Native timeout guard for lupa runtimes, LuaJIT 2.1 or PUC Lua 5.1 (C core: native/luahook.c).

A guard costs nothing while its deadline is ahead: no hook is installed in the VM.  One watchdog
thread for the whole process installs a count hook on the VM only when its deadline passes (or on
``cancel``); the hook then raises the guard's message on every Lua instruction until ``disarm``,
so ``pcall``/``xpcall`` loops and coroutines cannot outlive it.

The hook is installed while the thread that armed the guard is paused (a signal on POSIX,
SuspendThread on Windows): LuaJIT updates its hook mask without atomics on the VM's thread, and a
write from another thread while that thread runs can silence every hook for good.  So arm from the
thread that runs the guarded Lua code (``call``, ``armed`` and ``guarded_call`` do).

Two mechanisms, chosen per guard at creation (``TimeoutGuard(runtime, jit_profile=...)``):

* ``JIT_OFF_HOOK`` ("jit-off-hook"): compiled JIT traces do not look at hooks, so run guarded code
  with the JIT off, e.g. through ``guard.call(..., jit_off=True)`` (turns the JIT engine off and
  flushes every trace for the call, then turns it back on if it was on).
* ``JIT_PROFILE`` ("jit-profile", native/jitguard.h): the VM runs with the JIT on in LuaJIT's
  profiler line mode, and the watchdog also sets the profiler bit that compiled traces check.
  Available when ``jit_guard_check()`` returns None (a self-check of this LuaJIT build passed).
  Nothing else in the process may use LuaJIT's profiler (``jit.profile``, ``luaJIT_profile_*``):
  keep ``jit.profile`` away from user code.

Quiet import: importing this module installs nothing.  The pause signal's handler (SIGRTMAX, or
the highest free real-time signal; SIGURG where there is none) and the watchdog's lock are set up
when the first ``TimeoutGuard`` is created (or ``pause_error()`` is asked), so a host that never
runs guarded code keeps its signal table untouched.

Installing a guard loads this module into the Lua state with ``package.loadlib``; a host that
keeps C modules away from user code removes ``package.loadlib`` after installing its guards.  It
also replaces ``debug.sethook`` with a wrapper that behaves the same but puts the guard's hook back
when user code changes hooks while the guard fires (code setting hooks in a loop would otherwise
keep erasing it).
Once a guard fired, *any* Lua instruction of that VM raises until ``disarm``, so wrappers must do
their post-processing after disarming.  After a run, ``guard.fired`` tells whether the guard
stopped it; report the guard's message whatever the error text says.

Limits (LuaJIT's, shared with PUC Lua and the reference's hook): an ``xpcall`` message handler
called for the hook's error, and ``__gc`` finalizers, run with hooks disabled.  A handler runs to
its end unguarded (and its return value becomes xpcall's result), so a handler that never returns
cannot be stopped.
"""
import atexit
import operator
import os
import secrets

cimport cython
from libc.stdint cimport uint64_t, int64_t
from libc.stdlib cimport malloc, free

from luaskills_runtime._native.c_luahook cimport (
    LSR_HOOK_MESSAGE_MAX, LSR_HOOK_REASSERT_MS, LSR_HEAP_NONE,
    lsr_luaapi_resolve, lsr_heap, lsr_heap_node, lsr_heap_init, lsr_heap_free, lsr_heap_push,
    lsr_heap_remove, lsr_heap_update, lsr_heap_top, lsr_hook_global_init, lsr_hook_pause_error,
    lsr_watchdog_stop,
    lsr_watchdog_running, lsr_watchdog_fork_prepare, lsr_watchdog_fork_parent,
    lsr_watchdog_fork_child, lsr_hook_slot, lsr_hook_slot_new, lsr_hook_slot_release,
    lsr_hook_slot_bound, lsr_hook_arm, lsr_hook_disarm, lsr_hook_cancel, lsr_hook_raised,
    lsr_hook_state, lsr_hook_fired_at, lsr_now_ms,
    LSR_JITGUARD_VERSION_SYMBOL, lsr_jitguard_init, lsr_jitguard_available,
)

from luaskills_runtime.lua_engine import ENGINE as _ENGINE_NAME, lupa_engine as _engine

from luaskills_runtime.errors import LuaSkillsError

MESSAGE_MAX = LSR_HOOK_MESSAGE_MAX
REASSERT_MS = LSR_HOOK_REASSERT_MS
_STATES = ("idle", "armed", "firing")
_U64_MAX = (1 << 64) - 1

cdef bint _hook_ready = False
cdef bint _api_ready = False

JIT_PROFILE = "jit-profile"
JIT_OFF_HOOK = "jit-off-hook"
VERIFIED_LUAJIT = LSR_JITGUARD_VERSION_SYMBOL.decode("ascii")


def jit_guard_check(version_symbol=None):
    """Run the JIT-on mechanism's self-check of lupa's LuaJIT build (once per process; later
    calls return the first answer).  None when it passed, else why not (a string).

    version_symbol: the exported version symbol to require (default: the verified build's); tests
    pass another name in a fresh process to see the refusal."""
    try:
        _ensure_api()
    except LuaSkillsError as error:
        return str(error)
    cdef bytes symbol = (VERIFIED_LUAJIT if version_symbol is None else version_symbol).encode()
    cdef char err[256]
    if lsr_jitguard_init(symbol, err, sizeof(err)) != 0:
        return _c_text(err)
    return None


cdef _ensure_hook_init():
    """Set up the watchdog's lock and the pause signal's handler (once per process, on first
    need: importing this module must not touch the host's signal table)."""
    global _hook_ready
    if _hook_ready:
        return
    cdef int rc = lsr_hook_global_init()
    if rc != 0:
        raise OSError(rc, f"lsr_hook_global_init: {os.strerror(rc)}")
    _hook_ready = True


cdef _ensure_api():
    """Fill the C side's Lua API table from the engine's lupa module (luaskills_runtime.lua_engine;
    once per process)."""
    global _api_ready
    _ensure_hook_init()
    if _api_ready:
        return
    cdef char err[512]
    cdef bytes path = os.fsencode(_engine.__file__)
    if lsr_luaapi_resolve(path, err, sizeof(err)) != 0:
        raise LuaSkillsError(
            f"cannot reach the Lua C API of lupa.{_ENGINE_NAME}: {err.decode('utf-8', 'replace')}")
    _api_ready = True


cdef str _c_text(const char *err):
    return err.decode("utf-8", "replace")


def _lua_error_text(error) -> str:
    text = str(error)
    cut = text.find("\nstack traceback:")
    return text if cut < 0 else text[:cut]


cdef uint64_t _timeout_arg(timeout_ms) except? 0:
    if isinstance(timeout_ms, bool):
        raise TypeError("timeout_ms must be an integer number of milliseconds, got bool")
    try:
        value = operator.index(timeout_ms)
    except TypeError:
        raise TypeError("timeout_ms must be an integer number of milliseconds, "
                        f"got {type(timeout_ms).__name__}") from None
    if value <= 0:
        raise ValueError("timeout_ms must be greater than 0")
    return <uint64_t>min(value, _U64_MAX)  # beyond 2**64-1 ms the deadline never comes anyway


cdef bytes _message_arg(message):
    if isinstance(message, str):
        data = message.encode("utf-8")
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message)
    else:
        raise TypeError(f"message must be bytes or str, got {type(message).__name__}")
    if len(data) > LSR_HOOK_MESSAGE_MAX:
        raise ValueError(f"message is longer than {LSR_HOOK_MESSAGE_MAX} bytes")
    return data


@cython.final
@cython.no_gc_clear  # the runtime must outlive the slot's release (see __dealloc__)
cdef class TimeoutGuard:
    """Deadline guard for one LuaRuntime of the process's engine (``lupa.luajit21`` or
    ``lupa.lua51``, see luaskills_runtime.lua_engine; one guard per runtime).

    The guard holds a reference to the runtime, so the Lua state cannot close while the guard
    lives; dropping the guard disarms it (if Lua code of this runtime is still running in another
    thread, it then runs unguarded).
    """
    cdef lsr_hook_slot *slot
    cdef readonly object runtime
    cdef object _anchor   # the Lua userdata binding the slot to the state
    cdef tuple _jit       # (status, on, off, flush) captured at install, or None
    cdef readonly str mechanism  # JIT_PROFILE or JIT_OFF_HOOK

    def __cinit__(self, runtime, *, jit_profile=False):
        self.slot = NULL

    def __init__(self, runtime, *, jit_profile=False):
        """jit_profile=True: the JIT-on mechanism (needs ``jit_guard_check()`` to return None;
        binding puts the state in profiler line mode and flushes its traces)."""
        if self.slot != NULL:
            raise LuaSkillsError("TimeoutGuard is already installed")
        if not isinstance(runtime, _engine.LuaRuntime):
            raise TypeError(f"TimeoutGuard needs a lupa.{_ENGINE_NAME}.LuaRuntime, "
                            f"got {type(runtime).__name__}")
        _ensure_api()
        if jit_profile:
            refused = jit_guard_check()
            if refused is not None:
                raise LuaSkillsError("TimeoutGuard(jit_profile=True): the JIT guard is not "
                                     f"available: {refused}")
        self.mechanism = JIT_PROFILE if jit_profile else JIT_OFF_HOOK
        token = float(secrets.randbits(52) + 1)  # exact in a Lua number, never 0
        self.slot = lsr_hook_slot_new(token, 1 if jit_profile else 0)
        if self.slot == NULL:
            raise MemoryError("TimeoutGuard slot")
        self.runtime = runtime
        self._anchor = self._bind(runtime, token)
        self._jit = self._capture_jit(runtime)

    cdef object _bind(self, runtime, double token):
        lua_type = _engine.lua_type
        package = runtime.globals()[b"package"]
        loadlib = package[b"loadlib"] if lua_type(package) == "table" else None
        if lua_type(loadlib) != "function":
            raise LuaSkillsError("TimeoutGuard needs package.loadlib in the Lua state to install")
        answer = loadlib(os.fsencode(__file__), b"luaopen_luaskills_hook")
        if isinstance(answer, tuple):  # nil, message, where
            detail = answer[1] if len(answer) > 1 else answer
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            raise LuaSkillsError(f"package.loadlib of the timeout guard failed: {detail}")
        # debug.sethook is swapped for a wrapper that puts the guard's hook back whenever user
        # code changes hooks while the guard fires (see guarded_sethook in luahook.c).
        debug = runtime.globals()[b"debug"]
        sethook = debug[b"sethook"] if lua_type(debug) == "table" else None
        try:
            if lua_type(sethook) == "function":
                anchor, wrapper = answer(token, sethook)
            else:
                anchor, wrapper = answer(token), None
        except _engine.LuaError as error:
            raise LuaSkillsError(_lua_error_text(error)) from None
        if anchor is None or not lsr_hook_slot_bound(self.slot):
            raise LuaSkillsError("TimeoutGuard: the Lua state did not bind the guard")
        if wrapper is not None:
            debug[b"sethook"] = wrapper
            loaded = package[b"loaded"]
            if lua_type(loaded) == "table":
                loaded_debug = loaded[b"debug"]
                if lua_type(loaded_debug) == "table" and loaded_debug != debug:
                    loaded_debug[b"sethook"] = wrapper
        return anchor

    cdef tuple _capture_jit(self, runtime):
        # Captured now, so user code that replaces jit.* later cannot change what call() does.
        lua_type = _engine.lua_type
        jit = runtime.globals()[b"jit"]
        if lua_type(jit) != "table":
            return None
        funcs = tuple(jit[name] for name in (b"status", b"on", b"off", b"flush"))
        if any(lua_type(f) != "function" for f in funcs):
            return None
        return funcs

    def __dealloc__(self):
        # Runs before the runtime reference is dropped (and no_gc_clear keeps gc from dropping
        # it earlier): the slot leaves the watchdog under its lock while the state still exists.
        if self.slot != NULL:
            lsr_hook_slot_release(self.slot)
            self.slot = NULL

    cdef lsr_hook_slot *_slot(self) except NULL:
        if self.slot == NULL:
            raise LuaSkillsError("TimeoutGuard is not installed")
        return self.slot

    def arm(self, timeout_ms, message):
        """Start the deadline: timeout_ms (> 0) from now the hook raises ``message``.

        Cheap: no thread and no hook per call.  Re-arming replaces the deadline and message."""
        cdef uint64_t timeout = _timeout_arg(timeout_ms)
        cdef bytes text = _message_arg(message)
        cdef lsr_hook_slot *slot = self._slot()
        cdef char err[256]
        if lsr_hook_arm(slot, timeout, text, len(text), err, sizeof(err)) != 0:
            raise LuaSkillsError(f"TimeoutGuard.arm: {_c_text(err)}")

    def disarm(self):
        """Clear the deadline and remove the hook if it is installed.  Never raises."""
        if self.slot != NULL:
            lsr_hook_disarm(self.slot)

    def cancel(self, message):
        """Fire now with ``message`` (callable from any thread).

        Returns True when the guard was armed (its code is being stopped; a guard that already
        fired keeps its first message), False when it was idle."""
        cdef bytes text = _message_arg(message)
        cdef lsr_hook_slot *slot = self._slot()
        cdef char err[256]
        cdef int rc = lsr_hook_cancel(slot, text, len(text), err, sizeof(err))
        if rc < 0:
            raise LuaSkillsError(f"TimeoutGuard.cancel: {_c_text(err)}")
        return rc == 1

    @property
    def fired(self):
        """True when the hook raised since the last arm (the guarded code was stopped)."""
        return self.slot != NULL and lsr_hook_raised(self.slot) > 0

    @property
    def raised_count(self):
        """How many times the hook raised since the last arm."""
        return lsr_hook_raised(self.slot) if self.slot != NULL else 0

    @property
    def state(self):
        """``"idle"``, ``"armed"`` (deadline ahead) or ``"firing"`` (hook installed)."""
        return _STATES[lsr_hook_state(self.slot)] if self.slot != NULL else "idle"

    @property
    def fired_at_ms(self):
        """When the watchdog (or cancel) installed the hook since the last arm, on the
        ``monotonic_ms()`` clock; None when it has not."""
        if self.slot == NULL:
            return None
        cdef int64_t at = lsr_hook_fired_at(self.slot)
        return None if at < 0 else at

    @property
    def bound(self):
        """True while the guard is bound to a live Lua state."""
        return self.slot != NULL and bool(lsr_hook_slot_bound(self.slot))

    def armed(self, timeout_ms, message):
        """Context manager: arm on enter, disarm on exit (exceptions pass through)."""
        _timeout_arg(timeout_ms)
        _message_arg(message)
        return _ArmedScope(self, timeout_ms, message)

    def call(self, func, *args, timeout_ms, message, jit_off=False):
        """Run ``func(*args)`` under the guard and return its result.

        jit_off=True turns the JIT engine off and flushes every compiled trace before the call
        (from this thread, through the state's own jit library), so that even a loop compiled by
        an earlier call is interpretable and stops at the deadline; the JIT is turned back on
        afterwards if it was on.  Lua errors propagate as the engine's ``LuaError``; when
        ``self.fired`` is True the run was stopped by the guard."""
        _timeout_arg(timeout_ms)
        _message_arg(message)
        jit_was_on = False
        if jit_off:
            if self._jit is None:
                raise LuaSkillsError(
                    "TimeoutGuard.call(jit_off=True): this Lua state has no jit library")
            status, jit_on, jit_off_fn, jit_flush = self._jit
            state = status()
            jit_was_on = bool(state[0] if isinstance(state, tuple) else state)
            jit_off_fn()
            jit_flush()
        try:
            self.arm(timeout_ms, message)
            try:
                return func(*args)
            finally:
                self.disarm()
        finally:
            if jit_was_on:
                jit_on()


@cython.final
cdef class _ArmedScope:
    cdef TimeoutGuard guard
    cdef object timeout_ms, message

    def __cinit__(self, TimeoutGuard guard, timeout_ms, message):
        self.guard = guard
        self.timeout_ms = timeout_ms
        self.message = message

    def __enter__(self):
        self.guard.arm(self.timeout_ms, self.message)
        return self.guard

    def __exit__(self, exc_type, exc, tb):
        self.guard.disarm()
        return False


def monotonic_ms():
    """The watchdog's clock (monotonic milliseconds)."""
    return lsr_now_ms()


def pause_error():
    """Why the watchdog cannot pause VM threads in this process (it then writes hooks while the
    VM runs, with a small risk of silencing them), or None when it can.  Sets the pause signal
    up if no guard did yet."""
    _ensure_hook_init()
    cdef const char *err = lsr_hook_pause_error()
    return None if err == NULL else _c_text(err)


def c_api_error():
    """Why this guard cannot reach the engine's Lua C API (lupa's Windows wheels export no
    lua_* symbol), or None when it can.  luaskills_runtime.lua.guard_mechanism falls back on this."""
    try:
        _ensure_api()
    except LuaSkillsError as error:
        return str(error)
    return None


def watchdog_running():
    """True while the process-wide watchdog thread exists."""
    return _hook_ready and bool(lsr_watchdog_running())


def stop_watchdog():
    """Stop and join the watchdog thread (registered with atexit).  Guards still armed stay
    armed but inert until the next arm starts a new watchdog."""
    if not _hook_ready:
        return
    with nogil:
        lsr_watchdog_stop()


# The fork hooks do nothing until the first guard set the watchdog up (the GIL keeps that from
# happening between prepare and parent/child).
def _fork_prepare():
    if _hook_ready:
        lsr_watchdog_fork_prepare()


def _fork_parent():
    if _hook_ready:
        lsr_watchdog_fork_parent()


def _fork_child():
    if not _hook_ready:
        return
    cdef char err[256]
    if lsr_watchdog_fork_child(err, sizeof(err)) != 0:
        raise LuaSkillsError(f"timeout guard watchdog after fork: {_c_text(err)}")


atexit.register(stop_watchdog)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_fork_prepare, after_in_parent=_fork_parent,
                        after_in_child=_fork_child)


@cython.final
cdef class _DeadlineHeap:
    """Test access to the watchdog's deadline heap, over ``capacity`` nodes numbered from 0."""
    cdef lsr_heap heap
    cdef lsr_heap_node *nodes
    cdef Py_ssize_t capacity

    def __cinit__(self, Py_ssize_t capacity):
        if capacity <= 0:
            raise ValueError("capacity must be a positive number")
        self.nodes = <lsr_heap_node *>malloc(capacity * sizeof(lsr_heap_node))
        if self.nodes == NULL:
            raise MemoryError()
        self.capacity = capacity
        cdef Py_ssize_t i
        for i in range(capacity):
            self.nodes[i].pos = LSR_HEAP_NONE
        lsr_heap_init(&self.heap)

    def __dealloc__(self):
        lsr_heap_free(&self.heap)
        free(self.nodes)

    cdef lsr_heap_node *_node(self, Py_ssize_t i) except NULL:
        if not 0 <= i < self.capacity:
            raise IndexError(i)
        return &self.nodes[i]

    def push(self, Py_ssize_t i, int64_t key):
        cdef lsr_heap_node *node = self._node(i)
        if node.pos != LSR_HEAP_NONE:
            raise ValueError(f"node {i} is already in the heap")
        node.key = key
        if lsr_heap_push(&self.heap, node) != 0:
            raise MemoryError()

    def update(self, Py_ssize_t i, int64_t key):
        cdef lsr_heap_node *node = self._node(i)
        if node.pos == LSR_HEAP_NONE:
            raise ValueError(f"node {i} is not in the heap")
        node.key = key
        lsr_heap_update(&self.heap, node)

    def remove(self, Py_ssize_t i):
        lsr_heap_remove(&self.heap, self._node(i))

    def __contains__(self, Py_ssize_t i):
        return self._node(i).pos != LSR_HEAP_NONE

    def top(self):
        """``(node, key)`` with the smallest (key, insertion order), or None."""
        cdef lsr_heap_node *node = lsr_heap_top(&self.heap)
        if node == NULL:
            return None
        return <Py_ssize_t>(node - self.nodes), node.key

    def pop(self):
        item = self.top()
        if item is not None:
            lsr_heap_remove(&self.heap, &self.nodes[item[0]])
        return item

    def __len__(self):
        return self.heap.len
