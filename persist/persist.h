/* persist.h - the store behind the in-memory queue (memory, OpenSearch, JetStream KV), the task document it keeps, and the libcurl-on-libevent HTTP client it uses. */
#ifndef DLQ_PERSIST_H
#define DLQ_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>
#include <nats/nats.h>

#include "common.h"

/* ---- HTTP client: libcurl's multi interface driven by a libevent loop ------------------------ */

struct persist_http; /* opaque: one CURLM, its sockets and timer on the caller's event_base */

/* TLS and auth settings shared by every request of one client (strings copied). */
struct persist_http_opts {
    const char *ca_file;  /* "" or NULL: the system's CAs */
    bool insecure;        /* skip certificate and host verification (local testing only) */
    const char *username; /* "" or NULL: no basic auth */
    const char *password;
};

/* Largest response body a request keeps; a longer one fails with status 0. */
#define PERSIST_HTTP_MAX_RESPONSE (256u * 1024 * 1024)

/*
 * Called once per request on the loop thread: status is the HTTP status
 * (0 when the request failed before a response; error then says why, else
 * NULL); body/len is the response body, borrowed for the call only.
 */
typedef void (*persist_http_cb)(void *ctx, long status, const char *body, size_t len,
                                const char *error);

/*
 * persist_http_new() makes a client on base (borrowed; must outlive it).
 * Returns NULL when libcurl cannot be initialised. persist_http_free()
 * cancels outstanding requests without calling their callbacks; NULL is a
 * no-op. Loop thread.
 */
struct persist_http *persist_http_new(struct event_base *base, const struct persist_http_opts *o);
void persist_http_free(struct persist_http *h);

/*
 * persist_http_request() starts a request; it never blocks. method is
 * "GET", "PUT", "POST", "DELETE" or "HEAD"; url NUL-terminated; body (len
 * bytes, may be NULL) is copied; content_type may be NULL; timeout_ms > 0
 * bounds the whole request. cb(ctx, ...) runs later on the loop thread,
 * exactly once, unless the client is freed first. Returns SC_OK, or
 * SC_ENOMEM / SC_EIO when the request could not be started (cb is then not
 * called). Loop thread.
 */
sc_status persist_http_request(struct persist_http *h, const char *method, const char *url,
                               const char *content_type, const void *body, size_t len,
                               long timeout_ms, persist_http_cb cb, void *ctx);

/*
 * persist_http_request_hdr() is persist_http_request() with one more request
 * header: header is a whole "Name: value" line (copied; NULL or "" for none),
 * e.g. "Authorization: GenieKey ...". Same returns, ownership and thread.
 */
sc_status persist_http_request_hdr(struct persist_http *h, const char *method, const char *url,
                                   const char *content_type, const char *header,
                                   const void *body, size_t len, long timeout_ms,
                                   persist_http_cb cb, void *ctx);

/* persist_http_pending() returns the number of requests in flight. */
size_t persist_http_pending(const struct persist_http *h);

/* ---- small encoders the store's documents need ----------------------------------------------- */

/*
 * persist_sha256() writes the SHA-256 digest (FIPS 180-4) of len bytes at p
 * into out (32 bytes). Never fails. Any thread.
 */
void persist_sha256(const void *p, size_t len, unsigned char out[32]);

/* ---- the store interface ---------------------------------------------------------------------- */

/*
 * A store mirrors the owner's records (tasks) into something durable. It is
 * write-behind and pull-based: the owner keeps its own set of changed
 * records (so repeated changes of one record coalesce into one write of its
 * latest state) and calls persist_kick(); when the store is ready to send, it
 * calls owner.fill() with an empty batch, and later owner.result() once per
 * item put into that batch. A record is identified by an id (bytes) and a
 * version that only grows: a store that keeps versions never lets an older
 * one overwrite a newer one, so writes may be replayed and reordered freely.
 * Everything runs on the loop thread of the event_base the store was made
 * with.
 */

