/* wheel.h - hierarchical timer wheel with embedded entries, driven by a caller-supplied clock. */
#ifndef DLQ_WHEEL_H
#define DLQ_WHEEL_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/*
 * Invariants (see docs/wheel.md):
 * - time is in integer ms of a monotonic clock that the caller passes in;
 *   the wheel never reads a clock, so tests drive time by hand; any int64_t
 *   is a valid time (negative, or as far out as INT64_MAX);
 * - an entry due at t fires in the first sc_wheel_run() whose now >= t and
 *   never earlier; entries are kept at tick granularity (a slot holds one
 *   tick) and the current tick's slot is checked entry by entry, so with a
 *   run every tick an entry fires at most one tick late;
 * - entries fire earliest tick first; within one tick the order is
 *   unspecified. Entries due before the wheel's current tick (scheduled in
 *   the past) count as due at the current tick and fire on the next run;
 * - schedule and cancel are O(1) and never allocate: the entry is embedded
 *   in its owner (a task) and linked into a slot list;
 * - the wheel holds 11 levels of 64 slots; level k slots span 64^k ticks, so
 *   the levels cover all 2^64 ticks and no entry is ever out of range.
 *   Advancing skips empty ticks (a jump of years over a sparse wheel costs a
 *   few steps per level); an entry moves down (cascades) at most once per
 *   level.
 *
 * The layout of struct sc_wheel_entry is public because owners embed it;
 * only the wheel touches its fields.
 */
struct sc_wheel_entry {
    struct sc_wheel_entry *next;
    struct sc_wheel_entry *prev; /* NULL when not scheduled */
    int64_t due;                 /* ms, monotonic */
};

struct sc_wheel; /* opaque */

/*
 * Called for each entry that fires, after it has been unlinked (it may be
 * re-scheduled inside). The callback must not call sc_wheel_run() or
 * sc_wheel_free() on the wheel that is running it.
 */
typedef void (*sc_wheel_cb)(struct sc_wheel_entry *e, void *ctx);

/*
 * sc_wheel_new() returns a wheel whose clock starts at now_ms, with a tick of
 * tick_ms (1-1000; values outside are clamped). Never returns NULL (aborts
 * on OOM). sc_wheel_free() frees it (NULL is a no-op) without touching
 * entries still linked; the owners must not cancel them afterwards (re-init
 * them with sc_wheel_entry_init() to reuse them). One thread (the loop) at a
 * time.
 */
struct sc_wheel *sc_wheel_new(int64_t tick_ms, int64_t now_ms);
void sc_wheel_free(struct sc_wheel *w);

/* sc_wheel_entry_init() marks e as not scheduled. Call once before first use. */
void sc_wheel_entry_init(struct sc_wheel_entry *e);

/* sc_wheel_entry_scheduled() is true while e is linked in a wheel. */
static inline int
sc_wheel_entry_scheduled(const struct sc_wheel_entry *e)
{
    return e->prev != NULL;
}

/*
 * sc_wheel_schedule() files e to fire at due_ms (monotonic ms; a time in the
 * past fires on the next run). An e already scheduled in w is moved; one
 * scheduled in another wheel must be cancelled there first (the wheel is
 * not recorded in the entry). O(1), no allocation. Loop thread.
 */
void sc_wheel_schedule(struct sc_wheel *w, struct sc_wheel_entry *e, int64_t due_ms);

/* sc_wheel_cancel() unlinks e if scheduled; O(1), safe on an unscheduled entry. Loop thread. */
void sc_wheel_cancel(struct sc_wheel *w, struct sc_wheel_entry *e);

/*
 * sc_wheel_run() advances the wheel to now_ms and calls cb(e, ctx) for due
 * entries (due <= now_ms), at most max of them (0 means no limit), earliest
 * tick first. Due entries past the limit stay due and fire first in the next
 * run (this is how a backlog after a stall drains at a bounded rate).
 * Returns how many fired. Cost: O(levels) per tick that holds entries or
 * cascades, plus O(1) per entry fired or cascaded; empty ticks are skipped.
 * Loop thread; cb may schedule or cancel any entry, including e and others
 * due in the same tick. An entry that cb files at or before the current tick
 * fires in the next run, not this one (a callback re-arming itself cannot
 * loop); one filed at a later tick that is already due may fire in this run.
 * A now_ms earlier than a previous run's is allowed and fires nothing early.
 */
size_t sc_wheel_run(struct sc_wheel *w, int64_t now_ms, size_t max, sc_wheel_cb cb, void *ctx);

/*
 * sc_wheel_next_due() returns a time (monotonic ms) at or before the earliest
 * scheduled entry's due time and never before the start of the wheel's
 * current tick, for arming the loop timer; INT64_MAX when the wheel is
 * empty. It is exact (the earliest due itself) unless an entry of the
 * earliest slot was cancelled since that slot was last scanned, in which
 * case the timer may wake once early and find nothing due. It never makes
 * the loop spin: a run at the returned time either fires something or
 * leaves sc_wheel_next_due() later than its now_ms. Called from inside a
 * callback it returns the start of the current tick. O(levels).
 */
int64_t sc_wheel_next_due(const struct sc_wheel *w);

/* sc_wheel_count() returns the number of scheduled entries. O(1). */
size_t sc_wheel_count(const struct sc_wheel *w);

#endif
