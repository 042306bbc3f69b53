/* proc_monitor.c - notices host processes killed by a core-dumping signal,
 * from the kernel's proc connector (netlink, PROC_EVENT_COREDUMP and
 * PROC_EVENT_EXIT), and hands each one to the plugins holding ReadHostState
 * as the system message "process_crashed". Which processes matter is the
 * plugins' policy (plugins/crash_monitor.lua); this file only observes.
 *
 * A crashing process can be reaped by its parent before the daemon reads a
 * byte of /proc, so names come from three places, best first:
 *   1. a snapshot (comm, exe, cmdline, status) taken when the kernel
 *      announces the core dump, if the process is still there;
 *   2. a small cache of what every exec was (comm, exe), filled on
 *      PROC_EVENT_EXEC and emptied on the process's exit;
 *   3. the parent's cache entry, for a child that forked and never exec'd
 *      (it runs the parent's image).
 * A classic BPF filter on the socket passes only exec, coredump and exits
 * of thread-group leaders, so thread churn never wakes the daemon.
 *
 * Runs on the core's libev loop. Needs CAP_NET_ADMIN; without it the
 * fallback below watches the processes named in monitor.fallback_names
 * through pidfds. monitor.process_events = off turns both off.
 *
 * Uses: sysinfo (snapshots), plugin_registry (delivery), buf (JSON), stats. */
#include "daemon/proc_monitor.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "runtime/plugin.h"
#include "daemon/plugin_registry.h"
#include "lib/stats.h"
#include "lib/sysinfo.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PENDING_MAX 64            /* coredumps in progress we remember */

struct pending_dump {
    pid_t tgid;
    struct proc_snapshot snap;
};

struct exec_entry {               /* direct-mapped by pid */
    pid_t pid;
    char comm[16];
    char exe[240];
};

/* Fallback: one pidfd per process whose name is in monitor.fallback_names. */
struct watched {
    ev_io io;
    struct watched *next;
    struct proc_monitor *m;
    struct proc_snapshot snap;     /* taken when it was found */
};

struct proc_monitor {
    ev_io io;
    struct ev_loop *loop;
    struct plugin_registry *reg;
    char root[256];
    int fd;
    struct pending_dump pending[PENDING_MAX];
    unsigned next_slot;
    struct exec_entry *cache;
    unsigned ncache;
    struct buf json;
    /* the fallback's state */
    ev_timer scan;
    struct watched *watched;
    unsigned nwatched, max_watched;
    struct str_list names;
};

/* Offsets into one netlink datagram: nlmsghdr, cn_msg, proc_event. */
#define OFF_EV    (NLMSG_HDRLEN + (int)sizeof(struct cn_msg))
#define OFF_WHAT  (OFF_EV + (int)offsetof(struct proc_event, what))
#define OFF_DATA  (OFF_EV + (int)offsetof(struct proc_event, event_data))
#define OFF_PID   (OFF_DATA + (int)offsetof(struct exit_proc_event, process_pid))
#define OFF_TGID  (OFF_DATA + (int)offsetof(struct exit_proc_event, process_tgid))

static int attach_filter(int fd)
{
    /* BPF loads words big-endian; the kernel writes them host-endian */
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, OFF_WHAT),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htobe32(PROC_EVENT_COREDUMP), 7, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htobe32(PROC_EVENT_EXEC), 6, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htobe32(PROC_EVENT_EXIT), 0, 6),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, OFF_PID),
        BPF_STMT(BPF_ST, 0),
        BPF_STMT(BPF_LDX | BPF_W | BPF_MEM, 0),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, OFF_TGID),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, 1),         /* a thread, not the process */
        BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

static int send_listen(int fd, enum proc_cn_mcast_op op)
{
    struct {
        struct nlmsghdr nl;
        struct cn_msg cn;
        enum proc_cn_mcast_op op;
    } __attribute__((packed)) msg;
    memset(&msg, 0, sizeof msg);
    msg.nl.nlmsg_len = sizeof msg;
    msg.nl.nlmsg_type = NLMSG_DONE;
    msg.nl.nlmsg_pid = (uint32_t)getpid();
    msg.cn.id.idx = CN_IDX_PROC;
    msg.cn.id.val = CN_VAL_PROC;
    msg.cn.len = sizeof(enum proc_cn_mcast_op);
    msg.op = op;
    return send(fd, &msg, sizeof msg, 0) == (ssize_t)sizeof msg ? 0 : -1;
}

bool proc_monitor_is_crash_signal(int sig)
{
    switch (sig) {
    case SIGQUIT: case SIGILL: case SIGTRAP: case SIGABRT: case SIGBUS: case SIGFPE:
    case SIGSEGV: case SIGXCPU: case SIGXFSZ: case SIGSYS:
        return true;
    default:
        return false;
    }
}

