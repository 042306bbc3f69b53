-- expect: not enough memory|cpu budget
polaris.command("mem_concat", function()
  local s = "x"
  while true do s = s .. s end
end)
