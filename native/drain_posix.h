/* drain_posix.h - the POSIX drainer: ONE background thread for every managed process, which moves
 * bytes from the children's stdout/stderr pipes into their rings and notices their exit (pidfd).
 *
 * Private to proc_posix.c / drain_posix.c.  Linux waits with epoll; other POSIX systems (or a
 * build with -DLSR_DRAIN_POLL) with poll() and a self-pipe.  The thread starts when the first
 * client attaches and exits (and is joined) when the last one detaches, so no thread outlives the
 * sessions.  A client is looked up through a slot table with generation numbers, so an event that
 * was fetched just before its client detached is recognised as stale and ignored.
 *
 * Direct reads (Linux): a thread waiting for a client's output may poll that client's pipes
 * itself (lsr_drain_wait) so the child's reply wakes it directly, not through the drainer thread
 * (on a VM each extra thread wake-up costs more than the whole pipe round trip).  The reader mutes
 * stdout in the drainer's epoll set while it polls, and leaves it muted for its next read; the
 * drainer hands muted fds no reader is polling back to itself every MUTE_SCAN_MS.
 */
#ifndef LSR_DRAIN_POSIX_H
#define LSR_DRAIN_POSIX_H

#include <pthread.h>
#include <stdint.h>
#include "notify.h"
#include "ringbuf.h"
#include "proc.h"

#define LSR_DRAIN_OUT 0
#define LSR_DRAIN_ERR 1
#define LSR_DRAIN_PID 2

typedef struct lsr_drain_client {
    /* fd[OUT], fd[ERR]: read ends of the output pipes, non-blocking.  Owned by the drainer once
     * attached: it closes each at EOF (and sets it to -1).  fd[PID]: a pidfd or -1; it stays owned
     * by the caller, the drainer only watches it until it reports the exit. */
    int fd[3];
    lsr_ring *ring[2];
    lsr_notify *notify;     /* signalled when the exit is seen (the rings signal it themselves) */
    int exit_seen;          /* set to 1 (atomically) when the pidfd became readable */
    int watching_pid;       /* the drainer still watches fd[PID]; guarded by the drainer lock */
    uint32_t slot;          /* slot index + generation while attached; guarded by the drainer lock */
    uint32_t gen;
    int attached;
    /* Direct reads (lsr_drain_wait): a reader thread may poll and read fd[OUT]/fd[ERR] itself.
     * io_mu serialises every read and close of those fds and guards the fields below; lock order
     * is drainer lock, then io_mu. */
    pthread_mutex_t io_mu;
    pthread_cond_t io_cv;   /* broadcast when `direct` drops to 0 */
    int direct;             /* a reader is polling the fds; the drainer leaves them alone */
    int io_closed;          /* detached: no more direct reads */
    int muted;              /* stdout is taken away from the drainer (see MUTE_SCAN_MS) */
    int wake_fd;            /* eventfd that interrupts the direct reader's poll; -1 until needed */
    /* Set (under the drainer lock) when the drainer thread failed and stopped serving this
     * client: its rings got EOF early, and readers report `failure` (lsr_drain_failure). */
    int failed;
    lsr_error failure;
} lsr_drain_client;

/* Prepares the client's locks; fd[] and the ring/notify pointers are set by the caller.
 * Returns 0 or the errno of pthread_mutex_init / pthread_cond_init. */
int lsr_drain_client_init(lsr_drain_client *c);

/* Releases what lsr_drain_client_init and lsr_drain_wait created.  The client must be detached
 * (or never attached).  Never fails. */
void lsr_drain_client_destroy(lsr_drain_client *c);

/* Blocks until the client's notifier moves past `seen` or the monotonic deadline passes (it may
 * also return early).  On Linux the calling thread, if no other reader is doing so, polls the
 * output pipes itself and drains what arrives into the rings, with the drainer told to keep off
 * those fds meanwhile: a child's reply then wakes the reader directly instead of via the drainer
 * thread (one thread wake-up instead of two).  Otherwise it waits on the notifier.  Never fails. */
void lsr_drain_wait(lsr_drain_client *c, uint64_t seen, int64_t deadline_ms);

/* Registers the client's fds (fd[PID] may be -1) with the drainer, starting its thread when needed.
 * Returns 0, or -1 with *err ("epoll_ctl: ...", "pthread_create: ...", "malloc: ..."); then
 * nothing was registered and the caller still owns every fd. */
int lsr_drain_attach(lsr_drain_client *c, lsr_error *err);

/* Hands a stdout fd that an earlier direct read left muted back to the drainer now (instead of at
 * its next scan), e.g. before waiting for EOF.  Never fails. */
void lsr_drain_unmute(lsr_drain_client *c);

/* Stops watching fd[PID] (the caller may close it afterwards).  Idempotent.  Never fails. */
void lsr_drain_forget_pid(lsr_drain_client *c);

/* Stops watching everything; closes the output fds still open and gives their rings EOF.  Joins the
 * drainer thread when this was the last client.  Idempotent.  Never fails. */
void lsr_drain_detach(lsr_drain_client *c);

/* Whether the drainer watches the client's pidfd (so lsr_drain_client.exit_seen will be set). */
int lsr_drain_watches_pid(lsr_drain_client *c);

/* Returns 0, or -1 with *err = the failure that stopped the drainer thread from serving this
 * client (e.g. "malloc: Cannot allocate memory").  Never blocks. */
int lsr_drain_failure(lsr_drain_client *c, lsr_error *err);

/* LSR_DEBUG builds only: makes the next drainer thread's buffer allocation fail (on != 0), for
 * tests of the failure path.  Returns 0, or -1 in other builds (nothing changes). */
int lsr_drain_debug_fail_malloc(int on);

/* Number of attached clients and whether the drainer thread runs (for tests).  Never fails. */
void lsr_drain_stats(int *clients, int *thread_running);

#endif /* LSR_DRAIN_POSIX_H */
