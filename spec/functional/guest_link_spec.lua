-- guest_link_spec.lua - polarisd -> guest over PLP v1 (DESIGN 3.2, 4):
-- sessions, heartbeats, gzip, CRC, and the outbound buffer.
local H = require "helpers"
local codec, cjson, ptest = H.codec, H.cjson, H.ptest

after_each(function() H.stop_all() end)

local stop_ok = H.stop_ok

local function ping_req(seq, extra)
  local body = {action = "ping", args = extra or {}}
  return cjson.encode(body):gsub('"args":%[%]', '"args":{}')
end

describe("guest link", function()
  it("drops a frame with a bad CRC, counts it and keeps the session", function()
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local bad = codec.plp_encode(codec.PLP_CMD_REQ_G2H, 1, ping_req(1))
    bad = bad:sub(1, 24) .. "X" .. bad:sub(26)           -- corrupt the payload
    g:send_raw(bad)
    g:send_plp(codec.PLP_CMD_REQ_G2H, 2, ping_req(2))
    local f = assert(g:expect(codec.PLP_CMD_RESP_H2G, 2))
    assert.are.equal(0, cjson.decode(f.payload).code)
    assert.are.equal(1, d:status().guest.crc_errors)
    assert.is_nil(g:expect(codec.PLP_CMD_RESP_H2G, 1, 200))  -- never answered
    stop_ok(d)
  end)

  it("takes gzip from the guest and gzips large events to it", function()
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    g:send_plp(codec.PLP_CMD_REQ_G2H, 3, ping_req(3, {pad = string.rep("p", 3000)}), {gzip_min = 1})
    local f = assert(g:expect(codec.PLP_CMD_RESP_H2G, 3))
    assert.are.equal(0, cjson.decode(f.payload).code)
    local app = H.app(d)
    app:send_event(H.event(7, {params = {blob = string.rep("b", 2000)}}))
    app:send_event(H.event(8))
    local big, bf = g:event()
    assert.are.equal(7, big.eventId)
    assert.are.equal(2000, #big.params.blob)
    assert.are.equal(codec.PLP_FLAG_GZIP, bf.flags & codec.PLP_FLAG_GZIP)
    local small, sf = g:event()
    assert.are.equal(8, small.eventId)
    assert.are.equal(0, sf.flags & codec.PLP_FLAG_GZIP)
    assert.are.equal(codec.PLP_FLAG_JSON, sf.flags & codec.PLP_FLAG_JSON)
    stop_ok(d)
  end)

  it("refuses a gzip bomb from the guest and keeps the session", function()
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local bomb = codec.gzip(string.rep("\0", 17 * 1024 * 1024))
    g:send_plp(codec.PLP_CMD_REQ_G2H, 4, bomb, {flags = codec.PLP_FLAG_JSON | codec.PLP_FLAG_GZIP})
    g:send_plp(codec.PLP_CMD_REQ_G2H, 5, ping_req(5))
    assert.is_truthy(g:expect(codec.PLP_CMD_RESP_H2G, 5))
    assert.are.equal(1, d:status().guest.gzip_errors)
    stop_ok(d)
  end)

  it("speaks the same PLP over tcp://", function()
    local d = H.start_daemon({guest = "tcp"})
    assert.is_truthy(d.guest_uri:match("^tcp://127%.0%.0%.1:%d+$"))
    local g = H.guest_connected(d)
    H.app(d):send_event(H.event(77))
    assert.are.equal(77, g:event().eventId)
    g:send_plp(codec.PLP_CMD_REQ_G2H, 9, ping_req(9))
    assert.are.equal(0, cjson.decode(assert(g:expect(codec.PLP_CMD_RESP_H2G, 9)).payload).code)
    stop_ok(d)
  end)

  it("buffers events while no guest is connected and delivers them in order", function()
    local d = H.start_daemon()
    local app = H.app(d)
    for i = 1, 100 do app:send_event(H.event(i)) end
    H.wait_for("100 buffered events", function() return d:status().guest.buffered == 100 end)
    local g = H.guest(d)
    local prev
    for i = 1, 100 do
      local ev, f = g:event()
      assert.are.equal(i, ev.eventId)
      if prev then assert.are.equal(prev + 1, f.seq) end
      prev = f.seq
    end
    H.wait_for("the buffer to empty", function() return d:status().guest.buffered == 0 end)
    stop_ok(d)
  end)

  it("drains a backlog to a slow guest even while heartbeats and answers are written", function()
    -- a heartbeat every 20 ms writes between the drain's rounds; it once
    -- stopped the writer with events still waiting, which then sat there
    -- until the next event arrived
    local d = H.start_daemon({config = {guest = {heartbeat_ms = 20, heartbeat_misses = 1000,
                                                 write_ahead_bytes = 4096}}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local n, frames = 20000, {}
    for i = 1, n do
      frames[#frames + 1] = codec.lsp_encode(codec.LSP_EVENT_REPORT, 0,
        '{"eventId":' .. i .. ',"params":{"pad":"' .. string.rep("z", 200) .. '"}}')
    end
    assert(app:send_raw(table.concat(frames)))
    local prev
    for i = 1, n do
      local ev, f = g:event(5000)
      assert.is_table(ev, "stalled after " .. (i - 1) .. " events")
      assert.are.equal(i, ev.eventId)
      if prev then assert.are.equal(prev + 1, f.seq) end
      prev = f.seq
      if i % 2000 == 0 then ptest.sleep_ms(20) end      -- read slowly: heartbeats land mid-drain
    end
    stop_ok(d)
  end)

  it("keeps seq ids increasing across reconnects", function()
    local d = H.start_daemon()
    local app = H.app(d)
    local g = H.guest_connected(d)
    app:send_event(H.event(1))
    local _, f1 = g:event()
    g:close()
    H.wait_for("the guest to be gone", function() return not d:status().guest.connected end)
    app:send_event(H.event(2))
    local g2 = H.guest(d)
    local ev, f2 = g2:event()
    assert.are.equal(2, ev.eventId)
    assert.are.equal(f1.seq + 1, f2.seq)
    stop_ok(d)
  end)

  it("drops the oldest events when the buffer is full and tells the guest", function()
    local d = H.start_daemon({config = {guest = {buffer_max_events = 10}}})
    local app = H.app(d)
    for i = 1, 25 do app:send_event(H.event(i)) end
    H.wait_for("15 dropped", function() return d:status().guest.dropped == 15 end)
    assert.are.equal(10, d:status().guest.buffered)
    local g = H.guest(d)
    local notice, nf = g:event()
    assert.are.equal(1000001, notice.eventId)
    assert.are.equal(15, notice.params.dropped)
    assert.is_number(notice.params.first_drop_ts)
    local prev = nf.seq
    for i = 16, 25 do
      local ev, f = g:event()
      assert.are.equal(i, ev.eventId)
      assert.are.equal(prev + 1, f.seq)
      prev = f.seq
    end
    stop_ok(d)
  end)

  it("bounds the buffer by bytes too", function()
    local d = H.start_daemon({config = {guest = {buffer_max_bytes = 8192}}})
    local app = H.app(d)
    for i = 1, 40 do app:send_event(H.event(i, {params = {pad = string.rep("x", 900)}})) end
    H.wait_for("drops", function()
      local st = d:status().guest
      return st.dropped > 0 and st.dropped + st.buffered == 40 and st.buffered_bytes <= 8192
    end)
    stop_ok(d)
  end)

  it("lets a new guest connection replace the old one", function()
    local d = H.start_daemon()
    local g1 = H.guest_connected(d)
    local g2 = H.guest(d)
    assert.is_truthy(g1:wait_closed())
    H.wait_for("replaced counted", function() return d:status().guest.replaced == 1 end)
    local app = H.app(d)
    app:send_event(H.event(11))
    assert.are.equal(11, g2:event().eventId)
    stop_ok(d)
  end)

  it("sends heartbeats and drops a guest silent for 3 intervals", function()
    local d = H.start_daemon({config = {guest = {heartbeat_ms = 200, heartbeat_misses = 3}}})
    local g = H.guest(d)
    -- a guest that answers stays connected well past 3 intervals
    local beats = 0
    local t_end = ptest.now_ms() + 1500
    while ptest.now_ms() < t_end do
      g:send_plp(codec.PLP_HEARTBEAT, 0, "", {flags = 0})
      local f = g:frame(50)
      if f and f.type == codec.PLP_HEARTBEAT then beats = beats + 1 end
    end
    assert.is_true(beats >= 3, "only " .. beats .. " heartbeats in 1.5 s")
    assert.is_true(d:status().guest.connected)
    assert.are.equal(0, d:status().guest.heartbeat_timeouts)
    -- then silence
    local t0 = ptest.now_ms()
    assert.is_truthy(g:wait_closed(5000))
    assert.is_true(ptest.now_ms() - t0 >= 400)
    assert.are.equal(1, d:status().guest.heartbeat_timeouts)
    stop_ok(d)
  end)

  for _, case in ipairs({
    {"bad magic", string.pack("<I4I2I2I4I2I2I4I4", 0x12345678, 1, 24, 0, 1, 0, 0, 0)},
    {"bad version", string.pack("<I4I2I2I4I2I2I4I4", 0x504C5253, 2, 24, 0, 1, 0, 0, 0)},
    {"short header_len", string.pack("<I4I2I2I4I2I2I4I4", 0x504C5253, 1, 16, 0, 1, 0, 0, 0)},
    {"payload over 16 MiB", string.pack("<I4I2I2I4I2I2I4I4", 0x504C5253, 1, 24, 16 * 1024 * 1024 + 1, 1, 0, 0, 0)},
  }) do
    it("closes the session on " .. case[1] .. " and accepts the next guest", function()
      local d = H.start_daemon()
      local g = H.guest_connected(d)
      g:send_raw(case[2])
      assert.is_truthy(g:wait_closed())
      assert.are.equal(1, d:status().guest.protocol_errors)
      local g2 = H.guest_connected(d)
      H.app(d):send_event(H.event(3))
      assert.are.equal(3, g2:event().eventId)
      stop_ok(d)
    end)
  end

  it("holds events back, dropping none, while a connected guest does not read", function()
    -- DESIGN 4: a full buffer while a guest is connected is backpressure,
    -- never a drop; the daemon stays responsive meanwhile
    -- as many as the guest link's buffer and the core queue hold together
    -- (the default core_queue_max): the apps are held back beyond that, and
    -- a guest that reads nothing for long is taken for gone
    local N = 2000 + 16384 - 384
    local d = H.start_daemon({config = {guest = {buffer_max_events = 2000}}})
    local g = H.guest_connected(d)         -- connected, not reading yet
    local app = H.app(d)
    local frames = {}
    for i = 1, N do
      frames[#frames + 1] = codec.lsp_encode(codec.LSP_EVENT_REPORT, 0,
        '{"eventId":' .. i .. ',"params":{"pad":"' .. string.rep("y", 150) .. '"}}')
    end
    assert(app:send_raw(table.concat(frames)))
    H.wait_for("all accepted", function() return d:status().ipc.events_in == N end, 20000)
    local st = d:status()
    assert.are.equal(0, st.guest.dropped)
    assert.is_true(st.guest.buffered <= 2000, "buffered " .. st.guest.buffered)
    assert.is_true(st.guest.backpressure >= 1)
    assert.is_true(st.core_queue.held_for_guest > 0)
    -- the guest reads again: every event, in order, once
    for i = 1, N do
      local ev = g:event(10000)
      assert.is_table(ev, "event " .. i .. " did not arrive")
      assert.are.equal(i, ev.eventId)
    end
    st = d:status()
    assert.are.equal(0, st.guest.dropped)
    assert.are.equal(0, st.core_queue.held_for_guest)
    g:close()
    stop_ok(d)
  end)
end)
