-- expect: cpu budget
-- a backtracking pattern: exponential in the subject, all inside one C call
polaris.command("cpu_pattern_gsub", function()
  local s, p = ("a"):rep(40), ("a*"):rep(40) .. "b"
  s:gsub(p, "x")
  return 0, "finished?"
end)
