/* dispatch.h - the state machine's edges on the daemon: its ports, the tick, replies to retries. */
#ifndef DLQ_SIDECAR_DISPATCH_H
#define DLQ_SIDECAR_DISPATCH_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/util.h>
#include <nats/nats.h>

struct sc_daemon;

/*
 * dispatch.c: the machine's edges. sc_dispatch_init() sets up the machine
 * d->m (its task table d->m.q, its counters d->m.c) with the daemon's ports (publish on NATS, events, the store
 * mirror, log, metrics); sc_dispatch_destroy() frees it. sc_on_tick() runs
 * the machine's wheels each tick and ends the loop once a stop has drained;
 * sc_on_due() (d->due_ev, a one-shot timer both arm) runs them between two
 * ticks, at the due wheels' next due time, so a retry leaves on time rather
 * than at the next tick (docs/wheel.md, "Running the wheels").
 * sc_on_reply() reads a reply to a retry and hands its outcome to the
 * machine. Loop thread (init and destroy: main, outside the loop).
 */
void sc_dispatch_init(struct sc_daemon *d);
void sc_dispatch_destroy(struct sc_daemon *d);
void sc_on_tick(evutil_socket_t fd, short what, void *arg);
void sc_on_due(evutil_socket_t fd, short what, void *arg);
void sc_on_reply(struct sc_daemon *d, natsMsg *m);

/*
 * sc_dispatch_apply_reply() hands reply m (a worker's outcome, a JetStream
 * answer or a "no responders" status; still the caller's) of task t's
 * attempt to the machine, as sc_on_reply() does once it found t's flight;
 * stored: the attempt's outcome is the PubAck (retry.outcome stored). Also
 * for a reply another member handed back (handback.h): t is then pending
 * (its attempt not sent again yet) or retrying with the same attempt.
 * Loop thread.
 */
struct dlq_task;
void sc_dispatch_apply_reply(struct sc_daemon *d, struct dlq_task *t, bool stored, natsMsg *m);

/* What a reply to a retry is, as far as JetStream goes (DESIGN section 6). */
typedef enum { SC_JS_NOT = 0, SC_JS_PUBACK, SC_JS_ERROR } sc_js_reply_kind;

/* A JetStream API error's fields; desc borrows from the body (the raw JSON string bytes). */
struct sc_js_reply {
    int64_t code, err_code;
    const char *desc;
    size_t desc_len;
};

/*
 * sc_js_reply_classify() tells whether body (len bytes, any bytes, need not
 * be NUL-terminated) is the server's answer to a publish into a stream: a
 * PubAck {"stream":"..","seq":N,...} (SC_JS_PUBACK) or a JetStream API
 * error {"error":{"code":N,"err_code":N,"description":".."}} (SC_JS_ERROR,
 * *r filled), neither carrying the worker protocol's "ok" key; anything
 * else is SC_JS_NOT (then read as a worker's reply). Reads the bytes in
 * place, in one pass: no allocation. Any thread (pure).
 */
sc_js_reply_kind sc_js_reply_classify(const char *body, size_t len, struct sc_js_reply *r);

/*
 * sc_dispatch_reload() hands a reload (SIGHUP; d->cfg already changed in
 * place, d->classifier replaced) to the machine: see dlq_machine_reload().
 * Loop thread.
 */
void sc_dispatch_reload(struct sc_daemon *d, int64_t now_wall);

#endif
