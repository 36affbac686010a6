/* sidecar.h - the dlq-sidecar daemon: one libevent loop that ingests failures, retries them and answers admin requests. */
#ifndef DLQ_SIDECAR_H
#define DLQ_SIDECAR_H

#include "common.h"
#include "config.h"

struct sc_daemon; /* opaque */

/*
 * sc_daemon_new() builds the daemon from cfg (borrowed: it must outlive the
 * daemon): the event loop, the NATS connection (which retries in the
 * background when no server answers yet), the subscriptions, the classifier
 * and the wheel. On success sets *out and returns SC_OK. Returns SC_EINVAL
 * (a bad classifier rule, for example) or SC_EIO (NATS options refused),
 * with err (errlen bytes) saying why. Main thread, before any other call.
 */
sc_status sc_daemon_new(struct config *cfg, struct sc_daemon **out, char *err, size_t errlen);

/*
 * sc_daemon_run() runs the loop until SIGTERM/SIGINT have drained in-flight
 * retries (up to shutdown.drain_ms). Returns the process exit code (0 on a
 * clean stop). Main thread.
 */
int sc_daemon_run(struct sc_daemon *d);

/*
 * A reload function builds a fresh configuration (from the same file,
 * environment and flags) into *out, which the daemon then reads and
 * destroys. It returns SC_OK, or an error with err (errlen bytes) saying
 * why; the old configuration then stays in force.
 */
typedef sc_status (*sc_reload_fn)(void *ctx, struct config *out, char *err, size_t errlen);

/*
 * sc_daemon_set_reload() sets what SIGHUP calls to reload the classifier
 * rules and the retry policies (backoff.*, default_retry_policy,
 * default_max_retries). Main thread, before sc_daemon_run().
 */
void sc_daemon_set_reload(struct sc_daemon *d, sc_reload_fn fn, void *ctx);

/* sc_daemon_free() closes the connection and frees everything; NULL is a no-op. Main thread. */
void sc_daemon_free(struct sc_daemon *d);

#endif
