/* common.c - status names, clocks, RFC 3339 time and capped buffers. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

const char *
sc_status_str(sc_status s)
{
    switch (s) {
    case SC_OK: return "ok";
    case SC_ENOMEM: return "enomem";
    case SC_EINVAL: return "einval";
    case SC_EPROTO: return "eproto";
    case SC_ETOOBIG: return "etoobig";
    case SC_ENOTFOUND: return "enotfound";
    case SC_ECONFLICT: return "econflict";
    case SC_EFULL: return "efull";
    case SC_EIO: return "eio";
    case SC_EUNAVAIL: return "eunavail";
    }
    return "unknown";
}

static int64_t
clock_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
sc_now_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

uint64_t
sc_fnv1a64(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int64_t
sc_now_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

/* The reading of sc_clock_hold() on this thread, while held. */
static _Thread_local bool clock_held;
static _Thread_local int64_t held_wall, held_mono;

void
sc_clock_hold(void)
{
    held_wall = clock_ms(CLOCK_REALTIME);
    held_mono = clock_ms(CLOCK_MONOTONIC);
    clock_held = true;
}

void
sc_clock_release(void)
{
    clock_held = false;
}

/* A reading that is not held: the clock, apart so that the held path stays a load and a return. */
static __attribute__((noinline)) int64_t
held_slow(bool wall)
{
    return clock_ms(wall ? CLOCK_REALTIME : CLOCK_MONOTONIC);
}

int64_t
sc_held_wall_ms(void)
{
    return clock_held ? held_wall : held_slow(true);
}

