/* test_spool.c - the disk spool on its own: records survive a reopen from
 * the checkpoint, a torn tail is cut, an empty spool truncates, and a large
 * delivered prefix is compacted away with the live records intact. */
#include "harness.h"
#include "spool.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct seen {
    int n;
    char last[64];
    uint64_t first_start;
};

static int collect(void *ctx, const char *p, size_t len, uint64_t start, uint64_t end)
{
    struct seen *s = ctx;
    (void)end;
    if (s->n == 0)
        s->first_start = start;
    snprintf(s->last, sizeof s->last, "%.*s", (int)len, p);
    s->n++;
    return 0;
}

static off_t log_size(const char *dir)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/spool.log", dir);
    return stat(path, &st) == 0 ? st.st_size : -1;
}

TEST(spool_replays_from_the_checkpoint_and_cuts_a_torn_tail)
{
    char dir[] = "/tmp/polaris-spool-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char err[256];
    struct spool *s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    char rec[10][16];
    uint64_t start[10], end[10];
    for (int i = 0; i < 10; i++) {
        snprintf(rec[i], sizeof rec[i], "event-%d", i);
        CHECK(spool_append(s, rec[i], strlen(rec[i]), &start[i], &end[i]) == 0);
    }
    CHECK(spool_flush(s) == 0);
    CHECK(spool_checkpoint(s, start[4]) == 0);        /* 0..3 delivered */
    spool_close(s);
    /* a write cut by a kill */
    char path[256];
    snprintf(path, sizeof path, "%s/spool.log", dir);
    int fd = open(path, O_WRONLY | O_APPEND);
    REQUIRE(fd >= 0);
    CHECK(write(fd, "\x40\0\0\0\x01\x02\x03\x04half", 12) == 12);
    close(fd);
    s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    struct seen got = {0};
    CHECK(spool_replay(s, collect, &got) == 6);
    CHECK(got.first_start == start[4]);
    CHECK(strcmp(got.last, "event-9") == 0);
    CHECK(log_size(dir) == (off_t)end[9]);          /* the torn tail is gone */
    /* everything delivered: the log starts over */
    CHECK(spool_checkpoint(s, UINT64_MAX) == end[9]);
    CHECK(log_size(dir) == 0);
    CHECK(spool_live_bytes(s) == 0);
    spool_close(s);
    s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    struct seen none = {0};
    CHECK(spool_replay(s, collect, &none) == 0);
    spool_close(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

TEST(spool_compacts_a_large_delivered_prefix)
{
    char dir[] = "/tmp/polaris-spool-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char err[256];
    struct spool *s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    static char big[64 * 1024];
    memset(big, 'b', sizeof big);
    uint64_t start = 0, end = 0, keep_start = 0;
    int n = 0;
    /* 20 MiB delivered, then 3 live records */
    for (; n < 320; n++) {
        CHECK(spool_append(s, big, sizeof big, &start, &end) == 0);
        if (n % 64 == 63)
            CHECK(spool_flush(s) == 0);
    }
    CHECK(spool_flush(s) == 0);
    const char *live[] = {"live-1", "live-2", "live-3"};
    for (int i = 0; i < 3; i++) {
        CHECK(spool_append(s, live[i], strlen(live[i]), &start, &end) == 0);
        if (i == 0)
            keep_start = start;
    }
    CHECK(spool_flush(s) == 0);
    uint64_t shift = spool_checkpoint(s, keep_start);
    CHECK(shift == keep_start);                       /* compacted: offsets move down by it */
    CHECK(log_size(dir) == (off_t)(end - keep_start));
    spool_close(s);
    s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    struct seen got = {0};
    CHECK(spool_replay(s, collect, &got) == 3);
    CHECK(got.first_start == 0);
    CHECK(strcmp(got.last, "live-3") == 0);
    spool_close(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}
