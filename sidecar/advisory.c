/* advisory.c - JetStream advisories as a second source of failures (DESIGN section 16): the capture stream, the original fetched by sequence on the fetch thread, a task filed through dlq_ingest_foreign(). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "advisory.h"
#include "daemon.h"
#include "mirror.h"

/*
 * Who holds a consumer's give-up while this source runs:
 *  1. The server publishes the advisory ($JS.EVENT.ADVISORY.CONSUMER.
 *     MAX_DELIVERIES.<stream>.<consumer> or ...MSG_TERMINATED...) and the
 *     capture stream (advisories.stream) stores it, whether or not a
 *     sidecar runs. The original message stays in its stream as long as
 *     the stream's own limits and retention keep it.
 *  2. The fetch thread pulls the advisory from the shared durable consumer
 *     (delivered, not acked), parses it and fetches the original by
 *     sequence (js_GetMsg(), blocking: on this thread only; a read that
 *     fails other than "no such message" naks the advisory for another try,
 *     ADV_FETCH_TRIES deliveries in all). It hands the
 *     loop one message built from both (the original's subject, payload and
 *     headers, the advisory's ack subject, and Dlq-Adv-* headers saying
 *     what the advisory said); the capture stream still holds the advisory.
 *  3. The loop files the task (dlq_ingest_foreign()) and acks the advisory
 *     once the task is accepted: at once with the memory store, held by the
 *     store mirror until the store acknowledges the write with a durable one
 *     (nak with ingest.nak_delay_ms otherwise). A full queue: nak with the
 *     delay, fetching paused. A malformed or forged advisory: logged,
 *     counted, acked (nothing to file).
 *  4. A crash before the ack leaves the advisory in the capture stream: it
 *     comes back after ingest.ack_wait_ms, and a redelivery of what a task
 *     already holds (its capture sequence) changes nothing.
 */

#define ADV_MAX_BYTES 65536   /* an advisory is a few hundred bytes: past this it is refused */
#define ADV_REASON_MAX 1024   /* bytes of a +TERM reason kept */
#define ADV_STREAMS_MAX 256   /* streams listed in advisories.streams */
#define ADV_API_WAIT_MS 5000  /* longest wait for the original (js_GetMsg()) */
#define ADV_FETCH_BATCH 64    /* advisories per pull: each costs one js_GetMsg() round trip */
#define ADV_LOG_INTERVAL_MS 10000
#define ADV_FETCH_TRIES 3     /* deliveries of an advisory whose original cannot be read before it is
                                 filed payload_missing (a timeout may be a passing outage, or a
                                 permission the server answers with silence) */
#define ADV_FETCH_RETRY_MS 1000 /* nak delay between those tries */

/* The headers the fetch thread adds for the loop (an original's own Dlq-Adv-* are dropped). */
#define H_PREFIX "Dlq-Adv-"
#define H_INVALID "Dlq-Adv-Invalid"       /* the advisory was refused: why */
#define H_KIND "Dlq-Adv-Kind"             /* "max_deliveries" or "terminated" */
#define H_STREAM "Dlq-Adv-Stream"         /* the original's stream */
#define H_SEQ "Dlq-Adv-Seq"               /* the original's stream sequence */
#define H_DELIVERIES "Dlq-Adv-Deliveries" /* deliveries the consumer made */
#define H_REASON "Dlq-Adv-Reason"         /* the +TERM reason (may be absent) */
#define H_MISSING "Dlq-Adv-Missing"       /* the original could not be fetched: why */
#define H_FETCH_ERROR "Dlq-Adv-Fetch-Error" /* "1": not a plain "no such message" */
#define H_CAPTURE "Dlq-Adv-Capture-Seq"   /* the advisory's sequence in the capture stream */
#define H_SUBJECT "Dlq-Adv-Subject"       /* the advisory's subject */

#define SUBJ_MAXDEL "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."
#define SUBJ_TERM "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."
#define TYPE_MAXDEL "io.nats.jetstream.advisory.v1.max_deliver"
#define TYPE_TERM "io.nats.jetstream.advisory.v1.terminated"

