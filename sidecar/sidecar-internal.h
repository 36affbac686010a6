/* sidecar-internal.h - declarations shared by the sidecar's files: tasks, the queue, the daemon state. */
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
#include "policy.h"
#include "sidecar.h"
#include "wheel.h"

#define SC_CONTAINER_OF(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

/* ---- tasks and the queue (queue.c) ---------------------------------------------------------- */

/* Task states of DESIGN section 10; "parked" is pending with no next retry. */
typedef enum {
    SC_TASK_PENDING = 0,
    SC_TASK_RETRYING,
    SC_TASK_EXHAUSTED,
    SC_TASK_COMPLETED,
    SC_TASK_ARCHIVED,
    SC_TASK_STATUS_COUNT
} sc_task_status;

/* What a history entry records. */
typedef enum {
    SC_OUT_FAILED = 0, /* a failure envelope arrived (an episode's first failure, or a repeat) */
    SC_OUT_RETRY_FAILED,
    SC_OUT_TIMEOUT,
    SC_OUT_SUCCEEDED,
    SC_OUT_DEFERRED,
    SC_OUT_REFUSED, /* the retry subject was refused: parked */
    SC_OUT_EXHAUSTED,
    SC_OUT_MANUAL, /* an operator scheduled a retry */
    SC_OUT_ARCHIVED,
} sc_outcome_kind;

const char *sc_task_status_name(sc_task_status s);
const char *sc_outcome_name(sc_outcome_kind k);

/* One bounded-history entry. error (may be NULL) is a reference into the queue's string pool. */
struct sc_attempt {
    int64_t at_ms; /* wall */
    int32_t attempt;
    uint8_t outcome; /* sc_outcome_kind */
    const char *error;
};

/*
 * Bits of sc_task.pooled: which string fields point into the queue's pool of
 * shared, reference-counted strings (sc_task_set_str()) rather than at their
 * own malloc'd copy (a field assigned directly, as the store's loader does).
 */
#define SC_TS_SUBJECT 0x01u
#define SC_TS_RETRY_SUBJECT 0x02u
#define SC_TS_ERROR 0x04u
#define SC_TS_ERROR_TYPE 0x08u
#define SC_TS_RULE 0x10u

/*
 * One dead-lettered task. Owned by the queue. The task, its id and (when it
 * fits the room reserved at sc_queue_add_room()) its payload are one
 * allocation; subject, retry_subject, error, error_type and rule_id are
 * pooled (see pooled) or owned; every other pointer field is owned by the
 * task. Times are wall-clock ms since the epoch, 0 meaning "none". The
 * wheel entry serves two purposes: while pending it is the due time of the
 * next attempt, while retrying the reply timeout. category, policy, status
 * and parked feed the queue's counts: change them only through
 * sc_queue_set_status() and sc_queue_set_class().
 */
struct sc_task {
    struct sc_wheel_entry timer;
    struct sc_task *hnext;              /* hash chain */
    struct sc_task *onext, *oprev;      /* all tasks in seq order */
    uint64_t seq;                       /* unique, grows: list order and cursors */
    uint64_t version;                   /* grows on every change (external versioning) */
    char *id;                           /* in the task's own allocation, NUL-terminated */
    char *payload;                      /* the task's MessagePack bytes (in the task when they fit) */
    uint32_t id_len;
    uint32_t hash;
    uint32_t payload_len;
    uint32_t payload_room;              /* bytes reserved for the payload after the id */
    char *subject;                      /* the failure subject */
    char *retry_subject;                /* NULL when refused (then parked) */
    char *error;
    char *error_type;                   /* NULL when absent */
    char *rule_id;                      /* classifier rule, or "envelope" */
    char *park_reason;                  /* why parked beyond policy never; NULL otherwise */
    char *metadata;                     /* MessagePack map bytes or NULL */
    size_t metadata_len;
    char *repos;                        /* MessagePack array bytes or NULL */
    size_t repos_len;
    uint32_t bytes;                     /* counted against max_bytes */
    uint8_t category;                   /* policy_category */
    uint8_t policy;                     /* policy_retry */
    uint8_t status;                     /* sc_task_status */
    uint8_t pooled;                     /* SC_TS_* bits */
    bool policy_override;               /* the envelope chose the policy */
    bool parked;                        /* pending with no automatic retry */
    bool store_dirty;                   /* store.c: on the dirty list */
    int32_t max_retries;
    int32_t retry_count;                /* attempts that ended in failure or timeout */
    int32_t defer_streak;               /* no-responders deferrals in a row */
    int32_t episode;                    /* 1 + times reopened after completed/archived */
    uint32_t flight_slot;               /* in-flight table slot + 1, 0 when not in flight */
    int64_t created_at, updated_at, last_attempt_at, next_retry_at, first_failed_at;
    struct sc_attempt *hist;            /* ring of hist_alloc entries, grown 1, 2, 4 ... to the cap */
    uint16_t hist_len, hist_head, hist_alloc;
    struct sc_task *dnext, *dprev;      /* store.c: the dirty list (changes not yet stored) */
    struct sc_store_ack *store_acks;    /* store.c: ingest acks waiting for this task's write */
};

