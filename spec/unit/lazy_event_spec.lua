-- lazy_event_spec.lua - the table a strategy handler gets for its event
-- (core/runtime/lua_event.c): filled as it is read, written back by
-- copying what nobody touched, and to every way a plugin has to look at a
-- table the same as the plain table the decoder makes. Differential: each
-- script runs on a lazy table and on a plain one with the plugins' own
-- next/pairs/rawget/rawset/getmetatable/setmetatable (codec.event_env, as
-- the sandbox has them), and what the two saw and encode to must agree.
local codec = require "polaris.codec"
local cjson = codec.plugin_cjson()   -- the plugins' cjson, from the same codec
local E = codec.event_env()
local null = codec.json_decode("null")

local EVENTS = {
  bench = '{"eventId":5,"timestamp":1732262400123,"pid":4,"uid":0,"processName":"bench",' ..
          '"processVer":"1","params":{"thread":1,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}',
  varied = '{"eventId":18446744073709551615, "timestamp":1,"params":{"n":9007199254740993,' ..
           '"f":1.50,"e":1e2,"s":"caf\\u00e9 \\"q\\"","nul":null,"arr":[1,[2,{"x":3}],"y"],' ..
           '"empty":{},"t":true,"neg":-7,"deep":{"a":{"b":{"c":[]}}}},"logf":"",' ..
           '"big":123456789012345678901234567890, "sp" : [ ] }',
  small = '{"params":{}}',
  empty = '{}',
  escaped_key = '{"a\\u0062":1,"params":{"x":1}}',
  twice = '{"a":1,"params":{"x":1},"a":2}',
  inner_escaped = '{"params":{"k\\"":1,"z":2},"q":3}',
  -- blanks between params' own members: its members are copied one by one
  blank_params = '{"eventId":2,"params": { "a" : 1 ,"b":[1, 2],\n "c":"x\\"}" ,"d":{ "e" :1}} ,"z":1}',
  kinds = '{"eventId":3, "a" : true,"b":false,"c":null,"d":[1,{"e":"f"}],"g":-1.5,' ..
          '"params":{"h":{"i":[]}},"k":"caf\\u00e9","timestamp":0}',
}
do -- more members than a lazy table takes: decoded whole
  local parts = {}
  for i = 1, 70 do parts[#parts + 1] = ('"k%d":%d'):format(i, i) end
  EVENTS.wide = "{" .. table.concat(parts, ",") .. ',"params":{"x":1}}'
end

-- a canonical text for a plain value (decoded output only: raw next)
local function canon(v)
  if type(v) ~= "table" then
    if v == null then return "null" end
    return math.type(v) == "float" and ("%.17g"):format(v) or tostring(v)
  end
  local keys = {}
  for k in next, v do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = tostring(k) .. "=" .. canon(v[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end

-- the first key any object in valid JSON text has twice, or nil (a decode
-- keeps the last, so comparing decoded values cannot see a key written
-- twice)
local function twice(text)
  local i, stack = 1, {}
  while i <= #text do
    local c = text:sub(i, i)
    if c == '"' then
      local j = i + 1
      while text:sub(j, j) ~= '"' do j = j + (text:sub(j, j) == "\\" and 2 or 1) end
      local s = text:sub(i, j)
      local top = stack[#stack]
      if top and top.object and text:sub(j + 1):match("^%s*:") then
        if top[s] then return s end
        top[s] = true
      end
      i = j + 1
    else
      if c == "{" or c == "[" then stack[#stack + 1] = {object = c == "{"}
      elseif c == "}" or c == "]" then stack[#stack] = nil end
      i = i + 1
    end
  end
end

-- what encoding a table says of it, as a value (numbers written either way
-- read back the same)
local function seen(v)
  if type(v) ~= "table" then return canon(v) end
  local text, err = codec.json_encode(v)
  if not text then return "error: " .. err end
  local dup = twice(text)
  if dup then return "key written twice: " .. dup .. " in " .. text end
  return canon(codec.json_decode(text))
end

-- lazy "indexed": as the worker makes an app's event, its members found by
-- the index the ingress's stamp noted (lib/json_index.h), not a scan
local function make(json, lazy)
  if lazy == "indexed" then
    local ev, indexed = codec.lazy_event(json, true)
    assert(indexed, "the index was not taken")
    return ev
  end
  if lazy then return assert(codec.lazy_event(json)) end
  return codec.json_decode(json)
end

-- the events above as the ingress writes them (those it accepts)
local STAMPED = {}
for name, json in pairs(EVENTS) do
  local stamped = codec.event_stamp(json, -1, 0)
  if stamped then STAMPED[name] = stamped end
end

local VALUES = {
  function() return 42 end, function() return "s" end, function() return false end,
  function() return 2.5 end, function() return nil end, function() return {a = 1, b = {2, 3}} end,
  function() return null end, function() return math.maxinteger end, function() return {} end,
}
local KEYS = {"eventId", "timestamp", "pid", "processName", "params", "logf", "big", "a", "q",
              "k1", "nope", "sp", "uid"}
local NKEYS = {"thread", "pad", "n", "s", "arr", "x", "z", "new", "deep", "empty"}

-- the operations a script is made of: each gets the event, a log, and its
-- arguments (drawn once, so both runs do the same)
local OPS = {
  read = function(ev, log, k) log[#log + 1] = "read " .. k .. " " .. seen(ev[k]) end,
  read_nested = function(ev, log, k, nk)
    local t = ev[k]
    if type(t) == "table" then log[#log + 1] = "nested " .. nk .. " " .. seen(t[nk]) end
  end,
  write = function(ev, _, k, v) ev[k] = v() end,
  write_nested = function(ev, _, k, nk, v)
    local t = ev[k]
    if type(t) == "table" then t[nk] = v() end
  end,
  delete = function(ev, _, k) ev[k] = nil end,
  rawget = function(ev, log, k) log[#log + 1] = "rawget " .. k .. " " .. seen(E.rawget(ev, k)) end,
  rawset = function(ev, _, k, v) E.rawset(ev, k, v()) end,
  next = function(ev, log)
    -- which key comes first is the table's hash order: only whether one does
    log[#log + 1] = "next " .. tostring(E.next(ev) ~= nil)
  end,
  pairs = function(ev, log)
    local t = {}
    for k, v in E.pairs(ev) do t[#t + 1] = tostring(k) .. "=" .. seen(v) end
    table.sort(t)
    log[#log + 1] = "pairs " .. table.concat(t, ";")
  end,
  len = function(ev, log) log[#log + 1] = "len " .. #ev end,
  getmetatable = function(ev, log) log[#log + 1] = "mt " .. type(E.getmetatable(ev)) end,
  setmetatable = function(ev, log)
    -- strings only: an __index answering every integer would make ipairs endless
    E.setmetatable(ev, {__index = function(_, k) if type(k) == "string" then return "dflt-" .. k end end})
    log[#log + 1] = "after mt " .. seen(ev.nope) .. " " .. seen(ev.processName)
  end,
  insert = function(ev) table.insert(ev, "appended") end,
  ipairs = function(ev, log)
    local n = 0
    for _ in ipairs(ev) do n = n + 1 end
    log[#log + 1] = "ipairs " .. n
  end,
  encode = function(ev, log) log[#log + 1] = "encode " .. seen(ev) end,
  cjson = function(ev, log)
    local ok, text = pcall(cjson.encode, ev)
    log[#log + 1] = "cjson " .. (ok and canon(codec.json_decode(text)) or "error")
  end,
}
local OP_NAMES = {}
for name in pairs(OPS) do OP_NAMES[#OP_NAMES + 1] = name end
table.sort(OP_NAMES)

-- scripts after which the write-back sent the text itself (lazy_as_text)
local as_text_runs = 0

local function run(json, script, lazy)
  local ev, log = make(json, lazy), {}
  for _, step in ipairs(script) do OPS[step[1]](ev, log, table.unpack(step, 2)) end
  if lazy and codec.lazy_as_text(ev, json) then
    -- the text stands for the table only if the table says what it says
    as_text_runs = as_text_runs + 1
    assert.are.equal(canon(codec.json_decode(json)), seen(ev), "sent as it came: " .. json)
  end
  log[#log + 1] = "final " .. seen(ev)
  log[#log + 1] = "final cjson " .. (function()
    local ok, text = pcall(cjson.encode, ev)
    return ok and canon(codec.json_decode(text)) or "error"
  end)()
  return log
end

local function describe_script(script)
  local out = {}
  for _, s in ipairs(script) do
    local args = {}
    for i = 2, #s do args[#args + 1] = type(s[i]) == "function" and "v" or tostring(s[i]) end
    out[#out + 1] = s[1] .. "(" .. table.concat(args, ",") .. ")"
  end
  return table.concat(out, " ")
end

describe("a strategy's event table", function()
  it("is lazy for an event that can be, a plain table otherwise", function()
    assert.is_not_nil(codec.lazy_state(codec.lazy_event(EVENTS.bench)))
    assert.is_not_nil(codec.lazy_state(codec.lazy_event(EVENTS.empty)))
    assert.is_nil(codec.lazy_state(codec.lazy_event(EVENTS.escaped_key)))
    assert.is_nil(codec.lazy_state(codec.lazy_event(EVENTS.twice)))
    assert.is_nil(codec.lazy_state(codec.lazy_event(EVENTS.wide)))
    assert.are.equal(2, codec.lazy_event(EVENTS.twice).a)      -- the last one, as decoded
    local nil_, err = codec.lazy_event('{"a":')
    assert.is_nil(nil_)
    assert.is_string(err)
    assert.is_nil((codec.lazy_event('[1,2]')))                -- an event is an object
  end)

  it("decodes only the members read and copies the others byte for byte", function()
    local ev = codec.lazy_event(EVENTS.varied)
    assert.are.equal("", ev.logf)
    assert.are.equal(1 << 3, codec.lazy_state(ev))            -- logf is member 4
    local text = codec.json_encode(ev)
    -- untouched members as written, spacing inside values included
    assert.truthy(text:find('"s":"caf\\u00e9 \\"q\\""', 1, true), text)
    assert.truthy(text:find('"f":1.50', 1, true), text)
    assert.truthy(text:find('"big":123456789012345678901234567890', 1, true), text)
    assert.truthy(text:find('"eventId":18446744073709551615', 1, true), text)
    assert.truthy(text:find('"sp":[ ]', 1, true), text)
    -- a member set is written as the table has it, in its place
    -- members read or set come after the ones copied (the table's order)
    ev.timestamp = 7
    ev.added = true
    text = codec.json_encode(ev)
    assert.truthy(text:find('^{"eventId":18446744073709551615,"params":'), text)
    assert.truthy(text:find(',"timestamp":7', 1, true), text)
    assert.truthy(text:find(',"added":true', 1, true), text)
  end)

  it("makes an object member lazy too, so one key set in params leaves the rest as written", function()
    local ev = codec.lazy_event(EVENTS.varied)
    ev.params.seen = true
    assert.is_not_nil(codec.lazy_state(ev.params))
    local text = codec.json_encode(ev)
    assert.truthy(text:find('"params":{"n":9007199254740993,"f":1.50,"e":1e2,', 1, true), text)
    assert.truthy(text:find(',"seen":true}', 1, true), text)
    assert.are.equal(9007199254740993, ev.params.n)
    assert.are.equal("integer", math.type(ev.params.n))
  end)

  -- where the text as written and a decoded-then-encoded table differ, an
  -- untouched member goes on as written, as a whole event no strategy
  -- changed does
  it("copies what a decode would change as the app wrote it", function()
    local ev = codec.lazy_event('{"a":[],"b":18446744073709551616,"c":-0,"d":{"e":[]}}')
    ev.x = 1
    local text = codec.json_encode(ev)
    assert.truthy(text:find('"a":[],"b":18446744073709551616,"c":-0,"d":{"e":[]}', 1, true), text)
    local plain = codec.json_decode('{"a":[]}')
    assert.are.equal('{"a":{}}', codec.json_encode(plain))    -- what a decode makes of it
  end)

  it("holds a copied member to the encoder's depth, as a table written there would be", function()
    for n = 62, 66 do
      local json = '{"d":' .. string.rep("[", n) .. string.rep("]", n) .. ',"s":"[[[[","x":1}'
      local lazy, plain = codec.lazy_event(json), codec.json_decode(json)
      lazy.x, plain.x = 2, 2
      for _, wrap in ipairs({false, true}) do
        local a, ea = codec.json_encode(wrap and {lazy} or lazy)
        local b, eb = codec.json_encode(wrap and {plain} or plain)
        assert.are.equal(b == nil, a == nil, ("n %d wrapped %s: %s / %s"):format(n, wrap, ea, eb))
        assert.are.equal(eb, ea)
        local ca, cb = pcall(cjson.encode, wrap and {lazy} or lazy), pcall(cjson.encode, wrap and {plain} or plain)
        assert.are.equal(cb, ca)
      end
    end
  end)

  it("serves as a metatable with its members", function()
    local ev = codec.lazy_event('{"params":{"__index":{"x":1},"__metatable":"locked"}}')
    local t = E.setmetatable({}, ev.params)
    assert.are.equal(1, t.x)
    assert.are.equal("locked", E.getmetatable(t))
  end)

  it("never brings back a member once deleted, read or not", function()
    local ev = codec.lazy_event(EVENTS.bench)
    ev.pid = nil                                              -- never read
    assert.is_nil(ev.pid)
    local _ = ev.uid
    ev.uid = nil                                              -- read, then deleted
    assert.is_nil(ev.uid)
    local back = codec.json_decode(codec.json_encode(ev))
    assert.is_nil(back.pid)
    assert.is_nil(back.uid)
    assert.are.equal("bench", back.processName)
  end)

  it("keeps what a member table needs alive after the event table is gone", function()
    local p = codec.lazy_event(EVENTS.varied).params
    for _ = 1, 3 do collectgarbage("collect") end
    for _ = 1, 2000 do codec.lazy_event(EVENTS.bench) end   -- garbage for the collector
    for _ = 1, 3 do collectgarbage("collect") end
    assert.are.equal('caf\u{e9} "q"', p.s)
    assert.are.equal(3, p.arr[2][2].x)
    assert.truthy(codec.json_encode(p):find('"f":1.50', 1, true))
  end)

  it("shows a plugin no metatable and no key of its own", function()
    local ev = codec.lazy_event(EVENTS.bench)
    assert.is_nil(E.getmetatable(ev))
    assert.is_nil(codec.lazy_state(ev))                       -- looking settled it
    local ev2 = codec.lazy_event(EVENTS.bench)
    local rawnext = E.pairs({})                               -- the iterator pairs hands out
    local keys = {}
    local k = rawnext(ev2)
    while k ~= nil do
      assert.are.equal("string", type(k))
      keys[#keys + 1] = k
      k = rawnext(ev2, k)
    end
    assert.are.equal(7, #keys)
  end)

  it("still runs a plugin's own __pairs", function()
    local t = setmetatable({}, {__pairs = function() return function(_, k) if not k then return 1, "one" end end, nil, nil end})
    local got = {}
    for k, v in E.pairs(t) do got[k] = v end
    assert.are.same({"one"}, got)
  end)

  it("encodes as an array, like a plain table, once its members are gone and items added", function()
    for _, lazy in ipairs({true, false}) do
      local ev = make('{"a":1}', lazy)
      ev.a = nil
      ev[1] = "x"
      ev[2] = "y"
      assert.are.equal('["x","y"]', codec.json_encode(ev))
      assert.are.equal('["x","y"]', cjson.encode(ev))
    end
  end)

  it("sends the text itself only for its own table, read and not changed", function()
    local function fresh() return codec.lazy_event(EVENTS.bench) end
    local yes = {
      function() end,
      function(ev) local _, _, _, _ = ev.processName, ev.eventId, ev.pid, ev.uid end,
      function(ev) local _, _ = ev.params.thread, ev.params.pad end,
      function(ev) ev.processName = ev.processName end,             -- read, then the same
      function(ev) ev.params = ev.params end,
      function(ev) local p = ev.params; p.thread = p.thread end,
    }
    local no = {
      function(ev) ev.params.seen = true end,
      function(ev) ev.pid = nil end,                                  -- never read
      function(ev) local _ = ev.pid; ev.pid = nil end,                -- read, then deleted
      function(ev) ev.extra = 1 end,
      function(ev) local _ = ev.processName; ev.processName = "other" end,
      function(ev) local _ = ev.timestamp; ev.timestamp = 1732262400123.0 end,   -- a float now
      function(ev) local _ = ev.timestamp; ev.timestamp = nil; ev.timestamp = 1732262400123 end,
      function(ev) ev.timestamp = 1732262400123 end,                  -- set unread: noted
      function(ev) ev.params = {thread = 1, pad = ev.params.pad} end,  -- equal, not the same
      function(ev) for _ in E.pairs(ev) do end end,                   -- settled: plain now
      function(ev) for _ in E.pairs(ev.params) do end end,
      function(ev) ev.params = codec.lazy_event(EVENTS.bench).params end,   -- another event's
      function(ev) local p = ev.params; p.thread = 2 end,
    }
    for i, f in ipairs(yes) do
      local ev = fresh()
      f(ev)
      assert.is_true(codec.lazy_as_text(ev, EVENTS.bench), "yes " .. i)
      assert.is_false(codec.lazy_as_text(ev, EVENTS.bench .. " "), "yes " .. i .. ", other text")
    end
    for i, f in ipairs(no) do
      local ev = fresh()
      f(ev)
      assert.is_false(codec.lazy_as_text(ev, EVENTS.bench), "no " .. i)
    end
    assert.is_false(codec.lazy_as_text(fresh().params, EVENTS.bench))  -- a member, not the event
    assert.is_false(codec.lazy_as_text(codec.json_decode(EVENTS.bench), EVENTS.bench))
    assert.is_false(codec.lazy_as_text(fresh(), EVENTS.small))          -- another event's text
    -- an empty object or array is a plain table: still empty, it says the same
    local text = '{"eventId":1,"params":{ },"list":[]}'
    local ev = codec.lazy_event(text)
    assert.is_nil(ev.params.level)
    assert.are.equal(0, #ev.list)
    assert.is_true(codec.lazy_as_text(ev, text))
    ev.params.level = "debug"
    assert.is_false(codec.lazy_as_text(ev, text))
    ev = codec.lazy_event(text)
    setmetatable(ev.list, {})
    assert.is_false(codec.lazy_as_text(ev, text))
  end)

  it("finds an app's event's members by its index as a scan finds them", function()
    assert.is_not_nil(STAMPED.bench)
    assert.is_not_nil(STAMPED.varied)
    for name, json in pairs(STAMPED) do
      local ev, indexed = codec.lazy_event(json, true)
      local plain = codec.json_decode(json)
      assert.are.equal(name ~= "escaped_key" and name ~= "wide", indexed, name)
      for k, v in pairs(plain) do assert.are.equal(seen(v), seen(ev[k]), name .. " " .. k) end
      assert.are.equal(canon(plain), seen(ev), name)
    end
  end)

  it("validates a member an index found before decoding it, so a wrong index cannot misread", function()
    local json = '{"eventId":1,"a":{"x":"p\\"q","y":2},"b":[1,"]"]}'
    local at = {1, json:find('"a"', 1, true) - 1, json:find('"y"', 1, true) - 1}
    local ev = assert(codec.lazy_event(json, at))    -- the checks where members meet pass
    assert.are.equal(1, ev.eventId)
    local ok, err = pcall(function() return ev.a end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("its index is wrong", 1, true), err)
    -- an index that does not fit is not taken: the text is scanned
    local ev2, taken = codec.lazy_event(json, {1, 5})
    assert.is_false(taken)
    assert.are.equal(2, ev2.a.y)
    assert.are.equal("]", ev2.b[2])
  end)

  it("validates a nested object's member from an index's text before decoding it", function()
    -- the nested object's members are found without validating it (its
    -- text is the root's); a wrong index, or text that is not JSON, is
    -- still caught before a value is decoded
    local json = '{"eventId":1,"a":{"x":tru,"y":2}}'
    local ev = assert(codec.lazy_event(json, {1, json:find('"a"', 1, true) - 1}))
    local a = ev.a
    assert.are.equal(2, a.y)
    local ok, err = pcall(function() return a.x end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("its index is wrong", 1, true), err)
  end)

  local RUNS = {}
  for name, json in pairs(EVENTS) do RUNS[#RUNS + 1] = {name, json, true} end
  for _, name in ipairs({"bench", "varied", "kinds"}) do
    RUNS[#RUNS + 1] = {"indexed " .. name, STAMPED[name], "indexed"}
  end
  for _, r in ipairs(RUNS) do
    local name, json, lazy = r[1], r[2], r[3]
    it("agrees with the plain table on 1,500 random scripts: " .. name, function()
      math.randomseed(#json * 7919)
      for n = 1, 1500 do
        local script = {}
        for _ = 1, math.random(1, 10) do
          local op = OP_NAMES[math.random(#OP_NAMES)]
          script[#script + 1] = {op, KEYS[math.random(#KEYS)], NKEYS[math.random(#NKEYS)],
                                 VALUES[math.random(#VALUES)]}
          -- each op takes the arguments it needs, in this order
          local s = script[#script]
          if op == "read_nested" or op == "write_nested" then
            if op == "read_nested" then s[4] = nil end
          elseif op == "write" or op == "rawset" then
            s[3], s[4] = s[4], nil
          elseif op == "read" or op == "delete" or op == "rawget" then
            s[3], s[4] = nil, nil
          else
            s[2], s[3], s[4] = nil, nil, nil
          end
        end
        local a, b = run(json, script, lazy), run(json, script, false)
        if not (#a == #b and table.concat(a, "\n") == table.concat(b, "\n")) then
          assert.are.same(b, a, ("script %d: %s"):format(n, describe_script(script)))
        end
      end
    end)
  end

  it("sent the text itself after some of those scripts (the check above was put to work)", function()
    assert.is_true(as_text_runs >= 20, "only " .. as_text_runs)
  end)
end)
