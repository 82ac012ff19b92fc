/* luaapi.h - the platform layer under the Lua timeout hook (luahook.c).
 *
 * 1. The few Lua C API entry points the hook needs, reached through a function-pointer table.
 *    lupa links LuaJIT statically into its luajit21 extension module and Python loads that module
 *    RTLD_LOCAL, so no other shared object can link against its lua_* symbols.  The table is
 *    filled at run time from lupa's own module (luaapi_posix.c: dlopen(RTLD_NOLOAD) + dlsym;
 *    luaapi_windows.c: GetModuleHandleW + GetProcAddress).  The prototypes and constants below are
 *    the stable Lua 5.1 ABI that LuaJIT 2.1 keeps; lua_State and lua_Debug stay opaque.  We do not
 *    ship LuaJIT headers.
 * 2. The watchdog's OS thread (start, join).
 * 3. Pausing the thread that runs a VM while the watchdog calls lua_sethook on it (see below).
 */
#ifndef LSR_LUAAPI_H
#define LSR_LUAAPI_H

#include <stddef.h>

#ifdef _WIN32
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <windows.h>
#else
#  include <pthread.h>
#  include <sys/types.h>
#endif

/* ---- Lua 5.1 ABI subset (as in LuaJIT 2.1's lua.h) ---------------------------------------- */

typedef struct lua_State lua_State;
typedef struct lua_Debug lua_Debug; /* never dereferenced here */
typedef double lua_Number;
typedef int (*lua_CFunction)(lua_State *L);
typedef void (*lua_Hook)(lua_State *L, lua_Debug *ar);

#define LSR_LUA_REGISTRYINDEX (-10000)
#define LSR_LUA_HOOKCOUNT 3
#define LSR_LUA_MASKCOUNT (1 << LSR_LUA_HOOKCOUNT)
#define LSR_LUA_TNIL 0
#define LSR_LUA_TFUNCTION 6
#define LSR_LUA_TUSERDATA 7

/* X-macro: (return type, field name, parameter list); the exported symbol is "lua_" + name.
 * The resolvers and the table are both generated from this one list. */
#define LSR_LUAAPI_FUNCTIONS(X)                                                   \
    X(int, sethook, (lua_State *L, lua_Hook func, int mask, int count))           \
    X(lua_Hook, gethook, (lua_State *L))                                          \
    X(int, error, (lua_State *L))                                                 \
    X(int, gettop, (lua_State *L))                                                \
    X(void, settop, (lua_State *L, int idx))                                      \
    X(void, pushvalue, (lua_State *L, int idx))                                   \
    X(void, insert, (lua_State *L, int idx))                                      \
    X(void, call, (lua_State *L, int nargs, int nresults))                        \
    X(void, pushlstring, (lua_State *L, const char *s, size_t len))               \
    X(void, pushstring, (lua_State *L, const char *s))                            \
    X(void, pushboolean, (lua_State *L, int b))                                   \
    X(void, pushlightuserdata, (lua_State *L, void *p))                           \
    X(void, pushcclosure, (lua_State *L, lua_CFunction fn, int n))                \
    X(int, pushthread, (lua_State *L))                                            \
    X(void, rawget, (lua_State *L, int idx))                                      \
    X(void, rawset, (lua_State *L, int idx))                                      \
    X(void, createtable, (lua_State *L, int narr, int nrec))                      \
    X(void, setfield, (lua_State *L, int idx, const char *k))                     \
    X(int, setmetatable, (lua_State *L, int idx))                                 \
    X(void *, newuserdata, (lua_State *L, size_t size))                           \
    X(void *, touserdata, (lua_State *L, int idx))                                \
    X(size_t, objlen, (lua_State *L, int idx))                                    \
    X(int, type, (lua_State *L, int idx))                                         \
    X(lua_Number, tonumber, (lua_State *L, int idx))                              \
    X(lua_CFunction, tocfunction, (lua_State *L, int idx))

#define LSR_LUAAPI_FIELD(ret, name, params) ret (*name) params;
typedef struct lsr_luaapi {
    LSR_LUAAPI_FUNCTIONS(LSR_LUAAPI_FIELD)
} lsr_luaapi;
#undef LSR_LUAAPI_FIELD

/* The table; every field is non-NULL once lsr_luaapi_ready is 1.  Written only by
 * lsr_luaapi_resolve (Python calls it once, holding the GIL, before any VM can reach the hook). */
extern lsr_luaapi lsr_lua;
extern volatile int lsr_luaapi_ready;

/* Fill lsr_lua from the already-loaded module at `module_path` (lupa's luajit21 extension; UTF-8
 * on Windows, the file system encoding on POSIX).  The module is never loaded here: it must
 * already be in the process.  Returns 0, or -1 with a message naming the failing call in err
 * (e.g. "dlopen(...): ...", "dlsym(lua_sethook): ...", "GetProcAddress(lua_sethook): error 127").
 * Calling it again after success is a no-op returning 0. */
