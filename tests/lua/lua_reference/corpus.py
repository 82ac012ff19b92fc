"""Snippets that exercise the reference's Lua dialect (LuaJIT built with LUAJIT_ENABLE_LUA52COMPAT).

LIBRARY items are what compat52.lua provides: every VM kind must give exactly the compat luajit's
results.  LANGUAGE items belong to LuaJIT's parser and VM, which a library cannot change: the test
prints them as a table (README, "Lua dialect").

`driver(snippets)` turns a list of (id, code) into one Lua chunk that runs each snippet with
load() under pcall and returns one line per snippet, "id<TAB>results", hex-encoded so it passes
unchanged through every channel (stdout, Markdown, JSON).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

# (id, code) -- each snippet is the body of a chunk named "=snippet".
LIBRARY: List[Tuple[str, str]] = [
    ("table.pack", "local t = table.pack(1, nil, 3) return t.n, t[1], t[2], t[3]"),
    ("table.pack none", "return table.pack().n"),
    ("table.unpack", "return table.unpack == unpack, table.unpack({1, 2, 3}, 2)"),
    ("rawlen", "return rawlen({1, 2, 3}), rawlen('abcd'), "
               "rawlen(setmetatable({1}, {__len = function() return 9 end}))"),
    ("rawlen number", "return pcall(rawlen, 5)"),
    ("rawlen no value", "local ok, e = pcall(function() local n = rawlen() return n end) return e"),
    ("rawlen bad arg line", "local ok, e = pcall(function() local n = rawlen(true) return n end) return e"),
    ("pairs __pairs", "local t = setmetatable({}, {__pairs = function(self) "
                      "return function(_, k) if not k then return 1, 'a' end end, self, nil end}) "
                      "local out = {} for k, v in pairs(t) do out[#out + 1] = k .. v end "
                      "return table.concat(out)"),
    ("pairs __pairs all results", "local t = setmetatable({}, {__pairs = function() return 1, 2, 3, 4 end}) "
                                  "return pairs(t)"),
    ("pairs plain", "local s = 0 for k, v in pairs({a = 1, b = 2, 3}) do s = s + v end "
                    "return s, select('#', pairs({})), pairs({}) == next"),
    ("pairs __pairs userdata", "local u = newproxy(true) getmetatable(u).__pairs = function(x) "
                               "return function(_, k) if k == nil then return 'only' end end, x, nil end "
                               "local n = 0 for k in pairs(u) do n = n + 1 end return n"),
    ("pairs nil", "local ok, e = pcall(function() local f = pairs(nil) return f end) return e"),
    ("pairs no value", "return pcall(pairs)"),
    ("ipairs __ipairs", "local t = setmetatable({}, {__ipairs = function(self) "
                        "return function(_, i) if i < 2 then return i + 1, 'v' end end, self, 0 end}) "
                        "local out = {} for i, v in ipairs(t) do out[#out + 1] = i .. v end "
                        "return table.concat(out)"),
    ("ipairs plain", "local s = 0 for i, v in ipairs({5, 6, nil, 8}) do s = s + v end return s"),
    ("ipairs bad arg", "local ok, e = pcall(function() for _ in ipairs(5) do end end) return e"),
    ("coroutine.running main", "local co, main = coroutine.running() return type(co), main, "
                               "select('#', coroutine.running())"),
    ("coroutine.running main status", "local co = coroutine.running() return co and coroutine.status(co)"),
    ("coroutine.running inside", "return coroutine.wrap(function() local co, main = coroutine.running() "
                                 "return type(co), main, coroutine.status(co) end)()"),
    ("package.searchers", "return type(package.searchers), package.searchers == package.loaders, "
                          "#package.searchers"),
    ("debug.setmetatable", "local t = {} local r = debug.setmetatable(t, {}) "
                           "return r == t, debug.setmetatable(t, nil) == t, getmetatable(t)"),
    ("debug.setmetatable bad", "local ok, e = pcall(function() local x = debug.setmetatable({}, 5) return x end) "
                               "return e"),
    ("debug.uservalue", "local u, t = newproxy(), {} local r = debug.setuservalue(u, t) "
                        "return r == u, debug.getuservalue(u) == t, debug.getuservalue(1), "
                        "debug.getuservalue('x'), debug.getuservalue()"),
    ("debug.setuservalue bad", "return pcall(debug.setuservalue, 1, {})"),
    ("debug.setuservalue bad table", "local ok, e = pcall(function() "
                                     "local r = debug.setuservalue(newproxy(), 1) return r end) return e"),
    ("setuservalue as method", "local d = {f = debug.setuservalue} "
                               "local ok, e = pcall(function() local r = d:f({}) return r end) return e"),
    ("setuservalue as method arg 2", "local u = newproxy() local d = {f = debug.setuservalue} "
                                     "local ok, e = pcall(function() local r = d.f(u, 1) return r end) return e"),
    ("rawlen via local", "local len = rawlen local ok, e = pcall(function() local r = len(nil) return r end) "
                         "return e"),
    ("io.write returns file", "local r = io.write() return r == io.output(), io.type(r), "
                              "select('#', io.write())"),
    ("file:write returns file", "local f = io.tmpfile() local r = f:write('x', 1) "
                                "local same = r == f f:seek('set') local text = f:read('*a') f:close() "
                                "return same, text"),
    ("os.execute exit", "return os.execute('exit 3')"),
    ("os.execute ok", "return os.execute('true')"),
    ("os.execute signal", "return os.execute('kill -9 $$')"),
    ("os.execute none", "return os.execute()"),
    ("popen close exit", "local f = io.popen('exit 3') return f:close()"),
    ("popen close ok", "local f = io.popen('echo hi') local line = f:read('*l') return line, f:close()"),
    ("popen io.close", "local f = io.popen('exit 5') return io.close(f)"),
    ("popen close signal", "local f = io.popen('kill -9 $$') return f:close()"),
    ("popen after close", "local f = io.popen('exit 2') f:close() "
                          "return io.type(f), pcall(f.close, f), pcall(f.read, f), tostring(f)"),
    ("popen read to end then close", "local f = io.popen('printf 1; printf 2; exit 7') "
                                     "local all = f:read('*a') return all, f:close()"),
    ("math.mod string.gfind", "return math.mod, string.gfind"),
    ("module returns table", "local G = _G local m = module('lsr_dialect_probe', package.seeall) "
                             "return G.type(m), m == G.package.loaded.lsr_dialect_probe, G.getfenv(1) == m"),
    ("string.find past end", "return ('abc'):find('', 10)"),
    ("string.find at end", "return ('abc'):find('', 4)"),
    ("string.find plain past end", "return string.find('abc', 'c', 5, true)"),
    ("string.find number past end", "return string.find(12345, '5', 9)"),
    ("string.find negative", "return ('abc'):find('b', -10)"),
    ("string.match past end", "return string.match('abc', '()', 5)"),
    ("string.match at end", "return string.match('abc', '()', 4)"),
    ("string.find huge init", "return ('abc'):find('a', 2^40)"),
    ("string.find string init", "return ('abc'):find('', '9')"),
    ("string.find no pattern", "local ok, e = pcall(function() local r = string.find('abc') return r end) "
                               "return e"),
    ("string.find bad pattern past end", "local ok, e = pcall(function() "
                                         "local r = string.find('abc', {}, 9) return r end) return e"),
    ("pairs __metatable hidden", "local t = setmetatable({}, {__metatable = false, __pairs = function() "
                                 "return function() end, nil, nil end}) local n = 0 "
                                 "for _ in pairs(t) do n = n + 1 end return n, getmetatable(t)"),
    ("pairs nil metatable __pairs", "debug.setmetatable(nil, {__pairs = function() return 'h' end}) "
                                    "local a = pairs(nil) local ok, e = pcall(pairs) "
                                    "debug.setmetatable(nil, nil) return a, ok, e"),
    ("string.find bad arg", "local ok, e = pcall(function() local r = string.find({}, 'x', 9) return r end) "
                            "return e"),
]


def _generated() -> List[Tuple[str, str]]:
    """A grid over the edges of the items with numeric behaviour: find/match init around the end
    of strings of several lengths, exit codes and signals through os.execute and popen close."""
    cases = []
    for subject in ("", "a", "abc", "hello"):
        for init in (-7, -1, 0, 1, len(subject), len(subject) + 1, len(subject) + 2,
                     len(subject) + 1.5, len(subject) + 2.5, 100):
            for call in (f"string.find({subject!r}, '', {init})",
                         f"string.find({subject!r}, 'l', {init}, true)",
                         f"string.match({subject!r}, '()', {init})",
                         f"string.match({subject!r}, '.$', {init})"):
                cases.append((f"grid {call}", f"return {call}"))
    for code in (0, 1, 2, 126, 127, 128, 255):
        cases.append((f"grid os.execute exit {code}", f"return os.execute('exit {code}')"))
        cases.append((f"grid popen exit {code}", f"return io.popen('exit {code}'):close()"))
    for signal in ("TERM", "KILL", "HUP", "USR1"):
        cases.append((f"grid os.execute {signal}", f"return os.execute('kill -{signal} $$')"))
        cases.append((f"grid popen {signal}", f"return io.popen('kill -{signal} $$'):close()"))
    cases.append(("grid os.execute number", "return os.execute(1)"))
    cases.append(("grid os.execute table", "local ok, e = pcall(function() local r = os.execute({}) "
                                           "return r end) return e"))
    return cases


LIBRARY += _generated()

# LuaJIT's own io, kept by main VMs (run_lua) only: its error texts differ from managed io's
# (SPEC 4), so these are compared in run_lua alone.
NATIVE_IO: List[Tuple[str, str]] = [
    ("io.write bad arg", "local ok, e = pcall(function() local r = io.write({}, 'a') return r end) return e"),
    ("file:write bad arg", "local f = io.tmpfile() local ok, e = pcall(function() "
                           "local r = f:write({}) return r end) f:close() return e"),
    ("file:write closed", "local f = io.tmpfile() f:close() return pcall(f.write, f, 'x')"),
    ("file.write not a file", "local ok, e = pcall(function() local r = io.stdout.write(5, 'x') "
                              "return r end) return e"),
    ("io.close stdout", "return io.close(io.stdout)"),
    ("io.close no file", "return pcall(io.close, 5)"),
    ("popen bad command", "local ok, e = pcall(function() local f = io.popen({}) return f end) return e"),
    ("popen write mode close", "local f = io.popen('cat > /dev/null', 'w') local r = f:write('x') "
                               "return r == f, f:close()"),
    ("popen default output close", "local f = io.popen('cat > /dev/null; exit 4', 'w') io.output(f) "
                                   "local a, b, c = io.close() io.output(io.stdout) return a, b, c"),
    ("popen lines then close", "local f = io.popen('printf \"a\\nb\\n\"; exit 6') local n = 0 "
                               "for line in f:lines() do n = n + 1 end return n, f:close()"),
]

LANGUAGE: List[Tuple[str, str]] = [
    ("# calls __len on tables", "return #setmetatable({1, 2}, {__len = function() return 7 end})"),
    ("__len second argument", "local u = newproxy(true) getmetatable(u).__len = function(a, b) "
                              "return b == a end return #u"),
    ("__lt mixed types", "return pcall(function() "
                         "return setmetatable({}, {__lt = function() return true end}) < 1 end)"),
    ("__lt different handlers", "local a = setmetatable({}, {__lt = function() return true end}) "
                                "local b = setmetatable({}, {__lt = function() return true end}) "
                                "return pcall(function() return a < b end)"),
    ("break not last", "return load('while true do break local x = 1 end') ~= nil"),
    ("goto reserved", "return load('local goto = 1 return goto') ~= nil"),
    ("empty statement ;;", "return load(';;') ~= nil"),
    ("ambiguous call syntax", "return load('local f = print\\n(f)(1)') ~= nil"),
]


_DRIVER = r"""
local snippets = {
%s
}
local type, tostring, format, select, pcall, load = type, tostring, string.format, select, pcall, load
local concat, byte, gsub = table.concat, string.byte, string.gsub

