"""Managed `io` compatibility library (SPEC 4) for runlua and lease VMs.

``install_managed_io(vm)`` replaces the VM's global ``io``, ``package.loaded.io`` and
``package.preload.io`` with the managed library (vulcan/chunks/managed_io.lua) unless the host
set ``enable_managed_io_compat=False``.  File handles and their buffering live in Lua; this module
supplies the byte-level primitives over handle ids, and owns every file and child process the
Lua code opened, so the VM's owner can close them all (``reset_managed_io`` at the end of a
runlua request; ``vm.close()`` for any VM, through ``vm.track``).  The owner hands in a limits
provider (its guard control's ``current_limits``) instead of this module reaching for the guard.

``io.popen(command)`` (luaskills_runtime.process.pipe.ShellPipe) runs the command through the
shell with its stdout piped to us, stdin from
the null device (a child must not read the host's own stdin), in its own process group.  Reads
and ``close()`` respect the deadline and cancel state of the guarded run in progress: when it
passes, the whole group is killed and reaped and the read raises the run's timeout message.
``close()`` closes our end, waits for the exit status (``true|nil, "exit"|"signal", code``, as
Lua 5.2 reports it) and kills whatever the group left behind.
"""
from __future__ import annotations

import errno as errno_codes
import io as pyio
import os
import re
import sys
import tempfile
import threading
from typing import Callable, Dict, Optional

from luaskills_runtime.lua.chunk_files import read_chunk
from luaskills_runtime._ref.lua_args import lua_type_name, require_path, require_string
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.process.pipe import ShellPipe
from luaskills_runtime.vulcan.bounded_files import open_file
from luaskills_runtime.vulcan.output import OutputSink

_SOURCE = read_chunk("luaskills_runtime.vulcan", "managed_io.lua")
_MODE = re.compile(r"[rwa]\+?b*")
_PY_MODES = {"r": "rb", "w": "wb", "a": "ab", "r+": "r+b", "w+": "w+b", "a+": "a+b"}
_WHENCE = {b"set": os.SEEK_SET, b"cur": os.SEEK_CUR, b"end": os.SEEK_END}

# The guarded run's ExecutionLimits (luaskills_runtime.lua.guard) or None between runs.
LimitsProvider = Callable[[], Optional[object]]


def _os_failure(error: OSError, prefix: Optional[str] = None):
    """(nil, message, errno) the way Lua's io library reports a failed call."""
    code = error.errno if error.errno is not None else 0
    text = error.strerror or str(error)
    message = f"{prefix}: {text}" if prefix else text
    return (None, message.encode("utf-8", "surrogateescape"), code)


_BAD_FD = (None, os.strerror(errno_codes.EBADF).encode(), errno_codes.EBADF)


def _mode_text(value, fn: str) -> str:
    if not isinstance(value, bytes):
        raise LuaSkillsError(f"vulcan.io.{fn}: mode must be a string, got {lua_type_name(value)}")
    return value.decode("utf-8", "replace")


