/* test_secrets.c - integration: secrets.mask_keys (get, list, events and logs never show a masked value; the worker gets the exact bytes) and secrets.encryption_key_file (the KV bucket's record holds no plaintext; restarts load it back, with a rotated key too) against a real nats-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <msgpack.h>

#include "codec.h"
#include "harness.h"
#include "persist.h"

#define SECRET "hunter2"
#define TOKEN "tok-SECRET-9"

/* MessagePack of the task: {"order":42,"token":TOKEN,"items":[{"Password":SECRET,"sku":"a-1"}]}. */
static void
pack_task(msgpack_sbuffer *sb)
{
    msgpack_packer pk;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "order", 5);
    msgpack_pack_int(&pk, 42);
    msgpack_pack_str_with_body(&pk, "token", 5);
    msgpack_pack_str_with_body(&pk, TOKEN, strlen(TOKEN));
    msgpack_pack_str_with_body(&pk, "items", 5);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "Password", 8);
    msgpack_pack_str_with_body(&pk, SECRET, strlen(SECRET));
    msgpack_pack_str_with_body(&pk, "sku", 3);
    msgpack_pack_str_with_body(&pk, "a-1", 3);
}

/*
 * Sends the failure of task id (the task of pack_task(), metadata
 * {"password":SECRET,"user":"bob"}, retry_policy policy) to subject as a
 * request; checks that the acknowledgement says true at ack_key.
 */
static void
send_failure(struct it_env *e, const char *subject, const char *id, const char *policy,
             const char *ack_key)
{
    msgpack_sbuffer task, sb;
    msgpack_packer pk;
    json_t *ack;

    pack_task(&task);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "task_id", 7);
    msgpack_pack_str_with_body(&pk, id, strlen(id));
    msgpack_pack_str_with_body(&pk, "task", 4);
    msgpack_sbuffer_write(&sb, task.data, task.size);
    msgpack_pack_str_with_body(&pk, "error", 5);
    msgpack_pack_str_with_body(&pk, "connection refused", 18);
    msgpack_pack_str_with_body(&pk, "retry_policy", 12);
    msgpack_pack_str_with_body(&pk, policy, strlen(policy));
    msgpack_pack_str_with_body(&pk, "metadata", 8);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "password", 8);
    msgpack_pack_str_with_body(&pk, SECRET, strlen(SECRET));
    msgpack_pack_str_with_body(&pk, "user", 4);
    msgpack_pack_str_with_body(&pk, "bob", 3);
    ack = it_request_bytes(e->nc, subject, sb.data, sb.size, IT_REQUEST_MS);
    IT_CHECK(ack && json_is_true(json_object_get(ack, ack_key)), "%s: %s is not true: %s", id,
             ack_key, it_json_dump(ack));
    json_decref(ack);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&task);
}

/* Fails unless the JSON text of j holds no masked value. */
static void
check_no_secret(const char *what, const json_t *j)
{
    char *dump = it_json_dump(j);

    IT_CHECK(dump && !strstr(dump, SECRET) && !strstr(dump, TOKEN), "%s shows a secret: %s", what,
             dump);
    free(dump);
}

/* The masked rendering of get: metadata and task keys masked, the rest as sent. */
static void
check_masked_get(const json_t *t)
{
    IT_CHECK(t != NULL, "no get reply");
    check_no_secret("get", t);
    IT_CHECK(strcmp(it_json_str(t, "metadata.password"), "***") == 0, "metadata.password: %s",
             it_json_dump(t));
    IT_CHECK(strcmp(it_json_str(t, "metadata.user"), "bob") == 0, "metadata.user");
    IT_CHECK(strcmp(it_json_str(t, "task.token"), "***") == 0, "task.token");
    IT_CHECK(it_json_int(t, "task.order") == 42, "task.order");
    {
        const json_t *item = json_array_get(json_object_get(json_object_get(t, "task"), "items"), 0);
        IT_CHECK(strcmp(it_json_str(item, "Password"), "***") == 0, "task.items[0].Password");
        IT_CHECK(strcmp(it_json_str(item, "sku"), "a-1") == 0, "task.items[0].sku");
    }
}

