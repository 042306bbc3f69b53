/* test_plugin_host_channel.c - the plugin host channel's pieces on their own:
 * lua_pack round trips every kind of value exactly (binary strings, u64
 * integers, NaN and infinities, nesting) and refuses what cannot travel;
 * lua_unpack refuses every truncation and malformed input without reading
 * past the end; host_proto frames round trip and bad lengths are refused. */
#include "harness.h"
#include "wire/plugin_host_proto.h"
#include "runtime/lua_pack.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int unpack_protected(lua_State *L)
{
    const char *p = lua_touserdata(L, 1);
    size_t n = (size_t)lua_tointeger(L, 2);
    lua_settop(L, 0);
    return lua_unpack(L, p, n);
}

/* Runs lua_unpack under pcall: the count, or -1 on a raised error. */
static int try_unpack(lua_State *L, const char *p, size_t n)
{
    lua_settop(L, 0);
    lua_pushcfunction(L, unpack_protected);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushinteger(L, (lua_Integer)n);
    if (lua_pcall(L, 2, LUA_MULTRET, 0) != LUA_OK)
        return -1;
    return lua_gettop(L);
}

TEST(lua_pack_round_trips_values_exactly)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    REQUIRE(luaL_dostring(L,
        "return nil, true, false, 0, -1, math.maxinteger, math.mininteger, 0.5, -0.0, 1/0, "
        "'a\\0b\\255', {1, 2, {x = 'y'}, [true] = 3, [2.5] = 'f'}, ''") == LUA_OK);
    int n = lua_gettop(L);
    struct buf b = BUF_INIT;
    char err[128];
    REQUIRE(lua_pack(L, 1, n, &b, err, sizeof err) == 0);
    lua_State *M = luaL_newstate();
    luaL_openlibs(M);
    CHECK(try_unpack(M, b.p, b.len) == n);
    CHECK(lua_isnil(M, 1));
    CHECK(lua_toboolean(M, 2) && !lua_toboolean(M, 3));
    CHECK(lua_isinteger(M, 6) && lua_tointeger(M, 6) == LUA_MAXINTEGER);
    CHECK(lua_isinteger(M, 7) && lua_tointeger(M, 7) == LUA_MININTEGER);
    CHECK(!lua_isinteger(M, 8) && lua_tonumber(M, 8) == 0.5);
    CHECK(signbit(lua_tonumber(M, 9)));
    CHECK(isinf(lua_tonumber(M, 10)));
    size_t len;
    const char *s = lua_tolstring(M, 11, &len);
    CHECK(len == 4 && memcmp(s, "a\0b\xff", 4) == 0);
    lua_setglobal(M, "t");                 /* pops the empty string */
    lua_setglobal(M, "t");                 /* the table */
    CHECK(luaL_dostring(M, "return t[1] == 1 and t[2] == 2 and t[3].x == 'y' and t[true] == 3 "
                           "and t[2.5] == 'f'") == LUA_OK && lua_toboolean(M, -1));
    buf_free(&b);
    lua_close(M);
    lua_close(L);
}

TEST(lua_pack_refuses_what_cannot_travel)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    struct buf b = BUF_INIT;
    char err[128];
    REQUIRE(luaL_dostring(L, "return {f = print}") == LUA_OK);
    CHECK(lua_pack(L, -1, 1, &b, err, sizeof err) < 0 && strstr(err, "function"));
    CHECK(b.len == 0);                     /* nothing half-written stays */
    REQUIRE(luaL_dostring(L, "local t = {}; t.self = t; return t") == LUA_OK);
    CHECK(lua_pack(L, -1, 1, &b, err, sizeof err) < 0 && strstr(err, "nested"));
    CHECK(b.len == 0);
    buf_free(&b);
    lua_close(L);
}

