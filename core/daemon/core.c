/* core.c - the core domain (DESIGN 2, 3.3).
 *
 * Runs on the main thread's default libev loop, which also owns the signal
 * watchers. It takes every envelope the other domains produce and decides
 * where it goes: events to the guest link (strategies will sit here), host
 * commands to the worker pool with a deadline, app commands for the guest to
 * the guest link with a deadline, and every answer back to whoever asked.
 * A command whose deadline passes is answered -2 at once; its late result is
 * discarded. The core also runs reload (SIGHUP) and orderly shutdown
 * (SIGTERM): ingress stops first, then the workers, then the guest link
 * drains within the grace period.
 *
 * Uses: envq, worker_pool, plugin_registry (routing, status), plugin_wait,
 * plugin_host, guest_link and ipc_server (their queues), command_msg,
 * spool, stats, sd_notify. */
#include "daemon/core.h"
#include "lib/version.h"
#include "wire/command_msg.h"
#include "daemon/guest_link.h"
#include "daemon/plugin_host.h"
#include "daemon/plugin_registry.h"
#include "daemon/plugin_wait.h"
#include "daemon/ipc_server.h"
#include "wire/json_scan.h"
#include "lib/log.h"
#include "lib/sd_notify.h"
#include "daemon/spool.h"
#include "lib/stats.h"
#include "daemon/worker_pool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pending {
    struct pending *next, *prev;
    struct core *core;
    uint32_t id;                /* exec id (host) or the H2G seq_id (guest) */
    uint8_t origin;
    bool to_guest;
    uint32_t conn_id, req_id;
    ev_timer timer;
    char action[CMD_ACTION_MAX];
};

enum phase { RUNNING, STOPPING_INGRESS, STOPPING_WORKERS, STOPPING_EGRESS };

/* A plugin's polaris.guest.request waiting for its answer: the command's
 * conn_id is this token; the answer resumes the plugin's parked call. */
struct plugin_req {
    struct plugin_req *next;
    uint32_t token;
    struct plugin *plugin;      /* a ref */
    uint32_t op;
    uint32_t plugin_host_run;
};

struct core {
    struct daemon *d;
    struct ev_loop *loop;
    ev_async inbox_w;
    ev_signal sigterm_w, sigint_w, sighup_w;
    struct pending host, guest;         /* list heads */
    unsigned n_host, n_guest;
    uint32_t next_exec_id, next_h2g_seq;
    bool guest_connected;
    enum phase phase;
    config_loader load;
    void *load_ctx;
    struct waits *waits;
    struct plugin_req *plugin_reqs;
    uint32_t next_token;
    struct buf scratch, scratch2;
    ev_timer hosts_w;                   /* shutdown: waiting for plugin hosts' answers */
    uint64_t hosts_deadline_ns;
    struct envlist held;                /* events for the guest link while its buffer is full */
    size_t nheld;
    bool ingress_paused;                /* the ingress found core_q full and waits for room */
    /* a reload builds the new plugin set on a thread of its own */
    struct reload_job *reload;          /* running, or NULL */
    bool reload_again;                  /* asked for while one ran */
    struct reload_waiter *waiters, *waiters_next;   /* control requests, answered at the commit */
};

/* A reload in progress: the plugins are built and initialised on its own
 * thread (registry_prepare), the swap happens on the core's (commit), so
 * a slow init() delays nothing else (DESIGN 5.5). */
struct reload_job {
    struct core *c;
    pthread_t thread;
    struct config *cfg;                 /* a ref, for the thread */
    struct buf report;
    struct reload *rl;
    struct envelope *done;              /* ENV_RELOAD_DONE, made before the thread starts */
};

struct reload_waiter {
    struct reload_waiter *next;
    uint8_t origin;
    uint32_t conn_id, req_id;
};

static void list_init(struct pending *head)
{
    head->next = head->prev = head;
}

static void list_add(struct pending *head, struct pending *p)
{
    p->next = head;
    p->prev = head->prev;
    head->prev->next = p;
    head->prev = p;
}

static void list_del(struct pending *p)
{
    p->prev->next = p->next;
    p->next->prev = p->prev;
}

