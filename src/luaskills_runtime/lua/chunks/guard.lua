-- Guarded-run support, loaded once per VM by luaskills_runtime.lua.guard (the caller passes the VM's
-- globals table).  Keeps what it needs in locals, so later changes to globals by user code cannot
-- change how runs are started or reported.
local G, message_of, jit_profile = ...
local load, xpcall, pcall, tostring, type, select, unpack = load, xpcall, pcall, tostring, type,
  select, unpack
local error = error
local jit = G.jit

-- jit.profile would take LuaJIT's one profiler: with the jit-profile guard, profile.start("f")
-- resets the mode the guard relies on; with any guard, nothing else may own the profiler.
local package = G.package
if type(package) == "table" then
  if type(package.loaded) == "table" then package.loaded["jit.profile"] = nil end
  if type(package.preload) == "table" then package.preload["jit.profile"] = nil end
end

-- jit-off-hook and lua-hook guards: compiled traces never look at hooks, so guarded VMs run interpreted; code
-- that turned the JIT back on would escape its timeout.  (debug.sethook stays usable: the
-- TimeoutGuard wraps it so the guard's hook comes back whenever user code replaces it while the
-- guard fires.)  The jit-profile guard stops compiled code too: jit.on/off/flush stay as they are.
if type(jit) == "table" and not jit_profile then
  jit.off()
  jit.flush()
  jit.on = function()
    error("jit.on is not available here: guarded Lua code runs with the JIT off", 2)
  end
end

-- A table.pack() result as (true, n, values...) in one call from Python, or (false, message)
-- when it cannot be read (code that replaced table.pack).
local function unpack_packed(packed)
  local n = packed.n
  if type(n) ~= "number" then error("the result has no count n", 0) end
  return true, n, unpack(packed, 1, n)
end

local function collect(packed)
  if type(packed) ~= "table" then
    return false, "the luaexec wrapper returned a " .. type(packed) .. " value, not a table"
  end
  local result = { pcall(unpack_packed, packed) }
  if not result[1] then return false, message_of(result[2]) end
  return unpack(result, 2, result[3] + 3)
end

-- Guarded runs compile and run code with the VM's runner (runner.lua), which answers with the
-- same run-outcome protocol.
return { collect = collect }
