-- Builds the userdata of one session from its five method functions (bridge wrappers).  A method
-- called without `:` (or on another value) fails instead of treating its first argument as self.
local newproxy, getmetatable, error = newproxy, getmetatable, error
return function(write, read, status, close, kill)
  local session = newproxy(true)
  local function method(name, fn)
    return function(self, ...)
      if self ~= session then
        error("process.session." .. name .. ": expected a session, call it as session:"
              .. name .. "(...)", 0)
      end
      return fn(...)
    end
  end
  local meta = getmetatable(session)
  meta.__index = {
    write = method("write", write),
    read = method("read", read),
    status = method("status", status),
    close = method("close", close),
    kill = method("kill", kill),
  }
  meta.__tostring = function() return "ProcessSession" end
  meta.__metatable = "ProcessSession"
  return session
end
