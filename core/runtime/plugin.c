/* plugin.c - a plugin's life and work once loaded (plugin_load.c builds
 * it): serve its mailbox on a worker thread: strategy steps, commands,
 * messages, timers, and stop/cleanup when the last reference goes. Every failure is contained here: the event goes on
 * (with strategyError), the command is answered -6, the error is counted,
 * and a plugin that keeps failing is put in Error until the next reload.
 *
 * Uses: sandbox, lua_json, event_json, json_scan, port (what it sends out). */
#include "runtime/plugin.h"
#include "wire/command_msg.h"
#include "wire/event_json.h"
#include "wire/json_scan.h"
#include "lib/log.h"
#include "runtime/lua_json.h"
#include "runtime/lua_event.h"
#include "runtime/port.h"
#include "lib/clock.h"
#include "lib/stats.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAILBOX_BATCH 256

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

struct plugin *plugin_alloc(void)
{
    size_t size = (sizeof(struct plugin) + PLUGIN_LINE - 1) / PLUGIN_LINE * PLUGIN_LINE;
    struct plugin *p = aligned_alloc(PLUGIN_LINE, size);
    if (p)
        memset(p, 0, size);
    return p;
}

void plugin_ref(struct plugin *p)
{
    atomic_fetch_add(&p->refs, 1);
}

/* Calls P.name() if the plugin defined it; errors are logged, not fatal. */
int plugin_callback(struct plugin *p, const char *name, int nargs)
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

/* Calls status() and keeps what it returned for `polarisctl status`. The
 * core builds status without touching a plugin's state (a worker may be in
 * it), so the result is taken here, on the plugin's own worker, when it
 * loads and then at most once a second while it works. */
void plugin_refresh_status(struct plugin *p, bool force)
{
    lua_State *L = p->sb.L;
    uint64_t now = mono_ns();
    if (!L || p->callbacks_ref == LUA_NOREF || atomic_load(&p->state) != PLUGIN_ACTIVE ||
        (!force && now - p->status_mono_ns < PLUGIN_STATUS_EVERY_NS) || p->running)
        return;
    p->status_mono_ns = now;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->callbacks_ref);
    lua_pushliteral(L, "status");
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    char err[256], text[PLUGIN_STATUS_MAX];
    struct buf b = BUF_INIT;
    if (sandbox_call(&p->sb, 0, 1, err, sizeof err) < 0) {
        snprintf(text, sizeof text, "{\"error\":\"status() failed\"}");
        log_warn("plugin %s: status() failed: %s", p->id, err);
    } else {
        if (lua_json_encode(L, -1, &b, err, sizeof err) < 0)
            snprintf(text, sizeof text, "{\"error\":\"status() returned no JSON value\"}");
        else if (b.len >= sizeof text)
            snprintf(text, sizeof text, "{\"error\":\"status() returned more than %d bytes\"}",
                     PLUGIN_STATUS_MAX - 1);
        else
            snprintf(text, sizeof text, "%.*s", (int)b.len, b.p);
        lua_pop(L, 1);
    }
    buf_free(&b);
    pthread_mutex_lock(&p->mu);
    memcpy(p->status_json, text, strlen(text) + 1);
    pthread_mutex_unlock(&p->mu);
}

