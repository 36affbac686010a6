/* test_client_c.c - integration: the C client library (clients/c) against the shared vectors, a real nats-server and the real sidecar. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>
#include <pthread.h>

#include "dlq_client.h"
#include "harness.h"
#include "vectors.h"

/* ---- vectors --------------------------------------------------------------------------------- */

/* Packs a JSON value as MessagePack, each value in its smallest form (objects keep their order). */
static void
pack_json(msgpack_packer *pk, const json_t *v)
{
    const char *k;
    json_t *x;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach((json_t *)v, k, x) {
            msgpack_pack_str_with_body(pk, k, strlen(k));
            pack_json(pk, x);
        }
        break;
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, x) pack_json(pk, x);
        break;
    case JSON_STRING:
        msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(v)); break;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(v)); break;
    case JSON_TRUE: msgpack_pack_true(pk); break;
    case JSON_FALSE: msgpack_pack_false(pk); break;
    case JSON_NULL: msgpack_pack_nil(pk); break;
    }
}

/* Decodes standard base64 (no line breaks) into out; returns the length. */
static size_t
unbase64(const char *s, uint8_t *out, size_t cap)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    for (; *s && *s != '='; s++) {
        const char *p = strchr(tab, *s);
        assert_non_null(p);
        acc = acc << 6 | (uint32_t)(p - tab);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            assert_true(o < cap);
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

/* A failure built from a vector's JSON twin, with the storage its pointers borrow. */
struct twin {
    struct dlq_client_failure f;
    msgpack_sbuffer task, meta;
    uint8_t bin[256];
    const char *repos[128];
};

/*
 * Fills t from the JSON twin obj. Returns false when the twin holds a key the
 * C API cannot express with that type (a task_id that is a number, ...).
 */
static bool
twin_from_json(struct twin *t, const json_t *obj)
{
    const char *k;
    json_t *v;
    msgpack_packer pk;

    memset(t, 0, sizeof(*t));
    msgpack_sbuffer_init(&t->task);
    msgpack_sbuffer_init(&t->meta);
    json_object_foreach((json_t *)obj, k, v) {
        if (strcmp(k, "task") == 0) {
            json_t *b = json_object_get(v, "$bin");
            if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(b)) {
                t->f.task_bin = t->bin;
                t->f.task_bin_len = unbase64(json_string_value(b), t->bin, sizeof(t->bin));
            } else {
                msgpack_packer_init(&pk, &t->task, msgpack_sbuffer_write);
                pack_json(&pk, v);
                t->f.task_mp = t->task.data;
                t->f.task_mp_len = t->task.size;
            }
        } else if (strcmp(k, "metadata") == 0) {
            if (json_is_null(v))
                continue;
            msgpack_packer_init(&pk, &t->meta, msgpack_sbuffer_write);
            pack_json(&pk, v);
            t->f.metadata_mp = t->meta.data;
            t->f.metadata_mp_len = t->meta.size;
        } else if (strcmp(k, "repos") == 0) {
            size_t i;
            json_t *r;
            if (!json_is_array(v) || json_array_size(v) > 128)
                return false;
            json_array_foreach(v, i, r) {
                if (!json_is_string(r))
                    return false;
                t->repos[i] = json_string_value(r);
            }
            t->f.repos = t->repos;
            t->f.nrepos = json_array_size(v);
        } else if (strcmp(k, "max_retries") == 0) {
            if (json_is_null(v))
                continue;
            if (!json_is_integer(v))
                return false;
            t->f.has_max_retries = true;
            t->f.max_retries = (int)json_integer_value(v);
        } else if (strcmp(k, "failed_at") == 0) {
            if (json_is_null(v))
                continue;
            if (!json_is_integer(v))
                return false;
            t->f.has_failed_at = true;
            t->f.failed_at_ms = json_integer_value(v);
        } else if (strcmp(k, "enqueue") == 0) {
            if (!json_is_boolean(v))
                return false;
            t->f.enqueue = json_is_true(v);
        } else {
            const char **slot = strcmp(k, "task_id") == 0          ? &t->f.task_id
                                : strcmp(k, "error") == 0          ? &t->f.error
                                : strcmp(k, "error_type") == 0     ? &t->f.error_type
                                : strcmp(k, "error_category") == 0 ? &t->f.error_category
                                : strcmp(k, "retry_policy") == 0   ? &t->f.retry_policy
                                : strcmp(k, "retry_subject") == 0  ? &t->f.retry_subject
                                                                   : NULL;
            if (!slot)
                return false; /* a key outside the contract: the API has none */
            if (json_is_null(v) && slot == &t->f.task_id)
                return false; /* a nil task_id: the API knows only "absent" */
            if (json_is_null(v))
                continue;
            if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
                return false;
            *slot = json_string_value(v);
        }
    }
    return true;
}

static void
twin_free(struct twin *t)
{
    msgpack_sbuffer_destroy(&t->task);
    msgpack_sbuffer_destroy(&t->meta);
}

/*
 * 1. The client against tests/vectors without a server: every canonical
 * valid envelope encodes to the vector's exact bytes; a valid one the
 * client refuses, and every invalid one the C API can express, is refused
 * with the manifest's field and reason (and its message, when the message
 * holds no byte offset); the canonical outcomes are the bytes a worker
 * replies.
 */
