-- host_commands_spec.lua - the command plugins that ship (ping,
-- system_info, capture_log, list_actions, reboot), asked the way the guest
-- asks: CMD_REQ_G2H over PLP, answered CMD_RESP_H2G with the same seq_id.
local H = require "helpers"
local codec, cjson, ptest = H.codec, H.cjson, H.ptest

after_each(function() H.stop_all() end)

local function guest_call(g, seq, action, args)
  g:send_plp(codec.PLP_CMD_REQ_G2H, seq, cjson.encode({action = action, args = args or {}}))
  local f = assert(g:expect(codec.PLP_CMD_RESP_H2G, seq, 10000))
  return cjson.decode(f.payload)
end

local function sh(argv)
  local how, code, out = H.run(argv)
  assert.are.equal("exited", how)
  assert.are.equal(0, code, out)
  return out
end

describe("shipped command plugins", function()
  local d, g, dir
  before_each(function()
    dir = ptest.mkdtemp()
    d = H.start_daemon({config = {
      ["plugin.capture_log"] = {dir = dir .. "/captures", allowed_paths = dir, max_files = 3,
                                journal_lines = 0, dmesg_lines = 0, log_files = dir .. "/host.log"},
    }})
    g = H.guest_connected(d)
  end)
  after_each(function()
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("ping answers the host's time, uptime and version", function()
    local before = os.time() * 1000
    local r = guest_call(g, 1, "ping")
    assert.are.equal(0, r.code)
    assert.are.equal(1, r.reqId)
    assert.is_true(r.data.time >= before - 1000)
    assert.is_true(r.data.uptime_ms >= 0)
    assert.are.equal(d:status().version, r.data.version)
  end)

  it("system_info answers load, memory, disk and kernel", function()
    local r = guest_call(g, 2, "system_info")
    assert.are.equal(0, r.code, r.msg)
    local i = r.data
    assert.are.equal(sh({"uname", "-r"}):gsub("%s+$", ""), i.kernel.release)
    assert.are.equal("Linux", i.kernel.name)
    assert.is_true(i.cpus >= 1)
    assert.is_number(i.load.avg1)
    assert.is_true(i.memory.total_kb > 0)
    assert.is_true(i.memory.used_pct >= 0 and i.memory.used_pct <= 100)
    assert.is_true(i.disk["/"].total_bytes > 0)
    assert.is_true(i.disk["/"].used_pct >= 0 and i.disk["/"].used_pct <= 100)
    -- and it was logged with who asked
    H.wait_for("the command log line", function()
      return d:log_text():find("command system_info from the guest", 1, true)
    end)
  end)

  it("capture_log captures a named process and answers the archive's path", function()
    local f = assert(io.open(dir .. "/host.log", "w"))
    f:write("host log line\n")
    f:close()
    local child = assert(ptest.spawn({"sleep", "30"}))
    -- comm changes early in exec, the argument pages a moment later
    H.wait_for("the child to exec", function()
      return H.read_file("/proc/" .. child .. "/cmdline") == "sleep\0" .. "30\0"
    end)
    local r = guest_call(g, 3, "capture_log", {pid = child, reason = "hang report"})
    ptest.kill(child, "KILL")
    ptest.wait(child, 5000)
    assert.are.equal(0, r.code, r.msg)
    local path = r.data.path
    local prefix = dir .. "/captures/hang_report-sleep-" .. child .. "-"
    assert.are.equal(prefix, path:sub(1, #prefix))
    local list = sh({"tar", "-tzf", path})
    assert.is_truthy(list:find("process.json", 1, true))
    assert.is_truthy(list:find("logs/host.log", 1, true))
    assert.is_nil(list:find("journal.txt", 1, true))        -- journal_lines = 0
    local snap = cjson.decode(sh({"tar", "-xzOf", path, "process.json"}))
    assert.are.equal(child, snap.pid)
    assert.are.equal("sleep", snap.name)
    assert.are.equal("sleep 30", snap.cmdline)
    assert.are.equal("host log line\n", sh({"tar", "-xzOf", path, "logs/host.log"}))
  end)

  it("capture_log refuses a bad or absent pid with -4", function()
    assert.are.equal(-4, guest_call(g, 4, "capture_log", {pid = "x"}).code)
    assert.are.equal(-4, guest_call(g, 5, "capture_log", {pid = -3}).code)
    local r = guest_call(g, 6, "capture_log", {pid = 999999999})
    assert.are.equal(-4, r.code)
    assert.is_truthy(r.msg:find("no process", 1, true))
  end)

  it("capture_log keeps at most max_files archives, dropping the oldest", function()
    local paths = {}
    for i = 1, 5 do
      local r = guest_call(g, 10 + i, "capture_log", {reason = "n" .. i})
      assert.are.equal(0, r.code, r.msg)
      paths[i] = r.data.path
    end
    local kept = {}
    for name in sh({"ls", dir .. "/captures"}):gmatch("[^\n]+") do kept[#kept + 1] = dir .. "/captures/" .. name end
    table.sort(kept)
    local want = {paths[3], paths[4], paths[5]}
    table.sort(want)
    assert.are.same(want, kept)
  end)

  it("list_actions names what the host offers; reboot is not offered by default", function()
    local r = guest_call(g, 20, "list_actions")
    assert.are.equal(0, r.code)
    table.sort(r.data.actions)
    assert.are.same({"capture_log", "list_actions", "ping", "system_info"}, r.data.actions)
    assert.are.equal(-1, guest_call(g, 21, "reboot").code)
  end)

  it("offers nothing generic: no exec, no signalling host processes", function()
    for i, action in ipairs({"exec", "shell", "run", "kill", "signal", "system"}) do
      assert.are.equal(-1, guest_call(g, 30 + i, action, {argv = {"/bin/true"}, pid = 1}).code)
    end
  end)
end)

describe("reboot plugin", function()
  it("when enabled, answers first, then runs the configured command", function()
    local dir = ptest.mkdtemp()
    local d = H.start_daemon({config = {
      -- the command writes: only where the operator allows (exec_confine)
      ["plugin.reboot"] = {enabled = "true", command = "/usr/bin/touch " .. dir .. "/rebooted", delay_ms = 10,
                           allowed_paths = dir},
    }})
    local g = H.guest_connected(d)
    local r = guest_call(g, 1, "reboot")
    assert.are.equal(0, r.code, r.msg)
    assert.are.equal(10, r.data.rebooting_in_ms)
    H.wait_for("the reboot command to run", function()
      return io.open(dir .. "/rebooted") ~= nil
    end)
    assert.is_truthy(d:log_text():find("reboot requested by the guest", 1, true))
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
