"""A timeout guard that needs no exported Lua C API, and the choice between it and the native one.

The native guard (``_native.luahook.TimeoutGuard``) finds ``lua_sethook`` and friends in lupa's
extension module with dlsym/GetProcAddress.  lupa's Windows wheels export no ``lua_*`` symbol, so
there it cannot bind.  ``LuaHookGuard`` does the same job with only what lupa offers: while a run
is armed, a Lua count hook every ``CHECK_EVERY`` instructions reads a flag that a watchdog thread
sets at the deadline or on cancel (a LuaJIT ffi cell, so the check needs no call into Python);
once set, the hook raises the guard's message on every instruction until disarm, exactly like the
native guard (same messages, pcall loops cannot swallow it).  See chunks/lua_hook_guard.lua.

User code cannot switch it off: its Lua functions show no upvalues through the debug library, and
``debug.getregistry()`` returns a view of the registry without the slot where ``debug.sethook``
keeps the hook (reads and writes go through; ``pairs`` over the view yields nothing).  The ffi it
loads is not left in ``package.loaded`` (runlua's isolation watches that entry).

Its price: LuaJIT sends every interpreted instruction through its hook dispatcher as soon as any
count hook is set, whatever the count, so CPU-bound code runs slower while armed
(benchmarks/bench_timeout_guard.py prints both guards' overhead).  The native guard installs no
hook before the deadline and stays the default wherever it can bind.

On PUC Lua 5.1 (the lua51 engine, luaskills_runtime.lua_engine) this guard is the one used: hooks
there belong to each coroutine (a new one copies its creator's), so the native guard's hook, set
on the main thread only once the deadline passed, would never reach a coroutine that loops, while
this guard's hook, set at arm, is inherited by every coroutine the run creates (and stays on them:
it checks the flag whenever they run again).  PUC Lua's count hook costs one decrement per
instruction and a call every CHECK_EVERY, and without ffi the flag is read through Python then
(benchmarks/bench_timeout_guard.py prints the lua51 overhead too).

Which guard a VM gets is chosen in luaskills_runtime.lua.guard_mechanism (``LUASKILLS_GUARD``);
both kinds offer ``arm``, ``disarm``, ``cancel``, ``fired`` and ``raised_count``.
"""
from __future__ import annotations

import ctypes
import heapq
import itertools
import os
import threading
import time
import weakref
from typing import Optional

from luaskills_runtime.lua.chunk_files import read_chunk

# Instructions between two flag checks.  LuaJIT's cost of a count hook does not depend on the
# count (every instruction goes through the hook dispatcher), so the count only sets how fast a
# fired guard is noticed: 100k interpreted instructions take well under a millisecond.
CHECK_EVERY = 100_000

MESSAGE_MAX = 4096  # as the native guard (LSR_HOOK_MESSAGE_MAX, native/luahook.h)

_LUA_SOURCE = read_chunk("luaskills_runtime.lua", "lua_hook_guard.lua")


def _message_bytes(message) -> bytes:
    if isinstance(message, str):
        data = message.encode("utf-8")
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message)
    else:
        raise TypeError(f"message must be bytes or str, got {type(message).__name__}")
    if len(data) > MESSAGE_MAX:
        raise ValueError(f"message is longer than {MESSAGE_MAX} bytes")
    return data


def _timeout_seconds(timeout_ms) -> float:
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int):
        raise TypeError("timeout_ms must be an integer number of milliseconds, "
                        f"got {type(timeout_ms).__name__}")
    if timeout_ms <= 0:
        raise ValueError("timeout_ms must be greater than 0")
    return timeout_ms / 1000.0


class _Watchdog:
    """One thread per process that fires guards whose deadline passed.

    Deadlines sit in a heap of (deadline, seq, weak reference to the guard, generation): a
    pending deadline must not keep a dropped guard's Lua state alive.  Disarming only bumps the
    guard's generation; stale entries are dropped when they come up, or all at once when more
    than half the heap may be stale (so a stream of disarmed long timeouts cannot grow it).
    """

    def __init__(self):
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)  # the thread did not survive the fork

    def _reset(self):
        self._cond = threading.Condition(threading.Lock())
        self._heap: list = []
        self._stale = 0
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def schedule(self, guard: "LuaHookGuard", deadline: float, generation: int) -> None:
        with self._cond:
            entry = (deadline, next(self._seq), weakref.ref(guard), generation)
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="luaskills-lua-hook-watchdog")
                self._thread.start()
            elif self._heap[0] is entry:
                self._cond.notify()

    def note_stale(self) -> None:
        """An entry went stale (its guard was disarmed or re-armed)."""
        with self._cond:
            self._stale += 1
            if self._stale > 64 and 2 * self._stale > len(self._heap):
                self._heap = [e for e in self._heap if _live_entry(e)]
                heapq.heapify(self._heap)
                self._stale = 0

    def pending(self) -> int:
        """Entries in the heap, stale ones included (for tests)."""
        with self._cond:
            return len(self._heap)

    def _run(self):
        while True:
            with self._cond:
                now = time.monotonic()
                heap = self._heap
                due = []
                while heap and heap[0][0] <= now:
                    due.append(heapq.heappop(heap))
                if not due:
                    self._cond.wait(heap[0][0] - now if heap else None)
                    continue
            for _deadline, _seq, guard_ref, generation in due:
                guard = guard_ref()
                if guard is not None:
                    guard._fire_timeout(generation)


