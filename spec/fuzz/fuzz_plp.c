/* fuzz_plp.c - libFuzzer target: bytes from the guest, as egress reads
 * them, gzip included. The first byte picks the read size. Every frame
 * that decodes is encoded again (with and without gzip) and must decode to
 * the same type, seq and payload: the encoder and decoder agree on every
 * input the decoder accepts. Command frames go to their parsers. */
#include "wire/command_msg.h"
#include "wire/plp_codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void roundtrip(const struct plp_frame *f, size_t gzip_min)
{
    struct buf b = BUF_INIT;
    if (plp_encode(&b, f->type, f->flags & PLP_FLAG_JSON, f->seq, f->payload, f->len, gzip_min) < 0) {
        buf_free(&b);
        return;                              /* out of memory only */
    }
    struct plp_decoder d;
    plp_decoder_init(&d);
    struct plp_frame g;
    if (plp_decoder_feed(&d, b.p, b.len) < 0 || plp_decoder_next(&d, &g) != PLP_FRAME ||
        g.type != f->type || g.seq != f->seq || g.len != f->len ||
        (f->len && memcmp(g.payload, f->payload, f->len) != 0))
        abort();
    plp_decoder_free(&d);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] * 7 % 1024 + 1;
    data++, size--;
    struct plp_decoder d;
    plp_decoder_init(&d);
    for (size_t off = 0; off < size;) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (plp_decoder_feed(&d, data + off, n) < 0)
            break;
        off += n;
        struct plp_frame f;
        int st;
        while ((st = plp_decoder_next(&d, &f)) != PLP_NEED_MORE && st >= 0) {
            if (st != PLP_FRAME)
                continue;
            if (f.len > PLP_MAX_INFLATED)
                abort();
            roundtrip(&f, 0);
            if (f.len <= (64u << 10))        /* re-deflating a 16 MiB bomb each run would stall the fuzzer */
                roundtrip(&f, 1);
            const char *err;
            if (f.type == PLP_CMD_REQ_G2H) {
                struct cmd_request r;
                cmd_request_parse(f.payload, f.len, 0, &r, &err);
            } else if (f.type == PLP_CMD_RESP_G2H) {
                int64_t code;
                const char *msg, *dat;
                size_t ml, dl;
                cmd_result_parse(f.payload, f.len, &code, &msg, &ml, &dat, &dl);
            }
        }
        if (st < 0)
            break;
    }
    plp_decoder_free(&d);
    return 0;
}
