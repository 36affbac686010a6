/* test_persist.c - integration: the OpenSearch store against a real OpenSearch node (scripts/opensearch.sh), with a fault-injecting proxy in front of it for per-item failures and a TLS + basic-auth proxy (tls_proxy.py) for the security options. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <msgpack.h>

#include "harness.h"
#include "persist.h"

/*
 * The node: scripts/test.sh starts it with scripts/opensearch.sh and sets
 * DLQ_TEST_OPENSEARCH_URL (its URL) and DLQ_TEST_OPENSEARCH_CTL (the script,
 * which these tests call to stop and start the node; DLQ_OPENSEARCH_DIR says
 * which node). Without them every test fails: a persistence suite that
 * skipped would prove nothing.
 */
static const char *
os_url(void)
{
    const char *u = getenv("DLQ_TEST_OPENSEARCH_URL");
    if (!u || !*u) {
        fprintf(stderr, "DLQ_TEST_OPENSEARCH_URL is not set: run scripts/test.sh, or start a node "
                        "with scripts/opensearch.sh start and export its URL\n");
        fail();
    }
    return u;
}

static bool
quick(void)
{
    const char *q = getenv("DLQ_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* ---- a blocking OpenSearch client (the test's, not the daemon's) ----------------------------- */

static size_t
on_body(char *p, size_t size, size_t n, void *userp)
{
    struct sc_buf *b = userp;
    return sc_buf_append(b, p, size * n) == SC_OK ? size * n : 0;
}

/*
 * os_call_raw() sends one request to base+path and returns the status (0 on
 * a transport error) with the body in out (reset first).
 */
static long
os_call_raw(const char *base, const char *method, const char *path, const char *ctype,
            const char *body, size_t len, struct sc_buf *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[2048], ct[128];
    long status = 0;

    sc_buf_reset(out);
    snprintf(url, sizeof url, "%s%s", base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    h = curl_slist_append(h, "Expect:");
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        h = curl_slist_append(h, ct);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (strcmp(method, "POST") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* os_call() is os_call_raw() on the node with a JSON body; returns the parsed reply (new reference) or NULL. */
static json_t *
os_call(const char *method, const char *path, const char *body, long *status)
{
    struct sc_buf out;
    json_t *j = NULL;
    long st;

    sc_buf_init(&out, 1024u * 1024 * 1024);
    st = os_call_raw(os_url(), method, path, body ? "application/json" : NULL, body,
                     body ? strlen(body) : 0, &out);
    if (status)
        *status = st;
    if (out.len)
        j = json_loadb(out.data, out.len, 0, NULL);
    sc_buf_destroy(&out);
    return j;
}

static void
os_refresh(const char *index)
{
    char path[256];
    long st;
    snprintf(path, sizeof path, "/%s/_refresh", index);
    json_decref(os_call("POST", path, NULL, &st));
    IT_CHECK(st == 200, "refresh %s: HTTP %ld", index, st);
}

/* os_count() returns the number of documents in index matching query (NULL: all), after a refresh. */
static int64_t
os_count(const char *index, const char *query)
{
    char path[256], body[512];
    long st;
    json_t *r;
    int64_t n;

    os_refresh(index);
    snprintf(path, sizeof path, "/%s/_count", index);
    if (query)
        snprintf(body, sizeof body, "{\"query\":%s}", query);
    r = os_call("POST", path, query ? body : NULL, &st);
    n = st == 200 ? it_json_int(r, "count") : -1;
    json_decref(r);
    return n;
}

/*
 * os_all() returns every document of index as an object task_id -> _source, each
 * source with "_version" added, read with search_after paging on task_id.
 */
static json_t *
os_all(const char *index)
{
    json_t *all = json_object(), *after = NULL;
    char path[256];

    os_refresh(index);
    snprintf(path, sizeof path, "/%s/_search", index);
    for (;;) {
        json_t *req = json_pack("{s:i,s:b,s:[{s:s}]}", "size", 1000, "version", 1, "sort", "task_id",
                                "asc");
        char *body;
        long st;
        json_t *r, *hits, *hit;
        size_t i;

        if (after)
            json_object_set_new(req, "search_after", after);
        body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        r = os_call("POST", path, body, &st);
        free(body);
        IT_CHECK(st == 200, "search %s: HTTP %ld", index, st);
        hits = json_object_get(json_object_get(r, "hits"), "hits");
        after = NULL;
        json_array_foreach(hits, i, hit) {
            json_t *src = json_object_get(hit, "_source");
            json_object_set(src, "_version", json_object_get(hit, "_version"));
            /* Keyed by the task's id, not _id: a long id's _id is a hash of it. */
            json_object_set(all, json_string_value(json_object_get(src, "task_id")), src);
            after = json_object_get(hit, "sort");
        }
        if (after)
            after = json_incref(after);
        if (json_array_size(hits) < 1000) {
            json_decref(after);
            json_decref(r);
            break;
        }
        json_decref(r);
    }
    return all;
}

/* The index of one test: its own name, dropped with its template before and after. */
static void
os_drop(const char *index)
{
    char path[256];
    snprintf(path, sizeof path, "/%s", index);
    json_decref(os_call("DELETE", path, NULL, NULL));
    snprintf(path, sizeof path, "/_index_template/%s", index);
    json_decref(os_call("DELETE", path, NULL, NULL));
}

static const char *
test_index(const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "dlqit-%d-%s", (int)getpid(), name);
    os_drop(out);
    return out;
}

/* os_ctl() runs the node's script: "stop" or "start". */
static void
os_ctl(const char *verb)
{
    const char *ctl = getenv("DLQ_TEST_OPENSEARCH_CTL");
    char cmd[1024];
    int rc;

    IT_CHECK(ctl && *ctl, "DLQ_TEST_OPENSEARCH_CTL is not set (scripts/test.sh sets it)");
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null", ctl, verb);
    rc = system(cmd);
    IT_CHECK(rc == 0, "%s %s: exit %d", ctl, verb, rc);
}

/* b64dec() decodes a base64 JSON string into out; false when absent. */
static bool
b64dec(const json_t *v, struct sc_buf *out)
{
    sc_buf_reset(out);
    return json_is_string(v) &&
           sc_base64_decode(json_string_value(v), json_string_length(v), out) == SC_OK;
}

/* ---- the daemon ------------------------------------------------------------------------------ */

/* Flags of a daemon on the OpenSearch store: url and index, then extra (NULL-terminated). */
struct flags {
    char url[300], index[200];
    const char *v[32];
};

static const char *const *
os_flags(struct flags *f, const char *url, const char *index, const char *const *extra)
{
    size_t n = 0;
    snprintf(f->url, sizeof f->url, "store.opensearch.url=%s", url);
    snprintf(f->index, sizeof f->index, "store.opensearch.index=%s", index);
    f->v[n++] = "store.backend=opensearch";
    f->v[n++] = f->url;
    f->v[n++] = f->index;
    f->v[n++] = "store.opensearch.flush_ms=50";
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

/* wait_stored() waits until the store is "ok" with nothing queued; returns the last persistence object. */
static json_t *
wait_stored(natsConnection *nc, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    json_t *p = NULL;

    while (sc_now_mono_ms() < deadline) {
        json_decref(p);
        p = persistence(nc);
        const char *st = it_json_str(p, "state");
        if (st && strcmp(st, "ok") == 0 && it_json_int(p, "queued_writes") == 0)
            return p;
        it_sleep_ms(100);
    }
    char *dump = it_json_dump(p);
    fprintf(stderr, "the store did not catch up in %d ms: %s\n", timeout_ms, dump);
    free(dump);
    json_decref(p);
    fail();
    return NULL;
}

/* kill9() kills the daemon with SIGKILL and reaps it. */
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

/* ---- envelopes with metadata and raw payloads ------------------------------------------------ */

struct penv {
    const char *task_id;
    const void *task_mp; /* MessagePack value; NULL: {"n": n} */
    size_t task_len;
    int64_t n;
    const char *error;   /* bytes, may be invalid UTF-8 */
    size_t error_len;
    const char *retry_policy;
    const char *retry_subject;
    int max_retries;     /* -1: absent */
    const char *meta_key; /* one metadata key (value: n), NULL: no metadata */
};

static void
pk_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static void
penv_pack(const struct penv *p, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    int n = 3 + (p->retry_policy != NULL) + (p->retry_subject != NULL) + (p->max_retries >= 0) +
            (p->meta_key != NULL);

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (size_t)n);
    pk_str(&pk, "task_id", 7);
    pk_str(&pk, p->task_id, strlen(p->task_id));
    pk_str(&pk, "task", 4);
    if (p->task_mp) {
        msgpack_sbuffer_write(sb, p->task_mp, p->task_len);
    } else {
        msgpack_pack_map(&pk, 1);
        pk_str(&pk, "n", 1);
        msgpack_pack_int64(&pk, p->n);
    }
    pk_str(&pk, "error", 5);
    pk_str(&pk, p->error, p->error_len ? p->error_len : strlen(p->error));
    if (p->retry_policy) {
        pk_str(&pk, "retry_policy", 12);
        pk_str(&pk, p->retry_policy, strlen(p->retry_policy));
    }
    if (p->retry_subject) {
        pk_str(&pk, "retry_subject", 13);
        pk_str(&pk, p->retry_subject, strlen(p->retry_subject));
    }
    if (p->max_retries >= 0) {
        pk_str(&pk, "max_retries", 11);
        msgpack_pack_int(&pk, p->max_retries);
    }
    if (p->meta_key) {
        pk_str(&pk, "metadata", 8);
        msgpack_pack_map(&pk, 2);
        pk_str(&pk, p->meta_key, strlen(p->meta_key));
        msgpack_pack_int64(&pk, p->n);
        pk_str(&pk, "nested", 6);
        msgpack_pack_map(&pk, 1);
        pk_str(&pk, p->meta_key, strlen(p->meta_key));
        pk_str(&pk, "x", 1);
    }
}

static void
penv_publish(natsConnection *nc, const char *subject, const struct penv *p)
{
    msgpack_sbuffer sb;
    penv_pack(p, &sb);
    IT_CHECK(natsConnection_Publish(nc, subject, sb.data, (int)sb.size) == NATS_OK, "publish");
    msgpack_sbuffer_destroy(&sb);
}

/* penv_request() sends the envelope as a request; returns the ack (new reference) or NULL. */
static json_t *
penv_request(natsConnection *nc, const char *subject, const struct penv *p)
{
    msgpack_sbuffer sb;
    penv_pack(p, &sb);
    json_t *r = it_request_bytes(nc, subject, sb.data, sb.size, IT_REQUEST_MS);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

/* The MessagePack of {"n": n}: what the default task is. */
static size_t
task_of(int64_t n, char *out, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t len;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    pk_str(&pk, "n", 1);
    msgpack_pack_int64(&pk, n);
    len = sb.size < cap ? sb.size : cap;
    memcpy(out, sb.data, len);
    msgpack_sbuffer_destroy(&sb);
    return len;
}

/* wait_queue() waits until stats say queue_size == n. */
static void
wait_queue(natsConnection *nc, int64_t n, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms, got = -1;
    while (sc_now_mono_ms() < deadline) {
        json_t *s = it_admin_stats(nc);
        got = it_json_int(s, "queue_size");
        json_decref(s);
        if (got == n)
            return;
        it_sleep_ms(100);
    }
    IT_CHECK(false, "queue_size %lld, expected %lld", (long long)got, (long long)n);
}

/* ---- 1. 10,000 failures -> the same 10,000 documents ----------------------------------------- */

static void
test_ten_thousand(void **state)
{
    char index[128];
    struct flags f;
    const int N = 10000;
    /* Paused retries: the tasks keep the state they were stored with while we compare. */
    const char *extra[] = {"retry_processor_enabled=false", "max_size=20000", NULL};
    struct it_env *e;

    test_index("tenk", index, sizeof index);
    e = it_env_start("persist-10k", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;

    char id[64], err[64];
    for (int i = 0; i < N; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "t%05d", i);
        snprintf(err, sizeof err, i % 2 ? "connection refused #%d" : "400 invalid field #%d", i);
        p.task_id = id;
        p.n = i;
        p.error = err;
        p.max_retries = -1;
        penv_publish(e->nc, "dlq.failed.tenk", &p);
    }
    wait_queue(e->nc, N, 120000);
    json_decref(wait_stored(e->nc, 120000));
    IT_CHECK(os_count(index, NULL) == N, "count: %lld documents, expected %d",
             (long long)os_count(index, NULL), N);

    /* Content: every document against what was sent and what admin list says. */
    json_t *all = os_all(index);
    IT_CHECK(json_object_size(all) == (size_t)N, "%zu distinct documents", json_object_size(all));
    struct sc_buf b;
    sc_buf_init(&b, 1 << 20);
    char want[64];
    size_t seen = 0;
    const char *cursor = NULL;
    json_t *page = NULL;
    do {
        char req[128];
        if (cursor)
            snprintf(req, sizeof req, "{\"limit\":1000,\"cursor\":\"%s\"}", cursor);
        else
            snprintf(req, sizeof req, "{\"limit\":1000}");
        json_t *next = it_request_json(e->nc, "dlq.admin.list", req, IT_REQUEST_MS);
        json_decref(page);
        page = next;
        IT_CHECK(page != NULL, "admin list");
        json_t *tasks = json_object_get(page, "tasks"), *t;
        size_t i;
        json_array_foreach(tasks, i, t) {
            const char *tid = it_json_str(t, "task_id");
            json_t *doc = json_object_get(all, tid);
            int n = atoi(tid + 1);
            IT_CHECK(doc != NULL, "no document for %s", tid);
            static const char *const same[] = {"status", "subject", "error_category", "created_at",
                                               "next_retry_at"};
            for (size_t k = 0; k < SC_ARRAY_LEN(same); k++) {
                json_t *a = json_object_get(t, same[k]), *c = json_object_get(doc, same[k]);
                IT_CHECK(json_equal(a, c) || (json_is_null(a) && !c), "%s: %s differs", tid, same[k]);
            }
            IT_CHECK(it_json_int(doc, "retry_count") == it_json_int(t, "retry_count") &&
                         it_json_int(doc, "max_retries") == it_json_int(t, "max_retries"),
                     "%s: counts differ", tid);
            IT_CHECK(json_is_true(json_object_get(doc, "parked")) == json_is_true(json_object_get(t, "parked")),
                     "%s: parked differs", tid);
            snprintf(want, sizeof want, n % 2 ? "connection refused #%d" : "400 invalid field #%d", n);
            IT_CHECK(strcmp(it_json_str(doc, "error"), want) == 0, "%s: error '%s'", tid,
                     it_json_str(doc, "error"));
            char mp[32];
            size_t mlen = task_of(n, mp, sizeof mp);
            IT_CHECK(b64dec(json_object_get(doc, "task_mp"), &b) && b.len == mlen &&
                         memcmp(b.data, mp, mlen) == 0,
                     "%s: task bytes differ", tid);
            IT_CHECK(it_json_int(json_object_get(doc, "task"), "n") == n, "%s: task rendering", tid);
            IT_CHECK((uint64_t)it_json_int(doc, "_version") == (uint64_t)it_json_int(doc, "version"),
                     "%s: _version is not the task's version", tid);
            seen++;
        }
        cursor = it_json_str(page, "next_cursor");
    } while (cursor);
    json_decref(page);
    IT_CHECK(seen == (size_t)N, "admin list walked %zu tasks", seen);
    sc_buf_destroy(&b);
    json_decref(all);
    os_drop(index);
    e->passed = true;
}

/* ---- 2. kill -9, restart: every non-terminal task is back ------------------------------------ */

/* Fields that must survive a restart unchanged. */
static void
check_same_task(const json_t *before, const json_t *after, bool was_retrying)
{
    const char *id = it_json_str(before, "task_id");
    static const char *const same[] = {"subject", "retry_subject", "error", "error_type",
                                       "error_category", "classifier_rule", "retry_policy",
                                       "created_at", "first_failed_at", "metadata", "repos",
                                       "task", "task_size", "max_retries", "retry_count",
                                       "episode", "parked", "park_reason"};

    IT_CHECK(after != NULL, "%s: gone after the restart", id);
    for (size_t k = 0; k < SC_ARRAY_LEN(same); k++)
        IT_CHECK(json_equal(json_object_get(before, same[k]), json_object_get(after, same[k])),
                 "%s: %s differs after the restart", id, same[k]);
    if (was_retrying) {
        /* Its attempt's outcome is unknown: pending again, due now, the attempt not counted. */
        const char *st = it_json_str(after, "status");
        IT_CHECK(st && (strcmp(st, "pending") == 0 || strcmp(st, "retrying") == 0),
                 "%s: status %s after the restart", id, st ? st : "?");
    } else {
        IT_CHECK(json_equal(json_object_get(before, "status"), json_object_get(after, "status")),
                 "%s: status %s -> %s", id, it_json_str(before, "status"), it_json_str(after, "status"));
        IT_CHECK(json_equal(json_object_get(before, "next_retry_at"), json_object_get(after, "next_retry_at")),
                 "%s: next_retry_at %s -> %s", id, it_json_str(before, "next_retry_at"),
                 it_json_str(after, "next_retry_at"));
        IT_CHECK(json_equal(json_object_get(before, "last_attempt_at"), json_object_get(after, "last_attempt_at")),
                 "%s: last_attempt_at differs", id);
        /* History: the same entries, in order. */
        IT_CHECK(json_equal(json_object_get(before, "history"), json_object_get(after, "history")),
                 "%s: history differs", id);
    }
}

static void
test_kill9_restart(void **state)
{
    char index[128];
    struct flags f;
    /* Linear steps of 10 min keep scheduled tasks pending; retries time out after 10 min. */
    const char *extra[] = {"backoff.linear_step_ms=600000", "retry.timeout_ms=600000", NULL};
    const char *const *flags;
    struct it_env *e;
    enum { PARKED = 0, PENDING, EXHAUSTED, FAILED_ONCE, RETRYING, ACKED, GROUPS };
    static const char *const gname[] = {"parked", "pending", "exhausted", "failed1", "retrying", "acked"};
    const int per = quick() ? 5 : 20;
    char id[64];

    test_index("kill9", index, sizeof index);
    flags = os_flags(&f, os_url(), index, extra);
    e = it_env_start("persist-kill9", flags);
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
            struct penv p = {0};
            snprintf(id, sizeof id, "%s-%02d", gname[g], i);
            p.task_id = id;
            p.n = g * 100 + i;
            p.max_retries = -1;
            p.error = "connection refused";
            p.retry_policy = "linear";
            p.meta_key = gname[g];
            switch (g) {
            case PARKED: p.error = "400 invalid email"; p.retry_policy = NULL; break;
            case EXHAUSTED: p.max_retries = 0; break;
            case FAILED_ONCE: p.retry_subject = "dlq.retry.failing"; break;
            case RETRYING: p.retry_policy = "immediate"; p.retry_subject = "dlq.retry.silent"; break;
            default: break;
            }
            if (g == ACKED) {
                /* Acknowledged requests: "accepted" means "stored", so they survive at once. */
                json_t *ack = penv_request(e->nc, "dlq.failed.kill9", &p);
                IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack for %s", id);
                json_decref(ack);
            } else {
                penv_publish(e->nc, "dlq.failed.kill9", &p);
            }
        }
    }
    wait_queue(e->nc, GROUPS * per, IT_WAIT_MS);
    /* One failed attempt for the failed1 group (admin retry now; the worker answers failure). */
    for (int i = 0; i < per; i++) {
        snprintf(id, sizeof id, "failed1-%02d", i);
        json_decref(it_admin_task(e->nc, "retry", id));
    }
    for (int i = 0; i < per; i++) {
        bool ok = false;
        snprintf(id, sizeof id, "failed1-%02d", i);
        for (int k = 0; k < 200 && !ok; k++) {
            json_t *t = it_admin_get(e->nc, id);
            ok = it_json_int(t, "retry_count") == 1 && strcmp(it_json_str(t, "status"), "pending") == 0;
            json_decref(t);
            if (!ok)
                it_sleep_ms(20);
        }
        IT_CHECK(ok, "%s did not fail its first attempt", id);
        bool st;
        snprintf(id, sizeof id, "retrying-%02d", i);
        json_decref(it_wait_task_status(e->nc, id, "retrying", IT_WAIT_MS, &st));
        IT_CHECK(st, "%s is not retrying", id);
    }
    json_decref(wait_stored(e->nc, 30000));

    /* The state before the crash. */
    json_t *before = json_object();
    for (int g = 0; g < GROUPS; g++)
        for (int i = 0; i < per; i++) {
            snprintf(id, sizeof id, "%s-%02d", gname[g], i);
            json_object_set_new(before, id, it_admin_get(e->nc, id));
        }
    size_t silent_before = it_rec_count(silent);

    kill9(&e->dmn);
    int64_t restarted = sc_now_wall_ms();
    restart(e, flags);

    json_t *p = persistence(e->nc);
    IT_CHECK(it_json_int(p, "loaded") == GROUPS * per, "loaded %lld tasks, expected %d",
             (long long)it_json_int(p, "loaded"), GROUPS * per);
    json_decref(p);
    const char *k;
    json_t *b;
    json_object_foreach(before, k, b) {
        json_t *a = it_admin_get(e->nc, k);
        bool was_retrying = strncmp(k, "retrying-", 9) == 0;
        check_same_task(b, a, was_retrying);
        if (was_retrying) {
            /* "pending due now": next_retry_at within the restart, or already retried. */
            const char *nra = it_json_str(a, "next_retry_at");
            int64_t ms = 0;
            if (nra)
                sc_parse_rfc3339(nra, strlen(nra), &ms);
            IT_CHECK(!nra || (ms >= restarted - 1000 && ms <= sc_now_wall_ms() + 1000),
                     "%s: next_retry_at %s is not 'now'", k, nra);
        }
        json_decref(a);
    }
    /* The retrying tasks go out again with the same attempt number: the lost attempt was not counted. */
    IT_CHECK(it_rec_wait(silent, silent_before + (size_t)per, IT_WAIT_MS),
             "the retrying tasks were not retried after the restart (%zu new)",
             it_rec_count(silent) - silent_before);
    for (size_t i = silent_before; i < it_rec_count(silent); i++)
        IT_CHECK(strcmp(it_rec_header(it_rec_get(silent, i), "Dlq-Attempt"), "1") == 0,
                 "attempt %s after the restart", it_rec_header(it_rec_get(silent, i), "Dlq-Attempt"));
    json_decref(before);
    os_drop(index);
    e->passed = true;
}

/* ---- 3. OpenSearch stopped for 30 s under a steady load -------------------------------------- */

struct loader {
    natsConnection *nc;
    volatile int stop;
    int sent;
    int interval_ms;
    pthread_t th;
};

/* Publishes a failure every interval_ms: even ones parked, odd ones retried at once (and completed). */
static void *
load_run(void *arg)
{
    struct loader *l = arg;
    char id[64];

    while (!__atomic_load_n(&l->stop, __ATOMIC_RELAXED)) {
        struct penv p = {0};
        snprintf(id, sizeof id, "load-%05d", l->sent);
        p.task_id = id;
        p.n = l->sent;
        p.max_retries = -1;
        if (l->sent % 2) {
            p.error = "503 temporarily unavailable";
            p.retry_policy = "immediate";
            p.retry_subject = "dlq.retry.outage";
        } else {
            p.error = "400 invalid";
        }
        penv_publish(l->nc, "dlq.failed.outage", &p);
        l->sent++;
        it_sleep_ms(l->interval_ms);
    }
    return NULL;
}

/*
 * compare_index() checks that the index holds exactly the tasks the daemon
 * holds (ids, status, retry_count, version): the index converged.
 */
static void
compare_index(natsConnection *nc, const char *index, int64_t expect_tasks)
{
    json_t *all = os_all(index), *page = NULL, *t;
    const char *cursor = NULL;
    size_t n = 0, i;

    do {
        char req[128];
        if (cursor)
            snprintf(req, sizeof req, "{\"limit\":1000,\"cursor\":\"%s\"}", cursor);
        else
            snprintf(req, sizeof req, "{\"limit\":1000}");
        json_t *next = it_request_json(nc, "dlq.admin.list", req, IT_REQUEST_MS);
        json_decref(page);
        page = next;
        IT_CHECK(page != NULL, "admin list");
        json_array_foreach(json_object_get(page, "tasks"), i, t) {
            const char *tid = it_json_str(t, "task_id");
            json_t *doc = json_object_get(all, tid), *full = it_admin_get(nc, tid);
            IT_CHECK(doc != NULL, "%s is in memory but not in the index", tid);
            IT_CHECK(json_equal(json_object_get(doc, "status"), json_object_get(full, "status")) &&
                         it_json_int(doc, "retry_count") == it_json_int(full, "retry_count") &&
                         it_json_int(doc, "version") == it_json_int(full, "version"),
                     "%s: index %s v%lld, memory %s v%lld", tid, it_json_str(doc, "status"),
                     (long long)it_json_int(doc, "version"), it_json_str(full, "status"),
                     (long long)it_json_int(full, "version"));
            json_decref(full);
            n++;
        }
        cursor = it_json_str(page, "next_cursor");
    } while (cursor);
    json_decref(page);
    IT_CHECK(n == json_object_size(all), "memory holds %zu tasks, the index %zu documents", n,
             json_object_size(all));
    if (expect_tasks >= 0)
        IT_CHECK((int64_t)n == expect_tasks, "%zu tasks, expected %lld", n, (long long)expect_tasks);
    json_decref(all);
}

static void
test_outage(void **state)
{
    char index[128];
    struct flags f;
    /* Completed tasks are deleted from the index: tombstones must replay too. */
    const char *extra[] = {"store.keep_completed=false", NULL};
    struct it_env *e;
    int outage_ms = quick() ? 10000 : 30000;

    test_index("outage", index, sizeof index);
    e = it_env_start("persist-outage", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;

    natsConnection *wc = it_env_connect(e, "worker");
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.outage", NULL, 100000, false);
    struct it_step ok = {IT_ACT_OK, NULL, NULL};
    it_recorder_set_plan(w, NULL, 0, ok);
    natsConnection *lc = it_env_connect(e, "loader");
    struct loader l = {lc, 0, 0, 20, 0};
    IT_CHECK(pthread_create(&l.th, NULL, load_run, &l) == 0, "loader thread");

    it_sleep_ms(3000);
    os_ctl("stop");
    int64_t stopped = sc_now_mono_ms();
    /* Degraded within a few seconds, with queued writes and the error. */
    bool degraded = false;
    json_t *p = NULL;
    while (sc_now_mono_ms() - stopped < outage_ms) {
        json_decref(p);
        p = persistence(e->nc);
        const char *st = it_json_str(p, "state");
        if (st && strcmp(st, "degraded") == 0 && it_json_int(p, "queued_writes") > 0 &&
            it_json_str(p, "last_error"))
            degraded = true;
        IT_CHECK(it_admin_health_ok(e->nc), "the daemon must keep serving while OpenSearch is down");
        it_sleep_ms(500);
    }
    char *dump = it_json_dump(p);
    fprintf(stderr, "[outage] after %d ms without OpenSearch: %s\n", outage_ms, dump);
    free(dump);
    json_decref(p);
    IT_CHECK(degraded, "stats never showed persistence degraded with queued writes and last_error");
    os_ctl("start");
    it_sleep_ms(3000);
    __atomic_store_n(&l.stop, 1, __ATOMIC_RELAXED);
    pthread_join(l.th, NULL);
    fprintf(stderr, "[outage] %d failures published\n", l.sent);

    /* Every odd task completes (and is deleted); every even one stays parked. */
    wait_queue(e->nc, (l.sent + 1) / 2, 60000);
    json_decref(wait_stored(e->nc, 60000));
    compare_index(e->nc, index, (l.sent + 1) / 2);
    IT_CHECK(os_count(index, NULL) == (l.sent + 1) / 2, "documents: %lld, expected %d",
             (long long)os_count(index, NULL), (l.sent + 1) / 2);
    os_drop(index);
    e->passed = true;
}

/* ---- 4. a bulk in which some items fail: only those are sent again --------------------------- */

/*
 * A proxy in front of the real node, on its own thread and event loop. It
 * forwards every request; in a _bulk body it answers the items whose id
 * starts with "flaky-" with 429 the first time it sees them (without
 * forwarding them) and those starting with "bad-" with 400 always, and
 * forwards the rest. A body holding an id that starts with "poison-" is
 * refused as a whole with 400 (as OpenSearch refuses a request one of whose
 * items fails validation), one holding "toolarge-" as a whole with 413;
 * with block429 set every _bulk is refused as a whole with 429
 * cluster_block_exception (a flood-stage disk block). It counts how often it
 * saw each id.
 */
struct proxy {
    struct event_base *base;
    struct evhttp *http;
    pthread_t th;
    int port;
    char url[64];
    pthread_mutex_t mu;
    json_t *seen;   /* id -> times seen in a _bulk body */
    json_t *failed; /* ids answered 429 once */
    int bulks;
    int stop;
    int down; /* answer 503 to everything */
    int block429; /* answer 429 cluster_block_exception to every _bulk */
    int whole_refusals; /* bodies refused as a whole (poison-, toolarge-) */
    struct sc_buf fwd;
};

static void
proxy_count(struct proxy *px, const char *id)
{
    pthread_mutex_lock(&px->mu);
    json_t *v = json_object_get(px->seen, id);
    json_object_set_new(px->seen, id, json_integer(v ? json_integer_value(v) + 1 : 1));
    pthread_mutex_unlock(&px->mu);
}

static void
proxy_bulk(struct proxy *px, struct evhttp_request *req, const char *uri, const char *body, size_t len)
{
    json_t *items = json_array(), *fwd_idx = json_array();
    const char *p = body, *end = body + len;
    struct sc_buf resp;
    long st = 200;
    int whole = 0;

    sc_buf_reset(&px->fwd);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        json_t *act = json_loadb(p, (size_t)(line_end - p), 0, NULL);
        const char *op = NULL;
        json_t *meta = NULL;
        const char *doc = NULL, *doc_end = NULL;
        if (!act)
            break;
        json_object_foreach(act, op, meta) break;
        p = nl ? nl + 1 : end;
        if (op && strcmp(op, "delete") != 0) { /* index: a document line follows */
            doc = p;
            nl = memchr(p, '\n', (size_t)(end - p));
            doc_end = nl ? nl : end;
            p = nl ? nl + 1 : end;
        }
        const char *id = json_string_value(json_object_get(meta, "_id"));
        proxy_count(px, id);
        if (strncmp(id, "poison-", 7) == 0)
            whole = 400;
        else if (strncmp(id, "toolarge-", 9) == 0 && !whole)
            whole = 413;
        pthread_mutex_lock(&px->mu);
        bool inject429 = strncmp(id, "flaky-", 6) == 0 && !json_object_get(px->failed, id);
        if (inject429)
            json_object_set_new(px->failed, id, json_true());
        pthread_mutex_unlock(&px->mu);
        if (inject429) {
            json_array_append_new(items, json_pack("{s:{s:s,s:i,s:{s:s,s:s}}}", op, "_id", id, "status", 429,
                                                   "error", "type", "es_rejected_execution_exception",
                                                   "reason", "injected by the test proxy"));
        } else if (strncmp(id, "bad-", 4) == 0) {
            json_array_append_new(items, json_pack("{s:{s:s,s:i,s:{s:s,s:s}}}", op, "_id", id, "status", 400,
                                                   "error", "type", "mapper_parsing_exception",
                                                   "reason", "injected by the test proxy"));
        } else {
            json_array_append_new(items, json_null());
            json_array_append_new(fwd_idx, json_integer((json_int_t)json_array_size(items) - 1));
            char *a = json_dumps(act, JSON_COMPACT);
            sc_buf_append(&px->fwd, a, strlen(a));
            sc_buf_appendc(&px->fwd, '\n');
            free(a);
            if (doc) {
                sc_buf_append(&px->fwd, doc, (size_t)(doc_end - doc));
                sc_buf_appendc(&px->fwd, '\n');
            }
        }
        json_decref(act);
    }
    if (whole) {
        struct evbuffer *ob = evbuffer_new();
        if (whole == 400)
            evbuffer_add_printf(ob, "{\"error\":{\"type\":\"action_request_validation_exception\","
                                    "\"reason\":\"Validation Failed: 1: injected by the test proxy;\"},"
                                    "\"status\":400}");
        else
            evbuffer_add_printf(ob, "{\"error\":{\"type\":\"content_too_long\","
                                    "\"reason\":\"injected by the test proxy\"},\"status\":413}");
        evhttp_send_reply(req, whole, "refused", ob);
        evbuffer_free(ob);
        json_decref(items);
        json_decref(fwd_idx);
        pthread_mutex_lock(&px->mu);
        px->whole_refusals++;
        pthread_mutex_unlock(&px->mu);
        return;
    }
    if (json_array_size(fwd_idx)) {
        sc_buf_init(&resp, 256u * 1024 * 1024);
        st = os_call_raw(os_url(), "POST", uri, "application/x-ndjson", px->fwd.data, px->fwd.len, &resp);
        json_t *r = st == 200 ? json_loadb(resp.data, resp.len, 0, NULL) : NULL;
        json_t *ri = json_object_get(r, "items");
        if (st == 200 && json_array_size(ri) == json_array_size(fwd_idx)) {
            size_t i;
            json_t *v;
            json_array_foreach(fwd_idx, i, v)
                json_array_set(items, (size_t)json_integer_value(v), json_array_get(ri, i));
        } else {
            /* Pass a failed request through as it came. */
            struct evbuffer *ob = evbuffer_new();
            evbuffer_add(ob, resp.data ? resp.data : "", resp.len);
            evhttp_send_reply(req, st ? (int)st : 502, "proxied", ob);
            evbuffer_free(ob);
            json_decref(r);
            sc_buf_destroy(&resp);
            json_decref(items);
            json_decref(fwd_idx);
            return;
        }
        json_decref(r);
        sc_buf_destroy(&resp);
    }
    json_t *out = json_pack("{s:b,s:o}", "errors", 1, "items", items);
    char *text = json_dumps(out, JSON_COMPACT);
    struct evbuffer *ob = evbuffer_new();
    evbuffer_add(ob, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", ob);
    evbuffer_free(ob);
    free(text);
    json_decref(out);
    json_decref(fwd_idx);
    pthread_mutex_lock(&px->mu);
    px->bulks++;
    pthread_mutex_unlock(&px->mu);
}

static void
proxy_handle(struct evhttp_request *req, void *arg)
{
    struct proxy *px = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *body = malloc(len + 1);
    const char *method;
    struct sc_buf resp;
    long st;

    evbuffer_copyout(in, body, len);
    body[len] = '\0';
    if (__atomic_load_n(&px->down, __ATOMIC_RELAXED)) {
        struct evbuffer *ob = evbuffer_new();
        evbuffer_add_printf(ob, "{\"error\":{\"type\":\"unavailable\",\"reason\":\"the test proxy is down\"}}");
        evhttp_send_reply(req, 503, "down", ob);
        evbuffer_free(ob);
        free(body);
        return;
    }
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: method = "GET"; break;
    case EVHTTP_REQ_PUT: method = "PUT"; break;
    case EVHTTP_REQ_DELETE: method = "DELETE"; break;
    case EVHTTP_REQ_HEAD: method = "HEAD"; break;
    default: method = "POST"; break;
    }
    if (strcmp(method, "POST") == 0 && strstr(uri, "/_bulk") &&
        __atomic_load_n(&px->block429, __ATOMIC_RELAXED)) {
        struct evbuffer *ob = evbuffer_new();
        evbuffer_add_printf(ob, "{\"error\":{\"root_cause\":[{\"type\":\"cluster_block_exception\","
                                "\"reason\":\"blocked\"}],\"type\":\"cluster_block_exception\","
                                "\"reason\":\"index [x] blocked by: [TOO_MANY_REQUESTS/12/disk usage "
                                "exceeded flood-stage watermark, index has read-only-allow-delete block];\"},"
                                "\"status\":429}");
        evhttp_send_reply(req, 429, "blocked", ob);
        evbuffer_free(ob);
        free(body);
        return;
    }
    if (strcmp(method, "POST") == 0 && strstr(uri, "/_bulk")) {
        proxy_bulk(px, req, uri, body, len);
        free(body);
        return;
    }
    sc_buf_init(&resp, 256u * 1024 * 1024);
    st = os_call_raw(os_url(), method, uri, len ? "application/json" : NULL, len ? body : NULL, len, &resp);
    struct evbuffer *ob = evbuffer_new();
    evbuffer_add(ob, resp.data ? resp.data : "", resp.len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, st ? (int)st : 502, "proxied", ob);
    evbuffer_free(ob);
    sc_buf_destroy(&resp);
    free(body);
}

/* A tick so that the loop notices loopbreak from the test thread (the base has no thread support). */
static void
proxy_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void *
proxy_run(void *arg)
{
    struct proxy *px = arg;
    struct timeval tv = {0, 100000};
    struct event *tick = event_new(px->base, -1, EV_PERSIST, proxy_tick, NULL);

    event_add(tick, &tv);
    while (!__atomic_load_n(&px->stop, __ATOMIC_RELAXED))
        event_base_loop(px->base, EVLOOP_ONCE);
    event_free(tick);
    return NULL;
}

static struct proxy *
proxy_start(void)
{
    struct proxy *px = calloc(1, sizeof *px);
    px->base = event_base_new();
    px->http = evhttp_new(px->base);
    evhttp_set_allowed_methods(px->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_max_body_size(px->http, 256u * 1024 * 1024);
    evhttp_set_gencb(px->http, proxy_handle, px);
    px->port = it_free_port();
    IT_CHECK(evhttp_bind_socket(px->http, "127.0.0.1", (uint16_t)px->port) == 0, "proxy bind");
    snprintf(px->url, sizeof px->url, "http://127.0.0.1:%d", px->port);
    pthread_mutex_init(&px->mu, NULL);
    px->seen = json_object();
    px->failed = json_object();
    sc_buf_init(&px->fwd, 256u * 1024 * 1024);
    IT_CHECK(pthread_create(&px->th, NULL, proxy_run, px) == 0, "proxy thread");
    return px;
}

static void
proxy_stop(struct proxy *px)
{
    __atomic_store_n(&px->stop, 1, __ATOMIC_RELAXED);
    pthread_join(px->th, NULL);
    evhttp_free(px->http);
    event_base_free(px->base);
    json_decref(px->seen);
    json_decref(px->failed);
    sc_buf_destroy(&px->fwd);
    pthread_mutex_destroy(&px->mu);
    free(px);
}

static int64_t
proxy_seen(struct proxy *px, const char *id)
{
    pthread_mutex_lock(&px->mu);
    json_t *v = json_object_get(px->seen, id);
    int64_t n = v ? json_integer_value(v) : 0;
    pthread_mutex_unlock(&px->mu);
    return n;
}

static void
test_partial_bulk(void **state)
{
    char index[128];
    struct flags f;
    /* Big batches so that the failing items share bulks with the good ones. */
    const char *extra[] = {"store.opensearch.flush_ms=500", NULL};
    struct it_env *e;
    const int N = 300;
    char id[64];

    test_index("partial", index, sizeof index);
    struct proxy *px = proxy_start();
    e = it_env_start("persist-partial", os_flags(&f, px->url, index, extra));
    if (!e)
        proxy_stop(px);
    assert_non_null(e);
    *state = e;

    /* Parked tasks (a validation error): each is written once unless its write fails. */
    for (int i = 0; i < N; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "%s-%03d", i % 5 == 0 ? "flaky" : i % 50 == 1 ? "bad" : "good", i);
        p.task_id = id;
        p.n = i;
        p.max_retries = -1;
        p.error = "422 schema mismatch";
        penv_publish(e->nc, "dlq.failed.partial", &p);
    }
    wait_queue(e->nc, N, IT_WAIT_MS);
    json_t *pers = wait_stored(e->nc, 60000);
    int nbad = 0, nflaky = 0;
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "%s-%03d", i % 5 == 0 ? "flaky" : i % 50 == 1 ? "bad" : "good", i);
        int64_t want = i % 5 == 0 ? 2 : 1;
        IT_CHECK(proxy_seen(px, id) == want, "%s was sent %lld times, expected %lld", id,
                 (long long)proxy_seen(px, id), (long long)want);
        if (i % 50 == 1 && i % 5 != 0) {
            nbad++;
            json_t *t = it_admin_get(e->nc, id); /* refused for good, kept in memory */
            IT_CHECK(t && it_json_str(t, "task_id"), "%s is not kept in memory", id);
            json_decref(t);
        }
        nflaky += i % 5 == 0;
    }
    IT_CHECK(it_json_int(pers, "rejected") == nbad, "rejected %lld, expected %d",
             (long long)it_json_int(pers, "rejected"), nbad);
    IT_CHECK(it_json_int(pers, "retried") == nflaky, "retried %lld, expected %d",
             (long long)it_json_int(pers, "retried"), nflaky);
    IT_CHECK(os_count(index, NULL) == N - nbad, "documents: %lld, expected %d",
             (long long)os_count(index, NULL), N - nbad);
    fprintf(stderr, "[partial] %d bulks, %d items answered 429 once, %d answered 400\n", px->bulks,
            nflaky, nbad);
    json_decref(pers);
    e->passed = true;
    it_env_stop(e);
    *state = NULL;
    proxy_stop(px);
    os_drop(index);
}

/* ---- 4b. degraded at start, then the load happens in the background -------------------------- */

static void
test_background_load(void **state)
{
    char index[128], id[64];
    struct flags f;
    const char *extra[] = {"store.keep_completed=false", NULL};
    struct it_env *e;
    const int N = 20;

    test_index("bgload", index, sizeof index);
    e = it_env_start("persist-bgload", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;
    for (int i = 0; i < N; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "old-%02d", i);
        p.task_id = id;
        p.n = i;
        p.max_retries = -1;
        p.error = "400 invalid";
        penv_publish(e->nc, "dlq.failed.bgload", &p);
    }
    wait_queue(e->nc, N, IT_WAIT_MS);
    json_decref(wait_stored(e->nc, IT_WAIT_MS));
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "clean stop");

    /* The next process starts while OpenSearch answers 503. */
    struct proxy *px = proxy_start();
    __atomic_store_n(&px->down, 1, __ATOMIC_RELAXED);
    struct flags f2;
    natsConnection *wc = it_env_connect(e, "worker");
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.bgload", NULL, 100, false);
    struct it_step ok = {IT_ACT_OK, NULL, NULL};
    it_recorder_set_plan(w, NULL, 0, ok);
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, os_flags(&f2, px->url, index, extra)) == 0 &&
                 it_daemon_wait_ready(&e->dmn, e->nc, 60000) == 0,
             "daemon start while OpenSearch is down");
    json_t *p = persistence(e->nc);
    IT_CHECK(strcmp(it_json_str(p, "state"), "degraded") == 0, "state %s", it_json_str(p, "state"));
    json_decref(p);
    wait_queue(e->nc, 0, IT_WAIT_MS);
    /* Meanwhile: a new failure for old-03 (kept), and old-05 fails again and completes (removed). */
    struct penv p3 = {0}, p5 = {0};
    p3.task_id = "old-03";
    p3.error = "422 invalid again"; /* parked: it stays while we look */
    p3.max_retries = -1;
    p3.n = 333;
    penv_publish(e->nc, "dlq.failed.bgload", &p3);
    p5.task_id = "old-05";
    p5.error = "connection refused";
    p5.max_retries = -1;
    p5.retry_policy = "immediate";
    p5.n = 555;
    penv_publish(e->nc, "dlq.failed.bgload", &p5);
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "old-05 was not retried");
    char stb[32];
    for (int k = 0;
         k < 200 && strcmp(it_task_status(e->nc, "old-05", stb, sizeof stb), "absent") != 0; k++)
        it_sleep_ms(20);
    IT_CHECK(strcmp(stb, "absent") == 0, "old-05 is %s, expected completed and removed", stb);

    __atomic_store_n(&px->down, 0, __ATOMIC_RELAXED);
    json_decref(wait_stored(e->nc, 60000));
    wait_queue(e->nc, N - 1, IT_WAIT_MS);
    json_t *t3 = it_admin_get(e->nc, "old-03");
    IT_CHECK(t3 && strcmp(it_json_str(t3, "error"), "422 invalid again") == 0,
             "old-03 must keep the newer failure, not the loaded document");
    json_decref(t3);
    IT_CHECK(strcmp(it_task_status(e->nc, "old-05", stb, sizeof stb), "absent") == 0,
             "old-05 came back from its old document");
    p = persistence(e->nc);
    IT_CHECK(it_json_int(p, "loaded") == N - 2 && it_json_int(p, "load_skipped") == 2,
             "loaded %lld, skipped %lld", (long long)it_json_int(p, "loaded"),
             (long long)it_json_int(p, "load_skipped"));
    json_decref(p);
    compare_index(e->nc, index, N - 1);
    e->passed = true;
    it_env_stop(e);
    *state = NULL;
    proxy_stop(px);
    os_drop(index);
}

