/* plugin_host_home.c - the plugin runtime's port (runtime/port.h) as a
 * plugin host implements it: one plugin, and a channel to the daemon in
 * place of the registry and its queues. Events, commands,
 * messages and wait results arrive as HK_ENV frames and go into the
 * plugin's mailbox; what the runtime hands its home (a strategy's
 * verdict, a command's answer, a wait request) leaves as a frame. Calls the
 * daemon must make for the plugin (polaris.fs, polaris.sys, the shared
 * store, messages, emit) are RPCs: the Lua function is replaced by a proxy
 * that packs its arguments, blocks on the reply, and returns what the
 * daemon's own binding returned (or raises its error). Frames that arrive
 * while an RPC waits are handled as usual: only the reply ends the wait.
 *
 * I/O is blocking on purpose: the host has one descriptor and nothing else
 * to do, and the daemon side never blocks on it.
 *
 * Uses: plugin_host_proto, lua_pack, plugin (mailbox, runtime). */
#include "isolate/plugin_host_home.h"
#include "wire/plugin_host_proto.h"
#include "lib/log.h"
#include "runtime/lua_pack.h"
#include "runtime/plugin.h"
#include "runtime/port.h"
#include "lib/rxbuf.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct plugin_home {
    int fd;
    struct plugin_host_init init;
    struct buf tx;
    struct rxbuf rx;
    struct job *jobs[2];         /* the plugin's jobs (mailbox, command lane), when scheduled */
    int njobs;
    bool stop;
    uint32_t next_call;
    struct plugin_host_stats sent;
    struct plugin *plugin;
    uint32_t *timers;            /* live timer ids: a host with timers is never idle */
    size_t ntimers, timers_cap;
};

static struct plugin_home g;

static void log_sink(enum log_level l, const char *msg, size_t len);

void plugin_host_home_init(int fd, const struct plugin_host_init *init)
{
    g.fd = fd;
    g.init = *init;
    log_set_sink(log_sink);
}

struct plugin_home *plugin_host_home(void)
{
    return &g;
}

/* ---- the channel ---- */

