/* plugin_host.c - the daemon's side of out-of-process plugins (isolation
 * "process"): one polaris-plugin-host per plugin, created and supervised
 * here, never by a plugin.
 *
 * The plugin's struct in the daemon is a stand-in. Work posted to it (an
 * event in a strategy chain, a command, a message, a timer, a wait's
 * result) is framed onto the host's channel instead of its mailbox; events
 * and commands are remembered under a request id until the host answers.
 * The stand-in keeps a Lua state of its own with the real polaris bindings
 * and the plugin's permissions: the host's calls that need the daemon
 * (files, /proc, the shared store, messages, emit) arrive as RPCs and run
 * there, on a worker, after the same checks as in-process.
 *
 * Everything a host sends is untrusted: frames are bounded and parsed with
 * checked readers, ids must match what is outstanding, results are
 * validated JSON, a wait needs the permission it uses. A frame that breaks
 * the rules ends the host ("protocol violation").
 *
 * A host that dies is noticed at once (ev_child, and the channel's end):
 * the plugin goes to Error with the signal's name, events it held go on
 * with strategyError, commands it held are answered -6, its timers stop,
 * and it is restarted after plugins.host_restart_backoff_ms (doubling) up
 * to plugins.host_restart_max times in a row. An idle host (nothing
 * outstanding, no timers, no parked calls, plugins.host_idle_s without
 * traffic) is stopped and started again by the next thing posted to it.
 *
 * Threads: posting happens on any thread; the channel's write side and the
 * outstanding table are under the host's mutex, writes are non-blocking and
 * what does not fit waits for the core loop's write watcher (woken with
 * ev_async). Reading, supervision and every watcher belong to the core
 * loop (the default loop: the only one that can watch children). A host
 * struct is freed on the core loop only, once its plugin has no other
 * reference, so no other thread can be posting to it.
 *
 * Uses: host_proto, lua_pack, plugin, plugin_registry, libev. */
#include "plugin_host.h"
#include "command_msg.h"
#include "daemon.h"
#include "host_proto.h"
#include "json_scan.h"
#include "log.h"
#include "lua_pack.h"
#include "plugin.h"
#include "plugin_registry.h"
#include "rxbuf.h"
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum host_state {
    H_STARTING,       /* spawned, INIT sent, no READY yet */
    H_UP,
    H_STOPPING,       /* STOP sent (idle or retired) */
    H_DOWN,           /* no process: idle (plugin Active) or dead (Error) */
};

struct outstanding {
    uint32_t rid;
    struct envelope *e;
};

struct plugin_host {
    struct plugin_host *next;     /* the manager's list */
    struct plugin_hosts *m;
    struct plugin *p;             /* a ref while the host struct lives */
    pthread_mutex_t mu;           /* tx, out, pending, st, want_* */
    enum host_state st;
    int fd;
    pid_t pid;
    struct buf tx;
    struct rxbuf rx;
    struct outstanding *out;      /* events and commands the host holds, by rid; */
    size_t out_first, out_end;    /* [first, end) in use, answered ones NULL */
    size_t nout, capout;          /* nout: not yet answered */
    uint32_t next_rid;
    struct envlist pending;       /* posted while the host was starting */
    struct buf init;              /* the HK_INIT frame, reused by restarts */
    bool want_write, want_start, retiring, idle_stop, dead;
    bool flush_queued;            /* frames wait for the core loop's one write */
    bool first_load;              /* RPCs run inline: no worker can see the plugin yet */
    bool rio_on, wio_on;
    ev_io rio, wio;
    ev_child child;
    ev_timer timer;               /* restart backoff, idle check */
    unsigned restarts;            /* in a row */
    uint64_t up_since_ns;
    _Atomic uint64_t last_activity_ns;
    uint32_t pinned;              /* from the host's stats */
    char last_exit[96];
};

struct plugin_hosts {
    struct ev_loop *loop;
    ev_async wake;
    pthread_mutex_t mu;           /* the list */
    struct plugin_host *hosts;
    char binary[512];
    uid_t uid;
    gid_t gid;
    uint64_t as_bytes;
    unsigned cpu_s, restart_max, backoff_ms, idle_s, start_timeout_ms;
};

