/* lua_json.h - JSON text to Lua values and back, integers exact (lua-cjson
 * would pass them through a double). */
#ifndef POLARIS_LUA_JSON_H
#define POLARIS_LUA_JSON_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include "lib/buf.h"

/* Encodes the value at idx. Tables with keys 1..n are arrays, others objects
 * (string or number keys); depth is limited. Returns 0, or -1 with a message
 * in err (never raises). */
int lua_json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen);

/* The same with limits and lua-cjson's conventions (the `cjson` plugins
 * see, bind_json.c). */
struct lua_json_opts {
    int max_depth;               /* tables nested deeper are refused */
    size_t max_len;              /* a longer text is refused; 0: no cap */
    bool cjson_arrays;           /* lua-cjson's arrays (holes are null, "excessively sparse"
                                  * is an error) and its error messages */
    bool refuse_nonfinite;       /* NaN and infinities are errors, not null */
    void (*check)(lua_State *L); /* called every few hundred values; may raise, so
                                  * out must then be freed by whoever owns it */
};
int lua_json_encode_opts(lua_State *L, int idx, struct buf *out, const struct lua_json_opts *o,
                         char *err, size_t errlen);

/* The same as lua_json_encode, and for a table written as an object, each
 * of its members as json_object_members would find them in out (up to
 * max; pointers into out, good until it next grows). Returns the count of
 * members (which may exceed max; 0 for anything but an object with
 * members), or -1 with a message in err. */
struct json_member;
int lua_json_encode_members(lua_State *L, int idx, struct buf *out, struct json_member *m,
                            size_t max, char *err, size_t errlen);

/* Pushes the Lua value of the JSON text s[0..n): objects and arrays as
 * tables, integers that fit in 64 bits as integers, other numbers as floats,
 * null as cjson.null (a NULL light userdata). Returns 0, or -1 with *err set
 * to a static message and nothing pushed when s is not valid JSON (RFC 8259,
 * depth <= JSON_MAX_DEPTH). Raises only when out of memory. */
int lua_json_decode(lua_State *L, const char *s, size_t n, const char **err);

/* The same, calling check every few hundred values (it may raise). */
int lua_json_decode_opts(lua_State *L, const char *s, size_t n, void (*check)(lua_State *L),
                         const char **err);

/* The same, and for an object each of its top-level members (key, key_len,
 * key_escaped, val, val_len: pointers into s) in m, up to max. Returns the
 * count of members (which may exceed max; 0 for anything but an object),
 * or -1 as lua_json_decode does. */
int lua_json_decode_members(lua_State *L, const char *s, size_t n, struct json_member *m, size_t max,
                            const char **err);

/* The same as a Lua function: decode(text) -> value; raises on bad text. */
int lua_json_decode_fn(lua_State *L);

#endif
