"""One Lua VM (a lupa LuaJIT runtime) and its request scope.

The VM knows nothing of the `vulcan` namespace: whoever builds a VM for Lua code installs it
(luaskills_runtime.vulcan.new_vm)."""
from __future__ import annotations

import os
import tempfile
import threading
import weakref
from typing import Any, Callable, Dict, Optional

from luaskills_runtime.lua_engine import IS_LUAJIT, lupa_engine

from luaskills_runtime.lua.chunk_files import chunk_bytecode, read_chunk
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.bridge import LuaBridge
from luaskills_runtime.lua.outcome import OUT_OF_MEMORY, RunStatus, answer_outcome, lua_error_text
from luaskills_runtime.lua.policy import apply_policy

MAIN, RUNLUA, LEASE = "main", "runlua", "lease"

_SCOPE_SOURCE = read_chunk("luaskills_runtime.lua", "scope.lua")
_RUNNER_SOURCE = read_chunk("luaskills_runtime.lua", "runner.lua")
# The library half of the reference's Lua dialect (LuaJIT's Lua 5.2 compatibility), every VM kind;
# loaded as bytecode because every new VM runs it.
_COMPAT52_BYTECODE = chunk_bytecode("luaskills_runtime.lua", "compat52.lua")
# On PUC Lua 5.1 (the lua51 engine) LuaJIT 2.1's own library extensions come first.
_COMPAT_LUA51_BYTECODE = (None if IS_LUAJIT
                          else chunk_bytecode("luaskills_runtime.lua", "compat_lua51.lua"))
# lupa's engine module exports the Lua C API; compat52.lua takes lua_pushthread from it.
_LUA_API_LIBRARY = os.fsencode(lupa_engine.__file__)


def install_dialect(runtime, main_vm: bool) -> None:
    """Give `runtime` (a lupa LuaJIT runtime, before any code captured its library functions) the
    reference's dialect: compat52.lua.  `main_vm`: the VM keeps LuaJIT's own io (run_lua), whose
    popen handles then close with the detailed status through the FFI; runlua and lease VMs get
    managed io, which does that itself."""
    if _COMPAT_LUA51_BYTECODE is not None:
        runtime.execute(_COMPAT_LUA51_BYTECODE, runtime.globals(), mode="b")
    runtime.execute(_COMPAT52_BYTECODE, runtime.globals(), _LUA_API_LIBRARY, main_vm, mode="b")


# The reference wraps run_lua code like this, so user code sees `args` as a local and its line
# numbers start at 3.
RUN_LUA_WRAPPER = "return (function()\n  local args = __runlua_args\n  {code}\nend)()"


def _deny_attribute_access(obj, name, is_setting):
    raise AttributeError("Python attribute access is disabled in LuaSkills VMs")


def _base_fs_roots(options) -> tuple:
    return (options.temp_dir or tempfile.gettempdir(),) + tuple(options.fs_roots)


class ScopeFields(dict):
    """Values of one request's scope; missing keys reset to the reference defaults."""

    ORDER = ("request", "client_info", "client_capabilities", "client_budget", "tool_config",
             "skill_dir", "entry_dir", "entry_file", "tool_name", "skill_name", "entry_name",
             "root_name", "luaexec_active", "luaexec_caller_tool_name")


def _no_limits():
    return None


def _kill_all(resources) -> None:
    for resource in resources:
        try:
            resource.kill()
        except Exception:  # teardown must reach every resource
            pass


