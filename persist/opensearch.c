/* opensearch.c - the OpenSearch backend: index template, start-up load with search_after, write-behind _bulk with external versions, refused batches split, ids mapped to _id, degraded mode. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist-internal.h"

#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 10000
#define THROTTLE_FIRST_MS 200
#define THROTTLE_MAX_MS 10000
#define LOAD_PAGE 500
#define HEALTH_WAIT "20s"
#define SNIPPET 200
#define SPLIT_MAX 64 /* halves waiting while a refused batch is split: one per halving of a size_t */
#define GEN_SHIFT 40   /* cluster mode: external version = claim generation << GEN_SHIFT | write counter */
#define GEN_MAX ((UINT64_C(1) << (63 - GEN_SHIFT)) - 1) /* OpenSearch versions are signed 64-bit */
#define SEQ_MASK ((UINT64_C(1) << GEN_SHIFT) - 1)
#define CLAIM_RETRY_MS 1000

/* Items [lo, hi) of the batch: a part of a split. */
struct os_range {
    size_t lo, hi;
};

/* Start-up steps, in order; PH_READY once writes may flow. */
typedef enum {
    PH_TEMPLATE = 0, /* PUT _index_template/<index> */
    PH_INDEX,        /* PUT <index> (already there is fine) */
    PH_MAPPING,      /* PUT <index>/_mapping: fields added since an older index was made */
    PH_HEALTH,       /* wait for the index to be at least yellow */
    PH_REFRESH,      /* make the last writes of a previous process searchable */
    PH_LOAD,         /* search_after pages of the records to load */
    PH_READY,
} os_phase;

/* The steps of one claim (cluster mode). */
typedef enum {
    CL_FENCE = 0, /* PUT <index>/_doc/h:fence.<p>: the new generation */
    CL_REFRESH,   /* make the former owner's last writes searchable */
    CL_LOAD,      /* search_after pages of the partition's documents */
} os_claim_step;

/* A claim or refence waiting to run: its partition and claim number (stale when no longer current). */
struct os_claim {
    unsigned p;
    uint64_t no;
    bool refence;
};

static const char *const phase_names[] = {"install template", "create index", "update mapping",
                                          "index health",
                                          "refresh", "load", "ready"};

struct os_store {
    struct persist base; /* first: the generic head */
    struct event_base *evb;
    struct persist_http *http;
    char **urls;
    size_t nurls, cur;
    char *index;
    char *template_body;
    char *mapping_body;   /* {"properties":...}: the template's fields, for an existing index */
    char *load_query, *load_sort;
    long timeout_ms;
    int64_t flush_ms;
    struct persist_batch batch;
    struct sc_buf url, req;
    os_phase phase;
    bool started, loaded_all;
    json_t *search_after; /* sort values of the last hit loaded, NULL before the first page */
    size_t page_size;
    bool in_flight;       /* one request at a time: a start-up step or a bulk */
    bool pending;         /* the owner kicked since the last fill */
    bool urgent;
    bool last_full;       /* the last batch was full: more is probably waiting */
    struct event *timer;  /* the next step or batch */
    bool timer_armed;
    int64_t timer_due;    /* mono ms */
    int64_t backoff_ms;   /* degraded: delay before the next try */
    int64_t throttle_ms;  /* 429: delay before the next batch */
    int64_t not_before;   /* mono ms: no request before this */
    bool stopping;        /* persist_stopping(): short retries from now on */
    uint64_t jitter;
    struct persist_stats st;
    persist_result *results; /* per item of the batch in flight */
    size_t results_cap;
    size_t lo, hi;           /* the items of the batch in the request in flight */
    struct os_range splits[SPLIT_MAX]; /* halves still to send while a refused batch is split */
    size_t nsplits;
    size_t split_rejected;   /* items of this batch rejected so far (all parts of a split) */
    /* cluster mode (fenced): claims and external versions */
    bool fenced;
    unsigned partitions;
    uint64_t *gen;           /* per partition: the generation of this store's claim, 0: none */
    uint64_t *claim_no;      /* per partition: the number of its current claim, 0: released */
    unsigned char *refencing; /* per partition: a refence runs (its writes wait) */
    uint64_t claims_made;    /* the last claim number given */
    uint64_t wseq;           /* the write counter: the low bits of every external version */
    struct os_claim *cq;     /* claims to run, in order (a ring of 2 * partitions) */
    size_t cq_head, cq_len;
    struct os_claim run;     /* the claim running */
    os_claim_step cstep;
    bool claim_in_flight;
    uint64_t cgen;           /* the generation the running claim got */
    json_t *claim_after;     /* search_after of the running claim's load */
    struct sc_buf creq, curl;
    struct event *claim_timer; /* runs the next claim (after a failure: CLAIM_RETRY_MS) */
};

static void os_send(struct os_store *o);
static void run_claims(struct os_store *o);

static struct os_store *
os_of(struct persist *p)
{
    return (struct os_store *)(void *)p;
}

