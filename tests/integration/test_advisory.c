/* test_advisory.c - integration: JetStream advisories as a second source of failures (advisories.streams, DESIGN section 16) against a real nats-server with JetStream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/*
 * The server runs with two users: "sc" (the sidecar) may publish anywhere
 * but to the API that reads messages of the stream SECRET, "op" (the tests:
 * services, workers, the operator) anywhere.
 */
static const char NATS_CONF[] =
    "authorization {\n"
    "  users = [\n"
    "    {user: sc, password: sc, permissions: {\n"
    "      publish: {allow: [\">\"], deny: [\"$JS.API.STREAM.MSG.GET.SECRET\",\n"
    "                                      \"$JS.API.DIRECT.GET.SECRET\", \"$JS.API.DIRECT.GET.SECRET.>\"]},\n"
    "      subscribe: {allow: [\">\"]}}}\n"
    "    {user: op, password: op}\n"
    "  ]\n"
    "}\n";

/* The original message of the tests: any bytes (a NUL, a byte that is not UTF-8), and a header. */
static const char BODY[] = "order\x00\xff{\"sku\":42}";
#define BODY_LEN (sizeof(BODY) - 1)

#define MAXDEL_SUBJ "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."

/* Starts the server (JetStream, NATS_CONF) and the sidecar as "sc" with flags extra; e->nc is "op". */
static struct it_env *
adv_env(const char *name, const char *const *extra)
{
    struct it_env *e = calloc(1, sizeof *e);
    const char *flags[32];
    size_t n = 0;
    char url[128];
    FILE *f;

    assert_non_null(e);
    e->name = name;
    e->dmn.exit_status = -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(e->dir, sizeof e->dir, "%s/dlq-it-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    assert_non_null(mkdtemp(e->dir));
    fprintf(stderr, "[%s] logs in %s\n", name, e->dir);
    if (strlen(e->dir) + 11 > sizeof e->srv.conf)
        fail_msg("temp dir too long: %s", e->dir);
    memcpy(e->srv.conf, e->dir, strlen(e->dir));
    memcpy(e->srv.conf + strlen(e->dir), "/nats.conf", 11);
    f = fopen(e->srv.conf, "w");
    assert_non_null(f);
    fputs(NATS_CONF, f);
    fclose(f);
    if (it_server_start(&e->srv, e->dir, true) != 0)
        return e;
    snprintf(url, sizeof url, "nats://op:op@127.0.0.1:%d", e->srv.port);
    e->nc = it_connect(url, "it-op");
    flags[n++] = "nats.user=sc";
    flags[n++] = "nats.password=sc";
    for (size_t i = 0; extra[i] && n < 31; i++)
        flags[n++] = extra[i];
    flags[n] = NULL;
    if (e->nc && it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0)
        it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS);
    return e;
}

static jsCtx *
js_of(natsConnection *nc)
{
    jsCtx *js = NULL;

    IT_CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK, "JetStream context");
    return js;
}

/* The sidecar's flags of the cases whose retries go back into ORDERS as stored outcomes (PubAcks). */
static const char *const ORDERS_STORED[] = {"advisories.streams=ORDERS", "retry.allowed_subjects=ORDERS.>",
                                            "retry.stored_subjects=ORDERS.>", NULL};

/*
 * adv_start() is adv_env() for a test: the env in *state (for the
 * teardown), the sidecar ready, a JetStream context of "op" in *js (the
 * caller destroys it) and the stream `stream` on subjects. Fails the test
 * otherwise.
 */
static struct it_env *
adv_start(void **state, const char *name, const char *const *flags, const char *stream,
          const char *subjects, jsCtx **js)
{
    struct it_env *e = adv_env(name, flags);

    *state = e;
    IT_CHECK(e->nc && it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0, "env started");
    *js = js_of(e->nc);
    it_js_add_stream(*js, stream, subjects);
    return e;
}

