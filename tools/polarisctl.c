/* polarisctl.c - the operator's command-line client for polarisd.
 *
 * Talks LSP v1 over the daemon's Unix socket (DESIGN 7): every subcommand is
 * a CMD_REQ with "target": "host" and a reserved or offered action. */
#include "buf.h"
#include "json_scan.h"
#include "lsp_codec.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/polaris/polaris.sock"
#define TIMEOUT_MS 10000

static void usage(FILE *f)
{
    fprintf(f,
        "usage: polarisctl [--socket PATH] COMMAND [ARGS]\n"
        "\n"
        "commands:\n"
        "  status [--json]        counters, guest link, plugins\n"
        "  reload                 re-read the config and plugins (like SIGHUP)\n"
        "  unload PLUGIN_ID       take one plugin out until the next reload\n"
        "  call ACTION [JSON]     run a host command and print its result\n"
        "\n"
        "The socket is --socket, else $POLARIS_SOCKET, else " DEFAULT_SOCKET ".\n"
        "Exit status: 0 success, 1 the daemon answered with an error,\n"
        "2 usage error, 3 the daemon could not be reached.\n");
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Sends one CMD_REQ and waits for its CMD_RESP. Returns 0 and the payload in
 * out, or -1 with a message on stderr. */
static int request(const char *sock, const char *action, const char *args, struct buf *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof sa.sun_path) {
        fprintf(stderr, "polarisctl: socket path too long: %s\n", sock);
        return -1;
    }
    strcpy(sa.sun_path, sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "polarisctl: cannot reach polarisd at %s: %s\n", sock, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct buf req = BUF_INIT, frame = BUF_INIT;
    buf_puts(&req, "{\"target\":\"host\",\"action\":");
    buf_json_cstr(&req, action);
    buf_printf(&req, ",\"args\":%s,\"timeout\":%d}", args ? args : "{}", TIMEOUT_MS);
    const uint32_t req_id = 1;
    int rc = -1;
    if (lsp_encode(&frame, LSP_CMD_REQ, req_id, req.p, req.len) < 0) {
        fprintf(stderr, "polarisctl: request too large\n");
        goto done;
    }
    for (size_t off = 0; off < frame.len;) {
        ssize_t n = send(fd, frame.p + off, frame.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "polarisctl: send: %s\n", strerror(errno));
            goto done;
        }
        off += (size_t)n;
    }
    struct lsp_decoder dec;
    lsp_decoder_init(&dec, LSP_MAX_FRAME);
    long long deadline = now_ms() + TIMEOUT_MS + 2000;
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
        long long left = deadline - now_ms();
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
    lsp_decoder_free(&dec);
done:
    close(fd);
    buf_free(&req);
    buf_free(&frame);
    return rc;
}

struct result {
    long long code;
    char msg[512];
    const char *data;
    size_t data_len;
};

static int parse_result(const struct buf *b, struct result *r)
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

/* Prints an object as indented "key: value" lines, nested objects indented. */
static void print_tree(const char *json, size_t len, int indent)
{
    struct json_member m[128];
    const char *err;
    int n = json_object_members(json, len, m, 128, &err);
    if (n < 0) {
        printf("%.*s\n", (int)len, json);
        return;
    }
    for (int i = 0; i < n && i < 128; i++) {
        char key[128];
        json_string_decode(m[i].key - 1, m[i].key_len + 2, key, sizeof key);
        if (m[i].kind == JSON_OBJECT) {
            printf("%*s%s:\n", indent, "", key);
            print_tree(m[i].val, m[i].val_len, indent + 2);
        } else if (m[i].kind == JSON_STRING) {
            char v[512];
            if (json_string_decode(m[i].val, m[i].val_len, v, sizeof v) < 0)
                snprintf(v, sizeof v, "%.*s", (int)m[i].val_len, m[i].val);
            printf("%*s%s: %s\n", indent, "", key, v);
        } else {
            printf("%*s%s: %.*s\n", indent, "", key, (int)m[i].val_len, m[i].val);
        }
    }
}

int main(int argc, char **argv)
{
    const char *sock = getenv("POLARIS_SOCKET");
    if (!sock || !*sock)
        sock = DEFAULT_SOCKET;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            sock = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "polarisctl: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    const char *action = NULL, *args = NULL;
    bool json = false;
    if (strcmp(cmd, "status") == 0) {
        action = "status";
        if (i < argc && strcmp(argv[i], "--json") == 0) {
            json = true;
            i++;
        }
    } else if (strcmp(cmd, "reload") == 0) {
        action = "reload";
    } else if (strcmp(cmd, "unload") == 0) {
        if (i >= argc) {
            fprintf(stderr, "polarisctl: usage: unload PLUGIN_ID\n");
            return 2;
        }
        static char idargs[256];
        struct buf ib = BUF_INIT;
        buf_puts(&ib, "{\"id\":");
        buf_json_cstr(&ib, argv[i++]);
        buf_putc(&ib, '}');
        snprintf(idargs, sizeof idargs, "%s", ib.p);
        buf_free(&ib);
        action = "unload";
        args = idargs;
    } else if (strcmp(cmd, "call") == 0) {
        if (i >= argc) {
            fprintf(stderr, "polarisctl: usage: call ACTION [JSON]\n");
            return 2;
        }
        action = argv[i++];
        json = true;
        if (i < argc) {
            args = argv[i++];
            const char *err;
            if (json_validate(args, strlen(args), &err) != JSON_OBJECT) {
                fprintf(stderr, "polarisctl: call: args must be a JSON object (%s)\n",
                        err ? err : "not an object");
                return 2;
            }
        }
    } else {
        fprintf(stderr, "polarisctl: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    if (i < argc) {
        fprintf(stderr, "polarisctl: unexpected argument '%s'\n", argv[i]);
        return 2;
    }
    struct buf out = BUF_INIT;
    if (request(sock, action, args, &out) < 0) {
        buf_free(&out);
        return 3;
    }
    struct result r;
    if (parse_result(&out, &r) < 0) {
        fprintf(stderr, "polarisctl: malformed answer: %s\n", out.p);
        buf_free(&out);
        return 1;
    }
    int rc = 0;
    if (r.code != 0) {
        fprintf(stderr, "polarisctl: %s: %s (code %lld)\n", action, r.msg, r.code);
        rc = 1;
    } else if (strcmp(cmd, "reload") == 0) {
        printf("reloaded\n");
        print_tree(r.data, r.data_len, 2);
        if (strstr(r.msg, "failed"))
            rc = 1;
    } else if (strcmp(cmd, "unload") == 0) {
        printf("unloaded\n");
    } else if (json) {
        printf("%.*s\n", (int)r.data_len, r.data);
    } else {
        print_tree(r.data, r.data_len, 0);
    }
    buf_free(&out);
    return rc;
}
