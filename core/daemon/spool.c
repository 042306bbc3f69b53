/* spool.c - accepted events on disk ([daemon] spool_dir, --spool): an event
 * an app handed over survives a restart and kill -9, and reaches the guest
 * once.
 *
 * Ingress appends every accepted event to DIR/spool.log before it goes to
 * the core (one write per read batch): from then on it is "accepted". Each
 * record gets a ticket that travels with the event; whoever finishes the
 * event (egress once it is written to the guest or dropped from a full
 * buffer, the core when a strategy or the router drops it) marks the ticket
 * done. Events finish out of order (a strategy may hold one while later ones
 * pass), so:
 *   - DIR/spool.ckpt holds the offset of the oldest record not done;
 *   - DIR/spool.done lists records done out of order past it.
 * At start, records from the checkpoint that are not listed as done are
 * replayed into the core, through the strategies again.
 *
 * With guest acknowledgements an event is done only once acked, so it may
 * have reached the guest before a restart: the guest link notes the
 * seq_id it gave a spooled event in DIR/spool.seq ([u64 record offset]
 * [u32 seq_id], appended), and a replayed event is sent under that same
 * seq_id, which lets the guest drop the copy it already has.
 * DIR/guest.state keeps what the guest link must not forget across a
 * restart: a lease on seq_ids (no event was given one at or past it) and
 * whether a guest ever acked.
 *
 * Record: [u32 len][u32 crc32][u64 eventId][len bytes], the CRC covering the
 * eventId and the payload. A torn record at the end (a write cut by the
 * kill) is cut off and logged. A write() is in the page cache, which
 * survives the process; fdatasync runs every [daemon] spool_fsync_ms, so a
 * power loss loses at most that much. When nothing is outstanding the files
 * are truncated; when the finished prefix outweighs the live part (and
 * SPOOL_COMPACT_MIN) the live tail is copied to a new log.
 *
 * Called from ingress (append, flush), egress and the core (done): one
 * mutex. Uses: libdeflate crc32 (as in plp_codec.c), buf, log. */
#include "daemon/spool.h"
#include "lib/buf.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libdeflate.h>

#define SPOOL_COMPACT_MIN (16u << 20)
#define SPOOL_RECORD_MAX  (16u << 20)
#define HDR 16

struct entry {
    uint64_t start, end;
    uint32_t seq;                 /* the guest link's seq_id for it, 0: none yet */
    bool done;
};

struct spool {
    pthread_mutex_t mu;
    char dir[PATH_MAX];
    int fd, ckpt_fd, done_fd, seq_fd, state_fd;
    uint64_t end;                 /* bytes in the log (the batch not yet written) */
    uint64_t ckpt;                /* the oldest record not done */
    uint64_t done_end;            /* bytes in spool.done */
    uint64_t seq_end;             /* bytes in spool.seq */
    struct buf batch;             /* records appended, not yet written */
    struct buf seq_batch;         /* seq notes, not yet written */
    struct entry *ring;           /* outstanding records, oldest first */
    size_t cap, head, count;
    uint64_t head_ticket;         /* the ticket of ring[head] */
    bool dirty;
};

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static struct entry *at(struct spool *s, size_t i)
{
    return &s->ring[(s->head + i) % s->cap];
}

static int push_entry(struct spool *s, uint64_t start, uint64_t end, bool done)
{
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        struct entry *r = malloc(cap * sizeof *r);
        if (!r)
            return -1;
        for (size_t i = 0; i < s->count; i++)
            r[i] = *at(s, i);
        free(s->ring);
        s->ring = r;
        s->cap = cap;
        s->head = 0;
    }
    *at(s, s->count++) = (struct entry){start, end, 0, done};
    return 0;
}

static int write_ckpt(struct spool *s)
{
    unsigned char b[12];
    put64(b, s->ckpt);
    put32(b + 8, (uint32_t)libdeflate_crc32(0, b, 8));
    return pwrite(s->ckpt_fd, b, sizeof b, 0) == (ssize_t)sizeof b ? 0 : -1;
}

