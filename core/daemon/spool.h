/* spool.h - accepted events on disk until they are delivered or dropped. */
#ifndef POLARIS_SPOOL_H
#define POLARIS_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool;

/* Opens (creating) DIR/spool.log, spool.ckpt and spool.done; NULL with err. */
struct spool *spool_open(const char *dir, char *err, size_t errlen);
/* Calls fn for every record not finished last time, oldest first, with a
 * ticket to finish it by; cuts a torn tail. Returns how many. */
int spool_replay(struct spool *s, int (*fn)(void *ctx, uint64_t event_id, const char *p, size_t len,
                                            uint64_t ticket, uint32_t seq), void *ctx);
/* Adds a record (copied) to the batch; returns its ticket, 0 on failure. */
uint64_t spool_append(struct spool *s, uint64_t event_id, const void *p, size_t len);
/* Writes the batch: the records in it are accepted once this returns 0. */
int spool_flush(struct spool *s);
/* The event with this ticket was delivered or dropped (0 is ignored). */
void spool_done(struct spool *s, uint64_t ticket);
uint64_t spool_live_bytes(struct spool *s);
/* The PLP seq_id the guest link gave the event of this ticket: replayed
 * after a restart, it goes out under the same one (seq passed to fn). */
void spool_set_seq(struct spool *s, uint64_t ticket, uint32_t seq);
/* Writes the seq notes set since the last call (before their frames go out). */
void spool_commit_seqs(struct spool *s);
/* The guest link's state across restarts: a lease on seq_ids (none at or
 * past it was used), its boot id, whether a guest ever acked. load: 0, or
 * -1 when there is none yet. save: 0, or -1 (logged); it is synced. */
int spool_load_guest(struct spool *s, uint32_t *seq_lease, bool *acks_seen, uint32_t *boot_id);
int spool_save_guest(struct spool *s, uint32_t seq_lease, bool acks_seen, uint32_t boot_id);
void spool_sync(struct spool *s);      /* fdatasync when something was written */
void spool_close(struct spool *s);     /* flushes and syncs; NULL is fine */

#endif
