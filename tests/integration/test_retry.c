/* test_retry.c - integration: the retry life cycle (backoff on the wire, parking, exhaustion, timeouts, no responders). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "harness.h"

/* Scheduling tolerance for delays measured on the wire (ms); DLQ_IT_TOLERANCE_MS overrides. */
static int64_t
tolerance_ms(void)
{
    const char *s = getenv("DLQ_IT_TOLERANCE_MS");
    return s && *s ? strtoll(s, NULL, 10) : 50;
}

#define TICK_MS 10

/*
 * history_find() returns the first history entry of task with the given
 * attempt number and outcome (NULL: any outcome), or NULL.
 */
static json_t *
history_find(const json_t *task, int attempt, const char *outcome)
{
    json_t *h = json_object_get(task, "history");
    size_t i;
    json_t *ent;
    json_array_foreach(h, i, ent) {
        if (it_json_int(ent, "attempt") != attempt)
            continue;
        const char *o = it_json_str(ent, "outcome");
        if (!outcome || (o && strcmp(o, outcome) == 0))
            return ent;
    }
    return NULL;
}

/* history_has_error() tells whether any entry's error contains needle. */
static bool
history_has_error(const json_t *task, const char *needle)
{
    json_t *h = json_object_get(task, "history");
    size_t i;
    json_t *ent;
    json_array_foreach(h, i, ent) {
        const char *err = it_json_str(ent, "error");
        if (err && strstr(err, needle))
            return true;
    }
    return false;
}

/*
 * check_retry_headers() asserts the DESIGN section 5 headers of one retry
 * message: ids, attempt, budget, category, original subject, first failure
 * time within [lo_wall, hi_wall] (or exactly first_failed when non-zero),
 * and a reply subject.
 */
static void
check_retry_headers(const struct it_rec_msg *m, const char *id, int attempt, int max_retries,
                    const char *category, const char *orig_subject, int64_t first_failed,
                    int64_t lo_wall, int64_t hi_wall)
{
    char want[320];
    const char *v;

    v = it_rec_header(m, "Dlq-Task-Id");
    IT_CHECK(v && strcmp(v, id) == 0, "Dlq-Task-Id: want %s, got %s", id, v ? v : "(none)");
    snprintf(want, sizeof want, "%d", attempt);
    v = it_rec_header(m, "Dlq-Attempt");
    IT_CHECK(v && strcmp(v, want) == 0, "Dlq-Attempt: want %s, got %s", want, v ? v : "(none)");
    snprintf(want, sizeof want, "%d", max_retries);
    v = it_rec_header(m, "Dlq-Max-Retries");
    IT_CHECK(v && strcmp(v, want) == 0, "Dlq-Max-Retries: want %s, got %s", want,
             v ? v : "(none)");
    v = it_rec_header(m, "Dlq-Error-Category");
    IT_CHECK(v && strcmp(v, category) == 0, "Dlq-Error-Category: want %s, got %s", category,
             v ? v : "(none)");
    v = it_rec_header(m, "Dlq-Original-Subject");
    IT_CHECK(v && strcmp(v, orig_subject) == 0, "Dlq-Original-Subject: want %s, got %s",
             orig_subject, v ? v : "(none)");
    v = it_rec_header(m, "Dlq-First-Failed-At");
    int64_t ms = 0;
    IT_CHECK(v && sc_parse_rfc3339(v, strlen(v), &ms) == SC_OK,
             "Dlq-First-Failed-At: want RFC 3339, got %s", v ? v : "(none)");
    if (first_failed)
        IT_CHECK(ms == first_failed, "Dlq-First-Failed-At: want %lld ms (from failed_at), got %s",
                 (long long)first_failed, v);
    else
        IT_CHECK(ms >= lo_wall - 1000 && ms <= hi_wall + 1000,
                 "Dlq-First-Failed-At %s not near the time of the failure", v);
    const char *ep = it_rec_header(m, "Dlq-Episode");
    char *end = NULL;
    IT_CHECK(ep && strtoll(ep, &end, 10) > 0 && end && *end == '\0',
             "Dlq-Episode: want a positive integer, got %s", ep ? ep : "(none)");
    snprintf(want, sizeof want, "%s:%s:%d", id, ep ? ep : "", attempt);
    v = it_rec_header(m, "Nats-Msg-Id");
    IT_CHECK(v && strcmp(v, want) == 0, "Nats-Msg-Id: want %s, got %s", want, v ? v : "(none)");
    IT_CHECK(m->reply && *m->reply, "retry %d of %s has no reply subject (retry.outcome reply)",
             attempt, id);
}

/* wait_int() polls stats until path reaches at least want; returns the last value. */
static int64_t
wait_stat_at_least(natsConnection *nc, const char *path, int64_t want, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms, v = INT64_MIN;
    for (;;) {
        json_t *st = it_admin_stats(nc);
        v = it_json_int(st, path);
        json_decref(st);
        if (v >= want || sc_now_mono_ms() >= deadline)
            return v;
        it_sleep_ms(50);
    }
}

/*
 * failure() fills *env (it_envelope_init() first) for task id with error,
 * retry policy (NULL: the sidecar's default), retry subject (NULL: derived
 * from the failure subject) and max_retries (-1: the default). The caller
 * sets any other field (error_type, task_mp, failed_at_ms).
 */
static void
failure(struct it_envelope *env, const char *id, const char *error, const char *policy,
        const char *retry_subject, int max_retries)
{
    it_envelope_init(env);
    env->task_id = id;
    env->error = error;
    env->retry_policy = policy;
    env->retry_subject = retry_subject;
    env->max_retries = max_retries;
}

/* publish() publishes env on subject and flushes: the server has routed it when it returns. */
static void
publish(natsConnection *nc, const char *subject, const struct it_envelope *env)
{
    assert_int_equal(it_publish_envelope(nc, subject, env), 0);
    assert_int_equal(natsConnection_Flush(nc), NATS_OK);
}

/* count_events() counts dlq.events.<kind> messages about task_id recorded by ev. */
static size_t
count_events(struct it_recorder *ev, const char *kind, const char *task_id)
{
    char subj[128];
    snprintf(subj, sizeof subj, "dlq.events.%s", kind);
    size_t n = it_rec_count(ev), c = 0;
    for (size_t i = 0; i < n; i++) {
        const struct it_rec_msg *m = it_rec_get(ev, i);
        if (strcmp(m->subject, subj) != 0)
            continue;
        json_t *j = json_loadb(m->body, m->len, 0, NULL);
        const char *id = it_json_str(j, "task_id");
        if (id && strcmp(id, task_id) == 0)
            c++;
        json_decref(j);
    }
    return c;
}

/*
 * check_event_shape() asserts that the dlq.events.<kind> event about task_id
 * has the keys of DESIGN section 9 with sane values: task_id, the failure
 * subject, a category, the attempt number, an RFC 3339 time and an error.
 */