/* get with "payload": true: payload_b64 is the task's exact bytes. */
static void
check_raw_payload(natsConnection *nc, const char *id)
{
    char body[256];
    msgpack_sbuffer task;
    struct sc_buf raw;
    json_t *t;
    const char *b64;

    snprintf(body, sizeof body, "{\"task_id\":\"%s\",\"payload\":true}", id);
    t = it_request_json(nc, "dlq.admin.get", body, IT_REQUEST_MS);
    b64 = it_json_str(t, "payload_b64");
    IT_CHECK(b64 != NULL, "%s: no payload_b64: %s", id, it_json_dump(t));
    sc_buf_init(&raw, 1 << 20);
    IT_CHECK(sc_base64_decode(b64, strlen(b64), &raw) == SC_OK, "payload_b64 is base64");
    pack_task(&task);
    IT_CHECK(raw.len == task.size && memcmp(raw.data, task.data, task.size) == 0,
             "%s: payload_b64 is not the exact task bytes", id);
    msgpack_sbuffer_destroy(&task);
    sc_buf_destroy(&raw);
    json_decref(t);
}

/* Fails when the file at path holds s. */
static void
check_file_lacks(const char *path, const char *s)
{
    FILE *f = fopen(path, "rb");
    char *text;
    long n;

    IT_CHECK(f != NULL, "open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)n + 1);
    IT_CHECK(text && fread(text, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    fclose(f);
    IT_CHECK(!strstr(text, s), "%s holds %s", path, s);
    free(text);
}

/* Whether the file at path holds s. */
static bool
file_has(const char *path, const char *s)
{
    char line[8192];
    bool found = false;
    FILE *f = fopen(path, "rb");

    if (!f)
        return false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, s) != NULL;
    fclose(f);
    return found;
}

/* POSTs body to 127.0.0.1:port path with "Authorization: Bearer <token>"; the response into *r. */
static void
http_post(int port, const char *path, const char *token, const char *body, struct it_http_resp *r)
{
    struct sockaddr_in sa;
    struct timeval tv = {10, 0};
    char head[1024];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(r, 0, sizeof *r);
    IT_CHECK(fd >= 0, "socket");
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    IT_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect to %d", port);
    snprintf(head, sizeof head,
             "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
             "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             path, port, token, strlen(body), body);
    IT_CHECK(send(fd, head, strlen(head), MSG_NOSIGNAL) == (ssize_t)strlen(head), "send");
    it_http_read(fd, r);
    close(fd);
}

/* ---- 1. masking: get, list, events, logs; the worker's exact bytes ---------------------------- */

static void
test_masked_views(void **state)
{
    /* linear backoff of 2 s: the task waits, pending, between the two attempts */
    char listen[64];
    int port = it_free_port();
    const char *flags[] = {"events.enabled=true", "log.level=debug", "backoff.linear_step_ms=2000",
                           listen, "http.auth.viewer_token=view-1", "http.auth.operator_token=op-1",
                           NULL};
    struct it_env *e;
    struct it_http_resp r;

    snprintf(listen, sizeof listen, "http.listen=127.0.0.1:%d", port);
    e = it_env_start("secrets-mask", flags);
    struct it_step plan[] = {{IT_ACT_FAIL, "still down", "IOError"}};
    struct it_step success = {IT_ACT_OK, NULL, NULL};
    struct it_recorder *worker, *events;
    msgpack_sbuffer task;
    json_t *t, *l;
    bool ok = false;

    assert_non_null(e);
    *state = e;
    worker = it_env_recorder(e, e->nc, "dlq.retry.sec", NULL, 16, true);
    events = it_env_recorder(e, e->nc, "dlq.events.>", NULL, 64, true);
    IT_CHECK(worker && events, "recorders");
    it_recorder_set_plan(worker, plan, 1, success);
    IT_CHECK(natsConnection_Flush(e->nc) == NATS_OK, "flush");
    send_failure(e, "dlq.failed.sec", "sec-1", "linear", "ok");
    /* The first attempt fails: the task waits, with its history. */
    IT_CHECK(it_rec_wait(worker, 1, IT_WAIT_MS), "the first retry never came");
    pack_task(&task);
    {
        const struct it_rec_msg *m = it_rec_get(worker, 0);
        IT_CHECK(m->len == task.size && memcmp(m->body, task.data, task.size) == 0,
                 "the retry's body is not the exact task bytes");
    }
    t = it_wait_task_status(e->nc, "sec-1", "pending", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "sec-1 is not pending: %s", it_json_dump(t));
    json_decref(t);
    t = it_admin_get(e->nc, "sec-1");
    check_masked_get(t);
    json_decref(t);
    l = it_request_json(e->nc, "dlq.admin.list", "{}", IT_REQUEST_MS);
    IT_CHECK(json_array_size(json_object_get(l, "tasks")) == 1, "list: %s", it_json_dump(l));
    check_no_secret("list", l);
    json_decref(l);
    check_raw_payload(e->nc, "sec-1");
    /* HTTP: the viewer reads the masked task, the raw bytes are the operator's. */
    http_post(port, "/api/v1/get", "view-1", "{\"task_id\":\"sec-1\"}", &r);
    IT_CHECK(r.status == 200 && r.body && strstr(r.body, "\"password\":\"***\"") &&
                 !strstr(r.body, SECRET) && !strstr(r.body, TOKEN),
             "viewer get: %d %s", r.status, r.body ? r.body : "");
    it_http_resp_free(&r);
    http_post(port, "/api/v1/get", "view-1", "{\"task_id\":\"sec-1\",\"payload\":true}", &r);
    IT_CHECK(r.status == 403 && r.body && strstr(r.body, "operator"), "viewer payload: %d %s",
             r.status, r.body ? r.body : "");
    it_http_resp_free(&r);
    http_post(port, "/api/v1/get", "op-1", "{\"task_id\":\"sec-1\",\"payload\":true}", &r);
    IT_CHECK(r.status == 200 && r.body && strstr(r.body, "\"payload_b64\""), "operator payload: %d %s",
             r.status, r.body ? r.body : "");
    it_http_resp_free(&r);
    /* The second attempt succeeds, with the same exact bytes. */
    IT_CHECK(it_rec_wait(worker, 2, IT_WAIT_MS), "the second retry never came");
    {
        const struct it_rec_msg *m = it_rec_get(worker, 1);
        IT_CHECK(m->len == task.size && memcmp(m->body, task.data, task.size) == 0,
                 "the second retry's body is not the exact task bytes");
    }
    t = it_wait_task_status(e->nc, "sec-1", "completed", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "sec-1 is not completed: %s", it_json_dump(t));
    check_masked_get(t);
    json_decref(t);
    /* enqueued, failed, retried, succeeded ...: none shows a secret */
    IT_CHECK(it_rec_wait(events, 3, IT_WAIT_MS), "events");
    for (size_t i = 0; i < it_rec_count(events); i++) {
        const struct it_rec_msg *m = it_rec_get(events, i);
        IT_CHECK(!strstr(m->body, SECRET) && !strstr(m->body, TOKEN), "event %s: %s", m->subject,
                 m->body);
    }
    msgpack_sbuffer_destroy(&task);
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "clean stop");
    IT_CHECK(file_has(e->dmn.log, "sec-1"), "the log never names the task (debug level)");
    check_file_lacks(e->dmn.log, SECRET);
    check_file_lacks(e->dmn.log, TOKEN);
    e->passed = true;
}

/* ---- 2. encryption at rest: the KV bucket's record, restarts, rotation ------------------------ */

#define BUCKET "DLQ_TASKS"

/* Writes len bytes at p to dir/name; the path goes to out. */
static void
write_file(char *out, size_t outlen, const char *dir, const char *name, const void *p, size_t len)
{
    FILE *f;

    snprintf(out, outlen, "%s/%s", dir, name);
    f = fopen(out, "wb");
    IT_CHECK(f && fwrite(p, 1, len, f) == len, "write %s", out);
    fclose(f);
}

/* The raw KV record of task id (new allocation, *len bytes), or NULL when absent. */
static char *
record_of(natsConnection *nc, const char *id, size_t *len)
{
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    kvEntry *en = NULL;
    struct sc_buf key;
    char *out = NULL;

    sc_buf_init(&key, 4096);
    IT_CHECK(persist_kv_key(&key, id, strlen(id), 32) == SC_OK, "key of %s", id);
    IT_CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK, "JetStream context");
    IT_CHECK(js_KeyValue(&kv, js, BUCKET) == NATS_OK, "bucket");
    if (kvStore_Get(&en, kv, key.data) == NATS_OK) {
        *len = (size_t)kvEntry_ValueLen(en);
        out = malloc(*len + 1);
        IT_CHECK(out != NULL, "malloc");
        memcpy(out, kvEntry_Value(en), *len);
        out[*len] = '\0';
    }
    kvEntry_Destroy(en);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    sc_buf_destroy(&key);
    return out;
}

static bool
bytes_have(const char *p, size_t len, const char *s)
{
    size_t n = strlen(s);

    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(p + i, s, n) == 0)
            return true;
    return false;
}

