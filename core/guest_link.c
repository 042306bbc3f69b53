/* guest_link.c - the egress domain (DESIGN 2, 3.2, 4).
 *
 * One thread, one libev loop: listens for the guest (vsock, tcp or unix: all
 * the same PLP byte stream), keeps one active session (a new connection
 * replaces the old), sends heartbeats and drops a silent guest, and owns the
 * outbound buffer. Events wait in that buffer, bounded by bytes and count,
 * until written; when it is full the oldest unsent events are dropped,
 * counted, and a synthetic "events dropped" event tells the guest. Events
 * leave the buffer only once their whole frame is in the kernel, so a frame
 * cut off by a disconnect is sent again, with the same seq_id, on the next
 * session. A slow guest fills the buffer; it never blocks another domain.
 *
 * Uses: plp_codec, command_msg, envq, libev. */
#include "guest_link.h"
#include "command_msg.h"
#include "event_ids.h"
#include "event_stamp.h"
#include "log.h"
#include "plp_codec.h"
#include "spool.h"
#include "stats.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK  65536
#define PUMP_ROUNDS 64

struct guest_link {
    struct daemon *d;
    struct config *cfg;
    struct ev_loop *loop;
    pthread_t thread;
    bool started;
    char uri[CONFIG_PATH_MAX];
    int listen_fd;
    ev_io accept_w;
    ev_async inbox_w;
    ev_timer hb_w, grace_w;

    /* the session */
    int fd;
    ev_io rio, wio;
    struct plp_decoder dec;
    ev_tstamp last_rx;
    struct buf wbuf;
    size_t woff;

    /* the outbound buffer: head..last_enc are encoded into wbuf */
    struct envelope *head, *tail, *last_enc;
    size_t count;
    uint64_t bytes;
    uint32_t next_seq;
    uint64_t drops_pending, first_drop_ms, last_drop_ms;

    bool stopping;
    struct buf scratch;

    struct spool *spool;          /* the daemon's disk spool, or NULL */
    ev_timer sync_w;              /* fdatasync every spool_fsync_ms */
};

static void session_close(struct guest_link *g, const char *why);
static void pump(struct guest_link *g);

static void tell_core(struct guest_link *g, struct envelope *e)
{
    if (e)
        envq_push_force(&g->d->core_q, e);
}

static void set_buffer_gauges(struct guest_link *g)
{
    STAT_SET(guest_buffered, g->count);
    STAT_SET(guest_buffered_bytes, g->bytes);
}

static struct envelope *first_unencoded(struct guest_link *g)
{
    return g->last_enc ? g->last_enc->next : g->head;
}

/* An event is finished once written to the guest or dropped: its spool
 * record need not be replayed. */
static void finished(struct guest_link *g, struct envelope *e)
{
    if (g->spool && e->spool_ticket) {
        spool_done(g->spool, e->spool_ticket);
        STAT_SET(spool_bytes, spool_live_bytes(g->spool));
    }
}

/* Unlinks the oldest event not yet in the write buffer. */
static bool drop_oldest(struct guest_link *g)
{
    struct envelope *v = first_unencoded(g);
    if (!v)
        return false;
    if (g->last_enc)
        g->last_enc->next = v->next;
    else
        g->head = v->next;
    if (g->tail == v)
        g->tail = g->last_enc;
    g->count--;
    g->bytes -= v->len;
    uint64_t now = wall_ms();
    if (!g->drops_pending)
        g->first_drop_ms = now;
    g->last_drop_ms = now;
    g->drops_pending++;
    STAT_INC(guest_dropped);
    finished(g, v);
    envelope_free(v);
    return true;
}

static void buffer_event(struct guest_link *g, struct envelope *e)
{
    if (e->len > g->cfg->buffer_max_bytes) {
        STAT_INC(guest_dropped_too_large);
        log_warn("dropping event %llu: %zu bytes exceed guest.buffer_max_bytes",
                 (unsigned long long)e->event_id, e->len);
        envelope_free(e);
        return;
    }
    e->next = NULL;
    if (g->tail)
        g->tail->next = e;
    else
        g->head = e;
    g->tail = e;
    g->count++;
    g->bytes += e->len;
    while (g->count > g->cfg->buffer_max_events || g->bytes > g->cfg->buffer_max_bytes)
        if (!drop_oldest(g))
            break;
    set_buffer_gauges(g);
}