class LuaVM:
    """A LuaJIT VM owned by one pool slot or lease; used by one thread at a time.

    Lua code gets no door into Python: no `python` module, no eval/builtins, and every attribute
    access on a Python object is denied.  Resources the VM's code opens (process sessions) are
    tracked and killed when the VM closes.
    """

    def __init__(self, engine_state, kind: str, *, max_memory: Optional[int] = None,
                 policy: Optional[str] = None):
        self.kind = kind
        self.state = engine_state
        self.options = engine_state.options
        self.default_text_mode = engine_state.default_text_mode
        kwargs = dict(register_eval=False, register_builtins=False, unpack_returned_tuples=True,
                      encoding=None, attribute_filter=_deny_attribute_access)
        if max_memory:
            kwargs["max_memory"] = max_memory
        self.runtime = lupa_engine.LuaRuntime(**kwargs)
        self.max_memory = max_memory or None   # the VM's memory cap (owners may lift it briefly)
        g = self.runtime.globals()
        g[b"python"] = None
        # jit.profile would take LuaJIT's one profiler, which the timeout guard uses (issue 18).
        self.runtime.execute("package.loaded.python = nil "
                             "package.loaded['jit.profile'] = nil package.preload['jit.profile'] = nil")
        # The dialect first: it keeps what it needs privately (loadlib'd lua_pushthread, the
        # FFI pipe close of main VMs).  Then the policy, so every later chunk (and user code)
        # sees only the standard library it leaves (no ffi, no loadlib under default/untrusted).
        install_dialect(self.runtime, kind == MAIN)
        self.policy = apply_policy(self.runtime, policy or self.options.policy,
                                   fs_roots=_base_fs_roots(self.options),
                                   env_allow=self.options.env_allow)
        self.bridge = LuaBridge(self.runtime)
        self.policy.bind(self.bridge)
        # runner.lua: lua_run(code, chunkname) answers with the run-outcome protocol
        self.lua_run, self.lua_message_of = self.runtime.execute(_RUNNER_SOURCE)
        # The Lua reset function behind reset_scope; runlua's environment calls it from Lua.
        self.scope_reset = self.runtime.execute(_SCOPE_SOURCE, g)
        self._internal: dict = {}
        self._resources: "weakref.WeakSet" = weakref.WeakSet()
        self._one_shot: "weakref.WeakSet" = weakref.WeakSet()  # one-shot runs (exec trees)
        self._resources_lock = threading.Lock()
        # The deadline / cancel state of the guarded run in progress (lua.guard's
        # ExecutionLimits, or None), for Python primitives that block: the guard of a guarded
        # VM provides it.
        self.current_limits: Callable[[], Any] = _no_limits
        self.broken = False
        self.closed = False
        # `extra` fields of this VM's Lua log lines (luaskills_sid, luaskills_lease_id,
        # luaskills_request_id); owners change them through set_log_fields.
        self.log_fields: Dict[str, Any] = {}
        # The SID of the lease that owns this VM (its owner sets it), or None: part of the
        # scope of what the VM's code keeps outside it (vulcan.cache entries).
        self.lease_sid: Optional[str] = None

    # ---- request scope ---------------------------------------------------------------------
    def reset_scope(self, **fields: Any) -> None:
        """Set the request scope (SPEC 5); raises LuaSkillsError and marks the VM broken when the
        namespace was damaged by earlier code."""
        if fields:
            unknown = set(fields) - set(ScopeFields.ORDER)
            if unknown:
                raise TypeError(f"unknown scope fields: {sorted(unknown)}")
            self._internal = {key: fields.get(key) for key in
                              ("tool_name", "skill_name", "entry_name", "root_name")}
            values = [fields.get(key) for key in ScopeFields.ORDER]
            values = [self.bridge.to_lua(v) if isinstance(v, (dict, list, str)) else v
                      for v in values]
        else:  # the common case: every field back to its default
            self._internal = {}
            values = ()
        try:
            self.scope_reset(*values)
        except lupa_engine.LuaError as error:
            self.broken = True
            raise LuaSkillsError(f"request scope reset failed: {lua_error_text(error)}") from None

    def mark_broken(self) -> None:
        """The VM's namespace or state is damaged: its owner must not reuse it."""
        self.broken = True

    def set_log_fields(self, **fields: Any) -> None:
        """Add (or, with None, remove) `extra` fields of this VM's Lua log lines."""
        for key, value in fields.items():
            if value is None:
                self.log_fields.pop(key, None)
            else:
                self.log_fields[key] = value

    def internal_fields(self) -> dict:
        return self._internal

    # ---- running code ----------------------------------------------------------------------
    def run_chunk(self, code: bytes | str, chunkname: bytes | str = b"=chunk"):
        """Compile and run code (runner.lua answers with the run-outcome protocol); returns the
        tuple of returned values or raises LuaSkillsError with Lua's message (memory errors
        included)."""
        if isinstance(code, str):
            code = code.encode("utf-8")
        if isinstance(chunkname, str):
            chunkname = chunkname.encode("utf-8")
        try:
            answer = self.lua_run(code, chunkname)
        except lupa_engine.LuaMemoryError:
            self._collect_after_memory_error()
            raise LuaSkillsError(OUT_OF_MEMORY) from None
        except lupa_engine.LuaError as error:
            raise LuaSkillsError(lua_error_text(error)) from None
        result = answer_outcome(answer)
        if not result.ok:
            if result.status is RunStatus.MEMORY:
                self._collect_after_memory_error()
            raise LuaSkillsError(result.reason)
        return result.values

    def _collect_after_memory_error(self) -> None:
        """LuaJIT has no emergency collection: the garbage of code that hit the cap stays until
        a collection, and every allocation fails until then.  Collect it now (uncapped: lupa
        runs this Lua API call unprotected)."""
        cap = self.runtime.get_max_memory()
        if cap:
            self.runtime.set_max_memory(0)
        try:
            self.runtime.gccollect()
        finally:
            if cap:
                self.runtime.set_max_memory(cap)

    def set_global(self, name: str, value: Any) -> None:
        self.runtime.globals()[name.encode()] = value

    # ---- resources and lifetime ------------------------------------------------------------
    def track(self, resource, one_shot: bool = False) -> None:
        """Kill `resource` (anything with .kill()) when this VM closes; a `one_shot` resource
        (a tree a single call waits for, e.g. exec) also when its run is stopped
        (kill_one_shot)."""
        with self._resources_lock:
            self._resources.add(resource)
            if one_shot:
                self._one_shot.add(resource)

    def kill_one_shot(self) -> None:
        """Kill the one-shot trees running now (the stopped run's exec), not the sessions a
        lease keeps across evals."""
        with self._resources_lock:
            live = list(self._one_shot)
            self._one_shot.clear()
        _kill_all(live)

    def kill_resources(self) -> None:
        with self._resources_lock:
            live = list(self._resources)
            self._resources.clear()
            self._one_shot.clear()
        _kill_all(live)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.kill_resources()

    def __del__(self):
        # Before lupa frees the Lua state (and runs the __gc finalizers left in it): from now
        # on callbacks refuse without entering Python.  Not done in close(), which may run on
        # another thread while this VM still runs Lua (lupa would wait for that run to end).
        try:
            self.bridge.close()
        except Exception:
            pass
