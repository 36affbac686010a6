/* test_ingest.c - integration: what comes in (duplicate bursts, hostile retry subjects, garbage bytes) and what the daemon makes of it. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <msgpack.h>

#include "harness.h"

/* escaped() writes s with control characters escaped, for messages about subjects. */
static const char *
escaped(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

/*
 * 6. A thousand failures for one task_id within a second make one record:
 * the queue holds exactly one task, list shows one, get shows it.
 */
static void
test_duplicate_burst(void **state)
{
    /* A long backoff keeps the task pending while we look at it. */
    const char *flags[] = {"backoff.exp_base_ms=60000", NULL};
    struct it_env *e = it_env_start("dupes", flags);
    assert_non_null(e);
    *state = e;

    char id[96], err[64];
    it_unique_id("dup", id, sizeof id);
    struct it_envelope env;
    it_envelope_init(&env);
    env.task_id = id;
    env.error = err;
    env.max_retries = 3;
    int64_t t0 = sc_now_mono_ms();
    for (int i = 0; i < 999; i++) {
        snprintf(err, sizeof err, "connection refused #%d", i);
        assert_int_equal(it_publish_envelope(e->nc, "dlq.failed.dupes", &env), 0);
    }
    snprintf(err, sizeof err, "connection refused #%d", 999);
    /* The last one as a request: its ack comes after the 999 before it were ingested. */
    json_t *ack = it_request_envelope(e->nc, "dlq.failed.dupes", &env);
    int64_t elapsed = sc_now_mono_ms() - t0;
    char *dump = it_json_dump(ack);
    fprintf(stderr, "[dupes] 1000 failures sent and acked in %lld ms\n", (long long)elapsed);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "ack of the 1000th: got %s", dump);
    IT_CHECK(it_json_str(ack, "task_id") && strcmp(it_json_str(ack, "task_id"), id) == 0,
             "ack task_id: got %s", dump);
    free(dump);
    json_decref(ack);
    IT_CHECK(elapsed < 1000, "the burst took %lld ms, want < 1 s (test precondition)",
             (long long)elapsed);

    json_t *st = it_admin_stats(e->nc);
    dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "queue_size") == 1, "queue_size: want 1 after 1000 failures of one id: %s",
             dump);
    int64_t sum = it_json_int(st, "status_breakdown.pending") +
                  it_json_int(st, "status_breakdown.retrying") +
                  it_json_int(st, "status_breakdown.exhausted");
    IT_CHECK(sum == 1, "status_breakdown pending+retrying+exhausted: want 1: %s", dump);
    int64_t enq = it_json_int(st, "lifetime_stats.enqueued");
    IT_CHECK(enq >= 1 && enq <= 1000, "lifetime enqueued: want 1..1000: %s", dump);
    IT_CHECK(it_json_int(st, "lifetime_stats.invalid") == 0, "nothing was invalid: %s", dump);
    free(dump);
    json_decref(st);

    json_t *list = it_request_json(e->nc, "dlq.admin.list", "{}", IT_REQUEST_MS);
    dump = it_json_dump(list);
    json_t *tasks = json_object_get(list, "tasks");
    IT_CHECK(json_is_array(tasks) && json_array_size(tasks) == 1, "list: want one task: %s", dump);
    IT_CHECK(it_json_int(list, "total") == 1, "list total: want 1: %s", dump);
    const char *lid = it_json_str(json_array_get(tasks, 0), "task_id");
    IT_CHECK(lid && strcmp(lid, id) == 0, "list: want task %s: %s", id, dump);
    free(dump);
    json_decref(list);

    json_t *t = it_admin_get(e->nc, id);
    dump = it_json_dump(t);
    IT_CHECK(it_json_str(t, "status") && strcmp(it_json_str(t, "status"), "pending") == 0,
             "get: want pending, got %s", dump);
    const char *te = it_json_str(t, "error");
    IT_CHECK(te && strncmp(te, "connection refused #", 20) == 0, "get error: got %s", dump);
    if (te && strcmp(te, "connection refused #999") != 0)
        fprintf(stderr, "[dupes] note: the record keeps error \"%s\", not the latest\n", te);
    IT_CHECK(it_json_int(t, "retry_count") == 0,
             "repeated failures while pending are not attempts: want retry_count 0, got %s", dump);
    free(dump);
    json_decref(t);
    e->passed = true;
}

/* One hostile or disallowed retry_subject. */
static const char *const bad_subjects[] = {
    "svc 6\r\nHi\r\nPUB x 0\r\n",
    "a.*",
    ">",
    "a b",
    "other.x",
    "dlq.retry.svc 6\r\nHi\r\nPUB x 0\r\n",
    "dlq.retry.*",
    "dlq.retry.>",
    "dlq.retry.a b",
    "dlq.retry..x",
    "dlq.retry.x\t",
    "dlq.retry.",
    "dlq.retry.x\r\nPUB x 2\r\nhi",
};

/* subject_allowed_in_test7() lists the subjects anyone may publish during test 7. */
static bool
subject_allowed_in_test7(const char *s)
{
    static const char *const prefixes[] = {"dlq.failed.", "dlq.events.", "dlq.invalid.",
                                           "dlq.admin.", "_INBOX."};
    for (size_t i = 0; i < SC_ARRAY_LEN(prefixes); i++) {
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    }
    /* The sidecar's own service-discovery ping, looking for another sidecar on its prefix (peers.c). */
    return strcmp(s, "dlq.retry.inj") == 0 || strcmp(s, "$SRV.PING.dlq-sidecar") == 0;
}

/* mentions_subject() tells whether text speaks about the subject (case-insensitive). */
static bool
mentions_subject(const char *text)
{
    if (!text)
        return false;
    for (const char *p = text; *p; p++) {
        if (strncasecmp(p, "subject", 7) == 0)
            return true;
    }
    return false;
}

/*
 * 7. Retry subjects that would inject protocol, use wildcards, hold spaces
 * or fall outside retry.allowed_subjects are refused: parked with a clear
 * error or rejected as invalid, never published anywhere (a spy on ">"
 * sees nothing outside the daemon's own subjects); the connection survives
 * and a normal task still completes.
 */
