/* ipc_server.c - the ingress domain (DESIGN 2, 3.1).
 *
 * One thread, one libev loop: accepts local clients on the Unix socket,
 * decodes LSP frames, validates and stamps events with the peer's real
 * pid/uid (SO_PEERCRED), and hands envelopes to the core queue. When that
 * queue is full the client is paused (its socket is no longer read) until the
 * core has drained: backpressure reaches the app through its socket buffer,
 * and nothing accepted is dropped. An event no plugin and no router rule
 * takes skips the core and goes straight to the guest link's queue, but
 * only while no app event is waiting in the core (see can_skip_core): an
 * app's events still reach the guest in the order it sent them. Command
 * answers come back through ingress_q and are written to the client that
 * asked, if it is still there.
 *
 * Uses: lsp_codec, event_json, command_msg, envq, plugin_registry (its
 * routing index), libev. */
#include "daemon/ipc_server.h"
#include "daemon/guest_link.h"
#include "wire/command_msg.h"
#include "wire/event_json.h"
#include "daemon/spool.h"
#include "wire/lsp_codec.h"
#include "lib/log.h"
#include "daemon/plugin_registry.h"
#include "lib/stats.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK   65536
#define READ_ROUNDS  16          /* reads per wakeup per client, for fairness */
#define BATCH_MAX    256         /* envelopes handed to the core in one push */

struct client {
    struct ipc_server *srv;
    int fd;
    uint32_t id;
    unsigned slot;
    pid_t pid;
    uid_t uid;
    ev_io rio, wio;
    ev_timer frame_timer;
    uint64_t timer_frame;        /* dec.frames when the timer was armed */
    struct lsp_decoder dec;
    struct buf out;
    size_t out_off;
    struct envlist pend;         /* accepted, not yet on the core queue: pushed as
                                    one batch, or kept while the queue is full */
    unsigned pend_n;
    unsigned pend_events;        /* app events among them */
    struct envlist direct;       /* events for the guest link, skipping the core */
    unsigned direct_n;
    uint64_t direct_bytes;       /* their payload bytes: counted against the guest link's buffer */
    bool paused;
    bool draining;               /* closing: deliver what it sent, answer nothing */
    bool closed;
    struct client *next_dead;
};

struct ipc_server {
    struct daemon *d;
    struct config *cfg;
    struct ev_loop *loop;
    pthread_t thread;
    bool started;
    int listen_fd;
    ev_io accept_w;
    ev_async inbox_w, resume_w;
    struct client **slots;
    uint16_t *gens;
    unsigned nslots, nclients;
    bool stopping;
    struct buf scratch;
    uint64_t accepted;           /* events accepted, not yet added to the stat */
    uint64_t direct;             /* of those, sent straight to egress_q */
    struct route_index routes;   /* which eventIds plugins take (a copy) */
    struct client *dead;         /* closed, freed when no callback holds them */
    ev_prepare reaper;
};

static void client_close(struct client *c, bool drain);
static void process_frames(struct client *c);

static struct client *client_by_id(struct ipc_server *s, uint32_t id)
{
    unsigned slot = id & 0xFFFF;
    if (slot >= s->nslots)
        return NULL;
    struct client *c = s->slots[slot];
    return c && c->id == id && !c->closed ? c : NULL;
}

static void pause_client(struct client *c)
{
    if (c->paused)
        return;
    c->paused = true;
    STAT_INC(ipc_backpressure_pauses);
    ev_io_stop(c->srv->loop, &c->rio);
    /* the bytes it sent arrived in time; waiting on us is not its fault */
    ev_timer_stop(c->srv->loop, &c->frame_timer);
}

/* Queues an accepted envelope for the core; sent in batches by flush_pending. */
static void submit(struct client *c, struct envelope *e)
{
    envlist_push(&c->pend, e);
    c->pend_n++;
}

/* Whether an accepted event may go to the guest link without the core:
 * no plugin takes its eventId and no router has rules (as of the last
 * copy of the index; one taken after the first load), and nothing this
 * app sent before it can still be on its way through the core: none of
 * its events waits in pend, and the core has routed every app event it
 * was given (global, so cheap and conservative), and the core holds no
 * event back for a full guest link buffer (then this one waits behind
 * them, in the core: backpressure). An event routed to
 * strategies may be overtaken, as it is on the core's path. may_route:
 * route_index_may_route for the event (the stamp asked it, whether to
 * index the event, and the answer is kept: asked once). */
