/* drain_posix.c - one drainer thread for all managed processes (see drain_posix.h).
 *
 * Locking: G.mu guards the slot table, the client fields marked in drain_posix.h and the thread
 * state.  The drainer holds it while it handles a batch of events (reads + ring appends), never
 * while it sleeps in epoll_wait/poll, so attach/detach wait at most for one batch.  A client's
 * io_mu serialises reads and closes of its output fds between the drainer and a direct reader.
 * Lock order: G.mu, then io_mu, then a ring's mutex, then the notifier's mutex; a direct reader
 * never takes G.mu.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drain_posix.h"

#if defined(__linux__) && !defined(LSR_DRAIN_POLL)
#  define LSR_USE_EPOLL 1
#  include <sys/epoll.h>
#  include <sys/eventfd.h>
#  include <poll.h>
#else
#  define LSR_USE_EPOLL 0
#  include <poll.h>
#endif

#define STATE_IDLE 0      /* no thread */
#define STATE_RUNNING 1   /* thread alive */
#define STATE_EXITED 2    /* thread returned, not joined yet */

#define WAKE_TOKEN UINT64_MAX
/* A direct reader leaves the stdout fd muted when it returns, so a reader that comes back (the
 * usual write/read loop) needs no epoll_ctl at all.  While any fd is muted the drainer wakes every
 * MUTE_SCAN_MS and unmutes those no reader is polling: a child that writes while nobody reads is
 * drained again within that time (it can fill the pipe, 64 KiB on Linux, meanwhile). */
#define MUTE_SCAN_MS 25
#define READ_CHUNK 65536
#define READS_PER_EVENT 4          /* bounded per wake-up so one chatty child cannot starve others */
#define DRAINER_STACK (256 * 1024)
/* Which output fds a direct reader takes away from the drainer while it polls (bit 0 stdout,
 * bit 1 stderr).  Muting costs two epoll_ctl calls per stream and wait; an unmuted stream is
 * read by whoever comes first. */
#ifndef DIRECT_MUTE_MASK
#define DIRECT_MUTE_MASK 1
#endif

typedef struct drain_slot {
    lsr_drain_client *client;   /* NULL when free */
    uint32_t gen;
    uint32_t next_free;
} drain_slot;

#define NO_SLOT UINT32_MAX

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* state / client count changes */
    int state;
    pthread_t thread;
    int clients;
    drain_slot *slots;
    uint32_t nslots;
    uint32_t free_head;
    int waitfd;                 /* epoll fd (Linux); unused with poll() */
    int wake_r, wake_w;         /* eventfd (both the same fd) or self-pipe */
#if !LSR_USE_EPOLL
    int dirty;                  /* the poll set must be rebuilt */
#endif
} G = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, STATE_IDLE, 0, 0, NULL, 0, NO_SLOT,
        -1, -1, -1
#if !LSR_USE_EPOLL
        , 1
#endif
};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int muted_clients;       /* clients whose stdout is muted; atomic */

static uint64_t make_token(uint32_t slot, uint32_t gen, int kind)
{
    return ((uint64_t)gen << 32) | ((uint64_t)slot << 2) | (uint64_t)kind;
}

/* ---- wait-set primitives (lock held) ---------------------------------------------------------- */

