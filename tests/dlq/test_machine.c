/* test_machine.c - unit tests of the state machine of DESIGN section 10: a fake clock and fake ports, no nats-server, no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dlq.h"

/* ---- fake ports --------------------------------------------------------------------------------- */

#define MAX_PUBS 256

/* One publish the machine made, with the headers that matter. */
struct pub {
    char subject[128];
    char reply[160];
    char attempt[16];
    char maxr[16];
    char episode[24];
    char msgid[256];
    char task_id[128];
    char body[64];            /* the first bytes of the body */
    char trace[64];           /* header X-Trace (an original's header kept by an advisory task) */
    size_t nheaders;          /* name/value pairs */
    size_t len;
};

struct fake {
    struct pub pubs[MAX_PUBS];
    size_t npub;
    dlq_pub_result script[8]; /* answers of the next publishes (then DLQ_PUB_OK) */
    size_t nscript;
    bool down;               /* connected() says false */
    uint64_t epoch;
    char events[4096];       /* "kind:attempt " for each event, in order */
    size_t changed, removed, forgotten, logs;
    int held_partition;      /* may_dispatch() is false for this partition of 4 (-1: none) */
    const char *admit;       /* what admit() answers */
    size_t observed[2];
    uint64_t token;
    int64_t gate_until;      /* gate() holds every due task until then (0: go) */
    size_t gated;            /* gate() calls */
    char verdicts[256];      /* "O", "F" or "N" for each verdict(), in order */
    bool close;              /* verdict() says the circuit closed */
};

static struct fake F;

static const char *
hdr(const char *const *kv, const char *name)
{
    for (size_t i = 0; kv && kv[i]; i += 2)
        if (strcmp(kv[i], name) == 0)
            return kv[i + 1];
    return "";
}

static dlq_pub_result
f_publish(void *ctx, const char *subject, const char *reply, const void *body, size_t len,
          const char *const *headers)
{
    struct pub *p;
    dlq_pub_result r = DLQ_PUB_OK;

    (void)ctx;
    if (F.nscript) {
        r = F.script[0];
        memmove(F.script, F.script + 1, --F.nscript * sizeof(F.script[0]));
    }
    if (r != DLQ_PUB_OK)
        return r;
    assert_true(F.npub < MAX_PUBS);
    p = &F.pubs[F.npub++];
    snprintf(p->subject, sizeof(p->subject), "%s", subject);
    snprintf(p->reply, sizeof(p->reply), "%s", reply ? reply : "");
    snprintf(p->attempt, sizeof(p->attempt), "%s", hdr(headers, CODEC_HDR_ATTEMPT));
    snprintf(p->maxr, sizeof(p->maxr), "%s", hdr(headers, CODEC_HDR_MAX_RETRIES));
    snprintf(p->episode, sizeof(p->episode), "%s", hdr(headers, DLQ_HDR_EPISODE));
    snprintf(p->msgid, sizeof(p->msgid), "%s", hdr(headers, CODEC_HDR_MSG_ID));
    snprintf(p->task_id, sizeof(p->task_id), "%s", hdr(headers, CODEC_HDR_TASK_ID));
    snprintf(p->trace, sizeof(p->trace), "%s", hdr(headers, "X-Trace"));
    if (body && len)
        memcpy(p->body, body, len < sizeof(p->body) ? len : sizeof(p->body));
    for (p->nheaders = 0; headers && headers[2 * p->nheaders]; p->nheaders++)
        ;
    p->len = len;
    return DLQ_PUB_OK;
}

static bool
f_connected(void *ctx, uint64_t *epoch)
{
    (void)ctx;
    *epoch = F.epoch;
    return !F.down;
}

static void
f_event(void *ctx, const char *kind, const struct dlq_task *t, int32_t attempt, const char *error)
{
    size_t n = strlen(F.events);

    (void)ctx;
    (void)t;
    (void)error;
    snprintf(F.events + n, sizeof(F.events) - n, "%s:%d ", kind, (int)attempt);
}

static void
f_changed(void *ctx, struct dlq_task *t)
{
    (void)ctx;
    t->version++;
    F.changed++;
}

static void
f_removed(void *ctx, struct dlq_task *t)
{
    (void)ctx;
    (void)t;
    F.removed++;
}

static void
f_forgotten(void *ctx, struct dlq_task *t)
{
    (void)ctx;
    (void)t;
    F.forgotten++;
}

static bool
f_may_dispatch(void *ctx, const struct dlq_task *t)
{
    (void)ctx;
    return F.held_partition < 0 || dlq_partition_of(t->id, t->id_len, 4) != (uint32_t)F.held_partition;
}

static const char *
f_admit(void *ctx)
{
    (void)ctx;
    return F.admit;
}

static void
f_log(void *ctx, dlq_log_level level, const char *msg, const char *const *kv)
{
    (void)ctx;
    (void)level;
    (void)msg;
    (void)kv;
    F.logs++;
}

static bool
f_log_enabled(void *ctx, dlq_log_level level)
{
    (void)ctx;
    (void)level;
    return true;
}

static void
f_observe(void *ctx, dlq_hist h, int64_t ms)
{
    (void)ctx;
    (void)ms;
    F.observed[h]++;
}

static uint64_t
f_rand(void *ctx)
{
    (void)ctx;
    return 1ULL << 63; /* the middle: no jitter either way */
}

static uint64_t
f_token(void *ctx)
{
    (void)ctx;
    return ++F.token * 0x9e3779b97f4a7c15ULL;
}

static int64_t
f_gate(void *ctx, const struct dlq_task *t, int64_t now_mono)
{
    (void)ctx;
    (void)t;
    (void)now_mono;
    F.gated++;
    return F.gate_until;
}

static bool
f_verdict(void *ctx, const struct dlq_task *t, dlq_attempt_end v, int64_t now_mono)
{
    size_t n = strlen(F.verdicts);

    (void)ctx;
    (void)t;
    (void)now_mono;
    if (n + 1 < sizeof(F.verdicts))
        F.verdicts[n] = v == DLQ_END_OK ? 'O' : v == DLQ_END_FAILED ? 'F' : 'N';
    return F.close;
}

static const struct dlq_ports ports = {
    .publish = f_publish,
    .connected = f_connected,
    .event = f_event,
    .changed = f_changed,
    .removed = f_removed,
    .forgotten = f_forgotten,
    .may_dispatch = f_may_dispatch,
    .admit = f_admit,
    .log = f_log,
    .log_enabled = f_log_enabled,
    .observe = f_observe,
    .rand = f_rand,
    .token = f_token,
    .gate = f_gate,
    .verdict = f_verdict,
};

/* ---- the fixture: a machine, a fake clock ------------------------------------------------------ */

#define WALL0 1790000000000LL
#define MONO0 5000

struct fx {
    struct config cfg;
    struct policy_classifier *pc;
    struct dlq_machine m;
    int64_t wall, mono;
};

static int
setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    char err[256];

    assert_non_null(x);
    memset(&F, 0, sizeof(F));
    F.held_partition = -1;
    config_init(&x->cfg);
    x->cfg.backoff.jitter = 0;
    assert_int_equal(policy_classifier_new(NULL, 0, false, &x->pc, err, sizeof(err)), SC_OK);
    x->wall = WALL0;
    x->mono = MONO0;
    dlq_machine_init(&x->m, &x->cfg, x->pc, "_INBOX.t", &ports, x->mono);
    *state = x;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *x = *state;

    dlq_machine_destroy(&x->m);
    policy_classifier_free(x->pc);
    config_destroy(&x->cfg);
    free(x);
    return 0;
}

/* Moves the fake clock ms forward and runs the wheels every tick on the way. */
static void
advance(struct fx *x, int64_t ms)
{
    int64_t tick = x->cfg.timer_tick_ms, end = x->mono + ms;

    while (x->mono < end) {
        int64_t step = end - x->mono < tick ? end - x->mono : tick;
        x->mono += step;
        x->wall += step;
        dlq_machine_run(&x->m, x->wall, x->mono, true);
    }
}

static struct codec_str
cs(const char *s)
{
    struct codec_str v = {s, s ? strlen(s) : 0};
    return v;
}

/* What a test envelope carries; NULL / 0 fields are absent. */
struct envopt {
    const char *policy;       /* retry_policy */
    const char *retry_subject;
    const char *error;
    const char *category;
    bool has_max;             /* max_retries given */
    int max;
    uint64_t seq;             /* JetStream stream sequence (0: core NATS) */
    int64_t ts_us;            /* JetStream: when the stream stored it (0: core NATS) */
    const int64_t *backoff;   /* the envelope's backoff delays, ms (nbackoff of them) */
    unsigned nbackoff;
    const char *tpl;          /* template */
    bool no_policy;           /* no retry_policy at all */
    const char *priority;     /* priority */
    const char *const *deps;  /* depends_on (ndeps ids) */
    unsigned ndeps;
};

#define OPT(...) ((struct envopt){__VA_ARGS__})

static struct dlq_decision D;

/* Hands one failure of task id on dlq.failed.svc to the machine; returns the verdict (decision in D). */
static const char *service_of_next; /* the {service} ingest() passes (NULL: "svc") */

static dlq_verdict
ingest(struct fx *x, const char *id, struct envopt o, bool request, int64_t max_payload)
{
    struct codec_envelope env;
    struct dlq_failure f;

    memset(&env, 0, sizeof(env));
    env.task_id = cs(id);
    env.task = cs("\xa4work");
    env.error = cs(o.error ? o.error : "boom");
    env.error_category = cs(o.category ? o.category : "transient");
    env.retry_policy = cs(o.no_policy ? NULL : o.policy ? o.policy : "exponential");
    env.template_name = cs(o.tpl);
    env.priority = cs(o.priority);
    env.retry_subject = cs(o.retry_subject);
    env.has_max_retries = o.has_max;
    env.max_retries = o.max;
    env.backoff_n = o.nbackoff;
    if (o.nbackoff)
        memcpy(env.backoff_ms, o.backoff, o.nbackoff * sizeof(env.backoff_ms[0]));
    env.depends_n = o.ndeps;
    for (unsigned i = 0; i < o.ndeps; i++)
        env.depends_on[i] = cs(o.deps[i]);
    memset(&f, 0, sizeof(f));
    f.stream_seq = o.seq;
    f.stream_time_us = o.ts_us;
    f.env = &env;
    f.subject = "dlq.failed.svc";
    f.service = service_of_next ? service_of_next : "svc";
    f.max_payload = max_payload;
    f.wants_answer = request;
    dlq_ingest(&x->m, &f, x->wall, x->mono, &D);
    return D.verdict;
}

static struct dlq_task *
task(struct fx *x, const char *id)
{
    return dlq_queue_find(&x->m.q, id, strlen(id));
}

/* The in-flight slot and token of the last publish, from its reply subject "_INBOX.t.<slot>.<token>". */
static struct dlq_task *
flight_of(struct fx *x, const struct pub *p, bool *stored)
{
    unsigned slot = 0;
    unsigned long long token = 0;

    assert_int_equal(sscanf(p->reply, "_INBOX.t.%u.%16llx", &slot, &token), 2);
    return dlq_machine_flight(&x->m, slot, token, stored);
}

static int64_t
backoff(struct fx *x, policy_retry p, int64_t n)
{
    return policy_backoff_raw(&x->cfg.backoff, p, n);
}

/* ---- §10: failure -> pending -> retrying -> completed / pending / exhausted ---------------------- */

/*
 * retry.subject_template expanded per service in runs (intake.c keeps the
 * last expansion): another service, and the template's text changed in
 * place (same address, as a reload could leave it), each get their own.
 */
