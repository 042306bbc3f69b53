/* plugin_host_proto.c - framing for the plugin host channel (see plugin_host_proto.h).
 * Fixed little-endian fields, written and read one by one, so the layout
 * never depends on a compiler's struct padding and every read is bounded.
 *
 * Uses: buf, envelope. */
#include "wire/plugin_host_proto.h"

#include <string.h>

int plugin_host_put_u8(struct buf *b, uint8_t v)
{
    return buf_putc(b, (char)v);
}

int plugin_host_put_u32(struct buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return buf_append(b, x, 4);
}

int plugin_host_put_u64(struct buf *b, uint64_t v)
{
    return plugin_host_put_u32(b, (uint32_t)v) | plugin_host_put_u32(b, (uint32_t)(v >> 32));
}

int plugin_host_frame_begin(struct buf *out, uint8_t kind, uint32_t id, size_t *at)
{
    *at = out->len;
    return plugin_host_put_u32(out, 0) | plugin_host_put_u8(out, kind) | plugin_host_put_u32(out, id);
}

int plugin_host_frame_end(struct buf *out, size_t at)
{
    size_t n = out->len - at - 4;
    if (n + 4 > HOST_FRAME_MAX) {
        out->len = at;                     /* never send what the peer must refuse */
        return -1;
    }
    unsigned char x[4] = {(unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 24)};
    memcpy(out->p + at, x, 4);
    return 0;
}

int plugin_host_frame_simple(struct buf *out, uint8_t kind, uint32_t id, const void *body, size_t len)
{
    size_t at;
    if (plugin_host_frame_begin(out, kind, id, &at) < 0 || buf_append(out, body, len) < 0) {
        out->len = at;
        return -1;
    }
    return plugin_host_frame_end(out, at);
}

/* An envelope crosses with the common fields and its kind's (the kinds
 * share memory: only the one its type names means anything). */
int plugin_host_put_env(struct buf *out, uint32_t id, const struct envelope *e)
{
    size_t at;
    int rc = plugin_host_frame_begin(out, HK_ENV, id, &at);
    rc |= plugin_host_put_u32(out, e->type) | plugin_host_put_u32(out, e->uid);
    rc |= plugin_host_put_u32(out, (uint32_t)e->pid) | buf_append(out, e->from, sizeof e->from);
    switch (env_kind(e->type)) {
    case ENV_KIND_EVENT:
        rc |= plugin_host_put_u64(out, e->ev.id) | plugin_host_put_u32(out, e->ev.seq);
        break;
    case ENV_KIND_CMD:
        rc |= plugin_host_put_u8(out, e->cmd.origin) | plugin_host_put_u8(out, e->cmd.for_guest);
        rc |= plugin_host_put_u32(out, e->cmd.conn_id) | plugin_host_put_u32(out, e->cmd.req_id);
        rc |= plugin_host_put_u32(out, e->cmd.session) | plugin_host_put_u32(out, (uint32_t)e->cmd.code);
        rc |= plugin_host_put_u32(out, e->cmd.timeout_ms);
        rc |= buf_append(out, e->cmd.action, sizeof e->cmd.action);
        rc |= plugin_host_put_u32(out, e->wait.op) | plugin_host_put_u8(out, e->wait.kind);
        rc |= plugin_host_put_u32(out, (uint32_t)e->wait.fn_ref) | plugin_host_put_u32(out, e->wait.ms);
        break;
    case ENV_KIND_MSG:
        rc |= buf_append(out, e->topic, sizeof e->topic);
        break;
    case ENV_KIND_RPC:                 /* made by the daemon's side of the channel only */
    case ENV_KIND_NONE:
        out->len = at;                 /* a plugin host could only refuse it */
        return -1;
    }
    rc |= buf_append(out, e->data, e->len);
    if (rc) {
        out->len = at;
        return -1;
    }
    return plugin_host_frame_end(out, at);
}

int plugin_host_put_stats(struct buf *out, const struct plugin_host_stats *s)
{
    size_t at;
    int rc = plugin_host_frame_begin(out, HK_STATS, 0, &at);
    rc |= plugin_host_put_u64(out, s->events) | plugin_host_put_u64(out, s->commands);
    rc |= plugin_host_put_u64(out, s->messages) | plugin_host_put_u64(out, s->errors);
    rc |= plugin_host_put_u64(out, s->mem_used) | plugin_host_put_u64(out, s->cpu_ns);
    rc |= plugin_host_put_u32(out, s->pinned) | plugin_host_put_u8(out, s->state);
    rc |= plugin_host_put_u64(out, s->refused);
    size_t slen = strnlen(s->status, sizeof s->status - 1);
    rc |= plugin_host_put_u64(out, s->ignored_edits) | plugin_host_put_u32(out, (uint32_t)slen);
    rc |= buf_append(out, s->status, slen);
    rc |= buf_append(out, s->last_error, strnlen(s->last_error, sizeof s->last_error - 1));
    if (rc) {
        out->len = at;
        return -1;
    }
    return plugin_host_frame_end(out, at);
}

