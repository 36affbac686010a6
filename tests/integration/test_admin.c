/* test_admin.c - integration: the admin API (cursor, read-only reads, clear, retry, redrive), service discovery, dlqctl and the real nats CLI (the authorization example: test_auth.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

extern char **environ;

#ifndef DLQCTL_BIN
#error "DLQCTL_BIN must name the dlqctl binary (set by tests/integration/CMakeLists.txt)"
#endif
#ifndef NATS_CLI_BIN
#error "NATS_CLI_BIN must name the nats CLI (set by tests/integration/CMakeLists.txt)"
#endif

#define RUN_TIMEOUT_MS 30000
#define OUT_MAX (16 * 1024 * 1024)

/* ---- helpers ---------------------------------------------------------------------------------- */

/*
 * run() executes argv (argv[0] is a path) with stdin from /dev/null and
 * XDG_CONFIG_HOME/HOME set to dir (so that no nats CLI context of the
 * machine applies), capturing stdout into out and stderr into err (both
 * reset first). The child dies with the test (PR_SET_PDEATHSIG) and is
 * killed after timeout_ms. Returns its exit status (128+signal when killed
 * by one), or -1 when it could not run or timed out.
 */
static int
run(const char *dir, char *const argv[], struct sc_buf *out, struct sc_buf *err, int timeout_ms)
{
    int po[2], pe[2];
    pid_t parent = getpid(), pid;

    sc_buf_reset(out);
    sc_buf_reset(err);
    /* The child's environment is built here: between fork and exec only async-signal-safe calls. */
    char xdg[IT_PATH_MAX + 32], home[IT_PATH_MAX + 8];
    snprintf(xdg, sizeof xdg, "XDG_CONFIG_HOME=%s", dir);
    snprintf(home, sizeof home, "HOME=%s", dir);
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = calloc(ne + 3, sizeof *envp);
    if (!envp)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        static const char *const drop[] = {"NATS_URL=", "NATS_CREDS=", "NATS_CONTEXT=",
                                           "XDG_CONFIG_HOME=", "HOME="};
        bool keep = true;
        for (size_t d = 0; d < SC_ARRAY_LEN(drop); d++)
            if (strncmp(environ[i], drop[d], strlen(drop[d])) == 0)
                keep = false;
        if (keep)
            envp[k++] = environ[i];
    }
    envp[k++] = xdg;
    envp[k++] = home;
    envp[k] = NULL;
    if (pipe(po) < 0 || pipe(pe) < 0) {
        free(envp);
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        free(envp);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        execve(argv[0], argv, envp);
        static const char msg[] = "exec failed\n";
        if (write(2, msg, sizeof msg - 1) < 0)
            _exit(127);
        _exit(127);
    }
    free(envp);
    close(po[1]);
    close(pe[1]);
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2;
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    bool timed_out = false;
    while (open_fds > 0) {
        int64_t left = deadline - sc_now_mono_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        if (poll(fds, 2, (int)left) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[8192];
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sc_buf_append(i == 0 ? out : err, buf, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    if (timed_out)
        kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!out->data)
        sc_buf_append(out, "", 0);
    if (!err->data)
        sc_buf_append(err, "", 0);
    if (timed_out) {
        fprintf(stderr, "run: %s timed out after %d ms\n", argv[0], timeout_ms);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A captured command: its output buffers and the last exit status. */
struct cmd {
    const char *dir;
    struct sc_buf out, err;
    int status;
};

static void
cmd_init(struct cmd *c, const char *dir)
{
    c->dir = dir;
    sc_buf_init(&c->out, OUT_MAX);
    sc_buf_init(&c->err, OUT_MAX);
    c->status = -1;
}

static void
cmd_destroy(struct cmd *c)
{
    sc_buf_destroy(&c->out);
    sc_buf_destroy(&c->err);
}

/*
 * cmd_run() runs bin with the NULL-terminated arguments that follow and
 * returns its exit status (also in c->status); every run is echoed to
 * stderr so that a failure shows what was run and what it printed.
 */
static int
cmd_run(struct cmd *c, const char *bin, ...)
{
    char *argv[64];
    int n = 0;
    va_list ap;

    argv[n++] = (char *)bin;
    va_start(ap, bin);
    for (const char *a; n < 63 && (a = va_arg(ap, const char *)) != NULL;)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    c->status = run(c->dir, argv, &c->out, &c->err, RUN_TIMEOUT_MS);
    fprintf(stderr, "  $");
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %s", i == 0 ? (strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i]) : argv[i]);
    fprintf(stderr, "   -> exit %d\n", c->status);
    return c->status;
}

/* cmd_json() parses the captured stdout as JSON (NULL with a message when it is not). */
static json_t *
cmd_json(struct cmd *c)
{
    json_error_t jerr;
    json_t *j = json_loadb(c->out.data, c->out.len, 0, &jerr);
    if (!j)
        fprintf(stderr, "not JSON (%s): %.*s\nstderr: %.*s\n", jerr.text, (int)c->out.len,
                c->out.data, (int)c->err.len, c->err.data);
    return j;
}

/* The stats keys DESIGN section 8 names. */
static const char *const stats_keys[] = {
    "queue_size", "max_size", "utilization_percent", "status_breakdown.pending",
    "status_breakdown.parked", "status_breakdown.retrying", "status_breakdown.exhausted",
    "error_categories", "retry_policies", "lifetime_stats.enqueued",
    "lifetime_stats.retry_success", "lifetime_stats.retry_failed", "lifetime_stats.deferred",
    "lifetime_stats.exhausted", "lifetime_stats.manual_retries", "lifetime_stats.archived",
    "lifetime_stats.cleared", "lifetime_stats.invalid", "retry_processor.enabled",
    "retry_processor.scheduled", "retry_processor.next_due_at", "persistence.backend",
    "persistence.state", "persistence.queued_writes", "persistence.last_error", "uptime_s",
    "version", NULL,
};

/* check_stats_keys() asserts every key of stats_keys in st. */
static void
check_stats_keys(const json_t *st)
{
    char *dump = it_json_dump(st);
    for (size_t i = 0; stats_keys[i]; i++)
        IT_CHECK(it_json_get(st, stats_keys[i]) != NULL, "stats lacks %s: %s", stats_keys[i], dump);
    free(dump);
}

/* request_raw() sends body on subject and returns the reply message (caller destroys) or NULL. */
static natsMsg *
request_raw(natsConnection *nc, const char *subject, const char *body, int timeout_ms)
{
    natsMsg *m = NULL;
    if (natsConnection_Request(&m, nc, subject, body, (int)strlen(body), timeout_ms) != NATS_OK)
        return NULL;
    return m;
}

/* admin() asks dlq.admin.<verb> with body (JSON text) and returns the parsed reply or NULL. */
static json_t *
admin(natsConnection *nc, const char *verb, const char *body)
{
    char subj[64];
    snprintf(subj, sizeof subj, "dlq.admin.%s", verb);
    return it_request_json(nc, subj, body, IT_REQUEST_MS);
}

/* dump_sorted() returns a malloc'ed canonical dump (sorted keys) for whole-reply comparisons. */
static char *
dump_sorted(const json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    return s ? s : strdup("(null)");
}

/* stats_snapshot() returns stats without uptime_s and last_hour (the keys that move by themselves: a minute passing shifts last_hour), dumped. */
static char *
stats_snapshot(natsConnection *nc)
{
    json_t *st = it_admin_stats(nc);
    if (st)
        json_object_del(st, "uptime_s");
    if (st)
        json_object_del(st, "last_hour");
    char *s = dump_sorted(st);
    json_decref(st);
    return s;
}

/* wait_stat() polls stats until path equals want or timeout_ms pass; returns the last value. */
static int64_t
wait_stat(natsConnection *nc, const char *path, int64_t want, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms, v = INT64_MIN;
    for (;;) {
        json_t *st = it_admin_stats(nc);
        v = it_json_int(st, path);
        json_decref(st);
        if (v == want || sc_now_mono_ms() >= deadline)
            return v;
        it_sleep_ms(50);
    }
}

/*
 * publish_tasks() publishes n failure envelopes "<prefix>-<i>" (i from
 * first) on dlq.failed.<service> as fast as the client goes, all with the
 * same failed_at when failed_at_ms is non-zero, then flushes. Returns 0 or -1.
 */
static int
publish_tasks(natsConnection *nc, const char *service, const char *prefix, int first, int n,
              const char *error, int max_retries, int64_t failed_at_ms)
{
    char subj[128], id[128];
    struct it_envelope env;
    snprintf(subj, sizeof subj, "dlq.failed.%s", service);
    for (int i = first; i < first + n; i++) {
        it_envelope_init(&env);
        snprintf(id, sizeof id, "%s-%05d", prefix, i);
        env.task_id = id;
        env.error = error;
        env.max_retries = max_retries;
        env.failed_at_ms = failed_at_ms;
        if (it_publish_envelope(nc, subj, &env) != 0)
            return -1;
    }
    return natsConnection_FlushTimeout(nc, IT_WAIT_MS) == NATS_OK ? 0 : -1;
}

/* request_envelope_ok() sends one failure envelope as a request and asserts the acknowledgement. */
static void
request_envelope_ok(natsConnection *nc, const char *service, const char *id, const char *error,
                    int max_retries)
{
    char subj[128];
    struct it_envelope env;
    it_envelope_init(&env);
    env.task_id = id;
    env.error = error;
    env.max_retries = max_retries;
    snprintf(subj, sizeof subj, "dlq.failed.%s", service);
    json_t *ack = it_request_envelope(nc, subj, &env);
    char *dump = it_json_dump(ack);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest of %s: %s", id, dump);
    free(dump);
    json_decref(ack);
}

/* ---- 1. the real nats CLI and service discovery ----------------------------------------------- */

/*
 * An operator with only the nats CLI (v0.5.0) does every admin action of
 * the README: `nats request dlq.admin.stats ''` is JSON with every key of
 * DESIGN section 8; `nats micro ls/info/stats` show dlq-sidecar with one
 * endpoint per verb and their request and error counts. $SRV.PING/INFO/
 * STATS also answer in their .<name> and .<name>.<id> forms.
 */
static void
test_nats_cli(void **state)
{
    struct it_env *e = it_env_start("nats-cli", NULL);
    assert_non_null(e);
    *state = e;
    IT_CHECK(access(NATS_CLI_BIN, X_OK) == 0,
             "the nats CLI is missing at %s: run scripts/install-deps.sh (go install "
             "github.com/nats-io/natscli/nats@v0.5.0 into .deps/bin)", NATS_CLI_BIN);
    request_envelope_ok(e->nc, "orders", "cli-1", "400 Bad Request: email invalid", -1);
    request_envelope_ok(e->nc, "orders", "cli-2", "connection refused", 0);
    request_envelope_ok(e->nc, "billing", "cli-3", "403 Forbidden", -1);

    struct cmd c;
    cmd_init(&c, e->dir);
    const char *url = e->srv.url;
#define NATS(...) cmd_run(&c, NATS_CLI_BIN, "--no-context", "-s", url, __VA_ARGS__, (char *)NULL)

    /* Every verb with `nats request ... --raw`, as the README shows them. */
    IT_CHECK(NATS("request", "dlq.admin.stats", "", "--raw") == 0, "stderr: %s", c.err.data);
    json_t *st = cmd_json(&c);
    assert_non_null(st);
    check_stats_keys(st);
    IT_CHECK(it_json_int(st, "queue_size") == 3, "queue_size: want 3, got %lld",
             (long long)it_json_int(st, "queue_size"));
    json_decref(st);

    IT_CHECK(NATS("request", "dlq.admin.health", "", "--raw") == 0, "stderr: %s", c.err.data);
    json_t *j = cmd_json(&c);
    IT_CHECK(j && it_json_str(j, "status") && strcmp(it_json_str(j, "status"), "ok") == 0 &&
                 it_json_str(j, "nats") && it_json_str(j, "persistence"),
             "health: %s", c.out.data);
    json_decref(j);

    IT_CHECK(NATS("request", "dlq.admin.list", "{\"status\":\"parked\",\"limit\":10}", "--raw") == 0,
             "stderr: %s", c.err.data);
    j = cmd_json(&c);
    IT_CHECK(j && json_array_size(json_object_get(j, "tasks")) == 2 &&
                 it_json_int(j, "total") == 2 && json_is_null(json_object_get(j, "next_cursor")),
             "list parked: %s", c.out.data);
    json_decref(j);

    IT_CHECK(NATS("request", "dlq.admin.get", "{\"task_id\":\"cli-1\"}", "--raw") == 0, "stderr: %s",
             c.err.data);
    j = cmd_json(&c);
    IT_CHECK(j && it_json_str(j, "task_id") && strcmp(it_json_str(j, "task_id"), "cli-1") == 0 &&
                 json_is_object(json_object_get(j, "task")) && json_object_get(j, "history"),
             "get: %s", c.out.data);
    json_decref(j);

    IT_CHECK(NATS("request", "dlq.admin.classify",
                  "{\"error\":\"ECONNRESET while calling payments\"}", "--raw") == 0,
             "stderr: %s", c.err.data);
    j = cmd_json(&c);
    IT_CHECK(j && it_json_str(j, "category") && strcmp(it_json_str(j, "category"), "network") == 0 &&
                 json_is_array(json_object_get(j, "delays_ms")),
             "classify: %s", c.out.data);
    json_decref(j);

    IT_CHECK(NATS("request", "dlq.admin.pause", "", "--raw") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "\"paused\":true"), "pause: %s", c.out.data);
    IT_CHECK(NATS("request", "dlq.admin.resume", "", "--raw") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "\"paused\":false"), "resume: %s", c.out.data);

    IT_CHECK(NATS("request", "dlq.admin.clear", "{\"subject\":\"dlq.failed.billing\"}", "--raw") == 0,
             "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "\"code\":400") && strstr(c.out.data, "1 task"),
             "clear without confirm: want a 400 that counts 1 task, got %s", c.out.data);
    IT_CHECK(NATS("request", "dlq.admin.clear",
                  "{\"subject\":\"dlq.failed.billing\",\"confirm\":true}", "--raw") == 0,
             "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "\"cleared\":1"), "clear: %s", c.out.data);

    IT_CHECK(NATS("request", "dlq.admin.archive", "{\"task_id\":\"cli-1\"}", "--raw") == 0,
             "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "\"archived\":1"), "archive: %s", c.out.data);

    IT_CHECK(NATS("request", "dlq.admin.retry", "{\"task_id\":\"cli-2\"}", "--raw") == 0,
             "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "\"scheduled\":1"), "retry: %s", c.out.data);

    /* A 404 (counted as an endpoint error below); the CLI prints the reply and its headers. */
    IT_CHECK(NATS("request", "dlq.admin.get", "{\"task_id\":\"no-such\"}") == 0, "stderr: %s",
             c.err.data);
    IT_CHECK(strstr(c.out.data, "Nats-Service-Error-Code: 404") || strstr(c.err.data, "Nats-Service-Error-Code: 404"),
             "a 404 carries Nats-Service-Error-Code: %s %s", c.out.data, c.err.data);

    /* Service discovery with the CLI. */
    IT_CHECK(NATS("micro", "ls") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "dlq-sidecar") && strstr(c.out.data, DLQ_VERSION),
             "nats micro ls does not show dlq-sidecar: %s", c.out.data);
    IT_CHECK(NATS("micro", "ls", "--json") == 0, "stderr: %s", c.err.data);
    json_t *ls = cmd_json(&c);
    IT_CHECK(json_is_array(ls) && json_array_size(ls) == 1 &&
                 strcmp(it_json_str(json_array_get(ls, 0), "name"), "dlq-sidecar") == 0,
             "nats micro ls --json: %s", c.out.data);
    char id[64];
    snprintf(id, sizeof id, "%s", it_json_str(json_array_get(ls, 0), "id"));
    json_decref(ls);

    IT_CHECK(NATS("micro", "info", "dlq-sidecar") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "dlq.admin.stats") && strstr(c.out.data, "dlq.admin.clear"),
             "nats micro info lacks the endpoints: %s", c.out.data);
    IT_CHECK(NATS("micro", "info", "dlq-sidecar", "--json") == 0, "stderr: %s", c.err.data);
    j = cmd_json(&c);
    assert_non_null(j);
    static const char *const verbs[] = {"health", "stats", "list", "get", "retry",
                                        "archive", "clear", "classify", "pause", "resume",
                                        "groups", "edit", "audit"};
    /* What another sidecar reads to tell a duplicate on its prefix (peers.c); strings, as ADR-32 says. */
    {
        static const char *const want[][2] = {
            {"subjects.prefix", "dlq"}, {"ingest.mode", "core"}, {"cluster", "false"}};
        json_t *md = json_object_get(json_object_get(j, "info"), "metadata");
        for (size_t i = 0; i < SC_ARRAY_LEN(want); i++) {
            const char *v = json_string_value(json_object_get(md, want[i][0]));
            IT_CHECK(v && strcmp(v, want[i][1]) == 0, "nats micro info metadata %s: want %s: %s",
                     want[i][0], want[i][1], c.out.data);
        }
        const char *host = json_string_value(json_object_get(md, "host"));
        IT_CHECK(host && *host, "nats micro info metadata host: %s", c.out.data);
    }
    json_t *eps = json_object_get(json_object_get(j, "info"), "endpoints");
    IT_CHECK(json_array_size(eps) == SC_ARRAY_LEN(verbs), "want %zu endpoints: %s", SC_ARRAY_LEN(verbs),
             c.out.data);
    for (size_t i = 0; i < SC_ARRAY_LEN(verbs); i++) {
        char subj[64];
        bool found = false;
        size_t k;
        json_t *ep;
        snprintf(subj, sizeof subj, "dlq.admin.%s", verbs[i]);
        json_array_foreach(eps, k, ep) {
            if (strcmp(it_json_str(ep, "name"), verbs[i]) == 0 && it_json_str(ep, "subject") &&
                strcmp(it_json_str(ep, "subject"), subj) == 0 && json_object_get(ep, "queue_group"))
                found = true;
        }
        IT_CHECK(found, "no endpoint %s on %s: %s", verbs[i], subj, c.out.data);
    }
    json_decref(j);

    IT_CHECK(NATS("micro", "stats", "dlq-sidecar", "--json") == 0, "stderr: %s", c.err.data);
    j = cmd_json(&c);
    IT_CHECK(json_is_array(j) && json_array_size(j) == 1, "stats: %s", c.out.data);
    {
        size_t k;
        json_t *ep;
        int64_t get_req = -1, get_err = -1, stats_req = -1, clear_err = -1;
        json_array_foreach(json_object_get(json_array_get(j, 0), "endpoints"), k, ep) {
            const char *n = it_json_str(ep, "name");
            if (strcmp(n, "get") == 0) {
                get_req = it_json_int(ep, "num_requests");
                get_err = it_json_int(ep, "num_errors");
            } else if (strcmp(n, "stats") == 0) {
                stats_req = it_json_int(ep, "num_requests");
            } else if (strcmp(n, "clear") == 0) {
                clear_err = it_json_int(ep, "num_errors");
            }
        }
        IT_CHECK(get_req == 2 && get_err == 1 && stats_req >= 1 && clear_err == 1,
                 "endpoint counts: want get 2 requests 1 error, stats >= 1, clear 1 error: %s",
                 c.out.data);
    }
    json_decref(j);
    IT_CHECK(NATS("micro", "stats", "dlq-sidecar") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "classify"), "nats micro stats table: %s", c.out.data);

    /* The three forms of each verb with nats.c: all answer with this instance's id. */
    static const char *const srv[] = {"PING", "INFO", "STATS"};
    static const char *const types[] = {"io.nats.micro.v1.ping_response",
                                        "io.nats.micro.v1.info_response",
                                        "io.nats.micro.v1.stats_response"};
    for (int v = 0; v < 3; v++) {
        for (int form = 0; form < 3; form++) {
            char subj[160];
            if (form == 0)
                snprintf(subj, sizeof subj, "$SRV.%s", srv[v]);
            else if (form == 1)
                snprintf(subj, sizeof subj, "$SRV.%s.dlq-sidecar", srv[v]);
            else
                snprintf(subj, sizeof subj, "$SRV.%s.dlq-sidecar.%s", srv[v], id);
            json_t *r = it_request_json(e->nc, subj, "", IT_REQUEST_MS);
            char *dump = it_json_dump(r);
            IT_CHECK(r && it_json_str(r, "type") && strcmp(it_json_str(r, "type"), types[v]) == 0 &&
                         strcmp(it_json_str(r, "id"), id) == 0 &&
                         strcmp(it_json_str(r, "name"), "dlq-sidecar") == 0,
                     "%s: %s", subj, dump);
            free(dump);
            json_decref(r);
        }
    }
    /* Another service's name or another id: nobody answers. */
    natsMsg *m = request_raw(e->nc, "$SRV.PING.dlq-sidecar.NOTTHISONE", "", 500);
    IT_CHECK(m == NULL, "an id that is not ours must not answer");
    natsMsg_Destroy(m);
