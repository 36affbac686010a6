/* admin.c - the admin request/reply API on <prefix>.admin.<verb> (DESIGN section 8), with per-verb statistics for service discovery. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "admin.h"
#include "advisory.h"
#include "alerts.h"
#include "audit.h"
#include "cluster.h"
#include "daemon.h"
#include "metrics.h"
#include "micro.h"
#include "mirror.h"
#include "peers.h"
#include "serving.h"
#include "takeover.h"
#include "workers.h"
#include "breaker.h"

#define LIST_DEFAULT 50
#define LIST_MAX 1000
#define GROUPS_DEFAULT 50
#define GROUPS_MAX 1000
#define ERROR_SUMMARY_MAX 200 /* bytes of the last error in a list summary or a group */
#define ADMIN_REQ_MAX (1024 * 1024)
#define REDRIVE_TICK_US 10000
#define RATE_MAX 1e7

/*
 * One admin request while it is handled: the message, its parsed body (NULL
 * when empty) and the error it was answered with, for the endpoint
 * statistics. Lives on the loop thread's stack for one sc_admin() call.
 */
struct admin_req {
    struct sc_daemon *d;
    natsMsg *m;       /* NULL: the answer stays in d->out (a member's part of a cluster request) */
    json_t *body;
    bool member;      /* a member's part of a cluster request (fanout.c): list in partition order */
    int64_t would_clear; /* clear without confirm: the count, in the error (-1: none) */
    const char *principal; /* who asks (audit.h): "local", "http:alice", "nats:bob" ... */
    int64_t audit_count; /* a mutating verb: the tasks it changed (a dry run: would change), for its audit record */
    bool dry_run;        /* the request says "dry_run": true: nothing changes, nothing is noted */
    char note[128];      /* a mutating verb: the history note of each task it changes ("retry by local") */
    int error_code;
    char error[256];
};

/* ---- replies --------------------------------------------------------------------------------- */

/*
 * reply_error() answers {"error":{"code":N,"message":"..."}} with the
 * Nats-Service-Error and Nats-Service-Error-Code headers (sc_respond) and
 * remembers the error for the endpoint statistics.
 */