static int encode_drop_notice(struct guest_link *g)
{
    struct buf *b = &g->scratch;
    buf_reset(b);
    int rc = buf_printf(b, "{\"eventId\":%llu,\"timestamp\":%llu,\"pid\":%d,"
                        "\"processName\":\"polarisd\",\"processVer\":",
                        POLARIS_EV_EVENTS_DROPPED, (unsigned long long)wall_ms(), (int)getpid());
    rc |= buf_json_cstr(b, polaris_version);
    rc |= buf_printf(b, ",\"params\":{\"dropped\":%llu,\"reason\":\"outbound buffer full\","
                     "\"first_drop_ts\":%llu,\"last_drop_ts\":%llu}}",
                     (unsigned long long)g->drops_pending, (unsigned long long)g->first_drop_ms,
                     (unsigned long long)g->last_drop_ms);
    if (rc)
        return -1;
    uint32_t seq = g->next_seq++;
    if (g->next_seq == 0)
        g->next_seq = 1;
    if (plp_encode(&g->wbuf, PLP_EVENT_H2G, PLP_FLAG_JSON, seq, b->p, b->len,
                   g->cfg->gzip_min_bytes) < 0)
        return -1;
    log_warn("told the guest that %llu events were dropped", (unsigned long long)g->drops_pending);
    g->drops_pending = 0;
    return 0;
}

/* Moves fully written events out of the buffer. */
static void retire_written(struct guest_link *g)
{
    uint64_t sent = 0;
    while (g->head && g->last_enc && g->head->wend <= g->woff) {
        struct envelope *e = g->head;
        bool last = e == g->last_enc;
        g->head = e->next;
        if (!g->head)
            g->tail = NULL;
        if (last)
            g->last_enc = NULL;
        g->count--;
        g->bytes -= e->len;
        sent++;
        finished(g, e);
        envelope_free(e);
        if (last)
            break;
    }
    if (sent)
        STAT_ADD(guest_events_sent, sent);     /* one atomic add per write */
    if (g->woff == g->wbuf.len) {
        buf_reset(&g->wbuf);
        g->woff = 0;
    } else if (g->woff > (1u << 20) && g->woff > g->wbuf.len / 2) {
        for (struct envelope *e = g->head; e; e = e->next) {
            e->wend -= g->woff;
            if (e == g->last_enc)
                break;
        }
        buf_consume(&g->wbuf, g->woff);
        g->woff = 0;
    }
    set_buffer_gauges(g);
}

/* Returns 1 when everything is written, 0 when the socket is full, -1 when
 * the session closed. */
