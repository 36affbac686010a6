/* test_flow.c - integration: the "no workers" state (stats, list, get, /metrics, alert), dlqctl watch, dlqctl export/import byte for byte, and dlqctl retry --rate --wait. */
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
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"

#ifndef DLQCTL_BIN
#error "DLQCTL_BIN must name the dlqctl binary (set by tests/integration/CMakeLists.txt)"
#endif

/* ---- helpers ------------------------------------------------------------------------------------ */

static json_t *
admin(natsConnection *nc, const char *verb, const char *body)
{
    char subj[64];
    snprintf(subj, sizeof subj, "dlq.admin.%s", verb);
    return it_request_json(nc, subj, body, IT_REQUEST_MS);
}

/* Files task id on subject, parked (a validation error: policy never) unless category says otherwise. */
static void
send_task(struct it_env *e, const char *subject, const char *id, const char *category,
          const void *task, size_t len)
{
    struct it_envelope env;
    json_t *ack;

    it_envelope_init(&env);
    env.task_id = id;
    env.error = "boom 42";
    env.error_type = "ValueError";
    env.error_category = category;
    env.task_mp = task;
    env.task_len = len;
    ack = it_request_envelope(e->nc, subject, &env);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest of %s", id);
    json_decref(ack);
}

/* Whether stats lists subject among retry_subjects_without_workers. */
static bool
stats_lists(natsConnection *nc, const char *subject, int64_t *count)
{
    json_t *st = it_admin_stats(nc), *v;
    size_t i;
    bool found = false;

    *count = it_json_int(st, "retry_subjects_without_workers_count");
    json_array_foreach(json_object_get(st, "retry_subjects_without_workers"), i, v)
        found = found || (json_is_string(v) && strcmp(json_string_value(v), subject) == 0);
    json_decref(st);
    return found;
}

/* event_wait() waits for a dlq.events.alert message for name in state; returns its JSON. */
static json_t *
event_wait(struct it_recorder *r, const char *name, const char *state, int timeout_ms)
{
    int64_t end = sc_now_mono_ms() + timeout_ms;
    do {
        size_t n = it_rec_count(r);
        for (size_t i = 0; i < n; i++) {
            const struct it_rec_msg *m = it_rec_get(r, i);
            json_t *j = m->body ? json_loadb(m->body, m->len, 0, NULL) : NULL;
            if (j && it_json_str(j, "name") && strcmp(it_json_str(j, "name"), name) == 0 &&
                it_json_str(j, "state") && strcmp(it_json_str(j, "state"), state) == 0)
                return j;
            json_decref(j);
        }
        it_sleep_ms(20);
    } while (sc_now_mono_ms() < end);
    return NULL;
}

/* ---- the "no workers" state -------------------------------------------------------------------- */

/*
 * A task whose retry subject has no subscriber: stats lists the subject,
 * list and get say no_workers, /metrics counts it, and the alert fires
 * after alerts.no_workers_after_s; a worker subscribes and answers: the
 * subject leaves the list, the gauge is 0 and the alert resolves.
 */
