/* plugin_host_link.c - the traffic on one plugin host's channel, daemon side:
 * work posted to an out-of-process plugin becomes frames (written in one
 * send per core-loop turn); events and commands are remembered until the
 * host answers; what the host sends is read, checked as untrusted input
 * and turned back into the pipeline's envelopes; its calls into the daemon
 * run in the stand-in plugin's own Lua state with the plugin's
 * permissions. A frame that breaks the rules ends the host.
 *
 * Threads: posting happens on any thread, under the host's mutex; reading
 * and the watchers belong to the core loop.
 *
 * Uses: plugin_host_proto, lua_pack, plugin, port (home_*), json_scan, event_json, libev. */
#include "daemon/plugin_host_link.h"
#include "wire/command_msg.h"
#include "wire/event_json.h"
#include "daemon/daemon.h"
#include "wire/json_scan.h"
#include "lib/log.h"
#include "runtime/lua_pack.h"
#include "runtime/plugin.h"
#include "runtime/port.h"
#include "lib/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_read(struct ev_loop *loop, ev_io *w, int revents);
static void on_write(struct ev_loop *loop, ev_io *w, int revents);

void plugin_host_link_watch(struct plugin_host *h)
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

void plugin_host_link_unwatch(struct plugin_host *h)
{
    struct ev_loop *loop = h->m->loop;
    if (loop && h->rio_on)
        ev_io_stop(loop, &h->rio);
    if (loop && h->wio_on)
        ev_io_stop(loop, &h->wio);
    h->rio_on = h->wio_on = false;
}

/* ---- the channel's write side (any thread, under h->mu) ---- */

void plugin_host_link_flush_locked(struct plugin_host *h)
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
struct envelope *plugin_host_link_take_all(struct plugin_host *h)
{
    struct envlist all = {NULL, NULL};       /* linked through next: nothing to allocate */
    for (size_t i = h->out_first; i < h->out_end; i++)
        if (h->out[i].e)
            envlist_push(&all, h->out[i].e);
    free(h->out);
    h->out = NULL;
    h->out_first = h->out_end = h->nout = h->capout = 0;
    return all.head;
}

static bool plugin_host_link_is_event(const struct envelope *e)
{
    return e->type == ENV_IPC_EVENT || e->type == ENV_MONITOR_EVENT;
}

static bool plugin_host_link_is_command(const struct envelope *e)
{
    return e->type == ENV_GUEST_CMD_REQ || e->type == ENV_APP_CMD_REQ;
}

/* What an envelope becomes when its plugin's host is not there to take it:
 * an event goes on (untouched, as past any plugin in Error, or with
 * strategyError when the host held it), a command is answered -6, the
 * rest is let go. */
void plugin_host_link_bypass(struct plugin *p, struct envelope *e, const char *why)
{
    if (plugin_host_link_is_event(e)) {
        if (why)
            plugin_strategy_failed(p, e, why);
        else
            plugin_strategy_done(p, e);
    } else if (plugin_host_link_is_command(e)) {
        plugin_command_done(p, e, CMD_HANDLER_ERROR,
                            why ? why : "the plugin offering this action is in Error", NULL, 0);
        envelope_free(e);
    } else {
        envelope_free(e);
    }
}

/* The answer to a call a host made (a wait's result, a timer firing):
 * a process that died took the call with it, and its successor numbers
 * its own calls from 1 again, so an older run's answer would resume the
 * wrong call. Under h->mu. */
static bool stale_locked(struct plugin_host *h, const struct envelope *e)
{
    return (e->type == ENV_WAIT_DONE || e->type == ENV_TIMER_FIRE) && e->plugin_host_run != atomic_load(&h->gen);
}

