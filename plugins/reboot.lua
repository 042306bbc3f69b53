-- reboot: lets the guest reboot the host. Off unless the operator says so;
-- while off the action does not exist (the guest gets -1, unknown action).
--   [plugin.reboot]
--   enabled = true
--   command = systemctl reboot       # argv, split on spaces (never a shell)
--   delay_ms = 1000                  # answer first, reboot after
if polaris.config.enabled ~= true then
  polaris.log.info("reboot is disabled (set [plugin.reboot] enabled = true to offer it)")
  return {}
end

local argv = {}
for word in tostring(polaris.config.command or "systemctl reboot"):gmatch("%S+") do argv[#argv + 1] = word end
local delay = math.tointeger(polaris.config.delay_ms) or 1000

polaris.command("reboot", function(args, req)
  polaris.log.warn(("reboot requested by the %s; running '%s' in %d ms"):format(
                   req.origin, table.concat(argv, " "), delay))
  polaris.timer(delay, function()
    local r = polaris.exec(argv, {timeout = 30000})
    if r.code ~= 0 then polaris.log.error("reboot failed:", r.code or r.signal, r.stderr) end
  end)
  return 0, "Success", {rebooting_in_ms = delay}
end)