static void
test_no_workers(void **state)
{
    int port;
    const char *flags[] = {"alerts.check_interval_ms=50", "alerts.no_workers_after_s=1",
                           "backoff.max_delay_ms=500", NULL};
    struct it_env *e = it_env_start_http("flow-noworkers", flags, &port);
    int64_t count = -1;
    json_t *j;
    char *m, *dump;

    assert_non_null(e);
    *state = e;
    struct it_recorder *alerts = it_env_recorder(e, e->nc, "dlq.events.alert", NULL, 64, true);
    assert_non_null(alerts);

    send_task(e, "dlq.failed.nw", "nw-1", "transient", NULL, 0);
    int64_t end = sc_now_mono_ms() + IT_WAIT_MS;
    while (!stats_lists(e->nc, "dlq.retry.nw", &count) && sc_now_mono_ms() < end)
        it_sleep_ms(50);
    IT_CHECK(stats_lists(e->nc, "dlq.retry.nw", &count) && count == 1,
             "stats lists dlq.retry.nw (count %lld)", (long long)count);

    /* The task is pending (deferred) between deferrals: list and get say no_workers. */
    bool seen_list = false, seen_get = false;
    end = sc_now_mono_ms() + IT_WAIT_MS;
    while ((!seen_list || !seen_get) && sc_now_mono_ms() < end) {
        j = admin(e->nc, "list", "{\"subject\":\"dlq.failed.nw\"}");
        json_t *t = json_array_get(json_object_get(j, "tasks"), 0);
        seen_list = seen_list || (t && json_is_true(json_object_get(t, "no_workers")));
        json_decref(j);
        j = it_admin_get(e->nc, "nw-1");
        seen_get = seen_get || json_is_true(json_object_get(j, "no_workers"));
        json_decref(j);
        it_sleep_ms(20);
    }
    IT_CHECK(seen_list && seen_get, "no_workers in list (%d) and get (%d)", seen_list, seen_get);

    m = it_metrics(port);
    IT_CHECK(m && strstr(m, "\ndlq_retry_subjects_without_workers 1\n") &&
                 strstr(m, "dlq_retry_subject_without_workers_seconds{subject=\"dlq.retry.nw\"}"),
             "/metrics: %.3000s", m ? m : "(none)");
    free(m);

    j = event_wait(alerts, "retry_subjects_without_workers", "firing", IT_WAIT_MS);
    dump = it_json_dump(j);
    IT_CHECK(j && it_json_int(j, "subjects") == 1 && json_number_value(json_object_get(j, "threshold")) == 1,
             "alert firing: %s", dump);
    free(dump);
    json_decref(j);
    m = it_metrics(port);
    IT_CHECK(m && strstr(m, "dlq_alert_firing{alert=\"retry_subjects_without_workers\"} 1"),
             "/metrics alert firing: %.3000s", m ? m : "(none)");
    free(m);

    /* A worker comes: its answer clears the state. */
    struct it_recorder *w = it_env_recorder(e, it_env_connect(e, "worker"), "dlq.retry.nw", NULL, 16, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    bool ok = false;
    j = it_wait_task_status(e->nc, "nw-1", "completed", IT_WAIT_MS, &ok);
    json_decref(j);
    IT_CHECK(ok, "the worker completes nw-1");
    IT_CHECK(!stats_lists(e->nc, "dlq.retry.nw", &count) && count == 0,
             "the subject left the list (count %lld)", (long long)count);
    j = it_admin_get(e->nc, "nw-1");
    IT_CHECK(json_is_false(json_object_get(j, "no_workers")), "get: no_workers false");
    json_decref(j);
    m = it_metrics(port);
    IT_CHECK(m && strstr(m, "\ndlq_retry_subjects_without_workers 0\n"), "/metrics: %.3000s",
             m ? m : "(none)");
    free(m);
    j = event_wait(alerts, "retry_subjects_without_workers", "resolved", IT_WAIT_MS);
    IT_CHECK(j != NULL, "the alert resolves");
    json_decref(j);

    /* A subject whose tasks are gone (archived) is forgotten by the sweep, worker or not. */
    send_task(e, "dlq.failed.gone", "gone-1", "transient", NULL, 0);
    end = sc_now_mono_ms() + IT_WAIT_MS;
    while (!stats_lists(e->nc, "dlq.retry.gone", &count) && sc_now_mono_ms() < end)
        it_sleep_ms(50);
    IT_CHECK(stats_lists(e->nc, "dlq.retry.gone", &count), "stats lists dlq.retry.gone");
    j = admin(e->nc, "archive", "{\"task_id\":\"gone-1\"}");
    json_decref(j);
    end = sc_now_mono_ms() + IT_WAIT_MS;
    while (stats_lists(e->nc, "dlq.retry.gone", &count) && sc_now_mono_ms() < end)
        it_sleep_ms(100);
    IT_CHECK(!stats_lists(e->nc, "dlq.retry.gone", &count) && count == 0,
             "dlq.retry.gone forgotten once its task was archived (count %lld)", (long long)count);
    e->passed = true;
}

/* ---- dlqctl watch ------------------------------------------------------------------------------ */

/* read_until() reads fd into buf (cap bytes, NUL-terminated) until needle appears or timeout. */
static bool
read_until(int fd, char *buf, size_t cap, size_t *len, const char *needle, int timeout_ms)
{
    int64_t end = sc_now_mono_ms() + timeout_ms;

    while (!strstr(buf, needle)) {
        struct pollfd p = {fd, POLLIN, 0};
        int64_t left = end - sc_now_mono_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return false;
        ssize_t k = read(fd, buf + *len, cap - 1 - *len);
        if (k <= 0)
            return false;
        *len += (size_t)k;
        buf[*len] = '\0';
    }
    return true;
}

/*
 * dlqctl watch prints a line for an ingest (time, enqueued, the task id,
 * the subject, its status) and exits 0 on Ctrl-C; with --filter
 * status=completed the enqueued event of a pending task is not shown.
 */
static void
test_watch(void **state)
{
    struct it_env *e = it_env_start("flow-watch", NULL);
    static char buf[65536];
    size_t len = 0;
    int fds[2];

    assert_non_null(e);
    *state = e;
    assert_true(pipe(fds) == 0);
    char *argv[] = {(char *)DLQCTL_BIN, (char *)"--server", e->srv.url, (char *)"watch", NULL};
    pid_t pid = it_spawn_io(argv, NULL, fds[1], NULL);
    close(fds[1]);
    assert_true(pid > 0);
    buf[0] = '\0';
    IT_CHECK(read_until(fds[0], buf, sizeof buf, &len, "watching", IT_WAIT_MS), "watch starts: %s", buf);
    send_task(e, "dlq.failed.watch", "watch-1", "validation", NULL, 0);
    IT_CHECK(read_until(fds[0], buf, sizeof buf, &len, "watch-1", IT_WAIT_MS), "a line for watch-1: %s", buf);
    IT_CHECK(read_until(fds[0], buf, sizeof buf, &len, "\n", IT_WAIT_MS), "the line ends: %s", buf);
    const char *line = strstr(buf, "enqueued");
    IT_CHECK(line && strstr(line, "watch-1") && strstr(line, "dlq.failed.watch") &&
                 strstr(line, "status=pending"),
             "the enqueued line: %s", buf);
    kill(pid, SIGINT);
    IT_CHECK(it_wait_exit(pid, IT_WAIT_MS) == 0, "Ctrl-C exits 0");
    close(fds[0]);

    /* --json prints the event as it came; --filter status=completed hides a pending task's. */
    len = 0;
    buf[0] = '\0';
    assert_true(pipe(fds) == 0);
    char *argv2[] = {(char *)DLQCTL_BIN, (char *)"--server", e->srv.url, (char *)"watch", (char *)"--json",
                     (char *)"--filter", (char *)"status=completed", NULL};
    pid = it_spawn_io(argv2, NULL, fds[1], NULL);
    close(fds[1]);
    IT_CHECK(read_until(fds[0], buf, sizeof buf, &len, "watching", IT_WAIT_MS), "watch starts: %s", buf);
    send_task(e, "dlq.failed.watch", "watch-2", "validation", NULL, 0);
    json_t *r = admin(e->nc, "retry", "{\"task_id\":\"watch-3-none\"}");
    json_decref(r);
    struct it_recorder *w = it_env_recorder(e, it_env_connect(e, "worker"), "dlq.retry.watch", NULL, 16, false);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    r = admin(e->nc, "retry", "{\"task_id\":\"watch-2\"}");
    json_decref(r);
    IT_CHECK(read_until(fds[0], buf, sizeof buf, &len, "\"completed\"", IT_WAIT_MS), "the succeeded event: %s", buf);
    IT_CHECK(strstr(buf, "{\"task_id\":\"watch-2\"") && !strstr(buf, "\"pending\""),
             "only completed events, raw JSON: %s", buf);
    kill(pid, SIGINT);
    IT_CHECK(it_wait_exit(pid, IT_WAIT_MS) == 0, "Ctrl-C exits 0");
    close(fds[0]);
    e->passed = true;
}

/* ---- export / import --------------------------------------------------------------------------- */

/* MessagePack of {"n":i,"bin":<bytes 0x00 0xff i>,"s":"héllo"}: bytes that JSON could not carry as they are. */
static size_t
task_bytes(int i, unsigned char *out)
{
    static const unsigned char head[] = {0x83, 0xa1, 'n'};
    size_t n = 0;

    memcpy(out, head, sizeof head);
    n = sizeof head;
    out[n++] = (unsigned char)i; /* fixint */
    out[n++] = 0xa3;
    memcpy(out + n, "bin", 3);
    n += 3;
    out[n++] = 0xc4;
    out[n++] = 3;
    out[n++] = 0x00;
    out[n++] = 0xff;
    out[n++] = (unsigned char)i;
    out[n++] = 0xa1;
    out[n++] = 's';
    out[n++] = 0xa6;
    memcpy(out + n, "h\xc3\xa9llo", 6);
    n += 6;
    return n;
}

/*
 * Tasks exported from one sidecar and imported into a fresh one keep their
 * metadata, and their retries republish the exact original bytes.
 */
static void
test_export_import(void **state)
{
    struct it_env *e = it_env_start("flow-export", NULL);
    unsigned char task[3][64];
    size_t tlen[3];
    char path[IT_PATH_MAX + 32], id[16], *text;

    assert_non_null(e);
    *state = e;
    for (int i = 0; i < 3; i++) {
        tlen[i] = task_bytes(i, task[i]);
        snprintf(id, sizeof id, "exp-%d", i);
        send_task(e, "dlq.failed.exp", id, "validation", task[i], tlen[i]);
    }
    /* One with metadata and repos (a JSON envelope): they come back as they were. */
    json_t *ack = it_request_json(e->nc, "dlq.failed.exp",
                                  "{\"task_id\":\"exp-meta\",\"task\":{\"a\":1},\"error\":\"bad\","
                                  "\"error_category\":\"validation\",\"repos\":[\"r1\",\"r2\"],"
                                  "\"metadata\":{\"k\":\"v\",\"n\":3},\"max_retries\":7}",
                                  IT_REQUEST_MS);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ingest of exp-meta");
    json_decref(ack);
    snprintf(path, sizeof path, "%s/export.jsonl", e->dir);
    const char *args[] = {"export", "--subject", "dlq.failed.exp", NULL};
    IT_CHECK(it_run_dlqctl(e->srv.url, NULL, path, args) == 0, "dlqctl export exits 0");
    text = it_slurp(path);
    size_t lines = 0;
    for (char *p = text; (p = strchr(p, '\n')); p++)
        lines++;
    IT_CHECK(lines == 4 && strstr(text, "\"payload_b64\"") && strstr(text, "\"error_type\":\"ValueError\""),
             "4 lines with payloads: %s", text);
    free(text);

    /* A second, fresh sidecar (memory store: empty) on the same server. */
    it_daemon_stop(&e->dmn);
    IT_CHECK(e->dmn.exit_status == 0, "the first sidecar stops cleanly");
    char dir2[IT_PATH_MAX + 8];
    snprintf(dir2, sizeof dir2, "%s/second", e->dir);
    mkdir(dir2, 0700);
    assert_true(it_daemon_start(&e->dmn, dir2, e->srv.url, NULL) == 0);
    assert_true(it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) == 0);
    json_t *st = it_admin_stats(e->nc);
    IT_CHECK(it_json_int(st, "queue_size") == 0, "the second sidecar starts empty");
    json_decref(st);

    char out[IT_PATH_MAX + 32];
    snprintf(out, sizeof out, "%s/import.out", e->dir);
    const char *iargs[] = {"import", NULL};
    IT_CHECK(it_run_dlqctl(e->srv.url, path, out, iargs) == 0, "dlqctl import exits 0");
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "exp-%d", i);
        json_t *g = it_admin_get(e->nc, id);
        char *dump = it_json_dump(g);
        IT_CHECK(it_json_str(g, "status") && strcmp(it_json_str(g, "subject"), "dlq.failed.exp") == 0 &&
                     strcmp(it_json_str(g, "error"), "boom 42") == 0 &&
                     strcmp(it_json_str(g, "error_type"), "ValueError") == 0 &&
                     strcmp(it_json_str(g, "error_category"), "validation") == 0 &&
                     json_is_true(json_object_get(g, "parked")),
                 "imported %s: %s", id, dump);
        free(dump);
        json_decref(g);
    }

    json_t *g = it_admin_get(e->nc, "exp-meta");
    char *gd = it_json_dump(g);
    json_t *want_meta = json_pack("{s:s,s:i}", "k", "v", "n", 3), *want_repos = json_pack("[s,s]", "r1", "r2");
    IT_CHECK(json_equal(json_object_get(g, "metadata"), want_meta) &&
                 json_equal(json_object_get(g, "repos"), want_repos) && it_json_int(g, "max_retries") == 7,
             "exp-meta keeps metadata, repos and max_retries: %s", gd);
    json_decref(want_meta);
    json_decref(want_repos);
    free(gd);
    json_decref(g);

    struct it_recorder *w = it_env_recorder(e, it_env_connect(e, "worker"), "dlq.retry.exp", NULL, 16, true);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    json_t *r = admin(e->nc, "retry", "{\"subject\":\"dlq.failed.exp\"}");
    json_decref(r);
    IT_CHECK(it_rec_wait(w, 4, IT_WAIT_MS), "4 retries reach the worker");
    for (size_t k = 0; k < 4; k++) {
        const struct it_rec_msg *msg = it_rec_get(w, k);
        const char *tid = it_rec_header(msg, "Dlq-Task-Id");
        static const unsigned char meta_task[] = {0x81, 0xa1, 'a', 0x01}; /* {"a":1} */
        if (tid && !strcmp(tid, "exp-meta")) {
            IT_CHECK(msg->len == sizeof meta_task && !memcmp(msg->body, meta_task, sizeof meta_task),
                     "retry of exp-meta: its bytes");
            continue;
        }
        int i = tid ? tid[4] - '0' : -1;
        IT_CHECK(i >= 0 && i < 3 && msg->len == tlen[i] && memcmp(msg->body, task[i], tlen[i]) == 0,
                 "retry of %s: byte-identical payload (%zu bytes, want %zu)", tid ? tid : "?",
                 msg->len, i >= 0 && i < 3 ? tlen[i] : 0);
    }

    /*
     * A hostile line: its subject carries CR/LF and a PUB of its own. Import
     * refuses it (exit 1, the line named) and nothing reaches the subjects
     * the line tried to publish to.
     */
    {
        char hostile[IT_PATH_MAX + 32];
        struct it_recorder *inj = it_env_recorder(e, it_env_connect(e, "watcher"), "rt.>", NULL, 16, false);
        FILE *f;
        snprintf(hostile, sizeof hostile, "%s/hostile.jsonl", e->dir);
        f = fopen(hostile, "w");
        assert_non_null(f);
        fputs("{\"subject\":\"x.failed.orders 0\\r\\n\\r\\nPUB rt.injected 5\\r\\nHELLO\\r\\nPUB rt.tail\","
              "\"task_id\":\"inj\",\"payload_b64\":\"gaFhAQ==\"}\n", f);
        fclose(f);
        IT_CHECK(natsConnection_Flush(e->nc) == NATS_OK, "flush");
        IT_CHECK(it_run_dlqctl(e->srv.url, hostile, out, iargs) == 1, "dlqctl import of a hostile line exits 1");
        it_sleep_ms(300);
        IT_CHECK(it_rec_count(inj) == 0, "nothing was published on rt.>: %zu messages", it_rec_count(inj));
        json_t *gi = it_admin_get(e->nc, "inj");
        IT_CHECK(it_json_int(gi, "error.code") == 404, "no task inj: %s", it_json_dump(gi));
        json_decref(gi);
    }
    e->passed = true;
}

