-- expect-ok: bounced
-- reentrancy: two plugins answering each other's messages at full speed;
-- the rest of the daemon carries on meanwhile (the spec checks after)
local hops, stop = 0, false
local P = {}
function P.on_message(from, topic, n)
  hops = hops + 1
  if not stop then polaris.send("pingpong_b", "ping", n + 1) end
end
polaris.command("pingpong_a", function()
  hops, stop = 0, false
  polaris.send("pingpong_b", "ping", 0)
  local waited = 0
  while hops < 2000 and waited < 20000 do polaris.sleep(20); waited = waited + 20 end
  stop = true
  return 0, hops >= 2000 and "bounced" or ("only " .. hops .. " hops")
end)
return P
