/* dlq_client.h - report failed tasks to dlq-sidecar and serve its retries, on nats.c (DESIGN sections 4-6, 20). */
#ifndef DLQ_CLIENT_H
#define DLQ_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>
#include <nats/nats.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden symbols: what this header declares is its whole ABI. */
#pragma GCC visibility push(default)

/*
 * Every fallible function returns one of these. DLQ_CLIENT_OK is zero, so
 * `if (s) ...` reads as "on error".
 */
typedef enum {
    DLQ_CLIENT_OK = 0,
    DLQ_CLIENT_EINVAL,        /* an argument, or the envelope breaks the contract (err names the field) */
    DLQ_CLIENT_ENOMEM,        /* an allocation failed */
    DLQ_CLIENT_ENATS,         /* nats.c refused the call (err->message has its text) */
    DLQ_CLIENT_ETIMEOUT,      /* no acknowledgement in time */
    DLQ_CLIENT_ENORESPONDERS, /* nobody listens: no sidecar on the failure subject */
    DLQ_CLIENT_EREFUSED,      /* the sidecar (or JetStream) answered no; err->code says why (400, 503 ...) */
    DLQ_CLIENT_EPROTO,        /* an answer that does not read as an acknowledgement */
} dlq_client_status;

/* dlq_client_status_text() names a status ("ok", "invalid envelope" ...): static text. Any thread. */
const char *dlq_client_status_text(dlq_client_status s);

/*
 * What went wrong, for a caller that passes one (every err argument may be
 * NULL). Written by the failing call only; a successful call clears it.
 */
struct dlq_client_error {
    dlq_client_status status;
    /*
     * For DLQ_CLIENT_EINVAL on an envelope: the envelope key that breaks the
     * contract ("task_id", "max_retries", ...; "envelope" for the whole
     * message), else NULL. Static.
     */
    const char *field;
    /*
     * The snake_case code of the refusal, as the sidecar's Dlq-Invalid-Reason
     * header and tests/vectors/manifest.json spell it ("task_id_missing",
     * "too_big", "out_of_range", "bad_value" ...), or "" when not an envelope
     * refusal. Static.
     */
    const char *reason;
    int code;         /* DLQ_CLIENT_EREFUSED: the sidecar's error code (400, 503) or JetStream's; else 0 */
    char message[512]; /* one sentence naming the field first: "max_retries: 101 is out of range 0-100" */
};

/* ---- services: report a failure ---------------------------------------------------------------- */

/*
 * Where reports go: a JetStream stream that captures the failure subject
 * (durably, once per Nats-Msg-Id) or the sidecar on plain NATS.
 */
typedef enum {
    /*
     * The default. Every report carries Nats-Msg-Id and goes to the failure
     * subject; whoever takes it answers: a stream that captures it (the
     * sidecar's DLQ_FAILED with ingest.mode: jetstream) with its PubAck,
     * else the sidecar. No JetStream API call, so a user allowed to publish
     * only <prefix>.failed.> (docs/nats-auth.conf's "service") reports
     * durably too.
     */
    DLQ_CLIENT_DURABLE_AUTO = 0,
    /*
     * A JetStream publish (nats.c's js_PublishMsg / js_PublishMsgAsync)
     * only: no stream is an error (DLQ_CLIENT_ENORESPONDERS), never a silent
     * core publish, and only a PubAck is an acknowledgement. nats.c's
     * JetStream publish is a request on the subject as well (no $JS.API
     * lookup); should a later version ask the JetStream API first, the user
     * needs $JS.API rights for this mode.
     */
    DLQ_CLIENT_DURABLE_ALWAYS,
    DLQ_CLIENT_DURABLE_NEVER, /* core NATS only, no Nats-Msg-Id (a stream keeps every resend) */
} dlq_client_durable;

/* Options of dlq_client_new(); a zeroed struct (or NULL) means the defaults. */
struct dlq_client_options {
    const char *prefix;         /* subjects.prefix of the sidecar; NULL: "dlq" */
    dlq_client_durable durable; /* default DLQ_CLIENT_DURABLE_AUTO */
    int64_t ack_timeout_ms;     /* wait for an acknowledgement (core ack or PubAck); <= 0: 5000 */
};

struct dlq_client; /* opaque */

