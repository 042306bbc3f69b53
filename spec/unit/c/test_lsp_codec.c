/* test_lsp_codec.c - LSP v1 decoder and encoder. */
#include "harness.h"
#include "wire/lsp_codec.h"

#include <stdlib.h>
#include <string.h>

static void put32(unsigned char *p, unsigned v)
{
    p[0] = v & 255; p[1] = (v >> 8) & 255; p[2] = (v >> 16) & 255; p[3] = (v >> 24) & 255;
}

TEST(lsp_roundtrip_every_split)
{
    struct buf b = BUF_INIT;
    REQUIRE(lsp_encode(&b, LSP_EVENT_REPORT, 7, "{\"eventId\":1}", 13) == 0);
    REQUIRE(lsp_encode(&b, LSP_CMD_REQ, 8, "", 0) == 0);
    REQUIRE(lsp_encode(&b, 0x99, 9, "xy", 2) == 0);
    /* feed the stream split at every byte boundary, one byte at a time too */
    for (size_t cut = 0; cut <= b.len; cut++) {
        struct lsp_decoder d;
        lsp_decoder_init(&d, LSP_MAX_FRAME);
        struct lsp_frame f;
        int got = 0;
        size_t parts[2][2] = {{0, cut}, {cut, b.len - cut}};
        for (int p = 0; p < 2; p++) {
            for (size_t i = 0; i < parts[p][1]; i++) {
                REQUIRE(lsp_decoder_feed(&d, b.p + parts[p][0] + i, 1) == 0);
                int rc;
                while ((rc = lsp_decoder_next(&d, &f)) == LSP_FRAME) {
                    got++;
                    if (got == 1) {
                        CHECK(f.type == LSP_EVENT_REPORT && f.req_id == 7 && f.len == 13);
                        CHECK(memcmp(f.payload, "{\"eventId\":1}", 13) == 0);
                    } else if (got == 2) {
                        CHECK(f.type == LSP_CMD_REQ && f.req_id == 8 && f.len == 0);
                    } else {
                        CHECK(f.type == 0x99 && f.req_id == 9 && f.len == 2);
                    }
                }
                CHECK(rc == LSP_NEED_MORE);
            }
        }
        CHECK(got == 3);
        CHECK(lsp_decoder_pending(&d) == 0);
        lsp_decoder_free(&d);
    }
    buf_free(&b);
}

TEST(lsp_rejects_short_total_len)
{
    unsigned char h[12] = {0};
    put32(h, 11);
    struct lsp_decoder d;
    lsp_decoder_init(&d, LSP_MAX_FRAME);
    lsp_decoder_feed(&d, h, sizeof h);
    struct lsp_frame f;
    CHECK(lsp_decoder_next(&d, &f) == LSP_ERR_TOO_SHORT);
    CHECK(lsp_decoder_next(&d, &f) == LSP_ERR_TOO_SHORT);   /* sticky */
    lsp_decoder_free(&d);
}

TEST(lsp_rejects_oversize_before_payload_arrives)
{
    unsigned char h[12] = {0};
    put32(h, LSP_MAX_FRAME + 1);
    struct lsp_decoder d;
    lsp_decoder_init(&d, LSP_MAX_FRAME);
    lsp_decoder_feed(&d, h, sizeof h);
    struct lsp_frame f;
    CHECK(lsp_decoder_next(&d, &f) == LSP_ERR_TOO_LONG);
    lsp_decoder_free(&d);
}

TEST(lsp_accepts_exactly_max)
{
    struct buf b = BUF_INIT;
    size_t n = LSP_MAX_FRAME - LSP_HEADER_LEN;
    char *payload = calloc(1, n);
    REQUIRE(payload);
    REQUIRE(lsp_encode(&b, LSP_EVENT_REPORT, 1, payload, n) == 0);
    CHECK(lsp_encode(&b, LSP_EVENT_REPORT, 1, payload, n + 1) == -1);
    struct lsp_decoder d;
    lsp_decoder_init(&d, LSP_MAX_FRAME);
    lsp_decoder_feed(&d, b.p, b.len);
    struct lsp_frame f;
    CHECK(lsp_decoder_next(&d, &f) == LSP_FRAME);
    CHECK(f.len == n);
    lsp_decoder_free(&d);
    free(payload);
    buf_free(&b);
}

TEST(lsp_header_is_little_endian)
{
    struct buf b = BUF_INIT;
    REQUIRE(lsp_encode(&b, 0x0201, 0x06050403, "ab", 2) == 0);
    const unsigned char want[] = {14, 0, 0, 0, 1, 2, 0, 0, 3, 4, 5, 6, 'a', 'b'};
    CHECK(b.len == sizeof want && memcmp(b.p, want, sizeof want) == 0);
    buf_free(&b);
}
