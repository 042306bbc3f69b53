-- expect-ok: refused at 256
-- live timers are the daemon's memory: plugins.timers_max bounds them
polaris.command("flood_timers", function()
  local ids, answer = {}, "never refused"
  for i = 1, 100000 do
    local ok, id = pcall(polaris.every, 3600000, function() end)
    if not ok then
      answer = id:find("plugins.timers_max", 1, true) and ("refused at " .. (i - 1)) or id
      break
    end
    ids[i] = id
  end
  for _, id in ipairs(ids) do polaris.cancel(id) end
  return 0, answer
end)
