/* backoff.c - retry delays: immediate, linear and exponential backoff or an explicit delay list, capped without overflow, then jittered. */
#include "policy.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

void
policy_backoff_default(struct policy_backoff *b)
{
    b->linear_step_ms = 300000;
    b->exp_base_ms = 60000;
    b->max_delay_ms = 3600000;
    b->jitter = 0.1;
}

/* Negative parameters count as 0 (policy.h), so every sum below stays in range. */
static int64_t
nonneg(int64_t v)
{
    return v < 0 ? 0 : v;
}

/*
 * step * n capped at cap, all three >= 0 (n >= 1). When n > cap / step the
 * product is above the cap, so it is never formed.
 */
static int64_t
linear_capped(int64_t step, int64_t n, int64_t cap)
{
    if (step == 0)
        return 0;
    if (n > cap / step)
        return cap;
    return step * n;
}

/*
 * base * 2^(n-1) capped at cap, all >= 0 (n >= 1). With a shift of 63 or more
 * any base >= 1 is past INT64_MAX >= cap; otherwise base > cap >> shift means
 * base << shift > cap. So the shift is only done when its result fits.
 */
static int64_t
exponential_capped(int64_t base, int64_t n, int64_t cap)
{
    int64_t shift = n - 1;

    if (base == 0)
        return 0;
    if (shift >= 63 || base > (cap >> shift))
        return cap;
    return base << shift;
}

int64_t
policy_backoff_raw(const struct policy_backoff *b, policy_retry p, int64_t n)
{
    struct policy_backoff def;
    int64_t cap;

    if (b == NULL) {
        policy_backoff_default(&def);
        b = &def;
    }
    if (n < 1)
        n = 1;
    cap = nonneg(b->max_delay_ms);
    switch (p) {
    case POLICY_IMMEDIATE:
        return 0;
    case POLICY_LINEAR:
        return linear_capped(nonneg(b->linear_step_ms), n, cap);
    case POLICY_EXPONENTIAL:
        return exponential_capped(nonneg(b->exp_base_ms), n, cap);
    default: /* POLICY_NEVER and values outside the enum */
        return -1;
    }
}

/*
 * The default random source: xorshift64* in thread-local state, seeded on
 * first use from the kernel (sc_random_u64()) mixed with the state's own
 * address (which differs per thread) by a splitmix64 step.
 */
static _Thread_local uint64_t rand_state;

