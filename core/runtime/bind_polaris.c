/* bind_polaris.c - the `polaris` table a plugin sees (DESIGN 5.4): C
 * primitives in luaL_Reg tables, each closing over its plugin. Misuse raises
 * an error that reads like a usage line; calling an API whose permission the
 * manifest did not request raises "permission denied: <Permission>".
 *
 * Uses: port (what leaves the plugin: waits, emit, messages, the shared
 * store), plugin, lua_json, event_json (what an emitted event carries),
 * lua/polaris/driver.lua (driver_lua.S), stats. */
#include "runtime/plugin.h"
#include "wire/command_msg.h"
#include "lib/version.h"
#include "wire/event_json.h"
#include "lib/log.h"
#include "runtime/lua_json.h"
#include "runtime/port.h"
#include "lib/clock.h"
#include "lib/stats.h"

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
        sandbox_raise(L, "permission denied: %s (add it to the manifest's permissions)", name);
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
    if (p->nhandlers >= PLUGIN_MAX_HANDLERS)
        return luaL_error(L, "polaris.on_event: at most %d handlers per plugin", PLUGIN_MAX_HANDLERS);
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
    if (cmd_action_reserved(name))
        return luaL_error(L, "polaris.command: '%s' is reserved for the daemon", name);
    if (plugin_has_command(p, name))
        return luaL_error(L, "polaris.command: '%s' is already registered by this plugin", name);
    if (p->ncmds >= PLUGIN_MAX_COMMANDS)
        return luaL_error(L, "polaris.command: at most %d commands per plugin", PLUGIN_MAX_COMMANDS);
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

/* polaris.route(eventId | "*", "forward" | "drop" | {strategy ids...}):
 * Router plugins only, while loading. Decided on the eventId alone, so
 * routing never decodes an event. */
static int l_route(lua_State *L)
{
    struct plugin *p = self(L);
    need_loading(L, p, "polaris.route");
    if (strcmp(p->type, "Router") != 0)
        return luaL_error(L, "polaris.route: only a plugin of plugin_type \"Router\" may route");
    struct route_rule r = {0};
    if (lua_type(L, 1) == LUA_TSTRING && strcmp(lua_tostring(L, 1), "*") == 0)
        r.any = true;
    else if (lua_isinteger(L, 1))
        r.event_id = (uint64_t)lua_tointeger(L, 1);
    else
        return luaL_error(L, "usage: polaris.route(eventId | \"*\", \"forward\" | \"drop\" | {strategy ids})");
    if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "forward") == 0) {
        r.verdict = ROUTE_FORWARD;
    } else if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "drop") == 0) {
        r.verdict = ROUTE_DROP;
    } else if (lua_istable(L, 2)) {
        r.verdict = ROUTE_LIST;
        r.nids = lua_rawlen(L, 2);
        if (r.nids == 0 || r.nids > 32)
            return luaL_error(L, "polaris.route: a strategy list has 1..32 plugin ids");
        r.ids = calloc(r.nids, sizeof *r.ids);
        if (!r.ids)
            return luaL_error(L, "out of memory");
        for (size_t i = 0; i < r.nids; i++) {
            lua_rawgeti(L, 2, (lua_Integer)i + 1);
            const char *id = lua_tostring(L, -1);
            if (!id || strlen(id) >= 64) {
                free(r.ids);
                return luaL_error(L, "polaris.route: strategy ids are strings");
            }
            strcpy(r.ids[i], id);
            lua_pop(L, 1);
        }
    } else {
        return luaL_error(L, "usage: polaris.route(eventId | \"*\", \"forward\" | \"drop\" | {strategy ids})");
    }
    struct route_rule *n = realloc(p->routes, (p->nroutes + 1) * sizeof *n);
    if (!n) {
        free(r.ids);
        return luaL_error(L, "out of memory");
    }
    p->routes = n;
    p->routes[p->nroutes++] = r;
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

/* A bucket of plugins.emit_per_s tokens, refilled continuously: one
 * plugin cannot take the core queue's whole room from the others. Runs
 * where emit runs: a worker in process, the stand-in's RPC out of it. */
static bool emit_allowed(struct plugin *p)
{
    struct plugin_limits lim;
    home_limits(p->home, &lim);
    uint64_t now = mono_ns();
    if (p->emit_refill_ns == 0) {
        p->emit_tokens = lim.emit_per_s;
    } else {
        p->emit_tokens += (double)(now - p->emit_refill_ns) / 1e9 * lim.emit_per_s;
        if (p->emit_tokens > lim.emit_per_s)
            p->emit_tokens = lim.emit_per_s;
    }
    p->emit_refill_ns = now;
    if (p->emit_tokens < 1)
        return false;
    p->emit_tokens -= 1;
    return true;
}

