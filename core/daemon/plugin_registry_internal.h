/* plugin_registry_internal.h - private to the registry's files
 * (plugin_registry.c, plugin_routing.c, plugin_reload.c, plugin_policy.c,
 * plugin_home.c, shared_store.c): the registry's state and what they call
 * of each other. Nothing else includes it. */
#ifndef POLARIS_PLUGIN_REGISTRY_INTERNAL_H
#define POLARIS_PLUGIN_REGISTRY_INTERNAL_H

#include "daemon/plugin_registry.h"
#include <pthread.h>
#include <stdatomic.h>

struct kv {
    struct kv *next;
    char *key;
    char owner[64];               /* the plugin that set it: its share counts it */
    char *json;
    size_t len;
};

/* The runtime's home in polarisd (runtime/port.h, implemented in
 * plugin_home.c): the registry a plugin belongs to. */
struct plugin_home {
    struct plugin_registry *reg;
};

/* How long status shows a plugin that left the set as Unloaded. */
#define UNLOADED_SHOWN_NS (60 * 1000000000ull)
#define UNLOADED_SHOWN_MAX 16

struct unloaded_note {
    char id[64], version[32], type[16];
    uint64_t at_ns;
};

struct plugin_registry {
    struct plugin_home home;      /* what its plugins see of it (runtime/port.h) */
    struct daemon *d;
    pthread_mutex_t mu;            /* guards plugins[] */
    struct plugin **plugins;       /* load order; failed ones are kept for status */
    struct plugin *loading_now;    /* being built by registry_prepare: shown in status */
    /* Plugins out of the set that still finish their mailbox (no ref held:
     * each leaves this list as it is freed, home_plugin_gone), then the
     * last few that did: status shows them Unloading, then Unloaded. */
    struct plugin **leaving;
    size_t nleaving, leaving_cap;
    struct unloaded_note unloaded[UNLOADED_SHOWN_MAX];
    unsigned unloaded_next;
    struct plugin_limits limits;   /* per-plugin bounds, copied from the config (home_limits) */
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
    struct plugin **strategists;   /* the plugins with an on_event handler, in load
                                    * order: the ones an event may go to */
    size_t nstrategists;
    bool any_handler;              /* a plugin takes "*" */
    bool any_routes;               /* a router has rules */
    _Atomic uint64_t index_gen;    /* +1 per rebuild: route_index copies follow it */
};

/* plugin_registry.c: a plugin of this registry (one ref); a stand-in in
 * Error for old, stopped because dep `how` ("was unloaded"); taking p out
 * of service (its waits, its plugin host, Unloading in status, its ref). */
struct plugin *registry_plugin_new(struct plugin_registry *r);
struct plugin *registry_stopped_stand_in(struct plugin_registry *r, const struct plugin *old,
                                         const char *dep, const char *how);
void registry_retire_now(struct plugin_registry *r, struct plugin *p);
bool registry_depends_on(const struct plugin *p, const char *id);

/* plugin_routing.c: called with mu held whenever plugins[] changed. */
void routing_index_rebuild(struct plugin_registry *r);

/* plugin_policy.c */
/* 0 if the module file at path passes the trust checks (strict modes,
 * signature), else -1 with err. */
int policy_module_trusted(struct plugin_registry *r, const char *path, char *err, size_t errlen);
/* Pushes {name = true} for every permission a manifest may name. */
void policy_push_permissions(lua_State *L);
/* Fills p from the loader's entry on the top of L (manifest, permissions
 * granted, limits, isolation, paths); p is in Error with the reason when
 * the policy refuses it. */
void policy_from_entry(lua_State *L, struct plugin *p, const struct config *cfg);
/* The per-plugin bounds of cfg; policy_set_limits copies them for
 * home_limits (core thread; the defaults until the first load). */
struct plugin_limits policy_limits_of(const struct config *cfg);
void policy_set_limits(struct plugin_registry *r, const struct config *cfg);
/* What a reload compares to see a change: a file's mtime and size, a
 * plugin's [plugin.<id>] settings. */
uint64_t policy_file_sig(const char *path);
uint64_t policy_config_sig(const struct config *cfg, const char *id);

#endif
