-- expect: not enough memory
-- a small table whose text is 64 MiB: lua-cjson mallocs it outside the
-- plugin's memory limit (and calls exit() when malloc fails)
polaris.command("json_huge_encode", function()
  local s = ("x"):rep(4096)
  local t = {}
  for i = 1, 16384 do t[i] = s end
  return 0, "ok", {#cjson.encode(t)}
end)
