/* test_httpapi.c - integration: the admin API over HTTP (/api/v1/<verb>) against the same verbs over NATS, its errors, the loopback rule, hostile and slow clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <ifaddrs.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <cmocka.h>

#include "harness.h"

/* ---- a tiny HTTP/1.1 client (blocking; the test thread only) --------------------------------- */

/* The harness's response (it_http_read()). */
#define resp it_http_resp
#define resp_free it_http_resp_free
#define read_resp it_http_read

/* Writes all n bytes at p; false on error (the server may close early: that is no error here). */
static bool
write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        c += k;
        n -= (size_t)k;
    }
    return true;
}

/*
 * http_to() sends method path to addr:port with len bytes of body (NULL: no
 * Content-Length) and extra header lines (NULL or "Name: v\r\n...") and
 * reads the response. Returns 0 or -1 (r->status 0).
 */
static int
http_to(const char *addr, int port, const char *method, const char *path, const char *extra,
        const char *body, size_t len, struct resp *r)
{
    char head[2048], cl[128] = "";
    int fd, rc = -1;

    memset(r, 0, sizeof *r);
    if ((fd = it_dial(addr, port)) < 0)
        return -1;
    if (body)
        snprintf(cl, sizeof cl, "Content-Type: application/json\r\nContent-Length: %zu\r\n", len);
    if (extra && strstr(extra, "Host: ")) /* the caller names the host */
        snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nConnection: close\r\n%s%s\r\n", method,
                 path, cl, extra);
    else
        snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n%s%s\r\n",
                 method, path, addr, port, cl, extra ? extra : "");
    if (write_all(fd, head, strlen(head)) && (!body || write_all(fd, body, len)))
        rc = read_resp(fd, r);
    else
        rc = read_resp(fd, r); /* refused early: the answer may still be there */
    close(fd);
    return rc;
}

static int
http(int port, const char *method, const char *path, const char *body, struct resp *r)
{
    return http_to("127.0.0.1", port, method, path, NULL, body, body ? strlen(body) : 0, r);
}

static bool
header_has(const struct resp *r, const char *line)
{
    return strstr(r->head, line) != NULL;
}

/* ---- comparing answers ----------------------------------------------------------------------- */

/* Removes the members that differ between two calls made a moment apart (timing), recursively. */
static void
strip_timing(json_t *v)
{
    static const char *const timing[] = {"uptime_s", "last_hour", NULL};
    const char *k;
    json_t *x;
    size_t i;

    if (json_is_object(v)) {
        for (i = 0; timing[i]; i++)
            json_object_del(v, timing[i]);
        json_object_foreach(v, k, x)
            strip_timing(x);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x)
            strip_timing(x);
    }
}

/*
 * Asks verb with body over NATS (dlq.admin.<verb>) and over HTTP (method
 * path; body sent only with POST: a GET's path carries it as its query) and asserts the same JSON (timing removed) and HTTP status = the
 * error's code (200 when none). Returns the HTTP answer (caller frees).
 */
static json_t *
same_both(natsConnection *nc, int port, const char *verb, const char *method, const char *path,
          const char *body, int want_status)
{
    char subj[64];
    struct resp r;
    json_t *a, *b;
    json_error_t jerr;
    char *da, *db;

    snprintf(subj, sizeof subj, "dlq.admin.%s", verb);
    a = it_request_json(nc, subj, body, IT_REQUEST_MS);
    if (!strcmp(method, "POST"))
        http(port, "POST", path, body ? body : "", &r);
    else
        http(port, method, path, NULL, &r);
    IT_CHECK(r.status == want_status, "%s %s: status %d, want %d: %s", method, path, r.status,
             want_status, r.body ? r.body : "");
    IT_CHECK(header_has(&r, "Content-Type: application/json"), "%s %s: %s", method, path, r.head);
    IT_CHECK(!strstr(r.head, "Access-Control-"), "%s %s: a CORS header: %s", method, path, r.head);
    b = json_loadb(r.body, r.len, 0, &jerr);
    IT_CHECK(a && b, "%s %s: not JSON (nats %p) %s", method, path, (void *)a, r.body);
    strip_timing(a);
    strip_timing(b);
    da = it_json_dump(a);
    db = it_json_dump(b);
    IT_CHECK(json_equal(a, b), "%s %s differs from dlq.admin.%s:\n  nats: %s\n  http: %s", method,
             path, verb, da, db);
    if (want_status != 200)
        IT_CHECK(json_integer_value(json_object_get(json_object_get(b, "error"), "code")) ==
                     want_status,
                 "%s %s: error code is not the status: %s", method, path, db);
    free(da);
    free(db);
    json_decref(a);
    resp_free(&r);
    return b;
}

/* ---- the environment ------------------------------------------------------------------------- */

/* Files n parked tasks "<prefix>-<i>" with error text err (a validation error parks: policy never). */
static void
file_tasks(struct it_env *e, const char *service, const char *prefix, int n, const char *err)
{
    char subj[128], id[128];
    struct it_envelope env;

    snprintf(subj, sizeof subj, "dlq.failed.%s", service);
    for (int i = 0; i < n; i++) {
        json_t *ack;
        it_envelope_init(&env);
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        env.task_id = id;
        env.error = err;
        ack = it_request_envelope(e->nc, subj, &env);
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest of %s", id);
        json_decref(ack);
    }
}

/* The first non-loopback IPv4 address of this machine in out, or false when it has none. */
static bool
non_loopback_ipv4(char *out, size_t len)
{
    struct ifaddrs *ifs, *i;
    bool found = false;

    if (getifaddrs(&ifs) != 0)
        return false;
    for (i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) ||
            !(i->ifa_flags & IFF_UP))
            continue;
        struct sockaddr_in *sa = (struct sockaddr_in *)(void *)i->ifa_addr;
        if ((ntohl(sa->sin_addr.s_addr) >> 24) == 127)
            continue;
        found = inet_ntop(AF_INET, &sa->sin_addr, out, (socklen_t)len) != NULL;
    }
    freeifaddrs(ifs);
    return found;
}

/* ---- tests ----------------------------------------------------------------------------------- */

