/* jetstream.h - durable ingest on JetStream (DESIGN section 16): the failure stream, the shared pull consumer, a fetch thread feeding the loop, and the ack/nak replies. */
#ifndef DLQ_SIDECAR_JETSTREAM_H
#define DLQ_SIDECAR_JETSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "config.h"
#include "conn.h"

/*
 * Who holds a failure published while JetStream mode runs:
 *  1. The server stores it in the stream (ingest.stream) and answers the
 *     publisher's request with a PubAck: from here the stream holds it,
 *     whether or not any sidecar runs.
 *  2. The fetch thread pulls a batch from the shared durable consumer: the
 *     server counts each message as delivered, not acknowledged (at most
 *     ingest.max_ack_pending of them). The thread hands each to the loop
 *     through the connection's ring (sc_conn_deliver()); the stream still
 *     holds it.
 *  3. The loop's handler (ingest.c) files it into the queue; then:
 *     memory store: +ACK at once (the stream lets it go);
 *     durable store: the ack is held by the store mirror until the store
 *     acknowledges the task's write, then +ACK; without that (degraded,
 *     refused, 5 s, shutdown) -NAK with ingest.nak_delay_ms.
 *     A full queue: -NAK with the delay, and fetching pauses for as long.
 *     An invalid envelope: republished to <prefix>.invalid.<service>, +ACK.
 *  4. A crash anywhere before the +ACK leaves the message in the stream:
 *     after ingest.ack_wait_ms it is delivered again (to any sidecar), and a
 *     redelivery of what a task already holds changes nothing (the task
 *     records the stream sequence, dlq_ingest()).
 */

struct sc_js; /* opaque: the JetStream source */

/* Counters of the source, read together (sc_js_get_stats()). */
struct sc_js_stats {
    bool ready;              /* the stream and consumer are set up and fetching runs */
    uint64_t fetched;        /* messages pulled from the consumer */
    uint64_t fetch_errors;   /* pull requests that failed (not counting "no messages") */
    uint64_t setup_errors;   /* failed attempts to set up the stream, consumer or subscription */
    uint64_t acks, naks;     /* +ACK and -NAK replies sent */
    uint64_t pauses;         /* times fetching paused for a full queue */
};

/*
 * sc_js_open() sets up the failure stream (cfg->ingest_stream over
 * "<prefix>.failed.>": created when missing with cfg's replicas, storage,
 * max age and bytes, work-queue retention; an existing one must cover the
 * subjects) and the durable pull consumer cfg->ingest_consumer (explicit
 * acks, ack wait, max_ack_pending, unlimited deliveries; created when
 * missing, an existing one must be a pull consumer with explicit acks), then
 * starts the fetch thread, which feeds messages to fn(ctx, msg) on the loop
 * thread through c. When NATS is not reachable yet the thread sets it all
 * up once it is. Returns SC_OK (*out owns the source), SC_EINVAL when the
 * existing stream or consumer does not fit (err says how: start-up must
 * stop), SC_EIO for a JetStream API failure on a reachable server (e.g.
 * JetStream not enabled). cfg and c are borrowed and must outlive the
 * source. Main thread, before the loop runs.
 */
sc_status sc_js_open(struct sc_conn *c, const struct config *cfg, sc_conn_handler fn, void *ctx,
                     struct sc_js **out, char *err, size_t errlen);

/*
 * sc_js_stop() asks the fetch thread to stop pulling (it ends within about
 * one second); messages already pulled and not yet acknowledged go back to
 * the stream after ingest.ack_wait_ms. Never blocks. Loop thread.
 * sc_js_close() stops and joins the thread and frees js; NULL is a no-op.
 * Call it before sc_conn_free(). Main thread, after the loop.
 */
void sc_js_stop(struct sc_js *js);
void sc_js_close(struct sc_js *js);

/*
 * sc_js_pause() stops fetching for ms milliseconds (a full queue: what was
 * not taken waits in the stream). Loop thread.
 */
void sc_js_pause(struct sc_js *js, int64_t ms);

/*
 * sc_js_ack() sends +ACK to a message's ack subject (its reply subject,
 * "$JS.ACK...."): the stream lets it go. sc_js_nak() sends -NAK with a
 * delay of delay_ms: the stream delivers it again after that. Both publish
 * through c and count on js (may be NULL). Loop thread.
 */
void sc_js_ack(struct sc_js *js, struct sc_conn *c, const char *ack_subject);
void sc_js_nak(struct sc_js *js, struct sc_conn *c, const char *ack_subject, int64_t delay_ms);

/* sc_js_get_stats() reads js's counters (all zero for NULL). Loop thread. */
struct sc_js_stats sc_js_get_stats(const struct sc_js *js);

/*
 * sc_js_subject_covers() tells whether the stream subject pattern s
 * matches every subject the pattern t matches (token by token: '>' covers
 * the rest, '*' one token). Any thread (pure).
 */
bool sc_js_subject_covers(const char *s, const char *t);

#endif
