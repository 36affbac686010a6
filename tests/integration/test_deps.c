/* test_deps.c - integration: task dependencies (issue 17, depends_on) against a real nats-server: held, released, parked, refused, and held again after a kill -9 on the KV store and on OpenSearch. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dlq.h"
#include "harness.h"

/* Failures on dlq.failed.orders: their retries go to dlq.retry.orders. */
#define FAILED "dlq.failed.orders"

/* Sends one failure envelope (JSON body) as a request; checks the answer is ok. */
static void
fail_ok(struct it_env *e, const char *body)
{
    json_t *ack = it_request_json(e->nc, FAILED, body, IT_REQUEST_MS);
    char *dump = it_json_dump(ack);

    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest %s: want ok, got %s", body, dump);
    free(dump);
    json_decref(ack);
}

/* A failure of id retried by the list [delay_ms] (linear), depending on deps (a JSON array, NULL: none). */
static void
fail_task(struct it_env *e, const char *id, int delay_ms, const char *deps)
{
    char body[1024];

    snprintf(body, sizeof body,
             "{\"task_id\":\"%s\",\"task\":{\"id\":\"%s\"},\"error\":\"busy\",\"retry_policy\":\"linear\","
             "\"backoff\":[%d]%s%s}",
             id, id, delay_ms, deps ? ",\"depends_on\":" : "", deps ? deps : "");
    fail_ok(e, body);
}

/* Compact JSON of key k of t ("(none)" when absent); the caller frees it. */
static char *
key_json(const json_t *t, const char *k)
{
    const json_t *v = json_object_get(t, k);

    return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("(none)");
}

/* Checks that get of id shows it held: pending, reason "waiting for <dep>", waiting_for [dep]. */
static void
check_held(struct it_env *e, const char *id, const char *dep)
{
    json_t *t = it_admin_get(e->nc, id);
    char *dump = it_json_dump(t), *waiting = key_json(t, "waiting_for"), want[256], reason[256];

    snprintf(want, sizeof want, "[\"%s\"]", dep);
    snprintf(reason, sizeof reason, "waiting for %s", dep);
    IT_CHECK(it_json_str(t, "status") && strcmp(it_json_str(t, "status"), "pending") == 0 &&
                 !json_is_true(json_object_get(t, "parked")),
             "%s: want pending, not parked: %s", id, dump);
    IT_CHECK(it_json_str(t, "park_reason") && strcmp(it_json_str(t, "park_reason"), reason) == 0,
             "%s: want reason '%s': %s", id, reason, dump);
    IT_CHECK(strcmp(waiting, want) == 0, "%s: want waiting_for %s, got %s", id, want, waiting);
    free(waiting);
    free(dump);
    json_decref(t);
}

/* Waits until id is parked with reason want; fails otherwise. */
static void
wait_parked(struct it_env *e, const char *id, const char *want)
{
    json_t *t = NULL;

    for (int i = 0; i < IT_WAIT_MS / 20; i++) {
        json_decref(t);
        t = it_admin_get(e->nc, id);
        if (json_is_true(json_object_get(t, "parked")) && it_json_str(t, "park_reason") &&
            strcmp(it_json_str(t, "park_reason"), want) == 0)
            break;
        it_sleep_ms(20);
    }
    char *dump = it_json_dump(t);
    IT_CHECK(json_is_true(json_object_get(t, "parked")) && it_json_str(t, "park_reason") &&
                 strcmp(it_json_str(t, "park_reason"), want) == 0,
             "%s: want parked with '%s': %s", id, want, dump);
    IT_CHECK(!json_object_get(t, "waiting_for"), "%s: parked but still waiting_for: %s", id, dump);
    free(dump);
    json_decref(t);
}

static int64_t
waiting_count(struct it_env *e)
{
    json_t *s = it_admin_stats(e->nc);
    int64_t n = it_json_int(s, "dependencies.waiting");

    json_decref(s);
    return n;
}