void plugin_host_link_post(struct plugin *p, struct envelope *e)
{
    struct plugin_host *h = p->host;
    pthread_mutex_lock(&h->mu);
    if (stale_locked(h, e)) {
        pthread_mutex_unlock(&h->mu);
        STAT_INC(plugin_hosts_stale_results);
        envelope_free(e);
        return;
    }
    if (h->st == H_DOWN && !h->dead && !h->retiring && atomic_load(&p->state) == PLUGIN_ACTIVE) {
        h->want_start = true;      /* idle: started again on demand */
        h->st = H_STARTING;
        if (h->m->loop)
            ev_async_send(h->m->loop, &h->m->wake);
    }
    if (h->st == H_STARTING || (h->st == H_STOPPING && h->idle_stop)) {
        /* an idle host on its way out takes nothing new: it is started
         * again when it has gone, and this goes to the new one */
        envlist_push(&h->pending, e);
        pthread_mutex_unlock(&h->mu);
        return;
    }
    if (h->st == H_DOWN || h->dead) {
        pthread_mutex_unlock(&h->mu);
        plugin_host_link_bypass(p, e, NULL);
        return;
    }
    uint32_t rid = ++h->next_rid;
    size_t before = h->tx.len;
    if (plugin_host_put_env(&h->tx, rid, e) < 0) {
        h->tx.len = before;
        pthread_mutex_unlock(&h->mu);
        plugin_host_link_bypass(p, e, "the plugin host's channel is out of memory");
        return;
    }
    atomic_store(&h->last_activity_ns, mono_ns());
    if (plugin_host_link_is_event(e) || plugin_host_link_is_command(e)) {
        if (!out_add(h, rid, e)) {
            h->tx.len = before;    /* could not remember it: take the frame back */
            pthread_mutex_unlock(&h->mu);
            plugin_host_link_bypass(p, e, "out of memory");
            return;
        }
        e = NULL;
    }
    /* one write for everything posted before the core loop next turns:
     * a batch of events routed together crosses in one send */
    if (!h->m->loop) {
        plugin_host_link_flush_locked(h);
    } else if (!h->flush_queued) {
        h->flush_queued = true;
        ev_async_send(h->m->loop, &h->m->wake);
    }
    pthread_mutex_unlock(&h->mu);
    envelope_free(e);
}

/* gen: the run of the host that made the call; a later run never sees
 * the answer (see stale_locked). */
static void send_frame(struct plugin_host *h, uint8_t kind, uint32_t id, uint32_t gen, const void *body,
                       size_t len)
{
    pthread_mutex_lock(&h->mu);
    if (gen != atomic_load(&h->gen)) {
        pthread_mutex_unlock(&h->mu);
        STAT_INC(plugin_hosts_stale_results);
        return;
    }
    if (plugin_host_frame_simple(&h->tx, kind, id, body, len) == 0)
        plugin_host_link_flush_locked(h);
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
        return luaL_error(L, "no such call: polaris.%s", e->rpc.fn);
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
             (name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= '0' && name[i] <= '9');
    return ok;
}