static int watch_fd(int fd, uint64_t token)
{
#if LSR_USE_EPOLL
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = token;
    return epoll_ctl(G.waitfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : errno;
#else
    (void)fd;
    (void)token;
    G.dirty = 1;
    return 0;
#endif
}

static void unwatch_fd(int fd)
{
#if LSR_USE_EPOLL
    struct epoll_event ev;   /* non-NULL for kernels before 2.6.9 */
    epoll_ctl(G.waitfd, EPOLL_CTL_DEL, fd, &ev);
#else
    (void)fd;
    G.dirty = 1;
#endif
}

static void wake_drainer(void)
{
    if (G.wake_w < 0)
        return;
#if LSR_USE_EPOLL
    uint64_t one = 1;
    ssize_t rc = write(G.wake_w, &one, sizeof one);
#else
    char one = 1;
    ssize_t rc = write(G.wake_w, &one, 1);
#endif
    (void)rc;   /* EAGAIN: a wake-up is already pending, which is all we need */
}

static void clear_wake(void)
{
    char buf[64];
    while (read(G.wake_r, buf, sizeof buf) > 0) {
#if LSR_USE_EPOLL
        break;   /* an eventfd is reset by one read */
#endif
    }
}

/* Closes one output stream of a client: out of the wait set, fd closed, ring at EOF. */
static void close_stream(lsr_drain_client *c, int kind)
{
    int fd = c->fd[kind];
    if (fd < 0)
        return;
    unwatch_fd(fd);
    close(fd);
    c->fd[kind] = -1;
    lsr_ring_set_eof(c->ring[kind]);
}

static void stop_watching_pid(lsr_drain_client *c)
{
    if (!c->watching_pid)
        return;
    unwatch_fd(c->fd[LSR_DRAIN_PID]);
    __atomic_store_n(&c->watching_pid, 0, __ATOMIC_RELEASE);
}

/* ---- the drainer thread ---------------------------------------------------------------------- */

/* Reads what a non-blocking output fd holds (bounded, so one chatty child cannot starve the
 * others) into its ring; closes the stream at EOF or on a read error.  c->io_mu held. */
static void drain_fd_locked(lsr_drain_client *c, int kind, uint8_t *buf, size_t cap)
{
    int fd = c->fd[kind];
    if (fd < 0)
        return;
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = read(fd, buf, cap);
        if (n > 0) {
            lsr_ring_append(c->ring[kind], buf, (size_t)n);
            if ((size_t)n < cap)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            i--;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close_stream(c, kind);   /* EOF, or a read error that ends this stream */
        return;
    }
}

/* Interrupts a direct reader's poll (see lsr_drain_wait).  c->io_mu held. */
static void wake_direct_locked(lsr_drain_client *c)
{
    if (c->direct && c->wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t rc = write(c->wake_fd, &one, sizeof one);
        (void)rc;   /* EAGAIN: already pending */
    }
}

static void handle_event(uint64_t token, uint8_t *buf)
{
    uint32_t gen = (uint32_t)(token >> 32);
    uint32_t idx = (uint32_t)((token & 0xffffffffu) >> 2);
    int kind = (int)(token & 3u);
    if (idx >= G.nslots || G.slots[idx].gen != gen || G.slots[idx].client == NULL)
        return;   /* the client detached after this event was fetched */
    lsr_drain_client *c = G.slots[idx].client;
    if (kind == LSR_DRAIN_PID) {
        if (c->watching_pid) {
            stop_watching_pid(c);
            __atomic_store_n(&c->exit_seen, 1, __ATOMIC_RELEASE);
            lsr_notify_signal(c->notify);
            pthread_mutex_lock(&c->io_mu);
            wake_direct_locked(c);
            pthread_mutex_unlock(&c->io_mu);
        }
        return;
    }
    pthread_mutex_lock(&c->io_mu);
    if (!c->direct) {
        drain_fd_locked(c, kind, buf, READ_CHUNK);
    } else if (!(DIRECT_MUTE_MASK & (1 << kind))) {
        /* A direct reader polls this unmuted fd too; whoever reads first appends, and the
         * reader's poll may not see data we took, so kick it. */
        uint64_t seq = lsr_notify_seq(c->notify);
        drain_fd_locked(c, kind, buf, READ_CHUNK);
        if (lsr_notify_seq(c->notify) != seq)
            wake_direct_locked(c);
    }   /* else: an event fetched just before the reader muted this fd; the reader takes it */
    pthread_mutex_unlock(&c->io_mu);
}

#if !LSR_USE_EPOLL
static struct pollfd *poll_fds;
static uint64_t *poll_tokens;
static size_t poll_n, poll_cap;

/* Rebuilds the poll set from the slot table (lock held).  Returns 0 or ENOMEM. */
static int rebuild_poll_set(void)
{
    size_t need = 1;
    for (uint32_t i = 0; i < G.nslots; i++)
        if (G.slots[i].client != NULL)
            need += 3;
    if (need > poll_cap) {
        struct pollfd *f = realloc(poll_fds, need * sizeof *f);
        if (f == NULL)
            return ENOMEM;
        poll_fds = f;
        uint64_t *t = realloc(poll_tokens, need * sizeof *t);
        if (t == NULL)
            return ENOMEM;
        poll_tokens = t;
        poll_cap = need;
    }
    poll_n = 0;
    poll_fds[poll_n] = (struct pollfd){ G.wake_r, POLLIN, 0 };
    poll_tokens[poll_n++] = WAKE_TOKEN;
    for (uint32_t i = 0; i < G.nslots; i++) {
        lsr_drain_client *c = G.slots[i].client;
        if (c == NULL)
            continue;
        for (int kind = 0; kind < 3; kind++) {
            if (c->fd[kind] < 0 || (kind == LSR_DRAIN_PID && !c->watching_pid))
                continue;
            poll_fds[poll_n] = (struct pollfd){ c->fd[kind], POLLIN, 0 };
            poll_tokens[poll_n++] = make_token(i, G.slots[i].gen, kind);
        }
    }
    G.dirty = 0;
    return 0;
}
#endif

#if LSR_USE_EPOLL
/* Tells the drainer to ignore (mute = 1) or watch again (mute = 0) the client's muted-by-readers
 * output fds.  c->io_mu held; the client is attached (so G.waitfd and its slot are valid). */
static void mute_streams_locked(lsr_drain_client *c, int mute)
{
    if (c->muted == mute)
        return;
    for (int kind = 0; kind < 2; kind++) {
        if (c->fd[kind] < 0 || !(DIRECT_MUTE_MASK & (1 << kind)))
            continue;
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = mute ? 0 : EPOLLIN;
        ev.data.u64 = make_token(c->slot, c->gen, kind);
        epoll_ctl(G.waitfd, EPOLL_CTL_MOD, c->fd[kind], &ev);
    }
    __atomic_store_n(&c->muted, mute, __ATOMIC_RELAXED);
    if (mute) {
        if (__atomic_fetch_add(&muted_clients, 1, __ATOMIC_ACQ_REL) == 0)
            wake_drainer();   /* it sleeps without a timeout: make it start scanning */
    } else {
        __atomic_fetch_sub(&muted_clients, 1, __ATOMIC_ACQ_REL);
    }
}

/* Gives muted fds that no reader polls back to the drainer (G.mu held). */
static void unmute_idle_clients(void)
{
    for (uint32_t i = 0; i < G.nslots; i++) {
        lsr_drain_client *c = G.slots[i].client;
        if (c == NULL || !__atomic_load_n(&c->muted, __ATOMIC_RELAXED))
            continue;   /* unlocked peek; re-checked under io_mu */
        pthread_mutex_lock(&c->io_mu);
        if (!c->direct && !c->io_closed)
            mute_streams_locked(c, 0);
        pthread_mutex_unlock(&c->io_mu);
    }
}
#endif

#ifdef LSR_DEBUG
static int debug_fail_malloc;   /* atomic; see lsr_drain_debug_fail_malloc */
#endif

int lsr_drain_debug_fail_malloc(int on)
{
#ifdef LSR_DEBUG
    __atomic_store_n(&debug_fail_malloc, on != 0, __ATOMIC_RELEASE);
    return 0;
#else
    (void)on;
    return -1;
#endif
}

/* The drainer thread cannot go on (lock held): every attached client records why, and its rings
 * get EOF, so readers wake and report the failure instead of waiting for bytes that will never
 * be moved.  Never fails. */
static void fail_clients_locked(int code, const char *call)
{
    for (uint32_t i = 0; i < G.nslots; i++) {
        lsr_drain_client *c = G.slots[i].client;
        if (c == NULL || c->failed)
            continue;
        lsr_set_error(&c->failure, code, call);
        __atomic_store_n(&c->failed, 1, __ATOMIC_RELEASE);
        lsr_ring_set_eof(c->ring[0]);
        lsr_ring_set_eof(c->ring[1]);
        lsr_notify_signal(c->notify);
    }
}

int lsr_drain_failure(lsr_drain_client *c, lsr_error *err)
{
    if (!__atomic_load_n(&c->failed, __ATOMIC_ACQUIRE))
        return 0;
    if (err != NULL)
        *err = c->failure;
    return -1;
}

static void *drainer_main(void *arg)
{
    (void)arg;
    uint8_t *buf = NULL;
#ifdef LSR_DEBUG
    if (!__atomic_exchange_n(&debug_fail_malloc, 0, __ATOMIC_ACQ_REL))
#endif
        buf = malloc(READ_CHUNK);
#if LSR_USE_EPOLL
    struct epoll_event events[128];
    int64_t next_scan_ms = lsr_now_ms() + MUTE_SCAN_MS;
#endif
    pthread_mutex_lock(&G.mu);
    if (buf == NULL)
        fail_clients_locked(ENOMEM, "malloc");
    while (G.clients > 0 && buf != NULL) {
#if LSR_USE_EPOLL
        int timeout = __atomic_load_n(&muted_clients, __ATOMIC_ACQUIRE) > 0 ? MUTE_SCAN_MS : -1;
        pthread_mutex_unlock(&G.mu);
        int n = epoll_wait(G.waitfd, events, 128, timeout);
        int wait_errno = errno;
        pthread_mutex_lock(&G.mu);
        if (n < 0) {
            if (wait_errno == EINTR)
                continue;
            fail_clients_locked(wait_errno, "epoll_wait");   /* cannot happen with a valid fd */
            break;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.u64 == WAKE_TOKEN)
                clear_wake();
            else
                handle_event(events[i].data.u64, buf);
        }
        if (__atomic_load_n(&muted_clients, __ATOMIC_ACQUIRE) > 0) {
            int64_t now = lsr_now_ms();
            if (now >= next_scan_ms) {
                unmute_idle_clients();
                next_scan_ms = now + MUTE_SCAN_MS;
            }
        }
#else
        if (G.dirty && rebuild_poll_set() != 0) {
            pthread_mutex_unlock(&G.mu);
            usleep(10000);   /* out of memory: retry shortly rather than spin */
            pthread_mutex_lock(&G.mu);
            continue;
        }
        nfds_t count = (nfds_t)poll_n;
        pthread_mutex_unlock(&G.mu);
        int n = poll(poll_fds, count, -1);
        int wait_errno = errno;
        pthread_mutex_lock(&G.mu);
        if (n < 0) {
            if (wait_errno == EINTR || wait_errno == EAGAIN)
                continue;
            fail_clients_locked(wait_errno, "poll");
            break;
        }
        for (nfds_t i = 0; i < count && n > 0; i++) {
            if (poll_fds[i].revents == 0)
                continue;
            n--;
            if (poll_tokens[i] == WAKE_TOKEN)
                clear_wake();
            else if (poll_fds[i].revents & POLLNVAL)
                G.dirty = 1;   /* closed under us: the slot check already ignores it */
            else
                handle_event(poll_tokens[i], buf);
        }
#endif
    }
    free(buf);
#if LSR_USE_EPOLL
    close(G.waitfd);
    G.waitfd = -1;
#else
    free(poll_fds);
    free(poll_tokens);
    poll_fds = NULL;
    poll_tokens = NULL;
    poll_n = poll_cap = 0;
    G.dirty = 1;
#endif
    close(G.wake_r);
    if (G.wake_w != G.wake_r)
        close(G.wake_w);
    G.wake_r = G.wake_w = -1;
    G.state = STATE_EXITED;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
    return NULL;
}

