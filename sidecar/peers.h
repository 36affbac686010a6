/* peers.h - finds another sidecar serving this prefix outside cluster mode (service discovery), for health, stats, /readyz and /metrics. */
#ifndef DLQ_SIDECAR_PEERS_H
#define DLQ_SIDECAR_PEERS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct sc_daemon;

/*
 * Outside cluster mode one sidecar serves a prefix (DESIGN section 3): two
 * in one ingest queue group, or on one JetStream consumer, would each keep
 * a record of the same task and retry it twice. peers.c looks for such a
 * duplicate through service discovery (ADR-32, micro.c): every
 * SC_PEERS_PERIOD_MS, from the loop thread and without waiting, it
 * publishes $SRV.PING.dlq-sidecar with a reply subject of its own
 * connection's inbox, and each answer that comes back on the loop is
 * looked at: another id, the same subjects.prefix, and not both instances
 * in cluster mode make a duplicate. A duplicate stays listed until it has
 * not answered for SC_PEERS_HOLD_PERIODS periods. While one is listed the
 * sidecar logs an error naming it (when first seen, then at most once a
 * minute), health says "degraded", /readyz answers 503, and stats and
 * /metrics list or count it. Our own ping is not answered by ourselves
 * (sc_conn_respond() never answers into its own inbox), and an answer
 * carrying our own id is ignored too.
 */
#define SC_PEERS_PERIOD_MS 2000
#define SC_PEERS_HOLD_PERIODS 3
#define SC_PEERS_MAX 16 /* duplicates listed at most; more are counted in overflow */

/* Counters of discovery (for /metrics). */
struct sc_peers_stats {
    uint64_t pings;      /* $SRV.PING requests published */
    uint64_t answers;    /* answers from other dlq-sidecar instances, any prefix */
    uint64_t invalid;    /* answers that were not a dlq-sidecar ping response (or too big) */
    size_t duplicates;   /* instances listed as duplicates now */
};

/*
 * sc_peers_open() subscribes the answers' subject ("<inbox>.peers" on d's
 * connection) and arms the timer that pings at once and then every
 * SC_PEERS_PERIOD_MS (skipping a round while NATS is disconnected or the
 * daemon stops). Call
 * after sc_micro_open() (it needs this instance's id). Returns SC_OK or
 * SC_EIO with err (errlen bytes) set. Main thread, before the loop runs.
 * sc_peers_close() frees the state and its timer; call it after
 * sc_conn_free() (no answer can arrive then) and before the event base is
 * freed; safe when never opened.
 */
sc_status sc_peers_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_peers_close(struct sc_daemon *d);

/*
 * sc_peers_get_stats() returns the counters (zeros when not open).
 * sc_peers_json() writes key: a JSON array of the duplicates listed now,
 * each {"id","host","ingest_mode","since"} (host and ingest_mode as the
 * other instance reported them, "" when it did not; since: RFC 3339 of
 * when it was first seen), into w (an empty array when none or not open).
 * sc_peers_reason() is a sentence for /readyz naming the first duplicate,
 * written into out (outlen bytes), or "" when there is none; returns out.
 * Loop thread.
 */
struct sc_peers_stats sc_peers_get_stats(const struct sc_daemon *d);
void sc_peers_json(const struct sc_daemon *d, struct sc_jw *w, const char *key);
const char *sc_peers_reason(const struct sc_daemon *d, char *out, size_t outlen);

#endif
