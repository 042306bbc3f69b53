/* test_plp_codec.c - PLP v1 decoder and encoder, CRC and gzip. */
#include "harness.h"
#include "wire/gzip_codec.h"
#include "wire/plp_codec.h"

#include <stdlib.h>
#include <string.h>
#include <libdeflate.h>
#include <zlib.h>

static void wr32(unsigned char *p, unsigned v)
{
    p[0] = v & 255; p[1] = (v >> 8) & 255; p[2] = (v >> 16) & 255; p[3] = (v >> 24) & 255;
}

static void wr16(unsigned char *p, unsigned v)
{
    p[0] = v & 255; p[1] = (v >> 8) & 255;
}

static void header(unsigned char *h, unsigned magic, unsigned ver, unsigned hlen, unsigned plen,
                   unsigned type, unsigned flags, unsigned seq, unsigned crc)
{
    wr32(h, magic); wr16(h + 4, ver); wr16(h + 6, hlen); wr32(h + 8, plen);
    wr16(h + 12, type); wr16(h + 14, flags); wr32(h + 16, seq); wr32(h + 20, crc);
}

static int decode_one(const void *data, size_t n, struct plp_decoder *d, struct plp_frame *f)
{
    plp_decoder_init(d);
    plp_decoder_feed(d, data, n);
    return plp_decoder_next(d, f);
}

TEST(plp_roundtrip_every_split_with_gzip)
{
    struct buf b = BUF_INIT;
    char big[3000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 7);
    REQUIRE(plp_encode(&b, PLP_EVENT_H2G, PLP_FLAG_JSON, 41, "{\"a\":1}", 7, 1024) == 0);
    REQUIRE(plp_encode(&b, PLP_EVENT_H2G, PLP_FLAG_JSON, 42, big, sizeof big, 1024) == 0);
    REQUIRE(plp_encode(&b, PLP_HEARTBEAT, 0, 0, NULL, 0, 1024) == 0);
    for (size_t cut = 0; cut <= b.len; cut += 1) {
        struct plp_decoder d;
        plp_decoder_init(&d);
        int got = 0;
        struct plp_frame f;
        const size_t spans[2][2] = {{0, cut}, {cut, b.len}};
        for (int s = 0; s < 2; s++) {
            plp_decoder_feed(&d, b.p + spans[s][0], spans[s][1] - spans[s][0]);
            int rc;
            while ((rc = plp_decoder_next(&d, &f)) == PLP_FRAME) {
                got++;
                if (got == 1)
                    CHECK(f.seq == 41 && f.len == 7 && !(f.flags & PLP_FLAG_GZIP));
                if (got == 2)
                    CHECK(f.seq == 42 && f.len == sizeof big && (f.flags & PLP_FLAG_GZIP) &&
                          memcmp(f.payload, big, sizeof big) == 0);
                if (got == 3)
                    CHECK(f.type == PLP_HEARTBEAT && f.len == 0);
            }
            CHECK(rc == PLP_NEED_MORE);
        }
        CHECK(got == 3);
        plp_decoder_free(&d);
    }
    buf_free(&b);
}

TEST(plp_bad_magic_version_hdrlen_size_close)
{
    unsigned char h[24];
    struct plp_decoder d;
    struct plp_frame f;
    header(h, 0x12345678, 1, 24, 0, 1, 0, 0, 0);
    CHECK(decode_one(h, 4, &d, &f) == PLP_ERR_MAGIC);    /* known after 4 bytes */
    plp_decoder_free(&d);
    header(h, PLP_MAGIC, 2, 24, 0, 1, 0, 0, 0);
    CHECK(decode_one(h, 24, &d, &f) == PLP_ERR_VERSION);
    plp_decoder_free(&d);
    header(h, PLP_MAGIC, 1, 23, 0, 1, 0, 0, 0);
    CHECK(decode_one(h, 24, &d, &f) == PLP_ERR_HDRLEN);
    plp_decoder_free(&d);
    header(h, PLP_MAGIC, 1, 24, PLP_MAX_PAYLOAD + 1, 1, 0, 0, 0);
    CHECK(decode_one(h, 24, &d, &f) == PLP_ERR_TOO_LONG);
    CHECK(plp_decoder_next(&d, &f) == PLP_ERR_TOO_LONG);
    plp_decoder_free(&d);
}

TEST(plp_longer_header_is_skipped)
{
    unsigned char fr[32 + 5];
    const char *p = "hello";
    header(fr, PLP_MAGIC, 1, 32, 5, PLP_CMD_REQ_G2H, 0, 9, (unsigned)crc32(0, (const Bytef *)p, 5));
    memset(fr + 24, 0xEE, 8);
    memcpy(fr + 32, p, 5);
    struct plp_decoder d;
    struct plp_frame f;
    CHECK(decode_one(fr, sizeof fr, &d, &f) == PLP_FRAME);
    CHECK(f.len == 5 && memcmp(f.payload, "hello", 5) == 0 && f.seq == 9);
    plp_decoder_free(&d);
}

