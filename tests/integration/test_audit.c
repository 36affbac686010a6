/* test_audit.c - integration: every mutating admin verb leaves exactly one audit record (the audit verb, dlq.events.audit, the task's history) over NATS and HTTP, with the right principal; basic-auth users; a cluster member answering a fan-out records nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <crypt.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <cmocka.h>

#include "harness.h"

/* ---- helpers ------------------------------------------------------------------------------------ */

/* Connects to url as a client whose reply inboxes start with inbox ("_INBOX_alice"). */
static natsConnection *
connect_inbox(struct it_env *e, const char *inbox)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;

    IT_CHECK(natsOptions_Create(&o) == NATS_OK, "options");
    IT_CHECK(natsOptions_SetURL(o, e->srv.url) == NATS_OK, "url");
    IT_CHECK(natsOptions_SetCustomInboxPrefix(o, inbox) == NATS_OK, "inbox prefix %s", inbox);
    IT_CHECK(natsConnection_Connect(&nc, o) == NATS_OK, "connect with inbox %s", inbox);
    natsOptions_Destroy(o);
    IT_CHECK(e->conns[IT_ENV_MAX_CONNS - 1] == NULL, "a free connection slot");
    for (size_t i = 0; i < IT_ENV_MAX_CONNS; i++) {
        if (!e->conns[i]) {
            e->conns[i] = nc; /* closed by it_env_stop() */
            break;
        }
    }
    return nc;
}

/* Files n tasks "<prefix>-<i>" on dlq.failed.<service>. */
static void
file_tasks(struct it_env *e, const char *service, const char *prefix, int n)
{
    char subj[128], id[128];
    struct it_envelope env;

    snprintf(subj, sizeof subj, "dlq.failed.%s", service);
    for (int i = 0; i < n; i++) {
        json_t *ack;
        it_envelope_init(&env);
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        env.task_id = id;
        env.error = "ValueError: bad input";
        ack = it_request_envelope(e->nc, subj, &env);
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest of %s", id);
        json_decref(ack);
    }
}

/* The audit verb's records (limit N) over nc; fails the test without an array. New reference. */
static json_t *
audit_records(natsConnection *nc, int limit)
{
    char body[64];
    json_t *r, *recs;

    snprintf(body, sizeof body, "{\"limit\":%d}", limit);
    r = it_request_json(nc, "dlq.admin.audit", body, IT_REQUEST_MS);
    recs = json_object_get(r, "records");
    IT_CHECK(json_is_array(recs), "audit answers records: %s", it_json_dump(r));
    json_incref(recs);
    json_decref(r);
    return recs;
}

/* Checks one record: principal, verb, task_id (NULL: a filter), count, not a dry run, a time. */
static void
check_record(const json_t *rec, const char *principal, const char *verb, const char *task_id,
             int64_t count)
{
    char *dump = it_json_dump(rec);

    IT_CHECK(json_is_object(rec), "a record: %s", dump);
    IT_CHECK(!strcmp(it_json_str(rec, "principal") ? it_json_str(rec, "principal") : "", principal),
             "principal %s in %s", principal, dump);
    IT_CHECK(!strcmp(it_json_str(rec, "verb") ? it_json_str(rec, "verb") : "", verb), "verb %s in %s",
             verb, dump);
    if (task_id)
        IT_CHECK(it_json_str(rec, "task_id") && !strcmp(it_json_str(rec, "task_id"), task_id),
                 "task_id %s in %s", task_id, dump);
    else
        IT_CHECK(json_is_object(json_object_get(rec, "filter")) && !json_object_get(rec, "task_id"),
                 "a filter in %s", dump);
    IT_CHECK(it_json_int(rec, "count") == count, "count %lld in %s", (long long)count, dump);
    IT_CHECK(json_is_false(json_object_get(rec, "dry_run")), "dry_run false in %s", dump);
    IT_CHECK(it_json_str(rec, "time") && strlen(it_json_str(rec, "time")) >= 20, "a time in %s", dump);
    free(dump);
}

/*
 * Checks that the action just done left exactly one more audit record than
 * before (*seen records, *events events), and that the record in the ring
 * and the event say principal, verb, task_id and count.
 */
