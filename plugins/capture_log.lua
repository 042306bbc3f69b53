-- capture_log: the guest (or an app) asks for a capture now.
--   request: {"action": "capture_log", "args": {"pid": 1234, "reason": "hang"}}
--   answer:  0, "Success", {path = ".../hang-name-1234-....tar.gz", pieces = {...}}
-- Without pid it captures the host-wide pieces (log tails, kernel log).
-- Settings as for crash_log_capture, under [plugin.capture_log].
local capture = require("polaris.capture")

local settings = capture.settings(polaris.config)

polaris.command("capture_log", function(args)
  local pid = type(args.pid) == "number" and math.tointeger(args.pid) or nil
  if args.pid ~= nil and (not pid or pid <= 0) then
    return -4, "pid must be a positive integer"
  end
  local reason = tostring(args.reason or "manual"):gsub("[^%w_-]", "_"):sub(1, 32)
  local name = args.name
  if pid then
    local snap = polaris.sys.process(pid)
    if not snap then return -4, "no process " .. pid end
    name = name or snap.name
  end
  local path, pieces = capture.collect(settings, {pid = pid, name = name or "host", reason = reason})
  return 0, "Success", {path = path, pieces = pieces}
end)
