/* effect.c - "did retrying help": retried tasks that ended in success or exhausted, attempts to success and time to recovery, per category and per failure subject. */
#include <stdlib.h>
#include <string.h>

#include "dlq-internal.h"

/* Upper bounds of the recovery-time buckets, ms (the last bucket is +Inf). */
const int64_t dlq_effect_time_le[DLQ_EFFECT_TIME_BUCKETS - 1] = {
    100,     250,     500,     1000,     2500,     5000,     10000,    30000,
    60000,   120000,  300000,  600000,   1800000,  3600000,  7200000,  21600000, 86400000,
};

/* Lower bounds of the attempts-to-success buckets: 1, 2, 3, 4, 5-9, 10+. */
static const int32_t attempt_lo[DLQ_EFFECT_ATTEMPT_BUCKETS] = {1, 2, 3, 4, 5, 10};

const char *const dlq_effect_attempt_names[DLQ_EFFECT_ATTEMPT_BUCKETS] = {"1", "2", "3", "4",
                                                                          "5-9", "10+"};

/* Index of subject in e->s (sorted by strcmp), or -(insertion point) - 1 when absent. */
static long
find(const struct dlq_effect *e, const char *subject)
{
    return sc_find_str(e->s, e->n, sizeof(e->s[0]), subject);
}

/* The counts of subject, added when there is room; NULL past DLQ_EFFECT_SUBJECTS (counted). */
static struct dlq_effect_counts *
subject_counts(struct dlq_effect *e, const char *subject)
{
    long i;
    size_t at;

    if (!subject)
        return NULL;
    i = find(e, subject);
    if (i >= 0)
        return &e->s[i].c;
    if (e->n >= DLQ_EFFECT_SUBJECTS) {
        e->untracked++;
        return NULL;
    }
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 16;
        e->s = sc_xrealloc(e->s, e->cap * sizeof(e->s[0]));
    }
    at = (size_t)(-i - 1);
    memmove(&e->s[at + 1], &e->s[at], (e->n - at) * sizeof(e->s[0]));
    memset(&e->s[at], 0, sizeof(e->s[at]));
    e->s[at].subject = sc_xstrdup(subject);
    e->n++;
    return &e->s[at].c;
}

static void
count_success(struct dlq_effect_counts *c, int32_t attempt, int64_t ms)
{
    size_t b = DLQ_EFFECT_ATTEMPT_BUCKETS - 1, tb = 0;

    if (ms < 0)
        ms = 0;
    while (b > 0 && attempt < attempt_lo[b])
        b--;
    while (tb < DLQ_EFFECT_TIME_BUCKETS - 1 && ms > dlq_effect_time_le[tb])
        tb++;
    c->succeeded++;
    c->attempts[b]++;
    c->attempts_sum += (uint64_t)(attempt > 0 ? attempt : 0);
    c->recovery[tb]++;
    c->recovery_sum_ms += (uint64_t)ms;
    if (ms > c->recovery_max_ms)
        c->recovery_max_ms = ms;
}

void
dlq_effect_succeeded(struct dlq_effect *e, const struct dlq_task *t, int32_t attempt, int64_t ms)
{
    struct dlq_effect_counts *s;

    if (t->category < POLICY_CAT_COUNT)
        count_success(&e->cat[t->category], attempt, ms);
    if ((s = subject_counts(e, t->subject)))
        count_success(s, attempt, ms);
}

void
dlq_effect_exhausted(struct dlq_effect *e, const struct dlq_task *t)
{
    struct dlq_effect_counts *s;

    if (t->retry_count < 1)
        return; /* never retried (max_retries 0): says nothing about retrying */
    if (t->category < POLICY_CAT_COUNT)
        e->cat[t->category].exhausted++;
    if ((s = subject_counts(e, t->subject)))
        s->exhausted++;
}

int64_t
dlq_effect_quantile(const struct dlq_effect_counts *c, double q)
{
    uint64_t want, seen = 0;

    if (!c->succeeded)
        return -1;
    want = (uint64_t)(q * (double)c->succeeded + 0.999999);
    if (want < 1)
        want = 1;
    for (size_t b = 0; b < DLQ_EFFECT_TIME_BUCKETS; b++) {
        seen += c->recovery[b];
        if (seen >= want) {
            int64_t le = b < DLQ_EFFECT_TIME_BUCKETS - 1 ? dlq_effect_time_le[b] : c->recovery_max_ms;
            return le < c->recovery_max_ms ? le : c->recovery_max_ms;
        }
    }
    return c->recovery_max_ms;
}

static void
counts_json(struct sc_jw *w, const char *k, const struct dlq_effect_counts *c)
{
    uint64_t n = c->succeeded + c->exhausted;

    sc_jw_open(w, k, '{');
    sc_jw_uint(w, "succeeded", c->succeeded);
    sc_jw_uint(w, "exhausted", c->exhausted);
    if (n)
        sc_jw_fmt(w, "success_rate", "%.4f", (double)c->succeeded / (double)n);
    else
        sc_jw_null(w, "success_rate");
    sc_jw_open(w, "attempts_to_success", '{');
    for (size_t b = 0; b < DLQ_EFFECT_ATTEMPT_BUCKETS; b++)
        sc_jw_uint(w, dlq_effect_attempt_names[b], c->attempts[b]);
    sc_jw_close(w, '}');
    if (c->succeeded) {
        sc_jw_int(w, "recovery_p50_ms", dlq_effect_quantile(c, 0.5));
        sc_jw_int(w, "recovery_p90_ms", dlq_effect_quantile(c, 0.9));
    } else {
        sc_jw_null(w, "recovery_p50_ms");
        sc_jw_null(w, "recovery_p90_ms");
    }
    sc_jw_close(w, '}');
}

