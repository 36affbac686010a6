/* test_breaker.c - integration: the circuit breaker per retry subject (open after K failures, held tasks not charged, one probe when half-open, closed by a success) and the retry effectiveness numbers, against a real nats-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* Files task id on subject (retry_subject NULL: from the template), transient, max_retries max. */
static void
send_task(struct it_env *e, const char *subject, const char *retry_subject, const char *id, int max)
{
    struct it_envelope env;
    json_t *ack;

    it_envelope_init(&env);
    env.task_id = id;
    env.error = "upstream unavailable";
    env.error_category = "transient";
    env.retry_subject = retry_subject;
    env.max_retries = max;
    ack = it_request_envelope(e->nc, subject, &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest of %s", id);
    json_decref(ack);
}

/* The stats entry of subject in "circuits" (a new reference), or NULL. */
static json_t *
circuit(natsConnection *nc, const char *subject, json_t **stats)
{
    json_t *st = it_admin_stats(nc), *v, *found = NULL;
    size_t i;

    json_array_foreach(json_object_get(st, "circuits"), i, v)
        if (it_json_str(v, "subject") && strcmp(it_json_str(v, "subject"), subject) == 0)
            found = json_incref(v);
    if (stats)
        *stats = st;
    else
        json_decref(st);
    return found;
}

/* Sum of the tasks' retry_count; *open counts the pending ones whose list entry says "circuit":"open". */
static int64_t
retry_sum(natsConnection *nc, const char *subject, int *n, int *open)
{
    char body[128];
    json_t *j, *t;
    size_t i;
    int64_t sum = 0;

    snprintf(body, sizeof body, "{\"subject\":\"%s\",\"limit\":100}", subject);
    j = it_request_json(nc, "dlq.admin.list", body, IT_REQUEST_MS);
    *n = 0;
    *open = 0;
    json_array_foreach(json_object_get(j, "tasks"), i, t) {
        (*n)++;
        sum += it_json_int(t, "retry_count");
        if (it_json_str(t, "circuit") && strcmp(it_json_str(t, "circuit"), "open") == 0)
            (*open)++;
    }
    json_decref(j);
    return sum;
}

/* Waits for r to hold n messages; returns the last one's JSON body (or NULL). */
static json_t *
rec_json_wait(struct it_recorder *r, size_t n, int timeout_ms)
{
    const struct it_rec_msg *m;

    if (!it_rec_wait(r, n, timeout_ms))
        return NULL;
    m = it_rec_get(r, n - 1);
    return m->body ? json_loadb(m->body, m->len, 0, NULL) : NULL;
}

/*
 * A worker that fails every retry opens the circuit after 3 failures in a
 * row (event, stats, list, /metrics, alert); while open the tasks are held
 * and not charged; after the cool-down exactly one probe reaches the
 * worker, and its failure re-opens the circuit (only the probe charged);
 * then the worker succeeds: the next probe closes the circuit and every
 * waiting task completes.
 */
static void
test_circuit(void **state)
{
    int port;
    const char *flags[] = {"circuit_breaker.failures=3",
                           "circuit_breaker.cooldown_ms=1500",
                           "retry.max_in_flight=1",
                           "backoff.exp_base_ms=50",
                           "backoff.max_delay_ms=100",
                           "alerts.check_interval_ms=50",
                           NULL};
    struct it_env *e = it_env_start_http("breaker-circuit", flags, &port);
    const char *S = "dlq.retry.cb";
    json_t *j, *st, *c;
    char *dump, *m;
    int n, open;

    assert_non_null(e);
    *state = e;
    struct it_recorder *opened = it_env_recorder(e, e->nc, "dlq.events.circuit_opened", NULL, 16, true);
    struct it_recorder *closed = it_env_recorder(e, e->nc, "dlq.events.circuit_closed", NULL, 16, true);
    struct it_recorder *alerts = it_env_recorder(e, e->nc, "dlq.events.alert", NULL, 64, true);
    struct it_recorder *w = it_env_recorder(e, it_env_connect(e, "worker"), S, NULL, 256, false);
    assert_non_null(opened);
    assert_non_null(closed);
    assert_non_null(alerts);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_FAIL, "upstream unavailable", NULL});

    send_task(e, "dlq.failed.cb", NULL, "cb-1", 20);
    send_task(e, "dlq.failed.cb", NULL, "cb-2", 20);
    send_task(e, "dlq.failed.cb", NULL, "cb-3", 20);

    /* Three failures in a row (one retry in flight at a time): the circuit opens. */
    j = rec_json_wait(opened, 1, IT_WAIT_MS);
    dump = it_json_dump(j);
    IT_CHECK(j && it_json_str(j, "subject") && strcmp(it_json_str(j, "subject"), S) == 0 &&
                 strcmp(it_json_str(j, "state"), "open") == 0 && it_json_int(j, "failures") == 3 &&
                 it_json_str(j, "next_probe_at"),
             "circuit_opened event: %s", dump);
    free(dump);
    json_decref(j);
    size_t received_at_open = it_rec_count(w);
    IT_CHECK(received_at_open == 3, "the worker got 3 retries before the circuit opened (%zu)",
             received_at_open);

    c = circuit(e->nc, S, &st);
    dump = it_json_dump(st);
    IT_CHECK(c && strcmp(it_json_str(c, "state"), "open") == 0 && it_json_int(c, "failures") == 3 &&
                 it_json_str(c, "opened_at") && it_json_str(c, "next_probe_at") &&
                 it_json_int(st, "circuits_open") == 1 && it_json_int(st, "circuits_opened_total") == 1,
             "stats while open: %.4000s", dump);
    free(dump);
    json_decref(c);
    json_decref(st);

    /* While open: every task is held ("circuit":"open"), none is charged another attempt. */
    int64_t sum0 = retry_sum(e->nc, "dlq.failed.cb", &n, &open);
    IT_CHECK(n == 3 && sum0 == 3, "3 tasks, 3 attempts charged (%d, %lld)", n, (long long)sum0);
    int64_t end = sc_now_mono_ms() + IT_WAIT_MS;
    while (open < 3 && sc_now_mono_ms() < end) {
        it_sleep_ms(20);
        retry_sum(e->nc, "dlq.failed.cb", &n, &open);
    }
    IT_CHECK(open == 3, "list says circuit open for each held task (%d)", open);
    j = it_admin_get(e->nc, "cb-1");
    IT_CHECK(j && strcmp(it_json_str(j, "circuit") ? it_json_str(j, "circuit") : "", "open") == 0,
             "get says circuit open");
    json_decref(j);
    m = it_metrics(port);
    IT_CHECK(m && strstr(m, "dlq_circuit_state{subject=\"dlq.retry.cb\"} 1\n") &&
                 strstr(m, "\ndlq_circuit_opened_total 1\n") && strstr(m, "\ndlq_circuits_open 1\n"),
             "/metrics while open: %.3000s", m ? m : "(none)");
    free(m);
    j = NULL;
    end = sc_now_mono_ms() + IT_WAIT_MS;
    for (size_t i = 0; !j && sc_now_mono_ms() < end; it_sleep_ms(20))
        for (i = 0; !j && i < it_rec_count(alerts); i++) {
            const struct it_rec_msg *am = it_rec_get(alerts, i);
            json_t *a = json_loadb(am->body, am->len, 0, NULL);
            if (a && strcmp(it_json_str(a, "name") ? it_json_str(a, "name") : "", "retry_circuits_open") == 0 &&
                strcmp(it_json_str(a, "state"), "firing") == 0)
                j = a;
            else
                json_decref(a);
        }
    IT_CHECK(j && json_number_value(json_object_get(j, "value")) == 1, "alert retry_circuits_open fires");
    json_decref(j);

    /* After the cool-down one probe goes, fails, and the circuit opens again. */
    j = rec_json_wait(opened, 2, IT_WAIT_MS);
    IT_CHECK(j != NULL, "the failed probe re-opens the circuit");
    json_decref(j);
    IT_CHECK(it_rec_count(w) == received_at_open + 1, "exactly one probe while half-open (%zu)",
             it_rec_count(w) - received_at_open);
    int64_t sum1 = retry_sum(e->nc, "dlq.failed.cb", &n, &open);
    IT_CHECK(sum1 == sum0 + 1, "only the probe was charged (%lld -> %lld)", (long long)sum0,
             (long long)sum1);

    /* The worker recovers: the next probe succeeds, closes the circuit, the waiting tasks go. */
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    j = rec_json_wait(closed, 1, IT_WAIT_MS);
    dump = it_json_dump(j);
    IT_CHECK(j && strcmp(it_json_str(j, "subject"), S) == 0 && strcmp(it_json_str(j, "state"), "closed") == 0,
             "circuit_closed event: %s", dump);
    free(dump);
    json_decref(j);
    for (int i = 1; i <= 3; i++) {
        char id[16];
        bool ok = false;
        snprintf(id, sizeof id, "cb-%d", i);
        j = it_wait_task_status(e->nc, id, "completed", IT_WAIT_MS, &ok);
        json_decref(j);
        IT_CHECK(ok, "%s completes once the circuit closed", id);
    }
    IT_CHECK(it_rec_count(w) == received_at_open + 1 + 3, "the worker got the probe and 3 tasks (%zu)",
             it_rec_count(w) - received_at_open);
    c = circuit(e->nc, S, &st);
    IT_CHECK(!c && it_json_int(st, "circuits_open") == 0 && it_json_int(st, "circuits_opened_total") == 2,
             "stats: the circuit is gone");
    json_decref(c);
    json_decref(st);
    m = it_metrics(port);
    IT_CHECK(m && strstr(m, "\ndlq_circuits_open 0\n") && !strstr(m, "dlq_circuit_state{subject=\"dlq.retry.cb\"}"),
             "/metrics once closed: %.3000s", m ? m : "(none)");
    free(m);
    e->passed = true;
}