static void
reply_error(struct admin_req *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
reply_error(struct admin_req *r, int code, const char *fmt, ...)
{
    struct sc_buf *b = &r->d->out;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
    r->error_code = code;
    sc_buf_reset(b);
    sc_buf_appendf(b, "{\"error\":{\"code\":%d,\"message\":", code);
    sc_json_quote(b, r->error, strlen(r->error));
    if (r->would_clear >= 0) /* a cluster request sums the members' counts (fanout.c) */
        sc_buf_appendf(b, ",\"would_clear\":%lld", (long long)r->would_clear);
    sc_buf_append(b, "}}", 2);
    if (r->m)
        sc_respond(r->d, r->m, b->data, b->len, code, r->error);
}

/* reply_buf() answers with the JSON object in d->out (kept there when r->m is NULL). */
static void
reply_buf(struct admin_req *r)
{
    if (r->m)
        sc_respond(r->d, r->m, r->d->out.data, r->d->out.len, 0, NULL);
}

/* ---- request bodies -------------------------------------------------------------------------- */

#define FILTER_KEYS "status", "category", "subject", "older_than_s", "group", "error", "error_type", "id_prefix"
#define FILTER_TEXT_MAX 1024 /* longest error / error_type / id_prefix a filter takes */

/*
 * check_keys() refuses (400) a body with a key that is not in allowed
 * (NULL-terminated): a typo such as "staus" must not turn a filtered clear
 * into a clear of everything. Returns true when every key is known.
 */
static bool
check_keys(struct admin_req *r, const char *const *allowed)
{
    const char *k;
    json_t *v;
    char list[200];
    size_t n = 0;

    if (!r->body)
        return true;
    json_object_foreach(r->body, k, v) {
        size_t i;
        for (i = 0; allowed[i]; i++)
            if (strcmp(k, allowed[i]) == 0)
                break;
        if (allowed[i])
            continue;
        list[0] = '\0';
        for (i = 0; allowed[i] && n < sizeof(list); i++)
            n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", allowed[i]);
        reply_error(r, 400, "unknown key '%.64s' (this verb takes: %s)", k,
                    allowed[0] ? list : "no keys");
        return false;
    }
    return true;
}

/* has_filter_key() tells whether the body holds any filter key (with a non-null value). */
static bool
has_filter_key(const struct admin_req *r)
{
    static const char *const keys[] = {FILTER_KEYS, NULL};

    for (size_t i = 0; r->body && keys[i]; i++) {
        json_t *v = json_object_get(r->body, keys[i]);
        /* "" matches every task (a substring, a prefix): no filter, as null is */
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return true;
    }
    return false;
}

/*
 * filter_or_all() guards the verbs that change tasks by filter (retry,
 * archive, clear): DESIGN section 8 says an empty filter must never change
 * every task, so a request without any filter key is refused (400) unless
 * it says "all": true, and "all" is a boolean that takes no filter. Call it
 * after check_keys() and before parse_filter(). Returns true when the
 * request may go on; otherwise it has replied.
 */
static bool
filter_or_all(struct admin_req *r, const char *verb)
{
    json_t *all = r->body ? json_object_get(r->body, "all") : NULL;

    if (all && !json_is_null(all) && !json_is_boolean(all)) {
        reply_error(r, 400, "all: must be true or false");
        return false;
    }
    if (json_is_true(all)) {
        if (has_filter_key(r)) {
            reply_error(r, 400, "all: \"all\": true takes no filter (give one or the other)");
            return false;
        }
        return true;
    }
    if (!has_filter_key(r)) {
        reply_error(r, 400,
                    "%s: an empty filter would change every task; give a task_id or a filter "
                    "(status, category, subject, older_than_s, group, error, error_type, id_prefix), or "
                    "send \"all\": true",
                    verb);
        return false;
    }
    return true;
}

/*
 * Reads the text filter key (error, error_type, id_prefix) into *out
 * (borrowed from the body; NULL when absent or null): a string of at most
 * FILTER_TEXT_MAX bytes without NUL. Replies 400 and returns false otherwise.
 */
static bool
filter_text(struct admin_req *r, const char *key, const char **out)
{
    json_t *v = json_object_get(r->body, key);

    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v) || json_string_length(v) > FILTER_TEXT_MAX ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        reply_error(r, 400, "%s: must be a string of at most %d bytes (no NUL)", key,
                    FILTER_TEXT_MAX);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* Reads the filter keys of the body into f; on a bad value replies 400 and returns false. */
static bool
parse_filter(struct admin_req *r, struct dlq_filter *f)
{
    json_t *v, *req = r->body;

    f->status = -1;
    f->want_parked = -1;
    f->category = -1;
    f->subject = NULL;
    f->older_than_ms = 0;
    f->group = 0;
    f->error = f->error_type = f->id_prefix = NULL;
    if (!req)
        return true;
    if ((v = json_object_get(req, "status")) && !json_is_null(v)) {
        const char *s = json_string_value(v);
        if (!s) {
            reply_error(r, 400, "status: must be a string");
            return false;
        }
        if (strcasecmp(s, "parked") == 0) { /* names of values: any ASCII case, as every enum (README) */
            f->status = DLQ_TASK_PENDING;
            f->want_parked = 1;
        } else {
            int i;
            for (i = 0; i < DLQ_TASK_STATUS_COUNT; i++)
                if (strcasecmp(s, dlq_task_status_name((dlq_task_status)i)) == 0)
                    break;
            if (i == DLQ_TASK_STATUS_COUNT) {
                reply_error(r, 400,
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
            reply_error(r, 400, "category: not one of transient, network, resource, permission, "
                                "validation, permanent");
            return false;
        }
        f->category = (int)c;
    }
    if ((v = json_object_get(req, "subject")) && !json_is_null(v)) {
        const char *s = json_string_value(v);
        if (!s || !codec_subject_valid(s, strlen(s), true)) {
            reply_error(r, 400, "subject: must be a NATS subject (wildcards allowed)");
            return false;
        }
        f->subject = s;
    }
    if ((v = json_object_get(req, "older_than_s")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 3.2e9) {
            reply_error(r, 400, "older_than_s: must be a number of seconds >= 0");
            return false;
        }
        f->older_than_ms = (int64_t)(json_number_value(v) * 1000);
    }
    if ((v = json_object_get(req, "group")) && !json_is_null(v)) {
        if (!json_is_string(v) || !dlq_group_parse(json_string_value(v), json_string_length(v), &f->group)) {
            reply_error(r, 400, "group: must be 16 hex digits, as list and groups show it");
            return false;
        }
    }
    return filter_text(r, "error", &f->error) && filter_text(r, "error_type", &f->error_type) &&
           filter_text(r, "id_prefix", &f->id_prefix);
}

/*
 * parse_dry_run() reads the body's "dry_run" (absent or null: false) into
 * *dry; a value that is not a boolean is refused (400 sent, false returned).
 */
static bool
parse_dry_run(struct admin_req *r, bool *dry)
{
    json_t *v = r->body ? json_object_get(r->body, "dry_run") : NULL;

    *dry = false;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_boolean(v)) {
        reply_error(r, 400, "dry_run: must be true or false");
        return false;
    }
    *dry = json_is_true(v);
    return true;
}

/* Answers a dry run: {"dry_run":true,"matched":n}, with the task and why not when one task was named. */
static void
reply_dry_run(struct admin_req *r, size_t n, const struct dlq_task *t, const char *why)
{
    struct sc_jw w;

    r->audit_count = (int64_t)n; /* the record of a dry run counts what would change */

    sc_buf_reset(&r->d->out);
    sc_jw_init(&w, &r->d->out);
    sc_jw_open(&w, NULL, '{');
    sc_jw_bool(&w, "dry_run", true);
    sc_jw_int(&w, "matched", (int64_t)n);
    if (t) {
        sc_jw_strn(&w, "task_id", t->id, t->id_len);
        sc_jw_str(&w, "status", dlq_task_status_name(t->status));
        if (why)
            sc_jw_str(&w, "reason", why);
    }
    sc_jw_close(&w, '}');
    reply_buf(r);
}

/*
 * error_cut() returns how many bytes of the error e (NUL-terminated; NULL
 * as "") a summary shows: at most ERROR_SUMMARY_MAX, cut before a UTF-8
 * continuation byte so no character is split; *cut tells whether bytes
 * were left off.
 */
static size_t
error_cut(const char *e, bool *cut)
{
    size_t n = e ? strnlen(e, ERROR_SUMMARY_MAX + 1) : 0;

    *cut = n > ERROR_SUMMARY_MAX;
    if (!*cut)
        return n;
    n = ERROR_SUMMARY_MAX;
    while (n > 0 && ((unsigned char)e[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/* Finds the task named by the body's task_id; replies 400/404 and returns NULL when there is none. */
static struct dlq_task *
find_task(struct admin_req *r)
{
    json_t *v = r->body ? json_object_get(r->body, "task_id") : NULL;
    struct dlq_task *t;

    if (!v || !json_is_string(v) || json_string_length(v) == 0) {
        reply_error(r, 400, "task_id: missing (a non-empty string)");
        return NULL;
    }
    t = dlq_queue_find(&r->d->m.q, json_string_value(v), json_string_length(v));
    if (!t)
        reply_error(r, 404, "task_id: no such task");
    return t;
}

/* ---- read verbs: they never change a task ---------------------------------------------------- */

static void
admin_health(struct admin_req *r)
{
    struct sc_daemon *d = r->d;
    struct sc_jw w;
    bool up = sc_conn_connected(d->conn);
    /* Another sidecar on this prefix outside cluster mode (peers.h): both retry the same tasks. */
    bool dup = sc_peers_get_stats(d).duplicates > 0;
    const char *backend = "memory", *pstate;
    uint64_t queued = 0;

    pstate = sc_persistence_state(d, &backend, &queued);
    sc_buf_reset(&d->out);
    sc_jw_init(&w, &d->out);
    sc_jw_open(&w, NULL, '{');
    sc_jw_str(&w, "status", d->stopping ? "stopping" : up && !dup ? "ok" : "degraded");
    sc_jw_str(&w, "nats", up ? "connected" : "disconnected");
    sc_jw_str(&w, "persistence", pstate);
    sc_jw_str(&w, "persistence_backend", backend);
    sc_jw_bool(&w, "paused", d->paused);
    sc_cluster_json(d, &w, true); /* with the leases held: which partitions this instance owns */
    sc_jw_int(&w, "uptime_s", (sc_now_mono_ms() - d->started_mono) / 1000);
    sc_jw_str(&w, "version", DLQ_VERSION);
    sc_peers_json(d, &w, "duplicates");
    sc_jw_close(&w, '}');
    reply_buf(r);
}

/* Writes "redrive": the running (or last) redrive and its progress (in retry_processor). */
static void
redrive_json(struct sc_daemon *d, struct sc_jw *w)
{
    const struct sc_redrive *rd = &d->redrive;
    uint64_t done = rd->scheduled + rd->skipped;

    sc_jw_open(w, "redrive", '{');
    sc_jw_bool(w, "active", rd->active);
    sc_jw_fmt(w, "rate", "%g", rd->rate);
    sc_jw_int(w, "matched", (int64_t)rd->matched);
    sc_jw_int(w, "scheduled", (int64_t)rd->scheduled);
    sc_jw_int(w, "skipped", (int64_t)rd->skipped);
    /* A cancelled redrive keeps what it never sent in "remaining"; a finished one has none. */
    sc_jw_int(w, "remaining",
              (int64_t)((rd->active || rd->cancelled) && rd->matched > done ? rd->matched - done : 0));
    sc_jw_fmt(w, "progress_percent", "%.1f",
              rd->matched ? 100.0 * (double)(rd->active || rd->cancelled ? done : rd->matched) /
                                (double)rd->matched
                          : (rd->started_wall ? 100.0 : 0.0));
    sc_jw_bool(w, "cancelled", rd->cancelled);
    sc_jw_time(w, "started_at", rd->started_wall);
    sc_jw_time(w, "finished_at", rd->finished_wall);
    sc_jw_close(w, '}');
}

/* Writes the counts by status, category and policy (stats). O(1): queue.c keeps them current. */
static void
stats_counts(struct sc_daemon *d, struct sc_jw *w)
{
    sc_jw_open(w, "status_breakdown", '{');
    sc_jw_int(w, "pending", (int64_t)(d->m.q.counts[DLQ_TASK_PENDING] - d->m.q.parked));
    sc_jw_int(w, "parked", (int64_t)d->m.q.parked);
    sc_jw_int(w, "retrying", (int64_t)d->m.q.counts[DLQ_TASK_RETRYING]);
    sc_jw_int(w, "exhausted", (int64_t)d->m.q.counts[DLQ_TASK_EXHAUSTED]);
    sc_jw_int(w, "completed", (int64_t)d->m.q.counts[DLQ_TASK_COMPLETED]);
    sc_jw_int(w, "archived", (int64_t)d->m.q.counts[DLQ_TASK_ARCHIVED]);
    sc_jw_close(w, '}');

    /* Every task held (parked within pending), by status and category: the console's table. */
    sc_jw_open(w, "status_by_category", '{');
    for (int s = 0; s < DLQ_TASK_STATUS_COUNT; s++) {
        sc_jw_open(w, dlq_task_status_name((dlq_task_status)s), '{');
        for (int i = 0; i < POLICY_CAT_COUNT; i++)
            sc_jw_int(w, policy_category_name((policy_category)i),
                      (int64_t)d->m.q.by_status_cat[s][i]);
        sc_jw_close(w, '}');
    }
    sc_jw_close(w, '}');

    sc_jw_open(w, "error_categories", '{');
    for (int i = 0; i < POLICY_CAT_COUNT; i++)
        sc_jw_int(w, policy_category_name((policy_category)i),
                  (int64_t)dlq_queue_active_category(&d->m.q, (policy_category)i));
    sc_jw_close(w, '}');
    sc_jw_open(w, "retry_policies", '{');
    for (int i = 0; i < POLICY_RETRY_COUNT; i++)
        sc_jw_int(w, policy_retry_name((policy_retry)i), (int64_t)d->m.q.active_policy[i]);
    sc_jw_close(w, '}');
}

/* Writes "lifetime_stats": the counters since start. */
static void
stats_lifetime(struct sc_daemon *d, struct sc_jw *w)
{
    const struct dlq_counters *c = &d->m.c;
    /* Failures lost before the loop could take them: at shutdown, or dropped by nats.c past its pending limits. */
    int64_t slow = sc_conn_sub_dropped(d->sub_failed);
    sc_jw_open(w, "lifetime_stats", '{');
    sc_jw_int(w, "enqueued", (int64_t)c->enqueued);
    sc_jw_int(w, "retry_success", (int64_t)c->retry_success);
    sc_jw_int(w, "retry_failed", (int64_t)c->retry_failed);
    sc_jw_int(w, "retry_timeouts", (int64_t)c->retry_timeouts);
    sc_jw_int(w, "deferred", (int64_t)c->deferred);
    sc_jw_int(w, "exhausted", (int64_t)c->exhausted);
    sc_jw_int(w, "manual_retries", (int64_t)c->manual_retries);
    sc_jw_int(w, "archived", (int64_t)c->archived);
    sc_jw_int(w, "cleared", (int64_t)c->cleared);
    sc_jw_int(w, "invalid", (int64_t)c->invalid);
    sc_jw_int(w, "attempts", (int64_t)c->attempts);
    sc_jw_int(w, "duplicates", (int64_t)c->duplicates);
    sc_jw_int(w, "redelivered", (int64_t)c->redelivered);
    sc_jw_int(w, "failures_while_retrying", (int64_t)c->failures_while_retrying);
    sc_jw_int(w, "refused_full", (int64_t)c->refused_full);
    sc_jw_int(w, "expired_archived", (int64_t)c->expired_archived);
    sc_jw_int(w, "expired_removed", (int64_t)c->expired_removed);
    sc_jw_int(w, "skipped", (int64_t)c->skipped);
    sc_jw_int(w, "unknown_keys", (int64_t)c->unknown_keys);
    sc_jw_int(w, "publish_errors", (int64_t)sc_conn_get_stats(d->conn).publish_errors);
    sc_jw_int(w, "ingest_dropped", (int64_t)c->ingest_dropped);
    sc_jw_int(w, "ingest_slow_consumer_dropped", slow);
    {
        struct sc_adv_stats as = sc_adv_get_stats(d->adv);
        sc_jw_int(w, "advisories", (int64_t)as.received);
        sc_jw_int(w, "advisories_invalid", (int64_t)as.invalid);
        sc_jw_int(w, "advisories_fetch_errors", (int64_t)as.fetch_errors);
        sc_jw_int(w, "advisories_filed", (int64_t)as.filed);
        sc_jw_int(w, "payload_missing", (int64_t)c->payload_missing);
    }
    sc_jw_close(w, '}');

    sc_jw_open(w, "invalid_reasons", '{');
    for (int i = 0; i < SC_MAX_REASONS && d->reasons[i].reason; i++)
        sc_jw_int(w, d->reasons[i].reason, (int64_t)d->reasons[i].count);
    sc_jw_close(w, '}');
}

/*
 * Writes "retry_processor". The next due time is the due wheel's earliest
 * entry, turned into wall-clock time with the offset taken at start, so that
 * two reads with nothing in between give the same answer (within a few ms of
 * the task's own next_retry_at; in the past when overdue).
 */
static void
stats_retry_processor(struct sc_daemon *d, struct sc_jw *w)
{
    int64_t next_due = 0, due_mono = dlq_machine_next_due(&d->m);

    if (due_mono != INT64_MAX)
        next_due = due_mono + (d->started_wall - d->started_mono);
    sc_jw_open(w, "retry_processor", '{');
    sc_jw_bool(w, "enabled", !d->paused);
    sc_jw_int(w, "scheduled", (int64_t)dlq_machine_scheduled(&d->m));
    sc_jw_int(w, "in_flight", (int64_t)d->m.inflight);
    sc_jw_time(w, "next_due_at", next_due);
    sc_jw_open(w, "priorities", '{'); /* issue 17: waiting and sent, per priority */
    for (int p = 0; p < POLICY_PRIO_COUNT; p++) {
        sc_jw_open(w, policy_priority_names[p], '{');
        sc_jw_int(w, "scheduled", (int64_t)dlq_wheel_count(d->m.wheels[p]));
        sc_jw_uint(w, "dispatched", d->m.c.dispatched[p]);
        sc_jw_close(w, '}');
    }
    sc_jw_close(w, '}');
    redrive_json(d, w);
    sc_jw_close(w, '}');
}

/* Writes "persistence" and "nats": the health of the two connections. */
static void
stats_links(struct sc_daemon *d, struct sc_jw *w)
{
    const char *backend = "memory", *pstate;
    uint64_t queued = 0;

    /* The store's health comes from the one hook /readyz and /metrics read too (metrics.c). */
    pstate = sc_persistence_state(d, &backend, &queued);
    sc_jw_open(w, "persistence", '{');
    sc_jw_str(w, "backend", backend);
    sc_jw_str(w, "state", pstate);
    sc_jw_int(w, "queued_writes", (int64_t)queued);
    sc_jw_str(w, "last_error", sc_mirror_last_error(d));
    sc_mirror_stats_json(d, w); /* the store's counters (the store mirror) */
    sc_jw_close(w, '}');

    struct sc_conn_stats nst = sc_conn_get_stats(d->conn);
    sc_jw_open(w, "nats", '{');
    sc_jw_bool(w, "connected", nst.connected);
    sc_jw_int(w, "reconnects", (int64_t)nst.reconnects);
    sc_jw_close(w, '}');
}

/* Writes "ingest": the mode, and in jetstream mode the source's state and counters. */
static void
stats_ingest(struct sc_daemon *d, struct sc_jw *w)
{
    struct sc_js_stats js = sc_js_get_stats(d->js);

    sc_jw_open(w, "ingest", '{');
    sc_jw_str(w, "mode", d->js ? "jetstream" : "core");
    if (d->js) {
        sc_jw_str(w, "stream", d->cfg->ingest_stream);
        sc_jw_str(w, "consumer", d->cfg->ingest_consumer);
        sc_jw_bool(w, "ready", js.ready);
        sc_jw_uint(w, "fetched", js.fetched);
        sc_jw_uint(w, "acked", js.acks);
        sc_jw_uint(w, "naked", js.naks);
        sc_jw_uint(w, "paused", js.pauses);
        sc_jw_uint(w, "fetch_errors", js.fetch_errors);
        sc_jw_uint(w, "setup_errors", js.setup_errors);
    }
    sc_jw_close(w, '}');
}

/* O(1) at any queue size: every count is kept up to date on every change (queue.c). */
static void
admin_stats(struct admin_req *r)
{
    struct sc_daemon *d = r->d;
    size_t active = dlq_queue_active(&d->m.q);
    struct sc_jw w;

    sc_buf_reset(&d->out);
    sc_jw_init(&w, &d->out);
    sc_jw_open(&w, NULL, '{');
    sc_jw_int(&w, "queue_size", (int64_t)active);
    sc_jw_int(&w, "max_size", d->cfg->max_size);
    sc_jw_fmt(&w, "utilization_percent", "%.2f",
              d->cfg->max_size ? 100.0 * (double)active / (double)d->cfg->max_size : 0.0);
    stats_counts(d, &w);
    stats_lifetime(d, &w);
    stats_ingest(d, &w);
    stats_retry_processor(d, &w);
    sc_workers_json(d, &w); /* retry_subjects_without_workers (workers.c) */
    sc_breaker_json(d, &w); /* circuits (breaker.c) */
    sc_jw_open(&w, "dependencies", '{'); /* held tasks (dlq/deps.c) */
    sc_jw_int(&w, "waiting", (int64_t)dlq_machine_deps_waiting(&d->m));
    sc_jw_close(&w, '}');
    dlq_effect_json(&d->m.effect, &w); /* retry_effectiveness (dlq/effect.c) */
    stats_links(d, &w);
    {
        const struct dlq_counters *c = &d->m.c;
        uint64_t counts[SC_RATE_KINDS] = {c->enqueued, c->attempts, c->retry_success, c->exhausted};
        sc_rates_json(&d->rates, sc_now_wall_ms(), counts, &w);
    }
    sc_alerts_json(d, &w);
    sc_peers_json(d, &w, "duplicate_sidecars");
    sc_cluster_json(d, &w, false);
    sc_takeover_json(d, &w);
    sc_jw_int(&w, "uptime_s", (sc_now_mono_ms() - d->started_mono) / 1000);
    sc_jw_str(&w, "version", DLQ_VERSION);
    sc_jw_close(&w, '}');
    reply_buf(r);
}

/*
 * get's view of t's delays (issue 17): "backoff_ms", the delay list that
 * times its retries (null: the policy's formula), and "backoff_source":
 * "task" (its envelope's or template's), "subject", "category" or "policy".
 */
static void
task_json_delays(struct sc_daemon *d, struct sc_jw *w, const struct dlq_task *t)
{
    struct policy_delays dl;
    const char *src = dlq_task_delays(d->cfg, t, &dl);

    if (src) {
        sc_jw_open(w, "backoff_ms", '[');
        for (uint32_t i = 0; i < dl.n; i++)
            sc_jw_int(w, NULL, dl.ms[i]);
        sc_jw_close(w, ']');
    } else {
        sc_jw_key(w, "backoff_ms");
        sc_jw_raw(w, "null", 4);
    }
    sc_jw_str(w, "backoff_source", src ? src : "policy");
}

/*
 * The view of t's dependencies (issue 17): "depends_on", the ids its
 * envelope named (only when it named some), and "waiting_for", the ids it
 * is still held for (only while held).
 */
static void
task_json_deps(struct sc_jw *w, const struct dlq_task *t)
{
    const struct dlq_deps *dp = dlq_task_deps(t);

    if (!dp)
        return;
    sc_jw_open(w, "depends_on", '[');
    for (uint32_t i = 0; i < dp->n; i++)
        sc_jw_strn(w, NULL, dp->e[i].id, dp->e[i].len);
    sc_jw_close(w, ']');
    if (!dp->waiting)
        return;
    sc_jw_open(w, "waiting_for", '[');
    for (uint32_t i = 0; i < dp->n; i++)
        if (dp->e[i].waiting)
            sc_jw_strn(w, NULL, dp->e[i].id, dp->e[i].len);
    sc_jw_close(w, ']');
}

/*
 * Writes "k": the len bytes at p in base64 (export: the exact bytes), or
 * nothing when p is NULL.
 */
static void
jw_base64(struct sc_jw *w, const char *k, const void *p, size_t len)
{
    struct sc_buf b64;

    if (!p)
        return;
    sc_buf_init(&b64, 2 * len + 16);
    if (sc_base64_encode(&b64, p, len) == SC_OK)
        sc_jw_strn(w, k, b64.data ? b64.data : "", b64.len);
    sc_buf_destroy(&b64);
}

/*
 * Writes t as JSON: the list summary, or (whole) every field DESIGN section
 * 8 names for get; with payload (get's "payload":true) also "payload_b64"
 * (the task's exact bytes) and "metadata_b64" (the metadata map's
 * MessagePack bytes, when there is one), which dlqctl export reads.
 */
static void
task_json(struct sc_daemon *d, struct sc_buf *b, const struct dlq_task *t, bool whole, bool payload)
{
    unsigned depth = codec_limits_get(d->codec)->max_depth;
    struct sc_jw w;

    sc_jw_init(&w, b);
    sc_jw_open(&w, NULL, '{');
    sc_jw_strn(&w, "task_id", t->id, t->id_len);
    sc_jw_str(&w, "status", dlq_task_status_name(t->status));
    sc_jw_bool(&w, "parked", t->parked);
    sc_jw_str(&w, "subject", t->subject);
    sc_jw_str(&w, "error_category", policy_category_name(t->category));
    sc_jw_int(&w, "retry_count", t->retry_count);
    sc_jw_int(&w, "max_retries", t->max_retries);
    sc_jw_time(&w, "created_at", t->created_at);
    sc_jw_time(&w, "next_retry_at", t->next_retry_at);
    /* the last error: a summary's is cut to ERROR_SUMMARY_MAX bytes, get's is whole */
    bool cut = false;
    size_t elen = whole ? (t->error ? strlen(t->error) : 0) : error_cut(t->error, &cut);
    char group[17];
    sc_jw_strn(&w, "error", t->error ? t->error : "", elen);
    sc_jw_bool(&w, "error_truncated", cut);
    dlq_group_hex(dlq_task_group(t), group);
    sc_jw_str(&w, "group", group);
    /* A pending task whose retry subject's last retry found no worker (workers.c). */
    sc_jw_bool(&w, "no_workers", t->status == DLQ_TASK_PENDING && !t->parked &&
                                     sc_workers_none(d, t->retry_subject));
    /* A pending task whose retry subject's circuit is open or half-open: held, not charged (breaker.c). */
    if (t->status == DLQ_TASK_PENDING && !t->parked &&
        sc_breaker_state(d, t->retry_subject) != SC_CIRCUIT_CLOSED)
        sc_jw_str(&w, "circuit", sc_circuit_state_name(sc_breaker_state(d, t->retry_subject)));
    task_json_deps(&w, t);
    if (!whole) {
        sc_jw_close(&w, '}');
        return;
    }
    sc_jw_str(&w, "retry_subject", t->retry_subject);
    sc_jw_str(&w, "park_reason", t->park_reason);
    sc_jw_str(&w, "error_type", t->error_type);
    sc_jw_str(&w, "classifier_rule", t->rule_id);
    sc_jw_str(&w, "retry_policy", policy_retry_name(t->policy));
    sc_jw_str(&w, "priority", policy_priority_name((policy_priority)t->priority));
    task_json_delays(d, &w, t);
    sc_jw_time(&w, "updated_at", t->updated_at);
    sc_jw_time(&w, "last_attempt_at", t->last_attempt_at);
    sc_jw_time(&w, "first_failed_at", t->first_failed_at);
    sc_jw_int(&w, "episode", t->episode);
    sc_jw_int(&w, "episode_id", t->episode_id);
    sc_jw_int(&w, "version", (int64_t)t->version);
    sc_jw_open(&w, "history", '[');
    for (unsigned i = 0; i < t->hist_len; i++) {
        const struct dlq_attempt *a = &t->hist[(t->hist_head + i) % d->m.q.hist_cap];
        sc_jw_open(&w, NULL, '{');
        sc_jw_int(&w, "attempt", a->attempt);
        sc_jw_time(&w, "at", a->at_ms);
        sc_jw_str(&w, "outcome", dlq_outcome_name((dlq_outcome_kind)a->outcome));
        sc_jw_str(&w, "error", a->error);
        sc_jw_close(&w, '}');
    }
    sc_jw_close(&w, ']');
    codec_jw_msgpack(&w, "metadata", t->metadata, t->metadata_len, depth);
    codec_jw_msgpack(&w, "repos", t->repos, t->repos_len, depth);
    if (!t->payload_raw)
        codec_jw_msgpack(&w, "task", t->payload, t->payload_len, depth);
    sc_adv_jw_task(&w, t); /* an advisory's original: raw payload, headers, payload_missing */
    sc_jw_int(&w, "task_size", (int64_t)t->payload_len);
    if (payload && !t->payload_missing) {
        jw_base64(&w, "payload_b64", t->payload ? t->payload : "", t->payload_len);
        jw_base64(&w, "metadata_b64", t->metadata, t->metadata_len);
    }
    uint32_t olen;
    bool oraw;
    const char *orig = dlq_task_orig_payload(t, &olen, &oraw);
    if (orig) { /* the payload before the first edit (admin edit) */
        /* Rendered (and masked, secrets.mask_keys) for everyone; null when raw bytes. */
        if (oraw)
            sc_jw_null(&w, "original_task");
        else
            codec_jw_msgpack(&w, "original_task", orig, olen, depth);
        if (payload) /* the exact bytes, unmasked: only when asked, as payload_b64 */
            jw_base64(&w, "original_payload_b64", orig, olen);
    }
    sc_jw_close(&w, '}');
}

static void
admin_get(struct admin_req *r)
{
    json_t *payload = json_object_get(r->body, "payload");
    struct dlq_task *t = find_task(r);

    if (!t)
        return;
    if (payload && !json_is_boolean(payload)) {
        reply_error(r, 400, "payload: expected true or false");
        return;
    }
    sc_buf_reset(&r->d->out);
    task_json(r->d, &r->d->out, t, true, json_is_true(payload));
    reply_buf(r);
}

/*
 * parse_cursor() reads a cursor this API returned: "<seq>:<task_id>", the
 * seq and id of the last task of the previous page (a bare "<seq>", the
 * older form, is taken too). Tasks sit in d->m.q in seq order and a task's seq
 * never changes, so "seq > cursor" never repeats or skips a task, however
 * many share a timestamp. Sets *after, and *id / *id_len (borrowed from v;
 * NULL when absent). Returns false (400 sent) on anything else.
 */
static bool
parse_cursor(struct admin_req *r, json_t *v, uint64_t *after, const char **id, size_t *id_len)
{
    const char *s = json_string_value(v), *p;
    size_t len = json_string_length(v);
    uint64_t x = 0;

    *after = 0;
    *id = NULL;
    *id_len = 0;
    if (!s || !*s)
        goto bad;
    for (p = s; p < s + len && *p != ':'; p++) {
        if (*p < '0' || *p > '9' || p - s >= 20 ||
            x > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            goto bad;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    if (p == s)
        goto bad;
    if (p < s + len) {
        if (p + 1 == s + len)
            goto bad;
        *id = p + 1;
        *id_len = (size_t)(s + len - (p + 1));
    }
    *after = x;
    return true;
bad:
    reply_error(r, 400, "cursor: not a cursor this API returned (use next_cursor as given)");
    return false;
}

/*
 * list_start() returns the first task after the cursor: the next one after
 * the named task when it is still there with that seq (one hash lookup),
 * otherwise (it was removed, or an old-style cursor) the first task whose
 * seq is larger, found by walking from whichever end of the seq list is
 * nearer to it.
 */
static struct dlq_task *
list_start(struct sc_daemon *d, uint64_t after, const char *id, size_t id_len)
{
    const struct dlq_queue *q = &d->m.q;
    struct dlq_task *t, *p, *first, *last;

    if (id && (t = dlq_queue_find(&d->m.q, id, id_len)) && t->seq == after)
        return dlq_queue_next(q, t);
    first = dlq_queue_first(q);
    last = dlq_queue_last(q);
    if (!first || after < first->seq)
        return first;
    if (after >= last->seq)
        return NULL;
    if (after - first->seq > last->seq - after) {
        for (t = last; (p = dlq_queue_prev(q, t)) && p->seq > after; t = p)
            ;
        return t->seq > after ? t : NULL;
    }
    for (t = first; t && t->seq <= after; t = dlq_queue_next(q, t))
        ;
    return t;
}

/*
 * Cluster mode lists in one order every member shares: by partition, then
 * by task id (bytes, shorter first on a tie). A cursor is "c<p>:<task_id>",
 * the last task of the previous page; the member that owns a partition
 * after a takeover holds the same tasks from the store, so a walk neither
 * repeats nor skips one when partitions move (DESIGN section 18).
 */
struct part_task {
    uint32_t p;
    const struct dlq_task *t;
};

int
sc_admin_part_cmp(uint32_t pa, const char *a, size_t alen, uint32_t pb, const char *b, size_t blen)
{
    int c;

    if (pa != pb)
        return pa < pb ? -1 : 1;
    c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int
part_task_cmp(const void *x, const void *y)
{
    const struct part_task *a = x, *b = y;

    return sc_admin_part_cmp(a->p, a->t->id, a->t->id_len, b->p, b->t->id, b->t->id_len);
}

void
sc_admin_part_cursor(struct sc_buf *out, uint32_t p, const char *id, size_t len)
{
    sc_buf_appendf(out, "c%u:", (unsigned)p);
    sc_buf_append(out, id, len);
}

/* Reads a "c<p>:<task_id>" cursor; false (400 sent) on anything else. */
static bool
parse_part_cursor(struct admin_req *r, json_t *v, uint32_t *p, const char **id, size_t *id_len)
{
    const char *s = json_string_value(v), *c;
    size_t len = json_string_length(v);
    char *end;
    unsigned long x;

    if (!s || len < 4 || s[0] != 'c' || s[1] < '0' || s[1] > '9')
        goto bad;
    x = strtoul(s + 1, &end, 10);
    c = end;
    if (*c != ':' || x >= (unsigned long)r->d->cfg->cluster_partitions || c + 1 >= s + len)
        goto bad;
    *p = (uint32_t)x;
    *id = c + 1;
    *id_len = (size_t)(s + len - *id);
    return true;
bad:
    reply_error(r, 400, "cursor: not a cursor this API returned (use next_cursor as given)");
    return false;
}

/*
 * A member's page of a cluster list: its tasks matching f after the cursor,
 * in (partition, id) order, at most limit, with next_cursor set when more
 * follow here; total counts its matches. O(tasks log tasks).
 */
static void
list_partitioned(struct admin_req *r, const struct dlq_filter *f, int64_t limit, int64_t now)
{
    struct sc_daemon *d = r->d;
    uint32_t parts = (uint32_t)d->cfg->cluster_partitions, cp = 0;
    struct sc_buf *b = &d->out;
    const char *cid = NULL;
    size_t cid_len = 0, n = 0, total = 0;
    struct part_task *v;
    json_t *c;

    if (r->body && (c = json_object_get(r->body, "cursor")) && !json_is_null(c) &&
        !parse_part_cursor(r, c, &cp, &cid, &cid_len))
        return;
    v = sc_xcalloc(d->m.q.count + 1, sizeof(*v)); /* every task held: completed and archived match too */
    for (struct dlq_task *t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t)) {
        if (!dlq_filter_match(f, t, now))
            continue;
        total++;
        uint32_t p = dlq_partition_of(t->id, t->id_len, parts);
        if (cid && sc_admin_part_cmp(p, t->id, t->id_len, cp, cid, cid_len) <= 0)
            continue;
        v[n++] = (struct part_task){p, t};
    }
    qsort(v, n, sizeof(*v), part_task_cmp);
    sc_buf_reset(b);
    sc_buf_append(b, "{\"tasks\":[", 10);
    for (size_t i = 0; i < n && (int64_t)i < limit; i++) {
        if (i)
            sc_buf_appendc(b, ',');
        task_json(d, b, v[i].t, false, false);
    }
    sc_buf_append(b, "],\"next_cursor\":", 16);
    if ((int64_t)n > limit) {
        const struct dlq_task *last = v[limit - 1].t;
        struct sc_buf *cb = &d->scratch;
        sc_buf_reset(cb);
        sc_admin_part_cursor(cb, v[limit - 1].p, last->id, last->id_len);
        sc_json_quote(b, cb->data, cb->len);
    } else {
        sc_buf_append(b, "null", 4);
    }
    sc_buf_appendf(b, ",\"total\":%zu}", total);
    free(v);
    reply_buf(r);
}

static void
admin_list(struct admin_req *r)
{
    struct sc_daemon *d = r->d;
    struct dlq_filter f;
    struct sc_buf *b = &d->out;
    int64_t limit = LIST_DEFAULT, now = sc_now_wall_ms();
    uint64_t after = 0;
    const struct dlq_task *last = NULL;
    const char *cid = NULL;
    size_t n = 0, total = 0, cid_len = 0;
    bool more = false;
    json_t *v;

    if (!parse_filter(r, &f))
        return;
    if (r->body && (v = json_object_get(r->body, "limit")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > LIST_MAX) {
            reply_error(r, 400, "limit: must be an integer 1-%d", LIST_MAX);
            return;
        }
        limit = json_integer_value(v);
    }
    if (r->member) {
        list_partitioned(r, &f, limit, now);
        return;
    }
    if (r->body && (v = json_object_get(r->body, "cursor")) && !json_is_null(v) &&
        !parse_cursor(r, v, &after, &cid, &cid_len))
        return;
    sc_buf_reset(b);
    sc_buf_append(b, "{\"tasks\":[", 10);
    /* O(limit) for a resumable cursor: start after the named task, stop at the first match past the page. */
    for (struct dlq_task *t = list_start(d, after, cid, cid_len); t; t = dlq_queue_next(&d->m.q, t)) {
        if (!dlq_filter_match(&f, t, now))
            continue;
        if ((int64_t)n == limit) {
            more = true;
            break;
        }
        if (n)
            sc_buf_appendc(b, ',');
        task_json(d, b, t, false, false);
        last = t;
        n++;
    }
    /* total: from the counts, unless the filter needs a walk (subject, older_than_s). */
    if (!dlq_queue_filter_count(&d->m.q, &f, &total)) {
        for (struct dlq_task *t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t))
            if (dlq_filter_match(&f, t, now))
                total++;
    }
    sc_buf_append(b, "],\"next_cursor\":", 16);
    if (more && last) {
        char seq[24];
        int sl = snprintf(seq, sizeof(seq), "%llu:", (unsigned long long)last->seq);
        struct sc_buf *cb = &d->scratch;
        sc_buf_reset(cb);
        sc_buf_append(cb, seq, (size_t)sl);
        sc_buf_append(cb, last->id, last->id_len);
        sc_json_quote(b, cb->data, cb->len);
    } else {
        sc_buf_append(b, "null", 4);
    }
    sc_buf_appendf(b, ",\"total\":%zu}", total);
    reply_buf(r);
}

/* One failure group while groups counts: its id, a task that shows it, and its counts. */
struct group_row {
    uint64_t group; /* 0: an empty slot of the map */
    const struct dlq_task *example;
    size_t count;
    int64_t first_seen, last_seen; /* wall ms */
};

/* Largest count first; then the most recently seen; then by id, so that the order is total. */
static int
group_row_cmp(const void *x, const void *y)
{
    const struct group_row *a = x, *b = y;

    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    if (a->last_seen != b->last_seen)
        return a->last_seen > b->last_seen ? -1 : 1;
    return a->group < b->group ? -1 : a->group > b->group;
}

/*
 * group_slot() finds group g in the open-addressing map of cap slots (a
 * power of two), or the empty slot where it goes.
 */
static struct group_row *
group_slot(struct group_row *map, size_t cap, uint64_t g)
{
    size_t i = (size_t)g & (cap - 1);

    while (map[i].group && map[i].group != g)
        i = (i + 1) & (cap - 1);
    return &map[i];
}

/*
 * admin_groups() answers the groups verb: the tasks matching the filter,
 * grouped by dlq_task_group(), largest group first, at most limit groups
 * (a cluster member answers up to GROUPS_MAX of its own for the merge).
 * Memory: a map of two slots per group found, freed before the reply
 * (O(matched tasks) time).
 */
static void
admin_groups(struct admin_req *r)
{
    struct sc_daemon *d = r->d;
    struct dlq_filter f;
    int64_t limit = GROUPS_DEFAULT, now = sc_now_wall_ms();
    size_t cap = 64, n = 0;
    struct group_row *map;
    struct sc_jw w;
    json_t *v;

    if (!parse_filter(r, &f))
        return;
    if (r->body && (v = json_object_get(r->body, "limit")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > GROUPS_MAX) {
            reply_error(r, 400, "limit: must be an integer 1-%d", GROUPS_MAX);
            return;
        }
        limit = json_integer_value(v);
    }
    if (r->member)
        limit = GROUPS_MAX; /* the merge (fanout.c) adds up the members' groups and cuts to limit */
    map = sc_xcalloc(cap, sizeof(*map));
    for (struct dlq_task *t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t)) {
        if (!dlq_filter_match(&f, t, now))
            continue;
        if (2 * (n + 1) > cap) { /* keep the map at most half full */
            struct group_row *bigger = sc_xcalloc(cap * 2, sizeof(*bigger));
            for (size_t i = 0; i < cap; i++)
                if (map[i].group)
                    *group_slot(bigger, cap * 2, map[i].group) = map[i];
            free(map);
            map = bigger;
            cap *= 2;
        }
        uint64_t g = dlq_task_group(t);
        int64_t first = t->first_failed_at ? t->first_failed_at : t->created_at;
        int64_t last = t->last_attempt_at > t->created_at ? t->last_attempt_at : t->created_at;
        struct group_row *row = group_slot(map, cap, g);
        if (!row->group) {
            *row = (struct group_row){g, t, 0, first, last};
            n++;
        }
        row->count++;
        if (first < row->first_seen)
            row->first_seen = first;
        if (last > row->last_seen) {
            row->last_seen = last;
            row->example = t; /* the most recent failure speaks for the group */
        }
    }
    /* pack the rows to the front of the map and sort them */
    size_t k = 0;
    for (size_t i = 0; i < cap; i++)
        if (map[i].group)
            map[k++] = map[i];
    qsort(map, k, sizeof(*map), group_row_cmp);
    sc_buf_reset(&d->out);
    sc_jw_init(&w, &d->out);
    sc_jw_open(&w, NULL, '{');
    sc_jw_open(&w, "groups", '[');
    for (size_t i = 0; i < k && (int64_t)i < limit; i++) {
        const struct dlq_task *t = map[i].example;
        char hex[17];
        bool cut;
        size_t elen = error_cut(t->error, &cut);
        dlq_group_hex(map[i].group, hex);
        sc_jw_open(&w, NULL, '{');
        sc_jw_str(&w, "group", hex);
        sc_jw_str(&w, "subject", t->subject);
        sc_jw_str(&w, "category", policy_category_name(t->category));
        sc_jw_strn(&w, "error", t->error ? t->error : "", elen);
        sc_jw_int(&w, "count", (int64_t)map[i].count);
        sc_jw_time(&w, "first_seen", map[i].first_seen);
        sc_jw_time(&w, "last_seen", map[i].last_seen);
        sc_jw_close(&w, '}');
    }
    sc_jw_close(&w, ']');
    sc_jw_close(&w, '}');
    free(map);
    reply_buf(r);
}

/*
 * classify's `backoff` (as an envelope's, issue 17): an array of integers of
 * ms or duration strings, or one string of delays ("1s 10s 1m", as a GET
 * query gives it). Sets *out; false with why (whylen bytes) set otherwise.
 */
static bool
classify_backoff(const json_t *v, struct policy_delays *out, char *why, size_t whylen)
{
    char err[160];
    size_t i;

    if (json_is_string(v)) {
        if (policy_delays_parse(json_string_value(v), json_string_length(v), out, err,
                                sizeof(err)) == SC_OK)
            return true;
        snprintf(why, whylen, "backoff: %s", err);
        return false;
    }
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > SC_DELAYS_MAX) {
        snprintf(why, whylen, "backoff: must be an array of 1-%d delays", SC_DELAYS_MAX);
        return false;
    }
    out->n = 0;
    for (i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        int64_t ms = -1;

        if (json_is_integer(e))
            ms = (int64_t)json_integer_value(e);
        else if (!json_is_string(e) ||
                 sc_parse_duration_ms(json_string_value(e), json_string_length(e), &ms) == SC_EPROTO)
            ms = -1;
        if (ms < 1 || ms > SC_DELAY_MAX_MS) {
            snprintf(why, whylen,
                     "backoff[%zu]: not a delay of 1 ms - 7 days (an integer of ms, or 500ms, 10s, 1m, 2h, 7d)",
                     i);
            return false;
        }
        out->ms[out->n++] = ms;
    }
    return true;
}

static void
admin_classify(struct admin_req *r)
{
    struct sc_daemon *d = r->d;
    const char *err = "", *etype = NULL, *rule = NULL, *subject = NULL, *source = NULL;
    size_t elen = 0, etlen = 0, slen = 0;
    struct policy_delays dl = {0};
    const struct config_template *tpl = NULL;
    int max_retries;
    char why[200];
    policy_category cat;
    policy_retry pol;
    struct sc_jw w;
    json_t *v;

    if (r->body && (v = json_object_get(r->body, "error")) && !json_is_null(v)) {
        if (!json_is_string(v)) {
            reply_error(r, 400, "error: must be a string");
            return;
        }
        err = json_string_value(v);
        elen = json_string_length(v);
    }
    if (r->body && (v = json_object_get(r->body, "error_type")) && !json_is_null(v)) {
        if (!json_is_string(v)) {
            reply_error(r, 400, "error_type: must be a string");
            return;
        }
        etype = json_string_value(v);
        etlen = json_string_length(v);
    }
    if (r->body && (v = json_object_get(r->body, "subject")) && !json_is_null(v)) {
        if (!json_is_string(v)) {
            reply_error(r, 400, "subject: must be a string");
            return;
        }
        subject = json_string_value(v);
        slen = json_string_length(v);
    }
    if (r->body && (v = json_object_get(r->body, "backoff")) && !json_is_null(v)) {
        if (!classify_backoff(v, &dl, why, sizeof(why))) {
            reply_error(r, 400, "%s", why);
            return;
        }
        source = "envelope";
    }
    if (r->body && (v = json_object_get(r->body, "template")) && !json_is_null(v)) {
        if (!json_is_string(v) ||
            !(tpl = config_template_find(d->cfg, json_string_value(v), json_string_length(v)))) {
            reply_error(r, 400, "template: not the name of a configured template");
            return;
        }
        if (!source && tpl->backoff &&
            policy_delays_parse(tpl->backoff, strlen(tpl->backoff), &dl, NULL, 0) == SC_OK)
            source = "template";
    }
    cat = policy_classify(d->classifier, etype, etlen, err, elen, &rule);
    pol = tpl && tpl->has_policy              ? tpl->policy
          : d->cfg->has_default_retry_policy ? d->cfg->default_retry_policy
                                              : policy_default_retry(cat);
    max_retries = tpl && tpl->has_max_retries ? tpl->max_retries : d->cfg->default_max_retries;
    if (!source)
        source = config_delays_for(d->cfg, subject, slen, cat, &dl);
    sc_buf_reset(&d->out);
    sc_jw_init(&w, &d->out);
    sc_jw_open(&w, NULL, '{');
    sc_jw_str(&w, "category", policy_category_name(cat));
    sc_jw_str(&w, "rule", rule);
    sc_jw_str(&w, "retry_policy", policy_retry_name(pol));
    sc_jw_bool(&w, "retryable", pol != POLICY_NEVER);
    sc_jw_open(&w, "delays_ms", '[');
    for (int n = 1; pol != POLICY_NEVER && n <= 5 && n <= max_retries; n++)
        sc_jw_int(&w, NULL, source ? policy_delays_raw(&dl, n) : policy_backoff_raw(&d->cfg->backoff, pol, n));
    sc_jw_close(&w, ']');
    sc_jw_str(&w, "backoff_source", pol == POLICY_NEVER ? "none" : source ? source : "policy");
    sc_jw_fmt(&w, "jitter", "%g", d->cfg->backoff.jitter);
    sc_jw_int(&w, "max_retries", max_retries);
    sc_jw_str(&w, "priority",
              policy_priority_name(tpl && tpl->has_priority ? tpl->priority
                                                            : config_priority_for(d->cfg, subject, slen)));
    sc_jw_close(&w, '}');
    reply_buf(r);
}

/* ---- the audit trail ------------------------------------------------------------------------ */

/*
 * audit_note() records in t's history that the operator's action of r
 * changed it (an "operator" entry whose text is "<verb> by <principal>").
 * The text is one string of the queue's pool shared by every task the
 * action touches, and the history is a bounded ring: a bulk action over
 * 100k tasks adds 100k small entries and no copies of the text. A dry run
 * notes nothing.
 */
static void
audit_note(struct admin_req *r, struct dlq_task *t, int64_t now)
{
    if (r->dry_run || !r->note[0])
        return;
    dlq_queue_history(&r->d->m.q, t, DLQ_OUT_OPERATOR, t->retry_count, now, r->note, strlen(r->note));
}

/* ---- retry and the background redrive -------------------------------------------------------- */

/* True when a manual retry may touch t (not terminal, not in flight). */
static bool
actionable(const struct dlq_task *t)
{
    return t->status == DLQ_TASK_PENDING || t->status == DLQ_TASK_EXHAUSTED;
}

/* Ends the running redrive (if any), keeping its counters for stats. */
static void
redrive_stop(struct sc_daemon *d, bool cancelled)
{
    struct sc_redrive *rd = &d->redrive;

    if (rd->active) {
        rd->finished_wall = sc_now_wall_ms();
        rd->cancelled = cancelled;
    }
    rd->active = false;
    free(rd->subject);
    rd->subject = NULL;
    rd->filter.subject = NULL;
    free(rd->error);
    free(rd->error_type);
    free(rd->id_prefix);
    rd->error = rd->error_type = rd->id_prefix = NULL;
    rd->filter.error = rd->filter.error_type = rd->filter.id_prefix = NULL;
    free(rd->resume_id);
    rd->resume_id = NULL;
    free(rd->note);
    rd->note = NULL;
    if (rd->ev)
        event_del(rd->ev);
}

/*
 * redrive_resume() returns the first task the redrive has not visited: the
 * remembered task when it is still there with the same seq (O(1)),
 * otherwise the first task whose seq is past the last one visited (a walk).
 */
static struct dlq_task *
redrive_resume(struct sc_daemon *d)
{
    struct sc_redrive *rd = &d->redrive;
    struct dlq_task *t;

    if (rd->resume_id) {
        t = dlq_queue_find(&d->m.q, rd->resume_id, rd->resume_len);
        if (t && t->seq == rd->resume_seq)
            return t;
    }
    for (t = dlq_queue_first(&d->m.q); t && t->seq <= rd->next_seq; t = dlq_queue_next(&d->m.q, t))
        ;
    return t;
}

/*
 * on_redrive() runs every REDRIVE_TICK_US on the loop: it refills the token
 * bucket at rd->rate tasks per second and schedules matching tasks, in seq
 * order, one token each, until it passes the last task that existed when the
 * redrive started. Tasks that no longer match or are in flight by then are
 * counted as skipped.
 */
static void
on_redrive(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_redrive *rd = &d->redrive;
    int64_t now = sc_now_mono_ms(), wall = sc_now_wall_ms();
    double cap = rd->rate > 1 ? rd->rate : 1;
    struct dlq_task *t;

    (void)fd;
    (void)what;
    if (!rd->active)
        return;
    rd->tokens += (double)(now - rd->last_mono) * rd->rate / 1000.0;
    rd->last_mono = now;
    if (rd->tokens > cap)
        rd->tokens = cap;
    rd->filter.subject = rd->subject;
    for (t = redrive_resume(d); t && t->seq <= rd->last_seq && rd->tokens >= 1; t = dlq_queue_next(&d->m.q, t)) {
        rd->next_seq = t->seq;
        if (!dlq_filter_match(&rd->filter, t, wall))
            continue;
        if (!actionable(t) || !t->retry_subject || dlq_task_held(t) ||
            dlq_machine_retry(&d->m, t, wall, now) != SC_OK) {
            rd->skipped++;
            continue;
        }
        if (rd->note)
            dlq_queue_history(&d->m.q, t, DLQ_OUT_OPERATOR, t->retry_count, wall, rd->note,
                              strlen(rd->note));
        rd->scheduled++;
        rd->tokens -= 1;
    }
    free(rd->resume_id);
    rd->resume_id = NULL;
    if (!t || t->seq > rd->last_seq) {
        sc_log(SC_LOG_INFO, "redrive finished", "scheduled", sc_log_int((int64_t)rd->scheduled),
               "skipped", sc_log_int((int64_t)rd->skipped), NULL);
        redrive_stop(d, false);
        return;
    }
    rd->resume_id = sc_xstrndup(t->id, t->id_len);
    rd->resume_len = t->id_len;
    rd->resume_seq = t->seq;
}

/* Starts a background redrive of the tasks matching f at rate tasks/s; replies. */
static void
redrive_start(struct admin_req *r, const struct dlq_filter *f, double rate, int64_t now)
{
    struct sc_daemon *d = r->d;
    struct sc_redrive *rd = &d->redrive;
    struct timeval tv = {0, REDRIVE_TICK_US};
    size_t n = 0;
    struct sc_jw w;

    for (struct dlq_task *t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t))
        if (actionable(t) && t->retry_subject && !dlq_task_held(t) && dlq_filter_match(f, t, now))
            n++;
    free(rd->subject);
    free(rd->resume_id);
    free(rd->note);
    rd->note = r->note[0] && !r->dry_run ? sc_xstrdup(r->note) : NULL;
    r->audit_count = (int64_t)n;
    if (!rd->ev)
        rd->ev = event_new(d->base, -1, EV_PERSIST, on_redrive, d);
    rd->active = true;
    rd->rate = rate;
    rd->scheduled = 0;
    rd->tokens = 1;
    rd->last_mono = sc_now_mono_ms();
    rd->filter = *f;
    rd->subject = f->subject ? sc_xstrdup(f->subject) : NULL;
    rd->filter.subject = rd->subject;
    free(rd->error);
    free(rd->error_type);
    free(rd->id_prefix);
    rd->error = f->error ? sc_xstrdup(f->error) : NULL;
    rd->error_type = f->error_type ? sc_xstrdup(f->error_type) : NULL;
    rd->id_prefix = f->id_prefix ? sc_xstrdup(f->id_prefix) : NULL;
    rd->filter.error = rd->error;
    rd->filter.error_type = rd->error_type;
    rd->filter.id_prefix = rd->id_prefix;
    rd->next_seq = 0;
    rd->last_seq = dlq_queue_last(&d->m.q) ? dlq_queue_last(&d->m.q)->seq : 0;
    rd->matched = n;
    rd->skipped = 0;
    rd->started_wall = sc_now_wall_ms();
    rd->finished_wall = 0;
    rd->cancelled = false;
    rd->resume_id = NULL;
    event_add(rd->ev, &tv);
    sc_log(SC_LOG_INFO, "redrive started", "matched", sc_log_int((int64_t)n), "rate_per_s",
           sc_log_int((int64_t)rate), NULL);
    sc_buf_reset(&d->out);
    sc_jw_init(&w, &d->out);
    sc_jw_open(&w, NULL, '{');
    sc_jw_int(&w, "scheduled", (int64_t)n);
    sc_jw_fmt(&w, "rate", "%g", rate);
    sc_jw_bool(&w, "background", true);
    sc_jw_fmt(&w, "eta_s", "%.1f", n ? (double)(n - 1) / rate : 0.0);
    sc_jw_bool(&w, "paused", d->paused);
    sc_jw_close(&w, '}');
    reply_buf(r);
}

/* Answers the retry of one task: what was scheduled. */
static void
retry_reply_one(struct admin_req *r, const struct dlq_task *t)
{
    struct sc_daemon *d = r->d;
    struct sc_jw w;

    sc_buf_reset(&d->out);
    sc_jw_init(&w, &d->out);
    sc_jw_open(&w, NULL, '{');
    sc_jw_int(&w, "scheduled", 1);
    sc_jw_strn(&w, "task_id", t->id, t->id_len);
    sc_jw_int(&w, "attempt", t->retry_count + 1);
    sc_jw_int(&w, "max_retries", t->max_retries);
    sc_jw_bool(&w, "paused", d->paused);
    sc_jw_close(&w, '}');
    reply_buf(r);
}

/* Answers {"cancel":true}: stops the running redrive (409 when none runs). */
static void
retry_cancel(struct admin_req *r, json_t *cancel)
{
    struct sc_daemon *d = r->d;
    struct sc_redrive *rd = &d->redrive;

    if (!json_is_boolean(cancel) || json_object_size(r->body) != 1) {
        reply_error(r, 400, "cancel: must be true, alone");
        return;
    }
    if (!json_is_true(cancel) || !rd->active) {
        reply_error(r, 409, "no redrive is running");
        return;
    }
    redrive_stop(d, true);
    sc_log(SC_LOG_INFO, "redrive cancelled", "scheduled", sc_log_int((int64_t)rd->scheduled), NULL);
    sc_buf_reset(&d->out);
    sc_buf_appendf(&d->out, "{\"cancelled\":true,\"scheduled\":%llu}",
                   (unsigned long long)rd->scheduled);
    reply_buf(r);
}

/* Answers {"task_id":...}: retries that one task now (no filter, no rate beside it); dry: says whether it would. */
static void
retry_task(struct admin_req *r, const json_t *rate, int64_t now, bool dry)
{
    struct sc_daemon *d = r->d;
    struct dlq_task *t;

    if (has_filter_key(r) || rate || json_object_get(r->body, "all")) {
        reply_error(r, 400, "task_id: give a task_id or a filter (with rate), not both");
        return;
    }
    if (!(t = find_task(r)))
        return;
    if (dry) {
        bool ok = actionable(t) && t->retry_subject;
        reply_dry_run(r, ok, t, ok ? NULL : !actionable(t) ? "only pending, parked or exhausted tasks can be retried"
                                                           : "no usable retry subject");
        return;
    }
    if (!actionable(t)) {
        reply_error(r, 409, "task is %s; only pending, parked or exhausted tasks can be retried",
                    dlq_task_status_name(t->status));
        return;
    }
    if (dlq_machine_retry(&d->m, t, now, sc_now_mono_ms())) {
        reply_error(r, 409, "task has no usable retry subject (%s)",
                    t->park_reason ? t->park_reason : "refused");
        return;
    }
    r->audit_count = 1;
    audit_note(r, t, now);
    retry_reply_one(r, t);
}

/* Retries every actionable task matching f at once (no rate); replies with the counts. */
static void
retry_matching(struct admin_req *r, const struct dlq_filter *f, int64_t now)
{
    struct sc_daemon *d = r->d;
    size_t n = 0, skipped = 0;

    for (struct dlq_task *t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t)) {
        if (!actionable(t) || !dlq_filter_match(f, t, now))
            continue;
        if (dlq_task_held(t)) { /* a filter never overrides dependencies (README "Dependencies") */
            skipped++;
            continue;
        }
        if (dlq_machine_retry(&d->m, t, now, sc_now_mono_ms()) == SC_OK) {
            audit_note(r, t, now);
            n++;
        } else {
            skipped++;
        }
    }
    r->audit_count = (int64_t)n;
    sc_buf_reset(&d->out);
    sc_buf_appendf(&d->out, "{\"scheduled\":%zu,\"skipped\":%zu,\"paused\":%s}", n, skipped,
                   d->paused ? "true" : "false");
    reply_buf(r);
}

/*
 * admin_retry() answers the retry verb: {"cancel":true} stops a running
 * redrive, {"task_id":...} retries one task, a filter (or "all") retries
 * the matching tasks at once or, with "rate", in a background redrive.
 */
static void
admin_retry(struct admin_req *r)
{
    static const char *const keys[] = {"task_id", FILTER_KEYS, "all", "rate", "cancel", "dry_run", NULL};
    struct sc_daemon *d = r->d;
    struct dlq_filter f;
    struct sc_redrive *rd = &d->redrive;
    int64_t now = sc_now_wall_ms();
    json_t *rate = r->body ? json_object_get(r->body, "rate") : NULL;
    json_t *cancel = r->body ? json_object_get(r->body, "cancel") : NULL;
    bool dry;

    if (!check_keys(r, keys) || !parse_dry_run(r, &dry))
        return;
    if (rate && json_is_null(rate))
        rate = NULL;
    if (cancel && !json_is_null(cancel)) {
        retry_cancel(r, cancel);
        return;
    }
    if (r->body && json_object_get(r->body, "task_id")) {
        retry_task(r, rate, now, dry);
        return;
    }
    if (!filter_or_all(r, "retry") || !parse_filter(r, &f))
        return;
    if (rate && (!json_is_number(rate) || !(json_number_value(rate) > 0) ||
                 json_number_value(rate) > RATE_MAX)) {
        reply_error(r, 400, "rate: must be a number of tasks per second, > 0 and <= 10000000");
        return;
    }
    if (dry) { /* what a retry or redrive would schedule now; nothing starts */
        size_t n = 0;
        for (struct dlq_task *t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t))
            if (actionable(t) && t->retry_subject && !dlq_task_held(t) && dlq_filter_match(&f, t, now))
                n++;
        reply_dry_run(r, n, NULL, NULL);
        return;
    }
    if (rd->active) {
        reply_error(r, 409, "a redrive is already running (%llu of %llu scheduled); "
                            "send {\"cancel\":true} to stop it",
                    (unsigned long long)rd->scheduled, (unsigned long long)rd->matched);
        return;
    }
    if (rate) {
        redrive_start(r, &f, json_number_value(rate), now);
        return;
    }
    retry_matching(r, &f, now);
}

/* ---- write verbs ----------------------------------------------------------------------------- */

static bool
archivable(const struct dlq_task *t)
{
    return t->status == DLQ_TASK_PENDING || t->status == DLQ_TASK_RETRYING ||
           t->status == DLQ_TASK_EXHAUSTED;
}

static void
admin_archive(struct admin_req *r)
{
    static const char *const keys[] = {"task_id", FILTER_KEYS, "all", "dry_run", NULL};
    struct sc_daemon *d = r->d;
    struct dlq_filter f;
    int64_t now = sc_now_wall_ms();
    size_t n = 0;
    struct dlq_task *t, *next;
    bool dry;

    if (!check_keys(r, keys) || !parse_dry_run(r, &dry))
        return;
    if (r->body && json_object_get(r->body, "task_id")) {
        if (has_filter_key(r) || json_object_get(r->body, "all")) {
            reply_error(r, 400, "task_id: give a task_id or a filter, not both");
            return;
        }
        if (!(t = find_task(r)))
            return;
        if (dry) {
            reply_dry_run(r, archivable(t), t, archivable(t) ? NULL : "task is already completed or archived");
            return;
        }
        if (!archivable(t)) {
            reply_error(r, 409, "task is already %s", dlq_task_status_name(t->status));
            return;
        }
        audit_note(r, t, now); /* first: without store.keep_completed the archive frees t */
        dlq_machine_archive(&d->m, t, now);
        n = 1;
    } else {
        if (!filter_or_all(r, "archive") || !parse_filter(r, &f))
            return;
        if (dry) {
            for (t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t))
                n += archivable(t) && dlq_filter_match(&f, t, now);
            reply_dry_run(r, n, NULL, NULL);
            return;
        }
        for (t = dlq_queue_first(&d->m.q); t; t = next) {
            next = dlq_queue_next(&d->m.q, t);
            if (archivable(t) && dlq_filter_match(&f, t, now)) {
                audit_note(r, t, now); /* first: the archive may free t */
                dlq_machine_archive(&d->m, t, now);
                n++;
            }
        }
    }
    if (n)
        sc_log(SC_LOG_INFO, "tasks archived", "count", sc_log_int((int64_t)n), NULL);
    r->audit_count = (int64_t)n;
    sc_buf_reset(&d->out);
    sc_buf_appendf(&d->out, "{\"archived\":%zu}", n);
    reply_buf(r);
}

static void
admin_clear(struct admin_req *r)
{
    static const char *const keys[] = {FILTER_KEYS, "all", "confirm", "dry_run", NULL};
    struct sc_daemon *d = r->d;
    struct dlq_filter f;
    int64_t now = sc_now_wall_ms();
    json_t *confirm = r->body ? json_object_get(r->body, "confirm") : NULL;
    size_t n = 0;
    struct dlq_task *t, *next;
    bool dry;

    if (!check_keys(r, keys) || !parse_dry_run(r, &dry) || !filter_or_all(r, "clear") ||
        !parse_filter(r, &f))
        return;
    for (t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t))
        if (dlq_filter_match(&f, t, now))
            n++;
    if (dry) { /* no confirm needed: nothing is removed */
        reply_dry_run(r, n, NULL, NULL);
        return;
    }
    if (!json_is_true(confirm)) {
        r->would_clear = (int64_t)n;
        reply_error(r, 400, "confirm: clear would remove %zu task%s; send \"confirm\": true", n,
                    n == 1 ? "" : "s");
        return;
    }
    n = 0;
    for (t = dlq_queue_first(&d->m.q); t; t = next) {
        next = dlq_queue_next(&d->m.q, t);
        if (dlq_filter_match(&f, t, now)) {
            dlq_machine_clear(&d->m, t);
            n++;
        }
    }
    sc_log(SC_LOG_INFO, "tasks cleared", "count", sc_log_int((int64_t)n), NULL);
    r->audit_count = (int64_t)n; /* a cleared task is gone: no history to note it in */
    sc_buf_reset(&d->out);
    sc_buf_appendf(&d->out, "{\"cleared\":%zu}", n);
    reply_buf(r);
}

