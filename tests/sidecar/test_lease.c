/* test_lease.c - unit tests of the lease planner (sidecar/lease.c) and dlq_partition_of(): single decisions, and members driving a simulated bucket with a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dlq.h"
#include "lease.h"

#define P 32
#define LEASE 3000
#define STEP 50         /* the simulation's clock step, ms */
#define MAXM 8
#define GAP 200         /* nudged read rounds at least this far apart (the driver's NUDGE_GAP_MS) */

/* ---- single decisions ------------------------------------------------------------------------ */

struct one {
    struct sc_lease_slot slots[P];
    struct sc_lease_member members[MAXM];
    uint8_t wants[MAXM][SC_LEASE_WANTS_BYTES(P)];
    struct sc_lease_table t;
};

static void
one_init(struct one *o, const char *me, const char *const *members, size_t n, int64_t now)
{
    memset(o, 0, sizeof(*o));
    for (size_t p = 0; p < P; p++)
        sc_lease_slot_init(&o->slots[p], now);
    for (size_t i = 0; i < n; i++)
        o->members[i] = (struct sc_lease_member){.id = members[i], .wants = o->wants[i]};
    sc_lease_members_sort(o->members, &n);
    o->t = (struct sc_lease_table){.me = me, .members = o->members, .nmembers = n,
                                   .slots = o->slots, .partitions = P, .lease_ms = LEASE};
}

/* FNV-1a 64 reference values (the published test vectors) mod P. */
static void
test_partition_of(void **state)
{
    (void)state;
    /* FNV-1a 64 of "" is the offset basis, of "a" 0xaf63dc4c8601ec8c, of "foobar" 0x85944171f73967e8. */
    assert_int_equal(dlq_partition_of("", 0, 1000), 0xcbf29ce484222325ULL % 1000);
    assert_int_equal(dlq_partition_of("a", 1, 1000), 0xaf63dc4c8601ec8cULL % 1000);
    assert_int_equal(dlq_partition_of("foobar", 6, 4096), 0x85944171f73967e8ULL % 4096);
    assert_int_equal(dlq_partition_of("foobar", 6, 0), 0);
    assert_int_equal(dlq_partition_of("foobar", 6, 1), 0);
    /* Every byte counts, and the spread over 32 partitions is even enough. */
    assert_int_not_equal(dlq_partition_of("task-1", 6, 1u << 31), dlq_partition_of("task-2", 6, 1u << 31));
    unsigned counts[P] = {0};
    char id[32];
    for (int i = 0; i < 32000; i++) {
        int n = snprintf(id, sizeof(id), "task-%d", i);
        counts[dlq_partition_of(id, (size_t)n, P)]++;
    }
    for (size_t p = 0; p < P; p++)
        assert_in_range(counts[p], 800, 1200);
}

/* Sorting drops repeats; the desired owner is sorted(ids)[p mod n]. */
static void
test_desired(void **state)
{
    static const char *const ids[] = {"c", "a", "b", "a"};
    struct one o;

    (void)state;
    one_init(&o, "a", ids, 4, 0);
    assert_int_equal(o.t.nmembers, 3);
    assert_string_equal(o.members[0].id, "a");
    assert_string_equal(o.members[2].id, "c");
    assert_int_equal(sc_lease_desired(&o.t, 0), 0);
    assert_int_equal(sc_lease_desired(&o.t, 4), 1);
    assert_int_equal(sc_lease_desired(&o.t, 5), 2);
    o.t.nmembers = 0;
    assert_int_equal(sc_lease_desired(&o.t, 5), -1);
}