static void
check_one_more(natsConnection *nc, struct it_recorder *ev, size_t *seen, size_t *events,
               const char *principal, const char *verb, const char *task_id, int64_t count)
{
    json_t *recs = audit_records(nc, 1000), *evj;
    const struct it_rec_msg *m;

    IT_CHECK(json_array_size(recs) == *seen + 1, "%s by %s: %zu records, %zu expected", verb, principal,
             json_array_size(recs), *seen + 1);
    check_record(json_array_get(recs, 0), principal, verb, task_id, count);
    json_decref(recs);
    (*seen)++;
    IT_CHECK(it_rec_wait(ev, *events + 1, IT_WAIT_MS), "dlq.events.audit for %s", verb);
    m = it_rec_get(ev, *events);
    evj = json_loadb(m->body, m->len, 0, NULL);
    check_record(evj, principal, verb, task_id, count);
    json_decref(evj);
    (*events)++;
}

/* Whether task_id's history (get) holds an "operator" entry whose text is note. */
static bool
history_has(natsConnection *nc, const char *task_id, const char *note)
{
    json_t *t = it_admin_get(nc, task_id), *h;
    size_t i;
    bool found = false;

    json_array_foreach(json_object_get(t, "history"), i, h)
        if (!strcmp(it_json_str(h, "outcome") ? it_json_str(h, "outcome") : "", "operator") &&
            it_json_str(h, "error") && !strcmp(it_json_str(h, "error"), note))
            found = true;
    json_decref(t);
    return found;
}

/* Starts an env with HTTP on 127.0.0.1 at a free port (*port), events on, and extra flags. */
static struct it_env *
start_env(const char *name, const char *const *extra, int *port)
{
    const char *flags[32];
    size_t n = 0;

    flags[n++] = "events.enabled=true";
    for (size_t i = 0; extra && extra[i] && n < SC_ARRAY_LEN(flags) - 1; i++)
        flags[n++] = extra[i];
    flags[n] = NULL;
    return it_env_start_http(name, flags, port);
}

/* ---- HTTP ---------------------------------------------------------------------------------------- */

/* "Authorization: Basic <base64 user:password>\r\n" into out. */
static const char *
basic(const char *user, const char *password, char *out, size_t len)
{
    char plain[256];
    struct sc_buf b;

    snprintf(plain, sizeof plain, "%s:%s", user, password);
    sc_buf_init(&b, 1024);
    assert_int_equal(sc_base64_encode(&b, plain, strlen(plain)), SC_OK);
    snprintf(out, len, "Authorization: Basic %.*s\r\n", (int)b.len, b.data);
    sc_buf_destroy(&b);
    return out;
}

/* A crypt(3) hash of password with a fresh salt of method prefix ("$y$", "$6$"), into out. */
static const char *
make_hash(const char *prefix, const char *password, char *out, size_t len)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;

    memset(&cd, 0, sizeof cd);
    IT_CHECK(crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof salt) != NULL, "a %s salt", prefix);
    IT_CHECK(crypt_rn(password, salt, &cd, sizeof cd) != NULL && cd.output[0] == '$', "a %s hash",
             prefix);
    snprintf(out, len, "%s", cd.output);
    return out;
}

/* ---- the tests ----------------------------------------------------------------------------------- */

/*
 * Over NATS: retry, archive (one task and by filter), clear, pause and
 * resume each leave exactly one record, named after the caller's inbox
 * prefix (nats:alice), or "nats" for a client on the default inbox; the
 * touched tasks' histories hold the note; refused requests record nothing.
 */
