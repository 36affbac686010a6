/* test_hooks.c - integration: alert incident hooks (Slack, PagerDuty Events v2, Opsgenie) against a local HTTP receiver, and retention. */
#define _GNU_SOURCE /* strcasestr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cmocka.h>

#include "harness.h"

/* recv_count() counts requests answered 200 whose path starts with prefix and whose body holds needle. */
static size_t
recv_count(struct it_recv *h, const char *prefix, const char *needle)
{
    size_t c = 0;

    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n; i++) {
        if (h->reqs[i].answered == 200 && strncmp(h->reqs[i].path, prefix, strlen(prefix)) == 0 &&
            (!needle || strstr(h->reqs[i].body, needle)))
            c++;
    }
    pthread_mutex_unlock(&h->mu);
    return c;
}

/* recv_wait() waits until recv_count(h, prefix, needle) >= want. */
static bool
recv_wait(struct it_recv *h, const char *prefix, const char *needle, size_t want)
{
    int64_t end = sc_now_mono_ms() + IT_WAIT_MS;
    do {
        if (recv_count(h, prefix, needle) >= want)
            return true;
        it_sleep_ms(20);
    } while (sc_now_mono_ms() < end);
    return false;
}

/* recv_find() copies the k-th (0-based) request answered 200 under prefix holding needle; false when none. */
static bool
recv_find(struct it_recv *h, const char *prefix, const char *needle, size_t k, struct it_recv_req *out,
          json_t **body)
{
    bool found = false;

    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n && !found; i++) {
        struct it_recv_req *q = &h->reqs[i];
        if (q->answered != 200 || strncmp(q->path, prefix, strlen(prefix)) != 0 ||
            (needle && !strstr(q->body, needle)))
            continue;
        if (k-- > 0)
            continue;
        *out = *q;
        out->body = NULL;
        *body = json_loads(q->body, 0, NULL);
        found = true;
    }
    pthread_mutex_unlock(&h->mu);
    return found;
}

/* ---- helpers --------------------------------------------------------------------------------- */

