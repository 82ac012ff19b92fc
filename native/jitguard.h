/* jitguard.h - the JIT-on half of the timeout guard (mechanism name "jit-profile").
 *
 * LuaJIT calls no debug hook inside compiled traces, so today's guard (luahook.c) runs guarded
 * code with the JIT off.  The one check compiled code does make is the profiler's: with a VM's
 * profiler mode set to 'l' (line), the trace recorder emits an IR_PROF guard at every trace start
 * and line change, which exits the trace when bit HOOK_PROFILE (0x80) of g->hookmask is set.  The
 * interpreter then calls the profiler callback (which clears the bit), and after that a count
 * hook installed together with the bit fires in the interpreter and raises the guard's error.
 * See /work/shared/notes/jit-guard.md (measured facts) and luahook.h (the watchdog).
 *
 * What this costs: the guards in every trace (1.00x-1.12x measured), the profiler of the process
 * (one per process in LuaJIT; a private Lua state owns it with a no-op callback and an interval of
 * ~24 days; NOTHING ELSE IN THE PROCESS MAY USE LuaJIT's PROFILER: jit.profile and
 * luaJIT_profile_* are off limits), and internal offsets of one LuaJIT build.  Those offsets are
 * checked by observable round trips at start-up (lsr_jitguard_init); any other build is refused
 * and the caller falls back to the JIT-off guard.
 *
 * The race: lua_sethook aborts a trace being recorded (J->state), and an asynchronous abort in the
 * middle of recording corrupts the recorder (a debug LuaJIT asserts, lj_dispatch.c:424).  So the
 * bit and the hook are only written while the VM's thread is stopped (paused by the watchdog, or
 * the caller is that thread) AND the trace compiler is idle AND no GC finalizer / VM event /
 * earlier profiler tick is in progress (the test LuaJIT's own profile_trigger makes); otherwise
 * the write is skipped and the watchdog tries again a millisecond later.
 *
 * Nothing here flushes traces from another thread (jit.flush / lj_trace_flushall off the VM's
 * thread frees machine code that may be running); the only flush is lsr_jitguard_enable's, on the
 * VM's own thread.  User code calling jit.off/on/flush changes nothing the guard needs: the
 * profiler mode survives them, and interpreted code sees the count hook anyway.
 *
 * Every function needs lsr_luaapi_resolve to have succeeded.  Not thread-safe unless stated.
 */
#ifndef LSR_JITGUARD_H
#define LSR_JITGUARD_H

#include <stddef.h>
#include "luaapi.h"

/* The exported version symbol of the one LuaJIT build whose offsets were verified (lupa 2.8's
 * luajit21 module, LuaJIT 2.1 at commit 18b087cd). */
#define LSR_JITGUARD_VERSION_SYMBOL "luaJIT_version_2_1_1774896198"

/* Run the self-check once per process (later calls return the first result): the module exports
 * version_symbol (pass LSR_JITGUARD_VERSION_SYMBOL; tests pass another name to see the refusal),
 * the platform is Linux x86-64, a private Lua state shows the offsets by
 * round trips (lua_sethook masks read back from g->hookmask; the profiler mode read back after
 * luaJIT_profile_start 'f', profile_stop, then 'l'; J->state read as "recording" from a jit.attach "record"
 * handler and as idle afterwards; a compiled loop left by the profiler timer into our callback,
 * which also shows this state owns the profiler).  On success the private state keeps the
 * profiler with a no-op callback for the life of the process.  Call with the GIL held (one
 * caller at a time).  Returns 0, or -1 with the reason in err (e.g. "dlsym(luaJIT_version_...):
 * ...", "hookmask round trip: set 0x8, read 0x0", "LuaJIT's profiler is in use by another Lua
 * state"). */
int lsr_jitguard_init(const char *version_symbol, char *err, size_t errlen);

/* 1 after lsr_jitguard_init succeeded.  Never fails. */
int lsr_jitguard_available(void);

/* Put L's VM in profiler line mode (flushes its traces).  Call on the VM's own thread, not from
 * inside a trace recorder callback.  Returns 0, or -1 with err ("the JIT guard is not
 * available", "profiler mode did not become 'l'"). */
int lsr_jitguard_enable(lua_State *L, char *err, size_t errlen);

/* 1 when L's VM is in profiler line mode (user code cannot change it without jit.profile).
 * Same threading rules as lsr_jitguard_fire. */
int lsr_jitguard_enabled(lua_State *L);

/* Install the stop: set HOOK_PROFILE and a count hook `hook` with count 1.  The VM's thread must
 * be stopped (or be the caller), and nothing here allocates or locks.  Returns 0 when written, -1
 * when the VM is busy (trace recording, a finalizer, a VM event, a profiler tick in progress):
 * nothing was written, try again later. */
int lsr_jitguard_fire(lua_State *L, lua_Hook hook);

/* Remove the stop: clear HOOK_PROFILE (unless a profiler tick is running, which clears it
 * itself) and every hook.  Same threading rules as lsr_jitguard_fire.  Returns 0, or -1 when a
 * trace is being recorded (nothing written: a stale count hook removes itself, see on_count in
 * luahook.c, and a stale HOOK_PROFILE only costs one no-op tick). */
int lsr_jitguard_clear(lua_State *L);

#endif /* LSR_JITGUARD_H */
