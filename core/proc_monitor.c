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
 * Runs on the core's libev loop. Needs CAP_NET_ADMIN; without it (or with
 * monitor.process_events = off) it says so once and stays off.
 *
 * Uses: sysinfo (snapshots), plugin_registry (delivery), buf (JSON), stats. */
#include "proc_monitor.h"
#include "buf.h"
#include "log.h"
#include "plugin.h"
#include "plugin_registry.h"
#include "stats.h"
#include "sysinfo.h"

#include <endian.h>
#include <errno.h>
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
    char path[300];
    c->pid = pid;
    if (sysinfo_comm(m->root, pid, c->comm, sizeof c->comm) < 0) {
        c->pid = 0;
        return;
    }
    snprintf(path, sizeof path, "%s/%d/exe", m->root, (int)pid);
    ssize_t n = readlink(path, c->exe, sizeof c->exe - 1);
    c->exe[n > 0 ? n : 0] = '\0';
}

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
            struct proc_event *ev = (struct proc_event *)cn->data;
            if (ev->what == PROC_EVENT_COREDUMP)
                on_coredump(m, (pid_t)ev->event_data.coredump.process_tgid);
            else if (ev->what == PROC_EVENT_EXEC)
                on_exec(m, (pid_t)ev->event_data.exec.process_tgid);
            else if (ev->what == PROC_EVENT_EXIT &&
                     ev->event_data.exit.process_pid == ev->event_data.exit.process_tgid)
                on_process_exit(m, (pid_t)ev->event_data.exit.process_tgid,
                        (pid_t)ev->event_data.exit.parent_tgid, ev->event_data.exit.exit_code);
        }
    }
}

struct proc_monitor *proc_monitor_start(struct ev_loop *loop, struct plugin_registry *reg,
                                        const struct config *cfg)
{
    if (strcmp(cfg->process_events, "off") == 0) {
        log_info("process crash events are off (monitor.process_events)");
        return NULL;
    }
    int fd = socket(PF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
    int rcvbuf = 1 << 20;
    if (fd < 0 || attach_filter(fd) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0 &&
         setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0) ||
        send_listen(fd, PROC_CN_MCAST_LISTEN) < 0) {
        log_warn("process crash events unavailable (kernel proc connector: %s; it needs root "
                 "or CAP_NET_ADMIN); crash_monitor will not see crashes", strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    struct proc_monitor *m = calloc(1, sizeof *m);
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
    m->loop = loop;
    m->reg = reg;
    snprintf(m->root, sizeof m->root, "%s", cfg->proc_root);
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
    ev_io_stop(m->loop, &m->io);
    send_listen(m->fd, PROC_CN_MCAST_IGNORE);
    close(m->fd);
    buf_free(&m->json);
    free(m->cache);
    STAT_SET(monitor_process_events, 0);
    free(m);
}
