/* breaker.c - the circuit breaker per retry subject: the state machine closed -> open -> half-open -> closed or open, its events, stats, /metrics and the sweep that forgets subjects no task retries to. */
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "daemon.h"
#include "subjects.h"

/* ---- the pure part ----------------------------------------------------------------------------- */

const char *
sc_circuit_state_name(sc_circuit_state s)
{
    return s == SC_CIRCUIT_OPEN ? "open" : s == SC_CIRCUIT_HALF_OPEN ? "half-open" : "closed";
}

static long
find(const struct sc_breaker *b, const char *subject)
{
    return sc_find_str(b->e, b->n, sizeof(b->e[0]), subject);
}

static void
forget(struct sc_breaker *b, size_t i)
{
    free(b->e[i].subject);
    memmove(&b->e[i], &b->e[i + 1], (b->n - i - 1) * sizeof(b->e[0]));
    b->n--;
}

const struct sc_circuit *
sc_breaker_find(const struct sc_breaker *b, const char *subject)
{
    long i;

    if (!b || !b->n || !subject)
        return NULL;
    i = find(b, subject);
    return i >= 0 ? &b->e[i] : NULL;
}

int64_t
sc_breaker_gate(struct sc_breaker *b, const char *subject, int64_t now)
{
    struct sc_circuit *c = (struct sc_circuit *)sc_breaker_find(b, subject);

    if (!c || b->threshold <= 0 || c->state == SC_CIRCUIT_CLOSED)
        return 0;
    if (c->state == SC_CIRCUIT_OPEN) {
        if (now < c->next_probe_mono)
            return c->next_probe_mono;
        c->state = SC_CIRCUIT_HALF_OPEN; /* this retry is the probe */
    } else if (c->probe_out && now < c->probe_deadline_mono) {
        return now + (b->cooldown_ms > 0 ? b->cooldown_ms : 1);
    }
    c->probe_out = true;
    c->probe_deadline_mono = now + b->probe_timeout_ms;
    return 0;
}

/* Opens c at now: the next probe a cool-down away. */
static void
open_circuit(struct sc_breaker *b, struct sc_circuit *c, int64_t now_mono, int64_t now_wall)
{
    c->state = SC_CIRCUIT_OPEN;
    c->probe_out = false;
    c->opened_mono = now_mono;
    c->opened_wall = now_wall;
    c->next_probe_mono = now_mono + b->cooldown_ms;
    b->opened_total++;
}

sc_breaker_change
sc_breaker_verdict(struct sc_breaker *b, const char *subject, dlq_attempt_end v, int64_t now_mono,
                   int64_t now_wall)
{
    struct sc_circuit *c;
    long i;

    if (!b || !subject || b->threshold <= 0)
        return SC_BREAKER_SAME;
    i = b->n ? find(b, subject) : -1;
    if (v == DLQ_END_OK) {
        sc_circuit_state was;
        if (i < 0)
            return SC_BREAKER_SAME;
        was = b->e[i].state;
        forget(b, (size_t)i);
        return was != SC_CIRCUIT_CLOSED ? SC_BREAKER_CLOSED : SC_BREAKER_SAME;
    }
    if (v == DLQ_END_NONE) {
        if (i >= 0 && b->e[i].state == SC_CIRCUIT_HALF_OPEN)
            b->e[i].probe_out = false; /* the probe got no answer either way: another may go */
        return SC_BREAKER_SAME;
    }
    if (i < 0) {
        size_t at = (size_t)(-i - 1);
        if (b->n >= SC_BREAKER_MAX) {
            b->untracked++;
            return SC_BREAKER_SAME;
        }
        if (!b->e)
            b->e = sc_xcalloc(SC_BREAKER_MAX, sizeof(b->e[0]));
        memmove(&b->e[at + 1], &b->e[at], (b->n - at) * sizeof(b->e[0]));
        memset(&b->e[at], 0, sizeof(b->e[at]));
        b->e[at].subject = sc_xstrdup(subject);
        b->e[at].live = true;
        b->n++;
        i = (long)at;
    }
    c = &b->e[i];
    c->failures++;
    if (c->state == SC_CIRCUIT_HALF_OPEN ||
        (c->state == SC_CIRCUIT_CLOSED && c->failures >= b->threshold)) {
        open_circuit(b, c, now_mono, now_wall);
        return SC_BREAKER_OPENED;
    }
    return SC_BREAKER_SAME; /* closed below the threshold, or open (an attempt sent before it opened) */
}