static void
test_template_runs(void **state)
{
    struct fx *x = *state;
    char *tpl = x->cfg.retry_subject_template;

    service_of_next = "svc";
    ingest(x, "a", OPT(.error = NULL), false, 0);
    service_of_next = "other";
    ingest(x, "b", OPT(.error = NULL), false, 0);
    service_of_next = "svc";
    ingest(x, "c", OPT(.error = NULL), false, 0);
    assert_string_equal(task(x, "a")->retry_subject, "dlq.retry.svc");
    assert_string_equal(task(x, "b")->retry_subject, "dlq.retry.other");
    assert_string_equal(task(x, "c")->retry_subject, "dlq.retry.svc");
    assert_string_equal(tpl, "dlq.retry.{service}");
    tpl[4] = 'R'; /* "dlq.Retry.{service}": outside retry.allowed_subjects */
    ingest(x, "d", OPT(.error = NULL), false, 0);
    tpl[4] = 'r';
    service_of_next = NULL;
    assert_null(task(x, "d")->retry_subject);
    assert_true(task(x, "d")->parked);
}

/* A new failure is stored pending, due after the policy's first delay, and counted. */
static void
test_new_failure_scheduled(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    assert_int_equal(ingest(x, "a", OPT(.error = NULL), true, 0), DLQ_IN_STORED);
    t = task(x, "a");
    assert_non_null(t);
    assert_ptr_equal(D.task, t);
    assert_string_equal(D.status, "pending");
    assert_int_equal(t->status, DLQ_TASK_PENDING);
    assert_false(t->parked);
    assert_int_equal(D.next_retry_at, WALL0 + backoff(x, POLICY_EXPONENTIAL, 1));
    assert_int_equal(t->max_retries, x->cfg.default_max_retries);
    assert_string_equal(t->retry_subject, "dlq.retry.svc");
    assert_int_equal(x->m.c.enqueued, 1);
    assert_string_equal(F.events, "enqueued:0 ");
    assert_true(F.changed >= 1);
    assert_int_equal(x->m.q.counts[DLQ_TASK_PENDING], 1);
    assert_int_equal(F.npub, 0);
}

/* Due: the retry goes out once, with attempt 1, its budget and Nats-Msg-Id <id>:<episode>:1. */
static void
test_due_publishes_attempt(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    char msgid[128];

    ingest(x, "a", OPT(.error = NULL), false, 0);
    t = task(x, "a");
    advance(x, backoff(x, POLICY_EXPONENTIAL, 1) - 20);
    assert_int_equal(F.npub, 0);
    advance(x, 40);
    assert_int_equal(F.npub, 1);
    assert_string_equal(F.pubs[0].subject, "dlq.retry.svc");
    assert_string_equal(F.pubs[0].task_id, "a");
    assert_string_equal(F.pubs[0].attempt, "1");
    assert_string_equal(F.pubs[0].maxr, "3");
    snprintf(msgid, sizeof(msgid), "a:%lld:1", (long long)t->episode_id);
    assert_string_equal(F.pubs[0].msgid, msgid);
    assert_int_equal(F.pubs[0].len, 5);
    assert_int_equal(t->status, DLQ_TASK_RETRYING);
    assert_int_equal(t->next_retry_at, 0);
    assert_int_equal(x->m.inflight, 1);
    assert_int_equal(x->m.c.attempts, 1);
    assert_int_equal(F.observed[DLQ_HIST_RETRY_LATENESS], 1);
    assert_non_null(strstr(F.events, "retried:1 "));
    advance(x, 1000);
    assert_int_equal(F.npub, 1); /* nothing more while the attempt is out */
}

/* A success completes the task (removed without keep_completed) and frees its slot. */
static void
test_success_completes(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored = true;

    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    t = flight_of(x, &F.pubs[0], &stored);
    assert_ptr_equal(t, task(x, "a"));
    assert_false(stored);
    dlq_machine_succeeded(&x->m, t, x->wall, x->mono);
    assert_null(task(x, "a"));
    assert_int_equal(F.removed, 1);
    assert_int_equal(x->m.c.retry_success, 1);
    assert_int_equal(x->m.inflight, 0);
    assert_int_equal(F.observed[DLQ_HIST_TIME_TO_SUCCESS], 1);
    assert_non_null(strstr(F.events, "succeeded:1 "));
    assert_int_equal(dlq_queue_active(&x->m.q), 0);
}

/* With keep_completed the task stays, completed. */
static void
test_success_kept(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored;

    x->cfg.store_keep_completed = true;
    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    advance(x, 20);
    t = flight_of(x, &F.pubs[0], &stored);
    dlq_machine_succeeded(&x->m, t, x->wall, x->mono);
    assert_int_equal(t->status, DLQ_TASK_COMPLETED);
    assert_int_equal(F.removed, 0);
    assert_int_equal(x->m.q.counts[DLQ_TASK_COMPLETED], 1);
}

/* A failed attempt with budget left is charged, classified again and scheduled by the policy. */
static void
test_failure_with_budget(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored;

    ingest(x, "a", OPT(.policy = "linear"), false, 0);
    advance(x, backoff(x, POLICY_LINEAR, 1) + 20);
    assert_int_equal(F.npub, 1);
    t = flight_of(x, &F.pubs[0], &stored);
    dlq_machine_reply_failed(&x->m, t, "connection refused", 18, "ECONNREFUSED", 12, x->wall,
                             x->mono);
    assert_int_equal(t->status, DLQ_TASK_PENDING);
    assert_int_equal(t->retry_count, 1);
    assert_string_equal(t->error, "connection refused");
    assert_string_equal(t->error_type, "ECONNREFUSED");
    assert_int_equal(t->next_retry_at, x->wall + backoff(x, POLICY_LINEAR, 2));
    assert_int_equal(x->m.c.retry_failed, 1);
    assert_int_equal(x->m.c.retry_timeouts, 0);
    assert_int_equal(x->m.inflight, 0);
    assert_non_null(strstr(F.events, "failed:1 "));
    advance(x, backoff(x, POLICY_LINEAR, 2) + 20);
    assert_int_equal(F.npub, 2);
    assert_string_equal(F.pubs[1].attempt, "2");
}

/* The last attempt of the budget failing exhausts the task, with its event. */
static void
test_exhausted(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored;

    ingest(x, "a", OPT(.policy = "immediate", .has_max = true, .max = 1), false, 0);
    advance(x, 20);
    t = flight_of(x, &F.pubs[0], &stored);
    dlq_machine_reply_failed(&x->m, t, "no", 2, NULL, 0, x->wall, x->mono);
    assert_int_equal(t->status, DLQ_TASK_EXHAUSTED);
    assert_int_equal(t->retry_count, 1);
    assert_int_equal(t->next_retry_at, 0);
    assert_int_equal(x->m.c.exhausted, 1);
    assert_non_null(strstr(F.events, "failed:1 exhausted:1 "));
    advance(x, 100000);
    assert_int_equal(F.npub, 1);
}

/* No reply within retry.timeout_ms: a failed attempt of category network, rule "timeout". */
static void
test_timeout(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    advance(x, 20);
    t = task(x, "a");
    advance(x, x->cfg.retry_timeout_ms + 20);
    assert_int_equal(t->retry_count, 1);
    assert_int_equal(t->category, POLICY_CAT_NETWORK);
    assert_string_equal(t->rule_id, "timeout");
    assert_string_equal(t->error, "retry timed out");
    assert_int_equal(x->m.c.retry_timeouts, 1);
    assert_int_equal(x->m.c.retry_failed, 1);
    assert_true(F.npub >= 2); /* immediate: sent again at once */
    assert_string_equal(F.pubs[1].attempt, "2");
}

/* A reply that comes after its timeout (even once the slot is reused) is ignored. */
static void
test_reply_after_timeout(void **state)
{
    struct fx *x = *state;
    struct pub first;
    bool stored;

    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    advance(x, 20);
    first = F.pubs[0];
    advance(x, x->cfg.retry_timeout_ms + 20);
    assert_int_equal(F.npub, 2); /* attempt 2 is out, in the same slot */
    assert_null(flight_of(x, &first, &stored));
    assert_non_null(flight_of(x, &F.pubs[1], &stored));
    assert_int_equal(x->m.c.retry_success, 0);
    assert_int_equal(task(x, "a")->retry_count, 1);
}

/* With outcome none the publish is the success, at the timeout. */
static void
test_outcome_none(void **state)
{
    struct fx *x = *state;

    x->cfg.retry_outcome = CONFIG_OUTCOME_NONE;
    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    advance(x, 20);
    assert_string_equal(F.pubs[0].reply, "");
    advance(x, x->cfg.retry_timeout_ms + 20);
    assert_null(task(x, "a"));
    assert_int_equal(x->m.c.retry_success, 1);
}

/* With outcome stored the PubAck is the outcome: the flight says so, and a reply is asked for. */
static void
test_outcome_stored_flight(void **state)
{
    struct fx *x = *state;
    bool stored = false;

    x->cfg.retry_outcome = CONFIG_OUTCOME_STORED;
    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    assert_non_null(strstr(F.pubs[0].reply, "_INBOX.t.0."));
    assert_ptr_equal(flight_of(x, &F.pubs[0], &stored), task(x, "a"));
    assert_true(stored);
    /* No PubAck within the timeout: a failed attempt, even though outcome is not "reply". */
    advance(x, x->cfg.retry_timeout_ms + 20);
    assert_int_equal(x->m.c.retry_timeouts, 1);
}

/* A repeat failure of an exhausted task only updates its record. */
static void
test_repeat_exhausted(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    ingest(x, "a", OPT(.has_max = true, .max = 0), false, 0);
    t = task(x, "a");
    assert_int_equal(t->status, DLQ_TASK_EXHAUSTED);
    assert_int_equal(ingest(x, "a", OPT(.error = "later"), true, 0), DLQ_IN_STORED);
    assert_string_equal(D.status, "exhausted");
    assert_string_equal(t->error, "later");
    assert_int_equal(x->m.c.duplicates, 1);
    assert_int_equal(x->m.c.exhausted, 1);
    advance(x, 100000);
    assert_int_equal(F.npub, 0);
}

/* ---- deferrals: not attempts ------------------------------------------------------------------- */

/* No responders in a row: deferred with a growing delay, never charged, history every tenth. */
static void
test_no_responders_streak(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored;
    int64_t last = 0;

    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    t = task(x, "a");
    for (int i = 1; i <= 12; i++) {
        for (int k = 0; k < 7000 && F.npub < (size_t)i; k++)
            advance(x, 10); /* until the next send, well before its timeout */
        assert_int_equal(F.npub, (size_t)i);
        assert_string_equal(F.pubs[i - 1].attempt, "1");
        assert_string_equal(F.pubs[i - 1].msgid, F.pubs[0].msgid);
        assert_ptr_equal(flight_of(x, &F.pubs[i - 1], &stored), t);
        dlq_machine_deferred(&x->m, t, "no responders", x->wall, x->mono);
        assert_int_equal(t->status, DLQ_TASK_PENDING);
        assert_int_equal(t->defer_streak, i);
        assert_true(t->next_retry_at - x->wall >= last);
        last = t->next_retry_at - x->wall;
    }
    assert_true(last <= 60000);
    assert_int_equal(t->retry_count, 0);
    assert_int_equal(x->m.c.deferred, 12);
    assert_int_equal(x->m.c.retry_failed, 0);
    assert_int_equal(x->m.inflight, 0);
    {
        int deferred = 0;
        for (uint16_t i = 0; i < t->hist_len; i++)
            if (t->hist[(t->hist_head + i) % t->hist_alloc].outcome == DLQ_OUT_DEFERRED)
                deferred++;
        assert_int_equal(deferred, 2); /* streak 1 and 10 */
    }
    /* A success ends the streak. */
    advance(x, 60010);
    assert_int_equal(F.npub, 13);
    dlq_machine_succeeded(&x->m, flight_of(x, &F.pubs[F.npub - 1], &stored), x->wall, x->mono);
    assert_int_equal(x->m.c.retry_success, 1);
}