void plugin_host_flush(void)
{
    size_t off = 0;
    while (off < g.tx.len) {
        ssize_t n = write(g.fd, g.tx.p + off, g.tx.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(1);                          /* the daemon is gone: so are we */
        off += (size_t)n;
    }
    buf_reset(&g.tx);
}

void plugin_host_send(uint8_t kind, uint32_t id, const void *body, size_t len)
{
    if (plugin_host_frame_simple(&g.tx, kind, id, body, len) < 0)
        _exit(1);                              /* no memory for a frame: restart clean */
    plugin_host_flush();
}

char *plugin_host_read_frame(uint8_t *kind, uint32_t *id, const char **body, size_t *len)
{
    for (;;) {
        struct plugin_host_frame f;
        long n = plugin_host_frame_next((const char *)g.rx.buf + g.rx.start, rxbuf_pending(&g.rx), &f);
        if (n < 0)
            _exit(2);                          /* the daemon never sends that */
        if (n > 0) {
            char *copy = malloc((size_t)n);
            if (!copy)
                _exit(1);
            memcpy(copy, g.rx.buf + g.rx.start, (size_t)n);
            g.rx.start += (size_t)n;
            *kind = f.kind;
            *id = f.id;
            *body = copy + HOST_HDR;
            *len = f.len;
            return copy;
        }
        size_t avail;
        uint8_t *space = rxbuf_space(&g.rx, 65536, &avail);
        if (!space)
            _exit(1);
        ssize_t r = read(g.fd, space, avail);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return NULL;
        rxbuf_commit(&g.rx, (size_t)r);
    }
}

static void timer_add(uint32_t id)
{
    if (g.ntimers == g.timers_cap) {
        size_t cap = g.timers_cap ? g.timers_cap * 2 : 8;
        uint32_t *n = realloc(g.timers, cap * sizeof *n);
        if (!n)
            return;
        g.timers = n;
        g.timers_cap = cap;
    }
    g.timers[g.ntimers++] = id;
}

static void timer_del(uint32_t id)
{
    for (size_t i = 0; i < g.ntimers; i++)
        if (g.timers[i] == id) {
            g.timers[i] = g.timers[--g.ntimers];
            return;
        }
}

/* One frame from the daemon, outside an RPC wait or inside one. */
static void handle(struct plugin *p, uint8_t kind, uint32_t id, const char *body, size_t len)
{
    struct plugin_host_frame f = {kind, id, body, len};
    switch (kind) {
    case HK_ENV: {
        struct envelope *e = plugin_host_get_env(&f);
        if (!e)
            _exit(1);
        if (e->type == ENV_TIMER_FIRE && e->wait.kind == WAIT_TIMER)
            timer_del(e->wait.op);
        plugin_post(p, e);
        return;
    }
    case HK_STOP:
        g.stop = true;
        return;
    default:
        _exit(2);                              /* out of protocol: restart clean */
    }
}

/* ---- RPC: a call the daemon makes for the plugin ---- */

static int rpc(lua_State *L, const char *name, const char *args, size_t alen)
{
    uint32_t call = ++g.next_call;
    size_t at, nlen = strlen(name);
    if (plugin_host_frame_begin(&g.tx, HK_RPC, call, &at) < 0 || plugin_host_put_u8(&g.tx, (uint8_t)nlen) < 0 ||
        buf_append(&g.tx, name, nlen) < 0 || buf_append(&g.tx, args, alen) < 0 ||
        plugin_host_frame_end(&g.tx, at) < 0) {
        g.tx.len = at;
        return luaL_error(L, "polaris.%s: the arguments are too large to send", name);
    }
    plugin_host_flush();
    for (;;) {
        uint8_t kind;
        uint32_t id;
        const char *body;
        size_t len;
        char *frame = plugin_host_read_frame(&kind, &id, &body, &len);
        if (!frame)
            _exit(0);
        if (kind == HK_RPC_REPLY && id == call) {
            bool ok = len > 0 && body[0] == 1;
            lua_pushlstring(L, len ? body + 1 : "", len ? len - 1 : 0);
            free(frame);
            return ok ? 1 : -1;
        }
        handle(g.plugin, kind, id, body, len);
        free(frame);
    }
}

/* lua_pack of every argument, run under lua_pcall: packing settles a lazy
 * event table, which allocates and so may raise, and the bytes packed by
 * then are malloc's, to be freed either way. */
struct pack_call {
    struct buf *out;
    char *err;
    size_t errlen;
    int rc;
};

static int pack_args(lua_State *L)
{
    struct pack_call *pc = lua_touserdata(L, lua_upvalueindex(1));
    pc->rc = lua_pack(L, 1, lua_gettop(L), pc->out, pc->err, pc->errlen);
    return 0;
}

/* The proxy: polaris.<name>(...) run by the daemon. Upvalue 1 is the name. */
static int l_remote(lua_State *L)
{
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    struct buf args = BUF_INIT;
    char err[256];
    struct pack_call pc = {&args, err, sizeof err, -1};
    int nargs = lua_gettop(L);
    lua_pushlightuserdata(L, &pc);
    lua_pushcclosure(L, pack_args, 1);
    lua_insert(L, 1);
    if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
        buf_free(&args);
        return lua_error(L);
    }
    if (pc.rc < 0) {
        buf_free(&args);
        return luaL_error(L, "polaris.%s: %s", name, err);
    }
    int top = lua_gettop(L);
    int rc = rpc(L, name, args.p ? args.p : "", args.len);
    buf_free(&args);
    if (rc < 0) {
        /* the daemon's message, located here: there it had no plugin frame */
        sandbox_where(L);
        lua_insert(L, -2);
        lua_concat(L, 2);
        return lua_error(L);
    }
    size_t len;
    const char *packed = lua_tolstring(L, -1, &len);
    int n = lua_unpack(L, packed, len);
    lua_remove(L, top + 1);
    return n;
}

