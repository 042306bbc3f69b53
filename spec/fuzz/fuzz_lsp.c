/* fuzz_lsp.c - libFuzzer target: bytes from a local app, as ingress sees
 * them. The first byte picks the read size, so frames split at every
 * boundary; every frame goes where the daemon would send it (event
 * stamping, command parsing). Invariants: a frame never exceeds the limit,
 * stamped events are valid JSON objects carrying the exact eventId, and
 * their index (lib/json_index.h), when they have one, gives the members
 * the scanner finds, field for field. */
#include "wire/event_json.h"
#include "wire/command_msg.h"
#include "wire/json_scan.h"
#include "wire/lsp_codec.h"
#include "lib/json_index.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % 64 + 1;
    data++, size--;
    struct lsp_decoder d;
    lsp_decoder_init(&d, 1u << 16);
    struct buf out = BUF_INIT;
    for (size_t off = 0; off < size && d.error == 0;) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (lsp_decoder_feed(&d, data + off, n) < 0)
            break;
        off += n;
        struct lsp_frame f;
        int st;
        while ((st = lsp_decoder_next(&d, &f)) != LSP_NEED_MORE && st >= 0) {
            if (st != LSP_FRAME)
                continue;
            if (f.len + LSP_HEADER_LEN > (1u << 16))
                abort();
            if (f.type == LSP_EVENT_REPORT) {
                uint64_t id;
                const char *err;
                buf_reset(&out);
                struct json_index ix;
                if (event_stamp((const char *)f.payload, f.len, 42, 1000, &out, &id, &(struct event_index_ask){&ix, NULL, NULL}, &err) == 0) {
                    struct json_member m[64], im[64];
                    int k = json_object_members(out.p, out.len, m, 64, &err);
                    const struct json_member *e = k > 0 ? json_find(m, k > 64 ? 64 : (size_t)k, "eventId") : NULL;
                    uint64_t again;
                    if (!e || json_to_u64(e->val, e->val_len, &again) < 0 || again != id)
                        abort();
                    if (ix.n) {
                        if (json_index_members(&ix, out.p, out.len, im, 64) != k)
                            abort();
                        for (int i = 0; i < k; i++)
                            if (im[i].key != m[i].key || im[i].key_len != m[i].key_len ||
                                im[i].val != m[i].val || im[i].val_len != m[i].val_len ||
                                im[i].kind != m[i].kind || im[i].key_escaped != m[i].key_escaped ||
                                im[i].is_uint != m[i].is_uint)
                                abort();
                        /* the identity the stamp noted is all the scan finds */
                        struct json_span spans[8];
                        const struct json_member *idm;
                        int ni = event_identity_spans(out.p, m, k, spans, 8, &idm);
                        if (ni != ix.ident_n || idm != &m[0])
                            abort();
                        for (int i = 0; i < ni; i++)
                            if (spans[i].key != (uint32_t)(m[ix.ident_at + i].key - out.p))
                                abort();
                    } else if (k <= JSON_INDEX_MAX && out.len <= UINT16_MAX) {
                        bool escaped = false;         /* the one other reason for none */
                        for (int i = 0; i < k; i++)
                            escaped |= m[i].key_escaped;
                        if (!escaped)
                            abort();
                    }
                }
            } else if (f.type == LSP_CMD_REQ) {
                struct cmd_request r;
                const char *err;
                cmd_request_parse((const char *)f.payload, f.len, 1, &r, &err);
            }
        }
        if (st < 0)
            break;
    }
    buf_free(&out);
    lsp_decoder_free(&d);
    return 0;
}
