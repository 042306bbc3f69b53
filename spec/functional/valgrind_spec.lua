-- valgrind_spec.lua - the daemon's whole life under valgrind: start, load
-- plugins, traffic through a strategy, a command, a reload, SIGTERM. Any
-- invalid access or leak makes valgrind exit 99 (--error-exitcode).
local H = require "helpers"

after_each(function() H.stop_all() end)

describe("valgrind", function()
  it("start -> load -> traffic -> reload -> SIGTERM is clean", function()
    if os.execute("command -v valgrind >/dev/null 2>&1") ~= true then
      pending("valgrind is not installed (make deps installs it)")
      return
    end
    if os.getenv("BUILD") and os.getenv("BUILD"):find("asan") then
      pending("the ASan build cannot run under valgrind; the plain build covers this")
      return
    end
    -- with the spool and the crash monitor on, and the shipped plugins
    -- (captures, system_info) exercised too
    local spool, captures = H.ptest.mkdtemp() .. "/spool", H.ptest.mkdtemp()
    local d = H.start_daemon({env = {POLARIS_VALGRIND = "1"}, plugins = {
      s = {lua = [[polaris.on_event("*", function(ev) ev.params.v = 1; return ev end)]]},
      -- and one out of process: the daemon's side of a plugin host, its
      -- calls, a death and a restart
      o = {lua = [[polaris.on_event(5000, function(ev) ev.params.o = polaris.sys.uname() ~= nil; return ev end)
                   polaris.command("o.ping", function() return 0, "pong", {shared = polaris.shared.get("x")} end)]],
           manifest = {plugin_type = "Strategy", isolation = "process", permissions = {"ReadHostState"}}},
    }, valgrind = true, args = {"--spool", spool},
       config = {monitor = {process_events = "auto"},
                 ["plugin.capture_log"] = {dir = captures .. "/c", allowed_paths = captures,
                                           journal_lines = 0, dmesg_lines = 0}}})
    assert.is_truthy(d:log_text():find("Memcheck", 1, true), "not running under valgrind")
    local g = H.guest_connected(d)
    local app = H.app(d)
    for i = 1, 100 do app:send_event(H.event(i)) end
    for i = 1, 100 do assert.are.equal(i, g:event(20000).eventId) end
    assert.are.equal(0, app:call("host", "ping", {}, 5000, 20000).code)
    assert.are.equal(0, app:call("host", "system_info", {}, 5000, 20000).code)
    local cap = app:call("host", "capture_log", {reason = "valgrind"}, 10000, 30000)
    assert.are.equal(0, cap.code, cap.msg)
    app:send_event(H.event(5000))
    local ev = g:event(20000)
    assert.are.equal(5000, ev.eventId)
    assert.is_true(ev.params.o)
    assert.are.equal("pong", app:call("host", "o.ping", {}, 5000, 20000).msg)
    local st = H.plugin_by_id(d:status(), "o")
    H.ptest.kill(st.host_pid, "SEGV")
    H.wait_for("the host to come back", function()
      local p = H.plugin_by_id(d:status(), "o")
      return p.host_restarts == 1 and p.host_state == "up"
    end, 30000)
    assert.are.equal("pong", app:call("host", "o.ping", {}, 5000, 20000).msg)
    assert.are.equal(0, app:call("host", "reload", {}, 5000, 20000).code)
    g:close()
    app:close()
    local log = d:log_text()
    local how, code = d:stop(60000)
    assert.are.same({"exited", 0}, {how, code}, log:sub(-3000))
  end)
end)