/* Disconnected: due tasks are deferred, nothing is published; back up, the same attempt goes out. */
static void
test_disconnected_defers(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    F.down = true;
    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    t = task(x, "a");
    advance(x, 20);
    assert_int_equal(F.npub, 0);
    assert_int_equal(x->m.c.deferred, 1);
    assert_non_null(strstr(F.events, "deferred:1 "));
    F.down = false;
    advance(x, 1000);
    assert_int_equal(F.npub, 1);
    assert_string_equal(F.pubs[0].attempt, "1");
    assert_int_equal(t->retry_count, 0);
}

/* A publish that failed is deferred; one that can never fit parks the task. */
static void
test_publish_failed_and_too_big(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    F.script[0] = DLQ_PUB_FAILED;
    F.script[1] = DLQ_PUB_TOOBIG;
    F.nscript = 2;
    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    t = task(x, "a");
    advance(x, 20);
    assert_int_equal(x->m.c.deferred, 1);
    assert_int_equal(t->status, DLQ_TASK_PENDING);
    assert_false(t->parked);
    assert_int_equal(x->m.inflight, 0);
    advance(x, 1000);
    assert_true(t->parked);
    assert_non_null(strstr(t->park_reason, "max_payload"));
    assert_int_equal(x->m.inflight, 0);
    assert_int_equal(t->retry_count, 0);
    advance(x, 100000);
    assert_int_equal(F.npub, 0);
}

/* The connection dropped while the retry was out: deferred at its timeout, not charged. */
static void
test_connection_lost_while_out(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    t = task(x, "a");
    advance(x, 20);
    F.epoch++;
    advance(x, x->cfg.retry_timeout_ms + 20);
    assert_int_equal(t->retry_count, 0);
    assert_int_equal(x->m.c.retry_timeouts, 0);
    assert_int_equal(x->m.c.deferred, 1);
}

/* ---- parked ------------------------------------------------------------------------------------ */

/* Policy never parks with a reason; an operator's retry sends it. */
static void
test_policy_never_parks(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    ingest(x, "a", OPT(.policy = "never"), false, 0);
    t = task(x, "a");
    assert_true(t->parked);
    assert_int_equal(D.next_retry_at, 0);
    assert_non_null(strstr(t->park_reason, "never"));
    assert_int_equal(x->m.q.parked, 1);
    advance(x, 1000000);
    assert_int_equal(F.npub, 0);
    assert_int_equal(dlq_machine_retry(&x->m, t, x->wall, x->mono), SC_OK);
    assert_false(t->parked);
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    assert_int_equal(x->m.c.manual_retries, 1);
}

/* A refused retry subject parks the task; no operator retry can send it. */
static void
test_refused_subject_parks(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    ingest(x, "a", OPT(.retry_subject = "elsewhere.svc"), false, 0);
    t = task(x, "a");
    assert_true(t->parked);
    assert_null(t->retry_subject);
    assert_non_null(strstr(t->park_reason, "allowed_subjects"));
    assert_int_equal(dlq_machine_retry(&x->m, t, x->wall, x->mono), SC_ECONFLICT);
    assert_int_equal(x->m.c.manual_retries, 0);
    /* A repeat naming an allowed subject schedules it again. */
    ingest(x, "a", OPT(.retry_subject = "dlq.retry.other"), false, 0);
    assert_false(t->parked);
    assert_string_equal(t->retry_subject, "dlq.retry.other");
    assert_int_equal(x->m.c.duplicates, 1);
}

/* ---- operators --------------------------------------------------------------------------------- */

/* An operator's retry moves the due time to now; the old timer does not send it twice. */
static void
test_admin_retry_races_timer(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    int64_t due = backoff(x, POLICY_EXPONENTIAL, 1);

    ingest(x, "a", OPT(.error = NULL), false, 0);
    t = task(x, "a");
    advance(x, due / 2);
    assert_int_equal(dlq_machine_retry(&x->m, t, x->wall, x->mono), SC_OK);
    assert_int_equal(t->next_retry_at, x->wall);
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    assert_int_equal(dlq_machine_retry(&x->m, t, x->wall, x->mono), SC_ECONFLICT); /* out */
    advance(x, due);
    assert_int_equal(F.npub, 1);
    assert_int_equal(x->m.c.manual_retries, 1);
}

/* Retrying an exhausted task grants one more attempt of budget, kept by a reload. */
static void
test_admin_retry_exhausted(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored;

    ingest(x, "a", OPT(.policy = "immediate", .has_max = true, .max = 0), false, 0);
    t = task(x, "a");
    assert_int_equal(t->status, DLQ_TASK_EXHAUSTED);
    assert_int_equal(dlq_machine_retry(&x->m, t, x->wall, x->mono), SC_OK);
    assert_int_equal(t->max_retries, 1);
    assert_true(t->max_retries_own);
    advance(x, 20);
    assert_string_equal(F.pubs[0].attempt, "1");
    assert_string_equal(F.pubs[0].maxr, "1");
    dlq_machine_reply_failed(&x->m, flight_of(x, &F.pubs[0], &stored), "x", 1, NULL, 0, x->wall,
                             x->mono);
    assert_int_equal(t->status, DLQ_TASK_EXHAUSTED);
}

/* Archiving a retrying task frees its slot and timer; its late reply is ignored. */
static void
test_archive_retrying(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored;

    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    advance(x, 20);
    t = task(x, "a");
    assert_int_equal(t->status, DLQ_TASK_RETRYING);
    assert_int_equal(dlq_machine_archive(&x->m, t, x->wall), SC_OK);
    assert_null(task(x, "a"));
    assert_int_equal(x->m.inflight, 0);
    assert_int_equal(dlq_wheel_count(x->m.twheel), 0);
    assert_null(flight_of(x, &F.pubs[0], &stored));
    assert_int_equal(x->m.c.archived, 1);
    assert_non_null(strstr(F.events, "archived:0 "));
    advance(x, x->cfg.retry_timeout_ms + 20);
    assert_int_equal(x->m.c.retry_timeouts, 0);
}

/* An archived task (kept) refuses a second archive and a retry. */
static void
test_archive_kept(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    x->cfg.store_keep_completed = true;
    ingest(x, "a", OPT(.error = NULL), false, 0);
    t = task(x, "a");
    assert_int_equal(dlq_machine_archive(&x->m, t, x->wall), SC_OK);
    assert_int_equal(t->status, DLQ_TASK_ARCHIVED);
    assert_int_equal(dlq_machine_scheduled(&x->m), 0);
    assert_int_equal(dlq_machine_archive(&x->m, t, x->wall), SC_ECONFLICT);
    assert_int_equal(dlq_machine_retry(&x->m, t, x->wall, x->mono), SC_ECONFLICT);
    assert_int_equal(x->m.c.archived, 1);
}

/* Clear removes a task whatever its status, counted, with its event. */
static void
test_clear(void **state)
{
    struct fx *x = *state;

    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    ingest(x, "b", OPT(.error = NULL), false, 0);
    advance(x, 20);
    dlq_machine_clear(&x->m, task(x, "a"));
    dlq_machine_clear(&x->m, task(x, "b"));
    assert_int_equal(x->m.q.count, 0);
    assert_int_equal(x->m.inflight, 0);
    assert_int_equal(dlq_machine_scheduled(&x->m), 0);
    assert_int_equal(F.removed, 2);
    assert_int_equal(x->m.c.cleared, 2);
    assert_non_null(strstr(F.events, "cleared:0 cleared:0 "));
}

/* ---- repeats and episodes ---------------------------------------------------------------------- */

/* A repeat failure while retrying fails the attempt in flight. */
static void
test_repeat_while_retrying(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored;

    ingest(x, "a", OPT(.policy = "linear"), false, 0);
    advance(x, backoff(x, POLICY_LINEAR, 1) + 20);
    t = task(x, "a");
    assert_int_equal(t->status, DLQ_TASK_RETRYING);
    assert_int_equal(ingest(x, "a", OPT(.policy = "linear", .error = "again"), true, 0),
                     DLQ_IN_STORED);
    assert_string_equal(D.status, "pending");
    assert_int_equal(t->retry_count, 1);
    assert_string_equal(t->error, "again");
    assert_int_equal(x->m.c.failures_while_retrying, 1);
    assert_int_equal(x->m.c.duplicates, 1);
    assert_int_equal(x->m.c.enqueued, 1);
    assert_int_equal(x->m.inflight, 0);
    assert_null(flight_of(x, &F.pubs[0], &stored));
    assert_int_equal(D.next_retry_at, x->wall + backoff(x, POLICY_LINEAR, 2));
}

/* A repeat of a pending task keeps its schedule. */
static void
test_repeat_pending_keeps_schedule(void **state)
{
    struct fx *x = *state;
    int64_t due;

    ingest(x, "a", OPT(.error = NULL), false, 0);
    due = D.next_retry_at;
    advance(x, 1000);
    ingest(x, "a", OPT(.error = "again"), false, 0);
    assert_int_equal(D.next_retry_at, due);
    assert_int_equal(x->m.c.duplicates, 1);
}

/* A failure for a completed task opens a new episode: new episode id, fresh budget, new Nats-Msg-Id. */
static void
test_reopen_new_episode(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored;
    int64_t ep1;

    x->cfg.store_keep_completed = true;
    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    advance(x, 20);
    t = flight_of(x, &F.pubs[0], &stored);
    dlq_machine_reply_failed(&x->m, t, "x", 1, NULL, 0, x->wall, x->mono);
    advance(x, 20);
    dlq_machine_succeeded(&x->m, flight_of(x, &F.pubs[1], &stored), x->wall, x->mono);
    assert_int_equal(t->status, DLQ_TASK_COMPLETED);
    ep1 = t->episode_id;
    ingest(x, "a", OPT(.policy = "immediate"), false, 0);
    assert_ptr_equal(D.task, t);
    assert_int_equal(t->status, DLQ_TASK_PENDING);
    assert_int_equal(t->episode, 2);
    assert_true(t->episode_id > ep1);
    assert_int_equal(t->retry_count, 0);
    assert_int_equal(x->m.c.enqueued, 2);
    assert_int_equal(x->m.c.duplicates, 0);
    advance(x, 20);
    assert_int_equal(F.npub, 3);
    assert_string_equal(F.pubs[2].attempt, "1");
    assert_string_not_equal(F.pubs[2].msgid, F.pubs[0].msgid);
}

/* ---- restarts and reloads ---------------------------------------------------------------------- */

