/* test_fs_beneath.c - the openat2 fallback: inside the root works, ".."
 * and symlinks (even ones that stay inside) are refused. */
#include "harness.h"
#include "lib/fs_beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TEST(fs_walk_beneath_confines)
{
    char root[] = "/tmp/polaris-beneath-XXXXXX";
    REQUIRE(mkdtemp(root));
    char p[256];
    snprintf(p, sizeof p, "%s/a", root);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/a/file", root);
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    fputs("x", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/a/inlink", root);
    CHECK(symlink("file", p) == 0);
    snprintf(p, sizeof p, "%s/up", root);
    CHECK(symlink("/etc", p) == 0);
    int rfd = open(root, O_PATH | O_DIRECTORY);
    REQUIRE(rfd >= 0);
    int fd = fs_walk_beneath(rfd, "a/file", O_RDONLY, 0);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    fd = fs_walk_beneath(rfd, "./a//./file", O_RDONLY, 0);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK(fs_walk_beneath(rfd, "a/../a/file", O_RDONLY, 0) < 0 && errno == EXDEV);
    CHECK(fs_walk_beneath(rfd, "../etc/passwd", O_RDONLY, 0) < 0 && errno == EXDEV);
    CHECK(fs_walk_beneath(rfd, "up/passwd", O_RDONLY, 0) < 0 && errno == EXDEV);
    CHECK(fs_walk_beneath(rfd, "a/inlink", O_RDONLY, 0) < 0 && errno == EXDEV);
    CHECK(fs_walk_beneath(rfd, "a/inlink", O_PATH, 0) < 0 && errno == EXDEV);
    CHECK(fs_walk_beneath(rfd, "a/missing", O_RDONLY, 0) < 0 && errno == ENOENT);
    fd = fs_walk_beneath(rfd, "a/new", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    fd = fs_walk_beneath(rfd, ".", O_PATH | O_DIRECTORY, 0);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    close(rfd);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}
