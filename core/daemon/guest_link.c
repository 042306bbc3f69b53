/* guest_link.c - the egress domain (DESIGN 2, 3.2, 4).
 *
 * One thread, one libev loop: listens for the guest (vsock, tcp or unix: all
 * the same PLP byte stream), keeps one active session (a new connection
 * replaces the old), sends heartbeats and drops a silent guest, and owns the
 * outbound buffer: every event handed over and not done yet, oldest first.
 *
 *   head .. flight_end   written in this session, not done yet
 *   .. last_enc          encoded into the write buffer, not all written
 *   .. tail              not encoded yet
 *
 * An event is done once the guest acked it (acks on, DESIGN 3.2) or, for
 * a guest without acks (plain v1, and acks = auto until the first ack),
 * once the socket says the guest has read it (SIOCOUTQ: the bytes written
 * and not yet read; where a transport cannot tell, once written). Only
 * then is it freed and its spool record released. When a session ends,
 * acks on: unacked events go to the next session first, in order, under
 * their original seq_id (a frame cut off is sent again whole). Acks off:
 * what the guest may not have read is counted as lost and reported in the
 * next drop notice, never sent twice (a v1 guest cannot tell a copy).
 *
 * Full: while a guest is connected the buffer never drops; producers see
 * egress_full() and hold events back (the core keeps them against its own
 * queue's bound, so the ingress stops reading: backpressure). So it is for
 * away_after_ms after a session ends: a guest that reconnects at once
 * loses nothing. Once the guest is away, the oldest are dropped, counted, and a drop notice
 * (event 1000001) goes out first at the next session; the notice is itself
 * an event in the buffer, so it cannot be lost with a session.
 *
 * Uses: plp_codec, command_msg, event_json (the drop notice), envq, spool,
 * libev. */
#include "daemon/guest_link.h"
#include "lib/version.h"
#include "wire/command_msg.h"
#include "wire/event_ids.h"
#include "wire/event_json.h"
#include "lib/log.h"
#include "wire/plp_codec.h"
#include "daemon/spool.h"
#include "lib/stats.h"

#include <errno.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK  65536
#define PUMP_ROUNDS 64
#define SEQ_LEASE   65536         /* seq_ids reserved in the spool's guest.state at a time */
#define CONFIRM_S   0.005         /* how often a v1 guest's unread bytes are looked at */

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
    uint64_t wbase;               /* session bytes before wbuf.p[0] */

    /* the outbound buffer (see the top of the file) */
    struct envelope *head, *tail, *flight_end, *last_enc;
    size_t count, nflight;
    uint64_t bytes;
    uint32_t next_seq, last_sent_seq;
    bool sent_any;
    bool acks_seen;               /* a guest acked once: acks = auto turns on */
    uint32_t seq_lease;           /* spool: seq_ids below this are reserved on disk */
    uint32_t boot_id;             /* the first heartbeat's seq_id of every session */
    uint64_t drops_pending, lost_pending, first_drop_ms, last_drop_ms;

    ev_timer confirm_w;           /* without acks: looks at the socket's unread bytes */
    ev_timer away_w;              /* after a session: when the guest counts as away */

    bool stopping;
    struct buf scratch;

    struct spool *spool;          /* the daemon's disk spool, or NULL */
    ev_timer sync_w;              /* fdatasync every spool_fsync_ms */
};

/* How a session ended, which says what a guest without acks has read: a
 * clean end of stream means everything (a peer that closes with unread
 * bytes resets the connection instead, on unix and tcp alike); when we end
 * it, the socket still counts its unread bytes; after an error, only what
 * was seen read while it lived is known to be read. */
enum session_end { END_EOF, END_ERROR, END_OURS };

static void session_close(struct guest_link *g, const char *why, enum session_end how);
static void guest_away(struct guest_link *g);
static void pump(struct guest_link *g);
static void maybe_finish_stop(struct guest_link *g);

static void tell_core(struct guest_link *g, struct envelope *e)
{
    if (e)
        envq_push_force(&g->d->core_q, e);
}

