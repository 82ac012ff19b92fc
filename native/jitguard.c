/* jitguard.c - the JIT-on stop of the timeout guard: self-check of the LuaJIT build, profiler
 * ownership, and the hook-mask writes (see jitguard.h).  Plain C: no Python objects here. */
#include "jitguard.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* LuaJIT internals of the verified build (x86-64, GC64), read as raw bytes: */
#define OFF_STATE_GLOBAL 16   /* lua_State.glref: the global_State pointer */
#define OFF_GLOBAL_HOOKMASK 145 /* global_State.hookmask (uint8_t) */
#define OFF_GLOBAL_JIT 744    /* the jit_State right after the global_State in GG_State */
#define OFF_JIT_STATE 236     /* jit_State.state (TraceState, a 32-bit enum) */
#define OFF_JIT_PROF_MODE 3124 /* jit_State.prof_mode (char: 0, 'f' or 'l') */

#define HOOK_EVENTMASK 0x0f
#define HOOK_ACTIVE 0x10
#define HOOK_VMEVENT 0x20
#define HOOK_GC 0x40
#define HOOK_PROFILE 0x80
#define TRACE_IDLE 0
#define TRACE_RECORD 0x11

#define LUA_MASKCALL 1
#define LUA_MASKRET 2
#define LUA_MASKLINE 4

typedef void (*profile_callback)(void *data, lua_State *L, int samples, int vmstate);

/* Entry points the self-check needs besides luaapi.h's table (all exported by lupa's module). */
static struct {
    lua_State *(*newstate)(void);
    void (*openlibs)(lua_State *L);
    int (*loadstring)(lua_State *L, const char *s);
    int (*pcall)(lua_State *L, int nargs, int nresults, int errfunc);
    const char *(*tolstring)(lua_State *L, int idx, size_t *len);
    void (*pushnumber)(lua_State *L, lua_Number n);
    void (*close)(lua_State *L);
    void (*profile_start)(lua_State *L, const char *mode, profile_callback cb, void *data);
    void (*profile_stop)(lua_State *L);
} api;

static int init_done;
static int init_result = -1;
static char init_error[256];
static lua_State *owner; /* the private state that owns the profiler; never closed */

/* ---- raw access ---------------------------------------------------------------------------- */

static unsigned char *global_of(lua_State *L)
{
    return *(unsigned char **)((unsigned char *)L + OFF_STATE_GLOBAL);
}

static volatile uint8_t *hookmask_of(lua_State *L)
{
    return (volatile uint8_t *)(global_of(L) + OFF_GLOBAL_HOOKMASK);
}

static volatile int32_t *trace_state_of(lua_State *L)
{
    return (volatile int32_t *)(global_of(L) + OFF_GLOBAL_JIT + OFF_JIT_STATE);
}

static volatile char *prof_mode_of(lua_State *L)
{
    return (volatile char *)(global_of(L) + OFF_GLOBAL_JIT + OFF_JIT_PROF_MODE);
}

/* ---- callbacks ----------------------------------------------------------------------------- */

/* The owner's profiler callback for good: every guarded VM's tick lands here (LuaJIT calls the
 * one process-wide callback for whichever VM had the bit set).  Does nothing. */
static void noop_tick(void *data, lua_State *L, int samples, int vmstate)
{
    (void)data, (void)L, (void)samples, (void)vmstate;
}

/* Self-check ticks: counts them, and counts those taken while a compiled trace ran ('N'). */
static volatile int ticks, native_ticks;
static void counting_tick(void *data, lua_State *L, int samples, int vmstate)
{
    (void)data, (void)L, (void)samples;
    ticks++;
    if (vmstate == 'N')
        native_ticks++;
}

static void noop_hook(lua_State *L, lua_Debug *ar)
{
    (void)L, (void)ar;
}

/* Lua-callable probes for the self-check chunk.  Raise nothing. */
static int probe_hookmask(lua_State *L)
{
    api.pushnumber(L, (lua_Number)*hookmask_of(L));
    return 1;
}

static int probe_trace_state(lua_State *L)
{
    api.pushnumber(L, (lua_Number)*trace_state_of(L));
    return 1;
}

static int probe_native_ticks(lua_State *L)
{
    api.pushnumber(L, (lua_Number)native_ticks);
    return 1;
}

/* ---- self-check ---------------------------------------------------------------------------- */

/* J->state while recording and the hook mask inside a VM event handler, then J->state idle.
 * Arguments: probe_trace_state, probe_hookmask. */
static const char STATE_CHUNK[] =
    "local trace_state, hookmask = ...\n"
    "local recording, mask_in_event = -1, -1\n"
    "local function on_record()\n"
    "  if recording < 0 then recording = trace_state(); mask_in_event = hookmask() end\n"
    "end\n"
    "jit.on(); jit.flush()\n"
    "jit.attach(on_record, 'record')\n"
    "local x = 0\n"
    "for i = 1, 500 do x = x + i end\n"
    "jit.attach(on_record)\n"
    "return recording, mask_in_event, trace_state()\n";

