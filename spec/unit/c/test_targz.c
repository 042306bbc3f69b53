/* test_targz.c - archives written by targz.c, read back by GNU tar (a
 * reader we did not write): names, contents, modes, long names, the
 * empty archive, and refused names. */
#include "harness.h"
#include "lib/targz.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_archive(const char *path, const struct targz_entry *v, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    char err[256];
    int rc = targz_write_fd(fd, v, n, 1700000000, err, sizeof err);
    close(fd);
    return rc;
}

/* Runs a command and returns its stdout (static buffer). */
static const char *run(const char *cmd)
{
    static char out[65536];
    FILE *p = popen(cmd, "r");
    if (!p)
        return "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    if (pclose(p) != 0)
        return "(failed)";
    return out;
}

TEST(targz_is_read_back_by_gnu_tar)
{
    char path[] = "/tmp/polaris-targz-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    static char big[70000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    char longname[201];
    memset(longname, 'd', 120);
    longname[120] = '/';
    memset(longname + 121, 'f', 79);
    longname[200] = '\0';
    struct targz_entry v[] = {
        {"event.json", "{\"eventId\":1}", 13, 0},
        {"logs/syslog", big, sizeof big, 0600},
        {"empty.txt", "", 0, 0},
        {longname, "x", 1, 0},
    };
    REQUIRE(write_archive(path, v, 4) == 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "gzip -t '%s' && echo ok", path);
    CHECK(strcmp(run(cmd), "ok\n") == 0);
    snprintf(cmd, sizeof cmd, "tar -tzf '%s'", path);
    char expect[512];
    snprintf(expect, sizeof expect, "event.json\nlogs/syslog\nempty.txt\n%s\n", longname);
    CHECK(strcmp(run(cmd), expect) == 0);
    snprintf(cmd, sizeof cmd, "tar -xzOf '%s' event.json", path);
    CHECK(strcmp(run(cmd), "{\"eventId\":1}") == 0);
    snprintf(cmd, sizeof cmd, "tar -xzOf '%s' logs/syslog | cksum", path);
    char a[128];
    snprintf(a, sizeof a, "%s", run(cmd));
    FILE *f = fopen("/tmp/polaris-targz-big", "w");
    REQUIRE(f);
    fwrite(big, 1, sizeof big, f);
    fclose(f);
    CHECK(strcmp(a, run("cksum < /tmp/polaris-targz-big")) == 0);
    unlink("/tmp/polaris-targz-big");
    snprintf(cmd, sizeof cmd, "tar -tvzf '%s' logs/syslog | cut -c1-10", path);
    CHECK(strcmp(run(cmd), "-rw-------\n") == 0);
    unlink(path);
}

TEST(targz_empty_archive_is_valid)
{
    char path[] = "/tmp/polaris-targz-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    REQUIRE(write_archive(path, NULL, 0) == 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "tar -tzf '%s' && echo ok", path);
    CHECK(strcmp(run(cmd), "ok\n") == 0);
    unlink(path);
}

TEST(targz_refuses_names_that_escape)
{
    const char *bad[] = {"/etc/passwd", "../x", "a/../b", "a//b", "./a", "", "a/.", NULL};
    for (const char **b = bad; *b; b++)
        CHECK(targz_bad_name(*b) != NULL);
    CHECK(targz_bad_name("a/b.c") == NULL);
    CHECK(targz_bad_name("..a") == NULL);
    char part[102];
    memset(part, 'p', 101);
    part[101] = '\0';
    CHECK(targz_bad_name(part) != NULL);            /* a part over 100 bytes */
    struct targz_entry v = {"../x", "y", 1, 0};
    char err[128];
    int fd = open("/dev/null", O_WRONLY);
    CHECK(targz_write_fd(fd, &v, 1, 0, err, sizeof err) < 0);
    CHECK(strstr(err, "../x") != NULL);
    close(fd);
}
