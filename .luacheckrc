-- .luacheckrc - luacheck settings for polarisd's Lua (`make lint`):
-- plugins see the `polaris` and `cjson` globals (and a restricted
-- `require`); specs run under busted. Handler signatures are fixed by the
-- API, so unused arguments are fine.
std = "lua54"
max_line_length = 150
unused_args = false

files["plugins"] = {read_globals = {"polaris", "cjson"}}
files["strategies"] = {read_globals = {"polaris", "cjson"}}
files["lua/polaris/capture.lua"] = {read_globals = {"polaris", "cjson"}}
files["spec"] = {std = "+busted"}
-- hostile plugins do bad things on purpose
exclude_files = {"spec/attacks"}
