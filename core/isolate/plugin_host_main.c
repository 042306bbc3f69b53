/* plugin_host_main.c - polaris-plugin-host: runs one plugin out of the
 * daemon's process (isolation "process", issue 10). polarisd starts it with
 * the channel on descriptor 3 and /dev/null on 0-2; a plugin never starts
 * one. The first frame is HK_INIT (the plugin, its code, its limits); the
 * host confines itself before any plugin code runs, loads the plugin with
 * the same runtime as the daemon (plugin.c, bind_polaris.c), answers
 * HK_READY or HK_FAILED, then serves until HK_STOP or end of channel.
 *
 * --confinement-test applies the same confinement and then tries what a
 * plugin must never manage (open, socket, connect, exec, fork), printing
 * one line per attempt; the specs run it.
 *
 * Uses: plugin_host_confine, plugin_host_home, lua_pack, plugin_load. */
#include "isolate/plugin_host_confine.h"
#include "wire/plugin_host_proto.h"
#include "isolate/plugin_host_home.h"
#include "lib/log.h"
#include "runtime/lua_pack.h"
#include "runtime/plugin.h"
#include "runtime/port.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHANNEL_FD 3

static lua_Integer int_field(lua_State *L, const char *k)
{
    lua_getfield(L, 1, k);
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

static const char *str_field(lua_State *L, const char *k, size_t *len)
{
    lua_getfield(L, 1, k);
    const char *s = lua_tolstring(L, -1, len);
    lua_pop(L, 1);                            /* the table keeps it alive */
    return s ? s : "";
}

static void copy_field(lua_State *L, const char *k, char *out, size_t cap)
{
    snprintf(out, cap, "%s", str_field(L, k, NULL));
}

static int unpack_init(lua_State *L)
{
    const char *p = lua_touserdata(L, 1);
    size_t len = (size_t)lua_tointeger(L, 2);
    lua_settop(L, 0);
    if (lua_unpack(L, p, len) != 1 || !lua_istable(L, 1))
        return luaL_error(L, "HK_INIT is not one table");
    return 1;
}

static pid_t fork_and_reap(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return pid;
}

static int confinement_test(void)
{
    struct confine_opts o = {.nofile = 8, .uid = 65534, .gid = 65534, .keep_fd = -1};
    char err[256];
    if (plugin_host_confine(&o, err, sizeof err) < 0) {
        printf("confine: failed: %s\n", err);
        return 1;
    }
    int refused = 0, tried = 0;
#define TRY(what, call) do {                                              \
        errno = 0;                                                        \
        long rc_ = (long)(call);                                          \
        tried++;                                                          \
        if (rc_ < 0) refused++;                                           \
        printf("%s: %s\n", what, rc_ < 0 ? strerror(errno) : "ALLOWED");  \
    } while (0)
    TRY("open /etc/passwd", open("/etc/passwd", O_RDONLY));
    TRY("openat /etc/hostname", openat(AT_FDCWD, "/etc/hostname", O_RDONLY));
    TRY("creat /tmp/polaris-host-test", open("/tmp/polaris-host-test", O_WRONLY | O_CREAT, 0600));
    TRY("socket unix", socket(AF_UNIX, SOCK_STREAM, 0));
    TRY("socket inet", socket(AF_INET, SOCK_STREAM, 0));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, "/run/polaris/polaris.sock");
    TRY("connect", connect(0, (struct sockaddr *)&sa, sizeof sa));
    char *argv[] = {"/bin/true", NULL};
    TRY("execve /bin/true", execve("/bin/true", argv, argv + 1));
    TRY("fork", fork_and_reap());
    TRY("kill 1", kill(1, 0));
    TRY("setuid 0", setuid(0));
    printf("uid %u, %d of %d refused\n", (unsigned)getuid(), refused, tried);
    /* and what the host needs still works: the CPU budget's tick */
    timer_t t;
    struct sigevent sev = {.sigev_notify = SIGEV_NONE};
    bool timer_ok = timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &t) == 0 && timer_delete(t) == 0;
    printf("cpu timer: %s\n", timer_ok ? "ok" : strerror(errno));
    fflush(stdout);
    _exit(refused == tried && timer_ok ? 0 : 1);   /* no exit handlers: a leak checker cannot run confined */
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--confinement-test") == 0)
        return confinement_test();
    if (argc > 1) {
        fprintf(stderr, "usage: polaris-plugin-host   (started by polarisd, channel on fd 3)\n"
                        "       polaris-plugin-host --confinement-test\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct plugin_host_init init = {0};
    plugin_host_home_init(CHANNEL_FD, &init);
    uint8_t kind;
    uint32_t id;
    const char *body;
    size_t len;
    char *frame = plugin_host_read_frame(&kind, &id, &body, &len);
    if (!frame || kind != HK_INIT)
        return 2;
    lua_State *L = luaL_newstate();
    if (!L)
        return 1;
    lua_pushcfunction(L, unpack_init);
    lua_pushlightuserdata(L, (void *)body);
    lua_pushinteger(L, (lua_Integer)len);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK)
        return 2;
    free(frame);                               /* every string now lives in L, at index 1 */

    struct confine_opts o = {
        .as_bytes = (uint64_t)int_field(L, "as_bytes"),
        .cpu_s = (unsigned)int_field(L, "cpu_s"),
        .nofile = 8,
        .uid = (uid_t)int_field(L, "uid"),
        .gid = (gid_t)int_field(L, "gid"),
        .keep_fd = CHANNEL_FD,
    };
    log_set_level((enum log_level)int_field(L, "log_level"));
    char err[300];
    if (plugin_host_confine(&o, err, sizeof err) < 0) {
        char msg[400];
        int n = snprintf(msg, sizeof msg, "plugin host confinement failed: %s", err);
        plugin_host_send(HK_FAILED, 0, msg, (size_t)n);
        return 1;
    }

    init.max_errors = (unsigned)int_field(L, "max_errors");
    init.timers_max = (unsigned)int_field(L, "timers_max");
    init.waits_max = (unsigned)int_field(L, "waits_max");
    init.exec_max = (unsigned)int_field(L, "exec_max");
    init.started_ms = (uint64_t)int_field(L, "started_ms");
    init.daemon_pid = int_field(L, "daemon_pid");
    init.config = str_field(L, "config", &init.config_len);
    plugin_host_home_init(CHANNEL_FD, &init);

    struct plugin *p = plugin_alloc();
    if (!p)
        return 1;
    p->home = plugin_host_home();
    atomic_init(&p->refs, 1);
    p->job.run = plugin_run_job;
    p->cmd_job.run = plugin_run_cmd_job;
    p->callbacks_ref = LUA_NOREF;
    pthread_mutex_init(&p->mu, NULL);
    copy_field(L, "id", p->id, sizeof p->id);
    copy_field(L, "version", p->version, sizeof p->version);
    copy_field(L, "type", p->type, sizeof p->type);
    copy_field(L, "file", p->file, sizeof p->file);
    copy_field(L, "entry_fn", p->entry_fn, sizeof p->entry_fn);
    p->perms = (unsigned)int_field(L, "perms");
    p->mem_limit = (size_t)int_field(L, "mem_limit");
    p->budget_ns = (uint64_t)int_field(L, "budget_ns");
    p->bound = plugin_host_bind_proxies;
    size_t code_len;
    const char *code = str_field(L, "code", &code_len);
    if (plugin_load_code(p, code, code_len) < 0) {
        plugin_host_send(HK_FAILED, 0, p->last_error, strlen(p->last_error));
        return 1;
    }
    /* READY: what it registered, so the daemon can route to it */
    struct buf b = BUF_INIT;
    plugin_host_put_u32(&b, (uint32_t)p->nhandlers);
    for (size_t i = 0; i < p->nhandlers; i++) {
        plugin_host_put_u8(&b, p->handlers[i].any);
        plugin_host_put_u64(&b, p->handlers[i].event_id);
    }
    plugin_host_put_u32(&b, (uint32_t)p->ncmds);
    for (size_t i = 0; i < p->ncmds; i++) {
        size_t n = strlen(p->cmds[i].name);
        plugin_host_put_u8(&b, (uint8_t)n);
        buf_append(&b, p->cmds[i].name, n);
    }
    plugin_host_send(HK_READY, 0, b.p, b.len);
    buf_free(&b);
    int rc = plugin_host_serve(p);              /* L keeps the INIT strings for the host's life */
    plugin_unref(p);                           /* stop() and cleanup() */
    plugin_host_flush();
    _exit(rc);                                 /* nothing to tidy: the process ends */
}