/* A compiled loop that the profiler timer (1 ms of CPU) must make leave its trace into our
 * callback, with vmstate 'N': proves the IR_PROF exit and that this state owns the profiler.
 * Bounded (~2e8 iterations).  Argument: probe_native_ticks.  Returns the outer rounds used, or 0. */
static const char TICK_CHUNK[] =
    "local native_ticks = ...\n"
    "local x = 0\n"
    "for round = 1, 2000 do\n"
    "  for i = 1, 100000 do x = x + i % 7 end\n"
    "  if native_ticks() > 0 then return round end\n"
    "end\n"
    "return 0\n";

static int fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s", what);
    return -1;
}

static int find(const char *symbol, void **slot, char *err, size_t errlen)
{
    return lsr_luaapi_symbol(symbol, slot, err, errlen);
}

/* Run chunk with the given C functions as arguments; leaves `results` numbers on the stack.
 * Returns 0, or -1 with the Lua error in err. */
static int run_chunk(lua_State *L, const char *chunk, lua_CFunction *args, int nargs, int results,
                     char *err, size_t errlen)
{
    if (api.loadstring(L, chunk) != 0) {
        snprintf(err, errlen, "self-check chunk does not compile: %s", api.tolstring(L, -1, NULL));
        return -1;
    }
    for (int i = 0; i < nargs; i++)
        lsr_lua.pushcclosure(L, args[i], 0);
    if (api.pcall(L, nargs, results, 0) != 0) {
        const char *why = api.tolstring(L, -1, NULL);
        snprintf(err, errlen, "self-check chunk failed: %s", why ? why : "?");
        return -1;
    }
    return 0;
}

/* The checks on the private state L (see jitguard.h).  Returns 0 or -1 with err. */
static int check_state(lua_State *L, int *owns_profiler, char *err, size_t errlen)
{
    if (global_of(L) == NULL)
        return fail(err, errlen, "lua_State.glref is NULL");
    /* 1. g->hookmask follows lua_sethook (low nibble = event mask, high bits untouched). */
    static const int masks[] = {LSR_LUA_MASKCOUNT, LUA_MASKCALL, LUA_MASKRET | LUA_MASKLINE,
                                LUA_MASKLINE | LSR_LUA_MASKCOUNT, 0};
    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        lsr_lua.sethook(L, masks[i] ? noop_hook : NULL, masks[i], 1000);
        uint8_t seen = *hookmask_of(L);
        if (seen != masks[i]) {
            snprintf(err, errlen, "hookmask round trip: set 0x%x, read 0x%x", masks[i], seen);
            return -1;
        }
    }
    /* 2. J->state: "recording" inside a jit.attach record handler, idle after; the handler runs
     * with HOOK_VMEVENT|HOOK_ACTIVE in the mask. */
    lua_CFunction state_args[] = {probe_trace_state, probe_hookmask};
    int top = lsr_lua.gettop(L);
    if (run_chunk(L, STATE_CHUNK, state_args, 2, 3, err, errlen) != 0)
        return -1;
    int recording = (int)lsr_lua.tonumber(L, -3);
    int mask_in_event = (int)lsr_lua.tonumber(L, -2);
    int idle = (int)lsr_lua.tonumber(L, -1);
    lsr_lua.settop(L, top);
    if (recording != TRACE_RECORD || idle != TRACE_IDLE) {
        snprintf(err, errlen, "J->state round trip: read %d while recording, %d when idle",
                 recording, idle);
        return -1;
    }
    if ((mask_in_event & (HOOK_VMEVENT | HOOK_ACTIVE)) != (HOOK_VMEVENT | HOOK_ACTIVE)) {
        snprintf(err, errlen, "hookmask in a VM event handler: read 0x%x", mask_in_event);
        return -1;
    }
    /* 3. prof_mode follows luaJIT_profile_start and luaJIT_profile_stop: the start makes L the
     * profiler's owner unless another state is (then the stop leaves the mode alone). */
    api.profile_start(L, "fi1", counting_tick, NULL);
    *owns_profiler = 1;
    if (*prof_mode_of(L) != 'f')
        return fail(err, errlen, "profiler mode round trip: 'f' not read back");
    api.profile_stop(L);
    if (*prof_mode_of(L) != 0)
        return fail(err, errlen, "LuaJIT's profiler is in use by another Lua state "
                                 "(or the profiler mode offset is wrong)");
    api.profile_start(L, "li1", counting_tick, NULL);
    if (*prof_mode_of(L) != 'l')
        return fail(err, errlen, "profiler mode round trip: 'l' not read back");
    /* 4. A compiled loop is left for the profiler callback. */
    lua_CFunction tick_args[] = {probe_native_ticks};
    if (run_chunk(L, TICK_CHUNK, tick_args, 1, 1, err, errlen) != 0)
        return -1;
    int rounds = (int)lsr_lua.tonumber(L, -1);
    lsr_lua.settop(L, top);
    if (rounds == 0) {
        if (ticks == 0)
            return fail(err, errlen, "LuaJIT's profiler is in use by another Lua state");
        return fail(err, errlen, "no profiler tick came from compiled code");
    }
    if (*hookmask_of(L) & HOOK_PROFILE)
        return fail(err, errlen, "HOOK_PROFILE still set after the profiler tick");
    return 0;
}

