/* plugin_host_confine.h - what a plugin host gives up before any plugin code runs
 * (issue 10): resource limits, privileges, and every system call the plugin
 * API does not need. */
#ifndef POLARIS_PLUGIN_HOST_CONFINE_H
#define POLARIS_PLUGIN_HOST_CONFINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct confine_opts {
    uint64_t as_bytes;       /* RLIMIT_AS; 0: none (sanitizer builds need the address space) */
    unsigned cpu_s;          /* RLIMIT_CPU over the host's life; 0: none */
    unsigned nofile;         /* RLIMIT_NOFILE */
    uid_t uid;               /* switch to these when running as root */
    gid_t gid;
    int keep_fd;             /* the channel: every other descriptor above 2 is closed */
};

/* Applies everything, in an order where no step needs what an earlier one
 * took away. 0, or -1 with err (the host must then exit: it never runs a
 * plugin half-confined). */
int plugin_host_confine(const struct confine_opts *o, char *err, size_t errlen);

#endif
