/* notify.h - a wake-up channel: a sequence number that producers bump and waiters block on.
 *
 * One notifier can serve several ring buffers (a session's stdout and stderr), so a reader waits
 * for "anything changed" once instead of polling each buffer.  Waiters take a snapshot of the
 * sequence, check their predicate, then wait for the sequence to move: no wake-up is lost.
 */
#ifndef LSR_NOTIFY_H
#define LSR_NOTIFY_H

#include <stdint.h>
#include "lsr_sync.h"

typedef struct lsr_notify {
    lsr_mutex mu;
    lsr_cond cv;
    uint64_t seq;
    int wake_fd;      /* POSIX: a byte is written here on every signal (-1 = none), see below */
} lsr_notify;

/* Returns 0, or the errno of the failing pthread_mutex_init / pthread_cond_init. */
int lsr_notify_init(lsr_notify *n);
/* Frees the primitives.  No thread may be waiting.  Never fails. */
void lsr_notify_destroy(lsr_notify *n);
/* Bumps the sequence and wakes every waiter.  Never fails. */
void lsr_notify_signal(lsr_notify *n);
/* Current sequence.  Never fails. */
uint64_t lsr_notify_seq(lsr_notify *n);
/* Blocks until the sequence differs from `seen` or the monotonic deadline (ms, from lsr_now_ms;
 * negative = none) passes.  Returns the sequence at return.  Call without the GIL.  Never fails. */
uint64_t lsr_notify_wait(lsr_notify *n, uint64_t seen, int64_t deadline_ms);
/* POSIX: from now on every signal also writes one byte to `fd` (the non-blocking write end of a
 * pipe the caller owns; a full pipe already means "changed"), so an event loop can watch the read
 * end instead of parking a thread in lsr_notify_wait.  -1 stops it; after that returns no signal
 * touches the old fd, so the caller may close it.  Returns 0, or ENOTSUP on Windows. */
int lsr_notify_set_wake_fd(lsr_notify *n, int fd);

/* LSR_DEBUG builds count what the core allocates, so tests can assert nothing leaks: every
 * notifier (lsr_notify_init / _destroy), ring (lsr_ring_init / _destroy) and managed process
 * (lsr_proc_spawn / lsr_proc_free) that is alive.  Each extension module compiles its own copy
 * of the core, so the counts are per module.  Other builds count nothing. */
#define LSR_LIVE_NOTIFIERS 0
#define LSR_LIVE_RINGS 1
#define LSR_LIVE_PROCS 2
#define LSR_LIVE_KINDS 3
#ifdef LSR_DEBUG
extern long lsr_debug_live[LSR_LIVE_KINDS];
#  define LSR_DEBUG_LIVE_ADD(kind, delta) \
    ((void)__atomic_add_fetch(&lsr_debug_live[(kind)], (delta), __ATOMIC_RELAXED))
#else
#  define LSR_DEBUG_LIVE_ADD(kind, delta) ((void)0)
#endif

/* Copies the live counts (indexed by LSR_LIVE_*) into out[LSR_LIVE_KINDS] and returns 0; returns
 * -1 (out untouched) in builds without LSR_DEBUG. */
int lsr_debug_live_counts(long *out);

#endif