/* ---- 5. invalid UTF-8 in the error, random bytes in the payload ------------------------------ */

static void
test_binary(void **state)
{
    char index[128];
    struct flags f;
    const char *extra[] = {"retry_processor_enabled=false", NULL};
    const char *const *flags;
    struct it_env *e;
    unsigned char raw[300], task[310];
    static const char bad_error[] = "boom \xff\xfe\xc3\x28 \xed\xa0\x80 end \x01";
    static const char bad_subject[] = "dlq.failed.bin\xff\xc3\x28";
    size_t tlen;
    struct sc_buf b;

    test_index("binary", index, sizeof index);
    flags = os_flags(&f, os_url(), index, extra);
    e = it_env_start("persist-binary", flags);
    assert_non_null(e);
    *state = e;

    it_rand_seed(0x5eed);
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (unsigned char)it_rand_u64();
    /* The task: bin 16 with the random bytes. */
    task[0] = 0xc5;
    task[1] = (unsigned char)(sizeof raw >> 8);
    task[2] = (unsigned char)(sizeof raw & 0xff);
    memcpy(task + 3, raw, sizeof raw);
    tlen = 3 + sizeof raw;

    struct penv p = {0};
    p.task_id = "bin-1";
    p.task_mp = task;
    p.task_len = tlen;
    p.error = bad_error;
    p.error_len = sizeof bad_error - 1;
    p.max_retries = -1;
    p.retry_policy = "linear";
    json_t *ack = penv_request(e->nc, "dlq.failed.binary", &p);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack");
    json_decref(ack);
    /* A failure subject that is not UTF-8 (a valid NATS subject): subject_raw, retry_subject_raw. */
    struct penv p2 = {0};
    p2.task_id = "bin-2";
    p2.n = 2;
    p2.error = "x";
    p2.error_len = 1;
    p2.max_retries = -1;
    p2.retry_policy = "never";
    ack = penv_request(e->nc, bad_subject, &p2);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack of bin-2");
    json_decref(ack);
    json_decref(wait_stored(e->nc, IT_WAIT_MS));

    sc_buf_init(&b, 1 << 20);
    json_t *all = os_all(index), *doc = json_object_get(all, "bin-1");
    IT_CHECK(doc != NULL, "bin-1 is not indexed");
    IT_CHECK(b64dec(json_object_get(doc, "task_mp"), &b) && b.len == tlen && memcmp(b.data, task, tlen) == 0,
             "the indexed payload bytes differ");
    IT_CHECK(b64dec(json_object_get(doc, "error_raw"), &b) && b.len == sizeof bad_error - 1 &&
                 memcmp(b.data, bad_error, b.len) == 0,
             "the indexed error bytes differ");
    IT_CHECK(it_json_str(doc, "error") != NULL, "no readable error text");
    doc = json_object_get(all, "bin-2");
    IT_CHECK(doc != NULL, "bin-2 (a subject that is not UTF-8) is not indexed");
    IT_CHECK(b64dec(json_object_get(doc, "subject_raw"), &b) && b.len == sizeof bad_subject - 1 &&
                 memcmp(b.data, bad_subject, b.len) == 0,
             "the indexed subject bytes differ");
    json_decref(all);

    /* From the index back into a new process, then republished: byte-identical. */
    kill9(&e->dmn);
    const char *extra2[] = {"retry_processor_enabled=true", NULL};
    struct flags f2;
    natsConnection *wc = it_env_connect(e, "worker");
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.binary", NULL, 10, true);
    struct it_step ok = {IT_ACT_OK, NULL, NULL};
    it_recorder_set_plan(w, NULL, 0, ok);
    restart(e, os_flags(&f2, os_url(), index, extra2));
    json_decref(it_admin_task(e->nc, "retry", "bin-1"));
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "no retry after the restart");
    const struct it_rec_msg *m = it_rec_get(w, 0);
    IT_CHECK(m->len == tlen && memcmp(m->body, task, tlen) == 0,
             "the republished payload differs (%zu bytes, expected %zu)", m->len, tlen);
    bool st;
    json_decref(it_wait_task_status(e->nc, "bin-1", "completed", IT_WAIT_MS, &st));
    IT_CHECK(st, "bin-1 did not complete");
    json_t *t2 = it_admin_get(e->nc, "bin-2");
    IT_CHECK(t2 && it_json_str(t2, "task_id") && strcmp(it_json_str(t2, "task_id"), "bin-2") == 0,
             "bin-2 was not loaded back from the index");
    json_decref(t2);
    json_decref(wait_stored(e->nc, IT_WAIT_MS));
    all = os_all(index);
    doc = json_object_get(all, "bin-1");
    IT_CHECK(doc && strcmp(it_json_str(doc, "status"), "completed") == 0, "the index did not follow");
    IT_CHECK(b64dec(json_object_get(doc, "error_raw"), &b) && b.len == sizeof bad_error - 1 &&
                 memcmp(b.data, bad_error, b.len) == 0,
             "the error bytes did not survive the round trip through the index");
    json_decref(all);
    sc_buf_destroy(&b);
    os_drop(index);
    e->passed = true;
}