void
sc_breaker_free(struct sc_breaker *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->e[i].subject);
    free(b->e);
    b->e = NULL;
    b->n = 0;
}

/* ---- the daemon's part ------------------------------------------------------------------------- */

/* Copies the settings of d's configuration (a SIGHUP may change them). */
static struct sc_breaker *
settings(struct sc_daemon *d)
{
    struct sc_breaker *b = d->breaker;

    if (b) {
        b->threshold = d->cfg->circuit_breaker_failures;
        b->cooldown_ms = d->cfg->circuit_breaker_cooldown_ms;
        b->probe_timeout_ms = d->cfg->retry_timeout_ms + d->cfg->circuit_breaker_cooldown_ms;
    }
    return b;
}

/* <prefix>.events.<kind> about c. */
static void
circuit_event(struct sc_daemon *d, const char *kind, const struct sc_circuit *c, int64_t now_mono)
{
    struct sc_buf *buf = &d->scratch;
    char subj[256], at[SC_RFC3339_LEN];
    int64_t now_wall = sc_now_wall_ms();
    struct sc_jw w;

    sc_log(c->state == SC_CIRCUIT_OPEN ? SC_LOG_WARN : SC_LOG_INFO,
           c->state == SC_CIRCUIT_OPEN ? "circuit opened: retries to the subject are held"
                                       : "circuit closed: retries to the subject go again",
           "subject", c->subject, "failures", sc_log_int(c->failures), NULL);
    if (!d->cfg->events_enabled)
        return;
    sc_buf_reset(buf);
    sc_format_rfc3339(now_wall, at);
    sc_jw_init(&w, buf);
    sc_jw_open(&w, NULL, '{');
    sc_jw_str(&w, "subject", c->subject);
    sc_jw_str(&w, "state", sc_circuit_state_name(c->state));
    sc_jw_int(&w, "failures", c->failures);
    sc_jw_str(&w, "at", at);
    if (c->state == SC_CIRCUIT_OPEN)
        sc_jw_time(&w, "next_probe_at", now_wall + (c->next_probe_mono - now_mono));
    sc_jw_close(&w, '}');
    snprintf(subj, sizeof(subj), "%s.events.%s", d->cfg->subjects_prefix, kind);
    if (buf->data)
        sc_publish(d, subj, NULL, buf->data, buf->len, NULL);
}

int64_t
sc_breaker_task_gate(struct sc_daemon *d, const struct dlq_task *t, int64_t now_mono)
{
    struct sc_breaker *b = settings(d);

    return b ? sc_breaker_gate(b, t->retry_subject, now_mono) : 0;
}

bool
sc_breaker_task_verdict(struct sc_daemon *d, const struct dlq_task *t, dlq_attempt_end v,
                        int64_t now_mono)
{
    struct sc_breaker *b = settings(d);
    sc_breaker_change ch;

    if (!b || b->threshold <= 0)
        return false; /* off: no clock read per outcome */
    ch = sc_breaker_verdict(b, t->retry_subject, v, now_mono, sc_now_wall_ms());
    if (ch == SC_BREAKER_OPENED) {
        circuit_event(d, "circuit_opened", sc_breaker_find(b, t->retry_subject), now_mono);
    } else if (ch == SC_BREAKER_CLOSED) {
        struct sc_circuit c = {.subject = t->retry_subject, .state = SC_CIRCUIT_CLOSED};
        circuit_event(d, "circuit_closed", &c, now_mono);
    }
    return ch == SC_BREAKER_CLOSED;
}

sc_circuit_state
sc_breaker_state(const struct sc_daemon *d, const char *retry_subject)
{
    const struct sc_circuit *c = sc_breaker_find(d->breaker, retry_subject);

    return c ? c->state : SC_CIRCUIT_CLOSED;
}

size_t
sc_breaker_not_closed(const struct sc_daemon *d)
{
    const struct sc_breaker *b = d->breaker;
    size_t n = 0;

    for (size_t i = 0; b && i < b->n; i++)
        n += b->e[i].state != SC_CIRCUIT_CLOSED;
    return n;
}