/* Every read verb over HTTP (POST with the JSON request, GET with query parameters) equals it over NATS. */
static void
test_reads_equal_nats(void **state)
{
    int port;
    struct it_env *e = it_env_start_on("httpapi-reads", "0.0.0.0", NULL, &port);
    json_t *b;
    const char *cursor;
    char path[512], body[512];

    assert_non_null(e);
    *state = e;
    file_tasks(e, "orders", "ord", 5, "ValueError: bad field");
    file_tasks(e, "billing", "bil", 3, "schema invalid");

    json_decref(same_both(e->nc, port, "health", "POST", "/api/v1/health", NULL, 200));
    json_decref(same_both(e->nc, port, "health", "GET", "/api/v1/health", NULL, 200));
    b = same_both(e->nc, port, "stats", "POST", "/api/v1/stats", NULL, 200);
    IT_CHECK(it_json_int(b, "queue_size") == 8, "stats over HTTP: queue_size %lld",
             (long long)it_json_int(b, "queue_size"));
    json_decref(b);
    json_decref(same_both(e->nc, port, "stats", "GET", "/api/v1/stats", NULL, 200));

    /* list: a filter, a page, and the next page through the cursor */
    b = same_both(e->nc, port, "list", "POST", "/api/v1/list",
                  "{\"subject\":\"dlq.failed.orders\",\"limit\":2}", 200);
    IT_CHECK(json_array_size(json_object_get(b, "tasks")) == 2 && it_json_int(b, "total") == 5,
             "list page: %s", it_json_dump(b));
    cursor = json_string_value(json_object_get(b, "next_cursor"));
    IT_CHECK(cursor != NULL, "no next_cursor");
    snprintf(body, sizeof body, "{\"subject\":\"dlq.failed.orders\",\"limit\":2,\"cursor\":\"%s\"}",
             cursor);
    json_decref(same_both(e->nc, port, "list", "POST", "/api/v1/list", body, 200));
    json_decref(b);
    /* GET with query parameters = the JSON request with the same keys */
    {
        json_t *a = it_request_json(e->nc, "dlq.admin.list",
                                    "{\"status\":\"parked\",\"subject\":\"dlq.failed.*\",\"limit\":3}",
                                    IT_REQUEST_MS);
        struct resp r;
        http(port, "GET", "/api/v1/list?status=parked&subject=dlq.failed.%2A&limit=3", NULL, &r);
        b = json_loads(r.body ? r.body : "", 0, NULL);
        IT_CHECK(r.status == 200 && a && b && json_equal(a, b), "GET list %d: %s vs %s", r.status,
                 r.body, it_json_dump(a));
        json_decref(a);
        json_decref(b);
        resp_free(&r);
    }
    json_decref(same_both(e->nc, port, "list", "GET", "/api/v1/list", NULL, 200));

    /* get: a task, over POST and over GET */
    b = same_both(e->nc, port, "get", "POST", "/api/v1/get", "{\"task_id\":\"ord-3\"}", 200);
    IT_CHECK(!strcmp(it_json_str(b, "task_id"), "ord-3") && json_object_get(b, "history") &&
                 json_object_get(b, "task"),
             "get: %s", it_json_dump(b));
    json_decref(b);
    {
        json_t *a = it_request_json(e->nc, "dlq.admin.get", "{\"task_id\":\"bil-1\"}", IT_REQUEST_MS);
        struct resp r;
        http(port, "GET", "/api/v1/get?task_id=bil-1", NULL, &r);
        b = json_loads(r.body ? r.body : "", 0, NULL);
        IT_CHECK(r.status == 200 && a && b && json_equal(a, b), "GET get: %s", r.body);
        json_decref(a);
        json_decref(b);
        resp_free(&r);
    }
    /* classify */
    json_decref(same_both(e->nc, port, "classify", "POST", "/api/v1/classify",
                          "{\"error\":\"connection refused\",\"error_type\":\"OSError\"}", 200));
    {
        json_t *a = it_request_json(e->nc, "dlq.admin.classify", "{\"error\":\"HTTP 503 from upstream\"}",
                                    IT_REQUEST_MS);
        struct resp r;
        http(port, "GET", "/api/v1/classify?error=HTTP+503+from%20upstream", NULL, &r);
        b = json_loads(r.body ? r.body : "", 0, NULL);
        IT_CHECK(r.status == 200 && a && b && json_equal(a, b), "GET classify: %s", r.body);
        json_decref(a);
        json_decref(b);
        resp_free(&r);
    }
    {
        struct resp r;
        http(port, "HEAD", "/api/v1/stats", NULL, &r);
        IT_CHECK(r.status == 200 && r.len == 0 && header_has(&r, "Content-Length: "),
                 "HEAD stats: %d, %zu body bytes", r.status, r.len);
        resp_free(&r);
    }
    (void)path;
    e->passed = true;
}

