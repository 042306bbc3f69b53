/* loadgen.c - drives an e2e throughput run: a guest-side reader on TCP and N
 * client threads sending 200-byte events to a Unix socket. Prints one JSON
 * line with the events/s seen by the reader.
 *
 * usage: loadgen UNIX_PATH TCP_PORT THREADS EVENTS_PER_THREAD lsp|plp|plpack [sdk|frames]
 *
 *   sdk     (the default) the threads are an app using libpolaris_client:
 *           create + 2 adds + commit per event, one SDK connection for the
 *           process, as DESIGN's apps do. A commit refused because the SDK's
 *           ring is full is made again after 50 us (the event must arrive;
 *           the sink does not count the SDK's own drop notices).
 *   frames  each thread formats its LSP frames itself and writes 64 per
 *           writev on its own connection: no SDK in the way.
 *
 * lsp: the sink reads what a relay passed on (LSP frames); plp: what
 * polarisd sent (PLP frames); plpack: the same, and the sink acknowledges
 * what it took after every read, as an acking guest does (DESIGN 3.2). */
#include "polaris_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EVENT_BYTES 200
#define BATCH 64

static const char *unix_path;
static long per_thread;
static char pad[EVENT_BYTES];

/* The same 200 bytes of JSON as a frames-mode event, through the SDK. */
static void *sdk_client(void *arg)
{
    long id = (long)arg;
    for (long sent = 0; sent < per_thread; sent++) {
        for (;;) {
            PolarisEventHandle ev = polaris_event_create((uint64_t)sent, "bench", "1");
            polaris_event_add_long(ev, "thread", id);
            polaris_event_add_string(ev, "pad", pad);
            int rc = polaris_event_commit(ev, NULL);
            if (rc == 0)
                break;
            if (rc != -2) {
                fprintf(stderr, "loadgen: commit failed (%d)\n", rc);
                exit(1);
            }
            /* the ring is full: back off as an app should, rather than
             * spin four threads on two cores against the daemon measured */
            usleep(50);
        }
    }
    return NULL;
}

/* The SDK's own "dropped N events" report (eventId 1000002): not one of
 * the events being counted. */
static bool is_drop_notice(const uint8_t *json, size_t n)
{
    static const char notice[] = "{\"eventId\":1000002,";
    return n >= sizeof notice - 1 && memcmp(json, notice, sizeof notice - 1) == 0;
}

