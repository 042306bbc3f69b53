-- strmatch_spec.lua - the plugins' string.find/match/gmatch/gsub/rep
-- (core/runtime/lua_strmatch.c, loaded through the test module polaris.plugin_libs)
-- against the stock string library: the same results and the same error
-- messages on a table of edge cases and on many thousands of random,
-- seeded subjects and patterns; then what the stock library does not do:
-- stop on a budget, refuse rep results larger than the memory left, and
-- stay guarded after "pattern too complex".
local M = require "polaris.plugin_libs"

local stock = {find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub,
               rep = string.rep}

-- Every call goes through the same local name, not a tail call, so
-- argument errors name the same function ("bad argument #1 to 'f'") for
-- both libraries rather than where each is found in package.loaded.
local function call(f, ...)
  local args = table.pack(...)
  local r = table.pack(pcall(function()
    local out = table.pack(f(table.unpack(args, 1, args.n)))
    return table.unpack(out, 1, out.n)
  end))
  return r
end

local function gmatch_all(gm, s, p, init)
  local r = call(gm, s, p, init)
  if not r[1] then return {false, r[2]} end
  local it = r[2]
  local out = {}
  for _ = 1, 200 do
    -- an iterator that raised is not called again: Lua 5.4.4's own
    -- recurses without a guard on its next call
    local x = table.pack(pcall(it))
    if not x[1] then out[#out + 1] = {"error", x[2]} return out end
    if x.n == 1 or x[2] == nil then return out end
    out[#out + 1] = x
  end
  return out
end

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then
    if a ~= a and b ~= b then return true end
    return a == b and math.type(a) == math.type(b)
  end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function show(v)
  if type(v) == "table" then
    local parts = {}
    for i = 1, (v.n or #v) do parts[#parts + 1] = show(v[i]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return type(v) == "string" and ("%q"):format(v) or tostring(v)
end

-- a deterministic replacement function: keeps, drops or rewrites by capture
local function repl_fn(...)
  local n = select("#", ...)
  local a = ...
  if a == nil then return nil end
  if type(a) == "number" then return a % 3 == 0 and false or a * 2 end
  if #a % 3 == 0 then return nil end
  if #a % 3 == 1 then return a:upper() .. n end
  return false
end
local repl_tab = setmetatable({a = "A", b = 1, ab = false, [1] = "one", [2] = 2.5}, {__index = function(_, k)
  if k == "c" then return "C!" end
end})

-- Runs one case through both libraries; returns nil or a description of
-- the first difference.
local function compare(op, s, p, a3, a4)
  local want, got
  if op == "gmatch" then
    want, got = gmatch_all(stock.gmatch, s, p, a3), gmatch_all(M.gmatch, s, p, a3)
  else
    want, got = call(stock[op], s, p, a3, a4), call(M[op], s, p, a3, a4)
  end
  if not same(want, got) then
    return ("%s(%s, %s, %s, %s): stock %s, ours %s"):format(op, show(s), show(p), show(a3), show(a4),
                                                          show(want), show(got))
  end
end

local EDGES = {
  -- classes and complements, on every byte
  {"find", ("").char(table.unpack((function() local t = {} for i = 0, 255 do t[#t + 1] = i end return t end)())),
   "%a+"},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%A", "."},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%c", "C"},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%D", "."},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%g", "g"},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%L", "."},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%p", "P"},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%S", "."},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%u", "U"},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%W", "."},
  {"gsub", "Hello, World! 123 _x\t\n\0\127\200", "%X", "."},
  {"gsub", "zZ%", "%z", "!"},
  -- sets, ranges, a ']' first, escapes inside, complements
  {"gsub", "a]b-c^d%e", "[]]", "#"}, {"gsub", "a]b-c^d%e", "[^]]", "#"}, {"gsub", "a]b-c^d%e", "[a-c]", "#"},
  {"gsub", "a]b-c^d%e", "[%a-]", "#"}, {"gsub", "a]b-c^d%e", "[-a]", "#"}, {"gsub", "a]b-c^d%e", "[a-]", "#"},
  {"gsub", "a]b-c^d%e", "[%%^]", "#"}, {"gsub", "a]b-c^d%e", "[^%a]", "#"}, {"gsub", "a]b-c^d%e", "[%]]", "#"},
  {"gsub", "a]b-c^d%e", "[c-a]", "#"}, {"gsub", "a]b-c^d%e", "[a-%]", "#"},
  -- malformed patterns
  {"find", "abc", "%"}, {"find", "abc", "[a"}, {"find", "abc", "[^"}, {"find", "abc", "[]"}, {"find", "abc", "[^]"},
  {"find", "abc", "[%"}, {"find", "abc", "[a%]"}, {"find", "abc", "%b"}, {"find", "abc", "%ba"},
  {"find", "abc", "%f"}, {"find", "abc", "%fa"}, {"find", "abc", "%f[a"}, {"find", "abc", "(a"},
  {"match", "abc", "(a"}, {"find", "abc", "a)"}, {"find", "abc", "%1"}, {"find", "abc", "(a)%2"},
  {"find", "abc", "(a%1)"}, {"find", "abc", "%0"}, {"match", "abc", "((((((((((((((((((((((((((((((((((a))))))))))"
   .. "))))))))))))))))))))))))"}, {"find", "abc", "(" .. ("()"):rep(40) .. ")"},
  -- anchors, '$' inside, '^' not first
  {"find", "abc", "^b"}, {"find", "abc", "^a"}, {"find", "abc", "c$"}, {"find", "a$c", "a$c"}, {"find", "a^c", "a^c"},
  {"find", "", "^$"}, {"find", "", "$"}, {"find", "abc", "^"}, {"gsub", "abc", "^", "x"}, {"gsub", "abc", "$", "x"},
  {"gsub", "abc", "^a", "x"}, {"gsub", "aaa", "^a", "x"},
  -- repetitions, empty matches
  {"gsub", "abc", "", "-"}, {"gsub", "abc", "x*", "-"}, {"gsub", "aaa", "a-", "-"}, {"gsub", "aaa", "a-$", "-"},
  {"find", "aaab", "a-b"}, {"find", "aaab", "a*ab"}, {"find", "aaab", "a+ab"}, {"find", "ab", "a?b?c?"},
  {"gmatch", "abc", ""}, {"gmatch", "abc", "x*"}, {"gmatch", "a,b,,c", "[^,]*"}, {"gmatch", "aaa", "a-"},
  -- captures, positions, back-references
  {"match", "hello world", "(h)(e)(l)(l)(o)"}, {"match", "hello", "()ll()"}, {"find", "hello", "()ll()"},
  {"match", "abab", "(ab)%1"}, {"match", "abba", "(a)(b)%2%1"}, {"match", "aa", "()a%1"},
  {"gsub", "hello world", "(o)", "[%1]"}, {"gsub", "hello", "()", "%1"}, {"gsub", "hello", "l", "%1"},
  {"gsub", "hello", "l", "%2"}, {"gsub", "hello", "(l)", "%2"}, {"gsub", "hello", "l", "%"}, {"gsub", "hello", "l", "%x"},
  {"gsub", "hello", "l", "%%"}, {"gsub", "hello", "(l)(l)", "%2%1%0"}, {"gsub", "abc", "%w", "%0%0"},
  -- %b and %f
  {"match", "x(a(b)c)y", "%b()"}, {"match", "x(a(b)c", "%b()"}, {"gsub", "THE (quick) fox", "%f[%a]%a+", "W"},
  {"gsub", "THE (quick) fox", "%f[%A]", "|"}, {"find", "abc", "%f[%z]"}, {"find", "abc", "%f[%Z]"},
  {"match", "\"a\"b\"", "%b\"\""}, {"find", "a\0b", "%f[%z]"}, {"find", "abc", "%bac"},
  -- embedded zeros in subjects and patterns
  {"find", "a\0b\0c", "\0"}, {"find", "a\0b\0c", "%z"}, {"find", "a\0b\0c", "[\0]"}, {"gsub", "a\0b", ".", "%0%0"},
  {"find", "a\0b\0c", "b\0", 1, true}, {"match", "a\0b\0c", "(.%z?)"},
  -- init: positive, negative, zero, past the end; plain
  {"find", "hello", "l", 4}, {"find", "hello", "l", -2}, {"find", "hello", "l", -100}, {"find", "hello", "l", 0},
  {"find", "hello", "", 6}, {"find", "hello", "", 7}, {"find", "hello", "", 100}, {"find", "hello", "", -100},
  {"find", "a.b", ".", 1, true}, {"find", "a.b", "%.", 1, false}, {"find", "a+b", "+", 1, 1}, {"find", "a+b", "+"},
  {"match", "hello", ".", -1}, {"match", "hello", "^l", 3}, {"match", "hello", "", 10},
  {"gmatch", "hello", ".", 3}, {"gmatch", "hello", ".", -2}, {"gmatch", "hello", "", 6}, {"gmatch", "hello", "", 7},
  {"gmatch", "hello", "()", 100}, {"find", "", ""}, {"find", "", "", 1, true}, {"find", "abc", "abcd", 1, true},
  {"find", "hello", "lo", math.mininteger}, {"find", "hello", "lo", math.maxinteger},
  -- gsub replacement kinds and the max argument
  {"gsub", "hello world", "%w+", repl_fn}, {"gsub", "a b c ab", "%w+", repl_tab}, {"gsub", "abc", "(%w)", repl_tab},
  {"gsub", "abc", "()", repl_tab}, {"gsub", "abc", "%w", 7}, {"gsub", "abc", "%w", 1.5}, {"gsub", "abc", "%w", "x", 2},
  {"gsub", "abc", "%w", "x", 0}, {"gsub", "abc", "%w", "x", -1}, {"gsub", "abc", "", "x", 2},
  {"gsub", "abc", "%w", function() return {} end}, {"gsub", "abc", "%w", function() return true end},
  {"gsub", "abc", "%w", function() return 12 end}, {"gsub", "abc", "%w", {a = {}}},
  {"gsub", "abc", "%w", nil}, {"gsub", "abc", "%w", true}, {"gsub", "abc", "%w", "x", "y"},
  {"gsub", "abc", "%w", "x", 1.5}, {"gsub", "abc", "(", "x"},
  -- argument errors
  {"find", nil, "a"}, {"find", "a", nil}, {"find", "a", "a", "x"}, {"find", 123, 2}, {"match", {}, "a"},
  {"gmatch", "a", {}}, {"gsub", 12345, 3, 9}, {"find", "a", "a", 1.5},
  -- too complex: the same patterns give up in both
  {"match", ("a"):rep(199), ("a?"):rep(199)}, {"match", ("a"):rep(200), ("a?"):rep(200)},
  {"match", ("a"):rep(300), ("a?"):rep(300)}, {"find", ("a"):rep(250), ("(a)"):rep(30)},
  {"gsub", ("a"):rep(300), ("a?"):rep(250), "x"},
  -- rep
  {"rep", "ab", 3}, {"rep", "ab", 3, ", "}, {"rep", "ab", 0}, {"rep", "ab", -1}, {"rep", "", 5, ""},
  {"rep", "", 3, "-"}, {"rep", "x", 1, "-"}, {"rep", "abc", 1000, "de"}, {"rep", "x", 1 << 40},
  {"rep", "x", math.maxinteger}, {"rep", "x", "y"}, {"rep", "x", 2.5}, {"rep", 12, 2, 3},
}

describe("the plugins' string functions (lua_strmatch.c)", function()
  it("agree with the stock library on the edge cases, results and messages", function()
    local bad = {}
    for i, c in ipairs(EDGES) do
      local diff = compare(c[1], c[2], c[3], c[4], c[5])
      if diff then bad[#bad + 1] = "#" .. i .. " " .. diff end
    end
    assert.are.same({}, bad)
  end)

  -- random patterns from every feature of the language, and some junk
  local SUBJ = {"a", "b", "c", "a", "b", "(", ")", " ", "1", ".", "%", "-", "x", "A", "\0", "\n", "]", "ab", "ba"}
  local CLASSES = {"%a", "%c", "%d", "%g", "%l", "%p", "%s", "%u", "%w", "%x", "%A", "%D", "%S", "%W", "%z", "%.",
                   "%%", "%(", "%]", "%-", "."}
  local LITS = {"a", "b", "c", "x", "1", " ", "A", "\0", "]", "^", "$"}
  local JUNK = {"(", ")", "[", "]", "%", "^", "$", "*", "+", "-", "?", "%b", "%f", "%1", "%9", "[^", "(()"}

  local function gen_set(rnd)
    local t = {"["}
    if rnd(3) == 1 then t[#t + 1] = "^" end
    if rnd(8) == 1 then t[#t + 1] = "]" end
    for _ = 1, rnd(4) do
      local k = rnd(4)
      if k == 1 then t[#t + 1] = LITS[rnd(#LITS)]
      elseif k == 2 then t[#t + 1] = CLASSES[rnd(#CLASSES)]
      elseif k == 3 then t[#t + 1] = ({"a-c", "0-9", "b-a", "a-", "-a", "%a-z"})[rnd(6)]
      else t[#t + 1] = ({"-", "%]", "(", ")", "."})[rnd(5)] end
    end
    t[#t + 1] = "]"
    return table.concat(t)
  end

  local function gen_item(rnd, depth, ncap)
    local k = rnd(20)
    if k <= 6 then
      local base = ({LITS[rnd(#LITS)], CLASSES[rnd(#CLASSES)], gen_set(rnd), "."})[rnd(4)]
      return base .. ({"", "", "*", "+", "-", "?"})[rnd(6)]
    elseif k <= 9 and depth < 3 then
      local inner = {}
      for _ = 1, rnd(3) do inner[#inner + 1] = gen_item(rnd, depth + 1, ncap) end
      ncap[1] = ncap[1] + 1
      return "(" .. table.concat(inner) .. ")"
    elseif k == 10 then
      ncap[1] = ncap[1] + 1
      return "()"
    elseif k == 11 then
      return "%" .. rnd(ncap[1] + 1)
    elseif k == 12 then
      return ({"%b()", "%bab", "%b\"\"", "%b)(", "%bxx"})[rnd(5)]
    elseif k == 13 then
      return "%f" .. gen_set(rnd)
    elseif k == 14 and rnd(4) == 1 then
      return JUNK[rnd(#JUNK)]
    else
      return LITS[rnd(#LITS)]
    end
  end

  local function gen_pattern(rnd)
    local t, ncap = {}, {0}
    if rnd(5) == 1 then t[1] = "^" end
    for _ = 1, rnd(6) do t[#t + 1] = gen_item(rnd, 0, ncap) end
    if rnd(5) == 1 then t[#t + 1] = "$" end
    return table.concat(t)
  end

  local function gen_subject(rnd)
    local t = {}
    for i = 1, rnd(16) - 1 do t[i] = SUBJ[rnd(#SUBJ)] end
    return table.concat(t)
  end

  local TEMPLATES = {"x", "%0", "%1", "<%1|%2>", "%%", "%", "%3", "[%0]", "", "%a"}

  it("agree with the stock library on 20,000 random subjects and patterns (seeded)", function()
    math.randomseed(20260520)
    local rnd = math.random
    local bad, n = {}, 0
    for _ = 1, 20000 do
      local s, p = gen_subject(rnd), gen_pattern(rnd)
      local init = rnd(4) == 1 and rnd(-20, 20) or nil
      local cases = {
        {"find", s, p, init, rnd(6) == 1 or nil},
        {"match", s, p, init},
        {"gmatch", s, p, init},
        {"gsub", s, p, ({TEMPLATES[rnd(#TEMPLATES)], repl_fn, repl_tab})[rnd(3)], rnd(4) == 1 and rnd(-1, 4) or nil},
      }
      for _, c in ipairs(cases) do
        n = n + 1
        local diff = compare(c[1], c[2], c[3], c[4], c[5])
        if diff and #bad < 20 then bad[#bad + 1] = diff end
      end
    end
    assert.is_true(n >= 80000)
    assert.are.same({}, bad)
  end)

  it("stop on the budget inside a backtracking pattern, in every function", function()
    local s, p = ("a"):rep(40), ("a*"):rep(40) .. "b"
    for _, f in ipairs({"find", "match", "gmatch", "gsub"}) do
      local L = M.limited(50)
      local ok, err = pcall(function()
        if f == "gmatch" then return L.gmatch(s, p)() end
        if f == "gsub" then return L.gsub(s, p, "x") end
        return L[f](s, p)
      end)
      assert.is_false(ok, f)
      assert.matches("cpu budget exceeded", err, 1, true)
      assert.are.equal(50, M.checks(), f)
    end
  end)

  it("count a long plain find, a long scan, a %b run and a gsub over a long subject", function()
    local big = ("a"):rep(1 << 22)
    for _, run in ipairs({
      function(L) return L.find(big, ("a"):rep(1000) .. "b", 1, true) end,
      function(L) return L.find(big, "a*b") end,
      function(L) return L.find(("("):rep(1 << 20), "%b()") end,
      function(L) return L.gsub(big, "a", "b") end,
    }) do
      local L = M.limited(3)
      local ok, err = pcall(run, L)
      assert.is_false(ok)
      assert.matches("cpu budget exceeded", err, 1, true)
    end
  end)

  it("keep their guard after 'pattern too complex': a gmatch iterator raises it again", function()
    local it = M.gmatch(("a"):rep(200000), ("a?"):rep(200000))
    for _ = 1, 3 do
      local ok, err = pcall(it)
      assert.is_false(ok)
      assert.are.equal("pattern too complex", err)
    end
    local it2 = M.gmatch("aaa", "(a?)(a?)")
    assert.are.same({"a", "a"}, {it2()})
  end)

  it("rep: an empty result at once, a result past the memory left refused, the budget checked", function()
    assert.are.equal("", M.rep("", math.maxinteger))
    assert.are.equal("", M.rep("", math.maxinteger, ""))
    local L = M.limited(nil, 1 << 20)
    local ok, err = pcall(L.rep, "x", 1e9)
    assert.is_false(ok)
    assert.matches("not enough memory", err, 1, true)
    assert.are.equal(("ab-"):rep(1000):sub(1, -2), L.rep("ab", 1000, "-"))
    L = M.limited(2)
    ok, err = pcall(L.rep, "xyz", 50 << 20, ",")
    assert.is_false(ok)
    assert.matches("cpu budget exceeded", err, 1, true)
    -- doubling keeps the sequence for every unit length and count
    for l = 1, 7 do
      for n = 1, 40 do
        local unit = ("abcdefg"):sub(1, l)
        assert.are.equal(stock.rep(unit, n, "|"), M.rep(unit, n, "|"))
        assert.are.equal(stock.rep(unit, n), M.rep(unit, n))
      end
    end
    assert.are.equal(stock.rep("xy", 3000000, "z"), M.rep("xy", 3000000, "z"))
  end)
end)
