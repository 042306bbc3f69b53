/* worker_pool.h - the worker domain: N threads running host work. */
#ifndef POLARIS_WORKER_POOL_H
#define POLARIS_WORKER_POOL_H

#include "daemon.h"

struct worker_pool *worker_pool_new(struct daemon *d, unsigned nthreads);
int  worker_pool_start(struct worker_pool *p);
/* Finishes queued jobs, then joins the threads. */
void worker_pool_stop(struct worker_pool *p);
void worker_pool_free(struct worker_pool *p);
/* Runs the host command in e (action, args, req_id, seq = exec id) and
 * pushes an ENV_CMD_EXEC_RESULT to the core. Takes ownership of e. */
void worker_pool_submit(struct worker_pool *p, struct envelope *e);

#endif
