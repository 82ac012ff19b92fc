"""Managed io compatibility library (SPEC 4) in runlua VMs, and install_managed_io for leases."""
import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from luaskills_runtime import HostOptions, LuaEngine
from luaskills_runtime.lua.guard import guarded_run, prepare_guarded_vm
from luaskills_runtime.lua.vm import LEASE
from luaskills_runtime.vulcan import new_vm
from luaskills_runtime.vulcan.io_compat import install_managed_io

posix_only = pytest.mark.skipif(os.name == "nt", reason="uses POSIX shell commands")


@pytest.fixture(scope="module")
def engine():
    with LuaEngine(HostOptions(runlua_pool=(1, 1, 60))) as eng:
        yield eng


def lua(engine, code, **args):
    """Run code in runlua; returns its first value as JSON data (raises on FAILED)."""
    report = engine.execute_runlua_request_inline(
        {"code": "return vulcan.json.encode((function(...) " + code + " end)())", "args": args})
    assert report.startswith("# Runtime Execution Result\n"), report
    return json.loads(report.split("```text\n", 1)[1].split("\n```", 1)[0])


def failure(engine, code, **extra):
    report = engine.execute_runlua_request_inline({"code": code, **extra})
    assert report.startswith("# Runtime Execution Error\n"), report
    return report.split("## Error\n```text\n", 1)[1].split("\n```", 1)[0]


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_bytes(b"line1\nline2\r\n  42 -3.5e2 0x1F nope\nrest of it")
    return str(path)


def test_read_formats(engine, sample):
    result = lua(engine, """
        local f = assert(io.open(args.path, "r"))
        local a = f:read("l")
        local b = f:read("*L")
        local n1, n2, n3, n4 = f:read("n", "*n", "n", "n")
        local rest = f:read("a")
        local at_end = {f:read("a"), f:read("l"), f:read(0), f:read(5)}
        f:close()
        return {a = a, b = b, n1 = n1, n2 = n2, n3 = n3, n4 = n4 == nil, rest = rest,
                end_all = at_end[1], end_line = at_end[2] == nil}""", path=sample)
    assert result == {"a": "line1", "b": "line2\r\n", "n1": 42, "n2": -350, "n3": 31,
                      "n4": True, "rest": "nope\nrest of it", "end_all": "", "end_line": True}


def test_read_counts_and_default_format(engine, sample):
    result = lua(engine, """
        local f = io.open(args.path)
        local first = f:read(3)
        local zero = f:read(0)
        local line = f:read()
        local big = f:read(1e6)
        f:close()
        return {first, zero, line, #big}""", path=sample)
    assert result == ["lin", "", "e1", 39]


def test_write_chains_and_returns_the_file(engine, tmp_path):
    path = str(tmp_path / "out.txt")
    result = lua(engine, """
        local f = assert(io.open(args.path, "w"))
        local same = f:write("a", 1, "b", 2.5):write("c\\n") == f
        f:close()
        local g = io.open(args.path, "a+b")
        g:write("more")
        g:seek("set", 0)
        local all = g:read("a")
        g:close()
        return {same = same, all = all}""", path=path)
    assert result == {"same": True, "all": "a1b2.5c\nmore"}


def test_seek_and_mixed_read_write(engine, tmp_path):
    path = tmp_path / "rw.bin"
    path.write_bytes(b"0123456789")
    result = lua(engine, """
        local f = assert(io.open(args.path, "r+b"))
        local first = f:read(2)
        local pos = f:seek()
        f:write("AB")
        local after_write = f:seek("cur")
        local size = f:seek("end")
        local back = f:seek("set", 1)
        local text = f:read("a")
        local neg, err = f:seek("set", -5)
        f:close()
        return {first = first, pos = pos, after_write = after_write, size = size, back = back,
                text = text, neg = neg == nil, err = err}""", path=str(path))
    assert result == {"first": "01", "pos": 2, "after_write": 4, "size": 10, "back": 1,
                      "text": "1AB456789", "neg": True, "err": "Invalid argument"}
    assert path.read_bytes() == b"01AB456789"


