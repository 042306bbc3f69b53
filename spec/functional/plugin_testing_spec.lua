-- plugin_testing_spec.lua - the busted helper plugin authors use
-- (lua/polaris/plugin_test.lua), on a plugin written here.
local H = require "helpers"
local plugin_test = require "polaris.plugin_test"

describe("polaris.plugin_test", function()
  local dir
  before_each(function()
    dir = H.ptest.mkdtemp()
    local f = assert(io.open(dir .. "/tagger.json", "w"))
    f:write('{"id": "tagger", "version": "1.0.0", "plugin_type": "Strategy", "entry_point": "tagger.lua"}')
    f:close()
    f = assert(io.open(dir .. "/tagger.lua", "w"))
    f:write([[
      polaris.on_event(9001, function(ev)
        if ev.params.boom then error("boom") end
        ev.params.tag = polaris.config.tag
        return ev
      end)]])
    f:close()
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  local opts = function(extra)
    local o = {polarisctl = H.POLARISCTL, polarisd = H.POLARISD}
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  it("runs a plugin against events with settings, in a few lines", function()
    local r = plugin_test.run(dir .. "/tagger.lua", {{eventId = 9001, params = {n = 1}}},
                              opts({config = {tag = "from-test"}}))
    assert.is_true(r.ok, r.log)
    assert.are.equal(1, #r.events)
    assert.are.equal("from-test", r.events[1].params.tag)
  end)

  it("reports a failing handler", function()
    local r = plugin_test.run(dir .. "/tagger.lua", {{eventId = 9001, params = {boom = true}}}, opts())
    assert.is_false(r.ok)
    assert.are.equal("tagger", r.events[1].strategyError.plugin)
    assert.is_truthy(r.log:find("1 with strategyError", 1, true))
  end)

  it("runs a plugin folder (NAME/ with NAME.json, NAME.lua and its own modules), given the folder or its file", function()
    os.execute("mkdir -p '" .. dir .. "/folded/Util'")
    local files = {
      ["folded/folded.json"] = '{"id": "folded", "version": "1.0.0", "plugin_type": "Strategy"}',
      ["folded/folded.lua"] = [[
        local fmt = require "Util.Format"
        polaris.on_event(9001, function(ev) ev.params.tag = fmt.tag(ev.params.n); return ev end)]],
      ["folded/Util/Format.lua"] = [[return {tag = function(n) return "n=" .. tostring(n) end}]],
    }
    for name, text in pairs(files) do
      local f = assert(io.open(dir .. "/" .. name, "w"))
      f:write(text)
      f:close()
    end
    for _, target in ipairs({dir .. "/folded", dir .. "/folded/folded.lua"}) do
      local r = plugin_test.run(target, {{eventId = 9001, params = {n = 7}}}, opts())
      assert.is_true(r.ok, r.log)
      assert.are.equal("n=7", r.events[1].params.tag)
    end
  end)
end)
