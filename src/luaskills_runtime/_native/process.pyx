# cython: language_level=3
"""Managed child process (native/proc.h) for Python: the thin layer under
``luaskills_runtime.process``.  Every blocking call releases the GIL; errors are raised as
``LuaSkillsError("<op>: <syscall>: <reason>")`` with the caller's operation name."""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free

from luaskills_runtime._native.c_ringbuf cimport (
    lsr_ring, lsr_now_ms, lsr_ring_stats, lsr_ring_drain, lsr_notify_seq, lsr_notify_wait,
)
from luaskills_runtime._native.c_process cimport (
    lsr_error, lsr_proc, lsr_proc_spec, lsr_exit_status, lsr_marker,
    LSR_STDOUT, LSR_STDERR, LSR_STDIN_PIPE, LSR_STDIN_NULL, LSR_UNKNOWN, LSR_WAIT_TIMEOUT,
    lsr_proc_spawn, lsr_proc_pid, lsr_proc_write, lsr_proc_close_stdin, lsr_proc_stream,
    lsr_proc_notify, lsr_proc_status, lsr_proc_wait_exit, lsr_proc_terminate, lsr_proc_free,
    lsr_proc_wait_output, lsr_ring_peek,
)

from luaskills_runtime.errors import LuaSkillsError

# Timeouts beyond this many ms wait without a deadline (the monotonic clock cannot overflow).
cdef int64_t _FOREVER_MS = 1 << 52


cdef inline int64_t _deadline(object timeout_ms) except? -2:
    """Monotonic deadline for a timeout in ms (None or huge: none)."""
    if timeout_ms is None:
        return -1
    cdef double t = timeout_ms
    if t >= <double>_FOREVER_MS:
        return -1
    if t < 0:
        t = 0
    return lsr_now_ms() + <int64_t>t


cdef object _fail(str op, lsr_error *e):
    raise LuaSkillsError(f"{op}: {e.message.decode('utf-8', 'replace')}")


cdef dict _status_dict(lsr_exit_status *st):
    return {
        "running": st.running != 0,
        "exited": st.exited != 0,
        "success": None if st.success == LSR_UNKNOWN else st.success != 0,
        "code": st.code if st.has_code else None,
    }


cdef bytes _take(lsr_ring *ring, Py_ssize_t max_bytes):
    """Drains up to max_bytes from a ring into a new bytes object."""
    cdef size_t held
    lsr_ring_stats(ring, &held, NULL, NULL, NULL)
    if held == 0 or max_bytes <= 0:
        return b""
    cdef size_t want = held if <size_t>max_bytes > held else <size_t>max_bytes
    cdef bytes out = PyBytes_FromStringAndSize(NULL, want)
    cdef size_t got = lsr_ring_drain(ring, <uint8_t *>PyBytes_AS_STRING(out), want)
    return out if got == want else out[:got]


cdef inline void _set_marker(lsr_marker *m, bytes marker):
    m.scan_from = 0
    if marker is None:
        m.bytes = NULL
        m.len = 0
    else:
        m.bytes = <const uint8_t *>PyBytes_AS_STRING(marker)
        m.len = <size_t>PyBytes_GET_SIZE(marker)


