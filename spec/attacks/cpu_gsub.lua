-- expect: cpu budget
polaris.command("cpu_gsub", function()
  string.rep("x", 100):gsub(".", function() while true do end end)
end)