void egress_push_events(struct daemon *d, struct envelope *head)
{
    if (!head)
        return;
    uint64_t n = 0, bytes = 0;
    for (struct envelope *e = head; e; e = e->next) {
        n++;
        bytes += e->len;
    }
    /* counted before the push: a producer that looks next sees them */
    atomic_fetch_add(&d->egress_events, n);
    atomic_fetch_add(&d->egress_bytes, bytes);
    envq_push_list_force(&d->egress_q, head);
}

static bool acks_on(const struct guest_link *g)
{
    return strcmp(g->cfg->acks, "on") == 0 || (strcmp(g->cfg->acks, "auto") == 0 && g->acks_seen);
}

/* RFC 1982 serial number order on 32 bits. */
static bool seq_after(uint32_t a, uint32_t b)
{
    return a != b && (uint32_t)(a - b) < 0x80000000u;
}

static void set_buffer_gauges(struct guest_link *g)
{
    STAT_SET(guest_buffered, g->count);
    STAT_SET(guest_buffered_bytes, g->bytes);
    STAT_SET(guest_unacked, g->nflight);
}

/* Room again after the core held events back: tell it (once). */
static void room_check(struct guest_link *g)
{
    struct daemon *d = g->d;
    if (atomic_load(&d->core_waits_egress) && !egress_full(d) &&
        atomic_exchange(&d->core_waits_egress, false))
        tell_core(g, envelope_new(ENV_EGRESS_ROOM, NULL, 0));
}

static void save_state(struct guest_link *g)
{
    if (g->spool)
        spool_save_guest(g->spool, g->seq_lease, g->acks_seen, g->boot_id);
}

static uint32_t take_seq(struct guest_link *g)
{
    uint32_t seq = g->next_seq++;
    if (g->next_seq == 0)
        g->next_seq = 1;
    /* with a spool, no seq_id is used before it is reserved on disk: after
     * a restart the next ones come after every seq_id ever sent */
    if (g->spool && !seq_after(g->seq_lease, seq)) {
        g->seq_lease = seq + SEQ_LEASE;
        if (g->seq_lease == 0)
            g->seq_lease = 1;
        save_state(g);
    }
    return seq;
}

/* Unlinks e, the head of the buffer, and frees it: it is done. */
static void release_head(struct guest_link *g, struct envelope *e)
{
    g->head = e->next;
    if (!g->head)
        g->tail = NULL;
    if (g->flight_end == e)
        g->flight_end = NULL;
    if (g->last_enc == e)
        g->last_enc = NULL;
    g->count--;
    g->bytes -= e->len;
    atomic_fetch_sub(&g->d->egress_events, 1);
    atomic_fetch_sub(&g->d->egress_bytes, e->len);
    if (g->spool && e->ev.spool_ticket) {
        spool_done(g->spool, e->ev.spool_ticket);
        STAT_SET(spool_bytes, spool_live_bytes(g->spool));
    }
    envelope_free(e);
}

static struct envelope *first_unwritten(struct guest_link *g)
{
    return g->flight_end ? g->flight_end->next : g->head;
}

static struct envelope *first_unencoded(struct guest_link *g)
{
    return g->last_enc ? g->last_enc->next : first_unwritten(g);
}

static void note_drop(struct guest_link *g, uint64_t n)
{
    uint64_t now = wall_ms();
    if (!g->drops_pending && !g->lost_pending)
        g->first_drop_ms = now;
    g->last_drop_ms = now;
    g->drops_pending += n;
}

/* The oldest event, dropped: only while no guest is connected (then
 * nothing is in flight or encoded). A drop notice dropped in turn passes
 * its count on to the next one. */
static bool drop_oldest(struct guest_link *g)
{
    struct envelope *v = g->head;
    if (!v || g->fd >= 0 || atomic_load(&g->d->guest_up))
        return false;
    if (v->ev.notice_dropped) {
        g->drops_pending += v->ev.notice_dropped;
    } else {
        note_drop(g, 1);
        STAT_INC(guest_dropped);
    }
    release_head(g, v);
    return true;
}

