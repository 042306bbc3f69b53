/* polarisctl.c - the operator's command-line client for polarisd: the
 * dispatcher and the control request every subcommand shares.
 *
 * Talks LSP v1 over the daemon's Unix socket (DESIGN 7): control
 * subcommands are a CMD_REQ with "target": "host" and a reserved or offered
 * action. The other subcommands live in tools/ctl_*.c.
 *
 * Uses: lsp_codec, json_scan, buf. */
#include "ctl.h"
#include "lib/version.h"
#include "wire/lsp_codec.h"

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
        "       polarisctl --version | --help | COMMAND --help\n"
        "\n"
        "talking to a running polarisd:\n"
        "  status [--json]              counters, guest link, plugins\n"
        "  plugins                      one line per plugin: version, state, host (pid, state,\n"
        "                               restarts) when out of process, memory, cpu, errors\n"
        "  reload                       re-read the config and plugins (like SIGHUP); exit 1 if any failed\n"
        "  unload PLUGIN_ID             take one plugin out until the next reload\n"
        "  call ACTION [JSON]           run a host command and print its result\n"
        "  send EVENT_ID [KEY=VALUE | KEY:=JSON ...]\n"
        "  send --json FILE|-           report an event as an app would\n"
        "  metrics                      every counter and gauge, Prometheus text format\n"
        "\n"
        "playing the guest:\n"
        "  guest URI [--cmd 'ACTION [JSON]']... [--answer JSON] [--count N] [--timeout MS]\n"
        "                               connect to the daemon's guest link (unix:PATH,\n"
        "                               tcp://HOST:PORT, vsock://CID:PORT), print every event\n"
        "                               as a line of JSON, answer its commands, send yours\n"
        "                               (--cmd, or typed one per line on stdin)\n"
        "\n"
        "working on plugins (no daemon needed):\n"
        "  plugin-test PLUGIN EVENTS.json [-c CONF] [--polarisd PATH]\n"
        "                               run one plugin in the real sandbox against sample\n"
        "                               events; print what it would forward\n"
        "  keygen KEYFILE               make an Ed25519 key pair (KEYFILE, KEYFILE.pub)\n"
        "  sign KEYFILE PLUGIN.json     sign a plugin (manifest + Lua file) -> PLUGIN.sig\n"
        "  verify PUBFILE PLUGIN.json   check a plugin's signature\n"
        "\n"
        "The socket is --socket, else $POLARIS_SOCKET, else " DEFAULT_SOCKET ".\n"
        "Exit status: 0 success, 1 the daemon (or the check) said no, 2 usage error,\n"
        "3 the daemon could not be reached, 4 (status, plugins) a plugin is in Error.\n");
}

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

/* Prints an object as indented "key: value" lines, nested objects indented;
 * the plugins array (top level) is left to the table after it. */
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
        if (indent == 0 && strcmp(key, "plugins") == 0 && m[i].kind == JSON_ARRAY)
            continue;
        if (m[i].kind == JSON_OBJECT) {
            printf("%*s%s:\n", indent, "", key);
            print_tree(m[i].val, m[i].val_len, indent + 2);
        } else {
            char v[512];
            ctl_text(&m[i], v, sizeof v);
            printf("%*s%s: %s\n", indent, "", key, v);
        }
    }
}

/* reload: one line per plugin with its outcome; exit 1 if any failed. */
static int print_reload(const struct ctl_result *r)
{
    struct json_member plugins;
    int failed = (int)ctl_num(r->data, r->data_len, "failed");
    printf("reloaded: %d plugin%s failed\n", failed, failed == 1 ? "" : "s");
    if (ctl_get(r->data, r->data_len, "plugins", &plugins) && plugins.kind == JSON_ARRAY) {
        struct json_member v[256];
        const char *err;
        int n = json_array_elements(plugins.val, plugins.val_len, v, 256, &err);
        for (int i = 0; i < n && i < 256; i++) {
            struct json_member id, outcome, reason;
            char sid[128] = "?", so[32] = "?", sr[512] = "";
            if (ctl_get(v[i].val, v[i].val_len, "id", &id))
                ctl_text(&id, sid, sizeof sid);
            if (ctl_get(v[i].val, v[i].val_len, "outcome", &outcome))
                ctl_text(&outcome, so, sizeof so);
            if (ctl_get(v[i].val, v[i].val_len, "reason", &reason) && reason.kind == JSON_STRING)
                ctl_text(&reason, sr, sizeof sr);
            printf("  %-24s %-10s %s\n", sid, so, sr);
        }
    }
    return failed || strstr(r->msg, "failed") ? CTL_FAILED : CTL_OK;
}

