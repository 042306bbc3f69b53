/* plugin_host.c - the daemon's side of out-of-process plugins (isolation
 * "process"): one polaris-plugin-host per plugin, created and supervised
 * here, never by a plugin. This file is the supervisor; the channel's
 * traffic (posting, answers, the host's calls) is plugin_host_link.c.
 *
 * The plugin's struct in the daemon is a stand-in: its posts go to the
 * host, and it keeps a Lua state of its own with the real polaris bindings
 * and the plugin's permissions, where the host's calls into the daemon run.
 * The first load is synchronous (like an in-process plugin's): spawn, send
 * HK_INIT (built once and reused by restarts), serve the host's calls, wait
 * for READY within plugins.host_start_timeout_ms.
 *
 * A host that dies is noticed at once (ev_child, and the channel's end):
 * the plugin goes to Error with the signal's name, events it held go on
 * with strategyError, commands it held are answered -6, its timers stop,
 * and it is restarted after plugins.host_restart_backoff_ms (doubling) up
 * to plugins.host_restart_max times in a row. An idle host (nothing
 * outstanding, no timers, no parked calls, plugins.host_idle_s without
 * traffic) is stopped and started again by the next thing posted to it.
 *
 * Every watcher belongs to the core loop (the default loop: the only one
 * that can watch children). A host struct is freed on the core loop only,
 * once its plugin has no other reference, so no other thread can be
 * posting to it.
 *
 * Uses: plugin_host_link, plugin_host_proto, lua_pack, plugin, port, libev. */
#include "daemon/plugin_host.h"
#include "daemon/plugin_host_link.h"
#include "daemon/daemon.h"
#include "wire/plugin_host_proto.h"
#include "lib/log.h"
#include "runtime/lua_pack.h"
#include "runtime/plugin.h"
#include "runtime/port.h"
#include "lib/rxbuf.h"
#include "lib/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_child(struct ev_loop *loop, ev_child *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void wake(struct ev_loop *loop, ev_async *w, int revents);
static void plugin_host_died(struct plugin_host *h, const char *why);
static void hosts_wake(void *m);

/* ---- configuration ---- */

struct plugin_hosts *plugin_hosts_new(struct ev_loop *loop)
{
    struct plugin_hosts *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->loop = loop;
    m->start_timeout_ms = 5000;
    pthread_mutex_init(&m->mu, NULL);
    if (loop) {
        ev_async_init(&m->wake, wake);
        m->wake.data = m;
        ev_async_start(loop, &m->wake);
    }
    return m;
}

void plugin_hosts_on_death(struct plugin_hosts *m, void (*fn)(void *, struct plugin *), void *ctx)
{
    m->on_death = fn;
    m->on_death_ctx = ctx;
}

void plugin_hosts_configure(struct plugin_hosts *m, const struct config *cfg)
{
    if (cfg->host_binary[0]) {
        snprintf(m->binary, sizeof m->binary, "%s", cfg->host_binary);
    } else {
        /* next to polarisd (a build tree), else where make install puts it */
        char self[400];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        snprintf(m->binary, sizeof m->binary, "%s/polaris-plugin-host", self);
        if (access(m->binary, X_OK) != 0)
            snprintf(m->binary, sizeof m->binary, "%s", POLARIS_LIBEXECDIR "/polaris-plugin-host");
    }
    struct passwd pw, *res = NULL;
    char tmp[1024];
    m->uid = 65534;
    m->gid = 65534;
    if (getpwnam_r(cfg->host_user, &pw, tmp, sizeof tmp, &res) == 0 && res) {
        m->uid = pw.pw_uid;
        m->gid = pw.pw_gid;
    } else if (geteuid() == 0) {
        log_warn("plugins.host_user %s: no such user; plugin hosts run as uid 65534", cfg->host_user);
    }
#if defined(__SANITIZE_ADDRESS__)
    m->as_bytes = 0;               /* ASan reserves terabytes of address space */
#else
    m->as_bytes = cfg->host_memory_max;
#endif
    m->cpu_s = cfg->host_cpu_s;
    m->restart_max = cfg->host_restart_max;
    m->backoff_ms = cfg->host_restart_backoff_ms;
    m->idle_s = cfg->host_idle_s;
    m->start_timeout_ms = cfg->host_start_timeout_ms;
}

