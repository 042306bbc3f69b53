/* fuzz_luajson.c - libFuzzer target for the runtime's JSON -> Lua decoder
 * (lua_json.c), whose scans rely on json_scan having accepted the text:
 *   - any bytes: it pushes one value or refuses, never reads outside them,
 *     and refuses exactly what json_validate refuses;
 *   - what it pushes encodes (lua_json_encode) to valid JSON that decodes
 *     again;
 *   - lua_json_encode_members writes the same text and notes exactly the
 *     members json_object_members finds in it (the restamp of a strategy's
 *     event trusts those notes instead of scanning);
 *   - lua_json_decode_members notes the same members (keys and values) as
 *     json_object_members;
 *   - a lazy event table of an object (lua_event.c) encodes to valid JSON
 *     with the same value as the plain table, untouched, with its first
 *     member read and a key added, settled, and with its first member read
 *     and the top-level "eventId" left out as the write-back leaves it
 *     (skip_event_id); its member notes are the ones json_object_members
 *     finds in what it wrote; an untouched one, or one only read, is sent
 *     as its text (lua_event_as_text) only when that says the same. */
#include "wire/json_scan.h"
#include "runtime/lua_json.h"
#include "runtime/lua_event.h"

#include <lauxlib.h>
#include <math.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

static lua_State *L;

#define MEMBERS 64

static int decode_protected(lua_State *S)
{
    const char *p = lua_touserdata(S, 1);
    size_t n = (size_t)lua_tointeger(S, 2);
    const char *err;
    lua_settop(S, 0);
    if (lua_json_decode(S, p, n, &err) < 0)
        return 0;
    return 1;
}

static int decode_members_protected(lua_State *S)
{
    const char *p = lua_touserdata(S, 1);
    size_t n = (size_t)lua_tointeger(S, 2);
    struct json_member got[MEMBERS], want[MEMBERS];
    const char *err;
    lua_settop(S, 0);
    int k = lua_json_decode_members(S, p, n, got, MEMBERS, &err);
    int w = json_object_members(p, n, want, MEMBERS, &err);
    if (k < 0 ? w >= 0 || json_validate(p, n, &err) != JSON_INVALID : (w >= 0 ? k != w : k != 0))
        abort();
    for (int i = 0; i < w && i < MEMBERS; i++)
        if (got[i].key != want[i].key || got[i].key_len != want[i].key_len || got[i].val != want[i].val ||
            got[i].val_len != want[i].val_len || got[i].key_escaped != want[i].key_escaped)
            abort();
    return 0;
}

/* 1: decoded (value on top), 0: refused; a raise is a bug */
static int decode(const char *p, size_t n)
{
    lua_settop(L, 0);
    lua_pushcfunction(L, decode_protected);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushinteger(L, (lua_Integer)n);
    if (lua_pcall(L, 2, LUA_MULTRET, 0) != LUA_OK)
        abort();
    return lua_gettop(L) == 1;
}

/* lua_json_encode_members of the value at idx into b, its members noted
 * in got: the copied members' notes taken as runs and filled in after, as
 * the write-back's restamp has them. */
static int encode_noted(lua_State *S, int idx, bool skip, struct buf *b, struct json_member *got, char *msg,
                        size_t msglen)
{
    const struct lua_json_lazy *z = lua_json_lazy_at(S, idx);     /* its userdata on top */
    static struct lua_json_copied copied;
    int n = lua_json_encode_members(S, idx, z, -1, skip, b, got, MEMBERS, &copied, msg, msglen);
    lua_pop(S, 1);
    if (n >= 0 && copied.n)
        lua_json_copied_members(z, &copied, b, got, MEMBERS);
    return n;
}

/* the value the text decoded to is at 1 */
static void check_members(const char *text, size_t len)
{
    struct buf b = BUF_INIT;
    struct json_member got[MEMBERS], want[MEMBERS];
    char msg[256];
    const char *err;
    int n = encode_noted(L, 1, false, &b, got, msg, sizeof msg);
    if (n < 0 || b.len != len || memcmp(b.p, text, len) != 0)
        abort();
    if (text[0] == '{') {
        int m = json_object_members(b.p, b.len, want, MEMBERS, &err);
        if (m != n)
            abort();
        for (int i = 0; i < n && i < MEMBERS; i++)
            if (got[i].key != want[i].key || got[i].key_len != want[i].key_len ||
                got[i].val != want[i].val || got[i].val_len != want[i].val_len ||
                got[i].kind != want[i].kind || got[i].is_uint != want[i].is_uint ||
                got[i].key_escaped != want[i].key_escaped)
                abort();
    } else if (n != 0) {
        abort();
    }
    buf_free(&b);
}

/* Whether the values at a and b are the same JSON value. */
static bool same(lua_State *S, int a, int b, int depth)
{
    a = lua_absindex(S, a);
    b = lua_absindex(S, b);
    int t = lua_type(S, a);
    /* a number too big for a double reads as an infinity, which the
     * encoder writes as null: a member copied as written keeps its digits */
    for (int i = 0; i < 2; i++) {
        int x = i ? b : a, y = i ? a : b;
        if (lua_type(S, x) == LUA_TNUMBER && !lua_isinteger(S, x) && !isfinite(lua_tonumber(S, x)) &&
            lua_type(S, y) == LUA_TLIGHTUSERDATA && !lua_touserdata(S, y))
            return true;
    }
    if (t != lua_type(S, b) || depth > 200)
        return false;
    if (t == LUA_TNUMBER)           /* by value: the encoder writes 2.5e3 as 2500 */
        return lua_compare(S, a, b, LUA_OPEQ);
    if (t != LUA_TTABLE)
        return lua_rawequal(S, a, b);
    if (!lua_checkstack(S, 6))
        abort();
    size_t na = 0, nb = 0;
    lua_pushnil(S);
    while (lua_next(S, a)) {
        na++;
        lua_pushvalue(S, -2);
        lua_rawget(S, b);
        bool ok = same(S, -2, -1, depth + 1);
        lua_pop(S, 2);
        if (!ok) {
            lua_pop(S, 1);
            return false;
        }
    }
    lua_pushnil(S);
    while (lua_next(S, b)) {
        nb++;
        lua_pop(S, 1);
    }
    return na == nb;
}

