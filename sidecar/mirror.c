/* mirror.c - the store mirror: task changes into the configured store through persist_ops (dirty set, tombstones, held ingest acks, the start-up load, the spill file). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <jansson.h>

#include "daemon.h"
#include "events.h"
#include "mirror.h"
#include "docw.h"
#include "persist.h"
#include "serving.h"

#define DOC_SCHEMA 1
#define LOAD_WAIT_MS 120000   /* start-up: longest wait for the load before serving */
#define ACK_HOLD_MS 5000      /* longest an ingest ack waits for its write */
#define ACK_MAX 65536         /* held acks past this are answered at once */
#define ACK_SWEEP_MS 250
#define FLUSH_MIN_MS 2000     /* shutdown: shortest wait for the last writes */
#define REJECT_LOG_MS 10000


/*
 * Invariants (docs: README "Persistence"):
 * - every task whose state is not yet acknowledged by the store is on the
 *   dirty list exactly once (t->dirty), in the order it first changed;
 *   a task in a batch in flight is off the list until it changes again or
 *   its item comes back RETRY;
 * - the version of a task only grows, across tasks of the same id and across
 *   processes: it is at least the wall clock in microseconds at the change;
 * - a removed task leaves a tombstone (id, version) in a ring of at most
 *   store.journal_max entries; when the ring is full the oldest tombstone is
 *   dropped and counted.
 */

/* A removed task's delete, waiting to be written. */
struct store_tomb {
    char *id;
    size_t len;
    uint64_t version;
};

/* An ingest acknowledgement held until the task's write is acknowledged. */
struct sc_mirror_ack {
    struct sc_list link;                 /* in the mirror's acks, oldest first */
    struct sc_mirror_ack *tnext;         /* the task's acks */
    bool js;                             /* a JetStream ack: reply is the ack subject, no body */
    struct sc_js *src;                   /* with js: the source that counts it (may be NULL) */
    struct dlq_task *task;
    uint64_t version;
    int64_t deadline;                   /* mono ms */
    char *reply;
    char *body;
    size_t len;
};

struct sc_mirror {
    struct persist *p;
    bool durable;
    struct sc_list dirty;     /* tasks with changes not yet stored (dlq_task.dirty), oldest change first */
    size_t ndirty;
    struct store_tomb *tombs; /* ring */
    size_t tcap, thead, tlen;
    uint64_t tombs_dropped;
    struct sc_list acks;      /* every held ack (sc_mirror_ack.link), oldest first */
    size_t nacks;
    bool ack_durable;         /* store.ack: durable */
    uint64_t refused_acks;    /* answered 503 (store.ack: durable) */
    uint64_t unstored_acks;   /* answered "stored":false */
    struct event *ack_ev;
    bool ack_ev_armed;
    uint64_t vclock;
    uint64_t loaded, load_skipped, load_errors, rejected;
    int64_t last_reject_log;
    json_t *tomb_ids;         /* ids with a pending delete, while a background load runs; else NULL */
    /* the batches in flight (for the spill file): their items in the order sent, how many are not answered yet */
    struct store_fl *fl;
    size_t nfl, flcap, fl_open;
    size_t fl_next;           /* fl[fl_next] is the first item not answered (answers mostly come in order) */
    struct sc_buf fl_ids;
    /* the spill file (store.spill_dir) */
    char *spill_path, *spill_tmp; /* NULL: no spill_dir */
    bool spill_live;          /* the file holds writes not yet acknowledged */
    uint64_t spill_vmax;      /* the newest version it held */
    uint64_t spilled;         /* records in the file written last */
    struct store_raw *raw, *rawfl; /* replayed documents not in memory: waiting, in flight */
    size_t nraw, rawcap, nrawfl, rawflcap;
    json_t *spill_ids;        /* their ids, until the load is over; else NULL */
    struct event *spill_ev;   /* checks whether the spill file is done, after a batch */
    char kv_prefix[96];       /* store.backend jetstream: "<inbox>.kv", the prefix of its answers */
    uint64_t fenced;          /* writes refused: another instance claimed the partition */
    struct persist_keyring *keys; /* secrets.encryption_key_file: seals task_mp and metadata_mp; NULL: clear */
    uint64_t undecryptable;   /* loaded documents no key could open (wrong key or changed): not loaded */
    struct sc_buf sealed;     /* task_doc()'s sealed bytes */
    struct codec *mp_codec;   /* the KV store: converts the records' rendered views (task_record()) */
    struct sc_buf mp_scratch; /* ... and their JSON text */
    sc_mirror_claimed_fn claimed_fn; /* who hears of claims (the cluster layer) */
    void *claimed_ctx;
    struct sc_buf tmp;
};

/* The configured store's name in files and logs: the OpenSearch index or the KV bucket. */
static const char *
store_name(const struct config *cfg)
{
    return cfg->store_backend == CONFIG_STORE_JETSTREAM ? cfg->kv_bucket : cfg->os_index;
}

/* Most writes of one batch of the configured store. */
static size_t
batch_docs(const struct config *cfg)
{
    return (size_t)(cfg->store_backend == CONFIG_STORE_JETSTREAM ? cfg->kv_batch_max
                                                                  : cfg->os_bulk_max_docs);
}

/* ---- versions and the dirty list ------------------------------------------------------------- */

/* A new version above cur and every earlier one: the wall clock (the loop batch's reading) in us. */
static uint64_t
next_version(struct sc_mirror *s, uint64_t cur)
{
    uint64_t v = (uint64_t)sc_held_wall_ms() * 1000;

    if (v <= s->vclock)
        v = s->vclock + 1;
    if (v <= cur)
        v = cur + 1;
    s->vclock = v;
    return v;
}

/* dirty_first() is the task whose change is oldest (NULL: none); dirty_next() the one after t. */
static struct dlq_task *
dirty_entry(const struct sc_mirror *s, struct sc_list *n)
{
    return n != &s->dirty ? SC_LIST_ENTRY(n, struct dlq_task, dirty) : NULL;
}

static struct dlq_task *
dirty_first(const struct sc_mirror *s)
{
    return dirty_entry(s, s->dirty.next);
}

static struct dlq_task *
dirty_next(const struct sc_mirror *s, const struct dlq_task *t)
{
    return dirty_entry(s, t->dirty.next);
}

static void
dirty_link(struct sc_mirror *s, struct dlq_task *t, bool front)
{
    if (sc_list_linked(&t->dirty))
        return;
    if (front)
        sc_list_push_front(&s->dirty, &t->dirty);
    else
        sc_list_push_back(&s->dirty, &t->dirty);
    s->ndirty++;
}

static void
dirty_unlink(struct sc_mirror *s, struct dlq_task *t)
{
    if (!sc_list_linked(&t->dirty))
        return;
    sc_list_remove(&t->dirty);
    s->ndirty--;
}

/* ---- held acks -------------------------------------------------------------------------------- */

/*
 * Who holds a failure sent as a request (DESIGN section 3), with a durable
 * store (docs/store.md, "Who holds an acknowledged failure"):
 * 1. sc_ingest() puts it in the queue (memory) and sc_mirror_changed() on the
 *    dirty list; its answer is held here (sc_mirror_ack()), nobody has been
 *    told anything yet.
 * 2. on_fill() copies the task's state into a _bulk batch: memory still
 *    holds it, the request in flight carries a copy.
 * 3. on_result(): OK or STALE means OpenSearch holds that version: the answer
 *    goes with "stored":true. RETRY puts the task back on the dirty list and
 *    the answer keeps waiting.
 * 4. Without a store acknowledgement the answer says "stored":false (with
 *    store.ack: durable it is a 503 instead, except when the task is gone or
 *    nothing was to be stored): the store turned degraded, refused the
 *    document for good, 5 s passed, or the process stops. Memory still holds
 *    the failure; at shutdown the spill file takes over what OpenSearch did
 *    not take (sc_mirror_flush()).
 */

/* How an answer ends. */
typedef enum {
    ACK_STORED = 0,  /* the store acknowledged the write: "stored":true */
    ACK_NOT_STORED,  /* nothing to store or nothing left to store: "stored":false */
    ACK_UNSTORED,    /* the write is not acknowledged: "stored":false, or 503 with store.ack: durable */
} ack_end;

#define ACK_SUFFIX_MAX 16 /* ,"stored":false} (a body has room for it and a NUL) */

/*
 * Completes and publishes one answer: body (len bytes, room for
 * ACK_SUFFIX_MAX more and a NUL) is the object without its '}'. m is the request when
 * answering at once (sc_respond() checks its reply subject), else NULL and
 * reply is used.
 */
static void
ack_answer(struct sc_daemon *d, natsMsg *m, const char *reply, const struct dlq_task *t, char *body,
           size_t len, ack_end end, const char *why)
{
    struct sc_mirror *s = d->mirror;
    const char *sfx = end == ACK_STORED ? ",\"stored\":true}" : ",\"stored\":false}";
    char err[256], msg[160];
    const char *hdrs[5] = {CODEC_HDR_SERVICE_ERROR, msg, CODEC_HDR_SERVICE_ERROR_CODE, "503", NULL};
    int n;

    if (end == ACK_UNSTORED && s->ack_durable) {
        s->refused_acks++;
        snprintf(msg, sizeof(msg), "not stored: %s", why);
        n = snprintf(err, sizeof(err), "{\"ok\":false,\"error\":{\"code\":503,\"message\":\"%s\"}}", msg);
        if (t)
            sc_event(d, "refused", t, 0, msg);
        if (m)
            sc_respond(d, m, err, (size_t)n, 503, msg);
        else
            sc_publish(d, reply, NULL, err, (size_t)n, hdrs);
        return;
    }
    if (end != ACK_STORED)
        s->unstored_acks++;
    memcpy(body + len, sfx, strlen(sfx) + 1); /* with its NUL: there is room */
    len += strlen(sfx);
    if (m)
        sc_respond(d, m, body, len, 0, NULL);
    else
        sc_publish(d, reply, NULL, body, len, NULL);
}

/* ack_oldest() is the ack held longest, or NULL when none is held. */
static struct sc_mirror_ack *
ack_oldest(const struct sc_mirror *s)
{
    struct sc_list *n = sc_list_first(&s->acks);

    return n ? SC_LIST_ENTRY(n, struct sc_mirror_ack, link) : NULL;
}

static void
ack_unlink(struct sc_mirror *s, struct sc_mirror_ack *a)
{
    sc_list_remove(&a->link);
    if (a->task) {
        struct sc_mirror_ack **pp = &a->task->store_acks;
        while (*pp && *pp != a)
            pp = &(*pp)->tnext;
        if (*pp)
            *pp = a->tnext;
    }
    s->nacks--;
}

/* Sends a's answer and frees it. */
static void
ack_send(struct sc_daemon *d, struct sc_mirror_ack *a, ack_end end, const char *why)
{
    ack_unlink(d->mirror, a);
    if (a->js && end == ACK_UNSTORED)
        sc_js_nak(a->src, d->conn, a->reply, d->cfg->ingest_nak_delay_ms); /* the stream keeps it */
    else if (a->js)
        sc_js_ack(a->src, d->conn, a->reply);
    else
        ack_answer(d, NULL, a->reply, a->task, a->body, a->len, end, why);
    free(a->reply);
    free(a->body);
    free(a);
}

