/* ctl_status.c - the control requests: `polarisctl status`, `reload`,
 * `unload`, `call`, and from one status request `plugins` (a table) and
 * `metrics` (Prometheus text exposition, format 0.0.4). The counter list
 * and help texts come from core/lib/stats.h, so a counter added there shows
 * up here without another edit.
 *
 * Uses: ctl_common (the request, JSON accessors), stats.h (names, help),
 * json_scan. */
#include "ctl.h"
#include "lib/stats.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int fetch_status(const char *sock, int argc, char **argv, const char *cmd,
                        struct buf *out, struct ctl_result *r)
{
    if (argc > 0) {
        fprintf(stderr, "polarisctl: %s takes no arguments (got '%s')\n", cmd, argv[0]);
        return CTL_USAGE;
    }
    int rc = ctl_call(sock, "status", NULL, out, r);
    if (rc == CTL_OK && r->code != 0) {
        fprintf(stderr, "polarisctl: status: %s (code %lld)\n", r->msg, r->code);
        rc = CTL_FAILED;
    }
    return rc;
}

static int plugin_list(const struct ctl_result *r, const char *key, struct json_member *v, int max)
{
    struct json_member plugins;
    const char *err;
    if (!ctl_get(r->data, r->data_len, key, &plugins) || plugins.kind != JSON_ARRAY)
        return 0;
    int n = json_array_elements(plugins.val, plugins.val_len, v, (size_t)max, &err);
    return n < 0 ? 0 : n > max ? max : n;
}

static void field(const struct json_member *p, const char *key, char *out, size_t cap)
{
    struct json_member m;
    if (!ctl_get(p->val, p->val_len, key, &m) || m.kind == JSON_NULL)
        snprintf(out, cap, "-");
    else
        ctl_text(&m, out, cap);
}

static int plugins_in_error(const char *status, size_t len)
{
    struct ctl_result r = {.data = status, .data_len = len};
    static struct json_member v[1024];
    int n = plugin_list(&r, "plugins", v, 1024), in_error = 0;
    for (int i = 0; i < n; i++) {
        char state[16];
        field(&v[i], "state", state, sizeof state);
        in_error += strcmp(state, "Error") == 0;
    }
    return in_error;
}

/* One plugin's row (and its status() line); whether it is in Error. */
static bool print_plugin(const struct json_member *p)
{
    char id[64], ver[32], state[16], err[256], iso[16], host[40] = "in-process";
    field(p, "id", id, sizeof id);
    field(p, "version", ver, sizeof ver);
    field(p, "state", state, sizeof state);
    field(p, "last_error", err, sizeof err);
    field(p, "isolation", iso, sizeof iso);
    if (strcmp(iso, "process") == 0) {
        /* pid and state of its plugin host, and how often it restarted */
        char hs[16];
        field(p, "host_state", hs, sizeof hs);
        double pid = ctl_num(p->val, p->val_len, "host_pid");
        double restarts = ctl_num(p->val, p->val_len, "host_restarts");
        if (pid > 0)
            snprintf(host, sizeof host, "%.0f %s r%.0f", pid, hs, restarts);
        else
            snprintf(host, sizeof host, "%s r%.0f", hs, restarts);
        if (strcmp(err, "-") == 0)
            field(p, "host_last_exit", err, sizeof err);
    }
    printf("%-22s %-9s %-12s %-18s %9.1f %9.1f %8.0f %8.0f %6.0f  %s\n", id, ver, state, host,
           ctl_num(p->val, p->val_len, "memory_bytes") / 1024.0,
           ctl_num(p->val, p->val_len, "cpu_ms"),
           ctl_num(p->val, p->val_len, "events"),
           ctl_num(p->val, p->val_len, "commands"),
           ctl_num(p->val, p->val_len, "errors"), err);
    /* what the plugin's status() said, on its own line: free-form JSON
     * would break the columns */
    struct json_member ps;
    if (ctl_get(p->val, p->val_len, "status", &ps) && ps.kind != JSON_NULL)
        printf("  %s status: %.*s\n", id, (int)ps.val_len, ps.val);
    return strcmp(state, "Error") == 0;
}

