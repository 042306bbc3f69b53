-- expect-load: cpu budget
while true do end
