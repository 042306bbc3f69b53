/* ctl_guest.c - `polarisctl guest URI`: a guest simulator speaking PLP v1.
 * It connects to the daemon's guest link as the Android side would, prints
 * every event as one line of JSON on stdout, answers the host's commands
 * (CMD_REQ_H2G) with a configurable result, sends its own commands (--cmd,
 * or one per line on stdin: ACTION [JSON]) and prints their answers as
 * {"seq":N,"action":"...","result":{...}} lines, and keeps the session
 * alive with heartbeats.
 *
 * It acknowledges what it takes (EVENT_ACK_G2H, DESIGN 3.2: one cumulative
 * ack per read) unless --no-ack plays a plain v1 guest, and takes an event
 * only when its seq_id is after the last one it took, so the copies a
 * daemon sends again after a broken session are dropped (counted on
 * stderr). A heartbeat's seq_id is the daemon's boot id: when it changes
 * (a daemon restarted without a spool starts its seq_ids over) the last
 * seq_id is forgotten. --reconnect keeps going across sessions (and daemon
 * restarts) until --count or --timeout; --state FILE keeps the last seq_id
 * and boot id across runs.
 *
 * Uses: ctl_common (send, clock, JSON accessors), transport (connect),
 * plp_codec, json_scan, buf. */
#include "ctl.h"
#include "wire/plp_codec.h"
#include "lib/transport.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct guest {
    int fd;
    bool ack;                      /* send EVENT_ACK_G2H (not --no-ack) */
    bool have_last;                /* took an event since the boot id was seen */
    uint32_t last_taken, boot_id;
    long duplicates;
    const char *state;             /* --state FILE */
    struct buf out;
    uint32_t next_seq;
    int pending;                   /* our commands not answered yet */
    char actions[64][48];          /* by seq % 64, for printing answers */
    const char *answer;            /* --answer: {code, msg, data} */
};

static int flush(struct guest *g)
{
    int rc = ctl_send_all(g->fd, g->out.p, g->out.len);
    buf_reset(&g->out);
    return rc;
}

/* "ACTION [JSON]" -> CMD_REQ_G2H */
static int send_command(struct guest *g, const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    size_t alen = strcspn(line, " \t\r\n");
    if (alen == 0)
        return 0;                            /* a blank line */
    if (alen >= sizeof g->actions[0]) {
        fprintf(stderr, "polarisctl: guest: action name too long\n");
        return 0;
    }
    const char *args = line + alen;
    while (*args == ' ' || *args == '\t')
        args++;
    size_t arglen = strcspn(args, "\r\n");
    const char *err;
    if (arglen && json_validate(args, arglen, &err) != JSON_OBJECT) {
        fprintf(stderr, "polarisctl: guest: args for %.*s must be a JSON object (%s)\n", (int)alen,
                line, err ? err : "not an object");
        return 0;
    }
    struct buf body = BUF_INIT;
    buf_puts(&body, "{\"action\":");
    buf_json_str(&body, line, alen);
    buf_puts(&body, ",\"args\":");
    if (arglen)
        buf_append(&body, args, arglen);
    else
        buf_puts(&body, "{}");
    buf_puts(&body, "}");
    uint32_t seq = ++g->next_seq;
    snprintf(g->actions[seq % 64], sizeof g->actions[0], "%.*s", (int)alen, line);
    int rc = plp_encode(&g->out, PLP_CMD_REQ_G2H, PLP_FLAG_JSON, seq, body.p, body.len, 1024);
    buf_free(&body);
    if (rc < 0)
        return -1;
    g->pending++;
    return flush(g);
}

static int answer_host(struct guest *g, const struct plp_frame *f)
{
    struct json_member m;
    char action[64] = "?";
    if (ctl_get(f->payload, f->len, "action", &m))
        ctl_text(&m, action, sizeof action);
    fprintf(stderr, "polarisctl: guest: the host asks for %s (seq %u)\n", action, f->seq);
    struct buf body = BUF_INIT;
    buf_printf(&body, "{\"reqId\":%u", f->seq);
    const char *a = g->answer;
    size_t al = a ? strlen(a) : 0;
    struct json_member code, msg, data;
    if (a && ctl_get(a, al, "code", &code))
        buf_printf(&body, ",\"code\":%.*s", (int)code.val_len, code.val);
    else
        buf_puts(&body, ",\"code\":0");
    if (a && ctl_get(a, al, "msg", &msg))
        buf_printf(&body, ",\"msg\":%.*s", (int)msg.val_len, msg.val);
    else
        buf_puts(&body, ",\"msg\":\"Success\"");
    if (a && ctl_get(a, al, "data", &data)) {
        buf_printf(&body, ",\"data\":%.*s}", (int)data.val_len, data.val);
    } else {
        buf_puts(&body, ",\"data\":{\"simulated\":true,\"action\":");
        buf_json_cstr(&body, action);
        buf_puts(&body, "}}");
    }
    int rc = plp_encode(&g->out, PLP_CMD_RESP_G2H, PLP_FLAG_JSON, f->seq, body.p, body.len, 1024);
    buf_free(&body);
    return rc < 0 ? -1 : flush(g);
}