int lsr_luaapi_resolve(const char *module_path, char *err, size_t errlen);

/* Look up any other exported symbol (full name, e.g. "luaJIT_profile_start") in the module
 * lsr_luaapi_resolve found; for optional features (jitguard.c).  Returns 0 with *address set, or
 * -1 with "dlsym(<symbol>): ..." / "GetProcAddress(<symbol>): error N" (or "the Lua C API is not
 * resolved yet") in err. */
int lsr_luaapi_symbol(const char *symbol, void **address, char *err, size_t errlen);

/* ---- the watchdog's OS thread ----------------------------------------------------------- */

#ifdef _WIN32
typedef HANDLE lsr_thread;
#else
typedef pthread_t lsr_thread;
#endif

/* Start a joinable thread running fn(arg), with every signal blocked on POSIX (signals belong to
 * Python's main thread) and named `name` where the platform allows.  Returns 0, or -1 with the
 * failing call in err ("pthread_create: ...", "CreateThread: error N"). */
int lsr_thread_start(lsr_thread *t, void (*fn)(void *), void *arg, const char *name,
                     char *err, size_t errlen);

/* Wait for the thread to end and free its handle.  Call without the GIL.  Never fails. */
void lsr_thread_join(lsr_thread *t);

/* ---- pausing the VM's thread ------------------------------------------------------------ */

/* Why: LuaJIT keeps a state's hook mask in one byte, g->hookmask, whose high bits say "a hook (or
 * a __gc finalizer, or a VM event handler) is running now; call no hook".  The VM's own thread
 * updates that byte with plain read-modify-writes around every hook call and every finalizer
 * (hook_enter/hook_leave, hook_entergc/hook_restore), and lua_sethook does the same.  LuaJIT
 * documents lua_sethook as callable asynchronously "e.g. during a signal", i.e. while the VM's
 * thread is stopped; called from another thread that keeps running, it can read the byte while
 * the "running" bit is set and write it back after the VM cleared it.  The bit then stays set:
 * LuaJIT calls no hook any more (lua_sethook keeps those bits), and a guarded loop runs forever.
 * So the watchdog stops the VM's thread around each lua_sethook it issues: on POSIX a signal whose
 * handler waits until released, on Windows SuspendThread.  A read-modify-write the VM thread was
 * in the middle of may then overwrite the watchdog's write (the hook is lost, and re-installed
 * at the next look), but the watchdog never writes back a stale bit.
 *
 * lsr_vm_thread names a thread: the thread that arms a guard is taken to be the thread that runs
 * the guarded Lua code.  On POSIX systems other than Linux it is a pthread_t, which must not be
 * used after that thread ended (the hook core only pauses the arming thread while it is armed). */
typedef struct lsr_vm_thread {
#if defined(_WIN32)
    DWORD id;
#elif defined(__linux__)
    pid_t tid;
#else
    pthread_t self;
#endif
} lsr_vm_thread;

/* Pause errors: the thread cannot be stopped now (its pause signal is blocked, or it was not
 * scheduled within the wait) / it no longer exists / pausing is not available in this process. */
#define LSR_PAUSE_TIMEOUT 1
#define LSR_PAUSE_GONE 2
#define LSR_PAUSE_UNAVAILABLE 3

/* Set up pausing once per process (POSIX: pick a signal nobody handles and install the pause
 * handler).  Returns 0, or -1 with the failing call in err; pausing then reports
 * LSR_PAUSE_UNAVAILABLE. */
int lsr_vm_pause_init(char *err, size_t errlen);
/* The calling thread.  Never fails. */
void lsr_vm_thread_current(lsr_vm_thread *t);
/* 1 when t is the calling thread.  Never fails. */
int lsr_vm_thread_is_current(const lsr_vm_thread *t);
/* Stop thread t (not the calling thread) at an instruction boundary, waiting at most wait_ms for
 * it to stop.  Returns 0 (t stays stopped until lsr_vm_thread_resume) or an LSR_PAUSE_* error
 * (t is not stopped, nothing to undo).  Between pause and resume the caller must not allocate,
 * take locks or do I/O: t may hold the allocator's or any other lock.  One pause at a time in
 * the process (the hook core calls it under its watchdog lock). */
int lsr_vm_thread_pause(const lsr_vm_thread *t, int wait_ms);
/* Let the thread stopped by the last successful lsr_vm_thread_pause go on.  Never fails. */
void lsr_vm_thread_resume(const lsr_vm_thread *t);

#endif /* LSR_LUAAPI_H */