/* What the store can do right now. */
typedef enum {
    PERSIST_STARTING = 0, /* installing the schema and loading records back; writes wait */
    PERSIST_OK,           /* writes are flowing */
    PERSIST_DEGRADED,     /* the backend is unreachable or refuses writes; they wait and retry */
} persist_state;

/* persist_state_name() returns "starting", "ok" or "degraded" (static). */
const char *persist_state_name(persist_state s);

/* What became of one item of a batch. */
typedef enum {
    PERSIST_ITEM_OK = 0,   /* written (a delete of a record that is not there is OK too) */
    PERSIST_ITEM_STALE,    /* the store already holds this version or a newer one: nothing to do */
    PERSIST_ITEM_RETRY,    /* not written this time (throttled, unreachable, refused): send it again */
    PERSIST_ITEM_REJECTED, /* the store refuses this record for good (a bad document) */
    PERSIST_ITEM_FENCED,   /* cluster mode: another instance claimed the record's partition since (not written) */
} persist_result;

/* persist_result_name() returns "ok", "stale", "retry", "rejected" or "fenced" (static). */
const char *persist_result_name(persist_result r);

/* One item of a batch, as handed back to owner.result(); id borrowed for the call. */
struct persist_item {
    const char *id;
    size_t id_len;
    uint64_t version;
    bool del; /* a delete (tombstone) rather than a write of the record */
};

struct persist_batch; /* opaque: one batch being filled */

/*
 * persist_batch_msgpack() tells how b's documents are written: true for the
 * KV store opened with msgpack_records, whose records are then MessagePack
 * (the fields of the JSON document as codec_json_msgpack() converts them,
 * persist/docw.h), false for JSON text on one line. Loop thread.
 */
bool persist_batch_msgpack(const struct persist_batch *b);

/*
 * persist_batch_put_begin() starts the write of record id (id_len bytes) at
 * version and returns the buffer to append its document to: one JSON object
 * on one line (no raw newline); NULL when the batch is already full (keep the
 * record for the next batch and stop filling). The buffer is borrowed until
 * persist_batch_put_end(), which closes the document and returns SC_OK;
 * SC_EFULL when it would take the batch past its byte limit (the item is
 * taken back: keep it for the next batch, where it goes first), also when
 * the body cannot take it after other items; SC_ETOOBIG when the document
 * alone passes what one request may carry (taken back: it can never be
 * written); SC_EINVAL when no put is open. A document alone in its batch may
 * pass the byte limit. When appending the document failed, call
 * persist_batch_put_abort() instead, which takes the item back; if the batch
 * already holds items, treat it as full (the document may fit in the next).
 */
struct sc_buf *persist_batch_put_begin(struct persist_batch *b, const char *id, size_t id_len,
                                       uint64_t version);
sc_status persist_batch_put_end(struct persist_batch *b);
void persist_batch_put_abort(struct persist_batch *b);

/*
 * persist_batch_delete() adds the delete of record id at version (a
 * tombstone: a record with a newer version is left alone). Returns SC_OK or
 * SC_EFULL (not added).
 */
sc_status persist_batch_delete(struct persist_batch *b, const char *id, size_t id_len,
                               uint64_t version);

/*
 * persist_batch_full() tells whether the batch reached its count or byte
 * limit, took an item back for want of room (the backend then sends the
 * next batch at once, so what did not fit does not wait for another kick),
 * or (exclusive) has an item for every partition.
 */
bool persist_batch_full(const struct persist_batch *b);

/*
 * persist_batch_has_room() tells whether b may take another item: under
 * its count and byte limits, nothing taken back, and (exclusive) a
 * partition still without an item. A filling owner stops when it is false;
 * an item refused only for its partition (persist_batch_accepts()) does not
 * end the fill. Pure.
 */
bool persist_batch_has_room(const struct persist_batch *b);

/*
 * persist_batch_accepts() tells whether an item for id (id_len bytes) may
 * go into b now: false when b takes one item per partition (cluster mode's
 * KV store) and id's partition has one already; keep the record for the
 * next batch and go on with the next. After a false, b counts as full (the
 * backend sends the next batch as soon as this one is answered).
 */
