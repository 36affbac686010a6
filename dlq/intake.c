/* intake.c - one failure in, one decision out: retry subject, classification, strategy, caps, and the task filed. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "dlq-internal.h"

#define RS_MAX 1024 /* bytes of a retry subject, NUL included */

/* What ingest works out about a failure before it touches the table. */
struct intake {
    const struct dlq_failure *f;
    const struct codec_envelope *env;
    const struct config_template *tpl; /* the template the envelope names, or NULL */
    policy_priority prio;              /* the envelope's, else its template's, else priority.subjects' */
    bool own_prio;                     /* prio came from the envelope or its template */
    bool has_override;
    policy_retry override;
    policy_category cat;
    const char *rule;
    size_t subject_len; /* strlen(f->subject), worked out once */
    bool rs_ok;      /* false: refused, why says why */
    /* The text buffers last: dlq_ingest() zeroes only what comes before them. */
    char rs[RS_MAX]; /* the retry subject */
    char why[256];
};

/*
 * classify_text() classifies the envelope's error_type and error as the task
 * will store them (dlq_set_text(): NUL bytes become spaces), so that the
 * answer at ingest equals what task_classify() in machine.c says of the stored task.
 * Texts with a NUL are copied first (rare). Sets *rule.
 */
static policy_category
classify_text(struct dlq_machine *m, const struct codec_envelope *env, const char **rule)
{
    const char *et = env->error_type.ptr, *e = env->error.ptr ? env->error.ptr : "";
    size_t etlen = env->error_type.len, elen = env->error.ptr ? env->error.len : 0;
    bool et_nul = et && memchr(et, '\0', etlen), e_nul = memchr(e, '\0', elen) != NULL;
    struct sc_buf b;
    policy_category c;

    if (!et_nul && !e_nul)
        return policy_classify(m->classifier, et, et ? etlen : 0, e, elen, rule);
    sc_buf_init(&b, 16 * 1024 * 1024);
    if (et)
        sc_buf_append(&b, et, etlen);
    sc_buf_append(&b, e, elen);
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] == '\0')
            b.data[i] = ' ';
    if (b.data && b.len == (et ? etlen : 0) + elen) {
        et = et ? b.data : NULL;
        e = b.data + etlen * (et != NULL);
    }
    c = policy_classify(m->classifier, et, et ? etlen : 0, e, elen, rule);
    sc_buf_destroy(&b);
    return c;
}

/*
 * The last expansion of retry.subject_template, kept by the texts of the
 * template and the service (not their addresses: a reload frees the
 * template): failures come in runs from one service. One per thread.
 */
#define EXPAND_MEMO_MAX 256
static _Thread_local struct {
    size_t tpl_len, svc_len, out_len; /* tpl_len 0: empty */
    char tpl[EXPAND_MEMO_MAX], svc[EXPAND_MEMO_MAX], out[EXPAND_MEMO_MAX];
} expand_memo;

/* Expands retry.subject_template for service into out; false when it does not fit. */
static bool
expand_template(const char *tpl, const char *service, char *out, size_t outlen)
{
    size_t n = 0, sl = strlen(service), tl = strlen(tpl), rest;
    const char *p = tpl, *hole;

    if (expand_memo.tpl_len && expand_memo.tpl_len == tl && expand_memo.svc_len == sl &&
        expand_memo.out_len < outlen && memcmp(expand_memo.tpl, tpl, tl) == 0 &&
        memcmp(expand_memo.svc, service, sl) == 0) {
        memcpy(out, expand_memo.out, expand_memo.out_len + 1);
        return true;
    }
    expand_memo.tpl_len = 0;

    /* The text up to each {service} in one copy (it runs for every failure). */
    while ((hole = strstr(p, "{service}")) != NULL) {
        size_t run = (size_t)(hole - p);
        if (n + run + sl >= outlen)
            return false;
        memcpy(out + n, p, run);
        memcpy(out + n + run, service, sl + 1); /* its NUL too: the end, unless more follows */
        n += run + sl;
        p = hole + 9;
    }
    rest = strlen(p);
    if (n + rest >= outlen)
        return false;
    memcpy(out + n, p, rest + 1);
    n += rest;
    if (tl && tl < EXPAND_MEMO_MAX && sl < EXPAND_MEMO_MAX && n < EXPAND_MEMO_MAX) {
        memcpy(expand_memo.tpl, tpl, tl);
        memcpy(expand_memo.svc, service, sl);
        memcpy(expand_memo.out, out, n + 1);
        expand_memo.tpl_len = tl;
        expand_memo.svc_len = sl;
        expand_memo.out_len = n;
    }
    return true;
}

