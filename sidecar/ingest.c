/* ingest.c - the core-NATS source of failures: decode, hand to dlq_ingest(), refuse or acknowledge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "events.h"
#include "forward.h"
#include "ingest.h"
#include "mirror.h"
#include "serving.h"

#define INVALID_LOG_INTERVAL_MS 10000
#define FULL_LOG_INTERVAL_MS 10000    /* queue-full refusals: one warning per interval */
#define UNKNOWN_LOG_INTERVAL_MS 10000 /* envelopes with unknown keys: one warning per interval */
#define UNKNOWN_NAME_MAX 64           /* bytes of an unknown key's name shown in acks and logs */

/* Replies {"ok":false,"error":{"code":N,"message":...}} to a request; no-op for plain publishes. */
static void
ack_error(struct sc_daemon *d, natsMsg *m, int code, const char *message)
{
    struct sc_buf *b = &d->out;

    if (!natsMsg_GetReply(m))
        return;
    sc_buf_reset(b);
    sc_buf_appendf(b, "{\"ok\":false,\"error\":{\"code\":%d,\"message\":", code);
    sc_json_quote(b, message, strlen(message));
    sc_buf_append(b, "}}", 2);
    sc_respond(d, m, b->data, b->len, code, message);
}

/* Writes "unknown_keys":["name",...] for env's unknown keys (the first CODEC_UNKNOWN_NAMES); nothing when none. */
static void
json_unknown_keys(struct sc_jw *w, const struct codec_envelope *env)
{
    if (!env || !env->unknown_keys)
        return;
    sc_jw_open(w, "unknown_keys", '[');
    for (unsigned i = 0; i < env->unknown_keys && i < CODEC_UNKNOWN_NAMES; i++) {
        size_t n = env->unknown[i].len < UNKNOWN_NAME_MAX ? env->unknown[i].len : UNKNOWN_NAME_MAX;
        sc_jw_strn(w, NULL, env->unknown[i].ptr, n);
    }
    sc_jw_close(w, ']');
}

/*
 * Warns (at most once per UNKNOWN_LOG_INTERVAL_MS) that an envelope carried
 * keys outside the contract, naming them: a misspelled "eror" is otherwise
 * silently ignored.
 */
static void
warn_unknown_keys(struct sc_daemon *d, const struct codec_envelope *env, const char *subject)
{
    char names[CODEC_UNKNOWN_NAMES * (UNKNOWN_NAME_MAX + 1) + 1];
    size_t o = 0;
    uint64_t quiet;

    if (!sc_lograte_take(&d->log_unknown, sc_now_mono_ms(), UNKNOWN_LOG_INTERVAL_MS, &quiet))
        return;
    for (unsigned i = 0; i < env->unknown_keys && i < CODEC_UNKNOWN_NAMES; i++) {
        size_t n = env->unknown[i].len < UNKNOWN_NAME_MAX ? env->unknown[i].len : UNKNOWN_NAME_MAX;
        if (i)
            names[o++] = ',';
        memcpy(names + o, env->unknown[i].ptr, n);
        for (size_t k = o; k < o + n; k++)
            if (names[k] == '\0')
                names[k] = ' ';
        o += n;
    }
    names[o] = '\0';
    sc_log(SC_LOG_WARN, "failure envelope with unknown keys (ignored)", "keys", names, "subject",
           subject, "unknown_keys_total", sc_log_int((int64_t)d->m.c.unknown_keys),
           "envelopes_not_logged", sc_log_int((int64_t)quiet), NULL);
}

/*
 * Replies {"ok":true,...}. t is the stored task (NULL: nothing stored); the
 * store mirror completes the answer: with a durable store it waits for t's
 * write and says "stored" (DESIGN section 3: "accepted" means "stored").
 * env (may be NULL) adds the names of its unknown keys.
 */
static void
ack_ok(struct sc_daemon *d, natsMsg *m, const char *id, size_t id_len, const char *status,
       int64_t next_retry_at, struct dlq_task *t, const struct codec_envelope *env)
{
    struct sc_buf *b = &d->out;
    struct sc_jw w;

    if (!natsMsg_GetReply(m))
        return;
    sc_buf_reset(b);
    sc_jw_init(&w, b);
    sc_jw_open(&w, NULL, '{');
    sc_jw_bool(&w, "ok", true);
    sc_jw_strn(&w, "task_id", id, id_len);
    sc_jw_str(&w, "status", status);
    sc_jw_time(&w, "next_retry_at", next_retry_at);
    json_unknown_keys(&w, env);
    sc_mirror_ack(d, m, t, b); /* closes the object */
}

