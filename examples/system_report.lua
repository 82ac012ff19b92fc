-- System report: a runlua script that asks the operating system a few questions through
-- vulcan.process.exec and the managed io library, prints what it finds, and returns a summary.
--
--   luaskills-runtime run examples/system_report.lua
--   luaskills-runtime run examples/system_report.lua --args '{"probe": ["python3", "--version"]}'
--
-- `args.probe` (optional) is one more program to run: {program, arg1, arg2, ...}.
-- The script runs with its own folder as the working directory (runlua file mode).

local info = vulcan.os.info()
local windows = info.os == "windows"

-- Run a program (no shell) and return its trimmed stdout, or nil and the reason.
local function capture(program, argv)
  local result = vulcan.process.exec({ program = program, args = argv or {}, timeout_ms = 5000 })
  if not result.ok then
    return nil, result.error or ("exit code " .. tostring(result.code))
  end
  return (result.stdout:gsub("%s+$", ""))
end

local report = {
  os = info.os,
  arch = info.arch,
  script_folder = vulcan.runtime.cwd(),
}

if windows then
  report.kernel = capture("cmd.exe", { "/C", "ver" })
  report.user = capture("whoami")
else
  report.kernel = capture("uname", { "-sr" })
  report.user = capture("id", { "-un" })
  -- a shell pipeline as a one-line command, through the managed io.popen
  local pipe = io.popen("ls -1 | wc -l")
  report.files_here = tonumber(pipe:read("l"))
  pipe:close()
  -- plain file reading through the managed io library
  local loadavg = io.open("/proc/loadavg", "r")
  if loadavg then
    report.load_1min = loadavg:read("n")
    loadavg:close()
  end
end

if type(args.probe) == "table" and #args.probe > 0 then
  local argv = {}
  for i = 2, #args.probe do argv[#argv + 1] = tostring(args.probe[i]) end
  local text, why = capture(tostring(args.probe[1]), argv)
  report.probe = text or ("failed: " .. tostring(why))
end

for _, key in ipairs({ "os", "arch", "kernel", "user", "files_here", "load_1min", "probe" }) do
  if report[key] ~= nil then print(key, report[key]) end
end

return report
