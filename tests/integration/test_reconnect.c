/* test_reconnect.c - integration: nats-server dies and comes back while retries are due. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define NTASKS 24

/* Per-task view of what the worker saw. */
struct seen {
    size_t msgs;          /* retry messages for the task */
    int attempts[64];     /* Dlq-Attempt values in arrival order */
    size_t distinct;      /* distinct Dlq-Attempt values */
    int max_attempt;
    size_t repeats;       /* arrivals whose attempt number was seen before */
    bool bad_header;      /* a missing or malformed Dlq-Attempt / Nats-Msg-Id */
};

/* collect() folds the worker's records for task id into *s. */
static void
collect(struct it_recorder *w, const char *id, struct seen *s)
{
    memset(s, 0, sizeof *s);
    size_t n = it_rec_count(w);
    for (size_t i = 0; i < n; i++) {
        const struct it_rec_msg *m = it_rec_get(w, i);
        const char *tid = it_rec_header(m, "Dlq-Task-Id");
        if (!tid || strcmp(tid, id) != 0)
            continue;
        const char *a = it_rec_header(m, "Dlq-Attempt");
        int att = a ? atoi(a) : 0;
        /* Nats-Msg-Id must be "<id>:<Dlq-Episode>:<attempt>" (DESIGN section 5). */
        const char *mid = it_rec_header(m, "Nats-Msg-Id"), *ep = it_rec_header(m, "Dlq-Episode");
        char want[2400];
        snprintf(want, sizeof want, "%.1100s:%.40s:%.40s", id, ep ? ep : "", a ? a : "");
        if (att < 1 || !mid || !ep || !*ep || strcmp(mid, want) != 0)
            s->bad_header = true;
        bool dup = false;
        size_t lim = s->msgs < SC_ARRAY_LEN(s->attempts) ? s->msgs : SC_ARRAY_LEN(s->attempts);
        for (size_t k = 0; k < lim; k++)
            dup = dup || s->attempts[k] == att;
        if (dup)
            s->repeats++;
        else
            s->distinct++;
        if (s->msgs < SC_ARRAY_LEN(s->attempts))
            s->attempts[s->msgs] = att;
        s->msgs++;
        if (att > s->max_attempt)
            s->max_attempt = att;
    }
}

/*
 * 9. The server is killed while NTASKS retries are due soon and restarted on
 * the same port outage_ms later. The daemon reconnects and every task
 * completes. What DESIGN implies about counting:
 *  - nothing exhausts and nothing is lost (no responders and a lost
 *    connection are deferrals, not attempts; max_retries stays untouched);
 *  - each task completes exactly once (lifetime retry_success == NTASKS);
 *  - an attempt is counted once: history holds each attempt number at most
 *    once among counted outcomes, and attempts are numbered without gaps,
 *    so the highest Dlq-Attempt the worker saw is the succeeding one:
 *    max_seen == retry_count + 1, and retry_count <= the distinct attempts
 *    the worker saw minus the succeeding one (attempts counted <= attempts
 *    seen: nothing was in flight when the server died, so no counted attempt
 *    can have been lost on the way);
 *  - a Dlq-Attempt value may reach the worker twice only when the first copy
 *    went out during the outage and the daemon could not know it was
 *    delivered; those repeats are reported, not failed.
 */