/* Polls dlq.admin.get until the task exists (any status) or timeout; returns the last reply. */
static json_t *
wait_task(natsConnection *nc, const char *id, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    json_t *t = NULL;

    while (sc_now_mono_ms() < deadline) {
        json_decref(t);
        t = it_admin_get(nc, id);
        if (t && it_json_str(t, "status"))
            return t;
        it_sleep_ms(50);
    }
    {
        char *dump = it_json_dump(t);
        fprintf(stderr, "task %s: %s\n", id, dump);
        free(dump);
    }
    return t;
}

/* filed() waits for task id to be filed from an advisory and returns it (the caller json_decref()s it). */
static json_t *
filed(natsConnection *nc, const char *id)
{
    json_t *t = wait_task(nc, id, IT_WAIT_MS);

    IT_CHECK(t && it_json_str(t, "status"), "task %s filed from the advisory", id);
    return t;
}

/*
 * retried_stored() asks for a retry of task id now and waits until it is
 * completed (its retry subject captured by a stream: the PubAck is its
 * outcome). Returns the task (the caller json_decref()s it).
 */
static json_t *
retried_stored(natsConnection *nc, const char *id)
{
    bool ok;
    json_t *t = it_admin_task(nc, "retry", id);

    json_decref(t);
    t = it_wait_task_status(nc, id, "completed", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "%s completed (stored outcome)", id);
    return t;
}

/* Polls dlq.admin.stats until the lifetime counter at path reaches want; returns its last value. */
static int64_t
wait_stat(natsConnection *nc, const char *path, int64_t want, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms, v = INT64_MIN;

    while (sc_now_mono_ms() < deadline) {
        json_t *st = it_admin_stats(nc);
        v = it_json_int(st, path);
        json_decref(st);
        if (v >= want)
            return v;
        it_sleep_ms(50);
    }
    return v;
}

/* The header name of header pair i of a task's "headers" ([[name, value], ...]); NULL past the end. */
static const char *
task_header(const json_t *t, const char *name)
{
    const json_t *h = it_json_get(t, "headers");
    size_t i;
    json_t *pair;

    json_array_foreach(h, i, pair) {
        const char *n = json_string_value(json_array_get(pair, 0));
        if (n && strcmp(n, name) == 0)
            return json_string_value(json_array_get(pair, 1));
    }
    return NULL;
}

/* Reads message seq of stream (as op) into *out (caller destroys). */
static void
get_msg(jsCtx *js, const char *stream, uint64_t seq, natsMsg **out)
{
    jsErrCode je = 0;
    natsStatus s = js_GetMsg(out, js, stream, seq, NULL, &je);

    IT_CHECK(s == NATS_OK, "message %llu of %s: %s (%d)", (unsigned long long)seq, stream,
             natsStatus_GetText(s), (int)je);
}

/*
 * A real consumer on ORDERS (MaxDeliver 3) that always naks: its
 * MAX_DELIVERIES advisory becomes task ORDERS:1 with the original's bytes
 * and headers; the retry goes back into ORDERS (its outcome stored: the
 * PubAck), where a new consumer reads it, byte-identical with the
 * original's header and the sidecar's; the task is completed.
 */
