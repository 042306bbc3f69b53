-- crash_log_capture: on a crash event, pack the evidence into a .tar.gz in
-- the capture dir, point the event's logf at it, and forward the event.
-- If the capture fails, the event is still forwarded, with strategyError
-- saying why (the daemon does that for any handler that raises).
--
--   [plugin.crash_log_capture]
--   events = 1000100                 # which eventIds are crashes (apps may report their own)
--   dir = /var/lib/polaris/captures  # where archives go (must be in allowed_paths)
--   log_files = /var/log/syslog      # tails to include
--   log_tail_bytes = 65536
--   journal_lines = 200              # journalctl _PID=<pid>, when journalctl exists
--   dmesg_lines = 100
--   timeout_ms = 5000                # for the whole capture
--   max_files = 50                   # retention: oldest archives go first
--   max_bytes = 100M
--   allowed_paths = /srv/app/logs    # more paths for this plugin (operator's grant)
local capture = require("polaris.capture")
local glob = require("polaris.glob")

local settings = capture.settings(polaris.config)

local function on_crash(ev)
  local params = type(ev.params) == "table" and ev.params or {}
  local pid = math.tointeger(params.pid) or math.tointeger(ev.pid)
  local path, pieces = capture.collect(settings, {
    pid = pid, name = params.name or ev.processName, reason = "crash",
    snapshot = params.exe and params or nil, event = ev,
  })
  local got = {}
  for _, piece in ipairs(pieces) do
    if piece.included then got[#got + 1] = piece.name end
  end
  ev.logf = path
  ev.params = params
  params.captured = table.concat(got, ",")
  polaris.log.info(("captured %s for pid %s"):format(path, tostring(pid)))
  return ev
end

for _, id in ipairs(glob.list(polaris.config.events or "1000100")) do
  local n = math.tointeger(tonumber(id))
  if not n then error("events: '" .. id .. "' is not an eventId", 0) end
  polaris.on_event(n, on_crash)
end