cdef class NativeProcess:
    """One child process in its own process tree; stdout/stderr drained into bounded rings."""
    cdef lsr_proc *proc
    cdef readonly long long pid
    cdef object __weakref__

    def __cinit__(self, bytes program not None, args=(), bytes cwd=None,
                  Py_ssize_t buffer_limit=1048576, bint stdin_null=False, env=None,
                  str op="process.session.open"):
        cdef list arg_list = [bytes(a) for a in args]
        cdef list env_list = None if env is None else [bytes(e) for e in env]
        cdef Py_ssize_t nargs = len(arg_list)
        cdef Py_ssize_t nenv = 0 if env_list is None else len(env_list)
        cdef Py_ssize_t i
        cdef lsr_proc_spec spec
        cdef lsr_error err
        cdef int rc
        cdef const char **argv = NULL
        cdef const char **envp = NULL
        if buffer_limit <= 0:
            raise LuaSkillsError(f"{op}: buffer_limit_bytes must be a positive number, got number")
        argv = <const char **>malloc((nargs + 1) * sizeof(char *))
        if env_list is not None:
            envp = <const char **>malloc((nenv + 1) * sizeof(char *))
        if argv == NULL or (env_list is not None and envp == NULL):
            free(argv)
            free(envp)
            raise MemoryError()
        try:
            for i in range(nargs):
                argv[i] = PyBytes_AS_STRING(arg_list[i])
            argv[nargs] = NULL
            if envp != NULL:
                for i in range(nenv):
                    envp[i] = PyBytes_AS_STRING(env_list[i])
                envp[nenv] = NULL
            spec.program = PyBytes_AS_STRING(program)
            spec.args = argv
            spec.nargs = <size_t>nargs
            spec.cwd = NULL if cwd is None else PyBytes_AS_STRING(cwd)
            spec.env = envp
            spec.buffer_limit = <size_t>buffer_limit
            spec.stdin_mode = LSR_STDIN_NULL if stdin_null else LSR_STDIN_PIPE
            with nogil:
                rc = lsr_proc_spawn(&spec, &self.proc, &err)
        finally:
            free(argv)
            free(envp)
        if rc != 0:
            _fail(op, &err)
        self.pid = lsr_proc_pid(self.proc)

    def __dealloc__(self):
        # Last reference gone: end the tree (if close/kill did not) and release everything.
        if self.proc != NULL:
            with nogil:
                lsr_proc_free(self.proc)
            self.proc = NULL

    def write(self, bytes data not None, str op="process.session.write"):
        """Write all bytes to stdin (blocks while the pipe is full, GIL released)."""
        cdef lsr_error err
        cdef int rc
        cdef const char *src = PyBytes_AS_STRING(data)
        cdef size_t n = <size_t>PyBytes_GET_SIZE(data)
        with nogil:
            rc = lsr_proc_write(self.proc, src, n, &err)
        if rc != 0:
            _fail(op, &err)
        return True

    def close_stdin(self):
        lsr_proc_close_stdin(self.proc)

    def read(self, timeout_ms, Py_ssize_t max_bytes, bytes out_marker=None,
             bytes err_marker=None, bint use_markers=False):
        """Wait for output (or a marker per stream, or EOF of both, or the timeout), then drain up
        to max_bytes per stream.  Returns ``(stdout_bytes, stderr_bytes, timed_out)``."""
        cdef int64_t deadline = _deadline(timeout_ms)
        cdef lsr_marker markers[2]
        cdef lsr_marker *mp = NULL
        cdef int rc
        if use_markers:
            _set_marker(&markers[0], out_marker)
            _set_marker(&markers[1], err_marker)
            mp = markers
        with nogil:
            rc = lsr_proc_wait_output(self.proc, mp, deadline)
        return (_take(lsr_proc_stream(self.proc, LSR_STDOUT), max_bytes),
                _take(lsr_proc_stream(self.proc, LSR_STDERR), max_bytes),
                rc == LSR_WAIT_TIMEOUT)

    def drain(self, Py_ssize_t max_bytes):
        """Drain up to max_bytes per stream without waiting: ``(stdout_bytes, stderr_bytes)``."""
        return (_take(lsr_proc_stream(self.proc, LSR_STDOUT), max_bytes),
                _take(lsr_proc_stream(self.proc, LSR_STDERR), max_bytes))

    def peek(self, int which):
        """Copy of the bytes held for stream 1 (stdout) or 2 (stderr), left in place."""
        cdef lsr_ring *ring = lsr_proc_stream(self.proc, which)
        if ring == NULL:
            raise ValueError("stream must be 1 (stdout) or 2 (stderr)")
        cdef size_t held
        lsr_ring_stats(ring, &held, NULL, NULL, NULL)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, held)
        cdef size_t got = lsr_ring_peek(ring, <uint8_t *>PyBytes_AS_STRING(out), held)
        return out if got == held else out[:got]

    def streams(self):
        """``(notify_seq, stdout_held, stderr_held, stdout_eof, stderr_eof)``; take the sequence
        first so a later ``wait_change`` cannot miss what happened after this snapshot."""
        cdef uint64_t seq = lsr_notify_seq(lsr_proc_notify(self.proc))
        cdef size_t held_out, held_err
        cdef int eof_out, eof_err
        lsr_ring_stats(lsr_proc_stream(self.proc, LSR_STDOUT), &held_out, NULL, NULL, &eof_out)
        lsr_ring_stats(lsr_proc_stream(self.proc, LSR_STDERR), &held_err, NULL, NULL, &eof_err)
        return seq, held_out, held_err, bool(eof_out), bool(eof_err)

    def wait_change(self, uint64_t seen, int64_t deadline_ms):
        """Block (GIL released) until output, EOF or exit moved the sequence past ``seen`` or the
        monotonic deadline (``now_ms()`` based; negative = none) passed."""
        cdef uint64_t seq
        with nogil:
            seq = lsr_notify_wait(lsr_proc_notify(self.proc), seen, deadline_ms)
        return seq

    @staticmethod
    def now_ms():
        return lsr_now_ms()

    @staticmethod
    def deadline(timeout_ms):
        return _deadline(timeout_ms)

    def status(self, str op="process.session.status"):
        """Non-reaping status dict ``{running, exited, success, code}``."""
        cdef lsr_exit_status st
        cdef lsr_error err
        if lsr_proc_status(self.proc, &st, &err) != 0:
            _fail(op, &err)
        return _status_dict(&st)

    def wait_exit(self, timeout_ms, str op="process.session.status"):
        """Wait (GIL released, not reaping) until exit or timeout; returns the status dict."""
        cdef int64_t deadline = _deadline(timeout_ms)
        cdef lsr_exit_status st
        cdef lsr_error err
        cdef int rc
        with nogil:
            rc = lsr_proc_wait_exit(self.proc, deadline, &st, &err)
        if rc != 0:
            _fail(op, &err)
        return _status_dict(&st)

    def close(self, timeout_ms, str op="process.session.close"):
        """Close stdin, wait up to timeout_ms for exit, then end the tree; final status dict."""
        cdef int64_t deadline = _deadline(timeout_ms)
        cdef lsr_exit_status st
        cdef lsr_error err
        cdef int rc
        lsr_proc_close_stdin(self.proc)
        with nogil:
            rc = lsr_proc_wait_exit(self.proc, deadline, &st, &err)
        if rc != 0:
            _fail(op, &err)
        with nogil:
            rc = lsr_proc_terminate(self.proc, &st, &err)
        if rc != 0:
            _fail(op, &err)
        return _status_dict(&st)

    def terminate(self, str op="process.session.kill"):
        """End the whole tree and reap once (idempotent); final status dict."""
        cdef lsr_exit_status st
        cdef lsr_error err
        cdef int rc
        with nogil:
            rc = lsr_proc_terminate(self.proc, &st, &err)
        if rc != 0:
            _fail(op, &err)
        return _status_dict(&st)

include "exec.pxi"
