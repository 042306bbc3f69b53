-- expect: nested too deeply
-- lua-cjson: raise the plugin's own decode depth, then 200,000 nested '['
-- overflow the C stack (SIGSEGV)
polaris.command("json_deep_decode", function()
  pcall(cjson.decode_max_depth, 1e6)
  return 0, "ok", {cjson.decode(("["):rep(200000) .. ("]"):rep(200000))}
end)
