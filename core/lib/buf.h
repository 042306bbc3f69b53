/* buf.h - growable byte buffer and the JSON text writers built on it. */
#ifndef POLARIS_BUF_H
#define POLARIS_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

struct buf {
    char  *p;
    size_t len;
    size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

/* All functions return 0 on success, -1 when memory could not be had; on
 * failure the buffer keeps its previous contents. */
int  buf_grow(struct buf *b, size_t extra);   /* the slow path of buf_reserve */
/* Every event passes through these several times: the common case (room
 * already there) is inline. */
static inline int buf_reserve(struct buf *b, size_t extra)
{
    return b->cap - b->len > extra ? 0 : buf_grow(b, extra);
}
static inline int buf_append(struct buf *b, const void *data, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    if (n)
        __builtin_memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}
static inline int buf_putc(struct buf *b, char c)
{
    if (buf_reserve(b, 1) < 0)
        return -1;
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
    return 0;
}
int  buf_puts(struct buf *b, const char *s);
int  buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_consume(struct buf *b, size_t n);  /* drop n bytes from the front */
/* Appends the whole file at path, refusing one larger than max bytes.
 * 0, or -1 with err ("PATH: reason") and errno set; nothing is appended
 * on failure. */
int  buf_read_file(struct buf *b, const char *path, size_t max, char *err, size_t errlen);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* JSON writers: a quoted, escaped string (invalid UTF-8 becomes U+FFFD),
 * and integers that never pass through a double. */
int buf_json_str(struct buf *b, const char *s, size_t n);
int buf_json_cstr(struct buf *b, const char *s);
int buf_json_u64(struct buf *b, uint64_t v);
int buf_json_i64(struct buf *b, int64_t v);
int buf_json_double(struct buf *b, double v);  /* locale-independent */

#endif