/* Records a failure for stats (and for the owner's logs through state()). */
static void
set_error(struct os_store *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_error(struct os_store *o, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(o->st.last_error, sizeof(o->st.last_error), fmt, ap);
    va_end(ap);
    for (char *p = o->st.last_error; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' '; /* one line in logs and stats */
    o->st.last_error_at = sc_now_wall_ms();
}

/* Copies up to SNIPPET bytes of a response body as printable text. */
static void
snippet(const char *body, size_t len, char *out, size_t outlen)
{
    size_t n = 0;

    for (size_t i = 0; i < len && n + 1 < outlen && i < SNIPPET; i++)
        out[n++] = body[i] >= 0x20 && body[i] < 0x7f ? body[i] : ' ';
    out[n] = '\0';
}

/* Pulls "type: reason" out of an OpenSearch error body, else a snippet of it. */
static void
error_text(const char *body, size_t len, char *out, size_t outlen)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *e = j ? json_object_get(j, "error") : NULL;

    if (e && json_is_object(e)) {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *reason = json_string_value(json_object_get(e, "reason"));
        snprintf(out, outlen, "%s: %s", type ? type : "error", reason ? reason : "");
    } else if (e && json_is_string(e)) {
        snprintf(out, outlen, "%s", json_string_value(e));
    } else {
        snippet(body, len, out, outlen);
    }
    json_decref(j);
}

static void
arm(struct os_store *o, int64_t delay_ms)
{
    int64_t now = sc_now_mono_ms(), due = now + (delay_ms > 0 ? delay_ms : 0);
    struct timeval tv;

    if (due < o->not_before)
        due = o->not_before;
    if (o->timer_armed && o->timer_due <= due)
        return;
    o->timer_armed = true;
    o->timer_due = due;
    tv.tv_sec = (due - now) / 1000;
    tv.tv_usec = ((due - now) % 1000) * 1000;
    evtimer_add(o->timer, &tv);
}

/* The next delay of a doubling backoff with +-20% jitter. */
static int64_t
grow(struct os_store *o, int64_t *cur, int64_t first, int64_t max)
{
    int64_t d = *cur ? *cur * 2 : first;
    double f;

    if (d > max)
        d = max;
    *cur = d;
    o->jitter ^= o->jitter << 13;
    o->jitter ^= o->jitter >> 7;
    o->jitter ^= o->jitter << 17;
    f = (double)(o->jitter >> 11) / 9007199254740992.0; /* [0,1) */
    return d + (int64_t)((double)d * 0.2 * (2 * f - 1));
}

/* Plans the next try after a growing backoff (degraded mode). */
static void
back_off(struct os_store *o)
{
    int64_t d = grow(o, &o->backoff_ms, BACKOFF_FIRST_MS, BACKOFF_MAX_MS);

    if (o->stopping)
        d = PERSIST_STOPPING_RETRY_MS;
    o->not_before = sc_now_mono_ms() + d;
}

/* Turns the store degraded and plans the next try after a growing backoff. */
static void
degrade(struct os_store *o)
{
    back_off(o);
    persist_set_state(&o->base, PERSIST_DEGRADED, o->st.last_error);
}

static const char *
base_url(struct os_store *o)
{
    return o->urls[o->cur];
}

/* The next URL after a failure to reach the current one. */
static void
rotate(struct os_store *o)
{
    o->cur = (o->cur + 1) % o->nurls;
}

static void
build_url(struct os_store *o, const char *path)
{
    sc_buf_reset(&o->url);
    sc_buf_appendf(&o->url, "%s%s", base_url(o), path);
}

/* ---- start-up steps --------------------------------------------------------------------------- */

static void on_step(void *ctx, long status, const char *body, size_t len, const char *error);

/* Fails the current start-up step: degraded, and everything again from the template after a backoff. */
static void
step_failed(struct os_store *o, long status, const char *body, size_t len, const char *error)
{
    char why[200];

    if (status == 0) {
        set_error(o, "%s: %s", phase_names[o->phase], error ? error : "request failed");
        rotate(o);
    } else {
        error_text(body, len, why, sizeof(why));
        set_error(o, "%s: HTTP %ld: %s", phase_names[o->phase], status, why);
    }
    o->phase = PH_TEMPLATE;
    degrade(o);
    arm(o, 0);
}

/* Sends the request of the current start-up step. */
static void
step_send(struct os_store *o)
{
    const char *method = "GET", *ctype = NULL;
    const void *body = NULL;
    size_t len = 0;
    long timeout = o->timeout_ms;
    char path[600];
    sc_status st;

    switch (o->phase) {
    case PH_TEMPLATE:
        snprintf(path, sizeof(path), "/_index_template/%s", o->index);
        method = "PUT";
        body = o->template_body;
        len = strlen(o->template_body);
        break;
    case PH_INDEX:
        snprintf(path, sizeof(path), "/%s", o->index);
        method = "PUT";
        body = "{}";
        len = 2;
        break;
    case PH_MAPPING:
        snprintf(path, sizeof(path), "/%s/_mapping", o->index);
        method = "PUT";
        body = o->mapping_body;
        len = strlen(o->mapping_body);
        break;
    case PH_HEALTH:
        snprintf(path, sizeof(path), "/_cluster/health/%s?wait_for_status=yellow&timeout=%s",
                 o->index, HEALTH_WAIT);
        timeout = o->timeout_ms + 25000;
        break;
    case PH_REFRESH:
        snprintf(path, sizeof(path), "/%s/_refresh", o->index);
        method = "POST";
        break;
    case PH_LOAD: {
        char *sa = o->search_after ? json_dumps(o->search_after, JSON_COMPACT) : NULL;
        snprintf(path, sizeof(path),
                 "/%s/_search?filter_path=hits.hits._id,hits.hits._version,hits.hits._source,hits.hits.sort",
                 o->index);
        method = "POST";
        sc_buf_reset(&o->req);
        st = sc_buf_appendf(&o->req,
                            "{\"size\":%zu,\"version\":true,\"track_total_hits\":false,\"query\":%s,"
                            "\"sort\":%s%s%s}",
                            o->page_size, o->load_query, o->load_sort, sa ? ",\"search_after\":" : "",
                            sa ? sa : "");
        free(sa);
        if (st != SC_OK || !o->req.data) {
            set_error(o, "%s: cannot build the request (%s)", phase_names[o->phase], sc_status_str(st));
            degrade(o);
            arm(o, 0);
            return;
        }
        body = o->req.data;
        len = o->req.len;
        timeout = o->timeout_ms * 2;
        break;
    }
    case PH_READY:
        return;
    }
    if (body)
        ctype = "application/json";
    build_url(o, path);
    if (persist_http_request(o->http, method, o->url.data, ctype, body, len, timeout, on_step, o)) {
        set_error(o, "%s: cannot start the request", phase_names[o->phase]);
        degrade(o);
        arm(o, 0);
        return;
    }
    o->in_flight = true;
}

/*
 * Hands one page of loaded records to the owner and keeps the last hit's
 * sort values in *after. A claim's load (claim) hands version 0: the
 * _version is then the external version of cluster mode, not the record's
 * (the owner reads the document's own). Returns the number of hits, or -1
 * when malformed.
 */
static long
load_page(struct os_store *o, const char *body, size_t len, json_t **after, bool claim)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, &jerr), *hits, *hit, *last_sort = NULL;
    size_t i;
    long n = -1;

    if (!j)
        goto done;
    hits = json_object_get(json_object_get(j, "hits"), "hits");
    if (!hits) { /* filter_path drops an empty hits array */
        n = 0;
        goto done;
    }
    if (!json_is_array(hits))
        goto done;
    json_array_foreach(hits, i, hit) {
        const char *id = json_string_value(json_object_get(hit, "_id"));
        json_t *src = json_object_get(hit, "_source");
        json_t *ver = json_object_get(hit, "_version");
        json_t *sort = json_object_get(hit, "sort");
        /* The next page starts after the last hit, valid or not: else a page of bad hits comes back forever. */
        if (json_is_array(sort))
            last_sort = sort;
        if (!id || !json_is_object(src))
            continue;
        o->st.loaded++;
        if (o->base.owner.loaded)
            o->base.owner.loaded(o->base.owner.ctx, id, strlen(id),
                                 !claim && json_is_integer(ver) ? (uint64_t)json_integer_value(ver) : 0,
                                 src);
    }
    if (json_array_size(hits) && !last_sort)
        goto done; /* hits without sort values: no next page to ask for */
    n = (long)json_array_size(hits);
    if (last_sort) {
        json_decref(*after);
        *after = json_incref(last_sort);
    }
