/* plugin_wait.h - the waiting that plugins ask for (sleep, exec, timers),
 * done on the core's libev loop: the default loop, the only one libev lets
 * watch child processes. */
#ifndef POLARIS_PLUGIN_WAIT_H
#define POLARIS_PLUGIN_WAIT_H

#include <ev.h>
#include "lib/envelope.h"

struct waits;
struct plugin;

struct waits *waits_new(struct ev_loop *loop, size_t output_max);
/* ENV_WAIT_REQ / ENV_WAIT_CANCEL from a plugin; takes e and its plugin ref. */
void waits_request(struct waits *w, struct envelope *e);
/* The plugin left the set: its timers stop. */
void waits_retire(void *w, struct plugin *p);
/* Shutdown: timers stop, children are killed, every parked call is resumed
 * with an error so its event goes on. */
void waits_stop_all(struct waits *w);
void waits_free(struct waits *w);

#endif
