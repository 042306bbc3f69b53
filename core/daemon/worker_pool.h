/* worker_pool.h - the worker domain: N threads running jobs (plugin
 * mailboxes). */
#ifndef POLARIS_WORKER_POOL_H
#define POLARIS_WORKER_POOL_H

#include "daemon/daemon.h"
#include "lib/job.h"

struct worker_pool *worker_pool_new(struct daemon *d, unsigned nthreads);
int  worker_pool_start(struct worker_pool *p);
/* Finishes queued jobs (and what they queue), then joins the threads. */
void worker_pool_stop(struct worker_pool *p);
void worker_pool_free(struct worker_pool *p);
void worker_pool_submit_job(struct worker_pool *p, struct job *j);
/* A command job: ahead of every other, and a thread of its own (DESIGN 2). */
void worker_pool_submit_urgent(struct worker_pool *p, struct job *j);
bool worker_pool_stopped(struct worker_pool *p);
/* Before start: a worker inside one job longer than ms is abandoned and
 * replaced, and stuck(job, how long) is called (from the watchdog's thread). */
void worker_pool_watchdog(struct worker_pool *p, unsigned ms, void (*stuck)(struct job *, uint64_t ms));

#endif
