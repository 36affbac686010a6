/* jetstream.h - JetStream sources (DESIGN section 16): a stream (the failures, or the captured advisories), its shared pull consumer, a fetch thread feeding the loop, and the ack/nak replies. */
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
 * What one source is: its stream (created when missing with these limits,
 * work-queue retention), the subjects the stream must capture, and the
 * durable pull consumer every sidecar shares (explicit acks). The strings
 * are copied by sc_js_open().
 */
struct sc_js_spec {
    const char *what;              /* "ingest" or "advisories": named in log lines */
    const char *stream;            /* the stream's name */
    const char *stream_key;        /* the config key naming it, for errors (static) */
    const char *const *subjects;   /* nsubjects (>= 1) subjects the stream must capture */
    size_t nsubjects;
    bool extend;                   /* an existing stream missing some gets them added (else SC_EINVAL) */
    /*
     * owned (static, may be NULL: the first subject) covers every subject
     * the stream may capture: an existing stream with any other subject is
     * someone else's (or would capture the sidecar's admin and retry
     * subjects), and is refused with SC_EINVAL rather than used or extended.
     */
    const char *owned;
    bool memory;                   /* memory storage (else file) for a stream created here */
    int64_t replicas, max_age_s, max_bytes; /* of a stream created here; 0 age/bytes: no limit */
    const char *replicas_key;      /* the config key of replicas, for errors (static; NULL: none) */
    const char *consumer;          /* the durable consumer's name */
    const char *consumer_key;      /* the config key naming it, for errors (static) */
    int64_t ack_wait_ms, max_ack_pending, fetch_batch;
    /*
     * prepare (may be NULL) runs on the fetch thread for each message
     * pulled, before it goes to the loop: it owns m and returns the message
     * to deliver (m itself, another one, or NULL: nothing, m dealt with).
     * It may make blocking JetStream calls through js (e.g. js_GetMsg()).
     */
    natsMsg *(*prepare)(void *pctx, jsCtx *js, natsMsg *m);
    void *pctx;
};

/*
 * sc_js_core_capture_warn() is for core-mode ingest: when JetStream on c
 * answers within wait_ms and some stream captures subject (the failure
 * subjects, e.g. "dlq.failed.>"), it logs a warning naming the streams: a
 * stream left from a JetStream-mode run answers the services' requests with
 * its PubAck (before the sidecar's ack) and keeps every failure it
 * captures. Returns how many streams capture subject (0 also when JetStream
 * does not answer: nothing to warn of). Main thread at start-up (blocks up
 * to wait_ms).
 */
int sc_js_core_capture_warn(struct sc_conn *c, const char *subject, int64_t wait_ms);

/*
 * sc_js_ingest_spec() fills spec with the failure source of cfg (ingest.*):
 * the stream over "<prefix>.failed.>" (written into subject, subject_len
 * bytes, >= 300; subjects[0] points at it) and its consumer. spec borrows
 * cfg's strings, subject and subjects. Any thread.
 */
void sc_js_ingest_spec(const struct config *cfg, char *subject, size_t subject_len,
                       const char **subjects, struct sc_js_spec *spec);

/*
 * sc_js_open() sets up the source spec describes: its stream (created when
 * missing; an existing one must cover the subjects, or with spec->extend
 * gets the missing ones added) and its durable pull consumer (explicit
 * acks, ack wait, max_ack_pending, unlimited deliveries; created when
 * missing, an existing one must be a pull consumer with explicit acks),
 * then starts the fetch thread, which feeds messages (through
 * spec->prepare when set) to fn(ctx, msg) on the loop thread through c.
 * When NATS is not reachable yet the thread sets it all up once it is.
 * Returns SC_OK (*out owns the source), SC_EINVAL when the existing stream
 * or consumer does not fit (err says how: start-up must stop), SC_EIO for a
 * JetStream API failure on a reachable server (e.g. JetStream not
 * enabled); a stream API call that times out, or a consumer that cannot be
 * made or bound yet (another sidecar of a cluster making them at the same
 * moment) is no error: the fetch thread tries again. spec is copied; c must outlive the source. Main thread, before
 * the loop runs.
 */
sc_status sc_js_open(struct sc_conn *c, const struct sc_js_spec *spec, sc_conn_handler fn,
                     void *ctx, struct sc_js **out, char *err, size_t errlen);

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
 * SC_JS_HDR_MADE_ANEW marks a message the source delivers itself, without
 * a reply subject, ahead of the first message of a stream it just made (or
 * found made anew): the stream's sequences started over. The header's value
 * is the stream's name. sc_js_made_anew() tells whether m is that marker (a
 * real delivery, which always has an ack subject, never is). Any thread.
 */
#define SC_JS_HDR_MADE_ANEW "Dlq-Stream-Made-Anew"
bool sc_js_made_anew(natsMsg *m);

/*
 * sc_js_subject_covers() tells whether the stream subject pattern s
 * matches every subject the pattern t matches (token by token: '>' covers
 * the rest, '*' one token). Any thread (pure).
 */
bool sc_js_subject_covers(const char *s, const char *t);

#endif
