/* test_kvstore.c - integration: store.backend jetstream (tasks in a JetStream KV bucket) against a real nats-server 2.15.3: kill -9 and restart, odd task ids, deletes, keep_completed, a NATS restart, a bucket with a TTL refused, a stop in a backoff, a changed partition count refused. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "harness.h"
#include "persist.h"

#define BUCKET "DLQ_TASKS"

static bool
quick(void)
{
    const char *q = getenv("DLQ_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* Flags of a daemon on the KV store, then extra (NULL-terminated). */
struct flags {
    const char *v[32];
};

static const char *const *
kv_flags(struct flags *f, const char *const *extra)
{
    size_t n = 0;

    f->v[n++] = "store.backend=jetstream";
    f->v[n++] = "store.jetstream.flush_ms=5";
    for (size_t i = 0; extra && extra[i] && n < SC_ARRAY_LEN(f->v) - 1; i++)
        f->v[n++] = extra[i];
    f->v[n] = NULL;
    return f->v;
}

/* persistence() returns the stats' persistence object (new reference) or NULL. */
static json_t *
persistence(natsConnection *nc)
{
    json_t *s = it_admin_stats(nc), *p = s ? json_incref(json_object_get(s, "persistence")) : NULL;
    json_decref(s);
    return p;
}

/* wait_stored() waits until the store is "ok" with nothing queued. */
static void
wait_stored(natsConnection *nc, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    json_t *p = NULL;

    while (sc_now_mono_ms() < deadline) {
        json_decref(p);
        p = persistence(nc);
        const char *st = it_json_str(p, "state");
        if (st && strcmp(st, "ok") == 0 && it_json_int(p, "queued_writes") == 0) {
            json_decref(p);
            return;
        }
        it_sleep_ms(50);
    }
    char *dump = it_json_dump(p);
    fprintf(stderr, "the store did not catch up in %d ms: %s\n", timeout_ms, dump);
    free(dump);
    json_decref(p);
    fail();
}

static void
kill9(struct it_daemon *d)
{
    IT_CHECK(d->pid > 0, "no daemon to kill");
    kill(d->pid, SIGKILL);
    for (int i = 0; i < 500 && it_daemon_alive(d); i++)
        it_sleep_ms(10);
    IT_CHECK(d->pid == 0, "the daemon survived SIGKILL");
}

static void
restart(struct it_env *e, const char *const *flags)
{
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0, "daemon restart");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, 60000) == 0, "daemon ready after restart");
}

/* The bucket seen by a client of the test's own (blocking calls are fine here). */
struct bucket {
    jsCtx *js;
    kvStore *kv;
};

static void
bucket_open(struct bucket *b, natsConnection *nc)
{
    IT_CHECK(natsConnection_JetStream(&b->js, nc, NULL) == NATS_OK, "JetStream context");
    IT_CHECK(js_KeyValue(&b->kv, b->js, BUCKET) == NATS_OK, "bucket %s", BUCKET);
}

static void
bucket_close(struct bucket *b)
{
    kvStore_Destroy(b->kv);
    jsCtx_Destroy(b->js);
    memset(b, 0, sizeof(*b));
}

/*
 * bucket_get() returns the record of task id as JSON (new reference; its
 * MessagePack rendered), or NULL when the key is absent or deleted.
 */
static json_t *
bucket_get(struct bucket *b, const char *id, size_t len)
{
    struct sc_buf key, js;
    kvEntry *e = NULL;
    json_t *j = NULL;
    natsStatus s;

    sc_buf_init(&key, 4096);
    sc_buf_init(&js, 64u << 20);
    IT_CHECK(persist_kv_key(&key, id, len, 32) == SC_OK, "key of %s", id);
    s = kvStore_Get(&e, b->kv, key.data);
    if (s == NATS_OK) {
        IT_CHECK(codec_render_json(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 64, &js) == SC_OK,
                 "the record of %s is MessagePack", id);
        j = json_loadb(js.data, js.len, 0, NULL);
        IT_CHECK(j != NULL, "the record of %s renders as JSON", id);
    } else {
        IT_CHECK(s == NATS_NOT_FOUND, "kv get %s: %s", key.data, natsStatus_GetText(s));
    }
    kvEntry_Destroy(e);
    sc_buf_destroy(&key);
    sc_buf_destroy(&js);
    return j;
}

/* The stats' persistence counter name, as an integer. */
static int64_t
pstat(natsConnection *nc, const char *name)
{
    json_t *p = persistence(nc);
    int64_t v = it_json_int(p, name);
    json_decref(p);
    return v;
}

/*
 * Sends a "connection refused" failure of task id (linear policy) to
 * dlq.failed.kv as a request and checks that the acknowledgement says true
 * at key ("ok": taken; "stored": the bucket holds it).
 */
static void
request_failure(struct it_env *e, const char *id, const char *key)
{
    struct it_envelope env;

    it_envelope_init(&env);
    env.task_id = id;
    env.error = "connection refused";
    env.retry_policy = "linear";
    json_t *ack = it_request_envelope(e->nc, "dlq.failed.kv", &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, key)), "%s: %s is not true: %s", id, key,
             it_json_dump(ack));
    json_decref(ack);
}

/* ---- 1. kill -9 and restart: every task back with its status, budget and due time ------------ */