static const char *signal_name(int sig)
{
    static const struct { int sig; const char *name; } names[] = {
        {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"}, {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"},
        {SIGBUS, "SIGBUS"}, {SIGFPE, "SIGFPE"}, {SIGSEGV, "SIGSEGV"}, {SIGXCPU, "SIGXCPU"},
        {SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].sig == sig)
            return names[i].name;
    return "SIG?";
}

static struct pending_dump *find_pending(struct proc_monitor *m, pid_t tgid)
{
    for (int i = 0; i < PENDING_MAX; i++)
        if (m->pending[i].tgid == tgid)
            return &m->pending[i];
    return NULL;
}

static void on_coredump(struct proc_monitor *m, pid_t tgid)
{
    struct pending_dump *d = find_pending(m, tgid);
    if (!d) {
        d = &m->pending[m->next_slot++ % PENDING_MAX];   /* oldest goes */
        d->tgid = tgid;
    }
    if (sysinfo_process(m->root, tgid, &d->snap) < 0) {
        memset(&d->snap, 0, sizeof d->snap);
        d->snap.pid = tgid;
    }
}

static struct exec_entry *cached(struct proc_monitor *m, pid_t pid)
{
    struct exec_entry *c = m->ncache ? &m->cache[(unsigned)pid % m->ncache] : NULL;
    return c && c->pid == pid ? c : NULL;
}

static void on_exec(struct proc_monitor *m, pid_t pid)
{
    if (!m->ncache)
        return;
    struct exec_entry *c = &m->cache[(unsigned)pid % m->ncache];
    c->pid = pid;
    if (sysinfo_comm(m->root, pid, c->comm, sizeof c->comm) < 0) {
        c->pid = 0;
        return;
    }
    sysinfo_exe(m->root, pid, c->exe, sizeof c->exe);
}

static void report_crash(struct proc_monitor *m, pid_t pid, uint32_t status,
                         const struct proc_snapshot *s);

static void on_process_exit(struct proc_monitor *m, pid_t pid, pid_t parent, uint32_t status)
{
    struct exec_entry *c = cached(m, pid);
    int sig = (int)(status & 0x7f);
    if (!proc_monitor_is_crash_signal(sig)) {
        if (c)
            c->pid = 0;
        return;
    }
    struct proc_snapshot snap;
    struct pending_dump *d = find_pending(m, pid);
    if (d) {
        snap = d->snap;
        d->tgid = 0;
    } else {
        memset(&snap, 0, sizeof snap);
        snap.pid = pid;
        snap.ppid = parent;
    }
    if (!snap.comm[0] && sysinfo_comm(m->root, pid, snap.comm, sizeof snap.comm) < 0 && !c)
        c = cached(m, parent);            /* forked, never exec'd: the parent's image */
    if (c && !snap.comm[0])
        snprintf(snap.comm, sizeof snap.comm, "%s", c->comm);
    if (c && !snap.exe[0])
        snprintf(snap.exe, sizeof snap.exe, "%s", c->exe);
    if ((c = cached(m, pid)))
        c->pid = 0;
    report_crash(m, pid, status, &snap);
}