static void
test_retry_subject_injection(void **state)
{
    struct it_env *e = it_env_start("inject", NULL);
    assert_non_null(e);
    *state = e;
    natsConnection *spyc = it_env_connect(e, "it-spy");
    assert_non_null(spyc);
    struct it_recorder *spy = it_env_recorder(e, spyc, ">", NULL, 10000, false);
    assert_non_null(spy);
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.inj", NULL, 64, false);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});

    size_t nbad = SC_ARRAY_LEN(bad_subjects);
    char ids[SC_ARRAY_LEN(bad_subjects)][96];
    uint64_t hashes[SC_ARRAY_LEN(bad_subjects)];
    bool accepted[SC_ARRAY_LEN(bad_subjects)];
    struct sc_buf b;
    sc_buf_init(&b, 1 << 20);
    char esc[256];
    for (size_t i = 0; i < nbad; i++) {
        it_unique_id("inj", ids[i], sizeof ids[i]);
        struct it_envelope env;
        it_envelope_init(&env);
        env.task_id = ids[i];
        env.error = "connection refused";
        env.retry_policy = "immediate";
        env.retry_subject = bad_subjects[i];
        assert_int_equal(it_envelope_pack(&env, &b), 0);
        hashes[i] = it_fnv1a(b.data, b.len);
        json_t *ack = it_request_bytes(e->nc, "dlq.failed.inj", b.data, b.len, IT_REQUEST_MS);
        char *dump = it_json_dump(ack);
        IT_CHECK(ack, "no ingest ack for retry_subject \"%s\"", escaped(bad_subjects[i], esc, sizeof esc));
        accepted[i] = json_is_true(json_object_get(ack, "ok"));
        if (!accepted[i])
            IT_CHECK(it_json_int(ack, "error.code") == 400,
                     "retry_subject \"%s\" refused at ingest: want code 400, got %s",
                     escaped(bad_subjects[i], esc, sizeof esc), dump);
        fprintf(stderr, "[inject] \"%s\": %s\n", escaped(bad_subjects[i], esc, sizeof esc), dump);
        free(dump);
        json_decref(ack);
    }
    sc_buf_destroy(&b);

    /* Immediate policy: anything that were to be published would be within a tick or two. */
    it_sleep_ms(1500);
    IT_CHECK(it_daemon_alive(&e->dmn), "the daemon died");
    IT_CHECK(it_admin_health_ok(e->nc), "health does not answer ok after hostile subjects");

    for (size_t i = 0; i < nbad; i++) {
        const char *bs = escaped(bad_subjects[i], esc, sizeof esc);
        if (accepted[i]) {
            json_t *t = it_admin_get(e->nc, ids[i]);
            char *dump = it_json_dump(t);
            const char *s = it_json_str(t, "status");
            IT_CHECK(s && strcmp(s, "pending") == 0 && json_is_true(json_object_get(t, "parked")) &&
                         json_is_null(json_object_get(t, "next_retry_at")),
                     "retry_subject \"%s\": want parked (pending, parked, no next_retry_at), got %s",
                     bs, dump);
            bool clear = mentions_subject(it_json_str(t, "error")) ||
                         mentions_subject(it_json_str(t, "park_reason"));
            json_t *h = json_object_get(t, "history");
            size_t k;
            json_t *ent;
            json_array_foreach(h, k, ent) clear = clear || mentions_subject(it_json_str(ent, "error"));
            IT_CHECK(clear, "retry_subject \"%s\": parked without an error that names the subject: %s",
                     bs, dump);
            IT_CHECK(it_json_int(t, "retry_count") == 0, "retry_subject \"%s\": retry_count: %s", bs,
                     dump);
            free(dump);
            json_decref(t);
        } else {
            /* Rejected at ingest: its raw bytes must be on dlq.invalid.inj with a reason. */
            size_t n = it_rec_count(spy), found = 0;
            for (size_t j = 0; j < n; j++) {
                const struct it_rec_msg *m = it_rec_get(spy, j);
                if (strcmp(m->subject, "dlq.invalid.inj") == 0 && m->hash == hashes[i] &&
                    it_rec_header(m, "Dlq-Invalid-Reason"))
                    found++;
            }
            IT_CHECK(found == 1,
                     "retry_subject \"%s\" refused at ingest: want its bytes once on dlq.invalid.inj "
                     "with Dlq-Invalid-Reason, found %zu",
                     bs, found);
        }
    }

    /* The same injection as a JSON envelope, as `nats pub` would send it. */
    char jid[96], jbody[512];
    it_unique_id("inj-json", jid, sizeof jid);
    snprintf(jbody, sizeof jbody,
             "{\"task_id\":\"%s\",\"task\":{\"a\":1},\"error\":\"connection refused\","
             "\"retry_policy\":\"immediate\",\"retry_subject\":\"dlq.retry.j\\r\\nPUB x 0\\r\\n\"}",
             jid);
    json_t *jack = it_request_bytes(e->nc, "dlq.failed.inj", jbody, strlen(jbody), IT_REQUEST_MS);
    char *jdump = it_json_dump(jack);
    fprintf(stderr, "[inject] JSON envelope: %s\n", jdump);
    IT_CHECK(jack, "no ack for the JSON envelope");
    if (json_is_true(json_object_get(jack, "ok"))) {
        bool parked = false;
        json_t *t = it_wait_task_status(e->nc, jid, "pending", IT_WAIT_MS, &parked);
        char *dump = it_json_dump(t);
        IT_CHECK(parked && json_is_true(json_object_get(t, "parked")),
                 "JSON envelope with an injected retry_subject: want parked, got %s", dump);
        free(dump);
        json_decref(t);
    } else {
        IT_CHECK(it_json_int(jack, "error.code") == 400, "JSON envelope refused: want 400: %s",
                 jdump);
    }
    free(jdump);
    json_decref(jack);

    /* An operator's manual retry must not publish to a refused subject either. */
    for (size_t i = 0; i < nbad; i++) {
        if (!accepted[i])
            continue;
        json_t *r = it_admin_task(e->nc, "retry", ids[i]);
        char *dump = it_json_dump(r);
        IT_CHECK(r, "dlq.admin.retry did not answer for %s", ids[i]);
        fprintf(stderr, "[inject] manual retry of \"%s\": %s\n",
                escaped(bad_subjects[i], esc, sizeof esc), dump);
        free(dump);
        json_decref(r);
    }
    it_sleep_ms(1000);
    IT_CHECK(it_admin_health_ok(e->nc), "health after manual retries of refused subjects");
    /* Checked now, asserted at the end so that the checks below still run. */
    size_t unparked = 0;
    for (size_t i = 0; i < nbad; i++) {
        if (!accepted[i])
            continue;
        json_t *t = it_admin_get(e->nc, ids[i]);
        char *dump = it_json_dump(t);
        const char *s = it_json_str(t, "status");
        if (!(s && strcmp(s, "pending") == 0 && json_is_true(json_object_get(t, "parked")) &&
              it_json_int(t, "retry_count") == 0)) {
            fprintf(stderr,
                    "VIOLATION: retry_subject \"%s\" after a manual retry: want parked again with "
                    "retry_count 0 (nothing can be published), got %s\n",
                    escaped(bad_subjects[i], esc, sizeof esc), dump);
            unparked++;
        }
        free(dump);
        json_decref(t);
    }
    /* A normal task still works. */
    char okid[96];
    it_unique_id("inj-ok", okid, sizeof okid);
    struct it_envelope env;
    it_envelope_init(&env);
    env.task_id = okid;
    env.error = "connection refused";
    env.retry_policy = "immediate";
    assert_int_equal(it_publish_envelope(e->nc, "dlq.failed.inj", &env), 0);
    bool ok = false;
    json_t *t = it_wait_task_status(e->nc, okid, "completed", IT_WAIT_MS, &ok);
    char *dump = it_json_dump(t);
    IT_CHECK(ok, "a normal task after the hostile ones: want completed, got %s", dump);
    free(dump);
    json_decref(t);
    IT_CHECK(it_rec_count(w) == 1, "the worker on dlq.retry.inj saw %zu messages, want 1",
             it_rec_count(w));

    /* Nothing was published anywhere else. */
    natsConnection_Flush(spyc);
    it_sleep_ms(200);
    size_t n = it_rec_count(spy);
    for (size_t j = 0; j < n; j++) {
        const struct it_rec_msg *m = it_rec_get(spy, j);
        IT_CHECK(subject_allowed_in_test7(m->subject),
                 "a message was published on \"%s\" (%zu bytes): an injected or refused retry subject",
                 escaped(m->subject, esc, sizeof esc), m->len);
    }
    IT_CHECK(it_rec_dropped(spy) == 0, "spy overflow");
    /* The spy works: it saw the normal task's retry. */
    IT_CHECK(it_rec_count_matching(spy, "dlq.retry.inj", "Dlq-Task-Id", okid) == 1,
             "the spy on \">\" did not see the normal retry on dlq.retry.inj");
    IT_CHECK(unparked == 0,
             "%zu task(s) with a refused retry_subject were not parked again after dlq.admin.retry "
             "(see VIOLATION lines above)",
             unparked);
    e->passed = true;
}

