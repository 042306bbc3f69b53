-- helpers.lua - what every functional spec needs: start the real polarisd on
-- temp sockets, talk to it as an app (LSP) and as the guest (PLP), and poll
-- for conditions with a deadline (never a fixed sleep).
local codec = require "polaris.codec"
local ptest = require "ptest"
local cjson = require "cjson"
local socket = require "socket"
local unix = require "socket.unix"

local H = {codec = codec, ptest = ptest, cjson = cjson}

H.BUILD = os.getenv("BUILD") or "build"
H.POLARISD = os.getenv("POLARISD") or (H.BUILD .. "/polarisd")
H.POLARISCTL = os.getenv("POLARISCTL") or (H.BUILD .. "/polarisctl")

-- Polls fn until it returns a truthy value; errors with what after timeout_ms.
function H.wait_for(what, fn, timeout_ms)
  local deadline = ptest.now_ms() + (timeout_ms or 5000)
  while true do
    local v = fn()
    if v then return v end
    if ptest.now_ms() > deadline then
      error("timed out waiting for " .. what, 2)
    end
    ptest.sleep_ms(5)
  end
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
H.read_file = read_file

-- Runs argv to completion: how ("exited"/"signaled"/nil), code, its output.
function H.run(argv, env, timeout_ms)
  local dir = ptest.mkdtemp()
  local out = dir .. "/out"
  local pid = assert(ptest.spawn(argv, {stdout = out, stderr = out, env = env}))
  local how, code = ptest.wait(pid, timeout_ms or 10000)
  if not how then ptest.kill(pid, "KILL"); ptest.wait(pid, 5000) end
  local text = read_file(out)
  os.execute("rm -rf '" .. dir .. "'")
  return how, code, text
end

-- An absolute path for one relative to the working directory.
function H.abs(path)
  if path:sub(1, 1) == "/" then return path end
  local p = io.popen("pwd")
  local cwd = p:read("l")
  p:close()
  return cwd .. "/" .. path
end

local function write_config(path, cfg)
  local f = assert(io.open(path, "w"))
  for section, kv in pairs(cfg) do
    f:write("[", section, "]\n")
    for k, v in pairs(kv) do f:write(k, " = ", tostring(v), "\n") end
  end
  f:close()
end

-------------------------------------------------------------------------------
-- Plugins written into a temp directory: {name = {lua = "...", manifest = {...}}}

function H.write_plugins(dir, plugins)
  os.execute("mkdir -p '" .. dir .. "'")
  for name, p in pairs(plugins) do
    local m = p.manifest or {}
    m.id = m.id or name
    m.version = m.version or "1.0.0"
    m.plugin_type = m.plugin_type or "Strategy"
    local f = assert(io.open(dir .. "/" .. name .. ".json", "w"))
    f:write(type(p.manifest_text) == "string" and p.manifest_text or cjson.encode(m))
    f:close()
    if p.lua then
      f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
      f:write(p.lua)
      f:close()
    end
  end
  return dir
end

function H.plugin_by_id(status, id)
  for _, p in ipairs(status.plugins) do if p.id == id then return p end end
end

-- A plugin that left the set (Unloading, then Unloaded), from status.
function H.leaving_by_id(status, id)
  for _, p in ipairs(status.plugins_leaving or {}) do if p.id == id then return p end end
end

-------------------------------------------------------------------------------
-- The daemon

local Daemon = {}
Daemon.__index = Daemon
local running = {}   -- daemons not stopped yet, so a failed test leaks none