bool persist_batch_accepts(struct persist_batch *b, const char *id, size_t id_len);

/* persist_batch_count() returns the number of items in the batch. */
size_t persist_batch_count(const struct persist_batch *b);

/*
 * What the store calls back (all on the loop thread; ctx is the owner's).
 * fill(): put pending writes into b until it is full or nothing is left;
 * items put are "in flight" until result() reports them. result(): what
 * became of one item (reason: the backend's words for a failure, else
 * NULL; borrowed). loaded(): one record found at start (id and src borrowed
 * for the call; src is the document as written; id is the backend's key,
 * which need not be the record's id: OpenSearch maps ids it cannot take as
 * _id, see persist_opensearch_doc_id(), so an owner reads the record's id
 * from src). state(): the store's state
 * changed (error: why it is degraded, else NULL). Any of them may call
 * persist_kick(); none may free the store.
 */
struct persist_owner {
    void *ctx;
    void (*fill)(void *ctx, struct persist_batch *b);
    void (*result)(void *ctx, const struct persist_item *it, persist_result r, const char *reason);
    void (*loaded)(void *ctx, const char *id, size_t id_len, uint64_t version, json_t *src);
    void (*state)(void *ctx, persist_state s, const char *error);
    /*
     * claimed(): a claim of partition asked with persist_claim() is over:
     * ok, its records were handed to loaded() before this call and writes
     * of it go out under this instance's fence; !ok, it failed (error says
     * why) and is tried again (claimed() comes again). May be NULL when
     * nothing is ever claimed.
     */
    void (*claimed)(void *ctx, unsigned partition, bool ok, const char *error);
};

/* Counters of one store, for stats. */
struct persist_stats {
    const char *backend;   /* "memory", "opensearch", "jetstream" (static) */
    persist_state state;
    size_t in_flight;      /* items sent and not answered yet */
    uint64_t written;      /* items acknowledged (writes and deletes) */
    uint64_t stale;        /* items answered "a newer version is there" (409) */
    uint64_t rejected;     /* items refused for good (400) */
    uint64_t fenced;       /* items not written: another instance claimed their partition */
    uint64_t retried;      /* items handed back to be sent again (429, 5xx, unreachable) */
    uint64_t batches;      /* batch requests sent */
    uint64_t failed_batches; /* batch requests that failed as a whole */
    uint64_t loaded;       /* records loaded back at start */
    int64_t last_error_at; /* wall ms of last_error, 0 when none */
    char last_error[256];  /* the most recent failure, "" when none */
};

struct persist;

/*
 * The table every backend fills. start(): begin the start-up work (schema,
 * load); never blocks. kick(): the owner has pending writes; urgent asks for
 * a batch as soon as possible instead of after the flush delay. busy(): a
 * request is in flight. stats(): fill *out. destroy(): free everything,
 * cancelling requests without calling back. durable: records written
 * survive the process (false for memory, whose fill() is never called: an
 * owner then keeps no dirty set, holds no acknowledgement and spills
 * nothing). claim() and release() (NULL when the backend has no cluster
 * mode): see persist_claim(). stopping() (NULL: nothing to do): see
 * persist_stopping().
 */
struct persist_ops {
    const char *name;
    sc_status (*start)(struct persist *p);
    void (*kick)(struct persist *p, bool urgent);
    bool (*busy)(const struct persist *p);
    void (*stats)(const struct persist *p, struct persist_stats *out);
    void (*destroy)(struct persist *p);
    sc_status (*claim)(struct persist *p, unsigned partition);
    void (*release)(struct persist *p, unsigned partition);
    void (*refence)(struct persist *p, unsigned partition);
    void (*stopping)(struct persist *p);
    bool durable;
};

/*
 * The head every backend embeds first; its layout is public so that tests
 * can write a backend of their own. state is kept current by the backend.
 */
struct persist {
    const struct persist_ops *ops;
    struct persist_owner owner;
    persist_state state;
};

