/* conn.h - the sidecar's NATS transport: one connection (its I/O on nats.c's threads), subscriptions delivered to registered handlers on the loop, publish and respond. */
#ifndef DLQ_SIDECAR_CONN_H
#define DLQ_SIDECAR_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <nats/nats.h>

#include "common.h"
#include "config.h"

/*
 * The transport knows nothing of what it carries: the daemon (or any edge,
 * as micro.c) subscribes a subject with a handler and a context, and every
 * message of that subscription reaches the handler on the loop thread.
 * nats.c delivers on its own threads; conn.c hands each message over
 * through one bounded ring to the loop (DESIGN section 13). It calls
 * nothing of the sidecar above it (only log.h).
 */
struct sc_conn;     /* opaque: the connection, the hand-off ring, the subscriptions */
struct sc_conn_sub; /* opaque: one subscription, owned by its sc_conn */

/*
 * What a subscription delivers to: fn(ctx, msg) on the loop thread, once
 * per message, in arrival order within the subscription. msg is borrowed:
 * conn.c destroys it when fn returns (copy what must outlive it). fn may
 * publish, respond and subscribe, but must not free the connection.
 */
typedef void (*sc_conn_handler)(void *ctx, natsMsg *msg);

/* Called on the loop thread once a drained subscription's last message was delivered. */
typedef void (*sc_conn_drained_fn)(void *ctx);

/* Where a subscription's shutdown drain stands (sc_conn_sub_drain()). */
typedef enum {
    SC_CONN_DRAIN_NONE = 0, /* delivering */
    SC_CONN_DRAIN_RUNNING,  /* unsubscribed; nats.c still hands over what it had buffered */
    SC_CONN_DRAIN_DONE,     /* the loop delivered everything up to the end marker (or the drain failed) */
} sc_conn_drain_state;

/* Counters of the connection, read together. */
struct sc_conn_stats {
    bool connected;          /* the connection is up now */
    uint64_t reconnects;     /* reconnections after a loss */
    uint64_t disconnects;    /* losses of the connection */
    uint64_t published;      /* messages sc_conn_publish() handed to nats.c */
    uint64_t publish_errors; /* publishes nats.c refused */
};

/* sc_conn_global_init() makes libevent thread-safe (nats.c's threads wake the loop); call once, before event_base_new(). */
void sc_conn_global_init(void);

/*
 * sc_conn_new() connects to cfg's NATS servers (nats.* settings: URLs,
 * name, credentials, TLS, reconnect wait) with the socket I/O on base and
 * a hand-off ring of ring_cap messages. An unreachable server is no error:
 * nats.c keeps trying in the background. cfg is borrowed and must outlive
 * the connection. On SC_OK *out owns the connection; on SC_EINVAL (no URL)
 * or SC_EIO (a nats.c call failed) *out stays NULL and err says why.
 * Main thread, before the loop runs.
 */
sc_status sc_conn_new(struct event_base *base, const struct config *cfg, size_t ring_cap,
                      struct sc_conn **out, char *err, size_t errlen);

/*
 * sc_conn_free() closes the connection, waits (at most 5 s in all) for
 * nats.c's last callbacks (the closed callback, and every subscription's
 * completion: its delivery thread has left its callbacks, prep functions
 * included), destroys every subscription and the messages still in the
 * ring, and frees c. No handler or prep function runs afterwards. A
 * subscription whose completion did not come in time is logged (warn,
 * with its subject) and left allocated with the ring and c, so that a late
 * delivery thread touches no freed memory; the close goes on and never
 * hangs. NULL is a no-op. Main thread, after the loop stopped.
 */
void sc_conn_free(struct sc_conn *c);

/*
 * sc_conn_subscribe() subscribes subject (in queue group queue, or none
 * when NULL or "") and delivers its messages to fn(ctx, msg) on the loop
 * thread. max_pending (0: nats.c's default of 65,536 messages / 64 MiB)
 * raises the messages nats.c may buffer for it to max_pending and
 * 512 MiB. On SC_OK sets *out (may be NULL when not needed) to the
 * subscription, owned by c; SC_EIO with err set otherwise. Main or loop
 * thread.
 */
sc_status sc_conn_subscribe(struct sc_conn *c, const char *subject, const char *queue,
                            int max_pending, sc_conn_handler fn, void *ctx,
                            struct sc_conn_sub **out, char *err, size_t errlen);

