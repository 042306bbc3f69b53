-- expect: not enough memory|too large|cpu budget
polaris.command("mem_rep", function() return 0, "ok", {#string.rep("x", 1 << 40)} end)