/* ---- retry --rate --wait ----------------------------------------------------------------------- */

/* dlqctl retry FILTER --rate N --wait returns once every matched task was sent, and says so. */
static void
test_retry_wait(void **state)
{
    struct it_env *e = it_env_start("flow-redrive", NULL);
    char path[IT_PATH_MAX + 32], id[16], *text;

    assert_non_null(e);
    *state = e;
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "rw-%d", i);
        send_task(e, "dlq.failed.rw", id, "validation", NULL, 0);
    }
    struct it_recorder *w = it_env_recorder(e, it_env_connect(e, "worker"), "dlq.retry.rw", NULL, 16, false);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    snprintf(path, sizeof path, "%s/retry.out", e->dir);
    const char *args[] = {"retry", "--subject", "dlq.failed.rw", "--rate", "10", "--wait", NULL};
    IT_CHECK(it_run_dlqctl(e->srv.url, NULL, path, args) == 0, "retry --wait exits 0");
    text = it_slurp(path);
    IT_CHECK(strstr(text, "redrive finished: 6 of 6 sent"), "the outcome line: %s", text);
    free(text);
    IT_CHECK(it_rec_wait(w, 6, IT_WAIT_MS), "6 retries reach the worker");

    /* A slow redrive: Ctrl-C cancels it on the sidecar and exits 130. */
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "rs-%d", i);
        send_task(e, "dlq.failed.rs", id, "validation", NULL, 0);
    }
    char *argv[] = {(char *)DLQCTL_BIN, (char *)"--server", e->srv.url, (char *)"retry", (char *)"--subject",
                    (char *)"dlq.failed.rs", (char *)"--rate", (char *)"2", (char *)"--wait", NULL};
    pid_t pid = it_spawn_io(argv, NULL, -1, path);
    assert_true(pid > 0);
    int64_t end = sc_now_mono_ms() + IT_WAIT_MS;
    json_t *st = NULL;
    do {
        json_decref(st);
        it_sleep_ms(50);
        st = it_admin_stats(e->nc);
    } while (!(json_is_true(it_json_get(st, "retry_processor.redrive.active")) &&
               it_json_int(st, "retry_processor.redrive.matched") == 20) &&
             sc_now_mono_ms() < end);
    json_decref(st);
    it_sleep_ms(300); /* dlqctl has read the reply and polls stats */
    kill(pid, SIGINT);
    IT_CHECK(it_wait_exit(pid, IT_WAIT_MS) == 130, "Ctrl-C exits 130");
    st = it_admin_stats(e->nc);
    char *dump = it_json_dump(it_json_get(st, "retry_processor.redrive"));
    IT_CHECK(json_is_true(it_json_get(st, "retry_processor.redrive.cancelled")) &&
                 json_is_false(it_json_get(st, "retry_processor.redrive.active")) &&
                 it_json_int(st, "retry_processor.redrive.scheduled") < 20,
             "the redrive was cancelled: %s", dump);
    free(dump);
    json_decref(st);
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_no_workers, it_teardown),
        cmocka_unit_test_teardown(test_watch, it_teardown),
        cmocka_unit_test_teardown(test_export_import, it_teardown),
        cmocka_unit_test_teardown(test_retry_wait, it_teardown),
    };
    return cmocka_run_group_tests_name("integration_flow", tests, NULL, NULL);
}