void plugin_host_link_rpc(struct plugin *p, struct envelope *e)
{
    struct plugin_host *h = p->host;
    struct buf out = BUF_INIT;
    bool ok = false;
    buf_putc(&out, 0);
    if (strcmp(e->rpc.fn, "require") == 0) {
        char chunk[600], err[300];
        struct buf src = BUF_INIT;
        if (!module_name_ok(e->data, e->len)) {
            buf_puts(&out, "usage: require(\"name.name\"): words of letters, digits and _ joined by dots");
        } else if (home_module_source(p->home, p, e->data, &src, chunk, sizeof chunk, err, sizeof err) < 0) {
            buf_puts(&out, err);
        } else {
            ok = buf_printf(&out, "%s\n", chunk) == 0 && buf_append(&out, src.p, src.len) == 0;
        }
        buf_free(&src);
    } else if (p->sb.L) {
        lua_State *L = p->sb.L;
        int base = lua_gettop(L);
        lua_pushcfunction(L, rpc_protected);
        lua_pushstring(L, e->rpc.fn);
        lua_pushlightuserdata(L, e);
        if (lua_pcall(L, 2, LUA_MULTRET, 0) == LUA_OK) {
            char err[256];
            ok = lua_pack(L, base + 1, lua_gettop(L) - base, &out, err, sizeof err) == 0;
            if (!ok) {
                out.len = 1;
                buf_printf(&out, "polaris.%s: %s", e->rpc.fn, err);
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
    send_frame(h, HK_RPC_REPLY, e->rpc.call, e->plugin_host_run, out.p ? out.p : "", out.len);
    buf_free(&out);
    envelope_free(e);
}

/* ---- frames from the host (core loop) ---- */

static bool plugin_host_link_violation(struct plugin_host *h, const char *what)
{
    log_error("plugin %s: plugin host %d broke the channel protocol (%s); ending it",
              h->p->id, (int)h->pid, what);
    pthread_mutex_lock(&h->mu);
    snprintf(h->last_exit, sizeof h->last_exit, "protocol violation: %s", what);
    pthread_mutex_unlock(&h->mu);
    STAT_INC(plugin_hosts_violations);
    if (h->pid > 0)
        kill(h->pid, SIGKILL);
    return false;
}

static bool on_result(struct plugin_host *h, const struct plugin_host_frame *f)
{
    struct plugin_host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    uint8_t verdict;
    uint64_t event_id;
    if (!plugin_host_get_u8(&r, &verdict) || !plugin_host_get_u64(&r, &event_id) || verdict > HV_DROP)
        return plugin_host_link_violation(h, "a malformed strategy result");
    pthread_mutex_lock(&h->mu);
    struct envelope *e = out_take(h, f->id);
    pthread_mutex_unlock(&h->mu);
    struct plugin *p = h->p;
    if (!e || !plugin_host_link_is_event(e)) {
        if (e)
            plugin_host_link_bypass(p, e, "the plugin host answered a command as an event");
        return plugin_host_link_violation(h, "a result for no event it holds");
    }
    if (verdict == HV_DROP) {
        STAT_INC(core_events_dropped_by_strategy);
        home_chain_drop(p->home, e);
        return true;
    }
    if (verdict == HV_PASS) {
        plugin_strategy_done(p, e);
        return true;
    }
    /* a rewritten event: an object whose eventId is the one stated */
    const char *json = (const char *)r.p;
    size_t len = (size_t)(r.end - r.p);
    uint64_t id;
    if (event_json_rewritten_id(json, len, &id) < 0 || id != event_id) {
        plugin_strategy_failed(p, e, "the plugin host returned an event that is not a JSON object with its eventId");
        return plugin_host_link_violation(h, "an invalid rewritten event");
    }
    struct envelope *ne = envelope_rewrite(e, json, len);
    if (!ne) {
        plugin_strategy_failed(p, e, "out of memory");
        return true;
    }
    ne->ev.id = id;
    plugin_strategy_done(p, ne);
    return true;
}

static bool on_cmd_result(struct plugin_host *h, const struct plugin_host_frame *f)
{
    struct plugin_host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    uint32_t code;
    if (!plugin_host_get_u32(&r, &code))
        return plugin_host_link_violation(h, "a malformed command result");
    pthread_mutex_lock(&h->mu);
    struct envelope *req = out_take(h, f->id);
    pthread_mutex_unlock(&h->mu);
    if (!req || !plugin_host_link_is_command(req)) {
        if (req)
            plugin_host_link_bypass(h->p, req, "the plugin host answered an event as a command");
        return plugin_host_link_violation(h, "a command result for no command it holds");
    }
    int64_t c;
    const char *msg, *data;
    size_t msg_len, data_len;
    int32_t sc = (int32_t)code;
    if (cmd_result_parse((const char *)r.p, (size_t)(r.end - r.p), &c, &msg, &msg_len, &data, &data_len) < 0 ||
        c != sc || (sc < 0 && sc != CMD_BAD_REQUEST && sc != CMD_HANDLER_ERROR && sc != CMD_UNKNOWN_ACTION)) {
        plugin_command_done(h->p, req, CMD_HANDLER_ERROR, "the plugin host sent an invalid result", NULL, 0);
        envelope_free(req);
        return plugin_host_link_violation(h, "an invalid command result");
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

static bool on_wait(struct plugin_host *h, const struct plugin_host_frame *f, bool cancel)
{
    struct plugin *p = h->p;
    struct envelope *e;
    if (cancel) {
        e = envelope_new(ENV_WAIT_CANCEL, NULL, 0);
    } else {
        struct plugin_host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
        uint32_t kind, ms, fn_ref;
        char action[48];
        if (!plugin_host_get_u32(&r, &kind) || !plugin_host_get_u32(&r, &ms) || !plugin_host_get_u32(&r, &fn_ref) ||
            !plugin_host_get_bytes(&r, action, sizeof action) || !memchr(action, 0, sizeof action) ||
            kind < WAIT_SLEEP || kind > WAIT_GUEST || ms > 3600000)
            return plugin_host_link_violation(h, "a malformed wait");
        /* the host checked these too; a host that did not is not ours */
        if ((kind == WAIT_EXEC && !(p->perms & PERM_EXEC)) ||
            (kind == WAIT_GUEST && !(p->perms & PERM_VM_WRITE)))
            return plugin_host_link_violation(h, "a wait its plugin has no permission for");
        size_t len = (size_t)(r.end - r.p);
        const char *err;
        if (len && json_validate((const char *)r.p, len, &err) == JSON_INVALID)
            return plugin_host_link_violation(h, "a wait with invalid JSON");
        e = envelope_new(ENV_WAIT_REQ, r.p, len);
        if (e) {
            e->wait.kind = (uint8_t)kind;
            e->wait.ms = ms;
            e->wait.fn_ref = (int32_t)fn_ref;
            memcpy(e->cmd.action, action, sizeof action);
        }
    }
    if (!e)
        return true;
    plugin_ref(p);
    e->plugin = p;
    e->wait.op = f->id;
    e->plugin_host_run = atomic_load(&h->gen);
    snprintf(e->from, sizeof e->from, "%s", p->id);
    home_to_core(p->home, e);
    return true;
}

static bool on_stats(struct plugin_host *h, const struct plugin_host_frame *f)
{
    struct plugin_host_stats s;
    const char *jerr;
    if (!plugin_host_get_stats(f, &s))
        return plugin_host_link_violation(h, "malformed stats");
    /* status() text goes into `polarisctl status` as it is: it must be JSON */
    if (s.status[0] && json_validate(s.status, strlen(s.status), &jerr) == JSON_INVALID)
        return plugin_host_link_violation(h, "a status() result that is not JSON");
    struct plugin *p = h->p;
    atomic_store(&p->events, s.events);
    atomic_store(&p->commands, s.commands);
    atomic_store(&p->messages, s.messages);
    atomic_store(&p->errors, s.errors);
    atomic_store(&p->remote_mem, s.mem_used);
    atomic_store(&p->remote_cpu_ns, s.cpu_ns);
    h->pinned = s.pinned;
    atomic_store(&p->remote_refused, s.refused);
    atomic_store(&p->ignored_edits, s.ignored_edits);
    _Static_assert(sizeof s.status == sizeof p->status_json, "status() text fits the stats frame");
    pthread_mutex_lock(&p->mu);
    memcpy(p->status_json, s.status, sizeof p->status_json);
    pthread_mutex_unlock(&p->mu);
    if (s.last_error[0])
        plugin_set_error(p, "%s", s.last_error);
    if (s.state == PLUGIN_ERROR && atomic_load(&p->state) == PLUGIN_ACTIVE)
        atomic_store(&p->state, PLUGIN_ERROR);   /* it failed max_consecutive_errors times */
    return true;
}

/* One frame; false when the host must go. during_load: READY and FAILED
 * are the caller's, and on the first load calls run right here. */
bool plugin_host_link_dispatch(struct plugin_host *h, const struct plugin_host_frame *f, bool during_load)
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
        struct plugin_host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
        uint8_t nlen;
        char name[48];
        if (!plugin_host_get_u8(&r, &nlen) || nlen == 0 || nlen >= sizeof name ||
            !plugin_host_get_bytes(&r, name, nlen))
            return plugin_host_link_violation(h, "a malformed call");
        name[nlen] = '\0';
        if (strcmp(name, "require") != 0 && !rpc_name_ok(name))
            return plugin_host_link_violation(h, "a call outside the plugin API");
        struct envelope *e = envelope_new(ENV_HOST_RPC, r.p, (size_t)(r.end - r.p));
        if (!e)
            return plugin_host_link_violation(h, "out of memory for a call");
        memcpy(e->rpc.fn, name, (size_t)nlen + 1);
        e->rpc.call = f->id;
        e->plugin_host_run = atomic_load(&h->gen);
        if (during_load && h->first_load)
            plugin_host_link_rpc(h->p, e);
        else
            plugin_post(h->p, e);               /* the stand-in's mailbox: a worker runs it */
        return true;
    }
    case HK_RESULT:
        return !during_load ? on_result(h, f) : plugin_host_link_violation(h, "a result before READY");
    case HK_CMD_RESULT:
        return !during_load ? on_cmd_result(h, f) : plugin_host_link_violation(h, "a result before READY");
    case HK_WAIT:                  /* timers may be set while loading */
        return on_wait(h, f, false);
    case HK_CANCEL:
        return on_wait(h, f, true);
    default:
        return plugin_host_link_violation(h, "an unknown or misplaced frame");
    }
}

/* Reads and dispatches what the host sent; false at the channel's end or
 * when the host must go. */
/* Every whole frame already received. */
bool plugin_host_link_drain(struct plugin_host *h)
{
    struct plugin_host_frame f;
    long used;
    while ((used = plugin_host_frame_next((const char *)h->rx.buf + h->rx.start, rxbuf_pending(&h->rx), &f)) > 0) {
        h->rx.start += (size_t)used;
        if (!plugin_host_link_dispatch(h, &f, false))
            return false;
    }
    return used == 0 || plugin_host_link_violation(h, "a frame out of bounds");
}

bool plugin_host_link_read(struct plugin_host *h)
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
        home_job_begin(NULL);          /* finished events go to the core as one batch */
        bool ok = plugin_host_link_drain(h);
        home_job_end(h->p->home);
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
    if (!plugin_host_link_read(h))
        plugin_host_link_unwatch(h);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct plugin_host *h = w->data;
    pthread_mutex_lock(&h->mu);
    h->want_write = false;
    plugin_host_link_flush_locked(h);
    bool more = h->want_write;
    pthread_mutex_unlock(&h->mu);
    if (!more) {
        ev_io_stop(loop, w);
        h->wio_on = false;
    }
}