static void host_post(struct plugin *p, struct envelope *e);
static void host_rpc(struct plugin *p, struct envelope *e);
static void host_unpinned(struct plugin *p);
static void on_read(struct ev_loop *loop, ev_io *w, int revents);
static void on_write(struct ev_loop *loop, ev_io *w, int revents);
static void on_child(struct ev_loop *loop, ev_child *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void wake(struct ev_loop *loop, ev_async *w, int revents);
static void host_died(struct plugin_host *h, const char *why);
static bool drain_rx(struct plugin_host *h);
static void unwatch(struct plugin_host *h);

/* ---- configuration ---- */

struct plugin_hosts *plugin_hosts_new(struct ev_loop *loop)
{
    struct plugin_hosts *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->loop = loop;
    m->start_timeout_ms = 5000;
    pthread_mutex_init(&m->mu, NULL);
    if (loop) {
        ev_async_init(&m->wake, wake);
        m->wake.data = m;
        ev_async_start(loop, &m->wake);
    }
    return m;
}

void plugin_hosts_configure(struct plugin_hosts *m, const struct config *cfg)
{
    if (cfg->host_binary[0]) {
        snprintf(m->binary, sizeof m->binary, "%s", cfg->host_binary);
    } else {
        /* next to polarisd (a build tree), else where make install puts it */
        char self[400];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        snprintf(m->binary, sizeof m->binary, "%s/polaris-plugin-host", self);
        if (access(m->binary, X_OK) != 0)
            snprintf(m->binary, sizeof m->binary, "%s", POLARIS_LIBEXECDIR "/polaris-plugin-host");
    }
    struct passwd pw, *res = NULL;
    char tmp[1024];
    m->uid = 65534;
    m->gid = 65534;
    if (getpwnam_r(cfg->host_user, &pw, tmp, sizeof tmp, &res) == 0 && res) {
        m->uid = pw.pw_uid;
        m->gid = pw.pw_gid;
    } else if (geteuid() == 0) {
        log_warn("plugins.host_user %s: no such user; plugin hosts run as uid 65534", cfg->host_user);
    }
#if defined(__SANITIZE_ADDRESS__)
    m->as_bytes = 0;               /* ASan reserves terabytes of address space */
#else
    m->as_bytes = cfg->host_memory_max;
#endif
    m->cpu_s = cfg->host_cpu_s;
    m->restart_max = cfg->host_restart_max;
    m->backoff_ms = cfg->host_restart_backoff_ms;
    m->idle_s = cfg->host_idle_s;
    m->start_timeout_ms = cfg->host_start_timeout_ms;
}

/* ---- the channel's write side (any thread, under h->mu) ---- */

static void flush_locked(struct plugin_host *h)
{
    while (h->tx.len && h->fd >= 0 && !h->dead) {
        ssize_t n = send(h->fd, h->tx.p, h->tx.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf_consume(&h->tx, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!h->want_write) {
                h->want_write = true;
                if (h->m->loop)
                    ev_async_send(h->m->loop, &h->m->wake);
            }
            return;
        }
        return;                    /* the host is gone: the reader and on_child see it */
    }
}

static bool out_add(struct plugin_host *h, uint32_t rid, struct envelope *e)
{
    if (h->out_end == h->capout) {
        if (h->out_first > 0) {    /* answered ones at the front: slide down */
            memmove(h->out, h->out + h->out_first, (h->out_end - h->out_first) * sizeof *h->out);
            h->out_end -= h->out_first;
            h->out_first = 0;
        }
        if (h->out_end == h->capout) {
            size_t cap = h->capout ? h->capout * 2 : 64;
            struct outstanding *n = realloc(h->out, cap * sizeof *n);
            if (!n)
                return false;
            h->out = n;
            h->capout = cap;
        }
    }
    h->out[h->out_end++] = (struct outstanding){rid, e};
    h->nout++;
    return true;
}

/* Answers come mostly in order: look from the oldest, and move the front
 * past what has been answered (no shifting per answer). */
static struct envelope *out_take(struct plugin_host *h, uint32_t rid)
{
    for (size_t i = h->out_first; i < h->out_end; i++)
        if (h->out[i].e && h->out[i].rid == rid) {
            struct envelope *e = h->out[i].e;
            h->out[i].e = NULL;
            h->nout--;
            while (h->out_first < h->out_end && !h->out[h->out_first].e)
                h->out_first++;
            if (h->out_first == h->out_end)
                h->out_first = h->out_end = 0;
            return e;
        }
    return NULL;
}

/* Takes every outstanding envelope out (a death, shutdown): a NULL-ended
 * array the caller frees. */
static struct envelope **out_take_all(struct plugin_host *h)
{
    struct envelope **all = calloc(h->nout + 1, sizeof *all);
    size_t k = 0;
    for (size_t i = h->out_first; all && i < h->out_end; i++)
        if (h->out[i].e)
            all[k++] = h->out[i].e;
    free(h->out);
    h->out = NULL;
    h->out_first = h->out_end = h->nout = h->capout = 0;
    return all;
}

static bool is_event(const struct envelope *e)
{
    return e->type == ENV_IPC_EVENT || e->type == ENV_MONITOR_EVENT;
}

static bool is_command(const struct envelope *e)
{
    return e->type == ENV_GUEST_CMD_REQ || e->type == ENV_APP_CMD_REQ;
}

/* What an envelope becomes when its plugin's host is not there to take it:
 * an event goes on (untouched, as past any plugin in Error, or with
 * strategyError when the host held it), a command is answered -6, the
 * rest is let go. */
static void bypass(struct plugin *p, struct envelope *e, const char *why)
{
    if (is_event(e)) {
        if (why)
            plugin_strategy_failed(p, e, why);
        else
            plugin_strategy_done(p, e);
    } else if (is_command(e)) {
        plugin_command_done(p, e, CMD_HANDLER_ERROR,
                            why ? why : "the plugin offering this action is in Error", NULL, 0);
        envelope_free(e);
    } else {
        envelope_free(e);
    }
}

static void host_post(struct plugin *p, struct envelope *e)
{
    struct plugin_host *h = p->host;
    pthread_mutex_lock(&h->mu);
    if (h->st == H_DOWN && !h->dead && !h->retiring && atomic_load(&p->state) == PLUGIN_ACTIVE) {
        h->want_start = true;      /* idle: started again on demand */
        h->st = H_STARTING;
        if (h->m->loop)
            ev_async_send(h->m->loop, &h->m->wake);
    }
    if (h->st == H_STARTING) {
        envlist_push(&h->pending, e);
        pthread_mutex_unlock(&h->mu);
        return;
    }
    if (h->st == H_DOWN || h->dead) {
        pthread_mutex_unlock(&h->mu);
        bypass(p, e, NULL);
        return;
    }
    uint32_t rid = ++h->next_rid;
    size_t before = h->tx.len;
    if (host_put_env(&h->tx, rid, e) < 0) {
        h->tx.len = before;
        pthread_mutex_unlock(&h->mu);
        bypass(p, e, "the plugin host's channel is out of memory");
        return;
    }
    atomic_store(&h->last_activity_ns, mono_ns());
    if (is_event(e) || is_command(e)) {
        if (!out_add(h, rid, e)) {
            h->tx.len = before;    /* could not remember it: take the frame back */
            pthread_mutex_unlock(&h->mu);
            bypass(p, e, "out of memory");
            return;
        }
        e = NULL;
    }
    /* one write for everything posted before the core loop next turns:
     * a batch of events routed together crosses in one send */
    if (!h->m->loop) {
        flush_locked(h);
    } else if (!h->flush_queued) {
        h->flush_queued = true;
        ev_async_send(h->m->loop, &h->m->wake);
    }
    pthread_mutex_unlock(&h->mu);
    envelope_free(e);
}

static void send_frame(struct plugin_host *h, uint8_t kind, uint32_t id, const void *body, size_t len)
{
    pthread_mutex_lock(&h->mu);
    if (host_frame_simple(&h->tx, kind, id, body, len) == 0)
        flush_locked(h);
    pthread_mutex_unlock(&h->mu);
}

/* ---- RPC: the host's calls, run in the stand-in's state ---- */

static bool word(const char *s)
{
    return *s && strspn(s, "abcdefghijklmnopqrstuvwxyz_") == strlen(s);
}

static bool rpc_name_ok(const char *name)
{
    static const char *const exact[] = {"emit", "send", "broadcast", "actions", "shared.get",
                                        "shared.set", "guest.status"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0)
            return true;
    return (strncmp(name, "fs.", 3) == 0 && word(name + 3)) ||
           (strncmp(name, "sys.", 4) == 0 && word(name + 4));
}

/* Under pcall: polaris.<name>(unpacked args...). */
static int rpc_protected(lua_State *L)
{
    const char *name = lua_tostring(L, 1);
    const struct envelope *e = lua_touserdata(L, 2);
    char path[48];
    snprintf(path, sizeof path, "%s", name);
    lua_settop(L, 0);
    lua_getglobal(L, "polaris");
    char *dot = strchr(path, '.');
    if (dot) {
        *dot = '\0';
        if (lua_getfield(L, -1, path) != LUA_TTABLE)
            return luaL_error(L, "no such call: polaris.%s.%s", path, dot + 1);
        lua_remove(L, -2);
        lua_getfield(L, -1, dot + 1);
    } else {
        lua_getfield(L, -1, path);
    }
    if (!lua_iscfunction(L, -1))
        return luaL_error(L, "no such call: polaris.%s", e->action);
    int fn = lua_gettop(L);
    lua_unpack(L, e->data, e->len);
    lua_call(L, lua_gettop(L) - fn, LUA_MULTRET);
    return lua_gettop(L) - fn + 1;
}

static bool module_name_ok(const char *name, size_t len)
{
    bool ok = len > 0 && len < 128 && name[0] != '.' && name[len - 1] != '.' && !strstr(name, "..");
    for (size_t i = 0; ok && i < len; i++)
        ok = name[i] == '.' || name[i] == '_' || (name[i] >= 'a' && name[i] <= 'z') ||
             (name[i] >= '0' && name[i] <= '9');
    return ok;
}

static void host_rpc(struct plugin *p, struct envelope *e)
{
    struct plugin_host *h = p->host;
    struct buf out = BUF_INIT;
    bool ok = false;
    buf_putc(&out, 0);
    if (strcmp(e->action, "require") == 0) {
        char chunk[600], err[300];
        struct buf src = BUF_INIT;
        if (!module_name_ok(e->data, e->len)) {
            buf_puts(&out, "usage: require(\"polaris.name\"): lowercase words joined by dots");
        } else if (registry_module_source(p->reg, e->data, &src, chunk, sizeof chunk, err, sizeof err) < 0) {
            buf_puts(&out, err);
        } else {
            ok = buf_printf(&out, "%s\n", chunk) == 0 && buf_append(&out, src.p, src.len) == 0;
        }
        buf_free(&src);
    } else if (p->sb.L) {
        lua_State *L = p->sb.L;
        int base = lua_gettop(L);
        lua_pushcfunction(L, rpc_protected);
        lua_pushstring(L, e->action);
        lua_pushlightuserdata(L, e);
        if (lua_pcall(L, 2, LUA_MULTRET, 0) == LUA_OK) {
            char err[256];
            ok = lua_pack(L, base + 1, lua_gettop(L) - base, &out, err, sizeof err) == 0;
            if (!ok) {
                out.len = 1;
                buf_printf(&out, "polaris.%s: %s", e->action, err);
            }
        } else {
            const char *msg = lua_tostring(L, -1);
            buf_puts(&out, msg ? msg : "error in a daemon call");
        }
        lua_settop(L, base);
        lua_gc(L, LUA_GCSTEP, 0);
    }
    if (out.p)
        out.p[0] = ok;
    send_frame(h, HK_RPC_REPLY, e->seq, out.p ? out.p : "", out.len);
    buf_free(&out);
    envelope_free(e);
}

/* ---- frames from the host (core loop) ---- */

static bool violation(struct plugin_host *h, const char *what)
{
    log_error("plugin %s: plugin host %d broke the channel protocol (%s); ending it",
              h->p->id, (int)h->pid, what);
    snprintf(h->last_exit, sizeof h->last_exit, "protocol violation: %s", what);
    STAT_INC(plugin_hosts_violations);
    if (h->pid > 0)
        kill(h->pid, SIGKILL);
    return false;
}

static bool on_result(struct plugin_host *h, const struct host_frame *f)
{
    struct host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    uint8_t verdict;
    uint64_t event_id;
    if (!host_get_u8(&r, &verdict) || !host_get_u64(&r, &event_id) || verdict > HV_DROP)
        return violation(h, "a malformed strategy result");
    pthread_mutex_lock(&h->mu);
    struct envelope *e = out_take(h, f->id);
    pthread_mutex_unlock(&h->mu);
    struct plugin *p = h->p;
    if (!e || !is_event(e)) {
        if (e)
            bypass(p, e, "the plugin host answered a command as an event");
        return violation(h, "a result for no event it holds");
    }
    if (verdict == HV_DROP) {
        STAT_INC(core_events_dropped_by_strategy);
        registry_chain_drop(p->reg, e);
        return true;
    }
    if (verdict == HV_PASS) {
        plugin_strategy_done(p, e);
        return true;
    }
    /* a rewritten event: an object whose eventId is the one stated */
    const char *json = (const char *)r.p, *err = NULL;
    size_t len = (size_t)(r.end - r.p);
    struct json_member m[64];
    int n = json_validate(json, len, &err) == JSON_OBJECT ? json_object_members(json, len, m, 64, &err) : -1;
    const struct json_member *idm = n >= 0 ? json_find(m, (size_t)n, "eventId") : NULL;
    uint64_t id;
    if (!idm || json_to_u64(idm->val, idm->val_len, &id) < 0 || id != event_id) {
        plugin_strategy_failed(p, e, "the plugin host returned an event that is not a JSON object with its eventId");
        return violation(h, "an invalid rewritten event");
    }
    struct envelope *ne = envelope_new((enum env_type)e->type, json, len);
    if (!ne) {
        plugin_strategy_failed(p, e, "out of memory");
        return true;
    }
    memcpy(ne, e, offsetof(struct envelope, len));
    ne->event_id = id;
    ne->rewritten = 1;
    envelope_free(e);
    plugin_strategy_done(p, ne);
    return true;
}

static bool on_cmd_result(struct plugin_host *h, const struct host_frame *f)
{
    struct host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    uint32_t code;
    if (!host_get_u32(&r, &code))
        return violation(h, "a malformed command result");
    pthread_mutex_lock(&h->mu);
    struct envelope *req = out_take(h, f->id);
    pthread_mutex_unlock(&h->mu);
    if (!req || !is_command(req)) {
        if (req)
            bypass(h->p, req, "the plugin host answered an event as a command");
        return violation(h, "a command result for no command it holds");
    }
    int64_t c;
    const char *msg, *data;
    size_t msg_len, data_len;
    int32_t sc = (int32_t)code;
    if (cmd_result_parse((const char *)r.p, (size_t)(r.end - r.p), &c, &msg, &msg_len, &data, &data_len) < 0 ||
        c != sc || (sc < 0 && sc != CMD_BAD_REQUEST && sc != CMD_HANDLER_ERROR && sc != CMD_UNKNOWN_ACTION)) {
        plugin_command_done(h->p, req, CMD_HANDLER_ERROR, "the plugin host sent an invalid result", NULL, 0);
        envelope_free(req);
        return violation(h, "an invalid command result");
    }
    /* decoded text is never longer than its quoted form */
    char *m = msg ? malloc(msg_len + 1) : NULL;
    if (m && json_string_decode(msg, msg_len, m, msg_len + 1) < 0) {
        free(m);
        m = NULL;
    }
    plugin_command_done(h->p, req, sc, m, data, data_len);
    free(m);
    envelope_free(req);
    return true;
}

static bool on_wait(struct plugin_host *h, const struct host_frame *f, bool cancel)
{
    struct plugin *p = h->p;
    struct envelope *e;
    if (cancel) {
        e = envelope_new(ENV_WAIT_CANCEL, NULL, 0);
    } else {
        struct host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
        uint32_t kind, ms, fn_ref;
        char action[48];
        if (!host_get_u32(&r, &kind) || !host_get_u32(&r, &ms) || !host_get_u32(&r, &fn_ref) ||
            !host_get_bytes(&r, action, sizeof action) || !memchr(action, 0, sizeof action) ||
            kind < WAIT_SLEEP || kind > WAIT_GUEST || ms > 3600000)
            return violation(h, "a malformed wait");
        /* the host checked these too; a host that did not is not ours */
        if ((kind == WAIT_EXEC && !(p->perms & PERM_EXEC)) ||
            (kind == WAIT_GUEST && !(p->perms & PERM_VM_WRITE)))
            return violation(h, "a wait its plugin has no permission for");
        size_t len = (size_t)(r.end - r.p);
        const char *err;
        if (len && json_validate((const char *)r.p, len, &err) == JSON_INVALID)
            return violation(h, "a wait with invalid JSON");
        e = envelope_new(ENV_WAIT_REQ, r.p, len);
        if (e) {
            e->code = (int32_t)kind;
            e->timeout_ms = ms;
            e->req_id = fn_ref;
            memcpy(e->action, action, sizeof action);
        }
    }
    if (!e)
        return true;
    plugin_ref(p);
    e->plugin = p;
    e->seq = f->id;
    snprintf(e->from, sizeof e->from, "%s", p->id);
    registry_to_core(p->reg, e);
    return true;
}

static bool on_stats(struct plugin_host *h, const struct host_frame *f)
{
    struct host_stats s;
    if (!host_get_stats(f, &s))
        return violation(h, "malformed stats");
    struct plugin *p = h->p;
    atomic_store(&p->events, s.events);
    atomic_store(&p->commands, s.commands);
    atomic_store(&p->messages, s.messages);
    atomic_store(&p->errors, s.errors);
    atomic_store(&p->remote_mem, s.mem_used);
    atomic_store(&p->remote_cpu_ns, s.cpu_ns);
    h->pinned = s.pinned;
    if (s.last_error[0])
        plugin_set_error(p, "%s", s.last_error);
    if (s.state == PLUGIN_ERROR && atomic_load(&p->state) == PLUGIN_ACTIVE)
        atomic_store(&p->state, PLUGIN_ERROR);   /* it failed max_consecutive_errors times */
    return true;
}

/* One frame; false when the host must go. during_load: READY and FAILED
 * are the caller's, and on the first load calls run right here. */
static bool dispatch(struct plugin_host *h, const struct host_frame *f, bool during_load)
{
    atomic_store(&h->last_activity_ns, mono_ns());
    switch (f->kind) {
    case HK_LOG: {
        enum log_level l = f->id <= LOG_LVL_ERROR ? (enum log_level)f->id : LOG_LVL_ERROR;
        log_msg_site(h, l, "%.*s", (int)(f->len < 2000 ? f->len : 2000), f->body);
        return true;
    }
    case HK_STATS:
        return on_stats(h, f);
    case HK_RPC: {
        struct host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
        uint8_t nlen;
        char name[48];
        if (!host_get_u8(&r, &nlen) || nlen == 0 || nlen >= sizeof name || !host_get_bytes(&r, name, nlen))
            return violation(h, "a malformed call");
        name[nlen] = '\0';
        if (strcmp(name, "require") != 0 && !rpc_name_ok(name))
            return violation(h, "a call outside the plugin API");
        struct envelope *e = envelope_new(ENV_HOST_RPC, r.p, (size_t)(r.end - r.p));
        if (!e)
            return violation(h, "out of memory for a call");
        memcpy(e->action, name, (size_t)nlen + 1);
        e->seq = f->id;
        if (during_load && h->first_load)
            host_rpc(h->p, e);
        else
            plugin_post(h->p, e);               /* the stand-in's mailbox: a worker runs it */
        return true;
    }
    case HK_RESULT:
        return !during_load ? on_result(h, f) : violation(h, "a result before READY");
    case HK_CMD_RESULT:
        return !during_load ? on_cmd_result(h, f) : violation(h, "a result before READY");
    case HK_WAIT:                  /* timers may be set while loading */
        return on_wait(h, f, false);
    case HK_CANCEL:
        return on_wait(h, f, true);
    default:
        return violation(h, "an unknown or misplaced frame");
    }
}

/* ---- starting ---- */

static int read_code(const char *path, struct buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char tmp[8192];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (buf_append(out, tmp, n) < 0 || out->len > (1u << 20)) {
            snprintf(err, errlen, "%s: larger than 1 MiB", path);
            rc = -1;
        }
    fclose(f);
    return rc;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *s, size_t len)
{
    lua_pushlstring(L, s, len);
    lua_setfield(L, -2, k);
}

/* The HK_INIT frame, built once in the stand-in's state (nothing else uses
 * it yet): restarts send the same bytes. */
static int build_init(struct plugin_host *h, char *err, size_t errlen)
{
    struct plugin *p = h->p;
    struct plugin_hosts *m = h->m;
    lua_State *L = p->sb.L;
    struct buf code = BUF_INIT, cfg = BUF_INIT, body = BUF_INIT;
    int rc = -1;
    if (read_code(p->file, &code, err, errlen) < 0)
        goto out;
    registry_push_config(p->reg, p->id, L);
    rc = lua_pack(L, -1, 1, &cfg, err, errlen);
    lua_pop(L, 1);
    if (rc < 0)
        goto out;
    lua_createtable(L, 0, 20);
    set_str(L, "id", p->id, strlen(p->id));
    set_str(L, "version", p->version, strlen(p->version));
    set_str(L, "type", p->type, strlen(p->type));
    set_str(L, "file", p->file, strlen(p->file));
    set_str(L, "code", code.p ? code.p : "", code.len);
    set_str(L, "config", cfg.p ? cfg.p : "", cfg.len);
    set_int(L, "perms", p->perms);
    set_int(L, "mem_limit", (lua_Integer)p->mem_limit);
    set_int(L, "budget_ns", (lua_Integer)p->budget_ns);
    set_int(L, "max_errors", registry_max_errors(p->reg));
    set_int(L, "started_ms", (lua_Integer)registry_started_ms(p->reg));
    set_int(L, "daemon_pid", getpid());
    set_int(L, "log_level", log_get_level());
    set_int(L, "uid", m->uid);
    set_int(L, "gid", m->gid);
    set_int(L, "as_bytes", (lua_Integer)m->as_bytes);
    set_int(L, "cpu_s", m->cpu_s);
    rc = lua_pack(L, -1, 1, &body, err, errlen);
    lua_pop(L, 1);
    if (rc == 0 && host_frame_simple(&h->init, HK_INIT, 0, body.p, body.len) < 0) {
        snprintf(err, errlen, "the plugin is too large to send to its host");
        rc = -1;
    }
out:
    buf_free(&code);
    buf_free(&cfg);
    buf_free(&body);
    return rc;
}

extern char **environ;

static int spawn(struct plugin_host *h, char *err, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);   /* the daemon's threads block signals */
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    /* the host gets no environment but what a sanitizer build needs */
    char *envp[4];
    int ne = 0;
    char asan[512];
    const char *ao = getenv("ASAN_OPTIONS"), *uo = getenv("UBSAN_OPTIONS");
    if (ao) {
        /* a supervised child must die of its signals, not turn them into an
         * exit status; leak checks cannot run under the seccomp filter */
        snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s:handle_segv=0:handle_sigbus=0:handle_abort=0:"
                 "handle_sigfpe=0:handle_sigill=0:detect_leaks=0", ao);
        envp[ne++] = asan;
    }
    for (char **e = environ; uo && *e; e++)
        if (strncmp(*e, "UBSAN_OPTIONS=", 14) == 0)
            envp[ne++] = *e;
    envp[ne] = NULL;
    char *argv[] = {(char *)"polaris-plugin-host", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, h->m->binary, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        snprintf(err, errlen, "cannot start %s: %s", h->m->binary, strerror(rc));
        return -1;
    }
    pthread_mutex_lock(&h->mu);
    h->fd = sv[0];
    h->pid = pid;
    h->dead = false;
    h->st = H_STARTING;
    h->rx.start = h->rx.end = 0;
    buf_reset(&h->tx);
    rc = buf_append(&h->tx, h->init.p, h->init.len);
    pthread_mutex_unlock(&h->mu);
    if (h->m->loop) {
        ev_child_init(&h->child, on_child, pid, 0);
        h->child.data = h;
        ev_child_start(h->m->loop, &h->child);
    }
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Fills the stand-in from READY (the first start only: restarts run the
 * same code). */
