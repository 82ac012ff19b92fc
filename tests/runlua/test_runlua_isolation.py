"""Isolation between runlua requests on one pooled VM (beyond the reference) and file mode."""
import json
import os
import threading

import pytest

from _engine_support import luajit_only

from luaskills_runtime import HostOptions, LuaEngine


@pytest.fixture(scope="module")
def engine():
    # `trusted`: the full debug library and ffi, so requests can disturb everything restore
    # must put back (the other policies take most of those tools away).
    with LuaEngine(HostOptions(runlua_pool=(1, 1, 60), policy="trusted")) as eng:
        eng.execute_runlua_request_inline({"code": "return 1"})  # the pool's one VM exists
        yield eng


def run(engine, code, **extra):
    return engine.execute_runlua_request_inline({"code": code, **extra})


def values(report):
    assert report.startswith("# Runtime Execution Result\n"), report
    return json.loads(report.split("```json\n", 1)[1].split("\n```", 1)[0])


PROBE = """return {
  global = type(leftover), rep = type(string.rep), concat = table.concat({"a", "b"}, "-"),
  print = type(print), method = ("ab"):rep(2), upper = ("x"):upper(),
  fs = type(vulcan.fs), read = type(vulcan.fs.read), context = type(vulcan.context),
  extra = type(vulcan.context.extra), json = vulcan.json.encode({1}),
  nil_index = pcall(function() return (nil).x end),
  number_index = pcall(function() return (5).x end),
  g_meta = getmetatable(_G) == nil, loaded = type(package.loaded.my_module),
  path_ok = package.path ~= "changed", gc = collectgarbage("isrunning"),
  io_out = io.output() == io.stdout, math_pi = math.pi, sub = string.sub("hello", 2, 3),
  coroutine = type(coroutine.wrap), string_meta_ok = getmetatable("").__index == string,
  hook = debug.gethook() == nil,
}"""

CLEAN = {
    "global": "nil", "rep": "function", "concat": "a-b", "print": "function", "method": "abab",
    "upper": "X", "fs": "table", "read": "function", "context": "table", "extra": "nil",
    "json": "[1]", "nil_index": False, "number_index": False, "g_meta": True, "loaded": "nil",
    "path_ok": True, "gc": True, "io_out": True, "math_pi": 3.141592653589793, "sub": "el",
    "coroutine": "function", "string_meta_ok": True, "hook": True,
}

DISTURBANCES = {
    "new global": "leftover = {1, 2}",
    "library function removed": "string.rep = nil",
    "library function replaced": "table.concat = function() return 'hacked' end",
    "print removed": "print = nil",
    "string metatable __index": "getmetatable('').__index = {rep = function() return 'no' end}",
    "string metatable replaced": "debug.setmetatable('', {__index = {}})",
    "vulcan subtable removed": "vulcan.fs = nil",
    "vulcan function replaced": "vulcan.fs.read = 42",
    "vulcan.context removed": "vulcan.context = nil",
    "vulcan.context extra key": "vulcan.context.extra = 1",
    "vulcan json replaced": "vulcan.json = {encode = function() return 'x' end}",
    "nil metatable": "debug.setmetatable(nil, {__index = function() return 1 end})",
    "number metatable": "debug.setmetatable(0, {__index = function() return 1 end})",
    "globals metatable": "setmetatable(_G, {__index = function() return 'ghost' end})",
    "module loaded": "package.loaded.my_module = {}; package.preload.my_module = print",
    "package.path": "package.path = 'changed'",
    "gc stopped": "collectgarbage('stop'); collectgarbage('setpause', 1000)",
    "default output": "io.output(io.stderr)",
    "math constant": "math.pi = 3",
    "library table replaced": "string = {sub = function() return 'no' end}",
    "library table metatable": "setmetatable(coroutine, {__index = function() return 1 end}); "
                               "coroutine.wrap = nil",
    "globals through getfenv": "getfenv(0).leftover = true; getfenv(1).print = nil",
    "debug hook": "debug.sethook(function() end, '', 1000)",
    "several at once": "leftover = 1; string.rep = nil; math.pi = 0; vulcan.fs = nil; print = 0",
}


@pytest.mark.parametrize("name", list(DISTURBANCES))
def test_next_request_does_not_see_what_a_request_left(engine, name):
    created = engine.runlua_service.pool.stats()["created"]
    report = run(engine, DISTURBANCES[name] + "\nreturn 'disturbed'")
    assert report.endswith("```text\ndisturbed\n```"), report
    assert values(run(engine, PROBE)) == CLEAN
    assert engine.runlua_service.pool.stats()["created"] == created  # same VM, restored