/*
 * 1. B depends on A. A's retry is due in 1.5 s, B's own in 50 ms: B is
 * held (pending, "waiting for A", in stats), so the worker sees A first;
 * A's success releases B, which reaches the worker with attempt 1 (not
 * charged while held); afterwards B shows depends_on but no waiting_for.
 */
static void
test_held_until_completed(void **state)
{
    int port = it_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "http.listen=127.0.0.1:%d", port);
    const char *const flags[] = {listen, NULL};
    struct it_env *e = it_env_start("deps-release", flags);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.orders", "workers", 16, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});

    char a[96], b[96], deps[128];
    it_unique_id("A", a, sizeof a);
    it_unique_id("B", b, sizeof b);
    snprintf(deps, sizeof deps, "[\"%s\"]", a);
    fail_task(e, a, 1500, NULL);
    fail_task(e, b, 50, deps);
    check_held(e, b, a);
    IT_CHECK(waiting_count(e) == 1, "stats dependencies.waiting: want 1, got %lld",
             (long long)waiting_count(e));
    struct it_http_resp r;
    IT_CHECK(it_http_get(port, "/metrics", &r) == 0 && r.status == 200, "GET /metrics");
    IT_CHECK(r.body && strstr(r.body, "\ndlq_dependencies_waiting 1\n"),
             "/metrics: want the gauge dlq_dependencies_waiting 1");
    it_http_resp_free(&r);

    IT_CHECK(it_rec_wait(w, 2, IT_WAIT_MS), "want 2 retries (A then B), got %zu", it_rec_count(w));
    const char *first = it_rec_header(it_rec_get(w, 0), "Dlq-Task-Id");
    const char *second = it_rec_header(it_rec_get(w, 1), "Dlq-Task-Id");
    const char *att = it_rec_header(it_rec_get(w, 1), "Dlq-Attempt");
    IT_CHECK(first && strcmp(first, a) == 0, "B went out before A completed: first %s", first ? first : "(none)");
    IT_CHECK(second && strcmp(second, b) == 0, "second retry: want B, got %s", second ? second : "(none)");
    IT_CHECK(att && strcmp(att, "1") == 0, "B's attempt: want 1 (waiting is not charged), got %s",
             att ? att : "(none)");
    IT_CHECK(it_rec_get(w, 1)->at_mono >= it_rec_get(w, 0)->replied_mono,
             "B reached the worker before A's success was answered");

    char st[32] = "";
    for (int i = 0; i < IT_WAIT_MS / 20; i++) { /* completed (removed unless keep_completed) */
        it_task_status(e->nc, b, st, sizeof st);
        if (strcmp(st, "completed") == 0 || strcmp(st, "absent") == 0)
            break;
        it_sleep_ms(20);
    }
    IT_CHECK(strcmp(st, "completed") == 0 || strcmp(st, "absent") == 0, "B: want completed, is %s", st);
    IT_CHECK(waiting_count(e) == 0, "stats dependencies.waiting: want 0 after the release");
    e->passed = true;
}

/*
 * 2. A dependency exhausted, archived or cleared parks its dependent with
 * that reason: A exhausted before B arrives; C archived and E cleared while
 * D and F wait.
 */
