-- run.lua - `make bench`: every figure is a ratio against a baseline measured
-- in the same run, interleaved round by round (the machine is shared and
-- noisy). Writes bench/results.json.
local H = require "helpers"
local cjson, ptest = H.cjson, H.ptest

local BUILD = H.BUILD
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "5")
local THREADS, PER_THREAD = 4, tonumber(os.getenv("BENCH_EVENTS") or "50000")

local function run_loadgen(unix_path, port, proto)
  local out = os.tmpname()
  local pid = assert(ptest.spawn({BUILD .. "/bench/loadgen", unix_path, tostring(port),
                                  tostring(THREADS), tostring(PER_THREAD), proto},
                                 {stdout = out, stderr = out}))
  local res, rc = ptest.wait(pid, 120000)
  local text = H.read_file(out)
  os.remove(out)
  assert(res == "exited" and rc == 0, "loadgen failed: " .. tostring(text))
  return cjson.decode(text).events_per_s
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function spread(t)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(t) do lo = math.min(lo, v); hi = math.max(hi, v) end
  return lo, hi
end

-- the relay (baseline) and the daemon, each started once
local dir = ptest.mkdtemp()
local relay_port = ptest.free_port()
local relay_sock = dir .. "/relay.sock"
local relay = assert(ptest.spawn({BUILD .. "/bench/relay", relay_sock, tostring(relay_port)},
                                {stdout = "/dev/null", stderr = "/dev/null"}))
H.wait_for("the relay", function()
  local s = require("socket.unix").stream()
  local ok = s:connect(relay_sock)
  s:close()
  return ok
end)
local big = {daemon = {log_level = "warn"}, guest = {buffer_max_events = 10000000, buffer_max_bytes = "4G"}}
local d = H.start_daemon({guest = "tcp", config = big})
-- the same daemon with one trivial Lua strategy on every event
local dl = H.start_daemon({guest = "tcp", config = big, plugins = {
  trivial = {lua = [[polaris.on_event("*", function(ev) ev.params.seen = true; return ev end)]]},
}})

local relay_rates, e2e_rates, ratios, lua_rates, lua_ratios = {}, {}, {}, {}, {}
local ok, err = pcall(function()
  for round = 1, ROUNDS do
    local r = run_loadgen(relay_sock, relay_port, "lsp")
    local e = run_loadgen(d.ipc, d.guest_port, "plp")
    local l = run_loadgen(dl.ipc, dl.guest_port, "plp")
    relay_rates[round], e2e_rates[round], ratios[round] = r, e, e / r
    lua_rates[round], lua_ratios[round] = l, l / e
    io.write(string.format("round %d: relay %.0f ev/s, polarisd %.0f ev/s (%.2f), with a Lua strategy %.0f ev/s (%.2f)\n",
                           round, r, e, e / r, l, l / e))
  end
end)
if not ok then
  d:stop()
  dl:stop()
  ptest.kill(relay, "TERM")
  ptest.wait(relay, 5000)
  error(err)
end

local st = d:status()
local how, code = d:stop()
assert(how == "exited" and code == 0, "polarisd did not stop cleanly")
dl:stop()

