/* test_fingerprint.c - unit tests of the failure fingerprint: what the normaliser keeps and drops, which errors group together and which do not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dlq.h"

#define SUBJ "dlq.failed.orders"

/* The group of an error on subject subj with category cat. */
static uint64_t
group(const char *subj, unsigned cat, const char *error)
{
    return dlq_fingerprint_group(dlq_fingerprint(subj, strlen(subj), error, strlen(error)), cat);
}

static void
assert_normalised(const char *in, const char *want)
{
    char out[256];
    size_t n = dlq_fingerprint_normalise(in, strlen(in), out, sizeof(out));

    assert_true(n < sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void
test_normalise(void **state)
{
    (void)state;
    assert_normalised("timeout after 30s on 10.0.0.7:5432 (req 9f3a1c)",
                      "timeout after # on # (req #)");
    assert_normalised("user 550e8400-e29b-41d4-a716-446655440000 not found", "user # not found");
    assert_normalised("bad checksum deadbeefcafe", "bad checksum #");
    assert_normalised("  connection   refused\n", "connection refused");
    assert_normalised("order ord_8fK2jQ: amount -12.50 EUR", "order ord_#: amount -# EUR");
    assert_normalised("feed face", "feed face"); /* short hex-letter words are words */
    assert_normalised("", "");
}

static void
test_normalise_cap(void **state)
{
    char out[8];
    size_t n;

    (void)state;
    n = dlq_fingerprint_normalise("connection refused by 10.1.1.1", 30, out, sizeof(out));
    assert_int_equal(n, strlen("connection refused by #")); /* the whole length, only 8 written */
    assert_memory_equal(out, "connecti", 8);
}

static void
test_groups_together(void **state)
{
    (void)state;
    assert_true(group(SUBJ, 1, "timeout after 30s on 10.0.0.7:5432 (req 9f3a1c0e)") ==
                group(SUBJ, 1, "timeout after 45s on 10.0.0.9:5432 (req 77b1d2aa)"));
    assert_true(group(SUBJ, 3, "user 550e8400-e29b-41d4-a716-446655440000 not found") ==
                group(SUBJ, 3, "user 6fa459ea-ee8a-3ca4-894e-db77e160355e not found"));
    assert_true(group(SUBJ, 0, "HTTP 503 from upstream after 3 attempts") ==
                group(SUBJ, 0, "HTTP 502 from upstream after 12 attempts"));
    assert_true(group(SUBJ, 0, "disk full  on /dev/sda1") == group(SUBJ, 0, "disk full on /dev/sdb2"));
}

static void
test_groups_apart(void **state)
{
    (void)state;
    /* different words */
    assert_true(group(SUBJ, 1, "timeout after 30s") != group(SUBJ, 1, "connection refused"));
    assert_true(group(SUBJ, 3, "user not found") != group(SUBJ, 3, "order not found"));
    /* same error, another subject or category */
    assert_true(group(SUBJ, 1, "timeout after 30s") != group("dlq.failed.billing", 1, "timeout after 30s"));
    assert_true(group(SUBJ, 1, "timeout after 30s") != group(SUBJ, 2, "timeout after 30s"));
    /* the subject/error boundary is part of the hash */
    assert_true(group("a.b", 0, "c") != group("a.bc", 0, ""));
    /* a number is not the same as no number */
    assert_true(group(SUBJ, 0, "retry 3") != group(SUBJ, 0, "retry"));
}

static void
test_group_hex(void **state)
{
    char hex[17];
    uint64_t g = 0, back = 0;

    (void)state;
    g = group(SUBJ, 1, "boom");
    assert_true(g != 0);
    dlq_group_hex(g, hex);
    assert_int_equal(strlen(hex), 16);
    assert_true(strspn(hex, "0123456789abcdef") == 16);
    assert_true(dlq_group_parse(hex, 16, &back));
    assert_true(back == g);
    dlq_group_hex(0x00000000000000abULL, hex);
    assert_string_equal(hex, "00000000000000ab");
    assert_true(dlq_group_parse("00000000000000AB", 16, &back));
    assert_true(back == 0xab);
    back = 7;
    assert_false(dlq_group_parse("0000000000000000", 16, &back)); /* 0 is "any" */
    assert_false(dlq_group_parse("00000000000000ab0", 17, &back));
    assert_false(dlq_group_parse("0000000000000g0b", 16, &back));
    assert_false(dlq_group_parse("", 0, &back));
    assert_true(back == 7);
}

/* The task keeps its fingerprint in step with its subject and error; the filter matches on the group. */
static void
test_task_fingerprint(void **state)
{
    struct dlq_queue q;
    struct dlq_task *a, *b, *c;
    struct dlq_filter f = {-1, -1, -1, NULL, 0, 0, NULL, NULL, NULL};

    (void)state;
    dlq_queue_init(&q, 4);
    a = dlq_queue_add(&q, "a", 1, 1);
    b = dlq_queue_add(&q, "b", 1, 1);
    c = dlq_queue_add(&q, "c", 1, 1);
    dlq_task_set_str(&q, a, DLQ_TS_SUBJECT, SUBJ, strlen(SUBJ));
    dlq_task_set_str(&q, b, DLQ_TS_SUBJECT, SUBJ, strlen(SUBJ));
    dlq_task_set_str(&q, c, DLQ_TS_SUBJECT, SUBJ, strlen(SUBJ));
    dlq_task_set_str(&q, a, DLQ_TS_ERROR, "timeout after 30s", 17);
    dlq_task_set_str(&q, b, DLQ_TS_ERROR, "timeout after 45s", 17);
    dlq_task_set_str(&q, c, DLQ_TS_ERROR, "connection refused", 18);
    assert_true(dlq_task_fingerprint(a) == dlq_task_fingerprint(b));
    assert_true(dlq_task_fingerprint(a) != dlq_task_fingerprint(c));
    assert_true(dlq_task_fingerprint(a) == dlq_fingerprint(SUBJ, strlen(SUBJ), "timeout after 1s", 16));
    /* asked again: the error's hash kept in the pool gives the same answer */
    assert_true(dlq_task_fingerprint(a) == dlq_fingerprint(SUBJ, strlen(SUBJ), "timeout after 30s", 17));
    f.group = dlq_task_group(a);
    assert_true(dlq_filter_match(&f, a, 0));
    assert_true(dlq_filter_match(&f, b, 0));
    assert_false(dlq_filter_match(&f, c, 0));
    size_t n = 0;
    assert_false(dlq_queue_filter_count(&q, &f, &n)); /* a group needs a walk */
    /* a new error moves the task to its group; the category is part of the group */
    dlq_task_set_str(&q, c, DLQ_TS_ERROR, "timeout after 9s", 16);
    assert_true(dlq_filter_match(&f, c, 0));
    dlq_queue_set_class(&q, c, (policy_category)2, (policy_retry)0);
    assert_false(dlq_filter_match(&f, c, 0));
    dlq_queue_destroy(&q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_normalise_cap),
        cmocka_unit_test(test_groups_together),
        cmocka_unit_test(test_groups_apart),
        cmocka_unit_test(test_group_hex),
        cmocka_unit_test(test_task_fingerprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
