/* test_json_scan.c - the JSON validator and member scanner. */
#include "harness.h"
#include "wire/json_scan.h"

#include <string.h>
#include <stdint.h>
#include <stdlib.h>

static enum json_kind v(const char *s)
{
    const char *err;
    return json_validate(s, strlen(s), &err);
}

TEST(json_accepts_valid_texts)
{
    const char *ok[] = {"{}", "[]", "0", "-0", "1.5e10", "\"\"", "true", "false", "null",
                        " {\"a\" : [1, 2, {\"b\": null}], \"c\": \"\\u00e9\\n\"} ",
                        "\"\\ud83d\\ude00\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
                        "18446744073709551615", "[1e-5,2E+3]"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK(v(ok[i]) != JSON_INVALID);
}

TEST(json_rejects_invalid_texts)
{
    const char *bad[] = {"", "{", "{\"a\"}", "{\"a\":}", "{a:1}", "[1,]", "01", "1.", ".5",
                         "+1", "\"\\x\"", "\"\\ud800\"", "\"a\nb\"", "\"\xff\"",
                         "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "tru", "nul", "{} {}",
                         "{\"a\":1,}", "\"abc", "[1 2]", "NaN", "Infinity"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (v(bad[i]) != JSON_INVALID)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK(v(bad[i]) == JSON_INVALID);
    }
}

TEST(json_depth_limit)
{
    char deep[600];
    memset(deep, '[', 300);
    memset(deep + 300, ']', 300);
    const char *err;
    CHECK(json_validate(deep, 600, &err) == JSON_INVALID);
    CHECK(json_validate(deep + 300 - 100, 200, &err) == JSON_ARRAY);
}

TEST(json_members_and_escaped_keys)
{
    const char *s = "{\"eventId\": 18446744073709551615, \"p\\u0069d\": 5, \"params\": {\"x\": [1]}}";
    struct json_member m[8];
    const char *err;
    int n = json_object_members(s, strlen(s), m, 8, &err);
    REQUIRE(n == 3);
    const struct json_member *id = json_find(m, 3, "eventId");
    REQUIRE(id && id->kind == JSON_NUMBER);
    uint64_t u;
    CHECK(json_to_u64(id->val, id->val_len, &u) == 0 && u == UINT64_MAX);
    const struct json_member *pid = json_find(m, 3, "pid");
    REQUIRE(pid);
    CHECK(pid->val_len == 1 && pid->val[0] == '5');
    const struct json_member *params = json_find(m, 3, "params");
    REQUIRE(params && params->kind == JSON_OBJECT);
    CHECK(params->val_len == strlen("{\"x\": [1]}"));
}

TEST(json_integer_conversion_is_exact)
{
    uint64_t u;
    int64_t i;
    CHECK(json_to_u64("9007199254740993", 16, &u) == 0 && u == 9007199254740993ull);
    CHECK(json_to_u64("18446744073709551616", 20, &u) == -1);
    CHECK(json_to_u64("1.0", 3, &u) == -1);
    CHECK(json_to_u64("1e3", 3, &u) == -1);
    CHECK(json_to_u64("-1", 2, &u) == -1);
    CHECK(json_to_i64("-9223372036854775808", 20, &i) == 0 && i == INT64_MIN);
    CHECK(json_to_i64("9223372036854775808", 19, &i) == -1);
}

TEST(json_string_decode_handles_escapes)
{
    char out[32];
    const char *s = "\"a\\\"b\\u00e9\\ud83d\\ude00\"";
    int n = json_string_decode(s, strlen(s), out, sizeof out);
    CHECK(n == 9 && memcmp(out, "a\"b\xc3\xa9\xf0\x9f\x98\x80", 9) == 0);
    CHECK(json_string_decode(s, strlen(s), out, 4) == -1);
}

TEST(json_array_elements_lists_values)
{
    const char *s = " [1, \"two\", {\"a\": [3]}, [], null ] ";
    struct json_member m[8];
    const char *err;
    int n = json_array_elements(s, strlen(s), m, 8, &err);
    REQUIRE(n == 5);
    CHECK(m[0].kind == JSON_NUMBER && m[0].val_len == 1 && m[0].val[0] == '1');
    CHECK(m[1].kind == JSON_STRING && m[1].val_len == 5);
    CHECK(m[2].kind == JSON_OBJECT && strncmp(m[2].val, "{\"a\": [3]}", m[2].val_len) == 0);
    CHECK(m[3].kind == JSON_ARRAY && m[3].val_len == 2);
    CHECK(m[4].kind == JSON_NULL);
    CHECK(json_array_elements("[1,2,3]", 7, m, 2, &err) == 3);     /* counts past max */
    CHECK(json_array_elements("[]", 2, m, 8, &err) == 0);
    CHECK(json_array_elements("[1,]", 4, m, 8, &err) < 0);
    CHECK(json_array_elements("{}", 2, m, 8, &err) < 0);
    CHECK(json_array_elements("[1] x", 5, m, 8, &err) < 0);
}

/* The 8-bytes-at-a-time string scan must see a special byte wherever it
 * falls in a word. */
TEST(json_string_scan_sees_special_bytes_at_every_offset)
{
    for (int pos = 0; pos < 24; pos++) {
        char s[64];
        const char *err;
        /* a control character: invalid */
        int n = snprintf(s, sizeof s, "\"%.*s%c%s\"", pos, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1, "bbbbb");
        CHECK(json_validate(s, (size_t)n, &err) == JSON_INVALID);
        /* invalid UTF-8 */
        n = snprintf(s, sizeof s, "\"%.*s%c%s\"", pos, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0xff, "bbbbb");
        CHECK(json_validate(s, (size_t)n, &err) == JSON_INVALID);
        /* a bad escape */
        n = snprintf(s, sizeof s, "\"%.*s\\q%s\"", pos, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbb");
        CHECK(json_validate(s, (size_t)n, &err) == JSON_INVALID);
        /* an early quote: trailing characters */
        n = snprintf(s, sizeof s, "\"%.*s\"%s\"", pos, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbb");
        CHECK(json_validate(s, (size_t)n, &err) == JSON_INVALID);
        /* valid: an escaped quote and a 2-byte UTF-8 character */
        n = snprintf(s, sizeof s, "\"%.*s\\\"\xc3\xa9%s\"", pos, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbb");
        CHECK(json_validate(s, (size_t)n, &err) == JSON_STRING);
        /* valid: 0x7f (DEL) and ' ' are ordinary */
        n = snprintf(s, sizeof s, "\"%.*s%c %s\"", pos, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0x7f, "bbbbbbbbb");
        CHECK(json_validate(s, (size_t)n, &err) == JSON_STRING);
    }
}

/* Digit runs are skipped 8 at a time: a run of every length, ended by
 * every kind of byte, in every position of a word, must end where a byte
 * loop would end it, and is_uint must say whether the number is digits only. */
TEST(json_numbers_end_where_their_digits_end)
{
    const char enders[] = {',', '}', ' ', ':', '/', '.', 'e', 'E', 'a', '-', '"', 0x3a, 0x3f, 0x40, '\x7f',
                           (char)0xfa, (char)0xff, '\0'};
    for (int lead = 0; lead < 8; lead++)
        for (int digits = 1; digits <= 30; digits++)
            for (size_t e = 0; e < sizeof enders; e++) {
                char s[128];
                int n = snprintf(s, sizeof s, "{\"%.*s\":", lead, "kkkkkkkk");
                s[n++] = '1';
                for (int d = 1; d < digits; d++)
                    s[n++] = (char)('0' + d % 10);
                size_t num_end = (size_t)n;
                s[n++] = enders[e];
                memcpy(s + n, "5}", 3);
                n += 2;
                struct json_member m[4];
                const char *err;
                int c = json_object_members(s, (size_t)n, m, 4, &err);
                char end = enders[e];
                if (end == '}') {              /* {"k":123}5} */
                    CHECK(c < 0);
                } else if (end == ',' || end == ':' || end == '/' || end == 'a' || end == '-' ||
                           end == '"' || end == 0x3f || end == 0x40 || end == '\x7f' || end == (char)0xfa ||
                           end == (char)0xff || end == '\0') {
                    CHECK(c < 0);              /* nothing valid continues a number with these */
                } else if (end == ' ') {       /* {"k":123 5}: a second value */
                    CHECK(c < 0);
                } else {                       /* '.', 'e', 'E': 123.5 / 123e5 */
                    CHECK(c == 1);
                    if (c == 1) {
                        CHECK(m[0].kind == JSON_NUMBER);
                        CHECK(!m[0].is_uint);
                        CHECK(m[0].val_len == num_end - (size_t)(lead + 4) + 2);
                    }
                }
                /* and the plain integer: {"k":123...} */
                s[num_end] = '}';
                c = json_object_members(s, num_end + 1, m, 4, &err);
                CHECK(c == 1);
                if (c == 1) {
                    CHECK(m[0].is_uint);
                    CHECK(m[0].val_len == (size_t)digits);
                }
            }
    const char *err;
    struct json_member m[4];
    CHECK(json_object_members("{\"a\":-12345678901}", 18, m, 4, &err) == 1 && !m[0].is_uint);
    CHECK(json_object_members("{\"a\":0}", 7, m, 4, &err) == 1 && m[0].is_uint);
    CHECK(json_object_members("{\"a\":\"1\"}", 9, m, 4, &err) == 1 && !m[0].is_uint);
}

/* json_digits_only (8 bytes at a time, the last 8 overlapping) against a
 * byte-by-byte loop, on every length to 40 with a non-digit at each place
 * in turn and none at all. */
TEST(json_digits_only_agrees_with_a_byte_loop)
{
    char s[41];
    for (size_t n = 0; n <= 40; n++) {
        for (size_t bad = 0; bad <= n; bad++) {
            for (size_t i = 0; i < n; i++)
                s[i] = (char)('0' + (i * 7 + n) % 10);
            if (bad < n)
                s[bad] = (bad & 1) ? ':' : '/';      /* the digits' two neighbours */
            bool want = n > 0;
            for (size_t i = 0; i < n; i++)
                want = want && s[i] >= '0' && s[i] <= '9';
            CHECK(json_digits_only(s, n) == want);
        }
    }
}

/* ---- json_valid_spans against the validating scanner ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

static void put(char *s, size_t *at, const char *t)
{
    size_t l = strlen(t);
    memcpy(s + *at, t, l);
    *at += l;
}

/* Blanks, or none (most often; none at all in a compact round). */
static bool compact_round;
static void blanks(char *s, size_t *at)
{
    static const char *b[] = {"", "", "", "", " ", "\n", "\t ", "\r\n  "};
    put(s, at, compact_round ? "" : b[rnd(8)]);
}

static void string_value(char *s, size_t *at, bool keyish)
{
    static const char *parts[] = {"a", "thread", "x y", "\\\"", "\\\\", "\\n", "\\u00e9", "}", "]", "{",
                                  ",", ":", "\xc3\xa9", "7", "\\\\\\\""};
    put(s, at, "\"");
    unsigned n = rnd(5);
    for (unsigned i = 0; i < n; i++)
        put(s, at, parts[keyish ? rnd(3) : rnd(15)]);
    put(s, at, "\"");
}

static void value(char *s, size_t *at, int depth);

/* An array or an object of up to three random values (keys: any string). */
static void container(char *s, size_t *at, int depth, bool object)
{
    put(s, at, object ? "{" : "[");
    unsigned n = rnd(4);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            put(s, at, ",");
        blanks(s, at);
        if (object) {
            string_value(s, at, false);
            blanks(s, at);
            put(s, at, ":");
            blanks(s, at);
        }
        value(s, at, depth + 1);
        blanks(s, at);
    }
    put(s, at, object ? "}" : "]");
}

static void value(char *s, size_t *at, int depth)
{
    static const char *scalars[] = {"0", "7", "1234567890123", "-1", "1.5", "2e10", "true", "false", "null",
                                    "18446744073709551615"};
    switch (depth > 2 ? rnd(2) : rnd(4)) {
    case 0:
        put(s, at, scalars[rnd(10)]);
        break;
    case 1:
        string_value(s, at, false);
        break;
    default:
        container(s, at, depth, rnd(2) == 0);
    }
}

/* Random valid objects (blanks or none, keys with escapes or not, nested
 * values with quotes and brackets in their strings): json_valid_spans
 * finds what json_object_members finds, or refuses exactly the objects
 * with an escaped key; compact says whether a blank stands between the
 * object's own tokens. */
TEST(json_valid_spans_agrees_with_the_validating_scan)
{
    static char s[1 << 16];
    int compared = 0, escaped = 0, compact_seen = 0;
    for (int round = 0; round < 20000; round++) {
        size_t at = 0;
        bool any_blank = false;
        compact_round = rnd(3) == 0;
        put(s, &at, "{");
        unsigned n = 1 + rnd(9);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                put(s, &at, ",");
            blanks(s, &at);
            string_value(s, &at, rnd(4) != 0);       /* most keys plain */
            blanks(s, &at);
            put(s, &at, ":");
            blanks(s, &at);
            value(s, &at, 0);
        }
        blanks(s, &at);
        put(s, &at, "}");
        const char *err;
        REQUIRE(json_validate(s, at, &err) == JSON_OBJECT);
        /* a blank between the object's own tokens: outside strings and
         * outside its nested values (their blanks are their text) */
        int depth = 0;
        for (size_t i = 0; i < at; i++) {
            if (s[i] == '"') {
                for (i++; s[i] != '"'; i++)
                    i += s[i] == '\\';
            } else if (s[i] == '{' || s[i] == '[') {
                depth++;
            } else if (s[i] == '}' || s[i] == ']') {
                depth--;
            } else if (depth <= 1 && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) {
                any_blank = true;
            }
        }
        struct json_member m[16];
        struct json_span sp[16];
        int k = json_object_members(s, at, m, 16, &err);
        REQUIRE(k > 0);
        bool key_escaped = false;
        for (int i = 0; i < k && i < 16; i++)
            key_escaped |= m[i].key_escaped;
        uint64_t mask;
        bool compact;
        int v = json_valid_spans(s, at, sp, 16, &mask, &compact);
        if (key_escaped) {
            CHECK(v == -1);
            escaped++;
            continue;
        }
        REQUIRE(v == k);
        CHECK(compact == !any_blank);
        compact_seen += compact;
        for (int i = 0; i < k; i++) {
            CHECK(s + sp[i].key == m[i].key && sp[i].key_len == m[i].key_len);
            CHECK(s + sp[i].val == m[i].val && sp[i].val_len == m[i].val_len);
            CHECK(((mask >> i) & 1) == m[i].is_uint);
        }
        compared++;
    }
    /* the generator made each kind of case */
    CHECK(compared > 5000 && escaped > 1000 && compact_seen > 500);
}

/* What it does not take: not an object, more members than asked for, a
 * key over 255 bytes; and on bytes that are not JSON at all, every span
 * it gives lies inside them. */
TEST(json_valid_spans_refuses_and_stays_in_bounds)
{
    struct json_span sp[4];
    uint64_t mask;
    bool compact;
    CHECK(json_valid_spans("[1]", 3, sp, 4, &mask, &compact) == -1);
    CHECK(json_valid_spans("{}", 2, sp, 4, &mask, &compact) == 0);
    CHECK(json_valid_spans("{\"a\":1}x", 8, sp, 4, &mask, &compact) == -1);
    CHECK(json_valid_spans("{\"a\":1,\"b\":2}", 13, sp, 1, &mask, &compact) == -1);
    CHECK(json_valid_spans("{\"a\":1,\"b\":2}", 13, sp, 2, &mask, &compact) == 2 && compact && mask == 3);
    char big[300];
    size_t at = 0;
    big[at++] = '{';
    big[at++] = '"';
    memset(big + at, 'k', 256);
    at += 256;
    memcpy(big + at, "\":1}", 4);
    at += 4;
    CHECK(json_valid_spans(big, at, sp, 4, &mask, &compact) == -1);
    /* random bytes drawn from JSON's own punctuation, each a buffer of its
     * exact length (ASan sees a read past it) */
    static const char alphabet[] = "{}[]\":,\\ a1";
    for (int round = 0; round < 200000; round++) {
        size_t n = 1 + rnd(24);
        char *t = malloc(n);
        REQUIRE(t);
        for (size_t i = 0; i < n; i++)
            t[i] = alphabet[rnd(sizeof alphabet - 1)];
        if (rnd(2)) {
            t[0] = '{';
            t[n - 1] = '}';
        }
        int k = json_valid_spans(t, n, sp, 4, &mask, &compact);
        CHECK(k >= -1 && k <= 4);
        for (int i = 0; i < k; i++)
            CHECK(sp[i].key + sp[i].key_len <= n && sp[i].val + sp[i].val_len <= n);
        free(t);
    }
}
