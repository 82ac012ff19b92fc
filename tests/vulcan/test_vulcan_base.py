"""The base vulcan namespace: runtime, context, cache, json, path, fs, os, io text helpers."""
import logging
import os

import pytest

from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError
from luaskills_runtime.vulcan.cache import CacheStore


def lua_error(engine, code, args=None):
    with pytest.raises(LuaSkillsError) as info:
        engine.run_lua(code, args)
    text = str(info.value)
    assert text.startswith("Lua run_lua error: ")
    return text[len("Lua run_lua error: "):]


def pcall_message(engine, call):
    return engine.run_lua(f"local ok, err = pcall({call}) assert(not ok) return err")


@pytest.mark.parametrize("call,message", [
    ("vulcan.fs.read, nil", "vulcan.fs.read: path must be a string, got nil"),
    ("vulcan.fs.read, 12", "vulcan.fs.read: path must be a string, got number"),
    ("vulcan.fs.read, {}", "vulcan.fs.read: path must be a string, got table"),
    ("vulcan.fs.read, '   '", "vulcan.fs.read: path must not be empty"),
    ("vulcan.fs.read, 'a\\0b'", "vulcan.fs.read: path must not contain NUL bytes"),
    ("vulcan.fs.read, '\\255'", "vulcan.fs.read: path must be a valid UTF-8 string"),
    ("vulcan.fs.exists, true", "vulcan.fs.exists: path must be a string, got boolean"),
    ("vulcan.fs.is_dir, print", "vulcan.fs.is_dir: path must be a string, got function"),
    ("vulcan.fs.list, ''", "vulcan.fs.list: path must not be empty"),
    ("vulcan.fs.write, 'x', nil", "vulcan.fs.write: content must be a string, got nil"),
    ("vulcan.io.read_text, nil", "vulcan.io.read_text: path must be a string, got nil"),
    ("vulcan.io.write_text, 'x', 5", "vulcan.io.write_text: text must be a string, got number"),
    ("vulcan.cache.get, 5", "vulcan.cache.get: id must be a string, got number"),
    ("vulcan.cache.put, {}, -1", "vulcan.cache.put: ttl_sec must be a non-negative integer: number"),
    ("vulcan.cache.put, {}, 'x'", "vulcan.cache.put: ttl_sec must be a non-negative integer: string"),
    ("vulcan.json.decode, '{'", None),
])
def test_argument_errors_use_reference_wording(engine, call, message):
    got = pcall_message(engine, call)
    if message is None:
        assert got.startswith("vulcan.json.decode: ")
    else:
        assert got == message


@pytest.mark.parametrize("fn", ["vulcan.fs.read", "vulcan.fs.exists", "vulcan.fs.list",
                                "vulcan.io.read_text"])
@pytest.mark.parametrize("maker,prefix", [("{}", "table"), ("print", "function"),
                                          ("coroutine.create(function() end)", "thread"),
                                          ("newproxy()", "userdata")])
def test_coerced_lua_object_strings_are_rejected(engine, fn, maker, prefix):
    got = engine.run_lua(f"local s = tostring({maker}) local ok, err = pcall({fn}, s) return {{err, s}}")
    assert got[1].startswith(prefix + ": 0x") or got[1].startswith(prefix + ": ")
    if got[1].startswith(prefix + ": 0x"):
        assert got[0] == f"{fn}: path looks like a coerced Lua object string `{got[1]}`"


def test_fs_round_trip(engine, tmp_path):
    path = str(tmp_path / "f.bin")
    assert engine.run_lua("return vulcan.fs.write(args.p, 'a\\0\\255b')", {"p": path}) is True
    assert (tmp_path / "f.bin").read_bytes() == b"a\x00\xffb"
    assert engine.run_lua("return #vulcan.fs.read(args.p)", {"p": path}) == 4
    assert engine.run_lua("return vulcan.fs.exists(args.p)", {"p": path}) is True
    assert engine.run_lua("return vulcan.fs.is_dir(args.d)", {"d": str(tmp_path)}) is True
    (tmp_path / "b").write_text("")
    assert engine.run_lua("return vulcan.fs.list(args.d)", {"d": str(tmp_path)}) == ["b", "f.bin"]
    missing = pcall_message(engine, f"vulcan.fs.read, '{tmp_path}/nope'")
    assert missing.startswith("vulcan.fs.read: No such file or directory")