static bool take_ready(struct plugin_host *h, const struct host_frame *f)
{
    struct plugin *p = h->p;
    if (p->handlers || p->cmds)
        return true;
    struct host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    uint32_t n, k;
    if (!host_get_u32(&r, &n) || n > 4096)
        return false;
    p->handlers = n ? calloc(n, sizeof *p->handlers) : NULL;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t any;
        uint64_t id;
        if (!p->handlers || !host_get_u8(&r, &any) || !host_get_u64(&r, &id))
            return false;
        p->handlers[i] = (struct handler){.event_id = id, .any = any != 0, .ref = LUA_NOREF};
        p->nhandlers = i + 1;
    }
    if (!host_get_u32(&r, &k) || k > 1024)
        return false;
    p->cmds = k ? calloc(k, sizeof *p->cmds) : NULL;
    for (uint32_t i = 0; i < k; i++) {
        uint8_t len;
        if (!p->cmds || !host_get_u8(&r, &len) || len == 0 || len >= sizeof p->cmds[0].name ||
            !host_get_bytes(&r, p->cmds[i].name, len))
            return false;
        p->cmds[i].name[len] = '\0';
        if (strcmp(p->cmds[i].name, "status") == 0 || strcmp(p->cmds[i].name, "reload") == 0 ||
            strcmp(p->cmds[i].name, "unload") == 0)
            return false;
        p->cmds[i].ref = LUA_NOREF;
        p->ncmds = i + 1;
    }
    return true;
}