/*
 * An advisory's task (DESIGN section 16) in the index: the original's bytes
 * (payload_raw, not MessagePack), its headers and the flags are stored; a
 * kill -9 and a load bring them back, and the retry republishes the bytes
 * and the header into ORDERS.
 */
static void
test_advisory_task(void **state)
{
    static const char body[] = "raw\x00\xff\x01 order";
    const size_t blen = sizeof body - 1;
    const char *extra[] = {"advisories.streams=ORDERS", "retry.allowed_subjects=ORDERS.>",
                           "retry.stored_subjects=ORDERS.>", "retry_processor_enabled=false", NULL};
    char index[128];
    struct flags f, f2;
    struct it_env *e;
    natsSubscription *worker;
    natsMsg *m = NULL;
    struct sc_buf b;
    json_t *all, *doc, *t = NULL;
    const char *v = NULL;
    jsCtx *js = NULL;
    bool ok;

    test_index("advisory", index, sizeof index);
    e = it_env_start_js("persist-advisory", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;
    IT_CHECK(natsConnection_JetStream(&js, e->nc, NULL) == NATS_OK, "JetStream context");
    it_js_add_stream(js, "ORDERS", "ORDERS.>");
    worker = it_js_add_worker(js, "ORDERS", "ORDERS.>", "worker", 2);
    it_js_publish(js, body, blen, "ORDERS.new", "t-9", NULL);
    IT_CHECK(it_js_fail_worker(e->nc, worker, 2, NULL) == 2, "the worker saw 2 deliveries");
    for (int i = 0; i < 400 && !(t && it_json_str(t, "status")); i++) {
        json_decref(t);
        t = it_admin_get(e->nc, "ORDERS:1");
        it_sleep_ms(50);
    }
    IT_CHECK(t && it_json_str(t, "status"), "task ORDERS:1 filed from the advisory");
    json_decref(t);
    json_decref(wait_stored(e->nc, IT_WAIT_MS));
    sc_buf_init(&b, 1 << 20);
    all = os_all(index);
    doc = json_object_get(all, "ORDERS:1");
    IT_CHECK(doc != NULL, "ORDERS:1 is not indexed");
    IT_CHECK(json_is_true(json_object_get(doc, "payload_raw")), "payload_raw indexed");
    IT_CHECK(json_is_false(json_object_get(doc, "payload_missing")), "payload_missing indexed");
    IT_CHECK(b64dec(json_object_get(doc, "task_mp"), &b) && b.len == blen &&
                 memcmp(b.data, body, blen) == 0,
             "the indexed payload bytes differ");
    IT_CHECK(b64dec(json_object_get(doc, "headers_raw"), &b) && b.len == 12 &&
                 memcmp(b.data, "X-Trace\0t-9\0", 12) == 0,
             "the indexed headers differ (%zu bytes)", b.len);
    json_decref(all);
    sc_buf_destroy(&b);

    kill9(&e->dmn);
    extra[3] = "retry_processor_enabled=true";
    restart(e, os_flags(&f2, os_url(), index, extra));
    t = it_admin_get(e->nc, "ORDERS:1");
    IT_CHECK(t && json_is_true(it_json_get(t, "payload_raw")), "loaded back with payload_raw");
    IT_CHECK(it_json_int(t, "task_size") == (int64_t)blen, "payload size after the load");
    json_decref(t);
    json_decref(it_admin_task(e->nc, "retry", "ORDERS:1"));
    t = it_wait_task_status(e->nc, "ORDERS:1", "completed", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "ORDERS:1 completed after the restart (stored outcome)");
    json_decref(t);
    IT_CHECK(js_GetMsg(&m, js, "ORDERS", 2, NULL, NULL) == NATS_OK, "the retry is in ORDERS");
    IT_CHECK(natsMsg_GetDataLength(m) == (int)blen && memcmp(natsMsg_GetData(m), body, blen) == 0,
             "the republished payload differs from the original");
    IT_CHECK(natsMsgHeader_Get(m, "X-Trace", &v) == NATS_OK && strcmp(v, "t-9") == 0,
             "the original's header came back from the index");
    natsMsg_Destroy(m);
    natsSubscription_Destroy(worker);
    jsCtx_Destroy(js);
    os_drop(index);
    e->passed = true;
}

/* ---- 6. 1,200 distinct metadata keys: the mapping does not grow ------------------------------ */

static void
test_mapping(void **state)
{
    char index[128], path[256];
    struct flags f;
    const char *extra[] = {"retry_processor_enabled=false", NULL};
    struct it_env *e;
    const int N = 1200;
    char id[64], key[64];
    long st;

    test_index("mapping", index, sizeof index);
    e = it_env_start("persist-mapping", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;

    /* The index exists (made at start, from the template) before any task. */
    snprintf(path, sizeof path, "/%s/_mapping", index);
    json_t *before = os_call("GET", path, NULL, &st);
    IT_CHECK(st == 200 && before, "GET %s: HTTP %ld", path, st);
    for (int i = 0; i < N; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "meta-%04d", i);
        snprintf(key, sizeof key, i % 3 ? "key_%04d" : "dotted.key.%04d", i);
        p.task_id = id;
        p.n = i;
        p.max_retries = -1;
        p.error = "connection refused";
        p.meta_key = key;
        penv_publish(e->nc, "dlq.failed.mapping", &p);
    }
    wait_queue(e->nc, N, IT_WAIT_MS);
    json_decref(wait_stored(e->nc, 60000));
    IT_CHECK(os_count(index, NULL) == N, "documents: %lld", (long long)os_count(index, NULL));
    json_t *after = os_call("GET", path, NULL, &st);
    IT_CHECK(st == 200 && json_equal(before, after), "the mapping changed");
    /* The metadata is still there to read, in _source. */
    json_t *all = os_all(index);
    snprintf(key, sizeof key, "key_%04d", 1);
    IT_CHECK(it_json_int(json_object_get(json_object_get(all, "meta-0001"), "metadata"), key) == 1,
             "metadata not kept in _source");
    char *dump = json_dumps(after, JSON_COMPACT);
    fprintf(stderr, "[mapping] %zu bytes of mapping before and after %d keys\n", strlen(dump), N);
    free(dump);
    json_decref(all);
    json_decref(before);
    json_decref(after);
    os_drop(index);
    e->passed = true;
}

/* ---- 7. unreachable at start, then a write block: degraded, not a crash --------------------- */

static void
test_degraded(void **state)
{
    char index[128], bad[64], path[256];
    struct flags f;
    const char *extra[] = {"retry_processor_enabled=false", NULL};
    struct it_env *e;
    long st;

    /* An address where nothing listens. */
    snprintf(bad, sizeof bad, "http://127.0.0.1:%d", it_free_port());
    test_index("degraded", index, sizeof index);
    e = it_env_start("persist-degraded", os_flags(&f, bad, index, extra));
    assert_non_null(e);
    *state = e;
    json_t *p = persistence(e->nc);
    IT_CHECK(strcmp(it_json_str(p, "state"), "degraded") == 0 && it_json_str(p, "last_error"),
             "an unreachable URL at start must give degraded mode");
    json_decref(p);
    /* Acknowledged right away from memory while degraded. */
    struct penv pe = {0};
    pe.task_id = "deg-1";
    pe.error = "connection refused";
    pe.max_retries = -1;
    json_t *ack = penv_request(e->nc, "dlq.failed.degraded", &pe);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack while degraded");
    json_decref(ack);
    p = persistence(e->nc);
    IT_CHECK(it_json_int(p, "queued_writes") >= 1, "the write is not queued");
    json_decref(p);
    /* Stopped with the write never stored (no spill_dir): exit 3, not 0. */
    IT_CHECK(it_daemon_stop(&e->dmn) == 3, "a stop with writes lost must exit 3");
    e->passed = true;
    it_env_stop(e);
    *state = NULL;

    /* A real node whose index refuses writes (index.blocks.write), then accepts them again. */
    e = it_env_start("persist-block", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;
    snprintf(path, sizeof path, "/%s/_settings", index);
    json_decref(os_call("PUT", path, "{\"index.blocks.write\":true}", &st));
    IT_CHECK(st == 200, "set the write block: HTTP %ld", st);
    pe.task_id = "deg-2";
    penv_publish(e->nc, "dlq.failed.degraded", &pe);
    bool degraded = false;
    for (int i = 0; i < 100 && !degraded; i++) {
        p = persistence(e->nc);
        degraded = strcmp(it_json_str(p, "state"), "degraded") == 0 &&
                   it_json_int(p, "queued_writes") >= 1 && strstr(it_json_str(p, "last_error"), "block");
        json_decref(p);
        it_sleep_ms(100);
    }
    IT_CHECK(degraded, "a write block must give degraded mode with the block in last_error");
    json_decref(os_call("PUT", path, "{\"index.blocks.write\":null}", &st));
    IT_CHECK(st == 200, "clear the write block: HTTP %ld", st);
    json_decref(wait_stored(e->nc, 30000));
    IT_CHECK(os_count(index, "{\"term\":{\"task_id\":\"deg-2\"}}") == 1, "deg-2 was not replayed");
    os_drop(index);
    e->passed = true;
}

/* ---- 8. TLS, a CA file, basic auth: a TLS-terminating proxy with basic auth before the node --- */

/*
 * The node runs without the security plugin, so tls_proxy.py (python3
 * stdlib) stands in front of it: TLS with a throwaway CA and server
 * certificate made here with openssl, basic auth required on every request,
 * and everything else forwarded to the real node and relayed back. Only the
 * daemon goes through it; the checks read the node directly (os_url()).
 * tls_teardown() stops the proxy (and its PR_SET_PDEATHSIG covers a test
 * process that is killed), prints its log when the test failed and removes
 * the certificates.
 */
#define TLS_USER "dlq-sidecar"
#define TLS_PASSWORD "s3cr:et=pw" /* a colon and an equals sign: USERNAME/PASSWORD, not USERPWD */

static struct {
    char dir[IT_PATH_MAX];        /* the CA, the server's key and certificate, the proxy's log */
    char ca[IT_PATH_MAX + 16];    /* dir/ca.pem */
    char log[IT_PATH_MAX + 16];   /* dir/proxy.log */
    char url[64];                 /* https://127.0.0.1:PORT */
    pid_t pid;                    /* the proxy, 0 when not running */
    bool passed;
} tls_fx;

/* slurp() reads the file at path into b (reset first), NUL-terminated; false when it cannot be read. */
static bool
slurp(const char *path, struct sc_buf *b)
{
    char chunk[8192];
    size_t n;
    FILE *f = fopen(path, "rb");

    sc_buf_reset(b);
    if (!f)
        return false;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (sc_buf_append(b, chunk, n) != SC_OK)
            break;
    }
    fclose(f);
    return sc_buf_append(b, "", 1) == SC_OK; /* NUL-terminated, for strstr() */
}

/* tls_certs() makes a CA and a certificate for IP 127.0.0.1 signed by it, in a new tls_fx.dir. */
static void
tls_certs(void)
{
    char cmd[4096], ext[IT_PATH_MAX + 16];
    FILE *f;
    int rc;

    snprintf(tls_fx.dir, sizeof tls_fx.dir, "%s/dlqit-tls-XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    IT_CHECK(mkdtemp(tls_fx.dir) != NULL, "mkdtemp %s", tls_fx.dir);
    snprintf(tls_fx.ca, sizeof tls_fx.ca, "%s/ca.pem", tls_fx.dir);
    snprintf(tls_fx.log, sizeof tls_fx.log, "%s/proxy.log", tls_fx.dir);
    snprintf(ext, sizeof ext, "%s/server.ext", tls_fx.dir);
    f = fopen(ext, "w");
    IT_CHECK(f != NULL, "create %s", ext);
    fputs("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
          "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && { '%s' req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout ca.key -out ca.pem -days 2 -subj /CN=dlq-test-ca && "
             "'%s' req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key "
             "-out server.csr -subj /CN=127.0.0.1 && "
             "'%s' x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile server.ext -out server.pem; } >openssl.log 2>&1",
             tls_fx.dir, OPENSSL_BIN, OPENSSL_BIN, OPENSSL_BIN);
    rc = system(cmd);
    if (rc != 0) {
        snprintf(ext, sizeof ext, "%s/openssl.log", tls_fx.dir);
        it_print_tail("openssl", ext, 30);
    }
    IT_CHECK(rc == 0, "openssl: exit %d", rc);
}

/*
 * tls_proxy_start() makes the certificates and starts the proxy in front of
 * the node, accepting user:password; waits until it prints "ready".
 */
static void
tls_proxy_start(const char *user, const char *password)
{
    char port[16], cert[IT_PATH_MAX + 16], key[IT_PATH_MAX + 16];
    const char *up = os_url();
    pid_t parent = getpid();
    int p, fd;

    memset(&tls_fx, 0, sizeof tls_fx);
    tls_certs();
    p = it_free_port();
    IT_CHECK(p > 0, "no free port");
    snprintf(port, sizeof port, "%d", p);
    snprintf(tls_fx.url, sizeof tls_fx.url, "https://127.0.0.1:%d", p);
    snprintf(cert, sizeof cert, "%s/server.pem", tls_fx.dir);
    snprintf(key, sizeof key, "%s/server.key", tls_fx.dir);
    fd = open(tls_fx.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    IT_CHECK(fd >= 0, "open %s", tls_fx.log);
    tls_fx.pid = fork();
    if (tls_fx.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test killed by ctest leaves no proxy behind */
        if (getppid() != parent)
            _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execl(DLQ_PYTHON3, DLQ_PYTHON3, TLS_PROXY_PY, port, up, cert, key, user, password,
              (char *)NULL);
        dprintf(2, "exec %s: %s\n", DLQ_PYTHON3, strerror(errno));
        _exit(127);
    }
    close(fd);
    IT_CHECK(tls_fx.pid > 0, "fork: %s", strerror(errno));
    for (int i = 0; i < 200; i++) {
        struct sc_buf b;
        bool ready;
        int st;

        sc_buf_init(&b, 1 << 20);
        ready = slurp(tls_fx.log, &b) && strstr(b.data, "ready\n") != NULL;
        sc_buf_destroy(&b);
        if (ready)
            return;
        if (waitpid(tls_fx.pid, &st, WNOHANG) == tls_fx.pid) {
            tls_fx.pid = 0;
            IT_CHECK(false, "the TLS proxy exited at start (status %d)", st);
        }
        it_sleep_ms(50);
    }
    IT_CHECK(false, "the TLS proxy did not print ready in 10 s");
}

/* tls_proxy_stop() stops the proxy (SIGTERM, SIGKILL after 5 s) and reaps it; idempotent. */
static void
tls_proxy_stop(void)
{
    int st;

    if (tls_fx.pid <= 0)
        return;
    kill(tls_fx.pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(tls_fx.pid, &st, WNOHANG) == tls_fx.pid) {
            tls_fx.pid = 0;
            return;
        }
        it_sleep_ms(50);
    }
    kill(tls_fx.pid, SIGKILL);
    while (waitpid(tls_fx.pid, &st, 0) < 0 && errno == EINTR)
        ;
    tls_fx.pid = 0;
}

/* tls_proxy_saw() tells whether the proxy's log has s (its access log: '"POST /x/_bulk HTTP/1.1" 200'). */
static bool
tls_proxy_saw(const char *s)
{
    struct sc_buf b;
    bool found;

    sc_buf_init(&b, 64u * 1024 * 1024);
    found = slurp(tls_fx.log, &b) && strstr(b.data, s) != NULL;
    sc_buf_destroy(&b);
    return found;
}

/* cmocka teardown of the TLS tests: the daemon and server, then the proxy, however the test ended. */
static int
tls_teardown(void **state)
{
    char cmd[IT_PATH_MAX + 32];
    int rc;

    if (!tls_fx.passed && tls_fx.log[0])
        it_print_tail("TLS proxy log", tls_fx.log, 40);
    rc = it_teardown(state);
    tls_proxy_stop();
    if (tls_fx.passed && tls_fx.dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_fx.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tls_fx.dir);
    } else if (tls_fx.dir[0]) {
        fprintf(stderr, "TLS test files kept in %s\n", tls_fx.dir);
    }
    memset(&tls_fx, 0, sizeof tls_fx);
    return rc;
}

/* wait_degraded() waits until the store is degraded with last_error containing what; returns the persistence object. */
static json_t *
wait_degraded(natsConnection *nc, const char *what, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    json_t *p = NULL;

    while (sc_now_mono_ms() < deadline) {
        json_decref(p);
        p = persistence(nc);
        const char *st = it_json_str(p, "state"), *err = it_json_str(p, "last_error");
        if (st && strcmp(st, "degraded") == 0 && err && strstr(err, what)) {
            fprintf(stderr, "[tls] degraded as expected: %s\n", err);
            return p;
        }
        it_sleep_ms(100);
    }
    char *dump = it_json_dump(p);
    fprintf(stderr, "the store did not turn degraded with \"%s\" in %d ms: %s\n", what, timeout_ms,
            dump);
    free(dump);
    json_decref(p);
    fail();
    return NULL;
}

/* tls_ingest() sends n failures tls-<tag>-<i> as requests; each must be acknowledged. */
static void
tls_ingest(natsConnection *nc, const char *tag, int n)
{
    char id[64];

    for (int i = 0; i < n; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "tls-%s-%d", tag, i);
        p.task_id = id;
        p.n = i;
        p.max_retries = -1;
        p.error = "connection refused";
        json_t *ack = penv_request(nc, "dlq.failed.tls", &p);
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack of %s", id);
        json_decref(ack);
    }
}