/* ---- thread lifecycle (lock held) ------------------------------------------------------------ */

static void join_exited(void)
{
    if (G.state == STATE_EXITED) {
        pthread_join(G.thread, NULL);
        G.state = STATE_IDLE;
    }
}

/* Starts the drainer thread with its wait set.  Returns 0, or -1 with *err. */
static int start_drainer(lsr_error *err)
{
#if LSR_USE_EPOLL
    G.waitfd = epoll_create1(EPOLL_CLOEXEC);
    if (G.waitfd < 0) {
        lsr_set_error(err, errno, "epoll_create1");
        return -1;
    }
    G.wake_r = G.wake_w = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (G.wake_r < 0) {
        lsr_set_error(err, errno, "eventfd");
        close(G.waitfd);
        G.waitfd = -1;
        return -1;
    }
    int rc = watch_fd(G.wake_r, WAKE_TOKEN);
    if (rc != 0) {
        lsr_set_error(err, rc, "epoll_ctl");
        goto fail_fds;
    }
#else
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        lsr_set_error(err, errno, "pipe");
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(pipefd[i], F_SETFD, FD_CLOEXEC);
        fcntl(pipefd[i], F_SETFL, fcntl(pipefd[i], F_GETFL) | O_NONBLOCK);
    }
    G.wake_r = pipefd[0];
    G.wake_w = pipefd[1];
    G.dirty = 1;
    int rc;
