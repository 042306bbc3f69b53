/* targz.h - write a .tar.gz of in-memory files (POSIX ustar inside zlib's
 * gzip). Only writing: the daemon never parses archives. */
#ifndef POLARIS_TARGZ_H
#define POLARIS_TARGZ_H

#include <stddef.h>
#include <stdint.h>

struct targz_entry {
    const char *name;             /* relative, '/'-separated, no "..", <= 255 bytes */
    const void *data;
    size_t len;
    unsigned mode;                /* permission bits; 0 means 0644 */
};

/* Checks an entry name; returns NULL when fine, else why not. */
const char *targz_bad_name(const char *name);
/* Writes the archive to fd (which stays open). Returns 0, or -1 with a
 * message in err. */
int targz_write_fd(int fd, const struct targz_entry *v, size_t n, int64_t mtime_s,
                   char *err, size_t errlen);

#endif
