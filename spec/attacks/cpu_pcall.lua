-- expect: cpu budget
polaris.command("cpu_pcall", function()
  while true do pcall(function() while true do end end) end
end)
