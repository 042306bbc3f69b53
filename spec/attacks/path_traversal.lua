-- expect-ok: denied
polaris.command("path_traversal", function(args)
  local root = polaris.config.root
  local escaped = {}
  for _, p in ipairs({root .. "/../secret", root .. "/link/secret", root .. "/../../etc/shadow", "/etc/passwd",
                      root .. "/abs/passwd"}) do
    if polaris.fs.read(p) then escaped[#escaped + 1] = p end
  end
  return 0, #escaped == 0 and "denied" or table.concat(escaped, ",")
end)
