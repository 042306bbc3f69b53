/* spool.c - the outbound buffer on disk ([daemon] spool_dir, --spool): the
 * events waiting for the guest survive a restart and kill -9.
 *
 * DIR/spool.log is an append-only log of records [u32 len][u32 crc32][len
 * bytes]; DIR/spool.ckpt holds [u64 offset][u32 crc32] of the first record
 * not yet delivered. Egress appends every event it buffers (one write per
 * inbox batch, so an event is on its way to disk before it is sent) and
 * moves the checkpoint as events are written to the guest or dropped. A
 * write() reaches the page cache, which survives the process: kill -9
 * loses nothing. fdatasync runs every [daemon] spool_fsync_ms, so a power
 * loss loses at most that much. When nothing is waiting the log is
 * truncated; when the delivered prefix grows past the live part (and
 * SPOOL_COMPACT_MIN) the live tail is copied to a new log, renamed over.
 *
 * On open, records from the checkpoint are checked (length, CRC); a torn
 * record at the end (a write cut by the kill) is cut off and logged.
 *
 * Uses: zlib crc32, log. */
#include "spool.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#define SPOOL_COMPACT_MIN (16u << 20)
#define SPOOL_RECORD_MAX  (16u << 20)   /* a PLP payload's limit */

struct spool {
    char dir[PATH_MAX];
    int fd, ckpt_fd;
    uint64_t end;                 /* bytes in the log, batch excluded */
    uint64_t ckpt;                /* first undelivered byte */
    struct iovec *iov;            /* the batch: headers and payloads */
    unsigned char (*hdr)[8];
    size_t n, cap;
    uint64_t batch_bytes;
    bool dirty;                   /* written since the last fdatasync */
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

static int write_ckpt(struct spool *s)
{
    unsigned char b[12];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(s->ckpt >> (8 * i));
    put32(b + 8, (uint32_t)crc32(0L, b, 8));
    return pwrite(s->ckpt_fd, b, sizeof b, 0) == (ssize_t)sizeof b ? 0 : -1;
}

static uint64_t read_ckpt(struct spool *s)
{
    unsigned char b[12];
    if (pread(s->ckpt_fd, b, sizeof b, 0) != (ssize_t)sizeof b ||
        get32(b + 8) != (uint32_t)crc32(0L, b, 8))
        return 0;                  /* none yet, or torn: replay from the start */
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
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
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->fd = open_in(dir, "spool.log", O_RDWR | O_CREAT);
    s->ckpt_fd = open_in(dir, "spool.ckpt", O_RDWR | O_CREAT);
    struct stat st;
    if (s->fd < 0 || s->ckpt_fd < 0 || fstat(s->fd, &st) < 0) {
        snprintf(err, errlen, "spool %s: %s", dir, strerror(errno));
        spool_close(s);
        return NULL;
    }
    s->end = (uint64_t)st.st_size;
    s->ckpt = read_ckpt(s);
    if (s->ckpt > s->end)
        s->ckpt = 0;
    return s;
}

int spool_replay(struct spool *s, int (*fn)(void *ctx, const char *p, size_t len, uint64_t start,
                                            uint64_t end), void *ctx)
{
    uint64_t off = s->ckpt;
    int n = 0;
    char *buf = NULL;
    size_t cap = 0;
    while (off < s->end) {
        unsigned char h[8];
        if (pread(s->fd, h, 8, (off_t)off) != 8)
            break;
        uint32_t len = get32(h);
        if (len > SPOOL_RECORD_MAX || off + 8 + len > s->end)
            break;
        if (len > cap) {
            char *nb = realloc(buf, len);
            if (!nb)
                break;
            buf = nb;
            cap = len;
        }
        if (pread(s->fd, buf, len, (off_t)(off + 8)) != (ssize_t)len ||
            (uint32_t)crc32(0L, (const unsigned char *)buf, len) != get32(h + 4))
            break;
        if (fn(ctx, buf, len, off, off + 8 + len) < 0)
            break;
        off += 8 + len;
        n++;
    }
    free(buf);
    if (off < s->end) {
        log_warn("spool: cutting %llu bytes of a torn or damaged record at the end of %s/spool.log",
                 (unsigned long long)(s->end - off), s->dir);
        if (ftruncate(s->fd, (off_t)off) == 0)
            s->end = off;
    }
    return n;
}

int spool_append(struct spool *s, const void *p, size_t len, uint64_t *start, uint64_t *end)
{
    if (len > SPOOL_RECORD_MAX)
        return -1;
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        struct iovec *iov = realloc(s->iov, cap * sizeof *iov);
        if (!iov)
            return -1;
        s->iov = iov;
        unsigned char (*hdr)[8] = realloc(s->hdr, cap / 2 * sizeof *hdr);
        if (!hdr)
            return -1;
        /* headers moved: point the batch's iovecs at their new place */
        for (size_t i = 0; i < s->n; i += 2)
            s->iov[i].iov_base = hdr[i / 2];
        s->hdr = hdr;
        s->cap = cap;
    }
    unsigned char *h = s->hdr[s->n / 2];
    put32(h, (uint32_t)len);
    put32(h + 4, (uint32_t)crc32(0L, p, (uInt)len));
    s->iov[s->n++] = (struct iovec){h, 8};
    s->iov[s->n++] = (struct iovec){(void *)p, len};
    *start = s->end + s->batch_bytes;
    s->batch_bytes += 8 + len;
    *end = s->end + s->batch_bytes;
    return 0;
}

