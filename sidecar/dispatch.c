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
    if (t->status == SC_TASK_EXHAUSTED && t->max_retries <= t->retry_count) {
        t->max_retries = t->retry_count + 1; /* one more attempt */
        t->max_retries_own = true;           /* the operator's budget: a reload leaves it */
    }
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

/* The wire bytes of one header line "name: value\r\n". */
static size_t
hdr_line(const char *name, const char *value)
{
    return strlen(name) + 2 + strlen(value) + 2;
}

size_t
sc_retry_headers(struct sc_retry_hdrs *h, const char *id, size_t id_len, int32_t attempt,
                 int32_t max_retries, policy_category cat, const char *orig_subject,
                 int64_t first_failed_at, int64_t episode_id)
{
    size_t n = 0, wire = 10 + 2; /* "NATS/1.0\r\n" ... "\r\n" */

    if (id_len > SC_RETRY_ID_MAX)
        id_len = SC_RETRY_ID_MAX; /* ids are capped below this by limits.max_task_id_len */
    memcpy(h->id, id, id_len);
    h->id[id_len] = '\0';
    snprintf(h->attempt, sizeof(h->attempt), "%d", (int)attempt);
    snprintf(h->maxr, sizeof(h->maxr), "%d", (int)max_retries);
    snprintf(h->episode, sizeof(h->episode), "%lld", (long long)episode_id);
    snprintf(h->msgid, sizeof(h->msgid), "%s:%s:%s", h->id, h->episode, h->attempt);
    sc_format_rfc3339(first_failed_at, h->first);
    h->kv[n++] = CODEC_HDR_TASK_ID;
    h->kv[n++] = h->id;
    h->kv[n++] = CODEC_HDR_ATTEMPT;
    h->kv[n++] = h->attempt;
    h->kv[n++] = CODEC_HDR_MAX_RETRIES;
    h->kv[n++] = h->maxr;
    h->kv[n++] = CODEC_HDR_CATEGORY;
    h->kv[n++] = policy_category_name(cat);
    h->kv[n++] = CODEC_HDR_ORIG_SUBJECT;
    h->kv[n++] = orig_subject;
    h->kv[n++] = CODEC_HDR_FIRST_FAILED;
    h->kv[n++] = h->first;
    h->kv[n++] = SC_HDR_EPISODE;
    h->kv[n++] = h->episode;
    h->kv[n++] = CODEC_HDR_MSG_ID;
    h->kv[n++] = h->msgid;
    h->kv[n] = NULL;
    for (size_t i = 0; i < n; i += 2)
        wire += hdr_line(h->kv[i], h->kv[i + 1]);
    return wire;
}

size_t
sc_retry_headers_max(const char *id, size_t id_len, const char *orig_subject)
{
    struct sc_retry_hdrs h;
    policy_category longest = 0;
    size_t wire;

    for (int c = 0; c < POLICY_CAT_COUNT; c++)
        if (strlen(policy_category_name((policy_category)c)) >
            strlen(policy_category_name(longest)))
            longest = (policy_category)c;
    /* Attempts and budgets grow past 100 with operators' retries: take the widest numbers. */
    wire = sc_retry_headers(&h, id, id_len, INT32_MAX, INT32_MAX, longest, orig_subject, 0,
                            INT64_MAX);
    return wire + (SC_RFC3339_LEN - 1 - strlen(h.first)); /* any first-failure time */
}

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

/* Publishes the next attempt of t (DESIGN section 5). */
static void
dispatch(struct sc_daemon *d, struct sc_task *t)
{
    struct sc_retry_hdrs h;
    char reply[128];
    bool stored = t->retry_subject && outcome_stored(d->cfg, t->retry_subject);
    bool want_reply = stored || d->cfg->retry_outcome == CONFIG_OUTCOME_REPLY;
    int32_t a = t->retry_count + 1;
    uint32_t idx;
    sc_status ps;
    int64_t now = sc_now_wall_ms();

    if (!t->retry_subject) {
        park(d, t);
        return;
    }
    /* While disconnected a publish would sit in nats.c's buffer; defer instead (not an attempt). */
    if (!sc_conn_connected(d->conn)) {
        defer(d, t, "nats disconnected");
        return;
    }
    idx = flight_take(d, t);
    d->flights[idx].epoch = sc_conn_epoch(d->conn);
    d->flights[idx].attempt = a;
    d->flights[idx].sent_mono = sc_now_mono_ms();
    d->flights[idx].stored = stored;
    sc_retry_headers(&h, t->id, t->id_len, a, t->max_retries, (policy_category)t->category,
                     t->subject, t->first_failed_at, t->episode_id);
    snprintf(reply, sizeof(reply), "%s.%u.%016llx", sc_conn_inbox(d->conn), idx,
             (unsigned long long)d->flights[idx].token);

    ps = sc_publish(d, t->retry_subject, want_reply ? reply : NULL, t->payload, t->payload_len, h.kv);
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
    sc_log(SC_LOG_DEBUG, "retry published", "task_id", t->id, "attempt", h.attempt, "subject",
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
    if (t->retry_count >= t->max_retries) {
        sc_schedule_next(d, t, sc_now_wall_ms()); /* the budget shrank while it waited: exhausted */
        return;
    }
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
                              sc_conn_epoch(d->conn)) {
        defer(d, t, "nats connection lost while the retry was out");
        return;
    }
    if (d->cfg->retry_outcome == CONFIG_OUTCOME_NONE &&
        !(t->flight_slot && d->flights[t->flight_slot - 1].stored)) {
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
        bool drained = d->inflight == 0 &&
                       sc_conn_sub_drain_state(d->sub_failed) != SC_CONN_DRAIN_RUNNING &&
                       sc_conn_flushed(d->conn);
        if (drained || now >= d->stop_deadline_mono) {
            if (!drained)
                sc_log(SC_LOG_WARN, "drain deadline reached", "in_flight", sc_log_int((int64_t)d->inflight), NULL);
            event_base_loopbreak(d->base);
        }
    }
}


