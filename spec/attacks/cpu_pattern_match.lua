-- expect: cpu budget
-- a backtracking pattern: exponential in the subject, all inside one C call
polaris.command("cpu_pattern_match", function()
  local s, p = ("a"):rep(40), ("a*"):rep(40) .. "b"
  s:match(p)
  return 0, "finished?"
end)
