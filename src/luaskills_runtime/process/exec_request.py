"""One-shot process execution: the request (SPEC 7), its validation, and the result fields.

Both surfaces build the same :class:`ExecRequest`: ``vulcan.process.exec(spec)`` from a Lua value
(:func:`parse_lua_exec_spec`) and ``luaskills_runtime.process.exec_command(...)`` from keyword
arguments (:func:`parse_python_exec_args`).  Checks run in the reference's order and fail with its
texts, prefixed with the reference's function name ``process.exec``.  Running the request is
:mod:`luaskills_runtime.process.exec_run`'s job; this module also turns its outcome into the
thirteen result fields (:func:`exec_result`, :func:`exec_error_result`).
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from luaskills_runtime._ref.lua_args import (lua_type_name, optional_string, require_string,
                                             validate_path_text)
from luaskills_runtime._ref.rust import rust_float
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.text import TextMode, decode_text, parse_encoding

FN_NAME = "process.exec"

RESULT_FIELDS = ("ok", "success", "code", "stdout", "stderr", "stdout_encoding", "stderr_encoding",
                 "stdout_lossy", "stderr_lossy", "stdout_base64", "stderr_base64", "timed_out",
                 "error")


def shell_launcher() -> Tuple[str, str]:
    """The platform shell and its run-this-command flag."""
    return ("cmd.exe", "/C") if sys.platform == "win32" else ("sh", "-c")


@dataclass(frozen=True)
class ExecRequest:
    """A validated exec request.  Exactly one of `command` (shell mode) and `program` is set."""

    command: Optional[str]
    program: Optional[str]
    args: Tuple[str, ...]
    cwd: Optional[str]
    env: Dict[str, str]
    stdin: Union[str, bytes, None]   # bytes only from Python: written as they are
    timeout_ms: Optional[int]
    stdout_encoding: TextMode
    stderr_encoding: TextMode
    stdin_encoding: TextMode
    fn_name: str = field(default=FN_NAME, compare=False)

    def argv(self) -> Tuple[str, Tuple[str, ...]]:
        """(program, arguments after it) to start."""
        if self.command is not None:
            shell, flag = shell_launcher()
            return shell, (flag, self.command)
        return self.program, self.args


# ---- value checks shared by both surfaces ----------------------------------------------------

def _type_name(value: Any) -> str:
    """Lua's name for a value's type; Python containers count as tables, like their Lua forms."""
    if isinstance(value, (Mapping, list, tuple)):
        return "table"
    if isinstance(value, os.PathLike):
        return "string"
    return lua_type_name(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, (bytes, str))


def _scalar_text(value: Any, fn_name: str, param: str) -> str:
    """An argument or environment value: strings as they are, numbers and booleans as text."""
    if _is_text(value) or isinstance(value, os.PathLike):
        return require_string(value, fn_name, param, True)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LuaSkillsError(f"{fn_name}: {param} must be a finite number")
        # Integral floats that fit i64 are Lua integers for the reference; lupa gives us ints
        # for those already, but a Python host may pass 3.0.
        if value.is_integer() and -(2.0**63) <= value < 2.0**63:
            return str(int(value))
        return rust_float(value)
    raise LuaSkillsError(f"{fn_name}: {param} must be a string: {_type_name(value)}")


def _timeout(value: Any, fn_name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value > 0:
        return int(value)
    raise LuaSkillsError(
        f"{fn_name}: timeout_ms must be a positive integer in milliseconds: {_type_name(value)}")


def _shell_flag(value: Any, fn_name: str) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    raise LuaSkillsError(f"{fn_name}: shell must be a boolean when provided: {_type_name(value)}")


def _encoding(value: Any, fn_name: str, param: str) -> Optional[TextMode]:
    if isinstance(value, TextMode):
        return value
    label = optional_string(value, fn_name, param, False)
    if label is None:
        return None
    try:
        return parse_encoding(label)
    except LuaSkillsError as error:
        raise LuaSkillsError(f"{fn_name}: {param}: {error}") from None


def _build(fn_name: str, command, program, args, cwd, env, stdin, timeout_ms, shell, encoding,
           stdout_encoding, stderr_encoding, stdin_encoding, default_mode) -> ExecRequest:
    """The mode rules, checked after every field was read (the reference's order)."""
    encoding = encoding or default_mode
    if cwd is not None:
        validate_path_text(cwd, fn_name, "cwd")
    if command is not None and program is None:
        if shell is False:
            raise LuaSkillsError(f"{fn_name}: shell=false cannot be used with command mode")
        if args:
            raise LuaSkillsError(f"{fn_name}: args is only supported with program mode")
        args = ()
    elif program is not None and command is None:
        if shell is True:
            raise LuaSkillsError(f"{fn_name}: shell=true requires command mode")
    elif command is not None:
        raise LuaSkillsError(f"{fn_name}: command and program are mutually exclusive")
    else:
        raise LuaSkillsError(f"{fn_name}: expected a string command or a table with command")
    return ExecRequest(command, program, tuple(args), cwd, env, stdin, timeout_ms,
                       stdout_encoding or encoding, stderr_encoding or encoding,
                       stdin_encoding or encoding, fn_name)


def _shell_only(command: str, default_mode: TextMode, fn_name: str) -> ExecRequest:
    return ExecRequest(command, None, (), None, {}, None, None, default_mode, default_mode,
                       default_mode, fn_name)


# ---- the Lua surface ---------------------------------------------------------------------------

def _lua_sequence(table) -> list:
    """t[1], t[2], ... up to the first nil, read raw (no __index), like mlua's sequence_values."""
    numbered = {key: value for key, value in table.items()
                if isinstance(key, int) and not isinstance(key, bool)}
    values = []
    while len(values) + 1 in numbered:
        values.append(numbered[len(values) + 1])
    return values


def _lua_args(value: Any, fn_name: str) -> list:
    if value is None:
        return []
    if lua_type_name(value) != "table":
        raise LuaSkillsError(f"{fn_name}: args must be a table, got {lua_type_name(value)}")
    return [_scalar_text(item, fn_name, f"args[{index}]")
            for index, item in enumerate(_lua_sequence(value), 1)]


def _lua_env(value: Any, fn_name: str) -> Dict[str, str]:
    if value is None:
        return {}
    if lua_type_name(value) != "table":
        raise LuaSkillsError(f"{fn_name}: env must be a table, got {lua_type_name(value)}")
    env: Dict[str, str] = {}
    for key, item in value.items():   # pairs() order, raw like mlua's Table::pairs
        name = require_string(key, fn_name, "env.<key>", False)
        env[name] = _scalar_text(item, fn_name, f"env.{name}")
    return env


def parse_lua_exec_spec(spec: Any, default_mode: TextMode, fn_name: str = FN_NAME) -> ExecRequest:
    """Validate the argument of ``vulcan.process.exec`` (a lupa value: strings are bytes)."""
    if isinstance(spec, bytes):
        return _shell_only(require_string(spec, fn_name, "command", False), default_mode,
                           fn_name)
    if lua_type_name(spec) != "table":
        raise LuaSkillsError(f"{fn_name}: expected a string or table, got {lua_type_name(spec)}")
    get = spec.__getitem__   # not raw: an __index metamethod is honoured, as by mlua's get
    try:
        command = optional_string(get(b"command"), fn_name, "command", False)
        program = optional_string(get(b"program"), fn_name, "program", False)
        args = _lua_args(get(b"args"), fn_name)
        cwd = optional_string(get(b"cwd"), fn_name, "cwd", False)
        env = _lua_env(get(b"env"), fn_name)
        stdin = optional_string(get(b"stdin"), fn_name, "stdin", True)
        timeout_ms = _timeout(get(b"timeout_ms"), fn_name)
        shell = _shell_flag(get(b"shell"), fn_name)
        encoding = _encoding(get(b"encoding"), fn_name, "encoding")
        stdout_encoding = _encoding(get(b"stdout_encoding"), fn_name, "stdout_encoding")
        stderr_encoding = _encoding(get(b"stderr_encoding"), fn_name, "stderr_encoding")
        stdin_encoding = _encoding(get(b"stdin_encoding"), fn_name, "stdin_encoding")
    except LuaSkillsError:
        raise
    except Exception as error:   # an __index metamethod raised (a lupa LuaError)
        raise LuaSkillsError(f"{fn_name}: {error}") from None
    return _build(fn_name, command, program, args, cwd, env, stdin, timeout_ms, shell, encoding,
                  stdout_encoding, stderr_encoding, stdin_encoding, default_mode)


# ---- the Python surface ------------------------------------------------------------------------

def _py_args(value: Any, fn_name: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise LuaSkillsError(f"{fn_name}: args must be a table, got {_type_name(value)}")
    return [_scalar_text(item, fn_name, f"args[{index}]") for index, item in enumerate(value, 1)]


def _py_env(value: Any, fn_name: str) -> Dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):   # a Lua list table: its keys are numbers
        pairs = enumerate(value, 1)
    elif isinstance(value, Mapping):
        pairs = value.items()
    else:
        raise LuaSkillsError(f"{fn_name}: env must be a table, got {_type_name(value)}")
    env: Dict[str, str] = {}
    for key, item in pairs:
        name = require_string(key, fn_name, "env.<key>", False)
        env[name] = _scalar_text(item, fn_name, f"env.{name}")
    return env


def _py_stdin(value: Any, fn_name: str) -> Union[str, bytes, None]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)   # raw bytes: written unchanged, stdin_encoding does not apply
    return optional_string(value, fn_name, "stdin", True)


