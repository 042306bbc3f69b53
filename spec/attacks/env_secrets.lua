-- expect-ok: no secrets
polaris.command("env_secrets", function()
  local r = polaris.exec({"/usr/bin/env"})
  if r.stdout:find("POLARIS_TEST_SECRET", 1, true) then return 0, "leaked" end
  return 0, "no secrets"
end)