static void
check_event_shape(struct it_recorder *ev, const char *kind, const char *task_id, int attempt)
{
    char subj[128];
    snprintf(subj, sizeof subj, "dlq.events.%s", kind);
    size_t n = it_rec_count(ev);
    for (size_t i = 0; i < n; i++) {
        const struct it_rec_msg *m = it_rec_get(ev, i);
        if (strcmp(m->subject, subj) != 0)
            continue;
        json_t *j = json_loadb(m->body, m->len, 0, NULL);
        const char *id = it_json_str(j, "task_id");
        if (!id || strcmp(id, task_id) != 0) {
            json_decref(j);
            continue;
        }
        char *dump = it_json_dump(j);
        const char *at = it_json_str(j, "at");
        int64_t ms;
        IT_CHECK(it_json_str(j, "subject") && it_json_str(j, "category") && at &&
                     sc_parse_rfc3339(at, strlen(at), &ms) == SC_OK &&
                     json_object_get(j, "error") != NULL,
                 "event %s: want task_id, subject, category, attempt, at, error: %s", subj, dump);
        IT_CHECK(it_json_int(j, "attempt") == attempt, "event %s: want attempt %d: %s", subj,
                 attempt, dump);
        free(dump);
        json_decref(j);
        return;
    }
    IT_CHECK(false, "no %s event for %s", subj, task_id);
}

/*
 * 1. A network error is retried with exponential backoff: attempt 1 fails
 * (the worker says so), attempt 2 succeeds, the task completes. The delays
 * on the wire match the policy (200 ms, then 400 ms after the failure
 * reply) within one tick plus a scheduling tolerance; headers and body are
 * as DESIGN section 5 says.
 */
static void
test_network_error_backoff(void **state)
{
    struct it_env *e = it_env_start("backoff", NULL);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.orders", "workers", 64, true);
    assert_non_null(w);
    struct it_step plan[] = {
        {IT_ACT_FAIL, "connection refused by upstream (attempt 1)", "ConnectionRefusedError"},
    };
    it_recorder_set_plan(w, plan, 1, (struct it_step){IT_ACT_OK, NULL, NULL});
    struct it_recorder *ev = it_env_recorder(e, e->nc, "dlq.events.>", NULL, 1024, true);
    assert_non_null(ev);

    char id[96];
    it_unique_id("net", id, sizeof id);
    struct sc_buf task;
    sc_buf_init(&task, 1 << 16);
    assert_int_equal(it_default_task(&task), 0);
    struct it_envelope env;
    failure(&env, id, "connection refused", "exponential", NULL, 3);
    env.error_type = "ConnectionRefusedError";

    int64_t wall0 = sc_now_wall_ms();
    int64_t t_pub = sc_now_mono_ms();
    json_t *ack = it_request_envelope(e->nc, "dlq.failed.orders", &env);
    int64_t wall1 = sc_now_wall_ms();
    char *dump = it_json_dump(ack);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest ack: want ok:true, got %s",
             dump);
    IT_CHECK(it_json_str(ack, "task_id") && strcmp(it_json_str(ack, "task_id"), id) == 0,
             "ingest ack task_id: got %s", dump);
    IT_CHECK(it_json_str(ack, "status") && strcmp(it_json_str(ack, "status"), "pending") == 0,
             "ingest ack status: want pending, got %s", dump);
    const char *nra = it_json_str(ack, "next_retry_at");
    int64_t nra_ms = 0;
    IT_CHECK(nra && sc_parse_rfc3339(nra, strlen(nra), &nra_ms) == SC_OK,
             "ingest ack next_retry_at: want RFC 3339, got %s", dump);
    IT_CHECK(nra_ms >= wall0 + 200 - TICK_MS - 5 && nra_ms <= wall1 + 200 + 1000,
             "ingest ack next_retry_at %s is not ~200 ms after the failure", nra);
    free(dump);
    json_decref(ack);

    IT_CHECK(it_rec_wait(w, 2, IT_WAIT_MS), "want 2 retries on dlq.retry.orders, got %zu",
             it_rec_count(w));
    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, id, "completed", IT_WAIT_MS, &ok);
    dump = it_json_dump(t);
    IT_CHECK(ok, "want status completed after a failed then a successful attempt, got %s", dump);

    const struct it_rec_msg *m1 = it_rec_get(w, 0), *m2 = it_rec_get(w, 1);
    int64_t tol = tolerance_ms();
    int64_t d1 = m1->at_mono - t_pub;
    int64_t d2 = m2->at_mono - m1->replied_mono;
    fprintf(stderr, "[backoff] delay before attempt 1: %lld ms (want 200), before attempt 2: %lld ms (want 400)\n",
            (long long)d1, (long long)d2);
    IT_CHECK(d1 >= 200 - TICK_MS && d1 <= 200 + TICK_MS + tol,
             "attempt 1 came %lld ms after the failure; want 200 ms (-%d/+%lld)", (long long)d1,
             TICK_MS, (long long)(TICK_MS + tol));
    IT_CHECK(m1->replied_mono > 0, "the worker did not reply to attempt 1");
    IT_CHECK(d2 >= 400 - TICK_MS && d2 <= 400 + TICK_MS + tol,
             "attempt 2 came %lld ms after attempt 1's failure reply; want 400 ms (-%d/+%lld)",
             (long long)d2, TICK_MS, (long long)(TICK_MS + tol));

    check_retry_headers(m1, id, 1, 3, "network", "dlq.failed.orders", 0, wall0, wall1);
    check_retry_headers(m2, id, 2, 3, "network", "dlq.failed.orders", 0, wall0, wall1);
    IT_CHECK(strcmp(it_rec_header(m1, "Dlq-First-Failed-At"),
                    it_rec_header(m2, "Dlq-First-Failed-At")) == 0,
             "Dlq-First-Failed-At changed between attempts: %s then %s",
             it_rec_header(m1, "Dlq-First-Failed-At"), it_rec_header(m2, "Dlq-First-Failed-At"));
    IT_CHECK(m1->len == task.len && memcmp(m1->body, task.data, task.len) == 0,
             "attempt 1 body is not the task's MessagePack bytes (%zu vs %zu bytes)", m1->len,
             task.len);
    IT_CHECK(m2->len == task.len && memcmp(m2->body, task.data, task.len) == 0,
             "attempt 2 body is not the task's MessagePack bytes (%zu vs %zu bytes)", m2->len,
             task.len);
    IT_CHECK(strcmp(m1->subject, "dlq.retry.orders") == 0, "retry subject %s", m1->subject);

    IT_CHECK(it_json_int(t, "retry_count") == 1,
             "retry_count: want 1 (one attempt ended in failure), got %s", dump);
    IT_CHECK(it_json_str(t, "error_category") &&
                 strcmp(it_json_str(t, "error_category"), "network") == 0,
             "error_category: want network, got %s", dump);
    IT_CHECK(history_has_error(t, "attempt 1"),
             "history lacks the worker's error of attempt 1: %s", dump);
    IT_CHECK(history_find(t, 2, NULL) != NULL, "history lacks attempt 2: %s", dump);
    free(dump);
    json_decref(t);

    /* No third attempt after the success. */
    it_sleep_ms(1000);
    IT_CHECK(it_rec_count(w) == 2, "want exactly 2 retries, got %zu", it_rec_count(w));

    json_t *st = it_admin_stats(e->nc);
    dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "lifetime_stats.enqueued") == 1, "enqueued: want 1: %s", dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.retry_success") == 1, "retry_success: want 1: %s",
             dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.retry_failed") == 1, "retry_failed: want 1: %s",
             dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.exhausted") == 0, "exhausted: want 0: %s", dump);
    free(dump);
    json_decref(st);

    /* Lifecycle events (DESIGN section 9). */
    IT_CHECK(count_events(ev, "enqueued", id) == 1, "want 1 dlq.events.enqueued, got %zu",
             count_events(ev, "enqueued", id));
    IT_CHECK(count_events(ev, "retried", id) == 2, "want 2 dlq.events.retried, got %zu",
             count_events(ev, "retried", id));
    IT_CHECK(count_events(ev, "failed", id) == 1, "want 1 dlq.events.failed, got %zu",
             count_events(ev, "failed", id));
    IT_CHECK(count_events(ev, "succeeded", id) == 1, "want 1 dlq.events.succeeded, got %zu",
             count_events(ev, "succeeded", id));
    check_event_shape(ev, "failed", id, 1);
    check_event_shape(ev, "succeeded", id, 2);
    sc_buf_destroy(&task);
    e->passed = true;
}

