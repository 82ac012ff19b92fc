-- Prepends given as one Lua chunk so a lease VM is configured in a single call.
local path_prefix, cpath_prefix = ...
if path_prefix ~= "" then package.path = path_prefix .. package.path end
if cpath_prefix ~= "" then package.cpath = cpath_prefix .. package.cpath end
