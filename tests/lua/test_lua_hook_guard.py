"""LuaHookGuard (the timeout guard that needs no exported Lua C API), the choice of guard
mechanism, engine_info() and `luaskills-runtime --version`."""
import os
import subprocess
import sys
import threading
import time

from _engine_support import ENGINE, IS_LUAJIT, interpreted, luajit_only, lupa_engine as lupa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luaskills_runtime import engine_info
from luaskills_runtime.lua import guard, guard_mechanism as mechanisms, lua_hook_guard
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.lua_hook_guard import LuaHookGuard

MESSAGE = b"luaexec execution timed out after 150 ms"
SLACK_S = 0.5


def new_runtime():
    runtime = lupa.LuaRuntime(register_eval=False, register_builtins=False, encoding=None,
                              unpack_returned_tuples=True)
    interpreted(runtime)  # as guarded VMs run (lua/chunks/guard.lua)
    return runtime


def run_guarded(guard, fn, timeout_ms=150, message=MESSAGE):
    """(error text or None, seconds) of fn() under the guard."""
    start = time.monotonic()
    guard.arm(timeout_ms, message)
    try:
        fn()
        error = None
    except lupa.LuaError as caught:
        error = str(caught).split("\nstack traceback:", 1)[0]
    finally:
        guard.disarm()
    return error, time.monotonic() - start


@pytest.fixture(params=[pytest.param(True, marks=luajit_only), False], ids=["ffi-flag", "python-flag"])
def guarded(request):
    runtime = new_runtime()
    guard = LuaHookGuard(runtime, use_ffi=request.param)
    assert guard.uses_ffi is request.param
    return runtime, guard


STOPPERS = {
    "busy loop": b"while true do end",
    "pcall loop": b"while true do pcall(function() while true do end end) end",
    "xpcall loop": b"while true do xpcall(function() while true do end end, function(e) return e end) end",
    "coroutine": b"local co = coroutine.wrap(function() while true do end end) co()",
    "hook setter loop": b"while true do debug.sethook(function() end, '', 10) debug.sethook() end",
    "error swallowing loop": b"while true do local ok, e = pcall(error, 'x') end",
}


@pytest.mark.parametrize("name", sorted(STOPPERS))
def test_timeout_stops_code_with_the_message(guarded, name):
    runtime, guard = guarded
    fn = runtime.eval(b"function() " + STOPPERS[name] + b" end")
    error, seconds = run_guarded(guard, fn)
    # coroutine.wrap prefixes a position when it passes the error on; guard.py reports the
    # guard's own message whenever `fired` is set, as with the native guard
    assert error == MESSAGE.decode() or (name == "coroutine" and error.endswith(MESSAGE.decode()))
    assert guard.fired and guard.raised_count >= 1
    assert 0.15 <= seconds < 0.15 + SLACK_S
    assert guard.state == "idle"
    # the VM runs normally afterwards; the hook left is the user's (the hook setter's, when the
    # guard fired between its two calls), never the guard's
    assert runtime.eval(b"(function() local x = 0 for i = 1, 3e6 do x = x + 1 end return x end)()") == 3e6
    if name == "hook setter loop":
        assert runtime.eval(b"debug.gethook() == nil or select(3, debug.gethook()) == 10")
    else:
        assert runtime.eval(b"debug.gethook() == nil")


def test_code_that_ends_in_time_is_not_fired(guarded):
    runtime, guard = guarded
    fn = runtime.eval(b"function() local x = 0 for i = 1, 1e6 do x = x + i end return x end")
    guard.arm(5000, MESSAGE)
    try:
        assert fn() == sum(range(1, 1_000_001))
        assert guard.state == "armed"
    finally:
        guard.disarm()
    assert not guard.fired


def test_cancel_from_another_thread_keeps_the_first_message(guarded):
    runtime, guard = guarded
    fn = runtime.eval(b"function() while true do end end")
    assert guard.cancel(b"too early") is False  # idle: nothing to stop
    answers = []

    def cancel_later():
        time.sleep(0.1)
        answers.append(guard.cancel(b"cancelled by the host"))
        answers.append(guard.cancel(b"second message"))

    thread = threading.Thread(target=cancel_later)
    thread.start()
    error, seconds = run_guarded(guard, fn, timeout_ms=60_000)
    thread.join()
    assert answers == [True, True]
    assert error == "cancelled by the host"
    assert seconds < 0.1 + SLACK_S


