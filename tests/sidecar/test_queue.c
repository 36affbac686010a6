/* test_queue.c - unit tests of the task table: lookup, status counts, seq order, history ring, filters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sidecar-internal.h"

static void
test_add_find_remove(void **state)
{
    struct sc_queue q;
    char id[32];

    (void)state;
    sc_queue_init(&q, 4);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(id, sizeof(id), "task-%d", i);
        struct sc_task *t = sc_queue_add(&q, id, (size_t)n, 1000 + i);
        assert_non_null(t);
        assert_int_equal(t->seq, (uint64_t)i + 1);
        sc_set_str(&t->subject, "dlq.failed.svc", 14);
    }
    assert_int_equal(q.count, 5000);
    assert_int_equal(q.counts[SC_TASK_PENDING], 5000);
    assert_true(q.nbuckets >= 5000);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(id, sizeof(id), "task-%d", i);
        struct sc_task *t = sc_queue_find(&q, id, (size_t)n);
        assert_non_null(t);
        assert_memory_equal(t->id, id, (size_t)n);
    }
    assert_null(sc_queue_find(&q, "task-5000", 9));
    assert_null(sc_queue_find(&q, "task-1", 5)); /* a prefix is not a match */
    /* remove every other task; order and counts stay right */
    for (int i = 0; i < 5000; i += 2) {
        int n = snprintf(id, sizeof(id), "task-%d", i);
        sc_queue_remove(&q, sc_queue_find(&q, id, (size_t)n));
    }
    assert_int_equal(q.count, 2500);
    assert_int_equal(q.counts[SC_TASK_PENDING], 2500);
    uint64_t last = 0;
    size_t seen = 0;
    for (struct sc_task *t = q.head; t; t = t->onext) {
        assert_true(t->seq > last);
        assert_int_equal(t->seq % 2, 0); /* odd seqs (even i) were removed */
        last = t->seq;
        seen++;
    }
    assert_int_equal(seen, 2500);
    sc_queue_destroy(&q);
}

static void
test_status_counts(void **state)
{
    struct sc_queue q;
    struct sc_task *a, *b, *c;

    (void)state;
    sc_queue_init(&q, 4);
    a = sc_queue_add(&q, "a", 1, 0);
    b = sc_queue_add(&q, "b", 1, 0);
    c = sc_queue_add(&q, "c", 1, 0);
    sc_queue_set_status(&q, a, SC_TASK_PENDING, true);
    sc_queue_set_status(&q, b, SC_TASK_RETRYING, false);
    sc_queue_set_status(&q, c, SC_TASK_EXHAUSTED, true); /* parked only applies to pending */
    assert_int_equal(q.counts[SC_TASK_PENDING], 1);
    assert_int_equal(q.parked, 1);
    assert_int_equal(q.counts[SC_TASK_RETRYING], 1);
    assert_int_equal(q.counts[SC_TASK_EXHAUSTED], 1);
    assert_false(c->parked);
    assert_int_equal(sc_queue_active(&q), 3);
    sc_queue_set_status(&q, b, SC_TASK_COMPLETED, false);
    assert_int_equal(sc_queue_active(&q), 2);
    sc_queue_remove(&q, a);
    assert_int_equal(q.parked, 0);
    assert_int_equal(q.counts[SC_TASK_PENDING], 0);
    sc_queue_destroy(&q);
}

static void
test_history_ring(void **state)
{
    struct sc_queue q;
    struct sc_task *t;
    char err[16];

    (void)state;
    sc_queue_init(&q, 3);
    t = sc_queue_add(&q, "t", 1, 0);
    for (int i = 1; i <= 10; i++) {
        int n = snprintf(err, sizeof(err), "e%d", i);
        sc_queue_history(&q, t, SC_OUT_RETRY_FAILED, i, i * 1000, err, (size_t)n);
    }
    assert_int_equal(t->hist_len, 3);
    /* the three newest, oldest first */
    for (unsigned k = 0; k < 3; k++) {
        const struct sc_attempt *a = &t->hist[(t->hist_head + k) % 3];
        assert_int_equal(a->attempt, 8 + (int)k);
        snprintf(err, sizeof(err), "e%u", 8 + k);
        assert_string_equal(a->error, err);
    }
    sc_queue_destroy(&q);
}

static void
test_filter(void **state)
{
    struct sc_queue q;
    struct sc_task *t;
    struct sc_filter f = {-1, -1, -1, NULL, 0};

    (void)state;
    sc_queue_init(&q, 2);
    t = sc_queue_add(&q, "x", 1, 10000);
    sc_set_str(&t->subject, "dlq.failed.orders.eu", 20);
    t->category = POLICY_CAT_NETWORK;
    assert_true(sc_filter_match(&f, t, 20000));
    f.subject = "dlq.failed.orders.>";
    assert_true(sc_filter_match(&f, t, 20000));
    f.subject = "dlq.failed.billing.>";
    assert_false(sc_filter_match(&f, t, 20000));
    f.subject = NULL;
    f.category = POLICY_CAT_VALIDATION;
    assert_false(sc_filter_match(&f, t, 20000));
    f.category = POLICY_CAT_NETWORK;
    f.older_than_ms = 5000;
    assert_true(sc_filter_match(&f, t, 20000));  /* 10 s old */
    assert_false(sc_filter_match(&f, t, 12000)); /* 2 s old */
    f.older_than_ms = 0;
    f.status = SC_TASK_PENDING;
    f.want_parked = 1;
    assert_false(sc_filter_match(&f, t, 20000));
    sc_queue_set_status(&q, t, SC_TASK_PENDING, true);
    assert_true(sc_filter_match(&f, t, 20000));
    sc_queue_destroy(&q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find_remove),
        cmocka_unit_test(test_status_counts),
        cmocka_unit_test(test_history_ring),
        cmocka_unit_test(test_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
