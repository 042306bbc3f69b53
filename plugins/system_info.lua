-- system_info: what the guest sees of the host at a glance.
--   [plugin.system_info]
--   disks = /, /var              # mount points reported (default "/")
local glob = require("polaris.glob")

local disks = glob.list(polaris.config.disks or "/")

polaris.command("system_info", function()
  local kernel = polaris.sys.uname()
  local load = polaris.sys.loadavg()
  local mem = polaris.sys.meminfo()
  local cpu = polaris.sys.cpu()
  local disk = {}
  for _, path in ipairs(disks) do
    disk[path] = polaris.sys.disk(path) or {error = select(2, polaris.sys.disk(path))}
  end
  return 0, "Success", {
    hostname = kernel.nodename,
    kernel = {name = kernel.sysname, release = kernel.release, version = kernel.version,
              machine = kernel.machine},
    cpus = cpu and cpu.ncpu,
    load = load,
    memory = mem,
    disk = disk,
    time_ms = polaris.now(),
  }
end)
