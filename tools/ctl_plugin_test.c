/* ctl_plugin_test.c - `polarisctl plugin-test PLUGIN EVENTS.json`: run one
 * plugin (and the dependencies beside it) against sample events, offline,
 * and print what it would forward to the guest.
 *
 * Nothing is simulated: it starts a real polarisd on sockets in a temporary
 * directory with only that plugin, sends the events as an app would, reads
 * what comes out as the guest would, and stops the daemon. So the plugin
 * runs in exactly the sandbox, limits and API it will have in production;
 * the edit -> check -> test -> reload loop needs no running daemon.
 *
 * Exit status: 0 when every event went through without a strategyError,
 * 1 when the plugin failed to load or a handler failed, 2 usage, 3 the
 * daemon could not be started.
 *
 * Uses: ctl_common (status requests), transport (the guest side), lsp/plp codecs. */
#include "ctl.h"
#include "wire/lsp_codec.h"
#include "wire/plp_codec.h"
#include "lib/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct test {
    char dir[PATH_MAX];            /* the temporary directory */
    char srcdir[PATH_MAX];         /* where the plugin lives */
    char app[PATH_MAX], guest_uri[PATH_MAX], log[PATH_MAX];
    pid_t pid;
    char linked[64][64];           /* plugin ids already linked */
    int nlinked;
};

static int read_file(const char *path, struct buf *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(out, chunk, n);
    fclose(f);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Where id's manifest is: a plugin folder id/id.json (true) or id.json
 * beside the others (false). */
static bool is_folder(const struct test *t, const char *id, char *manifest, size_t cap)
{
    snprintf(manifest, cap, "%s/%s/%s.json", t->srcdir, id, id);
    if (access(manifest, R_OK) == 0)
        return true;
    snprintf(manifest, cap, "%s/%s.json", t->srcdir, id);
    return false;
}

/* Links id.json and its entry point (or the whole folder id/, modules and
 * all) into the test's plugin dir, then its dependencies found in the same
 * source directory. */
static int link_plugin(struct test *t, const char *id)
{
    for (int i = 0; i < t->nlinked; i++)
        if (strcmp(t->linked[i], id) == 0)
            return 0;
    if (t->nlinked == 64 || strlen(id) >= sizeof t->linked[0] || strchr(id, '/'))
        return -1;
    snprintf(t->linked[t->nlinked++], sizeof t->linked[0], "%s", id);
    char src[PATH_MAX + 160], dst[PATH_MAX + 80];
    bool folder = is_folder(t, id, src, sizeof src);
    struct buf man = BUF_INIT;
    if (read_file(src, &man) < 0) {
        fprintf(stderr, "polarisctl: plugin-test: %s: %s\n", src, strerror(errno));
        return -1;
    }
    int rc;
    if (folder) {
        /* the daemon finds id/id.json itself, and the modules beside it */
        snprintf(src, sizeof src, "%s/%s", t->srcdir, id);
        snprintf(dst, sizeof dst, "%s/plugins/%s", t->dir, id);
        rc = symlink(src, dst);
    } else {
        snprintf(dst, sizeof dst, "%s/plugins/%s.json", t->dir, id);
        rc = symlink(src, dst);
    }
    if (rc < 0)
        fprintf(stderr, "polarisctl: plugin-test: linking %s: %s\n", src, strerror(errno));
    struct json_member m;
    char entry[256];
    snprintf(entry, sizeof entry, "%s.lua", id);
    if (ctl_get(man.p, man.len, "entry_point", &m))
        ctl_text(&m, entry, sizeof entry);
    if (!strchr(entry, '.'))                    /* a function name: it lives in id.lua */
        snprintf(entry, sizeof entry, "%s.lua", id);
    if (rc == 0 && !folder && !strchr(entry, '/')) {
        snprintf(src, sizeof src, "%s/%s", t->srcdir, entry);
        snprintf(dst, sizeof dst, "%s/plugins/%s", t->dir, entry);
        rc = symlink(src, dst);
    }
    struct json_member deps;
    if (rc == 0 && ctl_get(man.p, man.len, "dependencies", &deps) && deps.kind == JSON_OBJECT) {
        struct json_member d[32];
        const char *err;
        int n = json_object_members(deps.val, deps.val_len, d, 32, &err);
        for (int i = 0; i < n && i < 32 && rc == 0; i++) {
            char dep[64];
            if (json_string_decode(d[i].key - 1, d[i].key_len + 2, dep, sizeof dep) > 0) {
                is_folder(t, dep, src, sizeof src);
                if (access(src, R_OK) == 0)      /* else the daemon says it is missing */
                    rc = link_plugin(t, dep);
            }
        }
    }
    buf_free(&man);
    return rc;
}

/* The id the manifest gives (the file name is only its stem). */
static const char *plugin_id(const struct test *t, const char *stem)
{
    static char id[64];
    char path[PATH_MAX + 160];
    snprintf(id, sizeof id, "%s", stem);
    is_folder(t, stem, path, sizeof path);
    struct buf man = BUF_INIT;
    struct json_member m;
    if (read_file(path, &man) == 0 && ctl_get(man.p, man.len, "id", &m) && m.kind == JSON_STRING)
        ctl_text(&m, id, sizeof id);
    buf_free(&man);
    return id;
}

static const char *find_polarisd(const char *given)
{
    static char path[PATH_MAX + 32];
    if (given)
        return given;
    const char *env = getenv("POLARISD");
    if (env && *env)
        return env;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *dir = dirname(self);
        snprintf(path, sizeof path, "%s/polarisd", dir);
        if (access(path, X_OK) == 0)
            return path;
        snprintf(path, sizeof path, "%s/../sbin/polarisd", dir);
        if (access(path, X_OK) == 0)
            return path;
    }
    return "polarisd";
}

