-- conformance_spec.lua - what was written against the original design works
-- unchanged (DESIGN 3.1, 5.1, 6): an app built against the original SDK
-- header, the original manifest form, the original CommandRequest fields.
local H = require "helpers"
local cjson, codec = H.cjson, H.codec

after_each(function() H.stop_all() end)

-- Reads events as the guest until n arrived; returns them by eventId, and
-- each one's raw payload.
local function read_events(g, n)
  local by_id, raw = {}, {}
  for _ = 1, n do
    local ev, f = g:event(10000)
    assert.is_table(ev, "an event did not arrive")
    local id = tonumber(f.payload:match('"eventId":(%d+)'))
    by_id[id], raw[id] = ev, f.payload
  end
  return by_id, raw
end

describe("an app written against the original SDK header", function()
  for _, variant in ipairs({"original_app", "original_app_cxx"}) do
    it("builds with -Wall -Werror -pedantic and reports through every function (" .. variant .. ")", function()
      local d = H.start_daemon()
      local g = H.guest_connected(d)
      local how, code, out = H.run({H.BUILD .. "/" .. variant, "5100", "/var/log/app.log"},
                                   {POLARIS_SOCKET = d.ipc}, 30000)
      assert.are.same({"exited", 0}, {how, code}, out)
      assert.are.equal("commit 0 raw 0 bad -1 null 0\n", out)
      local ev, raw = read_events(g, 3)
      -- the builder: every adder, the log path as logf
      local e = assert(ev[5100], "the built event did not arrive")
      assert.are.equal("/var/log/app.log", e.logf)
      assert.are.equal("original_app", e.processName)
      assert.are.equal("2.0.1", e.processVer)
      assert.are.equal("SIGSEGV", e.params.reason)
      assert.are.equal(11, e.params.signal)
      assert.is_truthy(raw[5100]:find('"uptime_ms":9007199254740993', 1, true), raw[5100])
      assert.are.equal(0.75, e.params.load)
      assert.is_true(e.params.core_dumped)
      assert.is_number(e.timestamp)
      -- the raw interface: json_body is params, nesting kept; NULL names
      local r = assert(ev[5101], "the raw event did not arrive")
      assert.are.same({cpu = 90, detail = {core = 1}}, r.params)
      assert.are.equal("/var/log/app.log", r.logf)
      assert.are.equal("unknown", r.processVer)
      assert.are.equal(variant:sub(1, 15), r.processName)  -- /proc/self/comm
      -- NULL log path: no logf
      local p = assert(ev[5103], "the plain event did not arrive")
      assert.is_nil(p.logf)
      assert.are.equal("unknown", p.processVer)
      -- neither the refused raw event nor the cancelled one was sent
      assert.is_nil(g:event(300))
      H.stop_ok(d)
    end)
  end

  it("refuses a raw body that is not a JSON object, sends one that is", function()
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    for _, body in ipairs({"[1,2]", "7", '"text"', "{", "{\"a\":1} x"}) do
      local _, _, out = H.run({H.BUILD .. "/sdk_probe", "rawparams", "5200", body}, {POLARIS_SOCKET = d.ipc})
      assert.are.equal("rawparams -1\n", out, body)
    end
    local _, _, out = H.run({H.BUILD .. "/sdk_probe", "rawparams", "5201", "NULL", "/tmp/x.log"},
                            {POLARIS_SOCKET = d.ipc})
    assert.are.equal("rawparams 0\n", out)
    local ev = g:event(5000)
    assert.are.equal(5201, ev.eventId)
    assert.are.same({}, ev.params)
    assert.are.equal("/tmp/x.log", ev.logf)
    H.stop_ok(d)
  end)
end)

