-- The runlua VM environment (SPEC 8), loaded once per pooled runlua VM after the vulcan namespace
-- and managed io are installed.  The caller passes the VM's globals table.
--
-- Per request the VM gets: a print that is captured (values through tostring, joined by tabs, one
-- line per call), no vulcan.runtime.log / vulcan.cache.put/get/delete / vulcan.runtime.lua.exec,
-- and an os.exit that raises instead of ending the host process.  (table.pack, which the
-- reference's wrapper calls, is part of every VM's dialect: compat52.lua.)
--
-- Isolation (beyond the reference): after the VM is set up, `snapshot` records every table reachable
-- from the globals (library tables, package.loaded, vulcan and its subtables, the string
-- metatable) with its entries and metatable, plus the metatables of the basic types, the GC
-- settings and the debug hook.  After each request `restore` compares the live state with that record and puts back
-- whatever the request changed: new globals, replaced or removed library functions, modules it
-- required, metatables it set.  Comparing costs one pass over those tables; a full restore runs
-- only for the tables that changed.  What cannot be put back (FFI declarations are VM-wide) makes
-- `restore` ask for the VM to be discarded.  `io_reset` (managed io, when installed) puts the io
-- library's default files back and marks the handles the request opened as closed.
-- `scope_reset` is the VM's request-scope reset (scope.lua); calling it from here, at the start
-- of `run` and the end of `restore`, saves two calls from Python per request.
-- `full_debug` is the debug library as the policy found it (the policy may leave Lua code less).
local G, io_reset, scope_reset, message_of, full_debug = ...
local next, type, rawget, rawset, select, tostring = next, type, rawget, rawset, select, tostring
local concat = table.concat
local collectgarbage = collectgarbage
local getmetatable, setmetatable = full_debug.getmetatable, full_debug.setmetatable
-- debug.sethook here is the timeout guard's wrapper (the guard is installed before this file).
local sethook, gethook = debug.sethook, full_debug.gethook
local create_coroutine = coroutine.create

-- ---- environment of a request -------------------------------------------------------------
local vulcan = rawget(G, "vulcan")
local runtime = vulcan.runtime
runtime.log = nil
if type(runtime.lua) == "table" then runtime.lua.exec = nil end
local cache = vulcan.cache
if type(cache) == "table" then
  cache.put, cache.get, cache.delete = nil, nil, nil
end

-- A request must not end the host process.
if type(G.os) == "table" then
  G.os.exit = function()
    error("os.exit is not available in luaexec: return from the code instead", 2)
  end
end

local lines, count = {}, 0
G.print = function(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    parts[i] = tostring((select(i, ...)))
  end
  count = count + 1
  lines[count] = concat(parts, "\t")
end

local load, xpcall, pcall, unpack = load, xpcall, pcall, unpack

-- The captured print lines: (number of lines, lines joined by "\n"); empties the capture.
local function printed()
  local n, text = count, concat(lines, "\n", 1, count)
  lines, count = {}, 0
  return n, text
end

-- Set the request scope of a luaexec call: the reference's simulated request context (fresh
-- tables each time), luaexec_active, the caller tool name and the entry file of file mode.
local function set_scope(entry_file, entry_dir, caller)
  local client_info = { kind = "runtime", name = "luaexec_call", version = "internal-runtime" }
  local request = { transport_name = "luaexec_call", session_id = "luaexec-call-internal",
    client_info = { kind = "runtime", name = "luaexec_call", version = "internal-runtime" },
    client_capabilities = {} }
  scope_reset(request, client_info, {}, {}, {}, nil, entry_dir, entry_file,
    nil, nil, nil, nil, true, caller)
end

-- ---- snapshot / restore ---------------------------------------------------------------------
-- Tables whose fields the request scope resets on every request: only their key set is checked.
local scope_keys = {}
local function scope_table(t, keys)
  local allowed = {}
  for i = 1, #keys do allowed[keys[i]] = true end
  scope_keys[t] = allowed
end
scope_table(vulcan.context, { "request", "client_info", "client_capabilities", "client_budget",
  "tool_config", "skill_dir", "entry_dir", "entry_file" })
scope_table(runtime.internal, { "tool_name", "skill_name", "entry_name", "root_name",
  "luaexec_active", "luaexec_caller_tool_name" })

local tables, entries, sizes, metas = {}, {}, {}, {}
local type_samples = { false, 0, print, create_coroutine(function() end) }
local type_metas = {}
local nil_meta, string_meta
local gc_pause, gc_stepmul

local function record(t, seen)
  if seen[t] or scope_keys[t] then return end
  seen[t] = true
  local copy, n = {}, 0
  for k, v in next, t do
    copy[k] = v
    n = n + 1
    if type(v) == "table" then record(v, seen) end
  end
  local i = #tables + 1
  tables[i], entries[i], sizes[i], metas[i] = t, copy, n, getmetatable(t) or false
  local mt = getmetatable(t)
  if type(mt) == "table" then record(mt, seen) end
end