def _live_entry(entry) -> bool:
    guard = entry[2]()
    return guard is not None and guard._generation == entry[3]


_watchdog = _Watchdog()


class LuaHookGuard:
    """Deadline guard for one lupa LuaRuntime, made of a Lua count hook and a watchdog thread.

    Same contract as the native TimeoutGuard for what the package uses: ``arm`` from the thread
    that will run the guarded Lua code, ``disarm`` after it (never raises), ``cancel`` from any
    thread, then ``fired`` says whether the guard stopped the code.  The guard keeps its runtime
    (and so the flag cell the Lua side allocated) alive.

    use_ffi=False reads the flag through a call into Python instead of an ffi cell (what a Lua
    without ffi would do; slower: the call takes the interpreter lock every CHECK_EVERY
    instructions).
    """

    def __init__(self, runtime, *, use_ffi: bool = True, host_debug=None, host_ffi=None):
        self.runtime = runtime
        self._lock = threading.Lock()
        self._armed = False
        self._generation = 0
        self._flag = 0                 # mirror of the cell, and the flag itself without ffi
        self._message = b""
        self._raised = 0
        self._lua_arm, self._lua_disarm, address = runtime.execute(
            _LUA_SOURCE, runtime.globals(), CHECK_EVERY, self._take_message, self._poll_flag,
            use_ffi, host_debug, host_ffi)
        self._cell = ctypes.c_int32.from_address(int(address)) if address is not None else None

    @property
    def uses_ffi(self) -> bool:
        return self._cell is not None

    # -- called by the Lua hook (VM thread, interpreter lock held by lupa's callback) --
    def _take_message(self) -> bytes:
        with self._lock:
            self._raised += 1
            return self._message

    def _poll_flag(self) -> bool:
        return self._flag != 0

    def _set_flag(self, value: int) -> None:
        self._flag = value
        if self._cell is not None:
            self._cell.value = value  # an aligned 32-bit store: the hook sees it whole

    def _fire_timeout(self, generation: int) -> None:
        """Watchdog: fire when this arm is still the current one (and not cancelled already)."""
        with self._lock:
            if generation == self._generation and self._armed and self._flag == 0:
                self._set_flag(1)

    def arm(self, timeout_ms, message) -> None:
        """Start the deadline: timeout_ms (> 0) from now the hook raises ``message``.  Installs
        the count hook (call this from the thread that runs the guarded code)."""
        seconds = _timeout_seconds(timeout_ms)
        text = _message_bytes(message)
        with self._lock:
            was_armed = self._armed
            self._generation += 1
            generation = self._generation
            self._armed = True
            self._message = text
            self._raised = 0
            self._set_flag(0)
        if was_armed:
            _watchdog.note_stale()
        try:
            self._lua_arm()
        except BaseException:  # e.g. a memory error in the Lua state: leave the guard idle
            with self._lock:
                self._armed = False
                self._generation += 1
            raise
        _watchdog.schedule(self, time.monotonic() + seconds, generation)

    def disarm(self) -> None:
        """Clear the deadline and remove the hook (user hooks come back).  Never raises."""
        with self._lock:
            if not self._armed:
                return
            self._armed = False
            self._generation += 1
            self._set_flag(0)
        _watchdog.note_stale()
        try:
            self._lua_disarm()
        except Exception:  # noqa: BLE001 - a broken state cannot be disarmed further; never raise
            pass

    def cancel(self, message) -> bool:
        """Fire now with ``message`` (any thread).  True when armed (a guard that already fired
        keeps its first message), False when idle."""
        text = _message_bytes(message)
        with self._lock:
            if not self._armed:
                return False
            if self._flag == 0:
                self._message = text
                self._set_flag(1)
            return True

    @property
    def fired(self) -> bool:
        """True when the hook raised since the last arm (the guarded code was stopped)."""
        return self._raised > 0

    @property
    def raised_count(self) -> int:
        return self._raised

    @property
    def state(self) -> str:
        """``"idle"``, ``"armed"`` or ``"firing"``, as the native guard's."""
        if not self._armed:
            return "idle"
        return "firing" if self._flag else "armed"