static bool can_skip_core(struct client *c, bool may_route)
{
    struct ipc_server *s = c->srv;
    return !c->pend_events && !s->stopping && !c->draining &&
           atomic_load_explicit(&s->d->core_events_unrouted, memory_order_acquire) == 0 &&
           atomic_load(&s->d->core_held) == 0 && !egress_full_with(s->d, c->direct_n, c->direct_bytes) &&
           !may_route;
}

static unsigned count_events(const struct envelope *e)
{
    unsigned n = 0;
    for (; e; e = e->next)
        n += e->type == ENV_IPC_EVENT;
    return n;
}

/* Hands the pending batch on: events that skip the core to egress_q, then
 * the rest to the core, each in one push (one lock, one wakeup). Returns
 * false (and pauses the client) when the core queue could not take all of
 * it. */
static bool flush_pending(struct client *c)
{
    struct ipc_server *s = c->srv;
    if (s->accepted) {                         /* one atomic add per batch */
        STAT_ADD(ipc_events_in, s->accepted);
        s->accepted = 0;
    }
    if (s->direct) {
        STAT_ADD(ipc_events_direct, s->direct);
        s->direct = 0;
    }
    if (!c->pend.head && !c->direct.head)
        return true;
    if (s->d->spool) {                         /* on disk before anyone else has them */
        if (spool_flush(s->d->spool) < 0)
            STAT_INC(spool_errors);
        STAT_SET(spool_bytes, spool_live_bytes(s->d->spool));
    }
    /* every direct event was accepted before any event in pend */
    if (c->direct.head) {
        egress_push_events(s->d, envlist_take(&c->direct));
        c->direct_n = 0;
        c->direct_bytes = 0;
    }
    if (!c->pend.head)
        return true;
    /* counted before the push: the core may route them at once */
    atomic_fetch_add(&s->d->core_events_unrouted, c->pend_events);
    if (s->stopping || c->draining) {
        envq_push_list_force(&s->d->core_q, envlist_take(&c->pend));
        c->pend_n = c->pend_events = 0;
        return true;
    }
    c->pend_n -= (unsigned)envq_push_some(&s->d->core_q, &c->pend.head);
    if (!c->pend.head) {
        c->pend.tail = NULL;
        c->pend_events = 0;
        return true;
    }
    /* what stays behind is not on the core queue yet */
    unsigned left = count_events(c->pend.head);
    atomic_fetch_sub(&s->d->core_events_unrouted, left);
    c->pend_events = left;
    pause_client(c);
    return false;
}

static void flush_out(struct client *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->srv->loop, &c->wio);
            return;
        }
        client_close(c, true);
        return;
    }
    buf_reset(&c->out);
    c->out_off = 0;
    ev_io_stop(c->srv->loop, &c->wio);
}

static void send_resp(struct client *c, uint32_t req_id, const char *json, size_t len)
{
    if (c->draining || c->closed)
        return;
    if (lsp_encode(&c->out, LSP_CMD_RESP, req_id, json, len) < 0) {
        log_warn("client pid %d: cannot queue a command answer (out of memory)", (int)c->pid);
        return;
    }
    if (c->out.len - c->out_off > c->srv->cfg->client_out_max_bytes) {
        log_warn("client pid %d does not read its answers; closing", (int)c->pid);
        STAT_INC(ipc_client_out_overflow);
        client_close(c, true);
        return;
    }
    flush_out(c);
}

static void reject_cmd(struct client *c, uint32_t req_id, int code, const char *msg)
{
    struct buf *b = &c->srv->scratch;
    buf_reset(b);
    if (cmd_result_write(b, req_id, code, msg, NULL, 0) == 0)
        send_resp(c, req_id, b->p, b->len);
}

/* The stamp's question, whether to index an event (only for one some
 * plugin may take), answered from the routing index and kept for
 * can_skip_core. */
struct route_ask {
    const struct route_index *routes;
    bool may_route;
};

static bool index_wanted(void *ctx, uint64_t event_id)
{
    struct route_ask *a = ctx;
    a->may_route = route_index_may_route(a->routes, event_id);
    return a->may_route;
}

