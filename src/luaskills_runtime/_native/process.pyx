# cython: language_level=3
"""Managed child process (native/proc.h) for Python: the core under
``luaskills_runtime.process.ProcessSession``.

``ProcessCore`` owns one ``lsr_proc``.  Its ``write``/``read``/``status``/``kill`` handle the
common calls (a UTF-8 string, plain positive ints, a marker already planned) without a Python
frame; everything else goes to hooks the Python subclass implements (``_write_values``,
``_read_slow``), where the reference's validation and text-encoding rules live.  Every blocking
call releases the GIL; errors are ``LuaSkillsError("<op>: <syscall>: <reason>")``.
"""
from cpython.exc cimport PyErr_CheckSignals
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_AsUTF8String
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free

from luaskills_runtime._native.c_ringbuf cimport (
    lsr_debug_live_counts,
    lsr_ring, lsr_now_ms, lsr_ring_stats, lsr_ring_drain, lsr_notify_seq, lsr_notify_set_wake_fd,
)
from luaskills_runtime._native.c_process cimport (
    lsr_error, lsr_proc, lsr_proc_spec, lsr_exit_status, lsr_marker,
    LSR_STDOUT, LSR_STDERR, LSR_STDIN_PIPE, LSR_STDIN_NULL, LSR_UNKNOWN, LSR_WAIT_TIMEOUT,
    LSR_WAIT_EOF, lsr_proc_io_error, lsr_proc_debug_fail_drainer_malloc,
    lsr_proc_spawn, lsr_proc_pid, lsr_proc_write, lsr_proc_close_stdin, lsr_proc_stream,
    lsr_proc_notify, lsr_proc_status, lsr_proc_wait_exit, lsr_proc_terminate, lsr_proc_free,
    lsr_proc_wait_output, lsr_proc_wait_event, lsr_ring_peek, lsr_proc_foreign_tag,
    lsr_proc_foreign_kill,
)

from luaskills_runtime._native.c_exec cimport (
    lsr_exec, lsr_exec_spec, lsr_exec_outcome, lsr_exec_start, lsr_exec_pid, lsr_exec_wait,
    lsr_exec_kill, lsr_exec_finish, lsr_exec_stream, lsr_exec_release,
)

from luaskills_runtime.errors import LuaSkillsError

# Timeouts beyond this many ms wait without a deadline (the monotonic clock cannot overflow).
cdef int64_t _FOREVER_MS = 1 << 52
cdef Py_ssize_t _SSIZE_MAX = <Py_ssize_t>(<size_t>-1 >> 1)

cdef str _OPEN = "process.session.open"
cdef str _WRITE = "process.session.write"
cdef str _STATUS = "process.session.status"
cdef str _CLOSE = "process.session.close"
cdef str _KILL = "process.session.kill"


# Blocking waits return to Python this often so signals (Ctrl-C) are handled promptly.
cdef int64_t _SIGNAL_SLICE_MS = 50


cdef inline int64_t _slice_end(int64_t deadline) noexcept nogil:
    """The end of the next wait slice: the deadline, or at most _SIGNAL_SLICE_MS from now."""
    cdef int64_t soon = lsr_now_ms() + _SIGNAL_SLICE_MS
    return soon if deadline < 0 or deadline > soon else deadline


cdef inline bint _before(int64_t deadline) noexcept nogil:
    return deadline < 0 or lsr_now_ms() < deadline


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


def _debug_fail_drainer_malloc(bint on=True):
    """LSR_DEBUG builds: the next start of the drainer thread fails to allocate its buffer (fault
    injection for tests).  Returns False in other builds, where nothing changes."""
    return lsr_proc_debug_fail_drainer_malloc(on) == 0


def foreign_tree_tag():
    """A new "NAME=VALUE" environment entry marking a tree started outside the process core
    (io.popen, os.execute through subprocess), for :func:`kill_foreign_tree`; "" where escaped
    descendants are not tracked (POSIX without /proc).  Not on Windows (LuaSkillsError)."""
    cdef char tag[64]   # LSR_PROC_TAG_MAX
    cdef lsr_error err
    if lsr_proc_foreign_tag(tag, &err) != 0:
        _fail("process.tree", &err)
    return tag.decode("ascii")