/*
 * admin_edit() answers the edit verb: {"task_id":..., "payload_json": <any
 * JSON value>} (packed as MessagePack; for a task whose payload is raw
 * bytes, an advisory's, the compact JSON text instead) or {"task_id":...,
 * "payload_b64":"..."} (the bytes as they are: MessagePack when they read as
 * one value, raw otherwise), and "retry": true to retry the task now. The
 * next retry publishes the new bytes; get shows the first original in
 * "original_payload_b64". Errors: 400 bad input or a payload over
 * limits.max_envelope_bytes, 404 no such task, 409 completed or archived
 * (or, with retry, not retryable: then nothing changes).
 */
static void
admin_edit(struct admin_req *r)
{
    struct sc_daemon *d = r->d;
    json_t *pj = json_object_get(r->body, "payload_json");
    json_t *pb = json_object_get(r->body, "payload_b64");
    json_t *retry = json_object_get(r->body, "retry");
    size_t max = codec_limits_get(d->codec)->max_envelope_bytes, len = 0, n;
    unsigned depth = codec_limits_get(d->codec)->max_depth;
    int64_t now = sc_now_wall_ms();
    struct sc_buf *raw = &d->scratch;
    const char *bytes = NULL;
    char *text = NULL;
    struct dlq_task *t;
    bool is_raw = false;
    struct sc_jw w;

    if (!(t = find_task(r)))
        return;
    if ((pj != NULL) == (pb != NULL)) {
        reply_error(r, 400, "edit: give exactly one of payload_json (any JSON value) or "
                            "payload_b64 (base64 bytes)");
        return;
    }
    if (retry && !json_is_boolean(retry)) {
        reply_error(r, 400, "retry: must be true or false");
        return;
    }
    if (pb) {
        const char *s = json_string_value(pb);
        sc_buf_reset(raw);
        if (!s || !sc_base64_padded(s, json_string_length(pb)) ||
            sc_base64_decode(s, json_string_length(pb), raw) != SC_OK) {
            reply_error(r, 400, "payload_b64: not standard base64 (RFC 4648 section 4, padded with '=')");
            return;
        }
        bytes = raw->data ? raw->data : "";
        len = raw->len;
        is_raw = codec_msgpack_check(bytes, len, depth, &n) != SC_OK || n != len;
    } else {
        text = json_dumps(pj, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text) {
            reply_error(r, 400, "payload_json: cannot be encoded");
            return;
        }
        if (t->payload_raw) { /* raw bytes stay raw: the JSON text */
            bytes = text;
            len = strlen(text);
            is_raw = true;
        } else if (strlen(text) > 3 * max ||
                   codec_json_msgpack(d->codec, text, strlen(text), &bytes, &len) != SC_OK) {
            free(text);
            reply_error(r, 400,
                        "payload_json: cannot be packed as MessagePack (deeper than %u or too large)",
                        depth);
            return;
        }
    }
    if (len > max) {
        free(text);
        reply_error(r, 400, "payload: %zu bytes, larger than limits.max_envelope_bytes (%zu)", len,
                    max);
        return;
    }
    if (json_is_true(retry) && (!actionable(t) || !t->retry_subject)) {
        free(text);
        reply_error(r, 409,
                    "task is %s%s; only pending, parked or exhausted tasks with a retry subject "
                    "can be retried",
                    dlq_task_status_name(t->status),
                    t->retry_subject ? "" : " without a retry subject");
        return;
    }
    if (dlq_machine_edit(&d->m, t, bytes, len, is_raw, now) != SC_OK) {
        free(text);
        reply_error(r, 409, "task is %s; a finished task cannot be edited",
                    dlq_task_status_name(t->status));
        return;
    }
    free(text);
    r->audit_count = 1;
    audit_note(r, t, now);
    sc_buf_reset(&d->out);
    sc_jw_init(&w, &d->out);
    sc_jw_open(&w, NULL, '{');
    sc_jw_strn(&w, "task_id", t->id, t->id_len);
    sc_jw_bool(&w, "edited", true);
    sc_jw_int(&w, "task_size", (int64_t)t->payload_len);
    {
        uint32_t olen;
        bool oraw;
        dlq_task_orig_payload(t, &olen, &oraw);
        sc_jw_int(&w, "original_size", (int64_t)olen);
    }
    sc_jw_bool(&w, "payload_raw", t->payload_raw);
    if (json_is_true(retry)) {
        bool ok = dlq_machine_retry(&d->m, t, now, sc_now_mono_ms()) == SC_OK;
        sc_jw_int(&w, "scheduled", ok ? 1 : 0);
        sc_jw_int(&w, "attempt", t->retry_count + 1);
    } else {
        sc_jw_int(&w, "scheduled", 0);
    }
    sc_jw_bool(&w, "paused", d->paused);
    sc_jw_close(&w, '}');
    reply_buf(r);
}

