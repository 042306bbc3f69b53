-- operating_spec.lua - how an operator meets polarisd: every polarisctl
-- subcommand against a real daemon, plugin-test offline, signed and
-- strict-mode plugins, the log format, the staged install and the unit.
local H = require "helpers"
local cjson, ptest = H.cjson, H.ptest

after_each(function() H.stop_all() end)

local function ctl(d, ...)
  local argv = {H.POLARISCTL}
  if d then argv[#argv + 1] = "--socket"; argv[#argv + 1] = d.ipc end
  for _, a in ipairs({...}) do argv[#argv + 1] = a end
  local how, code, out = H.run(argv, nil, 30000)
  assert.are.equal("exited", how, out)
  return code, out
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function lines(text)
  local t = {}
  for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("polarisctl against a running daemon", function()
  it("plugins prints one line per plugin with its state and numbers", function()
    local d = H.start_daemon({plugins = {
      broken = {lua = "error('broken on purpose')", manifest = {plugin_type = "Strategy"}},
      apart = {lua = "polaris.on_event(1, function() end)",
               manifest = {plugin_type = "Strategy", isolation = "process"}},
    }})
    local code, out = ctl(d, "plugins")
    assert.are.equal(4, code, out)       -- a plugin is in Error (issue 23)
    local l = lines(out)
    assert.is_truthy(l[1]:match("^ID%s+VERSION%s+STATE%s+HOST%s+MEM_KIB%s+CPU_MS%s+EVENTS%s+COMMANDS%s+ERRORS%s+LAST ERROR"))
    assert.is_truthy(out:match("\nping%s+1%.0%.0%s+Active%s+in%-process%s+%d+%.%d"))
    assert.is_truthy(out:match("\nbroken%s+1%.0%.0%s+Error%s.-broken on purpose"), out)
    -- an isolated plugin: its host's pid, state and restarts
    local pid = ("%d"):format(H.plugin_by_id(d:status(), "apart").host_pid)
    assert.is_truthy(out:match("\napart%s+1%.0%.0%s+Active%s+" .. pid .. " up r0%s"), out)
    H.ptest.kill(pid, "KILL")
    H.wait_for("the restart", function() return H.plugin_by_id(d:status(), "apart").host_restarts == 1 end)
    code, out = ctl(d, "plugins")
    assert.are.equal(4, code, out)
    assert.is_truthy(out:match("\napart%s+.- r1%s.-killed by SIGKILL"), out)
    H.stop_ok(d)
  end)

  it("metrics exposes every counter and each plugin in Prometheus text format", function()
    local d = H.start_daemon()
    local app = H.app(d)
    app:send_event(H.event(1))
    H.wait_for("the event", function() return d:status().ipc.events_in == 1 end)
    local code, out = ctl(d, "metrics")
    assert.are.equal(0, code, out)
    local seen_types = {}
    for _, l in ipairs(lines(out)) do
      -- every line is a comment or "name{labels} value"
      if l:sub(1, 1) == "#" then
        local name, kind = l:match("^# TYPE (%S+) (%S+)$")
        if name then
          assert.is_nil(seen_types[name], "TYPE twice: " .. name)
          seen_types[name] = kind
        else
          assert.is_truthy(l:match("^# HELP %S+ .+"), l)
        end
      else
        assert.is_truthy(l:match('^[%w_]+{?[^}]*}? %-?[%d%.e%+]+$'), l)
      end
    end
    assert.are.equal("counter", seen_types.polaris_ipc_events_in_total)
    assert.are.equal("counter", seen_types.polaris_ipc_connections_total)   -- no _total_total
    assert.are.equal("gauge", seen_types.polaris_guest_buffered)
    assert.is_truthy(out:find("\npolaris_ipc_events_in_total 1\n", 1, true))
    assert.is_truthy(out:find('\npolaris_plugin_up{id="ping",state="Active"} 1\n', 1, true))
    assert.is_truthy(out:match('\npolaris_plugin_memory_bytes{id="ping"} %d+\n'))
    assert.is_truthy(out:find('polaris_build_info{version="' .. d:status().version .. '"', 1, true))
    H.stop_ok(d)
  end)

  it("send reports an event as an app would, typed params and exact u64 ids", function()
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local code, out = ctl(d, "send", "18446744073709551615", "reason=SIGSEGV", "count=3", "ok=true",
                          "ratio=0.5", "label=007x", "nested:=" .. '{"a":[1,2]}')
    assert.are.equal(0, code, out)
    local ev, f = g:event()
    assert.is_truthy(f.payload:find('"eventId":18446744073709551615', 1, true))
    assert.are.same({reason = "SIGSEGV", count = 3, ok = true, ratio = 0.5, label = "007x",
                     nested = {a = {1, 2}}}, ev.params)
    assert.are.equal("polarisctl", ev.processName)
    -- from a file
    local file = d.dir .. "/ev.json"
    write(file, '{"eventId": 77, "params": {"from": "file"}}')
    code, out = ctl(d, "send", "--json", file)
    assert.are.equal(0, code, out)
    ev = g:event()
    assert.are.equal(77, ev.eventId)
    assert.are.equal("file", ev.params.from)
    -- bad input: a usage error, nothing sent
    assert.are.equal(2, (ctl(d, "send", "-5")))
    assert.are.equal(2, (ctl(d, "send", "1", "novalue")))
    assert.are.equal(2, (ctl(d, "send", "1", "x:={bad")))
    write(file, '{"params": {}}')
    assert.are.equal(2, (ctl(d, "send", "--json", file)))
    assert.are.equal(0, d:status().ipc.frames_rejected)
    assert.are.equal(2, d:status().ipc.events_in)
    H.stop_ok(d)
  end)

  it("reload prints each plugin's outcome and exits 1 when one failed", function()
    local d = H.start_daemon({plugins = {
      tagger = {lua = "polaris.on_event(1, function(ev) return ev end)", manifest = {plugin_type = "Strategy"}},
    }})
    local code, out = ctl(d, "reload")
    assert.are.equal(0, code, out)
    assert.is_truthy(out:match("reloaded: 0 plugins failed"))
    assert.is_truthy(out:match("\n  tagger%s+unchanged"), out)
    write(d.plugin_dir .. "/tagger.lua", "error('now broken')")
    code, out = ctl(d, "reload")
    assert.are.equal(1, code, out)
    assert.is_truthy(out:match("\n  tagger%s+kept%s+.-now broken"), out)
    H.stop_ok(d)
  end)

  it("exit codes: 2 for usage, 3 when the daemon is not there", function()
    assert.are.equal(2, (ctl(nil, "frobnicate")))
    assert.are.equal(2, (ctl(nil, "plugins", "extra")))
    assert.are.equal(3, (ctl(nil, "--socket", "/nonexistent/p.sock", "metrics")))
    local code, out = ctl(nil, "--help")
    assert.are.equal(0, code)
    for _, sub in ipairs({"status", "plugins", "reload", "send", "call", "guest", "metrics",
                          "plugin-test", "sign", "verify"}) do
      assert.is_truthy(out:find("\n  " .. sub, 1, true), sub)
    end
  end)
end)

describe("polarisctl guest", function()
  it("prints events as JSON lines, sends --cmd commands and answers the host's", function()
    local d = H.start_daemon()
    local out_file = d.dir .. "/guest.out"
    local gpid = assert(ptest.spawn({H.POLARISCTL, "guest", d.guest_uri, "--count", "2",
                                     "--cmd", 'ping {"echo": "hi"}', "--answer",
                                     '{"code": 0, "msg": "ok", "data": {"from": "sim"}}',
                                     "--timeout", "20000"}, {stdout = out_file, stderr = d.dir .. "/guest.err"}))
    H.wait_for("the simulator to connect", function() return d:status().guest.connected end)
    local app = H.app(d)
    -- an app asks the guest; the simulator answers
    local r = app:call("guest", "show_toast", {text = "hello"})
    assert.are.equal(0, r.code)
    assert.are.equal("sim", r.data.from)
    app:send_event(H.event(11))
    app:send_event(H.event(12))
    assert.are.same({"exited", 0}, {ptest.wait(gpid, 20000)})
    local l = lines(H.read_file(out_file))
    local seen = {}
    for _, line in ipairs(l) do
      local v = cjson.decode(line)
      if v.eventId then seen[#seen + 1] = v.eventId
      else
        assert.are.equal("ping", v.action)
        assert.are.equal(0, v.result.code)
        assert.are.equal("hi", v.result.data.echo)
        seen.cmd = true
      end
    end
    assert.are.same({11, 12, cmd = true}, seen)
    assert.is_truthy(H.read_file(d.dir .. "/guest.err"):find("the host asks for show_toast", 1, true))
    H.stop_ok(d)
  end)
end)

describe("polarisctl plugin-test", function()
  local dir
  before_each(function()
    dir = ptest.mkdtemp()
    write(dir .. "/tagger.json", cjson.encode({id = "tagger", version = "1.0.0", plugin_type = "Strategy",
                                               entry_point = "tagger.lua", dependencies = {util = "^1.0.0"}}))
    write(dir .. "/util.json", cjson.encode({id = "util", version = "1.2.0", plugin_type = "Library",
                                             entry_point = "util.lua"}))
    write(dir .. "/util.lua", "")
    write(dir .. "/other.json", cjson.encode({id = "other", version = "1.0.0", plugin_type = "Strategy",
                                              entry_point = "other.lua"}))
    write(dir .. "/other.lua", "polaris.on_event('*', function() return false end)")
    write(dir .. "/tagger.lua", [[
      polaris.on_event(9001, function(ev)
        if ev.params.drop then return false end
        if ev.params.boom then error("boom") end
        ev.params.tag = polaris.config.tag or "default"
        return ev
      end)]])
    write(dir .. "/conf", "[plugin.tagger]\ntag = from-config\n")
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("runs the plugin (and its dependencies, nothing else) and prints what it forwards", function()
    write(dir .. "/events.json", cjson.encode({
      {eventId = 9001, params = {n = 1}}, {eventId = 9001, params = {drop = true}}, {eventId = 5, params = {}},
    }))
    local how, code, out = H.run({H.POLARISCTL, "plugin-test", dir .. "/tagger.lua", dir .. "/events.json",
                                  "-c", dir .. "/conf"}, {POLARISD = H.POLARISD}, 30000)
    assert.are.same({"exited", 0}, {how, code}, out)
    local evs = {}
    for _, l in ipairs(lines(out)) do
      if l:sub(1, 1) == "{" then evs[#evs + 1] = cjson.decode(l) end
    end
    table.sort(evs, function(a, b) return a.eventId < b.eventId end)
    assert.are.equal(2, #evs)               -- "other" (drops all) was not loaded
    assert.are.equal(5, evs[1].eventId)
    assert.are.equal("from-config", evs[2].params.tag)
    assert.is_truthy(out:find("3 events in, 2 forwarded (0 with strategyError), 1 dropped", 1, true), out)
  end)

  it("exits 1 and shows the strategyError when the handler fails", function()
    write(dir .. "/events.json", cjson.encode({eventId = 9001, params = {boom = true}}))
    local how, code, out = H.run({H.POLARISCTL, "plugin-test", dir .. "/tagger.json", dir .. "/events.json"},
                                 {POLARISD = H.POLARISD}, 30000)
    assert.are.same({"exited", 1}, {how, code}, out)
    assert.is_truthy(out:find('"strategyError"', 1, true))
    assert.is_truthy(out:find("boom", 1, true))
  end)

  it("exits 1 with the reason when the plugin does not load", function()
    write(dir .. "/tagger.lua", "polaris.on_event(")
    write(dir .. "/events.json", "[]")
    local how, code, out = H.run({H.POLARISCTL, "plugin-test", dir .. "/tagger.lua", dir .. "/events.json"},
                                 {POLARISD = H.POLARISD}, 30000)
    assert.are.same({"exited", 1}, {how, code}, out)
    assert.is_truthy(out:find("tagger is Error", 1, true), out)
  end)
end)

describe("trusted plugins", function()
  it("refuses plugin files or directories others may write, naming why", function()
    local dir = ptest.mkdtemp()
    H.write_plugins(dir .. "/p", {
      ok = {lua = "", manifest = {plugin_type = "Library"}},
      loose = {lua = "", manifest = {plugin_type = "Library"}},
    })
    os.execute("chmod 0666 '" .. dir .. "/p/loose.lua'")
    local d = H.start_daemon({args = {"--plugins", dir .. "/p"}})
    local st = H.plugin_by_id(d:status(), "loose")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("untrusted: file .*loose.lua is writable by anyone %(mode 0666%)"), st.last_error)
    assert.are.equal("Active", H.plugin_by_id(d:status(), "ok").state)
    -- fixed: the next reload takes it
    os.execute("chmod 0644 '" .. dir .. "/p/loose.lua'")
    assert.are.equal(0, (ctl(d, "reload")))
    assert.are.equal("Active", H.plugin_by_id(d:status(), "loose").state)
    -- a running plugin whose directory turns group-writable: the reload
    -- fails and keeps the version already loaded
    os.execute("chmod 0775 '" .. dir .. "/p'")
    local code, out = ctl(d, "reload")
    assert.are.equal(1, code)
    assert.is_truthy(out:find("directory .* is writable by its group"), out)
    st = H.plugin_by_id(d:status(), "ok")
    assert.are.equal("Active", st.state)
    assert.is_truthy(st.last_error:find("untrusted", 1, true))
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("loads only plugins signed by a trusted key; forged or re-edited ones are refused", function()
    local keys = ptest.mkdtemp()
    assert.are.equal(0, (ctl(nil, "keygen", keys .. "/ops")))
    assert.are.equal(0, (ctl(nil, "keygen", keys .. "/mallory")))
    local d = H.start_daemon({
      plugins = {
        signed = {lua = "polaris.command('signed_hello', function() return 0, 'hi' end)",
                  manifest = {plugin_type = "Command"}},
        forged = {lua = "polaris.command('forged_hello', function() return 0, 'hi' end)",
                  manifest = {plugin_type = "Command"}},
      },
      config = {plugins = {require_signed = "yes", trusted_keys = keys .. "/ops.pub"}},
    })
    -- nothing is signed yet: every plugin is refused, shipped ones too
    local st = H.plugin_by_id(d:status(), "signed")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("unsigned:", 1, true), st.last_error)
    assert.are.equal(0, (ctl(nil, "sign", keys .. "/ops", d.plugin_dir .. "/signed.json")))
    assert.are.equal(0, (ctl(nil, "sign", keys .. "/mallory", d.plugin_dir .. "/forged.json")))
    assert.are.equal(0, (ctl(nil, "verify", keys .. "/ops.pub", d.plugin_dir .. "/signed.json")))
    assert.are.equal(1, (ctl(nil, "verify", keys .. "/ops.pub", d.plugin_dir .. "/forged.json")))
    write(d.plugin_dir .. "/signed.lua", H.read_file(d.plugin_dir .. "/signed.lua") .. "\n")
    ctl(d, "reload")
    assert.are.equal("Error", H.plugin_by_id(d:status(), "signed").state)   -- edited after signing
    assert.are.equal(0, (ctl(nil, "sign", keys .. "/ops", d.plugin_dir .. "/signed.json")))
    ctl(d, "reload")
    assert.are.equal("Active", H.plugin_by_id(d:status(), "signed").state)
    st = H.plugin_by_id(d:status(), "forged")
    assert.are.equal("Error", st.state)
    assert.is_truthy(st.last_error:find("not a valid signature", 1, true), st.last_error)
    assert.are.equal(0, H.app(d):call("host", "signed_hello").code)
    assert.are.equal(-1, H.app(d):call("host", "forged_hello").code)
    H.stop_ok(d)
    os.execute("rm -rf '" .. keys .. "'")
  end)
end)

describe("logs", function()
  it("carry <N> priority prefixes when stderr is the journal stream, timestamps otherwise", function()
    local dir = ptest.mkdtemp()
    local log = dir .. "/journal"
    write(log, "")
    local how, code, st = H.run({"stat", "-c", "%d:%i", log})
    assert.are.same({"exited", 0}, {how, code})
    local d = H.start_daemon({env = {JOURNAL_STREAM = st:gsub("%s+$", "")}, log = log})
    local text = d:log_text()
    assert.is_truthy(text:match("^<6>plugin [%w_]+ loaded"), text)
    assert.is_nil(text:find("polarisd info:", 1, true))
    H.stop_ok(d)
    -- JOURNAL_STREAM naming another file: plain lines
    d = H.start_daemon({env = {JOURNAL_STREAM = "1:1"}})
    assert.is_truthy(d:log_text():match("^%d%d:%d%d:%d%d%.%d%d%d polarisd info: "))
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("hold back a plugin's repeats beyond log_burst a second, and say how many", function()
    local d = H.start_daemon({
      config = {daemon = {log_burst = 5}},
      plugins = {chatty = {lua = [[
        polaris.command("spam", function() for i = 1, 50 do polaris.log.info("line " .. i) end return 0 end)
      ]], manifest = {plugin_type = "Command"}}},
    })
    local app = H.app(d)
    assert.are.equal(0, app:call("host", "spam").code)
    local text = d:log_text()
    assert.is_truthy(text:find("plugin chatty: line 5\n", 1, true))
    assert.is_nil(text:find("plugin chatty: line 6\n", 1, true))
    assert.is_true(d:status().log.suppressed >= 45)       -- and counted where status shows it
    -- the next second's first line says how many were held back
    H.wait_for("the suppressed count", function()
      app:call("host", "spam")
      return d:log_text():match("%d+ similar messages suppressed %(at most 5 a second%): plugin %%s: %%s")
    end, 5000)
    H.stop_ok(d)
  end)
end)

describe("install layout", function()
  it("make install stages everything under DESTDIR; the unit verifies; uninstall keeps the config", function()
    local stage = ptest.mkdtemp()
    -- the build's own flags (make passes them down in MAKEFLAGS), so nothing rebuilds
    local how, code, out = H.run({"make", "-s", "install", "DESTDIR=" .. stage}, nil, 300000)
    assert.are.same({"exited", 0}, {how, code}, out)
    local prefix = stage .. "/usr/local"
    for _, f in ipairs({"/sbin/polarisd", "/bin/polarisctl", "/lib/libpolaris_client.so.0",
                        "/lib/libpolaris_client.a", "/include/polaris_api.h",
                        "/lib/pkgconfig/polaris-client.pc", "/share/polaris/plugins/ping.lua",
                        "/share/polaris/strategies/crash_log_capture.lua",
                        "/share/polaris/lua/polaris/loader.lua", "/share/man/man8/polarisd.8",
                        "/share/man/man1/polarisctl.1", "/share/man/man3/polaris_api.3",
                        "/share/man/man7/polaris-plugins.7"}) do
      assert.is_truthy(io.open(prefix .. f), f)
    end
    assert.is_truthy(io.open(stage .. "/etc/polaris/polarisd.conf"))
    local units = {stage .. "/lib/systemd/system/polarisd.service", stage .. "/usr/lib/systemd/system/polarisd.service"}
    local unit = H.read_file(units[1]) ~= "" and units[1] or units[2]
    local text = H.read_file(unit)
    assert.is_truthy(text:find("ExecStart=/usr/local/sbin/polarisd --foreground -c /etc/polaris/polarisd.conf", 1, true))
    assert.is_truthy(text:find("Type=notify", 1, true))
    -- the staged daemon checks the staged config and plugins
    how, code, out = H.run({prefix .. "/sbin/polarisd", "--check", "-c", stage .. "/etc/polaris/polarisd.conf",
                            "--plugins", prefix .. "/share/polaris/strategies",
                            "--plugins", prefix .. "/share/polaris/plugins"})
    assert.are.same({"exited", 0}, {how, code}, out)
    assert.is_truthy(out:find("ok: 0 plugins failed", 1, true), out)
    -- the unit, pointed at the staged files, passes systemd-analyze verify
    if os.execute("command -v systemd-analyze >/dev/null 2>&1") then
      local check = stage .. "/polarisd.service"
      local f = assert(io.open(check, "w"))
      f:write((text:gsub("/usr/local/sbin", prefix .. "/sbin"):gsub("/etc/polaris", stage .. "/etc/polaris")))
      f:close()
      how, code, out = H.run({"systemd-analyze", "verify", "--man=no", check})
      assert.are.same({"exited", 0}, {how, code}, out)
      how, code, out = H.run({"systemd-analyze", "security", "--offline=true", check})
      assert.are.same({"exited", 0}, {how, code}, out)
      local score = tonumber(out:match("Overall exposure level for %S+: ([%d%.]+)"))
      -- 2.0 without CAP_SETUID/CAP_SETGID, which plugin hosts need (docs/operating.md)
      assert.is_true(score ~= nil and score <= 2.4, out)
    else
      pending("systemd-analyze is not installed")
    end
    how, code, out = H.run({"make", "-s", "uninstall", "DESTDIR=" .. stage}, nil, 120000)
    assert.are.same({"exited", 0}, {how, code}, out)
    assert.is_nil(io.open(prefix .. "/sbin/polarisd"))
    assert.is_nil(io.open(prefix .. "/share/polaris/plugins/ping.lua"))
    assert.is_nil(io.open(unit))
    assert.is_truthy(io.open(stage .. "/etc/polaris/polarisd.conf"))
    os.execute("rm -rf '" .. stage .. "'")
  end)
end)