static void plugin_free(struct plugin *p)
{
    while (p->parked) {
        struct call *c = p->parked;
        p->parked = c->next;
        envelope_free(c->e);
        free(c);                               /* the state goes with lua_close */
    }
    while (p->idle) {
        struct call *c = p->idle;
        p->idle = c->next;
        free(c);
    }
    envelope_free_list(envlist_take(&p->held));
    buf_free(&p->rewrite);
    if (p->sb.L) {
        atomic_store(&p->state, PLUGIN_UNLOADING);
        if (p->callbacks_ref != LUA_NOREF) {
            plugin_callback(p, "stop", 0);
            plugin_callback(p, "cleanup", 0);
        }
        sandbox_close(&p->sb);
    }
    atomic_store(&p->state, PLUGIN_UNLOADED);
    if (p->leaving)
        home_plugin_gone(p->home, p);
    envelope_free_list(envlist_take(&p->mailbox));
    for (size_t i = 0; i < p->nallowed; i++)
        free(p->allowed_paths[i]);
    for (size_t i = 0; i < p->nforbidden; i++)
        free(p->forbidden_paths[i]);
    free(p->allowed_paths);
    free(p->forbidden_paths);
    for (size_t i = 0; i < p->ndeps; i++)
        free(p->deps[i]);
    free(p->deps);
    free(p->handlers);
    free(p->cmds);
    for (size_t i = 0; i < p->nroutes; i++)
        free(p->routes[i].ids);
    free(p->routes);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void plugin_unref_n(struct plugin *p, int n)
{
    if (!p || n <= 0)
        return;
    /* read before letting go: once the count is down, its host may free p */
    void (*unpinned)(void *) = p->unpinned;
    void *arg = p->unpinned_arg;
    int left = atomic_fetch_sub(&p->refs, n) - n;
    if (left == 0)
        plugin_free(p);
    else if (left == 1 && unpinned)
        unpinned(arg);
}

void plugin_unref(struct plugin *p)
{
    plugin_unref_n(p, 1);
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

const char *plugin_refuse(struct plugin *p, enum refusal what)
{
    static const char *const why[REFUSED_N] = {
        "busy: too many live timers (plugins.timers_max)",
        "busy: too many calls waiting (plugins.waits_max)",
        "busy: too many programs running (plugins.exec_max)",
        "busy: emitting too fast (plugins.emit_per_s)",
        "busy: its mailbox is full (plugins.mailbox_max)",
        "busy: the plugin's share of the shared store is full (plugins.shared_plugin_max_bytes)",
    };
    atomic_fetch_add(&p->refused[what], 1);
    return why[what];
}

static bool is_command(const struct envelope *e)
{
    return e->type == ENV_GUEST_CMD_REQ || e->type == ENV_APP_CMD_REQ;
}

static void finish_command(struct plugin *p, struct envelope *req, int code, const char *msg,
                           const char *data, size_t data_len);

/* Work for a plugin no worker will run again: an event goes on with
 * strategyError, a command is answered -6, the rest is let go. */
static void bypass(struct plugin *p, struct envelope *e, const char *why)
{
    if (e->type == ENV_IPC_EVENT || e->type == ENV_MONITOR_EVENT) {
        plugin_strategy_failed(p, e, why);
    } else if (is_command(e)) {
        finish_command(p, e, CMD_HANDLER_ERROR, why, NULL, 0);
        envelope_free(e);
    } else {
        envelope_free(e);
    }
}

void plugin_job_stuck(struct job *j, uint64_t ms)
{
    struct plugin *p = j->run == plugin_run_job ? (struct plugin *)j
                                                : (struct plugin *)((char *)j - offsetof(struct plugin, cmd_job));
    /* the stuck job's reference keeps p alive as long as its thread */
    atomic_store(&p->abandoned, true);
    atomic_store(&p->state, PLUGIN_ERROR);
    plugin_set_error(p, "stuck in one call for %llu ms (plugins.watchdog_ms): its worker was abandoned; "
                     "reload to run it again", (unsigned long long)ms);
    log_error("plugin %s: stuck in one call for %llu ms (plugins.watchdog_ms); put in Error, its worker "
              "abandoned", p->id, (unsigned long long)ms);
    pthread_mutex_lock(&p->mu);
    struct envelope *a = envlist_take(&p->urgent), *b = envlist_take(&p->mailbox);
    pthread_mutex_unlock(&p->mu);
    struct envelope *lists[2] = {a, b};
    for (int i = 0; i < 2; i++)
        while (lists[i]) {
            struct envelope *e = lists[i];
            lists[i] = e->next;
            e->next = NULL;
            bypass(p, e, "the plugin is stuck (plugins.watchdog_ms)");
            plugin_unref(p);                   /* the mailbox's ref for e */
        }
}

void plugin_post(struct plugin *p, struct envelope *e)
{
    if (atomic_load(&p->abandoned)) {
        bypass(p, e, "the plugin is stuck (plugins.watchdog_ms)");
        return;
    }
    if (p->remote_post && e->type != ENV_HOST_RPC) {
        p->remote_post(p, e);                  /* isolation "process": to its host */
        return;
    }
    plugin_ref(p);                             /* held until e is processed */
    if (e->type == ENV_PLUGIN_MSG)
        atomic_fetch_add(&p->nmsgs, 1);
    bool cmd = is_command(e);
    pthread_mutex_lock(&p->mu);
    envlist_push(cmd ? &p->urgent : &p->mailbox, e);
    bool *flag = cmd ? &p->cmd_scheduled : &p->scheduled;
    bool schedule = !*flag;
    *flag = true;
    pthread_mutex_unlock(&p->mu);
    if (schedule) {
        plugin_ref(p);                         /* held by the scheduled job */
        if (cmd)
            home_schedule_urgent(p->home, &p->cmd_job);
        else
            home_schedule(p->home, &p->job);
    }
}

/* Pushes t[name] (raw) from the table on top, replacing the table; true if
 * it is a function (else nothing is left pushed). */
static bool lua_rawgetfield_fn(lua_State *L, const char *name)
{
    lua_pushstring(L, name);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_isfunction(L, -1))
        return true;
    lua_pop(L, 1);
    return false;
}

static void count_failure(struct plugin *p, const char *what, const char *err)
{
    atomic_fetch_add(&p->errors, 1);
    plugin_set_error(p, "%s: %s", what, err);
    unsigned max = home_max_errors(p->home);
    if (++p->consecutive_errors >= max && atomic_load(&p->state) == PLUGIN_ACTIVE) {
        atomic_store(&p->state, PLUGIN_ERROR);
        log_error("plugin %s failed %u times in a row; in Error until the next reload: %s",
                  p->id, max, err);
    } else {
        log_warn("plugin %s: %s: %s", p->id, what, err);
    }
}

/* The host pushes arguments into the plugin's state outside the budget;
 * those few allocations must never fail because the plugin sits at its
 * memory limit (an unprotected failure would abort the daemon). */
static size_t unbudgeted_begin(struct plugin *p)
{
    size_t lim = p->sb.mem_limit;
    p->sb.mem_limit = 0;
    return lim;
}

static void unbudgeted_end(struct plugin *p, size_t lim)
{
    p->sb.mem_limit = lim;
}

static void drivers_push(struct plugin *p, lua_State *co, const char *name)
{
    lua_rawgeti(co, LUA_REGISTRYINDEX, p->driver_ref);
    lua_getfield(co, -1, name);
    lua_remove(co, -2);
}

/* A call runs in a coroutine of its own. Finished ones are kept, up to
 * IDLE_CALLS, and their coroutine runs the next call: a new thread, its
 * reference and its collection cost about as much as a trivial strategy's
 * whole run. (A coroutine that returned is ready for a new function as it
 * is; one that failed is reset first.) */
#define IDLE_CALLS 4

static struct call *call_new(struct plugin *p, enum call_kind kind, struct envelope *e)
{
    struct call *c = p->idle;
    if (c) {
        p->idle = c->next;
        p->nidle--;
    } else {
        if (!(c = malloc(sizeof *c)))
            return NULL;
        c->co = lua_newthread(p->sb.L);
        c->co_ref = luaL_ref(p->sb.L, LUA_REGISTRYINDEX);
    }
    c->next = NULL;
    c->kind = kind;
    c->e = e;
    c->op = 0;
    return c;
}

static void call_free(struct plugin *p, struct call *c)
{
    /* a coroutine its budget stopped stays failed (sandbox_reset), and
     * only an OK one is kept for the next call */
    if (lua_status(c->co) == LUA_OK)
        lua_settop(c->co, 0);
    else if (sandbox_reset(&p->sb, c->co) < 0)
        count_failure(p, "__close", "cpu budget exceeded closing a failed call's variables");
    if (p->nidle < IDLE_CALLS && lua_status(c->co) == LUA_OK) {
        c->next = p->idle;
        p->idle = c;
        p->nidle++;
        return;
    }
    luaL_unref(p->sb.L, LUA_REGISTRYINDEX, c->co_ref);
    free(c);
}

/* Whether the restamp would find nothing to do in a returned table's
 * text: m[0..n), its members (m[0] the eventId reencode wrote, if first;
 * then those the encoder wrote for the lazy table z, the ones it copied
 * from z's text first: all but those skip or z's loaded bits leave out).
 * So when z's text is e's, which the daemon stamped
 * itself (stamped: valid as the stamp checks an app's event), and neither
 * a member the table wrote nor one of the text it read, set or deleted is
 * one the daemon stamps or checks (but params, still an object): then the
 * identity members are e's, in e's order and byte for byte, and the
 * checked members are as the stamp checked them. The eventId is reencode's
 * own. Anything else, or any doubt, goes through the restamp. */
static bool restamp_needless(const struct lua_json_lazy *z, uint64_t skip, bool stamped,
                             const struct envelope *e, const struct json_member *m, int n, int first)
{
    /* more members than an event may have: the restamp refuses it (and
     * m holds only the first EVENT_MEMBERS_MAX) */
    if (!stamped || !z || z->root != z || n > EVENT_MEMBERS_MAX || z->len != e->len ||
        memcmp(z->text, e->data, e->len) != 0)
        return false;
    uint64_t all = z->n == 64 ? UINT64_MAX : (UINT64_C(1) << z->n) - 1;
    int copied = first + (int)z->n - __builtin_popcountll((z->loaded | skip) & all);
    bool params_read = false, params_object = false;
    for (uint64_t b = z->loaded & all; b; b &= b - 1) {
        const struct json_span *sp = &z->span[__builtin_ctzll(b)];
        enum event_key_role r = event_key_role(z->text + sp->key, sp->key_len);
        if (r == EVENT_KEY_CHECKED)
            return false;
        params_read |= r == EVENT_KEY_PARAMS;
    }
    for (int i = copied; i < n; i++) {
        if (m[i].key_escaped)
            return false;
        switch (event_key_role(m[i].key, m[i].key_len)) {
        case EVENT_KEY_OTHER:
            break;
        case EVENT_KEY_PARAMS:
            if (m[i].kind != JSON_OBJECT)
                return false;
            params_object = true;
            break;
        default:
            return false;
        }
    }
    return !params_read || params_object;
}

/* A rewrite buffer larger than this is freed after use: one huge event
 * does not keep its size for the plugin's life. */
#define REWRITE_KEEP (64u << 10)

/* Replaces e's payload with the JSON of the table at t on S's stack (z:
 * its lazy state, its userdata at zi; or NULL), written in b (empty;
 * the caller's to reset);
 * ident, nident: e's identity members if known, stamped: e's text is the
 * daemon's stamp (struct call). */
static struct envelope *reencode(lua_State *S, int t, struct lua_json_lazy *z, int zi, struct envelope *e,
                                 const struct json_span *ident, int nident, bool stamped, struct buf *b,
                                 char *err, size_t errlen)
{
    /* raw access only: this runs outside the budget, so no metamethod of
     * the plugin's may run here; and outside any protected call, so
     * nothing may allocate from the state ("eventId" is kept alive by
     * lua_event_open, the write-back allocates nothing) */
    uint64_t id;
    /* the text's eventId member: the first, when read_event found it
     * there (first_known; a lazy table's keys are unique) */
    const int eid = !z ? -1 : z->first_known ? 0 : lua_json_lazy_find(z, "eventId", 7);
    int mi = eid;
    /* the eventId is the lazy text's first member, untouched (an id past
     * 2^63 would have been set by read), in digits: it stays in its place,
     * copied by the encoder as buf_json_u64 would write it (the table has
     * no key "eventId" but through the text) */
    bool in_place = mi == 0 && !(z->loaded & 1) &&
                    (z->first_known ||
                     json_digits_only(lua_json_lazy_text(z) + z->span[0].val, z->span[0].val_len));
    if (in_place && z->first_known) {
        id = z->first;                        /* read_event's, which read it (<= INT64_MAX) */
    } else if (in_place) {
        const struct json_span *sp = &z->span[0];
        if (json_to_u64(lua_json_lazy_text(z) + sp->val, sp->val_len, &id) < 0 || id > INT64_MAX) {
            snprintf(err, errlen, "the returned event has no integer eventId");
            return NULL;
        }
    } else {
        lua_pushliteral(S, "eventId");
        int vt = lua_rawget(S, t);
        if (vt != LUA_TNIL)
            mi = -1;
        if (mi >= 0 && !(z->loaded >> mi & 1)) {
            /* a lazy table nobody read the eventId of (the event as it
             * came, or an object member returned as the event): read from
             * its text, as a decode would have made it (an integer when it
             * fits in 64 signed bits) */
            int64_t v;
            const struct json_span *sp = &z->span[mi];
            if (json_to_i64(lua_json_lazy_text(z) + sp->val, sp->val_len, &v) < 0) {
                lua_pop(S, 1);
                snprintf(err, errlen, "the returned event has no integer eventId");
                return NULL;
            }
            id = (uint64_t)v;
        } else if (vt != LUA_TNUMBER || !lua_isinteger(S, -1)) {
            lua_pop(S, 1);
            snprintf(err, errlen, "the returned event has no integer eventId");
            return NULL;
        } else {
            id = (uint64_t)lua_tointeger(S, -1);
        }
        lua_pop(S, 1);
    }
    /* one buffer: the eventId (unless it stays in place), then the rest
     * encoded right after it, its opening brace turned into the comma
     * between them. Room for what comes back, usually about what went
     * in: grown a few bytes at a time it cost more reallocs than the
     * encode itself */
    if (buf_reserve(b, e->len + 64) < 0 ||
        (!in_place && (buf_puts(b, "{\"eventId\":") < 0 || buf_json_u64(b, id) < 0))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* the encoder notes the top-level members as it writes them, so the
     * text it wrote (valid by construction) is not scanned again */
    struct json_member m[EVENT_MEMBERS_MAX];
    int ours = in_place ? 0 : 1;                     /* the eventId member written here */
    if (!in_place)
        m[0] = (struct json_member){.key_len = 7, .val_len = b->len - 11, .kind = JSON_NUMBER,
                                    .is_uint = true};
    size_t at = b->len;
    /* the rest by the encoder, which leaves the table's (or its text's)
     * eventId out where it was written here, and the table as it is (a
     * plugin that keeps its event still reads its eventId) */
    struct lua_json_copied copied;
    int rc = lua_json_encode_members(S, t, z, zi, !in_place, b, m + ours, EVENT_MEMBERS_MAX - ours,
                                     &copied, err, errlen);
    if (rc < 0 || b->len - at < 2 || b->p[at] != '{') {
        if (rc >= 0)
            snprintf(err, errlen, "the returned event is not an object");
        return NULL;
    }
    if (!in_place) {
        if (b->len - at == 2) {                       /* {} */
            b->p[at] = '}';
            b->p[at + 1] = '\0';
            b->len = at + 1;
        } else {
            b->p[at] = ',';
        }
        m[0].key = b->p + 2;                          /* b may have moved while it grew */
        m[0].val = b->p + 11;
    }
    /* DESIGN 5.4: what a strategy returns is held to what an app may send,
     * and the identity the daemon stamped is not the strategy's to change */
    const char *why = NULL;
    uint64_t skip = !in_place && eid >= 0 ? UINT64_C(1) << eid : 0;   /* the encoder's skip_mask */
    if (!restamp_needless(z, skip, stamped, e, m, rc + ours, ours)) {
        if (copied.n)                                /* the copied members' notes, now needed */
            lua_json_copied_members(z, &copied, b, m + ours, EVENT_MEMBERS_MAX - ours);
        if (event_restamp_members(e->data, e->len, ident, nident, m, rc + ours, b, &why) < 0) {
            snprintf(err, errlen, "the returned event is invalid: %s", why);
            return NULL;
        }
    }
    struct envelope *n = envelope_rewrite(e, b->p, b->len);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->ev.id = id;
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
    /* out of memory anywhere: the event goes on as it came, not cut short */
    int rc = buf_append(&b, e->data, end - 1);
    rc |= buf_puts(&b, end > 2 ? ",\"strategyError\":{\"plugin\":" : "\"strategyError\":{\"plugin\":");
    rc |= buf_json_cstr(&b, p->id);
    rc |= buf_puts(&b, ",\"reason\":");
    rc |= buf_json_cstr(&b, reason);
    rc |= buf_puts(&b, "}}");
    struct envelope *n = rc ? NULL : envelope_rewrite(e, b.p, b.len);
    buf_free(&b);
    return n ? n : e;
}

static void finish_command(struct plugin *p, struct envelope *req, int code, const char *msg,
                           const char *data, size_t data_len)
{
    struct buf b = BUF_INIT;
    struct envelope *r = NULL;
    if (cmd_result_write(&b, req->cmd.req_id, code, msg, data, data_len) == 0)
        r = envelope_new(ENV_CMD_EXEC_RESULT, b.p, b.len);
    buf_free(&b);
    if (!r)
        r = envelope_new(ENV_CMD_EXEC_RESULT, NULL, 0);   /* the core answers -6 */
    if (!r)
        return;
    r->cmd.code = code;
    r->cmd.session = req->cmd.session;
    r->cmd.origin = req->cmd.origin;
    r->cmd.req_id = req->cmd.req_id;
    r->cmd.conn_id = req->cmd.conn_id;
    r->remote_id = req->remote_id;
    memcpy(r->cmd.action, req->cmd.action, sizeof r->cmd.action);
    home_to_core(p->home, r);
}

/* After this plugin's step: the next strategy, or back to the core. */
static void pass_on(struct plugin *p, struct envelope *e)
{
    e->ev.chain_pos++;
    if (e->ev.chain_pos < e->ev.chain_len) {
        plugin_post(env_chain_at(e, e->ev.chain_pos), e);
        return;
    }
    home_chain_done(p->home, e);
}

static void start_strategy(struct plugin *p, struct envelope *e);

void plugin_strategy_done(struct plugin *p, struct envelope *e)
{
    pass_on(p, e);
}

void plugin_strategy_failed(struct plugin *p, struct envelope *e, const char *reason)
{
    pass_on(p, with_strategy_error(p, e, reason));
}

void plugin_command_done(struct plugin *p, struct envelope *req, int code, const char *msg,
                         const char *data, size_t data_len)
{
    finish_command(p, req, code, msg, data, data_len);
}

/* Events held behind a waiting strategy go on, in order. */
static void release_held(struct plugin *p)
{
    while (p->held.head && !p->strategy_parked) {
        struct envelope *e = p->held.head;
        p->held.head = e->next;
        if (!p->held.head)
            p->held.tail = NULL;
        e->next = NULL;
        start_strategy(p, e);
    }
}

/* A strategy call returned (rc LUA_OK, nres values on top of co's stack)
 * or failed (err): its event goes on, as the result says. */
static void finish_strategy(struct plugin *p, struct call *c, int rc, int nres, const char *err)
{
    lua_State *co = c->co;
    char why[512];
    struct envelope *e = c->e;
    p->strategy_parked = false;
    if (rc != LUA_OK) {
        count_failure(p, "on_event", err);
        pass_on(p, with_strategy_error(p, e, err));
    } else if (nres >= 1 && lua_isboolean(co, -nres) && !lua_toboolean(co, -nres)) {
        p->consecutive_errors = 0;
        STAT_INC(core_events_dropped_by_strategy);
        home_chain_drop(p->home, e);
    } else if (nres >= 1 && lua_istable(co, -nres)) {
        lua_settop(co, lua_gettop(co) - nres + 1);
        struct lua_json_lazy *z = lua_json_lazy_at(co, -1);   /* its userdata (or nil) on top */
        int t = lua_gettop(co) - 1;
        if (lua_event_as_text(co, t, z, e->data, e->len)) {
            /* its own event, as it came (what it read, unchanged):
             * the bytes go on as they are, as for nil */
            p->consecutive_errors = 0;
            pass_on(p, e);
            return;
        }
        struct envelope *n = reencode(co, t, z, t + 1, e, c->ident, c->nident, c->stamped, &p->rewrite,
                                      why, sizeof why);
        if (p->rewrite.cap > REWRITE_KEEP)
            buf_free(&p->rewrite);
        else
            buf_reset(&p->rewrite);
        if (!n) {
            count_failure(p, "on_event", why);
            pass_on(p, with_strategy_error(p, e, why));
        } else {
            p->consecutive_errors = 0;
            pass_on(p, n);
        }
    } else if (nres >= 1 && !lua_isnil(co, -nres)) {
        /* driver.strategy1 leaves this check to us (driver.lua) */
        snprintf(why, sizeof why, "on_event handler returned a %s (want the event, nil or false)",
                 luaL_typename(co, -nres));
        count_failure(p, "on_event", why);
        pass_on(p, with_strategy_error(p, e, why));
    } else {
        p->consecutive_errors = 0;
        /* the driver's second result: a handler edited the event and
         * returned nil, so its edits go nowhere (DESIGN 5.4's nil) */
        if (nres >= 2 && lua_toboolean(co, -nres + 1) &&
            atomic_fetch_add(&p->ignored_edits, 1) == 0)
            log_warn("plugin %s: an on_event handler changed its event (eventId %llu) and returned "
                     "nil, which forwards the event as it came: return ev to keep the changes "
                     "(warned once; counted as ignored_edits in its status)",
                     p->id, (unsigned long long)e->ev.id);
        pass_on(p, e);                     /* nil: the original bytes go on */
    }
}

/* The call returned (rc LUA_OK, nres values on its stack) or failed (err). */
static void finish_call(struct plugin *p, struct call *c, int rc, int nres, const char *err)
{
    lua_State *co = c->co;
    char why[512];
    switch (c->kind) {
    case CALL_STRATEGY:
        if (c->e)                              /* (strategy1 may have finished it) */
            finish_strategy(p, c, rc, nres, err);
        break;
    case CALL_COMMAND: {
        struct envelope *e = c->e;
        if (rc != LUA_OK) {
            count_failure(p, e->cmd.action, err);
            snprintf(why, sizeof why, "handler error: %s", err);
            finish_command(p, e, CMD_HANDLER_ERROR, why, NULL, 0);
            envelope_free(e);
            break;
        }
        lua_settop(co, lua_gettop(co) - nres + 3);  /* exactly code, msg, data */
        struct buf data = BUF_INIT;
        const char *problem = NULL;
        if (!lua_isinteger(co, -3)) {
            snprintf(why, sizeof why, "command handler must return an integer code, not a %s",
                     luaL_typename(co, -3));
            problem = why;
        } else if ((lua_tointeger(co, -3) < 0 && lua_tointeger(co, -3) != CMD_BAD_REQUEST) ||
                   lua_tointeger(co, -3) > INT32_MAX) {
            /* -4 is the one framework code a handler may give: it alone
             * knows when its arguments are wrong */
            snprintf(why, sizeof why, "command handler returned code %lld (negative codes are the "
                     "framework's; a handler may answer -4 for bad arguments)",
                     (long long)lua_tointeger(co, -3));
            problem = why;
        } else if (!lua_isnil(co, -1) && lua_json_encode(co, -1, &data, why, sizeof why) < 0) {
            problem = why;
        }
        if (problem) {
            count_failure(p, e->cmd.action, problem);
            char fmsg[600];
            snprintf(fmsg, sizeof fmsg, "handler error: %s", problem);
            finish_command(p, e, CMD_HANDLER_ERROR, fmsg, NULL, 0);
        } else {
            p->consecutive_errors = 0;
            finish_command(p, e, (int)lua_tointeger(co, -3),
                           lua_type(co, -2) == LUA_TSTRING ? lua_tostring(co, -2) : NULL,
                           data.p, data.len);
        }
        buf_free(&data);
        envelope_free(e);
        break;
    }
    case CALL_MESSAGE:
    case CALL_TIMER:
        if (rc != LUA_OK)
            count_failure(p, c->kind == CALL_MESSAGE ? "on_message" : "timer", err);
        else
            p->consecutive_errors = 0;
        envelope_free(c->e);
        break;
    }
    enum call_kind kind = c->kind;
    call_free(p, c);               /* may run __close: plugin code, so within its limits */
    if (kind == CALL_STRATEGY)
        release_held(p);
}

/* Runs (or resumes) a call until it returns, fails or parks. */
static void run_call(struct plugin *p, struct call *c, int nargs)
{
    char err[512];
    int nres = 0;
    p->running = c;
    int rc = sandbox_resume(&p->sb, c->co, nargs, &nres, err, sizeof err);
    p->running = NULL;
    if (rc == LUA_YIELD) {
        if (c->op == 0) {
            /* a plain coroutine.yield at the top of a handler: not ours */
            finish_call(p, c, -1, 0, "attempt to yield from a handler (use polaris.sleep to wait)");
            return;
        }
        lua_pop(c->co, nres);
        c->next = p->parked;
        p->parked = c;
        if (c->kind == CALL_STRATEGY)
            p->strategy_parked = true;
        return;
    }
    finish_call(p, c, rc, nres, err);
}

/* The plugin whose state L is. */
static struct plugin *plugin_of(lua_State *L)
{
    return (struct plugin *)((char *)sandbox_of(L) - offsetof(struct plugin, sb));
}

/* The strategy driver's read(id): the running call's event as a table with
 * its eventId (the envelope's: the argument is for driver_spec's stand-ins),
 * decoded from the envelope's own bytes (no copy of them made a Lua
 * string first). It also notes where the event's identity members are,
 * so the restamp of a returned table need not look for them.
 * Only the driver holds it; a plugin cannot reach it. */
static int push_event(lua_State *L, int mt)
{
    struct plugin *p = plugin_of(L);
    struct call *c = p->running;
    if (!c || c->kind != CALL_STRATEGY)
        return luaL_error(L, "no event to read");
    struct envelope *e = c->e;
    const char *err;
    struct json_member m[EVENT_MEMBERS_MAX];
    struct lua_json_lazy *z;
    int n = lua_event_push(L, e->data, e->len, &e->ev.index, m, EVENT_MEMBERS_MAX, &err, mt, &z);
    if (n < 0)
        return luaL_error(L, "invalid JSON: %s", err);
    /* where the identity members are (the restamp of a returned table need
     * not look for them) and the member a decode takes the eventId from:
     * as the ingress's stamp noted them (an indexed table's spans), or one
     * pass over the members (the last eventId, keys decoded; none past 64
     * members, not all of which are noted) */
    const struct json_index *ix = &e->ev.index;
    const char *id_val = NULL;
    size_t id_len = 0;
    bool id_digits = false;
    int k;
    if (z && ix->ident_n && ix->ident_n <= CALL_IDENT_MAX && ix->ident_at + ix->ident_n <= n &&
        z->span[0].key_len == 7 && memcmp(e->data + z->span[0].key, "eventId", 7) == 0) {
        k = ix->ident_n;
        memcpy(c->ident, &z->span[ix->ident_at], (size_t)k * sizeof *c->ident);
        id_val = e->data + z->span[0].val;
        id_len = z->span[0].val_len;
        id_digits = z->uint_mask & 1;
    } else {
        if (z)                                 /* indexed, its identity not noted (emitted) */
            for (int i = 0; i < n; i++) {
                const struct json_span *sp = &z->span[i];
                const char *v = e->data + sp->val;
                m[i] = (struct json_member){e->data + sp->key, sp->key_len, v, sp->val_len,
                                            json_kind_of(v[0]), false, z->uint_mask >> i & 1};
            }
        const struct json_member *idm;
        k = event_identity_spans(e->data, m, n, c->ident, CALL_IDENT_MAX, &idm);
        if (idm) {
            id_val = idm->val;
            id_len = idm->val_len;
            id_digits = idm->is_uint;
        }
    }
    c->nident = (int8_t)(k >= 0 && k <= CALL_IDENT_MAX ? k : -1);
    c->stamped = z != NULL;
    /* its eventId as the daemon read it (an id past 2^63 wraps, as
     * lua_pushinteger does any), set only where the text's would read as
     * something else: the text's, read lazily or decoded, is that integer
     * already */
    uint64_t text_id;
    bool same_id = z && ix->id_first && id_val == e->data + z->span[0].val;   /* the index says so */
    if (e->ev.id > INT64_MAX ||
        (!same_id && (!id_digits || json_to_u64(id_val, id_len, &text_id) < 0 || text_id != e->ev.id))) {
        lua_pushinteger(L, (lua_Integer)e->ev.id);
        lua_event_set(L, -2, "eventId");
    } else if (same_id) {
        z->first = e->ev.id;                   /* for the write-back, which need not read it again */
        z->first_known = true;
    }
    return 1;
}

static int read_event(lua_State *L)
{
    return push_event(L, lua_upvalueindex(1));
}

int plugin_reader_ref(lua_State *L)
{
    lua_event_push_metatable(L);               /* at hand: not a registry lookup an event */
    lua_pushcclosure(L, read_event, 1);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Whether a handler's nil is checked for lost edits (driver.lua): the
 * first NIL_CHECK_FIRST, then one in NIL_CHECK_EVERY, counted over both
 * drivers. A check decodes the event again: the warning is for the
 * plugin's author, not a cost of every event. */
#define NIL_CHECK_FIRST 100
#define NIL_CHECK_EVERY 64
static bool nil_sampled(struct plugin *p)
{
    p->nil_checks++;
    return p->nil_checks <= NIL_CHECK_FIRST || p->nil_checks % NIL_CHECK_EVERY == 0;
}

static int l_nil_sampled(lua_State *L)
{
    lua_pushboolean(L, nil_sampled(plugin_of(L)));
    return 1;
}

void plugin_push_nil_sampler(lua_State *L)
{
    lua_pushcfunction(L, l_nil_sampled);
}

/* driver.lua's strategy, for one handler (most events' case), in C: the
 * coroutine's body, called with the reader, the event's id and the
 * handler. It reads the event itself (push_event, not a call through the
 * VM) and gives back what the handler returned: false, a table and
 * anything else alike (finish_call refuses what is not an event), and for
 * nil, on the events nil_sampled picks, what driver.edited (its first
 * upvalue) makes of it. Written in Lua it cost a frame and a call an
 * event more (docs/performance.md). */
static int strategy1_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;                              /* a handler that waited, resumed */
    if (ctx == 0 && lua_isnil(L, -1)) {
        if (!nil_sampled(plugin_of(L)))
            return 1;
        lua_pushvalue(L, lua_upvalueindex(1)); /* driver.edited(read, id, ev) */
        lua_pushvalue(L, 1);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 4);
        lua_callk(L, 3, 2, 1, strategy1_done);
        return 2;
    }
    return ctx == 0 ? 1 : 2;
}

/* The next envelope of the batch the job runs, or NULL. */
static struct envelope *batch_take(struct plugin *p)
{
    struct envelope *e = p->batch;
    if (e) {
        p->batch = e->next;
        e->next = NULL;
        p->batch_taken++;
    }
    return e;
}

/* Whether the batch's next envelope is an event this driver can go on
 * with in the same resume, as start_strategy would have started it: the
 * plugin Active, nothing held before it, and one handler of the plugin's
 * for it (its reference in *ref). */
static bool strategy1_next(struct plugin *p, int *ref)
{
    struct envelope *e = p->batch;
    if (!e || (e->type != ENV_IPC_EVENT && e->type != ENV_MONITOR_EVENT) || p->held.head ||
        atomic_load(&p->state) != PLUGIN_ACTIVE)
        return false;
    int matching = 0;
    for (size_t i = 0; i < p->nhandlers; i++)
        if (p->handlers[i].any || p->handlers[i].event_id == e->ev.id) {
            matching++;
            *ref = p->handlers[i].ref;
        }
    return matching == 1;
}

/* The coroutine's body for an event one handler takes. When the handler
 * returns without having waited, the event is finished here (the
 * write-back, on to the core) and the batch's next event, if it is one
 * this driver takes too, runs in the same resume with its own budget: a
 * resume, its call's set-up and its return cost ~400 instructions an
 * event (docs/performance.md, session 16). A wait, an error or anything
 * else ends the resume as before, and the rest of the batch goes through
 * start_strategy (held behind a parked call, in order). */
static int strategy1(lua_State *L)
{
    struct plugin *p = plugin_of(L);
    for (;;) {
        lua_settop(L, 3);                      /* 1 reader, 2 id, 3 handler */
        push_event(L, lua_upvalueindex(2));    /* 4: the event */
        lua_pushvalue(L, 3);
        lua_pushvalue(L, 4);
        lua_callk(L, 1, 1, 0, strategy1_done);
        int nres = strategy1_done(L, LUA_OK, 0);
        int ref;
        if (!strategy1_next(p, &ref))
            return nres;                       /* finish_call finishes it */
        struct call *c = p->running;
        sandbox_call_end(&p->sb);
        finish_strategy(p, c, LUA_OK, nres, NULL);
        /* finishing it may have put the plugin in Error (count_failure);
         * nothing else strategy1_next looked at changes there */
        if (atomic_load(&p->state) != PLUGIN_ACTIVE) {
            c->e = NULL;                       /* finished: nothing for finish_call */
            return 0;
        }
        struct envelope *next = batch_take(p);
        atomic_fetch_add(&p->events, 1);
        c->e = next;
        c->nident = -1;
        c->stamped = false;
        lua_settop(L, 1);
        lua_pushinteger(L, (lua_Integer)next->ev.id);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        sandbox_call_next(&p->sb, L);
    }
}

int plugin_strategy1_ref(lua_State *L, int driver)
{
    lua_getfield(L, driver, "edited");
    lua_event_push_metatable(L);
    lua_pushcclosure(L, strategy1, 2);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void start_strategy(struct plugin *p, struct envelope *e)
{
    if (atomic_load(&p->state) != PLUGIN_ACTIVE || !p->sb.L) {
        pass_on(p, e);                         /* in Error: events pass untouched */
        return;
    }
    if (p->strategy_parked) {                  /* keep this plugin's order */
        envlist_push(&p->held, e);
        return;
    }
    atomic_fetch_add(&p->events, 1);
    size_t lim = unbudgeted_begin(p);
    struct call *c = call_new(p, CALL_STRATEGY, e);
    if (!c) {
        unbudgeted_end(p, lim);
        pass_on(p, with_strategy_error(p, e, "out of memory"));
        return;
    }
    /* every handler is an argument: the plugin decides how many, and a
     * fresh coroutine has room for LUA_MINSTACK values only */
    int matching = 0;
    for (size_t i = 0; i < p->nhandlers; i++)
        if (p->handlers[i].any || p->handlers[i].event_id == e->ev.id)
            matching++;
    if (!lua_checkstack(c->co, matching + 3)) {
        unbudgeted_end(p, lim);
        finish_call(p, c, -1, 0, "too many handlers for one event (no Lua stack for them)");
        return;
    }
    c->nident = -1;
    c->stamped = false;
    /* the drivers are kept by reference: finding them by name cost a
     * string lookup an event */
    lua_rawgeti(c->co, LUA_REGISTRYINDEX, matching == 1 ? p->strategy1_ref : p->strategy_ref);
    lua_rawgeti(c->co, LUA_REGISTRYINDEX, p->reader_ref);
    lua_pushinteger(c->co, (lua_Integer)e->ev.id);
    int n = 2;
    for (size_t i = 0; i < p->nhandlers; i++) {
        if (!p->handlers[i].any && p->handlers[i].event_id != e->ev.id)
            continue;
        lua_rawgeti(c->co, LUA_REGISTRYINDEX, p->handlers[i].ref);
        n++;
    }
    unbudgeted_end(p, lim);
    run_call(p, c, n);
}

static void start_command(struct plugin *p, struct envelope *e)
{
    atomic_fetch_add(&p->commands, 1);
    int ref = LUA_NOREF;
    for (size_t i = 0; i < p->ncmds; i++)
        if (strcmp(p->cmds[i].name, e->cmd.action) == 0)
            ref = p->cmds[i].ref;
    if (atomic_load(&p->state) != PLUGIN_ACTIVE || !p->sb.L) {
        finish_command(p, e, CMD_HANDLER_ERROR, "the plugin offering this action is in Error", NULL, 0);
        envelope_free(e);
        return;
    }
    if (ref == LUA_NOREF) {
        finish_command(p, e, CMD_UNKNOWN_ACTION, NULL, NULL, 0);
        envelope_free(e);
        return;
    }
    size_t lim = unbudgeted_begin(p);
    struct call *c = call_new(p, CALL_COMMAND, e);
    if (!c) {
        unbudgeted_end(p, lim);
        finish_command(p, e, CMD_HANDLER_ERROR, "out of memory", NULL, 0);
        envelope_free(e);
        return;
    }
    lua_State *co = c->co;
    drivers_push(p, co, "command");
    lua_pushlstring(co, e->data, e->len);
    lua_rawgeti(co, LUA_REGISTRYINDEX, ref);
    lua_createtable(co, 0, 6);
    lua_pushstring(co, e->cmd.action);
    lua_setfield(co, -2, "action");
    lua_pushinteger(co, e->cmd.req_id);            /* the CommandRequest's reqId and target */
    lua_setfield(co, -2, "reqId");
    lua_pushliteral(co, "host");
    lua_setfield(co, -2, "target");
    lua_pushstring(co, e->cmd.origin == ORIGIN_GUEST ? "guest" : "app");
    lua_setfield(co, -2, "origin");
    if (e->cmd.origin == ORIGIN_APP) {
        lua_pushinteger(co, e->pid);
        lua_setfield(co, -2, "pid");
        lua_pushinteger(co, e->uid);
        lua_setfield(co, -2, "uid");
    }
    unbudgeted_end(p, lim);
    run_call(p, c, 3);
}

static void start_message(struct plugin *p, struct envelope *e)
{
    if (atomic_load(&p->state) != PLUGIN_ACTIVE || !p->sb.L || p->callbacks_ref == LUA_NOREF) {
        envelope_free(e);
        return;
    }
    size_t lim = unbudgeted_begin(p);
    lua_State *L = p->sb.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->callbacks_ref);
    bool has = lua_rawgetfield_fn(L, "on_message");
    if (!has) {
        unbudgeted_end(p, lim);
        envelope_free(e);
        return;
    }
    atomic_fetch_add(&p->messages, 1);
    struct call *c = call_new(p, CALL_MESSAGE, e);
    if (!c) {
        lua_pop(L, 1);
        unbudgeted_end(p, lim);
        envelope_free(e);
        return;
    }
    lua_State *co = c->co;
    drivers_push(p, co, "message");
    lua_pushlstring(co, e->data, e->len);
    lua_xmove(L, co, 1);                       /* on_message */
    lua_pushstring(co, e->from);
    lua_pushstring(co, e->topic);
    unbudgeted_end(p, lim);
    run_call(p, c, 4);
}

static void start_timer(struct plugin *p, struct envelope *e)
{
    if (atomic_load(&p->state) != PLUGIN_ACTIVE || !p->sb.L) {
        envelope_free(e);
        return;
    }
    size_t lim = unbudgeted_begin(p);
    struct call *c = call_new(p, CALL_TIMER, e);
    if (!c) {
        unbudgeted_end(p, lim);
        envelope_free(e);
        return;
    }
    lua_rawgeti(c->co, LUA_REGISTRYINDEX, e->wait.fn_ref);
    if (e->wait.kind == WAIT_TIMER) {               /* one-shot: its function goes now */
        luaL_unref(p->sb.L, LUA_REGISTRYINDEX, e->wait.fn_ref);
        plugin_timer_end(p, p->sb.L, e->wait.op);
    }
    unbudgeted_end(p, lim);
    run_call(p, c, 0);
}

/* The live timer ids of a plugin: a table in its state's registry. */
void plugin_timers_push(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, "polaris.timers") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "polaris.timers");
    }
}