static void
check_same(const char *id, const json_t *before, const json_t *after, bool was_retrying)
{
    static const char *const same[] = {"subject", "retry_subject", "error", "error_type",
                                       "error_category", "retry_policy", "created_at", "task",
                                       "task_size", "max_retries", "retry_count", "episode",
                                       "parked"};

    IT_CHECK(after != NULL, "%s: gone after the restart", id);
    for (size_t k = 0; k < SC_ARRAY_LEN(same); k++)
        IT_CHECK(json_equal(json_object_get(before, same[k]), json_object_get(after, same[k])),
                 "%s: %s differs after the restart", id, same[k]);
    if (was_retrying)
        return; /* its attempt's outcome is unknown: pending again and due now (checked below) */
    IT_CHECK(json_equal(json_object_get(before, "status"), json_object_get(after, "status")),
             "%s: status %s -> %s", id, it_json_str(before, "status"), it_json_str(after, "status"));
    IT_CHECK(json_equal(json_object_get(before, "next_retry_at"), json_object_get(after, "next_retry_at")),
             "%s: next_retry_at %s -> %s", id, it_json_str(before, "next_retry_at"),
             it_json_str(after, "next_retry_at"));
    IT_CHECK(json_equal(json_object_get(before, "history"), json_object_get(after, "history")),
             "%s: history differs", id);
}

/* Odd ids: each goes through a different key encoding (plain, base64url, hash). */
static const char *
odd_id(int i, char *buf, size_t len)
{
    switch (i % 4) {
    case 0: snprintf(buf, len, "orders.v2.%d", i); break;           /* plain, with dots */
    case 1: snprintf(buf, len, "ünïcode/%d key with spaces", i); break; /* base64url */
    case 2: snprintf(buf, len, "a..b.%d.", i); break;               /* dots a key cannot hold */
    default: /* longer than any key: a hash */
        memset(buf, 'x', 300);
        snprintf(buf + 300, len - 300, "-%d", i);
        break;
    }
    return buf;
}

static void
test_kill9_restart(void **state)
{
    /* Linear steps of 10 min keep scheduled tasks pending; retries time out after 10 min. */
    const char *extra[] = {"backoff.linear_step_ms=600000", "retry.timeout_ms=600000",
                           "limits.max_task_id_len=1024", NULL};
    struct flags f;
    const char *const *flags = kv_flags(&f, extra);
    enum { PARKED = 0, PENDING, EXHAUSTED, FAILED_ONCE, RETRYING, ACKED, ODD, GROUPS };
    static const char *const gname[] = {"parked", "pending", "exhausted", "failed1", "retrying",
                                        "acked", "odd"};
    const int per = quick() ? 4 : 12;
    char ids[GROUPS][12][400];
    struct it_env *e = it_env_start_js("kv-kill9", flags);

    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "workers");
    struct it_recorder *silent = it_env_recorder(e, wc, "dlq.retry.silent", NULL, 1000, false);
    struct it_recorder *failing = it_env_recorder(e, wc, "dlq.retry.failing", NULL, 1000, false);
    assert_non_null(silent);
    assert_non_null(failing);
    struct it_step sil = {IT_ACT_SILENT, NULL, NULL}, fl = {IT_ACT_FAIL, "ECONNRESET upstream", NULL};
    it_recorder_set_plan(silent, NULL, 0, sil);
    it_recorder_set_plan(failing, NULL, 0, fl);

    for (int g = 0; g < GROUPS; g++) {
        for (int i = 0; i < per; i++) {
            struct it_envelope env;
            it_envelope_init(&env);
            if (g == ODD)
                odd_id(i, ids[g][i], sizeof ids[g][i]);
            else
                snprintf(ids[g][i], sizeof ids[g][i], "%s-%02d", gname[g], i);
            env.task_id = ids[g][i];
            env.error = "connection refused";
            env.retry_policy = "linear";
            switch (g) {
            case PARKED: env.error = "400 invalid email"; env.retry_policy = NULL; break;
            case EXHAUSTED: env.max_retries = 0; break;
            case FAILED_ONCE: env.retry_subject = "dlq.retry.failing"; break;
            case RETRYING: env.retry_policy = "immediate"; env.retry_subject = "dlq.retry.silent"; break;
            default: break;
            }
            /* Every failure is a request: "accepted" means "stored" with a durable store. */
            json_t *ack = it_request_envelope(e->nc, "dlq.failed.kv", &env);
            IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")) &&
                         json_is_true(json_object_get(ack, "stored")),
                     "ack for %s: %s", ids[g][i], it_json_dump(ack));
            json_decref(ack);
        }
    }
    /* One failed attempt for failed1 (admin retry now; the worker answers failure). */
    for (int i = 0; i < per; i++)
        json_decref(it_admin_task(e->nc, "retry", ids[FAILED_ONCE][i]));
    for (int i = 0; i < per; i++) {
        bool ok = false;
        for (int k = 0; k < 500 && !ok; k++) {
            json_t *t = it_admin_get(e->nc, ids[FAILED_ONCE][i]);
            ok = it_json_int(t, "retry_count") == 1 && strcmp(it_json_str(t, "status"), "pending") == 0;
            json_decref(t);
            if (!ok)
                it_sleep_ms(20);
        }
        IT_CHECK(ok, "%s did not fail its first attempt", ids[FAILED_ONCE][i]);
        json_decref(it_wait_task_status(e->nc, ids[RETRYING][i], "retrying", IT_WAIT_MS, &ok));
        IT_CHECK(ok, "%s is not retrying", ids[RETRYING][i]);
    }
    wait_stored(e->nc, 30000);

    /* What the bucket holds: one MessagePack record per task, under its partitioned key. */
    struct bucket b;
    bucket_open(&b, e->nc);
    for (int g = 0; g < GROUPS; g++)
        for (int i = 0; i < per; i++) {
            json_t *r = bucket_get(&b, ids[g][i], strlen(ids[g][i]));
            IT_CHECK(r && strcmp(it_json_str(r, "task_id"), ids[g][i]) == 0,
                     "the bucket has no record of %s", ids[g][i]);
            json_decref(r);
        }
    bucket_close(&b);

    json_t *before = json_object();
    for (int g = 0; g < GROUPS; g++)
        for (int i = 0; i < per; i++)
            json_object_set_new(before, ids[g][i], it_admin_get(e->nc, ids[g][i]));
    size_t silent_before = it_rec_count(silent);

    kill9(&e->dmn);
    int64_t restarted = sc_now_wall_ms();
    restart(e, flags);
    IT_CHECK(pstat(e->nc, "loaded") == GROUPS * per, "loaded %lld tasks, expected %d",
             (long long)pstat(e->nc, "loaded"), GROUPS * per);
    const char *k;
    json_t *bt;
    json_object_foreach(before, k, bt) {
        json_t *a = it_admin_get(e->nc, k);
        bool was_retrying = strncmp(k, "retrying-", 9) == 0;
        check_same(k, bt, a, was_retrying);
        if (was_retrying) {
            const char *nra = it_json_str(a, "next_retry_at");
            int64_t ms = 0;
            if (nra)
                sc_parse_rfc3339(nra, strlen(nra), &ms);
            IT_CHECK(!nra || (ms >= restarted - 1000 && ms <= sc_now_wall_ms() + 1000),
                     "%s: next_retry_at %s is not 'now'", k, nra);
        }
        json_decref(a);
    }
    /* The retrying tasks go out again with the same attempt number. */
    IT_CHECK(it_rec_wait(silent, silent_before + (size_t)per, IT_WAIT_MS),
             "the retrying tasks were not retried after the restart (%zu new)",
             it_rec_count(silent) - silent_before);
    for (size_t i = silent_before; i < it_rec_count(silent); i++)
        IT_CHECK(strcmp(it_rec_header(it_rec_get(silent, i), "Dlq-Attempt"), "1") == 0,
                 "attempt %s after the restart", it_rec_header(it_rec_get(silent, i), "Dlq-Attempt"));
    json_decref(before);
    e->passed = true;
}

