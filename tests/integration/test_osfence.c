/* test_osfence.c - integration: the OpenSearch store's cluster mode against a real node: a claim loads its partition, and a former owner's writes after another instance's claim are refused (409, counted fenced) while the document keeps the newer owner's state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/event.h>

#include "dlq.h"
#include "harness.h"
#include "persist.h"

#define PARTS 4
#define MAX_WRITES 8

/* One write an owner wants done: a document (status, mirror version) or a delete. */
struct want {
    char id[64];
    char status[16];
    uint64_t version;
    bool del;
};

/* A minimal owner of one store: its pending writes, the last answer per write, claims and loads. */
struct owner {
    const char *name;
    struct persist *p;
    struct want pending[MAX_WRITES];
    size_t npending;
    int answers;          /* results received */
    persist_result last;  /* the last result */
    int claimed_ok[PARTS];
    int loaded;
    char loaded_status[16];
};

static void
o_fill(void *ctx, struct persist_batch *b)
{
    struct owner *o = ctx;

    for (size_t i = 0; i < o->npending; i++) {
        struct want *w = &o->pending[i];
        if (w->del) {
            assert_int_equal(persist_batch_delete(b, w->id, strlen(w->id), w->version), SC_OK);
            continue;
        }
        struct sc_buf *buf = persist_batch_put_begin(b, w->id, strlen(w->id), w->version);
        assert_non_null(buf);
        sc_buf_appendf(buf,
                       "{\"task_id\":\"%s\",\"status\":\"%s\",\"seq\":1,\"version\":%llu,"
                       "\"partition\":%u}",
                       w->id, w->status, (unsigned long long)w->version,
                       dlq_partition_of(w->id, strlen(w->id), PARTS));
        assert_int_equal(persist_batch_put_end(b), SC_OK);
    }
    o->npending = 0;
}

static void
o_result(void *ctx, const struct persist_item *it, persist_result r, const char *reason)
{
    struct owner *o = ctx;

    (void)it;
    if (r != PERSIST_ITEM_RETRY)
        printf("osfence: %s: %s%s%s\n", o->name, persist_result_name(r), reason ? ": " : "",
               reason ? reason : "");
    o->answers++;
    o->last = r;
}

static void
o_loaded(void *ctx, const char *id, size_t id_len, uint64_t version, json_t *src)
{
    struct owner *o = ctx;
    const char *st = json_string_value(json_object_get(src, "status"));

    (void)id;
    (void)id_len;
    IT_CHECK(version == 0, "a claim's load hands version 0 (the document's own counts), got %llu",
             (unsigned long long)version);
    o->loaded++;
    snprintf(o->loaded_status, sizeof(o->loaded_status), "%s", st ? st : "");
}

static void
o_state(void *ctx, persist_state s, const char *error)
{
    (void)ctx;
    (void)s;
    (void)error;
}