/* The verbs that change tasks: the same replies over HTTP as over NATS, and what they did is seen over NATS. */
static void
test_writes_equal_nats(void **state)
{
    int port;
    struct it_env *e = it_env_start_on("httpapi-writes", "0.0.0.0", NULL, &port);
    json_t *b, *h;

    assert_non_null(e);
    *state = e;
    file_tasks(e, "orders", "w", 6, "ValueError: bad field");

    /* pause over HTTP, then over NATS: the same answer; health over NATS sees it */
    json_decref(same_both(e->nc, port, "pause", "POST", "/api/v1/pause", NULL, 200));
    h = it_request_json(e->nc, "dlq.admin.health", NULL, IT_REQUEST_MS);
    IT_CHECK(json_is_true(json_object_get(h, "paused")), "not paused after HTTP pause");
    json_decref(h);
    json_decref(same_both(e->nc, port, "resume", "POST", "/api/v1/resume", NULL, 200));
    h = it_request_json(e->nc, "dlq.admin.health", NULL, IT_REQUEST_MS);
    IT_CHECK(json_is_false(json_object_get(h, "paused")), "still paused after HTTP resume");
    json_decref(h);
    json_decref(same_both(e->nc, port, "pause", "POST", "/api/v1/pause", "", 200));

    /* refusals that change nothing: identical errors and statuses */
    b = same_both(e->nc, port, "clear", "POST", "/api/v1/clear", "{\"subject\":\"dlq.failed.orders\"}",
                  400);
    IT_CHECK(it_json_int(b, "error.would_clear") == 6, "clear without confirm: %s", it_json_dump(b));
    json_decref(b);
    json_decref(same_both(e->nc, port, "retry", "POST", "/api/v1/retry", NULL, 400));
    json_decref(same_both(e->nc, port, "archive", "POST", "/api/v1/archive", "{}", 400));
    json_decref(same_both(e->nc, port, "archive", "POST", "/api/v1/archive", "{\"task_id\":\"nope\"}", 404));
    json_decref(same_both(e->nc, port, "retry", "POST", "/api/v1/retry", "{\"cancel\":true}", 409));
    json_decref(same_both(e->nc, port, "retry", "POST", "/api/v1/retry", "{\"staus\":\"pending\"}", 400));
    json_decref(same_both(e->nc, port, "list", "POST", "/api/v1/list", "{\"limit\":0}", 400));
    json_decref(same_both(e->nc, port, "get", "POST", "/api/v1/get", "[1,2]", 400));
    json_decref(same_both(e->nc, port, "get", "POST", "/api/v1/get", "{\"task_id\":", 400));
    json_decref(same_both(e->nc, port, "get", "GET", "/api/v1/get?task_id=none", "{\"task_id\":\"none\"}", 404));

    /* archive w-0 over NATS; archiving it again is the same 409 over both */
    h = it_request_json(e->nc, "dlq.admin.archive", "{\"task_id\":\"w-0\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(h, "archived") == 1, "archive over NATS");
    json_decref(h);
    json_decref(same_both(e->nc, port, "archive", "POST", "/api/v1/archive", "{\"task_id\":\"w-0\"}", 409));
    {
        struct resp r;
        http(port, "POST", "/api/v1/archive", "{\"task_id\":\"w-1\"}", &r);
        IT_CHECK(r.status == 200 && r.body && strstr(r.body, "{\"archived\":1}"), "archive: %d %s",
                 r.status, r.body);
        resp_free(&r);
        h = it_admin_get(e->nc, "w-1");
        IT_CHECK(h && !strcmp(it_json_str(h, "status"), "archived"), "w-1 not archived");
        json_decref(h);
        /* retry of one task over HTTP (paused: scheduled, not sent) */
        http(port, "POST", "/api/v1/retry", "{\"task_id\":\"w-2\"}", &r);
        b = json_loads(r.body ? r.body : "", 0, NULL);
        IT_CHECK(r.status == 200 && it_json_int(b, "scheduled") == 1 &&
                     !strcmp(it_json_str(b, "task_id"), "w-2"),
                 "retry: %d %s", r.status, r.body);
        json_decref(b);
        resp_free(&r);
        /* clear with confirm over HTTP: the archived ones */
        http(port, "POST", "/api/v1/clear", "{\"status\":\"archived\",\"confirm\":true}", &r);
        IT_CHECK(r.status == 200 && r.body && strstr(r.body, "{\"cleared\":2}"), "clear: %d %s",
                 r.status, r.body);
        resp_free(&r);
        h = it_admin_stats(e->nc);
        IT_CHECK(it_json_int(h, "lifetime_stats.cleared") == 2 && it_json_int(h, "queue_size") == 4,
                 "after clear: %s", it_json_dump(h));
        json_decref(h);
    }
    e->passed = true;
}

/* Statuses of the HTTP side itself: 405, 404, 411, 413, the query's 400, and the OpenAPI document. */
static void
test_http_errors(void **state)
{
    int port;
    struct it_env *e = it_env_start_on("httpapi-errors", "0.0.0.0", NULL, &port);
    struct resp r;
    json_t *doc, *paths;
    static const char *const verbs[] = {"health", "stats", "list", "get", "retry", "archive",
                                        "clear", "classify", "pause", "resume", "groups",
                                        "edit", "audit"};

    assert_non_null(e);
    *state = e;
    http(port, "GET", "/api/v1/retry", NULL, &r);
    IT_CHECK(r.status == 405 && header_has(&r, "Allow: POST") && strstr(r.body, "\"code\":405"),
             "GET retry: %d %s", r.status, r.head);
    resp_free(&r);
    http(port, "PUT", "/api/v1/stats", "{}", &r);
    IT_CHECK(r.status == 405 && header_has(&r, "Allow: GET, HEAD, POST"), "PUT stats: %d", r.status);
    resp_free(&r);
    http(port, "DELETE", "/api/v1/openapi.json", NULL, &r);
    IT_CHECK(r.status == 405, "DELETE openapi: %d", r.status);
    resp_free(&r);
    http(port, "POST", "/api/v1/nosuchverb", "{}", &r);
    IT_CHECK(r.status == 404 && strstr(r.body, "\"code\":404"), "unknown verb: %d %s", r.status, r.body);
    resp_free(&r);
    http(port, "GET", "/api/v2/stats", NULL, &r);
    IT_CHECK(r.status == 404, "v2: %d", r.status);
    resp_free(&r);
    http(port, "GET", "/api/v1/", NULL, &r);
    IT_CHECK(r.status == 404, "/api/v1/: %d", r.status);
    resp_free(&r);
    http(port, "GET", "/api/v1/list?status=%zz", NULL, &r);
    IT_CHECK(r.status == 400, "bad percent: %d %s", r.status, r.body);
    resp_free(&r);
    http(port, "GET", "/api/v1/list?limit=1&limit=2", NULL, &r);
    IT_CHECK(r.status == 400, "twice: %d %s", r.status, r.body);
    resp_free(&r);
    http(port, "GET", "/api/v1/list?limit=abc", NULL, &r);
    IT_CHECK(r.status == 400 && strstr(r.body, "limit"), "limit=abc: %d %s", r.status, r.body);
    resp_free(&r);
    http_to("127.0.0.1", port, "POST", "/api/v1/stats", "Transfer-Encoding: chunked\r\n", NULL, 0, &r);
    IT_CHECK(r.status == 411, "chunked: %d %s", r.status, r.body);
    resp_free(&r);
    http_to("127.0.0.1", port, "POST", "/api/v1/stats", "Content-Length: 10000000\r\n", NULL, 0, &r);
    IT_CHECK(r.status == 413 && strstr(r.body, "\"code\":413"), "10 MB: %d %s", r.status, r.body);
    resp_free(&r);
    http_to("127.0.0.1", port, "POST", "/api/v1/stats", "Content-Length: -5\r\n", NULL, 0, &r);
    IT_CHECK(r.status == 400, "negative length: %d %s", r.status, r.body);
    resp_free(&r);
    /* a body exactly at the cap is read (and refused by the verb as JSON), one byte more is 413 */
    {
        char *blob = malloc(65537);
        memset(blob, ' ', 65537);
        blob[0] = '{';
        blob[65535] = '}';
        http_to("127.0.0.1", port, "POST", "/api/v1/stats", NULL, blob, 65536, &r);
        IT_CHECK(r.status == 200, "64 KiB body: %d %s", r.status, r.body);
        resp_free(&r);
        http_to("127.0.0.1", port, "POST", "/api/v1/stats", NULL, blob, 65537, &r);
        IT_CHECK(r.status == 413, "64 KiB + 1: %d %s", r.status, r.body);
        resp_free(&r);
        free(blob);
    }
    /* Expect: 100-continue gets its interim answer */
    {
        int fd = it_dial("127.0.0.1", port);
        char buf[256];
        ssize_t k;
        const char *h = "POST /api/v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 17\r\n"
                        "Expect: 100-continue\r\n\r\n";
        assert_true(fd >= 0 && write_all(fd, h, strlen(h)));
        k = recv(fd, buf, sizeof buf - 1, 0);
        buf[k > 0 ? k : 0] = '\0';
        IT_CHECK(k > 0 && !strncmp(buf, "HTTP/1.1 100 Continue", 21), "100-continue: %s", buf);
        assert_true(write_all(fd, "{\"error\":\"boom\"}\n", 17));
        assert_int_equal(read_resp(fd, &r), 0);
        IT_CHECK(r.status == 200 && strstr(r.body, "\"category\""), "after continue: %d %s", r.status,
                 r.body);
        resp_free(&r);
        close(fd);
    }
    /* the health endpoints are unchanged */
    http(port, "POST", "/healthz", NULL, &r);
    IT_CHECK(r.status == 405, "POST /healthz: %d", r.status);
    resp_free(&r);

    /* the OpenAPI document: JSON, every verb, and each documented operation answers as documented */
    http(port, "GET", "/api/v1/openapi.json", NULL, &r);
    IT_CHECK(r.status == 200 && header_has(&r, "Content-Type: application/json"), "openapi: %d",
             r.status);
    doc = json_loads(r.body, 0, NULL);
    resp_free(&r);
    IT_CHECK(doc && !strncmp(it_json_str(doc, "openapi"), "3.", 2), "not an OpenAPI 3 document");
    paths = json_object_get(doc, "paths");
    for (size_t i = 0; i < SC_ARRAY_LEN(verbs); i++) {
        char path[64];
        json_t *ops, *op;
        const char *m;
        snprintf(path, sizeof path, "/api/v1/%s", verbs[i]);
        ops = json_object_get(paths, path);
        IT_CHECK(json_object_get(ops, "post"), "openapi: no POST %s", path);
        json_object_foreach(ops, m, op) {
            char meth[8], st[8];
            snprintf(meth, sizeof meth, "%s", m);
            for (char *c = meth; *c; c++)
                *c = (char)(*c - 32);
            if (!strcmp(meth, "POST"))
                http(port, meth, path, strcmp(verbs[i], "get") ? "{}" : "{\"task_id\":\"x\"}", &r);
            else
                http(port, meth, path, NULL, &r);
            snprintf(st, sizeof st, "%d", r.status);
            IT_CHECK(r.status && json_object_get(json_object_get(op, "responses"), st),
                     "%s %s answered %d, not documented", meth, path, r.status);
            resp_free(&r);
        }
    }
    IT_CHECK(json_object_size(paths) == SC_ARRAY_LEN(verbs) + 1, "openapi: %zu paths",
             json_object_size(paths));
    /* every endpoint the daemon announces in service discovery has its path, and answers over HTTP */
    {
        json_t *info = it_request_json(e->nc, "$SRV.INFO.dlq-sidecar", NULL, IT_REQUEST_MS), *ep;
        size_t i, n = 0;
        json_array_foreach(json_object_get(info, "endpoints"), i, ep) {
            char path[96];
            snprintf(path, sizeof path, "/api/v1/%s", it_json_str(ep, "name"));
            IT_CHECK(json_object_get(paths, path), "endpoint %s has no path in openapi.json", path);
            http(port, "POST", path, "{\"no_such_key\":1}", &r);
            IT_CHECK(r.status == 400, "POST %s with an unknown key: %d", path, r.status);
            resp_free(&r);
            n++;
        }
        IT_CHECK(n == SC_ARRAY_LEN(verbs), "service discovery lists %zu endpoints", n);
        json_decref(info);
    }
    json_decref(doc);
    e->passed = true;
}

/* Without credentials, a client that is not on loopback gets 403 from the API; the probes stay open. */
static void
test_not_loopback(void **state)
{
    int port;
    char addr[64];
    struct it_env *e;
    struct resp r;
    static const char *const open_paths[] = {"/healthz", "/readyz", "/metrics"};

    if (!non_loopback_ipv4(addr, sizeof addr)) {
        fprintf(stderr, "test_not_loopback: this machine has no non-loopback IPv4 address\n");
        skip();
    }
    e = it_env_start_on("httpapi-remote", "0.0.0.0", NULL, &port);
    assert_non_null(e);
    *state = e;
    http_to(addr, port, "POST", "/api/v1/stats", NULL, "", 0, &r);
    IT_CHECK(r.status == 403 && strstr(r.body, "\"code\":403"), "remote stats: %d %s", r.status,
             r.body);
    resp_free(&r);
    http_to(addr, port, "GET", "/api/v1/openapi.json", NULL, NULL, 0, &r);
    IT_CHECK(r.status == 403, "remote openapi: %d", r.status);
    resp_free(&r);
    http_to(addr, port, "POST", "/api/v1/clear", NULL, "{\"all\":true,\"confirm\":true}", 27, &r);
    IT_CHECK(r.status == 403, "remote clear: %d", r.status);
    resp_free(&r);
    http_to(addr, port, "GET", "/api/v1/nosuch", NULL, NULL, 0, &r);
    IT_CHECK(r.status == 403, "remote unknown path: %d (403 before routing)", r.status);
    resp_free(&r);
    for (size_t i = 0; i < SC_ARRAY_LEN(open_paths); i++) {
        http_to(addr, port, "GET", open_paths[i], NULL, NULL, 0, &r);
        IT_CHECK(r.status == 200, "remote %s: %d", open_paths[i], r.status);
        resp_free(&r);
    }
    http_to("127.0.0.1", port, "POST", "/api/v1/stats", NULL, "", 0, &r);
    IT_CHECK(r.status == 200, "loopback stats: %d", r.status);
    resp_free(&r);
    http_to(addr, port, "GET", "/metrics", NULL, NULL, 0, &r);
    IT_CHECK(r.body && strstr(r.body, "dlq_http_api_refused_total{reason=\"forbidden\"} 4"),
             "metrics: no refusal count");
    resp_free(&r);
    e->passed = true;
}

/*
 * A web page must not reach the API through the browser: a request from
 * another origin, or (without tokens) under a Host that is not a loopback
 * name (DNS rebinding), is refused; same-origin and loopback names are served.
 */
static void
test_cross_origin(void **state)
{
    int port;
    struct it_env *e = it_env_start_on("httpapi-origin", "0.0.0.0", NULL, &port);
    struct resp r;
    char hdr[256];
    json_t *h;

    assert_non_null(e);
    *state = e;
    /* a form POST from a page of another origin (no preflight for text/plain) */
    http_to("127.0.0.1", port, "POST", "/api/v1/pause",
            "Origin: https://evil.example\r\nContent-Type: text/plain\r\n", "", 0, &r);
    IT_CHECK(r.status == 403 && strstr(r.body, "cross-origin"), "cross-origin pause: %d %s", r.status,
             r.body);
    resp_free(&r);
    http_to("127.0.0.1", port, "POST", "/api/v1/clear", "Origin: null\r\n",
            "{\"all\":true,\"confirm\":true}", 27, &r);
    IT_CHECK(r.status == 403, "Origin null: %d", r.status);
    resp_free(&r);
    h = it_request_json(e->nc, "dlq.admin.health", NULL, IT_REQUEST_MS);
    IT_CHECK(json_is_false(json_object_get(h, "paused")), "a cross-origin pause went through");
    json_decref(h);
    /* DNS rebinding: the page's own name in Host, no Origin on a GET */
    snprintf(hdr, sizeof hdr, "Host: evil.example:%d\r\n", port);
    http_to("127.0.0.1", port, "GET", "/api/v1/stats", hdr, NULL, 0, &r);
    IT_CHECK(r.status == 403 && strstr(r.body, "loopback name"), "rebound Host: %d %s", r.status,
             r.body);
    resp_free(&r);
    /* loopback names and the same origin are served */
    static const char *const hosts[] = {"localhost:%d", "127.0.0.1:%d", "127.1.2.3:%d", "[::1]:%d",
                                        "LOCALHOST"};
    for (size_t i = 0; i < SC_ARRAY_LEN(hosts); i++) {
        char name[64];
        snprintf(name, sizeof name, hosts[i], port);
        snprintf(hdr, sizeof hdr, "Host: %s\r\nOrigin: http://%s\r\n", name, name);
        http_to("127.0.0.1", port, "POST", "/api/v1/stats", hdr, "", 0, &r);
        IT_CHECK(r.status == 200, "Host %s, same origin: %d %s", name, r.status, r.body);
        resp_free(&r);
    }
    snprintf(hdr, sizeof hdr, "Host: 127.0.0.1:%d\r\nOrigin: http://localhost:%d\r\n", port, port);
    http_to("127.0.0.1", port, "POST", "/api/v1/stats", hdr, "", 0, &r);
    IT_CHECK(r.status == 403, "Origin of another loopback name: %d", r.status);
    resp_free(&r);
    /* the probes do not care */
    http_to("127.0.0.1", port, "GET", "/healthz", "Origin: https://evil.example\r\n", NULL, 0, &r);
    IT_CHECK(r.status == 200, "healthz with an Origin: %d", r.status);
    resp_free(&r);
    e->passed = true;
}

/* With http.auth tokens set: 401 without a token, the viewer reads only, the operator does everything, from any peer. */
static void
test_auth_tokens(void **state)
{
    static const char *const extra[] = {"http.auth.operator_token=op-Secret-1",
                                        "http.auth.viewer_token=view-Secret-2", NULL};
    int port;
    char addr[64];
    struct it_env *e = it_env_start_on("httpapi-auth", "0.0.0.0", extra, &port);
    struct resp r;
    const char *op = "Authorization: Bearer op-Secret-1\r\n";
    const char *view = "Authorization: bearer view-Secret-2\r\n";
    bool remote = non_loopback_ipv4(addr, sizeof addr);

    assert_non_null(e);
    *state = e;
    http_to("127.0.0.1", port, "POST", "/api/v1/stats", NULL, "", 0, &r);
    IT_CHECK(r.status == 401 && header_has(&r, "WWW-Authenticate: Bearer") &&
                 strstr(r.body, "\"code\":401"),
             "no token: %d %s", r.status, r.body);
    resp_free(&r);
    http_to("127.0.0.1", port, "GET", "/api/v1/openapi.json", NULL, NULL, 0, &r);
    IT_CHECK(r.status == 401, "openapi without a token: %d", r.status);
    resp_free(&r);
    http_to("127.0.0.1", port, "POST", "/api/v1/stats", "Authorization: Bearer op-Secret-\r\n", "", 0, &r);
    IT_CHECK(r.status == 401, "a token's prefix: %d", r.status);
    resp_free(&r);
    http_to("127.0.0.1", port, "POST", "/api/v1/stats", "Authorization: Basic b3A6eA==\r\n", "", 0, &r);
    IT_CHECK(r.status == 401, "basic auth: %d", r.status);
    resp_free(&r);
    /* the viewer reads, and is refused every verb that changes something */
    http_to("127.0.0.1", port, "GET", "/api/v1/list?limit=5", view, NULL, 0, &r);
    IT_CHECK(r.status == 200 && strstr(r.body, "\"tasks\""), "viewer list: %d %s", r.status, r.body);
    resp_free(&r);
    http_to("127.0.0.1", port, "GET", "/api/v1/openapi.json", view, NULL, 0, &r);
    IT_CHECK(r.status == 200, "viewer openapi: %d", r.status);
    resp_free(&r);
    static const char *const writes[] = {"retry", "archive", "clear", "pause", "resume", "edit"};
    for (size_t i = 0; i < SC_ARRAY_LEN(writes); i++) {
        char path[64];
        snprintf(path, sizeof path, "/api/v1/%s", writes[i]);
        http_to("127.0.0.1", port, "POST", path, view, "{\"all\":true}", 12, &r);
        IT_CHECK(r.status == 403 && strstr(r.body, "viewer"), "viewer %s: %d %s", path, r.status,
                 r.body);
        resp_free(&r);
    }
    json_t *h = it_request_json(e->nc, "dlq.admin.health", NULL, IT_REQUEST_MS);
    IT_CHECK(json_is_false(json_object_get(h, "paused")), "a viewer's pause went through");
    json_decref(h);
    /* the operator may do everything */
    http_to("127.0.0.1", port, "POST", "/api/v1/pause", op, "", 0, &r);
    IT_CHECK(r.status == 200 && strstr(r.body, "\"paused\":true"), "operator pause: %d %s", r.status,
             r.body);
    resp_free(&r);
    h = it_request_json(e->nc, "dlq.admin.health", NULL, IT_REQUEST_MS);
    IT_CHECK(json_is_true(json_object_get(h, "paused")), "the operator's pause did not happen");
    json_decref(h);
    /* with credentials configured, a peer off loopback is served when it has a token */
    if (remote) {
        http_to(addr, port, "POST", "/api/v1/stats", op, "", 0, &r);
        IT_CHECK(r.status == 200, "remote operator: %d %s", r.status, r.body);
        resp_free(&r);
        http_to(addr, port, "POST", "/api/v1/stats", NULL, "", 0, &r);
        IT_CHECK(r.status == 401, "remote without a token: %d", r.status);
        resp_free(&r);
    }
    http_to("127.0.0.1", port, "GET", "/healthz", NULL, NULL, 0, &r);
    IT_CHECK(r.status == 200, "healthz needs no token: %d", r.status);
    resp_free(&r);
    /* with tokens, any Host name is served (the token is the guard), never another origin */
    http_to("127.0.0.1", port, "POST", "/api/v1/stats",
            "Host: dlq.example:9464\r\nAuthorization: Bearer op-Secret-1\r\n", "", 0, &r);
    IT_CHECK(r.status == 200, "a DNS name with a token: %d %s", r.status, r.body);
    resp_free(&r);
    http_to("127.0.0.1", port, "POST", "/api/v1/stats",
            "Authorization: Bearer op-Secret-1\r\nOrigin: https://evil.example\r\n", "", 0, &r);
    IT_CHECK(r.status == 403, "another origin with a token: %d", r.status);
    resp_free(&r);
    e->passed = true;
}

/* Hostile bodies and requests: 4xx, the process keeps serving, memory stays flat. */
static void
test_hostile(void **state)
{
    int port;
    struct it_env *e = it_env_start_on("httpapi-hostile", "0.0.0.0", NULL, &port);
    struct resp r;
    long rss0 = 0, rss1;
    char *junk = malloc(65536);

    assert_non_null(e);
    assert_non_null(junk);
    *state = e;
    it_rand_seed(14);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 150; i++) {
            size_t n = 1 + (size_t)(it_rand_u64() % 65535);
            const char *verbs[] = {"stats", "list", "get", "retry", "archive", "clear", "classify"};
            char path[64];
            for (size_t k = 0; k < n; k++)
                junk[k] = (char)it_rand_u64();
            if (i % 3 == 0) /* deeply nested */
                memset(junk, '[', n);
            else /* broken JSON, or bytes that are no JSON at all (never blank: that is an empty request) */
                junk[0] = i % 3 == 1 ? '{' : '\x01';
            snprintf(path, sizeof path, "/api/v1/%s", verbs[i % SC_ARRAY_LEN(verbs)]);
            http_to("127.0.0.1", port, "POST", path, NULL, junk, n, &r);
            IT_CHECK(r.status >= 400 && r.status < 500, "junk %zu bytes to %s: %d %s", n, path,
                     r.status, r.body ? r.body : "");
            resp_free(&r);
        }
        /* broken heads: a garbage request line, a huge header, a NUL in the query */
        http_to("127.0.0.1", port, "GET", "/api/v1/list?subject=%00", NULL, NULL, 0, &r);
        IT_CHECK(r.status == 400, "NUL in query: %d", r.status);
        resp_free(&r);
        if (round == 0) {
            http(port, "POST", "/api/v1/stats", NULL, &r);
            rss0 = it_pid_rss_kb(e->dmn.pid);
            resp_free(&r);
        }
    }
    rss1 = it_pid_rss_kb(e->dmn.pid);
    fprintf(stderr, "RSS after the first 150 junk requests %ld kB, after 300 more %ld kB\n", rss0, rss1);
    /* Sanitized runs (DLQ_TEST_QUICK) keep freed memory in ASan's quarantine: LeakSanitizer checks those at exit. */
    if (!getenv("DLQ_TEST_QUICK") || !strcmp(getenv("DLQ_TEST_QUICK"), "0"))
        IT_CHECK(rss0 > 0 && rss1 - rss0 < 8 * 1024, "memory grew from %ld to %ld kB", rss0, rss1);
    IT_CHECK(it_daemon_alive(&e->dmn), "the daemon died");
    http(port, "POST", "/api/v1/stats", "", &r);
    IT_CHECK(r.status == 200, "stats after the junk: %d", r.status);
    resp_free(&r);
    assert_true(it_admin_health_ok(e->nc));
    free(junk);
    e->passed = true;
}