static void
test_max_deliveries_round_trip(void **state)
{
    jsCtx *js;
    struct it_env *e = adv_start(state, "adv-maxdel", ORDERS_STORED, "ORDERS", "ORDERS.>", &js);
    natsSubscription *worker;
    natsMsg *m = NULL;
    json_t *t;

    worker = it_js_add_worker(js, "ORDERS", "ORDERS.>", "worker", 3);
    it_js_publish(js, BODY, BODY_LEN, "ORDERS.new", "t-1", NULL);
    IT_CHECK(it_js_fail_worker(e->nc, worker, 3, NULL) == 3, "the worker saw 3 deliveries");
    t = filed(e->nc, "ORDERS:1");
    IT_CHECK(strcmp(it_json_str(t, "error"), "max deliveries exceeded (3)") == 0, "error %s",
             it_json_str(t, "error"));
    IT_CHECK(strcmp(it_json_str(t, "error_type"), "jetstream.max_deliveries") == 0, "error_type");
    IT_CHECK(it_json_str(t, "error_category") != NULL, "a category from the classifier");
    IT_CHECK(strcmp(it_json_str(t, "subject"), "ORDERS.new") == 0, "subject");
    IT_CHECK(strcmp(it_json_str(t, "retry_subject"), "ORDERS.new") == 0, "retry subject");
    IT_CHECK(it_json_int(t, "task_size") == (int64_t)BODY_LEN, "task_size %lld",
             (long long)it_json_int(t, "task_size"));
    IT_CHECK(json_is_true(it_json_get(t, "payload_raw")), "payload_raw");
    IT_CHECK(it_json_str(t, "task_base64") &&
                 strcmp(it_json_str(t, "task_base64"), "b3JkZXIA/3sic2t1Ijo0Mn0=") == 0,
             "the original's bytes in base64: %s", it_json_str(t, "task_base64"));
    IT_CHECK(json_is_false(it_json_get(t, "payload_missing")), "payload_missing false");
    IT_CHECK(task_header(t, "X-Trace") && strcmp(task_header(t, "X-Trace"), "t-1") == 0,
             "the original's header is kept");
    json_decref(t);
    /* The retry (automatic, or the operator's now) goes back into ORDERS; the PubAck completes it. */
    t = retried_stored(e->nc, "ORDERS:1");
    IT_CHECK(it_json_int(t, "retry_count") == 0, "no failed attempt");
    json_decref(t);
    /* A new consumer of ORDERS sees the original (seq 1) and the retry (seq 2). */
    get_msg(js, "ORDERS", 2, &m);
    IT_CHECK(strcmp(natsMsg_GetSubject(m), "ORDERS.new") == 0, "the retry went to ORDERS.new");
    IT_CHECK(natsMsg_GetDataLength(m) == (int)BODY_LEN &&
                 memcmp(natsMsg_GetData(m), BODY, BODY_LEN) == 0,
             "the retry's payload is byte-identical to the original (%d bytes)",
             natsMsg_GetDataLength(m));
    {
        const char *v = NULL;
        IT_CHECK(natsMsgHeader_Get(m, "X-Trace", &v) == NATS_OK && strcmp(v, "t-1") == 0,
                 "the original's header is republished");
        IT_CHECK(natsMsgHeader_Get(m, "Dlq-Task-Id", &v) == NATS_OK && strcmp(v, "ORDERS:1") == 0,
                 "Dlq-Task-Id");
        IT_CHECK(natsMsgHeader_Get(m, "Nats-Msg-Id", &v) == NATS_OK && v && *v, "Nats-Msg-Id");
    }
    natsMsg_Destroy(m);
    {
        natsSubscription *fresh = it_js_add_worker(js, "ORDERS", "ORDERS.>", "fresh", -1);
        natsMsgList list = {0};
        IT_CHECK(natsSubscription_Fetch(&list, fresh, 2, 5000, NULL) == NATS_OK && list.Count == 2,
                 "a new consumer reads the original and the retry");
        IT_CHECK(natsMsg_GetDataLength(list.Msgs[1]) == (int)BODY_LEN &&
                     memcmp(natsMsg_GetData(list.Msgs[1]), BODY, BODY_LEN) == 0,
                 "the new consumer's copy of the retry is the original's bytes");
        natsMsgList_Destroy(&list);
        natsSubscription_Destroy(fresh);
    }
    IT_CHECK(wait_stat(e->nc, "lifetime_stats.advisories_filed", 1, IT_WAIT_MS) == 1, "filed 1");
    natsSubscription_Destroy(worker);
    jsCtx_Destroy(js);
    e->passed = true;
}

/*
 * An original message whose header name holds a bare LF (the server passes
 * header blocks through; nats.c keeps the name as it is): its retry must
 * not carry that name, which a worker reading headers line by line (Go's
 * textproto) would take as a header of the sender's choice, here a second
 * Dlq-Task-Id. The well-formed header is kept. Fails when the pair-by-pair
 * fallback of sc_conn_publish() writes such a name.
 */
