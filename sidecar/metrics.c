/* metrics.c - the Prometheus text exposition of /metrics: counters, gauges and the two histograms. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "advisory.h"
#include "cluster.h"
#include "alerts.h"
#include "daemon.h"
#include "metrics.h"
#include "mirror.h"
#include "peers.h"
#include "workers.h"
#include "breaker.h"

/*
 * Bucket upper bounds in seconds. Lateness is the wheel tick plus the rate
 * limiter and the loop's load: milliseconds when healthy, seconds when
 * behind. Time to success spans the backoff schedule: seconds to hours.
 */
static const double lateness_bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,     2.5,  5,     10,   30,  60};
static const double success_bounds[] = {0.1,  0.5,  1,    5,    10,    30,    60,   120,
                                        300,  600,  1800, 3600, 7200, 21600, 86400};

#define HIST_MAX_BUCKETS 16

struct hist {
    const char *name;
    const char *help;
    const double *bounds; /* seconds, ascending; +Inf is implicit */
    size_t nbounds;
    uint64_t counts[HIST_MAX_BUCKETS]; /* per bucket, not cumulative; [nbounds] is +Inf */
    uint64_t count;
    int64_t sum_ms;
};

struct sc_metrics {
    struct hist h[SC_HIST_COUNT];
};

_Static_assert(SC_ARRAY_LEN(lateness_bounds) < HIST_MAX_BUCKETS, "raise HIST_MAX_BUCKETS");
_Static_assert(SC_ARRAY_LEN(success_bounds) < HIST_MAX_BUCKETS, "raise HIST_MAX_BUCKETS");

struct sc_metrics *
sc_metrics_new(void)
{
    struct sc_metrics *m = sc_xcalloc(1, sizeof(*m));

    m->h[SC_HIST_RETRY_LATENESS] = (struct hist){
        .name = "dlq_retry_lateness_seconds",
        .help = "Time a retry went out after its due time.",
        .bounds = lateness_bounds,
        .nbounds = SC_ARRAY_LEN(lateness_bounds),
    };
    m->h[SC_HIST_TIME_TO_SUCCESS] = (struct hist){
        .name = "dlq_failure_to_success_seconds",
        .help = "Time from a task's first failure to its successful retry.",
        .bounds = success_bounds,
        .nbounds = SC_ARRAY_LEN(success_bounds),
    };
    return m;
}

void
sc_metrics_free(struct sc_metrics *m)
{
    free(m);
}

void
sc_metrics_observe(struct sc_daemon *d, sc_hist which, int64_t ms)
{
    struct hist *h;
    size_t i;

    if (!d->metrics || (unsigned)which >= SC_HIST_COUNT)
        return;
    h = &d->metrics->h[which];
    if (ms < 0)
        ms = 0;
    for (i = 0; i < h->nbounds; i++)
        if ((double)ms <= h->bounds[i] * 1000.0)
            break;
    h->counts[i]++;
    h->count++;
    h->sum_ms += ms;
}

/* ---- the exposition ------------------------------------------------------------------------- */