def test_a_request_sees_its_own_changes(engine):
    report = run(engine, "string.shout = function(s) return s:upper() .. '!' end "
                         "leftover = 'mine' return ('hi'):shout(), leftover")
    assert report.endswith("```text\nHI!\n```\n\n2. \n```text\nmine\n```")


def test_returned_library_table_shows_the_requests_state(engine):
    report = run(engine, "local t = {} t.marker = 'kept' string.extra_field = t "
                         "return string.extra_field")
    assert values(report) == {"marker": "kept"}
    assert values(run(engine, "return {x = type(string.extra_field)}")) == {"x": "nil"}


@luajit_only
def test_ffi_use_discards_the_vm(engine):
    created = engine.runlua_service.pool.stats()["created"]
    report = run(engine, "local ffi = require('ffi') ffi.cdef('struct iso_probe { int x; };') "
                         "return 1")
    assert report.endswith("```json\n1\n```")
    assert engine.runlua_service.pool.stats()["created"] == created
    assert values(run(engine, PROBE)) == CLEAN
    assert engine.runlua_service.pool.stats()["created"] == created + 1  # a fresh VM
    report = run(engine, "local ffi = require('ffi') ffi.cdef('struct iso_probe { int x; };') "
                         "return 2")
    assert report.endswith("```json\n2\n```")  # the declaration did not survive


def test_error_and_timeout_paths_also_restore(engine):
    run(engine, "leftover = 1 string.rep = nil error('x')")
    assert values(run(engine, PROBE)) == CLEAN
    run(engine, "leftover = 1 string.rep = nil while true do end", timeout_ms=100)
    assert values(run(engine, PROBE)) == CLEAN


# ---- file mode --------------------------------------------------------------------------------

@pytest.fixture
def script_dir(tmp_path):
    folder = tmp_path / "scripts dir"
    folder.mkdir()
    (folder / "data.txt").write_text("sibling data\n")
    return folder


def test_file_mode_runs_in_the_files_folder(engine, script_dir):
    script = script_dir / "main.lua"
    script.write_text(
        "#!/usr/bin/env luaskills-runtime\n"
        "local f = assert(io.open('data.txt'))\n"
        "local line = f:read('l') f:close()\n"
        "return {cwd = vulcan.runtime.cwd(), line = line, file = vulcan.context.entry_file,\n"
        "        dir = vulcan.context.entry_dir, n = args.n}\n")
    before = os.getcwd()
    report = engine.execute_runlua_request_inline({"file": str(script), "args": {"n": 4}})
    assert values(report) == {"cwd": str(script_dir), "line": "sibling data",
                              "file": str(script), "dir": str(script_dir), "n": 4}
    assert os.getcwd() == before


def test_file_path_is_relative_to_the_process_cwd(engine, script_dir, monkeypatch):
    (script_dir / "rel.lua").write_text("return vulcan.runtime.cwd()")
    monkeypatch.chdir(script_dir.parent)
    report = engine.execute_runlua_request_inline({"file": "  scripts dir/rel.lua  "})
    assert report.endswith(f"```text\n{script_dir}\n```")
    assert os.getcwd() == str(script_dir.parent)


@pytest.mark.parametrize("body, start, end", [
    ("error('broken')", "runtime error: ", "fail.lua:4: broken"),
    ("local x = = 1", "syntax error: ", "fail.lua:4: unexpected symbol near '='"),
    ("while true do end", "runtime error: luaexec execution timed out after 150 ms", ""),
])
def test_cwd_is_restored_after_failures(engine, script_dir, body, start, end):
    script = script_dir / "fail.lua"
    script.write_text(body)
    before = os.getcwd()
    report = engine.execute_runlua_request_inline({"file": str(script), "timeout_ms": 150})
    error = report.split("```text\n", 1)[1].split("\n```")[0]
    # Lua shortens long chunk names from the left ("...") like any file chunk
    assert error.startswith(start) and error.endswith(end), error
    assert os.getcwd() == before


def test_concurrent_file_requests_each_see_their_own_folder(tmp_path):
    folders = []
    for index in range(4):
        folder = tmp_path / f"d{index}"
        folder.mkdir()
        (folder / "s.lua").write_text(
            "local t0 = os.clock() while os.clock() - t0 < 0.01 do end "
            "return vulcan.runtime.cwd()")
        folders.append(folder)
    results, errors = {}, []
    with LuaEngine(HostOptions(runlua_pool=(1, 4, 60))) as eng:
        def worker(index):
            try:
                for _ in range(5):
                    report = eng.execute_runlua_request_inline(
                        {"file": str(folders[index] / "s.lua")})
                    results.setdefault(index, []).append(report)
            except Exception as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not errors
    for index, reports in results.items():
        assert len(reports) == 5
        for report in reports:
            assert report.endswith(f"```text\n{folders[index]}\n```")