def test_lines_methods(engine, sample):
    result = lua(engine, """
        local out = {}
        local f = io.open(args.path)
        for line in f:lines() do out[#out + 1] = line end
        f:close()
        local count = 0
        for a, b in io.lines(args.path, 1, "l") do count = count + 1 end
        local iter = io.lines(args.path)
        while iter() do end
        local ok, err = pcall(iter)
        return {lines = out, count = count, after_end = err}""", path=sample)
    assert result == {"lines": ["line1", "line2\r", "  42 -3.5e2 0x1F nope", "rest of it"],
                      "count": 4, "after_end": "file is already closed"}


def test_default_input_and_output(engine, tmp_path, sample):
    out_path = str(tmp_path / "default.txt")
    result = lua(engine, """
        local before = io.output() == io.stdout and io.input() == io.stdin
        io.output(args.out)
        io.write("x=", 1, "\\n")
        io.close()
        local closed_default = select(2, pcall(io.write, "y"))
        io.input(args.path)
        local first = io.read()
        local rest = {}
        for line in io.lines() do rest[#rest + 1] = line end
        local f = io.open(args.out)
        io.input(f)
        local written = io.read("a")
        return {before = before, first = first, rest = #rest, written = written,
                closed_default = closed_default}""", path=sample, out=out_path)
    assert result == {"before": True, "first": "line1", "rest": 3, "written": "x=1\n",
                      "closed_default": "vulcan.io.write: default output file is closed"}
    # the next request starts with the standard files again
    assert lua(engine, "return io.output() == io.stdout and io.input() == io.stdin") is True


def test_io_type_tostring_and_closed_files(engine, sample):
    result = lua(engine, """
        local f = io.open(args.path)
        local open_type, text = io.type(f), tostring(f)
        f:close()
        local ok, err = pcall(f.read, f)
        return {open_type, io.type(f), io.type({}), io.type(io.stdout), type(f),
                text:match("^file %(0x%x+%)$") ~= nil, tostring(f), err,
                select(2, io.stdout:close()), select(2, pcall(io.close, f))}""", path=sample)
    assert result == ["file", "closed file", None, "file", "userdata", True, "file (closed)",
                      "attempt to use a closed file", "cannot close standard file",
                      "attempt to use a closed file"]


def test_open_failures_and_argument_errors(engine, tmp_path):
    missing = str(tmp_path / "nope" / "x.txt")
    assert lua(engine, "return {io.open(args.p)}", p=missing) == [
        None, f"{missing}: No such file or directory", 2]
    assert failure(engine, "io.open(nil)") == "runtime error: vulcan.io.open: path must be a string, got nil"
    assert failure(engine, "io.open('')") == "runtime error: vulcan.io.open: path must not be empty"
    assert failure(engine, "io.open('x', 'z')") == "runtime error: vulcan.io.open: invalid mode `z`"
    assert failure(engine, "io.open('x', 5)") == "runtime error: vulcan.io.open: mode must be a string, got number"
    assert failure(engine, "io.lines(args.p)", args={"p": missing}) == (
        f"runtime error: vulcan.io.lines: {missing}: No such file or directory")
    assert failure(engine, "io.input(args.p)", args={"p": missing}) == (
        f"runtime error: vulcan.io.input: {missing}: No such file or directory")
    assert failure(engine, "io.stdin:read('x')") == "runtime error: vulcan.io.read: invalid format `x`"
    assert failure(engine, "io.stdout:write({})") == (
        "runtime error: vulcan.io.write: argument #1 must be a string or number, got table")
    assert failure(engine, "io.stdout:seek('middle')") == "runtime error: vulcan.io.seek: invalid option `middle`"
    assert failure(engine, "io.stdout.read({})") == "runtime error: vulcan.io.read: expected a file handle, got table"
    assert failure(engine, "io.tmpfile():setvbuf('sometimes')") == "runtime error: vulcan.io.setvbuf: invalid mode `sometimes`"
    assert lua(engine, "return io.tmpfile():setvbuf('line')") is True


