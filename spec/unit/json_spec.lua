-- json_spec.lua - the C JSON scanner and writer against lua-cjson and dkjson,
-- two independent parsers.
local codec = require "polaris.codec"
local cjson = require "cjson"
local dkjson = require "dkjson"

describe("json_validate", function()
  local valid = {
    '{}', '[]', '0', '-0.5e-3', '"x"', 'true', 'null',
    '{"a":[1,2,{"b":null}],"c":"\\u00e9\\n"}', '"\\ud83d\\ude00"',
    '{"eventId":18446744073709551615}', ' [ 1 , 2 ] ',
  }
  local invalid = {
    '', '{', '{"a"}', '[1,]', '01', '1.', '+1', '"\\x"', '{a:1}', '{} {}',
    'NaN', '"\\ud800"', '[1 2]', '"a\nb"',
  }
  for _, s in ipairs(valid) do
    it("accepts what cjson and dkjson accept: " .. s, function()
      assert.is_truthy(pcall(cjson.decode, s))
      assert.is_truthy(dkjson.decode(s) ~= nil or s == "null")
      assert.is_truthy(codec.json_validate(s))
    end)
  end
  for _, s in ipairs(invalid) do
    it("rejects what is not JSON: " .. s, function()
      local ok, err = codec.json_validate(s)
      assert.is_nil(ok)
      assert.is_string(err)
    end)
  end
  it("rejects invalid UTF-8, which cjson would pass through", function()
    assert.is_nil(codec.json_validate('"\255"'))
    assert.is_nil(codec.json_validate('"\192\175"'))      -- overlong '/'
  end)
end)

describe("json_string escaping", function()
  it("round-trips every byte value through cjson and dkjson", function()
    for b = 0, 127 do
      local s = "a" .. string.char(b) .. "z"
      local enc = codec.json_string(s)
      assert.are.equal(s, cjson.decode("[" .. enc .. "]")[1])
      assert.are.equal(s, dkjson.decode("[" .. enc .. "]")[1])
    end
  end)

  it("passes valid UTF-8 through and replaces invalid bytes", function()
    local s = "caf\195\169 \226\130\172 \240\159\152\128"
    assert.are.equal('"' .. s .. '"', codec.json_string(s))
    local bad = "a\255b\192\175c\237\160\128d"
    local out = cjson.decode("[" .. codec.json_string(bad) .. "]")[1]
    assert.is_truthy(utf8.len(out))
    local R = "\239\191\189"        -- U+FFFD, one per invalid byte
    assert.are.equal("a" .. R .. "b" .. R .. R .. "c" .. R .. R .. R .. "d", out)
  end)

  it("agrees with cjson on random strings", function()
    math.randomseed(42)
    for _ = 1, 2000 do
      local t = {}
      for i = 1, math.random(0, 40) do t[i] = string.char(math.random(0, 255)) end
      local s = table.concat(t)
      local enc = codec.json_string(s)
      assert.is_truthy(codec.json_validate(enc))
      local dec = cjson.decode("[" .. enc .. "]")[1]
      if utf8.len(s) then assert.are.equal(s, dec) else assert.is_truthy(utf8.len(dec)) end
    end
  end)
end)

describe("event_stamp", function()
  it("keeps every u64 eventId exact and stamps identity", function()
    for _, id in ipairs({"0", "1", "9007199254740993", "18446744073709551615"}) do
      local out, got = codec.event_stamp('{"eventId":' .. id .. ',"pid":1,"params":{}}', 4242, 1000)
      assert.are.equal(id, got)
      assert.is_truthy(out:find('"eventId":' .. id .. ',', 1, true))
      local t = cjson.decode(out)
      assert.are.equal(4242, t.pid)
      assert.are.equal(1, t.claimedPid)
      assert.are.equal(1000, t.uid)
    end
  end)

  it("names what is wrong", function()
    local cases = {
      ['{"pid":1}'] = "missing eventId",
      ['{"eventId":-1}'] = "eventId must be an integer",
      ['{"eventId":1,"params":"x"}'] = "params must be an object",
      ['{"eventId":1'] = "unterminated object",
    }
    for input, want in pairs(cases) do
      local out, err = codec.event_stamp(input, 1, 1)
      assert.is_nil(out)
      assert.is_truthy(err:find(want, 1, true), err)
    end
  end)
end)
