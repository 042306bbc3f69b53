-- expect-ok: all absent
polaris.command("removed_libs", function()
  local present = {}
  for _, name in ipairs({"io", "debug", "dofile", "loadfile"}) do
    if _G[name] ~= nil then present[#present + 1] = name end
  end
  -- package holds only what pure-Lua libraries look at: nothing loads C or files
  for _, name in ipairs({"loadlib", "searchpath", "searchers"}) do
    if package[name] ~= nil then present[#present + 1] = "package." .. name end
  end
  for _, name in ipairs({"execute", "exit", "getenv", "remove", "rename", "tmpname", "setlocale"}) do
    if os[name] ~= nil then present[#present + 1] = "os." .. name end
  end
  if string.dump then present[#present + 1] = "string.dump" end
  if #present > 0 then return 0, "present: " .. table.concat(present, ",") end
  return 0, "all absent"
end)
