/* test_ingest.c - integration: what comes in (duplicate bursts, hostile retry subjects, garbage bytes) and what the daemon makes of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    return strcmp(s, "dlq.retry.inj") == 0;
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_duplicate_burst, it_teardown),
        cmocka_unit_test_teardown(test_retry_subject_injection, it_teardown),
        cmocka_unit_test_teardown(test_garbage, it_teardown),
    };
    return cmocka_run_group_tests_name("integration_ingest", tests, NULL, NULL);
}
