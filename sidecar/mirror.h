/* mirror.h - the store mirror: keeps the configured store (persist_ops) in step with the queue. */
#ifndef DLQ_SIDECAR_MIRROR_H
#define DLQ_SIDECAR_MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "common.h"
#include "dlq.h"

struct sc_daemon;

/*
 * mirror.c: mirrors the queue into the configured store (DESIGN section 11).
 * sc_mirror_changed() is called after every change of t (it bumps t->version,
 * which only grows); sc_mirror_removed() just before t is freed.
 * sc_mirror_forgotten() just before t is freed by dlq_machine_forget()
 * (its partition belongs to another instance now): its pending write is
 * dropped, no delete is written, and the answers held for it go as not
 * stored (a JetStream delivery is naked: the stream delivers it again, to
 * the partition's owner). Loop thread.
 */
void sc_mirror_changed(struct sc_daemon *d, struct dlq_task *t);
void sc_mirror_removed(struct sc_daemon *d, struct dlq_task *t);
void sc_mirror_forgotten(struct sc_daemon *d, struct dlq_task *t);

/*
 * sc_mirror_open() makes the configured store (store.backend) on d->base and,
 * for OpenSearch, installs the template and loads the non-terminal tasks
 * back onto the queue and the wheel, running the loop until that is done
 * (at most 2 min) or the store turns degraded (the load then goes on in the
 * background). Call it before the tick and NATS exist. Returns SC_OK, or
 * SC_EINVAL with err saying which store.* setting is bad (an unreachable
 * OpenSearch is not an error: degraded mode); a spill file left by the last
 * run (store.spill_dir) is replayed first. sc_mirror_flush() writes what
 * is pending at shutdown, running the loop for up to shutdown.drain_ms (at
 * least 2 s), then writes what is left to the spill file; when writes are
 * left neither stored nor spilled it logs their count and sets d->exit_code
 * to SC_EXIT_UNSTORED. sc_mirror_close() frees everything; safe when never opened.
 * Main thread, before and after the loop runs.
 */
#define SC_EXIT_UNSTORED 3 /* exit code: stopped with writes neither stored nor spilled */
struct sc_mirror_ack;
struct sc_js;
sc_status sc_mirror_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_mirror_flush(struct sc_daemon *d);
void sc_mirror_close(struct sc_daemon *d);

/*
 * sc_mirror_ack() answers the ingest request m for task t (NULL: nothing was
 * stored, e.g. a skipped failure). b holds the answer's JSON object without
 * its closing '}'; it is completed and answered here, b is then free for
 * reuse. With the memory store the answer goes now, without a "stored" key.
 * With a durable store it is held (copied) until the store acknowledges t's
 * current version and then says "stored":true; it goes with "stored":false
 * when the store is degraded, refuses the document for good, 5 s pass or the
 * process stops (with store.ack: durable a 503 instead), and when the task
 * is removed first (both modes: nothing is left to store). Loop thread.
 */
void sc_mirror_ack(struct sc_daemon *d, natsMsg *m, struct dlq_task *t, struct sc_buf *b);

/*
 * sc_mirror_js_ack() acknowledges a delivery of the JetStream source src
 * (the failure stream's or the advisories'; its acks and naks are counted
 * there, NULL: not counted) of task t's failure (ack_subject: its reply
 * subject, copied when held). With the memory store, or t NULL, +ACK at
 * once. With a durable store the ack is held until the store acknowledges
 * t's current version (+ACK), or naked with ingest.nak_delay_ms when it
 * cannot be (degraded, refused, 5 s, stopping: the stream delivers it
 * again); redelivered (a redelivery of what t holds) writes t again first,
 * so the ack waits for a write. Loop thread.
 */
void sc_mirror_js_ack(struct sc_daemon *d, struct sc_js *src, const char *ack_subject,
                      struct dlq_task *t, bool redelivered);

/*
 * Cluster mode (DESIGN section 18). sc_mirror_claim() asks the store to
 * take partition over (fence it, then load its tasks back onto the queue
 * and the wheel); fn(ctx, partition, ok) runs on the loop thread when that
 * is over (ok false: it failed and is tried again; fn comes again). One fn
 * serves every claim (the last one given). Returns SC_OK, or SC_EINVAL when
 * the store has no cluster mode. sc_mirror_release() gives partition up:
 * the store writes nothing of it any more. Loop thread.
 */
typedef void (*sc_mirror_claimed_fn)(void *ctx, unsigned partition, bool ok);
sc_status sc_mirror_claim(struct sc_daemon *d, unsigned partition, sc_mirror_claimed_fn fn,
                          void *ctx);
void sc_mirror_release(struct sc_daemon *d, unsigned partition);
/*
 * sc_mirror_partition_pending() counts the writes of partition p (of
 * partitions) not yet acknowledged: changed tasks waiting, and the items
 * of the batch in flight (answered or not: an upper bound). O(dirty).
 * Loop thread.
 */
size_t sc_mirror_partition_pending(struct sc_daemon *d, uint32_t p, uint32_t partitions);

/*
 * sc_mirror_refusal() is asked by ingest before it takes a failure sent as a
 * request: NULL to go on, or why it must be refused with 503 (store.ack:
 * durable and the store cannot take the write now: degraded, starting, or
 * too many answers already waiting); the refusal is counted. Loop thread.
 */
const char *sc_mirror_refusal(struct sc_daemon *d);

/*
 * sc_mirror_state() returns the store's state name ("ok", "starting",
 * "degraded") and sets *backend ("memory", "opensearch") and *queued_writes
 * (changed tasks not yet stored + pending deletes + items in flight).
 * sc_mirror_last_error() returns the store's last error (a static buffer
 * overwritten by the next call) or NULL. sc_mirror_stats_json() writes the
 * store's counters as members of w's open object (the stats reply's
 * persistence object). Loop thread.
 */
const char *sc_mirror_state(struct sc_daemon *d, const char **backend, uint64_t *queued_writes);
const char *sc_mirror_last_error(struct sc_daemon *d);
void sc_mirror_stats_json(struct sc_daemon *d, struct sc_jw *w);
/* sc_mirror_rejected() returns the task writes the store refused for good (0 without a store). Loop thread. */
uint64_t sc_mirror_rejected(struct sc_daemon *d);
/*
 * sc_mirror_answer_counts() sets *refused to the ingest requests answered 503
 * because the store could not take them (store.ack: durable) and *unstored
 * to those answered "stored":false (0 and 0 without a store). Loop thread.
 */
void sc_mirror_answer_counts(struct sc_daemon *d, uint64_t *refused, uint64_t *unstored);

#endif
