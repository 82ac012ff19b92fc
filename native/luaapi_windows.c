/* luaapi_windows.c - Windows half of luaapi.h: find the Lua C API inside lupa's already-loaded
 * luajit21 module with GetModuleHandleW + GetProcAddress, run the watchdog thread with
 * CreateThread, and pause a VM's thread with SuspendThread.
 *
 * This only works when lupa's module exports the lua_* functions.  When it does not,
 * lsr_luaapi_resolve fails with the GetProcAddress error (and TimeoutGuard raises it): there is no
 * fallback that would silently run without a timeout. */
#include "luaapi.h"

#include <stdio.h>
#include <string.h>

lsr_luaapi lsr_lua;
static HMODULE api_module; /* lupa's module, set by lsr_luaapi_resolve */
volatile int lsr_luaapi_ready = 0;

/* Look up "lua_<name>" in module and store it in *slot.  Returns 0, or -1 with
 * "GetProcAddress(lua_<name>): error N" in err. */
static int resolve_one(HMODULE module, const char *name, void (**slot)(void), char *err,
                       size_t errlen)
{
    char symbol[64];
    snprintf(symbol, sizeof symbol, "lua_%s", name);
    FARPROC address = GetProcAddress(module, symbol);
    if (address == NULL) {
        snprintf(err, errlen, "GetProcAddress(%s): error %lu", symbol,
                 (unsigned long)GetLastError());
        return -1;
    }
    /* Through void (*)(void), the one function-pointer type that converts to any other
     * without -Wcast-function-type complaints; the real type is restored by the caller. */
    *slot = (void (*)(void))address;
    return 0;
}

/* Error contract: see luaapi.h.  GetModuleHandleW takes no reference: the module is Python's and
 * stays loaded while the interpreter runs. */
int lsr_luaapi_resolve(const char *module_path, char *err, size_t errlen)
{
    if (lsr_luaapi_ready)
        return 0;
    int wide_len = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, module_path, -1, NULL, 0);
    if (wide_len <= 0) {
        snprintf(err, errlen, "MultiByteToWideChar(%s): error %lu", module_path,
                 (unsigned long)GetLastError());
        return -1;
    }
    wchar_t *wide = (wchar_t *)HeapAlloc(GetProcessHeap(), 0, (SIZE_T)wide_len * sizeof(wchar_t));
    if (wide == NULL) {
        snprintf(err, errlen, "HeapAlloc: out of memory");
        return -1;
    }
    MultiByteToWideChar(CP_UTF8, 0, module_path, -1, wide, wide_len);
    HMODULE module = GetModuleHandleW(wide);
    DWORD why = GetLastError();
    HeapFree(GetProcessHeap(), 0, wide);
    if (module == NULL) {
        snprintf(err, errlen, "GetModuleHandleW(%s): error %lu", module_path, (unsigned long)why);
        return -1;
    }
    lsr_luaapi api;
#define LSR_RESOLVE(ret, name, params)                                                     \
    {                                                                                      \
        void (*generic)(void) = NULL;                                                      \
        if (resolve_one(module, #name, &generic, err, errlen) != 0)                        \
            return -1;                                                                     \
        api.name = (ret (*) params)generic;                                                \
    }
    LSR_LUAAPI_FUNCTIONS(LSR_RESOLVE)
#undef LSR_RESOLVE
    lsr_lua = api;
    api_module = module;
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
    FARPROC found = GetProcAddress(api_module, symbol);
    if (found == NULL) {
        snprintf(err, errlen, "GetProcAddress(%s): error %lu", symbol,
                 (unsigned long)GetLastError());
        return -1;
    }
    *address = (void *)(void (*)(void))found;
    return 0;
}

typedef struct thread_start {
    void (*fn)(void *);
    void *arg;
} thread_start;

static thread_start start_block; /* one watchdog at a time; guarded by the caller's lock */

static DWORD WINAPI thread_trampoline(LPVOID raw)
{
    thread_start *start = (thread_start *)raw;
    start->fn(start->arg);
    return 0;
}

/* Error contract: see luaapi.h.  Not reentrant: the caller serialises starts (the watchdog lock).
 * Windows delivers console control events on a thread of their own, so there is no signal mask
 * to set; the name is not applied (SetThreadDescription is missing from older SDKs). */
int lsr_thread_start(lsr_thread *t, void (*fn)(void *), void *arg, const char *name,
                     char *err, size_t errlen)
{
    (void)name;
    start_block.fn = fn;
    start_block.arg = arg;
    HANDLE handle = CreateThread(NULL, 0, thread_trampoline, &start_block, 0, NULL);
    if (handle == NULL) {
        snprintf(err, errlen, "CreateThread: error %lu", (unsigned long)GetLastError());
        return -1;
    }
    *t = handle;
    return 0;
}

void lsr_thread_join(lsr_thread *t)
{
    WaitForSingleObject(*t, INFINITE);
    CloseHandle(*t);
    *t = NULL;
}

/* ---- pausing the VM's thread (see luaapi.h) ---------------------------------------------- */

static HANDLE paused_thread; /* one pause at a time (the caller's lock) */

/* Nothing to set up: SuspendThread needs no handler.  Never fails. */
int lsr_vm_pause_init(char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    return 0;
}

/* Never fails (luaapi.h). */
void lsr_vm_thread_current(lsr_vm_thread *t)
{
    t->id = GetCurrentThreadId();
}

/* Never fails (luaapi.h). */
int lsr_vm_thread_is_current(const lsr_vm_thread *t)
{
    return t->id == GetCurrentThreadId();
}

/* Error contract: see luaapi.h.  SuspendThread may return before a thread running on another
 * processor has stopped; GetThreadContext returns only once it has. */
int lsr_vm_thread_pause(const lsr_vm_thread *t, int wait_ms)
{
    (void)wait_ms;
    HANDLE thread = OpenThread(THREAD_SUSPEND_RESUME | THREAD_GET_CONTEXT, FALSE, t->id);
    if (thread == NULL)
        return LSR_PAUSE_GONE;
    if (SuspendThread(thread) == (DWORD)-1) {
        CloseHandle(thread);
        return LSR_PAUSE_GONE;
    }
    CONTEXT context;
    memset(&context, 0, sizeof context);
    context.ContextFlags = CONTEXT_CONTROL;
    GetThreadContext(thread, &context);
    paused_thread = thread;
    return 0;
}

/* Never fails (luaapi.h). */
void lsr_vm_thread_resume(const lsr_vm_thread *t)
{
    (void)t;
    if (paused_thread != NULL) {
        ResumeThread(paused_thread);
        CloseHandle(paused_thread);
        paused_thread = NULL;
    }
}
