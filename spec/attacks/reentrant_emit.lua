-- expect-ok: contained
-- a strategy emitting the event it handles: its own emits never come back
-- to it (registry_route), so there is no loop; two strategies feeding each
-- other are bounded by plugins.emit_per_s
local seen = 0
polaris.on_event(31340, function(ev)
  seen = seen + 1
  polaris.emit({eventId = 31340, params = {again = true}})
  return false
end)
polaris.command("reentrant_emit", function()
  polaris.emit({eventId = 31340, params = {first = true}})
  polaris.sleep(200)
  return 0, seen == 0 and "contained" or ("saw its own emit " .. seen .. " times")
end)
