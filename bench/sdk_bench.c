/* sdk_bench.c - the caller's cost of reporting one event.
 *   sdk_bench sdk SOCK N      polaris_event_create + 3 adds + commit, connected
 *   sdk_bench send SOCK N     the same event built with snprintf and sent with
 *                             one blocking send() per event (what syslog does)
 *   sdk_bench syslog N        syslog(3) of the same text, to a reader on
 *                             /dev/log (see devlog_reader)
 *   sdk_bench absent N        the SDK with no daemon: the worst single call
 *   sdk_bench null N          an empty timed region: the machine's own worst
 *                             gap over as many calls (preemption, the
 *                             hypervisor), the baseline for absent
 * Prints {"median_ns":..,"p999_ns":..,"worst_ns":..,"over_50us":..}: over_50us
 * counts the single calls that took longer than 50 us (absent's target),
 * so that absent and null can be compared on every stall, not one.
 *
 * Every call is timed on its own (p99.9, worst). The median comes from a
 * second pass in which GROUP calls are timed together and the time divided:
 * a clock read pair costs ~22 ns here, a fifth of an SDK call, the same in
 * every mode, and would otherwise flatten every ratio towards 1. */
#include "polaris_api.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static long long ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The event's timestamp, taken as the SDK takes it. */
static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* syslog(3) sends to /dev/log. With no logger there (containers, CI
 * machines) every call fails to connect and the figure would be the cost
 * of that failure, so syslog gets a reader: a datagram socket in a temp
 * directory that is bound over /dev in a mount namespace of this process
 * (root only). The reader is a child that receives and discards, the
 * least any syslog daemon does. Returns its pid, or -1 with why in err. */
static char devlog_dir[] = "/tmp/sdk_bench_devlog.XXXXXX";

static pid_t devlog_reader(const char **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        *err = "no mount namespace (not root): syslog(3) would have no reader on /dev/log";
        return -1;
    }
    if (!mkdtemp(devlog_dir)) {
        *err = "mkdtemp failed";
        return -1;
    }
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/log", devlog_dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        *err = "cannot bind the /dev/log socket";
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        char b[4096];
        for (;;)
            if (recv(fd, b, sizeof b, 0) < 0 && errno != EINTR)
                _exit(0);
    }
    close(fd);
    if (pid < 0 || mount(devlog_dir, "/dev", NULL, MS_BIND, NULL) != 0) {
        *err = "cannot bind the reader over /dev";
        if (pid > 0)
            kill(pid, SIGKILL);
        return -1;
    }
    return pid;
}

static void devlog_done(pid_t reader)
{
    kill(reader, SIGKILL);
    waitpid(reader, NULL, 0);
    umount("/dev");
    char path[64];
    snprintf(path, sizeof path, "%s/log", devlog_dir);
    unlink(path);
    rmdir(devlog_dir);
}

#define GROUP 16
/* Connected runs go in bursts with a pause between them, so that the
 * daemon keeps up and every commit is a real one: unpaced, the caller
 * outruns any reader by ten times, the ring fills, and the figure would
 * be the cost of a drop. */
#define BURST    256
#define PAUSE_US 300

enum { M_SDK, M_SEND, M_SYSLOG, M_NULL };

struct ctx {
    int kind;
    int fd;
};

/* One event, as each mode reports it. Inlined into loops specialised per
 * mode (see timed_runs): what is timed is the call being measured, not a
 * dispatch on the mode, which would add the same few ns to every column
 * and pull every ratio towards 1. */
static inline __attribute__((always_inline)) int one(const int kind, const struct ctx *x, long i)
{
    if (kind == M_SDK) {
        PolarisEventHandle ev = polaris_event_create(9001, "bench", "1.0");
        polaris_event_add_string(ev, "reason", "SIGSEGV");
        polaris_event_add_int(ev, "signal", 11);
        polaris_event_add_long(ev, "seq", i);
        return polaris_event_commit(ev, NULL);
    } else if (kind == M_SEND) {
        char frame[512];
        int len = snprintf(frame + 12, sizeof frame - 12,
            "{\"eventId\":9001,\"timestamp\":%lld,\"pid\":%d,\"processName\":\"bench\","
            "\"processVer\":\"1.0\",\"params\":{\"reason\":\"SIGSEGV\",\"signal\":11,\"seq\":%ld}}",
            wall_ms(), (int)getpid(), i);
        unsigned total = (unsigned)len + 12;
        memset(frame, 0, 12);
        memcpy(frame, &total, 4);
        frame[4] = 1;
        if (send(x->fd, frame, total, MSG_NOSIGNAL) < 0)
            return -1;
    } else if (kind == M_NULL) {
        /* about as long as an SDK call, so both loops are exposed to the
         * machine for about as long */
        static volatile long spin;
        for (int k = 0; k < 24; k++)
            spin++;
    } else {
        syslog(LOG_INFO, "eventId=9001 reason=SIGSEGV signal=11 seq=%ld", i);
    }
    return 0;
}

