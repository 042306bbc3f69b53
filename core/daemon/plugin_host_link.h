/* plugin_host_link.h - private to plugin_host.c and plugin_host_link.c: one plugin
 * host as the daemon sees it, and the calls between the supervisor (start,
 * death, restart, idle) and the channel's traffic (posting, answers, calls).
 * Nothing else includes it. */
#ifndef POLARIS_PLUGIN_HOST_LINK_H
#define POLARIS_PLUGIN_HOST_LINK_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>
#include "lib/buf.h"
#include "lib/envelope.h"
#include "wire/plugin_host_proto.h"
#include "lib/rxbuf.h"

struct plugin;

enum plugin_host_state {
    H_STARTING,       /* spawned, INIT sent, no READY yet */
    H_UP,
    H_STOPPING,       /* STOP sent (idle or retired) */
    H_DOWN,           /* no process: idle (plugin Active) or dead (Error) */
};

struct outstanding {
    uint32_t rid;
    struct envelope *e;
};

struct plugin_host {
    struct plugin_host *next;     /* the manager's list */
    struct plugin_hosts *m;
    struct plugin *p;             /* a ref while the host struct lives */
    pthread_mutex_t mu;           /* tx, out, pending, st, want_* */
    enum plugin_host_state st;
    int fd;
    pid_t pid;
    struct buf tx;
    struct rxbuf rx;
    struct outstanding *out;      /* events and commands the host holds, by rid; */
    size_t out_first, out_end;    /* [first, end) in use, answered ones NULL */
    size_t nout, capout;          /* nout: not yet answered */
    uint32_t next_rid;
    _Atomic uint32_t gen;         /* which run of the process: +1 at every death */
    struct envlist pending;       /* posted while the host was starting */
    struct buf init;              /* the HK_INIT frame, reused by restarts */
    bool want_write, want_start, retiring, idle_stop, dead;
    bool flush_queued;            /* frames wait for the core loop's one write */
    bool first_load;              /* RPCs run inline: no worker can see the plugin yet */
    bool rio_on, wio_on;
    ev_io rio, wio;
    ev_child child;
    ev_timer timer;               /* restart backoff, idle check */
    unsigned restarts;            /* in a row */
    uint64_t up_since_ns;
    _Atomic uint64_t last_activity_ns;
    uint32_t pinned;              /* from the host's stats */
    char last_exit[96];
};

struct plugin_hosts {
    struct ev_loop *loop;
    ev_async wake;
    pthread_mutex_t mu;           /* the list */
    struct plugin_host *hosts;
    char binary[512];
    uid_t uid;
    gid_t gid;
    uint64_t as_bytes;
    unsigned cpu_s, restart_max, backoff_ms, idle_s, start_timeout_ms;
    void (*on_death)(void *, struct plugin *);   /* plugin_hosts_on_death */
    void *on_death_ctx;
};

/* plugin_host_link.c: the channel */
void plugin_host_link_watch(struct plugin_host *h);
void plugin_host_link_unwatch(struct plugin_host *h);
/* under h->mu: write what is queued, or leave it to the write watcher */
void plugin_host_link_flush_locked(struct plugin_host *h);
/* every envelope the host holds, taken out: a list linked through next */
struct envelope *plugin_host_link_take_all(struct plugin_host *h);
/* an envelope its host cannot take goes on without it (why: strategyError) */
void plugin_host_link_bypass(struct plugin *p, struct envelope *e, const char *why);
void plugin_host_link_post(struct plugin *p, struct envelope *e);
void plugin_host_link_rpc(struct plugin *p, struct envelope *e);
bool plugin_host_link_dispatch(struct plugin_host *h, const struct plugin_host_frame *f, bool during_load);
bool plugin_host_link_drain(struct plugin_host *h);
bool plugin_host_link_read(struct plugin_host *h);

#endif