/* Sorting helper for hashes. */
static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#define BATCH 20000

/*
 * send_garbage_batch() publishes BATCH invalid messages on dlq.failed.fuzz:
 * every proper prefix of a valid envelope (lengths 0 .. len-1) and random
 * bytes of random length 0-2000 for the rest. Their hashes go to hashes
 * (BATCH entries). Returns 0 or -1.
 */
static int
send_garbage_batch(natsConnection *nc, uint64_t *hashes)
{
    struct sc_buf valid;
    sc_buf_init(&valid, 1 << 16);
    struct it_envelope env;
    it_envelope_init(&env);
    env.task_id = "fuzz-valid-envelope-0001";
    env.error = "connection refused while talking to the upstream payment provider";
    env.error_type = "ConnectionRefusedError";
    env.retry_policy = "exponential";
    env.max_retries = 5;
    env.retry_subject = "dlq.retry.fuzz";
    if (it_envelope_pack(&env, &valid) != 0)
        return -1;
    size_t i = 0;
    unsigned char buf[2000];
    for (; i < valid.len && i < BATCH; i++) {
        hashes[i] = it_fnv1a(valid.data, i);
        if (natsConnection_Publish(nc, "dlq.failed.fuzz", valid.data, (int)i) != NATS_OK)
            return -1;
    }
    for (; i < BATCH; i++) {
        size_t len = (size_t)(it_rand_u64() % 2001);
        for (size_t k = 0; k < len; k++)
            buf[k] = (unsigned char)it_rand_u64();
        /* Keep random bytes from being a complete envelope by any chance: never a map header. */
        if (len && ((buf[0] & 0xf0) == 0x80 || buf[0] == 0xde || buf[0] == 0xdf))
            buf[0] = 0xc1; /* never used in MessagePack */
        hashes[i] = it_fnv1a(buf, len);
        if (natsConnection_Publish(nc, "dlq.failed.fuzz", buf, (int)len) != NATS_OK)
            return -1;
    }
    sc_buf_destroy(&valid);
    return natsConnection_FlushTimeout(nc, 30000) == NATS_OK ? 0 : -1;
}

/*
 * check_invalid_batch() waits for the batch's BATCH messages on the spy
 * (beyond `before` already seen) and checks that the bytes are exactly the
 * ones sent, each with a Dlq-Invalid-Reason header.
 */
static void
check_invalid_batch(struct it_recorder *spy, size_t before, uint64_t *sent, const char *what)
{
    bool all = it_rec_wait(spy, before + BATCH, 120000);
    size_t n = it_rec_count(spy) - before;
    IT_CHECK(all, "%s: %zu of %d invalid messages came back on dlq.invalid.fuzz", what, n, BATCH);
    /* A little longer: more than sent would be a bug too. */
    it_sleep_ms(300);
    n = it_rec_count(spy) - before;
    IT_CHECK(n == BATCH, "%s: want %d messages on dlq.invalid.fuzz, got %zu", what, BATCH, n);
    static uint64_t got[BATCH];
    size_t noreason = 0;
    for (size_t i = 0; i < BATCH; i++) {
        const struct it_rec_msg *m = it_rec_get(spy, before + i);
        got[i] = m->hash;
        const char *r = it_rec_header(m, "Dlq-Invalid-Reason");
        if (!r || !*r)
            noreason++;
    }
    IT_CHECK(noreason == 0, "%s: %zu invalid messages lack Dlq-Invalid-Reason", what, noreason);
    qsort(got, BATCH, sizeof *got, cmp_u64);
    qsort(sent, BATCH, sizeof *sent, cmp_u64);
    size_t diff = 0;
    for (size_t i = 0; i < BATCH; i++)
        diff += got[i] != sent[i];
    IT_CHECK(diff == 0, "%s: %zu republished bodies differ from the bytes sent (want raw)", what,
             diff);
}

/* print_reasons() prints a tally of Dlq-Invalid-Reason values. */
static void
print_reasons(struct it_recorder *spy)
{
    const char *names[32];
    size_t counts[32], nn = 0, n = it_rec_count(spy);
    for (size_t i = 0; i < n; i++) {
        const char *r = it_rec_header(it_rec_get(spy, i), "Dlq-Invalid-Reason");
        if (!r)
            r = "(none)";
        size_t k;
        for (k = 0; k < nn && strcmp(names[k], r) != 0; k++)
            ;
        if (k == nn) {
            if (nn == 32)
                continue;
            names[nn] = r;
            counts[nn++] = 0;
        }
        counts[k]++;
    }
    fprintf(stderr, "[garbage] reasons:");
    for (size_t k = 0; k < nn; k++)
        fprintf(stderr, " %s=%zu", names[k], counts[k]);
    fprintf(stderr, "\n");
}

/*
 * 8. Garbage at speed: random bytes and every prefix of a valid envelope,
 * 20,000 per batch. Each comes back raw on dlq.invalid.fuzz with a reason,
 * lifetime invalid counts every one, a request gets a 400, the daemon's
 * RSS stays flat from the first batch to the second and health answers.
 */
