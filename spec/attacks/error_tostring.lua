-- expect: error
polaris.command("error_tostring", function()
  error(setmetatable({}, {__tostring = function() while true do end end}))
end)