/* metric() reads the sample "name{labels}" (labels as written, "" for none) from /metrics; -1 when absent. */
static double
metric(int port, const char *name, const char *labels)
{
    struct it_http_resp r;
    char want[256];
    double v = -1;
    const char *p;

    snprintf(want, sizeof want, "\n%s%s%s%s ", name, labels[0] ? "{" : "", labels,
             labels[0] ? "}" : "");
    if (it_http_request(port, "GET", "/metrics", &r) == 0 && r.status == 200 &&
        (p = strstr(r.body, want)) != NULL)
        v = strtod(p + strlen(want), NULL);
    it_http_resp_free(&r);
    return v;
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

/* log_has() tells whether a line the daemon wrote to log (not the harness's "====" lines) contains needle. */
static bool
log_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    bool found = false;

    if (!f)
        return false;
    while (!found && fgets(line, sizeof line, f))
        found = strncmp(line, "====", 4) != 0 && strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* ---- incident hooks -------------------------------------------------------------------------- */

#define PD_KEY "R0UTINGkey0123456789abcdef012345"
#define OG_KEY "9f8e7d6c-aaaa-bbbb-cccc-0123456789ab"
static const char pd_flag[] = "alerts.pagerduty.routing_key=" PD_KEY;
static const char og_flag[] = "alerts.opsgenie.api_key=" OG_KEY;
#define DEDUP "dlq-sidecar.dlq.queue_utilization"

/*
 * queue_utilization fires, then resolves (the tasks archived): the Slack
 * URL gets two messages with "text"; PagerDuty exactly one trigger and one
 * resolve with the same dedup_key and the documented fields; Opsgenie one
 * create and one close by the same alias, both with the GenieKey header.
 * The receiver answers the first request 500: it is retried and counted.
 * Neither key shows in the log (debug level).
 */
static void
test_incident_hooks(void **state)
{
    struct it_recv h;
    char slack[128], pd[128], og[128], ids[5][96];
    const char *flags[] = {"max_size=100", "alerts.utilization_percent=4",
                           "alerts.check_interval_ms=50", "alerts.webhook_backoff_ms=100",
                           "alerts.webhook_timeout_ms=5000", "log.level=debug", slack, pd, og,
                           pd_flag, og_flag, NULL};
    struct it_env *e;
    struct it_recv_req q;
    json_t *j, *trig, *res;
    int port;
    char *dump;

    assert_int_equal(it_recv_start(&h, 1, 500), 0);
    snprintf(slack, sizeof slack, "alerts.slack.url=http://127.0.0.1:%d/slack/T0/B0/x", h.port);
    snprintf(pd, sizeof pd, "alerts.pagerduty.url=http://127.0.0.1:%d/pd/v2/enqueue", h.port);
    snprintf(og, sizeof og, "alerts.opsgenie.url=http://127.0.0.1:%d/og/", h.port);
    e = it_env_start_http("hooks-formats", flags, &port);
    if (!e)
        it_recv_stop(&h);
    assert_non_null(e);
    *state = e;

    for (int i = 0; i < 5; i++)
        send_parked(e, "dlq.failed.hooks", it_unique_id("hook", ids[i], sizeof ids[i]));
    IT_CHECK(recv_wait(&h, "/pd/", "\"trigger\"", 1), "no PagerDuty trigger");
    IT_CHECK(recv_wait(&h, "/og/v2/alerts", "\"message\"", 1), "no Opsgenie create");
    IT_CHECK(recv_wait(&h, "/slack/", NULL, 1), "no Slack message");

    j = it_request_json(e->nc, "dlq.admin.archive", "{\"status\":\"parked\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(j, "archived") == 5, "archive: want 5 archived");
    json_decref(j);
    IT_CHECK(recv_wait(&h, "/pd/", "\"resolve\"", 1), "no PagerDuty resolve");
    IT_CHECK(recv_wait(&h, "/og/v2/alerts/" DEDUP "/close", NULL, 1), "no Opsgenie close");
    IT_CHECK(recv_wait(&h, "/slack/", NULL, 2), "no second Slack message");
    it_sleep_ms(300); /* a duplicate would come now */

    /* PagerDuty: one trigger, one resolve, the same dedup_key, the required fields. */
    IT_CHECK(recv_count(&h, "/pd/", "\"trigger\"") == 1, "PagerDuty triggers: want 1, got %zu",
             recv_count(&h, "/pd/", "\"trigger\""));
    IT_CHECK(recv_count(&h, "/pd/", "\"resolve\"") == 1, "PagerDuty resolves: want 1, got %zu",
             recv_count(&h, "/pd/", "\"resolve\""));
    assert_true(recv_find(&h, "/pd/", "\"trigger\"", 0, &q, &trig));
    IT_CHECK(strcmp(q.method, "POST") == 0 && strncmp(q.ctype, "application/json", 16) == 0,
             "PagerDuty request: %s (%s)", q.method, q.ctype);
    assert_true(recv_find(&h, "/pd/", "\"resolve\"", 0, &q, &res));
    dump = it_json_dump(trig);
    IT_CHECK(trig && it_json_str(trig, "routing_key") &&
                 strcmp(it_json_str(trig, "routing_key"), PD_KEY) == 0,
             "trigger routing_key: %s", dump);
    IT_CHECK(it_json_str(trig, "dedup_key") && strcmp(it_json_str(trig, "dedup_key"), DEDUP) == 0,
             "trigger dedup_key: %s", dump);
    {
        const json_t *p = json_object_get(trig, "payload");
        const char *sev = it_json_str(p, "severity"), *ts = it_json_str(p, "timestamp");
        int64_t at;
        IT_CHECK(it_json_str(p, "summary") && strlen(it_json_str(p, "summary")) > 0 &&
                     strlen(it_json_str(p, "summary")) <= 1024,
                 "payload.summary: %s", dump);
        IT_CHECK(it_json_str(p, "source") && strlen(it_json_str(p, "source")) > 0,
                 "payload.source: %s", dump);
        IT_CHECK(sev && (strcmp(sev, "critical") == 0 || strcmp(sev, "error") == 0 ||
                         strcmp(sev, "warning") == 0 || strcmp(sev, "info") == 0),
                 "payload.severity: %s", dump);
        IT_CHECK(ts && sc_parse_rfc3339(ts, strlen(ts), &at) == SC_OK, "payload.timestamp: %s",
                 dump);
    }
    free(dump);
    dump = it_json_dump(res);
    IT_CHECK(res && it_json_str(res, "routing_key") &&
                 strcmp(it_json_str(res, "routing_key"), PD_KEY) == 0 &&
                 it_json_str(res, "dedup_key") &&
                 strcmp(it_json_str(res, "dedup_key"), DEDUP) == 0,
             "resolve: the same routing_key and dedup_key: %s", dump);
    free(dump);
    json_decref(trig);
    json_decref(res);

    /* Opsgenie: one create (message, alias), one close by that alias; the GenieKey header on both. */
    IT_CHECK(recv_count(&h, "/og/v2/alerts", "\"alias\"") == 1, "Opsgenie creates: want 1, got %zu",
             recv_count(&h, "/og/v2/alerts", "\"alias\""));
    assert_true(recv_find(&h, "/og/v2/alerts", "\"alias\"", 0, &q, &trig));
    dump = it_json_dump(trig);
    IT_CHECK(strcmp(q.path, "/og/v2/alerts") == 0 && strcmp(q.method, "POST") == 0,
             "create: %s %s", q.method, q.path);
    IT_CHECK(strcmp(q.auth, "GenieKey " OG_KEY) == 0, "create Authorization: '%s'", q.auth);
    IT_CHECK(it_json_str(trig, "message") && strlen(it_json_str(trig, "message")) > 0 &&
                 strlen(it_json_str(trig, "message")) <= 130,
             "create message (1-130 characters): %s", dump);
    IT_CHECK(it_json_str(trig, "alias") && strcmp(it_json_str(trig, "alias"), DEDUP) == 0,
             "create alias: %s", dump);
    IT_CHECK(it_json_str(trig, "priority") && it_json_str(trig, "priority")[0] == 'P',
             "create priority: %s", dump);
    IT_CHECK(json_is_object(json_object_get(trig, "details")), "create details: %s", dump);
    free(dump);
    json_decref(trig);
    IT_CHECK(recv_count(&h, "/og/v2/alerts/" DEDUP "/close?identifierType=alias", NULL) == 1,
             "Opsgenie closes by alias: want 1");
    assert_true(recv_find(&h, "/og/v2/alerts/" DEDUP "/close", NULL, 0, &q, &res));
    IT_CHECK(strcmp(q.method, "POST") == 0 && strcmp(q.auth, "GenieKey " OG_KEY) == 0,
             "close: %s, Authorization '%s'", q.method, q.auth);
    json_decref(res);

    /* Slack: "text" on both, the first one firing, the second resolved. */
    assert_true(recv_find(&h, "/slack/", NULL, 0, &q, &trig));
    assert_true(recv_find(&h, "/slack/", NULL, 1, &q, &res));
    IT_CHECK(it_json_str(trig, "text") && strstr(it_json_str(trig, "text"), "firing") &&
                 json_is_array(json_object_get(trig, "blocks")),
             "Slack firing message without text/blocks");
    IT_CHECK(it_json_str(res, "text") && strstr(it_json_str(res, "text"), "resolved"),
             "Slack resolved message without text");
    json_decref(trig);
    json_decref(res);

    /* The first request was answered 500 and retried; counted in /metrics. */
    pthread_mutex_lock(&h.mu);
    IT_CHECK(h.n >= 7 && h.reqs[0].answered == 500, "the first request was not answered 500");
    {
        size_t again = 0;
        for (size_t i = 1; i < h.n; i++)
            again += strcmp(h.reqs[i].path, h.reqs[0].path) == 0 &&
                     strcmp(h.reqs[i].body, h.reqs[0].body) == 0 && h.reqs[i].answered == 200;
        IT_CHECK(again == 1, "the 500 was retried once with the same body (got %zu)", again);
    }
    pthread_mutex_unlock(&h.mu);
    IT_CHECK(metric(port, "dlq_alert_webhook_posts_total", "result=\"retried\"") == 1,
             "retried posts: %g", metric(port, "dlq_alert_webhook_posts_total", "result=\"retried\""));
    IT_CHECK(metric(port, "dlq_alert_hook_posts_total", "format=\"pagerduty\",result=\"delivered\"") == 2,
             "PagerDuty delivered: %g",
             metric(port, "dlq_alert_hook_posts_total", "format=\"pagerduty\",result=\"delivered\""));
    IT_CHECK(metric(port, "dlq_alert_hook_posts_total", "format=\"opsgenie\",result=\"delivered\"") == 2,
             "Opsgenie delivered");
    IT_CHECK(metric(port, "dlq_alert_hook_posts_total", "format=\"slack\",result=\"delivered\"") == 2,
             "Slack delivered");

    /* The secrets reach the receiver only. */
    IT_CHECK(!log_has(e->dmn.log, PD_KEY), "the routing key is in the log %s", e->dmn.log);
    IT_CHECK(!log_has(e->dmn.log, OG_KEY), "the GenieKey is in the log %s", e->dmn.log);
    it_recv_stop(&h);
    e->passed = true;
}

/* ---- retention and a full queue ------------------------------------------------------------- */

/* Sends a failure with error, category (NULL: classified) and max_retries; checks the ack. */
static void
send_failure(struct it_env *e, const char *id, const char *error, const char *category,
             int max_retries)
{
    struct it_envelope env;
    json_t *ack;

    it_envelope_init(&env);
    env.task_id = id;
    env.error = error;
    env.error_category = category;
    env.max_retries = max_retries;
    ack = it_request_envelope(e->nc, "dlq.failed.keep", &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack of %s", id);
    json_decref(ack);
}

/* expired_find() returns the body of the expired event for id (new reference) or NULL. */
static json_t *
expired_find(struct it_recorder *r, const char *id)
{
    size_t n = it_rec_count(r);
    for (size_t i = 0; i < n; i++) {
        const struct it_rec_msg *m = it_rec_get(r, i);
        json_t *j = m->body ? json_loadb(m->body, m->len, 0, NULL) : NULL;
        if (j && it_json_str(j, "task_id") && strcmp(it_json_str(j, "task_id"), id) == 0)
            return j;
        json_decref(j);
    }
    return NULL;
}

/*
 * retention.exhausted_s=1 with transient exhausted tasks kept
 * (retention.categories transient:exhausted=0), retention.completed_s=1,
 * store.keep_completed: the network task exhausted at once is archived (not
 * removed), the completed one removed, the transient one stays exhausted;
 * each of the two actions is one expired event, counted in stats and
 * /metrics.
 */
static void
test_retention(void **state)
{
    const char *flags[] = {"store.keep_completed=true", "retention.exhausted_s=1",
                           "retention.completed_s=1", "retention.check_interval_ms=100",
                           "retention.categories=transient:exhausted=0", NULL};
    char exh[96], kept[96], done[96], st[32];
    struct it_env *e;
    struct it_recorder *ev, *w;
    natsConnection *wc;
    json_t *j;
    int port;
    bool ok;
    char *dump;

    e = it_env_start_http("hooks-retention", flags, &port);
    assert_non_null(e);
    *state = e;
    ev = it_env_recorder(e, e->nc, "dlq.events.expired", NULL, 64, true);
    assert_non_null(ev);
    wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 64, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL}); /* answers success */

    send_failure(e, it_unique_id("exh", exh, sizeof exh), "connection refused", NULL, 0);
    send_failure(e, it_unique_id("kept", kept, sizeof kept), "503 Service Unavailable",
                 "transient", 0);
    send_failure(e, it_unique_id("done", done, sizeof done), "connection refused", NULL, 1);
    j = it_wait_task_status(e->nc, done, "completed", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "%s never completed", done);
    json_decref(j);
    IT_CHECK(strcmp(it_task_status(e->nc, kept, st, sizeof st), "exhausted") == 0,
             "%s: want exhausted, got %s", kept, st);

    IT_CHECK(it_rec_wait(ev, 2, IT_WAIT_MS), "want 2 expired events, got %zu", it_rec_count(ev));
    j = expired_find(ev, exh);
    dump = it_json_dump(j);
    IT_CHECK(j && strcmp(it_json_str(j, "status"), "archived") == 0 &&
                 strstr(it_json_str(j, "error"), "archived") &&
                 strcmp(it_json_str(j, "category"), "network") == 0,
             "expired event of the exhausted task: %s", dump);
    free(dump);
    json_decref(j);
    j = expired_find(ev, done);
    dump = it_json_dump(j);
    IT_CHECK(j && strcmp(it_json_str(j, "status"), "completed") == 0 &&
                 strstr(it_json_str(j, "error"), "removed"),
             "expired event of the completed task: %s", dump);
    free(dump);
    json_decref(j);
    IT_CHECK(strcmp(it_task_status(e->nc, exh, st, sizeof st), "archived") == 0,
             "%s: want archived (kept), got %s", exh, st);
    IT_CHECK(strcmp(it_task_status(e->nc, done, st, sizeof st), "absent") == 0,
             "%s: want removed, got %s", done, st);

    /* Several sweeps later: the transient task's override keeps it; nothing else expired. */
    it_sleep_ms(1500);
    IT_CHECK(strcmp(it_task_status(e->nc, kept, st, sizeof st), "exhausted") == 0,
             "%s (transient:exhausted=0): want exhausted, got %s", kept, st);
    IT_CHECK(it_rec_count(ev) == 2, "want 2 expired events, got %zu", it_rec_count(ev));
    j = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(j, "lifetime_stats.expired_archived") == 1 &&
                 it_json_int(j, "lifetime_stats.expired_removed") == 1,
             "stats: expired_archived %lld, expired_removed %lld",
             (long long)it_json_int(j, "lifetime_stats.expired_archived"),
             (long long)it_json_int(j, "lifetime_stats.expired_removed"));
    json_decref(j);
    IT_CHECK(metric(port, "dlq_retention_total", "action=\"archived\"") == 1 &&
                 metric(port, "dlq_retention_total", "action=\"removed\"") == 1,
             "dlq_retention_total: archived %g, removed %g",
             metric(port, "dlq_retention_total", "action=\"archived\""),
             metric(port, "dlq_retention_total", "action=\"removed\""));
    e->passed = true;
}

