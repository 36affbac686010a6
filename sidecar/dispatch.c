/* dispatch.c - the retry processor: the wheel tick, republishing due tasks, outcomes, timeouts and backoff. */
#include <stdlib.h>
#include <string.h>

#include "sidecar-internal.h"

#define DEFER_FLOOR_MS 100
#define DEFER_CAP_MS 60000

uint64_t
sc_rand(void *ctx)
{
    struct sc_daemon *d = ctx;
    uint64_t x = d->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    d->rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* The wheel that holds t's timer: timeouts while retrying, due times otherwise. */
static struct sc_wheel *
wheel_of(struct sc_daemon *d, const struct sc_task *t)
{
    return t->status == SC_TASK_RETRYING ? d->twheel : d->wheel;
}

static void
timer_cancel(struct sc_daemon *d, struct sc_task *t)
{
    if (sc_wheel_entry_scheduled(&t->timer))
        sc_wheel_cancel(wheel_of(d, t), &t->timer);
}

void
sc_flight_release(struct sc_daemon *d, struct sc_task *t)
{
    struct sc_flight *f;

    if (!t->flight_slot)
        return;
    f = &d->flights[t->flight_slot - 1];
    f->task = NULL;
    f->next_free = d->free_head;
    d->free_head = t->flight_slot;
    d->inflight--;
    t->flight_slot = 0;
}

static uint32_t
flight_take(struct sc_daemon *d, struct sc_task *t)
{
    uint32_t idx;

    if (d->free_head) {
        idx = d->free_head - 1;
        d->free_head = d->flights[idx].next_free;
    } else {
        if (d->flights_used == d->flights_cap) {
            uint32_t ncap = d->flights_cap ? d->flights_cap * 2 : 64;
            d->flights = sc_xrealloc(d->flights, ncap * sizeof(*d->flights));
            memset(d->flights + d->flights_cap, 0, (ncap - d->flights_cap) * sizeof(*d->flights));
            d->flights_cap = ncap;
        }
        idx = d->flights_used++;
    }
    d->flights[idx].task = t;
    d->flights[idx].token = ((uint64_t)arc4random() << 32) | arc4random();
    d->flights[idx].next_free = 0;
    d->inflight++;
    t->flight_slot = idx + 1;
    return idx;
}

void
sc_task_drop(struct sc_daemon *d, struct sc_task *t)
{
    timer_cancel(d, t);
    sc_flight_release(d, t);
    sc_store_removed(d, t);
    sc_queue_remove(&d->q, t);
}

static void
park(struct sc_daemon *d, struct sc_task *t)
{
    timer_cancel(d, t);
    sc_flight_release(d, t);
    sc_queue_set_status(&d->q, t, SC_TASK_PENDING, true);
    t->next_retry_at = 0;
    sc_store_changed(d, t);
}

/* Files t in the due wheel delay_ms from now and records its wall-clock time. */
static void
schedule_in(struct sc_daemon *d, struct sc_task *t, int64_t delay_ms, int64_t now_wall)
{
    timer_cancel(d, t);
    sc_flight_release(d, t); /* leaving retrying always frees the in-flight slot */
    if (t->status != SC_TASK_PENDING || t->parked)
        sc_queue_set_status(&d->q, t, SC_TASK_PENDING, false);
    t->next_retry_at = now_wall + delay_ms;
    sc_wheel_schedule(d->wheel, &t->timer, sc_now_mono_ms() + delay_ms);
    sc_store_changed(d, t);
}

void
sc_schedule_next(struct sc_daemon *d, struct sc_task *t, int64_t now_wall)
{
    int64_t delay;

    if (!t->retry_subject) {
        park(d, t);
        if (!t->park_reason)
            sc_set_str(&t->park_reason, "retry_subject refused", 21);
        return;
    }
    if (t->retry_count >= t->max_retries) {
        timer_cancel(d, t);
        sc_flight_release(d, t);
        sc_queue_set_status(&d->q, t, SC_TASK_EXHAUSTED, false);
        t->next_retry_at = 0;
        sc_store_changed(d, t);
        d->c.exhausted++;
        sc_queue_history(&d->q, t, SC_OUT_EXHAUSTED, t->retry_count, now_wall, NULL, 0);
        sc_log(SC_LOG_INFO, "task exhausted", "task_id", t->id, "attempts",
               sc_log_int(t->retry_count), "category", policy_category_name(t->category), NULL);
        sc_event(d, "exhausted", t, t->retry_count, NULL);
        return;
    }
    if (t->policy == POLICY_NEVER) {
        char why[160];
        int n = snprintf(why, sizeof(why),
                         "retry policy never (category %s): not retried automatically; "
                         "dlq.admin.retry sends it",
                         policy_category_name(t->category));
        park(d, t);
        sc_set_str(&t->park_reason, why, (size_t)n < sizeof(why) ? (size_t)n : sizeof(why) - 1);
        return;
    }
    delay = policy_backoff_delay(&d->cfg->backoff, t->policy, (int64_t)t->retry_count + 1, sc_rand, d);
    if (delay < 0)
        delay = 0;
    schedule_in(d, t, delay, now_wall);
}

sc_status
sc_retry_now(struct sc_daemon *d, struct sc_task *t, int64_t now_wall)
{
    if (!t->retry_subject)
        return SC_ECONFLICT; /* parked for a refused subject: only a new failure envelope can fix it */
    if (t->status == SC_TASK_RETRYING || t->status == SC_TASK_COMPLETED ||
        t->status == SC_TASK_ARCHIVED)
        return SC_ECONFLICT; /* an attempt is out, or the task is finished */
    if (t->status == SC_TASK_EXHAUSTED && t->max_retries <= t->retry_count)
        t->max_retries = t->retry_count + 1; /* one more attempt */
    t->defer_streak = 0;
    schedule_in(d, t, 0, now_wall);
    t->updated_at = now_wall;
    sc_store_changed(d, t);
    sc_queue_history(&d->q, t, SC_OUT_MANUAL, t->retry_count + 1, now_wall, NULL, 0);
    return SC_OK;
}

/* No responders (or a publish that could not be buffered): not an attempt; back off and try again. */
static void
defer(struct sc_daemon *d, struct sc_task *t, const char *why)
{
    int64_t now = sc_now_wall_ms();
    int64_t base = policy_backoff_raw(&d->cfg->backoff, t->policy, (int64_t)t->retry_count + 1);
    int64_t cap = d->cfg->backoff.max_delay_ms < DEFER_CAP_MS ? d->cfg->backoff.max_delay_ms : DEFER_CAP_MS;
    int64_t delay;
    int shift;

    timer_cancel(d, t);
    sc_flight_release(d, t);
    if (base < DEFER_FLOOR_MS)
        base = DEFER_FLOOR_MS;
    t->defer_streak++;
    shift = t->defer_streak - 1 < 20 ? t->defer_streak - 1 : 20;
    delay = base > (cap >> shift) ? cap : base << shift;
    if (delay > cap)
        delay = cap;
    if (d->cfg->backoff.jitter > 0) {
        double f = (double)(sc_rand(d) >> 11) / 9007199254740992.0; /* [0,1) */
        delay += (int64_t)((double)delay * d->cfg->backoff.jitter * (2 * f - 1));
        if (delay < 0)
            delay = 0;
    }
    d->c.deferred++;
    t->updated_at = now;
    sc_store_changed(d, t);
    sc_queue_set_status(&d->q, t, SC_TASK_PENDING, false);
    schedule_in(d, t, delay, now);
    sc_log(SC_LOG_DEBUG, "retry deferred", "task_id", t->id, "reason", why, "delay_ms",
           sc_log_int(delay), NULL);
    if (t->defer_streak == 1 || t->defer_streak % 10 == 0)
        sc_queue_history(&d->q, t, SC_OUT_DEFERRED, t->retry_count + 1, now, why, strlen(why));
    sc_event(d, "deferred", t, t->retry_count + 1, why);
}

static void
succeeded(struct sc_daemon *d, struct sc_task *t)
{
    int64_t now = sc_now_wall_ms();
    int32_t attempt = t->retry_count + 1;

    timer_cancel(d, t);
    sc_flight_release(d, t);
    d->c.retry_success++;
    t->defer_streak = 0;
    sc_metrics_observe(d, SC_HIST_TIME_TO_SUCCESS, now - t->first_failed_at);
    sc_log(SC_LOG_INFO, "retry succeeded", "task_id", t->id, "attempt", sc_log_int(attempt), NULL);
    sc_queue_history(&d->q, t, SC_OUT_SUCCEEDED, attempt, now, NULL, 0);
    sc_queue_set_status(&d->q, t, SC_TASK_COMPLETED, false);
    t->next_retry_at = 0;
    t->updated_at = now;
    sc_store_changed(d, t);
    sc_event(d, "succeeded", t, attempt, "");
    if (!d->cfg->store_keep_completed)
        sc_task_drop(d, t);
}

void
sc_attempt_failed(struct sc_daemon *d, struct sc_task *t, sc_outcome_kind kind, const char *error,
                  size_t error_len)
{
    int64_t now = sc_now_wall_ms();
    int32_t attempt = t->retry_count + 1;

    timer_cancel(d, t);
    sc_flight_release(d, t);
    sc_queue_set_status(&d->q, t, SC_TASK_PENDING, false);
    t->retry_count++;
    t->defer_streak = 0;
    if (kind == SC_OUT_TIMEOUT)
        d->c.retry_timeouts++;
    d->c.retry_failed++;
    if (error && error != t->error)
        sc_task_set_str(&d->q, t, SC_TS_ERROR, error, error_len);
    if (kind == SC_OUT_TIMEOUT) {
        sc_queue_set_class(&d->q, t, POLICY_CAT_NETWORK, (policy_retry)t->policy);
        sc_task_set_str(&d->q, t, SC_TS_RULE, "timeout", 7);
    } else {
        sc_task_classify(d, t);
    }
    if (!t->policy_override)
        sc_queue_set_class(&d->q, t, (policy_category)t->category,
                           d->cfg->has_default_retry_policy
                               ? d->cfg->default_retry_policy
                               : policy_default_retry((policy_category)t->category));
    t->updated_at = now;
    sc_store_changed(d, t);
    sc_queue_history(&d->q, t, kind, attempt, now, t->error, strlen(t->error));
    sc_log(SC_LOG_INFO, "retry failed", "task_id", t->id, "attempt", sc_log_int(attempt), "outcome",
           sc_outcome_name(kind), "error", t->error, NULL);
    sc_event(d, "failed", t, attempt, NULL);
    sc_schedule_next(d, t, now);
}

/* Publishes the next attempt of t (DESIGN section 5). */
static void
dispatch(struct sc_daemon *d, struct sc_task *t)
{
    char attempt[16], maxr[16], msgid[1100], first[SC_RFC3339_LEN], reply[128];
    const char *hdrs[16];
    size_t n = 0;
    bool want_reply = d->cfg->retry_outcome == CONFIG_OUTCOME_REPLY;
    int32_t a = t->retry_count + 1;
    uint32_t idx;
    sc_status ps;
    int64_t now = sc_now_wall_ms();

    if (!t->retry_subject) {
        park(d, t);
        return;
    }
    /* While disconnected a publish would sit in nats.c's buffer; defer instead (not an attempt). */
    if (!__atomic_load_n(&d->nats_connected, __ATOMIC_RELAXED)) {
        defer(d, t, "nats disconnected");
        return;
    }
    idx = flight_take(d, t);
    d->flights[idx].epoch = __atomic_load_n(&d->disconnects, __ATOMIC_RELAXED);
    d->flights[idx].attempt = a;
    d->flights[idx].sent_mono = sc_now_mono_ms();
    snprintf(attempt, sizeof(attempt), "%d", (int)a);
    snprintf(maxr, sizeof(maxr), "%d", (int)t->max_retries);
    snprintf(msgid, sizeof(msgid), "%.*s:%d", (int)t->id_len, t->id, (int)a); /* ids are at most 1024 bytes */
    sc_format_rfc3339(t->first_failed_at, first);
    snprintf(reply, sizeof(reply), "%s.%u.%016llx", d->reply_prefix, idx,
             (unsigned long long)d->flights[idx].token);
    hdrs[n++] = CODEC_HDR_TASK_ID;
    hdrs[n++] = t->id;
    hdrs[n++] = CODEC_HDR_ATTEMPT;
    hdrs[n++] = attempt;
    hdrs[n++] = CODEC_HDR_MAX_RETRIES;
    hdrs[n++] = maxr;
    hdrs[n++] = CODEC_HDR_CATEGORY;
    hdrs[n++] = policy_category_name(t->category);
    hdrs[n++] = CODEC_HDR_ORIG_SUBJECT;
    hdrs[n++] = t->subject;
    hdrs[n++] = CODEC_HDR_FIRST_FAILED;
    hdrs[n++] = first;
    hdrs[n++] = CODEC_HDR_MSG_ID;
    hdrs[n++] = msgid;
    hdrs[n] = NULL;

    ps = sc_publish(d, t->retry_subject, want_reply ? reply : NULL, t->payload, t->payload_len, hdrs);
    if (ps == SC_ETOOBIG) {
        /* It will never fit (the server's max_payload shrank): park it, do not loop. */
        sc_flight_release(d, t);
        park(d, t);
        {
            static const char why[] = "retry refused: the task does not fit the server's max_payload";
            sc_set_str(&t->park_reason, why, sizeof(why) - 1);
        }
        sc_queue_history(&d->q, t, SC_OUT_REFUSED, a, now, t->park_reason, strlen(t->park_reason));
        sc_log(SC_LOG_WARN, "task parked", "task_id", t->id, "reason", t->park_reason, NULL);
        return;
    }
    if (ps) {
        defer(d, t, "publish failed");
        return;
    }
    sc_queue_set_status(&d->q, t, SC_TASK_RETRYING, false);
    t->last_attempt_at = now;
    sc_metrics_observe(d, SC_HIST_RETRY_LATENESS, t->next_retry_at ? now - t->next_retry_at : 0);
    t->next_retry_at = 0;
    t->updated_at = now;
    sc_store_changed(d, t);
    d->c.attempts++;
    sc_wheel_schedule(d->twheel, &t->timer, sc_now_mono_ms() + d->cfg->retry_timeout_ms);
    sc_log(SC_LOG_DEBUG, "retry published", "task_id", t->id, "attempt", attempt, "subject",
           t->retry_subject, NULL);
    sc_event(d, "retried", t, a, "");
}

static void
on_due(struct sc_wheel_entry *e, void *ctx)
{
    struct sc_daemon *d = ctx;
    struct sc_task *t = SC_CONTAINER_OF(e, struct sc_task, timer);

    if (t->status != SC_TASK_PENDING || t->parked)
        return;
    dispatch(d, t);
}

static void
on_timeout(struct sc_wheel_entry *e, void *ctx)
{
    struct sc_daemon *d = ctx;
    struct sc_task *t = SC_CONTAINER_OF(e, struct sc_task, timer);

    if (t->status != SC_TASK_RETRYING)
        return;
    /* The connection dropped after the retry went out: it may never have reached a worker. */
    if (t->flight_slot && d->flights[t->flight_slot - 1].epoch !=
                              __atomic_load_n(&d->disconnects, __ATOMIC_RELAXED)) {
        defer(d, t, "nats connection lost while the retry was out");
        return;
    }
    if (d->cfg->retry_outcome == CONFIG_OUTCOME_NONE) {
        succeeded(d, t);
        return;
    }
    sc_task_set_str(&d->q, t, SC_TS_ERROR_TYPE, NULL, 0); /* the old type no longer applies */
    sc_attempt_failed(d, t, SC_OUT_TIMEOUT, "retry timed out", 15);
}

void
sc_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    int64_t now = sc_now_mono_ms();
    int64_t rate = d->cfg->retry_max_per_second;
    double cap = (double)rate * (double)d->cfg->timer_tick_ms / 1000.0 * 2;
    size_t budget, room, fired;

    (void)fd;
    (void)what;
    if (cap < 1)
        cap = 1;
    d->tokens += (double)(now - d->last_tick_mono) * (double)rate / 1000.0;
    if (d->tokens > cap)
        d->tokens = cap;
    d->last_tick_mono = now;

    sc_wheel_run(d->twheel, now, 0, on_timeout, d);
    /*
     * While paused or stopping the due wheel is not run: due tasks stay due
     * (keeping their next_retry_at) and go out, earliest first and at the
     * bounded rate, once retries resume.
     */
    if (!d->paused && !d->stopping) {
        budget = d->tokens >= 1 ? (size_t)d->tokens : 0;
        room = (size_t)d->cfg->retry_max_in_flight > d->inflight
                   ? (size_t)d->cfg->retry_max_in_flight - d->inflight
                   : 0;
        if (budget > room)
            budget = room;
        if (budget > 0) {
            fired = sc_wheel_run(d->wheel, now, budget, on_due, d);
            d->tokens -= (double)fired;
        }
    }
    if (d->stopping) {
        bool drained = d->inflight == 0 && sc_conn_ingest_drained(d) &&
                       natsConnection_Buffered(d->nc) <= 0;
        if (drained || now >= d->stop_deadline_mono) {
            if (!drained)
                sc_log(SC_LOG_WARN, "drain deadline reached", "in_flight", sc_log_int((int64_t)d->inflight), NULL);
            event_base_loopbreak(d->base);
        }
    }
}