/* The two passes: every call timed on its own into t[0..n), then GROUP
 * calls at a time into g[0..n/GROUP). Returns refused commits, or -1. */
static inline __attribute__((always_inline)) long timed_runs(const int kind, const struct ctx *x, bool paced,
                                                             long n, long long *t, long long *g)
{
    long dropped = 0;
    for (long i = 0; i < n; i++) {
        if (paced && i && i % BURST == 0)
            usleep(PAUSE_US);
        long long t0 = ns();
        int rc = one(kind, x, i);
        t[i] = ns() - t0;
        if (rc == -1)
            return -1;
        dropped += rc == -2;
    }
    for (long k = 0; k < n / GROUP; k++) {
        if (paced && k && (k * GROUP) % BURST == 0)
            usleep(PAUSE_US);
        int rc = 0;
        long long t0 = ns();
        for (long j = 0; j < GROUP; j++)
            rc |= one(kind, x, n + k * GROUP + j);
        g[k] = (ns() - t0) / GROUP;
        if (rc == -1)
            return -1;
        dropped += rc == -2;
    }
    return dropped;
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
    pid_t reader = -1;
    if (strcmp(mode, "syslog") == 0) {
        const char *err = NULL;
        if ((reader = devlog_reader(&err)) < 0) {
            printf("{\"unavailable\":\"%s\"}\n", err);
            return 0;
        }
        openlog("sdk_bench", LOG_NDELAY, LOG_USER);
    }
    /* warm up: lazy init, page faults */
    if (strcmp(mode, "sdk") == 0 || strcmp(mode, "absent") == 0)
        polaris_event_commit(polaris_event_create(1, "bench", "1"), NULL);
    struct ctx x = {strcmp(mode, "send") == 0     ? M_SEND
                    : strcmp(mode, "syslog") == 0 ? M_SYSLOG
                    : strcmp(mode, "null") == 0   ? M_NULL
                                                  : M_SDK,
                    fd};
    bool paced = (x.kind == M_SDK || x.kind == M_SEND || x.kind == M_SYSLOG) &&
                 strcmp(mode, "absent") != 0;
    long groups = n / GROUP;
    long long *g = malloc(sizeof *g * (size_t)(groups ? groups : 1));
    if (!g)
        return 1;
    long dropped = x.kind == M_SDK    ? timed_runs(M_SDK, &x, paced, n, t, g)
                   : x.kind == M_SEND ? timed_runs(M_SEND, &x, paced, n, t, g)
                   : x.kind == M_NULL ? timed_runs(M_NULL, &x, paced, n, t, g)
                                      : timed_runs(M_SYSLOG, &x, paced, n, t, g);
    if (dropped < 0)
        return 1;
    if (strcmp(mode, "sdk") == 0 || strcmp(mode, "absent") == 0)
        polaris_deinit();
    if (reader > 0) {
        closelog();
        devlog_done(reader);
    }
    long over_50us = 0;
    for (long i = 0; i < n; i++)
        over_50us += t[i] > 50000;
    qsort(t, (size_t)n, sizeof *t, cmp);
    qsort(g, (size_t)groups, sizeof *g, cmp);
    printf("{\"median_ns\":%lld,\"p999_ns\":%lld,\"worst_ns\":%lld,\"single_median_ns\":%lld,"
           "\"dropped\":%ld,\"over_50us\":%ld}\n",
           groups ? g[groups / 2] : t[n / 2], t[(long)(n * 0.999)], t[n - 1], t[n / 2],
           paced ? dropped : 0, over_50us);
    free(g);
    free(t);
    return 0;
}