def parse_python_exec_args(command=None, program=None, args=(), cwd=None, env=None, stdin=None,
                           timeout_ms=None, shell=None, encoding=None, stdout_encoding=None,
                           stderr_encoding=None, stdin_encoding=None, *,
                           default_mode: TextMode, fn_name: str = FN_NAME) -> ExecRequest:
    """Validate ``exec_command`` keyword arguments with the same rules and texts as the Lua spec."""
    command = optional_string(command, fn_name, "command", False)
    program = optional_string(program, fn_name, "program", False)
    args = _py_args(args, fn_name)
    cwd = optional_string(cwd, fn_name, "cwd", False)
    env = _py_env(env, fn_name)
    stdin = _py_stdin(stdin, fn_name)
    timeout_ms = _timeout(timeout_ms, fn_name)
    shell = _shell_flag(shell, fn_name)
    encoding = _encoding(encoding, fn_name, "encoding")
    stdout_encoding = _encoding(stdout_encoding, fn_name, "stdout_encoding")
    stderr_encoding = _encoding(stderr_encoding, fn_name, "stderr_encoding")
    stdin_encoding = _encoding(stdin_encoding, fn_name, "stdin_encoding")
    return _build(fn_name, command, program, args, cwd, env, stdin, timeout_ms, shell, encoding,
                  stdout_encoding, stderr_encoding, stdin_encoding, default_mode)


