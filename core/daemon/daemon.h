/* daemon.h - what the execution domains share: the queues that couple them
 * (DESIGN 2) and the handles to each domain. Nothing else is shared. */
#ifndef POLARIS_DAEMON_H
#define POLARIS_DAEMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "lib/clock.h"
#include "daemon/config.h"
#include "lib/envq.h"

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
    /* The outbound buffer as every producer sees it (DESIGN 2, 4): events
     * and bytes handed to the guest link (on egress_q or in its buffer) and
     * not done yet. While a guest is connected and this is at the buffer's
     * limit, the buffer is full: producers hold events back instead of
     * handing them over (the core keeps them, counted against
     * core_queue_max, so the core queue fills and the ingress stops
     * reading). Never a drop: drops happen only while the guest is away. */
    _Atomic uint64_t egress_events, egress_bytes;
    _Atomic uint64_t egress_max_events, egress_max_bytes;   /* the egress's config */
    _Atomic bool guest_up;        /* a guest session is open (the egress's word) */
    _Atomic bool core_waits_egress;   /* the core holds events for want of room */
    _Atomic uint64_t core_held;   /* how many: the ingress's direct path waits while > 0 */
    /* Commands on the core queue (their lane: pushed past its bound, so
     * they never wait behind events; bounded by commands.lane_max). */
    _Atomic uint64_t commands_queued;
    uint64_t started_mono_ns;
    uint64_t started_wall_ms;
};

/* Takes a place in the command lane: false when it is full (answer -7). */
static inline bool command_lane_take(struct daemon *d, unsigned max)
{
    if (atomic_fetch_add(&d->commands_queued, 1) >= max) {
        atomic_fetch_sub(&d->commands_queued, 1);
        return false;
    }
    return true;
}

/* Whether the guest link's buffer is full while a guest is connected: then
 * events wait where they are (backpressure), they are never dropped. */
static inline bool egress_full_with(struct daemon *d, uint64_t more_events, uint64_t more_bytes)
{
    return atomic_load(&d->guest_up) &&
           (atomic_load(&d->egress_events) + more_events >= atomic_load(&d->egress_max_events) ||
            atomic_load(&d->egress_bytes) + more_bytes >= atomic_load(&d->egress_max_bytes));
}

static inline bool egress_full(struct daemon *d)
{
    return egress_full_with(d, 0, 0);
}


#endif