static void
set_paused(struct admin_req *r, bool pause)
{
    struct sc_daemon *d = r->d;

    if (d->paused != pause)
        sc_log(SC_LOG_INFO, pause ? "automatic retries paused" : "automatic retries resumed", NULL);
    d->paused = pause;
    sc_buf_reset(&d->out);
    sc_buf_appendf(&d->out, "{\"paused\":%s,\"scheduled\":%zu}", pause ? "true" : "false",
                   dlq_machine_scheduled(&d->m));
    reply_buf(r);
}

static void
admin_pause(struct admin_req *r)
{
    set_paused(r, true);
}

static void
admin_resume(struct admin_req *r)
{
    set_paused(r, false);
}

/* ---- the audit verb -------------------------------------------------------------------------- */

#define AUDIT_LIMIT_DEFAULT 50
#define AUDIT_LIMIT_MAX 100000

/* Answers {"limit":N} with {"records":[...]}: the latest N audit records, newest first. */
static void
admin_audit(struct admin_req *r)
{
    json_t *v = r->body ? json_object_get(r->body, "limit") : NULL;
    json_int_t limit = AUDIT_LIMIT_DEFAULT;

    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > AUDIT_LIMIT_MAX) {
            reply_error(r, 400, "limit: must be an integer from 1 to %d", AUDIT_LIMIT_MAX);
            return;
        }
        limit = json_integer_value(v);
    }
    sc_buf_reset(&r->d->out);
    sc_audit_list(r->d->audit, (size_t)limit, &r->d->out);
    reply_buf(r);
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static const char *const no_keys[] = {NULL};
static const char *const get_keys[] = {"task_id", "payload", NULL};
static const char *const list_keys[] = {FILTER_KEYS, "limit", "cursor", NULL};
static const char *const groups_keys[] = {FILTER_KEYS, "limit", NULL};
static const char *const classify_keys[] = {"error", "error_type", "subject", "backoff", "template", NULL};
static const char *const edit_keys[] = {"task_id", "payload_json", "payload_b64", "retry", NULL};
static const char *const audit_keys[] = {"limit", NULL};

