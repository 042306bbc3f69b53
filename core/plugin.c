/* plugin.c - a plugin's life and work: build its sandbox, run its file and
 * init/start, then serve its mailbox on a worker thread: strategy steps,
 * commands, messages. Every failure is contained here: the event goes on
 * (with strategyError), the command is answered -6, the error is counted,
 * and a plugin that keeps failing is put in Error until the next reload.
 *
 * Uses: sandbox, lua_json, lua-cjson (decode), plugin_registry. */
#include "plugin.h"
#include "command_msg.h"
#include "daemon.h"
#include "log.h"
#include "lua_json.h"
#include "plugin_registry.h"
#include "stats.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FILE (1u << 20)

static const char *state_names[] = {
    "Unloaded", "Loading", "Loaded", "Initializing", "Active", "Error", "Unloading",
};

const char *plugin_state_name(int s)
{
    return s >= 0 && s <= PLUGIN_UNLOADING ? state_names[s] : "?";
}

void plugin_set_error(struct plugin *p, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&p->mu);
    va_start(ap, fmt);
    vsnprintf(p->last_error, sizeof p->last_error, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&p->mu);
}

void plugin_ref(struct plugin *p)
{
    atomic_fetch_add(&p->refs, 1);
}

/* Calls P.name() if the plugin defined it; errors are logged, not fatal. */
static int call_callback(struct plugin *p, const char *name, int nargs)
{
    lua_State *L = p->sb.L;
    if (!L || p->callbacks_ref == LUA_NOREF) {
        lua_pop(L, nargs);
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->callbacks_ref);
    if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
        lua_pop(L, 2 + nargs);
        return 0;
    }
    lua_remove(L, -2);
    lua_insert(L, -1 - nargs);
    char err[512];
    if (sandbox_call(&p->sb, nargs, 0, err, sizeof err) < 0) {
        plugin_set_error(p, "%s: %s", name, err);
        log_warn("plugin %s: %s() failed: %s", p->id, name, err);
        return -1;
    }
    return 0;
}

static void plugin_free(struct plugin *p)
{
    if (p->sb.L) {
        atomic_store(&p->state, PLUGIN_UNLOADING);
        if (p->callbacks_ref != LUA_NOREF) {
            call_callback(p, "stop", 0);
            call_callback(p, "cleanup", 0);
        }
        sandbox_close(&p->sb);
    }
    envelope_free_list(p->mb_head);
    for (size_t i = 0; i < p->nallowed; i++)
        free(p->allowed_paths[i]);
    for (size_t i = 0; i < p->nforbidden; i++)
        free(p->forbidden_paths[i]);
    free(p->allowed_paths);
    free(p->forbidden_paths);
    free(p->handlers);
    free(p->cmds);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void plugin_unref(struct plugin *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1)
        plugin_free(p);
}

bool plugin_handles(const struct plugin *p, uint64_t event_id)
{
    for (size_t i = 0; i < p->nhandlers; i++)
        if (p->handlers[i].any || p->handlers[i].event_id == event_id)
            return true;
    return false;
}