/* Returns false when processing must stop (client paused or closed). */
static bool handle_frame(struct client *c, const struct lsp_frame *f)
{
    struct ipc_server *s = c->srv;
    const char *err = NULL;
    if (f->type == LSP_EVENT_REPORT) {
        uint64_t event_id;
        /* the index spares a strategy's read a scan: made only for an
         * event some plugin may take (the plain path pays nothing for it) */
        struct json_index ix;
        struct route_ask route = {&s->routes, true};
        const struct event_index_ask ask = {&ix, index_wanted, &route};
        buf_reset(&s->scratch);
        if (event_stamp(f->payload, f->len, c->pid, c->uid, &s->scratch, &event_id, &ask, &err) < 0) {
            STAT_INC(ipc_frames_rejected);
            log_debug("client pid %d: event rejected: %s", (int)c->pid, err);
            return true;
        }
        struct envelope *e = envelope_new(ENV_IPC_EVENT, s->scratch.p, s->scratch.len);
        if (!e) {
            /* the frame is already consumed from the stream: count the loss */
            STAT_INC(ipc_events_dropped_nomem);
            log_error("out of memory accepting an event from pid %d; dropped", (int)c->pid);
            return true;
        }
        e->ev.id = event_id;
        if (ix.n)
            e->ev.index = ix;                  /* else none: envelope_new zeroed it */
        e->pid = c->pid;
        e->uid = c->uid;
        if (s->d->spool && !(e->ev.spool_ticket = spool_append(s->d->spool, event_id, e->data, e->len)))
            STAT_INC(spool_errors);            /* accepted all the same, in memory only */
        s->accepted++;
        if (can_skip_core(c, route.may_route)) {
            e->type = ENV_FORWARD_EVENT;
            envlist_push(&c->direct, e);
            c->direct_n++;
            c->direct_bytes += e->len;
            s->direct++;
        } else {
            submit(c, e);
            c->pend_events++;
        }
        return true;
    }
    if (f->type == LSP_CMD_REQ) {
        STAT_INC(ipc_commands_in);
        struct cmd_request r;
        if (cmd_request_parse(f->payload, f->len, 1, &r, &err) < 0) {
            STAT_INC(ipc_frames_rejected);
            STAT_INC(commands_bad_requests);
            char msg[160];
            snprintf(msg, sizeof msg, "bad request: %s", err);
            reject_cmd(c, f->req_id, CMD_BAD_REQUEST, msg);
            return !c->closed;
        }
        struct envelope *e = envelope_new(ENV_APP_CMD_REQ, r.args, r.args_len);
        if (!e) {
            reject_cmd(c, f->req_id, CMD_HANDLER_ERROR, "out of memory");
            return !c->closed;
        }
        e->cmd.origin = ORIGIN_APP;
        e->cmd.for_guest = (uint8_t)r.target_guest;
        memcpy(e->cmd.action, r.action, sizeof e->cmd.action);
        e->cmd.conn_id = c->id;
        e->cmd.req_id = f->req_id;
        e->pid = c->pid;
        e->uid = c->uid;
        e->cmd.timeout_ms = r.timeout_ms;
        /* the command lane: the events this client sent before go first
         * when the core queue takes them; the command never waits for it */
        if (!command_lane_take(s->d, s->cfg->lane_max)) {
            envelope_free(e);
            STAT_INC(commands_busy);
            reject_cmd(c, f->req_id, CMD_BUSY, "too many commands on their way (commands.lane_max)");
            return !c->closed;
        }
        if (!flush_pending(c)) {
            envq_push_force(&s->d->core_q, e);
            return false;                      /* paused: events wait, the command went */
        }
        envq_push_force(&s->d->core_q, e);
        return true;
    }
    STAT_INC(ipc_frames_unknown_type);
    log_debug("client pid %d: skipped frame of unknown type 0x%x", (int)c->pid, f->type);
    return true;
}

static void arm_frame_timer(struct client *c)
{
    struct ipc_server *s = c->srv;
    if (c->paused || c->closed)
        return;
    if (lsp_decoder_pending(&c->dec) == 0) {
        ev_timer_stop(s->loop, &c->frame_timer);
        return;
    }
    /* a new partial frame restarts the clock; the same one keeps it */
    if (!ev_is_active(&c->frame_timer) || c->timer_frame != c->dec.frames) {
        c->timer_frame = c->dec.frames;
        ev_timer_stop(s->loop, &c->frame_timer);
        ev_timer_set(&c->frame_timer, s->cfg->frame_timeout_ms / 1000.0, 0.);
        ev_timer_start(s->loop, &c->frame_timer);
    }
}

