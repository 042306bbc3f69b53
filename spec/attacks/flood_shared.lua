-- expect: plugins.shared_plugin_max_bytes
-- fill the shared store: the plugin's share ends it, not the store's size
polaris.command("flood_shared", function()
  local n = 0
  local ok, err = pcall(function()
    for i = 1, 100000 do polaris.shared.set("flood" .. i, string.rep("x", 1000)); n = i end
  end)
  for i = 1, n do polaris.shared.set("flood" .. i, nil) end
  if ok then return 0, "never refused" end
  error(err, 0)
end)