def test_rearm_replaces_the_deadline():
    runtime = new_runtime()
    guard = LuaHookGuard(runtime)
    fn = runtime.eval(b"function() while true do end end")
    guard.arm(50, b"first")
    guard.arm(300, b"second")  # the first deadline must not fire
    start = time.monotonic()
    try:
        fn()
    except lupa.LuaError as error:
        assert str(error).startswith("second")
    finally:
        guard.disarm()
    assert time.monotonic() - start >= 0.3


def test_user_hooks_keep_working_and_come_back():
    runtime = new_runtime()
    guard = LuaHookGuard(runtime)
    runtime.execute(b"calls = 0 user = function(event) calls = calls + 1 end "
                    b"debug.sethook(user, '', 1000)")
    guard.arm(5000, MESSAGE)
    try:
        # while armed, user code sees its own hook, not the guard's, and its count events arrive
        assert runtime.eval(b"debug.gethook() == user")
        assert runtime.eval(b"select(3, debug.gethook())") == 1000
        runtime.execute(b"for i = 1, 1e6 do end")
        assert runtime.eval(b"calls") >= 300  # about 2 instructions per iteration / 1000
        runtime.execute(b"lines = 0 debug.sethook(function(e) lines = lines + 1 end, 'l')\n"
                        b"local a = 1\nlocal b = 2\ndebug.sethook()")
        assert runtime.eval(b"lines") >= 2
        assert runtime.eval(b"debug.gethook() == nil")
        runtime.execute(b"debug.sethook(user, '', 1000)")
    finally:
        guard.disarm()
    assert runtime.eval(b"debug.gethook() == user")
    assert not guard.fired
    runtime.execute(b"debug.sethook()")


def test_a_user_hook_cannot_remove_the_guard():
    runtime = new_runtime()
    guard = LuaHookGuard(runtime)
    fn = runtime.eval(b"function() debug.sethook() debug.sethook(function() end, '', 5) "
                      b"while true do end end")
    error, _ = run_guarded(guard, fn)
    assert error == MESSAGE.decode()


def test_disarmed_deadlines_do_not_pile_up():
    runtime = new_runtime()
    guard = LuaHookGuard(runtime)
    before = lua_hook_guard._watchdog.pending()
    for _ in range(2000):
        guard.arm(600_000, MESSAGE)
        guard.disarm()
    assert lua_hook_guard._watchdog.pending() - before <= 200


def test_message_limit_is_the_native_guards():
    from luaskills_runtime._native import luahook

    assert lua_hook_guard.MESSAGE_MAX == luahook.MESSAGE_MAX
    guard = LuaHookGuard(new_runtime())
    guard.arm(100, b"x" * lua_hook_guard.MESSAGE_MAX)  # the longest message is accepted
    guard.disarm()


def test_bad_arguments():
    guard = LuaHookGuard(new_runtime())
    with pytest.raises(ValueError):
        guard.arm(0, MESSAGE)
    with pytest.raises(TypeError):
        guard.arm(True, MESSAGE)
    with pytest.raises(TypeError):
        guard.arm(100, 5)
    with pytest.raises(ValueError):
        guard.arm(100, b"x" * (lua_hook_guard.MESSAGE_MAX + 1))
    assert guard.state == "idle"


@pytest.mark.parametrize("wanted, native_problem, jit_refusal, expected", [
    ("lua-hook", None, None, "lua-hook"),
    ("native", None, None, "jit-profile"),
    ("native", None, "LUASKILLS_JIT_GUARD=off", "jit-off-hook"),
    ("", None, None, "jit-profile"),
    ("AUTO", None, "self-check refused", "jit-off-hook"),
    ("auto", "no lua_sethook in the module", None, "lua-hook"),
    ("", "no lua_sethook in the module", "self-check refused", "lua-hook"),
])
def test_mechanism_choice(monkeypatch, wanted, native_problem, jit_refusal, expected):
    monkeypatch.setenv(mechanisms.GUARD_ENV, wanted)
    monkeypatch.setattr(mechanisms, "native_guard_error", lambda: native_problem)
    monkeypatch.setattr(mechanisms, "jit_guard_refusal", lambda: jit_refusal)
    assert mechanisms.guard_mechanism() == expected


