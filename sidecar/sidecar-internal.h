/* sidecar-internal.h - declarations shared by the sidecar's files: the daemon state and its edges. */
#ifndef DLQ_SIDECAR_INTERNAL_H
#define DLQ_SIDECAR_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <nats/nats.h>

#include "codec.h"
#include "common.h"
#include "config.h"
#include "conn.h"
#include "jetstream.h"
#include "log.h"
#include "policy.h"
#include "dlq.h"
#include "sidecar.h"

/* ---- the daemon ------------------------------------------------------------------------------ */


/* Per-reason invalid counters (low cardinality: codec reasons plus a few). */
#define SC_MAX_REASONS 32
struct sc_reason_count {
    const char *reason; /* static */
    uint64_t count;
    int64_t last_log_mono;
};

/* A background redrive (admin retry of a filter at a rate). */
struct sc_redrive {
    bool active;
    double rate, tokens;
    int64_t last_mono;
    uint64_t scheduled;
    uint64_t next_seq, last_seq; /* walk position and the last seq at start */
    struct dlq_filter filter;
    char *subject;               /* owned copy of filter.subject */
    struct event *ev;
    uint64_t matched;            /* tasks that matched at the start */
    uint64_t skipped;            /* matched tasks that changed before their turn */
    int64_t started_wall, finished_wall; /* 0 when none */
    bool cancelled;
    char *resume_id;             /* owned: id of the next task to visit (fast resume), or NULL */
    size_t resume_len;
    uint64_t resume_seq;
};

struct sc_daemon {
    struct config *cfg;        /* borrowed from main, lives longer */
    struct event_base *base;
    struct sc_conn *conn;      /* the NATS transport (conn.h); NULL before sc_conn_new() */
    struct sc_conn_sub *sub_failed; /* the core ingest subscription (drained at shutdown); NULL in jetstream mode */
    struct sc_js *js;          /* the JetStream source (ingest.mode: jetstream); NULL in core mode */
    struct sc_adv *adv;        /* the advisory source (advisory.c); NULL when advisories.streams is empty */
    struct sc_micro *micro;    /* service discovery (micro.c); NULL before sc_micro_open() */
    struct codec *codec;
    struct policy_classifier *classifier;
    struct dlq_machine m;      /* the state machine: wheels, in-flight slots (dispatch.c fills its ports) */
    struct event *tick_ev;
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *drain_ev;
    struct sc_reason_count reasons[SC_MAX_REASONS];
    struct sc_lograte log_full, log_unknown; /* ingest.c: queue-full refusals, unknown envelope keys */
    uint64_t err_category[POLICY_CAT_COUNT];
    bool paused;               /* admin pause or retry_processor_enabled false */
    bool stopping;
    int64_t stop_deadline_mono;
    int64_t ingest_drain_started_mono;
    uint64_t ingest_received_at_stop; /* c.received when the drain started */
    int64_t started_mono, started_wall;
    struct sc_buf out;         /* reusable JSON output */
    struct sc_buf scratch;     /* reusable scratch */
    uint64_t rng;
    int exit_code;
    struct sc_redrive redrive;
    sc_reload_fn reload;       /* SIGHUP: builds a fresh configuration */
    void *reload_ctx;
    struct sc_metrics *metrics; /* histograms (metrics.c); NULL-safe */
    struct sc_http *http;       /* /healthz, /readyz, /metrics (http.c); NULL when disabled */
    struct sc_alerts *alerts;   /* threshold alerts and webhooks (alerts.c); NULL when disabled */
    struct sc_mirror *mirror;    /* the store mirror (mirror.c); NULL before sc_mirror_open() */
};

/* ---- the transport (conn.h; log.h is included above) ------------------------------------- */

/*
 * The transport (conn.h) for the files that publish as the daemon:
 * sc_publish() and sc_respond() are sc_conn_publish() and sc_conn_respond()
 * on d's connection (see there). Loop thread.
 */
static inline sc_status
sc_publish(struct sc_daemon *d, const char *subject, const char *reply, const void *body,
           size_t len, const char *const *headers)
{
    return sc_conn_publish(d->conn, subject, reply, body, len, headers);
}

