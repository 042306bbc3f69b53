-- expect: overflow|not enough memory|cpu budget|handler error
polaris.command("c_stack_coroutines", function()
  local function nest(n) return coroutine.wrap(function() return nest(n + 1)() end) end
  return nest(1)()
end)