/* Replaces t[k] for every function in the table on top (prefix "fs." ...). */
static void proxy_table(lua_State *L, const char *prefix)
{
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            continue;
        lua_pushvalue(L, -1);
        lua_pushfstring(L, "%s%s", prefix, lua_tostring(L, -1));
        lua_pushcclosure(L, l_remote, 1);
        lua_rawset(L, t);
    }
}

static void proxy_field(lua_State *L, int t, const char *field, const char *name)
{
    lua_pushstring(L, name);
    lua_pushcclosure(L, l_remote, 1);
    lua_setfield(L, t, field);
}

void plugin_host_bind_proxies(struct plugin *p)
{
    lua_State *L = p->sb.L;
    g.plugin = p;
    lua_getglobal(L, "polaris");
    int pol = lua_gettop(L);
    static const char *const top[] = {"emit", "send", "broadcast", "actions"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        proxy_field(L, pol, top[i], top[i]);
    lua_getfield(L, pol, "shared");
    proxy_field(L, lua_gettop(L), "get", "shared.get");
    proxy_field(L, lua_gettop(L), "set", "shared.set");
    lua_pop(L, 1);
    lua_getfield(L, pol, "guest");
    proxy_field(L, lua_gettop(L), "status", "guest.status");
    lua_pop(L, 1);
    lua_getfield(L, pol, "fs");
    proxy_table(L, "fs.");
    lua_pop(L, 1);
    lua_getfield(L, pol, "sys");
    proxy_table(L, "sys.");
    lua_pop(L, 1);
    lua_getfield(L, pol, "daemon");
    lua_pushinteger(L, g.init.daemon_pid);
    lua_setfield(L, -2, "pid");
    lua_pop(L, 2);
}

/* ---- the registry API, for plugin.c and bind_polaris.c ---- */

void home_schedule(struct plugin_home *r, struct job *j)
{
    for (int i = 0; i < r->njobs; i++)
        if (r->jobs[i] == j)
            return;
    if (r->njobs < 2)
        r->jobs[r->njobs++] = j;
}

/* One plugin, one thread: the command lane goes first. */
void home_schedule_urgent(struct plugin_home *r, struct job *j)
{
    for (int i = 0; i < r->njobs; i++)
        if (r->jobs[i] == j)
            return;
    if (r->njobs < 2) {
        memmove(&r->jobs[1], &r->jobs[0], (size_t)r->njobs * sizeof r->jobs[0]);
        r->jobs[0] = j;
        r->njobs++;
    }
}

static void send_stats(struct plugin *p)
{
    struct plugin_host_stats s = {0};
    s.events = atomic_load(&p->events);
    s.commands = atomic_load(&p->commands);
    s.messages = atomic_load(&p->messages);
    s.errors = atomic_load(&p->errors);
    s.mem_used = p->sb.mem_used;
    s.cpu_ns = p->sb.cpu_ns_total;
    s.state = (uint8_t)atomic_load(&p->state);
    s.pinned = (uint32_t)g.ntimers;
    for (int i = 0; i < REFUSED_N; i++)
        s.refused += atomic_load(&p->refused[i]);
    for (struct call *c = p->parked; c; c = c->next)
        s.pinned++;
    s.ignored_edits = atomic_load(&p->ignored_edits);
    _Static_assert(sizeof s.status == PLUGIN_STATUS_MAX, "status() text fits the stats frame");
    pthread_mutex_lock(&p->mu);
    memcpy(s.last_error, p->last_error, sizeof s.last_error);
    memcpy(s.status, p->status_json, sizeof s.status);
    pthread_mutex_unlock(&p->mu);
    /* memory moves with every call; say so only when something else did,
     * or once it moved by 64 KiB */
    struct plugin_host_stats *o = &g.sent;
    bool same = s.events == o->events && s.commands == o->commands && s.messages == o->messages &&
                s.errors == o->errors && s.state == o->state && s.pinned == o->pinned &&
                s.refused == o->refused && s.ignored_edits == o->ignored_edits &&
                strcmp(s.last_error, o->last_error) == 0 && strcmp(s.status, o->status) == 0 &&
                (s.mem_used > o->mem_used ? s.mem_used - o->mem_used : o->mem_used - s.mem_used) < 65536;
    if (same)
        return;
    if (plugin_host_put_stats(&g.tx, &s) == 0)
        *o = s;
}

void home_job_begin(struct plugin *p)
{
    (void)p;
}

void home_job_flush(struct plugin_home *r)
{
    if (r->plugin)
        send_stats(r->plugin);
    plugin_host_flush();
}

void home_job_end(struct plugin_home *r)
{
    home_job_flush(r);
}

static void result(struct envelope *e, uint8_t verdict)
{
    size_t at;
    int rc = plugin_host_frame_begin(&g.tx, HK_RESULT, e->remote_id, &at) | plugin_host_put_u8(&g.tx, verdict) |
             plugin_host_put_u64(&g.tx, e->ev.id);
    if (verdict == HV_REWRITTEN)
        rc |= buf_append(&g.tx, e->data, e->len);
    if (rc || plugin_host_frame_end(&g.tx, at) < 0) {
        /* a rewrite too large for a frame: the original bytes go on */
        g.tx.len = at;
        if (plugin_host_frame_begin(&g.tx, HK_RESULT, e->remote_id, &at) == 0 &&
            plugin_host_put_u8(&g.tx, HV_PASS) == 0 && plugin_host_put_u64(&g.tx, e->ev.id) == 0)
            plugin_host_frame_end(&g.tx, at);
    }
    envelope_free(e);
}

void home_chain_done(struct plugin_home *r, struct envelope *e)
{
    (void)r;
    result(e, e->ev.rewritten ? HV_REWRITTEN : HV_PASS);
}

void home_chain_drop(struct plugin_home *r, struct envelope *e)
{
    (void)r;
    result(e, HV_DROP);
}

void home_to_core(struct plugin_home *r, struct envelope *e)
{
    (void)r;
    size_t at;
    int rc = 0;
    switch (e->type) {
    case ENV_CMD_EXEC_RESULT:
        rc = plugin_host_frame_begin(&g.tx, HK_CMD_RESULT, e->remote_id, &at) |
             plugin_host_put_u32(&g.tx, (uint32_t)e->cmd.code) | buf_append(&g.tx, e->data, e->len);
        break;
    case ENV_WAIT_REQ:
        if (e->wait.kind == WAIT_TIMER || e->wait.kind == WAIT_EVERY)
            timer_add(e->wait.op);
        rc = plugin_host_frame_begin(&g.tx, HK_WAIT, e->wait.op, &at) | plugin_host_put_u32(&g.tx, e->wait.kind) |
             plugin_host_put_u32(&g.tx, e->wait.ms) | plugin_host_put_u32(&g.tx, (uint32_t)e->wait.fn_ref) |
             buf_append(&g.tx, e->cmd.action, sizeof e->cmd.action) | buf_append(&g.tx, e->data, e->len);
        break;
    case ENV_WAIT_CANCEL:
        timer_del(e->wait.op);
        rc = plugin_host_frame_begin(&g.tx, HK_CANCEL, e->wait.op, &at);
        break;
    default:
        envelope_free(e);
        return;
    }
    if (rc || plugin_host_frame_end(&g.tx, at) < 0)
        g.tx.len = at;
    if (e->plugin)
        plugin_unref(e->plugin);
    envelope_free(e);
}

/* Every call below is served by the daemon through a proxy; the runtime
 * still links them. */
int home_emit(struct plugin_home *r, struct envelope *e)
{
    (void)r;
    envelope_free(e);
    return -1;
}

int home_message(struct plugin_home *r, const char *from, const char *id,
                     const char *topic, const char *json, size_t len)
{
    (void)r, (void)from, (void)id, (void)topic, (void)json, (void)len;
    return -1;
}

int home_shared_get(struct plugin_home *r, const char *key, struct buf *out)
{
    (void)r, (void)key, (void)out;
    return -1;
}

int home_shared_set(struct plugin_home *r, const char *owner, size_t limit, const char *key,
                        const char *json, size_t len)
{
    (void)r, (void)owner, (void)limit, (void)key, (void)json, (void)len;
    return -1;
}

int home_actions_json(struct plugin_home *r, struct buf *b)
{
    (void)r;
    return buf_puts(b, "[]");
}

const char *home_proc_root(struct plugin_home *r)
{
    (void)r;
    return "/nonexistent";
}

int home_module_source(struct plugin_home *r, struct plugin *p, const char *name,
                           struct buf *out, char *chunk, size_t chunklen, char *err, size_t errlen)
{
    (void)r;
    (void)p;                      /* the daemon knows which plugin asks */
    lua_State *L = g.plugin->sb.L;
    /* raw bytes both ways: the daemon checks the name again and reads the file */
    int rc = rpc(L, "require", name, strlen(name));
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (rc < 0) {
        snprintf(err, errlen, "%s", s);
        lua_pop(L, 1);
        return -1;
    }
    const char *nl = memchr(s, '\n', len);     /* "@path\n" then the source */
    size_t hl = nl ? (size_t)(nl - s) : 0;
    snprintf(chunk, chunklen, "%.*s", (int)hl, s);
    rc = buf_append(out, nl ? nl + 1 : s, nl ? len - hl - 1 : len);
    lua_pop(L, 1);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

unsigned home_max_errors(struct plugin_home *r)
{
    return r->init.max_errors;
}

/* Timers and waits are counted here, in the host; the rest are the
 * daemon's (its stand-in serves emit, send and shared.set). */
void home_limits(struct plugin_home *r, struct plugin_limits *out)
{
    *out = (struct plugin_limits){r->init.timers_max, r->init.waits_max, r->init.exec_max,
                                  UINT32_MAX, UINT32_MAX, UINT32_MAX};
}

uint64_t home_started_ms(struct plugin_home *r)
{
    return r->init.started_ms;
}

void home_push_config(struct plugin_home *r, const char *id, lua_State *L)
{
    (void)id;
    int top = lua_gettop(L);
    if (lua_unpack(L, r->init.config, r->init.config_len) != 1 || !lua_istable(L, -1)) {
        lua_settop(L, top);
        lua_newtable(L);
    }
}

void home_plugin_gone(struct plugin_home *r, struct plugin *p)
{
    (void)r; (void)p;                  /* the daemon shows its stand-in leaving */
}

bool home_stopping(struct plugin_home *r)
{
    return r->stop;
}

/* ---- serving ---- */

static void log_sink(enum log_level l, const char *msg, size_t len)
{
    if (plugin_host_frame_simple(&g.tx, HK_LOG, (uint32_t)l, msg, len) < 0)
        return;
}

int plugin_host_serve(struct plugin *p)
{
    g.plugin = p;
    send_stats(p);
    for (;;) {
        /* everything already received goes into the mailbox first, so the
         * job runs a batch and its results leave in one write */
        struct plugin_host_frame f;
        while (plugin_host_frame_next((const char *)g.rx.buf + g.rx.start, rxbuf_pending(&g.rx), &f) > 0) {
            uint8_t kind;
            uint32_t id;
            const char *body;
            size_t len;
            char *frame = plugin_host_read_frame(&kind, &id, &body, &len);
            handle(p, kind, id, body, len);
            free(frame);
        }
        if (g.njobs) {
            struct job *j = g.jobs[0];
            memmove(&g.jobs[0], &g.jobs[1], (size_t)--g.njobs * sizeof g.jobs[0]);
            j->run(j);
            continue;                          /* a job may have been scheduled again */
        }
        plugin_host_flush();
        if (g.stop)
            break;
        uint8_t kind;
        uint32_t id;
        const char *body;
        size_t len;
        char *frame = plugin_host_read_frame(&kind, &id, &body, &len);
        if (!frame)
            return 0;                          /* the daemon closed the channel */
        handle(p, kind, id, body, len);
        free(frame);
    }
    return 0;
}