/* polaris.emit(event) -> true | nil, "busy"
 * The daemon is the event's source unless the plugin says otherwise: pid,
 * processName and processVer default to polarisd's, added to the JSON
 * (event_json_emitted), so the plugin's table is left as it was. */
static int l_emit(lua_State *L)
{
    struct plugin *p = self(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    struct buf b = BUF_INIT, out = BUF_INIT;
    encode_arg(L, 1, &b);
    const struct event_source daemon = {getpid(), "polarisd", polaris_version};
    uint64_t id;
    const char *err = NULL;
    struct json_index ix;
    if (event_json_emitted(b.p, b.len, &daemon, &out, &id, &ix, &err) < 0) {
        buf_free(&b);
        buf_free(&out);
        return luaL_error(L, "polaris.emit: %s", err);
    }
    buf_free(&b);
    struct envelope *e = envelope_new(ENV_MONITOR_EVENT, out.p, out.len);
    buf_free(&out);
    if (!e)
        return luaL_error(L, "polaris.emit: out of memory");
    e->ev.id = id;
    e->ev.index = ix;
    snprintf(e->from, sizeof e->from, "%s", p->id);
    if (!emit_allowed(p)) {
        envelope_free(e);
        lua_pushnil(L);
        lua_pushstring(L, plugin_refuse(p, REFUSED_EMITS));
        return 2;
    }
    if (home_emit(p->home, e) < 0) {
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
    int n = home_message(p->home, p->id, to, topic, b.p, b.len);
    buf_free(&b);
    if (n == -2) {
        lua_pushnil(L);
        lua_pushstring(L, "busy: its mailbox is full (plugins.mailbox_max)");
        return 2;
    }
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
    if (home_shared_get(p->home, key, &b) < 0) {
        buf_free(&b);
        lua_pushnil(L);
        return 1;
    }
    const char *err;
    int rc = lua_json_decode(L, b.p, b.len, &err);
    buf_free(&b);
    if (rc < 0)
        return luaL_error(L, "shared.get: stored value is not JSON: %s", err);
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
    struct plugin_limits lim;
    home_limits(p->home, &lim);
    int rc = home_shared_set(p->home, p->id, lim.shared_bytes, key, b.p, b.len);
    buf_free(&b);
    if (rc == -2)
        return luaL_error(L, "polaris.shared.set: %s", plugin_refuse(p, REFUSED_SHARED));
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
    log_msg_site(p, lvl, "plugin %s: %s", p->id, lua_tostring(L, -1));
    return 0;
}

static int l_debug(lua_State *L) { return log_at(L, LOG_LVL_DEBUG); }
static int l_info(lua_State *L) { return log_at(L, LOG_LVL_INFO); }
static int l_warn(lua_State *L) { return log_at(L, LOG_LVL_WARN); }
static int l_error(lua_State *L) { return log_at(L, LOG_LVL_ERROR); }

#ifdef POLARIS_TEST_HOOKS
/* Only in build/polarisd-hooks, a binary the specs start to test the
 * watchdog: a C call that never returns, out of the budget hook's reach. */
static int l_test_hang(lua_State *L)
{
    (void)L;
    for (;;)
        sleep(3600);
    return 0;
}
#endif

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
    home_actions_json(p->home, &b);
    const char *err;
    int rc = lua_json_decode(L, b.p ? b.p : "[]", b.len ? b.len : 2, &err);
    buf_free(&b);
    if (rc < 0)
        return luaL_error(L, "actions: %s", err);
    return 1;
}

/* The table require caches modules in: package.loaded, as libraries that
 * look at it expect. Pushed on the stack. */
static void push_loaded(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "polaris.loaded");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "polaris.loaded");
    }
}

/* require(name): the plugin's own modules (a plugin folder), then the
 * runtime's shared Lua helpers (plugins.lua_dir), loaded as text into this
 * plugin's own sandbox and cached per state. Module names are dotted words,
 * so nothing outside those two directories can be named. */