#undef NATS
    cmd_destroy(&c);
    e->passed = true;
}

/* ---- 2. the cursor ---------------------------------------------------------------------------- */

/*
 * 2,500 tasks failed within the same millisecond (one failed_at, published
 * as fast as the client goes, so most share their receipt millisecond too)
 * are listed with limit 7: every task exactly once, none skipped. Tasks
 * that arrive while paging come after the cursor and are listed once too.
 */
static void
test_cursor_same_millisecond(void **state)
{
    struct it_env *e = it_env_start("cursor", NULL);
    assert_non_null(e);
    *state = e;
    enum { N = 2500, LATE = 30, LIMIT = 7 };
    int64_t failed_at = sc_now_wall_ms() - 60000;
    assert_int_equal(publish_tasks(e->nc, "orders", "same", 0, N, "422 validation failed", -1,
                                   failed_at), 0);
    IT_CHECK(wait_stat(e->nc, "status_breakdown.parked", N, IT_WAIT_MS) == N,
             "want %d parked tasks", N);
    json_t *t = it_admin_get(e->nc, "same-00000");
    json_t *t2 = it_admin_get(e->nc, "same-02499");
    IT_CHECK(it_json_str(t, "first_failed_at") && it_json_str(t2, "first_failed_at") &&
                 strcmp(it_json_str(t, "first_failed_at"), it_json_str(t2, "first_failed_at")) == 0,
             "every task shares one failure time");
    json_decref(t);
    json_decref(t2);

    int *seen = calloc(N + LATE, sizeof *seen);
    assert_non_null(seen);
    char cursor[64] = "";
    int pages = 0, listed = 0;
    size_t same_created = 0;
    char prev_created[40] = "";
    for (;;) {
        char body[160];
        if (*cursor)
            snprintf(body, sizeof body, "{\"limit\":%d,\"cursor\":\"%s\"}", LIMIT, cursor);
        else
            snprintf(body, sizeof body, "{\"limit\":%d}", LIMIT);
        json_t *page = admin(e->nc, "list", body);
        assert_non_null(page);
        json_t *tasks = json_object_get(page, "tasks");
        int want_total = pages >= 50 ? N + LATE : N;
        IT_CHECK(json_array_size(tasks) <= LIMIT && it_json_int(page, "total") == want_total,
                 "page %d: %zu tasks, total %lld (want <= %d and %d)", pages,
                 json_array_size(tasks), (long long)it_json_int(page, "total"), LIMIT, want_total);
        size_t i;
        json_t *task;
        json_array_foreach(tasks, i, task) {
            const char *id = it_json_str(task, "task_id");
            const char *created = it_json_str(task, "created_at");
            int k = -1;
            if (strncmp(id, "same-", 5) == 0)
                k = atoi(id + 5);
            else if (strncmp(id, "late-", 5) == 0)
                k = N + atoi(id + 5);
            IT_CHECK(k >= 0 && k < N + LATE, "unexpected task %s", id);
            seen[k]++;
            IT_CHECK(seen[k] == 1, "task %s listed twice (page %d)", id, pages);
            if (created && strcmp(created, prev_created) == 0)
                same_created++;
            snprintf(prev_created, sizeof prev_created, "%s", created ? created : "");
            listed++;
        }
        pages++;
        if (pages == 50) {
            /* New failures while an operator pages: they come after the cursor. */
            assert_int_equal(publish_tasks(e->nc, "orders", "late", 0, LATE, "422 validation failed",
                                           -1, failed_at), 0);
            IT_CHECK(wait_stat(e->nc, "status_breakdown.parked", N + LATE, IT_WAIT_MS) == N + LATE,
                     "the late tasks arrive");
        }
        json_t *next = json_object_get(page, "next_cursor");
        if (json_is_null(next)) {
            json_decref(page);
            break;
        }
        IT_CHECK(json_is_string(next), "next_cursor: a string or null");
        snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        json_decref(page);
        IT_CHECK(pages < 2 * (N + LATE), "the cursor never ends");
    }
    for (int k = 0; k < N + LATE; k++)
        IT_CHECK(seen[k] == 1, "task %d listed %d times, want once", k, seen[k]);
    IT_CHECK(listed == N + LATE, "listed %d, want %d", listed, N + LATE);
    IT_CHECK(pages == (N + LATE + LIMIT - 1) / LIMIT, "pages: %d", pages);
    fprintf(stderr, "[cursor] %d pages; %zu neighbours shared their created_at millisecond\n", pages,
            same_created);
    /* A cursor that is not one: 400. */
    json_t *bad = admin(e->nc, "list", "{\"cursor\":\"12abc\"}");
    IT_CHECK(it_json_int(bad, "error.code") == 400, "a bad cursor is a 400");
    json_decref(bad);
    free(seen);
    e->passed = true;
}

