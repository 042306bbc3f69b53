-- driver_spec.lua - lua/polaris/driver.lua on its own, with the runtime's
-- JSON decoder (the one the daemon hands it): the order of strategy
-- handlers, what each return means, the nil-with-edits check and its
-- sampling, and how waiting calls turn the core's answers into values.
local codec = require "polaris.codec"

-- sampled: the runtime's count of nils to check (plugin.c's nil_sampled);
-- here every nil is checked unless a spec says otherwise
local function load_driver(sampled)
  local chunk = assert(loadfile("lua/polaris/driver.lua", "t"))
  return chunk(codec.json_decode, sampled or function() return true end)
end

local EV = '{"eventName":"crash","params":{"n":9007199254740993,"s":"x"},"pid":4}'
-- what the runtime hands the driver for an event: read(id) decodes it anew
-- and sets its eventId
local function R(json)
  return function(id) local t = codec.json_decode(json); t.eventId = id; return t end
end

describe("driver.strategy", function()
  it("runs the handlers in order on one event table, with eventId set", function()
    local d, seen = load_driver(), {}
    local function h(tag) return function(ev) seen[#seen + 1] = tag .. ev.eventId; ev.params[tag] = true end end
    local r, edited = d.strategy(R(EV), 77, h("a"), h("b"))
    assert.is_nil(r)
    assert.is_true(edited)              -- edits, then nil: lost, so reported
    assert.are.same({"a77", "b77"}, seen)
  end)

  it("keeps 64-bit integers exact", function()
    local d = load_driver()
    local got
    d.strategy(R(EV), 1, function(ev) got = ev.params.n end)
    assert.are.equal(math.type(got), "integer")
    assert.are.equal(9007199254740993, got)
  end)

  it("stops at false and runs nothing after it", function()
    local d, ran = load_driver(), false
    assert.is_false(d.strategy(R(EV), 1, function() return false end, function() ran = true end))
    assert.is_false(ran)
  end)

  it("passes a returned table on to the next handler and returns the last", function()
    local d = load_driver()
    local r = d.strategy(R(EV), 5,
      function() return {eventName = "replaced"} end,
      function(ev) assert.are.equal("replaced", ev.eventName); ev.extra = 1; return ev end)
    assert.are.same({eventName = "replaced", extra = 1}, r)
  end)

  it("refuses any other result with the handler's type named", function()
    local d = load_driver()
    local ok, err = pcall(d.strategy, R(EV), 1, function() return 42 end)
    assert.is_false(ok)
    assert.are.equal("on_event handler returned a number (want the event, nil or false)", err)
  end)

  it("reports no edits for a handler that only reads", function()
    local d = load_driver()
    local r, edited = d.strategy(R(EV), 3, function(ev) local _ = ev.params.s end)
    assert.is_nil(r)
    assert.is_false(edited)
  end)

  it("looks for lost edits only in the events the runtime samples, and reads nothing for the others", function()
    local asked, reads = 0, 0
    local d = load_driver(function() asked = asked + 1; return asked % 2 == 1 end)
    local counting = function(id) reads = reads + 1; return R(EV)(id) end
    local edit = function(ev) ev.params.s = "changed" end
    local reported = 0
    for _ = 1, 10 do
      local _, edited = d.strategy(counting, 1, edit)
      if edited then reported = reported + 1 end
    end
    assert.are.equal(10, asked)
    assert.are.equal(5, reported)
    assert.are.equal(10 + 5, reads)              -- each event, and each one checked again
  end)

  it("compares raw: a metatable on the event cannot fake sameness", function()
    local d = load_driver()
    local _, edited = d.strategy(R(EV), 1, function(ev)
      ev.params.s = "y"
      setmetatable(ev, {__index = function() return "x" end, __eq = function() return true end})
    end)
    assert.is_true(edited)
  end)
end)

describe("driver.edited (the C one-handler driver's nil check)", function()
  -- core/runtime/plugin.c's strategy1 runs one handler and, for a nil on
  -- an event its count samples, asks driver.edited; its outcomes for every
  -- kind of result, and the sampling, are the functional specs'
  -- (strategy_results_spec)
  it("tells an edited event from one as it came", function()
    local d = load_driver()
    local ev = R(EV)(4)
    ev.params.s = "changed"
    assert.are.same({nil, true}, {d.edited(R(EV), 4, ev)})
    assert.are.same({nil, false}, {d.edited(R(EV), 4, R(EV)(4))})
  end)
end)

describe("driver.command and driver.message", function()
  it("decode their JSON and call the handler", function()
    local d = load_driver()
    local code, msg = d.command('{"a":[1,2]}', function(args, req) return #args.a, req.action end, {action = "x"})
    assert.are.equal(2, code)
    assert.are.equal("x", msg)
    local got
    d.message('{"k":1}', function(from, topic, data) got = {from, topic, data.k} end, "p", "t")
    assert.are.same({"p", "t", 1}, got)
  end)
end)

describe("driver.waiting and driver.answer", function()
  it("return nothing for an empty answer, the decoded value otherwise", function()
    local d = load_driver()
    assert.are.equal(0, select("#", d.waiting(function() return "" end)()))
    assert.are.equal(0, select("#", d.waiting(function() return nil end)()))
    assert.are.same({ok = true}, d.waiting(function() return '{"ok":true}' end)())
  end)

  it("raise the core's error at the caller's line", function()
    local d = load_driver()
    local sleep = d.waiting(function() return '{"__polaris_error":"sleep: too long"}' end)
    local ok, err = pcall(function() sleep(1) end)
    assert.is_false(ok)
    assert.matches("driver_spec.lua:%d+: sleep: too long", err)
    local request = d.answer(function() return '{"__polaris_error":"guest away"}' end)
    ok, err = pcall(function() request("x") end)
    assert.is_false(ok)
    assert.matches("driver_spec.lua:%d+: guest away", err)
  end)

  it("answer gives code, msg and data", function()
    local d = load_driver()
    local code, msg, data = d.answer(function() return '{"code":0,"msg":"ok","data":{"v":2}}' end)()
    assert.are.equal(0, code)
    assert.are.equal("ok", msg)
    assert.are.same({v = 2}, data)
  end)
end)
