/* exec_confine.c - a program a plugin runs with polaris.exec keeps the
 * plugin's limits (DESIGN 5.3):
 *
 * - files, with Landlock where the kernel has it: it reads anything but
 *   the plugin's forbidden_paths and writes only under its allowed_paths
 *   (and /dev/null). Landlock only grants, so "all but these" is granted
 *   as every sibling along the way down to each forbidden path; the
 *   directories on that way cannot be listed. Without Landlock (the ABI
 *   probe fails) the program runs without this part, said once in the log.
 * - network, unless the plugin has NetworkAccess: a new, empty network
 *   namespace when the daemon may make one (root, CAP_SYS_ADMIN), which
 *   leaves it only an unconfigured loopback; otherwise a seccomp filter
 *   that fails socket(AF_INET/AF_INET6/AF_PACKET) with EACCES.
 *
 * Everything is prepared in the daemon; the forked child only makes
 * system calls (a multithreaded parent's child must not allocate). */
#include "daemon/exec_confine.h"
#include "lib/log.h"
#include "runtime/plugin.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#define LL_TRUNCATE (1ULL << 14)   /* ABI 3; older headers lack it */

#define LL_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_EXECUTE)
#define LL_WRITE_V1 (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR | \
                     LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR | \
                     LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG | \
                     LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | \
                     LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM)
/* what a rule on a file (not a directory) may carry */
#define LL_FILE (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
                 LANDLOCK_ACCESS_FS_READ_FILE | LL_TRUNCATE)

#define WALK_DEPTH 32

struct walk {
    int rs;
    uint64_t handled;
    char **cuts;                  /* the forbidden paths, resolved */
    size_t ncuts;
};

static int landlock_abi(void)
{
    static int abi = -2;
    if (abi == -2) {
        long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
        abi = v < 0 ? -1 : (int)v;
        if (abi < 0)
            log_warn("polaris.exec: this kernel has no Landlock (%s): programs plugins run are not held "
                     "to their filesystem policy", strerror(errno));
    }
    return abi;
}

/* a is b or below it */
static bool under(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (n == 1 && b[0] == '/')
        return true;
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

static int add_rule(struct walk *w, const char *path, uint64_t access)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == EACCES || errno == ELOOP ? 0 : -1;   /* nothing to grant */
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return -1;
    }
    struct landlock_path_beneath_attr pb = {
        .allowed_access = (S_ISDIR(st.st_mode) ? access : access & LL_FILE) & w->handled,
        .parent_fd = fd,
    };
    long rc = pb.allowed_access ? syscall(SYS_landlock_add_rule, w->rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) : 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc < 0 ? -1 : 0;
}

/* Grants access beneath path, except beneath any cut. */
static int grant(struct walk *w, const char *path, uint64_t access, int depth)
{
    bool cut_below = false;
    for (size_t i = 0; i < w->ncuts; i++) {
        if (under(path, w->cuts[i]))
            return 0;                          /* forbidden itself */
        if (under(w->cuts[i], path))
            cut_below = true;
    }
    if (!cut_below)
        return add_rule(w, path, access);
    if (depth >= WALK_DEPTH)
        return 0;                              /* deeper than any real tree: grant nothing more */
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char child[PATH_MAX];
        if (snprintf(child, sizeof child, "%s/%s", strcmp(path, "/") == 0 ? "" : path, de->d_name) >=
            (int)sizeof child)
            continue;
        struct stat st;
        if (lstat(child, &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            /* a rule follows the link to its target: grant it only when the
             * target holds nothing forbidden (else its real place is walked) */
            char real[PATH_MAX];
            if (!realpath(child, real))
                continue;
            bool clean = true;
            for (size_t i = 0; i < w->ncuts && clean; i++)
                clean = !under(real, w->cuts[i]) && !under(w->cuts[i], real);
            if (clean)
                rc = add_rule(w, child, access);
            continue;
        }
        rc = grant(w, child, access, depth + 1);
    }
    closedir(d);
    return rc;
}

static char *resolved(const char *path)
{
    char real[PATH_MAX];
    return strdup(realpath(path, real) ? real : path);
}

static int build_ruleset(struct exec_confine *c, const struct plugin *p, int abi, char *err, size_t errlen)
{
    uint64_t write = LL_WRITE_V1 | (abi >= 2 ? LANDLOCK_ACCESS_FS_REFER : 0) | (abi >= 3 ? LL_TRUNCATE : 0);
    struct landlock_ruleset_attr attr = {.handled_access_fs = LL_READ | write};
    struct walk w = {.handled = attr.handled_access_fs};
    w.rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (w.rs < 0) {
        snprintf(err, errlen, "landlock_create_ruleset: %s", strerror(errno));
        return -1;
    }
    w.cuts = calloc(p->nforbidden + 1, sizeof *w.cuts);
    int rc = w.cuts ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < p->nforbidden; i++)
        if (!(w.cuts[w.ncuts++] = resolved(p->forbidden_paths[i])))
            rc = -1;
    if (rc == 0)
        rc = grant(&w, "/", LL_READ, 0);
    /* allowed_paths (the manifest's and the operator's grants) bound where
     * programs write whether or not the plugin itself may use polaris.fs */
    for (size_t i = 0; rc == 0 && i < p->nallowed; i++) {
        char *a = resolved(p->allowed_paths[i]);
        rc = a ? grant(&w, a, LL_READ | write, 0) : -1;
        free(a);
    }
    if (rc == 0)
        rc = grant(&w, "/dev/null", LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE, 0);
    int saved = errno;
    for (size_t i = 0; i < w.ncuts; i++)
        free(w.cuts[i]);
    free(w.cuts);
    if (rc < 0) {
        snprintf(err, errlen, "landlock rules: %s", strerror(saved));
        close(w.rs);
        return -1;
    }
    c->ruleset_fd = w.rs;
    return 0;
}

#if defined(__x86_64__)
#define CONFINE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define CONFINE_ARCH AUDIT_ARCH_AARCH64
#endif

int exec_confine_prepare(struct exec_confine *c, const struct plugin *p, char *err, size_t errlen)
{
    *c = (struct exec_confine){.ruleset_fd = -1};
    c->no_net = !(p->perms & PERM_NET);
#ifdef CONFINE_ARCH
    /* the fallback when no namespace can be made: socket(AF_INET*, ...) fails */
    static const struct sock_filter net_filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, CONFINE_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_PACKET, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EACCES & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    c->net_prog.len = sizeof net_filter / sizeof net_filter[0];
    c->net_prog.filter = (struct sock_filter *)net_filter;
#endif
    int abi = landlock_abi();
    if (abi >= 1 && build_ruleset(c, p, abi, err, errlen) < 0)
        return -1;
    return 0;
}

int exec_confine_child(const struct exec_confine *c)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    if (c->no_net && unshare(CLONE_NEWNET) < 0) {
        if (!c->net_prog.filter) {
            errno = EPERM;
            return -1;
        }
        /* seccomp(2) first: the shipped unit allows it by name */
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &c->net_prog) < 0 &&
            (errno != ENOSYS || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &c->net_prog) < 0))
            return -1;
    }
    if (c->ruleset_fd >= 0 && syscall(SYS_landlock_restrict_self, c->ruleset_fd, 0) < 0)
        return -1;
    return 0;
}

void exec_confine_release(struct exec_confine *c)
{
    if (c->ruleset_fd >= 0)
        close(c->ruleset_fd);
    c->ruleset_fd = -1;
}
