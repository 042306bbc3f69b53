/* proc_monitor.h - process crash notices from the kernel's proc connector. */
#ifndef POLARIS_PROC_MONITOR_H
#define POLARIS_PROC_MONITOR_H

#include <ev.h>
#include <stdbool.h>
#include "daemon/config.h"

struct plugin_registry;
struct proc_monitor;

/* Starts listening on loop; NULL (and a log line saying why) when the
 * connector is off or unavailable. */
struct proc_monitor *proc_monitor_start(struct ev_loop *loop, struct plugin_registry *reg,
                                        const struct config *cfg);
void proc_monitor_stop(struct proc_monitor *m);   /* NULL is fine */
/* The signals whose default action dumps core. */
bool proc_monitor_is_crash_signal(int sig);

#endif
