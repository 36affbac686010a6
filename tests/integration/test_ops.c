/* test_ops.c - integration: /healthz, /readyz and /metrics over real HTTP, log formats, and alerts reaching a webhook. */
#define _GNU_SOURCE /* strcasestr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <cmocka.h>

#include "harness.h"

#ifndef DLQ_PYTHON3
#error "DLQ_PYTHON3 must name a python3 with prometheus_client (set by tests/integration/CMakeLists.txt)"
#endif
#ifndef PARSE_METRICS_PY
#error "PARSE_METRICS_PY must name tests/integration/parse_metrics.py"
#endif


/* ---- a tiny HTTP/1.1 client (blocking; the test thread only) --------------------------------- */

/* The harness's response (it_http_read()). */
#define http_resp it_http_resp
#define http_resp_free it_http_resp_free

/* http_do() sends one request to 127.0.0.1:port and reads the response to EOF. Returns 0 or -1. */
static int
http_do(int port, const char *method, const char *path, struct http_resp *r)
{
    return it_http_request(port, method, path, r);
}

/* header_has() tells whether the response head holds the line "name: value" (name any case). */
static bool
header_has(const struct http_resp *r, const char *name, const char *value)
{
    char want[256];
    snprintf(want, sizeof want, "\r\n%s: %s", name, value);
    return strcasestr(r->head, want) != NULL;
}

/* http_json() GETs path and parses the body as JSON (NULL when it is not); sets *status. */
static json_t *
http_json(int port, const char *path, int *status)
{
    struct http_resp r;
    json_t *j = NULL;

    *status = 0;
    if (http_do(port, "GET", path, &r) == 0) {
        *status = r.status;
        j = json_loads(r.body, 0, NULL);
    }
    http_resp_free(&r);
    return j;
}

/* wait_readyz() polls /readyz until it answers want (200 or 503) or timeout_ms pass. */
static bool
wait_readyz(int port, int want, int timeout_ms)
{
    int64_t end = sc_now_mono_ms() + timeout_ms;
    do {
        struct http_resp r;
        int st = http_do(port, "GET", "/readyz", &r) == 0 ? r.status : 0;
        http_resp_free(&r);
        if (st == want)
            return true;
        it_sleep_ms(50);
    } while (sc_now_mono_ms() < end);
    return false;
}

/* ---- /metrics through prometheus_client's parser ---------------------------------------------- */

/*
 * scrape() GETs /metrics, checks status and content type, and has
 * parse_metrics.py (prometheus_client) parse it. Returns the parser's JSON
 * (new reference) after asserting it parsed and listed no naming problem.
 */
static json_t *
scrape(struct it_env *e, int port)
{
    char txt[IT_PATH_MAX + 32], out[IT_PATH_MAX + 32], cmd[3 * IT_PATH_MAX + 256];
    struct http_resp r;
    json_t *j, *problems;
    FILE *f;
    int rc;

    IT_CHECK(http_do(port, "GET", "/metrics", &r) == 0 && r.status == 200,
             "GET /metrics: status %d", r.status);
    IT_CHECK(header_has(&r, "Content-Type", "text/plain; version=0.0.4"),
             "/metrics content type: %s", r.head);
    snprintf(txt, sizeof txt, "%s/metrics.txt", e->dir);
    snprintf(out, sizeof out, "%s/metrics.json", e->dir);
    f = fopen(txt, "w");
    assert_non_null(f);
    fwrite(r.body, 1, r.len, f);
    fclose(f);
    http_resp_free(&r);
    snprintf(cmd, sizeof cmd, "'%s' '%s' < '%s' > '%s'", DLQ_PYTHON3, PARSE_METRICS_PY, txt, out);
    rc = system(cmd);
    j = json_load_file(out, 0, NULL);
    {
        char *dump = it_json_dump(j);
        IT_CHECK(rc == 0 && j && json_object_get(j, "families"),
                 "prometheus_client refused /metrics (exit %d; see %s): %.2000s", rc, txt, dump);
        problems = json_object_get(j, "problems");
        IT_CHECK(json_array_size(problems) == 0, "naming problems in /metrics: %.2000s", dump);
        free(dump);
    }
    return j;
}

/* sample() finds the value of the sample named name whose label lk equals lv (lk NULL: any). NAN when absent. */
static double
sample(const json_t *m, const char *name, const char *lk, const char *lv)
{
    const char *fname;
    json_t *fam;

    json_object_foreach(json_object_get(m, "families"), fname, fam) {
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(fam, "samples"), i, s) {
            const char *ln;
            if (strcmp(json_string_value(json_object_get(s, "name")), name) != 0)
                continue;
            ln = lk ? json_string_value(json_object_get(json_object_get(s, "labels"), lk)) : NULL;
            if (lk && (!ln || strcmp(ln, lv) != 0))
                continue;
            return json_is_number(json_object_get(s, "value"))
                       ? json_number_value(json_object_get(s, "value"))
                       : NAN;
        }
    }
    return NAN;
}

/* sum_samples() adds every sample named name. */
static double
sum_samples(const json_t *m, const char *name)
{
    const char *fname;
    json_t *fam;
    double sum = 0;

    json_object_foreach(json_object_get(m, "families"), fname, fam) {
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(fam, "samples"), i, s) {
            if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
                sum += json_number_value(json_object_get(s, "value"));
        }
    }
    return sum;
}

static const char *
family_type(const json_t *m, const char *family)
{
    return json_string_value(json_object_get(json_object_get(json_object_get(m, "families"), family), "type"));
}

#define EXPECT_SAMPLE(m, want, name, lk, lv)                                                    \
    do {                                                                                        \
        double got_ = sample(m, name, lk, lv);                                                  \
        IT_CHECK(got_ == (double)(want), "%s{%s=%s}: want %g, got %g", name, lk ? lk : "",     \
                 lv ? lv : "", (double)(want), got_);                                           \
    } while (0)

/* check_histogram() asserts that the buckets of family grow with le and end at _count. */
static void
check_histogram(const json_t *m, const char *family)
{
    char bucket[128], count[128];
    json_t *fam = json_object_get(json_object_get(m, "families"), family), *s;
    double prev = -1, prev_le = -1, inf = NAN;
    size_t i;

    IT_CHECK(fam && strcmp(family_type(m, family), "histogram") == 0, "%s: not a histogram", family);
    snprintf(bucket, sizeof bucket, "%s_bucket", family);
    snprintf(count, sizeof count, "%s_count", family);
    json_array_foreach(json_object_get(fam, "samples"), i, s) {
        const char *le;
        double v = json_number_value(json_object_get(s, "value")), lev;
        if (strcmp(json_string_value(json_object_get(s, "name")), bucket) != 0)
            continue;
        le = json_string_value(json_object_get(json_object_get(s, "labels"), "le"));
        IT_CHECK(le != NULL, "%s: bucket without le", family);
        lev = strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, NULL);
        IT_CHECK(lev > prev_le && v >= prev, "%s: bucket le=%s (%g) out of order", family, le, v);
        prev_le = lev;
        prev = v;
        if (isinf(lev))
            inf = v;
    }
    IT_CHECK(inf == sample(m, count, NULL, NULL), "%s: +Inf bucket %g != count %g", family, inf,
             sample(m, count, NULL, NULL));
}

