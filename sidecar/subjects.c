/* subjects.c - helpers of the per-retry-subject tables (workers.c, breaker.c): the sweep's walk, Prometheus labels. */
#include "subjects.h"

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
