/* test_jetstream.c - integration: durable ingest on JetStream (ingest.mode: jetstream) against a real nats-server with JetStream. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "harness.h"

#define STREAM "DLQ_FAILED"

/* The flags every test here runs the daemon with: JetStream ingest, retries paused (tasks stay put). */
#define JS_FLAGS "ingest.mode=jetstream", "retry_processor_enabled=false", "nats.reconnect_wait_ms=100"

/* Reads the stream's message count (*msgs) and its consumer's unacked count (*pending): 0 or -1. */
static int
stream_counts(natsConnection *nc, uint64_t *msgs, int64_t *ack_pending)
{
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsConsumerInfo *ci = NULL;
    int rc = -1;

    if (natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        return -1;
    if (js_GetStreamInfo(&si, js, STREAM, NULL, NULL) == NATS_OK) {
        *msgs = si->State.Msgs;
        rc = 0;
        jsStreamInfo_Destroy(si);
    }
    if (rc == 0 && ack_pending) {
        *ack_pending = 0;
        if (js_GetConsumerInfo(&ci, js, STREAM, "dlq-sidecar", NULL, NULL) == NATS_OK) {
            *ack_pending = ci->NumAckPending;
            jsConsumerInfo_Destroy(ci);
        }
    }
    jsCtx_Destroy(js);
    return rc;
}

/* Waits until the stream holds want messages (up to timeout_ms); the last count read goes to *msgs. */
static bool
wait_stream(natsConnection *nc, uint64_t want, int timeout_ms, uint64_t *msgs)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;

    *msgs = UINT64_MAX;
    while (sc_now_mono_ms() < deadline) {
        if (stream_counts(nc, msgs, NULL) == 0 && *msgs == want)
            return true;
        it_sleep_ms(50);
    }
    return false;
}

/* Waits until the daemon's lifetime_stats.enqueued reaches want; returns the stats (caller frees). */
static json_t *
wait_enqueued(natsConnection *nc, int64_t want, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    json_t *st = NULL;

    while (sc_now_mono_ms() < deadline) {
        json_decref(st);
        st = it_admin_stats(nc);
        if (st && it_json_int(st, "lifetime_stats.enqueued") >= want)
            return st;
        it_sleep_ms(100);
    }
    return st;
}

/* Publishes n failures with ids "<prefix>-<i>" as plain publishes on dlq.failed.orders, then flushes. */
static void
publish_failures(natsConnection *nc, const char *prefix, int from, int n)
{
    struct it_envelope env;
    char id[64];

    for (int i = from; i < from + n; i++) {
        it_envelope_init(&env);
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        env.task_id = id;
        env.error = "connection refused";
        IT_CHECK(it_publish_envelope(nc, "dlq.failed.orders", &env) == 0, "publish %s", id);
    }
    IT_CHECK(natsConnection_FlushTimeout(nc, IT_REQUEST_MS) == NATS_OK, "flush");
}

/*
 * A failure published with a plain publish while no sidecar runs waits in
 * the stream: 10,000 of them, then the sidecar starts and files exactly
 * 10,000 tasks, none twice, and the stream lets every one go.
 */
