-- expect-ok: logged
-- 50,000 lines: the daemon holds none (written at once), and
-- daemon.log_burst lets a few a second through per plugin
polaris.command("flood_log", function()
  for i = 1, 50000 do polaris.log.info("flood line " .. i .. string.rep("x", 500)) end
  return 0, "logged"
end)
