-- commands_spec.lua - commands both ways (DESIGN 3.1-3.3): guest -> host
-- handlers, app -> guest through the session router, and every result code.
local H = require "helpers"
local codec, cjson, ptest = H.codec, H.cjson, H.ptest

after_each(function() H.stop_all() end)

local stop_ok = H.stop_ok

local function guest_call(g, seq, body, timeout_ms)
  g:send_plp(codec.PLP_CMD_REQ_G2H, seq, type(body) == "string" and body or cjson.encode(body))
  local f = assert(g:expect(codec.PLP_CMD_RESP_H2G, seq, timeout_ms))
  return cjson.decode(f.payload)
end

describe("guest -> host commands", function()
  local d, g
  before_each(function()
    d = H.start_daemon({config = {commands = {guest_block = "list_actions"}}})
    g = H.guest_connected(d)
  end)
  after_each(function() stop_ok(d) end)

  it("answers ping with the same seq_id", function()
    local r = guest_call(g, 4242, {action = "ping", args = {}})
    assert.are.equal(0, r.code)
    assert.are.equal(4242, r.reqId)
    assert.is_true(r.data.pong)
    assert.is_number(r.data.time)
    assert.is_string(r.data.version)
  end)

  it("answers -1 for an unknown action", function()
    local r = guest_call(g, 5, {action = "format_disk", args = {}})
    assert.are.equal(-1, r.code)
    assert.are.equal(1, d:status().commands.unknown_action)
  end)

  it("answers -4 for a bad request", function()
    assert.are.equal(-4, guest_call(g, 6, "{nope").code)
    assert.are.equal(-4, guest_call(g, 7, {args = {}}).code)          -- no action
    assert.are.equal(-4, guest_call(g, 8, {action = "ping", args = 5}).code)
  end)

  it("answers -5 for an action the policy blocks", function()
    local r = guest_call(g, 9, {action = "list_actions"})
    assert.are.equal(-5, r.code)
    assert.is_truthy(r.msg:find("permission denied", 1, true))
  end)

  it("never offers the control actions to the guest", function()
    assert.are.equal(-1, guest_call(g, 10, {action = "status"}).code)
    assert.are.equal(-1, guest_call(g, 11, {action = "reload"}).code)
  end)
end)

describe("guest allow list", function()
  it("refuses everything not allowed", function()
    local d = H.start_daemon({config = {commands = {guest_allow = "list_actions"}}})
    local g = H.guest_connected(d)
    assert.are.equal(-5, guest_call(g, 1, {action = "ping"}).code)
    local r = guest_call(g, 2, {action = "list_actions"})
    assert.are.equal(0, r.code)
    table.sort(r.data.actions)
    -- what the host offers (the shipped command plugins), whatever the guest may call
    assert.are.same({"capture_log", "list_actions", "ping", "system_info"}, r.data.actions)
    stop_ok(d)
  end)
end)