static int write_some(struct guest_link *g)
{
    while (g->woff < g->wbuf.len) {
        ssize_t n = send(g->fd, g->wbuf.p + g->woff, g->wbuf.len - g->woff, MSG_NOSIGNAL);
        if (n > 0) {
            g->woff += (size_t)n;
            STAT_ADD(guest_bytes_out, (uint64_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            retire_written(g);
            ev_io_start(g->loop, &g->wio);
            return 0;
        }
        session_close(g, n == 0 ? "connection closed" : strerror(errno));
        return -1;
    }
    retire_written(g);
    /* written out; but a heartbeat or command answer written from outside
     * pump() must not stop the watcher while events still wait to be
     * encoded: write_cb -> pump() picks them up */
    if (first_unencoded(g) || g->drops_pending)
        ev_io_start(g->loop, &g->wio);
    else
        ev_io_stop(g->loop, &g->wio);
    return 1;
}

static void maybe_finish_stop(struct guest_link *g);

static void pump(struct guest_link *g)
{
    if (g->fd < 0)
        return;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        while (g->wbuf.len - g->woff < g->cfg->write_ahead_bytes) {
            if (g->drops_pending) {
                if (encode_drop_notice(g) < 0)
                    break;
                continue;
            }
            struct envelope *e = first_unencoded(g);
            if (!e)
                break;
            if (e->seq == 0) {
                e->seq = g->next_seq++;
                if (g->next_seq == 0)
                    g->next_seq = 1;
            }
            if (plp_encode(&g->wbuf, PLP_EVENT_H2G, PLP_FLAG_JSON, e->seq, e->data, e->len,
                           g->cfg->gzip_min_bytes) < 0) {
                log_error("cannot encode event %llu (out of memory)", (unsigned long long)e->event_id);
                break;
            }
            e->wend = g->wbuf.len;
            g->last_enc = e;
        }
        if (g->woff == g->wbuf.len)
            break;
        if (write_some(g) <= 0)
            return;
    }
    /* Unwritten bytes, or events the rounds did not reach: come back when
     * the socket is writable (at once, if it is). Without the second test
     * the tail of a burst waited for the next event to arrive. */
    if (g->woff < g->wbuf.len || g->drops_pending || first_unencoded(g))
        ev_io_start(g->loop, &g->wio);
    maybe_finish_stop(g);
}

static void send_control(struct guest_link *g, uint16_t type, uint32_t seq, const char *json, size_t len)
{
    if (plp_encode(&g->wbuf, type, json ? PLP_FLAG_JSON : 0, seq, json, len, g->cfg->gzip_min_bytes) < 0) {
        log_error("cannot encode a frame for the guest (out of memory)");
        return;
    }
    write_some(g);
}

static void guest_cmd_request(struct guest_link *g, const struct plp_frame *f)
{
    struct cmd_request r;
    const char *err;
    STAT_INC(commands_from_guest);
    if (cmd_request_parse(f->payload, f->len, 0, &r, &err) < 0) {
        STAT_INC(commands_bad_requests);
        char msg[160];
        snprintf(msg, sizeof msg, "bad request: %s", err);
        buf_reset(&g->scratch);
        if (cmd_result_write(&g->scratch, f->seq, CMD_BAD_REQUEST, msg, NULL, 0) == 0)
            send_control(g, PLP_CMD_RESP_H2G, f->seq, g->scratch.p, g->scratch.len);
        return;
    }
    struct envelope *e = envelope_new(ENV_GUEST_CMD_REQ, r.args, r.args_len);
    if (!e)
        return;
    e->origin = ORIGIN_GUEST;
    memcpy(e->action, r.action, sizeof e->action);
    e->req_id = f->seq;
    e->timeout_ms = r.timeout_ms;
    if (envq_push(&g->d->core_q, e) < 0) {
        envelope_free(e);
        STAT_INC(commands_busy);
        buf_reset(&g->scratch);
        if (cmd_result_write(&g->scratch, f->seq, CMD_BUSY, NULL, NULL, 0) == 0)
            send_control(g, PLP_CMD_RESP_H2G, f->seq, g->scratch.p, g->scratch.len);
    }
}

static void handle_frame(struct guest_link *g, const struct plp_frame *f)
{
    switch (f->type) {
    case PLP_HEARTBEAT:
        break;
    case PLP_CMD_REQ_G2H:
        guest_cmd_request(g, f);
        break;
    case PLP_CMD_RESP_G2H: {
        struct envelope *e = envelope_new(ENV_G2H_CMD_RESP, f->payload, f->len);
        if (e) {
            e->req_id = f->seq;
            tell_core(g, e);
        }
        break;
    }
    default:
        STAT_INC(guest_unknown_frames);
        log_debug("guest: skipped frame of type 0x%x", f->type);
    }
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)w; (void)revents;
    struct guest_link *g = w->data;
    for (int round = 0; round < 16 && g->fd >= 0; round++) {
        size_t avail;
        uint8_t *p = plp_decoder_space(&g->dec, READ_CHUNK, &avail);
        if (!p) {
            session_close(g, "out of memory");
            return;
        }
        ssize_t n = read(g->fd, p, avail);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
            session_close(g, n == 0 ? "guest closed the connection" : strerror(errno));
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        STAT_ADD(guest_bytes_in, (uint64_t)n);
        g->last_rx = ev_now(loop);
        plp_decoder_commit(&g->dec, (size_t)n);
        for (;;) {
            struct plp_frame f;
            int rc = plp_decoder_next(&g->dec, &f);
            if (rc == PLP_NEED_MORE)
                break;
            if (rc == PLP_FRAME) {
                handle_frame(g, &f);
                if (g->fd < 0)
                    return;
                continue;
            }
            if (rc == PLP_SKIP_CRC) {
                STAT_INC(guest_crc_errors);
                log_warn("guest: frame type 0x%x seq %u dropped: CRC mismatch", f.type, f.seq);
                continue;
            }
            if (rc == PLP_SKIP_GZIP || rc == PLP_SKIP_BOMB) {
                STAT_INC(guest_gzip_errors);
                log_warn("guest: frame type 0x%x seq %u dropped: %s", f.type, f.seq, plp_status_str(rc));
                continue;
            }
            STAT_INC(guest_protocol_errors);
            session_close(g, plp_status_str(rc));
            return;
        }
        if ((size_t)n < avail)
            break;
    }
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct guest_link *g = w->data;
    if (write_some(g) > 0)
        pump(g);
}