/* A task stored while retrying is sent again after a restart: same attempt, same Nats-Msg-Id. */
static void
test_restore_retrying(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t, *p;
    size_t changed;

    t = dlq_queue_add_room(&x->m.q, "r", 1, 5, WALL0 - 100000);
    dlq_task_set_payload(t, "\xa4work", 5);
    dlq_task_set_str(&x->m.q, t, DLQ_TS_SUBJECT, "dlq.failed.svc", 14);
    dlq_task_set_str(&x->m.q, t, DLQ_TS_RETRY_SUBJECT, "dlq.retry.svc", 13);
    dlq_task_set_str(&x->m.q, t, DLQ_TS_ERROR, "boom", 4);
    dlq_queue_set_class(&x->m.q, t, POLICY_CAT_TRANSIENT, POLICY_EXPONENTIAL);
    t->max_retries = 3;
    t->retry_count = 1;
    t->episode_id = 1234567;
    dlq_queue_episode_seen(&x->m.q, t->episode_id);
    changed = F.changed;
    dlq_machine_restore(&x->m, t, DLQ_TASK_RETRYING, false, x->wall, x->mono);
    assert_int_equal(t->status, DLQ_TASK_PENDING);
    assert_int_equal(t->next_retry_at, x->wall);
    assert_int_equal(F.changed, changed + 1);
    /* Beside it, a parked task stays parked and an exhausted one stays exhausted. */
    p = dlq_queue_add(&x->m.q, "p", 1, WALL0);
    dlq_task_set_str(&x->m.q, p, DLQ_TS_RETRY_SUBJECT, "dlq.retry.svc", 13);
    dlq_machine_restore(&x->m, p, DLQ_TASK_PENDING, true, x->wall, x->mono);
    assert_true(p->parked);
    p = dlq_queue_add(&x->m.q, "e", 1, WALL0);
    dlq_machine_restore(&x->m, p, DLQ_TASK_EXHAUSTED, false, x->wall, x->mono);
    assert_int_equal(p->status, DLQ_TASK_EXHAUSTED);
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    assert_string_equal(F.pubs[0].task_id, "r");
    assert_string_equal(F.pubs[0].attempt, "2");
    assert_string_equal(F.pubs[0].msgid, "r:1234567:2");
    assert_string_equal(F.pubs[0].episode, "1234567");
}

/*
 * Cluster mode: a "retrying" task taken over from another member goes out
 * again at its attempt's deadline (last_attempt_at + retry.timeout_ms), not
 * at once: its former owner may be alive and hand its reply back
 * (sidecar/handback.h). One whose deadline passed goes out at once.
 */
static void
test_restore_retrying_cluster(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t, *late;

    x->cfg.cluster_enabled = true;
    t = dlq_queue_add(&x->m.q, "r", 1, WALL0);
    late = dlq_queue_add(&x->m.q, "l", 1, WALL0);
    for (struct dlq_task *u = t; u; u = u == t ? late : NULL) {
        dlq_task_set_str(&x->m.q, u, DLQ_TS_SUBJECT, "dlq.failed.svc", 14);
        dlq_task_set_str(&x->m.q, u, DLQ_TS_RETRY_SUBJECT, "dlq.retry.svc", 13);
        dlq_task_set_str(&x->m.q, u, DLQ_TS_ERROR, "boom", 4);
        u->max_retries = 3;
        u->retry_count = 1;
    }
    t->last_attempt_at = x->wall - 1000; /* sent 1 s ago: due in retry.timeout_ms - 1 s */
    late->last_attempt_at = x->wall - x->cfg.retry_timeout_ms - 1;
    dlq_machine_restore(&x->m, t, DLQ_TASK_RETRYING, false, x->wall, x->mono);
    dlq_machine_restore(&x->m, late, DLQ_TASK_RETRYING, false, x->wall, x->mono);
    assert_int_equal(t->status, DLQ_TASK_PENDING);
    assert_int_equal(t->next_retry_at, x->wall - 1000 + x->cfg.retry_timeout_ms);
    assert_int_equal(late->next_retry_at, x->wall);
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    assert_string_equal(F.pubs[0].task_id, "l");
    advance(x, x->cfg.retry_timeout_ms - 1000 - 100);
    assert_int_equal(F.npub, 1);
    advance(x, 200);
    assert_int_equal(F.npub, 2);
    assert_string_equal(F.pubs[1].task_id, "r");
    assert_string_equal(F.pubs[1].attempt, "2");
}

/*
 * Cluster mode: a pending task loaded already due waits retry.timeout_ms
 * (its former owner may have sent it without its write landing) until the
 * former owner's notes say it was not sent (dlq_machine_release_due(), with
 * the same retry_count only); one due later keeps its time.
 */
static void
test_restore_pending_cluster(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t, *later;

    x->cfg.cluster_enabled = true;
    t = dlq_queue_add(&x->m.q, "d", 1, WALL0);
    later = dlq_queue_add(&x->m.q, "f", 1, WALL0);
    for (struct dlq_task *u = t; u; u = u == t ? later : NULL) {
        dlq_task_set_str(&x->m.q, u, DLQ_TS_SUBJECT, "dlq.failed.svc", 14);
        dlq_task_set_str(&x->m.q, u, DLQ_TS_RETRY_SUBJECT, "dlq.retry.svc", 13);
        dlq_task_set_str(&x->m.q, u, DLQ_TS_ERROR, "boom", 4);
        u->max_retries = 3;
        u->retry_count = 1;
    }
    t->next_retry_at = x->wall - 10;
    later->next_retry_at = x->wall + 5000;
    dlq_machine_restore(&x->m, t, DLQ_TASK_PENDING, false, x->wall, x->mono);
    dlq_machine_restore(&x->m, later, DLQ_TASK_PENDING, false, x->wall, x->mono);
    assert_int_equal(t->next_retry_at, x->wall + x->cfg.retry_timeout_ms);
    assert_int_equal(later->next_retry_at, x->wall + 5000);
    advance(x, 100);
    assert_int_equal(F.npub, 0);
    /* Another retry_count: not the task the notes speak of. */
    assert_false(dlq_machine_release_due(&x->m, t, 2, x->wall - 10, x->wall, x->mono));
    assert_true(dlq_machine_release_due(&x->m, t, 1, x->wall - 10, x->wall, x->mono));
    assert_false(dlq_machine_release_due(&x->m, later, 1, x->wall + 5000, x->wall, x->mono));
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    assert_string_equal(F.pubs[0].task_id, "d");
    assert_string_equal(F.pubs[0].attempt, "2");
}

/* A restored pending task is due at its stored next_retry_at. */
static void
test_restore_pending_due(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    t = dlq_queue_add(&x->m.q, "r", 1, WALL0);
    dlq_task_set_str(&x->m.q, t, DLQ_TS_SUBJECT, "dlq.failed.svc", 14);
    dlq_task_set_str(&x->m.q, t, DLQ_TS_RETRY_SUBJECT, "dlq.retry.svc", 13);
    dlq_task_set_str(&x->m.q, t, DLQ_TS_ERROR, "boom", 4);
    t->max_retries = 3;
    t->next_retry_at = x->wall + 5000;
    dlq_machine_restore(&x->m, t, DLQ_TASK_PENDING, false, x->wall, x->mono);
    advance(x, 4900);
    assert_int_equal(F.npub, 0);
    advance(x, 200);
    assert_int_equal(F.npub, 1);
}

/* A lowered default budget exhausts waiting tasks that took it; own budgets and the attempt out stay. */
static void
test_reload_lowers_budget(void **state)
{
    struct fx *x = *state;
    struct dlq_task *dflt, *own, *out;
    bool stored;

    ingest(x, "dflt", OPT(.policy = "linear"), false, 0);
    ingest(x, "own", OPT(.policy = "linear", .has_max = true, .max = 3), false, 0);
    ingest(x, "out", OPT(.policy = "immediate"), false, 0);
    dflt = task(x, "dflt");
    own = task(x, "own");
    out = task(x, "out");
    dflt->retry_count = 1;
    own->retry_count = 1;
    advance(x, 20);
    assert_int_equal(out->status, DLQ_TASK_RETRYING);
    x->cfg.default_max_retries = 1;
    dlq_machine_reload(&x->m, x->pc, x->wall, x->mono);
    assert_int_equal(dflt->status, DLQ_TASK_EXHAUSTED);
    assert_int_equal(dflt->max_retries, 1);
    assert_int_equal(own->status, DLQ_TASK_PENDING);
    assert_int_equal(own->max_retries, 3);
    assert_int_equal(out->status, DLQ_TASK_RETRYING);
    assert_int_equal(out->max_retries, 1);
    assert_int_equal(x->m.c.exhausted, 1);
    assert_non_null(strstr(F.events, "exhausted:1 "));
    dlq_machine_reply_failed(&x->m, flight_of(x, &F.pubs[0], &stored), "x", 1, NULL, 0, x->wall,
                             x->mono);
    assert_int_equal(out->status, DLQ_TASK_EXHAUSTED);
    assert_int_equal(x->m.c.exhausted, 2);
}

/* ---- ingest decisions -------------------------------------------------------------------------- */

/* The strategy skips what it does not store: counted, answered "skipped", nothing stored. */
static void
test_skipped_by_strategy(void **state)
{
    struct fx *x = *state;

    x->cfg.strategy = POLICY_STRATEGY_MANUAL;
    assert_int_equal(ingest(x, "a", OPT(.error = NULL), true, 0), DLQ_IN_SKIPPED);
    assert_string_equal(D.status, "skipped");
    assert_null(task(x, "a"));
    assert_int_equal(x->m.c.skipped, 1);
    assert_string_equal(F.events, "skipped:0 ");
}

/* A full queue refuses a new task (503), not a repeat of a known one. */
static void
test_refused_full(void **state)
{
    struct fx *x = *state;

    x->cfg.max_size = 1;
    assert_int_equal(ingest(x, "a", OPT(.error = NULL), true, 0), DLQ_IN_STORED);
    assert_int_equal(ingest(x, "b", OPT(.error = NULL), true, 0), DLQ_IN_REFUSED);
    assert_true(D.refused_full);
    assert_string_equal(D.why, "queue full");
    assert_int_equal(x->m.c.refused_full, 1);
    assert_null(task(x, "b"));
    assert_int_equal(ingest(x, "a", OPT(.error = NULL), true, 0), DLQ_IN_STORED);
}

/* The store's refusal applies to requests only. */
static void
test_admit_refusal(void **state)
{
    struct fx *x = *state;

    F.admit = "store degraded";
    assert_int_equal(ingest(x, "a", OPT(.error = NULL), true, 0), DLQ_IN_REFUSED);
    assert_false(D.refused_full);
    assert_string_equal(D.why, "store degraded");
    assert_null(task(x, "a"));
    assert_int_equal(ingest(x, "a", OPT(.error = NULL), false, 0), DLQ_IN_STORED);
}

/* A task that cannot fit max_payload with its retry headers, or a bad policy, is invalid. */
static void
test_invalid(void **state)
{
    struct fx *x = *state;

    assert_int_equal(ingest(x, "a", OPT(.error = NULL), true, 100), DLQ_IN_INVALID);
    assert_string_equal(D.reason, "too_big");
    assert_int_equal(ingest(x, "a", OPT(.policy = "sometimes"), true, 0), DLQ_IN_INVALID);
    assert_string_equal(D.reason, "bad_value");
    assert_int_equal(x->m.q.count, 0);
    assert_int_equal(x->m.c.enqueued, 0);
}

/* The rate limit: no more than max_per_second go out, the rest stay due. */
static void
test_rate_limit(void **state)
{
    struct fx *x = *state;
    char id[16];

    x->cfg.retry_max_per_second = 100; /* 1 a tick of 10 ms, a burst of 2 */
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "t%d", i);
        ingest(x, id, OPT(.policy = "immediate"), false, 0);
    }
    advance(x, 100);
    assert_true(F.npub >= 9 && F.npub <= 12);
    advance(x, 400);
    assert_int_equal(F.npub, 50);
}


/*
 * JetStream: a redelivery (stream sequence at or below the task's) is no
 * new failure and no new attempt, is never refused, and leaves the task as
 * it was; a later sequence of the same task is a repeat failure as usual.
 */