/* EVENT_ACK_G2H: empty payload, flags 0, crc 0, seq = the last taken. */
static void send_ack(int s, uint32_t seq)
{
    uint8_t h[24] = {0x53, 0x52, 0x4C, 0x50, 1, 0, 24, 0, 0, 0, 0, 0, 0x22, 0, 0, 0,
                     (uint8_t)seq, (uint8_t)(seq >> 8), (uint8_t)(seq >> 16), (uint8_t)(seq >> 24),
                     0, 0, 0, 0};
    for (size_t off = 0; off < sizeof h;) {
        ssize_t w = write(s, h + off, sizeof h - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            perror("loadgen: ack");
            exit(1);
        }
        off += (size_t)w;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *client(void *arg)
{
    long id = (long)arg;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", unix_path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("loadgen: connect unix");
        exit(1);
    }
    static __thread char frames[BATCH][EVENT_BYTES + 12];
    struct iovec iov[BATCH];
    int pid = (int)getpid();
    for (long sent = 0; sent < per_thread;) {
        int n = 0;
        for (; n < BATCH && sent < per_thread; n++, sent++) {
            char *f = frames[n];
            /* the event as the SDK writes it, with this process's real pid
             * (a wrong one would make every frame a claimedPid correction) */
            int len = snprintf(f + 12, EVENT_BYTES + 1,
                "{\"eventId\":%ld,\"timestamp\":1732262400123,\"pid\":%d,\"processName\":\"bench\","
                "\"processVer\":\"1\",\"params\":{\"thread\":%ld,\"pad\":\"", sent, pid, id);
            while (len < EVENT_BYTES - 3)
                f[12 + len++] = 'x';
            memcpy(f + 12 + len, "\"}}", 3);
            len += 3;
            uint32_t total = (uint32_t)len + 12;
            uint8_t h[12] = {(uint8_t)total, (uint8_t)(total >> 8), (uint8_t)(total >> 16),
                             (uint8_t)(total >> 24), 1, 0, 0, 0, 0, 0, 0, 0};
            memcpy(f, h, 12);
            iov[n].iov_base = f;
            iov[n].iov_len = total;
        }
        struct iovec *v = iov;
        int cnt = n;
        while (cnt > 0) {
            ssize_t w = writev(fd, v, cnt);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                perror("loadgen: writev");
                exit(1);
            }
            while (cnt > 0 && (size_t)w >= v->iov_len) {
                w -= (ssize_t)v->iov_len;
                v++;
                cnt--;
            }
            if (cnt > 0) {
                v->iov_base = (char *)v->iov_base + w;
                v->iov_len -= (size_t)w;
            }
        }
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: loadgen UNIX_PATH TCP_PORT THREADS EVENTS_PER_THREAD lsp|plp|plpack [sdk|frames]\n");
        return 2;
    }
    bool sdk = argc == 6 || strcmp(argv[6], "sdk") == 0;
    unix_path = argv[1];
    int port = atoi(argv[2]);
    int threads = atoi(argv[3]);
    per_thread = atol(argv[4]);
    int ack = strcmp(argv[5], "plpack") == 0;
    int plp = ack || strcmp(argv[5], "plp") == 0;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in si = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&si, sizeof si) < 0) {
        perror("loadgen: connect tcp");
        return 1;
    }
    usleep(100000);     /* let the server register the reader before the clock starts */
    long want = per_thread * threads, got = 0;
    pthread_t t[64];
    double t0 = now_s();
    if (sdk) {
        setenv("POLARIS_SOCKET", unix_path, 1);
        /* {"eventId":N,"timestamp":T,"pid":P,"processName":"bench","processVer":"1",
         * "params":{"thread":K,"pad":"..."}}: ~200 bytes, as in frames mode */
        memset(pad, 'x', 75);
    }
    for (long i = 0; i < threads && i < 64; i++)
        pthread_create(&t[i], NULL, sdk ? sdk_client : client, (void *)i);
    static uint8_t buf[1 << 20];
    size_t have = 0;
    const size_t hdr = 24;
    while (got < want) {
        ssize_t n = read(s, buf + have, sizeof buf - have);
        if (n <= 0) {
            fprintf(stderr, "loadgen: sink closed after %ld of %ld events\n", got, want);
            return 1;
        }
        have += (size_t)n;
        if (!plp && !sdk) {
            /* the relay interleaves clients' bytes unparsed: count bytes */
            got += (long)(have / (EVENT_BYTES + 12));
            have %= (EVENT_BYTES + 12);
            continue;
        }
        size_t off = 0;
        while (!plp && have - off >= 12) {
            /* one SDK connection: the relay passes a clean LSP stream */
            const uint8_t *h = buf + off;
            size_t flen = h[0] | h[1] << 8 | h[2] << 16 | (size_t)h[3] << 24;
            if (flen < 12 || have - off < flen)
                break;
            if (!is_drop_notice(h + 12, flen - 12))
                got++;
            off += flen;
        }
        uint32_t last_seq = 0;
        bool took = false;
        while (plp && have - off >= hdr) {
            const uint8_t *h = buf + off;
            size_t flen = 24 + (h[8] | h[9] << 8 | h[10] << 16 | (size_t)h[11] << 24);
            if (have - off < flen)
                break;
            if ((h[12] | h[13] << 8) == 0x10) {
                last_seq = h[16] | h[17] << 8 | h[18] << 16 | (uint32_t)h[19] << 24;
                took = true;
                if (!is_drop_notice(h + 24, flen - 24))
                    got++;
            }
            off += flen;
        }
        if (ack && took)
            send_ack(s, last_seq);
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    double el = now_s() - t0;
    for (int i = 0; i < threads && i < 64; i++)
        pthread_join(t[i], NULL);
    if (sdk)
        polaris_deinit();
    printf("{\"events\":%ld,\"seconds\":%.6f,\"events_per_s\":%.0f}\n", want, el, want / el);
    return 0;
}
