/* breaker.h - the circuit breaker per retry subject: after circuit_breaker.failures failed attempts in a row the subject's retries are held (open), one probe goes after the cool-down (half-open), its success closes it. */
#ifndef DLQ_SIDECAR_BREAKER_H
#define DLQ_SIDECAR_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "dlq.h"

struct sc_daemon;
struct sc_jw;

/* Most circuits held (memory stays bounded), listed in stats, labelled in /metrics; the sweep's period, s. */
#define SC_BREAKER_MAX 1024
#define SC_BREAKER_LISTED 100
#define SC_BREAKER_LABELLED 20
#define SC_BREAKER_SWEEP_S 10

typedef enum { SC_CIRCUIT_CLOSED = 0, SC_CIRCUIT_OPEN, SC_CIRCUIT_HALF_OPEN } sc_circuit_state;

/* What a verdict did to its circuit. */
typedef enum { SC_BREAKER_SAME = 0, SC_BREAKER_OPENED, SC_BREAKER_CLOSED } sc_breaker_change;

/* One retry subject with failures in a row or a circuit not closed. */
struct sc_circuit {
    char *subject;         /* owned; first member (subjects.h) */
    sc_circuit_state state;
    int64_t failures;      /* failed attempts in a row */
    int64_t opened_mono, opened_wall; /* when it last opened (0: never) */
    int64_t next_probe_mono;          /* open: when the probe may go */
    int64_t probe_deadline_mono;      /* half-open: the probe is out until then */
    bool probe_out;
    bool live;             /* the sweep saw a task for it */
};

/* The table and its settings (copied from the configuration by the daemon before each use). */
struct sc_breaker {
    struct sc_circuit *e;  /* sorted by subject, n used of SC_BREAKER_MAX */
    size_t n;
    int64_t threshold;     /* circuit_breaker.failures; 0: off */
    int64_t cooldown_ms;   /* circuit_breaker.cooldown_ms */
    int64_t probe_timeout_ms; /* a probe without a verdict after this is lost: another may go */
    uint64_t opened_total; /* times a circuit opened (re-opening after a failed probe included) */
    uint64_t untracked;    /* failures of subjects past SC_BREAKER_MAX */
    struct event *sweep_ev;
};

/*
 * The pure part (no NATS, no daemon; unit-tested in tests/sidecar/test_breaker.c).
 * sc_breaker_gate() is asked before a retry to subject (NUL terminated,
 * borrowed) goes out at now (monotonic ms): 0 to send it (closed; or it is
 * the probe: the circuit turns half-open), else the monotonic ms until which
 * it is held (open: the probe time; half-open with the probe out: a
 * cool-down from now, unless the probe's verdict sends it sooner).
 * sc_breaker_verdict() records how a retry to subject ended (v) and returns
 * what it did: a success forgets the subject (SC_BREAKER_CLOSED when its
 * circuit was not closed); a failure counts, opens a closed circuit at the
 * threshold and re-opens a half-open one (SC_BREAKER_OPENED); no verdict
 * (deferred) frees the half-open probe slot. With threshold 0 both do
 * nothing. At most SC_BREAKER_MAX subjects are held (more: untracked,
 * never opened). sc_breaker_find() is subject's circuit or NULL (closed, no
 * failures). sc_breaker_free() frees the entries (not the struct). Loop thread.
 */
int64_t sc_breaker_gate(struct sc_breaker *b, const char *subject, int64_t now);
sc_breaker_change sc_breaker_verdict(struct sc_breaker *b, const char *subject, dlq_attempt_end v,
                                     int64_t now_mono, int64_t now_wall);
const struct sc_circuit *sc_breaker_find(const struct sc_breaker *b, const char *subject);
void sc_breaker_free(struct sc_breaker *b);
const char *sc_circuit_state_name(sc_circuit_state s);

/*
 * The daemon's part. sc_breaker_open() sets up d's table (empty) and its
 * sweep (every SC_BREAKER_SWEEP_S, subjects no pending or retrying task
 * retries to are forgotten); SC_EIO (libevent) with err set.
 * sc_breaker_close() frees it; safe when never opened. Main thread, outside the loop.
 */
sc_status sc_breaker_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_breaker_close(struct sc_daemon *d);

/*
 * sc_breaker_task_gate() and sc_breaker_task_verdict() are the machine's
 * gate and verdict ports (dlq_ports) for t's retry subject, with the
 * settings of d's configuration; an opened or closed circuit is logged and
 * emits <prefix>.events.circuit_opened / circuit_closed
 * ({"subject","state","failures","at","next_probe_at"}). The verdict
 * returns true when the circuit closed. Loop thread.
 */
int64_t sc_breaker_task_gate(struct sc_daemon *d, const struct dlq_task *t, int64_t now_mono);
bool sc_breaker_task_verdict(struct sc_daemon *d, const struct dlq_task *t, dlq_attempt_end v,
                             int64_t now_mono);

/* sc_breaker_state() is retry_subject's state (closed when unknown or NULL). Loop thread. */
sc_circuit_state sc_breaker_state(const struct sc_daemon *d, const char *retry_subject);

/* sc_breaker_not_closed() counts the circuits open or half-open (the alert retry_circuits_open). Loop thread. */
size_t sc_breaker_not_closed(const struct sc_daemon *d);

/*
 * sc_breaker_json() writes the stats keys "circuits" ([{"subject","state",
 * "failures","opened_at","next_probe_at"}], at most SC_BREAKER_LISTED, by
 * subject), "circuits_open" (not closed, all of them) and
 * "circuits_opened_total". sc_breaker_render() appends /metrics:
 * dlq_circuit_state{subject} (0 closed, 1 open, 2 half-open; the first
 * SC_BREAKER_LABELLED not closed), dlq_circuits_open, dlq_circuit_opened_total.
 * Loop thread.
 */
void sc_breaker_json(const struct sc_daemon *d, struct sc_jw *w);
void sc_breaker_render(const struct sc_daemon *d, struct sc_buf *b);

#endif