/* Blocks until READY, FAILED, the channel's end or the deadline, serving
 * the host's calls meanwhile. 0, or -1 with err. */
static int await_ready(struct plugin_host *h, char *err, size_t errlen)
{
    uint64_t deadline = mono_ns() + (uint64_t)h->m->start_timeout_ms * 1000000u;
    pthread_mutex_lock(&h->mu);
    while (h->tx.len) {            /* INIT: the host reads as we write */
        ssize_t n = send(h->fd, h->tx.p, h->tx.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf_consume(&h->tx, (size_t)n);
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {h->fd, POLLOUT, 0};
            uint64_t now = mono_ns();
            if (now >= deadline || poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1) < 0)
                break;
        } else if (!(n < 0 && errno == EINTR)) {
            break;
        }
    }
    bool sent = h->tx.len == 0;
    pthread_mutex_unlock(&h->mu);
    if (!sent) {
        snprintf(err, errlen, "plugin host %d did not take its plugin", (int)h->pid);
        return -1;
    }
    for (;;) {
        struct host_frame f;
        long n;
        while ((n = host_frame_next((const char *)h->rx.buf + h->rx.start, rxbuf_pending(&h->rx), &f)) > 0) {
            h->rx.start += (size_t)n;
            if (f.kind == HK_READY) {
                if (!take_ready(h, &f)) {
                    snprintf(err, errlen, "plugin host sent a malformed READY");
                    return -1;
                }
                return 0;
            }
            if (f.kind == HK_FAILED) {
                snprintf(err, errlen, "%.*s", (int)(f.len < 400 ? f.len : 400), f.body);
                return -1;
            }
            if (!dispatch(h, &f, true)) {
                snprintf(err, errlen, "plugin host %s", h->last_exit);
                return -1;
            }
        }
        if (n < 0) {
            snprintf(err, errlen, "plugin host sent a frame out of bounds");
            return -1;
        }
        uint64_t now = mono_ns();
        if (now >= deadline) {
            snprintf(err, errlen, "plugin host did not load the plugin within %u ms "
                     "(plugins.host_start_timeout_ms)", h->m->start_timeout_ms);
            return -1;
        }
        struct pollfd pfd = {h->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
        if (pr < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return -1;
        }
        if (pr <= 0)
            continue;
        size_t avail;
        uint8_t *space = rxbuf_space(&h->rx, 65536, &avail);
        ssize_t r = space ? read(h->fd, space, avail) : -1;
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
            int status;
            if (!h->m->loop && waitpid(h->pid, &status, 0) == h->pid) {
                h->pid = -1;       /* --check: nobody else reaps it */
                if (WIFSIGNALED(status)) {
                    const char *sig = sigabbrev_np(WTERMSIG(status));
                    snprintf(err, errlen, "plugin host killed by SIG%s while loading", sig ? sig : "?");
                    return -1;
                }
            }
            snprintf(err, errlen, "plugin host exited while loading the plugin");
            return -1;
        }
        if (r > 0)
            rxbuf_commit(&h->rx, (size_t)r);
    }
}