def test_jit_guard_env_var_is_read_per_call(monkeypatch):
    monkeypatch.setenv(mechanisms.JIT_GUARD_ENV, "off")
    assert mechanisms.jit_guard_refusal() == "LUASKILLS_JIT_GUARD=off"
    monkeypatch.setenv(mechanisms.JIT_GUARD_ENV, "")
    from luaskills_runtime._native import luahook
    assert mechanisms.jit_guard_refusal() == luahook.jit_guard_check()
    # the names the native binding gives its guards are the selection's names
    assert (luahook.JIT_PROFILE, luahook.JIT_OFF_HOOK) == (mechanisms.JIT_PROFILE,
                                                           mechanisms.JIT_OFF_HOOK)


def test_mechanism_forced_native_without_c_api_is_an_error(monkeypatch):
    monkeypatch.setenv(mechanisms.GUARD_ENV, "native")
    monkeypatch.setattr(mechanisms, "native_guard_error", lambda: "no lua_sethook")
    with pytest.raises(LuaSkillsError, match="LUASKILLS_GUARD=native, but no lua_sethook"):
        mechanisms.guard_mechanism()


@luajit_only
@pytest.mark.skipif(sys.platform == "win32", reason="lupa's Windows wheels export no lua_* symbol")
def test_native_c_api_is_reachable_here():
    # lupa's Linux wheels export the Lua C API: auto mode must keep the native guard there.
    assert mechanisms.native_guard_error() is None


@pytest.mark.skipif(IS_LUAJIT, reason="Lua 5.1 only: LuaJIT's hooks are global to the state")
def test_lua51_runs_the_lua_hook_guard_and_refuses_the_native_one():
    # PUC Lua's hooks are per coroutine: the native guard's late hook on the main thread would
    # never reach a looping coroutine (tests/lua/test_guard.py's "coroutine" case).
    assert "hooks are per coroutine" in mechanisms.native_guard_error()
    assert engine_info()["guard"] == mechanisms.guard_mechanism() == "lua-hook"
    done = cli_version(LUASKILLS_GUARD="native")
    assert done.returncode == 2
    assert ("LUASKILLS_GUARD=native, but the native guard hooks the main thread only, and "
            "lupa.lua51's hooks are per coroutine") in done.stderr


def cli_version(**env):
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **env)
    return subprocess.run([sys.executable, "-m", "luaskills_runtime", "--version"],
                          capture_output=True, text=True, timeout=60, env=full_env)


def test_engine_info_and_version_name_the_guard_in_use():
    info = engine_info()
    assert info["engine"] == ENGINE
    assert info["lua_version"].startswith("LuaJIT 2.1" if ENGINE == "luajit21" else "Lua 5.1")
    assert info["guard"] == mechanisms.guard_mechanism()
    cases = [("lua-hook", "", "lua-hook")]
    if IS_LUAJIT:   # (lua51 refuses the native mechanisms: test_lua51_runs_the_lua_hook_guard...)
        native = mechanisms.JIT_PROFILE if mechanisms.jit_guard_refusal() is None else \
            mechanisms.JIT_OFF_HOOK
        cases += [("native", "", native), ("native", "off", "jit-off-hook")]
    for forced, jit_guard, shown in cases:
        done = cli_version(LUASKILLS_GUARD=forced, LUASKILLS_JIT_GUARD=jit_guard)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"luaskills-runtime {info['version']} (engine {ENGINE}: ")
        assert done.stdout.rstrip().endswith(f"lupa {info['lupa_version']}, guard {shown})")
    done = cli_version(LUASKILLS_GUARD="bogus")
    assert done.returncode == 2
    assert "LUASKILLS_GUARD must be native, lua-hook or auto" in done.stderr


