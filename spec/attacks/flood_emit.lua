-- expect: plugins.emit_per_s
-- an emit loop: the bucket (plugins.emit_per_s) answers busy long before the
-- core queue fills for everyone; flood_emit_sink drops what gets through
polaris.command("flood_emit", function()
  for i = 1, 100000 do
    local ok, err = polaris.emit({eventId = 31337, params = {i = i}})
    if not ok then error(err, 0) end
  end
  return 0, "never refused"
end)