static void
test_header_name_injection(void **state)
{
    jsCtx *js;
    struct it_env *e = adv_start(state, "adv-hdrname", ORDERS_STORED, "ORDERS", "ORDERS.>", &js);
    natsSubscription *worker;
    natsMsg *m = NULL, *orig = NULL;
    jsPubAck *pa = NULL;
    jsErrCode je = 0;
    const char **keys = NULL;
    int nkeys = 0;

    worker = it_js_add_worker(js, "ORDERS", "ORDERS.>", "worker", 3);
    IT_CHECK(natsMsg_Create(&orig, "ORDERS.new", NULL, BODY, (int)BODY_LEN) == NATS_OK, "message");
    natsMsgHeader_Set(orig, "X-Trace", "t-1");
    natsMsgHeader_Set(orig, "X-Evil\nDlq-Task-Id", "forged");
    IT_CHECK(js_PublishMsg(&pa, js, orig, NULL, &je) == NATS_OK, "publish (%d)", (int)je);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(orig);
    IT_CHECK(it_js_fail_worker(e->nc, worker, 3, NULL) == 3, "the worker saw 3 deliveries");
    json_decref(filed(e->nc, "ORDERS:1"));
    json_decref(retried_stored(e->nc, "ORDERS:1"));
    get_msg(js, "ORDERS", 2, &m);
    IT_CHECK(natsMsgHeader_Keys(m, &keys, &nkeys) == NATS_OK, "the retry's header names");
    for (int i = 0; i < nkeys; i++)
        IT_CHECK(!strpbrk(keys[i], "\r\n\x01\x7f"), "retry header name %d holds a control byte", i);
    {
        const char *v = NULL;
        IT_CHECK(natsMsgHeader_Get(m, "X-Trace", &v) == NATS_OK && strcmp(v, "t-1") == 0,
                 "the well-formed original header is republished");
        IT_CHECK(natsMsgHeader_Get(m, "Dlq-Task-Id", &v) == NATS_OK && strcmp(v, "ORDERS:1") == 0,
                 "Dlq-Task-Id");
    }
    free((void *)keys);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(worker);
    jsCtx_Destroy(js);
    e->passed = true;
}

/* +TERM with a reason: the task's error is the reason, its id the original's Nats-Msg-Id. */
static void
test_terminated(void **state)
{
    static const char *const flags[] = {"advisories.streams=ORDERS",
                                        "retry.allowed_subjects=ORDERS.>", NULL};
    jsCtx *js;
    struct it_env *e = adv_start(state, "adv-term", flags, "ORDERS", "ORDERS.>", &js);
    natsSubscription *worker;
    json_t *t;

    worker = it_js_add_worker(js, "ORDERS", "ORDERS.>", "worker", 5);
    it_js_publish(js, BODY, BODY_LEN, "ORDERS.paid", "t-2", "order-77");
    IT_CHECK(it_js_fail_worker(e->nc, worker, 5, "bad order: no sku") == 1, "one delivery, terminated");
    t = wait_task(e->nc, "order-77", IT_WAIT_MS);
    IT_CHECK(t && it_json_str(t, "status"), "task order-77 (the original's Nats-Msg-Id)");
    IT_CHECK(strcmp(it_json_str(t, "error"), "bad order: no sku") == 0, "error %s",
             it_json_str(t, "error"));
    IT_CHECK(strcmp(it_json_str(t, "error_type"), "jetstream.terminated") == 0, "error_type");
    IT_CHECK(strcmp(it_json_str(t, "retry_subject"), "ORDERS.paid") == 0, "retry subject");
    IT_CHECK(task_header(t, "Nats-Msg-Id") == NULL, "Nats-Msg-Id is not kept (retries set their own)");
    json_decref(t);
    natsSubscription_Destroy(worker);
    jsCtx_Destroy(js);
    e->passed = true;
}

/*
 * The advisory arrives while the sidecar is stopped (the capture stream
 * keeps it) and the original is deleted before the sidecar starts again:
 * a task with payload_missing, parked, its event and its counter.
 */
