/* luahook.c - the timeout guard's C core: deadline heap, watchdog thread, count hook, and the
 * Lua-side binding (see luahook.h for the design).  Plain C: no Python objects here. */
#include "luahook.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jitguard.h"
#include "lsr_sync.h"

/* ======================================================================================== */
/* Deadline heap                                                                            */
/* ======================================================================================== */

/* Heap order: earlier deadline first, then insertion order.  Never fails. */
static int node_before(const lsr_heap_node *a, const lsr_heap_node *b)
{
    return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

/* Store node at index i and record its position.  Never fails. */
static void heap_place(lsr_heap *h, size_t i, lsr_heap_node *node)
{
    h->items[i] = node;
    node->pos = i;
}

/* Move the node at i towards the root while it orders before its parent.  Never fails. */
static void heap_sift_up(lsr_heap *h, size_t i)
{
    lsr_heap_node *node = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!node_before(node, h->items[parent]))
            break;
        heap_place(h, i, h->items[parent]);
        i = parent;
    }
    heap_place(h, i, node);
}

/* Move the node at i towards the leaves while a child orders before it.  Never fails. */
static void heap_sift_down(lsr_heap *h, size_t i)
{
    lsr_heap_node *node = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && node_before(h->items[child + 1], h->items[child]))
            child++;
        if (!node_before(h->items[child], node))
            break;
        heap_place(h, i, h->items[child]);
        i = child;
    }
    heap_place(h, i, node);
}

/* Never fails (luahook.h). */
void lsr_heap_init(lsr_heap *h)
{
    h->items = NULL;
    h->len = h->cap = 0;
    h->next_seq = 0;
}

/* Never fails (luahook.h). */
void lsr_heap_free(lsr_heap *h)
{
    free(h->items);
    lsr_heap_init(h);
}

/* Returns 0 or ENOMEM from realloc (luahook.h). */
int lsr_heap_push(lsr_heap *h, lsr_heap_node *node)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        lsr_heap_node **items = realloc(h->items, cap * sizeof *items);
        if (items == NULL)
            return ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    node->seq = h->next_seq++;
    heap_place(h, h->len, node);
    h->len++;
    heap_sift_up(h, node->pos);
    return 0;
}

/* Never fails; a node not in this heap is ignored (luahook.h). */
void lsr_heap_remove(lsr_heap *h, lsr_heap_node *node)
{
    size_t pos = node->pos;
    if (pos == LSR_HEAP_NONE || pos >= h->len || h->items[pos] != node)
        return;
    node->pos = LSR_HEAP_NONE;
    h->len--;
    if (pos == h->len)
        return;
    lsr_heap_node *moved = h->items[h->len];
    heap_place(h, pos, moved);
    heap_sift_up(h, pos);
    heap_sift_down(h, moved->pos);
}

/* Never fails (luahook.h). */
void lsr_heap_update(lsr_heap *h, lsr_heap_node *node)
{
    if (node->pos == LSR_HEAP_NONE)
        return;
    heap_sift_up(h, node->pos);
    heap_sift_down(h, node->pos);
}

/* Never fails (luahook.h). */
lsr_heap_node *lsr_heap_top(const lsr_heap *h)
{
    return h->len ? h->items[0] : NULL;
}

/* ======================================================================================== */
/* Slots and the watchdog                                                                   */
/* ======================================================================================== */

enum { SLOT_IDLE = 0, SLOT_ARMED = 1, SLOT_FIRING = 2 };

