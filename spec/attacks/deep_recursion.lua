-- expect: stack overflow|not enough memory
polaris.command("deep_recursion", function()
  local function f(n) return 1 + f(n + 1) end
  return f(1)
end)