static void watch(struct plugin_host *h)
{
    struct ev_loop *loop = h->m->loop;
    if (!loop)
        return;
    fcntl(h->fd, F_SETFL, fcntl(h->fd, F_GETFL) | O_NONBLOCK);
    ev_io_init(&h->rio, on_read, h->fd, EV_READ);
    ev_io_init(&h->wio, on_write, h->fd, EV_WRITE);
    h->rio.data = h->wio.data = h;
    ev_io_start(loop, &h->rio);
    h->rio_on = true;
}

static void unwatch(struct plugin_host *h)
{
    struct ev_loop *loop = h->m->loop;
    if (loop && h->rio_on)
        ev_io_stop(loop, &h->rio);
    if (loop && h->wio_on)
        ev_io_stop(loop, &h->wio);
    h->rio_on = h->wio_on = false;
}

/* Pending envelopes, after a (re)start succeeded or failed. */
static void release_pending(struct plugin_host *h, bool up, const char *why)
{
    pthread_mutex_lock(&h->mu);
    struct envelope *e = envlist_take(&h->pending);
    pthread_mutex_unlock(&h->mu);
    while (e) {
        struct envelope *next = e->next;
        e->next = NULL;
        if (up)
            host_post(h->p, e);
        else
            bypass(h->p, e, why);
        e = next;
    }
}