/* ---- 3. reads change nothing; clear without confirm changes nothing ---------------------------- */

/* snapshot_gets() fills gets[i] with the canonical dump of get for each id. */
static void
snapshot_gets(natsConnection *nc, const char *const *ids, size_t n, char **gets)
{
    for (size_t i = 0; i < n; i++) {
        json_t *g = it_admin_get(nc, ids[i]);
        gets[i] = dump_sorted(g);
        json_decref(g);
    }
}

/*
 * A mix of parked, exhausted and scheduled (an hour away) tasks: get and
 * list ten times each (and stats) leave every reply byte for byte the same,
 * task versions included; clear without confirm is a 400 that counts what
 * it would remove, with the service-error headers, and changes nothing;
 * nor does a clear whose filter key is misspelled.
 */
static void
test_reads_change_nothing(void **state)
{
    static const char *const extra[] = {"backoff.exp_base_ms=3600000", NULL};
    struct it_env *e = it_env_start("reads", extra);
    assert_non_null(e);
    *state = e;
    static const char *const ids[] = {"r-parked-1", "r-parked-2", "r-exhausted-1",
                                      "r-exhausted-2", "r-sched-1", "r-sched-2"};
    request_envelope_ok(e->nc, "orders", ids[0], "400 Bad Request", -1);
    request_envelope_ok(e->nc, "orders", ids[1], "schema invalid", -1);
    request_envelope_ok(e->nc, "billing", ids[2], "connection refused", 0);
    request_envelope_ok(e->nc, "billing", ids[3], "503 Service Unavailable", 0);
    request_envelope_ok(e->nc, "orders", ids[4], "connection reset by peer", -1);
    request_envelope_ok(e->nc, "orders", ids[5], "429 Too Many Requests", -1);
    enum { NIDS = 6 };

    char *gets0[NIDS], *gets1[NIDS];
    snapshot_gets(e->nc, ids, NIDS, gets0);
    for (size_t i = 0; i < NIDS; i++)
        IT_CHECK(strstr(gets0[i], "\"task_id\""), "get %s: %s", ids[i], gets0[i]);
    json_t *l0 = admin(e->nc, "list", "{\"limit\":1000}");
    char *list0 = dump_sorted(l0);
    json_decref(l0);
    json_t *lf0 = admin(e->nc, "list", "{\"status\":\"pending\",\"category\":\"network\",\"limit\":1}");
    char *listf0 = dump_sorted(lf0);
    json_decref(lf0);
    char *stats0 = stats_snapshot(e->nc);
    IT_CHECK(strstr(stats0, "\"queue_size\":6"), "stats: %s", stats0);

    for (int round = 0; round < 10; round++) {
        snapshot_gets(e->nc, ids, NIDS, gets1);
        for (size_t i = 0; i < NIDS; i++) {
            IT_CHECK(strcmp(gets0[i], gets1[i]) == 0, "get %s changed in round %d:\n  %s\n  %s",
                     ids[i], round, gets0[i], gets1[i]);
            free(gets1[i]);
        }
        json_t *l = admin(e->nc, "list", "{\"limit\":1000}");
        char *s = dump_sorted(l);
        IT_CHECK(strcmp(s, list0) == 0, "list changed in round %d:\n  %s\n  %s", round, list0, s);
        free(s);
        json_decref(l);
        l = admin(e->nc, "list", "{\"status\":\"pending\",\"category\":\"network\",\"limit\":1}");
        s = dump_sorted(l);
        IT_CHECK(strcmp(s, listf0) == 0, "filtered list changed in round %d", round);
        free(s);
        json_decref(l);
        json_t *cl = admin(e->nc, "classify", "{\"error\":\"disk full\"}");
        json_decref(cl);
    }
    char *stats1 = stats_snapshot(e->nc);
    IT_CHECK(strcmp(stats0, stats1) == 0, "stats changed after reads:\n  %s\n  %s", stats0, stats1);
    free(stats1);

    /* clear without confirm: 400 with the count, the headers, nothing changed. */
    natsMsg *m = request_raw(e->nc, "dlq.admin.clear", "{\"subject\":\"dlq.failed.orders\"}",
                             IT_REQUEST_MS);
    assert_non_null(m);
    const char *code = NULL, *text = NULL;
    IT_CHECK(natsMsgHeader_Get(m, "Nats-Service-Error-Code", &code) == NATS_OK && code &&
                 strcmp(code, "400") == 0,
             "Nats-Service-Error-Code: want 400, got %s", code ? code : "(none)");
    IT_CHECK(natsMsgHeader_Get(m, "Nats-Service-Error", &text) == NATS_OK && text &&
                 strstr(text, "4 tasks"),
             "Nats-Service-Error: want the count (4 tasks), got %s", text ? text : "(none)");
    json_t *r = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    IT_CHECK(it_json_int(r, "error.code") == 400 && it_json_str(r, "error.message") &&
                 strstr(it_json_str(r, "error.message"), "4 tasks"),
             "clear without confirm: %.*s", natsMsg_GetDataLength(m), natsMsg_GetData(m));
    json_decref(r);
    natsMsg_Destroy(m);
    r = admin(e->nc, "clear", "{\"confirm\":false}");
    IT_CHECK(it_json_int(r, "error.code") == 400, "confirm false is no confirmation");
    json_decref(r);
    r = admin(e->nc, "clear", "{\"staus\":\"parked\",\"confirm\":true}");
    IT_CHECK(it_json_int(r, "error.code") == 400 && strstr(it_json_str(r, "error.message"), "staus"),
             "a misspelled filter key is refused, not read as 'everything'");
    json_decref(r);

    /* 404 carries the headers too. */
    m = request_raw(e->nc, "dlq.admin.get", "{\"task_id\":\"nope\"}", IT_REQUEST_MS);
    assert_non_null(m);
    code = NULL;
    IT_CHECK(natsMsgHeader_Get(m, "Nats-Service-Error-Code", &code) == NATS_OK && code &&
                 strcmp(code, "404") == 0,
             "404 header: %s", code ? code : "(none)");
    natsMsg_Destroy(m);

    snapshot_gets(e->nc, ids, NIDS, gets1);
    for (size_t i = 0; i < NIDS; i++) {
        IT_CHECK(strcmp(gets0[i], gets1[i]) == 0, "get %s changed after refused clears", ids[i]);
        free(gets1[i]);
        free(gets0[i]);
    }
    stats1 = stats_snapshot(e->nc);
    IT_CHECK(strcmp(stats0, stats1) == 0, "stats changed after refused clears:\n  %s\n  %s", stats0,
             stats1);
    free(stats1);
    free(stats0);
    free(list0);
    free(listf0);
    e->passed = true;
}