/*
 * dlq_client_new() makes a reporting client on nc (borrowed: it must stay
 * connected and outlive the client) with a copy of *opts (NULL: defaults).
 * Sets *out and returns DLQ_CLIENT_OK, or DLQ_CLIENT_EINVAL (prefix not a
 * subject token list), DLQ_CLIENT_ENOMEM, DLQ_CLIENT_ENATS (no JetStream
 * context). Free with dlq_client_free(). Any thread. A client may be used
 * by several threads at once.
 */
dlq_client_status dlq_client_new(natsConnection *nc, const struct dlq_client_options *opts,
                                 struct dlq_client **out, struct dlq_client_error *err);

/*
 * dlq_client_free() waits up to the ack timeout for reports still in flight
 * to JetStream (see dlq_client_flush()), then frees c. NULL is a no-op. Not
 * while another thread uses c.
 */
void dlq_client_free(struct dlq_client *c);

/*
 * One failure (DESIGN section 4). Every pointer is borrowed for the call
 * only. A zeroed struct leaves every optional key out: NULL pointers, and
 * has_max_retries / has_failed_at false. A designated initializer is the
 * usual way to fill one: {.task_id = "order-42", .task_mp = p, ...}.
 *
 * The task is exactly one of: task_mp (the task's MessagePack bytes, one
 * complete value, republished to workers exactly as given), task_obj (a
 * msgpack-c object, packed once) or task_bin (opaque bytes, sent as a
 * MessagePack bin; workers receive c4/c5/c6 + the bytes). A NULL pointer
 * means "not this one"; an empty bin is task_bin non-NULL with length 0.
 */
struct dlq_client_failure {
    const char *task_id;          /* required: 1-256 bytes of UTF-8, no control characters */
    const void *task_mp;          /* task as MessagePack bytes (task_mp_len of them) */
    size_t task_mp_len;
    const msgpack_object *task_obj; /* or: task as a msgpack-c object */
    const void *task_bin;         /* or: task as opaque bytes (task_bin_len of them) */
    size_t task_bin_len;
    const char *error;            /* the error message; NULL: "" */
    const char *error_type;       /* exception class or code ("TimeoutError", "HTTP 503"); at most 1024 bytes */
    const char *error_category;   /* transient, network, resource, permission, validation, permanent;
                                     another name is sent and ignored by the sidecar (its classifier decides) */
    const char *retry_policy;     /* never, linear, exponential, immediate (any case); else refused */
    bool has_max_retries;         /* false: the sidecar's default_max_retries */
    int max_retries;              /* 0-100 (0: stored exhausted at once) */
    const char *retry_subject;    /* a NATS subject without wildcards; must match the sidecar's
                                     retry.allowed_subjects (default dlq.retry.>) */
    const char *const *repos;     /* nrepos strings, at most 64, each at most 1024 bytes */
    size_t nrepos;
    const void *metadata_mp;      /* metadata as one MessagePack map (metadata_mp_len bytes) */
    size_t metadata_mp_len;
    const msgpack_object *metadata_obj; /* or: metadata as a msgpack-c map; at most 64 keys, 16384 bytes */
    bool has_failed_at;           /* false: the sidecar's time of receipt */
    int64_t failed_at_ms;         /* ms since the epoch, years 0000-9999 */
    bool enqueue;                 /* true: "enqueue": true (the sidecar's strategy: manual) */
    const char *msg_id;           /* JetStream Nats-Msg-Id; NULL: "<task_id>:<failed_at_ms, else now in ms>" */
    /* Issue 17's keys (an older sidecar ignores them as unknown keys): */
    const char *priority;         /* high, normal, low (any case); NULL: the sidecar's default for the subject */
    const int64_t *backoff_ms;    /* nbackoff delays in ms before attempts 1, 2, ..., the last repeating: */
    size_t nbackoff;              /* 1-32 of them, each 1 ms - 7 days; 0: the policy's formula */
    const char *template_name;    /* "template": a template configured on the sidecar; NULL: none */
    const char *const *depends_on; /* ndepends_on task ids (each as task_id) held until each completes */
    size_t ndepends_on;           /* 0: no "depends_on" key; at most 32, none twice, not task_id */
};

/*
 * dlq_client_encode() checks *f against the contract (DESIGN section 4,
 * the sidecar's default limits) and appends its MessagePack envelope to out
 * (initialised by the caller with msgpack_sbuffer_init(), which also frees
 * it): keys in the contract's order, each value in its smallest form, the
 * same bytes as the canonical vectors of tests/vectors. max_bytes (0: no
 * limit) caps the whole envelope (a server's max_payload). Returns
 * DLQ_CLIENT_OK, or DLQ_CLIENT_EINVAL with err naming the field (out is then
 * left as it was), DLQ_CLIENT_ENOMEM. Any thread.
 */
