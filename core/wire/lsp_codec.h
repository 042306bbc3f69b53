/* lsp_codec.h - LSP v1 framing (DESIGN 3.1): local processes <-> polarisd. */
#ifndef POLARIS_LSP_CODEC_H
#define POLARIS_LSP_CODEC_H

#include <stdint.h>
#include <stddef.h>
#include "lib/buf.h"
#include "lib/rxbuf.h"

#define LSP_HEADER_LEN 12u
#define LSP_MAX_FRAME  4194304u

enum lsp_msg_type {
    LSP_EVENT_REPORT = 0x01,
    LSP_CMD_REQ      = 0x20,
    LSP_CMD_RESP     = 0x21,
};

enum lsp_status {
    LSP_FRAME         = 1,   /* *frame is valid until the next call */
    LSP_NEED_MORE     = 0,
    LSP_ERR_TOO_SHORT = -1,  /* total_len < 12: close the connection */
    LSP_ERR_TOO_LONG  = -2,  /* total_len > max: close the connection */
    LSP_ERR_NOMEM     = -3,
};

struct lsp_frame {
    uint16_t type;
    uint16_t reserved;
    uint32_t req_id;
    const char *payload;     /* not NUL-terminated */
    uint32_t len;
};

/* Streaming decoder owning its input buffer: bytes may arrive split at any
 * boundary. After an error the decoder stays in error. */
struct lsp_decoder {
    struct rxbuf rx;
    uint32_t max_frame;
    int error;
    uint64_t frames;         /* frames completed so far */
};

void lsp_decoder_init(struct lsp_decoder *d, uint32_t max_frame);
void lsp_decoder_free(struct lsp_decoder *d);
/* Space to read into: at least min bytes (grown as needed). NULL on ENOMEM. */
uint8_t *lsp_decoder_space(struct lsp_decoder *d, size_t min, size_t *avail);
void lsp_decoder_commit(struct lsp_decoder *d, size_t n);
int  lsp_decoder_feed(struct lsp_decoder *d, const void *data, size_t n);
int  lsp_decoder_next(struct lsp_decoder *d, struct lsp_frame *f);
/* Bytes buffered that belong to an incomplete frame. */
size_t lsp_decoder_pending(const struct lsp_decoder *d);

const char *lsp_status_str(int status);

/* Appends one frame. -1 if the payload is too large or memory ran out. */
int lsp_encode(struct buf *out, uint16_t type, uint32_t req_id,
               const void *payload, size_t len);

#endif
