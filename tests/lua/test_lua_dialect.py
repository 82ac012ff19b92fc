"""The reference's Lua dialect in every VM kind (issue 19).

The reference runs LuaJIT built with LUAJIT_ENABLE_LUA52COMPAT.  A standalone luajit is built
from the LuaJIT sources in lupa's sdist with and without that flag (tests/lua/lua_reference, cached
per lupa version).  Every LIBRARY snippet must give exactly the compat luajit's results in
run_lua, runlua and lease evals; LANGUAGE snippets (parser and VM, which no library can change)
are printed as a table and must give plain LuaJIT's results, the same in all three VM kinds.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from _engine_support import luajit_only
from lua_reference import corpus
from lua_reference.build_luajit import BuildUnavailable, luajit_path
from luaskills_runtime import HostOptions, LuaEngine

# (LuaJIT only: on the lua51 engine the parser and VM are PUC Lua's, see the README's Lua section.)
pytestmark = [luajit_only,
              pytest.mark.skipif(sys.platform == "win32", reason="reference luajit is built on POSIX")]

ALL = corpus.LIBRARY + corpus.NATIVE_IO + corpus.LANGUAGE
KINDS = ("run_lua", "runlua", "lease")


def _reference(flavour: str):
    try:
        binary = luajit_path(flavour)
    except BuildUnavailable as error:
        if os.environ.get("LSR_REQUIRE_LUA_REFERENCE") == "1":
            pytest.fail(f"reference luajit ({flavour}) could not be built: {error}")
        pytest.skip(f"reference luajit ({flavour}) could not be built: {error}")
    program = "print((function()\n" + corpus.driver(ALL) + "\nend)())"
    done = subprocess.run([str(binary), "-"], input=program.encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return corpus.decode(done.stdout.decode())


# Policies (README "Safety"): user code sees the dialect under `default`, except the debug
# functions that policy removes (all of debug but traceback, getinfo and sethook), whose dialect
# items (debug.setmetatable's result, debug.getuservalue / setuservalue) are checked under
# `trusted`.  Everything else must match under both.
POLICIES = ("default", "trusted")
_REMOVED_DEBUG = re.compile(r"\bdebug\.(?!traceback\b|getinfo\b|sethook\b)\w+")
TRUSTED_ONLY = {ident for ident, snippet in corpus.LIBRARY + corpus.NATIVE_IO + corpus.LANGUAGE
                if _REMOVED_DEBUG.search(snippet)}


def _in_vms(tmp_path, policy):
    code = corpus.driver(ALL)
    answers = {}
    with LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "lib"), policy=policy)) as engine:
        answers["run_lua"] = corpus.decode(engine.run_lua(code))
        markdown = engine.execute_runlua_request_json_inline(json.dumps({"code": code}))
        assert "## Status\nSUCCESS" in markdown, markdown
        answers["runlua"] = corpus.decode(re.search(r"^([0-9a-f]{64,})$", markdown, re.M).group(1))
        lease_id = engine.create_runtime_lease(sid="dialect")["lease_id"]
        answer = engine.eval_runtime_lease(lease_id=lease_id, code=code)
        assert answer["ok"], answer
        answers["lease"] = corpus.decode(answer["result"])
    return answers


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    compat = _reference("compat52")
    plain = _reference("plain")
    return compat, plain, {policy: _in_vms(tmp_path_factory.mktemp("dialect"), policy)
                           for policy in POLICIES}


def _removed_by_policy(answer):
    """The snippet called a debug function the policy removed (raised, or caught by its pcall)."""
    return "a nil value" in answer


def _table(title, snippets, compat, plain, ours):
    rows = [(ident, compat[ident], plain[ident], *(ours[k][ident] for k in KINDS))
            for ident, _ in snippets]
    head = ("snippet", "luajit 5.2 compat", "luajit plain", *KINDS)
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    lines = [title, " | ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    print("\n" + "\n".join(lines))


@pytest.mark.parametrize("ident", [ident for ident, _ in corpus.LIBRARY])
def test_library_item_matches_compat_luajit(results, ident):
    compat, plain, by_policy = results
    for policy, ours in by_policy.items():
        for kind in KINDS:
            if policy == "default" and ident in TRUSTED_ONLY:
                assert _removed_by_policy(ours[kind][ident]), (policy, kind, ident)
            else:
                assert ours[kind][ident] == compat[ident], (policy, kind, ident)


def test_trusted_only_items_are_the_removed_debug_functions():
    assert TRUSTED_ONLY and all(ident in dict(corpus.LIBRARY) for ident in TRUSTED_ONLY)
    assert {"debug.setmetatable", "debug.uservalue"} <= TRUSTED_ONLY
    assert "pairs" not in TRUSTED_ONLY and "coroutine.running main" not in TRUSTED_ONLY


@pytest.mark.parametrize("ident", [ident for ident, _ in corpus.NATIVE_IO])
def test_native_io_item_matches_compat_luajit_in_main_vms(results, ident):
    compat, plain, by_policy = results
    for policy, ours in by_policy.items():
        assert ours["run_lua"][ident] == compat[ident], (policy, ident)


def test_language_items_are_luajits_own_in_every_vm(results):
    compat, plain, by_policy = results
    ours = by_policy["trusted"]
    _table("Library level (compat52.lua), must equal the compat column:", corpus.LIBRARY,
           compat, plain, ours)
    _table("LuaJIT's own io (main VMs; runlua/lease use managed io, SPEC 4):", corpus.NATIVE_IO,
           compat, plain, ours)
    _table("Parser/VM level (not changeable by a library; README 'Lua dialect'):",
           corpus.LANGUAGE, compat, plain, ours)
    for ident, _ in corpus.LANGUAGE:
        assert compat[ident] != plain[ident], f"{ident}: not a 5.2-mode difference"
        for policy in POLICIES:
            for kind in KINDS:
                assert by_policy[policy][kind][ident] == plain[ident], (policy, kind, ident)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_vm_kind_sees_the_same_library(tmp_path, policy):
    """The globals and the standard library tables a request sees are the same in the three VM
    kinds: the dialect's functions everywhere, no runner helper anywhere; under `default` no
    door to the FFI (the dialect's pipe close keeps its own) and debug cut down."""
    probe = ("local out = {} for _, lib in ipairs({'_G', 'table', 'string', 'math', 'os', 'io', "
             "'coroutine', 'debug', 'package'}) do local t = lib == '_G' and _G or _G[lib] "
             "for k in next, t do out[#out + 1] = lib .. '.' .. tostring(k) end end "
             "table.sort(out) return table.concat(out, ' ')")
    with LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "lib"), policy=policy)) as engine:
        main = set(engine.run_lua(probe).split())
        markdown = engine.execute_runlua_request_json_inline(json.dumps({"code": probe}))
        lease_id = engine.create_runtime_lease(sid="globals")["lease_id"]
        lease = set(engine.eval_runtime_lease(lease_id=lease_id, code=probe)["result"].split())
    returned = markdown.split("## Returned Values")[1]
    runlua = set(re.search(r"```text\n(.*?)\n```", returned, re.S).group(1).split())
    assert {"table.pack", "table.unpack", "_G.rawlen", "package.searchers"} <= main
    assert not {"math.mod", "string.gfind"} & main
    if policy == "trusted":
        assert {"debug.getuservalue", "package.loadlib"} <= main
    else:
        assert {n for n in main if n.startswith("debug.")} == {
            "debug.traceback", "debug.getinfo", "debug.sethook"}
        assert not {"package.loadlib", "_G.ffi"} & main
    assert main == runlua == lease, (main ^ runlua, main ^ lease)