static void
test_backlog_while_stopped(void **state)
{
    const char *flags[] = {JS_FLAGS, NULL};
    struct it_env *e = it_env_start_js("js-backlog", flags);
    uint64_t msgs;
    json_t *st;
    char status[32];
    const int n = 10000;

    *state = e;
    IT_CHECK(e != NULL, "env started");
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "the sidecar stopped cleanly (exit %d)", e->dmn.exit_status);
    publish_failures(e->nc, "bl", 0, n);
    IT_CHECK(wait_stream(e->nc, (uint64_t)n, IT_WAIT_MS, &msgs),
             "the stream holds the %d failures published while no sidecar runs: %llu", n,
             (unsigned long long)msgs);
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0, "sidecar restarted");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0, "sidecar ready");
    st = wait_enqueued(e->nc, n, 60000);
    IT_CHECK(st && it_json_int(st, "lifetime_stats.enqueued") == n, "enqueued %lld of %d",
             st ? (long long)it_json_int(st, "lifetime_stats.enqueued") : -1LL, n);
    IT_CHECK(it_json_int(st, "queue_size") == n, "queue_size %lld",
             (long long)it_json_int(st, "queue_size"));
    IT_CHECK(it_json_int(st, "lifetime_stats.duplicates") == 0, "no failure counted twice");
    json_decref(st);
    IT_CHECK(wait_stream(e->nc, 0, IT_WAIT_MS, &msgs), "every failure was acked: %llu left",
             (unsigned long long)msgs);
    st = it_admin_stats(e->nc);
    IT_CHECK(st && strcmp(it_json_str(st, "ingest.mode"), "jetstream") == 0, "stats say jetstream mode");
    IT_CHECK(json_is_true(it_json_get(st, "ingest.ready")), "the source is ready");
    IT_CHECK(it_json_int(st, "ingest.acked") == n, "acked %lld of %d",
             (long long)it_json_int(st, "ingest.acked"), n);
    IT_CHECK(it_json_int(st, "ingest.naked") == 0, "nothing naked");
    json_decref(st);
    IT_CHECK(strcmp(it_task_status(e->nc, "bl-0", status, sizeof status), "pending") == 0,
             "bl-0 is %s", status);
    IT_CHECK(strcmp(it_task_status(e->nc, "bl-9999", status, sizeof status), "pending") == 0,
             "bl-9999 is %s", status);
    e->passed = true;
}

/* Clears every task (confirm, all): 0 or -1. */
static int
clear_all(natsConnection *nc)
{
    json_t *r = it_request_json(nc, "dlq.admin.clear", "{\"all\":true,\"confirm\":true}", IT_REQUEST_MS);
    int rc = r && it_json_str(r, "error.message") == NULL ? 0 : -1;

    json_decref(r);
    return rc;
}

/*
 * A full queue refuses nothing: what it cannot take is naked and waits in
 * the stream. max_size 100 under a flood of 1,000: 100 tasks, 900 in the
 * stream; each admin clear lets the next 100 in; in the end every one of
 * the 1,000 was filed exactly once and the stream is empty.
 */
static void
test_queue_full_waits_in_stream(void **state)
{
    const char *flags[] = {JS_FLAGS, "max_size=100", "ingest.nak_delay_ms=100", NULL};
    struct it_env *e = it_env_start_js("js-full", flags);
    uint64_t msgs = 0;
    int64_t enq = 0;
    json_t *st;
    int rounds = 0;

    *state = e;
    IT_CHECK(e != NULL, "env started");
    publish_failures(e->nc, "full", 0, 1000);
    st = wait_enqueued(e->nc, 100, IT_WAIT_MS);
    IT_CHECK(st && it_json_int(st, "queue_size") == 100, "the queue filled to 100: %lld",
             st ? (long long)it_json_int(st, "queue_size") : -1LL);
    json_decref(st);
    IT_CHECK(wait_stream(e->nc, 900, IT_WAIT_MS, &msgs), "the stream holds the other 900: %llu",
             (unsigned long long)msgs);
    while (enq < 1000 && rounds++ < 20) {
        IT_CHECK(clear_all(e->nc) == 0, "clear");
        st = wait_enqueued(e->nc, enq + 100, IT_WAIT_MS);
        IT_CHECK(st != NULL, "stats");
        enq = it_json_int(st, "lifetime_stats.enqueued");
        json_decref(st);
    }
    st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "lifetime_stats.enqueued") == 1000, "enqueued %lld of 1000",
             (long long)it_json_int(st, "lifetime_stats.enqueued"));
    IT_CHECK(it_json_int(st, "lifetime_stats.duplicates") == 0, "none filed twice");
    IT_CHECK(it_json_int(st, "lifetime_stats.refused_full") > 0,
             "the full queue turned failures away (naked): %lld",
             (long long)it_json_int(st, "lifetime_stats.refused_full"));
    json_decref(st);
    IT_CHECK(wait_stream(e->nc, 0, IT_WAIT_MS, &msgs), "the stream let every one go: %llu left",
             (unsigned long long)msgs);
    e->passed = true;
}

/*
 * The server restarts (file storage) while the sidecar takes in a backlog:
 * the stream keeps what it holds, the sidecar reconnects and goes on, and
 * every failure is filed exactly once.
 */