static bool over_limits(const struct guest_link *g)
{
    return g->count > g->cfg->buffer_max_events || g->bytes > g->cfg->buffer_max_bytes;
}

static void buffer_event(struct guest_link *g, struct envelope *e)
{
    if (e->len > g->cfg->buffer_max_bytes) {
        STAT_INC(guest_dropped_too_large);
        log_warn("dropping event %llu: %zu bytes exceed guest.buffer_max_bytes",
                 (unsigned long long)e->ev.id, e->len);
        atomic_fetch_sub(&g->d->egress_events, 1);
        atomic_fetch_sub(&g->d->egress_bytes, e->len);
        if (g->spool && e->ev.spool_ticket)
            spool_done(g->spool, e->ev.spool_ticket);
        envelope_free(e);
        return;
    }
    e->next = NULL;
    e->ev.notice_dropped = 0;
    if (g->tail)
        g->tail->next = e;
    else
        g->head = e;
    g->tail = e;
    g->count++;
    g->bytes += e->len;
    /* a guest that is there holds the producers back instead (egress_full) */
    while (!atomic_load(&g->d->guest_up) && over_limits(g))
        if (!drop_oldest(g))
            break;
    set_buffer_gauges(g);
}

/* The drop notice, as an event in the buffer ahead of what is not encoded
 * yet: resent or counted like any other if the session dies. */
static int queue_drop_notice(struct guest_link *g)
{
    struct buf *b = &g->scratch;
    buf_reset(b);
    uint64_t n = g->drops_pending + g->lost_pending;
    const struct event_source self = {getpid(), "polarisd", polaris_version};
    const struct drop_counts d = {g->drops_pending, g->lost_pending, g->first_drop_ms,
                                  g->last_drop_ms};
    int rc = event_json_drop_notice(b, wall_ms(), &self, &d);
    struct envelope *e = rc ? NULL : envelope_new(ENV_FORWARD_EVENT, b->p, b->len);
    if (!e)
        return -1;
    e->ev.id = POLARIS_EV_EVENTS_DROPPED;
    e->ev.notice_dropped = n;
    /* linked in before the first event not encoded */
    struct envelope *prev = g->last_enc ? g->last_enc : g->flight_end;
    e->next = prev ? prev->next : g->head;
    if (prev)
        prev->next = e;
    else
        g->head = e;
    if (!e->next)
        g->tail = e;
    g->count++;
    g->bytes += e->len;
    atomic_fetch_add(&g->d->egress_events, 1);
    atomic_fetch_add(&g->d->egress_bytes, e->len);
    log_warn("telling the guest that %llu events were dropped (%llu: buffer full while it was away, "
             "%llu: possibly unread when a session without acks ended)", (unsigned long long)n,
             (unsigned long long)g->drops_pending, (unsigned long long)g->lost_pending);
    g->drops_pending = g->lost_pending = 0;
    return 0;
}

/* Without acks: events the socket no longer holds were read by the guest,
 * and are done. */
static void confirm_read(struct guest_link *g)
{
    if (!g->nflight || g->fd < 0 || acks_on(g))
        return;
    uint64_t taken = g->wbase + g->woff;
    int outq = 0;
    /* SIOCOUTQ: what was written and not yet read by the peer (unix: the
     * queued buffers' whole size, overhead included, so never less than
     * the unread bytes; tcp: bytes the peer's kernel has not acked; vsock
     * on newer kernels); a transport that cannot tell: read once written */
    if (ioctl(g->fd, SIOCOUTQ, &outq) == 0 && outq >= 0) {
        /* a peer that is gone had its unread bytes thrown away, and they
         * no longer count: only a peer still there when we look after the
         * count makes it true (poll does not consume the error that tells
         * how it went, as a read or SO_ERROR would) */
        struct pollfd pf = {.fd = g->fd, .events = POLLRDHUP};
        if (poll(&pf, 1, 0) != 0)
            return;
        taken = (uint64_t)outq < taken ? taken - (uint64_t)outq : 0;
    }
    uint64_t n = 0;
    while (g->nflight && g->head->ev.wend <= taken) {
        g->nflight--;
        release_head(g, g->head);
        n++;
    }
    if (n) {
        set_buffer_gauges(g);
        room_check(g);
    }
}

