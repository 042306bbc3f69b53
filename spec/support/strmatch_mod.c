/* strmatch_mod.c - the test-only Lua module polaris.strmatch: the bounded
 * string functions of core/lua_strmatch.c, loadable into a stock lua5.4 so
 * spec/unit/strmatch_spec.lua can compare them with the stock library.
 *
 *   strmatch.find/match/gmatch/gsub/rep     no limits
 *   strmatch.limited(checks, room)          the same functions with a fake
 *       budget that raises "cpu budget exceeded" at its checks-th check,
 *       and room bytes of memory left (nil: unlimited)
 *   strmatch.checks()                       budget checks made so far
 *
 * Uses: lua_strmatch. */
#include "lua_strmatch.h"

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

static const struct strmatch_limits limited_budget = {fake_budget, NULL};
static const struct strmatch_limits limited_both = {fake_budget, fake_room};

static int l_limited(lua_State *L)
{
    g_checks_max = luaL_optinteger(L, 1, INT64_MAX);
    g_checks = 0;
    bool has_room = !lua_isnoneornil(L, 2);
    g_room = has_room ? (size_t)luaL_checkinteger(L, 2) : SIZE_MAX;
    lua_newtable(L);
    lua_strmatch_register(L, -1, has_room ? &limited_both : &limited_budget);
    return 1;
}

static int l_checks(lua_State *L)
{
    lua_pushinteger(L, g_checks);
    return 1;
}

int luaopen_polaris_strmatch(lua_State *L)
{
    lua_newtable(L);
    lua_strmatch_register(L, -1, NULL);
    lua_pushcfunction(L, l_limited);
    lua_setfield(L, -2, "limited");
    lua_pushcfunction(L, l_checks);
    lua_setfield(L, -2, "checks");
    return 1;
}