static void
test_garbage(void **state)
{
    const char *flags[] = {"log.level=info", NULL};
    struct it_env *e = it_env_start("garbage", flags);
    assert_non_null(e);
    *state = e;
    it_rand_seed(0x5eed1234abcdULL);
    natsConnection *spyc = it_env_connect(e, "it-spy");
    assert_non_null(spyc);
    /*
     * DLQ_IT_GARBAGE_BATCHES (default 4) batches; RSS is compared between the
     * end of batch 2 (allocator and nats.c buffers warmed up) and the last one.
     */
    const char *nb = getenv("DLQ_IT_GARBAGE_BATCHES");
    int batches = nb && atoi(nb) >= 2 && atoi(nb) <= 50 ? atoi(nb) : 4;
    struct it_recorder *spy = it_env_recorder(e, spyc, "dlq.invalid.fuzz", NULL,
                                              (size_t)batches * BATCH + 100, false);
    assert_non_null(spy);

    /* Requests with broken envelopes are answered with a 400 that says why. */
    {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str(&pk, 4);
        msgpack_pack_str_body(&pk, "task", 4);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str(&pk, 5);
        msgpack_pack_str_body(&pk, "error", 5);
        msgpack_pack_str(&pk, 4);
        msgpack_pack_str_body(&pk, "boom", 4);
        json_t *ack = it_request_bytes(e->nc, "dlq.failed.fuzz", sb.data, sb.size, IT_REQUEST_MS);
        char *dump = it_json_dump(ack);
        IT_CHECK(ack && json_is_false(json_object_get(ack, "ok")) &&
                     it_json_int(ack, "error.code") == 400,
                 "no task_id: want {\"ok\":false,\"error\":{\"code\":400}}, got %s", dump);
        const char *msg = it_json_str(ack, "error.message");
        IT_CHECK(msg && strstr(msg, "task_id"), "no task_id: the message should name task_id: %s",
                 dump);
        free(dump);
        json_decref(ack);
        /* A truncated envelope. */
        ack = it_request_bytes(e->nc, "dlq.failed.fuzz", sb.data, sb.size - 3, IT_REQUEST_MS);
        dump = it_json_dump(ack);
        IT_CHECK(ack && json_is_false(json_object_get(ack, "ok")) &&
                     it_json_int(ack, "error.code") == 400,
                 "truncated: want a 400 ack, got %s", dump);
        free(dump);
        json_decref(ack);
        msgpack_sbuffer_destroy(&sb);
        /* JSON without task_id, as `nats pub` would send it. */
        const char *js = "{\"task\":{},\"error\":\"boom\"}";
        ack = it_request_bytes(e->nc, "dlq.failed.fuzz", js, strlen(js), IT_REQUEST_MS);
        dump = it_json_dump(ack);
        IT_CHECK(ack && json_is_false(json_object_get(ack, "ok")) &&
                     it_json_int(ack, "error.code") == 400,
                 "JSON without task_id: want a 400 ack, got %s", dump);
        free(dump);
        json_decref(ack);
    }
    IT_CHECK(it_rec_wait(spy, 3, IT_WAIT_MS), "the 3 refused requests: %zu on dlq.invalid.fuzz",
             it_rec_count(spy));
    size_t base = it_rec_count(spy);

    static uint64_t sent[BATCH]; /* static: nothing leaks when a check fails */
    int64_t t0 = sc_now_mono_ms();
    IT_CHECK(send_garbage_batch(e->nc, sent) == 0, "publishing batch 1 failed");
    check_invalid_batch(spy, base, sent, "batch 1");
    fprintf(stderr, "[garbage] batch 1 round trip: %lld ms\n", (long long)(sc_now_mono_ms() - t0));
    json_t *st = it_admin_stats(e->nc);
    char *dump = it_json_dump(st);
    IT_CHECK(it_json_int(st, "lifetime_stats.invalid") == (int64_t)(base + BATCH),
             "lifetime invalid after batch 1: want %zu: %s", base + BATCH, dump);
    IT_CHECK(it_json_int(st, "queue_size") == 0, "garbage must not be stored: %s", dump);
    free(dump);
    json_decref(st);
    it_sleep_ms(500);
    long rss1 = it_pid_rss_kb(e->dmn.pid);

    long rss2 = rss1;
    for (int bno = 2; bno <= batches; bno++) {
        char what[32];
        snprintf(what, sizeof what, "batch %d", bno);
        t0 = sc_now_mono_ms();
        IT_CHECK(send_garbage_batch(e->nc, sent) == 0, "publishing %s failed", what);
        check_invalid_batch(spy, base + (size_t)(bno - 1) * BATCH, sent, what);
        st = it_admin_stats(e->nc);
        dump = it_json_dump(st);
        IT_CHECK(it_json_int(st, "lifetime_stats.invalid") == (int64_t)(base + (size_t)bno * BATCH),
                 "lifetime invalid after %s: want %zu: %s", what, base + (size_t)bno * BATCH, dump);
        free(dump);
        json_decref(st);
        it_sleep_ms(500);
        rss2 = it_pid_rss_kb(e->dmn.pid);
        if (bno == 2 && batches > 2)
            rss1 = rss2; /* the baseline after warm-up */
        fprintf(stderr, "[garbage] %s round trip: %lld ms, daemon RSS %ld kB\n", what,
                (long long)(sc_now_mono_ms() - t0), rss2);
    }
    print_reasons(spy);
    fprintf(stderr, "[garbage] daemon RSS after warm-up: %ld kB, after batch %d: %ld kB\n", rss1,
            batches, rss2);
    IT_CHECK(rss1 > 0 && rss2 > 0, "cannot read the daemon's RSS");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* A sanitized daemon keeps freed memory in quarantine: RSS says nothing there. */
    fprintf(stderr, "[garbage] sanitizer build: RSS bound not checked\n");
#else
    IT_CHECK(rss2 - rss1 < 5 * 1024, "RSS grew by %ld kB from warm-up to batch %d (want < 5 MB)",
             rss2 - rss1, batches);
#endif
    IT_CHECK(it_admin_health_ok(e->nc), "health after 40,000 invalid messages");
    e->passed = true;
}

/* ---- shutdown under a flood: every published failure is accounted for ----------------------- */

/*
 * A flood tally: the test subscribes to dlq.events.enqueued (every sidecar
 * emits one event per new task) and marks task "f<k>" in a bitmap, so that
 * a failure taken twice or never shows. Written by the subscription's
 * delivery thread, read by the test under mu.
 */
struct flood_tally {
    pthread_mutex_t mu;
    uint8_t *seen;  /* one bit per task index */
    size_t n;       /* task indexes 0 .. n-1 */
    size_t distinct, dupes, foreign;
};

static void
flood_on_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct flood_tally *t = closure;
    const char *body = natsMsg_GetData(msg);
    const char *p = body ? strstr(body, "\"task_id\":\"f") : NULL;
    char *end = NULL;
    unsigned long long k = p ? strtoull(p + 12, &end, 10) : 0;

    (void)nc;
    (void)sub;
    pthread_mutex_lock(&t->mu);
    if (!p || !end || *end != '"' || k >= t->n) {
        t->foreign++;
    } else if (t->seen[k / 8] & (1u << (k % 8))) {
        t->dupes++;
    } else {
        t->seen[k / 8] |= (uint8_t)(1u << (k % 8));
        t->distinct++;
    }
    pthread_mutex_unlock(&t->mu);
    natsMsg_Destroy(msg);
}