static void confirm_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct guest_link *g = w->data;
    confirm_read(g);
    if (!g->nflight || g->fd < 0 || acks_on(g))
        ev_timer_stop(loop, w);
}

/* Events whose frames are now all written: done (acks off) or in flight. */
static void retire_written(struct guest_link *g)
{
    uint64_t sent = 0, written = g->wbase + g->woff;
    bool acks = acks_on(g), spool_gauge = false;
    while (g->last_enc) {
        struct envelope *e = first_unwritten(g);
        if (!e || e->ev.wend > written)
            break;
        bool last = e == g->last_enc;
        sent++;
        g->last_sent_seq = e->ev.seq;
        g->sent_any = true;
        g->flight_end = e;
        g->nflight++;
        /* without acks a replay after a restart could only be a copy (the
         * guest still reads what is in its socket): the spool lets go once
         * it is written; the flight only counts what may be lost */
        if (!acks && g->spool && e->ev.spool_ticket) {
            spool_done(g->spool, e->ev.spool_ticket);
            e->ev.spool_ticket = 0;
            spool_gauge = true;
        }
        if (last) {
            g->last_enc = NULL;
            break;
        }
    }
    if (sent)
        STAT_ADD(guest_events_sent, sent);     /* one atomic add per write */
    if (spool_gauge)
        STAT_SET(spool_bytes, spool_live_bytes(g->spool));
    if (g->woff == g->wbuf.len) {
        g->wbase += g->woff;
        buf_reset(&g->wbuf);
        g->woff = 0;
    } else if (g->woff > (1u << 20) && g->woff > g->wbuf.len / 2) {
        g->wbase += g->woff;
        buf_consume(&g->wbuf, g->woff);
        g->woff = 0;
    }
    set_buffer_gauges(g);
    if (!acks_on(g)) {
        confirm_read(g);
        if (g->nflight && !ev_is_active(&g->confirm_w))
            ev_timer_again(g->loop, &g->confirm_w);
    }
}

/* EVENT_ACK_G2H: everything up to seq is done (DESIGN 3.2). */
static void take_ack(struct guest_link *g, uint32_t seq)
{
    STAT_INC(guest_acks_received);
    if (!g->acks_seen) {
        g->acks_seen = true;
        save_state(g);
        if (strcmp(g->cfg->acks, "auto") == 0)
            log_info("the guest acknowledges events: acks on (guest.acks = auto)");
    }
    STAT_SET(guest_acks_on, acks_on(g));
    if (!acks_on(g))
        return;                    /* acks = off: v1 as configured */
    if (!g->sent_any || seq_after(seq, g->last_sent_seq)) {
        STAT_INC(guest_acks_ignored);
        log_debug("guest: ack %u is ahead of what was sent (%u): ignored", seq, g->last_sent_seq);
        return;
    }
    uint64_t n = 0;
    while (g->nflight && !seq_after(g->head->ev.seq, seq)) {
        g->nflight--;
        release_head(g, g->head);
        n++;
    }
    if (n)
        STAT_ADD(guest_events_acked, n);
    set_buffer_gauges(g);
    if (n)
        room_check(g);
    maybe_finish_stop(g);
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
        retire_written(g);                     /* what was written before the error counts */
        session_close(g, n == 0 ? "connection closed" : strerror(errno), END_ERROR);
        return -1;
    }
    retire_written(g);
    /* written out; but a heartbeat or command answer written from outside
     * pump() must not stop the watcher while events still wait to be
     * encoded: write_cb -> pump() picks them up */
    if (first_unencoded(g) || g->drops_pending || g->lost_pending)
        ev_io_start(g->loop, &g->wio);
    else
        ev_io_stop(g->loop, &g->wio);
    return 1;
}

