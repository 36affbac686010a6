/* test_hostile.c - integration: attacks found by the red team stay fixed (forged replies, memory caps, oversized tasks and replies, NUL bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "harness.h"

/* Packs {"task_id":id,"task":<bin of task_len bytes of fill>,"error":<err_len bytes>} into out. */
static void
pack_envelope(struct sc_buf *out, const char *id, size_t task_len, char fill, const char *err,
              size_t err_len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char *task = malloc(task_len ? task_len : 1);

    memset(task, fill, task_len);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "task_id", 7);
    msgpack_pack_str_with_body(&pk, id, strlen(id));
    msgpack_pack_str_with_body(&pk, "task", 4);
    if (fill == 'S')
        msgpack_pack_str_with_body(&pk, task, task_len);
    else
        msgpack_pack_bin_with_body(&pk, task, task_len);
    msgpack_pack_str_with_body(&pk, "error", 5);
    msgpack_pack_str_with_body(&pk, err, err_len);
    sc_buf_reset(out);
    sc_buf_append(out, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    free(task);
}

/*
 * A third party who saw one retry's reply subject guesses others: slots 0-31
 * with small counters and random tokens. No forged reply may complete a
 * task; the real worker's reply still does.
 */
static void
test_forged_replies(void **state)
{
    const char *flags[] = {"retry.timeout_ms=20000", NULL};
    struct it_env *e = it_env_start("forged", flags);
    assert_non_null(e);
    *state = e;

    struct it_recorder *worker = it_env_recorder(e, e->nc, "dlq.retry.victim", NULL, 64, false);
    assert_non_null(worker);
    it_recorder_set_plan(worker, NULL, 0, (struct it_step){IT_ACT_SILENT, NULL, NULL});
    char ids[8][96];
    struct it_envelope env;
    for (int i = 0; i < 8; i++) {
        it_unique_id("victim", ids[i], sizeof ids[i]);
        it_envelope_init(&env);
        env.task_id = ids[i];
        env.error = "connection refused";
        env.retry_policy = "immediate";
        json_t *ack = it_request_envelope(e->nc, "dlq.failed.victim", &env);
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest of %s", ids[i]);
        json_decref(ack);
    }
    IT_CHECK(it_rec_wait(worker, 8, IT_WAIT_MS), "the 8 retries reach the silent worker");

    /* The attacker knows the inbox prefix from one retry's reply subject. */
    const struct it_rec_msg *first = it_rec_get(worker, 0);
    IT_CHECK(first->reply != NULL, "retries carry a reply subject");
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s", first->reply);
    char *dot = strrchr(prefix, '.');
    assert_non_null(dot);
    *dot = '\0';
    dot = strrchr(prefix, '.');
    assert_non_null(dot);
    *dot = '\0';
    natsConnection *attacker = it_env_connect(e, "attacker");
    assert_non_null(attacker);
    char subj[512];
    int sent = 0;
    for (int slot = 0; slot < 32; slot++) {
        for (int guess = 0; guess < 64; guess++) {
            snprintf(subj, sizeof subj, "%s.%d.%d", prefix, slot, guess);
            natsConnection_PublishString(attacker, subj, "{\"ok\":true}");
            snprintf(subj, sizeof subj, "%s.%d.%016llx", prefix, slot,
                     (unsigned long long)guess * 0x9e3779b97f4a7c15ULL);
            natsConnection_PublishString(attacker, subj, "{\"ok\":true}");
            sent += 2;
        }
    }
    assert_int_equal(natsConnection_FlushTimeout(attacker, 5000), NATS_OK);
    it_sleep_ms(500);
    for (int i = 0; i < 8; i++) {
        char status[32];
        it_task_status(e->nc, ids[i], status, sizeof status);
        IT_CHECK(strcmp(status, "retrying") == 0, "%s after %d forged replies: %s (want retrying)",
                 ids[i], sent, status);
    }
    json_t *st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "lifetime_stats.retry_success") == 0, "no success was forged");
    json_decref(st);

    /* The real reply subject still works. */
    for (size_t i = 0; i < 8; i++) {
        const struct it_rec_msg *m = it_rec_get(worker, i);
        natsConnection_PublishString(e->nc, m->reply, "{\"ok\":true}");
    }
    natsConnection_FlushTimeout(e->nc, 5000);
    st = it_admin_stats(e->nc);
    for (int k = 0; k < 100 && it_json_int(st, "lifetime_stats.retry_success") < 8; k++) {
        json_decref(st);
        it_sleep_ms(100);
        st = it_admin_stats(e->nc);
    }
    IT_CHECK(it_json_int(st, "lifetime_stats.retry_success") == 8, "the 8 real replies complete");
    json_decref(st);
    e->passed = true;
}