class _StdStream:
    """One of the host process's standard streams, looked up at each call (hosts and test
    harnesses replace sys.stdout); stdout and stderr writes go to the host's output sink."""

    def __init__(self, name: str, sink: Optional[OutputSink] = None):
        self.name = name
        self.sink = sink

    def _stream(self):
        stream = getattr(sys, self.name, None)
        if stream is None:
            raise OSError(errno_codes.EBADF, os.strerror(errno_codes.EBADF))
        return getattr(stream, "buffer", stream)

    def read1(self, size: int) -> bytes:
        stream = self._stream()
        reader = getattr(stream, "read1", None) or stream.read
        data = reader(size)
        return data.encode("utf-8") if isinstance(data, str) else data

    def write(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.write(self.name, data)
            return
        stream = self._stream()
        if isinstance(stream, pyio.TextIOBase):
            stream.write(data.decode("utf-8", "replace"))
        else:
            stream.write(data)

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.flush(self.name)
            return
        self._stream().flush()

    def seek(self, offset, whence):
        raise OSError(errno_codes.ESPIPE, os.strerror(errno_codes.ESPIPE))


class ManagedIo:
    """The files and pipes one VM's managed io has open, by handle id (0-2: standard streams)."""

    def __init__(self, limits: LimitsProvider, sink: Optional[OutputSink] = None, policy=None):
        self._limits = limits
        self.policy = policy   # the VM's PolicyControls (luaskills_runtime.lua.policy)
        self._lock = threading.Lock()  # kill() may come from another thread (engine close)
        self._handles: Dict[int, object] = {0: _StdStream("stdin"), 1: _StdStream("stdout", sink),
                                            2: _StdStream("stderr", sink)}
        self._next_id = 3
        self.lua_reset = None

    def _add(self, handle) -> int:
        with self._lock:
            handle_id = self._next_id
            self._next_id += 1
            self._handles[handle_id] = handle
            return handle_id

    def _get(self, handle_id):
        handle = self._handles.get(handle_id)
        if handle is None:
            raise LuaSkillsError("attempt to use a closed file")
        return handle

    @property
    def open_count(self) -> int:
        return len(self._handles) - 3

    # -- primitives called from managed_io.lua -----------------------------------------------
    def open(self, path=None, mode=None, fn=b"open"):
        fn_name = fn.decode() if isinstance(fn, bytes) else "open"
        name = require_path(path, f"vulcan.io.{fn_name}", "path")
        if self.policy is not None:
            self.policy.check_path(f"io.{fn_name}", name)
        mode_text = _mode_text(mode, fn_name)
        if not _MODE.fullmatch(mode_text):
            raise LuaSkillsError(f"vulcan.io.{fn_name}: invalid mode `{mode_text}`")
        try:
            handle = open_file(name, _PY_MODES[mode_text.rstrip("b")], self._limits())
        except OSError as error:
            return _os_failure(error, name)
        return self._add(handle)

    def tmpfile(self):
        try:
            return self._add(tempfile.TemporaryFile("w+b"))
        except OSError as error:
            return _os_failure(error)

    def popen(self, command=None, mode=None):
        if self.policy is not None:
            self.policy.check_process("io.popen")
        text = require_string(command, "vulcan.io.popen", "command")
        mode_text = _mode_text(mode, "popen")
        if mode_text.startswith("w"):
            raise LuaSkillsError("vulcan.io.popen: write mode is not implemented yet")
        if not re.fullmatch(r"rb?", mode_text):
            raise LuaSkillsError(f"vulcan.io.popen: invalid mode `{mode_text}`")
        try:
            return self._add(ShellPipe(text))
        except OSError as error:
            return _os_failure(error, text)

    def read(self, handle_id, size):
        handle = self._get(handle_id)
        try:
            if isinstance(handle, ShellPipe):
                return handle.read1(int(size), self._limits())
            return handle.read1(int(size))
        except pyio.UnsupportedOperation:
            return _BAD_FD
        except OSError as error:
            return _os_failure(error)

    def write(self, handle_id, data, unread=0):
        handle = self._get(handle_id)
        try:
            if unread:
                handle.seek(-int(unread), os.SEEK_CUR)
            handle.write(data)
        except pyio.UnsupportedOperation:
            return _BAD_FD
        except OSError as error:
            return _os_failure(error)
        return True

    def seek(self, handle_id, whence, offset, unread=0):
        handle = self._get(handle_id)
        how = _WHENCE[whence]
        amount = int(offset) - (int(unread) if how == os.SEEK_CUR else 0)
        try:
            return handle.seek(amount, how)
        except pyio.UnsupportedOperation:
            return _os_failure(OSError(errno_codes.ESPIPE, os.strerror(errno_codes.ESPIPE)))
        except (OSError, ValueError) as error:
            if isinstance(error, ValueError):
                error = OSError(errno_codes.EINVAL, os.strerror(errno_codes.EINVAL))
            return _os_failure(error)

    def flush(self, handle_id):
        handle = self._get(handle_id)
        try:
            handle.flush()
        except OSError as error:
            return _os_failure(error)
        return True

    def close(self, handle_id):
        with self._lock:
            handle = self._handles.pop(handle_id, None)
        if handle is None:
            raise LuaSkillsError("attempt to use a closed file")
        if isinstance(handle, ShellPipe):
            return handle.close(self._limits())
        try:
            handle.close()
        except OSError as error:
            return _os_failure(error)
        return True

    def release(self, handle_id):
        """A handle was garbage-collected without close(): drop it quietly."""
        with self._lock:
            handle = self._handles.pop(handle_id, None)
        if handle is not None:
            _discard(handle)

    # -- owner side --------------------------------------------------------------------------
    def close_all(self) -> None:
        """Close every file and kill every pipe the Lua code opened (standard streams stay)."""
        with self._lock:
            opened = [handle for key, handle in self._handles.items() if key > 2]
            for key in [key for key in self._handles if key > 2]:
                del self._handles[key]
        for handle in opened:
            _discard(handle)

    kill = close_all  # vm.track(...) calls kill() when the VM closes


def _discard(handle) -> None:
    try:
        if isinstance(handle, ShellPipe):
            handle.kill()
        else:
            handle.close()
    except Exception:  # teardown must reach every handle
        pass


_PRELOAD_FACTORY = read_chunk("luaskills_runtime.vulcan", "io_preload.lua")


def install_managed_io(vm, limits: LimitsProvider) -> Optional[ManagedIo]:
    """Give `vm` the managed io library and return its state, which the VM's owner keeps; None
    (and native io kept) when the host disabled it.  `limits` gives the deadline / cancel state
    of the guarded run in progress (None between runs): blocking pipe reads give up by it."""
    if not vm.options.enable_managed_io_compat:
        return None
    state = ManagedIo(limits, OutputSink(vm.options.output), vm.policy)
    bridge = vm.bridge
    primitives = bridge.table(**{
        name: bridge.function(f"vulcan.io.{name}", getattr(state, name))
        for name in ("open", "read", "write", "seek", "flush", "close", "release", "popen",
                     "tmpfile")
    })
    io_table, lua_reset = vm.runtime.execute(_SOURCE, primitives, vm.policy.host_newproxy)
    state.lua_reset = lua_reset
    g = vm.runtime.globals()
    g[b"io"] = io_table
    package = g[b"package"]
    package[b"loaded"][b"io"] = io_table
    package[b"preload"][b"io"] = vm.runtime.execute(_PRELOAD_FACTORY, io_table)
    vm.track(state)
    return state


def reset_managed_io(state: Optional[ManagedIo]) -> None:
    """End of a request: close what the Lua code opened, back to the standard default files."""
    if state is None:
        return
    state.lua_reset()
    if state.open_count:
        state.close_all()
