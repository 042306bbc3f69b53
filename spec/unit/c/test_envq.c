/* test_envq.c - the bounded envelope queue under several producer threads
 * with an ev_async consumer, as the daemon uses it. */
#include "harness.h"
#include "lib/envq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#define PRODUCERS 4
#define PER_PRODUCER 20000

struct ctx {
    struct envq q;
    struct ev_loop *loop;
    ev_async wake;
    uint64_t next[PRODUCERS];
    uint64_t received;
    int order_errors;
    _Atomic int refused;
};

struct producer {
    struct ctx *c;
    int id;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (uint64_t i = 0; i < PER_PRODUCER; i++) {
        struct envelope *e = envelope_new(ENV_IPC_EVENT, NULL, 0);
        e->ev.seq = (uint32_t)p->id;    /* the producer, for the order check */
        e->ev.id = i;
        /* bounded: back off and retry when full, as ingress does */
        while (envq_push(&p->c->q, e) < 0) {
            atomic_fetch_add(&p->c->refused, 1);
            sched_yield();
        }
    }
    return NULL;
}

static void drain_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct ctx *c = w->data;
    struct envelope *e = envq_drain(&c->q, NULL);
    while (e) {
        struct envelope *n = e->next;
        if (e->ev.id != c->next[e->ev.seq])
            c->order_errors++;
        c->next[e->ev.seq] = e->ev.id + 1;
        c->received++;
        envelope_free(e);
        e = n;
    }
    if (c->received == (uint64_t)PRODUCERS * PER_PRODUCER)
        ev_break(loop, EVBREAK_ALL);
}

TEST(envq_many_producers_in_order_nothing_lost)
{
    struct ctx *c = calloc(1, sizeof *c);
    REQUIRE(c);
    REQUIRE(envq_init(&c->q, 64) == 0);
    c->loop = ev_loop_new(EVFLAG_AUTO);
    ev_async_init(&c->wake, drain_cb);
    c->wake.data = c;
    ev_async_start(c->loop, &c->wake);
    envq_attach(&c->q, c->loop, &c->wake);
    pthread_t t[PRODUCERS];
    struct producer p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){c, i};
        pthread_create(&t[i], NULL, produce, &p[i]);
    }
    ev_run(c->loop, 0);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    CHECK(c->received == (uint64_t)PRODUCERS * PER_PRODUCER);
    CHECK(c->order_errors == 0);
    CHECK(c->q.high_water <= 64);
    ev_loop_destroy(c->loop);
    envq_destroy(&c->q);
    free(c);
}

TEST(envq_bound_and_full_flag)
{
    struct envq q;
    REQUIRE(envq_init(&q, 2) == 0);
    struct envelope *a = envelope_new(ENV_IPC_EVENT, "a", 1);
    struct envelope *b = envelope_new(ENV_IPC_EVENT, "b", 1);
    struct envelope *c = envelope_new(ENV_IPC_EVENT, "c", 1);
    CHECK(envq_push(&q, a) == 0);
    CHECK(envq_push(&q, b) == 0);
    CHECK(envq_push(&q, c) == -1);          /* refused, still ours */
    envq_push_force(&q, c);                 /* force ignores the bound */
    CHECK(envq_count(&q) == 3);
    bool was_full = false;
    struct envelope *h = envq_drain(&q, &was_full);
    CHECK(was_full);
    CHECK(h == a && h->next == b && b->next == c && c->next == NULL);
    envelope_free_list(h);
    h = envq_drain(&q, &was_full);
    CHECK(h == NULL && !was_full);
    envq_destroy(&q);
}

/* A rewritten payload goes over the old one when the allocation has room,
 * else into a new envelope: the header is kept either way, the index
 * (the old payload's) cleared. */
TEST(envelope_rewrite_keeps_the_header_in_place_or_not)
{
    const char *orig = "{\"eventId\":5,\"params\":{}}";
    for (size_t grow = 0; grow <= 4096; grow = grow ? grow * 2 : 1) {
        struct envelope *e = envelope_new(ENV_IPC_EVENT, orig, strlen(orig));
        REQUIRE(e != NULL);
        e->ev.id = 5;
        e->pid = 1234;
        snprintf(e->from, sizeof e->from, "%s", "plug");
        e->ev.index.n = 3;
        char *text = malloc(strlen(orig) + grow + 1);
        REQUIRE(text != NULL);
        memset(text, 'x', strlen(orig) + grow);
        text[strlen(orig) + grow] = '\0';
        size_t room = malloc_usable_size(e);
        struct envelope *n = envelope_rewrite(e, text, strlen(text));
        REQUIRE(n != NULL);
        CHECK((n == e) == (sizeof *e + strlen(text) + 1 <= room));
        CHECK(n->len == strlen(text) && memcmp(n->data, text, n->len) == 0 && n->data[n->len] == '\0');
        CHECK(n->ev.id == 5 && n->pid == 1234 && strcmp(n->from, "plug") == 0);
        CHECK(n->ev.rewritten == 1 && n->ev.index.n == 0);
        envelope_free(n);
        free(text);
    }
    /* an empty payload, no bytes to copy from (UBSan: no memmove from NULL) */
    struct envelope *e = envelope_new(ENV_IPC_EVENT, "{}", 2);
    REQUIRE(e != NULL);
    struct envelope *n = envelope_rewrite(e, NULL, 0);
    REQUIRE(n != NULL);
    CHECK(n->len == 0 && n->data[0] == '\0' && n->ev.rewritten == 1);
    envelope_free(n);
}