/* max_bytes bounds memory whatever the task sizes: past it, failures get 503 and nothing is stored. */
static void
test_max_bytes(void **state)
{
    const char *flags[] = {"max_bytes=1048576", "backoff.exp_base_ms=600000", NULL};
    struct it_env *e = it_env_start("maxbytes", flags);
    assert_non_null(e);
    *state = e;

    struct sc_buf b;
    sc_buf_init(&b, 1 << 20);
    int accepted = 0, refused = 0;
    for (int i = 0; i < 30; i++) {
        char id[96];
        it_unique_id("big", id, sizeof id);
        pack_envelope(&b, id, 100 * 1024, 'x', "connection refused", 18);
        json_t *ack = it_request_bytes(e->nc, "dlq.failed.big", b.data, b.len, IT_REQUEST_MS);
        if (ack && json_is_true(json_object_get(ack, "ok")))
            accepted++;
        else if (ack && it_json_int(ack, "error.code") == 503)
            refused++;
        json_decref(ack);
    }
    sc_buf_destroy(&b);
    fprintf(stderr, "[maxbytes] accepted %d, refused %d\n", accepted, refused);
    IT_CHECK(accepted >= 5 && accepted <= 10, "about 1 MiB of 100 KiB tasks accepted: %d", accepted);
    IT_CHECK(accepted + refused == 30, "every other one refused with 503: %d + %d", accepted, refused);
    json_t *st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "queue_size") == accepted, "queue_size equals the accepted count");
    IT_CHECK(it_json_int(st, "lifetime_stats.refused_full") == refused, "refusals counted");
    json_decref(st);
    e->passed = true;
}

/*
 * A task that cannot be republished under the server's max_payload is
 * refused at ingest (400 too_big, raw copy on dlq.invalid, cut to fit); a
 * get whose JSON would not fit still answers, with an error object.
 */
static void
test_oversized(void **state)
{
    struct it_env *e = it_env_start("oversized", NULL);
    assert_non_null(e);
    *state = e;

    struct it_recorder *inv = it_env_recorder(e, e->nc, "dlq.invalid.>", NULL, 16, false);
    assert_non_null(inv);
    int64_t maxp = natsConnection_GetMaxPayload(e->nc);
    struct sc_buf b;
    sc_buf_init(&b, (size_t)maxp + 1024);
    pack_envelope(&b, "huge-1", (size_t)maxp - 200, 'x', "connection refused", 18);
    IT_CHECK((int64_t)b.len <= maxp, "the envelope itself fits max_payload (%zu <= %lld)", b.len,
             (long long)maxp);
    json_t *ack = it_request_bytes(e->nc, "dlq.failed.big", b.data, b.len, IT_REQUEST_MS);
    char *dump = it_json_dump(ack);
    IT_CHECK(ack && it_json_int(ack, "error.code") == 400, "too big: 400, got %s", dump);
    free(dump);
    json_decref(ack);
    IT_CHECK(it_rec_wait(inv, 1, IT_WAIT_MS), "the raw message reaches dlq.invalid.big");
    const struct it_rec_msg *m = it_rec_get(inv, 0);
    IT_CHECK(strcmp(it_rec_header(m, "Dlq-Invalid-Reason"), "too_big") == 0, "reason too_big");

    /* 300 KB of \x01 in a str renders as ~1.8 MB of JSON escapes: more than max_payload. */
    pack_envelope(&b, "render-1", 300 * 1024, 'S', "400 Bad Request", 15);
    /* The 'S' fill is printable; turn it into control bytes after packing. */
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] == 'S')
            b.data[i] = 1;
    ack = it_request_bytes(e->nc, "dlq.failed.render", b.data, b.len, IT_REQUEST_MS);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "the task itself is accepted");
    json_decref(ack);
    json_t *got = it_admin_get(e->nc, "render-1");
    dump = it_json_dump(got);
    IT_CHECK(got != NULL, "get answers even when the task's JSON passes max_payload");
    IT_CHECK(it_json_int(got, "error.code") == 400, "with an error object: %.300s", dump);
    free(dump);
    json_decref(got);
    sc_buf_destroy(&b);
    e->passed = true;
}