/* ---- starting ---- */

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *s, size_t len)
{
    lua_pushlstring(L, s, len);
    lua_setfield(L, -2, k);
}

/* The HK_INIT frame, built once in the stand-in's state (nothing else uses
 * it yet): restarts send the same bytes. */
static int build_init(struct plugin_host *h, char *err, size_t errlen)
{
    struct plugin *p = h->p;
    struct plugin_hosts *m = h->m;
    lua_State *L = p->sb.L;
    struct buf code = BUF_INIT, cfg = BUF_INIT, body = BUF_INIT;
    int rc = -1;
    if (buf_read_file(&code, p->file, 1u << 20, err, errlen) < 0)
        goto out;
    home_push_config(p->home, p->id, L);
    rc = lua_pack(L, -1, 1, &cfg, err, errlen);
    lua_pop(L, 1);
    if (rc < 0)
        goto out;
    lua_createtable(L, 0, 20);
    set_str(L, "id", p->id, strlen(p->id));
    set_str(L, "version", p->version, strlen(p->version));
    set_str(L, "type", p->type, strlen(p->type));
    set_str(L, "file", p->file, strlen(p->file));
    set_str(L, "entry_fn", p->entry_fn, strlen(p->entry_fn));
    set_str(L, "code", code.p ? code.p : "", code.len);
    set_str(L, "config", cfg.p ? cfg.p : "", cfg.len);
    set_int(L, "perms", p->perms);
    set_int(L, "mem_limit", (lua_Integer)p->mem_limit);
    set_int(L, "budget_ns", (lua_Integer)p->budget_ns);
    set_int(L, "max_errors", home_max_errors(p->home));
    struct plugin_limits lim;
    home_limits(p->home, &lim);
    set_int(L, "timers_max", lim.timers);
    set_int(L, "waits_max", lim.waits);
    set_int(L, "exec_max", lim.execs);
    set_int(L, "started_ms", (lua_Integer)home_started_ms(p->home));
    set_int(L, "daemon_pid", getpid());
    set_int(L, "log_level", log_get_level());
    set_int(L, "uid", m->uid);
    set_int(L, "gid", m->gid);
    set_int(L, "as_bytes", (lua_Integer)m->as_bytes);
    set_int(L, "cpu_s", m->cpu_s);
    rc = lua_pack(L, -1, 1, &body, err, errlen);
    lua_pop(L, 1);
    if (rc == 0 && plugin_host_frame_simple(&h->init, HK_INIT, 0, body.p, body.len) < 0) {
        snprintf(err, errlen, "the plugin is too large to send to its host");
        rc = -1;
    }
out:
    buf_free(&code);
    buf_free(&cfg);
    buf_free(&body);
    return rc;
}
extern char **environ;

static int spawn(struct plugin_host *h, char *err, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);   /* the daemon's threads block signals */
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    /* the host gets no environment but what a sanitizer build needs */
    char *envp[4];
    int ne = 0;
    char asan[512];
    const char *ao = getenv("ASAN_OPTIONS"), *uo = getenv("UBSAN_OPTIONS");
    if (ao) {
        /* a supervised child must die of its signals, not turn them into an
         * exit status; leak checks cannot run under the seccomp filter */
        snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s:handle_segv=0:handle_sigbus=0:handle_abort=0:"
                 "handle_sigfpe=0:handle_sigill=0:detect_leaks=0", ao);
        envp[ne++] = asan;
    }
    for (char **e = environ; uo && *e; e++)
        if (strncmp(*e, "UBSAN_OPTIONS=", 14) == 0)
            envp[ne++] = *e;
    envp[ne] = NULL;
    char *argv[] = {(char *)"polaris-plugin-host", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, h->m->binary, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        snprintf(err, errlen, "cannot start %s: %s", h->m->binary, strerror(rc));
        return -1;
    }
    pthread_mutex_lock(&h->mu);
    h->fd = sv[0];
    h->pid = pid;
    h->dead = false;
    h->st = H_STARTING;
    h->rx.start = h->rx.end = 0;
    buf_reset(&h->tx);
    rc = buf_append(&h->tx, h->init.p, h->init.len);
    pthread_mutex_unlock(&h->mu);
    if (h->m->loop) {
        ev_child_init(&h->child, on_child, pid, 0);
        h->child.data = h;
        ev_child_start(h->m->loop, &h->child);
    }
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Fills the stand-in from READY (the first start only: restarts run the
 * same code). */