struct sc_adv {
    struct sc_daemon *d;
    struct sc_js *js;
    char **streams;           /* owned copy of advisories.streams (the fetch thread reads it) */
    size_t nstreams;
    struct sc_buf hdrs;       /* loop: the DLQ_HDRS blob of the advisory being filed */
    struct sc_lograte log_bad; /* loop: refused advisories, fetch errors */
    uint64_t received, invalid, fetch_errors, filed, refused; /* loop thread */
};

/* What one advisory says (borrowed from its JSON until it is freed). */
struct adv_info {
    const char *kind;    /* "max_deliveries" or "terminated" */
    const char *stream;
    uint64_t seq;
    int64_t deliveries;
    const char *reason;  /* NULL when none */
};

/* ---- the fetch thread ------------------------------------------------------------------------- */

static bool
listed(const struct sc_adv *a, const char *stream)
{
    for (size_t i = 0; i < a->nstreams; i++)
        if (strcmp(a->streams[i], stream) == 0)
            return true;
    return false;
}

/* The stream token of an advisory subject "<prefix><stream>.<consumer>", copied into out; false if none. */
static bool
subject_stream(const char *subj, const char *prefix, char *out, size_t outlen)
{
    size_t pl = strlen(prefix), n;
    const char *dot;

    if (strncmp(subj, prefix, pl) != 0 || !(dot = strchr(subj + pl, '.')))
        return false;
    n = (size_t)(dot - (subj + pl));
    if (n == 0 || n >= outlen)
        return false;
    memcpy(out, subj + pl, n);
    out[n] = '\0';
    return true;
}

/*
 * Checks the advisory m (its subject and its JSON, parsed into *root) and
 * fills *ai; false with why set when it is malformed or forged.
 */
static bool
parse_advisory(const struct sc_adv *a, natsMsg *m, json_t **root, struct adv_info *ai, char *why,
               size_t whylen)
{
    const char *subj = natsMsg_GetSubject(m), *type;
    char sstream[256];
    bool maxdel = strncmp(subj, SUBJ_MAXDEL, strlen(SUBJ_MAXDEL)) == 0;
    json_t *seq, *del, *reason;
    json_error_t je;

    *root = NULL;
    if (!subject_stream(subj, maxdel ? SUBJ_MAXDEL : SUBJ_TERM, sstream, sizeof(sstream)))
        return snprintf(why, whylen, "not a consumer advisory subject"), false;
    if (natsMsg_GetDataLength(m) <= 0 || natsMsg_GetDataLength(m) > ADV_MAX_BYTES)
        return snprintf(why, whylen, "body of %d bytes (1-%d expected)", natsMsg_GetDataLength(m),
                        ADV_MAX_BYTES), false;
    *root = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), JSON_REJECT_DUPLICATES,
                       &je);
    if (!*root || !json_is_object(*root))
        return snprintf(why, whylen, "not a JSON object: %s", *root ? "" : je.text), false;
    type = json_string_value(json_object_get(*root, "type"));
    if (!type || strcmp(type, maxdel ? TYPE_MAXDEL : TYPE_TERM) != 0)
        return snprintf(why, whylen, "type is not %s", maxdel ? TYPE_MAXDEL : TYPE_TERM), false;
    ai->kind = maxdel ? "max_deliveries" : "terminated";
    ai->stream = json_string_value(json_object_get(*root, "stream"));
    if (!ai->stream || strcmp(ai->stream, sstream) != 0)
        return snprintf(why, whylen, "stream is not the subject's (%s)", sstream), false;
    if (!listed(a, ai->stream))
        return snprintf(why, whylen, "stream %s is not in advisories.streams", sstream), false;
    seq = json_object_get(*root, "stream_seq");
    if (!json_is_integer(seq) || json_integer_value(seq) < 1)
        return snprintf(why, whylen, "stream_seq is not a positive integer"), false;
    ai->seq = (uint64_t)json_integer_value(seq);
    del = json_object_get(*root, "deliveries");
    if (del && (!json_is_integer(del) || json_integer_value(del) < 0))
        return snprintf(why, whylen, "deliveries is not a non-negative integer"), false;
    ai->deliveries = del ? json_integer_value(del) : 0;
    reason = json_object_get(*root, "reason");
    if (reason && !json_is_string(reason) && !json_is_null(reason))
        return snprintf(why, whylen, "reason is not a string"), false;
    ai->reason = json_string_value(reason);
    return true;
}

