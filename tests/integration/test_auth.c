/* test_auth.c - integration: docs/nats-auth.conf on a real nats-server; as each user (service, worker, operator, viewer) it can do its job, and cannot read or forge anything else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#ifndef DLQCTL_BIN
#error "DLQCTL_BIN must name the dlqctl binary (set by tests/integration/CMakeLists.txt)"
#endif
#ifndef NATS_CLI_BIN
#error "NATS_CLI_BIN must name the nats CLI (set by tests/integration/CMakeLists.txt)"
#endif
#ifndef NATS_AUTH_CONF
#error "NATS_AUTH_CONF must name docs/nats-auth.conf (set by tests/integration/CMakeLists.txt)"
#endif

#define REFUSAL_WAIT_MS 5000 /* a refusal is an -ERR on the same socket: it comes at once */
#define QUIET_MS 1000        /* how long "nothing arrives" is watched, after a control saw it arrive */
#define WHO_MAX 8
#define WHO_ERRS 64
#define RUN_TIMEOUT_MS 30000

/* The passwords the test gives nats-server through its environment ($DLQ_..._PASSWORD in the conf). */
static const char *const passwords[] = {
    "AUTH_SIDECAR_PASSWORD", "sc-pw-7f3a",  "AUTH_SERVICE_PASSWORD",  "svc-pw-19cd",
    "AUTH_WORKER_PASSWORD",  "wrk-pw-44e0", "AUTH_OPERATOR_PASSWORD", "op-pw-b2c8",
    "AUTH_VIEWER_PASSWORD",  "vw-pw-5d21",
};

/* password_of() returns the test password of user (the conf's user names). */
static const char *
password_of(const char *user)
{
    if (strcmp(user, "dlq-sidecar") == 0)
        return "sc-pw-7f3a";
    if (strcmp(user, "service") == 0)
        return "svc-pw-19cd";
    if (strcmp(user, "worker") == 0)
        return "wrk-pw-44e0";
    if (strcmp(user, "operator") == 0)
        return "op-pw-b2c8";
    if (strcmp(user, "viewer") == 0)
        return "vw-pw-5d21";
    return "wrong";
}

/*
 * One client connection as one user, with every permissions violation the
 * server told it about (the text of -ERR 'Permissions Violation for ...',
 * as nats.c keeps it). Static storage: nats.c's error callback may run
 * until the env's teardown destroyed the connection.
 */
struct who {
    natsConnection *nc;
    const char *user;
    pthread_mutex_t mu;
    size_t nerr;
    char errs[WHO_ERRS][256];
};

static struct who whos[WHO_MAX];
static size_t nwhos;

/* on_error() records a permissions violation of w's connection. nats.c's callback thread. */
static void
on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    struct who *w = closure;
    const char *txt = NULL;

    (void)sub;
    if (err != NATS_NOT_PERMITTED)
        return;
    natsConnection_GetLastError(nc, &txt);
    pthread_mutex_lock(&w->mu);
    if (w->nerr < WHO_ERRS)
        snprintf(w->errs[w->nerr++], sizeof w->errs[0], "%s", txt ? txt : "(no text)");
    pthread_mutex_unlock(&w->mu);
}

/*
 * connect_as() connects to e's server as user (its test password; "wrong"
 * for anything else) with inbox prefix inbox (NULL: nats.c's "_INBOX"),
 * owned by e. Returns the who, or NULL when the server refused.
 */
static struct who *
connect_as(struct it_env *e, const char *user, const char *password, const char *inbox)
{
    char url[256];
    natsOptions *o = NULL;
    struct who *w;

    assert_true(nwhos < WHO_MAX);
    w = &whos[nwhos];
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    w->user = user;
    snprintf(url, sizeof url, "nats://%s:%s@127.0.0.1:%d", user, password, e->srv.port);
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, user);
    if (s == NATS_OK && inbox)
        s = natsOptions_SetCustomInboxPrefix(o, inbox);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, on_error, w);
    if (s == NATS_OK)
        s = natsConnection_Connect(&w->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        fprintf(stderr, "connect as %s: %s\n", user, natsStatus_GetText(s));
        pthread_mutex_destroy(&w->mu);
        return NULL;
    }
    for (size_t i = 0; i < IT_ENV_MAX_CONNS; i++) {
        if (!e->conns[i]) {
            e->conns[i] = w->nc;
            nwhos++;
            return w;
        }
    }
    fail_msg("no room for another connection in the env");
    return NULL;
}

/* user_of() connects as user with the inbox prefix the conf gives it ("_INBOX_<user>"). */
static struct who *
user_of(struct it_env *e, const char *user)
{
    char inbox[64];
    struct who *w;

    snprintf(inbox, sizeof inbox, "_INBOX_%s", user);
    w = connect_as(e, user, password_of(user), inbox);
    IT_CHECK(w != NULL, "%s cannot connect with its own password", user);
    return w;
}

/* refused() tells whether w was told "Permissions Violation for <kind> to "<subject>"". */
static bool
refused(struct who *w, const char *kind, const char *subject)
{
    char want[256];
    bool seen = false;

    snprintf(want, sizeof want, "Permissions Violation for %s to \"%s\"", kind, subject);
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->nerr && !seen; i++)
        seen = strstr(w->errs[i], want) != NULL;
    pthread_mutex_unlock(&w->mu);
    return seen;
}

/* dump_errs() prints what w was told, for a failed check. */
static void
dump_errs(struct who *w)
{
    pthread_mutex_lock(&w->mu);
    fprintf(stderr, "  %s was told %zu violation(s):\n", w->user, w->nerr);
    for (size_t i = 0; i < w->nerr; i++)
        fprintf(stderr, "    %s\n", w->errs[i]);
    pthread_mutex_unlock(&w->mu);
}

/*
 * expect_refused() waits up to REFUSAL_WAIT_MS until w was told about a
 * violation of kind ("Publish" or "Subscription") on subject, and fails the
 * test otherwise. One refusal is provoked at a time, so that nats.c's last
 * error (read by the callback) is the one that callback is about.
 */
