/* lua_pack.h - Lua values to bytes and back, for the plugin host channel:
 * nil, booleans, integers (exact, never through a double), floats, byte
 * strings (binary-safe, unlike JSON) and tables of them. The reader takes
 * untrusted bytes: every length is checked against what is left, nesting is
 * bounded, and it raises a Lua error (call it under pcall) rather than read
 * past the end. */
#ifndef POLARIS_LUA_PACK_H
#define POLARIS_LUA_PACK_H

#include <lua.h>
#include <stddef.h>
#include "lib/buf.h"

#define LUA_PACK_MAX_DEPTH 16

/* Appends values idx .. idx+n-1 of L to out. Returns 0, or -1 with err
 * naming the first value that cannot travel (a function, userdata, a
 * cycle or nesting deeper than LUA_PACK_MAX_DEPTH, or no memory). A lazy
 * event table (lua_event.c) travels settled, and settling allocates from
 * L: out of memory there raises, so a caller that may meet one packs
 * under lua_pcall and frees out either way (plugin_host_home.c). */
int lua_pack(lua_State *L, int idx, int n, struct buf *out, char *err, size_t errlen);

/* Pushes every value packed in p[0..len) and returns how many; raises a
 * Lua error on malformed input. */
int lua_unpack(lua_State *L, const char *p, size_t len);

#endif