/*
 * The last retry subject found allowed, with the retry.allowed_subjects it
 * was matched against kept by their text (not their address): failures come
 * in runs to one retry subject, and matching walks each pattern token by
 * token. One per thread.
 */
#define MEMO_MAX 512
struct allowed_memo {
    size_t rs_len; /* 0: empty */
    size_t pats_len;
    char rs[MEMO_MAX];
    char pats[MEMO_MAX]; /* the patterns one after another, each with its NUL */
};

static _Thread_local struct allowed_memo memo;

/* Whether s was found allowed by exactly cfg's patterns the last time. */
static bool
memo_hit(const struct config *cfg, const char *s, size_t len)
{
    size_t o = 0;

    if (!memo.rs_len || memo.rs_len != len || memcmp(memo.rs, s, len) != 0)
        return false;
    for (size_t i = 0; i < cfg->retry_allowed_count; i++) {
        size_t pl = strlen(cfg->retry_allowed_subjects[i]) + 1;
        if (o + pl > memo.pats_len || memcmp(memo.pats + o, cfg->retry_allowed_subjects[i], pl) != 0)
            return false;
        o += pl;
    }
    return o == memo.pats_len;
}

/* Remembers that s is allowed by cfg's patterns (nothing when either does not fit). */
static void
memo_set(const struct config *cfg, const char *s, size_t len)
{
    size_t o = 0;

    memo.rs_len = 0;
    if (len >= sizeof(memo.rs))
        return;
    for (size_t i = 0; i < cfg->retry_allowed_count; i++) {
        size_t pl = strlen(cfg->retry_allowed_subjects[i]) + 1;
        if (o + pl > sizeof(memo.pats))
            return;
        memcpy(memo.pats + o, cfg->retry_allowed_subjects[i], pl);
        o += pl;
    }
    memcpy(memo.rs, s, len);
    memo.pats_len = o;
    memo.rs_len = len;
}

/* Checks a retry subject; on refusal writes the reason into why. */
static bool
retry_subject_ok(const struct config *cfg, const char *s, size_t len, char *why, size_t whylen)
{
    if (!codec_subject_valid_recent(s, len)) {
        snprintf(why, whylen, "retry_subject refused: not a valid NATS subject to publish to");
        return false;
    }
    if (memo_hit(cfg, s, len))
        return true;
    for (size_t i = 0; i < cfg->retry_allowed_count; i++)
        if (codec_subject_match(cfg->retry_allowed_subjects[i], s, len)) {
            memo_set(cfg, s, len);
            return true;
        }
    snprintf(why, whylen, "retry_subject refused: does not match retry.allowed_subjects");
    return false;
}

/* Resolves the retry subject now, so that a refused one parks the task with a clear error. */
static void
resolve_retry_subject(struct dlq_machine *m, struct intake *in)
{
    struct codec_str want = in->env->retry_subject; /* the envelope's, else its template's */
    char *rs = in->rs;

    if (!want.ptr && in->tpl && in->tpl->retry_subject) {
        want.ptr = in->tpl->retry_subject;
        want.len = strlen(want.ptr);
    }
    if (in->f->payload_missing) {
        /* Nothing to send: filed parked, so that an operator sees it (DESIGN section 16). */
        snprintf(in->why, sizeof(in->why), "payload_missing: %s",
                 in->f->missing_why ? in->f->missing_why : "the original message is gone");
        rs[0] = '\0';
        in->rs_ok = false;
        return;
    }
    if (want.ptr) {
        size_t n = want.len < RS_MAX - 1 ? want.len : RS_MAX - 1;
        memcpy(rs, want.ptr, n);
        rs[n] = '\0';
        in->rs_ok = want.len < RS_MAX &&
                    retry_subject_ok(m->cfg, want.ptr, want.len, in->why, sizeof(in->why));
        if (want.len >= RS_MAX)
            snprintf(in->why, sizeof(in->why), "retry_subject refused: longer than %d bytes",
                     RS_MAX - 1);
    } else if (!expand_template(m->cfg->retry_subject_template, in->f->service, rs, RS_MAX)) {
        snprintf(in->why, sizeof(in->why),
                 "retry_subject refused: the template expands past %d bytes", RS_MAX - 1);
        rs[0] = '\0';
        in->rs_ok = false;
    } else {
        in->rs_ok = retry_subject_ok(m->cfg, rs, strlen(rs), in->why, sizeof(in->why));
    }
    if (!in->rs_ok && want.ptr == NULL)
        rs[0] = '\0';
}