void
sc_on_reply(struct sc_daemon *d, natsMsg *m)
{
    const char *subj = natsMsg_GetSubject(m);
    size_t plen = strlen(d->reply_prefix);
    const char *p, *val = NULL;
    char *end;
    unsigned long idx;
    unsigned long long token;
    struct sc_flight *f;
    struct sc_task *t;
    struct codec_outcome out;

    if (strncmp(subj, d->reply_prefix, plen) != 0 || subj[plen] != '.')
        return;
    p = subj + plen + 1;
    idx = strtoul(p, &end, 10);
    if (end == p || *end != '.')
        return;
    p = end + 1;
    if (strlen(p) != 16)
        return;
    token = strtoull(p, &end, 16);
    if (*end != '\0')
        return;
    if (idx >= d->flights_used)
        return;
    f = &d->flights[idx];
    if (!f->task || f->token != token) {
        sc_log(SC_LOG_DEBUG, "late reply ignored", "subject", subj, NULL);
        return;
    }
    t = f->task;
    if (natsMsg_IsNoResponders(m)) {
        defer(d, t, "no responders");
        return;
    }
    if (natsMsgHeader_Get(m, CODEC_HDR_SERVICE_ERROR, &val) == NATS_OK && val) {
        const char *code = NULL;
        char buf[1100];
        if (natsMsgHeader_Get(m, CODEC_HDR_SERVICE_ERROR_CODE, &code) == NATS_OK && code)
            snprintf(buf, sizeof(buf), "%s %.1000s", code, val);
        else
            snprintf(buf, sizeof(buf), "%.1000s", val);
        /* Classify the worker's error alone: the envelope's old error_type no longer applies. */
        sc_task_set_str(&d->q, t, SC_TS_ERROR_TYPE, NULL, 0);
        sc_attempt_failed(d, t, SC_OUT_RETRY_FAILED, buf, strlen(buf));
        return;
    }
    codec_decode_outcome(d->codec, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &out);
    if (out.ok) {
        succeeded(d, t);
        return;
    }
    /* The reply's error_type, or none: the envelope's old one no longer applies. */
    sc_task_set_str(&d->q, t, SC_TS_ERROR_TYPE, out.error_type.ptr, out.error_type.len);
    sc_attempt_failed(d, t, SC_OUT_RETRY_FAILED, out.error.ptr ? out.error.ptr : "",
                      out.error.ptr ? out.error.len : 0);
}

void
sc_dispatch_init(struct sc_daemon *d)
{
    d->last_tick_mono = sc_now_mono_ms();
    d->tokens = 1;
}

void
sc_dispatch_destroy(struct sc_daemon *d)
{
    free(d->flights);
    d->flights = NULL;
}