done:
    json_decref(j);
    return n;
}

static void
on_step(void *ctx, long status, const char *body, size_t len, const char *error)
{
    struct os_store *o = ctx;
    long n;

    o->in_flight = false;
    switch (o->phase) {
    case PH_TEMPLATE:
    case PH_MAPPING:
    case PH_REFRESH:
        if (status != 200)
            goto fail;
        break;
    case PH_INDEX:
        if (status != 200 && !(status == 400 && strstr(body, "resource_already_exists_exception")))
            goto fail;
        if (status == 200)
            o->phase++; /* just made from the template: its mapping has every field */
        break;
    case PH_HEALTH:
        if (status != 200 || strstr(body, "\"status\":\"red\""))
            goto fail;
        break;
    case PH_LOAD:
        if (status == 0 && error && strstr(error, "larger than") && o->page_size > 1) {
            o->page_size = o->page_size / 4 ? o->page_size / 4 : 1; /* pages of huge documents */
            step_send(o);
            return;
        }
        if (status != 200 || (n = load_page(o, body, len, &o->search_after, false)) < 0)
            goto fail;
        if ((size_t)n >= o->page_size) {
            step_send(o); /* the next page */
            return;
        }
        o->loaded_all = true;
        break;
    case PH_READY:
        return;
    }
    o->phase++;
    if (o->phase == PH_REFRESH && (o->loaded_all || !o->load_query || o->fenced))
        o->phase = PH_READY;
    if (o->phase < PH_READY) {
        step_send(o);
        return;
    }
    o->backoff_ms = 0;
    o->not_before = 0;
    persist_set_state(&o->base, PERSIST_OK, NULL);
    if (o->pending)
        arm(o, o->urgent ? 0 : o->flush_ms);
    run_claims(o);
    return;

fail:
    step_failed(o, status, body, len, error);
}

/* ---- writes ----------------------------------------------------------------------------------- */

/* Whether OpenSearch takes id as _id unchanged (see persist_opensearch_doc_id()). */
static bool
id_as_is(const char *id, size_t len)
{
    return len >= 1 && len <= PERSIST_OS_ID_MAX && !(len >= 2 && id[0] == 'h' && id[1] == ':') &&
           sc_utf8_valid(id, len, SC_UTF8_NO_NUL);
}

sc_status
persist_opensearch_doc_id(struct sc_buf *out, const char *id, size_t id_len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    char h[2 + 2 * sizeof(md)];

    if (id_as_is(id, id_len))
        return sc_buf_append(out, id, id_len);
    persist_sha256(id, id_len, md);
    h[0] = 'h';
    h[1] = ':';
    for (size_t i = 0; i < sizeof(md); i++) {
        h[2 + 2 * i] = hex[md[i] >> 4];
        h[3 + 2 * i] = hex[md[i] & 15];
    }
    return sc_buf_append(out, h, sizeof(h));
}

/* The partition of record id (cluster mode): FNV-1a 64 of its bytes mod partitions, as dlq_partition_of(). */
static unsigned
partition_of(const struct os_store *o, const char *id, size_t len)
{
    return (unsigned)(sc_fnv1a64(id, len) % o->partitions);
}

/*
 * The external version of a write of id in cluster mode: the partition's
 * claim generation in the high bits, this store's write counter in the
 * low ones (docs/cluster.md, "The OpenSearch store's fence"). A partition
 * without a usable claim keeps version: its item is not sent
 * (drop_unsendable()).
 */
static uint64_t
external_version(struct os_store *o, const char *id, size_t id_len, uint64_t version)
{
    unsigned p = partition_of(o, id, id_len);

    if (!o->gen[p] || o->refencing[p])
        return version;
    if (o->wseq < SEQ_MASK)
        o->wseq++; /* 2^40 - 1 writes per process: over 30 years at 1,000 writes/s */
    return o->gen[p] << GEN_SHIFT | o->wseq;
}

/* The _bulk action line of one item, with its (mapped) _id and external version. */
static sc_status
bulk_action(struct sc_buf *b, const char *id, size_t id_len, uint64_t version, bool del)
{
    /* b is the body of the store's own batch (os_store.batch.body): its claims give the version. */
    struct os_store *o = (struct os_store *)(void *)((char *)b - offsetof(struct os_store, batch.body));
    const char *head = del ? "{\"delete\":{\"_id\":" : "{\"index\":{\"_id\":";
    sc_status s;

    if (o->fenced)
        version = external_version(o, id, id_len, version);

    if ((s = sc_buf_append(b, head, strlen(head))))
        return s;
    if (id_as_is(id, id_len))
        s = sc_json_quote(b, id, id_len);
    else if (!(s = sc_buf_appendc(b, '"')) && !(s = persist_opensearch_doc_id(b, id, id_len)))
        s = sc_buf_appendc(b, '"'); /* "h:" and hex digits: nothing to escape */
    if (s)
        return s;
    return sc_buf_appendf(b, ",\"version\":%llu,\"version_type\":\"external\"}}\n",
                          (unsigned long long)version);
}

/* Reports every item of the batch to the owner with the results computed in o->results. */
static void
report(struct os_store *o, const char *reason)
{
    struct persist_batch *b = &o->batch;
    struct persist_item it;

    for (size_t i = 0; i < b->count; i++) {
        it.id = persist_batch_item_id(b, i);
        it.id_len = b->items[i].id_len;
        it.version = b->items[i].version;
        it.del = b->items[i].del;
        switch (o->results[i]) {
        case PERSIST_ITEM_OK: o->st.written++; break;
        case PERSIST_ITEM_STALE: o->st.stale++; break;
        case PERSIST_ITEM_RETRY: o->st.retried++; break;
        case PERSIST_ITEM_REJECTED: o->st.rejected++; break;
        case PERSIST_ITEM_FENCED: o->st.fenced++; break;
        }
        if (o->base.owner.result)
            o->base.owner.result(o->base.owner.ctx, &it, o->results[i], reason);
    }
    o->st.in_flight = 0;
    persist_batch_reset(b);
}

