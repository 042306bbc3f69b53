/* targz.c - a POSIX ustar writer over zlib's gzip stream. Archives are what
 * a capture hands the guest; they are read by GNU tar, bsdtar or Python's
 * tarfile (the specs check with two of them), so the format is the plain
 * ustar subset every reader knows: regular files only, names split into
 * prefix/name, owner 0/0.
 *
 * Uses: zlib (gzdopen/gzwrite: the gzip header, deflate and trailer). */
#include "lib/targz.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* Where a name over 100 bytes is split into ustar's prefix (<= 155) and
 * name (<= 100): the last slash that makes both fit; NULL when none does. */
static const char *split_point(const char *name)
{
    size_t len = strlen(name);
    const char *cut = NULL;
    for (const char *s = name; (s = strchr(s, '/')); s++)
        if ((size_t)(s - name) <= 155 && len - (size_t)(s - name) - 1 <= 100)
            cut = s;
    return cut;
}

const char *targz_bad_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 255)
        return "a name must be 1..255 bytes";
    if (name[0] == '/')
        return "a name must be relative";
    for (const char *s = name; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return "a name may not have empty, '.' or '..' parts";
        s += n + (e ? 1 : 0);
    }
    if (len > 100 && !split_point(name))
        return "too long for ustar (at most 100 bytes after the last directory, 155 before it)";
    return NULL;
}

static void octal(char *field, size_t width, uint64_t v)
{
    /* width-1 digits, zero-padded, then NUL */
    snprintf(field, width, "%0*llo", (int)width - 1, (unsigned long long)v);
}

/* Fills a 512-byte ustar header; -1 when the name cannot be split. */
static int header(unsigned char h[512], const struct targz_entry *e, int64_t mtime)
{
    memset(h, 0, 512);
    size_t len = strlen(e->name);
    const char *name = e->name;
    if (len > 100) {
        const char *cut = split_point(e->name);
        if (!cut)
            return -1;
        memcpy(h + 345, e->name, (size_t)(cut - e->name));
        name = cut + 1;
    }
    memcpy(h, name, strlen(name));
    octal((char *)h + 100, 8, e->mode ? e->mode & 07777 : 0644);
    octal((char *)h + 108, 8, 0);
    octal((char *)h + 116, 8, 0);
    octal((char *)h + 124, 12, e->len);
    octal((char *)h + 136, 12, mtime > 0 ? (uint64_t)mtime : 0);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memcpy(h + 265, "root", 4);
    memcpy(h + 297, "root", 4);
    memset(h + 148, ' ', 8);                 /* checksum counts itself as spaces */
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);   /* six digits, NUL, space */
    h[155] = ' ';
    return 0;
}

static int put(gzFile gz, const void *p, size_t n)
{
    while (n) {
        unsigned chunk = n > (1u << 30) ? 1u << 30 : (unsigned)n;
        if (gzwrite(gz, p, chunk) != (int)chunk)
            return -1;
        p = (const char *)p + chunk;
        n -= chunk;
    }
    return 0;
}

int targz_write_fd(int fd, const struct targz_entry *v, size_t n, int64_t mtime_s,
                   char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const char *why = targz_bad_name(v[i].name);
        if (why) {
            snprintf(err, errlen, "%s: %s", v[i].name, why);
            return -1;
        }
    }
    int dupfd = dup(fd);
    gzFile gz = dupfd < 0 ? NULL : gzdopen(dupfd, "wb6");
    if (!gz) {
        if (dupfd >= 0)
            close(dupfd);
        snprintf(err, errlen, "cannot start the gzip stream");
        return -1;
    }
    static const unsigned char zeros[1024];
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char h[512];
        if (header(h, &v[i], mtime_s) < 0) {
            snprintf(err, errlen, "%s: cannot be split into ustar prefix and name", v[i].name);
            rc = -1;
            break;
        }
        size_t pad = (512 - v[i].len % 512) % 512;
        if (put(gz, h, 512) < 0 || put(gz, v[i].data, v[i].len) < 0 || put(gz, zeros, pad) < 0) {
            snprintf(err, errlen, "write failed");
            rc = -1;
        }
    }
    if (rc == 0 && put(gz, zeros, 1024) < 0) {
        snprintf(err, errlen, "write failed");
        rc = -1;
    }
    if (gzclose(gz) != Z_OK && rc == 0) {
        snprintf(err, errlen, "write failed at close");
        rc = -1;
    }
    return rc;
}