static void
test_js_redelivery(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    int64_t next;

    assert_int_equal(ingest(x, "a", OPT(.seq = 7), false, 0), DLQ_IN_STORED);
    t = task(x, "a");
    assert_int_equal(t->stream_seq, 7);
    next = t->next_retry_at;
    assert_int_equal(x->m.c.enqueued, 1);
    F.changed = 0;
    assert_int_equal(ingest(x, "a", OPT(.seq = 7, .error = "other"), false, 0), DLQ_IN_REDELIVERED);
    assert_ptr_equal(D.task, t);
    assert_string_equal(D.status, "pending");
    assert_int_equal(x->m.c.redelivered, 1);
    assert_int_equal(x->m.c.duplicates, 0);
    assert_int_equal(x->m.c.enqueued, 1);
    assert_string_equal(t->error, "boom");
    assert_int_equal(t->next_retry_at, next);
    assert_int_equal(F.changed, 0);
    /* An older sequence too (a nak-ed report of a task that has a newer one). */
    assert_int_equal(ingest(x, "a", OPT(.seq = 3), false, 0), DLQ_IN_REDELIVERED);
    assert_int_equal(x->m.c.redelivered, 2);
    /* A full queue never refuses a redelivery. */
    x->cfg.max_size = 1;
    assert_int_equal(ingest(x, "b", OPT(.seq = 9), false, 0), DLQ_IN_REFUSED);
    assert_int_equal(ingest(x, "a", OPT(.seq = 7), false, 0), DLQ_IN_REDELIVERED);
    /* A new sequence of the same task is a repeat failure, and is recorded. */
    x->cfg.max_size = 100;
    assert_int_equal(ingest(x, "a", OPT(.seq = 12, .error = "again"), false, 0), DLQ_IN_STORED);
    assert_int_equal(x->m.c.duplicates, 1);
    assert_int_equal(t->stream_seq, 12);
    assert_string_equal(t->error, "again");
    /* The stream made anew (sequences start over): a low sequence is a new failure again. */
    F.changed = 0;
    assert_int_equal(dlq_machine_forget_seqs(&x->m, false), 1);
    assert_int_equal(F.changed, 1);
    assert_int_equal(t->stream_seq, 0);
    assert_int_equal(ingest(x, "a", OPT(.seq = 2, .error = "new stream"), false, 0), DLQ_IN_STORED);
    assert_string_equal(t->error, "new stream");
    assert_int_equal(t->stream_seq, 2);
    assert_int_equal(ingest(x, "a", OPT(.seq = 2), false, 0), DLQ_IN_REDELIVERED);
    assert_int_equal(dlq_machine_forget_seqs(&x->m, true), 0); /* no advisory sequence held */
    /* Core NATS (sequence 0) never counts as a redelivery. */
    assert_int_equal(ingest(x, "a", OPT(.seq = 0), false, 0), DLQ_IN_STORED);
    assert_int_equal(x->m.c.duplicates, 3);
    assert_int_equal(t->stream_seq, 2);
}

/* ---- advisories: failures that are not envelopes (dlq_ingest_foreign()) -------------------------- */

#define ORIG "{\"order\":42}\x00\xff" /* any bytes: JSON, a NUL, a byte that is not UTF-8 */
#define ORIG_LEN (sizeof(ORIG) - 1)
#define ORIG_HDRS "X-Trace\0abc\0X-Multi\0one\0X-Multi\0two\0"

/* Files an advisory of task id with sequence seq in the capture stream (verdict in D). */
static dlq_verdict
foreign(struct fx *x, const char *id, uint64_t seq, bool missing)
{
    struct dlq_foreign f = {0};

    f.id = id;
    f.id_len = strlen(id);
    f.payload = ORIG;
    f.payload_len = ORIG_LEN;
    f.payload_missing = missing;
    f.missing_why = missing ? "no message 7 in stream ORDERS" : NULL;
    f.headers = ORIG_HDRS;
    f.headers_len = sizeof(ORIG_HDRS) - 1;
    f.error = "max deliveries exceeded (3)";
    f.error_type = "jetstream.max_deliveries";
    f.retry_subject = missing ? NULL : "ORDERS.new";
    f.subject = missing ? "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.ORDERS.w" : "ORDERS.new";
    f.seq = seq;
    dlq_ingest_foreign(&x->m, &f, x->wall, x->mono, &D);
    return D.verdict;
}

/* Lets retries go to ORDERS.> with their outcome stored (DESIGN section 6). */
static void
allow_orders(struct fx *x)
{
    char err[256];

    assert_int_equal(config_set(&x->cfg, "retry.allowed_subjects", "dlq.retry.>,ORDERS.>", err,
                                sizeof(err)), SC_OK);
    assert_int_equal(config_set(&x->cfg, "retry.stored_subjects", "ORDERS.>", err, sizeof(err)),
                     SC_OK);
}

/*
 * An advisory files a task holding the original's bytes and headers; the
 * category comes from the classifier; the retry republishes the bytes as
 * they were, with the original's headers after the retry headers, to the
 * original subject, its outcome stored; success completes it.
 */
static void
test_foreign_task(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    const char *rule = NULL;
    bool stored = false;
    policy_category want;

    allow_orders(x);
    assert_int_equal(foreign(x, "ORDERS:7", 3, false), DLQ_IN_STORED);
    t = task(x, "ORDERS:7");
    assert_non_null(t);
    assert_true(t->payload_raw);
    assert_false(t->payload_missing);
    assert_int_equal(t->payload_len, ORIG_LEN);
    assert_memory_equal(t->payload, ORIG, ORIG_LEN);
    {
        size_t hlen;
        const char *hdrs = dlq_task_headers(t, &hlen);
        assert_int_equal(hlen, sizeof(ORIG_HDRS) - 1);
        assert_memory_equal(hdrs, ORIG_HDRS, hlen);
    }
    assert_string_equal(t->error, "max deliveries exceeded (3)");
    assert_string_equal(t->error_type, "jetstream.max_deliveries");
    assert_string_equal(t->retry_subject, "ORDERS.new");
    want = policy_classify(x->pc, "jetstream.max_deliveries", 24, t->error, strlen(t->error), &rule);
    assert_int_equal(t->category, want);
    assert_int_equal(dlq_task_adv_seq(t), 3);
    assert_int_equal(t->stream_seq, 0);
    assert_int_equal(x->m.c.advisories, 1);
    assert_int_equal(x->m.c.enqueued, 1);
    assert_non_null(strstr(F.events, "enqueued:0"));
    assert_int_equal(dlq_machine_retry(&x->m, t, x->wall, x->mono), SC_OK);
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    assert_string_equal(F.pubs[0].subject, "ORDERS.new");
    assert_int_equal(F.pubs[0].len, ORIG_LEN);
    assert_memory_equal(F.pubs[0].body, ORIG, ORIG_LEN);
    assert_string_equal(F.pubs[0].trace, "abc");
    assert_string_equal(F.pubs[0].task_id, "ORDERS:7");
    assert_true(F.pubs[0].msgid[0] != '\0');
    assert_int_equal(F.pubs[0].nheaders, 8 + 3); /* the retry headers, then the original's three */
    assert_ptr_equal(flight_of(x, &F.pubs[0], &stored), t);
    assert_true(stored);
    dlq_machine_succeeded(&x->m, t, x->wall, x->mono);
    assert_int_equal(x->m.c.retry_success, 1);
    assert_null(task(x, "ORDERS:7"));
}

/* An original that is gone: filed parked with payload_missing, counted, its event; never dropped. */
static void
test_foreign_payload_missing(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    allow_orders(x);
    assert_int_equal(foreign(x, "ORDERS:7", 4, true), DLQ_IN_STORED);
    t = task(x, "ORDERS:7");
    assert_non_null(t);
    assert_true(t->payload_missing);
    assert_int_equal(t->payload_len, 0);
    assert_true(t->parked);
    assert_null(t->retry_subject);
    assert_non_null(strstr(t->park_reason, "payload_missing: no message 7"));
    assert_int_equal(x->m.c.payload_missing, 1);
    assert_int_equal(x->m.c.enqueued, 1);
    assert_non_null(strstr(F.events, "payload_missing:0"));
    /* Nothing to send: an operator's retry is refused, and no time sends it. */
    assert_int_equal(dlq_machine_retry(&x->m, t, x->wall, x->mono), SC_ECONFLICT);
    advance(x, 100000);
    assert_int_equal(F.npub, 0);
}

/*
 * A redelivered advisory (capture sequence at or below the task's) changes
 * nothing; the capture stream's sequences and the failure stream's are
 * apart (an envelope of sequence 1 after advisory 5 is a new failure); a
 * completed task comes back as a new episode of the same id (item 5: a
 * worker's consumer gave up on a retry).
 */
static void
test_foreign_redelivery_and_reopen(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    int32_t episode;

    allow_orders(x);
    assert_int_equal(foreign(x, "a", 5, false), DLQ_IN_STORED);
    assert_int_equal(foreign(x, "a", 5, false), DLQ_IN_REDELIVERED);
    assert_int_equal(foreign(x, "a", 2, false), DLQ_IN_REDELIVERED);
    assert_int_equal(x->m.c.redelivered, 2);
    assert_int_equal(x->m.c.enqueued, 1);
    assert_int_equal(ingest(x, "a", OPT(.seq = 1, .error = "envelope"), false, 0), DLQ_IN_STORED);
    t = task(x, "a");
    assert_false(t->payload_raw); /* the envelope's task now */
    {
        size_t hlen;
        assert_null(dlq_task_headers(t, &hlen));
        assert_int_equal(dlq_task_adv_seq(t), 5); /* the advisory sequence stays for redeliveries */
    }
    assert_int_equal(x->m.c.duplicates, 1);
    assert_int_equal(foreign(x, "a", 6, false), DLQ_IN_STORED);
    assert_true(t->payload_raw);
    /* Completed, then the worker's consumer gives up on the retry: the same task, a new episode. */
    x->cfg.store_keep_completed = true;
    episode = t->episode;
    assert_int_equal(dlq_machine_retry(&x->m, t, x->wall, x->mono), SC_OK);
    advance(x, 20);
    dlq_machine_succeeded(&x->m, t, x->wall, x->mono);
    assert_int_equal(t->status, DLQ_TASK_COMPLETED);
    assert_int_equal(foreign(x, "a", 9, false), DLQ_IN_STORED);
    assert_ptr_equal(task(x, "a"), t);
    assert_int_equal(t->status, DLQ_TASK_PENDING);
    assert_int_equal(t->episode, episode + 1);
    assert_int_equal(x->m.c.enqueued, 2);
}

/* ---- cluster mode: a partition held, then forgotten (DESIGN section 18) ------------------------- */

/* Ids "p<k>-<i>" spread over partitions of 4; returns how many of n fall in partition p. */
static size_t
ingest_spread(struct fx *x, int n, uint32_t p, const char *policy)
{
    char id[32];
    size_t in_p = 0;

    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "t-%d", i);
        ingest(x, id, OPT(.policy = policy), false, 0);
        in_p += dlq_partition_of(id, strlen(id), 4) == p;
    }
    return in_p;
}

/* A partition that may not dispatch keeps its due tasks, unchanged and silent, until it may. */
static void
test_partition_held(void **state)
{
    struct fx *x = *state;
    size_t in_p = ingest_spread(x, 40, 1, "immediate"), changed;

    assert_true(in_p > 0 && in_p < 40);
    F.held_partition = 1;
    changed = F.changed;
    advance(x, 2000);
    assert_int_equal(F.npub, 40 - in_p);
    for (size_t i = 0; i < F.npub; i++)
        assert_int_not_equal(dlq_partition_of(F.pubs[i].task_id, strlen(F.pubs[i].task_id), 4), 1);
    assert_int_equal(F.changed - changed, 40 - in_p); /* only the dispatched ones changed */
    assert_int_equal(x->m.c.deferred, 0);
    F.held_partition = -1;
    advance(x, DLQ_HOLD_MS + 20);
    assert_int_equal(F.npub, 40);
}