/* Copies the headers of src onto dst, leaving out Dlq-Adv-* (ours). */
static void
copy_headers(natsMsg *dst, natsMsg *src)
{
    const char **keys = NULL, **vals = NULL;
    int nk = 0, nv = 0;

    if (natsMsgHeader_Keys(src, &keys, &nk) != NATS_OK)
        return;
    for (int i = 0; i < nk; i++) {
        if (strncasecmp(keys[i], H_PREFIX, strlen(H_PREFIX)) == 0 ||
            natsMsgHeader_Values(src, keys[i], &vals, &nv) != NATS_OK)
            continue;
        for (int k = 0; k < nv; k++)
            natsMsgHeader_Add(dst, keys[i], vals[k]);
        free((void *)vals);
        vals = NULL;
    }
    free((void *)keys);
}

/*
 * Fetches the original of ai: returns a new message to the original's
 * subject with its payload and headers; or one without them carrying
 * H_MISSING (no such message; or it could not be read on the advisory's
 * last try, delivered being its delivery count); or NULL after a failed
 * read with tries left (*retry set: the caller naks the advisory with a
 * delay), or when no message can be made.
 */
static natsMsg *
fetch_original(jsCtx *js, const struct adv_info *ai, natsMsg *adv, uint64_t delivered, bool *retry)
{
    jsOptions o;
    jsErrCode je = 0;
    natsMsg *orig = NULL, *out = NULL;
    natsStatus s;
    char why[512];

    jsOptions_Init(&o);
    o.Wait = ADV_API_WAIT_MS;
    s = js_GetMsg(&orig, js, ai->stream, ai->seq, &o, &je);
    if (s == NATS_OK && natsMsg_Create(&out, natsMsg_GetSubject(orig), natsMsg_GetReply(adv),
                                       natsMsg_GetData(orig), natsMsg_GetDataLength(orig)) == NATS_OK) {
        copy_headers(out, orig);
        natsMsg_Destroy(orig);
        return out;
    }
    natsMsg_Destroy(orig);
    if (s != NATS_NOT_FOUND && je != JSNoMessageFoundErr && delivered < ADV_FETCH_TRIES) {
        sc_log(SC_LOG_WARN, "advisory: the original could not be read; trying again", "stream",
               ai->stream, "error", natsStatus_GetText(s), "delivery",
               sc_log_int((int64_t)delivered), NULL);
        *retry = true;
        return NULL;
    }
    if (natsMsg_Create(&out, natsMsg_GetSubject(adv), natsMsg_GetReply(adv), NULL, 0) != NATS_OK)
        return NULL;
    if (s == NATS_NOT_FOUND || je == JSNoMessageFoundErr) {
        snprintf(why, sizeof(why),
                 "no message %" PRIu64 " in stream %s (removed by the stream's limits, deleted, "
                 "or never stored)", ai->seq, ai->stream);
    } else {
        const char *last = nats_GetLastError(NULL);
        snprintf(why, sizeof(why), "cannot read message %" PRIu64 " of stream %s: %s (err_code %d)%s%s",
                 ai->seq, ai->stream, natsStatus_GetText(s), (int)je, last && *last ? ": " : "",
                 last ? last : "");
        natsMsgHeader_Set(out, H_FETCH_ERROR, "1");
    }
    natsMsgHeader_Set(out, H_MISSING, why);
    return out;
}

/*
 * The fetch thread's step for one advisory (struct sc_js_spec.prepare): owns
 * m, returns the message the loop files (NULL when one cannot be made: m
 * then comes back after the ack wait).
 */