static void
restart_with(struct it_env *e, const char *const *flags)
{
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "clean stop");
    IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags) == 0, "daemon restart");
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, 60000) == 0, "daemon ready after restart");
}

/* stats.persistence.<name> */
static int64_t
pstat(natsConnection *nc, const char *name)
{
    json_t *s = it_admin_stats(nc);
    int64_t v = it_json_int(json_object_get(s, "persistence"), name);
    json_decref(s);
    return v;
}

static void
test_sealed_kv(void **state)
{
    static const unsigned char k2[32] = {0x42, 0x17, 0x99, 0x01, 0xfe};
    static const char k1_hex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    char dir[IT_PATH_MAX], k1[IT_PATH_MAX + 16], k2p[IT_PATH_MAX + 16], bad[IT_PATH_MAX + 16];
    char key1[IT_PATH_MAX + 64], key2[IT_PATH_MAX + 64], old1[IT_PATH_MAX + 64],
        badkey[IT_PATH_MAX + 64];
    const char *tmp = getenv("TMPDIR");
    struct it_env *e;
    char *rec;
    size_t rlen = 0;
    json_t *t, *j;
    struct sc_buf js;

    snprintf(dir, sizeof dir, "%s/dlq-it-keys-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    IT_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    write_file(k1, sizeof k1, dir, "k1.hex", k1_hex, sizeof(k1_hex) - 1);
    write_file(k2p, sizeof k2p, dir, "k2.bin", k2, sizeof k2);
    write_file(bad, sizeof bad, dir, "bad.bin", k2, 31);
    snprintf(key1, sizeof key1, "secrets.encryption_key_file=%s", k1);
    snprintf(key2, sizeof key2, "secrets.encryption_key_file=%s", k2p);
    snprintf(old1, sizeof old1, "secrets.encryption_old_key_files=%s", k1);
    snprintf(badkey, sizeof badkey, "secrets.encryption_key_file=%s", bad);
    {
        const char *f1[] = {"store.backend=jetstream", "store.jetstream.flush_ms=5", key1, NULL};
        const char *f2[] = {"store.backend=jetstream", "store.jetstream.flush_ms=5", key2, old1, NULL};
        const char *f3[] = {"store.backend=jetstream", "store.jetstream.flush_ms=5", key2, NULL};
        const char *fbad[] = {"store.backend=jetstream", badkey, NULL};

        const char *f0[] = {"store.backend=jetstream", "store.jetstream.flush_ms=5", NULL};

        e = it_env_start_js("secrets-kv", f0);
        assert_non_null(e);
        *state = e;
        /* In the clear: the record's rendered metadata and task are masked, the _mp bytes exact. */
        send_failure(e, "dlq.failed.kv", "sec-old", "never", "stored");
        rec = record_of(e->nc, "sec-old", &rlen);
        IT_CHECK(rec != NULL, "no record in the bucket");
        sc_buf_init(&js, 1 << 20);
        IT_CHECK(codec_render_json(rec, rlen, 64, &js) == SC_OK, "the record is MessagePack");
        j = json_loads(js.data, 0, NULL);
        check_masked_get(j);
        IT_CHECK(json_is_string(json_object_get(j, "task_mp")), "no task_mp: %s", js.data);
        json_decref(j);
        sc_buf_destroy(&js);
        free(rec);
        /* Encryption on: the plaintext record still loads; new writes are sealed. */
        restart_with(e, f1);
        check_raw_payload(e->nc, "sec-old");
        /* parked (policy never): it stays as it is across the restarts */
        send_failure(e, "dlq.failed.kv", "sec-kv", "never", "stored");
        rec = record_of(e->nc, "sec-kv", &rlen);
        IT_CHECK(rec != NULL, "no record in the bucket");
        IT_CHECK(!bytes_have(rec, rlen, SECRET) && !bytes_have(rec, rlen, TOKEN) &&
                     !bytes_have(rec, rlen, "bob") && !bytes_have(rec, rlen, "a-1"),
                 "the stored record holds plaintext");
        sc_buf_init(&js, 1 << 20);
        IT_CHECK(codec_render_json(rec, rlen, 64, &js) == SC_OK, "the record is MessagePack");
        j = json_loads(js.data, 0, NULL);
        IT_CHECK(j && json_is_true(json_object_get(j, "sealed")), "not sealed: %s", js.data);
        IT_CHECK(json_is_null(json_object_get(j, "task")) && json_is_null(json_object_get(j, "metadata")),
                 "a rendered twin is stored: %s", js.data);
        json_decref(j);
        sc_buf_destroy(&js);
        free(rec);

        /* A restart with the same key loads it back. */
        restart_with(e, f1);
        t = it_admin_get(e->nc, "sec-kv");
        check_masked_get(t);
        json_decref(t);
        check_raw_payload(e->nc, "sec-kv");

        /* Rotation: a new key, the old one read. The next write seals with the new key. */
        restart_with(e, f2);
        t = it_admin_get(e->nc, "sec-kv");
        check_masked_get(t);
        json_decref(t);
        check_raw_payload(e->nc, "sec-kv");
        IT_CHECK(pstat(e->nc, "undecryptable") == 0, "undecryptable after rotation");

        /* Without the old key: not loaded, counted, logged with its id, left in the bucket. */
        restart_with(e, f3);
        t = it_admin_get(e->nc, "sec-kv");
        IT_CHECK(t && json_is_object(json_object_get(t, "error")), "loaded without its key: %s",
                 it_json_dump(t));
        json_decref(t);
        IT_CHECK(pstat(e->nc, "undecryptable") == 1, "undecryptable: %lld",
                 (long long)pstat(e->nc, "undecryptable"));
        IT_CHECK(file_has(e->dmn.log, "sec-kv") && file_has(e->dmn.log, "cannot be opened"),
                 "the log does not name the task");
        rec = record_of(e->nc, "sec-kv", &rlen);
        IT_CHECK(rec != NULL, "the record was removed");
        free(rec);

        /* The old key back: it loads again. */
        restart_with(e, f2);
        check_raw_payload(e->nc, "sec-kv");

        /* A key file of 31 bytes stops start-up with exit code 2, naming the key. */
        IT_CHECK(it_daemon_stop(&e->dmn) == 0, "clean stop");
        IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, fbad) == 0, "start");
        for (int i = 0; i < 1000 && it_daemon_alive(&e->dmn); i++)
            it_sleep_ms(20);
        IT_CHECK(e->dmn.pid == 0 && e->dmn.exit_status == 2, "exit status %d", e->dmn.exit_status);
        IT_CHECK(file_has(e->dmn.log, "secrets.encryption_key_file"), "the error names no key");
        IT_CHECK(it_daemon_start(&e->dmn, e->dir, e->srv.url, f2) == 0, "start");
        IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, 60000) == 0, "ready");
    }
    unlink(k1);
    unlink(k2p);
    unlink(bad);
    rmdir(dir);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_masked_views, it_teardown),
        cmocka_unit_test_teardown(test_sealed_kv, it_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
