-- list_actions: the actions the host's plugins offer (after reloads too).
polaris.command("list_actions", function()
  return 0, "Success", {actions = polaris.actions()}
end)
