/* config.c - parser for the declarative config file.
 *
 * Format (systemd/INI style): [section] headers, "key = value" lines, '#'
 * comments, lists separated by spaces or commas. Unknown sections and keys
 * are errors, so a misspelt limit is never silently ignored. */
#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    atomic_init(&c->refs, 1);
    c->log_level = LOG_LVL_INFO;
    c->workers = 2;
    c->core_queue_max = 16384;
    c->shutdown_grace_ms = 5000;
    c->log_burst = 100;
    c->spool_fsync_ms = 1000;
    snprintf(c->ipc_path, sizeof c->ipc_path, "/run/polaris/polaris.sock");
    c->ipc_mode = 0660;
    c->max_clients = 1024;
    c->frame_timeout_ms = 3000;
    c->client_out_max_bytes = 4u << 20;
    snprintf(c->guest_uri, sizeof c->guest_uri, "vsock://any:9001");
    snprintf(c->guest_fallback_uri, sizeof c->guest_fallback_uri, "unix:/run/polaris/guest.sock");
    c->heartbeat_ms = 5000;
    c->heartbeat_misses = 3;
    c->gzip_min_bytes = 1024;
    c->buffer_max_bytes = 64u << 20;
    c->buffer_max_events = 100000;
    c->write_ahead_bytes = 256u << 10;
    snprintf(c->acks, sizeof c->acks, "auto");
    c->away_after_ms = 5000;
    c->cmd_default_timeout_ms = 3000;
    c->cmd_max_timeout_ms = 60000;
    c->max_inflight_host = 64;
    c->max_inflight_guest = 64;
    c->lane_max = 1024;
    snprintf(c->policy, sizeof c->policy, "blacklist");
    c->permissions.n = 1;
    snprintf(c->permissions.v[0], CONFIG_PATH_MAX, "NetworkAccess");
    c->plugin_memory_limit = 16u << 20;
    c->plugin_memory_limit_max = 256u << 20;
    c->plugin_cpu_ms = 1000;
    c->plugin_max_errors = 5;
    c->shared_max_bytes = 1u << 20;
    snprintf(c->isolation, sizeof c->isolation, "manifest");
    snprintf(c->host_user, sizeof c->host_user, "nobody");
    c->host_memory_max = 512u << 20;
    c->host_cpu_s = 0;
    c->host_restart_max = 5;
    c->host_restart_backoff_ms = 200;
    c->host_idle_s = 300;
    c->host_start_timeout_ms = 5000;
    c->exec_output_max = 1u << 20;
    c->plugin_timers_max = 256;
    c->plugin_waits_max = 256;
    c->plugin_exec_max = 16;
    c->plugin_emit_per_s = 10000;
    c->plugin_mailbox_max = 10000;
    c->plugin_shared_max_bytes = 256u << 10;
    c->plugin_watchdog_ms = 10000;
    c->strict_modes = true;
    snprintf(c->proc_root, sizeof c->proc_root, "/proc");
    snprintf(c->process_events, sizeof c->process_events, "auto");
    c->process_cache = 4096;
    c->fallback_scan_ms = 1000;
}