/* Hands one crash to the plugins holding ReadHostState. */
static void report_crash(struct proc_monitor *m, pid_t pid, uint32_t status,
                         const struct proc_snapshot *s)
{
    int sig = (int)(status & 0x7f);
    struct proc_snapshot snap = *s;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct buf *b = &m->json;
    buf_reset(b);
    int rc = buf_printf(b, "{\"pid\":%d,\"name\":", (int)pid);
    rc |= buf_json_cstr(b, snap.comm);
    rc |= buf_puts(b, ",\"exe\":");
    rc |= buf_json_cstr(b, snap.exe);
    rc |= buf_puts(b, ",\"cmdline\":");
    rc |= buf_json_cstr(b, snap.cmdline);
    rc |= buf_printf(b, ",\"ppid\":%d,\"uid\":%u,\"rss_kb\":%llu,\"threads\":%u,"
                     "\"signal\":%d,\"signal_name\":\"%s\",\"core_dumped\":%s,\"status\":%u,"
                     "\"snapshot\":%s,\"time_ms\":%lld}",
                     (int)snap.ppid, snap.uid, (unsigned long long)snap.rss_kb, snap.threads,
                     sig, signal_name(sig), (status & 0x80) ? "true" : "false", status,
                     snap.exe[0] || snap.cmdline[0] ? "true" : "false",
                     (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    if (rc) {
        log_warn("process %d crashed (%s) but there was no memory to report it", (int)pid, signal_name(sig));
        return;
    }
    STAT_INC(monitor_crashes_seen);
    log_info("process %d (%s) killed by %s%s", (int)pid, snap.comm[0] ? snap.comm : "?",
             signal_name(sig), (status & 0x80) ? ", core dumped" : "");
    int n = registry_message_perm(m->reg, "polarisd", NULL, "process_crashed", b->p, b->len,
                                  PERM_HOST_READ);
    if (n == 0)
        log_debug("no plugin with ReadHostState listens for process crashes");
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct proc_monitor *m = w->data;
    /* aligned for nlmsghdr; one datagram per event */
    union {
        struct nlmsghdr nl;
        char bytes[4096];
    } buf;
    for (int batch = 0; batch < 256; batch++) {
        ssize_t n = recv(m->fd, &buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == ENOBUFS) {         /* the kernel dropped events for us */
                STAT_INC(monitor_netlink_overruns);
                continue;
            }
            if (errno != EAGAIN && errno != EINTR)
                log_warn("proc connector: %s", strerror(errno));
            return;
        }
        for (struct nlmsghdr *h = &buf.nl; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_NOOP)
                continue;
            struct cn_msg *cn = NLMSG_DATA(h);
            if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC ||
                h->nlmsg_len < NLMSG_LENGTH(sizeof *cn + sizeof(struct proc_event)))
                continue;
            /* the payload sits at offset 36: copy it out to align its u64 */
            struct proc_event ev;
            memcpy(&ev, cn->data, sizeof ev);
            if (ev.what == PROC_EVENT_COREDUMP)
                on_coredump(m, (pid_t)ev.event_data.coredump.process_tgid);
            else if (ev.what == PROC_EVENT_EXEC)
                on_exec(m, (pid_t)ev.event_data.exec.process_tgid);
            else if (ev.what == PROC_EVENT_EXIT &&
                     ev.event_data.exit.process_pid == ev.event_data.exit.process_tgid)
                on_process_exit(m, (pid_t)ev.event_data.exit.process_tgid,
                                (pid_t)ev.event_data.exit.parent_tgid, ev.event_data.exit.exit_code);
        }
    }
}

/* ---- fallback without the connector: pidfds on named processes ----
 * A pidfd turns readable when its process exits. The daemon is not the
 * parent, so it cannot wait for the status; it reads it from
 * /proc/<pid>/stat (exit_code, field 52) while the process is a zombie.
 * If the parent reaps it first, the status is gone and nothing is reported
 * (logged at debug): this mode can miss crashes, the connector cannot. */

