/* admin.h - the admin API (request/reply, JSON; DESIGN section 8). */
#ifndef DLQ_SIDECAR_ADMIN_H
#define DLQ_SIDECAR_ADMIN_H

#include <stddef.h>

#include <nats/nats.h>

struct sc_daemon;

/*
 * sc_admin() answers one request on <prefix>.admin.<verb> (each verb: a call
 * into the state machine and a JSON view; see admin.c); a message without a
 * reply subject is ignored. sc_admin_destroy() stops a running redrive and
 * frees its timer; safe when none ran. Loop thread.
 */
void sc_admin(struct sc_daemon *d, natsMsg *m);
void sc_admin_destroy(struct sc_daemon *d);
/* sc_admin_verb_count() is the number of admin verbs; sc_admin_verb_name(i) names verb i ("stats"), NULL past the end. Any thread. */
size_t sc_admin_verb_count(void);
const char *sc_admin_verb_name(size_t i);

#endif
