-- spool_spec.lua - the disk spool ([daemon] spool_dir / --spool): an event
-- the daemon accepted survives kill -9 and a restart wherever it was (the
-- core queue, a strategy, the outbound buffer) and reaches the guest once.
local H = require "helpers"
local codec, cjson, ptest = H.codec, H.cjson, H.ptest

after_each(function() H.stop_all() end)

local function frame(n)
  return codec.lsp_encode(codec.LSP_EVENT_REPORT, 0, cjson.encode({eventId = 6000, params = {n = n}}))
end

local function send(app, from, to)
  local t = {}
  for n = from, to do t[#t + 1] = frame(n) end
  assert(app:send_raw(table.concat(t)))
end

-- Reads events until nothing new comes for quiet_ms; returns the list of n.
local function drain(g, quiet_ms)
  local got = {}
  while true do
    local ev = g:event(quiet_ms)
    if not ev then return got end
    got[#got + 1] = ev.params.n
  end
end

local function start(spool, extra)
  local cfg = {daemon = {spool_fsync_ms = 50}}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return H.start_daemon({args = {"--spool", spool}, config = cfg})
end

describe("disk spool", function()
  it("keeps undelivered events across kill -9 and delivers them once, in order", function()
    local spool = ptest.mkdtemp() .. "/spool"
    local d = start(spool)
    local app = H.app(d)
    send(app, 1, 1000)
    H.wait_for("1000 events buffered", function() return d:status().guest.buffered == 1000 end)
    assert.is_true(d:status().spool.bytes > 0)
    d:signal("KILL")
    d:stop()
    d = start(spool)
    assert.are.equal(1000, d:status().spool.replayed)
    local g = H.guest_connected(d)
    local got = drain(g, 1000)
    assert.are.equal(1000, #got)
    for i = 1, 1000 do assert.are.equal(i, got[i]) end
    -- delivered: the spool empties, and a further restart replays nothing
    H.wait_for("the spool to empty", function() return d:status().spool.bytes == 0 end)
    H.stop_ok(d)
    d = start(spool)
    assert.are.equal(0, d:status().spool.replayed)
    H.stop_ok(d)
  end)

  it("a kill -9 while the guest reads loses and duplicates nothing", function()
    local spool = ptest.mkdtemp() .. "/spool"
    local d = start(spool)
    local g = H.guest_connected(d)
    local app = H.app(d)
    send(app, 1, 3000)
    local got = {}
    for _ = 1, 500 do got[#got + 1] = assert(g:event(10000)).params.n end
    -- accepted = read from the app's socket (and so in the spool)
    H.wait_for("every event accepted", function() return d:status().ipc.events_in == 3000 end)
    d:signal("KILL")
    d:stop()
    -- what the old session had already put on the wire is still readable
    for _, n in ipairs(drain(g, 300)) do got[#got + 1] = n end
    g:close()
    d = start(spool)
    g = H.guest_connected(d)
    for _, n in ipairs(drain(g, 1000)) do got[#got + 1] = n end
    local seen = {}
    for _, n in ipairs(got) do
      assert.is_nil(seen[n], "duplicate " .. n)
      seen[n] = true
    end
    for n = 1, 3000 do assert.is_true(seen[n], "lost " .. n) end
    H.stop_ok(d)
  end)

  it("an event inside a strategy at kill -9 goes through the strategy again after the restart", function()
    local spool = ptest.mkdtemp() .. "/spool"
    local plugins = {slow = {lua = [[
      polaris.on_event(7777, function(ev)
        polaris.sleep(math.tointeger(polaris.config.sleep_ms) or 0)
        ev.params.seen = true
        return ev
      end)]], manifest = {plugin_type = "Strategy"}}}
    local d = H.start_daemon({args = {"--spool", spool}, plugins = plugins,
                              config = {daemon = {spool_fsync_ms = 50}, ["plugin.slow"] = {sleep_ms = 60000}}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_raw(codec.lsp_encode(codec.LSP_EVENT_REPORT, 0, cjson.encode({eventId = 7777, params = {n = 1}})))
    send(app, 2, 3)                                      -- no strategy: they go on
    assert.are.same({2, 3}, drain(g, 300))
    H.wait_for("the event held by the strategy", function()
      return d:status().core_queue.in_strategies == 1
    end)
    d:signal("KILL")
    d:stop()
    d = H.start_daemon({args = {"--spool", spool}, plugins = plugins,
                        config = {daemon = {spool_fsync_ms = 50}, ["plugin.slow"] = {sleep_ms = 0}}})
    assert.are.equal(1, d:status().spool.replayed)       -- 2 and 3 were delivered: not again
    g = H.guest_connected(d)
    local ev = assert(g:event(5000))
    assert.are.equal(7777, ev.eventId)
    assert.is_true(ev.params.seen)
    assert.is_nil(g:event(300))
    H.stop_ok(d)
  end)

  it("on SIGTERM keeps what the guest did not take, instead of dropping it", function()
    local spool = ptest.mkdtemp() .. "/spool"
    local d = start(spool, {daemon = {spool_fsync_ms = 50, shutdown_grace_ms = 100}})
    send(H.app(d), 1, 50)
    H.wait_for("50 events buffered", function() return d:status().guest.buffered == 50 end)
    H.stop_ok(d)
    d = start(spool)
    assert.are.equal(50, d:status().spool.replayed)
    local got = drain(H.guest_connected(d), 500)
    assert.are.equal(50, #got)
    H.stop_ok(d)
  end)

  it("cuts a torn record at the end and delivers the whole ones", function()
    local spool = ptest.mkdtemp() .. "/spool"
    local d = start(spool)
    send(H.app(d), 1, 10)
    H.wait_for("10 events buffered", function() return d:status().guest.buffered == 10 end)
    d:signal("KILL")
    d:stop()
    local f = assert(io.open(spool .. "/spool.log", "ab"))
    f:write(string.pack("<I4I4", 1000, 12345), "half a record")       -- a write cut by the kill
    f:close()
    d = start(spool)
    assert.is_truthy(d:log_text():find("cutting", 1, true))
    local got = drain(H.guest_connected(d), 500)
    assert.are.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, got)
    H.stop_ok(d)
  end)

  it("is bounded like the memory buffer: oldest dropped, counted, and the guest told", function()
    local spool = ptest.mkdtemp() .. "/spool"
    local d = start(spool, {guest = {buffer_max_events = 100}})
    send(H.app(d), 1, 300)
    H.wait_for("the drops", function() return d:status().guest.dropped == 200 end)
    d:signal("KILL")
    d:stop()
    d = start(spool, {guest = {buffer_max_events = 100}})
    local g = H.guest_connected(d)
    local got = drain(g, 500)
    -- the newest 100 survive the restart (older records may be replayed
    -- and dropped again; none of the newest is lost)
    local seen = {}
    for _, n in ipairs(got) do seen[n] = true end
    for n = 201, 300 do assert.is_true(seen[n], "lost " .. n) end
    assert.is_true(#got <= 100)
    H.stop_ok(d)
  end)
end)
