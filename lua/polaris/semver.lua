-- semver.lua - versions "1.2.3" or {major=,minor=,patch=}, and the ranges
-- plugin manifests use: "^1.2.0", "~1.2.0", ">=1.0.0 <2.0.0", "1.2.3", "*".
local M = {}

-- Returns {major, minor, patch} or nil, message.
function M.parse(v)
  if type(v) == "table" then
    local t = {v.major, v.minor, v.patch}
    for i = 1, 3 do
      if math.type(t[i]) ~= "integer" and not (type(t[i]) == "number" and t[i] == math.floor(t[i])) then
        return nil, "version object needs integer major, minor and patch"
      end
      t[i] = math.tointeger(t[i])
      if not t[i] then return nil, "version numbers must fit in an integer" end
      if t[i] < 0 then return nil, "version numbers must not be negative" end
    end
    return t
  end
  if type(v) ~= "string" then return nil, "version must be \"X.Y.Z\" or {major,minor,patch}" end
  local a, b, c = v:match("^(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil, "version '" .. v .. "' is not X.Y.Z" end
  local t = {math.tointeger(tonumber(a)), math.tointeger(tonumber(b)), math.tointeger(tonumber(c))}
  if not (t[1] and t[2] and t[3]) then    -- found by fuzz_manifest: 20+ digits became floats
    return nil, "version '" .. v .. "' has a number too large"
  end
  return t
end

function M.tostring(t) return string.format("%d.%d.%d", t[1], t[2], t[3]) end

function M.compare(a, b)
  for i = 1, 3 do
    if a[i] ~= b[i] then return a[i] < b[i] and -1 or 1 end
  end
  return 0
end

local function comparator(op, v)
  local t, err = M.parse(v)
  if not t then return nil, err end
  local ops = {
    [">="] = function(x) return M.compare(x, t) >= 0 end,
    [">"] = function(x) return M.compare(x, t) > 0 end,
    ["<="] = function(x) return M.compare(x, t) <= 0 end,
    ["<"] = function(x) return M.compare(x, t) < 0 end,
    ["="] = function(x) return M.compare(x, t) == 0 end,
  }
  return ops[op]
end

-- Returns a predicate over parsed versions, or nil, message.
function M.range(r)
  if type(r) ~= "string" then return nil, "version range must be a string" end
  r = r:match("^%s*(.-)%s*$")
  if r == "*" or r == "" then return function() return true end end
  local lead, rest = r:sub(1, 1), r:sub(2)
  if lead == "^" or lead == "~" then
    local t, err = M.parse(rest)
    if not t then return nil, err end
    local upper
    if lead == "~" then upper = {t[1], t[2] + 1, 0}
    elseif t[1] > 0 then upper = {t[1] + 1, 0, 0}
    elseif t[2] > 0 then upper = {0, t[2] + 1, 0}
    else upper = {0, 0, t[3] + 1} end
    return function(x) return M.compare(x, t) >= 0 and M.compare(x, upper) < 0 end
  end
  local preds = {}
  for part in r:gmatch("%S+") do
    local op, v = part:match("^([<>=]=?)(.+)$")
    if not op then op, v = "=", part end
    local p, err = comparator(op, v)
    if not p then return nil, err or ("bad comparator '" .. part .. "'") end
    preds[#preds + 1] = p
  end
  return function(x)
    for _, p in ipairs(preds) do if not p(x) then return false end end
    return true
  end
end

function M.satisfies(version, range)
  local v, err = M.parse(version)
  if not v then return nil, err end
  local p, rerr = M.range(range)
  if not p then return nil, rerr end
  return p(v)
end

return M