static natsMsg *
adv_prepare(void *pctx, jsCtx *js, natsMsg *m)
{
    const struct sc_adv *a = pctx;
    struct adv_info ai = {0};
    jsMsgMetaData *meta = NULL;
    json_t *root = NULL;
    natsMsg *out = NULL;
    uint64_t capture_seq = 0, delivered = 1;
    bool retry = false;
    char why[512], num[32];

    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
        capture_seq = meta->Sequence.Stream;
        delivered = meta->NumDelivered;
        jsMsgMetaData_Destroy(meta);
    }

    if (!parse_advisory(a, m, &root, &ai, why, sizeof(why))) {
        if (natsMsg_Create(&out, natsMsg_GetSubject(m), natsMsg_GetReply(m), NULL, 0) == NATS_OK)
            natsMsgHeader_Set(out, H_INVALID, why);
        goto done;
    }
    if (!(out = fetch_original(js, &ai, m, delivered, &retry))) {
        if (retry)
            natsMsg_NakWithDelay(m, ADV_FETCH_RETRY_MS, NULL);
        goto done;
    }
    natsMsgHeader_Set(out, H_KIND, ai.kind);
    natsMsgHeader_Set(out, H_STREAM, ai.stream);
    snprintf(num, sizeof(num), "%" PRIu64, ai.seq);
    natsMsgHeader_Set(out, H_SEQ, num);
    snprintf(num, sizeof(num), "%" PRId64, ai.deliveries);
    natsMsgHeader_Set(out, H_DELIVERIES, num);
    if (ai.reason && *ai.reason) {
        char r[ADV_REASON_MAX + 1];
        snprintf(r, sizeof(r), "%s", ai.reason);
        for (char *p = r; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' '; /* a header value is one line */
        natsMsgHeader_Set(out, H_REASON, r);
    }

done:
    if (out) {
        natsMsgHeader_Set(out, H_SUBJECT, natsMsg_GetSubject(m));
        if (capture_seq) {
            snprintf(num, sizeof(num), "%" PRIu64, capture_seq);
            natsMsgHeader_Set(out, H_CAPTURE, num);
        }
    }
    json_decref(root);
    natsMsg_Destroy(m);
    return out;
}

/* ---- the loop --------------------------------------------------------------------------------- */

static const char *
hdr(natsMsg *m, const char *name)
{
    const char *v = NULL;

    return natsMsgHeader_Get(m, name, &v) == NATS_OK ? v : NULL;
}

/* A refused advisory or a failed fetch: one log line per interval, with the running count. */
static void
log_bad(struct sc_adv *a, const char *msg, const char *why, const char *subject, uint64_t count)
{
    uint64_t quiet;

    if (sc_lograte_take(&a->log_bad, sc_now_mono_ms(), ADV_LOG_INTERVAL_MS, &quiet))
        sc_log(SC_LOG_WARN, msg, "reason", why, "subject", subject, "count",
               sc_log_int((int64_t)count), "not_logged", sc_log_int((int64_t)quiet), NULL);
}

/* Whether the len bytes at id can be a task id (as an envelope's): within max_task_id_len, UTF-8, no control characters. */
static bool
id_ok(const struct sc_daemon *d, const char *id, size_t len)
{
    return len > 0 && len <= codec_limits_get(d->codec)->max_task_id_len &&
           sc_utf8_valid(id, len, SC_UTF8_NO_CONTROL);
}

/*
 * The task id (DESIGN section 16): the original's Dlq-Task-Id (one of our
 * own retries: the same task comes back), else its Nats-Msg-Id, else
 * "<stream>:<seq>" (written into buf).
 */
static const char *
task_id(const struct sc_daemon *d, natsMsg *m, const char *stream, const char *seq, char *buf,
        size_t buflen)
{
    const char *v;

    if ((v = hdr(m, CODEC_HDR_TASK_ID)) && id_ok(d, v, strlen(v)))
        return v;
    if ((v = hdr(m, CODEC_HDR_MSG_ID)) && id_ok(d, v, strlen(v)))
        return v;
    snprintf(buf, buflen, "%s:%s", stream, seq);
    return buf;
}