def test_reading_a_write_only_file_reports_an_error(engine, tmp_path):
    assert lua(engine, "local f = io.open(args.p, 'w') return {f:read('l')}",
               p=str(tmp_path / "w.txt")) == [None, "Bad file descriptor", 9]


def test_tmpfile_update_mode(engine):
    result = lua(engine, """
        local f = io.tmpfile()
        f:write("hello world")
        f:seek("set")
        local all = f:read("a")
        f:seek("set", 0)
        local h = f:read(1)
        f:write("E")
        f:seek("set")
        local changed = f:read("a")
        f:close()
        return {all, h, changed}""")
    assert result == ["hello world", "h", "hEllo world"]


def test_stdout_write_goes_to_the_host_stdout(engine, capsys):
    assert lua(engine, 'io.write("to stdout ", 7, "\\n") io.stdout:flush() '
                       'io.stderr:write("to stderr\\n") return true') is True
    out, err = capsys.readouterr()
    assert out == "to stdout 7\n" and err == "to stderr\n"


@posix_only
def test_popen_read(engine):
    result = lua(engine, """
        local p = io.popen("printf 'one\\ntwo\\n'; printf three")
        local lines = {}
        for line in p:lines() do lines[#lines + 1] = line end
        local ok, how, code = p:close()
        local q = io.popen("echo out; exit 3", "r")
        local text = q:read("a")
        local qok, qhow, qcode = q:close()
        local r = io.popen("kill -9 $$")
        r:read("a")
        local rok, rhow, rcode = r:close()
        return {lines = lines, ok = ok, how = how, code = code, text = text, qok = qok == nil,
                qhow = qhow, qcode = qcode, rok = rok == nil, rhow = rhow, rcode = rcode,
                kind = io.type(p)}""")
    assert result == {"lines": ["one", "two", "three"], "ok": True, "how": "exit", "code": 0,
                      "text": "out\n", "qok": True, "qhow": "exit", "qcode": 3, "rok": True,
                      "rhow": "signal", "rcode": 9, "kind": "closed file"}


def test_popen_write_mode_is_not_implemented(engine):
    assert failure(engine, "io.popen('cat', 'w')") == (
        "runtime error: vulcan.io.popen: write mode is not implemented yet")
    assert failure(engine, "io.popen(nil)") == (
        "runtime error: vulcan.io.popen: command must be a string, got nil")
    assert failure(engine, "io.popen('true', 'x')") == "runtime error: vulcan.io.popen: invalid mode `x`"