/*
 * 2. A validation error is not retryable: the task is parked (pending, no
 * next_retry_at, parked true) and nothing is ever published to the retry
 * subject.
 */
static void
test_validation_parked(void **state)
{
    struct it_env *e = it_env_start("parked", NULL);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.>", NULL, 64, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});

    char id[96];
    it_unique_id("val", id, sizeof id);
    struct it_envelope env;
    failure(&env, id, "400 Bad Request", NULL, NULL, -1);
    env.error_type = "HTTPError";
    json_t *ack = it_request_envelope(e->nc, "dlq.failed.orders", &env);
    char *dump = it_json_dump(ack);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest ack: want ok:true, got %s",
             dump);
    IT_CHECK(json_is_null(json_object_get(ack, "next_retry_at")) ||
                 !json_object_get(ack, "next_retry_at"),
             "ingest ack of a parked task: want next_retry_at null, got %s", dump);
    free(dump);
    json_decref(ack);

    /* Listen for several backoff periods (base 200 ms). */
    it_sleep_ms(1500);
    IT_CHECK(it_rec_count(w) == 0, "a validation error was published %zu time(s) to %s",
             it_rec_count(w), it_rec_count(w) ? it_rec_get(w, 0)->subject : "");

    json_t *t = it_admin_get(e->nc, id);
    dump = it_json_dump(t);
    IT_CHECK(it_json_str(t, "status") && strcmp(it_json_str(t, "status"), "pending") == 0,
             "status: want pending (parked), got %s", dump);
    IT_CHECK(json_is_true(json_object_get(t, "parked")), "parked: want true, got %s", dump);
    IT_CHECK(it_json_str(t, "park_reason") && strstr(it_json_str(t, "park_reason"), "never"),
             "park_reason names the policy: %s", dump);
    IT_CHECK(json_is_null(json_object_get(t, "next_retry_at")), "next_retry_at: want null, got %s",
             dump);
    IT_CHECK(it_json_str(t, "error_category") &&
                 strcmp(it_json_str(t, "error_category"), "validation") == 0,
             "error_category: want validation, got %s", dump);
    IT_CHECK(it_json_str(t, "retry_policy") && strcmp(it_json_str(t, "retry_policy"), "never") == 0,
             "retry_policy: want never, got %s", dump);
    IT_CHECK(it_json_int(t, "retry_count") == 0, "retry_count: want 0, got %s", dump);
    free(dump);
    json_decref(t);

    json_t *st = it_admin_stats(e->nc);
    dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "status_breakdown.parked") == 1, "status_breakdown.parked: want 1: %s",
             dump);
    IT_CHECK(it_json_int(st, "status_breakdown.retrying") == 0 &&
                 it_json_int(st, "status_breakdown.exhausted") == 0,
             "status_breakdown: want nothing retrying or exhausted: %s", dump);
    IT_CHECK(it_json_int(st, "queue_size") == 1, "queue_size: want 1: %s", dump);
    free(dump);
    json_decref(st);
    e->passed = true;
}

/*
 * 3. max_retries 2 and a worker that always fails: exactly two attempts go
 * out, then the task is exhausted and nothing more is published. The
 * envelope's failed_at is carried to Dlq-First-Failed-At exactly.
 */
static void
test_exhausted(void **state)
{
    struct it_env *e = it_env_start("exhausted", NULL);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 64, true);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0,
                         (struct it_step){IT_ACT_FAIL, "connection refused", "ConnectionError"});
    struct it_recorder *ev = it_env_recorder(e, e->nc, "dlq.events.>", NULL, 1024, true);
    assert_non_null(ev);

    char id[96];
    it_unique_id("exh", id, sizeof id);
    int64_t failed_at = (sc_now_wall_ms() / 1000) * 1000 - 3600 * 1000 + 123;
    struct it_envelope env;
    failure(&env, id, "ECONNRESET", NULL, NULL, 2);
    env.failed_at_ms = failed_at;
    int64_t wall0 = sc_now_wall_ms();
    publish(e->nc, "dlq.failed.billing", &env);

    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, id, "exhausted", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "want status exhausted after 2 failed attempts, got %s", dump);
    IT_CHECK(it_json_int(t, "retry_count") == 2, "retry_count: want 2, got %s", dump);
    IT_CHECK(json_is_null(json_object_get(t, "next_retry_at")),
             "an exhausted task has next_retry_at %s", dump);
    free(dump);
    json_decref(t);

    /* The next attempt would be due 800 ms after the second failure: listen well past it. */
    it_sleep_ms(2500);
    size_t n = it_rec_count(w);
    IT_CHECK(n == 2, "want exactly 2 attempts published with max_retries 2, got %zu", n);
    check_retry_headers(it_rec_get(w, 0), id, 1, 2, "network", "dlq.failed.billing", failed_at,
                        wall0, wall0);
    check_retry_headers(it_rec_get(w, 1), id, 2, 2, "network", "dlq.failed.billing", failed_at,
                        wall0, wall0);
    IT_CHECK(strcmp(it_rec_get(w, 0)->subject, "dlq.retry.billing") == 0,
             "default retry subject: want dlq.retry.billing, got %s", it_rec_get(w, 0)->subject);
    /* get shows the episode id that Dlq-Episode (and Nats-Msg-Id) carry. */
    const char *ep = it_rec_header(it_rec_get(w, 0), "Dlq-Episode");
    t = it_admin_get(e->nc, id);
    dump = it_json_dump(t);
    IT_CHECK(ep && json_is_integer(json_object_get(t, "episode_id")) &&
                 it_json_int(t, "episode_id") == strtoll(ep, NULL, 10),
             "get: want episode_id %s (the retry's Dlq-Episode), got %s", ep ? ep : "(none)", dump);
    free(dump);
    json_decref(t);

    json_t *st = it_admin_stats(e->nc);
    dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "status_breakdown.exhausted") == 1,
             "status_breakdown.exhausted: want 1: %s", dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.exhausted") == 1, "lifetime exhausted: want 1: %s",
             dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.retry_failed") == 2,
             "lifetime retry_failed: want 2: %s", dump);
    free(dump);
    json_decref(st);
    IT_CHECK(count_events(ev, "exhausted", id) == 1, "want 1 dlq.events.exhausted, got %zu",
             count_events(ev, "exhausted", id));
    e->passed = true;
}

