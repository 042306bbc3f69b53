-- monitors_spec.lua - what ships in the box, seen from the guest: a crashed
-- host process becomes a crash event with a log capture attached
-- (crash_monitor + crash_log_capture), resource alarms with hysteresis
-- (resource_monitor, on a fake /proc), the VM process coming and going
-- (vm_monitor, on a fake /proc).
local H = require "helpers"
local cjson, ptest = H.cjson, H.ptest

after_each(function() H.stop_all() end)

local CRASHER = H.BUILD .. "/polaris-crasher"
local CRASH, VM_STARTED, VM_STOPPED, ALARM, CLEARED = 1000100, 1000110, 1000111, 1000120, 1000121

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- The next event from the guest link that is not a heartbeat.
local function next_event(g, timeout_ms)
  return assert(g:event(timeout_ms or 5000))
end

local function is_root()
  local how, code, out = H.run({"id", "-u"})
  return how == "exited" and code == 0 and out:match("^0%s") ~= nil
end

local function crash_daemon(extra)
  local dir = ptest.mkdtemp()
  local cfg = {
    monitor = {process_events = "auto"},
    ["plugin.crash_monitor"] = {processes = "polaris-crash*"},
    ["plugin.crash_log_capture"] = {dir = dir .. "/captures", allowed_paths = dir,
                                    log_files = dir .. "/app.log", dmesg_lines = 20},
  }
  for section, kv in pairs(extra or {}) do
    cfg[section] = cfg[section] or {}
    for k, v in pairs(kv) do cfg[section][k] = v end
  end
  write(dir .. "/app.log", "old line\n" .. ("filler\n"):rep(20000) .. "last words before the crash\n")
  local d = H.start_daemon({config = cfg})
  if d:status().monitor.process_events ~= 1 then
    H.stop_ok(d)
    return nil, dir
  end
  return d, dir
end

-- Runs the crasher to its end; returns its pid.
local function crash(how)
  local pid = assert(ptest.spawn({CRASHER, "150", how}))
  local res, sig = ptest.wait(pid, 10000)
  assert.are.equal("signaled", res)
  return pid, sig
end

local function tar_list(path)
  local how, code, out = H.run({"tar", "-tzf", path})
  assert.are.equal("exited", how)
  assert.are.equal(0, code, out)
  local names = {}
  for line in out:gmatch("[^\n]+") do names[line] = true end
  return names
end

local function tar_read(path, name)
  local how, code, out = H.run({"tar", "-xzOf", path, name})
  assert.are.same({"exited", 0}, {how, code}, out)
  return out
end