/* Answers t's held acks whose version is at most version (all when version is UINT64_MAX). */
static void
acks_release_task(struct sc_daemon *d, struct dlq_task *t, uint64_t version, ack_end end,
                  const char *why)
{
    struct sc_mirror_ack *a = t->store_acks, *next;

    for (; a; a = next) {
        next = a->tnext;
        if (a->version <= version)
            ack_send(d, a, end, why);
    }
}

static void
acks_release_all(struct sc_daemon *d, const char *why)
{
    struct sc_mirror_ack *a;

    while ((a = ack_oldest(d->mirror)))
        ack_send(d, a, ACK_UNSTORED, why);
}

static void
on_ack_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_mirror *s = d->mirror;
    struct sc_mirror_ack *a;
    int64_t now = sc_now_mono_ms();
    struct timeval tv = {0, ACK_SWEEP_MS * 1000};

    (void)fd;
    (void)what;
    s->ack_ev_armed = false;
    while ((a = ack_oldest(s)) && a->deadline <= now)
        ack_send(d, a, ACK_UNSTORED, "the store did not acknowledge the write within 5 s");
    if (a) {
        event_add(s->ack_ev, &tv);
        s->ack_ev_armed = true;
    }
}

/* Makes a held ack for t's current version answering reply, links it and arms the sweep. */
static struct sc_mirror_ack *
ack_link(struct sc_daemon *d, struct dlq_task *t, const char *reply)
{
    struct sc_mirror *s = d->mirror;
    struct sc_mirror_ack *a = sc_xcalloc(1, sizeof(*a));
    struct timeval tv = {0, ACK_SWEEP_MS * 1000};

    a->task = t;
    a->version = t->version;
    a->deadline = sc_now_mono_ms() + ACK_HOLD_MS;
    a->reply = sc_xstrdup(reply);
    a->tnext = t->store_acks;
    t->store_acks = a;
    sc_list_push_back(&s->acks, &a->link);
    s->nacks++;
    if (!s->ack_ev_armed) {
        event_add(s->ack_ev, &tv);
        s->ack_ev_armed = true;
    }
    persist_kick(s->p, true);
    return a;
}

/* Holds the answer in b for t's write; false when it must go now. */
static bool
ack_hold(struct sc_daemon *d, natsMsg *m, struct dlq_task *t, const struct sc_buf *b)
{
    struct sc_mirror *s = d->mirror;
    const char *reply = natsMsg_GetReply(m);
    struct sc_mirror_ack *a;

    /* A reply sc_respond() would refuse (a wildcard, our own retry inbox, ...) is not held either. */
    if (!t || !sc_conn_reply_ok(d->conn, reply) || s->p->state != PERSIST_OK || s->nacks >= ACK_MAX || !sc_list_linked(&t->dirty))
        return false;
    a = ack_link(d, t, reply);
    a->body = sc_xmalloc(b->len + ACK_SUFFIX_MAX + 1);
    memcpy(a->body, b->data, b->len);
    a->len = b->len;
    return true;
}

void
sc_mirror_ack(struct sc_daemon *d, natsMsg *m, struct dlq_task *t, struct sc_buf *b)
{
    struct sc_mirror *s = d->mirror;

    if (!natsMsg_GetReply(m))
        return;
    if (!s || !s->durable) { /* the memory store: nothing to wait for, no "stored" key */
        sc_buf_appendc(b, '}');
        sc_respond(d, m, b->data, b->len, 0, NULL);
        return;
    }
    if (ack_hold(d, m, t, b))
        return;
    /* Room for the suffix: append the longest one, then take it back. */
    if (sc_buf_append(b, ",\"stored\":false}", ACK_SUFFIX_MAX) != SC_OK)
        return; /* cannot happen: d->out's cap is far above an answer */
    b->len -= ACK_SUFFIX_MAX;
    ack_answer(d, m, NULL, t, b->data, b->len, t ? ACK_UNSTORED : ACK_NOT_STORED,
               s->p->state == PERSIST_OK ? "too many answers wait for the store"
                                         : "the store is degraded");
}

void
sc_mirror_js_ack(struct sc_daemon *d, struct sc_js *src, const char *ack_subject,
                 struct dlq_task *t, bool redelivered)
{
    struct sc_mirror *s = d->mirror;
    struct sc_mirror_ack *a;

    if (!s || !s->durable || !t) { /* the memory store: in memory is accepted */
        sc_js_ack(src, d->conn, ack_subject);
        return;
    }
    if (redelivered)
        sc_mirror_changed(d, t); /* written again: the ack waits for that write */
    if (s->p->state == PERSIST_OK && s->nacks < ACK_MAX && sc_list_linked(&t->dirty)) {
        a = ack_link(d, t, ack_subject);
        a->js = true;
        a->src = src;
        return;
    }
    sc_js_nak(src, d->conn, ack_subject, d->cfg->ingest_nak_delay_ms); /* comes back later */
}

const char *
sc_mirror_refusal(struct sc_daemon *d)
{
    struct sc_mirror *s = d->mirror;
    const char *why = NULL;

    if (!s || !s->durable || !s->ack_durable)
        return NULL;
    if (s->p->state != PERSIST_OK)
        why = "store unavailable: the failure cannot be stored now (store.ack: durable)";
    else if (s->nacks >= ACK_MAX)
        why = "store busy: too many answers wait for the store (store.ack: durable)";
    if (why)
        s->refused_acks++;
    return why;
}

/* ---- tombstones ------------------------------------------------------------------------------- */

static void
tomb_push(struct sc_daemon *d, const char *id, size_t len, uint64_t version)
{
    struct sc_mirror *s = d->mirror;
    struct store_tomb *tb;

    if (s->tlen == s->tcap) {
        /* The journal is full: the oldest delete is dropped (its document stays in the index). */
        tb = &s->tombs[s->thead];
        free(tb->id);
        s->thead = (s->thead + 1) % s->tcap;
        s->tlen--;
        if (s->tombs_dropped++ % 1000 == 0)
            sc_log(SC_LOG_WARN, "store journal full: oldest pending delete dropped", "dropped",
                   sc_log_int((int64_t)s->tombs_dropped), "journal_max",
                   sc_log_int((int64_t)s->tcap), NULL);
    }
    if (s->tomb_ids)
        json_object_setn(s->tomb_ids, id, len, json_true());
    tb = &s->tombs[(s->thead + s->tlen) % s->tcap];
    tb->id = sc_xstrndup(id, len);
    tb->len = len;
    tb->version = version;
    s->tlen++;
    if (s->tomb_ids && json_object_size(s->tomb_ids) > 2 * s->tcap) {
        /*
         * A background load that cannot finish (an outage after some pages)
         * must not let the set grow with every delete: drop it, and the next
         * loaded page rebuilds it from the ring (on_loaded()). Only ids whose
         * delete the full ring already dropped are forgotten: no delete of
         * them is pending any more. Amortised O(1): the rebuilt set holds at
         * most tcap ids.
         */
        json_decref(s->tomb_ids);
        s->tomb_ids = NULL;
    }
}

/* ---- documents -------------------------------------------------------------------------------- */

/* "k": v (a C string, NULL: null), with its _raw twin when needed (persist_doc_str()). */
static void
doc_cstr(struct persist_dw *w, const char *k, const char *v)
{
    persist_dw_str(w, k, v, v ? strlen(v) : 0);
}

/* "k": the MessagePack value rendered as JSON (null when it cannot be), "k_mp": its exact bytes. */
static void
doc_msgpack(struct persist_dw *w, const char *k, const char *k_mp, const char *p, size_t len,
            unsigned depth)
{
    persist_dw_msgpack(w, k, p, len, depth);
    persist_dw_bytes(w, k_mp, p, len);
}

/*
 * Writes "metadata" and "task" as null, and "metadata_mp" and "task_mp" as
 * the base64 of their bytes sealed with the current key (persist_seal()),
 * with "sealed":true. Returns SC_OK or the sealing's error.
 */
static sc_status
doc_sealed(struct sc_mirror *s, struct persist_dw *w, const struct dlq_task *t)
{
    size_t mlen = 0;
    sc_status st;

    sc_buf_reset(&s->sealed);
    if (t->metadata && (st = persist_seal(s->keys, t->metadata, t->metadata_len, &s->sealed)))
        return st;
    mlen = s->sealed.len;
    if ((st = persist_seal(s->keys, t->payload ? t->payload : "", t->payload_len, &s->sealed)))
        return st;
    persist_dw_null(w, "metadata");
    persist_dw_bytes(w, "metadata_mp", t->metadata ? s->sealed.data : NULL, mlen);
    persist_dw_null(w, "task");
    persist_dw_bytes(w, "task_mp", s->sealed.data + mlen, s->sealed.len - mlen);
    persist_dw_bool(w, "sealed", true);
    return SC_OK;
}

/*
 * Writes t's document through w: every field of admin get, and what rebuilds
 * the task exactly (the _raw and _mp twins, persist_doc_str()). Every field
 * named here is in persist_task_properties, OpenSearch's strict mapping of
 * it. The same calls write the JSON document and the KV store's record.
 */