static struct sc_reason_count *
reason_slot(struct sc_daemon *d, const char *reason)
{
    for (int i = 0; i < SC_MAX_REASONS; i++) {
        if (!d->reasons[i].reason) {
            d->reasons[i].reason = reason;
            return &d->reasons[i];
        }
        if (strcmp(d->reasons[i].reason, reason) == 0)
            return &d->reasons[i];
    }
    return &d->reasons[SC_MAX_REASONS - 1]; /* the last slot absorbs overflow */
}

/*
 * Refuses a message that breaks the contract: counts it by reason, logs
 * once per reason per interval, republishes it raw to
 * <prefix>.invalid.<service> and, for a core request (answer true), answers
 * 400.
 */
static void
refuse_invalid(struct sc_daemon *d, natsMsg *m, const char *service, const char *reason,
               const char *why, bool answer)
{
    struct sc_reason_count *rc = reason_slot(d, reason);
    int64_t now = sc_now_mono_ms();
    char subj[4200], origlen[24];
    const char *hdrs[] = {CODEC_HDR_INVALID_REASON, reason, "Dlq-Invalid-Detail", why,
                          CODEC_HDR_ORIG_SUBJECT, natsMsg_GetSubject(m), NULL, NULL, NULL};
    size_t len = (size_t)natsMsg_GetDataLength(m);
    int64_t maxp = sc_conn_max_payload(d->conn);
    struct dlq_task view;

    d->m.c.invalid++;
    rc->count++;
    if (rc->last_log_mono == 0 || now - rc->last_log_mono >= INVALID_LOG_INTERVAL_MS) {
        sc_log(SC_LOG_WARN, "invalid failure envelope", "reason", reason, "detail", why,
               "subject", natsMsg_GetSubject(m), "count", sc_log_int((int64_t)rc->count), NULL);
        rc->last_log_mono = now;
    }
    snprintf(subj, sizeof(subj), "%s.invalid.%s", d->cfg->subjects_prefix, service);
    /*
     * The raw bytes plus our headers may pass the server's max_payload; then
     * the body is cut to fit and Dlq-Invalid-Truncated gives the original size.
     */
    if (maxp > 0 && (int64_t)len + 8192 > maxp) {
        snprintf(origlen, sizeof(origlen), "%zu", len);
        hdrs[6] = "Dlq-Invalid-Truncated";
        hdrs[7] = origlen;
        len = maxp > 8192 ? (size_t)(maxp - 8192) : 0;
    }
    sc_publish(d, subj, NULL, natsMsg_GetData(m), len, hdrs);
    if (d->cfg->events_enabled) {
        memset(&view, 0, sizeof(view));
        view.id = NULL;
        view.subject = (char *)natsMsg_GetSubject(m);
        view.category = POLICY_CAT_VALIDATION;
        sc_event(d, "invalid", &view, 0, why);
    }
    if (answer)
        ack_error(d, m, 400, why);
}

/* Logs a refusal for a full queue, at most one line per FULL_LOG_INTERVAL_MS. */
static void
log_full(struct sc_daemon *d, const char *msg, const char *subject)
{
    uint64_t quiet;

    if (sc_lograte_take(&d->log_full, sc_now_mono_ms(), FULL_LOG_INTERVAL_MS, &quiet))
        sc_log(SC_LOG_WARN, "queue full: failure refused", "reason", msg, "subject", subject,
               "queue_size", sc_log_int((int64_t)dlq_queue_active(&d->m.q)), "refused_full_total",
               sc_log_int((int64_t)d->m.c.refused_full), "refusals_not_logged",
               sc_log_int((int64_t)quiet), NULL);
}

