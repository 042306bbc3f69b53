/* log.c - one line per message on stderr, written with a single write(2) so
 * lines from different threads never interleave. When stderr is the journal
 * stream systemd set up (JOURNAL_STREAM names its device and inode) lines
 * carry the <N> syslog priority prefix journald understands; otherwise they
 * carry a timestamp and level name.
 *
 * Repeats are rate-limited per call site (its format string, or a key the
 * caller gives: each plugin is its own site): at most
 * log_burst lines per second each, the rest counted and summed up in one
 * line when the next second's first message from that site comes, so a
 * guest or an app hammering one error path cannot flood the journal. */
#include "lib/log.h"
#include "lib/stats.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = LOG_LVL_INFO;
static _Atomic unsigned g_burst = 100;

#define SITES 64
static struct site {
    const void *key;
    time_t second;
    unsigned count, suppressed;
} g_sites[SITES];
static pthread_mutex_t g_sites_mu = PTHREAD_MUTEX_INITIALIZER;

void log_set_burst(unsigned per_second) { atomic_store(&g_burst, per_second); }

/* Whether this call site may log now; *suppressed gets what was held back
 * in its previous second, to be reported first. */
static bool admit(const void *key, unsigned *suppressed)
{
    unsigned burst = atomic_load(&g_burst);
    *suppressed = 0;
    if (!burst)
        return true;
    time_t now = time(NULL);
    struct site *s = &g_sites[((uintptr_t)key >> 3) % SITES];
    pthread_mutex_lock(&g_sites_mu);
    if (s->key != key || s->second != now) {
        if (s->key == key)
            *suppressed = s->suppressed;
        s->key = key;
        s->second = now;
        s->count = 0;
        s->suppressed = 0;
    }
    bool ok = ++s->count <= burst;
    if (!ok) {
        s->suppressed++;
        STAT_INC(log_suppressed);
    }
    pthread_mutex_unlock(&g_sites_mu);
    return ok;
}

static bool journal_stream(void)
{
    static _Atomic int cached = -1;
    int c = atomic_load(&cached);
    if (c >= 0)
        return c;
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    c = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    atomic_store(&cached, c);
    return c;
}

void log_set_level(enum log_level l) { atomic_store(&g_level, (int)l); }
enum log_level log_get_level(void) { return (enum log_level)atomic_load(&g_level); }

int log_level_parse(const char *s, enum log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

static int prefix(enum log_level l, char *line, size_t cap)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    static const int prio[] = {7, 6, 4, 3};
    if (journal_stream())
        return snprintf(line, cap, "<%d>", prio[l]);
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    return snprintf(line, cap, "%02d:%02d:%02d.%03ld polarisd %s: ",
                    tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[l]);
}

static void (*g_sink)(enum log_level, const char *, size_t);

void log_set_sink(void (*sink)(enum log_level, const char *, size_t))
{
    g_sink = sink;
}

static void vlog(const void *site, enum log_level l, const char *fmt, va_list ap)
{
    if (g_sink) {                  /* a plugin host: the daemon writes, and rate-limits */
        char msg[2048];
        int m = vsnprintf(msg, sizeof msg, fmt, ap);
        g_sink(l, msg, m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1);
        return;
    }
    unsigned held;
    bool ok = admit(site, &held);
    char line[2048];
    int n;
    if (held) {
        n = prefix(l, line, sizeof line);
        n += snprintf(line + n, sizeof line - (size_t)n, "%u similar messages suppressed (at most "
                      "%u a second): %.200s\n", held, atomic_load(&g_burst), fmt);
        ssize_t w = write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)w;
    }
    if (!ok)
        return;
    n = prefix(l, line, sizeof line);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;   /* nowhere left to report a failing stderr */
}

void log_msg(enum log_level l, const char *fmt, ...)
{
    if ((int)l < atomic_load(&g_level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, l, fmt, ap);
    va_end(ap);
}

void log_msg_site(const void *site, enum log_level l, const char *fmt, ...)
{
    if ((int)l < atomic_load(&g_level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(site, l, fmt, ap);
    va_end(ap);
}
