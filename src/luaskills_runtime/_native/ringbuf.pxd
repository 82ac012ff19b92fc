from luaskills_runtime._native.c_ringbuf cimport lsr_ring

cdef class RingBuffer:
    cdef lsr_ring ring
    cdef bint ready