#endif
    /* The drainer must never take a signal meant for the interpreter's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, DRAINER_STACK);
    rc = pthread_create(&G.thread, &attr, drainer_main, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        lsr_set_error(err, rc, "pthread_create");
        goto fail_fds;
    }
    G.state = STATE_RUNNING;
    return 0;
fail_fds:
#if LSR_USE_EPOLL
    close(G.waitfd);
    G.waitfd = -1;
#endif
    close(G.wake_r);
    if (G.wake_w != G.wake_r)
        close(G.wake_w);
    G.wake_r = G.wake_w = -1;
    return -1;
}

/* With no client left, lets the drainer exit and joins it (the thread releases G.mu while it is
 * waited for).  Returns early when a new client arrives meanwhile. */
static void stop_if_idle(void)
{
    if (G.clients != 0 || G.state != STATE_RUNNING)
        return;
    wake_drainer();
    while (G.state == STATE_RUNNING && G.clients == 0)
        pthread_cond_wait(&G.cv, &G.mu);
    if (G.clients == 0)
        join_exited();
}

/* ---- fork: a child of fork() has no drainer thread; start from scratch there ----------------- */

static void atfork_prepare(void) { pthread_mutex_lock(&G.mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&G.mu); }

static void atfork_child(void)
{
    /* Inherited clients keep their fds; lsr_drain_detach sees their stale generation and just
     * closes them.  The parent's wait set and thread are not ours. */
    if (G.waitfd >= 0)
        close(G.waitfd);
    if (G.wake_r >= 0)
        close(G.wake_r);
    if (G.wake_w >= 0 && G.wake_w != G.wake_r)
        close(G.wake_w);
    G.waitfd = G.wake_r = G.wake_w = -1;
    G.state = STATE_IDLE;
    G.clients = 0;
    muted_clients = 0;
    G.free_head = NO_SLOT;
    for (uint32_t i = G.nslots; i-- > 0;) {
        G.slots[i].client = NULL;
        G.slots[i].gen++;
        G.slots[i].next_free = G.free_head;
        G.free_head = i;
    }
#if !LSR_USE_EPOLL
    G.dirty = 1;
    poll_fds = NULL;       /* the parent's drainer owned these arrays; leak them in the child */
    poll_tokens = NULL;
    poll_n = poll_cap = 0;
#endif
    pthread_mutex_init(&G.mu, NULL);
    pthread_cond_init(&G.cv, NULL);
}