/* Filter of DESIGN section 8 (any field unset matches everything). */
struct sc_filter {
    int status;          /* -1 any, else sc_task_status; parked handled by want_parked */
    int want_parked;     /* -1 any, 0 not parked, 1 parked only */
    int category;        /* -1 any */
    const char *subject; /* NULL any; exact failure subject or a pattern with wildcards */
    int64_t older_than_ms; /* 0 any; created_at <= now - older_than_ms */
};

bool sc_filter_match(const struct sc_filter *f, const struct sc_task *t, int64_t now_wall);

/* One string of the queue's pool (queue.c): shared by every task field that holds the same bytes. */
struct sc_pstr;

struct sc_queue {
    struct sc_task **buckets;
    size_t nbuckets;
    size_t count;                       /* every record held */
    size_t counts[SC_TASK_STATUS_COUNT];
    size_t parked;
    size_t by_status_cat[SC_TASK_STATUS_COUNT][POLICY_CAT_COUNT]; /* parked included in pending */
    size_t parked_cat[POLICY_CAT_COUNT];
    size_t active_policy[POLICY_RETRY_COUNT]; /* active tasks (sc_queue_active()) per policy */
    size_t bytes;                       /* sum of the tasks' bytes */
    struct sc_task *head, *tail;        /* seq order */
    uint64_t next_seq;
    size_t hist_cap;
    struct sc_pstr **pool;              /* the string pool: a chained hash of nstr strings */
    size_t npool, nstr;
};

void sc_queue_init(struct sc_queue *q, size_t hist_cap);
/* Frees every task. */
void sc_queue_destroy(struct sc_queue *q);
struct sc_task *sc_queue_find(struct sc_queue *q, const char *id, size_t len);
/*
 * sc_queue_add_room() creates and links a new pending task (category 0,
 * policy 0) with a copy of id, reserving room bytes in the same allocation
 * for the payload (sc_task_set_payload()); sc_queue_add() reserves none.
 * Never fail (abort on OOM). Loop thread.
 */
struct sc_task *sc_queue_add_room(struct sc_queue *q, const char *id, size_t len, size_t room,
                                  int64_t now_wall);
struct sc_task *sc_queue_add(struct sc_queue *q, const char *id, size_t len, int64_t now_wall);
/* Unlinks and frees t (the caller cancels its timer first). */
void sc_queue_remove(struct sc_queue *q, struct sc_task *t);
/* Moves t to status s, keeping the counts right. */
void sc_queue_set_status(struct sc_queue *q, struct sc_task *t, sc_task_status s, bool parked);
/* sc_queue_set_class() sets t's category and policy, keeping the per-category and per-policy counts right. */
void sc_queue_set_class(struct sc_queue *q, struct sc_task *t, policy_category c, policy_retry p);
/*
 * sc_queue_filter_count() sets *n to the number of tasks matching f from the
 * counts, O(1), and returns true, when f tests only status, parked and
 * category; false (n untouched) when it needs a walk (subject, older_than).
 */
bool sc_queue_filter_count(const struct sc_queue *q, const struct sc_filter *f, size_t *n);
/* sc_queue_active_category() is the number of active tasks of category c (O(1)). */
size_t sc_queue_active_category(const struct sc_queue *q, policy_category c);
/*
 * Records one history entry (error, len bytes, may be NULL: taken from the
 * string pool), evicting the oldest past the cap; the ring grows 1, 2, 4 ...
 * entries up to the cap.
 */
void sc_queue_history(struct sc_queue *q, struct sc_task *t, sc_outcome_kind k, int32_t attempt,
                      int64_t at, const char *error, size_t error_len);
