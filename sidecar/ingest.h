/* ingest.h - the core-NATS source of failures, as the daemon subscribes it. */
#ifndef DLQ_SIDECAR_INGEST_H
#define DLQ_SIDECAR_INGEST_H

#include <nats/nats.h>

struct sc_daemon;

/* sc_ingest() is the core-NATS source of failures (decode, invalid republish, answer); the decision is dlq_ingest()'s. */
void sc_ingest(struct sc_daemon *d, natsMsg *m);

#endif
