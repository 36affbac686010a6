/* log.c - leveled log lines on stderr, as logfmt or JSON, one write per line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "log.h"

static sc_log_level min_level = SC_LOG_INFO;
static bool json_format;
/* The held lines (sc_log_hold()): used only by the thread whose holding flag is set. */
static struct sc_buf held = {NULL, 0, 0, 1024 * 1024};
static _Thread_local bool holding;

void
sc_log_setup(config_log_level level, config_log_format format)
{
    min_level = (sc_log_level)level;
    json_format = format == CONFIG_LOG_JSON;
}

bool
sc_log_enabled(sc_log_level level)
{
    return level >= min_level;
}

const char *
sc_log_int(int64_t v)
{
    static _Thread_local char slots[8][SC_INT_LEN];
    static _Thread_local unsigned next;
    char *s = slots[next++ % 8];

    sc_format_i64(v, s);
    return s;
}

bool
sc_lograte_take(struct sc_lograte *r, int64_t now_mono, int64_t interval_ms, uint64_t *suppressed)
{
    if (r->used && now_mono - r->last_mono < interval_ms) {
        r->suppressed++;
        return false;
    }
    r->used = true;
    r->last_mono = now_mono;
    *suppressed = r->suppressed;
    r->suppressed = 0;
    return true;
}

/* Appends a logfmt value: bare when safe, else quoted with escapes. */
static void
logfmt_value(struct sc_buf *b, const char *v)
{
    bool bare = *v != '\0';

    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p >= 0x7f)
            bare = false;
    if (bare) {
        sc_buf_append(b, v, strlen(v));
        return;
    }
    sc_buf_appendc(b, '"');
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            sc_buf_appendf(b, "\\%c", *p);
        else if (*p == '\n')
            sc_buf_append(b, "\\n", 2);
        else if (*p < ' ' || *p == 0x7f)
            sc_buf_appendf(b, "\\x%02x", *p);
        else
            sc_buf_appendc(b, (char)*p);
    }
    sc_buf_appendc(b, '"');
}

/* Writes the held lines, if any, in one write(2). The holding thread. */
static void
held_write(void)
{
    if (held.len) {
        ssize_t n = write(STDERR_FILENO, held.data, held.len);
        (void)n;
        sc_buf_reset(&held);
    }
}

void
sc_log_hold(void)
{
    holding = true;
}

void
sc_log_flush(void)
{
    if (!holding)
        return;
    held_write();
    holding = false;
}

/* Appends one key=value (or ,"key":"value") pair; v may be NULL (""). */
static void
log_pair(struct sc_buf *b, const char *k, const char *v)
{
    char *masked = NULL;

    if (!v)
        v = "";
    if (strpbrk(v, "@?")) { /* a URL may carry a password (user info) or a token (query): mask them */
        size_t len = strlen(v), n = config_redact(v, len, NULL, 0);
        masked = sc_xmalloc(n + 1);
        config_redact(v, len, masked, n + 1);
        v = masked;
    }
    if (json_format) {
        sc_buf_appendc(b, ',');
        sc_json_quote(b, k, strlen(k));
        sc_buf_appendc(b, ':');
        sc_json_quote(b, v, strlen(v));
    } else {
        sc_buf_appendc(b, ' ');
        sc_buf_append(b, k, strlen(k));
        sc_buf_appendc(b, '=');
        logfmt_value(b, v);
    }
    free(masked);
}

/*
 * sc_log() writes one line: time, level, msg, then the NULL-terminated
 * key/value string pairs that follow msg. Values may hold any bytes; they
 * are escaped, and the password and the query of any URL in them are
 * masked (config_redact(): "nats://u:***@host", "https://h/p?***"). Any thread (one write(2) per line,
 * or per batch on the holding thread).
 */
void
sc_log(sc_log_level level, const char *msg, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char ts[SC_RFC3339_LEN];
    struct sc_buf own, *b = &own;
    va_list ap;
    const char *k;

    if (level < min_level)
        return;
    if (holding)
        b = &held; /* appended behind the held lines: written at the flush, or now below */
    else
        sc_buf_init(&own, 64 * 1024);
    sc_format_rfc3339(sc_now_wall_ms(), ts);
    if (json_format) {
        sc_buf_append(b, "{\"time\":\"", 9);
        sc_buf_append(b, ts, strlen(ts));
        sc_buf_append(b, "\",\"level\":\"", 11);
        sc_buf_append(b, names[level], strlen(names[level]));
        sc_buf_append(b, "\",\"msg\":", 8);
        sc_json_quote(b, msg, strlen(msg));
    } else {
        sc_buf_append(b, "time=", 5);
        sc_buf_append(b, ts, strlen(ts));
        sc_buf_append(b, " level=", 7);
        sc_buf_append(b, names[level], strlen(names[level]));
        sc_buf_append(b, " msg=", 5);
        logfmt_value(b, msg);
    }
    va_start(ap, msg);
    while ((k = va_arg(ap, const char *)) != NULL)
        log_pair(b, k, va_arg(ap, const char *));
    va_end(ap);
    if (json_format)
        sc_buf_appendc(b, '}');
    sc_buf_appendc(b, '\n');
    if (holding) {
        if (level >= SC_LOG_WARN || held.len >= SC_LOG_HELD_BYTES)
            held_write();
        return;
    }
    if (own.data) {
        ssize_t n = write(STDERR_FILENO, own.data, own.len);
        (void)n;
    }
    sc_buf_destroy(&own);
}
