/* test_backoff.c - integration: delay lists, templates and priorities (issue 17): on the wire, in classify and stats, bad ones refused to dlq.invalid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define TICK_MS 10

/*
 * The daemon of these tests: the linear formula far away (60 s steps), so a
 * retry that comes within seconds was timed by a list; one list per
 * category and per subject pattern.
 */
static const char *const flags[] = {
    "backoff.linear_step_ms=60000",
    "backoff.exp_base_ms=60000",
    "backoff.categories=network 5s 1m",
    "backoff.subjects=dlq.failed.slow.> 250ms 750ms",
    NULL,
};

/*
 * 1. An envelope's backoff [300, "900ms", 600] with max_retries 4 and a
 * worker that always fails: attempts 1-4 come in order, each at least its
 * delay (minus a tick) after the failure before it: 300, 900, 600, 600 (the
 * last delay repeats), and the task ends exhausted. Lower bounds only.
 */
static void
test_envelope_backoff_on_the_wire(void **state)
{
    struct it_env *e = it_env_start("backoff-wire", flags);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.orders", "workers", 16, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_FAIL, "still busy", "BusyError"});

    char id[96], body[512];
    it_unique_id("list", id, sizeof id);
    snprintf(body, sizeof body,
             "{\"task_id\":\"%s\",\"task\":{\"n\":1},\"error\":\"busy\",\"retry_policy\":\"linear\","
             "\"max_retries\":4,\"backoff\":[300,\"900ms\",600]}",
             id);
    int64_t t_pub = sc_now_mono_ms();
    json_t *ack = it_request_json(e->nc, "dlq.failed.orders", body, IT_REQUEST_MS);
    char *dump = it_json_dump(ack);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest ack: want ok:true, got %s", dump);
    free(dump);
    json_decref(ack);

    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, id, "exhausted", IT_WAIT_MS, &ok);
    dump = it_json_dump(t);
    IT_CHECK(ok, "want exhausted after 4 failed attempts timed by the list, got %s", dump);
    char *own = json_dumps(json_object_get(t, "backoff_ms"), JSON_COMPACT);
    IT_CHECK(own && strcmp(own, "[300,900,600]") == 0 && it_json_str(t, "backoff_source") &&
                 strcmp(it_json_str(t, "backoff_source"), "task") == 0,
             "get: want backoff_ms [300,900,600] from the task: %s", dump);
    free(own);
    free(dump);
    json_decref(t);
    IT_CHECK(it_rec_count(w) == 4, "want 4 retries, got %zu", it_rec_count(w));

    static const int64_t want[] = {300, 900, 600, 600};
    int64_t prev = t_pub;
    for (size_t i = 0; i < 4; i++) {
        const struct it_rec_msg *m = it_rec_get(w, i);
        char n[8];
        snprintf(n, sizeof n, "%zu", i + 1);
        const char *att = it_rec_header(m, "Dlq-Attempt");
        IT_CHECK(att && strcmp(att, n) == 0, "retry %zu: Dlq-Attempt %s", i + 1, att ? att : "(none)");
        int64_t d = m->at_mono - prev;
        fprintf(stderr, "[backoff] attempt %zu came %lld ms after the failure before it (want >= %lld)\n",
                i + 1, (long long)d, (long long)want[i]);
        IT_CHECK(d >= want[i] - TICK_MS, "attempt %zu came %lld ms after the failure before it; want >= %lld",
                 i + 1, (long long)d, (long long)(want[i] - TICK_MS));
        IT_CHECK(m->replied_mono > 0, "the worker did not answer attempt %zu", i + 1);
        prev = m->replied_mono;
    }
    e->passed = true;
}

/*
 * 2. classify shows the delays that apply: an envelope's list, the
 * subject's, the category's, else the formula's; a bad list is a 400 that
 * names the field.
 */