/* Whether a header of the original is kept with the task (ours and publish expectations are not). */
static bool
keep_header(const char *name)
{
    return strncasecmp(name, "Dlq-", 4) != 0 && strcasecmp(name, CODEC_HDR_MSG_ID) != 0 &&
           strncasecmp(name, "Nats-Expected-", 14) != 0;
}

/* Fills a->hdrs with the original's headers kept with the task (DLQ_HDRS, caps applied). */
static void
pack_headers(struct sc_adv *a, natsMsg *m)
{
    const char **keys = NULL, **vals = NULL;
    int nk = 0, nv = 0;
    size_t pairs = 0;

    sc_buf_reset(&a->hdrs);
    if (natsMsgHeader_Keys(m, &keys, &nk) != NATS_OK)
        return;
    for (int i = 0; i < nk && pairs < DLQ_HDRS_MAX; i++) {
        if (!keep_header(keys[i]) || natsMsgHeader_Values(m, keys[i], &vals, &nv) != NATS_OK)
            continue;
        for (int k = 0; k < nv && pairs < DLQ_HDRS_MAX; k++) {
            size_t kl = strlen(keys[i]) + 1, vl = strlen(vals[k]) + 1;
            if (a->hdrs.len + kl + vl > DLQ_HDRS_BYTES)
                break;
            sc_buf_append(&a->hdrs, keys[i], kl);
            sc_buf_append(&a->hdrs, vals[k], vl);
            pairs++;
        }
        free((void *)vals);
        vals = NULL;
    }
    free((void *)keys);
}

/* Answers the advisory's ack subject with what dlq_ingest_foreign() decided. */
static void
answer(struct sc_daemon *d, struct sc_adv *a, const char *ack, const struct dlq_decision *dc,
       const char *subject)
{
    switch (dc->verdict) {
    case DLQ_IN_STORED:
    case DLQ_IN_REDELIVERED:
        a->filed += dc->verdict == DLQ_IN_STORED;
        sc_mirror_js_ack(d, a->js, ack, dc->task, dc->verdict == DLQ_IN_REDELIVERED);
        break;
    case DLQ_IN_REFUSED: /* the capture stream keeps it */
        a->refused++;
        if (dc->refused_full)
            sc_js_pause(a->js, d->cfg->ingest_nak_delay_ms);
        sc_js_nak(a->js, d->conn, ack, d->cfg->ingest_nak_delay_ms);
        break;
    case DLQ_IN_INVALID: /* e.g. too big to republish: nothing can be filed */
        a->invalid++;
        log_bad(a, "advisory refused", dc->why, subject, a->invalid);
        sc_js_ack(a->js, d->conn, ack);
        break;
    case DLQ_IN_SKIPPED:
        sc_js_ack(a->js, d->conn, ack);
        break;
    }
}

/*
 * on_advisory() files one advisory prepared by the fetch thread (m: the
 * original's subject, payload and headers, or none when it could not be
 * fetched, plus the Dlq-Adv-* headers) and answers its ack subject. Loop
 * thread (the advisory source's channel handler).
 */
