-- expect: cpu budget
polaris.command("cpu_xpcall_handler", function()
  xpcall(function() while true do end end, function() while true do end end)
  while true do end
end)
