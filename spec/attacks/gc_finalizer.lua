-- expect: __gc is not allowed
polaris.command("gc_finalizer", function()
  setmetatable({}, {__gc = function() while true do end end})
end)
