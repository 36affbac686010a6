/* rates.c - a ring of per-minute counts over the last hour, advanced by the loop's tick (stats' "last_hour"). */
#include <string.h>

#include "rates.h"

static const char *const rate_names[SC_RATE_KINDS] = {"ingested", "retried", "succeeded", "exhausted"};

/* Zeroes the slots of the minutes after r->minute up to minute (all of them after an hour). */
static void
advance(struct sc_rates *r, int64_t minute)
{
    int64_t gap = minute - r->minute;

    if (gap <= 0)
        return;
    if (gap >= SC_RATES_MINUTES) {
        memset(r->ring, 0, sizeof(r->ring));
    } else {
        for (int64_t m = r->minute + 1; m <= minute; m++)
            for (int k = 0; k < SC_RATE_KINDS; k++)
                r->ring[k][m % SC_RATES_MINUTES] = 0;
    }
    r->minute = minute;
}

void
sc_rates_tick(struct sc_rates *r, int64_t now_wall_ms, const uint64_t now[SC_RATE_KINDS])
{
    int64_t minute = now_wall_ms / 60000;

    /*
     * The first tick credits everything since the counters started (r->last
     * is zero): a failure taken in before the loop's first tick (a slow
     * start) counts in this minute, not nowhere.
     */
    if (r->minute == 0)
        r->minute = minute;
    advance(r, minute); /* a wall clock set back keeps crediting the later minute */
    for (int k = 0; k < SC_RATE_KINDS; k++) {
        uint64_t d = now[k] >= r->last[k] ? now[k] - r->last[k] : now[k];
        uint32_t *slot = &r->ring[k][r->minute % SC_RATES_MINUTES];
        *slot = d > UINT32_MAX - *slot ? UINT32_MAX : *slot + (uint32_t)d;
        r->last[k] = now[k];
    }
}

void
sc_rates_json(const struct sc_rates *r, int64_t now_wall_ms, const uint64_t now[SC_RATE_KINDS],
              struct sc_jw *w)
{
    int64_t minute = now_wall_ms / 60000;

    sc_jw_open(w, "last_hour", '{');
    for (int k = 0; k < SC_RATE_KINDS; k++) {
        sc_jw_open(w, rate_names[k], '[');
        for (int64_t m = minute - (SC_RATES_MINUTES - 1); m <= minute; m++) {
            /* a slot holds minute m only when m is within the hour before the last tick */
            bool held = r->minute != 0 && m <= r->minute && m > r->minute - SC_RATES_MINUTES;
            int64_t n = held ? (int64_t)r->ring[k][m % SC_RATES_MINUTES] : 0;
            if (m == minute) /* not credited by a tick yet (all of it before the first tick) */
                n += (int64_t)(now[k] >= r->last[k] ? now[k] - r->last[k] : now[k]);
            sc_jw_int(w, NULL, n);
        }
        sc_jw_close(w, ']');
    }
    sc_jw_close(w, '}');
}
