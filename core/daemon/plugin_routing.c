/* plugin_routing.c - which plugins an event, an action or a message goes
 * to: the routing index (the eventIds some plugin takes, copied by the
 * ingress to decide which events may skip the core), a Router plugin's
 * rules, strategies in load order, the command offering an action, and
 * messages between plugins.
 *
 * Uses: plugin, port (home_limits: a mailbox's bound). */
#include "daemon/plugin_registry_internal.h"
#include "daemon/daemon.h"
#include "lib/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Called with mu held, after plugins[] changed. Without memory for the
 * index, every event takes the full look (any_handler). */
void routing_index_rebuild(struct plugin_registry *r)
{
    size_t total = 0;
    r->any_handler = r->any_routes = false;
    for (size_t i = 0; i < r->n; i++) {
        total += r->plugins[i]->nhandlers;
        r->any_routes |= r->plugins[i]->nroutes > 0;
    }
    free(r->handled);
    free(r->strategists);
    r->handled = total ? malloc(total * sizeof *r->handled) : NULL;
    r->strategists = r->n ? malloc(r->n * sizeof *r->strategists) : NULL;
    r->nhandled = r->nstrategists = 0;
    if ((total && !r->handled) || (r->n && !r->strategists)) {
        /* no room for the index: every event is routed, through every
         * plugin (registry_route walks plugins[] then) */
        free(r->strategists);
        r->strategists = NULL;
        r->any_handler = true;
        atomic_fetch_add_explicit(&r->index_gen, 1, memory_order_release);
        return;
    }
    for (size_t i = 0; i < r->n; i++)
        if (r->plugins[i]->nhandlers)
            r->strategists[r->nstrategists++] = r->plugins[i];
    for (size_t i = 0; i < r->n; i++)
        for (size_t k = 0; k < r->plugins[i]->nhandlers; k++) {
            const struct handler *h = &r->plugins[i]->handlers[k];
            if (h->any)
                r->any_handler = true;
            else
                r->handled[r->nhandled++] = h->event_id;
        }
    if (r->nhandled)
        qsort(r->handled, r->nhandled, sizeof *r->handled, cmp_u64);
    atomic_fetch_add_explicit(&r->index_gen, 1, memory_order_release);
}

static bool sorted_has(const uint64_t *ids, size_t n, uint64_t event_id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < event_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && ids[lo] == event_id;
}

/* Whether the full look is needed for event_id (mu held). */
static bool index_may_route(const struct plugin_registry *r, uint64_t event_id)
{
    if (r->any_handler || r->any_routes)
        return true;
    return sorted_has(r->handled, r->nhandled, event_id);
}

void registry_index_sync(struct plugin_registry *r, struct route_index *x)
{
    if (atomic_load_explicit(&r->index_gen, memory_order_acquire) == x->gen)
        return;
    pthread_mutex_lock(&r->mu);
    x->all = r->any_handler || r->any_routes;
    if (r->nhandled > x->cap) {
        uint64_t *ids = realloc(x->ids, r->nhandled * sizeof *ids);
        if (!ids) {
            x->all = true;                 /* no room for the copy: route everything */
            x->n = 0;
            x->gen = atomic_load(&r->index_gen);
            pthread_mutex_unlock(&r->mu);
            return;
        }
        x->ids = ids;
        x->cap = r->nhandled;
    }
    if (r->nhandled)
        memcpy(x->ids, r->handled, r->nhandled * sizeof *x->ids);
    x->n = r->nhandled;
    x->gen = atomic_load(&r->index_gen);
    pthread_mutex_unlock(&r->mu);
}

bool route_index_may_route(const struct route_index *x, uint64_t event_id)
{
    return x->gen == 0 || x->all || sorted_has(x->ids, x->n, event_id);
}

void route_index_free(struct route_index *x)
{
    free(x->ids);
    *x = (struct route_index){0};
}

static const struct route_rule *router_rule(struct plugin_registry *r, uint64_t event_id)
{
    const struct route_rule *any = NULL;
    if (!r->any_routes)
        return NULL;                          /* no Router: not a walk of every plugin an event */
    for (size_t i = 0; i < r->n; i++) {
        struct plugin *p = r->plugins[i];
        if (!p->nroutes || atomic_load(&p->state) != PLUGIN_ACTIVE)
            continue;
        for (size_t k = 0; k < p->nroutes; k++) {
            if (!p->routes[k].any && p->routes[k].event_id == event_id)
                return &p->routes[k];
            if (p->routes[k].any && !any)
                any = &p->routes[k];
        }
        return any;                           /* one router: the first Active */
    }
    return NULL;
}

