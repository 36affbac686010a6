/* wheel.c - hierarchical timer wheel: O(1) schedule/cancel of embedded entries, caller's clock. */
#include "dlq.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>

/*
 * Layout (docs/wheel.md has the full story).
 *
 * Time is counted in ticks: tick(t) = floor(t / tick_ms). Ticks are kept as
 * uint64_t with the sign bit flipped ("biased"), so that every int64_t time
 * maps to a tick and the mapping keeps order; differences and XORs of biased
 * ticks never overflow.
 *
 * w->cur is the wheel's current tick: every tick before it has been
 * processed. An entry of tick d >= cur lives at level k = (highest bit in
 * which d and cur differ) / 6, in slot (d >> 6k) & 63; d == cur is level 0,
 * slot cur & 63. Hence an occupied slot at level k is always strictly ahead
 * of cur's digit k (except the current slot at level 0), and every entry at
 * level k is earlier than every entry at level k + 1. Eleven levels of six
 * bits cover all 64 bits, so no tick is out of range.
 *
 * Entries of a tick before cur (scheduled in the past, or filed at the
 * current tick by a callback while the run moved on) wait on the ready list,
 * which the next run fires first.
 *
 * Moving cur forward never visits empty ticks: the next tick where anything
 * happens is the lowest occupied slot of the lowest non-empty level (for
 * level 0 the slot's own tick; for level k the tick where cur's digit k
 * reaches the slot, at which point the slot is cascaded: its entries are
 * re-filed relative to the new cur, into lower levels).
 *
 * List heads are sentinel entries in circular lists. A head's due field is
 * not a time but its identity: level * 64 + slot for a slot, negative for
 * the ready list and for the local lists a run works on. This lets cancel
 * clear the slot's occupancy bit when it unlinks the last entry, keeping the
 * bitmaps exact. slot_min[][] is a lower bound of the due times in a slot
 * (exact unless an entry was cancelled since the slot was last emptied or
 * scanned); dlq_wheel_next_due() returns it for the earliest slot.
 */

#define WHEEL_BITS   6
#define WHEEL_SLOTS  64
#define WHEEL_MASK   ((uint64_t)WHEEL_SLOTS - 1)
#define WHEEL_LEVELS 11 /* 11 levels x 6 bits >= 64 bits: every tick fits */

#define TICK_BIAS ((uint64_t)1 << 63)

#define HEAD_READY ((int64_t)-1)
#define HEAD_LOCAL ((int64_t)-2)

struct dlq_wheel {
    int64_t tick_ms;
    uint64_t cur;  /* current tick, biased */
    size_t count;  /* scheduled entries, wherever they are linked */
    bool running;  /* inside dlq_wheel_run() */
    struct dlq_wheel_entry ready; /* due entries of ticks before cur */
    uint64_t occupied[WHEEL_LEVELS]; /* bit s: slot s is non-empty */
    int64_t slot_min[WHEEL_LEVELS][WHEEL_SLOTS];
    struct dlq_wheel_entry slot[WHEEL_LEVELS][WHEEL_SLOTS];
};

static unsigned
ctz64(uint64_t x)
{
    return (unsigned)__builtin_ctzll(x);
}

static unsigned
msb64(uint64_t x)
{
    return 63u - (unsigned)__builtin_clzll(x);
}

/* tick_of() returns floor(ms / tick_ms) as a biased tick. */
static uint64_t
tick_of(int64_t tick_ms, int64_t ms)
{
    int64_t q = ms / tick_ms;

    if (ms % tick_ms < 0)
        q--;
    return (uint64_t)q + TICK_BIAS;
}

/* tick_start() returns the first ms of biased tick t, saturated at INT64_MIN. */
static int64_t
tick_start(const struct dlq_wheel *w, uint64_t t)
{
    int64_t q;

    if (t >= TICK_BIAS)
        q = (int64_t)(t - TICK_BIAS);
    else
        q = -(int64_t)(TICK_BIAS - t - 1) - 1;
    if (q < INT64_MIN / w->tick_ms)
        return INT64_MIN;
    /* q never exceeds a tick of some int64_t time, so this cannot overflow. */
    return q * w->tick_ms;
}

static void
list_init(struct dlq_wheel_entry *h, int64_t id)
{
    h->next = h;
    h->prev = h;
    h->due = id;
}

static bool
list_empty(const struct dlq_wheel_entry *h)
{
    return h->next == h;
}

static void
list_append(struct dlq_wheel_entry *h, struct dlq_wheel_entry *e)
{
    e->prev = h->prev;
    e->next = h;
    h->prev->next = e;
    h->prev = e;
}

