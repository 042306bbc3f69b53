/* lua_json.h - Lua values to JSON text, integers exact (lua-cjson would pass
 * them through a double). Decoding uses lua-cjson. */
#ifndef POLARIS_LUA_JSON_H
#define POLARIS_LUA_JSON_H

#include <lua.h>
#include "buf.h"

/* Encodes the value at idx. Tables with keys 1..n are arrays, others objects
 * (string or number keys); depth is limited. Returns 0, or -1 with a message
 * in err (never raises). */
int lua_json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen);

#endif