/* Forgetting a partition drops its tasks without events or store deletes; a late reply finds nothing. */
static void
test_partition_forgotten(void **state)
{
    struct fx *x = *state;
    size_t in_p = ingest_spread(x, 40, 2, "immediate"), events;
    struct dlq_task *late = NULL;
    bool stored;

    advance(x, 100); /* every task is out: retrying */
    assert_int_equal(F.npub, 40);
    assert_int_equal(dlq_machine_partition_in_flight(&x->m, 2, 4), in_p);
    for (size_t i = 0; i < F.npub && !late; i++)
        if (dlq_partition_of(F.pubs[i].task_id, strlen(F.pubs[i].task_id), 4) == 2)
            late = (struct dlq_task *)&F.pubs[i]; /* remember the publish, not the task */
    events = strlen(F.events);
    assert_int_equal(dlq_machine_forget_partition(&x->m, 2, 4), in_p);
    assert_int_equal(F.forgotten, in_p);
    assert_int_equal(F.removed, 0);
    assert_int_equal(strlen(F.events), events);
    assert_int_equal(dlq_queue_active(&x->m.q), 40 - in_p);
    assert_int_equal(x->m.inflight, 40 - in_p);
    assert_int_equal(dlq_machine_partition_in_flight(&x->m, 2, 4), 0);
    assert_null(flight_of(x, (const struct pub *)(void *)late, &stored));
    advance(x, x->cfg.retry_timeout_ms + 100); /* its timeouts are gone too: nothing fires for it */
    for (size_t i = 40; i < F.npub; i++)
        assert_int_not_equal(dlq_partition_of(F.pubs[i].task_id, strlen(F.pubs[i].task_id), 4), 2);
}

/* A JetStream failure's episode id is its time in the stream: the same wherever it is taken again. */
static void
test_episode_from_stream_time(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;

    ingest(x, "e", OPT(.seq = 7, .ts_us = 1700000000123456), false, 0);
    t = task(x, "e");
    assert_int_equal(t->episode_id, 1700000000123456);
    ingest(x, "e", OPT(.seq = 8, .ts_us = 1700000000999999), false, 0); /* a repeat: same episode */
    assert_int_equal(t->episode_id, 1700000000123456);
    ingest(x, "c", OPT(.error = NULL), false, 0); /* core NATS: the process's growing ids */
    assert_true(task(x, "c")->episode_id > 1700000000999999);
}


/* ---- delay lists (issue 17) -------------------------------------------------------------------- */

/* Fails the attempt in flight (the last publish) at the current time. */
static void
fail_last(struct fx *x)
{
    bool stored = true;

    dlq_machine_reply_failed(&x->m, flight_of(x, &F.pubs[F.npub - 1], &stored), "busy", 4, NULL, 0,
                             x->wall, x->mono);
}

/* Precedence: the envelope's list > the subject's > the category's > the policy's formula. */
static void
test_delays_precedence(void **state)
{
    static const int64_t own[] = {500, 700};
    struct fx *x = *state;
    char err[256];

    assert_int_equal(ingest(x, "formula", OPT(.category = "network"), false, 0), DLQ_IN_STORED);
    assert_int_equal(task(x, "formula")->next_retry_at, WALL0 + backoff(x, POLICY_EXPONENTIAL, 1));
    assert_int_equal(config_set(&x->cfg, "backoff.categories", "network 2s 4s, transient 9s", err,
                                sizeof(err)), SC_OK);
    assert_int_equal(ingest(x, "cat", OPT(.category = "network"), false, 0), DLQ_IN_STORED);
    assert_int_equal(task(x, "cat")->next_retry_at, WALL0 + 2000);
    assert_int_equal(config_set(&x->cfg, "backoff.subjects", "dlq.other.> 1s, dlq.failed.* 3s",
                                err, sizeof(err)), SC_OK);
    assert_int_equal(ingest(x, "subj", OPT(.category = "network"), false, 0), DLQ_IN_STORED);
    assert_int_equal(task(x, "subj")->next_retry_at, WALL0 + 3000);
    assert_int_equal(ingest(x, "env", OPT(.category = "network", .backoff = own, .nbackoff = 2),
                            false, 0), DLQ_IN_STORED);
    assert_string_equal(dlq_task_backoff(task(x, "env")), "500,700");
    assert_int_equal(task(x, "env")->next_retry_at, WALL0 + 500);
    /* tasks with the same list share one pooled copy */
    assert_int_equal(ingest(x, "env2", OPT(.backoff = own, .nbackoff = 2), false, 0), DLQ_IN_STORED);
    assert_ptr_equal(dlq_task_backoff(task(x, "env2")), dlq_task_backoff(task(x, "env")));
    assert_null(dlq_task_backoff(task(x, "cat")));
}

/* The list's delays come in order, the last one repeating, until the budget is spent. */
static void
test_delays_sequence(void **state)
{
    static const int64_t own[] = {100, 300, 200};
    struct fx *x = *state;
    int64_t expect[] = {100, 300, 200, 200, 200};
    struct dlq_task *t;

    ingest(x, "a", OPT(.backoff = own, .nbackoff = 3, .has_max = true, .max = 5), false, 0);
    t = task(x, "a");
    for (int i = 0; i < 5; i++) {
        int64_t at = x->wall;
        assert_int_equal(t->status, DLQ_TASK_PENDING);
        assert_int_equal(t->next_retry_at - at, expect[i]);
        advance(x, expect[i] - 20);
        assert_int_equal(F.npub, i);
        advance(x, 40);
        assert_int_equal(F.npub, i + 1);
        fail_last(x);
    }
    assert_int_equal(t->status, DLQ_TASK_EXHAUSTED);
    /* the exhausted task keeps its list (a manual retry uses it too) */
    assert_string_equal(dlq_task_backoff(t), "100,300,200");
}


/* A template fills what the envelope leaves out; the envelope's own keys win; unknown: invalid. */
static void
test_template_precedence(void **state)
{
    static const int64_t own[] = {50};
    struct fx *x = *state;
    struct dlq_task *t;
    char err[256];

    assert_int_equal(config_load_yaml(&x->cfg,
                                      "templates: {slow: {policy: linear, max_retries: 7, "
                                      "backoff: [400, 2s], retry_subject: dlq.retry.tpl}}",
                                      strlen("templates: {slow: {policy: linear, max_retries: 7, "
                                             "backoff: [400, 2s], retry_subject: dlq.retry.tpl}}"),
                                      err, sizeof(err)),
                     SC_OK);
    assert_int_equal(config_set(&x->cfg, "backoff.subjects", "dlq.failed.> 3s", err, sizeof(err)),
                     SC_OK);
    assert_int_equal(ingest(x, "t", OPT(.tpl = "slow", .no_policy = true), false, 0), DLQ_IN_STORED);
    t = task(x, "t");
    assert_int_equal(t->policy, POLICY_LINEAR);
    assert_true(t->policy_override);
    assert_int_equal(t->max_retries, 7);
    assert_true(t->max_retries_own);
    assert_string_equal(dlq_task_backoff(t), "400,2000");
    assert_string_equal(t->retry_subject, "dlq.retry.tpl");
    assert_int_equal(t->next_retry_at, WALL0 + 400); /* the template's list beats the subject's */

    assert_int_equal(ingest(x, "e", OPT(.tpl = "slow", .policy = "immediate", .has_max = true, .max = 2,
                                        .backoff = own, .nbackoff = 1,
                                        .retry_subject = "dlq.retry.own"),
                            false, 0),
                     DLQ_IN_STORED);
    t = task(x, "e");
    assert_int_equal(t->policy, POLICY_IMMEDIATE);
    assert_int_equal(t->max_retries, 2);
    assert_string_equal(dlq_task_backoff(t), "50");
    assert_string_equal(t->retry_subject, "dlq.retry.own");

    assert_int_equal(ingest(x, "u", OPT(.tpl = "fast"), true, 0), DLQ_IN_INVALID);
    assert_string_equal(D.reason, "unknown_template");
    assert_string_equal(D.why, "template: 'fast' is not a configured template");
    assert_null(task(x, "u"));
    assert_int_equal(x->m.c.enqueued, 2);
}


/* ---- priorities (issue 17) --------------------------------------------------------------------- */

/* Counts the publishes [from, to) whose task id starts with c. */
static int
pubs_of(size_t from, size_t to, char c)
{
    int n = 0;

    for (size_t i = from; i < to && i < F.npub; i++)
        n += F.pubs[i].task_id[0] == c;
    return n;
}

/*
 * Under max_in_flight, a backlog of all three priorities goes out 6:3:1
 * (low is not starved), whatever the order the failures came in; once high
 * is drained the others share what is left.
 */
static void
test_priority_share(void **state)
{
    static const char *const prio[] = {"low", "normal", "high"};
    struct fx *x = *state;
    char id[16];

    x->cfg.retry_max_in_flight = 10;
    for (int p = 0; p < 3; p++) {
        for (int i = 0; i < 10; i++) {
            snprintf(id, sizeof id, "%c%d", prio[p][0], i);
            assert_int_equal(ingest(x, id, OPT(.policy = "immediate", .priority = prio[p]), false, 0),
                             DLQ_IN_STORED);
            assert_int_equal(task(x, id)->priority, p == 0 ? POLICY_PRIO_LOW
                                                    : p == 1 ? POLICY_PRIO_NORMAL : POLICY_PRIO_HIGH);
        }
    }
    advance(x, 20);
    assert_int_equal(F.npub, 10);
    assert_int_equal(pubs_of(0, 10, 'h'), 6);
    assert_int_equal(pubs_of(0, 10, 'n'), 3);
    assert_int_equal(pubs_of(0, 10, 'l'), 1);
    assert_int_equal(x->m.c.dispatched[POLICY_PRIO_HIGH], 6);
    assert_int_equal(dlq_wheel_count(x->m.wheels[POLICY_PRIO_LOW]), 9);
    /* the batch succeeds: the next ten, then the rest */
    for (size_t i = 0; i < 10; i++) {
        bool stored;
        dlq_machine_succeeded(&x->m, flight_of(x, &F.pubs[i], &stored), x->wall, x->mono);
    }
    advance(x, 20);
    assert_int_equal(F.npub, 20);
    assert_int_equal(pubs_of(0, 20, 'h'), 10); /* high drained first ... */
    assert_true(pubs_of(10, 20, 'l') >= 1);    /* ... low still got its share */
    for (size_t i = 10; i < 20; i++) {
        bool stored;
        dlq_machine_succeeded(&x->m, flight_of(x, &F.pubs[i], &stored), x->wall, x->mono);
    }
    advance(x, 20);
    assert_int_equal(F.npub, 30);
    assert_int_equal(pubs_of(0, 30, 'n'), 10);
    assert_int_equal(pubs_of(0, 30, 'l'), 10);
    assert_int_equal(dlq_machine_scheduled(&x->m), 0);
}