int64_t
sc_held_mono_ms(void)
{
    return clock_held ? held_mono : held_slow(false);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Writes v as exactly n decimal digits (zero-padded, v < 10^n) at out. */
static void
put_digits(char *out, unsigned v, int n)
{
    while (n-- > 0) {
        out[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

size_t
sc_format_int(uint64_t v, bool neg, char *out)
{
    char d[SC_INT_LEN];
    size_t i = sizeof(d), n;

    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (neg)
        d[--i] = '-';
    n = sizeof(d) - i;
    memcpy(out, d + i, n);
    out[n] = '\0';
    return n;
}

size_t
sc_format_rfc3339(int64_t wall_ms, char *out)
{
    int64_t days, secs, ms, y;
    unsigned mo, d;

    out[0] = '\0';
    ms = wall_ms % 1000;
    secs = wall_ms / 1000;
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    days = secs / 86400;
    secs %= 86400;
    if (secs < 0) {
        secs += 86400;
        days -= 1;
    }
    civil_from_days(days, &y, &mo, &d);
    if (y < 0 || y > 9999)
        return 0;
    /* Written by hand, not snprintf(): a log line, an event and a task view each format one. */
    put_digits(out, (unsigned)y, 4);
    out[4] = '-';
    put_digits(out + 5, mo, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[10] = 'T';
    put_digits(out + 11, (unsigned)(secs / 3600), 2);
    out[13] = ':';
    put_digits(out + 14, (unsigned)(secs / 60 % 60), 2);
    out[16] = ':';
    put_digits(out + 17, (unsigned)(secs % 60), 2);
    out[19] = '.';
    put_digits(out + 20, (unsigned)ms, 3);
    out[23] = 'Z';
    out[24] = '\0';
    return 24;
}

/* Reads exactly n decimal digits at s[*i]; returns -1 when they are not there. */
static int64_t
digits(const char *s, size_t len, size_t *i, size_t n)
{
    int64_t v = 0;

    if (len - *i < n)
        return -1;
    for (size_t k = 0; k < n; k++) {
        char c = s[*i + k];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *i += n;
    return v;
}

static const unsigned char mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

sc_status
sc_parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
    size_t i = 0;
    int64_t y, mo, d, h, mi, se, ms = 0, off = 0;

    *out_ms = 0;
    if ((y = digits(s, len, &i, 4)) < 0 || i >= len || s[i++] != '-')
        return SC_EPROTO;
    if ((mo = digits(s, len, &i, 2)) < 1 || mo > 12 || i >= len || s[i++] != '-')
        return SC_EPROTO;
    if ((d = digits(s, len, &i, 2)) < 1 || d > mdays[mo - 1] || i >= len)
        return SC_EPROTO;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return SC_EPROTO;
    if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
        return SC_EPROTO;
    i++;
    if ((h = digits(s, len, &i, 2)) < 0 || h > 23 || i >= len || s[i++] != ':')
        return SC_EPROTO;
    if ((mi = digits(s, len, &i, 2)) < 0 || mi > 59 || i >= len || s[i++] != ':')
        return SC_EPROTO;
    /* 60 is a leap second; it is folded into the next minute. */
    if ((se = digits(s, len, &i, 2)) < 0 || se > 60 || i >= len)
        return SC_EPROTO;
    if (s[i] == '.') {
        size_t start = ++i;
        int scale = 100;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            ms += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start || i - start > 9 || i >= len)
            return SC_EPROTO;
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int sign = s[i++] == '-' ? -1 : 1;
        int64_t oh, om;
        if ((oh = digits(s, len, &i, 2)) < 0 || oh > 23 || i >= len || s[i++] != ':')
            return SC_EPROTO;
        if ((om = digits(s, len, &i, 2)) < 0 || om > 59)
            return SC_EPROTO;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return SC_EPROTO;
    }
    if (i != len)
        return SC_EPROTO;
    *out_ms = ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se - off)
               * 1000) + ms;
    return SC_OK;
}

void
sc_buf_init(struct sc_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void
sc_buf_destroy(struct sc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
sc_buf_reset(struct sc_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* Makes room for n more bytes plus the NUL. */
static sc_status
buf_reserve(struct sc_buf *b, size_t n)
{
    size_t need, ncap;
    char *p;

    /* The last test keeps room for the NUL when max is SIZE_MAX. */
    if (n > b->max || b->len > b->max - n || b->len + n == SIZE_MAX)
        return SC_ETOOBIG;
    need = b->len + n + 1;
    if (need <= b->cap)
        return SC_OK;
    ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    p = realloc(b->data, ncap);
    if (!p)
        return SC_ENOMEM;
    b->data = p;
    b->cap = ncap;
    return SC_OK;
}

sc_status
sc_buf_append(struct sc_buf *b, const void *p, size_t n)
{
    sc_status s = buf_reserve(b, n);

    if (s)
        return s;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return SC_OK;
}

char *
sc_buf_grow(struct sc_buf *b, size_t n)
{
    char *p;

    if (buf_reserve(b, n))
        return NULL;
    p = b->data + b->len;
    b->len += n;
    b->data[b->len] = '\0';
    return p;
}

sc_status
sc_buf_appendc(struct sc_buf *b, char c)
{
    return sc_buf_append(b, &c, 1);
}

sc_status
sc_buf_appendf(struct sc_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    int n;
    sc_status s;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return SC_EINVAL;
    if ((size_t)n < sizeof(small))
        return sc_buf_append(b, small, (size_t)n);
    if ((s = buf_reserve(b, (size_t)n)))
        return s;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SC_OK;
}

sc_status
sc_buf_append_capped(struct sc_buf *b, const void *p, size_t n)
{
    size_t room = b->max > b->len ? b->max - b->len : 0;
    sc_status s;

    if (n <= room)
        return sc_buf_append(b, p, n);
    if (room && (s = sc_buf_append(b, p, room)))
        return s;
    return SC_ETOOBIG;
}

uint64_t
sc_hash64(uint64_t seed, const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = seed ^ ((uint64_t)len * 0x9e3779b97f4a7c15ULL);

    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        s += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, s, len);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    }
    h ^= h >> 29;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

uint64_t
sc_random_u64(void)
{
    uint64_t r = 0;
    struct timespec ts;

    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = sc_hash64((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&r, &ts, sizeof(ts)) ^
            (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)sc_now_wall_ms();
    }
    return r ? r : 0x9e3779b97f4a7c15ULL;
}

static void *
oom(size_t n)
{
    fprintf(stderr, "dlq-sidecar: out of memory allocating %zu bytes\n", n);
    abort();
}

void *
sc_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *
sc_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : oom(n * size);
}

void *
sc_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *
sc_xstrdup(const char *s)
{
    return sc_xstrndup(s, strlen(s));
}

char *
sc_xstrndup(const char *s, size_t n)
{
    char *p = sc_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

long
sc_find_str(const void *base, size_t n, size_t size, const char *key)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s;
        int c;
        memcpy(&s, (const char *)base + mid * size, sizeof(s));
        c = strcmp(s, key);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}