static bool take_ready(struct plugin_host *h, const struct plugin_host_frame *f)
{
    struct plugin *p = h->p;
    if (p->handlers || p->cmds)
        return true;
    struct plugin_host_reader r = {(const unsigned char *)f->body, (const unsigned char *)f->body + f->len};
    uint32_t n, k;
    if (!plugin_host_get_u32(&r, &n) || n > 4096)
        return false;
    p->handlers = n ? calloc(n, sizeof *p->handlers) : NULL;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t any;
        uint64_t id;
        if (!p->handlers || !plugin_host_get_u8(&r, &any) || !plugin_host_get_u64(&r, &id))
            return false;
        p->handlers[i] = (struct handler){.event_id = id, .any = any != 0, .ref = LUA_NOREF};
        p->nhandlers = i + 1;
    }
    if (!plugin_host_get_u32(&r, &k) || k > 1024)
        return false;
    p->cmds = k ? calloc(k, sizeof *p->cmds) : NULL;
    for (uint32_t i = 0; i < k; i++) {
        uint8_t len;
        if (!p->cmds || !plugin_host_get_u8(&r, &len) || len == 0 || len >= sizeof p->cmds[0].name ||
            !plugin_host_get_bytes(&r, p->cmds[i].name, len))
            return false;
        p->cmds[i].name[len] = '\0';
        if (strcmp(p->cmds[i].name, "status") == 0 || strcmp(p->cmds[i].name, "reload") == 0 ||
            strcmp(p->cmds[i].name, "unload") == 0)
            return false;
        p->cmds[i].ref = LUA_NOREF;
        p->ncmds = i + 1;
    }
    return true;
}

/* Blocks until READY, FAILED, the channel's end or the deadline, serving
 * the host's calls meanwhile. 0, or -1 with err. */
static int await_ready(struct plugin_host *h, char *err, size_t errlen)
{
    uint64_t deadline = mono_ns() + (uint64_t)h->m->start_timeout_ms * 1000000u;
    pthread_mutex_lock(&h->mu);
    while (h->tx.len) {            /* INIT: the host reads as we write */
        ssize_t n = send(h->fd, h->tx.p, h->tx.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf_consume(&h->tx, (size_t)n);
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {h->fd, POLLOUT, 0};
            uint64_t now = mono_ns();
            if (now >= deadline || poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1) < 0)
                break;
        } else if (!(n < 0 && errno == EINTR)) {
            break;
        }
    }
    bool sent = h->tx.len == 0;
    pthread_mutex_unlock(&h->mu);
    if (!sent) {
        snprintf(err, errlen, "plugin host %d did not take its plugin", (int)h->pid);
        return -1;
    }
    for (;;) {
        struct plugin_host_frame f;
        long n;
        while ((n = plugin_host_frame_next((const char *)h->rx.buf + h->rx.start, rxbuf_pending(&h->rx), &f)) > 0) {
            h->rx.start += (size_t)n;
            if (f.kind == HK_READY) {
                if (!take_ready(h, &f)) {
                    snprintf(err, errlen, "plugin host sent a malformed READY");
                    return -1;
                }
                return 0;
            }
            if (f.kind == HK_FAILED) {
                snprintf(err, errlen, "%.*s", (int)(f.len < 400 ? f.len : 400), f.body);
                return -1;
            }
            if (!plugin_host_link_dispatch(h, &f, true)) {
                snprintf(err, errlen, "plugin host %s", h->last_exit);
                return -1;
            }
        }
        if (n < 0) {
            snprintf(err, errlen, "plugin host sent a frame out of bounds");
            return -1;
        }
        uint64_t now = mono_ns();
        if (now >= deadline) {
            snprintf(err, errlen, "plugin host did not load the plugin within %u ms "
                     "(plugins.host_start_timeout_ms)", h->m->start_timeout_ms);
            return -1;
        }
        struct pollfd pfd = {h->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
        if (pr < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return -1;
        }
        if (pr <= 0)
            continue;
        size_t avail;
        uint8_t *space = rxbuf_space(&h->rx, 65536, &avail);
        ssize_t r = space ? read(h->fd, space, avail) : -1;
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
            int status;
            if (!h->m->loop && waitpid(h->pid, &status, 0) == h->pid) {
                h->pid = -1;       /* --check: nobody else reaps it */
                if (WIFSIGNALED(status)) {
                    const char *sig = sigabbrev_np(WTERMSIG(status));
                    snprintf(err, errlen, "plugin host killed by SIG%s while loading", sig ? sig : "?");
                    return -1;
                }
            }
            snprintf(err, errlen, "plugin host exited while loading the plugin");
            return -1;
        }
        if (r > 0)
            rxbuf_commit(&h->rx, (size_t)r);
    }
}

