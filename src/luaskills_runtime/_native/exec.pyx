# cython: language_level=3
"""One-shot runs (native/exec.h) for luaskills_runtime.process_exec.  The C calls go through the
process module's exported entry points (process.pxd), so runs share its one copy of the process
core (drainer thread, teardown watchdog).  Every blocking call releases the GIL."""
import threading as _threading

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, int64_t
from libc.stdlib cimport free

from luaskills_runtime._native.c_exec cimport lsr_exec, lsr_exec_spec, lsr_exec_outcome
from luaskills_runtime._native.c_process cimport lsr_error, LSR_STDOUT, LSR_STDERR, LSR_UNKNOWN
from luaskills_runtime._native.c_ringbuf cimport lsr_ring, lsr_now_ms
from luaskills_runtime._native.process cimport (
    core_exec_start as lsr_exec_start, core_exec_pid as lsr_exec_pid,
    core_exec_wait as lsr_exec_wait, core_exec_kill as lsr_exec_kill,
    core_exec_finish as lsr_exec_finish, core_exec_stream as lsr_exec_stream,
    core_exec_release as lsr_exec_release, core_ring_stats, core_ring_drain as lsr_ring_drain,
    c_string_array,
)

# The waiting thread looks for pending signals (KeyboardInterrupt) this often.
cdef int64_t _EXEC_SLICE_MS = 100


class ExecSpawnError(Exception):
    """The child could not be started; ``str()`` is the core's text ("posix_spawn: ...")."""


class ExecWaitError(Exception):
    """Waiting for or ending the child failed: ``args == (message, timed_out)``."""


class ExecOutcome:
    """How a run ended: the root's status, whether the deadline passed, and all its output."""
    __slots__ = ("stdout", "stderr", "code", "success", "signal", "timed_out", "killed",
                 "status_lost")

    def __repr__(self):
        return (f"ExecOutcome(code={self.code!r}, success={self.success!r}, "
                f"signal={self.signal!r}, timed_out={self.timed_out!r}, killed={self.killed!r}, "
                f"stdout={len(self.stdout)} bytes, stderr={len(self.stderr)} bytes)")


cdef bytes _take_all(lsr_ring *ring):
    """Every byte held in a ring, as one bytes object (one copy)."""
    cdef size_t held
    core_ring_stats(ring, &held)
    if held == 0:
        return b""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, held)
    cdef size_t got = lsr_ring_drain(ring, <uint8_t *>PyBytes_AS_STRING(out), held)
    return out if got == held else out[:got]


cdef class ExecRun:
    """One child run to completion: started by the constructor, collected by ``finish()``.

    ``kill()`` (any thread) ends the tree early; ``close()`` frees the run and is implied when
    the object goes away.
    """
    cdef lsr_exec *run
    cdef readonly long long pid
    cdef object _lock
    cdef object __weakref__

    def __cinit__(self, bytes program not None, args, bytes cwd, env, bytes stdin,
                  int64_t timeout_ms, int64_t grace_ms):
        cdef list arg_list = [bytes(a) for a in args]
        cdef list env_list = None if env is None else [bytes(e) for e in env]
        cdef Py_ssize_t nargs = len(arg_list)
        cdef lsr_exec_spec spec
        cdef lsr_error err
        cdef int rc
        cdef const char **argv = c_string_array(arg_list)
        cdef const char **envp = NULL
        self._lock = _threading.Lock()
        try:
            if env_list is not None:
                envp = c_string_array(env_list)
            spec.program = PyBytes_AS_STRING(program)
            spec.args = argv
            spec.nargs = <size_t>nargs
            spec.cwd = NULL if cwd is None else PyBytes_AS_STRING(cwd)
            spec.env = envp
            spec.stdin_data = NULL
            spec.stdin_len = 0
            if stdin is not None:
                spec.stdin_data = <const uint8_t *>PyBytes_AS_STRING(stdin)
                spec.stdin_len = <size_t>PyBytes_GET_SIZE(stdin)
            spec.timeout_ms = timeout_ms
            spec.grace_ms = grace_ms
            with nogil:
                rc = lsr_exec_start(&spec, &self.run, &err)
        finally:
            free(argv)
            free(envp)
        if rc != 0:
            raise ExecSpawnError(err.message.decode("utf-8", "replace"))
        self.pid = lsr_exec_pid(self.run)

    def __dealloc__(self):
        if self.run != NULL:
            with nogil:
                lsr_exec_release(self.run)
            self.run = NULL

    def finish(self):
        """Wait for the run to complete (GIL released; interruptible by signals, which end the
        tree before the exception propagates), then return its :class:`ExecOutcome`."""
        cdef lsr_error err
        cdef lsr_exec_outcome o
        cdef int rc
        if self.run == NULL:
            raise ValueError("the exec run is closed")
        while True:
            with nogil:
                rc = lsr_exec_wait(self.run, lsr_now_ms() + _EXEC_SLICE_MS, &err)
            if rc == 1:
                break
            if rc < 0:
                message = err.message.decode("utf-8", "replace")
                self._end()
                raise ExecWaitError(message, False)
            try:
                PyErr_CheckSignals()
            except BaseException:
                self._end()
                raise
        with nogil:
            rc = lsr_exec_finish(self.run, &o, &err)
        if rc != 0:
            raise ExecWaitError(err.message.decode("utf-8", "replace"), False)
        outcome = ExecOutcome()
        outcome.stdout = _take_all(lsr_exec_stream(self.run, LSR_STDOUT))
        outcome.stderr = _take_all(lsr_exec_stream(self.run, LSR_STDERR))
        outcome.code = o.status.code if o.status.has_code else None
        outcome.success = o.status.success == 1
        outcome.signal = o.status.signal if o.status.signal else None
        outcome.timed_out = o.timed_out != 0
        outcome.killed = o.killed != 0
        outcome.status_lost = o.status.success == LSR_UNKNOWN
        return outcome

    cdef void _end(self):
        """Kill and collect after a failed wait, so nothing keeps running."""
        cdef lsr_exec_outcome o
        cdef lsr_error err
        try:
            self.kill()
        except ExecWaitError:
            pass   # finish below retries the teardown
        if self.run != NULL:
            with nogil:
                lsr_exec_finish(self.run, &o, &err)

    def kill(self):
        """End the whole tree now (any thread; idempotent).  False when the run is closed."""
        cdef lsr_error err
        cdef int rc
        with self._lock:
            if self.run == NULL:
                return False
            with nogil:
                rc = lsr_exec_kill(self.run, &err)
        if rc != 0:
            raise ExecWaitError(err.message.decode("utf-8", "replace"), False)
        return True

    def close(self):
        """Free the run (killing the tree if it still runs).  Idempotent."""
        cdef lsr_exec *run
        with self._lock:
            run = self.run
            self.run = NULL
        if run != NULL:
            with nogil:
                lsr_exec_release(run)