static inline void
sc_respond(struct sc_daemon *d, natsMsg *req, const char *body, size_t len, int error_code,
           const char *error_message)
{
    sc_conn_respond(d->conn, req, body, len, error_code, error_message);
}

/*
 * ingest.c: the sources of failures (decode, invalid republish, answer);
 * the decision is dlq_ingest()'s. sc_ingest() takes a core-NATS message
 * (answering a request), sc_ingest_js() a JetStream delivery (acking or
 * naking it). Loop thread.
 */
void sc_ingest(struct sc_daemon *d, natsMsg *m);
void sc_ingest_js(struct sc_daemon *d, natsMsg *m);
/* Emits dlq.events.<kind> for t (t may be NULL with subject/error given). */
void sc_event(struct sc_daemon *d, const char *kind, const struct dlq_task *t, int32_t attempt,
              const char *error);

/*
 * dispatch.c: the machine's edges. sc_dispatch_init() sets up d->m over d->m.q
 * and d->c with the daemon's ports (publish on NATS, events, the store
 * mirror, log, metrics); sc_dispatch_destroy() frees it. sc_on_tick() runs
 * the machine's wheels each tick and ends the loop once a stop has drained.
 * sc_on_reply() reads a reply to a retry and hands its outcome to the
 * machine. Loop thread (init and destroy: main, outside the loop).
 */
void sc_dispatch_init(struct sc_daemon *d);
void sc_dispatch_destroy(struct sc_daemon *d);
void sc_on_tick(evutil_socket_t fd, short what, void *arg);
void sc_on_reply(struct sc_daemon *d, natsMsg *m);
/* What a reply to a retry is, as far as JetStream goes (DESIGN section 6). */
typedef enum { SC_JS_NOT = 0, SC_JS_PUBACK, SC_JS_ERROR } sc_js_reply_kind;

/* A JetStream API error's fields; desc borrows from the body (the raw JSON string bytes). */
struct sc_js_reply {
    int64_t code, err_code;
    const char *desc;
    size_t desc_len;
};

/*
 * sc_js_reply_classify() tells whether body (len bytes, any bytes, need not
 * be NUL-terminated) is the server's answer to a publish into a stream: a
 * PubAck {"stream":"..","seq":N,...} (SC_JS_PUBACK) or a JetStream API
 * error {"error":{"code":N,"err_code":N,"description":".."}} (SC_JS_ERROR,
 * *r filled), neither carrying the worker protocol's "ok" key; anything
 * else is SC_JS_NOT (then read as a worker's reply). Reads the bytes in
 * place, in one pass: no allocation. Any thread (pure).
 */
sc_js_reply_kind sc_js_reply_classify(const char *body, size_t len, struct sc_js_reply *r);

/*
 * sc_dispatch_reload() hands a reload (SIGHUP; d->cfg already changed in
 * place, d->classifier replaced) to the machine: see dlq_machine_reload().
 * Loop thread.
 */
void sc_dispatch_reload(struct sc_daemon *d, int64_t now_wall);


/*
 * mirror.c: mirrors the queue into the configured store (DESIGN section 11).
 * sc_mirror_changed() is called after every change of t (it bumps t->version,
 * which only grows); sc_mirror_removed() just before t is freed. Loop thread.
 */
void sc_mirror_changed(struct sc_daemon *d, struct dlq_task *t);
void sc_mirror_removed(struct sc_daemon *d, struct dlq_task *t);

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
 * sc_mirror_js_ack() acknowledges a JetStream delivery of task t's failure
 * (ack_subject: its reply subject, copied when held). With the memory store,
 * or t NULL, +ACK at once. With a durable store the ack is held until the
 * store acknowledges t's current version (+ACK), or naked with
 * ingest.nak_delay_ms when it cannot be (degraded, refused, 5 s, stopping:
 * the stream delivers it again); redelivered (a redelivery of what t holds)
 * writes t again first, so the ack waits for a write. Loop thread.
 */