static void
test_server_restart_under_load(void **state)
{
    const char *flags[] = {JS_FLAGS, "ingest.fetch_batch=20", NULL};
    struct it_env *e = it_env_start_js("js-restart", flags);
    uint64_t msgs = 0;
    json_t *st;
    const int n = 5000;

    *state = e;
    IT_CHECK(e != NULL, "env started");
    publish_failures(e->nc, "rs", 0, n);
    it_sleep_ms(100); /* the sidecar is busy taking them in */
    IT_CHECK(it_server_restart(&e->srv) == 0, "nats-server restarted");
    for (int i = 0; i < 200 && !natsConnection_IsReconnecting(e->nc) &&
                    natsConnection_Status(e->nc) != NATS_CONN_STATUS_CONNECTED; i++)
        it_sleep_ms(50);
    st = wait_enqueued(e->nc, n, 60000);
    IT_CHECK(st && it_json_int(st, "lifetime_stats.enqueued") == n, "enqueued %lld of %d",
             st ? (long long)it_json_int(st, "lifetime_stats.enqueued") : -1LL, n);
    IT_CHECK(it_json_int(st, "queue_size") == n, "queue_size %lld",
             (long long)it_json_int(st, "queue_size"));
    IT_CHECK(it_json_int(st, "lifetime_stats.duplicates") == 0, "no failure filed twice");
    json_decref(st);
    IT_CHECK(wait_stream(e->nc, 0, 60000, &msgs), "every failure was acked: %llu left",
             (unsigned long long)msgs);
    e->passed = true;
}

/* Whether a line of the sidecar's log holds needle. */
static bool
log_has(struct it_env *e, const char *needle)
{
    FILE *f = fopen(e->dmn.log, "r");
    char line[4096];
    bool named = false;

    while (f && fgets(line, sizeof line, f))
        named = named || strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return named;
}

/* Runs the sidecar with flags against e's server and expects start-up to stop: exit 2, a log line with needle. */
static void
expect_refused(struct it_env *e, const char *const *flags, const char *needle)
{
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0, "started");
    for (int i = 0; i < 200 && it_daemon_alive(&e->dmn); i++)
        it_sleep_ms(50);
    IT_CHECK(!it_daemon_alive(&e->dmn), "the sidecar stopped at start");
    IT_CHECK(e->dmn.exit_status == 2, "exit status %d (want 2) for '%s'", e->dmn.exit_status, needle);
    IT_CHECK(log_has(e, needle), "the error says '%s'", needle);
}

/*
 * An existing stream that does not capture the failure subjects stops
 * start-up with exit code 2 and an error naming it.
 */
static void
test_stream_mismatch_stops_startup(void **state)
{
    const char *flags[] = {"retry_processor_enabled=false", NULL};
    const char *js_flags[] = {JS_FLAGS, NULL};
    struct it_env *e = it_env_start_js("js-mismatch", flags);
    jsCtx *js = NULL;
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    const char *subjects[] = {"other.>"};

    *state = e;
    IT_CHECK(e != NULL, "env started");
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "the core-mode sidecar stopped");
    IT_CHECK(natsConnection_JetStream(&js, e->nc, NULL) == NATS_OK, "js");
    jsStreamConfig_Init(&sc);
    sc.Name = STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    IT_CHECK(js_AddStream(&si, js, &sc, NULL, NULL) == NATS_OK, "stream over other.> created");
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    expect_refused(e, js_flags, "stream DLQ_FAILED also captures other.>");
    e->passed = true;
}

/*
 * An operator deletes the shared consumer while the sidecar runs: the
 * sidecar notices, sets it up again and goes on taking failures.
 */