static int lazy_protected(lua_State *S)
{
    const char *p = lua_touserdata(S, 1);
    size_t n = (size_t)lua_tointeger(S, 2);
    int how = (int)lua_tointeger(S, 3);
    struct json_member m[MEMBERS];
    const char *err;
    lua_settop(S, 0);
    if (lua_json_decode(S, p, n, &err) < 0)           /* 1: the plain table */
        abort();
    if (lua_event_push(S, p, n, NULL, m, MEMBERS, &err, 0, NULL) < 0) /* 2: the lazy one */
        abort();
    bool skip = how == 3;
    if ((how == 1 || how == 3) && m[0].key_len < 1000 && !m[0].key_escaped) {
        /* the first member read (through __index) */
        lua_pushlstring(S, m[0].key, m[0].key_len);
        lua_gettable(S, 2);
        lua_pop(S, 1);
    }
    if (how == 0 || how == 3) {
        /* nothing set: sent as its text exactly when a lazy table says the
         * same as the text (a table it could not be lazy for never is) */
        const struct lua_json_lazy *z = lua_json_lazy_of(S, 2);
        bool as_text = lua_event_as_text(S, 2, z, p, n);
        lua_pushcfunction(S, decode_protected);
        lua_pushlightuserdata(S, (void *)p);
        lua_pushinteger(S, (lua_Integer)n);
        lua_call(S, 2, 1);
        if (as_text && (!z || !same(S, 1, -1, 0)))
            abort();
        if (how == 0 && z && !as_text)
            abort();                                 /* untouched: always */
        lua_pop(S, 1);
    }
    if (how == 1 && m[0].key_len < 1000 && !m[0].key_escaped) {
        /* a key added */
        lua_pushliteral(S, "fuzz");
        lua_pushinteger(S, 7);
        lua_settable(S, 2);
        lua_pushliteral(S, "fuzz");
        lua_pushinteger(S, 7);
        lua_rawset(S, 1);
    } else if (how == 2) {
        lua_event_settle(S, 2);
    }
    if (skip) {
        /* what the write-back leaves out for its own eventId */
        lua_pushliteral(S, "eventId");
        lua_pushnil(S);
        lua_rawset(S, 1);
    }
    struct buf b = BUF_INIT;
    struct json_member got[MEMBERS], want[MEMBERS];
    char msg[256];
    int k = encode_noted(S, 2, skip, &b, got, msg, sizeof msg);
    if (k < 0) {
        /* only what the plain table cannot be written as either */
        struct buf c = BUF_INIT;
        if (lua_json_encode(S, 1, &c, msg, sizeof msg) == 0)
            abort();
        buf_free(&c);
        return 0;
    }
    char *copy = malloc(b.len ? b.len : 1);
    if (!copy)
        abort();
    memcpy(copy, b.p, b.len);
    int w = json_object_members(copy, b.len, want, MEMBERS, &err);
    if (w != k)
        abort();
    for (int i = 0; i < k && i < MEMBERS; i++)
        if (got[i].key - b.p != want[i].key - copy || got[i].key_len != want[i].key_len ||
            got[i].val - b.p != want[i].val - copy || got[i].val_len != want[i].val_len ||
            got[i].kind != want[i].kind || got[i].is_uint != want[i].is_uint ||
            got[i].key_escaped != want[i].key_escaped)
            abort();
    if (lua_json_decode(S, copy, b.len, &err) < 0 || !same(S, 1, -1, 0))
        abort();
    free(copy);
    buf_free(&b);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L)
        L = luaL_newstate();
    const char *s = (const char *)data, *err;
    bool valid = json_validate(s, size, &err) != JSON_INVALID;
    if (decode(s, size) != valid)
        abort();
    lua_settop(L, 0);
    lua_pushcfunction(L, decode_members_protected);
    lua_pushlightuserdata(L, (void *)s);
    lua_pushinteger(L, (lua_Integer)size);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
        abort();
    if (valid && decode(s, size) != 1)
        abort();
    if (!valid)
        return 0;
    struct buf b = BUF_INIT;
    char msg[256];
    if (lua_json_encode(L, 1, &b, msg, sizeof msg) == 0) {
        char *copy = malloc(b.len ? b.len : 1);     /* exact size: ASan sees any overread */
        if (!copy)
            abort();
        memcpy(copy, b.p, b.len);
        if (json_validate(copy, b.len, &err) == JSON_INVALID)
            abort();
        check_members(copy, b.len);
        if (!decode(copy, b.len))
            abort();
        free(copy);
    }
    buf_free(&b);
    lua_settop(L, 0);
    const char *at = s;
    while (at < s + size && (*at == ' ' || *at == '\n' || *at == '\r' || *at == '\t'))
        at++;
    if (at < s + size && *at == '{' && json_object_members(s, size, NULL, 0, &err) > 0) {
        for (int how = 0; how < 4; how++) {
            lua_settop(L, 0);
            lua_pushcfunction(L, lazy_protected);
            lua_pushlightuserdata(L, (void *)s);
            lua_pushinteger(L, (lua_Integer)size);
            lua_pushinteger(L, how);
            if (lua_pcall(L, 3, 0, 0) != LUA_OK)
                abort();
        }
    }
    lua_settop(L, 0);
    return 0;
}
