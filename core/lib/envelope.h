/* envelope.h - the unit of work passed between execution domains (DESIGN 2).
 * The type is the state-machine state. */
#ifndef POLARIS_ENVELOPE_H
#define POLARIS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/json_index.h"

enum env_type {
    ENV_IPC_EVENT = 1,        /* ingress -> core: an app's event */
    ENV_MONITOR_EVENT,        /* monitor/plugin -> core: an event of our own */
    ENV_STRATEGY_COMPLETE,    /* worker -> core: strategies done, forward */
    ENV_GUEST_CMD_REQ,        /* egress -> core: guest asks the host */
    ENV_APP_CMD_REQ,          /* ingress -> core: an app asks host or guest */
    ENV_CMD_EXEC_RESULT,      /* worker -> core: a host handler's answer */
    ENV_H2G_CMD_REQ,          /* core -> egress: a command for the guest */
    ENV_H2G_CMD_RESP,         /* core -> egress: the host's answer to the guest */
    ENV_G2H_CMD_RESP,         /* egress -> core: the guest's answer */
    ENV_APP_CMD_RESP,         /* core -> ingress: the answer for an app */
    ENV_FORWARD_EVENT,        /* core -> egress: an event for the guest */
    ENV_GUEST_STATE,          /* egress -> core: guest connected (code 1) or gone (0) */
    ENV_CTL_STOP,             /* core -> domain: stop (shutdown) */
    ENV_CTL_STOPPED,          /* domain -> core: stopped */
    ENV_CTL_RELOAD,           /* core -> domain: new config values */
    ENV_PLUGIN_MSG,           /* plugin -> plugin: on_message(from, topic, data) */
    ENV_WAIT_REQ,             /* plugin -> core: wait for me (sleep, exec, timer) */
    ENV_WAIT_CANCEL,          /* plugin -> core: cancel a timer */
    ENV_WAIT_DONE,            /* core -> plugin: resume the call waiting on op `seq` */
    ENV_TIMER_FIRE,           /* core -> plugin: run timer callback `req_id` */
    ENV_STRATEGY_DROPPED,     /* worker -> core: a strategy dropped the event */
    ENV_HOST_RPC,             /* plugin host -> its stand-in: run polaris.<name> here */
    ENV_EGRESS_ROOM,          /* egress -> core: the guest link's buffer has room again */
    ENV_RELOAD_DONE,          /* reload thread -> core: the new plugin set is built */
};

struct plugin;

/* Origin of a command: where its answer goes. */
enum env_origin { ORIGIN_NONE = 0, ORIGIN_APP, ORIGIN_GUEST, ORIGIN_PLUGIN };

/* An envelope's fields are grouped by the kind of thing it carries; each
 * field means one thing, and only its kind's types use it (env_kind):
 *   ev          an event: ENV_IPC_EVENT, ENV_MONITOR_EVENT,
 *               ENV_STRATEGY_COMPLETE, ENV_STRATEGY_DROPPED, ENV_FORWARD_EVENT
 *   cmd, wait   a command or its answer (ENV_*_CMD_REQ, ENV_*_CMD_RESP,
 *               ENV_CMD_EXEC_RESULT), a plugin's wait or timer (ENV_WAIT_REQ,
 *               ENV_WAIT_CANCEL, ENV_WAIT_DONE, ENV_TIMER_FIRE); together,
 *               since polaris.guest.request is both
 *   topic       ENV_PLUGIN_MSG
 *   rpc         ENV_HOST_RPC: a plugin host's call of polaris.<fn>
 * The kinds share their memory (an envelope per event stays in the
 * allocator's smaller size class); an envelope never changes kind. The rest
 * is common: who sent it, and the payload. */
struct env_event {
    uint64_t id;              /* eventId */
    uint32_t seq;             /* PLP seq_id, given at first send (0: not yet) */
    uint8_t  chain_len, chain_pos;
    uint8_t  rewritten;       /* a strategy replaced the payload */
    union {                   /* strategies still to run, each holding a ref: */
        struct plugin **chain;    /* chain_len > 1: an array */
        struct plugin *chain_one; /* chain_len 1 (most events): no array to allocate */
    };
    size_t   wend;            /* egress: where its frame ends, in bytes since the session began */
    uint64_t notice_dropped;  /* egress: a drop notice's count (0: any other event) */
    uint64_t spool_ticket;    /* its record in the disk spool; 0: not spooled */
    struct json_index index;  /* where the payload's members are, if its writer noted them
                               * (n = 0: not); cleared wherever a payload is replaced */
};