long plugin_host_frame_next(const char *p, size_t avail, struct plugin_host_frame *f)
{
    if (avail < 4)
        return 0;
    const unsigned char *u = (const unsigned char *)p;
    uint32_t n = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    if (n < HOST_HDR - 4 || (size_t)n + 4 > HOST_FRAME_MAX)
        return -1;
    if (avail < (size_t)n + 4)
        return 0;
    f->kind = u[4];
    f->id = (uint32_t)u[5] | (uint32_t)u[6] << 8 | (uint32_t)u[7] << 16 | (uint32_t)u[8] << 24;
    f->body = p + HOST_HDR;
    f->len = n + 4 - HOST_HDR;
    return (long)n + 4;
}

bool plugin_host_get_bytes(struct plugin_host_reader *r, void *dst, size_t n)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    memcpy(dst, r->p, n);
    r->p += n;
    return true;
}

bool plugin_host_get_u8(struct plugin_host_reader *r, uint8_t *v)
{
    return plugin_host_get_bytes(r, v, 1);
}

bool plugin_host_get_u32(struct plugin_host_reader *r, uint32_t *v)
{
    unsigned char x[4];
    if (!plugin_host_get_bytes(r, x, 4))
        return false;
    *v = (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
    return true;
}

bool plugin_host_get_u64(struct plugin_host_reader *r, uint64_t *v)
{
    uint32_t lo, hi;
    if (!plugin_host_get_u32(r, &lo) || !plugin_host_get_u32(r, &hi))
        return false;
    *v = (uint64_t)hi << 32 | lo;
    return true;
}

struct envelope *plugin_host_get_env(const struct plugin_host_frame *f)
{
    struct plugin_host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    uint32_t type, uid, pid, code, fn_ref;
    char from[64];
    if (!plugin_host_get_u32(&r, &type) || !plugin_host_get_u32(&r, &uid) ||
        !plugin_host_get_u32(&r, &pid) || !plugin_host_get_bytes(&r, from, sizeof from))
        return NULL;
    from[sizeof from - 1] = '\0';
    struct env_event ev = {0};
    struct env_cmd cmd = {0};
    struct env_wait wait = {0};
    char topic[48] = "";
    switch (env_kind(type)) {
    case ENV_KIND_EVENT:
        if (!plugin_host_get_u64(&r, &ev.id) || !plugin_host_get_u32(&r, &ev.seq))
            return NULL;
        break;
    case ENV_KIND_CMD:
        if (!plugin_host_get_u8(&r, &cmd.origin) || !plugin_host_get_u8(&r, &cmd.for_guest) ||
            !plugin_host_get_u32(&r, &cmd.conn_id) || !plugin_host_get_u32(&r, &cmd.req_id) ||
            !plugin_host_get_u32(&r, &cmd.session) || !plugin_host_get_u32(&r, &code) ||
            !plugin_host_get_u32(&r, &cmd.timeout_ms) ||
            !plugin_host_get_bytes(&r, cmd.action, sizeof cmd.action) ||
            !plugin_host_get_u32(&r, &wait.op) || !plugin_host_get_u8(&r, &wait.kind) ||
            !plugin_host_get_u32(&r, &fn_ref) || !plugin_host_get_u32(&r, &wait.ms))
            return NULL;
        cmd.action[sizeof cmd.action - 1] = '\0';
        cmd.code = (int32_t)code;
        wait.fn_ref = (int32_t)fn_ref;
        break;
    case ENV_KIND_MSG:
        if (!plugin_host_get_bytes(&r, topic, sizeof topic))
            return NULL;
        topic[sizeof topic - 1] = '\0';
        break;
    case ENV_KIND_RPC:
    case ENV_KIND_NONE:
        return NULL;                   /* nothing else is sent to a plugin host or back */
    }
    struct envelope *e = envelope_new((enum env_type)type, r.p, (size_t)(r.end - r.p));
    if (!e)
        return NULL;
    e->uid = uid;
    e->pid = (int32_t)pid;
    memcpy(e->from, from, sizeof from);
    e->remote_id = f->id;
    switch (env_kind(type)) {
    case ENV_KIND_EVENT:
        e->ev = ev;
        break;
    case ENV_KIND_CMD:
        e->cmd = cmd;
        e->wait = wait;
        break;
    default:
        memcpy(e->topic, topic, sizeof topic);
        break;
    }
    return e;
}

bool plugin_host_get_stats(const struct plugin_host_frame *f, struct plugin_host_stats *s)
{
    struct plugin_host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    if (!plugin_host_get_u64(&r, &s->events) || !plugin_host_get_u64(&r, &s->commands) ||
        !plugin_host_get_u64(&r, &s->messages) || !plugin_host_get_u64(&r, &s->errors) ||
        !plugin_host_get_u64(&r, &s->mem_used) || !plugin_host_get_u64(&r, &s->cpu_ns) ||
        !plugin_host_get_u32(&r, &s->pinned) || !plugin_host_get_u8(&r, &s->state) || !plugin_host_get_u64(&r, &s->refused))
        return false;
    uint32_t slen;
    if (!plugin_host_get_u64(&r, &s->ignored_edits) || !plugin_host_get_u32(&r, &slen) ||
        slen >= sizeof s->status || !plugin_host_get_bytes(&r, s->status, slen))
        return false;
    s->status[slen] = '\0';
    size_t n = (size_t)(r.end - r.p);
    if (n >= sizeof s->last_error)
        n = sizeof s->last_error - 1;
    memcpy(s->last_error, r.p, n);
    s->last_error[n] = '\0';
    return true;
}
