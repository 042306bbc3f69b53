/* spool.h - the outbound buffer on disk, for egress (core/guest_link.c). */
#ifndef POLARIS_SPOOL_H
#define POLARIS_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool;

/* Opens (creating) DIR/spool.log and DIR/spool.ckpt; NULL with err. */
struct spool *spool_open(const char *dir, char *err, size_t errlen);
/* Calls fn for every undelivered record, oldest first, with its offsets;
 * cuts a torn tail. Returns how many were replayed. */
int spool_replay(struct spool *s, int (*fn)(void *ctx, const char *p, size_t len, uint64_t start,
                                            uint64_t end), void *ctx);
/* Adds a record to the current batch (p must stay valid until
 * spool_flush); fills its offsets. */
int spool_append(struct spool *s, const void *p, size_t len, uint64_t *start, uint64_t *end);
/* Writes the batch with one pwritev. */
int spool_flush(struct spool *s);
/* first_live: the start of the oldest record still waiting (or the log's
 * end when none). Persists it; truncates or compacts the log when worth
 * it, returning by how much every live offset moved down (0 if not). */
uint64_t spool_checkpoint(struct spool *s, uint64_t first_live);
uint64_t spool_live_bytes(const struct spool *s);
void spool_sync(struct spool *s);      /* fdatasync when something was written */
void spool_close(struct spool *s);     /* syncs; NULL is fine */

#endif
