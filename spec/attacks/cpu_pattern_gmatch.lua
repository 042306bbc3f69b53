-- expect: cpu budget
-- a backtracking pattern: exponential in the subject, all inside one C call
polaris.command("cpu_pattern_gmatch", function()
  local s, p = ("a"):rep(40), ("a*"):rep(40) .. "b"
  for _ in s:gmatch(p) do end
  return 0, "finished?"
end)
