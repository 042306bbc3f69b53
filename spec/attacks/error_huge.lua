-- expect: xxxx
polaris.command("error_huge", function()
  error(string.rep("x", 1024 * 1024), 0)
end)