static void register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- slots (lock held) ----------------------------------------------------------------------- */

static int alloc_slot(uint32_t *out)
{
    if (G.free_head == NO_SLOT) {
        uint32_t grow = G.nslots ? G.nslots : 64;
        if (G.nslots + grow > (1u << 30))
            return ENOMEM;
        drain_slot *s = realloc(G.slots, (size_t)(G.nslots + grow) * sizeof *s);
        if (s == NULL)
            return ENOMEM;
        G.slots = s;
        for (uint32_t i = G.nslots + grow; i-- > G.nslots;) {
            G.slots[i].client = NULL;
            G.slots[i].gen = 0;
            G.slots[i].next_free = G.free_head;
            G.free_head = i;
        }
        G.nslots += grow;
    }
    *out = G.free_head;
    G.free_head = G.slots[*out].next_free;
    return 0;
}

static void release_slot(uint32_t idx)
{
    G.slots[idx].client = NULL;
    G.slots[idx].gen++;
    G.slots[idx].next_free = G.free_head;
    G.free_head = idx;
}

/* ---- public (drain_posix.h) ------------------------------------------------------------------ */

int lsr_drain_attach(lsr_drain_client *c, lsr_error *err)
{
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&G.mu);
    join_exited();
    if (G.state == STATE_IDLE && start_drainer(err) != 0) {
        pthread_mutex_unlock(&G.mu);
        return -1;
    }
    uint32_t idx;
    int rc = alloc_slot(&idx);
    if (rc != 0) {
        lsr_set_error(err, rc, "malloc");
        stop_if_idle();
        pthread_mutex_unlock(&G.mu);
        return -1;
    }
    uint32_t gen = G.slots[idx].gen;
    int added = 0;
    for (; added < 3; added++) {
        if (c->fd[added] < 0)
            continue;
        rc = watch_fd(c->fd[added], make_token(idx, gen, added));
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        while (added-- > 0)
            if (c->fd[added] >= 0)
                unwatch_fd(c->fd[added]);
        release_slot(idx);
        lsr_set_error(err, rc, "epoll_ctl");
        stop_if_idle();
        pthread_mutex_unlock(&G.mu);
        return -1;
    }
    G.slots[idx].client = c;
    c->slot = idx;
    c->gen = gen;
    c->attached = 1;
    c->exit_seen = 0;
    __atomic_store_n(&c->watching_pid, c->fd[LSR_DRAIN_PID] >= 0, __ATOMIC_RELEASE);
    G.clients++;
