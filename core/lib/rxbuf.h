/* rxbuf.h - the receive buffer both wire decoders own: the socket is read
 * straight into it and frames are handed out of it without a copy. */
#ifndef POLARIS_RXBUF_H
#define POLARIS_RXBUF_H

#include <stddef.h>
#include <stdint.h>

struct rxbuf {
    uint8_t *buf;
    size_t cap, start, end;   /* unread bytes are buf[start..end) */
};

/* Room for at least min bytes at the end (compacting or growing). NULL on
 * ENOMEM; *avail receives the room there is. */
uint8_t *rxbuf_space(struct rxbuf *b, size_t min, size_t *avail);
static inline void rxbuf_commit(struct rxbuf *b, size_t n) { b->end += n; }
int  rxbuf_feed(struct rxbuf *b, const void *data, size_t n);   /* 0 or -1 */
static inline size_t rxbuf_pending(const struct rxbuf *b) { return b->end - b->start; }
void rxbuf_free(struct rxbuf *b);

#endif
