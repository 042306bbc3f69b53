/* ctl_common.c - the control request every polarisctl subcommand shares:
 * LSP v1 over the daemon's Unix socket (DESIGN 7), a CMD_REQ with
 * "target": "host" and a reserved or offered action, its answer parsed;
 * and the JSON accessors the subcommands read answers with. Kept apart from
 * polarisctl.c so the subcommands depend on this and the dispatcher on
 * them, never round a loop.
 *
 * Uses: lsp_codec, json_scan, buf. */
#include "ctl_common.h"
#include "wire/lsp_codec.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 10000

long long ctl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int ctl_connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "polarisctl: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "polarisctl: cannot reach polarisd at %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int ctl_send_all(int fd, const void *p, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t w = send(fd, (const char *)p + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "polarisctl: send: %s\n", strerror(errno));
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

int ctl_roundtrip(int fd, const char *action, const char *args, struct buf *out)
{
    static uint32_t next_id;
    struct buf req = BUF_INIT, frame = BUF_INIT;
    buf_puts(&req, "{\"target\":\"host\",\"action\":");
    buf_json_cstr(&req, action);
    buf_printf(&req, ",\"args\":%s,\"timeout\":%d}", args ? args : "{}", TIMEOUT_MS);
    const uint32_t req_id = ++next_id;
    int rc = -1;
    struct lsp_decoder dec;
    lsp_decoder_init(&dec, LSP_MAX_FRAME);
    if (lsp_encode(&frame, LSP_CMD_REQ, req_id, req.p, req.len) < 0) {
        fprintf(stderr, "polarisctl: request too large\n");
        goto done;
    }
    if (ctl_send_all(fd, frame.p, frame.len) < 0)
        goto done;
    long long deadline = ctl_now_ms() + TIMEOUT_MS + 2000;
    for (;;) {
        struct lsp_frame f;
        int st = lsp_decoder_next(&dec, &f);
        if (st == LSP_FRAME) {
            if (f.type == LSP_CMD_RESP && f.req_id == req_id) {
                buf_append(out, f.payload, f.len);
                rc = 0;
                break;
            }
            continue;
        }
        if (st < 0) {
            fprintf(stderr, "polarisctl: bad answer from polarisd: %s\n", lsp_status_str(st));
            break;
        }
        long long left = deadline - ctl_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            fprintf(stderr, "polarisctl: no answer from polarisd within %d ms\n", TIMEOUT_MS + 2000);
            break;
        }
        size_t avail;
        uint8_t *space = lsp_decoder_space(&dec, 65536, &avail);
        ssize_t n = space ? read(fd, space, avail) : -1;
        if (n <= 0) {
            fprintf(stderr, "polarisctl: polarisd closed the connection\n");
            break;
        }
        lsp_decoder_commit(&dec, (size_t)n);
    }
done:
    lsp_decoder_free(&dec);
    buf_free(&req);
    buf_free(&frame);
    return rc;
}

static int parse_result(const struct buf *b, struct ctl_result *r)
{
    struct json_member m[8];
    const char *err;
    int n = json_object_members(b->p, b->len, m, 8, &err);
    if (n < 0 || n > 8)
        return -1;
    const struct json_member *c = json_find(m, (size_t)n, "code");
    const struct json_member *msg = json_find(m, (size_t)n, "msg");
    const struct json_member *d = json_find(m, (size_t)n, "data");
    int64_t code;
    if (!c || json_to_i64(c->val, c->val_len, &code) < 0)
        return -1;
    r->code = code;
    r->msg[0] = '\0';
    if (msg && msg->kind == JSON_STRING)
        json_string_decode(msg->val, msg->val_len, r->msg, sizeof r->msg);
    r->data = d ? d->val : "{}";
    r->data_len = d ? d->val_len : 2;
    return 0;
}

int ctl_call(const char *sock, const char *action, const char *args, struct buf *out,
             struct ctl_result *r)
{
    int fd = ctl_connect_unix(sock);
    if (fd < 0)
        return CTL_UNREACHABLE;
    int rc = ctl_roundtrip(fd, action, args, out);
    close(fd);
    if (rc < 0)
        return CTL_UNREACHABLE;
    if (parse_result(out, r) < 0) {
        fprintf(stderr, "polarisctl: malformed answer: %.*s\n", (int)out->len, out->p);
        return CTL_FAILED;
    }
    return CTL_OK;
}

bool ctl_get(const char *json, size_t len, const char *key, struct json_member *out)
{
    struct json_member m[96];
    const char *err;
    int n = json_object_members(json, len, m, 96, &err);
    if (n < 0)
        return false;
    const struct json_member *f = json_find(m, n > 96 ? 96 : (size_t)n, key);
    if (!f)
        return false;
    *out = *f;
    return true;
}

void ctl_text(const struct json_member *m, char *out, size_t cap)
{
    if (m->kind != JSON_STRING || json_string_decode(m->val, m->val_len, out, cap) < 0)
        snprintf(out, cap, "%.*s", (int)m->val_len, m->val);
}

double ctl_num(const char *json, size_t len, const char *key)
{
    struct json_member m;
    if (!ctl_get(json, len, key, &m))
        return 0;
    if (m.kind == JSON_TRUE)
        return 1;
    if (m.kind != JSON_NUMBER)
        return 0;
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*s", (int)m.val_len, m.val);
    return strtod(tmp, NULL);
}
