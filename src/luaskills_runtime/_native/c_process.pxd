# C declarations of native/proc.h and native/proc_io.h (see those headers for error contracts).
from libc.stdint cimport uint8_t, uint64_t, int64_t

from luaskills_runtime._native.c_ringbuf cimport lsr_ring, lsr_notify

cdef extern from "proc_io.h" nogil:
    ctypedef struct lsr_error:
        int code
        char message[256]

    int LSR_STDOUT
    int LSR_STDERR
    int LSR_STDIN_PIPE
    int LSR_STDIN_NULL
    int LSR_UNKNOWN

    ctypedef struct lsr_proc_spec:
        const char *program
        const char *const *args
        size_t nargs
        const char *cwd
        const char *const *env
        size_t buffer_limit
        int stdin_mode

    ctypedef struct lsr_exit_status:
        int running
        int exited
        int success
        int has_code
        int code
        int signal

    ctypedef struct lsr_proc:
        pass

    int lsr_proc_spawn(const lsr_proc_spec *spec, lsr_proc **out, lsr_error *err)
    int64_t lsr_proc_pid(const lsr_proc *p)
    int lsr_proc_write(lsr_proc *p, const void *data, size_t n, lsr_error *err)
    void lsr_proc_close_stdin(lsr_proc *p)
    lsr_ring *lsr_proc_stream(lsr_proc *p, int which)
    lsr_notify *lsr_proc_notify(lsr_proc *p)
    void lsr_proc_wait_event(lsr_proc *p, uint64_t seen, int64_t deadline_ms)
    int lsr_proc_status(lsr_proc *p, lsr_exit_status *st, lsr_error *err)
    int lsr_proc_wait_exit(lsr_proc *p, int64_t deadline_ms, lsr_exit_status *st, lsr_error *err)
    int lsr_proc_terminate(lsr_proc *p, lsr_exit_status *final, lsr_error *err)
    void lsr_proc_free(lsr_proc *p)
    int lsr_proc_io_error(lsr_proc *p, lsr_error *err)
    int lsr_proc_debug_fail_drainer_malloc(int on)
    int LSR_PROC_TAG_MAX
    int lsr_proc_foreign_tag(char *tag, lsr_error *err)
    int lsr_proc_foreign_kill(long root, int root_unreaped, const char *tag, lsr_error *err)

    ctypedef struct lsr_marker:
        const uint8_t *bytes
        size_t len
        uint64_t scan_from

    int LSR_WAIT_TIMEOUT
    int LSR_WAIT_READY
    int LSR_WAIT_EOF
    int lsr_proc_wait_output(lsr_proc *p, lsr_marker *markers, int64_t deadline_ms)
    size_t lsr_ring_peek(lsr_ring *r, uint8_t *out, size_t max)