/* ---- 4. retry of an exhausted task ------------------------------------------------------------ */

/*
 * A task stored exhausted (max_retries 0) gets exactly one attempt from a
 * manual retry: the worker sees one message (Dlq-Attempt 1), fails it, the
 * task is exhausted again and nothing else goes out. A second manual retry
 * publishes attempt 2, which succeeds.
 */
static void
test_retry_exhausted(void **state)
{
    struct it_env *e = it_env_start("retry-exhausted", NULL);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.payments", "workers", 64, false);
    assert_non_null(w);
    struct it_step plan[] = {{IT_ACT_FAIL, "connection refused again", NULL}};
    it_recorder_set_plan(w, plan, 1, (struct it_step){IT_ACT_OK, NULL, NULL});

    request_envelope_ok(e->nc, "payments", "ex-1", "connection refused", 0);
    char st[32];
    IT_CHECK(strcmp(it_task_status(e->nc, "ex-1", st, sizeof st), "exhausted") == 0,
             "stored exhausted, got %s", st);
    it_sleep_ms(300);
    IT_CHECK(it_rec_count(w) == 0, "an exhausted task is not retried by itself");

    json_t *r = it_admin_task(e->nc, "retry", "ex-1");
    char *dump = it_json_dump(r);
    IT_CHECK(it_json_int(r, "scheduled") == 1 && it_json_int(r, "attempt") == 1, "retry: %s", dump);
    free(dump);
    json_decref(r);
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "the worker got no retry");
    const char *a = it_rec_header(it_rec_get(w, 0), "Dlq-Attempt");
    IT_CHECK(a && strcmp(a, "1") == 0, "Dlq-Attempt: want 1, got %s", a ? a : "-");
    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, "ex-1", "exhausted", IT_WAIT_MS, &ok);
    dump = it_json_dump(t);
    IT_CHECK(ok && it_json_int(t, "retry_count") == 1, "exhausted again after one attempt: %s", dump);
    free(dump);
    json_decref(t);
    it_sleep_ms(1500); /* several retry timeouts and ticks: nothing more goes out */
    IT_CHECK(it_rec_count(w) == 1, "one manual retry is one attempt, the worker saw %zu",
             it_rec_count(w));

    r = it_admin_task(e->nc, "retry", "ex-1");
    json_decref(r);
    IT_CHECK(it_rec_wait(w, 2, IT_WAIT_MS), "the second manual retry did not go out");
    a = it_rec_header(it_rec_get(w, 1), "Dlq-Attempt");
    IT_CHECK(a && strcmp(a, "2") == 0, "Dlq-Attempt: want 2, got %s", a ? a : "-");
    t = it_wait_task_status(e->nc, "ex-1", "completed", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "completed after the successful attempt");
    json_decref(t);
    it_sleep_ms(300);
    IT_CHECK(it_rec_count(w) == 2, "the worker saw %zu retries, want 2", it_rec_count(w));

    /* retry of a completed task is a conflict; of a missing one a 404. */
    r = it_admin_task(e->nc, "retry", "ex-1");
    IT_CHECK(it_json_int(r, "error.code") == 409, "retry of a completed task: 409");
    json_decref(r);
    r = it_admin_task(e->nc, "retry", "nope");
    IT_CHECK(it_json_int(r, "error.code") == 404, "retry of a missing task: 404");
    json_decref(r);
    e->passed = true;
}