/*
 * Whether a 409's reason ("... current version [N] is higher or equal to
 * the one provided [M]") names a document written under a newer claim
 * generation than the write's (cluster mode): a newer owner wrote it. A
 * reason that cannot be read counts as newer (the write is not ours to
 * retry).
 */
static bool
newer_owner(const char *reason)
{
    const char *c = reason ? strstr(reason, "current version [") : NULL;
    const char *m = reason ? strstr(reason, "provided [") : NULL;
    unsigned long long cur, mine;

    if (!c || !m || sscanf(c, "current version [%llu]", &cur) != 1 ||
        sscanf(m, "provided [%llu]", &mine) != 1)
        return true;
    return (cur >> GEN_SHIFT) > (mine >> GEN_SHIFT);
}

/*
 * Classifies the items [o->lo, o->hi) of a 200 _bulk response into
 * o->results. Returns false when the response does not describe them. Sets
 * *refused when an item says the cluster refuses writes (a block, a missing
 * or closed index, 5xx), *throttled on 429s, *missing_index when the index is
 * gone.
 */
static bool
classify_items(struct os_store *o, const char *body, size_t len, bool *refused, bool *throttled,
               bool *missing_index, size_t *nrejected)
{
    struct persist_batch *b = &o->batch;
    json_t *j = json_loadb(body, len, 0, NULL), *items, *item;
    bool ok = false;
    size_t i;

    if (!j)
        goto done;
    items = json_object_get(j, "items");
    if (!json_is_array(items) || json_array_size(items) != o->hi - o->lo)
        goto done;
    json_array_foreach(items, i, item) {
        const char *k;
        json_t *v = NULL, *err;
        long st;
        const char *type = NULL, *reason = NULL;
        size_t n = o->lo + i;

        json_object_foreach(item, k, v) break;
        if (!v || !json_is_object(v))
            goto done;
        st = (long)json_integer_value(json_object_get(v, "status"));
        err = json_object_get(v, "error");
        if (err) {
            type = json_string_value(json_object_get(err, "type"));
            reason = json_string_value(json_object_get(err, "reason"));
        }
        if (st >= 200 && st < 300) {
            o->results[n] = PERSIST_ITEM_OK;
        } else if (st == 404 && b->items[n].del && !(type && strstr(type, "index_not_found"))) {
            o->results[n] = PERSIST_ITEM_OK;
        } else if (st == 409) {
            o->results[n] = o->fenced && newer_owner(reason) ? PERSIST_ITEM_FENCED : PERSIST_ITEM_STALE;
        } else if (st == 429 && !(type && strstr(type, "cluster_block"))) {
            o->results[n] = PERSIST_ITEM_RETRY;
            *throttled = true;
        } else if (st == 429 || st == 403 || st == 404 || st >= 500 || st == 0 ||
                   (type && strstr(type, "index_closed"))) {
            /* A closed index answers each item 400: the index's state, not the item's fault. */
            o->results[n] = PERSIST_ITEM_RETRY;
            *refused = true;
            if (type && strstr(type, "index_not_found"))
                *missing_index = true;
            set_error(o, "_bulk item: HTTP %ld: %s: %s", st, type ? type : "error",
                      reason ? reason : "");
        } else {
            o->results[n] = PERSIST_ITEM_REJECTED;
            (*nrejected)++;
            set_error(o, "_bulk item %.*s rejected: HTTP %ld: %s: %.120s", (int)(b->items[n].id_len < 64 ? b->items[n].id_len : 64),
                      persist_batch_item_id(b, n), st, type ? type : "error", reason ? reason : "");
        }
    }
    ok = true;
done:
    json_decref(j);
    return ok;
}

/* The bytes of the items [lo, hi) in the batch's body. */
static size_t
range_end(const struct os_store *o, size_t hi)
{
    return hi < o->batch.count ? o->batch.items[hi].body_off : o->batch.body.len;
}

static void on_bulk(void *ctx, long status, const char *body, size_t len, const char *error);

/* Sends the items [o->lo, o->hi) of the batch (the whole batch, or a part of a split). */
static void
send_range(struct os_store *o)
{
    struct persist_batch *b = &o->batch;
    size_t from = b->items[o->lo].body_off, to = range_end(o, o->hi);

    o->st.batches++;
    if (persist_http_request(o->http, "POST", o->url.data, "application/x-ndjson", b->body.data + from,
                             to - from, o->timeout_ms, on_bulk, o)) {
        on_bulk(o, 0, "", 0, "cannot start the request");
        return;
    }
    o->in_flight = true;
}

/*
 * Whether a request refused as a whole was refused for what it carries
 * rather than for the cluster's state: 400 (an item failed validation, such
 * as an _id OpenSearch does not take), 413 (too large for the node), 429
 * circuit_breaking_exception (too large for the node's memory now). Such a
 * request is split until the item at fault stands alone.
 */
static bool
refused_for_content(long status, const char *why)
{
    return status == 400 || status == 413 ||
           (status == 429 && strstr(why, "circuit_breaking_exception"));
}

/* Hands back as RETRY the items [o->lo, o->hi) and every half still waiting in the split. */
static void
abandon_split(struct os_store *o)
{
    for (size_t i = o->lo; i < o->hi; i++)
        o->results[i] = PERSIST_ITEM_RETRY;
    while (o->nsplits) {
        struct os_range r = o->splits[--o->nsplits];
        for (size_t i = r.lo; i < r.hi; i++)
            o->results[i] = PERSIST_ITEM_RETRY;
    }
}

/*
 * A _bulk request refused as a whole for what it carries
 * (refused_for_content()): a part of more than one item is split, its
 * first half sent now (returns true); a lone item is REJECTED (*rejected
 * 1), or with 429 handed back as a whole (*whole, *throttled).
 */