/* Sends a failure that parks (a validation error: policy never) and checks the ack. */
static void
send_parked(struct it_env *e, const char *subject, const char *id)
{
    struct it_envelope env;
    json_t *ack;

    it_envelope_init(&env);
    env.task_id = id;
    env.error = "400 Bad Request: email invalid";
    ack = it_request_envelope(e->nc, subject, &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack of %s", id);
    json_decref(ack);
}

/* Sends a failure with a network error (exponential backoff) and max_retries; checks the ack. */
static void
send_retryable(struct it_env *e, const char *subject, const char *id, int max_retries)
{
    struct it_envelope env;
    json_t *ack;

    it_envelope_init(&env);
    env.task_id = id;
    env.error = "connection refused";
    env.max_retries = max_retries;
    ack = it_request_envelope(e->nc, subject, &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack of %s", id);
    json_decref(ack);
}

/* ---- tests ------------------------------------------------------------------------------------ */

/*
 * Each endpoint: /healthz alive, /readyz ready, 404 and 405 answers; with
 * nats-server down /readyz turns 503 (naming NATS) while /healthz stays
 * 200; back up, /readyz is 200 again and the reconnect is counted.
 */
static void
test_endpoints(void **state)
{
    int port, st;
    struct it_env *e = it_env_start_http("ops-endpoints", NULL, &port);
    struct http_resp r;
    json_t *j, *m;

    assert_non_null(e);
    *state = e;

    j = http_json(port, "/healthz", &st);
    IT_CHECK(st == 200 && it_json_str(j, "status") && strcmp(it_json_str(j, "status"), "alive") == 0,
             "/healthz: %d", st);
    json_decref(j);
    j = http_json(port, "/readyz", &st);
    {
        char *dump = it_json_dump(j);
        IT_CHECK(st == 200 && strcmp(it_json_str(j, "status"), "ready") == 0 &&
                     strcmp(it_json_str(j, "nats"), "connected") == 0 &&
                     strcmp(it_json_str(j, "subscriptions"), "live") == 0 &&
                     strcmp(it_json_str(j, "persistence"), "ok") == 0,
                 "/readyz: %d %s", st, dump);
        free(dump);
    }
    json_decref(j);

    IT_CHECK(http_do(port, "GET", "/nope", &r) == 0 && r.status == 404, "/nope: %d", r.status);
    http_resp_free(&r);
    IT_CHECK(http_do(port, "POST", "/metrics", &r) == 0 && r.status == 405 &&
                 header_has(&r, "Allow", "GET, HEAD"),
             "POST /metrics: %d %s", r.status, r.head);
    http_resp_free(&r);
    IT_CHECK(http_do(port, "HEAD", "/healthz", &r) == 0 && r.status == 200 && r.len == 0,
             "HEAD /healthz: %d, %zu body bytes", r.status, r.len);
    http_resp_free(&r);

    /* NATS goes away: not ready, still alive. */
    it_server_stop(&e->srv, SIGTERM);
    IT_CHECK(wait_readyz(port, 503, IT_WAIT_MS), "/readyz stayed ready with nats-server down");
    j = http_json(port, "/readyz", &st);
    IT_CHECK(st == 503 && it_json_str(j, "nats") && strcmp(it_json_str(j, "nats"), "disconnected") == 0,
             "/readyz with NATS down: %d", st);
    json_decref(j);
    j = http_json(port, "/healthz", &st);
    IT_CHECK(st == 200, "/healthz with NATS down: %d", st);
    json_decref(j);

    IT_CHECK(it_server_restart(&e->srv) == 0, "nats-server did not restart");
    IT_CHECK(wait_readyz(port, 200, IT_WAIT_MS), "/readyz not ready again after the restart");
    m = scrape(e, port);
    IT_CHECK(sample(m, "dlq_nats_reconnects_total", NULL, NULL) >= 1, "reconnects: %g",
             sample(m, "dlq_nats_reconnects_total", NULL, NULL));
    IT_CHECK(sample(m, "dlq_nats_disconnects_total", NULL, NULL) >= 1, "disconnects: %g",
             sample(m, "dlq_nats_disconnects_total", NULL, NULL));
    EXPECT_SAMPLE(m, 1, "dlq_nats_connected", NULL, NULL);
    json_decref(m);
    e->passed = true;
}

/*
 * /metrics after a known history: 5 parked failures, 3 failures retried
 * once with success, 3 invalid messages. The parser accepts the text and
 * every value matches what happened.
 */
static void
test_metrics_values(void **state)
{
    const char *flags[] = {"max_size=1000", NULL};
    int port;
    struct it_env *e = it_env_start_http("ops-metrics", flags, &port);
    char ids[8][96];
    json_t *m, *rep;
    natsConnection *wc;
    struct it_recorder *w;

    assert_non_null(e);
    *state = e;
    wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 64, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});

    /* An empty scrape parses too. */
    m = scrape(e, port);
    EXPECT_SAMPLE(m, 0, "dlq_queue_size", NULL, NULL);
    json_decref(m);

    for (int i = 0; i < 5; i++)
        send_parked(e, "dlq.failed.ops", it_unique_id("park", ids[i], sizeof ids[i]));
    for (int i = 5; i < 8; i++)
        send_retryable(e, "dlq.failed.ops", it_unique_id("ok", ids[i], sizeof ids[i]), 3);
    for (int i = 0; i < 2; i++) {
        rep = it_request_json(e->nc, "dlq.failed.ops", "{\"task\":{},\"error\":\"x\"}", IT_REQUEST_MS);
        IT_CHECK(rep != NULL, "no 400 for an envelope without task_id");
        json_decref(rep);
    }
    rep = it_request_bytes(e->nc, "dlq.failed.ops", "\xc1\xc1", 2, IT_REQUEST_MS);
    IT_CHECK(rep != NULL, "no 400 for garbage bytes");
    json_decref(rep);
    for (int i = 5; i < 8; i++) {
        bool ok = false;
        rep = it_wait_task_status(e->nc, ids[i], "completed", IT_WAIT_MS, &ok);
        IT_CHECK(ok, "%s did not complete", ids[i]);
        json_decref(rep);
    }

    m = scrape(e, port);
    EXPECT_SAMPLE(m, 5, "dlq_queue_size", NULL, NULL);
    EXPECT_SAMPLE(m, 1000, "dlq_queue_capacity", NULL, NULL);
    EXPECT_SAMPLE(m, 5, "dlq_tasks", "status", "parked");
    EXPECT_SAMPLE(m, 0, "dlq_tasks", "status", "pending");
    EXPECT_SAMPLE(m, 0, "dlq_tasks", "status", "retrying");
    EXPECT_SAMPLE(m, 3, "dlq_tasks", "status", "completed");
    EXPECT_SAMPLE(m, 5, "dlq_tasks_by_category", "category", "validation");
    EXPECT_SAMPLE(m, 0, "dlq_tasks_by_category", "category", "network");
    EXPECT_SAMPLE(m, 5, "dlq_tasks_by_policy", "policy", "never");
    EXPECT_SAMPLE(m, 11, "dlq_ingested_total", NULL, NULL);
    EXPECT_SAMPLE(m, 8, "dlq_enqueued_total", NULL, NULL);
    EXPECT_SAMPLE(m, 2, "dlq_invalid_total", "reason", "task_id_missing");
    IT_CHECK(sum_samples(m, "dlq_invalid_total") == 3, "invalid in all: %g",
             sum_samples(m, "dlq_invalid_total"));
    EXPECT_SAMPLE(m, 3, "dlq_retries_published_total", NULL, NULL);
    EXPECT_SAMPLE(m, 3, "dlq_retries_total", "outcome", "success");
    EXPECT_SAMPLE(m, 0, "dlq_retries_total", "outcome", "failure");
    EXPECT_SAMPLE(m, 0, "dlq_retries_total", "outcome", "timeout");
    EXPECT_SAMPLE(m, 0, "dlq_exhausted_total", NULL, NULL);
    EXPECT_SAMPLE(m, 0, "dlq_retries_in_flight", NULL, NULL);
    EXPECT_SAMPLE(m, 1, "dlq_persistence_state", "state", "ok");
    EXPECT_SAMPLE(m, 0, "dlq_persistence_queued_writes", NULL, NULL);
    EXPECT_SAMPLE(m, 1, "dlq_nats_connected", NULL, NULL);
    EXPECT_SAMPLE(m, 0, "dlq_alert_firing", "alert", "queue_utilization");
    IT_CHECK(strcmp(family_type(m, "dlq_retries"), "counter") == 0, "dlq_retries_total is no counter");
    IT_CHECK(strcmp(family_type(m, "dlq_queue_size"), "gauge") == 0, "dlq_queue_size is no gauge");
    check_histogram(m, "dlq_retry_lateness_seconds");
    check_histogram(m, "dlq_failure_to_success_seconds");
    EXPECT_SAMPLE(m, 3, "dlq_retry_lateness_seconds_count", NULL, NULL);
    EXPECT_SAMPLE(m, 3, "dlq_failure_to_success_seconds_count", NULL, NULL);
    /* The first retry waits exp_base_ms (200 ms, no jitter) after the failure. */
    IT_CHECK(sample(m, "dlq_failure_to_success_seconds_sum", NULL, NULL) >= 0.5,
             "time to success sum: %g s, want >= 3 x ~0.2 s",
             sample(m, "dlq_failure_to_success_seconds_sum", NULL, NULL));
    IT_CHECK(sample(m, "dlq_failure_to_success_seconds_bucket", "le", "0.1") == 0,
             "a success came sooner than the 200 ms backoff");
    json_decref(m);
    e->passed = true;
}

/*
 * logs() reads the daemon's log after it stopped, calling line() for each
 * line the daemon wrote (the harness's own lines are skipped).
 */