static void
test_consumer_deleted(void **state)
{
    const char *flags[] = {JS_FLAGS, NULL};
    struct it_env *e = it_env_start_js("js-consumer-deleted", flags);
    jsCtx *js = NULL;
    json_t *st;

    *state = e;
    IT_CHECK(e != NULL, "env started");
    publish_failures(e->nc, "cd", 0, 10);
    st = wait_enqueued(e->nc, 10, IT_WAIT_MS);
    IT_CHECK(it_json_int(st, "lifetime_stats.enqueued") == 10, "the first 10 arrived");
    json_decref(st);
    IT_CHECK(natsConnection_JetStream(&js, e->nc, NULL) == NATS_OK, "js");
    IT_CHECK(js_DeleteConsumer(js, STREAM, "dlq-sidecar", NULL, NULL) == NATS_OK, "consumer deleted");
    jsCtx_Destroy(js);
    it_sleep_ms(500);
    publish_failures(e->nc, "cd", 10, 10);
    st = wait_enqueued(e->nc, 20, 30000);
    IT_CHECK(it_json_int(st, "lifetime_stats.enqueued") == 20,
             "after the consumer was deleted, %lld of 20 arrived",
             (long long)it_json_int(st, "lifetime_stats.enqueued"));
    json_decref(st);
    e->passed = true;
}


/*
 * What start-up refuses (red-team findings): a failure stream that also
 * captures the sidecar's other subjects (it would answer the admin API and
 * keep retries), a consumer filtered elsewhere, and an advisory stream of
 * the sidecar's that names an application's stream (its messages would be
 * taken as advisories and acked away). A consumer with a max_deliver is
 * mended to unlimited (naked failures must never run out of deliveries).
 * Replicas a single server cannot place (the failure stream, the
 * advisories' capture stream, the lease bucket) stop start-up with exit 2
 * naming the key, not a retry for ever.
 * A core-mode sidecar warns of a stream that captures its failure subjects.
 */