def kill_foreign_tree(long root, bint root_unreaped, str tag):
    """Kill every live descendant of `root` (not the root itself) by parent links (while it is
    still our unreaped child) and by `tag`, as the process core's own teardown does; call it
    before killing and reaping the root.  Blocks at most about 500 ms, without the GIL."""
    cdef bytes tag_bytes = tag.encode("ascii")
    cdef const char *c_tag = tag_bytes
    cdef lsr_error err
    cdef int rc
    with nogil:
        rc = lsr_proc_foreign_kill(root, root_unreaped, c_tag, &err)
    if rc != 0:
        _fail("process.tree", &err)


cdef const char **c_string_array(list items) except NULL:
    """A malloc'd, NULL-terminated array of the buffers of `items` (bytes objects, borrowed: the
    list must outlive the array); the caller free()s it.  MemoryError when malloc fails."""
    cdef Py_ssize_t n = len(items)
    cdef Py_ssize_t i
    cdef const char **out = <const char **>malloc((n + 1) * sizeof(char *))
    if out == NULL:
        raise MemoryError()
    for i in range(n):
        out[i] = PyBytes_AS_STRING(items[i])
    out[n] = NULL
    return out


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


cdef inline void _set_marker(lsr_marker *m, object marker):
    m.scan_from = 0
    if marker is None:
        m.bytes = NULL
        m.len = 0
    else:
        m.bytes = <const uint8_t *>PyBytes_AS_STRING(marker)
        m.len = <size_t>PyBytes_GET_SIZE(marker)


cdef object _utf8_or_none(bytes data):
    """Strict UTF-8 text of data, or None when it is not valid UTF-8."""
    if PyBytes_GET_SIZE(data) == 0:
        return ""
    try:
        return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), NULL)
    except UnicodeDecodeError:
        return None


