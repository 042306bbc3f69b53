/* plugin_registry.c - the set of loaded plugins: making and freeing it,
 * finding a plugin, unloading one (and stopping what depends on it),
 * retiring plugins that leave, and the set's part of `polarisctl status`
 * and of READY. How the set is built is plugin_reload.c; routing over it
 * plugin_routing.c; what its plugins call (the runtime's port)
 * plugin_home.c; the policy a manifest meets plugin_policy.c; the shared
 * store shared_store.c. They share plugin_registry_internal.h.
 *
 * Uses: plugin, plugin_host (retiring isolated plugins), sd_notify. */
#include "daemon/plugin_registry_internal.h"
#include "daemon/daemon.h"
#include "lib/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daemon/plugin_host.h"
#include "lib/sd_notify.h"

#include <lauxlib.h>


bool registry_depends_on(const struct plugin *p, const char *id)
{
    for (size_t i = 0; i < p->ndeps; i++)
        if (strcmp(p->deps[i], id) == 0)
            return true;
    return false;
}

void registry_retire_now(struct plugin_registry *r, struct plugin *p)
{
    pthread_mutex_lock(&r->mu);
    if (r->nleaving == r->leaving_cap) {
        size_t cap = r->leaving_cap ? r->leaving_cap * 2 : 8;
        struct plugin **v = realloc(r->leaving, cap * sizeof *v);
        if (v) {
            r->leaving = v;
            r->leaving_cap = cap;
        }
    }
    if (r->nleaving < r->leaving_cap) {    /* without memory it is simply not shown */
        r->leaving[r->nleaving++] = p;
        p->leaving = true;
    }
    pthread_mutex_unlock(&r->mu);
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
            if (!q->sb.L || atomic_load(&q->state) != PLUGIN_ACTIVE || !registry_depends_on(q, gone[g]->id))
                continue;
            struct plugin *s = registry_stopped_stand_in(r, q, gone[g]->id, g == 0 ? "was unloaded" : "was stopped");
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
    routing_index_rebuild(r);
    pthread_mutex_unlock(&r->mu);
    log_info("plugin %s unloaded (it comes back on the next reload while its files exist)", id);
    for (size_t g = 0; g < ngone; g++)
        registry_retire_now(r, gone[g]);
    free(gone);
    return 0;
}

void registry_set_stopping(struct plugin_registry *r)
{
    atomic_store(&r->stopping, true);
}

void registry_on_retire(struct plugin_registry *r, void (*fn)(void *, struct plugin *), void *ctx)
{
    r->retire = fn;
    r->retire_ctx = ctx;
}

struct plugin_registry *registry_new(struct daemon *d)
{
    struct plugin_registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->home.reg = r;
    r->d = d;
    struct config defaults;
    config_defaults(&defaults);
    r->limits = policy_limits_of(&defaults);
    r->max_errors = 5;
    r->kv_max = 1u << 20;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->kv_mu, NULL);
    return r;
}

void registry_free(struct plugin_registry *r)
{
    if (!r)
        return;
    /* out of the set before the first goes: a stop() that sends to the
     * others finds none rather than one already freed */
    pthread_mutex_lock(&r->mu);
    struct plugin **set = r->plugins;
    size_t n = r->n;
    r->plugins = NULL;
    r->n = 0;
    routing_index_rebuild(r);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < n; i++)
        plugin_unref(set[i]);
    free(set);
    /* Still leaving now means still referenced, which after the workers
     * stopped only a thread the watchdog abandoned does: it may come back
     * and free its plugin, which then looks for the registry. Kept, as the
     * worker pool keeps itself for that thread. */
    pthread_mutex_lock(&r->mu);
    bool kept = r->nleaving > 0;
    pthread_mutex_unlock(&r->mu);
    if (kept) {
        log_warn("plugins: %zu still in use by a stuck worker at exit; their registry is kept", r->nleaving);
        return;
    }
    free(r->leaving);
    free(r->handled);
    free(r->strategists);
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

/* {"id":..,"version":..,"type":.., the start of every plugin's entry */
static int put_ident(struct buf *b, const char *id, const char *version, const char *type)
{
    int rc = buf_puts(b, "{\"id\":") | buf_json_cstr(b, id);
    rc |= buf_puts(b, ",\"version\":") | buf_json_cstr(b, version);
    return rc | buf_puts(b, ",\"type\":") | buf_json_cstr(b, type);
}

int registry_leaving_json(struct plugin_registry *r, struct buf *b)
{
    int rc = buf_putc(b, '[');
    pthread_mutex_lock(&r->mu);
    /* out of the set: finishing its mailbox (Unloading), or freed a short
     * while ago (Unloaded); a leaving plugin leaves the list under mu
     * before it is freed, so these are safe to read */
    bool first = true;
    for (size_t i = 0; i < r->nleaving; i++) {
        struct plugin *p = r->leaving[i];
        rc |= (first ? 0 : buf_putc(b, ',')) | put_ident(b, p->id, p->version, p->type);
        first = false;
        rc |= buf_printf(b, ",\"state\":\"Unloading\",\"isolation\":\"%s\",\"events\":%llu,"
                         "\"errors\":%llu,\"mailbox\":%u,\"actions\":[]}",
                         p->isolated ? "process" : "in-process",
                         (unsigned long long)atomic_load(&p->events),
                         (unsigned long long)atomic_load(&p->errors), atomic_load(&p->nmsgs));
    }
    uint64_t now = mono_ns();
    for (unsigned i = 0; i < UNLOADED_SHOWN_MAX; i++) {
        const struct unloaded_note *n = &r->unloaded[i];
        if (!n->at_ns || now - n->at_ns > UNLOADED_SHOWN_NS)
            continue;
        rc |= (first ? 0 : buf_putc(b, ',')) | put_ident(b, n->id, n->version, n->type);
        first = false;
        rc |= buf_printf(b, ",\"state\":\"Unloaded\",\"unloaded_s_ago\":%.0f,\"actions\":[]}",
                         (now - n->at_ns) / 1e9);
    }
    pthread_mutex_unlock(&r->mu);
    return rc | buf_putc(b, ']');
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
        rc |= put_ident(b, p->id, p->version, p->type);
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

struct plugin *registry_plugin_new(struct plugin_registry *r)
{
    struct plugin *p = plugin_alloc();
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
struct plugin *registry_stopped_stand_in(struct plugin_registry *r, const struct plugin *old,
                                       const char *dep, const char *how)
{
    struct plugin *s = registry_plugin_new(r);
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
