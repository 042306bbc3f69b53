/* daemon.h - what the execution domains share: the queues that couple them
 * (DESIGN 2) and the handles to each domain. Nothing else is shared. */
#ifndef POLARIS_DAEMON_H
#define POLARIS_DAEMON_H

#include <stdint.h>
#include "clock.h"
#include "config.h"
#include "envq.h"

struct ipc_server;
struct guest_link;
struct worker_pool;
struct core;
struct plugin_registry;
struct plugin_hosts;
struct spool;

struct daemon {
    struct config *cfg;           /* the core's current config (core thread only) */
    struct envq core_q;           /* ingress, egress, workers -> core (bounded) */
    struct envq ingress_q;        /* core -> ingress: answers, control */
    struct envq egress_q;         /* core -> egress: events, command frames, control */
    struct ipc_server *ipc;
    struct guest_link *guest;
    struct worker_pool *workers;
    struct core *core;
    struct plugin_registry *plugins;
    struct plugin_hosts *hosts;   /* out-of-process plugins' supervisor (core loop) */
    struct spool *spool;          /* [daemon] spool_dir; NULL: events in memory only */
    /* App events on the core queue the core has not routed yet (ingress and
     * the spool replay add, the core subtracts once its forwards are on
     * egress_q). The ingress passes an event nobody takes straight to the
     * guest link only while this is 0: nothing sent earlier can be behind it. */
    _Atomic uint64_t core_events_unrouted;
    uint64_t started_mono_ns;
    uint64_t started_wall_ms;
};

extern const char polaris_version[];
extern const char polaris_git_rev[];

#endif
