-- tools/layers.lua - checks the shape of the C sources (run by `make lint`
-- after a build): core/ is in layers, each using only those before it,
--
--   lib < wire < runtime < daemon | isolate      (and tools/ on lib, wire, runtime)
--
-- and no two files depend on each other, directly or round a loop, by
-- #include or by a call (read from the objects' symbol tables with nm). The runtime's one way out is runtime/port.h: symbols
-- declared there are implemented by each program that hosts the runtime
-- (daemon/, isolate/) and are not edges.
--
--   lua5.4 tools/layers.lua BUILD_DIR      (from the checkout's root)
local build = arg[1] or "build"

local rank = {lib = 0, wire = 1, runtime = 2, daemon = 3, isolate = 3, tools = 3}

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

-- Files are the nodes: core/wire/lsp_codec.c -> wire/lsp_codec.c; an
-- object stands for its source (.c or .S). A header is its own node: a file
-- that includes it depends on its declarations, not on the code behind them
-- (that dependency is a call, read from the objects).
local function module_of(path)
  local m = path:gsub("^%./", ""):gsub("^core/", "")
  if m:match("%.o$") then
    local base = m:gsub("%.o$", "")
    for _, src in ipairs({base .. ".c", base .. ".S"}) do
      local f = io.open((src:match("^tools/") and "" or "core/") .. src)
      if f then
        f:close()
        return src
      end
    end
    return nil                             -- an object left from a source since moved or removed
  end
  return m
end

local function layer_of(m) return m:match("^([%w_]+)/") end

local problems = {}
local function problem(fmt, ...) problems[#problems + 1] = fmt:format(...) end

-- 1. includes
local deps = {}                            -- module -> {module = why}
local function edge(a, b, why)
  if a == b then return end
  deps[a] = deps[a] or {}
  deps[a][b] = deps[a][b] or why
end

local files = sh("find core tools -name '*.[ch]' | sort")
for path in files:gmatch("[^\n]+") do
  local m = module_of(path)
  local f = assert(io.open(path))
  local n = 0
  for line in f:lines() do
    n = n + 1
    local inc = line:match('^%s*#%s*include%s+"([^"]+)"')
    if inc then
      local tm = inc:find("/") and inc or (m:match("^(.*/)") or "") .. inc
      local la, lb = layer_of(m), layer_of(tm)
      if la and lb and rank[la] and rank[lb] then
        if rank[lb] > rank[la] or (rank[lb] == rank[la] and la ~= lb) then
          problem("%s:%d: %s includes %s (layer %s may not use %s)", path, n, m, inc, la, lb)
        end
      end
      edge(m, tm, ("%s:%d includes %s"):format(path, n, inc))
    end
  end
  f:close()
end

-- 2. calls: who defines and who uses each global symbol
local port = {}
do
  local f = io.open("core/runtime/port.h")
  if f then
    -- what it declares, not what its comments mention
    local s = f:read("a"):gsub("/%*.-%*/", ""):gsub("//[^\n]*", "")
    f:close()
    for name in s:gmatch("([%w_]+)%s*%(") do port[name] = true end
  end
end

local defined, used = {}, {}
local objs = sh("find " .. build .. "/core " .. build .. "/tools -name '*.o' -not -path '*/pic/*' -not -path '*/hooks/*' | sort")
for obj in objs:gmatch("[^\n]+") do
  local m = module_of(obj:sub(#build + 2))
  for line in (m and sh("nm " .. obj) or ""):gmatch("[^\n]+") do
    local kind, sym = line:match("^%x*%s+(%a)%s+(%S+)$")
    if kind == "U" then
      used[#used + 1] = {m, sym}
    elseif kind and kind:match("[TDBR]") then
      defined[sym] = defined[sym] or {}
      table.insert(defined[sym], m)
    end
  end
end
for _, u in ipairs(used) do
  local m, sym = u[1], u[2]
  local defs = defined[sym]
  if defs and not port[sym] then
    for _, d in ipairs(defs) do
      local la, lb = layer_of(m), layer_of(d)
      if la and lb and rank[la] and rank[lb] and
         (rank[lb] > rank[la] or (rank[lb] == rank[la] and la ~= lb)) then
        problem("%s calls %s in %s (layer %s may not use %s)", m, sym, d, la, lb)
      end
      edge(m, d, ("%s calls %s"):format(m, sym))
    end
  elseif defs and port[sym] and rank[layer_of(m)] and rank[layer_of(m)] < rank.runtime then
    problem("%s calls %s, the runtime's port (layer %s may not use it)", m, sym, layer_of(m))
  elseif defs and port[sym] and layer_of(m) ~= "runtime" then
    -- a home calling its own implementation of the port
    for _, d in ipairs(defs) do
      if layer_of(d) == layer_of(m) then edge(m, d, ("%s calls %s"):format(m, sym)) end
    end
  end
end

-- 3. loops: strongly connected components (Tarjan) of the module graph
local index, low, onstack, stack, nexti = {}, {}, {}, {}, 0
local function visit(v)
  index[v], low[v] = nexti, nexti
  nexti = nexti + 1
  stack[#stack + 1] = v
  onstack[v] = true
  for w in pairs(deps[v] or {}) do
    if not index[w] then
      visit(w)
      low[v] = math.min(low[v], low[w])
    elseif onstack[w] then
      low[v] = math.min(low[v], index[w])
    end
  end
  if low[v] == index[v] then
    local comp = {}
    repeat
      local w = table.remove(stack)
      onstack[w] = nil
      comp[#comp + 1] = w
    until w == v
    if #comp > 1 then
      table.sort(comp)
      local set = {}
      for _, c in ipairs(comp) do set[c] = true end
      local why = {}
      for _, a in ipairs(comp) do
        for b, reason in pairs(deps[a] or {}) do
          if set[b] then why[#why + 1] = "    " .. reason end
        end
      end
      table.sort(why)
      problem("a loop between %s:\n%s", table.concat(comp, ", "), table.concat(why, "\n"))
    end
  end
end
local names = {}
for v in pairs(deps) do names[#names + 1] = v end
table.sort(names)
for _, v in ipairs(names) do
  if not index[v] then visit(v) end
end

for _, p in ipairs(problems) do io.stderr:write(p, "\n") end
if #problems > 0 then
  io.stderr:write(("layers: %d problem(s)\n"):format(#problems))
  os.exit(1)
end
print(("layers: %d files, no loops, every dependency goes down a layer"):format(#names))