describe("crash monitor and crash_log_capture", function()
  it("a segfaulting process reaches the guest within 2 s, signal 11, with its evidence as a .tar.gz", function()
    if not is_root() then return pending("the kernel proc connector needs root") end
    local d, dir = crash_daemon()
    if not d then return pending("the kernel proc connector is not available here") end
    local g = H.guest_connected(d)
    local pid, sig = crash("segv")
    assert.are.equal(11, sig)
    local t0 = ptest.now_ms()
    local ev = next_event(g, 2000)
    assert.is_true(ptest.now_ms() - t0 <= 2000)
    assert.are.equal(CRASH, ev.eventId)
    local p = ev.params
    assert.are.equal(pid, p.pid)
    assert.are.equal(11, p.signal)
    assert.are.equal("SIGSEGV", p.signal_name)
    assert.are.equal("polaris-crasher", p.name)
    assert.is_false(p.core_dumped)        -- RLIMIT_CORE is 0 for the crasher
    assert.are.equal("polarisd", ev.processName)
    assert.are.equal(d:status().version, ev.processVer)
    assert.is_nil(ev.strategyError)
    -- the attachment: a real gzip'd tar in the capture dir, with the pieces
    assert.is_string(ev.logf)
    assert.are.equal(dir .. "/captures/", ev.logf:sub(1, #dir + 10))
    assert.is_truthy(ev.logf:match("%.tar%.gz$"))
    local how, code = H.run({"gzip", "-t", ev.logf})
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    local names = tar_list(ev.logf)
    for _, want in ipairs({"event.json", "process.json", "capture.json", "logs/app.log"}) do
      assert.is_true(names[want] ~= nil, want .. " in " .. cjson.encode(names))
    end
    assert.is_truthy(p.captured:find("logs/app.log", 1, true))
    local tail = tar_read(ev.logf, "logs/app.log")
    assert.is_truthy(tail:find("last words before the crash", 1, true))
    assert.is_nil(tail:find("old line", 1, true))          -- a tail, not the whole file
    assert.is_true(#tail <= 65536)
    local snap = cjson.decode(tar_read(ev.logf, "process.json"))
    assert.are.equal(pid, snap.pid)
    assert.are.equal("polaris-crasher", snap.name)
    local inner = cjson.decode(tar_read(ev.logf, "event.json"))
    assert.are.equal(pid, inner.params.pid)
    local summary = cjson.decode(tar_read(ev.logf, "capture.json"))
    assert.are.equal(pid, summary.pid)
    assert.are.equal("crash", summary.reason)
    assert.are.equal(1, d:status().monitor.crashes_seen)
    H.stop_ok(d)
  end)

  it("reports SIGABRT too, and only for the processes the config names", function()
    if not is_root() then return pending("the kernel proc connector needs root") end
    local d = crash_daemon({["plugin.crash_monitor"] = {processes = "polaris-crash*", ignore = "*-crasher"}})
    if not d then return pending("the kernel proc connector is not available here") end
    local g = H.guest_connected(d)
    crash("abort")
    -- the daemon saw it, the plugin's policy dropped it: the next event is the app's
    H.wait_for("the crash to be seen", function() return d:status().monitor.crashes_seen == 1 end)
    local app = H.app(d)
    app:send_event(H.event(4242))
    assert.are.equal(4242, next_event(g).eventId)
    H.stop_ok(d)
    d = crash_daemon()
    g = H.guest_connected(d)
    local pid = crash("abort")
    local ev = next_event(g)
    assert.are.equal(CRASH, ev.eventId)
    assert.are.equal(pid, ev.params.pid)
    assert.are.equal(6, ev.params.signal)
    assert.are.equal("SIGABRT", ev.params.signal_name)
    H.stop_ok(d)
  end)

  it("a failed capture still forwards the event, with strategyError", function()
    if not is_root() then return pending("the kernel proc connector needs root") end
    -- the capture dir is outside what the plugin may write
    local d = crash_daemon({["plugin.crash_log_capture"] = {dir = "/nonexistent-polaris-root/captures"}})
    if not d then return pending("the kernel proc connector is not available here") end
    local g = H.guest_connected(d)
    local pid = crash("segv")
    local ev = next_event(g)
    assert.are.equal(CRASH, ev.eventId)
    assert.are.equal(pid, ev.params.pid)
    assert.is_nil(ev.logf)
    assert.are.equal("crash_log_capture", ev.strategyError.plugin)
    assert.is_truthy(ev.strategyError.reason:find("capture dir", 1, true), ev.strategyError.reason)
    H.stop_ok(d)
  end)

  it("without the connector, watches named processes with pidfds and still sees their crashes", function()
    local d, dir = crash_daemon({monitor = {process_events = "pidfd", fallback_names = "polaris-crash*",
                                            fallback_scan_ms = 10}})
    assert.is_nil(d)               -- crash_daemon wants the connector: start it ourselves
    d = H.start_daemon({config = {
      monitor = {process_events = "pidfd", fallback_names = "polaris-crash*", fallback_scan_ms = 10},
      ["plugin.crash_log_capture"] = {dir = dir .. "/captures", allowed_paths = dir, dmesg_lines = 0},
    }})
    assert.are.equal(2, d:status().monitor.process_events)
    local g = H.guest_connected(d)
    local pid = assert(ptest.spawn({CRASHER, "300", "bus"}))
    -- the spec is the parent and reaps it only after the event: the zombie's
    -- status is what the fallback reads
    local ev = next_event(g)
    assert.are.equal(CRASH, ev.eventId)
    assert.are.equal(pid, ev.params.pid)
    assert.are.equal("SIGBUS", ev.params.signal_name)
    assert.are.equal("polaris-crasher", ev.params.name)
    assert.is_string(ev.logf)
    assert.are.same({"signaled", 7}, {ptest.wait(pid, 5000)})
    -- a watched process that exits normally is not a crash
    local ok_pid = assert(ptest.spawn({CRASHER, "100", "exit"}))
    H.wait_for("the exit to be seen", function()
      return d:log_text():find(("process %d (polaris-crasher) ended with status 768: not a crash"):format(ok_pid), 1, true)
    end)
    assert.are.same({"exited", 3}, {ptest.wait(ok_pid, 5000)})
    H.app(d):send_event(H.event(5151))
    assert.are.equal(5151, next_event(g).eventId)
    assert.are.equal(1, d:status().monitor.crashes_seen)
    H.stop_ok(d)
  end)

  it("says so and stays off when process events are switched off", function()
    local d = H.start_daemon({config = {monitor = {process_events = "off"}}})
    assert.are.equal(0, d:status().monitor.process_events)
    assert.is_truthy(d:log_text():find("process crash events are off", 1, true))
    H.stop_ok(d)
  end)
end)

-- A fake /proc the monitors read instead of the real one.
local function fake_proc(mem_used_pct)
  local root = ptest.mkdtemp()
  write(root .. "/loadavg", "0.10 0.10 0.10 1/100 1\n")
  write(root .. "/stat", "cpu  100 0 100 1000 0 0 0 0 0 0\ncpu0 100 0 100 1000 0 0 0 0 0 0\n")
  local function set_mem(pct)
    local total = 1000000
    write(root .. "/meminfo", ("MemTotal: %d kB\nMemFree: 1 kB\nMemAvailable: %d kB\n")
          :format(total, math.floor(total * (100 - pct) / 100)))
  end
  set_mem(mem_used_pct)
  return root, set_mem
end

describe("resource monitor", function()
  it("raises once above the threshold, clears only below the clear level, then raises again", function()
    local root, set_mem = fake_proc(95)
    local d = H.start_daemon({config = {
      monitor = {proc_root = root},
      ["plugin.resource_monitor"] = {interval_ms = 20, samples = 3, memory_raise = 90,
                                     memory_clear = 80, disks = ""},
    }})
    local g = H.guest_connected(d)
    local ev = next_event(g)
    assert.are.equal(ALARM, ev.eventId)
    assert.are.same({resource = "memory", state = "raised", value = 95, raise = 90, clear = 80}, ev.params)
    -- between the thresholds: still raised, and no second alarm
    set_mem(85)
    local app = H.app(d)
    -- below clear: one "cleared", and nothing came in between
    set_mem(70)
    ev = next_event(g)
    assert.are.equal(CLEARED, ev.eventId)
    assert.are.equal("cleared", ev.params.state)
    assert.are.equal(70, ev.params.value)
    set_mem(99)
    ev = next_event(g)
    assert.are.equal(ALARM, ev.eventId)
    assert.are.equal(99, ev.params.value)
    app:send_event(H.event(77))
    assert.are.equal(77, next_event(g).eventId)
    H.stop_ok(d)
    os.execute("rm -rf '" .. root .. "'")
  end)
end)

describe("vm monitor", function()
  it("emits vm_started and vm_stopped as the VM process comes and goes", function()
    local root = fake_proc(10)
    local d = H.start_daemon({config = {
      monitor = {proc_root = root},
      ["plugin.vm_monitor"] = {interval_ms = 20, names = "crosvm qemu-system-*"},
    }})
    local g = H.guest_connected(d)
    os.execute("mkdir -p '" .. root .. "/4321' '" .. root .. "/4322'")
    write(root .. "/4322/comm", "bash\n")
    write(root .. "/4321/comm", "qemu-system-x86\n")
    local ev = next_event(g)
    assert.are.equal(VM_STARTED, ev.eventId)
    assert.are.equal(4321, ev.params.pid)
    assert.are.equal("qemu-system-x86", ev.params.name)
    os.execute("rm -rf '" .. root .. "/4321'")
    ev = next_event(g)
    assert.are.equal(VM_STOPPED, ev.eventId)
    assert.are.equal(4321, ev.params.pid)
    assert.are.equal("exited", ev.params.reason)
    H.stop_ok(d)
    os.execute("rm -rf '" .. root .. "'")
  end)
end)
