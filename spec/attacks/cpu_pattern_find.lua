-- expect: cpu budget
-- a backtracking pattern: exponential in the subject, all inside one C call
polaris.command("cpu_pattern_find", function()
  local s, p = ("a"):rep(40), ("a*"):rep(40) .. "b"
  string.find(s, p)
  return 0, "finished?"
end)