/* The right user and password, and the CA in store.opensearch.ca_file: written, state ok. */
static void
test_tls_auth(void **state)
{
    char index[128], ca[IT_PATH_MAX + 64], id[64], bulk[200];
    struct flags f;
    struct it_env *e;
    const int N = 25;

    test_index("tls", index, sizeof index);
    tls_proxy_start(TLS_USER, TLS_PASSWORD);
    snprintf(ca, sizeof ca, "store.opensearch.ca_file=%s", tls_fx.ca);
    const char *extra[] = {"retry_processor_enabled=false", "store.opensearch.username=" TLS_USER,
                           "store.opensearch.password=" TLS_PASSWORD, ca, NULL};
    e = it_env_start("persist-tls", os_flags(&f, tls_fx.url, index, extra));
    assert_non_null(e);
    *state = e;
    json_decref(wait_stored(e->nc, IT_WAIT_MS));
    tls_ingest(e->nc, "ok", N);
    json_t *p = wait_stored(e->nc, IT_WAIT_MS);
    IT_CHECK(strcmp(it_json_str(p, "state"), "ok") == 0 && it_json_int(p, "written") >= N,
             "state %s, written %lld", it_json_str(p, "state"), (long long)it_json_int(p, "written"));
    json_decref(p);
    /* In the real node, read directly. */
    IT_CHECK(os_count(index, NULL) == N, "documents: %lld, expected %d",
             (long long)os_count(index, NULL), N);
    json_t *all = os_all(index);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "tls-ok-%d", i);
        json_t *doc = json_object_get(all, id);
        IT_CHECK(doc && strcmp(it_json_str(doc, "status"), "pending") == 0, "%s is not indexed", id);
    }
    json_decref(all);
    /* And they went through the proxy: TLS and auth were on the way, not around it. */
    snprintf(bulk, sizeof bulk, "\"POST /%s/_bulk", index);
    IT_CHECK(tls_proxy_saw(bulk) && !tls_proxy_saw("\" 401 "), "the proxy's log does not show the writes");
    e->passed = true;
    it_env_stop(e);
    *state = NULL;
    os_drop(index);
    tls_fx.passed = true;
}