/* Free and desired here: acquire; free and desired elsewhere: only after lease_ms free (orphan). */
static void
test_acquire_and_orphan(void **state)
{
    static const char *const ids[] = {"a", "b"};
    struct one o;

    (void)state;
    one_init(&o, "a", ids, 2, 0);
    sc_lease_view(&o.t, 0, "", 0, 1000);
    sc_lease_view(&o.t, 1, "", 0, 1000);
    assert_int_equal(sc_lease_plan_one(&o.t, 0, 1000), SC_LEASE_ACQUIRE);
    assert_int_equal(sc_lease_plan_one(&o.t, 1, 1000), SC_LEASE_NONE); /* b's */
    /* Still free when seen again: free_since stays at the first sighting (slot init at 0). */
    sc_lease_view(&o.t, 1, NULL, 0, 2000);
    assert_int_equal(sc_lease_plan_one(&o.t, 1, LEASE - 1), SC_LEASE_NONE);
    assert_int_equal(sc_lease_plan_one(&o.t, 1, LEASE), SC_LEASE_ACQUIRE);
    /* Owned for a moment in between: the clock starts again. */
    sc_lease_view(&o.t, 1, "b", 7, 3100);
    assert_int_equal(sc_lease_plan_one(&o.t, 1, 3100), SC_LEASE_NONE);
    sc_lease_view(&o.t, 1, "", 0, 3200);
    assert_int_equal(sc_lease_plan_one(&o.t, 1, 3200 + LEASE - 1), SC_LEASE_NONE);
    assert_int_equal(sc_lease_plan_one(&o.t, 1, 3200 + LEASE), SC_LEASE_ACQUIRE);
    /* Owned by anyone, my own id included, while not held: wait for it to age out. */
    sc_lease_view(&o.t, 0, "a", 9, 4000);
    assert_int_equal(sc_lease_plan_one(&o.t, 0, 4000 + 10 * LEASE), SC_LEASE_NONE);
    sc_lease_view(&o.t, 0, "zombie", 9, 4000);
    assert_int_equal(sc_lease_plan_one(&o.t, 0, 4000 + 10 * LEASE), SC_LEASE_NONE);
}

/* A hold is valid until t0 + lease - guard: renew before, LOST from then on, answer or none. */
static void
test_expiry_lost(void **state)
{
    static const char *const ids[] = {"a"};
    struct one o;
    int64_t until = 1000 + LEASE - LEASE / 5;

    (void)state;
    one_init(&o, "a", ids, 1, 0);
    assert_true(sc_lease_won(&o.t, 3, 42, 1000));
    assert_false(sc_lease_won(&o.t, 3, 43, 900)); /* an older send never shortens it */
    assert_int_equal(o.slots[3].valid_until, until);
    assert_int_equal(o.slots[3].revision, 43);
    assert_true(sc_lease_valid(&o.t, 3, until - 1));
    assert_false(sc_lease_valid(&o.t, 3, until));
    assert_int_equal(sc_lease_plan_one(&o.t, 3, until - 1), SC_LEASE_RENEW);
    /* The renew sent at 2000 gets no answer: the hold still ends at until. */
    sc_lease_unanswered(&o.t, 3, 2000);
    assert_int_equal(sc_lease_plan_one(&o.t, 3, until), SC_LEASE_LOST);
    assert_int_equal(sc_lease_owned(&o.t, until - 1), 1);
    assert_int_equal(sc_lease_owned(&o.t, until), 0);
    assert_true(sc_lease_dropped(&o.t, 3));
    assert_false(sc_lease_dropped(&o.t, 3));
    /* A renew refused (the key moved on) is a loss at once. */
    assert_true(sc_lease_won(&o.t, 4, 50, 5000));
    assert_true(sc_lease_refused(&o.t, 4));
    assert_false(sc_lease_valid(&o.t, 4, 5001));
}

/* A write whose answer never came but that landed is adopted from the view, valid from its send time. */
static void
test_unanswered_adopted(void **state)
{
    static const char *const ids[] = {"a", "b"};
    struct one o;

    (void)state;
    one_init(&o, "a", ids, 2, 0);
    sc_lease_unanswered(&o.t, 0, 1000); /* the create of partition 0 timed out */
    sc_lease_unanswered(&o.t, 0, 1500); /* and a later one: the earliest counts */
    assert_true(sc_lease_view(&o.t, 0, "a", 77, 1800));
    assert_true(sc_lease_valid(&o.t, 0, 1800));
    assert_int_equal(o.slots[0].valid_until, 1000 + LEASE - LEASE / 5);
    assert_int_equal(o.slots[0].revision, 77);
    /* Too late to adopt: the hold would already have run out. */
    sc_lease_unanswered(&o.t, 2, 1000);
    assert_false(sc_lease_view(&o.t, 2, "a", 78, 1000 + LEASE));
    assert_false(o.slots[2].held);
    /* My id without an unanswered write (a former process with the same id): not adopted. */
    assert_false(sc_lease_view(&o.t, 4, "a", 79, 2000));
    assert_false(o.slots[4].held);
    /* Another member's id: not adopted, and a refusal clears the unanswered write. */
    sc_lease_unanswered(&o.t, 6, 1000);
    assert_false(sc_lease_view(&o.t, 6, "b", 80, 1200));
    sc_lease_refused(&o.t, 6);
    assert_int_equal(o.slots[6].unanswered_t0, -1);
}