static void
test_vectors(void **state)
{
    json_t *m = vectors_manifest(), *v;
    size_t k, encoded = 0, objects = 0, refused = 0, skipped = 0, replies = 0;

    (void)state;
    json_array_foreach(json_object_get(m, "envelopes"), k, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *jpath = json_string_value(json_object_get(v, "json"));
        bool valid = json_is_true(json_object_get(v, "valid"));
        const json_t *cr = json_object_get(v, "client_refuses");
        struct dlq_client_error err;
        struct twin t;
        msgpack_sbuffer out;
        size_t len;
        char *text;
        json_t *obj;
        const char *want_field, *want_reason, *why;
        dlq_client_status s;

        if (!jpath || (valid && !json_is_true(json_object_get(v, "canonical")) && !cr)) {
            skipped++;
            continue;
        }
        text = (char *)vectors_read(jpath, &len, true);
        obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        free(text);
        if (!json_is_object(obj) || !twin_from_json(&t, obj)) {
            if (json_is_object(obj))
                twin_free(&t);
            json_decref(obj);
            IT_CHECK(!valid, "valid canonical vector %s cannot be expressed with the C API", name);
            skipped++;
            continue;
        }
        msgpack_sbuffer_init(&out);
        s = dlq_client_encode(&t.f, 0, &out, &err);
        if (valid && !cr) {
            char *want = (char *)vectors_read(json_string_value(json_object_get(v, "msgpack")), &len, true);
            IT_CHECK(s == DLQ_CLIENT_OK, "vector %s: refused: %s", name, err.message);
            IT_CHECK(out.size == len && memcmp(out.data, want, len) == 0,
                     "vector %s: the client's %zu bytes differ from the vector's %zu", name,
                     out.size, len);
            /* The same failure with the task and metadata as msgpack-c objects: the same bytes. */
            if (t.f.task_mp) {
                msgpack_unpacked task_obj, meta_obj;
                msgpack_sbuffer again;
                msgpack_unpacked_init(&task_obj);
                msgpack_unpacked_init(&meta_obj);
                assert_int_equal(msgpack_unpack_next(&task_obj, t.f.task_mp, t.f.task_mp_len, NULL),
                                 MSGPACK_UNPACK_SUCCESS);
                t.f.task_mp = NULL;
                t.f.task_obj = &task_obj.data;
                if (t.f.metadata_mp) {
                    assert_int_equal(msgpack_unpack_next(&meta_obj, t.f.metadata_mp,
                                                         t.f.metadata_mp_len, NULL),
                                     MSGPACK_UNPACK_SUCCESS);
                    t.f.metadata_mp = NULL;
                    t.f.metadata_obj = &meta_obj.data;
                }
                msgpack_sbuffer_init(&again);
                s = dlq_client_encode(&t.f, 0, &again, &err);
                IT_CHECK(s == DLQ_CLIENT_OK && again.size == len && memcmp(again.data, want, len) == 0,
                         "vector %s: encoded from msgpack-c objects, the bytes differ (%s)", name,
                         err.message);
                msgpack_sbuffer_destroy(&again);
                msgpack_unpacked_destroy(&task_obj);
                msgpack_unpacked_destroy(&meta_obj);
                objects++;
            }
            free(want);
            encoded++;
        } else {
            const json_t *exp = cr ? cr : v;
            want_field = json_string_value(json_object_get(exp, "field"));
            want_reason = json_string_value(json_object_get(exp, "reason"));
            why = cr ? NULL : json_string_value(json_object_get(v, "why"));
            IT_CHECK(s == DLQ_CLIENT_EINVAL, "vector %s: want a refusal (%s), got status %d", name,
                     want_reason, (int)s);
            IT_CHECK(err.field && strcmp(err.field, want_field) == 0 &&
                         strcmp(err.reason, want_reason) == 0,
                     "vector %s: want field %s reason %s, got %s %s (%s)", name, want_field,
                     want_reason, err.field ? err.field : "(none)", err.reason, err.message);
            IT_CHECK(strncmp(err.message, want_field, strlen(want_field)) == 0,
                     "vector %s: the message must name the field first: %s", name, err.message);
            if (why && !strstr(why, "at byte"))
                IT_CHECK(strcmp(err.message, why) == 0,
                         "vector %s: message: want \"%s\" (the sidecar's), got \"%s\"", name, why,
                         err.message);
            IT_CHECK(out.size == 0, "vector %s: a refused envelope wrote %zu bytes", name, out.size);
            refused++;
        }
        msgpack_sbuffer_destroy(&out);
        twin_free(&t);
        json_decref(obj);
    }
    json_array_foreach(json_object_get(m, "outcomes"), k, v) {
        char buf[512];
        size_t n, len;
        char *want;
        const char *et = json_string_value(json_object_get(v, "error_type"));

        if (!json_is_true(json_object_get(v, "canonical")))
            continue;
        if (json_is_true(json_object_get(v, "ok")))
            n = dlq_client_reply_encode(true, NULL, NULL, buf, sizeof(buf));
        else
            n = dlq_client_reply_encode(false, json_string_value(json_object_get(v, "error")), et,
                                        buf, sizeof(buf));
        want = (char *)vectors_read(json_string_value(json_object_get(v, "file")), &len, true);
        IT_CHECK(n == len && memcmp(buf, want, len) == 0, "outcome %s: want %s, got %.*s",
                 json_string_value(json_object_get(v, "name")), want, (int)n, buf);
        free(want);
        replies++;
    }
    fprintf(stderr, "[vectors] %zu encoded byte for byte (%zu again from msgpack-c objects), %zu refused as the manifest says, %zu not "
                    "expressible with the C API, %zu replies\n",
            encoded, objects, refused, skipped, replies);
    IT_CHECK(encoded >= 11, "only %zu canonical envelopes encoded", encoded);
    IT_CHECK(objects >= 10, "only %zu envelopes encoded from objects", objects);
    IT_CHECK(refused >= 15, "only %zu refusals checked", refused);
    IT_CHECK(replies >= 3, "only %zu canonical replies checked", replies);
    json_decref(m);
}

/*
 * 2. The real sidecar against tests/vectors: every envelope vector sent as
 * a request is accepted (valid) or answered 400 with the manifest's
 * message (invalid), so the vectors describe the daemon, not only its
 * decoder.
 */
static void
test_vectors_sidecar(void **state)
{
    struct it_env *e = it_env_start("client-vectors", NULL);
    json_t *m, *v;
    size_t k, n = 0;

    assert_non_null(e);
    *state = e;
    m = vectors_manifest();
    json_array_foreach(json_object_get(m, "envelopes"), k, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        size_t len;
        char *body = (char *)vectors_read(json_string_value(json_object_get(v, "msgpack")), &len, true);
        json_t *ack = it_request_bytes(e->nc, "dlq.failed.vectors", body, len, IT_REQUEST_MS);
        char *dump = it_json_dump(ack);

        if (json_is_true(json_object_get(v, "valid"))) {
            IT_CHECK(json_is_true(json_object_get(ack, "ok")), "vector %s: want ok, got %s", name,
                     dump);
        } else {
            const char *why = json_string_value(json_object_get(v, "why"));
            const char *msg = it_json_str(ack, "error.message");
            IT_CHECK(it_json_int(ack, "error.code") == 400 && msg && strcmp(msg, why) == 0,
                     "vector %s: want 400 \"%s\", got %s", name, why, dump);
        }
        free(dump);
        json_decref(ack);
        free(body);
        n++;
    }
    IT_CHECK(n >= 50, "only %zu vectors", n);
    json_decref(m);
    e->passed = true;
}

/* ---- reports -------------------------------------------------------------------------------- */

/* Checks that the string at path of obj is want. */
static void
check_json_str(const json_t *obj, const char *path, const char *want)
{
    const char *got = it_json_str(obj, path);
    char *dump;

    if (got && strcmp(got, want) == 0)
        return;
    dump = it_json_dump(obj);
    IT_CHECK(false, "%s: want \"%s\", got \"%s\" in %s", path, want, got ? got : "(none)", dump);
    free(dump);
}

/*
 * 3. A service reports a failure with every field (waiting for the ack),
 * and another without waiting: dlq.admin.get shows each field as sent.
 */