local function show(value)
  local kind = type(value)
  if kind == "string" then return (gsub(format("%%q", value), "\n", "n")) end
  if kind == "number" then return format("%%.14g", value) end
  if kind == "nil" or kind == "boolean" then return tostring(value) end
  return kind
end

local function results(ok, ...)
  local parts = { ok and "ok" or "error" }
  for i = 1, select("#", ...) do parts[#parts + 1] = show((select(i, ...))) end
  return concat(parts, " ")
end

local lines = {}
for i = 1, #snippets do
  local id, code = snippets[i][1], snippets[i][2]
  local fn, message = load(code, "=snippet")
  if fn then
    lines[i] = id .. "\t" .. results(pcall(fn))
  else
    lines[i] = id .. "\t" .. "syntax " .. show(message)
  end
end
return (gsub(concat(lines, "\n"), ".", function(c) return format("%%02x", byte(c)) end))
"""


def _long_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text + "]":
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def driver(snippets: List[Tuple[str, str]]) -> str:
    rows = ",\n".join(f"  {{ {_long_string(i)}, {_long_string(code)} }}" for i, code in snippets)
    return _DRIVER % rows


def decode(hex_text: str) -> Dict[str, str]:
    """id -> results line, from the driver's hex-encoded answer."""
    text = bytes.fromhex(hex_text.strip()).decode("utf-8", "replace")
    answer = {}
    for line in text.split("\n"):
        ident, _, result = line.partition("\t")
        answer[ident] = result
    return answer