/*
 * The verbs, in the order service discovery lists them. keys, when set, are
 * checked before the handler runs; retry, archive and clear check their own
 * (they depend on the form of the request). mutating marks the verbs that
 * change tasks or the sidecar's state: HTTP takes them by POST only and an
 * operator role is needed for them, and each successful call leaves one
 * audit record (admin_handle(); the handler sets r->audit_count and notes
 * the tasks it changes with audit_note()).
 */
static const struct admin_verb {
    const char *name;
    void (*fn)(struct admin_req *r);
    const char *const *keys;
    bool mutating;
} verbs[] = {
    {"health", admin_health, no_keys, false},
    {"stats", admin_stats, no_keys, false},
    {"list", admin_list, list_keys, false},
    {"get", admin_get, get_keys, false},
    {"retry", admin_retry, NULL, true},
    {"archive", admin_archive, NULL, true},
    {"clear", admin_clear, NULL, true},
    {"classify", admin_classify, classify_keys, false},
    {"groups", admin_groups, groups_keys, false},
    {"pause", admin_pause, no_keys, true},
    {"resume", admin_resume, no_keys, true},
    {"edit", admin_edit, edit_keys, true},
    {"audit", admin_audit, audit_keys, false},
};

size_t
sc_admin_verb_count(void)
{
    return SC_ARRAY_LEN(verbs);
}

