/* lua_json.h - JSON text to Lua values and back, integers exact (lua-cjson
 * would pass them through a double). */
#ifndef POLARIS_LUA_JSON_H
#define POLARIS_LUA_JSON_H

#include <lua.h>
#include "buf.h"

/* Encodes the value at idx. Tables with keys 1..n are arrays, others objects
 * (string or number keys); depth is limited. Returns 0, or -1 with a message
 * in err (never raises). */
int lua_json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen);

/* Pushes the Lua value of the JSON text s[0..n): objects and arrays as
 * tables, integers that fit in 64 bits as integers, other numbers as floats,
 * null as cjson.null (a NULL light userdata). Returns 0, or -1 with *err set
 * to a static message and nothing pushed when s is not valid JSON (RFC 8259,
 * depth <= JSON_MAX_DEPTH). Raises only when out of memory. */
int lua_json_decode(lua_State *L, const char *s, size_t n, const char **err);

/* The same as a Lua function: decode(text) -> value; raises on bad text. */
int lua_json_decode_fn(lua_State *L);

#endif