static void
test_classify_delays(void **state)
{
    struct it_env *e = it_env_start("backoff-classify", flags);
    assert_non_null(e);
    *state = e;
    static const struct {
        const char *req, *source, *delays;
    } cases[] = {
        {"{\"error\":\"busy\",\"error_type\":\"ECONNREFUSED\",\"backoff\":[\"1s\",10000]}", "envelope",
         "[1000,10000,10000]"},
        {"{\"error\":\"busy\",\"error_type\":\"ECONNREFUSED\",\"subject\":\"dlq.failed.slow.a\"}", "subject",
         "[250,750,750]"},
        {"{\"error\":\"busy\",\"error_type\":\"ECONNREFUSED\",\"subject\":\"dlq.failed.other\"}", "category",
         "[5000,60000,60000]"},
        {"{\"error\":\"disk full\",\"error_type\":\"ENOSPC\"}", "policy", "[60000,120000,180000]"},
    };
    for (size_t i = 0; i < SC_ARRAY_LEN(cases); i++) {
        json_t *r = it_request_json(e->nc, "dlq.admin.classify", cases[i].req, IT_REQUEST_MS);
        char *dump = it_json_dump(r);
        char *delays = json_dumps(json_object_get(r, "delays_ms"), JSON_COMPACT);
        const char *src = it_json_str(r, "backoff_source");
        IT_CHECK(src && strcmp(src, cases[i].source) == 0, "classify %s: want backoff_source %s: %s",
                 cases[i].req, cases[i].source, dump);
        IT_CHECK(delays && strcmp(delays, cases[i].delays) == 0,
                 "classify %s: want delays_ms %s: %s", cases[i].req, cases[i].delays, dump);
        free(delays);
        free(dump);
        json_decref(r);
    }
    json_t *r = it_request_json(e->nc, "dlq.admin.classify", "{\"error\":\"x\",\"backoff\":[1000,\"0s\"]}",
                                IT_REQUEST_MS);
    char *dump = it_json_dump(r);
    IT_CHECK(it_json_int(r, "error.code") == 400 && it_json_str(r, "error.message") &&
                 strstr(it_json_str(r, "error.message"), "backoff[1]"),
             "classify with a bad backoff: want a 400 naming backoff[1], got %s", dump);
    free(dump);
    json_decref(r);
    e->passed = true;
}

/*
 * 3. A bad backoff never stores anything: each envelope comes back raw on
 * dlq.invalid.orders with a reason and a detail that names the field, the
 * request gets an error naming it, and no task exists.
 */