/* Pending envelopes, after a (re)start succeeded or failed. */
static void release_pending(struct plugin_host *h, bool up, const char *why)
{
    pthread_mutex_lock(&h->mu);
    struct envelope *e = envlist_take(&h->pending);
    pthread_mutex_unlock(&h->mu);
    while (e) {
        struct envelope *next = e->next;
        e->next = NULL;
        if (up)
            plugin_host_link_post(h->p, e);
        else
            plugin_host_link_bypass(h->p, e, why);
        e = next;
    }
}

static void arm_idle(struct plugin_host *h)
{
    struct plugin_hosts *m = h->m;
    if (m->loop && m->idle_s) {
        ev_timer_stop(m->loop, &h->timer);
        ev_timer_set(&h->timer, m->idle_s, m->idle_s);
        ev_timer_start(m->loop, &h->timer);
    }
}

/* A restart (after a death or idling): like the first load, but the plugin
 * is live, so the host's calls go through a worker as usual. */
static void start_async(struct plugin_host *h)
{
    char err[300];
    struct plugin *p = h->p;
    if (spawn(h, err, sizeof err) < 0 || await_ready(h, err, sizeof err) < 0) {
        log_error("plugin %s: %s", p->id, err);
        pthread_mutex_lock(&h->mu);
        snprintf(h->last_exit, sizeof h->last_exit, "%.95s", err);
        pthread_mutex_unlock(&h->mu);
        if (h->pid > 0)
            kill(h->pid, SIGKILL);  /* on_child ends it and counts the restart */
        else
            plugin_host_died(h, err);
        return;
    }
    pthread_mutex_lock(&h->mu);
    h->st = H_UP;
    h->up_since_ns = mono_ns();
    pthread_mutex_unlock(&h->mu);
    atomic_store(&h->last_activity_ns, mono_ns());
    plugin_host_link_watch(h);
    atomic_store(&p->state, PLUGIN_ACTIVE);
    log_info("plugin %s: plugin host %d up", p->id, (int)h->pid);
    if (!plugin_host_link_drain(h))              /* what came in with READY */
        plugin_host_link_unwatch(h);
    arm_idle(h);
    release_pending(h, true, NULL);
}

int plugin_host_load(struct plugin_hosts *m, struct plugin *p)
{
    char err[512];
    struct plugin_host *h = calloc(1, sizeof *h);
    if (!h) {
        plugin_set_error(p, "out of memory");
        atomic_store(&p->state, PLUGIN_ERROR);
        return -1;
    }
    h->m = m;
    h->fd = -1;
    h->pid = -1;
    h->st = H_DOWN;
    pthread_mutex_init(&h->mu, NULL);
    plugin_ref(p);
    h->p = p;
    p->host = h;
    p->remote_post = plugin_host_link_post;
    p->remote_rpc = plugin_host_link_rpc;
    p->unpinned = hosts_wake;
    p->unpinned_arg = m;
    ev_timer_init(&h->timer, on_timer, 0, 0);
    h->timer.data = h;
    pthread_mutex_lock(&m->mu);
    h->next = m->hosts;
    m->hosts = h;
    pthread_mutex_unlock(&m->mu);

    atomic_store(&p->state, PLUGIN_LOADING);
    h->first_load = true;
    if (sandbox_open(&p->sb, p->mem_limit, p->budget_ns, err, sizeof err) < 0)
        goto fail;
    bind_polaris(p);                           /* the calls the host makes run here */
    lua_settop(p->sb.L, 0);
    if (build_init(h, err, sizeof err) < 0 || spawn(h, err, sizeof err) < 0 ||
        await_ready(h, err, sizeof err) < 0)
        goto fail;
    h->first_load = false;
    pthread_mutex_lock(&h->mu);
    h->st = H_UP;
    pthread_mutex_unlock(&h->mu);
    h->up_since_ns = p->loaded_mono_ns = mono_ns();
    atomic_store(&h->last_activity_ns, mono_ns());
    atomic_store(&p->state, PLUGIN_ACTIVE);
    /* watched from the core's loop once the registry takes it in
     * (plugin_host_activate): a reload runs this off the core thread */
    return 0;
fail:
    h->first_load = false;
    plugin_set_error(p, "%s", err);
    atomic_store(&p->state, PLUGIN_ERROR);
    pthread_mutex_lock(&h->mu);
    h->retiring = true;                        /* never restarted: the load failed */
    h->dead = true;
    h->st = H_DOWN;
    pthread_mutex_unlock(&h->mu);
    if (h->pid > 0)
        kill(h->pid, SIGKILL);                 /* reaped by libev (or plugin_hosts_free) */
    if (p->sb.L)
        sandbox_close(&p->sb);
    return -1;
}