/* Priority: the envelope's > the template's > priority.subjects > normal; a bad one is invalid; a change moves a waiting task. */
static void
test_priority_precedence(void **state)
{
    struct fx *x = *state;
    char err[256];
    const char *yaml = "templates: {urgent: {priority: high}, plain: {}}";

    assert_int_equal(config_load_yaml(&x->cfg, yaml, strlen(yaml), err, sizeof(err)), SC_OK);
    ingest(x, "d", OPT(.error = NULL), false, 0);
    assert_int_equal(task(x, "d")->priority, POLICY_PRIO_NORMAL);
    assert_int_equal(config_set(&x->cfg, "priority.subjects", "dlq.other.> high, dlq.failed.* low",
                                err, sizeof(err)), SC_OK);
    ingest(x, "s", OPT(.error = NULL), false, 0);
    assert_int_equal(task(x, "s")->priority, POLICY_PRIO_LOW);
    ingest(x, "p", OPT(.tpl = "plain"), false, 0);
    assert_int_equal(task(x, "p")->priority, POLICY_PRIO_LOW);
    ingest(x, "t", OPT(.tpl = "urgent"), false, 0);
    assert_int_equal(task(x, "t")->priority, POLICY_PRIO_HIGH);
    ingest(x, "e", OPT(.tpl = "urgent", .priority = "normal"), false, 0);
    assert_int_equal(task(x, "e")->priority, POLICY_PRIO_NORMAL);
    assert_int_equal(ingest(x, "bad", OPT(.priority = "urgent"), true, 0), DLQ_IN_INVALID);
    assert_string_equal(D.why, "priority: not one of high, normal, low");
    assert_null(task(x, "bad"));
    /* a repeated failure with another priority moves the waiting task, due time kept */
    int64_t due = task(x, "s")->next_retry_at;
    assert_int_equal(dlq_wheel_count(x->m.wheels[POLICY_PRIO_LOW]), 2);
    ingest(x, "s", OPT(.error = NULL, .priority = "high"), false, 0);
    assert_int_equal(task(x, "s")->priority, POLICY_PRIO_HIGH);
    assert_int_equal(task(x, "s")->next_retry_at, due);
    assert_int_equal(dlq_wheel_count(x->m.wheels[POLICY_PRIO_LOW]), 1);
    assert_int_equal(dlq_wheel_count(x->m.wheels[POLICY_PRIO_HIGH]), 2);
    ingest(x, "s", OPT(.error = NULL), false, 0); /* a repeat without one keeps it */
    assert_int_equal(task(x, "s")->priority, POLICY_PRIO_HIGH);
    advance(x, due - x->wall + 20);
    assert_int_equal(F.npub, 5); /* every wheel fires, s from its new one */
    assert_int_equal(x->m.c.dispatched[POLICY_PRIO_HIGH], 2);
    assert_int_equal(x->m.c.dispatched[POLICY_PRIO_LOW], 1);
}

/*
 * The circuit breaker's ports: a gated task is held (pending, not charged,
 * next_retry_at at the hold time, no publish); each attempt's end is told
 * (O success, F failure, N deferred); a verdict that closes the circuit
 * sends the held tasks of that retry subject at once, not those of another.
 */
static void
test_circuit_gate(void **state)
{
    struct fx *x = *state;
    struct dlq_task *t;
    bool stored;

    x->cfg.store_keep_completed = true;
    ingest(x, "a", OPT(.policy = "immediate", .retry_subject = "dlq.retry.cb"), false, 0);
    ingest(x, "b", OPT(.policy = "immediate", .retry_subject = "dlq.retry.cb"), false, 0);
    ingest(x, "c", OPT(.policy = "immediate", .retry_subject = "dlq.retry.other"), false, 0);
    F.gate_until = x->mono + 60000;
    advance(x, 50);
    assert_int_equal(F.npub, 0);
    assert_int_equal(F.gated, 3);
    for (const char *id = "abc"; *id; id++) {
        t = task(x, (char[]){*id, 0});
        assert_int_equal(t->status, DLQ_TASK_PENDING);
        assert_true(t->circuit_held);
        assert_int_equal(t->retry_count, 0);
        assert_int_equal(t->next_retry_at, F.gate_until + (x->wall - x->mono)); /* the hold time */
    }
    assert_int_equal(x->m.c.attempts, 0);
    /* The operator sends a now; the gate lets it go; its success closes the circuit. */
    F.gate_until = 0;
    assert_int_equal(dlq_machine_retry(&x->m, task(x, "a"), x->wall, x->mono), SC_OK);
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    t = flight_of(x, &F.pubs[0], &stored);
    assert_ptr_equal(t, task(x, "a"));
    assert_false(t->circuit_held);
    F.close = true;
    dlq_machine_succeeded(&x->m, t, x->wall, x->mono);
    assert_string_equal(F.verdicts, "O");
    assert_false(task(x, "b")->circuit_held);
    assert_true(task(x, "c")->circuit_held); /* another subject: still held */
    advance(x, 20);
    assert_int_equal(F.npub, 2);
    assert_string_equal(F.pubs[1].task_id, "b");
    /* A failure and a deferral are told too. */
    F.close = false;
    t = flight_of(x, &F.pubs[1], &stored);
    dlq_machine_reply_failed(&x->m, t, "down", 4, NULL, 0, x->wall, x->mono);
    assert_string_equal(F.verdicts, "OF");
    advance(x, 20);
    t = flight_of(x, &F.pubs[2], &stored);
    dlq_machine_deferred(&x->m, t, "no responders", x->wall, x->mono);
    assert_string_equal(F.verdicts, "OFN");
}

/* Did retrying help: success by attempt and time to recovery, exhausted after a retry, per category and subject. */
static void
test_effect_counts(void **state)
{
    struct fx *x = *state;
    const struct dlq_effect_counts *c;
    struct dlq_task *t;
    bool stored;

    x->cfg.store_keep_completed = true;
    ingest(x, "a", OPT(.policy = "immediate", .category = "transient"), false, 0);
    ingest(x, "z", OPT(.policy = "immediate", .category = "transient", .has_max = true, .max = 0), false, 0);
    assert_int_equal(task(x, "z")->status, DLQ_TASK_EXHAUSTED);
    advance(x, 20);
    t = flight_of(x, &F.pubs[0], &stored);
    dlq_machine_reply_failed(&x->m, t, "boom", 4, NULL, 0, x->wall, x->mono);
    advance(x, 1000);
    t = flight_of(x, &F.pubs[F.npub - 1], &stored);
    dlq_machine_succeeded(&x->m, t, x->wall, x->mono);
    assert_int_equal(t->status, DLQ_TASK_COMPLETED);
    c = &x->m.effect.cat[t->category];
    assert_int_equal(c->succeeded, 1);
    assert_int_equal(c->attempts[1], 1); /* attempt 2 */
    assert_int_equal(x->m.effect.n, 1);
    assert_string_equal(x->m.effect.s[0].subject, "dlq.failed.svc");
    assert_int_equal(x->m.effect.s[0].c.succeeded, 1);
    assert_int_equal(x->m.effect.s[0].c.exhausted, 0); /* z was never retried */
    assert_true(dlq_effect_quantile(c, 0.5) >= x->wall - t->first_failed_at ||
                dlq_effect_quantile(c, 0.5) == c->recovery_max_ms);
    assert_int_equal(dlq_effect_quantile(&x->m.effect.cat[POLICY_CAT_RESOURCE], 0.5), -1);
}

/* ---- dependencies (issue 17, dlq/deps.c) ---------------------------------------------------------- */

static const char *const dep_a[] = {"A"};
static const char *const dep_b[] = {"B"};

/* B waits for A: held (not dispatched, no attempt), released by A's success and sent. */
static void
test_deps_hold_release(void **state)
{
    struct fx *x = *state;
    struct dlq_task *a, *b;
    bool stored;

    /* The dependency data lives in the task's extras (struct dlq_origin): the task does not grow. */
    assert_true(sizeof(struct dlq_task) <= 296);
    ingest(x, "A", OPT(.policy = "immediate"), false, 0);
    assert_int_equal(ingest(x, "B", OPT(.policy = "immediate", .deps = dep_a, .ndeps = 1), false, 0),
                     DLQ_IN_STORED);
    b = task(x, "B");
    assert_true(dlq_task_held(b));
    assert_string_equal(D.status, "pending");
    assert_false(b->parked);
    assert_string_equal(b->park_reason, "waiting for A");
    assert_false(dlq_wheel_entry_scheduled(&b->timer));
    assert_int_equal(dlq_machine_deps_waiting(&x->m), 1);
    advance(x, 100);
    assert_int_equal(F.npub, 1); /* A only */
    assert_string_equal(F.pubs[0].task_id, "A");
    a = flight_of(x, &F.pubs[0], &stored);
    dlq_machine_succeeded(&x->m, a, x->wall, x->mono);
    assert_false(dlq_task_held(b));
    assert_null(b->park_reason);
    assert_int_equal(dlq_machine_deps_waiting(&x->m), 0);
    assert_int_equal(dlq_task_deps(b)->n, 1); /* depends_on stays shown */
    advance(x, 20);
    assert_int_equal(F.npub, 2);
    assert_string_equal(F.pubs[1].task_id, "B");
    assert_int_equal(b->retry_count, 0);
}

/* A dependency exhausted, archived or cleared parks its waiting dependents with the reason. */
static void
test_deps_failed_parks(void **state)
{
    struct fx *x = *state;
    struct dlq_task *b;

    ingest(x, "A", OPT(.has_max = true, .max = 0), false, 0); /* exhausted at once */
    ingest(x, "B", OPT(.deps = dep_a, .ndeps = 1), false, 0);
    b = task(x, "B");
    assert_true(b->parked);
    assert_string_equal(b->park_reason, "dependency A exhausted");
    /* waiting, then its dependency archived */
    ingest(x, "C", OPT(), false, 0);
    {
        static const char *const dep_c[] = {"C", "A2"};
        ingest(x, "D", OPT(.deps = dep_c, .ndeps = 2), false, 0);
    }
    ingest(x, "A2", OPT(), false, 0);
    assert_true(dlq_task_held(task(x, "D")));
    assert_int_equal(dlq_machine_archive(&x->m, task(x, "C"), x->wall), SC_OK);
    assert_true(task(x, "D")->parked);
    assert_string_equal(task(x, "D")->park_reason, "dependency C archived");
    assert_int_equal(dlq_machine_deps_waiting(&x->m), 0);
    /* cleared */
    ingest(x, "E", OPT(.deps = dep_b, .ndeps = 1), false, 0);
    assert_true(dlq_task_held(task(x, "E"))); /* B is parked: not finished, so E waits */
    ingest(x, "F", OPT(), false, 0);
    {
        static const char *const dep_f[] = {"F"};
        ingest(x, "G", OPT(.deps = dep_f, .ndeps = 1), false, 0);
    }
    assert_true(dlq_task_held(task(x, "G")));
    dlq_machine_clear(&x->m, task(x, "F"));
    assert_string_equal(task(x, "G")->park_reason, "dependency F cleared");
    assert_int_equal(dlq_machine_deps_waiting(&x->m), 1); /* E */
}

/* An unknown id is satisfied; a cycle through held tasks is invalid and names the cycle. */
static void
test_deps_unknown_and_cycle(void **state)
{
    struct fx *x = *state;
    static const char *const dep_nobody[] = {"nobody"};

    ingest(x, "U", OPT(.deps = dep_nobody, .ndeps = 1), false, 0);
    assert_false(dlq_task_held(task(x, "U")));
    assert_true(dlq_wheel_entry_scheduled(&task(x, "U")->timer));
    ingest(x, "A", OPT(), false, 0);
    ingest(x, "B", OPT(.deps = dep_a, .ndeps = 1), false, 0);
    assert_true(dlq_task_held(task(x, "B")));
    assert_int_equal(ingest(x, "A", OPT(.deps = dep_b, .ndeps = 1), false, 0), DLQ_IN_INVALID);
    assert_string_equal(D.reason, "dependency_cycle");
    assert_string_equal(D.why, "depends_on: cycle A -> B -> A");
    assert_null(dlq_task_deps(task(x, "A"))); /* nothing half-stored */
}

/* An operator's retry of a held task overrides the wait, noted in its history. */
static void
test_deps_operator_retry(void **state)
{
    struct fx *x = *state;
    struct dlq_task *b;

    ingest(x, "A", OPT(), false, 0);
    ingest(x, "B", OPT(.deps = dep_a, .ndeps = 1), false, 0);
    b = task(x, "B");
    assert_int_equal(dlq_machine_retry(&x->m, b, x->wall, x->mono), SC_OK);
    assert_false(dlq_task_held(b));
    assert_int_equal(dlq_machine_deps_waiting(&x->m), 0);
    advance(x, 20);
    assert_int_equal(F.npub, 1);
    assert_string_equal(F.pubs[0].task_id, "B");
    {
        bool found = false;
        for (unsigned i = 0; i < b->hist_len; i++) {
            const struct dlq_attempt *h = &b->hist[(b->hist_head + i) % b->hist_alloc];
            if (h->outcome == DLQ_OUT_OPERATOR && h->error && strstr(h->error, "was waiting for A"))
                found = true;
        }
        assert_true(found);
    }
}

