/* luahook.h - native timeout guard for LuaJIT VMs (lupa runtimes).
 *
 * Goal: a deadline for running Lua code that costs nothing until it passes.  Nothing is installed
 * in the VM while the deadline is ahead; ONE watchdog thread per process keeps the armed guards
 * in a deadline heap and, when a deadline passes, installs a count hook with count 1 on that VM
 * (lua_sethook from another thread: LuaJIT documents it as safe to call asynchronously; its own
 * lua.c installs a hook from a SIGINT handler the same way).  The hook then raises the guard's
 * message as a plain-string Lua error on every VM instruction until the host disarms, so pcall /
 * xpcall loops cannot swallow it, and since LuaJIT keeps hooks per global state it stops
 * coroutines of that VM too.  A host cancel installs the same hook at once.
 *
 * Compiled JIT traces never check hooks: with the JIT-off mechanism guarded code must run with the
 * JIT off (and its traces flushed) to be interruptible.  The JIT-on mechanism (jitguard.h, chosen
 * per slot) adds LuaJIT's profiler bit to the hook, which compiled code does check.
 *
 * LuaJIT updates the hook mask with plain read-modify-writes on the VM's thread (around every hook
 * call and __gc finalizer), so a lua_sethook from the watchdog thread while the VM runs can write
 * back a stale "hook running" bit and silence every hook for good.  The watchdog therefore pauses
 * the VM's thread (the thread that armed the guard) around each lua_sethook it issues: see
 * luaapi.h.  The VM's own lua_sethook calls (debug.sethook) can still overwrite the watchdog's
 * hook: while a guard fires, a debug.sethook wrapper re-installs the hook on the VM thread, and
 * the watchdog re-installs it when it has not raised for a while (LSR_HOOK_REASSERT_*).
 *
 * Objects:
 * - lsr_hook_slot: one guard.  Created by the host (refcount 1), bound to a lua_State when that
 *   state calls luaopen_luaskills_hook (the state then holds a second reference through a
 *   userdata whose __gc unbinds it when the state closes).  Freed when both references are gone,
 *   so neither side can see a dangling slot, and the watchdog never touches a state after its
 *   __gc ran: every access to slot->L happens under the one watchdog lock.
 * - lsr_heap: the deadline heap (generic over lsr_heap_node, unit-tested on its own).
 *
 * Every function here is thread-safe unless it says otherwise.
 */
#ifndef LSR_LUAHOOK_H
#define LSR_LUAHOOK_H

#include <stddef.h>
#include <stdint.h>
#include "luaapi.h"

#if defined(_WIN32)
#  define LSR_HOOK_EXPORT __declspec(dllexport)
#elif defined(__GNUC__)
#  define LSR_HOOK_EXPORT __attribute__((visibility("default")))
#else
#  define LSR_HOOK_EXPORT
#endif

/* Longest message the hook raises.  The hook copies it to its C stack under the lock, then
 * raises outside the lock, so the size is fixed. */
#define LSR_HOOK_MESSAGE_MAX 4096

/* While a fired guard is not disarmed, the watchdog looks at it again and re-installs the hook
 * when it has not raised since the last look: a hook lost to a race with the VM's own
 * lua_sethook/jit.* calls (both rewrite the dispatch table; most attempts can lose against code
 * that sets hooks in a loop) is put back.  Looks come every FAST ms during the first FAST_FOR ms
 * without a raise, then every REASSERT ms (the VM may simply be inside a long C or Python call). */
#define LSR_HOOK_REASSERT_MS 50
#define LSR_HOOK_REASSERT_FAST_MS 1
#define LSR_HOOK_REASSERT_FAST_FOR_MS 250

/* The watchdog installs and removes hooks while the VM's thread is paused (see luaapi.h for why);
 * it waits this long for that thread to stop before it gives up until its next look.  After
 * REASSERT_FAST_FOR ms of a firing guard that has not raised, it writes the hook even if the
 * thread does not stop (it may block the pause signal). */
#define LSR_HOOK_PAUSE_WAIT_MS 20

/* ---- deadline heap ---------------------------------------------------------------------- */

typedef struct lsr_heap_node {
    int64_t key;    /* deadline, monotonic ms (lsr_now_ms) */
    uint64_t seq;   /* insertion order: equal keys leave in FIFO order */
    size_t pos;     /* index in the heap, LSR_HEAP_NONE when not in it */
} lsr_heap_node;

#define LSR_HEAP_NONE ((size_t)-1)

typedef struct lsr_heap {
    lsr_heap_node **items;
    size_t len, cap;
    uint64_t next_seq;
} lsr_heap;

/* Not thread-safe: the owner locks.  lsr_heap_init never fails; lsr_heap_free frees the array
 * (nodes belong to the caller). */
void lsr_heap_init(lsr_heap *h);
void lsr_heap_free(lsr_heap *h);
/* Insert node (not in any heap; its pos must be LSR_HEAP_NONE) with its current key.
 * Returns 0 or ENOMEM (node left out). */
int lsr_heap_push(lsr_heap *h, lsr_heap_node *node);
/* Remove node if it is in the heap.  Never fails. */
void lsr_heap_remove(lsr_heap *h, lsr_heap_node *node);
/* Restore order after node->key changed (node in the heap).  Keeps its seq.  Never fails. */
void lsr_heap_update(lsr_heap *h, lsr_heap_node *node);
/* Node with the smallest (key, seq), or NULL when empty.  Never fails. */
lsr_heap_node *lsr_heap_top(const lsr_heap *h);