static size_t
flood_distinct(struct flood_tally *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->distinct;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* One publisher: plain publishes of envelopes f<first> .. f<first+count-1> on its own connection. */
struct flood_pub {
    const char *url;
    size_t first, count;
    int rc;
    int64_t elapsed_ms;
};

static void *
flood_publish(void *arg)
{
    struct flood_pub *fp = arg;
    natsConnection *nc = it_connect(fp->url, "it-flood");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char id[32];
    int64_t t0 = sc_now_mono_ms();

    fp->rc = -1;
    if (!nc)
        return NULL;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (size_t i = fp->first; i < fp->first + fp->count; i++) {
        int n = snprintf(id, sizeof id, "f%zu", i);
        sb.size = 0;
        msgpack_pack_map(&pk, 4);
        msgpack_pack_str(&pk, 7);
        msgpack_pack_str_body(&pk, "task_id", 7);
        msgpack_pack_str(&pk, (size_t)n);
        msgpack_pack_str_body(&pk, id, (size_t)n);
        msgpack_pack_str(&pk, 4);
        msgpack_pack_str_body(&pk, "task", 4);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str(&pk, 1);
        msgpack_pack_str_body(&pk, "n", 1);
        msgpack_pack_uint64(&pk, i);
        msgpack_pack_str(&pk, 5);
        msgpack_pack_str_body(&pk, "error", 5);
        msgpack_pack_str(&pk, 4);
        msgpack_pack_str_body(&pk, "boom", 4);
        /* Parked tasks: no retry traffic competes with the flood. */
        msgpack_pack_str(&pk, 12);
        msgpack_pack_str_body(&pk, "retry_policy", 12);
        msgpack_pack_str(&pk, 5);
        msgpack_pack_str_body(&pk, "never", 5);
        if (natsConnection_Publish(nc, "dlq.failed.flood", sb.data, (int)sb.size) != NATS_OK)
            goto done;
    }
    /* The server has routed every message once the flush returns. */
    if (natsConnection_FlushTimeout(nc, 60000) != NATS_OK)
        goto done;
    fp->rc = 0;
done:
    fp->elapsed_ms = sc_now_mono_ms() - t0;
    msgpack_sbuffer_destroy(&sb);
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
    return NULL;
}

/* count_sidecars() asks $SRV.PING.dlq-sidecar and counts the answers that come within wait_ms. */
static int
count_sidecars(natsConnection *nc, int wait_ms)
{
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    natsMsg *m = NULL;
    int n = 0;

    if (natsInbox_Create(&inbox) != NATS_OK)
        return -1;
    if (natsConnection_SubscribeSync(&sub, nc, inbox) == NATS_OK &&
        natsConnection_PublishRequestString(nc, "$SRV.PING.dlq-sidecar", inbox, "") == NATS_OK) {
        while (natsSubscription_NextMsg(&m, sub, wait_ms) == NATS_OK) {
            n++;
            natsMsg_Destroy(m);
        }
    }
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    return n;
}

/* wait_tally() waits until want tasks were seen, giving up after idle_ms without progress. */
static size_t
wait_tally(struct flood_tally *t, size_t want, int idle_ms)
{
    size_t last = flood_distinct(t);
    int64_t since = sc_now_mono_ms();
    while (last < want && sc_now_mono_ms() - since < idle_ms) {
        it_sleep_ms(50);
        size_t now = flood_distinct(t);
        if (now != last) {
            last = now;
            since = sc_now_mono_ms();
        }
    }
    return last;
}

/* log_has() tells whether the file at path holds a line containing both a and b (b may be NULL). */
static bool
log_has(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    bool found = false;

    if (!f)
        return false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return found;
}

/* log_int() reads the integer after "key=" on the first line of path that contains line_has; -1 when absent. */
static long long
log_int(const char *path, const char *line_has, const char *key)
{
    FILE *f = fopen(path, "r");
    char line[4096], pat[64];
    long long v = -1;

    if (!f)
        return -1;
    snprintf(pat, sizeof pat, " %s=", key);
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, line_has) ? strstr(line, pat) : NULL;
        if (p) {
            v = strtoll(p + strlen(pat), NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static struct it_daemon flood_b; /* the second sidecar of test_shutdown_flood_pair */

static int
flood_teardown(void **state)
{
    if (flood_b.pid > 0)
        it_daemon_stop(&flood_b);
    return it_teardown(state);
}

/* The flood size per publisher: DLQ_IT_FLOOD_N (default 300,000, the size the defect was seen with). */
static size_t
flood_n(void)
{
    const char *v = getenv("DLQ_IT_FLOOD_N");
    long n = v ? atol(v) : 0;
    return n >= 1000 && n <= 5000000 ? (size_t)n : 300000;
}

static const char *const flood_flags[] = {
    "log.level=warn", "max_size=10000000", "max_bytes=8589934592",
    /* A generous drain: the test asserts completeness, not speed. */
    "shutdown.drain_ms=120000", NULL};

/*
 * 9. Two sidecars share the ingest queue group under a flood of plain
 * publishes (2 publishers x DLQ_IT_FLOOD_N); the first gets SIGTERM after
 * 0.7 s. Every published failure must be enqueued by exactly one of the
 * two (counted by the dlq.events.enqueued events they emit), the stopped
 * one must exit 0 and log that it dropped nothing.
 */
static void
test_shutdown_flood_pair(void **state)
{
    /* A logs at info: its closing tally (received, enqueued, dropped) is one of the two accounts. */
    const char *a_flags[] = {flood_flags[0], flood_flags[1], flood_flags[2], flood_flags[3],
                             "log.level=info", NULL};
    struct it_env *e = it_env_start("flood-pair", a_flags);
    assert_non_null(e);
    *state = e;
    size_t n = flood_n();
    static struct flood_tally tally;
    memset(&tally, 0, sizeof tally);
    pthread_mutex_init(&tally.mu, NULL);
    tally.n = 2 * n;
    tally.seen = calloc(tally.n / 8 + 1, 1);
    assert_non_null(tally.seen);

    char bdir[IT_PATH_MAX + 8];
    snprintf(bdir, sizeof bdir, "%s/b", e->dir);
    IT_CHECK(mkdir(bdir, 0700) == 0, "mkdir %s", bdir);
    memset(&flood_b, 0, sizeof flood_b);
    IT_CHECK(it_daemon_start(&flood_b, bdir, e->srv.url, flood_flags) == 0, "start sidecar B");
    int64_t deadline = sc_now_mono_ms() + IT_WAIT_MS;
    while (count_sidecars(e->nc, 300) < 2 && sc_now_mono_ms() < deadline)
        IT_CHECK(it_daemon_alive(&flood_b), "sidecar B exited at start");
    IT_CHECK(count_sidecars(e->nc, 300) == 2, "want 2 sidecars answering $SRV.PING");

    natsConnection *spy = it_env_connect(e, "it-spy");
    assert_non_null(spy);
    natsSubscription *sub = NULL;
    IT_CHECK(natsConnection_Subscribe(&sub, spy, "dlq.events.enqueued", flood_on_event, &tally) ==
                 NATS_OK,
             "subscribe to events");
    natsSubscription_SetPendingLimits(sub, -1, -1);
    IT_CHECK(natsConnection_Flush(spy) == NATS_OK, "flush the spy's subscription");

    struct flood_pub pubs[2] = {{e->srv.url, 0, n, -1, 0}, {e->srv.url, n, n, -1, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        IT_CHECK(pthread_create(&th[i], NULL, flood_publish, &pubs[i]) == 0, "publisher thread");
    it_sleep_ms(700);
    size_t before_term = flood_distinct(&tally);
    int64_t t_term = sc_now_mono_ms();
    kill(e->dmn.pid, SIGTERM);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++)
        IT_CHECK(pubs[i].rc == 0, "publisher %d failed", i);
    bool exited = it_daemon_wait_exit(&e->dmn, 180000);
    int64_t t_exit = sc_now_mono_ms();
    size_t got = wait_tally(&tally, 2 * n, 10000);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);

    fprintf(stderr,
            "[flood-pair] 2 x %zu published in %lld / %lld ms; %zu enqueued before SIGTERM; A "
            "exited %lld ms after it (status %d); %zu of %zu enqueued (dupes %zu, foreign %zu)\n",
            n, (long long)pubs[0].elapsed_ms, (long long)pubs[1].elapsed_ms, before_term,
            (long long)(t_exit - t_term), e->dmn.exit_status, got, 2 * n, tally.dupes,
            tally.foreign);
    /* The sidecars' own accounts: A's closing log line, B's stats (only B answers now). */
    const char *closing = "ingest closed";
    long long a_enq = log_int(e->dmn.log, closing, "enqueued");
    long long a_dropped = log_int(e->dmn.log, closing, "dropped");
    json_t *st = it_admin_stats(e->nc);
    long long b_enq = (long long)it_json_int(st, "lifetime_stats.enqueued");
    json_decref(st);
    fprintf(stderr, "[flood-pair] A: enqueued %lld, dropped %lld; B: enqueued %lld; sum %lld\n",
            a_enq, a_dropped, b_enq, a_enq + b_enq);
    if (got != 2 * n) {
        int shown = 0;
        fprintf(stderr, "[flood-pair] no event for:");
        for (size_t k = 0; k < 2 * n && shown < 10; k++)
            if (!(tally.seen[k / 8] & (1u << (k % 8)))) {
                char mid[32], stt[32];
                snprintf(mid, sizeof mid, "f%zu", k);
                fprintf(stderr, " %s (at B: %s)", mid, it_task_status(e->nc, mid, stt, sizeof stt));
                shown++;
            }
        fprintf(stderr, "\n");
    }
    IT_CHECK(exited, "sidecar A did not exit within 180 s of SIGTERM");
    IT_CHECK(e->dmn.exit_status == 0, "sidecar A exit status %d, want 0", e->dmn.exit_status);
    IT_CHECK(a_dropped == 0, "A's closing line: want dropped=0, got %lld", a_dropped);
    IT_CHECK(a_enq >= 0 && a_enq + b_enq == (long long)(2 * n),
             "the sidecars' counters: A enqueued %lld + B enqueued %lld, want %zu", a_enq, b_enq,
             2 * n);
    IT_CHECK(got == 2 * n, "%zu of %zu published failures have an enqueued event (%zu missing)",
             got, 2 * n, 2 * n - got);
    IT_CHECK(tally.dupes == 0, "%zu failures enqueued twice", tally.dupes);
    IT_CHECK(!log_has(e->dmn.log, "were not taken", NULL),
             "sidecar A's log says it dropped failures at shutdown");
    free(tally.seen);
    tally.seen = NULL;
    e->passed = true;
}

/*
 * 10. One sidecar (core mode): a burst that the server has already routed
 * to it (the publisher's flush returned) is taken in whole after SIGTERM,
 * however much of it still sat in nats.c's buffer.
 */
static void
test_shutdown_flood_single(void **state)
{
    struct it_env *e = it_env_start("flood-single", flood_flags);
    assert_non_null(e);
    *state = e;
    size_t n = flood_n();
    static struct flood_tally tally;
    memset(&tally, 0, sizeof tally);
    pthread_mutex_init(&tally.mu, NULL);
    tally.n = n;
    tally.seen = calloc(tally.n / 8 + 1, 1);
    assert_non_null(tally.seen);

    natsConnection *spy = it_env_connect(e, "it-spy");
    assert_non_null(spy);
    natsSubscription *sub = NULL;
    IT_CHECK(natsConnection_Subscribe(&sub, spy, "dlq.events.enqueued", flood_on_event, &tally) ==
                 NATS_OK,
             "subscribe to events");
    natsSubscription_SetPendingLimits(sub, -1, -1);
    IT_CHECK(natsConnection_Flush(spy) == NATS_OK, "flush the spy's subscription");

    struct flood_pub pub = {e->srv.url, 0, n, -1, 0};
    flood_publish(&pub);
    IT_CHECK(pub.rc == 0, "publisher failed");
    size_t before_term = flood_distinct(&tally);
    int64_t t_term = sc_now_mono_ms();
    kill(e->dmn.pid, SIGTERM);
    bool exited = it_daemon_wait_exit(&e->dmn, 180000);
    int64_t t_exit = sc_now_mono_ms();
    size_t got = wait_tally(&tally, n, 10000);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);

    fprintf(stderr,
            "[flood-single] %zu published and flushed in %lld ms; %zu enqueued before SIGTERM; "
            "exited %lld ms after it (status %d); %zu of %zu enqueued\n",
            n, (long long)pub.elapsed_ms, before_term, (long long)(t_exit - t_term),
            e->dmn.exit_status, got, n);
    IT_CHECK(before_term < n, "test precondition: the sidecar had a backlog at SIGTERM");
    IT_CHECK(exited, "the sidecar did not exit within 180 s of SIGTERM");
    IT_CHECK(e->dmn.exit_status == 0, "exit status %d, want 0", e->dmn.exit_status);
    IT_CHECK(got == n, "%zu of %zu routed failures were enqueued (%zu lost)", got, n, n - got);
    IT_CHECK(tally.dupes == 0, "%zu failures enqueued twice", tally.dupes);
    IT_CHECK(!log_has(e->dmn.log, "were not taken", NULL),
             "the log says failures were dropped at shutdown");
    /* Issue 10, item 10: our own close is not a disconnect worth a warning. */
    IT_CHECK(!log_has(e->dmn.log, "level=warn", "nats disconnected"),
             "a normal shutdown logged a warning \"nats disconnected\"");
    free(tally.seen);
    tally.seen = NULL;
    e->passed = true;
}

/*
 * 11. When the drain cannot finish (shutdown.drain_ms=0 ends it at the next
 * tick), what nats.c had received but the loop never took is counted and
 * logged, and the exit status says failures were lost.
 */
static void
test_shutdown_drain_cut_short(void **state)
{
    const char *flags[] = {"log.level=warn", "max_size=10000000", "max_bytes=8589934592",
                           "shutdown.drain_ms=0", NULL};
    struct it_env *e = it_env_start("drain-cut", flags);
    assert_non_null(e);
    *state = e;
    size_t n = flood_n();
    static struct flood_tally tally;
    memset(&tally, 0, sizeof tally);
    pthread_mutex_init(&tally.mu, NULL);
    tally.n = n;
    tally.seen = calloc(tally.n / 8 + 1, 1);
    assert_non_null(tally.seen);
    natsConnection *spy = it_env_connect(e, "it-spy");
    assert_non_null(spy);
    natsSubscription *sub = NULL;
    IT_CHECK(natsConnection_Subscribe(&sub, spy, "dlq.events.enqueued", flood_on_event, &tally) ==
                 NATS_OK,
             "subscribe to events");
    natsSubscription_SetPendingLimits(sub, -1, -1);
    IT_CHECK(natsConnection_Flush(spy) == NATS_OK, "flush the spy's subscription");

    struct flood_pub pub = {e->srv.url, 0, n, -1, 0};
    flood_publish(&pub);
    IT_CHECK(pub.rc == 0, "publisher failed");
    size_t before_term = flood_distinct(&tally);
    kill(e->dmn.pid, SIGTERM);
    bool exited = it_daemon_wait_exit(&e->dmn, 60000);
    size_t got = wait_tally(&tally, n, 3000);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    const char *line = "were not taken";
    long long received = log_int(e->dmn.log, line, "received");
    long long dropped = log_int(e->dmn.log, line, "dropped");
    fprintf(stderr,
            "[drain-cut] %zu published; %zu enqueued before SIGTERM, %zu in all; the log says "
            "received=%lld dropped=%lld; exit status %d\n",
            n, before_term, got, received, dropped, e->dmn.exit_status);
    IT_CHECK(before_term < n, "test precondition: the sidecar had a backlog at SIGTERM");
    IT_CHECK(exited, "the sidecar did not exit within 60 s of SIGTERM");
    IT_CHECK(dropped > 0, "want a warning with dropped=N > 0 in the log");
    IT_CHECK(received >= (long long)got && received + dropped <= (long long)n,
             "taken (%lld) + dropped (%lld) must not exceed the %zu published, and taken must "
             "cover the %zu enqueued events",
             received, dropped, n, got);
    IT_CHECK(e->dmn.exit_status == 1, "exit status %d, want 1 (failures lost)", e->dmn.exit_status);
    free(tally.seen);
    tally.seen = NULL;
    e->passed = true;
}

/* ---- issue 10, item 10: smaller wrong answers ----------------------------------------------- */

/* log_count() counts the lines of the file at path that contain both a and b (b may be NULL). */
static int
log_count(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int n = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return n;
}

/*
 * 12. What a service is told about its envelope: a uint64 past INT64_MAX in
 * a JSON task is accepted and republished as a MessagePack uint64; a
 * misspelled key ("eror") is named in the acknowledgement and logged at
 * warn (rate-limited: not once per envelope); text that is neither
 * MessagePack nor JSON is refused saying so. A normal shutdown then exits 0
 * without warning "nats disconnected".
 */
static void
test_envelope_answers(void **state)
{
    struct it_env *e = it_env_start("answers", NULL);
    assert_non_null(e);
    *state = e;
    natsConnection *wc = it_env_connect(e, "it-worker");
    assert_non_null(wc);
    struct it_recorder *w = it_env_recorder(e, wc, "dlq.retry.big", NULL, 16, true);
    assert_non_null(w);
    it_recorder_set_plan(w, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});

    /* The uint64. */
    const char *big = "{\"task_id\":\"big-1\",\"task\":12345678901234567890,\"error\":\"timeout\","
                      "\"retry_policy\":\"immediate\"}";
    json_t *ack = it_request_bytes(e->nc, "dlq.failed.big", big, strlen(big), IT_REQUEST_MS);
    char *dump = it_json_dump(ack);
    IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")), "a uint64 task: want ok, got %s", dump);
    free(dump);
    json_decref(ack);
    IT_CHECK(it_rec_wait(w, 1, IT_WAIT_MS), "the retry of big-1 reaches the worker");
    const struct it_rec_msg *m = it_rec_get(w, 0);
    static const uint8_t want[] = {0xcf, 0xab, 0x54, 0xa9, 0x8c, 0xeb, 0x1f, 0x0a, 0xd2};
    IT_CHECK(m->len == sizeof want && memcmp(m->body, want, sizeof want) == 0,
             "the retry body: want the MessagePack uint64 12345678901234567890 (9 bytes), got %zu "
             "bytes",
             m->len);

    /* The misspelled key, many times. */
    int64_t t0 = sc_now_mono_ms();
    for (int i = 0; i < 30; i++) {
        const char *typo = "{\"task_id\":\"typo-1\",\"task\":{},\"eror\":\"boom\",\"retry_policy\":\"never\"}";
        ack = it_request_bytes(e->nc, "dlq.failed.typo", typo, strlen(typo), IT_REQUEST_MS);
        dump = it_json_dump(ack);
        const json_t *uk = ack ? json_object_get(ack, "unknown_keys") : NULL;
        IT_CHECK(ack && json_is_true(json_object_get(ack, "ok")) && json_is_array(uk) &&
                     json_array_size(uk) == 1 &&
                     strcmp(json_string_value(json_array_get(uk, 0)), "eror") == 0,
                 "want {\"ok\":true,...,\"unknown_keys\":[\"eror\"]}, got %s", dump);
        free(dump);
        json_decref(ack);
    }
    int64_t elapsed = sc_now_mono_ms() - t0;
    /* A known-keys envelope carries no unknown_keys. */
    const char *clean = "{\"task_id\":\"clean-1\",\"task\":{},\"error\":\"boom\",\"retry_policy\":\"never\"}";
    ack = it_request_bytes(e->nc, "dlq.failed.typo", clean, strlen(clean), IT_REQUEST_MS);
    IT_CHECK(ack && json_object_get(ack, "unknown_keys") == NULL, "no unknown_keys when none");
    json_decref(ack);
    int warned = log_count(e->dmn.log, "level=warn", "unknown keys");
    IT_CHECK(log_count(e->dmn.log, "level=warn", "keys=eror") >= 1,
             "want a warning naming the key eror in the log");
    IT_CHECK(warned >= 1 && warned <= 1 + (int)(elapsed / 10000),
             "30 envelopes in %lld ms gave %d warnings (want rate-limited: one per 10 s)",
             (long long)elapsed, warned);

    /* Neither MessagePack nor JSON. */
    const char *text = "not json at all";
    ack = it_request_bytes(e->nc, "dlq.failed.typo", text, strlen(text), IT_REQUEST_MS);
    dump = it_json_dump(ack);
    const char *msg = it_json_str(ack, "error.message");
    IT_CHECK(it_json_int(ack, "error.code") == 400 && msg &&
                 strstr(msg, "neither MessagePack nor JSON") && !strstr(msg, "integer"),
             "\"not json at all\": want a 400 saying neither MessagePack nor JSON, got %s", dump);
    free(dump);
    json_decref(ack);

    /* A normal shutdown: exit 0, no warning about our own close. */
    IT_CHECK(it_daemon_stop(&e->dmn) == 0, "SIGTERM: exit status %d", e->dmn.exit_status);
    IT_CHECK(log_count(e->dmn.log, "level=warn", "nats disconnected") == 0,
             "a normal shutdown logged a warning \"nats disconnected\"");
    e->passed = true;
}

/*
 * 13. Queue-full refusals: the refused event says status "refused" (not
 * "pending": nothing was stored), the requester gets a 503, and the
 * refusals are logged at warn, rate-limited.
 */
static void
test_queue_full_refusals(void **state)
{
    const char *flags[] = {"max_size=100", NULL};
    struct it_env *e = it_env_start("full", flags);
    assert_non_null(e);
    *state = e;
    natsConnection *spyc = it_env_connect(e, "it-spy");
    assert_non_null(spyc);
    struct it_recorder *ev = it_env_recorder(e, spyc, "dlq.events.refused", NULL, 64, true);
    assert_non_null(ev);
    IT_CHECK(natsConnection_Flush(spyc) == NATS_OK, "flush the spy");

    char id[32];
    struct it_envelope env;
    it_envelope_init(&env);
    env.task_id = id;
    env.error = "boom";
    env.retry_policy = "never";
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "full-%d", i);
        IT_CHECK(it_publish_envelope(e->nc, "dlq.failed.full", &env) == 0, "publish %d", i);
    }
    int64_t t0 = sc_now_mono_ms();
    for (int i = 100; i < 130; i++) {
        snprintf(id, sizeof id, "full-%d", i);
        json_t *ack = it_request_envelope(e->nc, "dlq.failed.full", &env);
        char *dump = it_json_dump(ack);
        IT_CHECK(it_json_int(ack, "error.code") == 503, "failure %d past max_size: want 503, got %s",
                 i, dump);
        free(dump);
        json_decref(ack);
    }
    int64_t elapsed = sc_now_mono_ms() - t0;
    IT_CHECK(it_rec_wait(ev, 30, IT_WAIT_MS), "want 30 refused events, got %zu", it_rec_count(ev));
    for (size_t i = 0; i < 30; i++) {
        const struct it_rec_msg *m = it_rec_get(ev, i);
        json_t *j = json_loadb(m->body, m->len, 0, NULL);
        const char *st = it_json_str(j, "status");
        IT_CHECK(st && strcmp(st, "refused") == 0, "refused event %zu: want status refused, got %.*s",
                 i, (int)m->len, m->body);
        json_decref(j);
    }
    int warned = log_count(e->dmn.log, "level=warn", "queue full");
    IT_CHECK(warned >= 1 && warned <= 1 + (int)(elapsed / 10000),
             "30 refusals in %lld ms gave %d warnings (want at warn, rate-limited)",
             (long long)elapsed, warned);
    e->passed = true;
}

