-- expect: nested deeper than
-- lua-cjson: encoding a 150,000-deep table overflows the C stack (SIGSEGV)
polaris.command("json_deep_encode", function()
  pcall(cjson.encode_max_depth, 1e6)
  local t = {}
  local cur = t
  for _ = 1, 150000 do cur[1] = {} cur = cur[1] end
  return 0, "ok", {#cjson.encode(t)}
end)
