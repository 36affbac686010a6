/* micro.h - NATS service discovery (ADR-32) for the admin API. */
#ifndef DLQ_SIDECAR_MICRO_H
#define DLQ_SIDECAR_MICRO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct sc_daemon;

/* The service name every instance reports (ADR-32 "name"); $SRV.PING.<name> reaches them all. */
#define SC_MICRO_NAME "dlq-sidecar"

/*
 * micro.c: NATS service discovery (ADR-32: $SRV.PING/INFO/STATS, also
 * .<name> and .<name>.<id>) for the admin API. sc_micro_open() makes this
 * process's id and subscribes on d's connection (after sc_conn_new()),
 * answering on the loop thread; endpoints names the n admin verbs it
 * reports (static strings, borrowed), in the order sc_micro_record()
 * numbers them. Returns SC_OK or SC_EIO with err set. Main thread.
 * Every answer's metadata (ADR-32: strings only) says what this instance
 * serves: subjects.prefix, subjects.queue_group, ingest.mode ("core" or
 * "jetstream"), cluster ("true" or "false") and host (gethostname()), so
 * that another instance (peers.c) can tell a duplicate on its prefix.
 * sc_micro_close() frees the state; call it after sc_conn_free() (no
 * request can arrive then); safe when never opened. sc_micro_record() adds
 * one admin request of verb i (elapsed_ns of handling; error_message
 * non-NULL when it was answered with an error) to the endpoint statistics.
 * Loop thread.
 */
sc_status sc_micro_open(struct sc_daemon *d, const char *const *endpoints, size_t n, char *err,
                        size_t errlen);
void sc_micro_close(struct sc_daemon *d);
void sc_micro_record(struct sc_daemon *d, size_t verb, int64_t elapsed_ns, int error_code,
                     const char *error_message);

/*
 * sc_micro_id() is this process's service id (22 characters of
 * [0-9A-Za-z]; "" before sc_micro_open()), borrowed until sc_micro_close().
 * sc_micro_clustered() tells whether this instance reports itself in
 * cluster mode (DESIGN section 18), where several instances share a prefix
 * by design: false until cluster mode exists. Loop thread.
 */
const char *sc_micro_id(const struct sc_daemon *d);
bool sc_micro_clustered(const struct sc_daemon *d);

#endif