static size_t
read_log_lines(const char *path, char ***out)
{
    FILE *f = fopen(path, "r");
    char *line = NULL, **lines = NULL;
    size_t cap = 0, n = 0, lcap = 0;
    ssize_t k;

    assert_non_null(f);
    while ((k = getline(&line, &cap, f)) >= 0) {
        if (strncmp(line, "==== harness", 12) == 0)
            continue;
        if (k > 0 && line[k - 1] == '\n')
            line[k - 1] = '\0';
        if (n == lcap) {
            lcap = lcap ? lcap * 2 : 64;
            lines = realloc(lines, lcap * sizeof *lines);
            assert_non_null(lines);
        }
        lines[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    *out = lines;
    return n;
}

static void
free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

/* Drives one task through enqueue, retry and success so that both levels have lines. */
static void
one_success(struct it_env *e, char *id, size_t idlen)
{
    natsConnection *wc = it_env_connect(e, "it-worker");
    struct it_recorder *w;
    bool ok = false;
    json_t *rep;

    assert_non_null(wc);
    w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 16, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    send_retryable(e, "dlq.failed.logs", it_unique_id("log", id, idlen), 3);
    rep = it_wait_task_status(e->nc, id, "completed", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "%s did not complete", id);
    json_decref(rep);
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "daemon exit status %d", e->dmn.exit_status);
}

/* log.format json, log.level info: every line is a JSON object; lifecycle lines only. */
static void
test_logs_json(void **state)
{
    const char *flags[] = {"log.format=json", "log.level=info", NULL};
    struct it_env *e = it_env_start("ops-logs-json", flags);
    char id[96], **lines;
    size_t n;
    bool enq = false, ok = false, started = false, stopped = false;

    assert_non_null(e);
    *state = e;
    one_success(e, id, sizeof id);
    n = read_log_lines(e->dmn.log, &lines);
    IT_CHECK(n >= 4, "only %zu log lines", n);
    for (size_t i = 0; i < n; i++) {
        json_error_t jerr;
        json_t *j = json_loads(lines[i], 0, &jerr);
        const char *lvl, *msg, *tid;
        IT_CHECK(j && json_is_object(j), "line %zu is not a JSON object (%s): %s", i, jerr.text,
                 lines[i]);
        lvl = it_json_str(j, "level");
        msg = it_json_str(j, "msg");
        tid = it_json_str(j, "task_id");
        IT_CHECK(it_json_str(j, "time") && lvl && msg, "line %zu lacks time/level/msg: %s", i,
                 lines[i]);
        IT_CHECK(strcmp(lvl, "info") == 0 || strcmp(lvl, "warn") == 0 || strcmp(lvl, "error") == 0,
                 "level %s logged at log.level info: %s", lvl, lines[i]);
        IT_CHECK(strcmp(msg, "retry published") != 0, "a per-message line at info: %s", lines[i]);
        enq = enq || (strcmp(msg, "task enqueued") == 0 && tid && strcmp(tid, id) == 0 &&
                      it_json_str(j, "category") && strcmp(it_json_str(j, "category"), "network") == 0);
        ok = ok || (strcmp(msg, "retry succeeded") == 0 && tid && strcmp(tid, id) == 0);
        started = started || strcmp(msg, "dlq-sidecar started") == 0;
        stopped = stopped || strcmp(msg, "dlq-sidecar stopped") == 0;
        json_decref(j);
    }
    IT_CHECK(enq && ok && started && stopped,
             "lifecycle lines: enqueued %d, succeeded %d, started %d, stopped %d", enq, ok, started,
             stopped);
    free_lines(lines, n);
    e->passed = true;
}

/* log.format logfmt (the default), log.level debug: key=value lines; per-message lines at debug. */
static void
test_logs_logfmt(void **state)
{
    const char *flags[] = {"log.level=debug", NULL};
    struct it_env *e = it_env_start("ops-logs-logfmt", flags);
    char id[96], want_enq[160], want_pub[160], **lines;
    size_t n;
    bool enq = false, pub = false;

    assert_non_null(e);
    *state = e;
    one_success(e, id, sizeof id);
    n = read_log_lines(e->dmn.log, &lines);
    snprintf(want_enq, sizeof want_enq, "level=info msg=\"task enqueued\" task_id=%s ", id);
    snprintf(want_pub, sizeof want_pub, "level=debug msg=\"retry published\" task_id=%s ", id);
    for (size_t i = 0; i < n; i++) {
        const char *p = lines[i];
        IT_CHECK(strncmp(p, "time=", 5) == 0 && strstr(p, " level=") && strstr(p, " msg="),
                 "line %zu is not logfmt: %s", i, p);
        IT_CHECK(strchr(p, '{') == NULL || strstr(p, "msg=") < strchr(p, '{'),
                 "line %zu looks like JSON: %s", i, p);
        enq = enq || strstr(p, want_enq) != NULL;
        pub = pub || strstr(p, want_pub) != NULL;
    }
    IT_CHECK(enq, "no info line '%s'", want_enq);
    IT_CHECK(pub, "no debug line '%s'", want_pub);
    free_lines(lines, n);
    e->passed = true;
}

/*
 * log.task_lines_per_s 20 and 300 failures at request speed: per-task lines
 * beyond the cap are not written but counted, and the count is exact: the
 * "task enqueued" lines written plus dlq_log_lines_suppressed_total make
 * 300, and the "per-task log lines dropped" summaries add up to the counter.
 */
static void
test_logs_task_line_cap(void **state)
{
    const char *flags[] = {"log.task_lines_per_s=20", "log.level=info", NULL};
    int port;
    struct it_env *e = it_env_start_http("ops-logs-cap", flags, &port);
    char id[96], **lines;
    size_t n, written = 0;
    long long summed = 0;
    double suppressed;
    json_t *m, *st;

    assert_non_null(e);
    *state = e;
    for (int i = 0; i < 300; i++)
        send_retryable(e, "dlq.failed.logcap", it_unique_id("cap", id, sizeof id), 3);
    st = it_admin_stats(e->nc);
    IT_CHECK(st && json_integer_value(json_object_get(json_object_get(st, "lifetime_stats"), "enqueued")) == 300,
             "not 300 enqueued");
    json_decref(st);
    usleep(1500 * 1000); /* the window ends: its summary line is written */
    m = scrape(e, port);
    suppressed = sample(m, "dlq_log_lines_suppressed_total", NULL, NULL);
    json_decref(m);
    IT_CHECK(suppressed > 0, "300 lines at request speed under a cap of 20/s: none suppressed");
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "daemon exit status %d", e->dmn.exit_status);
    n = read_log_lines(e->dmn.log, &lines);
    for (size_t i = 0; i < n; i++) {
        const char *p = strstr(lines[i], " lines=");
        if (strstr(lines[i], "msg=\"task enqueued\" task_id=cap"))
            written++;
        if (strstr(lines[i], "msg=\"per-task log lines dropped\"") && p) {
            IT_CHECK(strstr(lines[i], "level=warn") && strstr(lines[i], "key=log.task_lines_per_s"),
                     "summary line: %s", lines[i]);
            summed += atoll(p + 7);
        }
    }
    free_lines(lines, n);
    IT_CHECK((double)written + suppressed == 300, "%zu lines written + %.0f suppressed != 300", written,
             suppressed);
    IT_CHECK((double)summed == suppressed, "summaries say %lld dropped, the counter %.0f", summed, suppressed);
    e->passed = true;
}

/* ---- alerts and their webhooks (the receiver: it_recv_start(), harness.c) ----------------------- */

/*
 * hook_wait() waits until a request answered 200 carries an alert named
 * name in state; returns its body parsed (new reference) or NULL.
 */
static json_t *
hook_wait(struct it_recv *h, const char *name, const char *state, int timeout_ms)
{
    int64_t end = sc_now_mono_ms() + timeout_ms;
    do {
        pthread_mutex_lock(&h->mu);
        for (size_t i = 0; i < h->n; i++) {
            json_t *j = json_loads(h->reqs[i].body, 0, NULL);
            if (h->reqs[i].answered == 200 && j && it_json_str(j, "name") &&
                strcmp(it_json_str(j, "name"), name) == 0 && it_json_str(j, "state") &&
                strcmp(it_json_str(j, "state"), state) == 0) {
                pthread_mutex_unlock(&h->mu);
                return j;
            }
            json_decref(j);
        }
        pthread_mutex_unlock(&h->mu);
        it_sleep_ms(20);
    } while (sc_now_mono_ms() < end);
    return NULL;
}

/* event_wait() waits for a <prefix>.events.alert message for name in state; returns its JSON. */
static json_t *
event_wait(struct it_recorder *r, const char *name, const char *state, int timeout_ms)
{
    int64_t end = sc_now_mono_ms() + timeout_ms;
    do {
        size_t n = it_rec_count(r);
        for (size_t i = 0; i < n; i++) {
            const struct it_rec_msg *m = it_rec_get(r, i);
            json_t *j = m->body ? json_loadb(m->body, m->len, 0, NULL) : NULL;
            if (j && it_json_str(j, "name") && strcmp(it_json_str(j, "name"), name) == 0 &&
                it_json_str(j, "state") && strcmp(it_json_str(j, "state"), state) == 0)
                return j;
            json_decref(j);
        }
        it_sleep_ms(20);
    } while (sc_now_mono_ms() < end);
    return NULL;
}