/* Answers (and logs) what dlq_ingest() decided about the failure in m. */
static void
answer(struct sc_daemon *d, natsMsg *m, const char *service, const struct codec_envelope *env,
       const struct dlq_decision *dc)
{
    const char *subject = natsMsg_GetSubject(m);

    if (dc->unknown_keys)
        warn_unknown_keys(d, env, subject);
    switch (dc->verdict) {
    case DLQ_IN_INVALID:
        refuse_invalid(d, m, service, dc->reason, dc->why, true);
        break;
    case DLQ_IN_REFUSED:
        if (dc->refused_full)
            log_full(d, dc->why, subject);
        ack_error(d, m, 503, dc->why);
        break;
    case DLQ_IN_SKIPPED:
        ack_ok(d, m, env->task_id.ptr, env->task_id.len, "skipped", 0, NULL, env);
        break;
    case DLQ_IN_STORED:
    case DLQ_IN_REDELIVERED: /* JetStream only */
        ack_ok(d, m, dc->task->id, dc->task->id_len, dc->status, dc->next_retry_at, dc->task, env);
        break;
    }
}

/* Content-Type application/json (parameters allowed): the envelope is JSON. */
static bool
is_json_msg(natsMsg *m)
{
    const char *ctype = NULL;

    return natsMsgHeader_Get(m, "Content-Type", &ctype) == NATS_OK && ctype &&
           strncmp(ctype, "application/json", 16) == 0 &&
           (ctype[16] == '\0' || ctype[16] == ';' || ctype[16] == ' ');
}

/* A subject the server let through that cannot be published to (wildcards in non-pedantic mode). */
static bool
subject_ok(const char *subject, size_t slen)
{
    return slen <= 4000 && codec_subject_valid_recent(subject, slen);
}

void
sc_ingest_prepare(void *codec, natsMsg *m, void *slot)
{
    struct sc_ingest_prepared *p = slot;
    const char *subject = natsMsg_GetSubject(m);
    const uint8_t *data = (const uint8_t *)natsMsg_GetData(m);
    size_t len = (size_t)natsMsg_GetDataLength(m);

    p->ready = false;
    /*
     * MessagePack only: a map's first byte is 0x80-0x8f, 0xde or 0xdf, never
     * what codec_decode() takes for JSON (a '{' after blanks), which it would
     * convert into codec's buffer.
     */
    if (!subject || !data || !len ||
        !((data[0] & 0xf0) == 0x80 || data[0] == 0xde || data[0] == 0xdf))
        return;
    if (!subject_ok(subject, strlen(subject)) || is_json_msg(m))
        return;
    if (codec_decode(codec, data, len, false, &p->env) != SC_OK || p->env.error_truncated)
        return;
    p->id_hash = dlq_queue_id_hash(p->env.task_id.ptr, p->env.task_id.len);
    p->ready = true;
}

void
sc_ingest_ahead(void *d, const void *slot)
{
    const struct sc_ingest_prepared *p = slot;

    if (p->ready)
        dlq_queue_prefetch(&((struct sc_daemon *)d)->m.q, p->id_hash);
}

/*
 * Decodes the failure in m into *env and fills *f for dlq_ingest(): false
 * when m breaks the contract (then refused as invalid: republished, and
 * answered 400 when answer is set).
 */
static bool
decode(struct sc_daemon *d, natsMsg *m, const char *subject, bool answer,
       struct codec_envelope *env, struct dlq_failure *f)
{
    size_t plen = strlen(d->cfg->subjects_prefix) + strlen(".failed."), slen = strlen(subject);
    const char *service = slen > plen ? subject + plen : "unknown";
    bool is_json = is_json_msg(m);

    d->m.c.received++;
    if (!subject_ok(subject, slen)) {
        refuse_invalid(d, m, "bad_subject", "bad_subject",
                       "subject: the failure subject is not a valid subject to publish to", answer);
        return false;
    }
    if (codec_decode(d->codec, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), is_json,
                     env)) {
        refuse_invalid(d, m, service, env->reason, env->why, answer);
        return false;
    }
    memset(f, 0, sizeof(*f));
    f->env = env;
    f->subject = subject;
    f->service = service;
    f->max_payload = sc_conn_max_payload(d->conn);
    return true;
}

/*
 * sc_ingest() is the core-NATS source of failures: it takes one message
 * from the ingest subject, checks its subject, decodes the envelope
 * (refusing an invalid one: republished raw to <prefix>.invalid.<service>,
 * answered 400), hands it to dlq_ingest() and answers the decision when the
 * message was a request. Loop thread.
 */
