/* sdk_bench.c - the caller's cost of reporting one event.
 *   sdk_bench sdk SOCK N      polaris_event_create + 3 adds + commit, connected
 *   sdk_bench send SOCK N     the same event built with snprintf and sent with
 *                             one blocking send() per event (what syslog does)
 *   sdk_bench syslog N        syslog(3) of the same text
 *   sdk_bench absent N        the SDK with no daemon: the worst single call
 * Prints {"median_ns":..,"p999_ns":..,"worst_ns":..}. */
#include "polaris_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static long long ns(void)
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

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    bool has_sock = strcmp(mode, "sdk") == 0 || strcmp(mode, "send") == 0;
    long n = atol(argv[has_sock ? 3 : 2]);
    long long *t = malloc(sizeof *t * (size_t)n);
    if (!t || n <= 0)
        return 1;
    if (has_sock)
        setenv("POLARIS_SOCKET", argv[2], 1);
    else if (strcmp(mode, "absent") == 0)
        setenv("POLARIS_SOCKET", "/nonexistent/polaris.sock", 1);
    int fd = -1;
    if (strcmp(mode, "send") == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[2]);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("connect");
            return 1;
        }
    }
    if (strcmp(mode, "syslog") == 0)
        openlog("sdk_bench", LOG_NDELAY, LOG_USER);
    /* warm up: lazy init, page faults */
    if (strcmp(mode, "sdk") == 0 || strcmp(mode, "absent") == 0)
        polaris_event_commit(polaris_event_create(1, "bench", "1"));
    char frame[512];
    for (long i = 0; i < n; i++) {
        long long t0 = ns();
        if (strcmp(mode, "sdk") == 0 || strcmp(mode, "absent") == 0) {
            polaris_event_t *ev = polaris_event_create(9001, "bench", "1.0");
            polaris_event_add_string(ev, "reason", "SIGSEGV");
            polaris_event_add_int(ev, "signal", 11);
            polaris_event_add_long(ev, "seq", i);
            polaris_event_commit(ev);
        } else if (fd >= 0) {
            int len = snprintf(frame + 12, sizeof frame - 12,
                "{\"eventId\":9001,\"timestamp\":%lld,\"pid\":%d,\"processName\":\"bench\","
                "\"processVer\":\"1.0\",\"params\":{\"reason\":\"SIGSEGV\",\"signal\":11,\"seq\":%ld}}",
                (long long)time(NULL) * 1000, (int)getpid(), i);
            unsigned total = (unsigned)len + 12;
            memset(frame, 0, 12);
            memcpy(frame, &total, 4);
            frame[4] = 1;
            if (send(fd, frame, total, MSG_NOSIGNAL) < 0)
                return 1;
        } else {
            syslog(LOG_INFO, "eventId=9001 reason=SIGSEGV signal=11 seq=%ld", i);
        }
        t[i] = ns() - t0;
    }
    if (strcmp(mode, "sdk") == 0 || strcmp(mode, "absent") == 0)
        polaris_deinit();
    qsort(t, (size_t)n, sizeof *t, cmp);
    printf("{\"median_ns\":%lld,\"p999_ns\":%lld,\"worst_ns\":%lld}\n",
           t[n / 2], t[(long)(n * 0.999)], t[n - 1]);
    free(t);
    return 0;
}