/* Sets a refusal of the failure (INVALID or REFUSED) with its reason and message. */
static void
decide_no(struct dlq_decision *out, dlq_verdict v, const char *reason, const char *why)
{
    out->verdict = v;
    out->reason = reason;
    snprintf(out->why, sizeof(out->why), "%s", why);
}

/* Emits event kind for a failure that has no task (skipped, refused): a view of the envelope. */
static void
event_view(struct dlq_machine *m, const struct intake *in, const char *kind, const char *error)
{
    struct dlq_task view;

    memset(&view, 0, sizeof(view));
    view.id = (char *)in->env->task_id.ptr;
    view.id_len = in->env->task_id.len;
    view.subject = (char *)in->f->subject;
    view.category = in->cat;
    m->ports.event(m->ports.ctx, kind, &view, 0, error);
}

/*
 * The checks of the contract that need the configuration: a task that cannot
 * be republished must not be accepted (DESIGN section 4: never half-stored):
 * the payload plus the widest retry headers it can ever carry, sized by the
 * code that builds them, must fit max_payload; a retry_policy must be known.
 * Counts unknown keys. False with out set when the failure is invalid.
 */
static bool
check_envelope(struct dlq_machine *m, struct intake *in, struct dlq_decision *out)
{
    const struct codec_envelope *env = in->env;
    /*
     * dlq_retry_headers_max(id, subject) without building the headers per
     * message: the id appears twice (Dlq-Task-Id, Nats-Msg-Id), the subject
     * once, every other value at its widest is in hdr_base.
     */
    size_t id_len = env->task_id.len < DLQ_RETRY_ID_MAX ? env->task_id.len : DLQ_RETRY_ID_MAX;
    size_t hdr = m->hdr_base + 2 * id_len + in->subject_len +
                 (in->f->headers ? in->f->headers_len + 2 * DLQ_HDRS_MAX : 0);

    if (in->f->max_payload > 0 && (int64_t)(env->task.len + hdr) > in->f->max_payload) {
        out->verdict = DLQ_IN_INVALID;
        out->reason = "too_big";
        snprintf(out->why, sizeof(out->why),
                 "task: %zu bytes plus %zu bytes of retry headers do not fit the server's "
                 "max_payload %lld",
                 env->task.len, hdr, (long long)in->f->max_payload);
        return false;
    }
    m->c.unknown_keys += env->unknown_keys;
    out->unknown_keys = env->unknown_keys;
    if (env->template_name.ptr) {
        in->tpl = config_template_find(m->cfg, env->template_name.ptr, env->template_name.len);
        if (!in->tpl) {
            out->verdict = DLQ_IN_INVALID;
            out->reason = "unknown_template";
            snprintf(out->why, sizeof(out->why), "template: '%.*s' is not a configured template",
                     (int)(env->template_name.len > 64 ? 64 : env->template_name.len),
                     env->template_name.ptr);
            return false;
        }
    }
    in->own_prio = true;
    if (env->priority.ptr) {
        if (policy_priority_parse(env->priority.ptr, env->priority.len, &in->prio)) {
            decide_no(out, DLQ_IN_INVALID, "bad_value", "priority: not one of high, normal, low");
            return false;
        }
    } else if (in->tpl && in->tpl->has_priority) {
        in->prio = in->tpl->priority;
    } else {
        in->own_prio = false;
        in->prio = config_priority_for(m->cfg, in->f->subject, in->subject_len);
    }
    if (env->retry_policy.ptr) {
        if (policy_retry_parse(env->retry_policy.ptr, env->retry_policy.len, &in->override)) {
            decide_no(out, DLQ_IN_INVALID, "bad_value",
                      "retry_policy: not one of never, linear, exponential, immediate");
            return false;
        }
        in->has_override = true;
    } else if (in->tpl && in->tpl->has_policy) {
        in->override = in->tpl->policy; /* the template's, unless the envelope says */
        in->has_override = true;
    }
    return true;
}