/* ---- JetStream PubAcks on the reply inbox (DESIGN section 6) --------------------------------- */

static size_t
js_ws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i;
}

/* Skips the JSON string starting at p[i] == '"'; returns the index past it, or n when unterminated. */
static size_t
js_string(const char *p, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return n;
}

/* Skips one JSON value at p[i] (no validation beyond nesting and strings); returns the index past it. */
static size_t
js_value(const char *p, size_t n, size_t i)
{
    size_t depth = 0;

    for (; i < n; i++) {
        char c = p[i];
        if (c == '"') {
            i = js_string(p, n, i) - 1;
            if (depth == 0)
                return i + 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* the end of the enclosing container */
            if (--depth == 0)
                return i + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n')) {
            return i;
        }
    }
    return n;
}

static bool
js_key_is(const char *p, size_t ks, size_t ke, const char *name)
{
    size_t len = strlen(name);
    return ke - ks == len + 2 && memcmp(p + ks + 1, name, len) == 0;
}

/*
 * js_object() walks the JSON object at p[i] == '{' and calls back on each
 * key (index range of the quoted key) and value start. Returns the index
 * past the object, or 0 when it is not a well-formed object at this level.
 */
typedef void (*js_member_fn)(const char *p, size_t n, size_t ks, size_t ke, size_t vs, void *ctx);

static size_t
js_object(const char *p, size_t n, size_t i, js_member_fn fn, void *ctx)
{
    if (i >= n || p[i] != '{')
        return 0;
    i = js_ws(p, n, i + 1);
    if (i < n && p[i] == '}')
        return i + 1;
    while (i < n) {
        size_t ks = i, ke, vs;
        if (p[i] != '"')
            return 0;
        ke = js_string(p, n, i);
        i = js_ws(p, n, ke);
        if (i >= n || p[i] != ':')
            return 0;
        vs = js_ws(p, n, i + 1);
        if (vs >= n)
            return 0;
        fn(p, n, ks, ke, vs, ctx);
        i = js_ws(p, n, js_value(p, n, vs));
        if (i < n && p[i] == '}')
            return i + 1;
        if (i >= n || p[i] != ',')
            return 0;
        i = js_ws(p, n, i + 1);
    }
    return 0;
}

struct js_scan {
    bool ok, stream, seq, error, err_code;
    struct sc_js_reply *r;
};

