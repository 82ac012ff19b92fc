-- print and the native io library's stdout/stderr through the host's output sink
-- (luaskills_runtime.vulcan.output); run once per VM by the VM factory.  `write(stream, text)`
-- and `flush(stream)` are the sink's Python callbacks.
local G, write, flush = ...
local tostring, select, type, concat, setmetatable, error = tostring, select, type,
  table.concat, setmetatable, error

G.print = function(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  write("stdout", concat(parts, "\t", 1, n) .. "\n")
end

local io = G.io
if type(io) ~= "table" then return end

-- Lua values as io.write writes them: strings and numbers only.
local function joined(fn, ...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    local value = select(i, ...)
    local kind = type(value)
    if kind == "number" then
      parts[i] = tostring(value)
    elseif kind == "string" then
      parts[i] = value
    else
      error("bad argument #" .. i .. " to '" .. fn .. "' (string expected, got " .. kind .. ")", 3)
    end
  end
  return concat(parts, "", 1, n)
end

-- A file-like stand-in for the native stdout/stderr: write/flush/setvbuf/close/seek like a
-- terminal's (seek fails, close refuses as Lua does for standard files).
local native_type = io.type
local getinfo = type(G.debug) == "table" and G.debug.getinfo

-- LuaJIT's error for a method of a standard file called on something else:
-- io.stdout.write(5, 'x') is "bad argument #1 to 'write' (FILE* expected, got number)".
local function bad_self(name, count, value)
  local got = count == 0 and "no value" or type(value)
  local info = getinfo and getinfo(3, "n")
  if info and info.namewhat == "method" then
    error("calling '" .. name .. "' on bad self (FILE* expected, got " .. got .. ")", 3)
  end
  error("bad argument #1 to '" .. name .. "' (FILE* expected, got " .. got .. ")", 3)
end

local std_files = {}   -- the stand-ins below (keys)

local function std_file(stream)
  local file = {}
  std_files[file] = true
  local methods = {}
  function methods.write(...)
    local self = ...
    if self ~= file then
      -- another file's write through this one's method, as LuaJIT allows for any FILE*
      if std_files[self] or native_type(self) ~= nil then
        return self:write(select(2, ...))
      end
      bad_self("write", select("#", ...), self)
    end
    write(stream, joined("write", select(2, ...)))
    return self
  end
  function methods.flush() flush(stream) return true end
  function methods.setvbuf() return true end
  function methods.close() return nil, "cannot close standard file" end
  function methods.seek() return nil, "Illegal seek", 29 end
  function methods.lines() error("bad file descriptor: not open for reading", 2) end
  function methods.read() return nil, "Bad file descriptor", 9 end
  return setmetatable(file, { __index = methods, __name = "FILE*",
    __tostring = function() return "file (" .. stream .. ")" end })
end

local native_output = io.output
local stdout, stderr = std_file("stdout"), std_file("stderr")
local current = stdout   -- io.output(): the sink's stdout until code picks a file
io.stdout, io.stderr = stdout, stderr
io.output = function(file)
  if file == nil then return current end
  if file == stdout or file == stderr then current = file return file end
  if type(file) == "string" then current = native_output(file) return current end
  native_output(file)
  current = file
  return file
end
io.type = function(value)
  if value == stdout or value == stderr then return "file" end
  return native_type(value)
end
io.write = function(...)
  if current == stdout or current == stderr then
    write(current == stderr and "stderr" or "stdout", joined("write", ...))
    return current
  end
  return current:write(...)
end
local native_close = io.close
io.close = function(file)
  if file == nil then file = current end
  if file == stdout or file == stderr then return nil, "cannot close standard file" end
  return native_close(file)
end