/* check_alert_range() asserts the shape of one alert body, its threshold and a value in [lo, hi]. */
static void
check_alert_range(const json_t *j, const char *what, double lo, double hi, double threshold)
{
    char *dump = it_json_dump(j);
    const json_t *v = json_object_get(j, "value"), *t = json_object_get(j, "threshold");
    int64_t at = 0;
    const char *ats = it_json_str(j, "at");

    IT_CHECK(j != NULL, "%s: none came", what);
    IT_CHECK(json_is_number(v) && json_number_value(v) >= lo - 1e-9 &&
                 json_number_value(v) <= hi + 1e-9,
             "%s: value want %g-%g: %s", what, lo, hi, dump);
    IT_CHECK(json_is_number(t) && fabs(json_number_value(t) - threshold) < 1e-9,
             "%s: threshold want %g: %s", what, threshold, dump);
    IT_CHECK(ats && sc_parse_rfc3339(ats, strlen(ats), &at) == SC_OK &&
                 llabs(at - sc_now_wall_ms()) < 120000,
             "%s: at is not a recent RFC 3339 time: %s", what, dump);
    free(dump);
}

/* check_alert() is check_alert_range() with an exact value. */
static void
check_alert(const json_t *j, const char *what, double value, double threshold)
{
    check_alert_range(j, what, value, value, threshold);
}

/*
 * Queue utilization above the threshold fires; the alert reaches the
 * webhook (after one 503, so through a retry) and the NATS event subject;
 * archiving the tasks resolves it, again on both. /metrics shows it firing.
 */
static void
test_alert_webhook(void **state)
{
    struct it_recv h;
    char hook_flag[128], ids[5][96];
    const char *flags[] = {"max_size=100", "alerts.utilization_percent=4",
                           "alerts.check_interval_ms=50", "alerts.webhook_backoff_ms=100",
                           "alerts.webhook_timeout_ms=5000", hook_flag, NULL};
    struct it_env *e;
    struct it_recorder *ev;
    json_t *j, *m;
    int port;

    assert_int_equal(it_recv_start(&h, 1, 503), 0);
    snprintf(hook_flag, sizeof hook_flag, "alerts.webhook_urls=http://127.0.0.1:%d/hook", h.port);
    e = it_env_start_http("ops-alert-hook", flags, &port);
    if (!e)
        it_recv_stop(&h);
    assert_non_null(e);
    *state = e;
    ev = it_env_recorder(e, e->nc, "dlq.events.alert", NULL, 64, true);
    assert_non_null(ev);

    for (int i = 0; i < 4; i++)
        send_parked(e, "dlq.failed.ops", it_unique_id("hook", ids[i], sizeof ids[i]));
    it_sleep_ms(300);
    IT_CHECK(it_rec_count(ev) == 0, "an alert at 4%% utilization (threshold: above 4%%)");
    send_parked(e, "dlq.failed.ops", it_unique_id("hook", ids[4], sizeof ids[4]));

    j = event_wait(ev, "queue_utilization", "firing", IT_WAIT_MS);
    check_alert(j, "firing event", 5, 4);
    json_decref(j);
    j = hook_wait(&h, "queue_utilization", "firing", IT_WAIT_MS);
    check_alert(j, "firing webhook", 5, 4);
    json_decref(j);
    pthread_mutex_lock(&h.mu);
    IT_CHECK(h.n >= 2 && h.reqs[0].answered == 503, "the first post was not retried after its 503");
    IT_CHECK(strcmp(h.reqs[0].method, "POST") == 0 && strcmp(h.reqs[0].path, "/hook") == 0 &&
                 strncmp(h.reqs[0].ctype, "application/json", 16) == 0,
             "webhook request: %s %s (%s)", h.reqs[0].method, h.reqs[0].path, h.reqs[0].ctype);
    pthread_mutex_unlock(&h.mu);
    m = scrape(e, port);
    EXPECT_SAMPLE(m, 1, "dlq_alert_firing", "alert", "queue_utilization");
    json_decref(m);

    j = it_request_json(e->nc, "dlq.admin.archive", "{\"status\":\"parked\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(j, "archived") == 5, "archive: want 5 archived");
    json_decref(j);
    j = event_wait(ev, "queue_utilization", "resolved", IT_WAIT_MS);
    check_alert(j, "resolved event", 0, 4);
    json_decref(j);
    j = hook_wait(&h, "queue_utilization", "resolved", IT_WAIT_MS);
    check_alert(j, "resolved webhook", 0, 4);
    json_decref(j);
    m = scrape(e, port);
    EXPECT_SAMPLE(m, 0, "dlq_alert_firing", "alert", "queue_utilization");
    EXPECT_SAMPLE(m, 2, "dlq_alert_webhook_posts_total", "result", "delivered");
    EXPECT_SAMPLE(m, 1, "dlq_alert_webhook_posts_total", "result", "retried");
    json_decref(m);
    it_recv_stop(&h);
    e->passed = true;
}

/*
 * More exhausted tasks than alerts.exhausted_count fire exhausted_tasks;
 * clearing them resolves it. Retries that fail drive retry_success_rate
 * below alerts.success_rate once the window holds min_retries outcomes;
 * later successes lift it back and it resolves.
 */
static void
test_alert_exhausted_and_rate(void **state)
{
    const char *flags[] = {"alerts.exhausted_count=2", "alerts.success_rate=0.5",
                           "alerts.min_retries=2", "alerts.window_s=600",
                           "alerts.check_interval_ms=50", NULL};
    struct it_env *e = it_env_start("ops-alert-rate", flags);
    struct it_recorder *ev, *w;
    natsConnection *wc;
    char id[96];
    json_t *j;

    assert_non_null(e);
    *state = e;
    ev = it_env_recorder(e, e->nc, "dlq.events.alert", NULL, 64, true);
    assert_non_null(ev);

    /* max_retries 0: exhausted at once. */
    for (int i = 0; i < 3; i++)
        send_retryable(e, "dlq.failed.ops", it_unique_id("exh", id, sizeof id), 0);
    j = event_wait(ev, "exhausted_tasks", "firing", IT_WAIT_MS);
    check_alert(j, "exhausted firing", 3, 2);
    json_decref(j);
    j = it_request_json(e->nc, "dlq.admin.clear", "{\"status\":\"exhausted\",\"confirm\":true}",
                        IT_REQUEST_MS);
    IT_CHECK(it_json_int(j, "cleared") == 3, "clear: want 3 cleared");
    json_decref(j);
    j = event_wait(ev, "exhausted_tasks", "resolved", IT_WAIT_MS);
    check_alert(j, "exhausted resolved", 0, 2);
    json_decref(j);

    /* Two retries fail (the tasks exhaust: 2, not more than 2), then three succeed. */
    wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 64, false);
    assert_non_null(w);
    {
        const struct it_step plan[] = {{IT_ACT_FAIL, "worker says no", NULL},
                                       {IT_ACT_FAIL, "worker says no", NULL}};
        it_recorder_set_plan(w, plan, 2, (struct it_step){IT_ACT_OK, NULL, NULL});
    }
    for (int i = 0; i < 2; i++)
        send_retryable(e, "dlq.failed.ops", it_unique_id("bad", id, sizeof id), 1);
    j = event_wait(ev, "retry_success_rate", "firing", IT_WAIT_MS);
    check_alert(j, "rate firing", 0, 0.5);
    IT_CHECK(it_json_int(j, "window_retries") == 2, "window_retries: want 2");
    json_decref(j);
    for (int i = 0; i < 3; i++)
        send_retryable(e, "dlq.failed.ops", it_unique_id("good", id, sizeof id), 1);
    j = event_wait(ev, "retry_success_rate", "resolved", IT_WAIT_MS);
    /* 2 of 4 (0.5 is not below 0.5) or 3 of 5, depending on when the check ran. */
    check_alert_range(j, "rate resolved", 0.5, 0.6, 0.5);
    json_decref(j);
    IT_CHECK(it_rec_count_matching(ev, NULL, NULL, NULL) == 4,
             "alert events: want 4 (two alerts, each firing then resolved), got %zu",
             it_rec_count(ev));
    e->passed = true;
}

/* ---- URL passwords in the log ------------------------------------------------------------------ */

/*
 * A nats.url with user:password (the server has no authorization, so it
 * accepts them): the start-up, connect and reconnect lines name the URL with
 * the password masked, and no line holds the password. --print-config masks
 * it too, in nats.url, store.opensearch.url and alerts.webhook_urls.
 */
