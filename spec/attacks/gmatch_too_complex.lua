-- expect-ok: pattern too complex, twice
-- Lua 5.4.4: a gmatch iterator that raised "pattern too complex" recursed
-- without its guard on the next call, a million frames deep: SIGSEGV
polaris.command("gmatch_too_complex", function()
  local it = string.gmatch(("a"):rep(1000000), ("a?"):rep(1000000))
  local ok1, e1 = pcall(it)
  local ok2, e2 = pcall(it)
  if not ok1 and not ok2 and e1:find("pattern too complex", 1, true) and e2:find("pattern too complex", 1, true) then
    return 0, "pattern too complex, twice"
  end
  return 0, tostring(e1) .. " / " .. tostring(e2)
end)