static int l_require(lua_State *L)
{
    struct plugin *p = self(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    bool ok = len > 0 && len < 128 && name[0] != '.' && name[len - 1] != '.' && !strstr(name, "..");
    for (size_t i = 0; ok && i < len; i++)
        ok = name[i] == '.' || name[i] == '_' || (name[i] >= 'a' && name[i] <= 'z') ||
             (name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= '0' && name[i] <= '9');
    if (!ok)
        return luaL_error(L, "usage: require(\"name.name\"): words of letters, digits and _ joined by dots");
    /* code written for lua-cjson finds the runtime's (bind_json.c) */
    if (strcmp(name, "cjson") == 0 || strcmp(name, "cjson.safe") == 0) {
        lua_getfield(L, LUA_REGISTRYINDEX, "polaris.cjson");
        if (name[5] == '.')
            lua_getfield(L, -1, "safe");
        return 1;
    }
    push_loaded(L);
    int cache = lua_gettop(L);
    if (lua_getfield(L, cache, name) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    /* package.preload, for libraries that register a module themselves */
    lua_getfield(L, LUA_REGISTRYINDEX, "polaris.preload");
    if (lua_istable(L, -1) && lua_getfield(L, -1, name) == LUA_TFUNCTION) {
        lua_pushstring(L, name);
        lua_pushliteral(L, ":preload:");
        lua_call(L, 2, 1);
    } else {
        lua_settop(L, cache);
        struct buf src = BUF_INIT;
        char chunk[1100], err[400];
        if (home_module_source(p->home, p, name, &src, chunk, sizeof chunk, err, sizeof err) < 0) {
            buf_free(&src);
            return luaL_error(L, "require: module '%s' not found (%s)", name, err);
        }
        int rc = luaL_loadbufferx(L, src.p ? src.p : "", src.len, chunk, "t");
        buf_free(&src);
        if (rc != LUA_OK)
            return luaL_error(L, "require: module '%s' not found (%s)", name, lua_tostring(L, -1));
        lua_pushstring(L, name);
        lua_pushstring(L, chunk + 1);
        lua_call(L, 2, 1);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (lua_getfield(L, cache, name) == LUA_TNIL) {   /* a module may set package.loaded itself */
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
        }
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, cache, name);
    return 1;
}

/* A package table with what pure-Lua libraries look at (loaded, preload,
 * path, config) and nothing that loads C code or reads files by path:
 * loadlib, searchpath, searchers and cpath searching stay out. */
static void bind_package(lua_State *L)
{
    lua_newtable(L);
    push_loaded(L);
    lua_setfield(L, -2, "loaded");
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "polaris.preload");
    lua_setfield(L, -2, "preload");
    lua_pushliteral(L, "?.lua");
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pushliteral(L, "/\n;\n?\n!\n-\n");
    lua_setfield(L, -2, "config");
    lua_setglobal(L, "package");
}

/* ---- waiting calls: yield to the worker, the core does the waiting ---- */

static int ask_core(lua_State *L, struct plugin *p, enum wait_kind kind, uint32_t ms,
                    const char *json, size_t len, uint32_t id, int fn_ref)
{
    struct envelope *e = envelope_new(ENV_WAIT_REQ, json, len);
    if (!e)
        return luaL_error(L, "out of memory");
    plugin_ref(p);                             /* travels with the request */
    e->plugin = p;
    e->wait.kind = (uint8_t)kind;
    e->wait.ms = ms;
    e->wait.op = id;
    e->wait.fn_ref = fn_ref;
    home_to_core(p->home, e);
    return 0;
}

/* Every parked call holds a coroutine (the plugin's memory) and a waiter
 * in the core (the daemon's): bounded per plugin, and programs more so. */
static void check_wait(lua_State *L, struct plugin *p, const char *fn, enum wait_kind kind)
{
    if (home_stopping(p->home))
        luaL_error(L, "%s: the daemon is stopping", fn);
    if (!p->running || p->running->co != L || !lua_isyieldable(L))
        luaL_error(L, "%s: can only wait inside a handler (not while loading, not in a coroutine of your own)", fn);
    struct plugin_limits lim;
    home_limits(p->home, &lim);
    unsigned waits = 0, execs = 0;
    for (const struct call *c = p->parked; c; c = c->next) {
        waits++;
        execs += c->wait == WAIT_EXEC;
    }
    if (waits >= lim.waits)
        luaL_error(L, "%s: %s", fn, plugin_refuse(p, REFUSED_WAITS));
    if (kind == WAIT_EXEC && execs >= lim.execs)
        luaL_error(L, "%s: %s", fn, plugin_refuse(p, REFUSED_EXECS));
    p->running->wait = (uint8_t)kind;
}

static uint32_t check_ms(lua_State *L, int idx, const char *fn)
{
    lua_Integer ms = luaL_checkinteger(L, idx);
    if (ms < 0 || ms > 3600000)
        luaL_error(L, "%s: milliseconds must be in 0..3600000", fn);
    return (uint32_t)ms;
}

static int l_sleep_c(lua_State *L)
{
    struct plugin *p = self(L);
    uint32_t ms = check_ms(L, 1, "polaris.sleep");
    check_wait(L, p, "polaris.sleep", WAIT_SLEEP);
    uint32_t op = ++p->next_op;
    ask_core(L, p, WAIT_SLEEP, ms, NULL, 0, op, 0);
    p->running->op = op;
    return lua_yield(L, 0);
}

/* polaris.exec({"/bin/prog", "arg", ...}, {timeout = ms}) -> result */
static int l_exec_c(lua_State *L)
{
    struct plugin *p = self(L);
    need(L, p, PERM_EXEC, "ExecuteSyscall");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n < 1 || n > 256)
        return luaL_error(L, "usage: polaris.exec({program, args...}, {timeout = ms}): argv needs 1..256 strings");
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
            return luaL_error(L, "polaris.exec: argv[%d] is not a string (argv, never a shell line)", (int)i);
        lua_pop(L, 1);
    }
    uint32_t ms = 5000;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "timeout");
        if (!lua_isnil(L, -1))
            ms = check_ms(L, -1, "polaris.exec");
        lua_pop(L, 1);
    }
    check_wait(L, p, "polaris.exec", WAIT_EXEC);
    struct buf b = BUF_INIT;
    lua_pushvalue(L, 1);
    encode_arg(L, lua_gettop(L), &b);
    lua_pop(L, 1);
    uint32_t op = ++p->next_op;
    ask_core(L, p, WAIT_EXEC, ms, b.p, b.len, op, 0);
    buf_free(&b);
    p->running->op = op;
    return lua_yield(L, 0);
}

