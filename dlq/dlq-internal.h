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

/*
 * Dependencies: the index and the checks (deps.c; they call nothing in
 * machine.c), and what a dependency's end does (machine.c).
 *
 * dlq_deps_admit() checks an envelope's depends_on against the table
 * before anything is stored: a cycle through held tasks' waits, or
 * (cluster mode) an id of another partition, is invalid (false, out set:
 * reason "dependency_cycle" or "bad_depends_on"). dlq_deps_state() is what
 * the dependency id (len bytes) means to a task naming it: 0 satisfied
 * (completed or unknown), 1 wait (pending, parked, retrying), -1 failed
 * (*kind "exhausted" or "archived", static). dlq_deps_hold() holds t
 * (pending, not parked) on the ids its list marks waiting: out of its due
 * wheel, indexed, reason "waiting for <id>" (dlq_deps_reason()).
 * dlq_deps_unhold() ends t's wait (unindexed, that reason dropped), a
 * no-op when t is not held. dlq_deps_take() takes the waiters for id out
 * of the index with that wait marked over; returns them (*n; free() the
 * array; NULL when none). dlq_deps_resolvable() lists the waited-for ids
 * whose state is no longer "wait" (*ids: copies, free each and the
 * array; *kinds their kind or NULL). dlq_deps_restored() files a task
 * loaded held. Loop thread.
 *
 * dlq_deps_park() parks t because its dependency id ended as kind
 * ("dependency <id> <kind>", history, log, event "parked").
 * dlq_deps_done() tells t's dependents that t ended as kind ("completed",
 * "exhausted", "archived", "cleared"): a completed one ends their wait
 * (released when it was the last: scheduled at max(now, next_retry_at)),
 * the others park them; O(1) when no task waits. Loop thread.
 */
struct dlq_decision;
bool dlq_deps_admit(struct dlq_machine *m, const struct codec_envelope *env,
                    struct dlq_decision *out);
int dlq_deps_state(struct dlq_machine *m, const char *id, size_t len, const char **kind);
void dlq_deps_hold(struct dlq_machine *m, struct dlq_task *t);
void dlq_deps_reason(struct dlq_task *t);
void dlq_deps_unhold(struct dlq_machine *m, struct dlq_task *t);
struct dlq_task **dlq_deps_take(struct dlq_machine *m, const char *id, size_t len, size_t *n);
size_t dlq_deps_resolvable(struct dlq_machine *m, char ***ids, const char ***kinds);
void dlq_deps_restored(struct dlq_machine *m, struct dlq_task *t);
void dlq_deps_destroy(struct dlq_machine *m);
void dlq_deps_park(struct dlq_machine *m, struct dlq_task *t, const char *id, const char *kind,
                   int64_t now);
void dlq_deps_done(struct dlq_machine *m, struct dlq_task *t, const char *kind, int64_t now_wall);

#endif