#if !LSR_USE_EPOLL
    wake_drainer();   /* rebuild the poll set with the new fds */
#endif
    pthread_cond_broadcast(&G.cv);   /* a detach waiting for the thread to stop re-checks */
    pthread_mutex_unlock(&G.mu);
    return 0;
}

static int still_attached(lsr_drain_client *c)
{
    return c->attached && c->slot < G.nslots && G.slots[c->slot].client == c
        && G.slots[c->slot].gen == c->gen;
}

void lsr_drain_forget_pid(lsr_drain_client *c)
{
    pthread_mutex_lock(&G.mu);
    if (still_attached(c)) {
        stop_watching_pid(c);
#if !LSR_USE_EPOLL
        wake_drainer();
#endif
    }
    pthread_mutex_unlock(&G.mu);
}

void lsr_drain_detach(lsr_drain_client *c)
{
    pthread_mutex_lock(&G.mu);
    pthread_mutex_lock(&c->io_mu);
    while (c->direct) {   /* a reader polls these fds: interrupt it and let it finish */
        wake_direct_locked(c);
        pthread_cond_wait(&c->io_cv, &c->io_mu);
    }
    c->io_closed = 1;
    if (c->muted) {
        if (still_attached(c))   /* a fork()ed copy's count started again from 0 */
            __atomic_fetch_sub(&muted_clients, 1, __ATOMIC_ACQ_REL);
        c->muted = 0;
    }
    if (!still_attached(c)) {
        /* Never attached, already detached, or inherited through fork(): just release fds. */
        for (int kind = 0; kind < 2; kind++) {
            if (c->fd[kind] >= 0) {
                close(c->fd[kind]);
                c->fd[kind] = -1;
                lsr_ring_set_eof(c->ring[kind]);
            }
        }
        c->attached = 0;
        __atomic_store_n(&c->watching_pid, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&c->io_mu);
        pthread_mutex_unlock(&G.mu);
        return;
    }
    close_stream(c, LSR_DRAIN_OUT);
    close_stream(c, LSR_DRAIN_ERR);
    pthread_mutex_unlock(&c->io_mu);
    stop_watching_pid(c);
    release_slot(c->slot);
    c->attached = 0;
    G.clients--;
#if !LSR_USE_EPOLL
    wake_drainer();
#endif
    stop_if_idle();
    pthread_mutex_unlock(&G.mu);
}

int lsr_drain_watches_pid(lsr_drain_client *c)
{
    return __atomic_load_n(&c->watching_pid, __ATOMIC_ACQUIRE);
}