_PIPE_STRESS = r"""
import sys
from luaskills_runtime import LuaEngine
code = '''
local closed, statuses = 0, {}
for i = 1, 60 do
  local f = io.popen("exit " .. (i % 4))
  if i % 3 == 0 then
    local ok, how, code = f:close()
    statuses[#statuses + 1] = tostring(ok) .. how .. code
    closed = closed + 1
    assert(io.type(f) == "closed file")
    assert(not pcall(f.read, f))
  elseif i % 3 == 1 then
    local ok, how, code = io.close(f)
    assert(how == "exit" and code == i % 4)
    closed = closed + 1
  end                                   -- the rest: collected unclosed below
  if i % 10 == 0 then collectgarbage() end
end
local w = io.popen("cat > /dev/null", "w")
assert(w:write("data") == w)
io.output(w)
local ok, how, code = io.close()        -- closes the default output: the pipe
io.output(io.stdout)
collectgarbage() collectgarbage()
return closed .. " " .. table.concat(statuses, ",") .. " " .. tostring(ok) .. how .. code
'''
with LuaEngine() as engine:
    print(engine.run_lua(code))
"""


def test_native_pipe_close_stress_in_subprocess():
    """LuaJIT's own io (main VMs): pipes closed through the FFI path, closed twice, left to the
    collector and closed as the default output; a use-after-free would crash the child."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", _PIPE_STRESS], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120, env=env)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    closed, statuses, last = done.stdout.decode().split()
    assert closed == "40"
    expected = ",".join(("true" if i % 4 == 0 else "nil") + "exit" + str(i % 4)
                        for i in range(3, 61, 3))
    assert statuses == expected
    assert last == "trueexit0"