static void session_close(struct guest_link *g, const char *why)
{
    if (g->fd < 0)
        return;
    log_info("guest session closed: %s", why);
    ev_io_stop(g->loop, &g->rio);
    ev_io_stop(g->loop, &g->wio);
    close(g->fd);
    g->fd = -1;
    plp_decoder_free(&g->dec);
    /* a frame cut short is sent again, whole, to the next session */
    buf_reset(&g->wbuf);
    g->woff = 0;
    g->last_enc = NULL;
    struct envelope *e = envelope_new(ENV_GUEST_STATE, NULL, 0);
    if (e) {
        e->code = 0;
        tell_core(g, e);
    }
    STAT_SET(guest_connected, 0);
    maybe_finish_stop(g);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents; (void)w;
    struct guest_link *g = w->data;
    for (;;) {
        int fd = accept4(g->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept on the guest link: %s", strerror(errno));
            return;
        }
        /* on tcp:// the writer batches already; Nagle would only hold a
         * lone event back until the guest's delayed ACK (~40 ms) */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* EOPNOTSUPP off TCP */
        if (g->fd >= 0) {
            STAT_INC(guest_replaced);
            session_close(g, "replaced by a new guest connection");
        }
        g->fd = fd;
        plp_decoder_init(&g->dec);
        g->last_rx = ev_now(loop);
        ev_io_set(&g->rio, fd, EV_READ);
        ev_io_set(&g->wio, fd, EV_WRITE);
        ev_io_start(loop, &g->rio);
        /* the core hears it before the gauge says it: whoever saw
         * "connected" in a status answer finds the core agreeing */
        struct envelope *e = envelope_new(ENV_GUEST_STATE, NULL, 0);
        if (e) {
            e->code = 1;
            tell_core(g, e);
        }
        STAT_SET(guest_connected, 1);
        STAT_INC(guest_connections_total);
        log_info("guest connected (%zu events buffered)", g->count);
        pump(g);
    }
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct guest_link *g = w->data;
    if (g->fd < 0)
        return;
    double limit = g->cfg->heartbeat_misses * (g->cfg->heartbeat_ms / 1000.0);
    if (ev_now(loop) - g->last_rx > limit) {
        STAT_INC(guest_heartbeat_timeouts);
        session_close(g, "guest silent for too long (heartbeat)");
        return;
    }
    STAT_INC(guest_heartbeats_sent);
    send_control(g, PLP_HEARTBEAT, 0, NULL, 0);
}

static void finish_stop(struct guest_link *g)
{
    if (g->count && g->spool) {
        log_info("shutdown: %zu events wait in the spool for the next start", g->count);
    } else if (g->count) {
        STAT_ADD(guest_dropped_shutdown, g->count);
        log_warn("shutdown: %zu events could not be sent within the grace period", g->count);
    }
    ev_timer_stop(g->loop, &g->sync_w);
    if (g->fd >= 0) {
        ev_io_stop(g->loop, &g->rio);
        ev_io_stop(g->loop, &g->wio);
        close(g->fd);
        g->fd = -1;
        plp_decoder_free(&g->dec);
        STAT_SET(guest_connected, 0);
    }
    envelope_free_list(g->head);
    g->head = g->tail = g->last_enc = NULL;
    g->count = 0;
    g->bytes = 0;
    set_buffer_gauges(g);
    ev_timer_stop(g->loop, &g->grace_w);
    ev_timer_stop(g->loop, &g->hb_w);
    ev_io_stop(g->loop, &g->accept_w);
    envq_push_force(&g->d->core_q, envelope_new(ENV_CTL_STOPPED, "guest", 5));
    ev_break(g->loop, EVBREAK_ALL);
}

static void maybe_finish_stop(struct guest_link *g)
{
    if (!g->stopping)
        return;
    /* done when nothing is left, or nobody is there to take it */
    if ((g->count == 0 && g->woff == g->wbuf.len) || g->fd < 0)
        finish_stop(g);
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    finish_stop(w->data);
}

