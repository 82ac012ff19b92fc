-- The library half of LuaJIT's Lua 5.2 compatibility mode (LUAJIT_ENABLE_LUA52COMPAT, which the
-- reference's mlua feature `luajit52` turns on; lupa's LuaJIT is built without it).  Installed
-- once into every VM by LuaVM (lua/vm.py), before anything else captures library functions.
-- Each item behaves as LuaJIT's own C code does in that mode (doc/extensions.html, lib_*.c under
-- `#if LJ_52`); tests/lua/lua_reference checks them against a luajit built with the flag.
-- What the parser and the VM do differently (`#` calling __len on tables, __lt/__le for mixed
-- types, `break` anywhere, `goto` reserved) cannot be added by a library: see the README.
--
-- Errors: a wrapper whose arguments are wrong tail-calls the original with them, so LuaJIT raises
-- its own message, naming the function as the caller called it, at the caller's line.  New
-- functions raise the same way through arg_error.
-- Arguments: the globals table; the path of the library holding the Lua C API (lupa's LuaJIT
-- module), for the main thread; whether to give LuaJIT's own io.popen handles the detailed close
-- status (main VMs only: it loads the FFI; runlua and lease VMs replace io with managed io,
-- which does it itself).
local G, lua_api_library, native_pipe_status = ...
local type, select, rawget, tonumber, tostring, error = type, select, rawget, tonumber, tostring, error
local floor = math.floor
local getmetatable, getinfo = debug.getmetatable, debug.getinfo
local getfenv, setfenv, getfenv_any = getfenv, setfenv, debug.getfenv
local table, string, coroutine, debug, package, os = G.table, G.string, G.coroutine, G.debug,
  G.package, G.os
local windows = type(package.config) == "string" and package.config:sub(1, 1) == "\\"

-- LuaJIT's argument error for the function at level 2 (the wrapper), raised at level 3 (its
-- caller): "bad argument #n to 'name' (what)", or "calling 'name' on bad self (what)" when the
-- wrapper was called as a method and the first argument is wrong.
local function arg_error(narg, what)
  local info = getinfo(2, "n")
  local name = info and info.name or "?"
  if info and info.namewhat == "method" then
    narg = narg - 1
    if narg == 0 then error("calling '" .. name .. "' on bad self (" .. what .. ")", 3) end
  end
  error("bad argument #" .. narg .. " to '" .. name .. "' (" .. what .. ")", 3)
end

-- "got no value" when the argument is absent, as lj_err_argt reports it.
local function typename(n, count, value)
  if n > count then return "no value" end
  return type(value)
end

-- ---- base library -----------------------------------------------------------------------------
local next_pairs, next_ipairs = G.pairs, G.ipairs

local function metamethod(value, event)
  local mt = getmetatable(value)
  if mt == nil then return nil end
  return rawget(mt, event)
end

-- pairs/ipairs: a __pairs/__ipairs metamethod of any value is called with that value alone and
-- all its results returned; otherwise LuaJIT's own (tables, cdata, errors).
-- (The base getmetatable is a fast function and answers nil only for a value without a
-- metatable, so plain tables take one cheap call; the rest look the handler up raw.)
local plain_getmetatable = G.getmetatable

local function pairs(...)
  local value = ...
  if plain_getmetatable(value) ~= nil then
    local handler = metamethod(value, "__pairs")
    if handler ~= nil and select("#", ...) > 0 then return handler(value) end
  end
  return next_pairs(...)
end

local function ipairs(...)
  local value = ...
  if plain_getmetatable(value) ~= nil then
    local handler = metamethod(value, "__ipairs")
    if handler ~= nil and select("#", ...) > 0 then return handler(value) end
  end
  return next_ipairs(...)
end
G.pairs, G.ipairs = pairs, ipairs

-- rawlen: a string's byte length or a table's border, never __len (this VM's `#` on a table
-- never calls __len, so it is the raw length).
local function rawlen(...)
  local value = ...
  local kind = type(value)
  if kind == "string" or kind == "table" then return #value end
  arg_error(1, "table expected, got " .. typename(1, select("#", ...), value))
end
G.rawlen = rawlen

-- ---- table ------------------------------------------------------------------------------------
if table.pack == nil then
  table.pack = function(...) return { n = select("#", ...), ... } end
end
if table.unpack == nil then table.unpack = G.unpack end

