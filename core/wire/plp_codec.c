/* plp_codec.c - PLP v1 streaming decoder and encoder (DESIGN 3.2).
 *
 * CRC32 (IEEE, as zlib's crc32()) over the payload bytes as sent
 * (compressed when GZIP is set), computed by libdeflate: a frame per event
 * makes it the egress's largest single cost with zlib's table-driven one.
 * gzip goes through gzip_codec.c with the 16 MiB inflate cap. */
#include "wire/plp_codec.h"
#include "wire/gzip_codec.h"

#include <stdlib.h>
#include <string.h>
#include <libdeflate.h>

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
}

void plp_decoder_init(struct plp_decoder *d)
{
    memset(d, 0, sizeof *d);
}

void plp_decoder_free(struct plp_decoder *d)
{
    rxbuf_free(&d->rx);
    buf_free(&d->inflated);
}

uint8_t *plp_decoder_space(struct plp_decoder *d, size_t min, size_t *avail)
{
    return rxbuf_space(&d->rx, min, avail);
}

void plp_decoder_commit(struct plp_decoder *d, size_t n)
{
    rxbuf_commit(&d->rx, n);
}

int plp_decoder_feed(struct plp_decoder *d, const void *data, size_t n)
{
    return rxbuf_feed(&d->rx, data, n) < 0 ? PLP_ERR_NOMEM : 0;
}

int plp_decoder_next(struct plp_decoder *d, struct plp_frame *f)
{
    if (d->error)
        return d->error;
    size_t have = rxbuf_pending(&d->rx);
    const uint8_t *h = d->rx.buf + d->rx.start;
    /* check what has arrived as soon as it arrives: a bad magic closes the
     * session without waiting for a whole header */
    if (have >= 4 && rd32(h) != PLP_MAGIC)
        return d->error = PLP_ERR_MAGIC;
    if (have >= 6 && rd16(h + 4) != PLP_VERSION)
        return d->error = PLP_ERR_VERSION;
    if (have >= 8 && rd16(h + 6) < PLP_HEADER_LEN)
        return d->error = PLP_ERR_HDRLEN;
    if (have >= 12 && rd32(h + 8) > PLP_MAX_PAYLOAD)
        return d->error = PLP_ERR_TOO_LONG;
    if (have < PLP_HEADER_LEN)
        return PLP_NEED_MORE;
    size_t hlen = rd16(h + 6);
    size_t plen = rd32(h + 8);
    if (have < hlen + plen)
        return PLP_NEED_MORE;
    f->type = rd16(h + 12);
    f->flags = rd16(h + 14);
    f->seq = rd32(h + 16);
    f->crc = rd32(h + 20);
    const uint8_t *payload = h + hlen;           /* extra header bytes skipped */
    d->rx.start += hlen + plen;
    d->frames++;
    f->payload = NULL;
    f->len = 0;
    if ((uint32_t)libdeflate_crc32(0, payload, plen) != f->crc)
        return PLP_SKIP_CRC;
    if (f->flags & PLP_FLAG_GZIP) {
        buf_reset(&d->inflated);
        int rc = gzip_decompress(payload, plen, &d->inflated, PLP_MAX_INFLATED);
        if (rc == -2)
            return PLP_SKIP_BOMB;
        if (rc < 0)
            return PLP_SKIP_GZIP;
        f->payload = d->inflated.p;
        f->len = d->inflated.len;
    } else {
        f->payload = (const char *)payload;
        f->len = plen;
    }
    return PLP_FRAME;
}

size_t plp_decoder_pending(const struct plp_decoder *d)
{
    return rxbuf_pending(&d->rx);
}

const char *plp_status_str(int status)
{
    switch (status) {
    case PLP_FRAME: return "frame";
    case PLP_NEED_MORE: return "need more";
    case PLP_SKIP_CRC: return "CRC mismatch";
    case PLP_SKIP_GZIP: return "invalid gzip payload";
    case PLP_SKIP_BOMB: return "gzip payload inflates past 16 MiB";
    case PLP_ERR_MAGIC: return "bad magic";
    case PLP_ERR_VERSION: return "unsupported version";
    case PLP_ERR_HDRLEN: return "header_len below 24";
    case PLP_ERR_TOO_LONG: return "payload above 16 MiB";
    case PLP_ERR_NOMEM: return "out of memory";
    default: return "unknown";
    }
}

int plp_encode(struct buf *out, uint16_t type, uint16_t flags, uint32_t seq,
               const void *payload, size_t len, size_t gzip_min)
{
    size_t start = out->len;
    if (buf_reserve(out, PLP_HEADER_LEN + len) < 0)
        return -1;
    out->len += PLP_HEADER_LEN;                  /* header written last */
    size_t plen = len;
    /* GZIP set by the caller: the payload is already a gzip stream */
    if (!(flags & PLP_FLAG_GZIP) && gzip_min && len >= gzip_min) {
        if (gzip_compress(payload, len, out) < 0)
            goto fail;
        plen = out->len - start - PLP_HEADER_LEN;
        flags |= PLP_FLAG_GZIP;
    } else if (buf_append(out, payload, len) < 0) {
        goto fail;
    }
    if (plen > PLP_MAX_PAYLOAD)
        goto fail;
    uint8_t *h = (uint8_t *)out->p + start;
    wr32(h, PLP_MAGIC);
    wr16(h + 4, PLP_VERSION);
    wr16(h + 6, PLP_HEADER_LEN);
    wr32(h + 8, (uint32_t)plen);
    wr16(h + 12, type);
    wr16(h + 14, flags);
    wr32(h + 16, seq);
    wr32(h + 20, (uint32_t)libdeflate_crc32(0, h + PLP_HEADER_LEN, plen));
    return 0;
fail:
    out->len = start;
    if (out->p)
        out->p[start] = '\0';
    return -1;
}
