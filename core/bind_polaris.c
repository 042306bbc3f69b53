/* bind_polaris.c - the `polaris` table a plugin sees (DESIGN 5.4): C
 * primitives in luaL_Reg tables, each closing over its plugin. Misuse raises
 * an error that reads like a usage line; calling an API whose permission the
 * manifest did not request raises "permission denied: <Permission>".
 *
 * Uses: plugin_registry (routing, messages, shared store), lua_json, stats. */
#include "plugin.h"
#include "daemon.h"
#include "event_stamp.h"
#include "log.h"
#include "lua_json.h"
#include "plugin_registry.h"
#include "stats.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct plugin *self(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static void need(lua_State *L, struct plugin *p, unsigned perm, const char *name)
{
    if (!(p->perms & perm))
        luaL_error(L, "permission denied: %s (add it to the manifest's permissions)", name);
}

static void need_loading(lua_State *L, struct plugin *p, const char *fn)
{
    if (!p->loading)
        luaL_error(L, "%s: handlers are registered while the plugin loads (top level or init)", fn);
}

/* polaris.on_event(id | "*", fn) */
static int l_on_event(lua_State *L)
{
    struct plugin *p = self(L);
    need_loading(L, p, "polaris.on_event");
    struct handler h = {0};
    if (lua_type(L, 1) == LUA_TSTRING && strcmp(lua_tostring(L, 1), "*") == 0)
        h.any = true;
    else if (lua_isinteger(L, 1))
        h.event_id = (uint64_t)lua_tointeger(L, 1);
    else
        return luaL_error(L, "usage: polaris.on_event(eventId | \"*\", function(ev) ... end)");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    struct handler *n = realloc(p->handlers, (p->nhandlers + 1) * sizeof *n);
    if (!n)
        return luaL_error(L, "out of memory");
    p->handlers = n;
    lua_pushvalue(L, 2);
    h.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->handlers[p->nhandlers++] = h;
    return 0;
}

/* polaris.command(name, fn) */
static int l_command(lua_State *L)
{
    struct plugin *p = self(L);
    need_loading(L, p, "polaris.command");
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (len == 0 || len >= sizeof p->cmds[0].name || strspn(name,
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != len)
        return luaL_error(L, "usage: polaris.command(name, fn): name is letters, digits, '_', '-', '.' (at most 47)");
    if (strcmp(name, "status") == 0 || strcmp(name, "reload") == 0)
        return luaL_error(L, "polaris.command: '%s' is reserved for the daemon", name);
    if (plugin_has_command(p, name))
        return luaL_error(L, "polaris.command: '%s' is already registered by this plugin", name);
    struct command_handler *n = realloc(p->cmds, (p->ncmds + 1) * sizeof *n);
    if (!n)
        return luaL_error(L, "out of memory");
    p->cmds = n;
    struct command_handler *c = &p->cmds[p->ncmds++];
    snprintf(c->name, sizeof c->name, "%s", name);
    lua_pushvalue(L, 2);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int encode_arg(lua_State *L, int idx, struct buf *b)
{
    char err[256];
    if (lua_json_encode(L, idx, b, err, sizeof err) < 0) {
        buf_free(b);
        return luaL_error(L, "cannot copy the value: %s", err);
    }
    return 0;
}

/* polaris.emit(event) -> true | nil, "busy" */
static int l_emit(lua_State *L)
{
    struct plugin *p = self(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    struct buf b = BUF_INIT, out = BUF_INIT;
    encode_arg(L, 1, &b);
    uint64_t id;
    const char *err = NULL;
    if (event_stamp(b.p, b.len, -1, 0, &out, &id, &err) < 0) {
        buf_free(&b);
        buf_free(&out);
        return luaL_error(L, "polaris.emit: %s", err);
    }
    buf_free(&b);
    struct envelope *e = envelope_new(ENV_MONITOR_EVENT, out.p, out.len);
    buf_free(&out);
    if (!e)
        return luaL_error(L, "polaris.emit: out of memory");
    e->event_id = id;
    e->t_in_ns = mono_ns();
    snprintf(e->from, sizeof e->from, "%s", p->id);
    if (registry_emit(p->reg, e) < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "busy: the core queue is full");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* polaris.send(plugin_id, topic, data) / polaris.broadcast(topic, data) */
static int send_common(lua_State *L, const char *to, int topic_idx)
{
    struct plugin *p = self(L);
    const char *topic = luaL_checkstring(L, topic_idx);
    if (strlen(topic) >= 48)
        return luaL_error(L, "topic longer than 47 bytes");
    struct buf b = BUF_INIT;
    encode_arg(L, topic_idx + 1, &b);
    int n = registry_message(p->reg, p->id, to, topic, b.p, b.len);
    buf_free(&b);
    if (n < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "no active plugin '%s'", to);
        return 2;
    }
    lua_pushinteger(L, n);
    return 1;
}

static int l_send(lua_State *L)
{
    return send_common(L, luaL_checkstring(L, 1), 2);
}

static int l_broadcast(lua_State *L)
{
    return send_common(L, NULL, 1);
}

static int l_shared_get(lua_State *L)
{
    struct plugin *p = self(L);
    const char *key = luaL_checkstring(L, 1);
    struct buf b = BUF_INIT;
    if (registry_shared_get(p->reg, key, &b) < 0) {
        buf_free(&b);
        lua_pushnil(L);
        return 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->decode_ref);
    lua_pushlstring(L, b.p, b.len);
    buf_free(&b);
    lua_call(L, 1, 1);
    return 1;
}

static int l_shared_set(lua_State *L)
{
    struct plugin *p = self(L);
    const char *key = luaL_checkstring(L, 1);
    luaL_checkany(L, 2);
    struct buf b = BUF_INIT;
    if (!lua_isnil(L, 2))
        encode_arg(L, 2, &b);
    int rc = registry_shared_set(p->reg, key, b.p, b.len);
    buf_free(&b);
    if (rc < 0)
        return luaL_error(L, "polaris.shared.set: the shared store is full (plugins.shared_max_bytes)");
    return 0;
}

static int log_at(lua_State *L, enum log_level lvl)
{
    struct plugin *p = self(L);
    int n = lua_gettop(L);                    /* before the buffer takes a slot */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, ' ');
        size_t l;
        luaL_tolstring(L, i, &l);
        if (l > 1000) {
            lua_pushlstring(L, lua_tostring(L, -1), 1000);
            lua_remove(L, -2);
        }
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_msg(lvl, "plugin %s: %s", p->id, lua_tostring(L, -1));
    return 0;
}

static int l_debug(lua_State *L) { return log_at(L, LOG_LVL_DEBUG); }
static int l_info(lua_State *L) { return log_at(L, LOG_LVL_INFO); }
static int l_warn(lua_State *L) { return log_at(L, LOG_LVL_WARN); }
static int l_error(lua_State *L) { return log_at(L, LOG_LVL_ERROR); }

static int l_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)wall_ms());
    return 1;
}