static void
test_bad_backoff_invalid(void **state)
{
    struct it_env *e = it_env_start("backoff-invalid", flags);
    assert_non_null(e);
    *state = e;
    natsConnection *sc = it_env_connect(e, "it-spy");
    assert_non_null(sc);
    struct it_recorder *spy = it_env_recorder(e, sc, "dlq.invalid.>", NULL, 16, false);
    assert_non_null(spy);
    static const struct {
        const char *value, *field, *reason;
    } cases[] = {
        {"[1000,0]", "backoff[1]", "out_of_range"},
        {"[\"1s\",\"8d\"]", "backoff[1]", "out_of_range"},
        {"[-5]", "backoff[0]", "out_of_range"},
        {"[\"soon\"]", "backoff[0]", "bad_type"},
        {"[1.5]", "backoff[0]", "bad_type"},
        {"[]", "backoff", "out_of_range"},
        {"\"1s 10s\"", "backoff", "bad_type"},
        {"[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", "backoff", "out_of_range"},
    };
    for (size_t i = 0; i < SC_ARRAY_LEN(cases); i++) {
        char id[96], body[512];
        it_unique_id("bad", id, sizeof id);
        snprintf(body, sizeof body,
                 "{\"task_id\":\"%s\",\"task\":{},\"error\":\"busy\",\"retry_policy\":\"linear\",\"backoff\":%s}",
                 id, cases[i].value);
        json_t *ack = it_request_json(e->nc, "dlq.failed.orders", body, IT_REQUEST_MS);
        char *dump = it_json_dump(ack);
        IT_CHECK(ack && !json_is_true(json_object_get(ack, "ok")) && strstr(dump, cases[i].field),
                 "backoff %s: want a refusal naming %s, got %s", cases[i].value, cases[i].field, dump);
        free(dump);
        json_decref(ack);
        IT_CHECK(it_rec_wait(spy, i + 1, IT_WAIT_MS), "backoff %s: nothing on dlq.invalid.orders",
                 cases[i].value);
        const struct it_rec_msg *m = it_rec_get(spy, i);
        const char *reason = it_rec_header(m, "Dlq-Invalid-Reason");
        const char *detail = it_rec_header(m, "Dlq-Invalid-Detail");
        IT_CHECK(strcmp(m->subject, "dlq.invalid.orders") == 0, "backoff %s: on %s", cases[i].value,
                 m->subject);
        IT_CHECK(reason && strcmp(reason, cases[i].reason) == 0, "backoff %s: reason %s, want %s",
                 cases[i].value, reason ? reason : "(none)", cases[i].reason);
        IT_CHECK(detail && strstr(detail, cases[i].field), "backoff %s: detail %s does not name %s",
                 cases[i].value, detail ? detail : "(none)", cases[i].field);
        json_t *t = it_admin_get(e->nc, id);
        dump = it_json_dump(t);
        IT_CHECK(it_json_int(t, "error.code") == 404, "backoff %s: want no task, got %s",
                 cases[i].value, dump);
        free(dump);
        json_decref(t);
    }
    json_t *st = it_admin_stats(e->nc);
    char *dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "queue_size") == 0, "nothing stored: %s", dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.invalid") == (int64_t)SC_ARRAY_LEN(cases),
             "lifetime invalid: want %zu: %s", SC_ARRAY_LEN(cases), dump);
    free(dump);
    json_decref(st);
    e->passed = true;
}


/*
 * 4. A template (from the config file) gives an envelope that names it its
 * policy, budget, delays and retry subject: two attempts on dlq.retry.tpl
 * at least 200 and 500 ms apart, then exhausted; classify shows the
 * template's delays. An unknown template is refused to dlq.invalid with the
 * field named, and nothing is stored.
 */
