-- monitor_helpers_spec.lua - the Lua helpers the shipped monitors share
-- (lua/polaris/glob.lua, lua/polaris/hysteresis.lua), table-driven.
local glob = require("polaris.glob")
local hysteresis = require("polaris.hysteresis")

describe("polaris.glob", function()
  local cases = {
    -- patterns, name, expected
    {"*", "anything", true},
    {"*", "", true},
    {"crosvm", "crosvm", true},
    {"crosvm", "crosvm2", false},
    {"crosvm", "xcrosvm", false},
    {"qemu-system-*", "qemu-system-x86_64", true},
    {"qemu-system-*", "qemu-img", false},
    {"a?c", "abc", true},
    {"a?c", "ac", false},
    {"[bc]at", "cat", true},
    {"[!bc]at", "cat", false},
    {"[!bc]at", "rat", true},
    {"a.b", "a.b", true},
    {"a.b", "axb", false},          -- '.' is literal, not a Lua pattern
    {"100%", "100%", true},
    {"x+", "xx", false},
    {"crosvm, qemu-*", "qemu-kvm", true},
    {"crosvm qemu-*", "crosvm", true},
    {"", "anything", false},         -- an empty list matches nothing
  }
  for _, c in ipairs(cases) do
    it(("'%s' %s '%s'"):format(c[1], c[3] and "matches" or "does not match", c[2]), function()
      assert.are.equal(c[3], glob.matcher(c[1])(c[2]))
    end)
  end

  it("takes a list as well as a string", function()
    local m = glob.matcher({"a*", "b"})
    assert.is_true(m("abc"))
    assert.is_true(m("b"))
    assert.is_false(m("c"))
  end)

  it("never matches a non-string", function()
    assert.is_false(glob.matcher("*")(nil))
  end)
end)

describe("polaris.hysteresis", function()
  local function feed(a, values)
    local out = {}
    for i, v in ipairs(values) do
      local r = a:update(v)
      if r then out[#out + 1] = i .. ":" .. r end
    end
    return table.concat(out, " ")
  end

  it("raises after `samples` readings in a row at or above raise", function()
    local a = hysteresis.new{raise = 90, clear = 80, samples = 3}
    assert.are.equal("6:raised", feed(a, {95, 95, 70, 90, 91, 99}))
  end)

  it("hovering around the raise threshold gives one alarm, not a storm", function()
    local a = hysteresis.new{raise = 90, clear = 80, samples = 1}
    assert.are.equal("1:raised", feed(a, {91, 89, 91, 89, 91, 85, 91, 81}))
  end)

  it("clears only at or below clear, `samples` times in a row", function()
    local a = hysteresis.new{raise = 90, clear = 80, samples = 2}
    assert.are.equal("2:raised", feed(a, {95, 95, 79, 85, 79}))   -- 85 breaks the clearing streak
    local b = hysteresis.new{raise = 90, clear = 80, samples = 2}
    assert.are.equal("2:raised 6:cleared", feed(b, {95, 95, 79, 85, 80, 79}))
  end)

  it("raises again after clearing", function()
    local a = hysteresis.new{raise = 90, clear = 80, samples = 1}
    assert.are.equal("1:raised 2:cleared 3:raised", feed(a, {90, 80, 90}))
  end)

  it("refuses a clear threshold at or above raise", function()
    assert.has_error(function() hysteresis.new{raise = 80, clear = 80} end)
    assert.has_error(function() hysteresis.new{raise = 80} end)
  end)
end)