static sc_status
task_fields(struct sc_daemon *d, const struct dlq_task *t, struct persist_dw *w)
{
    unsigned depth = codec_limits_get(d->codec)->max_depth;

    persist_dw_open(w, NULL, '{');
    persist_dw_int(w, "schema", DOC_SCHEMA);
    persist_dw_str(w, "task_id", t->id, t->id_len);
    doc_cstr(w, "status", dlq_task_status_name(t->status));
    persist_dw_bool(w, "parked", t->parked);
    doc_cstr(w, "subject", t->subject);
    doc_cstr(w, "retry_subject", t->retry_subject);
    doc_cstr(w, "park_reason", t->park_reason);
    doc_cstr(w, "error", t->error);
    doc_cstr(w, "error_type", t->error_type);
    doc_cstr(w, "error_category", policy_category_name(t->category));
    doc_cstr(w, "classifier_rule", t->rule_id);
    doc_cstr(w, "retry_policy", policy_retry_name(t->policy));
    doc_cstr(w, "priority", policy_priority_name((policy_priority)t->priority));
    persist_dw_bool(w, "policy_override", t->policy_override);
    persist_dw_int(w, "retry_count", t->retry_count);
    persist_dw_int(w, "max_retries", t->max_retries);
    persist_dw_int(w, "defer_streak", t->defer_streak);
    persist_dw_int(w, "episode", t->episode);
    persist_dw_int(w, "episode_id", t->episode_id);
    if (t->stream_seq)
        persist_dw_uint(w, "stream_seq", t->stream_seq);
    persist_dw_bool(w, "max_retries_own", t->max_retries_own);
    if (dlq_task_backoff(t)) {
        struct policy_delays dl;
        const char *own = dlq_task_backoff(t);
        if (policy_delays_parse(own, strlen(own), &dl, NULL, 0) == SC_OK) {
            persist_dw_open(w, "backoff_ms", '[');
            for (uint32_t i = 0; i < dl.n; i++)
                persist_dw_int(w, NULL, dl.ms[i]);
            persist_dw_close(w, ']');
        }
    }
    if (dlq_task_deps(t)) { /* issue 17: its dependencies, and the ones it is still held for */
        const struct dlq_deps *dp = dlq_task_deps(t);
        persist_dw_open(w, "depends_on", '[');
        for (uint32_t i = 0; i < dp->n; i++)
            persist_dw_str(w, NULL, dp->e[i].id, dp->e[i].len);
        persist_dw_close(w, ']');
        persist_dw_open(w, "waiting_for", '[');
        for (uint32_t i = 0; i < dp->n; i++)
            if (dp->e[i].waiting)
                persist_dw_str(w, NULL, dp->e[i].id, dp->e[i].len);
        persist_dw_close(w, ']');
    }
    persist_dw_time(w, "created_at", t->created_at);
    persist_dw_time(w, "updated_at", t->updated_at);
    persist_dw_time(w, "last_attempt_at", t->last_attempt_at);
    persist_dw_time(w, "next_retry_at", t->next_retry_at);
    persist_dw_time(w, "first_failed_at", t->first_failed_at);
    persist_dw_int(w, "seq", (int64_t)t->seq);
    persist_dw_int(w, "version", (int64_t)t->version);
    /* The OpenSearch store's claim (cluster mode) loads a partition by it. */
    persist_dw_int(w, "partition", dlq_partition_of(t->id, t->id_len, (uint32_t)d->cfg->cluster_partitions));
    persist_dw_open(w, "history", '[');
    for (unsigned i = 0; i < t->hist_len; i++) {
        const struct dlq_attempt *a = &t->hist[(t->hist_head + i) % t->hist_alloc];
        persist_dw_open(w, NULL, '{');
        persist_dw_int(w, "attempt", a->attempt);
        persist_dw_time(w, "at", a->at_ms);
        doc_cstr(w, "outcome", dlq_outcome_name((dlq_outcome_kind)a->outcome));
        doc_cstr(w, "error", a->error);
        persist_dw_close(w, '}');
    }
    persist_dw_close(w, ']');
    doc_msgpack(w, "repos", "repos_mp", t->repos, t->repos_len, depth);
    if (d->mirror->keys) { /* sealed (README "Secrets"): no rendered twin, nothing in the clear */
        sc_status st = doc_sealed(d->mirror, w, t);
        if (st)
            return st;
    } else if (t->payload_raw) { /* an advisory's original: its bytes, not MessagePack */
        doc_msgpack(w, "metadata", "metadata_mp", t->metadata, t->metadata_len, depth);
        persist_dw_msgpack(w, "task", NULL, 0, depth);
        persist_dw_bytes(w, "task_mp", t->payload, t->payload_len);
    } else {
        doc_msgpack(w, "metadata", "metadata_mp", t->metadata, t->metadata_len, depth);
        doc_msgpack(w, "task", "task_mp", t->payload, t->payload_len, depth);
    }
    persist_dw_bool(w, "payload_raw", t->payload_raw);
    persist_dw_bool(w, "payload_missing", t->payload_missing);
    {
        size_t hlen;
        const char *hdrs = dlq_task_headers(t, &hlen);
        persist_dw_bytes(w, "headers_raw", hdrs, hlen);
        if (dlq_task_adv_seq(t))
            persist_dw_uint(w, "adv_seq", dlq_task_adv_seq(t));
    }
    persist_dw_int(w, "task_size", (int64_t)t->payload_len);
    uint32_t olen;
    bool oraw;
    const char *orig = dlq_task_orig_payload(t, &olen, &oraw);
    if (orig) { /* the payload before the first edit (admin edit) */
        persist_dw_bytes(w, "original_mp", orig, olen);
        persist_dw_bool(w, "original_raw", oraw);
    }
    persist_dw_close(w, '}');
    return persist_dw_status(w);
}

/* Appends t's JSON document to b. */
static sc_status
task_doc(struct sc_daemon *d, const struct dlq_task *t, struct sc_buf *b)
{
    struct sc_jw jw;
    struct persist_dw w;

    sc_jw_init(&jw, b);
    persist_dw_init_json(&w, &jw);
    return task_fields(d, t, &w);
}

/* Appends t's KV record (MessagePack) to b. */
static sc_status
task_record(struct sc_daemon *d, const struct dlq_task *t, struct sc_buf *b)
{
    struct persist_dw w;

    persist_dw_init_mp(&w, b, d->mirror->mp_codec, &d->mirror->mp_scratch);
    return task_fields(d, t, &w);
}

/* ---- reading a document back ------------------------------------------------------------------ */

/* Reads string k of src, preferring the exact bytes of k_raw; NULL when absent or null. */
static char *
doc_str(struct sc_mirror *s, json_t *src, const char *k, size_t *len)
{
    return persist_doc_get_str(src, k, len, &s->tmp);
}

static int64_t
doc_int(json_t *src, const char *k)
{
    return persist_doc_get_int(src, k);
}

static int64_t
doc_time(json_t *src, const char *k)
{
    return persist_doc_get_time(src, k);
}

/* Sets the pooled string field which of t from string k of src (see doc_str()). */
static void
load_str(struct sc_daemon *d, struct dlq_task *t, unsigned which, json_t *src, const char *k)
{
    size_t len = 0;
    char *v = doc_str(d->mirror, src, k, &len);

    dlq_task_set_str(&d->m.q, t, which, v, len);
    free(v);
}

/* Decodes base64 field k_mp into a new allocation; false when absent, null or malformed. */
static bool
doc_bytes(struct sc_mirror *s, json_t *src, const char *k, char **out, size_t *len)
{
    return persist_doc_get_bytes(src, k, out, len, &s->tmp);
}

/* doc_bytes() for a task field with a 32-bit length: a value of 4 GiB or more is dropped (none is ever stored). */
static void
doc_bytes32(struct sc_mirror *s, json_t *src, const char *k, char **out, uint32_t *len)
{
    size_t n = 0;

    *len = 0;
    if (!doc_bytes(s, src, k, out, &n))
        return;
    if (n > UINT32_MAX) {
        free(*out);
        *out = NULL;
        return;
    }
    *len = (uint32_t)n;
}

static int
name_index(const char *name, const char *(*fn)(int), int count)
{
    for (int i = 0; name && i < count; i++)
        if (strcmp(fn(i), name) == 0)
            return i;
    return -1;
}

static const char *
status_name_i(int i)
{
    return dlq_task_status_name((dlq_task_status)i);
}

static const char *
outcome_name_i(int i)
{
    return dlq_outcome_name((dlq_outcome_kind)i);
}

/*
 * Whether the document of task id must not be loaded (counted as skipped):
 * the queue holds a newer failure for this id (it arrived while the store
 * was away), or, during the start-up or a background load, the id was
 * removed or replayed from the spill file since (a background load must
 * not bring back an older state). A claim of a partition (cluster mode)
 * loads while the store is ok: what another owner stored is the truth.
 */
static bool
load_skip(struct sc_mirror *s, struct dlq_queue *q, const char *id, size_t id_len)
{
    if (dlq_queue_find(q, id, id_len)) {
        s->load_skipped++;
        return true;
    }
    if (s->p->state == PERSIST_OK)
        return false; /* a claim (cluster mode): the store's state of the partition is the truth */
    if (s->tlen && !s->tomb_ids) {
        /* A background load: tasks removed meanwhile must not come back from their old documents. */
        s->tomb_ids = json_object();
        for (size_t k = 0; k < s->tlen; k++) {
            const struct store_tomb *tb = &s->tombs[(s->thead + k) % s->tcap];
            json_object_setn(s->tomb_ids, tb->id, tb->len, json_true());
        }
    }
    if ((s->tomb_ids && json_object_getn(s->tomb_ids, id, id_len)) ||
        (s->spill_ids && json_object_getn(s->spill_ids, id, id_len))) {
        s->load_skipped++;
        return true;
    }
    return false;
}

/*
 * The task's own delay list from the document's backoff_ms (an array of
 * 1-32 integers of 1 ms - 7 d); anything else (absent, or a document edited
 * out of range) leaves t without one, so the configured lists apply.
 */
static void
load_backoff(struct sc_daemon *d, struct dlq_task *t, const json_t *arr)
{
    struct policy_delays dl = {0};
    char text[POLICY_DELAYS_TEXT_MAX];
    size_t i, n = json_array_size(arr);

    if (!json_is_array(arr) || n == 0 || n > SC_DELAYS_MAX)
        return;
    for (i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        json_int_t ms = json_is_integer(v) ? json_integer_value(v) : 0;
        if (ms < 1 || ms > SC_DELAY_MAX_MS)
            return;
        dl.ms[dl.n++] = (int64_t)ms;
    }
    n = policy_delays_format(&dl, text, sizeof(text));
    dlq_task_set_str(&d->m.q, t, DLQ_TS_BACKOFF, text, n);
}

/*
 * The task's dependencies from the document's depends_on (1-32 distinct
 * task id strings) and waiting_for (those it was held for);
 * dlq_machine_restore() holds it again, and dlq_machine_deps_check() after
 * the load looks the ids up. Anything else leaves t without dependencies.
 */
static void
load_deps(struct dlq_task *t, const json_t *arr, const json_t *waiting)
{
    struct codec_str ids[CODEC_DEPENDS_MAX];
    struct dlq_deps *dp;
    size_t i, n = json_array_size(arr);

    if (!json_is_array(arr) || n == 0 || n > CODEC_DEPENDS_MAX)
        return;
    for (i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_string(v) || json_string_length(v) == 0)
            return;
        ids[i].ptr = json_string_value(v);
        ids[i].len = json_string_length(v);
    }
    dp = dlq_deps_new(ids, (uint32_t)n);
    for (size_t k = 0; k < json_array_size(waiting); k++) {
        const json_t *v = json_array_get(waiting, k);
        for (i = 0; json_is_string(v) && i < n; i++)
            if (!dp->e[i].waiting && dp->e[i].len == json_string_length(v) &&
                memcmp(dp->e[i].id, json_string_value(v), dp->e[i].len) == 0) {
                dp->e[i].waiting = true;
                dp->waiting++;
            }
    }
    dlq_task_set_deps(t, dp);
}