/*
 * Generic calls through the table. persist_start() begins the start-up
 * work: with the OpenSearch backend, the template, the index and the load
 * (owner.loaded() per record), after which the state turns PERSIST_OK, or
 * PERSIST_DEGRADED when it failed (it is then tried again in the background
 * with backoff, and the records are loaded when it succeeds). Returns SC_OK
 * or SC_ENOMEM. persist_kick(): see struct persist_ops. persist_free():
 * NULL is a no-op. Loop thread.
 */
sc_status persist_start(struct persist *p);
void persist_kick(struct persist *p, bool urgent);
bool persist_busy(const struct persist *p);
void persist_get_stats(const struct persist *p, struct persist_stats *out);
void persist_free(struct persist *p);

/*
 * persist_stopping(): the owner is stopping and waits a bounded time (the
 * shutdown drain) for its last writes. A backoff under way (up to 10 s after
 * failed batches) is cut short and the next batch goes at once; from then on
 * a failed batch is tried again after PERSIST_STOPPING_RETRY_MS, so the last
 * writes get every chance the drain leaves them. Loop thread; idempotent.
 */
#define PERSIST_STOPPING_RETRY_MS 100
void persist_stopping(struct persist *p);

/*
 * Cluster mode (DESIGN section 18; the KV backend with o->fenced).
 * persist_claim() asks to take partition (< o->partitions) over: the
 * backend fences it (from then on a write of an instance that claimed it
 * before is refused by the server) and reads its records back to
 * owner.loaded(), then calls owner.claimed(). Returns SC_OK (asked),
 * SC_EINVAL (no cluster mode, or partition out of range) or SC_EFULL (too
 * many claims waiting). persist_release() gives partition up: writes of it
 * are answered PERSIST_ITEM_FENCED from then on, never sent. Loop thread.
 */
sc_status persist_claim(struct persist *p, unsigned partition);
void persist_release(struct persist *p, unsigned partition);
/*
 * persist_refence() puts a new fence on partition (claimed, not released)
 * without loading it again: for an owner whose writes came back FENCED
 * while it still holds the partition's lease (a claim another member gave
 * up put its fence after ours). Writes of the partition go out under the
 * new fence once it is in place. One at a time per partition. Loop thread.
 */
void persist_refence(struct persist *p, unsigned partition);

/* persist_durable() tells whether p keeps what it is given past the process (ops->durable). Any thread. */
bool persist_durable(const struct persist *p);

/*
 * persist_memory_new() makes the memory backend: nothing is written,
 * start() turns PERSIST_OK at once, fill() is never called. Never fails
 * (aborts on OOM). The owner is copied. Loop thread.
 */
struct persist *persist_memory_new(const struct persist_owner *owner);

/* Settings of the OpenSearch backend (strings copied). */
struct persist_opensearch_opts {
    const char *urls;        /* comma-separated base URLs, e.g. "http://127.0.0.1:9200" */
    const char *index;       /* index name; the template covers "<index>*" */
    struct persist_http_opts http;
    size_t bulk_max_docs;    /* most items per _bulk request, >= 1 */
    size_t bulk_max_bytes;   /* most bytes per _bulk body, >= 1024 */
    int64_t flush_ms;        /* longest wait between a kick and its batch */
    const char *properties;  /* JSON object: the "properties" of the document mapping (persist_new(): NULL is persist_task_properties) */
    const char *load_query;  /* JSON object: the query selecting records loaded at start; NULL: no load (persist_new(): the task's) */
    const char *load_sort;   /* JSON array: a sort on unique fields for search_after paging (persist_new(): NULL is the task's) */
    long request_timeout_ms; /* per request; 0: 30 s */
    unsigned partitions;     /* cluster mode: partitions of the ids (FNV-1a 64 mod partitions), 1-4,096 */
    bool fenced;             /* cluster mode: nothing loaded at start; partitions are claimed (persist_claim()) */
};

