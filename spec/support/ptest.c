/* ptest.c - process and time primitives for the busted specs (Lua 5.4 has
 * no posix module in Debian): spawn the real daemon, signal it, wait for it
 * with a deadline, find a free port. Test support only; never installed. */
#include <lauxlib.h>
#include <lua.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int l_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_len(L, 1);
    luaL_argcheck(L, n > 0, 1, "argv must not be empty");
    const char *out = NULL, *err = NULL;
    lua_Integer uid = -1;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "uid");
        uid = luaL_optinteger(L, -1, -1);
        lua_pop(L, 1);
        lua_getfield(L, 2, "stdout");
        out = lua_tostring(L, -1);
        lua_getfield(L, 2, "stderr");
        err = lua_tostring(L, -1);
        lua_pop(L, 2);
    }
    char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        argv[i - 1] = (char *)luaL_checkstring(L, -1);
        lua_pop(L, 1);   /* the string stays alive in the argv table */
    }
    argv[n] = NULL;
    int envn = 0;
    const char *envk[64], *envv[64];
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "env");
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            while (lua_next(L, -2) && envn < 64) {
                envk[envn] = lua_tostring(L, -2);
                envv[envn] = lua_tostring(L, -1);
                envn++;
                lua_pop(L, 1);
            }
        }
        /* keys and values stay referenced by the table on the stack */
    }
    pid_t pid = fork();
    if (pid < 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    if (pid == 0) {
        for (int i = 0; i < envn; i++) {
            if (envv[i] && strcmp(envv[i], "") != 0)
                setenv(envk[i], envv[i], 1);
            else
                unsetenv(envk[i]);
        }
        if (out) {
            int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) dup2(fd, 1);
            if (fd > 2) close(fd);
        }
        if (err) {
            int fd = open(err, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) dup2(fd, 2);
            if (fd > 2) close(fd);
        }
        if (uid >= 0 && (setgid((gid_t)uid) < 0 || setuid((uid_t)uid) < 0))
            _exit(126);
        /* the test runner's own sockets must not live on in the daemon */
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], argv);
        _exit(127);
    }
    lua_pushinteger(L, pid);
    return 1;
}

static int sig_by_name(lua_State *L, int idx)
{
    if (lua_isinteger(L, idx))
        return (int)lua_tointeger(L, idx);
    const char *s = luaL_checkstring(L, idx);
    static const struct { const char *n; int v; } sigs[] = {
        {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"HUP", SIGHUP}, {"INT", SIGINT},
        {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"SEGV", SIGSEGV}, {"ABRT", SIGABRT},
        {"USR1", SIGUSR1}, {"0", 0},
    };
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (strcmp(s, sigs[i].n) == 0)
            return sigs[i].v;
    return luaL_argerror(L, idx, "unknown signal name");
}

static int l_kill(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int sig = sig_by_name(L, 2);
    if (kill(pid, sig) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* wait(pid, timeout_ms) -> "exited", code | "signaled", sig | nil, "timeout" */
static int l_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    lua_Integer timeout = luaL_optinteger(L, 2, 0);
    long long deadline = mono_ms() + timeout;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st)) {
                lua_pushstring(L, "exited");
                lua_pushinteger(L, WEXITSTATUS(st));
            } else {
                lua_pushstring(L, "signaled");
                lua_pushinteger(L, WTERMSIG(st));
            }
            return 2;
        }
        if (r < 0) {
            lua_pushnil(L);
            lua_pushstring(L, strerror(errno));
            return 2;
        }
        if (mono_ms() >= deadline) {
            lua_pushnil(L);
            lua_pushstring(L, "timeout");
            return 2;
        }
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static int l_now_ms(lua_State *L)
{
    lua_pushinteger(L, mono_ms());
    return 1;
}

static int l_sleep_ms(lua_State *L)
{
    lua_Integer ms = luaL_checkinteger(L, 1);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return 0;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static int l_getuid(lua_State *L)
{
    lua_pushinteger(L, getuid());
    return 1;
}

static int l_free_port(lua_State *L)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        if (fd >= 0)
            close(fd);
        return luaL_error(L, "free_port: %s", strerror(errno));
    }
    close(fd);
    lua_pushinteger(L, ntohs(sa.sin_port));
    return 1;
}

static int l_mkdtemp(lua_State *L)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/polaris-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl))
        return luaL_error(L, "mkdtemp: %s", strerror(errno));
    lua_pushstring(L, tmpl);
    return 1;
}

/* raise_nofile(n): the test process's soft RLIMIT_NOFILE to n (up to the
 * hard limit); returns the limit now in force */
static int l_raise_nofile(lua_State *L)
{
    struct rlimit rl;
    lua_Integer n = luaL_checkinteger(L, 1);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (rlim_t)n ? (rlim_t)n : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    lua_pushinteger(L, (lua_Integer)rl.rlim_cur);
    return 1;
}

/* rss_kib(pid): VmRSS of a process */
static int l_rss_kib(lua_State *L)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)luaL_checkinteger(L, 1));
    FILE *f = fopen(path, "r");
    lua_Integer kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    lua_pushinteger(L, kb);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"spawn", l_spawn}, {"kill", l_kill}, {"wait", l_wait}, {"now_ms", l_now_ms},
    {"sleep_ms", l_sleep_ms}, {"getpid", l_getpid}, {"getuid", l_getuid},
    {"free_port", l_free_port}, {"mkdtemp", l_mkdtemp}, {"raise_nofile", l_raise_nofile},
    {"rss_kib", l_rss_kib}, {NULL, NULL},
};

int luaopen_ptest(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