static void process_frames(struct client *c)
{
    if (c->srv->d->plugins)
        registry_index_sync(c->srv->d->plugins, &c->srv->routes);
    while (!c->paused && !c->closed) {
        struct lsp_frame f;
        int rc = lsp_decoder_next(&c->dec, &f);
        if (rc == LSP_NEED_MORE)
            break;
        if (rc < 0) {
            STAT_INC(ipc_frames_oversize);
            log_warn("client pid %d: %s; closing the connection", (int)c->pid, lsp_status_str(rc));
            client_close(c, false);
            return;
        }
        if (!handle_frame(c, &f))
            return;
        if (c->pend_n + c->direct_n >= BATCH_MAX && !flush_pending(c))
            return;
    }
    if (!c->closed)
        flush_pending(c);
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct client *c = w->data;
    for (int round = 0; round < READ_ROUNDS && !c->paused && !c->closed; round++) {
        size_t avail;
        uint8_t *p = lsp_decoder_space(&c->dec, READ_CHUNK, &avail);
        if (!p) {
            log_error("out of memory reading from client pid %d", (int)c->pid);
            break;
        }
        ssize_t n = read(c->fd, p, avail);
        if (n > 0) {
            lsp_decoder_commit(&c->dec, (size_t)n);
            process_frames(c);
            if ((size_t)n < avail)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        client_close(c, true);             /* EOF or error: keep what it sent */
        return;
    }
    arm_frame_timer(c);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    flush_out(w->data);
}

static void frame_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct client *c = w->data;
    STAT_INC(ipc_frame_timeouts);
    log_warn("client pid %d: frame incomplete after %u ms; closing the connection",
             (int)c->pid, c->srv->cfg->frame_timeout_ms);
    client_close(c, false);
}

static void client_free(struct client *c)
{
    lsp_decoder_free(&c->dec);
    buf_free(&c->out);
    free(c);
}

/* drain: the peer went away normally; complete frames it sent and an
 * envelope waiting on the core queue are still delivered (force-pushed: they
 * were accepted when the socket took them). */
static void client_close(struct client *c, bool drain)
{
    struct ipc_server *s = c->srv;
    if (c->closed || c->draining)
        return;
    c->draining = true;          /* pushes are forced: all of it was accepted */
    c->paused = false;
    if (drain)
        process_frames(c);
    flush_pending(c);
    c->closed = true;
    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    ev_timer_stop(s->loop, &c->frame_timer);
    close(c->fd);
    c->fd = -1;
    s->slots[c->slot] = NULL;
    s->nclients--;
    STAT_SUB(ipc_clients, 1);
    /* callers up the stack may still hold c: free it before the next poll */
    c->next_dead = s->dead;
    s->dead = c;
}

static void reap_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop; (void)revents;
    struct ipc_server *s = w->data;
    while (s->dead) {
        struct client *c = s->dead;
        s->dead = c->next_dead;
        client_free(c);
    }
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct ipc_server *s = w->data;
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept on the IPC socket: %s", strerror(errno));
            return;
        }
        if (s->nclients >= s->nslots) {
            STAT_INC(ipc_connections_refused);
            log_warn("refusing a client: ipc.max_clients (%u) reached", s->nslots);
            close(fd);
            continue;
        }
        struct ucred cred;
        socklen_t cl = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
            log_warn("SO_PEERCRED: %s; refusing the client", strerror(errno));
            close(fd);
            continue;
        }
        struct client *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        unsigned slot = 0;
        while (s->slots[slot])
            slot++;
        s->gens[slot]++;
        c->srv = s;
        c->fd = fd;
        c->slot = slot;
        c->id = (uint32_t)s->gens[slot] << 16 | slot;
        c->pid = cred.pid;
        c->uid = cred.uid;
        lsp_decoder_init(&c->dec, LSP_MAX_FRAME);
        ev_io_init(&c->rio, read_cb, fd, EV_READ);
        ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
        ev_init(&c->frame_timer, frame_timeout_cb);
        c->rio.data = c->wio.data = c->frame_timer.data = c;
        s->slots[slot] = c;
        s->nclients++;
        STAT_INC(ipc_clients);
        STAT_INC(ipc_connections_total);
        ev_io_start(loop, &c->rio);
    }
}