/*
 * Retry effectiveness: two tasks succeed on their second attempt, one is
 * exhausted after its only retry: success rate 2/3, attempts-to-success
 * bucket "2" holds 2, recovery times known; /metrics has the per-category
 * families. No "no responders" nor circuit is involved (breaker off).
 */
static void
test_effectiveness(void **state)
{
    int port;
    const char *flags[] = {"backoff.exp_base_ms=50", "backoff.max_delay_ms=100", NULL};
    struct it_env *e = it_env_start_http("breaker-effect", flags, &port);
    const struct it_step fail_once[] = {{IT_ACT_FAIL, "upstream unavailable", NULL}};
    json_t *j, *st, *s;
    bool ok = false;
    char *dump, *m;

    assert_non_null(e);
    *state = e;
    struct it_recorder *w1 = it_env_recorder(e, it_env_connect(e, "w1"), "dlq.retry.ef1", NULL, 16, false);
    struct it_recorder *w2 = it_env_recorder(e, it_env_connect(e, "w2"), "dlq.retry.ef2", NULL, 16, false);
    struct it_recorder *w3 = it_env_recorder(e, it_env_connect(e, "w3"), "dlq.retry.ef3", NULL, 16, false);
    assert_non_null(w1);
    assert_non_null(w2);
    assert_non_null(w3);
    it_recorder_set_plan(w1, fail_once, 1, (struct it_step){IT_ACT_OK, NULL, NULL});
    it_recorder_set_plan(w2, fail_once, 1, (struct it_step){IT_ACT_OK, NULL, NULL});
    it_recorder_set_plan(w3, NULL, 0, (struct it_step){IT_ACT_FAIL, "upstream unavailable", NULL});

    send_task(e, "dlq.failed.ef", "dlq.retry.ef1", "ef-1", 5);
    send_task(e, "dlq.failed.ef", "dlq.retry.ef2", "ef-2", 5);
    send_task(e, "dlq.failed.ef", "dlq.retry.ef3", "ef-3", 1);
    j = it_wait_task_status(e->nc, "ef-1", "completed", IT_WAIT_MS, &ok);
    json_decref(j);
    IT_CHECK(ok, "ef-1 completes");
    j = it_wait_task_status(e->nc, "ef-2", "completed", IT_WAIT_MS, &ok);
    json_decref(j);
    IT_CHECK(ok, "ef-2 completes");
    j = it_wait_task_status(e->nc, "ef-3", "exhausted", IT_WAIT_MS, &ok);
    json_decref(j);
    IT_CHECK(ok, "ef-3 is exhausted");

    st = it_admin_stats(e->nc);
    s = json_object_get(json_object_get(it_json_get(st, "retry_effectiveness"), "by_subject"), "dlq.failed.ef");
    dump = it_json_dump(it_json_get(st, "retry_effectiveness"));
    IT_CHECK(s && it_json_int(s, "succeeded") == 2 && it_json_int(s, "exhausted") == 1 &&
                 json_number_value(json_object_get(s, "success_rate")) > 0.666 &&
                 json_number_value(json_object_get(s, "success_rate")) < 0.667 &&
                 it_json_int(s, "attempts_to_success.2") == 2 && it_json_int(s, "attempts_to_success.1") == 0 &&
                 it_json_int(s, "recovery_p50_ms") > 0 && it_json_int(s, "recovery_p90_ms") >= it_json_int(s, "recovery_p50_ms"),
             "by_subject: %.4000s", dump);
    {
        /* The categories add up to the same numbers. */
        int64_t ok_n = 0, ex_n = 0, a2 = 0;
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(it_json_get(st, "retry_effectiveness"), "by_category"), k, v) {
            ok_n += it_json_int(v, "succeeded");
            ex_n += it_json_int(v, "exhausted");
            a2 += it_json_int(v, "attempts_to_success.2");
        }
        IT_CHECK(ok_n == 2 && ex_n == 1 && a2 == 2, "by_category sums (%lld, %lld, %lld): %.4000s",
                 (long long)ok_n, (long long)ex_n, (long long)a2, dump);
    }
    free(dump);
    json_decref(st);

    m = it_metrics(port);
    IT_CHECK(m && strstr(m, "# TYPE dlq_retry_attempts_to_success histogram") &&
                 strstr(m, "# TYPE dlq_retry_recovery_seconds histogram") &&
                 strstr(m, "dlq_retried_tasks_total{category="),
             "/metrics effectiveness families: %.3000s", m ? m : "(none)");
    free(m);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_circuit, it_teardown),
        cmocka_unit_test_teardown(test_effectiveness, it_teardown),
    };
    return cmocka_run_group_tests_name("integration_breaker", tests, NULL, NULL);
}