describe("the original manifest", function()
  -- seeds 000's example, copied as written but for ids: version objects,
  -- a dependency given as a version object, entry_point a function name
  local function manifest(id, deps)
    return ([[{
  "id": "%s",
  "name": "My Plugin",
  "version": {
    "major": 1,
    "minor": 0,
    "patch": 0
  },
  "description": "A sample plugin",
  "author": "Plugin Author",
  "license": "MIT",
  "dependencies": %s,
  "plugin_type": "Custom",
  "entry_point": "plugin_entry",
  "permissions": [
    "ReadVmState",
    "FileSystemAccess"
  ]
}]]):format(id, deps)
  end
  local ENTRY = [[
function plugin_entry()
  local P = {}
  polaris.command("%s", function() return 0, "from plugin_entry" end)
  function P.init(ctx) P.id = ctx.id end
  return P
end
]]

  for _, isolation in ipairs({"inprocess", "process"}) do
    it("loads as written, with its dependency (" .. isolation .. ")", function()
      local d = H.start_daemon({config = {plugins = {isolation = isolation == "process" and "process" or "manifest"}},
        plugins = {
        base_plugin = {manifest_text = manifest("base_plugin", "{}"), lua = ENTRY:format("base_cmd")},
        my_plugin = {manifest_text = manifest("my_plugin", [[{
    "base_plugin": {
      "major": 1,
      "minor": 0,
      "patch": 0
    }
  }]]), lua = ENTRY:format("my_cmd")},
      }})
      local st = d:status()
      for _, id in ipairs({"base_plugin", "my_plugin"}) do
        local p = H.plugin_by_id(st, id)
        assert.is_table(p, id)
        assert.are.equal("Active", p.state, id .. ": " .. tostring(p.last_error))
        assert.are.equal("1.0.0", p.version)
      end
      local app = H.app(d)
      local r = app:call("host", "my_cmd", {})
      assert.are.equal(0, r.code, r.msg)
      assert.are.equal("from plugin_entry", r.msg)
      app:close()
      H.stop_ok(d)
    end)
  end

  it("keeps a plugin out whose version-object dependency is not met, saying why", function()
    local d = H.start_daemon({plugins = {
      base_plugin = {manifest_text = manifest("base_plugin", "{}"), lua = ENTRY:format("base_cmd")},
      my_plugin = {manifest_text = manifest("my_plugin", '{"base_plugin": {"major": 2, "minor": 1, "patch": 0}}'),
                   lua = ENTRY:format("my_cmd")},
    }})
    local p = H.plugin_by_id(d:status(), "my_plugin")
    assert.are.equal("Error", p.state)
    assert.is_truthy(p.last_error:find("needs ^2.1.0", 1, true), p.last_error)
    H.stop_ok(d)
  end)

  it("says so when the entry function is missing", function()
    local d = H.start_daemon({plugins = {
      my_plugin = {manifest_text = manifest("my_plugin", "{}"), lua = "local x = 1"},
    }})
    local p = H.plugin_by_id(d:status(), "my_plugin")
    assert.are.equal("Error", p.state)
    assert.is_truthy(p.last_error:find("entry_point 'plugin_entry' is not a function", 1, true), p.last_error)
    H.stop_ok(d)
  end)
end)

describe("CommandRequest", function()
  it("carries reqId and target to the guest and to a host handler", function()
    local d = H.start_daemon({plugins = {
      echo_req = {manifest = {plugin_type = "Command"},
                  lua = [[polaris.command("echo_req", function(args, req)
                            return 0, "ok", {reqId = req.reqId, target = req.target, action = req.action}
                          end)]]},
    }})
    local g = H.guest_connected(d)
    local app = H.app(d)
    local id = app:request("guest", "guest_thing", {x = 1}, 3000)
    local f = assert(g:expect(codec.PLP_CMD_REQ_H2G, nil, 5000))
    local req = cjson.decode(f.payload)
    assert.are.equal(f.seq, req.reqId)
    assert.are.equal("guest", req.target)
    assert.are.equal("guest_thing", req.action)
    g:send_plp(codec.PLP_CMD_RESP_G2H, f.seq, cjson.encode({reqId = f.seq, code = 0, msg = "done", data = {}}))
    local r = assert(app:response(id, 5000))
    assert.are.equal(0, r.code)
    -- a host command from an app: its handler sees the app's req id
    local hid = app:request("host", "echo_req", {})
    r = assert(app:response(hid, 5000))
    assert.are.same({reqId = hid, target = "host", action = "echo_req"}, r.data)
    -- and from the guest: the frame's seq
    g:send_plp(codec.PLP_CMD_REQ_G2H, 77, cjson.encode({action = "echo_req", args = {}}))
    local gr = assert(g:expect(codec.PLP_CMD_RESP_H2G, 77, 5000))
    assert.are.same({reqId = 77, target = "host", action = "echo_req"}, cjson.decode(gr.payload).data)
    app:close()
    H.stop_ok(d)
  end)
end)

describe("processVer", function()
  it("is \"unknown\" for an app event that leaves it out or sends null", function()
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local app = H.app(d)
    app:send_event('{"eventId":5301,"params":{}}')
    app:send_event('{"eventId":5302,"processVer":null,"params":{}}')
    app:send_event('{"eventId":5303,"processVer":"3.1","params":{}}')
    local ev, raw = read_events(g, 3)
    assert.are.equal("unknown", ev[5301].processVer)
    assert.are.equal("unknown", ev[5302].processVer)
    assert.are.equal("3.1", ev[5303].processVer)
    assert.is_nil(raw[5302]:find("null", 1, true), raw[5302])
    app:close()
    H.stop_ok(d)
  end)
end)

describe("threads", function()
  it("are named for what they do", function()
    local d = H.start_daemon({config = {daemon = {workers = 2}}})
    local names = {}
    H.wait_for("the threads to be named", function()
      names = {}
      local p = io.popen("cat /proc/" .. d.pid .. "/task/*/comm 2>/dev/null")
      for line in p:lines() do names[line] = true end
      p:close()
      return names.ingress and names.egress and names["worker-0"] and names["worker-1"]
    end)
    assert.is_true(names.polarisd, "the main (core) thread keeps the process's name")
    H.stop_ok(d)
  end)
end)
