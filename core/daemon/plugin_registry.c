/* plugin_registry.c - which plugins are loaded, and everything that needs
 * the whole set: (re)loading from the plugin paths, routing events to
 * strategies, actions to command plugins, messages between plugins, the
 * shared store, and the plugins' part of `polarisctl status`.
 *
 * Manifests, versions and dependency order are decided in Lua
 * (lua/polaris/loader.lua) in one trusted loader state per load; the C side
 * applies the permission policy, builds each sandbox and swaps plugins in.
 * A reload rebuilds only plugins whose files changed; a rebuilt plugin
 * replaces the old one only if it initialises, and the old one finishes what
 * is already in its mailbox before it is freed (envelopes hold references).
 *
 * Uses: plugin, worker_pool, envq, lua-cjson, Lua 5.4. */
#include "daemon/plugin_registry.h"
#include "daemon/daemon.h"
#include "lib/log.h"
#include "daemon/plugin_host.h"
#include "runtime/plugin_trust.h"
#include "lib/sd_notify.h"
#include "daemon/worker_pool.h"

#include <dirent.h>
#include <stdatomic.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct kv {
    struct kv *next;
    char *key;
    char owner[64];               /* the plugin that set it: its share counts it */
    char *json;
    size_t len;
};

struct plugin_registry {
    struct plugin_home home;      /* what its plugins see of it (runtime/port.h) */
    struct daemon *d;
    pthread_mutex_t mu;            /* guards plugins[] */
    struct plugin **plugins;       /* load order; failed ones are kept for status */
    struct plugin *loading_now;    /* being built by registry_prepare: shown in status */
    struct plugin_limits limits;   /* per-plugin bounds, copied from the config (home_limits) */
    bool limits_set;
    size_t n;
    unsigned max_errors;
    pthread_mutex_t kv_mu;
    struct kv *kv;
    size_t kv_bytes, kv_max;
    _Atomic bool stopping;
    void (*retire)(void *, struct plugin *);
    void *retire_ctx;
    const struct config *loading_cfg;   /* during registry_load only */
    char proc_root[256];           /* monitor.proc_root, fixed at the first load */
    char lua_dir[256];             /* plugins.lua_dir, likewise */
    char runtime_err[512];         /* the last load could not run the loader */
    /* What routing needs of plugins[], rebuilt (under mu) whenever it
     * changes: a plugin's handlers and routes are fixed once it is in the
     * set, so for most events (no router rules, no "*" handler, an eventId
     * no plugin takes) the core learns "forward it" without looking at
     * every plugin. */
    uint64_t *handled;             /* sorted eventIds some plugin takes */
    size_t nhandled;
    bool any_handler;              /* a plugin takes "*" */
    bool any_routes;               /* a router has rules */
    _Atomic uint64_t index_gen;    /* +1 per rebuild: route_index copies follow it */
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Called with mu held, after plugins[] changed. Without memory for the
 * index, every event takes the full look (any_handler). */
static void index_rebuild(struct plugin_registry *r)
{
    size_t total = 0;
    r->any_handler = r->any_routes = false;
    for (size_t i = 0; i < r->n; i++) {
        total += r->plugins[i]->nhandlers;
        r->any_routes |= r->plugins[i]->nroutes > 0;
    }
    free(r->handled);
    r->handled = total ? malloc(total * sizeof *r->handled) : NULL;
    r->nhandled = 0;
    if (total && !r->handled) {
        r->any_handler = true;
        return;
    }
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

static uint64_t config_sig(const struct config *cfg, const char *id)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a over "key=value;" */
    for (int i = 0; i < cfg->nplugin_cfg; i++) {
        const struct plugin_kv *kv = &cfg->plugin_cfg[i];
        if (strcmp(kv->plugin, id) != 0)
            continue;
        for (const char *parts[] = {kv->key, "=", kv->value, ";"}, **s = parts; s < parts + 4; s++)
            for (const char *c = *s; *c; c++)
                h = (h ^ (unsigned char)*c) * 1099511628211ull;
    }
    return h;
}

void home_push_config(struct plugin_home *h, const char *id, lua_State *L)
{
    struct plugin_registry *r = h->reg;
    lua_newtable(L);
    const struct config *cfg = r->loading_cfg;
    for (int i = 0; cfg && i < cfg->nplugin_cfg; i++) {
        const struct plugin_kv *kv = &cfg->plugin_cfg[i];
        if (strcmp(kv->plugin, id) != 0)
            continue;
        /* numbers and booleans typed, everything else a string */
        char *end;
        long long n = strtoll(kv->value, &end, 10);
        if (*kv->value && !*end)
            lua_pushinteger(L, n);
        else if (strcmp(kv->value, "true") == 0 || strcmp(kv->value, "false") == 0)
            lua_pushboolean(L, kv->value[0] == 't');
        else
            lua_pushstring(L, kv->value);
        lua_setfield(L, -2, kv->key);
    }
}

static struct plugin *stopped_stand_in(struct plugin_registry *r, const struct plugin *old,
                                       const char *dep, const char *how);

static bool depends_on(const struct plugin *p, const char *id)
{
    for (size_t i = 0; i < p->ndeps; i++)
        if (strcmp(p->deps[i], id) == 0)
            return true;
    return false;
}

static void retire_now(struct plugin_registry *r, struct plugin *p)
{
    if (r->retire)
        r->retire(r->retire_ctx, p);
    if (p->host)
        plugin_host_retire(p);
    plugin_unref(p);            /* finishes its mailbox, then stop/cleanup */
}

/* Unloading a plugin stops every plugin that depends on it, directly or
 * through another: each is replaced in the set by a stand-in in Error that
 * names the dependency (what status shows), handles nothing, and is built
 * afresh by the next reload that satisfies it. */
int registry_unload(struct plugin_registry *r, const char *id)
{
    pthread_mutex_lock(&r->mu);
    struct plugin **gone = calloc(r->n + 1, sizeof *gone);
    if (!gone) {
        pthread_mutex_unlock(&r->mu);
        log_error("plugin %s: out of memory unloading it", id);
        return -2;
    }
    size_t ngone = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->plugins[i]->id, id) == 0) {
            gone[ngone++] = r->plugins[i];
            memmove(&r->plugins[i], &r->plugins[i + 1], (r->n - i - 1) * sizeof *r->plugins);
            r->n--;
            break;
        }
    }
    if (!ngone) {
        pthread_mutex_unlock(&r->mu);
        free(gone);
        return -1;
    }
    /* gone[] grows as dependents stop: each is checked against all before it */
    for (size_t g = 0; g < ngone; g++) {
        for (size_t i = 0; i < r->n; i++) {
            struct plugin *q = r->plugins[i];
            if (!q->sb.L || atomic_load(&q->state) != PLUGIN_ACTIVE || !depends_on(q, gone[g]->id))
                continue;
            struct plugin *s = stopped_stand_in(r, q, gone[g]->id, g == 0 ? "was unloaded" : "was stopped");
            if (!s) {
                log_error("plugin %s: out of memory stopping it (its dependency '%s' left); it keeps running",
                          q->id, gone[g]->id);
                continue;
            }
            log_error("plugin %s stopped: %s", q->id, s->last_error);
            r->plugins[i] = s;
            gone[ngone++] = q;
        }
    }
    index_rebuild(r);
    pthread_mutex_unlock(&r->mu);
    log_info("plugin %s unloaded (it comes back on the next reload while its files exist)", id);
    for (size_t g = 0; g < ngone; g++)
        retire_now(r, gone[g]);
    free(gone);
    return 0;
}