static int l_guest_status(lua_State *L)
{
    struct plugin *p = self(L);
    need(L, p, PERM_VM_READ, "ReadVmState");
    lua_createtable(L, 0, 4);
    lua_pushboolean(L, STAT_GET(guest_connected) != 0);
    lua_setfield(L, -2, "connected");
    lua_pushinteger(L, (lua_Integer)STAT_GET(guest_events_sent));
    lua_setfield(L, -2, "events_sent");
    lua_pushinteger(L, (lua_Integer)STAT_GET(guest_buffered));
    lua_setfield(L, -2, "buffered");
    lua_pushinteger(L, (lua_Integer)STAT_GET(guest_dropped));
    lua_setfield(L, -2, "dropped");
    return 1;
}

static int l_actions(lua_State *L)
{
    struct plugin *p = self(L);
    struct buf b = BUF_INIT;
    registry_actions_json(p->reg, &b);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->decode_ref);
    lua_pushlstring(L, b.p ? b.p : "[]", b.len ? b.len : 2);
    buf_free(&b);
    lua_call(L, 1, 1);
    return 1;
}

static void set_funcs(lua_State *L, struct plugin *p, const luaL_Reg *fns)
{
    for (; fns->name; fns++) {
        lua_pushlightuserdata(L, p);
        lua_pushcclosure(L, fns->func, 1);
        lua_setfield(L, -2, fns->name);
    }
}

void bind_polaris(struct plugin *p)
{
    lua_State *L = p->sb.L;
    static const luaL_Reg top[] = {
        {"on_event", l_on_event}, {"command", l_command}, {"emit", l_emit},
        {"send", l_send}, {"broadcast", l_broadcast}, {"now", l_now},
        {"actions", l_actions}, {NULL, NULL},
    };
    static const luaL_Reg shared[] = {{"get", l_shared_get}, {"set", l_shared_set}, {NULL, NULL}};
    static const luaL_Reg logf[] = {
        {"debug", l_debug}, {"info", l_info}, {"warn", l_warn}, {"error", l_error}, {NULL, NULL},
    };
    static const luaL_Reg guest[] = {{"status", l_guest_status}, {NULL, NULL}};

    /* cjson.decode, captured before any plugin code can replace it */
    lua_getglobal(L, "cjson");
    lua_getfield(L, -1, "decode");
    p->decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);

    lua_newtable(L);
    set_funcs(L, p, top);
    lua_newtable(L);
    set_funcs(L, p, shared);
    lua_setfield(L, -2, "shared");
    lua_newtable(L);
    set_funcs(L, p, logf);
    lua_setfield(L, -2, "log");
    lua_newtable(L);
    set_funcs(L, p, guest);
    lua_setfield(L, -2, "guest");
    lua_newtable(L);
    lua_setfield(L, -2, "config");
    lua_pushstring(L, p->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, p->version);
    lua_setfield(L, -2, "version");
    lua_createtable(L, 0, 3);                 /* polaris.daemon: who runs us */
    lua_pushstring(L, polaris_version);
    lua_setfield(L, -2, "version");
    lua_pushinteger(L, getpid());
    lua_setfield(L, -2, "pid");
    lua_pushinteger(L, (lua_Integer)registry_started_ms(p->reg));
    lua_setfield(L, -2, "started_ms");
    lua_setfield(L, -2, "daemon");
    lua_setglobal(L, "polaris");
    /* print goes to the log, tagged with the plugin */
    lua_pushlightuserdata(L, p);
    lua_pushcclosure(L, l_info, 1);
    lua_setglobal(L, "print");
}
