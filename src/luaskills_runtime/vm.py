"""One Lua VM (a lupa LuaJIT runtime) with the vulcan namespace, and its request scope."""
from __future__ import annotations

import threading
import weakref
from importlib import resources
from typing import Any, Optional

import lupa.luajit21 as lupa_engine

from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.vulcan import install_vulcan
from luaskills_runtime.vulcan._bridge import LuaBridge

MAIN, RUNLUA, LEASE = "main", "runlua", "lease"

_SCOPE_SOURCE = resources.files("luaskills_runtime").joinpath("scope.lua").read_text("utf-8")
_RUNNER_SOURCE = resources.files("luaskills_runtime").joinpath("runner.lua").read_text("utf-8")

# The reference wraps run_lua code like this, so user code sees `args` as a local and its line
# numbers start at 3.
RUN_LUA_WRAPPER = "return (function()\n  local args = __runlua_args\n  {code}\nend)()"


def _deny_attribute_access(obj, name, is_setting):
    raise AttributeError("Python attribute access is disabled in LuaSkills VMs")


class ScopeFields(dict):
    """Values of one request's scope; missing keys reset to the reference defaults."""

    ORDER = ("request", "client_info", "client_capabilities", "client_budget", "tool_config",
             "skill_dir", "entry_dir", "entry_file", "tool_name", "skill_name", "entry_name",
             "root_name", "luaexec_active", "luaexec_caller_tool_name")


class LuaVM:
    """A LuaJIT VM owned by one pool slot or lease; used by one thread at a time.

    Lua code gets no door into Python: no `python` module, no eval/builtins, and every attribute
    access on a Python object is denied.  Resources the VM's code opens (process sessions) are
    tracked and killed when the VM closes.
    """

    def __init__(self, engine_state, kind: str, *, max_memory: Optional[int] = None):
        self.kind = kind
        self.state = engine_state
        self.options = engine_state.options
        self.default_text_mode = engine_state.default_text_mode
        kwargs = dict(register_eval=False, register_builtins=False, unpack_returned_tuples=True,
                      encoding=None, attribute_filter=_deny_attribute_access)
        if max_memory:
            kwargs["max_memory"] = max_memory
        self.runtime = lupa_engine.LuaRuntime(**kwargs)
        g = self.runtime.globals()
        g[b"python"] = None
        # jit.profile would take LuaJIT's one profiler, which the timeout guard uses (issue 18).
        self.runtime.execute("package.loaded.python = nil "
                             "package.loaded['jit.profile'] = nil package.preload['jit.profile'] = nil")
        self.bridge = LuaBridge(self.runtime)
        self._run_chunk, self.lua_message_of = self.runtime.execute(_RUNNER_SOURCE)
        # The Lua reset function behind reset_scope; runlua's environment calls it from Lua.
        self.scope_reset = self.runtime.execute(_SCOPE_SOURCE, g)
        self._internal: dict = {}
        self._resources: "weakref.WeakSet" = weakref.WeakSet()
        self._resources_lock = threading.Lock()
        self.broken = False
        self.closed = False
        install_vulcan(self)

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

    def internal_fields(self) -> dict:
        return self._internal

    # ---- running code ----------------------------------------------------------------------
    def run_chunk(self, code: bytes | str, chunkname: bytes | str = b"=chunk"):
        """Compile and run code; returns the tuple of returned values or raises LuaSkillsError
        with Lua's message (memory errors included)."""
        if isinstance(code, str):
            code = code.encode("utf-8")
        if isinstance(chunkname, str):
            chunkname = chunkname.encode("utf-8")
        try:
            result = self._run_chunk(code, chunkname)
        except lupa_engine.LuaMemoryError:
            raise LuaSkillsError("not enough memory") from None
        except lupa_engine.LuaError as error:
            raise LuaSkillsError(lua_error_text(error)) from None
        if not isinstance(result, tuple):
            result = (result,)
        if not result[0]:
            raise LuaSkillsError(lua_text(result[1]))
        return result[1:]

    def set_global(self, name: str, value: Any) -> None:
        self.runtime.globals()[name.encode()] = value

    # ---- resources and lifetime ------------------------------------------------------------
    def track(self, resource) -> None:
        """Kill `resource` (anything with .kill()) when this VM closes."""
        with self._resources_lock:
            self._resources.add(resource)

    def kill_resources(self) -> None:
        with self._resources_lock:
            live = list(self._resources)
            self._resources.clear()
        for resource in live:
            try:
                resource.kill()
            except Exception:  # teardown must reach every resource
                pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.kill_resources()


def lua_text(value) -> str:
    """A value from Lua as Python text (Lua strings arrive as bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def lua_error_text(error: Exception) -> str:
    """LuaError text without lupa's appended stack traceback."""
    text = str(error)
    cut = text.find("\nstack traceback:")
    return text if cut < 0 else text[:cut]