-- opts.config: {section = {key = value}} merged over test defaults;
-- opts.guest: "unix" (default: no port to race for) or "tcp"; opts.args: extra argv.
-- opts.binary: another daemon binary (build/polarisd-hooks has the test hooks).
function H.start_daemon(opts)
  opts = opts or {}
  local dir = ptest.mkdtemp()
  local d = setmetatable({dir = dir, ipc = dir .. "/polaris.sock", log = opts.log or (dir .. "/polarisd.log")}, Daemon)
  if opts.guest ~= "tcp" then
    d.guest_path = dir .. "/guest.sock"
    d.guest_uri = "unix:" .. d.guest_path
  else
    d.guest_port = ptest.free_port()
    d.guest_uri = "tcp://127.0.0.1:" .. d.guest_port
  end
  -- quiet monitors by default: no host crash notices, no resource samples
  -- (a spec that tests them turns them on); events counted in other specs
  -- must be only the ones the spec sent
  local cfg = {daemon = {log_level = "debug"}, guest = {}, ipc = {}, commands = {},
               monitor = {process_events = "off"},
               ["plugin.resource_monitor"] = {interval_ms = 3600000}}
  if opts.plugins then
    -- the test's plugins, plus the shipped command plugins
    d.plugin_dir = H.write_plugins(dir .. "/plugins", opts.plugins)
    opts.args = opts.args or {}
    table.insert(opts.args, "--plugins")
    table.insert(opts.args, d.plugin_dir)
    table.insert(opts.args, "--plugins")
    table.insert(opts.args, opts.cwd and H.abs("plugins") or "plugins")
  end
  -- POLARIS_ISOLATION=process runs a spec's plugins in plugin hosts: the
  -- same specs then check that both modes give the same results
  if os.getenv("POLARIS_ISOLATION") then
    cfg.plugins = {isolation = os.getenv("POLARIS_ISOLATION")}
  end
  for section, kv in pairs(opts.config or {}) do
    cfg[section] = cfg[section] or {}
    for k, v in pairs(kv) do cfg[section][k] = v end
  end
  d.config_file = dir .. "/polarisd.conf"
  write_config(d.config_file, cfg)
  local argv = {opts.binary or H.POLARISD, "-c", d.config_file, "--ipc", d.ipc, "--guest", d.guest_uri, "--foreground"}
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  if opts.cwd then
    -- started elsewhere than the checkout: the shell execs, so the pid is the daemon's
    argv[1] = H.abs(argv[1])
    table.insert(argv, 1, opts.cwd)
    for i, a in ipairs({"/bin/sh", "-c", 'cd "$0" && exec "$@"'}) do table.insert(argv, i, a) end
  end
  if opts.valgrind or os.getenv("POLARIS_VALGRIND") then
    table.insert(argv, 1, "--error-exitcode=99")
    table.insert(argv, 1, "--leak-check=full")
    -- polarisd links jemalloc: memcheck must replace it as it would glibc's
    table.insert(argv, 1, "--soname-synonyms=somalloc=*jemalloc*")
    table.insert(argv, 1, "valgrind")
  end
  d.pid = assert(ptest.spawn(argv, {stderr = d.log, stdout = d.log, env = opts.env}))
  running[d] = true
  -- ready means answering status: every domain is up, not just the socket
  H.wait_for("polarisd to answer on " .. d.ipc, function()
    local s = unix.stream()
    local ok = s:connect(d.ipc)
    s:close()
    if not ok then
      local how = ptest.wait(d.pid, 0)
      if how then error("polarisd exited during start:\n" .. read_file(d.log)) end
      return false
    end
    return pcall(d.status, d)
  end, (opts.valgrind or os.getenv("POLARIS_VALGRIND")) and 60000 or 10000)
  return d
end

function Daemon:log_text() return read_file(self.log) end

-- SIGTERM, then wait; returns how ("exited"/"signaled"), code.
function Daemon:stop(timeout_ms)
  if self.stopped then return self.how, self.code end
  ptest.kill(self.pid, "TERM")
  local how, code = ptest.wait(self.pid, timeout_ms or 15000)
  if not how then
    ptest.kill(self.pid, "KILL")
    code = select(2, ptest.wait(self.pid, 5000))
    how = "hung"
  end
  self.stopped, self.how, self.code = true, how, code
  running[self] = nil
  if how ~= "exited" or code ~= 0 then
    -- keep the evidence of an unclean exit in the test output
    io.stderr:write("\n--- polarisd log (", tostring(how), " ", tostring(code), ") ---\n",
                    self:log_text():sub(-4000), "\n")
  end
  os.execute("rm -rf '" .. self.dir .. "'")
  return how, code
end

-- Stops the daemon and asserts a clean exit (status 0), showing its log if not.
function H.stop_ok(d)
  local log = d:log_text()
  local how, code = d:stop()
  assert(how == "exited" and code == 0,
         ("polarisd ended %s %s\n%s"):format(tostring(how), tostring(code), log:sub(-3000)))
end

-- Stops every daemon a test left running (an assertion failed before its
-- own stop). Spec files call it from after_each.
function H.stop_all()
  for d in pairs(running) do d:stop(20000) end   -- longer than any grace period
end

function Daemon:signal(name) return ptest.kill(self.pid, name) end

function Daemon:alive() return ptest.wait(self.pid, 0) == nil end

-- Status through a control request on the IPC socket.
function Daemon:status()
  local app = H.app(self)
  local r = app:call("host", "status", {})
  app:close()
  assert(r.code == 0, "status failed: " .. tostring(r.msg))
  return r.data
end

-------------------------------------------------------------------------------
-- A connected stream with a decoder (shared by app and guest)

local Conn = {}
Conn.__index = Conn

local function new_conn(sock, decoder, kind)
  sock:settimeout(0)
  return setmetatable({sock = sock, dec = decoder, kind = kind, closed = false}, Conn)
end

function Conn:send_raw(bytes)
  self.sock:settimeout(5)
  local i = 1
  while i <= #bytes do
    local n, err, partial = self.sock:send(bytes, i)
    if not n then
      if err == "timeout" then i = partial + 1 else self.sock:settimeout(0); return nil, err end
    else
      i = n + 1
    end
  end
  self.sock:settimeout(0)
  return true
end

-- Reads whatever is available within timeout_ms into the decoder. Returns
-- false once the peer has closed.
function Conn:pump(timeout_ms)
  if self.closed then return false end
  local r = socket.select({self.sock}, nil, (timeout_ms or 0) / 1000)
  if #r == 0 then return true end
  local data, err, partial = self.sock:receive(65536)
  local got = data or partial
  if got and #got > 0 then self.dec:feed(got) end
  if err == "closed" then self.closed = true return false end
  return true
