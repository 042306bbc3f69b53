-- expect-load: not enough memory|cpu budget
local t = {} for i = 1, 1e9 do t[i] = string.rep("y", 64) .. i end