static void
test_parked_by_dependency(void **state)
{
    struct it_env *e = it_env_start("deps-parked", NULL);
    assert_non_null(e);
    *state = e;
    char a[96], b[96], c[96], d[96], x[96], f[96], deps[128], body[512], want[256];

    it_unique_id("A", a, sizeof a);
    it_unique_id("B", b, sizeof b);
    snprintf(body, sizeof body, "{\"task_id\":\"%s\",\"task\":{},\"error\":\"busy\",\"max_retries\":0}", a);
    fail_ok(e, body);
    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, a, "exhausted", IT_WAIT_MS, &ok);
    json_decref(t);
    IT_CHECK(ok, "A: want exhausted");
    snprintf(deps, sizeof deps, "[\"%s\"]", a);
    fail_task(e, b, 50, deps);
    snprintf(want, sizeof want, "dependency %s exhausted", a);
    wait_parked(e, b, want);

    it_unique_id("C", c, sizeof c);
    it_unique_id("D", d, sizeof d);
    fail_task(e, c, 60000, NULL);
    snprintf(deps, sizeof deps, "[\"%s\"]", c);
    fail_task(e, d, 50, deps);
    check_held(e, d, c);
    snprintf(body, sizeof body, "{\"task_id\":\"%s\"}", c);
    t = it_request_json(e->nc, "dlq.admin.archive", body, IT_REQUEST_MS);
    json_decref(t);
    snprintf(want, sizeof want, "dependency %s archived", c);
    wait_parked(e, d, want);

    it_unique_id("E", x, sizeof x);
    it_unique_id("F", f, sizeof f);
    fail_task(e, x, 60000, NULL);
    snprintf(deps, sizeof deps, "[\"%s\"]", x);
    fail_task(e, f, 50, deps);
    check_held(e, f, x);
    snprintf(body, sizeof body, "{\"id_prefix\":\"%s\",\"confirm\":true}", x);
    t = it_request_json(e->nc, "dlq.admin.clear", body, IT_REQUEST_MS);
    json_decref(t);
    snprintf(want, sizeof want, "dependency %s cleared", x);
    wait_parked(e, f, want);
    IT_CHECK(waiting_count(e) == 0, "stats dependencies.waiting: want 0");
    e->passed = true;
}

/*
 * 3. Bad depends_on never stores anything: each envelope comes back raw on
 * dlq.invalid.orders with its reason and a detail naming depends_on, the
 * request's answer names it, the invalid counter counts it. A cycle
 * (A waits for nothing yet, B waits for A, then A names B) is refused
 * with the cycle named, and A keeps no dependencies.
 */