/*
 * persist_opensearch_new() makes the OpenSearch backend on base (borrowed,
 * must outlive the store). Nothing is sent before persist_start(). Writes go
 * through POST /<index>/_bulk with version_type=external (the record's
 * version), one request in flight at a time, batches bounded by
 * bulk_max_docs and bulk_max_bytes. Each item's _id is
 * persist_opensearch_doc_id() of its id. Per item: 2xx is OK (404 too for a
 * delete), 409 is STALE, 429 is RETRY with backoff, 403 or 429 with a
 * cluster_block_exception (an index block), a closed index, 5xx and a
 * missing index are RETRY and turn the store DEGRADED, other 4xx are
 * REJECTED. A request that fails as a whole (unreachable, timeout, 5xx,
 * 401/403, 429 with a cluster_block_exception) hands every item not yet
 * answered back as RETRY and turns it DEGRADED; it then tries again after a
 * backoff growing from 500 ms to 10 s; a plain 429 does the same without
 * degrading, after a backoff of 200 ms to 10 s. A request refused as a whole
 * because of what it carries (400: one item failed validation; 413: larger
 * than the node's http.max_content_length, which also halves the byte limit
 * of later batches; 429 circuit_breaking_exception) is split in halves, sent
 * again half by half until the item at fault stands alone: a lone item so
 * refused is REJECTED (a 429 lone item is RETRY), every other item gets its
 * own answer, and the owner hears of every item once the whole batch is
 * settled. A body never passes PERSIST_BULK_BODY_MAX (99 MiB), whatever
 * bulk_max_bytes says.
 * The template
 * (named after the index) is installed at start with one shard, no replica,
 * "dynamic": "strict" and the given properties.
 * Cluster mode (fenced; docs/cluster.md "The OpenSearch store's fence"):
 * nothing is loaded at start; persist_claim(p) indexes the partition's
 * fence document "h:fence.<p>" (internal versions: its _version G grows by
 * one per claim), refreshes and loads the documents whose "partition" field
 * is p (owner.loaded() with version 0: the owner reads the document's own
 * "version"); every write of p then carries the external version
 * G * 2^40 + n (n: this store's write counter, 1 .. 2^40 - 1), so a former
 * owner's write that reaches a document a newer owner wrote is refused
 * (409) and answered PERSIST_ITEM_FENCED. Writes of a partition not
 * claimed are FENCED without being sent; while its refence runs, RETRY.
 * On success sets *out and returns SC_OK; SC_EINVAL for a bad option (err
 * says which), SC_ENOMEM. Loop thread.
 */
sc_status persist_opensearch_new(struct event_base *base, const struct persist_opensearch_opts *o,
                                 const struct persist_owner *owner, struct persist **out,
                                 char *err, size_t errlen);

/* The longest id OpenSearch takes as _id, in bytes (UTF-8). */
#define PERSIST_OS_ID_MAX 512

/*
 * persist_opensearch_doc_id() appends the _id that the record id (id_len
 * bytes) is written under, unquoted: the id itself when OpenSearch can take
 * it (1 to PERSIST_OS_ID_MAX bytes of valid UTF-8 without NUL, not starting
 * with "h:"), else "h:" and the 64 lower-case hex digits of its SHA-256, so
 * that distinct ids keep distinct documents and a delete finds what the
 * write made. The record's own id must then be kept in a field of the
 * document (the sidecar's task_id and task_id_raw). Returns SC_OK or
 * sc_buf_append()'s errors. Any thread.
 */
sc_status persist_opensearch_doc_id(struct sc_buf *out, const char *id, size_t id_len);

/* ---- the JetStream KV backend (persist/kv.c) ------------------------------------------------- */

/*
 * The publish the KV backend writes through (the owner's NATS transport):
 * len bytes of body to subject with reply subject reply and headers
 * (NULL-terminated name/value pairs, or NULL). Returns SC_OK, SC_ETOOBIG
 * (past the server's max_payload) or another error when it cannot go.
 * Called on the loop thread.
 */
typedef sc_status (*persist_publish_fn)(void *ctx, const char *subject, const char *reply,
                                        const void *body, size_t len,
                                        const char *const *headers);

