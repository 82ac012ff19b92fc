/* ringbuf.h - bounded byte ring buffer that keeps only the newest `limit` bytes.
 *
 * The storage starts small and doubles on demand up to `limit`, so a generous limit costs memory
 * only when the bytes really arrive (and a limit of SIZE_MAX makes a lossless, growing buffer).
 *
 * Producers (pipe drainers) append; readers drain from the oldest end.  Positions are absolute
 * stream offsets (bytes ever appended), so a marker search can resume where it stopped even after
 * old bytes were dropped or drained.  Thread-safe: every call takes the ring's own mutex.  Each
 * append or EOF signals the ring's notifier (its own, or one shared with sibling rings).
 */
#ifndef LSR_RINGBUF_H
#define LSR_RINGBUF_H

#include <stddef.h>
#include <stdint.h>
#include "notify.h"

#define LSR_RING_INITIAL_BYTES 16384

typedef struct lsr_ring {
    lsr_mutex mu;
    uint8_t *data;
    size_t capacity;      /* bytes allocated at `data` (grows up to limit) */
    size_t limit;         /* most bytes kept: older ones are dropped beyond it */
    size_t head;          /* index of the oldest byte */
    size_t len;           /* bytes held */
    uint64_t total;       /* bytes ever appended: the absolute offset of the end */
    uint64_t dropped;     /* bytes discarded because the ring was full */
    int eof;              /* the producer said no more bytes will come */
    lsr_notify own_notify;
    lsr_notify *notify;   /* &own_notify, or a notifier shared with other rings */
} lsr_ring;

/* Sets up a ring that keeps at most `limit` bytes, with initial storage of
 * min(limit, LSR_RING_INITIAL_BYTES).  `shared` may be NULL (the ring gets its own notifier) or a
 * notifier that outlives the ring.  Returns 0, EINVAL when limit is 0, ENOMEM when malloc fails,
 * or the errno of the failing pthread_mutex_init / pthread_cond_init.  On failure nothing needs
 * freeing. */
int lsr_ring_init(lsr_ring *r, size_t limit, lsr_notify *shared);
/* Frees the storage.  No other thread may use the ring any more.  Never fails. */
void lsr_ring_destroy(lsr_ring *r);
/* Appends n bytes, growing the storage while it is below limit and dropping the oldest bytes
 * beyond limit (or beyond the current storage when growing fails for lack of memory; `dropped`
 * counts them either way); wakes waiters.  Never fails. */
void lsr_ring_append(lsr_ring *r, const uint8_t *src, size_t n);
/* Moves up to max bytes from the oldest end into out; returns how many.  Never fails. */
size_t lsr_ring_drain(lsr_ring *r, uint8_t *out, size_t max);
/* Marks end of stream and wakes waiters.  Never fails. */
void lsr_ring_set_eof(lsr_ring *r);
/* Snapshot of len / total / dropped / eof, taken under one lock.  Never fails. */
void lsr_ring_stats(lsr_ring *r, size_t *len, uint64_t *total, uint64_t *dropped, int *eof);
/* Searches the held bytes for marker, starting at absolute offset *scan_from (clamped to the
 * oldest held byte).  Returns 1 and sets *scan_from to the marker's absolute offset when found;
 * returns 0 and advances *scan_from to where the next search must start (the last mlen-1 bytes
 * stay searchable, so a marker split across appends is found).  mlen == 0 finds at once.
 * Never fails. */
int lsr_ring_find(lsr_ring *r, const uint8_t *marker, size_t mlen, uint64_t *scan_from);
/* Blocks until the ring holds bytes, reached EOF, or the monotonic deadline (ms; negative = none)
 * passes.  Returns 1 when bytes or EOF are there.  Call without the GIL.  Never fails. */
int lsr_ring_wait_readable(lsr_ring *r, int64_t deadline_ms);

#endif
