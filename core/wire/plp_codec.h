/* plp_codec.h - PLP v1 framing (DESIGN 3.2): host <-> guest. */
#ifndef POLARIS_PLP_CODEC_H
#define POLARIS_PLP_CODEC_H

#include <stdint.h>
#include <stddef.h>
#include "lib/buf.h"
#include "lib/rxbuf.h"

#define PLP_MAGIC        0x504C5253u   /* "PLRS" */
#define PLP_VERSION      1u
#define PLP_HEADER_LEN   24u
#define PLP_MAX_PAYLOAD  (16u << 20)
#define PLP_MAX_INFLATED (16u << 20)

#define PLP_FLAG_JSON 0x1u
#define PLP_FLAG_GZIP 0x2u

enum plp_msg_type {
    PLP_HEARTBEAT    = 0x0001,
    PLP_EVENT_H2G    = 0x0010,
    PLP_CMD_RESP_H2G = 0x0011,
    PLP_CMD_REQ_H2G  = 0x0012,
    PLP_CMD_REQ_G2H  = 0x0020,
    PLP_CMD_RESP_G2H = 0x0021,
    PLP_EVENT_ACK_G2H = 0x0022,   /* optional: events up to seq_id taken (DESIGN 3.2) */
};

enum plp_status {
    PLP_FRAME        = 1,    /* *frame valid until the next call */
    PLP_NEED_MORE    = 0,
    PLP_SKIP_CRC     = 2,    /* frame dropped: CRC mismatch; session stays */
    PLP_SKIP_GZIP    = 3,    /* frame dropped: bad gzip stream; session stays */
    PLP_SKIP_BOMB    = 4,    /* frame dropped: inflates past 16 MiB */
    PLP_ERR_MAGIC    = -1,   /* the rest: close the session */
    PLP_ERR_VERSION  = -2,
    PLP_ERR_HDRLEN   = -3,
    PLP_ERR_TOO_LONG = -4,
    PLP_ERR_NOMEM    = -5,
};

struct plp_frame {
    uint16_t type;
    uint16_t flags;          /* as received; GZIP already undone */
    uint32_t seq;
    uint32_t crc;
    const char *payload;     /* inflated when GZIP was set */
    size_t len;
};

struct plp_decoder {
    struct rxbuf rx;
    struct buf inflated;
    int error;
    uint64_t frames;
};

void plp_decoder_init(struct plp_decoder *d);
void plp_decoder_free(struct plp_decoder *d);
uint8_t *plp_decoder_space(struct plp_decoder *d, size_t min, size_t *avail);
void plp_decoder_commit(struct plp_decoder *d, size_t n);
int  plp_decoder_feed(struct plp_decoder *d, const void *data, size_t n);
/* Returns a plp_status. SKIP statuses fill f's header fields (not payload). */
int  plp_decoder_next(struct plp_decoder *d, struct plp_frame *f);
size_t plp_decoder_pending(const struct plp_decoder *d);
const char *plp_status_str(int status);

/* Appends one frame; gzips the payload when gzip_min > 0 and len >= gzip_min.
 * A caller that sets PLP_FLAG_GZIP passes a payload that is already a gzip
 * stream (simulators, tests). Returns 0 or -1. */
int plp_encode(struct buf *out, uint16_t type, uint16_t flags, uint32_t seq,
               const void *payload, size_t len, size_t gzip_min);

#endif
