"""Policy profiles (HostOptions.policy, per lease at create time): what Lua code may do.

``apply_policy(runtime, name)`` runs chunks/policy.lua on a fresh VM (see there for what each
profile removes from the standard library) and answers the VM's :class:`PolicyControls`, which the
vulcan functions and managed io consult before they create a process, open a file or read the
environment.  Names and the untrusted defaults are in luaskills_runtime.options.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterable, Optional, Tuple

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.chunk_files import read_chunk
from luaskills_runtime.options import DEFAULT, TRUSTED, UNTRUSTED

_POLICY_SOURCE = read_chunk("luaskills_runtime.lua", "policy.lua")

# How deeply the standard functions that call back into Lua from C may nest (string.gsub levels
# count 5).  Lua 5.1 uses 200 (LUAI_MAXCCALLS).  Measured on x86-64 Linux: 200 levels of resume /
# sort / load and 50 of gsub run on a 512 KiB thread stack, twice those on 1 MiB; the host's
# threads have at least that (glibc's default is 8 MiB, python.exe's main thread 2 MiB).
MAX_C_DEPTH = 200


def refusal(what: str, policy: str) -> str:
    """The error text of something a policy does not allow."""
    return f"{what} is not allowed by the `{policy}` policy"


class PolicyControls:
    """One VM's policy: its name, the checks vulcan functions call, and host-side controls of the
    policy chunk (the original debug library for the host's own chunks; the C module path)."""

    def __init__(self, name: str, lua_controls, fs_roots: Optional[Tuple[str, ...]] = None,
                 env_allow: Iterable[str] = ()):
        self.name = name
        self._lua = lua_controls
        self.full_debug = lua_controls[b"full_debug"]
        # () -> the FFI module for the host's own chunks (None under `trusted`: require works)
        self.host_ffi = lua_controls[b"host_ffi"]
        # newproxy for the host's own chunks (None: the global one is unrestricted)
        self.host_newproxy = lua_controls[b"newproxy"]
        self.fs_roots: Optional[Tuple[str, ...]] = None
        if fs_roots is not None:
            self.set_fs_roots(fs_roots)
        self.env_allow = frozenset(env_allow)
        self.request_roots: Tuple[str, ...] = ()

    @property
    def untrusted(self) -> bool:
        return self.name == UNTRUSTED

    def bind(self, bridge) -> None:
        """Give the policy chunk the host's path check (once the VM's bridge exists)."""
        setter = self._lua[b"set_path_check"]
        if setter is None:
            return

        def path_check(what=None, path=None):
            self.check_path(what.decode("utf-8", "replace") if isinstance(what, bytes) else "io",
                            path)

        setter(bridge.function("policy", path_check))

    def set_host_cpath(self, cpath: bytes) -> None:
        """The C module search path made of the host's c_roots (a no-op under `trusted`, where
        package.cpath is used as is)."""
        setter = self._lua[b"set_host_cpath"]
        if setter is not None:
            setter(cpath)

    @contextmanager
    def host_loadlib(self, runtime):
        """package.loadlib put back while the host loads its own native module (the timeout
        guard), removed again afterwards."""
        loadlib = self._lua[b"loadlib"]
        package = runtime.globals()[b"package"]
        if loadlib is None:
            yield
            return
        package[b"loadlib"] = loadlib
        try:
            yield
        finally:
            package[b"loadlib"] = None

    def set_fs_roots(self, roots: Iterable[str]) -> None:
        """Confine file access to `roots` (resolved real paths)."""
        self.fs_roots = tuple(os.path.realpath(root) for root in roots if root)

    def add_fs_roots(self, roots: Iterable[str]) -> None:
        """More folders file access may reach (only where access is confined at all)."""
        if self.fs_roots is not None:
            self.fs_roots += tuple(os.path.realpath(root) for root in roots if root)

    def set_request_roots(self, roots: Iterable[str]) -> None:
        """Folders of the request in progress (the runlua file's folder) file access may reach."""
        if self.fs_roots is not None:
            self.request_roots = tuple(os.path.realpath(root) for root in roots if root)

    def check_process(self, what: str) -> None:
        """Raise the policy's refusal when `what` (a function creating a process) is not allowed."""
        if self.name == UNTRUSTED:
            raise LuaSkillsError(refusal(what, self.name))

    def check_path(self, what: str, path) -> None:
        """Raise the policy's refusal when `path` resolves outside the fs roots (`..` and symlinks
        are resolved first, so neither can escape)."""
        if self.fs_roots is None:
            return
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        real = os.path.realpath(path)
        for root in self.fs_roots + self.request_roots:
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return
        raise LuaSkillsError(refusal(f"{what} of {path} (outside the policy's fs_roots)",
                                     self.name))

    def allows_env(self, name) -> bool:
        if self.name != UNTRUSTED:
            return True
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return name in self.env_allow


def apply_policy(runtime, name: str, *, fs_roots=None, env_allow: Iterable[str] = ()) -> PolicyControls:
    """Apply policy `name` to a fresh runtime; answers its controls."""
    if name not in (DEFAULT, TRUSTED, UNTRUSTED):
        raise LuaSkillsError(f"unknown policy `{name}`: expected default, trusted or untrusted")
    allowed = runtime.table_from({os.fsencode(key): True for key in env_allow})
    controls = runtime.execute(_POLICY_SOURCE, runtime.globals(), name.encode(), MAX_C_DEPTH,
                               allowed, name="=policy")
    return PolicyControls(name, controls, fs_roots=fs_roots if name == UNTRUSTED else None,
                          env_allow=env_allow)
