/* test_people.c - integration: the admin API and dlqctl for people who debug failures: last errors in list (cut at 200 bytes on a UTF-8 boundary), fingerprint groups, the group filter and dry runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"

#ifndef DLQCTL_BIN
#error "DLQCTL_BIN must name the dlqctl binary (set by tests/integration/CMakeLists.txt)"
#endif

#define ERR_A "timeout after 30s on 10.0.0.7:5432 (req 9f3a1c0e)"
#define ERR_B "timeout after 45s on 10.0.0.9:5432 (req 77b1d2aa)"
#define ERR_C "connection refused by 10.0.0.7"

/* ingest() sends one failure envelope on dlq.failed.<service> as a request and asserts the ack. */
static void
ingest(natsConnection *nc, const char *service, const char *id, const char *error)
{
    char subj[128];
    struct it_envelope env;

    it_envelope_init(&env);
    env.task_id = id;
    env.error = error;
    snprintf(subj, sizeof subj, "dlq.failed.%s", service);
    json_t *ack = it_request_envelope(nc, subj, &env);
    char *dump = it_json_dump(ack);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest of %s: %s", id, dump);
    free(dump);
    json_decref(ack);
}

/* admin() asks dlq.admin.<verb> with body and returns the JSON answer (never NULL: fails the test). */
static json_t *
admin(natsConnection *nc, const char *verb, const char *body)
{
    char subj[64];
    snprintf(subj, sizeof subj, "dlq.admin.%s", verb);
    json_t *j = it_request_json(nc, subj, body, IT_WAIT_MS);
    IT_CHECK(j != NULL, "%s %s: no JSON answer", verb, body);
    return j;
}

/* The task of a list answer with this id, or NULL. */
static const json_t *
task_in(const json_t *list, const char *id)
{
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(list, "tasks"), i, t)
        if (strcmp(it_json_str(t, "task_id"), id) == 0)
            return t;
    return NULL;
}

/* error_400() asserts that verb refuses body with 400 and a message naming key. */
static void
error_400(natsConnection *nc, const char *verb, const char *body, const char *key)
{
    json_t *j = admin(nc, verb, body);
    const char *msg = it_json_str(j, "error.message");
    IT_CHECK(it_json_int(j, "error.code") == 400 && msg && strncmp(msg, key, strlen(key)) == 0,
             "%s %s: want 400 naming %s, got %s", verb, body, key, it_json_dump(j));
    json_decref(j);
}

/*
 * dlqctl() runs the built dlqctl with args (a shell-safe string) against url,
 * stdout and stderr into out (reset); returns its exit status.
 */