static void
family(struct sc_buf *b, const char *name, const char *type, const char *help)
{
    sc_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Appends a label value with the escapes of the text format (\\, \" and \n). */
static void
label_value(struct sc_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            sc_buf_appendf(b, "\\%c", *v);
        else if (*v == '\n')
            sc_buf_append(b, "\\n", 2);
        else
            sc_buf_appendc(b, *v);
    }
}

/* One sample: name, an optional single label (lname NULL: none) and an integer value. */
static void
sample_u(struct sc_buf *b, const char *name, const char *lname, const char *lvalue, uint64_t v)
{
    sc_buf_append(b, name, strlen(name));
    if (lname) {
        sc_buf_appendf(b, "{%s=\"", lname);
        label_value(b, lvalue);
        sc_buf_append(b, "\"}", 2);
    }
    sc_buf_appendf(b, " %llu\n", (unsigned long long)v);
}

/* A value in seconds with millisecond precision (the clocks' resolution). */
static void
sample_seconds(struct sc_buf *b, const char *name, double v)
{
    if (isnan(v))
        sc_buf_appendf(b, "%s NaN\n", name);
    else
        sc_buf_appendf(b, "%s %.3f\n", name, v);
}

static void
metric_u(struct sc_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    family(b, name, type, help);
    sample_u(b, name, NULL, NULL, v);
}

static void
render_hist(struct sc_buf *b, const struct hist *h)
{
    uint64_t cum = 0;
    size_t i;

    family(b, h->name, "histogram", h->help);
    for (i = 0; i <= h->nbounds; i++) {
        cum += h->counts[i];
        if (i < h->nbounds)
            sc_buf_appendf(b, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->bounds[i],
                           (unsigned long long)cum);
        else
            sc_buf_appendf(b, "%s_bucket{le=\"+Inf\"} %llu\n", h->name, (unsigned long long)cum);
    }
    sc_buf_appendf(b, "%s_sum %.3f\n", h->name, (double)h->sum_ms / 1000.0);
    sc_buf_appendf(b, "%s_count %llu\n", h->name, (unsigned long long)h->count);
}

/* The persistence hook: /readyz and /metrics read the store only through here. */
const char *
sc_persistence_state(struct sc_daemon *d, const char **backend, uint64_t *queued_writes)
{
    return sc_mirror_state(d, backend, queued_writes);
}

/* The queue: sizes, tasks by status, category and policy (counts kept up to date by queue.c, no walk). */
static void
render_queue(struct sc_daemon *d, struct sc_buf *b)
{
    size_t i;

    family(b, "dlq_build_info", "gauge", "Version of the running dlq-sidecar (always 1).");
    sample_u(b, "dlq_build_info", "version", DLQ_VERSION, 1);
    family(b, "dlq_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.");
    sample_seconds(b, "dlq_start_time_seconds", (double)d->started_wall / 1000.0);

    metric_u(b, "dlq_queue_size", "gauge",
             "Tasks counting against max_size (pending, parked, retrying, exhausted).",
             (uint64_t)dlq_queue_active(&d->m.q));
    metric_u(b, "dlq_queue_capacity", "gauge", "Most tasks held (max_size).",
             (uint64_t)d->cfg->max_size);
    family(b, "dlq_tasks", "gauge", "Tasks held, by status (pending excludes parked).");
    sample_u(b, "dlq_tasks", "status", "pending",
             (uint64_t)(d->m.q.counts[DLQ_TASK_PENDING] - d->m.q.parked));
    sample_u(b, "dlq_tasks", "status", "parked", (uint64_t)d->m.q.parked);
    for (i = DLQ_TASK_RETRYING; i < DLQ_TASK_STATUS_COUNT; i++)
        sample_u(b, "dlq_tasks", "status", dlq_task_status_name((dlq_task_status)i),
                 (uint64_t)d->m.q.counts[i]);
    metric_u(b, "dlq_dependencies_waiting", "gauge",
             "Pending tasks held until the tasks they depend on complete (depends_on).",
             (uint64_t)dlq_machine_deps_waiting(&d->m));
    family(b, "dlq_tasks_by_category", "gauge",
           "Tasks counting against max_size, by error category.");
    for (i = 0; i < POLICY_CAT_COUNT; i++)
        sample_u(b, "dlq_tasks_by_category", "category", policy_category_name((policy_category)i),
                 (uint64_t)dlq_queue_active_category(&d->m.q, (policy_category)i));
    family(b, "dlq_tasks_by_policy", "gauge", "Tasks counting against max_size, by retry policy.");
    for (i = 0; i < POLICY_RETRY_COUNT; i++)
        sample_u(b, "dlq_tasks_by_policy", "policy", policy_retry_name((policy_retry)i),
                 (uint64_t)d->m.q.active_policy[i]);
}

static void
render_ingest(struct sc_daemon *d, struct sc_buf *b)
{
    const struct dlq_counters *c = &d->m.c;

    metric_u(b, "dlq_ingested_total", "counter",
             "Failure messages taken from the failed subjects, valid or not.", c->received);
    metric_u(b, "dlq_log_lines_suppressed_total", "counter",
             "Per-task log lines not written because of log.task_lines_per_s.", d->tasklog.suppressed_total);
    metric_u(b, "dlq_enqueued_total", "counter",
             "Failures stored as a new task or a new episode of a finished one.", c->enqueued);
    metric_u(b, "dlq_repeat_failures_total", "counter",
             "Failure envelopes for a task already held.", c->duplicates);
    metric_u(b, "dlq_skipped_total", "counter",
             "Valid failures not stored because of the strategy or enabled: false.", c->skipped);
    metric_u(b, "dlq_refused_full_total", "counter", "Failures refused because the queue was full.",
             c->refused_full);
    family(b, "dlq_retention_total", "counter",
           "Tasks past retention.*: exhausted ones archived, completed or archived ones removed.");
    sample_u(b, "dlq_retention_total", "action", "archived", c->expired_archived);
    sample_u(b, "dlq_retention_total", "action", "removed", c->expired_removed);
    metric_u(b, "dlq_ingest_dropped_total", "counter",
             "Failure messages nats.c had received but the loop never took (a shutdown drain cut short).",
             c->ingest_dropped);
    {
        int64_t slow = sc_conn_sub_dropped(d->sub_failed);
        metric_u(b, "dlq_ingest_slow_consumer_dropped_total", "counter",
                 "Failure messages nats.c dropped past its pending limits (slow consumer).",
                 slow > 0 ? (uint64_t)slow : 0);
    }
    metric_u(b, "dlq_ingest_redelivered_total", "counter",
             "JetStream deliveries of a failure a task already holds (no new failure).",
             c->redelivered);
    if (d->js) {
        struct sc_js_stats js = sc_js_get_stats(d->js);
        metric_u(b, "dlq_jetstream_ready", "gauge",
                 "1 while the JetStream ingest stream and consumer are set up and fetching.",
                 js.ready ? 1 : 0);
        metric_u(b, "dlq_jetstream_fetched_total", "counter",
                 "Failure messages pulled from the JetStream ingest consumer.", js.fetched);
        metric_u(b, "dlq_jetstream_acks_total", "counter",
                 "JetStream failure messages acknowledged (their task accepted).", js.acks);
        metric_u(b, "dlq_jetstream_naks_total", "counter",
                 "JetStream failure messages naked with a delay (not taken now; delivered again).",
                 js.naks);
        metric_u(b, "dlq_jetstream_fetch_errors_total", "counter",
                 "Pull requests to the JetStream ingest consumer that failed.", js.fetch_errors);
    }
    {
        struct sc_adv_stats as = sc_adv_get_stats(d->adv);
        metric_u(b, "dlq_advisories_total", "counter",
                 "JetStream advisories (advisories.streams) taken from the capture stream.",
                 as.received);
        metric_u(b, "dlq_advisories_invalid_total", "counter",
                 "Advisories refused: malformed, forged, of a stream not listed, or unfileable.",
                 as.invalid);
        metric_u(b, "dlq_advisories_fetch_errors_total", "counter",
                 "Originals of advisories that could not be read (filed payload_missing).",
                 as.fetch_errors);
        metric_u(b, "dlq_payload_missing_total", "counter",
                 "Tasks filed from an advisory without their original message (gone or unreadable).",
                 c->payload_missing);
    }
    family(b, "dlq_invalid_total", "counter", "Failure messages refused as invalid, by reason.");
    for (size_t i = 0; i < SC_MAX_REASONS && d->reasons[i].reason; i++)
        sample_u(b, "dlq_invalid_total", "reason", d->reasons[i].reason, d->reasons[i].count);
}

static void
render_retries(struct sc_daemon *d, struct sc_buf *b)
{
    const struct dlq_counters *c = &d->m.c;

    metric_u(b, "dlq_retries_published_total", "counter", "Retry messages published to workers.",
             c->attempts);
    family(b, "dlq_retries_total", "counter",
           "Retry attempts by outcome (failure: the worker or a new failure said so).");
    sample_u(b, "dlq_retries_total", "outcome", "success", c->retry_success);
    sample_u(b, "dlq_retries_total", "outcome", "failure",
             c->retry_failed >= c->retry_timeouts ? c->retry_failed - c->retry_timeouts : 0);
    sample_u(b, "dlq_retries_total", "outcome", "timeout", c->retry_timeouts);
    metric_u(b, "dlq_retries_deferred_total", "counter",
             "Retries put off without counting an attempt (no responders, NATS down).",
             c->deferred);
    metric_u(b, "dlq_exhausted_total", "counter", "Tasks that ran out of retries.", c->exhausted);
    metric_u(b, "dlq_manual_retries_total", "counter", "Retries scheduled by an operator.",
             c->manual_retries);
    metric_u(b, "dlq_archived_total", "counter", "Tasks archived by an operator.", c->archived);
    metric_u(b, "dlq_cleared_total", "counter", "Tasks cleared by an operator.", c->cleared);
    metric_u(b, "dlq_retries_in_flight", "gauge", "Retries awaiting their outcome.",
             (uint64_t)d->m.inflight);
    metric_u(b, "dlq_retries_scheduled", "gauge", "Pending tasks with a due time in the wheel.",
             (uint64_t)dlq_machine_scheduled(&d->m));
    family(b, "dlq_retries_dispatched_total", "counter",
           "Attempts published, by the task's priority (issue 17: shared 6:3:1 under the limits).");
    for (int p = 0; p < POLICY_PRIO_COUNT; p++)
        sample_u(b, "dlq_retries_dispatched_total", "priority", policy_priority_names[p],
                 c->dispatched[p]);
    family(b, "dlq_retries_scheduled_by_priority", "gauge",
           "Pending tasks with a due time, by priority.");
    for (int p = 0; p < POLICY_PRIO_COUNT; p++)
        sample_u(b, "dlq_retries_scheduled_by_priority", "priority", policy_priority_names[p],
                 (uint64_t)dlq_wheel_count(d->m.wheels[p]));
    metric_u(b, "dlq_retry_processor_paused", "gauge",
             "1 while automatic retries are paused (admin pause or retry_processor_enabled).",
             d->paused ? 1 : 0);
    for (size_t i = 0; i < SC_HIST_COUNT && d->metrics; i++)
        render_hist(b, &d->metrics->h[i]);
}

static void
render_persistence(struct sc_daemon *d, struct sc_buf *b)
{
    static const char *const pstates[] = {"starting", "ok", "degraded"}; /* persist_state_name() */
    const char *backend = "memory", *pstate;
    uint64_t queued = 0, refused_answers, unstored_answers;
    bool known = false;

    pstate = sc_persistence_state(d, &backend, &queued);
    family(b, "dlq_persistence_state", "gauge",
           "1 for the store's current state, 0 for the others (starting, ok, degraded).");
    for (size_t i = 0; i < SC_ARRAY_LEN(pstates); i++) {
        sc_buf_appendf(b, "dlq_persistence_state{backend=\"%s\",state=\"%s\"} %d\n", backend,
                       pstates[i], strcmp(pstate, pstates[i]) == 0);
        known = known || strcmp(pstate, pstates[i]) == 0;
    }
    if (!known) {
        sc_buf_appendf(b, "dlq_persistence_state{backend=\"%s\",state=\"", backend);
        label_value(b, pstate);
        sc_buf_append(b, "\"} 1\n", 5);
    }
    metric_u(b, "dlq_persistence_queued_writes", "gauge",
             "Writes waiting for the store (the journal while it is degraded).", queued);
    metric_u(b, "dlq_persistence_rejected_total", "counter",
             "Task documents the store refused for good (the task stays in memory).",
             sc_mirror_rejected(d));
    sc_mirror_answer_counts(d, &refused_answers, &unstored_answers);
    metric_u(b, "dlq_ingest_answers_refused_total", "counter",
             "Ingest requests answered 503 because the store could not take them (store.ack: durable).",
             refused_answers);
    metric_u(b, "dlq_ingest_answers_unstored_total", "counter",
             "Ingest requests answered \"stored\":false (accepted in memory, not yet durable).",
             unstored_answers);
}

static void
render_nats(struct sc_daemon *d, struct sc_buf *b)
{
    struct sc_conn_stats nst = sc_conn_get_stats(d->conn);

    metric_u(b, "dlq_nats_connected", "gauge", "1 while the NATS connection is up.",
             nst.connected ? 1 : 0);
    metric_u(b, "dlq_nats_reconnects_total", "counter", "Reconnections to NATS after a loss.",
             nst.reconnects);
    metric_u(b, "dlq_nats_disconnects_total", "counter", "Losses of the NATS connection.",
             nst.disconnects);
    metric_u(b, "dlq_nats_published_total", "counter",
             "Messages published (retries, events, replies, invalid copies).", nst.published);
    metric_u(b, "dlq_nats_publish_errors_total", "counter", "Publishes nats.c refused.",
             nst.publish_errors);
}

static void
render_peers(struct sc_daemon *d, struct sc_buf *b)
{
    struct sc_peers_stats pst = sc_peers_get_stats(d);

    metric_u(b, "dlq_duplicate_sidecars", "gauge",
             "Other dlq-sidecars serving this prefix outside cluster mode (0 is the only healthy value).",
             pst.duplicates);
    metric_u(b, "dlq_discovery_pings_total", "counter",
             "Service-discovery pings sent to look for another sidecar on this prefix.", pst.pings);
    metric_u(b, "dlq_discovery_answers_total", "counter",
             "Answers from other dlq-sidecar instances (any prefix) to those pings.", pst.answers);
    metric_u(b, "dlq_discovery_invalid_total", "counter",
             "Answers to those pings that were not a dlq-sidecar ping response.", pst.invalid);
}

static void
render_http(const struct sc_http_stats *hst, struct sc_buf *b)
{
    metric_u(b, "dlq_http_connections_open", "gauge", "HTTP connections open now.", hst->open);
    metric_u(b, "dlq_http_connections_max", "gauge",
             "Effective cap of open HTTP connections (max_connections, fitted under the fd limit).",
             hst->max_connections);
    metric_u(b, "dlq_http_requests_total", "counter", "HTTP request heads read.", hst->requests);
    family(b, "dlq_http_connections_refused_total", "counter",
           "HTTP connections closed at accept, by reason.");
    sample_u(b, "dlq_http_connections_refused_total", "reason", "max_connections",
             hst->refused_cap);
    sample_u(b, "dlq_http_connections_refused_total", "reason", "fd_reserve", hst->refused_fds);
    metric_u(b, "dlq_http_connections_evicted_total", "counter",
             "HTTP connections closed before their request head was read, to make room at the cap.",
             hst->evicted);
    metric_u(b, "dlq_http_connections_timed_out_total", "counter",
             "HTTP connections cut at http.request_timeout_ms.", hst->timed_out);
    metric_u(b, "dlq_http_requests_too_large_total", "counter",
             "HTTP request heads over the size cap (answered 431).", hst->too_large);
    metric_u(b, "dlq_http_accept_errors_total", "counter",
             "accept(2) failures of the HTTP listener (it pauses after each).",
             hst->accept_errors);
    metric_u(b, "dlq_http_api_requests_total", "counter",
             "Admin API calls made over HTTP (/api/v1/<verb>).", hst->api_requests);
    family(b, "dlq_http_api_refused_total", "counter", "Admin API requests refused, by reason.");
    sample_u(b, "dlq_http_api_refused_total", "reason", "forbidden", hst->api_forbidden);
    sample_u(b, "dlq_http_api_refused_total", "reason", "unauthorized", hst->api_unauthorized);
    sample_u(b, "dlq_http_api_refused_total", "reason", "busy", hst->api_busy);
}

static void
render_cluster(struct sc_daemon *d, struct sc_buf *b)
{
    struct sc_cluster_stats st = sc_cluster_get_stats(d);

    if (!st.enabled)
        return;
    metric_u(b, "dlq_cluster_partitions_owned", "gauge",
             "Partitions this instance owns now (lease held and within its local deadline).",
             st.partitions_owned);
    metric_u(b, "dlq_cluster_members", "gauge",
             "Live cluster members in the last read of the lease bucket (this one included).",
             st.members);
    metric_u(b, "dlq_cluster_lease_renewals_total", "counter",
             "Lease renewals the bucket accepted.", st.lease_renewals);
    metric_u(b, "dlq_cluster_lease_failures_total", "counter",
             "Lease renewals refused, failed or unanswered, and leases that ran out before renewal.",
             st.lease_failures);
}

void
sc_metrics_render(struct sc_daemon *d, const struct sc_http_stats *http, struct sc_buf *b)
{
    render_queue(d, b);
    render_ingest(d, b);
    render_retries(d, b);
    render_persistence(d, b);
    render_nats(d, b);
    render_peers(d, b);
    render_cluster(d, b);
    render_http(http, b);
    sc_workers_render(d, b);
    sc_breaker_render(d, b);
    dlq_effect_render(&d->m.effect, b);
    sc_alerts_render(d, b);
}
