/* admin.c - the admin request/reply API on <prefix>.admin.<verb> (DESIGN section 8). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sidecar-internal.h"

#define LIST_DEFAULT 50
#define LIST_MAX 1000
#define ADMIN_REQ_MAX (1024 * 1024)

/* ---- small JSON writers over sc_buf ---------------------------------------------------------- */

static void
key(struct sc_buf *b, bool *first, const char *k)
{
    if (!*first)
        sc_buf_appendc(b, ',');
    *first = false;
    codec_json_string(b, k, strlen(k));
    sc_buf_appendc(b, ':');
}

static void
kstr(struct sc_buf *b, bool *first, const char *k, const char *v)
{
    key(b, first, k);
    if (v)
        codec_json_string(b, v, strlen(v));
    else
        sc_buf_append(b, "null", 4);
}

static void
kint(struct sc_buf *b, bool *first, const char *k, int64_t v)
{
    key(b, first, k);
    sc_buf_appendf(b, "%lld", (long long)v);
}

static void
kbool(struct sc_buf *b, bool *first, const char *k, bool v)
{
    key(b, first, k);
    sc_buf_append(b, v ? "true" : "false", v ? 4 : 5);
}

/* "k": RFC 3339 time, or null when ms is 0. */
static void
ktime(struct sc_buf *b, bool *first, const char *k, int64_t ms)
{
    char ts[SC_RFC3339_LEN];

    if (!ms || !sc_format_rfc3339(ms, ts)) {
        kstr(b, first, k, NULL);
        return;
    }
    kstr(b, first, k, ts);
}

/* "k": the MessagePack value rendered as JSON, or null. */
static void
kmsgpack(struct sc_daemon *d, struct sc_buf *b, bool *first, const char *k, const char *p, size_t len)
{
    size_t mark;

    key(b, first, k);
    if (!p) {
        sc_buf_append(b, "null", 4);
        return;
    }
    mark = b->len;
    if (codec_render_json(p, len, codec_limits_get(d->codec)->max_depth, b) != SC_OK) {
        b->len = mark;
        sc_buf_append(b, "null", 4);
    }
}

