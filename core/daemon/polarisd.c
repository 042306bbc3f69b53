/* polarisd.c - the daemon's entry point: command line (DESIGN 7), config,
 * sockets, the four execution domains, and an orderly, leak-free exit.
 *
 * Sockets are opened here, before any thread starts, so a bad path or a
 * busy port fails the start with a clear message instead of half a daemon. */
#include "daemon/config.h"
#include "lib/version.h"
#include "daemon/core.h"
#include "daemon/daemon.h"
#include "daemon/guest_link.h"
#include "daemon/ipc_server.h"
#include "lib/log.h"
#include "wire/event_json.h"
#include "daemon/plugin_host.h"
#include "daemon/plugin_registry.h"
#include "daemon/proc_monitor.h"
#include "daemon/spool.h"
#include "lib/sd_notify.h"
#include "lib/stats.h"
#include "lib/transport.h"
#include "daemon/worker_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef POLARIS_DATADIR
#define POLARIS_DATADIR "/usr/local/share/polaris"
#endif

struct cli {
    const char *config_file;
    const char *ipc_path;
    const char *guest_uri;
    const char *spool_dir;
    const char *log_level;
    const char *plugins[CONFIG_MAX_LIST];
    int nplugins;
    bool foreground, check, config_only;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: polarisd [-c FILE] [--ipc PATH] [--guest URI] [--plugins DIR]...\n"
        "                [--spool DIR] [--log-level debug|info|warn|error] [--foreground]\n"
        "       polarisd --check [--config-only] [-c FILE] [--plugins DIR]...\n"
        "       polarisd --version\n"
        "\n"
        "  -c, --config FILE   configuration file (see conf/polarisd.conf)\n"
        "      --ipc PATH      Unix socket for local apps (default /run/polaris/polaris.sock)\n"
        "      --guest URI     guest link: vsock://any:9001 (default), tcp://HOST:PORT, unix:PATH\n"
        "      --plugins DIR   plugin directory; repeatable; replaces the configured paths\n"
        "      --spool DIR     keep undelivered events on disk in DIR\n"
        "      --log-level L   debug, info, warn or error\n"
        "      --foreground    do not detach (use under systemd and in tests)\n"
        "      --check         load the config and plugins, report problems, exit:\n"
        "                      0 all good, 1 the config is invalid (a start or reload\n"
        "                      would be refused), 2 the config is good but some\n"
        "                      plugins fail (they would run in Error; the rest runs)\n"
        "      --config-only   with --check: the config, plugin paths and runtime only\n"
        "                      (0 or 1; what the unit's ExecStartPre runs)\n");
}