def test_runlua_uses_the_forced_mechanism():
    # LUASKILLS_GUARD=lua-hook: runlua requests are stopped by LuaHookGuard (its arms are counted).
    code = ("from luaskills_runtime import LuaEngine, engine_info\n"
            "from luaskills_runtime.lua import lua_hook_guard\n"
            "arms = []\n"
            "original = lua_hook_guard.LuaHookGuard.arm\n"
            "def counting_arm(self, *args):\n"
            "    arms.append(args)\n"
            "    return original(self, *args)\n"
            "lua_hook_guard.LuaHookGuard.arm = counting_arm\n"
            "with LuaEngine() as e:\n"
            "    r = e.execute_runlua_request_inline({'code': 'while true do end', 'timeout_ms': 100})\n"
            "print('timed out after 100 ms' in r, len(arms) > 0, engine_info()['guard'])\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), LUASKILLS_GUARD="lua-hook")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "lua-hook"]


class _Sentinel:
    pass


@pytest.mark.parametrize("disarm", [True, False], ids=["disarmed", "dropped-while-armed"])
def test_a_pending_deadline_does_not_keep_a_dropped_vm_alive(disarm):
    import gc
    import weakref

    runtime = new_runtime()
    sentinel = _Sentinel()
    runtime.globals()[b"sentinel"] = sentinel  # freed when the Lua state is
    alive = weakref.ref(sentinel)
    del sentinel
    guard = LuaHookGuard(runtime)
    guard.arm(600_000, MESSAGE)
    if disarm:
        guard.disarm()
    del guard, runtime
    gc.collect()
    assert alive() is None


def test_an_arm_that_fails_in_lua_leaves_the_guard_idle():
    guard = LuaHookGuard(new_runtime())

    def failing_arm():
        raise lupa.LuaMemoryError("not enough memory")

    guard._lua_arm = failing_arm
    with pytest.raises(lupa.LuaMemoryError):
        guard.arm(100, MESSAGE)
    assert guard.state == "idle"
    assert guard.cancel(b"x") is False


# Attempts to switch the Lua-hook guard off from inside a run.  Each one, if it worked, would let
# a loop of 2 s CPU time finish and return "escaped"; the guard must stop it at its timeout.
ESCAPES = {
    "clear `armed` through debug.setupvalue": """
        for i = 1, 64 do
          local name = debug.getupvalue(debug.sethook, i)
          if name == "armed" then debug.setupvalue(debug.sethook, i, false) end
        end
        debug.sethook()""",
    "call the original sethook from an upvalue": """
        for i = 1, 64 do
          local name, value = debug.getupvalue(debug.sethook, i)
          if name == "sethook" then value() end
        end""",
    "join an upvalue of sethook": """
        local armed = false
        pcall(debug.upvaluejoin, debug.sethook, 1, function() return armed end, 1)
        debug.sethook()""",
    "replace every function in the registry": """
        local registry = debug.getregistry()
        for key, value in pairs(registry) do
          if type(value) == "function" then registry[key] = function() end end
        end""",
    "reach the registry through the view's metatable": """
        local mt = debug.getmetatable(debug.getregistry())
        for i = 1, 64 do
          local name, value = debug.getupvalue(mt and mt.__index or print, i)
          if type(value) == "table" then
            for key, fn in pairs(value) do
              if type(fn) == "function" then value[key] = function() end end
            end
          end
        end""",
}


def _lua_hook_engine(policy):
    from luaskills_runtime import HostOptions, LuaEngine

    with pytest.MonkeyPatch.context() as patch:  # guarded VMs made here get the Lua hook
        patch.setattr(guard, "guard_mechanism", lambda: mechanisms.LUA_HOOK)
        with LuaEngine(HostOptions(runlua_pool=(1, 1, 60), policy=policy)) as engine:
            yield engine


@pytest.fixture(scope="module")
def lua_hook_engine():
    # `trusted`: the escapes need the full debug library (README "Safety")
    yield from _lua_hook_engine("trusted")


@pytest.fixture(scope="module")
def lua_hook_default_engine():
    yield from _lua_hook_engine("default")


UNDER_DEFAULT = {
    "user hooks go through the guard": "debug.sethook() debug.sethook(function() end, '', 5) "
                                       "while true do end",
    "hook setter loop": "while true do debug.sethook(function() end, '', 10) debug.sethook() end",
    "pcall loop": "while true do pcall(function() while true do end end) end",
}


@pytest.mark.parametrize("name", sorted(UNDER_DEFAULT))
def test_lua_hook_guard_under_the_default_policy(lua_hook_default_engine, name):
    """The policy leaves user code traceback/getinfo/sethook and no FFI; the guard keeps its
    full debug library and FFI flag cell to itself and still stops every run, and adds no debug
    function to what user code sees."""
    engine = lua_hook_default_engine
    report = engine.execute_runlua_request_inline({"code": UNDER_DEFAULT[name], "timeout_ms": 200})
    assert "luaexec execution timed out after 200 ms" in report, report
    probe = ("local names = {} for k in pairs(debug) do names[#names + 1] = k end table.sort(names) "
             "return table.concat(names, ','), tostring(package.loaded.ffi), "
             "tostring(pcall(require, 'ffi'))")
    lease_id = engine.create_runtime_lease(sid="hook-default", replace=True)["lease_id"]
    for code in (UNDER_DEFAULT[name], probe):
        answer = engine.eval_runtime_lease(lease_id=lease_id, code=code, timeout_ms=200)
        if code is probe:
            assert answer["result"] == "getinfo,sethook,traceback", answer
        else:
            assert "timed out after 200 ms" in answer["message"], answer
    report = engine.execute_runlua_request_inline({"code": probe})
    assert "getinfo,sethook,traceback" in report and "\nnil\n" in report and "false" in report, report


@luajit_only
def test_ffi_the_guard_opened_is_the_one_user_code_requires():
    """Opening the FFI twice resets the state's C types (the guard's flag cell would read as
    another type): a require after the guard gets the guard's module."""
    runtime = new_runtime()
    guard = LuaHookGuard(runtime)
    assert guard.uses_ffi
    assert runtime.eval(b"package.loaded.ffi") is None
    runtime.execute(b"local ffi = require('ffi') ffi.cdef('typedef struct { int a; } lsr_probe_t;')")
    error, _ = run_guarded(guard, runtime.eval(b"function() while true do end end"))
    assert error == MESSAGE.decode()


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_runlua_code_cannot_switch_the_lua_hook_guard_off(lua_hook_engine, name):
    code = ESCAPES[name] + "\nlocal t = os.clock() while os.clock() - t < 2 do end\nreturn 'escaped'"
    start = time.monotonic()
    report = lua_hook_engine.execute_runlua_request_inline({"code": code, "timeout_ms": 300})
    assert "luaexec execution timed out after 300 ms" in report, report
    assert time.monotonic() - start < 0.3 + SLACK_S
    # and the guard still works for the next request on the same VM
    report = lua_hook_engine.execute_runlua_request_inline({"code": "while true do end",
                                                            "timeout_ms": 100})
    assert "luaexec execution timed out after 100 ms" in report, report


WRAPPER_INSTRUCTIONS = 40  # more than debug.sethook's Lua wrapper runs per call, twice
COUNT_EVENTS = b"""
function(count, n)
  local events = 0
  debug.sethook(function(event) if event == "count" then events = events + 1 end end, "", count)
  local x = 0
  for i = 1, n do x = x + i end
  debug.sethook()
  return events
end
"""


# (LuaJIT only: PUC Lua counts the instructions a Lua hook runs itself against the count, so
# under the guard, whose Lua hook dispatches to the user's, a user count hook sees fewer events.)
@luajit_only
@given(count=st.integers(min_value=1, max_value=lua_hook_guard.CHECK_EVERY),
       n=st.integers(min_value=0, max_value=200_000))
@settings(max_examples=40, deadline=None)
def test_user_count_hooks_see_the_same_events_under_the_guard(count, n):
    # Model: the same code in a VM without the guard.  For counts up to CHECK_EVERY the guard's
    # hook runs at the user's count, so the user's hook gets the events it would alone, plus
    # those of the few instructions the guard's Lua wrapper of debug.sethook runs itself (the
    # native guard's wrapper is C and runs none).
    plain = new_runtime().eval(COUNT_EVENTS)
    runtime = new_runtime()
    guarded_fn = runtime.eval(COUNT_EVENTS)
    guard = LuaHookGuard(runtime)
    guard.arm(60_000, MESSAGE)
    try:
        assert abs(guarded_fn(count, n) - plain(count, n)) <= WRAPPER_INSTRUCTIONS // count + 1
    finally:
        guard.disarm()
    assert not guard.fired