/* Sets t's fields from src, a checked document of status st at version (payload and class aside). */
static void
load_fields(struct sc_daemon *d, struct dlq_task *t, json_t *src, int st, uint64_t version)
{
    struct sc_mirror *s = d->mirror;
    size_t n;

    load_str(d, t, DLQ_TS_SUBJECT, src, "subject");
    load_str(d, t, DLQ_TS_RETRY_SUBJECT, src, "retry_subject");
    load_str(d, t, DLQ_TS_ERROR, src, "error");
    if (!t->error)
        dlq_task_set_str(&d->m.q, t, DLQ_TS_ERROR, "", 0);
    load_str(d, t, DLQ_TS_ERROR_TYPE, src, "error_type");
    load_str(d, t, DLQ_TS_RULE, src, "classifier_rule");
    load_backoff(d, t, json_object_get(src, "backoff_ms"));
    load_deps(t, json_object_get(src, "depends_on"), json_object_get(src, "waiting_for"));
    {
        /* Before the task is filed in its priority's wheel; a document without one is normal. */
        const json_t *pv = json_object_get(src, "priority");
        policy_priority prio = POLICY_PRIO_NORMAL;
        if (json_is_string(pv))
            policy_priority_parse(json_string_value(pv), json_string_length(pv), &prio);
        t->priority = (uint8_t)prio;
    }
    if (!t->rule_id)
        dlq_task_set_str(&d->m.q, t, DLQ_TS_RULE, "default", 7);
    t->park_reason = doc_str(s, src, "park_reason", &n);
    doc_bytes32(s, src, "metadata_mp", &t->metadata, &t->metadata_len);
    doc_bytes32(s, src, "repos_mp", &t->repos, &t->repos_len);
    {
        char *hdrs = NULL;
        size_t hlen = 0;
        doc_bytes(s, src, "headers_raw", &hdrs, &hlen);
        dlq_task_set_headers(t, hdrs, hdrs ? hlen : 0);
        free(hdrs);
        if (json_is_integer(json_object_get(src, "adv_seq")) && doc_int(src, "adv_seq") > 0)
            dlq_task_set_adv_seq(t, (uint64_t)doc_int(src, "adv_seq"));
    }
    t->payload_raw = json_is_true(json_object_get(src, "payload_raw"));
    t->payload_missing = json_is_true(json_object_get(src, "payload_missing"));
    {
        char *orig = NULL;
        size_t olen = 0;
        if (doc_bytes(s, src, "original_mp", &orig, &olen) && olen <= UINT32_MAX)
            dlq_task_set_orig_payload(t, orig, olen, json_is_true(json_object_get(src, "original_raw")));
        free(orig);
    }
    t->policy_override = json_is_true(json_object_get(src, "policy_override"));
    t->max_retries = (int32_t)doc_int(src, "max_retries");
    t->retry_count = (int32_t)doc_int(src, "retry_count");
    t->defer_streak = (int32_t)doc_int(src, "defer_streak");
    t->episode = (int32_t)doc_int(src, "episode");
    if (t->episode < 1)
        t->episode = 1;
    /* The stored episode id keeps Nats-Msg-Id across restarts; a document without one keeps a fresh id. */
    if (doc_int(src, "episode_id") > 0)
        t->episode_id = doc_int(src, "episode_id");
    dlq_queue_episode_seen(&d->m.q, t->episode_id);
    /* JetStream ingest: a redelivery of what the stored task holds stays no new failure. */
    if (json_is_integer(json_object_get(src, "stream_seq")) && doc_int(src, "stream_seq") > 0)
        t->stream_seq = (uint64_t)doc_int(src, "stream_seq");
    /* A document without the flag keeps its stored budget. A default budget follows today's default. */
    t->max_retries_own = !json_is_false(json_object_get(src, "max_retries_own"));
    if (!t->max_retries_own && st != DLQ_TASK_EXHAUSTED)
        t->max_retries = (int32_t)d->cfg->default_max_retries;
    t->updated_at = doc_time(src, "updated_at");
    t->last_attempt_at = doc_time(src, "last_attempt_at");
    t->next_retry_at = doc_time(src, "next_retry_at");
    t->first_failed_at = doc_time(src, "first_failed_at");
    t->version = version > (uint64_t)doc_int(src, "version") ? version : (uint64_t)doc_int(src, "version");
    if (t->version > s->vclock)
        s->vclock = t->version;
}

/*
 * Opens a sealed document's bytes: *payload (plen bytes, replaced by its
 * plaintext) and metadata_mp (into *meta, NULL when absent). false when a
 * value cannot be opened (no key of its id, or changed): the document is
 * counted (undecryptable), logged with its task id, not loaded, and left
 * as it is in the store, so that a restart with the right key loads it.
 */
static bool
unseal(struct sc_mirror *s, const char *id, json_t *src, char **payload, size_t *plen,
       char **meta, uint32_t *mlen)
{
    char *m = NULL;
    size_t n = 0;
    sc_status st;

    sc_buf_reset(&s->sealed);
    st = persist_open(s->keys, *payload, *plen, &s->sealed);
    if (!st) {
        free(*payload);
        *payload = sc_xmalloc(s->sealed.len + 1);
        memcpy(*payload, s->sealed.data, s->sealed.len);
        *plen = s->sealed.len;
        if (doc_bytes(s, src, "metadata_mp", &m, &n)) {
            sc_buf_reset(&s->sealed);
            st = persist_open(s->keys, m, n, &s->sealed);
            free(m);
            if (!st && s->sealed.len <= UINT32_MAX) {
                *meta = sc_xmalloc(s->sealed.len + 1);
                memcpy(*meta, s->sealed.data, s->sealed.len);
                *mlen = (uint32_t)s->sealed.len;
            }
        }
    }
    if (!st)
        return true;
    if (s->undecryptable++ < 1000)
        sc_log(SC_LOG_ERROR,
               "store: a sealed record cannot be opened; not loaded, left in the store "
               "(README \"Secrets\")",
               "task_id", id, "reason",
               st == SC_ENOTFOUND ? "no configured key has its key id"
                                  : "authentication failed: another key or changed bytes",
               NULL);
    return false;
}

/* One loaded document of task id: rebuilds the task and puts it back on the wheel. */
static void
load_task(struct sc_daemon *d, const char *id, size_t id_len, uint64_t version, json_t *src)
{
    struct sc_mirror *s = d->mirror;
    struct dlq_task *t;
    int64_t now = sc_now_wall_ms();
    int st = name_index(json_string_value(json_object_get(src, "status")), status_name_i,
                        DLQ_TASK_STATUS_COUNT);
    policy_category cat = POLICY_CAT_PERMANENT;
    policy_retry pol = POLICY_NEVER;
    const char *cs = json_string_value(json_object_get(src, "error_category"));
    const char *ps = json_string_value(json_object_get(src, "retry_policy"));
    char *payload = NULL;
    size_t plen = 0, n;
    bool parked, raw = json_is_true(json_object_get(src, "payload_raw"));
    bool sealed = json_is_true(json_object_get(src, "sealed"));
    char *meta = NULL;
    uint32_t mlen = 0;
    json_t *hist, *h;
    size_t i;

    if (load_skip(s, &d->m.q, id, id_len))
        return;
    /*
     * A claim (cluster mode, keep_completed) takes finished tasks too, as
     * their former owner held them: a late redelivery of their failure is
     * then known as one (its stream sequence), not a new task.
     */
    if (st != DLQ_TASK_PENDING && st != DLQ_TASK_RETRYING && st != DLQ_TASK_EXHAUSTED &&
        !((st == DLQ_TASK_COMPLETED || st == DLQ_TASK_ARCHIVED) && d->serving &&
          d->cfg->store_keep_completed))
        goto bad;
    if (!cs || policy_category_parse(cs, strlen(cs), &cat) || !ps ||
        policy_retry_parse(ps, strlen(ps), &pol))
        goto bad;
    if (!doc_bytes(s, src, "task_mp", &payload, &plen))
        goto bad;
    if (sealed && !unseal(s, id, src, &payload, &plen, &meta, &mlen)) {
        free(payload);
        return;
    }
    if ((!raw && (codec_msgpack_check(payload, plen, codec_limits_get(d->codec)->max_depth, &n) !=
                      SC_OK ||
                  n != plen)))
        goto bad;
    if (!json_is_string(json_object_get(src, "subject")))
        goto bad;

    t = dlq_queue_add_room(&d->m.q, id, id_len, plen, doc_time(src, "created_at"));
    dlq_task_set_payload(t, payload, plen);
    free(payload);
    payload = NULL;
    dlq_queue_set_class(&d->m.q, t, cat, pol); /* keeps the queue's counts right */
    load_fields(d, t, src, st, version);
    if (sealed) { /* the opened metadata, not the sealed bytes load_fields() took */
        free(t->metadata);
        t->metadata = meta;
        t->metadata_len = mlen;
        meta = NULL;
    }
    hist = json_object_get(src, "history");
    json_array_foreach(hist, i, h) {
        int k = name_index(json_string_value(json_object_get(h, "outcome")), outcome_name_i,
                           DLQ_OUT_OPERATOR + 1);
        size_t elen = 0;
        char *e = doc_str(s, h, "error", &elen);
        if (k >= 0)
            dlq_queue_history(&d->m.q, t, (dlq_outcome_kind)k, (int32_t)doc_int(h, "attempt"),
                             doc_time(h, "at"), e, elen);
        free(e);
    }
    parked = json_is_true(json_object_get(src, "parked"));
    dlq_task_account(&d->m.q, t);
    dlq_machine_restore(&d->m, t, (dlq_task_status)st, parked, now, sc_now_mono_ms());
    s->loaded++;
    return;

bad:
    free(payload);
    free(meta);
    if (s->load_errors++ < 10)
        sc_log(SC_LOG_WARN, "store: a document could not be loaded; skipped", "task_id", id, NULL);
}

/*
 * One loaded document. The task's id is its task_id field (task_id_raw's
 * exact bytes first), never key: OpenSearch keeps an id it cannot take as
 * _id (past 512 bytes) under a hash of it (persist_opensearch_doc_id()).
 */
static void
on_loaded(void *ctx, const char *key, size_t key_len, uint64_t version, json_t *src)
{
    struct sc_daemon *d = ctx;
    size_t id_len = 0;
    char *id = doc_str(d->mirror, src, "task_id", &id_len);

    const char *st = json_string_value(json_object_get(src, "status"));

    (void)key_len; /* key is NUL-terminated */
    if (st && (strcmp(st, "completed") == 0 || strcmp(st, "archived") == 0) &&
        !(d->serving && d->mirror->p->state == PERSIST_OK && d->cfg->store_keep_completed)) {
        free(id); /* kept (store.keep_completed), never loaded: a KV bucket hands every record back */
        return;
    }
    if (!id || !id_len) {
        if (d->mirror->load_errors++ < 10)
            sc_log(SC_LOG_WARN, "store: a document without task_id could not be loaded; skipped",
                   "_id", key, NULL);
        free(id);
        return;
    }
    load_task(d, id, id_len, version, src);
    free(id);
}

/* ---- the batch in flight and the spill file --------------------------------------------------- */

/*
 * The spill file (README "Persistence", docs/store.md) keeps, across a
 * restart, the writes OpenSearch did not take. It is written once, at
 * shutdown (sc_mirror_flush()), after the drain: to <dir>/<index>.spill.tmp,
 * fsync'ed, renamed over <dir>/<index>.spill, and the directory fsync'ed.
 * One JSON object a line: a header {"dlq_spill":1,...}, then
 * {"put":<the task's document>} or {"delete":{"id":...,"version":N}}, and a
 * trailer {"end":{"records":N}}. At start it is replayed before the load:
 * non-terminal tasks back into memory (dirty), deletes into the tombstone
 * ring, other documents (completed or archived, with keep_completed) into a
 * list written as they are. It is removed once every write it held is
 * acknowledged (or superseded by a newer version), or at the next shutdown
 * when nothing is queued. Its size is capped (store.spill_max_bytes): a
 * record that would pass the cap is not written, and counted as not stored.
 */
#define SPILL_TRAILER_MAX 64
#define SPILL_LINE_MAX (128u * 1024 * 1024) /* one record: a document up to what a _bulk body may carry */

/* A document replayed from the spill file that does not go back into memory. */
struct store_raw {
    char *id;
    size_t len;
    uint64_t version;
    char *doc;
    size_t doclen;
};

/* One item of a batch in flight (ids in s->fl_ids). */
struct store_fl {
    size_t off, len;
    uint64_t version;
    bool del;
    bool done; /* answered */
};