bool home_stopping(struct plugin_home *h)
{
    struct plugin_registry *r = h->reg;
    return atomic_load(&r->stopping);
}

void registry_set_stopping(struct plugin_registry *r)
{
    atomic_store(&r->stopping, true);
}

void registry_forget_waits(struct plugin_registry *r, struct plugin *p)
{
    if (r->retire)
        r->retire(r->retire_ctx, p);
}

void registry_on_retire(struct plugin_registry *r, void (*fn)(void *, struct plugin *), void *ctx)
{
    r->retire = fn;
    r->retire_ctx = ctx;
}

static const struct {
    const char *name;
    unsigned bit;
} perm_names[] = {
    {"FileSystemAccess", PERM_FS}, {"ExecuteSyscall", PERM_EXEC}, {"NetworkAccess", PERM_NET},
    {"ReadVmState", PERM_VM_READ}, {"WriteVmState", PERM_VM_WRITE}, {"MemoryAllocation", PERM_MEM},
    {"ReadHostState", PERM_HOST_READ},
};

struct plugin_registry *registry_new(struct daemon *d)
{
    struct plugin_registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->home.reg = r;
    r->d = d;
    r->max_errors = 5;
    r->kv_max = 1u << 20;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->kv_mu, NULL);
    return r;
}

struct plugin_home *registry_home(struct plugin_registry *r)
{
    return &r->home;
}

void registry_free(struct plugin_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        plugin_unref(r->plugins[i]);
    free(r->plugins);
    free(r->handled);
    while (r->kv) {
        struct kv *k = r->kv;
        r->kv = k->next;
        free(k->key);
        free(k->json);
        free(k);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->kv_mu);
    free(r);
}

uint64_t home_started_ms(struct plugin_home *h)
{
    struct plugin_registry *r = h->reg;
    return r->d->started_wall_ms;
}

unsigned home_max_errors(struct plugin_home *h)
{
    struct plugin_registry *r = h->reg;
    return r->max_errors;
}

static void set_limits(struct plugin_registry *r, const struct config *cfg)
{
    struct plugin_limits l = {cfg->plugin_timers_max, cfg->plugin_waits_max, cfg->plugin_exec_max,
                              cfg->plugin_emit_per_s, cfg->plugin_mailbox_max,
                              cfg->plugin_shared_max_bytes};
    pthread_mutex_lock(&r->mu);
    r->limits = l;
    r->limits_set = true;
    pthread_mutex_unlock(&r->mu);
}

/* A copy made on the core thread at each (re)load: workers and the reload
 * thread never read d->cfg, which a reload frees. */
void home_limits(struct plugin_home *h, struct plugin_limits *out)
{
    struct plugin_registry *r = h->reg;
    pthread_mutex_lock(&r->mu);
    bool set = r->limits_set;
    *out = r->limits;
    pthread_mutex_unlock(&r->mu);
    if (!set) {
        struct config defaults;
        config_defaults(&defaults);
        *out = (struct plugin_limits){defaults.plugin_timers_max, defaults.plugin_waits_max,
                                      defaults.plugin_exec_max, defaults.plugin_emit_per_s,
                                      defaults.plugin_mailbox_max, defaults.plugin_shared_max_bytes};
    }
}

void home_schedule(struct plugin_home *h, struct job *j)
{
    struct plugin_registry *r = h->reg;
    if (r->d->workers && !worker_pool_stopped(r->d->workers)) {
        worker_pool_submit_job(r->d->workers, j);
    } else {
        j->run(j);                 /* --check or shutdown: no workers, run inline */
    }
}

void home_schedule_urgent(struct plugin_home *h, struct job *j)
{
    struct plugin_registry *r = h->reg;
    if (r->d->workers && !worker_pool_stopped(r->d->workers)) {
        worker_pool_submit_urgent(r->d->workers, j);
    } else {
        j->run(j);
    }
}

void home_to_core(struct plugin_home *h, struct envelope *e)
{
    struct plugin_registry *r = h->reg;
    envq_push_force(&r->d->core_q, e);
}

int home_emit(struct plugin_home *h, struct envelope *e)
{
    struct plugin_registry *r = h->reg;
    if (envq_push(&r->d->core_q, e) < 0) {
        envelope_free(e);
        return -1;
    }
    return 0;
}

static void release_chain(struct envelope *e)
{
    for (unsigned i = 0; i < e->chain_len; i++)
        plugin_unref(e->chain[i]);
    free(e->chain);
    e->chain = NULL;
    e->chain_len = e->chain_pos = 0;
}

/* Events a worker finishes during one job go back to the core as one batch
 * (one wakeup), not one push each. */
static __thread struct envlist done;
static __thread bool in_job;

void home_job_begin(void)
{
    in_job = true;
}

void home_job_flush(struct plugin_home *h)
{
    struct plugin_registry *r = h->reg;
    struct envelope *batch = envlist_take(&done);
    if (batch)
        envq_push_list_force(&r->d->core_q, batch);
}

void home_job_end(struct plugin_home *h)
{
    home_job_flush(h);
    in_job = false;
}

