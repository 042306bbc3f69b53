-- loader.lua - finds plugins, checks their manifests and orders them by
-- dependencies (DESIGN 5.1, 5.2). Runs in the daemon's trusted loader state;
-- it decides nothing about permissions (the C core applies the policy).
--
-- plan(paths, list_dir, read_file) -> array of entries in load order:
--   {id, name, version, plugin_type, file, entry_function, manifest_file,
--    permissions, dependencies (id -> range text), sandbox, isolation,
--    module_dir = the plugin folder (its own modules) or nil,
--    error = nil | "reason" (its own files are wrong: it cannot load),
--    dependency_error = nil | "reason" (a dependency's files are missing,
--      incompatible or broken: the core decides against what runs, since a
--      dependency whose reload fails keeps its running version)}
local cjson = require "cjson"
local semver = require "polaris.semver"

local M = {}

-- The permission names a manifest may use, {name = true}: set by the
-- daemon from its one list (core/daemon/plugin_policy.c) before any load.
M.permissions = {}

local TYPES = {Router = true, Strategy = true, Command = true, Monitor = true,
               Library = true, Custom = true}

local function is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

-- Validates a decoded manifest; returns the normalised entry or nil, reason.
function M.check_manifest(m, stem)
  if type(m) ~= "table" then return nil, "manifest is not a JSON object" end
  if type(m.id) ~= "string" or not m.id:match("^[%w_%-%.]+$") then
    return nil, "manifest: id must be a string of letters, digits, '_', '-', '.'"
  end
  local v, verr = semver.parse(m.version)
  if not v then return nil, "manifest: " .. verr end
  if m.plugin_type ~= nil and not TYPES[m.plugin_type] then
    return nil, "manifest: plugin_type '" .. tostring(m.plugin_type) ..
      "' is not one of Router, Strategy, Command, Monitor, Library, Custom"
  end
  -- entry_point: a file beside the manifest ("x.lua"), or, as in the
  -- original plugin system ("plugin_entry"), the name of a function that
  -- STEM.lua defines and that returns the plugin table
  local entry, entry_fn = m.entry_point or (stem .. ".lua"), nil
  if type(entry) == "string" and entry:match("^[%a_][%w_]*$") and #entry < 64 then
    entry, entry_fn = stem .. ".lua", entry
  elseif type(entry) ~= "string" or entry:find("/", 1, true) or entry:find("..", 1, true) then
    return nil, "manifest: entry_point must be a file name beside the manifest or a function name"
  end
  local perms = m.permissions or {}
  if not is_array(perms) then return nil, "manifest: permissions must be an array" end
  for _, p in ipairs(perms) do
    if type(p) ~= "string" or not (M.permissions[p] or p:match("^Custom:[%w_%-%.]+$")) then
      return nil, "manifest: unknown permission '" .. tostring(p) .. "'"
    end
  end
  local deps = m.dependencies or {}
  if type(deps) ~= "table" or (next(deps) and is_array(deps)) then
    return nil, "manifest: dependencies must be an object of id -> version range"
  end
  local ranges = {}
  for dep, range in pairs(deps) do
    -- a version object, as in the original plugin system, means ^X.Y.Z
    if type(range) == "table" then
      local t, verr2 = semver.parse(range)
      if not t then return nil, "manifest: dependency " .. tostring(dep) .. ": " .. verr2 end
      range = "^" .. semver.tostring(t)
    end
    local ok, rerr = semver.range(range)
    if not ok then return nil, "manifest: dependency " .. tostring(dep) .. ": " .. rerr end
    ranges[dep] = range
  end
  local sb = m.sandbox or {}
  if type(sb) ~= "table" then return nil, "manifest: sandbox must be an object" end
  for _, k in ipairs({"memory_limit", "cpu_time_limit_ms"}) do
    if sb[k] ~= nil and (type(sb[k]) ~= "number" or sb[k] <= 0) then
      return nil, "manifest: sandbox." .. k .. " must be a positive number"
    end
  end
  for _, k in ipairs({"allowed_paths", "forbidden_paths"}) do
    if sb[k] ~= nil and not is_array(sb[k]) then
      return nil, "manifest: sandbox." .. k .. " must be an array of paths"
    end
  end
  if m.isolation ~= nil and m.isolation ~= "process" and m.isolation ~= "inprocess" then
    return nil, "manifest: isolation must be \"process\" or \"inprocess\""
  end
  return {
    id = m.id, name = m.name or m.id, version = semver.tostring(v), version_t = v,
    plugin_type = m.plugin_type or "Custom", entry_point = entry, entry_function = entry_fn,
    permissions = perms, dependencies = ranges,
    memory_limit = sb.memory_limit and math.floor(sb.memory_limit) or nil,
    cpu_time_limit_ms = sb.cpu_time_limit_ms,
    allowed_paths = sb.allowed_paths or {}, forbidden_paths = sb.forbidden_paths or {},
    isolation = m.isolation or "inprocess",
  }
