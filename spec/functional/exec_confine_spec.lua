-- exec_confine_spec.lua - a program a plugin runs with polaris.exec keeps
-- the plugin's limits (DESIGN 5.3): it opens nothing under forbidden_paths,
-- writes only under allowed_paths (Landlock, where the kernel has it) and
-- has no network without NetworkAccess (a new network namespace, or a
-- seccomp filter where the daemon may not make one).
local H = require "helpers"
local ptest = H.ptest
local socket = require "socket"

after_each(function() H.stop_all() end)


describe("polaris.exec's programs", function()
  it("cannot read a forbidden file, write outside allowed_paths or connect anywhere", function()
    local dir = ptest.mkdtemp()
    os.execute(("mkdir -p '%s/allowed' '%s/vault' && echo secret > '%s/vault/secret' && echo plain > '%s/plain'")
               :format(dir, dir, dir, dir))
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local d = H.start_daemon({plugins = {
      runner = {lua = [[
        local function run(argv)
          local r = polaris.exec(argv, {timeout = 10000})
          return {code = r.code, out = r.stdout, err = r.stderr}
        end
        polaris.command("try", function(args)
          local d = args.dir
          return 0, "ok", {
            plain = run({"/bin/cat", d .. "/plain"}),
            secret = run({"/bin/cat", d .. "/vault/secret"}),
            listing = run({"/bin/ls", d .. "/vault"}),
            write_in = run({"/bin/sh", "-c", "echo hi > " .. d .. "/allowed/f && cat " .. d .. "/allowed/f"}),
            write_out = run({"/bin/sh", "-c", "echo hi > " .. d .. "/outside"}),
            connect = run({"/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" .. args.port .. " && echo connected"}),
          }
        end)
      ]], manifest = {plugin_type = "Command", permissions = {"ExecuteSyscall", "FileSystemAccess"},
                      sandbox = {allowed_paths = {dir .. "/allowed"}, forbidden_paths = {dir .. "/vault"}}}},
    }})
    local r = H.app(d):call("host", "try", {dir = dir, port = port}, 30000, 40000)
    assert.are.equal(0, r.code, r.msg)
    local t = r.data
    assert.are.equal(0, t.plain.code, t.plain.err)
    assert.are.equal("plain\n", t.plain.out)
    assert.are_not.equal(0, t.secret.code)
    assert.are.equal("", t.secret.out)
    assert.is_truthy(t.secret.err:find("Permission denied", 1, true), t.secret.err)
    assert.are_not.equal(0, t.listing.code)
    assert.are.equal(0, t.write_in.code, t.write_in.err)
    assert.are.equal("hi\n", t.write_in.out)
    assert.are_not.equal(0, t.write_out.code)
    assert.is_nil(io.open(dir .. "/outside"))
    assert.are_not.equal(0, t.connect.code)
    assert.are.equal("", t.connect.out)
    server:settimeout(0)
    assert.is_nil(server:accept(), "the program reached the listener")
    server:close()
    H.stop_ok(d)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("keeps the network with NetworkAccess", function()
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local d = H.start_daemon({config = {plugins = {policy = "blacklist", permissions = ""}}, plugins = {
      netter = {lua = [[
        polaris.command("try", function(args)
          local r = polaris.exec({"/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" .. args.port .. " && echo connected"})
          return 0, r.stdout
        end)
      ]], manifest = {plugin_type = "Command", permissions = {"ExecuteSyscall", "NetworkAccess"}}},
    }})
    local st = H.plugin_by_id(d:status(), "netter")
    assert.are.equal("Active", st.state, st.last_error)
    local r = H.app(d):call("host", "try", {port = port}, 30000, 40000)
    assert.are.equal("connected\n", r.msg)
    server:close()
    H.stop_ok(d)
  end)
end)
