/* test_close.c - integration: the connection's close (sc_conn_free()) while nats.c's delivery threads are busy, at SIGTERM and at a failed start. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>

#include "harness.h"

/*
 * These tests are meant for the sanitizer builds as much as for the plain
 * one (-DCMAKE_C_FLAGS=-fsanitize=...): a delivery thread still inside a callback when
 * sc_conn_free() frees what it uses is a heap-use-after-free under ASan and
 * a race under TSan, and the sanitizer's report lands in the daemon's log
 * (its stderr). Each test asserts the daemon exits on its own, with the
 * status it should have, and that its log holds no sanitizer report.
 */

/* One publisher thread: body (len bytes) to subject, with reply when set, until stop. */
struct flood {
    const char *url;
    const char *subject;
    const char *reply;
    const void *body;
    size_t len;
    volatile int stop; /* use __atomic */
    uint64_t sent;
    int rc;            /* 0 once it ran; -1: it could not connect or publish */
    pthread_t th;
};

static void *
flood_main(void *arg)
{
    struct flood *f = arg;
    natsConnection *nc = it_connect(f->url, "it-close-flood");

    f->rc = -1;
    if (!nc)
        return NULL;
    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        natsStatus s = f->reply ? natsConnection_PublishRequest(nc, f->subject, f->reply, f->body,
                                                                (int)f->len)
                                : natsConnection_Publish(nc, f->subject, f->body, (int)f->len);
        if (s != NATS_OK && s != NATS_SLOW_CONSUMER)
            break;
        /* paced by round trips: nats.c's buffer must not grow without bound */
        if (++f->sent % 500 == 0 && natsConnection_FlushTimeout(nc, 5000) != NATS_OK)
            continue; /* the server is busy: go on */
    }
    f->rc = 0;
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
    return NULL;
}

static void
flood_start(struct flood *f)
{
    IT_CHECK(pthread_create(&f->th, NULL, flood_main, f) == 0, "flood thread for %s", f->subject);
}

static void
flood_stop(struct flood *f)
{
    __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
    pthread_join(f->th, NULL);
}

/*
 * big_failure() packs, into out, a failure envelope for dlq.failed.* whose
 * task is an array of n small integers: codec_decode() walks every element,
 * so sc_ingest_prepare() (the ingest subscription's prep function, on
 * nats.c's delivery thread) takes a while over each one. Parked ("never"):
 * no retry traffic.
 */
