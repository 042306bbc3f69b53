-- expect: cpu budget
polaris.command("cpu_loop", function() while true do end end)
