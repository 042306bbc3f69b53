-- strategy_results_spec.lua - what a strategy hands back (DESIGN 3.1, 5.4):
-- a returned event is held to what an app may send, the identity the
-- daemon stamped stays, and a handler that edits its event but returns nil
-- is warned about.
local H = require "helpers"
local ptest = H.ptest

after_each(function() H.stop_all() end)

local function plugin(d, id) return H.plugin_by_id(d:status(), id) end

describe("a strategy's returned event", function()
  it("is forwarded as it came in, with strategyError, when it is not a valid event; the error is counted", function()
    local d = H.start_daemon({plugins = {
      breaker = {lua = [[
        polaris.on_event(1, function(ev) ev.params = "text"; return ev end)
        polaris.on_event(2, function(ev) ev.timestamp = -5; return ev end)
        polaris.on_event(3, function(ev) ev.timestamp = 1.5; return ev end)
        polaris.on_event(4, function(ev) ev.params = nil; return ev end)
        polaris.on_event(5, function(ev) ev.params.fine = true; return ev end)
        polaris.on_event(6, function(ev) ev.logf = 7; return ev end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local want = {
      [1] = "params must be an object",
      [2] = "timestamp must be a non-negative integer",
      [3] = "timestamp must be a non-negative integer",
      [4] = "params must be an object",
      [6] = "logf must be a string",
    }
    for id = 1, 6 do app:send_event(H.event(id)) end
    for id = 1, 6 do
      local ev = g:event()
      assert.are.equal(id, ev.eventId)
      assert.are.equal(1732262400123, ev.timestamp)
      if want[id] then
        assert.are.same({n = id}, ev.params)              -- as it came in
        assert.are.equal("breaker", ev.strategyError.plugin)
        assert.is_truthy(ev.strategyError.reason:find(want[id], 1, true), ev.strategyError.reason)
      else
        assert.are.same({n = id, fine = true}, ev.params)
        assert.is_nil(ev.strategyError)
      end
    end
    local st = plugin(d, "breaker")
    assert.are.equal(5, st.errors)
    assert.are.equal("Active", st.state)                 -- a valid result in between resets the run
    H.stop_ok(d)
  end)

  it("keeps the pid, uid and claimedPid the daemon stamped", function()
    local d = H.start_daemon({plugins = {
      spoofer = {lua = [[
        polaris.on_event("*", function(ev)
          ev.pid, ev.uid, ev.claimedPid = 1, 4242, 77
          ev.params.spoofed = true
          return ev
        end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(1))                      -- its own pid: no claimedPid
    app:send_event(H.event(2, {pid = 31337}))      -- a claim, kept as claimedPid
    local a, b = g:event(), g:event()
    assert.are.equal(ptest.getpid(), a.pid)
    assert.is_nil(a.claimedPid)
    assert.are.equal(ptest.getpid(), b.pid)
    assert.are.equal(31337, b.claimedPid)
    assert.are_not.equal(4242, a.uid)
    assert.are.equal(a.uid, b.uid)
    assert.is_true(a.params.spoofed)
    assert.is_nil(a.strategyError)
    assert.are.equal(0, plugin(d, "spoofer").errors)
    H.stop_ok(d)
  end)

  it("a handler that edits its event and returns nil: forwarded as it came, warned once, counted", function()
    local d = H.start_daemon({plugins = {
      forgetful = {lua = [[
        polaris.on_event(1, function(ev) ev.params.lost = true end)        -- edits, then nil
        polaris.on_event(2, function(ev) local _ = ev.params.n end)        -- looks only
        polaris.on_event(3, function(ev) ev.params.kept = true; return ev end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    for _, id in ipairs({1, 2, 3, 1}) do app:send_event(H.event(id)) end
    for _, id in ipairs({1, 2, 3, 1}) do
      local ev = g:event()
      assert.are.equal(id, ev.eventId)
      assert.is_nil(ev.params.lost)
      assert.is_nil(ev.strategyError)
    end
    local st = plugin(d, "forgetful")
    assert.are.equal(2, st.ignored_edits)
    assert.are.equal(0, st.errors)
    H.wait_for("the warning", function()
      return d:log_text():find("plugin forgetful: an on_event handler changed its event", 1, true)
    end)
    local _, count = d:log_text():gsub("changed its event", "")
    assert.are.equal(1, count)
    H.stop_ok(d)
  end)

  it("counts the lost edits of an isolated plugin too (its plugin host reports them)", function()
    local d = H.start_daemon({plugins = {
      forgetful = {lua = [[
        polaris.on_event(1, function(ev) ev.params.lost = true end)
      ]], manifest = {plugin_type = "Strategy", isolation = "process"}},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    for _ = 1, 3 do app:send_event(H.event(1)) end
    for _ = 1, 3 do assert.is_nil(g:event().params.lost) end
    H.wait_for("the host's count", function() return plugin(d, "forgetful").ignored_edits == 3 end, 5000)
    H.wait_for("the warning", function()
      return d:log_text():find("plugin forgetful: an on_event handler changed its event", 1, true)
    end)
    H.stop_ok(d)
  end)
end)