/*
 * Work done for each message of a subscription on nats.c's delivery thread,
 * before the hand-off, so that the loop does less (the ingest subscription
 * decodes its envelopes there). fn(ctx, msg, slot) fills slot (slot_size
 * bytes, not zeroed; 8-byte aligned) from msg and must not touch anything
 * the loop owns: it runs on the delivery thread while the loop runs. The
 * handler finds the slot with sc_conn_prepared() while it handles msg; the
 * slot is reused after the handler returns. nslots slots exist: while all
 * are in use (the loop is nslots messages of this subscription behind) the
 * delivery thread waits, and the backlog stays in nats.c's pending buffer
 * as when the ring is full.
 */
typedef void (*sc_conn_prep_fn)(void *ctx, natsMsg *msg, void *slot);

/*
 * Optional: ahead(ctx, slot) runs on the loop for each filled slot of a
 * hand-off batch before the batch's handlers run, to prefetch what they
 * will touch (the ingest: its id table's slots). It must change nothing.
 */
typedef void (*sc_conn_ahead_fn)(void *ctx, const void *slot);

struct sc_conn_prep {
    sc_conn_prep_fn fn;
    void *ctx;        /* must outlive the connection (sc_conn_free()) */
    size_t slot_size; /* bytes of one slot */
    size_t nslots;    /* 1 .. 65,536 */
    sc_conn_ahead_fn ahead; /* NULL: none */
    void *ahead_ctx;
};

/*
 * sc_conn_subscribe_prepared() is sc_conn_subscribe() with prep run on the
 * delivery thread for each message (above). A prepared subscription is
 * freed only with c (sc_conn_sub_retire() drains it but keeps it). Main or
 * loop thread.
 */
sc_status sc_conn_subscribe_prepared(struct sc_conn *c, const char *subject, const char *queue,
                                     int max_pending, const struct sc_conn_prep *prep,
                                     sc_conn_handler fn, void *ctx, struct sc_conn_sub **out,
                                     char *err, size_t errlen);

/*
 * sc_conn_prepared() is the slot the prep function of the message being
 * handled filled (NULL when the handler runs for a message of a
 * subscription without one, or outside a handler). Loop thread.
 */
void *sc_conn_prepared(struct sc_conn *c);

/*
 * A channel is a subscription without a NATS subject: a thread of the
 * caller's (JetStream's fetch thread, jetstream.c) feeds it messages it got
 * from nats.c, and they reach fn(ctx, msg) on the loop thread through the
 * same ring, in order, with the same ownership as a subscription's.
 * sc_conn_channel_open() makes one (owned by c; never fails: aborts on
 * OOM). Main or loop thread. sc_conn_deliver() hands msg over, waiting
 * while the ring is full; it owns msg afterwards, and returns false (msg
 * destroyed) once the channel or the connection is closed. Any thread but
 * the loop's (it may wait for the loop). sc_conn_channel_close() makes
 * every present and later sc_conn_deliver() on s return false at once, so
 * that its feeding thread can be joined; messages already in the ring are
 * still delivered while the loop runs. Any thread.
 */
sc_status sc_conn_channel_open(struct sc_conn *c, sc_conn_handler fn, void *ctx,
                               struct sc_conn_sub **out);
bool sc_conn_deliver(struct sc_conn_sub *s, natsMsg *msg);
void sc_conn_channel_close(struct sc_conn_sub *s);

/*
 * sc_conn_nats() is c's nats.c connection (NULL for NULL), for the JetStream
 * API calls of jetstream.c (nats.c makes its calls thread-safe); c keeps
 * owning it. Any thread, while c lives.
 */
natsConnection *sc_conn_nats(struct sc_conn *c);

/*
 * sc_conn_sub_drain() stops s taking new messages without losing those
 * nats.c already buffered (shutdown): nats.c sends UNSUB, confirms it with
 * a flush on its own thread and keeps delivering what it holds; after the
 * last one an end marker goes through the ring, and when the loop reaches
 * it the drain is done and done(ctx) runs (done may be NULL). timeout_ms
 * bounds nats.c's own wait; keep it beyond the caller's deadline, as
 * nats.c frees uncounted what it holds on expiry. Never blocks; a no-op
 * when called again. Loop thread.
 * sc_conn_sub_drain_state() tells where the drain stands (NONE for NULL).
 * Loop thread.
 */
void sc_conn_sub_drain(struct sc_conn_sub *s, int64_t timeout_ms, sc_conn_drained_fn done,
                       void *ctx);
sc_conn_drain_state sc_conn_sub_drain_state(const struct sc_conn_sub *s);

/*
 * sc_conn_sub_retire() gives s up for good while the connection lives (a
 * partition's subscription in cluster mode): it drains s as
 * sc_conn_sub_drain() does, without a callback, and the connection frees
 * it once the drain is over (at a later sc_conn_subscribe(), or
 * sc_conn_free()). The caller must not touch s afterwards; s no longer
 * counts for sc_conn_subscribed(). NULL is a no-op. Loop thread.
 */
