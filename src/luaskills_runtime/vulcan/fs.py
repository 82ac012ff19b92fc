"""`vulcan.path`, `vulcan.fs`, `vulcan.os` and `vulcan.io.read_text/write_text` (SPEC 4)."""
from __future__ import annotations

import os
import platform
import sys

from luaskills_runtime._ref.rust import is_blank
from luaskills_runtime._ref.lua_args import lua_type_name, require_path, require_string
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.text import decode_text, encode_text, normalize_encoding
from luaskills_runtime.vulcan.bounded_files import read_file


def os_info() -> dict:
    """Names as Rust's std::env::consts reports them, which is what the reference returns."""
    if sys.platform.startswith("linux"):
        os_name = "linux"
    elif sys.platform == "darwin":
        os_name = "macos"
    elif sys.platform == "win32":
        os_name = "windows"
    else:
        os_name = sys.platform
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return {"os": os_name, "arch": arch}


def install(vm, vulcan) -> None:
    bridge = vm.bridge
    policy = vm.policy

    def path_join(*parts):
        if not parts:
            raise LuaSkillsError("vulcan.path.join: at least one path segment is required")
        texts = [require_string(part, "vulcan.path.join", f"segment {index}", allow_blank=True)
                 for index, part in enumerate(parts, 1)]
        return os.path.join(*texts).encode()

    def fs_list(path=None):
        folder = require_path(path, "vulcan.fs.list", "path")
        policy.check_path("vulcan.fs.list", folder)
        try:
            names = sorted(os.listdir(folder))
        except OSError as error:
            raise LuaSkillsError(f"vulcan.fs.list: {error.strerror or error}: {folder}") from None
        return bridge.to_lua(names)

    def fs_read(path=None):
        name = require_path(path, "vulcan.fs.read", "path")
        policy.check_path("vulcan.fs.read", name)
        try:
            return read_file(name, vm.current_limits())
        except OSError as error:
            raise LuaSkillsError(f"vulcan.fs.read: {error.strerror or error}: {name}") from None

    def fs_write(path=None, content=None):
        name = require_path(path, "vulcan.fs.write", "path")
        policy.check_path("vulcan.fs.write", name)
        if not isinstance(content, bytes):
            raise LuaSkillsError(
                f"vulcan.fs.write: content must be a string, got {lua_type_name(content)}")
        try:
            with open(name, "wb") as handle:
                handle.write(content)
        except OSError as error:
            raise LuaSkillsError(f"vulcan.fs.write: {error.strerror or error}: {name}") from None
        return True

    def fs_exists(path=None):
        name = require_path(path, "vulcan.fs.exists", "path")
        policy.check_path("vulcan.fs.exists", name)
        return os.path.exists(name)

    def fs_is_dir(path=None):
        name = require_path(path, "vulcan.fs.is_dir", "path")
        policy.check_path("vulcan.fs.is_dir", name)
        return os.path.isdir(name)

    def encoding_arg(value, fn_name):
        if lua_type_name(value) == "table":   # the reference's options table: {encoding = label}
            value = value[b"encoding"]
        if value is None:
            return vm.default_text_mode
        label = require_string(value, fn_name, "encoding", allow_blank=True)
        if is_blank(label):
            return vm.default_text_mode
        try:
            return normalize_encoding(label)
        except LuaSkillsError as error:
            raise LuaSkillsError(f"{fn_name}: {error}") from None

    def read_text(path=None, encoding=None):
        name = require_path(path, "vulcan.io.read_text", "path")
        policy.check_path("vulcan.io.read_text", name)
        mode = encoding_arg(encoding, "vulcan.io.read_text")
        try:
            data = read_file(name, vm.current_limits())
        except OSError as error:
            raise LuaSkillsError(f"vulcan.io.read_text: {error.strerror or error}: {name}") from None
        return decode_text(data, mode).text.encode("utf-8", "surrogatepass")

    def write_text(path=None, text=None, encoding=None):
        name = require_path(path, "vulcan.io.write_text", "path")
        policy.check_path("vulcan.io.write_text", name)
        if not isinstance(text, bytes):
            raise LuaSkillsError(
                f"vulcan.io.write_text: text must be a string, got {lua_type_name(text)}")
        mode = encoding_arg(encoding, "vulcan.io.write_text")
        try:
            data = encode_text(text, mode)
        except LuaSkillsError as error:
            raise LuaSkillsError(f"vulcan.io.write_text: {error}") from None
        try:
            with open(name, "wb") as handle:
                handle.write(data)
        except OSError as error:
            raise LuaSkillsError(f"vulcan.io.write_text: {error.strerror or error}: {name}") from None
        return True

    vulcan[b"path"] = bridge.table(join=bridge.function("vulcan.path.join", path_join))
    vulcan[b"fs"] = bridge.table(
        list=bridge.function("vulcan.fs.list", fs_list),
        read=bridge.function("vulcan.fs.read", fs_read),
        write=bridge.function("vulcan.fs.write", fs_write),
        exists=bridge.function("vulcan.fs.exists", fs_exists),
        is_dir=bridge.function("vulcan.fs.is_dir", fs_is_dir),
    )
    vulcan[b"os"] = bridge.table(info=bridge.function("vulcan.os.info", lambda: bridge.to_lua(os_info())))
    io_table = vulcan[b"io"]
    io_table[b"read_text"] = bridge.function("vulcan.io.read_text", read_text)
    io_table[b"write_text"] = bridge.function("vulcan.io.write_text", write_text)

