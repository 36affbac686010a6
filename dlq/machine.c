/* machine.c - the one state machine of DESIGN section 10: every status change of a task happens here. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq-internal.h"

#define DEFER_FLOOR_MS 100
#define DEFER_CAP_MS 60000

/* ---- helpers: log lines, the wheels, the in-flight slots --------------------------------------- */

void
dlq_log(struct dlq_machine *m, dlq_log_level level, const char *msg, ...)
{
    const char *kv[DLQ_LOG_KV_MAX + 1];
    size_t n = 0;
    const char *k;
    va_list ap;

    if (!m->ports.log_enabled(m->ports.ctx, level))
        return;
    va_start(ap, msg);
    while (n + 2 <= DLQ_LOG_KV_MAX && (k = va_arg(ap, const char *)) != NULL) {
        kv[n++] = k;
        kv[n++] = va_arg(ap, const char *);
    }
    va_end(ap);
    kv[n] = NULL;
    m->ports.log(m->ports.ctx, level, msg, kv);
}

const char *
dlq_int(struct dlq_machine *m, int64_t v)
{
    char *s = m->ints[m->next_int++ % 8];

    sc_format_i64(v, s);
    return s;
}

/* The wheel that holds t's timer: timeouts while retrying, due times otherwise. */
static struct dlq_wheel *
wheel_of(struct dlq_machine *m, const struct dlq_task *t)
{
    return t->status == DLQ_TASK_RETRYING ? m->twheel : m->wheels[t->priority % POLICY_PRIO_COUNT];
}

static void
timer_cancel(struct dlq_machine *m, struct dlq_task *t)
{
    if (dlq_wheel_entry_scheduled(&t->timer))
        dlq_wheel_cancel(wheel_of(m, t), &t->timer);
}

/* Drops t's in-flight slot (late replies are then ignored). */
static void
flight_release(struct dlq_machine *m, struct dlq_task *t)
{
    struct dlq_flight *f;

    if (!t->flight_slot)
        return;
    f = &m->flights[t->flight_slot - 1];
    f->task = NULL;
    f->next_free = m->free_head;
    m->free_head = t->flight_slot;
    m->inflight--;
    t->flight_slot = 0;
}

static uint32_t
flight_take(struct dlq_machine *m, struct dlq_task *t)
{
    uint32_t idx;

    if (m->free_head) {
        idx = m->free_head - 1;
        m->free_head = m->flights[idx].next_free;
    } else {
        if (m->flights_used == m->flights_cap) {
            uint32_t ncap = m->flights_cap ? m->flights_cap * 2 : 64;
            m->flights = sc_xrealloc(m->flights, ncap * sizeof(*m->flights));
            memset(m->flights + m->flights_cap, 0, (ncap - m->flights_cap) * sizeof(*m->flights));
            m->flights_cap = ncap;
        }
        idx = m->flights_used++;
    }
    m->flights[idx].task = t;
    m->flights[idx].token = m->ports.token(m->ports.ctx);
    m->flights[idx].next_free = 0;
    m->inflight++;
    t->flight_slot = idx + 1;
    return idx;
}

/* Leaves whatever t waited for: its timer and its in-flight slot. */
static void
detach(struct dlq_machine *m, struct dlq_task *t)
{
    timer_cancel(m, t);
    flight_release(m, t);
}

void
dlq_changed(struct dlq_machine *m, struct dlq_task *t)
{
    m->ports.changed(m->ports.ctx, t);
}

void
dlq_drop(struct dlq_machine *m, struct dlq_task *t)
{
    detach(m, t);
    dlq_deps_unhold(m, t);
    m->ports.removed(m->ports.ctx, t);
    dlq_queue_remove(&m->q, t);
}

/* ---- the circuit breaker's port ---------------------------------------------------------------- */

static void schedule_in(struct dlq_machine *m, struct dlq_task *t, int64_t delay_ms, int64_t now_wall);

/*
 * Tells the breaker how t's attempt ended; when its circuit closed on it,
 * the tasks the circuit held for t's retry subject are due now (the rate
 * and in-flight limits pace them). One walk of the queue per close.
 */
static void
verdict(struct dlq_machine *m, struct dlq_task *t, dlq_attempt_end v, int64_t now_wall)
{
    const char *subject = t->retry_subject;

    if (!m->ports.verdict || !subject || !m->ports.verdict(m->ports.ctx, t, v, m->now_mono))
        return;
    for (struct dlq_task *h = dlq_queue_first(&m->q); h; h = dlq_queue_next(&m->q, h)) {
        if (!h->circuit_held || h == t || !h->retry_subject || strcmp(h->retry_subject, subject) != 0)
            continue;
        h->circuit_held = false;
        if (h->status == DLQ_TASK_PENDING && !h->parked)
            schedule_in(m, h, 0, now_wall);
    }
}

/* ---- pending: parked, scheduled, exhausted ------------------------------------------------------ */

void
dlq_park(struct dlq_machine *m, struct dlq_task *t, const char *why, size_t len)
{
    detach(m, t);
    dlq_deps_unhold(m, t); /* parked: no longer waiting (an operator's retry sends it) */
    dlq_queue_set_status(&m->q, t, DLQ_TASK_PENDING, true);
    t->next_retry_at = 0;
    if (why)
        dlq_set_str(&t->park_reason, why, len);
    m->ports.changed(m->ports.ctx, t);
}

/*
 * Files t in the due wheel delay_ms from now and records its wall-clock
 * time; a task held by its dependencies only records the time (it is
 * scheduled from there once released).
 */
static void
schedule_in(struct dlq_machine *m, struct dlq_task *t, int64_t delay_ms, int64_t now_wall)
{
    detach(m, t); /* leaving retrying always frees the in-flight slot */
    t->circuit_held = false; /* rescheduled by the machine: no longer the circuit's to release */
    if (t->status != DLQ_TASK_PENDING || t->parked)
        dlq_queue_set_status(&m->q, t, DLQ_TASK_PENDING, false);
    t->next_retry_at = now_wall + delay_ms;
    if (dlq_task_held(t)) {
        m->ports.changed(m->ports.ctx, t);
        return;
    }
    dlq_wheel_schedule(m->wheels[t->priority % POLICY_PRIO_COUNT], &t->timer, m->now_mono + delay_ms);
    m->ports.changed(m->ports.ctx, t);
}

