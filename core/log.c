/* log.c - one line per message on stderr, written with a single write(2) so
 * lines from different threads never interleave. Under systemd (JOURNAL_STREAM
 * set) lines carry the <N> syslog priority prefix journald understands;
 * otherwise they carry a timestamp and level name. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = LOG_LVL_INFO;

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

void log_msg(enum log_level l, const char *fmt, ...)
{
    if ((int)l < atomic_load(&g_level))
        return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    static const int prio[] = {7, 6, 4, 3};
    char line[2048];
    int n;
    if (getenv("JOURNAL_STREAM")) {
        n = snprintf(line, sizeof line, "<%d>", prio[l]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld polarisd %s: ",
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[l]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;   /* nowhere left to report a failing stderr */
}