/* Error contract: see jitguard.h. */
int lsr_jitguard_init(const char *version_symbol, char *err, size_t errlen)
{
    if (init_done) {
        if (init_result != 0)
            snprintf(err, errlen, "%s", init_error);
        return init_result;
    }
    init_done = 1;
    char why[sizeof init_error];
    why[0] = '\0';
#if !(defined(__linux__) && defined(__x86_64__))
    (void)version_symbol;
    (void)find;        /* the checks exist everywhere; only a verified platform runs them */
    (void)check_state;
    snprintf(why, sizeof why, "the JIT guard is verified on Linux x86-64 only");
#else
    void *version = NULL;
    if (find(version_symbol, &version, why, sizeof why) != 0)
        goto done;
#define FIND(field, symbol)                                                                  \
    if (find(symbol, (void **)&api.field, why, sizeof why) != 0)                               \
        goto done;
    FIND(newstate, "luaL_newstate")
    FIND(openlibs, "luaL_openlibs")
    FIND(loadstring, "luaL_loadstring")
    FIND(pcall, "lua_pcall")
    FIND(tolstring, "lua_tolstring")
    FIND(pushnumber, "lua_pushnumber")
    FIND(close, "lua_close")
    FIND(profile_start, "luaJIT_profile_start")
    FIND(profile_stop, "luaJIT_profile_stop")
#undef FIND
    lua_State *L = api.newstate();
    if (L == NULL) {
        snprintf(why, sizeof why, "luaL_newstate: out of memory");
        goto done;
    }
    api.openlibs(L);
    int owns_profiler = 0;
    if (check_state(L, &owns_profiler, why, sizeof why) != 0) {
        if (owns_profiler)
            api.profile_stop(L); /* a no-op when another state owns it */
        api.close(L);
        goto done;
    }
    /* Keep the profiler for good: a no-op callback, a tick every ~24 days of CPU time. */
    api.profile_start(L, "i2000000000", noop_tick, NULL);
    owner = L;
    init_result = 0;
done:
#endif
    if (init_result != 0) {
        snprintf(init_error, sizeof init_error, "%s", why[0] ? why : "unknown failure");
        snprintf(err, errlen, "%s", init_error);
    }
    return init_result;
}

/* Never fails (jitguard.h). */
int lsr_jitguard_available(void)
{
    return init_result == 0 && owner != NULL;
}

/* Error contract: see jitguard.h. */
int lsr_jitguard_enable(lua_State *L, char *err, size_t errlen)
{
    if (!lsr_jitguard_available())
        return fail(err, errlen, "the JIT guard is not available");
    /* Not the owner: LuaJIT sets the mode and flushes, then returns ("in use by another VM"). */
    api.profile_start(L, "l", noop_tick, NULL);
    if (*prof_mode_of(L) != 'l')
        return fail(err, errlen, "profiler mode did not become 'l'");
    return 0;
}

/* Never fails (jitguard.h). */
int lsr_jitguard_enabled(lua_State *L)
{
    return lsr_jitguard_available() && *prof_mode_of(L) == 'l';
}

/* Error contract: see jitguard.h.  Nothing here may allocate or lock (the VM's thread is paused
 * and may hold any lock). */
int lsr_jitguard_fire(lua_State *L, lua_Hook hook)
{
    volatile uint8_t *mask = hookmask_of(L);
    uint8_t now = *mask;
    if (*trace_state_of(L) != TRACE_IDLE || (now & (HOOK_GC | HOOK_VMEVENT | HOOK_PROFILE)))
        return -1;
    *mask = (uint8_t)(now | HOOK_PROFILE);
    /* lua_sethook keeps the high bits and updates the dispatch table for both. */
    lsr_lua.sethook(L, hook, LSR_LUA_MASKCOUNT, 1);
    return 0;
}

/* Error contract: see jitguard.h.  Same rules as lsr_jitguard_fire: lua_sethook aborts a trace
 * being recorded, so nothing is written while the recorder is busy. */
int lsr_jitguard_clear(lua_State *L)
{
    if (*trace_state_of(L) != TRACE_IDLE)
        return -1;
    volatile uint8_t *mask = hookmask_of(L);
    uint8_t now = *mask;
    if (!(now & HOOK_VMEVENT))
        *mask = (uint8_t)(now & ~HOOK_PROFILE);
    lsr_lua.sethook(L, NULL, 0, 0);
    return 0;
}
