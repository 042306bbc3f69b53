/* json_index.h - where the top-level members of an object the daemon wrote
 * itself begin, carried with its text so that a later reader on another
 * thread need not scan the text again to find them.
 *
 * The ingress scans an app's event once (it must: to validate it and find
 * the fields it stamps) and writes the stamped text; the worker that hands
 * the event to a Lua strategy needed the same members again and scanned
 * the whole text a second time (a tenth of a trivial strategy's cost,
 * docs/performance.md). The writer notes each member's offset as it
 * writes it, with its key's length; json_index_members (wire/json_scan.c)
 * turns the notes back into members, checking each against the text (the
 * quotes and the colon where the notes put them, the comma after the
 * value), not scanning it: finding each key's end was most of the cost
 * of reading an index (callgrind, session 15). So a wrong index could
 * give a key with an escape in it, taken as its raw bytes; never a span
 * outside the text.
 *
 * Only text written compact between its members ("k":v,"k":v), with no
 * key escaped or longer than 255 bytes, shorter than 64 KiB and of at
 * most JSON_INDEX_MAX members is indexed: every event the ingress stamps
 * from an ordinary app. */
#ifndef POLARIS_JSON_INDEX_H
#define POLARIS_JSON_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#define JSON_INDEX_MAX 16

struct json_index {
    uint16_t len;                     /* the text's length, to check it is the one indexed */
    uint8_t n;                        /* members noted; 0: none (not indexed) */
    uint8_t ident_at, ident_n;        /* an event's writer that stamped its identity: members
                                       * ident_at.. are all of it (pid, uid, claimedPid), and
                                       * member 0 is its eventId; ident_n 0: not known */
    uint16_t uint_mask;               /* bit i: member i's value is digits only (json_member's
                                       * is_uint), as the writer knew without looking */
    bool id_first;                    /* member 0 is the eventId, its value the digits the
                                       * writer read the event's id (envelope ev.id) from */
    bool keys_unique;                 /* no key is given twice, as the writer knows: a reader
                                       * need not compare them */
    uint16_t key_at[JSON_INDEX_MAX];  /* each member's key's opening quote */
    uint8_t key_len[JSON_INDEX_MAX];  /* and its length (between the quotes) */
};

#endif