struct lsr_hook_slot {
    lsr_heap_node node;        /* first member: a heap node pointer is the slot pointer */
    lua_State *L;              /* main thread of the bound state; NULL before binding / after close */
    double token;              /* binding token while pending */
    int refs;                  /* host reference + the bound state's reference */
    int host_owned;            /* the host has not released it yet */
    int pending;               /* on wd.pending, waiting for luaopen_luaskills_hook */
    int state;                 /* SLOT_* */
    int jit_profile;           /* stop compiled code too (jitguard.h); set at creation */
    uint64_t raised;           /* hook raises since the last arm */
    uint64_t raised_seen;      /* `raised` at the watchdog's last look (re-assert check) */
    int64_t fired_at;          /* when the hook was installed since the last arm, or -1 */
    int64_t quiet_since;       /* firing without a raise since then, or -1 while it raises */
    lsr_vm_thread vm_thread;   /* the thread that armed it last: the one running the guarded code */
    int has_vm_thread;         /* vm_thread is set (the slot was armed at least once) */
    lsr_hook_slot *next_pending;
    size_t msg_len;
    char msg[LSR_HOOK_MESSAGE_MAX];
};

/* Everything below is protected by wd.mu: the heap, the pending list, every slot field, and
 * every lua_sethook/lua_gethook issued from outside the VM's own thread. */
static struct {
    lsr_mutex mu;
    lsr_cond cv;
    int ready;             /* lsr_hook_global_init succeeded */
    int running;           /* a watchdog thread exists (started and not yet joined) */
    int stopping;          /* lsr_watchdog_stop asked the thread to leave */
    int restart_wanted;    /* an arm came in while a stop was joining */
    lsr_thread thread;
    lsr_heap heap;
    lsr_hook_slot *pending;
    int64_t wake_at;       /* when the sleeping watchdog wakes by itself (INT64_MIN: awake) */
    char pause_error[160]; /* why VM threads cannot be paused in this process, or "" */
} wd;

static void on_count(lua_State *L, lua_Debug *ar);

static const char CLOSED_TEXT[] = "the Lua state of this guard is closed";

/* Copy text into the caller's error buffer.  Never fails. */
static void set_error(char *err, size_t errlen, const char *text)
{
    if (errlen)
        snprintf(err, errlen, "%s", text);
}

/* lua_sethook(s->L, hook, mask, 1) from any thread.  Caller holds wd.mu; s->L is live.
 * Returns 0 when issued, -1 when the VM's thread could not be stopped in time and `force` is 0
 * (nothing was written; the caller tries again later).
 *
 * lua_sethook only writes the global state's hook fields and rewrites its dispatch table; LuaJIT
 * documents it as callable asynchronously "e.g. during a signal", i.e. while the VM's thread is
 * stopped, which is how LuaJIT's own lua.c uses it.  From a thread that runs alongside the VM it
 * races with the VM's own updates of the hook mask and can leave the VM believing a hook is
 * running for good, so that no hook ever fires again (see luaapi.h).  So unless this is the VM's
 * thread, that thread is paused around the call.  When it cannot be paused in time (its pause
 * signal is blocked, or it is not scheduled), `force` still writes, with that small risk: a guard
 * must not stay silent forever because its thread refuses to stop.  A thread that no longer
 * exists runs no Lua, and a process where pausing could not be set up has no other way.
 *
 * The hook is removed first, so that the dispatch table is rewritten in full even when the mode
 * does not change: a rewrite the VM's own thread was in the middle of when it was paused may have
 * left part of the table in its old mode, and LuaJIT rewrites the table only on mode changes.  If
 * the JIT is on and recording a trace, the call aborts that recording (as LuaJIT intends); guarded
 * code normally runs with the JIT off, where nothing records. */
static int sethook_locked(lsr_hook_slot *s, lua_Hook hook, int mask, int force)
{
    int paused = 0;
    if (s->has_vm_thread && !lsr_vm_thread_is_current(&s->vm_thread)) {
        int rc = lsr_vm_thread_pause(&s->vm_thread, LSR_HOOK_PAUSE_WAIT_MS);
        /* A JIT-on VM is never written while it runs, forced or not (J->state race). */
        if (rc != 0 && s->jit_profile)
            return -1;
        if (rc == LSR_PAUSE_TIMEOUT && !force)
            return -1;
        paused = rc == 0;
    }
    /* Nothing between pause and resume may allocate or lock: the paused thread may hold any lock. */
    int result = 0;
    if (s->jit_profile) {
        (void)mask; /* always a count hook with count 1 */
        result = hook != NULL ? lsr_jitguard_fire(s->L, hook) : lsr_jitguard_clear(s->L);
    } else {
        lsr_lua.sethook(s->L, NULL, 0, 0);
        if (hook != NULL)
            lsr_lua.sethook(s->L, hook, mask, 1);
    }
    if (paused)
        lsr_vm_thread_resume(&s->vm_thread);
    return result;
}

