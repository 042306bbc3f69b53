-- expect-ok: b
-- the other half of pingpong_a: answers every message it gets
local P = {}
function P.on_message(from, topic, n) polaris.send(from, "pong", n + 1) end
polaris.command("pingpong_b", function() return 0, "b" end)
return P