bool plugin_timer_end(struct plugin *p, lua_State *L, lua_Integer id)
{
    plugin_timers_push(L);
    bool live = lua_rawgeti(L, -1, id) != LUA_TNIL;
    lua_pop(L, 1);
    if (live) {
        lua_pushnil(L);
        lua_rawseti(L, -2, id);
        p->ntimers--;
    }
    lua_pop(L, 1);
    return live;
}

static void resume_call(struct plugin *p, struct envelope *e)
{
    struct call **pp = &p->parked;
    while (*pp && (*pp)->op != e->wait.op)
        pp = &(*pp)->next;
    struct call *c = *pp;
    if (!c) {
        log_error("plugin %s: no call waits on op %u", p->id, e->wait.op);
        envelope_free(e);
        return;
    }
    *pp = c->next;
    c->next = NULL;
    c->op = 0;
    size_t lim = unbudgeted_begin(p);
    lua_pushlstring(c->co, e->data, e->len);
    unbudgeted_end(p, lim);
    envelope_free(e);
    run_call(p, c, 1);
}

static void process(struct plugin *p, struct envelope *e)
{
    switch (e->type) {
    case ENV_IPC_EVENT:
    case ENV_MONITOR_EVENT:
        start_strategy(p, e);
        return;
    case ENV_GUEST_CMD_REQ:
    case ENV_APP_CMD_REQ:
        start_command(p, e);
        return;
    case ENV_PLUGIN_MSG:
        atomic_fetch_sub(&p->nmsgs, 1);
        start_message(p, e);
        return;
    case ENV_TIMER_FIRE:
        start_timer(p, e);
        return;
    case ENV_WAIT_DONE:
        resume_call(p, e);
        return;
    case ENV_HOST_RPC:
        if (p->remote_rpc) {
            p->remote_rpc(p, e);
            return;
        }
        /* fall through */
    default:
        log_error("plugin %s: unexpected envelope type %u", p->id, e->type);
        envelope_free(e);
    }
}

