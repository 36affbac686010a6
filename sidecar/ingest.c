/* ingest.c - failure envelopes in: decode, classify, apply the strategy, store or refuse, acknowledge, emit events. */
#include <stdlib.h>
#include <string.h>

#include "sidecar-internal.h"

#define INVALID_LOG_INTERVAL_MS 10000
#define FULL_LOG_INTERVAL_MS 10000    /* queue-full refusals: one warning per interval */
#define UNKNOWN_LOG_INTERVAL_MS 10000 /* envelopes with unknown keys: one warning per interval */
#define UNKNOWN_NAME_MAX 64           /* bytes of an unknown key's name shown in acks and logs */

/* Appends "key":"value" (value NULL -> null) with a leading comma unless first. */
static void
json_kv(struct sc_buf *b, bool first, const char *key, const char *v, size_t len)
{
    if (!first)
        sc_buf_appendc(b, ',');
    sc_json_quote(b, key, strlen(key));
    sc_buf_appendc(b, ':');
    if (v)
        sc_json_quote(b, v, len);
    else
        sc_buf_append(b, "null", 4);
}

/*
 * The status an event reports: the task's own, except for a failure that
 * was not stored (a refused, skipped or invalid one has no task, and its
 * view's status field means nothing), where it is what happened to it.
 */
static const char *
event_status(const char *kind, const struct sc_task *t)
{
    if (strcmp(kind, "refused") == 0 || strcmp(kind, "skipped") == 0 ||
        strcmp(kind, "invalid") == 0)
        return kind;
    return sc_task_status_name(t->status);
}

void
sc_event(struct sc_daemon *d, const char *kind, const struct sc_task *t, int32_t attempt,
         const char *error)
{
    struct sc_buf *b = &d->scratch;
    char subj[256], at[SC_RFC3339_LEN];

    if (!d->cfg->events_enabled)
        return;
    sc_buf_reset(b);
    sc_format_rfc3339(sc_now_wall_ms(), at);
    sc_buf_appendc(b, '{');
    json_kv(b, true, "task_id", t ? t->id : NULL, t ? t->id_len : 0);
    json_kv(b, false, "subject", t ? t->subject : NULL, t ? strlen(t->subject) : 0);
    json_kv(b, false, "category", t ? policy_category_name(t->category) : NULL,
            t ? strlen(policy_category_name(t->category)) : 0);
    sc_buf_appendf(b, ",\"attempt\":%d", (int)attempt);
    json_kv(b, false, "at", at, strlen(at));
    if (!error && t)
        error = t->error;
    json_kv(b, false, "error", error, error ? strlen(error) : 0);
    if (t) {
        const char *st = event_status(kind, t);
        json_kv(b, false, "status", st, strlen(st));
    }
    sc_buf_appendc(b, '}');
    snprintf(subj, sizeof(subj), "%s.events.%s", d->cfg->subjects_prefix, kind);
    if (b->data)
        sc_publish(d, subj, NULL, b->data, b->len, NULL);
}

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

/* Appends ,"unknown_keys":["name",...] for env's unknown keys (the first CODEC_UNKNOWN_NAMES); nothing when none. */
static void
json_unknown_keys(struct sc_buf *b, const struct codec_envelope *env)
{
    if (!env || !env->unknown_keys)
        return;
    sc_buf_append(b, ",\"unknown_keys\":[", 17);
    for (unsigned i = 0; i < env->unknown_keys && i < CODEC_UNKNOWN_NAMES; i++) {
        size_t n = env->unknown[i].len < UNKNOWN_NAME_MAX ? env->unknown[i].len : UNKNOWN_NAME_MAX;
        if (i)
            sc_buf_appendc(b, ',');
        sc_json_quote(b, env->unknown[i].ptr, n);
    }
    sc_buf_appendc(b, ']');
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
           subject, "unknown_keys_total", sc_log_int((int64_t)d->c.unknown_keys),
           "envelopes_not_logged", sc_log_int((int64_t)quiet), NULL);
}

/*
 * Replies {"ok":true,...}. t is the stored task: with a durable store the
 * reply waits for its write (DESIGN section 3: "accepted" means "stored"),
 * except while the store is degraded; NULL answers now. env (may be NULL)
 * adds the names of its unknown keys.
 */