/* Every event leaves its strategies through the core, finished or dropped:
 * that ends its time counted against core_queue_max, which is what lets
 * paused apps resume. */
static void hand_back(struct plugin_registry *r, struct envelope *e, enum env_type type)
{
    release_chain(e);
    e->type = type;
    if (type == ENV_STRATEGY_DROPPED)
        e->len = 0;
    if (in_job)
        envlist_push(&done, e);
    else
        envq_push_force(&r->d->core_q, e);
}

void home_chain_done(struct plugin_home *h, struct envelope *e)
{
    struct plugin_registry *r = h->reg;
    hand_back(r, e, ENV_STRATEGY_COMPLETE);
}

void home_chain_drop(struct plugin_home *h, struct envelope *e)
{
    struct plugin_registry *r = h->reg;
    hand_back(r, e, ENV_STRATEGY_DROPPED);
}

static const struct route_rule *router_rule(struct plugin_registry *r, uint64_t event_id)
{
    const struct route_rule *any = NULL;
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
        for (size_t i = 0; i < r->n && n < max; i++) {
            if (!usable(r->plugins[i], event_id, from))
                continue;
            plugin_ref(r->plugins[i]);
            out[n++] = r->plugins[i];
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

struct plugin *registry_find(struct plugin_registry *r, const char *id)
{
    struct plugin *found = NULL;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n && !found; i++)
        if (strcmp(r->plugins[i]->id, id) == 0 && r->plugins[i]->sb.L) {
            found = r->plugins[i];
            plugin_ref(found);
        }
    pthread_mutex_unlock(&r->mu);
    return found;
}

const char *home_proc_root(struct plugin_home *h)
{
    struct plugin_registry *r = h->reg;
    return r->proc_root[0] ? r->proc_root : "/proc";
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
            snprintf(e->action, sizeof e->action, "%s", topic);
            snprintf(e->from, sizeof e->from, "%s", from);
            plugin_post(t, e);
            sent++;
        }
        plugin_unref(t);
    }
    return id && sent == 0 ? -2 : (int)sent;
}

/* ---- the shared store: JSON values, surviving reloads ---- */

int home_shared_get(struct plugin_home *h, const char *key, struct buf *out)
{
    struct plugin_registry *r = h->reg;
    int rc = -1;
    pthread_mutex_lock(&r->kv_mu);
    for (struct kv *k = r->kv; k; k = k->next)
        if (strcmp(k->key, key) == 0) {
            rc = buf_append(out, k->json, k->len);
            break;
        }
    pthread_mutex_unlock(&r->kv_mu);
    return rc;
}

int home_shared_set(struct plugin_home *h, const char *owner, size_t limit, const char *key,
                        const char *json, size_t len)
{
    struct plugin_registry *r = h->reg;
    pthread_mutex_lock(&r->kv_mu);
    struct kv **pp = &r->kv;
    size_t mine = 0;                           /* what the owner's other keys hold */
    struct kv **found = NULL;
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0)
            found = pp;
        else if (strcmp((*pp)->owner, owner) == 0)
            mine += strlen((*pp)->key) + (*pp)->len;
    }
    size_t need = json && len ? strlen(key) + len : 0;
    if (need && mine + need > limit) {
        /* refused before anything changes: the old value stays */
        pthread_mutex_unlock(&r->kv_mu);
        return -2;
    }
    if (found) {                               /* replace or delete */
        struct kv *k = *found;
        r->kv_bytes -= strlen(k->key) + k->len;
        *found = k->next;
        free(k->key);
        free(k->json);
        free(k);
    }
    int rc = 0;
    if (need) {
        struct kv *k = malloc(sizeof *k);
        if (r->kv_bytes + need > r->kv_max || !k) {
            free(k);
            rc = -1;
        } else {
            k->key = strdup(key);
            k->json = malloc(len);
            if (!k->key || !k->json) {
                free(k->key);
                free(k->json);
                free(k);
                rc = -1;
            } else {
                memcpy(k->json, json, len);
                k->len = len;
                snprintf(k->owner, sizeof k->owner, "%s", owner);
                k->next = r->kv;
                r->kv = k;
                r->kv_bytes += need;
            }
        }
    }
    pthread_mutex_unlock(&r->kv_mu);
    return rc;
}

static void module_path(char *path, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(path, cap, "%s/", dir);
    for (size_t i = 0; name[i] && (size_t)n + 5 < cap; i++)
        path[n++] = name[i] == '.' ? '/' : name[i];
    snprintf(path + n, cap - (size_t)n, ".lua");
}

/* A module runs inside the plugin that requires it, with its permissions:
 * it passes the same checks as the plugin's own file, at the config in
 * force, wherever it comes from (the plugin's folder or the runtime's
 * plugins.lua_dir). */
static int module_trusted(struct plugin_registry *r, const char *path, char *err, size_t errlen)
{
    const struct config *cfg = r->d->cfg;
    char why[300];
    if (cfg && cfg->strict_modes && trust_check_modes(path, why, sizeof why) < 0) {
        snprintf(err, errlen, "untrusted: %s", why);
        return -1;
    }
    if (cfg && cfg->require_signed) {
        const char *keys[CONFIG_MAX_LIST];
        for (int i = 0; i < cfg->trusted_keys.n; i++)
            keys[i] = cfg->trusted_keys.v[i];
        if (trust_verify(path, path, keys, (size_t)cfg->trusted_keys.n, why, sizeof why) < 0) {
            snprintf(err, errlen, "unsigned: %s", why);
            return -1;
        }
    }
    return 0;
}

int home_module_source(struct plugin_home *h, struct plugin *p, const char *name,
                           struct buf *out, char *chunk, size_t chunklen, char *err, size_t errlen)
{
    struct plugin_registry *r = h->reg;
    char path[1024];
    if (p && p->module_dir[0]) {
        module_path(path, sizeof path, p->module_dir, name);
        if (access(path, F_OK) == 0) {
            if (module_trusted(r, path, err, errlen) < 0)
                return -1;
            snprintf(chunk, chunklen, "@%s", path);
            return buf_read_file(out, path, 1u << 20, err, errlen);
        }
    }
    module_path(path, sizeof path, r->lua_dir, name);
    if (access(path, F_OK) == 0 && module_trusted(r, path, err, errlen) < 0)
        return -1;
    snprintf(chunk, chunklen, "@%s", path);
    return buf_read_file(out, path, 1u << 20, err, errlen);
}