/* Install the raising hook.  Caller holds wd.mu; s->L is live.  Returns 0, or -1 when it was not
 * installed (see sethook_locked). */
static int install_hook_locked(lsr_hook_slot *s, int force)
{
    return sethook_locked(s, on_count, LSR_LUA_MASKCOUNT, force);
}

/* Remove the hook if it is ours (user code may have set its own before the deadline).
 * on_vm_thread: the caller runs inside the state (its __gc), whatever thread armed it.
 * Caller holds wd.mu.  Never fails. */
static void clear_hook_locked(lsr_hook_slot *s, int on_vm_thread)
{
    if (s->L == NULL || lsr_lua.gethook(s->L) != on_count)
        return;
    if (on_vm_thread && s->jit_profile)
        (void)lsr_jitguard_clear(s->L); /* busy recorder: the stale hook removes itself */
    else if (on_vm_thread)
        lsr_lua.sethook(s->L, NULL, 0, 0);
    else
        (void)sethook_locked(s, NULL, 0, 1);
}

/* Drop one reference; the last one frees the slot.  Caller holds wd.mu.  Never fails. */
static void unref_locked(lsr_hook_slot *s)
{
    if (--s->refs == 0)
        free(s);
}

/* Mark s firing at `now`: install the hook and schedule the first re-assert look (which installs
 * it if the VM's thread could not be stopped this time).  Caller holds wd.mu; s is in the heap
 * and bound.  Never fails. */
static void fire_locked(lsr_hook_slot *s, int64_t now)
{
    s->state = SLOT_FIRING;
    s->fired_at = now;
    s->raised_seen = s->raised;
    s->quiet_since = now;
    (void)install_hook_locked(s, 0);
    s->node.key = now + LSR_HOOK_REASSERT_FAST_MS;
    lsr_heap_update(&wd.heap, &s->node);
}

/* Look at a firing slot again (see LSR_HOOK_REASSERT_MS).  Caller holds wd.mu; s is in the heap
 * and bound.  Never fails. */
static void reassert_locked(lsr_hook_slot *s, int64_t now)
{
    int64_t next = LSR_HOOK_REASSERT_MS;
    if (s->raised != s->raised_seen) {
        s->quiet_since = -1; /* the hook works */
    } else {
        /* No raise: the VM is outside Lua (re-installing is harmless), the hook was lost to a
         * race with the VM's own hook-mask or dispatch-table updates (re-installing repairs it),
         * or the VM's thread could not be stopped yet (after FAST_FOR ms it is written anyway). */
        if (s->quiet_since < 0)
            s->quiet_since = now;
        (void)install_hook_locked(s, now - s->quiet_since >= LSR_HOOK_REASSERT_FAST_FOR_MS);
        if (now - s->quiet_since < LSR_HOOK_REASSERT_FAST_FOR_MS)
            next = LSR_HOOK_REASSERT_FAST_MS;
    }
    s->raised_seen = s->raised;
    s->node.key = now + next;
    lsr_heap_update(&wd.heap, &s->node);
}

/* The watchdog thread: sleeps until the earliest deadline, fires or re-asserts, until
 * lsr_watchdog_stop.  Holds wd.mu except while waiting.  Never fails. */
