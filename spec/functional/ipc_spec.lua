-- ipc_spec.lua - local apps -> polarisd over LSP v1 (DESIGN 3.1): what is
-- accepted, what is rejected, and that one bad client never hurts another.
local H = require "helpers"
local codec, cjson, ptest = H.codec, H.cjson, H.ptest

after_each(function() H.stop_all() end)

describe("ipc", function()
  local d
  before_each(function() d = H.start_daemon() end)
  after_each(function()
    local how, code = d:stop()
    assert.are.same({"exited", 0}, {how, code}, d:log_text())
  end)

  it("forwards 1000 events in order with consecutive seq ids", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    for i = 1, 1000 do assert(app:send_event(H.event(i))) end
    local first
    for i = 1, 1000 do
      local ev, f = g:event(10000)
      assert.is_table(ev, "event " .. i .. " missing")
      assert.are.equal(i, ev.eventId)
      first = first or f.seq
      assert.are.equal(first + i - 1, f.seq)
    end
    assert.is_nil(g.skipped)              -- no frame failed its CRC
    app:close(); g:close()
  end)

  it("carries u64 eventIds exactly, including 2^64-1 and 2^53+1", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    local ids = {"18446744073709551615", "9007199254740993", "0", "9223372036854775808"}
    for _, id in ipairs(ids) do
      assert(app:send_event('{"eventId":' .. id .. ',"timestamp":1,"params":{}}'))
    end
    for _, id in ipairs(ids) do
      local _, f = g:event()
      assert.is_truthy(f.payload:find('"eventId":' .. id .. ',', 1, true), f.payload)
    end
  end)

  it("stamps the sender's real pid and uid, keeping a false claim as claimedPid", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(1, {pid = 1}))
    app:send_event(H.event(2))
    local a = g:event()
    assert.are.equal(ptest.getpid(), a.pid)
    assert.are.equal(1, a.claimedPid)
    assert.are.equal(ptest.getuid(), a.uid)
    local b = g:event()
    assert.are.equal(ptest.getpid(), b.pid)
    assert.is_nil(b.claimedPid)
  end)

  it("rejects invalid JSON and missing fields, counts them, keeps the connection", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event("{not json")
    app:send_event('{"timestamp":1}')               -- no eventId
    app:send_event('{"eventId":1.5}')
    app:send_event('{"eventId":3,"params":[1]}')
    app:send_event(H.event(42))
    local ev = g:event()
    assert.are.equal(42, ev.eventId)
    local st = d:status()
    assert.are.equal(4, st.ipc.frames_rejected)
    assert.are.equal(1, st.ipc.events_in)
  end)

  it("answers a malformed CMD_REQ with -4 and keeps the connection", function()
    local app = H.app(d)
    app:send_raw(codec.lsp_encode(codec.LSP_CMD_REQ, 77, '{"target":"moon","action":"ping"}'))
    local r = app:response(77)
    assert.are.equal(-4, r.code)
    assert.are.equal(77, r.reqId)
    assert.is_truthy(r.msg:find("target", 1, true))
    assert.are.equal(0, app:call("host", "ping").code)
  end)

  it("skips and counts unknown msg_types, keeping the connection", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_raw(codec.lsp_encode(0x55, 1, "whatever"))
    app:send_event(H.event(5))
    assert.are.equal(5, g:event().eventId)
    assert.are.equal(1, d:status().ipc.frames_unknown_type)
  end)

  it("closes a connection whose total_len is below 12 or above 4 MiB, and only that one", function()
    local g = H.guest_connected(d)
    local bystander = H.app(d)
    for _, total in ipairs({11, 4194305}) do
      local bad = H.app(d)
      bad:send_raw(string.pack("<I4I2I2I4", total, 1, 0, 1))
      assert.is_truthy(bad:wait_closed())
      bystander:send_event(H.event(total))
      assert.are.equal(total, g:event().eventId)
    end
    assert.are.equal(2, d:status().ipc.frames_oversize)
  end)

  it("accepts a frame of exactly 4 MiB", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    local pad = string.rep("x", 4194304 - 12 - 60)
    local payload = '{"eventId":9,"params":{"pad":"' .. pad .. '"}}'
    payload = payload .. string.rep(" ", 4194304 - 12 - #payload)
    assert.are.equal(4194304, #payload + 12)
    app:send_event(payload)
    local ev = g:event(20000)
    assert.are.equal(9, ev.eventId)
    assert.are.equal(#pad, #ev.params.pad)
  end)

  it("closes a client stalled mid-frame after about 3 s while others keep flowing", function()
    local g = H.guest_connected(d)
    local stalled = H.app(d)
    local frame = codec.lsp_encode(codec.LSP_EVENT_REPORT, 0, cjson.encode(H.event(1)))
    local t0 = ptest.now_ms()
    stalled:send_raw(frame:sub(1, 20))
    local other = H.app(d)
    -- the other client is served the whole time
    for i = 100, 120 do
      other:send_event(H.event(i))
      assert.are.equal(i, g:event().eventId)
    end
    assert.is_truthy(stalled:wait_closed(6000))
    local waited = ptest.now_ms() - t0
    assert.is_true(waited >= 2900, "closed after only " .. waited .. " ms")
    assert.is_true(waited < 6000, "closed after " .. waited .. " ms")
    assert.are.equal(1, d:status().ipc.frame_timeouts)
  end)

  it("keeps an idle connection open between frames", function()
    local app = H.app(d)
    app:send_event(H.event(1))
    -- idle for longer than the frame timeout: nothing is pending, so no
    -- timer may fire and the client must still be served
    local t_end = ptest.now_ms() + 3300
    H.wait_for("3.3 s to pass", function() return ptest.now_ms() >= t_end end, 5000)
    assert.are.equal(0, app:call("host", "ping").code)
    assert.are.equal(0, d:status().ipc.frame_timeouts)
  end)

  it("serves many concurrent clients", function()
    local g = H.guest_connected(d)
    local apps = {}
    for i = 1, 50 do apps[i] = H.app(d) end
    for round = 1, 4 do
      for i, a in ipairs(apps) do a:send_event(H.event(round * 1000 + i)) end
    end
    local seen = {}
    for _ = 1, 200 do seen[g:event().eventId] = true end
    for round = 1, 4 do
      for i = 1, 50 do assert.is_true(seen[round * 1000 + i]) end
    end
    assert.is_true(d:status().ipc.clients >= 50)
  end)

  it("delivers what a client sent before it disconnected", function()
    local g = H.guest_connected(d)
    local app = H.app(d)
    local batch = {}
    for i = 1, 200 do batch[i] = codec.lsp_encode(codec.LSP_EVENT_REPORT, 0, cjson.encode(H.event(i))) end
    app:send_raw(table.concat(batch))
    app:close()
    for i = 1, 200 do assert.are.equal(i, g:event().eventId) end
  end)
end)
