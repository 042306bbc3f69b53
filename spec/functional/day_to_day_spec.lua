-- day_to_day_spec.lua - operating polarisd day to day (issue 23): the start
-- policy and --check, a daemon started outside its checkout, polarisctl as
-- an operator expects it, lifecycle states and status(), plugin folders with
-- their own modules, dependencies at run time, strategy results validated.
local H = require "helpers"
local cjson, ptest = H.cjson, H.ptest
local unix = require "socket.unix"

after_each(function() H.stop_all() end)

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function ctl(d, ...)
  local argv = {H.POLARISCTL}
  if d then argv[#argv + 1] = "--socket"; argv[#argv + 1] = d.ipc end
  for _, a in ipairs({...}) do argv[#argv + 1] = a end
  local how, code, out = H.run(argv, nil, 30000)
  assert.are.equal("exited", how, out)
  return code, out
end

local BROKEN = {lua = "error('broken on purpose')", manifest = {plugin_type = "Strategy"}}

describe("start policy", function()
  local dir
  before_each(function() dir = ptest.mkdtemp() end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("--check: 1 for an invalid config, 2 when only plugins fail; --config-only passes those", function()
    H.write_plugins(dir .. "/p", {broken = BROKEN, fine = {lua = "", manifest = {plugin_type = "Library"}}})
    write(dir .. "/good.conf", "[daemon]\nlog_level = info\n")
    write(dir .. "/bad.conf", "[nonsense]\n")
    local how, code, out = H.run({H.POLARISD, "--check", "-c", dir .. "/good.conf", "--plugins", dir .. "/p"})
    assert.are.same({"exited", 2}, {how, code}, out)
    assert.is_truthy(out:find("FAILED: 1 plugin failed", 1, true), out)
    how, code, out = H.run({H.POLARISD, "--check", "--config-only", "-c", dir .. "/good.conf",
                            "--plugins", dir .. "/p"})
    assert.are.same({"exited", 0}, {how, code}, out)
    for _, extra in ipairs({{}, {"--config-only"}}) do
      local argv = {H.POLARISD, "--check", "-c", dir .. "/bad.conf", "--plugins", dir .. "/p"}
      for _, a in ipairs(extra) do table.insert(argv, 3, a) end
      how, code, out = H.run(argv)
      assert.are.same({"exited", 1}, {how, code}, out)
      assert.is_truthy(out:find("the config is invalid", 1, true), out)
    end
  end)

  it("the unit's ExecStartPre lets a start with a broken plugin through, not a broken config", function()
    local unit = H.read_file("conf/polarisd.service")
    local pre = assert(unit:match("\nExecStartPre=([^\n]+)"))
    H.write_plugins(dir .. "/p", {broken = BROKEN})
    local function run_pre(conf_text)
      write(dir .. "/polarisd.conf", conf_text)
      local argv = {}
      for w in pre:gmatch("%S+") do
        w = w:gsub("^@SBINDIR@/polarisd$", H.POLARISD):gsub("^@SYSCONFDIR@/polaris/polarisd.conf$",
                                                             dir .. "/polarisd.conf")
        argv[#argv + 1] = w
      end
      local how, code, out = H.run(argv)
      assert.are.equal("exited", how, out)
      return code, out
    end
    local code, out = run_pre("[plugins]\npaths = " .. dir .. "/p\n")
    assert.are.equal(0, code, out)
    code, out = run_pre("[plugins]\npaths = " .. dir .. "/p\n[nonsense]\n")
    assert.are.equal(1, code, out)
  end)

  it("READY carries a STATUS line naming the plugins in Error", function()
    local path = dir .. "/notify"
    local s = unix.dgram()
    assert(s:bind(path))
    s:settimeout(5)
    local d = H.start_daemon({env = {NOTIFY_SOCKET = path}, plugins = {broken = BROKEN}})
    local msg = s:receive()
    assert.is_truthy(msg:match("^READY=1\nSTATUS=ready; 1 of %d+ plugins in Error: broken$"), msg)
    assert.are.equal("Error", H.plugin_by_id(d:status(), "broken").state)
    assert.is_truthy(d:log_text():find("plugin broken not loaded", 1, true))
    H.stop_ok(d)
    s:close()
  end)

  it("a missing plugin directory is a config error: --check fails, the daemon does not start", function()
    local how, code, out = H.run({H.POLARISD, "--check", "--plugins", "/nonexistent"})
    assert.are.same({"exited", 1}, {how, code}, out)
    assert.is_truthy(out:find("plugin path /nonexistent is not a directory", 1, true), out)
    how, code, out = H.run({H.POLARISD, "--foreground", "--ipc", dir .. "/s", "--guest", "unix:" .. dir .. "/g",
                            "--plugins", "/nonexistent"})
    assert.are.same({"exited", 1}, {how, code}, out)
  end)
end)

describe("a daemon that is not installed", function()
  local dir
  before_each(function() dir = ptest.mkdtemp() end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("finds its runtime beside its binary when started elsewhere", function()
    local d = H.start_daemon({cwd = dir, plugins = {
      tagger = {lua = [[
        local semver = require "polaris.semver"
        polaris.on_event(1, function(ev) ev.params.v = semver.tostring(semver.parse("1.2.3")) return ev end)]],
        manifest = {plugin_type = "Strategy"}},
    }})
    assert.are.equal("Active", H.plugin_by_id(d:status(), "tagger").state)
    assert.are.equal("Active", H.plugin_by_id(d:status(), "ping").state)
    H.stop_ok(d)
  end)

  it("refuses to start, saying why, when the runtime is not where the config says", function()
    write(dir .. "/c.conf", "[plugins]\nlua_dir = " .. dir .. "\n")
    local how, code, out = H.run({H.POLARISD, "--foreground", "-c", dir .. "/c.conf", "--ipc", dir .. "/s",
                                  "--guest", "unix:" .. dir .. "/g"})
    assert.are.same({"exited", 1}, {how, code}, out)
    assert.is_truthy(out:find("does not hold the runtime's Lua", 1, true), out)
    assert.is_nil(io.open(dir .. "/s"))
  end)

  it("plugin-test, run outside the checkout, fails on a plugin that does not load", function()
    H.write_plugins(dir .. "/p", {syntax = {lua = "polaris.on_event(", manifest = {plugin_type = "Strategy"}}})
    write(dir .. "/events.json", '[{"eventId": 1, "params": {}}]')
    local how, code, out = H.run({"/bin/sh", "-c", 'cd "$0" && exec "$@"', dir, H.abs(H.POLARISCTL),
                                  "plugin-test", dir .. "/p/syntax.lua", dir .. "/events.json"},
                                 {POLARISD = H.abs(H.POLARISD)}, 30000)
    assert.are.same({"exited", 1}, {how, code}, out)
    assert.is_truthy(out:find("syntax is Error", 1, true), out)
  end)
end)

describe("polarisctl as an operator expects", function()
  it("--version, and --help after any subcommand (which then does nothing)", function()
    local code, out = ctl(nil, "--version")
    assert.are.equal(0, code, out)
    assert.is_truthy(out:match("^polarisctl %d+%.%d+%.%d+ %(git [%w%-]+%)\n$"), out)
    for _, sub in ipairs({"status", "plugins", "reload", "unload", "send", "call", "metrics", "guest",
                          "plugin-test", "keygen", "sign", "verify"}) do
      code, out = ctl(nil, "--socket", "/nonexistent/p.sock", sub, "--help")
      assert.are.equal(0, code, sub .. ": " .. out)
      assert.is_truthy(out:find("usage: polarisctl", 1, true), out)
    end
  end)

  it("status prints the plugins as a table; status and plugins exit 4 while one is in Error", function()
    local d = H.start_daemon({plugins = {broken = BROKEN}})
    local code, out = ctl(d, "status")
    assert.are.equal(4, code, out)
    assert.is_truthy(out:find("\nplugins:\nID%s+VERSION%s+STATE"), out)
    assert.is_truthy(out:match("\nbroken%s+1%.0%.0%s+Error%s.-broken on purpose"), out)
    assert.is_nil(out:find('[{"id"', 1, true), out)
    assert.are.equal(4, (ctl(d, "plugins")))
    code, out = ctl(d, "status", "--json")
    assert.are.equal(4, code, out)
    assert.is_table(cjson.decode(out).plugins)
    -- taken out: nothing is in Error any more
    assert.are.equal(0, (ctl(d, "unload", "broken")))
    assert.are.equal(0, (ctl(d, "plugins")))
    assert.are.equal(0, (ctl(d, "status")))
    H.stop_ok(d)
  end)

  it("the reload report names the plugins that were removed", function()
    local d = H.start_daemon({plugins = {gone = {lua = "", manifest = {plugin_type = "Library"}}}})
    os.remove(d.plugin_dir .. "/gone.json")
    os.remove(d.plugin_dir .. "/gone.lua")
    local code, out = ctl(d, "reload")
    assert.are.equal(0, code, out)
    assert.is_truthy(out:match("\n  gone%s+removed"), out)
    H.wait_for("status to show it Unloaded", function()
      local st = d:status()
      local p = H.leaving_by_id(st, "gone")
      return not H.plugin_by_id(st, "gone") and p and p.state == "Unloaded"
    end, 5000)
    H.stop_ok(d)
  end)
end)

describe("lifecycle and status()", function()
  it("what a plugin's status() returns shows in status and in polarisctl plugins", function()
    local d = H.start_daemon({plugins = {counter = {lua = [[
      local seen = 0
      polaris.on_event(7, function() seen = seen + 1 end)
      return {status = function() return {seen = seen, mood = "fine"} end}
    ]], manifest = {plugin_type = "Strategy"}}}})
    local st = H.plugin_by_id(d:status(), "counter")
    assert.are.same({seen = 0, mood = "fine"}, st.status)
    local code, out = ctl(d, "plugins")
    assert.are.equal(0, code, out)
    assert.is_truthy(out:find('\n  counter status: {"', 1, true), out)
    -- refreshed while the plugin works (at most once a second)
    local app = H.app(d)
    H.wait_for("status() to see the events", function()
      app:send_event(H.event(7))
      local s = H.plugin_by_id(d:status(), "counter").status
      return s.seen > 0
    end, 5000)
    H.stop_ok(d)
  end)

  it("a plugin leaving the set is Unloading while it finishes its mailbox, then Unloaded", function()
    local d = H.start_daemon({plugins = {slowpoke = {lua = [[
      polaris.on_event(7, function(ev)
        local t = os.clock() while os.clock() - t < 0.15 do end
        ev.params.slow = true
        return ev
      end)
    ]], manifest = {plugin_type = "Strategy"}}}})
    local g = H.guest_connected(d)
    local app = H.app(d)
    for _ = 1, 12 do app:send_event(H.event(7)) end
    H.wait_for("its mailbox to fill", function()
      local p = H.plugin_by_id(d:status(), "slowpoke")
      return p.events >= 1
    end, 5000)
    local code, out = ctl(d, "unload", "slowpoke")
    assert.are.equal(0, code, out)
    local st = d:status()
    assert.is_nil(H.plugin_by_id(st, "slowpoke"))     -- out of the set at once
    assert.are.equal("Unloading", H.leaving_by_id(st, "slowpoke").state)
    local _, table_out = ctl(d, "plugins")
    assert.is_truthy(table_out:find("slowpoke%s+%S+%s+Unloading"), table_out)
    -- metrics name the running set only: one series per name and labels
    local _, metrics = ctl(d, "metrics")
    local seen = {}
    for series in metrics:gmatch("\n(polaris_[^ ]+) ") do
      assert.is_nil(seen[series], "a repeated series: " .. series)
      seen[series] = true
    end
    assert.is_truthy(next(seen), metrics)
    assert.is_falsy(metrics:find('id="slowpoke"', 1, true), metrics)
    -- nothing accepted is lost: every event still comes out through it
    for _ = 1, 12 do
      local ev = assert(g:event(10000), "an event did not arrive")
      assert.is_true(ev.params.slow)
    end
    H.wait_for("Unloaded", function()
      local p = H.leaving_by_id(d:status(), "slowpoke")
      return p and p.state == "Unloaded"
    end, 10000)
    H.stop_ok(d)
  end)

  it("shows what an isolated plugin's status() returns (it runs in its plugin host)", function()
    local d = H.start_daemon({plugins = {counter = {lua = [[
      local seen = 0
      polaris.on_event(7, function() seen = seen + 1 end)
      return {status = function() return {seen = seen, where = "host"} end}
    ]], manifest = {plugin_type = "Strategy", isolation = "process"}}}})
    local st = H.plugin_by_id(d:status(), "counter")
    assert.are.equal("process", st.isolation)
    H.wait_for("the first status()", function()
      local s = H.plugin_by_id(d:status(), "counter").status
      return type(s) == "table" and s.where == "host"
    end, 5000)
    local app = H.app(d)
    H.wait_for("status() to see the events", function()
      app:send_event(H.event(7))
      local s = H.plugin_by_id(d:status(), "counter").status
      return type(s) == "table" and s.seen > 0
    end, 5000)
    H.stop_ok(d)
  end)
end)

describe("plugin folders", function()
  local function folder(dir)
    os.execute("mkdir -p '" .. dir .. "/jsonish/Util'")
    write(dir .. "/jsonish/jsonish.json", cjson.encode({id = "jsonish", version = "1.0.0", plugin_type = "Command"}))
    write(dir .. "/jsonish/jsonish.lua", [[
      local dk = require "dkjson"                 -- Debian's lua-dkjson, unmodified
      local fmt = require "Util.Format"
      assert(package.loaded.dkjson == dk)
      polaris.command("dk", function(args)
        return 0, fmt.tag(dk.encode({count = args.n}, {keyorder = {"count"}})), dk.decode('{"x":[1,2]}')
      end)]])
    write(dir .. "/jsonish/Util/Format.lua", "return {tag = function(s) return '<' .. s .. '>' end}")
    assert(os.execute("cp /usr/share/lua/5.4/dkjson.lua '" .. dir .. "/jsonish/dkjson.lua'"))
  end

  it("a folder's own modules, a real pure-Lua library among them, come before the runtime's", function()
    local dir = ptest.mkdtemp()
    folder(dir .. "/p")
    local d = H.start_daemon({args = {"--plugins", dir .. "/p"}})
    local st = H.plugin_by_id(d:status(), "jsonish")
    assert.are.equal("Active", st.state, st.last_error)
    local r = H.app(d):call("host", "dk", {n = 5})
    assert.are.equal(0, r.code, r.msg)
    assert.are.equal('<{"count":5}>', r.msg)
    assert.are.same({x = {1, 2}}, r.data)
    -- a module others may write is refused like the plugin file would be
    os.execute("chmod 0666 '" .. dir .. "/p/jsonish/Util/Format.lua'")
    ctl(d, "reload")
    H.stop_ok(d)
    d = H.start_daemon({args = {"--plugins", dir .. "/p"}})
    st = H.plugin_by_id(d:status(), "jsonish")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("untrusted: file .*Format.lua is writable by anyone"), st.last_error)
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("with require_signed, each module of the folder needs its own signature", function()
    local dir, keys = ptest.mkdtemp(), ptest.mkdtemp()
    folder(dir .. "/p")
    assert.are.equal(0, (ctl(nil, "keygen", keys .. "/ops")))
    assert.are.equal(0, (ctl(nil, "sign", keys .. "/ops", dir .. "/p/jsonish/jsonish.json")))
    local cfg = {plugins = {require_signed = "yes", trusted_keys = keys .. "/ops.pub"}}
    local d = H.start_daemon({args = {"--plugins", dir .. "/p"}, config = cfg})
    local st = H.plugin_by_id(d:status(), "jsonish")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("unsigned:", 1, true), st.last_error)
    H.stop_ok(d)
    for _, m in ipairs({"dkjson.lua", "Util/Format.lua"}) do
      assert.are.equal(0, (ctl(nil, "sign", keys .. "/ops", dir .. "/p/jsonish/" .. m)))
    end
    d = H.start_daemon({args = {"--plugins", dir .. "/p"}, config = cfg})
    st = H.plugin_by_id(d:status(), "jsonish")
    assert.are.equal("Active", st.state, st.last_error)
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "' '" .. keys .. "'")
  end)
end)

describe("the runtime's own modules (plugins.lua_dir)", function()
  -- a copy of the runtime with one helper module beside it
  local function runtime(dir)
    assert(os.execute("cp -r lua '" .. dir .. "/rt' && chmod 0755 '" .. dir .. "/rt'"))
    write(dir .. "/rt/sidekick.lua", "return {tag = function(s) return '[' .. s .. ']' end}")
    return dir .. "/rt"
  end
  local USER = {lua = [[
    local sk = require "sidekick"
    polaris.command("tagged", function() return 0, sk.tag("x") end)]], manifest = {plugin_type = "Command"}}

  it("pass strict modes like the plugin: a helper anyone may write is refused", function()
    local dir = ptest.mkdtemp()
    local rt = runtime(dir)
    os.execute("chmod 0666 '" .. rt .. "/sidekick.lua'")
    local d = H.start_daemon({plugins = {user = USER}, config = {plugins = {lua_dir = rt}}})
    local st = H.plugin_by_id(d:status(), "user")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("untrusted: file .*sidekick.lua is writable by anyone"), st.last_error)
    H.stop_ok(d)
    os.execute("chmod 0644 '" .. rt .. "/sidekick.lua'")
    d = H.start_daemon({plugins = {user = USER}, config = {plugins = {lua_dir = rt}}})
    assert.are.equal("Active", H.plugin_by_id(d:status(), "user").state)
    assert.are.equal("[x]", H.app(d):call("host", "tagged").msg)
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("with require_signed, a helper module needs its own signature", function()
    local dir, keys = ptest.mkdtemp(), ptest.mkdtemp()
    local rt = runtime(dir)
    H.write_plugins(dir .. "/p", {user = USER})
    assert.are.equal(0, (ctl(nil, "keygen", keys .. "/ops")))
    assert.are.equal(0, (ctl(nil, "sign", keys .. "/ops", dir .. "/p/user.json")))
    local cfg = {plugins = {lua_dir = rt, require_signed = "yes", trusted_keys = keys .. "/ops.pub"}}
    local d = H.start_daemon({args = {"--plugins", dir .. "/p"}, config = cfg})
    local st = H.plugin_by_id(d:status(), "user")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("unsigned:", 1, true), st.last_error)
    assert.is_truthy(st.last_error:find("sidekick", 1, true), st.last_error)
    H.stop_ok(d)
    assert.are.equal(0, (ctl(nil, "sign", keys .. "/ops", rt .. "/sidekick.lua")))
    d = H.start_daemon({args = {"--plugins", dir .. "/p"}, config = cfg})
    st = H.plugin_by_id(d:status(), "user")
    assert.are.equal("Active", st.state, st.last_error)
    assert.are.equal("[x]", H.app(d):call("host", "tagged").msg)
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "' '" .. keys .. "'")
  end)
end)
