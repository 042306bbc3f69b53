-- loader_spec.lua - manifests, semver ranges and dependency order, table-driven.
local semver = require "polaris.semver"
local loader = require "polaris.loader"

describe("semver", function()
  local cases = {
    {"1.2.3", "^1.2.0", true}, {"1.9.9", "^1.2.0", true}, {"2.0.0", "^1.2.0", false},
    {"1.1.9", "^1.2.0", false}, {"0.2.5", "^0.2.1", true}, {"0.3.0", "^0.2.1", false},
    {"0.0.3", "^0.0.3", true}, {"0.0.4", "^0.0.3", false},
    {"1.2.9", "~1.2.0", true}, {"1.3.0", "~1.2.0", false},
    {"1.5.0", ">=1.0.0 <2.0.0", true}, {"2.0.0", ">=1.0.0 <2.0.0", false},
    {"0.9.9", ">=1.0.0 <2.0.0", false}, {"1.2.3", "1.2.3", true}, {"1.2.4", "1.2.3", false},
    {"1.2.3", "=1.2.3", true}, {"3.0.0", ">2.9.9", true}, {"5.0.0", "*", true},
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " satisfies " .. c[2] .. ": " .. tostring(c[3]), function()
      assert.are.equal(c[3], semver.satisfies(c[1], c[2]))
    end)
  end
  it("parses the object form and rejects junk", function()
    assert.are.same({1, 0, 2}, semver.parse({major = 1, minor = 0, patch = 2}))
    assert.is_nil(semver.parse("1.2"))
    assert.is_nil(semver.parse({major = 1}))
    assert.is_nil((semver.range(">=x")))
  end)
end)

local function plan(files)
  local dirs = {}
  for path in pairs(files) do
    local d, n = path:match("^(.*)/([^/]+)$")
    dirs[d] = dirs[d] or {}
    table.insert(dirs[d], n)
  end
  local paths = {}
  for d in pairs(dirs) do paths[#paths + 1] = d end
  table.sort(paths)
  return loader.plan(paths, function(d) return dirs[d] end, function(p) return files[p] end)
end

local function manifest(id, version, deps, extra)
  local t = {id = id, version = version, dependencies = deps or {}, plugin_type = "Strategy"}
  for k, v in pairs(extra or {}) do t[k] = v end
  return require("cjson").encode(t)
end

local function by_id(p)
  local t, order = {}, {}
  for i, e in ipairs(p) do t[e.id] = e; order[e.id] = i end
  return t, order
end

describe("loader", function()
  it("orders dependencies first", function()
    local p = plan({
      ["p/a.json"] = manifest("a", "1.0.0", {b = "^1.0.0"}), ["p/a.lua"] = "",
      ["p/b.json"] = manifest("b", "1.4.0", {c = "~2.1.0"}), ["p/b.lua"] = "",
      ["p/c.json"] = manifest("c", "2.1.7"), ["p/c.lua"] = "",
    })
    local e, order = by_id(p)
    assert.is_nil(e.a.error); assert.is_nil(e.b.error); assert.is_nil(e.c.error)
    assert.is_true(order.c < order.b and order.b < order.a)
  end)

  it("keeps out missing, incompatible and cyclic dependencies, loads the rest", function()
    local p = plan({
      ["p/miss.json"] = manifest("miss", "1.0.0", {ghost = "^1.0.0"}), ["p/miss.lua"] = "",
      ["p/old.json"] = manifest("old", "1.0.0", {base = "^2.0.0"}), ["p/old.lua"] = "",
      ["p/base.json"] = manifest("base", "1.5.0"), ["p/base.lua"] = "",
      ["p/x.json"] = manifest("x", "1.0.0", {y = "*"}), ["p/x.lua"] = "",
      ["p/y.json"] = manifest("y", "1.0.0", {x = "*"}), ["p/y.lua"] = "",
      ["p/dep_on_miss.json"] = manifest("dep_on_miss", "1.0.0", {miss = "*"}), ["p/dep_on_miss.lua"] = "",
      ["p/fine.json"] = manifest("fine", "1.0.0"), ["p/fine.lua"] = "",
    })
    local e = by_id(p)
    assert.matches("missing dependency 'ghost'", e.miss.dependency_error, 1, true)
    assert.matches("dependency 'base' is 1.5.0, needs ^2.0.0", e.old.dependency_error, 1, true)
    assert.matches("dependency cycle", e.x.error, 1, true)
    assert.matches("dependency cycle", e.y.error, 1, true)
    assert.matches("dependency 'miss' failed", e.dep_on_miss.dependency_error, 1, true)
    assert.is_nil(e.base.error)
    assert.is_nil(e.fine.error)
  end)

  it("names what is wrong with a manifest", function()
    local p = plan({
      ["p/badjson.json"] = "{not json", ["p/badjson.lua"] = "",
      ["p/noid.json"] = '{"version":"1.0.0"}', ["p/noid.lua"] = "",
      ["p/badver.json"] = manifest("badver", "1.0"), ["p/badver.lua"] = "",
      ["p/badtype.json"] = manifest("badtype", "1.0.0", {}, {plugin_type = "Daemon"}), ["p/badtype.lua"] = "",
      ["p/badperm.json"] = manifest("badperm", "1.0.0", {}, {permissions = {"RootShell"}}), ["p/badperm.lua"] = "",
      ["p/nolua.json"] = manifest("nolua", "1.0.0"),
      ["p/escape.json"] = manifest("escape", "1.0.0", {}, {entry_point = "../x.lua"}),
      ["p/objver.json"] = manifest("objver", {major = 2, minor = 1, patch = 0}), ["p/objver.lua"] = "",
    })
    local e = by_id(p)
    assert.matches("not valid JSON", e.badjson.error, 1, true)
    assert.matches("id must be", e.noid.error, 1, true)
    assert.matches("'1.0' is not X.Y.Z", e.badver.error, 1, true)
    assert.matches("plugin_type 'Daemon'", e.badtype.error, 1, true)
    assert.matches("unknown permission 'RootShell'", e.badperm.error, 1, true)
    assert.matches("missing or unreadable", e.nolua.error, 1, true)
    assert.matches("entry_point must be a file name", e.escape.error, 1, true)
    assert.is_nil(e.objver.error)
    assert.are.equal("2.1.0", e.objver.version)
  end)

  it("refuses duplicate ids across paths", function()
    local p = plan({
      ["a/dup.json"] = manifest("dup", "1.0.0"), ["a/dup.lua"] = "",
      ["b/dup.json"] = manifest("dup", "2.0.0"), ["b/dup.lua"] = "",
    })
    local errors = 0
    for _, e in ipairs(p) do if e.error then errors = errors + 1 end end
    assert.are.equal(1, errors)
  end)
end)

describe("semver found by fuzzing", function()
  it("refuses version numbers too large for an integer instead of raising", function()
    local v, err = semver.parse("0.011111111111111111111111111111111111.0")
    assert.is_nil(v)
    assert.is_truthy(err:find("too large", 1, true))
    v, err = semver.parse({major = 1e300, minor = 0, patch = 0})
    assert.is_nil(v)
    assert.is_truthy(err:find("fit in an integer", 1, true))
    assert.is_nil((semver.satisfies("1.0.0", "^99999999999999999999.0.0")))
  end)
end)
