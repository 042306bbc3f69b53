-- plugin_test.lua - test a plugin from busted in a few lines:
--
--   local plugin_test = require("polaris.plugin_test")
--   it("tags crash events", function()
--     local r = plugin_test.run("strategies/tagger.lua", {{eventId = 9001, params = {}}},
--                               {config = {tag = "x"}})
--     assert.is_true(r.ok, r.log)
--     assert.are.equal("x", r.events[1].params.tag)
--   end)
--
-- It runs `polarisctl plugin-test`: a real polarisd on temporary sockets
-- with just that plugin (and its dependencies beside it), so the plugin
-- runs in the sandbox, limits and API it has in production. Returns
-- {ok = bool, events = {...forwarded, decoded...}, log = text}.
-- Options: config (the plugin's [plugin.<id>] settings), conf (a whole
-- config file), polarisctl / polarisd (paths; default $POLARISCTL /
-- $POLARISD, then PATH), timeout_ms.
local cjson = require("cjson")

local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

function M.run(plugin, events, opts)
  opts = opts or {}
  local id = plugin:match("([^/]+)%.lua$") or plugin:match("([^/]+)%.json$") or plugin
  local tmp = os.tmpname()
  local ev_file, conf_file, err_file = tmp .. ".events.json", tmp .. ".conf", tmp .. ".err"
  write(ev_file, cjson.encode(events))
  local conf = opts.conf and assert(io.open(opts.conf)):read("a") or ""
  if opts.config then
    conf = conf .. "\n[plugin." .. id .. "]\n"
    for k, v in pairs(opts.config) do conf = conf .. k .. " = " .. tostring(v) .. "\n" end
  end
  write(conf_file, conf)
  local argv = {opts.polarisctl or os.getenv("POLARISCTL") or "polarisctl", "plugin-test", plugin,
                ev_file, "-c", conf_file}
  local polarisd = opts.polarisd or os.getenv("POLARISD")
  if polarisd then argv[#argv + 1] = "--polarisd"; argv[#argv + 1] = polarisd end
  if opts.timeout_ms then argv[#argv + 1] = "--timeout"; argv[#argv + 1] = tostring(opts.timeout_ms) end
  local cmd = {}
  for i, a in ipairs(argv) do cmd[i] = shell_quote(a) end
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>" .. shell_quote(err_file)))
  local out = p:read("a")
  local ok = p:close()
  local f = io.open(err_file)
  local log = f and f:read("a") or ""
  if f then f:close() end
  for _, path in ipairs({tmp, ev_file, conf_file, err_file}) do os.remove(path) end
  local result = {ok = ok == true, events = {}, log = log}
  for line in out:gmatch("[^\n]+") do
    local good, ev = pcall(cjson.decode, line)
    if good then result.events[#result.events + 1] = ev end
  end
  return result
end

return M