static void
test_payload_missing(void **state)
{
    static const char *const flags[] = {"advisories.streams=ORDERS",
                                        "retry.allowed_subjects=ORDERS.>", NULL};
    const char *dflags[8] = {"nats.user=sc", "nats.password=sc", flags[0], flags[1], NULL};
    jsCtx *js;
    struct it_env *e = adv_start(state, "adv-missing", flags, "ORDERS", "ORDERS.>", &js);
    natsSubscription *worker;
    struct it_recorder *ev;
    jsStreamInfo *si = NULL;
    json_t *t;

    worker = it_js_add_worker(js, "ORDERS", "ORDERS.>", "worker", 2);
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "the sidecar stopped cleanly");
    it_js_publish(js, BODY, BODY_LEN, "ORDERS.new", "t-3", NULL);
    IT_CHECK(it_js_fail_worker(e->nc, worker, 2, NULL) == 2, "the worker saw 2 deliveries");
    for (int i = 0; i < 100; i++) {
        jsStreamInfo_Destroy(si);
        si = NULL;
        if (js_GetStreamInfo(&si, js, "DLQ_ADVISORIES", NULL, NULL) == NATS_OK &&
            si->State.Msgs >= 1)
            break;
        it_sleep_ms(50);
    }
    IT_CHECK(si && si->State.Msgs == 1, "the capture stream holds the advisory while no sidecar runs");
    jsStreamInfo_Destroy(si);
    IT_CHECK(js_DeleteMsg(js, "ORDERS", 1, NULL, NULL) == NATS_OK, "original deleted");
    ev = it_env_recorder(e, e->nc, "dlq.events.payload_missing", NULL, 16, true);
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, dflags) == 0, "sidecar restarted");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0, "sidecar ready");
    t = wait_task(e->nc, "ORDERS:1", IT_WAIT_MS);
    IT_CHECK(t && it_json_str(t, "status"), "task ORDERS:1 filed without its original");
    IT_CHECK(json_is_true(it_json_get(t, "payload_missing")), "payload_missing");
    IT_CHECK(json_is_true(it_json_get(t, "parked")), "parked");
    IT_CHECK(it_json_str(t, "park_reason") && strstr(it_json_str(t, "park_reason"), "payload_missing"),
             "park_reason %s", it_json_str(t, "park_reason"));
    IT_CHECK(it_json_int(t, "task_size") == 0, "no payload");
    json_decref(t);
    IT_CHECK(it_rec_wait(ev, 1, IT_WAIT_MS), "a payload_missing event");
    IT_CHECK(wait_stat(e->nc, "lifetime_stats.payload_missing", 1, IT_WAIT_MS) == 1,
             "payload_missing counted");
    for (int i = 0; i < 100; i++) {
        si = NULL;
        if (js_GetStreamInfo(&si, js, "DLQ_ADVISORIES", NULL, NULL) == NATS_OK &&
            si->State.Msgs == 0)
            break;
        jsStreamInfo_Destroy(si);
        si = NULL;
        it_sleep_ms(50);
    }
    IT_CHECK(si != NULL, "the advisory was acked (the capture stream let it go)");
    jsStreamInfo_Destroy(si);
    natsSubscription_Destroy(worker);
    jsCtx_Destroy(js);
    e->passed = true;
}

/*
 * Issue 12 item 5: a retry subject captured by a stream (outcome stored);
 * the worker's consumer gives up on the retry; its MAX_DELIVERIES advisory
 * brings the same task id back as a new failure (a new episode).
 */
