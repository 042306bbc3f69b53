/* worker_pool.c - the worker domain (DESIGN 2).
 *
 * A fixed set of threads taking jobs from one mutex/condvar queue. A job's
 * result always goes back to the core as an envelope; the number of jobs is
 * bounded by the core's in-flight limits, so the result push may ignore the
 * core queue's bound without growing it without limit. */
#include "worker_pool.h"
#include "command_msg.h"
#include "host_commands.h"
#include "log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct worker_pool {
    struct daemon *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct envelope *head, *tail;
    bool stop;
    unsigned n, started;
    pthread_t *threads;
};

static void run_command(struct worker_pool *p, struct envelope *e, struct buf *data, struct buf *out)
{
    char msg[256] = "";
    int code;
    host_cmd_fn fn = host_command_find(e->action);
    buf_reset(data);
    buf_reset(out);
    if (!fn) {
        code = CMD_UNKNOWN_ACTION;      /* the core checks first; kept for safety */
    } else {
        code = fn(p->d, e->data, e->len, data, msg, sizeof msg);
        if (code < 0) {
            log_warn("command %s failed in its handler", e->action);
            buf_reset(data);
            code = CMD_HANDLER_ERROR;
        }
    }
    struct envelope *r = NULL;
    if (cmd_result_write(out, e->req_id, code, msg[0] ? msg : NULL, data->p, data->len) == 0)
        r = envelope_new(ENV_CMD_EXEC_RESULT, out->p, out->len);
    if (!r) {
        r = envelope_new(ENV_CMD_EXEC_RESULT, NULL, 0);   /* core answers -6 */
        if (!r)
            return;
        code = CMD_HANDLER_ERROR;
    }
    r->code = code;
    r->seq = e->seq;
    r->origin = e->origin;
    r->req_id = e->req_id;
    r->conn_id = e->conn_id;
    memcpy(r->action, e->action, sizeof r->action);
    envq_push_force(&p->d->core_q, r);
}

static void *worker_main(void *arg)
{
    struct worker_pool *p = arg;
    struct buf data = BUF_INIT, out = BUF_INIT;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head)
            break;                      /* stop, and nothing left to do */
        struct envelope *e = p->head;
        p->head = e->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        run_command(p, e, &data, &out);
        envelope_free(e);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    buf_free(&data);
    buf_free(&out);
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
    for (; p->started < p->n; p->started++)
        if (pthread_create(&p->threads[p->started], NULL, worker_main, p) != 0)
            return -1;
    return 0;
}

void worker_pool_submit(struct worker_pool *p, struct envelope *e)
{
    e->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = e;
    else
        p->head = e;
    p->tail = e;
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
}

void worker_pool_free(struct worker_pool *p)
{
    if (!p)
        return;
    envelope_free_list(p->head);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}