static void
test_bad_depends_on(void **state)
{
    struct it_env *e = it_env_start("deps-invalid", NULL);
    assert_non_null(e);
    *state = e;
    natsConnection *sc = it_env_connect(e, "it-spy");
    assert_non_null(sc);
    struct it_recorder *spy = it_env_recorder(e, sc, "dlq.invalid.>", NULL, 32, false);
    assert_non_null(spy);
    char many[33 * 8 + 4];
    size_t n = 0;
    many[n++] = '[';
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%s\"d%d\"", i ? "," : "", i);
    snprintf(many + n, sizeof many - n, "]");
    const struct {
        const char *value, *reason;
    } cases[] = {
        {"\"other\"", "bad_depends_on"}, {"[]", "bad_depends_on"},     {"[1]", "bad_depends_on"},
        {"[\"\"]", "bad_depends_on"},    {"[\"x\",\"x\"]", "bad_depends_on"},
        {"[\"bad\\u0001id\"]", "bad_depends_on"}, {many, "bad_depends_on"},
        {NULL, "bad_depends_on"}, /* its own id */
    };
    size_t k;
    for (k = 0; k < SC_ARRAY_LEN(cases); k++) {
        char id[96], body[1024], self[128];
        it_unique_id("bad", id, sizeof id);
        snprintf(self, sizeof self, "[\"%s\"]", id);
        snprintf(body, sizeof body, "{\"task_id\":\"%s\",\"task\":{},\"error\":\"busy\",\"depends_on\":%s}",
                 id, cases[k].value ? cases[k].value : self);
        json_t *ack = it_request_json(e->nc, FAILED, body, IT_REQUEST_MS);
        char *dump = it_json_dump(ack);
        IT_CHECK(ack && !json_is_true(json_object_get(ack, "ok")) && strstr(dump, "depends_on"),
                 "depends_on %s: want a refusal naming depends_on, got %s", body, dump);
        free(dump);
        json_decref(ack);
        IT_CHECK(it_rec_wait(spy, k + 1, IT_WAIT_MS), "%s: nothing on dlq.invalid.orders", body);
        const struct it_rec_msg *m = it_rec_get(spy, k);
        const char *reason = it_rec_header(m, "Dlq-Invalid-Reason");
        const char *detail = it_rec_header(m, "Dlq-Invalid-Detail");
        IT_CHECK(reason && strcmp(reason, cases[k].reason) == 0, "%s: reason %s", body,
                 reason ? reason : "(none)");
        IT_CHECK(detail && strstr(detail, "depends_on"), "%s: detail %s", body, detail ? detail : "(none)");
        json_t *t = it_admin_get(e->nc, id);
        IT_CHECK(it_json_int(t, "error.code") == 404, "%s: want no task", body);
        json_decref(t);
    }

    char a[96], b[96], deps[128], body[512], cycle[400];
    it_unique_id("A", a, sizeof a);
    it_unique_id("B", b, sizeof b);
    fail_task(e, a, 60000, NULL);
    snprintf(deps, sizeof deps, "[\"%s\"]", a);
    fail_task(e, b, 50, deps);
    check_held(e, b, a);
    snprintf(body, sizeof body,
             "{\"task_id\":\"%s\",\"task\":{},\"error\":\"again\",\"depends_on\":[\"%s\"]}", a, b);
    json_t *ack = it_request_json(e->nc, FAILED, body, IT_REQUEST_MS);
    char *dump = it_json_dump(ack);
    snprintf(cycle, sizeof cycle, "depends_on: cycle %s -> %s -> %s", a, b, a);
    IT_CHECK(ack && !json_is_true(json_object_get(ack, "ok")) && strstr(dump, cycle),
             "cycle: want a refusal naming '%s', got %s", cycle, dump);
    free(dump);
    json_decref(ack);
    IT_CHECK(it_rec_wait(spy, k + 1, IT_WAIT_MS), "cycle: nothing on dlq.invalid.orders");
    const char *reason = it_rec_header(it_rec_get(spy, k), "Dlq-Invalid-Reason");
    IT_CHECK(reason && strcmp(reason, "dependency_cycle") == 0, "cycle: reason %s",
             reason ? reason : "(none)");
    json_t *t = it_admin_get(e->nc, a);
    dump = it_json_dump(t);
    IT_CHECK(!json_object_get(t, "depends_on") && strcmp(it_json_str(t, "error"), "busy") == 0,
             "cycle: A was changed: %s", dump);
    free(dump);
    json_decref(t);
    json_t *st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "lifetime_stats.invalid") == (int64_t)SC_ARRAY_LEN(cases) + 1,
             "lifetime invalid: want %zu, got %lld", SC_ARRAY_LEN(cases) + 1,
             (long long)it_json_int(st, "lifetime_stats.invalid"));
    json_decref(st);
    e->passed = true;
}

/*
 * 4. An id this sidecar never saw does not hold the task (the DLQ only
 * knows failures): it goes out on its own schedule; get shows depends_on
 * and no waiting_for. An operator's retry by task_id releases a held task
 * (noted in its history); a retry by filter leaves held tasks alone.
 */