/*
 * 4. A worker that never answers: after retry.timeout_ms (300) the attempt
 * counts as a failure (history timeout / "retry timed out", category
 * network), retry_count grows and the next attempt follows after the
 * backoff; the worker then succeeds.
 */
static void
test_timeout(void **state)
{
    const char *flags[] = {"retry.timeout_ms=300", NULL};
    struct it_env *e = it_env_start("timeout", flags);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.>", NULL, 64, false);
    assert_non_null(w);
    struct it_step plan[] = {{IT_ACT_SILENT, NULL, NULL}};
    it_recorder_set_plan(w, plan, 1, (struct it_step){IT_ACT_OK, NULL, NULL});

    char id[96];
    it_unique_id("tmo", id, sizeof id);
    struct it_envelope env;
    failure(&env, id, "HTTP 503 temporarily unavailable", NULL, NULL, 3);
    publish(e->nc, "dlq.failed.mail", &env);

    IT_CHECK(it_rec_wait(w, 2, IT_WAIT_MS), "want attempt 2 after attempt 1 timed out, got %zu",
             it_rec_count(w));
    const struct it_rec_msg *m1 = it_rec_get(w, 0), *m2 = it_rec_get(w, 1);
    const char *a1 = it_rec_header(m1, "Dlq-Attempt"), *a2 = it_rec_header(m2, "Dlq-Attempt");
    IT_CHECK(a1 && strcmp(a1, "1") == 0 && a2 && strcmp(a2, "2") == 0,
             "Dlq-Attempt: want 1 then 2, got %s then %s", a1 ? a1 : "-", a2 ? a2 : "-");
    const char *c1 = it_rec_header(m1, "Dlq-Error-Category");
    const char *c2 = it_rec_header(m2, "Dlq-Error-Category");
    IT_CHECK(c1 && strcmp(c1, "transient") == 0, "attempt 1 category: want transient, got %s",
             c1 ? c1 : "-");
    IT_CHECK(c2 && strcmp(c2, "network") == 0,
             "attempt 2 category: want network (a timeout is a network failure), got %s",
             c2 ? c2 : "-");
    /*
     * timeout (300) + backoff before attempt 2 (400), measured between two
     * arrivals: attempt 1's delivery latency shortens the gap, so the
     * tolerance applies below too; generous above.
     */
    int64_t gap = m2->at_mono - m1->at_mono;
    fprintf(stderr, "[timeout] attempt 1 -> attempt 2: %lld ms (want 300 + 400)\n", (long long)gap);
    IT_CHECK(gap >= 700 - 2 * TICK_MS - tolerance_ms() && gap <= 700 + 2 * TICK_MS + 4 * tolerance_ms(),
             "attempt 2 came %lld ms after attempt 1; want timeout 300 + backoff 400 ms",
             (long long)gap);

    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, id, "completed", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "want completed after attempt 2 succeeded, got %s", dump);
    IT_CHECK(it_json_int(t, "retry_count") == 1, "retry_count: want 1 (the timeout), got %s", dump);
    json_t *h1 = history_find(t, 1, NULL);
    const char *o1 = it_json_str(h1, "outcome"), *e1 = it_json_str(h1, "error");
    IT_CHECK(h1 && ((o1 && strcmp(o1, "timeout") == 0) || (e1 && strstr(e1, "retry timed out"))),
             "history: want attempt 1 recorded as a timeout / \"retry timed out\", got %s", dump);
    IT_CHECK(history_has_error(t, "retry timed out"),
             "history: want the error \"retry timed out\", got %s", dump);
    free(dump);
    json_decref(t);

    json_t *st = it_admin_stats(e->nc);
    dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "lifetime_stats.retry_failed") == 1,
             "lifetime retry_failed: want 1 (the timeout): %s", dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.retry_success") == 1,
             "lifetime retry_success: want 1: %s", dump);
    free(dump);
    json_decref(st);
    e->passed = true;
}

/*
 * 5. No worker at all: the retry meets no responders, which is not an
 * attempt: the task is deferred again and again (lifetime deferred grows)
 * and never exhausts, even with max_retries 1; once a worker subscribes it
 * completes with attempt 1.
 */
static void
test_no_responders(void **state)
{
    const char *flags[] = {"backoff.max_delay_ms=800", NULL};
    struct it_env *e = it_env_start("noresp", flags);
    assert_non_null(e);
    *state = e;

    char id[96];
    it_unique_id("nores", id, sizeof id);
    struct it_envelope env;
    failure(&env, id, "connection refused", NULL, NULL, 1);
    publish(e->nc, "dlq.failed.search", &env);

    int64_t deferred = wait_stat_at_least(e->nc, "lifetime_stats.deferred", 4, IT_WAIT_MS);
    IT_CHECK(deferred >= 4, "want lifetime_stats.deferred >= 4 with no worker, got %lld",
             (long long)deferred);
    /* Many backoff periods later it is still waiting, not exhausted. */
    it_sleep_ms(1500);
    json_t *t = it_admin_get(e->nc, id);
    char *dump = it_json_dump(t);
    const char *s = it_json_str(t, "status");
    IT_CHECK(s && (strcmp(s, "pending") == 0 || strcmp(s, "retrying") == 0),
             "with no worker: want pending (deferred), got %s", dump);
    IT_CHECK(it_json_int(t, "retry_count") == 0,
             "no responders is not an attempt: want retry_count 0, got %s", dump);
    IT_CHECK(!json_is_true(json_object_get(t, "parked")), "a deferred task is not parked: %s",
             dump);
    free(dump);
    json_decref(t);
    json_t *st = it_admin_stats(e->nc);
    dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "lifetime_stats.exhausted") == 0 &&
                 it_json_int(st, "status_breakdown.exhausted") == 0,
             "nothing may exhaust while no worker runs: %s", dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.retry_failed") == 0,
             "no responders is not a failed retry: %s", dump);
    free(dump);
    json_decref(st);

    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.search", "workers", 64, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});

    bool ok = false;
    t = it_wait_task_status(e->nc, id, "completed", IT_WAIT_MS, &ok);
    dump = it_json_dump(t);
    IT_CHECK(ok, "want completed once a worker subscribed, got %s", dump);
    IT_CHECK(it_json_int(t, "retry_count") == 0, "retry_count: want 0, got %s", dump);
    free(dump);
    json_decref(t);
    IT_CHECK(it_rec_count(w) == 1, "the worker saw %zu retries, want 1", it_rec_count(w));
    const char *a = it_rec_header(it_rec_get(w, 0), "Dlq-Attempt");
    IT_CHECK(a && strcmp(a, "1") == 0,
             "deferrals are not attempts: want Dlq-Attempt 1, got %s", a ? a : "-");
    e->passed = true;
}

/* ---- JetStream on the retry subject (DESIGN sections 5 and 6) ---------------------------------- */

/*
 * add_stream() creates a memory stream name over subject on nc (max_msgs > 0
 * bounds it, with discard new: a full stream refuses publishes). Fails the
 * test when it cannot. Returns the JetStream context (caller jsCtx_Destroy()s).
 */
