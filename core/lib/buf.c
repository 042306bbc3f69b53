/* buf.c - growable byte buffer and JSON text writers.
 *
 * Provides the one buffer type every codec and writer in the daemon appends
 * to. The JSON writers exist because the daemon emits JSON (status, command
 * results, synthetic events) but never needs a DOM to do it. */
#include "lib/buf.h"
#include "lib/json_plain.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

int buf_grow(struct buf *b, size_t extra)
{
    if (b->cap - b->len > extra)
        return 0;
    size_t need = b->len + extra + 1;      /* room for a trailing NUL */
    if (need < b->len)
        return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->p, b->p + n, b->len - n);
        b->len -= n;
    }
    if (b->p)
        b->p[b->len] = '\0';
}

int buf_read_file(struct buf *b, const char *path, size_t max, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t start = b->len;
    int rc = 0;
    for (size_t got;;) {
        if (buf_reserve(b, 65536) < 0) {
            errno = ENOMEM;
            rc = -1;
            break;
        }
        got = fread(b->p + b->len, 1, 65536, f);
        b->len += got;
        if (b->len - start > max) {
            errno = EFBIG;
            rc = -1;
            break;
        }
        if (got < 65536) {
            if (ferror(f))
                rc = -1;
            break;
        }
    }
    int e = errno;
    fclose(f);
    if (rc < 0) {
        b->len = start;
        snprintf(err, errlen, "%s: %s", path, e == EFBIG ? "larger than the limit" : strerror(e));
        errno = e;
    }
    if (b->p)
        b->p[b->len] = '\0';
    return rc;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;                           /* overlong or out of range */
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0;                           /* surrogates are not characters */
    return len;
}

/* Nonzero when a byte of x needs a look (below 0x20, non-ASCII, a quote
 * or a backslash). A borrow can set a bit above a byte that qualifies,
 * never where none does, so "any" is exact. */
static inline uint64_t special8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, high = ones << 7;
    uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
    return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs) | x) & high;
}

static inline uint64_t load8(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t load4(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A string shorter than 16 bytes that needs no escape, written quoted at
 * d: keys and most values are. It is read as two words that may overlap
 * (the way memcpy does small sizes), so there is no byte loop and nothing
 * outside s is read. false (d untouched) when some byte needs a look. */
static inline bool put_short_plain(char *d, const char *s, size_t n)
{
    if (n >= 8) {
        uint64_t a = load8(s), z = load8(s + n - 8);
        if (special8(a) | special8(z))
            return false;
        memcpy(d + 1, &a, 8);
        memcpy(d + 1 + n - 8, &z, 8);
    } else if (n >= 4) {
        uint32_t a = load4(s), z = load4(s + n - 4);
        if (special8(a | (uint64_t)z << 32))
            return false;
        memcpy(d + 1, &a, 4);
        memcpy(d + 1 + n - 4, &z, 4);
    } else if (n) {
        unsigned char a = (unsigned char)s[0], m = (unsigned char)s[n >> 1], z = (unsigned char)s[n - 1];
        /* the five bytes not taken from s are 'a's */
        if (special8(0x6161616161000000ull | a | (uint64_t)m << 8 | (uint64_t)z << 16))
            return false;
        d[1] = (char)a;
        d[1 + (n >> 1)] = (char)m;
        d[n] = (char)z;
    }
    d[0] = '"';
    d[n + 1] = '"';
    d[n + 2] = '\0';
    return true;
}

static int json_str_long(struct buf *b, const char *s, size_t n);

/* The short plain string, the common case, with nothing to save and
 * restore around it: everything else is in json_str_long. */
int buf_json_str(struct buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n + 2) < 0)
        return -1;
    if (n < 16 && put_short_plain(b->p + b->len, s, n)) {
        b->len += n + 2;
        return 0;
    }
    return json_str_long(b, s, n);
}

