/* test_rates.c - unit tests of the last hour's per-minute counts (sidecar/rates.c): crediting, minutes without ticks, the hour wrapping, a counter restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "rates.h"

#define MIN_MS 60000LL
#define T0 (29000000LL * MIN_MS) /* some minute, far from the epoch */

/* The series k of last_hour at now with counters now_c, as a new JSON array (caller decrefs). */
static json_t *
series(const struct sc_rates *r, int64_t now, const uint64_t now_c[SC_RATE_KINDS], const char *k)
{
    struct sc_buf b;
    struct sc_jw w;
    json_t *root, *s;

    sc_buf_init(&b, 1 << 16);
    sc_jw_init(&w, &b);
    sc_jw_open(&w, NULL, '{');
    sc_rates_json(r, now, now_c, &w);
    sc_jw_close(&w, '}');
    root = json_loadb(b.data, b.len, 0, NULL);
    assert_non_null(root);
    s = json_incref(json_object_get(json_object_get(root, "last_hour"), k));
    assert_int_equal(json_array_size(s), SC_RATES_MINUTES);
    json_decref(root);
    sc_buf_destroy(&b);
    return s;
}

static int64_t
at(json_t *s, size_t i)
{
    return json_integer_value(json_array_get(s, i));
}

static void
test_credit_and_shift(void **state)
{
    struct sc_rates r;
    uint64_t c[SC_RATE_KINDS] = {0, 0, 0, 0};
    json_t *s;

    (void)state;
    memset(&r, 0, sizeof r);
    c[SC_RATE_INGESTED] = 6;                   /* taken in before the first tick */
    s = series(&r, T0, c, "ingested");
    assert_int_equal(at(s, 59), 6);            /* shown before any tick */
    json_decref(s);
    sc_rates_tick(&r, T0, c);                  /* the first tick credits them, not drops them */
    c[SC_RATE_INGESTED] = 10;
    sc_rates_tick(&r, T0 + 500, c);
    s = series(&r, T0 + 500, c, "ingested");
    assert_int_equal(at(s, 59), 10);
    json_decref(s);
    /* the rest of the test counts from 10: clear the minute */
    memset(&r, 0, sizeof r);
    memcpy(r.last, c, sizeof c);
    r.minute = T0 / MIN_MS;
    c[SC_RATE_INGESTED] = 13;
    sc_rates_tick(&r, T0 + 1000, c);
    c[SC_RATE_INGESTED] = 14;                  /* not ticked yet: still counts now */
    s = series(&r, T0 + 2000, c, "ingested");
    assert_int_equal(at(s, 59), 4);
    assert_int_equal(at(s, 58), 0);
    json_decref(s);
    sc_rates_tick(&r, T0 + 2000, c);
    /* three minutes later, two more: the old minute moved left by three */
    c[SC_RATE_INGESTED] = 16;
    sc_rates_tick(&r, T0 + 3 * MIN_MS, c);
    s = series(&r, T0 + 3 * MIN_MS, c, "ingested");
    assert_int_equal(at(s, 59), 2);
    assert_int_equal(at(s, 58), 0);
    assert_int_equal(at(s, 57), 0);
    assert_int_equal(at(s, 56), 4);
    json_decref(s);
    s = series(&r, T0 + 3 * MIN_MS, c, "retried");
    for (size_t i = 0; i < SC_RATES_MINUTES; i++)
        assert_int_equal(at(s, i), 0);
    json_decref(s);
}

static void
test_hour_passes(void **state)
{
    struct sc_rates r;
    uint64_t c[SC_RATE_KINDS] = {0, 0, 0, 0};
    json_t *s;

    (void)state;
    memset(&r, 0, sizeof r);
    sc_rates_tick(&r, T0, c);
    c[SC_RATE_EXHAUSTED] = 5;
    sc_rates_tick(&r, T0 + 10, c);
    /* read 59 minutes later without a tick: still the first entry; 60 later: gone */
    s = series(&r, T0 + 59 * MIN_MS, c, "exhausted");
    assert_int_equal(at(s, 0), 5);
    json_decref(s);
    s = series(&r, T0 + 60 * MIN_MS, c, "exhausted");
    for (size_t i = 0; i < SC_RATES_MINUTES; i++)
        assert_int_equal(at(s, i), 0);
    json_decref(s);
    /* a tick two hours later clears the ring: the slot of the same minute-of-hour is not reused */
    sc_rates_tick(&r, T0 + 120 * MIN_MS, c);
    s = series(&r, T0 + 120 * MIN_MS, c, "exhausted");
    for (size_t i = 0; i < SC_RATES_MINUTES; i++)
        assert_int_equal(at(s, i), 0);
    json_decref(s);
}

static void
test_counter_restarts(void **state)
{
    struct sc_rates r;
    uint64_t c[SC_RATE_KINDS] = {0, 100, 0, 0};
    json_t *s;

    (void)state;
    memset(&r, 0, sizeof r);
    sc_rates_tick(&r, T0, c); /* 100 in this minute */
    c[SC_RATE_RETRIED] = 3; /* went down: counts from zero */
    sc_rates_tick(&r, T0 + 10, c);
    s = series(&r, T0 + 10, c, "retried");
    assert_int_equal(at(s, 59), 103);
    json_decref(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_credit_and_shift),
        cmocka_unit_test(test_hour_passes),
        cmocka_unit_test(test_counter_restarts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
