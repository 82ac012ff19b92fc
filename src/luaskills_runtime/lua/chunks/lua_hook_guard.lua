-- The Lua side of LuaHookGuard (luaskills_runtime.lua.lua_hook_guard): a timeout guard built only
-- from what any lupa build offers (debug.sethook and, where present, LuaJIT's ffi), for builds
-- whose Lua C API cannot be reached from native code (lupa's Windows wheels export no lua_*).
--
-- While a run is armed, a count hook every CHECK_EVERY instructions reads a flag the host's
-- watchdog thread sets at the deadline (or on cancel).  Once it sees the flag, the hook raises
-- the host's message and switches to a count of 1, so it raises again on every instruction until
-- the host disarms: pcall/xpcall loops cannot swallow it.  debug.sethook/gethook are replaced by
-- wrappers that keep user hooks working while armed (ours dispatches to them), so user code can
-- neither remove the guard's hook nor see it.
--
-- Called once per VM with: the VM's globals, the instruction count between checks, the Python
-- callable giving the message to raise (it also counts the raise), and the Python callable
-- reading the flag (used only when the ffi is missing or not wanted: it costs a call into Python).
-- Under a policy that leaves Lua code a reduced debug library and no FFI (luaskills_runtime.lua.
-- policy) it also gets the full debug library (host_debug) and a function answering the FFI
-- (host_ffi): the guard then takes its hook functions from the full library and installs its
-- wrappers there only (the policy's debug.sethook calls the full library's on each call), so user
-- code gains no debug function, and the flag cell still lives in FFI memory.
-- Returns arm, disarm, and the ffi flag cell's address (nil when the flag is read through Python).
local G, CHECK_EVERY, take_message, poll_flag, use_ffi, host_debug, host_ffi = ...
local error, type, select, tonumber = error, type, select, tonumber
local gsub = G.string.gsub
local restricted = type(host_debug) == "table" and host_debug ~= G.debug
local debug = restricted and host_debug or G.debug
local sethook, gethook = debug.sethook, debug.gethook

local flag_set
local flag_address = nil
local function load_ffi()
  if host_ffi ~= nil then return pcall(host_ffi) end
  -- Loaded for this file only: package.loaded.ffi stays as it was, since runlua's isolation
  -- takes an ffi loaded by a request as the sign that the VM must be discarded (luaexec_env.lua).
  local package_loaded = type(G.package) == "table" and G.package.loaded or nil
  local ffi_was_loaded = type(package_loaded) == "table" and G.rawget(package_loaded, "ffi") ~= nil
  local ok, ffi = pcall(G.require, "ffi")
  if not ffi_was_loaded and type(package_loaded) == "table" then
    G.rawset(package_loaded, "ffi", nil)
    -- A later require must answer this same module: opening the FFI a second time resets the
    -- state's C type table, and the flag cell's type with it.
    local preload = G.package.preload
    if ok and type(preload) == "table" then G.rawset(preload, "ffi", function() return ffi end) end
  end
  return ok, ffi
end
if use_ffi then
  local ok, ffi = load_ffi()
  if ok and type(ffi) == "table" then
    -- Lua owns the cell (the host's guard keeps the runtime, hence the cell, alive), so the hook
    -- reads plain memory: no call into Python, no interpreter lock.
    local cell = ffi.new("int32_t[1]")
    flag_address = tonumber(ffi.cast("intptr_t", ffi.cast("int32_t *", cell)))
    flag_set = function() return cell[0] ~= 0 end
  end
end
if flag_set == nil then
  flag_set = function() return poll_flag() end
end

local armed = false
local raising = nil                      -- the message being raised once the flag was seen
local user_hook, user_mask, user_count = nil, "", 0
local user_due = 0                       -- instructions left until the user's count event
local hook

-- Our hook's count: the user's when it is finer than ours, so their count events stay exact.
local function our_count()
  if user_hook ~= nil and user_count > 0 and user_count < CHECK_EVERY then return user_count end
  return CHECK_EVERY
end

local function install()
  if raising ~= nil then
    sethook(hook, "", 1)
  else
    sethook(hook, user_hook ~= nil and user_mask or "", our_count())
  end
end

hook = function(event, line)
  if raising ~= nil or flag_set() then
    if flag_set() then
      if raising == nil then
        raising = take_message()
        sethook(hook, "", 1)  -- from now on every instruction raises, until the host disarms
      else
        take_message()        -- counts the raise
      end
      error(raising, 0)
    end
    raising = nil             -- the host cleared the flag: it is disarming
    install()
    return
  end
  local uh = user_hook
  if uh == nil then return end
  if event == "count" then
    if user_count <= 0 then return end
    user_due = user_due - our_count()
    if user_due > 0 then return end
    user_due = user_count
    return uh("count")
  end
  return uh(event, line)
end

-- Arguments of debug.sethook/gethook may start with a coroutine; LuaJIT's hooks are global to the
-- state anyway, so the thread is only skipped.
local function guarded_sethook(...)
  local first = ...
  local shift = type(first) == "thread" and 1 or 0
  if not armed then return sethook(...) end
  local fn, mask, count = select(1 + shift, ...)
  if fn ~= nil and type(fn) ~= "function" then
    error("bad argument #" .. (1 + shift) .. " to 'sethook' (function expected)", 2)
  end
  if fn == nil then
    user_hook, user_mask, user_count = nil, "", 0
  else
    user_hook, user_mask, user_count = fn, type(mask) == "string" and mask or "", tonumber(count) or 0
    -- a count hook is ours; the user's count is carried by our count events
    user_mask = gsub(user_mask, "[^crl]", "")
  end
  user_due = user_count
  install()
end

local function guarded_gethook(...)
  if not armed then return gethook(...) end
  if user_hook == nil then return nil, "", 0 end
  return user_hook, user_mask, user_count
end

local function arm()
  if armed then return end
  local fn, mask, count = gethook()
  -- ours (left by a run that could not disarm), or a C hook ("external hook"): nothing to keep
  if fn == hook or type(fn) ~= "function" then fn, mask, count = nil, "", 0 end
  user_hook, user_mask, user_count = fn, type(mask) == "string" and mask or "", tonumber(count) or 0
  user_due = user_count
  raising = nil
  armed = true
  install()
end

local function disarm()
  if not armed then return end
  armed = false
  raising = nil
  -- (a hook with no events is no hook: the guard may have stopped the code halfway through a
  -- debug.sethook() that was clearing the user's hook, between its count and its function)
  if user_hook ~= nil and (user_mask ~= "" or user_count > 0) then
    sethook(user_hook, user_mask, user_count)
  else
    sethook()
  end
  user_hook = nil
end

-- User code must not reach the guard's state: the wrappers above keep it in upvalues (armed,
-- the original sethook, ...), which debug.getupvalue/setupvalue/upvaluejoin would hand out, and
-- debug.sethook keeps the installed hook function in the registry, where replacing it would
-- silence the guard.  So the debug library's doors to both are wrapped: the guard's functions
-- show no upvalues, and debug.getregistry gives a view of the registry without the hook's slot
-- (indexing and assignment go through; pairs() over the view yields nothing).
local getupvalue, setupvalue = debug.getupvalue, debug.setupvalue
local upvalueid, upvaluejoin = debug.upvalueid, debug.upvaluejoin
local getregistry = debug.getregistry
local setmetatable, rawequal, pairs = setmetatable, rawequal, pairs
local guarded = {}    -- the guard's own functions (keys), whose upvalues stay hidden

local function refuse(fn)
  if guarded[fn] then error("the timeout guard's functions have no accessible upvalues", 3) end
end

local wrappers = {}
function wrappers.getupvalue(fn, n)
  if guarded[fn] then return nil end
  return getupvalue(fn, n)
end
function wrappers.setupvalue(fn, n, value)
  if guarded[fn] then return nil end
  return setupvalue(fn, n, value)
end
if upvalueid then
  function wrappers.upvalueid(fn, n) refuse(fn) return upvalueid(fn, n) end
end
if upvaluejoin then
  function wrappers.upvaluejoin(f1, n1, f2, n2) refuse(f1) refuse(f2) return upvaluejoin(f1, n1, f2, n2) end
end

-- Where debug.sethook keeps the hook function: LuaJIT stores it in the registry under a key of
-- its own, PUC Lua 5.1 in a registry table keyed by coroutine.  Found once with a probe hook.
local registry = getregistry and getregistry()
local hook_slot = nil
if registry ~= nil then
  local function probe() end
  sethook(probe, "", 1e9)
  for key, value in pairs(registry) do
    if rawequal(value, probe) then
      hook_slot = key
    elseif type(value) == "table" then
      for _, inner in pairs(value) do
        if rawequal(inner, probe) then hook_slot = key end
      end
    end
  end
  sethook()
end
if registry ~= nil and hook_slot ~= nil then
  local function view_index(_, key)
    if rawequal(key, hook_slot) then return nil end
    return registry[key]
  end
  local function view_newindex(_, key, value)
    if rawequal(key, hook_slot) then error("this registry slot belongs to the timeout guard", 2) end
    registry[key] = value
  end
  -- (debug.getmetatable still reaches this metatable: its functions are guarded below)
  local view = setmetatable({}, { __index = view_index, __newindex = view_newindex,
                                  __metatable = false })
  function wrappers.getregistry() return view end
  guarded[view_index], guarded[view_newindex] = true, true
end

wrappers.sethook = guarded_sethook
wrappers.gethook = guarded_gethook
for _, fn in pairs(wrappers) do guarded[fn] = true end
for _, fn in pairs({ hook, arm, disarm, install, our_count, flag_set, refuse }) do
  guarded[fn] = true
end

-- PUC Lua keeps a hook per coroutine, and a new coroutine copies only its creator's C hook, not
-- the Lua function debug.sethook registered for the creator: a coroutine would run unguarded.
-- There coroutine.create/wrap give each new coroutine our hook while armed (it then stays: it
-- checks the flag whenever the coroutine runs again), and resume/wrap drop a finished
-- coroutine's entry from debug.sethook's per-coroutine table.  LuaJIT's hook is global.
local coroutine = G.coroutine
local per_coroutine_hooks = false
if type(coroutine) == "table" then
  local function probe() end
  sethook(probe, "", 1e9)
  per_coroutine_hooks = gethook(coroutine.create(probe)) ~= probe
  sethook()
end
if per_coroutine_hooks then
  local create, resume, status = coroutine.create, coroutine.resume, coroutine.status
  local plain_wrap = coroutine.wrap

  local function guard_thread(co)
    if not armed then return end
    if raising ~= nil then
      sethook(co, hook, "", 1)
    else
      sethook(co, hook, user_hook ~= nil and user_mask or "", our_count())
    end
  end

  -- A coroutine that saw the flag raises on every instruction; its resumer must too, at once
  -- (its own hook would see the flag only CHECK_EVERY instructions later).
  local function stop_if_fired()
    if raising ~= nil and flag_set() then
      take_message()         -- counts the raise
      sethook(hook, "", 1)
      error(raising, 0)
    end
  end

  local function finished(co, ...)
    if status(co) == "dead" then sethook(co) end
    stop_if_fired()
    return ...
  end

  local function guarded_create(...)
    local co = create(...)
    guard_thread(co)
    return co
  end

  local function guarded_resume(...)
    local co = ...
    if type(co) ~= "thread" then return resume(...) end
    return finished(co, resume(...))
  end

  -- coroutine.wrap as PUC Lua's auxwrap: an error is raised again with its value unchanged.
  local function rethrow(co, ok, ...)
    if status(co) == "dead" then sethook(co) end
    stop_if_fired()
    if ok then return ... end
    error((...), 0)
  end

  local function guarded_wrap(...)
    if type((...)) ~= "function" then return plain_wrap(...) end  -- its own argument error
    local co = guarded_create(...)
    return function(...) return rethrow(co, resume(co, ...)) end
  end

  coroutine.create, coroutine.resume, coroutine.wrap = guarded_create, guarded_resume, guarded_wrap
  for _, fn in pairs({ guard_thread, stop_if_fired, finished, guarded_create, guarded_resume, rethrow,
                       guarded_wrap }) do
    guarded[fn] = true
  end
end

local function install_wrappers(lib)
  for name, fn in pairs(wrappers) do lib[name] = fn end
end
install_wrappers(debug)
local loaded = G.package and G.package.loaded
if not restricted and type(loaded) == "table" and type(loaded.debug) == "table"
    and loaded.debug ~= debug then
  install_wrappers(loaded.debug)
end

return arm, disarm, flag_address