/* ---- 5. bulk redrive at a rate ---------------------------------------------------------------- */

/*
 * 1,000 parked tasks redriven at 100 tasks/s reach the worker over about
 * ten seconds (between 7 and 20 s measured by arrival), not at once; stats
 * shows the redrive's progress while it runs and its result after.
 */
static void
test_redrive_rate(void **state)
{
    struct it_env *e = it_env_start("redrive", NULL);
    assert_non_null(e);
    *state = e;
    enum { N = 1000 };
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 2 * N, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    assert_int_equal(publish_tasks(e->nc, "orders", "rd", 0, N, "400 Bad Request", -1, 0), 0);
    IT_CHECK(wait_stat(e->nc, "status_breakdown.parked", N, IT_WAIT_MS) == N, "want %d parked", N);

    int64_t t0 = sc_now_mono_ms();
    json_t *r = admin(e->nc, "retry", "{\"status\":\"parked\",\"rate\":100}");
    char *dump = it_json_dump(r);
    IT_CHECK(it_json_int(r, "scheduled") == N && json_is_true(json_object_get(r, "background")),
             "redrive reply: %s", dump);
    free(dump);
    json_decref(r);
    r = admin(e->nc, "retry", "{\"status\":\"parked\",\"rate\":100}");
    IT_CHECK(it_json_int(r, "error.code") == 409, "a second redrive while one runs: 409");
    json_decref(r);

    it_sleep_ms(3000);
    json_t *st = it_admin_stats(e->nc);
    dump = it_json_dump(json_object_get(json_object_get(st, "retry_processor"), "redrive"));
    int64_t mid = it_json_int(st, "retry_processor.redrive.scheduled");
    IT_CHECK(json_is_true(json_object_get(json_object_get(json_object_get(st, "retry_processor"), "redrive"), "active")) &&
                 mid >= 150 && mid <= 700 && it_json_int(st, "retry_processor.redrive.matched") == N &&
                 it_json_int(st, "retry_processor.redrive.remaining") == N - mid,
             "after ~3 s at 100/s the redrive shows its progress: %s", dump);
    fprintf(stderr, "[redrive] after 3 s: %s\n", dump);
    free(dump);
    json_decref(st);

    IT_CHECK(it_rec_wait(w, N, 60000), "the worker saw %zu of %d", it_rec_count(w), N);
    int64_t first = it_rec_get(w, 0)->at_mono, last = first;
    for (size_t i = 0; i < it_rec_count(w); i++) {
        int64_t at = it_rec_get(w, i)->at_mono;
        if (at > last)
            last = at;
        if (at < first)
            first = at;
    }
    fprintf(stderr, "[redrive] first after %lld ms, last after %lld ms\n", (long long)(first - t0),
            (long long)(last - t0));
    IT_CHECK(last - t0 >= 7000 && last - t0 <= 20000,
             "1000 tasks at 100/s: want the last at 7-20 s, got %lld ms", (long long)(last - t0));
    IT_CHECK(first - t0 < 3000, "the first goes out at once, got %lld ms", (long long)(first - t0));
    /* Each task exactly once. */
    if (it_rec_count_matching(w, NULL, "Dlq-Attempt", "1") != N) {
        for (size_t i = 0, shown = 0; i < it_rec_count(w) && shown < 10; i++) {
            const struct it_rec_msg *m = it_rec_get(w, i);
            const char *a = it_rec_header(m, "Dlq-Attempt");
            if (a && strcmp(a, "1") == 0)
                continue;
            fprintf(stderr, "[redrive] message %zu: %s Dlq-Task-Id=%s Dlq-Attempt=%s (%d headers)\n", i,
                    m->subject, it_rec_header(m, "Dlq-Task-Id") ? it_rec_header(m, "Dlq-Task-Id") : "-",
                    a ? a : "-", m->nhdr);
            shown++;
        }
    }
    IT_CHECK(it_rec_count_matching(w, NULL, "Dlq-Attempt", "1") == N, "every retry is attempt 1");
    it_sleep_ms(300);
    IT_CHECK(it_rec_count(w) == N, "no task twice: %zu", it_rec_count(w));

    IT_CHECK(wait_stat(e->nc, "status_breakdown.completed", N, IT_WAIT_MS) == N, "all completed");
    st = it_admin_stats(e->nc);
    dump = it_json_dump(st);
    IT_CHECK(!json_is_true(json_object_get(json_object_get(json_object_get(st, "retry_processor"), "redrive"), "active")) &&
                 it_json_int(st, "retry_processor.redrive.scheduled") == N &&
                 it_json_int(st, "lifetime_stats.manual_retries") == N &&
                 it_json_str(st, "retry_processor.redrive.finished_at"),
             "after the redrive: %s", dump);
    free(dump);
    json_decref(st);

    /* cancel: a slow redrive stops where it is. */
    assert_int_equal(publish_tasks(e->nc, "orders", "slow", 0, 20, "400 Bad Request", -1, 0), 0);
    IT_CHECK(wait_stat(e->nc, "status_breakdown.parked", 20, IT_WAIT_MS) == 20, "20 parked");
    r = admin(e->nc, "retry", "{\"status\":\"parked\",\"rate\":2}");
    json_decref(r);
    it_sleep_ms(1200);
    r = admin(e->nc, "retry", "{\"cancel\":true}");
    dump = it_json_dump(r);
    IT_CHECK(json_is_true(json_object_get(r, "cancelled")) && it_json_int(r, "scheduled") >= 1 &&
                 it_json_int(r, "scheduled") <= 5,
             "cancel: %s", dump);
    int64_t sent = it_json_int(r, "scheduled");
    free(dump);
    json_decref(r);
    st = it_admin_stats(e->nc);
    dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "retry_processor.redrive.remaining") == 20 - sent,
             "a cancelled redrive keeps what it never sent in remaining: %s", dump);
    free(dump);
    json_decref(st);
    r = admin(e->nc, "retry", "{\"cancel\":true}");
    IT_CHECK(it_json_int(r, "error.code") == 409, "nothing to cancel: 409");
    json_decref(r);
    e->passed = true;
}