def _gone(pid, timeout=3.0):
    """True once pid no longer runs.  A zombie that is not our child counts as gone: it was
    killed and only waits for its new parent (PID 1 here) to reap it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE and process.ppid() != os.getpid():
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


@posix_only
def test_popen_children_left_open_are_killed_at_request_end(engine):
    pid = lua(engine, """
        keep = io.popen("sh -c 'echo $$; exec sleep 30'")
        return tonumber(keep:read("l"))""")
    assert _gone(pid)


@posix_only
def test_popen_read_stops_at_the_request_timeout_and_kills_the_tree(engine, tmp_path):
    marker = tmp_path / "pids"
    start = time.monotonic()
    error = failure(engine, "local p = io.popen(args.cmd) return p:read('a')", timeout_ms=300,
                    args={"cmd": f"sleep 30 & echo $! > '{marker}'; sleep 30"})
    assert error == "runtime error: luaexec execution timed out after 300 ms"
    assert time.monotonic() - start < 0.8
    assert _gone(int(marker.read_text().strip()))


@posix_only
def test_popen_close_waits_until_the_deadline_then_kills(engine):
    start = time.monotonic()
    error = failure(engine, "local p = io.popen('exec sleep 30') p:close()", timeout_ms=300)
    assert error == "runtime error: luaexec execution timed out after 300 ms"
    assert time.monotonic() - start < 0.8


def test_native_io_when_disabled():
    with LuaEngine(HostOptions(enable_managed_io_compat=False)) as eng:
        report = eng.execute_runlua_request_inline(
            {"code": "return debug.getinfo(io.open, 'S').what"})
        assert report.endswith("```text\nC\n```")


@posix_only
def test_install_managed_io_on_a_lease_vm():
    with LuaEngine() as eng:
        vm = new_vm(eng._state, LEASE)
        guarded = prepare_guarded_vm(vm)
        assert install_managed_io(vm, guarded.current_limits) is not None
        result = guarded_run(guarded, "p = io.popen(\"sh -c 'echo $$; exec sleep 30'\") "
                                 "return tonumber(p:read('l')), debug.getinfo(io.open, 'S').what",
                             timeout_ms=5000)
        assert result.ok, result
        pid, what = result.values
        assert what == b"Lua"
        # a lease keeps its handles between evals ...
        assert guarded_run(guarded, "return io.type(p)", timeout_ms=5000).values == (b"file",)
        # ... and closing the VM ends the child
        vm.close()
        assert _gone(pid)


def test_collected_handles_are_released(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("x")
    with LuaEngine() as eng:
        vm = new_vm(eng._state, LEASE)
        guarded = prepare_guarded_vm(vm)
        managed_io = install_managed_io(vm, guarded.current_limits)
        result = guarded_run(guarded, f"local p = [[{path}]] for i = 1, 50 do io.open(p) end "
                                 "collectgarbage() collectgarbage() keep = io.open(p)",
                             timeout_ms=5000)
        assert result.ok, result
        assert managed_io.open_count == 1
        vm.close()
        assert managed_io.open_count == 0


def test_handles_collected_while_pending_ones_are_released_are_not_lost(tmp_path):
    """A GC step inside the release of pending handles runs finalizers that note more of them;
    none may be lost (it depends on GC timing, so many VMs are tried: before the fix about one
    in three lost some)."""
    path = tmp_path / "f.txt"
    path.write_text("x")
    with LuaEngine() as eng:
        for _ in range(30):
            vm = new_vm(eng._state, LEASE)
            guarded = prepare_guarded_vm(vm)
            managed_io = install_managed_io(vm, guarded.current_limits)
            result = guarded_run(guarded, f"local p = [[{path}]] for i = 1, 50 do io.open(p) end "
                                     "collectgarbage() collectgarbage() keep = io.open(p)",
                                 timeout_ms=5000)
            assert result.ok, result
            assert managed_io.open_count == 1
            vm.close()
            assert managed_io.open_count == 0


def test_open_handles_at_interpreter_exit_do_not_crash(tmp_path):
    # a finaliser calling into Python while lupa tears the Lua state down used to crash
    script = tmp_path / "exit.py"
    script.write_text(
        "from luaskills_runtime import LuaEngine\n"
        "from luaskills_runtime.lua.guard import guarded_run, prepare_guarded_vm\n"
        "from luaskills_runtime.lua.vm import LEASE\n"
        "from luaskills_runtime.vulcan import new_vm\n"
        "from luaskills_runtime.vulcan.io_compat import install_managed_io\n"
        "eng = LuaEngine()\n"
        "vm = new_vm(eng._state, LEASE)\n"
        "guarded = prepare_guarded_vm(vm)\n"
        "install_managed_io(vm, guarded.current_limits)\n"
        "assert guarded_run(guarded, 'f = io.tmpfile() g = io.tmpfile() g = nil', timeout_ms=5000).ok\n"
        "print('done')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