/* ---- 2. deletes and keep_completed ----------------------------------------------------------- */

/* Completes n tasks "<prefix>-i" through a worker that succeeds, then waits for the store. */
static void
complete_tasks(struct it_env *e, const char *prefix, int n)
{
    natsConnection *wc = it_env_connect(e, "ok-worker");
    struct it_recorder *ok = it_env_recorder(e, wc, "dlq.retry.done", NULL, 1000, false);
    struct it_step st = {IT_ACT_OK, NULL, NULL};
    char id[64];

    assert_non_null(ok);
    it_recorder_set_plan(ok, NULL, 0, st);
    for (int i = 0; i < n; i++) {
        struct it_envelope env;
        it_envelope_init(&env);
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        env.task_id = id;
        env.error = "connection refused";
        env.retry_policy = "immediate";
        env.retry_subject = "dlq.retry.done";
        json_t *ack = it_request_envelope(e->nc, "dlq.failed.kv", &env);
        /*
         * Accepted. "stored" may be false: retried at once, a task can complete
         * (and, without keep_completed, be removed) before its first write is
         * acknowledged, and then nothing is left to store (README, held answers).
         */
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack for %s", id);
        json_decref(ack);
    }
    IT_CHECK(it_rec_wait(ok, (size_t)n, IT_WAIT_MS), "the worker saw %zu of %d", it_rec_count(ok), n);
    for (int i = 0; i < n; i++) {
        bool done;
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        for (int k = 0; k < 500; k++) {
            char st[32];
            it_task_status(e->nc, id, st, sizeof st);
            done = strcmp(st, "completed") == 0 || strcmp(st, "absent") == 0;
            if (done)
                break;
            it_sleep_ms(20);
        }
        IT_CHECK(done, "%s was not completed", id);
    }
    wait_stored(e->nc, 30000);
}

static void
test_completed_deleted(void **state)
{
    struct flags f;
    const char *extra[] = {"store.keep_completed=false", NULL}; /* the suite's default keeps them */
    const char *const *flags = kv_flags(&f, extra);
    struct it_env *e = it_env_start_js("kv-delete", flags);
    struct bucket b;
    char id[64];

    assert_non_null(e);
    *state = e;
    complete_tasks(e, "done", 10);
    bucket_open(&b, e->nc);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "done-%d", i);
        json_t *r = bucket_get(&b, id, strlen(id));
        IT_CHECK(r == NULL, "%s is completed but its record is still in the bucket", id);
    }
    bucket_close(&b);
    kill9(&e->dmn);
    restart(e, flags);
    IT_CHECK(pstat(e->nc, "loaded") == 0, "a completed task came back");
    e->passed = true;
}

