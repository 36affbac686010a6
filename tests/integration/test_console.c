/* test_console.c - integration: the web console's assets (content types, CSP, 404), X-DLQ-Role, stats' last_hour, the error/error_type/id_prefix filters and the edit verb over NATS and HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cmocka.h>

#include "harness.h"

/* ---- HTTP ------------------------------------------------------------------------------------ */

static bool
has_header(const struct it_http_resp *r, const char *line)
{
    return strstr(r->head, line) != NULL;
}

/* POSTs body to /api/v1/<verb>; returns the parsed JSON (caller frees) and the status in *status. */
static json_t *
api(int port, const char *verb, const char *body, const char *extra, int *status)
{
    struct it_http_resp r;
    char path[64];
    json_t *j;

    snprintf(path, sizeof path, "/api/v1/%s", verb);
    it_http(port, "POST", path, extra, body ? body : "{}", &r);
    *status = r.status;
    j = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    it_http_resp_free(&r);
    return j;
}

/* The error code of a NATS admin reply, 0 when it is no error. */
static int
err_code(json_t *j)
{
    return (int)json_integer_value(json_object_get(json_object_get(j, "error"), "code"));
}

/* Does the error message of reply j hold needle? */
static bool
msg_has(json_t *j, const char *needle)
{
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));

    return m && strstr(m, needle);
}

/* ---- setup ----------------------------------------------------------------------------------- */

