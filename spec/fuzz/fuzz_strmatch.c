/* fuzz_strmatch.c - libFuzzer target for the plugins' string functions
 * (lua_strmatch.c) against the stock string library in the same state:
 * the same results and the same error messages for find, match, gmatch
 * and gsub (string, table and function replacements, max n, init, plain).
 *
 * Input: byte 0 picks the function and options, byte 1 is init (signed),
 * the rest is pattern 0xFF subject [0xFF replacement]. Ours runs first
 * under a step budget; an input that exhausts it (a backtracking pattern)
 * is not given to the stock library, which would run as long as ours
 * would have without one. A stock gmatch iterator that raised is never
 * called again (Lua 5.4.4 recurses without a guard then). */
#include "runtime/lua_strmatch.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECKS_MAX 64                      /* x 4096 steps */

static lua_State *L;
static int g_checks;

static void budget(lua_State *S)
{
    if (++g_checks > CHECKS_MAX)
        luaL_error(S, "cpu budget exceeded (fuzz)");
}

static const struct rt_limits limits = {budget, NULL};

static const char compare_src[] =
    "local ours, op, s, p, init, plain, repl, max = ...\n"
    "local function call(f, ...)\n"
    "  local args = table.pack(...)\n"
    "  return table.pack(pcall(function()\n"
    "    local out = table.pack(f(table.unpack(args, 1, args.n)))\n"
    "    return table.unpack(out, 1, out.n)\n"
    "  end))\n"
    "end\n"
    "local function all(gm)\n"
    "  local r = call(gm, s, p, init)\n"
    "  if not r[1] then return r end\n"
    "  local out = {}\n"
    "  for _ = 1, 64 do\n"
    "    local x = table.pack(pcall(r[2]))\n"
    "    out[#out + 1] = x\n"
    "    if not x[1] or x[2] == nil then break end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local function run(lib)\n"
    "  if op == 'gmatch' then return all(lib.gmatch) end\n"
    "  if op == 'gsub' then return call(lib.gsub, s, p, repl, max) end\n"
    "  return call(lib[op], s, p, init, plain)\n"
    "end\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "local mine = run(ours)\n"
    "local function spent(r)\n"
    "  if type(r) ~= 'table' then return false end\n"
    "  if type(r[2]) == 'string' and r[2]:find('cpu budget exceeded (fuzz)', 1, true) then return true end\n"
    "  for _, v in pairs(r) do if spent(v) then return true end end\n"
    "  return false\n"
    "end\n"
    "if spent(mine) then return true end\n"
    "return same(mine, run(string))\n";

static int g_compare = LUA_NOREF;

static int fn_repl(lua_State *S)
{
    /* deterministic: drop, keep or rewrite by the first capture */
    size_t l;
    const char *a = lua_tolstring(S, 1, &l);
    if (!a || l % 3 == 0)
        return 0;
    if (l % 3 == 1) {
        lua_pushboolean(S, 0);
        return 1;
    }
    lua_pushfstring(S, "<%s:%d>", a, lua_gettop(S));
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
        if (luaL_loadbufferx(L, compare_src, sizeof compare_src - 1, "=compare", "t") != LUA_OK)
            abort();
        g_compare = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (size < 3 || size > 400)
        return 0;
    static const char *const ops[] = {"find", "match", "gmatch", "gsub"};
    uint8_t mode = data[0];
    int8_t init = (int8_t)data[1];
    const char *rest = (const char *)data + 2, *end = (const char *)data + size;
    const char *sep1 = memchr(rest, 0xFF, (size_t)(end - rest));
    const char *p = rest, *p_end = sep1 ? sep1 : end;
    const char *s = sep1 ? sep1 + 1 : end, *s_end = end;
    const char *sep2 = sep1 ? memchr(s, 0xFF, (size_t)(end - s)) : NULL;
    if (sep2)
        s_end = sep2;
    if (s_end - s > 64)
        return 0;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g_compare);
    lua_newtable(L);
    lua_strmatch_register(L, -1, &limits);
    lua_pushstring(L, ops[mode & 3]);
    lua_pushlstring(L, s, (size_t)(s_end - s));
    lua_pushlstring(L, p, (size_t)(p_end - p));
    if (mode & 4)
        lua_pushinteger(L, init);
    else
        lua_pushnil(L);
    lua_pushboolean(L, (mode & 8) != 0);
    switch ((mode >> 4) & 3) {
    case 0:
        if (sep2)
            lua_pushlstring(L, sep2 + 1, (size_t)(end - sep2 - 1));
        else
            lua_pushliteral(L, "<%0|%1>");
        break;
    case 1:
        lua_pushcfunction(L, fn_repl);
        break;
    case 2:
        lua_newtable(L);
        lua_pushliteral(L, "A");
        lua_setfield(L, -2, "a");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "b");
        lua_pushinteger(L, 7);
        lua_rawseti(L, -2, 1);
        break;
    default:
        lua_pushinteger(L, 5);
    }
    if (mode & 64)
        lua_pushinteger(L, (mode >> 7) ? init : 2);
    else
        lua_pushnil(L);
    g_checks = 0;
    if (lua_pcall(L, 8, 1, 0) != LUA_OK || !lua_toboolean(L, -1))
        abort();
    return 0;
}
