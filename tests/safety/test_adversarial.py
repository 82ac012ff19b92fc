"""Adversarial requests: each runs in its own process (tests/safety/case_runner.py), and the test
asserts the host's exit status, the request's error and that a following request succeeds, on
run_lua, runlua and lease eval, under each policy where the case applies (README "Safety")."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
from _engine_support import IS_LUAJIT

import luaskills_runtime

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "case_runner.py")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(luaskills_runtime.__file__)))
SURFACES = ("run_lua", "runlua", "lease")
ALL_POLICIES = ("default", "trusted", "untrusted")
LIMITED = ("default", "untrusted")


def run_case(surface, policy, code, env=None, **options):
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_PARENT, environment.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, RUNNER, surface, policy, code, json.dumps(options)],
                          capture_output=True, timeout=120, env=environment)
    assert done.returncode == 0, (done.returncode, done.stderr.decode(errors="replace")[-2000:])
    lines = done.stdout.decode().splitlines()
    # Only the runner's JSON line reaches fd 1: nothing from Lua wrote behind the host's back.
    assert len(lines) == 1, done.stdout
    answer = json.loads(lines[0])
    assert answer["next_ok"], answer["next_error"]
    return answer


def cases(policies):
    return [(surface, policy) for surface in SURFACES for policy in policies]


# ---- crashes of the C stack ----------------------------------------------------------------

C_STACK = {
    "coroutine.wrap recursion": "local function f() return coroutine.wrap(f)() end return f()",
    "coroutine.resume recursion":
        "local function f() local co = coroutine.create(f) local ok, e = coroutine.resume(co) "
        "if not ok then error(e, 0) end end return f()",
    "string.gsub recursion": "local function f(s) return (string.gsub(s, '.', f)) end return f('aaa')",
    "string.gsub table recursion":
        "local t t = setmetatable({}, {__index = function(_, k) return (string.gsub('a', 'a', t)) end}) "
        "return string.gsub('a', 'a', t)",
    "table.sort recursion":
        "local t t = setmetatable({}, {__lt = function() table.sort({t, t, t}) return true end}) "
        "table.sort({t, t, t})",
    "load reader recursion":
        "local function r() local f, e = load(r) if not f then error(e, 0) end end "
        "local f, e = load(r) error(e, 0)",
}


@pytest.mark.parametrize("name", sorted(C_STACK))
@pytest.mark.parametrize("surface,policy", cases(ALL_POLICIES))
def test_c_stack_exhaustion_is_a_lua_error(surface, policy, name):
    answer = run_case(surface, policy, C_STACK[name])
    assert answer["error"] is not None and "stack overflow" in answer["error"], answer


# ---- finalizers that call vulcan functions while the VM is freed ----------------------------

GC_CALLBACKS = ("for i = 1, 2e4 do local p = newproxy(true) "
                "getmetatable(p).__gc = function() vulcan.json.encode({1}) end end return 1")


@pytest.mark.parametrize("surface", SURFACES)
def test_finalizers_calling_vulcan_do_not_crash_the_teardown(surface):
    answer = run_case(surface, "trusted", GC_CALLBACKS)
    assert answer["error"] is None, answer


@pytest.mark.parametrize("code", [GC_CALLBACKS, "local p = newproxy(true) "
                                  "getmetatable(p).__gc = function() while true do end end"])
@pytest.mark.parametrize("surface,policy", cases(LIMITED))
def test_finalizers_are_refused(surface, policy, code):
    # A looping finalizer froze the host: LuaJIT runs __gc with hooks off (no timeout).
    answer = run_case(surface, policy, code)
    assert f"__gc finalizers are not allowed by the `{policy}` policy" in answer["error"], answer


# ---- os.exit --------------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["os.exit(3)", "os.exit(true)", "os.exit()"])
@pytest.mark.parametrize("surface,policy", cases(ALL_POLICIES))
def test_os_exit_raises(surface, policy, code):
    answer = run_case(surface, policy, code)
    assert "os.exit is not available" in answer["error"], answer


# ---- what only serves to crash: ffi, loadlib, foreign C modules, debug internals -----------

def _libc():
    found = glob.glob("/lib/x86_64-linux-gnu/libc.so.6") + glob.glob("/lib*/libc.so.6") \
        + glob.glob("/usr/lib*/libc.so.6")
    return found[0] if found else "libc.so.6"


REFUSED = {
    "ffi null read": ("local ffi = require('ffi') return ffi.cast('int*', 0)[0]",
                      "module 'ffi' not found"),
    "ffi abort": ("require('ffi').C.abort()", "module 'ffi' not found"),
    # main VMs load the FFI for the dialect's pipe close: user code still must not reach it
    "loaded ffi": ("return package.loaded.ffi.C.abort()", "a nil value"),
    "preload ffi": ("return package.preload.ffi().C.abort()", "a nil value"),
    "loadlib abort": (f"package.loadlib('{_libc()}', 'abort')()", "loadlib"),
    "registry wipe": ("for k in pairs(debug.getregistry()) do debug.getregistry()[k] = nil end",
                      "getregistry"),
    "getupvalue": ("return debug.getupvalue(vulcan.json.encode, 1)", "getupvalue"),
    "upvaluejoin": ("debug.upvaluejoin(print, 1, print, 1)", "upvaluejoin"),
    "setlocal": ("debug.setlocal(1, 1, nil)", "setlocal"),
    "foreign type metatable": ("debug.setmetatable(0, {__index = function() return 1 end})",
                               "setmetatable"),
    "binary chunk": ("local f, e = load(string.dump(function() end)) if not f then error(e, 0) end",
                     "attempt to load a binary chunk (not allowed by the"),
    "binary module file": (
        "local dir = vulcan.runtime.temp_dir "
        "local h = io.open(dir .. '/lsr_bc_probe.lua', 'wb') "
        "h:write(string.dump(function() return 1 end)) h:close() "
        "package.path = dir .. '/?.lua;' .. package.path require('lsr_bc_probe')",
        "error loading module 'lsr_bc_probe'"),
    "jit.attach handler": ("jit.attach(function() while true do end end, 'bc') load('return 1')",
                           "jit.attach is not allowed by the"),
    "hook on another coroutine": ("debug.sethook(coroutine.create(print), print, 'l')",
                                  "debug.sethook on another coroutine is not allowed by the"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
@pytest.mark.parametrize("surface,policy", cases(LIMITED))
def test_crash_tools_are_gone(surface, policy, name):
    if name == "jit.attach handler" and not IS_LUAJIT:
        pytest.skip("LuaJIT only: lupa.lua51 has no jit module")
    code, expected = REFUSED[name]
    answer = run_case(surface, policy, code)
    assert answer["error"] is not None and expected in answer["error"], answer


@pytest.fixture(scope="module")
def c_module_dir(tmp_path_factory):
    """A folder holding a real C module (the timeout guard's, renamed for its luaopen_ name)."""
    folder = tmp_path_factory.mktemp("cmod")
    hook = glob.glob(os.path.join(os.path.dirname(luaskills_runtime.__file__), "_native",
                                  "luahook*.so"))[0]
    shutil.copy(hook, folder / "luaskills_hook.so")
    return str(folder)


@pytest.mark.parametrize("surface,policy", cases(ALL_POLICIES))
def test_c_modules_load_only_from_host_roots(surface, policy, c_module_dir):
    code = (f"package.cpath = '{c_module_dir}/?.so;' .. package.cpath "
            "local ok, err = pcall(require, 'luaskills_hook') return {ok = ok, err = tostring(err)}")
    answer = run_case(surface, policy, code)
    assert answer["error"] is None
    assert answer["result"]["ok"] is (policy == "trusted"), answer
    if policy != "trusted":
        assert "module 'luaskills_hook' not found" in answer["result"]["err"]


def test_lease_c_roots_are_the_host_roots(c_module_dir, tmp_path):
    # A lease's own c_roots load under the default policy.
    code = (f"import json, sys\nfrom luaskills_runtime import LuaEngine\n"
            f"e = LuaEngine()\n"
            f"l = e.create_runtime_lease({{'sid': 's', 'c_roots': [{c_module_dir!r}]}})\n"
            "r = e.eval_runtime_lease({'lease_id': l['lease_id'], 'code': "
            "\"return select('#', require('luaskills_hook'))\"})\n"
            "e.close()\nprint(json.dumps(r))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.decode().splitlines()[-1])
    assert answer["ok"] and answer["result"] == 1, answer   # require ran: the module loaded


# ---- output ----------------------------------------------------------------------------------

OUTPUT = ("print('p', 1) io.write('w', 2, '\\n') io.stdout:write('o\\n') io.stderr:write('e\\n') "
          "return 1")


@pytest.mark.parametrize("managed_io", [True, False])
@pytest.mark.parametrize("surface,policy", cases(ALL_POLICIES))
def test_lua_output_goes_to_the_host_sink(surface, policy, managed_io):
    answer = run_case(surface, policy, OUTPUT, enable_managed_io_compat=managed_io)
    assert answer["error"] is None, answer
    expected = [["stdout", "p\t1\n"], ["stdout", "w2\n"], ["stdout", "o\n"], ["stderr", "e\n"]]
    if surface == "runlua":   # runlua captures print in its report
        expected = expected[1:]
    assert answer["sink"] == expected


# ---- untrusted: processes, environment, files ----------------------------------------------

PROCESS = {
    "exec kills the host": ("vulcan.process.exec('kill -9 $PPID')", "vulcan.process.exec"),
    "exec alias": ("vulcan.exec({command = 'true'})", "vulcan.process.exec"),
    "session": ("vulcan.process.session.open({command = 'sh'})", "vulcan.process.session.open"),
    "io.popen": ("io.popen('kill -9 $PPID')", "io.popen"),
    "os.execute": ("os.execute('kill -9 $PPID')", "os.execute"),
}


@pytest.mark.parametrize("name", sorted(PROCESS))
@pytest.mark.parametrize("surface", SURFACES)
def test_untrusted_creates_no_process(surface, name):
    code, what = PROCESS[name]
    answer = run_case(surface, "untrusted", code)
    assert answer["error"] is not None
    assert f"{what} is not allowed by the `untrusted` policy" in answer["error"], answer


@pytest.mark.parametrize("surface", SURFACES)
def test_untrusted_environment_is_filtered(surface):
    answer = run_case(surface, "untrusted", "return {os.getenv('LSR_SECRET'), os.getenv('LSR_OK')}",
                      env={"LSR_SECRET": "s3cret", "LSR_OK": "fine"}, env_allow=["LSR_OK"])
    assert answer["result"] == [None, "fine"], answer


FILES = {
    "fs.read": "return vulcan.fs.read('/etc/hostname')",
    "proc environ": "return io.open('/proc/self/environ'):read('a')",
    "dot-dot escape": "return vulcan.fs.read(vulcan.runtime.temp_dir .. '/../etc/hostname')",
    "read_text": "return vulcan.io.read_text('/etc/hostname')",
    "loadfile": "return loadfile('/etc/hostname')",
    "fs.list": "return vulcan.fs.list('/')",
}


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("surface", SURFACES)
def test_untrusted_files_stay_in_roots(surface, name):
    answer = run_case(surface, "untrusted", FILES[name])
    assert answer["error"] is not None
    assert "(outside the policy's fs_roots) is not allowed by the `untrusted` policy" \
        in answer["error"], answer


def test_untrusted_symlink_cannot_escape(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to("/etc")
    (root / "mine.txt").write_text("mine")
    answer = run_case("run_lua", "untrusted",
                      f"return {{vulcan.fs.read('{root}/mine.txt'), "
                      f"pcall(vulcan.fs.read, '{root}/link/hostname')}}",
                      fs_roots=[str(root)])
    assert answer["result"][0] == "mine" and answer["result"][1] is False, answer


# ---- memory cap ------------------------------------------------------------------------------

CAP = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as handle:
        handle.truncate(70_000_000)
    return str(path)


@pytest.mark.parametrize("surface", SURFACES)
def test_callback_answer_over_the_cap_fails_that_call(surface, big_file):
    # was: the whole host deadlocked on the GIL (lupa pushed the string under the cap)
    answer = run_case(surface, "default",
                      f"big = vulcan.fs.read('{big_file}') return #big", max_memory_bytes=CAP)
    assert answer["error"] is not None and (
        f"memory limit of {CAP} bytes exceeded" in answer["error"]
        or "not enough memory" in answer["error"]), answer


@pytest.mark.parametrize("surface", SURFACES)
def test_exec_output_over_the_cap_is_refused(surface):
    # was: the eval succeeded, the next one ended the host with "PANIC: unprotected error"
    answer = run_case(surface, "default",
                      "big = vulcan.process.exec('head -c 100000000 /dev/zero').stdout return #big",
                      max_memory_bytes=CAP)
    assert answer["error"] is not None
    assert f"captured output of 100000000 bytes exceeds the memory limit of {CAP} bytes" \
        in answer["error"], answer


@pytest.mark.parametrize("surface", SURFACES)
def test_lua_allocation_over_the_cap(surface):
    answer = run_case(surface, "default", "local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end",
                      max_memory_bytes=CAP)
    assert answer["error"] is not None and ("memory" in answer["error"]), answer


@pytest.mark.parametrize("surface", SURFACES)
def test_untrusted_has_a_default_cap(surface):
    answer = run_case(surface, "untrusted", "return collectgarbage('count') < 300 * 1024 and "
                      "select(2, pcall(string.rep, 'x', 300 * 1024 * 1024))")
    assert (answer["error"] is not None and "memory" in answer["error"]) or \
        "memory" in str(answer["result"]), answer


@pytest.mark.parametrize("name", sorted(C_STACK))
def test_c_stack_limit_fits_a_512k_host_thread(name):
    # The depth limit must trigger before a host thread with a small stack runs out.
    script = (
        "import sys, threading\n"
        "from luaskills_runtime import LuaEngine, LuaSkillsError\n"
        "threading.stack_size(512 * 1024)\n"
        "out = []\n"
        "def run():\n"
        "    with LuaEngine() as engine:\n"
        "        try:\n"
        "            engine.run_lua(sys.argv[1])\n"
        "        except LuaSkillsError as error:\n"
        "            out.append(str(error))\n"
        "        out.append(engine.run_lua('return 2'))\n"
        "thread = threading.Thread(target=run)\nthread.start()\nthread.join()\nprint(out)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", script, C_STACK[name]], capture_output=True,
                          timeout=120, env=env)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "stack overflow" in done.stdout.decode() and ", 2]" in done.stdout.decode()
