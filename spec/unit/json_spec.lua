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

  it("escapes a special byte wherever it falls in a long string (16-byte runs)", function()
    for _, c in ipairs({'"', "\\", "\n", "\1", "\127", "\195\169"}) do
      for pos = 0, 40 do
        local s = string.rep("x", pos) .. c .. string.rep("y", 40 - pos)
        local enc = codec.json_string(s)
        assert.are.equal(s, cjson.decode("[" .. enc .. "]")[1])
        assert.are.equal(s, codec.json_decode(enc))
      end
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

describe("json_decode (the runtime's JSON -> Lua, lua_json.c)", function()
  local NULL = {}
  -- one canonical form for both decoders: null as NULL, numbers with their
  -- subtype, tables by content
  local function canon(v, null)
    if v == null then return NULL end
    if type(v) == "number" then return {math.type(v), v} end
    if type(v) ~= "table" then return v end
    local t = {}
    for k, x in pairs(v) do t[k] = canon(x, null) end
    return t
  end

  -- random JSON text: nesting, escapes, UTF-8, numbers of every shape
  local function gen(rng, depth)
    local r = rng(depth > 3 and 5 or 8)
    if r == 1 then return tostring(rng(0, 1 << 62) - (1 << 61))
    elseif r == 2 then
      local digits = {}
      for i = 1, rng(1, 25) do digits[i] = tostring(rng(i == 1 and 1 or 0, 9)) end
      return (rng(2) == 1 and "-" or "") .. table.concat(digits)
    elseif r == 3 then return string.format("%d.%de%s%d", rng(0, 999), rng(0, 99), ({"", "-", "+"})[rng(3)], rng(0, 30))
    elseif r == 4 then
      local parts = {}
      for i = 1, rng(0, 12) do
        parts[i] = ({"a", "\\n", "\\u00e9", "\\ud83d\\ude00", "\\\"", "\\\\", "\\/", "é", "z", "\\t"})[rng(10)]
      end
      return '"' .. table.concat(parts) .. '"'
    elseif r == 5 then return ({"true", "false", "null"})[rng(3)]
    elseif r == 6 then
      local items = {}
      for i = 1, rng(0, depth == 0 and 150 or 6) do items[i] = gen(rng, depth + 1) end
      return "[ " .. table.concat(items, " ,") .. "]"
    else
      local items = {}
      for i = 1, rng(0, depth == 0 and 90 or 6) do
        items[i] = string.format('"k%d" : %s', rng(1, 40), gen(rng, depth + 1))
      end
      return "{" .. table.concat(items, ",\n") .. " }"
    end
  end

  it("reads what dkjson reads, value for value and integer for integer (2,000 random texts)", function()
    math.randomseed(20261123)
    for _ = 1, 2000 do
      local text = gen(math.random, 0)
      local want = dkjson.decode(text, 1, dkjson.null)
      local got, err = codec.json_decode(text)
      assert.is_nil(err, text)
      assert.are.same(canon(want, dkjson.null), canon(got, cjson.null), text)
    end
  end)

  -- lua_json.c keeps a state's recent keys (two to a set, chosen by the
  -- length and the first, middle and last bytes): keys that share a set,
  -- keys just past its length limit, escaped spellings of a cached key,
  -- UTF-8, the empty key, and the same keys over and over in one state
  it("reads keys right through its key cache (sets shared, evictions, escapes, limits)", function()
    local keys = {"abcde", "axcye", "apcqe", "azcwe", "", "k", "pid", "uid", "a\\u0062cde",
                  string.rep("x", 23), string.rep("x", 24), string.rep("x", 22) .. "y",
                  "y" .. string.rep("x", 22), "\\u00e9t\\u00e9", "été", "t\\\"q", "processName",
                  "processVer", "params", "eventId", "timestamp"}
    math.randomseed(7)
    for round = 1, 3000 do
      local parts, n = {}, math.random(1, 12)
      for i = 1, n do
        parts[i] = string.format('"%s":%d', keys[math.random(#keys)], round * 100 + i)
      end
      local text = "{" .. table.concat(parts, ",") .. ',"nested":{' .. parts[1] .. "}}"
      local want = dkjson.decode(text, 1, dkjson.null)
      local got, err = codec.json_decode(text)
      assert.is_nil(err, text)
      assert.are.same(canon(want, dkjson.null), canon(got, cjson.null), text)
    end
  end)

  it("keeps integers exact and integers, and reads the rest as floats", function()
    local t = codec.json_decode('{"a":9007199254740993,"b":-9223372036854775808,"c":9223372036854775807,' ..
                                '"d":9223372036854775808,"e":1.5,"f":1e3,"g":-0,"h":123456789012345678}')
    assert.are.equal("integer", math.type(t.a)); assert.are.equal(9007199254740993, t.a)
    assert.are.equal(math.mininteger, t.b)
    assert.are.equal(math.maxinteger, t.c)
    assert.are.equal("float", math.type(t.d)); assert.are.equal(2^63, t.d)
    assert.are.equal("float", math.type(t.e)); assert.are.equal(1.5, t.e)
    assert.are.equal("float", math.type(t.f)); assert.are.equal(1000, t.f)
    assert.are.equal(0, t.g)
    assert.are.equal(123456789012345678, t.h)
    assert.are.equal(42, codec.json_decode(" 42 "))
    assert.are.equal(-1.25e-300, codec.json_decode("-1.25e-300"))
    assert.are.equal(1e308, codec.json_decode(("1" .. string.rep("0", 308))))
  end)

  it("reads strings as bytes, escapes decoded", function()
    assert.are.equal("é😀\n\"\\/\0", codec.json_decode('"\\u00e9\\ud83d\\ude00\\n\\"\\\\\\/\\u0000"'))
    for b = 0, 127 do              -- (json_string writes invalid UTF-8 as U+FFFD)
      local s = "x" .. string.char(b) .. "y"
      assert.are.equal(s, codec.json_decode(codec.json_string(s)))
    end
  end)

  it("builds tables of any size; the last of duplicate keys wins", function()
    local parts, arr = {}, {}
    for i = 1, 1000 do parts[i] = string.format('"k%d":%d', i, i); arr[i] = tostring(-i) end
    local t = codec.json_decode("{" .. table.concat(parts, ",") .. "}")
    for i = 1, 1000 do assert.are.equal(i, t["k" .. i]) end
    local a = codec.json_decode("[" .. table.concat(arr, ",") .. "]")
    assert.are.equal(1000, #a)
    for i = 1, 1000 do assert.are.equal(-i, a[i]) end
    assert.are.equal(3, codec.json_decode('{"a":1,"b":2,"a":3}').a)
    local nulls = codec.json_decode('[null,1,null]')
    assert.are.equal(3, #nulls)
    assert.are.equal(cjson.null, nulls[1])
    assert.are.same({}, codec.json_decode("{}"))
    assert.are.same({}, codec.json_decode(" [ ] "))
  end)

  it("refuses what is not JSON with the scanner's message", function()
    for _, s in ipairs({"", "{", "[1,]", "NaN", '"\\ud800"', "01", '"\255"', "{} {}"}) do
      local v, err = codec.json_decode(s)
      assert.is_nil(v)
      assert.is_string(err)
    end
  end)

  it("round-trips through the encoder", function()
    local v = {eventId = 1, params = {big = 9007199254740993, neg = -7, f = 0.1, s = "a\"b\n", list = {1, "2", true}},
               flag = false}
    assert.are.same(v, codec.json_decode(codec.json_encode(v)))
  end)
end)