static void
o_claimed(void *ctx, unsigned partition, bool ok, const char *error)
{
    struct owner *o = ctx;

    if (!ok)
        fprintf(stderr, "osfence: %s: claim of %u failed: %s\n", o->name, partition,
                error ? error : "");
    if (ok && partition < PARTS)
        o->claimed_ok[partition]++;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until *flag reaches want (or IT_WAIT_MS passes); returns whether it did. */
static bool
run_until(struct event_base *base, const int *flag, int want)
{
    int64_t end = sc_now_mono_ms() + IT_WAIT_MS;

    while (*flag < want && sc_now_mono_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    return *flag >= want;
}

/* Queues one write of o and waits for its answer; returns the result. */
static persist_result
write_one(struct event_base *base, struct owner *o, const char *id, const char *status,
          uint64_t version, bool del)
{
    int before = o->answers;
    struct want *w = &o->pending[o->npending++];

    snprintf(w->id, sizeof(w->id), "%s", id);
    snprintf(w->status, sizeof(w->status), "%s", status);
    w->version = version;
    w->del = del;
    persist_kick(o->p, true);
    IT_CHECK(run_until(base, &o->answers, before + 1), "%s: the write of %s is answered", o->name, id);
    return o->last;
}

static bool
store_ok(struct event_base *base, struct persist *p)
{
    int64_t end = sc_now_mono_ms() + IT_WAIT_MS * 3;

    while (p->state != PERSIST_OK && sc_now_mono_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    return p->state == PERSIST_OK;
}

static size_t
on_body(char *p, size_t size, size_t n, void *userp)
{
    struct sc_buf *b = userp;
    return sc_buf_append(b, p, size * n) == SC_OK ? size * n : 0;
}

/* A blocking GET or DELETE of the node; returns the status, the body parsed in *out (may be NULL). */
static long
os_call(const char *method, const char *path, json_t **out)
{
    CURL *c = curl_easy_init();
    struct sc_buf b;
    char url[1024];
    long status = 0;

    sc_buf_init(&b, 1 << 24);
    snprintf(url, sizeof(url), "%s%s", getenv("DLQ_TEST_OPENSEARCH_URL"), path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (out)
        *out = b.len ? json_loadb(b.data, b.len, 0, NULL) : NULL;
    sc_buf_destroy(&b);
    return status;
}

static struct persist *
new_store(struct event_base *base, const char *index, struct owner *o)
{
    struct persist_opts po;
    struct persist_owner ow = {o, o_fill, o_result, o_loaded, o_state, o_claimed};
    struct persist *p = NULL;
    char err[256] = "";

    memset(&po, 0, sizeof(po));
    po.backend = "opensearch";
    po.opensearch.urls = getenv("DLQ_TEST_OPENSEARCH_URL");
    po.opensearch.index = index;
    po.opensearch.bulk_max_docs = 100;
    po.opensearch.bulk_max_bytes = 1 << 20;
    po.opensearch.flush_ms = 10;
    po.opensearch.partitions = PARTS;
    po.opensearch.fenced = true;
    IT_CHECK(persist_new(base, &po, &ow, &p, err, sizeof(err)) == SC_OK, "%s: store: %s", o->name, err);
    o->p = p;
    return p;
}

/*
 * Two instances A and B on one index. A claims the partition of t-1 and
 * writes it; B claims it (a newer generation), loads what A wrote and
 * writes it; A's later write and delete (a former owner that still thinks
 * it owns the partition, with a newer mirror version even) come back 409
 * and are counted fenced; the document keeps B's state. A write of a
 * partition released is fenced without being sent. A claim by A again
 * fences B, and B's refence lets it write again.
 */
static void
test_fence(void **state)
{
    struct event_base *base = event_base_new();
    struct owner a = {.name = "A"}, b = {.name = "B"};
    struct event *tick;
    struct timeval tv = {0, 50000};
    struct persist_stats st;
    char index[64], path[160];
    const char *id = "t-1";
    unsigned p = dlq_partition_of(id, strlen(id), PARTS);
    json_t *doc = NULL;
    uint64_t before_batches;

    (void)state;
    snprintf(index, sizeof(index), "dlq-it-osfence-%d", (int)getpid());
    snprintf(path, sizeof(path), "/%s", index);
    os_call("DELETE", path, NULL); /* a leftover of an earlier run */
    tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    event_add(tick, &tv);
    new_store(base, index, &a);
    new_store(base, index, &b);
    assert_int_equal(persist_start(a.p), SC_OK);
    IT_CHECK(store_ok(base, a.p), "A's store turns ok");
    assert_int_equal(persist_start(b.p), SC_OK);
    IT_CHECK(store_ok(base, b.p), "B's store turns ok");

    /* A owns p. */
    assert_int_equal(persist_claim(a.p, p), SC_OK);
    IT_CHECK(run_until(base, &a.claimed_ok[p], 1), "A's claim of %u is over", p);
    IT_CHECK(write_one(base, &a, id, "pending", 100, false) == PERSIST_ITEM_OK, "A writes t-1");

    /* B takes p over: it loads A's document. */
    assert_int_equal(persist_claim(b.p, p), SC_OK);
    IT_CHECK(run_until(base, &b.claimed_ok[p], 1), "B's claim of %u is over", p);
    IT_CHECK(b.loaded == 1 && strcmp(b.loaded_status, "pending") == 0,
             "B loaded A's t-1 (loaded %d, status '%s')", b.loaded, b.loaded_status);
    IT_CHECK(write_one(base, &b, id, "retrying", 200, false) == PERSIST_ITEM_OK, "B writes t-1");

    /* A, a former owner that does not know yet: refused by the version, whatever its own version says. */
    IT_CHECK(write_one(base, &a, id, "exhausted", 300, false) == PERSIST_ITEM_FENCED,
             "A's late write is fenced, got %s", persist_result_name(a.last));
    IT_CHECK(write_one(base, &a, id, "", 400, true) == PERSIST_ITEM_FENCED,
             "A's late delete is fenced, got %s", persist_result_name(a.last));
    persist_get_stats(a.p, &st);
    IT_CHECK(st.fenced == 2, "A counts 2 fenced writes, got %llu", (unsigned long long)st.fenced);
    snprintf(path, sizeof(path), "/%s/_doc/%s", index, id);
    IT_CHECK(os_call("GET", path, &doc) == 200 && doc, "GET t-1");
    IT_CHECK(strcmp(json_string_value(json_object_get(json_object_get(doc, "_source"), "status")),
                    "retrying") == 0,
             "t-1 keeps B's state");
    IT_CHECK((uint64_t)json_integer_value(json_object_get(doc, "_version")) >> 40 == 2,
             "t-1's version carries B's generation (2) in its high bits: %lld",
             (long long)json_integer_value(json_object_get(doc, "_version")));
    json_decref(doc);

    /* Released: fenced without a request. */
    persist_release(a.p, p);
    persist_get_stats(a.p, &st);
    before_batches = st.batches;
    IT_CHECK(write_one(base, &a, id, "exhausted", 500, false) == PERSIST_ITEM_FENCED,
             "a write of a released partition is fenced");
    persist_get_stats(a.p, &st);
    IT_CHECK(st.batches == before_batches && st.fenced == 3,
             "... and not sent (batches %llu -> %llu, fenced %llu)",
             (unsigned long long)before_batches, (unsigned long long)st.batches,
             (unsigned long long)st.fenced);

    /* A claims p again (generation 3): B's writes are fenced; its refence (generation 4) lets it write. */
    assert_int_equal(persist_claim(a.p, p), SC_OK);
    IT_CHECK(run_until(base, &a.claimed_ok[p], 2), "A's second claim is over");
    IT_CHECK(write_one(base, &a, id, "pending", 600, false) == PERSIST_ITEM_OK, "A writes again");
    IT_CHECK(write_one(base, &b, id, "retrying", 700, false) == PERSIST_ITEM_FENCED,
             "B's write after A's new claim is fenced");
    persist_refence(b.p, p);
    {
        int64_t end = sc_now_mono_ms() + IT_WAIT_MS;
        persist_result r = PERSIST_ITEM_RETRY;
        while (r == PERSIST_ITEM_RETRY && sc_now_mono_ms() < end)
            r = write_one(base, &b, id, "retrying", 800, false); /* RETRY while the refence runs */
        IT_CHECK(r == PERSIST_ITEM_OK, "B writes after its refence, got %s", persist_result_name(r));
    }

    persist_free(a.p);
    persist_free(b.p);
    event_free(tick);
    event_base_free(base);
    snprintf(path, sizeof(path), "/%s", index);
    os_call("DELETE", path, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fence),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!getenv("DLQ_TEST_OPENSEARCH_URL")) {
        fprintf(stderr, "test_osfence: DLQ_TEST_OPENSEARCH_URL must be set (scripts/test.sh starts a "
                        "node with scripts/opensearch.sh); failing rather than skipping\n");
        return 1;
    }
    return cmocka_run_group_tests_name("OpenSearch store fence", tests, NULL, NULL);
}
