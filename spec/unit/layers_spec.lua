-- layers_spec.lua - tools/layers.lua finds what it promises to find: a file
-- using a later layer, a call loop between files, an include loop; and it
-- lets the runtime's port through. Each case is a small tree of real C files
-- compiled with cc, the way `make lint` runs it on ours.
local tool
do
  local p = assert(io.popen("pwd"))
  tool = p:read("l") .. "/tools/layers.lua"     -- specs run from the checkout's root
  p:close()
  assert(io.open(tool), tool):close()
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok == true, out, code
end

local function tree(files)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  for path, text in pairs(files) do
    assert(os.execute("mkdir -p " .. dir .. "/" .. path:match("^(.*)/")))
    local f = assert(io.open(dir .. "/" .. path, "w"))
    f:write(text)
    f:close()
  end
  for path in pairs(files) do
    if path:match("%.c$") then
      local obj = dir .. "/build/" .. path:gsub("%.c$", ".o")
      assert(os.execute("mkdir -p " .. obj:match("^(.*)/")))
      local ok, out = sh(("cd %s && cc -c -Icore %s -o %s"):format(dir, path, obj))
      assert(ok, out)
    end
  end
  return dir
end

local function check(dir)
  local ok, out = sh(("cd %s && lua5.4 %s build"):format(dir, tool))
  os.execute("rm -rf " .. dir)
  return ok, out
end

local base = {
  ["core/lib/buf.h"] = "int buf_len(void);\n",
  ["core/lib/buf.c"] = '#include "lib/buf.h"\nint buf_len(void) { return 1; }\n',
  ["core/wire/codec.h"] = "int codec(void);\n",
  ["core/wire/codec.c"] = '#include "wire/codec.h"\n#include "lib/buf.h"\nint codec(void) { return buf_len(); }\n',
  ["core/runtime/port.h"] = "int home_schedule(void);\n",
  ["core/runtime/plugin.c"] = '#include "runtime/port.h"\n#include "wire/codec.h"\n' ..
                              "int plugin_run(void) { return home_schedule() + codec(); }\n",
  ["core/daemon/home.c"] = '#include "runtime/port.h"\nint home_schedule(void) { return 0; }\n',
  ["tools/ctl.c"] = '#include "wire/codec.h"\nint ctl(void) { return codec(); }\n',
}

local function with(extra)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(extra) do t[k] = v end
  return t
end

describe("tools/layers.lua", function()
  it("passes a tree whose files use only earlier layers, the runtime going out through its port", function()
    local ok, out = check(tree(base))
    assert.is_true(ok, out)
    assert.matches("no loops", out)
  end)

  it("refuses an include of a later layer", function()
    local ok, out = check(tree(with({
      ["core/daemon/d.h"] = "int d(void);\n",
      ["core/lib/bad.c"] = '#include "daemon/d.h"\nint bad(void) { return 0; }\n',
    })))
    assert.is_false(ok)
    assert.matches("core/lib/bad.c:1: lib/bad.c includes daemon/d.h %(layer lib may not use daemon%)", out)
  end)

  it("refuses a call into a later layer that is not the port", function()
    local ok, out = check(tree(with({
      ["core/daemon/d.c"] = "int daemon_thing(void) { return 2; }\n",
      ["core/runtime/sneaky.c"] = "int daemon_thing(void);\nint sneaky(void) { return daemon_thing(); }\n",
    })))
    assert.is_false(ok)
    assert.matches("runtime/sneaky.c calls daemon_thing in daemon/d.c %(layer runtime may not use daemon%)", out)
  end)

  it("refuses the daemon and the plugin host using each other", function()
    local ok, out = check(tree(with({
      ["core/isolate/i.c"] = "int isolate_thing(void) { return 3; }\n",
      ["core/daemon/d.c"] = "int isolate_thing(void);\nint d(void) { return isolate_thing(); }\n",
    })))
    assert.is_false(ok)
    assert.matches("layer daemon may not use isolate", out)
  end)

  it("finds a call loop between two files of one layer, and says which calls make it", function()
    local ok, out = check(tree(with({
      ["core/daemon/a.c"] = "int b(void);\nint a(void) { return b(); }\n",
      ["core/daemon/b.c"] = "int a(void);\nint b(void) { return a(); }\n",
    })))
    assert.is_false(ok)
    assert.matches("a loop between daemon/a.c, daemon/b.c", out)
    assert.matches("daemon/a.c calls b", out)
    assert.matches("daemon/b.c calls a", out)
  end)

  it("refuses the port called from below the runtime, and ignores what port.h's comments mention", function()
    local ok, out = check(tree(with({
      ["core/runtime/port.h"] = "/* home_schedule(): see daemon_thing() */\nint home_schedule(void);\n",
      ["core/daemon/d.c"] = "int daemon_thing(void) { return 2; }\n",
      ["core/runtime/sneaky.c"] = "int daemon_thing(void);\nint sneaky(void) { return daemon_thing(); }\n",
      ["core/wire/low.c"] = "int home_schedule(void);\nint low(void) { return home_schedule(); }\n",
    })))
    assert.is_false(ok)
    assert.matches("wire/low.c calls home_schedule, the runtime's port %(layer wire may not use it%)", out)
    assert.matches("runtime/sneaky.c calls daemon_thing in daemon/d.c", out)
  end)

  it("leaves out objects whose source is gone (a stale build)", function()
    local dir = tree(base)
    assert(os.execute("mkdir -p " .. dir .. "/build/core/daemon && cp " .. dir ..
                      "/build/core/runtime/plugin.o " .. dir .. "/build/core/daemon/old_copy.o"))
    local ok, out = check(dir)
    assert.is_true(ok, out)
  end)

  it("finds an include loop between headers", function()
    local ok, out = check(tree(with({
      ["core/wire/x.h"] = '#include "wire/y.h"\n',
      ["core/wire/y.h"] = '#include "wire/x.h"\n',
    })))
    assert.is_false(ok)
    assert.matches("a loop between wire/x.h, wire/y.h", out)
  end)
end)
