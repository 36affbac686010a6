/* dlq-internal.h - what machine.c and intake.c share inside dlq/: log lines and the transitions ingest reuses. */
#ifndef DLQ_DLQ_INTERNAL_H
#define DLQ_DLQ_INTERNAL_H

#include "dlq.h"

/*
 * dlq_log() writes one line through the log port (when its level is
 * enabled): msg, then NULL-terminated name/value string pairs (at most
 * DLQ_LOG_KV_MAX strings). dlq_int() formats v into one of m's eight
 * slots (valid until eight more calls). Loop thread.
 */
void dlq_log(struct dlq_machine *m, dlq_log_level level, const char *msg, ...);
const char *dlq_int(struct dlq_machine *m, int64_t v);

/* dlq_changed() marks t changed for the store; dlq_drop() cancels t's timer and flight, then removes and frees it. */
void dlq_changed(struct dlq_machine *m, struct dlq_task *t);
void dlq_drop(struct dlq_machine *m, struct dlq_task *t);

/*
 * dlq_park() parks t (pending with no automatic retry), with why (len
 * bytes; NULL keeps the reason t has). dlq_schedule_next() schedules
 * attempt retry_count+1 by the policy, or parks (no retry subject, policy
 * never) or exhausts t (no budget left). dlq_attempt_failed() charges a
 * failure of the attempt in flight (an error reply, a timeout, or a
 * failure envelope while retrying) and schedules the next one.
 * dlq_default_policy() sets t's policy from the configuration or its
 * category unless an envelope chose it. Loop thread; m->now_mono is the
 * current monotonic time.
 */
void dlq_park(struct dlq_machine *m, struct dlq_task *t, const char *why, size_t len);
void dlq_schedule_next(struct dlq_machine *m, struct dlq_task *t, int64_t now_wall);
void dlq_attempt_failed(struct dlq_machine *m, struct dlq_task *t, dlq_outcome_kind kind,
                        const char *error, size_t error_len, int64_t now);
void dlq_default_policy(struct dlq_machine *m, struct dlq_task *t);

#endif