static void
test_logs_mask_url_password(void **state)
{
    static const char pw[] = "Url-pw-42";
    const char *flags[] = {"log.level=info", NULL};
    struct it_env *e = it_env_start("ops-logs-mask", flags);
    char url[160], want[160], cmd[1024], **lines, out[65536];
    bool connected = false, reconnected = false;
    size_t n, got;
    FILE *f;

    assert_non_null(e);
    *state = e;
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "daemon exit status %d", e->dmn.exit_status);
    f = fopen(e->dmn.log, "w"); /* only the second daemon's lines */
    assert_non_null(f);
    fclose(f);
    snprintf(url, sizeof url, "nats://itu:%s@127.0.0.1:%d", pw, e->srv.port);
    assert_int_equal(it_daemon_start(&e->dmn, e->dir, url, flags), 0);
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0, "daemon with a user:password URL");
    it_server_stop(&e->srv, SIGTERM);
    IT_CHECK(it_server_restart(&e->srv) == 0, "nats-server did not restart");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0, "daemon after the restart");
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "daemon exit status %d", e->dmn.exit_status);

    snprintf(want, sizeof want, "url=nats://itu:***@127.0.0.1:%d", e->srv.port);
    n = read_log_lines(e->dmn.log, &lines);
    for (size_t i = 0; i < n; i++) {
        IT_CHECK(strstr(lines[i], pw) == NULL, "the password is in the log: %s", lines[i]);
        connected = connected || (strstr(lines[i], "msg=\"nats connected\"") && strstr(lines[i], want));
        reconnected =
            reconnected || (strstr(lines[i], "msg=\"nats reconnected\"") && strstr(lines[i], want));
    }
    IT_CHECK(connected && reconnected, "no connect (%d) / reconnect (%d) line with '%s'", connected,
             reconnected, want);
    free_lines(lines, n);

    snprintf(cmd, sizeof cmd,
             "env -i '%s' --print-config --nats.url '%s' "
             "--store.opensearch.url 'https://adm:Os-pw-7@os:9200' "
             "--alerts.webhook_urls 'https://hk:Hook-pw-9@alerts.example/x' 2>&1",
             DLQ_SIDECAR_BIN, url);
    f = popen(cmd, "r");
    assert_non_null(f);
    got = fread(out, 1, sizeof out - 1, f);
    out[got] = '\0';
    IT_CHECK(pclose(f) == 0, "--print-config failed: %s", out);
    IT_CHECK(!strstr(out, pw) && !strstr(out, "Os-pw-7") && !strstr(out, "Hook-pw-9"),
             "--print-config shows a password:\n%s", out);
    IT_CHECK(strstr(out, "nats://itu:***@127.0.0.1") && strstr(out, "https://adm:***@os:9200") &&
                 strstr(out, "https://hk:***@alerts.example/x"),
             "--print-config does not show the masked URLs:\n%s", out);
    e->passed = true;
}

/* ---- a hostile HTTP client -------------------------------------------------------------------- */