/* polaris.guest.request(action, args, timeout_ms) -> code, msg, data */
static int l_guest_request_c(lua_State *L)
{
    struct plugin *p = self(L);
    need(L, p, PERM_VM_WRITE, "WriteVmState");
    size_t alen;
    const char *action = luaL_checklstring(L, 1, &alen);
    if (alen == 0 || alen >= 48)
        return luaL_error(L, "usage: polaris.guest.request(action, args, timeout_ms)");
    uint32_t ms = lua_isnoneornil(L, 3) ? 0 : check_ms(L, 3, "polaris.guest.request");
    check_wait(L, p, "polaris.guest.request", WAIT_GUEST);
    struct buf b = BUF_INIT;
    if (lua_isnoneornil(L, 2)) {
        buf_puts(&b, "{}");
    } else {
        luaL_checktype(L, 2, LUA_TTABLE);
        encode_arg(L, 2, &b);
        if (b.len == 2 && b.p[0] == '[') {   /* an empty table is an object here */
            buf_reset(&b);
            buf_puts(&b, "{}");
        }
    }
    struct envelope *e = envelope_new(ENV_WAIT_REQ, b.p, b.len);
    buf_free(&b);
    if (!e)
        return luaL_error(L, "out of memory");
    uint32_t op = ++p->next_op;
    plugin_ref(p);
    e->plugin = p;
    e->wait.kind = WAIT_GUEST;
    e->wait.op = op;
    e->wait.ms = ms;
    memcpy(e->cmd.action, action, alen + 1);
    snprintf(e->from, sizeof e->from, "%s", p->id);
    home_to_core(p->home, e);
    p->running->op = op;
    return lua_yield(L, 0);
}

/* The ids of live timers, a table in the state's registry: cancel and a
 * one-shot's firing end one, each once. */
static int timer_common(lua_State *L, enum wait_kind kind, const char *fn)
{
    struct plugin *p = self(L);
    uint32_t ms = check_ms(L, 1, fn);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (kind == WAIT_EVERY && ms < 10)
        return luaL_error(L, "%s: the interval must be at least 10 ms", fn);
    if (home_stopping(p->home))
        return luaL_error(L, "%s: the daemon is stopping", fn);
    struct plugin_limits lim;
    home_limits(p->home, &lim);
    if (p->ntimers >= lim.timers)
        return luaL_error(L, "%s: %s", fn, plugin_refuse(p, REFUSED_TIMERS));
    plugin_timers_push(L);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uint32_t id = ++p->next_op;
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, id);
    ask_core(L, p, kind, ms, NULL, 0, id, ref);
    p->ntimers++;
    lua_pushinteger(L, id);
    return 1;
}

static int l_timer(lua_State *L) { return timer_common(L, WAIT_TIMER, "polaris.timer"); }
static int l_every(lua_State *L) { return timer_common(L, WAIT_EVERY, "polaris.every"); }

