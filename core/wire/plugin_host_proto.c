/* plugin_host_proto.c - framing for the plugin host channel (see plugin_host_proto.h).
 * Fixed little-endian fields, written and read one by one, so the layout
 * never depends on a compiler's struct padding and every read is bounded.
 *
 * Uses: buf, envelope. */
#include "wire/plugin_host_proto.h"

#include <string.h>

int host_put_u8(struct buf *b, uint8_t v)
{
    return buf_putc(b, (char)v);
}

int host_put_u32(struct buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return buf_append(b, x, 4);
}

int host_put_u64(struct buf *b, uint64_t v)
{
    return host_put_u32(b, (uint32_t)v) | host_put_u32(b, (uint32_t)(v >> 32));
}

int host_frame_begin(struct buf *out, uint8_t kind, uint32_t id, size_t *at)
{
    *at = out->len;
    return host_put_u32(out, 0) | host_put_u8(out, kind) | host_put_u32(out, id);
}

int host_frame_end(struct buf *out, size_t at)
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

int host_frame_simple(struct buf *out, uint8_t kind, uint32_t id, const void *body, size_t len)
{
    size_t at;
    if (host_frame_begin(out, kind, id, &at) < 0 || buf_append(out, body, len) < 0) {
        out->len = at;
        return -1;
    }
    return host_frame_end(out, at);
}

/* Every envelope crosses whole: its kind's fields and the common ones, in
 * one fixed layout (a frame is the same for every type; the few bytes a
 * kind does not use are cheaper than a layout per type). */
int host_put_env(struct buf *out, uint32_t id, const struct envelope *e)
{
    size_t at;
    int rc = host_frame_begin(out, HK_ENV, id, &at);
    rc |= host_put_u32(out, e->type) | host_put_u32(out, e->uid) | host_put_u32(out, (uint32_t)e->pid);
    rc |= host_put_u64(out, e->ev.id) | host_put_u32(out, e->ev.seq);
    rc |= host_put_u8(out, e->cmd.origin) | host_put_u8(out, e->cmd.for_guest);
    rc |= host_put_u32(out, e->cmd.conn_id) | host_put_u32(out, e->cmd.req_id);
    rc |= host_put_u32(out, e->cmd.session) | host_put_u32(out, (uint32_t)e->cmd.code);
    rc |= host_put_u32(out, e->cmd.timeout_ms);
    rc |= host_put_u32(out, e->wait.op) | host_put_u8(out, e->wait.kind);
    rc |= host_put_u32(out, (uint32_t)e->wait.fn_ref) | host_put_u32(out, e->wait.ms);
    rc |= buf_append(out, e->cmd.action, sizeof e->cmd.action) | buf_append(out, e->from, sizeof e->from);
    rc |= buf_append(out, e->topic, sizeof e->topic);
    rc |= buf_append(out, e->data, e->len);
    if (rc) {
        out->len = at;
        return -1;
    }
    return host_frame_end(out, at);
}

int host_put_stats(struct buf *out, const struct host_stats *s)
{
    size_t at;
    int rc = host_frame_begin(out, HK_STATS, 0, &at);
    rc |= host_put_u64(out, s->events) | host_put_u64(out, s->commands) | host_put_u64(out, s->messages);
    rc |= host_put_u64(out, s->errors) | host_put_u64(out, s->mem_used) | host_put_u64(out, s->cpu_ns);
    rc |= host_put_u32(out, s->pinned) | host_put_u8(out, s->state) | host_put_u64(out, s->refused);
    rc |= buf_append(out, s->last_error, strnlen(s->last_error, sizeof s->last_error - 1));
    if (rc) {
        out->len = at;
        return -1;
    }
    return host_frame_end(out, at);
}

long host_frame_next(const char *p, size_t avail, struct host_frame *f)
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

bool host_get_bytes(struct host_reader *r, void *dst, size_t n)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    memcpy(dst, r->p, n);
    r->p += n;
    return true;
}

bool host_get_u8(struct host_reader *r, uint8_t *v)
{
    return host_get_bytes(r, v, 1);
}

bool host_get_u32(struct host_reader *r, uint32_t *v)
{
    unsigned char x[4];
    if (!host_get_bytes(r, x, 4))
        return false;
    *v = (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
    return true;
}

bool host_get_u64(struct host_reader *r, uint64_t *v)
{
    uint32_t lo, hi;
    if (!host_get_u32(r, &lo) || !host_get_u32(r, &hi))
        return false;
    *v = (uint64_t)hi << 32 | lo;
    return true;
}

struct envelope *host_get_env(const struct host_frame *f)
{
    struct host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    uint32_t type, uid, pid, code, fn_ref;
    struct env_event ev = {0};
    struct env_cmd cmd = {0};
    struct env_wait wait = {0};
    char from[64], topic[48];
    if (!host_get_u32(&r, &type) || !host_get_u32(&r, &uid) || !host_get_u32(&r, &pid) ||
        !host_get_u64(&r, &ev.id) || !host_get_u32(&r, &ev.seq) ||
        !host_get_u8(&r, &cmd.origin) || !host_get_u8(&r, &cmd.for_guest) ||
        !host_get_u32(&r, &cmd.conn_id) || !host_get_u32(&r, &cmd.req_id) ||
        !host_get_u32(&r, &cmd.session) || !host_get_u32(&r, &code) ||
        !host_get_u32(&r, &cmd.timeout_ms) ||
        !host_get_u32(&r, &wait.op) || !host_get_u8(&r, &wait.kind) ||
        !host_get_u32(&r, &fn_ref) || !host_get_u32(&r, &wait.ms) ||
        !host_get_bytes(&r, cmd.action, sizeof cmd.action) || !host_get_bytes(&r, from, sizeof from) ||
        !host_get_bytes(&r, topic, sizeof topic))
        return NULL;
    cmd.action[sizeof cmd.action - 1] = from[sizeof from - 1] = topic[sizeof topic - 1] = '\0';
    cmd.code = (int32_t)code;
    wait.fn_ref = (int32_t)fn_ref;
    struct envelope *e = envelope_new((enum env_type)type, r.p, (size_t)(r.end - r.p));
    if (!e)
        return NULL;
    e->uid = uid;
    e->pid = (int32_t)pid;
    e->ev = ev;
    e->cmd = cmd;
    e->wait = wait;
    e->remote_id = f->id;
    memcpy(e->from, from, sizeof from);
    memcpy(e->topic, topic, sizeof topic);
    return e;
}

bool host_get_stats(const struct host_frame *f, struct host_stats *s)
{
    struct host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    if (!host_get_u64(&r, &s->events) || !host_get_u64(&r, &s->commands) ||
        !host_get_u64(&r, &s->messages) || !host_get_u64(&r, &s->errors) ||
        !host_get_u64(&r, &s->mem_used) || !host_get_u64(&r, &s->cpu_ns) ||
        !host_get_u32(&r, &s->pinned) || !host_get_u8(&r, &s->state) || !host_get_u64(&r, &s->refused))
        return false;
    size_t n = (size_t)(r.end - r.p);
    if (n >= sizeof s->last_error)
        n = sizeof s->last_error - 1;
    memcpy(s->last_error, r.p, n);
    s->last_error[n] = '\0';
    return true;
}