static int parse_exit_code(const char *root, pid_t pid, char *state, uint32_t *status)
{
    char path[300], text[2048];
    snprintf(path, sizeof path, "%s/%d/stat", root, (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strrchr(text, ')');            /* comm may hold spaces and ')' */
    if (!p)
        return -1;
    p++;
    int field = 2;
    char *save = NULL;
    for (char *t = strtok_r(p, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
        field++;
        if (field == 3)
            *state = t[0];
        if (field == 52) {
            *status = (uint32_t)strtoul(t, NULL, 10);
            return 0;
        }
    }
    return -1;
}

static void unwatch(struct proc_monitor *m, struct watched *w)
{
    for (struct watched **pp = &m->watched; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    ev_io_stop(m->loop, &w->io);
    close(w->io.fd);
    m->nwatched--;
    free(w);
}

static void on_pidfd(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    struct watched *w = (struct watched *)io;
    struct proc_monitor *m = w->m;
    char state = 0;
    uint32_t status = 0;
    if (parse_exit_code(m->root, w->snap.pid, &state, &status) < 0 || (state != 'Z' && state != 'X'))
        log_debug("process %d (%s) ended; its status was reaped before it could be read",
                  (int)w->snap.pid, w->snap.comm);
    else if (proc_monitor_is_crash_signal((int)(status & 0x7f)))
        report_crash(m, w->snap.pid, status, &w->snap);
    else
        log_debug("process %d (%s) ended with status %u: not a crash", (int)w->snap.pid,
                  w->snap.comm, status);
    unwatch(m, w);
}

static bool watched_pid(struct proc_monitor *m, pid_t pid)
{
    for (struct watched *w = m->watched; w; w = w->next)
        if (w->snap.pid == pid)
            return true;
    return false;
}

static int consider(void *ctx, pid_t pid, const char *comm)
{
    struct proc_monitor *m = ctx;
    bool match = false;
    for (int i = 0; i < m->names.n && !match; i++)
        match = fnmatch(m->names.v[i], comm, 0) == 0;
    if (!match || watched_pid(m, pid))
        return 0;
    if (m->nwatched >= m->max_watched) {
        log_warn("crash fallback: already watching %u processes (monitor.process_cache); "
                 "%d (%s) is not watched", m->nwatched, (int)pid, comm);
        return 1;
    }
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct watched *w = fd >= 0 ? calloc(1, sizeof *w) : NULL;
    if (!w) {
        if (fd >= 0)
            close(fd);
        return 0;                            /* gone already, or no memory: next scan */
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    w->m = m;
    if (sysinfo_process(m->root, pid, &w->snap) < 0 || w->snap.state == 'Z' || w->snap.state == 'X') {
        /* gone, or a zombie whose end was already seen (or missed) */
        close(fd);
        free(w);
        return 0;
    }
    ev_io_init(&w->io, on_pidfd, fd, EV_READ);
    ev_io_start(m->loop, &w->io);
    w->next = m->watched;
    m->watched = w;
    m->nwatched++;
    log_debug("crash fallback: watching %d (%s)", (int)pid, comm);
    return 0;
}

static void on_scan(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct proc_monitor *m = t->data;
    sysinfo_each_process(m->root, consider, m);
}

static struct proc_monitor *monitor_new(struct ev_loop *loop, struct plugin_registry *reg,
                                        const struct config *cfg)
{
    struct proc_monitor *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->fd = -1;
    m->loop = loop;
    m->reg = reg;
    snprintf(m->root, sizeof m->root, "%s", cfg->proc_root);
    return m;
}

static struct proc_monitor *start_fallback(struct ev_loop *loop, struct plugin_registry *reg,
                                           const struct config *cfg)
{
    if (!cfg->fallback_names.n) {
        log_warn("crash_monitor will not see crashes; set monitor.fallback_names to watch "
                 "named processes without the connector");
        return NULL;
    }
    struct proc_monitor *m = monitor_new(loop, reg, cfg);
    if (!m)
        return NULL;
    m->names = cfg->fallback_names;
    m->max_watched = cfg->process_cache ? cfg->process_cache : 1;
    ev_timer_init(&m->scan, on_scan, 0., cfg->fallback_scan_ms / 1000.);
    m->scan.data = m;
    ev_timer_start(loop, &m->scan);
    STAT_SET(monitor_process_events, 2);
    log_info("watching processes named %s%s with pidfds (fallback: crashes are seen only while "
             "their status can still be read)", cfg->fallback_names.v[0],
             cfg->fallback_names.n > 1 ? ", ..." : "");
    return m;
}

struct proc_monitor *proc_monitor_start(struct ev_loop *loop, struct plugin_registry *reg,
                                        const struct config *cfg)
{
    if (strcmp(cfg->process_events, "off") == 0) {
        log_info("process crash events are off (monitor.process_events)");
        return NULL;
    }
    if (strcmp(cfg->process_events, "pidfd") == 0)
        return start_fallback(loop, reg, cfg);
    int fd = socket(PF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
    int rcvbuf = 1 << 20;
    if (fd < 0 || attach_filter(fd) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0 &&
         setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0) ||
        send_listen(fd, PROC_CN_MCAST_LISTEN) < 0) {
        log_warn("process crash events unavailable (kernel proc connector: %s; it needs root "
                 "or CAP_NET_ADMIN)", strerror(errno));
        if (fd >= 0)
            close(fd);
        return start_fallback(loop, reg, cfg);
    }
    struct proc_monitor *m = monitor_new(loop, reg, cfg);
    if (m && cfg->process_cache) {
        m->cache = calloc(cfg->process_cache, sizeof *m->cache);
        m->ncache = m->cache ? cfg->process_cache : 0;
    }
    if (!m || (cfg->process_cache && !m->cache)) {
        free(m);
        close(fd);
        log_warn("process crash events unavailable: out of memory");
        return NULL;
    }
    m->fd = fd;
    ev_io_init(&m->io, on_readable, fd, EV_READ);
    m->io.data = m;
    ev_io_start(loop, &m->io);
    STAT_SET(monitor_process_events, 1);
    log_info("watching for process crashes (kernel proc connector)");
    return m;
}

void proc_monitor_stop(struct proc_monitor *m)
{
    if (!m)
        return;
    if (m->fd >= 0) {
        ev_io_stop(m->loop, &m->io);
        send_listen(m->fd, PROC_CN_MCAST_IGNORE);
        close(m->fd);
    }
    ev_timer_stop(m->loop, &m->scan);
    while (m->watched)
        unwatch(m, m->watched);
    buf_free(&m->json);
    free(m->cache);
    STAT_SET(monitor_process_events, 0);
    free(m);
}
