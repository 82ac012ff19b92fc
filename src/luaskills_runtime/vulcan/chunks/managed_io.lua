-- Managed `io` library (SPEC 4), loaded by luaskills_runtime.vulcan.io_compat.
--
-- File handles live here, in Lua, with their own read buffer; Python only supplies byte-level
-- primitives over handle ids (`prim.*`), so a `for line in f:lines()` loop costs one call into
-- Python per 64 KiB, not one per line.  Handles are userdata (as native files are), so
-- type(f) == "userdata" and io.type(f) == "file".
--
-- Primitives (all take and return Lua strings as bytes; failures as nil, message, errno):
--   open(path, mode) -> id      read(id, max) -> bytes ("" at end of file)
--   write(id, data, unread)     seek(id, whence, offset, unread) -> position
--   flush(id)   close(id)   release(id) (quiet close of a collected handle)
--   popen(command, mode) -> id  tmpfile() -> id
-- `unread` is how many bytes this side buffered ahead of the file position; the primitive moves
-- the position back by that much first, so writes and seeks land where the Lua code expects.
-- `host_newproxy`: newproxy as the policy found it (the policy's own refuses __gc, which the
-- handles below need; luaskills_runtime.lua.policy).
local prim, host_newproxy = ...
local type, tostring, error, select, pcall, newproxy, setmetatable, getmetatable, next =
  type, tostring, error, select, pcall, newproxy, setmetatable, getmetatable, next
newproxy = host_newproxy or newproxy
local tonumber, unpack, min = tonumber, unpack, math.min
local sub, find, match, concat = string.sub, string.find, string.match, table.concat

local CHUNK = 65536
local handles = setmetatable({}, { __mode = "k" }) -- handle -> state
local methods = {}

-- Handles collected without close(): __gc only notes their ids (a finaliser must not call into
-- the host, it may run while the VM is being torn down); the next open and the request-end reset
-- release them.
local pending, pending_n = {}, 0
local function release_pending()
  if pending_n == 0 then return end
  -- The new list is allocated before the swap: an allocation may run a GC step, whose
  -- finalizers would append to the old list after its length was read (those ids were lost).
  local fresh = {}
  local list, n = pending, pending_n
  pending, pending_n = fresh, 0
  for i = 1, n do pcall(prim.release, list[i]) end
end

local function fail(fn, message)
  error("vulcan.io." .. fn .. ": " .. message, 0)
end

local function new_handle(id, kind)
  local handle = newproxy(true)
  local mt = getmetatable(handle)
  local st = { id = id, kind = kind, buf = "", pos = 1, eof = false, closed = false }
  local address = sub(tostring(st), 8)
  handles[handle] = st
  mt.__index = methods
  mt.__metatable = "file"
  mt.__tostring = function()
    return st.closed and "file (closed)" or ("file (" .. address .. ")")
  end
  mt.__gc = function()
    if not st.closed and kind ~= "std" then
      st.closed = true
      pending_n = pending_n + 1
      pending[pending_n] = id
    end
  end
  return handle
end

local function state_of(handle, fn)
  local st = handles[handle]
  if st == nil then fail(fn, "expected a file handle, got " .. type(handle)) end
  if st.closed then error("attempt to use a closed file", 0) end
  return st
end

local function unread_count(st)
  local n = #st.buf - st.pos + 1
  st.buf, st.pos = "", 1
  return n > 0 and n or 0
end

-- Append the next chunk to the buffer; false at end of file or on a read error (kept in
-- st.read_error for read() to report as nil, message, errno).
local function fill(st)
  if st.eof then return false end
  local chunk, message, code = prim.read(st.id, CHUNK)
  if chunk == nil then
    st.read_error, st.read_errno = message, code
    return false
  end
  if chunk == "" then
    st.eof = true
    return false
  end
  if st.pos > #st.buf then
    st.buf, st.pos = chunk, 1
  else
    st.buf, st.pos = sub(st.buf, st.pos) .. chunk, 1
  end
  return true
end

local function read_line(st, keep_newline)
  local parts, n = nil, 0
  while true do
    local nl = find(st.buf, "\n", st.pos, true)
    if nl then
      local piece = sub(st.buf, st.pos, keep_newline and nl or nl - 1)
      st.pos = nl + 1
      if parts == nil then return piece end
      n = n + 1
      parts[n] = piece
      return concat(parts)
    end
    if st.pos <= #st.buf then
      parts = parts or {}
      n = n + 1
      parts[n] = sub(st.buf, st.pos)
    end
    st.buf, st.pos = "", 1
    if not fill(st) then
      return parts and concat(parts) or nil
    end
  end