static void pump(struct guest_link *g)
{
    if (g->fd < 0)
        return;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        while (g->wbuf.len - g->woff < g->cfg->write_ahead_bytes) {
            if ((g->drops_pending || g->lost_pending) && queue_drop_notice(g) < 0)
                break;
            struct envelope *e = first_unencoded(g);
            if (!e)
                break;
            if (e->ev.seq == 0) {
                e->ev.seq = take_seq(g);
                /* it may reach the guest and still be replayed after a
                 * restart (until acked): then under this same seq_id */
                if (g->spool && e->ev.spool_ticket)
                    spool_set_seq(g->spool, e->ev.spool_ticket, e->ev.seq);
            }
            if (plp_encode(&g->wbuf, PLP_EVENT_H2G, PLP_FLAG_JSON, e->ev.seq, e->data, e->len,
                           g->cfg->gzip_min_bytes) < 0) {
                log_error("cannot encode event %llu (out of memory)", (unsigned long long)e->ev.id);
                break;
            }
            e->ev.wend = g->wbase + g->wbuf.len;
            g->last_enc = e;
        }
        if (g->woff == g->wbuf.len)
            break;
        if (g->spool)
            spool_commit_seqs(g->spool);       /* noted before the frames can reach the guest */
        if (write_some(g) <= 0)
            return;
    }
    /* Unwritten bytes, or events the rounds did not reach: come back when
     * the socket is writable (at once, if it is). Without the second test
     * the tail of a burst waited for the next event to arrive. */
    if (g->woff < g->wbuf.len || g->drops_pending || g->lost_pending || first_unencoded(g))
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
    e->cmd.origin = ORIGIN_GUEST;
    memcpy(e->cmd.action, r.action, sizeof e->cmd.action);
    e->cmd.req_id = f->seq;
    e->cmd.timeout_ms = r.timeout_ms;
    if (command_lane_take(g->d, g->cfg->lane_max)) {
        envq_push_force(&g->d->core_q, e);     /* never behind events */
    } else {
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
    case PLP_EVENT_ACK_G2H:
        take_ack(g, f->seq);
        break;
    case PLP_CMD_RESP_G2H: {
        struct envelope *e = envelope_new(ENV_G2H_CMD_RESP, f->payload, f->len);
        if (e) {
            e->cmd.req_id = f->seq;
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
            session_close(g, "out of memory", END_OURS);
            return;
        }
        ssize_t n = read(g->fd, p, avail);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
            session_close(g, n == 0 ? "guest closed the connection" : strerror(errno),
                          n == 0 ? END_EOF : END_ERROR);
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
            session_close(g, plp_status_str(rc), END_OURS);
            return;
        }
        if ((size_t)n < avail)
            break;
    }
    if (g->fd >= 0 && g->nflight)
        confirm_read(g);                       /* a guest that talks has read, too */
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct guest_link *g = w->data;
    if (write_some(g) > 0)
        pump(g);
}

