-- Isolation beyond what `restore` (luaexec_env.lua) puts back: the registry, the upvalues and
-- environments of functions the VM keeps (library functions, the environment's own closures,
-- vulcan's C functions), finalizers that would run during a later request, and JIT event
-- callbacks cannot be compared and restored cheaply.  So the doors to them are wrapped: a
-- request that opens one marks the VM "touched", and the host replaces a touched VM instead of
-- reusing it (`touched()` answers and clears the mark).  Loaded after the environment (which
-- keeps the real functions for itself) and before its snapshot (which then records these
-- wrappers as the library's functions, so a request cannot remove them for the next one).
local G = ...
local mark = false
local function touching(fn)
  if type(fn) ~= "function" then return fn end
  return function(...)
    mark = true
    return fn(...)
  end
end

local debug = G.debug
if type(debug) == "table" then
  for _, name in ipairs({ "getregistry", "getupvalue", "setupvalue", "upvaluejoin",
                          "setfenv", "setlocal", "getlocal" }) do
    debug[name] = touching(debug[name])
  end
end
G.setfenv = touching(G.setfenv)
G.newproxy = touching(G.newproxy)
local jit = G.jit
if type(jit) == "table" then jit.attach = touching(jit.attach) end

return function()
  local touched = mark
  mark = false
  return touched
end