/* ---- status ---- */

const char *registry_runtime_error(struct plugin_registry *r)
{
    return r->runtime_err[0] ? r->runtime_err : NULL;
}

/* READY with a STATUS= line systemctl status shows: a plugin in Error does
 * not keep the service from starting, but the operator sees it there. */
void registry_notify_ready(struct plugin_registry *r)
{
    char msg[1024];
    size_t errors = 0, total;
    int n = snprintf(msg, sizeof msg, "READY=1\nSTATUS=");
    size_t names = (size_t)n;
    char list[700] = "";
    size_t ll = 0;
    pthread_mutex_lock(&r->mu);
    total = r->n;
    for (size_t i = 0; i < r->n; i++)
        if (atomic_load(&r->plugins[i]->state) == PLUGIN_ERROR) {
            errors++;
            if (ll + strlen(r->plugins[i]->id) + 8 < sizeof list)
                ll += (size_t)snprintf(list + ll, sizeof list - ll, "%s%s", ll ? ", " : "",
                                       r->plugins[i]->id);
            else if (ll + 5 < sizeof list && !strstr(list, "..."))
                ll += (size_t)snprintf(list + ll, sizeof list - ll, ", ...");
        }
    pthread_mutex_unlock(&r->mu);
    if (errors)
        snprintf(msg + names, sizeof msg - names, "ready; %zu of %zu plugins in Error: %s",
                 errors, total, list);
    else
        snprintf(msg + names, sizeof msg - names, "ready; %zu plugins Active", total);
    sd_notify_send(msg);
}

int registry_status_json(struct plugin_registry *r, struct buf *b)
{
    int rc = buf_putc(b, '[');
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        struct plugin *p = r->plugins[i];
        int st = atomic_load(&p->state);
        if (i)
            rc |= buf_putc(b, ',');
        rc |= buf_puts(b, "{\"id\":");
        rc |= buf_json_cstr(b, p->id);
        rc |= buf_puts(b, ",\"version\":");
        rc |= buf_json_cstr(b, p->version);
        rc |= buf_puts(b, ",\"type\":");
        rc |= buf_json_cstr(b, p->type);
        rc |= buf_puts(b, ",\"state\":");
        rc |= buf_json_cstr(b, plugin_state_name(st));
        rc |= buf_puts(b, ",\"file\":");
        rc |= buf_json_cstr(b, p->file);
        double up = p->loaded_mono_ns ? (mono_ns() - p->loaded_mono_ns) / 1e9 : 0;
        rc |= buf_printf(b, ",\"isolation\":\"%s\",", p->isolated ? "process" : "in-process");
        if (p->isolated)
            rc |= plugin_host_status_json(p, b) | buf_putc(b, ',');
        size_t mem = p->isolated ? (size_t)atomic_load(&p->remote_mem) : p->sb.L ? p->sb.mem_used : 0;
        uint64_t cpu = p->isolated ? atomic_load(&p->remote_cpu_ns) : p->sb.cpu_ns_total;
        rc |= buf_printf(b, "\"uptime_s\":%.0f,\"memory_bytes\":%zu,\"memory_limit\":%zu,"
                         "\"cpu_ms\":%.3f,\"events\":%llu,\"commands\":%llu,\"messages\":%llu,"
                         "\"errors\":%llu,\"ignored_edits\":%llu",
                         up, mem, p->mem_limit,
                         cpu / 1e6,
                         (unsigned long long)atomic_load(&p->events),
                         (unsigned long long)atomic_load(&p->commands),
                         (unsigned long long)atomic_load(&p->messages),
                         (unsigned long long)atomic_load(&p->errors),
                         (unsigned long long)atomic_load(&p->ignored_edits));
        /* what it makes the daemon hold, and what was refused over a bound */
        static const char *const kinds[REFUSED_N] = {"timers", "waits", "exec", "emit", "mailbox",
                                                     "shared"};
        uint64_t refused = atomic_load(&p->remote_refused);
        for (int k = 0; k < REFUSED_N; k++)
            refused += atomic_load(&p->refused[k]);
        rc |= buf_printf(b, ",\"held\":{\"timers\":%u,\"mailbox\":%u},\"refused\":%llu,\"refused_by\":{",
                         atomic_load(&p->ntimers), atomic_load(&p->nmsgs), (unsigned long long)refused);
        for (int k = 0; k < REFUSED_N; k++)
            rc |= buf_printf(b, "%s\"%s\":%llu", k ? "," : "", kinds[k],
                             (unsigned long long)atomic_load(&p->refused[k]));
        rc |= buf_puts(b, "},\"last_error\":");
        pthread_mutex_lock(&p->mu);
        rc |= buf_json_cstr(b, p->last_error[0] ? p->last_error : NULL);
        rc |= buf_puts(b, ",\"status\":");
        rc |= buf_puts(b, p->status_json[0] ? p->status_json : "null");
        pthread_mutex_unlock(&p->mu);
        rc |= buf_puts(b, ",\"actions\":[");
        for (size_t k = 0; k < p->ncmds; k++) {
            if (k)
                rc |= buf_putc(b, ',');
            rc |= buf_json_cstr(b, p->cmds[k].name);
        }
        rc |= buf_puts(b, "]}");
    }
    /* the one a reload is building, as it goes (its tables are still
     * being filled on the reload's thread: only what is safe to read) */
    struct plugin *l = r->loading_now;
    if (l) {
        if (r->n)
            rc |= buf_putc(b, ',');
        rc |= buf_puts(b, "{\"id\":");
        rc |= buf_json_cstr(b, l->id);
        rc |= buf_puts(b, ",\"version\":");
        rc |= buf_json_cstr(b, l->version);
        rc |= buf_puts(b, ",\"state\":");
        rc |= buf_json_cstr(b, plugin_state_name(atomic_load(&l->state)));
        rc |= buf_printf(b, ",\"isolation\":\"%s\",\"reloading\":true,\"uptime_s\":0,"
                         "\"memory_bytes\":0,\"memory_limit\":%zu,\"cpu_ms\":0,\"events\":0,"
                         "\"errors\":0,\"last_error\":null,\"actions\":[]}",
                         l->isolated ? "process" : "in-process", l->mem_limit);
    }
    pthread_mutex_unlock(&r->mu);
    return rc | buf_putc(b, ']');
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

