/* http.h - the HTTP listener for /healthz, /readyz, /metrics and the admin API under /api/v1/. */
#ifndef DLQ_SIDECAR_HTTP_H
#define DLQ_SIDECAR_HTTP_H

#include <stddef.h>

#include "common.h"

struct sc_daemon;

/*
 * sc_http_start() serves /healthz, /readyz and /metrics, and the admin API
 * at /api/v1/<verb> with its OpenAPI document (loopback peers only unless
 * http.auth tokens are set; README "Operations: the admin API over HTTP"),
 * on d->base at cfg->http_listen (no-op when it is empty): one request per connection,
 * at most cfg->http_max_connections open (fewer when RLIMIT_NOFILE leaves
 * less room above a reserve of fds for NATS and the store; more are closed
 * at once), each cut cfg->http_request_timeout_ms after accept (see http.c).
 * Returns SC_OK, or SC_EINVAL / SC_EIO with err saying why (address
 * unparsable or unresolvable, bind failed). sc_http_stop() closes the
 * listener and its connections; safe when not started. Loop thread (or main
 * thread before the loop runs).
 */
sc_status sc_http_start(struct sc_daemon *d, char *err, size_t errlen);
void sc_http_stop(struct sc_daemon *d);

#endif