/* Held and desired by another live member: renew, and release once that member says it wants it. */
static void
test_release(void **state)
{
    static const char *const ids[] = {"a", "b"};
    struct one o;
    uint8_t mine[SC_LEASE_WANTS_BYTES(P)];

    (void)state;
    one_init(&o, "a", ids, 2, 0);
    sc_lease_won(&o.t, 0, 1, 100);
    sc_lease_won(&o.t, 1, 2, 100);
    assert_int_equal(sc_lease_plan_one(&o.t, 0, 200), SC_LEASE_RENEW);
    assert_int_equal(sc_lease_plan_one(&o.t, 1, 200), SC_LEASE_RENEW); /* b has not asked */
    sc_lease_set_bit(o.wants[1], 1);
    assert_true(sc_lease_bit(o.members[1].wants, 1));
    assert_false(sc_lease_bit(o.members[1].wants, 3));
    assert_false(sc_lease_bit(NULL, 3));
    assert_int_equal(sc_lease_plan_one(&o.t, 1, 200), SC_LEASE_RENEW | SC_LEASE_RELEASE);
    o.t.nmembers = 1; /* b gone: keep it */
    assert_int_equal(sc_lease_plan_one(&o.t, 1, 200), SC_LEASE_RENEW);
    /* What a publishes: the even partitions it does not hold. */
    o.t.nmembers = 2;
    sc_lease_wants(&o.t, mine);
    assert_false(sc_lease_bit(mine, 0)); /* held */
    assert_false(sc_lease_bit(mine, 1)); /* b's */
    assert_true(sc_lease_bit(mine, 2));
    assert_true(sc_lease_bit(mine, 30));
    assert_false(sc_lease_bit(mine, 31));
}

/* The nudge's two decisions: does a record ask for more than the last one, and when may a nudged read run. */
static void
test_nudge_helpers(void **state)
{
    uint8_t a[SC_LEASE_WANTS_BYTES(P)] = {0}, b[SC_LEASE_WANTS_BYTES(P)] = {0};

    (void)state;
    assert_false(sc_lease_wants_grew(a, b, P));
    assert_false(sc_lease_wants_grew(NULL, b, P));
    sc_lease_set_bit(b, 31);
    assert_true(sc_lease_wants_grew(a, b, P));
    assert_true(sc_lease_wants_grew(NULL, b, P));
    sc_lease_set_bit(a, 31);
    sc_lease_set_bit(a, 3);
    assert_false(sc_lease_wants_grew(a, b, P)); /* fewer: nobody needs to hear of it at once */
    assert_true(sc_lease_wants_grew(b, a, P));
    assert_int_equal(sc_lease_nudge_at(-1, 500, 200), 500);
    assert_int_equal(sc_lease_nudge_at(100, 500, 200), 500);
    assert_int_equal(sc_lease_nudge_at(400, 500, 200), 600);
}

/* ---- a simulated bucket and members ------------------------------------------------------------ */

struct kv_key {
    bool present;
    uint8_t wants[SC_LEASE_WANTS_BYTES(P)]; /* member keys: the record's wants */
    char owner[SC_LEASE_ID_MAX + 1];
    uint64_t rev;
    int64_t stored; /* the server's clock = the test's */
};

struct sim_member {
    char id[16];
    bool alive, paused;
    int64_t next_round;
    struct sc_lease_slot slots[P];
    struct sc_lease_member members[MAXM + 1];
    long assign[P];
    struct sc_lease_table t;
    unsigned gains, losses;
    /* with nudges */
    int64_t extra_at, last_extra;      /* the nudged read round set up (-1: none), the last one run */
    uint8_t published[SC_LEASE_WANTS_BYTES(P)];
    bool record_put;
    unsigned renews, extra_rounds, extra_writes; /* renewals sent; nudged rounds and their KV writes */
};