static void
exhaust(struct dlq_machine *m, struct dlq_task *t, int64_t now_wall)
{
    detach(m, t);
    dlq_deps_unhold(m, t);
    dlq_queue_set_status(&m->q, t, DLQ_TASK_EXHAUSTED, false);
    t->next_retry_at = 0;
    m->ports.changed(m->ports.ctx, t);
    m->c.exhausted++;
    dlq_effect_exhausted(&m->effect, t);
    dlq_queue_history(&m->q, t, DLQ_OUT_EXHAUSTED, t->retry_count, now_wall, NULL, 0);
    dlq_log(m, DLQ_LOG_INFO, "task exhausted", "task_id", t->id, "attempts",
            dlq_int(m, t->retry_count), "category", policy_category_name(t->category), NULL);
    m->ports.event(m->ports.ctx, "exhausted", t, t->retry_count, NULL);
    dlq_deps_done(m, t, "exhausted", now_wall);
}

const char *
dlq_task_delays(const struct config *cfg, const struct dlq_task *t, struct policy_delays *out)
{
    const char *own = dlq_task_backoff(t);

    if (own && policy_delays_parse(own, strlen(own), out, NULL, 0) == SC_OK)
        return "task";
    return config_delays_for(cfg, t->subject, t->subject ? strlen(t->subject) : 0,
                             (policy_category)t->category, out);
}

void
dlq_schedule_next(struct dlq_machine *m, struct dlq_task *t, int64_t now_wall)
{
    struct policy_delays dl;
    int64_t delay;

    if (!t->retry_subject) {
        dlq_park(m, t, t->park_reason ? NULL : "retry_subject refused", 21);
        return;
    }
    if (t->retry_count >= t->max_retries) {
        exhaust(m, t, now_wall);
        return;
    }
    if (t->policy == POLICY_NEVER) {
        char why[160];
        int n = snprintf(why, sizeof(why),
                         "retry policy never (category %s): not retried automatically; "
                         "dlq.admin.retry sends it",
                         policy_category_name(t->category));
        dlq_park(m, t, why, (size_t)n < sizeof(why) ? (size_t)n : sizeof(why) - 1);
        return;
    }
    if (dlq_task_delays(m->cfg, t, &dl))
        delay = policy_delays_delay(&dl, (int64_t)t->retry_count + 1, m->cfg->backoff.jitter,
                                    m->ports.rand, m->ports.ctx);
    else
        delay = policy_backoff_delay(&m->cfg->backoff, t->policy, (int64_t)t->retry_count + 1,
                                     m->ports.rand, m->ports.ctx);
    if (delay < 0)
        delay = 0;
    schedule_in(m, t, delay, now_wall);
}

/* No responders (or a publish that could not be buffered): not an attempt; back off and try again. */
static void
defer(struct dlq_machine *m, struct dlq_task *t, const char *why, int64_t now)
{
    struct policy_delays dl;
    int64_t base = dlq_task_delays(m->cfg, t, &dl)
                       ? policy_delays_raw(&dl, (int64_t)t->retry_count + 1)
                       : policy_backoff_raw(&m->cfg->backoff, t->policy, (int64_t)t->retry_count + 1);
    int64_t cap = m->cfg->backoff.max_delay_ms < DEFER_CAP_MS ? m->cfg->backoff.max_delay_ms
                                                              : DEFER_CAP_MS;
    int64_t delay;
    int shift;

    detach(m, t);
    verdict(m, t, DLQ_END_NONE, now); /* no answer on the subject's health */
    if (base < DEFER_FLOOR_MS)
        base = DEFER_FLOOR_MS;
    t->defer_streak++;
    shift = t->defer_streak - 1 < 20 ? t->defer_streak - 1 : 20;
    delay = base > (cap >> shift) ? cap : base << shift;
    if (delay > cap)
        delay = cap;
    if (m->cfg->backoff.jitter > 0) {
        double f = (double)(m->ports.rand(m->ports.ctx) >> 11) / 9007199254740992.0; /* [0,1) */
        delay += (int64_t)((double)delay * m->cfg->backoff.jitter * (2 * f - 1));
        if (delay < 0)
            delay = 0;
    }
    m->c.deferred++;
    t->updated_at = now;
    m->ports.changed(m->ports.ctx, t);
    dlq_queue_set_status(&m->q, t, DLQ_TASK_PENDING, false);
    schedule_in(m, t, delay, now);
    dlq_log(m, DLQ_LOG_DEBUG, "retry deferred", "task_id", t->id, "reason", why, "delay_ms",
            dlq_int(m, delay), NULL);
    if (t->defer_streak == 1 || t->defer_streak % 10 == 0)
        dlq_queue_history(&m->q, t, DLQ_OUT_DEFERRED, t->retry_count + 1, now, why, strlen(why));
    m->ports.event(m->ports.ctx, "deferred", t, t->retry_count + 1, why);
}

/* ---- outcomes of the attempt in flight --------------------------------------------------------- */

static void
succeeded(struct dlq_machine *m, struct dlq_task *t, int64_t now)
{
    int32_t attempt = t->retry_count + 1;

    detach(m, t);
    dlq_deps_unhold(m, t); /* a held task settled by a handed-back reply (sidecar/handback.c) */
    m->c.retry_success++;
    t->defer_streak = 0;
    m->ports.observe(m->ports.ctx, DLQ_HIST_TIME_TO_SUCCESS, now - t->first_failed_at);
    dlq_effect_succeeded(&m->effect, t, attempt, now - t->first_failed_at);
    verdict(m, t, DLQ_END_OK, now);
    dlq_log(m, DLQ_LOG_INFO, "retry succeeded", "task_id", t->id, "attempt", dlq_int(m, attempt),
            NULL);
    dlq_queue_history(&m->q, t, DLQ_OUT_SUCCEEDED, attempt, now, NULL, 0);
    dlq_queue_set_status(&m->q, t, DLQ_TASK_COMPLETED, false);
    t->next_retry_at = 0;
    t->updated_at = now;
    m->ports.changed(m->ports.ctx, t);
    m->ports.event(m->ports.ctx, "succeeded", t, attempt, "");
    dlq_deps_done(m, t, "completed", now);
    if (!m->cfg->store_keep_completed)
        dlq_drop(m, t);
}