static void
test_worker_gives_up_on_retry(void **state)
{
    static const char *const flags[] = {"advisories.streams=WORK", "retry.allowed_subjects=work.>",
                                        "retry.stored_subjects=work.>", NULL};
    jsCtx *js;
    struct it_env *e = adv_start(state, "adv-loop", flags, "WORK", "work.>", &js);
    struct it_envelope env;
    natsSubscription *worker;
    json_t *t = NULL;
    bool ok;

    worker = it_js_add_worker(js, "WORK", "work.>", "workers", 2);
    it_envelope_init(&env);
    env.task_id = "job-1";
    env.error = "connection refused";
    env.error_category = "transient";
    env.retry_subject = "work.jobs";
    IT_CHECK(it_publish_envelope(e->nc, "dlq.failed.svc", &env) == 0, "failure published");
    t = it_wait_task_status(e->nc, "job-1", "completed", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "the retry was stored in WORK: completed");
    IT_CHECK(it_json_int(t, "episode") == 1, "episode 1");
    json_decref(t);
    t = NULL;
    IT_CHECK(it_js_fail_worker(e->nc, worker, 2, NULL) == 2, "the worker saw the retry twice");
    for (int i = 0; i < 400; i++) {
        json_decref(t);
        t = it_admin_get(e->nc, "job-1");
        if (it_json_int(t, "episode") == 2)
            break;
        it_sleep_ms(50);
    }
    IT_CHECK(it_json_int(t, "episode") == 2, "job-1 came back as a new failure (episode %lld)",
             (long long)it_json_int(t, "episode"));
    IT_CHECK(strcmp(it_json_str(t, "error_type"), "jetstream.max_deliveries") == 0, "error_type %s",
             it_json_str(t, "error_type"));
    IT_CHECK(strcmp(it_json_str(t, "error"), "max deliveries exceeded (2)") == 0, "error %s",
             it_json_str(t, "error"));
    IT_CHECK(strcmp(it_json_str(t, "retry_subject"), "work.jobs") == 0, "retry subject");
    json_decref(t);
    IT_CHECK(wait_stat(e->nc, "lifetime_stats.enqueued", 2, IT_WAIT_MS) == 2, "two episodes enqueued");
    natsSubscription_Destroy(worker);
    jsCtx_Destroy(js);
    e->passed = true;
}

/*
 * Hostile advisories: forged JSON of every kind, a sequence that does not
 * exist, a stream the sidecar may not read: each counted and logged, the
 * forged ones acked with nothing filed, the others filed payload_missing;
 * the process keeps running and answers.
 */
