/* workers.h - the "no workers" state: per retry subject, whether its last retry found no worker (no responders), and since when. */
#ifndef DLQ_SIDECAR_WORKERS_H
#define DLQ_SIDECAR_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct sc_daemon;
struct sc_jw;

/* Most subjects stats lists in retry_subjects_without_workers (the count key has them all). */
#define SC_WORKERS_LISTED 100
/* Most subjects held (memory stays bounded), labelled in /metrics, and the sweep's period, s. */
#define SC_WORKERS_MAX 1024
#define SC_WORKERS_LABELLED 20
#define SC_WORKERS_SWEEP_S 10

/*
 * sc_workers_open() sets up the table (empty) and its sweep timer, which
 * every SC_WORKERS_SWEEP_S forgets subjects no pending (unparked) or retrying task
 * retries to any more. Returns SC_OK, or SC_EIO (libevent cannot make the
 * timer) with err (errlen bytes) set. sc_workers_close() frees it all; safe
 * when never opened. Loop thread (open and close: main, outside the loop).
 */
sc_status sc_workers_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_workers_close(struct sc_daemon *d);

/*
 * sc_workers_answer() records how a retry published on retry_subject (NUL
 * terminated, borrowed; NULL is ignored) was answered: no_responders true
 * when the server said no one listens (the subject joins the table, its
 * "since" kept from the first such answer), false for any other answer (a
 * worker or a stream answered: the subject leaves). At most
 * SC_WORKERS_MAX subjects are held; past that new ones are counted in
 * dlq_retry_subjects_without_workers_untracked and not listed. Loop thread.
 */
void sc_workers_answer(struct sc_daemon *d, const char *retry_subject, bool no_responders);

/* sc_workers_none() is true when retry_subject's last retry found no worker. O(log n). Loop thread. */
bool sc_workers_none(const struct sc_daemon *d, const char *retry_subject);

/*
 * sc_workers_overdue() counts the subjects that have had no worker for
 * longer than after_ms (monotonic ms) at now_mono; *oldest_ms is the longest
 * time any subject has had none (0 when the table is empty). The alert retry_subjects_without_workers reads
 * it. Loop thread.
 */
size_t sc_workers_overdue(const struct sc_daemon *d, int64_t now_mono, int64_t after_ms,
                          int64_t *oldest_ms);

/*
 * sc_workers_json() writes the stats keys "retry_subjects_without_workers"
 * (sorted, at most SC_WORKERS_LISTED) and
 * "retry_subjects_without_workers_count" (all of them) into w. Loop thread.
 */
void sc_workers_json(const struct sc_daemon *d, struct sc_jw *w);

/*
 * sc_workers_render() appends the /metrics gauges: the count
 * dlq_retry_subjects_without_workers and, for the first SC_WORKERS_LABELLED
 * subjects in order, dlq_retry_subject_without_workers_seconds{subject="..."}.
 * Loop thread.
 */
void sc_workers_render(const struct sc_daemon *d, struct sc_buf *b);

#endif