/*
 * Whether the failure is to be stored: the strategy (with the effective
 * policy, so classify first: the service's own category wins), then the
 * store's admission for a request. False with out set (and the event sent)
 * when it is skipped or refused.
 */
static bool
admit(struct dlq_machine *m, struct intake *in, struct dlq_decision *out)
{
    const struct codec_envelope *env = in->env;
    const struct config *cfg = m->cfg;
    policy_retry eff;
    const char *no;

    in->rule = "envelope";
    if (!env->error_category.ptr ||
        policy_category_parse(env->error_category.ptr, env->error_category.len, &in->cat) != SC_OK)
        in->cat = classify_text(m, env, &in->rule);
    eff = in->has_override                ? in->override
          : cfg->has_default_retry_policy ? cfg->default_retry_policy
                                          : policy_default_retry(in->cat);
    if (!cfg->enabled || !policy_should_store(cfg->strategy, eff, env->enqueue)) {
        m->c.skipped++;
        event_view(m, in, "skipped", "");
        out->verdict = DLQ_IN_SKIPPED;
        out->status = "skipped";
        return false;
    }
    /* store.ack: durable: refuse what the store cannot take now (a plain publish has no one to tell). */
    if (in->f->wants_answer && (no = m->ports.admit(m->ports.ctx)) != NULL) {
        event_view(m, in, "refused", no);
        decide_no(out, DLQ_IN_REFUSED, NULL, no);
        return false;
    }
    return true;
}

/* The queue's caps (max_size for a new or reopened task, max_bytes always). False with out set when full. */
static bool
room_for(struct dlq_machine *m, struct intake *in, const struct dlq_task *t, bool reopened,
         struct dlq_decision *out)
{
    const struct codec_envelope *env = in->env;
    size_t want = sizeof(*t) + env->task_id.len + env->task.len + env->error.len +
                  env->error_type.len + env->metadata.len + env->repos.len +
                  2 * in->subject_len + in->f->headers_len;
    size_t held = m->q.bytes - (t ? t->bytes : 0);
    bool full = (!t || reopened) && dlq_queue_active(&m->q) >= (size_t)m->cfg->max_size;
    const char *msg;

    if (!full && held + want <= (size_t)m->cfg->max_bytes)
        return true;
    msg = full ? "queue full" : "queue full (max_bytes)";
    m->c.refused_full++;
    event_view(m, in, "refused", msg);
    decide_no(out, DLQ_IN_REFUSED, NULL, msg);
    out->refused_full = true;
    return false;
}

/* Opens a new episode of t (it was completed or archived): fresh budget and Nats-Msg-Id space. */
static void
reopen(struct dlq_machine *m, struct dlq_task *t, int64_t now)
{
    t->episode++;
    dlq_queue_new_episode(&m->q, t, now); /* a new Nats-Msg-Id space (DESIGN section 5) */
    t->retry_count = 0;
    t->defer_streak = 0;
    t->policy_override = false;
    dlq_queue_set_status(&m->q, t, DLQ_TASK_PENDING, false);
}

/*
 * Sets t's priority. A task waiting in its priority's wheel moves to the new
 * one with its due time kept (an entry must leave the wheel that holds it).
 */
static void
set_priority(struct dlq_machine *m, struct dlq_task *t, policy_priority p, int64_t now)
{
    int64_t left;

    if (t->priority == (uint8_t)p)
        return;
    if (t->status != DLQ_TASK_PENDING || !dlq_wheel_entry_scheduled(&t->timer)) {
        t->priority = (uint8_t)p;
        return;
    }
    dlq_wheel_cancel(m->wheels[t->priority % POLICY_PRIO_COUNT], &t->timer);
    t->priority = (uint8_t)p;
    left = t->next_retry_at > now ? t->next_retry_at - now : 0;
    dlq_wheel_schedule(m->wheels[p], &t->timer, m->now_mono + left);
}

