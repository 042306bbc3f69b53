/* plugin_home.c - the plugin runtime's port (runtime/port.h) as polarisd
 * implements it: a plugin's jobs run on the worker pool, what it sends goes
 * on the core queue (a worker's finished events as one batch per job), and
 * the settings it runs under are the registry's copy of the config.
 *
 * Uses: worker_pool, envq, plugin_policy (module trust), shared_store. */
#include "daemon/plugin_registry_internal.h"
#include "daemon/daemon.h"
#include "lib/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/plugin_trust.h"
#include "daemon/worker_pool.h"

#include <lauxlib.h>
#include <limits.h>

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

bool home_stopping(struct plugin_home *h)
{
    struct plugin_registry *r = h->reg;
    return atomic_load(&r->stopping);
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

/* A copy made on the core thread at each (re)load: workers and the reload
 * thread never read d->cfg, which a reload frees. */
void home_limits(struct plugin_home *h, struct plugin_limits *out)
{
    struct plugin_registry *r = h->reg;
    pthread_mutex_lock(&r->mu);
    *out = r->limits;
    pthread_mutex_unlock(&r->mu);
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

/* Events a worker finishes during one job go back to the core as one batch
 * (one wakeup), not one push each; and the refs their chains held on the
 * job's own plugin are let go once a batch, as one count: refs is a line
 * the core writes for every event it routes (struct plugin). The job's own
 * ref holds that plugin until after home_job_end. A ref on any other
 * plugin of a chain goes at once: a job the watchdog abandons never
 * reaches its end, and must not keep another plugin pinned. */
static __thread struct envlist done;
static __thread bool in_job;
static __thread struct plugin *job_plugin;
static __thread int job_unrefs;

static void unrefs_flush(void)
{
    int n = job_unrefs;
    job_unrefs = 0;                /* before: letting go may run a nested job */
    plugin_unref_n(job_plugin, n);
}

static void release_chain(struct envelope *e)
{
    for (unsigned i = 0; i < e->ev.chain_len; i++) {
        struct plugin *q = env_chain_at(e, i);
        if (in_job && q == job_plugin)
            job_unrefs++;
        else
            plugin_unref(q);
    }
    if (e->ev.chain_len > 1)
        free(e->ev.chain);
    e->ev.chain = NULL;
    e->ev.chain_len = e->ev.chain_pos = 0;
}

void home_job_begin(struct plugin *p)
{
    unrefs_flush();                /* a job run inside another's (a joined pool) */
    in_job = true;
    job_plugin = p;
}

void home_job_flush(struct plugin_home *h)
{
    struct plugin_registry *r = h->reg;
    struct envelope *batch = envlist_take(&done);
    if (batch)
        envq_push_list_force(&r->d->core_q, batch);
    unrefs_flush();
}

void home_job_end(struct plugin_home *h)
{
    home_job_flush(h);
    in_job = false;
    job_plugin = NULL;
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

const char *home_proc_root(struct plugin_home *h)
{
    struct plugin_registry *r = h->reg;
    return r->proc_root[0] ? r->proc_root : "/proc";
}

static void module_path(char *path, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(path, cap, "%s/", dir);
    for (size_t i = 0; name[i] && (size_t)n + 5 < cap; i++)
        path[n++] = name[i] == '.' ? '/' : name[i];
    snprintf(path + n, cap - (size_t)n, ".lua");
}

int home_module_source(struct plugin_home *h, struct plugin *p, const char *name,
                           struct buf *out, char *chunk, size_t chunklen, char *err, size_t errlen)
{
    struct plugin_registry *r = h->reg;
    char path[1024];
    if (p && p->module_dir[0]) {
        module_path(path, sizeof path, p->module_dir, name);
        if (access(path, F_OK) == 0) {
            if (policy_module_trusted(r, path, err, errlen) < 0)
                return -1;
            snprintf(chunk, chunklen, "@%s", path);
            return buf_read_file(out, path, 1u << 20, err, errlen);
        }
    }
    module_path(path, sizeof path, r->lua_dir, name);
    if (access(path, F_OK) == 0 && policy_module_trusted(r, path, err, errlen) < 0)
        return -1;
    snprintf(chunk, chunklen, "@%s", path);
    return buf_read_file(out, path, 1u << 20, err, errlen);
}

void home_plugin_gone(struct plugin_home *h, struct plugin *p)
{
    struct plugin_registry *r = h->reg;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->nleaving; i++) {
        if (r->leaving[i] != p)
            continue;
        r->leaving[i] = r->leaving[--r->nleaving];
        struct unloaded_note *n = &r->unloaded[r->unloaded_next++ % UNLOADED_SHOWN_MAX];
        snprintf(n->id, sizeof n->id, "%s", p->id);
        snprintf(n->version, sizeof n->version, "%s", p->version);
        snprintf(n->type, sizeof n->type, "%s", p->type);
        n->at_ns = mono_ns();
        break;
    }
    p->leaving = false;
    pthread_mutex_unlock(&r->mu);
}
