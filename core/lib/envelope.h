/* envelope.h - the unit of work passed between execution domains (DESIGN 2).
 * The type is the state-machine state. */
#ifndef POLARIS_ENVELOPE_H
#define POLARIS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

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

struct envelope {
    struct envelope *next;    /* queue link; owned by whichever queue holds it */
    uint16_t type;
    uint8_t  origin;
    uint8_t  is_control;      /* reserved control actions (status, reload) */
    uint32_t conn_id;         /* ingress client id for ORIGIN_APP */
    uint32_t req_id;          /* app req_id, or the guest's seq_id */
    uint32_t seq;             /* PLP seq for an event, assigned at first send */
    int32_t  code;            /* command result code (DESIGN 3.3) */
    uint32_t uid;             /* peer uid (SO_PEERCRED) */
    int32_t  pid;             /* peer pid (SO_PEERCRED) */
    uint32_t timeout_ms;
    uint64_t event_id;
    size_t   wend;            /* egress: where its frame ends, in bytes since the session began */
    uint64_t notice_dropped;  /* egress: a drop notice's count (0: any other event) */
    uint64_t spool_ticket;    /* its record in the disk spool; 0: not spooled */
    char     action[48];      /* command action or message topic */
    char     from[64];        /* emitting/sending plugin id, "" for apps */
    struct plugin **chain;    /* strategies still to run, each holding a ref */
    struct plugin *plugin;    /* WAIT_REQ: the asking plugin (a ref travels with it) */
    uint8_t  chain_len, chain_pos;
    uint8_t  rewritten;       /* a strategy replaced the payload */
    uint32_t remote_id;       /* in a plugin host: the daemon's id for it */
    uint32_t host_gen;        /* a plugin host's call or its answer: which run of the host asked
                               * (op ids restart in every run; an answer for an older run is dropped) */
    size_t   len;
    char     data[];          /* JSON payload, NUL-terminated */
};

/* A FIFO of envelopes linked through `next` (not thread-safe by itself). */
struct envlist {
    struct envelope *head, *tail;
};

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
void envelope_free(struct envelope *e);
void envelope_free_list(struct envelope *e);

#endif