void
sc_ingest(struct sc_daemon *d, natsMsg *m)
{
    struct sc_ingest_prepared *p = sc_conn_prepared(d->conn);
    struct codec_envelope env;
    const struct codec_envelope *e = &env;
    struct dlq_decision dc;
    struct dlq_failure f;

    if (p && p->ready) {
        /* subject and envelope checked and decoded on the delivery thread */
        const char *subject = natsMsg_GetSubject(m);
        size_t plen = strlen(d->cfg->subjects_prefix) + strlen(".failed.");

        d->m.c.received++;
        e = &p->env;
        memset(&f, 0, sizeof(f));
        f.env = e;
        f.subject = subject;
        f.service = strlen(subject) > plen ? subject + plen : "unknown";
        f.max_payload = sc_conn_max_payload(d->conn);
        f.has_id_hash = true;
        f.id_hash = p->id_hash;
    } else if (!decode(d, m, natsMsg_GetSubject(m), true, &env, &f)) {
        return;
    }
    f.wants_answer = natsMsg_GetReply(m) != NULL;
    dlq_ingest(&d->m, &f, sc_held_wall_ms(), sc_held_mono_ms(), &dc); /* the batch's reading */
    answer(d, m, f.service, e, &dc);
}

/*
 * sc_ingest_js() is the JetStream source (jetstream.h says who holds the
 * failure when): the same decoding and decision, keyed by the message's
 * stream sequence, and the message's ack subject gets the answer: +ACK once
 * the task is accepted (by the store, with a durable one: the mirror holds
 * the ack until then), -NAK with ingest.nak_delay_ms when it cannot be taken
 * now (and fetching pauses as long when the queue is full), +ACK for an
 * invalid or skipped failure. The publisher already had its PubAck from the
 * server. Loop thread.
 */
void
sc_ingest_js(struct sc_daemon *d, natsMsg *m)
{
    jsMsgMetaData *meta = NULL;
    uint64_t seq;
    int64_t ts;

    if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
        if (sc_js_made_anew(m)) { /* the source made the stream anew: its sequences start over */
            dlq_machine_forget_seqs(&d->m, false);
            return;
        }
        /* Not a JetStream delivery (cannot come from a bound pull consumer): nothing to ack. */
        d->m.c.received++;
        refuse_invalid(d, m, "unknown", "not_jetstream",
                       "the message on the JetStream source carries no JetStream ack subject", false);
        return;
    }
    seq = meta->Sequence.Stream;
    ts = meta->Timestamp;
    jsMsgMetaData_Destroy(meta);
    sc_ingest_delivery(d, m, natsMsg_GetSubject(m), seq, ts, natsMsg_GetReply(m), d->js);
}

void
sc_ingest_delivery(struct sc_daemon *d, natsMsg *m, const char *subject, uint64_t stream_seq,
                   int64_t stream_time_ns, const char *ack, struct sc_js *src)
{
    struct codec_envelope env;
    struct dlq_decision dc;
    struct dlq_failure f;

    if (!decode(d, m, subject, false, &env, &f)) {
        sc_js_ack(src, d->conn, ack); /* republished to <prefix>.invalid.*: it is dealt with */
        return;
    }
    if (!src && d->serving) {
        /* Forwarded to this member: only a failure of a partition it serves (a forged forward is not). */
        uint32_t p = dlq_partition_of(env.task_id.ptr, env.task_id.len,
                                      (uint32_t)d->cfg->cluster_partitions);
        if (!sc_serving(d, p, sc_now_mono_ms())) {
            sc_forward_count_in(d, true);
            sc_js_nak(NULL, d->conn, ack, d->cfg->ingest_nak_delay_ms);
            return;
        }
    }
    if (src && d->serving) {
        /* Cluster mode: a failure of a partition this member does not own goes to its owner. */
        uint32_t p = dlq_partition_of(env.task_id.ptr, env.task_id.len,
                                      (uint32_t)d->cfg->cluster_partitions);
        if (!sc_serving(d, p, sc_now_mono_ms()) &&
            sc_forward_route(d, m, p, stream_seq, stream_time_ns)) {
            d->m.c.received--; /* counted by its owner, which takes it */
            return;
        }
    }
    f.stream_seq = stream_seq;
    f.stream_time_us = stream_time_ns > 0 ? stream_time_ns / 1000 : 0;
    dlq_ingest(&d->m, &f, sc_held_wall_ms(), sc_held_mono_ms(), &dc);
    if (dc.unknown_keys)
        warn_unknown_keys(d, &env, f.subject);
    switch (dc.verdict) {
    case DLQ_IN_INVALID:
        refuse_invalid(d, m, f.service, dc.reason, dc.why, false);
        sc_js_ack(src, d->conn, ack);
        break;
    case DLQ_IN_SKIPPED:
        sc_js_ack(src, d->conn, ack);
        break;
    case DLQ_IN_REFUSED:
        if (dc.refused_full) {
            log_full(d, dc.why, f.subject);
            sc_js_pause(d->js, d->cfg->ingest_nak_delay_ms); /* this member's own fetching */
        }
        sc_js_nak(src, d->conn, ack, d->cfg->ingest_nak_delay_ms);
        break;
    case DLQ_IN_REDELIVERED:
    case DLQ_IN_STORED:
        sc_mirror_js_ack(d, src, ack, dc.task, dc.verdict == DLQ_IN_REDELIVERED);
        break;
    }
}

