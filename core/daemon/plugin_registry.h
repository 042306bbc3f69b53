/* plugin_registry.h - the set of loaded plugins: loading and reloading them
 * from the plugin paths, routing events to strategies and actions to command
 * plugins, the shared store, and their accounting. */
#ifndef POLARIS_PLUGIN_REGISTRY_H
#define POLARIS_PLUGIN_REGISTRY_H

#include "lib/buf.h"
#include "daemon/config.h"
#include "runtime/plugin.h"
#include "runtime/port.h"
#include <lua.h>

struct daemon;
struct plugin_registry;

struct plugin_registry *registry_new(struct daemon *d);
void registry_free(struct plugin_registry *r);

/* Loads (or reloads) every plugin under cfg's paths. Unchanged plugins are
 * kept; changed ones are rebuilt and swapped in only if they initialise.
 * Writes a JSON array of per-plugin outcomes to report (may be NULL).
 * Returns the number of plugins that failed. */
int registry_load(struct plugin_registry *r, const struct config *cfg, struct buf *report);
/* registry_load in two halves, so that a reload builds and initialises the
 * new plugin states off the core thread (DESIGN 5.5; the core keeps routing
 * to the running set meanwhile): prepare builds the set (any thread; it
 * writes the report), commit swaps it in and retires the old one (the core
 * thread). Commit returns the number of plugins that failed. */
struct reload;
void registry_configure_hosts(struct plugin_registry *r, const struct config *cfg);   /* core thread, first */
struct reload *registry_prepare(struct plugin_registry *r, const struct config *cfg, struct buf *report);
int registry_commit(struct plugin_registry *r, struct reload *rl);

/* Strategies for an event, skipping `from`; refs taken. The Router
 * plugin's rule for the eventId decides (forward, drop, or a list of
 * strategies in order); without one, every strategy registered for it, in
 * load order. *drop is set when the router drops the event. */
size_t registry_route(struct plugin_registry *r, uint64_t event_id, const char *from,
                      struct plugin **out, size_t max, bool *drop);
/* The routing index as a thread outside the core keeps it (the ingress,
 * deciding which events may skip the core): a private copy of the eventIds
 * some plugin takes, refreshed by registry_index_sync whenever the set
 * changed since the last copy (one atomic load when it has not). gen 0:
 * no copy yet, because the registry has not loaded its first set. */
struct route_index {
    uint64_t gen;
    uint64_t *ids;
    size_t n, cap;
    bool all;                /* every event may be routed: a "*" handler, router rules */
};
void registry_index_sync(struct plugin_registry *r, struct route_index *x);
/* Whether some plugin or router rule may concern event_id (true before the
 * first copy). */
bool route_index_may_route(const struct route_index *x, uint64_t event_id);
void route_index_free(struct route_index *x);

/* The plugin offering an action (ref taken), or NULL. */
struct plugin *registry_command(struct plugin_registry *r, const char *action);
/* home_message (runtime/port.h), only to plugins holding every permission
 * bit in perm (system notices such as process crashes go to ReadHostState
 * holders only). */
int registry_message_perm(struct plugin_registry *r, const char *from, const char *id,
                          const char *topic, const char *json, size_t len, unsigned perm);

int registry_status_json(struct plugin_registry *r, struct buf *b);
/* The plugins that left the set: Unloading while they finish their
 * mailbox, then Unloaded for a minute (a JSON array; ids may repeat the
 * running set's, so they are kept apart from it). */
int registry_leaving_json(struct plugin_registry *r, struct buf *b);
/* Why the last registry_load could not run the runtime's loader, or NULL. */
const char *registry_runtime_error(struct plugin_registry *r);
/* sd_notify READY=1 with a STATUS= line naming the plugins in Error. */
void registry_notify_ready(struct plugin_registry *r);

/* Takes one plugin out of the set (polarisctl unload) and stops the plugins
 * that depend on it. 0, -1 if unknown, -2 without memory. */
int registry_unload(struct plugin_registry *r, const char *id);
void registry_set_stopping(struct plugin_registry *r);
/* Called for each plugin leaving the set (reload, unload; its timers and
 * waits end). */
void registry_on_retire(struct plugin_registry *r, void (*fn)(void *, struct plugin *), void *ctx);

#endif