static jsCtx *
add_stream(natsConnection *nc, const char *name, const char *subject, int64_t max_msgs)
{
    jsCtx *js = NULL;
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    const char *subjects[] = {subject};

    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_MemoryStorage;
    if (max_msgs > 0) {
        cfg.MaxMsgs = max_msgs;
        cfg.Discard = js_DiscardNew;
    }
    natsStatus ns = js_AddStream(&si, js, &cfg, NULL, &jerr);
    IT_CHECK(ns == NATS_OK, "js_AddStream %s: %s (err_code %d)", name, natsStatus_GetText(ns),
             (int)jerr);
    jsStreamInfo_Destroy(si);
    return js;
}

/* stream_msgs() is the number of messages stream name holds. */
static uint64_t
stream_msgs(jsCtx *js, const char *name)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    uint64_t n = UINT64_MAX;
    if (js_GetStreamInfo(&si, js, name, NULL, &jerr) == NATS_OK) {
        n = si->State.Msgs;
        jsStreamInfo_Destroy(si);
    }
    return n;
}

/* wait_absent() polls dlq.admin.get until task_id is gone (completed and removed). */
static bool
wait_absent(natsConnection *nc, const char *task_id, int timeout_ms)
{
    char st[32];
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    while (strcmp(it_task_status(nc, task_id, st, sizeof st), "absent") != 0) {
        if (sc_now_mono_ms() >= deadline)
            return false;
        it_sleep_ms(20);
    }
    return true;
}

/*
 * 6. Three episodes of the same task id, each delivering attempt 1 into a
 * stream that captures the retry subject (de-duplication window: the
 * default 2 min), with store.keep_completed false so that each new failure
 * of order-42 starts from nothing: all three attempts land in the stream,
 * each with its own Dlq-Episode, and Nats-Msg-Id <id>:<episode>:1. Before
 * the fix the id was order-42:1 three times and the stream kept one.
 * (retry.outcome none: a publish is the success, so this test is about ids
 * alone.)
 */
static void
test_episodes_in_stream(void **state)
{
    const char *flags[] = {"store.keep_completed=false", "retry.outcome=none",
                           "retry.timeout_ms=100", NULL};
    struct it_env *e = it_env_start_js("episodes", flags);
    assert_non_null(e);
    *state = e;
    jsCtx *js = add_stream(e->nc, "RETRY_EPISODES", "dlq.retry.episodes", 0);
    char id[96];
    it_unique_id("order-42", id, sizeof id);
    struct it_envelope env;
    failure(&env, id, "ECONNRESET", "immediate", "dlq.retry.episodes", -1);

    for (int ep = 1; ep <= 3; ep++) {
        json_t *ack = it_request_envelope(e->nc, "dlq.failed.orders", &env);
        char *dump = it_json_dump(ack);
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "episode %d: ack %s", ep, dump);
        free(dump);
        json_decref(ack);
        IT_CHECK(wait_absent(e->nc, id, IT_WAIT_MS),
                 "episode %d: the task did not complete (and go: keep_completed false)", ep);
    }
    uint64_t n = stream_msgs(js, "RETRY_EPISODES");
    IT_CHECK(n == 3, "the stream holds %llu retries of 3 episodes; want 3 (none de-duplicated)",
             (unsigned long long)n);
    char seen[3][64] = {{0}};
    for (uint64_t seq = 1; seq <= 3 && seq <= n; seq++) {
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        assert_int_equal(js_GetMsg(&m, js, "RETRY_EPISODES", seq, NULL, &jerr), NATS_OK);
        const char *msgid = NULL, *epv = NULL, *att = NULL;
        natsMsgHeader_Get(m, "Nats-Msg-Id", &msgid);
        natsMsgHeader_Get(m, "Dlq-Episode", &epv);
        natsMsgHeader_Get(m, "Dlq-Attempt", &att);
        char want[256];
        snprintf(want, sizeof want, "%s:%s:1", id, epv ? epv : "?");
        IT_CHECK(epv && att && strcmp(att, "1") == 0 && msgid && strcmp(msgid, want) == 0,
                 "stream message %llu: Dlq-Episode %s, Dlq-Attempt %s, Nats-Msg-Id %s (want %s)",
                 (unsigned long long)seq, epv ? epv : "-", att ? att : "-", msgid ? msgid : "-",
                 want);
        snprintf(seen[seq - 1], sizeof seen[0], "%s", epv);
        for (uint64_t k = 1; k < seq; k++)
            IT_CHECK(strtoll(seen[k - 1], NULL, 10) < strtoll(epv, NULL, 10),
                     "episodes must grow: %s then %s", seen[k - 1], epv);
        natsMsg_Destroy(m);
    }
    jsCtx_Destroy(js);
    e->passed = true;
}

/*
 * 7. retry.outcome reply with the retry subject captured by a stream: the
 * server's PubAck reaches the reply inbox first and is not the worker's
 * answer. The worker (a core subscriber) answers the message's reply
 * subject 300 ms later: that answer is counted, the task completes after
 * one attempt. Before the fix the PubAck was read as an unrecognised reply
 * (a failure) and an immediate task with max_retries 1 was exhausted
 * before the worker replied.
 */
static void
test_puback_is_not_the_outcome(void **state)
{
    const char *flags[] = {"retry.timeout_ms=5000", NULL};
    struct it_env *e = it_env_start_js("puback", flags);
    assert_non_null(e);
    *state = e;
    jsCtx *js = add_stream(e->nc, "RETRY_PUBACK", "dlq.retry.captured", 0);
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.captured", "workers", 16, true);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_SILENT, NULL, NULL});

    char id[96];
    it_unique_id("pa", id, sizeof id);
    struct it_envelope env;
    failure(&env, id, "ECONNRESET", "immediate", "dlq.retry.captured", 1);
    publish(e->nc, "dlq.failed.orders", &env);
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "the worker saw no retry");
    it_sleep_ms(300); /* the PubAck is long back by now */
    const struct it_rec_msg *m = it_rec_get(w, 0);
    IT_CHECK(m->reply && *m->reply, "the retry has no reply subject");
    assert_int_equal(natsConnection_PublishString(wc, m->reply, "{\"ok\":true}"), NATS_OK);
    assert_int_equal(natsConnection_Flush(wc), NATS_OK);

    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, id, "completed", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "the worker's late success must complete the task; got %s", dump);
    IT_CHECK(it_json_int(t, "retry_count") == 0, "retry_count: want 0 (no failed attempt): %s",
             dump);
    IT_CHECK(history_find(t, 1, "succeeded") != NULL, "attempt 1 did not succeed: %s", dump);
    free(dump);
    json_decref(t);
    IT_CHECK(it_rec_count(w) == 1, "want exactly one attempt, the worker saw %zu",
             it_rec_count(w));
    IT_CHECK(stream_msgs(js, "RETRY_PUBACK") == 1, "the stream holds %llu retries, want 1",
             (unsigned long long)stream_msgs(js, "RETRY_PUBACK"));
    jsCtx_Destroy(js);
    e->passed = true;
}

/*
 * 8. retry.stored_subjects: a retry subject captured by a stream and no
 * worker at all. The PubAck is the success of the hand-off: the task
 * completes after one attempt and the stream holds it. A stream that
 * refuses the publish (full, discard new) answers with a JetStream error:
 * a failed attempt whose error is the server's, so a task with
 * max_retries 1 is exhausted; a subject that no stream captures gets no
 * responders: deferred, not an attempt.
 */