cdef class ProcessCore:
    """One child process in its own process tree; stdout/stderr drained into bounded rings.

    Created empty; ``_spawn`` starts the child.  The last reference going away ends the tree.
    """
    cdef lsr_proc *proc
    cdef readonly long long pid
    cdef object __weakref__
    cdef bint utf8_out, utf8_err, utf8_in
    cdef object decoder
    # until_text -> (True, stdout_marker, stderr_marker) | (False, marker_text); filled by the
    # subclass's planning so repeated markers skip it
    cdef readonly dict marker_plans

    def __cinit__(self, *args, **kwargs):
        self.proc = NULL
        self.marker_plans = {}

    def __dealloc__(self):
        # Last reference gone: end the tree (if close/kill did not) and release everything.
        if self.proc != NULL:
            with nogil:
                lsr_proc_free(self.proc)
            self.proc = NULL

    def _spawn(self, bytes program not None, args=(), bytes cwd=None,
               Py_ssize_t buffer_limit=1048576, bint stdin_null=False, env=None,
               str op=_OPEN):
        """Start the child: program and args are UTF-8 bytes, env a list of b"K=V" or None."""
        if self.proc != NULL:
            raise LuaSkillsError(f"{op}: session already started")
        cdef list arg_list = [bytes(a) for a in args]
        cdef list env_list = None if env is None else [bytes(e) for e in env]
        cdef Py_ssize_t nargs = len(arg_list)
        cdef lsr_proc_spec spec
        cdef lsr_error err
        cdef int rc
        cdef lsr_proc *proc = NULL
        cdef const char **argv = NULL
        cdef const char **envp = NULL
        if buffer_limit <= 0:
            raise LuaSkillsError(f"{op}: buffer_limit_bytes must be a positive number, got number")
        argv = c_string_array(arg_list)
        try:
            if env_list is not None:
                envp = c_string_array(env_list)
            spec.program = PyBytes_AS_STRING(program)
            spec.args = argv
            spec.nargs = <size_t>nargs
            spec.cwd = NULL if cwd is None else PyBytes_AS_STRING(cwd)
            spec.env = envp
            spec.buffer_limit = <size_t>buffer_limit
            spec.stdin_mode = LSR_STDIN_NULL if stdin_null else LSR_STDIN_PIPE
            with nogil:
                rc = lsr_proc_spawn(&spec, &proc, &err)
        finally:
            free(argv)
            free(envp)
        if rc != 0:
            _fail(op, &err)
        self.proc = proc
        self.pid = lsr_proc_pid(proc)

    cdef inline int _check(self) except -1:
        if self.proc == NULL:
            raise LuaSkillsError("process session was never started")
        return 0

    def _set_text(self, bint utf8_out, bint utf8_err, bint utf8_in, decoder):
        """How reads decode and writes encode: per stream whether its mode is UTF-8, and the
        fallback ``decoder(data, index) -> (text, encoding, lossy, base64)`` (0 stdout, 1 stderr)."""
        self.utf8_out = utf8_out
        self.utf8_err = utf8_err
        self.utf8_in = utf8_in
        self.decoder = decoder

    # ---- stdin ----------------------------------------------------------------------------

    def write(self, *values):
        """Write values to stdin; True.  A single UTF-8 string goes straight through."""
        cdef object data
        self._check()
        if len(values) == 1 and type(values[0]) is str and self.utf8_in:
            try:
                data = PyUnicode_AsUTF8String(values[0])
            except UnicodeEncodeError:
                pass   # lone surrogates: the general path words the error
            else:
                return self._c_write(data, _WRITE)
        return self._write_values(values)

    def _write_values(self, values):
        raise NotImplementedError

    def _write_bytes(self, bytes data not None, str op=_WRITE):
        """Write all bytes to stdin (blocks while the pipe is full, GIL released)."""
        self._check()
        return self._c_write(data, op)

    cdef object _c_write(self, bytes data, str op):
        cdef lsr_error err
        cdef int rc
        cdef const char *src = PyBytes_AS_STRING(data)
        cdef size_t n = <size_t>PyBytes_GET_SIZE(data)
        with nogil:
            rc = lsr_proc_write(self.proc, src, n, &err)
        if rc != 0:
            _fail(op, &err)
        return True

    def _close_stdin(self):
        self._check()
        lsr_proc_close_stdin(self.proc)

    # ---- output ---------------------------------------------------------------------------

    def read(self, timeout_ms=100, max_bytes=65536, until_text=None):
        """Wait until there is output (or ``until_text`` was seen in stdout or stderr), both
        streams ended, or ``timeout_ms`` passed; then take up to ``max_bytes`` per stream.
        Returns the reference's read dict."""
        cdef tuple plan
        self._check()
        if (type(timeout_ms) is int and timeout_ms > 0 and type(max_bytes) is int
                and 0 < max_bytes <= _SSIZE_MAX):
            if until_text is None:
                return self._c_read(_deadline(timeout_ms), max_bytes, None, None, False)
            if type(until_text) is str:
                plan = self.marker_plans.get(until_text)
                if plan is not None and plan[0]:
                    return self._c_read(_deadline(timeout_ms), max_bytes, plan[1], plan[2], True)
        return self._read_slow(timeout_ms, max_bytes, until_text)

    def _read_slow(self, timeout_ms, max_bytes, until_text):
        raise NotImplementedError

    def _read_text(self, timeout_ms, Py_ssize_t max_bytes, object out_marker=None,
                   object err_marker=None, bint use_markers=False):
        """Wait (GIL released) for output, a byte marker per stream (None: that stream never
        matches), EOF of both, or the timeout; drain and decode into the read dict."""
        self._check()
        if out_marker is not None and type(out_marker) is not bytes:
            raise TypeError("out_marker must be bytes or None")
        if err_marker is not None and type(err_marker) is not bytes:
            raise TypeError("err_marker must be bytes or None")
        return self._c_read(_deadline(timeout_ms), max_bytes, out_marker, err_marker, use_markers)

    cdef dict _c_read(self, int64_t deadline, Py_ssize_t max_bytes, object out_marker,
                      object err_marker, bint use_markers):
        cdef lsr_marker markers[2]
        cdef lsr_marker *mp = NULL
        cdef int rc
        if use_markers:
            _set_marker(&markers[0], out_marker)
            _set_marker(&markers[1], err_marker)
            mp = markers
        cdef lsr_error err
        while True:  # in slices, handling signals between them (markers keep their scan offsets)
            with nogil:
                rc = lsr_proc_wait_output(self.proc, mp, _slice_end(deadline))
            if rc != LSR_WAIT_TIMEOUT or not _before(deadline):
                break
            PyErr_CheckSignals()
        if rc == LSR_WAIT_EOF and lsr_proc_io_error(self.proc, &err) != 0:
            _fail("process.session.read", &err)
        return self._result(_take(lsr_proc_stream(self.proc, LSR_STDOUT), max_bytes),
                            _take(lsr_proc_stream(self.proc, LSR_STDERR), max_bytes),
                            rc == LSR_WAIT_TIMEOUT)

    def _drain_text(self, Py_ssize_t max_bytes, bint timed_out):
        """Drain without waiting into the read dict."""
        self._check()
        return self._result(_take(lsr_proc_stream(self.proc, LSR_STDOUT), max_bytes),
                            _take(lsr_proc_stream(self.proc, LSR_STDERR), max_bytes),
                            timed_out)

    cdef dict _result(self, bytes out, bytes err, bint timed_out):
        cdef object out_text = _utf8_or_none(out) if self.utf8_out else None
        cdef object err_text = _utf8_or_none(err) if self.utf8_err else None
        if out_text is not None and err_text is not None:   # the common case
            return {
                "stdout": out_text, "stderr": err_text,
                "stdout_encoding": "utf-8", "stderr_encoding": "utf-8",
                "stdout_lossy": False, "stderr_lossy": False,
                "stdout_base64": None, "stderr_base64": None,
                "timed_out": timed_out,
            }
        cdef tuple o = (out_text, "utf-8", False, None) if out_text is not None \
            else tuple(self.decoder(out, 0))
        cdef tuple e = (err_text, "utf-8", False, None) if err_text is not None \
            else tuple(self.decoder(err, 1))
        return {
            "stdout": o[0], "stderr": e[0],
            "stdout_encoding": o[1], "stderr_encoding": e[1],
            "stdout_lossy": o[2], "stderr_lossy": e[2],
            "stdout_base64": o[3], "stderr_base64": e[3],
            "timed_out": timed_out,
        }

    def _peek(self, int which):
        """Copy of the bytes held for stream 1 (stdout) or 2 (stderr), left in place."""
        self._check()
        cdef lsr_ring *ring = lsr_proc_stream(self.proc, which)
        if ring == NULL:
            raise ValueError("stream must be 1 (stdout) or 2 (stderr)")
        cdef size_t held
        lsr_ring_stats(ring, &held, NULL, NULL, NULL)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, held)
        cdef size_t got = lsr_ring_peek(ring, <uint8_t *>PyBytes_AS_STRING(out), held)
        return out if got == held else out[:got]

    def _set_wake_fd(self, int fd):
        """POSIX: write a byte to ``fd`` (a non-blocking pipe's write end) whenever output, EOF or
        the exit arrives, so an event loop can wait on the pipe; -1 stops (then the pipe may be
        closed).  Raises OSError on Windows."""
        self._check()
        cdef int rc = lsr_notify_set_wake_fd(lsr_proc_notify(self.proc), fd)
        if rc != 0:
            raise OSError(rc, "lsr_notify_set_wake_fd: not supported on this platform")

    def _streams(self):
        """``(notify_seq, stdout_held, stderr_held, stdout_eof, stderr_eof)``; the sequence is
        taken first so a later ``_wait_change`` cannot miss what happened after this snapshot."""
        self._check()
        cdef uint64_t seq = lsr_notify_seq(lsr_proc_notify(self.proc))
        cdef size_t held_out, held_err
        cdef int eof_out, eof_err
        lsr_ring_stats(lsr_proc_stream(self.proc, LSR_STDOUT), &held_out, NULL, NULL, &eof_out)
        lsr_ring_stats(lsr_proc_stream(self.proc, LSR_STDERR), &held_err, NULL, NULL, &eof_err)
        return seq, held_out, held_err, bool(eof_out), bool(eof_err)

    def _wait_change(self, uint64_t seen, int64_t deadline_ms):
        """Block (GIL released) until output, EOF or exit moved the sequence past ``seen`` or
        the monotonic deadline (``_deadline()`` based; negative = none) passed."""
        self._check()
        with nogil:
            lsr_proc_wait_event(self.proc, seen, deadline_ms)
        return lsr_notify_seq(lsr_proc_notify(self.proc))

    @staticmethod
    def _now_ms():
        return lsr_now_ms()

    @staticmethod
    def _deadline(timeout_ms):
        return _deadline(timeout_ms)

    # ---- lifecycle --------------------------------------------------------------------------

    def status(self):
        """``{running, exited, success, code}`` without reaping the child (a signal death has
        success False and code None)."""
        cdef lsr_exit_status st
        cdef lsr_error err
        self._check()
        if lsr_proc_status(self.proc, &st, &err) != 0:
            _fail(_STATUS, &err)
        return _status_dict(&st)

    def _wait_exit(self, timeout_ms, str op=_STATUS):
        """Wait (GIL released, not reaping) until exit or timeout; the status dict."""
        cdef int64_t deadline = _deadline(timeout_ms)
        cdef lsr_exit_status st
        cdef lsr_error err
        cdef int rc
        self._check()
        while True:  # in slices, handling signals between them
            with nogil:
                rc = lsr_proc_wait_exit(self.proc, _slice_end(deadline), &st, &err)
            if rc != 0 or st.exited or not _before(deadline):
                break
            PyErr_CheckSignals()
        if rc != 0:
            _fail(op, &err)
        return _status_dict(&st)

    def _close(self, timeout_ms, str op=_CLOSE):
        """Close stdin, wait up to timeout_ms for exit, then end the tree; final status dict."""
        cdef int64_t deadline = _deadline(timeout_ms)
        cdef lsr_exit_status st
        cdef lsr_error err
        cdef int rc
        self._check()
        lsr_proc_close_stdin(self.proc)
        while True:  # in slices, handling signals between them (Ctrl-C still ends the tree)
            with nogil:
                rc = lsr_proc_wait_exit(self.proc, _slice_end(deadline), &st, &err)
            if rc != 0 or st.exited or not _before(deadline):
                break
            try:
                PyErr_CheckSignals()
            except BaseException:
                with nogil:
                    lsr_proc_terminate(self.proc, &st, &err)
                raise
        if rc != 0:
            _fail(op, &err)
        with nogil:
            rc = lsr_proc_terminate(self.proc, &st, &err)
        if rc != 0:
            _fail(op, &err)
        return _status_dict(&st)

    def _terminate(self, str op=_KILL):
        """End the whole tree and reap once (idempotent); final status dict."""
        cdef lsr_exit_status st
        cdef lsr_error err
        cdef int rc
        self._check()
        with nogil:
            rc = lsr_proc_terminate(self.proc, &st, &err)
        if rc != 0:
            _fail(op, &err)
        return _status_dict(&st)

    def kill(self):
        """Kill the whole tree now and reap it (idempotent); True."""
        self._terminate(_KILL)
        return True


