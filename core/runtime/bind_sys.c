/* bind_sys.c - the `polaris.sys` table (ReadHostState): load, memory, CPU
 * ticks, disk usage, kernel, the process list and one process's snapshot.
 * Facts only; thresholds, hysteresis and name filters are the plugins'.
 * Every /proc read goes through monitor.proc_root so specs can fake it.
 *
 * Uses: sysinfo (parsing), port (proc_root). */
#include "runtime/plugin.h"
#include "runtime/port.h"
#include "lib/sysinfo.h"

#include <errno.h>
#include <lauxlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>

static struct plugin *self(lua_State *L)
{
    struct plugin *p = lua_touserdata(L, lua_upvalueindex(1));
    if (!(p->perms & PERM_HOST_READ))
        sandbox_raise(L, "permission denied: ReadHostState (add it to the manifest's permissions)");
    return p;
}

static int fail(lua_State *L, const char *what)
{
    int e = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(e));
    lua_pushinteger(L, e);
    return 3;
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* sys.loadavg() -> {avg1, avg5, avg15, running, total} */
static int l_loadavg(lua_State *L)
{
    struct plugin *p = self(L);
    struct sys_load s;
    if (sysinfo_loadavg(home_proc_root(p->home), &s) < 0)
        return fail(L, "loadavg");
    lua_createtable(L, 0, 5);
    set_num(L, "avg1", s.avg1);
    set_num(L, "avg5", s.avg5);
    set_num(L, "avg15", s.avg15);
    set_int(L, "running", s.running);
    set_int(L, "total", s.total);
    return 1;
}

/* sys.meminfo() -> {total_kb, available_kb, free_kb, ..., used_pct} */
static int l_meminfo(lua_State *L)
{
    struct plugin *p = self(L);
    struct sys_mem m;
    if (sysinfo_meminfo(home_proc_root(p->home), &m) < 0)
        return fail(L, "meminfo");
    lua_createtable(L, 0, 8);
    set_int(L, "total_kb", (lua_Integer)m.total_kb);
    set_int(L, "free_kb", (lua_Integer)m.free_kb);
    set_int(L, "available_kb", (lua_Integer)m.available_kb);
    set_int(L, "buffers_kb", (lua_Integer)m.buffers_kb);
    set_int(L, "cached_kb", (lua_Integer)m.cached_kb);
    set_int(L, "swap_total_kb", (lua_Integer)m.swap_total_kb);
    set_int(L, "swap_free_kb", (lua_Integer)m.swap_free_kb);
    uint64_t avail = m.available_kb > m.total_kb ? m.total_kb : m.available_kb;
    set_num(L, "used_pct", 100.0 * (double)(m.total_kb - avail) / (double)m.total_kb);
    return 1;
}

/* sys.cpu() -> cumulative ticks {user, nice, system, idle, iowait, irq,
 * softirq, steal, busy, total, ncpu}; usage is the busy share of the
 * difference between two samples. */
static int l_cpu(lua_State *L)
{
    struct plugin *p = self(L);
    struct sys_cpu c;
    if (sysinfo_cpu(home_proc_root(p->home), &c) < 0)
        return fail(L, "stat");
    uint64_t idle = c.idle + c.iowait;
    uint64_t busy = c.user + c.nice + c.system + c.irq + c.softirq + c.steal;
    lua_createtable(L, 0, 11);
    set_int(L, "user", (lua_Integer)c.user);
    set_int(L, "nice", (lua_Integer)c.nice);
    set_int(L, "system", (lua_Integer)c.system);
    set_int(L, "idle", (lua_Integer)c.idle);
    set_int(L, "iowait", (lua_Integer)c.iowait);
    set_int(L, "irq", (lua_Integer)c.irq);
    set_int(L, "softirq", (lua_Integer)c.softirq);
    set_int(L, "steal", (lua_Integer)c.steal);
    set_int(L, "busy", (lua_Integer)busy);
    set_int(L, "total", (lua_Integer)(busy + idle));
    set_int(L, "ncpu", c.ncpu);
    return 1;
}