/* ---- loading ---- */

static int l_list_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *dir = opendir(path);
    if (!dir) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_newtable(L);
    int i = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        if (de->d_name[0] == '.')
            continue;
        lua_pushstring(L, de->d_name);
        lua_rawseti(L, -2, ++i);
    }
    closedir(dir);
    return 1;
}

static int l_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    FILE *f = fopen(path, "rb");
    if (!f) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char tmp[4096];
    size_t n, total = 0;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0 && total < (1u << 20)) {
        luaL_addlstring(&b, tmp, n);
        total += n;
    }
    fclose(f);
    luaL_pushresult(&b);
    return 1;
}

static uint64_t file_sig(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    /* ownership and mode too: a plugin made writable by others, or a new
     * signature beside it, is rebuilt, so the trust checks run again */
    char sig[PATH_MAX];
    struct stat ss;
    trust_sig_path(path, sig, sizeof sig);
    uint64_t sigm = stat(sig, &ss) == 0 ? (uint64_t)ss.st_mtim.tv_nsec ^ (uint64_t)ss.st_ino << 20 : 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    if (stat(dirname(dir), &ss) == 0)
        sigm ^= ((uint64_t)ss.st_mode << 24) ^ ((uint64_t)ss.st_uid << 8);
    return (uint64_t)st.st_mtim.tv_sec * 1000000007u ^ (uint64_t)st.st_mtim.tv_nsec ^
           (uint64_t)st.st_size << 40 ^ (uint64_t)st.st_ino ^
           ((uint64_t)st.st_mode << 48) ^ ((uint64_t)st.st_uid << 32) ^ sigm;
}

static void field_str(lua_State *L, const char *k, char *out, size_t cap)
{
    lua_getfield(L, -1, k);
    snprintf(out, cap, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
}

static char **field_list(lua_State *L, const char *k, size_t *n)
{
    *n = 0;
    lua_getfield(L, -1, k);
    size_t len = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
    char **v = len ? calloc(len, sizeof *v) : NULL;
    for (size_t i = 0; v && i < len; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        if (lua_isstring(L, -1))
            v[(*n)++] = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return v;
}

/* The keys of the entry's table k (its dependencies' ids); -1 without
 * memory for them. */
static int field_keys(lua_State *L, const char *k, char ***out, size_t *n)
{
    int rc = 0;
    *n = 0;
    *out = NULL;
    lua_getfield(L, -1, k);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pop(L, 1);
            if (rc < 0 || lua_type(L, -1) != LUA_TSTRING)
                continue;
            char **v = realloc(*out, (*n + 1) * sizeof *v);
            char *dup = v ? strdup(lua_tostring(L, -1)) : NULL;
            if (v)
                *out = v;
            if (!dup)
                rc = -1;
            else
                (*out)[(*n)++] = dup;
        }
    }
    lua_pop(L, 1);
    return rc;
}

/* The operator may grant a plugin more paths than its manifest names:
 * [plugin.<id>] allowed_paths = /srv/logs /tmp/captures (the config is the
 * operator's, so this widens nothing a plugin author controls). */
static void add_configured_paths(const struct config *cfg, struct plugin *p)
{
    for (int i = 0; i < cfg->nplugin_cfg; i++) {
        const struct plugin_kv *kv = &cfg->plugin_cfg[i];
        if (strcmp(kv->plugin, p->id) != 0 || strcmp(kv->key, "allowed_paths") != 0)
            continue;
        char tmp[sizeof kv->value];
        snprintf(tmp, sizeof tmp, "%s", kv->value);
        for (char *save = NULL, *t = strtok_r(tmp, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
            char **n = realloc(p->allowed_paths, (p->nallowed + 1) * sizeof *n);
            char *dup = n ? strdup(t) : NULL;
            if (n)
                p->allowed_paths = n;
            if (!dup) {
                log_error("plugin %s: out of memory adding allowed path %s", p->id, t);
                return;
            }
            p->allowed_paths[p->nallowed++] = dup;
        }
    }
}

static bool under_trusted(const struct config *cfg, const char *file);

/* [plugin.<id>] key as a number with an optional K, M or G; def when unset
 * or unreadable (logged). */
static uint64_t operator_setting(const struct config *cfg, const char *id, const char *key, uint64_t def)
{
    for (int i = 0; i < cfg->nplugin_cfg; i++) {
        const struct plugin_kv *kv = &cfg->plugin_cfg[i];
        if (strcmp(kv->plugin, id) != 0 || strcmp(kv->key, key) != 0)
            continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(kv->value, &end, 10);
        uint64_t mul = *end == 'K' ? 1u << 10 : *end == 'M' ? 1u << 20 : *end == 'G' ? 1u << 30 : 1;
        if (mul > 1)
            end++;
        if (errno || end == kv->value || *end || v > UINT64_MAX / mul) {
            log_error("plugin %s: [plugin.%s] %s = %s is not a number; using %llu", id, id, key,
                      kv->value, (unsigned long long)def);
            return def;
        }
        return v * mul;
    }
    return def;
}

/* A manifest's limits only lower what the operator set: [plugins] or
 * [plugin.<id>] in the config. Raising memory takes a granted
 * MemoryAllocation, and stops at [plugins] memory_limit_max (an operator's
 * own higher setting stands). CPU is never raised by a manifest. */
static void apply_limits(lua_State *L, struct plugin *p, const struct config *cfg, bool final)
{
    uint64_t mem = operator_setting(cfg, p->id, "memory_limit", cfg->plugin_memory_limit);
    uint64_t ms = operator_setting(cfg, p->id, "cpu_time_limit_ms", cfg->plugin_cpu_ms);
    lua_getfield(L, -1, "memory_limit");
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
        uint64_t want = (uint64_t)lua_tointeger(L, -1);
        uint64_t cap = cfg->plugin_memory_limit_max > mem ? cfg->plugin_memory_limit_max : mem;
        if (want <= mem)
            mem = want;
        else if (p->perms & PERM_MEM)
            mem = want < cap ? want : cap;
        else if (final)
            log_warn("plugin %s: its manifest's memory_limit %llu is above the config's %llu, and it was "
                     "not granted MemoryAllocation: %llu", p->id, (unsigned long long)want,
                     (unsigned long long)mem, (unsigned long long)mem);
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "cpu_time_limit_ms");
    if (lua_isnumber(L, -1) && lua_tonumber(L, -1) > 0 && lua_tonumber(L, -1) < (double)ms)
        p->budget_ns = (uint64_t)(lua_tonumber(L, -1) * 1e6);
    else
        p->budget_ns = ms * 1000000;
    lua_pop(L, 1);
    p->mem_limit = (size_t)mem;
}

