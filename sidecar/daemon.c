/* daemon.c - builds the loop, the connection and the queue; wires the subscriptions' handlers; handles signals, shutdown and reload. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "fanout.h"
#include "advisory.h"
#include "alerts.h"
#include "audit.h"
#include "cluster.h"
#include "daemon.h"
#include "dispatch.h"
#include "handback.h"
#include "forward.h"
#include "http.h"
#include "ingest.h"
#include "metrics.h"
#include "micro.h"
#include "mirror.h"
#include "persist.h"
#include "peers.h"
#include "takeover.h"
#include "workers.h"
#include "breaker.h"

#define HANDOFF_CAP 65536
#define INGEST_PREP_SLOTS 2048 /* envelopes decoded ahead of the loop (1,160 bytes each) */
#define BIG_PENDING 1000000        /* messages nats.c may buffer for the ingest and reply subscriptions */
#define DRAIN_NATS_MARGIN_MS 60000 /* nats.c's drain timeout: shutdown.drain_ms plus this */

/* Builds a classifier from cfg's rules. */
static sc_status
build_classifier(const struct config *cfg, struct policy_classifier **out, char *err, size_t errlen)
{
    struct policy_rule_spec *specs = NULL;
    sc_status s;

    if (cfg->nrules)
        specs = sc_xcalloc(cfg->nrules, sizeof(*specs));
    for (size_t i = 0; i < cfg->nrules; i++) {
        specs[i].id = cfg->rules[i].id;
        specs[i].pattern = cfg->rules[i].pattern;
        specs[i].category = cfg->rules[i].category;
        specs[i].field = cfg->rules[i].field;
    }
    s = policy_classifier_new(specs, cfg->nrules, cfg->rules_replace_builtin, out, err, errlen);
    free(specs);
    return s;
}

/* ---- the handlers of the subscriptions (conn.h): each hands one message to its edge --------- */

static void
on_failure_msg(void *ctx, natsMsg *m)
{
    sc_ingest(ctx, m);
}

static void
on_failure_js(void *ctx, natsMsg *m)
{
    sc_ingest_js(ctx, m);
}

static void
on_reply_msg(void *ctx, natsMsg *m)
{
    if (!sc_handback_reply(ctx, m)) /* cluster mode: an attempt of a partition no longer held here */
        sc_on_reply(ctx, m);
}

static void
on_admin_msg(void *ctx, natsMsg *m)
{
    sc_admin(ctx, m);
}

/*
 * Subscribes the reply and admin subjects on d's connection and opens
 * service discovery: everything but the failures. Returns SC_OK or SC_EIO
 * with err set. Main thread.
 */
static sc_status
subscribe_admin(struct sc_daemon *d, char *err, size_t errlen)
{
    const struct config *cfg = d->cfg;
    const char *verbs[64];
    size_t nverbs = 0;
    char subj[512];
    sc_status s;

    snprintf(subj, sizeof(subj), "%s.*.*", sc_conn_inbox(d->conn));
    if ((s = sc_conn_subscribe(d->conn, subj, NULL, BIG_PENDING, on_reply_msg, d, NULL, err,
                               errlen)))
        return s;
    snprintf(subj, sizeof(subj), "%s.admin.*", cfg->subjects_prefix);
    if (cfg->cluster_enabled)
        s = sc_fanout_open(d, err, errlen); /* any member answers for all of them */
    else
        s = sc_conn_subscribe(d->conn, subj, NULL, 0, on_admin_msg, d, NULL, err, errlen);
    if (s)
        return s;
    while (nverbs < SC_ARRAY_LEN(verbs) && nverbs < sc_admin_verb_count()) {
        verbs[nverbs] = sc_admin_verb_name(nverbs);
        nverbs++;
    }
    if ((s = sc_micro_open(d, verbs, nverbs, err, errlen)))
        return s;
    return sc_peers_open(d, err, errlen); /* needs the micro id */
}

