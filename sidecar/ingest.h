/* ingest.h - the core-NATS source of failures, as the daemon subscribes it. */
#ifndef DLQ_SIDECAR_INGEST_H
#define DLQ_SIDECAR_INGEST_H

#include <nats/nats.h>

struct sc_daemon;

/*
 * The sources of failures (decode, invalid republish, answer); the decision
 * is dlq_ingest()'s. sc_ingest() takes a core-NATS message (answering a
 * request), sc_ingest_js() a JetStream delivery (acking or naking it:
 * jetstream.h says who holds the failure when). Loop thread.
 */
void sc_ingest(struct sc_daemon *d, natsMsg *m);
void sc_ingest_js(struct sc_daemon *d, natsMsg *m);

#endif