static bool
bulk_refused_content(struct os_store *o, long status, const char *why, bool *whole,
                     bool *throttled, size_t *rejected)
{
    struct persist_batch *b = &o->batch;
    size_t n = o->hi - o->lo;

    o->st.failed_batches++;
    if (status == 413 && n > 1) {
        /* The node takes less than the batch limit: smaller batches from now on. */
        size_t bytes = range_end(o, o->hi) - b->items[o->lo].body_off;
        if (bytes / 2 < b->max_bytes)
            b->max_bytes = bytes / 2 ? bytes / 2 : 1; /* down to one item a batch */
    }
    if (n > 1) {
        /* Split: the first half now, the second once the first is settled. */
        set_error(o, "_bulk: HTTP %ld: %s; split to find the item at fault (%zu items)", status,
                  why, n);
        /* At most one waiting half per halving: the stack never passes SPLIT_MAX. */
        o->splits[o->nsplits].lo = o->lo + n / 2;
        o->splits[o->nsplits].hi = o->hi;
        o->nsplits++;
        o->hi = o->lo + n / 2;
        send_range(o);
        return true;
    }
    if (status == 429) {
        *whole = *throttled = true; /* alone and still too large for the node's memory now */
        abandon_split(o);
        set_error(o, "_bulk: HTTP 429: %s", why);
    } else {
        /* The item alone is refused: it never will be taken. */
        o->results[o->lo] = PERSIST_ITEM_REJECTED;
        *rejected = 1;
        set_error(o, "_bulk item %.*s rejected: HTTP %ld: %s (%zu bytes)",
                  (int)(b->items[o->lo].id_len < 64 ? b->items[o->lo].id_len : 64),
                  persist_batch_item_id(b, o->lo), status, why,
                  range_end(o, o->hi) - b->items[o->lo].body_off);
    }
    return false;
}

/*
 * A _bulk request that failed as a whole: unreachable (status 0), a 200
 * that does not match the request, or another HTTP error. Sets *throttled
 * for a plain 429, else *refused (and *missing for a 404).
 */
static void
bulk_failed(struct os_store *o, long status, const char *why, const char *error, bool *refused,
            bool *throttled, bool *missing)
{
    o->st.failed_batches++;
    abandon_split(o);
    if (status == 0) {
        set_error(o, "_bulk: %s", error ? error : "request failed");
        rotate(o);
        *refused = true;
    } else if (status == 200) {
        set_error(o, "_bulk: a response that does not match the request");
        *refused = true;
    } else {
        set_error(o, "_bulk: HTTP %ld: %s", status, why);
        /* A block answered 429 (a flood-stage disk block) is a write block, not throttling. */
        if (status == 429 && !strstr(why, "cluster_block_exception"))
            *throttled = true;
        else
            *refused = true;
        if (status == 404)
            *missing = true;
    }
}

/*
 * Decides the next try before the owner hears of the items, so that its
 * kicks respect it: a backoff when refused (and the template and index
 * again when the index went missing), a throttle delay when throttled,
 * none otherwise.
 */
static void
bulk_next_try(struct os_store *o, bool refused, bool throttled, bool missing)
{
    int64_t delay;

    if (refused) {
        back_off(o);
        if (missing)
            o->phase = PH_TEMPLATE; /* the index went away: template and index again */
    } else {
        o->backoff_ms = 0;
        if (throttled) {
            delay = grow(o, &o->throttle_ms, THROTTLE_FIRST_MS, THROTTLE_MAX_MS);
            if (o->stopping)
                delay = PERSIST_STOPPING_RETRY_MS;
            o->not_before = sc_now_mono_ms() + delay;
        } else {
            o->throttle_ms = 0;
            o->not_before = 0;
        }
    }
}

/*
 * The answer to one _bulk request (the batch, or a part of a split). The
 * batch in flight is the backend's until report() hands every item back to
 * the owner with its result: the owner hears nothing of a split until it is
 * over, and an item is in flight (not on the owner's dirty list) until then.
 */
static void
on_bulk(void *ctx, long status, const char *body, size_t len, const char *error)
{
    struct os_store *o = ctx;
    bool refused = false, throttled = false, missing = false, whole = false;
    size_t rejected = 0;
    char why[200] = "";

    o->in_flight = false;
    if (status != 200 && status != 0)
        error_text(body, len, why, sizeof(why));
    if (status == 200 && classify_items(o, body, len, &refused, &throttled, &missing, &rejected)) {
        /* item by item */
    } else if (status != 0 && status != 200 && refused_for_content(status, why)) {
        if (bulk_refused_content(o, status, why, &whole, &throttled, &rejected))
            return; /* a half is in flight */
    } else {
        whole = true;
        bulk_failed(o, status, why, error, &refused, &throttled, &missing);
    }
    o->split_rejected += rejected;
    if (o->nsplits) {
        if (refused || throttled) {
            abandon_split(o); /* only this part was answered: the rest goes back too */
        } else {
            o->lo = o->splits[o->nsplits - 1].lo; /* the next half */
            o->hi = o->splits[o->nsplits - 1].hi;
            o->nsplits--;
            send_range(o);
            return;
        }
    }
    /* Tell the owner of the new state once the items are back in its hands (its log then counts them). */
    bulk_next_try(o, refused, throttled, missing);
    report(o, whole || refused || throttled || o->split_rejected ? o->st.last_error : NULL);
    persist_set_state(&o->base, refused ? PERSIST_DEGRADED : PERSIST_OK, refused ? o->st.last_error : NULL);
    if (refused || throttled || o->pending || o->last_full)
        arm(o, refused || throttled || o->urgent || o->last_full ? 0 : o->flush_ms);
}

/*
 * Cluster mode: takes out of the batch the items of partitions this store
 * holds no usable claim on, and answers them at once: FENCED when the
 * partition is not claimed here, RETRY while its refence runs. Claims do
 * not change between the fill and this (both on the loop, one after the
 * other), so their versions were written with the same view.
 */
static void
drop_unsendable(struct os_store *o)
{
    struct persist_batch *b = &o->batch;
    struct persist_item it;
    size_t w = 0, body_w = 0, ids_w = 0, dropped = 0;

    for (size_t i = 0; i < b->count; i++) {
        unsigned p = partition_of(o, persist_batch_item_id(b, i), b->items[i].id_len);
        o->results[i] = o->gen[p] && !o->refencing[p] ? PERSIST_ITEM_OK
                        : o->gen[p]                    ? PERSIST_ITEM_RETRY
                                                       : PERSIST_ITEM_FENCED;
        dropped += o->results[i] != PERSIST_ITEM_OK;
    }
    if (!dropped)
        return;
    /* The answers first, while the batch is whole (a callback may refence: the marks above stand). */
    for (size_t i = 0; i < b->count; i++) {
        if (o->results[i] == PERSIST_ITEM_OK)
            continue;
        it.id = persist_batch_item_id(b, i);
        it.id_len = b->items[i].id_len;
        it.version = b->items[i].version;
        it.del = b->items[i].del;
        if (o->results[i] == PERSIST_ITEM_FENCED)
            o->st.fenced++;
        else
            o->st.retried++;
        if (o->base.owner.result)
            o->base.owner.result(o->base.owner.ctx, &it, o->results[i],
                                 o->results[i] == PERSIST_ITEM_FENCED
                                     ? "this instance holds no claim on the partition"
                                     : "the partition's fence is being renewed");
    }
    /* Then the kept items moved down, in order (each moves to or below where it was). */
    for (size_t i = 0; i < b->count; i++) {
        struct persist_batch_item item = b->items[i];
        size_t blen = (i + 1 < b->count ? b->items[i + 1].body_off : b->body.len) - item.body_off;
        if (o->results[i] != PERSIST_ITEM_OK)
            continue;
        memmove(b->body.data + body_w, b->body.data + item.body_off, blen);
        memmove(b->ids.data + ids_w, b->ids.data + item.id_off, item.id_len);
        item.body_off = body_w;
        item.id_off = ids_w;
        body_w += blen;
        ids_w += item.id_len;
        b->items[w++] = item;
    }
    b->count = w;
    b->body.len = body_w;
    b->ids.len = ids_w;
}