static void
test_outcome_stored(void **state)
{
    const char *flags[] = {"retry.stored_subjects=dlq.retry.stream.>", "retry.timeout_ms=5000",
                           NULL};
    struct it_env *e = it_env_start_js("stored", flags);
    assert_non_null(e);
    *state = e;
    jsCtx *js = add_stream(e->nc, "RETRY_STORED", "dlq.retry.stream.ok", 0);
    jsCtx *js2 = add_stream(e->nc, "RETRY_FULL", "dlq.retry.stream.full", 1);
    jsCtx_Destroy(js2);

    char id[96], id_full[96], id_none[96], id_first[96];
    struct it_envelope env;
    it_unique_id("st", id, sizeof id);
    failure(&env, id, "ECONNRESET", "immediate", "dlq.retry.stream.ok", 1);
    publish(e->nc, "dlq.failed.orders", &env);
    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, id, "completed", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok && it_json_int(t, "retry_count") == 0 && history_find(t, 1, "succeeded"),
             "the PubAck must complete the task after one attempt: %s", dump);
    free(dump);
    json_decref(t);
    IT_CHECK(stream_msgs(js, "RETRY_STORED") == 1, "the stream holds %llu, want 1",
             (unsigned long long)stream_msgs(js, "RETRY_STORED"));

    /* The full stream: the first message fills it, the second is refused. */
    it_unique_id("first", id_first, sizeof id_first);
    env.task_id = id_first;
    env.retry_subject = "dlq.retry.stream.full";
    publish(e->nc, "dlq.failed.orders", &env);
    t = it_wait_task_status(e->nc, id_first, "completed", IT_WAIT_MS, &ok);
    json_decref(t);
    IT_CHECK(ok, "the first task into the one-message stream must complete");
    it_unique_id("full", id_full, sizeof id_full);
    env.task_id = id_full;
    publish(e->nc, "dlq.failed.orders", &env);
    t = it_wait_task_status(e->nc, id_full, "exhausted", IT_WAIT_MS, &ok);
    dump = it_json_dump(t);
    IT_CHECK(ok && it_json_int(t, "retry_count") == 1 && history_has_error(t, "jetstream"),
             "a stream that refuses the retry fails the attempt (max_retries 1: exhausted): %s",
             dump);
    free(dump);
    json_decref(t);

    /* No stream on the subject: no responders, deferred (never an attempt). */
    it_unique_id("none", id_none, sizeof id_none);
    env.task_id = id_none;
    env.retry_subject = "dlq.retry.stream.nowhere";
    publish(e->nc, "dlq.failed.orders", &env);
    int64_t deadline = sc_now_mono_ms() + IT_WAIT_MS;
    json_t *st = NULL;
    while (sc_now_mono_ms() < deadline) {
        json_decref(st);
        st = it_admin_stats(e->nc);
        if (it_json_int(st, "lifetime_stats.deferred") >= 1)
            break;
        it_sleep_ms(50);
    }
    t = it_admin_get(e->nc, id_none);
    dump = it_json_dump(t);
    IT_CHECK(it_json_int(st, "lifetime_stats.deferred") >= 1 && it_json_int(t, "retry_count") == 0 &&
                 it_json_str(t, "status") && strcmp(it_json_str(t, "status"), "exhausted") != 0,
             "no stream and no worker: deferred, not failed: %s", dump);
    free(dump);
    json_decref(t);
    json_decref(st);
    jsCtx_Destroy(js);
    e->passed = true;
}

/* ---- size at ingest (issue 10, item 8) ----------------------------------------------------------- */

/* big_task() writes a MessagePack bin32 of n zero bytes into out (reset first). */
static void
big_task(struct sc_buf *out, size_t n)
{
    uint8_t h[5] = {0xc6, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    sc_buf_reset(out);
    assert_int_equal(sc_buf_append(out, h, 5), SC_OK);
    for (size_t i = 0; i < n; i += 4096) {
        static const char zeros[4096];
        assert_int_equal(sc_buf_append(out, zeros, n - i < 4096 ? n - i : 4096), SC_OK);
    }
}

/* long_id() writes an id of exactly len bytes starting with tag into out (len + 1 bytes). */
static void
long_id(char *out, size_t len, const char *tag)
{
    memset(out, 'x', len);
    memcpy(out, tag, strlen(tag));
    out[len] = '\0';
}

/* ask() sends a big envelope (id, n task bytes, policy) and tells whether ingest accepted it. */
static bool
ask(struct it_env *e, const char *id, struct sc_buf *task, size_t n, const char *policy)
{
    struct it_envelope env;
    big_task(task, n);
    failure(&env, id, "ECONNRESET", policy, NULL, -1);
    env.task_mp = task->data;
    env.task_len = task->len;
    json_t *ack = it_request_envelope(e->nc, "dlq.failed.big", &env);
    char *dump = it_json_dump(ack);
    IT_CHECK(ack, "no ingest acknowledgement for %zu bytes", n);
    bool accepted = json_is_true(json_object_get(ack, "ok"));
    if (!accepted)
        IT_CHECK(it_json_int(ack, "error.code") == 400 &&
                     strstr(it_json_str(ack, "error.message"), "max_payload"),
                 "a refusal must be a 400 naming max_payload: %s", dump);
    free(dump);
    json_decref(ack);
    return accepted;
}

/*
 * 9. A task id at its limit (1,024 bytes) with a payload near max_payload:
 * the largest task that ingest accepts (found by bisection; parked probes
 * with policy never) is dispatched to the worker whole, and one byte more
 * is refused at ingest with a 400. The retry message's headers plus body
 * come within 64 bytes of max_payload (the headers are sized for the
 * widest attempt, budget, category and episode). Before the fix the id
 * was counted once: such a task was accepted, then parked on its first
 * dispatch ("does not fit the server's max_payload").
 */
static void
test_big_task_fits(void **state)
{
    const char *flags[] = {"limits.max_task_id_len=1024", NULL};
    struct it_env *e = it_env_start("bigtask", flags);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.big", "workers", 4, true);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    int64_t maxp = natsConnection_GetMaxPayload(e->nc);
    assert_true(maxp > 16384);
    struct sc_buf task;
    sc_buf_init(&task, (size_t)maxp + 64);
    static char id[1025];
    char tag[32];
    /* lo is accepted, hi refused (its envelope still fits max_payload: a 1,024-byte id, no headers). */
    size_t lo = (size_t)maxp - 8192, hi = (size_t)maxp - 1536;
    int probe = 0;

    snprintf(tag, sizeof tag, "probe-%d-", probe++);
    long_id(id, 1024, tag);
    IT_CHECK(ask(e, id, &task, lo, "never"), "%zu task bytes with a 1,024-byte id must fit", lo);
    snprintf(tag, sizeof tag, "probe-%d-", probe++);
    long_id(id, 1024, tag);
    IT_CHECK(!ask(e, id, &task, hi, "never"), "%zu task bytes cannot fit max_payload", hi);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        snprintf(tag, sizeof tag, "probe-%d-", probe++);
        long_id(id, 1024, tag);
        if (ask(e, id, &task, mid, "never"))
            lo = mid;
        else
            hi = mid;
    }
    fprintf(stderr, "[bigtask] max_payload %lld: largest task accepted with a 1,024-byte id: %zu bytes of bin (+5)\n",
            (long long)maxp, lo);

    long_id(id, 1024, "refused-");
    IT_CHECK(!ask(e, id, &task, lo + 1, "immediate"), "one byte more (%zu) must be refused",
             lo + 1);
    long_id(id, 1024, "largest-");
    IT_CHECK(ask(e, id, &task, lo, "immediate"), "the largest size (%zu) must be accepted again",
             lo);
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "the largest accepted task was never dispatched");
    const struct it_rec_msg *m = it_rec_get(w, 0);
    IT_CHECK(m->len == task.len && memcmp(m->body, task.data, task.len) == 0,
             "the retry body is not the task (%zu vs %zu bytes)", m->len, task.len);
    size_t wire = 12;
    for (int i = 0; i < m->nhdr; i++)
        wire += strlen(m->hdr_name[i]) + strlen(m->hdr_val[i]) + 4;
    fprintf(stderr, "[bigtask] retry message: %zu header bytes + %zu body bytes = %lld of %lld\n",
            wire, m->len, (long long)(wire + m->len), (long long)maxp);
    IT_CHECK((int64_t)(wire + m->len) <= maxp && (int64_t)(wire + m->len) > maxp - 64,
             "headers %zu + body %zu should come within 64 bytes of max_payload %lld", wire,
             m->len, (long long)maxp);
    /* dlq.admin.get cannot answer with a task this big (the reply passes max_payload): use stats. */
    IT_CHECK(wait_stat_at_least(e->nc, "lifetime_stats.retry_success", 1, IT_WAIT_MS) == 1,
             "the largest task must complete, not be parked");
    sc_buf_destroy(&task);
    e->passed = true;
}