/* A wrong password: the proxy answers 401, degraded with 401 in last_error, still working in memory. */
static void
test_tls_bad_password(void **state)
{
    char index[128], ca[IT_PATH_MAX + 64], path[256], stb[32];
    struct flags f;
    struct it_env *e;
    long st;

    test_index("tlsauth", index, sizeof index);
    tls_proxy_start(TLS_USER, TLS_PASSWORD);
    snprintf(ca, sizeof ca, "store.opensearch.ca_file=%s", tls_fx.ca);
    const char *extra[] = {"store.opensearch.username=" TLS_USER,
                           "store.opensearch.password=not-the-password", ca, NULL};
    e = it_env_start("persist-tls-401", os_flags(&f, tls_fx.url, index, extra));
    assert_non_null(e);
    *state = e;
    json_decref(wait_degraded(e->nc, "401", IT_WAIT_MS));
    IT_CHECK(tls_proxy_saw("\" 401 "), "the proxy did not answer 401");

    /* The sidecar goes on from memory: ingest acknowledged, retries published and completed. */
    natsConnection *wc = it_env_connect(e, "worker");
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.tls", NULL, 10, false);
    struct it_step ok = {IT_ACT_OK, NULL, NULL};
    it_recorder_set_plan(w, NULL, 0, ok);
    tls_ingest(e->nc, "mem", 3);
    struct penv pr = {0};
    pr.task_id = "tls-retry";
    pr.n = 1;
    pr.max_retries = -1;
    pr.error = "connection refused";
    pr.retry_policy = "immediate";
    json_t *ack = penv_request(e->nc, "dlq.failed.tls", &pr);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack while degraded");
    json_decref(ack);
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "no retry while degraded");
    bool done;
    json_decref(it_wait_task_status(e->nc, "tls-retry", "completed", IT_WAIT_MS, &done));
    IT_CHECK(done || strcmp(it_task_status(e->nc, "tls-retry", stb, sizeof stb), "absent") == 0,
             "tls-retry did not complete while degraded");
    IT_CHECK(strcmp(it_task_status(e->nc, "tls-mem-2", stb, sizeof stb), "pending") == 0,
             "tls-mem-2 is %s in memory, expected pending", stb);
    json_t *p = persistence(e->nc);
    IT_CHECK(strcmp(it_json_str(p, "state"), "degraded") == 0 && it_json_int(p, "queued_writes") >= 3 &&
                 it_json_int(p, "written") == 0,
             "state %s, queued_writes %lld, written %lld", it_json_str(p, "state"),
             (long long)it_json_int(p, "queued_writes"), (long long)it_json_int(p, "written"));
    json_decref(p);
    /* Nothing reached the node: not even the index. */
    snprintf(path, sizeof path, "/%s", index);
    json_decref(os_call("GET", path, NULL, &st));
    IT_CHECK(st == 404, "GET %s: HTTP %ld, expected 404", path, st);
    IT_CHECK(it_daemon_stop(&e->dmn) == 3, "a stop with writes lost must exit 3");
    e->passed = true;
    it_env_stop(e);
    *state = NULL;
    os_drop(index);
    tls_fx.passed = true;
}

/* No CA file and insecure=false: the certificate is refused (degraded); insecure=true: written. */
static void
test_tls_verify(void **state)
{
    char index[128];
    struct flags f, f2;
    struct it_env *e;
    const int N = 10;

    test_index("tlsverify", index, sizeof index);
    tls_proxy_start(TLS_USER, TLS_PASSWORD);
    const char *extra[] = {"retry_processor_enabled=false", "store.opensearch.username=" TLS_USER,
                           "store.opensearch.password=" TLS_PASSWORD,
                           "store.opensearch.insecure=false", NULL};
    e = it_env_start("persist-tls-verify", os_flags(&f, tls_fx.url, index, extra));
    assert_non_null(e);
    *state = e;
    json_decref(wait_degraded(e->nc, "certificate", IT_WAIT_MS));
    /* The proxy logs the failed handshake on its own thread, maybe after the client saw it fail. */
    for (int k = 0; k < 250 && !tls_proxy_saw("handshake"); k++)
        it_sleep_ms(20);
    IT_CHECK(tls_proxy_saw("handshake") && !tls_proxy_saw("HTTP/1.1\""),
             "the TLS handshake must fail before any request");
    tls_ingest(e->nc, "unverified", 2); /* answered from memory */
    IT_CHECK(it_daemon_stop(&e->dmn) == 3, "a stop with writes lost must exit 3");

    /* The same proxy and certificate, with store.opensearch.insecure=true. */
    const char *extra2[] = {"retry_processor_enabled=false", "store.opensearch.username=" TLS_USER,
                            "store.opensearch.password=" TLS_PASSWORD,
                            "store.opensearch.insecure=true", NULL};
    restart(e, os_flags(&f2, tls_fx.url, index, extra2));
    json_decref(wait_stored(e->nc, IT_WAIT_MS));
    tls_ingest(e->nc, "insecure", N);
    json_t *p = wait_stored(e->nc, IT_WAIT_MS);
    IT_CHECK(it_json_int(p, "written") >= N, "written %lld", (long long)it_json_int(p, "written"));
    json_decref(p);
    IT_CHECK(os_count(index, "{\"prefix\":{\"task_id\":\"tls-insecure-\"}}") == N,
             "documents: %lld, expected %d",
             (long long)os_count(index, "{\"prefix\":{\"task_id\":\"tls-insecure-\"}}"), N);
    e->passed = true;
    it_env_stop(e);
    *state = NULL;
    os_drop(index);
    tls_fx.passed = true;
}

/* ---- 9. ids OpenSearch cannot take as _id: mapped, loaded back, deleted (issue 10, item 2) --- */

/* long_id() writes a task id of len bytes: prefix, then fill up to len - 1, then last. */
static void
long_id(char *out, size_t len, const char *prefix, char fill, char last)
{
    size_t n = strlen(prefix);

    memcpy(out, prefix, n);
    memset(out + n, fill, len - n - 1);
    out[len - 1] = last;
    out[len] = '\0';
}