const char *
sc_admin_verb_name(size_t i)
{
    return i < SC_ARRAY_LEN(verbs) ? verbs[i].name : NULL;
}

bool
sc_admin_verb_mutates(const char *verb)
{
    for (size_t i = 0; i < SC_ARRAY_LEN(verbs); i++)
        if (strcmp(verb, verbs[i].name) == 0)
            return verbs[i].mutating;
    return false;
}

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool
sc_admin_blank(const char *data, int len)
{
    for (int i = 0; i < len; i++)
        if (data[i] != ' ' && data[i] != '\n' && data[i] != '\r' && data[i] != '\t')
            return false;
    return true;
}

/*
 * admin_handle() parses the body of r (empty or a JSON object of at most
 * ADMIN_REQ_MAX bytes), runs the verb and records the request in the
 * endpoint statistics; the answer goes to r->m's reply, or stays in d->out
 * when r->m is NULL.
 */
static void
admin_handle(struct admin_req *r, const char *verb, const char *data, int len)
{
    struct sc_daemon *d = r->d;
    json_error_t jerr;
    int64_t start = now_ns();
    size_t vi;

    r->would_clear = -1;
    for (vi = 0; vi < SC_ARRAY_LEN(verbs); vi++)
        if (strcmp(verb, verbs[vi].name) == 0)
            break;
    if (vi == SC_ARRAY_LEN(verbs)) {
        reply_error(r, 404, "unknown admin verb '%.64s'", verb);
        return;
    }
    if (len > ADMIN_REQ_MAX) {
        reply_error(r, 400, "request: larger than %d bytes", ADMIN_REQ_MAX);
    } else if (!sc_admin_blank(data, len) && (!(r->body = json_loadb(data, (size_t)len, JSON_REJECT_DUPLICATES, &jerr)) ||
                          !json_is_object(r->body))) {
        reply_error(r, 400, "request: not a JSON object (%s)", r->body ? "wrong type" : jerr.text);
    } else if (!verbs[vi].keys || check_keys(r, verbs[vi].keys)) {
        sc_log(SC_LOG_DEBUG, "admin request", "verb", verb, "member", r->member ? "true" : "false", NULL);
        if (!r->principal)
            r->principal = "local";
        if (verbs[vi].mutating) {
            r->dry_run = r->body && json_is_true(json_object_get(r->body, "dry_run"));
            snprintf(r->note, sizeof(r->note), "%s by %s", verb, r->principal);
        }
        verbs[vi].fn(r);
        /*
         * One audit record per action. A member's part of a cluster request
         * records nothing: the member that took the request records once,
         * with the members' counts added up (fanout.c).
         */
        if (verbs[vi].mutating && !r->error_code && !r->member)
            sc_audit_record(d, r->principal, verb, r->body, r->audit_count, r->dry_run);
    }
    json_decref(r->body);
    r->body = NULL;
    sc_micro_record(d, vi, now_ns() - start, r->error_code, r->error_code ? r->error : NULL);
}