/* Fills p from the loader's entry on the top of L; applies the policy. */
static void from_entry(lua_State *L, struct plugin *p, const struct config *cfg)
{
    field_str(L, "id", p->id, sizeof p->id);
    field_str(L, "name", p->name, sizeof p->name);
    field_str(L, "version", p->version, sizeof p->version);
    field_str(L, "plugin_type", p->type, sizeof p->type);
    field_str(L, "file", p->file, sizeof p->file);
    field_str(L, "entry_function", p->entry_fn, sizeof p->entry_fn);
    field_str(L, "manifest_file", p->manifest, sizeof p->manifest);
    field_str(L, "module_dir", p->module_dir, sizeof p->module_dir);
    apply_limits(L, p, cfg, false);            /* again once its permissions are known */
    p->allowed_paths = field_list(L, "allowed_paths", &p->nallowed);
    add_configured_paths(cfg, p);
    p->forbidden_paths = field_list(L, "forbidden_paths", &p->nforbidden);
    p->file_sig = file_sig(p->file);
    p->manifest_sig = file_sig(p->manifest);
    p->config_sig = config_sig(cfg, p->id);
    lua_getfield(L, -1, "error");
    if (lua_isstring(L, -1)) {
        snprintf(p->last_error, sizeof p->last_error, "%s", lua_tostring(L, -1));
        atomic_store(&p->state, PLUGIN_ERROR);
    }
    lua_pop(L, 1);
    if (field_keys(L, "dependencies", &p->deps, &p->ndeps) < 0 && atomic_load(&p->state) != PLUGIN_ERROR) {
        snprintf(p->last_error, sizeof p->last_error, "out of memory reading its dependencies");
        atomic_store(&p->state, PLUGIN_ERROR);
    }
    if (atomic_load(&p->state) == PLUGIN_ERROR)
        return;
    /* trust before any of its code runs: who may write it, who signed it */
    char why[sizeof p->last_error - 32];
    const char *files[] = {p->manifest, p->file};
    for (int i = 0; i < 2 && cfg->strict_modes; i++)
        if (trust_check_modes(files[i], why, sizeof why) < 0) {
            snprintf(p->last_error, sizeof p->last_error, "untrusted: %s", why);
            atomic_store(&p->state, PLUGIN_ERROR);
            return;
        }
    if (cfg->require_signed) {
        const char *keys[CONFIG_MAX_LIST];
        for (int i = 0; i < cfg->trusted_keys.n; i++)
            keys[i] = cfg->trusted_keys.v[i];
        if (trust_verify(p->manifest, p->file, keys, (size_t)cfg->trusted_keys.n, why, sizeof why) < 0) {
            snprintf(p->last_error, sizeof p->last_error, "unsigned: %s", why);
            atomic_store(&p->state, PLUGIN_ERROR);
            return;
        }
    }
    bool whitelist = strcmp(cfg->policy, "whitelist") == 0;
    lua_getfield(L, -1, "permissions");
    size_t np = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
    for (size_t i = 1; i <= np; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        const char *name = lua_tostring(L, -1);
        bool listed = name && str_list_has(&cfg->permissions, name);
        if (name && listed != whitelist) {
            snprintf(p->last_error, sizeof p->last_error,
                     "permission not granted by the %s policy: %s", cfg->policy, name);
            atomic_store(&p->state, PLUGIN_ERROR);
        }
        for (size_t k = 0; name && k < sizeof perm_names / sizeof perm_names[0]; k++)
            if (strcmp(name, perm_names[k].name) == 0)
                p->perms |= perm_names[k].bit;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (atomic_load(&p->state) == PLUGIN_ERROR)
        return;
    apply_limits(L, p, cfg, true);
    lua_getfield(L, -1, "isolation");
    bool asked = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "process") == 0;
    lua_pop(L, 1);
    bool forced = strcmp(cfg->isolation, "process") == 0 ||
                  (strcmp(cfg->isolation, "outside_trusted") == 0 && !under_trusted(cfg, p->file));
    bool router = strcmp(p->type, "Router") == 0;
    if (router && asked) {
        snprintf(p->last_error, sizeof p->last_error, "isolation \"process\": a Router is consulted "
                 "by the core for every event and cannot run out of process");
        atomic_store(&p->state, PLUGIN_ERROR);
    } else if (router && forced && strcmp(cfg->isolation, "outside_trusted") == 0) {
        snprintf(p->last_error, sizeof p->last_error, "untrusted: a Router outside plugins.trusted_paths "
                 "would have to run out of process, which a Router cannot");
        atomic_store(&p->state, PLUGIN_ERROR);
    } else {
        p->isolated = (asked || forced) && !router;
    }
}

/* plugins.trusted_paths, or the shipped plugin directories by default. */
static bool under_trusted(const struct config *cfg, const char *file)
{
    static const char *const shipped[] = {POLARIS_DATADIR "/plugins", POLARIS_DATADIR "/strategies"};
    size_t n = cfg->trusted_paths.n ? (size_t)cfg->trusted_paths.n : 2;
    for (size_t i = 0; i < n; i++) {
        const char *dir = cfg->trusted_paths.n ? cfg->trusted_paths.v[i] : shipped[i];
        char real[PATH_MAX];
        const char *d = realpath(dir, real) ? real : dir;
        size_t len = strlen(d);
        if (strncmp(file, d, len) == 0 && file[len] == '/')
            return true;
    }
    return false;
}

static struct plugin *plugin_new(struct plugin_registry *r)
{
    struct plugin *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->home = &r->home;
    atomic_init(&p->refs, 1);
    p->job.run = plugin_run_job;
    p->cmd_job.run = plugin_run_cmd_job;
    p->callbacks_ref = LUA_NOREF;
    pthread_mutex_init(&p->mu, NULL);
    return p;
}

/* What stays in the set for a plugin stopped because a dependency left:
 * its identity for status, no state, so it handles nothing. */