-- ---- string: find/match return nil when init is past the end + 1 (lib_string.c, LJ_52) ----------
-- (LuaJIT converts init to int32 first, so values beyond that range take the original's path.)
local function past_end(s, pattern, init)
  local kind = type(s)
  local start = tonumber(init)
  if start == nil or start >= 2147483648 or (kind ~= "string" and kind ~= "number") then
    return false
  end
  if type(pattern) ~= "string" and type(pattern) ~= "number" then return false end
  local length = kind == "string" and #s or #tostring(s)
  return floor(start) > length + 1
end

local function bounded(original)
  return function(...)
    local s, pattern, init = ...
    if init ~= nil then
      -- the common case, decided inline: a string and a number init not past the end
      if type(s) == "string" and type(init) == "number" and init < #s + 2 then
        return original(...)
      end
      if past_end(s, pattern, init) then return nil end
    end
    return original(...)
  end
end
string.find = bounded(string.find)
string.match = bounded(string.match)
string.gfind = nil

-- ---- math -------------------------------------------------------------------------------------
G.math.mod = nil

-- ---- coroutine.running: (thread, is_main) -------------------------------------------------------
-- 5.1 mode's coroutine.running() pushes the main thread and then returns nil in its place, so
-- Lua code cannot name the main thread.  lua_pushthread itself can: its signature is a
-- lua_CFunction's, and called from the main thread (as this chunk is) it pushes that thread and
-- returns 1, one result.  package.loadlib takes it from the library that holds the Lua API.
-- (Should that fail, the main thread answers nil, true: still "main", but no thread object.)
do
  local running = coroutine.running
  local main_thread
  local loadlib = package.loadlib
  if type(lua_api_library) == "string" and type(loadlib) == "function" then
    local push_thread = loadlib(lua_api_library, "lua_pushthread")
    if type(push_thread) == "function" then
      local thread = push_thread()
      if type(thread) == "thread" then main_thread = thread end
    end
  end
  coroutine.running = function()
    local thread = running()
    if thread ~= nil then return thread, false end
    return main_thread, true
  end
end

-- ---- debug ------------------------------------------------------------------------------------
do
  local set = debug.setmetatable
  debug.setmetatable = function(...)
    local value, mt = ...
    if select("#", ...) < 2 or (mt ~= nil and type(mt) ~= "table") then return set(...) end
    set(value, mt)
    return value
  end
end

local function getuservalue(value)
  if type(value) ~= "userdata" then return nil end
  return (getfenv_any(value))
end
debug.getuservalue = getuservalue

local setuservalue_env = debug.setfenv
local function setuservalue(...)
  local value, env = ...
  local count = select("#", ...)
  if type(value) ~= "userdata" then
    arg_error(1, "userdata expected, got " .. typename(1, count, value))
  end
  if type(env) ~= "table" then arg_error(2, "table expected, got " .. typename(2, count, env)) end
  setuservalue_env(value, env)
  return value
end
debug.setuservalue = setuservalue

-- ---- package ----------------------------------------------------------------------------------
package.searchers = package.loaders

-- module() returns the module table.  The original sets the environment of the Lua function
-- that calls it: here a fresh closure, whose environment is then the module table; that table
-- becomes the environment of our caller.
if type(G.module) == "function" then
  local original = G.module
  G.module = function(...)
    local name = ...
    if type(name) ~= "string" and type(name) ~= "number" then return original(...) end
    local holder = function(...) original(...) end
    holder(...)
    local module_table = getfenv(holder)
    setfenv(2, module_table)
    return module_table
  end
end

-- ---- os.execute: (true|nil, "exit"|"signal", code) --------------------------------------------
-- luaL_execresult in 5.2 mode, from a wait status (system()/pclose() result, not -1).
local function exec_result(status)
  if windows then
    if status == 0 then return true, "exit", 0 end
    return nil, "exit", status
  end
  local low = status % 128
  if low ~= 0 and low ~= 127 then return nil, "signal", low end
  if low == 0 then status = floor(status / 256) % 256 end
  if status == 0 then return true, "exit", 0 end
  return nil, "exit", status
end

if type(os) == "table" and type(os.execute) == "function" then
  local execute = os.execute
  os.execute = function(...)
    local command = ...
    if command == nil then
      execute()
      return true
    end
    if type(command) ~= "string" and type(command) ~= "number" then return execute(...) end
    local status = execute(command)
    -- system() failed: 5.1 mode keeps no errno to report
    if status == -1 then return nil, "system() failed", -1 end
    return exec_result(status)
  end
end

-- ---- io: write returns the file (LuaJIT's own io; runlua and lease VMs replace io with managed
-- io, which follows the same rules itself) --------------------------------------------------------
local function writable(...)
  for i = 1, select("#", ...) do
    local kind = type((select(i, ...)))
    if kind ~= "string" and kind ~= "number" then return false end
  end
  return true
end

local io = G.io
local file_methods = type(io) == "table" and rawget(debug.getregistry(), "FILE*")
file_methods = type(file_methods) == "table" and rawget(file_methods, "__index")
if type(file_methods) == "table" and type(file_methods.write) == "function" then
  local io_type, io_output, io_write, file_write = io.type, io.output, io.write, file_methods.write
  io.write = function(...)
    if not writable(...) or io_type(io_output()) ~= "file" then return io_write(...) end
    local ok, message, code = io_write(...)
    if ok then return io_output() end
    return ok, message, code
  end
  file_methods.write = function(file, ...)
    if io_type(file) ~= "file" or not writable(...) then return file_write(file, ...) end
    local ok, message, code = file_write(file, ...)
    if ok then return file end
    return ok, message, code
  end
end

-- ---- io.popen handles of LuaJIT's own io: close returns the detailed exit status ----------------
-- 5.1 mode's close calls pclose() and keeps only "it did not fail", so a pipe opened here is closed
-- by calling pclose() through the FFI on the handle's FILE*: LuaJIT's file userdata is
-- IOFileUD { FILE *fp; uint32_t type; } (lib_io.c; type 1 = pipe).  Clearing fp afterwards is what
-- LuaJIT's own close does: the handle reads as "closed file" and its finaliser skips it.  Symbols
-- are declared under private names (asm labels) so user cdefs of pclose/strerror still work.
if native_pipe_status and type(file_methods) == "table" and type(io.popen) == "function" then
  local loaded, ffi = pcall(require, "ffi")
  local pclose = windows and "_pclose" or "pclose"
  local declared = loaded and type(ffi) == "table" and pcall(ffi.cdef,
      "int luaskills_compat52_pclose(void *stream) __asm__(\"" .. pclose .. "\");\n" ..
      "char *luaskills_compat52_strerror(int errnum) __asm__(\"strerror\");")
  -- both symbols are resolved now: a C library without them leaves LuaJIT's close in place
  if declared and pcall(function()
      return ffi.C.luaskills_compat52_pclose, ffi.C.luaskills_compat52_strerror end) then
    local C, cast, errno, to_string = ffi.C, ffi.cast, ffi.errno, ffi.string
    local format_address = string.format
    local file_ud = ffi.typeof("struct { void *fp; uint32_t type; } *")
    local pipes = setmetatable({}, { __mode = "k" })
    local io_popen, io_close, io_type, io_output = io.popen, io.close, io.type, io.output
    local file_close = file_methods.close

    -- the handle's IOFileUD when it is an open pipe from io.popen, else nil
    -- (The FFI converts a file userdata to its FILE*, so the IOFileUD's address comes from
    -- string.format's %p, which gives a userdata's payload address; it is used only when its fp
    -- is that same FILE* and its type says pipe.)
    local function open_pipe(file)
      if not pipes[file] or io_type(file) ~= "file" then return nil end
      local address = tonumber(format_address("%p", file):match("^0x(%x+)$") or "", 16)
      if address == nil then return nil end
      local ud = cast(file_ud, cast("uintptr_t", address))
      if ud.fp == nil or ud.fp ~= cast("void *", file) or ud.type ~= 1 then return nil end
      return ud
    end

    local function close_pipe(ud)
      local status = C.luaskills_compat52_pclose(ud.fp)
      ud.fp = nil
      if status == -1 then
        local code = errno()
        return nil, to_string(C.luaskills_compat52_strerror(code)), code
      end
      return exec_result(status)
    end

    io.popen = function(...)
      local command, mode = ...
      local kind = type(command)
      if (kind ~= "string" and kind ~= "number") or (mode ~= nil and type(mode) ~= "string") then
        return io_popen(...)
      end
      local file, message, code = io_popen(...)
      if file then pipes[file] = true end
      return file, message, code
    end
    file_methods.close = function(...)
      local ud = open_pipe((...))
      if ud == nil then return file_close(...) end
      return close_pipe(ud)
    end
    io.close = function(...)
      local file = ...
      if file == nil then file = io_output() end
      local ud = open_pipe(file)
      if ud == nil then return io_close(...) end
      return close_pipe(ud)
    end
  end
end