/* Files a parked task (a validation error: policy never) id on dlq.failed.<svc> with error and error_type. */
static void
file(struct it_env *e, const char *svc, const char *id, const char *error, const char *etype)
{
    struct it_envelope env;
    char subj[96];
    json_t *ack;

    it_envelope_init(&env);
    env.task_id = id;
    env.error = error;
    env.error_type = etype;
    env.error_category = "validation";
    snprintf(subj, sizeof subj, "dlq.failed.%s", svc);
    ack = it_request_envelope(e->nc, subj, &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest of %s", id);
    json_decref(ack);
}

/* The number of tasks list answers over HTTP for the JSON filter body. */
static int64_t
count(int port, const char *filter)
{
    int st;
    json_t *j = api(port, "list", filter, NULL, &st);
    int64_t n;

    IT_CHECK(st == 200, "list %s: %d", filter, st);
    n = json_integer_value(json_object_get(j, "total"));
    json_decref(j);
    return n;
}

/* ---- tests ----------------------------------------------------------------------------------- */

/* The assets: content types, the CSP (no inline script), ETag, 404 for others; the role header. */
static void
test_assets(void **state)
{
    int port;
    struct it_env *e = it_env_start_http("console-assets", NULL, &port);
    struct it_http_resp r;
    static const char *const assets[][2] = {
        {"/", "Content-Type: text/html; charset=utf-8"},
        {"/index.html", "Content-Type: text/html; charset=utf-8"},
        {"/console/app.js", "Content-Type: text/javascript; charset=utf-8"},
        {"/console/app.css", "Content-Type: text/css; charset=utf-8"},
    };

    assert_non_null(e);
    *state = e;
    for (size_t i = 0; i < SC_ARRAY_LEN(assets); i++) {
        it_http(port, "GET", assets[i][0], NULL, NULL, &r);
        IT_CHECK(r.status == 200 && has_header(&r, assets[i][1]), "%s: %d %s", assets[i][0],
                 r.status, r.head);
        IT_CHECK(has_header(&r, "Content-Security-Policy: default-src 'none'; script-src 'self'; ") &&
                     !strstr(r.head, "unsafe-inline") && !strstr(r.head, "unsafe-eval"),
                 "%s: CSP: %s", assets[i][0], r.head);
        IT_CHECK(has_header(&r, "X-Content-Type-Options: nosniff") && has_header(&r, "ETag: \"") &&
                     has_header(&r, "Cache-Control: "),
                 "%s: headers: %s", assets[i][0], r.head);
        IT_CHECK(r.len > 100, "%s: %zu bytes", assets[i][0], r.len);
        if (i == 0) { /* the page loads its script from a file: no inline <script> */
            IT_CHECK(strstr(r.body, "<script src=\"/console/app.js\"") && !strstr(r.body, "<script>") &&
                         !strstr(r.body, "style=\""),
                     "index.html has inline script or style");
        }
        it_http_resp_free(&r);
    }
    it_http(port, "GET", "/console/nope.js", NULL, NULL, &r);
    IT_CHECK(r.status == 404, "unknown asset: %d", r.status);
    it_http_resp_free(&r);
    it_http(port, "GET", "/console/../console/app.js", NULL, NULL, &r);
    IT_CHECK(r.status == 404, "dot-dot path: %d", r.status);
    it_http_resp_free(&r);
    it_http(port, "HEAD", "/", NULL, NULL, &r);
    IT_CHECK(r.status == 200 && r.len == 0 && has_header(&r, "Content-Type: text/html"), "HEAD /: %d %zu",
             r.status, r.len);
    it_http_resp_free(&r);
    it_http(port, "POST", "/", NULL, "{}", &r);
    IT_CHECK(r.status == 405, "POST /: %d", r.status);
    it_http_resp_free(&r);
    /* the role header on API answers (no tokens: a loopback caller is operator) */
    it_http(port, "POST", "/api/v1/health", NULL, "{}", &r);
    IT_CHECK(r.status == 200 && has_header(&r, "X-DLQ-Role: operator"), "role: %s", r.head);
    it_http_resp_free(&r);
    e->passed = true;
}

/* With tokens: the page loads for anyone (it asks for a token), the API tells the role. */
static void
test_roles(void **state)
{
    int port, st;
    static const char *const toks[] = {"http.auth.operator_token=op-secret",
                                       "http.auth.viewer_token=view-secret", NULL};
    struct it_env *e = it_env_start_http("console-roles", toks, &port);
    struct it_http_resp r;
    json_t *j;

    assert_non_null(e);
    *state = e;
    it_http(port, "GET", "/", NULL, NULL, &r);
    IT_CHECK(r.status == 200, "page without a token: %d", r.status);
    it_http_resp_free(&r);
    it_http(port, "POST", "/api/v1/stats", "Authorization: Bearer view-secret\r\n", "{}", &r);
    IT_CHECK(r.status == 200 && has_header(&r, "X-DLQ-Role: viewer"), "viewer role: %s", r.head);
    it_http_resp_free(&r);
    it_http(port, "POST", "/api/v1/stats", "Authorization: Bearer op-secret\r\n", "{}", &r);
    IT_CHECK(r.status == 200 && has_header(&r, "X-DLQ-Role: operator"), "operator role: %s", r.head);
    it_http_resp_free(&r);
    it_http(port, "POST", "/api/v1/stats", NULL, "{}", &r);
    IT_CHECK(r.status == 401 && !has_header(&r, "X-DLQ-Role"), "no token: %d %s", r.status, r.head);
    it_http_resp_free(&r);
    j = api(port, "edit", "{\"task_id\":\"x\",\"payload_json\":1}", "Authorization: Bearer view-secret\r\n", &st);
    IT_CHECK(st == 403, "viewer edit: %d", st);
    json_decref(j);
    e->passed = true;
}

/* stats' last_hour counts the failures filed this minute; the new filters select by error, type and id. */
static void
test_rates_and_filters(void **state)
{
    int port, st;
    struct it_env *e = it_env_start_http("console-filters", NULL, &port);
    json_t *j;
    int64_t ingested = -1;

    assert_non_null(e);
    *state = e;
    file(e, "billing", "bill-1", "HTTP 503 from upstream", "HTTPError");
    file(e, "billing", "bill-2", "HTTP 503 from upstream", "HTTPError");
    file(e, "billing", "pay-1", "card declined: code 51", "CardError");
    for (int i = 0; i < 200 && ingested != 3; i++) { /* the tick credits them within a tick */
        json_t *lh, *s;
        size_t k;
        j = api(port, "stats", NULL, NULL, &st);
        lh = json_object_get(j, "last_hour");
        IT_CHECK(json_array_size(json_object_get(lh, "ingested")) == 60 &&
                     json_array_size(json_object_get(lh, "retried")) == 60 &&
                     json_array_size(json_object_get(lh, "succeeded")) == 60 &&
                     json_array_size(json_object_get(lh, "exhausted")) == 60,
                 "last_hour: four series of 60");
        ingested = 0;
        json_array_foreach(json_object_get(lh, "ingested"), k, s)
            ingested += json_integer_value(s);
        IT_CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(j, "status_by_category"), "pending"), "validation")) == 3,
                 "status_by_category");
        IT_CHECK(json_is_array(json_object_get(j, "alerts_firing")), "alerts_firing");
        json_decref(j);
        if (ingested != 3)
            usleep(50000);
    }
    IT_CHECK(ingested == 3, "last_hour.ingested sums to %lld, want 3", (long long)ingested);

    IT_CHECK(count(port, "{\"error\":\"HTTP 503\"}") == 2, "error substring");
    IT_CHECK(count(port, "{\"error\":\"http 503\"}") == 0, "error is case-sensitive");
    IT_CHECK(count(port, "{\"error_type\":\"CardError\"}") == 1, "error_type exact");
    IT_CHECK(count(port, "{\"error_type\":\"Card\"}") == 0, "error_type is no substring");
    IT_CHECK(count(port, "{\"id_prefix\":\"bill-\"}") == 2, "id_prefix");
    /* the names of values (status, category ...) in any ASCII case, as the envelope's and the config's */
    IT_CHECK(count(port, "{\"status\":\"Pending\",\"category\":\"VALIDATION\"}") == 3, "status and category in any case");
    IT_CHECK(count(port, "{\"status\":\"PARKED\"}") == count(port, "{\"status\":\"parked\"}"), "parked in any case");
    IT_CHECK(count(port, "{\"id_prefix\":\"bill-1\",\"error_type\":\"HTTPError\"}") == 1, "combined");
    j = api(port, "list", "{\"error_type\":7}", NULL, &st);
    IT_CHECK(st == 400 && strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")), "error_type"),
             "error_type 7: %d", st);
    json_decref(j);
    {
        char body[1200] = "{\"error\":\"";
        memset(body + 10, 'x', 1100);
        strcpy(body + 1110, "\"}");
        j = api(port, "list", body, NULL, &st);
        IT_CHECK(st == 400, "an error filter over 1024 bytes: %d", st);
        json_decref(j);
    }
    /* by filter: archive takes them too */
    j = api(port, "archive", "{\"id_prefix\":\"pay-\"}", NULL, &st);
    IT_CHECK(st == 200 && json_integer_value(json_object_get(j, "archived")) == 1, "archive by id_prefix");
    json_decref(j);
    j = api(port, "clear", "{\"error\":\"503\"}", NULL, &st);
    IT_CHECK(st == 400 && json_integer_value(json_object_get(json_object_get(j, "error"), "would_clear")) == 2,
             "clear by error: would_clear 2");
    json_decref(j);
    e->passed = true;
}