void sc_conn_sub_retire(struct sc_conn_sub *s, int64_t timeout_ms);

/*
 * sc_conn_sub_tally() sets *arrived to the messages nats.c received for s
 * (pending + delivered, read under the subscription's lock, or the
 * delivered count once it is gone) and *taken to those handed to its
 * handler. Their difference is what was lost at shutdown. Call once the
 * loop no longer runs (nothing new arrives then). Main thread.
 * sc_conn_sub_dropped() is the messages nats.c dropped for s past its
 * pending limits (slow consumer), 0 for NULL. Any thread.
 */
void sc_conn_sub_tally(struct sc_conn_sub *s, uint64_t *arrived, uint64_t *taken);
int64_t sc_conn_sub_dropped(struct sc_conn_sub *s);

/*
 * sc_conn_publish() publishes len bytes of body to subject, with an
 * optional reply subject and optional headers (NULL-terminated name/value
 * pairs; control characters in values become spaces, and a pair whose
 * name is not printable ASCII without space and ':' is left out). Returns SC_OK,
 * SC_ETOOBIG (over the server's max_payload) or SC_EIO (NULL c, or nats.c
 * refused), counting it in the stats. Body and headers are copied. Loop
 * thread.
 */
sc_status sc_conn_publish(struct sc_conn *c, const char *subject, const char *reply,
                          const void *body, size_t len, const char *const *headers);

/*
 * sc_conn_reply_ok() tells whether reply (a request's reply subject,
 * borrowed, NUL-terminated) may be answered: a valid literal subject that
 * is not this connection's inbox or below it (a forged worker outcome), not
 * a system subject ("$JS.API.…", "$KV.…", "$SRV.…": with JetStream rights
 * an answer there would be an API call), not the sidecar's own subjects
 * ("<subjects.prefix>" and below: failures, retries, events, admin) and not
 * a retry subject (retry.allowed_subjects: a bogus retry to the workers);
 * under a nats.inbox_prefix other than "_INBOX", only a member's question
 * ("<prefix>.<nuid>.adm.…" or ".fwd.…"), never another inbox of a member.
 * The server's allow_responses lets a responder publish to any reply
 * subject it was sent, so this check is the sidecar's own. False for NULL
 * or "". Any thread (reads only c's immutable fields).
 */
bool sc_conn_reply_ok(const struct sc_conn *c, const char *reply);

/*
 * sc_conn_respond() answers req's reply subject with len bytes of body
 * (sc_conn_respond_to(): the reply subject given, for an answer sent after
 * the request's message is gone); a
 * non-zero error_code sets the Nats-Service-Error(-Code) headers. No answer
 * goes to a reply subject sc_conn_reply_ok() refuses (missing, invalid, our
 * own inbox, a system or dlq subject); an answer over max_payload is
 * replaced by a small JSON error. Loop thread.
 */
void sc_conn_respond(struct sc_conn *c, natsMsg *req, const char *body, size_t len,
                     int error_code, const char *error_message);
void sc_conn_respond_to(struct sc_conn *c, const char *reply, const char *body, size_t len,
                        int error_code, const char *error_message);

/*
 * Reading the connection. sc_conn_connected() and sc_conn_epoch() (the
 * number of losses so far: a change means a message published before it
 * may be lost) are atomic reads: any thread; false / 0 for NULL.
 * sc_conn_get_stats() returns all counters (zero for NULL): loop thread.
 * sc_conn_inbox() is this connection's own inbox prefix
 * ("<nats.inbox_prefix>.<nuid>", at most CONFIG_INBOX_PREFIX_MAX + 23 bytes;
 * "" for NULL), for replies to what it sends. sc_conn_max_payload() is the
 * server's max_payload in bytes (0 before the first connect).
 * sc_conn_flushed() tells whether everything published so far has reached
 * the server: nats.c's buffer is empty and a round trip to the server sent
 * after the last publish came back (it sends one when needed, so call it
 * again from a timer until it says true); true when disconnected (nothing
 * more can leave then) or for NULL. Call it before closing at exit: nats.c
 * resets the socket on close, dropping what the kernel had not sent yet.
 * sc_conn_subscribed() tells whether c has subscriptions and every one is
 * live. Loop thread.
 */
bool sc_conn_connected(const struct sc_conn *c);
uint64_t sc_conn_epoch(const struct sc_conn *c);
struct sc_conn_stats sc_conn_get_stats(const struct sc_conn *c);
const char *sc_conn_inbox(const struct sc_conn *c);
int64_t sc_conn_max_payload(struct sc_conn *c);
bool sc_conn_flushed(struct sc_conn *c);
bool sc_conn_subscribed(const struct sc_conn *c);

#endif