static void
on_advisory(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    struct sc_adv *a = d->adv;
    const char *ack = natsMsg_GetReply(m), *why = hdr(m, H_INVALID), *kind = hdr(m, H_KIND);
    const char *stream = hdr(m, H_STREAM), *seq = hdr(m, H_SEQ), *missing = hdr(m, H_MISSING);
    const char *advsubj = hdr(m, H_SUBJECT), *reason = hdr(m, H_REASON), *cap = hdr(m, H_CAPTURE);
    struct dlq_foreign x = {0};
    struct dlq_decision dc;
    char idbuf[300], error[ADV_REASON_MAX + 64];

    if (sc_js_made_anew(m)) { /* the capture stream was made anew: its sequences start over */
        dlq_machine_forget_seqs(&d->m, true);
        return;
    }
    a->received++;
    if (why || !kind || !stream || !seq) {
        a->invalid++;
        log_bad(a, "advisory refused (acked, nothing filed)", why ? why : "not prepared",
                advsubj ? advsubj : natsMsg_GetSubject(m), a->invalid);
        sc_js_ack(a->js, d->conn, ack);
        return;
    }
    if (missing && hdr(m, H_FETCH_ERROR)) {
        a->fetch_errors++;
        log_bad(a, "advisory: the original could not be read; filed without it", missing,
                advsubj, a->fetch_errors);
    }
    if (strcmp(kind, "max_deliveries") == 0)
        snprintf(error, sizeof(error), "max deliveries exceeded (%s)", hdr(m, H_DELIVERIES));
    else
        snprintf(error, sizeof(error), "%s", reason ? reason : "terminated by the consumer (+TERM)");
    pack_headers(a, m);
    x.id = task_id(d, m, stream, seq, idbuf, sizeof(idbuf));
    x.id_len = strlen(x.id);
    x.payload = natsMsg_GetData(m);
    x.payload_len = (size_t)natsMsg_GetDataLength(m);
    x.payload_missing = missing != NULL;
    x.missing_why = missing;
    x.headers = a->hdrs.data;
    x.headers_len = a->hdrs.len;
    x.error = error;
    x.error_type = strcmp(kind, "max_deliveries") == 0 ? "jetstream.max_deliveries"
                                                       : "jetstream.terminated";
    x.retry_subject = missing ? NULL : natsMsg_GetSubject(m);
    x.subject = missing && advsubj ? advsubj : natsMsg_GetSubject(m);
    x.seq = cap ? strtoull(cap, NULL, 10) : 0;
    x.max_payload = sc_conn_max_payload(d->conn);
    dlq_ingest_foreign(&d->m, &x, sc_now_wall_ms(), sc_now_mono_ms(), &dc);
    answer(d, a, ack, &dc, x.subject);
}

/* ---- the source ------------------------------------------------------------------------------- */

sc_status
sc_adv_open(struct sc_daemon *d, char *err, size_t errlen)
{
    const struct config *cfg = d->cfg;
    struct sc_js_spec spec = {0};
    const char **subjects;
    char *names;
    struct sc_adv *a;
    sc_status st;
    size_t n = cfg->advisories_count, o = 0;

    if (n == 0)
        return SC_OK;
    if (strcmp(cfg->advisories_stream, cfg->ingest_stream) == 0) {
        snprintf(err, errlen, "advisories.stream: '%s' is also ingest.stream (the advisories need "
                 "a stream of their own)", cfg->advisories_stream);
        return SC_EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(cfg->advisories_streams[i], cfg->advisories_streams[j]) == 0) {
                snprintf(err, errlen, "advisories.streams: '%s' is listed twice",
                         cfg->advisories_streams[i]);
                return SC_EINVAL;
            }
    if (n > ADV_STREAMS_MAX) {
        snprintf(err, errlen, "advisories.streams: %zu streams listed (at most %d)", n,
                 ADV_STREAMS_MAX);
        return SC_EINVAL;
    }
    a = sc_xcalloc(1, sizeof(*a));
    a->d = d;
    a->nstreams = n;
    a->streams = sc_xcalloc(n, sizeof(*a->streams));
    sc_buf_init(&a->hdrs, DLQ_HDRS_BYTES + 1);
    subjects = sc_xcalloc(2 * n, sizeof(*subjects));
    names = sc_xcalloc(2 * n, 300);
    for (size_t i = 0; i < n; i++) {
        a->streams[i] = sc_xstrdup(cfg->advisories_streams[i]);
        snprintf(names + o, 300, "%s%s.*", SUBJ_MAXDEL, a->streams[i]);
        subjects[2 * i] = names + o;
        o += 300;
        snprintf(names + o, 300, "%s%s.*", SUBJ_TERM, a->streams[i]);
        subjects[2 * i + 1] = names + o;
        o += 300;
    }
    spec.what = "advisories";
    spec.stream = cfg->advisories_stream;
    spec.stream_key = "advisories.stream";
    spec.subjects = subjects;
    spec.nsubjects = 2 * n;
    spec.extend = true; /* the sidecar's own stream: a stream added to the list is added to it */
    spec.owned = "$JS.EVENT.ADVISORY.CONSUMER.>"; /* nothing else: never an application's stream */
    spec.replicas = cfg->ingest_stream_replicas;
    spec.replicas_key = "ingest.stream_replicas"; /* more than the servers place: exit 2, as for the ingest stream */
    spec.consumer = cfg->advisories_consumer;
    spec.consumer_key = "advisories.consumer";
    spec.ack_wait_ms = cfg->ingest_ack_wait_ms;
    spec.max_ack_pending = cfg->ingest_max_ack_pending;
    spec.fetch_batch = ADV_FETCH_BATCH;
    spec.prepare = adv_prepare;
    spec.pctx = a;
    d->adv = a;
    st = sc_js_open(d->conn, &spec, on_advisory, d, &a->js, err, errlen);
    free(subjects);
    free(names);
    if (st != SC_OK) {
        sc_adv_close(a);
        d->adv = NULL;
    }
    return st;
}

