-- LuaJIT 2.1's base-library extensions that PUC Lua 5.1 lacks, for VMs of the lua51 engine
-- (luaskills_runtime.lua_engine: lupa ships no LuaJIT on the platform, or it was forced).
-- Installed by LuaVM (lua/vm.py) before compat52.lua, so that chunk and everything after it sees
-- these as the library.  Each function behaves as LuaJIT 2.1's (lib_base.c, lib_string.c,
-- lib_math.c, lib_table.c); what only LuaJIT's parser or VM does (goto, \x \z \u{} escapes,
-- yield across pcall, the jit/ffi modules) cannot be added by a library: see the README.
-- Argument: the globals table.
local G = ...
local type, select, tostring, tonumber, error = type, select, tostring, tonumber, error
local setfenv, unpack = setfenv, unpack
local string, math, table = G.string, G.math, G.table
local byte, sub, find = string.byte, string.sub, string.find

-- ---- load / loadstring / loadfile: strings, mode and env (lib_base.c, load_aux) ---------------
local plain_load, plain_loadstring, plain_loadfile = G.load, G.loadstring, G.loadfile

-- LuaJIT's refusal of a chunk whose kind the mode excludes (lj_bcread / lj_lex).
local function mode_error(binary)
  return nil, binary and "attempt to load a binary chunk" or "attempt to load a text chunk"
end

local function allowed(mode, binary)
  if mode == nil then return true end
  return find(mode, binary and "b" or "t", 1, true) ~= nil
end

local function with_env(fn, message, env, has_env)
  if fn and has_env and env ~= nil then setfenv(fn, env) end
  return fn, message
end

local function load(...)
  local chunk, chunkname, mode, env = ...
  local has_env = select("#", ...) >= 4
  if mode ~= nil and type(mode) ~= "string" then
    error("bad argument #3 to 'load' (string expected, got " .. type(mode) .. ")", 2)
  end
  if type(chunk) == "string" then
    if not allowed(mode, byte(chunk, 1) == 27) then return mode_error(byte(chunk, 1) == 27) end
    local fn, message = plain_loadstring(chunk, chunkname)
    return with_env(fn, message, env, has_env)
  end
  if type(chunk) ~= "function" or mode == nil then
    local fn, message = plain_load(chunk, chunkname)
    return with_env(fn, message, env, has_env)
  end
  -- a reader with a mode: the first non-empty piece says which kind the chunk is
  local first, refused = true, nil
  local function reader()
    local piece = chunk()
    if first and type(piece) == "string" and piece ~= "" then
      first = false
      if not allowed(mode, byte(piece, 1) == 27) then
        refused = byte(piece, 1) == 27
        return nil
      end
    end
    return piece
  end
  local fn, message = plain_load(reader, chunkname)
  if refused ~= nil then return mode_error(refused) end
  return with_env(fn, message, env, has_env)
end
G.load = load

G.loadfile = function(...)
  local filename, mode, env = ...
  local fn, message = plain_loadfile(filename)
  if fn and mode ~= nil then
    -- the kind of a loaded file: a binary chunk keeps no source text, so its first line
    -- is never "@"-defined from text; ask the file's first byte instead
    local file = type(filename) == "string" and G.io and G.io.open(filename, "rb")
    if file then
      local head = file:read(1)
      file:close()
      local binary = head ~= nil and byte(head) == 27
      if not allowed(mode, binary) then return mode_error(binary) end
    end
  end
  return with_env(fn, message, env, select("#", ...) >= 3)
end

-- ---- xpcall(f, handler, ...): extra arguments go to f ----------------------------------------
do
  local plain_xpcall = G.xpcall
  G.xpcall = function(f, handler, ...)
    local count = select("#", ...)
    if count == 0 then return plain_xpcall(f, handler) end
    local args = { ... }
    return plain_xpcall(function() return f(unpack(args, 1, count)) end, handler)
  end
end

-- ---- string.format: %s converts any value with tostring (LuaJIT 2.1's lj_strfmt) -------------
do
  local plain_format = string.format
  local function plain_args(...)
    for i = 1, select("#", ...) do
      local kind = type((select(i, ...)))
      if kind ~= "string" and kind ~= "number" then return false end
    end
    return true
  end
  string.format = function(...)
    local fmt = ...
    local count = select("#", ...)
    if type(fmt) ~= "string" or plain_args(select(2, ...)) then return plain_format(...) end
    local args = { ... }
    local position, index = 1, 1
    while true do
      local start = find(fmt, "%", position, true)
      if start == nil then break end
      if sub(fmt, start + 1, start + 1) == "%" then
        position = start + 2
      else
        local _, stop, conversion = find(fmt, "^[-+ #0]*%d*%.?%d*(%a)", start + 1)
        if stop == nil then break end    -- a bad spec: the original raises its own error
        index = index + 1
        if conversion == "s" and index <= count then
          local kind = type(args[index])
          if kind ~= "string" and kind ~= "number" then args[index] = tostring(args[index]) end
        end
        position = stop + 1
      end
    end
    return plain_format(unpack(args, 1, count))
  end
end

-- ---- string.rep(s, n, sep) -----------------------------------------------------------------------
do
  local plain_rep = string.rep
  string.rep = function(...)
    local s, n, sep = ...
    if sep == nil or select("#", ...) < 3 then return plain_rep(...) end
    if type(sep) ~= "string" and type(sep) ~= "number" then
      error("bad argument #3 to 'rep' (string expected, got " .. type(sep) .. ")", 2)
    end
    n = tonumber(n)
    if n == nil or n < 1 then return plain_rep(s, n or 0) end
    return plain_rep(s .. sep, n - 1) .. s
  end
end

-- ---- math.log(x, base) ---------------------------------------------------------------------------
do
  local log, log10 = math.log, math.log10
  math.log = function(...)
    local x, base = ...
    if select("#", ...) < 2 or base == nil then return log(x) end
    if base == 10 then return log10(x) end
    if base == 2 then return log(x) / log(2) end
    return log(x) / log(base)
  end
end

-- ---- table.move (LuaJIT 2.1's lib_table.c) ---------------------------------------------------------
if table.move == nil then
  table.move = function(a1, f, e, t, a2)
    if a2 == nil then a2 = a1 end
    if e >= f then
      if t > e or t <= f or a1 ~= a2 then
        for i = 0, e - f do a2[t + i] = a1[f + i] end
      else
        for i = e - f, 0, -1 do a2[t + i] = a1[f + i] end
      end
    end
    return a2
  end
end

-- ---- collectgarbage("isrunning") (LuaJIT 2.1: whether the collector runs; "stop"/"restart") ----
do
  local plain_collectgarbage = G.collectgarbage
  local running = true
  G.collectgarbage = function(...)
    local option = ...
    if option == "isrunning" then return running end
    local result = plain_collectgarbage(...)
    if option == "stop" then running = false elseif option == "restart" then running = true end
    return result
  end
end
