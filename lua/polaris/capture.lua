-- capture.lua - gather the evidence around a process (its journal lines, the
-- tails of some log files, its /proc snapshot, the kernel log) into one
-- .tar.gz, and keep the capture directory within its limits. Used by the
-- crash_log_capture strategy and the capture_log command.
--
-- Needs FileSystemAccess (the capture dir and the log files must be under
-- the plugin's allowed_paths), ExecuteSyscall (journalctl, dmesg) and
-- ReadHostState (the /proc snapshot). Every piece is optional: a piece that
-- cannot be had is listed in the archive's capture.json with the reason,
-- and the rest is still captured. Only writing the archive can fail.
local glob = require("polaris.glob")

local M = {}

-- Settings from [plugin.<id>] with their defaults.
function M.settings(cfg)
  cfg = cfg or {}
  local function num(k, d)
    local v = cfg[k]
    if v == nil then return d end
    local n, unit = tostring(v):match("^(%d+)([KMGkmg]?)$")
    if not n then error(("[plugin] %s: '%s' is not a whole number (K, M, G allowed)"):format(k, tostring(v)), 0) end
    local mul = ({k = 1024, m = 1024 ^ 2, g = 1024 ^ 3})[unit:lower()] or 1
    return math.tointeger(tonumber(n) * mul)
  end
  return {
    dir = cfg.dir or "/var/lib/polaris/captures",
    timeout_ms = num("timeout_ms", 5000),
    journal_lines = num("journal_lines", 200),
    dmesg_lines = num("dmesg_lines", 100),
    log_files = glob.list(cfg.log_files or ""),
    log_tail_bytes = num("log_tail_bytes", 65536),
    max_files = num("max_files", 50),
    max_bytes = num("max_bytes", 100 * 1024 * 1024),
  }
end

local function safe_name(s)
  return (tostring(s or "unknown"):gsub("[^%w%-_.]", "_"):sub(1, 40))
end

local function lines_tail(text, n)
  local lines = {}
  for line in text:gmatch("[^\n]*\n?") do
    if line ~= "" then lines[#lines + 1] = line end
  end
  local from = math.max(1, #lines - n + 1)
  return table.concat(lines, "", from)
end

-- Runs argv with what is left of the deadline; returns stdout or nil, why.
local function run(argv, deadline, step_ms)
  local left = deadline - polaris.now()
  if left <= 0 then return nil, "skipped: capture timeout" end
  local ok, r = pcall(polaris.exec, argv, {timeout = math.min(left, step_ms)})
  if not ok then return nil, tostring(r) end
  if r.timed_out then return nil, "timed out" end
  if r.code ~= 0 then
    local err = (r.stderr or ""):gsub("%s+$", "")
    return nil, ("exit %s%s"):format(tostring(r.code or r.signal), err ~= "" and (": " .. err) or "")
  end
  return r.stdout
end

-- Captures what it can about `target` ({pid, name, snapshot, event, reason})
-- into s.dir. Returns the archive path, and the list of pieces; or raises
-- when the archive itself cannot be written.
function M.collect(s, target)
  local deadline = polaris.now() + s.timeout_ms
  local files, pieces = {}, {}
  local function add(name, data, note)
    if data then files[#files + 1] = {name = name, data = data} end
    pieces[#pieces + 1] = {name = name, included = data ~= nil, note = note}
  end
  local pid = math.tointeger(target.pid)

  if target.event then add("event.json", cjson.encode(target.event)) end

  if pid then
    local snap, err = polaris.sys.process(pid)
    if snap then
      add("process.json", cjson.encode(snap), "read at capture time")
    elseif target.snapshot then
      add("process.json", cjson.encode(target.snapshot), "taken by the crash monitor (the process was gone)")
    else
      add("process.json", nil, err)
    end
    if s.journal_lines > 0 then
      local out, why = run({"journalctl", "--no-pager", "-o", "short-iso", "-n",
                            tostring(s.journal_lines), "_PID=" .. pid}, deadline, 2000)
      add("journal.txt", out, why)
    end
  end

  for _, path in ipairs(s.log_files) do
    local data, err = polaris.fs.read(path, s.log_tail_bytes, {tail = true})
    add("logs/" .. safe_name(path:match("[^/]+$")), data, err)
  end

  if s.dmesg_lines > 0 then
    local out, why = run({"dmesg", "--ctime"}, deadline, 2000)
    add("dmesg.txt", out and lines_tail(out, s.dmesg_lines), why)
  end

  local now = polaris.now()
  local stamp = os.date("!%Y%m%dT%H%M%S", now // 1000) .. ("%03dZ"):format(now % 1000)
  local base = ("%s-%s-%s-%s.tar.gz"):format(target.reason or "capture", safe_name(target.name),
                                             tostring(pid or 0), stamp)
  local path = s.dir .. "/" .. base
  add("capture.json", cjson.encode({pid = pid, name = target.name, reason = target.reason,
                                    time_ms = now, host = polaris.sys.uname().nodename,
                                    pieces = pieces}))
  local ok, err = polaris.fs.mkdir(s.dir)
  if not ok then error("capture dir: " .. err, 0) end
  ok, err = polaris.fs.archive(path, files)
  if not ok then error("capture: " .. err, 0) end
  M.prune(s.dir, s.max_files, s.max_bytes, base)
  return path, pieces
end

-- Keeps at most max_files archives and max_bytes in dir, deleting the
-- oldest first; `keep` (the newest) is never deleted.
function M.prune(dir, max_files, max_bytes, keep)
  local names = polaris.fs.list(dir) or {}
  local list, total = {}, 0
  for _, name in ipairs(names) do
    if name:match("%.tar%.gz$") then
      local st = polaris.fs.stat(dir .. "/" .. name)
      if st and st.type == "file" then
        list[#list + 1] = {name = name, size = st.size, mtime = st.mtime_ms}
        total = total + st.size
      end
    end
  end
  table.sort(list, function(a, b)
    if a.mtime ~= b.mtime then return a.mtime < b.mtime end
    return a.name < b.name
  end)
  local removed, count = 0, #list
  for _, f in ipairs(list) do
    if count <= max_files and total <= max_bytes then break end
    if f.name ~= keep and polaris.fs.remove(dir .. "/" .. f.name) then
      count, total, removed = count - 1, total - f.size, removed + 1
    end
  end
  return removed
end

return M
