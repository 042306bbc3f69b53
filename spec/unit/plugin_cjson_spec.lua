-- plugin_cjson_spec.lua - the `cjson` plugins get (core/runtime/bind_json.c, loaded
-- through the test module polaris.plugin_libs) against lua-cjson 2.1.0:
-- the same text and values for ordinary data, the differences that are
-- meant (integers exact, RFC 8259 only), fixed limits, the removed
-- setters, and cjson.safe.
local M = require "polaris.plugin_libs"
local stock = require "cjson"
local ours = M.cjson

-- numbers compare by value: lua-cjson reads every number as a float
local function same_value(a, b)
  if a == stock.null or b == ours.null then return a == b end
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same_value(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local WORDS = {"", "a", "hello world", "tab\there", "quote\"s", "back\\slash", "new\nline", "\1\31",
               "caf\u{e9}", "\u{1F600}", "0", "-", "key"}

-- ordinary values: what plugins put in events and messages
local function gen(rnd, depth)
  local k = rnd(depth > 3 and 5 or 9)
  if k == 1 then return WORDS[rnd(#WORDS)]
  elseif k == 2 then return rnd(-1000000, 1000000)
  elseif k == 3 then return ({true, false})[rnd(2)]
  elseif k == 4 then return ({0.5, -2.25, 1e10 + 0.5, 3.0, 0.125})[rnd(5)]
  elseif k == 5 then return stock.null
  elseif k == 6 or k == 7 then
    local t = {}
    for i = 1, rnd(6) - 1 do t[i] = gen(rnd, depth + 1) end
    if rnd(4) == 1 and #t > 1 then t[rnd(#t)] = nil end       -- a hole: null in both
    return t
  else
    local t = {}
    for _ = 1, rnd(5) - 1 do t[WORDS[rnd(#WORDS)] .. rnd(9)] = gen(rnd, depth + 1) end
    return t
  end
end

describe("the plugins' cjson (bind_json.c)", function()
  it("encodes ordinary values to the same text as lua-cjson (3,000 random values, seeded)", function()
    math.randomseed(7011)
    for _ = 1, 3000 do
      local v = gen(math.random, 0)
      local want, got = stock.encode(v), ours.encode(v)
      assert.are.equal(want, got)
    end
  end)

  it("decodes what lua-cjson wrote to the same values (3,000 random texts, seeded)", function()
    math.randomseed(7012)
    for _ = 1, 3000 do
      local text = stock.encode(gen(math.random, 0))
      assert.is_true(same_value(stock.decode(text), ours.decode(text)), text)
    end
  end)

  it("keeps lua-cjson's rules for arrays, empty tables, keys, and values it cannot write", function()
    for _, v in ipairs({{}, {1, nil, 3}, {[2] = 1}, {[1] = 1, [3] = 3}, {[0] = 1}, {[-1] = 1}, {[1] = 1, a = 2},
                        {[1.5] = 1}, {[10] = 1}, {a = {}, b = {{}}}, stock.null, "", 0, -7}) do
      assert.are.equal(stock.encode(v), ours.encode(v))
    end
    for _, v in ipairs({{[11] = 1}, {[1] = 1, [100] = 2}, 0 / 0, math.huge, -math.huge, print, {[true] = 1},
                        {f = print}, coroutine.create(print)}) do
      local ok1, e1 = pcall(stock.encode, v)
      local ok2, e2 = pcall(ours.encode, v)
      assert.is_false(ok1)
      assert.is_false(ok2)
      assert.are.equal(e1, e2)
    end
    assert.are.equal(stock.null, ours.null)
    assert.are.equal(ours.null, ours.decode("null"))
    assert.are.equal(ours.null, ours.decode('{"a":null}').a)
  end)

  it("differs where it means to: exact integers, 17 digits, RFC 8259 only", function()
    assert.are.equal("integer", math.type(ours.decode("1")))
    assert.are.equal("float", math.type(stock.decode("1")))
    assert.are.equal(9007199254740993, ours.decode("9007199254740993"))
    assert.are.equal("9007199254740993", ours.encode(9007199254740993))
    assert.are.equal("[9223372036854775807]", ours.encode({math.maxinteger}))
    assert.are.equal("0.33333333333333331", ours.encode(1 / 3))
    assert.are.equal('"a/b"', ours.encode("a/b"))                  -- lua-cjson writes "a\/b"
    assert.are.equal('"\u{FFFD}"', ours.encode("\200"))             -- lua-cjson passes the byte on
    for _, bad in ipairs({"nan", "inf", "0x10", "[1,]", "", "{a:1}", "[\"\\ud800\"]"}) do
      assert.is_false((pcall(ours.decode, bad)), bad)
    end
  end)

  it("has depth limits a plugin cannot change, and raises instead of crashing", function()
    local ok, err = pcall(ours.decode_max_depth, 1e6)
    assert.is_false(ok)
    assert.matches("not available to plugins", err, 1, true)
    for _, name in ipairs({"encode_max_depth", "decode_max_depth", "encode_sparse_array", "encode_number_precision",
                           "encode_keep_buffer", "encode_invalid_numbers", "decode_invalid_numbers", "new"}) do
      assert.is_false((pcall(ours[name], 1)), name)
      assert.is_false((pcall(ours.safe[name], 1)), name)
    end
    ok, err = pcall(ours.decode, ("["):rep(200000))
    assert.is_false(ok)
    assert.matches("nested too deeply", err, 1, true)
    local t = {}
    local cur = t
    for _ = 1, 150000 do cur[1] = {} cur = cur[1] end
    ok, err = pcall(ours.encode, t)
    assert.is_false(ok)
    assert.matches("nested deeper than", err, 1, true)
    local cycle = {}
    cycle.self = cycle
    assert.is_false((pcall(ours.encode, cycle)))
  end)

  it("cjson.safe returns nil, message where cjson raises", function()
    local v, err = ours.safe.decode("[1,")
    assert.is_nil(v)
    assert.matches("invalid JSON", err, 1, true)
    v, err = ours.safe.encode({print})
    assert.is_nil(v)
    assert.are.equal("Cannot serialise function: type not supported", err)
    assert.are.equal("[1,2]", ours.safe.encode({1, 2}))
    assert.are.same({1, 2}, ours.safe.decode("[1,2]"))
    assert.are.equal(ours.null, ours.safe.null)
  end)

  it("caps the text at the memory left and checks the budget while it works", function()
    local big = {}
    for i = 1, 100000 do big[i] = "xxxxxxxxxx" end
    local L = M.limited(nil, 100000)
    local ok, err = pcall(L.cjson.encode, big)
    assert.is_false(ok)
    assert.matches("not enough memory", err, 1, true)
    L = M.limited(5)
    ok, err = pcall(L.cjson.encode, big)
    assert.is_false(ok)
    assert.matches("cpu budget exceeded", err, 1, true)
    local text = ours.encode(big)
    L = M.limited(5)
    ok, err = pcall(L.cjson.decode, text)
    assert.is_false(ok)
    assert.matches("cpu budget exceeded", err, 1, true)
  end)
end)