/* Settings of the JetStream KV backend (strings copied). */
struct persist_kv_opts {
    natsConnection *nc;       /* borrowed, for the loader thread's JetStream calls; must outlive the store */
    const char *bucket;       /* KV bucket name, [A-Za-z0-9_-]+; made when missing */
    int replicas;             /* of a bucket made here, 1-5 */
    bool memory_storage;      /* a bucket made here keeps its data in memory (else on disk) */
    size_t batch_max;         /* most writes of one batch (published back to back), >= 1 */
    int64_t flush_ms;         /* longest wait between a kick and its batch, ms */
    long timeout_ms;          /* a batch's answers and each JetStream call, ms */
    unsigned partitions;      /* keys are "<partition>.<id>" (persist_kv_key()); 0: no partition token */
    bool fenced;              /* cluster mode: nothing loaded at start; partitions are claimed (persist_claim()) */
    const char *member;       /* cluster mode: this instance's id, the value of the fences it puts */
    const char *reply_prefix; /* the subject prefix of write answers: "<reply_prefix>.<n>.<i>" */
    bool msgpack_records;     /* the owner's fill writes MessagePack records (persist_batch_msgpack()); else JSON, converted here */
    persist_publish_fn publish;
    void *publish_ctx;
};

/* Ids up to this many bytes that are plain tokens are keys as they are; up to PERSIST_KV_B64_MAX base64url. */
#define PERSIST_KV_PLAIN_MAX 200
#define PERSIST_KV_B64_MAX 180

/*
 * persist_kv_new() makes the JetStream KV backend (DESIGN section 17): one
 * record per key in the bucket, the value the record's document in
 * MessagePack. Nothing is sent before persist_start(), which starts a
 * thread of the store's own that makes the bucket (history 1, o->replicas,
 * o->memory_storage) or checks the one found (one with a TTL is refused:
 * its tasks would expire), then reads every record back (owner.loaded(),
 * on the loop thread, with an empty id: the owner reads the record's id
 * from the document, and the document's "version" as version); the state
 * turns PERSIST_OK then, or PERSIST_DEGRADED while it cannot (tried again
 * with a backoff from 0.5 to 10 s). Writes: up to four batches in flight
 * (one when fenced), each batch's items published back to back to $KV.<bucket>.<key> (a delete is a purge
 * marker) with reply subjects under o->reply_prefix: the owner must route
 * every message on "<reply_prefix>.>" to persist_kv_reply(). A PubAck is
 * OK; a revision mismatch STALE; a 5xx, a "no responders", a failed publish
 * or no answer within timeout_ms RETRY (and DEGRADED, with the backoff); a
 * record over max_payload or refused otherwise REJECTED. base must have
 * been made after evthread_use_pthreads() (the loader wakes the loop) and
 * must outlive the store; persist_free() joins the loader (at most
 * timeout_ms). On success sets *out and returns SC_OK; SC_EINVAL for a bad
 * option (err says which); SC_ENOMEM. Loop thread.
 */
sc_status persist_kv_new(struct event_base *base, const struct persist_kv_opts *o,
                         const struct persist_owner *owner, struct persist **out, char *err,
                         size_t errlen);

/*
 * persist_kv_check() looks at the tasks bucket on nc, making it when it
 * does not exist yet (replicas, memory or file storage, as the store would
 * a moment later): SC_OK when it fits (no TTL, and the partition count it
 * recorded, if any, is partitions) or was made; SC_EINVAL when it does not
 * fit, or the servers cannot place replicas (err names the setting and the
 * values: start-up should stop); SC_EIO when it could not look (NATS or
 * JetStream away: the store checks again when it opens the bucket).
 * timeout_ms bounds each JetStream call. Blocks; main thread at start-up
 * (or any thread that may block).
 */
sc_status persist_kv_check(natsConnection *nc, const char *bucket, unsigned partitions,
                           int replicas, bool memory, int64_t timeout_ms, char *err,
                           size_t errlen);

/*
 * persist_js_unplaceable() tells whether the text of nats_GetLastError()
 * after a failed stream or bucket creation (NULL: none) says the servers
 * cannot place that many replicas (not clustered, too few JetStream
 * servers): a configuration to fix, not an outage to wait out. Returns
 * the server's description within last_error (borrowed from it), or NULL
 * when it says something else. Any thread.
 */
