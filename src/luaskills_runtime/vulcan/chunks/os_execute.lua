-- Put the managed system() (raw wait status) under the dialect's os.execute wrapper, whose
-- upvalue `execute` is LuaJIT's own; without the wrapper, os.execute becomes a thin caller.
-- `debug` is the full library (the policy may leave Lua code less).
local raw_execute, debug = ...
local wrapper = os.execute
local i = 1
while true do
  local name, luajit_execute = debug.getupvalue(wrapper, i)
  if name == nil then break end
  if name == "execute" then
    debug.setupvalue(wrapper, i, function(command, ...)
      local kind = type(command)
      if kind ~= "string" and kind ~= "number" then   -- LuaJIT's own answer (and error text)
        return luajit_execute(command, ...)
      end
      return raw_execute(command)
    end)
    return
  end
  i = i + 1
end
local luajit_execute = os.execute
os.execute = function(command, ...)
  local kind = type(command)
  if kind ~= "string" and kind ~= "number" then return luajit_execute(command, ...) end
  return raw_execute(command)
end
