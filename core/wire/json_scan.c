/* json_scan.c - a strict, non-allocating JSON validator and top-level member
 * scanner.
 *
 * The daemon never needs a JSON tree: it checks that a payload is valid,
 * reads a handful of top-level fields (eventId, pid, action, ...) and splices
 * the original bytes through. Parsing into a tree (json-c, jansson) would
 * cost an allocation per value and pass 64-bit integers through types that
 * cannot hold every u64, which DESIGN 3.1 forbids. Tested against lua-cjson
 * and dkjson in spec/unit. */
#include "wire/json_scan.h"
#include "lib/json_index.h"
#include "lib/json_plain.h"

#include <string.h>

struct scanner {
    const char *s;
    size_t n, i;
    const char *err;
    bool escaped;                 /* the last string scanned had a backslash */
    bool uint;                    /* the last number scanned was digits only */
};

/* Called between every two tokens; events rarely have any whitespace, so
 * the first test decides (and inlining it matters: ~10% of a scan). */
static inline __attribute__((always_inline)) void skip_ws(struct scanner *sc)
{
    if (sc->i < sc->n && (unsigned char)sc->s[sc->i] > ' ')
        return;
    while (sc->i < sc->n) {
        char c = sc->s[sc->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        sc->i++;
    }
}

static int fail(struct scanner *sc, const char *msg)
{
    if (!sc->err)
        sc->err = msg;
    return -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(const char *p, uint32_t *cp)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(p[k]);
        if (h < 0)
            return -1;
        v = (v << 4) | (uint32_t)h;
    }
    *cp = v;
    return 0;
}

/* Strings are most of an event's bytes: json_plain_run skips 16 at a time
 * while none needs a look. scan_string_from goes on from i (inside the
 * string) through escapes and multi-byte UTF-8; scan_string, inlined where
 * a string starts, ends a plain string itself and calls it for anything
 * else. */