bool plugin_has_command(const struct plugin *p, const char *name)
{
    for (size_t i = 0; i < p->ncmds; i++)
        if (strcmp(p->cmds[i].name, name) == 0)
            return true;
    return false;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
    fclose(f);
    if (!buf || n > MAX_FILE) {
        snprintf(err, errlen, "%s: %s", path, buf ? "larger than 1 MiB" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int plugin_load(struct plugin *p)
{
    char err[512];
    atomic_store(&p->state, PLUGIN_LOADING);
    if (sandbox_open(&p->sb, p->mem_limit, p->budget_ns, err, sizeof err) < 0)
        goto fail;
    lua_State *L = p->sb.L;
    bind_polaris(p);
    size_t len;
    char *code = read_file(p->file, &len, err, sizeof err);
    if (!code)
        goto fail;
    char chunk[600];
    snprintf(chunk, sizeof chunk, "@%s", p->file);
    int rc = sandbox_load(&p->sb, code, len, chunk, err, sizeof err);
    free(code);
    if (rc < 0)
        goto fail;
    p->loading = true;
    if (sandbox_call(&p->sb, 0, 1, err, sizeof err) < 0)
        goto fail;
    if (lua_istable(L, -1)) {
        p->callbacks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
    } else {
        snprintf(err, sizeof err, "%s must return a table of callbacks (or nothing), not a %s",
                 p->file, luaL_typename(L, -1));
        goto fail;
    }
    atomic_store(&p->state, PLUGIN_LOADED);
    atomic_store(&p->state, PLUGIN_INITIALIZING);
    lua_newtable(L);                           /* ctx */
    lua_pushstring(L, p->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, p->version);
    lua_setfield(L, -2, "version");
    lua_getglobal(L, "polaris");
    lua_getfield(L, -1, "config");
    lua_setfield(L, -3, "config");
    lua_pop(L, 1);
    if (call_callback(p, "init", 1) < 0 || call_callback(p, "start", 0) < 0) {
        snprintf(err, sizeof err, "%s", p->last_error);
        goto fail;
    }
    p->loading = false;
    p->loaded_mono_ns = mono_ns();
    atomic_store(&p->state, PLUGIN_ACTIVE);
    return 0;
fail:
    p->loading = false;
    plugin_set_error(p, "%s", err);
    atomic_store(&p->state, PLUGIN_ERROR);
    if (p->sb.L) {
        p->callbacks_ref = LUA_NOREF;         /* a half-built plugin gets no stop() */
        sandbox_close(&p->sb);
    }
    return -1;
}

void plugin_post(struct plugin *p, struct envelope *e)
{
    e->next = NULL;
    plugin_ref(p);                             /* held until e is processed */
    pthread_mutex_lock(&p->mu);
    if (p->mb_tail)
        p->mb_tail->next = e;
    else
        p->mb_head = e;
    p->mb_tail = e;
    bool schedule = !p->scheduled;
    p->scheduled = true;
    pthread_mutex_unlock(&p->mu);
    if (schedule) {
        plugin_ref(p);                         /* held by the scheduled job */
        registry_schedule(p->reg, &p->job);
    }
}

static void count_failure(struct plugin *p, const char *what, const char *err)
{
    atomic_fetch_add(&p->errors, 1);
    plugin_set_error(p, "%s: %s", what, err);
    unsigned max = registry_max_errors(p->reg);
    if (++p->consecutive_errors >= max && atomic_load(&p->state) == PLUGIN_ACTIVE) {
        atomic_store(&p->state, PLUGIN_ERROR);
        log_error("plugin %s failed %u times in a row; in Error until the next reload: %s",
                  p->id, max, err);
    } else {
        log_warn("plugin %s: %s: %s", p->id, what, err);
    }
}

/* Pushes the event as a Lua table: cjson's decode, then the exact eventId
 * as an integer (u64 values above 2^63-1 appear as negative integers and
 * round-trip exactly). */
static int push_event(struct plugin *p, const struct envelope *e, char *err, size_t errlen)
{
    lua_State *L = p->sb.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->decode_ref);
    lua_pushlstring(L, e->data, e->len);
    if (sandbox_call(&p->sb, 1, 1, err, errlen) < 0)
        return -1;
    lua_pushinteger(L, (lua_Integer)e->event_id);
    lua_setfield(L, -2, "eventId");
    return 0;
}

/* Replaces e's payload with the JSON of the table on top of the stack. */
static struct envelope *reencode(struct plugin *p, struct envelope *e, char *err, size_t errlen)
{
    lua_State *L = p->sb.L;
    /* raw access only: this runs outside the budget, so no metamethod of
     * the plugin's may run here */
    lua_pushliteral(L, "eventId");
    if (lua_rawget(L, -2) != LUA_TNUMBER || !lua_isinteger(L, -1)) {
        lua_pop(L, 1);
        snprintf(err, errlen, "the returned event has no integer eventId");
        return NULL;
    }
    uint64_t id = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    /* the eventId is written by us, unsigned, first; the rest by the encoder */
    lua_pushliteral(L, "eventId");
    lua_pushnil(L);
    lua_rawset(L, -3);
    struct buf body = BUF_INIT, b = BUF_INIT;
    int rc = lua_json_encode(L, -1, &body, err, errlen);
    lua_pushliteral(L, "eventId");
    lua_pushinteger(L, (lua_Integer)id);
    lua_rawset(L, -3);
    if (rc < 0 || body.len < 2 || body.p[0] != '{') {
        if (rc == 0)
            snprintf(err, errlen, "the returned event is not an object");
        buf_free(&body);
        return NULL;
    }
    buf_puts(&b, "{\"eventId\":");
    buf_json_u64(&b, id);
    if (body.len > 2)
        buf_putc(&b, ',');
    buf_append(&b, body.p + 1, body.len - 1);
    buf_free(&body);
    struct envelope *n = envelope_new(e->type, b.p, b.len);
    buf_free(&b);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t hdr = offsetof(struct envelope, len);
    memcpy(n, e, hdr);                         /* routing fields, not the payload */
    n->event_id = id;
    envelope_free(e);
    return n;
}

/* Adds "strategyError" to the event as it came in. */
static struct envelope *with_strategy_error(struct plugin *p, struct envelope *e, const char *reason)
{
    struct buf b = BUF_INIT;
    size_t end = e->len;
    while (end > 0 && e->data[end - 1] != '}')
        end--;
    if (end == 0)
        return e;
    buf_append(&b, e->data, end - 1);
    buf_puts(&b, end > 2 ? ",\"strategyError\":{\"plugin\":" : "\"strategyError\":{\"plugin\":");
    buf_json_cstr(&b, p->id);
    buf_puts(&b, ",\"reason\":");
    buf_json_cstr(&b, reason);
    buf_puts(&b, "}}");
    struct envelope *n = envelope_new(e->type, b.p, b.len);
    buf_free(&b);
    if (!n)
        return e;
    memcpy(n, e, offsetof(struct envelope, len));
    envelope_free(e);
    return n;
}

/* One strategy step. Returns the envelope to pass on, or NULL if dropped. */
static struct envelope *run_strategy(struct plugin *p, struct envelope *e)
{
    if (atomic_load(&p->state) != PLUGIN_ACTIVE)
        return e;                              /* in Error: events pass untouched */
    lua_State *L = p->sb.L;
    char err[512];
    int top = lua_gettop(L);
    atomic_fetch_add(&p->events, 1);
    if (push_event(p, e, err, sizeof err) < 0)
        goto failed;
    bool changed = false;
    for (size_t i = 0; i < p->nhandlers; i++) {
        struct handler *h = &p->handlers[i];
        if (!h->any && h->event_id != e->event_id)
            continue;
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
        lua_pushvalue(L, -2);
        if (sandbox_call(&p->sb, 1, 1, err, sizeof err) < 0)
            goto failed;
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
        } else if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
            lua_settop(L, top);
            p->consecutive_errors = 0;
            STAT_INC(core_events_dropped_by_strategy);
            return NULL;
        } else if (lua_istable(L, -1)) {
            lua_remove(L, -2);
            changed = true;
        } else {
            snprintf(err, sizeof err, "on_event handler returned a %s (want the event, nil or false)",
                     luaL_typename(L, -1));
            goto failed;
        }
    }
    if (changed) {
        struct envelope *n = reencode(p, e, err, sizeof err);
        if (!n)
            goto failed;
        e = n;
    }
    lua_settop(L, top);
    p->consecutive_errors = 0;
    return e;
failed:
    lua_settop(L, top);
    count_failure(p, "on_event", err);
    return with_strategy_error(p, e, err);
}

