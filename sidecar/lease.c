/* lease.c - the cluster's lease planner: pure decisions over the lease table (see lease.h and docs/cluster.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"

int64_t
sc_lease_guard_ms(int64_t lease_ms)
{
    return lease_ms / 5;
}

void
sc_lease_slot_init(struct sc_lease_slot *s, int64_t now)
{
    memset(s, 0, sizeof(*s));
    s->free_since = now;
    s->unanswered_t0 = -1;
}

static int
cmp_members(const void *a, const void *b)
{
    return strcmp(((const struct sc_lease_member *)a)->id, ((const struct sc_lease_member *)b)->id);
}

void
sc_lease_members_sort(struct sc_lease_member *m, size_t *n)
{
    size_t k = 0;

    if (*n == 0)
        return;
    qsort(m, *n, sizeof(*m), cmp_members);
    for (size_t i = 1; i < *n; i++)
        if (strcmp(m[i].id, m[k].id) != 0)
            m[++k] = m[i];
    *n = k + 1;
}

bool
sc_lease_bit(const uint8_t *bits, size_t p)
{
    return bits && (bits[p / 8] & (1u << (p % 8))) != 0;
}

void
sc_lease_set_bit(uint8_t *bits, size_t p)
{
    bits[p / 8] = (uint8_t)(bits[p / 8] | (1u << (p % 8)));
}

long
sc_lease_desired(const struct sc_lease_table *t, size_t p)
{
    if (t->nmembers == 0)
        return -1;
    if (t->assign)
        return t->assign[p];
    return (long)(p % t->nmembers);
}

/* The index of id among t's sorted members, or -1 when it is not a live member. */
static long
member_index(const struct sc_lease_table *t, const char *id)
{
    size_t lo = 0, hi = t->nmembers;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->members[mid].id, id);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

void
sc_lease_assign(const struct sc_lease_table *t)
{
    size_t n = t->nmembers, count[SC_LEASE_MAX_MEMBERS + 1] = {0}, k = 0;

    if (!t->assign)
        return;
    if (n == 0 || n > SC_LEASE_MAX_MEMBERS + 1) {
        for (size_t p = 0; p < t->partitions; p++)
            t->assign[p] = n ? (long)(p % n) : -1;
        return;
    }
    /* First pass: each partition stays with its live owner while the owner is under its quota. */
    for (size_t p = 0; p < t->partitions; p++) {
        const struct sc_lease_slot *s = &t->slots[p];
        long i = member_index(t, s->held ? t->me : s->owner);
        size_t quota = i < 0 ? 0 : t->partitions / n + ((size_t)i < t->partitions % n);
        t->assign[p] = -1;
        if (i >= 0 && count[i] < quota) {
            t->assign[p] = i;
            count[i]++;
        }
    }
    /* Second pass: the rest, in order, to the first members by rank under their quota. */
    for (size_t p = 0; p < t->partitions; p++) {
        if (t->assign[p] >= 0)
            continue;
        while (k < n && count[k] >= t->partitions / n + (k < t->partitions % n))
            k++;
        t->assign[p] = (long)(k < n ? k : p % n); /* the quotas add up to P: k < n always */
        if (k < n)
            count[k]++;
    }
}

/* Whether p's desired owner is this member (false when no member is live). */
static bool
desired_here(const struct sc_lease_table *t, size_t p)
{
    long i = sc_lease_desired(t, p);

    return i >= 0 && strcmp(t->members[i].id, t->me) == 0;
}

void
sc_lease_wants(const struct sc_lease_table *t, uint8_t *wants)
{
    memset(wants, 0, SC_LEASE_WANTS_BYTES(t->partitions));
    sc_lease_assign(t);
    for (size_t p = 0; p < t->partitions; p++)
        if (!t->slots[p].held && desired_here(t, p))
            sc_lease_set_bit(wants, p);
}

bool
sc_lease_wants_grew(const uint8_t *before, const uint8_t *wants, size_t partitions)
{
    for (size_t i = 0; i < SC_LEASE_WANTS_BYTES(partitions); i++)
        if (wants[i] & ~(before ? before[i] : 0))
            return true;
    return false;
}

