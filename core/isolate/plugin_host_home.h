/* plugin_host_home.h - inside a polaris-plugin-host: setting up the
 * runtime's home (runtime/port.h, implemented over the channel to the
 * daemon) and serving the channel. */
#ifndef POLARIS_PLUGIN_HOST_HOME_H
#define POLARIS_PLUGIN_HOST_HOME_H

#include <stddef.h>
#include <stdint.h>

struct plugin;

struct plugin_host_init {
    unsigned max_errors;
    unsigned timers_max, waits_max, exec_max;   /* the bounds enforced in the host */
    uint64_t started_ms;
    int64_t daemon_pid;
    const char *config;          /* lua_pack'ed polaris.config table */
    size_t config_len;
};

/* Channel on fd; init is kept (its strings must outlive the host). */
void plugin_host_home_init(int fd, const struct plugin_host_init *init);
struct plugin_home *plugin_host_home(void);
/* Reads one whole frame (blocking) into a malloc'ed buffer; kind and id
 * out, body at *body (inside the returned buffer). NULL at end of file. */
char *plugin_host_read_frame(uint8_t *kind, uint32_t *id, const char **body, size_t *len);
/* Queues a frame and writes everything queued (blocking). */
void plugin_host_send(uint8_t kind, uint32_t id, const void *body, size_t len);
void plugin_host_flush(void);
/* After bind_polaris: the calls the daemon must make (files, /proc, the
 * shared store, messages, emit, guest status) become calls over the channel. */
void plugin_host_bind_proxies(struct plugin *p);
/* Serves the plugin until the daemon says stop or goes away; returns the
 * exit status. */
int plugin_host_serve(struct plugin *p);

#endif