static struct plugin *stopped_stand_in(struct plugin_registry *r, const struct plugin *old,
                                       const char *dep, const char *how)
{
    struct plugin *s = plugin_new(r);
    if (!s)
        return NULL;
    memcpy(s->id, old->id, sizeof s->id);
    memcpy(s->name, old->name, sizeof s->name);
    memcpy(s->version, old->version, sizeof s->version);
    memcpy(s->type, old->type, sizeof s->type);
    memcpy(s->file, old->file, sizeof s->file);
    memcpy(s->manifest, old->manifest, sizeof s->manifest);
    s->mem_limit = old->mem_limit;
    snprintf(s->last_error, sizeof s->last_error, "dependency '%s' %s", dep, how);
    atomic_store(&s->state, PLUGIN_ERROR);
    return s;
}

static struct plugin *find_in(struct plugin **v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i]->id, id) == 0)
            return v[i];
    return NULL;
}

/* Whether every dependency of the entry on the top of L runs now, in a
 * version its range accepts. Decided against the set being built (next),
 * not the files: a dependency whose reload failed keeps its running
 * version, and that is what its dependents use. The loader's reason
 * (dependency_error) names a dependency that is not there at all. */
static bool deps_loaded(lua_State *L, struct plugin **v, size_t n, char *why, size_t whylen)
{
    bool ok = true;
    lua_getfield(L, -1, "dependencies");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return true;
    }
    lua_pushnil(L);
    while (ok && lua_next(L, -2)) {
        const char *dep = lua_tostring(L, -2);
        const char *range = lua_tostring(L, -1);
        struct plugin *d = dep ? find_in(v, n, dep) : NULL;
        if (!d || atomic_load(&d->state) != PLUGIN_ACTIVE) {
            lua_getfield(L, -4, "dependency_error");
            if (lua_isstring(L, -1))
                snprintf(why, whylen, "%s", lua_tostring(L, -1));
            else
                snprintf(why, whylen, "dependency '%s' did not load%s%s", dep ? dep : "?",
                         d && d->last_error[0] ? ": " : "", d ? d->last_error : "");
            lua_pop(L, 1);
            ok = false;
        } else if (range) {
            lua_getglobal(L, "package");
            lua_getfield(L, -1, "loaded");
            lua_getfield(L, -1, "polaris.semver");
            lua_getfield(L, -1, "satisfies");
            lua_pushstring(L, d->version);
            lua_pushstring(L, range);
            if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
                snprintf(why, whylen, "dependency '%s': cannot check version %s against %s: %s", dep,
                         d->version, range, lua_tostring(L, -1));
                ok = false;
            } else if (!lua_toboolean(L, -1)) {
                snprintf(why, whylen, "dependency '%s' is %s, needs %s", dep, d->version, range);
                ok = false;
            }
            lua_pop(L, 4);
        }
        lua_pop(L, 1);
    }
    if (!ok)
        lua_pop(L, 1);                 /* the key lua_next left */
    lua_pop(L, 1);
    return ok;
}

static bool command_taken(struct plugin **v, size_t n, const struct plugin *p, char *why, size_t whylen)
{
    for (size_t k = 0; k < p->ncmds; k++)
        for (size_t i = 0; i < n; i++)
            if (v[i] != p && strcmp(v[i]->id, p->id) != 0 && v[i]->sb.L &&
                plugin_has_command(v[i], p->cmds[k].name)) {
                snprintf(why, whylen, "action '%s' is already offered by plugin '%s'",
                         p->cmds[k].name, v[i]->id);
                return true;
            }
    return false;
}

static lua_State *loader_state(const struct config *cfg, char *err, size_t errlen)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    luaL_openlibs(L);
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_pop(L, 1);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua", cfg->lua_dir);
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "polaris.loader");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        snprintf(err, errlen, "cannot load the plugin loader from %s: %s", cfg->lua_dir,
                 lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    return L;
}

/* Loads p (in process or in its host) while status shows it: Loading,
 * Loaded, Initializing as it goes (a reload runs off the core thread). */