/* Takes up to MAILBOX_BATCH envelopes: commands first; events only for
 * the plugin's own job (the command lane's job leaves them). Under mu. */
static struct envelope *take_batch(struct plugin *p, bool lane)
{
    struct envlist *l = p->urgent.head ? &p->urgent : lane ? NULL : &p->mailbox;
    if (!l || !l->head)
        return NULL;
    struct envelope *e = l->head, *last = e;
    for (int n = 1; last->next && n < MAILBOX_BATCH; n++)
        last = last->next;
    l->head = last->next;
    if (!l->head)
        l->tail = NULL;
    last->next = NULL;
    return e;
}

/* Runs a plugin's mailbox: j is its job (events and commands) or its
 * command lane's job (commands only). */
static void run_job(struct plugin *p, bool lane)
{
    struct plugin_home *home = p->home;    /* p may be freed before the end */
    bool *mine = lane ? &p->cmd_scheduled : &p->scheduled;
    pthread_mutex_lock(&p->mu);
    if (p->job_running) {
        /* the other job has the plugin: it takes our work or schedules us */
        *mine = false;
        pthread_mutex_unlock(&p->mu);
        plugin_unref(p);
        return;
    }
    p->job_running = true;
    pthread_mutex_unlock(&p->mu);
    home_job_begin(p);
    for (;;) {
        /* at most MAILBOX_BATCH at a time: results leave in steady batches */
        pthread_mutex_lock(&p->mu);
        struct envelope *e = take_batch(p, lane);
        bool resched_events = false, resched_cmds = false;
        if (!e) {
            *mine = false;
            p->job_running = false;
            /* work the other job left while this one ran */
            if (!lane && p->urgent.head && !p->cmd_scheduled)
                resched_cmds = p->cmd_scheduled = true;
            if (lane && p->mailbox.head && !p->scheduled)
                resched_events = p->scheduled = true;
        }
        pthread_mutex_unlock(&p->mu);
        if (!e) {
            home_job_end(home);
            if (resched_cmds) {
                plugin_ref(p);
                home_schedule_urgent(home, &p->cmd_job);
            }
            if (resched_events) {
                plugin_ref(p);
                home_schedule(home, &p->job);
            }
            plugin_unref(p);                   /* the job's ref; may free p */
            return;
        }
        /* this plugin's CPU time, read per batch (a system call) rather
         * than per call: its handlers and the decoding and encoding of
         * its events */
        uint64_t cpu0 = thread_cpu_ns();
        p->batch = e;
        p->batch_taken = 0;
        while ((e = batch_take(p)))
            process(p, e);
        p->sb.cpu_ns_total += thread_cpu_ns() - cpu0;
        /* the mailbox's refs for the batch, in one go: the job's own ref
         * holds p, and refs is the core's line (struct plugin) */
        plugin_unref_n(p, p->batch_taken);
        home_job_flush(home);               /* this batch's events go on now */
        plugin_refresh_status(p, false);
        if (p->sb.L)
            lua_gc(p->sb.L, LUA_GCSTEP, 0);
    }
}

void plugin_run_job(struct job *j)
{
    run_job((struct plugin *)j, false);
}

void plugin_run_cmd_job(struct job *j)
{
    run_job((struct plugin *)((char *)j - offsetof(struct plugin, cmd_job)), true);
}