static void
test_keep_completed(void **state)
{
    const char *extra[] = {"store.keep_completed=true", NULL};
    struct flags f;
    const char *const *flags = kv_flags(&f, extra);
    struct it_env *e = it_env_start_js("kv-keep", flags);
    struct bucket b;
    char id[64];

    assert_non_null(e);
    *state = e;
    complete_tasks(e, "kept", 5);
    bucket_open(&b, e->nc);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "kept-%d", i);
        json_t *r = bucket_get(&b, id, strlen(id));
        IT_CHECK(r && strcmp(it_json_str(r, "status"), "completed") == 0,
                 "%s: the bucket keeps no completed record", id);
        json_decref(r);
    }
    bucket_close(&b);
    kill9(&e->dmn);
    restart(e, flags);
    /* Kept, never loaded, and quietly: no load error. */
    IT_CHECK(pstat(e->nc, "loaded") == 0, "a completed task was loaded");
    IT_CHECK(pstat(e->nc, "load_skipped") == 0, "completed records counted as skipped or bad");
    e->passed = true;
}

/*
 * A task whose payload, metadata and error hold U+0000 (valid JSON) comes
 * back after a restart: the loader read the rendered record with jansson's
 * default, which refuses "\u0000", and dropped such a task without a word
 * (red team).
 */
static void
test_nul_in_strings_loaded(void **state)
{
    struct flags f;
    const char *const *flags = kv_flags(&f, NULL);
    struct it_env *e = it_env_start_js("kv-nul", flags);
    static const char body[] =
        "{\"task_id\":\"nul-1\",\"task\":{\"b\":\"a\\u0000b\"},\"error\":\"x\\u0000y\","
        "\"retry_policy\":\"linear\",\"metadata\":{\"k\":\"\\u0000\"}}";

    assert_non_null(e);
    *state = e;
    json_t *ack = it_request_json(e->nc, "dlq.failed.kv", body, 5000);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "stored")), "nul-1 was not stored");
    json_decref(ack);
    request_failure(e, "plain-1", "stored");
    wait_stored(e->nc, 30000);
    kill9(&e->dmn);
    restart(e, flags);
    IT_CHECK(pstat(e->nc, "loaded") == 2, "loaded %lld of 2 tasks", (long long)pstat(e->nc, "loaded"));
    IT_CHECK(pstat(e->nc, "load_skipped") == 0, "a record was skipped");
    /* A record that is not MessagePack at all (written by something else) is skipped and counted. */
    kill9(&e->dmn);
    struct bucket b;
    struct sc_buf key;
    static const unsigned char junk[] = {0xc1, 0x00, 0xff};
    bucket_open(&b, e->nc);
    sc_buf_init(&key, 4096);
    IT_CHECK(persist_kv_key(&key, "junk-1", 6, 32) == SC_OK, "key of junk-1");
    IT_CHECK(kvStore_Put(NULL, b.kv, key.data, junk, (int)sizeof junk) == NATS_OK, "junk record put");
    sc_buf_destroy(&key);
    bucket_close(&b);
    restart(e, flags);
    IT_CHECK(pstat(e->nc, "loaded") == 2, "loaded %lld of 2 tasks", (long long)pstat(e->nc, "loaded"));
    IT_CHECK(pstat(e->nc, "load_skipped") == 1, "load_skipped %lld, not the 1 junk record",
             (long long)pstat(e->nc, "load_skipped"));
    e->passed = true;
}

/* ---- 3. NATS restarted under the sidecar: degraded, then every write lands ------------------- */

static void
test_nats_restart(void **state)
{
    struct flags f;
    const char *extra[] = {"backoff.linear_step_ms=600000", "store.jetstream.timeout_ms=1000", NULL};
    const char *const *flags = kv_flags(&f, extra);
    struct it_env *e = it_env_start_js("kv-nats-restart", flags);
    const int n = quick() ? 20 : 100;
    char id[64];

    assert_non_null(e);
    *state = e;
    for (int i = 0; i < n; i++) {
        struct it_envelope env;
        it_envelope_init(&env);
        snprintf(id, sizeof id, "before-%d", i);
        env.task_id = id;
        env.error = "connection refused";
        env.retry_policy = "linear";
        IT_CHECK(it_publish_envelope(e->nc, "dlq.failed.kv", &env) == 0, "publish %s", id);
    }
    /* The server goes away at once: some writes are in flight or not sent yet. */
    it_server_stop(&e->srv, SIGKILL);
    it_sleep_ms(3000);
    IT_CHECK(it_daemon_alive(&e->dmn), "the sidecar died while NATS was down");
    IT_CHECK(it_server_restart(&e->srv) == 0, "nats-server restart");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, 60000) == 0, "ready after the NATS restart");
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "after-%d", i);
        request_failure(e, id, "ok");
    }
    json_t *stats = it_admin_stats(e->nc);
    int64_t queued = it_json_int(stats, "queue_size");
    json_decref(stats);
    wait_stored(e->nc, 60000);
    kill9(&e->dmn);
    restart(e, flags);
    /* Whatever the sidecar had taken before the crash of NATS is stored, and all after. */
    IT_CHECK(pstat(e->nc, "loaded") == queued, "loaded %lld of %lld tasks",
             (long long)pstat(e->nc, "loaded"), (long long)queued);
    for (int i = 0; i < n; i++) {
        char st[32];
        snprintf(id, sizeof id, "after-%d", i);
        IT_CHECK(strcmp(it_task_status(e->nc, id, st, sizeof st), "pending") == 0, "%s: %s", id, st);
    }
    e->passed = true;
}

/* ---- 4. a bucket with a TTL is refused: its tasks would expire ------------------------------- */

