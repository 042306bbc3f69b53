/* config.h - the daemon's configuration: a declarative file (no code runs in
 * it) overlaid by the command line. Immutable once built; a reload builds a
 * new one and swaps the reference. */
#ifndef POLARIS_CONFIG_H
#define POLARIS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "lib/log.h"

#define CONFIG_MAX_LIST 32
#define CONFIG_PATH_MAX 256

struct str_list {
    int n;
    char v[CONFIG_MAX_LIST][CONFIG_PATH_MAX];
};

#define CONFIG_MAX_PLUGIN_KEYS 256

/* A [plugin.<id>] entry: the plugin sees it as polaris.config[key]. */
struct plugin_kv {
    char plugin[64];
    char key[64];
    char value[CONFIG_PATH_MAX];
};

struct config {
    _Atomic int refs;
    char file[CONFIG_PATH_MAX];         /* "" when running without a file */

    /* [daemon] */
    enum log_level log_level;
    unsigned workers;
    unsigned core_queue_max;            /* envelopes; full -> ingress backpressure */
    unsigned shutdown_grace_ms;
    char spool_dir[CONFIG_PATH_MAX];
    unsigned log_burst;                 /* log lines per call site per second */
    unsigned spool_fsync_ms;            /* the spool is fdatasync'ed this often */

    /* [ipc] */
    char ipc_path[108];
    unsigned ipc_mode;
    unsigned max_clients;
    unsigned frame_timeout_ms;
    unsigned client_out_max_bytes;      /* unsent CMD_RESP bytes per client */

    /* [guest] */
    char guest_uri[CONFIG_PATH_MAX];
    char guest_fallback_uri[CONFIG_PATH_MAX];
    unsigned heartbeat_ms;
    unsigned heartbeat_misses;
    unsigned gzip_min_bytes;
    uint64_t buffer_max_bytes;
    unsigned buffer_max_events;
    unsigned write_ahead_bytes;         /* bytes encoded ahead of the socket */
    char acks[8];                       /* "auto", "on" or "off" (DESIGN 3.2) */
    unsigned away_after_ms;             /* a guest gone this long is away: drops may start */

    /* [commands] */
    unsigned cmd_default_timeout_ms;
    unsigned cmd_max_timeout_ms;
    unsigned max_inflight_host;         /* commands running on the host */
    unsigned max_inflight_guest;        /* app commands waiting on the guest */
    unsigned lane_max;                  /* commands on their way to the core (the command lane) */
    struct str_list guest_allow;        /* empty: every offered action */
    struct str_list guest_block;

    /* [plugins] */
    struct str_list plugin_paths;
    char lua_dir[CONFIG_PATH_MAX];      /* the runtime's own Lua (lua/polaris/...) */
    char policy[16];                    /* "blacklist" or "whitelist" */
    struct str_list permissions;        /* what the policy lists */
    uint64_t plugin_memory_limit;       /* default when the manifest says nothing */
    uint64_t plugin_memory_limit_max;   /* the most MemoryAllocation can raise it to */
    unsigned plugin_cpu_ms;             /* default CPU budget per callback */
    unsigned plugin_max_errors;         /* consecutive failures before Error */
    unsigned shared_max_bytes;          /* polaris.shared store */
    unsigned exec_output_max;           /* polaris.exec stdout/stderr, each */
    bool strict_modes;                  /* refuse plugin files others may write */
    bool require_signed;                /* load only plugins signed by trusted_keys */
    struct str_list trusted_keys;       /* ed25519-public key files */
    char isolation[24];                 /* "manifest", "outside_trusted" or "process" */
    struct str_list trusted_paths;      /* outside_trusted: plugins here may run in-process */
    char host_binary[CONFIG_PATH_MAX];  /* "": next to polarisd, else the install's */
    char host_user[64];                 /* the uid a plugin host runs as when we are root */
    uint64_t host_memory_max;           /* RLIMIT_AS of a plugin host */
    unsigned host_cpu_s;                /* RLIMIT_CPU of a plugin host, over its life */
    unsigned host_restart_max;          /* restarts in a row before it stays in Error */
    unsigned host_restart_backoff_ms;   /* first restart delay, doubled each time */
    unsigned host_idle_s;               /* stop a host idle this long; 0: never */
    unsigned host_start_timeout_ms;     /* spawn to READY */
    /* what one plugin can make the daemon hold (struct plugin_limits) */
    unsigned plugin_timers_max, plugin_waits_max, plugin_exec_max, plugin_emit_per_s;
    unsigned plugin_mailbox_max, plugin_shared_max_bytes;
    unsigned plugin_watchdog_ms;        /* a worker stuck in one call this long is replaced */

    /* [monitor] */
    char proc_root[CONFIG_PATH_MAX];    /* "/proc"; specs point it at a fake one */
    char process_events[8];             /* "auto": kernel proc connector when allowed; "off" */
    unsigned process_cache;             /* exec'd processes remembered for crash names */
    struct str_list fallback_names;     /* without the connector: names watched by pidfd */
    unsigned fallback_scan_ms;          /* how often /proc is scanned for them */

    /* [plugin.<id>] sections */
    struct plugin_kv plugin_cfg[CONFIG_MAX_PLUGIN_KEYS];
    int nplugin_cfg;
};

/* Defaults as documented in conf/polarisd.conf. */
void config_defaults(struct config *c);
/* Parses file into c (which holds defaults or earlier values). Returns 0, or
 * -1 with a "file:line: message" in err. */
int  config_load_file(struct config *c, const char *file, char *err, size_t errlen);
struct config *config_ref(struct config *c);
void config_unref(struct config *c);
bool str_list_has(const struct str_list *l, const char *s);

#endif