static void
ack_ok(struct sc_daemon *d, natsMsg *m, const char *id, size_t id_len, const char *status,
       int64_t next_retry_at, struct sc_task *t, const struct codec_envelope *env)
{
    struct sc_buf *b = &d->out;
    char ts[SC_RFC3339_LEN];

    if (!natsMsg_GetReply(m))
        return;
    sc_buf_reset(b);
    sc_buf_append(b, "{\"ok\":true", 10);
    json_kv(b, false, "task_id", id, id_len);
    json_kv(b, false, "status", status, strlen(status));
    if (next_retry_at) {
        sc_format_rfc3339(next_retry_at, ts);
        json_kv(b, false, "next_retry_at", ts, strlen(ts));
    } else {
        json_kv(b, false, "next_retry_at", NULL, 0);
    }
    json_unknown_keys(b, env);
    sc_buf_appendc(b, '}');
    if (t && sc_store_hold_ack(d, m, t, b->data, b->len))
        return;
    sc_respond(d, m, b->data, b->len, 0, NULL);
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
 * <prefix>.invalid.<service> and answers 400 when it was a request.
 */
static void
refuse_invalid(struct sc_daemon *d, natsMsg *m, const char *service, const char *reason,
               const char *why)
{
    struct sc_reason_count *rc = reason_slot(d, reason);
    int64_t now = sc_now_mono_ms();
    char subj[4200], origlen[24];
    const char *hdrs[] = {CODEC_HDR_INVALID_REASON, reason, "Dlq-Invalid-Detail", why,
                          CODEC_HDR_ORIG_SUBJECT, natsMsg_GetSubject(m), NULL, NULL, NULL};
    size_t len = (size_t)natsMsg_GetDataLength(m);
    int64_t maxp = sc_conn_max_payload(d->conn);
    struct sc_task view;

    d->c.invalid++;
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
    ack_error(d, m, 400, why);
}

void
sc_task_classify(struct sc_daemon *d, struct sc_task *t)
{
    const char *rule = "default";
    policy_category c;

    c = policy_classify(d->classifier, t->error_type, t->error_type ? strlen(t->error_type) : 0,
                        t->error, t->error ? strlen(t->error) : 0, &rule);
    sc_queue_set_class(&d->q, t, c, (policy_retry)t->policy);
    sc_task_set_str(&d->q, t, SC_TS_RULE, rule, strlen(rule));
}

/*
 * classify_text() classifies the envelope's error_type and error as the task
 * will store them (sc_set_text(): NUL bytes become spaces), so that the
 * answer at ingest equals what sc_task_classify() says of the stored task.
 * Texts with a NUL are copied into d->scratch first (rare). Sets *rule.
 */
static policy_category
classify_text(struct sc_daemon *d, const struct codec_envelope *env, const char **rule)
{
    const char *et = env->error_type.ptr, *e = env->error.ptr ? env->error.ptr : "";
    size_t etlen = env->error_type.len, elen = env->error.ptr ? env->error.len : 0;
    bool et_nul = et && memchr(et, '\0', etlen), e_nul = memchr(e, '\0', elen) != NULL;

    if (et_nul || e_nul) {
        struct sc_buf *b = &d->scratch;
        sc_buf_reset(b);
        if (et)
            sc_buf_append(b, et, etlen);
        sc_buf_append(b, e, elen);
        for (size_t i = 0; i < b->len; i++)
            if (b->data[i] == '\0')
                b->data[i] = ' ';
        if (b->data && b->len == (et ? etlen : 0) + elen) {
            et = et ? b->data : NULL;
            e = b->data + etlen * (et != NULL);
        }
    }
    return policy_classify(d->classifier, et, et ? etlen : 0, e, elen, rule);
}

/* Sets t's policy from its override, the configured default, or its category. */
static void
task_policy(struct sc_daemon *d, struct sc_task *t, bool has_override, policy_retry override)
{
    if (has_override) {
        sc_queue_set_class(&d->q, t, (policy_category)t->category, override);
        t->policy_override = true;
    } else if (!t->policy_override) {
        sc_queue_set_class(&d->q, t, (policy_category)t->category,
                           d->cfg->has_default_retry_policy
                               ? d->cfg->default_retry_policy
                               : policy_default_retry((policy_category)t->category));
    }
}

/* Expands retry.subject_template for service into out; false when it does not fit. */
static bool
expand_template(const char *tpl, const char *service, char *out, size_t outlen)
{
    size_t n = 0, sl = strlen(service);
    const char *p = tpl;

    while (*p) {
        if (strncmp(p, "{service}", 9) == 0) {
            if (n + sl >= outlen)
                return false;
            memcpy(out + n, service, sl);
            n += sl;
            p += 9;
        } else {
            if (n + 1 >= outlen)
                return false;
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return true;
}

/* Checks a retry subject; on refusal writes the reason into why. */
static bool
retry_subject_ok(struct sc_daemon *d, const char *s, size_t len, char *why, size_t whylen)
{
    if (!codec_subject_valid(s, len, false)) {
        snprintf(why, whylen, "retry_subject refused: not a valid NATS subject to publish to");
        return false;
    }
    for (size_t i = 0; i < d->cfg->retry_allowed_count; i++)
        if (codec_subject_match(d->cfg->retry_allowed_subjects[i], s, len))
            return true;
    snprintf(why, whylen, "retry_subject refused: does not match retry.allowed_subjects");
    return false;
}

void
sc_ingest(struct sc_daemon *d, natsMsg *m)
{
    struct config *cfg = d->cfg;
    struct codec_envelope env;
    const char *subject = natsMsg_GetSubject(m);
    const char *data = natsMsg_GetData(m);
    size_t len = (size_t)natsMsg_GetDataLength(m);
    size_t plen = strlen(cfg->subjects_prefix) + strlen(".failed.");
    const char *service = strlen(subject) > plen ? subject + plen : "unknown";
    const char *ctype = NULL;
    bool is_json = false, has_override = false, fresh = false, reopened = false;
    policy_retry override = POLICY_NEVER;
    policy_category cat;
    const char *rule = "envelope";
    char rs[1024], why[256];
    bool rs_ok;
    struct sc_task *t;
    int64_t now = sc_now_wall_ms();
    sc_status s;

    d->c.received++;
    if (natsMsgHeader_Get(m, "Content-Type", &ctype) == NATS_OK && ctype &&
        strncmp(ctype, "application/json", 16) == 0 &&
        (ctype[16] == '\0' || ctype[16] == ';' || ctype[16] == ' '))
        is_json = true;
    /* A server in non-pedantic mode lets wildcards through in a published subject. */
    if (!codec_subject_valid(subject, strlen(subject), false) || strlen(subject) > 4000) {
        refuse_invalid(d, m, "bad_subject", "bad_subject",
                       "subject: the failure subject is not a valid subject to publish to");
        return;
    }
    s = codec_decode(d->codec, data, len, is_json, &env);
    if (s) {
        refuse_invalid(d, m, service, env.reason, env.why);
        return;
    }
    /*
     * A task that cannot be republished must not be accepted (DESIGN section 4:
     * never half-stored): the payload plus the widest retry headers it can
     * ever carry, sized by the code that builds them, must fit max_payload.
     */
    {
        int64_t maxp = sc_conn_max_payload(d->conn);
        size_t hdr = sc_retry_headers_max(env.task_id.ptr, env.task_id.len, subject);
        if (maxp > 0 && (int64_t)(env.task.len + hdr) > maxp) {
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "task: %zu bytes plus %zu bytes of retry headers do not fit the server's "
                     "max_payload %lld",
                     env.task.len, hdr, (long long)maxp);
            refuse_invalid(d, m, service, "too_big", msg);
            return;
        }
    }
    d->c.unknown_keys += env.unknown_keys;
    if (env.unknown_keys)
        warn_unknown_keys(d, &env, subject);
    if (env.retry_policy.ptr) {
        if (policy_retry_parse(env.retry_policy.ptr, env.retry_policy.len, &override)) {
            refuse_invalid(d, m, service, "bad_value",
                           "retry_policy: not one of never, linear, exponential, immediate");
            return;
        }
        has_override = true;
    }

    /* Resolve the retry subject now, so a refused one parks the task with a clear error. */
    if (env.retry_subject.ptr) {
        size_t n = env.retry_subject.len < sizeof(rs) - 1 ? env.retry_subject.len : sizeof(rs) - 1;
        memcpy(rs, env.retry_subject.ptr, n);
        rs[n] = '\0';
        rs_ok = env.retry_subject.len < sizeof(rs) &&
                retry_subject_ok(d, env.retry_subject.ptr, env.retry_subject.len, why, sizeof(why));
        if (env.retry_subject.len >= sizeof(rs))
            snprintf(why, sizeof(why), "retry_subject refused: longer than %zu bytes", sizeof(rs) - 1);
    } else if (!expand_template(cfg->retry_subject_template, service, rs, sizeof(rs))) {
        snprintf(why, sizeof(why), "retry_subject refused: the template expands past %zu bytes",
                 sizeof(rs) - 1);
        rs[0] = '\0';
        rs_ok = false;
    } else {
        rs_ok = retry_subject_ok(d, rs, strlen(rs), why, sizeof(why));
    }
    if (!rs_ok && env.retry_subject.ptr == NULL)
        rs[0] = '\0';

    /*
     * Classify once, before the strategy (selective needs the effective
     * policy); the task keeps this answer. The service's own category wins.
     */
    if (env.error_category.ptr &&
        policy_category_parse(env.error_category.ptr, env.error_category.len, &cat) == SC_OK) {
        rule = "envelope";
    } else {
        cat = classify_text(d, &env, &rule);
    }
    {
        policy_retry eff = has_override ? override
                           : cfg->has_default_retry_policy ? cfg->default_retry_policy
                                                            : policy_default_retry(cat);
        if (!cfg->enabled || !policy_should_store(cfg->strategy, eff, env.enqueue)) {
            struct sc_task view;
            d->c.skipped++;
            memset(&view, 0, sizeof(view));
            view.id = (char *)env.task_id.ptr;
            view.id_len = env.task_id.len;
            view.subject = (char *)subject;
            view.category = cat;
            sc_event(d, "skipped", &view, 0, "");
            ack_ok(d, m, env.task_id.ptr, env.task_id.len, "skipped", 0, NULL, &env);
            return;
        }
    }

    t = sc_queue_find(&d->q, env.task_id.ptr, env.task_id.len);
    if (t && (t->status == SC_TASK_COMPLETED || t->status == SC_TASK_ARCHIVED))
        reopened = true;
    {
        size_t want = sizeof(*t) + env.task_id.len + env.task.len + env.error.len +
                      env.error_type.len + env.metadata.len + env.repos.len + 2 * strlen(subject);
        size_t held = d->q.bytes - (t ? t->bytes : 0);
        bool full = (!t || reopened) && sc_queue_active(&d->q) >= (size_t)cfg->max_size;
        bool too_many_bytes = held + want > (size_t)cfg->max_bytes;
        if (full || too_many_bytes) {
            const char *msg = full ? "queue full" : "queue full (max_bytes)";
            struct sc_task view;
            uint64_t quiet;
            d->c.refused_full++;
            if (sc_lograte_take(&d->log_full, sc_now_mono_ms(), FULL_LOG_INTERVAL_MS, &quiet))
                sc_log(SC_LOG_WARN, "queue full: failure refused", "reason", msg, "subject", subject,
                       "queue_size", sc_log_int((int64_t)sc_queue_active(&d->q)),
                       "refused_full_total", sc_log_int((int64_t)d->c.refused_full),
                       "refusals_not_logged", sc_log_int((int64_t)quiet), NULL);
            memset(&view, 0, sizeof(view));
            view.id = (char *)env.task_id.ptr;
            view.id_len = env.task_id.len;
            view.subject = (char *)subject;
            view.category = cat;
            sc_event(d, "refused", &view, 0, msg);
            ack_error(d, m, 503, msg);
            return;
        }
    }
    if (!t) {
        t = sc_queue_add_room(&d->q, env.task_id.ptr, env.task_id.len, env.task.len, now);
        fresh = true;
    } else if (!reopened) {
        d->c.duplicates++; /* a reopened episode counts as enqueued, not as a duplicate */
    }
    if (fresh || reopened) {
        if (reopened) {
            t->episode++;
            sc_queue_new_episode(&d->q, t, now); /* a new Nats-Msg-Id space (DESIGN section 5) */
            t->retry_count = 0;
            t->defer_streak = 0;
            t->policy_override = false;
            sc_queue_set_status(&d->q, t, SC_TASK_PENDING, false);
        }
        t->first_failed_at = env.has_failed_at ? env.failed_at_ms : now;
        t->max_retries = env.has_max_retries ? env.max_retries : cfg->default_max_retries;
        t->max_retries_own = env.has_max_retries; /* else it follows default_max_retries */
    } else if (env.has_max_retries) {
        t->max_retries = env.max_retries;
        t->max_retries_own = true;
    }
    sc_task_set_str(&d->q, t, SC_TS_SUBJECT, subject, strlen(subject));
    sc_task_set_payload(t, env.task.ptr, env.task.len);
    sc_task_set_str(&d->q, t, SC_TS_ERROR, env.error.ptr ? env.error.ptr : "", env.error.len);
    sc_task_set_str(&d->q, t, SC_TS_ERROR_TYPE, env.error_type.ptr, env.error_type.len);
    sc_set_str(&t->metadata, env.metadata.ptr, env.metadata.len);
    t->metadata_len = env.metadata.ptr ? env.metadata.len : 0;
    sc_set_str(&t->repos, env.repos.ptr, env.repos.len);
    t->repos_len = env.repos.ptr ? env.repos.len : 0;
    sc_task_set_str(&d->q, t, SC_TS_RETRY_SUBJECT, rs_ok ? rs : NULL, rs_ok ? strlen(rs) : 0);
    sc_task_account(&d->q, t);
    sc_queue_set_class(&d->q, t, cat, (policy_retry)t->policy);
    sc_task_set_str(&d->q, t, SC_TS_RULE, rule, strlen(rule));
    task_policy(d, t, has_override, override);
    t->updated_at = now;
    sc_store_changed(d, t);
    sc_queue_history(&d->q, t, SC_OUT_FAILED, t->retry_count, now, t->error, strlen(t->error));

    if (fresh || reopened) {
        d->c.enqueued++;
        if (!rs_ok) {
            sc_queue_set_status(&d->q, t, SC_TASK_PENDING, true);
            sc_set_str(&t->park_reason, why, strlen(why));
            sc_queue_history(&d->q, t, SC_OUT_REFUSED, 0, now, why, strlen(why));
            t->next_retry_at = 0;
            sc_log(SC_LOG_INFO, "task parked", "task_id", t->id, "reason", why, NULL);
        } else {
            sc_schedule_next(d, t, now);
        }
        if (sc_log_enabled(SC_LOG_INFO)) /* spare the formatting of the arguments */
            sc_log(SC_LOG_INFO, "task enqueued", "task_id", t->id, "subject", t->subject,
                   "category", policy_category_name(t->category), "policy",
                   policy_retry_name(t->policy), "status",
                   t->parked ? "parked" : sc_task_status_name(t->status), "episode",
                   sc_log_int(t->episode), NULL);
        sc_event(d, "enqueued", t, 0, NULL);
    } else if (t->status == SC_TASK_RETRYING) {
        /* DESIGN section 6: a new failure while retrying fails the current attempt. */
        d->c.failures_while_retrying++;
        sc_attempt_failed(d, t, SC_OUT_RETRY_FAILED, t->error, strlen(t->error));
    } else if (t->status == SC_TASK_PENDING) {
        /* Keep the schedule unless the new envelope changed what it rests on (budget included). */
        bool keep = !t->parked && rs_ok && t->policy != POLICY_NEVER &&
                    t->retry_count < t->max_retries && sc_wheel_entry_scheduled(&t->timer);
        if (!rs_ok) {
            sc_wheel_cancel(d->wheel, &t->timer);
            sc_queue_set_status(&d->q, t, SC_TASK_PENDING, true);
            sc_set_str(&t->park_reason, why, strlen(why));
            t->next_retry_at = 0;
        } else if (!keep) {
            sc_schedule_next(d, t, now);
        }
    }
    /* An exhausted task only has its record updated. */
    ack_ok(d, m, t->id, t->id_len, sc_task_status_name(t->status), t->next_retry_at, t, &env);
}