/* A NUL inside an error does not cut it: "abc\0def connection refused" is a network error. */
static void
test_nul_in_error(void **state)
{
    const char *flags[] = {"backoff.exp_base_ms=600000", NULL};
    struct it_env *e = it_env_start("nul", flags);
    assert_non_null(e);
    *state = e;

    static const char err[] = "abc\0def connection refused";
    struct sc_buf b;
    sc_buf_init(&b, 4096);
    pack_envelope(&b, "nul-1", 8, 'x', err, sizeof(err) - 1);
    json_t *ack = it_request_bytes(e->nc, "dlq.failed.nul", b.data, b.len, IT_REQUEST_MS);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "accepted");
    json_decref(ack);
    json_t *got = it_admin_get(e->nc, "nul-1");
    char *dump = it_json_dump(got);
    IT_CHECK(strcmp(it_json_str(got, "error_category"), "network") == 0, "network: %s", dump);
    IT_CHECK(strcmp(it_json_str(got, "error"), "abc def connection refused") == 0,
             "the whole error, NUL as a space: %s", dump);
    IT_CHECK(json_is_false(json_object_get(got, "parked")), "scheduled, not parked: %s", dump);
    free(dump);
    json_decref(got);
    sc_buf_destroy(&b);
    e->passed = true;
}

/*
 * A worker's failure is classified on its own: an envelope typed
 * TimeoutError whose retry fails with "403 access denied" (no error_type)
 * becomes a permission error and is parked, not retried as network.
 */
static void
test_reclassified_on_reply(void **state)
{
    const char *flags[] = {"backoff.exp_base_ms=100", NULL};
    struct it_env *e = it_env_start("reclass", flags);
    assert_non_null(e);
    *state = e;

    struct it_recorder *w = it_env_recorder(e, e->nc, "dlq.retry.reclass", NULL, 16, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_FAIL, "403 access denied", NULL});
    struct it_envelope env;
    it_envelope_init(&env);
    env.task_id = "reclass-1";
    env.error = "deadline exceeded";
    env.error_type = "TimeoutError";
    env.max_retries = 5;
    json_t *ack = it_request_envelope(e->nc, "dlq.failed.reclass", &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "accepted");
    json_decref(ack);
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "the first retry reaches the worker");
    json_t *t = NULL;
    for (int k = 0; k < 100; k++) {
        json_decref(t);
        t = it_admin_get(e->nc, "reclass-1");
        if (t && it_json_int(t, "retry_count") == 1)
            break;
        it_sleep_ms(50);
    }
    char *dump = it_json_dump(t);
    IT_CHECK(strcmp(it_json_str(t, "error_category"), "permission") == 0, "permission: %s", dump);
    IT_CHECK(json_is_true(json_object_get(t, "parked")), "parked after a 403: %s", dump);
    IT_CHECK(json_is_null(json_object_get(t, "error_type")), "the old error_type is gone: %s", dump);
    free(dump);
    json_decref(t);
    it_sleep_ms(400);
    IT_CHECK(it_rec_count(w) == 1, "no further attempt: %zu", it_rec_count(w));
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_forged_replies, it_teardown),
        cmocka_unit_test_teardown(test_max_bytes, it_teardown),
        cmocka_unit_test_teardown(test_oversized, it_teardown),
        cmocka_unit_test_teardown(test_nul_in_error, it_teardown),
        cmocka_unit_test_teardown(test_reclassified_on_reply, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
