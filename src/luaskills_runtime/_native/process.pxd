# The process core's C entry points that other extension modules use (exported through Cython's
# C API, so they run on this module's one copy of the core: one drainer thread, one watchdog).
from libc.stdint cimport uint8_t, int64_t

from luaskills_runtime._native.c_exec cimport lsr_exec, lsr_exec_spec, lsr_exec_outcome
from luaskills_runtime._native.c_process cimport lsr_error
from luaskills_runtime._native.c_ringbuf cimport lsr_ring

# native/exec.h, one to one (see that header for the error contracts)
cdef int core_exec_start(const lsr_exec_spec *spec, lsr_exec **out, lsr_error *err) noexcept nogil
cdef int64_t core_exec_pid(const lsr_exec *e) noexcept nogil
cdef int core_exec_wait(lsr_exec *e, int64_t until_ms, lsr_error *err) noexcept nogil
cdef int core_exec_kill(lsr_exec *e, lsr_error *err) noexcept nogil
cdef int core_exec_finish(lsr_exec *e, lsr_exec_outcome *out, lsr_error *err) noexcept nogil
cdef lsr_ring *core_exec_stream(lsr_exec *e, int which) noexcept nogil
cdef void core_exec_release(lsr_exec *e) noexcept nogil
# native/ringbuf.h, for the rings of a run
cdef void core_ring_stats(lsr_ring *r, size_t *held) noexcept nogil
cdef size_t core_ring_drain(lsr_ring *r, uint8_t *out, size_t max) noexcept nogil
# argv / envp arrays for a spawn spec (process sessions and exec build them the same way)
cdef const char **c_string_array(list items) except NULL
