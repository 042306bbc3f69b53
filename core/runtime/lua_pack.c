/* lua_pack.c - the plugin host channel's value encoding (see lua_pack.h).
 * One tag byte per value; integers and floats as 8 little-endian bytes;
 * strings and tables carry a u32 count. Keys are whatever Lua allows
 * except nil and NaN, which lua_unpack refuses.
 *
 * Uses: Lua 5.4, buf. */
#include "runtime/lua_pack.h"
#include "runtime/lua_event.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE };

static int put_u64(struct buf *b, uint64_t v)
{
    unsigned char x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    return buf_append(b, x, 8);
}

static int put_u32(struct buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return buf_append(b, x, 4);
}

static int pack_one(lua_State *L, int idx, int depth, struct buf *out, char *err, size_t errlen)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return buf_putc(out, T_NIL);
    case LUA_TBOOLEAN:
        return buf_putc(out, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return buf_putc(out, T_INT) | put_u64(out, (uint64_t)lua_tointeger(L, idx));
        double d = lua_tonumber(L, idx);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        return buf_putc(out, T_FLOAT) | put_u64(out, bits);
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (len > UINT32_MAX) {
            snprintf(err, errlen, "a string longer than 4 GiB cannot travel");
            return -1;
        }
        return buf_putc(out, T_STR) | put_u32(out, (uint32_t)len) | buf_append(out, s, len);
    }
    case LUA_TTABLE: {
        if (depth >= LUA_PACK_MAX_DEPTH) {
            snprintf(err, errlen, "tables nested deeper than %d (or a cycle) cannot travel",
                     LUA_PACK_MAX_DEPTH);
            return -1;
        }
        if (!lua_checkstack(L, 4)) {
            snprintf(err, errlen, "out of stack");
            return -1;
        }
        lua_event_settle(L, idx);               /* a lazy event table travels whole */
        int rc = buf_putc(out, T_TABLE);
        size_t at = out->len;
        rc |= put_u32(out, 0);
        uint32_t n = 0;
        lua_pushnil(L);
        while (rc == 0 && lua_next(L, idx)) {   /* raw: no metamethod runs */
            if (pack_one(L, -2, depth + 1, out, err, errlen) < 0 ||
                pack_one(L, -1, depth + 1, out, err, errlen) < 0) {
                lua_pop(L, 2);
                return -1;
            }
            lua_pop(L, 1);
            n++;
        }
        if (rc == 0) {
            unsigned char x[4] = {(unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                                  (unsigned char)(n >> 24)};
            memcpy(out->p + at, x, 4);
        }
        return rc;
    }
    default:
        snprintf(err, errlen, "a %s cannot travel to or from a plugin host", luaL_typename(L, idx));
        return -1;
    }
}

int lua_pack(lua_State *L, int idx, int n, struct buf *out, char *err, size_t errlen)
{
    idx = lua_absindex(L, idx);
    if (errlen)
        err[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t before = out->len;
        int rc = pack_one(L, idx + i, 0, out, err, errlen);
        if (rc != 0) {
            if (!err[0])
                snprintf(err, errlen, "out of memory");
            out->len = before;
            return -1;
        }
    }
    return 0;
}

struct reader {
    const unsigned char *p, *end;
};

static uint64_t get_u64(lua_State *L, struct reader *r)
{
    if (r->end - r->p < 8)
        luaL_error(L, "packed value truncated");
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | r->p[i];
    r->p += 8;
    return v;
}

static uint32_t get_u32(lua_State *L, struct reader *r)
{
    if (r->end - r->p < 4)
        luaL_error(L, "packed value truncated");
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                 (uint32_t)r->p[3] << 24;
    r->p += 4;
    return v;
}

static void unpack_one(lua_State *L, struct reader *r, int depth)
{
    if (r->p >= r->end)
        luaL_error(L, "packed value truncated");
    luaL_checkstack(L, 3, "packed value nested too deep");
    switch (*r->p++) {
    case T_NIL: lua_pushnil(L); return;
    case T_FALSE: lua_pushboolean(L, 0); return;
    case T_TRUE: lua_pushboolean(L, 1); return;
    case T_INT: lua_pushinteger(L, (lua_Integer)get_u64(L, r)); return;
    case T_FLOAT: {
        uint64_t bits = get_u64(L, r);
        double d;
        memcpy(&d, &bits, 8);
        lua_pushnumber(L, d);
        return;
    }
    case T_STR: {
        uint32_t len = get_u32(L, r);
        if ((size_t)(r->end - r->p) < len)
            luaL_error(L, "packed string runs past the end");
        lua_pushlstring(L, (const char *)r->p, len);
        r->p += len;
        return;
    }
    case T_TABLE: {
        if (depth >= LUA_PACK_MAX_DEPTH)
            luaL_error(L, "packed tables nested deeper than %d", LUA_PACK_MAX_DEPTH);
        uint32_t n = get_u32(L, r);
        if ((size_t)(r->end - r->p) / 2 < n)     /* a pair is at least two bytes */
            luaL_error(L, "packed table claims more pairs than it holds");
        lua_createtable(L, 0, (int)(n < 1024 ? n : 1024));
        for (uint32_t i = 0; i < n; i++) {
            unpack_one(L, r, depth + 1);
            if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1))))
                luaL_error(L, "packed table has a nil or NaN key");
            unpack_one(L, r, depth + 1);
            lua_rawset(L, -3);
        }
        return;
    }
    default:
        luaL_error(L, "packed value has an unknown tag %d", r->p[-1]);
    }
}

int lua_unpack(lua_State *L, const char *p, size_t len)
{
    struct reader r = {(const unsigned char *)p, (const unsigned char *)p + len};
    int n = 0;
    while (r.p < r.end) {
        unpack_one(L, &r, 0);
        n++;
    }
    return n;
}