TEST(lua_unpack_refuses_every_truncation_and_bad_tag)
{
    lua_State *L = luaL_newstate();
    REQUIRE(luaL_dostring(L, "return {a = 'hello', b = {1, 2, 3}, c = 1.5}, 'tail'") == LUA_OK);
    struct buf b = BUF_INIT;
    char err[128];
    REQUIRE(lua_pack(L, 1, 2, &b, err, sizeof err) == 0);
    for (size_t cut = 1; cut < b.len; cut++) {
        char *copy = malloc(cut);           /* exact size: ASan sees any overread */
        memcpy(copy, b.p, cut);
        int n = try_unpack(L, copy, cut);
        /* a cut may fall between the two values; never past the end */
        CHECK(n == -1 || n == 1);
        free(copy);
    }
    CHECK(try_unpack(L, b.p, b.len) == 2);
    const char bad_tag[] = {9};
    CHECK(try_unpack(L, bad_tag, 1) == -1);
    /* a table that claims four billion pairs in ten bytes */
    const char huge[] = {6, (char)0xff, (char)0xff, (char)0xff, (char)0xff, 0, 0, 0, 0, 0};
    CHECK(try_unpack(L, huge, sizeof huge) == -1);
    /* a nil key */
    const char nil_key[] = {6, 1, 0, 0, 0, 0, 0};
    CHECK(try_unpack(L, nil_key, sizeof nil_key) == -1);
    /* nesting past the bound */
    char deep[200];
    size_t k = 0;
    for (int i = 0; i < 30; i++) {
        deep[k++] = 6; deep[k++] = 1; deep[k++] = 0; deep[k++] = 0; deep[k++] = 0;
        deep[k++] = 2;                       /* key: true */
    }
    deep[k++] = 0;
    CHECK(try_unpack(L, deep, k) == -1);
    buf_free(&b);
    lua_close(L);
}

TEST(host_frames_round_trip_and_bad_lengths_are_refused)
{
    struct buf b = BUF_INIT;
    struct envelope *e = envelope_new(ENV_APP_CMD_REQ, "{\"x\":1}", 7);
    REQUIRE(e);
    e->cmd.origin = ORIGIN_APP;
    e->cmd.for_guest = 1;
    e->cmd.conn_id = 9;
    e->cmd.req_id = 77;
    e->cmd.session = 0xfffffffeu;
    e->cmd.code = -4;
    e->cmd.timeout_ms = 1500;
    e->wait.op = 5;
    e->wait.kind = 3;
    e->wait.fn_ref = -2;
    e->wait.ms = 60000;
    e->pid = 1234;
    e->uid = 1000;
    strcpy(e->cmd.action, "echo");
    strcpy(e->from, "someone");
    REQUIRE(plugin_host_put_env(&b, 42, e) == 0);
    REQUIRE(plugin_host_frame_simple(&b, HK_LOG, 2, "hi", 2) == 0);
    struct plugin_host_frame f;
    long n = plugin_host_frame_next(b.p, b.len, &f);
    REQUIRE(n > 0);
    CHECK(f.kind == HK_ENV && f.id == 42);
    struct envelope *d = plugin_host_get_env(&f);
    REQUIRE(d);
    /* every field of its kind crosses whole */
    CHECK(d->type == ENV_APP_CMD_REQ && d->cmd.origin == ORIGIN_APP && d->cmd.req_id == 77 && d->cmd.code == -4);
    CHECK(d->cmd.for_guest == 1 && d->cmd.conn_id == 9 && d->cmd.session == 0xfffffffeu &&
          d->cmd.timeout_ms == 1500);
    CHECK(d->wait.op == 5 && d->wait.kind == 3 && d->wait.fn_ref == -2 && d->wait.ms == 60000);
    CHECK(d->pid == 1234 && d->uid == 1000 && d->remote_id == 42);
    CHECK(strcmp(d->cmd.action, "echo") == 0 && strcmp(d->from, "someone") == 0);
    CHECK(d->len == 7 && memcmp(d->data, "{\"x\":1}", 7) == 0);
    long m = plugin_host_frame_next(b.p + n, b.len - (size_t)n, &f);
    CHECK(m > 0 && f.kind == HK_LOG && f.id == 2 && f.len == 2);
    /* every prefix of a frame asks for more; none is taken as a frame */
    for (size_t cut = 0; cut < (size_t)n; cut++)
        CHECK(plugin_host_frame_next(b.p, cut, &f) == 0);
    /* an envelope body cut short is refused */
    struct plugin_host_frame shortf = {HK_ENV, 1, b.p + HOST_HDR, 20};
    CHECK(plugin_host_get_env(&shortf) == NULL);
    const char over[] = {(char)0xff, (char)0xff, (char)0xff, (char)0x7f, 1};
    CHECK(plugin_host_frame_next(over, sizeof over, &f) == -1);
    const char under[] = {1, 0, 0, 0, 1};
    CHECK(plugin_host_frame_next(under, sizeof under, &f) == -1);
    struct plugin_host_stats s = {.events = 5, .errors = 1, .pinned = 2, .state = 4}, t;
    strcpy(s.last_error, "boom");
    buf_reset(&b);
    REQUIRE(plugin_host_put_stats(&b, &s) == 0);
    REQUIRE(plugin_host_frame_next(b.p, b.len, &f) > 0);
    CHECK(plugin_host_get_stats(&f, &t) && t.events == 5 && t.pinned == 2 && t.state == 4 &&
          strcmp(t.last_error, "boom") == 0);
    s.ignored_edits = 7;
    strcpy(s.status, "{\"seen\":3}");
    buf_reset(&b);
    REQUIRE(plugin_host_put_stats(&b, &s) == 0);
    REQUIRE(plugin_host_frame_next(b.p, b.len, &f) > 0);
    CHECK(plugin_host_get_stats(&f, &t) && t.ignored_edits == 7 && strcmp(t.status, "{\"seen\":3}") == 0 &&
          strcmp(t.last_error, "boom") == 0);
    envelope_free(e);
    envelope_free(d);
    buf_free(&b);
}