static struct pending *list_find(struct pending *head, uint32_t id)
{
    for (struct pending *p = head->next; p != head; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

/* Sends a finished CommandResult JSON to whoever asked. */
static void deliver(struct core *c, uint8_t origin, uint32_t conn_id, uint32_t req_id,
                    const char *json, size_t len)
{
    if (origin == ORIGIN_APP) {
        struct envelope *e = envelope_new(ENV_APP_CMD_RESP, json, len);
        if (!e)
            return;
        e->cmd.conn_id = conn_id;
        e->cmd.req_id = req_id;
        envq_push_force(&c->d->ingress_q, e);
    } else if (origin == ORIGIN_GUEST) {
        struct envelope *e = envelope_new(ENV_H2G_CMD_RESP, json, len);
        if (!e)
            return;
        e->cmd.req_id = req_id;
        envq_push_force(&c->d->egress_q, e);
    } else if (origin == ORIGIN_PLUGIN) {
        struct plugin_req **pp = &c->plugin_reqs;
        while (*pp && (*pp)->token != conn_id)
            pp = &(*pp)->next;
        struct plugin_req *r = *pp;
        if (!r)
            return;
        *pp = r->next;
        struct envelope *e = envelope_new(ENV_WAIT_DONE, json, len);
        if (e) {
            e->wait.op = r->op;
            e->plugin_host_run = r->plugin_host_run;
            plugin_post(r->plugin, e);
        }
        plugin_unref(r->plugin);
        free(r);
    }
}

static void answer(struct core *c, uint8_t origin, uint32_t conn_id, uint32_t req_id,
                   int code, const char *msg, const char *data, size_t data_len)
{
    struct buf *b = &c->scratch2;
    buf_reset(b);
    if (cmd_result_write(b, req_id, code, msg, data, data_len) == 0)
        deliver(c, origin, conn_id, req_id, b->p, b->len);
}

static void count_code(int code)
{
    switch (code) {
    case CMD_UNKNOWN_ACTION: STAT_INC(commands_unknown_action); break;
    case CMD_TIMEOUT: STAT_INC(commands_timeouts); break;
    case CMD_GUEST_ABSENT: STAT_INC(commands_guest_absent); break;
    case CMD_BAD_REQUEST: STAT_INC(commands_bad_requests); break;
    case CMD_DENIED: STAT_INC(commands_denied); break;
    case CMD_HANDLER_ERROR: STAT_INC(commands_handler_errors); break;
    case CMD_BUSY: STAT_INC(commands_busy); break;
    default: break;
    }
}

static void refuse(struct core *c, const struct envelope *e, int code, const char *msg)
{
    count_code(code);
    answer(c, e->cmd.origin, e->cmd.conn_id, e->cmd.req_id, code, msg, NULL, 0);
}

static void pending_free(struct core *c, struct pending *p)
{
    ev_timer_stop(c->loop, &p->timer);
    list_del(p);
    if (p->to_guest) {
        c->n_guest--;
        STAT_SET(commands_inflight_guest, c->n_guest);
    } else {
        c->n_host--;
        STAT_SET(commands_inflight_host, c->n_host);
    }
    free(p);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct pending *p = w->data;
    struct core *c = p->core;
    log_info("command %s (%s) timed out", p->action, p->to_guest ? "to the guest" : "on the host");
    count_code(CMD_TIMEOUT);
    answer(c, p->origin, p->conn_id, p->req_id, CMD_TIMEOUT, NULL, NULL, 0);
    pending_free(c, p);
}

/* The request's own timeout, or the default, never above the maximum. */
static uint32_t deadline_ms(const struct core *c, const struct envelope *e)
{
    const struct config *cfg = c->d->cfg;
    uint32_t ms = e->cmd.timeout_ms ? e->cmd.timeout_ms : cfg->cmd_default_timeout_ms;
    return ms > cfg->cmd_max_timeout_ms ? cfg->cmd_max_timeout_ms : ms;
}

static struct pending *pending_new(struct core *c, const struct envelope *e, bool to_guest, uint32_t id)
{
    struct pending *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    uint32_t ms = deadline_ms(c, e);
    p->core = c;
    p->id = id;
    p->origin = e->cmd.origin;
    p->to_guest = to_guest;
    p->conn_id = e->cmd.conn_id;
    p->req_id = e->cmd.req_id;
    memcpy(p->action, e->cmd.action, sizeof p->action);
    ev_timer_init(&p->timer, deadline_cb, ms / 1000.0, 0.);
    p->timer.data = p;
    ev_timer_start(c->loop, &p->timer);
    if (to_guest) {
        list_add(&c->guest, p);
        c->n_guest++;
        STAT_SET(commands_inflight_guest, c->n_guest);
    } else {
        list_add(&c->host, p);
        c->n_host++;
        STAT_SET(commands_inflight_host, c->n_host);
    }
    return p;
}

static int status_json(struct core *c, struct buf *b)
{
    uint64_t up = (mono_ns() - c->d->started_mono_ns) / 1000000000u;
    int rc = buf_puts(b, "{\"version\":");
    rc |= buf_json_cstr(b, polaris_version);
    rc |= buf_puts(b, ",\"git\":");
    rc |= buf_json_cstr(b, polaris_git_rev);
    rc |= buf_printf(b, ",\"pid\":%d,\"uptime_s\":%llu,\"config\":", (int)getpid(),
                     (unsigned long long)up);
    rc |= buf_json_cstr(b, c->d->cfg->file[0] ? c->d->cfg->file : NULL);
    rc |= buf_puts(b, ",\"guest_uri\":");
    rc |= buf_json_cstr(b, guest_link_uri(c->d->guest));
    rc |= buf_puts(b, ",\"ipc_socket\":");
    rc |= buf_json_cstr(b, c->d->cfg->ipc_path);
    rc |= buf_printf(b, ",\"core_queue\":{\"length\":%zu,\"in_strategies\":%zu,\"max\":%u,"
                     "\"high_water\":%zu,\"held_for_guest\":%zu},",
                     envq_count(&c->d->core_q), atomic_load(&c->d->core_q.outside) - c->nheld,
                     c->d->cfg->core_queue_max, c->d->core_q.high_water, c->nheld);
    /* the counters, one object per group */
    struct buf tmp = BUF_INIT;
    rc |= stats_append_json(&tmp);
    if (tmp.p)
        rc |= buf_append(b, tmp.p, tmp.len);
    buf_free(&tmp);
    rc |= buf_puts(b, ",\"plugins\":");
    rc |= registry_status_json(c->d->plugins, b);
    rc |= buf_puts(b, ",\"plugins_leaving\":");
    rc |= registry_leaving_json(c->d->plugins, b);
    rc |= buf_putc(b, '}');
    return rc ? -1 : 0;
}

static int do_reload(struct core *c, char *err, size_t errlen);

static void answer_waiters_refused(struct core *c, const char *why)
{
    while (c->waiters) {
        struct reload_waiter *w = c->waiters;
        c->waiters = w->next;
        count_code(CMD_HANDLER_ERROR);
        answer(c, w->origin, w->conn_id, w->req_id, CMD_HANDLER_ERROR, why, NULL, 0);
        free(w);
    }
}

/* The built set goes in (the core thread), and whoever asked is answered. */
static void reload_finish(struct core *c, struct reload_job *j)
{
    int failed = registry_commit(c->d->plugins, j->rl);
    log_info("configuration reloaded; %d plugin%s failed", failed, failed == 1 ? "" : "s");
    registry_notify_ready(c->d->plugins);
    struct buf data = BUF_INIT;
    buf_printf(&data, "{\"reloaded\":true,\"failed\":%d,\"plugins\":", failed);
    buf_append(&data, j->report.p ? j->report.p : "[]", j->report.p ? j->report.len : 2);
    buf_putc(&data, '}');
    while (c->waiters) {
        struct reload_waiter *w = c->waiters;
        c->waiters = w->next;
        answer(c, w->origin, w->conn_id, w->req_id, 0, failed ? "reloaded; some plugins failed" : NULL,
               data.p, data.len);
        free(w);
    }
    buf_free(&data);
    buf_free(&j->report);
}

static void reload_done(struct core *c, struct reload_job *j)
{
    pthread_join(j->thread, NULL);
    c->reload = NULL;
    reload_finish(c, j);
    config_unref(j->cfg);
    free(j);
    /* asked for again meanwhile: once more, with what is on disk now */
    c->waiters = c->waiters_next;
    c->waiters_next = NULL;
    bool again = c->reload_again && c->phase == RUNNING;
    c->reload_again = false;
    char err[512];
    if (!again)
        answer_waiters_refused(c, "the daemon is stopping");
    else if (do_reload(c, err, sizeof err) < 0)
        answer_waiters_refused(c, err);
}

/* Shutdown: a reload still building finishes first (it holds plugins). */
static void reload_wait(struct core *c)
{
    if (!c->reload)
        return;
    log_info("shutdown: waiting for the reload in progress");
    struct reload_job *j = c->reload;
    pthread_join(j->thread, NULL);
    c->reload = NULL;
    c->reload_again = false;
    reload_finish(c, j);
    config_unref(j->cfg);
    /* its done notice is on the core queue, pointing at j: left there as
     * nothing (see ENV_RELOAD_DONE) */
    memset(j->done->data, 0, sizeof j);
    free(j);
    c->waiters = c->waiters_next;
    c->waiters_next = NULL;
    answer_waiters_refused(c, "the daemon is stopping");
}

static void *reload_main(void *arg)
{
    struct reload_job *j = arg;
    j->rl = registry_prepare(j->c->d->plugins, j->cfg, &j->report);
    sandbox_thread_end();
    envq_push_force(&j->c->d->core_q, j->done);   /* the core commits it */
    return NULL;
}

/* Re-reads the config and starts building the plugins on a thread; the
 * core goes on. Returns 0, or -1 with err set when the config itself is
 * refused (nothing changes then). */
static int do_reload(struct core *c, char *err, size_t errlen)
{
    if (c->reload) {
        c->reload_again = true;            /* after this one, with what is on disk then */
        err[0] = '\0';
        return 0;
    }
    sd_notify_send("RELOADING=1");
    struct config *nc = c->load(c->load_ctx, err, errlen);
    if (!nc) {
        log_error("reload failed, keeping the running configuration: %s", err);
        sd_notify_send("READY=1");
        return -1;
    }
    struct config *old = c->d->cfg;
    if (strcmp(old->ipc_path, nc->ipc_path) != 0 || strcmp(old->guest_uri, nc->guest_uri) != 0)
        log_warn("reload: socket paths and the guest URI change only on restart");
    c->d->cfg = nc;
    log_set_level(nc->log_level);
    log_set_burst(nc->log_burst);
    struct envelope *e1 = envelope_new(ENV_CTL_RELOAD, &nc, sizeof nc);
    struct envelope *e2 = envelope_new(ENV_CTL_RELOAD, &nc, sizeof nc);
    if (e1) {
        config_ref(nc);
        envq_push_force(&c->d->ingress_q, e1);
    }
    if (e2) {
        config_ref(nc);
        envq_push_force(&c->d->egress_q, e2);
    }
    config_unref(old);
    err[0] = '\0';
    registry_configure_hosts(c->d->plugins, nc);
    struct reload_job *j = calloc(1, sizeof *j);
    struct reload_job *jp = j;
    if (j && !(j->done = envelope_new(ENV_RELOAD_DONE, &jp, sizeof jp))) {
        free(j);
        j = NULL;
    }
    if (j) {
        j->c = c;
        j->cfg = config_ref(nc);
        j->report = (struct buf)BUF_INIT;
        /* its signals stay with the core thread, as every other thread's */
        if (pthread_create(&j->thread, NULL, reload_main, j) == 0) {
            pthread_setname_np(j->thread, "reload");
            c->reload = j;
            return 0;
        }
        config_unref(j->cfg);
        envelope_free(j->done);
        free(j);
    }
    /* no thread to be had: on this one, as before */
    log_warn("reload: no thread for it; building the plugins on the core thread");
    struct reload_job tmp = {.c = c, .report = BUF_INIT};
    tmp.rl = registry_prepare(c->d->plugins, nc, &tmp.report);
    reload_finish(c, &tmp);
    return 0;
}

static void control_request(struct core *c, struct envelope *e)
{
    if (e->uid != getuid() && e->uid != 0) {
        STAT_INC(ipc_control_denied);
        refuse(c, e, CMD_DENIED, "permission denied: control actions need the daemon's uid or root");
        return;
    }
    if (strcmp(e->cmd.action, "status") == 0) {
        buf_reset(&c->scratch);
        if (status_json(c, &c->scratch) < 0)
            refuse(c, e, CMD_HANDLER_ERROR, "out of memory");
        else
            answer(c, e->cmd.origin, e->cmd.conn_id, e->cmd.req_id, 0, NULL, c->scratch.p, c->scratch.len);
        return;
    }
    if (strcmp(e->cmd.action, "unload") == 0) {
        struct json_member m[4];
        const char *jerr;
        int n = json_object_members(e->data, e->len, m, 4, &jerr);
        const struct json_member *id = n > 0 ? json_find(m, (size_t)(n > 4 ? 4 : n), "id") : NULL;
        char idv[64];
        if (!id || id->kind != JSON_STRING || json_string_decode(id->val, id->val_len, idv, sizeof idv) < 0) {
            refuse(c, e, CMD_BAD_REQUEST, "bad request: unload needs args {\"id\": \"<plugin id>\"}");
            return;
        }
        if (c->reload) {
            /* the set being built was planned from the running one */
            refuse(c, e, CMD_BUSY, "busy: a reload is in progress; try again when it is done");
            return;
        }
        int rc = registry_unload(c->d->plugins, idv);
        if (rc == -1)
            refuse(c, e, CMD_BAD_REQUEST, "bad request: no such plugin");
        else if (rc < 0)
            refuse(c, e, CMD_HANDLER_ERROR, "out of memory");
        else
            answer(c, e->cmd.origin, e->cmd.conn_id, e->cmd.req_id, 0, NULL, "{\"unloaded\":true}", 17);
        return;
    }
    /* reload: answered when the new set is in (reload_finish) */
    struct reload_waiter *w = calloc(1, sizeof *w);
    if (!w) {
        refuse(c, e, CMD_HANDLER_ERROR, "out of memory");
        return;
    }
    w->origin = e->cmd.origin;
    w->conn_id = e->cmd.conn_id;
    w->req_id = e->cmd.req_id;
    bool running = c->reload != NULL;
    struct reload_waiter **list = running ? &c->waiters_next : &c->waiters;
    w->next = *list;
    *list = w;
    char err[512];
    if (do_reload(c, err, sizeof err) < 0) {
        *list = w->next;
        free(w);
        refuse(c, e, CMD_HANDLER_ERROR, err);
    }
}

/* Host command from the guest or an app; takes e. */
static void host_command(struct core *c, struct envelope *e)
{
    const struct config *cfg = c->d->cfg;
    if (e->cmd.origin == ORIGIN_APP && cmd_action_reserved(e->cmd.action)) {
        control_request(c, e);
        envelope_free(e);
        return;
    }
    if (e->cmd.origin == ORIGIN_GUEST &&
        ((cfg->guest_allow.n && !str_list_has(&cfg->guest_allow, e->cmd.action)) ||
         str_list_has(&cfg->guest_block, e->cmd.action))) {
        log_warn("guest asked for '%s', which the command policy blocks", e->cmd.action);
        refuse(c, e, CMD_DENIED, "permission denied: action blocked by policy");
        envelope_free(e);
        return;
    }
    struct plugin *p = c->phase < STOPPING_WORKERS ? registry_command(c->d->plugins, e->cmd.action) : NULL;
    if (!p) {
        refuse(c, e, CMD_UNKNOWN_ACTION, NULL);
        envelope_free(e);
        return;
    }
    if (c->n_host >= cfg->max_inflight_host) {
        refuse(c, e, CMD_BUSY, NULL);
        envelope_free(e);
        plugin_unref(p);
        return;
    }
    uint32_t id = ++c->next_exec_id;
    if (!pending_new(c, e, false, id)) {
        refuse(c, e, CMD_HANDLER_ERROR, "out of memory");
        envelope_free(e);
        plugin_unref(p);
        return;
    }
    log_info("command %s from %s (pid %d uid %u)", e->cmd.action,
             e->cmd.origin == ORIGIN_GUEST ? "the guest" : "an app", (int)e->pid, (unsigned)e->uid);
    e->cmd.session = id;
    plugin_post(p, e);
    plugin_unref(p);
}

/* A host handler's answer for its pending command; reads e. */
static void exec_result(struct core *c, struct envelope *e)
{
    struct pending *p = list_find(&c->host, e->cmd.session);
    if (!p) {
        STAT_INC(commands_late_results);
        log_info("discarding the late result of command %s", e->cmd.action);
        return;
    }
    count_code(e->cmd.code);
    if (e->len)
        deliver(c, p->origin, p->conn_id, p->req_id, e->data, e->len);
    else
        answer(c, p->origin, p->conn_id, p->req_id, CMD_HANDLER_ERROR, NULL, NULL, 0);
    pending_free(c, p);
}

/* A command for the guest (an app's or a plugin's): a pending session and
 * an H2G frame of its own; reads e. */
static void guest_command(struct core *c, struct envelope *e)
{
    STAT_INC(commands_to_guest);
    if (!c->guest_connected) {
        refuse(c, e, CMD_GUEST_ABSENT, NULL);
        return;
    }
    if (c->n_guest >= c->d->cfg->max_inflight_guest) {
        refuse(c, e, CMD_BUSY, NULL);
        return;
    }
    uint32_t seq = ++c->next_h2g_seq;
    struct pending *p = pending_new(c, e, true, seq);
    struct buf *b = &c->scratch;
    buf_reset(b);
    /* reqId (the frame's seq_id) and target on every hop, as in the
     * original CommandRequest (DESIGN 3.1) */
    int rc = buf_printf(b, "{\"reqId\":%u,\"target\":\"guest\",\"action\":", (unsigned)seq);
    rc |= buf_json_cstr(b, e->cmd.action);
    rc |= buf_puts(b, ",\"args\":");
    rc |= buf_append(b, e->data, e->len);
    rc |= buf_printf(b, ",\"timeout\":%u}", (unsigned)deadline_ms(c, e));
    struct envelope *out = p && !rc ? envelope_new(ENV_H2G_CMD_REQ, b->p, b->len) : NULL;
    if (!out) {
        if (p)
            pending_free(c, p);
        refuse(c, e, CMD_HANDLER_ERROR, "out of memory");
        return;
    }
    out->cmd.req_id = seq;
    envq_push_force(&c->d->egress_q, out);
}

/* polaris.guest.request: the same session router as apps use, answering
 * into the plugin's parked call. Takes the request's plugin ref; reads e. */
static void plugin_guest_request(struct core *c, struct envelope *e)
{
    struct plugin_req *r = calloc(1, sizeof *r);
    if (!r) {
        struct envelope *d = envelope_new(ENV_WAIT_DONE, "{\"__polaris_error\":\"out of memory\"}", 35);
        if (d) {
            d->wait.op = e->wait.op;
            d->plugin_host_run = e->plugin_host_run;
            plugin_post(e->plugin, d);
        }
        plugin_unref(e->plugin);
        return;
    }
    r->token = ++c->next_token;
    r->plugin = e->plugin;
    r->op = e->wait.op;
    r->plugin_host_run = e->plugin_host_run;
    r->next = c->plugin_reqs;
    c->plugin_reqs = r;
    e->cmd.origin = ORIGIN_PLUGIN;
    e->cmd.conn_id = r->token;
    e->cmd.req_id = r->token;
    e->cmd.timeout_ms = e->wait.ms;
    e->plugin = NULL;
    guest_command(c, e);                       /* every outcome goes through deliver() */
}

/* The guest's answer for a pending session; reads e. */
static void guest_answer(struct core *c, struct envelope *e)
{
    struct pending *p = list_find(&c->guest, e->cmd.req_id);
    if (!p) {
        STAT_INC(commands_late_results);
        return;
    }
    int64_t code;
    const char *msg, *data;
    size_t msg_len, data_len;
    if (cmd_result_parse(e->data, e->len, &code, &msg, &msg_len, &data, &data_len) < 0 ||
        code < INT32_MIN || code > INT32_MAX) {
        count_code(CMD_HANDLER_ERROR);
        answer(c, p->origin, p->conn_id, p->req_id, CMD_HANDLER_ERROR,
               "invalid CommandResult from the guest", NULL, 0);
    } else {
        char m[256];
        if (!msg || json_string_decode(msg, msg_len, m, sizeof m) < 0)
            snprintf(m, sizeof m, "%s", cmd_code_str((int)code));
        count_code((int)code);
        answer(c, p->origin, p->conn_id, p->req_id, (int)code, m, data, data_len);
    }
    pending_free(c, p);
}

static void guest_state(struct core *c, bool connected)
{
    c->guest_connected = connected;
    if (connected)
        return;
    /* the guest that was asked is gone; a new one will not answer for it */
    while (c->guest.next != &c->guest) {
        struct pending *p = c->guest.next;
        count_code(CMD_GUEST_ABSENT);
        answer(c, p->origin, p->conn_id, p->req_id, CMD_GUEST_ABSENT, "guest disconnected", NULL, 0);
        pending_free(c, p);
    }
}

/* Hands out (and what was held before it) to the guest link while its
 * buffer has room. While a guest is connected and the buffer is full, the
 * rest stay here, in order, counted against core_queue_max like events in
 * strategies: the core queue fills, the ingress stops reading, the apps'
 * SDKs slow down. Backpressure, never a drop (DESIGN 2, 4). force: the
 * shutdown hands over everything. */
static void hand_to_egress(struct core *c, struct envlist *out, bool force)
{
    struct daemon *d = c->d;
    size_t before = c->nheld;
    for (struct envelope *e = out->head; e; e = e->next)
        c->nheld++;
    if (out->head) {
        if (c->held.tail)
            c->held.tail->next = out->head;
        else
            c->held.head = out->head;
        c->held.tail = out->tail;
        out->head = out->tail = NULL;
    }
    for (;;) {
        uint64_t room_n = UINT64_MAX, room_b = UINT64_MAX;
        if (!force && atomic_load(&d->guest_up)) {
            uint64_t n = atomic_load(&d->egress_events), b = atomic_load(&d->egress_bytes);
            uint64_t mn = atomic_load(&d->egress_max_events), mb = atomic_load(&d->egress_max_bytes);
            room_n = n < mn ? mn - n : 0;
            room_b = b < mb ? mb - b : 0;
        }
        struct envelope *batch = c->held.head, *last = NULL;
        uint64_t bytes = 0;
        for (struct envelope *e = batch; e && room_n > 0 && bytes < room_b; e = e->next) {
            last = e;
            room_n--;
            bytes += e->len;
            c->nheld--;
        }
        if (last) {
            c->held.head = last->next;
            if (!c->held.head)
                c->held.tail = NULL;
            last->next = NULL;
            egress_push_events(d, batch);
        }
        if (!c->held.head)
            break;
        /* full: ask the egress to say when there is room, then look once
         * more (it may have made room before it could see the question) */
        atomic_store(&d->core_waits_egress, true);
        if (egress_full(d))
            break;
        atomic_store(&d->core_waits_egress, false);
    }
    if (c->nheld && !before)
        STAT_INC(guest_backpressure);
    /* published before the caller lowers core_events_unrouted: the ingress
     * sends nothing past held events */
    atomic_store(&d->core_held, c->nheld);
    if (c->nheld > before)
        atomic_fetch_add(&d->core_q.outside, c->nheld - before);
    else if (c->nheld < before)
        atomic_fetch_sub(&d->core_q.outside, before - c->nheld);
}

/* Events leave for the guest link in one batch per drain: one wakeup.
 * Takes e. */
static void forward_event(struct envlist *out, struct envelope *e)
{
    e->type = ENV_FORWARD_EVENT;
    envlist_push(out, e);
}

/* An event goes through its strategies (the first plugin's mailbox; each
 * plugin passes it on, the last sends it back as STRATEGY_COMPLETE) or, with
 * none, straight into the outgoing batch. Takes e. */
static void route_event(struct core *c, struct envlist *out, struct envelope *e)
{
    STAT_INC(core_events_routed);
    struct plugin *chain[32];
    size_t n = 0;
    bool drop = false;
    if (e->type != ENV_STRATEGY_COMPLETE && c->phase < STOPPING_WORKERS)
        n = registry_route(c->d->plugins, e->ev.id, e->from, chain, 32, &drop);
    if (drop) {
        STAT_INC(core_events_dropped_by_router);
        if (c->d->spool)
            spool_done(c->d->spool, e->ev.spool_ticket);
        envelope_free(e);
        return;
    }
    if (n == 0) {
        forward_event(out, e);
        return;
    }
    if (n == 1) {
        e->ev.chain_one = chain[0];
    } else if ((e->ev.chain = malloc(n * sizeof *e->ev.chain))) {
        memcpy(e->ev.chain, chain, n * sizeof *chain);
    } else {
        for (size_t i = 0; i < n; i++)
            plugin_unref(chain[i]);
        log_error("out of memory routing event %llu; forwarding it without strategies",
                  (unsigned long long)e->ev.id);
        forward_event(out, e);
        return;
    }
    e->ev.chain_len = (uint8_t)n;
    e->ev.chain_pos = 0;
    /* while in strategies the event still counts against core_queue_max,
     * so slow strategies push back on the apps instead of piling up */
    atomic_fetch_add(&c->d->core_q.outside, 1);
    plugin_post(chain[0], e);
}

static void stopped(struct core *c, const char *who)
{
    if (strcmp(who, "ipc") == 0) {
        /* nothing more comes from apps: let strategies and commands finish;
         * what they produce is queued before the "workers" notice below.
         * Waiting calls end now (with an error) so no event waits for a
         * timer that will never fire. */
        c->phase = STOPPING_WORKERS;
        reload_wait(c);                    /* its plugins go in before the workers stop */
        registry_set_stopping(c->d->plugins);
        waits_stop_all(c->waits);
        worker_pool_stop(c->d->workers);
        if (c->d->hosts && plugin_hosts_outstanding(c->d->hosts)) {
            /* plugin hosts still hold events: their answers come through
             * this loop, so wait for them here (within the grace period) */
            c->hosts_deadline_ns = mono_ns() + (uint64_t)c->d->cfg->shutdown_grace_ms * 1000000u;
            ev_timer_start(c->loop, &c->hosts_w);
            return;
        }
        envq_push_force(&c->d->core_q, envelope_new(ENV_CTL_STOPPED, "workers", 7));
    } else if (strcmp(who, "workers") == 0) {
        c->phase = STOPPING_EGRESS;
        envq_push_force(&c->d->egress_q, envelope_new(ENV_CTL_STOP, NULL, 0));
    } else {
        ev_break(c->loop, EVBREAK_ALL);
    }
}

static void hosts_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct core *c = w->data;
    if (plugin_hosts_outstanding(c->d->hosts) && mono_ns() < c->hosts_deadline_ns)
        return;
    ev_timer_stop(loop, w);
    envq_push_force(&c->d->core_q, envelope_new(ENV_CTL_STOPPED, "workers", 7));
}

/* Free places in core_q: what core_queue_max allows less what waits in it
 * and what is in strategies or held for the guest link. */
static size_t queue_room(struct core *c)
{
    size_t used = envq_count(&c->d->core_q) + atomic_load(&c->d->core_q.outside);
    return used < c->d->core_q.max ? c->d->core_q.max - used : 0;
}

/* The room a paused ingress waits for: a quarter of the queue, at least one
 * place. Every place freed is freed by this thread (a drain, a strategy
 * completion or drop, held events handed on), so the check at the end of
 * each batch cannot miss the moment it is reached. */
static size_t resume_room(struct core *c)
{
    size_t q = c->d->core_q.max / 4;
    return q ? q : 1;
}

static void inbox_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop; (void)revents;
    struct core *c = w->data;
    bool was_full;
    struct envelope *e = envq_drain(&c->d->core_q, &was_full);
    struct envlist out = {NULL, NULL};
    uint64_t app_events = 0;
    while (e) {
        struct envelope *next = e->next;
        /* Ownership, one rule: the switch owns e. A case that hands e on
         * (route_event, forward_event, host_command, waits_request: each
         * says "takes e") sets e = NULL; every other case only reads it
         * (exec_result, guest_command, guest_answer, plugin_guest_request,
         * guest_state: "reads e"), and what is left is freed below, once. */
        switch (e->type) {
        case ENV_IPC_EVENT:
            app_events++;
            route_event(c, &out, e);
            e = NULL;
            break;
        case ENV_MONITOR_EVENT:
            route_event(c, &out, e);
            e = NULL;
            break;
        case ENV_STRATEGY_COMPLETE:
            atomic_fetch_sub(&c->d->core_q.outside, 1);
            forward_event(&out, e);
            e = NULL;
            break;
        case ENV_STRATEGY_DROPPED:
            atomic_fetch_sub(&c->d->core_q.outside, 1);
            if (c->d->spool)
                spool_done(c->d->spool, e->ev.spool_ticket);
            break;
        case ENV_GUEST_CMD_REQ:
            atomic_fetch_sub(&c->d->commands_queued, 1);
            host_command(c, e);
            e = NULL;
            break;
        case ENV_APP_CMD_REQ:
            atomic_fetch_sub(&c->d->commands_queued, 1);
            if (e->cmd.for_guest) {           /* target "guest" */
                guest_command(c, e);
            } else {
                host_command(c, e);
                e = NULL;
            }
            break;
        case ENV_CMD_EXEC_RESULT:
            exec_result(c, e);
            break;
        case ENV_G2H_CMD_RESP:
            guest_answer(c, e);
            break;
        case ENV_WAIT_REQ:
        case ENV_WAIT_CANCEL:
            if (e->type == ENV_WAIT_REQ && e->wait.kind == WAIT_GUEST && c->phase < STOPPING_WORKERS) {
                plugin_guest_request(c, e);
                break;
            }
            if (c->phase >= STOPPING_WORKERS) {
                /* too late to wait: the call fails and its event goes on */
                struct envelope *d = envelope_new(ENV_WAIT_DONE,
                    "{\"__polaris_error\":\"the daemon is stopping\"}", 44);
                if (d && e->type == ENV_WAIT_REQ &&
                    (e->wait.kind == WAIT_SLEEP || e->wait.kind == WAIT_EXEC || e->wait.kind == WAIT_GUEST)) {
                    d->wait.op = e->wait.op;
                    d->plugin_host_run = e->plugin_host_run;
                    plugin_post(e->plugin, d);
                } else {
                    envelope_free(d);
                }
                plugin_unref(e->plugin);
            } else {
                waits_request(c->waits, e);
                e = NULL;
            }
            break;
        case ENV_GUEST_STATE:
            guest_state(c, e->guest_up != 0);
            break;
        case ENV_EGRESS_ROOM:
            break;                         /* the batch's end hands held events on */
        case ENV_RELOAD_DONE: {
            struct reload_job *j;
            memcpy(&j, e->data, sizeof j);
            if (j)                         /* NULL: finished already, at shutdown */
                reload_done(c, j);
            break;
        }
        case ENV_CTL_STOPPED:
            /* everything before the stop notice goes out before the stop */
            hand_to_egress(c, &out, strcmp(e->data, "workers") == 0);
            stopped(c, e->data);
            break;
        default:
            log_error("core: unexpected envelope type %u", e->type);
        }
        envelope_free(e);
        e = next;
    }
    hand_to_egress(c, &out, c->phase >= STOPPING_EGRESS);
    /* only now: the ingress may send the next events straight to egress_q,
     * and they must queue behind these */
    if (app_events)
        atomic_fetch_sub_explicit(&c->d->core_events_unrouted, app_events, memory_order_release);
    /* resume after the batch (its strategy completions freed room), and
     * only once a quarter of the queue is free: resumed at the first free
     * slot, the ingress read a few events, found the queue full again and
     * slept, a wakeup and a pause for every few events a strategy finished
     * (its CPU an event through a Lua strategy was a third higher than on
     * the plain path, most of it in system time) */
    c->ingress_paused |= was_full;
    if (c->ingress_paused && queue_room(c) >= resume_room(c)) {
        c->ingress_paused = false;
        ipc_server_resume(c->d->ipc);
    }
}

