"""Where Lua code's standard output goes: ``HostOptions.output`` (README "Safety").

Nothing Lua code runs writes to file descriptors 1 or 2 behind the host's back: ``print`` (every VM
kind; runlua captures it on top), ``io.write`` / ``io.stdout`` / ``io.stderr`` (managed io through
:class:`OutputSink`; the native io library, when the host disabled managed io, through the same
sink by chunks/std_output.lua) all reach the sink:

* None: Python's current ``sys.stdout`` / ``sys.stderr``, looked up at each write, so
  ``contextlib.redirect_stdout`` and test harnesses see it;
* a callable ``(stream, text)``, stream being "stdout" or "stderr";
* a ``logging.Logger``: stdout at INFO, stderr at WARNING, one record per write;
* anything with ``write(text)`` (both streams).
"""
from __future__ import annotations

import io as pyio
import logging
import sys
from typing import Any

from luaskills_runtime.lua.chunk_files import read_chunk

STDOUT, STDERR = "stdout", "stderr"
_STD_OUTPUT_SOURCE = read_chunk("luaskills_runtime.vulcan", "std_output.lua")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class OutputSink:
    """The host's output option as one write(stream, bytes) call."""

    __slots__ = ("target",)

    def __init__(self, target: Any = None):
        self.target = target

    def write(self, stream: str, data: bytes) -> None:
        target = self.target
        if target is None:
            out = getattr(sys, stream, None)
            if out is None:   # no stream (pythonw): the output is dropped, as Python does
                return
            buffer = getattr(out, "buffer", None)
            if buffer is not None and not isinstance(out, pyio.StringIO):
                out.flush()   # what Python wrote before comes first
                buffer.write(data)
            else:
                out.write(_text(data))
        elif isinstance(target, logging.Logger):
            target.log(logging.INFO if stream == STDOUT else logging.WARNING, "%s",
                       _text(data).rstrip("\n"))
        elif callable(target):
            target(stream, _text(data))
        else:
            target.write(_text(data))

    def flush(self, stream: str) -> None:
        target = self.target
        out = getattr(sys, stream, None) if target is None else target
        flush = getattr(out, "flush", None)
        if flush is not None and not isinstance(target, logging.Logger):
            flush()


def install(vm, vulcan) -> None:
    """`print` and the native io library's standard files go to the host's sink (managed io,
    installed later by the services, uses OutputSink itself)."""
    sink = OutputSink(vm.options.output)
    bridge = vm.bridge

    def write(stream, data=None):
        if not isinstance(data, bytes):
            return None
        sink.write(STDERR if stream == b"stderr" else STDOUT, data)
        return None

    def flush(stream=None):
        sink.flush(STDERR if stream == b"stderr" else STDOUT)
        return None

    vm.runtime.execute(_STD_OUTPUT_SOURCE, vm.runtime.globals(),
                       bridge.function("print", write), bridge.function("io.flush", flush),
                       name="=std_output")
