/* ctl_send.c - `polarisctl send`: report an event the way an app does
 * (LSP EVENT_REPORT), from the command line or a JSON file. The daemon
 * stamps the real pid and uid, as for any app.
 *
 * LSP has no acknowledgement for events, so after the event the same
 * connection asks for `ping`: the daemon reads a connection's frames in
 * order, so once that answer is back the event has been taken in. The
 * event is validated here first, so a rejection is a bug, not a typo.
 *
 * Uses: ctl_common (the round trip), lsp_codec, json_scan, buf. */
#include "ctl.h"
#include "lib/version.h"
#include "wire/lsp_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int read_all(const char *path, struct buf *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fprintf(stderr, "polarisctl: send: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(out, chunk, n) < 0 || out->len > LSP_MAX_FRAME - LSP_HEADER_LEN) {
            fprintf(stderr, "polarisctl: send: %s is larger than a frame may be\n", path);
            if (f != stdin)
                fclose(f);
            return -1;
        }
    }
    if (f != stdin)
        fclose(f);
    return 0;
}

/* KEY=VALUE: numbers and true/false typed, the rest a string.
 * KEY:=JSON: any JSON value, as given. */
static int add_param(struct buf *b, const char *arg, bool first)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        fprintf(stderr, "polarisctl: send: '%s' is not KEY=VALUE or KEY:=JSON\n", arg);
        return -1;
    }
    bool raw = eq > arg && eq[-1] == ':';
    size_t klen = (size_t)(eq - arg) - (raw ? 1 : 0);
    const char *v = eq + 1;
    if (!first)
        buf_putc(b, ',');
    buf_json_str(b, arg, klen);
    buf_putc(b, ':');
    const char *err;
    if (raw) {
        if (json_validate(v, strlen(v), &err) == JSON_INVALID) {
            fprintf(stderr, "polarisctl: send: %.*s: not JSON (%s)\n", (int)klen, arg, err);
            return -1;
        }
        return buf_puts(b, v);
    }
    char *end;
    errno = 0;
    (void)strtod(v, &end);
    bool number = *v && !*end && errno == 0 && strspn(v, "0123456789+-.eE") == strlen(v) &&
                  json_validate(v, strlen(v), &err) == JSON_NUMBER;
    if (number || strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
        return buf_puts(b, v);
    return buf_json_cstr(b, v);
}

static int build_event(int argc, char **argv, struct buf *ev)
{
    uint64_t id;
    if (json_to_u64(argv[0], strlen(argv[0]), &id) < 0) {
        fprintf(stderr, "polarisctl: send: EVENT_ID must be an integer 0..18446744073709551615, "
                        "not '%s'\n", argv[0]);
        return -1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    buf_puts(ev, "{\"eventId\":");
    buf_json_u64(ev, id);
    buf_printf(ev, ",\"timestamp\":%lld,\"pid\":%d,\"processName\":\"polarisctl\","
               "\"processVer\":\"%s\",\"params\":{",
               (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, (int)getpid(), polaris_version);
    for (int i = 1; i < argc; i++)
        if (add_param(ev, argv[i], i == 1) < 0)
            return -1;
    return buf_puts(ev, "}}");
}

int ctl_cmd_send(const char *sock, int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "polarisctl: usage: send EVENT_ID [KEY=VALUE | KEY:=JSON ...] | send --json FILE|-\n");
        return CTL_USAGE;
    }
    struct buf ev = BUF_INIT, frame = BUF_INIT, answer = BUF_INIT;
    int rc = CTL_USAGE;
    if (strcmp(argv[0], "--json") == 0) {
        if (argc != 2 || read_all(argv[1], &ev) < 0)
            goto done;
        const char *err;
        struct json_member m[32];
        int n = json_object_members(ev.p, ev.len, m, 32, &err);
        if (n < 0 || !json_find(m, n > 32 ? 32 : (size_t)n, "eventId")) {
            fprintf(stderr, "polarisctl: send: %s: %s\n", argv[1],
                    n < 0 ? err : "an event needs an eventId");
            goto done;
        }
    } else if (build_event(argc, argv, &ev) < 0) {
        goto done;
    }
    rc = CTL_UNREACHABLE;
    int fd = ctl_connect_unix(sock);
    if (fd < 0)
        goto done;
    if (lsp_encode(&frame, LSP_EVENT_REPORT, 0, ev.p, ev.len) < 0) {
        fprintf(stderr, "polarisctl: send: the event is too large\n");
        close(fd);
        rc = CTL_USAGE;
        goto done;
    }
    if (ctl_send_all(fd, frame.p, frame.len) < 0) {
        close(fd);
        goto done;
    }
    /* any answer means the daemon read the event before it */
    if (ctl_roundtrip(fd, "ping", NULL, &answer) == 0) {
        printf("%.*s\n", (int)ev.len, ev.p);
        rc = CTL_OK;
    }
    close(fd);
done:
    buf_free(&ev);
    buf_free(&frame);
    buf_free(&answer);
    return rc;
}