/* task_classify() classifies t again from its error fields and sets its category and classifier rule (the policy is left). */
static void
task_classify(struct dlq_machine *m, struct dlq_task *t)
{
    const char *rule = "default";
    policy_category c;

    c = policy_classify(m->classifier, t->error_type, t->error_type ? strlen(t->error_type) : 0,
                        t->error, t->error ? strlen(t->error) : 0, &rule);
    dlq_queue_set_class(&m->q, t, c, (policy_retry)t->policy);
    dlq_task_set_str(&m->q, t, DLQ_TS_RULE, rule, strlen(rule));
}

/* Sets t's policy from the configured default or its category, unless the envelope chose it. */
void
dlq_default_policy(struct dlq_machine *m, struct dlq_task *t)
{
    if (t->policy_override)
        return;
    dlq_queue_set_class(&m->q, t, (policy_category)t->category,
                       m->cfg->has_default_retry_policy
                           ? m->cfg->default_retry_policy
                           : policy_default_retry((policy_category)t->category));
}

void
dlq_attempt_failed(struct dlq_machine *m, struct dlq_task *t, dlq_outcome_kind kind,
                   const char *error, size_t error_len, int64_t now)
{
    int32_t attempt = t->retry_count + 1;

    detach(m, t);
    dlq_queue_set_status(&m->q, t, DLQ_TASK_PENDING, false);
    t->retry_count++;
    t->defer_streak = 0;
    if (kind == DLQ_OUT_TIMEOUT)
        m->c.retry_timeouts++;
    m->c.retry_failed++;
    verdict(m, t, DLQ_END_FAILED, now);
    if (error && error != t->error)
        dlq_task_set_str(&m->q, t, DLQ_TS_ERROR, error, error_len);
    if (kind == DLQ_OUT_TIMEOUT) {
        dlq_queue_set_class(&m->q, t, POLICY_CAT_NETWORK, (policy_retry)t->policy);
        dlq_task_set_str(&m->q, t, DLQ_TS_RULE, "timeout", 7);
    } else {
        task_classify(m, t);
    }
    dlq_default_policy(m, t);
    t->updated_at = now;
    m->ports.changed(m->ports.ctx, t);
    dlq_queue_history(&m->q, t, kind, attempt, now, t->error, strlen(t->error));
    dlq_log(m, DLQ_LOG_INFO, "retry failed", "task_id", t->id, "attempt", dlq_int(m, attempt),
            "outcome", dlq_outcome_name(kind), "error", t->error, NULL);
    m->ports.event(m->ports.ctx, "failed", t, attempt, NULL);
    dlq_schedule_next(m, t, now);
}

void
dlq_machine_succeeded(struct dlq_machine *m, struct dlq_task *t, int64_t now_wall, int64_t now_mono)
{
    m->now_mono = now_mono;
    succeeded(m, t, now_wall);
}

void
dlq_machine_reply_failed(struct dlq_machine *m, struct dlq_task *t, const char *error, size_t len,
                         const char *error_type, size_t etlen, int64_t now_wall, int64_t now_mono)
{
    m->now_mono = now_mono;
    dlq_deps_unhold(m, t); /* an attempt's outcome ends a wait (a handed-back reply to a held task) */
    /* Classify the reply's error alone: the envelope's old error_type no longer applies. */
    dlq_task_set_str(&m->q, t, DLQ_TS_ERROR_TYPE, error_type, etlen);
    dlq_attempt_failed(m, t, DLQ_OUT_RETRY_FAILED, error ? error : "", error ? len : 0, now_wall);
}

void
dlq_machine_deferred(struct dlq_machine *m, struct dlq_task *t, const char *why, int64_t now_wall,
                     int64_t now_mono)
{
    m->now_mono = now_mono;
    defer(m, t, why, now_wall);
}

/* ---- publishing an attempt --------------------------------------------------------------------- */

/*
 * Whether retries to subject end with a JetStream PubAck (DESIGN section 6):
 * retry.outcome stored, or the subject matches retry.stored_subjects.
 */
static bool
outcome_stored(const struct config *cfg, const char *subject)
{
    if (cfg->retry_outcome == CONFIG_OUTCOME_STORED)
        return true;
    for (size_t i = 0; i < cfg->retry_stored_count; i++)
        if (codec_subject_match(cfg->retry_stored_subjects[i], subject, strlen(subject)))
            return true;
    return false;
}

/* The publish did not fit the server's max_payload and never will: park t, do not loop. */
static void
park_too_big(struct dlq_machine *m, struct dlq_task *t, int32_t attempt, int64_t now)
{
    static const char why[] = "retry refused: the task does not fit the server's max_payload";

    dlq_park(m, t, why, sizeof(why) - 1);
    verdict(m, t, DLQ_END_NONE, now);
    dlq_queue_history(&m->q, t, DLQ_OUT_REFUSED, attempt, now, t->park_reason, strlen(t->park_reason));
    dlq_log(m, DLQ_LOG_WARN, "task parked", "task_id", t->id, "reason", t->park_reason, NULL);
}

/*
 * Writes "<prefix>.<idx>.<token as 16 hex digits>" into out (size bytes),
 * as snprintf would (cut to fit), without its cost: once per retry.
 */
