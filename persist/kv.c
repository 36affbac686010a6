/* kv.c - the JetStream KV store backend: task records as MessagePack values in a KV bucket, written by asynchronous publishes and loaded back by a watcher on a thread of its own. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "codec.h"
#include "persist-internal.h"

/*
 * Who does what (DESIGN sections 13 and 17):
 * - the loop thread fills a batch (owner.fill(); the owner writes each
 *   record in MessagePack with msgpack_records, else its JSON document is
 *   converted here) and publishes it to $KV.<bucket>.<key> with a reply
 *   subject <reply_prefix>.<gen>.<i>; the owner routes those replies back to
 *   persist_kv_reply() on the loop thread. Nothing here blocks the loop.
 * - a loader thread makes the bucket (or checks the one found) and reads
 *   every record back with a KV watcher (blocking nats.c calls, which must
 *   never run on the loop), handing the entries to the loop through a small
 *   bounded ring and an event; the loop hands them to owner.loaded().
 * Who holds a write: the owner (its dirty set) until fill(); the batch and
 *   the connection's buffer until the PubAck, which means the stream leader
 *   (and its replicas) stored it; RETRY gives it back to the owner.
 * Up to KV_PIPELINE batches are in flight at a time (one in cluster mode,
 * where each fenced write of a partition must be alone in flight): the loop
 * fills and sends the next batch while the server stores the one before.
 * The publishes of every batch go out back to back on one connection, so
 * they reach the stream in the order they were sent: a record may be in two
 * writes at once (an older state in the first batch, a newer one in the
 * next), and the newer one always lands last. A write answered RETRY is
 * never sent again as it was: the owner writes the task's state of then.
 */

#define KV_LOAD_RING 1024     /* entries the loader may hand over before it waits */
#define KV_WAKE_MAX KV_LOAD_RING /* entries the loop takes per callback before it lets other events run */
#define KV_BACKOFF_FIRST 500  /* ms: first wait after a failed batch or setup */
#define KV_BACKOFF_MAX 10000
#define KV_IDLE_MAX_MS 30000  /* a load that receives nothing this long is restarted */
#define KV_DEPTH 1000u        /* nesting of a document: its "task" renders a payload up to limits.max_depth (at most 1000) deep */
#define KV_BATCH_BYTES (8u * 1024 * 1024) /* documents of one batch (a lone larger one goes alone) */
#define KV_CLAIM_MAX 4096     /* claims waiting for the loader (cluster.partitions is at most this) */
#define KV_FENCE_KEY "fence"  /* "fence.<p>": the partition's fence, put by each new owner */
#define KV_META_KEY "meta.partitions" /* the partition count the keys were made with */
#define KV_ERR_WRONG_LAST_SEQ 10071
/*
 * 10164, "wrong last sequence" in its constant form: on a clustered stream
 * the server refuses a write whose per-subject check names a subject that
 * another checked write still in flight names too (nats-server's
 * expectedPerSubjectInProcess). Every fenced write of a partition checks
 * the same fence key, so only one of them may be in flight at a time: the
 * answer means "busy", not "the fence moved" (that is 10071).
 */
#define KV_ERR_CHECK_IN_FLIGHT 10164

/* What the loader hands to the loop, in order. */
typedef enum {
    KV_ENTRY = 0, /* one record (value: its MessagePack) */
    KV_LOADED,    /* the start-up load is over: every record was handed over */
    KV_CLAIMED,   /* a claim is over: its fence (rev) is in place, its records handed over */
    KV_FAILED,    /* a job failed (value: why); it is tried again */
    KV_REFENCED,  /* a refence is over: the partition's new fence (rev) */
} kv_item;

struct kv_entry {
    kv_item kind;
    unsigned partition; /* KV_CLAIMED, KV_FAILED */
    uint64_t gen;       /* KV_CLAIMED, KV_FAILED: the claim's number (a newer claim or a release makes it stale) */
    uint64_t rev;       /* KV_CLAIMED: the fence's revision */
    char *value;        /* owned; NUL-terminated */
    size_t len;
};

/* How a wait ends. */
typedef enum { KV_T_NONE = 0, KV_T_FLUSH, KV_T_BACKOFF } kv_timer;

#define KV_PIPELINE 4 /* batches in flight at once (without fences) */

/* One batch and what its answers say so far. */
struct kv_slot {
    struct kv_store *k;
    struct persist_batch b;
    uint64_t gen;            /* in its reply subjects; answers of another are stale */
    bool in_flight;
    unsigned char *answered; /* per item */
    size_t nanswered;
    bool any_retry, any_ok;
    bool any_busy;           /* an item went back unsent or refused as busy (KV_ERR_CHECK_IN_FLIGHT) */
    struct event *deadline;  /* the batch is given up (RETRY) without every answer by then */
};

struct kv_store {
    struct persist base; /* first: persist_* calls cast back */
    struct event_base *evb;
    natsConnection *nc;
    char *bucket, *reply_prefix;
    int replicas;
    bool memory_storage;
    size_t batch_max;
    int64_t flush_ms;
    long timeout_ms;
    unsigned partitions;
    persist_publish_fn publish;
    void *publish_ctx;
    struct codec *codec;   /* converts JSON documents (without msgpack_records) */
    /* writes (loop thread) */
    struct kv_slot slot[KV_PIPELINE];
    size_t depth;          /* slots in use: KV_PIPELINE, 1 when fenced */
    size_t nflight;        /* batches in flight */
    uint64_t gen;          /* the number the next batch takes */
    bool kicked, kicked_urgent; /* a kick arrived while every slot was in flight or waiting */
    struct event *timer;
    kv_timer timer_what;
    int64_t backoff_ms;
    bool stopping;         /* persist_stopping(): short retries from now on */
    bool ready;            /* the bucket exists and the load is over */
    bool fenced;           /* cluster mode: every write carries its partition's fence */
    uint64_t *fence;       /* per partition: the fence revision of this instance's claim, 0: none */
    char *member;          /* the fence's value: who claimed */
    struct sc_buf subj, reply, json;
    struct persist_stats st;
    /* the loader thread; the fields below mu are shared with it */
    pthread_t thread;
    bool thread_started;
    struct event *wake;
    struct event *wake_later; /* a 0 ms timer: the loop's next turn, after its other events */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    struct kv_entry ring[KV_LOAD_RING];
    size_t rhead, rlen;
    struct { unsigned p; uint64_t gen; bool refence; } claims[KV_CLAIM_MAX]; /* claims to run, in order */
    unsigned char *refencing;  /* per partition: a refence is asked and not answered (loop thread) */
    size_t chead, nclaims;
    uint64_t *claim_gen;   /* per partition: the number of its current claim (stale ones are skipped) */
};

