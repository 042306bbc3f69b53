/* stats.h - process-wide counters and gauges, written by every domain with
 * relaxed atomics and read by `polarisctl status`. Each one is listed once,
 * in STATS_FIELDS, so status and metrics can never forget one. */
#ifndef POLARIS_STATS_H
#define POLARIS_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* X(group, name, help) */
#define STATS_FIELDS(X) \
    X(ipc, clients, "connected local clients (gauge)") \
    X(ipc, connections_total, "client connections accepted") \
    X(ipc, connections_refused, "connections refused over ipc.max_clients") \
    X(ipc, events_in, "events accepted from clients") \
    X(ipc, events_direct, "of those, passed straight to the guest link: no plugin or router rule takes them") \
    X(ipc, frames_rejected, "frames rejected: invalid JSON or missing/mistyped field") \
    X(ipc, events_dropped_nomem, "events dropped at ingress: no memory for the envelope") \
    X(ipc, frames_unknown_type, "frames skipped: unknown msg_type") \
    X(ipc, frames_oversize, "connections closed: total_len out of range") \
    X(ipc, frame_timeouts, "connections closed: frame incomplete after ipc.frame_timeout_ms") \
    X(ipc, commands_in, "command requests from clients") \
    X(ipc, responses_undeliverable, "command answers whose client had gone") \
    X(ipc, client_out_overflow, "connections closed: unread answers over ipc.client_out_max_bytes") \
    X(ipc, backpressure_pauses, "times a client was paused because the core queue was full") \
    X(ipc, control_denied, "control requests refused: peer uid not the daemon's or root") \
    X(core, events_routed, "events routed by the core") \
    X(core, events_dropped_by_strategy, "events a strategy chose to drop") \
    X(core, events_dropped_by_router, "events the router plugin's rules drop") \
    X(guest, connected, "guest connected (gauge, 0/1)") \
    X(guest, connections_total, "guest sessions accepted") \
    X(guest, replaced, "guest sessions replaced by a newer connection") \
    X(guest, events_sent, "events written to the guest") \
    X(guest, buffered, "events waiting for the guest (gauge)") \
    X(guest, buffered_bytes, "bytes of events waiting for the guest (gauge)") \
    X(guest, dropped, "events dropped from a full outbound buffer (oldest first)") \
    X(guest, dropped_too_large, "events larger than guest.buffer_max_bytes") \
    X(guest, dropped_shutdown, "events unsent when the shutdown grace period ended") \
    X(guest, crc_errors, "guest frames dropped: CRC mismatch") \
    X(guest, gzip_errors, "guest frames dropped: bad gzip or over 16 MiB inflated") \
    X(guest, protocol_errors, "guest sessions closed: bad magic/version/header/size") \
    X(guest, unknown_frames, "guest frames skipped: unknown type") \
    X(guest, heartbeat_timeouts, "guest sessions closed: silent for heartbeat_misses intervals") \
    X(guest, heartbeats_sent, "heartbeats sent") \
    X(guest, bytes_out, "bytes written to the guest") \
    X(guest, bytes_in, "bytes read from the guest") \
    X(guest, control_dropped, "command frames for the guest lost because it was gone") \
    X(guest, acks_on, "acknowledgements in use (gauge, 0/1: [guest] acks, or auto and an ack seen)") \
    X(guest, acks_received, "EVENT_ACK_G2H frames taken") \
    X(guest, acks_ignored, "acks ahead of what was sent, ignored") \
    X(guest, events_acked, "events the guest acknowledged (done)") \
    X(guest, unacked, "events written to the guest, waiting for its ack (gauge)") \
    X(guest, resent, "unacked events sent again to a new session, with their seq_id") \
    X(guest, lost, "events written to a guest without acks that it may not have read when its session ended (reported in the drop notice)") \
    X(guest, backpressure, "times the buffer filled while a guest was connected and producers held back (no drop)") \
    X(commands, from_guest, "commands received from the guest") \
    X(commands, to_guest, "app commands forwarded to the guest") \
    X(commands, inflight_host, "host commands running (gauge)") \
    X(commands, inflight_guest, "app commands waiting on the guest (gauge)") \
    X(commands, unknown_action, "commands answered -1: unknown action") \
    X(commands, timeouts, "commands answered -2: deadline passed") \
    X(commands, late_results, "results discarded because their deadline had passed") \
    X(commands, guest_absent, "commands answered -3: guest not connected") \
    X(commands, bad_requests, "commands answered -4: bad request") \
    X(commands, denied, "commands answered -5: blocked by policy") \
    X(commands, handler_errors, "commands answered -6: handler error") \
    X(commands, busy, "commands answered -7: too many in flight") \
    X(plugin_hosts, deaths, "plugin host processes that died (any signal or a non-zero exit)") \
    X(plugin_hosts, violations, "plugin hosts ended for breaking the channel protocol") \
    X(plugin_hosts, stale_results, "answers to a dead plugin host's calls (waits, timers, daemon calls) dropped, not given to its successor") \
    X(workers, abandoned, "worker threads the watchdog gave up on (stuck in one plugin call past plugins.watchdog_ms) and replaced") \
    X(log, suppressed, "log lines held back by daemon.log_burst (repeats of one call site)") \
    X(spool, bytes, "bytes of accepted, not yet finished events in the spool (gauge)") \
    X(spool, replayed, "events found unfinished in the spool at start, sent through again") \
    X(spool, errors, "events the spool could not take (kept in memory only)") \
    X(monitor, process_events, "crash notices: 0 off, 1 kernel proc connector, 2 pidfd fallback (gauge)") \
    X(monitor, crashes_seen, "host processes seen killed by a core-dumping signal") \
    X(monitor, netlink_overruns, "times the kernel dropped proc connector events (socket buffer full)")

struct stats {
#define X(g, n, h) _Atomic uint64_t g##_##n;
    STATS_FIELDS(X)
#undef X
};

extern struct stats g_stats;

#define STAT_INC(f) atomic_fetch_add_explicit(&g_stats.f, 1, memory_order_relaxed)
#define STAT_ADD(f, v) atomic_fetch_add_explicit(&g_stats.f, (v), memory_order_relaxed)
#define STAT_SUB(f, v) atomic_fetch_sub_explicit(&g_stats.f, (v), memory_order_relaxed)
#define STAT_SET(f, v) atomic_store_explicit(&g_stats.f, (v), memory_order_relaxed)
#define STAT_GET(f) atomic_load_explicit(&g_stats.f, memory_order_relaxed)

struct buf;
/* Appends "group":{...} objects for every counter, comma-separated. */
int stats_append_json(struct buf *b);

#endif