static void
big_failure(struct sc_buf *out, size_t n)
{
    msgpack_sbuffer task;
    msgpack_packer pk;
    struct it_envelope env;

    msgpack_sbuffer_init(&task);
    msgpack_packer_init(&pk, &task, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_uint8(&pk, (uint8_t)(i & 0x7f)); /* a positive fixint: one byte */
    it_envelope_init(&env);
    env.task_id = "close-big";
    env.task_mp = task.data;
    env.task_len = task.size;
    env.error = "boom";
    env.retry_policy = "never";
    IT_CHECK(it_envelope_pack(&env, out) == 0, "pack a failure of %zu task bytes", task.size);
    msgpack_sbuffer_destroy(&task);
}

/* sanitizer_report() tells whether the log at path holds a sanitizer's report (ASan, UBSan, TSan, LSan). */
static bool
sanitizer_report(const char *path)
{
    char *text = it_slurp(path);
    bool found = strstr(text, "Sanitizer") || strstr(text, "runtime error:");

    free(text);
    return found;
}

/* An admin verb as a request whose answer goes nowhere: the admin subscription is not drained at shutdown. */
static const char ADMIN_BODY[] = "{}";

/*
 * 1. SIGTERM while requests flood the admin subscription (not drained at
 * shutdown: its delivery thread is inside on_msg() when the connection
 * closes) and failures that take a while to decode flood the prepared
 * ingest subscription. The sidecar exits by itself within a minute, with
 * status 0 or, when the drain could not take everything in its
 * shutdown.drain_ms, 1 with the loss logged; the log holds no sanitizer
 * report.
 */
static void
test_sigterm_under_floods(void **state)
{
    const char *flags[] = {"log.level=info", "shutdown.drain_ms=1500", "max_size=10000000", NULL};
    struct it_env *e = it_env_start("close-sigterm", flags);
    assert_non_null(e);
    *state = e;
    struct sc_buf sb;
    sc_buf_init(&sb, 1 << 20);
    big_failure(&sb, 150000);
    struct flood admin[2] = {{.url = e->srv.url, .subject = "dlq.admin.health", .reply = "it.nobody.health",
                              .body = ADMIN_BODY, .len = sizeof ADMIN_BODY - 1},
                             {.url = e->srv.url, .subject = "dlq.admin.stats", .reply = "it.nobody.stats",
                              .body = ADMIN_BODY, .len = sizeof ADMIN_BODY - 1}};
    struct flood ingest = {.url = e->srv.url, .subject = "dlq.failed.close", .body = sb.data,
                           .len = sb.len};

    for (int i = 0; i < 2; i++)
        flood_start(&admin[i]);
    flood_start(&ingest);
    it_sleep_ms(800);
    int64_t t_term = sc_now_mono_ms();
    kill(e->dmn.pid, SIGTERM);
    bool exited = it_daemon_wait_exit(&e->dmn, 60000);
    int64_t t_exit = sc_now_mono_ms();
    for (int i = 0; i < 2; i++)
        flood_stop(&admin[i]);
    flood_stop(&ingest);
    sc_buf_destroy(&sb);
    if (!exited)
        kill(e->dmn.pid, SIGKILL); /* it_env_stop() reaps it */
    fprintf(stderr,
            "[close-sigterm] %llu + %llu admin requests, %llu failures of %zu bytes published; "
            "exited %lld ms after SIGTERM (status %d)\n",
            (unsigned long long)admin[0].sent, (unsigned long long)admin[1].sent,
            (unsigned long long)ingest.sent, ingest.len, (long long)(t_exit - t_term),
            e->dmn.exit_status);
    IT_CHECK(admin[0].rc == 0 && admin[1].rc == 0 && ingest.rc == 0, "a flood thread failed");
    IT_CHECK(admin[0].sent > 0 && ingest.sent > 0, "test precondition: the floods published");
    IT_CHECK(exited, "the sidecar did not exit within 60 s of SIGTERM");
    char *log = it_slurp(e->dmn.log);
    bool loss_logged = strstr(log, "were not taken") != NULL;
    free(log);
    IT_CHECK(e->dmn.exit_status == 0 || (e->dmn.exit_status == 1 && loss_logged),
             "exit status %d: want 0, or 1 with the loss logged", e->dmn.exit_status);
    IT_CHECK(!sanitizer_report(e->dmn.log), "the daemon's log holds a sanitizer report");
    e->passed = true;
}

/* hold_port() binds and listens on a free 127.0.0.1 port; returns the socket (the port in *port) or -1. */
static int
hold_port(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

#define STARTS 10 /* failed starts per test: each one a chance for the race */

/*
 * failed_starts() starts STARTS sidecars one after another on e's server
 * (their dirs <e->dir>/<tag><i>), each with http.listen on port, which the
 * caller holds: each must exit by itself with status 1, name the port in
 * its log and log no sanitizer report. Returns how many did not (their
 * logs' tails printed).
 */
static int
failed_starts(struct it_env *e, int port, const char *tag)
{
    char listen_flag[64], dir[IT_PATH_MAX + 16];
    snprintf(listen_flag, sizeof listen_flag, "http.listen=127.0.0.1:%d", port);
    const char *flags[] = {"log.level=info", listen_flag, NULL};
    int bad = 0;
    for (int i = 0; i < STARTS; i++) {
        struct it_daemon d = {0};
        snprintf(dir, sizeof dir, "%s/%s%d", e->dir, tag, i);
        IT_CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
        IT_CHECK(it_daemon_start(&d, dir, e->srv.url, flags) == 0, "start sidecar %d", i);
        bool exited = it_daemon_wait_exit(&d, 60000);
        if (!exited)
            it_daemon_stop(&d);
        char *log = it_slurp(d.log);
        bool port_named = strstr(log, listen_flag + strlen("http.listen=")) != NULL;
        bool report = sanitizer_report(d.log);
        fprintf(stderr, "[%s] start %d: exited %s, status %d, port named %s%s\n", e->name, i,
                exited ? "yes" : "no", d.exit_status, port_named ? "yes" : "no",
                report ? ", SANITIZER REPORT" : "");
        if (!exited || d.exit_status != 1 || !port_named || report) {
            it_print_tail("failed start's log", d.log, 60);
            bad++;
        }
        free(log);
    }
    return bad;
}

/*
 * 2. A start that fails after its admin subscriptions are open (the HTTP
 * listener's port is taken) while requests flood the admin subscription:
 * sc_daemon_new() frees the connection with it not drained, nats.c's
 * delivery thread busy in on_msg(). Failures that take a while to decode
 * flood the ingest subjects too; the env's own sidecar takes them all, as
 * a failed start never subscribes to them (test 3). Each of STARTS starts
 * exits by itself with status 1, names the port in its log and logs no
 * sanitizer report.
 */
static void
test_failed_start_under_floods(void **state)
{
    /* The env's own sidecar shares the flood: a long drain lets it take its share before its exit. */
    const char *env_flags[] = {"shutdown.drain_ms=120000", NULL};
    struct it_env *e = it_env_start("close-failed-start", env_flags);
    assert_non_null(e);
    *state = e;
    int port = 0, held = hold_port(&port);
    IT_CHECK(held >= 0, "hold a port");
    struct sc_buf sb;
    sc_buf_init(&sb, 1 << 20);
    big_failure(&sb, 150000);
    struct flood admin = {.url = e->srv.url, .subject = "dlq.admin.health", .reply = "it.nobody.health",
                          .body = ADMIN_BODY, .len = sizeof ADMIN_BODY - 1};
    struct flood ingest = {.url = e->srv.url, .subject = "dlq.failed.close", .body = sb.data,
                           .len = sb.len};
    flood_start(&admin);
    flood_start(&ingest);
    it_sleep_ms(300);

    int bad = failed_starts(e, port, "s");
    flood_stop(&admin);
    flood_stop(&ingest);
    sc_buf_destroy(&sb);
    close(held);
    IT_CHECK(admin.rc == 0 && ingest.rc == 0, "a flood thread failed");
    IT_CHECK(bad == 0, "%d of %d failed starts did not exit cleanly with status 1 (see above)", bad,
             STARTS);
    e->passed = true;
}

/* One publisher of acknowledged failures: unique ids, each a request whose ack comes to acks_subject. */
struct acked {
    const char *url;
    volatile int stop;   /* use __atomic */
    uint64_t sent;
    uint64_t acked;      /* replies seen: use __atomic (nats.c's delivery thread) */
    int rc;              /* 0 once it ran; -1: it could not connect, subscribe or publish */
    natsConnection *nc;
    pthread_t th;
};

#define ACKS_SUBJECT "it.close.acks"

static void
on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct acked *a = closure;

    (void)nc;
    (void)sub;
    __atomic_add_fetch(&a->acked, 1, __ATOMIC_RELAXED);
    natsMsg_Destroy(msg);
}

/* About 10,000 failures a second, each with its own id, until stop. */
static void *
acked_main(void *arg)
{
    struct acked *a = arg;
    struct sc_buf sb;
    struct it_envelope env;
    char id[64];

    sc_buf_init(&sb, 1 << 16);
    it_envelope_init(&env);
    env.error = "upstream timeout";
    env.retry_policy = "never";
    while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
        for (int k = 0; k < 10; k++) {
            snprintf(id, sizeof id, "close-acked-%llu", (unsigned long long)a->sent);
            env.task_id = id;
            if (it_envelope_pack(&env, &sb) != 0 ||
                natsConnection_PublishRequest(a->nc, "dlq.failed.close", ACKS_SUBJECT, sb.data,
                                              (int)sb.len) != NATS_OK) {
                a->rc = -1;
                sc_buf_destroy(&sb);
                return NULL;
            }
            a->sent++;
        }
        it_sleep_ms(1);
    }
    sc_buf_destroy(&sb);
    return NULL;
}