static void watchdog_main(void *unused)
{
    (void)unused;
    lsr_mutex_lock(&wd.mu);
    while (!wd.stopping) {
        lsr_heap_node *top = lsr_heap_top(&wd.heap);
        if (top == NULL) {
            wd.wake_at = INT64_MAX;
            lsr_cond_wait_until(&wd.cv, &wd.mu, -1);
            wd.wake_at = INT64_MIN;
            continue;
        }
        int64_t now = lsr_now_ms();
        if (top->key > now) {
            wd.wake_at = top->key;
            lsr_cond_wait_until(&wd.cv, &wd.mu, top->key == INT64_MAX ? -1 : top->key);
            wd.wake_at = INT64_MIN;
            continue;
        }
        lsr_hook_slot *s = (lsr_hook_slot *)top;
        if (s->state == SLOT_ARMED)
            fire_locked(s, now);
        else
            reassert_locked(s, now);
    }
    lsr_mutex_unlock(&wd.mu);
}

/* Start the watchdog unless one runs.  Caller holds wd.mu.  Returns 0, or -1 with err. */
static int ensure_watchdog_locked(char *err, size_t errlen)
{
    if (wd.running) {
        if (wd.stopping)
            wd.restart_wanted = 1; /* the stopping thread is being joined; stop restarts */
        return 0;
    }
    if (lsr_thread_start(&wd.thread, watchdog_main, NULL, "lsr-luahook", err, errlen) != 0)
        return -1;
    wd.running = 1;
    return 0;
}

/* Error contract: see luahook.h. */
int lsr_hook_global_init(void)
{
    if (wd.ready)
        return 0;
    int rc = lsr_mutex_init(&wd.mu);
    if (rc != 0)
        return rc;
    rc = lsr_cond_init(&wd.cv);
    if (rc != 0) {
        lsr_mutex_destroy(&wd.mu);
        return rc;
    }
    lsr_heap_init(&wd.heap);
    wd.pending = NULL;
    /* Without pausing, hooks are written while the VM runs (the old, slightly racy way): better
     * than no guard at all.  lsr_hook_pause_error tells why. */
    if (lsr_vm_pause_init(wd.pause_error, sizeof wd.pause_error) == 0)
        wd.pause_error[0] = '\0';
    wd.ready = 1;
    return 0;
}

/* Never fails (luahook.h). */
const char *lsr_hook_pause_error(void)
{
    return wd.pause_error[0] ? wd.pause_error : NULL;
}

/* Error contract: see luahook.h.  Guards still armed stay in the heap, inert until the next arm
 * starts a watchdog again (at interpreter exit nothing arms any more). */
void lsr_watchdog_stop(void)
{
    lsr_mutex_lock(&wd.mu);
    if (!wd.running || wd.stopping) {
        lsr_mutex_unlock(&wd.mu);
        return;
    }
    wd.stopping = 1;
    wd.restart_wanted = 0;
    lsr_cond_broadcast(&wd.cv);
    lsr_thread thread = wd.thread;
    lsr_mutex_unlock(&wd.mu);

    lsr_thread_join(&thread);

    lsr_mutex_lock(&wd.mu);
    wd.running = 0;
    wd.stopping = 0;
    if (wd.restart_wanted) {
        char ignored[160];
        wd.restart_wanted = 0;
        /* An arm raced with this stop; if the restart fails, that arm's guard stays inert until
         * the next arm retries (and reports) the thread start. */
        (void)ensure_watchdog_locked(ignored, sizeof ignored);
    }
    lsr_mutex_unlock(&wd.mu);
}

/* Never fails (luahook.h). */
int lsr_watchdog_running(void)
{
    lsr_mutex_lock(&wd.mu);
    int running = wd.running;
    lsr_mutex_unlock(&wd.mu);
    return running;
}

/* Never fails: takes wd.mu until fork_parent / fork_child. */
void lsr_watchdog_fork_prepare(void)
{
    lsr_mutex_lock(&wd.mu);
}

/* Never fails. */
void lsr_watchdog_fork_parent(void)
{
    lsr_mutex_unlock(&wd.mu);
}

/* Error contract: see luahook.h.  Runs in the child with wd.mu held by this (now only) thread;
 * the parent's watchdog does not exist here, and the condition variable may record its wait, so
 * it is re-created. */