static void arm_idle(struct plugin_host *h)
{
    struct plugin_hosts *m = h->m;
    if (m->loop && m->idle_s) {
        ev_timer_stop(m->loop, &h->timer);
        ev_timer_set(&h->timer, m->idle_s, m->idle_s);
        ev_timer_start(m->loop, &h->timer);
    }
}

/* A restart (after a death or idling): like the first load, but the plugin
 * is live, so the host's calls go through a worker as usual. */
static void start_async(struct plugin_host *h)
{
    char err[300];
    struct plugin *p = h->p;
    if (spawn(h, err, sizeof err) < 0 || await_ready(h, err, sizeof err) < 0) {
        log_error("plugin %s: %s", p->id, err);
        snprintf(h->last_exit, sizeof h->last_exit, "%.95s", err);
        if (h->pid > 0)
            kill(h->pid, SIGKILL);  /* on_child ends it and counts the restart */
        else
            host_died(h, err);
        return;
    }
    pthread_mutex_lock(&h->mu);
    h->st = H_UP;
    h->up_since_ns = mono_ns();
    pthread_mutex_unlock(&h->mu);
    atomic_store(&h->last_activity_ns, mono_ns());
    watch(h);
    atomic_store(&p->state, PLUGIN_ACTIVE);
    log_info("plugin %s: plugin host %d up", p->id, (int)h->pid);
    if (!drain_rx(h))              /* what came in with READY */
        unwatch(h);
    arm_idle(h);
    release_pending(h, true, NULL);
}

int plugin_host_load(struct plugin_hosts *m, struct plugin *p)
{
    char err[512];
    struct plugin_host *h = calloc(1, sizeof *h);
    if (!h) {
        plugin_set_error(p, "out of memory");
        atomic_store(&p->state, PLUGIN_ERROR);
        return -1;
    }
    h->m = m;
    h->fd = -1;
    h->pid = -1;
    h->st = H_DOWN;
    pthread_mutex_init(&h->mu, NULL);
    plugin_ref(p);
    h->p = p;
    p->host = h;
    p->remote_post = host_post;
    p->remote_rpc = host_rpc;
    p->unpinned = host_unpinned;
    ev_timer_init(&h->timer, on_timer, 0, 0);
    h->timer.data = h;
    pthread_mutex_lock(&m->mu);
    h->next = m->hosts;
    m->hosts = h;
    pthread_mutex_unlock(&m->mu);

    atomic_store(&p->state, PLUGIN_LOADING);
    h->first_load = true;
    if (sandbox_open(&p->sb, p->mem_limit, p->budget_ns, err, sizeof err) < 0)
        goto fail;
    bind_polaris(p);                           /* the calls the host makes run here */
    lua_settop(p->sb.L, 0);
    if (build_init(h, err, sizeof err) < 0 || spawn(h, err, sizeof err) < 0 ||
        await_ready(h, err, sizeof err) < 0)
        goto fail;
    h->first_load = false;
    pthread_mutex_lock(&h->mu);
    h->st = H_UP;
    pthread_mutex_unlock(&h->mu);
    h->up_since_ns = p->loaded_mono_ns = mono_ns();
    atomic_store(&h->last_activity_ns, mono_ns());
    watch(h);
    atomic_store(&p->state, PLUGIN_ACTIVE);
    arm_idle(h);
    if (!drain_rx(h))              /* what came in with READY */
        unwatch(h);
    return 0;
fail:
    h->first_load = false;
    plugin_set_error(p, "%s", err);
    atomic_store(&p->state, PLUGIN_ERROR);
    pthread_mutex_lock(&h->mu);
    h->retiring = true;                        /* never restarted: the load failed */
    h->dead = true;
    h->st = H_DOWN;
    pthread_mutex_unlock(&h->mu);
    if (h->pid > 0)
        kill(h->pid, SIGKILL);                 /* reaped by libev (or plugin_hosts_free) */
    if (p->sb.L)
        sandbox_close(&p->sb);
    return -1;
}

