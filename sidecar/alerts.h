/* alerts.h - threshold alerts and their webhooks. */
#ifndef DLQ_SIDECAR_ALERTS_H
#define DLQ_SIDECAR_ALERTS_H

#include <stddef.h>

#include "common.h"

struct sc_daemon;

/*
 * sc_alerts_start() starts the periodic threshold check when alerts.enabled
 * (no-op otherwise) and the webhook client when URLs are configured.
 * Returns SC_OK or SC_EIO (no HTTP client) with err set. sc_alerts_stop()
 * cancels pending webhook posts and frees everything; safe when not
 * started. sc_alerts_render() appends the alert metrics to out. Loop thread.
 */
sc_status sc_alerts_start(struct sc_daemon *d, char *err, size_t errlen);
void sc_alerts_stop(struct sc_daemon *d);
void sc_alerts_render(struct sc_daemon *d, struct sc_buf *out);
/*
 * sc_alerts_json() writes "alerts_firing":["queue_utilization", ...] to w:
 * the names of the alerts firing now (empty when alerts are disabled), for
 * stats. Loop thread.
 */
void sc_alerts_json(struct sc_daemon *d, struct sc_jw *w);

#endif
