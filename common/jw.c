/* jw.c - the one JSON object writer: "key":value pairs with the commas handled, over an sc_buf. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void
sc_jw_init(struct sc_jw *w, struct sc_buf *b)
{
    w->b = b;
    w->st = SC_OK;
    w->first = true;
}

void
sc_jw_raw(struct sc_jw *w, const char *s, size_t n)
{
    if (!w->st)
        w->st = sc_buf_append(w->b, s, n);
}

void
sc_jw_key(struct sc_jw *w, const char *k)
{
    size_t comma = w->first ? 0 : 1, n;
    char *p;

    w->first = false;
    if (!k) {
        sc_jw_raw(w, ",", comma);
        return;
    }
    if (w->st)
        return;
    /* A plain key (every key this program writes) in one step: ,"key": */
    n = strlen(k);
    if (sc_json_plain_len(k, n) == n && (p = sc_buf_grow(w->b, comma + n + 3))) {
        if (comma)
            *p++ = ',';
        *p++ = '"';
        memcpy(p, k, n);
        p[n] = '"';
        p[n + 1] = ':';
        return;
    }
    sc_jw_raw(w, ",", comma);
    if (!w->st)
        w->st = sc_json_quote(w->b, k, n);
    sc_jw_raw(w, ":", 1);
}

void
sc_jw_strn(struct sc_jw *w, const char *k, const char *v, size_t len)
{
    sc_jw_key(w, k);
    if (!v)
        sc_jw_raw(w, "null", 4);
    else if (!w->st)
        w->st = sc_json_quote(w->b, v, len);
}

void
sc_jw_str(struct sc_jw *w, const char *k, const char *v)
{
    sc_jw_strn(w, k, v, v ? strlen(v) : 0);
}

void
sc_jw_int(struct sc_jw *w, const char *k, int64_t v)
{
    char d[SC_INT_LEN];

    sc_jw_key(w, k);
    sc_jw_raw(w, d, sc_format_i64(v, d));
}

void
sc_jw_uint(struct sc_jw *w, const char *k, uint64_t v)
{
    char d[SC_INT_LEN];

    sc_jw_key(w, k);
    sc_jw_raw(w, d, sc_format_int(v, false, d));
}

void
sc_jw_bool(struct sc_jw *w, const char *k, bool v)
{
    sc_jw_key(w, k);
    sc_jw_raw(w, v ? "true" : "false", v ? 4 : 5);
}

void
sc_jw_null(struct sc_jw *w, const char *k)
{
    sc_jw_key(w, k);
    sc_jw_raw(w, "null", 4);
}

void
sc_jw_time(struct sc_jw *w, const char *k, int64_t wall_ms)
{
    char ts[SC_RFC3339_LEN];
    size_t n;

    if (!wall_ms || !(n = sc_format_rfc3339(wall_ms, ts))) {
        sc_jw_null(w, k);
        return;
    }
    sc_jw_strn(w, k, ts, n);
}

void
sc_jw_fmt(struct sc_jw *w, const char *k, const char *fmt, ...)
{
    char text[SC_JW_FMT_MAX];
    va_list ap;
    int n;

    sc_jw_key(w, k);
    if (w->st)
        return;
    va_start(ap, fmt);
    n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(text))
        w->st = SC_ETOOBIG;
    else
        w->st = sc_buf_append(w->b, text, (size_t)n);
}

void
sc_jw_open(struct sc_jw *w, const char *k, char open)
{
    sc_jw_key(w, k);
    sc_jw_raw(w, &open, 1);
    w->first = true;
}

void
sc_jw_close(struct sc_jw *w, char close)
{
    sc_jw_raw(w, &close, 1);
    w->first = false;
}