static int load_shown(struct plugin_registry *r, struct plugin *p)
{
    pthread_mutex_lock(&r->mu);
    r->loading_now = p;
    pthread_mutex_unlock(&r->mu);
    int rc = p->isolated ? plugin_host_load(r->d->hosts, p) : plugin_load(p);
    pthread_mutex_lock(&r->mu);
    r->loading_now = NULL;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* A plugin set built by registry_prepare, waiting for registry_commit. */
struct reload {
    struct plugin **next, **old;
    size_t nn, nold;
    int failures;
};

struct reload *registry_prepare(struct plugin_registry *r, const struct config *cfg, struct buf *report)
{
    char err[512];
    struct reload *rl = calloc(1, sizeof *rl);
    if (!rl) {
        log_error("reload: out of memory");
        return NULL;
    }
    r->max_errors = cfg->plugin_max_errors;
    r->kv_max = cfg->shared_max_bytes;
    r->loading_cfg = cfg;
    if (!r->proc_root[0])
        snprintf(r->proc_root, sizeof r->proc_root, "%s", cfg->proc_root);
    if (!r->lua_dir[0])
        snprintf(r->lua_dir, sizeof r->lua_dir, "%s", cfg->lua_dir);
    int failures = 0;
    size_t nreported = 0;
    if (report)
        buf_putc(report, '[');
    r->runtime_err[0] = '\0';
    lua_State *L = loader_state(cfg, err, sizeof err);
    if (!L) {
        log_error("%s", err);
        snprintf(r->runtime_err, sizeof r->runtime_err, "%s", err);
        if (report) {
            buf_puts(report, "{\"id\":null,\"outcome\":\"failed\",\"reason\":");
            buf_json_cstr(report, err);
            buf_puts(report, "}]");
        }
        rl->failures = 1;
        return rl;
    }
    lua_getfield(L, -1, "plan");
    lua_newtable(L);
    for (int i = 0; i < cfg->plugin_paths.n; i++) {
        lua_pushstring(L, cfg->plugin_paths.v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, l_list_dir);
    lua_pushcfunction(L, l_read_file);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        log_error("plugin loader failed: %s", lua_tostring(L, -1));
        snprintf(r->runtime_err, sizeof r->runtime_err, "plugin loader failed: %s", lua_tostring(L, -1));
        lua_close(L);
        if (report)
            buf_putc(report, ']');
        rl->failures = 1;
        return rl;
    }
    size_t count = lua_rawlen(L, -1);
    struct plugin **next = calloc(count + 1, sizeof *next);
    size_t nn = 0;
    pthread_mutex_lock(&r->mu);
    struct plugin **old = r->plugins;
    size_t nold = r->n;
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 1; next && i <= count; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        struct plugin *p = plugin_new(r);
        if (!p) {
            lua_pop(L, 1);
            continue;
        }
        from_entry(L, p, cfg);
        struct plugin *prev = find_in(old, nold, p->id);
        const char *outcome;
        char why[300] = "";
        /* a dependent whose dependency left or changed incompatibly stops:
         * its running version is not kept, as it would be when its own
         * files fail */
        bool dep_failed = false;
        if (atomic_load(&p->state) != PLUGIN_ERROR && !deps_loaded(L, next, nn, why, sizeof why)) {
            snprintf(p->last_error, sizeof p->last_error, "%s", why);
            atomic_store(&p->state, PLUGIN_ERROR);
            dep_failed = true;
        }
        if (prev && prev->sb.L && atomic_load(&prev->state) == PLUGIN_ACTIVE &&
            prev->file_sig == p->file_sig && prev->manifest_sig == p->manifest_sig &&
            prev->config_sig == p->config_sig &&
            atomic_load(&p->state) != PLUGIN_ERROR) {
            plugin_unref(p);                   /* unchanged: keep the running one */
            p = prev;
            plugin_ref(p);
            next[nn++] = p;
            outcome = "unchanged";
        } else if (atomic_load(&p->state) != PLUGIN_ERROR && load_shown(r, p) == 0 &&
                   !command_taken(next, nn, p, why, sizeof why)) {
            next[nn++] = p;
            outcome = prev ? "reloaded" : "loaded";
            log_info("plugin %s %s (%s)", p->id, outcome, p->version);
        } else {
            if (why[0] && atomic_load(&p->state) == PLUGIN_ACTIVE) {
                snprintf(p->last_error, sizeof p->last_error, "%s", why);
                atomic_store(&p->state, PLUGIN_ERROR);
                p->callbacks_ref = LUA_NOREF;
                if (p->host)
                    plugin_host_retire(p);
                else
                    sandbox_close(&p->sb);
            }
            failures++;
            if (prev && prev->sb.L && atomic_load(&prev->state) == PLUGIN_ACTIVE && !dep_failed) {
                /* a failed reload keeps the running version */
                plugin_set_error(prev, "reload failed, still running %s: %s", prev->version, p->last_error);
                log_error("plugin %s: reload failed, keeping version %s: %s", p->id, prev->version,
                          p->last_error);
                plugin_ref(prev);
                next[nn++] = prev;
                outcome = "kept";
                snprintf(why, sizeof why, "%s", p->last_error);
                plugin_unref(p);
                p = prev;
            } else {
                if (prev && prev->sb.L && atomic_load(&prev->state) == PLUGIN_ACTIVE)
                    log_error("plugin %s stopped: %s", p->id, p->last_error);
                else
                    log_error("plugin %s not loaded: %s", p->id, p->last_error);
                next[nn++] = p;
                outcome = prev && prev->sb.L && atomic_load(&prev->state) == PLUGIN_ACTIVE ? "stopped" : "failed";
                snprintf(why, sizeof why, "%s", p->last_error);
            }
        }
        if (report) {
            if (nreported++)
                buf_putc(report, ',');
            buf_puts(report, "{\"id\":");
            buf_json_cstr(report, p->id);
            buf_puts(report, ",\"outcome\":");
            buf_json_cstr(report, outcome);
            buf_puts(report, ",\"reason\":");
            buf_json_cstr(report, why[0] ? why : NULL);
            buf_putc(report, '}');
        }
        lua_pop(L, 1);
    }
    lua_close(L);
    r->loading_cfg = NULL;
    /* plugins whose files went away: the operator sees them leave too */
    for (size_t i = 0; report && i < nold; i++)
        if (!find_in(next, nn, old[i]->id)) {
            if (nreported++)
                buf_putc(report, ',');
            buf_puts(report, "{\"id\":");
            buf_json_cstr(report, old[i]->id);
            buf_puts(report, ",\"outcome\":\"removed\",\"reason\":null}");
        }
    if (report)
        buf_putc(report, ']');
    rl->next = next;
    rl->nn = nn;
    rl->old = old;
    rl->nold = nold;
    rl->failures = failures;
    return rl;
}

int registry_commit(struct plugin_registry *r, struct reload *rl)
{
    if (!rl)
        return 1;
    int failures = rl->failures;
    struct plugin **next = rl->next, **old = rl->old;
    size_t nn = rl->nn, nold = rl->nold;
    free(rl);
    if (!next)
        return failures;                        /* the loader could not run: nothing changes */
    /* isolated plugins came up on the reload's thread; their channels are
     * watched from the core's loop, so from here */
    for (size_t i = 0; i < nn; i++)
        if (next[i]->host && find_in(old, nold, next[i]->id) != next[i])
            plugin_host_activate(next[i]);
    pthread_mutex_lock(&r->mu);
    r->plugins = next;
    r->n = nn;
    index_rebuild(r);
    pthread_mutex_unlock(&r->mu);
    /* the old set: each keeps running what is in its mailbox, then frees */
    for (size_t i = 0; i < nold; i++) {
        if (find_in(next, nn, old[i]->id) != old[i]) {
            if (atomic_load(&old[i]->state) == PLUGIN_ACTIVE)
                log_info("plugin %s %s", old[i]->id, find_in(next, nn, old[i]->id) ? "replaced" : "unloaded");
            if (r->retire)
                r->retire(r->retire_ctx, old[i]);   /* its timers stop */
            if (old[i]->host)
                plugin_host_retire(old[i]);         /* its process, once nothing refers to it */
        }
        plugin_unref(old[i]);
    }
    free(old);
    return failures;
}

void registry_configure_hosts(struct plugin_registry *r, const struct config *cfg)
{
    set_limits(r, cfg);
    if (r->d->hosts)
        plugin_hosts_configure(r->d->hosts, cfg);
}

int registry_load(struct plugin_registry *r, const struct config *cfg, struct buf *report)
{
    registry_configure_hosts(r, cfg);
    return registry_commit(r, registry_prepare(r, cfg, report));
}
