-- Builds the Lua-side wrapper of one Python callback.  `check` turns the callback's
-- (ok, values...) answer into returned values or a plain-message error.  `vm_state.closed` is
-- set when the VM closes: from then on (finalizers run while lupa frees the state) the wrapper
-- refuses without calling into Python, whose side of the VM is being torn down.
local pyfn, vm_state = ...
local error, select = error, select
local function check(ok, ...)
  if ok then return ... end
  error((...), 0)
end
return function(...)
  if vm_state.closed then error("this Lua VM is closed", 0) end
  return check(pyfn(...))
end
