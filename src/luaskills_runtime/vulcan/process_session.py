"""`vulcan.process.session.open(spec)` (SPEC 6): interactive managed process sessions for Lua.

The spec and option tables are checked with the reference's rules and texts
(``process.session.open: spec must be a table, got number``, ...); the session itself is a
:class:`luaskills_runtime.process.ProcessSession`, so Lua and Python hosts share one
implementation.  Lua gets a userdata (as the reference's) whose methods are called with ``:``::

    local s = vulcan.process.session.open{program = "cat"}
    s:write("hi\\n")
    local out = s:read{timeout_ms = 1000, until_text = "hi"}
    s:close()

The session is tracked by the VM (closing the VM or the engine kills its tree) and is torn down
when Lua collects the last reference to it.
"""
from __future__ import annotations

import math
from typing import Any

from luaskills_runtime.lua_engine import lupa_engine

from luaskills_runtime.lua.chunk_files import read_chunk
from luaskills_runtime._ref.lua_args import lua_type_name
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.process import ProcessSession
from luaskills_runtime.process.session import DEFAULT_CLOSE_TIMEOUT_MS, DEFAULT_READ_TIMEOUT_MS

OPEN = "process.session.open"
READ = "process.session.read"
CLOSE = "process.session.close"

_SESSION_FACTORY = read_chunk("luaskills_runtime.vulcan", "session_factory.lua")


def _lua_sequence(table) -> list:
    """t[1], t[2], ... up to the first nil, read raw, as the reference's sequence_values."""
    numbered = {key: value for key, value in table.items()
                if isinstance(key, int) and not isinstance(key, bool)}
    values = []
    while len(values) + 1 in numbered:
        values.append(numbered[len(values) + 1])
    return values


def _fields(table, fn_name: str, *names: str) -> list:
    """The named fields (honouring an __index metamethod, as the reference's table.get)."""
    try:
        return [table[name.encode()] for name in names]
    except lupa_engine.LuaError as error:   # an __index metamethod raised
        raise LuaSkillsError(f"{fn_name}: {error}") from None


def _bounded(vm, call, timeout_ms: Any, default_ms: int):
    """call(timeout) with the timeout bounded by the guarded run's deadline, so the call returns
    when the request's time is up or it is cancelled, raising the request's timeout or cancel
    error.  Values read() / close() would refuse are passed on unchanged for them to word the
    error."""
    limits = vm.current_limits()
    if limits is None:
        return call(timeout_ms)
    wanted = default_ms if timeout_ms is None else timeout_ms
    if not (isinstance(wanted, (int, float)) and not isinstance(wanted, bool)
            and math.isfinite(wanted) and wanted > 0):
        return call(timeout_ms)
    bounded = limits.cap_ms(wanted)
    result = call(bounded)
    limits.raise_if_over(bounded < wanted)
    return result


def _open_session(spec: Any, default_mode) -> ProcessSession:
    if lua_type_name(spec) != "table":
        raise LuaSkillsError(f"{OPEN}: spec must be a table, got {lua_type_name(spec)}")
    (program, args, cwd, encoding, stdout_encoding, stderr_encoding, stdin_encoding,
     buffer_limit_bytes) = _fields(spec, OPEN, "program", "args", "cwd", "encoding",
                                   "stdout_encoding", "stderr_encoding", "stdin_encoding",
                                   "buffer_limit_bytes")
    if lua_type_name(args) == "table":
        args = _lua_sequence(args)
    return ProcessSession(program, args, cwd, encoding, stdout_encoding, stderr_encoding,
                          stdin_encoding, buffer_limit_bytes, default_encoding=default_mode)


def _to_lua_table(runtime, result: dict):
    """A result dict as a Lua table: strings as bytes, None fields absent (nil)."""
    table = runtime.table()
    for key, value in result.items():
        if value is None:
            continue
        table[key.encode()] = value.encode("utf-8") if isinstance(value, str) else value
    return table


def install(vm, vulcan) -> None:
    bridge = vm.bridge
    runtime = vm.runtime
    default_mode = vm.default_text_mode
    make_session = runtime.execute(_SESSION_FACTORY)

    def open_session(spec=None, *_ignored):
        vm.policy.check_process(f"vulcan.{OPEN}")
        session = _open_session(spec, default_mode)
        vm.track(session)

        def write(*values):
            return session.write(*values)

        def read(options=None, *_ignored):
            if options is None:
                result = _bounded(vm, session.read, None, DEFAULT_READ_TIMEOUT_MS)
            elif lua_type_name(options) == "table":
                timeout_ms, max_bytes, until_text = _fields(
                    options, READ, "timeout_ms", "max_bytes", "until_text")
                if isinstance(until_text, bytes):
                    try:   # text markers are remembered per session; bytes are not
                        until_text = until_text.decode("utf-8")
                    except UnicodeDecodeError:
                        pass   # read() words the error
                result = _bounded(vm, lambda timeout: session.read(timeout, max_bytes, until_text),
                                  timeout_ms, DEFAULT_READ_TIMEOUT_MS)
            else:
                raise LuaSkillsError(
                    f"{READ}: options must be a table, got {lua_type_name(options)}")
            return _to_lua_table(runtime, result)

        def status(*_ignored):
            return _to_lua_table(runtime, session.status())

        def close(options=None, *_ignored):
            if options is None:
                final = _bounded(vm, session.close, None, DEFAULT_CLOSE_TIMEOUT_MS)
            elif lua_type_name(options) == "table":
                (timeout_ms,) = _fields(options, CLOSE, "timeout_ms")
                final = _bounded(vm, session.close, timeout_ms, DEFAULT_CLOSE_TIMEOUT_MS)
            else:
                raise LuaSkillsError(
                    f"{CLOSE}: options must be a table, got {lua_type_name(options)}")
            return _to_lua_table(runtime, final)

        def kill(*_ignored):
            return session.kill()

        return make_session(
            bridge.function("process.session.write", write),
            bridge.function(READ, read),
            bridge.function("process.session.status", status),
            bridge.function(CLOSE, close),
            bridge.function("process.session.kill", kill),
        )

    process = vulcan[b"process"]
    if process is None:   # whichever process area installs first creates the table
        process = bridge.table()
        vulcan[b"process"] = process
    process[b"session"] = bridge.table(open=bridge.function(OPEN, open_session))