# ---- results -----------------------------------------------------------------------------------

def exec_error_result(error_text: str, request: ExecRequest, timed_out: bool = False) -> dict:
    """A failure before any output existed (stdin encoding, spawn, wait): the text is both the
    error and stderr, and the encodings are the requested labels."""
    return {
        "ok": False, "success": False, "code": None, "stdout": "", "stderr": error_text,
        "stdout_encoding": request.stdout_encoding.requested_label,
        "stderr_encoding": request.stderr_encoding.requested_label,
        "stdout_lossy": False, "stderr_lossy": False,
        "stdout_base64": None, "stderr_base64": None,
        "timed_out": timed_out, "error": error_text,
    }


def exec_result(request: ExecRequest, stdout: bytes, stderr: bytes, code: Optional[int],
                exited_ok: bool, timed_out: bool) -> dict:
    """The result of a run that produced a status: decoded output, the success flags and the
    reference's error texts (a timeout note is also appended to stderr)."""
    out = decode_text(stdout, request.stdout_encoding)
    err = decode_text(stderr, request.stderr_encoding)
    stderr_text = err.text
    success = exited_ok and not timed_out
    error = None
    if timed_out:
        error = f"process execution timed out after {request.timeout_ms or 0} ms"
        stderr_text = f"{stderr_text}\n{error}" if stderr_text else error
    elif not success:
        error = (f"process exited with code {code}" if code is not None
                 else "process terminated without an exit code")
    return {
        "ok": success, "success": success, "code": code, "stdout": out.text,
        "stderr": stderr_text, "stdout_encoding": out.encoding, "stderr_encoding": err.encoding,
        "stdout_lossy": out.lossy, "stderr_lossy": err.lossy,
        "stdout_base64": out.base64, "stderr_base64": err.base64,
        "timed_out": timed_out, "error": error,
    }


def result_to_lua(runtime, result: dict):
    """The result as a Lua table (strings as bytes; nil fields are simply absent)."""
    table = runtime.table()
    for key in RESULT_FIELDS:
        value = result[key]
        if isinstance(value, str):
            value = value.encode("utf-8")
        if value is not None:
            table[key.encode()] = value
    return table
