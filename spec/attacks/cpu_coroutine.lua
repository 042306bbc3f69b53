-- expect: cpu budget
polaris.command("cpu_coroutine", function()
  local co = coroutine.wrap(function() while true do end end)
  co()
end)