static void
reply_subject(char *out, size_t size, const char *prefix, uint32_t idx, uint64_t token)
{
    static const char hex[] = "0123456789abcdef";
    size_t plen = strlen(prefix), n;
    char num[SC_INT_LEN];

    n = sc_format_int(idx, false, num);
    if (plen + 1 + n + 1 + 16 + 1 > size) {
        snprintf(out, size, "%s.%u.%016llx", prefix, idx, (unsigned long long)token);
        return;
    }
    memcpy(out, prefix, plen);
    out[plen] = '.';
    memcpy(out + plen + 1, num, n);
    out += plen + 1 + n;
    *out++ = '.';
    for (int i = 15; i >= 0; i--, token >>= 4)
        out[i] = hex[token & 15];
    out[16] = '\0';
}

/* Publishes the next attempt of t (DESIGN section 5). */
static void
dispatch(struct dlq_machine *m, struct dlq_task *t, int64_t now)
{
    struct dlq_retry_hdrs h;
    char reply[128];
    bool stored = t->retry_subject && outcome_stored(m->cfg, t->retry_subject);
    bool want_reply = stored || m->cfg->retry_outcome == CONFIG_OUTCOME_REPLY;
    int32_t a = t->retry_count + 1;
    uint64_t epoch = 0;
    uint32_t idx;
    dlq_pub_result ps;

    if (!t->retry_subject) {
        dlq_park(m, t, NULL, 0);
        return;
    }
    /* While disconnected a publish would sit in the transport's buffer; defer instead (not an attempt). */
    if (!m->ports.connected(m->ports.ctx, &epoch)) {
        defer(m, t, "nats disconnected", now);
        return;
    }
    idx = flight_take(m, t);
    m->flights[idx].epoch = epoch;
    m->flights[idx].attempt = a;
    m->flights[idx].sent_mono = m->now_mono;
    m->flights[idx].stored = stored;
    dlq_retry_headers(&h, t->id, t->id_len, a, t->max_retries, (policy_category)t->category,
                     t->subject, t->first_failed_at, t->episode_id);
    {
        size_t hlen;
        const char *hdrs = dlq_task_headers(t, &hlen);
        dlq_retry_headers_extra(&h, hdrs, hlen); /* an advisory's original headers */
    }
    reply_subject(reply, sizeof(reply), m->reply_prefix, idx, m->flights[idx].token);

    ps = m->ports.publish(m->ports.ctx, t->retry_subject, want_reply ? reply : NULL, t->payload,
                          t->payload_len, h.kv);
    if (ps == DLQ_PUB_TOOBIG) {
        park_too_big(m, t, a, now);
        return;
    }
    if (ps != DLQ_PUB_OK) {
        defer(m, t, "publish failed", now);
        return;
    }
    dlq_queue_set_status(&m->q, t, DLQ_TASK_RETRYING, false);
    t->circuit_held = false;
    t->last_attempt_at = now;
    m->ports.observe(m->ports.ctx, DLQ_HIST_RETRY_LATENESS,
                     t->next_retry_at ? now - t->next_retry_at : 0);
    t->next_retry_at = 0;
    t->updated_at = now;
    m->ports.changed(m->ports.ctx, t);
    m->c.attempts++;
    m->c.dispatched[t->priority % POLICY_PRIO_COUNT]++;
    dlq_wheel_schedule(m->twheel, &t->timer, m->now_mono + m->cfg->retry_timeout_ms);
    dlq_log(m, DLQ_LOG_DEBUG, "retry published", "task_id", t->id, "attempt", h.attempt,
            "subject", t->retry_subject, NULL);
    m->ports.event(m->ports.ctx, "retried", t, a, "");
}

/* ---- the wheels -------------------------------------------------------------------------------- */

struct run_ctx {
    struct dlq_machine *m;
    int64_t now_wall;
    size_t held; /* due tasks an open circuit held: they spend no rate token */
};

static void
on_due(struct dlq_wheel_entry *e, void *ctx)
{
    struct run_ctx *rc = ctx;
    struct dlq_task *t = SC_LIST_ENTRY(e, struct dlq_task, timer);

    if (t->status != DLQ_TASK_PENDING || t->parked || dlq_task_held(t))
        return; /* held (depends_on): scheduled again when its wait ends, never sent before */
    if (t->retry_count >= t->max_retries) {
        dlq_schedule_next(rc->m, t, rc->now_wall); /* the budget shrank while it waited: exhausted */
        return;
    }
    if (!rc->m->ports.may_dispatch(rc->m->ports.ctx, t)) {
        /* Cluster mode: no valid lease on its partition right now. Held, unchanged. */
        dlq_wheel_schedule(rc->m->wheels[t->priority % POLICY_PRIO_COUNT], &t->timer,
                           rc->m->now_mono + DLQ_HOLD_MS);
        return;
    }
    if (rc->m->ports.gate && t->retry_subject) {
        /* The retry subject's circuit is open (or its probe is out): held, not charged. */
        int64_t until = rc->m->ports.gate(rc->m->ports.ctx, t, rc->m->now_mono);
        if (until) {
            struct dlq_machine *m = rc->m;
            int64_t wait = until > m->now_mono ? until - m->now_mono : 0;
            t->circuit_held = true;
            t->next_retry_at = rc->now_wall + wait;
            dlq_wheel_schedule(m->wheels[t->priority % POLICY_PRIO_COUNT], &t->timer, m->now_mono + wait);
            m->ports.changed(m->ports.ctx, t);
            rc->held++;
            return;
        }
    }
    dispatch(rc->m, t, rc->now_wall);
}

static void
on_timeout(struct dlq_wheel_entry *e, void *ctx)
{
    struct run_ctx *rc = ctx;
    struct dlq_machine *m = rc->m;
    struct dlq_task *t = SC_LIST_ENTRY(e, struct dlq_task, timer);
    uint64_t epoch = 0;

    if (t->status != DLQ_TASK_RETRYING)
        return;
    m->ports.connected(m->ports.ctx, &epoch);
    /* The connection dropped after the retry went out: it may never have reached a worker. */
    if (t->flight_slot && m->flights[t->flight_slot - 1].epoch != epoch) {
        defer(m, t, "nats connection lost while the retry was out", rc->now_wall);
        return;
    }
    if (m->cfg->retry_outcome == CONFIG_OUTCOME_NONE &&
        !(t->flight_slot && m->flights[t->flight_slot - 1].stored)) {
        succeeded(m, t, rc->now_wall);
        return;
    }
    dlq_task_set_str(&m->q, t, DLQ_TS_ERROR_TYPE, NULL, 0); /* the old type no longer applies */
    dlq_attempt_failed(m, t, DLQ_OUT_TIMEOUT, "retry timed out", 15, rc->now_wall);
}

