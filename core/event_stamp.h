/* event_stamp.h - validate an EVENT_REPORT payload and stamp it with the
 * sender's real identity (DESIGN 3.1). */
#ifndef POLARIS_EVENT_STAMP_H
#define POLARIS_EVENT_STAMP_H

#include <stdint.h>
#include <sys/types.h>
#include "buf.h"

/* Writes the stamped event JSON to out. The original members are copied
 * byte for byte (eventId is never converted), except: pid is replaced by the
 * real pid (a differing claim kept as claimedPid), uid is set to the real
 * uid, timestamp is added when absent, params {} when absent, processName
 * from /proc when absent. pid < 0 validates and normalises without stamping
 * identity (events a trusted plugin emits about other processes).
 * Returns 0, or -1 with *err naming the problem. */
int event_stamp(const char *json, size_t len, pid_t pid, uid_t uid,
                struct buf *out, uint64_t *event_id, const char **err);

uint64_t wall_ms(void);

#endif