static void
test_ttl_bucket_refused(void **state)
{
    struct flags f;
    const char *extra[] = {"store.jetstream.bucket=TTL_TASKS", NULL};
    const char *const *flags = kv_flags(&f, extra);
    struct it_env *e = it_env_start_js("kv-ttl", NULL); /* memory store first: makes the server */
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    kvConfig kc;

    assert_non_null(e);
    *state = e;
    IT_CHECK(natsConnection_JetStream(&js, e->nc, NULL) == NATS_OK, "JetStream context");
    kvConfig_Init(&kc);
    kc.Bucket = "TTL_TASKS";
    kc.TTL = 60LL * 1000 * 1000 * 1000; /* ns: nats.c passes it as the stream's MaxAge */
    IT_CHECK(js_CreateKeyValue(&kv, js, &kc) == NATS_OK, "bucket with a TTL");
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    it_daemon_stop(&e->dmn);
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0, "daemon start");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, 60000) == 0, "serving from memory");
    json_t *p = persistence(e->nc);
    IT_CHECK(strcmp(it_json_str(p, "state"), "degraded") == 0, "state %s", it_json_str(p, "state"));
    IT_CHECK(strstr(it_json_str(p, "last_error"), "TTL") != NULL, "last_error: %s",
             it_json_str(p, "last_error"));
    json_decref(p);
    /* An answer does not pretend: nothing is stored. */
    struct it_envelope env;
    it_envelope_init(&env);
    env.task_id = "t1";
    env.error = "connection refused";
    json_t *ack = it_request_envelope(e->nc, "dlq.failed.kv", &env);
    IT_CHECK(ack && json_is_false(json_object_get(ack, "stored")), "ack: %s", it_json_dump(ack));
    json_decref(ack);
    /* Stopping with a write neither stored nor spilled says so: exit 3 (SC_EXIT_UNSTORED). */
    IT_CHECK(it_daemon_stop(&e->dmn) == 3, "exit status %d, want 3", e->dmn.exit_status);
    e->passed = true;
}

/* ---- 5. a record larger than max_payload: refused for good, answered, nothing crashes --------- */

static void
test_record_too_big(void **state)
{
    struct flags f;
    const char *const *flags = kv_flags(&f, NULL);
    struct it_env *e = it_env_start_js("kv-too-big", flags);
    struct sc_buf body;

    assert_non_null(e);
    *state = e;
    /* 600 KB of payload: the record (payload as JSON and as base64 MessagePack) passes 1 MiB. */
    sc_buf_init(&body, 2u << 20);
    sc_buf_appendf(&body, "{\"task_id\":\"big-1\",\"error\":\"boom\",\"task\":{\"blob\":\"");
    for (int i = 0; i < 600000; i++)
        sc_buf_appendc(&body, 'x');
    sc_buf_appendf(&body, "\"}}");
    json_t *ack = it_request_bytes(e->nc, "dlq.failed.kv", body.data, body.len, 10000);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")) &&
                 json_is_false(json_object_get(ack, "stored")),
             "ack: %s", it_json_dump(ack));
    json_decref(ack);
    IT_CHECK(it_daemon_alive(&e->dmn), "the sidecar died on a record it cannot store");
    IT_CHECK(pstat(e->nc, "rejected") >= 1, "the refusal is counted");
    /* It stays in memory and the store goes on with the others. */
    char st[32];
    IT_CHECK(strcmp(it_task_status(e->nc, "big-1", st, sizeof st), "pending") == 0, "big-1: %s", st);
    struct it_envelope env;
    it_envelope_init(&env);
    env.task_id = "small-1";
    env.error = "connection refused";
    ack = it_request_envelope(e->nc, "dlq.failed.kv", &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "stored")), "small-1: %s", it_json_dump(ack));
    json_decref(ack);
    sc_buf_destroy(&body);
    e->passed = true;
}

/* ---- 7. stopped in a long backoff: the last writes still go before the exit ------------------ */

/*
 * A paused nats-server makes every batch time out until the store's backoff
 * reaches several seconds; the server then resumes and the sidecar gets
 * SIGTERM at once. Its drain is shorter than the backoff under way: it must
 * cut the backoff short, store the last writes and exit 0 (3 would say
 * writes were neither stored nor spilled), and every record must hold its
 * task's attempt.
 */
static void
test_stop_in_backoff(void **state)
{
    const char *extra[] = {"backoff.linear_step_ms=1000", "retry.timeout_ms=600000",
                           "store.jetstream.timeout_ms=500", "shutdown.drain_ms=1000", NULL};
    struct flags f;
    const char *const *flags = kv_flags(&f, extra);
    struct it_env *e = it_env_start_js("kv-stop-backoff", flags);
    enum { N = 10 };
    natsSubscription *worker = NULL;
    char id[32];

    assert_non_null(e);
    *state = e;
    /* A worker that takes the attempts and never answers (retry.timeout_ms is 10 min). */
    IT_CHECK(natsConnection_SubscribeSync(&worker, e->nc, "dlq.retry.kv") == NATS_OK, "worker");
    IT_CHECK(natsConnection_Flush(e->nc) == NATS_OK, "flush");
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "bo-%d", i);
        request_failure(e, id, "stored");
    }
    /* Attempt 1 of each goes out after 1 s; its write times out, again and again. */
    IT_CHECK(kill(e->srv.pid, SIGSTOP) == 0, "SIGSTOP nats-server");
    it_sleep_ms(13000);
    IT_CHECK(kill(e->srv.pid, SIGCONT) == 0, "SIGCONT nats-server");
    json_t *p = persistence(e->nc);
    IT_CHECK(p && strcmp(it_json_str(p, "state") ? it_json_str(p, "state") : "", "degraded") == 0,
             "the store is in its backoff: %s", it_json_dump(p));
    IT_CHECK(it_json_int(p, "queued_writes") > 0, "writes wait: %s", it_json_dump(p));
    json_decref(p);
    json_t *before[N];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "bo-%d", i);
        before[i] = it_admin_get(e->nc, id);
        IT_CHECK(strcmp(it_json_str(before[i], "status") ? it_json_str(before[i], "status") : "",
                        "retrying") == 0,
                 "%s sent its attempt 1 while the server was paused: %s", id, it_json_dump(before[i]));
    }
    int st = it_daemon_stop(&e->dmn);
    IT_CHECK(st == 0, "exit %d at SIGTERM in a backoff (3: writes neither stored nor spilled)", st);
    /* The records hold attempt 1 (read while no sidecar runs: a restart would send it again). */
    struct bucket b;
    bucket_open(&b, e->nc);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "bo-%d", i);
        json_t *t = bucket_get(&b, id, strlen(id));
        IT_CHECK(t && json_equal(json_object_get(t, "last_attempt_at"),
                                 json_object_get(before[i], "last_attempt_at")) &&
                     json_equal(json_object_get(t, "status"), json_object_get(before[i], "status")),
                 "%s: the attempt is stored: %s", id, it_json_dump(t));
        json_decref(t);
        json_decref(before[i]);
    }
    bucket_close(&b);
    natsSubscription_Destroy(worker);
    e->passed = true;
}