end

-- Orders entries so that dependencies come first; marks what cannot load.
function M.resolve(entries)
  local by_id = {}
  for _, e in ipairs(entries) do
    if not e.error then
      if by_id[e.id] then
        e.error = "duplicate plugin id '" .. e.id .. "' (also in " .. by_id[e.id].manifest_file .. ")"
      else
        by_id[e.id] = e
      end
    end
  end
  -- direct problems: missing or incompatible dependencies
  for _, e in ipairs(entries) do
    if not e.error then
      for dep, range in pairs(e.dependencies) do
        local d = by_id[dep]
        if not d then
          e.dependency_error = "missing dependency '" .. dep .. "' (" .. range .. ")"
        elseif not semver.satisfies(d.version, range) then
          e.dependency_error = "dependency '" .. dep .. "' is " .. d.version .. ", needs " .. range
        end
        if e.dependency_error then break end
      end
    end
  end
  local function failed(e) return e.error or e.dependency_error end
  -- depth-first order; a cycle or a failed dependency fails its dependents
  local order, state = {}, {}
  local function visit(e, stack)
    if state[e] == "done" then return not failed(e) end
    if state[e] == "visiting" then
      local names = {}
      for i = stack.from[e], #stack do names[#names + 1] = stack[i].id end
      names[#names + 1] = e.id
      local cycle = table.concat(names, " -> ")
      for i = stack.from[e], #stack do
        stack[i].error = stack[i].error or ("dependency cycle: " .. cycle)
      end
      return false
    end
    state[e] = "visiting"
    stack[#stack + 1] = e
    stack.from[e] = #stack
    local deps = {}
    for dep in pairs(e.dependencies) do deps[#deps + 1] = dep end
    table.sort(deps)
    for _, dep in ipairs(deps) do
      local d = by_id[dep]
      if d and not visit(d, stack) and not failed(e) then
        e.dependency_error = "dependency '" .. dep .. "' failed: " .. tostring(failed(d))
      end
    end
    stack[#stack] = nil
    stack.from[e] = nil
    state[e] = "done"
    order[#order + 1] = e
    return not failed(e)
  end
  local ids = {}
  for _, e in ipairs(entries) do if not e.error then ids[#ids + 1] = e end end
  table.sort(ids, function(a, b) return a.id < b.id end)
  for _, e in ipairs(ids) do visit(e, {from = {}}) end
  -- entries that failed before resolution keep their place at the end
  for _, e in ipairs(entries) do if e.error and not state[e] then order[#order + 1] = e end end
  return order
end

-- Scans the plugin paths: every NAME.json with a NAME.lua (or entry_point),
-- and every folder NAME/ holding NAME.json (a plugin with its own modules).
function M.plan(paths, list_dir, read_file)
  local entries = {}
  for _, dir in ipairs(paths) do
    local names = list_dir(dir) or {}
    table.sort(names)
    for _, name in ipairs(names) do
      local stem = name:match("^(.+)%.json$")
      local pdir, folder = dir, nil
      -- a plugin folder NAME/ holding NAME.json, NAME.lua and its own modules
      if not stem and name:match("^[%w_%-%.]+$") and not name:find("^%.")
         and read_file(dir .. "/" .. name .. "/" .. name .. ".json") then
        stem, pdir, folder = name, dir .. "/" .. name, dir .. "/" .. name
      end
      if stem then
        local mfile = pdir .. "/" .. stem .. ".json"
        local text, rerr = read_file(mfile)
        local e
        if not text then
          e = {error = "cannot read manifest: " .. tostring(rerr)}
        else
          local ok, m = pcall(cjson.decode, text)
          if not ok then
            e = {error = "manifest is not valid JSON: " .. tostring(m):gsub("^.-: ", "")}
          else
            local err
            e, err = M.check_manifest(m, stem)
            if not e then e = {error = err} end
          end
        end
        e.id = e.id or stem
        e.manifest_file = mfile
        e.dir = pdir
        e.module_dir = folder
        if e.entry_point then
          e.file = pdir .. "/" .. e.entry_point
          if not e.error and not read_file(e.file) then
            e.error = "entry point " .. e.file .. " is missing or unreadable"
          end
        end
        entries[#entries + 1] = e
      end
    end
  end
  return M.resolve(entries)
end

return M