/* ---- the header block on the wire (issue 15) ---------------------------------------------------- */

/*
 * raw_read_until() reads from fd into buf (*len bytes held, cap in all,
 * kept NUL-terminated) until have(buf, *len, arg) is true or timeout_ms
 * passed. Returns whether have() became true.
 */
static bool
raw_read_until(int fd, char *buf, size_t *len, size_t cap,
               bool (*have)(const char *buf, size_t len, const void *arg), const void *arg,
               int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;

    while (!have(buf, *len, arg)) {
        int64_t left = deadline - sc_now_mono_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || *len + 1 >= cap || poll(&pfd, 1, (int)left) <= 0)
            return false;
        ssize_t n = read(fd, buf + *len, cap - 1 - *len);
        if (n <= 0)
            return false;
        *len += (size_t)n;
        buf[*len] = '\0';
    }
    return true;
}

static bool
have_text(const char *buf, size_t len, const void *arg)
{
    (void)len;
    return strstr(buf, arg) != NULL;
}

/* A whole HMSG: its line, then hlen + tlen bytes and CRLF. */
static bool
have_hmsg(const char *buf, size_t len, const void *arg)
{
    const char *h = strstr(buf, "HMSG "), *eol;
    unsigned long hlen, tlen;
    char reply[256];

    (void)arg;
    if (!h || !(eol = strstr(h, "\r\n")))
        return false;
    if (sscanf(h, "HMSG %*s %*s %255s %lu %lu", reply, &hlen, &tlen) != 3)
        return false;
    return (size_t)(eol + 2 - buf) + tlen + 2 <= len;
}

/*
 * The retry's headers as they reach the wire, read by a raw NATS client (no
 * nats.c parser in between): the sidecar hands nats.c its eight headers as
 * one pre-written block (conn.c header_block()), so the bytes must still be
 * "NATS/1.0", then exactly one "Name: value" line for each header of DESIGN
 * section 5 with the values the task has, then an empty line; and the body
 * after the header block is the task.
 */
static void
test_headers_on_the_wire(void **state)
{
    struct it_env *e = it_env_start("wire", NULL);
    assert_non_null(e);
    *state = e;

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->srv.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    IT_CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "raw client: connect failed");
    static char buf[1 << 16];
    size_t len = 0;
    IT_CHECK(raw_read_until(fd, buf, &len, sizeof buf, have_text, "\r\n", 5000), "raw client: no INFO");
    static const char hello[] = "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,"
                                "\"protocol\":1,\"name\":\"it-raw-worker\"}\r\n"
                                "SUB dlq.retry.wire 1\r\nPING\r\n";
    IT_CHECK(write(fd, hello, sizeof hello - 1) == (ssize_t)(sizeof hello - 1), "raw client: write");
    IT_CHECK(raw_read_until(fd, buf, &len, sizeof buf, have_text, "PONG\r\n", 5000), "raw client: no PONG");
    len = 0;
    buf[0] = '\0';

    char id[96];
    it_unique_id("wire", id, sizeof id);
    struct sc_buf task;
    sc_buf_init(&task, 1 << 16);
    assert_int_equal(it_default_task(&task), 0);
    struct it_envelope env;
    failure(&env, id, "connection refused", "immediate", NULL, 4);
    env.task_mp = task.data;
    env.task_len = task.len;
    env.error_type = "ConnectionRefusedError";
    json_t *ack = it_request_envelope(e->nc, "dlq.failed.wire", &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest refused the failure");
    json_decref(ack);

    IT_CHECK(raw_read_until(fd, buf, &len, sizeof buf, have_hmsg, NULL, IT_WAIT_MS),
             "no retry reached the raw client: %.200s", buf);
    const char *h = strstr(buf, "HMSG ");
    char subj[256], reply[256];
    unsigned long sid, hlen, tlen;
    IT_CHECK(sscanf(h, "HMSG %255s %lu %255s %lu %lu", subj, &sid, reply, &hlen, &tlen) == 5,
             "HMSG line: %.200s", h);
    IT_CHECK(strcmp(subj, "dlq.retry.wire") == 0, "retry subject %s", subj);
    const char *hdr = strstr(h, "\r\n") + 2;
    IT_CHECK(hlen <= tlen && tlen - hlen == task.len && memcmp(hdr + hlen, task.data, task.len) == 0,
             "the body after %lu header bytes is not the task (%lu bytes in all)", hlen, tlen);
    IT_CHECK(hlen > 14 && memcmp(hdr, "NATS/1.0\r\n", 10) == 0 &&
                 memcmp(hdr + hlen - 4, "\r\n\r\n", 4) == 0,
             "header block: want NATS/1.0 ... empty line, got %.*s", (int)hlen, hdr);

    static const char *const names[] = {"Dlq-Task-Id", "Dlq-Attempt", "Dlq-Max-Retries",
                                        "Dlq-Error-Category", "Dlq-Original-Subject",
                                        "Dlq-First-Failed-At", "Dlq-Episode", "Nats-Msg-Id"};
    char vals[8][256] = {{0}};
    int seen[8] = {0};
    const char *p = hdr + 10, *end = hdr + hlen - 2;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        IT_CHECK(eol && eol[1] == '\n', "header line without CRLF: %.*s", (int)(end - p), p);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        IT_CHECK(colon && colon[1] == ' ', "header line is not \"Name: value\": %.*s", (int)(eol - p), p);
        int k = -1;
        for (int i = 0; i < 8; i++)
            if ((size_t)(colon - p) == strlen(names[i]) && memcmp(p, names[i], strlen(names[i])) == 0)
                k = i;
        IT_CHECK(k >= 0, "unexpected header line: %.*s", (int)(eol - p), p);
        IT_CHECK(!seen[k]++, "header %s twice", names[k]);
        snprintf(vals[k], sizeof vals[k], "%.*s", (int)(eol - colon - 2), colon + 2);
        p = eol + 2;
    }
    for (int i = 0; i < 8; i++)
        IT_CHECK(seen[i], "header %s missing: %.*s", names[i], (int)hlen, hdr);
    IT_CHECK(strcmp(vals[0], id) == 0, "Dlq-Task-Id %s, want %s", vals[0], id);
    IT_CHECK(strcmp(vals[1], "1") == 0, "Dlq-Attempt %s, want 1", vals[1]);
    IT_CHECK(strcmp(vals[2], "4") == 0, "Dlq-Max-Retries %s, want 4", vals[2]);
    IT_CHECK(strcmp(vals[3], "network") == 0, "Dlq-Error-Category %s, want network", vals[3]);
    IT_CHECK(strcmp(vals[4], "dlq.failed.wire") == 0, "Dlq-Original-Subject %s", vals[4]);
    int64_t ms = 0;
    IT_CHECK(sc_parse_rfc3339(vals[5], strlen(vals[5]), &ms) == SC_OK, "Dlq-First-Failed-At %s",
             vals[5]);
    char want[400];
    snprintf(want, sizeof want, "%s:%s:1", id, vals[6]);
    IT_CHECK(strcmp(vals[7], want) == 0, "Nats-Msg-Id %s, want %s", vals[7], want);
    close(fd);
    sc_buf_destroy(&task);
    e->passed = true;
}