void
sc_adv_stop(struct sc_adv *a)
{
    if (a)
        sc_js_stop(a->js);
}

void
sc_adv_close(struct sc_adv *a)
{
    if (!a)
        return;
    sc_js_close(a->js);
    for (size_t i = 0; i < a->nstreams; i++)
        free(a->streams[i]);
    free(a->streams);
    sc_buf_destroy(&a->hdrs);
    free(a);
}

struct sc_adv_stats
sc_adv_get_stats(const struct sc_adv *a)
{
    struct sc_adv_stats st = {0};

    if (!a)
        return st;
    st.received = a->received;
    st.invalid = a->invalid;
    st.fetch_errors = a->fetch_errors;
    st.filed = a->filed;
    st.refused = a->refused;
    st.ready = sc_js_get_stats(a->js).ready;
    return st;
}

/* ---- views -------------------------------------------------------------------------------------- */

void
sc_adv_jw_task(struct sc_jw *w, const struct dlq_task *t)
{
    size_t hlen;
    const char *p = dlq_task_headers(t, &hlen), *end = p ? p + hlen : NULL;

    sc_jw_bool(w, "payload_raw", t->payload_raw);
    sc_jw_bool(w, "payload_missing", t->payload_missing);
    if (t->payload_raw && !t->payload_missing &&
        sc_utf8_valid(t->payload, t->payload_len, SC_UTF8_NO_NUL)) {
        sc_jw_strn(w, "task", t->payload, t->payload_len); /* text: as it is */
    } else if (t->payload_raw) {
        struct sc_buf b64;
        sc_buf_init(&b64, 2 * (size_t)t->payload_len + 16);
        sc_jw_str(w, "task", NULL);
        if (!t->payload_missing && sc_base64_encode(&b64, t->payload, t->payload_len) == SC_OK)
            sc_jw_strn(w, "task_base64", b64.data ? b64.data : "", b64.len); /* any bytes */
        sc_buf_destroy(&b64);
    }
    if (!p)
        return;
    sc_jw_open(w, "headers", '[');
    while (p && p < end) {
        const char *v = memchr(p, '\0', (size_t)(end - p)), *z;
        if (!v || !(z = memchr(v + 1, '\0', (size_t)(end - v - 1))))
            break;
        sc_jw_open(w, NULL, '[');
        sc_jw_str(w, NULL, p);
        /* A header named like a secret (Authorization, Cookie ...: secrets.mask_keys) is masked. */
        sc_jw_str(w, NULL, codec_mask_key(p, (size_t)(v - p)) ? "***" : v + 1);
        sc_jw_close(w, ']');
        p = z + 1;
    }
    sc_jw_close(w, ']');
}
