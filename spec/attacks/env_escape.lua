-- expect-ok: contained
polaris.command("env_escape", function()
  local leaks = {}
  if getmetatable(_G) ~= nil then leaks[#leaks + 1] = "_G metatable" end
  local f = load("return _ENV", "x", "t", {})
  if f and f() ~= nil and f().polaris then leaks[#leaks + 1] = "load env" end
  local ok = pcall(load, "return 1", "x", "b")
  if ok and load("return 1", "x", "b") then leaks[#leaks + 1] = "binary mode" end
  if rawget(_G, "debug") or (rawget(_G, "package") or {}).loadlib then leaks[#leaks + 1] = "rawget" end
  if require and pcall(require, "debug") then leaks[#leaks + 1] = "require debug" end
  if pcall(require, "../../../../etc/passwd") then leaks[#leaks + 1] = "require path" end
  return 0, #leaks == 0 and "contained" or table.concat(leaks, ",")
end)