struct env_cmd {
    uint8_t  origin;          /* enum env_origin: where the answer goes */
    uint8_t  for_guest;       /* an app's request with target "guest" */
    uint32_t conn_id;         /* the answer's address within its origin: the ingress
                               * client (APP), the parked call's token (PLUGIN) */
    uint32_t req_id;          /* the id the answer is sent back under: the app's
                               * req_id, the guest's seq_id, the call's token */
    uint32_t session;         /* the core's pending host command it answers */
    int32_t  code;            /* result code (DESIGN 3.3) */
    uint32_t timeout_ms;      /* the request's deadline */
    char     action[48];
};

struct env_wait {
    uint32_t op;              /* the parked call's op, or the timer's id */
    uint8_t  kind;            /* enum wait_kind (runtime/plugin.h) */
    int32_t  fn_ref;          /* a timer's callback in the plugin's registry */
    uint32_t ms;              /* how long: sleep, exec deadline, timer interval */
};

struct env_rpc {
    uint32_t call;            /* the plugin host's id for the call (its reply carries it) */
    char     fn[48];          /* "fs.read", "require", ... */
};

struct envelope {
    struct envelope *next;    /* queue link; owned by whichever queue holds it */
    uint16_t type;
    uint8_t  guest_up;        /* ENV_GUEST_STATE: a guest connected (1) or left (0) */
    uint32_t uid;             /* the sender's uid (SO_PEERCRED) */
    int32_t  pid;             /* the sender's pid (SO_PEERCRED) */
    char     from[64];        /* the emitting/sending plugin's id, "" for apps */
    struct plugin *plugin;    /* wait: the asking plugin (a ref travels with it) */
    uint32_t remote_id;       /* in a plugin host: the daemon's id for it */
    uint32_t plugin_host_run; /* a plugin host's call or its answer: which run of the host asked
                               * (op ids restart in every run; an answer for an older run is dropped) */
    union {                   /* by env_kind(type) */
        struct env_event ev;
        struct {
            struct env_cmd cmd;
            struct env_wait wait;
        };
        char topic[48];       /* on_message's topic */
        struct env_rpc rpc;   /* never sent to a plugin host */
    };
    size_t   len;
    char     data[];          /* JSON payload, NUL-terminated */
};

enum env_kind { ENV_KIND_NONE, ENV_KIND_EVENT, ENV_KIND_CMD, ENV_KIND_MSG, ENV_KIND_RPC };

static inline enum env_kind env_kind(unsigned type)
{
    switch (type) {
    case ENV_IPC_EVENT: case ENV_MONITOR_EVENT: case ENV_STRATEGY_COMPLETE:
    case ENV_STRATEGY_DROPPED: case ENV_FORWARD_EVENT:
        return ENV_KIND_EVENT;
    case ENV_GUEST_CMD_REQ: case ENV_APP_CMD_REQ: case ENV_CMD_EXEC_RESULT:
    case ENV_H2G_CMD_REQ: case ENV_H2G_CMD_RESP: case ENV_G2H_CMD_RESP: case ENV_APP_CMD_RESP:
    case ENV_WAIT_REQ: case ENV_WAIT_CANCEL: case ENV_WAIT_DONE: case ENV_TIMER_FIRE:
        return ENV_KIND_CMD;
    case ENV_PLUGIN_MSG:
        return ENV_KIND_MSG;
    case ENV_HOST_RPC:
        return ENV_KIND_RPC;
    default:
        return ENV_KIND_NONE;
    }
}

/* A FIFO of envelopes linked through `next` (not thread-safe by itself). */
struct envlist {
    struct envelope *head, *tail;
};

/* The event's strategy at position i of its chain. */
static inline struct plugin *env_chain_at(const struct envelope *e, unsigned i)
{
    return e->ev.chain_len == 1 ? e->ev.chain_one : e->ev.chain[i];
}

static inline void envlist_push(struct envlist *l, struct envelope *e)
{
    e->next = NULL;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
}

/* Takes the whole list (NULL when empty). */
static inline struct envelope *envlist_take(struct envlist *l)
{
    struct envelope *h = l->head;
    l->head = l->tail = NULL;
    return h;
}

struct envelope *envelope_new(enum env_type type, const void *data, size_t len);
/* An event e with data[0..len) for its payload (a strategy rewrote it):
 * written over e's own when it fits in e's allocation (the allocator's size
 * class has room: one allocation and one free less), else a new envelope
 * with e's header, e freed. Either way ev.rewritten is set and the index
 * cleared (it was e's payload's). NULL, e untouched, when out of memory. */
struct envelope *envelope_rewrite(struct envelope *e, const void *data, size_t len);
void envelope_free(struct envelope *e);
void envelope_free_list(struct envelope *e);

#endif
