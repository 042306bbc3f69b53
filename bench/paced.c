/* paced.c - events at a fixed rate through the SDK, received as the guest:
 * latency from commit to receipt, and loss/duplication.
 *   paced SOCK GUEST_PORT plp|lsp RATE SECONDS
 * An app thread commits RATE events a second (libpolaris_client) with the
 * commit time and a sequence number in params; a reader connected to
 * GUEST_PORT on loopback parses PLP frames (polarisd) or LSP frames (the raw
 * relay, the baseline) and matches them. Prints
 * {"sent","received","lost","dup","p50_us","p99_us","max_us"}.
 *
 * Uses: libpolaris_client, the core's lsp/plp decoders, json_scan. */
#include "wire/json_scan.h"
#include "wire/lsp_codec.h"
#include "wire/plp_codec.h"
#include "polaris_api.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

struct reader {
    int fd;
    bool plp;
    long expect;
    long long *lat;               /* by sequence number */
    unsigned char *seen;
    long received, dup;
    _Atomic bool stop;
};

static void take(struct reader *r, const char *payload, size_t len)
{
    struct json_member params;
    struct json_member m[16], p[8];
    const char *err;
    int n = json_object_members(payload, len, m, 16, &err);
    const struct json_member *pm = n > 0 ? json_find(m, n > 16 ? 16 : (size_t)n, "params") : NULL;
    if (!pm)
        return;
    params = *pm;
    int k = json_object_members(params.val, params.val_len, p, 8, &err);
    const struct json_member *seq = k > 0 ? json_find(p, k > 8 ? 8 : (size_t)k, "seq") : NULL;
    const struct json_member *t = k > 0 ? json_find(p, k > 8 ? 8 : (size_t)k, "t") : NULL;
    int64_t s, sent;
    if (!seq || !t || json_to_i64(seq->val, seq->val_len, &s) < 0 ||
        json_to_i64(t->val, t->val_len, &sent) < 0 || s < 0 || s >= r->expect)
        return;
    if (r->seen[s]) {
        r->dup++;
        return;
    }
    r->seen[s] = 1;
    r->lat[s] = now_ns() - sent;
    r->received++;
}

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    struct plp_decoder pd;
    struct lsp_decoder ld;
    plp_decoder_init(&pd);
    lsp_decoder_init(&ld, LSP_MAX_FRAME);
    while (!atomic_load(&r->stop) && r->received < r->expect) {
        size_t avail;
        uint8_t *space = r->plp ? plp_decoder_space(&pd, 65536, &avail)
                                : lsp_decoder_space(&ld, 65536, &avail);
        ssize_t n = space ? recv(r->fd, space, avail, 0) : -1;
        if (n <= 0)
            break;
        if (r->plp) {
            plp_decoder_commit(&pd, (size_t)n);
            struct plp_frame f;
            int st;
            while ((st = plp_decoder_next(&pd, &f)) != PLP_NEED_MORE && st >= 0)
                if (st == PLP_FRAME && f.type == PLP_EVENT_H2G)
                    take(r, f.payload, f.len);
        } else {
            lsp_decoder_commit(&ld, (size_t)n);
            struct lsp_frame f;
            int st;
            while ((st = lsp_decoder_next(&ld, &f)) == LSP_FRAME)
                take(r, (const char *)f.payload, f.len);
        }
    }
    plp_decoder_free(&pd);
    lsp_decoder_free(&ld);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: paced SOCK GUEST_PORT plp|lsp RATE SECONDS\n");
        return 2;
    }
    setenv("POLARIS_SOCKET", argv[1], 1);
    long rate = atol(argv[4]);
    double secs = atof(argv[5]);
    struct reader r = {.plp = strcmp(argv[3], "plp") == 0, .expect = (long)(rate * secs)};
    r.lat = calloc((size_t)r.expect, sizeof *r.lat);
    r.seen = calloc((size_t)r.expect, 1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (!r.lat || !r.seen || rate <= 0 || r.expect <= 0 ||
        connect(r.fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("paced: setup");
        return 1;
    }
    /* the guest link registers the reader asynchronously: let it settle */
    struct timespec settle = {0, 200 * 1000000L};
    nanosleep(&settle, NULL);
    pthread_t th;
    pthread_create(&th, NULL, read_loop, &r);
    long long start = now_ns(), period = 1000000000LL / rate;
    for (long i = 0; i < r.expect; i++) {
        long long due = start + i * period;
        /* sleep to the due time (spinning would steal a core from the very
         * threads being measured on a 2-core machine); close enough: go */
        if (due - now_ns() > 20000) {
            struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
        PolarisEventHandle ev = polaris_event_create(9001, "paced", "1");
        polaris_event_add_long(ev, "seq", i);
        polaris_event_add_long(ev, "t", now_ns());
        while (polaris_event_commit(ev, NULL) < 0) {   /* a full queue: retry, never lose */
            ev = polaris_event_create(9001, "paced", "1");
            polaris_event_add_long(ev, "seq", i);
            polaris_event_add_long(ev, "t", now_ns());
        }
    }
    /* give the tail time to arrive, then stop */
    for (int w = 0; w < 500 && r.received < r.expect; w++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&r.stop, true);
    shutdown(r.fd, SHUT_RDWR);
    pthread_join(th, NULL);
    polaris_deinit();
    long long *got = malloc(sizeof *got * (size_t)(r.received ? r.received : 1));
    long k = 0;
    for (long i = 0; i < r.expect; i++)
        if (r.seen[i])
            got[k++] = r.lat[i];
    qsort(got, (size_t)k, sizeof *got, cmp);
    double p50 = k ? got[k / 2] / 1000.0 : 0, p99 = k ? got[(k * 99) / 100] / 1000.0 : 0;
    double mx = k ? got[k - 1] / 1000.0 : 0;
    printf("{\"sent\":%ld,\"received\":%ld,\"lost\":%ld,\"dup\":%ld,\"p50_us\":%.1f,\"p99_us\":%.1f,"
           "\"max_us\":%.1f}\n", r.expect, r.received, r.expect - r.received, r.dup, p50, p99, mx);
    return 0;
}
