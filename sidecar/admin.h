/* admin.h - the admin API (request/reply, JSON; DESIGN section 8). */
#ifndef DLQ_SIDECAR_ADMIN_H
#define DLQ_SIDECAR_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#include <nats/nats.h>

struct sc_daemon;

/*
 * sc_admin() answers one request on <prefix>.admin.<verb> (each verb: a call
 * into the state machine and a JSON view; see admin.c); a message without a
 * reply subject is ignored. Its audit principal comes from the reply
 * subject (sc_audit_nats_principal()). sc_admin_destroy() stops a running redrive and
 * frees its timer; safe when none ran. Loop thread.
 */
void sc_admin(struct sc_daemon *d, natsMsg *m);
void sc_admin_destroy(struct sc_daemon *d);

/*
 * sc_admin_call() runs verb (NUL-terminated) with len bytes of data (the
 * request body: empty, or a JSON object of at most 1 MiB) on this instance
 * alone, as a request on <prefix>.admin.<verb> outside cluster mode; the
 * JSON answer is left in d->out (valid until the next admin call). Returns
 * 0 on success, else the error's code (400, 404 unknown task or verb, 409,
 * 503) as in the answer's {"error":{"code":...}}. principal (NUL-terminated,
 * NULL: "local") is who asks, for the audit record of a mutating verb
 * (audit.h). Loop thread.
 */
int sc_admin_call(struct sc_daemon *d, const char *verb, const char *data, int len, const char *principal);

/* sc_admin_blank() tells whether len bytes of data are empty or white space only: an empty request. Pure. */
bool sc_admin_blank(const char *data, int len);

/*
 * sc_admin_member() is this member's part of a cluster request (fanout.c,
 * DESIGN section 18): it runs verb on len bytes of data (the request body)
 * here, listing in partition order (see sc_admin_part_cursor()), and
 * writes {"member":{"id":...},"partitions":[the partitions served here],
 * "audit_count":N (a mutating verb that succeeded: the tasks it changed
 * here), "reply":<the answer, or {"error":...}>} into out (reset first; out
 * must not be d->out). It writes no audit record: the member that took the
 * request does, once (fanout.c); principal (NUL-terminated, NULL: "local")
 * only names who asked in the history notes of the tasks changed here.
 * Loop thread.
 */
void sc_admin_member(struct sc_daemon *d, const char *verb, const char *data, int len,
                     const char *principal, struct sc_buf *out);

/*
 * sc_admin_part_cursor() appends the cluster list cursor of task id (len
 * bytes) in partition p to out: "c<p>:<id>". A member's page continues
 * after it in (partition, id) order. Any thread.
 */
void sc_admin_part_cursor(struct sc_buf *out, uint32_t p, const char *id, size_t len);

/*
 * sc_admin_part_cmp() orders two tasks of a cluster list: by partition
 * (pa, pb), then by id bytes (a of alen, b of blen; a prefix first).
 * Returns <0, 0 or >0. Pure; any thread.
 */
int sc_admin_part_cmp(uint32_t pa, const char *a, size_t alen, uint32_t pb, const char *b, size_t blen);
/* sc_admin_verb_count() is the number of admin verbs; sc_admin_verb_name(i) names verb i ("stats"), NULL past the end. Any thread. */
size_t sc_admin_verb_count(void);
const char *sc_admin_verb_name(size_t i);

/* sc_admin_verb_mutates() is true when verb (a NUL-terminated name) changes tasks or state (retry, archive, clear, pause, resume ...); false for the verbs that only read and for unknown names. Any thread. */
bool sc_admin_verb_mutates(const char *verb);

#endif
