# cython: language_level=3
"""Bounded byte ring buffer (native/ringbuf.c) for Python: keeps the newest ``capacity`` bytes."""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.string cimport strerror

from luaskills_runtime._native.c_ringbuf cimport (
    lsr_debug_live_counts,
    lsr_now_ms, lsr_ring_init, lsr_ring_destroy, lsr_ring_append, lsr_ring_drain, lsr_ring_set_eof,
    lsr_ring_stats, lsr_ring_find, lsr_ring_wait_readable,
)


cdef class RingBuffer:
    """Thread-safe bounded byte buffer.

    ``append`` never blocks on a full buffer: the oldest bytes are dropped.  ``drain`` removes up
    to ``max_bytes`` from the oldest end.  ``wait_readable`` blocks (GIL released) until bytes or
    EOF arrive.  ``find`` searches incrementally for a marker across append boundaries.
    """

    def __cinit__(self, Py_ssize_t capacity):
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive number, got {capacity}")
        cdef int rc = lsr_ring_init(&self.ring, <size_t>capacity, NULL)
        if rc != 0:
            if rc == 12:
                raise MemoryError(f"ring buffer of {capacity} bytes")
            raise OSError(rc, f"lsr_ring_init: {strerror(rc).decode()}")
        self.ready = True

    def __dealloc__(self):
        if self.ready:
            lsr_ring_destroy(&self.ring)
            self.ready = False

    def append(self, const uint8_t[::1] data):
        cdef size_t n = data.shape[0]
        if n == 0:
            return
        with nogil:
            lsr_ring_append(&self.ring, &data[0], n)

    def drain(self, Py_ssize_t max_bytes=-1):
        """Remove and return up to max_bytes (all when negative) from the oldest end."""
        cdef size_t held
        lsr_ring_stats(&self.ring, &held, NULL, NULL, NULL)
        cdef size_t want = held if max_bytes < 0 or <size_t>max_bytes > held else <size_t>max_bytes
        out = PyBytes_FromStringAndSize(NULL, want)
        cdef uint8_t *dst = <uint8_t *>PyBytes_AS_STRING(out)
        cdef size_t got
        with nogil:
            got = lsr_ring_drain(&self.ring, dst, want)
        if got != want:  # another thread drained concurrently
            return out[:got]
        return out

    def set_eof(self):
        lsr_ring_set_eof(&self.ring)

    def find(self, const uint8_t[::1] marker, uint64_t scan_from=0):
        """Search held bytes for marker from absolute offset scan_from.

        Returns ``(found, offset)``: the marker's absolute offset when found, else where the next
        search should resume."""
        cdef uint64_t pos = scan_from
        cdef size_t mlen = marker.shape[0]
        cdef const uint8_t *mp = &marker[0] if mlen else <const uint8_t *>b""
        cdef int found
        with nogil:
            found = lsr_ring_find(&self.ring, mp, mlen, &pos)
        return bool(found), pos

    def wait_readable(self, timeout_ms=None):
        """Block until bytes or EOF are there; False when timeout_ms passed first."""
        cdef int64_t deadline = -1
        if timeout_ms is not None:
            if timeout_ms < 0:
                raise ValueError("timeout_ms must not be negative")
            deadline = lsr_now_ms() + <int64_t>timeout_ms
        cdef int ok
        with nogil:
            ok = lsr_ring_wait_readable(&self.ring, deadline)
        return bool(ok)

    def __len__(self):
        cdef size_t held
        lsr_ring_stats(&self.ring, &held, NULL, NULL, NULL)
        return held

    @property
    def capacity(self):
        return self.ring.limit

    def stats(self):
        """``(held, total_appended, dropped, eof)`` under one lock."""
        cdef size_t held
        cdef uint64_t total, dropped
        cdef int eof
        lsr_ring_stats(&self.ring, &held, &total, &dropped, &eof)
        return held, total, dropped, bool(eof)


def _debug_live_counts():
    """LSR_DEBUG builds: (notifiers, rings, processes) of this module's copy of the native core
    that are alive now; None in other builds."""
    cdef long counts[3]
    if lsr_debug_live_counts(counts) != 0:
        return None
    return (counts[0], counts[1], counts[2])