/* RFC 1982 serial number order on 32 bits. */
static bool seq_after(uint32_t a, uint32_t b)
{
    return a != b && (uint32_t)(a - b) < 0x80000000u;
}

static void load_state(struct guest *g)
{
    FILE *f = g->state ? fopen(g->state, "r") : NULL;
    if (!f)
        return;
    unsigned last, boot;
    if (fscanf(f, "%u %u", &last, &boot) == 2) {
        g->last_taken = last;
        g->boot_id = boot;
        g->have_last = true;
    }
    fclose(f);
}

static void save_state(const struct guest *g)
{
    if (!g->state || !g->have_last)
        return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", g->state);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%u %u\n", g->last_taken, g->boot_id) < 0 || fclose(f) != 0 ||
        rename(tmp, g->state) != 0)
        fprintf(stderr, "polarisctl: guest: cannot write %s: %s\n", g->state, strerror(errno));
}

/* An event frame: taken (printed, true) unless a copy of one taken already. */
static bool take_event(struct guest *g, const struct plp_frame *f)
{
    if (g->have_last && !seq_after(f->seq, g->last_taken)) {
        g->duplicates++;
        return false;
    }
    g->last_taken = f->seq;
    g->have_last = true;
    printf("%.*s\n", (int)f->len, f->payload);
    return true;
}