static uint64_t read_ckpt(struct spool *s)
{
    unsigned char b[12];
    if (pread(s->ckpt_fd, b, sizeof b, 0) != (ssize_t)sizeof b ||
        get32(b + 8) != (uint32_t)libdeflate_crc32(0, b, 8))
        return 0;                  /* none yet, or torn: replay from the start */
    return get64(b);
}

static int open_in(const char *dir, const char *name, int flags)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return open(path, flags | O_CLOEXEC, 0600);
}

struct spool *spool_open(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "spool %s: %s", dir, strerror(errno));
        return NULL;
    }
    struct spool *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "spool: out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->head_ticket = 1;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->fd = open_in(dir, "spool.log", O_RDWR | O_CREAT);
    s->ckpt_fd = open_in(dir, "spool.ckpt", O_RDWR | O_CREAT);
    s->done_fd = open_in(dir, "spool.done", O_RDWR | O_CREAT);
    s->seq_fd = open_in(dir, "spool.seq", O_RDWR | O_CREAT);
    s->state_fd = open_in(dir, "guest.state", O_RDWR | O_CREAT);
    struct stat st, dst, sst;
    if (s->fd < 0 || s->ckpt_fd < 0 || s->done_fd < 0 || s->seq_fd < 0 || s->state_fd < 0 ||
        fstat(s->fd, &st) < 0 || fstat(s->done_fd, &dst) < 0 || fstat(s->seq_fd, &sst) < 0) {
        snprintf(err, errlen, "spool %s: %s", dir, strerror(errno));
        spool_close(s);
        return NULL;
    }
    s->end = (uint64_t)st.st_size;
    s->done_end = (uint64_t)dst.st_size & ~(uint64_t)7;
    s->seq_end = (uint64_t)sst.st_size - (uint64_t)sst.st_size % 12;
    s->ckpt = read_ckpt(s);
    if (s->ckpt > s->end)
        s->ckpt = 0;
    return s;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Notes are batched (spool_commit_seqs writes them): one write per batch
 * of frames, before the frames go out. Under mu. */
static void write_seq(struct spool *s, const struct entry *e)
{
    unsigned char b[12];
    put64(b, e->start);
    put32(b + 8, e->seq);
    if (buf_append(&s->seq_batch, b, sizeof b) < 0)
        log_warn("spool: out of memory noting a seq_id");
}

static void commit_seqs_locked(struct spool *s)
{
    if (!s->seq_batch.len)
        return;
    if (pwrite(s->seq_fd, s->seq_batch.p, s->seq_batch.len, (off_t)s->seq_end) ==
        (ssize_t)s->seq_batch.len)
        s->seq_end += s->seq_batch.len;
    else
        log_warn("spool: cannot note seq_ids in %s/spool.seq: %s", s->dir, strerror(errno));
    buf_reset(&s->seq_batch);
}

struct seq_note {
    uint64_t start;
    uint32_t seq;
    uint32_t idx;                 /* its place in the file: the last note wins */
};