/* The plugins of a status answer as a table, those leaving the set under
 * the running ones; returns how many are in Error. */
static int print_plugins(const char *status, size_t len)
{
    struct ctl_result r = {.data = status, .data_len = len};
    static struct json_member v[1024];
    int in_error = 0;
    printf("%-22s %-9s %-12s %-18s %9s %9s %8s %8s %6s  %s\n", "ID", "VERSION", "STATE", "HOST",
           "MEM_KIB", "CPU_MS", "EVENTS", "COMMANDS", "ERRORS", "LAST ERROR");
    for (int list = 0; list < 2; list++) {
        int n = plugin_list(&r, list ? "plugins_leaving" : "plugins", v, 1024);
        for (int i = 0; i < n; i++)
            in_error += print_plugin(&v[i]);
    }
    return in_error;
}

int ctl_cmd_plugins(const char *sock, int argc, char **argv)
{
    struct buf out = BUF_INIT;
    struct ctl_result r;
    int rc = fetch_status(sock, argc, argv, "plugins", &out, &r);
    if (rc != CTL_OK) {
        buf_free(&out);
        return rc;
    }
    if (print_plugins(r.data, r.data_len) > 0)
        rc = CTL_PLUGIN_ERROR;
    buf_free(&out);
    return rc;
}

/* A label value, escaped as the exposition format wants. */
static void label(const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            printf("\\%c", *s);
        else if (*s == '\n')
            printf("\\n");
        else
            putchar(*s);
    }
}