/* Fills a batch from the owner and sends it. */
static void
send_bulk(struct os_store *o)
{
    struct persist_batch *b = &o->batch;
    char path[600];

    persist_batch_reset(b);
    o->pending = false;
    o->urgent = false;
    if (o->base.owner.fill)
        o->base.owner.fill(o->base.owner.ctx, b);
    if (b->count == 0)
        return;
    o->last_full = persist_batch_full(b);
    if (b->count > o->results_cap) {
        o->results_cap = b->count;
        o->results = sc_xrealloc(o->results, o->results_cap * sizeof(*o->results));
    }
    if (o->fenced) {
        drop_unsendable(o);
        if (b->count == 0) {
            persist_batch_reset(b);
            return;
        }
    }
    snprintf(path, sizeof(path),
             "/%s/_bulk?filter_path=items.*.status,items.*.error.type,items.*.error.reason",
             o->index);
    build_url(o, path);
    o->st.in_flight = b->count;
    o->lo = 0;
    o->hi = b->count;
    o->nsplits = 0;
    o->split_rejected = 0;
    send_range(o);
}

/* The timer: the next start-up step, or the next batch. */
static void
os_send(struct os_store *o)
{
    if (o->in_flight || !o->started)
        return;
    if (sc_now_mono_ms() < o->not_before) {
        arm(o, 0);
        return;
    }
    if (o->phase < PH_READY)
        step_send(o);
    else
        send_bulk(o);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct os_store *o = arg;

    (void)fd;
    (void)what;
    o->timer_armed = false;
    os_send(o);
}

/* ---- claims (cluster mode) ---------------------------------------------------------------------- */

/* Whether claim c is still the partition's current one (no newer claim, no release since). */
static bool
claim_current(const struct os_store *o, const struct os_claim *c)
{
    return c->no && o->claim_no[c->p] == c->no;
}

/* Queues a claim or refence. Returns SC_OK or SC_EFULL (the ring is full). */
static sc_status
claim_push(struct os_store *o, unsigned p, uint64_t no, bool refence)
{
    size_t cap = 2 * (size_t)o->partitions;

    if (o->cq_len == cap)
        return SC_EFULL;
    o->cq[(o->cq_head + o->cq_len) % cap] = (struct os_claim){p, no, refence};
    o->cq_len++;
    return SC_OK;
}

static void on_claim(void *ctx, long status, const char *body, size_t len, const char *error);

/* Sends the request of the running claim's step. Returns false when it could not start. */
static bool
claim_send(struct os_store *o)
{
    const char *method = "POST", *body = NULL;
    size_t len = 0;
    long timeout = o->timeout_ms;
    char path[600];

    sc_buf_reset(&o->creq);
    switch (o->cstep) {
    case CL_FENCE:
        snprintf(path, sizeof(path), "/%s/_doc/h:fence.%u?filter_path=_version", o->index, o->run.p);
        method = "PUT";
        body = "{}";
        len = 2;
        break;
    case CL_REFRESH:
        snprintf(path, sizeof(path), "/%s/_refresh", o->index);
        break;
    case CL_LOAD: {
        char *sa = o->claim_after ? json_dumps(o->claim_after, JSON_COMPACT) : NULL;
        sc_status st;
        snprintf(path, sizeof(path),
                 "/%s/_search?filter_path=hits.hits._id,hits.hits._source,hits.hits.sort", o->index);
        st = sc_buf_appendf(&o->creq,
                            "{\"size\":%zu,\"track_total_hits\":false,\"query\":{\"term\":"
                            "{\"partition\":%u}},\"sort\":%s%s%s}",
                            o->page_size, o->run.p, o->load_sort, sa ? ",\"search_after\":" : "",
                            sa ? sa : "");
        free(sa);
        if (st != SC_OK || !o->creq.data)
            return false;
        body = o->creq.data;
        len = o->creq.len;
        timeout = o->timeout_ms * 2;
        break;
    }
    }
    sc_buf_reset(&o->curl);
    if (sc_buf_appendf(&o->curl, "%s%s", base_url(o), path) != SC_OK || !o->curl.data ||
        persist_http_request(o->http, method, o->curl.data, body ? "application/json" : NULL, body,
                             len, timeout, on_claim, o))
        return false;
    o->claim_in_flight = true;
    return true;
}

/* Runs the claims again after CLAIM_RETRY_MS (a failed step). */
static void
claim_retry_later(struct os_store *o)
{
    struct timeval tv = {CLAIM_RETRY_MS / 1000, (CLAIM_RETRY_MS % 1000) * 1000};

    evtimer_add(o->claim_timer, &tv);
}

/* Starts the next current claim waiting, when none runs and the index is ready. */
static void
run_claims(struct os_store *o)
{
    size_t cap = 2 * (size_t)o->partitions;

    if (!o->fenced || o->claim_in_flight || !o->started || o->phase < PH_READY)
        return;
    while (o->cq_len) {
        o->run = o->cq[o->cq_head];
        o->cq_head = (o->cq_head + 1) % cap;
        o->cq_len--;
        if (!claim_current(o, &o->run))
            continue; /* given up or asked again since: its generation would shut out the next owner */
        o->cstep = CL_FENCE;
        json_decref(o->claim_after);
        o->claim_after = NULL;
        if (claim_send(o))
            return;
        set_error(o, "claim of partition %u: cannot start the request", o->run.p);
        claim_push(o, o->run.p, o->run.no, o->run.refence);
        claim_retry_later(o);
        return;
    }
}