static void
list_unlink(struct dlq_wheel_entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

/* list_take() moves every entry of src to dst, an initialised empty head. */
static void
list_take(struct dlq_wheel_entry *dst, struct dlq_wheel_entry *src)
{
    if (list_empty(src))
        return;
    dst->next = src->next;
    dst->prev = src->prev;
    dst->next->prev = dst;
    dst->prev->next = dst;
    src->next = src;
    src->prev = src;
}

/* list_prepend() moves every entry of src, in order, in front of dst's. */
static void
list_prepend(struct dlq_wheel_entry *dst, struct dlq_wheel_entry *src)
{
    if (list_empty(src))
        return;
    src->prev->next = dst->next;
    dst->next->prev = src->prev;
    dst->next = src->next;
    src->next->prev = dst;
    src->next = src;
    src->prev = src;
}

/* head_add() appends e to the list at h and keeps the slot's bit and minimum. */
static void
head_add(struct dlq_wheel *w, struct dlq_wheel_entry *h, struct dlq_wheel_entry *e)
{
    list_append(h, e);
    if (h->due >= 0) {
        unsigned lv = (unsigned)(h->due / WHEEL_SLOTS);
        unsigned s = (unsigned)(h->due % WHEEL_SLOTS);

        w->occupied[lv] |= (uint64_t)1 << s;
        if (e->due < w->slot_min[lv][s])
            w->slot_min[lv][s] = e->due;
    }
}

/* head_emptied() records that the list at h has just become empty. */
static void
head_emptied(struct dlq_wheel *w, struct dlq_wheel_entry *h)
{
    if (h->due >= 0) {
        unsigned lv = (unsigned)(h->due / WHEEL_SLOTS);
        unsigned s = (unsigned)(h->due % WHEEL_SLOTS);

        w->occupied[lv] &= ~((uint64_t)1 << s);
        w->slot_min[lv][s] = INT64_MAX;
    }
}

/* wheel_file() links e (unlinked, counted by the caller) where its due time belongs. */
static void
wheel_file(struct dlq_wheel *w, struct dlq_wheel_entry *e)
{
    uint64_t d = tick_of(w->tick_ms, e->due);
    unsigned lv = 0;
    unsigned s;

    if (d < w->cur) {
        head_add(w, &w->ready, e);
        return;
    }
    if (d != w->cur)
        lv = msb64(d ^ w->cur) / WHEEL_BITS;
    s = (unsigned)((d >> (lv * WHEEL_BITS)) & WHEEL_MASK);
    head_add(w, &w->slot[lv][s], e);
}

struct dlq_wheel *
dlq_wheel_new(int64_t tick_ms, int64_t now_ms)
{
    struct dlq_wheel *w = sc_xcalloc(1, sizeof(*w));

    if (tick_ms < 1)
        tick_ms = 1;
    if (tick_ms > 1000)
        tick_ms = 1000;
    w->tick_ms = tick_ms;
    w->cur = tick_of(tick_ms, now_ms);
    list_init(&w->ready, HEAD_READY);
    for (unsigned lv = 0; lv < WHEEL_LEVELS; lv++) {
        for (unsigned s = 0; s < WHEEL_SLOTS; s++) {
            list_init(&w->slot[lv][s], (int64_t)(lv * WHEEL_SLOTS + s));
            w->slot_min[lv][s] = INT64_MAX;
        }
    }
    return w;
}

void
dlq_wheel_free(struct dlq_wheel *w)
{
    free(w);
}

void
dlq_wheel_entry_init(struct dlq_wheel_entry *e)
{
    e->next = NULL;
    e->prev = NULL;
    e->due = 0;
}

void
dlq_wheel_cancel(struct dlq_wheel *w, struct dlq_wheel_entry *e)
{
    if (e->prev == NULL)
        return;
    list_unlink(e);
    /* The neighbours are now adjacent; if they are one node, it is the head. */
    if (e->prev == e->next)
        head_emptied(w, e->prev);
    e->next = NULL;
    e->prev = NULL;
    w->count--;
}

void
dlq_wheel_schedule(struct dlq_wheel *w, struct dlq_wheel_entry *e, int64_t due_ms)
{
    dlq_wheel_cancel(w, e);
    e->due = due_ms;
    wheel_file(w, e);
    w->count++;
}

/*
 * wheel_fire() fires the entries of list h that are due at now, in list
 * order, until *fired reaches max. Entries are moved to a local list first,
 * so callbacks may schedule or cancel anything (entries they file go to the
 * live lists and wait for a later tick or the next run). Entries that are
 * not due yet are filed again. Returns true when max stopped it with
 * entries left; they are put back in front of h, in order.
 */
static bool
wheel_fire(struct dlq_wheel *w, struct dlq_wheel_entry *h, int64_t now, size_t max,
           size_t *fired, dlq_wheel_cb cb, void *ctx)
{
    struct dlq_wheel_entry local;
    int64_t lo = INT64_MAX;
    unsigned lv = 0, s = 0;

    if (h->due >= 0) {
        lv = (unsigned)(h->due / WHEEL_SLOTS);
        s = (unsigned)(h->due % WHEEL_SLOTS);
        lo = w->slot_min[lv][s];
    }
    list_init(&local, HEAD_LOCAL);
    list_take(&local, h);
    head_emptied(w, h);
    while (!list_empty(&local)) {
        struct dlq_wheel_entry *e = local.next;

        if (*fired >= max) {
            list_prepend(h, &local);
            if (h->due >= 0) {
                w->occupied[lv] |= (uint64_t)1 << s;
                if (lo < w->slot_min[lv][s])
                    w->slot_min[lv][s] = lo;
            }
            return true;
        }
        list_unlink(e);
        if (e->due > now) {
            wheel_file(w, e);
            continue;
        }
        e->next = NULL;
        e->prev = NULL;
        w->count--;
        (*fired)++;
        cb(e, ctx);
    }
    return false;
}

/* wheel_cascade() re-files the entries of slot s at level lv relative to cur. */
static void
wheel_cascade(struct dlq_wheel *w, unsigned lv, unsigned s)
{
    struct dlq_wheel_entry local;

    list_init(&local, HEAD_LOCAL);
    list_take(&local, &w->slot[lv][s]);
    head_emptied(w, &w->slot[lv][s]);
    while (!list_empty(&local)) {
        struct dlq_wheel_entry *e = local.next;

        list_unlink(e);
        wheel_file(w, e);
    }
}

/*
 * wheel_advance() moves cur forward (cur < target, level-0 slot of cur
 * empty) to the next tick where something happens, or to target if that
 * comes first, cascading the slot whose turn it is. Costs O(levels) plus the
 * entries cascaded; empty ticks are jumped over.
 */
static void
wheel_advance(struct dlq_wheel *w, uint64_t target)
{
    for (unsigned lv = 0; lv < WHEEL_LEVELS; lv++) {
        unsigned shift = lv * WHEEL_BITS;
        unsigned s;
        uint64_t at;

        if (w->occupied[lv] == 0)
            continue;
        s = ctz64(w->occupied[lv]);
        /* cur with digit lv set to s and every lower digit zero */
        at = shift + WHEEL_BITS >= 64 ? 0 : w->cur >> (shift + WHEEL_BITS) << (shift + WHEEL_BITS);
        at |= (uint64_t)s << shift;
        assert(at > w->cur);
        if (at > target)
            break;
        w->cur = at;
        if (lv > 0)
            wheel_cascade(w, lv, s);
        return;
    }
    w->cur = target;
}

size_t
dlq_wheel_run(struct dlq_wheel *w, int64_t now_ms, size_t max, dlq_wheel_cb cb, void *ctx)
{
    uint64_t target = tick_of(w->tick_ms, now_ms);
    size_t fired = 0;

    assert(!w->running);
    if (max == 0)
        max = SIZE_MAX;
    w->running = true;
    if (!list_empty(&w->ready) && wheel_fire(w, &w->ready, now_ms, max, &fired, cb, ctx))
        goto done;
    if (target < w->cur)
        goto done; /* the clock went backwards: no slot can be due */
    while (fired < max) {
        struct dlq_wheel_entry *h = &w->slot[0][w->cur & WHEEL_MASK];

        if (!list_empty(h) && wheel_fire(w, h, now_ms, max, &fired, cb, ctx))
            break;
        if (w->cur >= target)
            break;
        /*
         * Every entry of tick cur was due. Any left now were filed at the
         * current tick by a callback: they wait for the next run.
         */
        if (!list_empty(h)) {
            struct dlq_wheel_entry local;

            list_init(&local, HEAD_LOCAL);
            list_take(&local, h);
            head_emptied(w, h);
            while (!list_empty(&local)) {
                struct dlq_wheel_entry *e = local.next;

                list_unlink(e);
                list_append(&w->ready, e);
            }
        }
        wheel_advance(w, target);
    }
done:
    w->running = false;
    return fired;
}

int64_t
dlq_wheel_next_due(const struct dlq_wheel *w)
{
    int64_t floor_ms = tick_start(w, w->cur);

    if (w->count == 0)
        return INT64_MAX;
    /* During a run, entries may sit on a local list: be conservative. */
    if (w->running || !list_empty(&w->ready))
        return floor_ms;
    for (unsigned lv = 0; lv < WHEEL_LEVELS; lv++) {
        if (w->occupied[lv] != 0) {
            int64_t m = w->slot_min[lv][ctz64(w->occupied[lv])];

            return m > floor_ms ? m : floor_ms;
        }
    }
    return floor_ms; /* not reached: count > 0 means some list is non-empty */
}

size_t
dlq_wheel_count(const struct dlq_wheel *w)
{
    return w->count;
}
