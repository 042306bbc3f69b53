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
 * starts at once.
 *
 * The watchdog (plugins.watchdog_ms): the CPU budget stops Lua code and the
 * C functions that ask for it, but a C call that never returns would hold
 * its worker for good. A worker inside one job longer than watchdog_ms is
 * abandoned: the pool stops counting it, starts a replacement thread, and
 * tells its owner (the plugin goes to Error). The stuck thread is left
 * where it is (nothing can safely stop a thread inside arbitrary C code):
 * its stack, the plugin's state and the batch it was running stay with it
 * until the process ends (docs/security.md). */
#include "daemon/worker_pool.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "runtime/sandbox.h"
#include "lib/stats.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct jobq {
    struct job *head, *tail;
};

/* One thread. Kept for the pool's life; an abandoned one for the
 * process's (its thread may still come back and look at it). */
struct worker {
    struct worker *next;
    struct worker_pool *p;
    pthread_t th;
    bool lane;                    /* takes command jobs only */
    bool abandoned;               /* under p->mu */
    struct job *_Atomic job;      /* the job it runs; NULL idle */
    _Atomic uint64_t since_ns;    /* when that job began */
};

struct worker_pool {
    struct daemon *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* any job */
    pthread_cond_t cmd_cv;        /* a command job: the lane's own thread */
    pthread_cond_t wd_cv;         /* wakes the watchdog to stop */
    struct jobq jobs, cmds;
    unsigned busy;
    bool stop;
    _Atomic bool joined;          /* no threads left: jobs must run inline */
    unsigned n, started;          /* n: the general workers, plus the lane's */
    struct worker *workers;       /* every thread started, abandoned ones too */
    unsigned abandoned;
    uint64_t watchdog_ns;         /* 0: no watchdog */
    void (*stuck)(struct job *, uint64_t ms);
    bool wd_on;
    pthread_t wd;
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
    struct worker *w = arg;
    struct worker_pool *p = w->p;
    pthread_cond_t *cv = w->lane ? &p->cmd_cv : &p->cv;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->cmds.head && (w->lane || !p->jobs.head) && !(p->stop && p->busy == 0))
            pthread_cond_wait(cv, &p->mu);
        struct job *j = pop(&p->cmds);
        if (!j && !w->lane)
            j = pop(&p->jobs);
        if (!j)
            break;                      /* stopping, and no one can queue more */
        p->busy++;
        atomic_store(&w->since_ns, mono_ns());
        atomic_store(&w->job, j);
        pthread_mutex_unlock(&p->mu);
        j->run(j);
        pthread_mutex_lock(&p->mu);
        atomic_store(&w->job, NULL);
        if (w->abandoned) {
            /* the watchdog gave up on it and replaced it: not a worker now */
            pthread_mutex_unlock(&p->mu);
            sandbox_thread_end();
            return NULL;
        }
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
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->cmd_cv, NULL);
    pthread_cond_init(&p->wd_cv, NULL);
    return p;
}

void worker_pool_watchdog(struct worker_pool *p, unsigned ms, void (*stuck)(struct job *, uint64_t ms))
{
    p->watchdog_ns = (uint64_t)ms * 1000000u;
    p->stuck = stuck;
}

/* Under p->mu. */
static int spawn(struct worker_pool *p, bool lane, unsigned number)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->p = p;
    w->lane = lane;
    if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
        free(w);
        return -1;
    }
    char name[16];                      /* for top -H, perf and gdb */
    if (lane)
        snprintf(name, sizeof name, "worker-cmd");
    else
        snprintf(name, sizeof name, "worker-%u", number);
    pthread_setname_np(w->th, name);
    w->next = p->workers;
    p->workers = w;
    return 0;
}

static void *watchdog_main(void *arg)
{
    struct worker_pool *p = arg;
    uint64_t every = p->watchdog_ns / 4 > 1000000 ? p->watchdog_ns / 4 : 1000000;
    if (every > 1000000000u)
        every = 1000000000u;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t at = (uint64_t)ts.tv_nsec + every;
        ts.tv_sec += (time_t)(at / 1000000000u);
        ts.tv_nsec = (long)(at % 1000000000u);
        pthread_cond_timedwait(&p->wd_cv, &p->mu, &ts);
        if (p->stop)
            break;
        uint64_t now = mono_ns();
        struct { struct job *j; uint64_t ms; } stuck[8];
        size_t nstuck = 0;
        for (struct worker *w = p->workers; w && nstuck < 8; w = w->next) {
            struct job *j = atomic_load(&w->job);
            uint64_t since = atomic_load(&w->since_ns);
            if (!j || w->abandoned || now - since < p->watchdog_ns)
                continue;
            w->abandoned = true;
            p->busy--;
            p->abandoned++;
            STAT_INC(workers_abandoned);
            pthread_detach(w->th);
            stuck[nstuck].j = j;
            stuck[nstuck++].ms = (now - since) / 1000000u;
            if (spawn(p, w->lane, p->n + p->abandoned) < 0)
                log_error("watchdog: cannot start a replacement worker: %s", strerror(errno));
        }
        pthread_mutex_unlock(&p->mu);
        for (size_t i = 0; i < nstuck; i++) {
            log_error("watchdog: a worker has been inside one call for %llu ms (plugins.watchdog_ms): "
                      "abandoned, a new worker takes its place", (unsigned long long)stuck[i].ms);
            if (p->stuck)
                p->stuck(stuck[i].j, stuck[i].ms);
        }
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int worker_pool_start(struct worker_pool *p)
{
    pthread_mutex_lock(&p->mu);
    for (; p->started <= p->n; p->started++) {
        if (spawn(p, p->started == p->n, p->started) < 0) {
            pthread_mutex_unlock(&p->mu);
            return -1;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (p->watchdog_ns) {
        if (pthread_create(&p->wd, NULL, watchdog_main, p) != 0)
            return -1;
        pthread_setname_np(p->wd, "watchdog");
        p->wd_on = true;
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
    pthread_cond_signal(&p->wd_cv);
    pthread_mutex_unlock(&p->mu);
    if (p->wd_on) {
        pthread_join(p->wd, NULL);
        p->wd_on = false;
    }
    /* no thread is started or abandoned any more: the list holds still;
     * a second stop (the core's, then main's) has nothing left to join */
    for (struct worker *w = p->workers; w && p->started; w = w->next)
        if (!w->abandoned)
            pthread_join(w->th, NULL);
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
    if (p->abandoned)
        return;   /* a stuck thread may still come back to p: it lives until exit */
    while (p->workers) {
        struct worker *w = p->workers;
        p->workers = w->next;
        free(w);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->cmd_cv);
    pthread_cond_destroy(&p->wd_cv);
    free(p);
}