static int cmp_note(const void *a, const void *b)
{
    const struct seq_note *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_note_start(const void *a, const void *b)
{
    const struct seq_note *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* spool.seq, sorted by record offset (a later note for a record wins). */
static struct seq_note *read_seq_notes(struct spool *s, size_t *n)
{
    *n = 0;
    size_t cnt = s->seq_end / 12;
    if (!cnt)
        return NULL;
    unsigned char *raw = malloc(cnt * 12);
    struct seq_note *v = malloc(cnt * sizeof *v);
    if (!raw || !v || pread(s->seq_fd, raw, cnt * 12, 0) != (ssize_t)(cnt * 12)) {
        free(raw);
        free(v);
        return NULL;
    }
    for (size_t i = 0; i < cnt; i++)
        v[i] = (struct seq_note){get64(raw + 12 * i), get32(raw + 12 * i + 8), (uint32_t)i};
    free(raw);
    qsort(v, cnt, sizeof *v, cmp_note);
    *n = cnt;
    return v;
}

/* Drops finished entries from the front, moves the checkpoint, and starts
 * the files over (or compacts the log) when that is worth it. Under mu. */
static void advance(struct spool *s)
{
    while (s->count && at(s, 0)->done) {
        s->head = (s->head + 1) % s->cap;
        s->count--;
        s->head_ticket++;
    }
    uint64_t first = s->count ? at(s, 0)->start : s->end + s->batch.len;
    if (!s->count && s->batch.len == 0) {
        if (s->end && ftruncate(s->fd, 0) == 0)
            s->end = 0;
        if (s->done_end && ftruncate(s->done_fd, 0) == 0)
            s->done_end = 0;
        buf_reset(&s->seq_batch);
        if (s->seq_end && ftruncate(s->seq_fd, 0) == 0)
            s->seq_end = 0;
        first = 0;
    } else if (first > SPOOL_COMPACT_MIN && first > s->end - first && s->batch.len == 0) {
        char tmp[PATH_MAX + 32], path[PATH_MAX + 32];
        snprintf(tmp, sizeof tmp, "%s/spool.log.new", s->dir);
        snprintf(path, sizeof path, "%s/spool.log", s->dir);
        int nfd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        loff_t in = (loff_t)first;
        uint64_t left = s->end - first;
        while (nfd >= 0 && left) {
            ssize_t c = copy_file_range(s->fd, &in, nfd, NULL, left, 0);
            if (c <= 0)
                break;
            left -= (uint64_t)c;
        }
        if (nfd >= 0 && left == 0 && fdatasync(nfd) == 0 && rename(tmp, path) == 0) {
            close(s->fd);
            s->fd = nfd;
            s->end -= first;
            /* the done list names offsets: write it again, moved down */
            if (ftruncate(s->done_fd, 0) == 0)
                s->done_end = 0;
            buf_reset(&s->seq_batch);          /* rewritten below, moved down */
            if (ftruncate(s->seq_fd, 0) == 0)
                s->seq_end = 0;
            for (size_t i = 0; i < s->count; i++) {
                struct entry *e = at(s, i);
                e->start -= first;
                e->end -= first;
                if (e->done) {
                    unsigned char b[8];
                    put64(b, e->start);
                    if (pwrite(s->done_fd, b, 8, (off_t)s->done_end) == 8)
                        s->done_end += 8;
                } else if (e->seq) {
                    write_seq(s, e);
                }
            }
            commit_seqs_locked(s);
            first = 0;
        } else {
            if (nfd >= 0)
                close(nfd);
            unlink(tmp);
        }
    }
    if (first != s->ckpt) {
        s->ckpt = first;
        if (write_ckpt(s) < 0)
            log_warn("spool: cannot write the checkpoint: %s", strerror(errno));
        s->dirty = true;
    }
}

int spool_replay(struct spool *s, int (*fn)(void *ctx, uint64_t event_id, const char *p, size_t len,
                                            uint64_t ticket, uint32_t seq), void *ctx)
{
    pthread_mutex_lock(&s->mu);
    size_t nnotes;
    struct seq_note *notes = read_seq_notes(s, &nnotes);
    /* what finished out of order last time */
    size_t ndone = s->done_end / 8;
    uint64_t *done = ndone ? malloc(ndone * sizeof *done) : NULL;
    if (done) {
        unsigned char *raw = malloc(ndone * 8);
        if (raw && pread(s->done_fd, raw, ndone * 8, 0) == (ssize_t)(ndone * 8)) {
            for (size_t i = 0; i < ndone; i++)
                done[i] = get64(raw + 8 * i);
            qsort(done, ndone, sizeof *done, cmp_u64);
        } else {
            ndone = 0;
        }
        free(raw);
    } else {
        ndone = 0;
    }
    uint64_t off = s->ckpt;
    int n = 0;
    char *buf = NULL;
    size_t cap = 0;
    while (off < s->end) {
        unsigned char h[HDR];
        if (pread(s->fd, h, HDR, (off_t)off) != HDR)
            break;
        uint32_t len = get32(h);
        if (len > SPOOL_RECORD_MAX || off + HDR + len > s->end)
            break;
        if (len + 8 > cap) {
            char *nb = realloc(buf, len + 8);
            if (!nb)
                break;
            buf = nb;
            cap = len + 8;
        }
        memcpy(buf, h + 8, 8);
        if (pread(s->fd, buf + 8, len, (off_t)(off + HDR)) != (ssize_t)len ||
            (uint32_t)libdeflate_crc32(0, buf, len + 8) != get32(h + 4))
            break;
        bool finished = ndone && bsearch(&off, done, ndone, sizeof *done, cmp_u64);
        if (push_entry(s, off, off + HDR + len, finished) < 0)
            break;
        uint64_t ticket = s->head_ticket + s->count - 1;
        struct seq_note key = {off, 0, 0};
        const struct seq_note *note =
            nnotes ? bsearch(&key, notes, nnotes, sizeof *notes, cmp_note_start) : NULL;
        while (note && note + 1 < notes + nnotes && note[1].start == off)
            note++;                               /* the last one noted */
        at(s, s->count - 1)->seq = note ? note->seq : 0;
        if (!finished) {
            if (fn(ctx, get64(h + 8), buf + 8, len, ticket, note ? note->seq : 0) < 0) {
                s->count--;
                break;
            }
            n++;
        }
        off += HDR + len;
    }
    free(buf);
    free(done);
    free(notes);
    if (off < s->end) {
        log_warn("spool: cutting %llu bytes of a torn or damaged record at the end of %s/spool.log",
                 (unsigned long long)(s->end - off), s->dir);
        if (ftruncate(s->fd, (off_t)off) == 0)
            s->end = off;
    }
    advance(s);
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint64_t spool_append(struct spool *s, uint64_t event_id, const void *p, size_t len)
{
    if (len > SPOOL_RECORD_MAX)
        return 0;
    unsigned char h[HDR];
    put32(h, (uint32_t)len);
    put64(h + 8, event_id);
    uint32_t crc = (uint32_t)libdeflate_crc32(0, h + 8, 8);
    put32(h + 4, (uint32_t)libdeflate_crc32(crc, p, len));
    pthread_mutex_lock(&s->mu);
    uint64_t start = s->end + s->batch.len, ticket = 0;
    if (buf_append(&s->batch, h, HDR) == 0 && buf_append(&s->batch, p, len) == 0 &&
        push_entry(s, start, start + HDR + len, false) == 0) {
        ticket = s->head_ticket + s->count - 1;
    } else if (s->batch.len > start - s->end) {
        s->batch.len = (size_t)(start - s->end);   /* take back a half-added record */
    }
    pthread_mutex_unlock(&s->mu);
    return ticket;
}

int spool_flush(struct spool *s)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    size_t off = 0;
    while (off < s->batch.len) {
        ssize_t w = pwrite(s->fd, s->batch.p + off, s->batch.len - off, (off_t)(s->end + off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = -1;
            break;
        }
        off += (size_t)w;
    }
    if (rc < 0) {
        /* the records stay outstanding in memory; what follows is written
         * after them, so the log stays in order */
        log_error("spool: write to %s/spool.log failed: %s", s->dir, strerror(errno));
        buf_consume(&s->batch, off);
    } else {
        buf_reset(&s->batch);
    }
    s->end += off;
    if (off)
        s->dirty = true;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void spool_done(struct spool *s, uint64_t ticket)
{
    if (!ticket)
        return;
    pthread_mutex_lock(&s->mu);
    if (ticket >= s->head_ticket && ticket - s->head_ticket < s->count) {
        struct entry *e = at(s, (size_t)(ticket - s->head_ticket));
        if (!e->done) {
            e->done = true;
            if (ticket != s->head_ticket) {
                /* finished ahead of an older one: remember it on disk */
                unsigned char b[8];
                put64(b, e->start);
                if (pwrite(s->done_fd, b, 8, (off_t)s->done_end) == 8)
                    s->done_end += 8;
            }
            advance(s);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

uint64_t spool_live_bytes(struct spool *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t v = s->end + s->batch.len - s->ckpt;
    pthread_mutex_unlock(&s->mu);
    return v;
}

void spool_sync(struct spool *s)
{
    pthread_mutex_lock(&s->mu);
    bool dirty = s->dirty;
    s->dirty = false;
    int fd = dirty ? dup(s->fd) : -1;           /* compaction may replace s->fd meanwhile */
    pthread_mutex_unlock(&s->mu);
    /* outside the lock: ingress must not wait for the disk */
    if (dirty && (fd < 0 || fdatasync(fd) < 0 || fdatasync(s->ckpt_fd) < 0 || fdatasync(s->done_fd) < 0 ||
                  fdatasync(s->seq_fd) < 0))
        log_warn("spool: fdatasync: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
}

void spool_close(struct spool *s)
{
    if (!s)
        return;
    if (s->fd >= 0 && s->ckpt_fd >= 0 && s->done_fd >= 0) {
        if (s->seq_fd >= 0)
            spool_commit_seqs(s);
        spool_flush(s);
        spool_sync(s);
    }
    if (s->fd >= 0)
        close(s->fd);
    if (s->ckpt_fd >= 0)
        close(s->ckpt_fd);
    if (s->done_fd >= 0)
        close(s->done_fd);
    if (s->seq_fd >= 0)
        close(s->seq_fd);
    if (s->state_fd >= 0)
        close(s->state_fd);
    buf_free(&s->batch);
    buf_free(&s->seq_batch);
    free(s->ring);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void spool_set_seq(struct spool *s, uint64_t ticket, uint32_t seq)
{
    if (!ticket || !seq)
        return;
    pthread_mutex_lock(&s->mu);
    if (ticket >= s->head_ticket && ticket - s->head_ticket < s->count) {
        struct entry *e = at(s, (size_t)(ticket - s->head_ticket));
        if (!e->done && e->seq != seq) {
            e->seq = seq;
            write_seq(s, e);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

void spool_commit_seqs(struct spool *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->seq_batch.len)
        s->dirty = true;
    commit_seqs_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/* guest.state: [u32 seq lease][u32 boot id][u8 acks seen][3 zero][u32 crc] */
int spool_load_guest(struct spool *s, uint32_t *seq_lease, bool *acks_seen, uint32_t *boot_id)
{
    unsigned char b[16];
    pthread_mutex_lock(&s->mu);
    ssize_t n = pread(s->state_fd, b, sizeof b, 0);
    pthread_mutex_unlock(&s->mu);
    if (n != (ssize_t)sizeof b || get32(b + 12) != (uint32_t)libdeflate_crc32(0, b, 12))
        return -1;                 /* none yet, or torn */
    *seq_lease = get32(b);
    *boot_id = get32(b + 4);
    *acks_seen = b[8] != 0;
    return 0;
}

int spool_save_guest(struct spool *s, uint32_t seq_lease, bool acks_seen, uint32_t boot_id)
{
    unsigned char b[16] = {0};
    put32(b, seq_lease);
    put32(b + 4, boot_id);
    b[8] = acks_seen;
    put32(b + 12, (uint32_t)libdeflate_crc32(0, b, 12));
    pthread_mutex_lock(&s->mu);
    int rc = pwrite(s->state_fd, b, sizeof b, 0) == (ssize_t)sizeof b ? 0 : -1;
    /* the lease must be on disk before any seq_id under it is used */
    if (rc == 0 && fdatasync(s->state_fd) < 0)
        rc = -1;
    pthread_mutex_unlock(&s->mu);
    if (rc < 0)
        log_warn("spool: cannot write %s/guest.state: %s", s->dir, strerror(errno));
    return rc;
}