/* The kinds share an envelope's memory: each crosses with its own fields,
 * and what another kind would have put there does not travel. */
TEST(host_frames_carry_each_kind_of_envelope)
{
    struct buf b = BUF_INIT;
    struct plugin_host_frame f;
    size_t at;
    struct envelope *ev = envelope_new(ENV_IPC_EVENT, "{}", 2);
    REQUIRE(ev);
    ev->ev.id = UINT64_MAX;
    ev->ev.seq = 123456;
    ev->pid = 9;
    REQUIRE(plugin_host_put_env(&b, 1, ev) == 0);
    REQUIRE(plugin_host_frame_next(b.p, b.len, &f) > 0);
    struct envelope *d = plugin_host_get_env(&f);
    REQUIRE(d);
    CHECK(d->type == ENV_IPC_EVENT && d->ev.id == UINT64_MAX && d->ev.seq == 123456 && d->pid == 9);
    CHECK(d->ev.chain == NULL && d->ev.spool_ticket == 0);   /* pointers and tickets stay home */
    envelope_free(d);
    struct envelope *m = envelope_new(ENV_PLUGIN_MSG, "[1]", 3);
    REQUIRE(m);
    strcpy(m->topic, "a topic");
    strcpy(m->from, "sender");
    buf_reset(&b);
    REQUIRE(plugin_host_put_env(&b, 2, m) == 0);
    REQUIRE(plugin_host_frame_next(b.p, b.len, &f) > 0);
    d = plugin_host_get_env(&f);
    REQUIRE(d);
    CHECK(d->type == ENV_PLUGIN_MSG && strcmp(d->topic, "a topic") == 0 && strcmp(d->from, "sender") == 0);
    CHECK(d->len == 3 && memcmp(d->data, "[1]", 3) == 0);
    envelope_free(d);
    /* a kind that never crosses is refused on both sides, not guessed at */
    struct envelope *rpc = envelope_new(ENV_HOST_RPC, NULL, 0);
    REQUIRE(rpc);
    buf_reset(&b);
    CHECK(plugin_host_put_env(&b, 3, rpc) == -1 && b.len == 0);
    REQUIRE(plugin_host_frame_begin(&b, HK_ENV, 3, &at) == 0);
    REQUIRE(plugin_host_put_u32(&b, ENV_HOST_RPC) == 0 && plugin_host_put_u32(&b, 0) == 0 &&
            plugin_host_put_u32(&b, 0) == 0 && buf_append(&b, rpc->from, sizeof rpc->from) == 0);
    REQUIRE(plugin_host_frame_end(&b, at) == 0);
    REQUIRE(plugin_host_frame_next(b.p, b.len, &f) > 0);
    CHECK(plugin_host_get_env(&f) == NULL);
    envelope_free(ev);
    envelope_free(m);
    envelope_free(rpc);
    buf_free(&b);
}