int64_t
sc_lease_nudge_at(int64_t last, int64_t now, int64_t gap_ms)
{
    return last < 0 || now - last >= gap_ms ? now : last + gap_ms;
}

bool
sc_lease_view(struct sc_lease_table *t, size_t p, const char *owner, uint64_t rev, int64_t now)
{
    struct sc_lease_slot *s = &t->slots[p];
    int64_t until;

    if (!owner)
        owner = "";
    if (!*owner) {
        if (s->free_since < 0)
            s->free_since = now;
    } else
        s->free_since = -1;
    snprintf(s->owner, sizeof(s->owner), "%s", owner);
    s->view_rev = rev;
    if (s->held || s->unanswered_t0 < 0 || strcmp(owner, t->me) != 0 || rev == s->revision)
        return false;
    /* My id at a revision I never heard of: a write of mine sent at or after unanswered_t0 landed. */
    until = s->unanswered_t0 + t->lease_ms - sc_lease_guard_ms(t->lease_ms);
    if (until <= now)
        return false;
    s->held = true;
    s->revision = rev;
    s->valid_until = until;
    s->held_since = now;
    s->unanswered_t0 = -1;
    return true;
}

unsigned
sc_lease_plan_one(const struct sc_lease_table *t, size_t p, int64_t now)
{
    const struct sc_lease_slot *s = &t->slots[p];

    if (s->held) {
        long want = sc_lease_desired(t, p);
        if (now >= s->valid_until)
            return SC_LEASE_LOST;
        if (want < 0 || desired_here(t, p) || !sc_lease_bit(t->members[want].wants, p))
            return SC_LEASE_RENEW;
        return SC_LEASE_RENEW | SC_LEASE_RELEASE;
    }
    if (s->owner[0])
        return SC_LEASE_NONE;
    if (desired_here(t, p))
        return SC_LEASE_ACQUIRE;
    if (s->free_since >= 0 && now - s->free_since >= t->lease_ms)
        return SC_LEASE_ACQUIRE; /* an orphan: whoever desires it has not taken it */
    return SC_LEASE_NONE;
}

void
sc_lease_plan(const struct sc_lease_table *t, int64_t now, uint8_t *actions)
{
    sc_lease_assign(t);
    for (size_t p = 0; p < t->partitions; p++)
        actions[p] = (uint8_t)sc_lease_plan_one(t, p, now);
}

bool
sc_lease_won(struct sc_lease_table *t, size_t p, uint64_t rev, int64_t t0)
{
    struct sc_lease_slot *s = &t->slots[p];
    int64_t until = t0 + t->lease_ms - sc_lease_guard_ms(t->lease_ms);
    bool gained = !s->held;

    if (gained) {
        s->held_since = t0;
        s->valid_until = until;
    } else if (until > s->valid_until)
        s->valid_until = until;
    s->held = true;
    s->revision = rev;
    s->unanswered_t0 = -1;
    return gained;
}

bool
sc_lease_refused(struct sc_lease_table *t, size_t p)
{
    struct sc_lease_slot *s = &t->slots[p];

    s->unanswered_t0 = -1; /* the key moved on: no earlier write of mine can be there */
    return sc_lease_dropped(t, p);
}

void
sc_lease_unanswered(struct sc_lease_table *t, size_t p, int64_t t0)
{
    struct sc_lease_slot *s = &t->slots[p];

    if (s->unanswered_t0 < 0 || t0 < s->unanswered_t0)
        s->unanswered_t0 = t0;
}

bool
sc_lease_dropped(struct sc_lease_table *t, size_t p)
{
    struct sc_lease_slot *s = &t->slots[p];
    bool was = s->held;

    s->held = false;
    s->valid_until = 0;
    return was;
}

bool
sc_lease_valid(const struct sc_lease_table *t, size_t p, int64_t now)
{
    return p < t->partitions && t->slots[p].held && now < t->slots[p].valid_until;
}

size_t
sc_lease_owned(const struct sc_lease_table *t, int64_t now)
{
    size_t n = 0;

    for (size_t p = 0; p < t->partitions; p++)
        n += sc_lease_valid(t, p, now);
    return n;
}