struct config *config_ref(struct config *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void config_unref(struct config *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

bool str_list_has(const struct str_list *l, const char *s)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return true;
    return false;
}

enum kind { K_UINT, K_U64, K_STR, K_LIST, K_LEVEL, K_MODE, K_BOOL };

struct key {
    const char *section, *name;
    enum kind kind;
    size_t off, size;
    uint64_t min, max;
};

#define F(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)
static const struct key keys[] = {
    {"daemon", "log_level", K_LEVEL, F(log_level), 0, 0},
    {"daemon", "workers", K_UINT, F(workers), 1, 64},
    {"daemon", "core_queue_max", K_UINT, F(core_queue_max), 16, 16u << 20},
    {"daemon", "shutdown_grace_ms", K_UINT, F(shutdown_grace_ms), 0, 600000},
    {"daemon", "spool_dir", K_STR, F(spool_dir), 0, 0},
    {"daemon", "log_burst", K_UINT, F(log_burst), 0, 1000000},
    {"daemon", "spool_fsync_ms", K_UINT, F(spool_fsync_ms), 10, 3600000},
    {"ipc", "socket", K_STR, F(ipc_path), 0, 0},
    {"ipc", "socket_mode", K_MODE, F(ipc_mode), 0, 0777},
    {"ipc", "max_clients", K_UINT, F(max_clients), 1, 65535},
    {"ipc", "frame_timeout_ms", K_UINT, F(frame_timeout_ms), 10, 600000},
    {"ipc", "client_out_max_bytes", K_UINT, F(client_out_max_bytes), 4096, 1u << 30},
    {"guest", "uri", K_STR, F(guest_uri), 0, 0},
    {"guest", "fallback_uri", K_STR, F(guest_fallback_uri), 0, 0},
    {"guest", "heartbeat_ms", K_UINT, F(heartbeat_ms), 10, 3600000},
    {"guest", "heartbeat_misses", K_UINT, F(heartbeat_misses), 1, 1000},
    {"guest", "gzip_min_bytes", K_UINT, F(gzip_min_bytes), 0, 16u << 20},
    {"guest", "buffer_max_bytes", K_U64, F(buffer_max_bytes), 4096, (uint64_t)1 << 40},
    {"guest", "buffer_max_events", K_UINT, F(buffer_max_events), 1, 1u << 30},
    {"guest", "write_ahead_bytes", K_UINT, F(write_ahead_bytes), 4096, 64u << 20},
    {"guest", "acks", K_STR, F(acks), 0, 0},
    {"guest", "away_after_ms", K_UINT, F(away_after_ms), 0, 3600000},
    {"commands", "default_timeout_ms", K_UINT, F(cmd_default_timeout_ms), 1, 3600000},
    {"commands", "max_timeout_ms", K_UINT, F(cmd_max_timeout_ms), 1, 3600000},
    {"commands", "max_inflight_host", K_UINT, F(max_inflight_host), 1, 65536},
    {"commands", "max_inflight_guest", K_UINT, F(max_inflight_guest), 1, 65536},
    {"commands", "lane_max", K_UINT, F(lane_max), 1, 1u << 20},
    {"commands", "guest_allow", K_LIST, F(guest_allow), 0, 0},
    {"commands", "guest_block", K_LIST, F(guest_block), 0, 0},
    {"plugins", "paths", K_LIST, F(plugin_paths), 0, 0},
    {"plugins", "lua_dir", K_STR, F(lua_dir), 0, 0},
    {"plugins", "policy", K_STR, F(policy), 0, 0},
    {"plugins", "permissions", K_LIST, F(permissions), 0, 0},
    {"plugins", "memory_limit", K_U64, F(plugin_memory_limit), 65536, (uint64_t)1 << 34},
    {"plugins", "memory_limit_max", K_U64, F(plugin_memory_limit_max), 65536, (uint64_t)1 << 34},
    {"plugins", "cpu_time_limit_ms", K_UINT, F(plugin_cpu_ms), 1, 600000},
    {"plugins", "max_consecutive_errors", K_UINT, F(plugin_max_errors), 1, 1000000},
    {"plugins", "shared_max_bytes", K_UINT, F(shared_max_bytes), 1024, 1u << 30},
    {"plugins", "exec_output_max", K_UINT, F(exec_output_max), 1024, 1u << 30},
    {"plugins", "strict_modes", K_BOOL, F(strict_modes), 0, 0},
    {"plugins", "require_signed", K_BOOL, F(require_signed), 0, 0},
    {"plugins", "trusted_keys", K_LIST, F(trusted_keys), 0, 0},
    {"plugins", "isolation", K_STR, F(isolation), 0, 0},
    {"plugins", "trusted_paths", K_LIST, F(trusted_paths), 0, 0},
    {"plugins", "host_binary", K_STR, F(host_binary), 0, 0},
    {"plugins", "host_user", K_STR, F(host_user), 0, 0},
    {"plugins", "host_memory_max", K_U64, F(host_memory_max), 16u << 20, (uint64_t)1 << 40},
    {"plugins", "host_cpu_s", K_UINT, F(host_cpu_s), 0, 1u << 30},
    {"plugins", "host_restart_max", K_UINT, F(host_restart_max), 0, 1000},
    {"plugins", "host_restart_backoff_ms", K_UINT, F(host_restart_backoff_ms), 1, 60000},
    {"plugins", "host_idle_s", K_UINT, F(host_idle_s), 0, 1u << 30},
    {"plugins", "host_start_timeout_ms", K_UINT, F(host_start_timeout_ms), 100, 600000},
    {"plugins", "timers_max", K_UINT, F(plugin_timers_max), 1, 1u << 20},
    {"plugins", "waits_max", K_UINT, F(plugin_waits_max), 1, 1u << 20},
    {"plugins", "exec_max", K_UINT, F(plugin_exec_max), 0, 4096},
    {"plugins", "emit_per_s", K_UINT, F(plugin_emit_per_s), 1, 1u << 30},
    {"plugins", "mailbox_max", K_UINT, F(plugin_mailbox_max), 1, 1u << 24},
    {"plugins", "shared_plugin_max_bytes", K_UINT, F(plugin_shared_max_bytes), 1024, 1u << 30},
    {"plugins", "watchdog_ms", K_UINT, F(plugin_watchdog_ms), 0, 3600000},
    {"monitor", "proc_root", K_STR, F(proc_root), 0, 0},
    {"monitor", "process_events", K_STR, F(process_events), 0, 0},
    {"monitor", "process_cache", K_UINT, F(process_cache), 0, 1u << 20},
    {"monitor", "fallback_names", K_LIST, F(fallback_names), 0, 0},
    {"monitor", "fallback_scan_ms", K_UINT, F(fallback_scan_ms), 10, 3600000},
};
#undef F

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int parse_uint(const char *v, int base, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*v == '-' || *v == '\0')
        return -1;
    unsigned long long x = strtoull(v, &end, base);
    if (errno || end == v)
        return -1;
    /* size suffixes make byte limits readable: 64M, 256K, 1G */
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k') { mul = 1024; end++; }
    else if (*end == 'M' || *end == 'm') { mul = 1024 * 1024; end++; }
    else if (*end == 'G' || *end == 'g') { mul = 1024ull * 1024 * 1024; end++; }
    if (*end != '\0' || x > UINT64_MAX / mul)
        return -1;
    *out = x * mul;
    return 0;
}

