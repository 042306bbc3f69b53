/* driver_lua.S - lua/polaris/driver.lua, built into the binary: every
 * plugin's state runs it before the plugin's code (bind_polaris.c), in the
 * daemon and in a plugin host, which may not be able to read the runtime's
 * directory once confined. Kept a .lua file so luacheck and busted see it. */
    .section .rodata
    .global polaris_driver_lua
    .type polaris_driver_lua, @object
polaris_driver_lua:
    .incbin "lua/polaris/driver.lua"
    .size polaris_driver_lua, . - polaris_driver_lua
    .global polaris_driver_lua_end
    .type polaris_driver_lua_end, @object
polaris_driver_lua_end:
    .byte 0
    .size polaris_driver_lua_end, 1
    .section .note.GNU-stack,"",@progbits
