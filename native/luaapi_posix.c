/* luaapi_posix.c - POSIX half of luaapi.h: find the Lua C API inside lupa's already-loaded
 * luajit21 module with dlopen(RTLD_NOLOAD) + dlsym, and run the watchdog thread with pthreads. */
#include "luaapi.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

lsr_luaapi lsr_lua;
volatile int lsr_luaapi_ready = 0;

/* Look up "lua_<name>" in handle and store it in *slot.  Returns 0, or -1 with
 * "dlsym(lua_<name>): <dlerror>" in err. */
static int resolve_one(void *handle, const char *name, void **slot, char *err, size_t errlen)
{
    char symbol[64];
    snprintf(symbol, sizeof symbol, "lua_%s", name);
    dlerror(); /* clear a stale message */
    void *address = dlsym(handle, symbol);
    if (address == NULL) {
        const char *why = dlerror();
        snprintf(err, errlen, "dlsym(%s): %s", symbol, why ? why : "symbol is NULL");
        return -1;
    }
    *slot = address;
    return 0;
}

/* Error contract: see luaapi.h.  The dlopen handle is kept for the life of the process: the
 * module is Python's and is never unloaded while the interpreter runs. */
int lsr_luaapi_resolve(const char *module_path, char *err, size_t errlen)
{
    if (lsr_luaapi_ready)
        return 0;
    void *handle = dlopen(module_path, RTLD_NOW | RTLD_NOLOAD);
    if (handle == NULL) {
        const char *why = dlerror();
        snprintf(err, errlen, "dlopen(%s, RTLD_NOLOAD): %s", module_path,
                 why ? why : "module is not loaded");
        return -1;
    }
    lsr_luaapi api;
    /* POSIX guarantees that a data pointer from dlsym converts to a function pointer; storing
     * through a void ** is the form POSIX itself recommends. */
#define LSR_RESOLVE(ret, name, params)                                                     \
    if (resolve_one(handle, #name, (void **)&api.name, err, errlen) != 0)                  \
        return -1;
    LSR_LUAAPI_FUNCTIONS(LSR_RESOLVE)
#undef LSR_RESOLVE
    lsr_lua = api;
    lsr_luaapi_ready = 1;
    return 0;
}

typedef struct thread_start {
    void (*fn)(void *);
    void *arg;
    char name[16]; /* Linux limits thread names to 15 bytes + NUL */
} thread_start;

static thread_start start_block; /* one watchdog at a time; guarded by the caller's lock */

static void *thread_trampoline(void *raw)
{
    thread_start *start = raw;
    void (*fn)(void *) = start->fn;
    void *arg = start->arg;
#if defined(__APPLE__)
    pthread_setname_np(start->name);
#elif defined(__linux__)
    pthread_setname_np(pthread_self(), start->name);
#endif
    fn(arg);
    return NULL;
}

/* Error contract: see luaapi.h.  Not reentrant: the caller serialises starts (the watchdog lock). */
int lsr_thread_start(lsr_thread *t, void (*fn)(void *), void *arg, const char *name,
                     char *err, size_t errlen)
{
    start_block.fn = fn;
    start_block.arg = arg;
    snprintf(start_block.name, sizeof start_block.name, "%s", name);

    /* The new thread inherits the signal mask: block everything while creating it so that no
     * process-directed signal (SIGINT, SIGCHLD...) is ever delivered to the watchdog. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, thread_trampoline, &start_block);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        return -1;
    }
    return 0;
}

void lsr_thread_join(lsr_thread *t)
{
    pthread_join(*t, NULL);
}