/* ---- supervision (core loop) ---- */

static void host_free(struct plugin_host *h)
{
    struct plugin_hosts *m = h->m;
    pthread_mutex_lock(&m->mu);
    for (struct plugin_host **pp = &m->hosts; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    pthread_mutex_unlock(&m->mu);
    unwatch(h);
    if (m->loop) {
        ev_timer_stop(m->loop, &h->timer);
        ev_child_stop(m->loop, &h->child);
    }
    if (h->fd >= 0)
        close(h->fd);
    buf_free(&h->tx);
    buf_free(&h->init);
    rxbuf_free(&h->rx);
    free(h->out);
    struct plugin *p = h->p;
    atomic_store(&p->state, PLUGIN_ERROR);
    p->remote_post = NULL;
    p->remote_rpc = NULL;
    p->unpinned = NULL;
    p->host = NULL;
    pthread_mutex_destroy(&h->mu);
    free(h);
    plugin_unref(p);
}

/* The process is gone (or never came): everything it held goes on. */
static void host_died(struct plugin_host *h, const char *why)
{
    struct plugin *p = h->p;
    unwatch(h);
    if (h->fd >= 0)
        close(h->fd);
    pthread_mutex_lock(&h->mu);
    h->fd = -1;
    h->pid = -1;
    bool clean = h->st == H_STOPPING && why == NULL;
    h->dead = true;
    h->st = H_DOWN;
    struct envelope **out = out_take_all(h);
    buf_reset(&h->tx);
    h->want_write = false;
    pthread_mutex_unlock(&h->mu);
    char reason[160];
    snprintf(reason, sizeof reason, "plugin host died: %s", why ? why : h->last_exit);
    for (size_t i = 0; out && out[i]; i++)
        bypass(p, out[i], reason);
    free(out);
    if (h->retiring) {
        release_pending(h, false, reason);
        if (atomic_load(&p->refs) <= 1)
            host_free(h);          /* else when the last other reference goes (wake) */
        return;
    }
    if (clean && h->idle_stop) {
        /* idle: down until something is posted to it */
        pthread_mutex_lock(&h->mu);
        h->dead = false;
        h->idle_stop = false;
        bool again = h->pending.head != NULL;
        if (again)
            h->st = H_STARTING;
        pthread_mutex_unlock(&h->mu);
        log_info("plugin %s: idle plugin host stopped", p->id);
        if (again)
            start_async(h);
        return;
    }
    /* its coroutines are gone: the timers and waits it had in the core end */
    registry_forget_waits(p->reg, p);
    atomic_store(&p->state, PLUGIN_ERROR);
    plugin_set_error(p, "%s", reason);
    STAT_INC(plugin_hosts_deaths);
    struct plugin_hosts *m = h->m;
    if (h->up_since_ns && mono_ns() - h->up_since_ns > 60ull * 1000000000u)
        h->restarts = 0;           /* it ran a good while: a fresh run of bad luck */
    h->up_since_ns = 0;
    release_pending(h, false, reason);
    if (h->restarts >= m->restart_max) {
        log_error("plugin %s: %s; restarted %u times in a row, not again until the next reload "
                  "(plugins.host_restart_max)", p->id, reason, h->restarts);
        plugin_set_error(p, "%s; not restarted after %u restarts (plugins.host_restart_max)", reason,
                         h->restarts);
        return;
    }
    double delay = m->backoff_ms / 1000.0 * (double)(1u << (h->restarts < 16 ? h->restarts : 16));
    if (delay > 30)
        delay = 30;
    h->restarts++;
    log_warn("plugin %s: %s; restart %u of %u in %.0f ms", p->id, reason, h->restarts, m->restart_max,
             delay * 1000);
    if (m->loop) {
        ev_timer_stop(m->loop, &h->timer);
        ev_timer_set(&h->timer, delay, 0);
        ev_timer_start(m->loop, &h->timer);
    }
}

/* Reads and dispatches what the host sent; false at the channel's end or
 * when the host must go. */
/* Every whole frame already received. */
static bool drain_rx(struct plugin_host *h)
{
    struct host_frame f;
    long used;
    while ((used = host_frame_next((const char *)h->rx.buf + h->rx.start, rxbuf_pending(&h->rx), &f)) > 0) {
        h->rx.start += (size_t)used;
        if (!dispatch(h, &f, false))
            return false;
    }
    return used == 0 || violation(h, "a frame out of bounds");
}

static bool read_some(struct plugin_host *h)
{
    for (int round = 0; round < 64 && h->fd >= 0; round++) {
        size_t avail;
        uint8_t *space = rxbuf_space(&h->rx, 65536, &avail);
        if (!space)
            return false;
        ssize_t n = read(h->fd, space, avail);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 && errno == EAGAIN;   /* at the end, on_child reports the death */
        rxbuf_commit(&h->rx, (size_t)n);
        registry_job_begin();              /* finished events go to the core as one batch */
        bool ok = drain_rx(h);
        registry_job_end(h->p->reg);
        if (!ok)
            return false;
        if ((size_t)n < avail)
            return true;
    }
    return true;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct plugin_host *h = w->data;
    if (!read_some(h))
        unwatch(h);
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct plugin_host *h = w->data;
    ev_child_stop(loop, w);
    int st = w->rstatus;
    char why[96];
    if (WIFSIGNALED(st)) {
        const char *sig = sigabbrev_np(WTERMSIG(st));
        snprintf(why, sizeof why, "killed by SIG%s", sig ? sig : "?");
    } else {
        snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(st));
    }
    bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0 && h->st == H_STOPPING;
    if (strncmp(h->last_exit, "protocol", 8) != 0 || h->st != H_UP)
        snprintf(h->last_exit, sizeof h->last_exit, "%s", why);
    if (h->fd >= 0 && (h->st == H_UP || h->st == H_STOPPING)) {
        /* what it said before it died counts: its last results go on */
        fcntl(h->fd, F_SETFL, fcntl(h->fd, F_GETFL) | O_NONBLOCK);
        read_some(h);
    }
    if (h->st == H_STARTING && h->pid != w->rpid)
        return;                    /* an older process of a host already restarted */
    host_died(h, clean ? NULL : h->last_exit);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct plugin_host *h = w->data;
    pthread_mutex_lock(&h->mu);
    h->want_write = false;
    flush_locked(h);
    bool more = h->want_write;
    pthread_mutex_unlock(&h->mu);
    if (!more) {
        ev_io_stop(loop, w);
        h->wio_on = false;
    }
}

