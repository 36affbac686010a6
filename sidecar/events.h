/* events.h - the event emitter: dlq.events.<kind> messages about tasks (DESIGN section 9). */
#ifndef DLQ_SIDECAR_EVENTS_H
#define DLQ_SIDECAR_EVENTS_H

#include <stdint.h>

#include "dlq.h"

struct sc_daemon;

/* Emits dlq.events.<kind> for t (t may be NULL with subject/error given). */
void sc_event(struct sc_daemon *d, const char *kind, const struct dlq_task *t, int32_t attempt,
              const char *error);

#endif
