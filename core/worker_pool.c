/* worker_pool.c - the worker domain (DESIGN 2).
 *
 * A fixed set of threads taking jobs from one mutex/condvar queue. A job is
 * a plugin with mail: running it drains the plugin's mailbox, so a plugin
 * is on the queue at most once and runs on one thread at a time (the actor
 * model), while different plugins run in parallel.
 *
 * Two lanes (DESIGN 2: commands never wait behind events): command jobs
 * (a plugin's command lane, see plugin.h) go on their own queue, which
 * every worker looks at first, and one more thread, `worker-cmd`, takes
 * only those: with every other worker busy in strategies, a command still
 * starts at once. */
#include "worker_pool.h"
#include "sandbox.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>

struct jobq {
    struct job *head, *tail;
};

struct worker_pool {
    struct daemon *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* any job */
    pthread_cond_t cmd_cv;        /* a command job: the lane's own thread */
    struct jobq jobs, cmds;
    unsigned busy;
    bool stop;
    _Atomic bool joined;          /* no threads left: jobs must run inline */
    unsigned n, started;          /* n: the general workers; threads[n] is the lane's */
    pthread_t *threads;
};

struct worker {
    struct worker_pool *p;
    bool lane;                    /* takes command jobs only */
};

static struct job *pop(struct jobq *q)
{
    struct job *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
    }
    return j;
}

static void push(struct jobq *q, struct job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static void *worker_main(void *arg)
{
    struct worker w = *(struct worker *)arg;
    free(arg);
    struct worker_pool *p = w.p;
    pthread_cond_t *cv = w.lane ? &p->cmd_cv : &p->cv;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->cmds.head && (w.lane || !p->jobs.head) && !(p->stop && p->busy == 0))
            pthread_cond_wait(cv, &p->mu);
        struct job *j = pop(&p->cmds);
        if (!j && !w.lane)
            j = pop(&p->jobs);
        if (!j)
            break;                      /* stopping, and no one can queue more */
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        j->run(j);
        pthread_mutex_lock(&p->mu);
        p->busy--;
        if (p->stop && p->busy == 0 && !p->jobs.head && !p->cmds.head) {
            pthread_cond_broadcast(&p->cv);
            pthread_cond_broadcast(&p->cmd_cv);
        }
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
    p->threads = calloc(p->n + 1, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->cmd_cv, NULL);
    return p;
}

int worker_pool_start(struct worker_pool *p)
{
    for (; p->started <= p->n; p->started++) {
        bool lane = p->started == p->n;
        struct worker *w = malloc(sizeof *w);  /* the thread's to free */
        if (!w)
            return -1;
        *w = (struct worker){p, lane};
        if (pthread_create(&p->threads[p->started], NULL, worker_main, w) != 0) {
            free(w);
            return -1;
        }
        char name[16];                  /* for top -H, perf and gdb */
        if (lane)
            snprintf(name, sizeof name, "worker-cmd");
        else
            snprintf(name, sizeof name, "worker-%u", p->started);
        pthread_setname_np(p->threads[p->started], name);
    }
    return 0;
}

void worker_pool_submit_job(struct worker_pool *p, struct job *j)
{
    pthread_mutex_lock(&p->mu);
    push(&p->jobs, j);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void worker_pool_submit_urgent(struct worker_pool *p, struct job *j)
{
    pthread_mutex_lock(&p->mu);
    push(&p->cmds, j);
    /* whoever is idle: the lane's thread, or a general one */
    pthread_cond_signal(&p->cmd_cv);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void worker_pool_stop(struct worker_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_cond_broadcast(&p->cmd_cv);
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
    pthread_cond_destroy(&p->cmd_cv);
    free(p->threads);
    free(p);
}