static int __attribute__((noinline)) scan_string_from(struct scanner *sc, size_t i)
{
    const unsigned char *u = (const unsigned char *)sc->s;
    size_t n = sc->n;
    for (;;) {
        i = json_plain_run(u, i, n);
        if (i >= n)
            break;
        unsigned char c = u[i];
        if (c == '"') {
            sc->i = i + 1;
            return 0;
        }
        sc->i = i;                               /* where a failure is reported */
        if (c < 0x20)
            return fail(sc, "control character in string");
        if (c == '\\') {
            sc->escaped = true;
            if (i + 1 >= n)
                return fail(sc, "unterminated string");
            char e = sc->s[i + 1];
            if (e == 'u') {
                uint32_t cp;
                if (i + 6 > n || read_hex4(sc->s + i + 2, &cp) < 0)
                    return fail(sc, "bad \\u escape");
                i += 6;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (i + 6 > n || sc->s[i] != '\\' || sc->s[i + 1] != 'u' ||
                        read_hex4(sc->s + i + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return fail(sc, "unpaired surrogate in \\u escape");
                    i += 6;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return fail(sc, "unpaired surrogate in \\u escape");
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0')
                return fail(sc, "bad escape in string");
            i += 2;
            continue;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        /* strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF */
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return fail(sc, "invalid UTF-8 in string");
        if (i + len > n)
            return fail(sc, "invalid UTF-8 in string");
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80)
                return fail(sc, "invalid UTF-8 in string");
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return fail(sc, "invalid UTF-8 in string");
        i += len;
    }
    sc->i = i;
    return fail(sc, "unterminated string");
}

static inline __attribute__((always_inline)) int scan_string(struct scanner *sc)
{
    const unsigned char *u = (const unsigned char *)sc->s;
    size_t i = json_plain_run(u, sc->i + 1, sc->n); /* from past the opening quote */
    sc->escaped = false;
    if (i < sc->n && u[i] == '"') {
        sc->i = i + 1;
        return 0;
    }
    return scan_string_from(sc, i);
}

static int scan_number(struct scanner *sc)
{
    size_t i = sc->i;
    const char *s = sc->s;
    bool neg = i < sc->n && s[i] == '-';
    i += neg;
    if (i >= sc->n)
        return fail(sc, "bad number");
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        i++;
        /* timestamps and ids are long runs of digits: 8 at a time */
        while (i + 8 <= sc->n && json_eight_digits(s + i))
            i += 8;
        while (i < sc->n && (unsigned char)(s[i] - '0') < 10)
            i++;
    } else {
        return fail(sc, "bad number");
    }
    sc->uint = !neg;
    if (i < sc->n && s[i] == '.') {
        sc->uint = false;
        i++;
        if (i >= sc->n || s[i] < '0' || s[i] > '9')
            return fail(sc, "bad number");
        while (i < sc->n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < sc->n && (s[i] == 'e' || s[i] == 'E')) {
        sc->uint = false;
        i++;
        if (i < sc->n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= sc->n || s[i] < '0' || s[i] > '9')
            return fail(sc, "bad number");
        while (i < sc->n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    sc->i = i;
    return 0;
}

static int scan_literal(struct scanner *sc, const char *lit)
{
    size_t l = strlen(lit);
    if (sc->n - sc->i < l || memcmp(sc->s + sc->i, lit, l) != 0)
        return fail(sc, "unexpected character");
    sc->i += l;
    return 0;
}

static enum json_kind scan_value(struct scanner *sc, int depth);
static enum json_kind scan_value_here(struct scanner *sc, int depth);
static int scan_array_body(struct scanner *sc, int depth, struct json_member *m, size_t max,
                           size_t *count);

/* The string whose opening quote is at i: the index just past its closing
 * quote, or 0 (never a string's end) with the failure noted in sc. A plain
 * string ends here; escapes and non-ASCII go to scan_string_from. */
static inline __attribute__((always_inline)) size_t string_end(struct scanner *sc, const unsigned char *u,
                                                               size_t n, size_t i, bool *escaped)
{
    size_t j = json_plain_run(u, i + 1, n);
    if (j < n && u[j] == '"') {
        *escaped = false;
        return j + 1;
    }
    sc->escaped = false;
    if (scan_string_from(sc, j) < 0)
        return 0;
    *escaped = sc->escaped;
    return sc->i;
}

/* Whitespace from i on skipped: i of the next token. */
static inline __attribute__((always_inline)) size_t ws_from(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* The object's members, with the scanner's position held in locals (a
 * store into m[] could alias sc->i, which would otherwise be reloaded after
 * every one) and the two kinds of value an event is made of, strings and
 * plain integers, scanned in line; anything else goes to scan_value_here.
 * Compact JSON (no whitespace between tokens) is the common case: each
 * expected character is looked at first, whitespace skipped only when it
 * is not there. */
static int scan_object_body(struct scanner *sc, int depth, struct json_member *m,
                            size_t max, size_t *count)
{
    const char *s = sc->s;
    const unsigned char *u = (const unsigned char *)s;
    const size_t n = sc->n;
    size_t i = ws_from(s, n, sc->i + 1);         /* past '{' */
    size_t c = 0;
    if (i < n && s[i] == '}') {
        sc->i = i + 1;
        *count = 0;
        return 0;
    }
    for (;;) {
        if (i >= n || s[i] != '"') {
            i = ws_from(s, n, i);
            if (i >= n || s[i] != '"') {
                sc->i = i;
                return fail(sc, "expected a string key");
            }
        }
        size_t kstart = i;
        bool key_escaped;
        if (!(i = string_end(sc, u, n, i, &key_escaped)))
            return -1;
        size_t kend = i;
        if (i >= n || s[i] != ':') {
            i = ws_from(s, n, i);
            if (i >= n || s[i] != ':') {
                sc->i = i;
                return fail(sc, "expected ':' after key");
            }
        }
        i = ws_from(s, n, i + 1);
        size_t vstart = i;
        enum json_kind k;
        bool is_uint = false;
        if (i < n && s[i] == '"') {
            bool escaped;
            if (!(i = string_end(sc, u, n, i, &escaped)))
                return -1;
            k = JSON_STRING;
        } else if (i < n && (unsigned char)(s[i] - '1') < 9) {
            /* an integer from 1 up: its digits, 8 at a time while they last */
            size_t j = i + 1;
            while (j + 8 <= n && json_eight_digits(s + j))
                j += 8;
            while (j < n && (unsigned char)(s[j] - '0') < 10)
                j++;
            if (j < n && (s[j] == '.' || s[j] == 'e' || s[j] == 'E')) {
                sc->i = i;                        /* a fraction or exponent follows */
                if (scan_number(sc) < 0)
                    return -1;
                i = sc->i;
            } else {
                i = j;
                is_uint = true;
            }
            k = JSON_NUMBER;
        } else {
            sc->i = i;
            k = scan_value_here(sc, depth + 1);
            if (k == JSON_INVALID)
                return -1;
            i = sc->i;
            is_uint = k == JSON_NUMBER && sc->uint;
        }
        if (m && c < max) {
            m[c].key = s + kstart + 1;
            m[c].key_len = kend - kstart - 2;
            m[c].val = s + vstart;
            m[c].val_len = i - vstart;
            m[c].kind = k;
            m[c].key_escaped = key_escaped;
            m[c].is_uint = is_uint;
        }
        c++;
        if (i < n && s[i] == ',') {
            i++;
            continue;
        }
        i = ws_from(s, n, i);
        if (i >= n) {
            sc->i = i;
            return fail(sc, "unterminated object");
        }
        if (s[i] == ',') {
            i++;
            continue;
        }
        if (s[i] == '}') {
            sc->i = i + 1;
            *count = c;
            return 0;
        }
        sc->i = i;
        return fail(sc, "expected ',' or '}' in object");
    }
}

/* Scans an array; records up to max elements' values in m (keys unset). */
static int scan_array_body(struct scanner *sc, int depth, struct json_member *m, size_t max,
                           size_t *count)
{
    sc->i++;                                     /* '[' */
    skip_ws(sc);
    if (sc->i < sc->n && sc->s[sc->i] == ']') {
        sc->i++;
        return 0;
    }
    for (;;) {
        skip_ws(sc);
        size_t start = sc->i;
        enum json_kind k = scan_value(sc, depth + 1);
        if (k == JSON_INVALID)
            return -1;
        if (m && *count < max)
            m[*count] = (struct json_member){NULL, 0, sc->s + start, sc->i - start, k, false,
                                             k == JSON_NUMBER && sc->uint};
        (*count)++;
        skip_ws(sc);
        if (sc->i >= sc->n)
            return fail(sc, "unterminated array");
        if (sc->s[sc->i] == ',') {
            sc->i++;
            continue;
        }
        if (sc->s[sc->i] == ']') {
            sc->i++;
            return 0;
        }
        return fail(sc, "expected ',' or ']' in array");
    }
}

static enum json_kind scan_value(struct scanner *sc, int depth)
{
    skip_ws(sc);
    return scan_value_here(sc, depth);
}

/* A value starting at sc->i (whitespace already skipped). */
static enum json_kind scan_value_here(struct scanner *sc, int depth)
{
    if (depth > JSON_MAX_DEPTH) {
        fail(sc, "nested too deeply");
        return JSON_INVALID;
    }
    if (sc->i >= sc->n) {
        fail(sc, "unexpected end of input");
        return JSON_INVALID;
    }
    char c = sc->s[sc->i];
    size_t dummy;
    switch (c) {
    case '{': return scan_object_body(sc, depth, NULL, 0, &dummy) < 0 ? JSON_INVALID : JSON_OBJECT;
    case '[': return scan_array_body(sc, depth, NULL, 0, &dummy) < 0 ? JSON_INVALID : JSON_ARRAY;
    case '"': return scan_string(sc) < 0 ? JSON_INVALID : JSON_STRING;
    case 't': return scan_literal(sc, "true") < 0 ? JSON_INVALID : JSON_TRUE;
    case 'f': return scan_literal(sc, "false") < 0 ? JSON_INVALID : JSON_FALSE;
    case 'n': return scan_literal(sc, "null") < 0 ? JSON_INVALID : JSON_NULL;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return scan_number(sc) < 0 ? JSON_INVALID : JSON_NUMBER;
        fail(sc, "unexpected character");
        return JSON_INVALID;
    }
}

enum json_kind json_validate(const char *s, size_t n, const char **err)
{
    struct scanner sc = {s, n, 0, NULL, false, false};
    enum json_kind k = scan_value(&sc, 0);
    if (k != JSON_INVALID) {
        skip_ws(&sc);
        if (sc.i != n) {
            fail(&sc, "trailing characters after JSON value");
            k = JSON_INVALID;
        }
    }
    if (err)
        *err = sc.err;
    return k;
}

/* The members of a top-level object, or the elements of a top-level array. */
static int top_level(const char *s, size_t n, struct json_member *m, size_t max,
                     const char **err, bool array)
{
    struct scanner sc = {s, n, 0, NULL, false, false};
    size_t count = 0;
    skip_ws(&sc);
    if (sc.i >= n || s[sc.i] != (array ? '[' : '{')) {
        if (err)
            *err = array ? "not a JSON array" : "not a JSON object";
        return -1;
    }
    int rc = array ? scan_array_body(&sc, 0, m, max, &count)
                   : scan_object_body(&sc, 0, m, max, &count);
    if (rc < 0) {
        if (err)
            *err = sc.err;
        return -1;
    }
    skip_ws(&sc);
    if (sc.i != n) {
        if (err)
            *err = "trailing characters after JSON value";
        return -1;
    }
    return (int)count;
}

int json_object_members(const char *s, size_t n, struct json_member *m,
                        size_t max, const char **err)
{
    return top_level(s, n, m, max, err, false);
}

int json_array_elements(const char *s, size_t n, struct json_member *m, size_t max,
                        const char **err)
{
    return top_level(s, n, m, max, err, true);
}

int json_index_spans(const struct json_index *ix, const char *s, size_t n, struct json_span *sp,
                     size_t max)
{
    int k = ix->n;
    if (k == 0 || k > JSON_INDEX_MAX || (size_t)k > max || ix->len != n || n < 2 || s[0] != '{' ||
        s[n - 1] != '}' || ix->key_at[0] != 1)
        return -1;
    size_t at = 1;                               /* member i's key's opening quote */
    for (int i = 0; i < k; i++) {
        size_t q = at + 1 + ix->key_len[i];      /* the key's closing quote */
        /* where the value ends: the comma before the next key, or the close */
        size_t next = i + 1 < k ? ix->key_at[i + 1] : n, end = next - 1;
        /* "key": and at least one byte of value before the end */
        if (q + 2 >= end || end >= n || s[at] != '"' || s[q] != '"' || s[q + 1] != ':' ||
            (i + 1 < k && s[end] != ','))
            return -1;
        sp[i].key = (uint32_t)(at + 1);
        sp[i].key_len = ix->key_len[i];
        sp[i].val = (uint32_t)(q + 2);
        sp[i].val_len = (uint32_t)(end - (q + 2));
        at = next;
    }
    return k;
}

static inline bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Past the blanks from i (and notes that there were some). */
static inline size_t skip_blanks(const char *s, size_t n, size_t i, bool *compact)
{
    size_t j = i;
    while (j < n && blank(s[j]))
        j++;
    if (j != i)
        *compact = false;
    return j;
}

/* Past the string whose opening quote is at i, or n when it has no end. */
static size_t past_string(const char *s, size_t n, size_t i)
{
    for (size_t j = i + 1; j < n;) {
        const char *q = memchr(s + j, '"', n - j);
        if (!q)
            return n;
        size_t at = (size_t)(q - s), bs = 0;
        while (at - bs > i + 1 && s[at - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0)
            return at + 1;
        j = at + 1;                                /* an escaped quote */
    }
    return n;
}

/* The bytes a key's scan stops at, and a scalar's: json_valid_spans
 * checks first that the text ends with '}', a stop for both, so neither
 * loop needs a bound of its own. */
static const bool key_stop[256] = {['"'] = true, ['\\'] = true, ['}'] = true};
static const bool scalar_stop[256] = {[','] = true, ['}'] = true, [']'] = true, [' '] = true,
                                      ['\t'] = true, ['\n'] = true, ['\r'] = true};

/* Past the value that starts at i < n (valid text: a string, a container
 * matched by counting brackets outside strings, or a scalar up to the
 * next delimiter), s[n - 1] being '}'. */
static size_t past_value(const char *s, size_t n, size_t i)
{
    if (s[i] == '"')
        return past_string(s, n, i);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        for (size_t j = i; j < n; j++) {
            char c = s[j];
            if (c == '"') {
                j = past_string(s, n, j) - 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                return j + 1;
            }
        }
        return n;
    }
    size_t j = i;
    while (!scalar_stop[(unsigned char)s[j]])
        j++;
    return j;
}

int json_valid_spans(const char *s, size_t n, struct json_span *sp, size_t max, uint64_t *uint_mask,
                     bool *compact)
{
    *uint_mask = 0;
    *compact = true;
    if (n < 2 || n >= UINT32_MAX || s[n - 1] != '}')
        return -1;
    size_t i = skip_blanks(s, n, 0, compact);
    if (s[i] != '{')
        return -1;
    i = skip_blanks(s, n, i + 1, compact);
    if (s[i] == '}')
        return i == n - 1 ? 0 : -1;
    size_t k = 0;
    for (;;) {
        if (k >= max || k >= 64 || s[i] != '"')
            return -1;
        size_t key = i + 1, q = key;
        while (!key_stop[(unsigned char)s[q]] || (s[q] == '}' && q < n - 1))
            q++;
        if (s[q] != '"' || q - key > 255)
            return -1;                             /* escaped, too long, or no end */
        i = q + 1;
        if (s[i] != ':') {
            i = skip_blanks(s, n, i, compact);
            if (i >= n || s[i] != ':')
                return -1;
        }
        i++;
        if (blank(s[i]))
            i = skip_blanks(s, n, i, compact);
        if (i >= n - 1)
            return -1;
        size_t end = past_value(s, n, i);
        if (end == i)
            return -1;
        sp[k] = (struct json_span){(uint32_t)key, (uint32_t)(q - key), (uint32_t)i, (uint32_t)(end - i)};
        if ((unsigned char)(s[i] - '0') < 10 && json_digits_only(s + i, end - i))
            *uint_mask |= UINT64_C(1) << k;
        k++;
        i = end;
        if (i < n && blank(s[i]))
            i = skip_blanks(s, n, i, compact);
        if (i >= n)
            return -1;
        if (s[i] == ',') {
            i++;
            if (blank(s[i]))
                i = skip_blanks(s, n, i, compact);
            continue;
        }
        return s[i] == '}' && i == n - 1 ? (int)k : -1;
    }
}

int json_index_members(const struct json_index *ix, const char *s, size_t n, struct json_member *m,
                       size_t max)
{
    struct json_span sp[JSON_INDEX_MAX];
    int k = json_index_spans(ix, s, n, sp, max < JSON_INDEX_MAX ? max : JSON_INDEX_MAX);
    for (int i = 0; i < k; i++) {
        const char *v = s + sp[i].val;
        enum json_kind kind = json_kind_of(v[0]);
        m[i] = (struct json_member){s + sp[i].key, sp[i].key_len, v, sp[i].val_len, kind, false,
                                    kind == JSON_NUMBER && (ix->uint_mask >> i & 1)};
    }
    return k;
}

bool json_key_is(const struct json_member *m, const char *key)
{
    size_t kl = strlen(key);
    if (!m->key_escaped)
        return m->key_len == kl && memcmp(m->key, key, kl) == 0;
    /* an escaped key ("p\u0069d") must match like its plain spelling, or
     * it could smuggle a second value past the checks */
    char tmp[128];
    int l = json_string_decode(m->key - 1, m->key_len + 2, tmp, sizeof tmp);
    return l == (int)kl && memcmp(tmp, key, kl) == 0;
}

const struct json_member *json_find(const struct json_member *m, size_t count,
                                    const char *key)
{
    const struct json_member *found = NULL;
    for (size_t i = 0; i < count; i++)
        if (json_key_is(&m[i], key))
            found = &m[i];                       /* last duplicate wins, as in cjson */
    return found;
}

int json_to_u64(const char *tok, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return -1;
    if (n > 1 && tok[0] == '0')
        return -1;
    /* 19 digits cannot overflow (10^19 - 1 < 2^64); only a 20th can, and
     * only that one is checked (a division per digit was most of the cost
     * of reading an event's numbers) */
    uint64_t v = 0;
    size_t fast = n < 19 ? n : 19;
    for (size_t i = 0; i < fast; i++) {
        unsigned d = (unsigned char)tok[i] - (unsigned)'0';
        if (d > 9)
            return -1;
        v = v * 10 + d;
    }
    if (n == 20) {
        unsigned d = (unsigned char)tok[19] - (unsigned)'0';
        if (d > 9 || __builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, d, &v))
            return -1;
    }
    *out = v;
    return 0;
}

int json_to_i64(const char *tok, size_t n, int64_t *out)
{
    bool neg = n > 0 && tok[0] == '-';
    uint64_t u;
    if (json_to_u64(tok + neg, n - neg, &u) < 0)
        return -1;
    if (neg) {
        if (u > (uint64_t)INT64_MAX + 1)
            return -1;
        *out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX)
            return -1;
        *out = (int64_t)u;
    }
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int json_string_decode(const char *tok, size_t n, char *out, size_t outcap)
{
    if (n < 2 || tok[0] != '"' || tok[n - 1] != '"' || outcap == 0)
        return -1;
    size_t o = 0;
    for (size_t i = 1; i < n - 1; i++) {
        char c = tok[i];
        char tmp[4];
        size_t l = 1;
        tmp[0] = c;
        if (c == '\\') {
            char e = tok[++i];
            switch (e) {
            case 'n': tmp[0] = '\n'; break;
            case 't': tmp[0] = '\t'; break;
            case 'r': tmp[0] = '\r'; break;
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'u': {
                uint32_t cp, lo;
                if (i + 4 >= n || read_hex4(tok + i + 1, &cp) < 0)
                    return -1;
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < n && tok[i + 1] == '\\' &&
                    read_hex4(tok + i + 3, &lo) == 0) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
                l = put_utf8(tmp, cp);
                break;
            }
            default: tmp[0] = e; break;
            }
        }
        if (o + l >= outcap)
            return -1;
        memcpy(out + o, tmp, l);
        o += l;
    }
    out[o] = '\0';
    return (int)o;
}
