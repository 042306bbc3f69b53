/* envq.c - the bounded envelope queue between execution domains.
 *
 * A mutex-protected intrusive list: pushes are O(1) and never allocate, the
 * consumer takes the whole list in one lock and wakes once per batch. Only
 * the empty -> non-empty transition sends the ev_async, so a busy producer
 * costs one wakeup per drain, not one per envelope. */
#include "lib/envq.h"

int envq_init(struct envq *q, size_t max)
{
    q->head = q->tail = NULL;
    q->count = 0;
    q->max = max ? max : 1;
    q->full_seen = false;
    q->high_water = 0;
    q->loop = NULL;
    q->wake = NULL;
    atomic_init(&q->outside, 0);
    return pthread_mutex_init(&q->mu, NULL) == 0 ? 0 : -1;
}

void envq_destroy(struct envq *q)
{
    envelope_free_list(q->head);
    q->head = q->tail = NULL;
    q->count = 0;
    pthread_mutex_destroy(&q->mu);
}

void envq_attach(struct envq *q, struct ev_loop *loop, ev_async *wake)
{
    pthread_mutex_lock(&q->mu);
    q->loop = loop;
    q->wake = wake;
    /* producers wake the consumer only on empty -> non-empty: anything
     * queued before it attached (events replayed from the spool) needs this
     * one wakeup, or it and everything after it would wait forever */
    bool pending = q->head != NULL;
    pthread_mutex_unlock(&q->mu);
    if (pending && wake)
        ev_async_send(loop, wake);
}

static void append_locked(struct envq *q, struct envelope *e, bool *wake)
{
    e->next = NULL;
    *wake = q->head == NULL;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->count++;
    if (q->count > q->high_water)
        q->high_water = q->count;
}

static void wake_consumer(struct envq *q, bool wake)
{
    /* loop and wake are set once before any producer starts */
    if (wake && q->loop)
        ev_async_send(q->loop, q->wake);
}

int envq_push(struct envq *q, struct envelope *e)
{
    bool wake;
    pthread_mutex_lock(&q->mu);
    if (q->count + atomic_load(&q->outside) >= q->max) {
        q->full_seen = true;
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    append_locked(q, e, &wake);
    pthread_mutex_unlock(&q->mu);
    wake_consumer(q, wake);
    return 0;
}

void envq_push_force(struct envq *q, struct envelope *e)
{
    bool wake;
    pthread_mutex_lock(&q->mu);
    append_locked(q, e, &wake);
    pthread_mutex_unlock(&q->mu);
    wake_consumer(q, wake);
}

size_t envq_push_some(struct envq *q, struct envelope **list)
{
    size_t taken = 0;
    bool wake = false;
    pthread_mutex_lock(&q->mu);
    bool was_empty = q->head == NULL;
    while (*list && q->count + atomic_load(&q->outside) < q->max) {
        struct envelope *e = *list;
        *list = e->next;
        bool w;
        append_locked(q, e, &w);
        taken++;
    }
    if (*list)
        q->full_seen = true;
    wake = was_empty && taken > 0;
    pthread_mutex_unlock(&q->mu);
    wake_consumer(q, wake);
    return taken;
}

void envq_push_list_force(struct envq *q, struct envelope *head)
{
    if (!head)
        return;
    bool w, wake;
    pthread_mutex_lock(&q->mu);
    wake = q->head == NULL;
    while (head) {
        struct envelope *e = head;
        head = e->next;
        append_locked(q, e, &w);
    }
    pthread_mutex_unlock(&q->mu);
    wake_consumer(q, wake);
}

struct envelope *envq_drain(struct envq *q, bool *was_full)
{
    pthread_mutex_lock(&q->mu);
    struct envelope *h = q->head;
    q->head = q->tail = NULL;
    q->count = 0;
    if (was_full)
        *was_full = q->full_seen;
    q->full_seen = false;
    pthread_mutex_unlock(&q->mu);
    return h;
}

size_t envq_count(struct envq *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}
