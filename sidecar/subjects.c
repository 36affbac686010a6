/* subjects.c - helpers of the per-retry-subject tables (workers.c, breaker.c): lookup in a sorted array, the sweep's walk, Prometheus labels. */
#include <string.h>

#include "subjects.h"

long
sc_subjects_find(const void *base, size_t n, size_t size, const char *subject)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s;
        int c;
        memcpy(&s, (const char *)base + mid * size, sizeof(s));
        c = strcmp(s, subject);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

void
sc_subjects_in_use(const struct dlq_queue *q, void (*mark)(void *ctx, const char *subject), void *ctx)
{
    for (struct dlq_task *t = dlq_queue_first(q); t; t = dlq_queue_next(q, t)) {
        if (!t->retry_subject || t->parked ||
            (t->status != DLQ_TASK_PENDING && t->status != DLQ_TASK_RETRYING))
            continue;
        mark(ctx, t->retry_subject);
    }
}

void
sc_subjects_label(struct sc_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            sc_buf_appendc(b, '\\');
        if (*s == '\n')
            sc_buf_append(b, "\\n", 2);
        else
            sc_buf_appendc(b, *s);
    }
}