static __attribute__((noinline)) int json_str_long(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    /* nearly every string needs no escape: found, then copied whole */
    size_t i = json_plain_run(u, 0, n);
    while (i < n && u[i] >= 0x20 && u[i] < 0x80 && u[i] != '"' && u[i] != '\\')
        i++;
    char *d = b->p + b->len;
    d[0] = '"';
    if (i == n) {
        if (n)
            memcpy(d + 1, s, n);
        d[n + 1] = '"';
        d[n + 2] = '\0';
        b->len += n + 2;
        return 0;
    }
    memcpy(d + 1, s, i);                 /* the plain part found so far */
    b->len += 1 + i;
    while (i < n) {
        /* copy the longest run that needs no escaping in one go */
        size_t run = json_plain_run(u, i, n);
        while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i && buf_append(b, s + i, run - i) < 0)
            return -1;
        i = run;
        if (i >= n)
            break;
        unsigned char c = u[i];
        int rc = 0;
        if (c == '"') rc = buf_append(b, "\\\"", 2);
        else if (c == '\\') rc = buf_append(b, "\\\\", 2);
        else if (c == '\n') rc = buf_append(b, "\\n", 2);
        else if (c == '\r') rc = buf_append(b, "\\r", 2);
        else if (c == '\t') rc = buf_append(b, "\\t", 2);
        else if (c == '\b') rc = buf_append(b, "\\b", 2);
        else if (c == '\f') rc = buf_append(b, "\\f", 2);
        else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = buf_append(b, esc, 6);
        } else {
            size_t l = utf8_seq_len(u + i, n - i);
            if (l == 0) {
                rc = buf_append(b, "\xEF\xBF\xBD", 3);    /* U+FFFD */
                l = 1;
            } else {
                rc = buf_append(b, s + i, l);
            }
            i += l;
            if (rc < 0)
                return -1;
            continue;
        }
        if (rc < 0)
            return -1;
        i++;
    }
    return buf_putc(b, '"');
}

int buf_json_cstr(struct buf *b, const char *s)
{
    if (!s)
        return buf_append(b, "null", 4);
    return buf_json_str(b, s, strlen(s));
}

int buf_json_u64(struct buf *b, uint64_t v)
{
    /* two digits per division (timestamps have thirteen), written in place
     * from the last: the length is known first */
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    static const uint64_t pow10[20] = {
        1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
        1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
        100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
        1000000000000000000ull, 10000000000000000000ull};
    /* digits: log10 from the bit length (1233/4096 ~ log10(2)), one
     * compare to correct it */
    unsigned t = ((64u - (unsigned)__builtin_clzll(v | 1)) * 1233u) >> 12;
    size_t len = t + (v >= pow10[t]);
    if (len == 0)
        len = 1;
    if (buf_reserve(b, len) < 0)
        return -1;
    char *e = b->p + b->len + len;
    *e = '\0';
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100) * 2;
        v /= 100;
        e -= 2;
        e[0] = pairs[d];
        e[1] = pairs[d + 1];
    }
    if (v >= 10) {
        e[-2] = pairs[v * 2];
        e[-1] = pairs[v * 2 + 1];
    } else {
        e[-1] = (char)('0' + v);
    }
    b->len += len;
    return 0;
}

int buf_json_i64(struct buf *b, int64_t v)
{
    if (v < 0) {
        if (buf_putc(b, '-') < 0)
            return -1;
        return buf_json_u64(b, (uint64_t)0 - (uint64_t)v);
    }
    return buf_json_u64(b, (uint64_t)v);
}

int buf_json_double(struct buf *b, double v)
{
    if (!isfinite(v))
        return buf_append(b, "null", 4);
    /* integral values (every number lua-cjson decodes is a double) print
     * as integers, exactly, without the cost of %g */
    if (v >= -9007199254740992.0 && v <= 9007199254740992.0 && v == (double)(int64_t)v)
        return buf_json_i64(b, (int64_t)v);
    /* the shortest of 15 or 17 digits that reads back as the same double:
     * 0.05, not 0.050000000000000003 */
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.15g", v);
    if (n > 0 && (size_t)n < sizeof tmp && strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof tmp, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return -1;
    /* %g follows LC_NUMERIC; JSON wants a dot whatever the locale says */
    for (int i = 0; i < n; i++)
        if (tmp[i] == ',')
            tmp[i] = '.';
    return buf_append(b, tmp, (size_t)n);
}