static int start_daemon(struct test *t, const char *polarisd, const char *conf)
{
    char cfg[PATH_MAX + 32], plugins[PATH_MAX + 16];
    snprintf(cfg, sizeof cfg, "%s/polarisd.conf", t->dir);
    snprintf(plugins, sizeof plugins, "%s/plugins", t->dir);
    struct buf c = BUF_INIT;
    if (conf && read_file(conf, &c) < 0) {
        fprintf(stderr, "polarisctl: plugin-test: %s: %s\n", conf, strerror(errno));
        return CTL_USAGE;
    }
    /* the operator's settings, then what a test run needs: no host-wide
     * monitors reaching in */
    buf_puts(&c, "\n[monitor]\nprocess_events = off\n");
    FILE *f = fopen(cfg, "w");
    if (!f || fwrite(c.p, 1, c.len, f) != c.len) {
        fprintf(stderr, "polarisctl: plugin-test: %s: %s\n", cfg, strerror(errno));
        if (f)
            fclose(f);
        buf_free(&c);
        return CTL_FAILED;
    }
    fclose(f);
    buf_free(&c);
    t->pid = fork();
    if (t->pid < 0)
        return CTL_UNREACHABLE;
    if (t->pid == 0) {
        int fd = open(t->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp(polarisd, polarisd, "-c", cfg, "--ipc", t->app, "--guest", t->guest_uri,
               "--plugins", plugins, "--foreground", (char *)NULL);
        dprintf(2, "cannot run %s: %s\n", polarisd, strerror(errno));
        _exit(127);
    }
    for (long long deadline = ctl_now_ms() + 10000; ctl_now_ms() < deadline; sleep_ms(10)) {
        int st;
        if (waitpid(t->pid, &st, WNOHANG) == t->pid) {
            t->pid = 0;
            break;
        }
        if (access(t->app, F_OK) == 0)
            return CTL_OK;
    }
    struct buf log = BUF_INIT;
    read_file(t->log, &log);
    fprintf(stderr, "polarisctl: plugin-test: polarisd (%s) did not start:\n%.*s", polarisd,
            (int)log.len, log.p ? log.p : "");
    buf_free(&log);
    return CTL_UNREACHABLE;
}

/* status as JSON text (the data member) into out; -1 on failure */
static int status(struct test *t, struct buf *out, struct ctl_result *r)
{
    buf_reset(out);
    int rc = ctl_call(t->app, "status", NULL, out, r);
    return rc == CTL_OK && r->code == 0 ? 0 : -1;
}

static double sub(const struct ctl_result *r, const char *group, const char *key)
{
    struct json_member g;
    return ctl_get(r->data, r->data_len, group, &g) ? ctl_num(g.val, g.val_len, key) : 0;
}

/* Checks every plugin loaded, the one under test (id) among them; prints
 * why not. A daemon that loaded nothing would pass every event unchanged,
 * which must not read as a passing test. */
static bool plugins_active(struct test *t, const char *want)
{
    bool seen = false;
    struct buf out = BUF_INIT;
    struct ctl_result r;
    bool ok = status(t, &out, &r) == 0;
    struct json_member plugins;
    if (ok && ctl_get(r.data, r.data_len, "plugins", &plugins)) {
        struct json_member v[64];
        const char *err;
        int n = json_array_elements(plugins.val, plugins.val_len, v, 64, &err);
        for (int i = 0; i < n && i < 64; i++) {
            struct json_member id, state, why;
            char sid[64] = "?", sst[16] = "?", swhy[512] = "";
            if (ctl_get(v[i].val, v[i].val_len, "id", &id))
                ctl_text(&id, sid, sizeof sid);
            if (ctl_get(v[i].val, v[i].val_len, "state", &state))
                ctl_text(&state, sst, sizeof sst);
            if (ctl_get(v[i].val, v[i].val_len, "last_error", &why) && why.kind == JSON_STRING)
                ctl_text(&why, swhy, sizeof swhy);
            seen |= strcmp(sid, want) == 0;
            if (strcmp(sst, "Active") != 0) {
                fprintf(stderr, "plugin-test: %s is %s: %s\n", sid, sst, swhy);
                ok = false;
            }
        }
    }
    if (ok && !seen) {
        fprintf(stderr, "plugin-test: %s did not load: the daemon does not list it\n", want);
        ok = false;
    }
    buf_free(&out);
    return ok;
}

static int send_events(struct test *t, const struct buf *events, int *n_out)
{
    struct json_member v[4096];
    const char *err;
    int n = 1;
    if (json_validate(events->p, events->len, &err) == JSON_ARRAY) {
        n = json_array_elements(events->p, events->len, v, 4096, &err);
        if (n > 4096) {
            fprintf(stderr, "polarisctl: plugin-test: at most 4096 events\n");
            return CTL_USAGE;
        }
    } else if (json_validate(events->p, events->len, &err) == JSON_OBJECT) {
        v[0] = (struct json_member){NULL, 0, events->p, events->len, JSON_OBJECT, false, false};
    } else {
        fprintf(stderr, "polarisctl: plugin-test: events must be a JSON object or an array of "
                        "them (%s)\n", err ? err : "neither");
        return CTL_USAGE;
    }
    int fd = ctl_connect_unix(t->app);
    if (fd < 0)
        return CTL_UNREACHABLE;
    struct buf frames = BUF_INIT;
    for (int i = 0; i < n; i++)
        lsp_encode(&frames, LSP_EVENT_REPORT, 0, v[i].val, v[i].val_len);
    int rc = ctl_send_all(fd, frames.p, frames.len) < 0 ? CTL_UNREACHABLE : CTL_OK;
    struct buf answer = BUF_INIT;
    if (rc == CTL_OK && ctl_roundtrip(fd, "status", NULL, &answer) < 0)  /* all read */
        rc = CTL_UNREACHABLE;
    buf_free(&answer);
    buf_free(&frames);
    close(fd);
    *n_out = n;
    return rc;
}

static void stop_daemon(struct test *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGTERM);
        int st;
        for (int i = 0; i < 500 && waitpid(t->pid, &st, WNOHANG) == 0; i++)
            sleep_ms(10);
        if (waitpid(t->pid, &st, WNOHANG) == 0) {
            kill(t->pid, SIGKILL);
            waitpid(t->pid, &st, 0);
        }
    }
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "polarisctl: plugin-test: could not remove %s\n", t->dir);
}