/* ---- the owner's side of forwarding (forward.h says who holds the failure when) --------------- */

/*
 * A forwarded failure of a partition this member serves. Its reply subject
 * must be a forwarder's inbox: the answer is "+ACK" or "-NAK", and an
 * answer sent to a stream's own ack subject would ack someone else's
 * message (a forged forward).
 */
static void
on_forwarded(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    const char *reply = natsMsg_GetReply(m), *subject = NULL, *seq = NULL, *ts = NULL;
    const char *tail = strrchr(natsMsg_GetSubject(m), '.');
    unsigned long p = tail ? strtoul(tail + 1, NULL, 10) : (unsigned long)d->serving_n;
    char *end = NULL;
    unsigned long long sseq = 0;
    size_t ilen = strlen(d->cfg->nats_inbox_prefix);

    /* Members share nats.inbox_prefix: a forwarder's reply is "<prefix>.<nuid>.fwd.<slot>.<token>". */
    if (!reply || strncmp(reply, d->cfg->nats_inbox_prefix, ilen) != 0 || reply[ilen] != '.' ||
        !strstr(reply, ".fwd."))
        return; /* not from a forwarder: no answer */
    if (natsMsgHeader_Get(m, SC_FWD_HDR_SEQ, &seq) == NATS_OK && seq && seq[0] >= '0' &&
        seq[0] <= '9')
        sseq = strtoull(seq, &end, 10);
    if (p >= d->serving_n || !sc_serving(d, (uint32_t)p, sc_now_mono_ms()) ||
        natsMsgHeader_Get(m, SC_FWD_HDR_SUBJECT, &subject) != NATS_OK || !subject || !sseq ||
        !end || *end) {
        sc_forward_count_in(d, true);
        sc_js_nak(NULL, d->conn, reply, d->cfg->ingest_nak_delay_ms);
        return;
    }
    sc_forward_count_in(d, false);
    natsMsgHeader_Get(m, SC_FWD_HDR_TIME, &ts);
    sc_ingest_delivery(d, m, subject, sseq, ts ? strtoll(ts, NULL, 10) : 0, reply, NULL);
}

sc_status
sc_ingest_serve(struct sc_daemon *d, uint32_t p, char *err, size_t errlen)
{
    char subj[160];
    sc_status s;

    if (!d->part_subs || p >= d->serving_n)
        return SC_EINVAL;
    if (d->part_subs[p])
        return SC_OK;
    snprintf(subj, sizeof(subj), "%s.cluster.part.%u", d->cfg->subjects_prefix, p);
    s = sc_conn_subscribe(d->conn, subj, SC_FWD_QUEUE, 0, on_forwarded, d, &d->part_subs[p], err,
                          errlen);
    if (s)
        d->part_subs[p] = NULL;
    return s;
}

void
sc_ingest_unserve(struct sc_daemon *d, uint32_t p)
{
    if (!d->part_subs || p >= d->serving_n || !d->part_subs[p])
        return;
    sc_conn_sub_retire(d->part_subs[p], 5000); /* readiness stays; the conn frees it once drained */
    d->part_subs[p] = NULL;
}