static int set_value(struct config *c, const struct key *k, char *v, char *err, size_t errlen)
{
    char *field = (char *)c + k->off;
    uint64_t x;
    switch (k->kind) {
    case K_UINT:
    case K_U64:
    case K_MODE:
        if (parse_uint(v, k->kind == K_MODE ? 8 : 10, &x) < 0) {
            snprintf(err, errlen, "%s.%s: '%s' is not a non-negative integer", k->section, k->name, v);
            return -1;
        }
        if (x < k->min || x > k->max) {
            snprintf(err, errlen, "%s.%s: %s is outside %llu..%llu", k->section, k->name, v,
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return -1;
        }
        if (k->kind == K_U64)
            *(uint64_t *)field = x;
        else
            *(unsigned *)field = (unsigned)x;
        return 0;
    case K_STR:
        if (strlen(v) >= k->size) {
            snprintf(err, errlen, "%s.%s: value longer than %zu bytes", k->section, k->name, k->size - 1);
            return -1;
        }
        strcpy(field, v);
        return 0;
    case K_BOOL:
        if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
            *(bool *)field = true;
        else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
            *(bool *)field = false;
        else {
            snprintf(err, errlen, "%s.%s: '%s' is not yes or no", k->section, k->name, v);
            return -1;
        }
        return 0;
    case K_LEVEL:
        if (log_level_parse(v, (enum log_level *)field) < 0) {
            snprintf(err, errlen, "%s.%s: '%s' is not one of debug, info, warn, error", k->section, k->name, v);
            return -1;
        }
        return 0;
    case K_LIST: {
        struct str_list *l = (struct str_list *)field;
        l->n = 0;
        for (char *save = NULL, *t = strtok_r(v, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
            if (l->n == CONFIG_MAX_LIST || strlen(t) >= CONFIG_PATH_MAX) {
                snprintf(err, errlen, "%s.%s: more than %d items or an item too long",
                         k->section, k->name, CONFIG_MAX_LIST);
                return -1;
            }
            strcpy(l->v[l->n++], t);
        }
        return 0;
    }
    }
    return -1;
}

int config_load_file(struct config *c, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", file, strerror(errno));
        return -1;
    }
    snprintf(c->file, sizeof c->file, "%s", file);
    char line[4096], section[64] = "";
    char msg[512];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line longer than %zu bytes", file, lineno, sizeof line - 2);
            rc = -1;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close || close[1] != '\0' || close - s - 1 >= (long)sizeof section) {
                snprintf(err, errlen, "%s:%d: malformed section header", file, lineno);
                rc = -1;
                break;
            }
            *close = '\0';
            snprintf(section, sizeof section, "%s", trim(s + 1));
            if (strncmp(section, "plugin.", 7) == 0 && section[7])
                continue;                      /* free-form: the plugin's own settings */
            bool known = false;
            for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
                known |= strcmp(keys[i].section, section) == 0;
            if (!known) {
                snprintf(err, errlen, "%s:%d: unknown section [%s]", file, lineno, section);
                rc = -1;
                break;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", file, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (strncmp(section, "plugin.", 7) == 0) {
            if (c->nplugin_cfg == CONFIG_MAX_PLUGIN_KEYS || strlen(section + 7) >= 64 ||
                strlen(key) >= 64 || strlen(val) >= CONFIG_PATH_MAX) {
                snprintf(err, errlen, "%s:%d: plugin settings: at most %d keys, ids and keys under 64 "
                         "bytes, values under %d", file, lineno, CONFIG_MAX_PLUGIN_KEYS, CONFIG_PATH_MAX);
                rc = -1;
                break;
            }
            struct plugin_kv *kv = &c->plugin_cfg[c->nplugin_cfg++];
            strcpy(kv->plugin, section + 7);
            strcpy(kv->key, key);
            strcpy(kv->value, val);
            continue;
        }
        const struct key *k = NULL;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, key) == 0)
                k = &keys[i];
        if (!k) {
            snprintf(err, errlen, "%s:%d: unknown key '%s' in [%s]", file, lineno, key,
                     section[0] ? section : "(no section)");
            rc = -1;
            break;
        }
        if (set_value(c, k, val, msg, sizeof msg) < 0) {
            snprintf(err, errlen, "%s:%d: %s", file, lineno, msg);
            rc = -1;
            break;
        }
    }
    fclose(f);
    if (rc == 0 && strcmp(c->policy, "blacklist") != 0 && strcmp(c->policy, "whitelist") != 0) {
        snprintf(err, errlen, "%s: plugins.policy must be \"blacklist\" or \"whitelist\"", file);
        rc = -1;
    }
    if (rc == 0 && strcmp(c->isolation, "manifest") != 0 && strcmp(c->isolation, "outside_trusted") != 0 &&
        strcmp(c->isolation, "process") != 0) {
        snprintf(err, errlen, "%s: plugins.isolation must be \"manifest\", \"outside_trusted\" or \"process\"", file);
        rc = -1;
    }
    if (rc == 0 && strcmp(c->acks, "auto") != 0 && strcmp(c->acks, "on") != 0 && strcmp(c->acks, "off") != 0) {
        snprintf(err, errlen, "%s: guest.acks must be \"auto\", \"on\" or \"off\"", file);
        rc = -1;
    }
    if (rc == 0 && strcmp(c->process_events, "auto") != 0 && strcmp(c->process_events, "off") != 0 &&
        strcmp(c->process_events, "pidfd") != 0) {
        snprintf(err, errlen, "%s: monitor.process_events must be \"auto\", \"pidfd\" or \"off\"", file);
        rc = -1;
    }
    return rc;
}
