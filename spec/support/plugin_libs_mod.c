/* plugin_libs_mod.c - the test-only Lua module polaris.plugin_libs: the
 * C libraries plugins get in place of stock ones (core/runtime/lua_strmatch.c,
 * core/runtime/bind_json.c), loadable into a stock lua5.4 so specs can compare
 * them with the stock string library and lua-cjson.
 *
 *   M.find/match/gmatch/gsub/rep      no limits
 *   M.cjson                           the plugins' cjson, no limits
 *   M.limited(checks, room)           a table with the same string
 *       functions and a cjson, under a fake budget that raises "cpu budget
 *       exceeded" at its checks-th check, with room bytes of memory left
 *       (nil: unlimited)
 *   M.checks()                        budget checks made so far
 *
 * Uses: lua_strmatch, bind_json. */
#include "runtime/bind_json.h"
#include "runtime/lua_strmatch.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdint.h>

static lua_Integer g_checks, g_checks_max;
static size_t g_room;

static void fake_budget(lua_State *L)
{
    if (++g_checks >= g_checks_max)
        luaL_error(L, "cpu budget exceeded (test)");
}

static size_t fake_room(lua_State *L)
{
    (void)L;
    return g_room;
}

static const struct rt_limits limited_budget = {fake_budget, NULL};
static const struct rt_limits limited_both = {fake_budget, fake_room};

static int l_limited(lua_State *L)
{
    g_checks_max = luaL_optinteger(L, 1, INT64_MAX);
    g_checks = 0;
    bool has_room = !lua_isnoneornil(L, 2);
    g_room = has_room ? (size_t)luaL_checkinteger(L, 2) : SIZE_MAX;
    const struct rt_limits *lim = has_room ? &limited_both : &limited_budget;
    lua_newtable(L);
    lua_strmatch_register(L, -1, lim);
    bind_json_push(L, lim);
    lua_setfield(L, -2, "cjson");
    return 1;
}

static int l_checks(lua_State *L)
{
    lua_pushinteger(L, g_checks);
    return 1;
}

int luaopen_polaris_plugin_libs(lua_State *L)
{
    lua_newtable(L);
    lua_strmatch_register(L, -1, NULL);
    bind_json_push(L, NULL);
    lua_setfield(L, -2, "cjson");
    lua_pushcfunction(L, l_limited);
    lua_setfield(L, -2, "limited");
    lua_pushcfunction(L, l_checks);
    lua_setfield(L, -2, "checks");
    return 1;
}
