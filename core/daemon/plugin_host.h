/* plugin_host.h - plugins with isolation "process" (issue 10): the daemon
 * starts one polaris-plugin-host per plugin, talks to it over a socketpair
 * (plugin_host_proto.h), notices its death at once, restarts it with backoff up to
 * a limit, and tears it down when idle. */
#ifndef POLARIS_PLUGIN_HOST_H
#define POLARIS_PLUGIN_HOST_H

#include <ev.h>
#include "lib/buf.h"
#include "daemon/config.h"

struct plugin;
struct plugin_hosts;

/* loop may be NULL (polarisd --check): hosts are started and stopped, but
 * nothing is watched. */
struct plugin_hosts *plugin_hosts_new(struct ev_loop *loop);
/* Ends every host (closing its channel, then SIGKILL after a short grace)
 * and waits for them. */
void plugin_hosts_free(struct plugin_hosts *m);
/* fn(ctx, p) when p's host dies: the timers and waits its plugin had in
 * the core end (the core sets it, as it does the registry's on_retire). */
void plugin_hosts_on_death(struct plugin_hosts *m, void (*fn)(void *, struct plugin *), void *ctx);
/* New config values for hosts started from now on. */
void plugin_hosts_configure(struct plugin_hosts *m, const struct config *cfg);

/* Starts the plugin's host and waits (plugins.host_start_timeout_ms) until
 * it has loaded the plugin; p is the daemon's stand-in, filled from the
 * manifest. 0, or -1 with p in Error and last_error set. */
int plugin_host_load(struct plugin_hosts *m, struct plugin *p);
/* After a load: the channel is watched from the core loop (core thread). */
void plugin_host_activate(struct plugin *p);
/* The plugin left the set (reload, unload): its host stops once nothing
 * refers to the plugin any more. */
void plugin_host_retire(struct plugin *p);
/* Events and commands the hosts hold, plus those waiting for a host to
 * start (shutdown waits for them). */
size_t plugin_hosts_outstanding(struct plugin_hosts *m);
/* For status: "pid":..,"restarts":..,"last_exit":.. (no braces). */
int plugin_host_status_json(struct plugin *p, struct buf *b);

#endif
