/* sysinfo.c - parsers for the few /proc files the monitors need
 * (loadavg, meminfo, stat, <pid>/status, comm, cmdline, exe). Every path is
 * taken relative to a root so specs can hand the daemon a fake /proc.
 *
 * Uses: nothing but libc. */
#include "lib/sysinfo.h"

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads at most cap-1 bytes of root/rel into out, NUL-terminated. Returns
 * the length or -1. */
static ssize_t read_small(const char *root, const char *rel, char *out, size_t cap)
{
    char path[512];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", root, rel) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t r = read(fd, out + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    out[len] = '\0';
    return (ssize_t)len;
}

int sysinfo_loadavg(const char *root, struct sys_load *out)
{
    char text[256];
    if (read_small(root, "loadavg", text, sizeof text) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    if (sscanf(text, "%lf %lf %lf %u/%u", &out->avg1, &out->avg5, &out->avg15,
               &out->running, &out->total) < 3) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

int sysinfo_meminfo(const char *root, struct sys_mem *out)
{
    char text[8192];
    if (read_small(root, "meminfo", text, sizeof text) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    static const struct { const char *key; size_t off; } keys[] = {
        {"MemTotal:", offsetof(struct sys_mem, total_kb)},
        {"MemFree:", offsetof(struct sys_mem, free_kb)},
        {"MemAvailable:", offsetof(struct sys_mem, available_kb)},
        {"Buffers:", offsetof(struct sys_mem, buffers_kb)},
        {"Cached:", offsetof(struct sys_mem, cached_kb)},
        {"SwapTotal:", offsetof(struct sys_mem, swap_total_kb)},
        {"SwapFree:", offsetof(struct sys_mem, swap_free_kb)},
    };
    bool have_avail = false;
    for (char *line = text; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            size_t n = strlen(keys[i].key);
            if (strncmp(line, keys[i].key, n) == 0) {
                *(uint64_t *)((char *)out + keys[i].off) = strtoull(line + n, NULL, 10);
                if (keys[i].off == offsetof(struct sys_mem, available_kb))
                    have_avail = true;
            }
        }
        line = next;
    }
    if (!out->total_kb) {
        errno = EPROTO;
        return -1;
    }
    /* kernels before 3.14 have no MemAvailable: estimate it as they did */
    if (!have_avail)
        out->available_kb = out->free_kb + out->buffers_kb + out->cached_kb;
    return 0;
}

int sysinfo_cpu(const char *root, struct sys_cpu *out)
{
    char text[16384];
    if (read_small(root, "stat", text, sizeof text) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    unsigned long long v[8] = {0};
    if (strncmp(text, "cpu ", 4) != 0 ||
        sscanf(text + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) < 4) {
        errno = EPROTO;
        return -1;
    }
    out->user = v[0], out->nice = v[1], out->system = v[2], out->idle = v[3];
    out->iowait = v[4], out->irq = v[5], out->softirq = v[6], out->steal = v[7];
    for (char *s = strstr(text, "\ncpu"); s; s = strstr(s + 1, "\ncpu"))
        if (isdigit((unsigned char)s[4]))
            out->ncpu++;
    return 0;
}

int sysinfo_comm(const char *root, pid_t pid, char *out, size_t cap)
{
    char rel[64];
    snprintf(rel, sizeof rel, "%d/comm", (int)pid);
    ssize_t n = read_small(root, rel, out, cap);
    if (n < 0)
        return -1;
    if (n > 0 && out[n - 1] == '\n')
        out[n - 1] = '\0';
    return 0;
}

static void parse_status(char *text, struct proc_snapshot *out)
{
    for (char *line = text; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "State:", 6) == 0) {
            const char *v = line + 6;
            while (*v == '\t' || *v == ' ')
                v++;
            out->state = *v;
        } else if (strncmp(line, "PPid:", 5) == 0) {
            out->ppid = (pid_t)strtol(line + 5, NULL, 10);
        } else if (strncmp(line, "Uid:", 4) == 0) {
            out->uid = (unsigned)strtoul(line + 4, NULL, 10);
        } else if (strncmp(line, "Threads:", 8) == 0) {
            out->threads = (unsigned)strtoul(line + 8, NULL, 10);
        } else if (strncmp(line, "VmRSS:", 6) == 0) {
            out->rss_kb = strtoull(line + 6, NULL, 10);
        }
        line = next;
    }
}

void sysinfo_exe(const char *root, pid_t pid, char *out, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%d/exe", root, (int)pid);
    ssize_t n = cap ? readlink(path, out, cap - 1) : -1;
    if (cap)
        out[n > 0 ? n : 0] = '\0';
}

int sysinfo_process(const char *root, pid_t pid, struct proc_snapshot *out)
{
    memset(out, 0, sizeof *out);
    out->pid = pid;
    /* A crashing process can be reaped any moment: read the most telling
     * facts first (name, binary, command line), the status details last. */
    if (sysinfo_comm(root, pid, out->comm, sizeof out->comm) < 0)
        return -1;
    char rel[64], text[4096];
    sysinfo_exe(root, pid, out->exe, sizeof out->exe);
    snprintf(rel, sizeof rel, "%d/cmdline", (int)pid);
    ssize_t n = read_small(root, rel, out->cmdline, sizeof out->cmdline);
    while (n > 0 && out->cmdline[n - 1] == '\0')
        n--;
    for (ssize_t i = 0; i < n; i++)
        if (out->cmdline[i] == '\0')
            out->cmdline[i] = ' ';
    out->cmdline[n > 0 ? n : 0] = '\0';
    snprintf(rel, sizeof rel, "%d/status", (int)pid);
    if (read_small(root, rel, text, sizeof text) >= 0)
        parse_status(text, out);
    return 0;
}

int sysinfo_each_process(const char *root, int (*fn)(void *ctx, pid_t pid, const char *comm),
                         void *ctx)
{
    DIR *dir = opendir(root);
    if (!dir)
        return -1;
    int seen = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || !isdigit((unsigned char)de->d_name[0]))
            continue;
        char comm[64];
        if (sysinfo_comm(root, (pid_t)pid, comm, sizeof comm) < 0)
            continue;                   /* gone between readdir and open */
        seen++;
        if (fn(ctx, (pid_t)pid, comm))
            break;
    }
    closedir(dir);
    return seen;
}