static void
fl_add(struct sc_mirror *s, const char *id, size_t len, uint64_t version, bool del)
{
    struct store_fl *f;

    if (s->nfl == s->flcap) {
        s->flcap = s->flcap ? s->flcap * 2 : 64;
        s->fl = sc_xrealloc(s->fl, s->flcap * sizeof(*s->fl));
    }
    f = &s->fl[s->nfl++];
    f->off = s->fl_ids.len;
    f->len = len;
    f->version = version;
    f->del = del;
    f->done = false;
    if (sc_buf_append(&s->fl_ids, id, len) != SC_OK)
        s->nfl--; /* an id past the buffer's cap: the spill covers it through the dirty list only */
    else
        s->fl_open++;
}

static void
raw_free(struct store_raw *r)
{
    free(r->id);
    free(r->doc);
}

static void
raw_push(struct sc_mirror *s, struct store_raw *r)
{
    if (s->nraw == s->rawcap) {
        s->rawcap = s->rawcap ? s->rawcap * 2 : 16;
        s->raw = sc_xrealloc(s->raw, s->rawcap * sizeof(*s->raw));
    }
    s->raw[s->nraw++] = *r;
}

/*
 * Forgets the answered items of the batches in flight (all of them when
 * none is in flight: the OpenSearch store's one request, or the KV store's
 * last batch, is answered).
 */
static void
fl_compact(struct sc_mirror *s)
{
    size_t kept = 0, at = 0;

    if (!persist_busy(s->p)) {
        s->nfl = s->fl_open = s->fl_next = 0;
        sc_buf_reset(&s->fl_ids);
        while (s->nrawfl) /* not answered: cannot happen, but never lose them */
            raw_push(s, &s->rawfl[--s->nrawfl]);
        return;
    }
    for (size_t i = s->fl_next; i < s->nfl; i++) {
        struct store_fl f = s->fl[i];
        if (f.done)
            continue;
        memmove(s->fl_ids.data + at, s->fl_ids.data + f.off, f.len); /* at <= f.off */
        f.off = at;
        at += f.len;
        s->fl[kept++] = f;
    }
    s->nfl = kept;
    s->fl_next = 0;
    s->fl_ids.len = at;
}

/* Marks the item of a batch in flight that it answers; false when none is open. */
static bool
fl_answered(struct sc_mirror *s, const struct persist_item *it)
{
    for (size_t i = s->fl_next; i < s->nfl; i++) {
        struct store_fl *f = &s->fl[i];
        if (f->done || f->version != it->version || f->del != it->del || f->len != it->id_len ||
            memcmp(s->fl_ids.data + f->off, it->id, it->id_len) != 0)
            continue;
        f->done = true;
        while (s->fl_next < s->nfl && s->fl[s->fl_next].done)
            s->fl_next++;
        return true;
    }
    return false;
}

/*
 * The start of a fill: the answered items of the batches in flight are
 * forgotten; replayed documents go first. Returns false when the batch is
 * full.
 */
static bool
spill_fill(struct sc_daemon *d, struct persist_batch *b)
{
    struct sc_mirror *s = d->mirror;
    sc_status st;

    fl_compact(s);
    while (s->nraw) {
        struct store_raw *r = &s->raw[s->nraw - 1];
        struct sc_buf *buf;
        if (!persist_batch_accepts(b, r->id, r->len))
            return false; /* one write per partition per batch: the next batch goes on */
        buf = persist_batch_put_begin(b, r->id, r->len, r->version);
        if (!buf)
            return false;
        if (persist_batch_msgpack(b)) { /* the KV store's record of the replayed JSON document */
            const char *mp;
            size_t mplen;
            st = codec_json_msgpack(s->mp_codec, r->doc, r->doclen, &mp, &mplen);
            if (st == SC_OK)
                st = sc_buf_append(buf, mp, mplen);
            else
                st = SC_ETOOBIG; /* never fits a record: dropped below */
        } else {
            st = sc_buf_append(buf, r->doc, r->doclen);
        }
        if (st != SC_OK)
            persist_batch_put_abort(b);
        else
            st = persist_batch_put_end(b);
        if (st && persist_batch_count(b) > 0)
            return false;
        if (st) {
            s->rejected++;
            sc_log(SC_LOG_WARN, "store: a spilled document is too large to write; dropped", "task_id",
                   r->id, NULL);
            raw_free(r);
            s->nraw--;
            continue;
        }
        fl_add(s, r->id, r->len, r->version, false);
        if (s->nrawfl == s->rawflcap) {
            s->rawflcap = s->rawflcap ? s->rawflcap * 2 : 16;
            s->rawfl = sc_xrealloc(s->rawfl, s->rawflcap * sizeof(*s->rawfl));
        }
        s->rawfl[s->nrawfl++] = *r;
        s->nraw--;
    }
    return true;
}

/* Whether a write the spill file held is still neither acknowledged nor superseded. */
static bool
spill_pending(const struct sc_mirror *s)
{
    if (s->fl_open || s->nraw || s->nrawfl)
        return true;
    for (const struct dlq_task *t = dirty_first(s); t; t = dirty_next(s, t))
        if (t->version <= s->spill_vmax)
            return true;
    for (size_t i = 0; i < s->tlen; i++)
        if (s->tombs[(s->thead + i) % s->tcap].version <= s->spill_vmax)
            return true;
    return false;
}

/* Removes the spill file (its writes are stored, or a newer one replaces it). */
static void
spill_remove(struct sc_daemon *d)
{
    struct sc_mirror *s = d->mirror;

    if (!s->spill_path)
        return;
    if (unlink(s->spill_path) == 0)
        sc_log(SC_LOG_INFO, "store: spill file removed; its writes are stored", "file",
               s->spill_path, NULL);
    s->spill_live = false;
}

/* After a batch is answered (deferred to the loop, once every item is back): is the spill file done? */
static void
on_spill_check(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_mirror *s = d->mirror;

    (void)fd;
    (void)what;
    if (s->spill_live && s->p->state == PERSIST_OK && !spill_pending(s))
        spill_remove(d);
}

static void
spill_check_later(struct sc_mirror *s)
{
    struct timeval tv = {0, 0};

    if (s->spill_live && s->spill_ev)
        evtimer_add(s->spill_ev, &tv);
}

/*
 * An item's result: true when it was a replayed document (handled here).
 * Counts the items of the batch in flight as they come back.
 */
static bool
spill_result(struct sc_daemon *d, const struct persist_item *it, persist_result r)
{
    struct sc_mirror *s = d->mirror;

    if (fl_answered(s, it) && s->fl_open && --s->fl_open == 0)
        spill_check_later(s);
    if (it->del)
        return false;
    for (size_t i = 0; i < s->nrawfl; i++) {
        struct store_raw *raw = &s->rawfl[i];
        if (raw->version != it->version || raw->len != it->id_len ||
            memcmp(raw->id, it->id, it->id_len) != 0)
            continue;
        if (r == PERSIST_ITEM_RETRY) {
            raw_push(s, raw);
            persist_kick(s->p, false);
        } else {
            raw_free(raw);
        }
        s->rawfl[i] = s->rawfl[--s->nrawfl];
        return true;
    }
    return false;
}

/* Writes one line to the spill file unless it passes the cap; false when not written. */
static bool
spill_line(struct sc_mirror *s, FILE *f, const struct sc_buf *line, size_t cap, size_t *size,
           bool *io_error)
{
    if (*io_error || *size + line->len + SPILL_TRAILER_MAX > cap)
        return false;
    if (fwrite(line->data, 1, line->len, f) != line->len) {
        *io_error = true;
        return false;
    }
    *size += line->len;
    s->spilled++;
    return true;
}

/* The line of t's current state. */
static sc_status
spill_put_line(struct sc_daemon *d, const struct dlq_task *t, struct sc_buf *b)
{
    sc_status st;

    sc_buf_reset(b);
    if ((st = sc_buf_append(b, "{\"put\":", 7)) || (st = task_doc(d, t, b)))
        return st;
    return sc_buf_append(b, "}\n", 2);
}

static sc_status
spill_raw_line(const struct store_raw *r, struct sc_buf *b)
{
    sc_status st;

    sc_buf_reset(b);
    if ((st = sc_buf_append(b, "{\"put\":", 7)) || (st = sc_buf_append(b, r->doc, r->doclen)))
        return st;
    return sc_buf_append(b, "}\n", 2);
}

static sc_status
spill_del_line(const char *id, size_t len, uint64_t version, struct sc_buf *b)
{
    struct sc_jw w;

    sc_buf_reset(b);
    sc_jw_init(&w, b);
    sc_jw_open(&w, NULL, '{');
    sc_jw_open(&w, "delete", '{');
    persist_doc_str(&w, "id", id, len);
    sc_jw_int(&w, "version", (int64_t)version);
    sc_jw_close(&w, '}');
    sc_jw_raw(&w, "}\n", 2);
    return w.st;
}

/*
 * Writes every queued record to the open spill file f (dirty tasks first,
 * then what the batch in flight carries, replayed documents, deletes).
 * Returns how many could not be written (the cap, or an I/O error, which
 * sets *io_error).
 */
static size_t
spill_records(struct sc_daemon *d, FILE *f, struct sc_buf *line, size_t *size, bool *io_error)
{
    struct sc_mirror *s = d->mirror;
    size_t cap = (size_t)d->cfg->store_spill_max_bytes, missed = 0;
    bool busy = persist_busy(s->p);

    /* The tasks first: they are the failures. */
    for (struct dlq_task *t = dirty_first(s); t; t = dirty_next(s, t))
        if (spill_put_line(d, t, line) != SC_OK || !spill_line(s, f, line, cap, size, io_error))
            missed++;
    for (size_t i = 0; busy && i < s->nfl; i++) {
        const struct store_fl *fl = &s->fl[i];
        struct dlq_task *t;
        if (fl->del || fl->done)
            continue;
        t = dlq_queue_find(&d->m.q, s->fl_ids.data + fl->off, fl->len);
        if (t && !sc_list_linked(&t->dirty) &&
            (spill_put_line(d, t, line) != SC_OK || !spill_line(s, f, line, cap, size, io_error)))
            missed++;
        /* dirty: written above; gone: its delete is in the ring; a replayed document: below */
    }
    for (size_t i = 0; i < s->nraw + (busy ? s->nrawfl : 0); i++) {
        const struct store_raw *r = i < s->nraw ? &s->raw[i] : &s->rawfl[i - s->nraw];
        if (spill_raw_line(r, line) != SC_OK || !spill_line(s, f, line, cap, size, io_error))
            missed++;
    }
    for (size_t i = 0; i < s->tlen; i++) {
        const struct store_tomb *tb = &s->tombs[(s->thead + i) % s->tcap];
        if (spill_del_line(tb->id, tb->len, tb->version, line) != SC_OK ||
            !spill_line(s, f, line, cap, size, io_error))
            missed++;
    }
    for (size_t i = 0; busy && i < s->nfl; i++) {
        const struct store_fl *fl = &s->fl[i];
        if (fl->del && !fl->done && (spill_del_line(s->fl_ids.data + fl->off, fl->len, fl->version, line) ||
                        !spill_line(s, f, line, cap, size, io_error)))
            missed++;
    }
    return missed;
}

