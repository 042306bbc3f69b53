/* event_ids.h - eventIds the daemon itself emits (documented in docs/events.md). */
#ifndef POLARIS_EVENT_IDS_H
#define POLARIS_EVENT_IDS_H

#define POLARIS_EV_EVENTS_DROPPED 1000001ull   /* outbound buffer overflowed */

#endif