static int parse_cli(int argc, char **argv, struct cli *cli)
{
    enum { O_IPC = 256, O_GUEST, O_PLUGINS, O_SPOOL, O_LOGLEVEL, O_FG, O_CHECK, O_VERSION,
           O_CONFIG_ONLY };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"ipc", required_argument, NULL, O_IPC},
        {"guest", required_argument, NULL, O_GUEST},
        {"plugins", required_argument, NULL, O_PLUGINS},
        {"spool", required_argument, NULL, O_SPOOL},
        {"log-level", required_argument, NULL, O_LOGLEVEL},
        {"foreground", no_argument, NULL, O_FG},
        {"check", no_argument, NULL, O_CHECK},
        {"config-only", no_argument, NULL, O_CONFIG_ONLY},
        {"version", no_argument, NULL, O_VERSION},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': cli->config_file = optarg; break;
        case O_IPC: cli->ipc_path = optarg; break;
        case O_GUEST: cli->guest_uri = optarg; break;
        case O_PLUGINS:
            if (cli->nplugins == CONFIG_MAX_LIST) {
                fprintf(stderr, "polarisd: at most %d --plugins directories\n", CONFIG_MAX_LIST);
                return 2;
            }
            cli->plugins[cli->nplugins++] = optarg;
            break;
        case O_SPOOL: cli->spool_dir = optarg; break;
        case O_LOGLEVEL: cli->log_level = optarg; break;
        case O_FG: cli->foreground = true; break;
        case O_CHECK: cli->check = true; break;
        case O_CONFIG_ONLY: cli->config_only = true; break;
        case O_VERSION:
            printf("polarisd %s (git %s)\n", polaris_version, polaris_git_rev);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (cli->config_only && !cli->check) {
        fprintf(stderr, "polarisd: --config-only goes with --check\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "polarisd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return 0;
}

static int set_str(char *dst, size_t cap, const char *src, const char *what, char *err, size_t errlen)
{
    if (strlen(src) >= cap) {
        snprintf(err, errlen, "%s is longer than %zu bytes", what, cap - 1);
        return -1;
    }
    strcpy(dst, src);
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool runtime_there(const char *lua_dir)
{
    char p[CONFIG_PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/polaris/loader.lua", lua_dir);
    return access(p, R_OK) == 0;
}

/* The runtime's Lua for a daemon started anywhere: beside the binary first
 * (a build tree's ../lua, or a relocated install's ../share/polaris/lua), so
 * the binary never runs another version's runtime; then a checkout in the
 * working directory; then the configured install location. */
static int find_runtime(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        const char *dir = dirname(self);
        const char *rel[] = {"../lua", "../share/polaris/lua"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            char cand[PATH_MAX + 32], real[PATH_MAX];
            snprintf(cand, sizeof cand, "%s/%s", dir, rel[i]);
            if (runtime_there(cand) && realpath(cand, real) && strlen(real) < cap) {
                snprintf(out, cap, "%s", real);
                return 0;
            }
        }
    }
    if (runtime_there("lua")) {
        snprintf(out, cap, "lua");
        return 0;
    }
    snprintf(out, cap, "%s/lua", POLARIS_DATADIR);
    return runtime_there(out) ? 0 : -1;
}

/* config file, then the command line over it (DESIGN 7 precedence) */
static struct config *load_config(void *ctx, char *err, size_t errlen)
{
    struct cli *cli = ctx;
    struct config *c = malloc(sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    config_defaults(c);
    if (cli->config_file && config_load_file(c, cli->config_file, err, errlen) < 0)
        goto fail;
    if (cli->ipc_path && set_str(c->ipc_path, sizeof c->ipc_path, cli->ipc_path, "--ipc", err, errlen) < 0)
        goto fail;
    if (cli->guest_uri && set_str(c->guest_uri, sizeof c->guest_uri, cli->guest_uri, "--guest", err, errlen) < 0)
        goto fail;
    if (cli->spool_dir && set_str(c->spool_dir, sizeof c->spool_dir, cli->spool_dir, "--spool", err, errlen) < 0)
        goto fail;
    if (cli->log_level && log_level_parse(cli->log_level, &c->log_level) < 0) {
        snprintf(err, errlen, "--log-level: '%s' is not one of debug, info, warn, error", cli->log_level);
        goto fail;
    }
    if (cli->nplugins) {
        c->plugin_paths.n = 0;
        for (int i = 0; i < cli->nplugins; i++)
            if (set_str(c->plugin_paths.v[c->plugin_paths.n++], CONFIG_PATH_MAX, cli->plugins[i],
                        "--plugins", err, errlen) < 0)
                goto fail;
    } else if (c->plugin_paths.n == 0) {
        /* a source checkout runs its own plugins; an install runs the shipped ones */
        bool local = is_dir("strategies") || is_dir("plugins");
        const char *names[] = {"strategies", "plugins"};
        for (int i = 0; i < 2; i++) {
            char *v = c->plugin_paths.v[c->plugin_paths.n];
            if (local)
                snprintf(v, CONFIG_PATH_MAX, "%s", names[i]);
            else
                snprintf(v, CONFIG_PATH_MAX, "%s/%s", POLARIS_DATADIR, names[i]);
            if (is_dir(v))                /* defaults are a guess: only those there count */
                c->plugin_paths.n++;
        }
    }
    /* a path the operator named that is not there is a typo or a missing
     * package: running without those plugins while saying "ready" hides it */
    for (int i = 0; i < c->plugin_paths.n; i++)
        if (!is_dir(c->plugin_paths.v[i])) {
            snprintf(err, errlen, "plugin path %s is not a directory (%s)", c->plugin_paths.v[i],
                     cli->nplugins ? "--plugins" : "plugins.paths");
            goto fail;
        }
    if (!c->lua_dir[0] && find_runtime(c->lua_dir, sizeof c->lua_dir) < 0) {
        snprintf(err, errlen, "cannot find the runtime's Lua (polaris/loader.lua) beside %s, in "
                 "./lua or in %s/lua: run make install, or set plugins.lua_dir", "the polarisd binary",
                 POLARIS_DATADIR);
        goto fail;
    }
    if (!runtime_there(c->lua_dir)) {
        snprintf(err, errlen, "plugins.lua_dir %s does not hold the runtime's Lua "
                 "(polaris/loader.lua)", c->lua_dir);
        goto fail;
    }
    return c;
fail:
    free(c);
    return NULL;
}

/* Accepted events a previous run did not finish go through again, first:
 * they wait in the core queue until the core starts, ahead of anything an
 * app sends now. */
static int replay_one(void *ctx, uint64_t event_id, const char *p, size_t len, uint64_t ticket,
                      uint32_t seq)
{
    struct daemon *d = ctx;
    struct envelope *e = envelope_new(ENV_IPC_EVENT, p, len);
    if (!e)
        return -1;
    e->ev.id = event_id;
    e->ev.spool_ticket = ticket;
    e->ev.seq = seq;                         /* a guest may have it already: the same seq_id */
    atomic_fetch_add(&d->core_events_unrouted, 1);
    envq_push_force(&d->core_q, e);
    return 0;
}

static int open_spool(struct daemon *d)
{
    char err[512];
    d->spool = spool_open(d->cfg->spool_dir, err, sizeof err);
    if (!d->spool) {
        log_error("cannot start: %s", err);
        return -1;
    }
    int n = spool_replay(d->spool, replay_one, d);
    STAT_ADD(spool_replayed, (uint64_t)(n > 0 ? n : 0));
    STAT_SET(spool_bytes, spool_live_bytes(d->spool));
    log_info("spool %s: %d accepted event%s from the last run go through again", d->cfg->spool_dir,
             n, n == 1 ? "" : "s");
    return 0;
}

/* Every client, the guest, plugin pipes and watched processes hold a
 * descriptor: raise the soft limit to what ipc.max_clients needs (up to the
 * hard limit, which only root or systemd's LimitNOFILE= can raise). */
static void raise_nofile(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = (rlim_t)cfg->max_clients + 256;
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
        log_warn("open files limited to %llu: fewer than ipc.max_clients (%u) + 256; raise "
                 "LimitNOFILE", (unsigned long long)rl.rlim_cur, cfg->max_clients);
}

static void ensure_parent_dir(const char *path)
{
    char tmp[CONFIG_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *dir = dirname(tmp);
    if (!is_dir(dir) && mkdir(dir, 0755) < 0 && errno != EEXIST)
        log_warn("cannot create %s: %s", dir, strerror(errno));
}

static int open_guest_listener(const struct config *cfg, char *uri, size_t urilen)
{
    char err[512];
    snprintf(uri, urilen, "%s", cfg->guest_uri);
    if (strncmp(uri, "vsock://", 8) == 0) {
        int fd = -1;
        if (transport_vsock_usable()) {
            fd = transport_listen(uri, 0, err, sizeof err);
            if (fd >= 0)
                return fd;
            log_warn("guest link %s: %s", uri, err);
        } else {
            log_warn("no VSOCK host transport here (/dev/vhost-vsock is missing): "
                     "the guest link falls back to %s", cfg->guest_fallback_uri);
        }
        snprintf(uri, urilen, "%s", cfg->guest_fallback_uri);
    }
    const char *upath = transport_unix_path(uri);
    if (upath)
        ensure_parent_dir(upath);
    int fd = transport_listen(uri, 0660, err, sizeof err);
    if (fd < 0)
        log_error("guest link: %s", err);
    return fd;
}

/* Detach like a classic daemon, but let the parent exit only once the child
 * is ready, so "polarisd && polarisctl status" works. */
static int daemonize(int *ready_fd)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        close(p[1]);
        char c;
        ssize_t n = read(p[0], &c, 1);
        _exit(n == 1 ? 0 : 1);
    }
    close(p[0]);
    setsid();
    if (fork() > 0)
        _exit(0);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (null > 2)
            close(null);
    }
    *ready_fd = p[1];
    return 0;
}

int main(int argc, char **argv)
{
    struct cli cli = {0};
    int rc = parse_cli(argc, argv, &cli);
    if (rc)
        return rc;
    char err[512];
    struct config *cfg = load_config(&cli, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "polarisd: %s\n", err);
        if (cli.check)
            printf("FAILED: the config is invalid\n");
        return 1;
    }
    log_set_level(cfg->log_level);
    log_set_burst(cfg->log_burst);
    if (cli.check) {
        /* like nginx -t: the config, then every plugin built and initialised,
         * no sockets and no threads. Exit 1 blocks a start (ExecStartPre);
         * a failing plugin is exit 2: the daemon would run it in Error. */
        printf("config: %s: ok\n", cfg->file[0] ? cfg->file : "(built-in defaults)");
        for (int i = 0; i < cfg->plugin_paths.n; i++)
            printf("plugin path: %s\n", cfg->plugin_paths.v[i]);
        printf("runtime: %s\n", cfg->lua_dir);
        if (cli.config_only) {
            printf("ok: the config is valid (plugins not checked)\n");
            config_unref(cfg);
            return 0;
        }
        struct daemon cd = {0};
        cd.cfg = cfg;
        envq_init(&cd.core_q, 1u << 30);
        cd.plugins = registry_new(&cd);
        cd.hosts = plugin_hosts_new(NULL);
        int failed = cd.plugins && cd.hosts ? registry_load(cd.plugins, cfg, NULL) : 1;
        const char *rt = cd.plugins ? registry_runtime_error(cd.plugins) : "out of memory";
        struct buf st = BUF_INIT;
        if (cd.plugins)
            registry_status_json(cd.plugins, &st);
        printf("plugins: %s\n", st.p ? st.p : "[]");
        if (rt)
            printf("FAILED: the runtime does not load: %s\n", rt);
        else
            printf("%s: %d plugin%s failed\n", failed ? "FAILED" : "ok", failed, failed == 1 ? "" : "s");
        buf_free(&st);
        /* what plugins asked of the core while starting (timers, emits)
         * is never run here; let go of the plugins those requests hold */
        bool full;
        for (struct envelope *e = envq_drain(&cd.core_q, &full), *next; e; e = next) {
            next = e->next;
            if (e->plugin)
                plugin_unref(e->plugin);
            e->plugin = NULL;
            e->next = NULL;
            envelope_free(e);
        }
        plugin_hosts_free(cd.hosts);
        registry_free(cd.plugins);
        envq_destroy(&cd.core_q);
        config_unref(cfg);
        return rt ? 1 : failed ? 2 : 0;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_nofile(cfg);
    int ready_fd = -1;
    if (!cli.foreground && daemonize(&ready_fd) < 0) {
        fprintf(stderr, "polarisd: cannot detach: %s\n", strerror(errno));
        config_unref(cfg);
        return 1;
    }

    struct daemon d = {0};
    d.cfg = cfg;
    d.started_mono_ns = mono_ns();
    d.started_wall_ms = wall_ms();
    envq_init(&d.core_q, cfg->core_queue_max);
    envq_init(&d.ingress_q, 1);
    envq_init(&d.egress_q, 1);

    /* the guest side first: once apps can connect, everything is there */
    char guest_uri[CONFIG_PATH_MAX];
    int guest_fd = open_guest_listener(cfg, guest_uri, sizeof guest_uri);
    if (guest_fd < 0) {
        rc = 1;
        goto out;
    }
    ensure_parent_dir(cfg->ipc_path);
    int ipc_fd = transport_listen(cfg->ipc_path, cfg->ipc_mode, err, sizeof err);
    if (ipc_fd < 0) {
        log_error("IPC socket: %s", err);
        close(guest_fd);
        const char *gp = transport_unix_path(guest_uri);
        if (gp)
            unlink(gp);
        rc = 1;
        goto out;
    }

    /* only the core thread takes these signals */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGCHLD);             /* polaris.exec: the core's ev_child */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_SIGNALFD);
    if (cfg->spool_dir[0] && open_spool(&d) < 0)
        _exit(1);
    d.plugins = registry_new(&d);
    d.hosts = loop ? plugin_hosts_new(loop) : NULL;
    d.ipc = ipc_server_new(&d, ipc_fd);
    d.guest = guest_link_new(&d, guest_fd, guest_uri);
    d.workers = worker_pool_new(&d, cfg->workers);
    d.core = loop ? core_new(&d, loop, load_config, &cli) : NULL;
    if (d.workers)
        worker_pool_watchdog(d.workers, cfg->plugin_watchdog_ms, plugin_job_stuck);
    if (!d.ipc || !d.guest || !d.workers || !d.core || !d.plugins || !d.hosts ||
        worker_pool_start(d.workers) < 0 || ipc_server_start(d.ipc) < 0 ||
        guest_link_start(d.guest) < 0) {
        log_error("cannot start: out of memory or threads");
        _exit(1);    /* threads may be running: no orderly teardown is possible */
    }
    int failed = registry_load(d.plugins, cfg, NULL);
    const char *rt = registry_runtime_error(d.plugins);
    if (rt) {
        /* no plugin can run, the shipped commands included: not ready */
        log_error("cannot start: the runtime does not load: %s", rt);
        _exit(1);
    }
    if (failed)
        log_warn("%d plugin%s failed to load (see above); the rest are running",
                 failed, failed == 1 ? "" : "s");
    struct proc_monitor *crashes = proc_monitor_start(loop, d.plugins, cfg);
    /* the signals stay blocked in every thread: the core reads them from
     * a signalfd (EVFLAG_SIGNALFD), so no handler runs on a random thread */

    log_info("polarisd %s (git %s) ready: apps on %s, guest on %s, %u workers",
             polaris_version, polaris_git_rev, cfg->ipc_path, guest_uri, cfg->workers);
    registry_notify_ready(d.plugins);
    if (ready_fd >= 0) {
        ssize_t w = write(ready_fd, "r", 1);
        (void)w;
        close(ready_fd);
    }

    core_run(d.core);
    proc_monitor_stop(crashes);
    /* shutdown is under way: a repeated SIGTERM must not kill the teardown
     * once libev stops watching (and unblocks) the signals */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    ipc_server_join(d.ipc);
    guest_link_join(d.guest);
    worker_pool_stop(d.workers);
    plugin_hosts_free(d.hosts);       /* no thread is left to post to a host */
    const char *gpath = transport_unix_path(guest_uri);
    if (gpath)
        unlink(gpath);
    unlink(d.cfg->ipc_path);
    log_info("stopped: %llu events sent to the guest, %llu dropped",
             (unsigned long long)STAT_GET(guest_events_sent),
             (unsigned long long)(STAT_GET(guest_dropped) + STAT_GET(guest_dropped_shutdown)));
    core_free(d.core);
    registry_free(d.plugins);
    ipc_server_free(d.ipc);
    guest_link_free(d.guest);
    worker_pool_free(d.workers);
    ev_loop_destroy(loop);
    spool_close(d.spool);
out:
    envq_destroy(&d.core_q);
    envq_destroy(&d.ingress_q);
    envq_destroy(&d.egress_q);
    config_unref(d.cfg);
    return rc;
}
