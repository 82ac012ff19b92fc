-- One Lua call per eval: check the JIT is still off (code that dug the real jit.on out of the
-- registry could have turned it on and compiled a loop the guard cannot stop), reset the request
-- scope with the lease's fields (scope.lua's reset, passed in), set `__runlua_args`, compile and
-- run the code, clear the args.  Returns "ok", values... | "syntax"/"error", message |
-- "scope", message (the namespace was damaged).  Errors are formatted by the VM's message_of.
local G, scope_reset, message_of, jit_status, jit_off, jit_flush = ...
local load, xpcall, pcall, rawset = load, xpcall, pcall, rawset

local function finish(ok, ...)
  rawset(G, "__runlua_args", nil)
  if ok then return "ok", ... end
  return "error", (...)
end

return function(code, chunkname, args, request, client_info, caps, budget, tool_config)
  if jit_status and jit_status() then jit_off() jit_flush() end
  local ok, err = pcall(scope_reset, request, client_info, caps, budget, tool_config,
                        nil, nil, nil, nil, nil, nil, nil, true, nil)
  if not ok then return "scope", message_of(err) end
  rawset(G, "__runlua_args", args or {})
  local fn, compile_error = load(code, chunkname)
  if not fn then
    rawset(G, "__runlua_args", nil)
    return "syntax", message_of(compile_error)
  end
  return finish(xpcall(fn, message_of))
end
