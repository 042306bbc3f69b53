-- expect: overflow|too many|levels|not enough memory
polaris.command("c_stack", function()
  local src = string.rep("(", 100000) .. "1" .. string.rep(")", 100000)
  local f, err = load("return " .. src)
  if not f then error(err, 0) end
  return f()
end)