static void
test_long_id(void **state)
{
    char index[128], id[64], l1[1100], l2[1100], l3[1100], stb[32];
    struct flags f;
    /* A long flush: the long ids share their bulks with ordinary ones. */
    const char *extra[] = {"limits.max_task_id_len=1024", "store.opensearch.flush_ms=500",
                           "store.keep_completed=false", "retry_processor_enabled=false", NULL};
    const char *const *flags;
    struct it_env *e;
    const int N = 40;

    test_index("longid", index, sizeof index);
    flags = os_flags(&f, os_url(), index, extra);
    e = it_env_start("persist-longid", flags);
    assert_non_null(e);
    *state = e;
    /* 600 and 1,024 bytes (past _id's 512), two of them equal up to their last byte. */
    long_id(l1, 600, "long-", 'x', 'a');
    long_id(l2, 600, "long-", 'x', 'b');
    long_id(l3, 1024, "longest-", 'y', 'z');
    const char *longs[] = {l1, l2, l3};
    for (int i = 0; i < N; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "short-%02d", i);
        p.task_id = i % 13 == 5 ? longs[i / 13] : id;
        p.n = i;
        p.max_retries = -1;
        p.error = "422 schema mismatch"; /* parked: no change after the first write */
        penv_publish(e->nc, "dlq.failed.longid", &p);
    }
    wait_queue(e->nc, N, IT_WAIT_MS);
    json_t *pers = wait_stored(e->nc, 30000);
    IT_CHECK(it_json_int(pers, "rejected") == 0, "rejected %lld", (long long)it_json_int(pers, "rejected"));
    json_decref(pers);
    IT_CHECK(os_count(index, NULL) == N, "documents: %lld, expected %d", (long long)os_count(index, NULL), N);
    json_t *all = os_all(index);
    for (int k = 0; k < 3; k++)
        IT_CHECK(json_object_get(all, longs[k]) != NULL, "long id %d (%zu bytes) is not indexed", k,
                 strlen(longs[k]));
    json_decref(all);

    /* kill -9: every task comes back under its own id (from the task_id field, not _id). */
    kill9(&e->dmn);
    restart(e, flags);
    wait_queue(e->nc, N, IT_WAIT_MS);
    for (int k = 0; k < 3; k++) {
        json_t *t = it_admin_get(e->nc, longs[k]);
        IT_CHECK(t && it_json_str(t, "task_id") && strcmp(it_json_str(t, "task_id"), longs[k]) == 0,
                 "long id %d was not loaded back under its id", k);
        json_decref(t);
    }
    json_t *t = it_admin_get(e->nc, "short-00");
    IT_CHECK(t && it_json_str(t, "task_id") && strcmp(it_json_str(t, "task_id"), "short-00") == 0,
             "short-00 was not loaded back");
    json_decref(t);

    /* Archived (keep_completed false): the delete uses the same mapping, the document goes. */
    json_decref(it_admin_task(e->nc, "archive", l2));
    IT_CHECK(strcmp(it_task_status(e->nc, l2, stb, sizeof stb), "absent") == 0, "l2 is %s", stb);
    json_decref(wait_stored(e->nc, 30000));
    IT_CHECK(os_count(index, NULL) == N - 1, "documents after the delete: %lld, expected %d",
             (long long)os_count(index, NULL), N - 1);
    all = os_all(index);
    IT_CHECK(json_object_get(all, l2) == NULL && json_object_get(all, l1) != NULL,
             "the delete removed the wrong document");
    json_decref(all);
    os_drop(index);
    e->passed = true;
}

/* ---- 10. a bulk refused as a whole for one item: split until it stands alone (item 2) ------- */

static void
test_poison_bulk(void **state)
{
    char index[128], id[64];
    struct flags f;
    char listen[64], base[64], want[80];
    const char *extra[] = {"store.opensearch.flush_ms=500", "retry_processor_enabled=false", listen, NULL};
    struct it_env *e;
    const int N = 200;
    int npoison = 0, ntoolarge = 0, port = it_free_port();

    snprintf(listen, sizeof listen, "http.listen=127.0.0.1:%d", port);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    test_index("poison", index, sizeof index);
    struct proxy *px = proxy_start();
    e = it_env_start("persist-poison", os_flags(&f, px->url, index, extra));
    if (!e)
        proxy_stop(px);
    assert_non_null(e);
    *state = e;
    for (int i = 0; i < N; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "%s-%03d", i % 67 == 3 ? "poison" : i % 71 == 7 ? "toolarge" : "good", i);
        npoison += i % 67 == 3;
        ntoolarge += i % 67 != 3 && i % 71 == 7;
        p.task_id = id;
        p.n = i;
        p.max_retries = -1;
        p.error = "422 schema mismatch";
        penv_publish(e->nc, "dlq.failed.poison", &p);
    }
    wait_queue(e->nc, N, IT_WAIT_MS);
    json_t *pers = wait_stored(e->nc, 60000);
    IT_CHECK(it_json_int(pers, "rejected") == npoison + ntoolarge, "rejected %lld, expected %d",
             (long long)it_json_int(pers, "rejected"), npoison + ntoolarge);
    IT_CHECK(os_count(index, NULL) == N - npoison - ntoolarge, "documents: %lld, expected %d",
             (long long)os_count(index, NULL), N - npoison - ntoolarge);
    /* The refused ones stay in memory; the store is ok. */
    json_t *t = it_admin_get(e->nc, "poison-003");
    IT_CHECK(t && it_json_str(t, "task_id"), "poison-003 is not kept in memory");
    json_decref(t);
    IT_CHECK(strstr(it_json_str(pers, "last_error"), "rejected") != NULL, "last_error: %s",
             it_json_str(pers, "last_error"));
    /* And in /metrics. */
    struct sc_buf mb;
    sc_buf_init(&mb, 16u * 1024 * 1024);
    IT_CHECK(os_call_raw(base, "GET", "/metrics", NULL, NULL, 0, &mb) == 200 && mb.data, "GET /metrics");
    snprintf(want, sizeof want, "\ndlq_persistence_rejected_total %d\n", npoison + ntoolarge);
    IT_CHECK(strstr(mb.data, want) != NULL, "/metrics lacks \"%s\"", want + 1);
    sc_buf_destroy(&mb);
    pthread_mutex_lock(&px->mu);
    int refusals = px->whole_refusals;
    pthread_mutex_unlock(&px->mu);
    IT_CHECK(refusals > 0, "the proxy refused no body as a whole");
    fprintf(stderr, "[poison] %d bodies refused as a whole, %lld batches for %d tasks\n", refusals,
            (long long)it_json_int(pers, "batches"), N);
    json_decref(pers);
    e->passed = true;
    it_env_stop(e);
    *state = NULL;
    proxy_stop(px);
    os_drop(index);
}

/* ---- 11. a document that does not fit the batch: alone, the rest at once (item 8) ----------- */

static void
test_big_doc_alone(void **state)
{
    char index[128], id[64];
    struct flags f;
    /*
     * A flush long enough that all 50 are dirty before the first batch; the
     * byte limit such that the big task does not fit after the first few.
     */
    const char *extra[] = {"store.opensearch.flush_ms=3000", "store.opensearch.bulk_max_bytes=65536",
                           "retry_processor_enabled=false", NULL};
    struct it_env *e;
    const int N = 50;
    static unsigned char big[60003];

    test_index("bigdoc", index, sizeof index);
    e = it_env_start("persist-bigdoc", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;
    big[0] = 0xc5; /* bin 16 of 60,000 bytes: 80,000 bytes of base64 in the document */
    big[1] = (unsigned char)(60000 >> 8);
    big[2] = (unsigned char)(60000 & 0xff);
    memset(big + 3, 'b', 60000);
    for (int i = 0; i < N; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "big-%02d", i);
        p.task_id = id;
        p.n = i;
        if (i == 25) {
            p.task_mp = big;
            p.task_len = sizeof big;
        }
        p.max_retries = -1;
        p.error = "422 schema mismatch";
        penv_publish(e->nc, "dlq.failed.bigdoc", &p);
    }
    wait_queue(e->nc, N, IT_WAIT_MS);
    /* Nothing else changes from here on: the rest must follow the big one by itself. */
    json_t *pers = wait_stored(e->nc, 30000);
    IT_CHECK(os_count(index, NULL) == N, "documents: %lld, expected %d", (long long)os_count(index, NULL), N);
    IT_CHECK(it_json_int(pers, "rejected") == 0, "rejected %lld", (long long)it_json_int(pers, "rejected"));
    fprintf(stderr, "[bigdoc] %lld batches for %d tasks, one of them 80 kB\n",
            (long long)it_json_int(pers, "batches"), N);
    json_decref(pers);
    os_drop(index);
    e->passed = true;
}

/* ---- 12. a whole-request 429 cluster_block_exception is a write block (item 9) ------------- */

static void
test_block_429(void **state)
{
    char index[128];
    struct flags f;
    const char *extra[] = {"retry_processor_enabled=false", NULL};
    struct it_env *e;

    test_index("block429", index, sizeof index);
    struct proxy *px = proxy_start();
    e = it_env_start("persist-block429", os_flags(&f, px->url, index, extra));
    if (!e)
        proxy_stop(px);
    assert_non_null(e);
    *state = e;
    json_decref(wait_stored(e->nc, IT_WAIT_MS));
    __atomic_store_n(&px->block429, 1, __ATOMIC_RELAXED);
    struct penv pe = {0};
    pe.task_id = "blocked-1";
    pe.error = "connection refused";
    pe.max_retries = -1;
    penv_publish(e->nc, "dlq.failed.block429", &pe);
    json_t *p = wait_degraded(e->nc, "cluster_block_exception", IT_WAIT_MS);
    IT_CHECK(it_json_int(p, "queued_writes") >= 1, "the write is not queued");
    json_decref(p);
    __atomic_store_n(&px->block429, 0, __ATOMIC_RELAXED);
    json_decref(wait_stored(e->nc, 30000));
    IT_CHECK(os_count(index, "{\"term\":{\"task_id\":\"blocked-1\"}}") == 1, "blocked-1 was not replayed");
    e->passed = true;
    it_env_stop(e);
    *state = NULL;
    proxy_stop(px);
    os_drop(index);
}

/* ---- the episode id and the default budget across a restart (issue 10, items 3 and 10) -------- */

/*
 * A task retrying when the process is killed is republished by the next one
 * with the same attempt, the same Dlq-Episode and the same Nats-Msg-Id (a
 * stream on the retry subject must take it as the same message): the
 * episode id is in the document (episode_id) and loaded back. A task on the
 * default budget (max_retries_own false in the document) follows the
 * default of the new process; one with its own max_retries keeps it. The
 * index exists beforehand with an older, strict mapping: the fields added
 * since are put into it at start, so no write is refused.
 */
static void
test_episode_restart(void **state)
{
    char index[128];
    struct flags f, f2;
    const char *extra[] = {"retry.timeout_ms=60000", "default_max_retries=5", NULL};
    const char *extra2[] = {"retry.timeout_ms=60000", "default_max_retries=2", NULL};

    test_index("episode", index, sizeof index);
    /* An index made by an older version: strict, without the fields added since (episode_id ...). */
    char path[200];
    long status = 0;
    snprintf(path, sizeof path, "/%s", index);
    json_decref(os_call("PUT", path,
                        "{\"settings\":{\"index\":{\"number_of_replicas\":0}},\"mappings\":"
                        "{\"dynamic\":\"strict\",\"properties\":{\"task_id\":{\"type\":\"keyword\"}}}}",
                        &status));
    IT_CHECK(status == 200, "creating the old index: HTTP %ld", status);
    struct it_env *e = it_env_start("persist-episode", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.episode", NULL, 10, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_SILENT, NULL, NULL});

    struct penv p = {0};
    p.task_id = "ep-own";
    p.n = 1;
    p.error = "ECONNRESET";
    p.error_len = 10;
    p.retry_policy = "immediate";
    p.max_retries = 3;
    json_t *ack = penv_request(e->nc, "dlq.failed.episode", &p);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack of ep-own");
    json_decref(ack);
    struct penv q = {0};
    q.task_id = "ep-default";
    q.n = 2;
    q.error = "ECONNRESET";
    q.error_len = 10;
    q.retry_policy = "never";
    q.max_retries = -1;
    ack = penv_request(e->nc, "dlq.failed.episode", &q);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack of ep-default");
    json_decref(ack);

    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "no retry of ep-own");
    char ep1[32], id1[128];
    const struct it_rec_msg *m = it_rec_get(w, 0);
    snprintf(ep1, sizeof ep1, "%s", it_rec_header(m, "Dlq-Episode") ? it_rec_header(m, "Dlq-Episode") : "");
    snprintf(id1, sizeof id1, "%s", it_rec_header(m, "Nats-Msg-Id") ? it_rec_header(m, "Nats-Msg-Id") : "");
    char want[128];
    snprintf(want, sizeof want, "ep-own:%s:1", ep1);
    IT_CHECK(*ep1 && strcmp(id1, want) == 0, "Nats-Msg-Id %s, Dlq-Episode %s", id1, ep1);
    bool ok = false;
    json_decref(it_wait_task_status(e->nc, "ep-own", "retrying", IT_WAIT_MS, &ok));
    IT_CHECK(ok, "ep-own is not retrying");
    json_decref(wait_stored(e->nc, IT_WAIT_MS));
    json_t *all = os_all(index);
    const json_t *d1 = json_object_get(all, "ep-own"), *d2 = json_object_get(all, "ep-default");
    char *dump = it_json_dump(d1);
    IT_CHECK(d1 && it_json_int(d1, "episode_id") == strtoll(ep1, NULL, 10) &&
                 json_is_true(json_object_get(d1, "max_retries_own")),
             "the document of ep-own must hold episode_id %s and max_retries_own true: %s", ep1,
             dump);
    free(dump);
    IT_CHECK(d2 && json_is_false(json_object_get(d2, "max_retries_own")) &&
                 it_json_int(d2, "max_retries") == 5,
             "ep-default took the default (5)");
    json_decref(all);

    kill9(&e->dmn);
    restart(e, os_flags(&f2, os_url(), index, extra2));
    IT_CHECK(it_rec_wait(w, 2, IT_WAIT_MS), "the retrying task was not republished after the restart");
    m = it_rec_get(w, 1);
    const char *ep2 = it_rec_header(m, "Dlq-Episode"), *id2 = it_rec_header(m, "Nats-Msg-Id");
    IT_CHECK(ep2 && id2 && strcmp(ep2, ep1) == 0 && strcmp(id2, id1) == 0,
             "after the restart: Dlq-Episode %s (was %s), Nats-Msg-Id %s (was %s)",
             ep2 ? ep2 : "-", ep1, id2 ? id2 : "-", id1);
    json_t *t = it_admin_get(e->nc, "ep-default");
    IT_CHECK(it_json_int(t, "max_retries") == 2, "ep-default follows the new default (2)");
    json_decref(t);
    t = it_admin_get(e->nc, "ep-own");
    IT_CHECK(it_json_int(t, "max_retries") == 3, "ep-own keeps its own max_retries (3)");
    json_decref(t);
    os_drop(index);
    e->passed = true;
}

/* ---- 13. what an answer says about the store (issue 10, item 5) ------------------------------ */