/* ---- process-wide set-up ---------------------------------------------------------------- */

/* Initialise the watchdog lock and condition.  Call once, before anything else here (the Python
 * module does it at import).  Returns 0, or the errno of pthread_mutex_init/pthread_cond_init. */
int lsr_hook_global_init(void);

/* Why VM threads cannot be paused in this process (lsr_vm_pause_init failed, e.g. every
 * real-time signal is taken), or NULL when they can.  Never fails. */
const char *lsr_hook_pause_error(void);

/* Stop and join the watchdog thread if it runs (interpreter exit, tests).  Guards still armed
 * stay in the heap, inert until the next arm starts a new watchdog (which serves them all); an
 * arm that raced with the stop restarts it at once.  Call without the GIL.  Never fails. */
void lsr_watchdog_stop(void);
/* 1 while a watchdog thread exists.  Never fails. */
int lsr_watchdog_running(void);
/* os.fork support: prepare takes the lock, parent releases it, child re-creates the (now
 * threadless) watchdog state and restarts a watchdog if guards are armed.  child returns 0, or -1
 * with the failing call in err. */
void lsr_watchdog_fork_prepare(void);
void lsr_watchdog_fork_parent(void);
int lsr_watchdog_fork_child(char *err, size_t errlen);

/* ---- guards ----------------------------------------------------------------------------- */

typedef struct lsr_hook_slot lsr_hook_slot;

/* New unbound slot, owned by the host, waiting for luaopen_luaskills_hook(token) to bind it to a
 * lua_State.  token: a value the Lua side cannot guess (the binding picks a random integer that a
 * double holds exactly).  jit_profile: 1 for the JIT-on mechanism (jitguard.h; only after
 * lsr_jitguard_init succeeded): binding puts the VM in profiler line mode, and the watchdog
 * stops compiled code too, writing only while the VM's thread is paused and its trace recorder
 * idle.  0: the JIT-off mechanism (the host keeps the JIT off).  Returns NULL when out of memory. */
lsr_hook_slot *lsr_hook_slot_new(double token, int jit_profile);
/* The host drops its slot: disarm (the VM may still be running: the hook is removed
 * asynchronously), forget a pending binding, release the host reference.  Never fails. */
void lsr_hook_slot_release(lsr_hook_slot *s);
/* 1 while the slot is bound to a live lua_State.  Never fails. */
int lsr_hook_slot_bound(lsr_hook_slot *s);

/* Arm: call it from the thread that will run the guarded Lua code (the watchdog pauses that
 * thread to install the hook; on POSIX systems other than Linux it must not end while armed).
 * The hook fires timeout_ms after now (saturating: a deadline beyond INT64_MAX ms never
 * fires), raising msg[0:len] (len <= LSR_HOOK_MESSAGE_MAX).  Re-arming a fired guard first removes
 * its hook.  Resets the fired count.  Starts the watchdog thread if none runs.  A jit_profile
 * slot whose VM left profiler line mode is put back in it (flushing its traces).  Returns 0, or -1
 * with err set: "the Lua state of this guard is closed", "message is longer than N bytes",
 * "out of memory (deadline heap)", the jitguard.h enable error, or the failing thread call. */
int lsr_hook_arm(lsr_hook_slot *s, uint64_t timeout_ms, const char *msg, size_t len,
                 char *err, size_t errlen);
/* Clear the deadline and remove the hook if it is ours.  Safe on unbound slots.  Never fails. */
void lsr_hook_disarm(lsr_hook_slot *s);
/* Fire now with msg (from any thread).  Returns 1 when the guard was armed (now firing), 0 when it
 * was idle (nothing to stop), -1 with err when the message is too long or the state is closed. */
int lsr_hook_cancel(lsr_hook_slot *s, const char *msg, size_t len, char *err, size_t errlen);
/* How many times the hook raised since the last arm.  Never fails. */
uint64_t lsr_hook_raised(lsr_hook_slot *s);
/* 0 idle, 1 armed (deadline ahead), 2 firing (hook installed).  Never fails. */
int lsr_hook_state(lsr_hook_slot *s);
/* Monotonic ms when the watchdog or cancel installed the hook since the last arm, or -1.
 * Never fails. */
int64_t lsr_hook_fired_at(lsr_hook_slot *s);

/* The Lua side of the binding, reached through package.loadlib(<this module's file>,
 * "luaopen_luaskills_hook") and called from the state's main thread as f(token [, sethook]).
 * Binds the slot to the state and returns the userdata that anchors it (no fields, no
 * metatable access).  When `sethook` (the state's debug.sethook) is given, also returns a
 * replacement for it that re-installs the guard's hook whenever user code changes hooks while the
 * guard fires; the host puts it in the debug table.  Raises a Lua error when called from a
 * coroutine, with an unknown token, or when the state already has a live guard; returns nothing
 * when the Lua C API is not resolved yet.  The host should remove package.loadlib from
 * user-visible globals afterwards if user code must not load C modules. */
LSR_HOOK_EXPORT int luaopen_luaskills_hook(lua_State *L);

#endif /* LSR_LUAHOOK_H */
