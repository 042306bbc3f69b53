-- resource_monitor: samples CPU, memory, load and disk usage every
-- interval_ms and emits 1000120 resource_alarm when a value stays at or
-- above its raise threshold for `samples` readings, and 1000121
-- resource_cleared once it stays at or below its clear threshold as long.
-- The gap between the two is the hysteresis: no alarm storms.
--   [plugin.resource_monitor]
--   interval_ms = 5000
--   samples = 3
--   cpu_raise = 90           cpu_clear = 75      # % busy over the interval
--   memory_raise = 90        memory_clear = 80   # % of MemTotal not available
--   load_raise = 200         load_clear = 150    # 1-min load per 100 CPUs (% of all cores)
--   disk_raise = 90          disk_clear = 85     # % used, as df shows it
--   disks = /                                   # mount points to watch
local glob = require("polaris.glob")
local hysteresis = require("polaris.hysteresis")

local RESOURCE_ALARM, RESOURCE_CLEARED = 1000120, 1000121
local cfg = polaris.config
local interval = math.tointeger(cfg.interval_ms) or 5000
local samples = math.tointeger(cfg.samples) or 3

local function limits(name, raise, clear)
  return hysteresis.new{raise = tonumber(cfg[name .. "_raise"]) or raise,
                        clear = tonumber(cfg[name .. "_clear"]) or clear, samples = samples}
end

local alarms = {cpu = limits("cpu", 90, 75), memory = limits("memory", 90, 80),
                load = limits("load", 200, 150)}
local disks = glob.list(cfg.disks or "/")
for _, path in ipairs(disks) do alarms["disk:" .. path] = limits("disk", 90, 85) end

local last_cpu
local values = {}

local function readings()
  local r = {}
  local cpu = polaris.sys.cpu()
  if cpu and last_cpu and cpu.total > last_cpu.total then
    r.cpu = 100 * (cpu.busy - last_cpu.busy) / (cpu.total - last_cpu.total)
  end
  last_cpu = cpu
  local mem = polaris.sys.meminfo()
  if mem then r.memory = mem.used_pct end
  local load = polaris.sys.loadavg()
  if load and cpu and cpu.ncpu > 0 then r.load = 100 * load.avg1 / cpu.ncpu end
  for _, path in ipairs(disks) do
    local d = polaris.sys.disk(path)
    if d then r["disk:" .. path] = d.used_pct end
  end
  return r
end

local function sample()
  for name, value in pairs(readings()) do
    values[name] = value
    local a = alarms[name]
    local change = a:update(value)
    if change then
      local params = {resource = name, value = math.floor(value * 10 + 0.5) / 10, state = change,
                      raise = a.raise, clear = a.clear}
      polaris.emit({eventId = change == "raised" and RESOURCE_ALARM or RESOURCE_CLEARED, params = params})
      polaris.log[change == "raised" and "warn" or "info"](("%s %s at %s%%"):format(name, change, params.value))
    end
  end
end

local P = {}
function P.start()
  sample()
  polaris.every(interval, sample)
end

function P.status()
  local active = {}
  for name, a in pairs(alarms) do if a.active then active[#active + 1] = name end end
  return {values = values, active = active}
end

return P