/* raw_request() sends the envelope as a request; returns the reply (caller destroys) or fails. */
static natsMsg *
raw_request(natsConnection *nc, const char *subject, const struct penv *p)
{
    msgpack_sbuffer sb;
    natsMsg *reply = NULL;

    penv_pack(p, &sb);
    natsStatus s = natsConnection_Request(&reply, nc, subject, sb.data, (int)sb.size, IT_REQUEST_MS);
    msgpack_sbuffer_destroy(&sb);
    IT_CHECK(s == NATS_OK && reply, "request on %s: %s", subject, natsStatus_GetText(s));
    return reply;
}

/* log_has() tells whether the daemon's log contains needle. */
static bool
log_has(const struct it_daemon *d, const char *needle)
{
    struct sc_buf b;
    bool found;

    sc_buf_init(&b, 256u * 1024 * 1024);
    found = slurp(d->log, &b) && strstr(b.data, needle) != NULL;
    sc_buf_destroy(&b);
    return found;
}

/* os_has_doc() tells whether index holds the document of task id (a real-time GET, no refresh). */
static bool
os_has_doc(const char *index, const char *id)
{
    char path[512];
    long st;
    json_t *r;
    bool found;

    snprintf(path, sizeof path, "/%s/_doc/%s", index, id);
    r = os_call("GET", path, NULL, &st);
    found = st == 200 && json_is_true(json_object_get(r, "found"));
    json_decref(r);
    return found;
}

/*
 * A failure sent as a request is answered "stored":true only once its
 * document is in the index; while OpenSearch is away the answer says
 * "stored":false; a SIGTERM with writes left exits 3 and counts them;
 * store.ack: durable refuses with 503 instead. The memory store adds no key.
 */
static void
test_ack_stored(void **state)
{
    char index[128];
    struct flags f;
    const char *extra[] = {"retry_processor_enabled=false", NULL};
    const char *durable[] = {"retry_processor_enabled=false", "store.ack=durable", NULL};
    struct it_env *e;
    struct penv pe = {0};
    json_t *ack, *p;
    natsMsg *reply;
    const char *code = NULL;

    /* The memory store: nothing is stored, and the answer does not pretend either way. */
    e = it_env_start("persist-ack-memory", NULL);
    assert_non_null(e);
    *state = e;
    pe.task_id = "ack-mem";
    pe.error = "connection refused";
    pe.max_retries = -1;
    ack = penv_request(e->nc, "dlq.failed.ack", &pe);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")) && !json_object_get(ack, "stored"),
             "memory store: ok without a \"stored\" key");
    json_decref(ack);
    e->passed = true;
    it_env_stop(e);
    *state = NULL;

    test_index("ack", index, sizeof index);
    e = it_env_start("persist-ack", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;
    /* Healthy: the answer says stored, and the document is there when it comes. */
    pe.task_id = "ack-1";
    ack = penv_request(e->nc, "dlq.failed.ack", &pe);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")) &&
                 json_is_true(json_object_get(ack, "stored")),
             "a healthy store must answer \"stored\":true");
    json_decref(ack);
    IT_CHECK(os_has_doc(index, "ack-1"), "answered \"stored\":true, but ack-1 is not in the index");

    /* OpenSearch goes away: answers say "stored":false. */
    os_ctl("stop");
    pe.task_id = "ack-probe";
    penv_publish(e->nc, "dlq.failed.ack", &pe); /* a write that finds the node gone */
    json_decref(wait_degraded(e->nc, "", 60000));
    pe.task_id = "ack-2";
    ack = penv_request(e->nc, "dlq.failed.ack", &pe);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")) &&
                 json_is_false(json_object_get(ack, "stored")),
             "an answer given while degraded must say \"stored\":false");
    json_decref(ack);
    p = persistence(e->nc);
    IT_CHECK(it_json_int(p, "unstored_answers") >= 1, "unstored_answers not counted");
    json_decref(p);

    /* SIGTERM with writes queued: exit 3, and the log counts what is lost. */
    int rc = it_daemon_stop(&e->dmn);
    IT_CHECK(rc == 3, "SIGTERM with writes not stored must exit 3, got %d", rc);
    IT_CHECK(log_has(&e->dmn, "writes not stored") && log_has(&e->dmn, "not_stored=2"),
             "the log must say how many writes were not stored (ack-probe, ack-2)");

    /* store.ack: durable, still without OpenSearch: a request is refused with 503. */
    struct it_recorder *ev = it_env_recorder(e, e->nc, "dlq.events.refused", NULL, 100, true);
    restart(e, os_flags(&f, os_url(), index, durable));
    pe.task_id = "ack-3";
    reply = raw_request(e->nc, "dlq.failed.ack", &pe);
    IT_CHECK(natsMsgHeader_Get(reply, "Nats-Service-Error-Code", &code) == NATS_OK && code &&
                 strcmp(code, "503") == 0,
             "store.ack: durable while degraded must answer 503 with Nats-Service-Error-Code");
    ack = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    IT_CHECK(ack && json_is_false(json_object_get(ack, "ok")) &&
                 it_json_int(ack, "error.code") == 503,
             "the 503 body must be {\"ok\":false,\"error\":{\"code\":503,...}}");
    json_decref(ack);
    natsMsg_Destroy(reply);
    IT_CHECK(it_rec_wait(ev, 1, 5000), "no refused event");
    p = persistence(e->nc);
    IT_CHECK(it_json_int(p, "refused_answers") == 1, "refused_answers: %lld",
             (long long)it_json_int(p, "refused_answers"));
    json_decref(p);
    ack = it_admin_get(e->nc, "ack-3");
    IT_CHECK(ack && it_json_int(ack, "error.code") == 404, "a refused failure must not be kept");
    json_decref(ack);
    /* A plain publish has nobody to tell: it is taken into memory. */
    pe.task_id = "ack-4";
    penv_publish(e->nc, "dlq.failed.ack", &pe);
    wait_queue(e->nc, 1, 10000);
    rc = it_daemon_stop(&e->dmn);
    IT_CHECK(rc == 3, "SIGTERM with ack-4 not stored must exit 3, got %d", rc);
    os_ctl("start");
    os_drop(index);
    e->passed = true;
}

/*
 * store.spill_dir: OpenSearch stopped, failures acknowledged ("stored":false),
 * a task archived and one cleared, SIGTERM (exit 0: everything spilled), a restart still
 * without OpenSearch (the spill comes back into memory and is spilled
 * again), OpenSearch back, a restart: every acknowledged failure is in the
 * index, the removed task is not, and the spill file is gone.
 */
static void
test_spill(void **state)
{
    char index[128], dir[256], spill[512], sdir[300], id[64];
    struct flags f;
    struct it_env *e;
    struct penv pe = {0};
    json_t *ack;
    const int n = quick() ? 200 : 2000;
    int rc;

    snprintf(dir, sizeof dir, "/tmp/dlq-it-spill-%d-XXXXXX", (int)getpid());
    IT_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(sdir, sizeof sdir, "store.spill_dir=%s/spill", dir); /* made by the daemon */
    const char *extra[] = {"retry_processor_enabled=false", sdir, "shutdown.drain_ms=0", NULL};
    test_index("spill", index, sizeof index);
    snprintf(spill, sizeof spill, "%s/spill/%s.spill", dir, index);
    e = it_env_start("persist-spill", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;
    pe.error = "connection refused";
    pe.max_retries = -1;
    pe.task_id = "spill-gone"; /* cleared during the outage: a delete to spill */
    ack = penv_request(e->nc, "dlq.failed.spillgone", &pe);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "stored")), "spill-gone not stored");
    json_decref(ack);
    pe.task_id = "spill-arch"; /* archived during the outage (kept: keep_completed) */
    ack = penv_request(e->nc, "dlq.failed.spill", &pe);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "stored")), "spill-arch not stored");
    json_decref(ack);

    os_ctl("stop");
    pe.task_id = "spill-probe";
    penv_publish(e->nc, "dlq.failed.spill", &pe);
    json_decref(wait_degraded(e->nc, "", 60000));
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "spill-%d", i);
        pe.task_id = id;
        pe.n = i;
        ack = penv_request(e->nc, "dlq.failed.spill", &pe);
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")) &&
                     json_is_false(json_object_get(ack, "stored")),
                 "ack of %s while degraded", id);
        json_decref(ack);
    }
    ack = it_request_json(e->nc, "dlq.admin.archive", "{\"task_id\":\"spill-arch\"}", IT_REQUEST_MS);
    IT_CHECK(ack && it_json_int(ack, "archived") == 1, "archive spill-arch");
    json_decref(ack);
    ack = it_request_json(e->nc, "dlq.admin.clear",
                          "{\"subject\":\"dlq.failed.spillgone\",\"confirm\":true}", IT_REQUEST_MS);
    IT_CHECK(ack && it_json_int(ack, "cleared") == 1, "clear spill-gone");
    json_decref(ack);
    rc = it_daemon_stop(&e->dmn);
    IT_CHECK(rc == 0, "SIGTERM with every write spilled must exit 0, got %d", rc);
    IT_CHECK(access(spill, F_OK) == 0, "no spill file at %s", spill);
    IT_CHECK(log_has(&e->dmn, "were spilled"), "the log must say the writes were spilled");

    /*
     * The cap: a sidecar on another index with a 1 MiB spill file and 2.4 MB
     * of tasks stops with some writes not spilled: counted, logged, exit 3;
     * the file stays within the cap and is complete.
     */
    {
        char index3[128], spill3[512], big_id[32];
        struct flags f3;
        const char *capped[] = {"retry_processor_enabled=false", sdir, "shutdown.drain_ms=0",
                                "store.spill_max_bytes=1048576", NULL};
        static char blob[100005];
        struct stat sb;
        test_index("spillcap", index3, sizeof index3);
        snprintf(spill3, sizeof spill3, "%s/spill/%s.spill", dir, index3);
        restart(e, os_flags(&f3, os_url(), index3, capped));
        blob[0] = (char)0xc6; /* bin 32 of 100,000 bytes */
        blob[1] = 0;
        blob[2] = 0x01;
        blob[3] = (char)0x86;
        blob[4] = (char)0xa0;
        memset(blob + 5, 'x', 100000);
        for (int i = 0; i < 24; i++) {
            struct penv big = {0};
            snprintf(big_id, sizeof big_id, "big-%d", i);
            big.task_id = big_id;
            big.task_mp = blob;
            big.task_len = sizeof blob;
            big.error = "connection refused";
            big.max_retries = -1;
            ack = penv_request(e->nc, "dlq.failed.spill", &big);
            IT_CHECK(ack && json_is_false(json_object_get(ack, "stored")), "ack of %s", big_id);
            json_decref(ack);
        }
        rc = it_daemon_stop(&e->dmn);
        IT_CHECK(rc == 3, "writes past the spill cap are lost: exit 3, got %d", rc);
        IT_CHECK(log_has(&e->dmn, "spill file full") && log_has(&e->dmn, "not_spilled="),
                 "the log must count the writes past the cap");
        IT_CHECK(stat(spill3, &sb) == 0 && sb.st_size > 0 && sb.st_size <= 1048576,
                 "the capped spill file: %lld bytes", (long long)sb.st_size);
        struct sc_buf text;
        sc_buf_init(&text, 4u * 1024 * 1024);
        IT_CHECK(slurp(spill3, &text) && strstr(text.data, "{\"end\":{\"records\":"),
                 "the capped spill file has no end record");
        sc_buf_destroy(&text);
        IT_CHECK(unlink(spill3) == 0, "rm %s", spill3);
    }

    /* Restarted during the outage: the tasks come back from the spill file, and go to it again. */
    restart(e, os_flags(&f, os_url(), index, extra));
    wait_queue(e->nc, n + 1, 30000);
    rc = it_daemon_stop(&e->dmn);
    IT_CHECK(rc == 0, "second SIGTERM during the outage must exit 0, got %d", rc);
    IT_CHECK(access(spill, F_OK) == 0, "no spill file after the second stop");

    /* OpenSearch back, a restart: everything in the index, the spill file gone. */
    os_ctl("start");
    restart(e, os_flags(&f, os_url(), index, extra));
    json_decref(wait_stored(e->nc, 60000));
    for (int i = 0; i < 100 && access(spill, F_OK) == 0; i++)
        it_sleep_ms(100);
    IT_CHECK(access(spill, F_OK) != 0, "the spill file must be removed once its writes are stored");
    json_t *all = os_all(index);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "spill-%d", i);
        json_t *doc = json_object_get(all, id);
        IT_CHECK(doc && strcmp(it_json_str(doc, "status"), "pending") == 0,
                 "acknowledged failure %s is not in the index", id);
    }
    IT_CHECK(json_object_get(all, "spill-probe"), "spill-probe is not in the index");
    IT_CHECK(!json_object_get(all, "spill-gone"), "the cleared task's delete was not replayed");
    json_t *arch = json_object_get(all, "spill-arch");
    IT_CHECK(arch && strcmp(it_json_str(arch, "status"), "archived") == 0,
             "the archived state of spill-arch was not replayed");
    IT_CHECK(json_object_size(all) == (size_t)n + 2, "documents: %zu, expected %d",
             json_object_size(all), n + 2);
    json_decref(all);
    IT_CHECK(!log_has(&e->dmn, "cannot write the spill file") && !log_has(&e->dmn, "incomplete") &&
                 !log_has(&e->dmn, "unreadable=1"),
             "spill file errors in the log");
    os_drop(index);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    IT_CHECK(system(cmd) == 0, "rm %s", dir);
    e->passed = true;
}

/* os_signal() sends sig to the node's process (its pid file under DLQ_OPENSEARCH_DIR); false when it cannot. */
static bool
os_signal(int sig)
{
    const char *dir = getenv("DLQ_OPENSEARCH_DIR");
    char path[512];
    long pid = 0;
    FILE *f;
    bool ok;

    if (!dir || !*dir)
        return false;
    snprintf(path, sizeof path, "%s/pid", dir);
    f = fopen(path, "r");
    if (!f)
        return false;
    ok = fscanf(f, "%ld", &pid) == 1 && pid > 1 && kill((pid_t)pid, sig) == 0;
    fclose(f);
    return ok;
}

/* A test that pauses the node resumes it, whatever happened. */
static int
paused_teardown(void **state)
{
    os_signal(SIGCONT);
    return it_teardown(state);
}

/*
 * send_held() sends n failures <tag>-<i> as requests on subject at once, all
 * answered on one inbox, and returns the answers (a JSON array of
 * {"body":..., "code":"503" or null}) that came within 15 s.
 */