end

-- Next frame within timeout_ms (nil on timeout or close).
function Conn:frame(timeout_ms)
  local deadline = ptest.now_ms() + (timeout_ms or 5000)
  while true do
    local f, err, code = self.dec:next()
    if f then return f end
    if f == false then
      self.skipped = (self.skipped or 0) + 1
    elseif err then
      error("protocol error from polarisd: " .. err .. " (" .. tostring(code) .. ")")
    else
      local left = deadline - ptest.now_ms()
      if left <= 0 then return nil, "timeout" end
      if not self:pump(math.min(left, 50)) and not self.dec:pending() then
        -- drain what was fed before the close
        f = self.dec:next()
        if f then return f end
        return nil, "closed"
      end
    end
  end
end

-- Waits until the peer closes the connection; true if it did within timeout.
function Conn:wait_closed(timeout_ms)
  return H.wait_for("the connection to close", function()
    return not self:pump(20)
  end, timeout_ms or 5000)
end

function Conn:close()
  if self.sock then self.sock:close() end
  self.closed = true
end

-------------------------------------------------------------------------------
-- The app side (LSP)

function H.app(d, path)
  local s = unix.stream()
  assert(s:connect(path or d.ipc))
  local c = new_conn(s, codec.lsp_decoder(), "app")
  c.next_req = 0
  return c
end

function H.event(id, extra)
  local ev = {eventId = id, timestamp = 1732262400123, pid = ptest.getpid(),
              processName = "spec", processVer = "1.0", params = {n = id}}
  for k, v in pairs(extra or {}) do ev[k] = v end
  return ev
end

function Conn:send_event(ev, req_id)
  local payload = type(ev) == "string" and ev or cjson.encode(ev)
  return self:send_raw(codec.lsp_encode(codec.LSP_EVENT_REPORT, req_id or 0, payload))
end

-- Sends a CMD_REQ; returns its req_id.
function Conn:request(target, action, args, timeout)
  self.next_req = self.next_req + 1
  local body = {target = target, action = action, args = args or {}, timeout = timeout}
  local payload = cjson.encode(body):gsub('"args":%[%]', '"args":{}')
  assert(self:send_raw(codec.lsp_encode(codec.LSP_CMD_REQ, self.next_req, payload)))
  return self.next_req
end

-- Reads CMD_RESP frames until the one for req_id; returns the decoded result.
function Conn:response(req_id, timeout_ms)
  local deadline = ptest.now_ms() + (timeout_ms or 5000)
  while true do
    local f, err = self:frame(math.max(deadline - ptest.now_ms(), 1))
    if not f then return nil, err end
    if f.type == codec.LSP_CMD_RESP and f.req_id == req_id then
      local r = cjson.decode(f.payload)
      r.raw = f.payload
      return r
    end
  end
end

function Conn:call(target, action, args, timeout, wait_ms)
  local id = self:request(target, action, args, timeout)
  return assert(self:response(id, wait_ms))
end

-------------------------------------------------------------------------------
-- The guest side (PLP)

function H.guest(d)
  local s
  if d.guest_path then
    s = unix.stream()
    assert(s:connect(d.guest_path))
  else
    s = assert(socket.tcp())
    assert(s:connect("127.0.0.1", d.guest_port))
  end
  return new_conn(s, codec.plp_decoder(), "guest")
end

-- Waits until the daemon reports the guest connected.
function H.guest_connected(d)
  local g = H.guest(d)
  H.wait_for("the daemon to see the guest", function()
    return d:status().guest.connected
  end)
  return g
end

-- Next EVENT_H2G within timeout_ms: returns the decoded event, the frame.
function Conn:event(timeout_ms)
  local deadline = ptest.now_ms() + (timeout_ms or 5000)
  while true do
    local f, err = self:frame(math.max(deadline - ptest.now_ms(), 1))
    if not f then return nil, err end
    if f.type == codec.PLP_EVENT_H2G then
      return cjson.decode(f.payload), f
    end
    if f.type ~= codec.PLP_HEARTBEAT then
      self.other = self.other or {}
      table.insert(self.other, f)
    end
  end
end

function Conn:send_plp(type_, seq, payload, opts)
  return self:send_raw(codec.plp_encode(type_, seq, payload, opts))
end

-- Reads frames until one of type_ (and seq, if given) arrives.
function Conn:expect(type_, seq, timeout_ms)
  local deadline = ptest.now_ms() + (timeout_ms or 5000)
  for i, f in ipairs(self.other or {}) do
    if f.type == type_ and (seq == nil or f.seq == seq) then
      table.remove(self.other, i)
      return f
    end
  end
  while true do
    local f, err = self:frame(math.max(deadline - ptest.now_ms(), 1))
    if not f then return nil, err end
    if f.type == type_ and (seq == nil or f.seq == seq) then return f end
  end
end

return H