/* Active tasks: the ones that count against max_size (pending, retrying, exhausted). */
size_t sc_queue_active(const struct sc_queue *q);
/*
 * sc_task_set_str() sets the string field of t that which (one SC_TS_* bit)
 * names to the len bytes at p (NULL: no value), shared through the queue's
 * string pool; error and error_type are text (NUL bytes become spaces).
 * The old value is released. Never fails (aborts on OOM). Loop thread.
 */
void sc_task_set_str(struct sc_queue *q, struct sc_task *t, unsigned which, const char *p,
                     size_t len);
/*
 * sc_task_set_payload() sets t's payload to a copy of the len bytes at p,
 * in the task's own allocation when they fit its room. Loop thread.
 */
void sc_task_set_payload(struct sc_task *t, const char *p, size_t len);
/* sc_task_account() recomputes t->bytes from its fields and keeps q->bytes in step. */
void sc_task_account(struct sc_queue *q, struct sc_task *t);
/* Replaces *field with a copy of len bytes at p (NULL p stores NULL). */
void sc_set_str(char **field, const char *p, size_t len);
/* sc_set_text() is sc_set_str() for text: NUL bytes become spaces, so C string functions see it all. */
void sc_set_text(char **field, const char *p, size_t len);

/* ---- the daemon ------------------------------------------------------------------------------ */

/* Lifetime counters (DESIGN section 8's lifetime_stats plus a few). Loop thread only. */
struct sc_counters {
    uint64_t enqueued, retry_success, retry_failed, retry_timeouts, deferred, exhausted,
        manual_retries, archived, cleared, invalid, refused_full, skipped, published,
        publish_errors, unknown_keys, failures_while_retrying, duplicates, attempts;
    uint64_t received; /* failure messages taken from the ingest subject, valid or not */
};

/* Kinds of message handed from nats.c threads to the loop. */
typedef enum { SC_IN_FAILED = 0, SC_IN_REPLY, SC_IN_ADMIN, SC_IN_MICRO } sc_in_kind;

struct sc_inmsg {
    natsMsg *msg;
    sc_in_kind kind;
};

/* A bounded hand-off ring: nats.c threads push, the loop pops. */
struct sc_handoff {
    pthread_mutex_t mu;
    pthread_cond_t notfull;
    struct sc_inmsg *items;
    size_t cap, head, len;
    bool wake_pending;
    bool closed;
    struct event *wake;
};

/* One outstanding retry: slot i of the in-flight table. */
struct sc_flight {
    struct sc_task *task; /* NULL when free */
    uint64_t token;       /* random per attempt: a reply must carry it (no forged or stale replies) */
    uint32_t next_free;   /* free-list link (index + 1), 0 = end */
    int32_t attempt;
    int64_t sent_mono;
    uint64_t epoch;       /* d->disconnects when sent: a change means the retry may be lost */
};

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
    struct sc_filter filter;
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
    natsConnection *nc;
    natsSubscription *sub_failed, *sub_reply, *sub_admin;
    struct sc_micro *micro;    /* service discovery (micro.c); NULL before sc_micro_open() */
    char reply_prefix[64];     /* "_INBOX.<nuid>" */
    struct sc_handoff in;
    struct codec *codec;
    struct policy_classifier *classifier;
    struct sc_queue q;
    struct sc_wheel *wheel;    /* due times of pending tasks (rate-limited) */
    struct sc_wheel *twheel;   /* reply timeouts of retrying tasks */
    size_t inflight;           /* outstanding retries */
    struct event *tick_ev;
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *drain_ev;
    struct sc_flight *flights;
    uint32_t flights_cap, flights_used, free_head;
    double tokens;             /* rate limiter (retries per second) */
    int64_t last_tick_mono;
    struct sc_counters c;
    struct sc_reason_count reasons[SC_MAX_REASONS];
    uint64_t err_category[POLICY_CAT_COUNT];
    bool paused;               /* admin pause or retry_processor_enabled false */
    bool stopping;
    int64_t stop_deadline_mono;
    int64_t started_mono, started_wall;
    uint64_t reconnects;
    volatile int nats_connected; /* written on nats.c threads: use __atomic */
    uint64_t disconnects;        /* written on nats.c threads: use __atomic */
    volatile int nats_closed;    /* set by the closed callback: use __atomic */
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
    struct sc_store *store;     /* the store mirror (store.c); NULL before sc_store_open() */
};

