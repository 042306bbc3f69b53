-- limits_spec.lua - what one plugin can make the daemon hold on its behalf
-- is bounded per plugin ([plugins] timers_max, waits_max, exec_max,
-- emit_per_s, mailbox_max, shared_plugin_max_bytes): over a bound the call
-- raises or answers nil, "busy ...", the refusal is counted in status, and
-- the daemon and the other plugins go on. Run in process and (for the
-- bounds a plugin host enforces itself) out of process.
local H = require "helpers"

after_each(function() H.stop_all() end)

local LIMITS = {plugins = {timers_max = 5, waits_max = 3, exec_max = 1, emit_per_s = 20, mailbox_max = 50,
                           shared_plugin_max_bytes = 2048}}

local function plugin(d, id) return H.plugin_by_id(d:status(), id) end

describe("per-plugin bounds", function()
  it("refuses timers, waits, programs, emits and shared bytes over the bound, and counts it", function()
    local d = H.start_daemon({config = LIMITS, plugins = {
      greedy = {lua = [[
        polaris.on_event(31337, function() return false end)
        polaris.command("timers", function()
          local ids = {}
          for i = 1, 5 do ids[i] = polaris.every(3600000, function() end) end
          local ok, err = pcall(polaris.timer, 10, function() end)
          assert(not ok and err:find("plugins.timers_max", 1, true), tostring(err))
          polaris.cancel(ids[1])
          polaris.cancel(ids[1])                      -- twice: still one slot back
          polaris.timer(3600000, function() end)      -- the freed slot
          ok = pcall(polaris.timer, 10, function() end)
          assert(not ok)
          return 0, "ok"
        end)
        polaris.command("park", function() polaris.sleep(60000) return 0 end)
        polaris.command("one_more", function()
          local ok, err = pcall(polaris.sleep, 1)
          return 0, ok and "slept" or err
        end)
        polaris.command("emits", function()
          local sent, why = 0, nil
          for i = 1, 1000 do
            local ok, err = polaris.emit({eventId = 31337, params = {i = i}})
            if not ok then why = err break end
            sent = sent + 1
          end
          return 0, why or "all sent", {sent = sent}
        end)
        polaris.command("shared", function()
          for i = 1, 100 do
            local ok, err = pcall(polaris.shared.set, "k" .. i, string.rep("x", 100))
            if not ok then return 0, err, {stored = i - 1} end
          end
          return 0, "all stored"
        end)
      ]], manifest = {plugin_type = "Strategy", permissions = {"ExecuteSyscall"}}},
      other = {lua = [[
        polaris.command("shared_other", function() polaris.shared.set("mine", string.rep("y", 1500)) return 0, "ok" end)
      ]], manifest = {plugin_type = "Command"}},
    }})
    local app = H.app(d)
    local r = app:call("host", "timers")
    assert.are.equal(0, r.code, r.msg)
    -- three calls park; the fourth is refused
    for _ = 1, 3 do app:request("host", "park", {}, 120000) end
    H.wait_for("three parked calls", function() return plugin(d, "greedy").commands >= 3 end)
    r = app:call("host", "one_more")
    assert.are.equal(0, r.code, r.msg)
    assert.is_truthy(r.msg:find("busy: too many calls waiting (plugins.waits_max)", 1, true), r.msg)
    r = app:call("host", "emits")
    assert.is_truthy(r.msg:find("plugins.emit_per_s", 1, true), r.msg)
    assert.is_true(r.data.sent >= 20 and r.data.sent < 200, tostring(r.data.sent))
    r = app:call("host", "shared")
    assert.is_truthy(r.msg:find("plugins.shared_plugin_max_bytes", 1, true), r.msg)
    assert.is_true(r.data.stored >= 10 and r.data.stored < 20, tostring(r.data.stored))
    -- another plugin's share is its own
    assert.are.equal(0, app:call("host", "shared_other").code)
    local st = plugin(d, "greedy")
    assert.is_true(st.refused >= 4, tostring(st.refused))
    if st.isolation == "in-process" then
      assert.are.equal(2, st.refused_by.timers)
      assert.are.equal(1, st.refused_by.waits)
      assert.are.equal(5, st.held.timers)
    end
    assert.are.equal(1, st.refused_by.emit)
    assert.are.equal(1, st.refused_by.shared)
    assert.is_true(d:alive())
    H.stop_ok(d)
  end)

  it("runs at most exec_max programs at once for a plugin", function()
    local d = H.start_daemon({config = LIMITS, plugins = {
      runner = {lua = [[
        polaris.command("run", function()
          local ok, r = pcall(polaris.exec, {"/bin/sleep", "30"}, {timeout = 60000})
          return 0, ok and "ran" or r
        end)
      ]], manifest = {plugin_type = "Command", permissions = {"ExecuteSyscall"}}},
    }})
    local app = H.app(d)
    app:request("host", "run", {}, 120000)
    H.wait_for("one program running", function() return plugin(d, "runner").commands >= 1 end)
    local r = app:call("host", "run")
    assert.is_truthy(r.msg:find("busy: too many programs running (plugins.exec_max)", 1, true), r.msg)
    H.stop_ok(d)
  end)

  -- the sandbox keeps small blocks a plugin freed for its next ones
  -- (core/lib/block_cache.c), counted toward its memory_limit: they must go
  -- back before an allocation that fits the limit is refused for them
  it("lets a plugin use its whole memory_limit after it freed many small blocks", function()
    local d = H.start_daemon({plugins = {
      churn = {lua = [[
        polaris.command("churn", function()
          local keep = {}
          for i = 1, 5000 do keep[i] = {i, tostring(i)} end
          keep = nil
          collectgarbage("collect")
          local used = math.floor(collectgarbage("count") * 1024)
          -- rep holds its buffer and then the string: twice n at the peak,
          -- 16 KiB short of the limit, less than the blocks freed above
          local n = (4 * 1024 * 1024 - used - 16 * 1024) // 2
          local ok, s = pcall(string.rep, "x", n)
          return 0, "ok", {ok = ok, err = not ok and tostring(s) or nil, len = ok and #s or 0, n = n}
        end)
      ]], manifest = {plugin_type = "Command", sandbox = {memory_limit = 4 * 1024 * 1024}}},
    }})
    local r = H.app(d):call("host", "churn")
    assert.are.equal(0, r.code, r.msg)
    assert.is_true(r.data.ok, r.data.err)
    assert.are.equal(r.data.n, r.data.len)
    H.stop_ok(d)
  end)

  it("gives a full mailbox no more messages: the sender hears busy", function()
    local d = H.start_daemon({config = LIMITS, plugins = {
      slow = {lua = [[
        local P = {}
        function P.on_message() local t = os.clock() while os.clock() - t < 0.02 do end end
        return P
      ]], manifest = {plugin_type = "Command"}},
      chatty = {lua = [[
        polaris.command("flood", function()
          for i = 1, 2000 do
            local n, err = polaris.send("slow", "x", {i = i})
            if not n then return 0, err, {sent = i - 1} end
          end
          return 0, "all sent"
        end)
      ]], manifest = {plugin_type = "Command"}},
    }})
    if plugin(d, "slow").isolation == "process" then
      -- a plugin host reads its channel at once and queues messages in its
      -- own address space (RLIMIT_AS), not the daemon's
      H.stop_ok(d)
      return
    end
    local r = H.app(d):call("host", "flood")
    assert.are.equal("busy: its mailbox is full (plugins.mailbox_max)", r.msg)
    assert.is_true(r.data.sent >= 50 and r.data.sent < 200, tostring(r.data.sent))
    local st = plugin(d, "slow")
    assert.are.equal(1, st.refused_by.mailbox)
    assert.is_true(st.held.mailbox <= 50)
    H.stop_ok(d)
  end)
end)