static void
expect_refused(struct who *w, const char *kind, const char *subject)
{
    int64_t until = sc_now_mono_ms() + REFUSAL_WAIT_MS;

    while (!refused(w, kind, subject) && sc_now_mono_ms() < until)
        it_sleep_ms(10);
    if (!refused(w, kind, subject))
        dump_errs(w);
    IT_CHECK(refused(w, kind, subject), "the server did not refuse %s's %s to \"%s\"", w->user,
             kind, subject);
}

/* try_subscribe() subscribes w to subject (sync) and expects the server's refusal; returns the subscription. */
static natsSubscription *
try_subscribe(struct who *w, const char *subject)
{
    natsSubscription *sub = NULL;

    /* nats.c accepts it locally; the server's -ERR comes back asynchronously. */
    IT_CHECK(natsConnection_SubscribeSync(&sub, w->nc, subject) == NATS_OK, "subscribe %s",
             subject);
    IT_CHECK(natsConnection_Flush(w->nc) == NATS_OK, "flush after subscribing %s", subject);
    expect_refused(w, "Subscription", subject);
    return sub;
}

/* try_publish() publishes body on subject as w (reply subject reply, may be NULL) and expects the refusal. */
static void
try_publish(struct who *w, const char *subject, const char *reply, const char *body)
{
    natsStatus s = reply ? natsConnection_PublishRequestString(w->nc, subject, reply, body)
                         : natsConnection_PublishString(w->nc, subject, body);

    IT_CHECK(s == NATS_OK, "publish %s: %s", subject, natsStatus_GetText(s));
    IT_CHECK(natsConnection_Flush(w->nc) == NATS_OK, "flush after publishing %s", subject);
    expect_refused(w, "Publish", subject);
}

/* pending_msgs() returns how many messages sit in sub's queue (delivered to it, not read). */
static int
pending_msgs(natsSubscription *sub)
{
    int n = 0;

    natsSubscription_GetPending(sub, &n, NULL);
    return n;
}

/* server_log_has() tells whether the server's log has a line holding both a and b (b may be NULL). */
static bool
server_log_has(struct it_env *e, const char *a, const char *b)
{
    FILE *f = fopen(e->srv.log, "r");
    char line[2048];
    bool seen = false;

    while (f && !seen && fgets(line, sizeof line, f))
        seen = strstr(line, a) && (!b || strstr(line, b));
    if (f)
        fclose(f);
    return seen;
}

/* file_has() tells whether a line of the file at path holds text (a log: any length). */
static bool
file_has(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    bool seen = false;

    while (f && !seen && getline(&line, &cap, f) >= 0)
        seen = strstr(line, text) != NULL;
    free(line);
    if (f)
        fclose(f);
    return seen;
}

/*
 * auth_env() starts one test's world: nats-server with docs/nats-auth.conf
 * exactly as committed (passwords from the environment; with js, JetStream
 * on too), the sidecar as user dlq-sidecar (with js: dlq-sidecar-js) with
 * nats.inbox_prefix _INBOX_dlq-sidecar (plus extra, NULL-terminated
 * "key=value" flags), and e->nc as the operator, once the sidecar answers it.
 */
static struct it_env *
auth_env(void **state, const char *name, const char *const *extra, bool js)
{
    const char *flags[16] = {js ? "nats.user=dlq-sidecar-js" : "nats.user=dlq-sidecar",
                             "nats.password=sc-pw-7f3a", "nats.inbox_prefix=_INBOX_dlq-sidecar"};
    size_t nf = 3;
    struct it_env *e = calloc(1, sizeof *e);
    const char *tmp = getenv("TMPDIR");

    for (size_t i = 0; i < SC_ARRAY_LEN(passwords); i += 2)
        setenv(passwords[i], passwords[i + 1], 1);
    nwhos = 0;
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
    for (size_t i = 0; extra && extra[i] && nf < SC_ARRAY_LEN(flags) - 1; i++)
        flags[nf++] = extra[i];
    flags[nf] = NULL;
    assert_int_equal(it_daemon_start(&e->dmn, e->dir, e->srv.url, flags), 0);
    struct who *op = user_of(e, "operator");
    /* e->nc is the env's own (it_env_stop() closes it), not one of e->conns. */
    for (size_t i = 0; i < IT_ENV_MAX_CONNS; i++)
        if (e->conns[i] == op->nc)
            e->conns[i] = NULL;
    e->nc = op->nc;
    IT_CHECK(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0,
             "the sidecar (user dlq-sidecar) answers the operator");
    return e;
}

/* report() has svc report task_id (error "connection refused", policy as given) and checks the ack. */
static void
report(struct who *svc, const char *task_id, const char *policy)
{
    struct it_envelope env;

    it_envelope_init(&env);
    env.task_id = task_id;
    env.error = "connection refused";
    env.retry_policy = policy;
    json_t *ack = it_request_envelope(svc->nc, "dlq.failed.orders", &env);
    char *dump = it_json_dump(ack);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")),
             "%s reports %s and gets the acknowledgement: got %s", svc->user, task_id, dump);
    free(dump);
    json_decref(ack);
}

/* no_violation_of() checks that the server refused nothing to user (the conf lets it do its job). */
static void
no_violation_of(struct it_env *e, const char *user)
{
    char a[64], b[64];

    /* 2.15 names the user "$G/user:<name>" in its log; 2.9 names it "<name>". */
    snprintf(a, sizeof a, "/user:%s\"", user);
    snprintf(b, sizeof b, "User \"%s\"", user);
    IT_CHECK(!server_log_has(e, "Violation", a) && !server_log_has(e, "Violation", b),
             "nats-server logged a permissions violation of user %s (%s)", user, e->srv.log);
}

/* ---- running dlqctl and the nats CLI --------------------------------------------------------- */

/*
 * run() runs argv[0] (a path) with argv, the environment plus env_add
 * ("NAME=value" or NULL) minus NATS_URL/NATS_INBOX_PREFIX/NATS_CREDS, and
 * HOME/XDG_CONFIG_HOME set to dir (no nats CLI context of the machine),
 * stdout and stderr into dir/run.out and dir/run.err. Returns the exit
 * status, 128+signal when killed, -1 when it could not run or took longer
 * than RUN_TIMEOUT_MS.
 */
