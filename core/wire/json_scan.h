/* json_scan.h - validate JSON text and find the members of its top-level
 * object without building a tree. */
#ifndef POLARIS_JSON_SCAN_H
#define POLARIS_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

#define JSON_MAX_DEPTH 128

enum json_kind {
    JSON_INVALID = 0, JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_NUMBER,
    JSON_TRUE, JSON_FALSE, JSON_NULL
};

struct json_member {
    const char *key;       /* raw key bytes between the quotes, escapes intact */
    size_t key_len;
    const char *val;       /* the value's text as it appears in the input */
    size_t val_len;
    enum json_kind kind;
    bool key_escaped;      /* the key holds a backslash escape */
    bool is_uint;          /* a number written as digits only (no sign, fraction, exponent) */
};

/* Validates all of s[0..n) as one JSON text (RFC 8259, strict UTF-8,
 * depth <= JSON_MAX_DEPTH). Returns its kind, or JSON_INVALID with *err set
 * to a static message. */
enum json_kind json_validate(const char *s, size_t n, const char **err);

/* Validates s as a JSON object and stores up to max members in m. Returns
 * the number of members (which may exceed max: the rest are not stored), or
 * -1 with *err set. */
int json_object_members(const char *s, size_t n, struct json_member *m,
                        size_t max, const char **err);

/* The same for an array: the elements' values (val, val_len, kind; no key). */
int json_array_elements(const char *s, size_t n, struct json_member *m, size_t max,
                        const char **err);

/* Where a member of a JSON text is: its key (between the quotes) and its
 * value, as offsets into the text. */
struct json_span {
    uint32_t key, key_len, val, val_len;
};

/* The members of the object s[0..n) as the index its writer made notes
 * (lib/json_index.h), each checked against the text: the key's quotes,
 * the colon right after it, the comma or closing brace right after its
 * value. Returns the count, as json_object_members would find them, or -1
 * when the index is empty or does not fit the text (scan it then). It does
 * not validate the values: the text must be the valid JSON its writer
 * made (the daemon's own, from validated parts). */
struct json_index;
int json_index_members(const struct json_index *ix, const char *s, size_t n, struct json_member *m,
                       size_t max);

/* The same as spans (the form a lazy table keeps), up to max. */
int json_index_spans(const struct json_index *ix, const char *s, size_t n, struct json_span *sp,
                     size_t max);

/* The members of the object s[0..n) as spans, up to max, found without
 * validating it: for text already known valid (a member of an object a
 * checked scan or the daemon's own writer produced), where scanning it
 * again to validate it was most of the cost of reading a nested object
 * (docs/performance.md, session 16). *uint_mask gets bit i for a value
 * written as digits only, *compact whether no blank stands between its
 * own tokens ("k":v,"k":v, as an index's text; a value's blanks are its
 * own text). Returns the count, or
 * -1 for an object it does not take (more than max members, a key with
 * an escape or over 255 bytes) or text that is not an object's. On any
 * bytes at all it reads nothing outside s[0..n), and every span lies in
 * it; on text that is not valid JSON the spans are whatever it found, so
 * a caller that is not sure must validate a value before it decodes it. */
int json_valid_spans(const char *s, size_t n, struct json_span *sp, size_t max, uint64_t *uint_mask,
                     bool *compact);

/* The kind of the JSON value whose text starts with c (valid text: the
 * first byte decides). */
static inline enum json_kind json_kind_of(char c)
{
    switch (c) {
    case '{': return JSON_OBJECT;
    case '[': return JSON_ARRAY;
    case '"': return JSON_STRING;
    case 't': return JSON_TRUE;
    case 'f': return JSON_FALSE;
    case 'n': return JSON_NULL;
    default: return JSON_NUMBER;
    }
}

/* Whether the 8 bytes at p are all ASCII digits: each has high nibble 3,
 * and still has it after adding 6 (0x3a..0x3f become 0x40..0x45). A carry
 * out of a byte needs 0xfa or more, which the first test already failed. */
static inline bool json_eight_digits(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    const uint64_t hi_nibbles = 0xF0F0F0F0F0F0F0F0ull, threes = 0x3030303030303030ull;
    return (x & hi_nibbles) == threes && ((x + 0x0606060606060606ull) & hi_nibbles) == threes;
}

/* Whether v[0..n) is one or more ASCII digits and nothing else (a number
 * token json_member calls is_uint): in line, it is asked of every number
 * an event's members are noted with. */
static inline bool json_digits_only(const char *v, size_t n)
{
    if (n < 8) {
        size_t j = 0;
        while (j < n && (unsigned char)(v[j] - '0') < 10)
            j++;
        return j == n && n > 0;
    }
    /* 8 at a time, the last 8 overlapping the ones before */
    size_t j = 0;
    while (j + 8 <= n && json_eight_digits(v + j))
        j += 8;
    return j == n || (j + 8 > n && json_eight_digits(v + n - 8));
}

/* Compares a member's key, decoding escapes first. */
bool json_key_is(const struct json_member *m, const char *key);
/* Finds a member by key (keys with escapes are decoded before comparing). */
const struct json_member *json_find(const struct json_member *m, size_t count,
                                    const char *key);

/* Exact integer parsing of a JSON number token; fails (-1) for fractions,
 * exponents, signs where not allowed, and overflow. */
int json_to_u64(const char *tok, size_t n, uint64_t *out);
int json_to_i64(const char *tok, size_t n, int64_t *out);

/* Decodes a JSON string value (with its quotes) into out (NUL-terminated).
 * Returns the decoded length, or -1 if it does not fit or is not a string. */
int json_string_decode(const char *tok, size_t n, char *out, size_t outcap);

#endif