static void
test_nats_verbs(void **state)
{
    int port;
    struct it_env *e = start_env("audit-nats", NULL, &port);
    natsConnection *alice, *anon;
    struct it_recorder *ev;
    size_t seen = 0, events = 0;
    int64_t n;
    json_t *r;

    assert_non_null(e);
    *state = e;
    alice = connect_inbox(e, "_INBOX_alice");
    anon = it_env_connect(e, "anonymous");
    ev = it_env_recorder(e, e->nc, "dlq.events.audit", NULL, 1000, true);
    assert_non_null(ev);
    IT_CHECK(natsConnection_Flush(e->nc) == NATS_OK, "flush");
    file_tasks(e, "billing", "b", 4);
    file_tasks(e, "orders", "o", 3);

    /* reads and refusals record nothing */
    json_decref(it_request_json(alice, "dlq.admin.stats", NULL, IT_REQUEST_MS));
    r = it_request_json(alice, "dlq.admin.retry", "{\"task_id\":\"no-such\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(r, "error.code") == 404, "retry of an unknown task: 404");
    json_decref(r);
    r = it_request_json(alice, "dlq.admin.clear", "{\"subject\":\"dlq.failed.orders\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(r, "error.code") == 400, "clear without confirm: 400");
    json_decref(r);
    r = audit_records(alice, 1000);
    IT_CHECK(json_array_size(r) == 0, "no record after reads and refusals: %s", it_json_dump(r));
    json_decref(r);

    r = it_request_json(alice, "dlq.admin.retry", "{\"task_id\":\"b-0\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(r, "scheduled") == 1, "retry b-0: %s", it_json_dump(r));
    json_decref(r);
    check_one_more(alice, ev, &seen, &events, "nats:alice", "retry", "b-0", 1);
    IT_CHECK(history_has(alice, "b-0", "retry by nats:alice"), "b-0's history notes the retry");

    r = it_request_json(anon, "dlq.admin.archive", "{\"task_id\":\"b-1\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(r, "archived") == 1, "archive b-1: %s", it_json_dump(r));
    json_decref(r);
    check_one_more(alice, ev, &seen, &events, "nats", "archive", "b-1", 1);
    IT_CHECK(history_has(alice, "b-1", "archive by nats"), "b-1's history notes the archive");

    r = it_request_json(alice, "dlq.admin.retry", "{\"subject\":\"dlq.failed.orders\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(r, "scheduled") == 3, "retry of orders: %s", it_json_dump(r));
    json_decref(r);
    check_one_more(alice, ev, &seen, &events, "nats:alice", "retry", NULL, 3);
    IT_CHECK(history_has(alice, "o-2", "retry by nats:alice"), "o-2's history notes the retry");

    r = it_request_json(alice, "dlq.admin.edit", "{\"task_id\":\"o-1\",\"payload_json\":{\"fixed\":1}}",
                        IT_REQUEST_MS);
    IT_CHECK(json_is_true(json_object_get(r, "edited")), "edit o-1: %s", it_json_dump(r));
    json_decref(r);
    check_one_more(alice, ev, &seen, &events, "nats:alice", "edit", "o-1", 1);
    IT_CHECK(history_has(alice, "o-1", "edit by nats:alice"), "o-1's history notes the edit");

    r = it_request_json(alice, "dlq.admin.archive", "{\"subject\":\"dlq.failed.billing\",\"status\":\"pending\"}",
                        IT_REQUEST_MS);
    /* b-0 (retried, maybe back to pending by now), b-2, b-3: what the reply says is the count */
    n = it_json_int(r, "archived");
    IT_CHECK(n >= 2 && n <= 3, "archive of billing's pending tasks: %s", it_json_dump(r));
    json_decref(r);
    check_one_more(alice, ev, &seen, &events, "nats:alice", "archive", NULL, n);
    IT_CHECK(history_has(alice, "b-3", "archive by nats:alice"), "b-3's history notes the archive");

    r = it_request_json(alice, "dlq.admin.clear", "{\"subject\":\"dlq.failed.billing\",\"confirm\":true}",
                        IT_REQUEST_MS);
    IT_CHECK(it_json_int(r, "cleared") == 4, "clear of billing: %s", it_json_dump(r));
    json_decref(r);
    check_one_more(alice, ev, &seen, &events, "nats:alice", "clear", NULL, 4);

    json_decref(it_request_json(alice, "dlq.admin.pause", NULL, IT_REQUEST_MS));
    check_one_more(alice, ev, &seen, &events, "nats:alice", "pause", NULL, 0);
    json_decref(it_request_json(alice, "dlq.admin.resume", NULL, IT_REQUEST_MS));
    check_one_more(alice, ev, &seen, &events, "nats:alice", "resume", NULL, 0);

    /* limit, newest first, and a bad limit */
    r = audit_records(alice, 2);
    IT_CHECK(json_array_size(r) == 2 && !strcmp(it_json_str(json_array_get(r, 0), "verb"), "resume") &&
                 !strcmp(it_json_str(json_array_get(r, 1), "verb"), "pause"),
             "limit 2: resume then pause: %s", it_json_dump(r));
    json_decref(r);
    r = it_request_json(alice, "dlq.admin.audit", "{\"limit\":0}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(r, "error.code") == 400, "limit 0: 400");
    json_decref(r);
    IT_CHECK(it_rec_count(ev) == events, "no other audit event: %zu, %zu expected", it_rec_count(ev),
             events);
    e->passed = true;
}

/*
 * Without store.keep_completed (the default outside the harness) an archive
 * removes the task: its audit note must be written before, never into a
 * freed task (a double free killed the daemon, found by following the
 * README). By id and by filter; the daemon answers afterwards and the
 * records count what was archived.
 */
static void
test_archive_removes(void **state)
{
    static const char *const extra[] = {"store.keep_completed=false", NULL};
    int port;
    struct it_env *e = start_env("audit-archive-removes", extra, &port);
    struct it_recorder *ev;
    size_t seen = 0, events = 0;
    json_t *r;

    assert_non_null(e);
    *state = e;
    ev = it_env_recorder(e, e->nc, "dlq.events.audit", NULL, 1000, true);
    assert_non_null(ev);
    IT_CHECK(natsConnection_Flush(e->nc) == NATS_OK, "flush");
    file_tasks(e, "gone", "g", 4);
    r = it_request_json(e->nc, "dlq.admin.archive", "{\"task_id\":\"g-0\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(r, "archived") == 1, "archive g-0: %s", it_json_dump(r));
    json_decref(r);
    check_one_more(e->nc, ev, &seen, &events, "nats", "archive", "g-0", 1);
    r = it_request_json(e->nc, "dlq.admin.archive", "{\"subject\":\"dlq.failed.gone\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(r, "archived") == 3, "archive of the other three: %s", it_json_dump(r));
    json_decref(r);
    check_one_more(e->nc, ev, &seen, &events, "nats", "archive", NULL, 3);
    r = it_request_json(e->nc, "dlq.admin.stats", NULL, IT_REQUEST_MS);
    IT_CHECK(r && it_json_int(r, "queue_size") == 0, "alive, and the archived tasks are gone: %s",
             it_json_dump(r));
    json_decref(r);
    e->passed = true;
}

/*
 * Over HTTP without credentials configured (loopback): "local"; the same
 * records come back from GET /api/v1/audit.
 */
static void
test_http_local(void **state)
{
    int port;
    struct it_env *e = start_env("audit-http-local", NULL, &port);
    struct it_recorder *ev;
    struct it_http_resp r;
    size_t seen = 0, events = 0;
    int64_t n;
    json_t *j;

    assert_non_null(e);
    *state = e;
    ev = it_env_recorder(e, e->nc, "dlq.events.audit", NULL, 1000, true);
    IT_CHECK(natsConnection_Flush(e->nc) == NATS_OK, "flush");
    file_tasks(e, "billing", "h", 3);
    IT_CHECK(it_http(port, "POST", "/api/v1/retry", NULL, "{\"task_id\":\"h-0\"}", &r) == 0 && r.status == 200,
             "retry over HTTP: %d %s", r.status, r.body ? r.body : "");
    it_http_resp_free(&r);
    check_one_more(e->nc, ev, &seen, &events, "local", "retry", "h-0", 1);
    IT_CHECK(history_has(e->nc, "h-0", "retry by local"), "h-0's history notes the retry");
    IT_CHECK(it_http(port, "POST", "/api/v1/edit", NULL, "{\"task_id\":\"h-0\",\"payload_json\":{\"fixed\":1}}",
                  &r) == 0 && r.status == 200,
             "edit over HTTP: %d %s", r.status, r.body ? r.body : "");
    it_http_resp_free(&r);
    check_one_more(e->nc, ev, &seen, &events, "local", "edit", "h-0", 1);
    IT_CHECK(history_has(e->nc, "h-0", "edit by local"), "h-0's history notes the edit");
    IT_CHECK(it_http(port, "POST", "/api/v1/archive", NULL, "{\"subject\":\"dlq.failed.billing\",\"status\":\"pending\"}", &r) == 0 &&
                 r.status == 200,
             "archive over HTTP: %d %s", r.status, r.body ? r.body : "");
    j = json_loads(r.body, 0, NULL);
    n = it_json_int(j, "archived");
    IT_CHECK(n >= 2, "archived at least h-1 and h-2: %s", r.body);
    json_decref(j);
    it_http_resp_free(&r);
    check_one_more(e->nc, ev, &seen, &events, "local", "archive", NULL, n);
    IT_CHECK(it_http(port, "POST", "/api/v1/pause", NULL, "", &r) == 0 && r.status == 200, "pause over HTTP");
    it_http_resp_free(&r);
    check_one_more(e->nc, ev, &seen, &events, "local", "pause", NULL, 0);

    IT_CHECK(it_http(port, "GET", "/api/v1/audit?limit=2", NULL, NULL, &r) == 0 && r.status == 200,
             "GET /api/v1/audit: %d %s", r.status, r.body ? r.body : "");
    j = json_loads(r.body, 0, NULL);
    IT_CHECK(json_array_size(json_object_get(j, "records")) == 2, "2 records: %s", r.body);
    check_record(json_array_get(json_object_get(j, "records"), 0), "local", "pause", NULL, 0);
    check_record(json_array_get(json_object_get(j, "records"), 1), "local", "archive", NULL, n);
    json_decref(j);
    it_http_resp_free(&r);
    e->passed = true;
}

/*
 * http.auth.users: a yescrypt operator and a sha512 viewer, beside a token.
 * The right password works and is audited as http:<user>; a wrong one or an
 * unknown user gets 401 with a Basic challenge; the viewer reads but gets
 * 403 on retry; two Authorization headers are a 400; the operator token
 * is audited as token:operator.
 */
static void
test_basic_auth(void **state)
{
    char ha[CRYPT_OUTPUT_SIZE], hb[CRYPT_OUTPUT_SIZE], users[2 * CRYPT_OUTPUT_SIZE + 64], hdr[512], two[640];
    int port;
    const char *extra[3] = {users, "http.auth.operator_token=op-secret-1", NULL};
    struct it_env *e;
    struct it_recorder *ev;
    struct it_http_resp r;
    size_t seen = 0, events = 0;

    make_hash("$y$", "alice-pw", ha, sizeof ha);
    make_hash("$6$", "bob-pw", hb, sizeof hb);
    snprintf(users, sizeof users, "http.auth.users=alice:operator:%s,bob:viewer:%s", ha, hb);
    e = start_env("audit-basic", extra, &port);
    assert_non_null(e);
    *state = e;
    ev = it_env_recorder(e, e->nc, "dlq.events.audit", NULL, 1000, true);
    IT_CHECK(natsConnection_Flush(e->nc) == NATS_OK, "flush");
    file_tasks(e, "billing", "a", 3);

    IT_CHECK(it_http(port, "POST", "/api/v1/retry", basic("alice", "alice-pw", hdr, sizeof hdr),
                  "{\"task_id\":\"a-0\"}", &r) == 0 && r.status == 200,
             "alice retries: %d %s", r.status, r.body ? r.body : "");
    it_http_resp_free(&r);
    check_one_more(e->nc, ev, &seen, &events, "http:alice", "retry", "a-0", 1);
    IT_CHECK(history_has(e->nc, "a-0", "retry by http:alice"), "a-0's history names alice");

    IT_CHECK(it_http(port, "POST", "/api/v1/retry", basic("alice", "wrong", hdr, sizeof hdr),
                  "{\"task_id\":\"a-1\"}", &r) == 0 && r.status == 401,
             "a wrong password: 401, not %d", r.status);
    IT_CHECK(strstr(r.head, "WWW-Authenticate: Basic realm=\"dlq-sidecar\"") != NULL,
             "a Basic challenge: %s", r.head);
    it_http_resp_free(&r);
    IT_CHECK(it_http(port, "GET", "/api/v1/stats", basic("mallory", "alice-pw", hdr, sizeof hdr), NULL, &r) == 0 &&
                 r.status == 401,
             "an unknown user: 401, not %d", r.status);
    it_http_resp_free(&r);
    IT_CHECK(it_http(port, "GET", "/api/v1/stats", NULL, NULL, &r) == 0 && r.status == 401,
             "loopback without credentials once users are set: 401, not %d", r.status);
    it_http_resp_free(&r);

    IT_CHECK(it_http(port, "GET", "/api/v1/stats", basic("bob", "bob-pw", hdr, sizeof hdr), NULL, &r) == 0 &&
                 r.status == 200,
             "bob reads: %d", r.status);
    it_http_resp_free(&r);
    IT_CHECK(it_http(port, "POST", "/api/v1/retry", basic("bob", "bob-pw", hdr, sizeof hdr),
                  "{\"task_id\":\"a-1\"}", &r) == 0 && r.status == 403,
             "bob (viewer) may not retry: %d", r.status);
    it_http_resp_free(&r);

    /* two Authorization headers (a viewer's and the operator's token): whose would count? a 400 */
    snprintf(two, sizeof two, "%sAuthorization: Bearer op-secret-1\r\n", basic("bob", "bob-pw", hdr, sizeof hdr));
    IT_CHECK(it_http(port, "POST", "/api/v1/archive", two, "{\"task_id\":\"a-2\"}", &r) == 0 && r.status == 400 &&
                 r.body && strstr(r.body, "\"code\":400") && strstr(r.body, "Authorization"),
             "two Authorization headers: 400, not %d %s", r.status, r.body ? r.body : "");
    it_http_resp_free(&r);

    IT_CHECK(it_http(port, "POST", "/api/v1/archive", "Authorization: Bearer op-secret-1\r\n",
                  "{\"task_id\":\"a-2\"}", &r) == 0 && r.status == 200,
             "the operator token archives: %d %s", r.status, r.body ? r.body : "");
    it_http_resp_free(&r);
    check_one_more(e->nc, ev, &seen, &events, "token:operator", "archive", "a-2", 1);
    IT_CHECK(it_rec_count(ev) == events, "refused requests left no audit event");
    e->passed = true;
}

/*
 * start_fails() starts a daemon with the one flag and tells whether it
 * stops with a non-zero exit and a log line that names http.auth.users and
 * holds want.
 */
static bool
start_fails(const char *flag, const char *want)
{
    const char *tmp = getenv("TMPDIR");
    const char *extra[] = {flag, NULL};
    char dir[IT_PATH_MAX], line[1024];
    struct it_daemon d;
    bool named = false;
    FILE *f;
    int64_t until = sc_now_mono_ms() + IT_WAIT_MS;

    snprintf(dir, sizeof dir, "%s/dlq-it-audit-bad-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    IT_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    IT_CHECK(it_daemon_start(&d, dir, "nats://127.0.0.1:1", extra) == 0, "start %s", flag);
    while (it_daemon_alive(&d) && sc_now_mono_ms() < until)
        it_sleep_ms(50);
    IT_CHECK(!it_daemon_alive(&d), "%s: the daemon stops", flag);
    IT_CHECK(d.exit_status != 0, "%s: a non-zero exit (%d)", flag, d.exit_status);
    f = fopen(d.log, "r");
    IT_CHECK(f != NULL, "the log %s", d.log);
    while (fgets(line, sizeof line, f))
        if (strstr(line, "http.auth.users") && strstr(line, want))
            named = true;
    fclose(f);
    if (!named)
        it_print_tail("daemon log", d.log, 20);
    return named;
}

/* A bad http.auth.users entry, or a user given twice, stops the start with a message naming the key. */
static void
test_bad_users(void **state)
{
    static const char *const bad[] = {
        "http.auth.users=alice:admin:$6$abc$def",   /* no such role */
        "http.auth.users=alice:operator:plaintext", /* not a crypt(3) hash */
        "http.auth.users=:viewer:$6$abc$def",       /* no name */
    };
    char ha[CRYPT_OUTPUT_SIZE], twice[2 * CRYPT_OUTPUT_SIZE + 64];

    (void)state;
    /* a user given twice (with a role each): a start-up error naming the key and the user */
    make_hash("$6$", "pw", ha, sizeof ha);
    snprintf(twice, sizeof twice, "http.auth.users=alice:operator:%s,alice:viewer:%s", ha, ha);
    IT_CHECK(start_fails(twice, "the user 'alice' is given twice"), "a user twice is refused at start");
    for (size_t i = 0; i < SC_ARRAY_LEN(bad); i++)
        IT_CHECK(start_fails(bad[i], "name:role:hash"), "%s: the message names the key and what it takes", bad[i]);
}

/* ---- cluster ------------------------------------------------------------------------------------- */

struct cl_world {
    char dir[IT_PATH_MAX];
    struct it_cluster cl;
    struct it_daemon sc[2];
    natsConnection *nc;
    bool passed;
};

static int
cl_teardown(void **state)
{
    struct cl_world *w = *state;

    if (!w)
        return 0;
    for (int i = 0; i < 2; i++) {
        if (!w->passed)
            it_print_tail("sidecar log", w->sc[i].log, 40);
        if (w->sc[i].pid)
            it_daemon_stop(&w->sc[i]);
    }
    if (w->nc)
        natsConnection_Destroy(w->nc);
    it_cluster_stop(&w->cl);
    free(w);
    return 0;
}

/* The audit records of member i alone: its own ring, asked on the members' subject with a direct inbox. */
static size_t
member_records(struct cl_world *w, const char *member_id, json_t **records)
{
    json_t *all[4] = {0};
    size_t n = it_gather_json(w->nc, "dlq.cluster.admin.audit", "{\"limit\":100}", 2000, all, 4), k = 0;

    *records = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!*records && it_json_str(all[i], "member.id") && !strcmp(it_json_str(all[i], "member.id"), member_id)) {
            *records = json_incref(json_object_get(json_object_get(all[i], "reply"), "records"));
            k = json_array_size(*records);
        }
        json_decref(all[i]);
    }
    return k;
}

/*
 * Two members: a filter archive over NATS reaches both, each changes its
 * share and notes its tasks; the member that took the request records once
 * with the sum, the other records nothing (its own ring stays empty). A
 * pause over s0's HTTP listener is recorded on s0 alone. The merged audit
 * verb returns both records, newest first.
 */
static void
test_cluster(void **state)
{
    struct cl_world *w = calloc(1, sizeof *w);
    const char *tmp = getenv("TMPDIR");
    int port = it_free_port();
    struct it_http_resp hr;
    json_t *a = NULL, *r0 = NULL, *r1 = NULL;
    size_t n0, n1;

    assert_non_null(w);
    *state = w;
    snprintf(w->dir, sizeof w->dir, "%s/dlq-it-audit-cluster-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(w->dir));
    it_cluster_two_members(&w->cl, w->sc, &w->nc, w->dir, "it-audit-cluster", port, NULL);
    it_cluster_seed_tasks(w->nc, 12);

    a = it_request_json(w->nc, "dlq.admin.archive", "{\"subject\":\"dlq.failed.orders\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_int(a, "archived") == 12 && it_json_int(a, "members_answered") == 2,
             "both members archive their share: %s", it_json_dump(a));
    json_decref(a);
    /* each member noted the tasks it archived, naming who asked (the fan-out carries it) */
    for (int i = 0; i < 12; i++) {
        char id[16];
        snprintf(id, sizeof id, "c-%02d", i);
        IT_CHECK(history_has(w->nc, id, "archive by nats"), "%s's history notes the archive", id);
    }
    n0 = member_records(w, "s0", &r0);
    n1 = member_records(w, "s1", &r1);
    IT_CHECK(n0 + n1 == 1, "one record in the cluster, on the member that took the request: s0 %zu, s1 %zu",
             n0, n1);
    check_record(json_array_get(n0 ? r0 : r1, 0), "nats", "archive", NULL, 12);
    json_decref(r0);
    json_decref(r1);

    /* over HTTP to s0: s0 records, s1 (asked through the fan-out) does not */
    IT_CHECK(it_http(port, "POST", "/api/v1/pause", NULL, "", &hr) == 0 && hr.status == 200,
             "pause over s0's HTTP: %d %s", hr.status, hr.body ? hr.body : "");
    it_http_resp_free(&hr);
    IT_CHECK(member_records(w, "s0", &r0) == n0 + 1, "s0 recorded the HTTP pause");
    check_record(json_array_get(r0, 0), "local", "pause", NULL, 0);
    IT_CHECK(member_records(w, "s1", &r1) == n1, "s1 recorded nothing for it");
    json_decref(r0);
    json_decref(r1);
    a = it_request_json(w->nc, "dlq.admin.audit", NULL, IT_REQUEST_MS);
    IT_CHECK(json_array_size(json_object_get(a, "records")) == 2 &&
                 !strcmp(it_json_str(json_array_get(json_object_get(a, "records"), 0), "verb"), "pause"),
             "the merged audit: two records, newest first: %s", it_json_dump(a));
    json_decref(a);
    w->passed = true;
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest core[] = {
        cmocka_unit_test_teardown(test_nats_verbs, it_teardown),
        cmocka_unit_test_teardown(test_archive_removes, it_teardown),
        cmocka_unit_test_teardown(test_http_local, it_teardown),
        cmocka_unit_test_teardown(test_basic_auth, it_teardown),
        cmocka_unit_test(test_bad_users),
    };
    const struct CMUnitTest cluster[] = {
        cmocka_unit_test_teardown(test_cluster, cl_teardown),
    };

    if (argc > 1 && !strcmp(argv[1], "cluster"))
        return cmocka_run_group_tests_name("integration_audit_cluster", cluster, NULL, NULL);
    return cmocka_run_group_tests_name("integration_audit", core, NULL, NULL);
}
