#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringbuf.h"

int lsr_ring_init(lsr_ring *r, size_t limit, lsr_notify *shared)
{
    int rc;
    memset(r, 0, sizeof(*r));
    if (limit == 0)
        return EINVAL;
    size_t capacity = limit < LSR_RING_INITIAL_BYTES ? limit : LSR_RING_INITIAL_BYTES;
    r->data = (uint8_t *)malloc(capacity);
    if (r->data == NULL)
        return ENOMEM;
    rc = lsr_mutex_init(&r->mu);
    if (rc != 0)
        goto fail_data;
    rc = lsr_notify_init(&r->own_notify);
    if (rc != 0)
        goto fail_mutex;
    r->capacity = capacity;
    r->limit = limit;
    r->notify = shared != NULL ? shared : &r->own_notify;
    LSR_DEBUG_LIVE_ADD(LSR_LIVE_RINGS, 1);
    return 0;
fail_mutex:
    lsr_mutex_destroy(&r->mu);
fail_data:
    free(r->data);
    r->data = NULL;
    return rc;
}

void lsr_ring_destroy(lsr_ring *r)
{
    if (r->data == NULL)
        return;
    LSR_DEBUG_LIVE_ADD(LSR_LIVE_RINGS, -1);
    lsr_notify_destroy(&r->own_notify);
    lsr_mutex_destroy(&r->mu);
    free(r->data);
    r->data = NULL;
}

/* Copies n bytes into the ring at logical position `at` (0 = oldest), wrapping.  Lock held. */
static void ring_put(lsr_ring *r, size_t at, const uint8_t *src, size_t n)
{
    size_t idx = (r->head + at) % r->capacity;
    size_t first = r->capacity - idx;
    if (first > n)
        first = n;
    memcpy(r->data + idx, src, first);
    memcpy(r->data, src + first, n - first);
}

/* Enlarges the storage towards `need` bytes (doubling, at most limit).  Lock held.  Unwrapped
 * contents (the usual case while nobody drains) keep their place, so realloc can extend the block
 * without copying; wrapped ones are moved in order to index 0.  When the allocation fails the ring
 * keeps its storage, and append drops bytes as a full ring does. */
static void ring_grow(lsr_ring *r, size_t need)
{
    size_t target = r->capacity;
    while (target < need && target < r->limit)
        target = target > r->limit / 2 ? r->limit : target * 2;
    if (target > r->limit)
        target = r->limit;
    if (target <= r->capacity)
        return;
    if (r->head + r->len <= r->capacity) {
        uint8_t *bigger = (uint8_t *)realloc(r->data, target);
        if (bigger == NULL)
            return;
        r->data = bigger;
        r->capacity = target;
        return;
    }
    uint8_t *bigger = (uint8_t *)malloc(target);
    if (bigger == NULL)
        return;
    size_t first = r->capacity - r->head;
    memcpy(bigger, r->data + r->head, first);
    memcpy(bigger + first, r->data, r->len - first);
    free(r->data);
    r->data = bigger;
    r->capacity = target;
    r->head = 0;
}

void lsr_ring_append(lsr_ring *r, const uint8_t *src, size_t n)
{
    if (n == 0)
        return;
    lsr_mutex_lock(&r->mu);
    if (r->capacity < r->limit && n > r->capacity - r->len)
        ring_grow(r, n > SIZE_MAX - r->len ? SIZE_MAX : r->len + n);
    r->total += n;
    if (n >= r->capacity) {
        /* Only the newest `capacity` bytes of this chunk survive. */
        r->dropped += r->len + (n - r->capacity);
        memcpy(r->data, src + (n - r->capacity), r->capacity);
        r->head = 0;
        r->len = r->capacity;
    } else {
        size_t overflow = r->len + n > r->capacity ? r->len + n - r->capacity : 0;
        if (overflow) {
            r->head = (r->head + overflow) % r->capacity;
            r->len -= overflow;
            r->dropped += overflow;
        }
        ring_put(r, r->len, src, n);
        r->len += n;
    }
    lsr_mutex_unlock(&r->mu);
    lsr_notify_signal(r->notify);
}

size_t lsr_ring_drain(lsr_ring *r, uint8_t *out, size_t max)
{
    lsr_mutex_lock(&r->mu);
    size_t n = r->len < max ? r->len : max;
    size_t first = r->capacity - r->head;
    if (first > n)
        first = n;
    memcpy(out, r->data + r->head, first);
    memcpy(out + first, r->data, n - first);
    r->head = n == r->len ? 0 : (r->head + n) % r->capacity;
    r->len -= n;
    lsr_mutex_unlock(&r->mu);
    return n;
}

void lsr_ring_set_eof(lsr_ring *r)
{
    lsr_mutex_lock(&r->mu);
    r->eof = 1;
    lsr_mutex_unlock(&r->mu);
    lsr_notify_signal(r->notify);
}

void lsr_ring_stats(lsr_ring *r, size_t *len, uint64_t *total, uint64_t *dropped, int *eof)
{
    lsr_mutex_lock(&r->mu);
    if (len)
        *len = r->len;
    if (total)
        *total = r->total;
    if (dropped)
        *dropped = r->dropped;
    if (eof)
        *eof = r->eof;
    lsr_mutex_unlock(&r->mu);
}

/* Byte at logical position i (0 = oldest).  Lock held. */
static inline uint8_t ring_at(const lsr_ring *r, size_t i)
{
    return r->data[(r->head + i) % r->capacity];
}

int lsr_ring_find(lsr_ring *r, const uint8_t *marker, size_t mlen, uint64_t *scan_from)
{
    int found = 0;
    lsr_mutex_lock(&r->mu);
    uint64_t start = r->total - r->len;            /* absolute offset of the oldest held byte */
    uint64_t from = *scan_from < start ? start : *scan_from;
    if (mlen == 0) {
        *scan_from = from;
        lsr_mutex_unlock(&r->mu);
        return 1;
    }
    size_t i = (size_t)(from - start);
    while (i + mlen <= r->len) {
        /* Jump to the next occurrence of the first byte with memchr on the contiguous part. */
        size_t idx = (r->head + i) % r->capacity;
        size_t span = r->capacity - idx;
        if (span > r->len - i)
            span = r->len - i;
        const uint8_t *hit = (const uint8_t *)memchr(r->data + idx, marker[0], span);
        if (hit == NULL) {
            i += span;
            continue;
        }
        i += (size_t)(hit - (r->data + idx));
        if (i + mlen > r->len)
            break;
        size_t k = 1;
        while (k < mlen && ring_at(r, i + k) == marker[k])
            k++;
        if (k == mlen) {
            found = 1;
            break;
        }
        i++;
    }
    if (found) {
        *scan_from = start + i;
    } else {
        size_t keep = mlen - 1;
        size_t resume = r->len > keep ? r->len - keep : 0;
        *scan_from = start + (resume > (size_t)(from - start) ? resume : (size_t)(from - start));
    }
    lsr_mutex_unlock(&r->mu);
    return found;
}

int lsr_ring_wait_readable(lsr_ring *r, int64_t deadline_ms)
{
    for (;;) {
        uint64_t seen = lsr_notify_seq(r->notify);
        size_t len;
        int eof;
        lsr_ring_stats(r, &len, NULL, NULL, &eof);
        if (len > 0 || eof)
            return 1;
        if (deadline_ms >= 0 && lsr_now_ms() >= deadline_ms)
            return 0;
        lsr_notify_wait(r->notify, seen, deadline_ms);
    }
}
