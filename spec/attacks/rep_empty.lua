-- expect-ok: empty
-- the stock string.rep copies nothing math.maxinteger times: a hang
polaris.command("rep_empty", function()
  local s = string.rep("", math.maxinteger) .. string.rep("", math.maxinteger, "")
  return 0, #s == 0 and "empty" or "not empty"
end)