/* sys.disk(path) -> {total_bytes, free_bytes, avail_bytes, used_pct} */
static int l_disk(lua_State *L)
{
    self(L);
    const char *path = luaL_checkstring(L, 1);
    struct statvfs v;
    if (statvfs(path, &v) < 0)
        return fail(L, path);
    uint64_t total = (uint64_t)v.f_blocks * v.f_frsize;
    uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
    uint64_t free_ = (uint64_t)v.f_bfree * v.f_frsize;
    /* used as df shows it: what non-root users can no longer have */
    uint64_t used = total - free_;
    lua_createtable(L, 0, 4);
    set_int(L, "total_bytes", (lua_Integer)total);
    set_int(L, "free_bytes", (lua_Integer)free_);
    set_int(L, "avail_bytes", (lua_Integer)avail);
    set_num(L, "used_pct", used + avail ? 100.0 * (double)used / (double)(used + avail) : 0.0);
    return 1;
}

/* sys.uname() -> {sysname, nodename, release, version, machine} */
static int l_uname(lua_State *L)
{
    self(L);
    struct utsname u;
    if (uname(&u) < 0)
        return fail(L, "uname");
    lua_createtable(L, 0, 5);
    set_str(L, "sysname", u.sysname);
    set_str(L, "nodename", u.nodename);
    set_str(L, "release", u.release);
    set_str(L, "version", u.version);
    set_str(L, "machine", u.machine);
    return 1;
}

static int push_process(void *ctx, pid_t pid, const char *comm)
{
    lua_State *L = ctx;
    lua_createtable(L, 0, 2);
    set_int(L, "pid", pid);
    set_str(L, "name", comm);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* sys.processes() -> {{pid, name}, ...} */
static int l_processes(lua_State *L)
{
    struct plugin *p = self(L);
    lua_newtable(L);
    if (sysinfo_each_process(home_proc_root(p->home), push_process, L) < 0)
        return fail(L, home_proc_root(p->home));
    return 1;
}

/* Pushes a snapshot as a table; shared with the crash notices' shape. */
static void push_snapshot(lua_State *L, const struct proc_snapshot *s)
{
    lua_createtable(L, 0, 9);
    set_int(L, "pid", s->pid);
    set_int(L, "ppid", s->ppid);
    set_int(L, "uid", s->uid);
    set_str(L, "name", s->comm);
    set_str(L, "exe", s->exe);
    set_str(L, "cmdline", s->cmdline);
    char st[2] = {s->state ? s->state : '?', 0};
    set_str(L, "state", st);
    set_int(L, "rss_kb", (lua_Integer)s->rss_kb);
    set_int(L, "threads", s->threads);
}

/* sys.process(pid) -> snapshot | nil, msg, errno */
static int l_process(lua_State *L)
{
    struct plugin *p = self(L);
    lua_Integer pid = luaL_checkinteger(L, 1);
    luaL_argcheck(L, pid > 0 && pid <= 0x3fffffff, 1, "not a pid");
    struct proc_snapshot s;
    if (sysinfo_process(home_proc_root(p->home), (pid_t)pid, &s) < 0)
        return fail(L, "process");
    push_snapshot(L, &s);
    return 1;
}

void bind_sys(struct plugin *p)
{
    lua_State *L = p->sb.L;
    static const luaL_Reg fns[] = {
        {"loadavg", l_loadavg}, {"meminfo", l_meminfo}, {"cpu", l_cpu}, {"disk", l_disk},
        {"uname", l_uname}, {"processes", l_processes}, {"process", l_process}, {NULL, NULL},
    };
    lua_newtable(L);
    lua_pushlightuserdata(L, p);
    luaL_setfuncs(L, fns, 1);
}
