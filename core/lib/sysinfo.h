/* sysinfo.h - host facts read from /proc (under a configurable root, so tests
 * can drive the monitors with a fake /proc) and statvfs. Plain parsing, no
 * policy: thresholds and filters live in the Lua plugins. */
#ifndef POLARIS_SYSINFO_H
#define POLARIS_SYSINFO_H

#include <stdint.h>
#include <sys/types.h>

struct sys_load {
    double avg1, avg5, avg15;
    unsigned running, total;      /* runnable / all scheduling entities */
};

struct sys_mem {                  /* kibibytes, as /proc/meminfo says */
    uint64_t total_kb, free_kb, available_kb, buffers_kb, cached_kb;
    uint64_t swap_total_kb, swap_free_kb;
};

struct sys_cpu {                  /* cumulative ticks of the "cpu" line */
    uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
    unsigned ncpu;                /* "cpuN" lines */
};

struct proc_snapshot {
    pid_t pid, ppid;
    unsigned uid;
    char state;                   /* R, S, D, Z, ... */
    char comm[64];
    char exe[512];                /* "" when unreadable (gone, zombie, permission) */
    char cmdline[1024];           /* NUL separators shown as spaces */
    uint64_t rss_kb;
    unsigned threads;
};

/* Each returns 0, or -1 with errno set. root is "/proc" in production. */
int sysinfo_loadavg(const char *root, struct sys_load *out);
int sysinfo_meminfo(const char *root, struct sys_mem *out);
int sysinfo_cpu(const char *root, struct sys_cpu *out);
/* comm, state, ppid, uid, threads, rss from status; exe and cmdline best
 * effort. -1 (ENOENT) when the process is gone. */
int sysinfo_process(const char *root, pid_t pid, struct proc_snapshot *out);
/* Calls fn for every numeric entry of root with its comm; stops early when
 * fn returns non-zero. Returns the number of processes seen, or -1. */
int sysinfo_each_process(const char *root, int (*fn)(void *ctx, pid_t pid, const char *comm),
                         void *ctx);
/* The binary of pid (readlink of exe) into out; "" when unreadable. */
void sysinfo_exe(const char *root, pid_t pid, char *out, size_t cap);
/* comm of pid into out (at most 64 bytes with the NUL); -1 when gone. */
int sysinfo_comm(const char *root, pid_t pid, char *out, size_t cap);

#endif
