-- Builds the Lua-side wrapper of one Python callback.  `check` turns the callback's
-- (ok, values...) answer into returned values or a plain-message error.
local pyfn = ...
local error, select = error, select
local function check(ok, ...)
  if ok then return ... end
  error((...), 0)
end
return function(...) return check(pyfn(...)) end
