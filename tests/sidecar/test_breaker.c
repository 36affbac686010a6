/* test_breaker.c - unit tests of the circuit breaker's state machine (sidecar/breaker.c): closed -> open -> half-open -> closed or open again, with a fake clock and no NATS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "breaker.h"

#define S "dlq.retry.orders"
#define COOL 1000
#define PROBE_TIMEOUT 5000

static void
setup(struct sc_breaker *b, int64_t threshold)
{
    memset(b, 0, sizeof(*b));
    b->threshold = threshold;
    b->cooldown_ms = COOL;
    b->probe_timeout_ms = PROBE_TIMEOUT;
}

static sc_circuit_state
state(const struct sc_breaker *b, const char *s)
{
    const struct sc_circuit *c = sc_breaker_find(b, s);
    return c ? c->state : SC_CIRCUIT_CLOSED;
}

/* K failures in a row open the circuit; retries are held until the probe time. */
static void
test_opens_after_k(void **st)
{
    struct sc_breaker b;

    (void)st;
    setup(&b, 3);
    assert_int_equal(sc_breaker_gate(&b, S, 0), 0);
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_FAILED, 10, 1010), SC_BREAKER_SAME);
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_FAILED, 20, 1020), SC_BREAKER_SAME);
    assert_int_equal(state(&b, S), SC_CIRCUIT_CLOSED);
    assert_int_equal(sc_breaker_gate(&b, S, 25), 0);
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_FAILED, 30, 1030), SC_BREAKER_OPENED);
    assert_int_equal(state(&b, S), SC_CIRCUIT_OPEN);
    assert_int_equal(b.opened_total, 1);
    assert_int_equal(sc_breaker_find(&b, S)->failures, 3);
    assert_int_equal(sc_breaker_find(&b, S)->opened_wall, 1030);
    /* Held until the probe time; another subject is not affected. */
    assert_int_equal(sc_breaker_gate(&b, S, 31), 30 + COOL);
    assert_int_equal(sc_breaker_gate(&b, S, 30 + COOL - 1), 30 + COOL);
    assert_int_equal(sc_breaker_gate(&b, "dlq.retry.other", 31), 0);
    /* A failure of an attempt sent before it opened keeps it open, the probe time unchanged. */
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_FAILED, 40, 1040), SC_BREAKER_SAME);
    assert_int_equal(sc_breaker_gate(&b, S, 41), 30 + COOL);
    sc_breaker_free(&b);
}

/* A success resets the count: failures must be consecutive. */
static void
test_success_resets(void **st)
{
    struct sc_breaker b;

    (void)st;
    setup(&b, 2);
    sc_breaker_verdict(&b, S, DLQ_END_FAILED, 1, 1);
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_OK, 2, 2), SC_BREAKER_SAME);
    assert_null(sc_breaker_find(&b, S)); /* forgotten */
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_FAILED, 3, 3), SC_BREAKER_SAME);
    assert_int_equal(state(&b, S), SC_CIRCUIT_CLOSED);
    /* No responders (deferred) is not a failure. */
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_NONE, 4, 4), SC_BREAKER_SAME);
    assert_int_equal(sc_breaker_find(&b, S)->failures, 1);
    sc_breaker_free(&b);
}

/* After the cool-down exactly one probe goes (half-open); its success closes the circuit. */
static void
test_probe_closes(void **st)
{
    struct sc_breaker b;

    (void)st;
    setup(&b, 1);
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_FAILED, 0, 0), SC_BREAKER_OPENED);
    assert_int_equal(sc_breaker_gate(&b, S, COOL), 0); /* the probe */
    assert_int_equal(state(&b, S), SC_CIRCUIT_HALF_OPEN);
    assert_int_equal(sc_breaker_gate(&b, S, COOL + 1), COOL + 1 + COOL); /* one probe only */
    assert_int_equal(sc_breaker_gate(&b, S, COOL + 2), COOL + 2 + COOL);
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_OK, COOL + 5, COOL + 5), SC_BREAKER_CLOSED);
    assert_null(sc_breaker_find(&b, S));
    assert_int_equal(sc_breaker_gate(&b, S, COOL + 6), 0);
    assert_int_equal(sc_breaker_gate(&b, S, COOL + 6), 0);
    sc_breaker_free(&b);
}

/* A failed probe re-opens the circuit for another cool-down. */
static void
test_probe_fails(void **st)
{
    struct sc_breaker b;

    (void)st;
    setup(&b, 1);
    sc_breaker_verdict(&b, S, DLQ_END_FAILED, 0, 0);
    assert_int_equal(sc_breaker_gate(&b, S, COOL), 0);
    assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_FAILED, COOL + 10, COOL + 10), SC_BREAKER_OPENED);
    assert_int_equal(state(&b, S), SC_CIRCUIT_OPEN);
    assert_int_equal(b.opened_total, 2);
    assert_int_equal(sc_breaker_gate(&b, S, COOL + 11), 2 * COOL + 10);
    assert_int_equal(sc_breaker_gate(&b, S, 2 * COOL + 10), 0); /* the next probe */
    assert_int_equal(state(&b, S), SC_CIRCUIT_HALF_OPEN);
    sc_breaker_free(&b);
}

/* A probe deferred (no responders) or lost (no verdict before its deadline) lets another go. */
static void
test_probe_deferred_or_lost(void **st)
{
    struct sc_breaker b;

    (void)st;
    setup(&b, 1);
    sc_breaker_verdict(&b, S, DLQ_END_FAILED, 0, 0);
    assert_int_equal(sc_breaker_gate(&b, S, COOL), 0);
    assert_int_not_equal(sc_breaker_gate(&b, S, COOL + 1), 0);
    sc_breaker_verdict(&b, S, DLQ_END_NONE, COOL + 2, COOL + 2);
    assert_int_equal(state(&b, S), SC_CIRCUIT_HALF_OPEN);
    assert_int_equal(sc_breaker_gate(&b, S, COOL + 3), 0); /* a new probe */
    assert_int_not_equal(sc_breaker_gate(&b, S, COOL + 4), 0);
    assert_int_equal(sc_breaker_gate(&b, S, COOL + 3 + PROBE_TIMEOUT), 0); /* the probe was lost */
    sc_breaker_free(&b);
}

/* Threshold 0 is off; the table is bounded. */
static void
test_off_and_bounded(void **st)
{
    struct sc_breaker b;
    char s[64];

    (void)st;
    setup(&b, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(sc_breaker_verdict(&b, S, DLQ_END_FAILED, i, i), SC_BREAKER_SAME);
    assert_null(sc_breaker_find(&b, S));
    assert_int_equal(sc_breaker_gate(&b, S, 11), 0);
    setup(&b, 5);
    for (int i = 0; i < SC_BREAKER_MAX + 10; i++) {
        snprintf(s, sizeof(s), "dlq.retry.s%05d", i);
        sc_breaker_verdict(&b, s, DLQ_END_FAILED, 1, 1);
    }
    assert_int_equal(b.n, SC_BREAKER_MAX);
    assert_int_equal(b.untracked, 10);
    sc_breaker_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_after_k),
        cmocka_unit_test(test_success_resets),
        cmocka_unit_test(test_probe_closes),
        cmocka_unit_test(test_probe_fails),
        cmocka_unit_test(test_probe_deferred_or_lost),
        cmocka_unit_test(test_off_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