/* A plugin that went to Error stays in the chain and passes events through
 * untouched: routing around it would let later events overtake earlier ones
 * still in its mailbox. (A plugin that never loaded registered nothing.) */
static bool usable(const struct plugin *p, uint64_t event_id, const char *from)
{
    return plugin_handles(p, event_id) &&
           !(from && from[0] && strcmp(from, p->id) == 0);   /* never its own emits */
}

size_t registry_route(struct plugin_registry *r, uint64_t event_id, const char *from,
                      struct plugin **out, size_t max, bool *drop)
{
    size_t n = 0;
    *drop = false;
    pthread_mutex_lock(&r->mu);
    if (!index_may_route(r, event_id)) {
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    const struct route_rule *rule = router_rule(r, event_id);
    if (rule && rule->verdict == ROUTE_DROP) {
        *drop = true;
    } else if (rule && rule->verdict == ROUTE_LIST) {
        for (size_t k = 0; k < rule->nids && n < max; k++)
            for (size_t i = 0; i < r->n; i++)
                if (strcmp(r->plugins[i]->id, rule->ids[k]) == 0 && usable(r->plugins[i], event_id, from)) {
                    plugin_ref(r->plugins[i]);
                    out[n++] = r->plugins[i];
                }
    } else if (!rule || rule->verdict != ROUTE_FORWARD) {
        /* only the plugins with handlers, unless there was no room to
         * note them */
        struct plugin **set = r->strategists ? r->strategists : r->plugins;
        size_t nset = r->strategists ? r->nstrategists : r->n;
        for (size_t i = 0; i < nset && n < max; i++) {
            if (!usable(set[i], event_id, from))
                continue;
            plugin_ref(set[i]);
            out[n++] = set[i];
        }
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

struct plugin *registry_command(struct plugin_registry *r, const char *action)
{
    struct plugin *found = NULL;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n && !found; i++) {
        struct plugin *p = r->plugins[i];
        if (p->sb.L && plugin_has_command(p, action)) {
            plugin_ref(p);
            found = p;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return found;
}

int home_message(struct plugin_home *h, const char *from, const char *id,
                     const char *topic, const char *json, size_t len)
{
    struct plugin_registry *r = h->reg;
    return registry_message_perm(r, from, id, topic, json, len, 0);
}

int registry_message_perm(struct plugin_registry *r, const char *from, const char *id,
                          const char *topic, const char *json, size_t len, unsigned perm)
{
    struct plugin *targets[256];
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n && n < 256; i++) {
        struct plugin *p = r->plugins[i];
        if (atomic_load(&p->state) != PLUGIN_ACTIVE)
            continue;
        if (id ? strcmp(p->id, id) != 0 : strcmp(p->id, from) == 0)
            continue;
        if ((p->perms & perm) != perm)
            continue;
        plugin_ref(p);
        targets[n++] = p;
    }
    pthread_mutex_unlock(&r->mu);
    if (id && n == 0)
        return -1;
    struct plugin_limits lim;
    home_limits(&r->home, &lim);
    size_t sent = 0;
    for (size_t i = 0; i < n; i++) {
        struct plugin *t = targets[i];
        /* a full mailbox takes no more messages: they would be the daemon's
         * memory. Out of process, the host reads its channel at once and
         * queues them in its own (limited) address space. */
        if (!t->remote_post && atomic_load(&t->nmsgs) >= lim.mailbox) {
            plugin_refuse(t, REFUSED_MAILBOX);
            plugin_unref(t);
            continue;
        }
        struct envelope *e = envelope_new(ENV_PLUGIN_MSG, json, len);
        if (e) {
            snprintf(e->topic, sizeof e->topic, "%s", topic);
            snprintf(e->from, sizeof e->from, "%s", from);
            plugin_post(t, e);
            sent++;
        }
        plugin_unref(t);
    }
    return id && sent == 0 ? -2 : (int)sent;
}

int home_actions_json(struct plugin_home *h, struct buf *b)
{
    struct plugin_registry *r = h->reg;
    int rc = buf_putc(b, '[');
    bool first = true;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        struct plugin *p = r->plugins[i];
        if (atomic_load(&p->state) != PLUGIN_ACTIVE)
            continue;
        for (size_t k = 0; k < p->ncmds; k++) {
            if (!first)
                rc |= buf_putc(b, ',');
            first = false;
            rc |= buf_json_cstr(b, p->cmds[k].name);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc | buf_putc(b, ']');
}
