/* luaapi_posix.c - POSIX half of luaapi.h: find the Lua C API inside lupa's already-loaded
 * luajit21 module with dlopen(RTLD_NOLOAD) + dlsym, run the watchdog thread with pthreads, and
 * pause a VM's thread with a signal whose handler waits until released. */
#include "luaapi.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#  include <sys/syscall.h>
#endif

#include "lsr_sync.h"

lsr_luaapi lsr_lua;
volatile int lsr_luaapi_ready = 0;
static void *api_module; /* lupa's module, set by lsr_luaapi_resolve */

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
    api_module = handle;
    lsr_luaapi_ready = 1;
    return 0;
}

/* Error contract: see luaapi.h. */
int lsr_luaapi_symbol(const char *symbol, void **address, char *err, size_t errlen)
{
    if (!lsr_luaapi_ready) {
        snprintf(err, errlen, "the Lua C API is not resolved yet");
        return -1;
    }
    dlerror();
    void *found = dlsym(api_module, symbol);
    if (found == NULL) {
        const char *why = dlerror();
        snprintf(err, errlen, "dlsym(%s): %s", symbol, why ? why : "symbol is NULL");
        return -1;
    }
    *address = found;
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

/* ---- pausing the VM's thread (see luaapi.h) ---------------------------------------------- */

/* One pause request at a time, described by one atomic word: generation << 2 | phase.  The
 * requester asks (phase ASKED, new generation), signals the target, and waits for the target's
 * handler to move the word to HELD; the handler then waits until the requester releases it (phase
 * IDLE).  A requester that gives up moves ASKED back to IDLE itself, so a signal delivered late
 * (it was blocked, or the thread was not scheduled) finds no request of its generation and
 * returns at once.  The generation keeps a late handler from taking a newer request for itself. */
enum { PAUSE_IDLE = 0, PAUSE_ASKED = 1, PAUSE_HELD = 2 };
#define PAUSE_PHASE_MASK ((uint64_t)3)

static _Atomic uint64_t pause_word;
static volatile lsr_vm_thread pause_target; /* written before the word asks, read after it */
static int pause_signal;                    /* 0 until lsr_vm_pause_init succeeds */

#if defined(__linux__)
/* The kernel thread id: a tid that no longer exists makes tgkill fail with ESRCH instead of the
 * undefined behaviour of pthread_kill on an ended thread.  Not cached: a forked child's thread
 * has a new tid.  gettid is async-signal-safe (a plain system call). */
static pid_t current_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}
#endif

/* Never fails (luaapi.h). */
void lsr_vm_thread_current(lsr_vm_thread *t)
{
#if defined(__linux__)
    t->tid = current_tid();
#else
    t->self = pthread_self();
#endif
}

/* Never fails (luaapi.h).  Called from the pause handler too: async-signal-safe on Linux
 * (gettid); elsewhere pthread_self, which every libc implements as a thread-pointer read. */
int lsr_vm_thread_is_current(const lsr_vm_thread *t)
{
#if defined(__linux__)
    return t->tid == current_tid();
#else
    return pthread_equal(t->self, pthread_self());
#endif
}

/* The pause signal's handler: hold this thread while the request is for it.  Touches only the
 * atomic word and nanosleep (async-signal-safe); keeps errno for the interrupted code. */
static void pause_handler(int sig)
{
    (void)sig;
    int saved_errno = errno;
    uint64_t word = atomic_load_explicit(&pause_word, memory_order_acquire);
    if ((word & PAUSE_PHASE_MASK) == PAUSE_ASKED
        && lsr_vm_thread_is_current((const lsr_vm_thread *)&pause_target)) {
        uint64_t held = (word & ~PAUSE_PHASE_MASK) | PAUSE_HELD;
        if (atomic_compare_exchange_strong(&pause_word, &word, held)) {
            struct timespec nap = {0, 20 * 1000};
            while (atomic_load_explicit(&pause_word, memory_order_acquire) == held)
                nanosleep(&nap, NULL);
        }
    }
    errno = saved_errno;
}

/* Install the handler on sig if nobody handles it.  Returns 1 installed, 0 taken, -1 with err. */
static int claim_signal(int sig, char *err, size_t errlen)
{
    struct sigaction old;
    if (sigaction(sig, NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO)
        || old.sa_handler != SIG_DFL)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = pause_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* interrupted system calls resume where the kernel allows it */
    if (sigaction(sig, &sa, NULL) != 0) {
        snprintf(err, errlen, "sigaction(%d): %s", sig, strerror(errno));
        return -1;
    }
    return 1;
}

/* Error contract: see luaapi.h.  Takes the highest real-time signal still at its default (the
 * low ones are the C library's and the commonest picks of other code); SIGURG (ignored by
 * default, seldom used) where there are none. */
int lsr_vm_pause_init(char *err, size_t errlen)
{
    if (pause_signal != 0)
        return 0;
#if defined(SIGRTMIN) && defined(SIGRTMAX)
    for (int sig = SIGRTMAX; sig >= SIGRTMIN; sig--) {
        int rc = claim_signal(sig, err, errlen);
        if (rc < 0)
            return -1;
        if (rc > 0) {
            pause_signal = sig;
            return 0;
        }
    }
    snprintf(err, errlen, "sigaction: every real-time signal is taken");
    return -1;
#else
    int rc = claim_signal(SIGURG, err, errlen);
    if (rc > 0) {
        pause_signal = SIGURG;
        return 0;
    }
    if (rc == 0)
        snprintf(err, errlen, "sigaction(SIGURG): the signal is taken");
    return -1;
#endif
}

/* Error contract: see luaapi.h. */
int lsr_vm_thread_pause(const lsr_vm_thread *t, int wait_ms)
{
    if (pause_signal == 0)
        return LSR_PAUSE_UNAVAILABLE;
    uint64_t generation = (atomic_load(&pause_word) >> 2) + 1;
    uint64_t asked = generation << 2 | PAUSE_ASKED;
    uint64_t held = generation << 2 | PAUSE_HELD;
    uint64_t idle = generation << 2 | PAUSE_IDLE;
    pause_target = *t;
    atomic_store_explicit(&pause_word, asked, memory_order_release);
#if defined(__linux__)
    int sent = syscall(SYS_tgkill, (pid_t)getpid(), t->tid, pause_signal) == 0;
#else
    int sent = pthread_kill(t->self, pause_signal) == 0;
#endif
    if (!sent) {
        atomic_store(&pause_word, idle);
        return LSR_PAUSE_GONE;
    }
    int64_t deadline = lsr_now_ms() + wait_ms;
    struct timespec nap = {0, 20 * 1000};
    for (;;) {
        if (atomic_load_explicit(&pause_word, memory_order_acquire) == held)
            return 0;
        if (lsr_now_ms() >= deadline) {
            uint64_t expected = asked;
            if (atomic_compare_exchange_strong(&pause_word, &expected, idle))
                return LSR_PAUSE_TIMEOUT;
            return 0; /* the handler took the request just now */
        }
        nanosleep(&nap, NULL);
    }
}

/* Never fails (luaapi.h). */
void lsr_vm_thread_resume(const lsr_vm_thread *t)
{
    (void)t;
    uint64_t word = atomic_load(&pause_word);
    atomic_store_explicit(&pause_word, (word & ~PAUSE_PHASE_MASK) | PAUSE_IDLE,
                          memory_order_release);
}