local function snapshot()
  local seen = {}
  record(G, seen)
  string_meta = getmetatable("")
  if type(string_meta) == "table" then record(string_meta, seen) end
  nil_meta = getmetatable(nil)
  for i = 1, #type_samples do type_metas[i] = getmetatable(type_samples[i]) end
  gc_pause = collectgarbage("setpause", 200)
  collectgarbage("setpause", gc_pause)
  gc_stepmul = collectgarbage("setstepmul", 200)
  collectgarbage("setstepmul", gc_stepmul)
  return #tables
end

local function put_back(t, copy)
  for k in next, t do
    if copy[k] == nil then rawset(t, k, nil) end
  end
  for k, v in next, copy do
    if rawget(t, k) ~= v then rawset(t, k, v) end
  end
end

local loaded = G.package.loaded
local had_ffi

-- Returns (status, memory in KiB[, message]): status 0 = nothing changed, 1 = changes were put
-- back, 2 = the VM must be discarded, 3 = the request-scope reset failed (message).
local function restore()
  if io_reset then io_reset() end
  local changed = false
  local discard = rawget(loaded, "ffi") ~= nil and not had_ffi
  for i = 1, #tables do
    local t, copy = tables[i], entries[i]
    local n, dirty = 0, false
    for k, v in next, t do
      n = n + 1
      if copy[k] ~= v then dirty = true break end
    end
    if dirty or n ~= sizes[i] then
      put_back(t, copy)
      changed = true
    end
    local mt = metas[i] or nil
    if getmetatable(t) ~= mt then
      setmetatable(t, mt)
      changed = true
    end
  end
  for t, allowed in next, scope_keys do
    for k in next, t do
      if not allowed[k] then rawset(t, k, nil) changed = true end
    end
  end
  if getmetatable("") ~= string_meta then setmetatable("", string_meta) changed = true end
  if getmetatable(nil) ~= nil_meta then setmetatable(nil, nil_meta) changed = true end
  for i = 1, #type_samples do
    if getmetatable(type_samples[i]) ~= type_metas[i] then
      setmetatable(type_samples[i], type_metas[i])
      changed = true
    end
  end
  if gethook() ~= nil then
    sethook() -- a hook the request set
    changed = true
  end
  collectgarbage("restart")
  if collectgarbage("setpause", gc_pause) ~= gc_pause then changed = true end
  if collectgarbage("setstepmul", gc_stepmul) ~= gc_stepmul then changed = true end
  local scope_ok, scope_err = pcall(scope_reset)
  if not scope_ok and scope_err == "not enough memory" then
    collectgarbage("collect") -- the request's garbage may still fill a capped heap
    scope_ok, scope_err = pcall(scope_reset)
  end
  if not scope_ok then return 3, collectgarbage("count"), message_of(scope_err) end
  return discard and 2 or (changed and 1 or 0), collectgarbage("count")
end

had_ffi = rawget(loaded, "ffi") ~= nil

-- ---- running a request ------------------------------------------------------------------
-- Values JSON cannot show are rendered as their tostring() text; do that here for functions,
-- coroutines and userdata (lupa would hand a coroutine to Python as a function).
local function shown(value)
  local kind = type(value)
  if kind == "function" or kind == "thread" or kind == "userdata" then
    local ok, text = pcall(tostring, value)
    return ok and text or kind
  end
  return value
end

local function answer(status, n, text, detail, ...)
  local count = select("#", ...)
  local values = { ... }
  local deferred = false
  for i = 1, count do
    local value = values[i]
    if type(value) == "table" then deferred = true else values[i] = shown(value) end
  end
  -- Restore at once unless a returned table still has to be read through Lua (a table the
  -- request changed must be rendered as the request left it); the host restores later then.
  if deferred then return status, n, text, -1, 0, nil, detail, unpack(values, 1, count) end
  local restored, kib, message = restore()
  return status, n, text, restored, kib, message, detail, unpack(values, 1, count)
end

-- Run one request's wrapped code with `args` (nil: an empty table) as the global the wrapper
-- reads.  Returns status, print count, print text, restore status, KiB, restore message, then
--   for "ok": value count, values...      for "error" | "syntax": message
--   "scope", 0, "", -1, 0, nil, message     (the request scope could not be set)
-- (guarded by the host; if the guard stops the code, this raises and the host calls printed()
-- and restore() itself).
local function run(code, chunkname, args, entry_file, entry_dir, caller)
  local scope_ok, scope_err = pcall(set_scope, entry_file, entry_dir, caller)
  if not scope_ok then return "scope", 0, "", -1, 0, nil, message_of(scope_err) end
  rawset(G, "__runlua_args", args or {})
  lines, count = {}, 0
  local fn, err = load(code, chunkname)
  if not fn then return answer("syntax", 0, "", message_of(err)) end
  local ok, result = xpcall(fn, message_of)
  if not ok and result == "not enough memory" then collectgarbage("collect") end
  local n, text = printed()
  if not ok then return answer("error", n, text, result) end
  if type(result) ~= "table" or type(result.n) ~= "number" then
    return answer("error", n, text, "luaexec result is not a table.pack() result")
  end
  return answer("ok", n, text, result.n, unpack(result, 1, result.n))
end

return { run = run, printed = printed, snapshot = snapshot, restore = restore }
