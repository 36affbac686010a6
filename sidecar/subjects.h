/* subjects.h - helpers of the per-retry-subject tables (workers.c, breaker.c): the sweep's walk, Prometheus labels (lookup: sc_find_str() in common.h). */
#ifndef DLQ_SIDECAR_SUBJECTS_H
#define DLQ_SIDECAR_SUBJECTS_H

#include <stddef.h>

#include "common.h"
#include "dlq.h"

/*
 * sc_subjects_in_use() calls mark(ctx, retry_subject) for every task of q
 * that is pending (not parked) or retrying, i.e. that still retries to
 * that subject: a table entry no call marked can be forgotten. One walk of
 * the queue. Loop thread.
 */
void sc_subjects_in_use(const struct dlq_queue *q, void (*mark)(void *ctx, const char *subject),
                        void *ctx);

/* sc_subjects_label() appends s as a Prometheus label value (backslash, quote and newline escaped). */
void sc_subjects_label(struct sc_buf *b, const char *s);

#endif
