-- plugins_spec.lua - the Lua plugin runtime through the real daemon (DESIGN
-- 5): strategies, command plugins, the sandbox and its limits, permissions,
-- messaging, the shared store, accounting and hot reload.
local H = require "helpers"
local codec, cjson, ptest = H.codec, H.cjson, H.ptest

after_each(function() H.stop_all() end)

local stop_ok = H.stop_ok

local function plugin(d, id) return H.plugin_by_id(d:status(), id) end

describe("strategies", function()
  it("modify, drop, and pass events; others are forwarded untouched", function()
    local d = H.start_daemon({plugins = {
      tagger = {lua = [[
        polaris.on_event(9001, function(ev)
          ev.params.seen_by = "tagger"
          ev.logf = "/var/log/captured.tar.gz"
          return ev
        end)
        polaris.on_event(9002, function(ev) return false end)
        polaris.on_event(9003, function(ev) ev.params.ignored = true end)  -- nil: as is
      ]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(9001))
    app:send_event(H.event(9002))
    app:send_event(H.event(9003))
    app:send_event(H.event(42))
    -- events without a strategy are not held behind those with one: order
    -- is kept per plugin, not across the whole stream
    local got = {}
    for _ = 1, 3 do local ev = g:event(); got[ev.eventId] = ev end
    local a = got[9001]
    assert.are.equal("tagger", a.params.seen_by)
    assert.are.equal("/var/log/captured.tar.gz", a.logf)
    assert.are.equal(ptest.getpid(), a.pid)          -- stamped fields survive
    assert.is_nil(got[9003].params.ignored)
    assert.is_table(got[42])
    assert.is_nil(got[9002])
    assert.is_nil(g:event(200))
    assert.are.equal(1, d:status().core.events_dropped_by_strategy)
    assert.are.equal(3, plugin(d, "tagger").events)
    stop_ok(d)
  end)

  it("keeps u64 eventIds exact through a strategy", function()
    local d = H.start_daemon({plugins = {
      all = {lua = [[polaris.on_event("*", function(ev) ev.params.x = 1; return ev end)]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    for _, id in ipairs({"18446744073709551615", "9007199254740993", "9223372036854775808"}) do
      app:send_event('{"eventId":' .. id .. ',"params":{}}')
      local ev, f = g:event()
      assert.is_truthy(f.payload:find('"eventId":' .. id .. ',', 1, true), f.payload)
      assert.are.equal(1, ev.params.x)
    end
    stop_ok(d)
  end)

  it("sees integer parameters as exact Lua integers, and forwards them exact", function()
    local d = H.start_daemon({plugins = {
      types = {lua = [[polaris.on_event(77, function(ev)
        local p = ev.params
        p.kinds = math.type(p.big) .. "," .. math.type(p.small) .. "," .. math.type(p.f) .. "," .. math.type(ev.timestamp)
        p.next = p.big + 1
        p.text = tostring(p.small)
        return ev
      end)]]},
    }})
    local g = H.guest_connected(d)
    H.app(d):send_event('{"eventId":77,"timestamp":1763880000123,"params":{"big":9007199254740993,"small":11,"f":1.5}}')
    local _, f = g:event()
    for _, want in ipairs({'"big":9007199254740993', '"next":9007199254740994', '"text":"11"',
                           '"kinds":"integer,integer,float,integer"', '"f":1.5'}) do
      assert.is_truthy(f.payload:find(want, 1, true), want .. " in " .. f.payload)
    end
    stop_ok(d)
  end)

  it("chains strategies in load order and keeps each plugin's order", function()
    local d = H.start_daemon({plugins = {
      a_first = {lua = [[polaris.on_event("*", function(ev) ev.params.trail = "a"; return ev end)]]},
      b_second = {lua = [[polaris.on_event("*", function(ev) ev.params.trail = ev.params.trail .. "b"; return ev end)]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    for i = 1, 300 do app:send_event(H.event(i)) end
    for i = 1, 300 do
      local ev = g:event()
      assert.are.equal(i, ev.eventId)
      assert.are.equal("ab", ev.params.trail)
    end
    stop_ok(d)
  end)

  it("forwards the event as it came, with strategyError, when a strategy fails", function()
    local d = H.start_daemon({plugins = {
      broken = {lua = [[polaris.on_event(7, function(ev) ev.params.half = true; error("boom") end)]]},
      spin = {lua = [[polaris.on_event(8, function(ev) while true do end end)]],
              manifest = {sandbox = {cpu_time_limit_ms = 50}}},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(7))
    app:send_event(H.event(8))
    local a = g:event()
    assert.are.equal("broken", a.strategyError.plugin)
    assert.is_truthy(a.strategyError.reason:find("boom", 1, true))
    assert.is_nil(a.params.half)
    local b = g:event(5000)
    assert.are.equal("spin", b.strategyError.plugin)
    assert.is_truthy(b.strategyError.reason:find("cpu budget exceeded", 1, true))
    local st = plugin(d, "broken")
    assert.are.equal(1, st.errors)
    assert.is_truthy(st.last_error:find("boom", 1, true))
    stop_ok(d)
  end)

  it("puts a plugin that keeps failing in Error, and other plugins never notice", function()
    local d = H.start_daemon({
      config = {plugins = {max_consecutive_errors = 3}},
      plugins = {
        flaky = {lua = [[polaris.on_event(1, function() error("always") end)]]},
        steady = {lua = [[polaris.on_event(1, function(ev) ev.params.steady = true; return ev end)]]},
      }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    for i = 1, 5 do app:send_event(H.event(1, {params = {i = i}})) end
    for i = 1, 5 do
      local ev = g:event()
      assert.are.equal(i, ev.params.i)
      assert.is_true(ev.params.steady)
      if i <= 3 then assert.are.equal("flaky", ev.strategyError.plugin) else assert.is_nil(ev.strategyError) end
    end
    local st = plugin(d, "flaky")
    assert.are.equal("Error", st.state)
    assert.are.equal(3, st.errors)
    assert.are.equal("Active", plugin(d, "steady").state)
    stop_ok(d)
  end)
end)

describe("command plugins", function()
  it("answer with code, msg and data; errors become -6", function()
    local d = H.start_daemon({plugins = {
      echo = {lua = [[
        polaris.command("echo", function(args, req) return 0, "Success", {echo = args, origin = req.origin} end)
        polaris.command("fail", function() error("no disk") end)
        polaris.command("bad", function() return "yes" end)
        polaris.command("custom", function() return 3, "partial" end)
      ]], manifest = {plugin_type = "Command"}},
    }})
    local app = H.app(d)
    local r = app:call("host", "echo", {a = 1, big = 9007199254740993})
    assert.are.equal(0, r.code)
    assert.are.equal(1, r.data.echo.a)
    assert.are.equal("app", r.data.origin)
    assert.are.equal(-6, app:call("host", "fail").code)
    assert.is_truthy(app:call("host", "fail").msg:find("no disk", 1, true))
    assert.are.equal(-6, app:call("host", "bad").code)
    local c = app:call("host", "custom")
    assert.are.equal(3, c.code)
    assert.are.equal("partial", c.msg)
    local g = H.guest_connected(d)
    g:send_plp(codec.PLP_CMD_REQ_G2H, 5, '{"action":"echo","args":{"x":"y"}}')
    local f = assert(g:expect(codec.PLP_CMD_RESP_H2G, 5))
    local gr = cjson.decode(f.payload)
    assert.are.equal(0, gr.code)
    assert.are.equal("guest", gr.data.origin)
    stop_ok(d)
  end)

  it("answer -2 at the deadline and discard the late result", function()
    local d = H.start_daemon({plugins = {
      slow = {lua = [[
        polaris.command("slow", function()
          local t = os.clock()
          while os.clock() - t < 0.6 do end
          return 0, "finally"
        end)
      ]], manifest = {plugin_type = "Command", sandbox = {cpu_time_limit_ms = 5000}}},
    }})
    local app = H.app(d)
    local t0 = ptest.now_ms()
    local r = app:call("host", "slow", {}, 200)
    assert.are.equal(-2, r.code)
    assert.is_true(ptest.now_ms() - t0 < 550)
    H.wait_for("the late result", function() return d:status().commands.late_results == 1 end)
    stop_ok(d)
  end)

  it("refuse a second plugin offering the same action", function()
    local d = H.start_daemon({plugins = {
      pong2 = {lua = [[polaris.command("ping", function() return 0 end)]], manifest = {plugin_type = "Command"}},
    }})
    local st = d:status()
    local failed = 0
    for _, p in ipairs(st.plugins) do
      if p.state == "Error" and p.last_error:find("already offered", 1, true) then failed = failed + 1 end
    end
    assert.are.equal(1, failed)
    assert.are.equal(0, H.app(d):call("host", "ping").code)
    stop_ok(d)
  end)
end)

describe("sandbox", function()
  local probe = [[
    local out = {}
    local function try(name, f) local ok, e = pcall(f); out[name] = ok and "allowed" or tostring(e) end
    for _, g in ipairs({"io", "debug", "dofile", "loadfile"}) do
      out[g] = _G[g] == nil and "absent" or "present"
    end
    -- package is there for pure-Lua libraries, without anything that loads C or files (issue 23)
    for _, f in ipairs({"loadlib", "searchpath", "searchers"}) do
      out["package." .. f] = package[f] == nil and "absent" or "present"
    end
    -- require reaches only the runtime's Lua helpers, as text, by dotted name
    try("require_helper", function() return require("polaris.glob").matcher("a*")("abc") and 1 end)
    try("require_same", function() assert(require("polaris.glob") == require("polaris.glob")) end)
    for i, name in ipairs({"io", "os", "../../etc/passwd", "polaris/glob", "/etc/passwd", "polaris-glob",
                           "polaris..glob", ".polaris"}) do
      try("require_bad" .. i, function() return require(name) end)
    end
    for _, f in ipairs({"execute", "exit", "getenv", "remove", "rename", "tmpname"}) do
      out["os." .. f] = os[f] == nil and "absent" or "present"
    end
    out["string.dump"] = string.dump == nil and "absent" or "present"
    try("bytecode", function() return assert(load(string.char(27) .. "Lua")) end)
    try("load_text", function() return assert(load("return 1"))() end)
    try("gc_meta", function() setmetatable({}, {__gc = function() end}) end)
    out.string_mt = tostring(getmetatable(""))
    try("string_mt_poison", function() getmetatable("").__index = {} end)
    try("memory", function() local t = {} for i = 1, 1e7 do t[i] = string.rep("x", 100) .. i end end)
    try("rep_bomb", function() return string.rep("x", 1 << 30) end)
    try("recursion", function() local function f() return 1 + f() end return f() end)
    polaris.command("probe", function() return 0, "ok", out end)
  ]]

  it("removes dangerous globals, refuses bytecode and __gc, seals the string metatable, and bounds memory", function()
    local d = H.start_daemon({plugins = {
      probe = {lua = probe, manifest = {plugin_type = "Command", sandbox = {memory_limit = 4 * 1024 * 1024}}},
    }})
    local r = H.app(d):call("host", "probe")
    assert.are.equal(0, r.code, r.msg)
    local o = r.data
    for _, g in ipairs({"io", "debug", "package.loadlib", "package.searchpath", "package.searchers",
                        "dofile", "loadfile", "os.execute",
                        "os.exit", "os.getenv", "os.remove", "os.rename", "os.tmpname", "string.dump"}) do
      assert.are.equal("absent", o[g], g)
    end
    assert.are.equal("allowed", o.require_helper)
    assert.are.equal("allowed", o.require_same)
    assert.is_truthy(o.require_bad1:find("not found", 1, true), o.require_bad1)
    assert.is_truthy(o.require_bad2:find("not found", 1, true), o.require_bad2)
    for i = 3, 8 do
      assert.is_truthy(o["require_bad" .. i]:find("usage: require", 1, true), o["require_bad" .. i])
    end
    assert.is_truthy(o.bytecode:find("binary chunks are not allowed", 1, true), o.bytecode)
    assert.are.equal("allowed", o.load_text)
    assert.is_truthy(o.gc_meta:find("__gc is not allowed", 1, true))
    assert.are.equal("false", o.string_mt)
    assert.is_truthy(o.memory:find("not enough memory", 1, true), o.memory)
    assert.is_truthy(o.rep_bomb:find("not enough memory", 1, true) or o.rep_bomb:find("too large", 1, true), o.rep_bomb)
    -- deep recursion ends at Lua's stack limit or, under a small memory_limit, at that
    assert.is_truthy(o.recursion:find("stack overflow", 1, true) or
                     o.recursion:find("not enough memory", 1, true), o.recursion)
    local st = plugin(d, "probe")
    assert.is_true(st.memory_bytes <= 4 * 1024 * 1024)
    stop_ok(d)
  end)

  for name, body in pairs({
    ["a plain loop"] = "while true do end",
    ["a coroutine"] = "local co = coroutine.wrap(function() while true do end end) co()",
    ["pcall swallowing the error"] = "while true do pcall(function() while true do end end) end",
    ["coroutine.resume swallowing the error"] =
      "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
    ["a coroutine created before the loop"] =
      "local co = coroutine.create(function() while true do end end) for _ = 1, 10 do end coroutine.resume(co) while true do end",
    ["an xpcall handler"] = "xpcall(function() error('x') end, function() while true do end end) while true do end",
    ["a gsub callback"] = "string.gsub(string.rep('a', 100), 'a', function() while true do end end)",
    ["a sort comparator"] = "local t = {} for i = 1, 100 do t[i] = i end table.sort(t, function(a, b) while true do end end)",
  }) do
    it("stops CPU loops in " .. name, function()
      local d = H.start_daemon({plugins = {
        hog = {lua = "polaris.command('hog', function() " .. body .. " end)",
               manifest = {plugin_type = "Command", sandbox = {cpu_time_limit_ms = 100}}},
      }})
      local app = H.app(d)
      local r = app:call("host", "hog", {}, 10000, 10000)
      assert.are.equal(-6, r.code)
      assert.is_truthy(r.msg:find("cpu budget exceeded", 1, true), r.msg)
      -- it ran its budget, and status says so (accounted per batch); the
      -- budget is kept to within a tick of the worker's CPU timer (1 ms, or
      -- the kernel's 1/HZ: 4 ms at HZ=250)
      H.wait_for("the hog's CPU time in status", function() return plugin(d, "hog").cpu_ms >= 90 end)
      assert.are.equal(0, app:call("host", "ping").code)    -- the daemon is fine
      stop_ok(d)
    end)
  end

  it("runs a failed call's __close under the budget, and reuses coroutines safely", function()
    local d = H.start_daemon({plugins = {
      closer = {lua = [[
        local kept
        polaris.on_event(5, function(ev)
          local x <close> = setmetatable({}, {__close = function() while true do end end})
          error("boom")
        end)
        polaris.on_event(6, function(ev) coroutine.yield() end)     -- not a wait of ours
        polaris.on_event(7, function(ev)
          kept = kept or coroutine.running()                         -- a coroutine kept past its call
          ev.params.resumed = tostring(select(2, coroutine.resume(kept)))
          ev.params.n = (ev.params.n or 0) + 1
          return ev
        end)
      ]], manifest = {sandbox = {cpu_time_limit_ms = 100}}},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event(H.event(5))
    local ev = g:event(5000)
    assert.are.equal("closer", ev.strategyError.plugin)
    assert.is_truthy(ev.strategyError.reason:find("boom", 1, true), ev.strategyError.reason)
    app:send_event(H.event(6))
    assert.is_truthy(g:event(5000).strategyError.reason:find("attempt to yield", 1, true))
    for _ = 1, 3 do
      app:send_event(H.event(7, {params = {}}))
      local e7 = g:event(5000)
      assert.is_nil(e7.strategyError)
      assert.are.equal(1, e7.params.n)
      assert.is_truthy(e7.params.resumed:find("cannot resume", 1, true), e7.params.resumed)
    end
    local st = plugin(d, "closer")
    assert.are.equal("Active", st.state)
    assert.is_true(st.errors >= 2)                 -- boom, and the __close stopped by the budget
    stop_ok(d)
  end)

  it("never runs an error object's __tostring in the host", function()
    local d = H.start_daemon({plugins = {
      trick = {lua = [[
        polaris.command("trick", function()
          error(setmetatable({}, {__tostring = function() while true do end end}))
        end)
      ]], manifest = {plugin_type = "Command"}},
    }})
    local r = H.app(d):call("host", "trick")
    assert.are.equal(-6, r.code)
    assert.is_truthy(r.msg:find("error object is a table value", 1, true), r.msg)
    stop_ok(d)
  end)
end)

describe("permissions", function()
  it("refuses to load a plugin asking for a permission the policy does not grant", function()
    local d = H.start_daemon({plugins = {
      netty = {lua = "", manifest = {permissions = {"NetworkAccess"}}},
      reader = {lua = [[polaris.command("vm", function() return 0, "ok", polaris.guest.status() end)]],
                manifest = {plugin_type = "Command", permissions = {"ReadVmState"}}},
      nosy = {lua = [[polaris.command("nosy", function() return 0, "ok", polaris.guest.status() end)]],
              manifest = {plugin_type = "Command"}},
    }})
    local st = plugin(d, "netty")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("NetworkAccess", 1, true))
    local app = H.app(d)
    local ok = app:call("host", "vm")
    assert.are.equal(0, ok.code)
    assert.is_false(ok.data.connected)
    local denied = app:call("host", "nosy")
    assert.are.equal(-6, denied.code)
    assert.is_truthy(denied.msg:find("permission denied: ReadVmState", 1, true), denied.msg)
    stop_ok(d)
  end)

  it("whitelist policy grants only what it lists", function()
    local d = H.start_daemon({
      config = {plugins = {policy = "whitelist", permissions = "ReadVmState"}},
      plugins = {
        fs = {lua = "", manifest = {permissions = {"FileSystemAccess"}}},
        vm = {lua = "", manifest = {permissions = {"ReadVmState"}}},
      }})
    assert.are.equal("Error", plugin(d, "fs").state)
    assert.are.equal("Active", plugin(d, "vm").state)
    stop_ok(d)
  end)
end)

describe("messaging and the shared store", function()
  it("delivers send and broadcast to on_message, and emit feeds the pipeline", function()
    local d = H.start_daemon({plugins = {
      sender = {lua = [[
        polaris.command("go", function(args)
          polaris.send("receiver", "hello", {n = args.n})
          polaris.broadcast("all", {x = 1})
          return 0
        end)
      ]], manifest = {plugin_type = "Command"}},
      receiver = {lua = [[
        local P = {}
        function P.on_message(from, topic, data)
          if topic == "hello" then
            polaris.emit({eventId = 555, params = {from = from, n = data.n}})
          end
        end
        return P
      ]]},
    }})
    local g = H.guest_connected(d)
    assert.are.equal(0, H.app(d):call("host", "go", {n = 7}).code)
    local ev = g:event()
    assert.are.equal(555, ev.eventId)
    assert.are.equal("sender", ev.params.from)
    assert.are.equal(7, ev.params.n)
    H.wait_for("both messages", function() return plugin(d, "receiver").messages == 2 end)
    stop_ok(d)
  end)

  it("keeps the shared store across a reload", function()
    local d = H.start_daemon({plugins = {
      store = {lua = [[
        polaris.command("put", function(a) polaris.shared.set("k", a) return 0 end)
        polaris.command("get", function() return 0, "ok", {v = polaris.shared.get("k")} end)
      ]], manifest = {plugin_type = "Command"}},
    }})
    local app = H.app(d)
    assert.are.equal(0, app:call("host", "put", {deep = {1, 2, 3}}).code)
    local f = io.open(d.plugin_dir .. "/store.lua", "a")
    f:write("\n-- edited\n")
    f:close()
    local r = app:call("host", "reload")
    assert.are.equal(0, r.code)
    local got = app:call("host", "get")
    assert.are.same({1, 2, 3}, got.data.v.deep)
    stop_ok(d)
  end)
end)

describe("hot reload", function()
  it("replaces a changed plugin, keeps the old one when the new one fails, reports each", function()
    local d = H.start_daemon({plugins = {
      ver = {lua = [[polaris.command("ver", function() return 0, "v1" end)]], manifest = {plugin_type = "Command"}},
    }})
    local app = H.app(d)
    assert.are.equal("v1", app:call("host", "ver").msg)
    H.write_plugins(d.plugin_dir, {ver = {lua = [[polaris.command("ver", function() return 0, "v2" end)]],
                                          manifest = {plugin_type = "Command", version = "1.1.0"}}})
    local r = app:call("host", "reload")
    assert.are.equal(0, r.code)
    assert.are.equal(0, r.data.failed)
    assert.are.equal("v2", app:call("host", "ver").msg)
    H.write_plugins(d.plugin_dir, {ver = {lua = "this is not lua", manifest = {plugin_type = "Command", version = "1.2.0"}}})
    r = app:call("host", "reload")
    assert.are.equal(1, r.data.failed)
    local outcome
    for _, p in ipairs(r.data.plugins) do if p.id == "ver" then outcome = p end end
    assert.are.equal("kept", outcome.outcome)
    assert.are.equal("v2", app:call("host", "ver").msg)       -- still the old one
    local st = plugin(d, "ver")
    assert.are.equal("Active", st.state)
    assert.are.equal("1.1.0", st.version)
    assert.is_truthy(st.last_error:find("reload failed", 1, true))
    stop_ok(d)
  end)

  it("loses and duplicates no event across reloads under a continuous stream", function()
    local d = H.start_daemon({plugins = {
      counter = {lua = [[polaris.on_event("*", function(ev) ev.params.v = 1; return ev end)]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local N, sent = 3000, 0
    local seen, got = {}, 0
    local function drain(limit)
      while got < limit do
        local ev = g:event(50)
        if not ev then return end
        assert.is_nil(seen[ev.eventId], "duplicate " .. tostring(ev.eventId))
        seen[ev.eventId] = true
        got = got + 1
      end
    end
    for round = 1, 10 do
      for _ = 1, N / 10 do
        sent = sent + 1
        app:send_event(H.event(sent))
      end
      H.write_plugins(d.plugin_dir, {counter = {lua = ([[polaris.on_event("*", function(ev) ev.params.v = %d; return ev end)]]):format(round + 1)}})
      d:signal("HUP")
      drain(sent - 200)
    end
    local deadline = ptest.now_ms() + 20000
    while got < N and ptest.now_ms() < deadline do drain(N) end
    assert.are.equal(N, got)
    for i = 1, N do assert.is_true(seen[i], "lost " .. i) end
    stop_ok(d)
  end)
end)

describe("--check", function()
  it("names every broken plugin and exits non-zero (2: the config itself is fine)", function()
    local dir = ptest.mkdtemp()
    H.write_plugins(dir, {
      good = {lua = "return {}"},
      syntax = {lua = "return {"},
      needs = {lua = "", manifest = {dependencies = {ghost = "^1.0.0"}}},
    })
    local out = dir .. "/out"
    local pid = ptest.spawn({H.POLARISD, "--check", "--plugins", dir}, {stdout = out, stderr = out})
    local how, code = ptest.wait(pid, 10000)
    local text = H.read_file(out)
    assert.are.same({"exited", 2}, {how, code}, text)
    assert.is_truthy(text:find("FAILED: 2 plugins failed", 1, true), text)
    assert.is_truthy(text:find("missing dependency 'ghost'", 1, true), text)
    assert.is_truthy(text:find("syntax.lua", 1, true), text)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

describe("waiting calls", function()
  it("polaris.sleep parks a strategy without a worker; the plugin's events keep their order", function()
    local d = H.start_daemon({config = {daemon = {workers = 1}}, plugins = {
      slowpoke = {lua = [[
        polaris.on_event(1, function(ev) polaris.sleep(300); ev.params.slept = true; return ev end)
        polaris.on_event(2, function(ev) ev.params.after = true; return ev end)
      ]]},
      quick = {lua = [[polaris.command("quick", function() return 0, "fast" end)]],
               manifest = {plugin_type = "Command"}},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local t0 = ptest.now_ms()
    app:send_event(H.event(1))
    app:send_event(H.event(2))
    -- one worker, and it is free: another plugin answers at once
    local r = app:call("host", "quick")
    assert.are.equal("fast", r.msg)
    assert.is_true(ptest.now_ms() - t0 < 250, "a sleeping plugin held the worker")
    local a = g:event(3000)
    assert.are.equal(1, a.eventId)
    assert.is_true(a.params.slept)
    assert.is_true(ptest.now_ms() - t0 >= 280)
    local b = g:event(3000)
    assert.are.equal(2, b.eventId)                  -- held behind event 1
    assert.is_true(b.params.after)
    stop_ok(d)
  end)

  it("polaris.exec runs argv with a timeout and captures output", function()
    local d = H.start_daemon({plugins = {
      runner = {lua = [[
        polaris.command("run", function(args)
          local r = polaris.exec(args.argv, {timeout = args.timeout})
          return 0, "ran", r
        end)
      ]], manifest = {plugin_type = "Command", permissions = {"ExecuteSyscall"}}},
      noperm = {lua = [[polaris.command("sneak", function() return 0, "x", polaris.exec({"/bin/true"}) end)]],
                manifest = {plugin_type = "Command"}},
    }})
    local app = H.app(d)
    local r = app:call("host", "run", {argv = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}})
    assert.are.equal(0, r.code, r.msg)
    assert.are.equal(3, r.data.code)
    assert.are.equal("out\n", r.data.stdout)
    assert.are.equal("err\n", r.data.stderr)
    assert.is_false(r.data.timed_out)
    local t0 = ptest.now_ms()
    local slow = app:call("host", "run", {argv = {"sleep", "10"}, timeout = 200}, 5000)
    assert.is_true(slow.data.timed_out)
    assert.are.equal(9, slow.data.signal)
    assert.is_true(ptest.now_ms() - t0 < 3000)
    local missing = app:call("host", "run", {argv = {"/nonexistent/tool"}})
    assert.are.equal(-6, missing.code)
    assert.is_truthy(missing.msg:find("cannot run /nonexistent/tool", 1, true), missing.msg)
    local denied = app:call("host", "sneak")
    assert.are.equal(-6, denied.code)
    assert.is_truthy(denied.msg:find("permission denied: ExecuteSyscall", 1, true), denied.msg)
    stop_ok(d)
  end)

  it("polaris.every and polaris.timer fire until cancelled, and stop with their plugin", function()
    local d = H.start_daemon({plugins = {
      ticker = {lua = [[
        local n = 0
        local id
        id = polaris.every(50, function()
          n = n + 1
          polaris.emit({eventId = 4000 + n, params = {n = n}})
          if n == 3 then polaris.cancel(id) end
        end)
        polaris.timer(10, function() polaris.emit({eventId = 3999, params = {}}) end)
      ]]},
    }})
    local g = H.guest_connected(d)
    local ids = {}
    for _ = 1, 4 do ids[#ids + 1] = g:event(3000).eventId end
    table.sort(ids)
    assert.are.same({3999, 4001, 4002, 4003}, ids)
    assert.is_nil(g:event(300))                    -- cancelled after three
    stop_ok(d)
  end)

  it("cannot wait while loading, and a stopping daemon ends waits so events still go out", function()
    local d = H.start_daemon({config = {daemon = {shutdown_grace_ms = 5000}}, plugins = {
      eager = {lua = [[local ok, e = pcall(polaris.sleep, 1); polaris.shared.set("load_wait", tostring(e))]]},
      dreamer = {lua = [[polaris.on_event(77, function(ev) polaris.sleep(60000); return ev end)]]},
      reader = {lua = [[polaris.command("lw", function() return 0, polaris.shared.get("load_wait") end)]],
                manifest = {plugin_type = "Command"}},
    }})
    assert.is_truthy(H.app(d):call("host", "lw").msg:find("can only wait inside a handler", 1, true))
    local g = H.guest_connected(d)
    H.app(d):send_event(H.event(77))
    H.wait_for("the strategy to park", function() return plugin(d, "dreamer").events == 1 end)
    d:signal("TERM")
    local ev = g:event(5000)
    assert.are.equal(77, ev.eventId)
    assert.is_truthy(ev.strategyError.reason:find("stopping", 1, true))
    assert.are.same({"exited", 0}, {d:stop()})
  end)
end)

describe("polaris.guest.request", function()
  it("asks the guest and resumes with its answer; -3 without a guest; needs WriteVmState", function()
    local d = H.start_daemon({plugins = {
      asker = {lua = [[
        polaris.command("ask", function(args)
          local code, msg, data = polaris.guest.request("capture_log", {n = args.n}, 2000)
          return 0, msg, {guest_code = code, data = data}
        end)
      ]], manifest = {plugin_type = "Command", permissions = {"WriteVmState"}}},
      rude = {lua = [[polaris.command("rude", function() return 0, "x", {polaris.guest.request("x")} end)]],
              manifest = {plugin_type = "Command"}},
    }})
    local app = H.app(d)
    local absent = app:call("host", "ask", {n = 1})
    assert.are.equal(0, absent.code)
    assert.are.equal(-3, absent.data.guest_code)
    local g = H.guest_connected(d)
    local id = app:request("host", "ask", {n = 2}, 5000)
    local f = assert(g:expect(codec.PLP_CMD_REQ_H2G))
    local body = cjson.decode(f.payload)
    assert.are.equal("capture_log", body.action)
    assert.are.equal(2, body.args.n)
    g:send_plp(codec.PLP_CMD_RESP_G2H, f.seq, cjson.encode({reqId = f.seq, code = 0, msg = "captured",
                                                            data = {path = "/data/x.tgz"}}))
    local r = app:response(id)
    assert.are.equal(0, r.code)
    assert.are.equal("captured", r.msg)
    assert.are.equal(0, r.data.guest_code)
    assert.are.equal("/data/x.tgz", r.data.data.path)
    local denied = app:call("host", "rude")
    assert.is_truthy(denied.msg:find("permission denied: WriteVmState", 1, true), denied.msg)
    stop_ok(d)
  end)
end)

describe("polaris.fs", function()
  it("stays inside allowed_paths: no .. or symlink escape, never under forbidden_paths", function()
    local root = ptest.mkdtemp()
    os.execute(table.concat({
      "mkdir -p '" .. root .. "/allowed/secret' '" .. root .. "/outside'",
      "echo hidden > '" .. root .. "/outside/target'",
      "echo top > '" .. root .. "/allowed/secret/key'",
      "ln -s '" .. root .. "/outside/target' '" .. root .. "/allowed/link'",
      "ln -s ../outside '" .. root .. "/allowed/dirlink'",
    }, " && "))
    local A = root .. "/allowed"
    local d = H.start_daemon({plugins = {
      files = {lua = [[
        local function try(f, ...) local r = table.pack(pcall(f, ...)) return {ok = r[1], a = r[2], b = r[3]} end
        polaris.command("fs", function(args)
          local A = args.root
          local out = {}
          out.write = try(polaris.fs.write, A .. "/note.txt", "hello")
          out.append = try(polaris.fs.write, A .. "/note.txt", " world", {append = true})
          out.read = try(polaris.fs.read, A .. "/note.txt")
          out.stat = try(polaris.fs.stat, A .. "/note.txt")
          out.list = try(polaris.fs.list, A)
          out.dotdot = try(polaris.fs.read, A .. "/../outside/target")
          out.symlink = try(polaris.fs.read, A .. "/link")
          out.dirlink = try(polaris.fs.read, A .. "/dirlink/target")
          out.forbidden = try(polaris.fs.read, A .. "/secret/key")
          out.elsewhere = try(polaris.fs.read, "/etc/hostname")
          out.relative = try(polaris.fs.read, "note.txt")
          out.remove = try(polaris.fs.remove, A .. "/note.txt")
          out.gone = try(polaris.fs.stat, A .. "/note.txt")
          return 0, "ok", out
        end)
      ]], manifest = {plugin_type = "Command", permissions = {"FileSystemAccess"},
                      sandbox = {allowed_paths = {A}, forbidden_paths = {A .. "/secret"}}}},
      nofs = {lua = [[polaris.command("nofs", function() return 0, "x", {polaris.fs.read("/etc/hostname")} end)]],
              manifest = {plugin_type = "Command"}},
    }})
    local app = H.app(d)
    local r = app:call("host", "fs", {root = A})
    assert.are.equal(0, r.code, r.msg)
    local o = r.data
    assert.is_true(o.write.a)
    assert.are.equal("hello world", o.read.a)
    assert.are.equal("file", o.stat.a.type)
    assert.are.equal(11, o.stat.a.size)
    table.sort(o.list.a)
    assert.are.same({"dirlink", "link", "note.txt", "secret"}, o.list.a)
    for _, k in ipairs({"dotdot", "symlink", "dirlink", "forbidden", "elsewhere", "relative"}) do
      assert.is_true(o[k].ok, k)               -- returned, did not raise
      assert.is_nil(o[k].a, k)
      assert.is_truthy(o[k].b:find("permission denied", 1, true), k .. ": " .. tostring(o[k].b))
    end
    assert.is_true(o.remove.a)
    assert.is_nil(o.gone.a)
    local denied = app:call("host", "nofs")
    assert.is_truthy(denied.msg:find("permission denied: FileSystemAccess", 1, true), denied.msg)
    assert.are.equal("hidden\n", H.read_file(root .. "/outside/target"))
    stop_ok(d)
    os.execute("rm -rf '" .. root .. "'")
  end)
end)

describe("a manifest's limits", function()
  it("only lower the config's; raising memory takes the operator or MemoryAllocation, up to memory_limit_max", function()
    local M = 1024 * 1024
    local cmd = [[polaris.command(polaris.id, function() local t = os.clock() while os.clock() - t < 0.5 do end end)]]
    local d = H.start_daemon({plugins = {
      greedy = {lua = cmd, manifest = {plugin_type = "Command", sandbox = {memory_limit = 4096 * M}}},
      lower = {lua = cmd, manifest = {plugin_type = "Command", sandbox = {memory_limit = 4 * M}}},
      granted = {lua = cmd, manifest = {plugin_type = "Command", permissions = {"MemoryAllocation"},
                                        sandbox = {memory_limit = 64 * M}}},
      capped = {lua = cmd, manifest = {plugin_type = "Command", permissions = {"MemoryAllocation"},
                                       sandbox = {memory_limit = 4096 * M}}},
      operator = {lua = cmd, manifest = {plugin_type = "Command"}},
      slow = {lua = cmd, manifest = {plugin_type = "Command", sandbox = {cpu_time_limit_ms = 60000}}},
    }, config = {plugins = {memory_limit = "16M", memory_limit_max = "128M", cpu_time_limit_ms = 100},
                 ["plugin.operator"] = {memory_limit = "32M"}}})
    local st = d:status()
    local want = {greedy = 16 * M, lower = 4 * M, granted = 64 * M, capped = 128 * M, operator = 32 * M}
    for id, limit in pairs(want) do
      assert.are.equal(limit, H.plugin_by_id(st, id).memory_limit, id)
    end
    local r = H.app(d):call("host", "slow", {}, 10000, 15000)
    assert.are.equal(-6, r.code)
    assert.is_truthy(r.msg:find("cpu budget exceeded (100 ms)", 1, true), r.msg)
    stop_ok(d)
  end)
end)

describe("errors raised for a plugin", function()
  -- the strategy's budget error comes first: a coroutine a hook's error
  -- stopped has its hooks off, and used to be reused, so the "spin"
  -- command after it ran forever
  it("name the plugin's file and line, not the runtime's (cpu budget, permissions)", function()
    local d = H.start_daemon({plugins = {
      where = {lua = [[
        polaris.command("spin", function()
          while true do end
        end)
        polaris.command("pattern", function()
          return 0, "x", {string.find(("a"):rep(40), ("a*"):rep(40) .. "b")}
        end)
        polaris.command("exec", function()
          return 0, "x", polaris.exec({"/bin/true"})
        end)
        polaris.command("fs", function()
          return 0, "x", polaris.fs.read("/etc/hostname")
        end)
        polaris.command("guest", function()
          return 0, "x", {polaris.guest.request("ping", {}, 100)}
        end)
        polaris.on_event(9191, function(ev)
          while true do end
        end)
      ]], manifest = {plugin_type = "Strategy", sandbox = {cpu_time_limit_ms = 100}}},
    }, config = {plugins = {max_consecutive_errors = 100}}})
    local app = H.app(d)
    local g = H.guest_connected(d)
    app:send_event(H.event(9191))
    local ev = assert(g:event(10000))
    local reason = tostring(ev.strategyError and ev.strategyError.reason)
    assert.is_truthy(reason:find("where.lua:17: cpu budget exceeded", 1, true), reason)
    local want = {spin = "where.lua:2: cpu budget exceeded", pattern = "where.lua:5: cpu budget exceeded",
                  exec = "where.lua:8: permission denied: ExecuteSyscall",
                  fs = "where.lua:11: permission denied: FileSystemAccess",
                  guest = "where.lua:14: permission denied: WriteVmState"}
    for cmd, text in pairs(want) do
      local r = app:call("host", cmd, {}, 10000, 15000)
      assert.are.equal(-6, r.code, cmd)
      assert.is_truthy(r.msg:find(text, 1, true), cmd .. ": " .. tostring(r.msg))
      assert.is_nil(r.msg:find("polaris:", 1, true), cmd .. ": " .. tostring(r.msg))
    end
    stop_ok(d)
  end)
end)

describe("polaris.fs under a forbidden path", function()
  it("answers permission denied before any side effect: nothing truncated, created or archived", function()
    local root = ptest.mkdtemp()
    os.execute("mkdir -p '" .. root .. "/allowed/secret' && echo keep > '" .. root .. "/allowed/secret/key' && " ..
               "echo keep > '" .. root .. "/allowed/nope'")
    local A = root .. "/allowed"
    local d = H.start_daemon({plugins = {
      files = {lua = [[
        local function try(f, ...) local r = table.pack(pcall(f, ...)) return {ok = r[1], a = r[2], b = r[3]} end
        polaris.command("fs", function(args)
          local A = args.root
          return 0, "ok", {
            truncate = try(polaris.fs.write, A .. "/secret/key", "gone"),
            append = try(polaris.fs.write, A .. "/secret/key", "more", {append = true}),
            exact = try(polaris.fs.write, A .. "/nope", "gone"),
            create = try(polaris.fs.write, A .. "/secret/new", "x"),
            mkdir = try(polaris.fs.mkdir, A .. "/secret/dir"),
            mkdir_exact = try(polaris.fs.mkdir, A .. "/hidden"),
            archive = try(polaris.fs.archive, A .. "/secret/a.tar.gz", {{name = "a", data = "b"}}),
            archive_exact = try(polaris.fs.archive, A .. "/hidden", {{name = "a", data = "b"}}),
            allowed = try(polaris.fs.write, A .. "/fine", "yes"),
            rewrite = try(polaris.fs.write, A .. "/fine", "no"),
          }
        end)
      ]], manifest = {plugin_type = "Command", permissions = {"FileSystemAccess"},
                      sandbox = {allowed_paths = {A},
                                 forbidden_paths = {A .. "/secret", A .. "/nope", A .. "/hidden"}}}},
    }})
    local r = H.app(d):call("host", "fs", {root = A})
    assert.are.equal(0, r.code, r.msg)
    for _, k in ipairs({"truncate", "append", "exact", "create", "mkdir", "mkdir_exact", "archive", "archive_exact"}) do
      local o = r.data[k]
      assert.is_true(o.ok, k)
      assert.is_nil(o.a, k)
      assert.is_truthy(tostring(o.b):find("permission denied", 1, true), k .. ": " .. tostring(o.b))
    end
    assert.are.equal("keep\n", H.read_file(A .. "/secret/key"))
    assert.are.equal("keep\n", H.read_file(A .. "/nope"))
    local _, _, listing = H.run({"/bin/ls", "-A", A .. "/secret"})
    assert.are.equal("key\n", listing)
    assert.is_nil(io.open(A .. "/hidden"))
    assert.is_true(r.data.allowed.a)
    assert.is_true(r.data.rewrite.a)
    assert.are.equal("no", H.read_file(A .. "/fine"))
    stop_ok(d)
    os.execute("rm -rf '" .. root .. "'")
  end)
end)

describe("plugin settings and unloading", function()
  it("gives each plugin its [plugin.<id>] settings, and a changed setting reloads it", function()
    local d = H.start_daemon({
      config = {["plugin.knobs"] = {limit = 5, name = "alpha", verbose = "true"}},
      plugins = {knobs = {lua = [[polaris.command("knobs", function() return 0, "ok", polaris.config end)]],
                          manifest = {plugin_type = "Command"}}},
    })
    local app = H.app(d)
    local r = app:call("host", "knobs")
    assert.are.same({limit = 5, name = "alpha", verbose = true}, r.data)
    local f = io.open(d.config_file, "a")
    f:write("\n[plugin.knobs]\nextra = 1\n")
    f:close()
    local rel = app:call("host", "reload")
    local outcome
    for _, p in ipairs(rel.data.plugins) do if p.id == "knobs" then outcome = p.outcome end end
    assert.are.equal("reloaded", outcome)
    assert.are.equal(1, app:call("host", "knobs").data.extra)
    stop_ok(d)
  end)

  it("unloads one plugin at runtime; the next reload brings it back", function()
    local d = H.start_daemon({plugins = {
      temp = {lua = [[
        local P = {}
        polaris.command("temp", function() return 0 end)
        function P.stop() polaris.log.info("temp stopping") end
        return P
      ]], manifest = {plugin_type = "Command"}},
    }})
    local how, code = ptest.wait(ptest.spawn({H.POLARISCTL, "--socket", d.ipc, "unload", "temp"},
                                             {stdout = "/dev/null", stderr = "/dev/null"}), 5000)
    assert.are.same({"exited", 0}, {how, code})
    local app = H.app(d)
    assert.are.equal(-1, app:call("host", "temp").code)
    H.wait_for("stop() to run", function() return d:log_text():find("temp stopping", 1, true) end)
    assert.is_nil(plugin(d, "temp"))
    H.wait_for("status to show it Unloaded", function()
      local p = H.leaving_by_id(d:status(), "temp")
      return p and p.state == "Unloaded"
    end)
    assert.are.equal(-4, app:call("host", "unload", {id = "nope"}).code)
    assert.are.equal(0, app:call("host", "reload").code)
    assert.are.equal(0, app:call("host", "temp").code)
    stop_ok(d)
  end)
end)

describe("the router plugin", function()
  it("drops, forwards past strategies, and picks strategies and their order by eventId", function()
    local d = H.start_daemon({
      config = {["plugin.router"] = {drop = "13, 14", forward = "21", ["route.31"] = "second, first"}},
      plugins = {
        first = {lua = [[polaris.on_event("*", function(ev) ev.params.trail = (ev.params.trail or "") .. "1"; return ev end)]]},
        second = {lua = [[polaris.on_event("*", function(ev) ev.params.trail = (ev.params.trail or "") .. "2"; return ev end)]]},
      }})
    assert.are.equal("Active", plugin(d, "router").state)
    local g = H.guest_connected(d)
    local app = H.app(d)
    for _, id in ipairs({13, 21, 31, 40, 14}) do app:send_event(H.event(id)) end
    local got = {}
    for _ = 1, 3 do local ev = g:event(); got[ev.eventId] = ev end
    assert.is_nil(g:event(200))
    assert.is_nil(got[21].params.trail)            -- forwarded past strategies
    assert.are.equal("21", got[31].params.trail)    -- only the listed ones, in that order
    assert.are.equal("12", got[40].params.trail)    -- no rule: all, in load order
    assert.are.equal(2, d:status().core.events_dropped_by_router)
    stop_ok(d)
  end)
end)

describe("backpressure through strategies", function()
  it("slow strategies pause the apps instead of flooding the outbound buffer", function()
    local d = H.start_daemon({
      config = {daemon = {core_queue_max = 64}},
      plugins = {slow = {lua = [[
        polaris.on_event("*", function(ev) local x = 0 for i = 1, 20000 do x = x + i end ev.params.x = x return ev end)
      ]]}}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local frames = {}
    for i = 1, 3000 do frames[i] = codec.lsp_encode(codec.LSP_EVENT_REPORT, 0, cjson.encode(H.event(i))) end
    assert(app:send_raw(table.concat(frames)))
    for i = 1, 3000 do assert.are.equal(i, g:event(10000).eventId) end
    local st = d:status()
    assert.are.equal(0, st.guest.dropped)
    -- before events in strategies counted against core_queue_max, the core
    -- drained everything into the mailbox and the apps were never paused
    assert.is_true(st.ipc.backpressure_pauses > 0)
    assert.are.equal(0, st.core_queue.in_strategies)
    stop_ok(d)
  end)
end)
