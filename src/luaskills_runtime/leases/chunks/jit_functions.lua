-- The VM's own jit functions, taken before the guard hides jit.on.
local jit = jit
if type(jit) ~= "table" then return nil end
return jit.status, jit.off, jit.flush, jit.on
