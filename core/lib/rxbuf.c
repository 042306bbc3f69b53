/* rxbuf.c - growable receive buffer with lazy compaction. */
#include "lib/rxbuf.h"

#include <stdlib.h>
#include <string.h>

uint8_t *rxbuf_space(struct rxbuf *b, size_t min, size_t *avail)
{
    if (min == 0)
        min = 1;
    if (b->start == b->end)
        b->start = b->end = 0;
    if (b->cap - b->end < min && b->start > 0) {
        memmove(b->buf, b->buf + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->cap - b->end < min) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->end < min)
            cap *= 2;
        uint8_t *p = realloc(b->buf, cap);
        if (!p)
            return NULL;
        b->buf = p;
        b->cap = cap;
    }
    *avail = b->cap - b->end;
    return b->buf + b->end;
}

int rxbuf_feed(struct rxbuf *b, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    size_t avail;
    uint8_t *p = rxbuf_space(b, n, &avail);
    if (!p)
        return -1;
    memcpy(p, data, n);
    rxbuf_commit(b, n);
    return 0;
}

void rxbuf_free(struct rxbuf *b)
{
    free(b->buf);
    b->buf = NULL;
    b->cap = b->start = b->end = 0;
}