void sc_mirror_js_ack(struct sc_daemon *d, const char *ack_subject, struct dlq_task *t,
                      bool redelivered);
/* sc_mirror_js_ack_src() is sc_mirror_js_ack() for the JetStream source src (counts its acks; may be NULL). */
void sc_mirror_js_ack_src(struct sc_daemon *d, struct sc_js *src, const char *ack_subject,
                          struct dlq_task *t, bool redelivered);

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

/* admin.c */
void sc_admin(struct sc_daemon *d, natsMsg *m);
void sc_admin_destroy(struct sc_daemon *d);
/* sc_admin_verb_count() is the number of admin verbs; sc_admin_verb_name(i) names verb i ("stats"), NULL past the end. Any thread. */
size_t sc_admin_verb_count(void);
const char *sc_admin_verb_name(size_t i);

/*
 * micro.c: NATS service discovery (ADR-32: $SRV.PING/INFO/STATS, also
 * .<name> and .<name>.<id>) for the admin API. sc_micro_open() makes this
 * process's id and subscribes on d's connection (after sc_conn_new()),
 * answering on the loop thread; endpoints names the n admin verbs it
 * reports (static strings, borrowed), in the order sc_micro_record()
 * numbers them. Returns SC_OK or SC_EIO with err set. Main thread.
 * sc_micro_close() frees the state; call it after sc_conn_free() (no
 * request can arrive then); safe when never opened. sc_micro_record() adds
 * one admin request of verb i (elapsed_ns of handling; error_message
 * non-NULL when it was answered with an error) to the endpoint statistics.
 * Loop thread.
 */
sc_status sc_micro_open(struct sc_daemon *d, const char *const *endpoints, size_t n, char *err,
                        size_t errlen);
void sc_micro_close(struct sc_daemon *d);
void sc_micro_record(struct sc_daemon *d, size_t verb, int64_t elapsed_ns, int error_code,
                     const char *error_message);

/* ---- operations: metrics.c, http.c, alerts.c -------------------------------------------------- */

/* Histograms that dispatch.c feeds (one line each). */
typedef enum {
    SC_HIST_RETRY_LATENESS = 0, /* a retry went out this long after its due time */
    SC_HIST_TIME_TO_SUCCESS,    /* first failure of the episode to the successful retry */
    SC_HIST_COUNT
} sc_hist;

/*
 * sc_metrics_new() makes the histogram set (aborts on OOM); sc_metrics_free()
 * frees it, NULL is a no-op. sc_metrics_observe() records ms milliseconds
 * (negative counts as 0) in histogram h; a no-op when d->metrics is NULL.
 * sc_metrics_render() appends the whole Prometheus text exposition (format
 * 0.0.4) of d to out, with the HTTP listener's counters http (borrowed;
 * the listener hands them over, so metrics.c never calls it). Loop thread.
 */
struct sc_http_stats;
struct sc_metrics *sc_metrics_new(void);
void sc_metrics_free(struct sc_metrics *m);
void sc_metrics_observe(struct sc_daemon *d, sc_hist h, int64_t ms);
void sc_metrics_render(struct sc_daemon *d, const struct sc_http_stats *http, struct sc_buf *out);

/*
 * sc_persistence_state() is the one place that reads the store's health for
 * /readyz and /metrics: returns the state name ("ok" while the store keeps
 * up; anything else, "degraded" for one, makes /readyz fail) and sets
 * *backend (static name) and *queued_writes. Loop thread.
 */
const char *sc_persistence_state(struct sc_daemon *d, const char **backend,
                                 uint64_t *queued_writes);

/*
 * sc_http_start() serves /healthz, /readyz and /metrics on d->base at
 * cfg->http_listen (no-op when it is empty): one request per connection,
 * at most cfg->http_max_connections open (fewer when RLIMIT_NOFILE leaves
 * less room above a reserve of fds for NATS and the store; more are closed
 * at once), each cut cfg->http_request_timeout_ms after accept (see http.c).
 * Returns SC_OK, or SC_EINVAL / SC_EIO with err saying why (address
 * unparsable or unresolvable, bind failed). sc_http_stop() closes the
 * listener and its connections; safe when not started. Loop thread (or main
 * thread before the loop runs).
 */