/* Copies the envelope into t: the record part of a failure, whatever t's status. */
static void
fill_task(struct dlq_machine *m, struct intake *in, struct dlq_task *t, bool fresh, bool reopened,
          int64_t now)
{
    const struct codec_envelope *env = in->env;
    struct dlq_queue *q = &m->q;

    bool has_max = env->has_max_retries || (in->tpl && in->tpl->has_max_retries);
    int max = env->has_max_retries ? env->max_retries : in->tpl ? in->tpl->max_retries : 0;

    if (fresh || reopened) {
        t->first_failed_at = env->has_failed_at ? env->failed_at_ms : now;
        t->max_retries = has_max ? max : m->cfg->default_max_retries;
        t->max_retries_own = has_max; /* else it follows default_max_retries */
    } else if (has_max) {
        t->max_retries = max;
        t->max_retries_own = true;
    }
    if (in->own_prio || fresh || reopened) /* a repeat without one keeps the task's */
        set_priority(m, t, in->prio, now);
    dlq_task_set_str(q, t, DLQ_TS_SUBJECT, in->f->subject, in->subject_len);
    dlq_task_set_payload(t, env->task.ptr, env->task.len);
    dlq_task_set_str(q, t, DLQ_TS_ERROR, env->error.ptr ? env->error.ptr : "", env->error.len);
    dlq_task_set_str(q, t, DLQ_TS_ERROR_TYPE, env->error_type.ptr, env->error_type.len);
    dlq_set_str(&t->metadata, env->metadata.ptr, env->metadata.len);
    t->metadata_len = env->metadata.ptr ? (uint32_t)env->metadata.len : 0;
    dlq_set_str(&t->repos, env->repos.ptr, env->repos.len);
    t->repos_len = env->repos.ptr ? (uint32_t)env->repos.len : 0;
    dlq_task_set_headers(t, in->f->headers, in->f->headers ? in->f->headers_len : 0);
    t->payload_raw = in->f->payload_raw;
    t->payload_missing = in->f->payload_missing;
    dlq_task_set_str(q, t, DLQ_TS_RETRY_SUBJECT, in->rs_ok ? in->rs : NULL,
                    in->rs_ok ? strlen(in->rs) : 0);
    dlq_task_account(q, t);
    dlq_queue_set_class(q, t, in->cat, (policy_retry)t->policy);
    dlq_task_set_str(q, t, DLQ_TS_RULE, in->rule, strlen(in->rule));
    if (env->backoff_n > 0) {
        /* Its own delay list, kept as text in the string pool: tasks that share a list share one copy. */
        struct policy_delays dl = {.n = env->backoff_n};
        char text[POLICY_DELAYS_TEXT_MAX];
        size_t n;

        memcpy(dl.ms, env->backoff_ms, env->backoff_n * sizeof(dl.ms[0]));
        n = policy_delays_format(&dl, text, sizeof(text));
        dlq_task_set_str(q, t, DLQ_TS_BACKOFF, text, n);
    } else if (in->tpl && in->tpl->backoff) {
        dlq_task_set_str(q, t, DLQ_TS_BACKOFF, in->tpl->backoff, strlen(in->tpl->backoff));
    } else if (fresh || reopened) {
        dlq_task_set_str(q, t, DLQ_TS_BACKOFF, NULL, 0); /* a new episode starts without one */
    }
    if (in->has_override) {
        dlq_queue_set_class(q, t, (policy_category)t->category, in->override);
        t->policy_override = true;
    } else {
        dlq_default_policy(m, t);
    }
    t->updated_at = now;
    m->ports.changed(m->ports.ctx, t);
    dlq_queue_history(q, t, DLQ_OUT_FAILED, t->retry_count, now, t->error, strlen(t->error));
}

/* A new task or a new episode: scheduled, or parked when its retry subject was refused. */
static void
enqueued(struct dlq_machine *m, struct intake *in, struct dlq_task *t, int64_t now)
{
    m->c.enqueued++;
    if (!in->rs_ok) {
        dlq_queue_set_status(&m->q, t, DLQ_TASK_PENDING, true);
        dlq_set_str(&t->park_reason, in->why, strlen(in->why));
        dlq_queue_history(&m->q, t, DLQ_OUT_REFUSED, 0, now, in->why, strlen(in->why));
        t->next_retry_at = 0;
        dlq_log(m, DLQ_LOG_INFO, "task parked", "task_id", t->id, "reason", in->why, NULL);
    } else {
        dlq_schedule_next(m, t, now);
    }
    dlq_log(m, DLQ_LOG_INFO, "task enqueued", "task_id", t->id, "subject", t->subject, "category",
            policy_category_name(t->category), "policy", policy_retry_name(t->policy), "status",
            t->parked ? "parked" : dlq_task_status_name(t->status), "episode",
            dlq_int(m, t->episode), NULL);
    m->ports.event(m->ports.ctx, "enqueued", t, 0, NULL);
}