static void
reply_error(struct sc_daemon *d, natsMsg *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
reply_error(struct sc_daemon *d, natsMsg *m, int code, const char *fmt, ...)
{
    struct sc_buf *b = &d->out;
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sc_buf_reset(b);
    sc_buf_appendf(b, "{\"error\":{\"code\":%d,\"message\":", code);
    codec_json_string(b, msg, strlen(msg));
    sc_buf_append(b, "}}", 2);
    sc_respond(d, m, b->data, b->len, code, msg);
}

static void
reply_buf(struct sc_daemon *d, natsMsg *m)
{
    sc_respond(d, m, d->out.data, d->out.len, 0, NULL);
}

/* ---- filters --------------------------------------------------------------------------------- */

/* Reads the filter keys of req into f; on a bad value replies 400 and returns false. */
static bool
parse_filter(struct sc_daemon *d, natsMsg *m, json_t *req, struct sc_filter *f)
{
    json_t *v;

    f->status = -1;
    f->want_parked = -1;
    f->category = -1;
    f->subject = NULL;
    f->older_than_ms = 0;
    if (!req)
        return true;
    if ((v = json_object_get(req, "status")) && !json_is_null(v)) {
        const char *s = json_string_value(v);
        if (!s) {
            reply_error(d, m, 400, "status: must be a string");
            return false;
        }
        if (strcmp(s, "parked") == 0) {
            f->status = SC_TASK_PENDING;
            f->want_parked = 1;
        } else {
            int i;
            for (i = 0; i < SC_TASK_STATUS_COUNT; i++)
                if (strcmp(s, sc_task_status_name((sc_task_status)i)) == 0)
                    break;
            if (i == SC_TASK_STATUS_COUNT) {
                reply_error(d, m, 400,
                            "status: '%.64s' is not one of pending, parked, retrying, exhausted, "
                            "completed, archived",
                            s);
                return false;
            }
            f->status = i;
        }
    }
    if ((v = json_object_get(req, "category")) && !json_is_null(v)) {
        policy_category c;
        const char *s = json_string_value(v);
        if (!s || policy_category_parse(s, strlen(s), &c)) {
            reply_error(d, m, 400, "category: not one of transient, network, resource, permission, "
                                   "validation, permanent");
            return false;
        }
        f->category = (int)c;
    }
    if ((v = json_object_get(req, "subject")) && !json_is_null(v)) {
        const char *s = json_string_value(v);
        if (!s || !codec_subject_valid(s, strlen(s), true)) {
            reply_error(d, m, 400, "subject: must be a NATS subject (wildcards allowed)");
            return false;
        }
        f->subject = s;
    }
    if ((v = json_object_get(req, "older_than_s")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 3.2e9) {
            reply_error(d, m, 400, "older_than_s: must be a number of seconds >= 0");
            return false;
        }
        f->older_than_ms = (int64_t)(json_number_value(v) * 1000);
    }
    return true;
}

/* ---- verbs ----------------------------------------------------------------------------------- */

static void
admin_health(struct sc_daemon *d, natsMsg *m)
{
    struct sc_buf *b = &d->out;
    bool first = true;
    bool up = __atomic_load_n(&d->nats_connected, __ATOMIC_RELAXED);

    sc_buf_reset(b);
    sc_buf_appendc(b, '{');
    kstr(b, &first, "status", d->stopping ? "stopping" : up ? "ok" : "degraded");
    kstr(b, &first, "nats", up ? "connected" : "disconnected");
    kstr(b, &first, "persistence", "ok");
    kbool(b, &first, "paused", d->paused);
    kstr(b, &first, "version", DLQ_VERSION);
    sc_buf_appendc(b, '}');
    reply_buf(d, m);
}

static void
admin_stats(struct sc_daemon *d, natsMsg *m)
{
    struct sc_buf *b = &d->out;
    struct sc_counters *c = &d->c;
    size_t cats[POLICY_CAT_COUNT] = {0}, pols[POLICY_RETRY_COUNT] = {0};
    size_t active = sc_queue_active(&d->q);
    int64_t now_mono = sc_now_mono_ms(), now_wall = sc_now_wall_ms(), next;
    bool first = true, f2;

    for (struct sc_task *t = d->q.head; t; t = t->onext) {
        if (t->status == SC_TASK_COMPLETED || t->status == SC_TASK_ARCHIVED)
            continue;
        cats[t->category]++;
        pols[t->policy]++;
    }
    sc_buf_reset(b);
    sc_buf_appendc(b, '{');
    kint(b, &first, "queue_size", (int64_t)active);
    kint(b, &first, "max_size", d->cfg->max_size);
    key(b, &first, "utilization_percent");
    sc_buf_appendf(b, "%.2f", d->cfg->max_size ? 100.0 * (double)active / (double)d->cfg->max_size : 0.0);

    key(b, &first, "status_breakdown");
    f2 = true;
    sc_buf_appendc(b, '{');
    kint(b, &f2, "pending", (int64_t)(d->q.counts[SC_TASK_PENDING] - d->q.parked));
    kint(b, &f2, "parked", (int64_t)d->q.parked);
    kint(b, &f2, "retrying", (int64_t)d->q.counts[SC_TASK_RETRYING]);
    kint(b, &f2, "exhausted", (int64_t)d->q.counts[SC_TASK_EXHAUSTED]);
    kint(b, &f2, "completed", (int64_t)d->q.counts[SC_TASK_COMPLETED]);
    kint(b, &f2, "archived", (int64_t)d->q.counts[SC_TASK_ARCHIVED]);
    sc_buf_appendc(b, '}');

    key(b, &first, "error_categories");
    f2 = true;
    sc_buf_appendc(b, '{');
    for (int i = 0; i < POLICY_CAT_COUNT; i++)
        kint(b, &f2, policy_category_name((policy_category)i), (int64_t)cats[i]);
    sc_buf_appendc(b, '}');
    key(b, &first, "retry_policies");
    f2 = true;
    sc_buf_appendc(b, '{');
    for (int i = 0; i < POLICY_RETRY_COUNT; i++)
        kint(b, &f2, policy_retry_name((policy_retry)i), (int64_t)pols[i]);
    sc_buf_appendc(b, '}');

    key(b, &first, "lifetime_stats");
    f2 = true;
    sc_buf_appendc(b, '{');
    kint(b, &f2, "enqueued", (int64_t)c->enqueued);
    kint(b, &f2, "retry_success", (int64_t)c->retry_success);
    kint(b, &f2, "retry_failed", (int64_t)c->retry_failed);
    kint(b, &f2, "retry_timeouts", (int64_t)c->retry_timeouts);
    kint(b, &f2, "deferred", (int64_t)c->deferred);
    kint(b, &f2, "exhausted", (int64_t)c->exhausted);
    kint(b, &f2, "manual_retries", (int64_t)c->manual_retries);
    kint(b, &f2, "archived", (int64_t)c->archived);
    kint(b, &f2, "cleared", (int64_t)c->cleared);
    kint(b, &f2, "invalid", (int64_t)c->invalid);
    kint(b, &f2, "attempts", (int64_t)c->attempts);
    kint(b, &f2, "duplicates", (int64_t)c->duplicates);
    kint(b, &f2, "failures_while_retrying", (int64_t)c->failures_while_retrying);
    kint(b, &f2, "refused_full", (int64_t)c->refused_full);
    kint(b, &f2, "skipped", (int64_t)c->skipped);
    kint(b, &f2, "unknown_keys", (int64_t)c->unknown_keys);
    kint(b, &f2, "publish_errors", (int64_t)c->publish_errors);
    sc_buf_appendc(b, '}');

    key(b, &first, "invalid_reasons");
    f2 = true;
    sc_buf_appendc(b, '{');
    for (int i = 0; i < SC_MAX_REASONS && d->reasons[i].reason; i++)
        kint(b, &f2, d->reasons[i].reason, (int64_t)d->reasons[i].count);
    sc_buf_appendc(b, '}');

    key(b, &first, "retry_processor");
    f2 = true;
    sc_buf_appendc(b, '{');
    kbool(b, &f2, "enabled", !d->paused);
    kint(b, &f2, "scheduled", (int64_t)sc_wheel_count(d->wheel));
    kint(b, &f2, "in_flight", (int64_t)d->inflight);
    next = sc_wheel_next_due(d->wheel);
    ktime(b, &f2, "next_due_at", next == INT64_MAX ? 0 : now_wall + (next > now_mono ? next - now_mono : 0));
    key(b, &f2, "redrive");
    {
        bool f3 = true;
        sc_buf_appendc(b, '{');
        kbool(b, &f3, "active", d->redrive.active);
        kint(b, &f3, "scheduled", (int64_t)d->redrive.scheduled);
        kint(b, &f3, "rate", (int64_t)d->redrive.rate);
        sc_buf_appendc(b, '}');
    }
    sc_buf_appendc(b, '}');

    key(b, &first, "persistence");
    f2 = true;
    sc_buf_appendc(b, '{');
    kstr(b, &f2, "backend", "memory");
    kstr(b, &f2, "state", "ok");
    kint(b, &f2, "queued_writes", 0);
    kstr(b, &f2, "last_error", NULL);
    sc_buf_appendc(b, '}');

    key(b, &first, "nats");
    f2 = true;
    sc_buf_appendc(b, '{');
    kbool(b, &f2, "connected", __atomic_load_n(&d->nats_connected, __ATOMIC_RELAXED));
    kint(b, &f2, "reconnects", (int64_t)__atomic_load_n(&d->reconnects, __ATOMIC_RELAXED));
    sc_buf_appendc(b, '}');

    kint(b, &first, "uptime_s", (now_mono - d->started_mono) / 1000);
    kstr(b, &first, "version", DLQ_VERSION);
    sc_buf_appendc(b, '}');
    reply_buf(d, m);
}

static void
task_json(struct sc_daemon *d, struct sc_buf *b, const struct sc_task *t, bool whole)
{
    bool first = true;

    sc_buf_appendc(b, '{');
    key(b, &first, "task_id");
    codec_json_string(b, t->id, t->id_len);
    kstr(b, &first, "status", sc_task_status_name(t->status));
    kbool(b, &first, "parked", t->parked);
    kstr(b, &first, "subject", t->subject);
    kstr(b, &first, "error_category", policy_category_name(t->category));
    kint(b, &first, "retry_count", t->retry_count);
    kint(b, &first, "max_retries", t->max_retries);
    ktime(b, &first, "created_at", t->created_at);
    ktime(b, &first, "next_retry_at", t->next_retry_at);
    if (!whole) {
        sc_buf_appendc(b, '}');
        return;
    }
    kstr(b, &first, "retry_subject", t->retry_subject);
    kstr(b, &first, "park_reason", t->park_reason);
    kstr(b, &first, "error", t->error);
    kstr(b, &first, "error_type", t->error_type);
    kstr(b, &first, "classifier_rule", t->rule_id);
    kstr(b, &first, "retry_policy", policy_retry_name(t->policy));
    ktime(b, &first, "updated_at", t->updated_at);
    ktime(b, &first, "last_attempt_at", t->last_attempt_at);
    ktime(b, &first, "first_failed_at", t->first_failed_at);
    kint(b, &first, "episode", t->episode);
    kint(b, &first, "version", (int64_t)t->version);
    key(b, &first, "history");
    sc_buf_appendc(b, '[');
    for (unsigned i = 0; i < t->hist_len; i++) {
        const struct sc_attempt *a = &t->hist[(t->hist_head + i) % d->q.hist_cap];
        bool f2 = true;
        if (i)
            sc_buf_appendc(b, ',');
        sc_buf_appendc(b, '{');
        kint(b, &f2, "attempt", a->attempt);
        ktime(b, &f2, "at", a->at_ms);
        kstr(b, &f2, "outcome", sc_outcome_name((sc_outcome_kind)a->outcome));
        kstr(b, &f2, "error", a->error);
        sc_buf_appendc(b, '}');
    }
    sc_buf_appendc(b, ']');
    kmsgpack(d, b, &first, "metadata", t->metadata, t->metadata_len);
    kmsgpack(d, b, &first, "repos", t->repos, t->repos_len);
    kmsgpack(d, b, &first, "task", t->payload, t->payload_len);
    kint(b, &first, "task_size", (int64_t)t->payload_len);
    sc_buf_appendc(b, '}');
}

/* Finds the task named by req's task_id; replies 400/404 and returns NULL when there is none. */
static struct sc_task *
find_task(struct sc_daemon *d, natsMsg *m, json_t *req)
{
    json_t *v = req ? json_object_get(req, "task_id") : NULL;
    struct sc_task *t;

    if (!v || !json_is_string(v) || json_string_length(v) == 0) {
        reply_error(d, m, 400, "task_id: missing");
        return NULL;
    }
    t = sc_queue_find(&d->q, json_string_value(v), json_string_length(v));
    if (!t)
        reply_error(d, m, 404, "task_id: no such task");
    return t;
}

static void
admin_get(struct sc_daemon *d, natsMsg *m, json_t *req)
{
    struct sc_task *t = find_task(d, m, req);

    if (!t)
        return;
    sc_buf_reset(&d->out);
    task_json(d, &d->out, t, true);
    reply_buf(d, m);
}

static void
admin_list(struct sc_daemon *d, natsMsg *m, json_t *req)
{
    struct sc_filter f;
    struct sc_buf *b = &d->out;
    int64_t limit = LIST_DEFAULT, now = sc_now_wall_ms();
    uint64_t after = 0, last = 0;
    size_t n = 0, total = 0;
    bool more = false;
    json_t *v;

    if (!parse_filter(d, m, req, &f))
        return;
    if (req && (v = json_object_get(req, "limit")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > LIST_MAX) {
            reply_error(d, m, 400, "limit: must be an integer 1-%d", LIST_MAX);
            return;
        }
        limit = json_integer_value(v);
    }
    if (req && (v = json_object_get(req, "cursor")) && !json_is_null(v)) {
        const char *s = json_string_value(v);
        char *end;
        if (!s || !*s || (after = strtoull(s, &end, 10), *end != '\0')) {
            reply_error(d, m, 400, "cursor: not a cursor this API returned");
            return;
        }
    }
    sc_buf_reset(b);
    sc_buf_append(b, "{\"tasks\":[", 10);
    for (struct sc_task *t = d->q.head; t; t = t->onext) {
        if (!sc_filter_match(&f, t, now))
            continue;
        total++;
        if (t->seq <= after)
            continue;
        if ((int64_t)n == limit) {
            more = true;
            continue;
        }
        if (n)
            sc_buf_appendc(b, ',');
        task_json(d, b, t, false);
        last = t->seq;
        n++;
    }
    sc_buf_append(b, "],\"next_cursor\":", 16);
    if (more)
        sc_buf_appendf(b, "\"%llu\"", (unsigned long long)last);
    else
        sc_buf_append(b, "null", 4);
    sc_buf_appendf(b, ",\"total\":%zu}", total);
    reply_buf(d, m);
}

/* True when a manual action may touch t (not terminal, not in flight). */
static bool
actionable(const struct sc_task *t)
{
    return t->status == SC_TASK_PENDING || t->status == SC_TASK_EXHAUSTED;
}

static void
redrive_stop(struct sc_daemon *d)
{
    d->redrive.active = false;
    free(d->redrive.subject);
    d->redrive.subject = NULL;
    if (d->redrive.ev)
        event_del(d->redrive.ev);
}

/* Background redrive: schedules matching tasks in seq order at the requested rate. */
static void
on_redrive(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_redrive *r = &d->redrive;
    int64_t now = sc_now_mono_ms(), wall = sc_now_wall_ms();
    struct sc_task *t;

    (void)fd;
    (void)what;
    if (!r->active)
        return;
    r->tokens += (double)(now - r->last_mono) * (double)r->rate / 1000.0;
    r->last_mono = now;
    if (r->tokens > (double)r->rate)
        r->tokens = (double)r->rate;
    r->filter.subject = r->subject;
    for (t = d->q.head; t && t->seq <= r->next_seq; t = t->onext)
        ;
    for (; t && r->tokens >= 1; t = t->onext) {
        r->next_seq = t->seq;
        if (t->seq > r->last_seq)
            break;
        if (!actionable(t) || !sc_filter_match(&r->filter, t, wall) || sc_retry_now(d, t, wall))
            continue;
        d->c.manual_retries++;
        r->scheduled++;
        r->tokens -= 1;
    }
    if (!t || t->seq > r->last_seq) {
        sc_log(SC_LOG_INFO, "redrive finished", "scheduled", sc_log_int((int64_t)r->scheduled), NULL);
        redrive_stop(d);
    }
}

static void
admin_retry(struct sc_daemon *d, natsMsg *m, json_t *req)
{
    struct sc_filter f;
    struct sc_redrive *r = &d->redrive;
    int64_t now = sc_now_wall_ms();
    json_t *rate;
    size_t n = 0;

    if (req && json_object_get(req, "task_id")) {
        struct sc_task *t = find_task(d, m, req);
        if (!t)
            return;
        if (!actionable(t)) {
            reply_error(d, m, 409, "task is %s; only pending or exhausted tasks can be retried",
                        sc_task_status_name(t->status));
            return;
        }
        if (sc_retry_now(d, t, now)) {
            reply_error(d, m, 409, "task has no usable retry subject (%s)",
                        t->park_reason ? t->park_reason : "refused");
            return;
        }
        d->c.manual_retries++;
        sc_buf_reset(&d->out);
        sc_buf_append(&d->out, "{\"scheduled\":1}", 15);
        reply_buf(d, m);
        return;
    }
    if (!parse_filter(d, m, req, &f))
        return;
    rate = req ? json_object_get(req, "rate") : NULL;
    if (rate && !json_is_null(rate) &&
        (!json_is_number(rate) || json_number_value(rate) < 1 || json_number_value(rate) > 1e7)) {
        reply_error(d, m, 400, "rate: must be a number of tasks per second 1-10000000");
        return;
    }
    if (r->active) {
        reply_error(d, m, 409, "a redrive is already running (%llu scheduled)",
                    (unsigned long long)r->scheduled);
        return;
    }
    for (struct sc_task *t = d->q.head; t; t = t->onext)
        if (actionable(t) && t->retry_subject && sc_filter_match(&f, t, now))
            n++;
    if (rate && !json_is_null(rate)) {
        struct timeval tv = {0, 10000};
        r->active = true;
        r->rate = json_number_value(rate);
        r->tokens = 1;
        r->last_mono = sc_now_mono_ms();
        r->scheduled = 0;
        r->filter = f;
        r->subject = f.subject ? sc_xstrdup(f.subject) : NULL;
        r->next_seq = 0;
        r->last_seq = d->q.tail ? d->q.tail->seq : 0;
        if (!r->ev)
            r->ev = event_new(d->base, -1, EV_PERSIST, on_redrive, d);
        event_add(r->ev, &tv);
        sc_buf_reset(&d->out);
        sc_buf_appendf(&d->out, "{\"scheduled\":%zu,\"rate\":%g,\"background\":true}", n, r->rate);
        reply_buf(d, m);
        return;
    }
    n = 0;
    for (struct sc_task *t = d->q.head; t; t = t->onext) {
        if (actionable(t) && sc_filter_match(&f, t, now) && sc_retry_now(d, t, now) == SC_OK) {
            d->c.manual_retries++;
            n++;
        }
    }
    sc_buf_reset(&d->out);
    sc_buf_appendf(&d->out, "{\"scheduled\":%zu}", n);
    reply_buf(d, m);
}

/* Archives t: terminal, kept only with store.keep_completed. */
static void
archive_one(struct sc_daemon *d, struct sc_task *t, int64_t now)
{
    sc_flight_release(d, t);
    if (sc_wheel_entry_scheduled(&t->timer))
        sc_wheel_cancel(t->status == SC_TASK_RETRYING ? d->twheel : d->wheel, &t->timer);
    sc_queue_set_status(&d->q, t, SC_TASK_ARCHIVED, false);
    t->next_retry_at = 0;
    t->updated_at = now;
    sc_store_changed(d, t);
    sc_queue_history(&d->q, t, SC_OUT_ARCHIVED, t->retry_count, now, NULL, 0);
    d->c.archived++;
    sc_event(d, "archived", t, t->retry_count, "");
    if (!d->cfg->store_keep_completed)
        sc_task_drop(d, t);
}

static bool
archivable(const struct sc_task *t)
{
    return t->status == SC_TASK_PENDING || t->status == SC_TASK_RETRYING ||
           t->status == SC_TASK_EXHAUSTED;
}

static void
admin_archive(struct sc_daemon *d, natsMsg *m, json_t *req)
{
    struct sc_filter f;
    int64_t now = sc_now_wall_ms();
    size_t n = 0;
    struct sc_task *t, *next;

    if (req && json_object_get(req, "task_id")) {
        if (!(t = find_task(d, m, req)))
            return;
        if (!archivable(t)) {
            reply_error(d, m, 409, "task is already %s", sc_task_status_name(t->status));
            return;
        }
        archive_one(d, t, now);
        n = 1;
    } else {
        if (!parse_filter(d, m, req, &f))
            return;
        for (t = d->q.head; t; t = next) {
            next = t->onext;
            if (archivable(t) && sc_filter_match(&f, t, now)) {
                archive_one(d, t, now);
                n++;
            }
        }
    }
    sc_buf_reset(&d->out);
    sc_buf_appendf(&d->out, "{\"archived\":%zu}", n);
    reply_buf(d, m);
}

static void
admin_clear(struct sc_daemon *d, natsMsg *m, json_t *req)
{
    struct sc_filter f;
    int64_t now = sc_now_wall_ms();
    json_t *confirm = req ? json_object_get(req, "confirm") : NULL;
    size_t n = 0;
    struct sc_task *t, *next;

    if (!parse_filter(d, m, req, &f))
        return;
    for (t = d->q.head; t; t = t->onext)
        if (sc_filter_match(&f, t, now))
            n++;
    if (!json_is_true(confirm)) {
        reply_error(d, m, 400, "confirm: clear would remove %zu tasks; send \"confirm\": true", n);
        return;
    }
    n = 0;
    for (t = d->q.head; t; t = next) {
        next = t->onext;
        if (sc_filter_match(&f, t, now)) {
            sc_event(d, "cleared", t, t->retry_count, "");
            sc_task_drop(d, t);
            n++;
        }
    }
    d->c.cleared += n;
    sc_log(SC_LOG_INFO, "tasks cleared", "count", sc_log_int((int64_t)n), NULL);
    sc_buf_reset(&d->out);
    sc_buf_appendf(&d->out, "{\"cleared\":%zu}", n);
    reply_buf(d, m);
}

static void
admin_classify(struct sc_daemon *d, natsMsg *m, json_t *req)
{
    const char *err = "", *etype = NULL, *rule = NULL;
    size_t elen = 0, etlen = 0;
    policy_category cat;
    policy_retry pol;
    struct sc_buf *b = &d->out;
    bool first = true;
    json_t *v;

    if (req && (v = json_object_get(req, "error")) && json_is_string(v)) {
        err = json_string_value(v);
        elen = json_string_length(v);
    }
    if (req && (v = json_object_get(req, "error_type")) && json_is_string(v)) {
        etype = json_string_value(v);
        etlen = json_string_length(v);
    }
    cat = policy_classify(d->classifier, etype, etlen, err, elen, &rule);
    pol = d->cfg->has_default_retry_policy ? d->cfg->default_retry_policy : policy_default_retry(cat);
    sc_buf_reset(b);
    sc_buf_appendc(b, '{');
    kstr(b, &first, "category", policy_category_name(cat));
    kstr(b, &first, "rule", rule);
    kstr(b, &first, "retry_policy", policy_retry_name(pol));
    kbool(b, &first, "retryable", pol != POLICY_NEVER);
    key(b, &first, "delays_ms");
    sc_buf_appendc(b, '[');
    for (int n = 1; pol != POLICY_NEVER && n <= 5 && n <= d->cfg->default_max_retries; n++)
        sc_buf_appendf(b, "%s%lld", n > 1 ? "," : "",
                       (long long)policy_backoff_raw(&d->cfg->backoff, pol, n));
    sc_buf_appendc(b, ']');
    kint(b, &first, "max_retries", d->cfg->default_max_retries);
    sc_buf_appendc(b, '}');
    reply_buf(d, m);
}

static void
admin_pause(struct sc_daemon *d, natsMsg *m, bool pause)
{
    d->paused = pause;
    sc_log(SC_LOG_INFO, pause ? "automatic retries paused" : "automatic retries resumed", NULL);
    sc_buf_reset(&d->out);
    sc_buf_appendf(&d->out, "{\"paused\":%s}", pause ? "true" : "false");
    reply_buf(d, m);
}

void
sc_admin(struct sc_daemon *d, natsMsg *m)
{
    const char *subj = natsMsg_GetSubject(m);
    const char *verb = strrchr(subj, '.');
    const char *data = natsMsg_GetData(m);
    int len = natsMsg_GetDataLength(m);
    json_t *req = NULL;
    json_error_t jerr;
    int blank = 1;

    if (!natsMsg_GetReply(m))
        return; /* admin calls are requests; a plain publish has nobody to answer */
    verb = verb ? verb + 1 : "";
    for (int i = 0; i < len; i++)
        if (data[i] != ' ' && data[i] != '\n' && data[i] != '\r' && data[i] != '\t')
            blank = 0;
    if (len > ADMIN_REQ_MAX) {
        reply_error(d, m, 400, "request: larger than %d bytes", ADMIN_REQ_MAX);
        return;
    }
    if (!blank) {
        req = json_loadb(data, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
        if (!req || !json_is_object(req)) {
            reply_error(d, m, 400, "request: not a JSON object (%s)", req ? "wrong type" : jerr.text);
            json_decref(req);
            return;
        }
    }
    sc_log(SC_LOG_DEBUG, "admin request", "verb", verb, NULL);
    if (strcmp(verb, "health") == 0)
        admin_health(d, m);
    else if (strcmp(verb, "stats") == 0)
        admin_stats(d, m);
    else if (strcmp(verb, "get") == 0)
        admin_get(d, m, req);
    else if (strcmp(verb, "list") == 0)
        admin_list(d, m, req);
    else if (strcmp(verb, "retry") == 0)
        admin_retry(d, m, req);
    else if (strcmp(verb, "archive") == 0)
        admin_archive(d, m, req);
    else if (strcmp(verb, "clear") == 0)
        admin_clear(d, m, req);
    else if (strcmp(verb, "classify") == 0)
        admin_classify(d, m, req);
    else if (strcmp(verb, "pause") == 0)
        admin_pause(d, m, true);
    else if (strcmp(verb, "resume") == 0)
        admin_pause(d, m, false);
    else
        reply_error(d, m, 404, "unknown admin verb '%.64s'", verb);
    json_decref(req);
}

void
sc_admin_destroy(struct sc_daemon *d)
{
    redrive_stop(d);
    if (d->redrive.ev)
        event_free(d->redrive.ev);
    d->redrive.ev = NULL;
}