/* ---- 8. a bucket made with another cluster.partitions is refused: its keys would be lost ----- */

static void
test_partitions_changed(void **state)
{
    struct flags f, g;
    const char *const *flags = kv_flags(&f, NULL);
    const char *other[] = {"cluster.partitions=16", NULL};
    const char *const *changed = kv_flags(&g, other);
    struct it_env *e = it_env_start_js("kv-partitions", flags);

    assert_non_null(e);
    *state = e;
    request_failure(e, "p-1", "stored");
    IT_CHECK(pstat(e->nc, "load_skipped") == 0, "the bucket's partition count is not a task");
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "clean stop");
    restart(e, flags); /* the same count: loads as before */
    char st[32];
    IT_CHECK(strcmp(it_task_status(e->nc, "p-1", st, sizeof st), "pending") == 0, "p-1: %s", st);
    IT_CHECK(pstat(e->nc, "load_skipped") == 0, "the bucket's partition count is not a task");
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "clean stop");
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, changed) == 0, "start with 16 partitions");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, 60000) == 0, "serving from memory");
    json_t *p = persistence(e->nc);
    const char *why = it_json_str(p, "last_error");
    IT_CHECK(strcmp(it_json_str(p, "state"), "degraded") == 0, "state %s", it_json_str(p, "state"));
    IT_CHECK(why && strstr(why, "cluster.partitions 32") && strstr(why, "has 16"), "last_error: %s",
             why ? why : "(none)");
    json_decref(p);
    e->passed = true;
}

/* An edited payload (admin edit) is stored: after a restart the task keeps the new bytes and the first original. */
static void
test_edit_stored(void **state)
{
    struct flags f;
    const char *const *flags = kv_flags(&f, NULL);
    struct it_env *e = it_env_start_js("kv-edit", flags);
    json_t *j, *h;
    size_t i, edits = 0;

    assert_non_null(e);
    *state = e;
    request_failure(e, "ed-1", "stored");
    j = it_request_json(e->nc, "dlq.admin.pause", NULL, IT_REQUEST_MS); /* no retry moves it meanwhile */
    json_decref(j);
    j = it_request_json(e->nc, "dlq.admin.edit", "{\"task_id\":\"ed-1\",\"payload_json\":{\"fixed\":7}}",
                        IT_REQUEST_MS);
    IT_CHECK(j && json_is_true(json_object_get(j, "edited")), "edit: %s", it_json_dump(j));
    json_decref(j);
    wait_stored(e->nc, IT_WAIT_MS);
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "clean stop");
    restart(e, flags);
    j = it_request_json(e->nc, "dlq.admin.get", "{\"task_id\":\"ed-1\",\"payload\":true}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(j, "task.fixed") == 7, "the edited payload after a restart: %s", it_json_dump(j));
    IT_CHECK(it_json_int(j, "original_task.order") == 42 && it_json_str(j, "original_payload_b64"),
             "the original after a restart: %s", it_json_dump(j));
    json_array_foreach(json_object_get(j, "history"), i, h)
        edits += strcmp(it_json_str(h, "outcome"), "edited") == 0;
    IT_CHECK(edits == 1, "the 'edited' history entry after a restart: %s", it_json_dump(j));
    json_decref(j);
}

/*
 * An envelope's delay list and priority (issue 17) are part of the record:
 * the bucket holds backoff_ms, and after kill -9 and a restart the task
 * still has its own list (get's backoff_ms, backoff_source "task"), its
 * priority (in the high wheel) and its due time.
 */
