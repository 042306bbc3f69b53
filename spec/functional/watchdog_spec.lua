-- watchdog_spec.lua - the backstop behind the CPU budget: a worker stuck in
-- one plugin call (a C function that never returns: polaris._test_hang,
-- which exists only in build/polarisd-hooks) is noticed after
-- plugins.watchdog_ms; the plugin goes to Error saying why, the pool gets a
-- new worker, and the other plugins and commands go on.
local H = require "helpers"

after_each(function() H.stop_all() end)

describe("the worker watchdog", function()
  it("abandons a worker stuck in a plugin's C call and replaces it", function()
    local d = H.start_daemon({binary = H.BUILD .. "/polarisd-hooks", plugins = {
      stuck = {lua = [[polaris.on_event(666, function() polaris._test_hang() end)]],
               manifest = {plugin_type = "Strategy", isolation = "inprocess"}},
      canary = {lua = [[
        polaris.on_event(777, function(ev) ev.params.canary = "ok" return ev end)
        polaris.command("ping", function() return 0, "pong" end)
      ]], manifest = {plugin_type = "Strategy"}},
    }, config = {daemon = {workers = 1}, plugins = {watchdog_ms = 300}}})
    if H.plugin_by_id(d:status(), "stuck").isolation == "process" then
      H.stop_ok(d)   -- a plugin host is its own process: host_cpu_s is its backstop
      return
    end
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(666))
    local st = H.wait_for("the stuck plugin in Error", function()
      local p = H.plugin_by_id(d:status(), "stuck")
      return p.state == "Error" and p
    end, 10000)
    assert.is_truthy(st.last_error:find("plugins.watchdog_ms", 1, true), st.last_error)
    assert.are.equal(1, d:status().workers.abandoned)
    -- the one general worker was the stuck one: events flow on its replacement
    for i = 1, 3 do
      app:send_event(H.event(777, {params = {n = i}}))
      local ev = assert(g:event(10000), "no event after the watchdog")
      assert.are.equal(777, ev.eventId)
      assert.are.equal("ok", ev.params.canary)
    end
    assert.are.equal("pong", app:call("host", "ping").msg)
    -- a later event for it passes it by, marked
    app:send_event(H.event(666, {params = {n = 2}}))
    local ev = assert(g:event(10000))
    assert.are.equal(666, ev.eventId)
    assert.is_true(d:alive())
    H.stop_ok(d)
  end)

  it("leaves no other plugin of a stuck job's chains pinned: it unloads", function()
    -- a worker gives back the refs its chains held once a batch; a job the
    -- watchdog abandons never ends its batch, so only the stuck plugin's
    -- own may wait there. a_stuck comes first in the 555s' chain and drops
    -- them (their chains end in its job, z_other's ref with them), then
    -- hangs on 666, in the same batch (777 keeps the one worker busy while
    -- they queue): z_other, which 666 does not go to, must still unload.
    local d = H.start_daemon({binary = H.BUILD .. "/polarisd-hooks", plugins = {
      a_stuck = {lua = [[polaris.on_event("*", function(ev)
                   if ev.eventId == 777 then
                     local t = os.clock() while os.clock() - t < 0.3 do end
                   elseif ev.eventId == 666 then
                     polaris._test_hang()
                   end
                   return false
                 end)]],
                 manifest = {plugin_type = "Strategy", isolation = "inprocess"}},
      z_other = {lua = [[polaris.on_event(555, function(ev) ev.params.z = true return ev end)]],
                 manifest = {plugin_type = "Strategy", isolation = "inprocess"}},
    }, config = {daemon = {workers = 1}, plugins = {watchdog_ms = 1000}}})
    if H.plugin_by_id(d:status(), "a_stuck").isolation == "process" then
      H.stop_ok(d)
      return
    end
    H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(777))
    H.wait_for("a_stuck busy", function()
      return H.plugin_by_id(d:status(), "a_stuck").events >= 1
    end, 5000)
    for i = 1, 20 do app:send_event(H.event(555, {params = {n = i}})) end
    app:send_event(H.event(666))
    H.wait_for("the stuck plugin in Error", function()
      return H.plugin_by_id(d:status(), "a_stuck").state == "Error"
    end, 10000)
    local how, code, out = H.run({H.POLARISCTL, "--socket", d.ipc, "unload", "z_other"}, nil, 30000)
    assert.are.equal("exited", how, out)
    assert.are.equal(0, code, out)
    H.wait_for("z_other Unloaded", function()
      local p = H.leaving_by_id(d:status(), "z_other")
      return p and p.state == "Unloaded"
    end, 10000)
    assert.is_true(d:alive())
    H.stop_ok(d)
  end)
end)
