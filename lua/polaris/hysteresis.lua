-- hysteresis.lua - alarms that do not chatter. An alarm is raised after
-- `samples` readings in a row at or above `raise`, and cleared only after
-- `samples` readings in a row at or below `clear` (which must be lower), so a
-- value hovering around one threshold gives one alarm, not a storm.
--   local hyst = require("polaris.hysteresis")
--   local a = hyst.new{raise = 90, clear = 80, samples = 3}
--   a:update(95) --> nil, nil, "raised" on the third such reading
local M = {}
M.__index = M

function M.new(o)
  assert(type(o.raise) == "number" and type(o.clear) == "number",
         "hysteresis.new{raise = n, clear = n [, samples = n]}")
  assert(o.clear < o.raise, "hysteresis: clear must be below raise")
  return setmetatable({raise = o.raise, clear = o.clear, samples = math.max(1, o.samples or 1),
                       active = false, streak = 0}, M)
end

-- Feeds one reading; returns "raised" or "cleared" when the state changes.
function M:update(v)
  local toward = (not self.active and v >= self.raise) or (self.active and v <= self.clear)
  self.streak = toward and self.streak + 1 or 0
  if self.streak >= self.samples then
    self.active, self.streak = not self.active, 0
    return self.active and "raised" or "cleared"
  end
  return nil
end

return M