/*
 * Fires up to budget due tasks from the priority wheels. While only one
 * wheel has due tasks it fires alone. Otherwise each retry goes to the
 * wheel picked by a smooth weighted round robin of policy_priority_weights
 * (6:3:1) among the wheels with due tasks: every pick adds each such
 * wheel's weight to its credit, the largest credit wins and gives back the
 * sum. Ten retries out of a backlog of all three go 6 high, 3 normal, 1
 * low, interleaved, so no level waits behind another's backlog. A wheel
 * with nothing due keeps no credit. Returns how many fired.
 */
static size_t
run_due_wheels(struct dlq_machine *m, int64_t now_mono, size_t budget, struct run_ctx *rc)
{
    bool due[POLICY_PRIO_COUNT];
    size_t fired = 0;
    int ndue = 0, only = 0;

    for (int p = 0; p < POLICY_PRIO_COUNT; p++) {
        due[p] = dlq_wheel_next_due(m->wheels[p]) <= now_mono;
        if (due[p]) {
            ndue++;
            only = p;
        } else {
            m->credit[p] = 0;
        }
    }
    while (fired < budget && ndue > 0) {
        int64_t total = 0;
        int pick = -1;
        size_t f;

        if (ndue == 1)
            return fired + dlq_wheel_run(m->wheels[only], now_mono, budget - fired, on_due, rc);
        for (int p = 0; p < POLICY_PRIO_COUNT; p++) {
            if (!due[p])
                continue;
            m->credit[p] += policy_priority_weights[p];
            total += policy_priority_weights[p];
            if (pick < 0 || m->credit[p] > m->credit[pick])
                pick = p;
        }
        f = dlq_wheel_run(m->wheels[pick], now_mono, 1, on_due, rc);
        if (f == 0) { /* nothing due after all (a cancelled entry): undo this round's credit */
            for (int p = 0; p < POLICY_PRIO_COUNT; p++)
                if (due[p])
                    m->credit[p] -= policy_priority_weights[p];
            due[pick] = false;
            m->credit[pick] = 0;
            ndue--;
            for (int p = 0; p < POLICY_PRIO_COUNT; p++)
                if (due[p])
                    only = p;
            continue;
        }
        m->credit[pick] -= total;
        fired += f;
    }
    return fired;
}

/* ---- retention ---------------------------------------------------------------------------------- */

/* Index of the retention limits: exhausted, completed, archived (config_retention_parse()'s order). */
static int
retention_slot(dlq_task_status st)
{
    switch (st) {
    case DLQ_TASK_EXHAUSTED: return 0;
    case DLQ_TASK_COMPLETED: return 1;
    case DLQ_TASK_ARCHIVED: return 2;
    default: return -1;
    }
}

/* Fills lim[slot][category] (ms; 0: kept) from retention.*; false when nothing expires. */
static bool
retention_limits(const struct config *cfg, int64_t lim[3][POLICY_CAT_COUNT])
{
    int64_t base[3] = {cfg->retention_exhausted_s, cfg->retention_completed_s,
                       cfg->retention_archived_s};
    bool any = false;

    for (int s = 0; s < 3; s++) {
        for (int c = 0; c < POLICY_CAT_COUNT; c++)
            lim[s][c] = base[s] * 1000;
    }
    for (size_t i = 0; i < cfg->retention_category_count; i++) {
        const char *e = cfg->retention_categories[i];
        int c, s;
        int64_t secs;
        if (config_retention_parse(e, strlen(e), &c, &s, &secs) == SC_OK)
            lim[s][c] = secs * 1000;
    }
    for (int s = 0; s < 3; s++) {
        for (int c = 0; c < POLICY_CAT_COUNT; c++)
            any |= lim[s][c] > 0;
    }
    return any;
}

/*
 * One sweep: every task held (held by a lease, in cluster mode) whose
 * status has a retention and whose last change is older than it. An
 * exhausted task is archived (removed at once without store.keep_completed,
 * as an operator's archive); a completed or archived one is removed (only
 * kept ones exist). Each evented "expired" with the reason in "error".
 */
static void
expire(struct dlq_machine *m, int64_t now_wall)
{
    int64_t lim[3][POLICY_CAT_COUNT];
    struct dlq_task *t, *next;
    char why[128];

    if (!retention_limits(m->cfg, lim))
        return;
    for (t = dlq_queue_first(&m->q); t; t = next) {
        int slot = retention_slot((dlq_task_status)t->status);
        int64_t keep;
        next = dlq_queue_next(&m->q, t);
        if (slot < 0)
            continue;
        keep = lim[slot][t->category];
        if (keep <= 0 || now_wall - t->updated_at <= keep || !m->ports.may_dispatch(m->ports.ctx, t))
            continue;
        if (slot == 0) {
            snprintf(why, sizeof(why), "retention: exhausted for more than %lld s; archived",
                     (long long)(keep / 1000));
            detach(m, t);
            dlq_queue_set_status(&m->q, t, DLQ_TASK_ARCHIVED, false);
            t->next_retry_at = 0;
            t->updated_at = now_wall;
            m->ports.changed(m->ports.ctx, t);
            dlq_queue_history(&m->q, t, DLQ_OUT_ARCHIVED, t->retry_count, now_wall, NULL, 0);
            m->c.expired_archived++;
            m->ports.event(m->ports.ctx, "expired", t, t->retry_count, why);
            dlq_log(m, DLQ_LOG_INFO, "task archived by retention", "task_id", t->id, NULL);
            if (!m->cfg->store_keep_completed)
                dlq_drop(m, t);
            continue;
        }
        snprintf(why, sizeof(why), "retention: %s for more than %lld s; removed",
                 dlq_task_status_name((dlq_task_status)t->status), (long long)(keep / 1000));
        m->c.expired_removed++;
        m->ports.event(m->ports.ctx, "expired", t, t->retry_count, why);
        dlq_log(m, DLQ_LOG_INFO, "task removed by retention", "task_id", t->id, NULL);
        dlq_drop(m, t);
    }
}