static void
test_startup_refusals(void **state)
{
    const char *core[] = {"retry_processor_enabled=false", NULL};
    const char *jsf[] = {JS_FLAGS, NULL};
    const char *adv[] = {JS_FLAGS, "advisories.streams=SHIP", "advisories.stream=JOBS", NULL};
    const char *r3[] = {JS_FLAGS, "ingest.stream_replicas=3", NULL};
    const char *r3adv[] = {JS_FLAGS, "ingest.stream_replicas=3", "advisories.streams=SHIP", NULL};
    const char *r3advcore[] = {"ingest.stream_replicas=3", "advisories.streams=SHIP", NULL};
    const char *cl3[] = {JS_FLAGS, "cluster.enabled=true", "cluster.replicas=3", "store.backend=jetstream", NULL};
    const char *kv3[] = {JS_FLAGS, "cluster.enabled=true", "store.backend=jetstream",
                         "store.jetstream.replicas=3", NULL};
    struct it_env *e = it_env_start_js("js-refusals", core);
    jsCtx *js = NULL;
    jsStreamConfig sc;
    jsConsumerConfig cc;
    jsStreamInfo *si = NULL;
    jsConsumerInfo *ci = NULL;
    const char *wide[] = {"dlq.>"}, *failed[] = {"dlq.failed.>"}, *jobs[] = {"jobs.>"};
    uint64_t msgs = 0;

    *state = e;
    IT_CHECK(e != NULL, "env started");
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "the core-mode sidecar stopped");
    IT_CHECK(natsConnection_JetStream(&js, e->nc, NULL) == NATS_OK, "js");
    /* 1. A failure stream over dlq.> */
    jsStreamConfig_Init(&sc);
    sc.Name = STREAM;
    sc.Subjects = wide;
    sc.SubjectsLen = 1;
    IT_CHECK(js_AddStream(&si, js, &sc, NULL, NULL) == NATS_OK, "stream over dlq.>");
    jsStreamInfo_Destroy(si);
    IT_CHECK(!log_has(e, "captures the failure subjects while ingest.mode is core"),
             "no warning from the core-mode run before the stream existed");
    expect_refused(e, jsf, "also captures dlq.>");
    IT_CHECK(js_DeleteStream(js, STREAM, NULL, NULL) == NATS_OK, "stream deleted");
    /* 2. The right stream, a consumer filtered on one service only */
    sc.Subjects = failed;
    IT_CHECK(js_AddStream(&si, js, &sc, NULL, NULL) == NATS_OK, "stream over dlq.failed.>");
    jsStreamInfo_Destroy(si);
    /*
     * ... a core-mode sidecar starts beside it, warning that the leftover
     * stream takes the failures (a stream over all of dlq.> would answer
     * the health request that checks readiness: that one is refused above)
     */
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, core) == 0, "core mode starts");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0, "core mode ready");
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "core mode stopped");
    IT_CHECK(log_has(e, "captures the failure subjects while ingest.mode is core") &&
                 log_has(e, "streams=DLQ_FAILED"),
             "core mode warned of the stream that captures the failure subjects");
    jsConsumerConfig_Init(&cc);
    cc.Durable = "dlq-sidecar";
    cc.AckPolicy = js_AckExplicit;
    cc.FilterSubject = "dlq.failed.billing";
    IT_CHECK(js_AddConsumer(&ci, js, STREAM, &cc, NULL, NULL) == NATS_OK, "narrow consumer");
    jsConsumerInfo_Destroy(ci);
    expect_refused(e, jsf, "filtered on 'dlq.failed.>'");
    IT_CHECK(js_DeleteConsumer(js, STREAM, "dlq-sidecar", NULL, NULL) == NATS_OK, "consumer deleted");
    /* 3. A consumer with max_deliver 1: mended to unlimited */
    cc.FilterSubject = "dlq.failed.>";
    cc.MaxDeliver = 1;
    IT_CHECK(js_AddConsumer(&ci, js, STREAM, &cc, NULL, NULL) == NATS_OK, "max_deliver 1 consumer");
    jsConsumerInfo_Destroy(ci);
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, jsf) == 0, "started");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0, "ready with the consumer mended");
    IT_CHECK(js_GetConsumerInfo(&ci, js, STREAM, "dlq-sidecar", NULL, NULL) == NATS_OK, "info");
    IT_CHECK(ci->Config->MaxDeliver <= 0, "max_deliver is %lld, not unlimited",
             (long long)ci->Config->MaxDeliver);
    jsConsumerInfo_Destroy(ci);
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "stopped");
    /* 4. advisories.stream naming an application's work-queue stream: refused, its jobs untouched */
    sc.Name = "JOBS";
    sc.Subjects = jobs;
    sc.Retention = js_WorkQueuePolicy;
    IT_CHECK(js_AddStream(&si, js, &sc, NULL, NULL) == NATS_OK, "JOBS");
    jsStreamInfo_Destroy(si);
    for (int i = 0; i < 5; i++)
        IT_CHECK(natsConnection_PublishString(e->nc, "jobs.a", "job") == NATS_OK, "job");
    IT_CHECK(natsConnection_FlushTimeout(e->nc, IT_REQUEST_MS) == NATS_OK, "flush");
    expect_refused(e, adv, "also captures jobs.>");
    IT_CHECK(js_GetStreamInfo(&si, js, "JOBS", NULL, NULL) == NATS_OK, "JOBS info");
    msgs = si->State.Msgs;
    IT_CHECK(si->Config->SubjectsLen == 1, "JOBS's subjects were changed: %d",
             si->Config->SubjectsLen);
    jsStreamInfo_Destroy(si);
    IT_CHECK(msgs == 5, "JOBS holds %llu of its 5 jobs", (unsigned long long)msgs);
    /* 5. 3 replicas on this single server: a configuration to fix (exit 2 naming the key), no stream made */
    IT_CHECK(js_DeleteStream(js, STREAM, NULL, NULL) == NATS_OK, "failure stream deleted");
    expect_refused(e, r3, "ingest.stream_replicas: 3 replicas for the stream DLQ_FAILED");
    IT_CHECK(js_GetStreamInfo(&si, js, STREAM, NULL, NULL) != NATS_OK, "no failure stream made");
    /*
     * ... also with advisories on: their capture stream takes the same
     * replicas and is opened first (before the ingest, the last thing a start
     * opens), in either ingest mode
     */
    expect_refused(e, r3adv, "ingest.stream_replicas: 3 replicas for the stream DLQ_ADVISORIES");
    expect_refused(e, r3advcore, "ingest.stream_replicas: 3 replicas for the stream DLQ_ADVISORIES");
    IT_CHECK(js_GetStreamInfo(&si, js, "DLQ_ADVISORIES", NULL, NULL) != NATS_OK &&
                 js_GetStreamInfo(&si, js, STREAM, NULL, NULL) != NATS_OK,
             "no advisory or failure stream made");
    /* 6. the same for the cluster's lease bucket */
    expect_refused(e, cl3, "cluster.replicas: 3 replicas for the bucket DLQ_CLUSTER");
    /* 7. ... and for a cluster member's tasks bucket (a single sidecar degrades instead) */
    js_DeleteStream(js, "KV_DLQ_TASKS", NULL, NULL); /* case 6's member made it (replicas 1) */
    expect_refused(e, kv3, "store.jetstream.replicas: 3 replicas for the bucket DLQ_TASKS");
    jsCtx_Destroy(js);
    e->passed = true;
}

