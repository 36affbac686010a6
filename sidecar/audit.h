/* audit.h - the audit trail of admin actions: one record per action, in the log, on <prefix>.events.audit and in a ring of the latest ones (DESIGN section 19). */
#ifndef DLQ_SIDECAR_AUDIT_H
#define DLQ_SIDECAR_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common.h"

struct sc_daemon;
struct sc_audit; /* opaque: the ring of the latest records */

/* Bytes a principal takes at most, NUL included ("nats:" or "http:" and a user of up to 64 bytes). */
#define SC_AUDIT_PRINCIPAL_LEN 80

/*
 * sc_audit_new() makes a ring that keeps the latest keep records (0: none;
 * audit.keep is at most 100,000). sc_audit_free() frees it and its
 * records; NULL-safe. Loop thread (or main, at start and shutdown).
 */
struct sc_audit *sc_audit_new(size_t keep);
void sc_audit_free(struct sc_audit *a);

/*
 * sc_audit_record() writes the one audit record of an admin action that
 * changed tasks or state: principal (NUL-terminated, e.g. "http:alice",
 * "token:operator", "nats:bob", "nats", "local") ran verb (an admin verb
 * name) with body (the request, NULL when empty; only read: a "task_id"
 * string goes into the record as task_id, anything else as "filter", at
 * most 2048 bytes of it), changing count tasks (a dry run: the tasks that
 * would change). The record
 * {"time","principal","verb","task_id"|"filter","count","dry_run"} goes
 * to the log (one info line, outside the per-task line cap), to
 * <prefix>.events.audit when events.enabled, and into d->audit's ring
 * (the oldest dropped past audit.keep). Uses d->scratch. Loop thread.
 */
void sc_audit_record(struct sc_daemon *d, const char *principal, const char *verb, const json_t *body,
                     int64_t count, bool dry_run);

/*
 * sc_audit_list() appends {"records":[...]} to out: the latest limit
 * records of a (NULL: none), newest first, each as sc_audit_record()
 * wrote it. Loop thread.
 */
void sc_audit_list(const struct sc_audit *a, size_t limit, struct sc_buf *out);

/*
 * sc_audit_nats_principal() names the NATS user of a request from its
 * reply subject (NUL-terminated, may be NULL): "nats:<user>" when it
 * starts with the per-user inbox prefix "_INBOX_<user>." that
 * docs/nats-auth.conf gives each user (and only lets that user
 * subscribe to), else "nats". A header such as Nats-Request-Info is not
 * read: any client may write one. Writes into buf (size bytes, at least
 * SC_AUDIT_PRINCIPAL_LEN) and returns it. Pure; any thread.
 */
const char *sc_audit_nats_principal(const char *reply, char *buf, size_t size);

#endif