static void
test_unknown_and_override(void **state)
{
    struct it_env *e = it_env_start("deps-unknown", NULL);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.orders", "workers", 16, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_SILENT, NULL, NULL});

    char u[96], a[96], b[96], deps[128], body[512];
    it_unique_id("U", u, sizeof u);
    fail_task(e, u, 50, "[\"never-seen-task\"]");
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "a task depending on an unknown id was not retried");
    IT_CHECK(strcmp(it_rec_header(it_rec_get(w, 0), "Dlq-Task-Id"), u) == 0, "want U's retry");
    json_t *t = it_admin_get(e->nc, u);
    char *dep = key_json(t, "depends_on"), *dump = it_json_dump(t);
    IT_CHECK(strcmp(dep, "[\"never-seen-task\"]") == 0 && !json_object_get(t, "waiting_for"),
             "U: want depends_on and no waiting_for: %s", dump);
    free(dep);
    free(dump);
    json_decref(t);

    it_unique_id("A", a, sizeof a);
    it_unique_id("B", b, sizeof b);
    fail_task(e, a, 60000, NULL);
    snprintf(deps, sizeof deps, "[\"%s\"]", a);
    fail_task(e, b, 50, deps);
    check_held(e, b, a);
    t = it_request_json(e->nc, "dlq.admin.retry", "{\"subject\":\"dlq.failed.orders\"}",
                        IT_REQUEST_MS);
    dump = it_json_dump(t);
    json_decref(t);
    check_held(e, b, a); /* the filter's retry left it waiting */
    free(dump);
    size_t before = it_rec_count(w);
    snprintf(body, sizeof body, "{\"task_id\":\"%s\"}", b);
    t = it_request_json(e->nc, "dlq.admin.retry", body, IT_REQUEST_MS);
    json_decref(t);
    bool seen = false;
    for (int i = 0; i < IT_WAIT_MS / 20 && !seen; i++) {
        for (size_t j = before; j < it_rec_count(w); j++)
            if (strcmp(it_rec_header(it_rec_get(w, j), "Dlq-Task-Id"), b) == 0)
                seen = true;
        if (!seen)
            it_sleep_ms(20);
    }
    IT_CHECK(seen, "the retry by task_id did not send the held task");
    t = it_admin_get(e->nc, b);
    dump = it_json_dump(t);
    IT_CHECK(strstr(dump, "dependencies overridden") && !json_object_get(t, "waiting_for"),
             "B: want the override in its history and no waiting_for: %s", dump);
    free(dump);
    json_decref(t);
    e->passed = true;
}

/* ---- the KV store (store.backend jetstream): kill -9 keeps B held ----------------------------- */

/*
 * Shared by the KV and OpenSearch stores: B held for A, the store caught up
 * (polled up to rounds x 20 ms), kill -9 and a restart with the same flags;
 * B comes back held, and archiving A then parks it.
 */
static void
restart_keeps_held(struct it_env *e, const char *const *flags, int rounds)
{
    char a[96], b[96], deps[128], body[256], want[256];

    it_unique_id("A", a, sizeof a);
    it_unique_id("B", b, sizeof b);
    fail_task(e, a, 60000, NULL);
    snprintf(deps, sizeof deps, "[\"%s\"]", a);
    fail_task(e, b, 50, deps);
    check_held(e, b, a);
    for (int i = 0; i < rounds; i++) { /* the store caught up: nothing queued */
        json_t *s = it_admin_stats(e->nc);
        bool done = it_json_str(s, "persistence.state") && strcmp(it_json_str(s, "persistence.state"), "ok") == 0 &&
                    it_json_int(s, "persistence.queued_writes") == 0;
        json_decref(s);
        if (done)
            break;
        it_sleep_ms(20);
    }
    kill(e->dmn.pid, SIGKILL);
    for (int i = 0; i < 500 && it_daemon_alive(&e->dmn); i++)
        it_sleep_ms(10);
    IT_CHECK(e->dmn.pid == 0, "the daemon survived SIGKILL");
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0, "daemon restart");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, 60000) == 0, "daemon ready after restart");
    check_held(e, b, a);
    IT_CHECK(waiting_count(e) == 1, "after the restart: stats dependencies.waiting %lld, want 1",
             (long long)waiting_count(e));
    snprintf(body, sizeof body, "{\"task_id\":\"%s\"}", a);
    json_t *t = it_request_json(e->nc, "dlq.admin.archive", body, IT_REQUEST_MS);
    json_decref(t);
    snprintf(want, sizeof want, "dependency %s archived", a);
    wait_parked(e, b, want);
}

