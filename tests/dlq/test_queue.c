/* test_queue.c - unit tests of the task table: lookup, status counts, seq order, history ring, filters, counts, string pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dlq.h"

static void
test_add_find_remove(void **state)
{
    struct dlq_queue q;
    char id[32];

    (void)state;
    dlq_queue_init(&q, 4);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(id, sizeof(id), "task-%d", i);
        struct dlq_task *t = dlq_queue_add(&q, id, (size_t)n, 1000 + i);
        assert_non_null(t);
        assert_int_equal(t->seq, (uint64_t)i + 1);
        dlq_set_str(&t->subject, "dlq.failed.svc", 14);
    }
    assert_int_equal(q.count, 5000);
    assert_int_equal(q.counts[DLQ_TASK_PENDING], 5000);
    assert_true(q.nslots >= 2 * 5000); /* at most half full */
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(id, sizeof(id), "task-%d", i);
        struct dlq_task *t = dlq_queue_find(&q, id, (size_t)n);
        assert_non_null(t);
        assert_memory_equal(t->id, id, (size_t)n);
    }
    assert_null(dlq_queue_find(&q, "task-5000", 9));
    assert_null(dlq_queue_find(&q, "task-1", 5)); /* a prefix is not a match */
    /* the hashed forms: the same table, one hash worked out by the caller */
    {
        uint32_t h = dlq_queue_id_hash("task-77", 7);
        struct dlq_task *t;
        dlq_queue_prefetch(&q, h);
        dlq_queue_prefetch(&q, 0xffffffffu); /* a hint for any h: nothing changes */
        assert_ptr_equal(dlq_queue_find_hashed(&q, "task-77", 7, h), dlq_queue_find(&q, "task-77", 7));
        assert_int_equal(dlq_queue_find(&q, "task-77", 7)->hash, h);
        h = dlq_queue_id_hash("hashed-1", 8);
        assert_null(dlq_queue_find_hashed(&q, "hashed-1", 8, h));
        t = dlq_queue_add_hashed(&q, "hashed-1", 8, h, 0, 1);
        assert_ptr_equal(dlq_queue_find(&q, "hashed-1", 8), t);
        assert_int_equal(t->hash, h);
        dlq_queue_remove(&q, t);
        assert_null(dlq_queue_find(&q, "hashed-1", 8));
    }
    /* remove every other task; order and counts stay right */
    for (int i = 0; i < 5000; i += 2) {
        int n = snprintf(id, sizeof(id), "task-%d", i);
        dlq_queue_remove(&q, dlq_queue_find(&q, id, (size_t)n));
    }
    assert_int_equal(q.count, 2500);
    assert_int_equal(q.counts[DLQ_TASK_PENDING], 2500);
    uint64_t last = 0;
    size_t seen = 0;
    for (struct dlq_task *t = dlq_queue_first(&q); t; t = dlq_queue_next(&q, t)) {
        assert_true(t->seq > last);
        assert_int_equal(t->seq % 2, 0); /* odd seqs (even i) were removed */
        last = t->seq;
        seen++;
    }
    assert_int_equal(seen, 2500);
    dlq_queue_destroy(&q);
}

/*
 * The id table under churn: random adds and removes over 4,000 ids (the
 * table grows, wraps around its end, and shifts runs back on each remove),
 * checked against a plain array after every step: each present id is found
 * as its own task, each absent one is not.
 */
static void
test_id_table_churn(void **state)
{
    enum { IDS = 4000, STEPS = 60000 };
    static struct dlq_task *held[IDS];
    struct dlq_queue q;
    unsigned rnd = 12345;
    size_t live = 0;
    char id[32];

    (void)state;
    memset(held, 0, sizeof(held));
    dlq_queue_init(&q, 1);
    for (int step = 0; step < STEPS; step++) {
        rnd = rnd * 1103515245u + 12345u;
        int k = (int)((rnd >> 8) % IDS);
        int n = snprintf(id, sizeof(id), "churn-%d", k);
        if (held[k]) {
            assert_ptr_equal(dlq_queue_find(&q, id, (size_t)n), held[k]);
            dlq_queue_remove(&q, held[k]);
            held[k] = NULL;
            live--;
        } else {
            assert_null(dlq_queue_find(&q, id, (size_t)n));
            held[k] = dlq_queue_add(&q, id, (size_t)n, step);
            live++;
        }
        assert_int_equal(q.count, live);
        if (step % 5000 == 0 || step == STEPS - 1) {
            size_t used = 0;
            for (int i = 0; i < IDS; i++) {
                n = snprintf(id, sizeof(id), "churn-%d", i);
                assert_ptr_equal(dlq_queue_find(&q, id, (size_t)n), held[i]);
            }
            for (size_t i = 0; i < q.nslots; i++)
                used += q.tags[i] != 0;
            assert_int_equal(used, live);
            assert_true(live * 2 <= q.nslots);
        }
    }
    for (int i = 0; i < IDS; i++)
        if (held[i])
            dlq_queue_remove(&q, held[i]);
    for (size_t i = 0; i < q.nslots; i++)
        assert_int_equal(q.tags[i], 0);
    dlq_queue_destroy(&q);
}