void
dlq_machine_run(struct dlq_machine *m, int64_t now_wall, int64_t now_mono, bool run_due)
{
    struct run_ctx rc = {m, now_wall, 0};
    int64_t rate = m->cfg->retry_max_per_second;
    double cap = (double)rate * (double)m->cfg->timer_tick_ms / 1000.0 * 2;
    size_t budget, room, fired;

    m->now_mono = now_mono;
    if (cap < 1)
        cap = 1;
    m->tokens += (double)(now_mono - m->last_run_mono) * (double)rate / 1000.0;
    if (m->tokens > cap)
        m->tokens = cap;
    m->last_run_mono = now_mono;

    dlq_wheel_run(m->twheel, now_mono, 0, on_timeout, &rc);
    if (now_mono - m->expire_mono >= m->cfg->retention_check_interval_ms) {
        m->expire_mono = now_mono;
        expire(m, now_wall);
    }
    if (!run_due)
        return;
    budget = m->tokens >= 1 ? (size_t)m->tokens : 0;
    room = (size_t)m->cfg->retry_max_in_flight > m->inflight
               ? (size_t)m->cfg->retry_max_in_flight - m->inflight
               : 0;
    if (budget > room)
        budget = room;
    if (budget > 0) {
        fired = run_due_wheels(m, now_mono, budget, &rc);
        m->tokens -= (double)(fired - rc.held); /* a retry the circuit breaker held spent no token */
    }
}

size_t
dlq_machine_scheduled(const struct dlq_machine *m)
{
    size_t n = 0;

    for (int p = 0; p < POLICY_PRIO_COUNT; p++)
        n += dlq_wheel_count(m->wheels[p]);
    return n;
}

int64_t
dlq_machine_next_due(const struct dlq_machine *m)
{
    int64_t due = INT64_MAX;

    for (int p = 0; p < POLICY_PRIO_COUNT; p++) {
        int64_t d = dlq_wheel_next_due(m->wheels[p]);
        if (d < due)
            due = d;
    }
    return due;
}

struct dlq_task *
dlq_machine_flight(struct dlq_machine *m, uint32_t idx, uint64_t token, bool *stored)
{
    struct dlq_flight *f;

    *stored = false;
    if (idx >= m->flights_used)
        return NULL;
    f = &m->flights[idx];
    if (!f->task || f->token != token)
        return NULL;
    *stored = f->stored;
    return f->task;
}

/* ---- dependencies (issue 17): what a dependency's end does to its dependents ----------------- */

void
dlq_deps_park(struct dlq_machine *m, struct dlq_task *t, const char *id, const char *kind, int64_t now)
{
    char why[64 + DLQ_RETRY_ID_MAX];
    int n = snprintf(why, sizeof(why), "dependency %s %s", id, kind);
    size_t len = (size_t)n < sizeof(why) ? (size_t)n : sizeof(why) - 1;

    dlq_park(m, t, why, len); /* ends its wait */
    t->updated_at = now;
    dlq_queue_history(&m->q, t, DLQ_OUT_REFUSED, t->retry_count, now, why, len);
    dlq_log(m, DLQ_LOG_INFO, "task parked", "task_id", t->id, "reason", why, NULL);
    m->ports.event(m->ports.ctx, "parked", t, t->retry_count, why);
}

/*
 * The dependency id (len bytes) ended as kind (NULL: completed, or no
 * longer known): its waiting dependents are released when it was their
 * last wait, or parked.
 */
static void
dependents_done(struct dlq_machine *m, const char *id, size_t len, const char *kind, int64_t now)
{
    size_t n = 0;
    struct dlq_task **v = dlq_deps_take(m, id, len, &n);

    for (size_t i = 0; i < n; i++) {
        struct dlq_task *t = v[i];
        if (kind) {
            dlq_deps_park(m, t, id, kind, now);
        } else if (!dlq_task_held(t)) {
            int64_t at = t->next_retry_at;
            free(t->park_reason); /* its "waiting for" reason goes */
            t->park_reason = NULL;
            t->updated_at = now;
            dlq_log(m, DLQ_LOG_INFO, "dependencies met: task released", "task_id", t->id, NULL);
            schedule_in(m, t, at > now ? at - now : 0, now); /* max(now, its own next retry) */
        } else {
            dlq_deps_reason(t);
            m->ports.changed(m->ports.ctx, t);
        }
    }
    free(v);
}

void
dlq_deps_done(struct dlq_machine *m, struct dlq_task *t, const char *kind, int64_t now_wall)
{
    if (!m->deps_ix || dlq_machine_deps_waiting(m) == 0)
        return; /* nothing waits: the common path */
    dependents_done(m, t->id, t->id_len, strcmp(kind, "completed") == 0 ? NULL : kind, now_wall);
}

void
dlq_machine_deps_check(struct dlq_machine *m, int64_t now_wall, int64_t now_mono)
{
    char **ids;
    const char **kinds;
    size_t n;

    m->now_mono = now_mono;
    n = dlq_deps_resolvable(m, &ids, &kinds);
    for (size_t i = 0; i < n; i++) {
        dependents_done(m, ids[i], strlen(ids[i]), kinds[i], now_wall);
        free(ids[i]);
    }
    free(ids);
    free(kinds);
}

