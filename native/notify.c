#include "notify.h"

#include <errno.h>
#ifndef _WIN32
#include <unistd.h>
#endif

#ifdef LSR_DEBUG
long lsr_debug_live[LSR_LIVE_KINDS];
#endif

int lsr_debug_live_counts(long *out)
{
#ifdef LSR_DEBUG
    for (int i = 0; i < LSR_LIVE_KINDS; i++)
        out[i] = __atomic_load_n(&lsr_debug_live[i], __ATOMIC_RELAXED);
    return 0;
#else
    (void)out;
    return -1;
#endif
}

int lsr_notify_init(lsr_notify *n)
{
    int rc = lsr_mutex_init(&n->mu);
    if (rc != 0)
        return rc;
    rc = lsr_cond_init(&n->cv);
    if (rc != 0) {
        lsr_mutex_destroy(&n->mu);
        return rc;
    }
    n->seq = 0;
    n->wake_fd = -1;
    LSR_DEBUG_LIVE_ADD(LSR_LIVE_NOTIFIERS, 1);
    return 0;
}

void lsr_notify_destroy(lsr_notify *n)
{
    LSR_DEBUG_LIVE_ADD(LSR_LIVE_NOTIFIERS, -1);
    lsr_cond_destroy(&n->cv);
    lsr_mutex_destroy(&n->mu);
}

void lsr_notify_signal(lsr_notify *n)
{
    lsr_mutex_lock(&n->mu);
    n->seq++;
    lsr_cond_broadcast(&n->cv);
#ifndef _WIN32
    if (n->wake_fd >= 0) {
        static const char byte = 1;
        ssize_t ignored = write(n->wake_fd, &byte, 1); /* EAGAIN: a wake-up is already pending */
        (void)ignored;
    }
#endif
    lsr_mutex_unlock(&n->mu);
}

uint64_t lsr_notify_seq(lsr_notify *n)
{
    lsr_mutex_lock(&n->mu);
    uint64_t seq = n->seq;
    lsr_mutex_unlock(&n->mu);
    return seq;
}

uint64_t lsr_notify_wait(lsr_notify *n, uint64_t seen, int64_t deadline_ms)
{
    lsr_mutex_lock(&n->mu);
    while (n->seq == seen) {
        if (deadline_ms >= 0 && lsr_now_ms() >= deadline_ms)
            break;
        lsr_cond_wait_until(&n->cv, &n->mu, deadline_ms);
    }
    uint64_t seq = n->seq;
    lsr_mutex_unlock(&n->mu);
    return seq;
}

int lsr_notify_set_wake_fd(lsr_notify *n, int fd)
{
#ifdef _WIN32
    (void)n;
    (void)fd;
    return ENOTSUP;
#else
    lsr_mutex_lock(&n->mu);
    n->wake_fd = fd;
    lsr_mutex_unlock(&n->mu);
    return 0;
#endif
}