static int
run(const char *dir, const char *env_add, char *const argv[])
{
    char out[IT_PATH_MAX + 16], err[IT_PATH_MAX + 16], home[IT_PATH_MAX + 16],
        xdg[IT_PATH_MAX + 32];
    extern char **environ;
    char *envp[256];
    size_t k = 0;
    int status = 0;

    snprintf(out, sizeof out, "%s/run.out", dir);
    snprintf(err, sizeof err, "%s/run.err", dir);
    snprintf(home, sizeof home, "HOME=%s", dir);
    snprintf(xdg, sizeof xdg, "XDG_CONFIG_HOME=%s", dir);
    for (size_t i = 0; environ[i] && k < SC_ARRAY_LEN(envp) - 5; i++)
        if (strncmp(environ[i], "NATS_", 5) != 0 && strncmp(environ[i], "HOME=", 5) != 0 &&
            strncmp(environ[i], "XDG_CONFIG_HOME=", 16) != 0)
            envp[k++] = environ[i];
    envp[k++] = home;
    envp[k++] = xdg;
    if (env_add)
        envp[k++] = (char *)env_add;
    envp[k] = NULL;
    pid_t parent = getpid(), pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fi = open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0)
            _exit(127);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    for (int64_t until = sc_now_mono_ms() + RUN_TIMEOUT_MS;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 || sc_now_mono_ms() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        it_sleep_ms(10);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* run_file() names the file of the last run() in dir that holds its "out" or "err". */
static const char *
run_file(const char *dir, const char *which)
{
    static char path[IT_PATH_MAX + 16];

    snprintf(path, sizeof path, "%s/run.%s", dir, which);
    return path;
}

/* ---- the tests --------------------------------------------------------------------------------- */

/*
 * A service reports a failure and gets its acknowledgement on its own inbox
 * (_INBOX_service). It cannot read anyone else's replies: subscribing to
 * _INBOX.> or another user's prefix is refused, and while a second operator
 * connection (the control) sees the operator's dlq.admin.get answer go by,
 * the service's refused subscriptions receive nothing. It cannot forge:
 * publishing a retry, an event, a worker's outcome, an admin request or a
 * discovery ping is refused, and a failure whose reply subject is a retry
 * subject or a system subject gets no answer there (the sidecar's own
 * check: allow_responses would let its answer through). A service left on
 * the default "_INBOX" gets no acknowledgement.
 */
static void
test_service(void **state)
{
    struct it_env *e = auth_env(state, "auth-service", NULL, false);
    struct who *svc = user_of(e, "service");
    struct who *spy = user_of(e, "operator"); /* the control: may read the operator's inbox */

    report(svc, "svc-1", "never");

    /* Reading: refused, and nothing arrives while the control sees the answer. */
    static const char *const denied_subs[] = {"_INBOX.>", "_INBOX_operator.>", "_INBOX_viewer.>",
                                              "_INBOX_dlq-sidecar.>", "dlq.failed.>",
                                              "dlq.retry.>", "dlq.events.>", "dlq.admin.*"};
    natsSubscription *subs[SC_ARRAY_LEN(denied_subs)];
    for (size_t i = 0; i < SC_ARRAY_LEN(denied_subs); i++)
        subs[i] = try_subscribe(svc, denied_subs[i]);
    natsSubscription *control = NULL;
    IT_CHECK(natsConnection_SubscribeSync(&control, spy->nc, "_INBOX_operator.>") == NATS_OK &&
                 natsConnection_Flush(spy->nc) == NATS_OK,
             "the control subscribes to the operator's inbox");
    json_t *r = it_admin_get(e->nc, "svc-1");
    IT_CHECK(it_json_str(r, "task_id") && strcmp(it_json_str(r, "task_id"), "svc-1") == 0,
             "the operator gets svc-1");
    json_decref(r);
    natsMsg *m = NULL;
    IT_CHECK(natsSubscription_NextMsg(&m, control, IT_REQUEST_MS) == NATS_OK && m &&
                 strstr(natsMsg_GetData(m), "svc-1"),
             "the control saw the operator's answer with the task");
    natsMsg_Destroy(m);
    it_sleep_ms(QUIET_MS);
    for (size_t i = 0; i < SC_ARRAY_LEN(denied_subs); i++) {
        IT_CHECK(pending_msgs(subs[i]) == 0, "the service received %d message(s) on %s",
                 pending_msgs(subs[i]), denied_subs[i]);
        natsSubscription_Destroy(subs[i]);
    }
    natsSubscription_Destroy(control);

    /* Forging: refused by the server. */
    try_publish(svc, "dlq.retry.orders", NULL, "{\"forged\":true}");
    try_publish(svc, "dlq.events.succeeded", NULL, "{\"task_id\":\"svc-1\"}");
    try_publish(svc, "_INBOX_dlq-sidecar.x.0.0000000000000001", NULL, "{\"ok\":true}");
    try_publish(svc, "dlq.admin.clear", "_INBOX_service.x", "{\"all\":true,\"confirm\":true}");
    try_publish(svc, "dlq.invalid.orders", NULL, "x");
    try_publish(svc, "$SRV.PING", "_INBOX_service.y", "");
    char st[32];
    IT_CHECK(strcmp(it_task_status(e->nc, "svc-1", st, sizeof st), "pending") == 0,
             "the service's forgeries changed nothing: svc-1 is %s", st);

    /*
     * Forging through the sidecar: a failure whose reply subject is a retry
     * subject, a system subject or the sidecar's own subjects. The task is
     * taken; the acknowledgement goes nowhere (a worker on dlq.retry.> and
     * the control on dlq.events.> see no answer).
     */
    struct who *wk = user_of(e, "worker");
    struct it_recorder *rec = it_env_recorder(e, wk->nc, "dlq.retry.>", NULL, 16, true);
    assert_non_null(rec);
    natsConnection_Flush(wk->nc);
    /* ("$JS.API.…" as a reply nats-server 2.15 refuses itself: "Publish Violation - Reply".) */
    static const char *const bad_replies[] = {"dlq.retry.orders", "$SRV.PING.dlq-sidecar",
                                              "dlq.admin.clear", "dlq.events.succeeded"};
    for (size_t i = 0; i < SC_ARRAY_LEN(bad_replies); i++) {
        char id[32];
        snprintf(id, sizeof id, "svc-forge-%zu", i);
        struct sc_buf b;
        struct it_envelope env;
        sc_buf_init(&b, 1 << 16);
        it_envelope_init(&env);
        env.task_id = id;
        env.error = "400 Bad Request";
        assert_int_equal(it_envelope_pack(&env, &b), 0);
        IT_CHECK(natsConnection_PublishRequest(svc->nc, "dlq.failed.orders", bad_replies[i],
                                               b.data, (int)b.len) == NATS_OK,
                 "publish with reply %s", bad_replies[i]);
        sc_buf_destroy(&b);
        bool ok = false;
        json_decref(it_wait_task_status(e->nc, id, "pending", IT_WAIT_MS, &ok));
        IT_CHECK(ok, "the failure with reply subject %s was taken", bad_replies[i]);
    }
    it_sleep_ms(QUIET_MS);
    IT_CHECK(it_rec_count(rec) == 0, "a worker received %zu message(s) on dlq.retry.> (first: %s)",
             it_rec_count(rec), it_rec_count(rec) ? it_rec_get(rec, 0)->body : "");
    IT_CHECK(strcmp(it_task_status(e->nc, "svc-1", st, sizeof st), "pending") == 0,
             "the answer sent to dlq.admin.clear cleared nothing: svc-1 is %s", st);

    /* A service on the default "_INBOX" may not subscribe to its own inbox: no acknowledgement. */
    struct who *lost = connect_as(e, "service", password_of("service"), NULL);
    assert_non_null(lost);
    struct it_envelope env;
    it_envelope_init(&env);
    env.task_id = "svc-lost";
    env.error = "connection refused";
    json_t *ack = it_request_envelope(lost->nc, "dlq.failed.orders", &env);
    IT_CHECK(ack == NULL, "a service on _INBOX got an acknowledgement");
    bool subscription_refused = false;
    pthread_mutex_lock(&lost->mu);
    for (size_t i = 0; i < lost->nerr; i++)
        if (strstr(lost->errs[i], "Permissions Violation for Subscription to \"_INBOX."))
            subscription_refused = true;
    pthread_mutex_unlock(&lost->mu);
    if (!subscription_refused)
        dump_errs(lost);
    IT_CHECK(subscription_refused, "the server refused the subscription of the default inbox");

    IT_CHECK(it_daemon_alive(&e->dmn), "the sidecar still runs");
    no_violation_of(e, "dlq-sidecar");
    e->passed = true;
}

/*
 * A worker takes retries and its replies are the outcomes (allow_responses):
 * a failed attempt, then a success, complete the task. It cannot report
 * failures, call the admin API, forge an outcome for a retry it did not
 * receive, answer the same retry twice, or read failures, events or the
 * sidecar's inbox. The sidecar, for its part, was refused nothing.
 */
static void
test_worker(void **state)
{
    struct it_env *e = auth_env(state, "auth-worker", NULL, false);
    struct who *svc = user_of(e, "service");
    struct who *wk = user_of(e, "worker");
    struct it_recorder *rec = it_env_recorder(e, wk->nc, "dlq.retry.>", "workers", 16, true);
    const struct it_step plan[] = {{IT_ACT_FAIL, "503 Service Unavailable", "HTTPError"}};

    assert_non_null(rec);
    it_recorder_set_plan(rec, plan, 1, (struct it_step){IT_ACT_OK, NULL, NULL});
    natsConnection_Flush(wk->nc);
    report(svc, "wk-1", "immediate");
    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, "wk-1", "completed", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "the worker's replies complete wk-1: %s", dump);
    free(dump);
    IT_CHECK(it_json_int(t, "retry_count") == 1, "the worker's failed attempt was taken (retry_count 1)");
    json_decref(t);
    IT_CHECK(it_rec_count(rec) == 2, "the worker saw %zu attempts, want 2", it_rec_count(rec));
    const struct it_rec_msg *last = it_rec_get(rec, 1);
    IT_CHECK(last->reply && strncmp(last->reply, "_INBOX_dlq-sidecar.", 19) == 0,
             "the retry's reply subject is the sidecar's private inbox: %s",
             last->reply ? last->reply : "(none)");

    /* Answering the same retry again: allow_responses allows one answer. */
    try_publish(wk, last->reply, NULL, "{\"ok\":true}");
    /* An outcome for a retry it never received. */
    char forged[256];
    snprintf(forged, sizeof forged, "%.*s.00000000000000ff",
             (int)(strrchr(last->reply, '.') - last->reply), last->reply);
    try_publish(wk, forged, NULL, "{\"ok\":true}");
    try_publish(wk, "dlq.failed.orders", NULL, "{\"task_id\":\"wk-forged\",\"task\":{},\"error\":\"x\"}");
    try_publish(wk, "dlq.admin.stats", "_INBOX_worker.x", "");
    try_publish(wk, "dlq.events.failed", NULL, "{}");
    char st[32];
    IT_CHECK(strcmp(it_task_status(e->nc, "wk-forged", st, sizeof st), "absent") == 0,
             "the worker's failure report was refused: wk-forged is %s", st);

    static const char *const denied_subs[] = {"dlq.failed.>", "_INBOX_dlq-sidecar.>", "_INBOX.>",
                                              "dlq.events.>", "dlq.admin.*"};
    for (size_t i = 0; i < SC_ARRAY_LEN(denied_subs); i++)
        natsSubscription_Destroy(try_subscribe(wk, denied_subs[i]));

    IT_CHECK(!file_has(e->dmn.log, "Permissions Violation"),
             "the sidecar logged a permissions violation (%s)", e->dmn.log);
    no_violation_of(e, "dlq-sidecar");
    no_violation_of(e, "service");
    e->passed = true;
}

