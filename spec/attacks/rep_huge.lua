-- expect: too large|not enough memory|cpu budget
-- a gigabyte asked for at once, and again behind a pcall
polaris.command("rep_huge", function()
  pcall(string.rep, "x", 1e9)
  return 0, "ok", {#string.rep("x", 1e9)}
end)