static void metric_head(const char *name, const char *type, const char *help)
{
    printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int ctl_cmd_metrics(const char *sock, int argc, char **argv)
{
    struct buf out = BUF_INIT;
    struct ctl_result r;
    int rc = fetch_status(sock, argc, argv, "metrics", &out, &r);
    if (rc != CTL_OK) {
        buf_free(&out);
        return rc;
    }
    const char *d = r.data;
    size_t dl = r.data_len;
    struct json_member m;
    char version[64] = "", git[64] = "";
    if (ctl_get(d, dl, "version", &m))
        ctl_text(&m, version, sizeof version);
    if (ctl_get(d, dl, "git", &m))
        ctl_text(&m, git, sizeof git);
    metric_head("polaris_build_info", "gauge", "polarisd version and git revision (always 1)");
    printf("polaris_build_info{version=\"");
    label(version);
    printf("\",git=\"");
    label(git);
    printf("\"} 1\n");
    metric_head("polaris_uptime_seconds", "gauge", "seconds since polarisd started");
    printf("polaris_uptime_seconds %.0f\n", ctl_num(d, dl, "uptime_s"));
    if (ctl_get(d, dl, "core_queue", &m)) {
        static const char *const q[][2] = {
            {"length", "envelopes waiting for the core"},
            {"in_strategies", "events inside strategies (they count against the queue)"},
            {"max", "daemon.core_queue_max"},
            {"high_water", "most envelopes ever waiting for the core"},
        };
        for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
            char name[96];
            snprintf(name, sizeof name, "polaris_core_queue_%s", q[i][0]);
            metric_head(name, "gauge", q[i][1]);
            printf("%s %.0f\n", name, ctl_num(m.val, m.val_len, q[i][0]));
        }
    }
    /* every counter and gauge of stats.h, by its group */
#define X(g, n, h)                                                              \
    do {                                                                        \
        struct json_member grp;                                                 \
        if (!ctl_get(d, dl, #g, &grp))                                          \
            break;                                                              \
        bool gauge = strstr(h, "(gauge") != NULL;                               \
        bool total = strlen(#n) > 6 && strcmp(#n + strlen(#n) - 6, "_total") == 0; \
        const char *name = gauge || total ? "polaris_" #g "_" #n : "polaris_" #g "_" #n "_total"; \
        metric_head(name, gauge ? "gauge" : "counter", h);                      \
        printf("%s %.0f\n", name, ctl_num(grp.val, grp.val_len, #n));           \
    } while (0);
    STATS_FIELDS(X)
#undef X
    static struct json_member v[1024];
    int n = plugin_list(&r, "plugins", v, 1024);
    static const char *const per[][4] = {
        /* status key, metric, type, help */
        {"memory_bytes", "polaris_plugin_memory_bytes", "gauge", "bytes held by the plugin's Lua state"},
        {"memory_limit", "polaris_plugin_memory_limit_bytes", "gauge", "the plugin's memory limit"},
        {"cpu_ms", "polaris_plugin_cpu_seconds_total", "counter", "CPU time spent in the plugin's callbacks"},
        {"events", "polaris_plugin_events_total", "counter", "events the plugin handled"},
        {"commands", "polaris_plugin_commands_total", "counter", "commands the plugin answered"},
        {"messages", "polaris_plugin_messages_total", "counter", "messages the plugin received"},
        {"errors", "polaris_plugin_errors_total", "counter", "callbacks that failed"},
        {"uptime_s", "polaris_plugin_uptime_seconds", "gauge", "seconds since the plugin was loaded"},
        {"host_restarts", "polaris_plugin_host_restarts", "gauge",
         "restarts in a row of the plugin's host (isolation \"process\"; 0 in process)"},
    };
    metric_head("polaris_plugin_up", "gauge", "1 when the plugin is Active, else 0 (label state says why)");
    for (int i = 0; i < n; i++) {
        char id[64], state[16];
        field(&v[i], "id", id, sizeof id);
        field(&v[i], "state", state, sizeof state);
        printf("polaris_plugin_up{id=\"");
        label(id);
        printf("\",state=\"");
        label(state);
        printf("\"} %d\n", strcmp(state, "Active") == 0);
    }
    for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
        metric_head(per[k][1], per[k][2], per[k][3]);
        for (int i = 0; i < n; i++) {
            char id[64];
            field(&v[i], "id", id, sizeof id);
            double x = ctl_num(v[i].val, v[i].val_len, per[k][0]);
            bool cpu = strcmp(per[k][0], "cpu_ms") == 0;
            printf("%s{id=\"", per[k][1]);
            label(id);
            printf(cpu ? "\"} %.6f\n" : "\"} %.0f\n", cpu ? x / 1000.0 : x);
        }
    }
    buf_free(&out);
    return CTL_OK;
}

/* Prints an object as indented "key: value" lines, nested objects indented;
 * the plugins array (top level) is left to the table after it. */
static void print_tree(const char *json, size_t len, int indent)
{
    struct json_member m[128];
    const char *err;
    int n = json_object_members(json, len, m, 128, &err);
    if (n < 0) {
        printf("%.*s\n", (int)len, json);
        return;
    }
    for (int i = 0; i < n && i < 128; i++) {
        char key[128];
        json_string_decode(m[i].key - 1, m[i].key_len + 2, key, sizeof key);
        if (indent == 0 && (strcmp(key, "plugins") == 0 || strcmp(key, "plugins_leaving") == 0) &&
            m[i].kind == JSON_ARRAY)
            continue;
        if (m[i].kind == JSON_OBJECT) {
            printf("%*s%s:\n", indent, "", key);
            print_tree(m[i].val, m[i].val_len, indent + 2);
        } else {
            char v[512];
            ctl_text(&m[i], v, sizeof v);
            printf("%*s%s: %s\n", indent, "", key, v);
        }
    }
}

/* reload: one line per plugin with its outcome; exit 1 if any failed. */
static int print_reload(const struct ctl_result *r)
{
    struct json_member plugins;
    int failed = (int)ctl_num(r->data, r->data_len, "failed");
    printf("reloaded: %d plugin%s failed\n", failed, failed == 1 ? "" : "s");
    if (ctl_get(r->data, r->data_len, "plugins", &plugins) && plugins.kind == JSON_ARRAY) {
        struct json_member v[256];
        const char *err;
        int n = json_array_elements(plugins.val, plugins.val_len, v, 256, &err);
        for (int i = 0; i < n && i < 256; i++) {
            struct json_member id, outcome, reason;
            char sid[128] = "?", so[32] = "?", sr[512] = "";
            if (ctl_get(v[i].val, v[i].val_len, "id", &id))
                ctl_text(&id, sid, sizeof sid);
            if (ctl_get(v[i].val, v[i].val_len, "outcome", &outcome))
                ctl_text(&outcome, so, sizeof so);
            if (ctl_get(v[i].val, v[i].val_len, "reason", &reason) && reason.kind == JSON_STRING)
                ctl_text(&reason, sr, sizeof sr);
            printf("  %-24s %-10s %s\n", sid, so, sr);
        }
    }
    return failed || strstr(r->msg, "failed") ? CTL_FAILED : CTL_OK;
}

int ctl_cmd_control(const char *sock, const char *cmd, int argc, char **argv)
{
    const char *action = cmd, *args = NULL;
    bool json = false;
    struct buf ib = BUF_INIT;
    int i = 0;
    if (strcmp(cmd, "status") == 0) {
        if (i < argc && strcmp(argv[i], "--json") == 0) {
            json = true;
            i++;
        }
    } else if (strcmp(cmd, "unload") == 0) {
        if (i >= argc) {
            fprintf(stderr, "polarisctl: usage: unload PLUGIN_ID\n");
            return CTL_USAGE;
        }
        buf_puts(&ib, "{\"id\":");
        buf_json_cstr(&ib, argv[i++]);
        buf_putc(&ib, '}');
        args = ib.p;
    } else if (strcmp(cmd, "call") == 0) {
        if (i >= argc) {
            fprintf(stderr, "polarisctl: usage: call ACTION [JSON]\n");
            return CTL_USAGE;
        }
        action = argv[i++];
        json = true;
        if (i < argc) {
            args = argv[i++];
            const char *err;
            if (json_validate(args, strlen(args), &err) != JSON_OBJECT) {
                fprintf(stderr, "polarisctl: call: args must be a JSON object (%s)\n",
                        err ? err : "not an object");
                return CTL_USAGE;
            }
        }
    }
    if (i < argc) {
        fprintf(stderr, "polarisctl: unexpected argument '%s'\n", argv[i]);
        buf_free(&ib);
        return CTL_USAGE;
    }
    struct buf out = BUF_INIT;
    struct ctl_result r;
    int rc = ctl_call(sock, action, args, &out, &r);
    buf_free(&ib);
    if (rc != CTL_OK) {
        buf_free(&out);
        return rc;
    }
    if (r.code != 0) {
        fprintf(stderr, "polarisctl: %s: %s (code %lld)\n", action, r.msg, r.code);
        rc = CTL_FAILED;
    } else if (strcmp(cmd, "reload") == 0) {
        rc = print_reload(&r);
    } else if (strcmp(cmd, "unload") == 0) {
        printf("unloaded\n");
    } else if (json) {
        printf("%.*s\n", (int)r.data_len, r.data);
        if (strcmp(cmd, "status") == 0 && plugins_in_error(r.data, r.data_len) > 0)
            rc = CTL_PLUGIN_ERROR;
    } else {
        print_tree(r.data, r.data_len, 0);
        if (strcmp(cmd, "status") == 0) {
            printf("plugins:\n");
            if (print_plugins(r.data, r.data_len) > 0)
                rc = CTL_PLUGIN_ERROR;
        }
    }
    buf_free(&out);
    return rc;
}