/*
 * Subscribes the failures: the advisories' JetStream consumer, then the
 * ingest subscription (core NATS in the queue group, or the JetStream
 * consumer). The last step of a start (sc_daemon_new()): a core-mode
 * failure routed to this sidecar has no other holder, so nothing that can
 * still fail may come after the ingest subscription (a start that failed
 * later took its share of the queue group's failures and dropped them at
 * its exit, unanswered). What a JetStream consumer hands a start that then
 * fails is not acked and comes again. Returns SC_OK, or SC_EIO/SC_EINVAL
 * with err set. Main thread.
 */
static sc_status
subscribe_failures(struct sc_daemon *d, char *err, size_t errlen)
{
    const struct config *cfg = d->cfg;
    char subj[512];
    sc_status s;

    if ((s = sc_adv_open(d, err, errlen)))
        return s;
    snprintf(subj, sizeof(subj), "%s.failed.>", cfg->subjects_prefix);
    if (cfg->ingest_mode == CONFIG_INGEST_JETSTREAM) {
        struct sc_js_spec spec;
        const char *subjects[1];
        char js_subject[300];
        sc_js_ingest_spec(cfg, js_subject, sizeof(js_subject), subjects, &spec);
        s = sc_js_open(d->conn, &spec, on_failure_js, d, &d->js, err, errlen);
    } else {
        sc_js_core_capture_warn(d->conn, subj, 2000);
        struct sc_conn_prep prep = {sc_ingest_prepare, d->prep_codec,
                                    sizeof(struct sc_ingest_prepared), INGEST_PREP_SLOTS,
                                    sc_ingest_ahead, d};
        s = sc_conn_subscribe_prepared(d->conn, subj, cfg->subjects_queue_group, BIG_PENDING,
                                       &prep, on_failure_msg, d, &d->sub_failed, err, errlen);
    }
    return s;
}

/* ---- shutdown -------------------------------------------------------------------------------- */

/* The ingest drain reached its end marker: every failure buffered for this sidecar was taken. */
static void
on_ingest_drained(void *ctx)
{
    struct sc_daemon *d = ctx;

    sc_log(SC_LOG_INFO, "ingest drained: every failure buffered for this sidecar was taken",
           "taken", sc_log_int((int64_t)(d->m.c.received - d->ingest_received_at_stop)), "ms",
           sc_log_int(sc_now_mono_ms() - d->ingest_drain_started_mono), NULL);
}

/*
 * Stops taking new failures without losing those nats.c already buffered:
 * drains the ingest subscription (not an unsubscribe, which would throw
 * them away). The tick stops the loop once sc_conn_sub_drain_state() says
 * done and nothing is in flight, or at shutdown.drain_ms.
 */
static void
drain_ingest(struct sc_daemon *d)
{
    d->ingest_drain_started_mono = sc_now_mono_ms();
    d->ingest_received_at_stop = d->m.c.received;
    /*
     * nats.c's timeout must never fire first: on its expiry nats.c closes
     * the subscription and frees what it still holds without a count, and
     * its flush (by default 10 s, the same timeout when one is given) would
     * on failure make it drop, uncounted, whatever still arrives behind a
     * long backlog. shutdown.drain_ms bounds the wait instead, and
     * ingest_account() counts what is left then.
     */
    sc_conn_sub_drain(d->sub_failed, d->cfg->shutdown_drain_ms + DRAIN_NATS_MARGIN_MS,
                      on_ingest_drained, d);
}

/*
 * Runs once the loop no longer runs (after the last event_base_* call):
 * counts the failures that nats.c had received but the loop never took in
 * (c.ingest_dropped), logs the tally (warn when anything was dropped) and
 * returns that count. Main thread.
 */
