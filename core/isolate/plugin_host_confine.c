/* plugin_host_confine.c - confinement of a polaris-plugin-host process: closes
 * stray descriptors, sets RLIMIT_AS/CPU/NOFILE/CORE, drops to an
 * unprivileged uid when started as root, sets no_new_privs, and installs a
 * seccomp filter (libseccomp) that allows only what a Lua state talking
 * over one already-open socket needs: read/write on descriptors it has,
 * memory management without executable mappings, time, futexes, and
 * exiting. Everything else fails with EPERM; open, socket, connect, exec
 * and fork fail with EACCES/EPERM, never reach the kernel's file system or
 * network code. File access, exec and the rest of the permission-gated API
 * are done by the daemon on the host's behalf (plugin_host.c).
 *
 * Uses: libseccomp. */
#include "isolate/plugin_host_confine.h"

#include <errno.h>
#include <grp.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static int limit(int what, rlim_t v, const char *name, char *err, size_t errlen)
{
    /* CPU: SIGXCPU at the soft limit (a death with a name), SIGKILL a
     * second later if it is caught or ignored */
    struct rlimit rl = {v, what == RLIMIT_CPU ? v + 1 : v};
    if (setrlimit(what, &rl) < 0) {
        snprintf(err, errlen, "setrlimit(%s): %s", name, strerror(errno));
        return -1;
    }
    return 0;
}

static int filter(char *err, size_t errlen)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx) {
        snprintf(err, errlen, "seccomp_init failed");
        return -1;
    }
    static const int allowed[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(close),
        SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(lseek), SCMP_SYS(poll), SCMP_SYS(ppoll),
        SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise),
        SCMP_SYS(futex), SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday),
        SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(getrusage), SCMP_SYS(sched_yield),
        SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid), SCMP_SYS(geteuid),
        SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction), SCMP_SYS(sigaltstack),
        SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(getrandom), SCMP_SYS(restart_syscall),
        /* the CPU budget's tick (sandbox.c): a timer on this thread's CPU clock */
        SCMP_SYS(timer_create), SCMP_SYS(timer_settime), SCMP_SYS(timer_delete),
    };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof allowed / sizeof allowed[0]; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
    /* memory, but never executable memory: no code a plugin smuggles in runs */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    /* abort() signals itself; a signal to anyone else is refused */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    /* the loud refusals, so a test (and strace) sees exactly what was denied */
    static const int denied[] = {
        SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(openat2), SCMP_SYS(creat), SCMP_SYS(execve),
        SCMP_SYS(execveat), SCMP_SYS(socket), SCMP_SYS(connect), SCMP_SYS(unlink), SCMP_SYS(unlinkat),
    };
    for (size_t i = 0; rc == 0 && i < sizeof denied / sizeof denied[0]; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), denied[i], 0);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0) {
        snprintf(err, errlen, "seccomp filter: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

int plugin_host_confine(const struct confine_opts *o, char *err, size_t errlen)
{
    int from = (o->keep_fd > 2 ? o->keep_fd : 2) + 1;
    for (int fd = 3; fd < from; fd++)
        if (fd != o->keep_fd)
            close(fd);
    if (close_range((unsigned)from, ~0u, 0) < 0) {
        snprintf(err, errlen, "close_range: %s", strerror(errno));
        return -1;
    }
    if (limit(RLIMIT_CORE, 0, "CORE", err, errlen) < 0 ||
        limit(RLIMIT_NOFILE, o->nofile ? o->nofile : 8, "NOFILE", err, errlen) < 0 ||
        (o->cpu_s && limit(RLIMIT_CPU, o->cpu_s, "CPU", err, errlen) < 0) ||
        (o->as_bytes && limit(RLIMIT_AS, o->as_bytes, "AS", err, errlen) < 0))
        return -1;
    if (geteuid() == 0) {
        if (setgroups(0, NULL) < 0 || setresgid(o->gid, o->gid, o->gid) < 0 ||
            setresuid(o->uid, o->uid, o->uid) < 0) {
            snprintf(err, errlen, "dropping to uid %u gid %u: %s", (unsigned)o->uid, (unsigned)o->gid,
                     strerror(errno));
            return -1;
        }
        if (o->uid == 0) {
            snprintf(err, errlen, "refusing to run a plugin host as root (plugins.host_user)");
            return -1;
        }
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        snprintf(err, errlen, "prctl: %s", strerror(errno));
        return -1;
    }
    return filter(err, errlen);
}