static uint64_t
default_rand(void)
{
    uint64_t x = rand_state;

    if (x == 0) {
        x = sc_random_u64() ^ (uint64_t)(uintptr_t)&rand_state;
        x += 0x9e3779b97f4a7c15u;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
        x ^= x >> 31;
        if (x == 0)
            x = 0x9e3779b97f4a7c15u;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rand_state = x;
    return x * 0x2545f4914f6cdd1du;
}

/*
 * Rounds x to the nearest integer, saturating at the int64_t range (NaN: 0).
 * Doubles of magnitude 2^52 and more are already integers.
 */
static int64_t
round_i64(double x)
{
    if (isnan(x))
        return 0;
    if (x >= 0x1p63)
        return INT64_MAX;
    if (x <= -0x1p63)
        return INT64_MIN;
    if (x >= 0x1p52 || x <= -0x1p52)
        return (int64_t)x;
    return x >= 0 ? (int64_t)(x + 0.5) : -(int64_t)(-x + 0.5);
}

/*
 * jittered() is d (ms; -1 or 0 returned as they are) varied by a uniform
 * factor in [1 - j, 1 + j] and clamped to [0, cap]. The jitter is applied
 * as an offset: only d * jitter * (2u - 1) goes through
 * a double, and it is added to the exact integer d with a saturating add.
 * So jitter 0 returns d exactly, and the precision lost when d > 2^53 is a
 * few ms of the offset, never a value above the cap (the result is clamped).
 */
static int64_t
jittered(int64_t d, int64_t cap, double j, policy_rand_fn rnd, void *ctx)
{
    int64_t off, r;
    uint64_t bits;
    double u;

    if (d <= 0) /* never (-1) or a zero delay: nothing to jitter */
        return d;
    if (!(j > 0.0)) /* also NaN */
        return d;
    if (j > 1.0)
        j = 1.0;

    bits = rnd != NULL ? rnd(ctx) : default_rand();
    u = (double)(bits >> 11) * 0x1p-53; /* uniform in [0, 1) with 53 bits */
    off = round_i64((double)d * j * (2.0 * u - 1.0));

    if (off > 0 && d > INT64_MAX - off)
        r = INT64_MAX;
    else
        r = d + off; /* d >= 0 and off >= INT64_MIN: no overflow */
    if (r < 0)
        r = 0;
    if (r > cap)
        r = cap;
    return r;
}

int64_t
policy_backoff_delay(const struct policy_backoff *b, policy_retry p, int64_t n,
                     policy_rand_fn rnd, void *ctx)
{
    struct policy_backoff def;

    if (b == NULL) {
        policy_backoff_default(&def);
        b = &def;
    }
    return jittered(policy_backoff_raw(b, p, n), nonneg(b->max_delay_ms), b->jitter, rnd, ctx);
}

/* ---- delay lists ------------------------------------------------------------------------------ */

/* A separator between the delays of a list's text: a comma or a blank. */
static bool
is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

sc_status
policy_delays_parse(const char *s, size_t len, struct policy_delays *out, char *err,
                    size_t errlen)
{
    struct policy_delays d = {0};
    size_t i = 0;

    if (err && errlen)
        err[0] = '\0';
    while (s && i < len) {
        size_t a;
        int64_t ms = 0;
        sc_status st;

        while (i < len && is_sep(s[i]))
            i++;
        if (i == len)
            break;
        a = i;
        while (i < len && !is_sep(s[i]))
            i++;
        if (d.n == SC_DELAYS_MAX) {
            if (err)
                snprintf(err, errlen, "more than %d delays", SC_DELAYS_MAX);
            return SC_EINVAL;
        }
        st = sc_parse_duration_ms(s + a, i - a, &ms);
        if (st != SC_OK || ms < 1 || ms > SC_DELAY_MAX_MS) {
            if (err)
                snprintf(err, errlen, "entry %u: '%.*s' %s", d.n, (int)(i - a > 40 ? 40 : i - a),
                         s + a,
                         st == SC_EPROTO ? "is not a delay (500ms, 10s, 1m, 2h, 7d; a bare integer is ms)"
                                         : "is out of range 1ms-7d");
            return SC_EINVAL;
        }
        d.ms[d.n++] = ms;
    }
    if (d.n == 0) {
        if (err)
            snprintf(err, errlen, "no delay given");
        return SC_EINVAL;
    }
    *out = d;
    return SC_OK;
}

size_t
policy_delays_format(const struct policy_delays *d, char *out, size_t outlen)
{
    size_t len = 0;

    if (outlen)
        out[0] = '\0';
    for (uint32_t i = 0; d && i < d->n && i < SC_DELAYS_MAX; i++) {
        int k = snprintf(out + len, outlen > len ? outlen - len : 0, "%s%" PRId64, i ? "," : "",
                         d->ms[i]);
        if (k < 0)
            break;
        len += (size_t)k;
        if (len >= outlen) {
            if (outlen)
                out[outlen - 1] = '\0';
            len = outlen ? outlen - 1 : 0;
            break;
        }
    }
    return len;
}

int64_t
policy_delays_raw(const struct policy_delays *d, int64_t n)
{
    if (!d || d->n == 0 || d->n > SC_DELAYS_MAX)
        return -1;
    if (n < 1)
        n = 1;
    return d->ms[n > (int64_t)d->n ? d->n - 1 : (uint32_t)(n - 1)];
}

int64_t
policy_delays_delay(const struct policy_delays *d, int64_t n, double jitter, policy_rand_fn rnd,
                    void *ctx)
{
    return jittered(policy_delays_raw(d, n), SC_DELAY_MAX_MS, jitter, rnd, ctx);
}