struct sim {
    int64_t now;
    uint64_t seq;
    struct kv_key lease[P];
    struct kv_key member[MAXM]; /* member.<id>, by index */
    struct sim_member m[MAXM];
    size_t n;                   /* members ever started */
    unsigned moves;             /* gains after the start, all members */
    int64_t latency;            /* a request reaches the server this long after t0 */
    bool plain;                 /* members[p mod n] instead of the sticky assignment */
    bool nudges;                /* the driver's nudges: extra read rounds on a record asking for more, a give-back, a leave */
};

static void
kv_age(struct sim *s)
{
    for (size_t p = 0; p < P; p++)
        if (s->lease[p].present && s->now - s->lease[p].stored >= LEASE)
            s->lease[p].present = false;
    for (size_t i = 0; i < s->n; i++)
        if (s->member[i].present && s->now - s->member[i].stored >= LEASE)
            s->member[i].present = false;
}

static size_t
sim_start(struct sim *s, int64_t phase)
{
    size_t i = s->n++;
    struct sim_member *m = &s->m[i];

    memset(m, 0, sizeof(*m));
    snprintf(m->id, sizeof(m->id), "m%zu", i);
    m->alive = true;
    m->next_round = s->now + phase;
    m->extra_at = s->nudges ? s->now : -1; /* with nudges a member reads first, then puts its record */
    m->last_extra = -1;
    for (size_t p = 0; p < P; p++)
        sc_lease_slot_init(&m->slots[p], s->now);
    m->t = (struct sc_lease_table){.me = m->id, .members = m->members, .slots = m->slots,
                                   .partitions = P, .lease_ms = LEASE,
                                   .assign = s->plain ? NULL : m->assign};
    return i;
}

/* A nudge reaches every other running member after the latency: each sets up one read round, GAP apart. */
static void
sim_nudge(struct sim *s, const struct sim_member *from)
{
    for (size_t i = 0; i < s->n; i++) {
        struct sim_member *m = &s->m[i];
        if (m == from || !m->alive || m->paused || m->extra_at >= 0)
            continue;
        m->extra_at = sc_lease_nudge_at(m->last_extra, s->now + s->latency, GAP);
    }
}

/* m reads the bucket: the live members (their records' wants) and the leases. */
static void
sim_read(struct sim *s, struct sim_member *m)
{
    size_t n = 0;

    for (size_t i = 0; i < s->n; i++)
        if (s->member[i].present)
            m->members[n++] = (struct sc_lease_member){.id = s->m[i].id, .wants = s->member[i].wants};
    sc_lease_members_sort(m->members, &n);
    m->t.nmembers = n;
    for (size_t p = 0; p < P; p++)
        if (sc_lease_view(&m->t, p, s->lease[p].present ? s->lease[p].owner : "", s->lease[p].rev,
                          s->now))
            m->gains++;
}

/* m puts member.<id> with the wants of its present view. */
static void
sim_put_record(struct sim *s, struct sim_member *m)
{
    size_t me = (size_t)(m - s->m);

    s->member[me] = (struct kv_key){.present = true, .stored = s->now + s->latency, .rev = ++s->seq};
    sc_lease_wants(&m->t, s->member[me].wants);
    memcpy(m->published, s->member[me].wants, sizeof(m->published));
    m->record_put = true;
}

/*
 * m plans on its view and acts (releases quiesce at once); renewals only
 * when renew (the renew round). Returns the KV writes it sent; *deleted
 * tells whether it gave a lease back.
 */
static unsigned
sim_act(struct sim *s, struct sim_member *m, bool renew, bool *deleted)
{
    uint8_t act[P];
    int64_t t0 = s->now, at = s->now + s->latency;
    unsigned writes = 0;

    sc_lease_plan(&m->t, s->now, act);
    for (size_t p = 0; p < P; p++) {
        struct kv_key *k = &s->lease[p];
        if (act[p] & SC_LEASE_LOST) {
            m->losses += sc_lease_dropped(&m->t, p);
        } else if (act[p] & SC_LEASE_RELEASE) {
            if (k->present && k->rev == m->slots[p].revision)
                k->present = false; /* delete with the expected revision */
            sc_lease_dropped(&m->t, p);
            writes++;
            *deleted = true;
        } else if ((act[p] & SC_LEASE_ACQUIRE) || ((act[p] & SC_LEASE_RENEW) && renew)) {
            bool ok = (act[p] & SC_LEASE_RENEW) ? k->present && k->rev == m->slots[p].revision
                                                : !k->present;
            writes++;
            m->renews += (act[p] & SC_LEASE_RENEW) != 0;
            if (ok) {
                *k = (struct kv_key){.present = true, .rev = ++s->seq, .stored = at};
                snprintf(k->owner, sizeof(k->owner), "%s", m->id);
                m->gains += sc_lease_won(&m->t, p, k->rev, t0);
            } else
                m->losses += sc_lease_refused(&m->t, p);
        }
    }
    return writes;
}

