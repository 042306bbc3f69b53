/* bind_json.c - the `cjson` global every plugin gets, in place of lua-cjson
 * (which mallocs outside the state's allocator, calls exit() when malloc
 * fails, and lets a plugin raise its own nesting limits until the C stack
 * overflows).
 *
 * API kept: cjson.encode(v), cjson.decode(text), cjson.null, and
 * cjson.safe, whose encode and decode return nil, message instead of
 * raising. lua-cjson 2.1.0 has no empty_array, so neither do we. The
 * global setters (encode_max_depth, decode_max_depth, encode_sparse_array,
 * encode_number_precision, encode_keep_buffer, encode_invalid_numbers,
 * decode_invalid_numbers) and new are still there, and raise an error
 * saying the daemon fixes these limits: a plugin that calls one learns why
 * at once, rather than meeting "attempt to call a nil value".
 *
 * Limits, fixed: tables nested deeper than JSON_ENCODE_DEPTH are refused,
 * and JSON text deeper than JSON_MAX_DEPTH (json_scan.h); the encoder's
 * text is capped at the memory the plugin has left and lives in a
 * userdata-owned buffer (freed by the collector if anything raises); what
 * decode builds is allocated by the state, under its memory limit; both
 * call the CPU budget every few hundred values.
 *
 * Behaviour against lua-cjson for ordinary values (spec/unit/plugin_cjson
 * _spec.lua): the same arrays (holes as null, "excessively sparse" an
 * error), objects, empty tables ({}), strings, booleans, null, and NaN and
 * infinities refused; but integers stay exact both ways (decode("1") is
 * the integer 1, not 1.0; 2^53+1 survives), floats print with up to 17
 * digits where lua-cjson prints 14, '/' is not escaped, invalid UTF-8
 * becomes U+FFFD, decode refuses what RFC 8259 refuses (nan, inf, hex),
 * and the error texts of decode differ.
 *
 * Uses: lua_json, buf, Lua 5.4 C API. */
#include "runtime/bind_json.h"
#include "lib/buf.h"
#include "wire/json_scan.h"
#include "runtime/lua_json.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdint.h>

#define JSON_ENCODE_DEPTH JSON_MAX_DEPTH
#define TEXT_MT "polaris.json_text"

static const struct rt_limits *limits_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static int text_gc(lua_State *L)
{
    buf_free(luaL_checkudata(L, 1, TEXT_MT));
    return 0;
}

static int l_encode(lua_State *L)
{
    const struct rt_limits *lim = limits_of(L);
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    struct buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    *b = (struct buf)BUF_INIT;
    luaL_setmetatable(L, TEXT_MT);
    struct lua_json_opts o = {JSON_ENCODE_DEPTH, 0, true, true, NULL};
    if (lim) {
        o.check = lim->check_budget;
        if (lim->mem_room) {
            size_t room = lim->mem_room(L);
            o.max_len = room ? room : 1;
        }
    }
    char err[256];
    if (lua_json_encode_opts(L, 1, b, &o, err, sizeof err) < 0) {
        buf_free(b);
        return luaL_error(L, "%s", err);
    }
    lua_pushlstring(L, b->p ? b->p : "", b->len);
    buf_free(b);
    return 1;
}

static int l_decode(lua_State *L)
{
    const struct rt_limits *lim = limits_of(L);
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *err;
    if (lua_json_decode_opts(L, s, n, lim ? lim->check_budget : NULL, &err) < 0)
        return luaL_error(L, "invalid JSON: %s", err);
    return 1;
}

/* cjson.safe's: the raising function (upvalue 1), its error as nil, msg. */
static int l_safe(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    if (lua_pcall(L, lua_gettop(L) - 1, 1, 0) == LUA_OK)
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

static int l_removed(lua_State *L)
{
    return luaL_error(L, "cjson.%s is not available to plugins: the daemon fixes JSON's limits "
                      "(nesting %d, the plugin's memory_limit)", lua_tostring(L, lua_upvalueindex(1)),
                      JSON_MAX_DEPTH);
}

static void fill(lua_State *L, const struct rt_limits *lim, bool safe)
{
    static const char *const removed[] = {
        "encode_max_depth", "decode_max_depth", "encode_sparse_array", "encode_number_precision",
        "encode_keep_buffer", "encode_invalid_numbers", "decode_invalid_numbers", "new", NULL,
    };
    static const struct { const char *name; lua_CFunction f; } fns[] = {
        {"encode", l_encode}, {"decode", l_decode},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        lua_pushlightuserdata(L, (void *)(uintptr_t)lim);
        lua_pushcclosure(L, fns[i].f, 1);
        if (safe)
            lua_pushcclosure(L, l_safe, 1);
        lua_setfield(L, -2, fns[i].name);
    }
    for (const char *const *r = removed; *r; r++) {
        lua_pushstring(L, *r);
        lua_pushcclosure(L, l_removed, 1);
        lua_setfield(L, -2, *r);
    }
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushstring(L, safe ? "cjson.safe" : "cjson");
    lua_setfield(L, -2, "_NAME");
    lua_pushliteral(L, "2.1.0-polaris");
    lua_setfield(L, -2, "_VERSION");
}

void bind_json_push(lua_State *L, const struct rt_limits *lim)
{
    if (luaL_newmetatable(L, TEXT_MT)) {
        lua_pushcfunction(L, text_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 16);
    fill(L, lim, false);
    lua_createtable(L, 0, 14);
    fill(L, lim, true);
    lua_setfield(L, -2, "safe");
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "polaris.cjson");
}