void plugin_host_activate(struct plugin *p)
{
    struct plugin_host *h = p->host;
    if (!h || h->fd < 0)
        return;
    plugin_host_link_watch(h);
    arm_idle(h);
    if (!plugin_host_link_drain(h))              /* what came in with READY, and since */
        plugin_host_link_unwatch(h);
}

/* ---- supervision (core loop) ---- */

/* Watchers stopped and the channel closed (the host sees its end). */
static void release_io(struct plugin_host *h)
{
    plugin_host_link_unwatch(h);
    if (h->m->loop) {
        ev_timer_stop(h->m->loop, &h->timer);
        ev_child_stop(h->m->loop, &h->child);
    }
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

static void plugin_host_free(struct plugin_host *h)
{
    struct plugin_hosts *m = h->m;
    pthread_mutex_lock(&m->mu);
    for (struct plugin_host **pp = &m->hosts; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    pthread_mutex_unlock(&m->mu);
    release_io(h);
    buf_free(&h->tx);
    buf_free(&h->init);
    rxbuf_free(&h->rx);
    free(h->out);
    struct plugin *p = h->p;
    atomic_store(&p->state, PLUGIN_ERROR);
    p->remote_post = NULL;
    p->remote_rpc = NULL;
    p->unpinned = NULL;
    p->unpinned_arg = NULL;
    p->host = NULL;
    pthread_mutex_destroy(&h->mu);
    free(h);
    plugin_unref(p);
}

/* The process is gone (or never came): everything it held goes on. */
static void plugin_host_died(struct plugin_host *h, const char *why)
{
    struct plugin *p = h->p;
    plugin_host_link_unwatch(h);
    if (h->fd >= 0)
        close(h->fd);
    pthread_mutex_lock(&h->mu);
    h->fd = -1;
    h->pid = -1;
    bool clean = h->st == H_STOPPING && why == NULL;
    h->dead = true;
    h->st = H_DOWN;
    atomic_fetch_add(&h->gen, 1);  /* whatever it asked for is answered to no one */
    struct envelope *out = plugin_host_link_take_all(h);
    buf_reset(&h->tx);
    h->want_write = false;
    pthread_mutex_unlock(&h->mu);
    char reason[160];
    snprintf(reason, sizeof reason, "plugin host died: %s", why ? why : h->last_exit);
    while (out) {
        struct envelope *next = out->next;
        out->next = NULL;
        plugin_host_link_bypass(p, out, reason);
        out = next;
    }
    if (h->retiring) {
        release_pending(h, false, reason);
        if (atomic_load(&p->refs) <= 1)
            plugin_host_free(h);          /* else when the last other reference goes (wake) */
        return;
    }
    if (clean && h->idle_stop) {
        /* idle: down until something is posted to it */
        pthread_mutex_lock(&h->mu);
        h->dead = false;
        h->idle_stop = false;
        bool again = h->pending.head != NULL;
        if (again)
            h->st = H_STARTING;
        pthread_mutex_unlock(&h->mu);
        log_info("plugin %s: idle plugin host stopped", p->id);
        if (again)
            start_async(h);
        return;
    }
    /* its coroutines are gone: the timers and waits it had in the core end */
    if (h->m->on_death)
        h->m->on_death(h->m->on_death_ctx, p);
    atomic_store(&p->state, PLUGIN_ERROR);
    plugin_set_error(p, "%s", reason);
    STAT_INC(plugin_hosts_deaths);
    struct plugin_hosts *m = h->m;
    pthread_mutex_lock(&h->mu);    /* status reads these from another thread */
    if (h->up_since_ns && mono_ns() - h->up_since_ns > 60ull * 1000000000u)
        h->restarts = 0;           /* it ran a good while: a fresh run of bad luck */
    bool give_up = h->restarts >= m->restart_max;
    if (!give_up)
        h->restarts++;
    pthread_mutex_unlock(&h->mu);
    h->up_since_ns = 0;
    release_pending(h, false, reason);
    if (give_up) {
        log_error("plugin %s: %s; restarted %u times in a row, not again until the next reload "
                  "(plugins.host_restart_max)", p->id, reason, h->restarts);
        plugin_set_error(p, "%s; not restarted after %u restarts (plugins.host_restart_max)", reason,
                         h->restarts);
        return;
    }
    unsigned doubling = h->restarts - 1 < 16 ? h->restarts - 1 : 16;   /* restarts >= 1 here */
    double delay = m->backoff_ms / 1000.0 * (double)(1u << doubling);
    if (delay > 30)
        delay = 30;
    log_warn("plugin %s: %s; restart %u of %u in %.0f ms", p->id, reason, h->restarts, m->restart_max,
             delay * 1000);
    if (m->loop) {
        ev_timer_stop(m->loop, &h->timer);
        ev_timer_set(&h->timer, delay, 0);
        ev_timer_start(m->loop, &h->timer);
    }
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct plugin_host *h = w->data;
    ev_child_stop(loop, w);
    int st = w->rstatus;
    char why[96];
    if (WIFSIGNALED(st)) {
        const char *sig = sigabbrev_np(WTERMSIG(st));
        snprintf(why, sizeof why, "killed by SIG%s", sig ? sig : "?");
    } else {
        snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(st));
    }
    bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0 && h->st == H_STOPPING;
    pthread_mutex_lock(&h->mu);
    if (strncmp(h->last_exit, "protocol", 8) != 0 || h->st != H_UP)
        snprintf(h->last_exit, sizeof h->last_exit, "%s", why);
    pthread_mutex_unlock(&h->mu);
    if (h->fd >= 0 && (h->st == H_UP || h->st == H_STOPPING)) {
        /* what it said before it died counts: its last results go on */
        fcntl(h->fd, F_SETFL, fcntl(h->fd, F_GETFL) | O_NONBLOCK);
        plugin_host_link_read(h);
    }
    if (h->st == H_STARTING && h->pid != w->rpid)
        return;                    /* an older process of a host already restarted */
    plugin_host_died(h, clean ? NULL : h->last_exit);
}

static void stop_host(struct plugin_host *h, bool idle)
{
    pthread_mutex_lock(&h->mu);
    if (h->st == H_UP) {
        h->st = H_STOPPING;
        h->idle_stop = idle;
        if (plugin_host_frame_simple(&h->tx, HK_STOP, 0, NULL, 0) == 0)
            plugin_host_link_flush_locked(h);
    }
    pthread_mutex_unlock(&h->mu);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct plugin_host *h = w->data;
    struct plugin_hosts *m = h->m;
    if (h->st == H_DOWN && h->dead && !h->retiring) {
        /* the backoff is over: restart */
        pthread_mutex_lock(&h->mu);
        h->st = H_STARTING;
        pthread_mutex_unlock(&h->mu);
        start_async(h);
        return;
    }
    if (h->st == H_UP && m->idle_s) {
        uint64_t quiet = mono_ns() - atomic_load(&h->last_activity_ns);
        pthread_mutex_lock(&h->mu);
        bool busy = h->nout || h->pending.head || h->pinned || h->tx.len;
        pthread_mutex_unlock(&h->mu);
        if (!busy && quiet >= (uint64_t)m->idle_s * 1000000000u)
            stop_host(h, true);
    }
}

/* Something was asked from another thread: write what was posted, start,
 * watch for writability, stop or free. */
static void wake(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct plugin_hosts *m = w->data;
    for (;;) {
        struct plugin_host *todo = NULL;
        enum { NONE, START, WRITE, STOP, FREE } what = NONE;
        pthread_mutex_lock(&m->mu);
        for (struct plugin_host *h = m->hosts; h && what == NONE; h = h->next) {
            pthread_mutex_lock(&h->mu);
            bool alone = atomic_load(&h->p->refs) <= 1;
            if (h->flush_queued) {
                h->flush_queued = false;
                plugin_host_link_flush_locked(h);
            }
            if (h->want_start) {
                h->want_start = false;
                what = START;
            } else if (h->want_write && !h->wio_on && h->fd >= 0) {
                what = WRITE;
            } else if (h->retiring && alone && h->st == H_UP) {
                what = STOP;
            } else if (h->retiring && alone && h->st == H_DOWN) {
                what = FREE;
            }
            pthread_mutex_unlock(&h->mu);
            if (what != NONE)
                todo = h;
        }
        pthread_mutex_unlock(&m->mu);
        if (!todo)
            return;
        if (what == START) {
            start_async(todo);
        } else if (what == WRITE) {
            ev_io_start(loop, &todo->wio);
            todo->wio_on = true;
        } else if (what == STOP) {
            stop_host(todo, false);
        } else {
            plugin_host_free(todo);
        }
    }
}

/* A plugin's last other reference went: a retiring host may stop now. */
static void hosts_wake(void *arg)
{
    struct plugin_hosts *m = arg;
    if (m->loop)
        ev_async_send(m->loop, &m->wake);
}

void plugin_host_retire(struct plugin *p)
{
    struct plugin_host *h = p->host;
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->retiring = true;
    pthread_mutex_unlock(&h->mu);
    if (h->m->loop) {
        ev_timer_stop(h->m->loop, &h->timer);
        ev_async_send(h->m->loop, &h->m->wake);   /* the registry still holds a ref now */
    }
}

size_t plugin_hosts_outstanding(struct plugin_hosts *m)
{
    size_t n = 0;
    pthread_mutex_lock(&m->mu);
    for (struct plugin_host *h = m->hosts; h; h = h->next) {
        pthread_mutex_lock(&h->mu);
        n += h->nout + (h->pending.head != NULL);
        pthread_mutex_unlock(&h->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return n;
}

int plugin_host_status_json(struct plugin *p, struct buf *b)
{
    struct plugin_host *h = p->host;
    if (!h)
        return buf_puts(b, "\"host_pid\":null,\"host_state\":\"gone\",\"host_restarts\":0,\"host_last_exit\":null");
    pthread_mutex_lock(&h->mu);
    int rc = buf_printf(b, "\"host_pid\":%d,\"host_state\":\"%s\",\"host_restarts\":%u,\"host_last_exit\":",
                        h->st == H_DOWN ? -1 : (int)h->pid,
                        h->st == H_UP ? "up" : h->st == H_STARTING ? "starting" :
                        h->st == H_STOPPING ? "stopping" : h->dead ? "dead" : "idle",
                        h->restarts);
    rc |= buf_json_cstr(b, h->last_exit[0] ? h->last_exit : NULL);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void plugin_hosts_free(struct plugin_hosts *m)
{
    if (!m)
        return;
    /* a closed channel is the host's signal to run stop() and exit */
    for (struct plugin_host *h = m->hosts; h; h = h->next)
        release_io(h);
    uint64_t deadline = mono_ns() + 2000000000u;
    for (struct plugin_host *h = m->hosts; h; h = h->next) {
        while (h->pid > 0) {
            pid_t r = waitpid(h->pid, NULL, WNOHANG);
            if (r == h->pid || (r < 0 && errno == ECHILD)) {
                h->pid = -1;
            } else if (mono_ns() > deadline) {
                kill(h->pid, SIGKILL);
                waitpid(h->pid, NULL, 0);
                h->pid = -1;
            } else {
                struct timespec ts = {0, 5000000};
                nanosleep(&ts, NULL);
            }
        }
    }
    while (m->hosts) {
        struct plugin_host *h = m->hosts;
        pthread_mutex_lock(&h->mu);
        h->dead = true;
        struct envelope *out = plugin_host_link_take_all(h);
        struct envelope *pend = envlist_take(&h->pending);
        pthread_mutex_unlock(&h->mu);
        /* shutdown: they go on as far as they can; the spool still has them */
        while (out) {
            struct envelope *next = out->next;
            out->next = NULL;
            plugin_host_link_bypass(h->p, out, "the daemon stopped before the plugin host answered");
            out = next;
        }
        while (pend) {
            struct envelope *next = pend->next;
            pend->next = NULL;
            plugin_host_link_bypass(h->p, pend, "the daemon stopped before the plugin host started");
            pend = next;
        }
        plugin_host_free(h);
    }
    if (m->loop)
        ev_async_stop(m->loop, &m->wake);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