void lsr_drain_stats(int *clients, int *thread_running)
{
    pthread_mutex_lock(&G.mu);
    if (clients)
        *clients = G.clients;
    if (thread_running)
        *thread_running = G.state == STATE_RUNNING;
    pthread_mutex_unlock(&G.mu);
}

int lsr_drain_client_init(lsr_drain_client *c)
{
    int rc = pthread_mutex_init(&c->io_mu, NULL);
    if (rc != 0)
        return rc;
    rc = pthread_cond_init(&c->io_cv, NULL);
    if (rc != 0) {
        pthread_mutex_destroy(&c->io_mu);
        return rc;
    }
    c->direct = 0;
    c->io_closed = 0;
    c->muted = 0;
    c->wake_fd = -1;
    return 0;
}

void lsr_drain_client_destroy(lsr_drain_client *c)
{
    if (c->wake_fd >= 0) {
        close(c->wake_fd);
        c->wake_fd = -1;
    }
    pthread_cond_destroy(&c->io_cv);
    pthread_mutex_destroy(&c->io_mu);
}

#define DIRECT_CHUNK 16384   /* on the reader's own stack */

void lsr_drain_wait(lsr_drain_client *c, uint64_t seen, int64_t deadline_ms)
{
#if LSR_USE_EPOLL
    pthread_mutex_lock(&c->io_mu);
    if (c->direct || c->io_closed || !c->attached
        || (c->fd[LSR_DRAIN_OUT] < 0 && c->fd[LSR_DRAIN_ERR] < 0))
        goto notifier;   /* another reader polls, or nothing left to poll */
    if (c->wake_fd < 0) {
        c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->wake_fd < 0)
            goto notifier;
    }
    c->direct = 1;
    mute_streams_locked(c, 1);
    struct pollfd pfd[3];
    int kinds[3];
    nfds_t n = 0;
    for (int kind = 0; kind < 2; kind++) {
        if (c->fd[kind] >= 0) {
            pfd[n] = (struct pollfd){ c->fd[kind], POLLIN, 0 };
            kinds[n++] = kind;
        }
    }
    pfd[n] = (struct pollfd){ c->wake_fd, POLLIN, 0 };
    kinds[n++] = -1;
    pthread_mutex_unlock(&c->io_mu);

    /* Whatever the drainer appended before the mute took effect has moved the sequence. */
    if (lsr_notify_seq(c->notify) == seen) {
        int timeout = -1;
        if (deadline_ms >= 0) {
            int64_t left = deadline_ms - lsr_now_ms();
            timeout = left <= 0 ? 0 : left > 0x7fffffff ? 0x7fffffff : (int)left;
        }
        if (poll(pfd, n, timeout) < 0)
            for (nfds_t i = 0; i < n; i++)
                pfd[i].revents = 0;   /* EINTR: the caller's loop re-checks */
    } else {
        for (nfds_t i = 0; i < n; i++)
            pfd[i].revents = 0;
    }

    uint8_t buf[DIRECT_CHUNK];
    pthread_mutex_lock(&c->io_mu);
    for (nfds_t i = 0; i < n; i++) {
        if (pfd[i].revents == 0)
            continue;
        if (kinds[i] < 0) {
            uint64_t count;
            ssize_t rc = read(c->wake_fd, &count, sizeof count);
            (void)rc;
        } else {
            drain_fd_locked(c, kinds[i], buf, sizeof buf);
        }
    }
    /* stdout stays muted for the next read; the drainer's scan takes it back if none comes. */
    c->direct = 0;
    pthread_cond_broadcast(&c->io_cv);
    pthread_mutex_unlock(&c->io_mu);
    return;
notifier:
    pthread_mutex_unlock(&c->io_mu);
#endif
    lsr_notify_wait(c->notify, seen, deadline_ms);
}

void lsr_drain_unmute(lsr_drain_client *c)
{
#if LSR_USE_EPOLL
    pthread_mutex_lock(&c->io_mu);
    if (c->muted && !c->direct && !c->io_closed && c->attached)
        mute_streams_locked(c, 0);
    pthread_mutex_unlock(&c->io_mu);
#else
    (void)c;
#endif
}
