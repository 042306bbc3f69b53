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
 *     json_object_members. */
#include "wire/json_scan.h"
#include "runtime/lua_json.h"

#include <lauxlib.h>
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

/* the value the text decoded to is at 1 */
static void check_members(const char *text, size_t len)
{
    struct buf b = BUF_INIT;
    struct json_member got[MEMBERS], want[MEMBERS];
    char msg[256];
    const char *err;
    int n = lua_json_encode_members(L, 1, &b, got, MEMBERS, msg, sizeof msg);
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
    return 0;
}