/*
 * An operator runs every kind of admin verb, reads and writes, with nats.c,
 * with dlqctl --inbox-prefix (and $NATS_INBOX_PREFIX) and with the nats CLI
 * --inbox-prefix; dlqctl on the default inbox exits 3 naming the refused
 * subscription. The operator cannot read other users' inboxes, report
 * failures or publish retries.
 */
static void
test_operator(void **state)
{
    struct it_env *e = auth_env(state, "auth-operator", NULL, false);
    struct who *svc = user_of(e, "service");
    struct who *op = &whos[0];
    char url[256];

    /* The services' acknowledgements: the operator may not read them (the service, the control, does). */
    natsSubscription *acks = try_subscribe(op, "_INBOX_service.>");
    report(svc, "op-1", "never");
    report(svc, "op-2", "never");
    report(svc, "op-3", "never");
    it_sleep_ms(QUIET_MS);
    IT_CHECK(pending_msgs(acks) == 0, "the operator received %d acknowledgement(s) of the service",
             pending_msgs(acks));
    natsSubscription_Destroy(acks);
    static const char *const reads[] = {"health", "stats", "list", "groups"};
    for (size_t i = 0; i < SC_ARRAY_LEN(reads); i++) {
        char subj[64];
        snprintf(subj, sizeof subj, "dlq.admin.%s", reads[i]);
        json_t *r = it_request_json(e->nc, subj, "", IT_REQUEST_MS);
        IT_CHECK(r && !json_object_get(r, "error"), "the operator's %s", reads[i]);
        json_decref(r);
    }
    json_t *r = it_admin_task(e->nc, "archive", "op-1");
    IT_CHECK(it_json_int(r, "archived") == 1, "the operator archives op-1");
    json_decref(r);
    r = it_request_json(e->nc, "dlq.admin.pause", "", IT_REQUEST_MS);
    IT_CHECK(r && !json_object_get(r, "error"), "the operator pauses");
    json_decref(r);
    r = it_request_json(e->nc, "dlq.admin.resume", "", IT_REQUEST_MS);
    IT_CHECK(r && !json_object_get(r, "error"), "the operator resumes");
    json_decref(r);
    r = it_request_json(e->nc, "$SRV.INFO.dlq-sidecar", "", IT_REQUEST_MS);
    IT_CHECK(it_json_str(r, "id") != NULL, "the operator reaches $SRV.INFO.dlq-sidecar");
    json_decref(r);

    /* dlqctl, with the option and with the environment variable. */
    snprintf(url, sizeof url, "nats://operator:%s@127.0.0.1:%d", password_of("operator"),
             e->srv.port);
    char *const get[] = {DLQCTL_BIN, "--server", url, "--inbox-prefix", "_INBOX_operator",
                         "--json", "get", "op-2", NULL};
    IT_CHECK(run(e->dir, NULL, get) == 0 && file_has(run_file(e->dir, "out"), "\"op-2\""),
             "dlqctl --inbox-prefix _INBOX_operator get op-2");
    char *const clear[] = {DLQCTL_BIN, "--server", url, "--json", "clear", "--subject",
                           "dlq.failed.orders", "--status", "parked", "--confirm", NULL};
    IT_CHECK(run(e->dir, "NATS_INBOX_PREFIX=_INBOX_operator", clear) == 0 &&
                 file_has(run_file(e->dir, "out"), "\"cleared\":2"),
             "NATS_INBOX_PREFIX=_INBOX_operator dlqctl clear (op-2 and op-3)");
    char st[32];
    IT_CHECK(strcmp(it_task_status(e->nc, "op-2", st, sizeof st), "absent") == 0,
             "op-2 was cleared: %s", st);

    /* The audit names the operator: its requests come back on its own inbox prefix, which no one else may read. */
    r = it_request_json(e->nc, "dlq.admin.audit", "{\"limit\":4}", IT_REQUEST_MS);
    static const char *const audited[][2] = {{"clear", "2"}, {"resume", "0"}, {"pause", "0"}, {"archive", "1"}};
    IT_CHECK(json_array_size(json_object_get(r, "records")) == 4, "4 audit records: %s", it_json_dump(r));
    for (size_t i = 0; i < SC_ARRAY_LEN(audited); i++) {
        const json_t *rec = json_array_get(json_object_get(r, "records"), i);
        IT_CHECK(!strcmp(it_json_str(rec, "principal") ? it_json_str(rec, "principal") : "", "nats:operator") &&
                     !strcmp(it_json_str(rec, "verb") ? it_json_str(rec, "verb") : "", audited[i][0]) &&
                     it_json_int(rec, "count") == atoi(audited[i][1]),
                 "record %zu: %s by nats:operator, count %s: %s", i, audited[i][0], audited[i][1],
                 it_json_dump(rec));
    }
    json_decref(r);
    char *const audit[] = {DLQCTL_BIN, "--server", url, "--inbox-prefix", "_INBOX_operator", "audit",
                           "--limit", "1", NULL};
    IT_CHECK(run(e->dir, NULL, audit) == 0 && file_has(run_file(e->dir, "out"), "nats:operator") &&
                 file_has(run_file(e->dir, "out"), "PRINCIPAL") &&
                 file_has(run_file(e->dir, "out"), "\"dlq.failed.orders\""),
             "dlqctl audit: a table with the operator's clear (%s)", run_file(e->dir, "out"));

    /* dlqctl on the default inbox: exit 3, and it says why. */
    char *const stats[] = {DLQCTL_BIN, "--server", url, "--timeout", "1500", "stats", NULL};
    int rc = run(e->dir, NULL, stats);
    IT_CHECK(rc == 3, "dlqctl stats without --inbox-prefix exits 3, got %d", rc);
    IT_CHECK(file_has(run_file(e->dir, "err"), "Permissions Violation for Subscription to") &&
                 file_has(run_file(e->dir, "err"), "--inbox-prefix"),
             "dlqctl names the refused inbox and the option (%s)", run_file(e->dir, "err"));

    /* The nats CLI with --inbox-prefix. */
    char *const cli[] = {NATS_CLI_BIN, "--no-context", "-s", url, "--inbox-prefix",
                         "_INBOX_operator", "request", "dlq.admin.stats", "", "--raw", NULL};
    IT_CHECK(run(e->dir, NULL, cli) == 0 && file_has(run_file(e->dir, "out"), "\"queue_size\""),
             "nats --inbox-prefix _INBOX_operator request dlq.admin.stats");

    static const char *const denied_subs[] = {"_INBOX_viewer.>", "_INBOX_dlq-sidecar.>",
                                              "_INBOX.>", "dlq.failed.>", "dlq.retry.>"};
    for (size_t i = 0; i < SC_ARRAY_LEN(denied_subs); i++)
        natsSubscription_Destroy(try_subscribe(op, denied_subs[i]));
    try_publish(op, "dlq.failed.orders", NULL, "{\"task_id\":\"op-forged\",\"task\":{},\"error\":\"x\"}");
    try_publish(op, "dlq.retry.orders", NULL, "{}");
    try_publish(op, "_INBOX_dlq-sidecar.x.0.0000000000000001", NULL, "{\"ok\":true}");
    no_violation_of(e, "dlq-sidecar");
    e->passed = true;
}

