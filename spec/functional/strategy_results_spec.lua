-- strategy_results_spec.lua - what a strategy hands back (DESIGN 3.1, 5.4):
-- a returned event is held to what an app may send, the identity the
-- daemon stamped stays, and a handler that edits its event but returns nil
-- is warned about.
local H = require "helpers"
local ptest = H.ptest

after_each(function() H.stop_all() end)

local function plugin(d, id) return H.plugin_by_id(d:status(), id) end

describe("a strategy's returned event", function()
  it("is refused, named by type, when a handler returns anything but the event, nil or false", function()
    -- one handler for an event (the runtime checks the result) and two
    -- (the driver does): the same words, the event forwarded as it came
    local d = H.start_daemon({plugins = {
      odd = {lua = [[
        polaris.on_event(1, function() return 42 end)
        polaris.on_event(2, function() return true end)
        polaris.on_event(3, function() return "text" end)
        polaris.on_event(4, function(ev) return ev end)
        polaris.on_event(4, function() return 42 end)
        polaris.on_event(5, function(ev) ev.params.fine = true; return ev end)
        polaris.on_event(6, function() return function() end end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local want = {"a number", "a boolean", "a string", "a number", nil, "a function"}
    for id = 1, 6 do app:send_event(H.event(id)) end
    for id = 1, 6 do
      local ev = g:event()
      assert.are.equal(id, ev.eventId)
      if want[id] then
        assert.are.same({n = id}, ev.params)
        assert.are.equal("odd", ev.strategyError.plugin)
        assert.are.equal("on_event handler returned " .. want[id] .. " (want the event, nil or false)",
                         ev.strategyError.reason)
      else
        assert.are.same({n = id, fine = true}, ev.params)
        assert.is_nil(ev.strategyError)
      end
    end
    assert.are.equal(5, plugin(d, "odd").errors)
    H.stop_ok(d)
  end)

  it("comes out the same through one handler (the C driver) and through driver.strategy, for any result", function()
    -- each handler on event k, alone in plugin one (plugin.c's strategy1),
    -- and on k + 100 in plugin two, whose handler for every event comes
    -- after it and returns nil (driver.lua's strategy): what the guest gets
    -- must not tell the two apart. Failures never five in a row (that
    -- would put the plugin in Error); 9 and 11 wait first (the C driver's
    -- continuation)
    local handlers = [[
      return {
        function(ev) local _ = ev.params.n end,
        function(ev) return {eventId = ev.eventId, params = {other = true}} end,
        function(ev) ev.x = 1; return ev end,
        function(ev)
          return setmetatable({eventId = ev.eventId, params = {}}, {__eq = function() error("__eq ran") end})
        end,
        function(ev) ev.params.s = "y" end,
        function() return 42 end,
        function() return false end,
        function() return true end,
        function(ev) polaris.sleep(5); ev.params.slept = true; return ev end,
        function() error("boom", 0) end,
        function(ev) polaris.sleep(5); ev.params.lost = true end,
      }
    ]]
    local d = H.start_daemon({plugins = {
      one = {lua = "local hs = (function() " .. handlers .. " end)()\n" ..
                   "for k, h in ipairs(hs) do polaris.on_event(k, h) end"},
      two = {lua = "local hs = (function() " .. handlers .. " end)()\n" ..
                   "for k, h in ipairs(hs) do polaris.on_event(k + 100, h) end\n" ..
                   "polaris.on_event('*', function() end)"},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    for k = 1, 11 do app:send_event(H.event(k)) end
    for k = 1, 11 do app:send_event(H.event(k + 100)) end
    local got = {}
    for _ = 1, 20 do                            -- 7 and 107 are dropped
      local ev = assert(g:event())
      local k = ev.eventId % 100
      ev.eventId, ev.timestamp = nil, nil
      ev.params.n = nil
      if ev.strategyError then ev.strategyError.plugin = nil end
      got[k] = got[k] or {}
      got[k][#got[k] + 1] = ev
    end
    for k = 1, 11 do
      if k == 7 then
        assert.is_nil(got[k], "dropped by false")
      else
        assert.are.equal(2, #got[k], "event " .. k .. " and " .. (k + 100))
        assert.are.same(got[k][1], got[k][2], "event " .. k)
      end
    end
    assert.are.equal(1, got[3][1].x)
    assert.is_true(got[9][1].params.slept, "a handler that waited returns its event")
    assert.is_nil(got[11][1].params.lost, "nil after a wait: as it came")
    assert.are.equal("boom", got[10][1].strategyError.reason)
    assert.are.equal("Active", H.plugin_by_id(d:status(), "one").state)
    H.stop_ok(d)
  end)

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

  -- the write-back skips the restamp only where it could change nothing
  -- (plugin.c's restamp_needless): every member a handler read, set,
  -- deleted or added that the daemon stamps or checks, and any table whose
  -- text is not this event's own, still goes through it
  it("restamps whatever a handler touched of the identity and the checked members", function()
    local d = H.start_daemon({plugins = {
      toucher = {lua = [[
        local kept
        local edits = {
          [1] = function(ev) ev.pid = nil end,                       -- put back
          [2] = function(ev) ev.timestamp = nil end,                 -- refused
          [3] = function(ev) ev.processName = 5 end,                 -- refused
          [4] = function(ev) local _ = ev.pid, ev.uid end,           -- read only
          [5] = function(ev) ev.params = {1, 2} end,                 -- an array: refused
          [6] = function(ev) ev.claimedPid = 5 end,                  -- added: taken out
          [7] = function(ev) ev.logf = "/tmp/x" end,                 -- added, valid
          [8] = function(ev) ev.params = nil end,                    -- refused
          [9] = function(ev) ev.processVer = nil end,                -- deleted: allowed
          [10] = function(ev) ev.uid = 1 end,                        -- put back
        }
        polaris.on_event("*", function(ev)
          if ev.eventId == 20 then kept = ev; ev.params.first = true; return ev end
          if ev.eventId == 21 then kept.params.second = true; kept.eventId = 21; return kept end
          edits[ev.eventId](ev)
          ev.other = true
          return ev
        end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    for id = 1, 10 do app:send_event(H.event(id)) end
    app:send_event(H.event(20, {pid = 31337}))      -- a claim: claimedPid 31337
    app:send_event(H.event(21))                     -- none: returned the table of 20
    local refused = {[2] = "timestamp must be", [3] = "processName must be a string",
                     [5] = "params must be an object", [8] = "params must be an object"}
    local me = ptest.getpid()
    local uid
    for id = 1, 10 do
      local ev = g:event()
      assert.are.equal(id, ev.eventId)
      assert.are.equal(me, ev.pid, id)
      assert.is_nil(ev.claimedPid, id)
      uid = uid or ev.uid
      assert.are.equal(uid, ev.uid, id)
      if refused[id] then
        assert.is_truthy(ev.strategyError and ev.strategyError.reason:find(refused[id], 1, true), id)
        assert.is_nil(ev.other)
      else
        assert.is_nil(ev.strategyError, id)
        assert.is_true(ev.other, id)
      end
    end
    local a, b = g:event(), g:event()
    assert.are.equal(31337, a.claimedPid)
    assert.is_true(a.params.first)
    assert.are.equal(21, b.eventId)
    assert.is_true(b.params.second)
    assert.is_nil(b.claimedPid)                     -- 21's identity, not 20's
    assert.are.equal(me, b.pid)
    assert.are.equal(4, plugin(d, "toucher").errors)
    H.stop_ok(d)
  end)

  -- the eventId read (so written first by the daemon), 6 members copied
  -- and 57 or 58 added: 64 members pass, 65 are refused, as any event's
  it("refuses a returned event of more than 64 members, also when the restamp had nothing else to do", function()
    local d = H.start_daemon({plugins = {
      wide = {lua = [[
        polaris.on_event("*", function(ev)
          local _ = ev.eventId
          for i = 1, ev.params.add do ev["x" .. i] = i end
          return ev
        end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(1, {params = {add = 57}}))
    app:send_event(H.event(2, {params = {add = 58}}))
    local a, b = g:event(), g:event()
    local n = 0
    for _ in pairs(a) do n = n + 1 end
    assert.are.equal(64, n)
    assert.is_nil(a.strategyError)
    assert.is_nil(b.x1)
    assert.is_truthy(b.strategyError and b.strategyError.reason:find("more than 64 top-level members", 1, true))
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

  it("checks the first 100 nils for lost edits, then one in 64, one count over both drivers", function()
    -- event 2 has one handler (the C driver), event 1 two (driver.strategy):
    -- a count of each would check 200 of these 228, one count 102
    local d = H.start_daemon({plugins = {
      forgetful = {lua = [[
        polaris.on_event("*", function(ev) ev.params.lost = true end)
        polaris.on_event(1, function() end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local n = 100 + 64 * 2
    for i = 1, n do app:send_event(H.event(i % 2 + 1)) end
    for _ = 1, n do assert.is_nil(assert(g:event()).params.lost) end
    assert.are.equal(102, plugin(d, "forgetful").ignored_edits)
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

  -- the event table a handler gets is lazy (core/runtime/lua_event.c): what
  -- it does not touch goes on as the app wrote it, and nothing of how it
  -- is made shows
  for _, mode in ipairs({"manifest", "process"}) do
    it("passes on each member a handler did not touch byte for byte (" .. mode .. ")", function()
      local d = H.start_daemon({config = {plugins = {isolation = mode}}, plugins = {
        editor = {lua = [[
          polaris.on_event(1, function(ev) ev.params.seen = true; return ev end)
          polaris.on_event(2, function(ev) ev.processName = "renamed"; return ev end)
        ]]},
      }})
      local g = H.guest_connected(d)
      local app = H.app(d)
      for id = 1, 2 do
        app:send_event(('{"eventId":%d,"timestamp":1732262400123,"pid":%d,"processName":"spec",' ..
          '"processVer":"1.0","params":{"f":1.50,"e":1e2,"s":"caf\\u00e9","big":123456789012345678901234567890,' ..
          '"list":[ 1, 2 ]}}'):format(id, ptest.getpid()))
      end
      for id = 1, 2 do
        local ev, f = g:event()
        assert.are.equal(id, ev.eventId)
        assert.is_nil(ev.strategyError)
        if id == 1 then
          assert.truthy(f.payload:find('"params":{"f":1.50,"e":1e2,"s":"caf\\u00e9",' ..
            '"big":123456789012345678901234567890,"list":[ 1, 2 ],"seen":true}', 1, true), f.payload)
        else
          assert.are.equal("renamed", ev.processName)
          assert.truthy(f.payload:find('"params":{"f":1.50,"e":1e2,"s":"caf\\u00e9",' ..
            '"big":123456789012345678901234567890,"list":[ 1, 2 ]}', 1, true), f.payload)
        end
      end
      H.stop_ok(d)
    end)
  end

  it("reads and encodes an event table kept past its call as it came, after a collection", function()
    local d = H.start_daemon({plugins = {
      keeper = {lua = [[
        local kept, kept_params
        polaris.on_event(1, function(ev) kept, kept_params = ev, ev.params end)
        polaris.on_event(2, function(ev)
          collectgarbage("collect")
          ev.params.kept_n = kept_params.n
          ev.params.kept = cjson.decode(cjson.encode(kept))
          return kept_params.n == 1 and kept.eventId == 1 and ev or false
        end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(1))
    app:send_event(H.event(2))
    assert.are.equal(1, g:event().eventId)
    local ev = g:event()
    assert.are.equal(2, ev.eventId)
    assert.are.equal(1, ev.params.kept_n)
    assert.are.equal(1, ev.params.kept.eventId)
    assert.are.same({n = 1}, ev.params.kept.params)
    assert.are.equal("spec", ev.params.kept.processName)
    H.stop_ok(d)
  end)

  it("leaves the returned table as the plugin has it, and the identity it left alone where it stood", function()
    local d = H.start_daemon({plugins = {
      keeper = {lua = [[
        local kept = {}
        polaris.on_event(1, function(ev) ev.params.seen = true; kept[#kept + 1] = ev; return ev end)
        polaris.on_event(2, function(ev)
          local ids = {}
          for i, k in ipairs(kept) do ids[i] = k.eventId end
          ev.params.ids = ids
          return ev
        end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(1))
    app:send_event(H.event(1))
    app:send_event(H.event(2))
    for _ = 1, 2 do
      local ev, f = g:event()
      assert.are.equal(1, ev.eventId)
      assert.are.same({n = 1, seen = true}, ev.params)
      -- pid and uid as the daemon stamped them, right after the timestamp
      assert.is_truthy(f.payload:find('^{"eventId":1,"timestamp":1732262400123,"pid":' .. ptest.getpid() ..
        ',"uid":%d+,'), f.payload)
    end
    local ev = g:event()
    assert.are.equal(2, ev.eventId)
    assert.are.same({1, 1}, ev.params.ids)          -- the kept tables still read their eventId
    H.stop_ok(d)
  end)

  it("goes on byte for byte as it came when the handler only read it, as nil would have it", function()
    local d = H.start_daemon({plugins = {
      reader = {lua = [[
        polaris.on_event(1, function(ev)
          if ev.timestamp < 0 or ev.params.n ~= 1 or ev.processName == "" then return false end
          return ev
        end)
        polaris.on_event(2, function(ev) local _ = ev.timestamp end)   -- nil: the bytes as they came
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(1, {params = {n = 1}}))
    app:send_event(H.event(2, {params = {n = 1}}))
    local _, f1 = g:event()
    local _, f2 = g:event()
    assert.are.equal(f2.payload:gsub('^{"eventId":2,', '{"eventId":1,'), f1.payload)
    H.stop_ok(d)
  end)

  it("shows a handler no metatable and no key but the event's members", function()
    local d = H.start_daemon({plugins = {
      prober = {lua = [[
        polaris.on_event("*", function(ev)
          local rawnext = pairs({})          -- the iterator a plain table's pairs hands out
          local keys = {}
          for k in rawnext, ev do keys[#keys + 1] = type(k) .. ":" .. tostring(k) end
          table.sort(keys)
          local probe = {keys = table.concat(keys, ","), mt = tostring(getmetatable(ev)),
                         params_mt = tostring(getmetatable(ev.params)), len = #ev}
          ev.params.probe = probe
          return ev
        end)
      ]]},
    }})
    local g = H.guest_connected(d)
    H.app(d):send_event(H.event(7))
    local ev = g:event()
    local p = ev.params.probe
    assert.are.equal("string:eventId,string:params,string:pid,string:processName,string:processVer," ..
                     "string:timestamp,string:uid", p.keys)
    assert.are.equal("nil", p.mt)
    assert.are.equal("nil", p.params_mt)
    assert.are.equal(0, p.len)
    H.stop_ok(d)
  end)

  -- plugin code that takes all its memory limit leaves (pcall catches each
  -- refusal, from 1 MiB strings down to empty tables) and keeps it
  local FILL = [[
    local function fill()
      local chain, cur
      local function grow() chain = {string.rep("y", cur) .. "", chain} end
      local function grow_t() chain = {chain} end
      for _, sz in ipairs{1048576, 65536, 4096, 512, 64} do
        cur = sz
        while pcall(grow) do end
      end
      while pcall(grow_t) do end
      return chain
    end
  ]]

  -- a settle (pairs) that runs out of memory halfway leaves the table
  -- lazy, holding keys its state did not note: the check that the table
  -- still says what its text says must walk it, or an edit of a settled
  -- member would go nowhere (the original bytes sent instead)
  it("keeps an edit made after a settle that ran out of memory halfway", function()
    local big = string.rep("z", 40000)
    -- filling 4 MiB a few KB at a time takes longer than the default budget
    local d = H.start_daemon({config = {plugins = {cpu_time_limit_ms = 20000}}, plugins = {
      hog = {lua = [[
        local keep = {}
        for i = 1, 4000 do keep[i] = false end     -- no growth while it fills
        polaris.on_event(1, function(ev)
          -- the state full to a few KB, then ~12 KB given back: the small
          -- members settle, the 40 KB one cannot
          local n = 0
          for _, sz in ipairs{65536, 4096, 4096, 512, 512} do
            collectgarbage()                   -- what the last round left
            while pcall(function() keep[n + 1] = string.rep("y", sz) .. n; n = n + 1 end) do end
          end
          for i = n - 24, n do keep[i] = false end
          collectgarbage()
          local ok = pcall(function() for _ in pairs(ev) do end end)
          for i = 1, n do keep[i] = false end
          collectgarbage()
          if ok then return false end          -- not halfway: the spec says so below
          ev.a = "changed"
          return ev
        end)
      ]], manifest = {sandbox = {memory_limit = 4 * 1024 * 1024}}},
    }})
    local g = H.guest_connected(d)
    H.app(d):send_event(('{"eventId":1,"timestamp":1732262400123,"processName":"spec","processVer":"1",' ..
                         '"params":{"n":1},"a":"x","b":"y","big":"%s"}'):format(big))
    local ev = g:event()
    assert.is_table(ev, "the settle did not run out of memory halfway (the margins above)")
    assert.are.equal("changed", ev.a)
    assert.are.equal("y", ev.b)
    assert.are.equal(big, ev.big)
    assert.is_nil(ev.strategyError)
    H.stop_ok(d)
  end)

  it("writes a read member back without memory of the plugin's: a strategy at its limit cannot abort the daemon", function()
    -- the write-back runs outside any protected call: were it to allocate
    -- from a full state (a key over 40 bytes is a new string each time),
    -- Lua would abort the process
    local LONG = string.rep("k", 300)
    local d = H.start_daemon({plugins = {
      hog = {lua = FILL .. [[
        local LONG = string.rep("k", 300)
        polaris.on_event(1, function(ev)
          local _ = ev.params[LONG]
          HOLD = fill()
          return ev
        end)
      ]], manifest = {sandbox = {memory_limit = 4 * 1024 * 1024}}},
    }})
    local g = H.guest_connected(d)
    H.app(d):send_event(H.event(1, {params = {n = 1, [LONG] = 1}}))
    local ev = assert(g:event())
    assert.are.equal(1, ev.eventId)
    assert.are.equal(1, ev.params[LONG])
    assert.is_table(d:status().plugins)                 -- still up
    H.stop_ok(d)
  end)

  it("refuses a table without eventId from a strategy at its memory limit, and carries on", function()
    -- reencode pushes the key "eventId" where nothing protects the push:
    -- were the string gone from the state and the state full, making it
    -- anew would raise and abort the daemon. read_event keeps one alive;
    -- this staging could not make the string go without that either, so
    -- it holds the outcome, not the anchor.
    local d = H.start_daemon({plugins = {
      hog = {lua = FILL .. [[
        polaris.on_event(1, function(ev)
          ev["event" .. "Id"] = nil         -- no "eventId" among this chunk's constants
          ev = nil
          collectgarbage("collect")
          HOLD = fill()
          return {}
        end)
      ]], manifest = {sandbox = {memory_limit = 4 * 1024 * 1024}}},
    }})
    local g = H.guest_connected(d)
    H.app(d):send_event(H.event(1))
    local ev = assert(g:event())
    assert.are.equal(1, ev.eventId)
    assert.truthy(ev.strategyError.reason:find("no integer eventId", 1, true), ev.strategyError.reason)
    assert.is_table(d:status().plugins)                 -- still up
    H.stop_ok(d)
  end)

  it("refuses a returned event nested deeper than the encoder allows, untouched members counted", function()
    local d = H.start_daemon({plugins = {
      deepener = {lua = [[
        polaris.on_event(1, function(ev)
          local w = ev.params.d
          for _ = 1, 40 do w = {w} end
          ev.params.d = w
          return ev
        end)
        polaris.on_event(2, function(ev) ev.processName = "x"; return ev end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local deep = string.rep("[", 100) .. string.rep("]", 100)
    for id = 1, 2 do
      app:send_event(('{"eventId":%d,"timestamp":1,"pid":%d,"processName":"spec","params":{"d":%s}}')
        :format(id, ptest.getpid(), deep))
    end
    for id = 1, 2 do
      local ev = assert(g:event())
      assert.are.equal(id, ev.eventId)
      assert.are.equal("deepener", ev.strategyError and ev.strategyError.plugin)
      assert.truthy(ev.strategyError.reason:find("nested deeper than 64", 1, true), ev.strategyError.reason)
      assert.are.equal("spec", ev.processName)          -- forwarded as it came
    end
    H.stop_ok(d)
  end)

  it("takes an object member returned as the event, its eventId unread, as a decoded table would be", function()
    local d = H.start_daemon({plugins = {
      unwrap = {lua = [[
        polaris.on_event(1, function(ev) return ev.params.inner end)
        polaris.on_event(2, function(ev) return ev.params.inner end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(1, {params = {inner = H.event(1, {processName = "inner"})}}))
    app:send_event(H.event(2, {params = {inner = {eventId = 1.5, timestamp = 1, params = {}}}}))
    local a, fa = g:event()
    assert.are.equal(1, a.eventId)
    assert.is_nil(a.strategyError)
    assert.are.equal("inner", a.processName)
    assert.are.equal(1, select(2, fa.payload:gsub('"eventId"', "")))   -- written once
    local b = g:event()
    assert.are.equal(2, b.eventId)
    assert.truthy(b.strategyError.reason:find("no integer eventId", 1, true), b.strategyError.reason)
    H.stop_ok(d)
  end)

  it("refuses a returned event longer than an app may send, whatever it refers to many times", function()
    -- one 1 MiB string referred to five times is 1 MiB of the plugin's
    -- memory and 5 MiB of text: the text is the daemon's memory
    local d = H.start_daemon({plugins = {
      echo = {lua = [[
        local big = string.rep("z", 1024 * 1024)
        polaris.on_event(1, function(ev)
          ev.params.copies = {big, big, big, big, big}
          return ev
        end)
        polaris.on_event(2, function(ev)
          ev.params.copies = {big, big, big}
          return ev
        end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(1))
    app:send_event(H.event(2))
    local a = assert(g:event())
    assert.are.equal(1, a.eventId)
    assert.truthy(a.strategyError and a.strategyError.reason:find("passes 4194304 bytes", 1, true),
                  a.strategyError and a.strategyError.reason)
    assert.are.same({n = 1}, a.params)                       -- as it came
    local b = assert(g:event(10000))
    assert.are.equal(2, b.eventId)
    assert.is_nil(b.strategyError)
    assert.are.equal(3, #b.params.copies)
    H.stop_ok(d)
  end)
end)

-- The one-handler driver (plugin.c's strategy1) runs the events of a batch
-- one after another in one resume. Each spec holds the plugin busy on a
-- first event (0) while the others queue, so that they reach it as one
-- batch, and holds every outcome to what one resume an event gave.
describe("events one handler takes, run in one resume", function()
  local HOLD = [[
    polaris.on_event(1000, function()
      local t = os.clock() while os.clock() - t < 0.25 do end
    end)
  ]]

  local function hold_then(app, d, ids)
    app:send_event(H.event(1000))
    H.wait_for("the plugin busy on the first event", function()
      return plugin(d, "batch").events >= 1
    end, 5000)
    for _, id in ipairs(ids) do app:send_event(H.event(id)) end
  end

  it("finish each as it would alone, in order: an edit, an error, a drop, nil, a bad result, a wait", function()
    local d = H.start_daemon({plugins = {batch = {lua = HOLD .. [[
      polaris.on_event(10, function(ev) ev.params.ok = true; return ev end)
      polaris.on_event(11, function() error("boom") end)
      polaris.on_event(12, function() return false end)
      polaris.on_event(13, function(ev) local _ = ev.processName end)
      polaris.on_event(14, function() return 42 end)
      polaris.on_event(15, function(ev) polaris.sleep(20); ev.params.waited = true; return ev end)
      polaris.on_event(16, function(ev) ev.params.after = true; return ev end)
    ]]}}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    hold_then(app, d, {10, 11, 12, 13, 14, 10, 15, 16, 10, 16})
    local function next_event()
      local ev = assert(g:event(10000), "an event did not arrive")
      return ev
    end
    assert.are.equal(1000, next_event().eventId)
    local want = {
      {10, {n = 10, ok = true}}, {11, {n = 11}, "boom"}, {13, {n = 13}},
      {14, {n = 14}, "on_event handler returned a number"}, {10, {n = 10, ok = true}},
      {15, {n = 15, waited = true}}, {16, {n = 16, after = true}}, {10, {n = 10, ok = true}},
      {16, {n = 16, after = true}},
    }
    for i, w in ipairs(want) do
      local ev = next_event()
      assert.are.equal(w[1], ev.eventId, "event " .. i)
      assert.are.same(w[2], ev.params, "event " .. i)
      if w[3] then
        assert.truthy(ev.strategyError and ev.strategyError.reason:find(w[3], 1, true), "event " .. i)
      else
        assert.is_nil(ev.strategyError, "event " .. i)
      end
    end
    local st = plugin(d, "batch")
    assert.are.equal(11, st.events)
    assert.are.equal(2, st.errors)
    assert.are.equal("Active", st.state)
    H.stop_ok(d)
  end)

  it("gives each its own CPU budget, and holds each to it", function()
    -- each 20 takes 60% of the budget: had the batch shared one, the
    -- second would be stopped; the 21 after them never ends on its own
    local d = H.start_daemon({config = {plugins = {cpu_time_limit_ms = 400}}, plugins = {batch = {lua = HOLD .. [[
      polaris.on_event(20, function(ev)
        local t = os.clock() while os.clock() - t < 0.24 do end
        ev.params.spent = true
        return ev
      end)
      polaris.on_event(21, function() while true do end end)
    ]]}}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    hold_then(app, d, {20, 20, 20, 21, 20})
    assert.are.equal(1000, assert(g:event(10000)).eventId)
    for _, id in ipairs({20, 20, 20, 21, 20}) do
      local ev = assert(g:event(10000), "an event did not arrive")
      assert.are.equal(id, ev.eventId)
      if id == 20 then
        assert.is_nil(ev.strategyError, ev.strategyError and ev.strategyError.reason)
        assert.is_true(ev.params.spent)
      else
        assert.truthy(ev.strategyError and ev.strategyError.reason:find("cpu budget exceeded", 1, true))
      end
    end
    assert.are.equal(1, plugin(d, "batch").errors)
    H.stop_ok(d)
  end)

  it("stops where a result puts the plugin in Error: the rest pass untouched", function()
    local d = H.start_daemon({config = {plugins = {max_consecutive_errors = 3}}, plugins = {batch = {lua = HOLD .. [[
      polaris.on_event(30, function() return 42 end)
      polaris.on_event(31, function(ev) ev.params.touched = true; return ev end)
    ]]}}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    hold_then(app, d, {30, 30, 30, 31, 31})
    assert.are.equal(1000, assert(g:event(10000)).eventId)
    for i = 1, 3 do
      local ev = assert(g:event(10000))
      assert.are.equal(30, ev.eventId)
      assert.truthy(ev.strategyError, "event " .. i)
    end
    for _ = 1, 2 do
      local ev = assert(g:event(10000))
      assert.are.equal(31, ev.eventId)
      assert.are.same({n = 31}, ev.params)              -- in Error: untouched
    end
    assert.are.equal("Error", plugin(d, "batch").state)
    H.stop_ok(d)
  end)
end)