/* ---- SIGHUP and the default budget (issue 10, item 10) ------------------------------------------- */

/* write_file() replaces path's content with text. */
static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/*
 * 10. default_max_retries 10 in the config file, a worker that always
 * fails, linear backoff of 300 ms. Task "dflt" took the default, task "own"
 * said max_retries 10 itself. Once both have failed 3 times, the file says
 * default_max_retries 2 and the daemon gets SIGHUP: "dflt" is exhausted at
 * once (with its event) and its budget reads 2; "own" keeps its 10 and goes
 * on. Before the fix "dflt" kept retrying to 10.
 */
static void
test_sighup_lowers_default_budget(void **state)
{
    char cfgpath[IT_PATH_MAX + 32], cfgflag[IT_PATH_MAX + 48];
    const char *tmp = getenv("TMPDIR");
    snprintf(cfgpath, sizeof cfgpath, "%s/dlq-it-hup-%d.yaml", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    write_file(cfgpath, "default_max_retries: 10\n");
    snprintf(cfgflag, sizeof cfgflag, "config=%s", cfgpath);
    const char *flags[] = {cfgflag, "backoff.linear_step_ms=300", NULL};
    struct it_env *e = it_env_start("hup", flags);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 256, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_FAIL, "disk quota exceeded", NULL});
    struct it_recorder *ev = it_env_recorder(e, e->nc, "dlq.events.exhausted", NULL, 64, true);
    assert_non_null(ev);

    char dflt[96], own[96];
    it_unique_id("dflt", dflt, sizeof dflt);
    it_unique_id("own", own, sizeof own);
    struct it_envelope env;
    failure(&env, dflt, "disk quota exceeded", "linear", NULL, -1);
    publish(e->nc, "dlq.failed.hup", &env);
    env.task_id = own;
    env.max_retries = 10;
    publish(e->nc, "dlq.failed.hup", &env);

    int64_t deadline = sc_now_mono_ms() + IT_WAIT_MS;
    int64_t rc_d = 0, rc_o = 0;
    while (sc_now_mono_ms() < deadline && (rc_d < 3 || rc_o < 3)) {
        json_t *a = it_admin_get(e->nc, dflt), *b = it_admin_get(e->nc, own);
        rc_d = it_json_int(a, "retry_count");
        rc_o = it_json_int(b, "retry_count");
        /* The failure and the admin request travel on two subscriptions: the first get may come first. */
        if (a && json_object_get(a, "task_id"))
            IT_CHECK(it_json_int(a, "max_retries") == 10, "dflt takes the default 10");
        json_decref(a);
        json_decref(b);
        it_sleep_ms(20);
    }
    IT_CHECK(rc_d >= 3 && rc_o >= 3, "want 3 failures each first (%lld, %lld)", (long long)rc_d,
             (long long)rc_o);
    write_file(cfgpath, "default_max_retries: 2\n");
    assert_int_equal(kill(e->dmn.pid, SIGHUP), 0);

    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, dflt, "exhausted", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "a task on the default budget must be exhausted when the default drops below its failures: %s",
             dump);
    IT_CHECK(it_json_int(t, "max_retries") == 2, "its budget follows the default (2): %s", dump);
    int64_t at_exhaust = it_json_int(t, "retry_count");
    free(dump);
    json_decref(t);
    /* The event travels on another connection than the admin reply: wait for it, then for any second one. */
    for (int k = 0; k < 250 && count_events(ev, "exhausted", dflt) == 0; k++)
        it_sleep_ms(20);
    it_sleep_ms(200);
    IT_CHECK(count_events(ev, "exhausted", dflt) == 1, "want one exhausted event for dflt, got %zu",
             count_events(ev, "exhausted", dflt));

    /* own goes on past its 3 failures with its own budget of 10. */
    deadline = sc_now_mono_ms() + IT_WAIT_MS;
    json_t *b = NULL;
    while (sc_now_mono_ms() < deadline) {
        json_decref(b);
        b = it_admin_get(e->nc, own);
        if (it_json_int(b, "retry_count") >= rc_o + 2)
            break;
        it_sleep_ms(20);
    }
    dump = it_json_dump(b);
    IT_CHECK(it_json_int(b, "retry_count") >= rc_o + 2 && it_json_int(b, "max_retries") == 10,
             "a task with its own max_retries keeps retrying to it: %s", dump);
    free(dump);
    json_decref(b);
    t = it_admin_get(e->nc, dflt);
    IT_CHECK(it_json_int(t, "retry_count") == at_exhaust, "dflt retried after it was exhausted");
    json_decref(t);
    unlink(cfgpath);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_network_error_backoff, it_teardown),
        cmocka_unit_test_teardown(test_validation_parked, it_teardown),
        cmocka_unit_test_teardown(test_exhausted, it_teardown),
        cmocka_unit_test_teardown(test_timeout, it_teardown),
        cmocka_unit_test_teardown(test_no_responders, it_teardown),
        cmocka_unit_test_teardown(test_episodes_in_stream, it_teardown),
        cmocka_unit_test_teardown(test_puback_is_not_the_outcome, it_teardown),
        cmocka_unit_test_teardown(test_outcome_stored, it_teardown),
        cmocka_unit_test_teardown(test_big_task_fits, it_teardown),
        cmocka_unit_test_teardown(test_headers_on_the_wire, it_teardown),
        cmocka_unit_test_teardown(test_sighup_lowers_default_budget, it_teardown),
    };
    return cmocka_run_group_tests_name("integration_retry", tests, NULL, NULL);
}