static void
test_report_stored(void **state)
{
    struct it_env *e = it_env_start("client-report", NULL);
    struct dlq_client *c = NULL;
    struct dlq_client_error err;
    struct dlq_client_ack ack;
    static const char *const repos[] = {"orders", "billing"};
    msgpack_sbuffer task, meta;
    msgpack_packer pk;
    char id[96], id2[96];
    json_t *t;
    char *dump;
    bool ok;

    assert_non_null(e);
    *state = e;
    assert_int_equal(dlq_client_new(e->nc, NULL, &c, &err), DLQ_CLIENT_OK);
    it_unique_id("rep", id, sizeof id);

    msgpack_sbuffer_init(&task);
    msgpack_packer_init(&pk, &task, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "order", 5);
    msgpack_pack_int(&pk, 42);
    msgpack_pack_str_with_body(&pk, "blob", 4);
    msgpack_pack_bin_with_body(&pk, "\x00\xff", 2);
    msgpack_sbuffer_init(&meta);
    msgpack_packer_init(&pk, &meta, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "tenant", 6);
    msgpack_pack_str_with_body(&pk, "acme", 4);

    struct dlq_client_failure f = {0};
    f.task_id = id;
    f.task_mp = task.data;
    f.task_mp_len = task.size;
    f.error = "disk quota exceeded";
    f.error_type = "QuotaError";
    f.error_category = "resource";
    f.retry_policy = "linear";
    f.has_max_retries = true;
    f.max_retries = 7;
    f.retry_subject = "dlq.retry.orders.slow";
    f.repos = repos;
    f.nrepos = 2;
    f.metadata_mp = meta.data;
    f.metadata_mp_len = meta.size;
    f.has_failed_at = true;
    f.failed_at_ms = 1764800000123;
    dlq_client_status s = dlq_client_report(c, "orders", &f, true, &ack, &err);
    IT_CHECK(s == DLQ_CLIENT_OK, "report: %s", err.message);
    IT_CHECK(!ack.durable && strcmp(ack.status, "pending") == 0 && ack.next_retry_at[0],
             "core ack: want pending with a next_retry_at, got durable=%d status=%s next=%s",
             ack.durable, ack.status, ack.next_retry_at);

    t = it_admin_get(e->nc, id);
    check_json_str(t, "task_id", id);
    check_json_str(t, "status", "pending");
    check_json_str(t, "subject", "dlq.failed.orders");
    check_json_str(t, "retry_subject", "dlq.retry.orders.slow");
    check_json_str(t, "error", "disk quota exceeded");
    check_json_str(t, "error_type", "QuotaError");
    check_json_str(t, "error_category", "resource");
    check_json_str(t, "retry_policy", "linear");
    check_json_str(t, "metadata.tenant", "acme");
    check_json_str(t, "task.blob.$bin", "AP8=");
    dump = it_json_dump(t);
    IT_CHECK(it_json_int(t, "max_retries") == 7, "max_retries: want 7 in %s", dump);
    IT_CHECK(it_json_int(t, "task.order") == 42, "task.order: want 42 in %s", dump);
    IT_CHECK(it_json_int(t, "task_size") == (int64_t)task.size, "task_size: want %zu in %s",
             task.size, dump);
    IT_CHECK(json_array_size(json_object_get(t, "repos")) == 2 &&
                 strcmp(json_string_value(json_array_get(json_object_get(t, "repos"), 1)),
                        "billing") == 0,
             "repos: want [orders, billing] in %s", dump);
    free(dump);
    json_decref(t);

    /* Without waiting: a plain publish, stored all the same; a bin task and defaults. */
    it_unique_id("nowait", id2, sizeof id2);
    struct dlq_client_failure g = {0};
    g.task_id = id2;
    g.task_bin = "\x01\x02\x03";
    g.task_bin_len = 3;
    g.error = "invalid schema: field x";
    s = dlq_client_report(c, "payments", &g, false, &ack, &err);
    IT_CHECK(s == DLQ_CLIENT_OK, "report without wait: %s", err.message);
    IT_CHECK(dlq_client_flush(c, 0, &err) == DLQ_CLIENT_OK, "flush: %s", err.message);
    t = it_wait_task_status(e->nc, id2, "pending", IT_WAIT_MS, &ok);
    dump = it_json_dump(t);
    IT_CHECK(ok, "the report without wait was not stored: %s", dump);
    check_json_str(t, "subject", "dlq.failed.payments");
    check_json_str(t, "error_category", "validation");
    check_json_str(t, "task.$bin", "AQID");
    IT_CHECK(it_json_int(t, "max_retries") == 3, "max_retries: want the default 3 in %s", dump);
    free(dump);
    json_decref(t);

    msgpack_sbuffer_destroy(&task);
    msgpack_sbuffer_destroy(&meta);
    dlq_client_free(c);
    e->passed = true;
}

