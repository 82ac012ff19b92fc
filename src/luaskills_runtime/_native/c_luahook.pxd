# C declarations of native/luahook.h and native/luaapi.h (see those headers for error contracts).
from libc.stdint cimport uint64_t, int64_t

cdef extern from "lsr_sync.h" nogil:
    int64_t lsr_now_ms()

cdef extern from "luahook.h" nogil:
    enum: LSR_HOOK_MESSAGE_MAX
    enum: LSR_HOOK_REASSERT_MS

    int lsr_luaapi_resolve(const char *module_path, char *err, size_t errlen)

    ctypedef struct lsr_heap_node:
        int64_t key
        uint64_t seq
        size_t pos
    ctypedef struct lsr_heap:
        size_t len
    size_t LSR_HEAP_NONE
    void lsr_heap_init(lsr_heap *h)
    void lsr_heap_free(lsr_heap *h)
    int lsr_heap_push(lsr_heap *h, lsr_heap_node *node)
    void lsr_heap_remove(lsr_heap *h, lsr_heap_node *node)
    void lsr_heap_update(lsr_heap *h, lsr_heap_node *node)
    lsr_heap_node *lsr_heap_top(const lsr_heap *h)

    int lsr_hook_global_init()
    const char *lsr_hook_pause_error()
    void lsr_watchdog_stop()
    int lsr_watchdog_running()
    void lsr_watchdog_fork_prepare()
    void lsr_watchdog_fork_parent()
    int lsr_watchdog_fork_child(char *err, size_t errlen)

    ctypedef struct lsr_hook_slot:
        pass
    lsr_hook_slot *lsr_hook_slot_new(double token, int jit_profile)
    void lsr_hook_slot_release(lsr_hook_slot *s)
    int lsr_hook_slot_bound(lsr_hook_slot *s)
    int lsr_hook_arm(lsr_hook_slot *s, uint64_t timeout_ms, const char *msg, size_t len,
                     char *err, size_t errlen)
    void lsr_hook_disarm(lsr_hook_slot *s)
    int lsr_hook_cancel(lsr_hook_slot *s, const char *msg, size_t len, char *err, size_t errlen)
    uint64_t lsr_hook_raised(lsr_hook_slot *s)
    int lsr_hook_state(lsr_hook_slot *s)
    int64_t lsr_hook_fired_at(lsr_hook_slot *s)

cdef extern from "jitguard.h" nogil:
    const char *LSR_JITGUARD_VERSION_SYMBOL
    int lsr_jitguard_init(const char *version_symbol, char *err, size_t errlen)
    int lsr_jitguard_available()