TEST(plp_crc_mismatch_skips_frame_keeps_stream)
{
    struct buf b = BUF_INIT;
    REQUIRE(plp_encode(&b, PLP_CMD_REQ_G2H, PLP_FLAG_JSON, 1, "{\"x\":1}", 7, 0) == 0);
    b.p[24] ^= 1;                                  /* corrupt the payload */
    REQUIRE(plp_encode(&b, PLP_CMD_REQ_G2H, PLP_FLAG_JSON, 2, "{\"x\":2}", 7, 0) == 0);
    struct plp_decoder d;
    struct plp_frame f;
    CHECK(decode_one(b.p, b.len, &d, &f) == PLP_SKIP_CRC);
    CHECK(f.seq == 1);
    CHECK(plp_decoder_next(&d, &f) == PLP_FRAME);
    CHECK(f.seq == 2);
    plp_decoder_free(&d);
    buf_free(&b);
}

TEST(plp_gzip_bomb_refused_stream_kept)
{
    /* 17 MiB of zeros compress to ~17 KiB: inflating must stop at 16 MiB */
    size_t n = 17u << 20;
    char *zeros = calloc(1, n);
    REQUIRE(zeros);
    struct buf z = BUF_INIT, b = BUF_INIT;
    REQUIRE(gzip_compress(zeros, n, &z) == 0);
    free(zeros);
    unsigned char h[24];
    header(h, PLP_MAGIC, 1, 24, (unsigned)z.len, PLP_CMD_REQ_G2H, PLP_FLAG_GZIP, 5,
           (unsigned)crc32(0, (const Bytef *)z.p, (uInt)z.len));
    buf_append(&b, h, 24);
    buf_append(&b, z.p, z.len);
    REQUIRE(plp_encode(&b, PLP_HEARTBEAT, 0, 6, NULL, 0, 0) == 0);
    struct plp_decoder d;
    struct plp_frame f;
    CHECK(decode_one(b.p, b.len, &d, &f) == PLP_SKIP_BOMB);
    CHECK(plp_decoder_next(&d, &f) == PLP_FRAME && f.seq == 6);
    plp_decoder_free(&d);
    buf_free(&z);
    buf_free(&b);
}

TEST(plp_bad_gzip_skipped)
{
    const char junk[] = "not gzip at all";
    unsigned char fr[24 + sizeof junk];
    header(fr, PLP_MAGIC, 1, 24, sizeof junk, PLP_CMD_REQ_G2H, PLP_FLAG_GZIP, 3,
           (unsigned)crc32(0, (const Bytef *)junk, sizeof junk));
    memcpy(fr + 24, junk, sizeof junk);
    struct plp_decoder d;
    struct plp_frame f;
    CHECK(decode_one(fr, sizeof fr, &d, &f) == PLP_SKIP_GZIP);
    plp_decoder_free(&d);
}

TEST(plp_crc_is_zlib_ieee_over_sent_bytes)
{
    struct buf b = BUF_INIT;
    REQUIRE(plp_encode(&b, PLP_EVENT_H2G, PLP_FLAG_JSON, 1, "123456789", 9, 0) == 0);
    const unsigned char *h = (const unsigned char *)b.p;
    unsigned crc = h[20] | h[21] << 8 | h[22] << 16 | (unsigned)h[23] << 24;
    CHECK(crc == 0xCBF43926u);                     /* the CRC-32/IEEE check value */
    buf_free(&b);
}

/* The CRC on the event path is libdeflate's; the protocol's reference is
 * zlib's crc32(). Every length 0..4096 (each of libdeflate's code paths:
 * byte loop, folding, the vector tail), misaligned starts, chained calls. */
TEST(plp_crc_is_zlibs_crc32)
{
    static unsigned char data[4096 + 16];
    unsigned x = 12345;
    for (size_t i = 0; i < sizeof data; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (unsigned char)(x >> 16);
    }
    for (size_t len = 0; len <= 4096; len++) {
        size_t off = len % 13;
        uint32_t ref = (uint32_t)crc32(0L, data + off, (uInt)len);
        REQUIRE(libdeflate_crc32(0, data + off, len) == ref);
        size_t half = len / 3;
        REQUIRE(libdeflate_crc32(libdeflate_crc32(0, data + off, half), data + off + half, len - half) == ref);
    }
    /* and what the encoder writes into the header is that CRC */
    struct buf b = BUF_INIT;
    REQUIRE(plp_encode(&b, PLP_EVENT_H2G, PLP_FLAG_JSON, 1, (const char *)data, 700, 1 << 20) == 0);
    const unsigned char *h = (const unsigned char *)b.p;
    uint32_t in_header = (uint32_t)h[20] | (uint32_t)h[21] << 8 | (uint32_t)h[22] << 16 | (uint32_t)h[23] << 24;
    REQUIRE(in_header == (uint32_t)crc32(0L, data, 700));
    buf_free(&b);
}