/*
 * max_size reached: a new failure is refused (503), evented (refused,
 * "queue full"), counted (stats refused_full, dlq_refused_full_total); no
 * task is evicted for it: every parked task and the kept completed one are
 * still there, and no expired/cleared/archived event was published.
 */
static void
test_full_refuses(void **state)
{
    const char *flags[] = {"max_size=100", "store.keep_completed=true", NULL};
    char ids[100][48], done[96], extra[96], st[32];
    struct it_env *e;
    struct it_recorder *refused, *gone, *w;
    natsConnection *wc;
    struct it_envelope env;
    json_t *j;
    int port;
    bool ok;

    e = it_env_start_http("hooks-full", flags, &port);
    assert_non_null(e);
    *state = e;
    refused = it_env_recorder(e, e->nc, "dlq.events.refused", NULL, 16, true);
    gone = it_env_recorder(e, e->nc, "dlq.events.*", NULL, 512, false);
    assert_non_null(refused);
    assert_non_null(gone);
    wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 16, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});

    /* A completed task (kept; it does not count against max_size). */
    send_failure(e, it_unique_id("done", done, sizeof done), "connection refused", NULL, 1);
    j = it_wait_task_status(e->nc, done, "completed", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "%s never completed", done);
    json_decref(j);
    for (int i = 0; i < 100; i++) {
        snprintf(ids[i], sizeof ids[i], "full-%d", i);
        send_failure(e, ids[i], "400 Bad Request: email invalid", NULL, -1);
    }
    it_envelope_init(&env);
    env.task_id = it_unique_id("extra", extra, sizeof extra);
    env.error = "400 Bad Request: email invalid";
    j = it_request_envelope(e->nc, "dlq.failed.keep", &env);
    IT_CHECK(it_json_int(j, "error.code") == 503, "past max_size: want 503");
    json_decref(j);
    IT_CHECK(it_rec_wait(refused, 1, IT_WAIT_MS), "no refused event");
    {
        const struct it_rec_msg *m = it_rec_get(refused, 0);
        json_t *r = json_loadb(m->body, m->len, 0, NULL);
        IT_CHECK(r && strcmp(it_json_str(r, "task_id"), extra) == 0 &&
                     strstr(it_json_str(r, "error"), "queue full"),
                 "refused event: %.*s", (int)m->len, m->body);
        json_decref(r);
    }
    j = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(j, "lifetime_stats.refused_full") == 1, "stats refused_full: %lld",
             (long long)it_json_int(j, "lifetime_stats.refused_full"));
    json_decref(j);
    IT_CHECK(metric(port, "dlq_refused_full_total", "") == 1, "dlq_refused_full_total: %g",
             metric(port, "dlq_refused_full_total", ""));
    /* Nothing evicted: every task is still there, none expired, archived or cleared. */
    for (int i = 0; i < 100; i++)
        IT_CHECK(strcmp(it_task_status(e->nc, ids[i], st, sizeof st), "pending") == 0,
                 "%s: want pending (parked), got %s", ids[i], st);
    IT_CHECK(strcmp(it_task_status(e->nc, done, st, sizeof st), "completed") == 0,
             "%s: want completed (kept), got %s", done, st);
    IT_CHECK(strcmp(it_task_status(e->nc, extra, st, sizeof st), "absent") == 0,
             "%s: the refused failure was stored: %s", extra, st);
    IT_CHECK(it_rec_count_matching(gone, "dlq.events.expired", NULL, NULL) == 0 &&
                 it_rec_count_matching(gone, "dlq.events.archived", NULL, NULL) == 0 &&
                 it_rec_count_matching(gone, "dlq.events.cleared", NULL, NULL) == 0,
             "a task left the queue");
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_incident_hooks, it_teardown),
        cmocka_unit_test_teardown(test_retention, it_teardown),
        cmocka_unit_test_teardown(test_full_refuses, it_teardown),
    };
    if (getenv("DLQ_IT_FILTER"))
        cmocka_set_test_filter(getenv("DLQ_IT_FILTER"));
    return cmocka_run_group_tests_name("integration_hooks", tests, NULL, NULL);
}
