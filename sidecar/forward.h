/* forward.h - cluster mode's ingest routing: a failure pulled by a member that does not own its partition goes to the owner, and its JetStream ack waits for the owner's answer. */
#ifndef DLQ_SIDECAR_FORWARD_H
#define DLQ_SIDECAR_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "common.h"

struct sc_daemon;
struct sc_forward; /* opaque: d->forward, NULL outside cluster mode */

/*
 * Who holds a failure pulled by a member that does not own its partition
 * (docs/cluster.md, "Ingest"):
 * 1. the stream (DLQ_FAILED) until the pulling member acks it; the message
 *    counts against max_ack_pending meanwhile;
 * 2. sc_forward_route() publishes a copy to <prefix>.cluster.part.<p> (queue
 *    group: one owner gets it) with a reply subject in this member's inbox
 *    and keeps the ack subject in a slot; nothing is acked yet;
 * 3. the owner takes it like a delivery of its own (ingest.c, sc_ingest_serve())
 *    and answers +ACK once its store holds the task (the same held ack as
 *    its own deliveries), or -NAK;
 * 4. this member relays the answer to the stream: +ACK lets it go, -NAK
 *    (or no owner subscribed, or no answer within the slot's deadline, or
 *    the member stopping) naks it with ingest.nak_delay_ms: it waits in
 *    the stream and is delivered again, during a takeover to the next owner.
 * A crash of either member at any step leaves the message unacked in the
 * stream: it comes back after ingest.ack_wait_ms.
 */

/*
 * sc_forward_open() sets up forwarding when d->cluster exists (else SC_OK,
 * nothing): the answers' subscription "<inbox>.fwd.*.*", the slots
 * (ingest.max_ack_pending of them) and the deadline sweep. Returns SC_OK,
 * or SC_EIO with err set. Main thread, after sc_conn_new(), before the loop.
 * sc_forward_close() naks what still waits and frees everything; NULL-safe.
 * Main thread, after the loop, before sc_conn_free().
 */
sc_status sc_forward_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_forward_close(struct sc_daemon *d);

/*
 * sc_forward_route() forwards m (a JetStream delivery of the failure
 * stream, already decoded and valid) of partition p to its owner, with its
 * stream sequence stream_seq and store time stream_time_ns (ns since the
 * epoch), and holds its ack as above. Returns true when
 * m was taken care of (forwarded, or naked when no slot is free). Loop thread.
 */
bool sc_forward_route(struct sc_daemon *d, natsMsg *m, uint32_t p, uint64_t stream_seq,
                      int64_t stream_time_ns);

/* What a forwarded failure carries beside the failure's own headers (ingest.c reads them). */
#define SC_FWD_QUEUE "dlq-owners"            /* the queue group of <prefix>.cluster.part.<p> */
#define SC_FWD_HDR_SUBJECT "Dlq-Fwd-Subject" /* the failure's own subject */
#define SC_FWD_HDR_SEQ "Dlq-Fwd-Seq"         /* its stream sequence */
#define SC_FWD_HDR_TIME "Dlq-Fwd-Time"       /* when the stream stored it, ns since the epoch */

/*
 * sc_forward_count_in() counts one forwarded failure that reached this
 * member as the owner: taken (refused false) or refused (the partition is
 * not served here). Loop thread.
 */
void sc_forward_count_in(struct sc_daemon *d, bool refused);

/* Counters of forwarding (all zero outside cluster mode). */
struct sc_forward_stats {
    uint64_t forwarded;    /* failures sent to their partition's owner */
    uint64_t relayed_acks; /* owners' +ACK relayed to the stream */
    uint64_t naked;        /* naked: the owner said -NAK, none was subscribed, no answer in time, no slot */
    uint64_t served;       /* forwarded failures this member took as owner */
    uint64_t refused;      /* forwarded failures refused here: the partition is not this member's */
    size_t waiting;        /* slots waiting for an owner's answer now */
};

/* sc_forward_get_stats() reads the counters. Loop thread. */
struct sc_forward_stats sc_forward_get_stats(const struct sc_daemon *d);

#endif
