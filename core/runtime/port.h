/* port.h - everything the plugin runtime (runtime/) needs from the program
 * that hosts it, and nothing else: the runtime calls out of runtime/, lib/
 * and wire/ only through these.
 *
 * The same runtime links into two programs, and each implements this port
 * once:
 *   polarisd             daemon/plugin_home.c: the plugin registry, the
 *                        worker pool and the core (a plugin's jobs run on
 *                        the pool, what it sends goes on the core queue);
 *   polaris-plugin-host  isolate/plugin_host_home.c: one plugin, run on
 *                        the process's only thread, everything else a call
 *                        over the channel to its stand-in in the daemon.
 * struct plugin_home is each program's own; the runtime only passes it on
 * (struct plugin's `home`). tools/layers.lua checks that nothing else
 * crosses. */
#ifndef POLARIS_RUNTIME_PORT_H
#define POLARIS_RUNTIME_PORT_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct envelope;
struct job;
struct plugin;
struct plugin_limits;
struct plugin_home;

/* A plugin's job (its mailbox) has work: run it on some thread soon. */
void home_schedule(struct plugin_home *h, struct job *j);
/* The command lane's job: ahead of every other job (DESIGN 2). */
void home_schedule_urgent(struct plugin_home *h, struct job *j);

/* What a plugin hands to the core (takes e): wait requests, timer
 * cancellations, command answers. */
void home_to_core(struct plugin_home *h, struct envelope *e);
/* polaris.emit (takes e): 0, or -1 refused (the core queue is full). */
int  home_emit(struct plugin_home *h, struct envelope *e);
/* An event leaves its strategy chain: on to the core (done) or dropped. */
void home_chain_done(struct plugin_home *h, struct envelope *e);
void home_chain_drop(struct plugin_home *h, struct envelope *e);
/* Around one job on a thread: what it sends to the core goes as one batch
 * at flush or end, and the refs its finished chains held on p (the job's
 * own plugin, or NULL) are let go then too, as one count (the job's own
 * ref holds p until after the end). */
void home_job_begin(struct plugin *p);
void home_job_flush(struct plugin_home *h);
void home_job_end(struct plugin_home *h);

/* polaris.send/broadcast: to one plugin (id) or every other Active one (id
 * NULL). How many it was given to; -1 no such active plugin; -2 id's
 * mailbox is full (plugins.mailbox_max). */
int  home_message(struct plugin_home *h, const char *from, const char *id,
                  const char *topic, const char *json, size_t len);
/* polaris.shared: get appends the value's JSON to out (0, or -1 absent);
 * set: 0; -1 the store is full; -2 the owner's share (limit) is. */
int  home_shared_get(struct plugin_home *h, const char *key, struct buf *out);
int  home_shared_set(struct plugin_home *h, const char *owner, size_t limit, const char *key,
                     const char *json, size_t len);
/* polaris.actions(): every command action offered, as a JSON array. */
int  home_actions_json(struct plugin_home *h, struct buf *b);
/* The source of Lua module `name` (dotted words, checked) for plugin p: its
 * folder first, then the runtime's; chunk gets "@path". 0, or -1 with err. */
int  home_module_source(struct plugin_home *h, struct plugin *p, const char *name,
                        struct buf *out, char *chunk, size_t chunklen, char *err, size_t errlen);
/* Pushes polaris.config for plugin id (while it loads). */
void home_push_config(struct plugin_home *h, const char *id, lua_State *L);

/* The settings the runtime applies to every plugin. */
unsigned home_max_errors(struct plugin_home *h);
void home_limits(struct plugin_home *h, struct plugin_limits *out);
const char *home_proc_root(struct plugin_home *h);
uint64_t home_started_ms(struct plugin_home *h);
/* Shutdown has begun: no new waits, no new timers. */
bool home_stopping(struct plugin_home *h);
/* p's stop() and cleanup() have run and it is about to be freed (its
 * fields are still valid during the call): a home showing it as leaving
 * shows it Unloaded from now on. */
void home_plugin_gone(struct plugin_home *h, struct plugin *p);

#endif