-- memory: a daemon with the default plugins, then with 20 more idle ones
local function rss_kib(pid)
  for line in io.lines("/proc/" .. pid .. "/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end
local idle = H.start_daemon({})
local rss_idle = rss_kib(idle.pid)
idle:stop()
local many = {}
for i = 1, 20 do
  many["idle" .. i] = {lua = [[polaris.on_event(1, function(ev) return ev end)]]}
end
local twenty = H.start_daemon({plugins = many})
local rss_twenty = rss_kib(twenty.pid)
local per_plugin_bytes = 0
for _, p in ipairs(twenty:status().plugins) do
  if p.id:match("^idle") then per_plugin_bytes = per_plugin_bytes + p.memory_bytes end
end
twenty:stop()
ptest.kill(relay, "TERM")
ptest.wait(relay, 5000)
os.execute("rm -rf '" .. dir .. "'")

-- the caller's cost: SDK vs one blocking send() per event vs syslog(3),
-- interleaved against one daemon (its guest buffer holds everything)
local function sdk_bench(args)
  local out = os.tmpname()
  local argv = {BUILD .. "/bench/sdk_bench"}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local pid = assert(ptest.spawn(argv, {stdout = out, stderr = out}))
  local res, rc = ptest.wait(pid, 120000)
  local text = H.read_file(out)
  os.remove(out)
  assert(res == "exited" and rc == 0, "sdk_bench failed: " .. text)
  return cjson.decode(text)
end
local sd = H.start_daemon({config = big})
local sdk_med, sdk_p999, send_med, syslog_med, sdk_ratio = {}, {}, {}, {}, {}
for round = 1, ROUNDS do
  local a = sdk_bench({"sdk", sd.ipc, "100000"})
  local b = sdk_bench({"send", sd.ipc, "100000"})
  local c = sdk_bench({"syslog", "100000"})
  sdk_med[round], sdk_p999[round] = a.median_ns, a.p999_ns
  send_med[round], syslog_med[round] = b.median_ns, c.median_ns
  sdk_ratio[round] = b.median_ns / a.median_ns
  io.write(string.format("round %d: sdk %d ns (p99.9 %d), send() %d ns, syslog %d ns\n",
                         round, a.median_ns, a.p999_ns, b.median_ns, c.median_ns))
end
sd:stop()
local absent = sdk_bench({"absent", "1000000"})

local cores = tonumber(io.popen("nproc"):read("l"))
local git = io.popen("git rev-parse --short=12 HEAD 2>/dev/null"):read("l") or "unknown"
local results = {
  cores = cores, git = git, rounds = ROUNDS, events_per_run = THREADS * PER_THREAD,
  e2e_events_per_s = median(e2e_rates),
  relay_events_per_s = median(relay_rates),
  e2e_vs_relay_ratio = median(ratios),
  e2e_dropped = st.guest.dropped,
  e2e_lua_events_per_s = median(lua_rates),
  lua_vs_plain_ratio = median(lua_ratios),
  rss_idle_kib = rss_idle,
  rss_per_plugin_kib = (rss_twenty - rss_idle) / 20,
  lua_state_bytes_per_plugin = per_plugin_bytes / 20,
  sdk_ns_median = median(sdk_med),
  sdk_ns_p999 = median(sdk_p999),
  syscall_client_ns_median = median(send_med),
  syslog_ns_median = median(syslog_med),
  sdk_vs_syscall_ratio = median(sdk_ratio),
  sdk_absent_worst_us = absent.worst_ns / 1000,
}
local lo, hi = spread(ratios)
print()
print(string.format("%-24s %14s   %s", "figure", "median", "spread (min..max)"))
local function row(name, vals, fmt)
  local a, b = spread(vals)
  print(string.format("%-24s " .. fmt .. "   " .. fmt .. " .. " .. fmt, name, median(vals), a, b))
end
row("relay_events_per_s", relay_rates, "%14.0f")
row("e2e_events_per_s", e2e_rates, "%14.0f")
print(string.format("%-24s %14.2f   %.2f .. %.2f   (target >= 0.5)", "e2e_vs_relay_ratio", results.e2e_vs_relay_ratio, lo, hi))
row("e2e_lua_events_per_s", lua_rates, "%14.0f")
row("lua_vs_plain_ratio", lua_ratios, "%14.2f")
print(string.format("%-24s %14.0f", "rss_idle_kib", rss_idle))
print(string.format("%-24s %14.1f   (Lua state alone: %.1f KiB)", "rss_per_plugin_kib",
                    results.rss_per_plugin_kib, results.lua_state_bytes_per_plugin / 1024))
row("sdk_ns_median", sdk_med, "%14.0f")
row("sdk_ns_p999", sdk_p999, "%14.0f")
row("syscall_client_ns_median", send_med, "%14.0f")
row("syslog_ns_median", syslog_med, "%14.0f")
print(string.format("%-24s %14.1f   (target >= 20)", "sdk_vs_syscall_ratio", results.sdk_vs_syscall_ratio))
print(string.format("%-24s %14.1f   (target < 50; 10^6 calls, no daemon)", "sdk_absent_worst_us", results.sdk_absent_worst_us))
local f = assert(io.open("bench/results.json", "w"))
f:write(cjson.encode(results), "\n")
f:close()
print("wrote bench/results.json")
