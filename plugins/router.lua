-- router: which events skip strategies, which are dropped, and which
-- strategies see what, decided on the eventId alone (events are never
-- decoded to route them). Without a rule, every strategy registered for an
-- eventId runs, in load order.
--
-- Settings, in polarisd.conf:
--   [plugin.router]
--   drop = 1234, 5678              # never forwarded (counted: core.events_dropped_by_router)
--   forward = 42                   # forwarded without any strategy
--   route.9001 = crash_log_capture, tagger   # only these, in this order
local function list(s)
  local t = {}
  for item in tostring(s or ""):gmatch("[^,%s]+") do t[#t + 1] = item end
  return t
end

local function event_id(s)
  local n = math.tointeger(tonumber(s))
  if not n then error("router: '" .. tostring(s) .. "' is not an eventId", 0) end
  return n
end

for _, id in ipairs(list(polaris.config.drop)) do polaris.route(event_id(id), "drop") end
for _, id in ipairs(list(polaris.config.forward)) do polaris.route(event_id(id), "forward") end
for key, value in pairs(polaris.config) do
  local id = key:match("^route%.(%d+)$")
  if id then polaris.route(event_id(id), list(value)) end
end
