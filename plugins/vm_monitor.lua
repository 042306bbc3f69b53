-- vm_monitor: is the guest's VM process running? Emits 1000110 vm_started
-- and 1000111 vm_stopped (docs/events.md) and broadcasts the same as the
-- messages "vm_started" / "vm_stopped" so other plugins can react. A VM
-- that crashes is reported at once (from the crash notice) with its signal;
-- one that exits is seen at the next scan.
--   [plugin.vm_monitor]
--   names = crosvm, qemu-system-*, cloud-hypervisor, firecracker
--   interval_ms = 2000
local glob = require("polaris.glob")

local VM_STARTED, VM_STOPPED = 1000110, 1000111
local is_vm = glob.matcher(polaris.config.names or "crosvm, qemu-system-*, cloud-hypervisor, firecracker")
local interval = math.tointeger(polaris.config.interval_ms) or 2000

local running = {}          -- pid -> name
local P = {}

local function started(pid, name, first_scan)
  running[pid] = name
  local info = {pid = pid, name = name, already_running = first_scan or nil}
  polaris.emit({eventId = VM_STARTED, params = info})
  polaris.broadcast("vm_started", info)
end

local function stopped(pid, how)
  local info = {pid = pid, name = running[pid]}
  for k, v in pairs(how) do info[k] = v end
  running[pid] = nil
  polaris.emit({eventId = VM_STOPPED, params = info})
  polaris.broadcast("vm_stopped", info)
end

local function scan(first)
  local seen = {}
  for _, p in ipairs(polaris.sys.processes() or {}) do
    if is_vm(p.name) then
      seen[p.pid] = true
      if not running[p.pid] then started(p.pid, p.name, first) end
    end
  end
  for pid in pairs(running) do
    if not seen[pid] then stopped(pid, {reason = "exited"}) end
  end
end

function P.start()
  scan(true)
  polaris.every(interval, function() scan(false) end)
end

function P.on_message(from, topic, info)
  if from == "polarisd" and topic == "process_crashed" and running[info.pid] then
    stopped(info.pid, {reason = "crashed", signal = info.signal, signal_name = info.signal_name,
                       core_dumped = info.core_dumped})
  end
end

function P.status() return {running = running} end

return P