/* The non-negative integer at p[i] (digits up to n, capped), 0 when none. */
static int64_t
js_uint(const char *p, size_t n, size_t i)
{
    int64_t v = 0;

    for (; i < n && p[i] >= '0' && p[i] <= '9' && v < INT64_MAX / 10 - 10; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

static void
js_error_member(const char *p, size_t n, size_t ks, size_t ke, size_t vs, void *ctx)
{
    struct js_scan *sc = ctx;

    if (js_key_is(p, ks, ke, "code")) {
        sc->r->code = js_uint(p, n, vs);
    } else if (js_key_is(p, ks, ke, "err_code")) {
        sc->err_code = true;
        sc->r->err_code = js_uint(p, n, vs);
    } else if (js_key_is(p, ks, ke, "description") && p[vs] == '"') {
        size_t end = js_string(p, n, vs);
        sc->r->desc = p + vs + 1;
        sc->r->desc_len = end > vs + 1 ? end - vs - 2 : 0;
    }
}

static void
js_top_member(const char *p, size_t n, size_t ks, size_t ke, size_t vs, void *ctx)
{
    struct js_scan *sc = ctx;

    if (js_key_is(p, ks, ke, "ok"))
        sc->ok = true;
    else if (js_key_is(p, ks, ke, "stream") && p[vs] == '"')
        sc->stream = true;
    else if (js_key_is(p, ks, ke, "seq") && (p[vs] >= '0' && p[vs] <= '9'))
        sc->seq = true;
    else if (js_key_is(p, ks, ke, "error") && p[vs] == '{')
        sc->error = js_object(p, n, vs, js_error_member, sc) != 0;
}

sc_js_reply_kind
sc_js_reply_classify(const char *body, size_t len, struct sc_js_reply *r)
{
    struct js_scan sc = {false, false, false, false, false, r};
    size_t i = js_ws(body, len, 0);

    memset(r, 0, sizeof(*r));
    if (!body || i >= len || body[i] != '{')
        return SC_JS_NOT;
    if (js_object(body, len, i, js_top_member, &sc) == 0 || sc.ok)
        return SC_JS_NOT;
    if (sc.error && sc.err_code)
        return SC_JS_ERROR;
    if (sc.stream && sc.seq)
        return SC_JS_PUBACK;
    return SC_JS_NOT;
}

/*
 * reply_js() handles a JetStream answer to the retry publish of t (kind k,
 * error fields in *jr). Who holds the failure: until the answer comes the
 * sidecar does (t is retrying, its timeout runs); with outcome stored the
 * PubAck is the success of the hand-off: the stream holds the task from
 * then on (the sidecar forgets it unless keep_completed), and a consumer
 * that fails it again files a new failure envelope (or an advisory of
 * DESIGN section 16 does). A JetStream error
 * (stream full, storage, ...) is a failed attempt classified from the
 * server's description, with error_type "jetstream <code>". With outcome
 * reply the server's answer is never the worker's: the attempt keeps
 * waiting on the same inbox for the worker's reply or the timeout (a
 * JetStream error is logged at warn).
 */
static void
reply_js(struct sc_daemon *d, struct sc_task *t, bool stored, sc_js_reply_kind k,
         const struct sc_js_reply *jr)
{
    char err[600], et[32];
    int n;

    if (!stored) {
        if (k == SC_JS_ERROR)
            sc_log(SC_LOG_WARN, "retry: the stream refused the publish; waiting for a worker",
                   "task_id", t->id, "code", sc_log_int(jr->code), "err_code",
                   sc_log_int(jr->err_code), NULL);
        else
            sc_log(SC_LOG_DEBUG, "retry: PubAck ignored, waiting for the worker's reply",
                   "task_id", t->id, NULL);
        return;
    }
    if (k == SC_JS_PUBACK) {
        succeeded(d, t);
        return;
    }
    n = snprintf(err, sizeof(err), "jetstream refused the retry (err_code %lld): %.*s",
                 (long long)jr->err_code, (int)(jr->desc_len < 500 ? jr->desc_len : 500),
                 jr->desc ? jr->desc : "");
    snprintf(et, sizeof(et), "jetstream %lld", (long long)jr->code);
    sc_task_set_str(&d->q, t, SC_TS_ERROR_TYPE, et, strlen(et));
    sc_attempt_failed(d, t, SC_OUT_RETRY_FAILED, err,
                      (size_t)n < sizeof(err) ? (size_t)n : sizeof(err) - 1);
}

void
sc_on_reply(struct sc_daemon *d, natsMsg *m)
{
    const char *subj = natsMsg_GetSubject(m);
    const char *inbox = sc_conn_inbox(d->conn);
    size_t plen = strlen(inbox);
    const char *p, *val = NULL;
    char *end;
    unsigned long idx;
    unsigned long long token;
    struct sc_flight *f;
    struct sc_task *t;
    struct codec_outcome out;

    if (strncmp(subj, inbox, plen) != 0 || subj[plen] != '.')
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
    if (natsMsgHeader_Get(m, CODEC_HDR_SERVICE_ERROR, &val) != NATS_OK || !val) {
        /* The server's answer to a publish into a stream is never the worker's (DESIGN section 6). */
        struct sc_js_reply jr;
        sc_js_reply_kind k = sc_js_reply_classify(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &jr);
        if (k != SC_JS_NOT) {
            reply_js(d, t, f->stored, k, &jr);
            return;
        }
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
sc_dispatch_reload(struct sc_daemon *d, int64_t now_wall)
{
    int32_t def = (int32_t)d->cfg->default_max_retries;
    struct sc_task *t, *next;

    for (t = d->q.head; t; t = next) {
        next = t->onext;
        if (t->max_retries_own || t->max_retries == def || t->status == SC_TASK_COMPLETED ||
            t->status == SC_TASK_ARCHIVED || t->status == SC_TASK_EXHAUSTED)
            continue;
        t->max_retries = def;
        t->updated_at = now_wall;
        sc_store_changed(d, t);
        /* A lowered budget: a task that waits for its next attempt is exhausted now. */
        if (t->status == SC_TASK_PENDING && !t->parked && t->retry_count >= t->max_retries)
            sc_schedule_next(d, t, now_wall);
    }
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
