-- ordering_spec.lua - an app's events reach the guest in the order it sent
-- them, whichever way each one goes: through the core (a plugin or a router
-- rule takes its eventId) or straight from the ingress to the guest link
-- (nothing takes it). The ingress decides from a copy of the routing index,
-- so the specs change routing under a stream of events.
local H = require "helpers"
local codec, cjson, ptest = H.codec, H.cjson, H.ptest

after_each(function() H.stop_all() end)

local ID = 7001

local function frames(from, to)
  local t = {}
  for n = from, to do
    t[#t + 1] = codec.lsp_encode(codec.LSP_EVENT_REPORT, 0, cjson.encode({eventId = ID, params = {n = n}}))
  end
  return table.concat(t)
end

-- Reads until `count` events arrived (each checked for being new), within a
-- deadline; returns them in arrival order.
local function read_events(g, count, got, seen)
  local deadline = ptest.now_ms() + 20000
  while #got < count do
    assert.is_true(ptest.now_ms() < deadline, "only " .. #got .. " of " .. count .. " events arrived")
    local ev = g:event(1000)
    if ev and ev.eventId == ID then
      assert.is_nil(seen[ev.params.n], "event " .. tostring(ev.params.n) .. " arrived twice")
      seen[ev.params.n] = true
      got[#got + 1] = ev
    end
  end
  return got
end

describe("event order", function()
  it("holds for an app's events while a strategy for them is unloaded and reloaded under the stream", function()
    local d = H.start_daemon({plugins = {
      mark = {lua = ([[polaris.on_event(%d, function(ev) ev.params.seen = true; return ev end)]]):format(ID)},
    }})
    local g = H.guest_connected(d)
    local app, ctl = H.app(d), H.app(d)

    -- the strategy takes the eventId: every event goes through it
    assert(app:send_raw(frames(1, 300)))
    local got, seen = {}, {}
    read_events(g, 300, got, seen)
    for i = 1, 300 do
      assert.are.equal(i, got[i].params.n)
      assert.is_true(got[i].params.seen, "event " .. i .. " skipped the strategy")
    end

    -- routing changes while events are in flight: some pass through the
    -- strategy, some are forwarded by the core, some skip the core
    -- (the request goes first and the events stream on behind it, so the
    -- change lands while events are on the core queue and in the socket)
    local n = 300
    for round = 1, 40 do
      local action = round % 2 == 1 and "unload" or "reload"
      local id = ctl:request("host", action, action == "unload" and {id = "mark"} or {})
      for _ = 1, 10 do
        assert(app:send_raw(frames(n + 1, n + 100)))
        n = n + 100
      end
      local r = assert(ctl:response(id))
      assert.are.equal(0, r.code, r.msg)
    end
    read_events(g, n, got, seen)
    -- an event in a strategy may be overtaken by later ones that are not
    -- (strategies take time; an unloaded instance finishes its mailbox while
    -- the reloaded one starts on new events); the events no strategy saw
    -- arrive in the order the app sent them
    local last, marked = 0, 0
    for _, ev in ipairs(got) do
      if ev.params.seen then
        marked = marked + 1
      else
        assert.is_true(ev.params.n > last, "events out of order: " .. ev.params.n .. " after " .. last)
        last = ev.params.n
      end
    end
    assert.is_true(marked > 300 and marked < #got, "both kinds in the stream")

    -- with the strategy unloaded, events skip the core (counted apart)
    assert.are.equal(0, ctl:call("host", "unload", {id = "mark"}).code)
    H.wait_for("an event to skip the core", function()
      n = n + 1
      assert(app:send_raw(frames(n, n)))
      read_events(g, n, got, seen)
      assert.is_nil(got[n].params.seen)
      return d:status().ipc.events_direct > 0
    end)
    local st = d:status()
    assert.are.equal(n, st.ipc.events_in)
    assert.is_true(st.core.events_routed > 300)
    assert.is_true(st.ipc.events_direct + st.core.events_routed == n,
                   "every event went one way or the other")
    H.stop_ok(d)
  end)

  it("sends nothing past the core while a router has rules", function()
    -- a router rule can drop or redirect any eventId: with one in place the
    -- ingress cannot tell which events nothing takes
    local d = H.start_daemon({plugins = {}, config = {["plugin.router"] = {drop = "7002"}}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local t = {}
    for n = 1, 50 do
      t[#t + 1] = codec.lsp_encode(codec.LSP_EVENT_REPORT, 0,
                                   cjson.encode({eventId = n % 2 == 0 and 7002 or ID, params = {n = n}}))
    end
    assert(app:send_raw(table.concat(t)))
    local got, seen = {}, {}
    read_events(g, 25, got, seen)
    for i = 1, 25 do assert.are.equal(2 * i - 1, got[i].params.n) end
    local st = d:status()
    assert.are.equal(0, st.ipc.events_direct)
    assert.are.equal(25, st.core.events_dropped_by_router)
    H.stop_ok(d)
  end)
end)