const char *persist_js_unplaceable(const char *last_error);

/*
 * persist_kv_reply() hands the KV backend p one message that arrived on
 * its reply prefix: subject, len bytes of data (borrowed for the call),
 * and status 503 when it is a "no responders" status message, else 0.
 * Answers of a batch given up, or not of this store, are ignored. Loop
 * thread.
 */
void persist_kv_reply(struct persist *p, const char *subject, const void *data, size_t len,
                      int status);

/*
 * persist_kv_key() appends the KV key of record id (len bytes): with
 * partitions > 0 first "<p>." where p = sc_fnv1a64(id) % partitions,
 * so that one partition's records are read with the filter "<p>.>"; then
 * the id itself when it is 1 to PERSIST_KV_PLAIN_MAX bytes of [A-Za-z0-9_-]
 * tokens joined by single dots, else "=" and its base64url (no padding)
 * when it has at most PERSIST_KV_B64_MAX bytes, else "==" and the hex
 * SHA-256 of it. Distinct ids get distinct keys but for a SHA-256
 * collision; the document keeps the id. Returns SC_OK or sc_buf_append()'s
 * errors. Any thread.
 */
sc_status persist_kv_key(struct sc_buf *out, const char *id, size_t len, unsigned partitions);

/* ---- choosing a backend ------------------------------------------------------------------------ */

/* Which backend persist_new() makes, and its settings (strings copied). */
struct persist_opts {
    const char *backend;                  /* "memory", "opensearch" or "jetstream" (config's store.backend) */
    struct persist_opensearch_opts opensearch; /* for "opensearch" */
    struct persist_kv_opts kv;            /* for "jetstream" */
};

/*
 * persist_new() makes the backend o->backend names, for task records: the
 * memory backend (persist_memory_new()), the JetStream KV bucket
 * (persist_kv_new() with o->kv) or OpenSearch
 * (persist_opensearch_new() with o->opensearch, where a NULL properties,
 * load_query or load_sort is the task document's: persist_task_properties,
 * persist_task_load_query, persist_task_load_sort). base is borrowed and
 * must outlive the store; owner is copied. Nothing is sent before
 * persist_start(). On success sets *out and returns SC_OK; SC_EINVAL for
 * an unknown backend or a bad option (err says which); SC_ENOMEM. Loop
 * thread.
 */
sc_status persist_new(struct event_base *base, const struct persist_opts *o,
                      const struct persist_owner *owner, struct persist **out, char *err,
                      size_t errlen);

/* ---- the task document (persist/doc.c) ----------------------------------------------------------- */

/*
 * A task is kept as one JSON object (its fields are the store mirror's:
 * sidecar/mirror.c). These write and read its fields in the shape every
 * JSON store here needs: text that is not valid UTF-8 (or holds NUL) keeps
 * its exact bytes in a "<k>_raw" twin, and bytes go as base64. Keys are
 * plain names of at most PERSIST_DOC_KEY_MAX bytes. Writers follow sc_jw
 * (errors stick in w->st); readers return what they find, never fail on a
 * missing or malformed field, and use tmp (the caller's, any cap enough for
 * the field) as scratch. Any thread.
 */
#define PERSIST_DOC_KEY_MAX 56

/* persist_doc_str() writes "k": the len bytes at v as a JSON string (null when v is NULL), plus "k_raw": their base64 when they are not valid UTF-8 without NUL. */
void persist_doc_str(struct sc_jw *w, const char *k, const char *v, size_t len);
/* persist_doc_bytes() writes "k": the len bytes at p in base64, or null when p is NULL. */
void persist_doc_bytes(struct sc_jw *w, const char *k, const void *p, size_t len);
/*
 * persist_doc_get_str() returns string k of src as a new NUL-terminated
 * allocation (the caller frees it) and its length in *len, taking the exact
 * bytes of "k_raw" first; NULL (and *len 0) when absent or not a string.
 */