sc_status sc_http_start(struct sc_daemon *d, char *err, size_t errlen);
void sc_http_stop(struct sc_daemon *d);

/* What the HTTP listener counted since start (it passes them to sc_metrics_render()). */
struct sc_http_stats {
    size_t open;              /* connections open now */
    size_t max_connections;   /* the effective cap */
    uint64_t accepted;        /* sockets accepted, refused ones included */
    uint64_t requests;        /* complete request heads read */
    uint64_t refused_cap;     /* closed at accept: max_connections reached */
    uint64_t refused_fds;     /* closed at accept: too close to RLIMIT_NOFILE */
    uint64_t evicted;         /* closed before their head was read, to make room for a new one */
    uint64_t timed_out;       /* cut at http.request_timeout_ms */
    uint64_t too_large;       /* request heads over the size cap (431) */
    uint64_t accept_errors;   /* accept(2) failures (EMFILE ...): the listener paused */
};


/*
 * sc_alerts_start() starts the periodic threshold check when alerts.enabled
 * (no-op otherwise) and the webhook client when URLs are configured.
 * Returns SC_OK or SC_EIO (no HTTP client) with err set. sc_alerts_stop()
 * cancels pending webhook posts and frees everything; safe when not
 * started. sc_alerts_render() appends the alert metrics to out. Loop thread.
 */
sc_status sc_alerts_start(struct sc_daemon *d, char *err, size_t errlen);
void sc_alerts_stop(struct sc_daemon *d);
void sc_alerts_render(struct sc_daemon *d, struct sc_buf *out);

/* Random 64-bit value for jitter (xorshift on the loop thread). */
uint64_t sc_rand(void *ctx);

/* ---- advisories (advisory.c, DESIGN section 16) ---------------------------------------------- */

/* Counters of the advisory source (loop thread). */
struct sc_adv_stats {
    bool ready;            /* the capture stream and its consumer are set up and fetching runs */
    uint64_t received;     /* advisories the loop took */
    uint64_t invalid;      /* refused: malformed, forged, not of a listed stream, or unfileable */
    uint64_t fetch_errors; /* originals that could not be read (not "no such message"): filed missing */
    uint64_t filed;        /* advisories that stored a task (new, or a new failure of one) */
    uint64_t refused;      /* naked: the queue was full or the store did not take it */
};

/*
 * sc_adv_open() starts the advisory source when advisories.streams lists
 * streams (else does nothing and returns SC_OK): the capture stream
 * advisories.stream over the MAX_DELIVERIES and MSG_TERMINATED advisories
 * of each listed stream (created when missing, subjects added to an
 * existing one) and its durable consumer advisories.consumer, fetched on a
 * thread that reads each original by sequence; every advisory is filed on
 * the loop through dlq_ingest_foreign() and acked once its task is
 * accepted (advisory.c says who holds it when). Sets d->adv. Returns
 * SC_OK, SC_EINVAL (err: a consumer that does not fit, too many streams:
 * start-up stops) or SC_EIO (a JetStream API failure). Main thread,
 * before the loop runs. sc_adv_stop() stops fetching (loop thread, never
 * blocks); sc_adv_close() joins the thread and frees a (NULL: no-op; main
 * thread, after the loop, before sc_conn_free()).
 */
sc_status sc_adv_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_adv_stop(struct sc_adv *a);
void sc_adv_close(struct sc_adv *a);
/* sc_adv_get_stats() reads a's counters (all zero for NULL). Loop thread. */
struct sc_adv_stats sc_adv_get_stats(const struct sc_adv *a);
/*
 * sc_adv_jw_task() writes t's advisory fields into w's open object:
 * payload_raw, payload_missing, with a raw payload "task" as a string of
 * the original's bytes when they are UTF-8 without NUL (else "task": null
 * and "task_base64"), and "headers" ([[name, value], ...]) when t holds an
 * original's headers. Loop thread.
 */
void sc_adv_jw_task(struct sc_jw *w, const struct dlq_task *t);

#endif
