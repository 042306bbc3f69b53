-- crash_monitor: a host process died of SIGSEGV, SIGABRT, SIGBUS, ... ->
-- event 1000100 "process_crashed" (docs/events.md), which strategies such
-- as crash_log_capture then enrich before it goes to the guest.
--
-- The daemon watches the kernel (proc connector) and tells every plugin
-- with ReadHostState through on_message("polarisd", "process_crashed", info).
-- Which processes count is decided here, in polarisd.conf:
--   [plugin.crash_monitor]
--   processes = *                    # names (globs) that count; default every process
--   ignore = polarisd, *-test        # names never reported
local glob = require("polaris.glob")

local CRASH_EVENT = 1000100
local wanted = glob.matcher(polaris.config.processes or "*")
local ignored = glob.matcher(polaris.config.ignore or "")

local P = {}

function P.on_message(from, topic, info)
  if from ~= "polarisd" or topic ~= "process_crashed" then return end
  local name = info.name ~= "" and info.name or "?"
  if not wanted(name) or ignored(name) then return end
  local ok, err = polaris.emit({
    eventId = CRASH_EVENT,
    params = {
      pid = info.pid, name = name, exe = info.exe, cmdline = info.cmdline,
      signal = info.signal, signal_name = info.signal_name, core_dumped = info.core_dumped,
      uid = info.uid, ppid = info.ppid, rss_kb = info.rss_kb, threads = info.threads,
      crashed_at_ms = info.time_ms,
    },
  })
  if not ok then polaris.log.warn(("crash of pid %d not reported: %s"):format(info.pid, err)) end
end

return P