/*
 * A viewer reads (health, stats, list, get, classify, discovery; with
 * nats.c and dlqctl --inbox-prefix _INBOX_viewer) and is refused every verb
 * that changes tasks or the retry processor: retry, archive, clear, pause,
 * resume. Nothing changes; dlqctl clear exits 3 naming the refused publish.
 */
static void
test_viewer(void **state)
{
    struct it_env *e = auth_env(state, "auth-viewer", NULL, false);
    struct who *svc = user_of(e, "service");
    struct who *vw = user_of(e, "viewer");
    char url[256];

    report(svc, "vw-1", "never");
    static const char *const reads[] = {"health", "stats", "list", "groups", "audit"};
    for (size_t i = 0; i < SC_ARRAY_LEN(reads); i++) {
        char subj[64];
        snprintf(subj, sizeof subj, "dlq.admin.%s", reads[i]);
        json_t *r = it_request_json(vw->nc, subj, "", IT_REQUEST_MS);
        IT_CHECK(r && !json_object_get(r, "error"), "the viewer's %s", reads[i]);
        json_decref(r);
    }
    json_t *r = it_admin_get(vw->nc, "vw-1");
    IT_CHECK(it_json_str(r, "status") && strcmp(it_json_str(r, "status"), "pending") == 0,
             "the viewer gets vw-1");
    json_decref(r);
    r = it_request_json(vw->nc, "dlq.admin.classify", "{\"error\":\"ECONNRESET\"}", IT_REQUEST_MS);
    IT_CHECK(it_json_str(r, "category") && strcmp(it_json_str(r, "category"), "network") == 0,
             "the viewer classifies");
    json_decref(r);
    r = it_request_json(vw->nc, "$SRV.PING.dlq-sidecar", "", IT_REQUEST_MS);
    IT_CHECK(it_json_str(r, "id") != NULL, "the viewer reaches $SRV.PING.dlq-sidecar");
    json_decref(r);
    r = it_admin_stats(e->nc);
    char *before = it_json_dump(json_object_get(r, "lifetime_stats"));
    json_decref(r);

    static const char *const writes[][2] = {
        {"dlq.admin.retry", "{\"task_id\":\"vw-1\"}"},
        {"dlq.admin.archive", "{\"task_id\":\"vw-1\"}"},
        {"dlq.admin.clear", "{\"all\":true,\"confirm\":true}"},
        {"dlq.admin.pause", ""},
        {"dlq.admin.resume", ""},
    };
    for (size_t i = 0; i < SC_ARRAY_LEN(writes); i++) {
        natsMsg *m = NULL;
        natsStatus s = natsConnection_RequestString(&m, vw->nc, writes[i][0], writes[i][1], 1000);
        IT_CHECK(s != NATS_OK && m == NULL, "the viewer got an answer on %s: %s", writes[i][0],
                 m ? natsMsg_GetData(m) : "");
        expect_refused(vw, "Publish", writes[i][0]);
    }
    char st[32];
    IT_CHECK(strcmp(it_task_status(e->nc, "vw-1", st, sizeof st), "pending") == 0,
             "the viewer changed nothing: vw-1 is %s", st);
    r = it_admin_stats(e->nc);
    char *after = it_json_dump(json_object_get(r, "lifetime_stats"));
    IT_CHECK(strcmp(before, after) == 0, "lifetime_stats changed:\n  %s\n  %s", before, after);
    IT_CHECK(json_is_false(json_object_get(json_object_get(r, "retry_processor"), "paused")) ||
                 !json_object_get(json_object_get(r, "retry_processor"), "paused"),
             "the viewer's pause was refused");
    json_decref(r);
    free(before);
    free(after);

    snprintf(url, sizeof url, "nats://viewer:%s@127.0.0.1:%d", password_of("viewer"),
             e->srv.port);
    char *const list[] = {DLQCTL_BIN, "--server", url, "--inbox-prefix", "_INBOX_viewer", "list",
                          NULL};
    IT_CHECK(run(e->dir, NULL, list) == 0 && file_has(run_file(e->dir, "out"), "vw-1"),
             "dlqctl --inbox-prefix _INBOX_viewer list");
    char *const clear[] = {DLQCTL_BIN, "--server", url, "--inbox-prefix", "_INBOX_viewer",
                           "--timeout", "1500", "clear", "--all", "--confirm", NULL};
    int rc = run(e->dir, NULL, clear);
    IT_CHECK(rc == 3 && file_has(run_file(e->dir, "err"),
                                 "Permissions Violation for Publish to \"dlq.admin.clear\""),
             "dlqctl clear as viewer exits 3 (got %d) naming the refused publish (%s)", rc,
             run_file(e->dir, "err"));
    natsSubscription_Destroy(try_subscribe(vw, "_INBOX_operator.>"));
    natsSubscription_Destroy(try_subscribe(vw, "_INBOX.>"));
    try_publish(vw, "dlq.failed.orders", NULL, "{}");
    no_violation_of(e, "dlq-sidecar");
    e->passed = true;
}