static void stop_host(struct plugin_host *h, bool idle)
{
    pthread_mutex_lock(&h->mu);
    if (h->st == H_UP) {
        h->st = H_STOPPING;
        h->idle_stop = idle;
        if (host_frame_simple(&h->tx, HK_STOP, 0, NULL, 0) == 0)
            flush_locked(h);
    }
    pthread_mutex_unlock(&h->mu);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct plugin_host *h = w->data;
    struct plugin_hosts *m = h->m;
    if (h->st == H_DOWN && h->dead && !h->retiring) {
        /* the backoff is over: restart */
        pthread_mutex_lock(&h->mu);
        h->st = H_STARTING;
        pthread_mutex_unlock(&h->mu);
        start_async(h);
        return;
    }
    if (h->st == H_UP && m->idle_s) {
        uint64_t quiet = mono_ns() - atomic_load(&h->last_activity_ns);
        pthread_mutex_lock(&h->mu);
        bool busy = h->nout || h->pending.head || h->pinned || h->tx.len;
        pthread_mutex_unlock(&h->mu);
        if (!busy && quiet >= (uint64_t)m->idle_s * 1000000000u)
            stop_host(h, true);
    }
}

/* Something was asked from another thread: write what was posted, start,
 * watch for writability, stop or free. */
static void wake(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct plugin_hosts *m = w->data;
    for (;;) {
        struct plugin_host *todo = NULL;
        enum { NONE, START, WRITE, STOP, FREE } what = NONE;
        pthread_mutex_lock(&m->mu);
        for (struct plugin_host *h = m->hosts; h && what == NONE; h = h->next) {
            pthread_mutex_lock(&h->mu);
            bool alone = atomic_load(&h->p->refs) <= 1;
            if (h->flush_queued) {
                h->flush_queued = false;
                flush_locked(h);
            }
            if (h->want_start) {
                h->want_start = false;
                what = START;
            } else if (h->want_write && !h->wio_on && h->fd >= 0) {
                what = WRITE;
            } else if (h->retiring && alone && h->st == H_UP) {
                what = STOP;
            } else if (h->retiring && alone && h->st == H_DOWN) {
                what = FREE;
            }
            pthread_mutex_unlock(&h->mu);
            if (what != NONE)
                todo = h;
        }
        pthread_mutex_unlock(&m->mu);
        if (!todo)
            return;
        if (what == START) {
            start_async(todo);
        } else if (what == WRITE) {
            ev_io_start(loop, &todo->wio);
            todo->wio_on = true;
        } else if (what == STOP) {
            stop_host(todo, false);
        } else {
            host_free(todo);
        }
    }
}

static void host_unpinned(struct plugin *p)
{
    struct plugin_host *h = p->host;
    if (h && h->retiring && h->m->loop)
        ev_async_send(h->m->loop, &h->m->wake);
}

void plugin_host_retire(struct plugin *p)
{
    struct plugin_host *h = p->host;
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->retiring = true;
    pthread_mutex_unlock(&h->mu);
    if (h->m->loop) {
        ev_timer_stop(h->m->loop, &h->timer);
        ev_async_send(h->m->loop, &h->m->wake);   /* the registry still holds a ref now */
    }
}

size_t plugin_hosts_outstanding(struct plugin_hosts *m)
{
    size_t n = 0;
    pthread_mutex_lock(&m->mu);
    for (struct plugin_host *h = m->hosts; h; h = h->next) {
        pthread_mutex_lock(&h->mu);
        n += h->nout + (h->pending.head != NULL);
        pthread_mutex_unlock(&h->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return n;
}

int plugin_host_status_json(struct plugin *p, struct buf *b)
{
    struct plugin_host *h = p->host;
    if (!h)
        return buf_puts(b, "\"host_pid\":null,\"host_state\":\"gone\",\"host_restarts\":0,\"host_last_exit\":null");
    pthread_mutex_lock(&h->mu);
    int rc = buf_printf(b, "\"host_pid\":%d,\"host_state\":\"%s\",\"host_restarts\":%u,\"host_last_exit\":",
                        h->st == H_DOWN ? -1 : (int)h->pid,
                        h->st == H_UP ? "up" : h->st == H_STARTING ? "starting" :
                        h->st == H_STOPPING ? "stopping" : h->dead ? "dead" : "idle",
                        h->restarts);
    rc |= buf_json_cstr(b, h->last_exit[0] ? h->last_exit : NULL);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void plugin_hosts_free(struct plugin_hosts *m)
{
    if (!m)
        return;
    /* a closed channel is the host's signal to run stop() and exit */
    for (struct plugin_host *h = m->hosts; h; h = h->next) {
        unwatch(h);
        if (m->loop) {
            ev_timer_stop(m->loop, &h->timer);
            ev_child_stop(m->loop, &h->child);
        }
        if (h->fd >= 0)
            close(h->fd);
        h->fd = -1;
    }
    uint64_t deadline = mono_ns() + 2000000000u;
    for (struct plugin_host *h = m->hosts; h; h = h->next) {
        while (h->pid > 0) {
            pid_t r = waitpid(h->pid, NULL, WNOHANG);
            if (r == h->pid || (r < 0 && errno == ECHILD)) {
                h->pid = -1;
            } else if (mono_ns() > deadline) {
                kill(h->pid, SIGKILL);
                waitpid(h->pid, NULL, 0);
                h->pid = -1;
            } else {
                struct timespec ts = {0, 5000000};
                nanosleep(&ts, NULL);
            }
        }
    }
    while (m->hosts) {
        struct plugin_host *h = m->hosts;
        pthread_mutex_lock(&h->mu);
        h->dead = true;
        struct envelope **out = out_take_all(h);
        struct envelope *pend = envlist_take(&h->pending);
        pthread_mutex_unlock(&h->mu);
        /* shutdown: they go on as far as they can; the spool still has them */
        for (size_t i = 0; out && out[i]; i++)
            bypass(h->p, out[i], "the daemon stopped before the plugin host answered");
        free(out);
        while (pend) {
            struct envelope *next = pend->next;
            pend->next = NULL;
            bypass(h->p, pend, "the daemon stopped before the plugin host started");
            pend = next;
        }
        host_free(h);
    }
    if (m->loop)
        ev_async_stop(m->loop, &m->wake);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
