/* workers.c - the "no workers" state: retry subjects whose last retry found no responders, since when, and the sweep that forgets subjects no task retries to any more. */
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "subjects.h"
#include "workers.h"

/* One retry subject without workers. */
struct entry {
    char *subject;       /* owned */
    int64_t since_mono;  /* the first no-responders answer of this streak */
    int64_t since_wall;
    bool live;           /* the sweep saw a pending or retrying task for it */
};

struct sc_workers {
    struct entry *e;     /* sorted by subject (strcmp), n used of SC_WORKERS_MAX */
    size_t n;
    uint64_t untracked;  /* no-responders answers for subjects past SC_WORKERS_MAX */
    struct event *sweep_ev;
};

/* Index of subject in w->e, or -(insertion point) - 1 when absent. */
static long
find(const struct sc_workers *w, const char *subject)
{
    return sc_find_str(w->e, w->n, sizeof(w->e[0]), subject);
}

static void
forget(struct sc_workers *w, size_t i)
{
    free(w->e[i].subject);
    memmove(&w->e[i], &w->e[i + 1], (w->n - i - 1) * sizeof(w->e[0]));
    w->n--;
}

void
sc_workers_answer(struct sc_daemon *d, const char *retry_subject, bool no_responders)
{
    struct sc_workers *w = d->workers;
    long i;
    size_t at;

    if (!w || !retry_subject)
        return;
    i = find(w, retry_subject);
    if (!no_responders) {
        if (i >= 0) {
            sc_log(SC_LOG_INFO, "retry subject has a worker again", "subject", retry_subject, NULL);
            forget(w, (size_t)i);
        }
        return;
    }
    if (i >= 0) {
        w->e[i].live = true;
        return;
    }
    if (w->n >= SC_WORKERS_MAX) {
        w->untracked++;
        return;
    }
    at = (size_t)(-i - 1);
    memmove(&w->e[at + 1], &w->e[at], (w->n - at) * sizeof(w->e[0]));
    w->e[at].subject = sc_xstrdup(retry_subject);
    w->e[at].since_mono = sc_now_mono_ms();
    w->e[at].since_wall = sc_now_wall_ms();
    w->e[at].live = true;
    w->n++;
    sc_log(SC_LOG_WARN, "retry subject has no workers (no responders)", "subject", retry_subject, NULL);
}

bool
sc_workers_none(const struct sc_daemon *d, const char *retry_subject)
{
    const struct sc_workers *w = d->workers;

    return w && w->n && retry_subject && find(w, retry_subject) >= 0;
}

size_t
sc_workers_overdue(const struct sc_daemon *d, int64_t now_mono, int64_t after_ms, int64_t *oldest_ms)
{
    const struct sc_workers *w = d->workers;
    size_t n = 0;

    *oldest_ms = 0;
    for (size_t i = 0; w && i < w->n; i++) {
        int64_t age = now_mono - w->e[i].since_mono;
        n += age > after_ms;
        if (age > *oldest_ms)
            *oldest_ms = age;
    }
    return n;
}

void
sc_workers_json(const struct sc_daemon *d, struct sc_jw *jw)
{
    const struct sc_workers *w = d->workers;
    size_t n = w ? w->n : 0;

    sc_jw_open(jw, "retry_subjects_without_workers", '[');
    for (size_t i = 0; i < n && i < SC_WORKERS_LISTED; i++)
        sc_jw_str(jw, NULL, w->e[i].subject);
    sc_jw_close(jw, ']');
    sc_jw_int(jw, "retry_subjects_without_workers_count", (int64_t)n);
}

void
sc_workers_render(const struct sc_daemon *d, struct sc_buf *b)
{
    const struct sc_workers *w = d->workers;
    size_t n = w ? w->n : 0;
    int64_t now = sc_now_mono_ms();

    sc_buf_appendf(b, "# HELP dlq_retry_subjects_without_workers Retry subjects whose last retry found no "
                      "worker (no responders).\n"
                      "# TYPE dlq_retry_subjects_without_workers gauge\n"
                      "dlq_retry_subjects_without_workers %zu\n", n);
    sc_buf_appendf(b, "# HELP dlq_retry_subject_without_workers_seconds Time since the retry subject's "
                      "retries began to find no worker (the first %d subjects in order).\n"
                      "# TYPE dlq_retry_subject_without_workers_seconds gauge\n",
                   SC_WORKERS_LABELLED);
    for (size_t i = 0; i < n && i < SC_WORKERS_LABELLED; i++) {
        sc_buf_append(b, "dlq_retry_subject_without_workers_seconds{subject=\"", 51);
        sc_subjects_label(b, w->e[i].subject);
        sc_buf_appendf(b, "\"} %.3f\n", (double)(now - w->e[i].since_mono) / 1000.0);
    }
    sc_buf_appendf(b, "# HELP dlq_retry_subjects_without_workers_untracked_total No-responders answers "
                      "for subjects past the %d tracked.\n"
                      "# TYPE dlq_retry_subjects_without_workers_untracked_total counter\n"
                      "dlq_retry_subjects_without_workers_untracked_total %llu\n",
                   SC_WORKERS_MAX, (unsigned long long)(w ? w->untracked : 0));
}

/* The sweep's mark: subject still has a task that retries to it. */
static void
mark_live(void *ctx, const char *subject)
{
    struct sc_workers *w = ctx;
    long i = find(w, subject);

    if (i >= 0)
        w->e[i].live = true;
}

/*
 * The sweep: a subject no pending (unparked) or retrying task retries to is
 * forgotten (its tasks completed, were parked, archived, exhausted or
 * cleared). One walk of
 * the queue every SC_WORKERS_SWEEP_S, only while the table holds subjects.
 */
static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_workers *w = d->workers;

    (void)fd;
    (void)what;
    if (!w->n)
        return;
    for (size_t i = 0; i < w->n; i++)
        w->e[i].live = false;
    sc_subjects_in_use(&d->m.q, mark_live, w);
    for (size_t i = w->n; i-- > 0;)
        if (!w->e[i].live)
            forget(w, i);
}

sc_status
sc_workers_open(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_workers *w = sc_xcalloc(1, sizeof(*w));
    struct timeval tv = {SC_WORKERS_SWEEP_S, 0};

    w->e = sc_xcalloc(SC_WORKERS_MAX, sizeof(w->e[0]));
    d->workers = w;
    w->sweep_ev = event_new(d->base, -1, EV_PERSIST, on_sweep, d);
    if (!w->sweep_ev) {
        snprintf(err, errlen, "workers: libevent cannot create the sweep timer");
        sc_workers_close(d);
        return SC_EIO;
    }
    event_add(w->sweep_ev, &tv);
    return SC_OK;
}

void
sc_workers_close(struct sc_daemon *d)
{
    struct sc_workers *w = d->workers;

    if (!w)
        return;
    if (w->sweep_ev)
        event_free(w->sweep_ev);
    for (size_t i = 0; i < w->n; i++)
        free(w->e[i].subject);
    free(w->e);
    free(w);
    d->workers = NULL;
}