/*
 * Ends the spill file: the trailer, fsync, close (f is closed in every
 * case), the rename over the live name and the directory's fsync. Returns
 * whether the file took the live name; *io_error is set (errno kept) on any
 * failure, also when only the directory's fsync failed after the rename.
 */
static bool
spill_commit(struct sc_daemon *d, FILE *f, struct sc_buf *line, bool *io_error)
{
    struct sc_mirror *s = d->mirror;
    int dfd, err;

    sc_buf_reset(line);
    sc_buf_appendf(line, "{\"end\":{\"records\":%llu}}\n", (unsigned long long)s->spilled);
    if (*io_error || fwrite(line->data, 1, line->len, f) != line->len || fflush(f) != 0 ||
        fsync(fileno(f)) != 0) {
        err = errno;
        fclose(f);
        errno = err;
        *io_error = true;
        return false;
    }
    if (fclose(f) != 0 || rename(s->spill_tmp, s->spill_path) != 0) {
        *io_error = true;
        return false;
    }
    dfd = open(d->cfg->store_spill_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0)
        *io_error = true; /* the file is complete; only the rename may not survive a power loss */
    if (dfd >= 0) {
        err = errno;
        close(dfd);
        errno = err;
    }
    return true;
}

/*
 * Writes the queued writes (queued of them, as counted by the caller) to
 * the spill file. Returns how many are covered by it: written, or
 * superseded by a record that was (a write in flight whose task is dirty
 * again, or removed since). 0 when there is no spill_dir or the file cannot
 * be written (logged).
 */
static size_t
spill_write(struct sc_daemon *d, size_t queued)
{
    struct sc_mirror *s = d->mirror;
    size_t cap = (size_t)d->cfg->store_spill_max_bytes, size = 0, missed = 0;
    bool io_error = false, renamed = false;
    struct sc_buf line;
    char ts[SC_RFC3339_LEN];
    FILE *f = NULL;
    int fd;

    if (!s->spill_path)
        return 0;
    sc_buf_init(&line, SPILL_LINE_MAX);
    fd = open(s->spill_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        io_error = true;
        goto done;
    }
    fd = -1;
    sc_format_rfc3339(sc_now_wall_ms(), ts);
    sc_buf_appendf(&line, "{\"dlq_spill\":1,\"index\":\"%s\",\"written_at\":\"%s\",\"queued\":%zu}\n",
                   store_name(d->cfg), ts, queued);
    s->spilled = 0;
    if (!spill_line(s, f, &line, cap, &size, &io_error))
        goto done;
    s->spilled = 0; /* the header is not a record */
    missed = spill_records(d, f, &line, &size, &io_error);
    renamed = spill_commit(d, f, &line, &io_error);
    f = NULL;
done:
    if (io_error)
        sc_log(SC_LOG_ERROR, "store: cannot write the spill file", "file", s->spill_tmp, "error",
               strerror(errno), NULL);
    if (f)
        fclose(f);
    if (fd >= 0)
        close(fd);
    sc_buf_destroy(&line);
    if (!renamed) {
        unlink(s->spill_tmp);
        return 0;
    }
    if (missed)
        sc_log(SC_LOG_ERROR, "store: spill file full (store.spill_max_bytes): writes not spilled",
               "not_spilled", sc_log_int((int64_t)missed), "spill_max_bytes",
               sc_log_int(d->cfg->store_spill_max_bytes), NULL);
    return missed > queued ? 0 : queued - missed;
}

/* Replays one {"put":doc} record of the spill file. Returns false when it is unusable. */
static bool
spill_replay_put(struct sc_daemon *d, json_t *src)
{
    struct sc_mirror *s = d->mirror;
    const char *st = json_string_value(json_object_get(src, "status"));
    size_t len = 0;
    char *id = doc_str(s, src, "task_id", &len);
    uint64_t version = (uint64_t)doc_int(src, "version");
    struct dlq_task *t;
    struct store_raw r;
    bool ok = false;

    if (!id || !len || !st)
        goto done;
    if (version > s->spill_vmax)
        s->spill_vmax = version;
    if (version > s->vclock)
        s->vclock = version;
    if (strcmp(st, "pending") == 0 || strcmp(st, "retrying") == 0 || strcmp(st, "exhausted") == 0) {
        if (dlq_queue_find(&d->m.q, id, len))
            goto done; /* one record per task: a second one is damage */
        load_task(d, id, len, version, src);
        t = dlq_queue_find(&d->m.q, id, len);
        if (!t)
            goto done;
        dirty_link(s, t, false); /* its state is not in OpenSearch yet */
        ok = true;
        goto done;
    }
    /* Completed or archived (keep_completed): written as it is, never loaded. */
    memset(&r, 0, sizeof(r));
    r.doc = json_dumps(src, JSON_COMPACT);
    if (!r.doc)
        goto done;
    r.doclen = strlen(r.doc);
    r.id = id;
    r.len = len;
    r.version = version;
    id = NULL;
    if (!s->spill_ids)
        s->spill_ids = json_object();
    json_object_setn(s->spill_ids, r.id, r.len, json_true()); /* the load must not bring back an older state */
    raw_push(s, &r);
    ok = true;
done:
    free(id);
    return ok;
}

/*
 * Replays the spill file left by the last run, if any, before the load
 * (see above). Never fails: what cannot be read is logged and counted.
 */
static void
spill_replay(struct sc_daemon *d)
{
    struct sc_mirror *s = d->mirror;
    FILE *f = fopen(s->spill_path, "r");
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t puts = 0, dels = 0, bad = 0, records = 0;
    bool ended = false;

    if (!f) {
        if (errno != ENOENT)
            sc_log(SC_LOG_ERROR, "store: cannot read the spill file", "file", s->spill_path, "error",
                   strerror(errno), NULL);
        return;
    }
    while ((n = getline(&buf, &cap, f)) > 0) {
        json_t *j = json_loadb(buf, (size_t)n, JSON_ALLOW_NUL, NULL), *v;
        if (!j || !json_is_object(j)) {
            bad++;
        } else if ((v = json_object_get(j, "put")) && json_is_object(v)) {
            records++;
            if (spill_replay_put(d, v))
                puts++;
            else
                bad++;
        } else if ((v = json_object_get(j, "delete")) && json_is_object(v)) {
            size_t len = 0;
            char *id = doc_str(s, v, "id", &len);
            uint64_t version = (uint64_t)doc_int(v, "version");
            records++;
            if (id && len && !dlq_queue_find(&d->m.q, id, len)) {
                tomb_push(d, id, len, version);
                if (version > s->spill_vmax)
                    s->spill_vmax = version;
                if (version > s->vclock)
                    s->vclock = version;
                dels++;
            } else if (!id || !len) {
                bad++;
            }
            free(id);
        } else if ((v = json_object_get(j, "end"))) {
            ended = (uint64_t)doc_int(v, "records") == records;
        }
        json_decref(j);
    }
    free(buf);
    fclose(f);
    s->spill_live = puts + dels + s->nraw > 0;
    sc_log(ended && !bad ? SC_LOG_INFO : SC_LOG_ERROR,
           ended ? "store: replaying the spill file of the last run"
                 : "store: replaying the spill file of the last run, which is incomplete (no end record)",
           "file", s->spill_path, "tasks", sc_log_int((int64_t)puts - (int64_t)s->nraw), "documents",
           sc_log_int((int64_t)s->nraw), "deletes", sc_log_int((int64_t)dels), "unreadable",
           sc_log_int((int64_t)bad), NULL);
    if (!s->spill_live)
        spill_remove(d);
}

/* ---- the owner callbacks ---------------------------------------------------------------------- */

static void
on_fill(void *ctx, struct persist_batch *b)
{
    struct sc_daemon *d = ctx;
    struct sc_mirror *s = d->mirror;
    struct dlq_task *t, *next;
    size_t tombs_first = s->tlen;
    sc_status st;

    if (!spill_fill(d, b))
        return;
    /* Deletes are small: half the batch may go to them first, the rest after the tasks. */
    for (int pass = 0; pass < 2; pass++) {
        size_t limit = pass == 0 ? (tombs_first + 1) / 2 : s->tlen;
        while (s->tlen && limit--) {
            struct store_tomb *tb = &s->tombs[s->thead];
            struct dlq_task *live = dlq_queue_find(&d->m.q, tb->id, tb->len);
            if (live && live->version > tb->version) {
                /*
                 * The id lives again since: its newer write replaces the
                 * document, and this delete, sent after it, would remove it
                 * (cluster mode's OpenSearch versions and the KV store
                 * follow the order of sending, not the task's version).
                 */
                free(tb->id);
                s->thead = (s->thead + 1) % s->tcap;
                s->tlen--;
                continue;
            }
            if (!persist_batch_accepts(b, tb->id, tb->len))
                break; /* deletes go in order: this one and those after it wait for the next batch */
            if (persist_batch_delete(b, tb->id, tb->len, tb->version) != SC_OK)
                return;
            fl_add(s, tb->id, tb->len, tb->version, true);
            free(tb->id);
            s->thead = (s->thead + 1) % s->tcap;
            s->tlen--;
        }
        if (pass == 1)
            break;
        for (t = dirty_first(s); t; t = next) {
            struct sc_buf *buf;
            next = dirty_next(s, t);
            if (!persist_batch_has_room(b))
                return;
            if (!persist_batch_accepts(b, t->id, t->id_len))
                continue; /* its partition has a write in this batch: the next batch takes it */
            buf = persist_batch_put_begin(b, t->id, t->id_len, t->version);
            if (!buf)
                return;
            st = persist_batch_msgpack(b) ? task_record(d, t, buf) : task_doc(d, t, buf);
            if (st != SC_OK) {
                persist_batch_put_abort(b);
                /*
                 * With other items in the batch the document may well fit in
                 * the next one (the body's cap), and ENOMEM passes: the batch
                 * is full, the task stays dirty. Only a document too large
                 * alone is given up.
                 */
                if (persist_batch_count(b) > 0 || st != SC_ETOOBIG)
                    return;
            } else {
                st = persist_batch_put_end(b);
            }
            if (st == SC_EFULL || (st && persist_batch_count(b) > 0))
                return;
            dirty_unlink(s, t);
            if (!st)
                fl_add(s, t->id, t->id_len, t->version, false);
            if (st) {
                s->rejected++;
                sc_log(SC_LOG_WARN, "store: task document too large to write; kept in memory only",
                       "task_id", t->id, NULL);
                acks_release_task(d, t, UINT64_MAX, ACK_UNSTORED,
                                  "the task's document is too large for the store");
            }
        }
    }
}

