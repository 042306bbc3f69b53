-- isolation_spec.lua - plugins with isolation "process" (issue 10): the same
-- plugin gives the same results in both modes; a plugin host killed by any
-- signal under a stream loses no event, answers what it held, and comes
-- back; a host that keeps crashing stays down after the limit; hosts are
-- confined; an idle host is stopped and started again on demand; a host
-- that breaks the channel protocol is ended. (The whole plugins and attacks
-- specs also run with every plugin out of process: see tools/run-tests.sh.)
local H = require "helpers"
local cjson, ptest = H.cjson, H.ptest

after_each(function() H.stop_all() end)

local HOST = H.BUILD .. "/polaris-plugin-host"

local function plugin(d, id) return H.plugin_by_id(d:status(), id) end

-- One plugin touching every part of the API that crosses the channel.
local WORKER = {
  lua = [[
    local seen = 0
    polaris.on_event(9001, function(ev)
      seen = seen + 1
      ev.params.seen = seen
      ev.params.shared = polaris.shared.get("k")
      ev.params.file = polaris.fs.read(polaris.config.file)
      ev.params.loadavg_keys = polaris.sys.loadavg() and "ok"
      ev.params.big = 18446744073709551615
      return ev
    end)
    polaris.on_event(9002, function() return false end)
    polaris.on_event(9003, function(ev) polaris.sleep(20); ev.params.slept = true; return ev end)
    polaris.command("work.echo", function(args, req)
      local ok, err = pcall(polaris.exec, {"/bin/true"})
      local bytes, sum = polaris.fs.read(polaris.config.file), 0
      for i = 1, #bytes do sum = sum + bytes:byte(i) * i end
      return 0, "done", {echo = args, origin = req.origin, exec = ok and "ran" or err, len = #bytes, sum = sum,
                         actions = #polaris.actions() > 0, json = require("polaris.semver") ~= nil}
    end)
    polaris.command("work.bad", function(args) return 0, "x", {f = function() end} end)
    local P = {}
    function P.init(ctx) polaris.shared.set("k", {from = ctx.id}) end
    function P.on_message(from, topic, data)
      polaris.emit({eventId = 9100, params = {from = from, topic = topic, data = data}})
    end
    return P
  ]],
  manifest = {plugin_type = "Strategy", permissions = {"FileSystemAccess", "ReadHostState"}},
}

local SENDER = {
  lua = [[polaris.command("poke", function() return 0, "sent", {n = polaris.send("worker", "hello", {x = 1})} end)]],
  manifest = {plugin_type = "Command"},
}

local function run_worker(mode, file)
  local d = H.start_daemon({
    plugins = {worker = WORKER, sender = SENDER},
    config = {["plugin.worker"] = {file = file, allowed_paths = file:match("^(.*)/")},
              plugins = {isolation = mode}},
  })
  local g = H.guest_connected(d)
  local app = H.app(d)
  local out = {}
  for i, id in ipairs({9001, 9002, 9003, 9001, 42}) do
    app:send_event(H.event(id, {params = {i = i}}))
  end
  for _ = 1, 4 do
    local ev = g:event(5000)
    ev.timestamp, ev.pid, ev.processName = nil, nil, nil
    out[#out + 1] = ev
  end
  table.sort(out, function(a, b) return a.params.i < b.params.i end)
  out.echo = app:call("host", "work.echo", {a = {1, 2}})
  out.bad = app:call("host", "work.bad", {})
  out.poke = app:call("host", "poke", {})
  local m = g:event(5000)
  m.timestamp, m.pid = nil, nil
  out.message = m
  local st = plugin(d, "worker")
  out.counts = {events = st.events, commands = st.commands, errors = st.errors, state = st.state}
  out.isolation = st.isolation
  -- the JSON texts differ only in key order (each Lua state hashes its own way)
  out.echo.raw, out.bad.raw, out.poke.raw = nil, nil, nil
  -- errors name the plugin's file, in this daemon's own temporary directory
  out.echo.data.exec = out.echo.data.exec:gsub("^[^\n]*/plugins/", "")
  H.stop_ok(d)
  return out
end

describe("a plugin out of process", function()
  it("gives the same results as in the daemon", function()
    local dir = ptest.mkdtemp()
    local file = dir .. "/data.txt"
    local f = assert(io.open(file, "w")); f:write("line one\n\0binary\255\n"); f:close()
    local inproc = run_worker("manifest", file)
    local oop = run_worker("process", file)
    assert.are.equal("in-process", inproc.isolation)
    assert.are.equal("process", oop.isolation)
    inproc.isolation, oop.isolation = nil, nil
    for _, ev in ipairs(oop) do
      assert.is_nil(ev.strategyError, cjson.encode(ev))
    end
    local bytes, sum = "line one\n\0binary\255\n", 0
    for i = 1, #bytes do sum = sum + bytes:byte(i) * i end
    assert.are.equal(#bytes, oop.echo.data.len)         -- bytes cross the channel, not JSON text
    assert.are.equal(sum, oop.echo.data.sum)
    assert.are.same({from = "worker"}, oop[1].params.shared)
    assert.is_true(oop[2].params.slept)
    assert.is_truthy(oop.echo.data.exec:find("^worker%.lua:%d+: permission denied: ExecuteSyscall"), oop.echo.data.exec)
    assert.are.equal(-6, oop.bad.code)
    assert.are.equal(1, oop.poke.data.n)
    assert.are.same({from = "sender", topic = "hello", data = {x = 1}}, oop.message.params)
    assert.are.same(inproc, oop)
  end)

  it("is supervised: killed by SEGV, KILL or ABRT under a stream, nothing is lost and it comes back", function()
    local d = H.start_daemon({
      plugins = {
        slow = {lua = [[polaris.on_event(9001, function(ev)
                          polaris.sleep(2); ev.params.tagged = true; return ev end)]],
                manifest = {plugin_type = "Strategy", isolation = "process"}},
        inproc = {lua = [[polaris.on_event(9002, function(ev) ev.params.mine = true; return ev end)]]},
      },
      config = {plugins = {host_restart_backoff_ms = 20}},
    })
    local g = H.guest_connected(d)
    local app = H.app(d)
    local sent, got, errors, tagged = 0, {}, {}, 0
    local function pump(ms)
      local deadline = ptest.now_ms() + ms
      while ptest.now_ms() < deadline do
        local ev = g:event(20)
        if ev then
          local n = ev.params.n
          assert.is_nil(got[n], "event " .. tostring(n) .. " arrived twice")
          got[n] = ev
          if ev.strategyError then errors[#errors + 1] = ev.strategyError.reason end
          if ev.params.tagged then tagged = tagged + 1 end
          if ev.eventId == 9002 then assert.is_true(ev.params.mine) end
        end
      end
    end
    local function send(k)
      for _ = 1, k do
        sent = sent + 1
        app:send_event(H.event(sent % 2 == 0 and 9002 or 9001, {params = {n = sent}}))
      end
    end
    local pids = {}
    for round, sig in ipairs({"SEGV", "KILL", "ABRT"}) do
      local st = H.wait_for("the host to be up", function()
        local p = plugin(d, "slow")
        return p.state == "Active" and p.host_state == "up" and p
      end)
      assert.is_nil(pids[st.host_pid], "the same host pid twice")
      pids[st.host_pid] = true
      send(200)
      pump(30)
      assert.is_true(ptest.kill(st.host_pid, sig))
      send(100)
      H.wait_for("the host's death to be seen", function()
        local p = plugin(d, "slow")
        return p.host_restarts == round and p
      end)
      local p = plugin(d, "slow")
      assert.are.equal("killed by SIG" .. sig, p.host_last_exit)
    end
    H.wait_for("the host to come back", function() return plugin(d, "slow").host_state == "up" end)
    send(100)
    H.wait_for("every event at the guest", function()
      pump(50)
      local n = 0
      for _ in pairs(got) do n = n + 1 end
      return n == sent
    end, 20000)
    for i = 1, sent do assert.is_table(got[i], "event " .. i .. " was lost") end
    assert.is_true(tagged > 0)
    for _, reason in ipairs(errors) do
      assert.is_truthy(reason:find("plugin host died: killed by SIG", 1, true), reason)
    end
    local st = d:status()
    assert.are.equal(3, st.plugin_hosts.deaths)
    assert.are.equal("Active", plugin(d, "slow").state)
    H.stop_ok(d)
  end)

  it("answers -6 for a command its host held when it died", function()
    local d = H.start_daemon({plugins = {
      stuck = {lua = [[polaris.command("stuck", function() polaris.sleep(60000); return 0 end)]],
               manifest = {plugin_type = "Command", isolation = "process"}},
    }, config = {plugins = {host_restart_backoff_ms = 20}}})
    local app = H.app(d)
    local id = app:request("host", "stuck", {}, 30000)
    local pid = H.wait_for("the command to reach the host", function()
      local p = plugin(d, "stuck")
      return p.commands == 1 and p.host_pid
    end)
    ptest.kill(pid, "SEGV")
    local r = assert(app:response(id, 5000))
    assert.are.equal(-6, r.code)
    assert.is_truthy(r.msg:find("plugin host died: killed by SIGSEGV", 1, true), r.msg)
    H.stop_ok(d)
  end)

  it("never gives a dead host's answer to its successor's call (call ids restart in every host)", function()
    local d = H.start_daemon({plugins = {
      reuse = {lua = [[
        polaris.command("first", function() polaris.sleep(1500); return 0, "first" end)
        polaris.command("second", function()
          local r = polaris.exec({"/bin/sh", "-c", "sleep 3; echo fresh"})
          return 0, type(r) == "table" and r.stdout or "resumed by someone else's answer"
        end)
      ]], manifest = {plugin_type = "Command", isolation = "process", permissions = {"ExecuteSyscall"}}},
    }, config = {plugins = {host_restart_backoff_ms = 20}}})
    local app = H.app(d)
    -- the first host parks call 1 (a sleep) and dies; the second parks its own call 1
    local id = app:request("host", "first", {}, 30000)
    local pid = H.wait_for("the sleep to be parked", function()
      local p = plugin(d, "reuse")
      return p.commands == 1 and p.host_pid
    end)
    ptest.kill(pid, "KILL")
    assert.are.equal(-6, assert(app:response(id, 5000)).code)
    H.wait_for("the restart", function()
      local p = plugin(d, "reuse")
      return p.host_state == "up" and p.host_pid ~= pid
    end)
    local r = app:call("host", "second", {}, 30000, 15000)
    assert.are.equal(0, r.code, r.msg)
    assert.are.equal("fresh\n", r.msg)
    assert.are.equal(1, d:status().plugin_hosts.stale_results)
    H.stop_ok(d)
  end)

  it("stops restarting a host that crashes on every start, and stays in Error", function()
    local dir = ptest.mkdtemp()
    local wrapper = dir .. "/host.sh"
    -- the first start is the real host; every restart crashes at once
    local f = assert(io.open(wrapper, "w"))
    f:write(("#!/bin/sh\nif mkdir %s/started 2>/dev/null; then exec %s/%s; fi\nkill -SEGV $$\n")
            :format(dir, os.getenv("PWD"), HOST))
    f:close()
    os.execute("chmod 755 " .. wrapper)
    local d = H.start_daemon({plugins = {
      flaky = {lua = [[polaris.on_event(9001, function(ev) ev.params.t = 1; return ev end)]],
               manifest = {plugin_type = "Strategy", isolation = "process"}},
    }, config = {plugins = {host_binary = wrapper, host_restart_max = 3, host_restart_backoff_ms = 10}}})
    local g = H.guest_connected(d)
    local st = plugin(d, "flaky")
    assert.are.equal("up", st.host_state)
    ptest.kill(st.host_pid, "KILL")
    st = H.wait_for("the restarts to give up", function()
      local p = plugin(d, "flaky")
      return type(p.last_error) == "string" and p.last_error:find("not restarted", 1, true) and p
    end)
    assert.are.equal("Error", st.state)
    assert.are.equal(3, st.host_restarts)
    assert.are.equal("dead", st.host_state)
    assert.is_truthy(st.last_error:find("killed by SIGSEGV", 1, true), st.last_error)
    -- it stays down; its events pass untouched
    H.app(d):send_event(H.event(9001))
    local ev = g:event()
    assert.is_nil(ev.params.t)
    assert.is_nil(ev.strategyError)
    assert.are.equal(3, plugin(d, "flaky").host_restarts)
    H.stop_ok(d)
  end)

  it("is stopped when idle and started again on demand", function()
    local d = H.start_daemon({plugins = {
      lazy = {lua = [[polaris.command("lazy", function() return 0, "awake" end)
                      polaris.on_event(9001, function(ev) ev.params.lazy = true; return ev end)]],
              manifest = {plugin_type = "Command", isolation = "process"}},
      ticking = {lua = [[polaris.every(100000, function() end)]],
                 manifest = {plugin_type = "Monitor", isolation = "process"}},
    }, config = {plugins = {host_idle_s = 1}}})
    local first = plugin(d, "lazy").host_pid
    H.wait_for("the idle host to stop", function() return plugin(d, "lazy").host_state == "idle" end, 10000)
    local st = plugin(d, "lazy")
    assert.are.equal("Active", st.state)
    assert.are.equal(-1, st.host_pid)
    assert.are.equal("up", plugin(d, "ticking").host_state)     -- a timer keeps it
    -- an event wakes it too, and goes through it, not around it
    local g = H.guest_connected(d)
    H.app(d):send_event(H.event(9001))
    local ev = g:event()
    assert.is_true(ev.params.lazy)
    assert.is_nil(ev.strategyError)
    H.wait_for("the idle host to stop again", function() return plugin(d, "lazy").host_state == "idle" end, 10000)
    local r = H.app(d):call("host", "lazy", {})
    assert.are.equal("awake", r.msg)
    st = plugin(d, "lazy")
    assert.are.equal("up", st.host_state)
    assert.are_not.equal(first, st.host_pid)
    assert.are.equal(0, st.host_restarts)                       -- idling is not dying
    H.stop_ok(d)
  end)

  it("bounds a host's CPU time even past the budget (RLIMIT_CPU)", function()
    -- the backstop behind the budget (string functions now count their
    -- steps, so a loop under a budget the operator set far too high
    -- stands for whatever C call might still run long)
    local d = H.start_daemon({plugins = {
      spin = {lua = [[polaris.command("spin", function() while true do end end)
                      polaris.command("alive", function() return 0, "yes" end)]],
              manifest = {plugin_type = "Command", isolation = "process"}},
    }, config = {plugins = {host_cpu_s = 1, host_restart_backoff_ms = 10, cpu_time_limit_ms = 600000}}})
    local app = H.app(d)
    local r = app:call("host", "spin", {}, 30000, 30000)
    assert.are.equal(-6, r.code)
    assert.is_truthy(r.msg:find("killed by SIGXCPU", 1, true), r.msg)
    H.wait_for("the host to come back", function() return plugin(d, "spin").host_state == "up" end)
    assert.are.equal("yes", app:call("host", "alive", {}).msg)
    assert.are.equal(0, app:call("host", "ping", {}).code)          -- the daemon never noticed
    H.stop_ok(d)
  end)

  it("is confined: no files, no sockets, no exec, no privileges", function()
    local how, code, out = H.run({HOST, "--confinement-test"})
    assert.are.equal("exited", how, out)
    assert.are.equal(0, code, out)
    for _, what in ipairs({"open /etc/passwd", "socket unix", "socket inet", "connect", "execve", "fork",
                           "kill 1", "setuid 0"}) do
      local line = out:match("\n?(" .. what:gsub("%p", "%%%0") .. "[^\n]*)")
      assert.is_truthy(line, what)
      assert.is_nil(line:find("ALLOWED", 1, true), line)
    end
    if ptest.getuid() == 0 then assert.is_truthy(out:find("uid 65534", 1, true), out) end
    assert.is_truthy(out:find("cpu timer: ok", 1, true), out)     -- the budget's tick still works
  end)

  it("reaches nothing through the API that its manifest does not grant", function()
    local d = H.start_daemon({plugins = {
      probe = {lua = [[
        polaris.command("probe", function()
          local r = {}
          local function try(name, f, ...) local ok, e = pcall(f, ...); r[name] = ok and "ALLOWED" or tostring(e) end
          try("fs", polaris.fs.read, "/etc/passwd")
          try("exec", polaris.exec, {"/bin/sh", "-c", "id"})
          try("guest", polaris.guest.request, "x", {})
          try("io", function() return io.open("/etc/passwd") end)
          try("os", function() return os.execute("id") end)
          try("require", require, "socket")
          try("load", load, "\27Lua")
          return 0, "done", r
        end)
      ]], manifest = {plugin_type = "Command", isolation = "process"}},
    }})
    local r = H.app(d):call("host", "probe", {})
    assert.are.equal(0, r.code)
    for name, v in pairs(r.data) do assert.are_not.equal("ALLOWED", v, name) end
    assert.is_truthy(r.data.fs:find("permission denied: FileSystemAccess", 1, true), r.data.fs)
    assert.is_truthy(r.data.exec:find("permission denied: ExecuteSyscall", 1, true), r.data.exec)
    H.stop_ok(d)
  end)

  it("ends a host that breaks the channel protocol; the daemon carries on", function()
    local dir = ptest.mkdtemp()
    local liar = dir .. "/liar.sh"
    local f = assert(io.open(liar, "w"))
    f:write("#!/bin/sh\nprintf '\\377\\377\\377\\177garbage' >&3\nsleep 5\n")
    f:close()
    os.execute("chmod 755 " .. liar)
    local d = H.start_daemon({plugins = {
      lied = {lua = "", manifest = {plugin_type = "Strategy", isolation = "process"}},
    }, config = {plugins = {host_binary = liar}}})
    local st = plugin(d, "lied")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("out of bounds", 1, true), st.last_error)
    assert.is_truthy(d:alive())
    assert.are.equal(0, H.app(d):call("host", "ping", {}).code)
    H.stop_ok(d)
  end)

  it("refuses to isolate a Router, and says why", function()
    local d = H.start_daemon({plugins = {
      myrouter = {lua = "", manifest = {plugin_type = "Router", isolation = "process"}},
    }})
    local st = plugin(d, "myrouter")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("cannot run out of process", 1, true), st.last_error)
    H.stop_ok(d)
  end)
end)