static void finish_command(struct plugin *p, struct envelope *req, int code, const char *msg,
                           const char *data, size_t data_len)
{
    struct buf b = BUF_INIT;
    struct envelope *r = NULL;
    if (cmd_result_write(&b, req->req_id, code, msg, data, data_len) == 0)
        r = envelope_new(ENV_CMD_EXEC_RESULT, b.p, b.len);
    buf_free(&b);
    if (!r)
        r = envelope_new(ENV_CMD_EXEC_RESULT, NULL, 0);   /* the core answers -6 */
    if (!r)
        return;
    r->code = code;
    r->seq = req->seq;
    r->origin = req->origin;
    r->req_id = req->req_id;
    r->conn_id = req->conn_id;
    memcpy(r->action, req->action, sizeof r->action);
    registry_to_core(p->reg, r);
}

static void run_command(struct plugin *p, struct envelope *e)
{
    lua_State *L = p->sb.L;
    atomic_fetch_add(&p->commands, 1);
    if (atomic_load(&p->state) != PLUGIN_ACTIVE || !L) {
        finish_command(p, e, CMD_HANDLER_ERROR, "the plugin offering this action is in Error", NULL, 0);
        return;
    }
    int ref = LUA_NOREF;
    for (size_t i = 0; i < p->ncmds; i++)
        if (strcmp(p->cmds[i].name, e->action) == 0)
            ref = p->cmds[i].ref;
    if (ref == LUA_NOREF) {
        finish_command(p, e, CMD_UNKNOWN_ACTION, NULL, NULL, 0);
        return;
    }
    int top = lua_gettop(L);
    char err[512];
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->decode_ref);
    lua_pushlstring(L, e->data, e->len);
    if (sandbox_call(&p->sb, 1, 1, err, sizeof err) < 0)
        goto failed;
    lua_createtable(L, 0, 4);                  /* req */
    lua_pushstring(L, e->action);
    lua_setfield(L, -2, "action");
    lua_pushstring(L, e->origin == ORIGIN_GUEST ? "guest" : "app");
    lua_setfield(L, -2, "origin");
    if (e->origin == ORIGIN_APP) {
        lua_pushinteger(L, e->pid);
        lua_setfield(L, -2, "pid");
        lua_pushinteger(L, e->uid);
        lua_setfield(L, -2, "uid");
    }
    if (sandbox_call(&p->sb, 2, 3, err, sizeof err) < 0)
        goto failed;
    if (!lua_isinteger(L, -3)) {
        snprintf(err, sizeof err, "command handler must return an integer code, not a %s",
                 luaL_typename(L, -3));
        goto failed;
    }
    lua_Integer code = lua_tointeger(L, -3);
    const char *msg = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    struct buf data = BUF_INIT;
    if (!lua_isnil(L, -1) && lua_json_encode(L, -1, &data, err, sizeof err) < 0) {
        buf_free(&data);
        goto failed;
    }
    if (code < 0 || code > INT32_MAX) {
        snprintf(err, sizeof err, "command handler returned code %lld (negative codes are the framework's)",
                 (long long)code);
        buf_free(&data);
        goto failed;
    }
    finish_command(p, e, (int)code, msg, data.p, data.len);
    buf_free(&data);
    lua_settop(L, top);
    p->consecutive_errors = 0;
    return;
