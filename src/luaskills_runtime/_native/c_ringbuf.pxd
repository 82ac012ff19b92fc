# C declarations of native/notify.h and native/ringbuf.h (see those headers for error contracts).
from libc.stdint cimport uint8_t, uint64_t, int64_t

cdef extern from "luaskills.h" nogil:
    int64_t lsr_now_ms()

    ctypedef struct lsr_notify:
        pass
    int lsr_notify_init(lsr_notify *n)
    void lsr_notify_destroy(lsr_notify *n)
    void lsr_notify_signal(lsr_notify *n)
    uint64_t lsr_notify_seq(lsr_notify *n)
    uint64_t lsr_notify_wait(lsr_notify *n, uint64_t seen, int64_t deadline_ms)
    int lsr_notify_set_wake_fd(lsr_notify *n, int fd)

    int LSR_LIVE_KINDS
    int lsr_debug_live_counts(long *out)

    ctypedef struct lsr_ring:
        size_t capacity
        size_t limit
    int lsr_ring_init(lsr_ring *r, size_t capacity, lsr_notify *shared)
    void lsr_ring_destroy(lsr_ring *r)
    void lsr_ring_append(lsr_ring *r, const uint8_t *src, size_t n)
    size_t lsr_ring_drain(lsr_ring *r, uint8_t *out, size_t max)
    void lsr_ring_set_eof(lsr_ring *r)
    void lsr_ring_stats(lsr_ring *r, size_t *len, uint64_t *total, uint64_t *dropped, int *eof)
    int lsr_ring_find(lsr_ring *r, const uint8_t *marker, size_t mlen, uint64_t *scan_from)
    int lsr_ring_wait_readable(lsr_ring *r, int64_t deadline_ms)