static void
test_hostile_advisories(void **state)
{
    static const char *const flags[] = {"advisories.streams=ORDERS,SECRET",
                                        "retry.allowed_subjects=ORDERS.>", NULL};
    static const char *const forged[] = {
        "not json at all",
        "[1,2]",
        "{\"type\":\"io.nats.jetstream.advisory.v1.max_deliver\",\"stream\":\"OTHER\",\"stream_seq\":1}",
        "{\"type\":\"io.nats.jetstream.advisory.v1.max_deliver\",\"stream\":\"ORDERS\",\"stream_seq\":-4}",
        "{\"type\":\"io.nats.jetstream.advisory.v1.terminated\",\"stream\":\"ORDERS\",\"stream_seq\":1}",
        ("{\"type\":\"io.nats.jetstream.advisory.v1.max_deliver\",\"stream\":\"ORDERS\","
         "\"stream_seq\":1,\"stream_seq\":2}"),
        "",
    };
    const int nforged = (int)(sizeof forged / sizeof forged[0]);
    jsCtx *js;
    struct it_env *e = adv_start(state, "adv-hostile", flags, "ORDERS", "ORDERS.>", &js);
    natsSubscription *worker;
    static char big[70000];
    json_t *t;

    it_js_add_stream(js, "SECRET", "secret.>");
    for (int i = 0; i < nforged; i++)
        IT_CHECK(natsConnection_PublishString(e->nc, MAXDEL_SUBJ "ORDERS.forged", forged[i]) ==
                     NATS_OK, "forged advisory %d", i);
    memset(big, '[', sizeof big);
    IT_CHECK(natsConnection_Publish(e->nc, MAXDEL_SUBJ "ORDERS.forged", big, (int)sizeof big) ==
                 NATS_OK, "a 70,000-byte advisory");
    /* A sequence that does not exist. */
    IT_CHECK(natsConnection_PublishString(
                 e->nc, MAXDEL_SUBJ "ORDERS.ghost",
                 "{\"type\":\"io.nats.jetstream.advisory.v1.max_deliver\",\"stream\":\"ORDERS\","
                 "\"stream_seq\":999999,\"deliveries\":3}") == NATS_OK,
             "advisory of a missing sequence");
    natsConnection_Flush(e->nc);
    IT_CHECK(wait_stat(e->nc, "lifetime_stats.advisories_invalid", nforged + 1, IT_WAIT_MS) ==
                 nforged + 1,
             "every forged advisory refused and counted");
    /* 5,000 more forged ones: memory stays flat (measured after a first batch warmed it up). */
    {
        long before = it_pid_rss_kb(e->dmn.pid), after;
        for (int i = 0; i < 5000; i++)
            natsConnection_PublishString(e->nc, MAXDEL_SUBJ "ORDERS.forged", forged[i % nforged]);
        natsConnection_Flush(e->nc);
        IT_CHECK(wait_stat(e->nc, "lifetime_stats.advisories_invalid", nforged + 1 + 5000,
                           3 * IT_WAIT_MS) == nforged + 1 + 5000,
                 "5,000 more forged advisories counted");
        after = it_pid_rss_kb(e->dmn.pid);
        fprintf(stderr, "[adv-hostile] RSS %ld kB before 5,000 forged advisories, %ld kB after\n",
                before, after);
        IT_CHECK(before > 0 && after > 0, "cannot read the daemon's RSS");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
        /* A sanitized daemon keeps freed memory in quarantine: RSS says nothing there. */
        fprintf(stderr, "[adv-hostile] sanitizer build: RSS bound not checked\n");
#else
        IT_CHECK(after - before < 8 * 1024, "memory flat: %ld kB -> %ld kB", before, after);
#endif
    }
    t = wait_task(e->nc, "ORDERS:999999", IT_WAIT_MS);
    IT_CHECK(t && json_is_true(it_json_get(t, "payload_missing")), "ORDERS:999999 payload_missing");
    json_decref(t);
    /* A stream the sidecar may not read: a real consumer gives up on its message. */
    worker = it_js_add_worker(js, "SECRET", "secret.>", "worker", 2);
    it_js_publish(js, BODY, BODY_LEN, "secret.x", "t-5", NULL);
    IT_CHECK(it_js_fail_worker(e->nc, worker, 2, NULL) == 2, "the worker saw 2 deliveries");
    t = wait_task(e->nc, "SECRET:1", 3 * IT_WAIT_MS);
    IT_CHECK(t && json_is_true(it_json_get(t, "payload_missing")), "SECRET:1 payload_missing");
    IT_CHECK(it_json_str(t, "park_reason") &&
                 strstr(it_json_str(t, "park_reason"), "cannot read message 1 of stream SECRET"),
             "park_reason %s", it_json_str(t, "park_reason"));
    json_decref(t);
    IT_CHECK(wait_stat(e->nc, "lifetime_stats.advisories_fetch_errors", 1, IT_WAIT_MS) == 1,
             "the unreadable stream counted");
    IT_CHECK(wait_stat(e->nc, "lifetime_stats.payload_missing", 2, IT_WAIT_MS) == 2,
             "two tasks without their original");
    IT_CHECK(it_daemon_alive(&e->dmn) && it_admin_health_ok(e->nc), "the sidecar keeps running");
    natsSubscription_Destroy(worker);
    jsCtx_Destroy(js);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_max_deliveries_round_trip, it_teardown),
        cmocka_unit_test_teardown(test_terminated, it_teardown),
        cmocka_unit_test_teardown(test_payload_missing, it_teardown),
        cmocka_unit_test_teardown(test_worker_gives_up_on_retry, it_teardown),
        cmocka_unit_test_teardown(test_hostile_advisories, it_teardown),
        cmocka_unit_test_teardown(test_header_name_injection, it_teardown),
    };

    if (getenv("DLQ_TEST_FILTER")) /* one test by name while working on it */
        cmocka_set_test_filter(getenv("DLQ_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