/* The running claim failed: told to the owner (a claim), queued again and tried after CLAIM_RETRY_MS. */
static void
claim_failed(struct os_store *o, long status, const char *body, size_t len, const char *error)
{
    static const char *const steps[] = {"fence", "refresh", "load"};
    char why[200] = "";

    if (status)
        error_text(body, len, why, sizeof(why));
    set_error(o, "claim of partition %u: %s: %s", o->run.p, steps[o->cstep],
              status ? why : error ? error : "request failed");
    if (status == 0)
        rotate(o);
    claim_push(o, o->run.p, o->run.no, o->run.refence);
    if (!o->run.refence && o->base.owner.claimed)
        o->base.owner.claimed(o->base.owner.ctx, o->run.p, false, o->st.last_error);
    claim_retry_later(o);
}

static void
on_claim(void *ctx, long status, const char *body, size_t len, const char *error)
{
    struct os_store *o = ctx;
    json_t *j;
    long n;

    o->claim_in_flight = false;
    if (!claim_current(o, &o->run)) {
        run_claims(o); /* given up meanwhile: what it found is not this instance's */
        return;
    }
    switch (o->cstep) {
    case CL_FENCE:
        if (status != 200 && status != 201)
            goto fail;
        j = json_loadb(body, len, 0, NULL);
        o->cgen = (uint64_t)json_integer_value(json_object_get(j, "_version"));
        json_decref(j);
        if (o->cgen == 0 || o->cgen > GEN_MAX) {
            status = 0;
            error = o->cgen ? "the fence's generation passed 2^23 - 1" : "no _version in the answer";
            goto fail;
        }
        if (o->run.refence) {
            o->gen[o->run.p] = o->cgen;
            o->refencing[o->run.p] = 0;
            if (o->pending)
                arm(o, 0);
            run_claims(o);
            return;
        }
        o->cstep = CL_REFRESH;
        break;
    case CL_REFRESH:
        if (status != 200)
            goto fail;
        o->cstep = CL_LOAD;
        break;
    case CL_LOAD:
        if (status != 200 || (n = load_page(o, body, len, &o->claim_after, true)) < 0)
            goto fail;
        if ((size_t)n >= o->page_size)
            break; /* the next page */
        o->gen[o->run.p] = o->cgen;
        if (o->base.owner.claimed)
            o->base.owner.claimed(o->base.owner.ctx, o->run.p, true, NULL);
        if (o->pending)
            arm(o, 0);
        run_claims(o);
        return;
    }
    if (claim_send(o))
        return;
    status = 0;
    error = "cannot start the request";
fail:
    claim_failed(o, status, body, len, error);
}

static void
on_claim_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_claims(arg);
}

static sc_status
os_claim(struct persist *p, unsigned partition)
{
    struct os_store *o = os_of(p);

    if (!o->fenced || partition >= o->partitions)
        return SC_EINVAL;
    o->claim_no[partition] = ++o->claims_made;
    o->gen[partition] = 0;
    o->refencing[partition] = 0;
    if (claim_push(o, partition, o->claim_no[partition], false)) {
        o->claim_no[partition] = 0;
        return SC_EFULL;
    }
    run_claims(o);
    return SC_OK;
}

static void
os_release(struct persist *p, unsigned partition)
{
    struct os_store *o = os_of(p);

    if (!o->fenced || partition >= o->partitions)
        return;
    o->claim_no[partition] = 0;
    o->gen[partition] = 0;
    o->refencing[partition] = 0;
}

static void
os_refence(struct persist *p, unsigned partition)
{
    struct os_store *o = os_of(p);

    if (!o->fenced || partition >= o->partitions || !o->gen[partition] || o->refencing[partition])
        return;
    if (claim_push(o, partition, o->claim_no[partition], true))
        return;
    o->refencing[partition] = 1;
    run_claims(o);
}

/* ---- the table -------------------------------------------------------------------------------- */

static sc_status
os_start(struct persist *p)
{
    struct os_store *o = os_of(p);

    if (o->started)
        return SC_OK;
    o->started = true;
    o->phase = PH_TEMPLATE;
    step_send(o);
    return SC_OK;
}

static void
os_kick(struct persist *p, bool urgent)
{
    struct os_store *o = os_of(p);

    o->pending = true;
    if (urgent)
        o->urgent = true;
    if (o->in_flight || !o->started || o->phase < PH_READY)
        return; /* the request in flight, or the end of start-up, plans the next batch */
    arm(o, urgent ? 0 : o->flush_ms);
}

static void
os_stopping(struct persist *p)
{
    struct os_store *o = os_of(p);
    int64_t soon = sc_now_mono_ms() + PERSIST_STOPPING_RETRY_MS;

    o->stopping = true;
    if (o->not_before > soon)
        o->not_before = soon;
    if (o->pending && !o->in_flight && o->started && o->phase >= PH_READY)
        arm(o, 0);
}

static bool
os_busy(const struct persist *p)
{
    const struct os_store *o = (const struct os_store *)(const void *)p;

    return o->in_flight;
}

static void
os_stats(const struct persist *p, struct persist_stats *out)
{
    const struct os_store *o = (const struct os_store *)(const void *)p;
    const char *backend = out->backend;
    persist_state state = out->state;

    *out = o->st;
    out->backend = backend;
    out->state = state;
}

static void
os_destroy(struct persist *p)
{
    struct os_store *o = os_of(p);

    persist_http_free(o->http);
    if (o->timer)
        event_free(o->timer);
    if (o->claim_timer)
        event_free(o->claim_timer);
    free(o->gen);
    free(o->claim_no);
    free(o->refencing);
    free(o->cq);
    json_decref(o->claim_after);
    sc_buf_destroy(&o->creq);
    sc_buf_destroy(&o->curl);
    for (size_t i = 0; i < o->nurls; i++)
        free(o->urls[i]);
    free(o->urls);
    free(o->index);
    free(o->template_body);
    free(o->mapping_body);
    free(o->load_query);
    free(o->load_sort);
    free(o->results);
    json_decref(o->search_after);
    persist_batch_destroy(&o->batch);
    sc_buf_destroy(&o->url);
    sc_buf_destroy(&o->req);
    free(o);
}

static const struct persist_ops opensearch_ops = {
    .name = "opensearch",
    .start = os_start,
    .kick = os_kick,
    .stopping = os_stopping,
    .busy = os_busy,
    .stats = os_stats,
    .destroy = os_destroy,
    .claim = os_claim,
    .release = os_release,
    .refence = os_refence,
    .durable = true,
};

