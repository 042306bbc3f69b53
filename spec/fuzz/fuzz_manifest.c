/* fuzz_manifest.c - libFuzzer target for the plugin loader (Lua): a manifest
 * with any bytes, and semver versions and ranges, must give a plan or a
 * reason, never a Lua error. Runs lua/polaris/loader.lua as the daemon
 * does (from the repository root). */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int luaopen_cjson(lua_State *L);

static lua_State *L;
static const uint8_t *cur;
static size_t cur_len;

static int list_dir(lua_State *S)
{
    lua_newtable(S);
    lua_pushliteral(S, "fuzzed.json");
    lua_rawseti(S, -2, 1);
    lua_pushliteral(S, "dep.json");
    lua_rawseti(S, -2, 2);
    return 1;
}

static int read_file(lua_State *S)
{
    const char *path = luaL_checkstring(S, 1);
    size_t n = strlen(path);
    if (n >= 11 && strcmp(path + n - 11, "fuzzed.json") == 0)
        lua_pushlstring(S, (const char *)cur, cur_len);
    else if (n >= 8 && strcmp(path + n - 8, "dep.json") == 0)
        lua_pushliteral(S, "{\"id\":\"dep\",\"version\":\"1.2.3\"}");
    else
        lua_pushliteral(S, "");
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "cjson", luaopen_cjson, 1);
    lua_pop(L, 1);
    if (luaL_dostring(L, "package.path = 'lua/?.lua;' .. package.path\n"
                         "loader = require('polaris.loader')\n"
                         "semver = require('polaris.semver')") != LUA_OK)
        abort();                             /* run from the repository root */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cur = data, cur_len = size;
    int top = lua_gettop(L);
    lua_getglobal(L, "loader");
    lua_getfield(L, -1, "plan");
    lua_newtable(L);
    lua_pushliteral(L, "dir");
    lua_rawseti(L, -2, 1);
    lua_pushcfunction(L, list_dir);
    lua_pushcfunction(L, read_file);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK)
        abort();                             /* a reason is expected, not an error */
    /* the same bytes as a version and as a range (split at the first '|') */
    const char *bar = memchr(data, '|', size);
    size_t vlen = bar ? (size_t)(bar - (const char *)data) : size;
    lua_getglobal(L, "semver");
    lua_getfield(L, -1, "satisfies");
    lua_pushlstring(L, (const char *)data, vlen);
    if (bar)
        lua_pushlstring(L, bar + 1, size - vlen - 1);
    else
        lua_pushliteral(L, "^1.0.0");
    if (lua_pcall(L, 2, 2, 0) != LUA_OK)
        abort();
    lua_settop(L, top);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