static int l_cancel(lua_State *L)
{
    struct plugin *p = self(L);
    lua_Integer id = luaL_checkinteger(L, 1);
    if (!plugin_timer_end(p, L, id))
        return 0;                              /* not live: nothing to cancel */
    struct envelope *e = envelope_new(ENV_WAIT_CANCEL, NULL, 0);
    if (!e)
        return luaL_error(L, "out of memory");
    plugin_ref(p);
    e->plugin = p;
    e->wait.op = (uint32_t)id;
    home_to_core(p->home, e);
    return 0;
}

/* lua/polaris/driver.lua (driver_lua.S): the drivers that run handlers
 * inside a coroutine, and the wrappers that decode what a waiting call
 * brings back. */
extern const char polaris_driver_lua[], polaris_driver_lua_end[];

static void set_funcs(lua_State *L, struct plugin *p, const luaL_Reg *fns)
{
    lua_pushlightuserdata(L, p);
    luaL_setfuncs(L, fns, 1);
}

void bind_polaris(struct plugin *p)
{
    lua_State *L = p->sb.L;
    static const luaL_Reg top[] = {
        {"on_event", l_on_event}, {"command", l_command}, {"emit", l_emit},
        {"send", l_send}, {"broadcast", l_broadcast}, {"now", l_now},
        {"actions", l_actions}, {"route", l_route}, {"timer", l_timer}, {"every", l_every}, {"cancel", l_cancel},
#ifdef POLARIS_TEST_HOOKS
        {"_test_hang", l_test_hang},
#endif
        {NULL, NULL},
    };
    static const luaL_Reg shared[] = {{"get", l_shared_get}, {"set", l_shared_set}, {NULL, NULL}};
    static const luaL_Reg logf[] = {
        {"debug", l_debug}, {"info", l_info}, {"warn", l_warn}, {"error", l_error}, {NULL, NULL},
    };
    static const luaL_Reg guest[] = {{"status", l_guest_status}, {NULL, NULL}};

    if (luaL_loadbufferx(L, polaris_driver_lua, (size_t)(polaris_driver_lua_end - polaris_driver_lua),
                         "=polaris", "t") == LUA_OK) {
        lua_pushcfunction(L, lua_json_decode_fn);     /* integers exact (lua_json.c) */
        plugin_push_nil_sampler(L);
        lua_call(L, 2, 1);
    } else {
        lua_pop(L, 1);
        lua_newtable(L);                     /* unreachable: the source is ours */
    }
    lua_pushvalue(L, -1);
    p->driver_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "strategy");
    p->strategy_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->strategy1_ref = plugin_strategy1_ref(L, lua_gettop(L));
    p->reader_ref = plugin_reader_ref(L);
    int drivers = lua_gettop(L);

    lua_newtable(L);
    set_funcs(L, p, top);
    static const luaL_Reg waiting[] = {{"sleep", l_sleep_c}, {"exec", l_exec_c}, {NULL, NULL}};
    for (const luaL_Reg *w = waiting; w->name; w++) {
        lua_getfield(L, drivers, "waiting");
        lua_pushlightuserdata(L, p);
        lua_pushcclosure(L, w->func, 1);
        lua_call(L, 1, 1);
        lua_setfield(L, -2, w->name);
    }
    lua_newtable(L);
    set_funcs(L, p, shared);
    lua_setfield(L, -2, "shared");
    lua_newtable(L);
    set_funcs(L, p, logf);
    lua_setfield(L, -2, "log");
    lua_newtable(L);
    set_funcs(L, p, guest);
    lua_getfield(L, drivers, "answer");
    lua_pushlightuserdata(L, p);
    lua_pushcclosure(L, l_guest_request_c, 1);
    lua_call(L, 1, 1);
    lua_setfield(L, -2, "request");
    lua_setfield(L, -2, "guest");
    bind_fs(p);
    lua_setfield(L, -2, "fs");
    bind_sys(p);
    lua_setfield(L, -2, "sys");
    home_push_config(p->home, p->id, L);
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
    lua_pushinteger(L, (lua_Integer)home_started_ms(p->home));
    lua_setfield(L, -2, "started_ms");
    lua_setfield(L, -2, "daemon");
    lua_setglobal(L, "polaris");
    lua_pushlightuserdata(L, p);
    lua_pushcclosure(L, l_require, 1);
    lua_setglobal(L, "require");
    bind_package(L);
    /* print goes to the log, tagged with the plugin */
    lua_pushlightuserdata(L, p);
    lua_pushcclosure(L, l_info, 1);
    lua_setglobal(L, "print");
    lua_settop(L, drivers - 1);
}
