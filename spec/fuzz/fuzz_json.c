/* fuzz_json.c - libFuzzer target for the JSON code every payload and every
 * SDK event goes through:
 *   - json_validate and json_object_members agree on what is an object;
 *   - the writer (buf_json_str, the SDK's and the daemon's) always produces
 *     a valid JSON string, and for ASCII input it decodes back exactly;
 *   - numbers json_to_u64 accepts print back to the same text;
 *   - a member's is_uint says whether its number is digits only;
 *   - json_valid_spans stays inside any bytes, and on a valid object finds
 *     what json_object_members finds (unless a key has an escape). */
#include "lib/buf.h"
#include "wire/json_scan.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *err;
    enum json_kind k = json_validate(s, size, &err);
    struct json_member m[16];
    int n = json_object_members(s, size, m, 16, &err);
    if ((k == JSON_OBJECT) != (n >= 0))
        abort();
    /* is_uint: a number made of digits only */
    for (int i = 0; i < n && i < 16; i++) {
        size_t d = 0;
        while (d < m[i].val_len && m[i].val[d] >= '0' && m[i].val[d] <= '9')
            d++;
        if (m[i].is_uint != (m[i].kind == JSON_NUMBER && d == m[i].val_len))
            abort();
    }
    struct json_span sp[16];
    uint64_t mask;
    bool compact;
    int v = json_valid_spans(s, size, sp, 16, &mask, &compact);
    if (v < -1 || v > 16)
        abort();
    for (int i = 0; i < v; i++)
        if (sp[i].key + sp[i].key_len > size || sp[i].val + sp[i].val_len > size)
            abort();
    bool escaped = false;
    for (int i = 0; i < n && i < 16; i++)
        escaped |= m[i].key_escaped;
    /* a valid object it takes: the same members (size: the text is the
     * object, nothing around it, as a member's value span is) */
    if (n > 0 && n <= 16 && !escaped && size > 0 && s[0] == '{' && s[size - 1] == '}') {
        bool long_key = false;
        for (int i = 0; i < n; i++)
            long_key |= m[i].key_len > 255;
        if (!long_key && v != n)
            abort();
        for (int i = 0; i < v; i++)
            if (s + sp[i].key != m[i].key || sp[i].key_len != m[i].key_len || s + sp[i].val != m[i].val ||
                sp[i].val_len != m[i].val_len || ((mask >> i) & 1) != m[i].is_uint)
                abort();
    }
    int a = json_array_elements(s, size, m, 16, &err);
    if ((k == JSON_ARRAY) != (a >= 0))
        abort();

    struct buf b = BUF_INIT;
    if (buf_json_str(&b, s, size) == 0) {
        if (json_validate(b.p, b.len, &err) != JSON_STRING)
            abort();
        bool ascii = true;
        for (size_t i = 0; i < size && ascii; i++)
            ascii = data[i] < 0x80;
        if (ascii) {
            char *back = malloc(size + 1);
            int len = back ? json_string_decode(b.p, b.len, back, size + 1) : -1;
            if (back && (len != (int)size || memcmp(back, s, size) != 0))
                abort();
            free(back);
        }
    }
    buf_free(&b);

    uint64_t u;
    if (json_to_u64(s, size, &u) == 0) {
        char t[32];
        int w = snprintf(t, sizeof t, "%" PRIu64, u);
        if ((size_t)w != size || memcmp(t, s, size) != 0)
            abort();
    }
    return 0;
}
