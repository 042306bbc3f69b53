/* test_sysinfo.c - the /proc parsers against a fake /proc written here,
 * and against the real one (shape only). */
#include "harness.h"
#include "lib/sysinfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void put_n(const char *root, const char *rel, const char *text, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    if (f) {
        fwrite(text, 1, n, f);
        fclose(f);
    }
}

static void put(const char *root, const char *rel, const char *text)
{
    put_n(root, rel, text, strlen(text));
}

static char *fake_proc(void)
{
    static char root[64];
    snprintf(root, sizeof root, "/tmp/polaris-sysinfo-XXXXXX");
    if (!mkdtemp(root))
        return NULL;
    put(root, "loadavg", "0.52 1.25 2.00 3/417 12345\n");
    put(root, "meminfo", "MemTotal:       1000000 kB\nMemFree:         100000 kB\n"
                         "MemAvailable:    250000 kB\nBuffers:          10000 kB\n"
                         "Cached:          50000 kB\nSwapTotal:            0 kB\nSwapFree: 0 kB\n");
    put(root, "stat", "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n"
                      "cpu1 50 3 25 500 10 2 1 1 0 0\nintr 1 2 3\n");
    char dir[128];
    snprintf(dir, sizeof dir, "%s/4242", root);
    mkdir(dir, 0755);
    put(root, "4242/comm", "qemu-system-x86\n");
    put(root, "4242/status", "Name:\tqemu-system-x86\nState:\tS (sleeping)\nPPid:\t1\n"
                             "Uid:\t107\t107\t107\t107\nVmRSS:\t  2048 kB\nThreads:\t7\n");
    static const char cmdline[] = "qemu-system-x86_64\0-m\0" "2048\0";
    put_n(root, "4242/cmdline", cmdline, sizeof cmdline - 1);
    snprintf(dir, sizeof dir, "%s/self", root);   /* not a pid: skipped */
    mkdir(dir, 0755);
    return root;
}

static void rm_tree(const char *root)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", root);
}

TEST(sysinfo_parses_a_fake_proc)
{
    char *root = fake_proc();
    REQUIRE(root);
    struct sys_load l;
    CHECK(sysinfo_loadavg(root, &l) == 0);
    CHECK(l.avg1 == 0.52 && l.avg5 == 1.25 && l.avg15 == 2.0);
    CHECK(l.running == 3 && l.total == 417);
    struct sys_mem m;
    CHECK(sysinfo_meminfo(root, &m) == 0);
    CHECK(m.total_kb == 1000000 && m.available_kb == 250000 && m.cached_kb == 50000);
    struct sys_cpu c;
    CHECK(sysinfo_cpu(root, &c) == 0);
    CHECK(c.user == 100 && c.nice == 5 && c.system == 50 && c.idle == 1000);
    CHECK(c.iowait == 20 && c.irq == 3 && c.softirq == 2 && c.steal == 1);
    CHECK(c.ncpu == 2);
    struct proc_snapshot s;
    CHECK(sysinfo_process(root, 4242, &s) == 0);
    CHECK(strcmp(s.comm, "qemu-system-x86") == 0);
    CHECK(strcmp(s.cmdline, "qemu-system-x86_64 -m 2048") == 0);
    CHECK(s.state == 'S' && s.ppid == 1 && s.uid == 107 && s.rss_kb == 2048 && s.threads == 7);
    CHECK(s.exe[0] == '\0');
    CHECK(sysinfo_process(root, 4243, &s) < 0);
    rm_tree(root);
}

static int count(void *ctx, pid_t pid, const char *comm)
{
    int *n = ctx;
    if (pid == 4242 && strcmp(comm, "qemu-system-x86") == 0)
        n[0]++;
    n[1]++;
    return 0;
}

TEST(sysinfo_lists_only_pid_entries)
{
    char *root = fake_proc();
    REQUIRE(root);
    int n[2] = {0, 0};
    CHECK(sysinfo_each_process(root, count, n) == 1);
    CHECK(n[0] == 1 && n[1] == 1);
    rm_tree(root);
}

TEST(sysinfo_estimates_available_memory_on_old_kernels)
{
    char *root = fake_proc();
    REQUIRE(root);
    put(root, "meminfo", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 40 kB\n");
    struct sys_mem m;
    CHECK(sysinfo_meminfo(root, &m) == 0);
    CHECK(m.available_kb == 150);
    put(root, "meminfo", "garbage\n");
    CHECK(sysinfo_meminfo(root, &m) < 0);
    put(root, "loadavg", "x\n");
    struct sys_load l;
    CHECK(sysinfo_loadavg(root, &l) < 0);
    put(root, "stat", "intr 1\n");
    struct sys_cpu c;
    CHECK(sysinfo_cpu(root, &c) < 0);
    rm_tree(root);
}

TEST(sysinfo_reads_the_real_proc)
{
    struct sys_mem m;
    struct sys_cpu c;
    struct proc_snapshot s;
    CHECK(sysinfo_meminfo("/proc", &m) == 0 && m.total_kb > 0);
    CHECK(sysinfo_cpu("/proc", &c) == 0 && c.ncpu >= 1);
    CHECK(sysinfo_process("/proc", getpid(), &s) == 0);
    CHECK(s.exe[0] == '/' && s.threads >= 1 && s.ppid > 0);
}
