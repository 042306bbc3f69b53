/* envq.h - bounded multi-producer queue of envelopes with an ev_async wakeup
 * in the consumer's loop (libev's recommended cross-thread pattern). */
#ifndef POLARIS_ENVQ_H
#define POLARIS_ENVQ_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include "lib/envelope.h"

struct envq {
    pthread_mutex_t mu;
    struct envelope *head, *tail;
    size_t count, max;
    _Atomic size_t outside;   /* taken from the queue but not finished (events in
                                 strategies): they count against max too */
    bool full_seen;           /* a bounded push was refused since the last drain */
    size_t high_water;
    struct ev_loop *loop;     /* consumer loop, NULL until attached */
    ev_async *wake;
};

int  envq_init(struct envq *q, size_t max);
void envq_destroy(struct envq *q);   /* frees what is still queued */
/* The consumer attaches its loop and async watcher before producers run. */
void envq_attach(struct envq *q, struct ev_loop *loop, ev_async *wake);
/* Bounded push: -1 (and nothing taken) when the queue holds max envelopes. */
int  envq_push(struct envq *q, struct envelope *e);
/* Push that ignores the bound, for envelopes whose number is bounded
 * elsewhere (results of in-flight commands, control messages). */
void envq_push_force(struct envq *q, struct envelope *e);
/* Batch pushes: one lock and at most one wakeup for a whole list.
 * envq_push_some takes as many envelopes from *list as the bound allows and
 * leaves the rest in *list (marking the queue as having refused someone). */
size_t envq_push_some(struct envq *q, struct envelope **list);
void envq_push_list_force(struct envq *q, struct envelope *head);
/* Takes everything queued, in order. *was_full tells whether a producer was
 * refused since the last drain (so it can be told to resume). */
struct envelope *envq_drain(struct envq *q, bool *was_full);
size_t envq_count(struct envq *q);

#endif
