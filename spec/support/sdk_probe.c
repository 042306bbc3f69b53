/* sdk_probe.c - drives libpolaris_client for the SDK specs.
 *   sdk_probe send N THREADS     THREADS x N events (eventId = (t+1)*10^8 + i)
 *   sdk_probe escape             one event with hostile strings and every type
 *   sdk_probe fork [nomid]       parent 1, child 2 (own pid), parent 3; and a
 *                                fork while another thread is inside the SDK
 *                                (event 4), unless nomid
 *   sdk_probe absent N           N commits with no daemon: worst call in us
 *   sdk_probe big N SIZE         N events with a SIZE-byte value, no daemon
 *   sdk_probe late N MS          N commits, then MS ms before deinit (timed)
 *   sdk_probe raw JSON           polaris_report_json (a whole event), prints its result
 *   sdk_probe rawparams ID BODY [LOGF]  polaris_report_raw (the original API: params text)
 *   sdk_probe boundary           301 events whose records cross the inline size
 *   sdk_probe stamps             three events created between wall-clock reads
 *   sdk_probe locale             setlocale(LC_ALL, "") first, then one event
 *                                with doubles; prints the locale's decimal point
 * Prints one result line; exit 0 unless something is wrong. */
#include "polaris_api.h"

#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long per_thread;

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}
static volatile int hammering = 1;

static void *sender(void *arg)
{
    long t = (long)arg;
    for (long i = 0; i < per_thread; i++) {
        PolarisEventHandle ev = polaris_event_create((uint64_t)((t + 1) * 100000000 + i), "probe", "1.0");
        polaris_event_add_long(ev, "i", i);
        polaris_event_add_int(ev, "thread", (int)t);
        /* a full queue refuses at once (-2): the app decides; this one
         * waits a little and builds the event again, so every event is
         * eventually accepted and must then arrive */
        while (polaris_event_commit(ev, NULL) == -2) {
            usleep(200);
            ev = polaris_event_create((uint64_t)((t + 1) * 100000000 + i), "probe", "1.0");
            polaris_event_add_long(ev, "i", i);
            polaris_event_add_int(ev, "thread", (int)t);
        }
    }
    return NULL;
}