static int
dlqctl(const char *url, const char *args, struct sc_buf *out)
{
    char cmd[1024];
    char buf[4096];
    size_t n;

    snprintf(cmd, sizeof cmd, "COLUMNS=200 '%s' --server '%s' %s 2>&1", DLQCTL_BIN, url, args);
    sc_buf_reset(out);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        sc_buf_append(out, buf, n);
    sc_buf_append(out, "", 1);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_people(void **state)
{
    /* a first automatic retry an hour away: only the operator's retries reach the worker */
    static const char *const extra[] = {"backoff.exp_base_ms=3600000", NULL};
    struct it_env *e = it_env_start("people", extra);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 64, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});

    /* 300 bytes: 199 'x', then a 2-byte 'é' over bytes 199-200, then 99 'y' */
    char long_err[400];
    memset(long_err, 'x', 199);
    memcpy(long_err + 199, "\xc3\xa9", 2);
    memset(long_err + 201, 'y', 99);
    long_err[300] = '\0';
    ingest(e->nc, "orders", "p-1", ERR_A);
    ingest(e->nc, "orders", "p-2", ERR_B);
    ingest(e->nc, "orders", "p-3", ERR_C);
    ingest(e->nc, "billing", "p-4", long_err);

    /* errors in list: whole when short, cut on a character boundary when long */
    json_t *list = admin(e->nc, "list", "{}");
    const json_t *t1 = task_in(list, "p-1"), *t2 = task_in(list, "p-2"), *t3 = task_in(list, "p-3"),
                 *t4 = task_in(list, "p-4");
    IT_CHECK(t1 && t2 && t3 && t4, "four tasks: %s", it_json_dump(list));
    IT_CHECK(strcmp(it_json_str(t1, "error"), ERR_A) == 0 &&
                 json_is_false(json_object_get(t1, "error_truncated")),
             "p-1's error whole: %s", it_json_dump(t1));
    IT_CHECK(strlen(it_json_str(t4, "error")) == 199 && json_is_true(json_object_get(t4, "error_truncated")) &&
                 strncmp(it_json_str(t4, "error"), long_err, 199) == 0,
             "p-4's error cut before the 'é' (199 bytes): %s", it_json_dump(t4));
    const char *g1 = it_json_str(t1, "group"), *g3 = it_json_str(t3, "group");
    IT_CHECK(g1 && strlen(g1) == 16 && strspn(g1, "0123456789abcdef") == 16, "group: %s", it_json_dump(t1));
    IT_CHECK(strcmp(g1, it_json_str(t2, "group")) == 0, "p-1 and p-2 (numbers differ) share a group");
    IT_CHECK(strcmp(g1, g3) != 0, "p-3 (other words) is in another group");
    char group[17], other[17];
    snprintf(group, sizeof group, "%s", g1);
    snprintf(other, sizeof other, "%s", g3);
    json_decref(list);

    /* get: the whole error, and the same group */
    json_t *got = admin(e->nc, "get", "{\"task_id\":\"p-4\"}");
    IT_CHECK(strcmp(it_json_str(got, "error"), long_err) == 0 && json_is_false(json_object_get(got, "error_truncated")),
             "get shows the whole error");
    json_decref(got);

    /* groups: largest first, with counts, an example error and times */
    json_t *gs = admin(e->nc, "groups", "{}");
    const json_t *first = json_array_get(json_object_get(gs, "groups"), 0);
    IT_CHECK(json_array_size(json_object_get(gs, "groups")) == 3, "three groups: %s", it_json_dump(gs));
    IT_CHECK(first && strcmp(it_json_str(first, "group"), group) == 0 && it_json_int(first, "count") == 2 &&
                 strcmp(it_json_str(first, "subject"), "dlq.failed.orders") == 0 &&
                 strncmp(it_json_str(first, "error"), "timeout after", 13) == 0 &&
                 it_json_str(first, "category") && it_json_str(first, "first_seen") &&
                 it_json_str(first, "last_seen"),
             "the timeout group first, count 2: %s", it_json_dump(gs));
    json_decref(gs);
    gs = admin(e->nc, "groups", "{\"subject\":\"dlq.failed.billing\",\"limit\":5}");
    IT_CHECK(json_array_size(json_object_get(gs, "groups")) == 1 &&
                 strlen(it_json_str(json_array_get(json_object_get(gs, "groups"), 0), "error")) == 199,
             "groups by subject, the example error cut: %s", it_json_dump(gs));
    json_decref(gs);
    gs = admin(e->nc, "groups", "{\"limit\":1}");
    IT_CHECK(json_array_size(json_object_get(gs, "groups")) == 1, "limit 1");
    json_decref(gs);

    /* the group filter on list, checked like every filter key */
    char body[256];
    snprintf(body, sizeof body, "{\"group\":\"%s\"}", group);
    list = admin(e->nc, "list", body);
    IT_CHECK(it_json_int(list, "total") == 2 && task_in(list, "p-1") && task_in(list, "p-2"),
             "list by group: %s", it_json_dump(list));
    json_decref(list);
    error_400(e->nc, "list", "{\"group\":\"xyz\"}", "group");
    error_400(e->nc, "list", "{\"group\":12}", "group");
    error_400(e->nc, "groups", "{\"group\":\"0123456789abcdefa\"}", "group");
    error_400(e->nc, "retry", "{\"group\":\"zz23456789abcdef\"}", "group");
    error_400(e->nc, "groups", "{\"limit\":0}", "limit");
    error_400(e->nc, "groups", "{\"task_id\":\"p-1\"}", "unknown key");
    error_400(e->nc, "retry", "{\"all\":true,\"dry_run\":1}", "dry_run");

    /* dry runs: the count, and nothing changes */
    json_t *before = admin(e->nc, "stats", "");
    snprintf(body, sizeof body, "{\"group\":\"%s\",\"dry_run\":true}", group);
    json_t *dr = admin(e->nc, "retry", body);
    IT_CHECK(json_is_true(json_object_get(dr, "dry_run")) && it_json_int(dr, "matched") == 2,
             "retry dry run: %s", it_json_dump(dr));
    json_decref(dr);
    snprintf(body, sizeof body, "{\"group\":\"%s\",\"dry_run\":true,\"rate\":5}", group);
    dr = admin(e->nc, "retry", body);
    IT_CHECK(it_json_int(dr, "matched") == 2 && !json_object_get(dr, "background"),
             "a redrive's dry run starts nothing: %s", it_json_dump(dr));
    json_decref(dr);
    dr = admin(e->nc, "retry", "{\"task_id\":\"p-3\",\"dry_run\":true}");
    IT_CHECK(it_json_int(dr, "matched") == 1 && strcmp(it_json_str(dr, "task_id"), "p-3") == 0,
             "one task's dry run: %s", it_json_dump(dr));
    json_decref(dr);
    snprintf(body, sizeof body, "{\"group\":\"%s\",\"dry_run\":true}", other);
    dr = admin(e->nc, "archive", body);
    IT_CHECK(it_json_int(dr, "matched") == 1, "archive dry run: %s", it_json_dump(dr));
    json_decref(dr);
    dr = admin(e->nc, "clear", "{\"all\":true,\"dry_run\":true}");
    IT_CHECK(json_is_true(json_object_get(dr, "dry_run")) && it_json_int(dr, "matched") == 4,
             "clear's dry run needs no confirm: %s", it_json_dump(dr));
    json_decref(dr);
    error_400(e->nc, "clear", "{\"dry_run\":true}", "clear: an empty filter");

    /* dlqctl: the ERROR column, relative times, groups, --group and --dry-run */
    struct sc_buf out;
    sc_buf_init(&out, 1 << 20);
    const char *url = e->srv.url;
    IT_CHECK(dlqctl(url, "list", &out) == 0, "dlqctl list: %s", out.data);
    IT_CHECK(strstr(out.data, "ERROR") && strstr(out.data, "timeout after 30s on 10.0.0.7:5432") &&
                 (strstr(out.data, " ago") || strstr(out.data, "  now  ")) && strstr(out.data, "  in "),
             "list table with errors and relative times: %s", out.data);
    IT_CHECK(strstr(out.data, "xxxx\xe2\x80\xa6"), "the cut error ends in an ellipsis: %s", out.data);
    IT_CHECK(dlqctl(url, "groups", &out) == 0, "dlqctl groups: %s", out.data);
    IT_CHECK(strstr(out.data, "COUNT") && strstr(out.data, "LAST-SEEN") && strstr(out.data, "ERROR") &&
                 strstr(out.data, group) && strstr(out.data, "3 groups"),
             "groups table: %s", out.data);
    IT_CHECK(dlqctl(url, "groups --json --subject dlq.failed.orders", &out) == 0, "%s", out.data);
    json_t *j = json_loads(out.data, 0, NULL);
    IT_CHECK(json_array_size(json_object_get(j, "groups")) == 2, "groups --json: %s", out.data);
    json_decref(j);
    snprintf(body, sizeof body, "list --json --group %s", group);
    IT_CHECK(dlqctl(url, body, &out) == 0, "%s", out.data);
    j = json_loads(out.data, 0, NULL);
    IT_CHECK(it_json_int(j, "total") == 2 && strchr(it_json_str(json_array_get(json_object_get(j, "tasks"), 0),
                                                                "created_at"), 'T'),
             "list --group --json keeps RFC 3339 times: %s", out.data);
    json_decref(j);
    snprintf(body, sizeof body, "retry --dry-run --group %s --json", group);
    IT_CHECK(dlqctl(url, body, &out) == 0, "%s", out.data);
    j = json_loads(out.data, 0, NULL);
    IT_CHECK(it_json_int(j, "matched") == 2, "retry --dry-run: %s", out.data);
    json_decref(j);
    IT_CHECK(dlqctl(url, "clear --all --dry-run", &out) == 0 && strstr(out.data, "matched"),
             "clear --dry-run: %s", out.data);
    IT_CHECK(dlqctl(url, "list --group nothex", &out) == 2, "a bad --group is a usage error: %s", out.data);

    /* nothing changed: no retry reached the worker, the counts are the same */
    it_sleep_ms(300);
    IT_CHECK(it_rec_count(w) == 0, "dry runs sent %zu retries", it_rec_count(w));
    json_t *after = admin(e->nc, "stats", "");
    IT_CHECK(json_equal(json_object_get(before, "status_breakdown"), json_object_get(after, "status_breakdown")) &&
                 it_json_int(before, "queue_size") == 4 && it_json_int(after, "queue_size") == 4,
             "stats unchanged: %s / %s", it_json_dump(before), it_json_dump(after));
    json_decref(before);
    json_decref(after);

    /* the group filter on retry: both tasks of the group, and only them */
    snprintf(body, sizeof body, "{\"group\":\"%s\"}", group);
    dr = admin(e->nc, "retry", body);
    IT_CHECK(it_json_int(dr, "scheduled") == 2, "retry by group: %s", it_json_dump(dr));
    json_decref(dr);
    IT_CHECK(it_rec_wait(w, 2, 10000), "the worker saw %zu of 2", it_rec_count(w));
    it_sleep_ms(200);
    IT_CHECK(it_rec_count(w) == 2, "only the group's two tasks: %zu", it_rec_count(w));
    for (size_t i = 0; i < it_rec_count(w); i++)
        IT_CHECK(strcmp(it_rec_get(w, i)->subject, "dlq.retry.orders") == 0, "retry subject %s",
                 it_rec_get(w, i)->subject);
    sc_buf_destroy(&out);
    e->passed = true;
}

