/* metrics.h - Prometheus metrics: the histograms, the text exposition, the store health read for /readyz. */
#ifndef DLQ_SIDECAR_METRICS_H
#define DLQ_SIDECAR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct sc_daemon;

/*
 * What the HTTP listener counted since start (it passes them to
 * sc_metrics_render(); declared here, beside their reader, so that
 * metrics.c needs nothing of http.c).
 */
struct sc_http_stats {
    size_t open;              /* connections open now */
    size_t max_connections;   /* the effective cap */
    uint64_t accepted;        /* sockets accepted, refused ones included */
    uint64_t requests;        /* complete request heads read */
    uint64_t refused_cap;     /* closed at accept: max_connections reached */
    uint64_t refused_fds;     /* closed at accept: too close to RLIMIT_NOFILE */
    uint64_t evicted;         /* closed before their head was read, to make room for a new one */
    uint64_t timed_out;       /* cut at http.request_timeout_ms */
    uint64_t too_large;       /* request heads over the size cap (431) */
    uint64_t accept_errors;   /* accept(2) failures (EMFILE ...): the listener paused */
    uint64_t api_requests;    /* admin API calls made (/api/v1/<verb>) */
    uint64_t api_forbidden;   /* admin API requests refused with 403 (not from loopback, or a viewer's write) */
    uint64_t api_unauthorized; /* admin API requests refused with 401 (no or a wrong token) */
    uint64_t api_busy;        /* admin API requests refused with 503 (too many waiting) */
};

/* Histograms that dispatch.c feeds (one line each). */
typedef enum {
    SC_HIST_RETRY_LATENESS = 0, /* a retry went out this long after its due time */
    SC_HIST_TIME_TO_SUCCESS,    /* first failure of the episode to the successful retry */
    SC_HIST_COUNT
} sc_hist;

/*
 * sc_metrics_new() makes the histogram set (aborts on OOM); sc_metrics_free()
 * frees it, NULL is a no-op. sc_metrics_observe() records ms milliseconds
 * (negative counts as 0) in histogram h; a no-op when d->metrics is NULL.
 * sc_metrics_render() appends the whole Prometheus text exposition (format
 * 0.0.4) of d to out, with the HTTP listener's counters http (borrowed;
 * the listener hands them over, so metrics.c never calls it). Loop thread.
 */
struct sc_metrics *sc_metrics_new(void);
void sc_metrics_free(struct sc_metrics *m);
void sc_metrics_observe(struct sc_daemon *d, sc_hist h, int64_t ms);
void sc_metrics_render(struct sc_daemon *d, const struct sc_http_stats *http, struct sc_buf *out);

/*
 * sc_persistence_state() is the one place that reads the store's health for
 * /readyz and /metrics: returns the state name ("ok" while the store keeps
 * up; anything else, "degraded" for one, makes /readyz fail) and sets
 * *backend (static name) and *queued_writes. Loop thread.
 */
const char *sc_persistence_state(struct sc_daemon *d, const char **backend,
                                 uint64_t *queued_writes);

#endif
