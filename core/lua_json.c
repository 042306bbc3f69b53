/* lua_json.c - the one Lua -> JSON encoder the runtime uses, for events
 * returned by strategies, command results and messages between plugins.
 * Integers are written as integers (an eventId of 2^53+1 survives); metatables
 * are ignored (rawget/rawlen only), so plugin code never runs while encoding. */
#include "lua_json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 64

static int encode(lua_State *L, int idx, struct buf *out, int depth, char *err, size_t errlen);

static int is_array(lua_State *L, int idx, lua_Integer *n)
{
    lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    *n = len;
    return count == len && len > 0;
}

static int encode_table(lua_State *L, int idx, struct buf *out, int depth, char *err, size_t errlen)
{
    if (depth > MAX_DEPTH) {
        snprintf(err, errlen, "table nested deeper than %d (or a cycle)", MAX_DEPTH);
        return -1;
    }
    if (!lua_checkstack(L, 4)) {
        snprintf(err, errlen, "out of Lua stack");
        return -1;
    }
    lua_Integer n;
    if (is_array(L, idx, &n)) {
        buf_putc(out, '[');
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                buf_putc(out, ',');
            lua_rawgeti(L, idx, i);
            int rc = encode(L, lua_gettop(L), out, depth + 1, err, errlen);
            lua_pop(L, 1);
            if (rc < 0)
                return -1;
        }
        return buf_putc(out, ']');
    }
    buf_putc(out, '{');
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
            lua_pop(L, 2);
            snprintf(err, errlen, "table key of type %s cannot be a JSON key", lua_typename(L, kt));
            return -1;
        }
        if (!first)
            buf_putc(out, ',');
        first = 0;
        if (kt == LUA_TSTRING) {
            size_t kl;
            const char *k = lua_tolstring(L, -2, &kl);
            buf_json_str(out, k, kl);
        } else {
            char tmp[64];
            if (lua_isinteger(L, -2))
                snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(L, -2));
            else
                snprintf(tmp, sizeof tmp, "%.17g", lua_tonumber(L, -2));
            buf_json_cstr(out, tmp);
        }
        buf_putc(out, ':');
        int rc = encode(L, lua_gettop(L), out, depth + 1, err, errlen);
        lua_pop(L, 1);
        if (rc < 0) {
            lua_pop(L, 1);
            return -1;
        }
    }
    return buf_putc(out, '}');
}

static int encode(lua_State *L, int idx, struct buf *out, int depth, char *err, size_t errlen)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return buf_append(out, "null", 4);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? buf_append(out, "true", 4) : buf_append(out, "false", 5);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return buf_json_i64(out, (int64_t)lua_tointeger(L, idx));
        return buf_json_double(out, lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t l;
        const char *s = lua_tolstring(L, idx, &l);
        return buf_json_str(out, s, l);
    }
    case LUA_TTABLE:
        return encode_table(L, idx, out, depth, err, errlen);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)        /* cjson.null */
            return buf_append(out, "null", 4);
        /* fall through */
    default:
        snprintf(err, errlen, "a %s value cannot be encoded as JSON", luaL_typename(L, idx));
        return -1;
    }
}

int lua_json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen)
{
    idx = lua_absindex(L, idx);
    size_t start = out->len;
    if (encode(L, idx, out, 0, err, errlen) < 0) {
        out->len = start;
        if (out->p)
            out->p[start] = '\0';
        return -1;
    }
    return 0;
}