int lsr_watchdog_fork_child(char *err, size_t errlen)
{
    wd.running = 0;
    wd.stopping = 0;
    wd.restart_wanted = 0;
    int rc = lsr_cond_init(&wd.cv);
    if (rc != 0) {
        snprintf(err, errlen, "pthread_cond_init: %s", strerror(rc));
        lsr_mutex_unlock(&wd.mu);
        return -1;
    }
    rc = lsr_heap_top(&wd.heap) != NULL ? ensure_watchdog_locked(err, errlen) : 0;
    lsr_mutex_unlock(&wd.mu);
    return rc;
}

/* ---- slots ------------------------------------------------------------------------------- */

/* Returns NULL when calloc fails (luahook.h). */
lsr_hook_slot *lsr_hook_slot_new(double token, int jit_profile)
{
    lsr_hook_slot *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->node.pos = LSR_HEAP_NONE;
    s->token = token;
    s->refs = 1;
    s->host_owned = 1;
    s->fired_at = -1;
    s->pending = 1;
    s->jit_profile = jit_profile != 0;
    lsr_mutex_lock(&wd.mu);
    s->next_pending = wd.pending;
    wd.pending = s;
    lsr_mutex_unlock(&wd.mu);
    return s;
}

/* Take s off the pending list.  Caller holds wd.mu.  Never fails. */
static void unlink_pending_locked(lsr_hook_slot *s)
{
    for (lsr_hook_slot **link = &wd.pending; *link != NULL; link = &(*link)->next_pending) {
        if (*link == s) {
            *link = s->next_pending;
            break;
        }
    }
    s->next_pending = NULL;
    s->pending = 0;
}

/* Never fails (luahook.h). */
void lsr_hook_slot_release(lsr_hook_slot *s)
{
    lsr_mutex_lock(&wd.mu);
    if (s->pending)
        unlink_pending_locked(s);
    lsr_heap_remove(&wd.heap, &s->node);
    clear_hook_locked(s, 0);
    s->state = SLOT_IDLE;
    s->host_owned = 0;
    unref_locked(s);
    lsr_mutex_unlock(&wd.mu);
}

/* Never fails (luahook.h). */
int lsr_hook_slot_bound(lsr_hook_slot *s)
{
    lsr_mutex_lock(&wd.mu);
    int bound = s->L != NULL;
    lsr_mutex_unlock(&wd.mu);
    return bound;
}

/* Error contract: see luahook.h. */
int lsr_hook_arm(lsr_hook_slot *s, uint64_t timeout_ms, const char *msg, size_t len,
                 char *err, size_t errlen)
{
    if (len > LSR_HOOK_MESSAGE_MAX) {
        snprintf(err, errlen, "message is longer than %d bytes", LSR_HOOK_MESSAGE_MAX);
        return -1;
    }
    lsr_mutex_lock(&wd.mu);
    if (s->L == NULL) {
        lsr_mutex_unlock(&wd.mu);
        set_error(err, errlen, CLOSED_TEXT);
        return -1;
    }
    if (s->state == SLOT_FIRING)
        clear_hook_locked(s, 0);
    /* Code that reached jit.profile before the guard hid it (an unguarded main VM run) may have
     * changed the profiler mode; put line mode back on this, the VM's idle thread. */
    if (s->jit_profile && !lsr_jitguard_enabled(s->L)) {
        if (lsr_jitguard_enable(s->L, err, errlen) != 0) {
            lsr_mutex_unlock(&wd.mu);
            return -1;
        }
    }
    lsr_vm_thread_current(&s->vm_thread);
    s->has_vm_thread = 1;
    memcpy(s->msg, msg, len);
    s->msg_len = len;
    s->raised = s->raised_seen = 0;
    s->fired_at = -1;
    int64_t now = lsr_now_ms();
    s->node.key = timeout_ms >= (uint64_t)(INT64_MAX - now) ? INT64_MAX : now + (int64_t)timeout_ms;
    if (s->node.pos == LSR_HEAP_NONE) {
        if (lsr_heap_push(&wd.heap, &s->node) != 0) {
            s->state = SLOT_IDLE;
            lsr_mutex_unlock(&wd.mu);
            set_error(err, errlen, "out of memory (deadline heap)");
            return -1;
        }
    } else {
        lsr_heap_update(&wd.heap, &s->node);
    }
    s->state = SLOT_ARMED;
    if (ensure_watchdog_locked(err, errlen) != 0) {
        lsr_heap_remove(&wd.heap, &s->node);
        s->state = SLOT_IDLE;
        lsr_mutex_unlock(&wd.mu);
        return -1;
    }
    if (lsr_heap_top(&wd.heap) == &s->node && s->node.key < wd.wake_at)
        lsr_cond_broadcast(&wd.cv); /* the watchdog sleeps until a later deadline */
    lsr_mutex_unlock(&wd.mu);
    return 0;
}