static void session_close(struct guest_link *g, const char *why, enum session_end how)
{
    if (g->fd < 0)
        return;
    log_info("guest session closed: %s", why);
    bool acks = acks_on(g);
    if (!acks && how == END_OURS)
        confirm_read(g);                       /* its unread bytes are still counted */
    /* what was never all written goes out again under a new seq_id: the
     * guest never took it, and seq_ids must rise in the order they are
     * sent (a drop notice may go first) */
    for (struct envelope *e = first_unwritten(g); e; e = e->next)
        e->ev.seq = 0;
    ev_io_stop(g->loop, &g->rio);
    ev_io_stop(g->loop, &g->wio);
    close(g->fd);
    g->fd = -1;
    plp_decoder_free(&g->dec);
    /* a frame cut short is sent again, whole, to the next session; so is
     * every unacked event, first, under its seq_id */
    buf_reset(&g->wbuf);
    g->woff = 0;
    g->wbase = 0;
    g->last_enc = NULL;
    if (acks && g->nflight) {
        STAT_ADD(guest_resent, g->nflight);
        log_info("%zu unacked events go to the next session again", g->nflight);
    } else if (g->nflight && how == END_EOF) {
        while (g->nflight) {                   /* a clean end: it read all we wrote */
            g->nflight--;
            release_head(g, g->head);
        }
    } else if (g->nflight) {
        /* no acks: what it may not have read is lost; counted, reported */
        uint64_t events = 0, notices = 0;
        while (g->nflight) {
            g->nflight--;
            if (g->head->ev.notice_dropped)
                notices += g->head->ev.notice_dropped;   /* told again */
            else
                events++;
            release_head(g, g->head);
        }
        if (!g->drops_pending && !g->lost_pending)
            g->first_drop_ms = wall_ms();
        g->last_drop_ms = wall_ms();
        g->lost_pending += events;
        g->drops_pending += notices;
        STAT_ADD(guest_lost, events);
        log_warn("%llu events written to the guest may not have been read when its session ended "
                 "(no acks): reported as lost", (unsigned long long)events);
    }
    g->flight_end = NULL;
    g->nflight = 0;
    ev_timer_stop(g->loop, &g->confirm_w);
    set_buffer_gauges(g);
    if (g->cfg->away_after_ms == 0) {
        guest_away(g);
    } else {
        ev_timer_set(&g->away_w, g->cfg->away_after_ms / 1000.0, 0.);
        ev_timer_start(g->loop, &g->away_w);
    }
    struct envelope *e = envelope_new(ENV_GUEST_STATE, NULL, 0);
    if (e) {
        e->guest_up = 0;
        tell_core(g, e);
    }
    STAT_SET(guest_connected, 0);
    maybe_finish_stop(g);
}

/* No new session within away_after_ms: the guest is away. The buffer
 * drops its oldest from now on, and producers stop waiting for it. */
static void guest_away(struct guest_link *g)
{
    ev_timer_stop(g->loop, &g->away_w);
    if (g->fd >= 0)
        return;
    atomic_store(&g->d->guest_up, false);
    /* the buffer may have outgrown its limit while the guest held it */
    while (over_limits(g) && drop_oldest(g))
        ;
    set_buffer_gauges(g);
    room_check(g);
}

static void away_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    guest_away(w->data);
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
            session_close(g, "replaced by a new guest connection", END_OURS);
        }
        g->fd = fd;
        g->wbase = 0;
        plp_decoder_init(&g->dec);
        g->last_rx = ev_now(loop);
        ev_io_set(&g->rio, fd, EV_READ);
        ev_io_set(&g->wio, fd, EV_WRITE);
        ev_io_start(loop, &g->rio);
        /* the core hears it before the gauge says it: whoever saw
         * "connected" in a status answer finds the core agreeing */
        struct envelope *e = envelope_new(ENV_GUEST_STATE, NULL, 0);
        if (e) {
            e->guest_up = 1;
            tell_core(g, e);
        }
        STAT_SET(guest_connected, 1);
        STAT_INC(guest_connections_total);
        ev_timer_stop(loop, &g->away_w);
        atomic_store(&g->d->guest_up, true);
        log_info("guest connected (%zu events buffered)", g->count);
        /* first, a heartbeat whose seq_id is this daemon's boot id: a guest
         * that drops copies by seq_id starts over when it changes (a
         * restart without a spool starts seq_ids over) */
        send_control(g, PLP_HEARTBEAT, g->boot_id, NULL, 0);
        if (g->fd >= 0)
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
        session_close(g, "guest silent for too long (heartbeat)", END_OURS);
        return;
    }
    STAT_INC(guest_heartbeats_sent);
    send_control(g, PLP_HEARTBEAT, g->boot_id, NULL, 0);
    if (g->fd >= 0)
        confirm_read(g);
}

