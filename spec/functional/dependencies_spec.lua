-- dependencies_spec.lua - dependencies hold while the daemon runs (DESIGN
-- 5.1, 5.2, 5.5): a plugin whose dependency is unloaded, replaced by an
-- incompatible version or gone stops (Error, a reason naming the
-- dependency, its handlers see no more events) and comes back at the next
-- reload that satisfies it; a compatible upgrade keeps it running.
local H = require "helpers"
local ptest = H.ptest

after_each(function() H.stop_all() end)

local function plugin(d, id) return H.plugin_by_id(d:status(), id) end

local function tagger(tag)
  return ([[polaris.on_event("*", function(ev) ev.params.%s = true; return ev end)]]):format(tag)
end

local BASE = {lua = [[polaris.command("base", function() return 0, "base" end)]],
              manifest = {plugin_type = "Library", version = "1.0.0"}}
local USER = {lua = tagger("user"), manifest = {dependencies = {base = "^1.0.0"}}}
local USER2 = {lua = tagger("user2"), manifest = {dependencies = {user = "^1.0.0"}}}

-- the tags one event picks up on its way to the guest
local function tags(app, g, id)
  app:send_event(H.event(id))
  local ev = g:event()
  assert.are.equal(id, ev.eventId)
  return {user = ev.params.user, user2 = ev.params.user2}
end

local function outcome_of(r, id)
  for _, p in ipairs(r.data.plugins) do if p.id == id then return p end end
end

describe("dependencies at run time", function()
  it("unloading a plugin stops its dependents, direct and indirect; a reload brings them back", function()
    local d = H.start_daemon({plugins = {base = BASE, user = USER, user2 = USER2}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    assert.are.same({user = true, user2 = true}, tags(app, g, 1))
    local how, code = ptest.wait(ptest.spawn({H.POLARISCTL, "--socket", d.ipc, "unload", "base"},
                                             {stdout = "/dev/null", stderr = "/dev/null"}), 5000)
    assert.are.same({"exited", 0}, {how, code})
    local u, u2 = plugin(d, "user"), plugin(d, "user2")
    assert.are.equal("Error", u.state)
    assert.are.equal("dependency 'base' was unloaded", u.last_error)
    assert.are.equal("Error", u2.state)
    assert.are.equal("dependency 'user' was stopped", u2.last_error)
    assert.are.same({}, tags(app, g, 2))
    assert.is_truthy(d:log_text():find("plugin user stopped: dependency 'base' was unloaded", 1, true))
    assert.are.equal(0, app:call("host", "reload").code)
    H.wait_for("the dependents to come back", function()
      return plugin(d, "user").state == "Active" and plugin(d, "user2").state == "Active"
    end)
    assert.are.same({user = true, user2 = true}, tags(app, g, 3))
    H.stop_ok(d)
  end)

  it("a reload with an incompatible version stops the dependents; a compatible one keeps or brings them back", function()
    local d = H.start_daemon({plugins = {base = BASE, user = USER, user2 = USER2}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    H.write_plugins(d.plugin_dir, {base = {lua = BASE.lua, manifest = {plugin_type = "Library", version = "2.0.0"}}})
    local r = app:call("host", "reload")
    assert.are.equal(0, r.code)
    assert.are.equal("stopped", outcome_of(r, "user").outcome)
    assert.are.equal("dependency 'base' is 2.0.0, needs ^1.0.0", outcome_of(r, "user").reason)
    local u = plugin(d, "user")
    assert.are.same({"Error", "dependency 'base' is 2.0.0, needs ^1.0.0"}, {u.state, u.last_error})
    assert.are.equal("Error", plugin(d, "user2").state)
    assert.is_truthy(plugin(d, "user2").last_error:find("dependency 'user'", 1, true))
    assert.are.same({}, tags(app, g, 1))
    -- satisfied again: the next reload re-resolves everything
    H.write_plugins(d.plugin_dir, {base = {lua = BASE.lua, manifest = {plugin_type = "Library", version = "1.1.0"}}})
    r = app:call("host", "reload")
    assert.are.equal(0, r.data.failed)
    assert.are.equal("Active", plugin(d, "user").state)
    assert.are.equal("Active", plugin(d, "user2").state)
    assert.are.same({user = true, user2 = true}, tags(app, g, 2))
    -- a compatible upgrade: the dependents run on, untouched
    H.write_plugins(d.plugin_dir, {base = {lua = BASE.lua, manifest = {plugin_type = "Library", version = "1.2.0"}}})
    r = app:call("host", "reload")
    assert.are.equal("reloaded", outcome_of(r, "base").outcome)
    assert.are.equal("unchanged", outcome_of(r, "user").outcome)
    assert.are.equal("unchanged", outcome_of(r, "user2").outcome)
    assert.are.same({user = true, user2 = true}, tags(app, g, 3))
    H.stop_ok(d)
  end)

  it("a dependency that fails its reload keeps running, and so do its dependents; one that goes away stops them", function()
    local d = H.start_daemon({plugins = {base = BASE, user = USER}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    H.write_plugins(d.plugin_dir, {base = {lua = "this is not lua", manifest = {plugin_type = "Library", version = "1.3.0"}}})
    local r = app:call("host", "reload")
    assert.are.equal("kept", outcome_of(r, "base").outcome)
    assert.are.equal("unchanged", outcome_of(r, "user").outcome)
    assert.are.equal("Active", plugin(d, "user").state)
    assert.are.same({user = true}, tags(app, g, 1))
    os.remove(d.plugin_dir .. "/base.json")
    os.remove(d.plugin_dir .. "/base.lua")
    d:signal("HUP")
    H.wait_for("user to stop", function() return plugin(d, "user").state == "Error" end)
    assert.is_truthy(plugin(d, "user").last_error:find("missing dependency 'base'", 1, true))
    assert.are.same({}, tags(app, g, 2))
    H.stop_ok(d)
  end)
end)
