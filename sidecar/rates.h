/* rates.h - per-minute counts of the last hour (ingested, retried, succeeded, exhausted) for stats' "last_hour". */
#ifndef SC_RATES_H
#define SC_RATES_H

#include <stdint.h>

#include "common.h"

#define SC_RATES_MINUTES 60

/* The four series, in the order "last_hour" writes them. */
enum sc_rate_kind { SC_RATE_INGESTED, SC_RATE_RETRIED, SC_RATE_SUCCEEDED, SC_RATE_EXHAUSTED, SC_RATE_KINDS };

/*
 * A ring of SC_RATES_MINUTES per-minute counters per series. The counts
 * are deltas of the state machine's lifetime counters (struct dlq_counters)
 * taken at each tick, credited to the wall-clock minute of that tick.
 * Zero-initialised is a valid empty ring. Loop thread only.
 */
struct sc_rates {
    int64_t minute;                            /* the current minute (wall ms / 60000); 0: none yet */
    uint64_t last[SC_RATE_KINDS];              /* the lifetime counters at the previous tick */
    uint32_t ring[SC_RATE_KINDS][SC_RATES_MINUTES]; /* slot minute % 60 */
};

/*
 * sc_rates_tick() credits the growth of now[] (the four lifetime counters,
 * in enum sc_rate_kind order) since the previous call to the minute of
 * now_wall_ms (ms since the epoch), zeroing the minutes that passed without
 * a tick. The first call credits the counters whole (they start at zero
 * with the process). A counter that went down (a restart of the counters)
 * counts from zero. Loop thread.
 */
void sc_rates_tick(struct sc_rates *r, int64_t now_wall_ms, const uint64_t now[SC_RATE_KINDS]);

/*
 * sc_rates_json() writes "last_hour":{"ingested":[60 ints],"retried":[...],
 * "succeeded":[...],"exhausted":[...]} to w: the last 60 minutes up to the
 * one of now_wall_ms, oldest first (the last entry is the current, partial
 * minute). now[] are the lifetime counters as sc_rates_tick() takes them:
 * what they grew since the last tick counts in the current minute, so the
 * series agree with lifetime_stats read at the same moment. Read-only.
 * Loop thread.
 */
void sc_rates_json(const struct sc_rates *r, int64_t now_wall_ms, const uint64_t now[SC_RATE_KINDS],
                   struct sc_jw *w);

#endif
