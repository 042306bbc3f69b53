/* ctl_status.c - `polarisctl plugins` (a table) and `polarisctl metrics`
 * (Prometheus text exposition, format 0.0.4), both read from one status
 * request. The counter list and help texts come from core/lib/stats.h, so a
 * counter added there shows up here without another edit.
 *
 * Uses: ctl (the request), stats.h (names, help), json_scan. */
#include "ctl.h"
#include "lib/stats.h"

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

static int plugin_list(const struct ctl_result *r, struct json_member *v, int max)
{
    struct json_member plugins;
    const char *err;
    if (!ctl_get(r->data, r->data_len, "plugins", &plugins) || plugins.kind != JSON_ARRAY)
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

int ctl_plugins_in_error(const char *status, size_t len)
{
    struct ctl_result r = {.data = status, .data_len = len};
    static struct json_member v[1024];
    int n = plugin_list(&r, v, 1024), in_error = 0;
    for (int i = 0; i < n; i++) {
        char state[16];
        field(&v[i], "state", state, sizeof state);
        in_error += strcmp(state, "Error") == 0;
    }
    return in_error;
}

int ctl_print_plugins(const char *status, size_t len)
{
    struct ctl_result r = {.data = status, .data_len = len};
    static struct json_member v[1024];
    int n = plugin_list(&r, v, 1024), in_error = 0;
    printf("%-22s %-9s %-12s %-18s %9s %9s %8s %8s %6s  %s\n", "ID", "VERSION", "STATE", "HOST",
           "MEM_KIB", "CPU_MS", "EVENTS", "COMMANDS", "ERRORS", "LAST ERROR");
    for (int i = 0; i < n; i++) {
        char id[64], ver[32], state[16], err[256], iso[16], host[40] = "in-process";
        field(&v[i], "id", id, sizeof id);
        field(&v[i], "version", ver, sizeof ver);
        field(&v[i], "state", state, sizeof state);
        field(&v[i], "last_error", err, sizeof err);
        field(&v[i], "isolation", iso, sizeof iso);
        in_error += strcmp(state, "Error") == 0;
        if (strcmp(iso, "process") == 0) {
            /* pid and state of its plugin host, and how often it restarted */
            char hs[16];
            field(&v[i], "host_state", hs, sizeof hs);
            double pid = ctl_num(v[i].val, v[i].val_len, "host_pid");
            double restarts = ctl_num(v[i].val, v[i].val_len, "host_restarts");
            if (pid > 0)
                snprintf(host, sizeof host, "%.0f %s r%.0f", pid, hs, restarts);
            else
                snprintf(host, sizeof host, "%s r%.0f", hs, restarts);
            if (strcmp(err, "-") == 0)
                field(&v[i], "host_last_exit", err, sizeof err);
        }
        printf("%-22s %-9s %-12s %-18s %9.1f %9.1f %8.0f %8.0f %6.0f  %s\n", id, ver, state, host,
               ctl_num(v[i].val, v[i].val_len, "memory_bytes") / 1024.0,
               ctl_num(v[i].val, v[i].val_len, "cpu_ms"),
               ctl_num(v[i].val, v[i].val_len, "events"),
               ctl_num(v[i].val, v[i].val_len, "commands"),
               ctl_num(v[i].val, v[i].val_len, "errors"), err);
        /* what the plugin's status() said, on its own line: free-form JSON
         * would break the columns */
        struct json_member ps;
        if (ctl_get(v[i].val, v[i].val_len, "status", &ps) && ps.kind != JSON_NULL)
            printf("  %s status: %.*s\n", id, (int)ps.val_len, ps.val);
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
    if (ctl_print_plugins(r.data, r.data_len) > 0)
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
    int n = plugin_list(&r, v, 1024);
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