/*
 * sc_admin() answers one request on <prefix>.admin.<verb> on this instance
 * alone. A message with no reply subject is ignored. Loop thread.
 */
void
sc_admin(struct sc_daemon *d, natsMsg *m)
{
    const char *subj = natsMsg_GetSubject(m);
    const char *verb = strrchr(subj, '.');
    char who[SC_AUDIT_PRINCIPAL_LEN];
    struct admin_req r = {.d = d, .m = m};

    if (!natsMsg_GetReply(m))
        return; /* admin calls are requests; a plain publish has nobody to answer */
    r.principal = sc_audit_nats_principal(natsMsg_GetReply(m), who, sizeof(who));
    admin_handle(&r, verb ? verb + 1 : "", natsMsg_GetData(m), natsMsg_GetDataLength(m));
}

int
sc_admin_call(struct sc_daemon *d, const char *verb, const char *data, int len, const char *principal)
{
    struct admin_req r = {.d = d, .principal = principal};

    admin_handle(&r, verb, data, len);
    return r.error_code;
}

void
sc_admin_member(struct sc_daemon *d, const char *verb, const char *data, int len, const char *principal,
                struct sc_buf *out)
{
    struct admin_req r = {.d = d, .member = true, .principal = principal};
    struct sc_cluster_stats cs = sc_cluster_get_stats(d);
    struct sc_jw w;

    admin_handle(&r, verb, data, len);
    sc_buf_reset(out);
    sc_jw_init(&w, out);
    sc_jw_open(&w, NULL, '{');
    sc_jw_open(&w, "member", '{');
    sc_jw_str(&w, "id", cs.member_id ? cs.member_id : "");
    sc_jw_close(&w, '}');
    sc_buf_append(out, ",\"partitions\":[", 15);
    sc_serving_list(d, sc_now_mono_ms(), out);
    sc_buf_appendc(out, ']');
    if (sc_admin_verb_mutates(verb) && !r.error_code)
        sc_buf_appendf(out, ",\"audit_count\":%lld", (long long)r.audit_count);
    sc_buf_append(out, ",\"reply\":", 9);
    sc_buf_append(out, d->out.data, d->out.len);
    sc_buf_appendc(out, '}');
}

/* sc_admin_destroy() stops a running redrive and frees its timer; safe when none ran. Loop thread, at shutdown. */
void
sc_admin_destroy(struct sc_daemon *d)
{
    redrive_stop(d, false);
    if (d->redrive.ev)
        event_free(d->redrive.ev);
    d->redrive.ev = NULL;
}