/* An index name OpenSearch accepts: lower case, no path or URL characters. */
static bool
index_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 200 || s[0] == '-' || s[0] == '_' || s[0] == '+' || strcmp(s, ".") == 0 ||
        strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
              c == '+'))
            return false;
    }
    return true;
}

/* Splits "a, b,c" into trimmed URLs without a trailing '/'. */
static size_t
split_urls(const char *s, char ***out)
{
    char **v = NULL;
    size_t n = 0;

    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        const char *p = s;
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '/'))
            len--;
        if (len) {
            v = sc_xrealloc(v, (n + 1) * sizeof(*v));
            v[n++] = sc_xstrndup(p, len);
        }
        if (!e)
            break;
        s = e + 1;
    }
    *out = v;
    return n;
}

/* Checks that text is a JSON value of the given type. */
static bool
json_text_is(const char *text, json_type type)
{
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    bool ok = j && json_typeof(j) == type;

    json_decref(j);
    return ok;
}

/*
 * Builds the index template's body and the mapping update for an existing
 * index from properties (a JSON object). Returns SC_OK, or (err says
 * which) sc_buf_append()'s errors when a body passes its 1 MiB cap.
 */
static sc_status
schema_bodies(struct os_store *o, const char *properties, char *err, size_t errlen)
{
    struct sc_buf t;
    sc_status s;

    /* More specific (longer) names win over overlapping shorter patterns. */
    sc_buf_init(&t, 1024 * 1024);
    s = sc_buf_appendf(&t,
                       "{\"index_patterns\":[\"%s*\"],\"priority\":%zu,\"template\":{\"settings\":"
                       "{\"index\":{\"number_of_shards\":1,\"number_of_replicas\":0}},"
                       "\"mappings\":{\"dynamic\":\"strict\",\"properties\":%s}},"
                       "\"_meta\":{\"managed_by\":\"dlq-sidecar\"}}",
                       o->index, 100 + strlen(o->index), properties);
    if (s != SC_OK || !t.data) {
        sc_buf_destroy(&t);
        snprintf(err, errlen, "opensearch: cannot build the index template (properties too large?)");
        return s != SC_OK ? s : SC_ENOMEM;
    }
    o->template_body = t.data;
    /*
     * An index made by an older version keeps its strict mapping: the fields
     * added since are put into it at start (adding fields is always allowed).
     */
    sc_buf_init(&t, 1024 * 1024);
    if (sc_buf_appendf(&t, "{\"properties\":%s}", properties) != SC_OK || !t.data) {
        sc_buf_destroy(&t);
        snprintf(err, errlen, "opensearch: cannot build the mapping update (properties too large?)");
        return SC_ENOMEM;
    }
    o->mapping_body = t.data;
    return SC_OK;
}

sc_status
persist_opensearch_new(struct event_base *base, const struct persist_opensearch_opts *opt,
                       const struct persist_owner *owner, struct persist **out, char *err,
                       size_t errlen)
{
    struct os_store *o = NULL;
    sc_status s = SC_EINVAL;

    *out = NULL;
    if (!opt->index || !index_name_ok(opt->index)) {
        snprintf(err, errlen, "store.opensearch.index: '%s' is not a valid index name (lower case "
                              "letters, digits, '-', '_', '.', '+')",
                 opt->index ? opt->index : "");
        return SC_EINVAL;
    }
    if (!json_text_is(opt->properties, JSON_OBJECT) ||
        (opt->load_query && (!json_text_is(opt->load_query, JSON_OBJECT) ||
                             !json_text_is(opt->load_sort, JSON_ARRAY)))) {
        snprintf(err, errlen, "opensearch: properties, load_query and load_sort must be JSON");
        return SC_EINVAL;
    }
    o = sc_xcalloc(1, sizeof(*o));
    o->base.ops = &opensearch_ops;
    o->base.state = PERSIST_STARTING;
    if (owner)
        o->base.owner = *owner;
    o->evb = base;
    o->nurls = split_urls(opt->urls ? opt->urls : "", &o->urls);
    for (size_t i = 0; i < o->nurls; i++) {
        if (strncmp(o->urls[i], "http://", 7) != 0 && strncmp(o->urls[i], "https://", 8) != 0) {
            snprintf(err, errlen, "store.opensearch.url: '%s' is not an http:// or https:// URL",
                     o->urls[i]);
            goto fail;
        }
    }
    if (o->nurls == 0) {
        snprintf(err, errlen, "store.opensearch.url: empty");
        goto fail;
    }
    o->index = sc_xstrdup(opt->index);
    o->load_query = opt->load_query ? sc_xstrdup(opt->load_query) : NULL;
    o->load_sort = opt->load_sort ? sc_xstrdup(opt->load_sort) : NULL;
    o->timeout_ms = opt->request_timeout_ms > 0 ? opt->request_timeout_ms : 30000;
    o->flush_ms = opt->flush_ms > 0 ? opt->flush_ms : 200;
    o->page_size = LOAD_PAGE;
    o->jitter = sc_random_u64() | 1;
    persist_batch_init(&o->batch, opt->bulk_max_docs, opt->bulk_max_bytes, bulk_action);
    sc_buf_init(&o->url, 64 * 1024);
    sc_buf_init(&o->req, 64 * 1024);
    sc_buf_init(&o->curl, 64 * 1024);
    sc_buf_init(&o->creq, 64 * 1024);
    if (opt->fenced) {
        if (opt->partitions < 1 || opt->partitions > 4096 || !o->load_sort) {
            snprintf(err, errlen, "opensearch: cluster mode needs 1-4096 partitions and a load sort");
            goto fail;
        }
        o->fenced = true;
        o->partitions = opt->partitions;
        o->gen = sc_xcalloc(opt->partitions, sizeof(*o->gen));
        o->claim_no = sc_xcalloc(opt->partitions, sizeof(*o->claim_no));
        o->refencing = sc_xcalloc(opt->partitions, 1);
        o->cq = sc_xcalloc(2 * (size_t)opt->partitions, sizeof(*o->cq));
    }
    if ((s = schema_bodies(o, opt->properties, err, errlen)))
        goto fail;
    s = SC_EINVAL;
    o->http = persist_http_new(base, &opt->http);
    o->timer = evtimer_new(base, on_timer, o);
    o->claim_timer = evtimer_new(base, on_claim_timer, o);
    if (!o->http || !o->timer || !o->claim_timer) {
        snprintf(err, errlen, "opensearch: cannot initialise libcurl or the timer");
        s = SC_ENOMEM;
        goto fail;
    }
    *out = &o->base;
    return SC_OK;

fail:
    os_destroy(&o->base);
    return s;
}