static struct kv_store *
kv_of(struct persist *p)
{
    return (struct kv_store *)(void *)p;
}

static void kv_flush(struct kv_store *k);

/* ---- keys ------------------------------------------------------------------------------------- */

/* Whether id can be a key as it is: [A-Za-z0-9_-] tokens joined by single dots. */
static bool
key_as_is(const char *id, size_t len)
{
    if (len == 0 || len > PERSIST_KV_PLAIN_MAX || id[0] == '.' || id[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (c == '.') {
            if (id[i + 1] == '.')
                return false;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Appends v in decimal (what "%llu" writes), without snprintf(): once or twice per write. */
static sc_status
append_u64(struct sc_buf *out, uint64_t v)
{
    char d[20];
    size_t n = sizeof(d);

    do {
        d[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return sc_buf_append(out, d + n, sizeof(d) - n);
}

sc_status
persist_kv_key(struct sc_buf *out, const char *id, size_t len, unsigned partitions)
{
    sc_status s = SC_OK;
    size_t mark;

    if (partitions && ((s = append_u64(out, sc_fnv1a64(id, len) % partitions)) ||
                       (s = sc_buf_appendc(out, '.'))))
        return s;
    if (key_as_is(id, len))
        return sc_buf_append(out, id, len);
    if (len <= PERSIST_KV_B64_MAX) {
        if ((s = sc_buf_appendc(out, '=')))
            return s;
        mark = out->len;
        if ((s = sc_base64_encode(out, id, len)))
            return s;
        while (out->len > mark && out->data[out->len - 1] == '=')
            out->len--;
        for (size_t i = mark; i < out->len; i++) /* base64url: a valid key character each */
            out->data[i] = out->data[i] == '+' ? '-' : out->data[i] == '/' ? '_' : out->data[i];
        out->data[out->len] = '\0';
        return SC_OK;
    } else {
        unsigned char d[32];
        persist_sha256(id, len, d);
        if ((s = sc_buf_append(out, "==", 2)))
            return s;
        for (size_t i = 0; i < sizeof(d) && !s; i++)
            s = sc_buf_appendf(out, "%02x", d[i]);
        return s;
    }
}

/* ---- state and timers ------------------------------------------------------------------------- */

static void
set_error(struct kv_store *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_error(struct kv_store *k, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(k->st.last_error, sizeof(k->st.last_error), fmt, ap);
    va_end(ap);
    k->st.last_error_at = sc_now_wall_ms();
}

static void
arm(struct kv_store *k, kv_timer what, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    k->timer_what = what;
    evtimer_add(k->timer, &tv);
}

static void
disarm(struct kv_store *k)
{
    evtimer_del(k->timer);
    k->timer_what = KV_T_NONE;
}

/* The next backoff wait: doubles from KV_BACKOFF_FIRST up to KV_BACKOFF_MAX. */
static int64_t
next_backoff(struct kv_store *k)
{
    int64_t ms = k->backoff_ms ? k->backoff_ms : KV_BACKOFF_FIRST;

    if (k->stopping)
        return PERSIST_STOPPING_RETRY_MS;
    k->backoff_ms = ms * 2 > KV_BACKOFF_MAX ? KV_BACKOFF_MAX : ms * 2;
    return ms;
}

/* ---- writes ----------------------------------------------------------------------------------- */

/* The batch layout needs an action line per item; a KV write has none. */
static sc_status
no_action(struct sc_buf *body, const char *id, size_t id_len, uint64_t version, bool del)
{
    (void)body;
    (void)id;
    (void)id_len;
    (void)version;
    (void)del;
    return SC_OK;
}

/* Item i's document in sl's batch body (without its newline); *len 0 for a delete. */
static const char *
item_doc(const struct kv_slot *sl, size_t i, size_t *len)
{
    const struct persist_batch_item *it = &sl->b.items[i];
    size_t end = i + 1 < sl->b.count ? sl->b.items[i + 1].body_off : sl->b.body.len;

    *len = 0;
    if (it->del || end <= it->body_off)
        return NULL;
    *len = end - it->body_off - 1;
    return sl->b.body.data + it->body_off;
}

/* sl's last answer came: the slot is free; the state, the backoff or the next batch follow. */
static void
settle(struct kv_store *k, struct kv_slot *sl)
{
    bool full = persist_batch_full(&sl->b);

    sl->in_flight = false;
    k->nflight--;
    evtimer_del(sl->deadline);
    if (sl->any_busy && !sl->any_retry) {
        /* Busy items are not failures: the next batch goes at once, one write per partition. */
        k->kicked = true;
        k->kicked_urgent = true;
    }
    if (sl->any_retry) {
        k->st.failed_batches += !sl->any_ok;
        persist_set_state(&k->base, PERSIST_DEGRADED, k->st.last_error);
        if (k->timer_what != KV_T_BACKOFF) {
            if (k->timer_what == KV_T_FLUSH)
                disarm(k);
            arm(k, KV_T_BACKOFF, next_backoff(k));
        }
        return;
    }
    if (k->timer_what == KV_T_BACKOFF)
        return; /* another batch failed: its backoff decides when the next goes */
    k->backoff_ms = 0;
    if (sl->any_ok || k->base.state == PERSIST_DEGRADED)
        persist_set_state(&k->base, PERSIST_OK, NULL);
    if (k->kicked || full) {
        bool urgent = k->kicked_urgent || full;
        k->kicked = k->kicked_urgent = false;
        if (urgent)
            kv_flush(k);
        else if (k->timer_what != KV_T_FLUSH)
            arm(k, KV_T_FLUSH, k->flush_ms);
    }
}

/*
 * Hands item i of sl's batch to the owner once; frees the slot after its
 * last. busy: a RETRY that is not a failure (see answer_busy()).
 */
static void
answer_item(struct kv_store *k, struct kv_slot *sl, size_t i, persist_result r, const char *reason,
            bool busy)
{
    const struct persist_batch_item *bi = &sl->b.items[i];
    struct persist_item it = {persist_batch_item_id(&sl->b, i), bi->id_len, bi->version, bi->del};

    if (sl->answered[i])
        return;
    sl->answered[i] = 1;
    sl->nanswered++;
    switch (r) {
    case PERSIST_ITEM_OK: k->st.written++; sl->any_ok = true; break;
    case PERSIST_ITEM_STALE: k->st.stale++; sl->any_ok = true; break;
    case PERSIST_ITEM_RETRY:
        if (busy)
            sl->any_busy = true;
        else {
            k->st.retried++;
            sl->any_retry = true;
        }
        break;
    case PERSIST_ITEM_REJECTED: k->st.rejected++; break;
    case PERSIST_ITEM_FENCED: k->st.fenced++; break;
    }
    if (k->base.owner.result)
        k->base.owner.result(k->base.owner.ctx, &it, r, reason);
    if (sl->nanswered == sl->b.count && sl->in_flight)
        settle(k, sl);
}

/*
 * Answers item i RETRY without counting it as a failure (no degraded state,
 * no backoff): the server refused it as busy (KV_ERR_CHECK_IN_FLIGHT: another
 * write checking its partition's fence was in flight; the batch itself never
 * holds two, persist_batch_exclusive(), and a fenced store has one batch in
 * flight). The owner keeps it dirty; the next batch follows at once.
 */
static void
answer_busy(struct kv_store *k, struct kv_slot *sl, size_t i)
{
    answer_item(k, sl, i, PERSIST_ITEM_RETRY, "another write of the partition is in flight", true);
}

/* Hands item i's answer to the owner once (a failure when RETRY). */
static void
answer(struct kv_store *k, struct kv_slot *sl, size_t i, persist_result r, const char *reason)
{
    answer_item(k, sl, i, r, reason, false);
}

/* Publishes item i of sl's batch; answers it at once when it cannot go. */
static void
send_item(struct kv_store *k, struct kv_slot *sl, size_t i)
{
    const struct persist_batch_item *it = &sl->b.items[i];
    const char *id = persist_batch_item_id(&sl->b, i);
    const char *hdrs[9], *body = NULL;
    size_t doclen, bodylen = 0, nh = 0;
    char rev[24], fence_subj[160];
    sc_status s;

    sc_buf_reset(&k->subj);
    sc_buf_reset(&k->reply);
    if (sc_buf_append(&k->subj, "$KV.", 4) || sc_buf_append(&k->subj, k->bucket, strlen(k->bucket)) ||
        sc_buf_appendc(&k->subj, '.') || persist_kv_key(&k->subj, id, it->id_len, k->partitions) ||
        sc_buf_append(&k->reply, k->reply_prefix, strlen(k->reply_prefix)) ||
        sc_buf_appendc(&k->reply, '.') || append_u64(&k->reply, sl->gen) ||
        sc_buf_appendc(&k->reply, '.') || append_u64(&k->reply, i)) {
        answer(k, sl, i, PERSIST_ITEM_RETRY, "out of memory");
        return;
    }
    if (k->fenced) {
        /* Only a write the partition's fence still names lands (DESIGN section 18). */
        unsigned p = (unsigned)(sc_fnv1a64(id, it->id_len) % k->partitions);
        if (!k->fence[p]) {
            answer(k, sl, i, PERSIST_ITEM_FENCED, "this instance holds no claim on the partition");
            return;
        }
        snprintf(rev, sizeof(rev), "%llu", (unsigned long long)k->fence[p]);
        snprintf(fence_subj, sizeof(fence_subj), "$KV.%s." KV_FENCE_KEY ".%u", k->bucket, p);
        hdrs[nh++] = "Nats-Expected-Last-Subject-Sequence";
        hdrs[nh++] = rev;
        hdrs[nh++] = "Nats-Expected-Last-Subject-Sequence-Subject";
        hdrs[nh++] = fence_subj;
    }
    if (it->del) {
        hdrs[nh++] = "KV-Operation";
        hdrs[nh++] = "PURGE";
        hdrs[nh++] = "Nats-Rollup";
        hdrs[nh++] = "sub";
    } else {
        const char *doc = item_doc(sl, i, &doclen);
        if (sl->b.msgpack && doc) {
            body = doc;
            bodylen = doclen;
        } else if (!doc || codec_json_msgpack(k->codec, doc, doclen, &body, &bodylen) != SC_OK) {
            answer(k, sl, i, PERSIST_ITEM_REJECTED, "the document cannot be converted to MessagePack");
            return;
        }
    }
    hdrs[nh] = NULL;
    s = k->publish(k->publish_ctx, k->subj.data, k->reply.data, body, bodylen, nh ? hdrs : NULL);
    if (s == SC_ETOOBIG)
        answer(k, sl, i, PERSIST_ITEM_REJECTED, "the record is larger than the server's max_payload");
    else if (s) {
        set_error(k, "publish to %s failed (%s)", k->subj.data, sc_status_str(s));
        answer(k, sl, i, PERSIST_ITEM_RETRY, k->st.last_error);
    }
}

/*
 * Fills and sends one batch, if the store is ready, no backoff runs and a
 * slot is free. A full batch with a slot still free asks for the next one
 * on the loop's next turn (answers that came meanwhile go first).
 */
static void
kv_flush(struct kv_store *k)
{
    struct kv_slot *sl = NULL;
    struct timeval tv = {(time_t)(k->timeout_ms / 1000), (suseconds_t)((k->timeout_ms % 1000) * 1000)};
    uint64_t gen;
    size_t n;

    if (k->nflight == k->depth || !k->ready || k->timer_what == KV_T_BACKOFF)
        return;
    for (size_t j = 0; j < k->depth && !sl; j++)
        if (!k->slot[j].in_flight)
            sl = &k->slot[j];
    if (k->timer_what == KV_T_FLUSH)
        disarm(k);
    k->kicked = k->kicked_urgent = false;
    persist_batch_reset(&sl->b);
    if (k->base.owner.fill)
        k->base.owner.fill(k->base.owner.ctx, &sl->b);
    n = persist_batch_count(&sl->b);
    if (n == 0)
        return;
    memset(sl->answered, 0, n);
    sl->nanswered = 0;
    sl->any_ok = sl->any_retry = sl->any_busy = false;
    sl->in_flight = true;
    sl->gen = gen = k->gen++;
    k->nflight++;
    k->st.batches++;
    evtimer_add(sl->deadline, &tv);
    for (size_t i = 0; i < n && sl->in_flight && sl->gen == gen; i++)
        send_item(k, sl, i);
    if (sl->in_flight && sl->gen == gen && persist_batch_full(&sl->b) && k->nflight < k->depth &&
        k->timer_what == KV_T_NONE)
        arm(k, KV_T_FLUSH, 0);
}

/* Whether the len bytes at data hold the text "error" (quoted): a JetStream error answer. */
static bool
has_error_key(const void *p, size_t len)
{
    const char *data = p;

    for (size_t i = 0; i + 7 <= len; i++)
        if (data[i] == '"' && memcmp(data + i, "\"error\"", 7) == 0)
            return true;
    return false;
}

/*
 * What one answer says: a PubAck {"stream":..,"seq":N} is OK; an error
 * {"error":{"code":C,"err_code":E,"description":D}} is STALE for a revision
 * that does not match (a newer writer), RETRY for 5xx (no quorum, stream
 * offline), REJECTED for the rest (too large, bad key); a "no responders"
 * status (no JetStream for the subject) is RETRY.
 */
static persist_result
classify(struct kv_store *k, const void *data, size_t len, int status, bool *busy)
{
    json_t *j, *e;
    long code, err_code;
    const char *desc;
    persist_result r;

    if (status == 503) {
        set_error(k, "no JetStream answers for bucket %s (no responders)", k->bucket);
        return PERSIST_ITEM_RETRY;
    }
    if (len > 0 && !has_error_key(data, len))
        return PERSIST_ITEM_OK; /* a PubAck: no allocation on the common path */
    j = json_loadb(data, len, 0, NULL);
    e = json_object_get(j, "error");
    if (!e) {
        set_error(k, "unreadable answer from JetStream (%zu bytes, status %d)", len, status);
        json_decref(j);
        return PERSIST_ITEM_RETRY;
    }
    code = (long)json_integer_value(json_object_get(e, "code"));
    err_code = (long)json_integer_value(json_object_get(e, "err_code"));
    desc = json_string_value(json_object_get(e, "description"));
    set_error(k, "JetStream refused a write: %s (code %ld, err_code %ld)", desc ? desc : "?", code,
              err_code);
    if (err_code == KV_ERR_CHECK_IN_FLIGHT && k->fenced) {
        *busy = true; /* another write checking the fence is in flight: not a moved fence */
        r = PERSIST_ITEM_RETRY;
    } else if (err_code == KV_ERR_WRONG_LAST_SEQ && k->fenced)
        r = PERSIST_ITEM_FENCED; /* another fence was put on the partition since ours */
    else if (err_code == KV_ERR_WRONG_LAST_SEQ)
        r = PERSIST_ITEM_STALE;
    else if (code >= 500 || code == 408 || code == 429)
        r = PERSIST_ITEM_RETRY;
    else
        r = PERSIST_ITEM_REJECTED;
    json_decref(j);
    return r;
}

void
persist_kv_reply(struct persist *p, const char *subject, const void *data, size_t len, int status)
{
    struct kv_store *k = kv_of(p);
    struct kv_slot *sl = NULL;
    size_t plen = strlen(k->reply_prefix);
    unsigned long long gen;
    size_t i;
    char *end;
    persist_result r;

    if (strncmp(subject, k->reply_prefix, plen) != 0 || subject[plen] != '.')
        return;
    gen = strtoull(subject + plen + 1, &end, 10);
    if (*end != '.')
        return;
    i = (size_t)strtoull(end + 1, &end, 10);
    if (*end != '\0')
        return;
    for (size_t j = 0; j < k->depth && !sl; j++)
        if (k->slot[j].in_flight && k->slot[j].gen == gen)
            sl = &k->slot[j];
    if (!sl || i >= sl->b.count || sl->answered[i])
        return; /* an answer of a batch given up (deadline) or a forged one */
    bool busy = false;
    r = classify(k, data, len, status, &busy);
    if (busy)
        answer_busy(k, sl, i);
    else
        answer(k, sl, i, r, r == PERSIST_ITEM_OK ? NULL : k->st.last_error);
}

/* ---- the loader thread ------------------------------------------------------------------------ */

/* Hands one item to the loop, waiting while the ring is full. False (item freed) when stopping. */
static bool
post(struct kv_store *k, struct kv_entry *en)
{
    bool ok, first = false;

    pthread_mutex_lock(&k->mu);
    while (!k->stop && k->rlen == KV_LOAD_RING)
        pthread_cond_wait(&k->cv, &k->mu);
    ok = !k->stop;
    if (ok) {
        first = k->rlen == 0; /* otherwise on_wake() is running or due: it takes this one too */
        k->ring[(k->rhead + k->rlen++) % KV_LOAD_RING] = *en;
    }
    pthread_mutex_unlock(&k->mu);
    if (!ok)
        free(en->value);
    else if (first)
        event_active(k->wake, EV_READ, 0);
    return ok;
}

/* Hands one record to the loop. False when stopping. */
static bool
post_entry(struct kv_store *k, kvEntry *e, unsigned partition, uint64_t gen)
{
    struct kv_entry en = {.kind = KV_ENTRY, .partition = partition, .gen = gen};
    int len = kvEntry_ValueLen(e);

    en.len = len > 0 ? (size_t)len : 0;
    en.value = sc_xmalloc(en.len + 1);
    if (en.len)
        memcpy(en.value, kvEntry_Value(e), en.len);
    return post(k, &en);
}

/* Hands the end of a job to the loop: kind, its partition, the fence revision, why it failed. */
static void
post_mark(struct kv_store *k, kv_item kind, unsigned partition, uint64_t gen, uint64_t rev,
          const char *why)
{
    struct kv_entry en = {.kind = kind, .partition = partition, .gen = gen, .rev = rev};

    if (why) {
        en.len = strlen(why);
        en.value = sc_xstrdup(why);
    }
    post(k, &en);
}

static bool
stopping(struct kv_store *k)
{
    bool s;

    pthread_mutex_lock(&k->mu);
    s = k->stop;
    pthread_mutex_unlock(&k->mu);
    return s;
}

/* Waits until stop or ms pass (a drain of the ring wakes the wait: it goes on). */
static void
nap(struct kv_store *k, int64_t ms)
{
    struct timespec until;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&k->mu);
    while (!k->stop && rc == 0)
        rc = pthread_cond_timedwait(&k->cv, &k->mu, &until);
    pthread_mutex_unlock(&k->mu);
}

/*
 * Checks bucket's partition count (KV_META_KEY) against partitions: every
 * key starts with its task's partition, so a bucket made with another
 * cluster.partitions holds keys this sidecar would never find again (an
 * update or delete would miss the old record). With record, an absent count
 * is written (a new bucket, or one from before the key existed). Returns
 * SC_OK, SC_EINVAL (another count, or no count: err says) or SC_EIO (it
 * could not be read: err says). Any thread that may block.
 */
static sc_status
check_partitions(kvStore *kv, const char *bucket, unsigned partitions, bool record, char *err,
                 size_t errlen)
{
    char want[16];
    kvEntry *e = NULL;
    uint64_t rev = 0;
    natsStatus s;
    int n = snprintf(want, sizeof(want), "%u", partitions);

    for (int tries = 0; tries < 2; tries++) {
        s = kvStore_Get(&e, kv, KV_META_KEY);
        if (s == NATS_OK) {
            const char *v = kvEntry_Value(e);
            int len = kvEntry_ValueLen(e), digits = 0;
            bool same = len == n && memcmp(v, want, (size_t)n) == 0;
            while (digits < len && digits < 5 && v[digits] >= '0' && v[digits] <= '9')
                digits++;
            if (same)
                ;
            else if (digits == 0 || digits != len)
                snprintf(err, errlen,
                         "bucket %s: %s holds no partition count (%d bytes); delete that key "
                         "(the count is written again) or name another store.jetstream.bucket",
                         bucket, KV_META_KEY, len);
            else
                snprintf(err, errlen,
                         "bucket %s holds keys made with cluster.partitions %.*s; this sidecar has "
                         "%s: set cluster.partitions to %.*s (it is fixed for the life of a bucket) "
                         "or name another store.jetstream.bucket",
                         bucket, len, v, want, len, v);
            kvEntry_Destroy(e);
            return same ? SC_OK : SC_EINVAL;
        }
        if (s != NATS_NOT_FOUND || !record)
            break;
        /* Absent: write it, unless another sidecar just did (then read theirs). */
        if ((s = kvStore_Create(&rev, kv, KV_META_KEY, want, n)) == NATS_OK)
            return SC_OK;
    }
    if (s == NATS_NOT_FOUND)
        return SC_OK; /* not recorded yet: nothing to disagree with */
    snprintf(err, errlen, "bucket %s: reading %s: %s", bucket, KV_META_KEY, natsStatus_GetText(s));
    return SC_EIO;
}

/* Refuses a bucket whose records would age out. NULL, or why (into err). */
static const char *
check_ttl(kvStore *kv, const char *bucket, char *err, size_t errlen)
{
    kvStatus *sts = NULL;
    const char *why = NULL;

    if (kvStore_Status(&sts, kv) == NATS_OK && kvStatus_TTL(sts) > 0) {
        snprintf(err, errlen,
                 "bucket %s has a TTL of %lld s: its tasks would expire; store.jetstream.bucket "
                 "must name a bucket without one",
                 bucket, (long long)(kvStatus_TTL(sts) / 1000000000)); /* ns */
        why = err;
    }
    kvStatus_Destroy(sts);
    return why;
}

/*
 * Makes the tasks bucket (history 1, replicas, memory or file storage).
 * SC_OK, SC_EINVAL when the servers cannot place that many replicas (err
 * names store.jetstream.replicas), SC_EIO otherwise (err says why).
 */
static sc_status
create_bucket(jsCtx *js, const char *bucket, int replicas, bool memory, kvStore **kv, char *err,
              size_t errlen)
{
    kvConfig kc;
    natsStatus s;

    kvConfig_Init(&kc);
    kc.Bucket = bucket;
    kc.Description = "dlq-sidecar tasks (store.backend: jetstream)";
    kc.History = 1;
    kc.Replicas = replicas;
    kc.StorageType = memory ? js_MemoryStorage : js_FileStorage;
    s = js_CreateKeyValue(kv, js, &kc);
    if (s == NATS_OK)
        return SC_OK;
    if (replicas > 1 && persist_js_unplaceable(nats_GetLastError(NULL))) {
        snprintf(err, errlen,
                 "store.jetstream.replicas: %d replicas for the bucket %s, but the NATS servers "
                 "cannot place them (%s; allowed: 1 on a single server, at most the JetStream "
                 "servers of the cluster)", replicas, bucket,
                 persist_js_unplaceable(nats_GetLastError(NULL)));
        return SC_EINVAL;
    }
    snprintf(err, errlen, "bucket %s: %s", bucket, natsStatus_GetText(s));
    return SC_EIO;
}

sc_status
persist_kv_check(natsConnection *nc, const char *bucket, unsigned partitions, int replicas,
                 bool memory, int64_t timeout_ms, char *err, size_t errlen)
{
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    jsOptions o;
    natsStatus s;
    sc_status st = SC_OK;

    jsOptions_Init(&o);
    o.Wait = timeout_ms;
    if ((s = natsConnection_JetStream(&js, nc, &o)) != NATS_OK) {
        snprintf(err, errlen, "jetstream context: %s", natsStatus_GetText(s));
        return SC_EIO;
    }
    s = js_KeyValue(&kv, js, bucket);
    if (s == NATS_OK)
        st = check_ttl(kv, bucket, err, errlen) ? SC_EINVAL
                                                : check_partitions(kv, bucket, partitions, false, err, errlen);
    else if (s == NATS_NOT_FOUND)
        st = create_bucket(js, bucket, replicas, memory, &kv, err, errlen); /* placeable? */
    else {
        snprintf(err, errlen, "bucket %s: %s", bucket, natsStatus_GetText(s));
        st = SC_EIO;
    }
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    return st;
}

const char *
persist_js_unplaceable(const char *last_error)
{
    /* the descriptions of JetStream errors 10074, 10005 and 10023 */
    static const char *const says[] = {"replicas > 1 not supported", "no suitable peers",
                                       "insufficient resources"};
    const char *at;

    for (size_t i = 0; last_error && i < SC_ARRAY_LEN(says); i++)
        if ((at = strstr(last_error, says[i])) != NULL)
            return at;
    return NULL;
}

/* Finds or makes the bucket and checks it. NULL, or why not (into err). */
static const char *
open_bucket(struct kv_store *k, jsCtx *js, kvStore **kv, char *err, size_t errlen)
{
    natsStatus s = js_KeyValue(kv, js, k->bucket);

    if (s == NATS_NOT_FOUND) {
        if (create_bucket(js, k->bucket, k->replicas, k->memory_storage, kv, err, errlen) != SC_OK)
            return err;
    } else if (s != NATS_OK) {
        snprintf(err, errlen, "bucket %s: %s", k->bucket, natsStatus_GetText(s));
        return err;
    }
    if (check_ttl(*kv, k->bucket, err, errlen) ||
        check_partitions(*kv, k->bucket, k->partitions, true, err, errlen) != SC_OK)
        return err;
    return NULL;
}

static const char KV_STALE[] = "stale claim";
static bool claim_current(struct kv_store *k, unsigned partition, uint64_t gen);

/* Whether key is a fence ("fence.<p>") or the bucket's partition count, not a task record. */
static bool
is_fence_key(const char *key)
{
    return strncmp(key, KV_FENCE_KEY ".", sizeof(KV_FENCE_KEY)) == 0 || strcmp(key, KV_META_KEY) == 0;
}

/*
 * Reads the records of keys (a filter: ">" every one, "<p>.>" one
 * partition's) to the loop. NULL, or why it failed (into err).
 */
static const char *
watch_all(struct kv_store *k, kvStore *kv, const char *keys, unsigned partition, uint64_t gen,
          char *err, size_t errlen)
{
    kvWatcher *w = NULL;
    kvWatchOptions wo;
    kvEntry *e = NULL;
    const char *why = NULL;
    int64_t idle = 0;
    natsStatus s;

    kvWatchOptions_Init(&wo);
    /*
     * Delete markers come through and are skipped here: with IgnoreDeletes,
     * kvWatcher_Next() skips them inside one call and returns NATS_TIMEOUT
     * once they used up its budget (it takes the time since the call began
     * off the rest at every skip), in a few ms with thousands in a row, which
     * counted below as a whole second with nothing received.
     */
    wo.Timeout = k->timeout_ms;
    if ((s = kvStore_Watch(&w, kv, keys, &wo)) != NATS_OK) {
        snprintf(err, errlen, "watching bucket %s: %s", k->bucket, natsStatus_GetText(s));
        return err;
    }
    for (;;) {
        s = kvWatcher_Next(&e, w, 1000);
        if (stopping(k)) {
            why = "stopping";
            break;
        }
        if (s == NATS_TIMEOUT) {
            if ((idle += 1000) < KV_IDLE_MAX_MS)
                continue;
            snprintf(err, errlen, "loading bucket %s: nothing received for %d s", k->bucket,
                     KV_IDLE_MAX_MS / 1000);
            why = err;
            break;
        }
        if (s != NATS_OK) {
            snprintf(err, errlen, "loading bucket %s: %s", k->bucket, natsStatus_GetText(s));
            why = err;
            break;
        }
        if (!e)
            break; /* every record present at the start was delivered */
        idle = 0;
        if (kvEntry_Operation(e) == kvOp_Put && !is_fence_key(kvEntry_Key(e)) &&
            !post_entry(k, e, partition, gen))
            why = "stopping";
        kvEntry_Destroy(e);
        if (why)
            break;
    }
    kvWatcher_Destroy(w);
    return why;
}

/*
 * One job: the bucket, then for a claim the fence "fence.<p>" put first (its
 * revision returned in *rev: writes of an instance that claimed the
 * partition earlier fail from then on), then the records. NULL, or why it
 * failed.
 */
static const char *
job_once(struct kv_store *k, kv_item job, unsigned partition, uint64_t gen, bool refence,
         uint64_t *rev, char *err, size_t errlen)
{
    jsCtx *js = NULL;
    jsOptions jo;
    kvStore *kv = NULL;
    const char *why = NULL;
    char keys[64];
    natsStatus s;

    jsOptions_Init(&jo);
    jo.Wait = k->timeout_ms;
    if ((s = natsConnection_JetStream(&js, k->nc, &jo)) != NATS_OK) {
        snprintf(err, errlen, "JetStream context: %s", natsStatus_GetText(s));
        return err;
    }
    if ((why = open_bucket(k, js, &kv, err, errlen)))
        goto done;
    if (job == KV_CLAIMED) {
        if (!claim_current(k, partition, gen)) {
            why = KV_STALE; /* given up meanwhile: its fence would shut out the next owner */
            goto done;
        }
        snprintf(keys, sizeof(keys), KV_FENCE_KEY ".%u", partition);
        if ((s = kvStore_PutString(rev, kv, keys, k->member)) != NATS_OK) {
            snprintf(err, errlen, "fence of partition %u: %s", partition, natsStatus_GetText(s));
            why = err;
            goto done;
        }
        if (refence)
            goto done; /* the fence alone: the tasks are in memory already */
        snprintf(keys, sizeof(keys), "%u.>", partition);
    } else if (k->fenced) {
        goto done; /* cluster mode: nothing is loaded but the partitions claimed */
    } else {
        snprintf(keys, sizeof(keys), ">");
    }
    why = watch_all(k, kv, keys, partition, gen, err, errlen);

done:
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    return why;
}

/* Whether claim gen of partition is still the current one (no newer claim, no release since). */
static bool
claim_current(struct kv_store *k, unsigned partition, uint64_t gen)
{
    bool cur;

    pthread_mutex_lock(&k->mu);
    cur = partition < k->partitions && k->claim_gen[partition] == gen;
    pthread_mutex_unlock(&k->mu);
    return cur;
}

/* Takes the next current claim asked for (persist_claim()), skipping stale ones; false when stopping. */
static bool
next_claim(struct kv_store *k, unsigned *partition, uint64_t *gen, bool *refence)
{
    bool ok = false;

    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        while (!k->stop && k->nclaims == 0)
            pthread_cond_wait(&k->cv, &k->mu);
        if (k->stop)
            break;
        *partition = k->claims[k->chead].p;
        *gen = k->claims[k->chead].gen;
        *refence = k->claims[k->chead].refence;
        k->chead = (k->chead + 1) % KV_CLAIM_MAX;
        k->nclaims--;
        if (k->claim_gen[*partition] == *gen) {
            ok = true;
            break;
        }
    }
    pthread_mutex_unlock(&k->mu);
    return ok;
}

/*
 * The loader: the whole bucket once at start (KV_LOADED), then the claims
 * asked for, in order (KV_CLAIMED); a job that fails is reported and tried
 * again after a backoff of 0.5 to 10 s until it succeeds or the store stops.
 */
static void *
loader_main(void *arg)
{
    struct kv_store *k = arg;
    kv_item job = KV_LOADED;
    unsigned partition = 0;
    uint64_t gen = 0;
    bool refence = false;
    int64_t backoff = KV_BACKOFF_FIRST;
    char err[256];

    for (;;) {
        uint64_t rev = 0;
        const char *why = job_once(k, job, partition, gen, refence, &rev, err, sizeof(err));
        if (stopping(k))
            break;
        if (why != KV_STALE)
            post_mark(k, why ? KV_FAILED : refence ? KV_REFENCED : job, partition, gen, rev, why);
        if (why && (job == KV_LOADED || claim_current(k, partition, gen))) {
            nap(k, backoff);
            backoff = backoff * 2 > KV_BACKOFF_MAX ? KV_BACKOFF_MAX : backoff * 2;
            continue;
        }
        backoff = KV_BACKOFF_FIRST;
        job = KV_CLAIMED;
        if (!next_claim(k, &partition, &gen, &refence))
            break;
    }
    return NULL;
}

/* ---- the loop's side of the load -------------------------------------------------------------- */

/* One loaded record to the owner: MessagePack back to the JSON document it was written from. */
static void
deliver(struct kv_store *k, struct kv_entry *en)
{
    json_t *src;

    sc_buf_reset(&k->json);
    if (codec_render_json(en->value, en->len, KV_DEPTH, &k->json) != SC_OK ||
        !(src = json_loadb(k->json.data, k->json.len, JSON_ALLOW_NUL, NULL))) {
        set_error(k, "a record of bucket %s is not a task document; skipped", k->bucket);
        /* Handed on empty: the owner counts it in load_skipped like any document it cannot load. */
        if (k->base.owner.loaded && (src = json_object()) != NULL) {
            k->base.owner.loaded(k->base.owner.ctx, "", 0, 0, src);
            json_decref(src);
        }
        return;
    }
    k->st.loaded++;
    if (k->base.owner.loaded)
        k->base.owner.loaded(k->base.owner.ctx, "", 0,
                             (uint64_t)json_integer_value(json_object_get(src, "version")), src);
    json_decref(src);
}

/* One item from the loader: a record, or the end of a job. */
static void
take(struct kv_store *k, struct kv_entry *en)
{
    switch (en->kind) {
    case KV_ENTRY:
        if (!en->gen || claim_current(k, en->partition, en->gen)) /* 0: the start-up load */
            deliver(k, en);
        break;
    case KV_FAILED:
        set_error(k, "%s", en->value ? en->value : "?");
        if (k->ready && en->partition < k->partitions)
            k->refencing[en->partition] = 0;
        if (!k->ready) /* the start-up load: the store cannot serve yet */
            persist_set_state(&k->base, PERSIST_DEGRADED, k->st.last_error);
        else if (k->base.owner.claimed && claim_current(k, en->partition, en->gen))
            k->base.owner.claimed(k->base.owner.ctx, en->partition, false, k->st.last_error);
        break;
    case KV_LOADED:
        k->ready = true;
        persist_set_state(&k->base, PERSIST_OK, NULL);
        kv_flush(k);
        break;
    case KV_REFENCED:
        if (en->partition < k->partitions)
            k->refencing[en->partition] = 0;
        if (claim_current(k, en->partition, en->gen)) {
            k->fence[en->partition] = en->rev;
            kv_flush(k); /* the writes handed back wait for it */
        }
        break;
    case KV_CLAIMED:
        /*
         * A claim asked again, or released, since: its fence is not this
         * member's to use (a newer claim puts its own) and nobody waits for
         * it. The records it handed over belong to the current claim's
         * owner (the mirror skips what it holds already).
         */
        if (!claim_current(k, en->partition, en->gen))
            break;
        k->fence[en->partition] = en->rev;
        if (k->base.owner.claimed)
            k->base.owner.claimed(k->base.owner.ctx, en->partition, true, NULL);
        break;
    }
    free(en->value);
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct kv_store *k = arg;
    struct kv_entry batch[64];
    size_t n, taken = 0;
    bool more;

    (void)fd;
    (void)what;
    /*
     * At most KV_WAKE_MAX entries, then the rest on the loop's next turn: a
     * loader that keeps the ring from running dry (a claim's load while the
     * member serves) would otherwise hold the loop until the load's end,
     * with no admin request, signal, tick or lease decision meanwhile.
     * post() wakes this only when the ring was empty, so the loader does not
     * bring it back in the same turn either.
     */
    do {
        pthread_mutex_lock(&k->mu);
        for (n = 0; n < 64 && k->rlen; n++, k->rlen--) {
            batch[n] = k->ring[k->rhead];
            k->rhead = (k->rhead + 1) % KV_LOAD_RING;
        }
        more = k->rlen > 0;
        pthread_cond_broadcast(&k->cv);
        pthread_mutex_unlock(&k->mu);
        for (size_t i = 0; i < n; i++)
            take(k, &batch[i]);
        taken += n;
    } while (more && taken < KV_WAKE_MAX);
    if (more) {
        struct timeval now = {0, 0};
        evtimer_add(k->wake_later, &now);
    }
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct kv_store *k = arg;

    (void)fd;
    (void)what;
    k->timer_what = KV_T_NONE;
    kv_flush(k);
}

/* A batch without every answer by its deadline: what is left goes back RETRY. */
static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct kv_slot *sl = arg;
    struct kv_store *k = sl->k;
    uint64_t gen = sl->gen;

    (void)fd;
    (void)what;
    if (!sl->in_flight)
        return;
    set_error(k, "bucket %s: no answer from JetStream within %ld ms", k->bucket, k->timeout_ms);
    for (size_t i = 0; i < sl->b.count && sl->in_flight && sl->gen == gen; i++)
        answer(k, sl, i, PERSIST_ITEM_RETRY, k->st.last_error);
}

/* ---- the table -------------------------------------------------------------------------------- */

static sc_status
kv_start(struct persist *p)
{
    struct kv_store *k = kv_of(p);

    if (k->thread_started)
        return SC_OK;
    if (pthread_create(&k->thread, NULL, loader_main, k) != 0)
        return SC_ENOMEM;
    k->thread_started = true;
    return SC_OK;
}

static void
kv_kick(struct persist *p, bool urgent)
{
    struct kv_store *k = kv_of(p);

    if (k->nflight == k->depth || !k->ready || k->timer_what == KV_T_BACKOFF) {
        k->kicked = true;
        k->kicked_urgent |= urgent;
        return;
    }
    /*
     * Never a flush from inside the kick: a write refused at once (too
     * large, no fence) is answered while sending, and the owner, which
     * kicks from the middle of its own bookkeeping, must not hear of it
     * there. An urgent kick flushes on the loop's next turn.
     */
    if (urgent) {
        if (k->timer_what == KV_T_FLUSH)
            disarm(k);
        arm(k, KV_T_FLUSH, 0);
    } else if (k->timer_what != KV_T_FLUSH) {
        arm(k, KV_T_FLUSH, k->flush_ms);
    }
}

static void
kv_stopping(struct persist *p)
{
    struct kv_store *k = kv_of(p);

    k->stopping = true;
    if (k->timer_what == KV_T_BACKOFF) {
        disarm(k);
        arm(k, KV_T_FLUSH, 0);
    }
}

static bool
kv_busy(const struct persist *p)
{
    return ((const struct kv_store *)(const void *)p)->nflight > 0;
}

static void
kv_stats(const struct persist *p, struct persist_stats *out)
{
    const struct kv_store *k = (const struct kv_store *)(const void *)p;
    const char *backend = out->backend;
    persist_state state = out->state;

    *out = k->st;
    out->backend = backend;
    out->state = state;
    out->in_flight = 0;
    for (size_t j = 0; j < k->depth; j++)
        if (k->slot[j].in_flight)
            out->in_flight += k->slot[j].b.count - k->slot[j].nanswered;
}

static void
kv_destroy(struct persist *p)
{
    struct kv_store *k = kv_of(p);

    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    if (k->thread_started)
        pthread_join(k->thread, NULL);
    for (size_t i = 0; i < k->rlen; i++)
        free(k->ring[(k->rhead + i) % KV_LOAD_RING].value);
    if (k->wake)
        event_free(k->wake);
    if (k->wake_later)
        event_free(k->wake_later);
    if (k->timer)
        event_free(k->timer);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    for (size_t j = 0; j < KV_PIPELINE; j++) {
        persist_batch_destroy(&k->slot[j].b);
        free(k->slot[j].answered);
        if (k->slot[j].deadline)
            event_free(k->slot[j].deadline);
    }
    sc_buf_destroy(&k->subj);
    sc_buf_destroy(&k->reply);
    sc_buf_destroy(&k->json);
    codec_free(k->codec);
    free(k->bucket);
    free(k->reply_prefix);
    free(k->fence);
    free(k->claim_gen);
    free(k->refencing);
    free(k->member);
    free(k);
}

static sc_status
kv_claim(struct persist *p, unsigned partition)
{
    struct kv_store *k = kv_of(p);
    sc_status s = SC_OK;

    if (!k->fenced || partition >= k->partitions)
        return SC_EINVAL;
    pthread_mutex_lock(&k->mu);
    if (k->nclaims == KV_CLAIM_MAX) {
        s = SC_EFULL;
    } else {
        size_t at = (k->chead + k->nclaims++) % KV_CLAIM_MAX;
        k->claims[at].p = partition;
        k->claims[at].gen = ++k->claim_gen[partition]; /* an older claim of it is stale now */
        k->claims[at].refence = false;
        pthread_cond_broadcast(&k->cv);
    }
    pthread_mutex_unlock(&k->mu);
    return s;
}

static void
kv_refence(struct persist *p, unsigned partition)
{
    struct kv_store *k = kv_of(p);

    if (!k->fenced || partition >= k->partitions || !k->fence[partition] || k->refencing[partition])
        return;
    pthread_mutex_lock(&k->mu);
    if (k->nclaims < KV_CLAIM_MAX) {
        size_t at = (k->chead + k->nclaims++) % KV_CLAIM_MAX;
        k->claims[at].p = partition;
        k->claims[at].gen = k->claim_gen[partition]; /* the current claim's, not a new one */
        k->claims[at].refence = true;
        k->refencing[partition] = 1;
        pthread_cond_broadcast(&k->cv);
    }
    pthread_mutex_unlock(&k->mu);
}

static void
kv_release(struct persist *p, unsigned partition)
{
    struct kv_store *k = kv_of(p);

    if (!k->fenced || partition >= k->partitions)
        return;
    k->fence[partition] = 0; /* later writes of it are answered FENCED, never sent */
    pthread_mutex_lock(&k->mu);
    k->claim_gen[partition]++; /* a claim still waiting or running is stale */
    pthread_mutex_unlock(&k->mu);
}

static const struct persist_ops kv_ops = {
    .name = "jetstream",
    .start = kv_start,
    .kick = kv_kick,
    .stopping = kv_stopping,
    .busy = kv_busy,
    .stats = kv_stats,
    .destroy = kv_destroy,
    .claim = kv_claim,
    .release = kv_release,
    .refence = kv_refence,
    .durable = true,
};

/* Whether name is a valid bucket name: [A-Za-z0-9_-]+. */
static bool
bucket_valid(const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-'))
            return false;
    return true;
}

sc_status
persist_kv_new(struct event_base *base, const struct persist_kv_opts *o,
               const struct persist_owner *owner, struct persist **out, char *err, size_t errlen)
{
    struct kv_store *k;
    struct codec_limits lim;

    *out = NULL;
    if (!bucket_valid(o->bucket)) {
        snprintf(err, errlen, "store.jetstream.bucket: '%s' is not a bucket name (A-Z a-z 0-9 _ -)",
                 o->bucket ? o->bucket : "");
        return SC_EINVAL;
    }
    if (!o->nc || !o->publish || !o->reply_prefix || !*o->reply_prefix) {
        snprintf(err, errlen, "store.backend: jetstream needs a NATS connection");
        return SC_EINVAL;
    }
    k = sc_xcalloc(1, sizeof(*k));
    k->base.ops = &kv_ops;
    if (owner)
        k->base.owner = *owner;
    k->base.state = PERSIST_STARTING;
    k->evb = base;
    k->nc = o->nc;
    k->bucket = sc_xstrdup(o->bucket);
    k->reply_prefix = sc_xstrdup(o->reply_prefix);
    k->replicas = o->replicas > 0 ? o->replicas : 1;
    k->memory_storage = o->memory_storage;
    k->batch_max = o->batch_max ? o->batch_max : 1000;
    k->flush_ms = o->flush_ms > 0 ? o->flush_ms : 50;
    k->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    k->partitions = o->partitions;
    k->fenced = o->fenced && o->partitions > 0;
    k->fence = sc_xcalloc(o->partitions ? o->partitions : 1, sizeof(*k->fence));
    k->claim_gen = sc_xcalloc(o->partitions ? o->partitions : 1, sizeof(*k->claim_gen));
    k->refencing = sc_xcalloc(o->partitions ? o->partitions : 1, 1);
    k->member = sc_xstrdup(o->member && *o->member ? o->member : "dlq-sidecar");
    k->publish = o->publish;
    k->publish_ctx = o->publish_ctx;
    codec_limits_default(&lim);
    lim.max_envelope_bytes = PERSIST_BULK_BODY_MAX;
    lim.max_depth = KV_DEPTH;
    k->codec = codec_new(&lim);
    /* Fenced: one fenced write per partition in flight, so one batch holding one of each. */
    k->depth = k->fenced ? 1 : KV_PIPELINE;
    for (size_t j = 0; j < KV_PIPELINE; j++) {
        struct kv_slot *sl = &k->slot[j];
        sl->k = k;
        persist_batch_init(&sl->b, k->batch_max, KV_BATCH_BYTES, no_action);
        sl->b.msgpack = o->msgpack_records; /* the owner writes the records: nothing to convert */
        if (k->fenced)
            persist_batch_exclusive(&sl->b, k->partitions);
        sl->answered = sc_xcalloc(k->batch_max, 1);
        sl->deadline = evtimer_new(base, on_deadline, sl);
    }
    sc_buf_init(&k->subj, 4096);
    sc_buf_init(&k->reply, 1024);
    sc_buf_init(&k->json, PERSIST_BULK_BODY_MAX);
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    k->timer = evtimer_new(base, on_timer, k);
    k->wake = event_new(base, -1, 0, on_wake, k);
    k->wake_later = evtimer_new(base, on_wake, k);
    bool events = k->timer && k->wake && k->wake_later;
    for (size_t j = 0; j < KV_PIPELINE; j++)
        events = events && k->slot[j].deadline;
    if (!events) {
        kv_destroy(&k->base);
        snprintf(err, errlen, "libevent: cannot create the store's events");
        return SC_ENOMEM;
    }
    *out = &k->base;
    return SC_OK;
}
