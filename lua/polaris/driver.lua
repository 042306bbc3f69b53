-- polaris/driver.lua - run inside every plugin's lua_State, before the
-- plugin's own code: the drivers the runtime calls a plugin's handlers
-- through (each in a coroutine, so a handler may wait), and the wrappers
-- that turn what a waiting call brings back into Lua values.
--
-- Built into polarisd and polaris-plugin-host (core/runtime/driver_lua.S);
-- core/runtime/bind_polaris.c runs it with the runtime's JSON decoder (exact
-- 64-bit integers, lua_json.c) and keeps the table it returns. Plugins never
-- see this table: only what bind_polaris makes of it.
local decode, sampled = ...
local select, type, error = select, type, error
local next, rawget, rawequal = next, rawget, rawequal

local M = {}

-- A handler that edits ev and returns nil loses its edits (nil means "as it
-- came"). Seen by comparing with a fresh decode, only when no handler
-- returned a table, with raw access only. A second decode costs as much as
-- the first, so only some such events are looked at: sampled() says which
-- (the runtime's count, core/runtime/plugin.c's nil_sampled: the first 100,
-- then one in 64), shared with the one-handler driver there. The warning
-- is meant for the plugin's author.

local function same(a, b, depth)
  if rawequal(a, b) then return true end
  if type(a) ~= "table" or type(b) ~= "table" or depth > 200 then return false end
  for k, v in next, a do
    if not same(v, rawget(b, k), depth + 1) then return false end
  end
  for k in next, b do
    if rawget(a, k) == nil then return false end
  end
  return true
end

-- Were a nil-returning handler's edits lost? (Also the one-handler
-- driver's, for the events sampled() picks.)
function M.edited(read, id, ev)
  return nil, not same(ev, read(id), 0)
end

local function unchanged(read, id, ev)
  if not sampled() then return nil end
  return M.edited(read, id, ev)
end

local function bad_result(r)
  error("on_event handler returned a " .. type(r) .. " (want the event, nil or false)", 0)
end

-- The strategy handlers for one event, in order (DESIGN 5.2): each gets the
-- event table; false drops it, a table replaces it, nil keeps it. Returns
-- false (dropped), the new event table, or nil plus whether nil hid edits.
-- read(id) gives the event's table with its eventId, a fresh one each
-- call (the runtime's reads it from the event's bytes as they came, lazily:
-- core/runtime/lua_event.c).
function M.strategy(read, id, ...)
  local ev = read(id)
  local changed = false
  for i = 1, select("#", ...) do
    local r = (select(i, ...))(ev)
    if r == false then return false end
    if type(r) == "table" then
      ev, changed = r, true
    elseif r ~= nil then
      bad_result(r)
    end
  end
  if changed then return ev end
  return unchanged(read, id, ev)
end

-- One handler, the usual case, has a driver in C (core/runtime/plugin.c's
-- strategy1): what it does is the same as strategy's, less the walk of
-- the arguments, and it hands back any result but nil as it is (finish_call
-- refuses what is not false or a table, in bad_result's words).

function M.command(json, fn, req)
  return fn(decode(json), req)
end

function M.message(json, fn, from, topic)
  fn(from, topic, decode(json))
end

-- c_fn parks the call until the core answers with JSON: nothing, a value,
-- or {__polaris_error = why}, raised at the plugin's call site.
function M.waiting(c_fn)
  return function(...)
    local raw = c_fn(...)
    if raw == nil or raw == "" then return end
    local r = decode(raw)
    if type(r) == "table" and r.__polaris_error then error(r.__polaris_error, 2) end
    return r
  end
end

-- The same for a command sent to the guest: its code, msg and data.
function M.answer(c_fn)
  return function(...)
    local r = decode(c_fn(...))
    if r.__polaris_error then error(r.__polaris_error, 2) end
    return r.code, r.msg, r.data
  end
end

return M