int ctl_cmd_guest(int argc, char **argv)
{
    const char *uri = NULL;
    const char *cmds[64];
    int ncmds = 0;
    long count = 0, timeout_ms = 0, heartbeat_ms = 5000;
    bool reconnect = false;
    struct guest g = {.fd = -1, .ack = true, .out = BUF_INIT};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (strcmp(a, "--cmd") == 0 && more && ncmds < 64)
            cmds[ncmds++] = argv[++i];
        else if (strcmp(a, "--answer") == 0 && more)
            g.answer = argv[++i];
        else if (strcmp(a, "--count") == 0 && more)
            count = strtol(argv[++i], NULL, 10);
        else if (strcmp(a, "--timeout") == 0 && more)
            timeout_ms = strtol(argv[++i], NULL, 10);
        else if (strcmp(a, "--heartbeat-ms") == 0 && more)
            heartbeat_ms = strtol(argv[++i], NULL, 10);
        else if (strcmp(a, "--no-ack") == 0)
            g.ack = false;
        else if (strcmp(a, "--reconnect") == 0)
            reconnect = true;
        else if (strcmp(a, "--state") == 0 && more)
            g.state = argv[++i];
        else if (a[0] != '-' && !uri)
            uri = a;
        else {
            fprintf(stderr, "polarisctl: guest: unexpected '%s'\n", a);
            return CTL_USAGE;
        }
    }
    const char *err;
    if (!uri || count < 0 || timeout_ms < 0 || heartbeat_ms < 10 ||
        (g.answer && json_validate(g.answer, strlen(g.answer), &err) != JSON_OBJECT)) {
        fprintf(stderr, "polarisctl: usage: guest URI [--cmd 'ACTION [JSON]']... [--answer JSON] "
                        "[--count N] [--timeout MS] [--heartbeat-ms MS] [--no-ack] [--reconnect] "
                        "[--state FILE]\n");
        return CTL_USAGE;
    }
    load_state(&g);
    char cerr[256];
    g.fd = transport_connect(uri, cerr, sizeof cerr);
    if (g.fd < 0) {
        fprintf(stderr, "polarisctl: guest: %s\n", cerr);
        return CTL_UNREACHABLE;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = CTL_OK;
    for (int i = 0; i < ncmds && rc == CTL_OK; i++)
        if (send_command(&g, cmds[i]) < 0)
            rc = CTL_UNREACHABLE;
    /* with --cmd or --count the session has its goals; otherwise commands
     * are typed (or piped) on stdin, and its end, once every answer is in,
     * ends the session */
    bool goals = count > 0 || ncmds > 0;
    bool use_stdin = !goals;
    struct plp_decoder dec;
    plp_decoder_init(&dec);
    char line[65536];
    size_t linelen = 0;
    long events = 0;
    long long start = ctl_now_ms(), next_hb = start;
    while (rc == CTL_OK) {
        if (goals && events >= count && g.pending == 0)
            break;
        long long now = ctl_now_ms();
        if (timeout_ms && now - start >= timeout_ms) {
            fprintf(stderr, "polarisctl: guest: timed out after %ld ms (%ld events, %d commands "
                            "unanswered)\n", timeout_ms, events, g.pending);
            rc = CTL_FAILED;
            break;
        }
        if (now >= next_hb) {
            if (plp_encode(&g.out, PLP_HEARTBEAT, 0, 0, NULL, 0, 0) < 0 || flush(&g) < 0) {
                rc = CTL_UNREACHABLE;
                break;
            }
            next_hb = now + heartbeat_ms;
        }
        long long wait = next_hb - now;
        if (timeout_ms && start + timeout_ms - now < wait)
            wait = start + timeout_ms - now;
        struct pollfd p[2] = {{.fd = g.fd, .events = POLLIN}, {.fd = STDIN_FILENO, .events = POLLIN}};
        int n = poll(p, use_stdin ? 2 : 1, (int)(wait > 0 ? wait : 0));
        if (n < 0 && errno != EINTR) {
            rc = CTL_FAILED;
            break;
        }
        if (use_stdin && (p[1].revents & (POLLIN | POLLHUP))) {
            ssize_t r = read(STDIN_FILENO, line + linelen, sizeof line - 1 - linelen);
            if (r <= 0) {
                use_stdin = false;            /* EOF: no more commands */
                goals = true;
            } else {
                linelen += (size_t)r;
                char *nl;
                while ((nl = memchr(line, '\n', linelen))) {
                    *nl = '\0';
                    if (send_command(&g, line) < 0)
                        rc = CTL_UNREACHABLE;
                    linelen -= (size_t)(nl + 1 - line);
                    memmove(line, nl + 1, linelen);
                }
                if (linelen == sizeof line - 1)
                    linelen = 0;              /* an endless line: drop it */
            }
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        size_t avail;
        uint8_t *space = plp_decoder_space(&dec, 65536, &avail);
        ssize_t r = space ? recv(g.fd, space, avail, 0) : -1;
        if (r <= 0 && reconnect && space) {
            /* a new session: what was not acked comes again, copies dropped */
            close(g.fd);
            plp_decoder_free(&dec);
            plp_decoder_init(&dec);
            buf_reset(&g.out);
            g.fd = -1;
            while (g.fd < 0) {
                if (timeout_ms && ctl_now_ms() - start >= timeout_ms)
                    break;
                struct timespec ts = {0, 20 * 1000000L};
                nanosleep(&ts, NULL);
                g.fd = transport_connect(uri, cerr, sizeof cerr);
            }
            if (g.fd < 0) {
                fprintf(stderr, "polarisctl: guest: could not reconnect: %s\n", cerr);
                rc = CTL_FAILED;
                break;
            }
            next_hb = ctl_now_ms();
            continue;
        }
        if (r <= 0) {
            if (goals) {
                fprintf(stderr, "polarisctl: guest: polarisd closed the session (%ld events, %d "
                                "commands unanswered)\n", events, g.pending);
                rc = CTL_FAILED;
            }
            break;
        }
        plp_decoder_commit(&dec, (size_t)r);
        bool took = false;
        for (;;) {
            struct plp_frame f;
            int st = plp_decoder_next(&dec, &f);
            if (st == PLP_NEED_MORE)
                break;
            if (st < 0) {
                fprintf(stderr, "polarisctl: guest: %s\n", plp_status_str(st));
                rc = CTL_FAILED;
                break;
            }
            if (st != PLP_FRAME) {
                fprintf(stderr, "polarisctl: guest: frame dropped: %s\n", plp_status_str(st));
                continue;
            }
            if (f.type == PLP_EVENT_H2G) {
                if (take_event(&g, &f)) {
                    events++;
                    took = true;
                }
            } else if (f.type == PLP_HEARTBEAT) {
                if (f.seq && f.seq != g.boot_id) {
                    /* another daemon lifetime: its seq_ids start over */
                    g.boot_id = f.seq;
                    g.have_last = false;
                }
            } else if (f.type == PLP_CMD_RESP_H2G) {
                printf("{\"seq\":%u,\"action\":", f.seq);
                struct buf a = BUF_INIT;
                buf_json_cstr(&a, g.actions[f.seq % 64]);
                printf("%.*s,\"result\":%.*s}\n", (int)a.len, a.p, (int)f.len, f.payload);
                buf_free(&a);
                if (g.pending > 0)
                    g.pending--;
            } else if (f.type == PLP_CMD_REQ_H2G) {
                if (answer_host(&g, &f) < 0)
                    rc = CTL_UNREACHABLE;
            }
        }
        /* one cumulative ack per read: everything up to the last taken.
         * A read of copies only is acked too: the daemon still waits. */
        if (rc == CTL_OK && g.ack && g.have_last && (took || g.duplicates)) {
            fflush(stdout);                   /* taken means written out */
            save_state(&g);
            if (plp_encode(&g.out, PLP_EVENT_ACK_G2H, 0, g.last_taken, NULL, 0, 0) < 0 || flush(&g) < 0)
                rc = reconnect ? CTL_OK : CTL_UNREACHABLE;
        } else if (took) {
            save_state(&g);
        }
    }
    if (g.duplicates)
        fprintf(stderr, "polarisctl: guest: %ld copies of events already taken were dropped\n",
                g.duplicates);
    save_state(&g);
    plp_decoder_free(&dec);
    buf_free(&g.out);
    close(g.fd);
    return rc;
}