int ctl_cmd_plugin_test(int argc, char **argv)
{
    const char *plugin = NULL, *events_file = NULL, *conf = NULL, *polarisd = NULL;
    long timeout_ms = 10000;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            conf = argv[++i];
        else if (strcmp(argv[i], "--polarisd") == 0 && i + 1 < argc)
            polarisd = argv[++i];
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout_ms = strtol(argv[++i], NULL, 10);
        else if (!plugin)
            plugin = argv[i];
        else if (!events_file)
            events_file = argv[i];
        else
            plugin = NULL, i = argc;
    }
    if (!plugin || !events_file || timeout_ms <= 0) {
        fprintf(stderr, "polarisctl: usage: plugin-test PLUGIN(.lua|.json) EVENTS.json [-c CONF] "
                        "[--polarisd PATH] [--timeout MS]\n");
        return CTL_USAGE;
    }
    struct test t = {.pid = 0};
    char real[PATH_MAX], base[256];
    if (!realpath(plugin, real)) {
        fprintf(stderr, "polarisctl: plugin-test: %s: %s\n", plugin, strerror(errno));
        return CTL_USAGE;
    }
    snprintf(base, sizeof base, "%s", strrchr(real, '/') + 1);
    char *dot = strrchr(base, '.');
    if (dot && (strcmp(dot, ".lua") == 0 || strcmp(dot, ".json") == 0))
        *dot = '\0';
    *strrchr(real, '/') = '\0';
    /* NAME/NAME.lua (or .json) inside its folder: the plugin is the folder,
     * and its dependencies sit beside it */
    const char *parent = strrchr(real, '/');
    if (parent && parent != real && strcmp(parent + 1, base) == 0)
        *strrchr(real, '/') = '\0';
    snprintf(t.srcdir, sizeof t.srcdir, "%s", real);
    struct buf events = BUF_INIT;
    if (read_file(strcmp(events_file, "-") == 0 ? "/dev/stdin" : events_file, &events) < 0) {
        fprintf(stderr, "polarisctl: plugin-test: %s: %s\n", events_file, strerror(errno));
        return CTL_USAGE;
    }
    snprintf(t.dir, sizeof t.dir, "/tmp/polaris-plugin-test-XXXXXX");
    if (!mkdtemp(t.dir)) {
        buf_free(&events);
        return CTL_FAILED;
    }
    snprintf(t.app, sizeof t.app, "%s/app.sock", t.dir);
    snprintf(t.guest_uri, sizeof t.guest_uri, "unix:%s/guest.sock", t.dir);
    snprintf(t.log, sizeof t.log, "%s/polarisd.log", t.dir);
    char pdir[PATH_MAX + 16];
    snprintf(pdir, sizeof pdir, "%s/plugins", t.dir);
    int rc = mkdir(pdir, 0700) < 0 || link_plugin(&t, base) < 0 ? CTL_USAGE : CTL_OK;
    if (rc == CTL_OK)
        rc = start_daemon(&t, find_polarisd(polarisd), conf);
    if (rc == CTL_OK && !plugins_active(&t, plugin_id(&t, base)))
        rc = CTL_FAILED;
    char err[256];
    int g = -1;
    if (rc == CTL_OK && (g = transport_connect(t.guest_uri, err, sizeof err)) < 0) {
        fprintf(stderr, "polarisctl: plugin-test: guest link: %s\n", err);
        rc = CTL_UNREACHABLE;
    }
    int n = 0;
    if (rc == CTL_OK)
        rc = send_events(&t, &events, &n);
    long got = 0, errors = 0;
    if (rc == CTL_OK) {
        struct plp_decoder dec;
        plp_decoder_init(&dec);
        struct buf sb = BUF_INIT;
        struct ctl_result r;
        long long deadline = ctl_now_ms() + timeout_ms;
        for (;;) {
            struct pollfd p = {.fd = g, .events = POLLIN};
            if (poll(&p, 1, 50) > 0) {
                size_t avail;
                uint8_t *space = plp_decoder_space(&dec, 65536, &avail);
                ssize_t r2 = space ? recv(g, space, avail, 0) : -1;
                if (r2 <= 0)
                    break;
                plp_decoder_commit(&dec, (size_t)r2);
                struct plp_frame f;
                int st;
                while ((st = plp_decoder_next(&dec, &f)) != PLP_NEED_MORE && st >= 0) {
                    if (st != PLP_FRAME || f.type != PLP_EVENT_H2G)
                        continue;
                    printf("%.*s\n", (int)f.len, f.payload);
                    got++;
                    struct json_member se;
                    if (ctl_get(f.payload, f.len, "strategyError", &se))
                        errors++;
                }
                continue;
            }
            /* quiet: done once everything sent is out and received */
            if (status(&t, &sb, &r) == 0 && sub(&r, "ipc", "events_in") >= n &&
                sub(&r, "core_queue", "length") == 0 && sub(&r, "core_queue", "in_strategies") == 0 &&
                sub(&r, "guest", "buffered") == 0 && sub(&r, "guest", "events_sent") <= got)
                break;
            if (ctl_now_ms() > deadline) {
                fprintf(stderr, "plugin-test: timed out after %ld ms with events still inside\n",
                        timeout_ms);
                rc = CTL_FAILED;
                break;
            }
        }
        double dropped = sub(&r, "core", "events_dropped_by_strategy") +
                         sub(&r, "core", "events_dropped_by_router");
        fprintf(stderr, "plugin-test: %d event%s in, %ld forwarded (%ld with strategyError), "
                        "%.0f dropped by the plugin\n", n, n == 1 ? "" : "s", got, errors, dropped);
        if (errors && rc == CTL_OK)
            rc = CTL_FAILED;
        plp_decoder_free(&dec);
        buf_free(&sb);
    }
    if (rc != CTL_OK && rc != CTL_USAGE) {
        struct buf log = BUF_INIT;
        read_file(t.log, &log);
        if (log.len)
            fprintf(stderr, "--- polarisd log ---\n%.*s", (int)log.len, log.p);
        buf_free(&log);
    }
    if (g >= 0)
        close(g);
    stop_daemon(&t);
    buf_free(&events);
    return rc;
}