static void
test_template(void **state)
{
    char path[] = "/tmp/dlq-it-backoff-tpl-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char yaml[] =
        "templates:\n"
        "  quick: {policy: linear, max_retries: 2, backoff: [200, 500ms], retry_subject: dlq.retry.tpl}\n";
    assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
    close(fd);
    char cfgflag[64];
    snprintf(cfgflag, sizeof cfgflag, "config=%s", path);
    const char *const extra[] = {cfgflag, "backoff.linear_step_ms=60000", NULL};
    struct it_env *e = it_env_start("backoff-template", extra);
    unlink(path);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.tpl", "workers", 16, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_FAIL, "still busy", "BusyError"});
    struct it_recorder *spy = it_env_recorder(e, e->nc, "dlq.invalid.>", NULL, 16, false);
    assert_non_null(spy);

    char id[96], body[512];
    it_unique_id("tpl", id, sizeof id);
    snprintf(body, sizeof body,
             "{\"task_id\":\"%s\",\"task\":{\"n\":1},\"error\":\"busy\",\"template\":\"quick\"}", id);
    int64_t t_pub = sc_now_mono_ms();
    json_t *ack = it_request_json(e->nc, "dlq.failed.orders", body, IT_REQUEST_MS);
    char *dump = it_json_dump(ack);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest ack: want ok:true, got %s", dump);
    free(dump);
    json_decref(ack);
    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, id, "exhausted", IT_WAIT_MS, &ok);
    dump = it_json_dump(t);
    IT_CHECK(ok, "want exhausted after the template's 2 attempts, got %s", dump);
    IT_CHECK(it_json_str(t, "retry_policy") && strcmp(it_json_str(t, "retry_policy"), "linear") == 0,
             "retry_policy: want the template's linear: %s", dump);
    IT_CHECK(it_json_int(t, "max_retries") == 2, "max_retries: want the template's 2: %s", dump);
    IT_CHECK(it_json_str(t, "retry_subject") && strcmp(it_json_str(t, "retry_subject"), "dlq.retry.tpl") == 0,
             "retry_subject: want the template's: %s", dump);
    free(dump);
    json_decref(t);
    IT_CHECK(it_rec_count(w) == 2, "want 2 retries on dlq.retry.tpl, got %zu", it_rec_count(w));
    const struct it_rec_msg *m1 = it_rec_get(w, 0), *m2 = it_rec_get(w, 1);
    const char *mr = it_rec_header(m1, "Dlq-Max-Retries");
    IT_CHECK(mr && strcmp(mr, "2") == 0, "Dlq-Max-Retries: %s", mr ? mr : "(none)");
    IT_CHECK(m1->at_mono - t_pub >= 200 - TICK_MS, "attempt 1 came %lld ms after the failure; want >= 190",
             (long long)(m1->at_mono - t_pub));
    IT_CHECK(m1->replied_mono > 0 && m2->at_mono - m1->replied_mono >= 500 - TICK_MS,
             "attempt 2 came %lld ms after attempt 1's failure; want >= 490",
             (long long)(m2->at_mono - m1->replied_mono));

    json_t *r = it_request_json(e->nc, "dlq.admin.classify", "{\"error\":\"x\",\"template\":\"quick\"}",
                                IT_REQUEST_MS);
    dump = it_json_dump(r);
    char *delays = json_dumps(json_object_get(r, "delays_ms"), JSON_COMPACT);
    IT_CHECK(it_json_str(r, "backoff_source") && strcmp(it_json_str(r, "backoff_source"), "template") == 0 &&
                 delays && strcmp(delays, "[200,500]") == 0 && it_json_int(r, "max_retries") == 2 &&
                 it_json_str(r, "priority") && strcmp(it_json_str(r, "priority"), "normal") == 0,
             "classify with template quick: want delays_ms [200,500] from the template: %s", dump);
    free(delays);
    free(dump);
    json_decref(r);

    it_unique_id("nope", id, sizeof id);
    snprintf(body, sizeof body,
             "{\"task_id\":\"%s\",\"task\":{},\"error\":\"busy\",\"template\":\"slow\"}", id);
    ack = it_request_json(e->nc, "dlq.failed.orders", body, IT_REQUEST_MS);
    dump = it_json_dump(ack);
    IT_CHECK(ack && !json_is_true(json_object_get(ack, "ok")) && strstr(dump, "template"),
             "unknown template: want a refusal naming the field, got %s", dump);
    free(dump);
    json_decref(ack);
    IT_CHECK(it_rec_wait(spy, 1, IT_WAIT_MS), "unknown template: nothing on dlq.invalid.orders");
    const char *reason = it_rec_header(it_rec_get(spy, 0), "Dlq-Invalid-Reason");
    const char *detail = it_rec_header(it_rec_get(spy, 0), "Dlq-Invalid-Detail");
    IT_CHECK(reason && strcmp(reason, "unknown_template") == 0, "reason %s", reason ? reason : "(none)");
    IT_CHECK(detail && strstr(detail, "template: 'slow'"), "detail %s", detail ? detail : "(none)");
    t = it_admin_get(e->nc, id);
    IT_CHECK(it_json_int(t, "error.code") == 404, "unknown template: want no task");
    json_decref(t);
    e->passed = true;
}


/*
 * 5. Priorities under retry.max_in_flight 10: with automatic retries paused,
 * ten failures of each priority (low first, high last) become due; on
 * resume the first ten retries on the wire are 6 high, 3 normal and 1 low
 * (the documented 6:3:1 share: low is not starved), then everything is
 * retried; stats count the dispatches per priority.
 */
