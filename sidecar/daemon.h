/* daemon.h - the daemon's state (struct sc_daemon) that the sidecar's files share, and the transport shorthands on it. */
#ifndef DLQ_SIDECAR_DAEMON_H
#define DLQ_SIDECAR_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <nats/nats.h>

#include "codec.h"
#include "common.h"
#include "config.h"
#include "conn.h"
#include "dlq.h"
#include "jetstream.h"
#include "log.h"
#include "policy.h"
#include "rates.h"
#include "sidecar.h"

/* Per-reason invalid counters (low cardinality: codec reasons plus a few). */
#define SC_MAX_REASONS 32
struct sc_reason_count {
    const char *reason; /* static */
    uint64_t count;
    int64_t last_log_mono;
};

/* A background redrive (admin retry of a filter at a rate). */
struct sc_redrive {
    bool active;
    double rate, tokens;
    int64_t last_mono;
    uint64_t scheduled;
    uint64_t next_seq, last_seq; /* walk position and the last seq at start */
    struct dlq_filter filter;
    char *subject;               /* owned copy of filter.subject */
    char *error, *error_type, *id_prefix; /* owned copies of the filter's strings (NULL: unset) */
    struct event *ev;
    uint64_t matched;            /* tasks that matched at the start */
    uint64_t skipped;            /* matched tasks that changed before their turn */
    int64_t started_wall, finished_wall; /* 0 when none */
    bool cancelled;
    char *resume_id;             /* owned: id of the next task to visit (fast resume), or NULL */
    size_t resume_len;
    uint64_t resume_seq;
    char *note;                  /* owned: the history note of each task it schedules ("retry by local"), or NULL */
};

struct sc_daemon {
    struct config *cfg;        /* borrowed from main, lives longer */
    struct event_base *base;
    struct sc_conn *conn;      /* the NATS transport (conn.h); NULL before sc_conn_new() */
    struct sc_conn_sub *sub_failed; /* the core ingest subscription (drained at shutdown); NULL in jetstream mode */
    struct sc_js *js;          /* the JetStream source (ingest.mode: jetstream, jetstream.h); NULL in core mode */
    struct sc_adv *adv;        /* the advisory source (advisory.h); NULL when advisories.streams is empty */
    struct sc_micro *micro;    /* service discovery (micro.c); NULL before sc_micro_open() */
    struct sc_peers *peers;    /* another sidecar on this prefix (peers.h); NULL before sc_peers_open() */
    struct codec *codec;
    struct codec *prep_codec;  /* the core ingest delivery thread's (sc_ingest_prepare()) */
    struct policy_classifier *classifier;
    struct dlq_machine m;      /* the state machine: wheels, in-flight slots (dispatch.c fills its ports) */
    struct event *tick_ev;
    struct event *due_ev;      /* one-shot: the due wheels' next entry between two ticks (dispatch.c) */
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *drain_ev;
    struct sc_reason_count reasons[SC_MAX_REASONS];
    struct sc_lograte log_full, log_unknown; /* ingest.c: queue-full refusals, unknown envelope keys */
    struct sc_tasklog {        /* log.task_lines_per_s: the state machine's lines this second (dispatch.c) */
        int64_t window_mono;   /* start of the current one-second window */
        int64_t used;          /* lines written in it */
        uint64_t suppressed;   /* lines dropped in it, summed up in one line when it ends */
        uint64_t suppressed_total; /* dlq_log_lines_suppressed_total */
    } tasklog;
    uint64_t err_category[POLICY_CAT_COUNT];
    bool paused;               /* admin pause or retry_processor_enabled false */
    bool stopping;
    int64_t stop_deadline_mono;
    int64_t ingest_drain_started_mono;
    uint64_t ingest_received_at_stop; /* c.received when the drain started */
    int64_t started_mono, started_wall;
    struct sc_buf out;         /* reusable JSON output */
    struct sc_buf scratch;     /* reusable scratch */
    uint64_t rng;
    int exit_code;
    struct sc_redrive redrive;
    struct sc_rates rates;     /* per-minute counts of the last hour (rates.h), advanced by the tick */
    sc_reload_fn reload;       /* SIGHUP: builds a fresh configuration */
    void *reload_ctx;
    struct sc_metrics *metrics; /* histograms (metrics.c); NULL-safe */
    struct sc_http *http;       /* /healthz, /readyz, /metrics (http.c); NULL when disabled */
    struct sc_alerts *alerts;   /* threshold alerts and webhooks (alerts.c); NULL when disabled */
    struct sc_workers *workers; /* retry subjects without workers (workers.c); NULL before sc_workers_open() */
    struct sc_audit *audit;     /* the latest audit records (audit.c); NULL before sc_daemon_new() sets it */
    struct sc_breaker *breaker; /* circuit breakers per retry subject (breaker.c); NULL before sc_breaker_open() */
    struct sc_mirror *mirror;    /* the store mirror (mirror.c); NULL before sc_mirror_open() */
    struct sc_cluster *cluster;  /* cluster mode (cluster.h); NULL when cluster.enabled is false */
    struct sc_fanout *fanout;    /* cluster mode's admin API (fanout.h); NULL outside it */
    struct sc_forward *forward;  /* cluster mode's ingest routing (forward.h); NULL outside it */
    struct sc_handback *handback; /* cluster mode: outcomes of lost partitions' attempts (handback.h); NULL outside it */
    struct sc_takeover *takeover; /* cluster mode's partitions on this member (takeover.h); NULL outside it */
    unsigned char *serving;      /* cluster mode: per partition, served here (serving.h); NULL outside it */
    uint32_t serving_n;
    struct sc_conn_sub **part_subs; /* cluster mode: per partition served, its forwarded failures' subscription (ingest.c) */
};

/*
 * The transport (conn.h) for the files that publish as the daemon:
 * sc_publish() and sc_respond() are sc_conn_publish() and sc_conn_respond()
 * on d's connection (see there). Loop thread.
 */
static inline sc_status
sc_publish(struct sc_daemon *d, const char *subject, const char *reply, const void *body,
           size_t len, const char *const *headers)
{
    return sc_conn_publish(d->conn, subject, reply, body, len, headers);
}

static inline void
sc_respond(struct sc_daemon *d, natsMsg *req, const char *body, size_t len, int error_code,
           const char *error_message)
{
    sc_conn_respond(d->conn, req, body, len, error_code, error_message);
}

#endif