# ---- C entry points for the exec module (declared in process.pxd) ---------------------------

cdef int core_exec_start(const lsr_exec_spec *spec, lsr_exec **out, lsr_error *err) noexcept nogil:
    return lsr_exec_start(spec, out, err)

cdef int64_t core_exec_pid(const lsr_exec *e) noexcept nogil:
    return lsr_exec_pid(e)

cdef int core_exec_wait(lsr_exec *e, int64_t until_ms, lsr_error *err) noexcept nogil:
    return lsr_exec_wait(e, until_ms, err)

cdef int core_exec_kill(lsr_exec *e, lsr_error *err) noexcept nogil:
    return lsr_exec_kill(e, err)

cdef int core_exec_finish(lsr_exec *e, lsr_exec_outcome *out, lsr_error *err) noexcept nogil:
    return lsr_exec_finish(e, out, err)

cdef lsr_ring *core_exec_stream(lsr_exec *e, int which) noexcept nogil:
    return lsr_exec_stream(e, which)

cdef void core_exec_release(lsr_exec *e) noexcept nogil:
    lsr_exec_release(e)

cdef void core_ring_stats(lsr_ring *r, size_t *held) noexcept nogil:
    lsr_ring_stats(r, held, NULL, NULL, NULL)

cdef size_t core_ring_drain(lsr_ring *r, uint8_t *out, size_t max) noexcept nogil:
    return lsr_ring_drain(r, out, max)


def _debug_live_counts():
    """LSR_DEBUG builds: (notifiers, rings, processes) of this module's copy of the native core
    that are alive now; None in other builds."""
    cdef long counts[3]
    if lsr_debug_live_counts(counts) != 0:
        return None
    return (counts[0], counts[1], counts[2])