static json_t *
send_held(natsConnection *nc, const char *subject, const char *tag, int n)
{
    char inbox[64], wild[80], reply[96], id[64];
    natsSubscription *sub = NULL;
    json_t *out = json_array();
    struct penv pe = {0};

    pe.error = "connection refused";
    pe.max_retries = -1;
    snprintf(inbox, sizeof inbox, "_INBOX.%s-%d", tag, (int)getpid());
    snprintf(wild, sizeof wild, "%s.*", inbox);
    IT_CHECK(natsConnection_SubscribeSync(&sub, nc, wild) == NATS_OK, "subscribe");
    for (int i = 0; i < n; i++) {
        msgpack_sbuffer sb;
        snprintf(id, sizeof id, "%s-%d", tag, i);
        snprintf(reply, sizeof reply, "%s.%d", inbox, i);
        pe.task_id = id;
        pe.n = i;
        penv_pack(&pe, &sb);
        IT_CHECK(natsConnection_PublishRequest(nc, subject, reply, sb.data, (int)sb.size) == NATS_OK,
                 "publish %s", id);
        msgpack_sbuffer_destroy(&sb);
    }
    for (int got = 0; got < n; got++) {
        natsMsg *m = NULL;
        const char *code = NULL;
        if (natsSubscription_NextMsg(&m, sub, 15000) != NATS_OK)
            break;
        natsMsgHeader_Get(m, "Nats-Service-Error-Code", &code);
        json_array_append_new(out, json_pack("{s:o,s:s?}", "body",
                                             json_loadb(natsMsg_GetData(m),
                                                        (size_t)natsMsg_GetDataLength(m), 0, NULL),
                                             "code", code));
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    return out;
}

/*
 * The issue's second case: OpenSearch paused (SIGSTOP: connections hang, no
 * error), requests keep coming, then kill -9. Every answer that said
 * "stored":true must be in the index after the restart; answers given while
 * the node hangs say "stored":false (after the 5 s hold), never true, and a
 * second sidecar with store.ack: durable (its own prefix and index) answers
 * them 503 instead.
 */
static void
test_paused_kill9(void **state)
{
    char index[128], index2[128], id[64], dir2[IT_PATH_MAX + 8];
    struct flags f, f2;
    const char *extra[] = {"retry_processor_enabled=false", NULL};
    const char *durable[] = {"retry_processor_enabled=false", "store.ack=durable",
                             "subjects.prefix=dlqd", NULL};
    struct it_env *e;
    struct it_daemon d2 = {0, -1, ""};
    struct penv pe = {0};
    const int n = 20;
    json_t *acks, *a;
    size_t i;

    test_index("paused", index, sizeof index);
    test_index("paused-durable", index2, sizeof index2);
    e = it_env_start("persist-paused", os_flags(&f, os_url(), index, extra));
    assert_non_null(e);
    *state = e;
    snprintf(dir2, sizeof dir2, "%s/d2", e->dir);
    IT_CHECK(mkdir(dir2, 0700) == 0, "mkdir %s", dir2);
    IT_CHECK(it_daemon_start(&d2, dir2, e->srv.url, os_flags(&f2, os_url(), index2, durable)) == 0,
             "second daemon");
    pe.error = "connection refused";
    pe.max_retries = -1;
    for (int k = 0; k < n; k++) {
        snprintf(id, sizeof id, "ok-%d", k);
        pe.task_id = id;
        json_t *ack = penv_request(e->nc, "dlq.failed.paused", &pe);
        IT_CHECK(ack && json_is_true(json_object_get(ack, "stored")), "%s not stored", id);
        json_decref(ack);
        for (int w = 0; w < 100 && !(ack = it_request_json(e->nc, "dlqd.failed.paused",
                                                            "{\"task_id\":\"ok\",\"task\":{}}",
                                                            IT_REQUEST_MS));
             w++)
            it_sleep_ms(100); /* the second daemon may still be starting */
        IT_CHECK(ack && json_is_true(json_object_get(ack, "stored")), "durable: not stored");
        json_decref(ack);
    }

    IT_CHECK(os_signal(SIGSTOP), "cannot pause the node (DLQ_OPENSEARCH_DIR/pid)");
    acks = send_held(e->nc, "dlq.failed.paused", "held", n);
    IT_CHECK(json_array_size(acks) == (size_t)n, "answers: %zu of %d", json_array_size(acks), n);
    json_array_foreach(acks, i, a) {
        const json_t *b = json_object_get(a, "body");
        IT_CHECK(json_is_true(json_object_get(b, "ok")) && json_is_false(json_object_get(b, "stored")),
                 "an answer while the node hangs must say \"stored\":false");
    }
    json_decref(acks);
    acks = send_held(e->nc, "dlqd.failed.paused", "held-durable", n);
    IT_CHECK(json_array_size(acks) == (size_t)n, "durable answers: %zu of %d",
             json_array_size(acks), n);
    json_array_foreach(acks, i, a) {
        const json_t *b = json_object_get(a, "body");
        const char *code = it_json_str(a, "code"), *msg = it_json_str(b, "error.message");
        IT_CHECK(code && strcmp(code, "503") == 0 && json_is_false(json_object_get(b, "ok")) &&
                     msg && strstr(msg, "not stored"),
                 "store.ack: durable must answer 503 \"not stored\" while the node hangs");
    }
    json_decref(acks);

    kill9(&e->dmn);
    kill9(&d2);
    IT_CHECK(os_signal(SIGCONT), "cannot resume the node");
    restart(e, os_flags(&f, os_url(), index, extra));
    json_decref(wait_stored(e->nc, 60000));
    for (int k = 0; k < n; k++) {
        snprintf(id, sizeof id, "ok-%d", k);
        IT_CHECK(os_has_doc(index, id), "%s was answered \"stored\":true and is lost", id);
    }
    IT_CHECK(os_has_doc(index2, "ok"), "durable: ok was answered \"stored\":true and is lost");
    os_drop(index);
    os_drop(index2);
    e->passed = true;
}

/* ---- JetStream ingest: kill -9 while failures stream in --------------------------------------- */

/* A publisher of n failures "js-<i>" into the DLQ_FAILED stream (plain publishes, flushed every 500). */
struct js_feed {
    natsConnection *nc;
    int n;
    volatile int sent; /* use __atomic */
    pthread_t th;
};

static void *
js_feed_run(void *arg)
{
    struct js_feed *f = arg;
    char id[64];

    for (int i = 0; i < f->n; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "js-%05d", i);
        p.task_id = id;
        p.n = i;
        p.max_retries = -1;
        p.error = "connection refused";
        penv_publish(f->nc, "dlq.failed.feed", &p);
        if (i % 500 == 499) {
            natsConnection_FlushTimeout(f->nc, IT_REQUEST_MS);
            it_sleep_ms(20);
        }
        __atomic_store_n(&f->sent, i + 1, __ATOMIC_RELAXED);
    }
    natsConnection_FlushTimeout(f->nc, IT_REQUEST_MS);
    return NULL;
}

/* The DLQ_FAILED stream's message count, or -1. */
static int64_t
js_stream_msgs(natsConnection *nc)
{
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    int64_t n = -1;

    if (natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        return -1;
    if (js_GetStreamInfo(&si, js, "DLQ_FAILED", NULL, NULL) == NATS_OK) {
        n = (int64_t)si->State.Msgs;
        jsStreamInfo_Destroy(si);
    }
    jsCtx_Destroy(js);
    return n;
}

/*
 * JetStream ingest with the OpenSearch store: kill -9 of the sidecar at
 * random moments while 50,000 failures stream in, restarted each time.
 * A failure is acked only once OpenSearch holds its task, so what a killed
 * sidecar had taken and not stored comes back (ack wait 2 s), and a
 * redelivery of what a stored task holds is no new failure: in the end
 * every published failure is exactly one document, the stream is empty and
 * nothing was counted twice.
 */
static void
test_js_kill9(void **state)
{
    char index[128];
    struct flags f;
    const char *extra[] = {"ingest.mode=jetstream", "ingest.ack_wait_ms=2000",
                           "retry_processor_enabled=false", "max_size=100000", NULL};
    const char *const *flags;
    struct it_env *e;
    struct js_feed feed = {0};
    const int kills = quick() ? 3 : 5;
    int64_t left = -1, deadline;
    json_t *all, *st;
    char id[64];

    test_index("jskill9", index, sizeof index);
    flags = os_flags(&f, os_url(), index, extra);
    e = it_env_start_js("persist-js-kill9", flags);
    assert_non_null(e);
    *state = e;
    feed.nc = it_env_connect(e, "feed");
    feed.n = quick() ? 5000 : 50000;
    IT_CHECK(pthread_create(&feed.th, NULL, js_feed_run, &feed) == 0, "feeder");
    it_rand_seed((uint64_t)getpid());
    for (int k = 0; k < kills; k++) {
        it_sleep_ms(200 + (int64_t)(it_rand_u64() % 1300));
        fprintf(stderr, "  kill -9 #%d after %d published\n", k + 1,
                __atomic_load_n(&feed.sent, __ATOMIC_RELAXED));
        kill9(&e->dmn);
        restart(e, flags);
    }
    pthread_join(feed.th, NULL);
    /* Everything is taken and acked: the stream is empty, and the store caught up. */
    deadline = sc_now_mono_ms() + 180000;
    while (sc_now_mono_ms() < deadline && (left = js_stream_msgs(e->nc)) != 0)
        it_sleep_ms(200);
    IT_CHECK(left == 0, "the stream still holds %lld failures", (long long)left);
    json_decref(wait_stored(e->nc, 60000));
    st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "queue_size") == feed.n, "queue_size %lld of %d",
             (long long)it_json_int(st, "queue_size"), feed.n);
    IT_CHECK(it_json_int(st, "lifetime_stats.duplicates") == 0,
             "a redelivery counted as a repeat failure %lld times",
             (long long)it_json_int(st, "lifetime_stats.duplicates"));
    fprintf(stderr, "  last run: enqueued %lld, redelivered %lld, acked %lld, naked %lld\n",
            (long long)it_json_int(st, "lifetime_stats.enqueued"),
            (long long)it_json_int(st, "lifetime_stats.redelivered"),
            (long long)it_json_int(st, "ingest.acked"), (long long)it_json_int(st, "ingest.naked"));
    json_decref(st);
    all = os_all(index);
    IT_CHECK((int)json_object_size(all) == feed.n, "%zu documents for %d failures",
             json_object_size(all), feed.n);
    for (int i = 0; i < feed.n; i++) {
        snprintf(id, sizeof id, "js-%05d", i);
        IT_CHECK(json_object_get(all, id) != NULL, "%s is not in the index", id);
    }
    json_decref(all);
    os_drop(index);
    e->passed = true;
}

/*
 * JetStream ingest while the store cannot take writes (a write block on the
 * index): nothing is acked, the failures wait in the stream (naked, delivered
 * again), and once the block is lifted every one is stored and acked.
 */
static void
test_js_store_blocked(void **state)
{
    char index[128], path[256], id[64];
    struct flags f;
    const char *extra[] = {"ingest.mode=jetstream", "ingest.nak_delay_ms=200",
                           "retry_processor_enabled=false", NULL};
    const char *const *flags;
    struct it_env *e;
    const int n = 200;
    int64_t left = -1, deadline;
    json_t *st;
    long hs;

    test_index("jsblock", index, sizeof index);
    flags = os_flags(&f, os_url(), index, extra);
    e = it_env_start_js("persist-js-block", flags);
    assert_non_null(e);
    *state = e;
    snprintf(path, sizeof path, "/%s/_settings", index);
    json_decref(os_call("PUT", path, "{\"index.blocks.write\":true}", &hs));
    IT_CHECK(hs == 200, "set the write block: HTTP %ld", hs);
    for (int i = 0; i < n; i++) {
        struct penv p = {0};
        snprintf(id, sizeof id, "blk-%03d", i);
        p.task_id = id;
        p.n = i;
        p.max_retries = -1;
        p.error = "connection refused";
        penv_publish(e->nc, "dlq.failed.block", &p);
    }
    natsConnection_FlushTimeout(e->nc, IT_REQUEST_MS);
    /* Taken into memory, but not acked: the stream still holds every one. */
    wait_queue(e->nc, n, IT_WAIT_MS);
    it_sleep_ms(1500);
    st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "ingest.acked") == 0, "acked %lld while the store took nothing",
             (long long)it_json_int(st, "ingest.acked"));
    IT_CHECK(it_json_int(st, "ingest.naked") > 0, "nothing was naked");
    json_decref(st);
    IT_CHECK(js_stream_msgs(e->nc) == n, "the stream holds %lld of %d",
             (long long)js_stream_msgs(e->nc), n);
    json_decref(os_call("PUT", path, "{\"index.blocks.write\":null}", &hs));
    IT_CHECK(hs == 200, "clear the write block: HTTP %ld", hs);
    deadline = sc_now_mono_ms() + 60000;
    while (sc_now_mono_ms() < deadline && (left = js_stream_msgs(e->nc)) != 0)
        it_sleep_ms(200);
    IT_CHECK(left == 0, "the stream still holds %lld", (long long)left);
    json_decref(wait_stored(e->nc, 30000));
    IT_CHECK(os_count(index, NULL) == n, "%lld documents of %d", (long long)os_count(index, NULL), n);
    st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "lifetime_stats.enqueued") == n && it_json_int(st, "lifetime_stats.duplicates") == 0,
             "enqueued %lld, duplicates %lld", (long long)it_json_int(st, "lifetime_stats.enqueued"),
             (long long)it_json_int(st, "lifetime_stats.duplicates"));
    json_decref(st);
    os_drop(index);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_degraded, it_teardown),
        cmocka_unit_test_teardown(test_partial_bulk, it_teardown),
        cmocka_unit_test_teardown(test_background_load, it_teardown),
        cmocka_unit_test_teardown(test_binary, it_teardown),
        cmocka_unit_test_teardown(test_advisory_task, it_teardown),
        cmocka_unit_test_teardown(test_episode_restart, it_teardown),
        cmocka_unit_test_teardown(test_mapping, it_teardown),
        cmocka_unit_test_teardown(test_kill9_restart, it_teardown),
        cmocka_unit_test_teardown(test_ten_thousand, it_teardown),
        cmocka_unit_test_teardown(test_outage, it_teardown),
        cmocka_unit_test_teardown(test_tls_auth, tls_teardown),
        cmocka_unit_test_teardown(test_tls_bad_password, tls_teardown),
        cmocka_unit_test_teardown(test_tls_verify, tls_teardown),
        cmocka_unit_test_teardown(test_long_id, it_teardown),
        cmocka_unit_test_teardown(test_poison_bulk, it_teardown),
        cmocka_unit_test_teardown(test_big_doc_alone, it_teardown),
        cmocka_unit_test_teardown(test_block_429, it_teardown),
        cmocka_unit_test_teardown(test_ack_stored, it_teardown),
        cmocka_unit_test_teardown(test_spill, it_teardown),
        cmocka_unit_test_teardown(test_paused_kill9, paused_teardown),
        cmocka_unit_test_teardown(test_js_kill9, it_teardown),
        cmocka_unit_test_teardown(test_js_store_blocked, it_teardown),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    if (!getenv("DLQ_TEST_OPENSEARCH_URL") || !getenv("DLQ_TEST_OPENSEARCH_CTL")) {
        fprintf(stderr, "test_persist: DLQ_TEST_OPENSEARCH_URL and DLQ_TEST_OPENSEARCH_CTL must be "
                        "set (scripts/test.sh starts a node with scripts/opensearch.sh and sets "
                        "them); failing rather than skipping\n");
        return 1;
    }
    if (getenv("DLQ_IT_FILTER")) /* e.g. DLQ_IT_FILTER='test_outage' to run one */
        cmocka_set_test_filter(getenv("DLQ_IT_FILTER"));
    return cmocka_run_group_tests_name("persist (OpenSearch)", tests, NULL, NULL);
}