static void
run_restart(void **state, const char *name, const char *const *flags, int max_retries,
            int outage_ms)
{
    struct it_env *e = it_env_start(name, flags);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 4096, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});

    char ids[NTASKS][96];
    for (int i = 0; i < NTASKS; i++) {
        it_unique_id("rc", ids[i], sizeof ids[i]);
        struct it_envelope env;
        it_envelope_init(&env);
        env.task_id = ids[i];
        env.error = "connection reset by peer";
        env.retry_policy = "exponential";
        env.max_retries = max_retries;
        json_t *ack = it_request_envelope(e->nc, "dlq.failed.restart", &env);
        char *dump = it_json_dump(ack);
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack %d: %s", i, dump);
        free(dump);
        json_decref(ack);
    }
    IT_CHECK(it_rec_count(w) == 0, "a retry went out before the server was killed (%zu): the test's "
             "timing assumption broke", it_rec_count(w));

    int64_t t_kill = sc_now_mono_ms();
    it_server_stop(&e->srv, SIGKILL);
    it_sleep_ms(outage_ms);
    IT_CHECK(it_server_restart(&e->srv) == 0, "nats-server did not restart on port %d",
             e->srv.port);
    fprintf(stderr, "[%s] server down for %lld ms\n", name, (long long)(sc_now_mono_ms() - t_kill));

    /* Everything completes. */
    int64_t deadline = sc_now_mono_ms() + 60000;
    int done = 0;
    while (sc_now_mono_ms() < deadline) {
        int terminal = 0;
        done = 0;
        for (int i = 0; i < NTASKS; i++) {
            char st[32];
            it_task_status(e->nc, ids[i], st, sizeof st);
            done += strcmp(st, "completed") == 0;
            terminal += strcmp(st, "completed") == 0 || strcmp(st, "exhausted") == 0;
        }
        if (terminal == NTASKS)
            break;
        it_sleep_ms(200);
    }
    IT_CHECK(it_daemon_alive(&e->dmn), "the daemon died across the restart");

    json_t *health = it_request_json(e->nc, "dlq.admin.health", "", IT_REQUEST_MS);
    char *dump = it_json_dump(health);
    fprintf(stderr, "[%s] health: %s\n", name, dump);
    IT_CHECK(it_json_str(health, "status") && strcmp(it_json_str(health, "status"), "ok") == 0,
             "health after the restart: %s", dump);
    free(dump);
    json_decref(health);

    /* Look at every task, print every violation, then fail once. */
    size_t total_repeats = 0, violations = 0;
    for (int i = 0; i < NTASKS; i++) {
        json_t *t = it_admin_get(e->nc, ids[i]);
        dump = it_json_dump(t);
        struct seen s;
        collect(w, ids[i], &s);
        const char *st = it_json_str(t, "status");
        int64_t rc = it_json_int(t, "retry_count");
        fprintf(stderr, "[%s] %s: status %s retry_count %lld, worker saw %zu message(s), attempts",
                name, ids[i], st ? st : "?", (long long)rc, s.msgs);
        for (size_t k = 0; k < s.msgs && k < SC_ARRAY_LEN(s.attempts); k++)
            fprintf(stderr, " %d", s.attempts[k]);
        fprintf(stderr, "\n");
        size_t before = violations;
        if (!st || strcmp(st, "completed") != 0) {
            fprintf(stderr, "  VIOLATION: want completed after the restart, got %s\n", st ? st : "?");
            violations++;
        }
        if (s.msgs == 0) {
            fprintf(stderr, "  VIOLATION: the worker never saw this task\n");
            violations++;
        }
        if (s.bad_header) {
            fprintf(stderr, "  VIOLATION: a retry had a bad Dlq-Attempt / Nats-Msg-Id\n");
            violations++;
        }
        if (st && strcmp(st, "completed") == 0 && s.max_attempt != rc + 1) {
            fprintf(stderr, "  VIOLATION: the succeeding attempt is retry_count+1 = %lld, but the "
                            "highest Dlq-Attempt the worker saw is %d\n",
                    (long long)(rc + 1), s.max_attempt);
            violations++;
        }
        int64_t seen_failed = st && strcmp(st, "completed") == 0 ? (int64_t)s.distinct - 1
                                                                  : (int64_t)s.distinct;
        if (rc > seen_failed) {
            fprintf(stderr, "  VIOLATION: %lld failed attempt(s) counted, but the worker saw only "
                            "%zu distinct attempt(s)%s\n",
                    (long long)rc, s.distinct,
                    seen_failed < (int64_t)s.distinct ? " including the succeeding one" : "");
            violations++;
        }
        /* History: counted outcomes at most once per attempt number. */
        json_t *h = json_object_get(t, "history");
        size_t k;
        json_t *ent;
        int counted[128] = {0};
        json_array_foreach(h, k, ent) {
            const char *o = it_json_str(ent, "outcome");
            int64_t a = it_json_int(ent, "attempt");
            if (!o || a < 1 || a >= 128)
                continue;
            if (strcmp(o, "retry_failed") == 0 || strcmp(o, "timeout") == 0 ||
                strcmp(o, "succeeded") == 0)
                counted[a]++;
        }
        for (int a = 1; a < 128; a++) {
            if (counted[a] > 1) {
                fprintf(stderr, "  VIOLATION: attempt %d counted %d times in history\n", a,
                        counted[a]);
                violations++;
            }
        }
        if (violations != before)
            fprintf(stderr, "  task: %s\n", dump);
        total_repeats += s.repeats;
        free(dump);
        json_decref(t);
    }
    if (total_repeats)
        fprintf(stderr, "[%s] note: %zu retry message(s) reached the worker twice with the "
                        "same Dlq-Attempt (sent during the outage)\n", name, total_repeats);
    IT_CHECK(violations == 0, "%zu violation(s) listed above; %d of %d tasks completed", violations,
             done, NTASKS);

    json_t *st = it_admin_stats(e->nc);
    dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "lifetime_stats.exhausted") == 0, "nothing may exhaust: %s", dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.retry_success") == NTASKS,
             "lifetime retry_success: want %d (each task completes once): %s", NTASKS, dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.enqueued") == NTASKS, "lifetime enqueued: want %d: %s",
             NTASKS, dump);
    free(dump);
    json_decref(st);
    e->passed = true;
}

/*
 * 9a. The case: retries 1-2 s out (backoff 1250 ms +-60 %: due
 * 0.5-2 s after ingest), the server down for 1 s, max_retries 3. About a
 * third fall due during the outage, some during the reconnect, the rest
 * after. The retry timeout (3 s) is longer than the outage: a retry
 * published while disconnected waits in the client's reconnect buffer and is
 * delivered (or meets no responders) once the daemon is back.
 */
static void
test_server_restart(void **state)
{
    const char *flags[] = {"backoff.exp_base_ms=1250", "backoff.jitter=0.6",
                           "retry.timeout_ms=3000", "nats.reconnect_wait_ms=100", NULL};
    run_restart(state, "restart", flags, 3, 1000);
}