/*
 * The group survives a restart from the store (store.backend jetstream, a
 * KV bucket): the fingerprint is worked out again when the tasks load, so
 * the group ids and the group filter are the same before and after.
 */
static void
test_group_after_restart(void **state)
{
    static const char *const flags[] = {"store.backend=jetstream", "backoff.exp_base_ms=3600000", NULL};
    struct it_env *e = it_env_start_js("people-restart", flags);
    assert_non_null(e);
    *state = e;
    ingest(e->nc, "orders", "r-1", ERR_A);
    ingest(e->nc, "orders", "r-2", ERR_B);
    ingest(e->nc, "orders", "r-3", ERR_C);
    json_t *before = admin(e->nc, "groups", "{}");
    IT_CHECK(json_array_size(json_object_get(before, "groups")) == 2, "two groups: %s", it_json_dump(before));
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "clean stop");
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0, "daemon restart");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, 60000) == 0, "ready after the restart");
    json_t *st = admin(e->nc, "stats", "");
    IT_CHECK(it_json_int(st, "queue_size") == 3, "the three tasks are back: %s", it_json_dump(st));
    json_decref(st);
    json_t *after = admin(e->nc, "groups", "{}");
    const json_t *g0 = json_array_get(json_object_get(before, "groups"), 0);
    const json_t *g1 = json_array_get(json_object_get(before, "groups"), 1);
    const json_t *h0 = json_array_get(json_object_get(after, "groups"), 0);
    const json_t *h1 = json_array_get(json_object_get(after, "groups"), 1);
    IT_CHECK(json_array_size(json_object_get(after, "groups")) == 2 && h0 && h1 &&
                 strcmp(it_json_str(g0, "group"), it_json_str(h0, "group")) == 0 && it_json_int(h0, "count") == 2 &&
                 strcmp(it_json_str(g1, "group"), it_json_str(h1, "group")) == 0,
             "the same groups after the restart:\n  before %s\n  after  %s", it_json_dump(before),
             it_json_dump(after));
    char body[64];
    snprintf(body, sizeof body, "{\"group\":\"%s\"}", it_json_str(g0, "group"));
    json_t *list = admin(e->nc, "list", body);
    IT_CHECK(it_json_int(list, "total") == 2 && task_in(list, "r-1") && task_in(list, "r-2"),
             "the group filter after the restart: %s", it_json_dump(list));
    json_decref(list);
    json_decref(before);
    json_decref(after);
    e->passed = true;
}

/* With "jetstream": the restart from a KV bucket (needs JetStream); else the rest. */
int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_people, it_teardown),
    };
    const struct CMUnitTest js[] = {
        cmocka_unit_test_teardown(test_group_after_restart, it_teardown),
    };

    if (argc > 1 && !strcmp(argv[1], "jetstream"))
        return cmocka_run_group_tests_name("integration_people_jetstream", js, NULL, NULL);
    return cmocka_run_group_tests_name("integration_people", tests, NULL, NULL);
}