/* The value of key k in the MessagePack map at p (len bytes), unpacked into *u; NULL when absent. */
static const msgpack_object *
map_get(msgpack_unpacked *u, const char *p, size_t len, const char *k)
{
    if (msgpack_unpack_next(u, p, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
        u->data.type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < u->data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u->data.via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) &&
            memcmp(kv->key.via.str.ptr, k, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

/*
 * 3b. Issue 17's keys: a report with priority, backoff and template (one
 * configured in the sidecar's file) is stored with them (get: priority,
 * backoff_ms, the template's max_retries and retry subject); depends_on is
 * checked in the envelope's bytes (an array of the ids as strings); bad
 * values are refused before anything is published.
 */
static void
test_report_issue17_keys(void **state)
{
    char path[] = "/tmp/dlq-it-client-tpl-XXXXXX";
    int fd = mkstemp(path);
    static const char yaml[] = "templates:\n  slow: {max_retries: 9, retry_subject: dlq.retry.tpl}\n";
    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
    close(fd);
    char cfgflag[64];
    snprintf(cfgflag, sizeof cfgflag, "config=%s", path);
    const char *const extra[] = {cfgflag, NULL};
    struct it_env *e = it_env_start("client-issue17", extra);
    unlink(path);
    assert_non_null(e);
    *state = e;
    struct dlq_client *c = NULL;
    struct dlq_client_error err;
    struct dlq_client_ack ack;
    static const int64_t delays[] = {250, 60000};
    static const char *const deps[] = {"order-1", "order-2"};
    char id[96];
    char *dump;

    assert_int_equal(dlq_client_new(e->nc, NULL, &c, &err), DLQ_CLIENT_OK);
    it_unique_id("k17", id, sizeof id);
    struct dlq_client_failure f = {.task_id = id, .task_bin = "x", .task_bin_len = 1,
                                   .error = "busy", .error_category = "transient",
                                   .priority = "high", .backoff_ms = delays, .nbackoff = 2,
                                   .template_name = "slow"};
    dlq_client_status s = dlq_client_report(c, "orders", &f, true, &ack, &err);
    IT_CHECK(s == DLQ_CLIENT_OK, "report: %s", err.message);
    json_t *t = it_admin_get(e->nc, id);
    dump = it_json_dump(t);
    check_json_str(t, "priority", "high");
    check_json_str(t, "retry_subject", "dlq.retry.tpl");
    IT_CHECK(it_json_int(t, "max_retries") == 9, "max_retries: want the template's 9 in %s", dump);
    const json_t *b = json_object_get(t, "backoff_ms");
    IT_CHECK(json_array_size(b) == 2 && json_integer_value(json_array_get(b, 0)) == 250 &&
                 json_integer_value(json_array_get(b, 1)) == 60000,
             "backoff_ms: want [250, 60000] in %s", dump);
    free(dump);
    json_decref(t);

    /* depends_on: the envelope's bytes (the sidecar's support is another branch's). */
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    struct dlq_client_failure g = {.task_id = "order-3", .task_bin = "x", .task_bin_len = 1,
                                   .depends_on = deps, .ndepends_on = 2};
    msgpack_sbuffer_init(&sb);
    msgpack_unpacked_init(&u);
    IT_CHECK(dlq_client_encode(&g, 0, &sb, &err) == DLQ_CLIENT_OK, "encode: %s", err.message);
    const msgpack_object *d = map_get(&u, sb.data, sb.size, "depends_on");
    IT_CHECK(d && d->type == MSGPACK_OBJECT_ARRAY && d->via.array.size == 2 &&
                 d->via.array.ptr[1].type == MSGPACK_OBJECT_STR &&
                 d->via.array.ptr[1].via.str.size == 7 &&
                 memcmp(d->via.array.ptr[1].via.str.ptr, "order-2", 7) == 0,
             "depends_on: want [\"order-1\", \"order-2\"] in the envelope");
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);

    /* Refused by the client, each naming its field. */
    static const int64_t bad_delays[] = {250, 0};
    static const char *const bad_deps[] = {"ok", ""};
    static const char *const self_dep[] = {"b4"}, *const twice_dep[] = {"x", "y", "x"};
    static const char *many_deps[33];
    for (size_t k = 0; k < 33; k++)
        many_deps[k] = "m";
    struct {
        struct dlq_client_failure f;
        const char *field;
    } bad[] = {
        {{.task_id = "b1", .task_bin = "x", .task_bin_len = 1, .priority = "urgent"}, "priority"},
        {{.task_id = "b2", .task_bin = "x", .task_bin_len = 1, .backoff_ms = bad_delays, .nbackoff = 2},
         "backoff"},
        {{.task_id = "b3", .task_bin = "x", .task_bin_len = 1, .depends_on = bad_deps, .ndepends_on = 2},
         "depends_on"},
        /* What the sidecar refuses to dlq.invalid (red team): its own id, an id twice, 33 ids. */
        {{.task_id = "b4", .task_bin = "x", .task_bin_len = 1, .depends_on = self_dep, .ndepends_on = 1},
         "depends_on"},
        {{.task_id = "b5", .task_bin = "x", .task_bin_len = 1, .depends_on = twice_dep, .ndepends_on = 3},
         "depends_on"},
        {{.task_id = "b6", .task_bin = "x", .task_bin_len = 1, .depends_on = many_deps, .ndepends_on = 33},
         "depends_on"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        msgpack_sbuffer_init(&sb);
        s = dlq_client_encode(&bad[k].f, 0, &sb, &err);
        IT_CHECK(s == DLQ_CLIENT_EINVAL && err.field && strcmp(err.field, bad[k].field) == 0,
                 "bad %s: want EINVAL naming it, got %s (%s)", bad[k].field,
                 dlq_client_status_text(s), err.message);
        IT_CHECK(sb.size == 0, "bad %s: nothing encoded", bad[k].field);
        msgpack_sbuffer_destroy(&sb);
    }

    /* An unknown template: the sidecar refuses it (400) and names the field. */
    struct dlq_client_failure h = {.task_id = "k17-unknown", .task_bin = "x", .task_bin_len = 1,
                                   .template_name = "nosuch"};
    s = dlq_client_report(c, "orders", &h, true, &ack, &err);
    IT_CHECK(s == DLQ_CLIENT_EREFUSED && err.code == 400 && strstr(err.message, "template"),
             "unknown template: want refused 400 naming template, got %s (%d: %s)",
             dlq_client_status_text(s), err.code, err.message);
    dlq_client_free(c);
    e->passed = true;
}

/* A count of messages on a subject, to see that nothing was published. */
struct spy {
    pthread_mutex_t mu;
    int n;
};

static void
on_spy(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct spy *s = closure;

    (void)nc;
    (void)sub;
    pthread_mutex_lock(&s->mu);
    s->n++;
    pthread_mutex_unlock(&s->mu);
    natsMsg_Destroy(msg);
}

/*
 * 4. An envelope that breaks the contract is refused before anything is
 * published, with an error naming the field; the sidecar sees nothing.
 */
static void
test_invalid_refused(void **state)
{
    struct it_env *e = it_env_start("client-invalid", NULL);
    struct dlq_client *c = NULL;
    struct dlq_client_error err;
    natsSubscription *sub = NULL;
    struct spy spy = {.n = 0};
    char long_id[300];
    int spied;

    assert_non_null(e);
    *state = e;
    pthread_mutex_init(&spy.mu, NULL);
    assert_int_equal(natsConnection_Subscribe(&sub, e->nc, "dlq.failed.>", on_spy, &spy), NATS_OK);
    assert_int_equal(natsConnection_Flush(e->nc), NATS_OK);
    assert_int_equal(dlq_client_new(e->nc, NULL, &c, &err), DLQ_CLIENT_OK);

    struct {
        const char *field, *reason, *message;
        struct dlq_client_failure f;
    } cases[5];
    for (size_t k = 0; k < 5; k++) {
        memset(&cases[k].f, 0, sizeof(cases[k].f));
        cases[k].f.task_id = "bad-1";
        cases[k].f.task_bin = "x";
        cases[k].f.task_bin_len = 1;
    }
    cases[0].f.has_max_retries = true;
    cases[0].f.max_retries = 101;
    cases[0].field = "max_retries";
    cases[0].reason = "out_of_range";
    cases[0].message = "max_retries: 101 is out of range 0-100";
    memset(long_id, 'z', 257);
    long_id[257] = '\0';
    cases[1].f.task_id = long_id;
    cases[1].field = "task_id";
    cases[1].reason = "too_big";
    cases[1].message = "task_id: 257 bytes, at most 256";
    cases[2].f.retry_policy = "sometimes";
    cases[2].field = "retry_policy";
    cases[2].reason = "bad_value";
    cases[2].message = "retry_policy: not one of never, linear, exponential, immediate";
    cases[3].f.task_bin = NULL;
    cases[3].field = "task";
    cases[3].reason = "task_missing";
    cases[3].message = "task: missing";
    cases[4].f.retry_subject = "dlq.retry.*";
    cases[4].field = "retry_subject";
    cases[4].reason = "bad_value";
    cases[4].message = NULL;
    for (size_t k = 0; k < 5; k++) {
        dlq_client_status s = dlq_client_report(c, "orders", &cases[k].f, true, NULL, &err);
        IT_CHECK(s == DLQ_CLIENT_EINVAL && err.field && strcmp(err.field, cases[k].field) == 0 &&
                     strcmp(err.reason, cases[k].reason) == 0,
                 "case %zu: want EINVAL on %s (%s), got %d %s %s: %s", k, cases[k].field,
                 cases[k].reason, (int)s, err.field ? err.field : "-", err.reason, err.message);
        if (cases[k].message)
            IT_CHECK(strcmp(err.message, cases[k].message) == 0, "case %zu: message \"%s\"", k,
                     err.message);
        s = dlq_client_report(c, "orders", &cases[k].f, false, NULL, &err);
        IT_CHECK(s == DLQ_CLIENT_EINVAL, "case %zu without wait: want EINVAL, got %d", k, (int)s);
    }
    /* A service name that is not subject tokens is refused too. */
    IT_CHECK(dlq_client_report(c, "or ders", &cases[0].f, true, NULL, &err) == DLQ_CLIENT_EINVAL,
             "service \"or ders\" accepted");
    assert_int_equal(natsConnection_Flush(e->nc), NATS_OK);
    it_sleep_ms(300);
    pthread_mutex_lock(&spy.mu);
    spied = spy.n;
    pthread_mutex_unlock(&spy.mu);
    IT_CHECK(spied == 0, "want nothing published on dlq.failed.>, saw %d message(s)", spied);
    json_t *st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "lifetime_stats.invalid") == 0 && it_json_int(st, "queue_size") == 0,
             "the sidecar saw something");
    json_decref(st);

    natsSubscription_Destroy(sub);
    dlq_client_free(c);
    pthread_mutex_destroy(&spy.mu);
    e->passed = true;
}

/* ---- workers -------------------------------------------------------------------------------- */

#define MAX_CALLS 16

/* What a test handler saw and what it answers. */
struct seen {
    pthread_mutex_t mu;
    int calls;
    char *task[MAX_CALLS];
    size_t task_len[MAX_CALLS];
    char *hdr[MAX_CALLS][8]; /* task_id, category, original, first_failed_at, episode, msg_id, subject */
    int attempt[MAX_CALLS], max_retries[MAX_CALLS];
    int mode;                /* 0 success, 1 fail TimeoutError, 2 garbage result, 3 fail with bad text */
};

static char *
dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int
handler(const struct dlq_client_retry *r, struct dlq_client_reply *reply, void *closure)
{
    struct seen *s = closure;
    int mode;

    pthread_mutex_lock(&s->mu);
    if (s->calls < MAX_CALLS) {
        int i = s->calls;
        s->task[i] = malloc(r->task_len ? r->task_len : 1);
        memcpy(s->task[i], r->task, r->task_len);
        s->task_len[i] = r->task_len;
        s->hdr[i][0] = dup_or_null(r->task_id);
        s->hdr[i][1] = dup_or_null(r->error_category);
        s->hdr[i][2] = dup_or_null(r->original_subject);
        s->hdr[i][3] = dup_or_null(r->first_failed_at);
        s->hdr[i][4] = dup_or_null(r->episode);
        s->hdr[i][5] = dup_or_null(r->msg_id);
        s->hdr[i][6] = dup_or_null(r->subject);
        s->attempt[i] = r->attempt;
        s->max_retries[i] = r->max_retries;
    }
    s->calls++;
    mode = s->mode;
    pthread_mutex_unlock(&s->mu);
    switch (mode) {
    case 0: return DLQ_CLIENT_RETRY_OK;
    case 1: return dlq_client_reply_fail(reply, "TimeoutError", "db timed out after %d ms", 5000);
    case 2: return 42;
    default: {
        /* Not UTF-8, and far past the error limit. */
        static char junk[9000];
        memset(junk, 'j', sizeof(junk) - 1);
        junk[0] = (char)0xff;
        junk[1] = (char)0xc0;
        return dlq_client_reply_fail(reply, "Bad\xff", "%s", junk);
    }
    }
}

static int
seen_calls(struct seen *s)
{
    int n;

    pthread_mutex_lock(&s->mu);
    n = s->calls;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static bool
wait_calls(struct seen *s, int n, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (seen_calls(s) >= n)
            return true;
        it_sleep_ms(10);
    }
    return seen_calls(s) >= n;
}

static void
seen_free(struct seen *s)
{
    for (int i = 0; i < MAX_CALLS && i < s->calls; i++) {
        free(s->task[i]);
        for (int j = 0; j < 8; j++)
            free(s->hdr[i][j]);
    }
    pthread_mutex_destroy(&s->mu);
}

/*
 * 5. A worker served by the client gets the retry with the task's exact
 * bytes and the headers of DESIGN section 5; its success completes the task.
 */
static void
test_retry_handler(void **state)
{
    struct it_env *e = it_env_start("client-retry", NULL);
    struct dlq_client *c = NULL;
    struct dlq_client_worker *w = NULL;
    struct dlq_client_error err;
    struct seen seen = {.calls = 0, .mode = 0};
    /* A task with bytes a careless copy would break: NUL, 0xff, a bin, a nested map. */
    static const char task[] = "\x83\xa1" "a\xc4\x04\x00\xff\x00\x01\xa1" "b\x81\xa1" "c\xc0\xa1" "d\xcb"
                               "\x40\x09\x21\xfb\x54\x44\x2d\x18";
    char id[96], want_id[160];
    natsConnection *wc;
    json_t *t;
    bool ok;

    assert_non_null(e);
    *state = e;
    pthread_mutex_init(&seen.mu, NULL);
    wc = it_env_connect(e, "client-worker");
    assert_non_null(wc);
    IT_CHECK(dlq_client_serve(wc, "dlq.retry.orders", "orders-workers", handler, &seen, &w, &err) ==
                 DLQ_CLIENT_OK,
             "serve: %s", err.message);
    assert_int_equal(dlq_client_new(e->nc, NULL, &c, &err), DLQ_CLIENT_OK);
    it_unique_id("retry", id, sizeof id);
    struct dlq_client_failure f = {0};
    f.task_id = id;
    f.task_mp = task;
    f.task_mp_len = sizeof(task) - 1;
    f.error = "connection reset by peer";
    f.error_type = "ConnectionError";
    f.has_max_retries = true;
    f.max_retries = 4;
    f.has_failed_at = true;
    f.failed_at_ms = 1764800000123;
    IT_CHECK(dlq_client_report(c, "orders", &f, true, NULL, &err) == DLQ_CLIENT_OK, "report: %s",
             err.message);

    /* Network error: exponential backoff, base 200 ms in the suite. */
    IT_CHECK(wait_calls(&seen, 1, IT_WAIT_MS), "the handler was never called");
    t = it_wait_task_status(e->nc, id, "completed", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "want completed after the handler's success, got %s", dump);
    free(dump);
    json_decref(t);
    pthread_mutex_lock(&seen.mu);
    IT_CHECK(seen.task_len[0] == sizeof(task) - 1 && memcmp(seen.task[0], task, sizeof(task) - 1) == 0,
             "the handler got %zu bytes, not the task's exact %zu", seen.task_len[0],
             sizeof(task) - 1);
    IT_CHECK(seen.hdr[0][0] && strcmp(seen.hdr[0][0], id) == 0, "Dlq-Task-Id: %s",
             seen.hdr[0][0] ? seen.hdr[0][0] : "(none)");
    IT_CHECK(seen.attempt[0] == 1 && seen.max_retries[0] == 4, "attempt %d / max_retries %d",
             seen.attempt[0], seen.max_retries[0]);
    IT_CHECK(seen.hdr[0][1] && strcmp(seen.hdr[0][1], "network") == 0, "Dlq-Error-Category: %s",
             seen.hdr[0][1] ? seen.hdr[0][1] : "(none)");
    IT_CHECK(seen.hdr[0][2] && strcmp(seen.hdr[0][2], "dlq.failed.orders") == 0,
             "Dlq-Original-Subject: %s", seen.hdr[0][2] ? seen.hdr[0][2] : "(none)");
    IT_CHECK(seen.hdr[0][3] && strncmp(seen.hdr[0][3], "2025-12-03T22:13:20.123", 23) == 0,
             "Dlq-First-Failed-At: %s", seen.hdr[0][3] ? seen.hdr[0][3] : "(none)");
    IT_CHECK(seen.hdr[0][4] != NULL, "no Dlq-Episode");
    snprintf(want_id, sizeof want_id, "%s:%s:1", id, seen.hdr[0][4] ? seen.hdr[0][4] : "?");
    IT_CHECK(seen.hdr[0][5] && strcmp(seen.hdr[0][5], want_id) == 0, "Nats-Msg-Id: want %s, got %s",
             want_id, seen.hdr[0][5] ? seen.hdr[0][5] : "(none)");
    IT_CHECK(seen.hdr[0][6] && strcmp(seen.hdr[0][6], "dlq.retry.orders") == 0, "subject %s",
             seen.hdr[0][6] ? seen.hdr[0][6] : "(none)");
    pthread_mutex_unlock(&seen.mu);

    dlq_client_worker_free(w);
    dlq_client_free(c);
    seen_free(&seen);
    e->passed = true;
}

/*
 * 6. A handler that fails: its error is classified (TimeoutError ->
 * network), and the task is exhausted after max_retries attempts, the
 * handler called exactly that often.
 */
static void
test_handler_error_exhausted(void **state)
{
    struct it_env *e = it_env_start("client-exhaust", NULL);
    struct dlq_client *c = NULL;
    struct dlq_client_worker *w = NULL;
    struct dlq_client_error err;
    struct seen seen = {.calls = 0, .mode = 1};
    char id[96];
    natsConnection *wc;
    json_t *t;
    bool ok;

    assert_non_null(e);
    *state = e;
    pthread_mutex_init(&seen.mu, NULL);
    wc = it_env_connect(e, "client-worker");
    assert_non_null(wc);
    assert_int_equal(dlq_client_serve(wc, "dlq.retry.>", "workers", handler, &seen, &w, &err),
                     DLQ_CLIENT_OK);
    assert_int_equal(dlq_client_new(e->nc, NULL, &c, &err), DLQ_CLIENT_OK);
    it_unique_id("exh", id, sizeof id);
    struct dlq_client_failure f = {0};
    f.task_id = id;
    f.task_bin = "payload";
    f.task_bin_len = 7;
    f.error = "rate limited, try again";
    f.has_max_retries = true;
    f.max_retries = 2;
    IT_CHECK(dlq_client_report(c, "billing", &f, true, NULL, &err) == DLQ_CLIENT_OK, "report: %s",
             err.message);
    t = it_wait_task_status(e->nc, id, "exhausted", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "want exhausted after 2 failed attempts, got %s", dump);
    IT_CHECK(it_json_int(t, "retry_count") == 2, "retry_count: want 2 in %s", dump);
    check_json_str(t, "error", "db timed out after 5000 ms");
    check_json_str(t, "error_type", "TimeoutError");
    check_json_str(t, "error_category", "network");
    free(dump);
    json_decref(t);
    it_sleep_ms(1000); /* no third attempt comes */
    IT_CHECK(seen_calls(&seen) == 2, "want the handler called 2 times, got %d", seen_calls(&seen));

    dlq_client_worker_free(w);
    dlq_client_free(c);
    seen_free(&seen);
    e->passed = true;
}

/*
 * 7. A handler returning garbage (a result that is neither success nor
 * failure; a failure with invalid UTF-8 far past the limits) still makes
 * a valid failure reply: the attempt fails, never succeeds.
 */
static void
test_handler_garbage(void **state)
{
    struct it_env *e = it_env_start("client-garbage", NULL);
    struct dlq_client *c = NULL;
    struct dlq_client_worker *w = NULL;
    struct dlq_client_error err;
    struct seen seen = {.calls = 0, .mode = 2};
    char id[96], id2[96];
    natsConnection *wc;
    json_t *t;
    const char *text;
    bool ok;

    assert_non_null(e);
    *state = e;
    pthread_mutex_init(&seen.mu, NULL);
    wc = it_env_connect(e, "client-worker");
    assert_non_null(wc);
    assert_int_equal(dlq_client_serve(wc, "dlq.retry.>", NULL, handler, &seen, &w, &err),
                     DLQ_CLIENT_OK);
    assert_int_equal(dlq_client_new(e->nc, NULL, &c, &err), DLQ_CLIENT_OK);

    it_unique_id("garbage", id, sizeof id);
    struct dlq_client_failure f = {0};
    f.task_id = id;
    f.task_bin = "p";
    f.task_bin_len = 1;
    f.error = "ECONNRESET";
    f.has_max_retries = true;
    f.max_retries = 1;
    IT_CHECK(dlq_client_report(c, "shop", &f, true, NULL, &err) == DLQ_CLIENT_OK, "report: %s",
             err.message);
    t = it_wait_task_status(e->nc, id, "exhausted", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "a garbage result must fail the attempt (exhausted with max_retries 1): %s", dump);
    check_json_str(t, "error", "worker handler returned an invalid result 42");
    check_json_str(t, "error_type", "dlq.InvalidHandlerResult");
    free(dump);
    json_decref(t);

    pthread_mutex_lock(&seen.mu);
    seen.mode = 3;
    pthread_mutex_unlock(&seen.mu);
    it_unique_id("junk", id2, sizeof id2);
    f.task_id = id2;
    IT_CHECK(dlq_client_report(c, "shop", &f, true, NULL, &err) == DLQ_CLIENT_OK, "report: %s",
             err.message);
    t = it_wait_task_status(e->nc, id2, "exhausted", IT_WAIT_MS, &ok);
    dump = it_json_dump(t);
    IT_CHECK(ok, "a failure with junk text must still fail the attempt: %s", dump);
    text = it_json_str(t, "error");
    IT_CHECK(text && strncmp(text, "\xef\xbf\xbd\xef\xbf\xbdjjj", 9) == 0 &&
                 strlen(text) <= 4096 && strstr(text, "...[truncated]"),
             "error: want U+FFFD twice, j..., at most 4096 bytes and the marker; got %s", dump);
    check_json_str(t, "error_type", "Bad\xef\xbf\xbd");
    free(dump);
    json_decref(t);

    dlq_client_worker_free(w);
    dlq_client_free(c);
    seen_free(&seen);
    e->passed = true;
}

/* ---- JetStream ------------------------------------------------------------------------------- */

/*
 * 8. With durable ingest (ingest.mode: jetstream) the client publishes
 * through the stream with Nats-Msg-Id: the PubAck names DLQ_FAILED, a
 * resend with the same msg_id is a duplicate, and the task is stored.
 */
static void
test_jetstream_durable(void **state)
{
    const char *flags[] = {"ingest.mode=jetstream", NULL};
    struct it_env *e = it_env_start_js("client-js", flags);
    struct dlq_client *c = NULL;
    struct dlq_client_error err;
    struct dlq_client_ack ack;
    char id[96];
    json_t *t;
    bool ok;

    assert_non_null(e);
    *state = e;
    assert_int_equal(dlq_client_new(e->nc, NULL, &c, &err), DLQ_CLIENT_OK);
    it_unique_id("js", id, sizeof id);
    struct dlq_client_failure f = {0};
    f.task_id = id;
    f.task_bin = "durable";
    f.task_bin_len = 7;
    f.error = "schema invalid";
    f.msg_id = "js-report-1";
    IT_CHECK(dlq_client_report(c, "orders", &f, true, &ack, &err) == DLQ_CLIENT_OK, "report: %s",
             err.message);
    IT_CHECK(ack.durable && strcmp(ack.stream, "DLQ_FAILED") == 0 && ack.seq >= 1 && !ack.duplicate,
             "want a PubAck from DLQ_FAILED, got durable=%d stream=%s seq=%llu dup=%d", ack.durable,
             ack.stream, (unsigned long long)ack.seq, ack.duplicate);
    uint64_t seq = ack.seq;
    IT_CHECK(dlq_client_report(c, "orders", &f, true, &ack, &err) == DLQ_CLIENT_OK, "resend: %s",
             err.message);
    IT_CHECK(ack.durable && ack.duplicate && ack.seq == seq,
             "the resend with the same msg_id: want duplicate of seq %llu, got dup=%d seq=%llu",
             (unsigned long long)seq, ack.duplicate, (unsigned long long)ack.seq);
    t = it_wait_task_status(e->nc, id, "pending", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "the durable report was not stored: %s", dump);
    check_json_str(t, "error", "schema invalid");
    free(dump);
    json_decref(t);

    /* Without waiting: js_PublishAsync, then a flush that sees every PubAck. */
    it_unique_id("js-async", id, sizeof id);
    f.task_id = id;
    f.msg_id = NULL;
    IT_CHECK(dlq_client_report(c, "orders", &f, false, NULL, &err) == DLQ_CLIENT_OK, "async: %s",
             err.message);
    IT_CHECK(dlq_client_flush(c, 0, &err) == DLQ_CLIENT_OK, "flush: %s", err.message);
    t = it_wait_task_status(e->nc, id, "pending", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "the async durable report was not stored");
    json_decref(t);

    /* DURABLE_ALWAYS on a subject no stream captures: refused, not silently sent on core NATS. */
    struct dlq_client *strict = NULL;
    struct dlq_client_options o = {.prefix = "other", .durable = DLQ_CLIENT_DURABLE_ALWAYS,
                                   .ack_timeout_ms = 2000};
    assert_int_equal(dlq_client_new(e->nc, &o, &strict, &err), DLQ_CLIENT_OK);
    dlq_client_status s = dlq_client_report(strict, "orders", &f, true, NULL, &err);
    IT_CHECK(s == DLQ_CLIENT_ENORESPONDERS, "want no responders without a stream, got %d: %s",
             (int)s, err.message);
    dlq_client_free(strict);
    dlq_client_free(c);
    e->passed = true;
}

/* ---- docs/nats-auth.conf's service user ------------------------------------------------------ */

#ifndef NATS_AUTH_CONF
#error "NATS_AUTH_CONF must name docs/nats-auth.conf (set by tests/integration/CMakeLists.txt)"
#endif

/* The service user's permissions violations, as nats.c's error handler saw them (static: the
 * handler may run until the env's teardown destroyed the connection). */
static struct {
    pthread_mutex_t mu;
    int n;
    char last[256];
} violations = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void
on_service_error(natsConnection *nc, natsSubscription *sub, natsStatus s, void *closure)
{
    const char *txt = NULL;

    (void)sub;
    (void)closure;
    natsConnection_GetLastError(nc, &txt);
    pthread_mutex_lock(&violations.mu);
    if (s == NATS_NOT_PERMITTED || (txt && strstr(txt, "Permissions Violation"))) {
        violations.n++;
        snprintf(violations.last, sizeof violations.last, "%s", txt ? txt : natsStatus_GetText(s));
    }
    pthread_mutex_unlock(&violations.mu);
}

/*
 * Starts nats-server with docs/nats-auth.conf as committed (the passwords
 * in its environment; js: with JetStream), the sidecar as dlq-sidecar (js:
 * dlq-sidecar-js with ingest.mode=jetstream) on its own inbox prefix, and
 * e->nc as the operator; *svc is a connection as "service" with inbox
 * prefix _INBOX_service and on_service_error.
 */
static struct it_env *
auth_env(void **state, const char *name, bool js, natsConnection **svc)
{
    static const char *const pw[] = {"AUTH_SIDECAR_PASSWORD", "sc-pw-c1",  "AUTH_SERVICE_PASSWORD",
                                     "svc-pw-c2",             "AUTH_WORKER_PASSWORD", "wk-pw-c3",
                                     "AUTH_OPERATOR_PASSWORD", "op-pw-c4", "AUTH_VIEWER_PASSWORD",
                                     "vw-pw-c5"};
    const char *flags[] = {js ? "nats.user=dlq-sidecar-js" : "nats.user=dlq-sidecar",
                           "nats.password=sc-pw-c1", "nats.inbox_prefix=_INBOX_dlq-sidecar",
                           js ? "ingest.mode=jetstream" : NULL, NULL};
    struct it_env *e = calloc(1, sizeof *e);
    const char *tmp = getenv("TMPDIR");
    natsOptions *o = NULL;
    char url[256];
    natsStatus s;

    for (size_t i = 0; i < SC_ARRAY_LEN(pw); i += 2)
        setenv(pw[i], pw[i + 1], 1);
    assert_non_null(e);
    *state = e;
    e->name = name;
    e->dmn.exit_status = -1;
    snprintf(e->dir, sizeof e->dir, "%s/dlq-it-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    assert_non_null(mkdtemp(e->dir));
    fprintf(stderr, "[%s] logs in %s\n", name, e->dir);
    snprintf(e->srv.conf, sizeof e->srv.conf, "%s", NATS_AUTH_CONF);
    IT_CHECK(it_server_start(&e->srv, e->dir, js) == 0, "nats-server -c %s%s", NATS_AUTH_CONF,
             js ? " -js" : "");
    assert_int_equal(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags), 0);

    snprintf(url, sizeof url, "nats://operator:op-pw-c4@127.0.0.1:%d", e->srv.port);
    s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetCustomInboxPrefix(o, "_INBOX_operator");
    if (s == NATS_OK)
        s = natsConnection_Connect(&e->nc, o);
    natsOptions_Destroy(o);
    IT_CHECK(s == NATS_OK, "connect as operator: %s", natsStatus_GetText(s));
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0,
             "the sidecar (%s) answers the operator", flags[0]);

    snprintf(url, sizeof url, "nats://service:svc-pw-c2@127.0.0.1:%d", e->srv.port);
    o = NULL;
    s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetCustomInboxPrefix(o, "_INBOX_service");
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, on_service_error, NULL);
    if (s == NATS_OK)
        s = natsConnection_Connect(svc, o);
    natsOptions_Destroy(o);
    IT_CHECK(s == NATS_OK, "connect as service: %s", natsStatus_GetText(s));
    e->conns[0] = *svc;
    pthread_mutex_lock(&violations.mu);
    violations.n = 0;
    violations.last[0] = '\0';
    pthread_mutex_unlock(&violations.mu);
    return e;
}

