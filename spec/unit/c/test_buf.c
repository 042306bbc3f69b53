/* test_buf.c - the JSON writers in core/lib/buf.c against references: the
 * string writer against a byte-at-a-time escaper for every length and
 * every position of every kind of byte (its short-string and 16-byte paths
 * each have edges there), integers against printf, and whole-file reads. */
#include "harness.h"
#include "lib/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The writer's rules one byte at a time. Test inputs hold only one
 * multi-byte character, U+00E9 (C3 A9); any other byte from 0x80 up is
 * invalid UTF-8 here and becomes U+FFFD. */
static size_t ref_escape(const unsigned char *s, size_t n, char *out)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            o += (size_t)sprintf(out + o, "\\n");
        } else if (c == '\r') {
            o += (size_t)sprintf(out + o, "\\r");
        } else if (c == '\t') {
            o += (size_t)sprintf(out + o, "\\t");
        } else if (c == '\b') {
            o += (size_t)sprintf(out + o, "\\b");
        } else if (c == '\f') {
            o += (size_t)sprintf(out + o, "\\f");
        } else if (c < 0x20) {
            o += (size_t)sprintf(out + o, "\\u%04x", c);
        } else if (c == 0xC3 && i + 1 < n && s[i + 1] == 0xA9) {
            out[o++] = (char)0xC3;
            out[o++] = (char)0xA9;
            i++;
        } else if (c >= 0x80) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

TEST(buf_json_str_matches_a_byte_at_a_time_escaper)
{
    static const char *odd[] = {"\x01", "\x1f", "\"", "\\", "\n", "\x7f", " ", "\x80", "\xff",
                                "\xc3\xa9", "\xc3", "\0"};
    struct buf b = BUF_INIT;
    char in[64], want[512];
    for (size_t n = 0; n <= 40; n++) {
        for (size_t k = 0; k < sizeof odd / sizeof odd[0]; k++) {
            size_t ol = odd[k][0] ? strlen(odd[k]) : 1;    /* "\0": one NUL byte */
            for (size_t pos = 0; pos <= n; pos++) {
                /* n plain bytes with the odd one put in at pos (none
                 * when pos == n and the string is all plain) */
                size_t len = 0;
                for (size_t i = 0; i < n; i++) {
                    if (i == pos && pos < n) {
                        memcpy(in + len, odd[k], ol);
                        len += ol;
                    }
                    in[len++] = (char)('a' + (i % 26));
                }
                buf_reset(&b);
                REQUIRE(buf_json_str(&b, in, len) == 0);
                size_t wl = ref_escape((const unsigned char *)in, len, want);
                CHECK(b.len == wl && memcmp(b.p, want, wl) == 0);
                CHECK(b.p[b.len] == '\0');
            }
        }
    }
    /* appended after what the buffer holds, not over it */
    buf_reset(&b);
    REQUIRE(buf_append(&b, "x", 1) == 0 && buf_json_str(&b, "abc", 3) == 0 && buf_json_str(&b, "", 0) == 0);
    CHECK(strcmp(b.p, "x\"abc\"\"\"") == 0);
    buf_free(&b);
}

TEST(buf_json_u64_matches_printf)
{
    struct buf b = BUF_INIT;
    char want[32];
    uint64_t v = 1;
    for (int i = 0; i < 2000; i++) {
        uint64_t x = i < 200 ? (uint64_t)i : v;
        v = v * 6364136223846793005ull + 1442695040888963407ull;
        if (i % 7 == 0)
            x >>= (unsigned)(i % 64);
        buf_reset(&b);
        REQUIRE(buf_json_u64(&b, x) == 0);
        snprintf(want, sizeof want, "%llu", (unsigned long long)x);
        CHECK(strcmp(b.p, want) == 0);
    }
    /* every digit count's edges */
    for (uint64_t p = 1, k = 0; k < 20; k++, p *= 10) {
        uint64_t edge[3] = {p - 1, p, p + 1};
        for (int j = 0; j < 3; j++) {
            buf_reset(&b);
            REQUIRE(buf_json_u64(&b, edge[j]) == 0);
            snprintf(want, sizeof want, "%llu", (unsigned long long)edge[j]);
            CHECK(strcmp(b.p, want) == 0);
        }
        if (k == 19)
            break;
    }
    buf_reset(&b);
    CHECK(buf_json_u64(&b, UINT64_MAX) == 0 && strcmp(b.p, "18446744073709551615") == 0);
    buf_reset(&b);
    CHECK(buf_json_i64(&b, INT64_MIN) == 0 && strcmp(b.p, "-9223372036854775808") == 0);
    buf_free(&b);
}

TEST(buf_read_file_reads_whole_files_and_refuses_big_ones)
{
    char path[] = "/tmp/polaris-buf-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    static char big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    REQUIRE(write(fd, big, sizeof big) == (ssize_t)sizeof big);
    close(fd);
    struct buf b = BUF_INIT;
    char err[256];
    buf_puts(&b, "x");
    CHECK(buf_read_file(&b, path, sizeof big, err, sizeof err) == 0);
    CHECK(b.len == sizeof big + 1 && memcmp(b.p + 1, big, sizeof big) == 0 && b.p[b.len] == '\0');
    buf_reset(&b);
    CHECK(buf_read_file(&b, path, sizeof big - 1, err, sizeof err) < 0 && strstr(err, "larger than"));
    CHECK(b.len == 0);
    unlink(path);
    CHECK(buf_read_file(&b, path, 10, err, sizeof err) < 0 && strstr(err, "No such file"));
    buf_free(&b);
}
