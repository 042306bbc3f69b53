-- sdk_spec.lua - libpolaris_client (DESIGN 6) against the real daemon, and
-- with no daemon at all, through spec/support/sdk_probe.c.
local H = require "helpers"
local cjson, ptest, codec = H.cjson, H.ptest, H.codec
local dkjson = require "dkjson"

after_each(function() H.stop_all() end)

local PROBE = H.BUILD .. "/sdk_probe"

-- Reads events as the guest until every id in ids arrived (within
-- timeout_ms); returns them by eventId.
local function events_by_id(g, ids, timeout_ms)
  local by_id, missing = {}, #ids
  local want = {}
  for _, id in ipairs(ids) do want[id] = true end
  local deadline = ptest.now_ms() + (timeout_ms or 10000)
  while missing > 0 do
    assert.is_true(ptest.now_ms() < deadline, missing .. " of " .. #ids .. " events did not arrive")
    local ev = g:event(1000)
    if ev and want[ev.eventId] and not by_id[ev.eventId] then
      by_id[ev.eventId] = ev
      missing = missing - 1
    end
  end
  return by_id
end

local function probe(sock, args, timeout_ms)
  local argv = {PROBE}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return H.run(argv, {POLARIS_SOCKET = sock}, timeout_ms or 30000)
end

describe("libpolaris_client", function()
  it("delivers 8 threads x 100000 events with no loss while the queue has room", function()
    -- the spec's guest reads once the probe is done: give the daemon's
    -- buffer room for all of them
    local d = H.start_daemon({config = {guest = {buffer_max_events = 1000000, buffer_max_bytes = "512M"}}})
    local g = H.guest_connected(d)
    local how, code, out = probe(d.ipc, {"send", "100000", "8"}, 120000)
    assert.are.same({"exited", 0}, {how, code}, out)
    local seen, n, refused = {}, 0, 0
    local beat = ptest.now_ms()
    while n < 800000 do
      -- reading takes longer than the daemon's 3 missed heartbeats: answer
      -- as a guest does, or the daemon drops the connection
      if ptest.now_ms() - beat >= 1000 then
        g:send_plp(codec.PLP_HEARTBEAT, 0, "", {flags = 0})
        beat = ptest.now_ms()
      end
      local ev, f = g:event(10000)
      assert.is_table(ev, "only " .. n .. " events arrived")
      local id = f.payload:match('"eventId":(%d+)')
      if id == "1000002" then
        -- the SDK reporting commits it refused while its queue was full
        -- (the probe retried those): counted, never silent
        refused = refused + ev.params.dropped
      else
        assert.is_nil(seen[id], "duplicate " .. id)
        seen[id] = true
        n = n + 1
      end
    end
    for t = 0, 7 do
      for _, i in ipairs({0, 1, 49999, 99999}) do assert.is_true(seen[tostring((t + 1) * 100000000 + i)]) end
    end
    H.stop_ok(d)
  end)

  it("is valgrind-clean: threads, a daemon, deinit (no leaks, no invalid access)", function()
    if os.execute("command -v valgrind >/dev/null 2>&1") ~= true then
      return pending("valgrind is not installed (make deps installs it)")
    end
    if H.BUILD:find("asan", 1, true) then
      return pending("the ASan build cannot run under valgrind; the plain build covers this")
    end
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local how, code, out = H.run({"valgrind", "--error-exitcode=99", "--leak-check=full",
                                  "--errors-for-leak-kinds=definite,indirect", PROBE, "send", "200", "4"},
                                 {POLARIS_SOCKET = d.ipc}, 120000)
    assert.are.same({"exited", 0}, {how, code}, out)
    for _ = 1, 800 do assert.is_table(g:event(20000)) end
    -- strings of every length up to 300 in heap blocks of their exact size
    how, code, out = H.run({"valgrind", "--error-exitcode=99", PROBE, "boundary"}, {POLARIS_SOCKET = d.ipc}, 120000)
    assert.are.same({"exited", 0}, {how, code}, out)
    for _ = 0, 300 do assert.is_table(g:event(20000)) end
    how, code, out = H.run({"valgrind", "--error-exitcode=99", "--leak-check=full",
                            "--errors-for-leak-kinds=definite,indirect", PROBE, "absent", "2000"},
                           {}, 120000)
    assert.are.same({"exited", 0}, {how, code}, out)
    H.stop_ok(d)
  end)

  it("writes doubles with a dot even in a locale whose decimal point is a comma", function()
    -- a de_DE locale built for this test (localedef, from Debian's locales)
    local dir = ptest.mkdtemp()
    H.run({"localedef", "-i", "de_DE", "-f", "UTF-8", dir .. "/de_DE.UTF-8"})
    if not io.open(dir .. "/de_DE.UTF-8/LC_NUMERIC") then
      os.execute("rm -rf '" .. dir .. "'")
      return pending("localedef could not build de_DE.UTF-8 (the locales package is missing)")
    end
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local how, code, out = probe(d.ipc, {"locale"})
    assert.are.same({"exited", 0}, {how, code}, out)
    local how2, code2, out2 = H.run({PROBE, "locale"}, {POLARIS_SOCKET = d.ipc, LOCPATH = dir,
                                                      LC_ALL = "de_DE.UTF-8"})
    assert.are.same({"exited", 0}, {how2, code2}, out2)
    assert.is_truthy(out2:find("decimal point ','", 1, true), out2)      -- the locale really applies
    for _ = 1, 2 do
      local ev, f = g:event()
      assert.are.equal(700000001, ev.eventId)
      assert.are.equal(0.5, ev.params.half)
      assert.are.equal(1234.25, ev.params.big)
      assert.are.equal(1.5e-7, ev.params.tiny)
      assert.is_nil(f.payload:find("0,5", 1, true))
    end
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("escapes strings so that lua-cjson and dkjson read back what was sent", function()
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local how, code, out = probe(d.ipc, {"escape"})
    assert.are.same({"exited", 0}, {how, code}, out)
    local _, f = g:event()
    for _, decode in ipairs({cjson.decode, function(s) return (dkjson.decode(s)) end}) do
      local p = decode(f.payload).params
      assert.are.equal('say "hi"', p.quote)
      assert.are.equal("C:\\path\\", p.backslash)
      assert.are.equal("a\nb\tc\1d\31e", p.control)
      assert.are.equal("caf\195\169 \226\130\172 \240\159\152\128", p.utf8)
      assert.are.equal("a\239\191\189b\239\191\189\239\191\189c", p.invalid)
      assert.are.equal("v", p['ke"y'])
      assert.are.equal(0.1, p.double)
      assert.is_true(p.yes)
      assert.is_false(p.no)
      assert.are.equal(('"x\1'):rep(2000), p.long_text)
    end
    assert.is_truthy(f.payload:find('"long":-9223372036854775808', 1, true))
    assert.is_truthy(f.payload:find('"int":-2147483648', 1, true))
    assert.is_truthy(f.payload:find('"nan":null', 1, true))
    local ev = cjson.decode(f.payload)
    assert.is_string(ev.processName)                 -- NULL: /proc/self/comm
    assert.are.equal("unknown", ev.processVer)
    H.stop_ok(d)
  end)

  it("keeps every parameter exact where a record outgrows its inline buffer", function()
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local how, code, out = probe(d.ipc, {"boundary"})
    assert.are.same({"exited", 0}, {how, code}, out)
    local ids = {}
    for len = 0, 300 do ids[#ids + 1] = 900000000 + len end
    local got = events_by_id(g, ids)
    for len = 0, 300 do
      local ev = got[900000000 + len]
      assert.is_table(ev, "event " .. len)
      local str = string.rep(string.char(97 + len % 26), len)
      local key = len % 3 ~= 0 and "s" or str
      assert.are.equal(str, ev.params[key], "the string of event " .. len)
      assert.are.equal(len, ev.params.n)
      assert.are.equal("end", ev.params.t)
      assert.are.equal(len % 2 == 1 and str or "b", ev.processName)
    end
    H.stop_ok(d)
  end)

  it("stamps each event with the wall-clock ms of its create, also when committed later", function()
    -- where the kernel's clocksource is the TSC the SDK stamps TSC readings
    -- and its sender converts them: the result must be the same wall clock
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local how, code, out = probe(d.ipc, {"stamps"})
    assert.are.same({"exited", 0}, {how, code}, out)
    local t = {}
    for v in out:gmatch("%d+") do t[#t + 1] = tonumber(v) end
    assert.are.equal(6, #t, out)
    local by_id = events_by_id(g, {800000000, 800000001, 800000002})
    for i = 0, 2 do
      local ts = by_id[800000000 + i].timestamp
      assert.is_true(ts >= t[2 * i + 1] and ts <= t[2 * i + 2],
                     string.format("event %d: timestamp %d outside [%d, %d]", i, ts, t[2 * i + 1], t[2 * i + 2]))
    end
    H.stop_ok(d)
  end)

  it("gives a forked child its own sender and pid, also when forked mid-use", function()
    -- the guest reads once the probe is done, and the probe's hammer thread
    -- sends until its second child has exited: on a loaded machine that is
    -- long enough to fill the default guest buffer, whose backpressure then
    -- holds a child's one event past its deinit bound (500 ms) and it is
    -- dropped, as the SDK promises. This spec is about fork, not that:
    -- room for all of them (seen once in the fresh-check's chroot)
    local d = H.start_daemon({config = {guest = {buffer_max_events = 1000000, buffer_max_bytes = "512M"}}})
    local g = H.guest_connected(d)
    -- Under ASan a child forked while the SDK's sender thread is alive can
    -- hang (about 1 run in 50 here): gdb on a hung child shows its new
    -- sender thread waiting in SizeClassAllocator64::GetFromAllocator for a
    -- mutex the parent's sender held at fork time. GCC 12's libsanitizer
    -- does not lock its allocator around fork (glibc's malloc does; LLVM's
    -- ASan does since 2022), so the plain build runs this spec.
    if H.BUILD:find("asan", 1, true) then
      pending("fork under ASan: GCC 12's ASan allocator is not fork-safe (see the comment)")
      H.stop_ok(d)
      return
    end
    local asan = false
    local how, code, out = probe(d.ipc, {"fork", "all"})
    assert.are.same({"exited", 0}, {how, code}, out)
    local c1, c2 = out:match("fork children (%d+) (%d+)")
    local by_id = events_by_id(g, {1, 2, 3, 4}, 20000)
    assert.are.equal(tonumber(c1), by_id[2].pid)
    if not asan then assert.are.equal(tonumber(c2), by_id[4].pid) end
    assert.are_not.equal(by_id[1].pid, by_id[2].pid)
    assert.are.equal(by_id[1].pid, by_id[3].pid)
    H.stop_ok(d)
  end)

  it("costs the caller nothing when the daemon is absent, and deinit is bounded", function()
    local how, code, out = probe("/nonexistent/polaris.sock", {"absent", "100000"})
    assert.are.same({"exited", 0}, {how, code}, out)
    local worst, dropped, deinit = out:match("worst_us=([%d.]+) dropped=(%d+) deinit_ms=([%d.]+)")
    assert.is_truthy(worst, out)
    -- the ring holds 16384 and the sender takes nothing from it while no
    -- daemon is reachable: the rest are dropped and counted, never waited for
    assert.are.equal(100000 - 16384, tonumber(dropped))
    assert.is_true(tonumber(deinit) < 2000, "deinit took " .. deinit .. " ms")
  end)

  it("holds events too big for a ring slot on the heap, up to 16 MiB, then refuses", function()
    -- 100 KiB values: each record is on the heap, 16 MiB holds 163 of them
    local how, code, out = probe("/nonexistent/polaris.sock", {"big", "400", "102400"})
    assert.are.same({"exited", 0}, {how, code}, out)
    local accepted, refused = out:match("accepted=(%d+) refused=(%d+)")
    assert.is_truthy(accepted, out)
    accepted, refused = tonumber(accepted), tonumber(refused)
    assert.are.equal(400, accepted + refused)
    local per = 102400 + 64                           -- value, key, names, tags
    assert.is_true(accepted >= math.floor(16 * 1048576 / per) - 1 and accepted <= 16 * 1048576 // 102400,
                   "accepted " .. accepted)
  end)

  it("reports its drops to the daemon once it is reachable again", function()
    local d = H.start_daemon({config = {guest = {buffer_max_events = 1000000}}})
    local g = H.guest_connected(d)
    ptest.kill(d.pid, "STOP")                        -- a stalled daemon
    local dir = ptest.mkdtemp()
    local out = dir .. "/out"
    local pid = ptest.spawn({PROBE, "late", "60000", "3000"},
                            {stdout = out, stderr = out, env = {POLARIS_SOCKET = d.ipc}})
    H.wait_for("the probe to commit", function() return H.read_file(out):find("committed", 1, true) end, 20000)
    ptest.kill(d.pid, "CONT")
    local dropped = tonumber(H.read_file(out):match("dropped=(%d+)"))
    assert.is_true(dropped > 0)
    local reported = 0
    local deadline = ptest.now_ms() + 20000
    while reported < dropped and ptest.now_ms() < deadline do
      local ev = g:event(1000)
      if ev and ev.eventId == 1000002 then reported = reported + ev.params.dropped end
    end
    assert.are.equal(dropped, reported)
    assert.are.same({"exited", 0}, {ptest.wait(pid, 10000)})
    os.execute("rm -rf '" .. dir .. "'")
    H.stop_ok(d)
  end)

  it("keeps polaris_deinit within 500 ms while the daemon is stalled mid-write", function()
    local d = H.start_daemon()
    ptest.kill(d.pid, "STOP")                        -- it accepts, it never reads
    local how, code, out = probe(d.ipc, {"late", "60000", "300"}, 20000)
    ptest.kill(d.pid, "CONT")
    assert.are.same({"exited", 0}, {how, code}, out)
    local ms = tonumber(out:match("deinit_ms=([%d.]+)"))
    assert.is_truthy(ms, out)
    -- 500 ms, plus a scheduling tick of slack for a loaded machine
    assert.is_true(ms <= 560, "deinit took " .. ms .. " ms")
    H.stop_ok(d)
  end)

  it("sends nothing twice across a 5 s daemon stall", function()
    -- the sender is cut off mid-write by a daemon that stops reading; it
    -- must neither give up on that connection (the frames already in it
    -- would arrive beside their copies) nor send a whole batch again
    local d = H.start_daemon({config = {guest = {heartbeat_ms = 60000}}})
    local g = H.guest_connected(d)
    ptest.kill(d.pid, "STOP")
    local dir = ptest.mkdtemp()
    local out = dir .. "/out"
    local pid = ptest.spawn({PROBE, "late", "50000", "9000"}, {stdout = out, stderr = out, env = {POLARIS_SOCKET = d.ipc}})
    H.wait_for("the probe to commit", function() return H.read_file(out):find("committed", 1, true) end, 20000)
    local t0 = ptest.now_ms()
    H.wait_for("5 s of stall", function() return ptest.now_ms() - t0 >= 5000 end, 6000)
    ptest.kill(d.pid, "CONT")
    local refused = tonumber(H.read_file(out):match("dropped=(%d+)"))
    local seen, dups, got, reported = {}, 0, 0, 0
    while got + reported < 50000 do
      local ev, f = g:event(5000)
      assert.is_table(ev, ("%d of 50000 arrived, %d reported dropped"):format(got, reported))
      if ev.eventId == 1000002 then
        reported = reported + ev.params.dropped
      else
        local id = f.payload:match('"eventId":(%d+)')
        if seen[id] then dups = dups + 1 end
        seen[id] = true
        got = got + 1
      end
    end
    assert.are.same({"exited", 0}, {ptest.wait(pid, 20000)}, H.read_file(out))
    assert.are.equal(0, dups)
    assert.are.equal(refused, reported)
    assert.are.equal(50000, got + reported)
    os.execute("rm -rf '" .. dir .. "'")
    H.stop_ok(d)
  end)

  -- Two layers keep SIGPIPE away from the app: the sender thread blocks all
  -- signals, and it writes with MSG_NOSIGNAL. This checks the behaviour.
  it("survives the daemon dying under it (no SIGPIPE in the app)", function()
    local d = H.start_daemon()
    local dir = ptest.mkdtemp()
    local out = dir .. "/out"
    local pid = ptest.spawn({PROBE, "stream", "1500"}, {stdout = out, stderr = out, env = {POLARIS_SOCKET = d.ipc}})
    H.wait_for("events to flow", function() return d:status().ipc.events_in > 1000 end, 10000)
    ptest.kill(d.pid, "KILL")
    d:stop()
    local how, code = ptest.wait(pid, 15000)
    assert.are.same({"exited", 0}, {how, code}, H.read_file(out))
    assert.is_truthy(H.read_file(out):find("streamed", 1, true))
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("validates polaris_report_raw", function()
    local d = H.start_daemon()
    local g = H.guest_connected(d)
    local _, _, bad = probe(d.ipc, {"raw", "{not json"})
    assert.is_truthy(bad:find("raw -1", 1, true), bad)
    local _, _, noid = probe(d.ipc, {"raw", '{"params":{}}'})
    assert.is_truthy(noid:find("raw -1", 1, true), noid)
    local _, _, ok = probe(d.ipc, {"raw", '{"eventId":18446744073709551615,"params":{"x":1}}'})
    assert.is_truthy(ok:find("raw 0", 1, true), ok)
    local _, f = g:event()
    assert.is_truthy(f.payload:find('"eventId":18446744073709551615', 1, true))
    H.stop_ok(d)
  end)
end)