/* Never fails (luahook.h). */
void lsr_hook_disarm(lsr_hook_slot *s)
{
    lsr_mutex_lock(&wd.mu);
    lsr_heap_remove(&wd.heap, &s->node);
    clear_hook_locked(s, 0);
    s->state = SLOT_IDLE;
    lsr_mutex_unlock(&wd.mu);
}

/* Error contract: see luahook.h.  A guard already firing keeps its first message: the code is
 * already being stopped, and one run should not end with two different reasons. */
int lsr_hook_cancel(lsr_hook_slot *s, const char *msg, size_t len, char *err, size_t errlen)
{
    if (len > LSR_HOOK_MESSAGE_MAX) {
        snprintf(err, errlen, "message is longer than %d bytes", LSR_HOOK_MESSAGE_MAX);
        return -1;
    }
    lsr_mutex_lock(&wd.mu);
    if (s->L == NULL) {
        lsr_mutex_unlock(&wd.mu);
        set_error(err, errlen, CLOSED_TEXT);
        return -1;
    }
    int result = 1;
    if (s->state == SLOT_IDLE) {
        result = 0;
    } else if (s->state == SLOT_ARMED) {
        memcpy(s->msg, msg, len);
        s->msg_len = len;
        fire_locked(s, lsr_now_ms());
        lsr_cond_broadcast(&wd.cv); /* its re-assert look may be earlier than the current wait */
    }
    lsr_mutex_unlock(&wd.mu);
    return result;
}

/* Never fails (luahook.h). */
uint64_t lsr_hook_raised(lsr_hook_slot *s)
{
    lsr_mutex_lock(&wd.mu);
    uint64_t raised = s->raised;
    lsr_mutex_unlock(&wd.mu);
    return raised;
}

/* Never fails (luahook.h). */
int lsr_hook_state(lsr_hook_slot *s)
{
    lsr_mutex_lock(&wd.mu);
    int state = s->state;
    lsr_mutex_unlock(&wd.mu);
    return state;
}

/* Never fails (luahook.h). */
int64_t lsr_hook_fired_at(lsr_hook_slot *s)
{
    lsr_mutex_lock(&wd.mu);
    int64_t at = s->fired_at;
    lsr_mutex_unlock(&wd.mu);
    return at;
}

/* ======================================================================================== */
/* Lua side: the anchor userdata and the hook                                               */
/* ======================================================================================== */

/* The state's anchor: a full userdata stored in the registry under &registry_key.  The magic and
 * size checks keep a foreign userdata (someone with debug.getregistry) from being taken for it. */
#define BOX_MAGIC UINT64_C(0x6b6f6f686b72736c)
typedef struct hook_box {
    uint64_t magic;
    lsr_hook_slot *slot;
} hook_box;

static char registry_key;

/* The box at stack index idx, or NULL.  Raises nothing. */
static hook_box *box_at(lua_State *L, int idx)
{
    if (lsr_lua.type(L, idx) != LSR_LUA_TUSERDATA || lsr_lua.objlen(L, idx) != sizeof(hook_box))
        return NULL;
    hook_box *box = lsr_lua.touserdata(L, idx);
    return box != NULL && box->magic == BOX_MAGIC ? box : NULL;
}