/* A repeat failure of a known task: what it changes depends on t's status. */
static void
repeated(struct dlq_machine *m, struct intake *in, struct dlq_task *t, int64_t now)
{
    if (t->status == DLQ_TASK_RETRYING) {
        /* DESIGN section 6: a new failure while retrying fails the current attempt. */
        m->c.failures_while_retrying++;
        dlq_attempt_failed(m, t, DLQ_OUT_RETRY_FAILED, t->error, strlen(t->error), now);
    } else if (t->status == DLQ_TASK_PENDING && dlq_task_held(t) && in->rs_ok) {
        /* Held by its dependencies: it stays held; its record was updated. */
    } else if (t->status == DLQ_TASK_PENDING) {
        /* Keep the schedule unless the new envelope changed what it rests on (budget included). */
        bool keep = !t->parked && in->rs_ok && t->policy != POLICY_NEVER &&
                    t->retry_count < t->max_retries && dlq_wheel_entry_scheduled(&t->timer);
        if (!in->rs_ok) {
            dlq_park(m, t, in->why, strlen(in->why)); /* a held task stops waiting */
        } else if (!keep) {
            dlq_schedule_next(m, t, now);
        }
    }
    /* An exhausted task only has its record updated. */
}

/*
 * Gives t the envelope's depends_on (issue 17; a repeat without one keeps
 * t's) and judges it: a dependency exhausted or archived parks t, one
 * pending, parked or retrying holds it, completed or unknown satisfies. A
 * task not pending, or parked, only keeps the list.
 */
static void
apply_deps(struct dlq_machine *m, struct dlq_task *t, const struct codec_envelope *env,
           int64_t now)
{
    struct dlq_deps *d;
    const char *kind = NULL;
    uint32_t failed = 0;
    int worst = 0;

    if (env->depends_n) {
        dlq_deps_unhold(m, t);
        dlq_task_set_deps(t, dlq_deps_new(env->depends_on, env->depends_n));
    } else if (dlq_task_held(t) || !dlq_task_deps(t)) {
        return; /* a repeat without a list: a held task stays held */
    }
    d = dlq_task_deps(t);
    if (t->status != DLQ_TASK_PENDING || t->parked)
        return;
    for (uint32_t i = 0; i < d->n && worst >= 0; i++) {
        const char *k = NULL;
        int s = dlq_deps_state(m, d->e[i].id, d->e[i].len, &k);
        if (s < 0) {
            worst = -1;
            kind = k;
            failed = i;
        } else if (s > 0) {
            d->e[i].waiting = true;
            d->waiting++;
            worst = 1;
        }
    }
    if (worst < 0) {
        for (uint32_t i = 0; i < d->n; i++)
            d->e[i].waiting = false;
        d->waiting = 0;
        dlq_deps_park(m, t, d->e[failed].id, kind, now);
    } else if (worst > 0) {
        dlq_deps_hold(m, t);
    }
}

void
dlq_ingest(struct dlq_machine *m, const struct dlq_failure *f, int64_t now_wall, int64_t now_mono,
           struct dlq_decision *out)
{
    struct intake in;
    struct dlq_task *t;
    bool fresh = false, reopened = false;
    uint32_t h;