/*
 * 9b. The retry timeout (300 ms) is shorter than the outage (1.5 s), every
 * retry falls due during it (0.3-0.9 s after ingest) and max_retries is 1.
 * While the daemon has no server no worker can be reached: DESIGN section 6
 * makes an unreachable worker a deferral, never a counted attempt, "so that
 * tasks do not exhaust while no worker runs", and section 11 loses nothing
 * while the process lives. So the same invariants hold: every task
 * completes, none exhausts, attempts counted <= attempts the worker saw.
 */
static void
test_server_restart_short_timeout(void **state)
{
    const char *flags[] = {"backoff.exp_base_ms=600", "backoff.jitter=0.5",
                           "retry.timeout_ms=300", "nats.reconnect_wait_ms=100", NULL};
    run_restart(state, "restart-short", flags, 1, 1500);
}

/* file_has() tells whether the file at path contains needle. */
static bool
file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    bool found = false;

    if (!f)
        return false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/*
 * 9c. The server cuts the sidecar as a slow consumer in the middle of a
 * flood (the sidecar is stopped with SIGSTOP, the server's write deadline is
 * 1 s), three times. After each reconnect, nothing of the old connection's
 * half-read message may be glued onto the new one's first bytes: nats.c's
 * event-loop adapters keep the protocol parser across a reconnect (nats.c
 * issue 1007), which turned the next failure into an "invalid" message and
 * lost it, and left the shutdown drain hanging. Every request after the
 * reconnect is acknowledged, no message is invalid, and SIGTERM drains.
 */
static void
test_slow_consumer_cut(void **state)
{
    const char *flags[] = {"nats.reconnect_wait_ms=100", "events.enabled=false",
                           "max_size=1000000", "log.level=info", NULL};
    struct it_env *e = it_env_start("slowcut", flags);
    assert_non_null(e);
    *state = e;
    char conf[IT_PATH_MAX + 32];
    snprintf(conf, sizeof conf, "%s/short-deadline.conf", e->dir);
    FILE *cf = fopen(conf, "w");
    assert_non_null(cf);
    fprintf(cf, "write_deadline: \"1s\"\n");
    fclose(cf);
    it_server_stop(&e->srv, SIGTERM);
    IT_CHECK(it_server_start_conf(&e->srv, e->dir, conf) == 0, "restart nats-server with a 1 s write deadline");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0, "the sidecar is back after the restart");
    natsConnection *pub = it_env_connect(e, "it-flood");
    assert_non_null(pub);

    for (int round = 0; round < 3; round++) {
        char body[160];
        IT_CHECK(kill(e->dmn.pid, SIGSTOP) == 0, "SIGSTOP the sidecar");
        for (int i = 0; i < 60000; i++) {
            int n = snprintf(body, sizeof body,
                             "{\"task_id\":\"r%d-f%d\",\"task\":{\"n\":%d},\"error\":\"connection refused\"}",
                             round, i, i);
            natsConnection_Publish(pub, "dlq.failed.slow", body, n);
        }
        natsConnection_Flush(pub);
        bool cut = false;
        for (int k = 0; k < 150 && !cut; k++) {
            it_sleep_ms(100);
            cut = file_has(e->srv.log, "Slow Consumer");
        }
        IT_CHECK(kill(e->dmn.pid, SIGCONT) == 0, "SIGCONT the sidecar");
        IT_CHECK(cut, "round %d: the server never cut the stopped sidecar", round);
        IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0, "round %d: not ready again", round);
        for (int i = 0; i < 8; i++) {
            int n = snprintf(body, sizeof body,
                             "{\"task_id\":\"after-%d-%d\",\"task\":{},\"error\":\"connection refused\"}",
                             round, i);
            json_t *ack = NULL;
            for (int t = 0; t < 5 && !ack; t++) /* the first may meet the reconnect itself */
                ack = it_request_bytes(e->nc, "dlq.failed.slow", body, (size_t)n, 2000);
            IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "round %d: after-%d not acknowledged",
                     round, i);
            json_decref(ack);
        }
        /* Truncate the server log's memory of this round: the next round looks for a new cut. */
        FILE *lf = fopen(e->srv.log, "w");
        if (lf)
            fclose(lf);
    }
    json_t *st = it_admin_stats(e->nc);
    long long invalid = it_json_int(st, "lifetime_stats.invalid");
    json_decref(st);
    IT_CHECK(invalid == 0, "%lld messages were invalid: bytes of two connections were glued together", invalid);
    IT_CHECK(!file_has(e->dmn.log, "invalid failure envelope"), "the sidecar logged an invalid envelope");
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "SIGTERM after the cuts: exit %d", e->dmn.exit_status);
    IT_CHECK(file_has(e->dmn.log, "drained=true"), "the shutdown drain did not complete");
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_server_restart, it_teardown),
        cmocka_unit_test_teardown(test_server_restart_short_timeout, it_teardown),
        cmocka_unit_test_teardown(test_slow_consumer_cut, it_teardown),
    };
    return cmocka_run_group_tests_name("integration_reconnect", tests, NULL, NULL);
}
