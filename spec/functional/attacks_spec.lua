-- attacks_spec.lua - the hostile plugin corpus of spec/attacks/ against one
-- daemon: every attack is contained, the daemon stays up, and a
-- well-behaved plugin's events keep flowing after each one.
local H = require "helpers"
local ptest = H.ptest

after_each(function() H.stop_all() end)

local ATTACKS = "spec/attacks"

local function corpus()
  local list = {}
  local p = io.popen("ls " .. ATTACKS)
  for name in p:lines() do
    local id = name:match("^(.+)%.lua$")
    if id then
      local first = H.read_file(ATTACKS .. "/" .. name):match("^[^\n]*")
      local kind, want = first:match("^%-%- (expect%-?%a*): (.+)$")
      assert(kind, name .. ": first line must say what is expected")
      list[#list + 1] = {id = id, kind = kind, want = want}
    end
  end
  p:close()
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

local function matches(text, alternatives)
  for alt in alternatives:gmatch("[^|]+") do
    if text:find(alt, 1, true) then return true end
  end
  return false
end

describe("the sandbox against the hostile plugin corpus", function()
  it("contains every attack; the daemon and the other plugins carry on", function()
    local dir = ptest.mkdtemp()
    os.execute(("mkdir -p '%s/root' && echo secret > '%s/secret' && ln -s '%s' '%s/root/link' && " ..
                "ln -s /etc '%s/root/abs'"):format(dir, dir, dir, dir, dir))
    local d = H.start_daemon({
      plugins = {canary = {lua = [[
        polaris.on_event(777, function(ev) ev.params.canary = ("ok"):upper() return ev end)
      ]], manifest = {plugin_type = "Strategy"}}},
      args = {"--plugins", ATTACKS},
      env = {POLARIS_TEST_SECRET = "do-not-leak"},
      -- a smaller emit bucket: flood_emit meets it within one CPU budget even
      -- out of process, where every emit is a round trip to the daemon
      config = {["plugin.path_traversal"] = {root = dir .. "/root", allowed_paths = dir .. "/root"},
                plugins = {emit_per_s = 1000}},
    })
    local g = H.guest_connected(d)
    local app = H.app(d)
    local list = corpus()
    assert.is_true(#list >= 20, "the corpus shrank")
    for i, a in ipairs(list) do
      if a.kind == "expect-load" then
        local st = H.plugin_by_id(d:status(), a.id)
        assert.are.equal("Error", st.state, a.id)
        assert.is_true(matches(st.last_error or "", a.want), a.id .. ": " .. tostring(st.last_error))
      else
        local r = app:call("host", a.id, {}, 10000, 15000)
        assert.is_true(#(r.msg or "") <= 4096, a.id .. ": an unbounded message reached the answer")
        if a.kind == "expect" then
          assert.are.equal(-6, r.code, a.id .. ": " .. tostring(r.msg))
          assert.is_true(matches(r.msg, a.want), a.id .. ": " .. tostring(r.msg))
        else
          assert.are.equal(0, r.code, a.id .. ": " .. tostring(r.msg))
          assert.are.equal(a.want, r.msg, a.id)
        end
      end
      -- after every attack: alive, and the canary's strings are its own
      app:send_event(H.event(777, {params = {n = i}}))
      local ev = assert(g:event(10000), "no canary event after " .. a.id)
      assert.are.equal(777, ev.eventId)
      assert.are.equal("OK", ev.params.canary, "after " .. a.id)
      assert.is_true(d:alive(), a.id)
    end
    assert.are.equal("Active", H.plugin_by_id(d:status(), "canary").state)
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("runs 200 handlers for one event (they used to overflow the Lua stack of the strategy's call)", function()
    local d = H.start_daemon({plugins = {
      many = {lua = [[
        for i = 1, 200 do
          polaris.on_event(4242, function(ev) ev.params.n = ev.params.n + 1; ev.params.last = i; return ev end)
        end
        local ok, err = pcall(function() for _ = 1, 2000 do polaris.on_event(4243, function() end) end end)
        assert(not ok and err:find("at most 1024 handlers", 1, true), err)
      ]], manifest = {plugin_type = "Strategy"}},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    for round = 1, 3 do
      app:send_event(H.event(4242, {params = {n = round}}))
      local ev = assert(g:event(10000), "no event back")
      assert.are.equal(4242, ev.eventId)
      assert.is_nil(ev.strategyError)
      assert.are.equal(200 + round, ev.params.n)
      assert.are.equal(200, ev.params.last)
    end
    assert.is_true(d:alive())
    assert.are.equal("Active", H.plugin_by_id(d:status(), "many").state)
    H.stop_ok(d)
  end)
end)