static int control(const char *sock, const char *cmd, int argc, char **argv)
{
    const char *action = cmd, *args = NULL;
    bool json = false;
    struct buf ib = BUF_INIT;
    int i = 0;
    if (strcmp(cmd, "status") == 0) {
        if (i < argc && strcmp(argv[i], "--json") == 0) {
            json = true;
            i++;
        }
    } else if (strcmp(cmd, "unload") == 0) {
        if (i >= argc) {
            fprintf(stderr, "polarisctl: usage: unload PLUGIN_ID\n");
            return CTL_USAGE;
        }
        buf_puts(&ib, "{\"id\":");
        buf_json_cstr(&ib, argv[i++]);
        buf_putc(&ib, '}');
        args = ib.p;
    } else if (strcmp(cmd, "call") == 0) {
        if (i >= argc) {
            fprintf(stderr, "polarisctl: usage: call ACTION [JSON]\n");
            return CTL_USAGE;
        }
        action = argv[i++];
        json = true;
        if (i < argc) {
            args = argv[i++];
            const char *err;
            if (json_validate(args, strlen(args), &err) != JSON_OBJECT) {
                fprintf(stderr, "polarisctl: call: args must be a JSON object (%s)\n",
                        err ? err : "not an object");
                return CTL_USAGE;
            }
        }
    }
    if (i < argc) {
        fprintf(stderr, "polarisctl: unexpected argument '%s'\n", argv[i]);
        buf_free(&ib);
        return CTL_USAGE;
    }
    struct buf out = BUF_INIT;
    struct ctl_result r;
    int rc = ctl_call(sock, action, args, &out, &r);
    buf_free(&ib);
    if (rc != CTL_OK) {
        buf_free(&out);
        return rc;
    }
    if (r.code != 0) {
        fprintf(stderr, "polarisctl: %s: %s (code %lld)\n", action, r.msg, r.code);
        rc = CTL_FAILED;
    } else if (strcmp(cmd, "reload") == 0) {
        rc = print_reload(&r);
    } else if (strcmp(cmd, "unload") == 0) {
        printf("unloaded\n");
    } else if (json) {
        printf("%.*s\n", (int)r.data_len, r.data);
        if (strcmp(cmd, "status") == 0 && ctl_plugins_in_error(r.data, r.data_len) > 0)
            rc = CTL_PLUGIN_ERROR;
    } else {
        print_tree(r.data, r.data_len, 0);
        if (strcmp(cmd, "status") == 0) {
            printf("plugins:\n");
            if (ctl_print_plugins(r.data, r.data_len) > 0)
                rc = CTL_PLUGIN_ERROR;
        }
    }
    buf_free(&out);
    return rc;
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
            return CTL_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("polarisctl %s (git %s)\n", polaris_version, polaris_git_rev);
            return CTL_OK;
        } else {
            fprintf(stderr, "polarisctl: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return CTL_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CTL_USAGE;
    }
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **rv = argv + i;
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CTL_OK;
    }
    /* "polarisctl reload --help" asks, it does not reload: checked before
     * any subcommand sees (or acts on) its arguments */
    for (int k = 0; k < rest; k++)
        if (strcmp(rv[k], "--help") == 0 || strcmp(rv[k], "-h") == 0) {
            usage(stdout);
            return CTL_OK;
        }
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "reload") == 0 || strcmp(cmd, "unload") == 0 ||
        strcmp(cmd, "call") == 0)
        return control(sock, cmd, rest, rv);
    if (strcmp(cmd, "plugins") == 0)
        return ctl_cmd_plugins(sock, rest, rv);
    if (strcmp(cmd, "metrics") == 0)
        return ctl_cmd_metrics(sock, rest, rv);
    if (strcmp(cmd, "send") == 0)
        return ctl_cmd_send(sock, rest, rv);
    if (strcmp(cmd, "guest") == 0)
        return ctl_cmd_guest(rest, rv);
    if (strcmp(cmd, "plugin-test") == 0)
        return ctl_cmd_plugin_test(rest, rv);
    if (strcmp(cmd, "keygen") == 0)
        return ctl_cmd_keygen(rest, rv);
    if (strcmp(cmd, "sign") == 0)
        return ctl_cmd_sign(rest, rv);
    if (strcmp(cmd, "verify") == 0)
        return ctl_cmd_verify(rest, rv);
    fprintf(stderr, "polarisctl: unknown command '%s'\n", cmd);
    usage(stderr);
    return CTL_USAGE;
}