bool
dlq_machine_deps_release(struct dlq_machine *m, struct dlq_task *t, const char *by, int64_t now_wall)
{
    struct dlq_deps *d = dlq_task_deps(t);
    char note[512];
    size_t n;

    if (!dlq_task_held(t))
        return false;
    n = (size_t)snprintf(note, sizeof(note), "dependencies overridden by %s: was waiting for",
                         by ? by : "an operator");
    for (uint32_t i = 0; i < d->n && n < sizeof(note); i++)
        if (d->e[i].waiting)
            n += (size_t)snprintf(note + n, sizeof(note) - n, " %s", d->e[i].id);
    if (n >= sizeof(note))
        n = sizeof(note) - 1;
    dlq_deps_unhold(m, t);
    dlq_queue_history(&m->q, t, DLQ_OUT_OPERATOR, t->retry_count, now_wall, note, n);
    dlq_log(m, DLQ_LOG_INFO, "task released from its dependencies", "task_id", t->id, "by",
            by ? by : "", NULL);
    m->ports.changed(m->ports.ctx, t);
    return true;
}

/* ---- operators, restarts, reloads -------------------------------------------------------------- */

sc_status
dlq_machine_retry(struct dlq_machine *m, struct dlq_task *t, int64_t now_wall, int64_t now_mono)
{
    m->now_mono = now_mono;
    if (!t->retry_subject)
        return SC_ECONFLICT; /* parked for a refused subject: only a new failure envelope can fix it */
    if (t->status == DLQ_TASK_RETRYING || t->status == DLQ_TASK_COMPLETED ||
        t->status == DLQ_TASK_ARCHIVED)
        return SC_ECONFLICT; /* an attempt is out, or the task is finished */
    if (t->status == DLQ_TASK_EXHAUSTED && t->max_retries <= t->retry_count) {
        t->max_retries = t->retry_count + 1; /* one more attempt */
        t->max_retries_own = true;           /* the operator's budget: a reload leaves it */
    }
    t->defer_streak = 0;
    dlq_machine_deps_release(m, t, NULL, now_wall); /* an operator's retry overrides the wait */
    schedule_in(m, t, 0, now_wall);
    t->updated_at = now_wall;
    m->ports.changed(m->ports.ctx, t);
    dlq_queue_history(&m->q, t, DLQ_OUT_MANUAL, t->retry_count + 1, now_wall, NULL, 0);
    m->c.manual_retries++;
    return SC_OK;
}

sc_status
dlq_machine_edit(struct dlq_machine *m, struct dlq_task *t, const char *p, size_t len, bool raw,
                 int64_t now_wall)
{
    char note[64];

    if (t->status == DLQ_TASK_COMPLETED || t->status == DLQ_TASK_ARCHIVED)
        return SC_ECONFLICT;
    {
        uint32_t olen;
        bool oraw;
        if (!dlq_task_orig_payload(t, &olen, &oraw)) /* the first edit keeps the very first payload */
            dlq_task_set_orig_payload(t, t->payload ? t->payload : "", t->payload_len, t->payload_raw);
    }
    dlq_task_set_payload(t, p, len);
    t->payload_raw = raw;
    t->payload_missing = false;
    t->updated_at = now_wall;
    dlq_task_account(&m->q, t);
    snprintf(note, sizeof(note), "payload edited (%zu bytes)", len);
    dlq_queue_history(&m->q, t, DLQ_OUT_EDITED, t->retry_count, now_wall, note, strlen(note));
    m->ports.changed(m->ports.ctx, t);
    dlq_log(m, DLQ_LOG_INFO, "task payload edited", "task_id", t->id, NULL);
    return SC_OK;
}

sc_status
dlq_machine_archive(struct dlq_machine *m, struct dlq_task *t, int64_t now)
{
    if (t->status != DLQ_TASK_PENDING && t->status != DLQ_TASK_RETRYING &&
        t->status != DLQ_TASK_EXHAUSTED)
        return SC_ECONFLICT;
    detach(m, t);
    dlq_deps_unhold(m, t);
    dlq_queue_set_status(&m->q, t, DLQ_TASK_ARCHIVED, false);
    t->next_retry_at = 0;
    t->updated_at = now;
    m->ports.changed(m->ports.ctx, t);
    dlq_queue_history(&m->q, t, DLQ_OUT_ARCHIVED, t->retry_count, now, NULL, 0);
    m->c.archived++;
    m->ports.event(m->ports.ctx, "archived", t, t->retry_count, "");
    dlq_deps_done(m, t, "archived", now);
    if (!m->cfg->store_keep_completed)
        dlq_drop(m, t);
    return SC_OK;
}

void
dlq_machine_forget(struct dlq_machine *m, struct dlq_task *t)
{
    detach(m, t);
    dlq_deps_unhold(m, t);
    m->ports.forgotten(m->ports.ctx, t);
    dlq_queue_remove(&m->q, t);
}

size_t
dlq_machine_forget_partition(struct dlq_machine *m, uint32_t p, uint32_t partitions)
{
    struct dlq_task *t, *next;
    size_t n = 0;

    for (t = dlq_queue_first(&m->q); t; t = next) {
        next = dlq_queue_next(&m->q, t);
        if (dlq_partition_of(t->id, t->id_len, partitions) == p) {
            dlq_machine_forget(m, t);
            n++;
        }
    }
    return n;
}

size_t
dlq_machine_partition_in_flight(struct dlq_machine *m, uint32_t p, uint32_t partitions)
{
    size_t n = 0;

    for (struct dlq_task *t = dlq_queue_first(&m->q); t; t = dlq_queue_next(&m->q, t))
        if (t->status == DLQ_TASK_RETRYING && dlq_partition_of(t->id, t->id_len, partitions) == p)
            n++;
    return n;
}

void
dlq_machine_clear(struct dlq_machine *m, struct dlq_task *t)
{
    m->ports.event(m->ports.ctx, "cleared", t, t->retry_count, "");
    dlq_deps_done(m, t, "cleared", sc_now_wall_ms());
    dlq_drop(m, t);
    m->c.cleared++;
}