/*
 * The failure stream is deleted and made anew while the sidecar runs
 * (sequences start at 1 again): a new failure of a task the sidecar holds
 * is a new failure, not taken for a redelivery of the old stream's message.
 */
static void
test_stream_recreated(void **state)
{
    const char *flags[] = {JS_FLAGS, NULL};
    struct it_env *e = it_env_start_js("js-recreated", flags);
    jsCtx *js = NULL;
    struct it_envelope env;
    json_t *st = NULL, *t;
    int64_t deadline;
    uint64_t msgs = 1;

    *state = e;
    IT_CHECK(e != NULL, "env started");
    publish_failures(e->nc, "rc", 0, 5);
    st = wait_enqueued(e->nc, 5, IT_WAIT_MS);
    IT_CHECK(it_json_int(st, "lifetime_stats.enqueued") == 5, "the first 5 arrived");
    json_decref(st);
    IT_CHECK(natsConnection_JetStream(&js, e->nc, NULL) == NATS_OK, "js");
    IT_CHECK(js_DeleteStream(js, STREAM, NULL, NULL) == NATS_OK, "stream deleted");
    jsCtx_Destroy(js);
    /* The sidecar notices (its pulls fail) and makes the stream again. */
    deadline = sc_now_mono_ms() + 30000;
    while (sc_now_mono_ms() < deadline && stream_counts(e->nc, &msgs, NULL) != 0)
        it_sleep_ms(100);
    IT_CHECK(stream_counts(e->nc, &msgs, NULL) == 0, "the stream was made again");
    it_envelope_init(&env);
    env.task_id = "rc-4";
    env.error = "disk full: a new failure";
    IT_CHECK(it_publish_envelope(e->nc, "dlq.failed.orders", &env) == 0, "publish");
    deadline = sc_now_mono_ms() + IT_WAIT_MS;
    for (st = NULL; sc_now_mono_ms() < deadline; it_sleep_ms(100)) {
        json_decref(st);
        st = it_admin_stats(e->nc);
        if (it_json_int(st, "lifetime_stats.duplicates") + it_json_int(st, "lifetime_stats.redelivered") >= 1)
            break;
    }
    IT_CHECK(it_json_int(st, "lifetime_stats.duplicates") == 1 &&
                 it_json_int(st, "lifetime_stats.redelivered") == 0,
             "the new failure of rc-4: duplicates %lld, redelivered %lld",
             (long long)it_json_int(st, "lifetime_stats.duplicates"),
             (long long)it_json_int(st, "lifetime_stats.redelivered"));
    json_decref(st);
    t = it_admin_get(e->nc, "rc-4");
    IT_CHECK(t && strcmp(it_json_str(t, "error"), "disk full: a new failure") == 0, "rc-4's error: %s",
             t ? it_json_str(t, "error") : "(none)");
    json_decref(t);
    e->passed = true;
}

static struct it_daemon js_peer; /* the second sidecar of test_duplicate_on_consumer */

static int
js_peer_teardown(void **state)
{
    if (js_peer.pid > 0)
        it_daemon_stop(&js_peer);
    memset(&js_peer, 0, sizeof js_peer);
    return it_teardown(state);
}

/* only_listed() is the id of the one element of the array at key of j (NULL unless exactly one). */
static const char *
only_listed(const json_t *j, const char *key)
{
    const json_t *a = json_object_get(j, key);
    return json_is_array(a) && json_array_size(a) == 1 ? it_json_str(json_array_get(a, 0), "id")
                                                        : NULL;
}