static void
on_result(void *ctx, const struct persist_item *it, persist_result r, const char *reason)
{
    struct sc_daemon *d = ctx;
    struct sc_mirror *s = d->mirror;
    struct dlq_task *t;
    int64_t now;

    if (spill_result(d, it, r))
        return; /* a document replayed from the spill file */
    t = dlq_queue_find(&d->m.q, it->id, it->id_len);
    if (it->del) {
        if (r == PERSIST_ITEM_RETRY && !t)
            tomb_push(d, it->id, it->id_len, it->version);
        return;
    }
    if (!t)
        return; /* removed since: its tombstone carries a newer version */
    switch (r) {
    case PERSIST_ITEM_RETRY:
        dirty_link(s, t, true);
        persist_kick(s->p, false);
        break;
    case PERSIST_ITEM_REJECTED:
        s->rejected++;
        now = sc_now_mono_ms();
        if (!s->last_reject_log || now - s->last_reject_log >= REJECT_LOG_MS) {
            s->last_reject_log = now;
            sc_log(SC_LOG_WARN, "store refused a task document; the task stays in memory",
                   "task_id", t->id, "reason", reason ? reason : "", "rejected",
                   sc_log_int((int64_t)s->rejected), NULL);
        }
        acks_release_task(d, t, it->version, ACK_UNSTORED, "the store refused the task's document");
        break;
    case PERSIST_ITEM_OK:
    case PERSIST_ITEM_STALE:
        acks_release_task(d, t, it->version, ACK_STORED, NULL);
        break;
    case PERSIST_ITEM_FENCED:
        s->fenced++;
        if (d->serving) {
            uint32_t p = dlq_partition_of(t->id, t->id_len, (uint32_t)d->cfg->cluster_partitions);
            if (sc_serving_held(d, p)) {
                /*
                 * Still this member's (its lease is valid): a claim another
                 * member gave up put its fence after ours. Fence again and
                 * write again; the answers keep waiting.
                 */
                persist_refence(s->p, p);
                dirty_link(s, t, true);
                break;
            }
        }
        /* Another member owns its partition now (the lease layer forgets it): nothing stored here. */
        acks_release_task(d, t, UINT64_MAX, ACK_UNSTORED, "the task's partition moved to another instance");
        break;
    }
}

/* A claim asked with sc_mirror_claim() is over. */
static void
on_claimed(void *ctx, unsigned partition, bool ok, const char *error)
{
    struct sc_daemon *d = ctx;
    struct sc_mirror *s = d->mirror;

    if (!ok)
        sc_log(SC_LOG_WARN, "store: claiming a partition failed; trying again", "partition",
               sc_log_int(partition), "error", error ? error : "", NULL);
    if (ok) /* its held tasks' dependencies may have finished while another member stored them */
        dlq_machine_deps_check(&d->m, sc_now_wall_ms(), sc_now_mono_ms());
    if (s->claimed_fn)
        s->claimed_fn(s->claimed_ctx, partition, ok);
}

sc_status
sc_mirror_claim(struct sc_daemon *d, unsigned partition, sc_mirror_claimed_fn fn, void *ctx)
{
    struct sc_mirror *s = d->mirror;

    if (!s || !s->p)
        return SC_EINVAL;
    s->claimed_fn = fn;
    s->claimed_ctx = ctx;
    return persist_claim(s->p, partition);
}

size_t
sc_mirror_partition_pending(struct sc_daemon *d, uint32_t p, uint32_t partitions)
{
    struct sc_mirror *s = d->mirror;
    size_t n = 0;

    if (!s || !s->durable)
        return 0;
    for (struct dlq_task *t = dirty_first(s); t; t = dirty_next(s, t))
        n += dlq_partition_of(t->id, t->id_len, partitions) == p;
    if (persist_busy(s->p))
        for (size_t i = 0; i < s->nfl; i++)
            n += !s->fl[i].done &&
                 dlq_partition_of(s->fl_ids.data + s->fl[i].off, s->fl[i].len, partitions) == p;
    return n;
}

void
sc_mirror_release(struct sc_daemon *d, unsigned partition)
{
    if (d->mirror && d->mirror->p)
        persist_release(d->mirror->p, partition);
}

static void
on_state(void *ctx, persist_state st, const char *error)
{
    struct sc_daemon *d = ctx;
    struct sc_mirror *s = d->mirror;

    if (st == PERSIST_DEGRADED) {
        sc_log(SC_LOG_WARN, "persistence degraded: serving from memory; writes wait and replay",
               "backend", s->p->ops->name, "error", error ? error : "", "queued_writes",
               sc_log_int((int64_t)(s->ndirty + s->tlen)), NULL);
        acks_release_all(d, "the store is degraded"); /* DESIGN section 3: "stored":false, or 503 */
    } else if (st == PERSIST_OK) {
        json_decref(s->tomb_ids); /* the load is over */
        s->tomb_ids = NULL;
        json_decref(s->spill_ids);
        s->spill_ids = NULL;
        spill_check_later(s);
        sc_log(SC_LOG_INFO, "persistence ok", "backend", s->p->ops->name, "queued_writes",
               sc_log_int((int64_t)(s->ndirty + s->tlen)), "loaded", sc_log_int((int64_t)s->loaded),
               NULL);
        if (s->ndirty || s->tlen || s->nraw)
            persist_kick(s->p, true);
        /* The load is over: a dependency that finished while its dependent's record was behind. */
        dlq_machine_deps_check(&d->m, sc_now_wall_ms(), sc_now_mono_ms());
    }
}

/* ---- the hooks -------------------------------------------------------------------------------- */

void
sc_mirror_changed(struct sc_daemon *d, struct dlq_task *t)
{
    struct sc_mirror *s = d->mirror;

    if (!s) {
        t->version++;
        return;
    }
    t->version = next_version(s, t->version);
    if (!s->durable)
        return;
    dirty_link(s, t, false);
    persist_kick(s->p, s->ndirty >= batch_docs(d->cfg));
}

void
sc_mirror_removed(struct sc_daemon *d, struct dlq_task *t)
{
    struct sc_mirror *s = d->mirror;

    if (!s)
        return;
    acks_release_task(d, t, UINT64_MAX, ACK_NOT_STORED, NULL); /* nothing left to store */
    if (!s->durable)
        return;
    dirty_unlink(s, t);
    tomb_push(d, t->id, t->id_len, next_version(s, t->version));
    persist_kick(s->p, false);
}

void
sc_mirror_forgotten(struct sc_daemon *d, struct dlq_task *t)
{
    struct sc_mirror *s = d->mirror;

    if (!s)
        return;
    acks_release_task(d, t, UINT64_MAX, ACK_UNSTORED, "the task's partition moved to another instance");
    dirty_unlink(s, t);
}

/* Checks store.spill_dir (made when missing) and sets the spill file's paths. */
static sc_status
spill_open(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_mirror *s = d->mirror;
    const char *dir = d->cfg->store_spill_dir;
    size_t n = strlen(dir) + strlen(store_name(d->cfg)) + 16;
    int fd;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "store.spill_dir: '%s' cannot be created: %s", dir, strerror(errno));
        return SC_EINVAL;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "store.spill_dir: '%s' is not a writable directory: %s", dir,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return SC_EINVAL;
    }
    close(fd);
    s->spill_path = sc_xmalloc(n);
    s->spill_tmp = sc_xmalloc(n + 4);
    snprintf(s->spill_path, n, "%s/%s.spill", dir, store_name(d->cfg));
    snprintf(s->spill_tmp, n + 4, "%s.tmp", s->spill_path);
    s->spill_ev = evtimer_new(d->base, on_spill_check, d);
    if (!s->spill_ev) {
        snprintf(err, errlen, "libevent: cannot create the store's timer");
        return SC_EIO;
    }
    return SC_OK;
}

/* The backend's settings from the configuration (store.backend, store.opensearch.*). */
static void
backend_opts(const struct config *cfg, struct persist_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->backend = config_store_name(cfg->store_backend);
    o->opensearch.urls = cfg->os_url;
    o->opensearch.index = cfg->os_index;
    o->opensearch.http.ca_file = cfg->os_ca_file;
    o->opensearch.http.insecure = cfg->os_insecure;
    o->opensearch.http.username = cfg->os_username;
    o->opensearch.http.password = cfg->os_password;
    o->opensearch.bulk_max_docs = (size_t)cfg->os_bulk_max_docs;
    o->opensearch.bulk_max_bytes = (size_t)cfg->os_bulk_max_bytes;
    o->opensearch.flush_ms = cfg->os_flush_ms;
    o->opensearch.partitions = (unsigned)cfg->cluster_partitions;
    o->opensearch.fenced = cfg->cluster_enabled;
    /* properties, load_query, load_sort: NULL, the task document's (persist/doc.c) */
}

/* The KV backend publishes through the daemon's connection. */
static sc_status
kv_publish(void *ctx, const char *subject, const char *reply, const void *body, size_t len,
           const char *const *headers)
{
    return sc_publish(ctx, subject, reply, body, len, headers);
}

/* Answers to the KV backend's writes, on the loop thread. */
static void
on_kv_reply(void *ctx, natsMsg *msg)
{
    struct sc_daemon *d = ctx;

    if (d->mirror && d->mirror->p)
        persist_kv_reply(d->mirror->p, natsMsg_GetSubject(msg), natsMsg_GetData(msg),
                         (size_t)natsMsg_GetDataLength(msg), natsMsg_IsNoResponders(msg) ? 503 : 0);
}

/*
 * The KV backend's settings (store.jetstream.*) and the subscription of its
 * answers: "<inbox>.kv.>" (the retries' replies are "<inbox>.*.*", two
 * tokens, so the two never meet). Needs the connection (sc_conn_new()).
 */
static sc_status
kv_opts(struct sc_daemon *d, struct persist_opts *o, char *err, size_t errlen)
{
    const struct config *cfg = d->cfg;
    struct sc_mirror *s = d->mirror;
    char subj[128];

    if (!d->conn) {
        snprintf(err, errlen, "store.backend: jetstream needs the NATS connection");
        return SC_EINVAL;
    }
    snprintf(s->kv_prefix, sizeof(s->kv_prefix), "%s.kv", sc_conn_inbox(d->conn));
    snprintf(subj, sizeof(subj), "%s.>", s->kv_prefix);
    o->kv.nc = sc_conn_nats(d->conn);
    o->kv.bucket = cfg->kv_bucket;
    o->kv.replicas = (int)cfg->kv_replicas;
    o->kv.memory_storage = cfg->kv_storage == CONFIG_STORAGE_MEMORY;
    o->kv.batch_max = (size_t)cfg->kv_batch_max;
    o->kv.flush_ms = cfg->kv_flush_ms;
    o->kv.timeout_ms = (long)cfg->kv_timeout_ms;
    o->kv.partitions = (unsigned)cfg->cluster_partitions; /* also outside cluster mode: the keys stay valid */
    o->kv.fenced = cfg->cluster_enabled;
    o->kv.member = cfg->cluster_member_id;
    o->kv.reply_prefix = s->kv_prefix;
    o->kv.msgpack_records = true; /* task_record() */
    o->kv.publish = kv_publish;
    o->kv.publish_ctx = d;
    return sc_conn_subscribe(d->conn, subj, NULL, 0, on_kv_reply, d, NULL, err, errlen);
}