/* log.c: one line per call to stderr, logfmt or JSON. kv is NULL-terminated pairs of strings. */
typedef enum { SC_LOG_DEBUG = 0, SC_LOG_INFO, SC_LOG_WARN, SC_LOG_ERROR } sc_log_level;
void sc_log_setup(config_log_level level, config_log_format format);
bool sc_log_enabled(sc_log_level level);
void sc_log(sc_log_level level, const char *msg, ...);
/* sc_logv-style helper: formats a number into a static per-call buffer slot (up to 8 per line). */
const char *sc_log_int(int64_t v);

/* conn.c: NATS connection on the loop, subscriptions, the hand-off. */
/* sc_conn_global_init() prepares libevent for nats.c's threads; call before event_base_new(). */
void sc_conn_global_init(void);
sc_status sc_conn_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_conn_close(struct sc_daemon *d);
sc_status sc_handoff_init(struct sc_daemon *d, size_t cap);
void sc_handoff_destroy(struct sc_daemon *d);
/* sc_conn_unsubscribe_ingest() stops taking failures (shutdown). */
void sc_conn_unsubscribe_ingest(struct sc_daemon *d);
/* sc_publish() publishes body with optional headers (NULL-terminated name/value pairs) and reply. */
sc_status sc_publish(struct sc_daemon *d, const char *subject, const char *reply, const void *body,
                     size_t len, const char *const *headers);
/* sc_respond() answers a request's reply subject; error responses set the service-error headers. */
void sc_respond(struct sc_daemon *d, natsMsg *req, const char *body, size_t len, int error_code,
                const char *error_message);

/* ingest.c */
void sc_ingest(struct sc_daemon *d, natsMsg *m);
/* Emits dlq.events.<kind> for t (t may be NULL with subject/error given). */
void sc_event(struct sc_daemon *d, const char *kind, const struct sc_task *t, int32_t attempt,
              const char *error);
/* Classifies and sets the policy of t from its error fields; keeps an envelope override. */
void sc_task_classify(struct sc_daemon *d, struct sc_task *t);

/* dispatch.c */
void sc_dispatch_init(struct sc_daemon *d);
void sc_dispatch_destroy(struct sc_daemon *d);
void sc_on_tick(evutil_socket_t fd, short what, void *arg);
void sc_on_reply(struct sc_daemon *d, natsMsg *m);
/* Schedules attempt retry_count+1 by the policy, or parks/exhausts. Loop thread. */
void sc_schedule_next(struct sc_daemon *d, struct sc_task *t, int64_t now_wall);
/* A failure of the in-flight attempt (error reply, timeout, or a failure envelope while retrying). */
void sc_attempt_failed(struct sc_daemon *d, struct sc_task *t, sc_outcome_kind kind,
                       const char *error, size_t error_len);
/* Drops t's in-flight slot (late replies are then ignored). */
void sc_flight_release(struct sc_daemon *d, struct sc_task *t);
/* Removes t (cancelling its timer and flight) and frees it. */
void sc_task_drop(struct sc_daemon *d, struct sc_task *t);
/* Schedules t now (manual retry). Returns SC_ECONFLICT when t has no usable retry subject. */
sc_status sc_retry_now(struct sc_daemon *d, struct sc_task *t, int64_t now_wall);

/*
 * store.c: mirrors the queue into the configured store (DESIGN section 11).
 * sc_store_changed() is called after every change of t (it bumps t->version,
 * which only grows); sc_store_removed() just before t is freed. Loop thread.
 */
void sc_store_changed(struct sc_daemon *d, struct sc_task *t);
void sc_store_removed(struct sc_daemon *d, struct sc_task *t);

/*
 * sc_store_open() makes the configured store (store.backend) on d->base and,
 * for OpenSearch, installs the template and loads the non-terminal tasks
 * back onto the queue and the wheel, running the loop until that is done
 * (at most 2 min) or the store turns degraded (the load then goes on in the
 * background). Call it before the tick and NATS exist. Returns SC_OK, or
 * SC_EINVAL with err saying which store.* setting is bad (an unreachable
 * OpenSearch is not an error: degraded mode); a spill file left by the last
 * run (store.spill_dir) is replayed first. sc_store_flush() writes what
 * is pending at shutdown, running the loop for up to shutdown.drain_ms (at
 * least 2 s), then writes what is left to the spill file; when writes are
 * left neither stored nor spilled it logs their count and sets d->exit_code
 * to SC_EXIT_UNSTORED. sc_store_close() frees everything; safe when never opened.
 * Main thread, before and after the loop runs.
 */
