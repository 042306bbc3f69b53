/* lsp_codec.c - LSP v1 streaming decoder and encoder (DESIGN 3.1).
 *
 * The decoder owns one contiguous buffer so the ingress can read(2) straight
 * into it and frames are handed out without a copy. */
#include "wire/lsp_codec.h"

#include <stdlib.h>
#include <string.h>

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

void lsp_decoder_init(struct lsp_decoder *d, uint32_t max_frame)
{
    memset(d, 0, sizeof *d);
    d->max_frame = max_frame ? max_frame : LSP_MAX_FRAME;
}

void lsp_decoder_free(struct lsp_decoder *d)
{
    rxbuf_free(&d->rx);
}

uint8_t *lsp_decoder_space(struct lsp_decoder *d, size_t min, size_t *avail)
{
    return rxbuf_space(&d->rx, min, avail);
}

void lsp_decoder_commit(struct lsp_decoder *d, size_t n)
{
    rxbuf_commit(&d->rx, n);
}

int lsp_decoder_feed(struct lsp_decoder *d, const void *data, size_t n)
{
    return rxbuf_feed(&d->rx, data, n) < 0 ? LSP_ERR_NOMEM : 0;
}

int lsp_decoder_next(struct lsp_decoder *d, struct lsp_frame *f)
{
    if (d->error)
        return d->error;
    size_t have = rxbuf_pending(&d->rx);
    if (have < LSP_HEADER_LEN)
        return LSP_NEED_MORE;
    const uint8_t *h = d->rx.buf + d->rx.start;
    uint32_t total = rd32(h);
    if (total < LSP_HEADER_LEN)
        return d->error = LSP_ERR_TOO_SHORT;
    if (total > d->max_frame)
        return d->error = LSP_ERR_TOO_LONG;
    if (have < total)
        return LSP_NEED_MORE;
    f->type = rd16(h + 4);
    f->reserved = rd16(h + 6);
    f->req_id = rd32(h + 8);
    f->payload = (const char *)h + LSP_HEADER_LEN;
    f->len = total - LSP_HEADER_LEN;
    d->rx.start += total;
    d->frames++;
    return LSP_FRAME;
}

size_t lsp_decoder_pending(const struct lsp_decoder *d)
{
    return rxbuf_pending(&d->rx);
}

const char *lsp_status_str(int status)
{
    switch (status) {
    case LSP_FRAME: return "frame";
    case LSP_NEED_MORE: return "need more";
    case LSP_ERR_TOO_SHORT: return "total_len below header size";
    case LSP_ERR_TOO_LONG: return "total_len above 4 MiB";
    case LSP_ERR_NOMEM: return "out of memory";
    default: return "unknown";
    }
}

int lsp_encode(struct buf *out, uint16_t type, uint32_t req_id,
               const void *payload, size_t len)
{
    if (len > LSP_MAX_FRAME - LSP_HEADER_LEN)
        return -1;
    uint32_t total = (uint32_t)(len + LSP_HEADER_LEN);
    uint8_t h[LSP_HEADER_LEN] = {
        (uint8_t)total, (uint8_t)(total >> 8), (uint8_t)(total >> 16), (uint8_t)(total >> 24),
        (uint8_t)type, (uint8_t)(type >> 8), 0, 0,
        (uint8_t)req_id, (uint8_t)(req_id >> 8), (uint8_t)(req_id >> 16), (uint8_t)(req_id >> 24),
    };
    if (buf_reserve(out, total) < 0)
        return -1;
    buf_append(out, h, sizeof h);
    buf_append(out, payload, len);
    return 0;
}
