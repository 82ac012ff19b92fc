-- Private chunk runner: compiles and runs code with the library functions captured when the VM
-- was built, so user code that replaces `load` or `xpcall` cannot change how requests run.
-- Answers with the run-outcome protocol (luaskills_runtime.lua.outcome): "ok", values... or
-- "syntax"/"error", message.  Non-string errors are turned into text by `message_of`, which the
-- chunk also returns so the VM's other chunks (guard.lua, luaexec_env.lua) format error objects
-- the same way.
local load, xpcall, tostring, type, select = load, xpcall, tostring, type, select

local function message_of(err)
  if type(err) == "string" then return err end
  if err == nil then return "nil" end
  local ok, text = pcall(tostring, err)
  return ok and text or ("(error object is a " .. type(err) .. " value)")
end

local function finish(ok, ...)
  if ok then return "ok", ... end
  return "error", (...)
end

local function run(code, chunkname)
  local fn, err = load(code, chunkname)
  if not fn then return "syntax", message_of(err) end
  return finish(xpcall(fn, message_of))
end

return run, message_of
