/* proc_io.h - platform-neutral reader helpers of a managed process (proc.h), as inline functions so
 * both platforms share them without another source file.  They only use the rings and the shared
 * notifier, so they work the same before and after lsr_proc_terminate.
 */
#ifndef LSR_PROC_IO_H
#define LSR_PROC_IO_H

#include <string.h>
#include "proc.h"

/* An optional marker for one stream, searched as bytes in that stream's ring.  scan_from is the
 * absolute offset where the search resumes (start at 0); lsr_proc_wait_output advances it so bytes
 * already searched are not searched again, while a marker split across appends is still found. */
typedef struct lsr_marker {
    const uint8_t *bytes;   /* NULL: this stream never satisfies the marker condition */
    size_t len;             /* > 0 when bytes != NULL */
    uint64_t scan_from;
} lsr_marker;

#define LSR_WAIT_TIMEOUT 0  /* the deadline passed first */
#define LSR_WAIT_READY 1    /* output is there (and, with markers, a marker was found) */
#define LSR_WAIT_EOF 2      /* both streams reached end of stream */

/* Blocks until a read can return: without markers (markers == NULL) as soon as either ring holds a
 * byte; with markers (an array of two: stdout, stderr) as soon as a stream's marker is found in its
 * ring.  Also returns when both rings reached EOF, or when the monotonic deadline (ms from
 * lsr_now_ms; negative = none) passes.  Readiness is checked before EOF and before the deadline,
 * so a ready stream never reports a timeout.  One wait covers both streams: it sleeps in
 * lsr_proc_wait_event and wakes at once on output, EOF or exit.  Call without the GIL.
 * Never fails. */
static inline int lsr_proc_wait_output(lsr_proc *p, lsr_marker *markers, int64_t deadline_ms)
{
    lsr_ring *rings[2] = { lsr_proc_stream(p, LSR_STDOUT), lsr_proc_stream(p, LSR_STDERR) };
    lsr_notify *notify = lsr_proc_notify(p);
    for (;;) {
        uint64_t seen = lsr_notify_seq(notify);
        size_t held[2];
        int eof[2];
        lsr_ring_stats(rings[0], &held[0], NULL, NULL, &eof[0]);
        lsr_ring_stats(rings[1], &held[1], NULL, NULL, &eof[1]);
        if (held[0] + held[1] > 0) {
            if (markers == NULL)
                return LSR_WAIT_READY;
            for (int i = 0; i < 2; i++) {
                lsr_marker *m = &markers[i];
                if (m->bytes != NULL && m->len > 0 && held[i] > 0
                    && lsr_ring_find(rings[i], m->bytes, m->len, &m->scan_from))
                    return LSR_WAIT_READY;
            }
        }
        if (eof[0] && eof[1])
            return LSR_WAIT_EOF;
        if (deadline_ms >= 0 && lsr_now_ms() >= deadline_ms)
            return LSR_WAIT_TIMEOUT;
        lsr_proc_wait_event(p, seen, deadline_ms);
    }
}

/* Copies up to max of the bytes held in a ring (oldest first) into out without removing them;
 * returns how many.  For marker checks that must decode the buffered text.  Never fails. */
static inline size_t lsr_ring_peek(lsr_ring *r, uint8_t *out, size_t max)
{
    lsr_mutex_lock(&r->mu);
    size_t n = r->len < max ? r->len : max;
    size_t first = r->capacity - r->head;
    if (first > n)
        first = n;
    memcpy(out, r->data + r->head, first);
    memcpy(out + first, r->data, n - first);
    lsr_mutex_unlock(&r->mu);
    return n;
}

#endif /* LSR_PROC_IO_H */