/* A task restored held is held again; a check after the load releases it when A is gone. */
static void
test_deps_restore_check(void **state)
{
    struct fx *x = *state;
    struct codec_str ids[1] = {{"A", 1}};
    struct dlq_task *b = dlq_queue_add(&x->m.q, "B", 1, x->wall);
    struct dlq_deps *dp = dlq_deps_new(ids, 1);

    dlq_task_set_str(&x->m.q, b, DLQ_TS_RETRY_SUBJECT, "dlq.retry.svc", 13);
    dlq_task_set_str(&x->m.q, b, DLQ_TS_SUBJECT, "dlq.failed.svc", 14);
    b->max_retries = 3;
    dp->e[0].waiting = true;
    dp->waiting = 1;
    dlq_task_set_deps(b, dp);
    dlq_machine_restore(&x->m, b, DLQ_TASK_PENDING, false, x->wall, x->mono);
    assert_true(dlq_task_held(b));
    assert_false(dlq_wheel_entry_scheduled(&b->timer));
    assert_int_equal(dlq_machine_deps_waiting(&x->m), 1);
    dlq_machine_deps_check(&x->m, x->wall, x->mono); /* A unknown: satisfied */
    assert_false(dlq_task_held(b));
    assert_true(dlq_wheel_entry_scheduled(&b->timer));
}


/*
 * A wide graph of held tasks (each of 4,000 waits for the 32 before it, so
 * the cycle search sees each one from 32 sides): a new dependent of the
 * last is judged by a walk that visits each held task once (the walk kept
 * its tasks seen in a list scanned at every edge: this test took 9 minutes
 * under ASan, each envelope 0.5 s of a core).
 */
static void
test_deps_wide_graph(void **state)
{
    struct fx *x = *state;
    enum { N = 4000, W = 32 };
    static char ids[N][16];
    const char *deps[W];

    for (int i = 0; i < N; i++) {
        unsigned nd = 0;
        snprintf(ids[i], sizeof(ids[i]), "w%d", i);
        for (int k = 1; k <= W && i - k >= 0; k++)
            deps[nd++] = ids[i - k];
        ingest(x, ids[i], OPT(.deps = nd ? deps : NULL, .ndeps = nd), false, 0);
    }
    assert_int_equal(dlq_machine_deps_waiting(&x->m), N - 1);
    for (int r = 0; r < 20; r++) {
        char id[16];
        const char *last[1] = {ids[N - 1]};
        snprintf(id, sizeof(id), "new%d", r);
        assert_int_equal(ingest(x, id, OPT(.deps = last, .ndeps = 1), false, 0), DLQ_IN_STORED);
    }
    /* A cycle 4,000 tasks long is still found (the walk's cap is 4,096 tasks). */
    {
        const char *last[1] = {ids[N - 1]};
        assert_int_equal(ingest(x, ids[0], OPT(.deps = last, .ndeps = 1), false, 0), DLQ_IN_INVALID);
        assert_string_equal(D.reason, "dependency_cycle");
    }
}

/*
 * 50,000 tasks wait for A; all but 100 are cleared, in an order that moves
 * the index's list about; A archived parks exactly the 100 left. (Each
 * clear scanned A's list for its task: clearing many dependents of one id
 * was quadratic, 50,000 took 6 s under ASan, now 0.3 s.)
 */
static void
test_deps_fan_in_clear(void **state)
{
    struct fx *x = *state;
    enum { N = 50000, LEFT = 100 };
    char id[16];
    int cleared = 0;

    x->cfg.max_size = N + 10;
    ingest(x, "A", OPT(), false, 0);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "f%d", i);
        ingest(x, id, OPT(.deps = dep_a, .ndeps = 1), false, 0);
    }
    assert_int_equal(dlq_machine_deps_waiting(&x->m), N);
    for (int i = N - 1; i >= LEFT; i -= 2, cleared++) { /* the odd ones, from the end */
        snprintf(id, sizeof(id), "f%d", i);
        dlq_machine_clear(&x->m, task(x, id));
    }
    for (int i = LEFT; i < N; i += 2, cleared++) { /* the even ones, from the start */
        snprintf(id, sizeof(id), "f%d", i);
        dlq_machine_clear(&x->m, task(x, id));
    }
    assert_int_equal(cleared, N - LEFT);
    assert_int_equal(dlq_machine_deps_waiting(&x->m), LEFT);
    assert_int_equal(dlq_machine_archive(&x->m, task(x, "A"), x->wall), SC_OK);
    assert_int_equal(dlq_machine_deps_waiting(&x->m), 0);
    for (int i = 0; i < LEFT; i++) {
        snprintf(id, sizeof(id), "f%d", i);
        assert_true(task(x, id)->parked);
        assert_string_equal(task(x, id)->park_reason, "dependency A archived");
    }
}

/*
 * A reply that settles a held task (a former owner's handed-back reply to
 * an attempt sent before the task was held: sidecar/handback.c) ends its
 * wait: kept completed, it is not sent again when its dependency completes.
 */
static void
test_deps_held_settled(void **state)
{
    struct fx *x = *state;
    struct dlq_task *a, *b;
    bool stored;
    size_t before;

    x->cfg.store_keep_completed = true;
    ingest(x, "A", OPT(.policy = "immediate"), false, 0);
    ingest(x, "B", OPT(.policy = "immediate", .deps = dep_a, .ndeps = 1), false, 0);
    b = task(x, "B");
    assert_true(dlq_task_held(b));
    dlq_machine_succeeded(&x->m, b, x->wall, x->mono);
    assert_int_equal(b->status, DLQ_TASK_COMPLETED);
    assert_false(dlq_task_held(b));
    assert_int_equal(dlq_machine_deps_waiting(&x->m), 0);
    advance(x, 100);
    a = flight_of(x, &F.pubs[F.npub - 1], &stored);
    assert_string_equal(a->id, "A");
    dlq_machine_succeeded(&x->m, a, x->wall, x->mono);
    before = F.npub;
    advance(x, 100);
    assert_int_equal(F.npub, before); /* B, completed, is not sent */
    assert_int_equal(b->status, DLQ_TASK_COMPLETED);
    /* A failed reply to a held task ends its wait too (not held and scheduled at once). */
    ingest(x, "A3", OPT(), false, 0);
    {
        static const char *const dep_a3[] = {"A3"};
        ingest(x, "C", OPT(.deps = dep_a3, .ndeps = 1), false, 0);
    }
    assert_true(dlq_task_held(task(x, "C")));
    dlq_machine_reply_failed(&x->m, task(x, "C"), "boom", 4, NULL, 0, x->wall, x->mono);
    assert_false(dlq_task_held(task(x, "C")));
    assert_int_equal(dlq_machine_deps_waiting(&x->m), 0);
}

/*
 * A held task is never sent early: a former owner's note (dlq_machine_release_due, cluster
 * mode) does not put it on the wheel, and if it were there, its due time passes without a send.
 */
static void
test_deps_held_not_released(void **state)
{
    struct fx *x = *state;
    struct dlq_task *b;
    size_t before;

    ingest(x, "A", OPT(.policy = "immediate"), false, 0);
    ingest(x, "B", OPT(.policy = "immediate", .deps = dep_a, .ndeps = 1), false, 0);
    b = task(x, "B");
    assert_true(dlq_task_held(b));
    assert_false(dlq_machine_release_due(&x->m, b, b->retry_count, x->wall, x->wall, x->mono));
    dlq_wheel_schedule(x->m.wheels[b->priority % POLICY_PRIO_COUNT], &b->timer, x->mono + 1);
    advance(x, 100);
    before = F.npub;
    for (size_t i = 0; i < before; i++) {
        bool stored;
        struct dlq_task *t = flight_of(x, &F.pubs[i], &stored);
        assert_true(t == NULL || strcmp(t->id, "B") != 0);
    }
    assert_true(dlq_task_held(b));
    assert_int_equal(b->status, DLQ_TASK_PENDING);
}

/* Cluster mode: a dependency in another partition is refused (nothing stored); one in the task's own is taken. */
static void
test_deps_cluster_partition(void **state)
{
    struct fx *x = *state;
    char same[32] = "", other[32] = "";
    uint32_t own;

    x->cfg.cluster_enabled = true;
    x->cfg.cluster_partitions = 32;
    own = dlq_partition_of("B", 1, 32);
    for (int i = 0; i < 1000 && (!same[0] || !other[0]); i++) {
        char id[32];
        snprintf(id, sizeof(id), "dep-%d", i);
        if (dlq_partition_of(id, strlen(id), 32) == own)
            snprintf(same, sizeof(same), "%s", id);
        else
            snprintf(other, sizeof(other), "%s", id);
    }
    {
        const char *const d1[] = {other};
        assert_int_equal(ingest(x, "B", OPT(.deps = d1, .ndeps = 1), false, 0), DLQ_IN_INVALID);
        assert_string_equal(D.reason, "bad_depends_on");
        assert_non_null(strstr(D.why, "partition"));
        assert_null(task(x, "B"));
    }
    {
        const char *const d2[] = {same};
        ingest(x, same, OPT(), false, 0);
        assert_int_equal(ingest(x, "B", OPT(.deps = d2, .ndeps = 1), false, 0), DLQ_IN_STORED);
        assert_true(dlq_task_held(task(x, "B")));
    }
}
int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_deps_hold_release),
        T(test_deps_failed_parks),
        T(test_deps_unknown_and_cycle),
        T(test_deps_operator_retry),
        T(test_deps_restore_check),
        T(test_deps_cluster_partition),
        T(test_deps_wide_graph),
        T(test_deps_fan_in_clear),
        T(test_deps_held_settled),
        T(test_deps_held_not_released),
        T(test_new_failure_scheduled),
        T(test_template_runs),
        T(test_due_publishes_attempt),
        T(test_success_completes),
        T(test_delays_precedence),
        T(test_delays_sequence),
        T(test_template_precedence),
        T(test_priority_share),
        T(test_priority_precedence),
        T(test_circuit_gate),
        T(test_effect_counts),
        T(test_success_kept),
        T(test_failure_with_budget),
        T(test_exhausted),
        T(test_timeout),
        T(test_reply_after_timeout),
        T(test_outcome_none),
        T(test_outcome_stored_flight),
        T(test_repeat_exhausted),
        T(test_js_redelivery),
        T(test_foreign_task),
        T(test_foreign_payload_missing),
        T(test_foreign_redelivery_and_reopen),
        T(test_partition_held),
        T(test_partition_forgotten),
        T(test_episode_from_stream_time),
        T(test_no_responders_streak),
        T(test_disconnected_defers),
        T(test_publish_failed_and_too_big),
        T(test_connection_lost_while_out),
        T(test_policy_never_parks),
        T(test_refused_subject_parks),
        T(test_admin_retry_races_timer),
        T(test_admin_retry_exhausted),
        T(test_archive_retrying),
        T(test_archive_kept),
        T(test_clear),
        T(test_repeat_while_retrying),
        T(test_repeat_pending_keeps_schedule),
        T(test_reopen_new_episode),
        T(test_restore_retrying),
        T(test_restore_retrying_cluster),
        T(test_restore_pending_cluster),
        T(test_restore_pending_due),
        T(test_reload_lowers_budget),
        T(test_skipped_by_strategy),
        T(test_refused_full),
        T(test_admit_refusal),
        T(test_invalid),
        T(test_rate_limit),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
