/* events.h - the event emitter: dlq.events.<kind> messages about tasks (DESIGN section 9). */
#ifndef DLQ_SIDECAR_EVENTS_H
#define DLQ_SIDECAR_EVENTS_H

#include <stdint.h>

#include "dlq.h"

struct sc_daemon;

/*
 * sc_event() emits dlq.events.<kind> for t (t may be NULL with subject/error
 * given): publishes <subjects_prefix>.events.<kind> with a JSON object
 * (task_id, subject, category, attempt, at, error: error or else t's own,
 * status), built in d->scratch; a no-op when events.enabled is off. kind is
 * a static name ("refused", "invalid", ...); t is only read (an invalid
 * envelope passes a view with only subject and category set). Loop thread.
 */
void sc_event(struct sc_daemon *d, const char *kind, const struct dlq_task *t, int32_t attempt,
              const char *error);

#endif