    /* Everything before the text buffers (written before they are read: 1.5 KB a failure) starts zeroed. */
    memset(out, 0, offsetof(struct dlq_decision, why));
    out->why[0] = '\0';
    memset(&in, 0, offsetof(struct intake, rs));
    in.rs[0] = '\0';
    in.why[0] = '\0';
    in.f = f;
    in.env = f->env;
    in.subject_len = strlen(f->subject);
    m->now_mono = now_mono;
    if (!check_envelope(m, &in, out))
        return;
    /* One hash of the id for the lookup and the insert (the source may have worked it out). */
    h = f->has_id_hash ? f->id_hash : dlq_queue_id_hash(in.env->task_id.ptr, in.env->task_id.len);
    t = dlq_queue_find_hashed(&m->q, in.env->task_id.ptr, in.env->task_id.len, h);
    if (t && ((f->stream_seq && f->stream_seq <= t->stream_seq) ||
              (f->adv_seq && f->adv_seq <= dlq_task_adv_seq(t)))) {
        m->c.redelivered++;
        out->verdict = DLQ_IN_REDELIVERED;
        out->task = t;
        out->status = dlq_task_status_name(t->status);
        out->next_retry_at = t->next_retry_at;
        return;
    }
    resolve_retry_subject(m, &in);
    if (!admit(m, &in, out))
        return;
    reopened = t && (t->status == DLQ_TASK_COMPLETED || t->status == DLQ_TASK_ARCHIVED);
    if (!dlq_deps_admit(m, in.env, out))
        return;
    if (!room_for(m, &in, t, reopened, out))
        return;
    if (!t) {
        t = dlq_queue_add_hashed(&m->q, in.env->task_id.ptr, in.env->task_id.len, h,
                                 in.env->task.len, now_wall);
        fresh = true;
    } else if (reopened) {
        reopen(m, t, now_wall);
    } else {
        m->c.duplicates++; /* a reopened episode counts as enqueued, not as a duplicate */
    }
    if ((fresh || reopened) && f->stream_time_us > 0) {
        /* The failure's own time in the stream: the same episode id wherever it is taken. */
        t->episode_id = f->stream_time_us;
        dlq_queue_episode_seen(&m->q, t->episode_id);
    }
    fill_task(m, &in, t, fresh, reopened, now_wall);
    if (f->stream_seq > t->stream_seq)
        t->stream_seq = f->stream_seq;
    if (f->adv_seq > dlq_task_adv_seq(t))
        dlq_task_set_adv_seq(t, f->adv_seq);
    if (fresh || reopened)
        enqueued(m, &in, t, now_wall);
    else
        repeated(m, &in, t, now_wall);
    if (fresh || reopened) /* a new episode starts without the last one's dependencies */
        dlq_task_set_deps(t, NULL);
    apply_deps(m, t, in.env, now_wall);
    out->verdict = DLQ_IN_STORED;
    out->task = t;
    out->status = dlq_task_status_name(t->status);
    out->next_retry_at = t->next_retry_at;
}

void
dlq_ingest_foreign(struct dlq_machine *m, const struct dlq_foreign *x, int64_t now_wall,
                   int64_t now_mono, struct dlq_decision *out)
{
    struct codec_envelope env;
    struct dlq_failure f;

    memset(&env, 0, sizeof(env));
    memset(&f, 0, sizeof(f));
    env.task_id.ptr = x->id;
    env.task_id.len = x->id_len;
    env.task.ptr = x->payload_missing ? "" : x->payload;
    env.task.len = x->payload_missing || !x->payload ? 0 : x->payload_len;
    if (!env.task.ptr)
        env.task.ptr = "";
    env.error.ptr = x->error ? x->error : "";
    env.error.len = strlen(env.error.ptr);
    env.error_type.ptr = x->error_type;
    env.error_type.len = x->error_type ? strlen(x->error_type) : 0;
    env.retry_subject.ptr = x->retry_subject;
    env.retry_subject.len = x->retry_subject ? strlen(x->retry_subject) : 0;
    f.env = &env;
    f.subject = x->subject;
    f.service = "jetstream";
    f.max_payload = x->max_payload;
    f.adv_seq = x->seq;
    f.payload_raw = true;
    f.payload_missing = x->payload_missing || !x->retry_subject;
    f.missing_why = x->missing_why;
    f.headers = x->headers_len ? x->headers : NULL;
    f.headers_len = f.headers ? x->headers_len : 0;
    m->c.advisories++;
    dlq_ingest(m, &f, now_wall, now_mono, out);
    if (out->verdict == DLQ_IN_STORED && f.payload_missing) {
        m->c.payload_missing++;
        m->ports.event(m->ports.ctx, "payload_missing", out->task, 0, out->task->park_reason);
        /* One line per 10 s at most: forged advisories pointing nowhere must not flood the log. */
        if (m->missing_log_mono == 0 || now_mono - m->missing_log_mono >= 10000) {
            dlq_log(m, DLQ_LOG_WARN,
                    "advisory filed without its original message (payload_missing; one line per 10 s)",
                    "task_id", out->task->id, "reason", out->task->park_reason, "payload_missing_total",
                    dlq_int(m, (int64_t)m->c.payload_missing), NULL);
            m->missing_log_mono = now_mono;
        }
    }
}