describe("app -> guest commands", function()
  local d
  before_each(function() d = H.start_daemon({config = {commands = {max_inflight_guest = 2}}}) end)
  after_each(function() stop_ok(d) end)

  it("round-trips through the guest to the right app and req_id", function()
    local g = H.guest_connected(d)
    local a1, a2 = H.app(d), H.app(d)
    a1.next_req = 100
    a2.next_req = 200
    local id1 = a1:request("guest", "capture_log", {n = 1}, 2000)
    local id2 = a2:request("guest", "capture_log", {n = 2}, 2000)
    local reqs = {}
    for _ = 1, 2 do
      local f = assert(g:expect(codec.PLP_CMD_REQ_H2G))
      local body = cjson.decode(f.payload)
      assert.are.equal("capture_log", body.action)
      assert.are.equal(2000, body.timeout)
      reqs[body.args.n] = f.seq
    end
    -- answer in the opposite order
    for _, n in ipairs({2, 1}) do
      g:send_plp(codec.PLP_CMD_RESP_G2H, reqs[n], cjson.encode(
        {reqId = reqs[n], code = 0, msg = "done", data = {path = "/tmp/log" .. n}}))
    end
    local r1, r2 = a1:response(id1), a2:response(id2)
    assert.are.equal(101, r1.reqId)
    assert.are.equal("/tmp/log1", r1.data.path)
    assert.are.equal(201, r2.reqId)
    assert.are.equal("/tmp/log2", r2.data.path)
    assert.are.equal("done", r2.msg)
  end)

  it("passes the guest's own failure code through", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    local id = app:request("guest", "x", {}, 2000)
    local f = assert(g:expect(codec.PLP_CMD_REQ_H2G))
    g:send_plp(codec.PLP_CMD_RESP_G2H, f.seq, '{"reqId":1,"code":3,"msg":"disk full","data":{}}')
    local r = app:response(id)
    assert.are.equal(3, r.code)
    assert.are.equal("disk full", r.msg)
  end)

  it("answers -3 at once when no guest is connected", function()
    local app = H.app(d)
    local t0 = ptest.now_ms()
    local r = app:call("guest", "capture_log", {}, 5000)
    assert.are.equal(-3, r.code)
    assert.is_true(ptest.now_ms() - t0 < 1000)
  end)

  it("answers -2 at the deadline and discards the late answer", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    local t0 = ptest.now_ms()
    local id = app:request("guest", "slow", {}, 300)
    local f = assert(g:expect(codec.PLP_CMD_REQ_H2G))
    local r = app:response(id, 3000)
    local waited = ptest.now_ms() - t0
    assert.are.equal(-2, r.code)
    assert.is_true(waited >= 280 and waited < 2500, "answered after " .. waited .. " ms")
    g:send_plp(codec.PLP_CMD_RESP_G2H, f.seq, '{"reqId":1,"code":0,"msg":"late","data":{}}')
    H.wait_for("the late answer to be counted", function()
      return d:status().commands.late_results == 1
    end)
    assert.is_nil(app:response(id, 200))
  end)

  it("answers -7 over the in-flight cap", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    local a = app:request("guest", "slow", {}, 5000)
    local b = app:request("guest", "slow", {}, 5000)
    local c = app:request("guest", "slow", {}, 5000)
    assert.are.equal(-7, app:response(c).code)
    for _ = 1, 2 do
      local f = assert(g:expect(codec.PLP_CMD_REQ_H2G))
      g:send_plp(codec.PLP_CMD_RESP_G2H, f.seq, '{"reqId":0,"code":0,"msg":"ok","data":{}}')
    end
    assert.are.equal(0, app:response(a).code)
    assert.are.equal(0, app:response(b).code)
  end)

  it("survives the app leaving before the guest answers", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:request("guest", "slow", {}, 5000)
    local f = assert(g:expect(codec.PLP_CMD_REQ_H2G))
    app:close()
    -- the answer must find the app gone, not merely closing
    H.wait_for("the daemon to see the app leave", function() return d:status().ipc.clients == 1 end)
    g:send_plp(codec.PLP_CMD_RESP_G2H, f.seq, '{"reqId":0,"code":0,"msg":"ok","data":{}}')
    H.wait_for("the undeliverable answer to be counted", function()
      return d:status().ipc.responses_undeliverable == 1
    end)
    assert.are.equal(0, H.app(d):call("host", "ping").code)
  end)

  it("answers -3 for commands pending when the guest goes away", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    local id = app:request("guest", "slow", {}, 5000)
    assert(g:expect(codec.PLP_CMD_REQ_H2G))
    g:close()
    local r = app:response(id)
    assert.are.equal(-3, r.code)
    assert.are.equal("guest disconnected", r.msg)
  end)

  it("answers -6 when the guest's answer is not a CommandResult", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    local id = app:request("guest", "x", {}, 2000)
    local f = assert(g:expect(codec.PLP_CMD_REQ_H2G))
    g:send_plp(codec.PLP_CMD_RESP_G2H, f.seq, '["not", "a", "result"]')
    assert.are.equal(-6, app:response(id).code)
  end)
end)

describe("control actions", function()
  it("serve status and reload to the daemon's uid", function()
    local d = H.start_daemon()
    local app = H.app(d)
    local st = app:call("host", "status")
    assert.are.equal(0, st.code)
    assert.is_string(st.data.version)
    assert.is_number(st.data.uptime_s)
    assert.is_boolean(st.data.guest.connected)
    for _, k in ipairs({"events_sent", "buffered", "dropped"}) do assert.is_number(st.data.guest[k]) end
    for _, k in ipairs({"clients", "events_in", "frames_rejected"}) do assert.is_number(st.data.ipc[k]) end
    assert.is_table(st.data.plugins)
    assert.are.equal(0, app:call("host", "reload").code)
    stop_ok(d)
  end)

  it("refuse another uid with -5", function()
    if ptest.getuid() ~= 0 then
      pending("needs root to run a client as another uid")
      return
    end
    local d = H.start_daemon({config = {ipc = {socket_mode = "0666"}}})
    os.execute("chmod 0755 '" .. d.dir .. "'")
    local out = d.dir .. "/ctl.out"
    local pid = ptest.spawn({H.POLARISCTL, "--socket", d.ipc, "status"},
                            {uid = 65534, stdout = out, stderr = out})
    local how, code = ptest.wait(pid, 10000)
    assert.are.same({"exited", 1}, {how, code})
    assert.is_truthy(H.read_file(out):find("permission denied", 1, true))
    assert.are.equal(1, d:status().ipc.control_denied)
    stop_ok(d)
  end)
end)
