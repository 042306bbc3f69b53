-- ping: is the host alive, and which polarisd is it?
polaris.command("ping", function(args, req)
  local now = polaris.now()
  return 0, "Success", {
    pong = true,
    time = now,
    uptime_ms = now - polaris.daemon.started_ms,
    version = polaris.daemon.version,
    echo = args.echo,
  }
end)
