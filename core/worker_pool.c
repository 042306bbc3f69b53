/* worker_pool.c - the worker domain (DESIGN 2).
 *
 * A fixed set of threads taking jobs from one mutex/condvar queue. A job is
 * a plugin with mail: running it drains the plugin's mailbox, so a plugin
 * is on the queue at most once and runs on one thread at a time (the actor
 * model), while different plugins run in parallel. */
#include "worker_pool.h"
#include "sandbox.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>

struct worker_pool {
    struct daemon *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
    unsigned busy;
    bool stop;
    _Atomic bool joined;          /* no threads left: jobs must run inline */
    unsigned n, started;
    pthread_t *threads;
};

static void *worker_main(void *arg)
{
    struct worker_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !(p->stop && p->busy == 0))
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head)
            break;                      /* stopping, and no one can queue more */
        struct job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        j->run(j);
        pthread_mutex_lock(&p->mu);
        p->busy--;
        if (p->stop && p->busy == 0 && !p->head)
            pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    sandbox_thread_end();
    return NULL;
}

struct worker_pool *worker_pool_new(struct daemon *d, unsigned nthreads)
{
    struct worker_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->d = d;
    p->n = nthreads ? nthreads : 1;
    p->threads = calloc(p->n, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

int worker_pool_start(struct worker_pool *p)
{
    for (; p->started < p->n; p->started++) {
        if (pthread_create(&p->threads[p->started], NULL, worker_main, p) != 0)
            return -1;
        char name[16];                  /* for top -H, perf and gdb */
        snprintf(name, sizeof name, "worker-%u", p->started);
        pthread_setname_np(p->threads[p->started], name);
    }
    return 0;
}

void worker_pool_submit_job(struct worker_pool *p, struct job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void worker_pool_stop(struct worker_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->started; i++)
        pthread_join(p->threads[i], NULL);
    p->started = 0;
    atomic_store(&p->joined, true);
}

bool worker_pool_stopped(struct worker_pool *p)
{
    return atomic_load(&p->joined);
}

void worker_pool_free(struct worker_pool *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}