static void finish_stop(struct guest_link *g)
{
    if (!acks_on(g)) {                         /* written: done, as far as a v1 guest goes */
        while (g->nflight) {
            g->nflight--;
            release_head(g, g->head);
        }
    }
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
        atomic_store(&g->d->guest_up, false);
        plp_decoder_free(&g->dec);
        STAT_SET(guest_connected, 0);
    }
    /* not done: the spool keeps them (their records stay unfinished) */
    atomic_fetch_sub(&g->d->egress_events, g->count);
    atomic_fetch_sub(&g->d->egress_bytes, g->bytes);
    envelope_free_list(g->head);
    g->head = g->tail = g->last_enc = g->flight_end = NULL;
    g->count = g->nflight = 0;
    g->bytes = 0;
    set_buffer_gauges(g);
    ev_timer_stop(g->loop, &g->grace_w);
    ev_timer_stop(g->loop, &g->hb_w);
    ev_timer_stop(g->loop, &g->confirm_w);
    ev_timer_stop(g->loop, &g->away_w);
    ev_io_stop(g->loop, &g->accept_w);
    envq_push_force(&g->d->core_q, envelope_new(ENV_CTL_STOPPED, "guest", 5));
    ev_break(g->loop, EVBREAK_ALL);
}

static void maybe_finish_stop(struct guest_link *g)
{
    if (!g->stopping)
        return;
    /* done when nothing is left (without acks: all written; whether the
     * guest reads it is not ours to wait for), or nobody is there */
    size_t left = acks_on(g) ? g->count : g->count - g->nflight;
    if ((left == 0 && g->woff == g->wbuf.len) || g->fd < 0)
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
                cmd_result_write(&g->scratch, e->cmd.req_id, CMD_GUEST_ABSENT, NULL, NULL, 0);
                r = envelope_new(ENV_G2H_CMD_RESP, g->scratch.p, g->scratch.len);
                if (r) {
                    r->cmd.req_id = e->cmd.req_id;
                    tell_core(g, r);
                }
            } else {
                send_control(g, PLP_CMD_REQ_H2G, e->cmd.req_id, e->data, e->len);
            }
            break;
        case ENV_H2G_CMD_RESP:
            if (g->fd < 0)
                STAT_INC(guest_control_dropped);
            else
                send_control(g, PLP_CMD_RESP_H2G, e->cmd.req_id, e->data, e->len);
            break;
        case ENV_CTL_RELOAD: {
            struct config *nc;
            memcpy(&nc, e->data, sizeof nc);
            config_unref(g->cfg);
            g->cfg = nc;
            atomic_store(&g->d->egress_max_events, nc->buffer_max_events);
            atomic_store(&g->d->egress_max_bytes, nc->buffer_max_bytes);
            STAT_SET(guest_acks_on, acks_on(g));
            room_check(g);
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
    atomic_store(&d->egress_max_events, g->cfg->buffer_max_events);
    atomic_store(&d->egress_max_bytes, g->cfg->buffer_max_bytes);
    if ((g->spool = d->spool) &&
        spool_load_guest(g->spool, &g->seq_lease, &g->acks_seen, &g->boot_id) == 0) {
        /* every seq_id below the lease may have been used: go on past it */
        g->next_seq = g->seq_lease ? g->seq_lease : 1;
    } else if (getrandom(&g->boot_id, sizeof g->boot_id, GRND_NONBLOCK) != (ssize_t)sizeof g->boot_id) {
        g->boot_id = (uint32_t)wall_ms() ^ (uint32_t)getpid() << 16;
    }
    if (!g->boot_id)
        g->boot_id = 1;
    if (g->spool) {
        g->seq_lease = g->next_seq;            /* the next take_seq reserves a block */
        save_state(g);
    }
    STAT_SET(guest_acks_on, acks_on(g));
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
    ev_init(&g->away_w, away_cb);
    g->away_w.data = g;
    ev_init(&g->confirm_w, confirm_cb);
    g->confirm_w.repeat = CONFIRM_S;
    g->confirm_w.data = g;
    g->accept_w.data = g->rio.data = g->wio.data = g->inbox_w.data = g;
    g->hb_w.data = g->grace_w.data = g;
    ev_io_start(g->loop, &g->accept_w);
    ev_async_start(g->loop, &g->inbox_w);
    ev_timer_start(g->loop, &g->hb_w);
    if (g->spool) {
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