static void
test_status_counts(void **state)
{
    struct dlq_queue q;
    struct dlq_task *a, *b, *c;

    (void)state;
    dlq_queue_init(&q, 4);
    a = dlq_queue_add(&q, "a", 1, 0);
    b = dlq_queue_add(&q, "b", 1, 0);
    c = dlq_queue_add(&q, "c", 1, 0);
    dlq_queue_set_status(&q, a, DLQ_TASK_PENDING, true);
    dlq_queue_set_status(&q, b, DLQ_TASK_RETRYING, false);
    dlq_queue_set_status(&q, c, DLQ_TASK_EXHAUSTED, true); /* parked only applies to pending */
    assert_int_equal(q.counts[DLQ_TASK_PENDING], 1);
    assert_int_equal(q.parked, 1);
    assert_int_equal(q.counts[DLQ_TASK_RETRYING], 1);
    assert_int_equal(q.counts[DLQ_TASK_EXHAUSTED], 1);
    assert_false(c->parked);
    assert_int_equal(dlq_queue_active(&q), 3);
    dlq_queue_set_status(&q, b, DLQ_TASK_COMPLETED, false);
    assert_int_equal(dlq_queue_active(&q), 2);
    dlq_queue_remove(&q, a);
    assert_int_equal(q.parked, 0);
    assert_int_equal(q.counts[DLQ_TASK_PENDING], 0);
    dlq_queue_destroy(&q);
}

static void
test_history_ring(void **state)
{
    struct dlq_queue q;
    struct dlq_task *t;
    char err[16];

    (void)state;
    dlq_queue_init(&q, 3);
    t = dlq_queue_add(&q, "t", 1, 0);
    for (int i = 1; i <= 10; i++) {
        int n = snprintf(err, sizeof(err), "e%d", i);
        dlq_queue_history(&q, t, DLQ_OUT_RETRY_FAILED, i, i * 1000, err, (size_t)n);
    }
    assert_int_equal(t->hist_len, 3);
    /* the three newest, oldest first */
    for (unsigned k = 0; k < 3; k++) {
        const struct dlq_attempt *a = &t->hist[(t->hist_head + k) % 3];
        assert_int_equal(a->attempt, 8 + (int)k);
        snprintf(err, sizeof(err), "e%u", 8 + k);
        assert_string_equal(a->error, err);
    }
    dlq_queue_destroy(&q);
}

static void
test_filter(void **state)
{
    struct dlq_queue q;
    struct dlq_task *t;
    struct dlq_filter f = {-1, -1, -1, NULL, 0, 0, NULL, NULL, NULL};

    (void)state;
    dlq_queue_init(&q, 2);
    t = dlq_queue_add(&q, "x", 1, 10000);
    dlq_set_str(&t->subject, "dlq.failed.orders.eu", 20);
    dlq_queue_set_class(&q, t, POLICY_CAT_NETWORK, (policy_retry)t->policy);
    assert_true(dlq_filter_match(&f, t, 20000));
    f.subject = "dlq.failed.orders.>";
    assert_true(dlq_filter_match(&f, t, 20000));
    f.subject = "dlq.failed.billing.>";
    assert_false(dlq_filter_match(&f, t, 20000));
    f.subject = NULL;
    f.category = POLICY_CAT_VALIDATION;
    assert_false(dlq_filter_match(&f, t, 20000));
    f.category = POLICY_CAT_NETWORK;
    f.older_than_ms = 5000;
    assert_true(dlq_filter_match(&f, t, 20000));  /* 10 s old */
    assert_false(dlq_filter_match(&f, t, 12000)); /* 2 s old */
    f.older_than_ms = 0;
    f.status = DLQ_TASK_PENDING;
    f.want_parked = 1;
    assert_false(dlq_filter_match(&f, t, 20000));
    dlq_queue_set_status(&q, t, DLQ_TASK_PENDING, true);
    assert_true(dlq_filter_match(&f, t, 20000));
    dlq_queue_destroy(&q);
}

