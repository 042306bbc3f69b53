/* test_spool.c - the disk spool on its own: records finished in order move
 * the checkpoint, records finished out of order are remembered, a reopen
 * replays exactly the unfinished ones, a torn tail is cut, a finished spool
 * is truncated, and a large finished prefix is compacted away. */
#include "harness.h"
#include "daemon/spool.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct seen {
    int n;
    char names[16][32];
    uint64_t ids[16], tickets[16];
    uint32_t seqs[16];
};

static int collect(void *ctx, uint64_t id, const char *p, size_t len, uint64_t ticket, uint32_t seq)
{
    struct seen *s = ctx;
    if (s->n < 16) {
        snprintf(s->names[s->n], sizeof s->names[0], "%.*s", (int)len, p);
        s->ids[s->n] = id;
        s->tickets[s->n] = ticket;
        s->seqs[s->n] = seq;
    }
    s->n++;
    return 0;
}

static off_t size_of(const char *dir, const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 ? st.st_size : -1;
}

TEST(spool_replays_exactly_the_unfinished_events)
{
    char dir[] = "/tmp/polaris-spool-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char err[256];
    struct spool *s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    uint64_t t[10];
    for (int i = 0; i < 10; i++) {
        char rec[16];
        snprintf(rec, sizeof rec, "event-%d", i);
        t[i] = spool_append(s, 1000 + (uint64_t)i, rec, strlen(rec));
        CHECK(t[i] == (uint64_t)i + 1);
    }
    CHECK(spool_flush(s) == 0);
    for (int i = 0; i < 4; i++)
        spool_done(s, t[i]);                        /* 0..3 delivered, in order */
    spool_done(s, t[6]);                            /* 6 dropped ahead of 4 and 5 */
    spool_done(s, t[6]);                            /* twice is once */
    spool_done(s, 0);                               /* not spooled: ignored */
    CHECK(size_of(dir, "spool.done") == 8);
    spool_close(s);
    /* a write cut by a kill */
    char path[256];
    snprintf(path, sizeof path, "%s/spool.log", dir);
    off_t whole = size_of(dir, "spool.log");
    int fd = open(path, O_WRONLY | O_APPEND);
    REQUIRE(fd >= 0);
    CHECK(write(fd, "\x40\0\0\0\x01\x02\x03\x04half", 12) == 12);
    close(fd);
    s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    struct seen got = {0};
    CHECK(spool_replay(s, collect, &got) == 5);
    CHECK(strcmp(got.names[0], "event-4") == 0 && got.ids[0] == 1004);
    CHECK(strcmp(got.names[1], "event-5") == 0);
    CHECK(strcmp(got.names[2], "event-7") == 0);    /* 6 finished: not again */
    CHECK(strcmp(got.names[4], "event-9") == 0 && got.ids[4] == 1009);
    CHECK(size_of(dir, "spool.log") == whole);      /* the torn tail is gone */
    /* finishing the replayed ones empties everything */
    for (int i = 0; i < got.n; i++)
        spool_done(s, got.tickets[i]);
    CHECK(spool_live_bytes(s) == 0);
    CHECK(size_of(dir, "spool.log") == 0);
    CHECK(size_of(dir, "spool.done") == 0);
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

TEST(spool_compacts_a_large_finished_prefix)
{
    char dir[] = "/tmp/polaris-spool-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char err[256];
    struct spool *s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    static char big[64 * 1024];
    memset(big, 'b', sizeof big);
    uint64_t big_t[320], live_t[3];
    for (int n = 0; n < 320; n++) {
        big_t[n] = spool_append(s, 1, big, sizeof big);
        if (n % 64 == 63)
            CHECK(spool_flush(s) == 0);
    }
    const char *live[] = {"live-1", "live-2", "live-3"};
    for (int i = 0; i < 3; i++)
        live_t[i] = spool_append(s, 2, live[i], strlen(live[i]));
    CHECK(spool_flush(s) == 0);
    spool_done(s, live_t[1]);                       /* out of order, survives compaction */
    for (int n = 0; n < 320; n++)
        spool_done(s, big_t[n]);                    /* 20 MiB finished: compacted */
    /* compacted once the finished prefix passed 16 MiB: what remains is the
     * rest of the big records (finished since) and the live ones */
    CHECK(size_of(dir, "spool.log") < 5 * 1024 * 1024);
    CHECK(size_of(dir, "spool.done") == 8);
    spool_close(s);
    s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    struct seen got = {0};
    CHECK(spool_replay(s, collect, &got) == 2);
    CHECK(strcmp(got.names[0], "live-1") == 0);
    CHECK(strcmp(got.names[1], "live-3") == 0);
    spool_close(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* With acks an event may reach the guest before a restart: the seq_id it
 * went out under comes back with it, and so do the seq lease and acks. */
TEST(spool_remembers_seq_ids_and_the_guest_state)
{
    char dir[] = "/tmp/polaris-spool-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char err[256];
    struct spool *s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    uint32_t lease = 0, boot = 0;
    bool acks = true;
    CHECK(spool_load_guest(s, &lease, &acks, &boot) == -1);   /* none yet */
    uint64_t t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spool_append(s, 50 + (uint64_t)i, "ev", 2);
    CHECK(spool_flush(s) == 0);
    spool_set_seq(s, t[0], 7);
    spool_set_seq(s, t[1], 8);
    spool_set_seq(s, t[1], 8);                      /* the same again: noted once */
    spool_set_seq(s, t[2], 4000000000u);
    CHECK(size_of(dir, "spool.seq") == 0);          /* batched until committed */
    spool_commit_seqs(s);
    spool_set_seq(s, t[2], 9);                      /* sent again under a new one: it wins */
    spool_commit_seqs(s);
    spool_done(s, t[0]);                            /* acked: not replayed */
    CHECK(size_of(dir, "spool.seq") == 48);
    CHECK(spool_save_guest(s, 65545, true, 0xabcdef) == 0);
    spool_close(s);
    s = spool_open(dir, err, sizeof err);
    REQUIRE(s);
    struct seen got = {0};
    CHECK(spool_replay(s, collect, &got) == 3);
    CHECK(got.ids[0] == 51 && got.seqs[0] == 8);
    CHECK(got.ids[1] == 52 && got.seqs[1] == 9);
    CHECK(got.ids[2] == 53 && got.seqs[2] == 0);   /* never sent */
    CHECK(spool_load_guest(s, &lease, &acks, &boot) == 0);
    CHECK(lease == 65545 && acks && boot == 0xabcdef);
    for (int i = 0; i < got.n; i++)
        spool_done(s, got.tickets[i]);
    CHECK(size_of(dir, "spool.seq") == 0);          /* all done: started over */
    CHECK(spool_load_guest(s, &lease, &acks, &boot) == 0);   /* the state stays */
    spool_close(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}