static void shutdown_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop; (void)revents;
    struct core *c = w->data;
    if (c->phase != RUNNING) {
        log_info("already shutting down");
        return;
    }
    log_info("signal %d: shutting down (grace period %u ms)", w->signum, c->d->cfg->shutdown_grace_ms);
    sd_notify_send("STOPPING=1");
    c->phase = STOPPING_INGRESS;
    envq_push_force(&c->d->ingress_q, envelope_new(ENV_CTL_STOP, NULL, 0));
}

static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop; (void)revents;
    struct core *c = w->data;
    char err[512];
    log_info("SIGHUP: reloading");
    do_reload(c, err, sizeof err);
}

struct core *core_new(struct daemon *d, struct ev_loop *loop, config_loader load, void *load_ctx)
{
    struct core *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->d = d;
    c->loop = loop;
    c->load = load;
    c->load_ctx = load_ctx;
    list_init(&c->host);
    list_init(&c->guest);
    c->waits = waits_new(loop, d->cfg->exec_output_max);
    if (!c->waits) {
        free(c);
        return NULL;
    }
    registry_on_retire(d->plugins, waits_retire, c->waits);
    if (d->hosts)
        plugin_hosts_on_death(d->hosts, waits_retire, c->waits);
    ev_timer_init(&c->hosts_w, hosts_wait_cb, 0.005, 0.005);
    c->hosts_w.data = c;
    ev_async_init(&c->inbox_w, inbox_cb);
    c->inbox_w.data = c;
    ev_async_start(loop, &c->inbox_w);
    envq_attach(&d->core_q, loop, &c->inbox_w);
    ev_signal_init(&c->sigterm_w, shutdown_cb, SIGTERM);
    ev_signal_init(&c->sigint_w, shutdown_cb, SIGINT);
    ev_signal_init(&c->sighup_w, sighup_cb, SIGHUP);
    c->sigterm_w.data = c->sigint_w.data = c->sighup_w.data = c;
    ev_signal_start(loop, &c->sigterm_w);
    ev_signal_start(loop, &c->sigint_w);
    ev_signal_start(loop, &c->sighup_w);
    return c;
}

void core_run(struct core *c)
{
    ev_run(c->loop, 0);
}

void core_free(struct core *c)
{
    if (!c)
        return;
    reload_wait(c);
    answer_waiters_refused(c, "the daemon is stopping");
    while (c->host.next != &c->host)
        pending_free(c, c->host.next);
    while (c->guest.next != &c->guest)
        pending_free(c, c->guest.next);
    waits_free(c->waits);
    while (c->plugin_reqs) {
        struct plugin_req *r = c->plugin_reqs;
        c->plugin_reqs = r->next;
        plugin_unref(r->plugin);
        free(r);
    }
    envelope_free_list(envlist_take(&c->held));
    ev_async_stop(c->loop, &c->inbox_w);
    ev_timer_stop(c->loop, &c->hosts_w);
    ev_signal_stop(c->loop, &c->sigterm_w);
    ev_signal_stop(c->loop, &c->sigint_w);
    ev_signal_stop(c->loop, &c->sighup_w);
    buf_free(&c->scratch);
    buf_free(&c->scratch2);
    free(c);
}