/* counts_check() compares every O(1) count with a walk over the tasks. */
static void
counts_check(struct dlq_queue *q)
{
    size_t cat[POLICY_CAT_COUNT] = {0}, pol[POLICY_RETRY_COUNT] = {0};
    struct dlq_filter f = {-1, -1, -1, NULL, 0, 0, NULL, NULL, NULL};

    for (struct dlq_task *t = dlq_queue_first(q); t; t = dlq_queue_next(q, t)) {
        if (t->status == DLQ_TASK_PENDING || t->status == DLQ_TASK_RETRYING ||
            t->status == DLQ_TASK_EXHAUSTED) {
            cat[t->category]++;
            pol[t->policy]++;
        }
    }
    for (int c = 0; c < POLICY_CAT_COUNT; c++)
        assert_int_equal(dlq_queue_active_category(q, (policy_category)c), cat[c]);
    for (int p = 0; p < POLICY_RETRY_COUNT; p++)
        assert_int_equal(q->active_policy[p], pol[p]);
    /* every status (and parked) x every category (and any) filter */
    for (int st = -1; st <= DLQ_TASK_STATUS_COUNT; st++) {
        for (int c = -1; c < POLICY_CAT_COUNT; c++) {
            size_t want = 0, got = 99999;
            f.status = st == DLQ_TASK_STATUS_COUNT ? DLQ_TASK_PENDING : st;
            f.want_parked = st == DLQ_TASK_STATUS_COUNT ? 1 : -1;
            f.category = c;
            for (struct dlq_task *t = dlq_queue_first(q); t; t = dlq_queue_next(q, t))
                want += dlq_filter_match(&f, t, 0);
            assert_true(dlq_queue_filter_count(q, &f, &got));
            assert_int_equal(got, want);
        }
    }
    f.status = -1;
    f.want_parked = -1;
    f.category = -1;
    f.subject = "x.>";
    assert_false(dlq_queue_filter_count(q, &f, &(size_t){0}));
}

/* Category, policy and status changes keep the counts that stats and list read equal to a walk. */
static void
test_class_counts(void **state)
{
    struct dlq_queue q;
    struct dlq_task *ts[300];
    char id[32];
    uint64_t x = 88172645463325252ULL;

    (void)state;
    dlq_queue_init(&q, 4);
    for (int i = 0; i < 300; i++) {
        int n = snprintf(id, sizeof(id), "t%d", i);
        ts[i] = dlq_queue_add(&q, id, (size_t)n, 0);
    }
    counts_check(&q);
    for (int round = 0; round < 3000; round++) {
        struct dlq_task *t;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t = ts[x % 300];
        if (!t)
            continue;
        switch ((x >> 20) % 4) {
        case 0:
            dlq_queue_set_class(&q, t, (policy_category)((x >> 30) % POLICY_CAT_COUNT),
                               (policy_retry)((x >> 40) % POLICY_RETRY_COUNT));
            break;
        case 1:
        case 2:
            dlq_queue_set_status(&q, t, (dlq_task_status)((x >> 30) % DLQ_TASK_STATUS_COUNT),
                                (x >> 50) & 1);
            break;
        default:
            if (round % 7 == 0) {
                dlq_queue_remove(&q, t);
                ts[x % 300] = NULL;
            }
        }
        if (round % 100 == 0)
            counts_check(&q);
    }
    counts_check(&q);
    dlq_queue_destroy(&q);
}

/* Pooled strings are shared and released; a payload lives in the task when it fits its room. */
static void
test_pool_and_payload(void **state)
{
    struct dlq_queue q;
    struct dlq_task *a, *b;
    char big[600];

    (void)state;
    memset(big, 'p', sizeof(big));
    dlq_queue_init(&q, 20);
    a = dlq_queue_add_room(&q, "a", 1, 16, 0);
    b = dlq_queue_add_room(&q, "b", 1, 16, 0);
    dlq_task_set_str(&q, a, DLQ_TS_SUBJECT, "dlq.failed.x", 12);
    dlq_task_set_str(&q, b, DLQ_TS_SUBJECT, "dlq.failed.x", 12);
    assert_ptr_equal(a->subject, b->subject);
    assert_string_equal(a->subject, "dlq.failed.x");
    dlq_task_set_str(&q, a, DLQ_TS_ERROR, "bad\0byte", 8);
    assert_string_equal(a->error, "bad byte");
    dlq_task_set_str(&q, a, DLQ_TS_ERROR_TYPE, NULL, 0);
    assert_null(a->error_type);
    dlq_queue_history(&q, a, DLQ_OUT_FAILED, 0, 1, a->error, strlen(a->error));
    assert_ptr_equal(a->hist[0].error, a->error); /* one copy of the text */
    assert_int_equal(q.nstr, 2);
    /* the entry holds its own reference: the task's error changing keeps the entry's text */
    dlq_task_set_str(&q, a, DLQ_TS_ERROR, "next", 4);
    assert_string_equal(a->hist[0].error, "bad byte");
    assert_int_equal(q.nstr, 3);
    dlq_task_set_str(&q, a, DLQ_TS_ERROR, "bad byte", 8);
    assert_ptr_equal(a->hist[0].error, a->error);
    assert_int_equal(q.nstr, 2);
    for (int i = 0; i < 25; i++)
        dlq_queue_history(&q, a, DLQ_OUT_RETRY_FAILED, i, i, "e", 1);
    assert_int_equal(a->hist_len, 20);
    assert_int_equal(a->hist_alloc, 20);
    assert_int_equal(q.nstr, 3);

    dlq_task_set_payload(a, "0123456789abcdef", 16);
    assert_ptr_equal(a->payload, a->id + 2); /* right after "a\0" */
    assert_memory_equal(a->payload, "0123456789abcdef", 16);
    dlq_task_set_payload(a, big, sizeof(big)); /* too big: its own allocation */
    assert_ptr_not_equal(a->payload, a->id + 2);
    assert_int_equal(a->payload_len, sizeof(big));
    dlq_task_set_payload(a, "xy", 2);
    assert_ptr_equal(a->payload, a->id + 2);
    dlq_task_set_payload(b, big, sizeof(big));
    dlq_set_str(&b->rule_id, "owned", 5); /* a field assigned directly stays owned */

    dlq_queue_remove(&q, a);
    assert_int_equal(q.nstr, 1); /* b still holds the subject */
    dlq_queue_remove(&q, b);
    assert_int_equal(q.nstr, 0);
    dlq_queue_destroy(&q);
}