static struct it_daemon second; /* test_jetstream_cluster_mode's second member */

/* stop_second() is test_jetstream_cluster_mode's teardown: the second member, then the env. */
static int
stop_second(void **state)
{
    it_daemon_stop(&second);
    return it_teardown(state);
}

/*
 * The user dlq-sidecar-js runs the sidecar in JetStream and cluster mode
 * (ingest.mode jetstream, store.backend jetstream, cluster.enabled; two
 * members, s0 and s1) on a JetStream server: once both own partitions,
 * failures are taken from the stream (the PubAck on the service's inbox),
 * the member that pulls one it does not own forwards it to the owner
 * (dlq.cluster.part.<p>), workers complete every task, the operator reads
 * them through any member and lists the members (dlqctl members,
 * dlq.cluster.admin.health), leases are renewed, and neither the server
 * nor a sidecar saw a permissions violation of the sidecar's user.
 * (advisories.streams is not run here: $JS.ACK.DLQ_ADVISORIES.> is untested.)
 */
static void
test_jetstream_cluster_mode(void **state)
{
    static const char *const extra[] = {"ingest.mode=jetstream", "store.backend=jetstream",
                                        "cluster.enabled=true", "cluster.member_id=s0",
                                        "cluster.lease_ms=3000", "retry.timeout_ms=5000", NULL};
    struct it_env *e = auth_env(state, "auth-js", extra, true);
    struct who *svc = user_of(e, "service");
    struct who *wk = user_of(e, "worker");
    struct it_recorder *rec = it_env_recorder(e, wk->nc, "dlq.retry.>", "workers", 64, false);
    const char *flags[16];
    char url[256], sdir[IT_PATH_MAX + 8];
    size_t nf = 0;

    assert_non_null(rec);
    it_recorder_set_plan(rec, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    natsConnection_Flush(wk->nc);
    flags[nf++] = "nats.user=dlq-sidecar-js";
    flags[nf++] = "nats.password=sc-pw-7f3a";
    flags[nf++] = "nats.inbox_prefix=_INBOX_dlq-sidecar";
    for (size_t i = 0; extra[i]; i++)
        flags[nf++] = strcmp(extra[i], "cluster.member_id=s0") ? extra[i] : "cluster.member_id=s1";
    flags[nf] = NULL;
    snprintf(sdir, sizeof sdir, "%s/s1", e->dir);
    assert_int_equal(mkdir(sdir, 0700), 0);
    second.exit_status = -1;
    assert_int_equal(it_daemon_start(&second, sdir, e->srv.url, flags), 0);

    /* Both members own partitions (each answers dlq.cluster.admin.health for itself). */
    bool balanced = false;
    for (int64_t until = sc_now_mono_ms() + IT_WAIT_MS * 2; !balanced && sc_now_mono_ms() < until;) {
        json_t *r[4] = {NULL};
        size_t n = it_gather_json_in(e->nc, "_INBOX_operator", "dlq.cluster.admin.health", NULL, 500, r, 4);
        int owning = 0;
        for (size_t i = 0; i < n; i++) {
            if (it_json_int(r[i], "reply.cluster.partitions_owned") > 0)
                owning++;
            json_decref(r[i]);
        }
        balanced = owning == 2;
    }
    IT_CHECK(balanced, "both members own partitions");

    enum { NTASKS = 16 };
    for (int i = 0; i < NTASKS; i++) {
        char id[32];
        struct it_envelope env;
        snprintf(id, sizeof id, "js-%d", i);
        it_envelope_init(&env);
        env.task_id = id;
        env.error = "connection refused";
        env.retry_policy = "immediate";
        json_t *ack = it_request_envelope(svc->nc, "dlq.failed.orders", &env);
        char *dump = it_json_dump(ack);
        IT_CHECK(it_json_str(ack, "stream") && strcmp(it_json_str(ack, "stream"), "DLQ_FAILED") == 0,
                 "the service's failure is in the stream (PubAck on its inbox): %s", dump);
        free(dump);
        json_decref(ack);
    }
    for (int i = 0; i < NTASKS; i++) {
        char id[32];
        bool ok = false;
        snprintf(id, sizeof id, "js-%d", i);
        json_t *t = it_wait_task_status(e->nc, id, "completed", IT_WAIT_MS, &ok);
        char *dump = it_json_dump(t);
        IT_CHECK(ok, "the worker completes %s: %s", id, dump);
        free(dump);
        json_decref(t);
    }
    snprintf(url, sizeof url, "nats://operator:%s@127.0.0.1:%d", password_of("operator"),
             e->srv.port);
    char *const members[] = {DLQCTL_BIN, "--server", url, "--inbox-prefix", "_INBOX_operator",
                             "--json", "members", NULL};
    int rc = run(e->dir, NULL, members);
    IT_CHECK(rc == 0 && file_has(run_file(e->dir, "out"), "\"s0\"") &&
                 file_has(run_file(e->dir, "out"), "\"s1\""),
             "dlqctl members as the operator lists s0 and s1 (exit %d, %s)", rc,
             run_file(e->dir, "out"));

    /*
     * Forwarding and lease renewals happened (so their subjects were used, not
     * only allowed). A member's stats are for sidecars only: asked as the
     * sidecar's user.
     */
    struct who *peer = connect_as(e, "dlq-sidecar-js", password_of("dlq-sidecar"),
                                  "_INBOX_dlq-sidecar");
    assert_non_null(peer);
    json_t *r[4] = {NULL};
    /* under the sidecar's prefix a member answers only a member-shaped inbox: "<prefix>.<name>.adm.<...>" */
    size_t n = it_gather_json_in(peer->nc, "_INBOX_dlq-sidecar.peer.adm", "dlq.cluster.admin.stats",
                                 NULL, 1000, r, 4);
    int64_t forwarded = 0, renewals = 0;
    for (size_t i = 0; i < n; i++) {
        forwarded += it_json_int(r[i], "reply.takeover.forwarded") > 0
                         ? it_json_int(r[i], "reply.takeover.forwarded") : 0;
        json_decref(r[i]);
    }
    n = it_gather_json_in(e->nc, "_INBOX_operator", "dlq.cluster.admin.health", NULL, 1000, r, 4);
    for (size_t i = 0; i < n; i++) {
        renewals += it_json_int(r[i], "reply.cluster.lease_renewals") > 0
                        ? it_json_int(r[i], "reply.cluster.lease_renewals") : 0;
        json_decref(r[i]);
    }
    fprintf(stderr, "[auth-js] forwarded %lld, lease renewals %lld\n", (long long)forwarded,
            (long long)renewals);

    /*
     * Under the sidecar's inbox prefix a member answers only a member's
     * question ("<prefix>.<nuid>.adm.<id>.<token>"): a viewer that names a
     * member's other inboxes as the reply (nats.c's request inbox, the pull
     * consumer's) gets nothing written there; the member-shaped control gets
     * both members' answers (red-team F1/F2). The bare prefix is asked too:
     * nobody may watch it here, so this only shows that nothing breaks (the
     * check once read past the end of such a reply, inside nats.c's message
     * buffer, where no sanitizer sees it).
     */
    {
        struct who *vw = user_of(e, "viewer");
        natsSubscription *spy = NULL;
        natsMsg *m = NULL;
        int inside = 0, control = 0;
        static const char *const bad[] = {"_INBOX_dlq-sidecar.SPY", "_INBOX_dlq-sidecar.SPY.q",
                                          "_INBOX_dlq-sidecar.SPY.x.adm", "_INBOX_dlq-sidecar"};

        IT_CHECK(natsConnection_SubscribeSync(&spy, peer->nc, "_INBOX_dlq-sidecar.SPY.>") == NATS_OK &&
                     natsConnection_Flush(peer->nc) == NATS_OK,
                 "the sidecar user watches its prefix");
        natsSubscription *spy0 = NULL;
        IT_CHECK(natsConnection_SubscribeSync(&spy0, peer->nc, "_INBOX_dlq-sidecar.SPY") == NATS_OK &&
                     natsConnection_Flush(peer->nc) == NATS_OK,
                 "and its bare inbox");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            IT_CHECK(natsConnection_PublishRequestString(vw->nc, "dlq.cluster.admin.health", bad[i],
                                                         "") == NATS_OK,
                     "the viewer asks with reply %s", bad[i]);
        natsConnection_Flush(vw->nc);
        while (natsSubscription_NextMsg(&m, spy, 1500) == NATS_OK) {
            inside++;
            natsMsg_Destroy(m);
        }
        while (natsSubscription_NextMsg(&m, spy0, 200) == NATS_OK) {
            inside++;
            natsMsg_Destroy(m);
        }
        IT_CHECK(inside == 0, "%d answers were written into the sidecar's own inboxes", inside);
        IT_CHECK(natsConnection_PublishRequestString(vw->nc, "dlq.cluster.admin.health",
                                                     "_INBOX_dlq-sidecar.SPY.adm.1.0123456789abcdef",
                                                     "") == NATS_OK,
                 "the viewer asks with a member-shaped reply");
        natsConnection_Flush(vw->nc);
        while (natsSubscription_NextMsg(&m, spy, 1500) == NATS_OK) {
            control++;
            natsMsg_Destroy(m);
        }
        IT_CHECK(control == 2, "the control: %d member answers, want 2", control);
        natsSubscription_Destroy(spy);
        natsSubscription_Destroy(spy0);
    }
    IT_CHECK(renewals > 0, "leases were renewed");
    IT_CHECK(forwarded > 0, "a member forwarded a failure it pulled to its owner");
    IT_CHECK(!file_has(e->dmn.log, "Permissions Violation") &&
                 !file_has(second.log, "Permissions Violation"),
             "a sidecar logged a permissions violation (%s, %s)", e->dmn.log, second.log);
    no_violation_of(e, "dlq-sidecar-js");
    IT_CHECK(it_daemon_stop(&second) == 0, "the second member stops cleanly");
    e->passed = true;
}

/*
 * nats.inbox_prefix is validated at start-up: a wildcard stops the sidecar
 * with exit code 2 and a message naming the key, the value and the form.
 */
static void
test_bad_inbox_prefix(void **state)
{
    struct it_env *e = calloc(1, sizeof *e);
    const char *tmp = getenv("TMPDIR");
    static const char *const extra[] = {"nats.inbox_prefix=_INBOX.>", NULL};

    assert_non_null(e);
    *state = e;
    e->name = "auth-bad-prefix";
    e->dmn.exit_status = -1;
    snprintf(e->dir, sizeof e->dir, "%s/dlq-it-auth-bad-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(e->dir));
    assert_int_equal(it_daemon_start(&e->dmn, e->dir, "nats://127.0.0.1:1", extra), 0);
    for (int i = 0; i < 500 && it_daemon_alive(&e->dmn); i++)
        it_sleep_ms(20);
    IT_CHECK(!it_daemon_alive(&e->dmn), "the sidecar did not stop on a bad nats.inbox_prefix");
    int rc = it_daemon_stop(&e->dmn);
    IT_CHECK(rc == 2, "exit status %d, want 2", rc);
    IT_CHECK(file_has(e->dmn.log, "nats.inbox_prefix: '_INBOX.>' is not a subject prefix of 1-64 "
                                  "bytes: tokens of A-Z a-z 0-9 _ - joined by '.', no wildcard"),
             "the message names the key, the value and the form (%s)", e->dmn.log);
    /* a prefix under the sidecar's own subjects (its inboxes would take in the workers' replies as failures) */
    static const char *const under[] = {"nats.inbox_prefix=dlq.failed", NULL};
    assert_int_equal(it_daemon_start(&e->dmn, e->dir, "nats://127.0.0.1:1", under), 0);
    for (int i = 0; i < 500 && it_daemon_alive(&e->dmn); i++)
        it_sleep_ms(20);
    rc = it_daemon_stop(&e->dmn);
    IT_CHECK(rc == 2, "exit status %d for an inbox prefix under dlq, want 2", rc);
    IT_CHECK(file_has(e->dmn.log, "nats.inbox_prefix: 'dlq.failed' overlaps subjects.prefix ('dlq')"),
             "the message names both keys (%s)", e->dmn.log);
    e->dmn.exit_status = 0; /* the expected exit is no failure of the teardown */
    e->passed = true;
}

/*
 * Two groups: the core-mode users (ctest integration_auth), and with the
 * argument "jetstream" the JetStream and cluster mode user
 * (integration_auth_jetstream, labelled jetstream and cluster like the
 * other suites that need a JetStream server).
 */
int
main(int argc, char **argv)
{
    const struct CMUnitTest core[] = {
        cmocka_unit_test_teardown(test_service, it_teardown),
        cmocka_unit_test_teardown(test_worker, it_teardown),
        cmocka_unit_test_teardown(test_operator, it_teardown),
        cmocka_unit_test_teardown(test_viewer, it_teardown),
        cmocka_unit_test_teardown(test_bad_inbox_prefix, it_teardown),
    };
    const struct CMUnitTest js[] = {
        cmocka_unit_test_teardown(test_jetstream_cluster_mode, stop_second),
    };
    if (getenv("DLQ_IT_FILTER")) /* e.g. DLQ_IT_FILTER='test_viewer' to run one */
        cmocka_set_test_filter(getenv("DLQ_IT_FILTER"));
    if (argc > 1 && strcmp(argv[1], "jetstream") == 0)
        return cmocka_run_group_tests_name("integration_auth_jetstream", js, NULL, NULL);
    return cmocka_run_group_tests_name("integration_auth", core, NULL, NULL);
}