int spool_flush(struct spool *s)
{
    size_t i = 0;
    int rc = 0;
    while (i < s->n) {
        int cnt = s->n - i > IOV_MAX ? IOV_MAX : (int)(s->n - i);
        ssize_t w = pwritev(s->fd, s->iov + i, cnt, (off_t)s->end);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = -1;
            break;
        }
        s->end += (uint64_t)w;
        s->dirty = true;
        /* advance past what was written, splitting an iovec if need be */
        while (w > 0 && i < s->n) {
            if ((size_t)w >= s->iov[i].iov_len) {
                w -= (ssize_t)s->iov[i].iov_len;
                i++;
            } else {
                s->iov[i].iov_base = (char *)s->iov[i].iov_base + w;
                s->iov[i].iov_len -= (size_t)w;
                w = 0;
            }
        }
    }
    if (rc < 0)
        log_error("spool: write to %s/spool.log failed: %s; these events are in memory only",
                  s->dir, strerror(errno));
    s->n = 0;
    s->batch_bytes = 0;
    return rc;
}

uint64_t spool_checkpoint(struct spool *s, uint64_t first_live)
{
    uint64_t shift = 0;
    if (first_live >= s->end && s->n == 0) {
        /* nothing waits: start the log over */
        if (s->end && ftruncate(s->fd, 0) == 0) {
            shift = s->end;
            s->end = 0;
        }
        first_live = 0;
    } else if (first_live > SPOOL_COMPACT_MIN && first_live > s->end - first_live && s->n == 0) {
        /* the delivered prefix outweighs what waits: copy the rest down */
        char tmp[PATH_MAX + 32], path[PATH_MAX + 32];
        snprintf(tmp, sizeof tmp, "%s/spool.log.new", s->dir);
        snprintf(path, sizeof path, "%s/spool.log", s->dir);
        int nfd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        loff_t in = (loff_t)first_live;
        uint64_t left = s->end - first_live;
        while (nfd >= 0 && left) {
            ssize_t c = copy_file_range(s->fd, &in, nfd, NULL, left, 0);
            if (c <= 0)
                break;
            left -= (uint64_t)c;
        }
        if (nfd >= 0 && left == 0 && fdatasync(nfd) == 0 && rename(tmp, path) == 0) {
            close(s->fd);
            s->fd = nfd;
            shift = first_live;
            s->end -= first_live;
            first_live = 0;
        } else {
            if (nfd >= 0)
                close(nfd);
            unlink(tmp);
        }
    }
    if (first_live != s->ckpt || shift) {
        s->ckpt = first_live;
        if (write_ckpt(s) < 0)
            log_warn("spool: cannot write the checkpoint: %s", strerror(errno));
    }
    return shift;
}

uint64_t spool_live_bytes(const struct spool *s)
{
    return s->end - s->ckpt;
}

void spool_sync(struct spool *s)
{
    if (!s->dirty)
        return;
    if (fdatasync(s->fd) < 0 || fdatasync(s->ckpt_fd) < 0)
        log_warn("spool: fdatasync: %s", strerror(errno));
    s->dirty = false;
}

void spool_close(struct spool *s)
{
    if (!s)
        return;
    if (s->fd >= 0) {
        spool_sync(s);
        close(s->fd);
    }
    if (s->ckpt_fd >= 0)
        close(s->ckpt_fd);
    free(s->iov);
    free(s->hdr);
    free(s);
}
