/* fs_beneath.c - opening a path beneath a directory without openat2.
 *
 * Uses: nothing but libc. */
#include "lib/fs_beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Without openat2 (kernels before 5.6, valgrind): walk the path one
 * component at a time with O_NOFOLLOW, refusing ".." and every symlink,
 * which is stricter than RESOLVE_BENEATH (that one allows symlinks that
 * stay inside). EXDEV stands for "leaves the root", as openat2 says it. */
int fs_walk_beneath(int rootfd, const char *rel, int flags, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", rel) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (strspn(rel, "./") == strlen(rel) && !strstr(rel, ".."))   /* the root itself */
        return openat(rootfd, ".", (flags | O_CLOEXEC) & ~O_CREAT, mode);
    int cur = dup(rootfd);
    char *save = NULL, *comp = strtok_r(buf, "/", &save);
    if (cur < 0)
        return -1;
    for (;;) {
        char *next = strtok_r(NULL, "/", &save);
        if (strcmp(comp, "..") == 0) {
            close(cur);
            errno = EXDEV;
            return -1;
        }
        int fd;
        if (strcmp(comp, ".") == 0) {
            fd = dup(cur);
        } else if (next) {
            fd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        } else {
            fd = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
            struct stat st;
            /* O_PATH|O_NOFOLLOW opens a symlink itself: refuse it as well */
            if (fd >= 0 && (flags & O_PATH) && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
                close(fd);
                fd = -1;
                errno = ELOOP;
            }
        }
        int e = errno;
        close(cur);
        if (fd < 0) {
            errno = e == ELOOP || e == ENOTDIR ? EXDEV : e;   /* a symlink on the way */
            return -1;
        }
        if (!next)
            return fd;
        cur = fd;
        comp = next;
    }
}