def test_io_text_helpers(engine, tmp_path):
    path = str(tmp_path / "t.txt")
    engine.run_lua("return vulcan.io.write_text(args.p, 'h\\195\\169')", {"p": path})
    assert (tmp_path / "t.txt").read_bytes() == "hé".encode()
    assert engine.run_lua("return vulcan.io.read_text(args.p)", {"p": path}) == "hé"
    assert engine.run_lua("return vulcan.io.read_text(args.p, 'latin1')", {"p": path}) == "hÃ©"
    bad = pcall_message(engine, f"vulcan.io.read_text, '{path}', 'klingon'")
    assert bad == "vulcan.io.read_text: unsupported text encoding `klingon`"


def test_path_join_and_os_info(engine):
    assert engine.run_lua("return vulcan.path.join('a', 'b', 'c.txt')") == os.path.join("a", "b", "c.txt")
    info = engine.run_lua("return vulcan.os.info()")
    assert set(info) == {"os", "arch"} and info["os"] in ("linux", "macos", "windows")


def test_json_encode_decode(engine):
    assert engine.run_lua("return vulcan.json.encode({b = 1, a = {true, false}})") == '{"a":[true,false],"b":1}'
    assert engine.run_lua("return vulcan.json.decode('[1, {\"x\": null}]')") == [1, []]
    err = pcall_message(engine, "vulcan.json.encode, {f = print}")
    assert err == "vulcan.json.encode: Cannot convert Lua function to JSON"


def test_runtime_fields(engine):
    assert engine.run_lua("return vulcan.runtime.cwd()") == os.getcwd()
    assert isinstance(engine.run_lua("return vulcan.runtime.temp_dir"), str)
    assert engine.run_lua("return vulcan.runtime.resources_dir") is None
    assert engine.run_lua("return type(vulcan.runtime.lua)") == "table"
    internal = engine.run_lua("local i = vulcan.runtime.internal return {i.luaexec_active, i.tool_name}")
    assert internal == [False]
    context = engine.run_lua("local c = vulcan.context return {c.client_info == nil, c.entry_file == nil, type(c.request), type(c.client_budget)}")
    assert context == [True, True, "table", "table"]


def test_host_dirs_are_reported(tmp_path):
    with LuaEngine(HostOptions(temp_dir=str(tmp_path), resources_dir="/res")) as engine:
        assert engine.run_lua("return {vulcan.runtime.temp_dir, vulcan.runtime.resources_dir}") == [
            str(tmp_path), "/res"]


@pytest.mark.parametrize("level,expected", [("info", logging.INFO), ("warn", logging.WARNING),
                                            ("WARNING", logging.WARNING), ("error", logging.ERROR),
                                            ("fatal", logging.ERROR), ("debug", logging.INFO)])
def test_log_goes_to_python_logging(engine, caplog, level, expected):
    with caplog.at_level(logging.DEBUG, logger="luaskills_runtime"):
        engine.run_lua(f"vulcan.runtime.log('{level}', 'hello ' .. 42)")
    record = caplog.records[-1]
    assert record.name == "luaskills_runtime.lua"   # the area logger below the package one
    assert record.levelno == expected
    assert record.getMessage() == f"[LuaSkill:{level}] hello 42"


def test_cache_put_get_delete(engine):
    result = engine.run_lua("""
        local id = vulcan.cache.put({x = 1, y = {'a'}})
        local got = vulcan.cache.get(id)
        local deleted = vulcan.cache.delete(id)
        return {type(id), got.x, got.y[1], deleted, vulcan.cache.get(id) == nil, vulcan.cache.delete(id)}
    """)
    assert result == ["string", 1, "a", True, True, False]


def test_cache_is_shared_across_engines_but_scoped_by_tool():
    with LuaEngine() as first, LuaEngine() as second:
        entry = first.run_lua("return vulcan.cache.put('shared')")
        assert second.run_lua("return vulcan.cache.get(args.id)", {"id": entry}) == "shared"


def test_cache_store_eviction_ttl_and_scope():
    now = [1000.0]
    store = CacheStore(max_entries=3, clock=lambda: now[0])
    ids = [store.put(("t", "s"), i, None) for i in range(4)]
    assert store.get(("t", "s"), ids[0]) is None  # oldest evicted
    assert store.get(("t", "s"), ids[3]) == 3
    assert store.get(("other", "s"), ids[3]) is None  # scoped
    short = store.put(("t", "s"), "x", 5)
    now[0] += 6
    assert store.get(("t", "s"), short) is None
    capped = store.put(("t", "s"), "y", 10**9)  # TTL capped at 1800 s
    now[0] += 1801
    assert store.get(("t", "s"), capped) is None
