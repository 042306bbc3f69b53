-- expect-ok: own string table only
-- tries to change what every plugin s strings do
local ok = pcall(function() getmetatable("").__index = {upper = function() return "pwned" end} end)
string.upper = function() return "pwned" end
polaris.command("string_poison", function()
  return 0, getmetatable("") == false and "own string table only" or "metatable reachable"
end)
