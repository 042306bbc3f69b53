-- glob.lua - shell-style name patterns ("*", "?", "[abc]") for process
-- names, as operators write them in [plugin.<id>] settings.
--   local glob = require("polaris.glob")
--   local m = glob.matcher("crosvm, qemu-system-*")   -- or a list
--   m("qemu-system-x86_64") --> true
local M = {}

-- A Lua pattern anchored at both ends for one glob.
function M.pattern(g)
  local out, i = {"^"}, 1
  while i <= #g do
    local c = g:sub(i, i)
    if c == "*" then
      out[#out + 1] = ".*"
    elseif c == "?" then
      out[#out + 1] = "."
    elseif c == "[" and g:find("]", i + 1, true) then
      local close = g:find("]", i + 1, true)
      local set = g:sub(i + 1, close - 1):gsub("^!", "^"):gsub("%%", "%%%%")
      out[#out + 1] = "[" .. set .. "]"
      i = close
    else
      out[#out + 1] = c:gsub("%W", "%%%0")
    end
    i = i + 1
  end
  out[#out + 1] = "$"
  return table.concat(out)
end

-- Splits "a, b c" (or takes a list) into words.
function M.list(v)
  if type(v) == "table" then return v end
  local t = {}
  for item in tostring(v or ""):gmatch("[^,%s]+") do t[#t + 1] = item end
  return t
end

-- A function name -> true when any pattern matches. An empty list matches
-- nothing; "*" matches everything.
function M.matcher(v)
  local pats = {}
  for _, g in ipairs(M.list(v)) do pats[#pats + 1] = M.pattern(g) end
  return function(name)
    if type(name) ~= "string" then return false end
    for _, p in ipairs(pats) do
      if name:find(p) then return true end
    end
    return false
  end
end

return M
