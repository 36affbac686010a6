/* fanout.h - cluster mode's admin API: any member takes a request and merges every member's answer (DESIGN section 18). */
#ifndef DLQ_SIDECAR_FANOUT_H
#define DLQ_SIDECAR_FANOUT_H

#include <stddef.h>

#include "common.h"

struct sc_daemon;
struct sc_fanout; /* opaque: d->fanout, NULL outside cluster mode */

/* The queue group of <prefix>.admin.* in cluster mode: one member takes each request. */
#define SC_ADMIN_QUEUE "dlq-sidecar-admin"

/*
 * sc_fanout_open() subscribes, in cluster mode, <prefix>.admin.* in the
 * queue group SC_ADMIN_QUEUE (the member that takes a request asks every
 * member and merges: stats sum, list pages in (partition, id) order, get
 * and single-task actions from the owner, filter actions and pause/resume
 * on every member; health and classify are answered by the taker alone),
 * <prefix>.cluster.admin.* (this member's part of another's request;
 * operators may ask it too, to see every member) and <inbox>.adm.* (the
 * answers). Returns SC_OK (d->fanout owns it all), SC_EIO with err set.
 * Main thread, once, after the connection exists; never outside cluster
 * mode. sc_fanout_close() answers 503 to requests still being gathered and
 * frees everything; NULL-safe (d->fanout NULL). Main thread, before the
 * connection is freed.
 */
sc_status sc_fanout_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_fanout_close(struct sc_daemon *d);

#endif
