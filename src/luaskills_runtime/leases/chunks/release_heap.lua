-- Drops the globals and loaded modules of a closed lease's VM and collects, so its Lua heap is
-- freed at once (anything the code kept is unreachable afterwards).
local G, loaded = ...
local next, rawset, type, collectgarbage = next, rawset, type, collectgarbage
local function clear(t)
  if type(t) ~= "table" then return end
  local key = next(t)
  while key ~= nil do
    rawset(t, key, nil)
    key = next(t)
  end
end
clear(loaded)
clear(G)
-- each full cycle also halves LuaJIT's string scratch buffer, which big string work leaves large
for _ = 1, 6 do collectgarbage() end