static void
test_backoff_survives_restart(void **state)
{
    struct flags f;
    const char *extra[] = {"backoff.linear_step_ms=60000", NULL};
    const char *const *flags = kv_flags(&f, extra);
    struct it_env *e = it_env_start_js("kv-backoff", flags);
    struct bucket b;
    char id[96], body[256];

    assert_non_null(e);
    *state = e;
    it_unique_id("list", id, sizeof id);
    snprintf(body, sizeof body,
             "{\"task_id\":\"%s\",\"task\":{},\"error\":\"busy\",\"retry_policy\":\"linear\","
             "\"backoff\":[\"1h\",7200000],\"priority\":\"high\"}",
             id);
    json_t *ack = it_request_json(e->nc, "dlq.failed.orders", body, IT_REQUEST_MS);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest refused");
    json_decref(ack);
    wait_stored(e->nc, IT_WAIT_MS);
    bucket_open(&b, e->nc);
    json_t *r = bucket_get(&b, id, strlen(id));
    char *rec = json_dumps(json_object_get(r, "backoff_ms"), JSON_COMPACT);
    IT_CHECK(rec && strcmp(rec, "[3600000,7200000]") == 0, "the record's backoff_ms: %s", rec ? rec : "(none)");
    free(rec);
    json_decref(r);
    bucket_close(&b);
    json_t *before = it_admin_get(e->nc, id);
    kill9(&e->dmn);
    restart(e, flags);
    json_t *after = it_admin_get(e->nc, id);
    char *dump = it_json_dump(after);
    char *own = json_dumps(json_object_get(after, "backoff_ms"), JSON_COMPACT);
    IT_CHECK(own && strcmp(own, "[3600000,7200000]") == 0 && it_json_str(after, "backoff_source") &&
                 strcmp(it_json_str(after, "backoff_source"), "task") == 0,
             "after the restart: want the task's own list: %s", dump);
    IT_CHECK(it_json_str(after, "priority") && strcmp(it_json_str(after, "priority"), "high") == 0,
             "after the restart: want priority high: %s", dump);
    json_t *st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "retry_processor.priorities.high.scheduled") == 1,
             "after the restart: want the task in the high wheel");
    json_decref(st);
    IT_CHECK(it_json_str(before, "next_retry_at") && it_json_str(after, "next_retry_at") &&
                 strcmp(it_json_str(before, "next_retry_at"), it_json_str(after, "next_retry_at")) == 0,
             "next_retry_at changed across the restart: %s", dump);
    free(own);
    free(dump);
    json_decref(before);
    json_decref(after);
    e->passed = true;
}

/*
 * A bucket whose records are mostly delete markers (tasks cleared) loads in
 * full before the start goes on: nats.c's kvWatcher_Next() with
 * IgnoreDeletes skips markers inside one call and times out early once its
 * budget is spent on them (it subtracts the time since the call began at
 * every skip), which the loader counted as a whole second with nothing
 * received: some 15,000 markers in a row were "nothing received for 30 s",
 * and the sidecar started degraded and empty, the stored tasks coming back
 * only later (404 for each meanwhile).
 */
static void
test_many_deletes_load(void **state)
{
    const char *extra[] = {"max_size=100000", "log.level=info", NULL};
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    uint64_t msgs = 0;
    struct flags f;
    const char *const *flags = kv_flags(&f, extra);
    const int cleared = quick() ? 40000 : 60000, live = 5;
    struct it_env *e = it_env_start_js("kv-deletes", flags);
    char id[64], body[160];

    assert_non_null(e);
    *state = e;
    for (int i = 0; i < cleared; i++) {
        int n = snprintf(body, sizeof body,
                         "{\"task_id\":\"gone-%d\",\"task\":{},\"error\":\"boom\",\"retry_policy\":\"never\"}", i);
        IT_CHECK(natsConnection_Publish(e->nc, "dlq.failed.kv", body, n) == NATS_OK, "publish gone-%d", i);
        if (i % 1000 == 999)
            IT_CHECK(natsConnection_FlushTimeout(e->nc, IT_REQUEST_MS) == NATS_OK, "flush");
    }
    int64_t size = 0;
    for (int k = 0; k < 600 && size < cleared; k++) {
        json_t *st = it_admin_stats(e->nc);
        size = it_json_int(st, "queue_size");
        json_decref(st);
        if (size < cleared)
            it_sleep_ms(100);
    }
    IT_CHECK(size == cleared, "%lld of %d failures taken", (long long)size, cleared);
    wait_stored(e->nc, 120000); /* each one a record: the clear leaves a delete marker for each */
    json_t *r = it_request_json(e->nc, "dlq.admin.clear", "{\"all\":true,\"confirm\":true}", 60000);
    IT_CHECK(it_json_int(r, "cleared") == cleared, "clear: %s", it_json_dump(r));
    json_decref(r);
    wait_stored(e->nc, 120000);
    IT_CHECK(natsConnection_JetStream(&js, e->nc, NULL) == NATS_OK &&
                 js_GetStreamInfo(&si, js, "KV_DLQ_TASKS", NULL, NULL) == NATS_OK,
             "the tasks bucket's stream");
    msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    IT_CHECK(msgs >= (uint64_t)cleared, "test precondition: %llu records in the bucket, want %d delete markers",
             (unsigned long long)msgs, cleared);
    for (int i = 0; i < live; i++) {
        struct it_envelope env;
        it_envelope_init(&env);
        snprintf(id, sizeof id, "kept-%d", i);
        env.task_id = id;
        env.error = "boom";
        env.retry_policy = "never";
        json_t *ack = it_request_envelope(e->nc, "dlq.failed.kv", &env);
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack for %s", id);
        json_decref(ack);
    }
    IT_CHECK(it_daemon_stop(&e->dmn) == 0 && e->dmn.exit_status == 0, "SIGTERM: exit %d",
             e->dmn.exit_status);
    char *before = it_slurp(e->dmn.log);
    size_t skip = strlen(before);
    free(before);
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0, "restart");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS * 3) == 0, "ready after the restart");
    /* straight after readiness: every stored task is there */
    for (int i = 0; i < live; i++) {
        snprintf(id, sizeof id, "kept-%d", i);
        json_t *t = it_admin_get(e->nc, id);
        IT_CHECK(t && it_json_str(t, "task_id") && strcmp(it_json_str(t, "task_id"), id) == 0,
                 "%s after the restart: %s", id, it_json_dump(t));
        json_decref(t);
    }
    char *text = it_slurp(e->dmn.log);
    const char *second = strlen(text) >= skip ? text + skip : text;
    bool idle = strstr(second, "nothing received") != NULL, degraded = strstr(second, "not available at start") != NULL;
    free(text);
    IT_CHECK(!idle && !degraded, "the load of %d delete markers was taken for an idle store", cleared);
    e->passed = true;
}