/*
 * With nudges, what the driver's follow-up does after a read: put the
 * record when its wants grew (or none was put yet), and nudge the others
 * when it asks for more or gave a lease back. Returns the writes sent.
 */
static unsigned
sim_follow(struct sim *s, struct sim_member *m, bool deleted)
{
    uint8_t wants[SC_LEASE_WANTS_BYTES(P)];
    bool grew, put;

    sc_lease_wants(&m->t, wants);
    grew = sc_lease_wants_grew(m->published, wants, P);
    put = grew || !m->record_put;
    if (put)
        sim_put_record(s, m);
    if (grew || deleted)
        sim_nudge(s, m);
    return put;
}

/* One member's renew round: put member.<id>, read the bucket, plan, act (and with nudges, follow up). */
static void
sim_round(struct sim *s, struct sim_member *m)
{
    bool deleted = false;

    sim_put_record(s, m); /* from the previous view, as the driver does */
    sim_read(s, m);
    sim_act(s, m, true, &deleted);
    if (s->nudges)
        sim_follow(s, m, deleted);
}

/* A nudged read round: read, plan, acquire and give back (no renewal), follow up. */
static void
sim_extra_round(struct sim *s, struct sim_member *m)
{
    bool deleted = false;
    unsigned writes;

    m->extra_rounds++;
    sim_read(s, m);
    writes = sim_act(s, m, false, &deleted);
    writes += sim_follow(s, m, deleted);
    if (m->record_put && m->extra_rounds > 1)
        m->extra_writes += writes; /* the first round of a member is its joining */
}

/* A clean stop (SIGTERM): m gives every lease back with its revision, deletes its record and nudges. */
static void
sim_leave(struct sim *s, size_t i)
{
    struct sim_member *m = &s->m[i];

    for (size_t p = 0; p < P; p++)
        if (m->slots[p].held) {
            if (s->lease[p].present && s->lease[p].rev == m->slots[p].revision)
                s->lease[p].present = false;
            sc_lease_dropped(&m->t, p);
        }
    s->member[i].present = false;
    m->alive = false;
    if (s->nudges)
        sim_nudge(s, m);
}

/*
 * Runs the simulation for ms, every member on its own renew period
 * (lease/3), checking at every step that no partition is valid at two
 * members and that a valid hold is the bucket's current lease (fencing).
 */
static void
sim_run(struct sim *s, int64_t ms)
{
    for (int64_t end = s->now + ms; s->now < end; s->now += STEP) {
        kv_age(s);
        for (size_t i = 0; i < s->n; i++) {
            struct sim_member *m = &s->m[i];
            unsigned g = m->gains;
            if (m->alive && !m->paused && m->extra_at >= 0 && s->now >= m->extra_at) {
                m->extra_at = -1;
                m->last_extra = s->now;
                sim_extra_round(s, m);
            }
            if (m->alive && !m->paused && s->now >= m->next_round) {
                sim_round(s, m);
                m->next_round = s->now + LEASE / 3;
            }
            s->moves += m->gains - g;
        }
        for (size_t p = 0; p < P; p++) {
            int valid = 0;
            for (size_t i = 0; i < s->n; i++) {
                struct sim_member *m = &s->m[i];
                if (!m->alive || !sc_lease_valid(&m->t, p, s->now))
                    continue;
                valid++;
                if (!s->lease[p].present || strcmp(s->lease[p].owner, m->id) != 0 ||
                    s->lease[p].rev != m->slots[p].revision)
                    fail_msg("t=%lld: %s holds %zu valid but the bucket disagrees",
                             (long long)s->now, m->id, p);
            }
            if (valid > 1)
                fail_msg("t=%lld: partition %zu valid at %d members", (long long)s->now, p, valid);
        }
    }
}

