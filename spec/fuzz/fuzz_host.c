/* fuzz_host.c - libFuzzer target for what the daemon reads from a plugin
 * host (which it treats as hostile):
 *   - plugin_host_frame_next never hands out a frame past the input, and the
 *     frames it finds tile the input exactly;
 *   - plugin_host_get_env / plugin_host_get_stats read only inside the frame;
 *   - lua_unpack of any bytes raises or pushes values, never reads past the
 *     end, and what it pushes packs again to bytes that unpack to the same
 *     number of values. */
#include "wire/plugin_host_proto.h"
#include "runtime/lua_pack.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

static int unpack_protected(lua_State *L)
{
    const char *p = lua_touserdata(L, 1);
    size_t n = (size_t)lua_tointeger(L, 2);
    lua_settop(L, 0);
    return lua_unpack(L, p, n);
}

static int unpack(lua_State *L, const char *p, size_t n)
{
    lua_settop(L, 0);
    lua_pushcfunction(L, unpack_protected);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushinteger(L, (lua_Integer)n);
    return lua_pcall(L, 2, LUA_MULTRET, 0) == LUA_OK ? lua_gettop(L) : -1;
}

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L)
        L = luaL_newstate();
    /* an exact-size copy: ASan sees any read past the end */
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);

    size_t off = 0;
    struct plugin_host_frame f;
    long n;
    while ((n = plugin_host_frame_next(in + off, size - off, &f)) > 0) {
        if (f.body < in + off || f.body + f.len != in + off + (size_t)n)
            abort();
        struct envelope *e = plugin_host_get_env(&f);
        if (e && e->len > f.len)
            abort();
        envelope_free(e);
        struct plugin_host_stats s;
        if (plugin_host_get_stats(&f, &s) && strlen(s.last_error) >= sizeof s.last_error)
            abort();
        off += (size_t)n;
    }

    int k = unpack(L, in, size);
    if (k > 0) {
        struct buf b = BUF_INIT;
        char err[128];
        if (lua_pack(L, 1, k, &b, err, sizeof err) == 0) {
            char *again = malloc(b.len ? b.len : 1);
            if (again) {
                memcpy(again, b.p ? b.p : "", b.len);
                if (unpack(L, again, b.len) != k)
                    abort();
                free(again);
            }
        }
        buf_free(&b);
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    free(in);
    return 0;
}
