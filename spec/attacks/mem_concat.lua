-- expect: not enough memory
polaris.command("mem_concat", function()
  local s = "x"
  while true do s = s .. s end
end)
