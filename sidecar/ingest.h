/* ingest.h - the core-NATS source of failures, as the daemon subscribes it. */
#ifndef DLQ_SIDECAR_INGEST_H
#define DLQ_SIDECAR_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "codec.h"
#include "common.h"

struct sc_daemon;
struct sc_js;

/*
 * The sources of failures (decode, invalid republish, answer); the decision
 * is dlq_ingest()'s. sc_ingest() takes a core-NATS message (answering a
 * request), sc_ingest_js() a JetStream delivery (acking or naking it:
 * jetstream.h says who holds the failure when). Loop thread.
 */
void sc_ingest(struct sc_daemon *d, natsMsg *m);
void sc_ingest_js(struct sc_daemon *d, natsMsg *m);

/*
 * The core ingest subscription's work on nats.c's delivery thread (conn.h,
 * struct sc_conn_prep): sc_ingest_prepare(codec, m, slot) checks m's subject
 * and decodes its envelope with codec (a struct codec used by that thread
 * only) into slot, a struct sc_ingest_prepared, and sc_ingest() then skips
 * both on the loop. ready is false when the loop must do it all itself: an
 * invalid subject or envelope (refused on the loop, with its counts, logs
 * and answer), JSON input and a truncated error text (both point into
 * codec's buffers, which the next message reuses). It also works out the
 * task id's hash in the id table (dlq_queue_id_hash(): the loop neither
 * hashes it nor waits on the table's cache miss: sc_ingest_ahead()).
 * Delivery thread; touches nothing but m, codec and slot.
 */
struct sc_ingest_prepared {
    bool ready;
    uint32_t id_hash;          /* when ready: dlq_queue_id_hash() of env.task_id */
    struct codec_envelope env; /* when ready: points into m's data only */
};

void sc_ingest_prepare(void *codec, natsMsg *m, void *slot);

/*
 * sc_ingest_ahead(d, slot) is the loop's look ahead at a prepared slot
 * before its batch is handled (conn.h, sc_conn_ahead_fn): it prefetches the
 * id table's home slot of the task id (dlq_queue_prefetch()), so that the
 * cache misses of a batch's new ids overlap instead of stalling one by one.
 * Changes nothing. Loop thread.
 */
void sc_ingest_ahead(void *d, const void *slot);

/*
 * sc_ingest_delivery() takes one JetStream delivery of a failure: m's body
 * and headers, the failure's subject, its stream sequence, the time the
 * stream stored it (ns since the epoch, 0 unknown), and the subject
 * its answer goes to (ack: "+ACK" once it is accepted, "-NAK ..." when it
 * cannot be now), counted on src (NULL: not counted). sc_ingest_js() calls
 * it for the stream's own deliveries (and, in cluster mode, forwards a
 * failure of a partition this member does not own: forward.h); forward.c
 * for the failures forwarded to this member as the owner. Loop thread.
 */
void sc_ingest_delivery(struct sc_daemon *d, natsMsg *m, const char *subject, uint64_t stream_seq,
                        int64_t stream_time_ns, const char *ack, struct sc_js *src);

/*
 * Cluster mode: sc_ingest_serve() subscribes <prefix>.cluster.part.<p>
 * (queue group SC_FWD_QUEUE): failures of p forwarded by other members
 * (forward.h) are taken here like deliveries of this member's own, and
 * answered to the forwarder. sc_ingest_unserve() drains that subscription
 * (what it buffered is still answered: -NAK, p is not served here any
 * more). Returns SC_OK, SC_EINVAL (no cluster mode or p out of range) or
 * SC_EIO with err set. Loop thread.
 */
sc_status sc_ingest_serve(struct sc_daemon *d, uint32_t p, char *err, size_t errlen);
void sc_ingest_unserve(struct sc_daemon *d, uint32_t p);

#endif
