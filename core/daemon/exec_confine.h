/* exec_confine.h - the limits a program run by polaris.exec keeps: the
 * plugin's filesystem policy (Landlock) and no network without
 * NetworkAccess (see exec_confine.c). */
#ifndef POLARIS_EXEC_CONFINE_H
#define POLARIS_EXEC_CONFINE_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>

struct plugin;

struct exec_confine {
    int ruleset_fd;               /* Landlock; -1 when the kernel has none */
    bool no_net;
    struct sock_fprog net_prog;   /* the fallback when unshare(CLONE_NEWNET) is refused */
};

/* In the daemon, before the fork. 0, or -1 with err. */
int exec_confine_prepare(struct exec_confine *c, const struct plugin *p, char *err, size_t errlen);
/* In the child, before exec: system calls only. 0, or -1 with errno. */
int exec_confine_child(const struct exec_confine *c);
void exec_confine_release(struct exec_confine *c);

#endif