/*
 * 3. A start that fails (the HTTP listener's port is taken) takes no
 * failure from the queue group: the ingest subscription is the last thing
 * a start opens, after every listener. Failures published as requests,
 * each with its own id, while STARTS such starts come and go, are all
 * acknowledged, by the env's own sidecar. (When a start subscribed to
 * ingest before it opened the HTTP listener, it took its share of what was
 * routed meanwhile and dropped it unanswered at its exit.)
 */
static void
test_failed_start_takes_no_failure(void **state)
{
    struct it_env *e = it_env_start("close-no-take", NULL);
    assert_non_null(e);
    *state = e;
    int port = 0, held = hold_port(&port);
    IT_CHECK(held >= 0, "hold a port");
    struct acked a = {.url = e->srv.url};
    natsSubscription *acks = NULL;
    a.nc = it_env_connect(e, "it-close-acked");
    IT_CHECK(a.nc != NULL, "connect the publisher");
    IT_CHECK(natsConnection_Subscribe(&acks, a.nc, ACKS_SUBJECT, on_ack, &a) == NATS_OK &&
                 natsConnection_Flush(a.nc) == NATS_OK,
             "subscribe to the acks");
    IT_CHECK(pthread_create(&a.th, NULL, acked_main, &a) == 0, "publisher thread");
    it_sleep_ms(300);

    int bad = failed_starts(e, port, "n");
    it_sleep_ms(300);
    __atomic_store_n(&a.stop, 1, __ATOMIC_RELEASE);
    pthread_join(a.th, NULL);
    int64_t deadline = sc_now_mono_ms() + 15000;
    while (__atomic_load_n(&a.acked, __ATOMIC_RELAXED) < a.sent && sc_now_mono_ms() < deadline)
        it_sleep_ms(50);
    uint64_t acked = __atomic_load_n(&a.acked, __ATOMIC_RELAXED);
    fprintf(stderr, "[close-no-take] %d failed starts; %llu failures sent, %llu acknowledged\n",
            STARTS, (unsigned long long)a.sent, (unsigned long long)acked);
    natsSubscription_Destroy(acks);
    close(held);
    IT_CHECK(a.rc == 0, "the publisher failed");
    IT_CHECK(a.sent > 1000, "test precondition: failures were published during the starts");
    IT_CHECK(bad == 0, "%d of %d failed starts did not exit cleanly with status 1 (see above)", bad,
             STARTS);
    IT_CHECK(acked == a.sent, "%llu of %llu failures were never acknowledged: a failed start took them",
             (unsigned long long)(a.sent - acked), (unsigned long long)a.sent);
    e->passed = true;
}

int
main(void)
{
    /*
     * The daemons inherit our environment: nats.c's leak of a message
     * split at the close (tests/lsan.supp) is not a report of ours.
     */
    char supp[IT_PATH_MAX + 128];
    const char *lsan = getenv("LSAN_OPTIONS");
    snprintf(supp, sizeof supp, "%s%ssuppressions=%s/../lsan.supp:print_suppressions=0", lsan ? lsan : "", lsan ? ":" : "",
             IT_SOURCE_DIR);
    setenv("LSAN_OPTIONS", supp, 1);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sigterm_under_floods, it_teardown),
        cmocka_unit_test_teardown(test_failed_start_under_floods, it_teardown),
        cmocka_unit_test_teardown(test_failed_start_takes_no_failure, it_teardown),
    };
    return cmocka_run_group_tests_name("integration_close", tests, NULL, NULL);
}
