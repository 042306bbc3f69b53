-- expect: not enough memory|cpu budget
polaris.command("mem_table", function()
  local t = {}
  for i = 1, 1e9 do t[i] = i end
end)
