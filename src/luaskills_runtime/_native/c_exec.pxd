# C declarations of native/exec.h (see that header for the error contract).
from libc.stdint cimport uint8_t, int64_t

from luaskills_runtime._native.c_ringbuf cimport lsr_ring
from luaskills_runtime._native.c_process cimport lsr_error, lsr_exit_status

cdef extern from "exec.h" nogil:
    ctypedef struct lsr_exec_spec:
        const char *program
        const char *const *args
        size_t nargs
        const char *cwd
        const char *const *env
        const uint8_t *stdin_data
        size_t stdin_len
        int64_t timeout_ms
        int64_t grace_ms

    ctypedef struct lsr_exec_outcome:
        lsr_exit_status status
        int timed_out
        int killed

    ctypedef struct lsr_exec:
        pass

    int lsr_exec_start(const lsr_exec_spec *spec, lsr_exec **out, lsr_error *err)
    int64_t lsr_exec_pid(const lsr_exec *e)
    int lsr_exec_wait(lsr_exec *e, int64_t until_ms, lsr_error *err)
    int lsr_exec_kill(lsr_exec *e, lsr_error *err)
    int lsr_exec_finish(lsr_exec *e, lsr_exec_outcome *out, lsr_error *err)
    lsr_ring *lsr_exec_stream(lsr_exec *e, int which)
    void lsr_exec_release(lsr_exec *e)