/*
 * Whether every partition is valid somewhere and each running member owns
 * floor or ceil of P/n; when why is set, the first miss is written there.
 */
static bool
balance_miss(struct sim *s, char *why, size_t whylen)
{
    size_t live = 0, total = 0;

    for (size_t i = 0; i < s->n; i++)
        live += s->m[i].alive && !s->m[i].paused;
    for (size_t i = 0; i < s->n; i++) {
        size_t owned = sc_lease_owned(&s->m[i].t, s->now);
        if (!s->m[i].alive || s->m[i].paused)
            continue;
        if (owned < P / live || owned > (P + live - 1) / live) {
            if (why)
                snprintf(why, whylen, "%s owns %zu of %d with %zu members", s->m[i].id, owned, P, live);
            return false;
        }
        total += owned;
    }
    if (total != P && why)
        snprintf(why, whylen, "%zu of %d partitions owned", total, P);
    return total == P;
}

static bool
is_balanced(struct sim *s)
{
    return balance_miss(s, NULL, 0);
}

/* Runs the simulation step by step until is_balanced() or limit ms; returns the ms it took (limit when never). */
static int64_t
sim_until_balanced(struct sim *s, int64_t limit)
{
    int64_t start = s->now;

    while (s->now - start < limit && !is_balanced(s))
        sim_run(s, STEP);
    return s->now - start;
}

/* Every partition valid somewhere; each live member owns floor or ceil of P/n. */
static void
check_balanced(struct sim *s)
{
    char why[160];

    if (!balance_miss(s, why, sizeof(why)))
        fail_msg("%s", why);
}

/* 1 to 5 members started together: all 32 owned, each within +-1 of P/n, then no moves. */
static void
test_sim_balance(void **state)
{
    (void)state;
    for (size_t n = 1; n <= 5; n++) {
        struct sim *s = calloc(1, sizeof(*s));
        assert_non_null(s);
        s->latency = 20;
        for (size_t i = 0; i < n; i++)
            sim_start(s, (int64_t)i * 170);
        sim_run(s, 6 * LEASE);
        check_balanced(s);
        s->moves = 0;
        sim_run(s, 10 * LEASE);
        assert_int_equal(s->moves, 0); /* partitions move only when membership changes */
        free(s);
    }
}

/*
 * Scale 1 -> 3 -> 5, then two crash (kill -9) and one leaves: balanced each
 * time, never two owners; with and without nudges.
 */
static void
test_sim_membership(void **state)
{
    (void)state;
    for (int nudges = 0; nudges < 2; nudges++) {
        struct sim *s = calloc(1, sizeof(*s));
        assert_non_null(s);
        s->latency = 30;
        s->nudges = nudges;
        sim_start(s, 0);
        sim_run(s, 2 * LEASE);
        check_balanced(s);
        sim_start(s, 100);
        sim_start(s, 250);
        sim_run(s, 4 * LEASE);
        check_balanced(s);
        sim_start(s, 0);
        sim_start(s, 0);
        sim_run(s, 4 * LEASE);
        check_balanced(s);
        /* kill -9 of two: their leases and member keys age out, the others take over. */
        s->m[1].alive = false;
        s->m[3].alive = false;
        sim_run(s, LEASE + 3 * (LEASE / 3) + 2 * STEP);
        check_balanced(s);
        sim_leave(s, 4); /* a clean stop */
        sim_run(s, 2 * LEASE);
        check_balanced(s);
        free(s);
    }
}

/*
 * A paused member (SIGSTOP) longer than the lease: its holds run out on its
 * own clock before the bucket lets anyone else in (checked at every step),
 * the others own everything meanwhile, and once resumed it loses what it
 * had, rejoins and gets its share again.
 */
static void
test_sim_zombie(void **state)
{
    struct sim *s = calloc(1, sizeof(*s));

    (void)state;
    assert_non_null(s);
    s->latency = 40;
    for (size_t i = 0; i < 3; i++)
        sim_start(s, (int64_t)i * 300);
    sim_run(s, 5 * LEASE);
    check_balanced(s);
    s->m[2].paused = true;
    sim_run(s, 2 * LEASE);
    assert_int_equal(sc_lease_owned(&s->m[0].t, s->now) + sc_lease_owned(&s->m[1].t, s->now), P);
    assert_int_equal(sc_lease_owned(&s->m[2].t, s->now), 0); /* it would say so if asked */
    unsigned before = s->m[2].losses;
    s->m[2].paused = false;
    s->m[2].next_round = s->now;
    sim_run(s, STEP);
    assert_true(s->m[2].losses > before); /* it noticed, and dropped them */
    sim_run(s, 4 * LEASE);
    check_balanced(s);
    free(s);
}

