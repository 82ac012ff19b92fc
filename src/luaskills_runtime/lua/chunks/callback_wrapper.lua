-- Builds the Lua-side wrapper of one Python callback.  `check` turns the callback's
-- (ok, values...) answer into returned values or a plain-message error.  `vm_state.closed` is
-- set when the VM is freed: from then on (finalizers run while lupa frees the state) the wrapper
-- returns nothing without calling into Python, whose side of the VM is being torn down (no
-- error either: LuaJIT prints finalizer errors to the host's stderr).
--
-- Under a memory cap the callback runs, and its answer is pushed, with the cap lifted (lupa makes
-- those Lua API calls unprotected: a failed allocation there hangs or aborts the host); `recap`
-- (Python) puts the cap back once the answer is on the Lua stack.  The callback refuses answers
-- that would not fit under the cap before they are pushed.
local pyfn, vm_state, recap = ...
local error, select = error, select
local function check(ok, ...)
  if vm_state.capped then recap() end
  if ok then return ... end
  error((...), 0)
end
return function(...)
  if vm_state.closed then return end
  return check(pyfn(...))
end
