-- The policy layer (luaskills_runtime.lua.policy), run once per VM right after the standard
-- libraries are opened, before anything else sees them.  Arguments: the globals table, the policy
-- name ("default", "trusted", "untrusted") and the C-call depth limit.
--
-- Every policy: the standard functions that make C code call back into Lua (coroutine.resume and
-- coroutine.wrap, string.gsub, table.sort, load with a reader function, dofile) count how deeply
-- they nest and refuse past `max_depth` with "C stack overflow".  Each level counts its weight:
-- string.gsub's C frame holds a luaL_Buffer (about 4 times a resume's frame, measured), so it
-- counts GSUB_WEIGHT and the others 1.  LuaJIT has no such limit of its
-- own: each of those nests a C frame (lj_vm_resume, lua_call) on the host thread's stack, and
-- coroutines each have their own Lua stack, so Lua's "stack overflow" check never fires before
-- the C stack runs out and the host dies with SIGSEGV.  os.exit raises instead of ending the host.
--
-- "default" and "untrusted" also lose what only serves to crash or reach around the host: the
-- ffi module, package.loadlib, C modules outside the host's own roots (the C loaders search only
-- the cpath the host set, whatever package.cpath says later), and all of debug but traceback,
-- getinfo and sethook on the current coroutine.
--
-- Answers a table of host-side controls: full_debug (the original debug library, for the host's
-- own chunks), host_ffi() (default/untrusted: the FFI module for the host's own chunks), loadlib (the original package.loadlib, for the host's own native modules),
-- newproxy (the original, whose metatables take __gc, for the host's own chunks),
-- set_host_cpath(text) (the C module search path of the host's c_roots).
local G, policy, max_depth, env_allow = ...
local error, type, select, pcall, rawget, rawset = error, type, select, pcall, rawget, rawset
local getmetatable, setmetatable = getmetatable, setmetatable
local coroutine_create, coroutine_resume = coroutine.create, coroutine.resume
local controls = { full_debug = G.debug }

-- ---- C-call depth ---------------------------------------------------------------------------
local GSUB_WEIGHT = 5
local depth = 0
local function leave(ok, ...)
  depth = depth - 1
  if ok then return ... end
  error((...), 0)
end
local function enter(level)
  if depth >= max_depth then error("C stack overflow", level + 1) end
  depth = depth + 1
end
local function counted(fn)
  return function(...)
    enter(2)
    return leave(pcall(fn, ...))
  end
end
local function leave_weighted(ok, ...)
  depth = depth - GSUB_WEIGHT
  if ok then return ... end
  error((...), 0)
end
local function weighted(fn)
  return function(...)
    if depth + GSUB_WEIGHT > max_depth then error("C stack overflow", 2) end
    depth = depth + GSUB_WEIGHT
    return leave_weighted(pcall(fn, ...))
  end
end

local function leave_resume(...)
  depth = depth - 1
  return ...
end
-- resume never raises for a coroutine (errors come back as false, message); anything else goes
-- to the original for its own argument error.
local function resume(co, ...)
  if type(co) ~= "thread" then return coroutine_resume(co, ...) end
  enter(2)
  return leave_resume(coroutine_resume(co, ...))
end
local function wrap_result(ok, ...)
  if ok then return ... end
  local err = ...
  if type(err) == "string" then error(err, 2) end
  error(err, 0)
end
local function wrap(fn)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'wrap' (function expected, got " .. (fn == nil and "no value" or type(fn)) .. ")", 2)
  end
  local co = coroutine_create(fn)
  return function(...)
    enter(2)
    return wrap_result(leave_resume(coroutine_resume(co, ...)))
  end
end

G.coroutine.resume = resume
G.coroutine.wrap = wrap
G.string.gsub = weighted(G.string.gsub)
G.table.sort = counted(G.table.sort)
local load = G.load
G.load = function(chunk, ...)
  if type(chunk) ~= "function" then return load(chunk, ...) end
  enter(2)
  return leave(pcall(load, chunk, ...))
end
if G.dofile then G.dofile = counted(G.dofile) end

-- ---- os.exit --------------------------------------------------------------------------------
if type(G.os) == "table" then
  G.os.exit = function()
    error("os.exit is not available here: return from the code instead", 2)
  end
end

if policy == "trusted" then return controls end

-- ---- default and untrusted: no ffi, no loadlib, C modules only from the host's roots --------
local package = G.package
local loaded, preload = package.loaded, package.preload
-- The host's own chunks (the Lua-hook timeout guard) may still use the FFI: host_ffi() answers
-- the module the dialect loaded (main VMs), else opens it once (luaopen_ffi must run only once
-- per state: it sets up the state's C type table) and takes it out of package.loaded again.
local host_ffi_module, ffi_loader = rawget(loaded, "ffi"), rawget(preload, "ffi")
function controls.host_ffi()
  if host_ffi_module == nil and type(ffi_loader) == "function" then
    local loader = ffi_loader
    ffi_loader = nil
    local ok, module = pcall(loader, "ffi")
    rawset(loaded, "ffi", nil)
    if ok and type(module) == "table" then host_ffi_module = module end
  end
  return host_ffi_module
end
rawset(loaded, "ffi", nil)
rawset(preload, "ffi", nil)
G.ffi = nil
controls.loadlib = package.loadlib
package.loadlib = nil
package.cpath = ""
local host_cpath = ""
function controls.set_host_cpath(text) host_cpath = text end
local loaders = package.loaders or package.searchers
-- LuaJIT's loaders 3 (C modules) and 4 (all-in-one) read the package table's cpath field: each
-- runs with the host's path in it and the code's own value put back afterwards.
local function host_path_loader(original)
  return function(...)
    local own = rawget(package, "cpath")
    rawset(package, "cpath", host_cpath)
    local result = { pcall(original, ...) }
    rawset(package, "cpath", own)
    if not result[1] then error(result[2], 0) end
    return result[2], result[3]
  end
end
if type(loaders) == "table" then
  for i = 3, 4 do
    if type(loaders[i]) == "function" then loaders[i] = host_path_loader(loaders[i]) end
  end
end

-- ---- default and untrusted: debug limited to the current coroutine's traceback/info/hook -----
local full = G.debug
local function current_only(fn, name)
  return function(first, ...)
    if type(first) == "thread" then
      error("debug." .. name .. " on another coroutine is not allowed by the `" .. policy
        .. "` policy", 2)
    end
    return fn(first, ...)
  end
end
local limited = {
  traceback = full.traceback,
  getinfo = current_only(full.getinfo, "getinfo"),
  -- looked up on each call: a timeout guard that wraps the full library's sethook later (the
  -- Lua-hook guard) is then what user code reaches
  sethook = current_only(function(...) return full.sethook(...) end, "sethook"),
}
G.debug = limited
rawset(loaded, "debug", limited)

-- ---- default and untrusted: source code only --------------------------------------------------
-- LuaJIT does not verify bytecode: a crafted binary chunk reads and writes arbitrary memory.  So
-- load, loadstring, loadfile, dofile and require of Lua files accept text chunks only.
local counted_load, loadstring, loadfile = G.load, G.loadstring, G.loadfile
local binary_refusal = "attempt to load a binary chunk (not allowed by the `" .. policy
  .. "` policy)"
local function is_binary(chunk) return type(chunk) == "string" and chunk:byte(1) == 27 end
G.load = function(chunk, chunkname, mode, env)
  if is_binary(chunk) then return nil, binary_refusal end
  return counted_load(chunk, chunkname, "t", env)
end
if loadstring then
  G.loadstring = function(chunk, chunkname)
    if is_binary(chunk) then return nil, binary_refusal end
    return loadstring(chunk, chunkname)
  end
end
G.loadfile = function(filename, mode, env)
  return loadfile(filename, "t", env)
end
G.dofile = counted(function(filename)
  local fn, message = loadfile(filename, "t")
  if not fn then error(message, 0) end
  return fn()
end)
-- Lua 5.1 has no package.searchpath: the same search (templates of `path`, '.' -> '/') over the
-- io.open captured here, so the text-only file loader below is installed on every engine.
local raw_open = G.io and G.io.open
local searchpath = package.searchpath or (raw_open and function(name, path)
  local tried = {}
  local file_name = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local candidate = template:gsub("%?", file_name)
    local handle = raw_open(candidate, "r")
    if handle then handle:close() return candidate end
    tried[#tried + 1] = "\n\tno file '" .. candidate .. "'"
  end
  return nil, table.concat(tried)
end)
if type(loaders) == "table" and type(loaders[2]) == "function" and searchpath then
  loaders[2] = function(name)
    local file, message = searchpath(name, rawget(package, "path"))
    if not file then return message end
    if controls.path_check then controls.path_check("require", file) end
    local fn, load_error = loadfile(file, "t")
    if not fn then
      error("error loading module '" .. name .. "' from file '" .. file .. "':\n\t" .. load_error, 0)
    end
    return fn
  end
end
-- ---- default and untrusted: no VM event handlers -------------------------------------------
-- jit.attach handlers (bytecode, trace events) run with hooks off, like finalizers below: one
-- that loops can be stopped by nothing.
local jit = rawget(loaded, "jit")
if type(jit) == "table" and jit.attach then
  jit.attach = function()
    error("jit.attach is not allowed by the `" .. policy .. "` policy (no timeout can stop its "
      .. "handlers)", 2)
  end
end

-- ---- default and untrusted: no __gc finalizers ---------------------------------------------
-- LuaJIT runs __gc with hooks off, so no timeout or cancel can stop a finalizer that loops, and
-- lua_close runs the pending ones when the host frees the VM.  Userdata from newproxy is the
-- only way Lua code gets a finalizer without ffi (tables' __gc is ignored): its metatable is
-- reached through a stand-in that refuses `__gc`.
local newproxy = G.newproxy
controls.newproxy = newproxy
if newproxy then
  local gc_refusal = "__gc finalizers are not allowed by the `" .. policy
    .. "` policy (no timeout can stop them)"
  G.newproxy = function(with_meta)
    if with_meta ~= true then return newproxy(with_meta) end
    local proxy = newproxy(true)
    local meta = getmetatable(proxy)
    local stand_in = setmetatable({}, {
      __index = meta,
      __newindex = function(_, key, value)
        if key == "__gc" then error(gc_refusal, 2) end
        rawset(meta, key, value)
      end,
    })
    meta.__metatable = stand_in
    return proxy
  end
end
if policy ~= "untrusted" then return controls end

-- ---- untrusted: no process creation, files only under the fs roots, filtered environment ---
local function refuse(what)
  return function()
    error(what .. " is not allowed by the `" .. policy .. "` policy", 2)
  end
end
local os, io = G.os, G.io
os.execute = refuse("os.execute")
io.popen = refuse("io.popen")
local getenv = os.getenv
os.getenv = function(name)
  if type(name) == "string" and env_allow[name] then return getenv(name) end
  if type(name) ~= "string" and type(name) ~= "number" then return getenv(name) end
  return nil
end

-- `path_check(what, path)` is the host's check (PolicyControls.check_path), bound once the VM's
-- bridge exists; it raises the policy's refusal.
local path_check
function controls.set_path_check(fn)
  path_check = fn
  controls.path_check = fn   -- the text-only Lua module loader checks module files too
end
local function checked(fn, what, optional)
  return function(path, ...)
    if type(path) == "string" or not optional then
      if type(path) == "string" and path_check then path_check(what, path) end
    end
    return fn(path, ...)
  end
end
io.open = checked(io.open, "io.open")
io.lines = checked(io.lines, "io.lines", true)
io.input = checked(io.input, "io.input", true)
io.output = checked(io.output, "io.output", true)
os.remove = checked(os.remove, "os.remove")
local rename = os.rename
os.rename = function(from, to, ...)
  if path_check and type(from) == "string" then path_check("os.rename", from) end
  if path_check and type(to) == "string" then path_check("os.rename", to) end
  return rename(from, to, ...)
end
G.loadfile = checked(G.loadfile, "loadfile", true)
G.dofile = checked(G.dofile, "dofile", true)
return controls