/* connect_nb() opens a non-blocking TCP connection to 127.0.0.1:port; -1 on failure. */
static int
connect_nb(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* peer_closed() tells whether the server closed fd (EOF or reset); reads and drops any bytes. */
static bool
peer_closed(int fd)
{
    char buf[512];

    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (k > 0)
            continue;
        if (k == 0)
            return true;
        return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
}

/*
 * A slowloris on a thread: nslots connections to /metrics, each sending one
 * more byte of a never-ending header every 100 ms. A slot the server closed
 * reconnects after 1 s while `reconnect` is set.
 */
#define SLOW_HEAD "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "
struct slowloris {
    int port;
    int nslots;
    int *fd;           /* -1: closed */
    size_t *sent;      /* bytes sent on the slot's current connection */
    int64_t *retry_at; /* mono ms */
    int stop;          /* __atomic */
    int reconnect;     /* __atomic */
    uint64_t connects; /* __atomic */
    uint64_t cut;      /* __atomic: connections the server closed */
    pthread_t thr;
};

static void *
slowloris_run(void *arg)
{
    struct slowloris *a = arg;

    while (!__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
        int64_t now = sc_now_mono_ms();
        for (int i = 0; i < a->nslots; i++) {
            if (a->fd[i] < 0) {
                if (!__atomic_load_n(&a->reconnect, __ATOMIC_RELAXED) || now < a->retry_at[i])
                    continue;
                a->fd[i] = connect_nb(a->port);
                a->sent[i] = 0;
                a->retry_at[i] = now + 1000;
                if (a->fd[i] >= 0)
                    __atomic_add_fetch(&a->connects, 1, __ATOMIC_RELAXED);
                continue;
            }
            if (peer_closed(a->fd[i])) {
                close(a->fd[i]);
                a->fd[i] = -1;
                a->retry_at[i] = now + 1000;
                __atomic_add_fetch(&a->cut, 1, __ATOMIC_RELAXED);
                continue;
            }
            {
                char c = a->sent[i] < sizeof(SLOW_HEAD) - 1 ? SLOW_HEAD[a->sent[i]] : 'a';
                if (send(a->fd[i], &c, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1)
                    a->sent[i]++;
            }
        }
        it_sleep_ms(100);
    }
    for (int i = 0; i < a->nslots; i++)
        if (a->fd[i] >= 0)
            close(a->fd[i]);
    return NULL;
}

static struct slowloris *
slowloris_start(int port, int nslots)
{
    struct slowloris *a = calloc(1, sizeof *a);

    assert_non_null(a);
    a->port = port;
    a->nslots = nslots;
    a->fd = malloc(sizeof(int) * (size_t)nslots);
    a->sent = calloc((size_t)nslots, sizeof(size_t));
    a->retry_at = calloc((size_t)nslots, sizeof(int64_t));
    assert_true(a->fd && a->sent && a->retry_at);
    for (int i = 0; i < nslots; i++)
        a->fd[i] = -1;
    a->reconnect = 1;
    assert_int_equal(pthread_create(&a->thr, NULL, slowloris_run, a), 0);
    return a;
}

static void
slowloris_stop(struct slowloris *a)
{
    __atomic_store_n(&a->stop, 1, __ATOMIC_RELAXED);
    pthread_join(a->thr, NULL);
    free(a->fd);
    free(a->sent);
    free(a->retry_at);
    free(a);
}

/* cpu_ms() is the CPU time (user + system) pid used so far, in ms; -1 when unknown. */
static int64_t
cpu_ms(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut, st;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (int64_t)((ut + st) * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}

/* open_fds() counts the open file descriptors of pid; -1 when unknown. */
static int
open_fds(pid_t pid)
{
    char cmd[96], buf[32];
    FILE *f;
    int n = -1;

    snprintf(cmd, sizeof cmd, "ls /proc/%d/fd 2>/dev/null | wc -l", (int)pid);
    f = popen(cmd, "r");
    if (f && fgets(buf, sizeof buf, f))
        n = atoi(buf);
    if (f)
        pclose(f);
    return n;
}

/* healthz_ok() tells whether GET /healthz answers 200 now. */
static bool
healthz_ok(int port)
{
    struct http_resp r;
    bool ok = http_do(port, "GET", "/healthz", &r) == 0 && r.status == 200;

    http_resp_free(&r);
    return ok;
}

/*
 * Thousands of slow clients against a daemon with RLIMIT_NOFILE 256: the
 * HTTP listener keeps its connections under the cap (fitted under the fd
 * limit, whatever http.max_connections says) and closes the others at once;
 * ingest and admin keep answering; a nats-server restart during the attack
 * is reconnected (the fds in reserve); once the attacker stops reconnecting,
 * its trickling connections are cut at request_timeout_ms (trickling does
 * not extend it) and /healthz answers.
 */
static void
test_http_slowloris(void **state)
{
    const char *flags[] = {"http.max_connections=65536", "http.request_timeout_ms=3000", NULL};
    struct rlimit old, low;
    struct slowloris *a;
    struct it_env *e;
    int port, fds, peak = 0;
    int64_t c0, c1, t0, t1;
    char id[96];
    json_t *j, *m;

    /* The daemon (and nats-server) inherit a soft limit of 256 fds. */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    e = it_env_start_http("ops-http-slowloris", flags, &port);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_non_null(e);
    *state = e;

    a = slowloris_start(port, 3000);
    while (__atomic_load_n(&a->connects, __ATOMIC_RELAXED) < 3000 && it_daemon_alive(&e->dmn))
        it_sleep_ms(50);
    it_sleep_ms(500);

    /* While it lasts: the daemon stays under its fd limit and answers NATS. */
    t0 = sc_now_mono_ms();
    c0 = cpu_ms(e->dmn.pid);
    it_sleep_ms(1000);
    c1 = cpu_ms(e->dmn.pid);
    t1 = sc_now_mono_ms();
    fds = open_fds(e->dmn.pid);
    fprintf(stderr, "slowloris: %llu connects, %llu cut; daemon %d fds open, CPU %.0f %% over %lld ms\n",
            (unsigned long long)__atomic_load_n(&a->connects, __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&a->cut, __ATOMIC_RELAXED), fds,
            100.0 * (double)(c1 - c0) / (double)(t1 - t0), (long long)(t1 - t0));
    IT_CHECK(fds > 0 && fds <= 256 - 64, "daemon holds %d fds: the reserve of 64 under 256 is gone", fds);
    send_parked(e, "dlq.failed.ops", it_unique_id("slow-a", id, sizeof id));
    j = it_admin_stats(e->nc);
    IT_CHECK(j != NULL, "dlq.admin.stats did not answer during the attack");
    json_decref(j);

    /* nats-server restarts during the attack: the daemon reconnects. */
    it_server_stop(&e->srv, SIGKILL);
    IT_CHECK(it_server_restart(&e->srv) == 0, "nats-server did not restart");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0,
             "the daemon did not come back on NATS during the attack");
    send_parked(e, "dlq.failed.ops", it_unique_id("slow-b", id, sizeof id));
    j = it_admin_get(e->nc, id);
    IT_CHECK(j && it_json_str(j, "task_id") && strcmp(it_json_str(j, "task_id"), id) == 0,
             "dlq.admin.get of %s after the reconnect", id);
    json_decref(j);

    /* The attacker keeps trickling but stops reconnecting: its connections are cut, /healthz answers. */
    __atomic_store_n(&a->reconnect, 0, __ATOMIC_RELAXED);
    {
        int64_t end = sc_now_mono_ms() + IT_WAIT_MS;
        bool ok = false;
        while (!ok && sc_now_mono_ms() < end) {
            ok = healthz_ok(port);
            if (!ok)
                it_sleep_ms(100);
        }
        IT_CHECK(ok, "/healthz never answered after the slow connections should have been cut");
    }
    peak = open_fds(e->dmn.pid);
    m = scrape(e, port);
    IT_CHECK(sample(m, "dlq_http_connections_refused_total", "reason", "max_connections") +
                     sample(m, "dlq_http_connections_evicted_total", NULL, NULL) > 0,
             "no connection was evicted or refused at the cap");
    IT_CHECK(sample(m, "dlq_http_connections_timed_out_total", NULL, NULL) +
                     sample(m, "dlq_http_connections_evicted_total", NULL, NULL) > 0,
             "no trickling connection was cut");
    IT_CHECK(sample(m, "dlq_http_connections_max", NULL, NULL) <= 256 - 64,
             "the cap %g does not keep 64 fds in reserve under 256",
             sample(m, "dlq_http_connections_max", NULL, NULL));
    json_decref(m);
    IT_CHECK(__atomic_load_n(&a->cut, __ATOMIC_RELAXED) > 0, "the server cut no attacker connection");
    (void)peak;
    slowloris_stop(a);
    e->passed = true;
}

/*
 * raw_exchange() sends len bytes of req to 127.0.0.1:port in one go and
 * reads the first bytes of the answer into resp (resplen bytes,
 * NUL-terminated). Returns the bytes read, or -1.
 */
static ssize_t
raw_exchange(int port, const char *req, size_t len, char *resp, size_t resplen)
{
    struct sockaddr_in sa;
    struct timeval tv = {10, 0};
    ssize_t k = -1;
    int s = socket(AF_INET, SOCK_STREAM, 0);

    resp[0] = '\0';
    if (s < 0)
        return -1;
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        send(s, req, len, MSG_NOSIGNAL) > 0) {
        k = recv(s, resp, resplen - 1, 0);
        if (k >= 0)
            resp[k] = '\0';
    }
    close(s);
    return k;
}

/*
 * One connection at a time against the limits: a client trickling a byte
 * every 100 ms is cut at request_timeout_ms (3 s) (the deadline runs from accept);
 * a request head over 8 KiB gets 431; a declared body over 1 KiB (or one of
 * unknown length) gets 413; malformed request lines get 400, absolute-form
 * targets and query strings are routed by path;
 * with http.max_connections=2 held by two idle clients a third (a health
 * probe) is answered at once: the oldest idle one is evicted to make room
 * (one client holding every slot must not keep probes out).
 */
static void
test_http_limits(void **state)
{
    const char *flags[] = {"http.max_connections=2", "http.request_timeout_ms=3000", NULL};
    int port, fd, idle[2];
    struct it_env *e = it_env_start_http("ops-http-limits", flags, &port);
    char big[10000];
    bool cut = false;
    int64_t end;

    assert_non_null(e);
    *state = e;

    /* Trickling cannot extend the deadline. */
    fd = connect_nb(port);
    assert_true(fd >= 0);
    end = sc_now_mono_ms() + IT_WAIT_MS;
    for (size_t i = 0; !cut && sc_now_mono_ms() < end; i++) {
        char c = i < sizeof(SLOW_HEAD) - 1 ? SLOW_HEAD[i] : 'a';
        cut = peer_closed(fd) || send(fd, &c, 1, MSG_NOSIGNAL) != 1;
        it_sleep_ms(100);
    }
    close(fd);
    IT_CHECK(cut, "a client trickling one byte every 100 ms was never cut");

    /* A head over the cap: 431 (read by the client: the daemon drains before it closes). */
    {
        static const char *const cases[][2] = {
            {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", "413"},
            {"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "413"},
            {"GARBAGE\r\n\r\n", "400"},
            {"GET /healthz\r\n\r\n", "400"},
            {"GET http://127.0.0.1/healthz?x=1 HTTP/1.1\r\n\r\n", "200"},
            {"HEAD /metrics?name=x HTTP/1.0\n\n", "200"},
            {"DELETE / HTTP/1.1\r\n\r\n", "405"},
        };
        char resp[256], want[32];
        memset(big, 'b', sizeof big);
        memcpy(big, "GET /healthz HTTP/1.1\r\nX-Big: ", 30);
        IT_CHECK(raw_exchange(port, big, sizeof big, resp, sizeof resp) > 0 &&
                     strncmp(resp, "HTTP/1.1 431 ", 13) == 0,
                 "big head: %s", resp);
        for (size_t i = 0; i < SC_ARRAY_LEN(cases); i++) {
            snprintf(want, sizeof want, "HTTP/1.1 %s ", cases[i][1]);
            IT_CHECK(raw_exchange(port, cases[i][0], strlen(cases[i][0]), resp, sizeof resp) > 0 &&
                         strncmp(resp, want, strlen(want)) == 0,
                     "%s: want %s, got %.60s", cases[i][0], cases[i][1], resp);
        }
    }

    /* The cap: two idle clients hold it; a probe evicts the oldest and is answered at once. */
    IT_CHECK(healthz_ok(port), "/healthz before the cap test");
    idle[0] = connect_nb(port);
    it_sleep_ms(50);
    idle[1] = connect_nb(port);
    assert_true(idle[0] >= 0 && idle[1] >= 0);
    it_sleep_ms(200);
    {
        struct http_resp r;
        int rc = http_do(port, "GET", "/healthz", &r);
        IT_CHECK(rc == 0 && r.status == 200, "a probe at the cap of two idle clients: rc %d, status %d",
                 rc, r.status);
        http_resp_free(&r);
    }
    it_sleep_ms(100);
    IT_CHECK(peer_closed(idle[0]), "the oldest idle connection was not evicted");
    end = sc_now_mono_ms() + IT_WAIT_MS;
    cut = false;
    while (!cut && sc_now_mono_ms() < end) {
        cut = peer_closed(idle[1]);
        if (!cut)
            it_sleep_ms(100);
    }
    IT_CHECK(cut, "the other idle connection was not cut at its deadline");
    close(idle[0]);
    close(idle[1]);
    /*
     * The cap held by two refused requests whose bodies never finish: both
     * answered (405) and draining. A probe is still answered: the oldest
     * draining one gives up its slot (they held every slot, /healthz
     * included, until their deadline: a red-team finding).
     */
    {
        static const char refused[] = "POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\n{";
        struct http_resp r;
        int d[2], rc;
        for (int i = 0; i < 2; i++) {
            d[i] = connect_nb(port);
            assert_true(d[i] >= 0);
            it_sleep_ms(50);
            IT_CHECK(send(d[i], refused, sizeof refused - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof refused - 1),
                     "send a refused request's head");
        }
        it_sleep_ms(300);
        rc = http_do(port, "GET", "/healthz", &r);
        IT_CHECK(rc == 0 && r.status == 200, "a probe at the cap of two draining clients: rc %d, status %d",
                 rc, r.status);
        http_resp_free(&r);
        close(d[0]);
        close(d[1]);
    }
    {
        json_t *m = scrape(e, port);
        IT_CHECK(sample(m, "dlq_http_connections_evicted_total", NULL, NULL) >= 1,
                 "evictions at the cap: %g", sample(m, "dlq_http_connections_evicted_total", NULL, NULL));
        IT_CHECK(sample(m, "dlq_http_connections_timed_out_total", NULL, NULL) >= 2,
                 "cut connections: %g", sample(m, "dlq_http_connections_timed_out_total", NULL, NULL));
        EXPECT_SAMPLE(m, 2, "dlq_http_connections_max", NULL, NULL);
        json_decref(m);
    }
    e->passed = true;
}

/* ---- two sidecars on one prefix (DESIGN section 3, peers.c) ---------------------------------- */

static struct it_daemon peer_b; /* the second sidecar of the duplicate tests */

static int
peers_teardown(void **state)
{
    if (peer_b.pid > 0)
        it_daemon_stop(&peer_b);
    memset(&peer_b, 0, sizeof peer_b);
    return it_teardown(state);
}

/* start_peer() starts a second sidecar on e's server (its files in e->dir/b), HTTP on a free port (*port). */
static void
start_peer(struct it_env *e, const char *const *extra, int *port)
{
    static char listen_flag[64];
    const char *flags[16];
    char dir[IT_PATH_MAX + 8];
    size_t n = 0;

    *port = it_free_port();
    assert_true(*port > 0);
    snprintf(listen_flag, sizeof listen_flag, "http.listen=127.0.0.1:%d", *port);
    flags[n++] = listen_flag;
    for (size_t i = 0; extra && extra[i] && n < SC_ARRAY_LEN(flags) - 1; i++)
        flags[n++] = extra[i];
    flags[n] = NULL;
    snprintf(dir, sizeof dir, "%s/b", e->dir);
    IT_CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    memset(&peer_b, 0, sizeof peer_b);
    IT_CHECK(it_daemon_start(&peer_b, dir, e->srv.url, flags) == 0, "start the second sidecar");
}

/* listed_id() is the id of the only element of the array at key of j; NULL unless exactly one. */
static const char *
listed_id(const json_t *j, const char *key)
{
    const json_t *a = json_object_get(j, key);
    return json_is_array(a) && json_array_size(a) == 1 ? it_json_str(json_array_get(a, 0), "id")
                                                        : NULL;
}

/* readyz_dup() GETs /readyz on port: *status, and the one duplicate's id (copied to id) or "". */
static json_t *
readyz_dup(int port, int *status, char *id, size_t idlen)
{
    json_t *j = http_json(port, "/readyz", status);
    const char *d = listed_id(j, "duplicate_sidecars");
    snprintf(id, idlen, "%s", d ? d : "");
    return j;
}

/* metric_now() reads one unlabelled sample from /metrics on port without the python parser; NAN when absent. */
static double
metric_now(int port, const char *name)
{
    struct http_resp r;
    char pat[128];
    double v = NAN;

    snprintf(pat, sizeof pat, "\n%s ", name);
    if (http_do(port, "GET", "/metrics", &r) == 0 && r.status == 200 && r.body) {
        const char *p = strstr(r.body, pat);
        if (p)
            v = strtod(p + strlen(pat), NULL);
    }
    http_resp_free(&r);
    return v;
}

/* log_has2() tells whether a line of the log at path contains both a and b. */
static bool
log_has2(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    bool found = false;

    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, a) && strstr(line, b);
    if (f)
        fclose(f);
    return found;
}

/* check_both_listed() asserts that the two replies of verb each list one duplicate under key: a and b. */
static void
check_both_listed(struct it_env *e, const char *verb, const char *key, const char *want_status,
                  const char *a, const char *b)
{
    char subj[64];
    snprintf(subj, sizeof subj, "dlq.admin.%s", verb);
    json_t *all = it_request_all(e->nc, subj, NULL, 2, IT_REQUEST_MS);
    char *dump = it_json_dump(all);
    IT_CHECK(json_array_size(all) == 2, "%s: want an answer from each sidecar: %s", verb, dump);
    const char *x = listed_id(json_array_get(all, 0), key), *y = listed_id(json_array_get(all, 1), key);
    IT_CHECK(x && y && ((strcmp(x, a) == 0 && strcmp(y, b) == 0) || (strcmp(x, b) == 0 && strcmp(y, a) == 0)),
             "%s: each sidecar's %s names the other (%s, %s): %s", verb, key, a, b, dump);
    for (size_t i = 0; want_status && i < 2; i++) {
        const char *st = it_json_str(json_array_get(all, i), "status");
        IT_CHECK(st && strcmp(st, want_status) == 0, "%s: want status %s: %s", verb, want_status, dump);
    }
    free(dump);
    json_decref(all);
}

/*
 * Two sidecars on one prefix in core mode (one ingest queue group): each
 * finds the other through service discovery and says so in its log (an
 * error naming the other's id and host), health (degraded, duplicates),
 * stats (duplicate_sidecars), /readyz (503 with the reason) and
 * dlq_duplicate_sidecars. Once one stops, the other clears.
 */
static void
test_duplicate_sidecars(void **state)
{
    int pa, pb, st;
    char a_sees[64] = "", b_sees[64] = "";
    json_t *j;
    char *dump;

    struct it_env *e = it_env_start_http("dup", NULL, &pa);
    assert_non_null(e);
    *state = e;
    int64_t t0 = sc_now_mono_ms();
    start_peer(e, NULL, &pb);
    int64_t deadline = t0 + IT_WAIT_MS;
    int sa = 0, sb = 0;
    while (sc_now_mono_ms() < deadline && !(a_sees[0] && b_sees[0])) {
        IT_CHECK(it_daemon_alive(&peer_b), "the second sidecar exited");
        json_decref(readyz_dup(pa, &sa, a_sees, sizeof a_sees));
        json_decref(readyz_dup(pb, &sb, b_sees, sizeof b_sees));
        if (!(a_sees[0] && b_sees[0]))
            it_sleep_ms(50);
    }
    int64_t detect_ms = sc_now_mono_ms() - t0;
    IT_CHECK(a_sees[0] && b_sees[0], "both /readyz list the other sidecar (A sees '%s', B sees '%s')",
             a_sees, b_sees);
    IT_CHECK(sa == 503 && sb == 503, "/readyz with a duplicate: want 503 twice, got %d and %d", sa, sb);
    IT_CHECK(strcmp(a_sees, b_sees) != 0, "each names the other, not the same id: %s", a_sees);
    /* b_sees is A's id, a_sees is B's id. */
    j = http_json(pa, "/readyz", &st);
    dump = it_json_dump(j);
    const char *reason = it_json_str(j, "reason");
    IT_CHECK(st == 503 && reason && strstr(reason, a_sees) && strstr(reason, "cluster mode") &&
                 strcmp(it_json_str(j, "status"), "not ready") == 0,
             "/readyz says why: %s", dump);
    free(dump);
    json_decref(j);

    check_both_listed(e, "health", "duplicates", "degraded", a_sees, b_sees);
    check_both_listed(e, "stats", "duplicate_sidecars", NULL, a_sees, b_sees);
    json_t *m = scrape(e, pa);
    EXPECT_SAMPLE(m, 1, "dlq_duplicate_sidecars", NULL, NULL);
    json_decref(m);
    IT_CHECK(metric_now(pb, "dlq_duplicate_sidecars") == 1, "B: dlq_duplicate_sidecars %g",
             metric_now(pb, "dlq_duplicate_sidecars"));
    char want_a[96], want_b[96];
    snprintf(want_a, sizeof want_a, "other_id=%s", a_sees);
    snprintf(want_b, sizeof want_b, "other_id=%s", b_sees);
    IT_CHECK(log_has2(e->dmn.log, "level=error", want_a) && log_has2(e->dmn.log, want_a, "other_host="),
             "A logs an error naming B (%s)", want_a);
    IT_CHECK(log_has2(peer_b.log, "level=error", want_b), "B logs an error naming A (%s)", want_b);

    /* B stops: A clears. */
    IT_CHECK(it_daemon_stop(&peer_b) == 0, "the second sidecar's exit status %d", peer_b.exit_status);
    int64_t t1 = sc_now_mono_ms();
    IT_CHECK(wait_readyz(pa, 200, IT_WAIT_MS), "A's /readyz stayed 503 after B stopped");
    int64_t clear_ms = sc_now_mono_ms() - t1;
    j = it_request_json(e->nc, "dlq.admin.health", NULL, IT_REQUEST_MS);
    dump = it_json_dump(j);
    IT_CHECK(j && strcmp(it_json_str(j, "status"), "ok") == 0 &&
                 json_array_size(json_object_get(j, "duplicates")) == 0 &&
                 json_is_array(json_object_get(j, "duplicates")),
             "health after B stopped: %s", dump);
    free(dump);
    json_decref(j);
    j = it_admin_stats(e->nc);
    IT_CHECK(json_is_array(json_object_get(j, "duplicate_sidecars")) &&
                 json_array_size(json_object_get(j, "duplicate_sidecars")) == 0,
             "stats after B stopped list no duplicate");
    json_decref(j);
    IT_CHECK(metric_now(pa, "dlq_duplicate_sidecars") == 0, "A: dlq_duplicate_sidecars %g",
             metric_now(pa, "dlq_duplicate_sidecars"));
    IT_CHECK(log_has2(e->dmn.log, "is gone", want_a), "A logs that B is gone");
    fprintf(stderr, "[dup] both reported the duplicate %lld ms after B was started; A cleared %lld ms "
                    "after B exited\n",
            (long long)detect_ms, (long long)clear_ms);
    e->passed = true;
}

/*
 * Two sidecars on different prefixes: each sees the other answer service
 * discovery (dlq_discovery_answers_total grows), and neither complains.
 */
static void
test_other_prefix_no_duplicate(void **state)
{
    static const char *const other[] = {"subjects.prefix=other", NULL};
    int pa, pb;

    struct it_env *e = it_env_start_http("dup-other", NULL, &pa);
    assert_non_null(e);
    *state = e;
    start_peer(e, other, &pb);
    int64_t deadline = sc_now_mono_ms() + IT_WAIT_MS;
    double ans_a = 0, ans_b = 0;
    while (sc_now_mono_ms() < deadline && !(ans_a >= 2 && ans_b >= 2)) {
        IT_CHECK(it_daemon_alive(&peer_b), "the second sidecar exited");
        ans_a = metric_now(pa, "dlq_discovery_answers_total");
        ans_b = metric_now(pb, "dlq_discovery_answers_total");
        it_sleep_ms(100);
    }
    IT_CHECK(ans_a >= 2 && ans_b >= 2, "each saw the other answer twice (A %g, B %g)", ans_a, ans_b);
    const char *const health[] = {"dlq.admin.health", "other.admin.health"};
    const int ports[] = {pa, pb};
    for (int i = 0; i < 2; i++) {
        int st;
        json_t *all = it_request_all(e->nc, health[i], NULL, 2, 1000);
        char *dump = it_json_dump(all);
        json_t *h = json_array_get(all, 0);
        IT_CHECK(json_array_size(all) == 1 && strcmp(it_json_str(h, "status"), "ok") == 0 &&
                     json_is_array(json_object_get(h, "duplicates")) &&
                     json_array_size(json_object_get(h, "duplicates")) == 0,
                 "%s: one answer, ok, no duplicate: %s", health[i], dump);
        free(dump);
        json_decref(all);
        json_t *r = http_json(ports[i], "/readyz", &st);
        dump = it_json_dump(r);
        IT_CHECK(st == 200 && json_array_size(json_object_get(r, "duplicate_sidecars")) == 0 &&
                     !json_object_get(r, "reason"),
                 "/readyz of %s: %d %s", health[i], st, dump);
        free(dump);
        json_decref(r);
        IT_CHECK(metric_now(ports[i], "dlq_duplicate_sidecars") == 0, "%s: dlq_duplicate_sidecars",
                 health[i]);
    }
    json_t *s = it_request_json(e->nc, "other.admin.stats", NULL, IT_REQUEST_MS);
    IT_CHECK(s && json_array_size(json_object_get(s, "duplicate_sidecars")) == 0 &&
                 json_is_array(json_object_get(s, "duplicate_sidecars")),
             "B's stats list no duplicate");
    json_decref(s);
    IT_CHECK(!log_has2(e->dmn.log, "level=error", "other_id="), "A logged a duplicate");
    IT_CHECK(!log_has2(peer_b.log, "level=error", "other_id="), "B logged a duplicate");
    e->passed = true;
}

/*
 * Forged answers to the discovery ping (anyone who sees the ping may
 * publish to its reply subject): bytes that are not JSON, an answer over
 * the 16 KiB cap and another service's answer are counted as invalid; 20
 * forged dlq-sidecar answers on our prefix list at most 16 duplicates, with
 * control characters in a reported host made harmless; the sidecar keeps
 * running and clears once the forgeries stop.
 */
static void
test_discovery_forged_answers(void **state)
{
    int port;
    struct it_env *e = it_env_start_http("dup-forged", NULL, &port);
    assert_non_null(e);
    *state = e;
    natsSubscription *ps = NULL;
    natsMsg *pm = NULL;
    char reply[256] = "";
    IT_CHECK(natsConnection_SubscribeSync(&ps, e->nc, "$SRV.PING.dlq-sidecar") == NATS_OK, "subscribe");
    int64_t until = sc_now_mono_ms() + IT_WAIT_MS;
    while (!reply[0] && sc_now_mono_ms() < until &&
           natsSubscription_NextMsg(&pm, ps, until - sc_now_mono_ms()) == NATS_OK) {
        const char *rp = natsMsg_GetReply(pm);
        if (rp && strstr(rp, ".peers"))
            snprintf(reply, sizeof reply, "%s", rp);
        natsMsg_Destroy(pm);
        pm = NULL;
    }
    natsSubscription_Destroy(ps);
    IT_CHECK(reply[0], "saw the sidecar's ping and its reply subject");

    char *big = malloc(20000);
    assert_non_null(big);
    memset(big, ' ', 20000);
    memcpy(big, "{\"type\":\"io.nats.micro.v1.ping_response\",\"name\":\"dlq-sidecar\"", 62);
    big[19999] = '}';
    IT_CHECK(natsConnection_PublishString(e->nc, reply, "not json \x01\x02") == NATS_OK, "publish");
    IT_CHECK(natsConnection_Publish(e->nc, reply, big, 20000) == NATS_OK, "publish");
    IT_CHECK(natsConnection_PublishString(e->nc, reply,
                 "{\"type\":\"io.nats.micro.v1.ping_response\",\"name\":\"other-svc\",\"id\":\"X\","
                 "\"metadata\":{\"subjects.prefix\":\"dlq\"}}") == NATS_OK, "publish");
    free(big);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 20; i++) {
            char body[512];
            snprintf(body, sizeof body,
                     "{\"type\":\"io.nats.micro.v1.ping_response\",\"name\":\"dlq-sidecar\","
                     "\"id\":\"FORGED%02d\",\"metadata\":{\"subjects.prefix\":\"dlq\","
                     "\"host\":\"evil\\nlevel=error x\",\"ingest.mode\":\"core\"}}", i);
            IT_CHECK(natsConnection_PublishString(e->nc, reply, body) == NATS_OK, "publish");
        }
    }
    IT_CHECK(natsConnection_Flush(e->nc) == NATS_OK, "flush");
    double inv = 0, dups = 0;
    until = sc_now_mono_ms() + IT_WAIT_MS;
    while (sc_now_mono_ms() < until && !(inv == 3 && dups == 16)) {
        inv = metric_now(port, "dlq_discovery_invalid_total");
        dups = metric_now(port, "dlq_duplicate_sidecars");
        it_sleep_ms(50);
    }
    IT_CHECK(inv == 3 && dups == 16, "3 invalid answers counted (%g), 16 duplicates listed (%g)", inv, dups);
    json_t *h = it_request_json(e->nc, "dlq.admin.health", NULL, IT_REQUEST_MS);
    char *dump = it_json_dump(h);
    const json_t *list = json_object_get(h, "duplicates");
    IT_CHECK(h && strcmp(it_json_str(h, "status"), "degraded") == 0 && json_array_size(list) == 16,
             "health: %.600s", dump);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *host = it_json_str(json_array_get(list, i), "host");
        IT_CHECK(host && strcmp(host, "evil_level=error_x") == 0, "a reported host made harmless: %s",
                 host ? host : "(none)");
    }
    free(dump);
    json_decref(h);
    IT_CHECK(wait_readyz(port, 200, IT_WAIT_MS), "the forgeries stopped: /readyz is 200 again");
    IT_CHECK(it_admin_health_ok(e->nc), "health is ok again");
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_endpoints, it_teardown),
        cmocka_unit_test_teardown(test_metrics_values, it_teardown),
        cmocka_unit_test_teardown(test_logs_json, it_teardown),
        cmocka_unit_test_teardown(test_logs_logfmt, it_teardown),
        cmocka_unit_test_teardown(test_logs_task_line_cap, it_teardown),
        cmocka_unit_test_teardown(test_alert_webhook, it_teardown),
        cmocka_unit_test_teardown(test_alert_exhausted_and_rate, it_teardown),
        cmocka_unit_test_teardown(test_logs_mask_url_password, it_teardown),
        cmocka_unit_test_teardown(test_http_limits, it_teardown),
        cmocka_unit_test_teardown(test_http_slowloris, it_teardown),
        cmocka_unit_test_teardown(test_duplicate_sidecars, peers_teardown),
        cmocka_unit_test_teardown(test_other_prefix_no_duplicate, peers_teardown),
        cmocka_unit_test_teardown(test_discovery_forged_answers, it_teardown),
    };
    if (getenv("DLQ_IT_FILTER")) /* e.g. DLQ_IT_FILTER='test_dup*' to run some */
        cmocka_set_test_filter(getenv("DLQ_IT_FILTER"));
    return cmocka_run_group_tests_name("integration_ops", tests, NULL, NULL);
}
