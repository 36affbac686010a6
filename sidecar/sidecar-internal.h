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
#include "conn.h"
#include "log.h"
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
    bool max_retries_own;               /* max_retries came from an envelope or an operator, not
                                           default_max_retries (which a SIGHUP may change) */
    bool parked;                        /* pending with no automatic retry */
    bool store_dirty;                   /* store.c: on the dirty list */
    int32_t max_retries;
    int32_t retry_count;                /* attempts that ended in failure or timeout */
    int32_t defer_streak;               /* no-responders deferrals in a row */
    int32_t episode;                    /* 1 + times reopened after completed/archived */
    int64_t episode_id;                 /* the episode's start, us since the epoch, unique and
                                           growing within the process (sc_queue_new_episode());
                                           stored, so Nats-Msg-Id survives a restart */
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
    int64_t last_episode_id;            /* the largest episode id issued or loaded */
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
/*
 * sc_queue_new_episode() gives t a new episode id (DESIGN section 5): the
 * episode's start now_wall (ms) in microseconds, raised to one more than
 * the last id issued or seen when the clock has not moved on, so that no
 * two episodes of this process share an id, even of a task id whose old
 * record was removed. sc_queue_add_room() calls it for every new task.
 * sc_queue_episode_seen() records an id loaded from the store, so that
 * later ids are larger. Loop thread.
 */
void sc_queue_new_episode(struct sc_queue *q, struct sc_task *t, int64_t now_wall);
void sc_queue_episode_seen(struct sc_queue *q, int64_t episode_id);
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
        manual_retries, archived, cleared, invalid, refused_full, skipped, unknown_keys,
        failures_while_retrying, duplicates, attempts;
    uint64_t received; /* failure messages taken from the ingest subject, valid or not */
    uint64_t ingest_dropped; /* failure messages nats.c had received but that were never taken (shutdown) */
};

/* One outstanding retry: slot i of the in-flight table. */
struct sc_flight {
    struct sc_task *task; /* NULL when free */
    uint64_t token;       /* random per attempt: a reply must carry it (no forged or stale replies) */
    uint32_t next_free;   /* free-list link (index + 1), 0 = end */
    int32_t attempt;
    int64_t sent_mono;
    uint64_t epoch;       /* d->disconnects when sent: a change means the retry may be lost */
    bool stored;          /* outcome stored: the JetStream PubAck is the success (DESIGN section 6) */
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
    struct sc_conn *conn;      /* the NATS transport (conn.h); NULL before sc_conn_new() */
    struct sc_conn_sub *sub_failed; /* the ingest subscription (drained at shutdown) */
    struct sc_micro *micro;    /* service discovery (micro.c); NULL before sc_micro_open() */
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
    struct sc_store *store;     /* the store mirror (store.c); NULL before sc_store_open() */
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
 * sc_dispatch_reload() applies a reloaded default_max_retries (SIGHUP) to
 * every task that took the default (max_retries_own false): its budget
 * follows the new default, and a scheduled task whose failed attempts
 * already reach it is exhausted now, with its event. A task retrying keeps
 * its attempt; its outcome is judged against the new budget; a parked
 * task only has its budget changed. Exhausted tasks are left as they are
 * (an operator's retry sends them again). O(tasks). Loop thread.
 */
void sc_dispatch_reload(struct sc_daemon *d, int64_t now_wall);

/*
 * The headers of a retry message (DESIGN section 5), formatted into the
 * struct's own buffers: kv is the NULL-terminated name/value list that
 * sc_publish() takes. The task id is copied (at most SC_RETRY_ID_MAX bytes).
 */
#define SC_RETRY_ID_MAX 1024
#define SC_HDR_EPISODE "Dlq-Episode" /* the episode id (DESIGN section 5) */
struct sc_retry_hdrs {
    char id[SC_RETRY_ID_MAX + 1];
    char msgid[SC_RETRY_ID_MAX + 48];
    char attempt[16], maxr[16], episode[24], first[SC_RFC3339_LEN];
    const char *kv[20];
};

/*
 * sc_retry_headers() fills h for attempt `attempt` of the task with id
 * (id_len bytes, not NUL-terminated, at most SC_RETRY_ID_MAX), budget
 * max_retries, category cat, failure subject orig_subject (borrowed: lives
 * as long as h is used), first failure first_failed_at (wall ms) and
 * episode episode_id, and returns the bytes the headers take on the wire
 * ("NATS/1.0" line, one "Name: value" line each, blank line): what counts
 * against the server's max_payload with the body. dispatch publishes with
 * it; ingest sizes a task with it (sc_retry_headers_max()). Any thread.
 */
size_t sc_retry_headers(struct sc_retry_hdrs *h, const char *id, size_t id_len, int32_t attempt,
                        int32_t max_retries, policy_category cat, const char *orig_subject,
                        int64_t first_failed_at, int64_t episode_id);
/*
 * sc_retry_headers_max() is the most bytes the retry headers of a task with
 * this id and failure subject can ever take (any attempt, budget, category,
 * time and episode), computed with sc_retry_headers(): a task whose payload
 * plus this fits max_payload at ingest can always be published. Any thread.
 */
size_t sc_retry_headers_max(const char *id, size_t id_len, const char *orig_subject);

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
 * OpenSearch is not an error: degraded mode). sc_store_flush() writes what
 * is pending at shutdown, running the loop for up to shutdown.drain_ms (at
 * least 2 s). sc_store_close() frees everything; safe when never opened.
 * Main thread, before and after the loop runs.
 */
struct sc_store_ack;
sc_status sc_store_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_store_flush(struct sc_daemon *d);
void sc_store_close(struct sc_daemon *d);

/*
 * sc_store_hold_ack() takes over the ingest acknowledgement body (len bytes,
 * copied) for request m when a durable store is up: it is published to m's
 * reply subject once t's current version is written (or refused for good),
 * when the store turns degraded, or after 5 s, whichever comes first.
 * Returns false when the caller must answer now (memory store, degraded,
 * no reply subject, too many held). Loop thread.
 */
bool sc_store_hold_ack(struct sc_daemon *d, natsMsg *m, struct sc_task *t, const char *body,
                       size_t len);

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
/* sc_store_rejected() returns the task writes the store refused for good (0 without a store). Loop thread. */
uint64_t sc_store_rejected(struct sc_daemon *d);

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

#endif
