-- Request-scope reset (SPEC 5), run before and after every request on a pooled VM.
-- It reads the namespace with rawget from the globals table captured when the VM was built, so a
-- request that broke `vulcan` makes the reset fail, and the VM is discarded instead of reused.
local G = ...
local rawget, rawset, type, error = rawget, rawset, type, error

local function need_table(parent, key, label)
  local value = rawget(parent, key)
  if type(value) ~= "table" then
    error(label .. " is not a table (got " .. type(value) .. ")", 0)
  end
  return value
end

return function(request, client_info, client_capabilities, client_budget, tool_config,
                skill_dir, entry_dir, entry_file,
                tool_name, skill_name, entry_name, root_name, luaexec_active, caller_tool_name)
  local vulcan = need_table(G, "vulcan", "vulcan")
  local context = need_table(vulcan, "context", "vulcan.context")
  local runtime = need_table(vulcan, "runtime", "vulcan.runtime")
  local internal = need_table(runtime, "internal", "vulcan.runtime.internal")
  rawset(context, "request", request or {})
  rawset(context, "client_info", client_info)
  rawset(context, "client_capabilities", client_capabilities or {})
  rawset(context, "client_budget", client_budget or {})
  rawset(context, "tool_config", tool_config or {})
  rawset(context, "skill_dir", skill_dir)
  rawset(context, "entry_dir", entry_dir)
  rawset(context, "entry_file", entry_file)
  rawset(internal, "tool_name", tool_name)
  rawset(internal, "skill_name", skill_name)
  rawset(internal, "entry_name", entry_name)
  rawset(internal, "root_name", root_name)
  rawset(internal, "luaexec_active", luaexec_active == true)
  rawset(internal, "luaexec_caller_tool_name", caller_tool_name)
  rawset(G, "__runlua_args", nil)
end