static void *hammer(void *arg)
{
    (void)arg;
    for (long i = 0; hammering; i++) {
        PolarisEventHandle ev = polaris_event_create(7000000 + (uint64_t)(i % 1000), "hammer", NULL);
        polaris_event_commit(ev, NULL);
    }
    return NULL;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    if (strcmp(argv[1], "send") == 0 && argc == 4) {
        per_thread = atol(argv[2]);
        int threads = atoi(argv[3]);
        pthread_t t[64];
        for (long i = 0; i < threads && i < 64; i++)
            pthread_create(&t[i], NULL, sender, (void *)i);
        for (int i = 0; i < threads && i < 64; i++)
            pthread_join(t[i], NULL);
        polaris_deinit();
        polaris_deinit();                         /* twice is fine */
        printf("sent %ld\n", per_thread * threads);
        return 0;
    }
    if (strcmp(argv[1], "escape") == 0) {
        PolarisEventHandle ev = polaris_event_create(42, NULL, NULL);
        polaris_event_add_string(ev, "quote", "say \"hi\"");
        polaris_event_add_string(ev, "backslash", "C:\\path\\");
        polaris_event_add_string(ev, "control", "a\nb\tc\001d\037e");
        polaris_event_add_string(ev, "utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
        polaris_event_add_string(ev, "invalid", "a\xff" "b\xc0\xaf" "c");
        polaris_event_add_string(ev, "ke\"y", "v");
        polaris_event_add_long(ev, "long", -9223372036854775807LL - 1);
        polaris_event_add_int(ev, "int", -2147483647 - 1);
        polaris_event_add_double(ev, "double", 0.1);
        polaris_event_add_double(ev, "nan", 0.0 / 0.0);
        polaris_event_add_bool(ev, "yes", true);
        polaris_event_add_bool(ev, "no", false);
        /* past the event's inline space: every escape of a long value kept */
        static char lng[6001];
        for (int i = 0; i < 6000; i++)
            lng[i] = i % 3 == 0 ? '"' : i % 3 == 1 ? 'x' : '\001';
        polaris_event_add_string(ev, "long_text", lng);
        polaris_event_add_string(NULL, "ignored", "x");   /* NULL handle: no-op */
        int rc = polaris_event_commit(ev, NULL);
        polaris_deinit();
        printf("escape %d\n", rc);
        return rc == 0 ? 0 : 1;
    }
    if (strcmp(argv[1], "fork") == 0) {
        polaris_event_commit(polaris_event_create(1, "parent", NULL), NULL);
        pid_t pid = fork();
        if (pid == 0) {
            polaris_event_commit(polaris_event_create(2, "child", NULL), NULL);
            polaris_deinit();
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        if (argc > 2 && strcmp(argv[2], "nomid") == 0) {
            polaris_event_commit(polaris_event_create(4, "skipped", NULL), NULL);
            polaris_event_commit(polaris_event_create(3, "parent", NULL), NULL);
            polaris_deinit();
            printf("fork children %d %d\n", (int)pid, 0);
            return 0;
        }
        /* fork while another thread is inside the SDK */
        pthread_t h;
        pthread_create(&h, NULL, hammer, NULL);
        usleep(20000);
        pid_t pid2 = fork();
        if (pid2 == 0) {
            polaris_event_commit(polaris_event_create(4, "child2", NULL), NULL);
            polaris_deinit();
            _exit(0);
        }
        int st;
        waitpid(pid2, &st, 0);
        hammering = 0;
        pthread_join(h, NULL);
        /* the hammer may have filled the queue (commits are far cheaper than
         * sending): -2 means try again, as an app that must not lose this
         * one would */
        for (int tries = 0; tries < 5000; tries++) {
            if (polaris_event_commit(polaris_event_create(3, "parent", NULL), NULL) != -2)
                break;
            usleep(1000);
        }
        polaris_deinit();
        printf("fork children %d %d\n", (int)pid, (int)pid2);
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
    }
    if (strcmp(argv[1], "absent") == 0 && argc == 3) {
        long n = atol(argv[2]);
        double worst = 0;
        long dropped = 0;
        for (long i = 0; i < n; i++) {
            double t0 = now_us();
            PolarisEventHandle ev = polaris_event_create((uint64_t)i, "absent", NULL);
            polaris_event_add_int(ev, "i", (int)i);
            if (polaris_event_commit(ev, NULL) < 0)
                dropped++;
            double dt = now_us() - t0;
            if (dt > worst)
                worst = dt;
        }
        double t0 = now_us();
        polaris_deinit();
        printf("absent worst_us=%.1f dropped=%ld deinit_ms=%.1f\n", worst, dropped, (now_us() - t0) / 1000);
        return 0;
    }
    if (strcmp(argv[1], "big") == 0 && argc == 4) {
        /* N events of SIZE bytes with no daemon: records too big for a
         * ring slot are held on the heap, up to the SDK's byte budget */
        long n = atol(argv[2]);
        size_t size = (size_t)atol(argv[3]);
        char *v = malloc(size + 1);
        if (!v)
            return 1;
        memset(v, 'b', size);
        v[size] = '\0';
        long accepted = 0, refused = 0;
        for (long i = 0; i < n; i++) {
            PolarisEventHandle ev = polaris_event_create((uint64_t)i, "big", NULL);
            polaris_event_add_string(ev, "v", v);
            int rc = polaris_event_commit(ev, NULL);
            if (rc == 0)
                accepted++;
            else if (rc == -2)
                refused++;
            else
                return 1;
        }
        polaris_deinit();
        free(v);
        printf("big accepted=%ld refused=%ld\n", accepted, refused);
        return 0;
    }
    if (strcmp(argv[1], "late") == 0 && argc == 4) {
        /* commit N (the test has stalled the daemon), say so, then keep the
         * sender alive MS ms while the test resumes the daemon */
        long n = atol(argv[2]), dropped = 0;
        for (long i = 0; i < n; i++) {
            PolarisEventHandle ev = polaris_event_create(500000000 + (uint64_t)i, "late", NULL);
            if (polaris_event_commit(ev, NULL) < 0)
                dropped++;
        }
        printf("committed dropped=%ld\n", dropped);
        fflush(stdout);
        usleep((useconds_t)atol(argv[3]) * 1000);
        double t0 = now_us();
        polaris_deinit();
        printf("deinit_ms=%.1f\n", (now_us() - t0) / 1000.0);
        return 0;
    }
    if (strcmp(argv[1], "boundary") == 0) {
        /* events whose record crosses the end of the inline buffer at every
         * point: a string of 0..300 bytes, then two more parameters, and a
         * process name as long */
        for (int len = 0; len <= 300; len++) {
            /* exactly as long as the string: the SDK reads strings a word
             * at a time, and valgrind (this mode runs under it in
             * sdk_spec) must see no read it objects to */
            char *str = malloc((size_t)len + 1);
            if (!str)
                return 1;
            memset(str, 'a' + len % 26, (size_t)len);
            str[len] = '\0';
            PolarisEventHandle ev = polaris_event_create(900000000 + (uint64_t)len, len % 2 ? str : "b", "1");
            polaris_event_add_string(ev, len % 3 ? "s" : str, str);
            polaris_event_add_long(ev, "n", len);
            polaris_event_add_string(ev, "t", "end");
            free(str);
            if (polaris_event_commit(ev, NULL) < 0)
                return 1;
        }
        polaris_deinit();
        puts("boundary 301");
        return 0;
    }
    if (strcmp(argv[1], "stamps") == 0) {
        /* three events 800000000..2, each created between two wall-clock
         * reads (printed, in ms); the second is held 300 ms before its
         * commit, so its timestamp must be its create's, not its commit's */
        printf("stamps");
        for (int i = 0; i < 3; i++) {
            long long before = wall_ms();
            PolarisEventHandle ev = polaris_event_create(800000000 + (uint64_t)i, "stamps", NULL);
            long long after = wall_ms();
            if (i == 1)
                usleep(300000);
            if (polaris_event_commit(ev, NULL) < 0)
                return 1;
            printf(" %lld %lld", before, after);
            usleep(50000);
        }
        printf("\n");
        polaris_deinit();
        return 0;
    }
    if (strcmp(argv[1], "stream") == 0 && argc == 3) {
        /* commit steadily for MS ms with SIGPIPE at its default (fatal)
         * action, while the test kills the daemon */
        signal(SIGPIPE, SIG_DFL);
        double end = now_us() + atol(argv[2]) * 1000.0;
        long n = 0;
        while (now_us() < end) {
            PolarisEventHandle ev = polaris_event_create(600000000 + (uint64_t)n++, "stream", NULL);
            polaris_event_add_string(ev, "pad", "0123456789012345678901234567890123456789");
            polaris_event_commit(ev, NULL);
            if (n % 64 == 0)
                usleep(100);
        }
        polaris_deinit();
        printf("streamed %ld\n", n);
        return 0;
    }
    if (strcmp(argv[1], "locale") == 0) {
        /* an app that honours the user's locale, where printf writes 0,5 */
        setlocale(LC_ALL, "");
        PolarisEventHandle ev = polaris_event_create(700000001, "locale", NULL);
        polaris_event_add_double(ev, "half", 0.5);
        polaris_event_add_double(ev, "big", 1234.25);
        polaris_event_add_double(ev, "tiny", 1.5e-7);
        int rc = polaris_event_commit(ev, NULL);
        polaris_deinit();
        printf("decimal point '%s' commit %d\n", localeconv()->decimal_point, rc);
        return rc == 0 ? 0 : 1;
    }
    if (strcmp(argv[1], "raw") == 0 && argc == 3) {
        int rc = polaris_report_json(argv[2], strlen(argv[2]));
        polaris_deinit();
        printf("raw %d\n", rc);
        return 0;
    }
    if (strcmp(argv[1], "rawparams") == 0 && (argc == 4 || argc == 5)) {
        int rc = polaris_report_raw(strtoull(argv[2], NULL, 10), "probe", NULL,
                                    strcmp(argv[3], "NULL") == 0 ? NULL : argv[3],
                                    argc == 5 ? argv[4] : NULL);
        polaris_deinit();
        printf("rawparams %d\n", rc);
        return 0;
    }
    return 2;
}