failed:
    lua_settop(L, top);
    count_failure(p, e->action, err);
    char fmsg[600];
    snprintf(fmsg, sizeof fmsg, "handler error: %s", err);
    finish_command(p, e, CMD_HANDLER_ERROR, fmsg, NULL, 0);
}

static void run_message(struct plugin *p, struct envelope *e)
{
    lua_State *L = p->sb.L;
    if (atomic_load(&p->state) != PLUGIN_ACTIVE || !L || p->callbacks_ref == LUA_NOREF)
        return;
    atomic_fetch_add(&p->messages, 1);
    int top = lua_gettop(L);
    char err[512];
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->callbacks_ref);
    if (lua_getfield(L, -1, "on_message") != LUA_TFUNCTION) {
        lua_settop(L, top);
        return;
    }
    lua_pushstring(L, e->from);
    lua_pushstring(L, e->action);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->decode_ref);
    lua_pushlstring(L, e->data, e->len);
    if (sandbox_call(&p->sb, 1, 1, err, sizeof err) < 0 ||
        sandbox_call(&p->sb, 3, 0, err, sizeof err) < 0)
        count_failure(p, "on_message", err);
    else
        p->consecutive_errors = 0;
    lua_settop(L, top);
}

/* After this plugin's step: the next strategy, or back to the core. */
static void pass_on(struct plugin *p, struct envelope *e)
{
    e->chain_pos++;
    if (e->chain_pos < e->chain_len) {
        plugin_post(e->chain[e->chain_pos], e);
        return;
    }
    registry_chain_done(p->reg, e);
}

static void process(struct plugin *p, struct envelope *e)
{
    switch (e->type) {
    case ENV_IPC_EVENT:
    case ENV_MONITOR_EVENT: {
        struct envelope *out = run_strategy(p, e);
        if (out)
            pass_on(p, out);
        else
            registry_chain_drop(p->reg, e);
        return;
    }
    case ENV_GUEST_CMD_REQ:
    case ENV_APP_CMD_REQ:
        run_command(p, e);
        break;
    case ENV_PLUGIN_MSG:
        run_message(p, e);
        break;
    default:
        log_error("plugin %s: unexpected envelope type %u", p->id, e->type);
    }
    envelope_free(e);
}

void plugin_run_job(struct job *j)
{
    struct plugin *p = (struct plugin *)j;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        struct envelope *e = p->mb_head;
        p->mb_head = p->mb_tail = NULL;
        if (!e)
            p->scheduled = false;
        pthread_mutex_unlock(&p->mu);
        if (!e) {
            plugin_unref(p);                   /* the job's ref; may free p */
            return;
        }
        while (e) {
            struct envelope *next = e->next;
            e->next = NULL;
            process(p, e);
            plugin_unref(p);                   /* the mailbox's ref for e */
            e = next;
        }
        if (p->sb.L)
            lua_gc(p->sb.L, LUA_GCSTEP, 0);
    }
}