/*
 * Sets o up as member "a" among ids (n of them) where a holds partitions
 * 0-15 and the view shows "b" owning 16-31, then runs the sticky
 * assignment into assign (P entries).
 */
static void
assign_view(struct one *o, const char *const *ids, size_t n, long *assign)
{
    one_init(o, "a", ids, n, 0);
    o->t.assign = assign;
    for (size_t p = 0; p < 16; p++)
        o->slots[p].held = true;
    for (size_t p = 16; p < P; p++)
        snprintf(o->slots[p].owner, sizeof(o->slots[p].owner), "b");
    sc_lease_assign(&o->t);
}

/*
 * The sticky assignment by itself: what a live member holds stays with it
 * up to its quota (floor or ceil of P/n by rank), the rest fills the
 * others' quotas in partition order; a dead owner's partitions are given
 * out, nobody else's.
 */
static void
test_assign_sticky(void **state)
{
    static const char *const ids[] = {"a", "b", "c"};
    struct one o;
    long assign[P];
    size_t count[3] = {0};

    (void)state;
    /* a holds 0-15 (here: held), b's view shows 16-31; c is new. */
    assign_view(&o, ids, 3, assign);
    for (size_t p = 0; p < P; p++)
        count[assign[p]]++;
    assert_int_equal(count[0], 11); /* a: rank 0, 32/3 + 1 */
    assert_int_equal(count[1], 11);
    assert_int_equal(count[2], 10);
    for (size_t p = 0; p < 11; p++)
        assert_int_equal(assign[p], 0); /* a keeps its first 11 */
    for (size_t p = 16; p < 27; p++)
        assert_int_equal(assign[p], 1); /* b keeps its first 11 */
    /* Now b is gone: a keeps 0-15, only b's 16-31 are given out. */
    static const char *const two[] = {"a", "c"};
    assign_view(&o, two, 2, assign);
    for (size_t p = 0; p < 16; p++)
        assert_int_equal(assign[p], 0);
    for (size_t p = 16; p < P; p++)
        assert_int_equal(assign[p], 1);
    assert_int_equal(sc_lease_desired(&o.t, 20), 1);
    /* No members: nobody is desired. */
    o.t.nmembers = 0;
    sc_lease_assign(&o.t);
    assert_int_equal(sc_lease_desired(&o.t, 3), -1);
}

/* Counts the partitions valid at member i now. */
static size_t
owned_by(struct sim *s, size_t i)
{
    return sc_lease_owned(&s->m[i].t, s->now);
}

/*
 * kill -9 of one of 3 balanced members: with the sticky assignment only its
 * partitions move (each gained once by a survivor); with p mod n the
 * survivors also swap many of their own.
 */
static void
test_sim_kill_moves_only_the_dead(void **state)
{
    (void)state;
    for (int plain = 0; plain < 2; plain++) {
        struct sim *s = calloc(1, sizeof(*s));
        assert_non_null(s);
        s->latency = 20;
        s->plain = plain;
        for (size_t i = 0; i < 3; i++)
            sim_start(s, (int64_t)i * 170);
        sim_run(s, 6 * LEASE);
        check_balanced(s);
        size_t dead = owned_by(s, 1);
        s->m[1].alive = false;
        s->moves = 0;
        sim_run(s, 4 * LEASE);
        check_balanced(s);
        if (!plain)
            assert_int_equal(s->moves, dead);
        else
            assert_true(s->moves > dead); /* the survivors swapped some of theirs too */
        free(s);
    }
}

/* Different views: a member that no one desires a partition for still takes the orphan. */
static void
test_sim_orphan(void **state)
{
    struct sim *s = calloc(1, sizeof(*s));

    (void)state;
    assert_non_null(s);
    sim_start(s, 0);
    sim_start(s, 0);
    sim_run(s, 3 * LEASE);
    check_balanced(s);
    /* m1 stops taking part but its member key is kept alive by hand: the others desire nothing of its. */
    s->m[1].alive = false;
    for (int64_t end = s->now + 3 * LEASE; s->now < end;) {
        s->member[1].stored = s->now;
        sim_run(s, STEP);
    }
    assert_int_equal(sc_lease_owned(&s->m[0].t, s->now), P);
    free(s);
}

