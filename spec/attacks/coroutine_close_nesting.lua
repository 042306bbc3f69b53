-- expect: nested too deeply
-- Lua 5.4.4 bug "C-stack overflow with deep nesting of coroutine.close"
-- (fixed in 5.4.5): closes nested through __close handlers are not counted
-- against the C-stack limit; ~20,000 levels crash a stock lua5.4 with SIGSEGV.
-- The sandbox counts them (coroutine.close, sandbox.c)
polaris.command("coroutine_close_nesting", function()
  local coro = false
  for _ = 1, 30000 do
    local previous = coro
    coro = coroutine.create(function()
      local cc <close> = setmetatable({}, {__close = function()
        if previous then assert(coroutine.close(previous)) end
      end})
      coroutine.yield()
    end)
    assert(coroutine.resume(coro))
  end
  local ok, err = coroutine.close(coro)
  if ok then return 0, "closed" end
  -- each level adds its position in front: keep the innermost words
  error(tostring(err):sub(-200), 0)
end)