dlq_client_status dlq_client_encode(const struct dlq_client_failure *f, size_t max_bytes,
                                    msgpack_sbuffer *out, struct dlq_client_error *err);

/* What the sidecar (core NATS) or JetStream answered to a report that waited. */
struct dlq_client_ack {
    bool durable;             /* true: a JetStream PubAck (stream, seq); false: the sidecar's own answer */
    char stream[64];          /* durable: the stream that holds the failure */
    uint64_t seq;             /* durable: its sequence in the stream */
    bool duplicate;           /* durable: the server had it already (same Nats-Msg-Id) */
    char status[16];          /* core: the task's status: "pending", "exhausted" or "skipped" */
    char next_retry_at[40];   /* core: RFC 3339 UTC, or "" when nothing is scheduled (parked, exhausted) */
    int stored;               /* core with a durable store: 1 stored, 0 held in memory only; -1 not said */
    unsigned unknown_keys;    /* core: keys the sidecar did not know (named in its answer) */
};

/*
 * dlq_client_report() checks and publishes the failure *f on
 * "<prefix>.failed.<service>" (service: one or more subject tokens, e.g.
 * "orders" or "orders.eu"), with the header Nats-Msg-Id (f->msg_id, else
 * "<task_id>:<failed_at or now, in ms>") unless DURABLE_NEVER, so that a
 * stream stores a resend with the same id once.
 *
 * With wait, blocks up to the ack timeout for the one answer and fills *ack
 * (may be NULL). In AUTO (and NEVER) the report is a request on the failure
 * subject, answered by whoever takes it: a stream that captures the subject
 * with its PubAck (ack->durable, stream, seq, duplicate), a JetStream error
 * (DLQ_CLIENT_EREFUSED with err->code its err_code), or the sidecar's own
 * answer (ack->status, ...). No JetStream API call is made. In ALWAYS it is
 * a JetStream publish (js_PublishMsg) and the ack is its PubAck. Without
 * wait it returns once the message is handed to nats.c (a plain publish
 * with the header; ALWAYS: js_PublishAsync; see dlq_client_flush()); *ack
 * is then zeroed.
 *
 * Returns DLQ_CLIENT_OK; DLQ_CLIENT_EINVAL before publishing anything when
 * the envelope breaks the contract (err->field, err->reason; see
 * dlq_client_encode(), whose max_bytes is the server's max_payload) or
 * service is not a subject; DLQ_CLIENT_EREFUSED when the sidecar said no
 * (err->code 400: invalid, 503: queue full or store unavailable; resend
 * later) or JetStream refused; DLQ_CLIENT_ENORESPONDERS (no sidecar
 * listens, or DURABLE_ALWAYS and no stream); DLQ_CLIENT_ETIMEOUT (the
 * failure may still have arrived: resend with the same msg_id, or the same
 * task_id, which updates one task); DLQ_CLIENT_ENATS, DLQ_CLIENT_EPROTO,
 * DLQ_CLIENT_ENOMEM. Any thread, including a nats.c callback (but a waiting
 * report blocks that callback's subscription meanwhile).
 */
dlq_client_status dlq_client_report(struct dlq_client *c, const char *service,
                                    const struct dlq_client_failure *f, bool wait,
                                    struct dlq_client_ack *ack, struct dlq_client_error *err);

/*
 * dlq_client_flush() waits up to timeout_ms (<= 0: the ack timeout) until
 * every report sent without wait is acknowledged: JetStream PubAcks, or a
 * flush of the connection for core publishes. Returns DLQ_CLIENT_OK,
 * DLQ_CLIENT_ETIMEOUT, or DLQ_CLIENT_EREFUSED when JetStream refused some
 * of them since the last flush (err->message says how many and the last
 * error). Any thread.
 */
dlq_client_status dlq_client_flush(struct dlq_client *c, int64_t timeout_ms,
                                   struct dlq_client_error *err);

/* ---- workers: serve a retry subject ------------------------------------------------------------ */

/*
 * One retry (DESIGN section 5), borrowed by the handler for the length of
 * its call: copy what must outlive it.
 */