/* The slot bound to L's state, or NULL.  Only the VM's own thread calls this (hook, luaopen):
 * box->slot changes only there (binding, __gc), so it is read without the lock.  Raises nothing
 * (rawget with a light userdata key has no metamethods). */
static lsr_hook_slot *state_slot(lua_State *L)
{
    lsr_lua.pushlightuserdata(L, &registry_key);
    lsr_lua.rawget(L, LSR_LUA_REGISTRYINDEX);
    hook_box *box = box_at(L, -1);
    lsr_hook_slot *s = box ? box->slot : NULL;
    lsr_lua.settop(L, -2);
    return s;
}

/* The count hook.  Installed only on a firing guard; raises the guard's message (a plain string,
 * no position) on every instruction until the host disarms.  A stale call (the guard is no longer
 * firing) removes the hook and returns.  If the anchor was tampered with, it keeps stopping the
 * code with a fixed text: the hook is never installed unless a guard fired. */
static void on_count(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    static const char orphan_text[] = "execution stopped by the timeout guard";
    char text[LSR_HOOK_MESSAGE_MAX];
    size_t len;
    lsr_hook_slot *s = state_slot(L);

    lsr_mutex_lock(&wd.mu);
    if (s == NULL) {
        len = sizeof orphan_text - 1;
        memcpy(text, orphan_text, len);
    } else if (s->state == SLOT_FIRING) {
        s->raised++;
        len = s->msg_len;
        memcpy(text, s->msg, len);
    } else {
        if (lsr_lua.gethook(L) == on_count)
            lsr_lua.sethook(L, NULL, 0, 0);
        lsr_mutex_unlock(&wd.mu);
        return;
    }
    lsr_mutex_unlock(&wd.mu);
    /* Outside the lock: pushing may raise a memory error, and lua_error unwinds this frame. */
    lsr_lua.pushlstring(L, text, len);
    lsr_lua.error(L);
}

/* __gc of the anchor: the state is closing (or the anchor became garbage after a newer guard
 * replaced it).  Unbind under the lock, so that the watchdog never touches the state again. */
static int box_gc(lua_State *L)
{
    hook_box *box = box_at(L, 1);
    if (box == NULL || box->slot == NULL)
        return 0;
    lsr_hook_slot *s = box->slot;
    box->slot = NULL;
    lsr_mutex_lock(&wd.mu);
    lsr_heap_remove(&wd.heap, &s->node);
    /* Only a firing slot can own the installed hook: a released guard's anchor may be collected
     * while a newer guard of the same state is firing. */
    if (s->state == SLOT_FIRING)
        clear_hook_locked(s, 1);
    s->state = SLOT_IDLE;
    s->L = NULL;
    unref_locked(s);
    lsr_mutex_unlock(&wd.mu);
    return 0;
}

/* Raise text as a plain Lua error; does not return. */
static int raise_text(lua_State *L, const char *text)
{
    lsr_lua.pushstring(L, text);
    return lsr_lua.error(L);
}

/* Registry key of the state's original debug.sethook (kept out of upvalues, where
 * debug.getupvalue would hand it to user code). */
static char sethook_key;

/* debug.sethook as user code sees it once a guard is installed: the original, then, if the guard
 * is firing, our hook again.  Without this, code calling debug.sethook in a loop keeps erasing the
 * hook the watchdog installs (its lua_sethook and the VM's race over the dispatch table, and the
 * VM's call comes last most of the time).  Runs on the VM's own thread, so re-installing is
 * synchronous.  Errors: those of the original (bad arguments), raised before any lock is held. */
