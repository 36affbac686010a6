/* test_wheel.c - timer wheel unit tests, with a million-entry run against a reference model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dlq.h"

#define MS_HOUR ((int64_t)3600 * 1000)
#define MS_DAY  (24 * MS_HOUR)
#define MS_YEAR (365 * MS_DAY)

/* ---- helpers ---------------------------------------------------------- */

/* A small deterministic generator (splitmix64), seeded per test. */
static uint64_t
rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t
rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

static uint64_t
test_seed(uint64_t dflt)
{
    const char *v = getenv("DLQ_TEST_SEED");

    return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static bool
test_quick(void)
{
    const char *v = getenv("DLQ_TEST_QUICK");

    return v && *v && strcmp(v, "0") != 0;
}

/* floor(t / tick) * tick, saturated: the first ms of t's tick. */
static int64_t
tick_floor(int64_t t, int64_t tick)
{
    int64_t q = t / tick;

    if (t % tick < 0)
        q--;
    if (q < INT64_MIN / tick)
        return INT64_MIN;
    return q * tick;
}

/* Records what fired, and at which run's now. */
struct rec {
    int64_t now;
    size_t n;
    size_t cap;
    struct dlq_wheel_entry **e;
    int64_t *at;
};

static void
rec_init(struct rec *r, size_t cap)
{
    r->now = 0;
    r->n = 0;
    r->cap = cap;
    r->e = calloc(cap, sizeof(*r->e));
    r->at = calloc(cap, sizeof(*r->at));
    assert_non_null(r->e);
    assert_non_null(r->at);
}

static void
rec_destroy(struct rec *r)
{
    free(r->e);
    free(r->at);
}

static void
rec_cb(struct dlq_wheel_entry *e, void *ctx)
{
    struct rec *r = ctx;

    assert_false(dlq_wheel_entry_scheduled(e));
    assert_true(e->due <= r->now);
    assert_true(r->n < r->cap);
    r->e[r->n] = e;
    r->at[r->n] = r->now;
    r->n++;
}

static size_t
rec_run(struct dlq_wheel *w, struct rec *r, int64_t now, size_t max)
{
    r->now = now;
    return dlq_wheel_run(w, now, max, rec_cb, r);
}

/*
 * A small brute-force model: entries with their due times, checked after
 * every run (everything due fired exactly once, nothing else did) and after
 * every change (dlq_wheel_next_due() is a lower bound that never spins).
 */
struct bitem {
    struct dlq_wheel_entry ent;
    int64_t due;
    bool live;
    bool ahead; /* due after the last run's now when scheduled */
    unsigned fires;
};

struct bmodel {
    struct dlq_wheel *w;
    struct bitem *it;
    size_t n;
    int64_t tick;
    int64_t now;   /* now of the last run */
    bool exact;    /* no cancel so far: next_due must be exact */
    bool lag;      /* a bounded run hit its limit: the wheel may be behind now */
    int64_t last_fired; /* tick (first ms) of the latest entry fired in this run */
};

static void
bmodel_init(struct bmodel *m, size_t n, int64_t tick, int64_t now)
{
    m->w = dlq_wheel_new(tick, now);
    m->it = calloc(n, sizeof(*m->it));
    assert_non_null(m->it);
    m->n = n;
    m->tick = tick;
    m->now = now;
    m->exact = true;
    m->lag = false;
    for (size_t i = 0; i < n; i++)
        dlq_wheel_entry_init(&m->it[i].ent);
}

static void
bmodel_destroy(struct bmodel *m)
{
    dlq_wheel_free(m->w);
    free(m->it);
}

static void
bmodel_cb(struct dlq_wheel_entry *e, void *ctx)
{
    struct bmodel *m = ctx;
    struct bitem *it = (struct bitem *)((char *)e - offsetof(struct bitem, ent));

    assert_true(it->live);
    assert_true(it->due <= m->now);
    assert_int_equal(e->due, it->due);
    it->live = false;
    it->fires++;
    if (tick_floor(it->due, m->tick) > m->last_fired)
        m->last_fired = tick_floor(it->due, m->tick);
}

static void
bmodel_check_next_due(struct bmodel *m, bool after_run)
{
    int64_t nd = dlq_wheel_next_due(m->w);
    int64_t bmin = INT64_MAX;
    size_t live = 0;

    for (size_t i = 0; i < m->n; i++) {
        if (m->it[i].live) {
            live++;
            if (m->it[i].due < bmin)
                bmin = m->it[i].due;
        }
    }
    assert_int_equal(dlq_wheel_count(m->w), live);
    if (live == 0) {
        assert_true(nd == INT64_MAX);
        return;
    }
    /* never after the earliest due, never before the current tick */
    assert_true(nd <= (bmin > m->now ? bmin : m->now));
    if (m->lag)
        return;
    assert_true(nd >= tick_floor(m->now, m->tick));
    if (after_run && bmin > m->now)
        assert_true(nd > m->now);
    if (m->exact) {
        int64_t cur = tick_floor(m->now, m->tick);

        assert_true(nd == (bmin > cur ? bmin : cur));
    }
}

static void
bmodel_schedule(struct bmodel *m, size_t i, int64_t due)
{
    if (m->it[i].live)
        m->exact = false; /* a move is a cancel */
    dlq_wheel_schedule(m->w, &m->it[i].ent, due);
    assert_true(dlq_wheel_entry_scheduled(&m->it[i].ent));
    m->it[i].due = due;
    m->it[i].live = true;
    m->it[i].ahead = due > m->now;
    bmodel_check_next_due(m, false);
}

static void
bmodel_cancel(struct bmodel *m, size_t i)
{
    dlq_wheel_cancel(m->w, &m->it[i].ent);
    assert_false(dlq_wheel_entry_scheduled(&m->it[i].ent));
    m->it[i].live = false;
    m->exact = false;
    bmodel_check_next_due(m, false);
}

static size_t
bmodel_run(struct bmodel *m, int64_t now)
{
    size_t n;

    m->now = now;
    m->lag = false;
    m->last_fired = INT64_MIN;
    n = dlq_wheel_run(m->w, now, 0, bmodel_cb, m);
    for (size_t i = 0; i < m->n; i++) {
        if (m->it[i].live)
            assert_true(m->it[i].due > now); /* everything due fired */
    }
    bmodel_check_next_due(m, true);
    return n;
}

/*
 * bmodel_run_max() runs with a limit: at most max fire, and they are the
 * earliest: no entry left due belongs to an earlier tick than one fired.
 * That holds for entries filed ahead of the wheel; one filed for a tick the
 * wheel has passed counts as due at the current tick (they fire first, in
 * the order they were filed), so the check leaves those out.
 */
static size_t
bmodel_run_max(struct bmodel *m, int64_t now, size_t max)
{
    size_t n;
    bool left = false;

    m->now = now;
    m->last_fired = INT64_MIN;
    n = dlq_wheel_run(m->w, now, max, bmodel_cb, m);
    assert_true(n <= max);
    for (size_t i = 0; i < m->n; i++) {
        if (m->it[i].live && m->it[i].due <= now) {
            left = true;
            if (m->it[i].ahead)
                assert_true(tick_floor(m->it[i].due, m->tick) >= m->last_fired);
        }
    }
    if (left)
        assert_int_equal(n, max);
    if (n == max) {
        /* the wheel may have stopped short of now: its tick lags behind */
        m->lag = true;
        m->exact = false;
    }
    bmodel_check_next_due(m, !left);
    return n;
}

/* ---- basics ------------------------------------------------------------ */

static void
test_empty(void **state)
{
    struct dlq_wheel *w;
    struct dlq_wheel_entry e;
    struct rec r;

    (void)state;
    dlq_wheel_free(NULL);
    rec_init(&r, 4);
    w = dlq_wheel_new(1, 12345);
    assert_int_equal(dlq_wheel_count(w), 0);
    assert_true(dlq_wheel_next_due(w) == INT64_MAX);
    assert_int_equal(rec_run(w, &r, 12345, 0), 0);
    assert_int_equal(rec_run(w, &r, 99999999, 0), 0);
    dlq_wheel_entry_init(&e);
    assert_false(dlq_wheel_entry_scheduled(&e));
    dlq_wheel_cancel(w, &e); /* safe on an unscheduled entry */
    assert_int_equal(dlq_wheel_count(w), 0);
    dlq_wheel_free(w);

    /* out-of-range ticks are clamped, not rejected */
    w = dlq_wheel_new(0, 0);
    dlq_wheel_schedule(w, &e, 5);
    assert_int_equal(rec_run(w, &r, 4, 0), 0);
    assert_int_equal(rec_run(w, &r, 5, 0), 1);
    dlq_wheel_free(w);
    w = dlq_wheel_new(100000, 0);
    dlq_wheel_schedule(w, &e, 1500);
    assert_true(dlq_wheel_next_due(w) <= 1500);
    assert_int_equal(rec_run(w, &r, 1499, 0), 0);
    assert_int_equal(rec_run(w, &r, 1500, 0), 1);
    dlq_wheel_free(w);
    rec_destroy(&r);
}

static void
test_schedule_cancel(void **state)
{
    struct dlq_wheel *w = dlq_wheel_new(1, 1000);
    struct dlq_wheel_entry a, b, c;
    struct rec r;

    (void)state;
    rec_init(&r, 16);
    dlq_wheel_entry_init(&a);
    dlq_wheel_entry_init(&b);
    dlq_wheel_entry_init(&c);

    dlq_wheel_schedule(w, &a, 1010);
    assert_true(dlq_wheel_entry_scheduled(&a));
    assert_int_equal(dlq_wheel_count(w), 1);
    assert_int_equal(dlq_wheel_next_due(w), 1010);

    /* re-scheduling moves, it does not duplicate */
    dlq_wheel_schedule(w, &a, 1020);
    assert_int_equal(dlq_wheel_count(w), 1);
    assert_int_equal(dlq_wheel_next_due(w), 1020);
    dlq_wheel_schedule(w, &a, 1000 + 5 * MS_DAY); /* to a high level and back */
    assert_int_equal(dlq_wheel_next_due(w), 1000 + 5 * MS_DAY);
    dlq_wheel_schedule(w, &a, 1020);
    assert_int_equal(dlq_wheel_count(w), 1);

    dlq_wheel_schedule(w, &b, 1005);
    assert_int_equal(dlq_wheel_count(w), 2);
    assert_int_equal(dlq_wheel_next_due(w), 1005);
    dlq_wheel_cancel(w, &b);
    assert_false(dlq_wheel_entry_scheduled(&b));
    assert_int_equal(dlq_wheel_count(w), 1);
    dlq_wheel_cancel(w, &b); /* twice is a no-op */
    assert_int_equal(dlq_wheel_count(w), 1);
    assert_int_equal(dlq_wheel_next_due(w), 1020); /* emptied slot forgotten */

    /* a cancelled far entry never fires */
    dlq_wheel_schedule(w, &c, 1000 + 3 * MS_YEAR);
    dlq_wheel_cancel(w, &c);

    assert_int_equal(rec_run(w, &r, 1005, 0), 0);
    assert_int_equal(rec_run(w, &r, 1019, 0), 0);
    assert_int_equal(rec_run(w, &r, 1020, 0), 1);
    assert_ptr_equal(r.e[0], &a);
    assert_false(dlq_wheel_entry_scheduled(&a));
    assert_int_equal(dlq_wheel_count(w), 0);
    assert_true(dlq_wheel_next_due(w) == INT64_MAX);
    assert_int_equal(rec_run(w, &r, 1000 + 10 * MS_YEAR, 0), 0);

    /* two entries in one slot: the slot stays occupied until both leave */
    dlq_wheel_schedule(w, &a, 1000 + 10 * MS_YEAR + 50);
    dlq_wheel_schedule(w, &b, 1000 + 10 * MS_YEAR + 50);
    dlq_wheel_cancel(w, &a);
    assert_int_equal(dlq_wheel_count(w), 1);
    assert_true(dlq_wheel_next_due(w) <= 1000 + 10 * MS_YEAR + 50);
    dlq_wheel_cancel(w, &b);
    assert_true(dlq_wheel_next_due(w) == INT64_MAX);
    assert_int_equal(rec_run(w, &r, 1000 + 11 * MS_YEAR, 0), 0);

    rec_destroy(&r);
    dlq_wheel_free(w);
}

/* Freeing a wheel with entries still linked must not touch them. */
static void
test_free_with_entries(void **state)
{
    struct dlq_wheel *w = dlq_wheel_new(10, 0);
    struct dlq_wheel_entry e[8];

    (void)state;
    for (size_t i = 0; i < SC_ARRAY_LEN(e); i++) {
        dlq_wheel_entry_init(&e[i]);
        dlq_wheel_schedule(w, &e[i], (int64_t)i * MS_DAY);
    }
    assert_int_equal(dlq_wheel_count(w), 8);
    dlq_wheel_free(w);
}

/* ---- order and lateness ------------------------------------------------ */

static void
test_fire_order(void **state)
{
    enum { N = 5000 };
    static const int64_t ticks[] = {1, 10, 1000};
    struct dlq_wheel_entry *e = calloc(N, sizeof(*e));
    uint64_t seed = test_seed(11);
    struct rec r;

    (void)state;
    assert_non_null(e);
    rec_init(&r, N);
    for (size_t t = 0; t < SC_ARRAY_LEN(ticks); t++) {
        int64_t tick = ticks[t];
        struct dlq_wheel *w = dlq_wheel_new(tick, 0);

        /* dues spread over ms to days, so several levels are involved */
        for (size_t i = 0; i < N; i++) {
            int64_t span = (int64_t)1 << rng_below(&seed, 30);

            dlq_wheel_entry_init(&e[i]);
            dlq_wheel_schedule(w, &e[i], 1 + (int64_t)rng_below(&seed, (uint64_t)span));
        }
        r.n = 0;
        assert_int_equal(rec_run(w, &r, (int64_t)1 << 30, 0), N);
        for (size_t i = 1; i < N; i++)
            assert_true(tick_floor(r.e[i - 1]->due, tick) <= tick_floor(r.e[i]->due, tick));
        if (tick == 1) {
            for (size_t i = 1; i < N; i++)
                assert_true(r.e[i - 1]->due <= r.e[i]->due);
        }
        assert_int_equal(dlq_wheel_count(w), 0);
        dlq_wheel_free(w);
    }
    rec_destroy(&r);
    free(e);
}

/*
 * Run every tick (off phase with the tick grid): no entry fires before its
 * due time or a tick or more after it. Run every ms: each fires exactly at
 * its due time.
 */
static void
test_lateness(void **state)
{
    enum { N = 3000 };
    static const int64_t ticks[] = {1, 10, 7, 1000};
    struct dlq_wheel_entry *e = calloc(N, sizeof(*e));
    uint64_t seed = test_seed(12);
    struct rec r;

    (void)state;
    assert_non_null(e);
    rec_init(&r, N);
    for (size_t t = 0; t < SC_ARRAY_LEN(ticks); t++) {
        int64_t tick = ticks[t];
        int64_t start = -20 * tick - 3; /* negative, not on the grid */
        int64_t end = start + 400 * tick;
        struct dlq_wheel *w;

        for (int pass = 0; pass < 2; pass++) {
            int64_t step = pass == 0 ? tick : 1;

            w = dlq_wheel_new(tick, start);
            for (size_t i = 0; i < N; i++) {
                int64_t due = start + tick + 1 +
                              (int64_t)rng_below(&seed, (uint64_t)(end - start - 3 * tick));

                if (i % 10 == 0)
                    due = tick_floor(due, tick); /* on a tick boundary */
                if (i % 10 == 1)
                    due = tick_floor(due, tick) + tick - 1; /* last ms of a tick */
                dlq_wheel_entry_init(&e[i]);
                dlq_wheel_schedule(w, &e[i], due);
            }
            r.n = 0;
            for (int64_t now = start; now <= end; now += step)
                rec_run(w, &r, now, 0);
            assert_int_equal(r.n, N);
            assert_int_equal(dlq_wheel_count(w), 0);
            for (size_t i = 0; i < r.n; i++) {
                assert_true(r.e[i]->due <= r.at[i]);
                assert_true(r.at[i] < r.e[i]->due + step);
                if (step == 1)
                    assert_int_equal(r.at[i], r.e[i]->due);
            }
            dlq_wheel_free(w);
        }
    }
    rec_destroy(&r);
    free(e);
}

static void
test_immediate(void **state)
{
    struct dlq_wheel *w = dlq_wheel_new(10, 1000);
    struct dlq_wheel_entry a, b, c, d, f;
    struct rec r;

    (void)state;
    rec_init(&r, 16);
    dlq_wheel_entry_init(&a);
    dlq_wheel_entry_init(&b);
    dlq_wheel_entry_init(&c);
    dlq_wheel_entry_init(&d);
    dlq_wheel_entry_init(&f);

    dlq_wheel_schedule(w, &a, 995);       /* an earlier tick */
    dlq_wheel_schedule(w, &b, 1000);      /* exactly now */
    dlq_wheel_schedule(w, &c, INT64_MIN); /* the distant past */
    dlq_wheel_schedule(w, &d, 1003);      /* later in the current tick */
    assert_true(dlq_wheel_next_due(w) <= 1000);
    assert_true(dlq_wheel_next_due(w) >= 1000); /* not before the current tick */

    /* due ones fire on the next run, even with no time passing */
    assert_int_equal(rec_run(w, &r, 1000, 0), 3);
    assert_int_equal(dlq_wheel_count(w), 1);
    assert_int_equal(dlq_wheel_next_due(w), 1003); /* exact within the tick */
    assert_int_equal(rec_run(w, &r, 1002, 0), 0);
    assert_int_equal(rec_run(w, &r, 1003, 0), 1);
    assert_ptr_equal(r.e[3], &d);

    /* after the wheel moved on, "now" and the past are immediate again */
    assert_int_equal(rec_run(w, &r, 2000, 0), 0);
    dlq_wheel_schedule(w, &f, 2000);
    dlq_wheel_schedule(w, &a, 1500);
    assert_int_equal(dlq_wheel_next_due(w), 2000);
    assert_int_equal(rec_run(w, &r, 2000, 0), 2);
    assert_int_equal(dlq_wheel_count(w), 0);
    rec_destroy(&r);
    dlq_wheel_free(w);
}

/* A clock that goes backwards fires nothing early. */
static void
test_clock_backwards(void **state)
{
    struct bmodel m;

    (void)state;
    bmodel_init(&m, 4, 10, 1000);
    bmodel_schedule(&m, 0, 995);
    bmodel_schedule(&m, 1, 1005);
    bmodel_schedule(&m, 2, 1500);
    /* a run in the past: the past-due entry is not due at 900 */
    m.now = 900;
    assert_int_equal(dlq_wheel_run(m.w, 900, 0, bmodel_cb, &m), 0);
    m.now = 996;
    assert_int_equal(dlq_wheel_run(m.w, 996, 0, bmodel_cb, &m), 1);
    assert_int_equal(m.it[0].fires, 1);
    m.exact = false;
    assert_int_equal(bmodel_run(&m, 1004), 0);
    assert_int_equal(bmodel_run(&m, 1005), 1);
    assert_int_equal(bmodel_run(&m, 1400), 0);
    m.now = 1200;
    assert_int_equal(dlq_wheel_run(m.w, 1200, 0, bmodel_cb, &m), 0);
    assert_int_equal(bmodel_run(&m, 1500), 1);
    bmodel_destroy(&m);
}

/* ---- callbacks --------------------------------------------------------- */

struct cbctx {
    struct dlq_wheel *w;
    int64_t now;
    int64_t period;
    size_t fired;
    struct dlq_wheel_entry *others;
    size_t nothers;
    int mode;
};

static void
rearm_cb(struct dlq_wheel_entry *e, void *ctx)
{
    struct cbctx *c = ctx;

    assert_true(e->due <= c->now);
    c->fired++;
    dlq_wheel_cancel(c->w, e); /* cancelling itself is a harmless no-op */
    dlq_wheel_schedule(c->w, e, e->due + c->period);
}

static void
test_reschedule_in_callback(void **state)
{
    struct dlq_wheel_entry e;
    struct cbctx c = {0};

    (void)state;
    dlq_wheel_entry_init(&e);

    /* periodic: every 7 ms, run every ms */
    c.w = dlq_wheel_new(1, 0);
    c.period = 7;
    dlq_wheel_schedule(c.w, &e, 7);
    for (c.now = 0; c.now <= 100; c.now++) {
        size_t before = c.fired;

        dlq_wheel_run(c.w, c.now, 0, rearm_cb, &c);
        assert_int_equal(c.fired - before, c.now > 0 && c.now % 7 == 0 ? 1 : 0);
    }
    assert_int_equal(c.fired, 14);
    assert_int_equal(dlq_wheel_count(c.w), 1);
    dlq_wheel_free(c.w);

    /* re-armed at or before now: fires once per run, never loops */
    for (int64_t tick = 1; tick <= 1000; tick *= 10) {
        c.w = dlq_wheel_new(tick, 0);
        c.fired = 0;
        c.period = 0;
        dlq_wheel_entry_init(&e); /* it was left linked in a freed wheel */
        dlq_wheel_schedule(c.w, &e, 0);
        for (int i = 0; i < 5; i++) {
            c.now = 0;
            assert_int_equal(dlq_wheel_run(c.w, 0, 0, rearm_cb, &c), 1);
        }
        c.period = -3;
        c.now = 5000;
        assert_int_equal(dlq_wheel_run(c.w, 5000, 0, rearm_cb, &c), 1);
        assert_int_equal(dlq_wheel_run(c.w, 5000, 0, rearm_cb, &c), 1);
        assert_int_equal(dlq_wheel_count(c.w), 1);
        assert_true(dlq_wheel_next_due(c.w) <= 5000);
        dlq_wheel_free(c.w);
    }

    /* catching up after a stall: each later due time fires once, in order */
    c.w = dlq_wheel_new(1, 0);
    c.fired = 0;
    c.period = 10;
    dlq_wheel_entry_init(&e);
    dlq_wheel_schedule(c.w, &e, 10);
    c.now = 100;
    while (dlq_wheel_run(c.w, 100, 0, rearm_cb, &c) > 0)
        ;
    assert_int_equal(c.fired, 10);
    assert_int_equal(e.due, 110);

    /* re-armed at its own (past) due time in the middle of a catch-up run */
    c.fired = 0;
    c.period = 0;
    dlq_wheel_schedule(c.w, &e, 150);
    c.now = 5000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(dlq_wheel_run(c.w, 5000, 0, rearm_cb, &c), 1);
    assert_int_equal(e.due, 150);
    assert_true(dlq_wheel_next_due(c.w) <= 5000);
    dlq_wheel_free(c.w);
}

/*
 * mode 0: the first entry to fire cancels every other one.
 * mode 1: each entry cancels its partner (2k cancels 2k+1 and back).
 * mode 2: each entry re-schedules its partner an hour later.
 */
static void
cancel_cb(struct dlq_wheel_entry *e, void *ctx)
{
    struct cbctx *c = ctx;
    size_t i = (size_t)(e - c->others);

    assert_true(i < c->nothers);
    assert_true(e->due <= c->now);
    c->fired++;
    switch (c->mode) {
    case 0:
        for (size_t k = 0; k < c->nothers; k++)
            dlq_wheel_cancel(c->w, &c->others[k]);
        break;
    case 1:
        dlq_wheel_cancel(c->w, &c->others[i ^ 1]);
        break;
    case 2:
        dlq_wheel_schedule(c->w, &c->others[i ^ 1], c->now + MS_HOUR);
        break;
    }
}

static void
test_cancel_in_callback(void **state)
{
    enum { N = 100 };
    struct dlq_wheel_entry e[N];
    struct cbctx c = {0};

    (void)state;
    c.others = e;
    c.nothers = N;
    for (c.mode = 0; c.mode < 3; c.mode++) {
        for (int spread = 0; spread < 2; spread++) {
            c.w = dlq_wheel_new(1, 0);
            c.fired = 0;
            for (size_t i = 0; i < N; i++) {
                dlq_wheel_entry_init(&e[i]);
                /* all in one slot, or over many ticks that a jump makes due at once */
                dlq_wheel_schedule(c.w, &e[i], spread ? 50 + (int64_t)i * 37 : 50);
            }
            c.now = spread ? 50 + N * 37 : 50;
            dlq_wheel_run(c.w, c.now, 0, cancel_cb, &c);
            assert_int_equal(c.fired, c.mode == 0 ? 1 : N / 2);
            assert_int_equal(dlq_wheel_count(c.w), c.mode == 2 ? N / 2 : 0);
            if (c.mode == 2) {
                c.now += MS_HOUR - 1;
                assert_int_equal(dlq_wheel_run(c.w, c.now, 0, cancel_cb, &c), 0);
                c.now++;
                c.mode = 3; /* plain firing */
                assert_int_equal(dlq_wheel_run(c.w, c.now, 0, cancel_cb, &c), N / 2);
                c.mode = 2;
            }
            assert_int_equal(dlq_wheel_count(c.w), 0);
            dlq_wheel_free(c.w);
        }
    }
}

/* ---- bounded drain ----------------------------------------------------- */

static void
test_bounded_drain(void **state)
{
    enum { N = 10000, MAX = 100 };
    struct dlq_wheel_entry *e = calloc(N, sizeof(*e));
    struct dlq_wheel_entry late;
    struct rec r;

    (void)state;
    assert_non_null(e);
    rec_init(&r, N + 1);
    for (int same_tick = 0; same_tick < 2; same_tick++) {
        struct dlq_wheel *w = dlq_wheel_new(1, 0);

        /* scattered insertion order; distinct dues 1..N, or all at 5000 */
        for (size_t i = 0; i < N; i++) {
            dlq_wheel_entry_init(&e[i]);
            dlq_wheel_schedule(w, &e[i], same_tick ? 5000 : 1 + (int64_t)((i * 7919) % N));
        }
        r.n = 0;
        /* a stall: the loop wakes up long after everything was due */
        for (size_t run = 0; run < N / MAX; run++) {
            assert_true(dlq_wheel_next_due(w) <= 20000);
            assert_int_equal(rec_run(w, &r, 20000, MAX), MAX);
            assert_int_equal(dlq_wheel_count(w), N - (run + 1) * MAX);
            for (size_t k = run * MAX; k < (run + 1) * MAX; k++) {
                if (same_tick)
                    assert_int_equal(r.e[k]->due, 5000);
                else
                    assert_int_equal(r.e[k]->due, (int64_t)k + 1); /* earliest first */
            }
            if (!same_tick && run == 49) {
                /* a new past-due entry goes ahead of the backlog's later ticks */
                dlq_wheel_entry_init(&late);
                dlq_wheel_schedule(w, &late, 3);
                assert_int_equal(rec_run(w, &r, 20000, 1), 1);
                assert_ptr_equal(r.e[r.n - 1], &late);
                r.n--;
            }
        }
        assert_int_equal(rec_run(w, &r, 20000, MAX), 0);
        assert_int_equal(dlq_wheel_count(w), 0);
        assert_true(dlq_wheel_next_due(w) == INT64_MAX);
        dlq_wheel_free(w);
    }

    /* bounded runs while time keeps moving: still earliest first, never early */
    {
        struct dlq_wheel *w = dlq_wheel_new(1, 0);
        int64_t now = 0;

        for (size_t i = 0; i < N; i++) {
            dlq_wheel_entry_init(&e[i]);
            dlq_wheel_schedule(w, &e[i], 1 + (int64_t)((i * 7919) % N));
        }
        r.n = 0;
        while (r.n < N) {
            now += 150;
            assert_true(rec_run(w, &r, now, 40) <= 40);
        }
        for (size_t k = 0; k < N; k++)
            assert_int_equal(r.e[k]->due, (int64_t)k + 1);
        dlq_wheel_free(w);
    }
    rec_destroy(&r);
    free(e);
}

/* ---- big jumps and extreme times -------------------------------------- */

static void
test_big_jumps(void **state)
{
    const int64_t start = 1000;
    const int64_t dues[] = {start + MS_HOUR, start + MS_DAY, start + 40 * MS_DAY,
                            start + MS_YEAR, start + 100 * MS_YEAR, INT64_MAX / 2};
    enum { ND = sizeof(dues) / sizeof(dues[0]) };
    struct dlq_wheel_entry e[ND];
    struct dlq_wheel *w;
    struct rec r;

    (void)state;
    rec_init(&r, 20000);

    /* an empty wheel jumps years at a time (stepping would never finish) */
    w = dlq_wheel_new(1, start);
    for (int64_t now = start; now < start + 100000 * MS_YEAR; now += MS_YEAR)
        assert_int_equal(rec_run(w, &r, now, 0), 0);
    assert_int_equal(rec_run(w, &r, INT64_MAX, 0), 0);
    dlq_wheel_free(w);

    /* sparse: each entry fires at the first run at or after its due time */
    for (int64_t tick = 1; tick <= 1000; tick *= 10) {
        w = dlq_wheel_new(tick, start);
        for (size_t i = 0; i < ND; i++) {
            dlq_wheel_entry_init(&e[i]);
            dlq_wheel_schedule(w, &e[i], dues[i]);
        }
        r.n = 0;
        for (size_t i = 0; i < ND; i++) {
            assert_int_equal(dlq_wheel_next_due(w), dues[i]); /* exact at every level */
            assert_int_equal(rec_run(w, &r, dues[i] - 1, 0), 0);
            assert_int_equal(dlq_wheel_next_due(w), dues[i]);
            assert_int_equal(rec_run(w, &r, dues[i], 0), 1);
            assert_ptr_equal(r.e[i], &e[i]);
        }
        assert_int_equal(dlq_wheel_count(w), 0);

        /* all at once, in order */
        for (size_t i = 0; i < ND; i++)
            dlq_wheel_schedule(w, &e[i], dues[ND - 1] + dues[i] - start);
        r.n = 0;
        assert_int_equal(rec_run(w, &r, INT64_MAX, 0), ND);
        for (size_t i = 0; i < ND; i++)
            assert_ptr_equal(r.e[i], &e[i]);
        dlq_wheel_free(w);
    }

    /* dense: 20000 entries over a day, then a two-day jump */
    {
        struct dlq_wheel_entry *d = calloc(20000, sizeof(*d));
        uint64_t seed = test_seed(13);

        assert_non_null(d);
        w = dlq_wheel_new(1, start);
        for (size_t i = 0; i < 20000; i++) {
            dlq_wheel_entry_init(&d[i]);
            dlq_wheel_schedule(w, &d[i], start + (int64_t)rng_below(&seed, MS_DAY));
        }
        r.n = 0;
        assert_int_equal(rec_run(w, &r, start + 2 * MS_DAY, 0), 20000);
        for (size_t i = 1; i < 20000; i++)
            assert_true(r.e[i - 1]->due <= r.e[i]->due);
        dlq_wheel_free(w);
        free(d);
    }
    rec_destroy(&r);
}

static void
test_extreme_times(void **state)
{
    static const int64_t ticks[] = {1, 7, 1000};
    const int64_t dues[] = {INT64_MIN, INT64_MIN + 1, INT64_MIN + 3000, -1001, -1000, -999,
                            -7, -1, 0, 1, 6, 7, 999, 1000, INT64_MAX / 2 - 1, INT64_MAX / 2,
                            INT64_MAX - 1000, INT64_MAX - 1, INT64_MAX};
    const int64_t runs[] = {INT64_MIN + 5, INT64_MIN + 2999, INT64_MIN + 3000, -2000, -1001,
                            -1000, -999, -8, -7, -2, -1, 0, 1, 5, 6, 7, 998, 999, 1000,
                            INT64_MAX / 4, INT64_MAX / 2 - 1, INT64_MAX / 2, INT64_MAX - 1001,
                            INT64_MAX - 1000, INT64_MAX - 2, INT64_MAX - 1, INT64_MAX};
    enum { ND = sizeof(dues) / sizeof(dues[0]) };

    (void)state;
    for (size_t t = 0; t < SC_ARRAY_LEN(ticks); t++) {
        for (int start_far = 0; start_far < 2; start_far++) {
            struct bmodel m;
            int64_t start = start_far ? INT64_MIN : -2500;

            bmodel_init(&m, ND, ticks[t], start);
            m.exact = false; /* next_due is clamped to the current tick here */
            for (size_t i = 0; i < ND; i++)
                bmodel_schedule(&m, i, dues[i]);
            for (size_t k = 0; k < SC_ARRAY_LEN(runs); k++) {
                if (runs[k] >= start)
                    bmodel_run(&m, runs[k]);
            }
            for (size_t i = 0; i < ND; i++)
                assert_int_equal(m.it[i].fires, 1);
            assert_int_equal(dlq_wheel_count(m.w), 0);
            bmodel_destroy(&m);
        }
    }
}

/* ---- next_due and bounded runs against a brute-force model ------------- */

static void
test_next_due_bound(void **state)
{
    enum { N = 500, STEPS = 20000 };
    static const int64_t ticks[] = {1, 10, 1000};
    uint64_t seed = test_seed(14);

    (void)state;
    for (size_t t = 0; t < SC_ARRAY_LEN(ticks); t++) {
        for (int with_cancel = 0; with_cancel < 2; with_cancel++) {
            struct bmodel m;
            int64_t now = -(int64_t)rng_below(&seed, MS_DAY);

            bmodel_init(&m, N, ticks[t], now);
            for (size_t step = 0; step < STEPS; step++) {
                uint64_t op = rng_below(&seed, 10);
                size_t i = (size_t)rng_below(&seed, N);

                if (op < 5) {
                    int64_t span = (int64_t)1 << rng_below(&seed, 32);
                    int64_t due = now + (int64_t)rng_below(&seed, (uint64_t)span);

                    if (rng_below(&seed, 20) == 0)
                        due = now - (int64_t)rng_below(&seed, 5000); /* past */
                    if (!with_cancel && m.it[i].live)
                        continue;
                    bmodel_schedule(&m, i, due);
                } else if (op < 6) {
                    if (with_cancel)
                        bmodel_cancel(&m, i);
                } else {
                    /* wake up at next_due half the time, else somewhere else */
                    int64_t nd = dlq_wheel_next_due(m.w);

                    if (op < 8 && nd != INT64_MAX && nd > now)
                        now = nd;
                    else if (rng_below(&seed, 100) == 0)
                        now += (int64_t)rng_below(&seed, 10 * MS_DAY);
                    else
                        now += (int64_t)rng_below(&seed, 3 * (uint64_t)ticks[t]);
                    /* now and then a bounded run, as after a stall */
                    if (rng_below(&seed, 4) == 0)
                        bmodel_run_max(&m, now, 1 + (size_t)rng_below(&seed, 20));
                    else
                        bmodel_run(&m, now);
                }
            }
            bmodel_destroy(&m);
        }
    }
}

/* ---- one million entries against a reference model -------------------- */

#define NOPOS UINT32_MAX

struct ritem {
    struct dlq_wheel_entry ent;
    int64_t due;
    uint32_t pos;   /* index in the model's heap; NOPOS when not scheduled */
    uint32_t carry; /* run (1-based) whose callback filed it already due, else 0 */
};

struct rmodel {
    struct dlq_wheel *w;
    struct ritem *it;
    uint32_t n;
    uint32_t *heap; /* min-heap of live item indices by due */
    uint32_t len;
    int64_t tick;
    int64_t now;
    uint64_t seed;
    size_t fired;
    size_t armed;     /* schedules of an entry that was not scheduled */
    size_t moved;     /* schedules of an entry that was */
    size_t cancelled; /* cancels of a scheduled entry */
    size_t runs;
    size_t carried; /* entries that callbacks filed at or before now */
    bool quiet; /* callbacks only check, they schedule nothing */
};

static bool
heap_less(const struct rmodel *m, uint32_t a, uint32_t b)
{
    return m->it[m->heap[a]].due < m->it[m->heap[b]].due;
}

static void
heap_swap(struct rmodel *m, uint32_t a, uint32_t b)
{
    uint32_t t = m->heap[a];

    m->heap[a] = m->heap[b];
    m->heap[b] = t;
    m->it[m->heap[a]].pos = a;
    m->it[m->heap[b]].pos = b;
}

static void
heap_fix(struct rmodel *m, uint32_t i)
{
    while (i > 0 && heap_less(m, i, (i - 1) / 2)) {
        heap_swap(m, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, s = i;

        if (l < m->len && heap_less(m, l, s))
            s = l;
        if (r < m->len && heap_less(m, r, s))
            s = r;
        if (s == i)
            break;
        heap_swap(m, i, s);
        i = s;
    }
}

static void
model_schedule(struct rmodel *m, uint32_t idx, int64_t due)
{
    struct ritem *it = &m->it[idx];

    dlq_wheel_schedule(m->w, &it->ent, due);
    it->due = due;
    it->carry = 0;
    if (it->pos == NOPOS) {
        m->armed++;
        it->pos = m->len;
        m->heap[m->len++] = idx;
    } else {
        m->moved++;
    }
    heap_fix(m, it->pos);
}

static void
model_remove(struct rmodel *m, uint32_t idx)
{
    uint32_t pos = m->it[idx].pos;

    m->it[idx].pos = NOPOS;
    m->len--;
    if (pos != m->len) {
        m->heap[pos] = m->heap[m->len];
        m->it[m->heap[pos]].pos = pos;
        heap_fix(m, pos);
    }
}

static void
model_cancel(struct rmodel *m, uint32_t idx)
{
    dlq_wheel_cancel(m->w, &m->it[idx].ent);
    if (m->it[idx].pos != NOPOS) {
        m->cancelled++;
        model_remove(m, idx);
    }
}

/* A delay from a ms to a few days, log-uniform-ish. */
static int64_t
model_delay(struct rmodel *m)
{
    uint64_t span = (uint64_t)1 << rng_below(&m->seed, 29);

    return (int64_t)rng_below(&m->seed, span);
}

static void
model_cb(struct dlq_wheel_entry *e, void *ctx)
{
    struct rmodel *m = ctx;
    struct ritem *it = (struct ritem *)((char *)e - offsetof(struct ritem, ent));
    uint32_t idx = (uint32_t)(it - m->it);
    uint64_t r = rng_next(&m->seed);
    uint32_t other;

    assert_true(it->pos != NOPOS); /* live: not cancelled, not fired already */
    assert_true(it->due <= m->now); /* never early */
    assert_true(e->due == it->due);
    model_remove(m, idx);
    m->fired++;
    if (m->quiet)
        return;

    /*
     * Callbacks re-arm, cancel and schedule. Entries they file already due
     * may fire in this run or must fire in the next one; the rest are in the
     * future.
     */
    switch (r % 64) {
    case 0:
    case 1:
    case 2:
        model_schedule(m, idx, m->now + 1 + model_delay(m));
        break;
    case 3:
        model_cancel(m, (uint32_t)rng_below(&m->seed, m->n));
        break;
    case 4:
        other = (uint32_t)rng_below(&m->seed, m->n);
        model_schedule(m, other, m->now + 1 + model_delay(m));
        break;
    case 5:
        model_schedule(m, idx, m->now - (int64_t)rng_below(&m->seed, 3 * (uint64_t)m->tick));
        m->it[idx].carry = (uint32_t)m->runs;
        m->carried++;
        break;
    }
}

/*
 * After a run, every entry due has fired, except those a callback of this
 * run filed already due (they fire in the next run at the latest). Returns
 * how many of those are left. Pops them off the heap to look, then puts
 * them back.
 */
static uint32_t
model_check_due(struct rmodel *m)
{
    uint32_t *left = NULL;
    uint32_t nleft = 0;

    while (m->len > 0 && m->it[m->heap[0]].due <= m->now) {
        uint32_t idx = m->heap[0];

        assert_int_equal(m->it[idx].carry, m->runs);
        left = realloc(left, (nleft + 1) * sizeof(*left));
        assert_non_null(left);
        left[nleft++] = idx;
        model_remove(m, idx);
    }
    for (uint32_t i = 0; i < nleft; i++) {
        m->it[left[i]].pos = m->len;
        m->heap[m->len++] = left[i];
        heap_fix(m, m->len - 1);
    }
    free(left);
    return nleft;
}

static void
model_check(struct rmodel *m, bool after_run)
{
    int64_t nd = dlq_wheel_next_due(m->w);
    uint32_t left = after_run ? model_check_due(m) : 0;

    assert_int_equal(dlq_wheel_count(m->w), m->len);
    if (m->len == 0) {
        assert_true(nd == INT64_MAX);
        return;
    }
    int64_t top = m->it[m->heap[0]].due;

    assert_true(nd <= (top > m->now ? top : m->now));
    assert_true(nd >= tick_floor(m->now, m->tick));
    if (after_run && left == 0)
        assert_true(nd > m->now); /* nothing due: the loop timer will not spin */
}

static void
model_run(struct rmodel *m, int64_t now)
{
    m->now = now;
    m->runs++;
    dlq_wheel_run(m->w, now, 0, model_cb, m);
    model_check(m, true);
}

static void
random_run(uint32_t n, size_t ops, int64_t tick, int64_t start, uint64_t seed)
{
    struct rmodel m = {0};
    clock_t t0 = clock();

    m.n = n;
    m.tick = tick;
    m.now = start;
    m.seed = seed;
    m.w = dlq_wheel_new(tick, start);
    m.it = calloc(n, sizeof(*m.it));
    m.heap = calloc(n, sizeof(*m.heap));
    assert_non_null(m.it);
    assert_non_null(m.heap);
    for (uint32_t i = 0; i < n; i++) {
        dlq_wheel_entry_init(&m.it[i].ent);
        m.it[i].pos = NOPOS;
    }

    /* every entry starts scheduled */
    for (uint32_t i = 0; i < n; i++)
        model_schedule(&m, i, m.now + model_delay(&m));
    model_check(&m, false);

    for (size_t op = 0; op < ops; op++) {
        uint64_t r = rng_below(&m.seed, 100);
        uint32_t idx = (uint32_t)rng_below(&m.seed, n);

        /* half the time aim at a scheduled entry, so moves and cancels bite */
        if (m.len > 0 && rng_below(&m.seed, 2) == 0)
            idx = m.heap[rng_below(&m.seed, m.len)];

        if (r < 45) {
            int64_t due = m.now + model_delay(&m);
            uint64_t kind = rng_below(&m.seed, 10000);

            if (kind < 200)
                due = m.now - (int64_t)rng_below(&m.seed, 10000); /* already due */
            else if (kind < 210)
                due = m.now + (int64_t)rng_below(&m.seed, 50 * MS_YEAR);
            else if (kind < 211)
                due = INT64_MAX / 2 - (int64_t)rng_below(&m.seed, 1000);
            model_schedule(&m, idx, due);
        } else if (r < 55) {
            model_cancel(&m, idx);
        } else {
            uint64_t k = rng_below(&m.seed, 1000000);
            int64_t step = (int64_t)rng_below(&m.seed, 64);

            /* mostly ms steps, a few jumps of hours and days */
            if (k < 40)
                step = (int64_t)rng_below(&m.seed, 4 * MS_HOUR);
            else if (k < 43)
                step = (int64_t)rng_below(&m.seed, 3 * MS_DAY);
            model_run(&m, m.now + step);
            continue;
        }
        model_check(&m, false);
    }

    /* let everything fire: days, years, then the far end */
    size_t live_at_end = m.len;

    m.quiet = true;
    model_run(&m, m.now);
    model_run(&m, m.now + 4 * MS_DAY);
    model_run(&m, m.now + 100 * MS_YEAR);
    model_run(&m, INT64_MAX / 2);
    assert_int_equal(m.len, 0);
    assert_int_equal(dlq_wheel_count(m.w), 0);
    assert_int_equal(m.fired + m.cancelled, m.armed);
    for (uint32_t i = 0; i < n; i++)
        assert_false(dlq_wheel_entry_scheduled(&m.it[i].ent));

    print_message("random: %u entries, tick %lld ms, %zu ops, %zu runs, %zu fired "
                  "(%zu in the final jumps), %zu moved, %zu cancelled, %zu re-armed due, "
                  "seed %llu, %.2f s\n",
                  n, (long long)tick, ops, m.runs, m.fired, live_at_end, m.moved, m.cancelled,
                  m.carried,
                  (unsigned long long)seed, (double)(clock() - t0) / CLOCKS_PER_SEC);
    dlq_wheel_free(m.w);
    free(m.it);
    free(m.heap);
}

/* The key test: one million entries (fewer with DLQ_TEST_QUICK set). */
static void
test_random_million(void **state)
{
    uint32_t n = test_quick() ? 50000 : 1000000;
    uint64_t seed = test_seed(20240601);

    (void)state;
    /* starts a few hours before zero, so time crosses from negative to positive */
    random_run(n, 2 * (size_t)n, 1, -(int64_t)(seed % (6 * MS_HOUR)), seed);
}

/* Coarser ticks (odd and large) and a start far in the negative. */
static void
test_random_coarse(void **state)
{
    uint32_t n = test_quick() ? 10000 : 100000;
    uint64_t seed = test_seed(77);

    (void)state;
    random_run(n, 2 * (size_t)n, 7, INT64_MIN / 4 + 12345, seed);
    random_run(n, 2 * (size_t)n, 1000, -(int64_t)MS_DAY - 1, seed + 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_schedule_cancel),
        cmocka_unit_test(test_free_with_entries),
        cmocka_unit_test(test_fire_order),
        cmocka_unit_test(test_lateness),
        cmocka_unit_test(test_immediate),
        cmocka_unit_test(test_clock_backwards),
        cmocka_unit_test(test_reschedule_in_callback),
        cmocka_unit_test(test_cancel_in_callback),
        cmocka_unit_test(test_bounded_drain),
        cmocka_unit_test(test_big_jumps),
        cmocka_unit_test(test_extreme_times),
        cmocka_unit_test(test_next_due_bound),
        cmocka_unit_test(test_random_million),
        cmocka_unit_test(test_random_coarse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