static uint64_t
ingest_account(struct sc_daemon *d)
{
    sc_conn_drain_state st = sc_conn_sub_drain_state(d->sub_failed);
    uint64_t arrived, taken, dropped = 0;

    if (st == SC_CONN_DRAIN_NONE)
        return 0;
    sc_conn_sub_tally(d->sub_failed, &arrived, &taken);
    if (arrived > taken)
        dropped = arrived - taken;
    d->m.c.ingest_dropped += dropped;
    sc_log(dropped ? SC_LOG_WARN : SC_LOG_INFO,
           dropped ? "ingest closed: failures received from NATS were not taken before exit"
                   : "ingest closed: every failure received from NATS was taken",
           "arrived", sc_log_int((int64_t)(d->m.c.received + dropped)), /* from NATS, taken or not */
           "received", sc_log_int((int64_t)d->m.c.received), "enqueued",
           sc_log_int((int64_t)d->m.c.enqueued), "invalid", sc_log_int((int64_t)d->m.c.invalid),
           "refused_full", sc_log_int((int64_t)d->m.c.refused_full), "dropped",
           sc_log_int((int64_t)dropped), "drained", st == SC_CONN_DRAIN_DONE ? "true" : "false",
           NULL);
    return dropped;
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct sc_daemon *d = arg;

    (void)what;
    if (d->stopping) {
        sc_log(SC_LOG_WARN, "second signal: stopping now", NULL);
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = true;
    d->stop_deadline_mono = sc_now_mono_ms() + d->cfg->shutdown_drain_ms;
    sc_adv_stop(d->adv); /* what it pulled and did not ack goes back to its stream */
    if (d->js)
        sc_js_stop(d->js); /* what it pulled and did not ack goes back to the stream */
    else
        drain_ingest(d);
    sc_log(SC_LOG_INFO, "stopping: no new failures; taking in the buffered ones, draining in-flight retries", "signal",
           sig == SIGTERM ? "TERM" : "INT", "in_flight", sc_log_int((int64_t)d->m.inflight),
           "drain_ms", sc_log_int(d->cfg->shutdown_drain_ms), NULL);
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct config fresh;
    struct policy_classifier *pc = NULL;
    char err[512] = "";

    (void)sig;
    (void)what;
    if (!d->reload) {
        sc_log(SC_LOG_WARN, "SIGHUP ignored: no reload source", NULL);
        return;
    }
    config_init(&fresh);
    if (d->reload(d->reload_ctx, &fresh, err, sizeof(err)) ||
        build_classifier(&fresh, &pc, err, sizeof(err))) {
        sc_log(SC_LOG_ERROR, "reload refused; the old rules stay", "error", err, NULL);
        config_destroy(&fresh);
        return;
    }
    policy_classifier_free(d->classifier);
    d->classifier = pc;
    d->cfg->backoff = fresh.backoff;
    d->cfg->has_default_retry_policy = fresh.has_default_retry_policy;
    d->cfg->default_retry_policy = fresh.default_retry_policy;
    d->cfg->default_max_retries = fresh.default_max_retries;
    SC_SWAP(char **, d->cfg->backoff_categories, fresh.backoff_categories);
    SC_SWAP(size_t, d->cfg->backoff_categories_count, fresh.backoff_categories_count);
    SC_SWAP(char **, d->cfg->backoff_subjects, fresh.backoff_subjects);
    SC_SWAP(size_t, d->cfg->backoff_subjects_count, fresh.backoff_subjects_count);
    SC_SWAP(char **, d->cfg->priority_subjects, fresh.priority_subjects);
    SC_SWAP(size_t, d->cfg->priority_subjects_count, fresh.priority_subjects_count);
    SC_SWAP(struct config_template *, d->cfg->templates, fresh.templates);
    SC_SWAP(size_t, d->cfg->ntemplates, fresh.ntemplates);
    d->cfg->circuit_breaker_failures = fresh.circuit_breaker_failures; /* breaker.c reads them at each use */
    d->cfg->circuit_breaker_cooldown_ms = fresh.circuit_breaker_cooldown_ms;
    sc_dispatch_reload(d, sc_now_wall_ms()); /* tasks that took the default follow it */
    sc_log(SC_LOG_INFO, "reloaded rules and policies", "rules",
           sc_log_int((int64_t)policy_classifier_count(pc)), NULL);
    config_destroy(&fresh);
}

sc_status
sc_daemon_new(struct config *cfg, struct sc_daemon **out, char *err, size_t errlen)
{
    struct sc_daemon *d;
    struct timeval tv;
    sc_status s;

    *out = NULL;
    d = sc_xcalloc(1, sizeof(*d));
    d->cfg = cfg;
    sc_log_setup(cfg->log_level, cfg->log_format);
    sc_conn_global_init();
    d->base = event_base_new();
    if (!d->base) {
        snprintf(err, errlen, "libevent: event_base_new failed");
        s = SC_EIO;
        goto fail;
    }
    if ((s = build_classifier(cfg, &d->classifier, err, errlen)))
        goto fail;
    d->codec = codec_new(&cfg->limits);
    d->prep_codec = codec_new(&cfg->limits);
    /* secrets.mask_keys: every rendered view of metadata and payloads from here on (README "Secrets"). */
    codec_mask_set((const char *const *)cfg->secrets_mask_keys, cfg->secrets_mask_count);
    d->started_mono = sc_now_mono_ms();
    d->started_wall = sc_now_wall_ms();
    sc_buf_init(&d->out, 256 * 1024 * 1024);
    sc_buf_init(&d->scratch, 16 * 1024 * 1024);
    d->rng = sc_random_u64() | 1; /* two sidecars started together jitter apart */
    d->paused = !cfg->retry_processor_enabled;
    sc_dispatch_init(d);
    d->metrics = sc_metrics_new();
    d->audit = sc_audit_new((size_t)cfg->audit_keep);
    /* Cluster mode's needs, checked before anything is set up on the servers. */
    if ((s = sc_takeover_check(cfg, err, errlen)))
        goto fail;
    /*
     * A spill file is replayed by this member's next start, when its
     * partitions have owners that went on from the store meanwhile: it would
     * bring back tasks they finished and send their attempts again
     * (docs/cluster.md, "A stop while the store is away").
     */
    if (cfg->cluster_enabled && cfg->store_spill_dir[0]) {
        snprintf(err, errlen, "store.spill_dir: not in cluster mode (cluster.enabled: true): a member's "
                              "unstored writes cannot wait for its next start, its partitions' next "
                              "owners go on from the store; leave store.spill_dir empty");
        s = SC_EINVAL;
        goto fail;
    }
    if ((s = sc_conn_new(d->base, cfg, HANDOFF_CAP, &d->conn, err, errlen)))
        goto fail;
    d->m.reply_prefix = sc_conn_inbox(d->conn); /* lives as long as the connection */
    /*
     * A cluster member whose tasks bucket does not fit (another partition
     * count, a TTL, replicas the servers cannot place) must not join: it would take leases and serve nothing.
     * Outside cluster mode the store says so (degraded) and the sidecar
     * serves from memory. NATS away now: the store checks when it opens.
     */
    if (cfg->cluster_enabled && cfg->store_backend == CONFIG_STORE_JETSTREAM &&
        persist_kv_check(sc_conn_nats(d->conn), cfg->kv_bucket, (unsigned)cfg->cluster_partitions,
                         (int)cfg->kv_replicas, cfg->kv_storage == CONFIG_STORAGE_MEMORY,
                         cfg->kv_timeout_ms, err, errlen) == SC_EINVAL) {
        s = SC_EINVAL;
        goto fail;
    }
    /*
     * Tasks are loaded back before the tick runs and before anything is
     * subscribed (no failure, retry or admin request arrives during the
     * load); the JetStream KV store needs the connection for it.
     */
    if ((s = sc_mirror_open(d, err, errlen)))
        goto fail;
    d->tick_ev = event_new(d->base, -1, EV_PERSIST, sc_on_tick, d);
    tv.tv_sec = cfg->timer_tick_ms / 1000;
    tv.tv_usec = (cfg->timer_tick_ms % 1000) * 1000;
    event_add(d->tick_ev, &tv);
    d->due_ev = evtimer_new(d->base, sc_on_due, d);
    d->sig_term = evsignal_new(d->base, SIGTERM, on_stop_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_stop_signal, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, on_hup, d);
    event_add(d->sig_term, NULL);
    event_add(d->sig_int, NULL);
    event_add(d->sig_hup, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((s = sc_cluster_open(d, err, errlen)) || /* leases before any failure or admin request arrives */
        (s = sc_forward_open(d, err, errlen)) || (s = sc_takeover_open(d, err, errlen)) ||
        (s = sc_handback_open(d, err, errlen)))
        goto fail;
    if ((s = subscribe_admin(d, err, errlen)) || (s = sc_workers_open(d, err, errlen)) ||
        (s = sc_breaker_open(d, err, errlen)) || (s = sc_http_start(d, err, errlen)) ||
        (s = sc_alerts_start(d, err, errlen)))
        goto fail;
    if ((s = subscribe_failures(d, err, errlen))) /* last: see there */
        goto fail;
    *out = d;
    return SC_OK;

fail:
    sc_daemon_free(d);
    return s;
}

void
sc_daemon_set_reload(struct sc_daemon *d, sc_reload_fn fn, void *ctx)
{
    d->reload = fn;
    d->reload_ctx = ctx;
}

int
sc_daemon_run(struct sc_daemon *d)
{
    sc_log(SC_LOG_INFO, "dlq-sidecar started", "version", DLQ_VERSION, "prefix",
           d->cfg->subjects_prefix, "store",
           config_store_name(d->cfg->store_backend), "tick_ms", sc_log_int(d->cfg->timer_tick_ms),
           NULL);
    event_base_dispatch(d->base);
    sc_mirror_flush(d); /* DESIGN section 14: flush the store before exiting */
    if (ingest_account(d) > 0 && d->exit_code == 0)
        d->exit_code = 1; /* failures were lost: say so to the supervisor too */
    sc_log(SC_LOG_INFO, "dlq-sidecar stopped", "tasks", sc_log_int((int64_t)dlq_queue_active(&d->m.q)),
           NULL);
    return d->exit_code;
}

void
sc_daemon_free(struct sc_daemon *d)
{
    if (!d)
        return;
    sc_alerts_stop(d);
    sc_http_stop(d);
    sc_breaker_close(d);
    sc_workers_close(d);
    sc_takeover_close(d);
    sc_handback_close(d);
    sc_forward_close(d); /* naks what waits for an owner's answer: the stream delivers it again */
    sc_cluster_close(d); /* gives the leases back; its thread uses the connection */
    sc_js_close(d->js); /* its thread uses the connection */
    sc_adv_close(d->adv);
    d->adv = NULL;
    d->js = NULL;
    sc_mirror_close(d); /* joins the KV store's loader, which uses the connection */
    sc_fanout_close(d); /* answers 503 to admin requests still being gathered */
    sc_conn_free(d->conn); /* no handler runs after this */
    d->conn = NULL;
    d->sub_failed = NULL;
    sc_micro_close(d);
    sc_peers_close(d);
    if (d->tick_ev)
        event_free(d->tick_ev);
    if (d->due_ev)
        event_free(d->due_ev);
    if (d->sig_term)
        event_free(d->sig_term);
    if (d->sig_int)
        event_free(d->sig_int);
    if (d->sig_hup)
        event_free(d->sig_hup);
    sc_admin_destroy(d);
    sc_dispatch_destroy(d);
    codec_free(d->codec);
    codec_free(d->prep_codec); /* after sc_conn_free(): no delivery thread uses it any more */
    sc_metrics_free(d->metrics);
    sc_audit_free(d->audit);
    policy_classifier_free(d->classifier);
    sc_buf_destroy(&d->out);
    sc_buf_destroy(&d->scratch);
    if (d->base)
        event_base_free(d->base);
    free(d);
}
