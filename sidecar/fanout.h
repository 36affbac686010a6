/* fanout.h - cluster mode's admin API: any member takes a request and merges every member's answer (DESIGN section 18). */
#ifndef DLQ_SIDECAR_FANOUT_H
#define DLQ_SIDECAR_FANOUT_H

#include <stddef.h>
#include <stdint.h>

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
/*
 * An in-process requester's answer (the HTTP API, http.c): code is the HTTP
 * status (200, or the error's code: 400, 404, 409, 503) and len bytes at
 * body the JSON reply, borrowed for the call. Loop thread.
 */
typedef void (*sc_fanout_answer_fn)(void *ctx, int code, const char *body, size_t len);

/*
 * sc_fanout_ask() answers verb (a NUL-terminated admin verb) with len bytes
 * of data (the request body: empty or a JSON object) exactly as a request
 * on <prefix>.admin.<verb> is answered: in cluster mode merged from every
 * member (fn runs later, on the loop, within FANOUT_WAIT_MS), otherwise, and
 * for the verbs one member answers alone, here and now (fn runs before it
 * returns). fn runs exactly once unless cancelled; with every gathering
 * slot in use it gets a 503 at once. Returns a ticket while the answer is
 * still being gathered, 0 when fn already ran. sc_fanout_cancel() makes a
 * ticket's fn never run (its requester went away); the members still do
 * what was asked. A ticket of an answered request, or 0, is a no-op.
 * principal (NUL-terminated, e.g. "http:alice"; NULL: "local") is who asks:
 * a mutating verb leaves one audit record under that name (audit.h). Loop
 * thread.
 */
uint64_t sc_fanout_ask(struct sc_daemon *d, const char *verb, const char *data, int len,
                       const char *principal, sc_fanout_answer_fn fn, void *ctx);
void sc_fanout_cancel(struct sc_daemon *d, uint64_t ticket);

sc_status sc_fanout_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_fanout_close(struct sc_daemon *d);

#endif