static void
on_load_wait(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/*
 * Load before serving: the loop runs here with nothing but the store's
 * requests on it (no NATS, no tick yet), until the load is done or the
 * store turns degraded (then it goes on in the background).
 */
static void
load_wait(struct sc_daemon *d)
{
    struct sc_mirror *s = d->mirror;
    const struct config *cfg = d->cfg;
    struct timeval tv = {LOAD_WAIT_MS / 1000, 0};
    struct event *wait_ev;
    int64_t deadline;

    if (cfg->store_backend == CONFIG_STORE_JETSTREAM)
        sc_log(SC_LOG_INFO, "store: loading tasks from the JetStream KV bucket", "bucket",
               cfg->kv_bucket, NULL);
    else
        sc_log(SC_LOG_INFO, "store: loading tasks from OpenSearch", "url", cfg->os_url, "index",
               cfg->os_index, NULL);
    deadline = sc_now_mono_ms() + LOAD_WAIT_MS;
    /*
     * A pending timer keeps the loop waiting: the KV store's loader wakes
     * it with event_active() on an event that is never added, which alone
     * would make event_base_loop() return at once.
     */
    wait_ev = evtimer_new(d->base, on_load_wait, NULL);
    if (wait_ev)
        evtimer_add(wait_ev, &tv);
    while (s->p->state == PERSIST_STARTING && sc_now_mono_ms() < deadline)
        if (event_base_loop(d->base, EVLOOP_ONCE) != 0)
            break;
    if (wait_ev)
        event_free(wait_ev);
    if (s->p->state == PERSIST_OK)
        sc_log(SC_LOG_INFO, "store: loaded", "tasks", sc_log_int((int64_t)s->loaded), "skipped",
               sc_log_int((int64_t)(s->load_skipped + s->load_errors)), NULL);
    else
        sc_log(SC_LOG_WARN, "store: not available at start; serving from memory, "
                            "loading when it comes back",
               "backend", config_store_name(cfg->store_backend), "state",
               persist_state_name(s->p->state), "error", s->p->state == PERSIST_DEGRADED ? sc_mirror_last_error(d) : "", NULL);
}

sc_status
sc_mirror_open(struct sc_daemon *d, char *err, size_t errlen)
{
    const struct config *cfg = d->cfg;
    struct sc_mirror *s = sc_xcalloc(1, sizeof(*s));
    struct persist_owner owner = {d, on_fill, on_result, on_loaded, on_state, on_claimed};
    struct persist_opts o;
    sc_status st;

    /* A key file that cannot be read or has another size stops start-up (exit code 2). */
    if ((st = persist_keyring_load(cfg->secrets_key_file, cfg->secrets_old_key_files,
                                   cfg->secrets_old_key_count, &s->keys, err, errlen))) {
        free(s);
        return st == SC_ENOTFOUND ? SC_EINVAL : st;
    }
    d->mirror = s;
    sc_buf_init(&s->sealed, 256u * 1024 * 1024);
    sc_list_init(&s->dirty);
    sc_list_init(&s->acks);
    s->vclock = (uint64_t)sc_now_wall_ms() * 1000;
    sc_buf_init(&s->tmp, 256u * 1024 * 1024);
    sc_buf_init(&s->fl_ids, SPILL_LINE_MAX);
    sc_buf_init(&s->mp_scratch, 256u * 1024 * 1024);
    if (cfg->store_backend == CONFIG_STORE_JETSTREAM) {
        struct codec_limits lim;
        codec_limits_default(&lim);
        lim.max_envelope_bytes = 99u * 1024 * 1024; /* a batch body's cap (PERSIST_BULK_BODY_MAX) */
        /*
         * A view sits one level inside the record, whose whole nesting the
         * store's loader reads up to 1000 deep (KV_DEPTH): a view may nest
         * 999, as when the whole JSON document was converted at once.
         */
        lim.max_depth = 999;
        s->mp_codec = codec_new(&lim);
    }
    backend_opts(cfg, &o);
    if (cfg->store_backend == CONFIG_STORE_JETSTREAM && (st = kv_opts(d, &o, err, errlen)))
        return st;
    if ((st = persist_new(d->base, &o, &owner, &s->p, err, errlen)))
        return st;
    if (!persist_durable(s->p)) {
        bool durable = cfg->store_ack == CONFIG_ACK_DURABLE, spill = cfg->store_spill_dir[0] != '\0';
        if (durable || spill) /* name only what is set */
            sc_log(SC_LOG_WARN,
                   durable && spill ? "store.ack: durable and store.spill_dir have no effect with "
                                      "store.backend: memory (nothing is stored)"
                   : durable ? "store.ack: durable has no effect with store.backend: memory "
                               "(nothing is stored)"
                             : "store.spill_dir has no effect with store.backend: memory "
                               "(nothing is stored)",
                   NULL);
        return persist_start(s->p);
    }
    s->durable = true;
    s->ack_durable = cfg->store_ack == CONFIG_ACK_DURABLE;
    s->tcap = (size_t)cfg->store_journal_max;
    s->tombs = sc_xcalloc(s->tcap, sizeof(*s->tombs));
    s->ack_ev = evtimer_new(d->base, on_ack_sweep, d);
    if (!s->ack_ev) {
        snprintf(err, errlen, "libevent: cannot create the store's timer");
        return SC_EIO;
    }
    if (cfg->store_spill_dir[0]) {
        if ((st = spill_open(d, err, errlen)))
            return st;
        spill_replay(d);
    }
    if ((st = persist_start(s->p))) {
        snprintf(err, errlen, "store: cannot start (%s)", sc_status_str(st));
        return st;
    }
    load_wait(d);
    return SC_OK;
}

void
sc_mirror_flush(struct sc_daemon *d)
{
    struct sc_mirror *s = d->mirror;
    int64_t wait = d->cfg->shutdown_drain_ms > FLUSH_MIN_MS ? d->cfg->shutdown_drain_ms : FLUSH_MIN_MS;
    int64_t deadline = sc_now_mono_ms() + wait;
    struct persist_stats st;
    size_t queued, spilled = 0;

    if (!s || !s->durable)
        return;
    persist_stopping(s->p); /* a backoff from a failed batch would outlast the wait */
    if (s->ndirty || s->tlen || s->nraw)
        persist_kick(s->p, true);
    while ((s->ndirty || s->tlen || s->nraw || persist_busy(s->p)) && sc_now_mono_ms() < deadline)
        if (event_base_loop(d->base, EVLOOP_ONCE) < 0)
            break;
    persist_get_stats(s->p, &st);
    queued = s->ndirty + s->tlen + s->nraw + (persist_busy(s->p) ? st.in_flight : 0);
    if (queued)
        spilled = spill_write(d, queued);
    else
        spill_remove(d); /* everything is stored: a spill file left from before is done */
    acks_release_all(d, "the sidecar is stopping");
    if (queued > spilled) {
        sc_log(SC_LOG_ERROR, "store: stopping with writes not stored; they are lost", "not_stored",
               sc_log_int((int64_t)(queued - spilled)), "spilled", sc_log_int((int64_t)spilled),
               "state", persist_state_name(s->p->state), "spill_dir", d->cfg->store_spill_dir, NULL);
        if (!d->exit_code)
            d->exit_code = SC_EXIT_UNSTORED;
    } else if (queued) {
        sc_log(SC_LOG_WARN, "store: writes not yet stored were spilled; they are replayed at the next start",
               "spilled", sc_log_int((int64_t)spilled), "state", persist_state_name(s->p->state),
               "file", s->spill_path, NULL);
    } else {
        sc_log(SC_LOG_INFO, "store: flushed", NULL);
    }
}

void
sc_mirror_close(struct sc_daemon *d)
{
    struct sc_mirror *s = d->mirror;
    struct sc_mirror_ack *a;
    struct dlq_task *t;

    if (!s)
        return;
    while ((a = ack_oldest(s))) {
        ack_unlink(s, a);
        free(a->reply);
        free(a->body);
        free(a);
    }
    while ((t = dirty_first(s)))
        dirty_unlink(s, t);
    for (size_t i = 0; i < s->tlen; i++)
        free(s->tombs[(s->thead + i) % s->tcap].id);
    free(s->tombs);
    json_decref(s->tomb_ids);
    if (s->ack_ev)
        event_free(s->ack_ev);
    if (s->spill_ev)
        event_free(s->spill_ev);
    for (size_t i = 0; i < s->nraw; i++)
        raw_free(&s->raw[i]);
    for (size_t i = 0; i < s->nrawfl; i++)
        raw_free(&s->rawfl[i]);
    free(s->raw);
    free(s->rawfl);
    json_decref(s->spill_ids);
    free(s->spill_path);
    free(s->spill_tmp);
    free(s->fl);
    sc_buf_destroy(&s->fl_ids);
    persist_free(s->p);
    sc_buf_destroy(&s->tmp);
    sc_buf_destroy(&s->sealed);
    sc_buf_destroy(&s->mp_scratch);
    codec_free(s->mp_codec);
    persist_keyring_free(s->keys);
    free(s);
    d->mirror = NULL;
}

const char *
sc_mirror_state(struct sc_daemon *d, const char **backend, uint64_t *queued_writes)
{
    struct sc_mirror *s = d->mirror;
    struct persist_stats st;

    if (!s || !s->p) {
        *backend = "memory";
        *queued_writes = 0;
        return "ok";
    }
    persist_get_stats(s->p, &st);
    *backend = st.backend;
    *queued_writes = (uint64_t)(s->ndirty + s->tlen + s->nraw + st.in_flight);
    return persist_state_name(st.state);
}

const char *
sc_mirror_last_error(struct sc_daemon *d)
{
    static char last[256];
    struct persist_stats st;

    if (!d->mirror || !d->mirror->durable)
        return NULL;
    persist_get_stats(d->mirror->p, &st);
    if (!st.last_error[0])
        return NULL;
    memcpy(last, st.last_error, sizeof(last));
    return last;
}

uint64_t
sc_mirror_rejected(struct sc_daemon *d)
{
    return d->mirror ? d->mirror->rejected : 0;
}

void
sc_mirror_answer_counts(struct sc_daemon *d, uint64_t *refused, uint64_t *unstored)
{
    *refused = d->mirror ? d->mirror->refused_acks : 0;
    *unstored = d->mirror ? d->mirror->unstored_acks : 0;
}

void
sc_mirror_stats_json(struct sc_daemon *d, struct sc_jw *w)
{
    struct sc_mirror *s = d->mirror;
    struct persist_stats st;

    if (!s || !s->durable)
        return;
    persist_get_stats(s->p, &st);
    sc_jw_uint(w, "dirty_tasks", s->ndirty);
    sc_jw_uint(w, "pending_deletes", s->tlen);
    sc_jw_uint(w, "in_flight", st.in_flight);
    sc_jw_uint(w, "held_acks", s->nacks);
    sc_jw_uint(w, "written", st.written);
    sc_jw_uint(w, "stale", st.stale);
    sc_jw_uint(w, "rejected", s->rejected);
    sc_jw_uint(w, "fenced", s->fenced);
    sc_jw_uint(w, "retried", st.retried);
    sc_jw_uint(w, "batches", st.batches);
    sc_jw_uint(w, "failed_batches", st.failed_batches);
    sc_jw_uint(w, "loaded", s->loaded);
    sc_jw_uint(w, "load_skipped", s->load_skipped + s->load_errors);
    sc_jw_uint(w, "undecryptable", s->undecryptable);
    sc_jw_uint(w, "dropped_deletes", s->tombs_dropped);
    sc_jw_uint(w, "journal_max", s->tcap);
    sc_jw_str(w, "ack", s->ack_durable ? "durable" : "accepted");
    sc_jw_uint(w, "refused_answers", s->refused_acks);
    sc_jw_uint(w, "unstored_answers", s->unstored_acks);
    sc_jw_time(w, "last_error_at", st.last_error_at);
}
