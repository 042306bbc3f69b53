/* fs_beneath.h - the fallback for openat2(RESOLVE_BENEATH) (core/runtime/bind_fs.c). */
#ifndef POLARIS_FS_BENEATH_H
#define POLARIS_FS_BENEATH_H

#include <sys/types.h>

/* Opens rel beneath rootfd one component at a time with O_NOFOLLOW:
 * ".." and every symlink are refused with EXDEV. Returns an fd or -1. */
int fs_walk_beneath(int rootfd, const char *rel, int flags, mode_t mode);

#endif