struct dlq_client_retry {
    const char *subject;          /* the retry subject it arrived on */
    const void *task;             /* the task's MessagePack bytes, exactly as the service sent them */
    size_t task_len;
    const char *task_id;          /* Dlq-Task-Id; NULL when absent (not sent by a sidecar) */
    int attempt;                  /* Dlq-Attempt, 1-based; 0 when absent or unreadable */
    int max_retries;              /* Dlq-Max-Retries; -1 when absent or unreadable */
    const char *error_category;   /* Dlq-Error-Category; NULL when absent */
    const char *original_subject; /* Dlq-Original-Subject (dlq.failed.<service>) */
    const char *first_failed_at;  /* Dlq-First-Failed-At, RFC 3339 */
    const char *episode;          /* Dlq-Episode, decimal */
    const char *msg_id;           /* Nats-Msg-Id: <task_id>:<episode>:<attempt> */
    natsMsg *msg;                 /* the message itself, for any other header (natsMsgHeader_Get) */
};

/* What a handler returns. Any other value is answered as a failure that says so. */
#define DLQ_CLIENT_RETRY_OK 0
#define DLQ_CLIENT_RETRY_FAILED 1

struct dlq_client_reply; /* opaque: the failure a handler describes */

/*
 * dlq_client_reply_fail() records the failure of this attempt: error_type
 * (NULL: none; cut to 1024 bytes) and a printf-style message (cut to 4096
 * bytes with "...[truncated]"; invalid UTF-8 replaced by U+FFFD). Returns
 * DLQ_CLIENT_RETRY_FAILED, so a handler may `return dlq_client_reply_fail(...)`.
 * Handler's thread only, during the handler.
 */
int dlq_client_reply_fail(struct dlq_client_reply *reply, const char *error_type, const char *fmt,
                          ...) __attribute__((format(printf, 3, 4)));

/*
 * A worker's handler: does the task again and returns DLQ_CLIENT_RETRY_OK
 * (the task completes) or DLQ_CLIENT_RETRY_FAILED, after
 * dlq_client_reply_fail() (without it the failure says "worker handler
 * failed without a message"). Any other return value is answered as a
 * failure ("worker handler returned an invalid result N", error_type
 * "dlq.InvalidHandlerResult"), never as a success. Runs on the nats.c
 * thread of the subscription, one retry at a time per dlq_client_serve().
 */
typedef int (*dlq_client_handler)(const struct dlq_client_retry *retry,
                                  struct dlq_client_reply *reply, void *closure);

struct dlq_client_worker; /* opaque */

/*
 * dlq_client_serve() subscribes on nc (borrowed: outlives the worker) to
 * subject (a retry subject, wildcards allowed) in queue group queue (NULL:
 * none; workers of one service share a group) and calls handler with
 * closure for every retry, then replies its outcome (DESIGN section 6:
 * {"ok":true}, or {"ok":false,"error":..,"error_type":..}) when the retry
 * has a reply subject. Sets *out and returns DLQ_CLIENT_OK, or
 * DLQ_CLIENT_EINVAL (NULL handler, bad subject or queue), DLQ_CLIENT_ENATS,
 * DLQ_CLIENT_ENOMEM. Stop with dlq_client_worker_free(). Any thread.
 */
dlq_client_status dlq_client_serve(natsConnection *nc, const char *subject, const char *queue,
                                   dlq_client_handler handler, void *closure,
                                   struct dlq_client_worker **out, struct dlq_client_error *err);

/*
 * dlq_client_worker_free() drains the subscription (retries already
 * delivered are handled and answered, for up to 10 s), then frees w. After
 * it returns the handler is not running and will not be called again. NULL
 * is a no-op. Not from w's own handler.
 */
void dlq_client_worker_free(struct dlq_client_worker *w);

/*
 * dlq_client_reply_encode() writes the reply body a worker sends for an
 * outcome into buf (cap bytes, NUL-terminated): {"ok":true} when ok, else
 * {"ok":false,"error":<error>,"error_type":<error_type>} (error_type left
 * out when NULL; error NULL is ""), the canonical outcome vectors'
 * bytes. error and error_type must be valid UTF-8. Returns the length, or 0
 * when it does not fit or a string is not UTF-8. Any thread.
 */
size_t dlq_client_reply_encode(bool ok, const char *error, const char *error_type, char *buf,
                               size_t cap);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