/* ---- 6. dlqctl -------------------------------------------------------------------------------- */

/*
 * dlqctl end to end: every command as a table and as JSON, and its exit
 * codes: 0 ok, 1 for an error reply (404, 409, 400), 2 for a bad command
 * line, 3 when no sidecar answers (daemon stopped; no server at all).
 */
static void
test_dlqctl(void **state)
{
    struct it_env *e = it_env_start("dlqctl", NULL);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.>", "workers", 64, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    request_envelope_ok(e->nc, "orders", "ctl-1", "400 Bad Request: email invalid", -1);
    request_envelope_ok(e->nc, "orders", "ctl-2", "connection refused", 0);
    request_envelope_ok(e->nc, "billing", "ctl-3", "403 Forbidden", -1);

    struct cmd c;
    cmd_init(&c, e->dir);
    const char *url = e->srv.url;
#define CTL(...) cmd_run(&c, DLQCTL_BIN, "--server", url, __VA_ARGS__, (char *)NULL)

    IT_CHECK(CTL("stats") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "queue size") && strstr(c.out.data, "lifetime stats"),
             "stats table: %s", c.out.data);
    IT_CHECK(CTL("stats", "--json") == 0, "stderr: %s", c.err.data);
    json_t *j = cmd_json(&c);
    assert_non_null(j);
    check_stats_keys(j);
    IT_CHECK(it_json_int(j, "queue_size") == 3, "queue_size 3: %s", c.out.data);
    json_decref(j);

    IT_CHECK(CTL("list") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "TASK_ID") && strstr(c.out.data, "ctl-1") &&
                 strstr(c.out.data, "parked") && strstr(c.out.data, "exhausted"),
             "list table: %s", c.out.data);
    IT_CHECK(CTL("list", "--json", "--limit", "2") == 0, "stderr: %s", c.err.data);
    j = cmd_json(&c);
    const char *cur = it_json_str(j, "next_cursor");
    IT_CHECK(json_array_size(json_object_get(j, "tasks")) == 2 && cur && it_json_int(j, "total") == 3,
             "page 1: %s", c.out.data);
    char cursor[64];
    snprintf(cursor, sizeof cursor, "%s", cur ? cur : "");
    json_decref(j);
    IT_CHECK(CTL("--json", "list", "--cursor", cursor) == 0, "stderr: %s", c.err.data);
    j = cmd_json(&c);
    IT_CHECK(json_array_size(json_object_get(j, "tasks")) == 1 &&
                 strcmp(it_json_str(json_array_get(json_object_get(j, "tasks"), 0), "task_id"), "ctl-3") == 0,
             "page 2: %s", c.out.data);
    json_decref(j);
    IT_CHECK(CTL("list", "--all", "--limit", "1", "--json") == 0, "stderr: %s", c.err.data);
    j = cmd_json(&c);
    IT_CHECK(json_array_size(json_object_get(j, "tasks")) == 3 && json_is_null(json_object_get(j, "next_cursor")),
             "list --all follows the cursor: %s", c.out.data);
    json_decref(j);
    IT_CHECK(CTL("list", "--status", "parked", "--subject", "dlq.failed.orders", "--json") == 0,
             "stderr: %s", c.err.data);
    j = cmd_json(&c);
    IT_CHECK(it_json_int(j, "total") == 1, "filters: %s", c.out.data);
    json_decref(j);
    IT_CHECK(CTL("list", "--older-than", "1h", "--json") == 0, "stderr: %s", c.err.data);
    j = cmd_json(&c);
    IT_CHECK(it_json_int(j, "total") == 0, "nothing is an hour old: %s", c.out.data);
    json_decref(j);

    IT_CHECK(CTL("get", "ctl-1") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "validation") && strstr(c.out.data, "history"), "get table: %s",
             c.out.data);
    IT_CHECK(CTL("get", "ctl-1", "--json") == 0, "stderr: %s", c.err.data);
    j = cmd_json(&c);
    IT_CHECK(j && strcmp(it_json_str(j, "task_id"), "ctl-1") == 0, "get --json: %s", c.out.data);
    json_decref(j);

    /* 1: error replies. */
    IT_CHECK(CTL("get", "no-such-task") == 1, "a 404 exits 1");
    IT_CHECK(strstr(c.err.data, "404"), "the message names the 404: %s", c.err.data);
    IT_CHECK(CTL("get", "no-such-task", "--json") == 1, "a 404 exits 1 with --json too");
    j = cmd_json(&c);
    IT_CHECK(it_json_int(j, "error.code") == 404, "--json prints the error reply: %s", c.out.data);
    json_decref(j);
    IT_CHECK(CTL("clear", "--subject", "dlq.failed.billing") == 1, "clear without --confirm exits 1");
    IT_CHECK(strstr(c.err.data, "1 task"), "and says how many: %s", c.err.data);

    /* 2: usage. */
    IT_CHECK(CTL("list", "--bogus") == 2, "an unknown flag exits 2");
    IT_CHECK(CTL("get") == 2, "get without an id exits 2");
    IT_CHECK(CTL("frobnicate") == 2, "an unknown command exits 2");
    IT_CHECK(CTL("stats", "--timeout", "soon") == 2, "a bad --timeout exits 2");
    IT_CHECK(CTL("list", "--rate", "5") == 2, "an option of another command exits 2");
    IT_CHECK(CTL("archive") == 2, "archive without a task or filter exits 2");
    IT_CHECK(cmd_run(&c, DLQCTL_BIN, (char *)NULL) == 2, "no command exits 2");
    IT_CHECK(cmd_run(&c, DLQCTL_BIN, "--help", (char *)NULL) == 0 && strstr(c.out.data, "Exit codes"),
             "--help exits 0 with the usage");

    IT_CHECK(CTL("classify", "connection", "reset", "by", "peer", "--json") == 0, "stderr: %s",
             c.err.data);
    j = cmd_json(&c);
    IT_CHECK(strcmp(it_json_str(j, "category"), "network") == 0, "classify: %s", c.out.data);
    json_decref(j);
    IT_CHECK(CTL("classify", "--error-type", "PermissionError") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "category"), "classify table: %s", c.out.data);

    IT_CHECK(CTL("retry", "ctl-2") == 0, "stderr: %s", c.err.data);
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "dlqctl retry reaches the worker");
    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, "ctl-2", "completed", IT_WAIT_MS, &ok);
    IT_CHECK(ok, "ctl-2 completed");
    json_decref(t);
    IT_CHECK(CTL("retry", "ctl-2") == 1, "retry of a completed task exits 1 (409)");

    IT_CHECK(CTL("pause", "--json") == 0 && strstr(c.out.data, "\"paused\":true"), "pause: %s",
             c.out.data);
    IT_CHECK(CTL("health", "--json") == 0, "stderr: %s", c.err.data);
    j = cmd_json(&c);
    IT_CHECK(json_is_true(json_object_get(j, "paused")) && strcmp(it_json_str(j, "status"), "ok") == 0,
             "health: %s", c.out.data);
    json_decref(j);
    IT_CHECK(CTL("resume") == 0, "stderr: %s", c.err.data);
    IT_CHECK(CTL("health") == 0 && strstr(c.out.data, "connected"), "health table: %s", c.out.data);

    /* A task held by its depends_on (ctl-1 is parked) reads "pending (waiting)" in the table,
     * not plain pending with a next retry that has passed. */
    json_t *held = it_request_json(e->nc, "dlq.failed.payments",
                                   "{\"task_id\":\"ctl-5\",\"task\":{},\"error\":\"connection refused\","
                                   "\"depends_on\":[\"ctl-1\"]}",
                                   IT_REQUEST_MS);
    IT_CHECK(held && strcmp(it_json_str(held, "status"), "pending") == 0, "ctl-5 filed");
    json_decref(held);
    IT_CHECK(CTL("list", "--subject", "dlq.failed.payments") == 0, "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "ctl-5") && strstr(c.out.data, "pending (waiting)"),
             "a held task in the list table: %s", c.out.data);

    IT_CHECK(CTL("archive", "ctl-1") == 0 && strstr(c.out.data, "archived"), "archive: %s",
             c.out.data);
    IT_CHECK(CTL("archive", "ctl-1") == 1, "archiving an archived task exits 1 (409)");
    IT_CHECK(CTL("clear", "--subject", "dlq.failed.billing", "--confirm", "--json") == 0,
             "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "\"cleared\":1"), "clear: %s", c.out.data);
    IT_CHECK(CTL("retry", "--all", "--rate", "50", "--json") == 0, "stderr: %s", c.err.data);
    IT_CHECK(CTL("retry", "--cancel") == 0 || c.status == 1, "cancel (or nothing left to cancel)");

    /* 3: nobody answers. */
    it_daemon_stop(&e->dmn);
    IT_CHECK(CTL("stats", "--timeout", "1000") == 3, "no sidecar running exits 3");
    IT_CHECK(strstr(c.err.data, "no sidecar"), "and says so: %s", c.err.data);
    char dead[64];
    snprintf(dead, sizeof dead, "nats://127.0.0.1:%d", it_free_port());
    IT_CHECK(cmd_run(&c, DLQCTL_BIN, "--server", dead, "--timeout", "1000", "stats", (char *)NULL) == 3,
             "no server exits 3");