/* ---- slow clients ---------------------------------------------------------------------------- */

struct trickler {
    int port;
    int fd;
    atomic_bool stop;
    int status; /* what the server answered, 0: cut without an answer */
};

/* Sends a POST's head and body one byte every 20 ms until stop or the server closes. */
static void *
trickle(void *arg)
{
    struct trickler *t = arg;
    const char *req = "POST /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 400\r\n\r\n";
    size_t len = strlen(req), sent = 0;
    struct resp r = {0};

    t->fd = it_dial("127.0.0.1", t->port);
    if (t->fd < 0)
        return NULL;
    while (!atomic_load(&t->stop) && sent < len + 400) {
        char ch = sent < len ? req[sent] : ' ';
        if (send(t->fd, &ch, 1, MSG_NOSIGNAL) != 1)
            break;
        sent++;
        it_sleep_ms(20);
    }
    if (read_resp(t->fd, &r) == 0)
        t->status = r.status;
    resp_free(&r);
    close(t->fd);
    return NULL;
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Clients that trickle their request byte by byte do not slow the admin API over NATS or HTTP. */
static void
test_slow_clients(void **state)
{
    static const char *const extra[] = {"http.request_timeout_ms=3000", NULL};
    int port;
    struct it_env *e = it_env_start_on("httpapi-slow", "0.0.0.0", extra, &port);
    struct trickler t[8];
    pthread_t th[8];
    int64_t worst = 0, worst_http = 0;
    struct resp r;

    assert_non_null(e);
    *state = e;
    for (int i = 0; i < 8; i++) {
        t[i] = (struct trickler){.port = port};
        atomic_init(&t[i].stop, false);
        assert_int_equal(pthread_create(&th[i], NULL, trickle, &t[i]), 0);
    }
    it_sleep_ms(200);
    for (int i = 0; i < 20; i++) {
        int64_t t0 = mono_ms(), dt;
        json_t *s = it_request_json(e->nc, "dlq.admin.stats", NULL, IT_REQUEST_MS);
        dt = mono_ms() - t0;
        IT_CHECK(s != NULL, "stats over NATS did not answer while clients trickle");
        json_decref(s);
        worst = dt > worst ? dt : worst;
        t0 = mono_ms();
        http(port, "GET", "/api/v1/health", NULL, &r);
        dt = mono_ms() - t0;
        IT_CHECK(r.status == 200, "health over HTTP while clients trickle: %d", r.status);
        resp_free(&r);
        worst_http = dt > worst_http ? dt : worst_http;
        it_sleep_ms(50);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
    }
    fprintf(stderr, "slowest admin answer while 8 clients trickled: NATS %lld ms, HTTP %lld ms\n",
            (long long)worst, (long long)worst_http);
    IT_CHECK(worst < 1000 && worst_http < 1000, "the loop stalled: NATS %lld ms, HTTP %lld ms",
             (long long)worst, (long long)worst_http);
    /* each trickler was cut at the deadline (3 s) before its 400-byte body was complete (> 9 s) */
    for (int i = 0; i < 8; i++)
        IT_CHECK(t[i].status == 0 || t[i].status == 503, "trickler %d got %d", i, t[i].status);
    IT_CHECK(it_daemon_alive(&e->dmn), "the daemon died");
    e->passed = true;
}

/* ---- cluster mode ---------------------------------------------------------------------------- */

struct cworld {
    char dir[IT_PATH_MAX];
    struct it_cluster cl;
    struct it_daemon sc[2];
    natsConnection *nc;
    bool passed;
};

static int
cluster_teardown(void **state)
{
    struct cworld *w = *state;
    int rc = 0;

    if (!w)
        return 0;
    for (int i = 0; i < 2; i++) {
        if (w->sc[i].pid > 0)
            kill(w->sc[i].pid, SIGCONT);
        if (w->sc[i].pid > 0 && it_daemon_stop(&w->sc[i]) != 0) {
            fprintf(stderr, "sidecar s%d did not exit 0\n", i);
            rc = -1;
        }
        if (!w->passed)
            it_print_tail("sidecar log", w->sc[i].log, 30);
    }
    natsConnection_Destroy(w->nc);
    it_cluster_stop(&w->cl);
    if (w->passed && rc == 0) {
        char cmd[IT_PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", w->dir);
    } else {
        fprintf(stderr, "kept %s\n", w->dir);
    }
    free(w);
    return rc;
}

/* Removes what names the member that took the request, and the per-member list (order of arrival). */
static void
strip_member(json_t *v)
{
    json_object_del(v, "answered_by");
    json_object_del(v, "members");
    strip_timing(v);
}

/*
 * In cluster mode the HTTP API answers with the merged view of every member,
 * as dlq.admin.<verb> does: two sidecars, the HTTP listener on one of them.
 */
static void
test_cluster_merged(void **state)
{
    struct cworld *w = calloc(1, sizeof *w);
    const char *tmp = getenv("TMPDIR");
    int port = it_free_port();
    json_t *a = NULL, *b = NULL;
    struct resp r;

    assert_non_null(w);
    *state = w;
    snprintf(w->dir, sizeof w->dir, "%s/dlq-it-httpapi-cluster-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(w->dir));
    /* the fan-out waits 3 s: a request timeout shorter than that makes a stuck member's HTTP answer a 503 */
    it_cluster_two_members(&w->cl, w->sc, &w->nc, w->dir, "it-httpapi-cluster", port,
                           "http.request_timeout_ms=1500");
    it_cluster_seed_tasks(w->nc, 12);

    /* stats, list (two pages), get: the HTTP answer is the merged one */
    static const char *const reqs[][2] = {
        {"stats", ""},
        {"list", "{\"limit\":5}"},
        {"get", "{\"task_id\":\"c-07\"}"},
        {"get", "{\"task_id\":\"nope\"}"},
        {"health", ""},
        {"groups", ""},                                   /* one group of 12, counted over both members */
        {"clear", "{\"all\":true,\"dry_run\":true}"},     /* the members' counts add up; nothing removed */
    };
    for (size_t i = 0; i < SC_ARRAY_LEN(reqs); i++) {
        char subj[64], path[64], *da, *db;
        snprintf(subj, sizeof subj, "dlq.admin.%s", reqs[i][0]);
        snprintf(path, sizeof path, "/api/v1/%s", reqs[i][0]);
        /*
         * Under a sanitizer on a loaded machine a member's answer can miss
         * the fan-out's wait, or a lease lost under load leaves a partition
         * unowned a while (a partial merge, over NATS as over HTTP): ask both
         * ways again, up to 80 times (20 s), until both are the merged one.
         */
        for (int tries = 0;; tries++) {
            a = it_request_json(w->nc, subj, reqs[i][1], IT_REQUEST_MS);
            http(port, "POST", path, reqs[i][1], &r);
            b = json_loads(r.body ? r.body : "", 0, NULL);
            if (tries == 79 || !strcmp(reqs[i][0], "health") ||
                (a && b && it_json_int(b, "members_answered") == 2 &&
                 it_json_int(a, "members_answered") == 2 &&
                 json_array_size(json_object_get(b, "partitions_missing")) == 0 &&
                 json_array_size(json_object_get(a, "partitions_missing")) == 0 &&
                 (strcmp(reqs[i][0], "stats") != 0 ||
                  (it_json_int(b, "queue_size") == 12 && it_json_int(a, "queue_size") == 12))))
                break;
            json_decref(a);
            json_decref(b);
            resp_free(&r);
            it_sleep_ms(250);
        }
        IT_CHECK(a && b, "%s: %d %s", path, r.status, r.body);
        if (strcmp(reqs[i][0], "health") != 0) {
            IT_CHECK(it_json_int(b, "members_answered") == 2 &&
                         json_array_size(json_object_get(b, "partitions_missing")) == 0,
                     "%s over HTTP is not merged: %s", path, r.body);
        }
        if (strcmp(reqs[i][0], "health") != 0 && strcmp(reqs[i][0], "stats") != 0) {
            strip_member(a);
            strip_member(b);
            da = it_json_dump(a);
            db = it_json_dump(b);
            IT_CHECK(json_equal(a, b), "%s differs:\n  nats: %s\n  http: %s", path, da, db);
            free(da);
            free(db);
        } else if (!strcmp(reqs[i][0], "stats")) {
            IT_CHECK(it_json_int(b, "queue_size") == 12 && it_json_int(a, "queue_size") == 12,
                     "merged stats: %s", r.body);
        }
        if (!strcmp(reqs[i][0], "groups"))
            IT_CHECK(json_array_size(json_object_get(a, "groups")) == 1 &&
                         it_json_int(json_array_get(json_object_get(a, "groups"), 0), "count") == 12,
                     "merged groups: %s", r.body);
        if (!strcmp(reqs[i][0], "clear"))
            IT_CHECK(json_is_true(json_object_get(a, "dry_run")) && it_json_int(a, "matched") == 12,
                     "merged dry run: %s", r.body);
        if (json_is_object(json_object_get(a, "error"))) /* a task's "error" is its error text */
            IT_CHECK(r.status == it_json_int(a, "error.code"), "%s: status %d for %s", path, r.status,
                     r.body);
        else
            IT_CHECK(r.status == 200, "%s: %d", path, r.status);
        json_decref(a);
        json_decref(b);
        resp_free(&r);
    }
    /* pause over HTTP reaches both members */
    http(port, "POST", "/api/v1/pause", NULL, &r);
    IT_CHECK(r.status == 200 && strstr(r.body, "\"members_answered\":2"), "pause: %d %s", r.status,
             r.body);
    resp_free(&r);
    {
        json_t *h[4];
        size_t n = it_gather_json(w->nc, "dlq.cluster.admin.health", NULL, 1000, h, 4);
        IT_CHECK(n == 2, "%zu members answered health", n);
        for (size_t i = 0; i < n; i++) {
            IT_CHECK(json_is_true(it_json_get(h[i], "reply.paused")), "member %zu not paused", i);
            json_decref(h[i]);
        }
    }
    /*
     * A member that does not answer (stopped): the fan-out waits 3 s, longer
     * than this listener's request_timeout_ms, so the HTTP client gets a 503
     * at its deadline; the gathering goes on without it and the member that
     * took it keeps serving.
     */
    IT_CHECK(kill(w->sc[1].pid, SIGSTOP) == 0, "SIGSTOP s1");
    {
        int64_t t0 = mono_ms(), dt;
        http(port, "POST", "/api/v1/stats", "", &r);
        dt = mono_ms() - t0;
        IT_CHECK(r.status == 503 && strstr(r.body, "timed out"), "stats with s1 stopped: %d %s after %lld ms",
                 r.status, r.body, (long long)dt);
        IT_CHECK(dt >= 1000 && dt < 3000, "the 503 came after %lld ms", (long long)dt);
        resp_free(&r);
        it_sleep_ms(2500); /* the fan-out's deadline passes: its answer goes nowhere */
        http(port, "GET", "/api/v1/health", NULL, &r);
        IT_CHECK(r.status == 200, "health after the timed-out request: %d", r.status);
        resp_free(&r);
    }
    IT_CHECK(kill(w->sc[1].pid, SIGCONT) == 0, "SIGCONT s1");
    IT_CHECK(it_daemon_alive(&w->sc[0]), "s0 died");
    w->passed = true;
}

/*
 * No argument: the tests on one sidecar; "cluster": the cluster-mode test
 * (JetStream; CTest integration_httpapi_cluster); any other argument: the
 * tests on one sidecar whose names match it (cmocka's filter, "test_hostile").
 */
int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reads_equal_nats, it_teardown),
        cmocka_unit_test_teardown(test_writes_equal_nats, it_teardown),
        cmocka_unit_test_teardown(test_http_errors, it_teardown),
        cmocka_unit_test_teardown(test_not_loopback, it_teardown),
        cmocka_unit_test_teardown(test_auth_tokens, it_teardown),
        cmocka_unit_test_teardown(test_cross_origin, it_teardown),
        cmocka_unit_test_teardown(test_hostile, it_teardown),
        cmocka_unit_test_teardown(test_slow_clients, it_teardown),
    };
    const struct CMUnitTest cluster[] = {
        cmocka_unit_test_teardown(test_cluster_merged, cluster_teardown),
    };

    if (argc > 1 && !strcmp(argv[1], "cluster"))
        return cmocka_run_group_tests_name("integration_httpapi_cluster", cluster, NULL, NULL);
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("integration_httpapi", tests, NULL, NULL);
}