static void inbox_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct guest_link *g = w->data;
    struct envelope *e = envq_drain(&g->d->egress_q, NULL);
    while (e) {
        struct envelope *next = e->next;
        switch (e->type) {
        case ENV_FORWARD_EVENT:
            buffer_event(g, e);
            e = NULL;
            break;
        case ENV_H2G_CMD_REQ:
            if (g->fd < 0) {
                struct envelope *r;
                buf_reset(&g->scratch);
                cmd_result_write(&g->scratch, e->req_id, CMD_GUEST_ABSENT, NULL, NULL, 0);
                r = envelope_new(ENV_G2H_CMD_RESP, g->scratch.p, g->scratch.len);
                if (r) {
                    r->req_id = e->req_id;
                    tell_core(g, r);
                }
            } else {
                send_control(g, PLP_CMD_REQ_H2G, e->req_id, e->data, e->len);
            }
            break;
        case ENV_H2G_CMD_RESP:
            if (g->fd < 0)
                STAT_INC(guest_control_dropped);
            else
                send_control(g, PLP_CMD_RESP_H2G, e->req_id, e->data, e->len);
            break;
        case ENV_CTL_RELOAD: {
            struct config *nc;
            memcpy(&nc, e->data, sizeof nc);
            config_unref(g->cfg);
            g->cfg = nc;
            ev_timer_set(&g->hb_w, nc->heartbeat_ms / 1000.0, nc->heartbeat_ms / 1000.0);
            ev_timer_again(loop, &g->hb_w);
            break;
        }
        case ENV_CTL_STOP:
            g->stopping = true;
            ev_io_stop(loop, &g->accept_w);
            ev_timer_set(&g->grace_w, g->cfg->shutdown_grace_ms / 1000.0, 0.);
            ev_timer_start(loop, &g->grace_w);
            break;
        }
        envelope_free(e);
        e = next;
    }
    pump(g);
    maybe_finish_stop(g);
}

static void sync_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct guest_link *g = w->data;
    spool_sync(g->spool);
}

struct guest_link *guest_link_new(struct daemon *d, int listen_fd, const char *uri)
{
    struct guest_link *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->d = d;
    g->cfg = config_ref(d->cfg);
    g->listen_fd = listen_fd;
    g->fd = -1;
    g->next_seq = 1;
    snprintf(g->uri, sizeof g->uri, "%s", uri);
    g->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!g->loop) {
        guest_link_free(g);
        return NULL;
    }
    ev_io_init(&g->accept_w, accept_cb, listen_fd, EV_READ);
    ev_init(&g->rio, read_cb);
    ev_init(&g->wio, write_cb);
    ev_async_init(&g->inbox_w, inbox_cb);
    double hb = g->cfg->heartbeat_ms / 1000.0;
    ev_timer_init(&g->hb_w, heartbeat_cb, hb, hb);
    ev_init(&g->grace_w, grace_cb);
    g->accept_w.data = g->rio.data = g->wio.data = g->inbox_w.data = g;
    g->hb_w.data = g->grace_w.data = g;
    ev_io_start(g->loop, &g->accept_w);
    ev_async_start(g->loop, &g->inbox_w);
    ev_timer_start(g->loop, &g->hb_w);
    if ((g->spool = d->spool)) {
        double every = g->cfg->spool_fsync_ms / 1000.0;
        ev_timer_init(&g->sync_w, sync_cb, every, every);
        g->sync_w.data = g;
        ev_timer_start(g->loop, &g->sync_w);
    }
    envq_attach(&d->egress_q, g->loop, &g->inbox_w);
    return g;
}

static void *guest_thread(void *arg)
{
    struct guest_link *g = arg;
    ev_run(g->loop, 0);
    return NULL;
}

int guest_link_start(struct guest_link *g)
{
    if (pthread_create(&g->thread, NULL, guest_thread, g) != 0)
        return -1;
    pthread_setname_np(g->thread, "egress");   /* for top -H, perf and gdb */
    g->started = true;
    return 0;
}

void guest_link_join(struct guest_link *g)
{
    if (g->started)
        pthread_join(g->thread, NULL);
    g->started = false;
}

const char *guest_link_uri(const struct guest_link *g)
{
    return g->uri;
}

void guest_link_free(struct guest_link *g)
{
    if (!g)
        return;
    if (g->fd >= 0)
        close(g->fd);
    plp_decoder_free(&g->dec);
    envelope_free_list(g->head);
    if (g->loop)
        ev_loop_destroy(g->loop);
    if (g->listen_fd >= 0)
        close(g->listen_fd);
    config_unref(g->cfg);
    buf_free(&g->wbuf);
    buf_free(&g->scratch);
    free(g);
}