static void
test_priority_share(void **state)
{
    static const char *const flags5[] = {"retry.max_in_flight=10", NULL};
    struct it_env *e = it_env_start("backoff-priority", flags5);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.orders", "workers", 64, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    json_t *r = it_request_json(e->nc, "dlq.admin.pause", "", IT_REQUEST_MS);
    json_decref(r);

    static const char *const prio[] = {"low", "normal", "high"};
    char run[32];
    it_unique_id("p", run, sizeof run);
    for (int p = 0; p < 3; p++) {
        for (int i = 0; i < 10; i++) {
            char body[256];
            snprintf(body, sizeof body,
                     "{\"task_id\":\"%s-%s-%d\",\"task\":{},\"error\":\"busy\","
                     "\"retry_policy\":\"immediate\",\"priority\":\"%s\"}",
                     run, prio[p], i, prio[p]);
            json_t *ack = it_request_json(e->nc, "dlq.failed.orders", body, IT_REQUEST_MS);
            char *dump = it_json_dump(ack);
            IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest: %s", dump);
            free(dump);
            json_decref(ack);
        }
    }
    json_t *st = it_admin_stats(e->nc);
    char *dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "retry_processor.priorities.low.scheduled") == 10 &&
                 it_json_int(st, "retry_processor.priorities.high.scheduled") == 10,
             "stats while paused: want 10 scheduled per priority: %s", dump);
    free(dump);
    json_decref(st);
    it_sleep_ms(100); /* every one of them due */
    r = it_request_json(e->nc, "dlq.admin.resume", "", IT_REQUEST_MS);
    json_decref(r);
    IT_CHECK(it_rec_wait(w, 30, IT_WAIT_MS), "want 30 retries, got %zu", it_rec_count(w));
    int first[3] = {0, 0, 0};
    for (size_t i = 0; i < 10; i++) {
        const char *id = it_rec_header(it_rec_get(w, i), "Dlq-Task-Id");
        for (int p = 0; p < 3; p++)
            if (id && strstr(id, prio[p]))
                first[p]++;
    }
    fprintf(stderr, "[priority] first 10 retries: high %d, normal %d, low %d\n", first[2], first[1],
            first[0]);
    IT_CHECK(first[2] == 6 && first[1] == 3 && first[0] == 1,
             "first 10 retries: want high 6, normal 3, low 1; got %d, %d, %d", first[2], first[1],
             first[0]);
    int64_t deadline = sc_now_mono_ms() + IT_WAIT_MS;
    for (;;) {
        st = it_admin_stats(e->nc);
        bool done = it_json_int(st, "retry_processor.priorities.high.dispatched") == 10 &&
                    it_json_int(st, "retry_processor.priorities.normal.dispatched") == 10 &&
                    it_json_int(st, "retry_processor.priorities.low.dispatched") == 10;
        dump = it_json_dump(st);
        json_decref(st);
        if (done || sc_now_mono_ms() >= deadline) {
            IT_CHECK(done, "stats: want 10 dispatched per priority: %s", dump);
            free(dump);
            break;
        }
        free(dump);
        it_sleep_ms(50);
    }
    char id[96], body[256];
    it_unique_id("badprio", id, sizeof id);
    snprintf(body, sizeof body, "{\"task_id\":\"%s\",\"task\":{},\"priority\":\"urgent\"}", id);
    json_t *ack = it_request_json(e->nc, "dlq.failed.orders", body, IT_REQUEST_MS);
    dump = it_json_dump(ack);
    IT_CHECK(ack && !json_is_true(json_object_get(ack, "ok")) && strstr(dump, "priority"),
             "priority urgent: want a refusal naming the field, got %s", dump);
    free(dump);
    json_decref(ack);
    json_t *t = it_admin_get(e->nc, id);
    IT_CHECK(it_json_int(t, "error.code") == 404, "priority urgent: want no task");
    json_decref(t);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_envelope_backoff_on_the_wire, it_teardown),
        cmocka_unit_test_teardown(test_classify_delays, it_teardown),
        cmocka_unit_test_teardown(test_bad_backoff_invalid, it_teardown),
        cmocka_unit_test_teardown(test_template, it_teardown),
        cmocka_unit_test_teardown(test_priority_share, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