#undef CTL
    cmd_destroy(&c);
    e->passed = true;
}

/* ---- an empty filter never changes every task ------------------------------------------------ */

/* expect_refused() asks dlq.admin.<verb> with body and asserts a 400 (reply and headers) that asks for "all". */
static void
expect_refused(natsConnection *nc, const char *verb, const char *body)
{
    char subj[64];
    snprintf(subj, sizeof subj, "dlq.admin.%s", verb);
    natsMsg *m = request_raw(nc, subj, body, IT_REQUEST_MS);
    IT_CHECK(m != NULL, "%s %s: no reply", verb, body);
    const char *code = NULL;
    IT_CHECK(natsMsgHeader_Get(m, "Nats-Service-Error-Code", &code) == NATS_OK && code &&
                 strcmp(code, "400") == 0,
             "%s '%s': want Nats-Service-Error-Code 400, got %s: %.*s", verb, body,
             code ? code : "(none)", natsMsg_GetDataLength(m), natsMsg_GetData(m));
    json_t *r = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    const char *msg = it_json_str(r, "error.message");
    IT_CHECK(it_json_int(r, "error.code") == 400 && msg && strstr(msg, "\"all\": true"),
             "%s '%s': want a 400 that asks for \"all\": true, got %.*s", verb, body,
             natsMsg_GetDataLength(m), natsMsg_GetData(m));
    json_decref(r);
    natsMsg_Destroy(m);
}

