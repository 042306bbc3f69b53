/* plugin_host_proto.h - the channel between polarisd and a polaris-plugin-host
 * process (one socketpair per host). Every frame is
 *   u32 length (of what follows) | u8 kind | u32 id | body
 * little-endian, at most HOST_FRAME_MAX bytes. `id` is the daemon's
 * request id for an event or command, the plugin's op for a wait, the call
 * id of an RPC. The daemon checks every frame a host sends as untrusted
 * input: a frame that breaks these rules ends the host. */
#ifndef POLARIS_PLUGIN_HOST_PROTO_H
#define POLARIS_PLUGIN_HOST_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/buf.h"
#include "lib/envelope.h"

#define HOST_FRAME_MAX (8u << 20)     /* a 4 MiB event, re-encoded, fits */
#define HOST_HDR 9

enum plugin_host_kind {
    /* daemon -> host */
    HK_INIT = 1,      /* lua_pack'ed table: the plugin, its code, its settings */
    HK_ENV,           /* an envelope for the plugin: event, command, message, wait result */
    HK_RPC_REPLY,     /* u8 ok | lua_pack'ed results, or the error text */
    HK_STOP,          /* run stop() and cleanup(), then exit 0 */
    /* host -> daemon */
    HK_READY = 32,    /* u32 n | n x (u8 any, u64 eventId) | u32 m | m x (u8 len, name) */
    HK_FAILED,        /* the load error, text */
    HK_RESULT,        /* a strategy's verdict for event `id`: u8 verdict | u64 eventId | payload */
    HK_CMD_RESULT,    /* command `id` answered: i32 code | CommandResult JSON */
    HK_WAIT,          /* op `id`: i32 kind | u32 ms | u32 fn_ref | action[48] | JSON */
    HK_CANCEL,        /* cancel timer `id` */
    HK_RPC,           /* call `id`: u8 namelen | name | lua_pack'ed arguments */
    HK_LOG,           /* level `id`: text */
    HK_STATS,         /* the plugin's counters (struct plugin_host_stats) */
};

enum plugin_host_verdict { HV_PASS = 0, HV_REWRITTEN, HV_DROP };

struct plugin_host_stats {
    uint64_t events, commands, messages, errors, mem_used, cpu_ns;
    uint32_t pinned;              /* live timers and parked calls: never idle */
    uint64_t refused;             /* calls refused over a per-plugin bound (timers, waits) */
    uint8_t state;                /* enum plugin_state */
    uint64_t ignored_edits;       /* events edited in place and returned as nil */
    char status[1024];            /* what status() last returned, as JSON ("": nothing);
                                   * PLUGIN_STATUS_MAX in the runtime */
    char last_error[256];
};

/* Writers: append one whole frame to out. 0, or -1 out of memory. */
int plugin_host_frame_begin(struct buf *out, uint8_t kind, uint32_t id, size_t *at);
int plugin_host_frame_end(struct buf *out, size_t at);
int plugin_host_frame_simple(struct buf *out, uint8_t kind, uint32_t id, const void *body, size_t len);
int plugin_host_put_u8(struct buf *b, uint8_t v);
int plugin_host_put_u32(struct buf *b, uint32_t v);
int plugin_host_put_u64(struct buf *b, uint64_t v);
/* -1 also for a kind a plugin host never gets (ENV_KIND_RPC, _NONE). */
int plugin_host_put_env(struct buf *out, uint32_t id, const struct envelope *e);
int plugin_host_put_stats(struct buf *out, const struct plugin_host_stats *s);

/* A frame taken out of a receive buffer. */
struct plugin_host_frame {
    uint8_t kind;
    uint32_t id;
    const char *body;
    size_t len;
};

/* Finds the next whole frame in p[0..avail). Returns its total size (and
 * fills f), 0 if more bytes are needed, -1 on a length out of bounds. */
long plugin_host_frame_next(const char *p, size_t avail, struct plugin_host_frame *f);

/* Bounded readers over a frame body: each returns false when short. */
struct plugin_host_reader {
    const unsigned char *p, *end;
};
bool plugin_host_get_u8(struct plugin_host_reader *r, uint8_t *v);
bool plugin_host_get_u32(struct plugin_host_reader *r, uint32_t *v);
bool plugin_host_get_u64(struct plugin_host_reader *r, uint64_t *v);
bool plugin_host_get_bytes(struct plugin_host_reader *r, void *dst, size_t n);
/* HK_ENV body into a new envelope (NULL on a malformed body or no memory). */
struct envelope *plugin_host_get_env(const struct plugin_host_frame *f);
bool plugin_host_get_stats(const struct plugin_host_frame *f, struct plugin_host_stats *s);

#endif