#define SC_EXIT_UNSTORED 3 /* exit code: stopped with writes neither stored nor spilled */
struct sc_store_ack;
sc_status sc_store_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_store_flush(struct sc_daemon *d);
void sc_store_close(struct sc_daemon *d);

/*
 * sc_store_ack() answers the ingest request m for task t (NULL: nothing was
 * stored, e.g. a skipped failure). b holds the answer's JSON object without
 * its closing '}'; it is completed and answered here, b is then free for
 * reuse. With the memory store the answer goes now, without a "stored" key.
 * With a durable store it is held (copied) until the store acknowledges t's
 * current version and then says "stored":true; it goes with "stored":false
 * when the store is degraded, refuses the document for good, 5 s pass or the
 * process stops (with store.ack: durable a 503 instead), and when the task
 * is removed first (both modes: nothing is left to store). Loop thread.
 */
void sc_store_ack(struct sc_daemon *d, natsMsg *m, struct sc_task *t, struct sc_buf *b);

/*
 * sc_store_refusal() is asked by ingest before it takes a failure sent as a
 * request: NULL to go on, or why it must be refused with 503 (store.ack:
 * durable and the store cannot take the write now: degraded, starting, or
 * too many answers already waiting); the refusal is counted. Loop thread.
 */
const char *sc_store_refusal(struct sc_daemon *d);

/*
 * sc_store_state() returns the store's state name ("ok", "starting",
 * "degraded") and sets *backend ("memory", "opensearch") and *queued_writes
 * (changed tasks not yet stored + pending deletes + items in flight).
 * sc_store_last_error() returns the store's last error (a static buffer
 * overwritten by the next call) or NULL. sc_store_stats_json() appends the
 * store's counters as ",\"key\":value" pairs for the stats reply's
 * persistence object. Loop thread.
 */
const char *sc_store_state(struct sc_daemon *d, const char **backend, uint64_t *queued_writes);
const char *sc_store_last_error(struct sc_daemon *d);
void sc_store_stats_json(struct sc_daemon *d, struct sc_buf *b);

/* admin.c */
void sc_admin(struct sc_daemon *d, natsMsg *m);
void sc_admin_destroy(struct sc_daemon *d);
/* sc_admin_verb_count() is the number of admin verbs; sc_admin_verb_name(i) names verb i ("stats"), NULL past the end. Any thread. */
size_t sc_admin_verb_count(void);
const char *sc_admin_verb_name(size_t i);

/*
 * micro.c: NATS service discovery (ADR-32: $SRV.PING/INFO/STATS, also
 * .<name> and .<name>.<id>). sc_micro_open() makes this process's id and
 * subscribes with cb (conn.c's hand-off), main thread, after the connection
 * exists; returns the first failing nats.c status. sc_micro_close() destroys
 * the subscriptions (after the connection closed) and frees the state; safe
 * when never opened. sc_micro() answers one request and sc_micro_record()
 * adds one admin request of verb i (elapsed_ns of handling; error_message
 * non-NULL when it was answered with an error) to the endpoint statistics:
 * loop thread only.
 */
natsStatus sc_micro_open(struct sc_daemon *d, natsMsgHandler cb);
void sc_micro_close(struct sc_daemon *d);
void sc_micro(struct sc_daemon *d, natsMsg *m);
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
 * 0.0.4) of d to out. Loop thread.
 */
struct sc_metrics *sc_metrics_new(void);
void sc_metrics_free(struct sc_metrics *m);
void sc_metrics_observe(struct sc_daemon *d, sc_hist h, int64_t ms);
void sc_metrics_render(struct sc_daemon *d, struct sc_buf *out);

/*
 * sc_persistence_state() is the one place that reads the store's health for
 * /readyz and /metrics: returns the state name ("ok" while the store keeps
 * up; anything else, "degraded" for one, makes /readyz fail) and sets
 * *backend (static name) and *queued_writes. Loop thread.
 */
const char *sc_persistence_state(struct sc_daemon *d, const char **backend,
                                 uint64_t *queued_writes);

/*
 * sc_http_start() serves /healthz, /readyz and /metrics with evhttp on
 * d->base at cfg->http_listen (no-op when it is empty). Returns SC_OK, or
 * SC_EINVAL / SC_EIO with err saying why (address unparsable, bind failed).
 * sc_http_stop() closes the listener and its connections; safe when not
 * started. Loop thread (or main thread before the loop runs).
 */
sc_status sc_http_start(struct sc_daemon *d, char *err, size_t errlen);
void sc_http_stop(struct sc_daemon *d);

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

#endif