/*
 * 7. DESIGN section 8: retry, archive and clear refuse an empty filter (an
 * empty body, {}, only null filter keys, "all": false) with a 400 unless
 * the request says "all": true; nothing changes. `nats request
 * dlq.admin.archive ''` is the operator's typo this is about. With
 * "all": true they act on every task; dlqctl's --all sends it.
 */
static void
test_empty_filter_refused(void **state)
{
    struct it_env *e = it_env_start("empty-filter", NULL);
    assert_non_null(e);
    *state = e;
    request_envelope_ok(e->nc, "orders", "ef-1", "400 Bad Request: email invalid", -1);
    request_envelope_ok(e->nc, "orders", "ef-2", "connection refused", 0);
    request_envelope_ok(e->nc, "billing", "ef-3", "403 Forbidden", -1);
    json_decref(admin(e->nc, "pause", ""));
    char *stats0 = stats_snapshot(e->nc);

    static const char *const verbs[] = {"retry", "archive", "clear"};
    static const char *const bodies[] = {"", "{}", "{\"status\":null}", "{\"all\":false}",
                                         "{\"all\":null}", "{\"error\":\"\"}", "{\"id_prefix\":\"\"}"};
    for (size_t v = 0; v < SC_ARRAY_LEN(verbs); v++)
        for (size_t b = 0; b < SC_ARRAY_LEN(bodies); b++)
            expect_refused(e->nc, verbs[v], bodies[b]);
    expect_refused(e->nc, "retry", "{\"rate\":100}");
    expect_refused(e->nc, "clear", "{\"confirm\":true}");
    /* "all" must be a boolean, and it does not combine with a filter or a task_id. */
    json_t *r = admin(e->nc, "archive", "{\"all\":\"yes\"}");
    IT_CHECK(it_json_int(r, "error.code") == 400, "all: \"yes\" is refused");
    json_decref(r);
    r = admin(e->nc, "archive", "{\"all\":true,\"status\":\"parked\"}");
    IT_CHECK(it_json_int(r, "error.code") == 400, "all with a filter is refused");
    json_decref(r);
    r = admin(e->nc, "retry", "{\"all\":true,\"task_id\":\"ef-1\"}");
    IT_CHECK(it_json_int(r, "error.code") == 400, "all with a task_id is refused");
    json_decref(r);

    /* The operator's command of the issue, with the real CLI. */
    struct cmd c;
    cmd_init(&c, e->dir);
    const char *url = e->srv.url;
    IT_CHECK(cmd_run(&c, NATS_CLI_BIN, "--no-context", "-s", url, "request", "dlq.admin.archive",
                     "", "--raw", (char *)NULL) == 0,
             "stderr: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "\"code\":400") && !strstr(c.out.data, "archived"),
             "nats request dlq.admin.archive '': want a 400, got %s", c.out.data);
    IT_CHECK(cmd_run(&c, DLQCTL_BIN, "--server", url, "archive", (char *)NULL) == 2,
             "dlqctl archive without a task, filter or --all exits 2");

    char *stats1 = stats_snapshot(e->nc);
    IT_CHECK(strcmp(stats0, stats1) == 0, "refused requests changed something:\n  %s\n  %s",
             stats0, stats1);
    free(stats0);
    free(stats1);

    /* With "all": true each verb acts on every task. */
    r = admin(e->nc, "retry", "{\"all\":true}");
    char *dump = it_json_dump(r);
    IT_CHECK(it_json_int(r, "scheduled") == 3, "retry all: want 3 scheduled, got %s", dump);
    free(dump);
    json_decref(r);
    IT_CHECK(cmd_run(&c, DLQCTL_BIN, "--server", url, "archive", "--all", "--json", (char *)NULL) ==
                 0,
             "dlqctl archive --all: %s", c.err.data);
    IT_CHECK(strstr(c.out.data, "\"archived\":3"), "dlqctl archive --all: %s", c.out.data);
    r = admin(e->nc, "clear", "{\"all\":true}");
    IT_CHECK(it_json_int(r, "error.code") == 400 && strstr(it_json_str(r, "error.message"), "3 tasks"),
             "clear all without confirm: 400 with the count");
    json_decref(r);
    r = admin(e->nc, "clear", "{\"all\":true,\"confirm\":true}");
    dump = it_json_dump(r);
    IT_CHECK(it_json_int(r, "cleared") == 3, "clear all: want 3 cleared, got %s", dump);
    free(dump);
    json_decref(r);
    cmd_destroy(&c);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_nats_cli, it_teardown),
        cmocka_unit_test_teardown(test_cursor_same_millisecond, it_teardown),
        cmocka_unit_test_teardown(test_reads_change_nothing, it_teardown),
        cmocka_unit_test_teardown(test_retry_exhausted, it_teardown),
        cmocka_unit_test_teardown(test_redrive_rate, it_teardown),
        cmocka_unit_test_teardown(test_dlqctl, it_teardown),
        cmocka_unit_test_teardown(test_empty_filter_refused, it_teardown),
    };
    if (getenv("DLQ_IT_FILTER")) /* e.g. DLQ_IT_FILTER='test_empty*' to run some */
        cmocka_set_test_filter(getenv("DLQ_IT_FILTER"));
    return cmocka_run_group_tests_name("integration_admin", tests, NULL, NULL);
}