bool
dlq_machine_release_due(struct dlq_machine *m, struct dlq_task *t, int32_t retry_count,
                        int64_t due_wall, int64_t now_wall, int64_t now_mono)
{
    int64_t due = due_wall > now_wall ? due_wall : now_wall;

    if (t->status != DLQ_TASK_PENDING || t->parked || dlq_task_held(t) || t->retry_count != retry_count ||
        !t->next_retry_at || t->next_retry_at <= due)
        return false; /* a held task (depends_on) goes on the wheel only when its wait ends */
    m->now_mono = now_mono;
    t->next_retry_at = due;
    dlq_wheel_schedule(m->wheels[t->priority % POLICY_PRIO_COUNT], &t->timer,
                       now_mono + (due - now_wall));
    return true;
}

void
dlq_machine_restore(struct dlq_machine *m, struct dlq_task *t, dlq_task_status st, bool parked,
                    int64_t now, int64_t now_mono)
{
    bool retrying = false;

    m->now_mono = now_mono;
    if (st == DLQ_TASK_RETRYING) {
        /* The attempt in flight when the process stopped has no known outcome: try it again now. */
        retrying = true;
        st = DLQ_TASK_PENDING;
        t->next_retry_at = now;
        /*
         * Cluster mode: its former owner may be alive (a lease lost under
         * load, a pause) with the attempt still out; its reply, handed back
         * (sidecar/handback.h), settles it here. Sent again (same attempt)
         * only at its deadline (docs/cluster.md, "Attempts of a lost lease").
         */
        if (m->cfg->cluster_enabled && t->last_attempt_at &&
            t->last_attempt_at + m->cfg->retry_timeout_ms > now)
            t->next_retry_at = t->last_attempt_at + m->cfg->retry_timeout_ms;
    } else if (st == DLQ_TASK_PENDING && m->cfg->cluster_enabled && !parked && t->retry_subject &&
             (!t->next_retry_at || t->next_retry_at <= now))
        t->next_retry_at = now + m->cfg->retry_timeout_ms; /* maybe sent, unstored: see dlq.h */
    if (st == DLQ_TASK_PENDING && (parked || !t->retry_subject)) {
        dlq_queue_set_status(&m->q, t, DLQ_TASK_PENDING, true);
        t->next_retry_at = 0;
    } else if (st == DLQ_TASK_PENDING) {
        int64_t due = t->next_retry_at ? t->next_retry_at - now : 0;
        if (!t->next_retry_at)
            t->next_retry_at = now;
        dlq_wheel_schedule(m->wheels[t->priority % POLICY_PRIO_COUNT], &t->timer,
                           now_mono + (due > 0 ? due : 0));
    } else {
        dlq_queue_set_status(&m->q, t, st, false);
        t->next_retry_at = 0;
    }
    dlq_deps_restored(m, t);
    if (retrying)
        m->ports.changed(m->ports.ctx, t);
}

size_t
dlq_machine_forget_seqs(struct dlq_machine *m, bool advisory)
{
    size_t n = 0;

    for (struct dlq_task *t = dlq_queue_first(&m->q); t; t = dlq_queue_next(&m->q, t)) {
        if (advisory && dlq_task_adv_seq(t))
            dlq_task_set_adv_seq(t, 0);
        else if (!advisory && t->stream_seq)
            t->stream_seq = 0;
        else
            continue;
        n++;
        m->ports.changed(m->ports.ctx, t); /* the store's copy forgets it too */
    }
    dlq_log(m, DLQ_LOG_INFO, "a JetStream stream was made anew: recorded sequences forgotten",
            "source", advisory ? "advisories" : "ingest", "tasks", dlq_int(m, (int64_t)n), NULL);
    return n;
}

void
dlq_machine_reload(struct dlq_machine *m, struct policy_classifier *pc, int64_t now_wall,
                   int64_t now_mono)
{
    int32_t def = (int32_t)m->cfg->default_max_retries;
    struct dlq_task *t, *next;

    m->now_mono = now_mono;
    m->classifier = pc;
    if (def == m->budget_default)
        return; /* no task on the default budget holds another: nothing to walk */
    m->budget_default = def;
    for (t = dlq_queue_first(&m->q); t; t = next) {
        next = dlq_queue_next(&m->q, t);
        if (t->max_retries_own || t->max_retries == def || t->status == DLQ_TASK_COMPLETED ||
            t->status == DLQ_TASK_ARCHIVED || t->status == DLQ_TASK_EXHAUSTED)
            continue;
        t->max_retries = def;
        t->updated_at = now_wall;
        m->ports.changed(m->ports.ctx, t);
        /* A lowered budget: a task that waits for its next attempt is exhausted now. */
        if (t->status == DLQ_TASK_PENDING && !t->parked && t->retry_count >= t->max_retries)
            dlq_schedule_next(m, t, now_wall);
    }
}

void
dlq_machine_init(struct dlq_machine *m, struct config *cfg, struct policy_classifier *pc,
                 const char *reply_prefix, const struct dlq_ports *ports, int64_t now_mono)
{
    memset(m, 0, sizeof(*m));
    m->cfg = cfg;
    m->classifier = pc;
    dlq_queue_init(&m->q, (size_t)cfg->history_max);
    m->reply_prefix = reply_prefix;
    m->ports = *ports;
    for (int p = 0; p < POLICY_PRIO_COUNT; p++)
        m->wheels[p] = dlq_wheel_new(cfg->timer_tick_ms, now_mono);
    m->twheel = dlq_wheel_new(cfg->timer_tick_ms, now_mono);
    m->last_run_mono = now_mono;
    m->now_mono = now_mono;
    m->tokens = 1;
    m->budget_default = (int32_t)cfg->default_max_retries;
    m->hdr_base = dlq_retry_headers_max("", 0, "");
}

void
dlq_machine_destroy(struct dlq_machine *m)
{
    for (int p = 0; p < POLICY_PRIO_COUNT; p++) {
        dlq_wheel_free(m->wheels[p]);
        m->wheels[p] = NULL;
    }
    dlq_wheel_free(m->twheel);
    dlq_effect_destroy(&m->effect);
    dlq_deps_destroy(m);
    free(m->flights);
    m->twheel = NULL;
    m->flights = NULL;
    dlq_queue_destroy(&m->q);
}