/*
 * Episode ids (DESIGN section 5): the episode's start in us, strictly
 * growing even when the clock stands still or goes back, and above any id
 * loaded from the store; a reopened task gets a new one.
 */
static void
test_episode_ids(void **state)
{
    struct dlq_queue q;
    struct dlq_task *a, *b, *c;

    (void)state;
    dlq_queue_init(&q, 4);
    a = dlq_queue_add(&q, "a", 1, 1000);
    b = dlq_queue_add(&q, "b", 1, 1000); /* the same ms */
    assert_int_equal(a->episode_id, 1000000);
    assert_int_equal(b->episode_id, 1000001);
    dlq_queue_new_episode(&q, a, 999); /* the clock went back: still larger */
    assert_int_equal(a->episode_id, 1000002);
    dlq_queue_episode_seen(&q, 5000000);
    dlq_queue_episode_seen(&q, 10); /* smaller ids change nothing */
    c = dlq_queue_add(&q, "c", 1, 2000);
    assert_int_equal(c->episode_id, 5000001);
    dlq_queue_new_episode(&q, b, 7000);
    assert_int_equal(b->episode_id, 7000000);
    dlq_queue_destroy(&q);
}

/*
 * The retry headers (DESIGN section 5): Nats-Msg-Id <id>:<episode>:<attempt>
 * and Dlq-Episode; the size returned is the wire size of the header block;
 * dlq_retry_headers_max() is never below the size of any real attempt.
 */
static void
test_retry_headers(void **state)
{
    struct dlq_retry_hdrs h;
    size_t wire, want = 12, max;
    const char *v = NULL;

    (void)state;
    wire = dlq_retry_headers(&h, "order-42xyz", 8, 3, 5, POLICY_CAT_NETWORK, "dlq.failed.orders",
                            1700000000123, 1700000000123456);
    for (size_t i = 0; h.kv[i]; i += 2) {
        want += strlen(h.kv[i]) + strlen(h.kv[i + 1]) + 4;
        if (strcmp(h.kv[i], "Nats-Msg-Id") == 0)
            v = h.kv[i + 1];
    }
    assert_int_equal(wire, want);
    assert_non_null(v);
    assert_string_equal(v, "order-42:1700000000123456:3");
    assert_string_equal(h.episode, "1700000000123456");
    assert_string_equal(h.id, "order-42");
    max = dlq_retry_headers_max("order-42", 8, "dlq.failed.orders");
    assert_true(max >= wire);
    wire = dlq_retry_headers(&h, "order-42", 8, INT32_MAX, INT32_MAX, POLICY_CAT_PERMISSION,
                            "dlq.failed.orders", -62135596800000LL, INT64_MAX);
    assert_true(max >= wire);
    /* Ingest sizes without building: the empty base, plus the id twice and the subject once. */
    {
        static char id[DLQ_RETRY_ID_MAX];
        size_t base = dlq_retry_headers_max("", 0, "");
        memset(id, 'i', sizeof id);
        for (size_t len = 0; len <= DLQ_RETRY_ID_MAX; len += 97)
            assert_int_equal(dlq_retry_headers_max(id, len, "dlq.failed.a.b"),
                             base + 2 * len + strlen("dlq.failed.a.b"));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find_remove),
        cmocka_unit_test(test_id_table_churn),
        cmocka_unit_test(test_status_counts),
        cmocka_unit_test(test_history_ring),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_class_counts),
        cmocka_unit_test(test_pool_and_payload),
        cmocka_unit_test(test_episode_ids),
        cmocka_unit_test(test_retry_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