/*
 * 14. Envelopes decoded on nats.c's delivery thread and those left to the
 * loop, mixed: 3,000 failures (more than the 2,048 slots the delivery
 * thread decodes into, so slots are reused while the loop is behind)
 * published back to back: MessagePack with a short error (decoded on the
 * delivery thread), MessagePack with an error past limits.max_error_len
 * (truncated: decoded again on the loop), JSON without a header and JSON
 * with Content-Type: application/json (both the loop's). Every task must
 * hold its own error text: a slot reused before the loop handled its
 * message would give a task another one's.
 */
static void
test_prepared_mix(void **state)
{
    static const char *const flags[] = {"limits.max_error_len=64", "backoff.exp_base_ms=3600000",
                                        NULL};
    struct it_env *e = it_env_start("prepared-mix", flags);
    enum { N = 3000 };
    static char ids[N][64];
    char err[256], body[512];
    struct sc_buf b;

    assert_non_null(e);
    *state = e;
    sc_buf_init(&b, 4096);
    for (int i = 0; i < N; i++) {
        struct it_envelope env;
        it_unique_id("pm", ids[i], sizeof ids[i]);
        switch (i % 4) {
        case 0:
        case 1:
            it_envelope_init(&env);
            env.task_id = ids[i];
            if (i % 4 == 0)
                snprintf(err, sizeof err, "short error %d", i);
            else
                snprintf(err, sizeof err, "long error %d %0150d", i, 0);
            env.error = err;
            env.retry_policy = "exponential";
            IT_CHECK(it_envelope_pack(&env, &b) == 0, "pack %d", i);
            IT_CHECK(natsConnection_Publish(e->nc, "dlq.failed.mix", b.data, (int)b.len) == NATS_OK,
                     "publish %d", i);
            break;
        case 2:
            snprintf(body, sizeof body,
                     "  {\"task_id\":\"%s\",\"task\":{},\"error\":\"json error %d\","
                     "\"retry_policy\":\"exponential\"}",
                     ids[i], i);
            IT_CHECK(natsConnection_PublishString(e->nc, "dlq.failed.mix", body) == NATS_OK,
                     "publish %d", i);
            break;
        default: {
            natsMsg *m = NULL;
            snprintf(body, sizeof body,
                     "{\"task_id\":\"%s\",\"task\":{},\"error\":\"typed json error %d\","
                     "\"retry_policy\":\"exponential\"}",
                     ids[i], i);
            IT_CHECK(natsMsg_Create(&m, "dlq.failed.mix", NULL, body, (int)strlen(body)) ==
                             NATS_OK &&
                         natsMsgHeader_Set(m, "Content-Type", "application/json") == NATS_OK &&
                         natsConnection_PublishMsg(e->nc, m) == NATS_OK,
                     "publish %d", i);
            natsMsg_Destroy(m);
        }
        }
    }
    sc_buf_destroy(&b);
    IT_CHECK(natsConnection_FlushTimeout(e->nc, 10000) == NATS_OK, "flush");
    int64_t deadline = sc_now_mono_ms() + 60000;
    long long enq = 0;
    while (sc_now_mono_ms() < deadline) {
        json_t *st = it_admin_stats(e->nc);
        enq = it_json_int(st, "lifetime_stats.enqueued");
        json_decref(st);
        if (enq >= N)
            break;
        it_sleep_ms(50);
    }
    IT_CHECK(enq == N, "enqueued: want %d, got %lld", N, enq);
    for (int i = 0; i < N; i++) {
        json_t *t = it_admin_get(e->nc, ids[i]);
        const char *te = it_json_str(t, "error");
        char want[256];
        bool ok;
        switch (i % 4) {
        case 0:
            snprintf(want, sizeof want, "short error %d", i);
            ok = te && strcmp(te, want) == 0;
            break;
        case 1:
            snprintf(want, sizeof want, "long error %d ", i);
            ok = te && strlen(te) <= 64 && strncmp(te, want, strlen(want)) == 0 &&
                 strstr(te, "...[truncated]") != NULL;
            break;
        case 2:
            snprintf(want, sizeof want, "json error %d", i);
            ok = te && strcmp(te, want) == 0;
            break;
        default:
            snprintf(want, sizeof want, "typed json error %d", i);
            ok = te && strcmp(te, want) == 0;
        }
        char *dump = it_json_dump(t);
        IT_CHECK(ok, "task %d (%s): want its own error (%s...), got %s", i, ids[i], want, dump);
        free(dump);
        json_decref(t);
    }
    e->passed = true;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_duplicate_burst, it_teardown),
        cmocka_unit_test_teardown(test_retry_subject_injection, it_teardown),
        cmocka_unit_test_teardown(test_garbage, it_teardown),
        cmocka_unit_test_teardown(test_shutdown_flood_pair, flood_teardown),
        cmocka_unit_test_teardown(test_shutdown_flood_single, it_teardown),
        cmocka_unit_test_teardown(test_shutdown_drain_cut_short, it_teardown),
        cmocka_unit_test_teardown(test_envelope_answers, it_teardown),
        cmocka_unit_test_teardown(test_queue_full_refusals, it_teardown),
        cmocka_unit_test_teardown(test_prepared_mix, it_teardown),
    };
    if (getenv("DLQ_IT_FILTER")) /* e.g. DLQ_IT_FILTER='test_shutdown*' to run some */
        cmocka_set_test_filter(getenv("DLQ_IT_FILTER"));
    return cmocka_run_group_tests_name("integration_ingest", tests, NULL, NULL);
}