static int guarded_sethook(lua_State *L)
{
    int nargs = lsr_lua.gettop(L);
    lsr_lua.pushlightuserdata(L, &sethook_key);
    lsr_lua.rawget(L, LSR_LUA_REGISTRYINDEX);
    if (lsr_lua.type(L, -1) != LSR_LUA_TFUNCTION)
        return raise_text(L, "debug.sethook is not available");
    lsr_lua.insert(L, 1);
    lsr_lua.call(L, nargs, 0);
    lsr_hook_slot *s = state_slot(L);
    if (s != NULL) {
        lsr_mutex_lock(&wd.mu);
        /* On the VM's own thread; a JIT-on guard also needs its profiler bit back (when the
         * recorder is busy, the watchdog's next look puts it back). */
        if (s->state == SLOT_FIRING && !(s->jit_profile && lsr_jitguard_fire(L, on_count) == 0))
            lsr_lua.sethook(L, on_count, LSR_LUA_MASKCOUNT, 1);
        lsr_mutex_unlock(&wd.mu);
    }
    return 0;
}

/* Error contract: see luahook.h.  Every Lua call that can raise (allocation) before the slot is
 * bound leaves an unbound slot for the host to release; a memory error after binding (while
 * storing the debug.sethook wrapper) leaves a bound guard, which the host can also release. */
LSR_HOOK_EXPORT int luaopen_luaskills_hook(lua_State *L)
{
    if (!lsr_luaapi_ready)
        return 0; /* no API table yet: cannot even raise; the host sees no anchor */
    int is_main = lsr_lua.pushthread(L);
    lsr_lua.settop(L, -2);
    if (!is_main)
        return raise_text(L, "luaskills hook: bind from the main Lua thread");
    double token = lsr_lua.tonumber(L, 1);

    lsr_hook_slot *old = state_slot(L);
    lsr_mutex_lock(&wd.mu);
    int taken = old != NULL && old->host_owned && old->L != NULL;
    lsr_hook_slot *s = NULL;
    if (!taken) {
        for (s = wd.pending; s != NULL && s->token != token; s = s->next_pending)
            ;
        if (s != NULL)
            unlink_pending_locked(s);
    }
    lsr_mutex_unlock(&wd.mu);
    if (taken)
        return raise_text(L, "luaskills hook: this Lua state already has a TimeoutGuard");
    if (s == NULL)
        return raise_text(L, "luaskills hook: unknown binding token");
    if (s->jit_profile) {
        /* Profiler line mode (flushes the VM's traces): compiled code gets the guard's exits. */
        char why[128], text[160];
        if (lsr_jitguard_enable(L, why, sizeof why) != 0) {
            snprintf(text, sizeof text, "luaskills hook: %s", why);
            return raise_text(L, text);
        }
    }

    hook_box *box = lsr_lua.newuserdata(L, sizeof *box);
    box->magic = BOX_MAGIC;
    box->slot = NULL;
    lsr_lua.createtable(L, 0, 2);
    lsr_lua.pushcclosure(L, box_gc, 0);
    lsr_lua.setfield(L, -2, "__gc");
    lsr_lua.pushboolean(L, 0);
    lsr_lua.setfield(L, -2, "__metatable");
    lsr_lua.setmetatable(L, -2);
    lsr_lua.pushlightuserdata(L, &registry_key);
    lsr_lua.pushvalue(L, -2);
    lsr_lua.rawset(L, LSR_LUA_REGISTRYINDEX); /* a replaced, released guard's box becomes garbage */

    lsr_mutex_lock(&wd.mu);
    s->L = L;
    s->refs++;
    lsr_mutex_unlock(&wd.mu);
    box->slot = s;

    /* Optional argument 2: the state's debug.sethook, to be replaced by guarded_sethook.  A state
     * that had a guard before already has the wrapper: keep the original it stored. */
    if (lsr_lua.type(L, 2) != LSR_LUA_TFUNCTION)
        return 1;
    if (lsr_lua.tocfunction(L, 2) != guarded_sethook) {
        lsr_lua.pushlightuserdata(L, &sethook_key);
        lsr_lua.pushvalue(L, 2);
        lsr_lua.rawset(L, LSR_LUA_REGISTRYINDEX);
    }
    lsr_lua.pushcclosure(L, guarded_sethook, 0);
    return 2;
}
