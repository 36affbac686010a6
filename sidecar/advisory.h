/* advisory.h - JetStream advisories as a second source of failures (DESIGN section 16): the capture stream, the originals read by sequence, tasks filed through the state machine. */
#ifndef DLQ_SIDECAR_ADVISORY_H
#define DLQ_SIDECAR_ADVISORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "dlq.h"

struct sc_daemon;
struct sc_adv; /* opaque: the advisory source */

/* Counters of the advisory source (loop thread). */
struct sc_adv_stats {
    bool ready;            /* the capture stream and its consumer are set up and fetching runs */
    uint64_t received;     /* advisories the loop took */
    uint64_t invalid;      /* refused: malformed, forged, not of a listed stream, or unfileable */
    uint64_t fetch_errors; /* originals that could not be read (not "no such message"): filed missing */
    uint64_t filed;        /* advisories that stored a task (new, or a new failure of one) */
    uint64_t refused;      /* naked: the queue was full or the store did not take it */
};

/*
 * sc_adv_open() starts the advisory source when advisories.streams lists
 * streams (else does nothing and returns SC_OK): the capture stream
 * advisories.stream over the MAX_DELIVERIES and MSG_TERMINATED advisories
 * of each listed stream (created when missing, subjects added to an
 * existing one) and its durable consumer advisories.consumer, fetched on a
 * thread that reads each original by sequence; every advisory is filed on
 * the loop through dlq_ingest_foreign() and acked once its task is
 * accepted (advisory.c says who holds it when). Sets d->adv. Returns
 * SC_OK, SC_EINVAL (err: a consumer that does not fit, too many streams:
 * start-up stops) or SC_EIO (a JetStream API failure). Main thread,
 * before the loop runs. sc_adv_stop() stops fetching (loop thread, never
 * blocks); sc_adv_close() joins the thread and frees a (NULL: no-op; main
 * thread, after the loop, before sc_conn_free()).
 */
sc_status sc_adv_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_adv_stop(struct sc_adv *a);
void sc_adv_close(struct sc_adv *a);
/* sc_adv_get_stats() reads a's counters (all zero for NULL). Loop thread. */
struct sc_adv_stats sc_adv_get_stats(const struct sc_adv *a);
/*
 * sc_adv_jw_task() writes t's advisory fields into w's open object:
 * payload_raw, payload_missing, with a raw payload "task" as a string of
 * the original's bytes when they are UTF-8 without NUL (else "task": null
 * and "task_base64"), and "headers" ([[name, value], ...]) when t holds an
 * original's headers. Loop thread.
 */
void sc_adv_jw_task(struct sc_jw *w, const struct dlq_task *t);

#endif