/* Orders subject indexes by outcomes counted, most first (ties by subject). */
static const struct dlq_effect *sort_e;

static int
by_total(const void *a, const void *b)
{
    const struct dlq_effect_subject *x = &sort_e->s[*(const size_t *)a];
    const struct dlq_effect_subject *y = &sort_e->s[*(const size_t *)b];
    uint64_t nx = x->c.succeeded + x->c.exhausted, ny = y->c.succeeded + y->c.exhausted;

    if (nx != ny)
        return nx > ny ? -1 : 1;
    return strcmp(x->subject, y->subject);
}

void
dlq_effect_json(const struct dlq_effect *e, struct sc_jw *w)
{
    size_t *idx = e->n ? sc_xcalloc(e->n, sizeof(*idx)) : NULL;

    sc_jw_open(w, "retry_effectiveness", '{');
    sc_jw_open(w, "by_category", '{');
    for (size_t c = 0; c < POLICY_CAT_COUNT; c++)
        counts_json(w, policy_category_name((policy_category)c), &e->cat[c]);
    sc_jw_close(w, '}');
    for (size_t i = 0; i < e->n; i++)
        idx[i] = i;
    if (e->n) {
        sort_e = e;
        qsort(idx, e->n, sizeof(*idx), by_total);
    }
    sc_jw_open(w, "by_subject", '{');
    for (size_t i = 0; i < e->n && i < DLQ_EFFECT_LISTED; i++)
        counts_json(w, e->s[idx[i]].subject, &e->s[idx[i]].c);
    sc_jw_close(w, '}');
    sc_jw_int(w, "subjects", (int64_t)e->n);
    sc_jw_uint(w, "subjects_untracked", e->untracked);
    sc_jw_close(w, '}');
    free(idx);
}

void
dlq_effect_render(const struct dlq_effect *e, struct sc_buf *b)
{
    sc_buf_appendf(b, "# HELP dlq_retried_tasks_total Retried tasks by how they ended: succeeded or "
                      "exhausted.\n# TYPE dlq_retried_tasks_total counter\n");
    for (size_t c = 0; c < POLICY_CAT_COUNT; c++) {
        const char *cn = policy_category_name((policy_category)c);
        sc_buf_appendf(b, "dlq_retried_tasks_total{category=\"%s\",outcome=\"succeeded\"} %llu\n", cn,
                       (unsigned long long)e->cat[c].succeeded);
        sc_buf_appendf(b, "dlq_retried_tasks_total{category=\"%s\",outcome=\"exhausted\"} %llu\n", cn,
                       (unsigned long long)e->cat[c].exhausted);
    }
    sc_buf_appendf(b, "# HELP dlq_retry_attempts_to_success Attempts a retried task took to succeed.\n"
                      "# TYPE dlq_retry_attempts_to_success histogram\n");
    for (size_t c = 0; c < POLICY_CAT_COUNT; c++) {
        const struct dlq_effect_counts *k = &e->cat[c];
        const char *cn = policy_category_name((policy_category)c);
        uint64_t cum = 0;
        for (size_t i = 0; i + 1 < DLQ_EFFECT_ATTEMPT_BUCKETS; i++) {
            cum += k->attempts[i];
            sc_buf_appendf(b, "dlq_retry_attempts_to_success_bucket{category=\"%s\",le=\"%d\"} %llu\n",
                           cn, attempt_lo[i + 1] - 1, (unsigned long long)cum);
        }
        sc_buf_appendf(b, "dlq_retry_attempts_to_success_bucket{category=\"%s\",le=\"+Inf\"} %llu\n"
                          "dlq_retry_attempts_to_success_sum{category=\"%s\"} %llu\n"
                          "dlq_retry_attempts_to_success_count{category=\"%s\"} %llu\n",
                       cn, (unsigned long long)k->succeeded, cn, (unsigned long long)k->attempts_sum, cn,
                       (unsigned long long)k->succeeded);
    }
    sc_buf_appendf(b, "# HELP dlq_retry_recovery_seconds Time from a task's first failure to the retry "
                      "that succeeded.\n# TYPE dlq_retry_recovery_seconds histogram\n");
    for (size_t c = 0; c < POLICY_CAT_COUNT; c++) {
        const struct dlq_effect_counts *k = &e->cat[c];
        const char *cn = policy_category_name((policy_category)c);
        uint64_t cum = 0;
        for (size_t i = 0; i + 1 < DLQ_EFFECT_TIME_BUCKETS; i++) {
            cum += k->recovery[i];
            sc_buf_appendf(b, "dlq_retry_recovery_seconds_bucket{category=\"%s\",le=\"%g\"} %llu\n", cn,
                           (double)dlq_effect_time_le[i] / 1000.0, (unsigned long long)cum);
        }
        sc_buf_appendf(b, "dlq_retry_recovery_seconds_bucket{category=\"%s\",le=\"+Inf\"} %llu\n"
                          "dlq_retry_recovery_seconds_sum{category=\"%s\"} %.3f\n"
                          "dlq_retry_recovery_seconds_count{category=\"%s\"} %llu\n",
                       cn, (unsigned long long)k->succeeded, cn,
                       (double)k->recovery_sum_ms / 1000.0, cn, (unsigned long long)k->succeeded);
    }
}

void
dlq_effect_destroy(struct dlq_effect *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->s[i].subject);
    free(e->s);
    memset(e, 0, sizeof(*e));
}