/*
 * Joining and leaving with nudges: a member that joins just after the
 * holder's renew round gets its share within a few read round trips, far
 * below a renew period (without nudges it waits for the rounds: at least
 * lease/3); after a clean leave the other owns all again as fast. Never
 * two owners (sim_run checks every step).
 */
static void
test_sim_nudge_join_leave(void **state)
{
    int64_t took[2];

    (void)state;
    for (int nudges = 0; nudges < 2; nudges++) {
        struct sim *s = calloc(1, sizeof(*s));
        assert_non_null(s);
        s->latency = 20;
        s->nudges = nudges;
        sim_start(s, 0);
        sim_run(s, 2 * LEASE);
        check_balanced(s);
        while (s->m[0].next_round - s->now != LEASE / 3 - STEP)
            sim_run(s, STEP); /* m0's renew round just ran */
        sim_start(s, 0);
        took[nudges] = sim_until_balanced(s, 2 * LEASE);
        check_balanced(s);
        if (nudges) {
            int64_t t0 = s->now;
            sim_leave(s, 1);
            while (s->now - t0 < LEASE && owned_by(s, 0) < P)
                sim_run(s, STEP);
            printf("  nudged: left, m0 owns all %d after %lld ms\n", P, (long long)(s->now - t0));
            assert_true(s->now - t0 <= LEASE / 10);
        }
        free(s);
    }
    printf("  join balanced after %lld ms with nudges, %lld ms without (lease %d)\n",
           (long long)took[1], (long long)took[0], LEASE);
    assert_true(took[1] <= LEASE / 10);
    assert_true(took[0] >= LEASE / 3);
}

/*
 * Nudges in a flood (forged: every step, from nobody) on a balanced
 * cluster: each member reads at most once per GAP, nothing moves, the
 * nudged rounds write nothing, and renewals keep their cadence (one per
 * held partition per renew round).
 */
static void
test_sim_nudge_flood(void **state)
{
    struct sim *s = calloc(1, sizeof(*s));
    unsigned renews[3];

    (void)state;
    assert_non_null(s);
    s->latency = 20;
    s->nudges = true;
    for (size_t i = 0; i < 3; i++)
        sim_start(s, (int64_t)i * 170);
    sim_run(s, 4 * LEASE);
    check_balanced(s);
    s->moves = 0;
    for (size_t i = 0; i < 3; i++) {
        renews[i] = s->m[i].renews;
        s->m[i].extra_rounds = 0;
        s->m[i].extra_writes = 0;
    }
    for (int64_t end = s->now + 3 * LEASE; s->now < end;) {
        sim_nudge(s, NULL);
        sim_run(s, STEP);
    }
    check_balanced(s);
    assert_int_equal(s->moves, 0);
    for (size_t i = 0; i < 3; i++) {
        struct sim_member *m = &s->m[i];
        assert_true(m->extra_rounds >= 3 * LEASE / GAP - 1);
        assert_true(m->extra_rounds <= 3 * LEASE / GAP + 1);
        assert_int_equal(m->extra_writes, 0);
        /* 9 renew rounds in 3 leases (10 at most by phase), one renewal per held partition each */
        assert_true(m->renews - renews[i] <= 10 * owned_by(s, i));
    }
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition_of),
        cmocka_unit_test(test_desired),
        cmocka_unit_test(test_acquire_and_orphan),
        cmocka_unit_test(test_expiry_lost),
        cmocka_unit_test(test_unanswered_adopted),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_nudge_helpers),
        cmocka_unit_test(test_sim_balance),
        cmocka_unit_test(test_sim_membership),
        cmocka_unit_test(test_sim_zombie),
        cmocka_unit_test(test_assign_sticky),
        cmocka_unit_test(test_sim_kill_moves_only_the_dead),
        cmocka_unit_test(test_sim_orphan),
        cmocka_unit_test(test_sim_nudge_join_leave),
        cmocka_unit_test(test_sim_nudge_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