/*
 * The user "service" of docs/nats-auth.conf may publish only dlq.failed.>
 * and read its own inbox. In the default mode (AUTO) a report is answered at
 * once, by the sidecar in core mode and by DLQ_FAILED's PubAck in JetStream
 * mode (a resend with the same msg_id a duplicate), and the task is stored;
 * the server refused the service nothing (a JetStream API lookup would be
 * refused, and would stall the report for its whole timeout).
 */
static void
service_permissions(void **state, bool js)
{
    natsConnection *svc = NULL;
    struct it_env *e = auth_env(state, js ? "client-perm-js" : "client-perm-core", js, &svc);
    struct dlq_client *c = NULL;
    struct dlq_client_error err;
    struct dlq_client_ack ack;
    char id[96], id2[96], msg_id[128];
    const char *txt = NULL;
    dlq_client_status s;
    int64_t t0, took;
    json_t *t;
    bool ok;

    assert_int_equal(dlq_client_new(svc, NULL, &c, &err), DLQ_CLIENT_OK);
    it_unique_id("perm", id, sizeof id);
    snprintf(msg_id, sizeof msg_id, "%s-msg", id);
    struct dlq_client_failure f = {0};
    f.task_id = id;
    f.task_bin = "perm";
    f.task_bin_len = 4;
    f.error = "ECONNRESET";
    f.msg_id = msg_id;
    t0 = sc_now_mono_ms();
    s = dlq_client_report(c, "orders", &f, true, &ack, &err);
    took = sc_now_mono_ms() - t0;
    IT_CHECK(s == DLQ_CLIENT_OK, "report as the service user: %d %s (after %lld ms)", (int)s,
             err.message, (long long)took);
    IT_CHECK(took < 2000, "the report took %lld ms (the ack timeout is 5000)", (long long)took);
    IT_CHECK(ack.durable == js, "want durable=%d, got %d", js, ack.durable);
    if (js) {
        IT_CHECK(strcmp(ack.stream, "DLQ_FAILED") == 0 && ack.seq >= 1 && !ack.duplicate,
                 "want a new message in DLQ_FAILED, got stream=%s seq=%llu dup=%d", ack.stream,
                 (unsigned long long)ack.seq, ack.duplicate);
        uint64_t seq = ack.seq;
        t0 = sc_now_mono_ms();
        s = dlq_client_report(c, "orders", &f, true, &ack, &err);
        took = sc_now_mono_ms() - t0;
        IT_CHECK(s == DLQ_CLIENT_OK && took < 2000 && ack.durable && ack.duplicate && ack.seq == seq,
                 "the resend: want a duplicate of seq %llu at once, got %d %s dup=%d seq=%llu "
                 "after %lld ms",
                 (unsigned long long)seq, (int)s, err.message, ack.duplicate,
                 (unsigned long long)ack.seq, (long long)took);
    } else {
        IT_CHECK(strcmp(ack.status, "pending") == 0, "want status pending, got \"%s\"", ack.status);
    }
    t = it_wait_task_status(e->nc, id, "pending", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "the report was not stored: %s", dump);
    check_json_str(t, "error", "ECONNRESET");
    free(dump);
    json_decref(t);

    /* Without waiting: a plain publish, then a flush. */
    it_unique_id("perm-nowait", id2, sizeof id2);
    f.task_id = id2;
    f.msg_id = NULL;
    t0 = sc_now_mono_ms();
    IT_CHECK(dlq_client_report(c, "orders", &f, false, NULL, &err) == DLQ_CLIENT_OK &&
                 dlq_client_flush(c, 0, &err) == DLQ_CLIENT_OK,
             "report without wait, flush: %s", err.message);
    took = sc_now_mono_ms() - t0;
    IT_CHECK(took < 2000, "the report without wait and its flush took %lld ms", (long long)took);
    t = it_wait_task_status(e->nc, id2, "pending", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "the report without wait was not stored");
    json_decref(t);

    /* The server refused the service nothing: no error callback, no last error. */
    natsConnection_Flush(svc);
    it_sleep_ms(200);
    pthread_mutex_lock(&violations.mu);
    int nv = violations.n;
    char last[256];
    snprintf(last, sizeof last, "%s", violations.last);
    pthread_mutex_unlock(&violations.mu);
    IT_CHECK(nv == 0, "the server refused the service user %d time(s); the last: %s", nv, last);
    natsConnection_GetLastError(svc, &txt);
    IT_CHECK(!txt || !strstr(txt, "Permissions Violation"), "nats.c's last error: %s", txt);

    dlq_client_free(c);
    e->passed = true;
}

/* 9. As docs/nats-auth.conf's "service", against the sidecar in core mode. */
static void
test_service_permissions_core(void **state)
{
    service_permissions(state, false);
}

/* 10. As docs/nats-auth.conf's "service", against the sidecar in JetStream mode. */
static void
test_service_permissions_js(void **state)
{
    service_permissions(state, true);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test_teardown(test_vectors_sidecar, it_teardown),
        cmocka_unit_test_teardown(test_report_stored, it_teardown),
        cmocka_unit_test_teardown(test_report_issue17_keys, it_teardown),
        cmocka_unit_test_teardown(test_invalid_refused, it_teardown),
        cmocka_unit_test_teardown(test_retry_handler, it_teardown),
        cmocka_unit_test_teardown(test_handler_error_exhausted, it_teardown),
        cmocka_unit_test_teardown(test_handler_garbage, it_teardown),
        cmocka_unit_test_teardown(test_jetstream_durable, it_teardown),
        cmocka_unit_test_teardown(test_service_permissions_core, it_teardown),
        cmocka_unit_test_teardown(test_service_permissions_js, it_teardown),
    };
    return cmocka_run_group_tests_name("integration_client_c", tests, NULL, NULL);
}