end

local function read_all(st)
  local parts = { sub(st.buf, st.pos) }
  st.buf, st.pos = "", 1
  while not st.eof do
    local chunk, message, code = prim.read(st.id, CHUNK)
    if chunk == nil then
      st.read_error, st.read_errno = message, code
      break
    end
    if chunk == "" then st.eof = true else parts[#parts + 1] = chunk end
  end
  return concat(parts)
end

local function read_count(st, count)
  if count <= 0 then
    if st.pos <= #st.buf or fill(st) then return "" end
    return nil
  end
  local parts, have = {}, 0
  while have < count do
    local available = #st.buf - st.pos + 1
    if available <= 0 then
      if not fill(st) then break end
      available = #st.buf - st.pos + 1
    end
    local take = min(available, count - have)
    parts[#parts + 1] = sub(st.buf, st.pos, st.pos + take - 1)
    st.pos = st.pos + take
    have = have + take
  end
  if have == 0 then return nil end
  return concat(parts)
end

-- Length of the numeral at the start of text (decimal or hex, optional sign and exponent).
local function numeral_length(text)
  local i = #match(text, "^[%+%-]?") + 1
  local hex = match(text, "^0[xX]", i) ~= nil
  local digit = hex and "%x" or "%d"
  if hex then i = i + 2 end
  local whole = match(text, "^" .. digit .. "*", i)
  i = i + #whole
  local fraction = ""
  if sub(text, i, i) == "." then
    fraction = match(text, "^" .. digit .. "*", i + 1)
    i = i + 1 + #fraction
  end
  if #whole + #fraction == 0 and not hex then return 0 end
  if match(text, hex and "^[pP]" or "^[eE]", i) then
    local sign = match(text, "^[%+%-]?", i + 1)
    local digits = match(text, "^%d+", i + 1 + #sign)
    if digits then i = i + 1 + #sign + #digits end
  end
  return i - 1
end

local function read_number(st)
  while true do
    if st.pos > #st.buf and not fill(st) then return nil end
    local start = find(st.buf, "[^%s]", st.pos)
    if start then
      st.pos = start
      break
    end
    st.pos = #st.buf + 1
  end
  while #st.buf - st.pos < 200 and fill(st) do end
  local text = sub(st.buf, st.pos, st.pos + 199)
  local length = numeral_length(text)
  st.pos = st.pos + length
  return tonumber(sub(text, 1, length))
end

local function read_one(st, format, fn)
  local kind = type(format)
  if kind == "number" then return read_count(st, format) end
  if kind == "string" then
    local f = match(format, "^%*?([aAlLn])")
    if f == "l" then return read_line(st, false) end
    if f == "L" then return read_line(st, true) end
    if f == "a" or f == "A" then return read_all(st) end
    if f == "n" then return read_number(st) end
  end
  fail(fn, "invalid format `" .. tostring(format) .. "`")
end

local function read_failed(st)
  local message, code = st.read_error, st.read_errno
  st.read_error, st.read_errno = nil, nil
  return nil, message, code
end

local function read_formats(st, fn, ...)
  local n = select("#", ...)
  if n == 0 then
    local line = read_line(st, false)
    if line == nil and st.read_error then return read_failed(st) end
    return line
  end
  local results = {}
  for i = 1, n do
    local value = read_one(st, (select(i, ...)), fn)
    if st.read_error then return read_failed(st) end
    results[i] = value
    if value == nil then return unpack(results, 1, i) end
  end
  return unpack(results, 1, n)
end

local function write_values(handle, st, fn, ...)
  local parts = {}
  for i = 1, select("#", ...) do
    local value = select(i, ...)
    local kind = type(value)
    if kind == "string" then
      parts[i] = value
    elseif kind == "number" then
      parts[i] = tostring(value)
    else
      fail(fn, "argument #" .. i .. " must be a string or number, got " .. kind)
    end
  end
  st.eof = false
  local ok, message, code = prim.write(st.id, concat(parts), unread_count(st))
  if not ok then return nil, message, code end
  return handle
end

function methods.read(handle, ...)
  return read_formats(state_of(handle, "read"), "read", ...)
end

function methods.write(handle, ...)
  return write_values(handle, state_of(handle, "write"), "write", ...)
end

function methods.seek(handle, whence, offset)
  local st = state_of(handle, "seek")
  whence = whence == nil and "cur" or whence
  if whence ~= "set" and whence ~= "cur" and whence ~= "end" then
    fail("seek", "invalid option `" .. tostring(whence) .. "`")
  end
  local amount = offset == nil and 0 or tonumber(offset)
  if amount == nil then fail("seek", "offset must be a number, got " .. type(offset)) end
  st.eof = false
  return prim.seek(st.id, whence, amount, unread_count(st))
end

function methods.flush(handle)
  local st = state_of(handle, "flush")
  return prim.flush(st.id)
end

function methods.setvbuf(handle, mode)
  state_of(handle, "setvbuf")
  if mode ~= "no" and mode ~= "full" and mode ~= "line" then
    fail("setvbuf", "invalid mode `" .. tostring(mode) .. "`")
  end
  return true
end

local function close_state(st)
  if st.kind == "std" then return nil, "cannot close standard file" end
  st.closed = true
  st.buf, st.pos = "", 1
  return prim.close(st.id)
end

function methods.close(handle)
  return close_state(state_of(handle, "close"))
end

local function lines_iterator(handle, st, close_at_end, fn, ...)
  local formats = { n = select("#", ...), ... }
  return function()
    if st.closed then error("file is already closed", 0) end
    local first = read_formats(st, fn, unpack(formats, 1, formats.n))
    if first == nil and close_at_end then close_state(st) end
    return first
  end
end

function methods.lines(handle, ...)
  local st = state_of(handle, "lines")
  return lines_iterator(handle, st, false, "lines", ...)
end

-- ---- the io table ---------------------------------------------------------------------------
local stdin, stdout, stderr = new_handle(0, "std"), new_handle(1, "std"), new_handle(2, "std")
local default_in, default_out = stdin, stdout

local io = { stdin = stdin, stdout = stdout, stderr = stderr }

local function open_or_raise(fn, path, mode)
  release_pending()
  local id, message = prim.open(path, mode, fn)
  if not id then fail(fn, message) end
  return new_handle(id, "file")
end

function io.open(path, mode)
  release_pending()
  local id, message, code = prim.open(path, mode == nil and "r" or mode)
  if not id then return nil, message, code end
  return new_handle(id, "file")
end

function io.popen(command, mode)
  release_pending()
  local id, message, code = prim.popen(command, mode == nil and "r" or mode)
  if not id then return nil, message, code end
  return new_handle(id, "pipe")
end

function io.tmpfile()
  release_pending()
  local id, message, code = prim.tmpfile()
  if not id then return nil, message, code end
  return new_handle(id, "file")
end

local function default_file(which, fn)
  local handle = which == "in" and default_in or default_out
  local st = handles[handle]
  if st.closed then
    fail(fn, "default " .. (which == "in" and "input" or "output") .. " file is closed")
  end
  return handle, st
end

function io.read(...)
  local _, st = default_file("in", "read")
  return read_formats(st, "read", ...)
end

function io.write(...)
  local handle, st = default_file("out", "write")
  return write_values(handle, st, "write", ...)
end

function io.flush()
  local _, st = default_file("out", "flush")
  return prim.flush(st.id)
end

function io.close(handle)
  if handle == nil then handle = default_out end
  return close_state(state_of(handle, "close"))
end

function io.lines(path, ...)
  if path == nil then
    local handle, st = default_file("in", "lines")
    return lines_iterator(handle, st, false, "lines", ...)
  end
  local handle = open_or_raise("lines", path, "r")
  return lines_iterator(handle, handles[handle], true, "lines", ...)
end

local function select_default(which, fn, file, mode)
  if file ~= nil then
    local handle
    if type(file) == "string" then
      handle = open_or_raise(fn, file, mode)
    else
      state_of(file, fn)
      handle = file
    end
    if which == "in" then default_in = handle else default_out = handle end
  end
  return which == "in" and default_in or default_out
end

function io.input(file) return select_default("in", "input", file, "r") end
function io.output(file) return select_default("out", "output", file, "w") end

function io.type(value)
  local st = handles[value]
  if st == nil then return nil end
  return st.closed and "closed file" or "file"
end

-- Request end (runlua): every handle except the standard ones is closed by the host, so mark
-- them closed here and go back to the standard default files.
local function reset()
  release_pending()
  for _, st in next, handles do
    if st.kind ~= "std" then
      st.closed = true
      st.buf, st.pos = "", 1
    end
  end
  default_in, default_out = stdin, stdout
end

return io, reset