/*
 * each_names_other() asks dlq.admin.<verb> of both sidecars and tells
 * whether each reply lists exactly one duplicate under key, in jetstream
 * mode, the two naming different ids (each the other).
 */
static bool
each_names_other(natsConnection *nc, const char *verb, const char *key)
{
    char subj[64];
    bool ok;

    snprintf(subj, sizeof subj, "dlq.admin.%s", verb);
    json_t *all = it_request_all(nc, subj, NULL, 2, IT_REQUEST_MS);
    const json_t *a = json_array_get(all, 0), *b = json_array_get(all, 1);
    const char *x = only_listed(a, key), *y = only_listed(b, key);
    ok = json_array_size(all) == 2 && x && y && strcmp(x, y) != 0;
    for (size_t i = 0; ok && i < 2; i++) {
        const char *mode = it_json_str(json_array_get(json_object_get(json_array_get(all, i), key), 0),
                                       "ingest_mode");
        ok = mode && strcmp(mode, "jetstream") == 0;
    }
    json_decref(all);
    return ok;
}

/*
 * Two sidecars on the same JetStream consumer (one prefix, ingest.mode
 * jetstream): both report the other in health (degraded) and stats; when
 * one stops the other is healthy again.
 */
static void
test_duplicate_on_consumer(void **state)
{
    const char *flags[] = {JS_FLAGS, NULL};
    struct it_env *e = it_env_start_js("js-dup", flags);
    char dir[IT_PATH_MAX + 8];

    *state = e;
    IT_CHECK(e != NULL, "env started");
    snprintf(dir, sizeof dir, "%s/b", e->dir);
    IT_CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    memset(&js_peer, 0, sizeof js_peer);
    IT_CHECK(it_daemon_start(&js_peer, dir, e->srv.url, flags) == 0, "start the second sidecar");
    int64_t deadline = sc_now_mono_ms() + IT_WAIT_MS;
    bool seen = false;
    while (!seen && sc_now_mono_ms() < deadline) {
        IT_CHECK(it_daemon_alive(&js_peer), "the second sidecar exited");
        seen = each_names_other(e->nc, "health", "duplicates");
        if (!seen)
            it_sleep_ms(100);
    }
    IT_CHECK(seen, "both sidecars on the consumer list the other in health");
    IT_CHECK(each_names_other(e->nc, "stats", "duplicate_sidecars"),
             "both sidecars on the consumer list the other in stats");
    json_t *all = it_request_all(e->nc, "dlq.admin.health", NULL, 2, IT_REQUEST_MS);
    for (size_t i = 0; i < json_array_size(all); i++)
        IT_CHECK(strcmp(it_json_str(json_array_get(all, i), "status"), "degraded") == 0,
                 "health with a duplicate is degraded");
    json_decref(all);

    IT_CHECK(it_daemon_stop(&js_peer) == 0, "the second sidecar's exit status %d", js_peer.exit_status);
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0,
             "the sidecar left is healthy again once the other stopped");
    json_t *h = it_request_json(e->nc, "dlq.admin.health", NULL, IT_REQUEST_MS);
    IT_CHECK(h && json_is_array(json_object_get(h, "duplicates")) &&
                 json_array_size(json_object_get(h, "duplicates")) == 0,
             "health lists no duplicate");
    json_decref(h);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_backlog_while_stopped, it_teardown),
        cmocka_unit_test_teardown(test_queue_full_waits_in_stream, it_teardown),
        cmocka_unit_test_teardown(test_server_restart_under_load, it_teardown),
        cmocka_unit_test_teardown(test_stream_mismatch_stops_startup, it_teardown),
        cmocka_unit_test_teardown(test_consumer_deleted, it_teardown),
        cmocka_unit_test_teardown(test_startup_refusals, it_teardown),
        cmocka_unit_test_teardown(test_stream_recreated, it_teardown),
        cmocka_unit_test_teardown(test_duplicate_on_consumer, js_peer_teardown),
    };

    if (getenv("DLQ_IT_FILTER")) /* e.g. DLQ_IT_FILTER='test_backlog*' to run one */
        cmocka_set_test_filter(getenv("DLQ_IT_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