void
sc_breaker_json(const struct sc_daemon *d, struct sc_jw *w)
{
    const struct sc_breaker *b = d->breaker;
    size_t n = b ? b->n : 0;
    int64_t now_mono = sc_now_mono_ms(), now_wall = sc_now_wall_ms();

    sc_jw_open(w, "circuits", '[');
    for (size_t i = 0; i < n && i < SC_BREAKER_LISTED; i++) {
        const struct sc_circuit *c = &b->e[i];
        sc_jw_open(w, NULL, '{');
        sc_jw_str(w, "subject", c->subject);
        sc_jw_str(w, "state", sc_circuit_state_name(c->state));
        sc_jw_int(w, "failures", c->failures);
        if (c->opened_wall)
            sc_jw_time(w, "opened_at", c->opened_wall);
        else
            sc_jw_null(w, "opened_at");
        if (c->state == SC_CIRCUIT_OPEN)
            sc_jw_time(w, "next_probe_at", now_wall + (c->next_probe_mono - now_mono));
        else
            sc_jw_null(w, "next_probe_at");
        sc_jw_close(w, '}');
    }
    sc_jw_close(w, ']');
    sc_jw_int(w, "circuits_open", (int64_t)sc_breaker_not_closed(d));
    sc_jw_uint(w, "circuits_opened_total", b ? b->opened_total : 0);
}

void
sc_breaker_render(const struct sc_daemon *d, struct sc_buf *buf)
{
    const struct sc_breaker *b = d->breaker;
    size_t n = b ? b->n : 0, shown = 0;

    sc_buf_appendf(buf, "# HELP dlq_circuits_open Retry subjects whose circuit is open or half-open.\n"
                        "# TYPE dlq_circuits_open gauge\n"
                        "dlq_circuits_open %zu\n", sc_breaker_not_closed(d));
    sc_buf_appendf(buf, "# HELP dlq_circuit_state Circuit of a retry subject: 1 open, 2 half-open "
                        "(the first %d not closed, in order).\n"
                        "# TYPE dlq_circuit_state gauge\n", SC_BREAKER_LABELLED);
    for (size_t i = 0; i < n && shown < SC_BREAKER_LABELLED; i++) {
        if (b->e[i].state == SC_CIRCUIT_CLOSED)
            continue;
        shown++;
        sc_buf_append(buf, "dlq_circuit_state{subject=\"", 27);
        sc_subjects_label(buf, b->e[i].subject);
        sc_buf_appendf(buf, "\"} %d\n", (int)b->e[i].state);
    }
    sc_buf_appendf(buf, "# HELP dlq_circuit_opened_total Times a retry subject's circuit opened.\n"
                        "# TYPE dlq_circuit_opened_total counter\n"
                        "dlq_circuit_opened_total %llu\n",
                   (unsigned long long)(b ? b->opened_total : 0));
}

/* The sweep's mark: subject still has a task that retries to it. */
static void
mark_live(void *ctx, const char *subject)
{
    struct sc_breaker *b = ctx;
    long i = find(b, subject);

    if (i >= 0)
        b->e[i].live = true;
}

/* Every SC_BREAKER_SWEEP_S: circuits of subjects no pending or retrying task retries to are forgotten. */
static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_breaker *b = d->breaker;

    (void)fd;
    (void)what;
    if (!b->n)
        return;
    for (size_t i = 0; i < b->n; i++)
        b->e[i].live = false;
    sc_subjects_in_use(&d->m.q, mark_live, b);
    for (size_t i = b->n; i-- > 0;)
        if (!b->e[i].live)
            forget(b, i);
}

sc_status
sc_breaker_open(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_breaker *b = sc_xcalloc(1, sizeof(*b));
    struct timeval tv = {SC_BREAKER_SWEEP_S, 0};

    d->breaker = b;
    b->sweep_ev = event_new(d->base, -1, EV_PERSIST, on_sweep, d);
    if (!b->sweep_ev) {
        snprintf(err, errlen, "breaker: libevent cannot create the sweep timer");
        sc_breaker_close(d);
        return SC_EIO;
    }
    event_add(b->sweep_ev, &tv);
    return SC_OK;
}

void
sc_breaker_close(struct sc_daemon *d)
{
    struct sc_breaker *b = d->breaker;

    if (!b)
        return;
    if (b->sweep_ev)
        event_free(b->sweep_ev);
    sc_breaker_free(b);
    free(b);
    d->breaker = NULL;
}