/*
 * A load that runs while the sidecar serves (a cluster member's claim of
 * its partitions after a restart) hands the loop its records in slices:
 * admin requests and signals are answered during it. The loop took the
 * loader's records for as long as the loader kept its ring from running
 * dry, a whole load of 100,000 tasks in one callback: no admin answer, no
 * tick, no retry, no lease decision, and a SIGTERM not heard until the end.
 */
static void
test_background_load_serves(void **state)
{
    const char *extra[] = {"max_size=200000", "log.level=info", "cluster.enabled=true",
                           "cluster.member_id=m1", "cluster.partitions=1", "ingest.mode=jetstream",
                           "ingest.stream_replicas=1", NULL};
    struct flags f;
    const char *const *flags = kv_flags(&f, extra);
    const int n = quick() ? 20000 : 40000; /* 20 to 40 of the loop's slices of KV_WAKE_MAX */
    struct it_env *e = it_env_start_js("kv-bgload", flags);
    char body[160];

    assert_non_null(e);
    *state = e;
    for (int i = 0; i < n; i++) {
        int len = snprintf(body, sizeof body,
                           "{\"task_id\":\"bg-%d\",\"task\":{\"n\":%d},\"error\":\"boom\",\"retry_policy\":\"never\"}",
                           i, i);
        IT_CHECK(natsConnection_Publish(e->nc, "dlq.failed.kv", body, len) == NATS_OK, "publish bg-%d", i);
        if (i % 1000 == 999)
            IT_CHECK(natsConnection_FlushTimeout(e->nc, IT_REQUEST_MS) == NATS_OK, "flush");
    }
    /* Ingest into the KV store is slow on shared cores and under sanitizers: wait while it moves. */
    int64_t size = 0, seen = -1, moved = sc_now_mono_ms();
    while (size < n && sc_now_mono_ms() - moved < 60000) {
        json_t *st = it_admin_stats(e->nc);
        size = it_json_int(st, "queue_size");
        json_decref(st);
        if (size > seen) {
            seen = size;
            moved = sc_now_mono_ms();
        }
        if (size < n)
            it_sleep_ms(100);
    }
    IT_CHECK(size == n, "%lld of %d failures taken (none for 60 s)", (long long)size, n);
    wait_stored(e->nc, 120000);
    IT_CHECK(it_daemon_stop(&e->dmn) == 0 && e->dmn.exit_status == 0, "SIGTERM: exit %d", e->dmn.exit_status);
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0, "restart: claims and loads");
    int64_t partial = -1, answers = 0;
    size = 0;
    seen = -1;
    moved = sc_now_mono_ms();
    while (size < n && sc_now_mono_ms() - moved < 60000) {
        json_t *st = it_request_json(e->nc, "dlq.admin.stats", "{}", 200);
        if (st) {
            answers++;
            size = it_json_int(st, "queue_size");
            if (size > 0 && size < n && partial < 0)
                partial = size;
            if (size > seen) {
                seen = size;
                moved = sc_now_mono_ms();
            }
        }
        json_decref(st);
    }
    fprintf(stderr, "[kv-bgload] %lld answers, first partial load seen: %lld of %d\n", (long long)answers,
            (long long)partial, n);
    IT_CHECK(size == n, "loaded %lld of %d", (long long)size, n);
    IT_CHECK(partial > 0, "no admin answer while the %d tasks loaded: the load held the loop", n);
    IT_CHECK(it_daemon_stop(&e->dmn) == 0 && e->dmn.exit_status == 0, "SIGTERM: exit %d", e->dmn.exit_status);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill9_restart, it_teardown),
        cmocka_unit_test_teardown(test_completed_deleted, it_teardown),
        cmocka_unit_test_teardown(test_keep_completed, it_teardown),
        cmocka_unit_test_teardown(test_nul_in_strings_loaded, it_teardown),
        cmocka_unit_test_teardown(test_nats_restart, it_teardown),
        cmocka_unit_test_teardown(test_ttl_bucket_refused, it_teardown),
        cmocka_unit_test_teardown(test_record_too_big, it_teardown),
        cmocka_unit_test_teardown(test_stop_in_backoff, it_teardown),
        cmocka_unit_test_teardown(test_partitions_changed, it_teardown),
        cmocka_unit_test_teardown(test_edit_stored, it_teardown),
        cmocka_unit_test_teardown(test_backoff_survives_restart, it_teardown),
        cmocka_unit_test_teardown(test_many_deletes_load, it_teardown),
        cmocka_unit_test_teardown(test_background_load_serves, it_teardown),
    };

    if (getenv("DLQ_TEST_ONLY")) /* one test by name, for a quick look */
        cmocka_set_test_filter(getenv("DLQ_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