char *persist_doc_get_str(const json_t *src, const char *k, size_t *len, struct sc_buf *tmp);
/*
 * persist_doc_get_bytes() decodes base64 field k of src into *out (a new
 * allocation the caller frees) and *len; false (*out NULL) when absent,
 * null or malformed.
 */
bool persist_doc_get_bytes(const json_t *src, const char *k, char **out, size_t *len,
                           struct sc_buf *tmp);
/* persist_doc_get_int() returns integer k of src, 0 when absent or not an integer. */
int64_t persist_doc_get_int(const json_t *src, const char *k);
/* persist_doc_get_time() returns RFC 3339 time k of src in wall ms, 0 when absent or malformed. */
int64_t persist_doc_get_time(const json_t *src, const char *k);

/*
 * OpenSearch's view of the task document: the mapping's properties (every
 * field the mirror writes, strict), the query of the tasks loaded at start
 * (non-terminal ones) and its search_after sort (seq, task_id). Static JSON.
 */
extern const char persist_task_properties[];
extern const char persist_task_load_query[];
extern const char persist_task_load_sort[];

/* ---- sealing at rest: AES-256-GCM (secrets.encryption_key_file; README "Secrets") ----------- */

/*
 * A keyring: the current key, which seals, and former keys, which only
 * open. A sealed value is: a version byte (1), a 4-byte key id (the first
 * bytes of SHA-256 of the key), a 12-byte random nonce, the ciphertext (as
 * long as the plaintext) and the 16-byte GCM tag; the first 17 bytes are
 * the additional authenticated data.
 */
struct persist_keyring;

/*
 * persist_keyring_new() copies n 32-byte keys (keys[0] the current one).
 * NULL when n is 0. persist_keyring_free() wipes and frees (NULL: no-op).
 * Aborts on OOM. Any thread; a keyring is read-only once made, so any
 * number of threads may use it.
 */
struct persist_keyring *persist_keyring_new(const unsigned char (*keys)[32], size_t n);
void persist_keyring_free(struct persist_keyring *kr);

/*
 * persist_key_read() reads the key file at path: exactly 32 raw bytes, or
 * 64 hex digits (a trailing newline allowed). Returns SC_OK, SC_ENOTFOUND
 * (unreadable) or SC_EINVAL (another size or not hex), with err (errlen
 * bytes) naming the config key name and the path. Any thread.
 * persist_keyring_load() makes *out from the current key file (NULL or "":
 * *out = NULL and SC_OK, no sealing) and n_old former ones; errors as
 * persist_key_read(). Main thread, at start-up.
 */
sc_status persist_key_read(const char *path, const char *name, unsigned char key[32], char *err,
                           size_t errlen);
sc_status persist_keyring_load(const char *current, char *const *old, size_t n_old,
                               struct persist_keyring **out, char *err, size_t errlen);

/* persist_seal_overhead(): bytes a sealed value adds to its plaintext (33). */
size_t persist_seal_overhead(void);

/*
 * persist_seal() appends len bytes at in, sealed with kr's current key, to
 * out. Returns SC_OK, SC_ETOOBIG (out's cap), SC_EIO (no random nonce) or
 * SC_ENOMEM; out is unchanged on error. Any thread: each thread keeps one
 * cipher context, made on its first seal or open, reset after each use
 * and freed when the thread exits.
 * persist_open() appends the plaintext of the sealed value (len bytes at
 * in) to out. Returns SC_OK; SC_EPROTO when it is not a sealed value, was
 * changed, or was sealed by a key of the same id that is not this one;
 * SC_ENOTFOUND when no key of kr (NULL: none) has its key id; SC_ETOOBIG
 * (out's cap). out is unchanged on error. Any thread.
 * persist_sealed() tells whether len bytes at in have a sealed value's
 * shape (version byte, long enough); it does not authenticate.
 */
sc_status persist_seal(const struct persist_keyring *kr, const void *in, size_t len,
                       struct sc_buf *out);
sc_status persist_open(const struct persist_keyring *kr, const void *in, size_t len,
                       struct sc_buf *out);
bool persist_sealed(const void *in, size_t len);

#endif