/*
 * 5. With tasks in the KV bucket, B held for A survives a kill -9: back
 * held (pending, waiting_for A, stats 1), the index rebuilt, so A archived
 * after the restart parks B.
 */
static void
test_kv_restart_keeps_held(void **state)
{
    static const char *const flags[] = {"store.backend=jetstream", "store.jetstream.flush_ms=5", NULL};
    struct it_env *e = it_env_start_js("deps-kv", flags);
    assert_non_null(e);
    *state = e;
    restart_keeps_held(e, flags, 250);
    e->passed = true;
}

/* ---- the OpenSearch store: kill -9 keeps B held ------------------------------------------------ */

/* Drops the test's index and its template on the node at url (curl; best effort). */
static void
os_drop(const char *url, const char *index)
{
    char cmd[1024];

    snprintf(cmd, sizeof cmd,
             "curl -s -o /dev/null -X DELETE '%s/%s'; curl -s -o /dev/null -X DELETE '%s/_index_template/%s'",
             url, index, url, index);
    if (system(cmd) != 0)
        fprintf(stderr, "[deps-os] could not drop %s\n", index);
}

/*
 * 6. The same with tasks in OpenSearch (DLQ_TEST_OPENSEARCH_URL, as
 * test_persist.c): the documents keep depends_on and waiting_for, so B is
 * back held after a kill -9, and A archived afterwards parks it.
 */
static void
test_os_restart_keeps_held(void **state)
{
    const char *url = getenv("DLQ_TEST_OPENSEARCH_URL");
    char index[96], furl[512], findex[160];

    IT_CHECK(url && *url, "DLQ_TEST_OPENSEARCH_URL is not set: run scripts/test.sh, or start a node "
                          "with scripts/opensearch.sh start and export its URL");
    snprintf(index, sizeof index, "dlqit-%d-deps", (int)getpid());
    os_drop(url, index);
    snprintf(furl, sizeof furl, "store.opensearch.url=%s", url);
    snprintf(findex, sizeof findex, "store.opensearch.index=%s", index);
    const char *const flags[] = {"store.backend=opensearch", furl, findex, "store.opensearch.flush_ms=50", NULL};
    struct it_env *e = it_env_start("deps-os", flags);
    assert_non_null(e);
    *state = e;
    restart_keeps_held(e, flags, 500);
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "the daemon did not stop cleanly");
    os_drop(url, index); /* after its last flush, which would make the index again */
    e->passed = true;
}

/* ---- cluster mode: a dependency must share the task's partition -------------------------------- */

/* Writes into out an id "<prefix>-<n>" whose partition (of 32) is (same) or is not (!same) that of other. */
static void
id_in_partition(const char *prefix, const char *other, bool same, char *out, size_t outlen)
{
    uint32_t p = dlq_partition_of(other, strlen(other), 32);

    for (int n = 0; n < 100000; n++) {
        snprintf(out, outlen, "%s-%d", prefix, n);
        if ((dlq_partition_of(out, strlen(out), 32) == p) == same)
            return;
    }
    fail();
}

/*
 * 7. One member in cluster mode (JetStream ingest, the KV store): a
 * dependency in another partition is refused to dlq.invalid with
 * bad_depends_on naming the partitions (nothing stored); one in the task's
 * own partition holds it as outside cluster mode.
 */