static void resume_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop; (void)revents;
    struct ipc_server *s = w->data;
    for (unsigned i = 0; i < s->nslots; i++) {
        struct client *c = s->slots[i];
        if (!c || !c->paused)
            continue;
        c->paused = false;
        if (!flush_pending(c))
            continue;                      /* still full: the next drain resumes us */
        c->paused = false;
        process_frames(c);
        if (!c->closed && !c->paused) {
            ev_io_start(s->loop, &c->rio);
            arm_frame_timer(c);
        }
    }
}

static void stop_server(struct ipc_server *s)
{
    s->stopping = true;
    ev_io_stop(s->loop, &s->accept_w);
    for (unsigned i = 0; i < s->nslots; i++)
        if (s->slots[i])
            client_close(s->slots[i], true);
    envq_push_force(&s->d->core_q, envelope_new(ENV_CTL_STOPPED, "ipc", 3));
    ev_break(s->loop, EVBREAK_ALL);
}

static void inbox_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop; (void)revents;
    struct ipc_server *s = w->data;
    struct envelope *e = envq_drain(&s->d->ingress_q, NULL);
    while (e) {
        struct envelope *next = e->next;
        if (e->type == ENV_APP_CMD_RESP) {
            struct client *c = client_by_id(s, e->cmd.conn_id);
            if (c)
                send_resp(c, e->cmd.req_id, e->data, e->len);
            else
                STAT_INC(ipc_responses_undeliverable);
        } else if (e->type == ENV_CTL_RELOAD) {
            struct config *nc;
            memcpy(&nc, e->data, sizeof nc);
            config_unref(s->cfg);
            s->cfg = nc;
        } else if (e->type == ENV_CTL_STOP) {
            envelope_free_list(next);      /* nothing after STOP is for us */
            envelope_free(e);
            stop_server(s);
            return;
        }
        envelope_free(e);
        e = next;
    }
}

struct ipc_server *ipc_server_new(struct daemon *d, int listen_fd)
{
    struct ipc_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->d = d;
    s->cfg = config_ref(d->cfg);
    s->listen_fd = listen_fd;
    s->nslots = d->cfg->max_clients;
    s->slots = calloc(s->nslots, sizeof *s->slots);
    s->gens = calloc(s->nslots, sizeof *s->gens);
    s->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!s->slots || !s->gens || !s->loop) {
        ipc_server_free(s);
        return NULL;
    }
    ev_io_init(&s->accept_w, accept_cb, listen_fd, EV_READ);
    s->accept_w.data = s;
    ev_async_init(&s->inbox_w, inbox_cb);
    s->inbox_w.data = s;
    ev_async_init(&s->resume_w, resume_cb);
    s->resume_w.data = s;
    ev_io_start(s->loop, &s->accept_w);
    ev_async_start(s->loop, &s->inbox_w);
    ev_async_start(s->loop, &s->resume_w);
    ev_prepare_init(&s->reaper, reap_cb);
    s->reaper.data = s;
    ev_prepare_start(s->loop, &s->reaper);
    envq_attach(&d->ingress_q, s->loop, &s->inbox_w);
    return s;
}

static void *ipc_thread(void *arg)
{
    struct ipc_server *s = arg;
    ev_run(s->loop, 0);
    return NULL;
}

int ipc_server_start(struct ipc_server *s)
{
    if (pthread_create(&s->thread, NULL, ipc_thread, s) != 0)
        return -1;
    pthread_setname_np(s->thread, "ingress");  /* for top -H, perf and gdb */
    s->started = true;
    return 0;
}

void ipc_server_join(struct ipc_server *s)
{
    if (s->started)
        pthread_join(s->thread, NULL);
    s->started = false;
}

void ipc_server_resume(struct ipc_server *s)
{
    ev_async_send(s->loop, &s->resume_w);
}

void ipc_server_free(struct ipc_server *s)
{
    if (!s)
        return;
    if (s->slots) {
        for (unsigned i = 0; i < s->nslots; i++)
            if (s->slots[i])
                client_close(s->slots[i], false);
        reap_cb(s->loop, &s->reaper, 0);
    }
    if (s->loop)
        ev_loop_destroy(s->loop);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    config_unref(s->cfg);
    buf_free(&s->scratch);
    route_index_free(&s->routes);
    free(s->slots);
    free(s->gens);
    free(s);
}