/* edit over NATS and HTTP: the worker gets the new bytes, get keeps the first original, bad input is refused. */
static void
test_edit(void **state)
{
    int port, st;
    static const char *const small[] = {"limits.max_envelope_bytes=2048", NULL};
    struct it_env *e = it_env_start_http("console-edit", small, &port);
    natsSubscription *worker = NULL;
    natsMsg *m = NULL;
    struct sc_buf orig, b64;
    char body[4096];
    json_t *j, *hist;

    assert_non_null(e);
    *state = e;
    sc_buf_init(&orig, 4096);
    sc_buf_init(&b64, 8192);
    assert_int_equal(it_default_task(&orig), 0);
    assert_int_equal(natsConnection_SubscribeSync(&worker, e->nc, "dlq.retry.shop"), NATS_OK);
    natsConnection_Flush(e->nc);
    file(e, "shop", "ed-1", "bad field", "SchemaError");

    /* over NATS: payload_json */
    j = it_request_json(e->nc, "dlq.admin.edit", "{\"task_id\":\"ed-1\",\"payload_json\":{\"fixed\":1}}", IT_REQUEST_MS);
    IT_CHECK(j && err_code(j) == 0 && json_is_true(json_object_get(j, "edited")) &&
                 json_integer_value(json_object_get(j, "original_size")) == (json_int_t)orig.len &&
                 json_integer_value(json_object_get(j, "scheduled")) == 0,
             "edit over NATS: %s", j ? it_json_dump(j) : "no reply");
    json_decref(j);
    /* over HTTP: payload_b64 (MessagePack {"v":2}: 0x81 0xa1 'v' 0x02) with a retry */
    j = api(port, "edit", "{\"task_id\":\"ed-1\",\"payload_b64\":\"gaF2Ag==\",\"retry\":true}", NULL, &st);
    IT_CHECK(st == 200 && json_integer_value(json_object_get(j, "scheduled")) == 1 &&
                 json_is_false(json_object_get(j, "payload_raw")),
             "edit over HTTP: %d %s", st, it_json_dump(j));
    json_decref(j);
    IT_CHECK(natsSubscription_NextMsg(&m, worker, IT_WAIT_MS) == NATS_OK, "the worker got no retry");
    IT_CHECK(natsMsg_GetDataLength(m) == 4 && memcmp(natsMsg_GetData(m), "\x81\xa1v\x02", 4) == 0,
             "the worker got %d bytes, not the edited ones", natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    /* get: the new payload, the very first original, the history entries */
    j = api(port, "get", "{\"task_id\":\"ed-1\",\"payload\":true}", NULL, &st);
    IT_CHECK(st == 200 && json_integer_value(json_object_get(json_object_get(j, "task"), "v")) == 2, "get task: %s",
             it_json_dump(j));
    assert_int_equal(sc_base64_encode(&b64, orig.data, orig.len), SC_OK);
    IT_CHECK(json_string_value(json_object_get(j, "original_payload_b64")) &&
                 strlen(json_string_value(json_object_get(j, "original_payload_b64"))) == b64.len &&
                 memcmp(json_string_value(json_object_get(j, "original_payload_b64")), b64.data, b64.len) == 0,
             "original_payload_b64 is not the first payload: %s", it_json_dump(j));
    IT_CHECK(json_integer_value(json_object_get(json_object_get(j, "original_task"), "order")) == 42,
             "original_task: %s", it_json_dump(j));
    {
        /* Without "payload": the rendered original only, never its raw bytes (they bypass masking). */
        int st2;
        json_t *plain = api(port, "get", "{\"task_id\":\"ed-1\"}", NULL, &st2);
        IT_CHECK(st2 == 200 && json_object_get(plain, "original_task") &&
                     !json_object_get(plain, "original_payload_b64"),
                 "a plain get shows original_task, not original_payload_b64: %s", it_json_dump(plain));
        json_decref(plain);
    }
    hist = json_object_get(j, "history");
    {
        size_t i, edits = 0;
        json_t *h;
        json_array_foreach(hist, i, h)
            edits += strcmp(it_json_str(h, "outcome"), "edited") == 0;
        IT_CHECK(edits == 2, "two 'edited' history entries, got %zu: %s", edits, it_json_dump(hist));
    }
    json_decref(j);

    /* bad input, over HTTP and NATS */
    j = api(port, "edit", "{\"task_id\":\"nope\",\"payload_json\":1}", NULL, &st);
    IT_CHECK(st == 404, "unknown task: %d", st);
    json_decref(j);
    j = it_request_json(e->nc, "dlq.admin.edit", "{\"task_id\":\"nope\",\"payload_json\":1}", IT_REQUEST_MS);
    IT_CHECK(err_code(j) == 404, "unknown task over NATS");
    json_decref(j);
    j = api(port, "edit", "{\"task_id\":\"ed-1\",\"payload_b64\":\"not base64!\"}", NULL, &st);
    IT_CHECK(st == 400 && msg_has(j, "base64"), "invalid base64: %d", st);
    json_decref(j);
    j = it_request_json(e->nc, "dlq.admin.edit", "{\"task_id\":\"ed-1\",\"payload_b64\":\"@@@@\"}", IT_REQUEST_MS);
    IT_CHECK(err_code(j) == 400, "invalid base64 over NATS");
    json_decref(j);
    /* unpadded ("gaF2Ag" for "gaF2Ag=="), or '=' beyond the two of padding: not RFC 4648 base64 */
    j = api(port, "edit", "{\"task_id\":\"ed-1\",\"payload_b64\":\"gaF2Ag\"}", NULL, &st);
    IT_CHECK(st == 400 && msg_has(j, "padded"), "unpadded base64: %d %s", st, it_json_dump(j));
    json_decref(j);
    j = it_request_json(e->nc, "dlq.admin.edit", "{\"task_id\":\"ed-1\",\"payload_b64\":\"gaF2Ag======\"}",
                        IT_REQUEST_MS);
    IT_CHECK(err_code(j) == 400, "too much padding over NATS: %s", it_json_dump(j));
    json_decref(j);
    j = api(port, "edit", "{\"task_id\":\"ed-1\"}", NULL, &st);
    IT_CHECK(st == 400, "no payload: %d", st);
    json_decref(j);
    j = api(port, "edit", "{\"task_id\":\"ed-1\",\"payload_json\":1,\"payload_b64\":\"AQ==\"}", NULL, &st);
    IT_CHECK(st == 400, "both payloads: %d", st);
    json_decref(j);
    j = api(port, "edit", "{\"task_id\":\"ed-1\",\"payload_json\":1,\"retry\":\"yes\"}", NULL, &st);
    IT_CHECK(st == 400, "retry not a boolean: %d", st);
    json_decref(j);
    j = api(port, "edit", "{\"task_id\":\"ed-1\",\"payload_json\":1,\"colour\":1}", NULL, &st);
    IT_CHECK(st == 400, "unknown key: %d", st);
    json_decref(j);
    /* payload too large: over limits.max_envelope_bytes (2048 here) */
    snprintf(body, sizeof body, "{\"task_id\":\"ed-1\",\"payload_json\":\"%03000d\"}", 0);
    j = api(port, "edit", body, NULL, &st);
    IT_CHECK(st == 400 && msg_has(j, "max_envelope_bytes"), "payload too large: %d %s", st,
             it_json_dump(j));
    json_decref(j);
    /* an archived task is finished: 409, nothing changes */
    j = api(port, "archive", "{\"task_id\":\"ed-1\"}", NULL, &st);
    json_decref(j);
    j = api(port, "edit", "{\"task_id\":\"ed-1\",\"payload_json\":1}", NULL, &st);
    IT_CHECK(st == 409 || st == 404, "edit of an archived task: %d", st);
    json_decref(j);

    natsSubscription_Destroy(worker);
    sc_buf_destroy(&orig);
    sc_buf_destroy(&b64);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_assets, it_teardown),
        cmocka_unit_test_teardown(test_roles, it_teardown),
        cmocka_unit_test_teardown(test_rates_and_filters, it_teardown),
        cmocka_unit_test_teardown(test_edit, it_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