static void
test_cluster_partition_rule(void **state)
{
    static const char *const flags[] = {
        "cluster.enabled=true", "cluster.member_id=s0", "cluster.replicas=1",
        "store.backend=jetstream", "store.jetstream.replicas=1",
        "ingest.mode=jetstream", "ingest.stream_replicas=1", NULL,
    };
    struct it_env *e = it_env_start_js("deps-cluster", flags);
    assert_non_null(e);
    *state = e;
    natsConnection *sc = it_env_connect(e, "it-spy");
    assert_non_null(sc);
    struct it_recorder *spy = it_env_recorder(e, sc, "dlq.invalid.>", NULL, 8, false);
    assert_non_null(spy);
    char a[96], b[96], far[96], c[96], deps[256], body[512];

    it_unique_id("A", a, sizeof a);
    id_in_partition(a, a, true, b, sizeof b);
    id_in_partition("far", b, false, far, sizeof far);
    snprintf(body, sizeof body, "{\"task_id\":\"%s\",\"task\":{},\"error\":\"busy\",\"retry_policy\":\"linear\",\"backoff\":[60000]}", a);
    natsConnection_PublishString(e->nc, FAILED, body);
    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, a, "pending", 60000, &ok);
    json_decref(t);
    IT_CHECK(ok, "A was not taken in (does the member serve its partition?)");

    snprintf(deps, sizeof deps, "[\"%s\"]", far);
    snprintf(body, sizeof body, "{\"task_id\":\"%s\",\"task\":{},\"error\":\"busy\",\"depends_on\":%s}", b, deps);
    natsConnection_PublishString(e->nc, FAILED, body);
    IT_CHECK(it_rec_wait(spy, 1, 60000), "cross-partition depends_on: nothing on dlq.invalid");
    const char *reason = it_rec_header(it_rec_get(spy, 0), "Dlq-Invalid-Reason");
    const char *detail = it_rec_header(it_rec_get(spy, 0), "Dlq-Invalid-Detail");
    IT_CHECK(reason && strcmp(reason, "bad_depends_on") == 0, "reason %s", reason ? reason : "(none)");
    IT_CHECK(detail && strstr(detail, "depends_on[0]") && strstr(detail, "partition"), "detail %s",
             detail ? detail : "(none)");
    t = it_admin_get(e->nc, b);
    IT_CHECK(it_json_int(t, "error.code") == 404, "B was stored");
    json_decref(t);

    id_in_partition("C", a, true, c, sizeof c);
    snprintf(deps, sizeof deps, "[\"%s\"]", a);
    snprintf(body, sizeof body, "{\"task_id\":\"%s\",\"task\":{},\"error\":\"busy\",\"retry_policy\":\"linear\",\"backoff\":[50],\"depends_on\":%s}", c, deps);
    natsConnection_PublishString(e->nc, FAILED, body);
    t = it_wait_task_status(e->nc, c, "pending", 60000, &ok);
    json_decref(t);
    IT_CHECK(ok, "C was not taken in");
    check_held(e, c, a);
    e->passed = true;
}

/*
 * With the argument "kv" only the KV store's test runs (labelled jetstream),
 * with "os" only OpenSearch's (labelled opensearch), with "cluster" only
 * cluster mode's (labelled cluster), else the others.
 */
int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_held_until_completed, it_teardown),
        cmocka_unit_test_teardown(test_parked_by_dependency, it_teardown),
        cmocka_unit_test_teardown(test_bad_depends_on, it_teardown),
        cmocka_unit_test_teardown(test_unknown_and_override, it_teardown),
    };
    const struct CMUnitTest kv[] = {
        cmocka_unit_test_teardown(test_kv_restart_keeps_held, it_teardown),
    };
    const struct CMUnitTest os[] = {
        cmocka_unit_test_teardown(test_os_restart_keeps_held, it_teardown),
    };
    if (argc > 1 && strcmp(argv[1], "kv") == 0)
        return cmocka_run_group_tests(kv, NULL, NULL);
    const struct CMUnitTest cluster[] = {
        cmocka_unit_test_teardown(test_cluster_partition_rule, it_teardown),
    };
    if (argc > 1 && strcmp(argv[1], "os") == 0)
        return cmocka_run_group_tests(os, NULL, NULL);
    if (argc > 1 && strcmp(argv[1], "cluster") == 0)
        return cmocka_run_group_tests(cluster, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
