/* test_clockorder.c - integration: a task's times never go back when its failure shares a hand-off batch with a slow admin verb (the held clock). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define FILLER 100000 /* tasks that make a full scan of the queue take milliseconds */

/* publish_request() publishes body on subject with a reply inbox nobody reads (the answer is not needed). */
static void
publish_request(natsConnection *nc, const char *subject, const char *body)
{
    assert_int_equal(natsConnection_PublishRequestString(nc, subject, "_INBOX.clockorder.none", body),
                     NATS_OK);
}

/*
 * A failure of task X handled in the same hand-off batch as, and after, a
 * slow admin verb and an operator's retry of X: the retry is stamped with
 * the clock of its moment, so the failure behind it must not be stamped
 * with the older reading taken when the batch began. X's history stays in
 * time order and its updated_at is not older than its last entry.
 */
static void
test_failure_behind_slow_verb(void **state)
{
    const char *flags[] = {"backoff.exp_base_ms=600000", "max_size=1000000", NULL};
    struct it_env *e = it_env_start("clockorder", flags);
    assert_non_null(e);
    *state = e;

    char id[96];
    struct it_envelope env;
    it_envelope_init(&env);
    env.error = "filler";
    for (int i = 0; i < FILLER; i++) {
        snprintf(id, sizeof id, "filler-%d", i);
        env.task_id = id;
        assert_int_equal(it_publish_envelope(e->nc, "dlq.failed.clockorder", &env), 0);
    }
    it_unique_id("x", id, sizeof id);
    env.task_id = id;
    env.error = "first failure";
    json_t *ack = it_request_envelope(e->nc, "dlq.failed.clockorder", &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack of X's first failure");
    json_decref(ack);

    int bad = 0;
    for (int round = 0; round < 30 && !bad; round++) {
        char body[160];
        /*
         * Full scans (a filter nothing matches) keep the loop busy while the
         * next ones, the retry of X and X's failure pile up in the ring:
         * one batch takes [scan, retry X, failure X].
         */
        for (int i = 0; i < 4; i++)
            publish_request(e->nc, "dlq.admin.list", "{\"subject\":\"nothing.matches\"}");
        snprintf(body, sizeof body, "{\"task_id\":\"%s\"}", id);
        publish_request(e->nc, "dlq.admin.retry", body);
        assert_int_equal(natsConnection_Flush(e->nc), NATS_OK);
        it_sleep_ms(2);
        env.error = "failure behind the scans";
        assert_int_equal(it_publish_envelope(e->nc, "dlq.failed.clockorder", &env), 0);
        assert_int_equal(natsConnection_Flush(e->nc), NATS_OK);
        ack = it_request_envelope(e->nc, "dlq.failed.clockorder", &env); /* after the one above */
        json_decref(ack);

        json_t *got = it_admin_get(e->nc, id);
        const json_t *hist = it_json_get(got, "history");
        const char *updated = it_json_str(got, "updated_at");
        IT_CHECK(json_is_array(hist) && json_array_size(hist) > 1 && updated, "get %s", id);
        const char *prev = "";
        for (size_t i = 0; i < json_array_size(hist); i++) {
            const char *at = it_json_str(json_array_get(hist, i), "at");
            if (!at)
                continue;
            if (strcmp(at, prev) < 0 || strcmp(at, updated) > 0) {
                char *dump = it_json_dump(hist);
                fprintf(stderr, "[clockorder] round %d: entry %zu at %s after %s (updated_at %s): %s\n",
                        round, i, at, prev, updated, dump);
                free(dump);
                bad++;
                break;
            }
            prev = at;
        }
        json_decref(got);
    }
    IT_CHECK(bad == 0, "X's history went back in time (see above)");
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_failure_behind_slow_verb, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
