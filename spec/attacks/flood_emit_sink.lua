-- expect-ok: sink
-- drops flood_emit's and reentrant_emit's events, so they do not reach the guest
polaris.on_event(31337, function() return false end)
polaris.on_event(31340, function() return false end)   -- reentrant_emit's
polaris.command("flood_emit_sink", function() return 0, "sink" end)
