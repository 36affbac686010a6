/* dispatch.c - the state machine's edges on the daemon: its ports (NATS publish, events, store, log, metrics), the tick, and replies to retries. */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "breaker.h"
#include "daemon.h"
#include "dispatch.h"
#include "events.h"
#include "metrics.h"
#include "mirror.h"
#include "serving.h"
#include "workers.h"

/* Random 64-bit value for jitter (xorshift on the loop thread): the machine's rand port. */
static uint64_t
sc_rand(void *ctx)
{
    struct sc_daemon *d = ctx;
    uint64_t x = d->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    d->rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* ---- the machine's ports ----------------------------------------------------------------------- */

static dlq_pub_result
port_publish(void *ctx, const char *subject, const char *reply, const void *body, size_t len,
             const char *const *headers)
{
    sc_status s = sc_publish(ctx, subject, reply, body, len, headers);

    return s == SC_OK ? DLQ_PUB_OK : s == SC_ETOOBIG ? DLQ_PUB_TOOBIG : DLQ_PUB_FAILED;
}

static bool
port_connected(void *ctx, uint64_t *epoch)
{
    struct sc_daemon *d = ctx;

    *epoch = sc_conn_epoch(d->conn);
    return sc_conn_connected(d->conn);
}

static void
port_event(void *ctx, const char *kind, const struct dlq_task *t, int32_t attempt, const char *error)
{
    sc_event(ctx, kind, t, attempt, error);
}

static void
port_changed(void *ctx, struct dlq_task *t)
{
    sc_mirror_changed(ctx, t);
}

static void
port_removed(void *ctx, struct dlq_task *t)
{
    sc_mirror_removed(ctx, t);
}

static void
port_forgotten(void *ctx, struct dlq_task *t)
{
    sc_mirror_forgotten(ctx, t);
}

/* Cluster mode: only a partition served here, under a valid lease (outside it: always). */
static bool
port_may_dispatch(void *ctx, const struct dlq_task *t)
{
    struct sc_daemon *d = ctx;

    if (!d->serving)
        return true;
    return sc_serving(d, dlq_partition_of(t->id, t->id_len, (uint32_t)d->cfg->cluster_partitions),
                               sc_now_mono_ms());
}

static const char *
port_admit(void *ctx)
{
    return sc_mirror_refusal(ctx);
}

/*
 * Ends the task-line window when a second has passed since it began: one
 * line sums up the lines log.task_lines_per_s dropped in it. Called by the
 * tick (every timer.tick_ms), the only place the window moves. Loop thread.
 */
static void
tasklog_window(struct sc_daemon *d, int64_t now_mono)
{
    struct sc_tasklog *tl = &d->tasklog;

    if (now_mono - tl->window_mono < 1000)
        return;
    if (tl->suppressed)
        sc_log(SC_LOG_WARN, "per-task log lines dropped", "lines", sc_log_int((int64_t)tl->suppressed),
               "limit", sc_log_int(d->cfg->log_task_lines_per_s), "key", "log.task_lines_per_s", NULL);
    tl->window_mono = now_mono;
    tl->used = 0;
    tl->suppressed = 0;
}

/*
 * The state machine's debug and info lines are about one task each: at
 * most log.task_lines_per_s of them a second are written (0: all), the
 * rest counted (dlq_log_lines_suppressed_total) and summed up once a second.
 * Warnings and errors always go. README "Logs" says why. The cap is
 * applied in port_log_enabled(), which dlq_log() asks before it builds a
 * line (at 100,000 failures a second nearly every "task enqueued" line is
 * over it): a line it admits is counted there, and port_log() writes it.
 */
static bool
port_log_enabled(void *ctx, dlq_log_level level)
{
    struct sc_daemon *d = ctx;
    int64_t cap = d->cfg->log_task_lines_per_s;

    if (!sc_log_enabled((sc_log_level)level))
        return false;
    if (cap > 0 && level <= DLQ_LOG_INFO) { /* the tick rolls the window: no clock read per line */
        if (d->tasklog.used >= cap) {
            d->tasklog.suppressed++;
            d->tasklog.suppressed_total++;
            return false;
        }
        d->tasklog.used++;
    }
    return true;
}

static void
port_log(void *ctx, dlq_log_level level, const char *msg, const char *const *kv)
{
    const char *a[DLQ_LOG_KV_MAX + 1] = {NULL};

    (void)ctx;
    for (size_t i = 0; i < DLQ_LOG_KV_MAX && kv[i]; i++)
        a[i] = kv[i];
    sc_log((sc_log_level)level, msg, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
           a[10], a[11], a[12], a[13], a[14], a[15], NULL);
}

static void
port_observe(void *ctx, dlq_hist h, int64_t ms)
{
    sc_metrics_observe(ctx, h == DLQ_HIST_TIME_TO_SUCCESS ? SC_HIST_TIME_TO_SUCCESS
                                                          : SC_HIST_RETRY_LATENESS, ms);
}

static int64_t
port_gate(void *ctx, const struct dlq_task *t, int64_t now_mono)
{
    return sc_breaker_task_gate(ctx, t, now_mono);
}

static bool
port_verdict(void *ctx, const struct dlq_task *t, dlq_attempt_end v, int64_t now_mono)
{
    return sc_breaker_task_verdict(ctx, t, v, now_mono);
}

/*
 * Reply tokens must be unguessable (a forged reply would settle an attempt),
 * so they come from the kernel's generator, arc4random_buf(). Debian's
 * glibc makes a getrandom(2) system call for every arc4random() call: two
 * per retry were about 9% of the loop thread's time in the dispatch
 * benchmark, its ingest included (perf; README "Benchmarks"). Tokens are
 * taken from a pool of TOKEN_POOL filled in one call instead, per thread
 * (the loop's; a test's second daemon has its own). Same generator, same
 * bits, one system call per TOKEN_POOL retries.
 */
#define TOKEN_POOL 256

static uint64_t
port_token(void *ctx)
{
    static _Thread_local uint64_t pool[TOKEN_POOL];
    static _Thread_local size_t left;

    (void)ctx;
    if (left == 0) {
        arc4random_buf(pool, sizeof(pool));
        left = TOKEN_POOL;
    }
    left--;
    uint64_t v = pool[left];
    pool[left] = 0; /* a used token does not stay behind */
    return v;
}

void
sc_dispatch_init(struct sc_daemon *d)
{
    static const struct dlq_ports ports = {
        .publish = port_publish,
        .connected = port_connected,
        .event = port_event,
        .changed = port_changed,
        .removed = port_removed,
        .forgotten = port_forgotten,
        .may_dispatch = port_may_dispatch,
        .admit = port_admit,
        .log = port_log,
        .log_enabled = port_log_enabled,
        .observe = port_observe,
        .rand = sc_rand,
        .token = port_token,
        .gate = port_gate,
        .verdict = port_verdict,
    };
    struct dlq_ports p = ports;

    p.ctx = d;
    /* The retries' inbox is the connection's, set once it exists (daemon.c). */
    dlq_machine_init(&d->m, d->cfg, d->classifier, "", &p,
                     sc_now_mono_ms());
}

void
sc_dispatch_destroy(struct sc_daemon *d)
{
    dlq_machine_destroy(&d->m);
}

void
sc_dispatch_reload(struct sc_daemon *d, int64_t now_wall)
{
    dlq_machine_reload(&d->m, d->classifier, now_wall, sc_now_mono_ms());
}

/*
 * Arms d->due_ev for the due wheels' next entry when it comes before the
 * next tick could take it (the tick re-arms for later ones), so retries
 * leave at their due time, not up to a tick late. A backlog the run left
 * (its share of a burst) is taken again 1 ms later, or when the rate
 * limit has its next token; with retry.max_in_flight reached it waits for
 * the tick. Nothing while paused or stopping. Loop thread.
 */
static void
arm_due(struct sc_daemon *d, int64_t now)
{
    int64_t next, wait;
    struct timeval tv;

    if (!d->due_ev || d->paused || d->stopping)
        return;
    next = dlq_machine_next_due(&d->m);
    if (next == INT64_MAX || next - now > d->cfg->timer_tick_ms)
        return;
    if (next > now) {
        wait = next - now;
    } else if (d->m.inflight >= (size_t)d->cfg->retry_max_in_flight) {
        return; /* a reply makes room; the tick takes the backlog */
    } else if (d->m.tokens < 1 && d->cfg->retry_max_per_second > 0) {
        /* retry.max_per_second spent: wake when the next token is there */
        wait = (int64_t)((1 - d->m.tokens) * 1000.0 / (double)d->cfg->retry_max_per_second) + 1;
    } else {
        wait = 1;
    }
    tv.tv_sec = (time_t)(wait / 1000);
    tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
    event_add(d->due_ev, &tv);
}

void
sc_on_due(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    int64_t now = sc_now_mono_ms();

    (void)fd;
    (void)what;
    if (d->paused || d->stopping)
        return;
    sc_log_hold();
    dlq_machine_run(&d->m, sc_now_wall_ms(), now, true);
    sc_log_flush();
    arm_due(d, now);
}

void
sc_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    int64_t now = sc_now_mono_ms();

    (void)fd;
    (void)what;
    /*
     * While paused or stopping the due wheel is not run: due tasks stay due
     * (keeping their next_retry_at) and go out, earliest first and at the
     * bounded rate, once retries resume.
     */
    sc_log_hold(); /* a burst of due retries: one write(2) for its lines (log.h) */
    dlq_machine_run(&d->m, sc_now_wall_ms(), now, !d->paused && !d->stopping);
    sc_log_flush();
    {
        const struct dlq_counters *c = &d->m.c;
        uint64_t counts[SC_RATE_KINDS] = {c->enqueued, c->attempts, c->retry_success, c->exhausted};
        sc_rates_tick(&d->rates, sc_now_wall_ms(), counts);
    }
    tasklog_window(d, now);
    arm_due(d, now);
    if (d->stopping) {
        bool drained = d->m.inflight == 0 &&
                       sc_conn_sub_drain_state(d->sub_failed) != SC_CONN_DRAIN_RUNNING &&
                       sc_conn_flushed(d->conn);
        if (drained || now >= d->stop_deadline_mono) {
            if (!drained)
                sc_log(SC_LOG_WARN, "drain deadline reached", "in_flight", sc_log_int((int64_t)d->m.inflight), NULL);
            /* said once: the store's flush (sc_mirror_flush()) runs this tick again and again */
            d->stop_deadline_mono = INT64_MAX;
            event_base_loopbreak(d->base);
        }
    }
}

/* ---- JetStream PubAcks on the reply inbox (DESIGN section 6) --------------------------------- */

static size_t
js_ws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i;
}

/* Skips the JSON string starting at p[i] == '"'; returns the index past it, or n when unterminated. */
static size_t
js_string(const char *p, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return n;
}

/* Skips one JSON value at p[i] (no validation beyond nesting and strings); returns the index past it. */
static size_t
js_value(const char *p, size_t n, size_t i)
{
    size_t depth = 0;

    for (; i < n; i++) {
        char c = p[i];
        if (c == '"') {
            i = js_string(p, n, i) - 1;
            if (depth == 0)
                return i + 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* the end of the enclosing container */
            if (--depth == 0)
                return i + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n')) {
            return i;
        }
    }
    return n;
}

static bool
js_key_is(const char *p, size_t ks, size_t ke, const char *name)
{
    size_t len = strlen(name);
    return ke - ks == len + 2 && memcmp(p + ks + 1, name, len) == 0;
}

/*
 * js_object() walks the JSON object at p[i] == '{' and calls back on each
 * key (index range of the quoted key) and value start. Returns the index
 * past the object, or 0 when it is not a well-formed object at this level.
 */
typedef void (*js_member_fn)(const char *p, size_t n, size_t ks, size_t ke, size_t vs, void *ctx);

static size_t
js_object(const char *p, size_t n, size_t i, js_member_fn fn, void *ctx)
{
    if (i >= n || p[i] != '{')
        return 0;
    i = js_ws(p, n, i + 1);
    if (i < n && p[i] == '}')
        return i + 1;
    while (i < n) {
        size_t ks = i, ke, vs;
        if (p[i] != '"')
            return 0;
        ke = js_string(p, n, i);
        i = js_ws(p, n, ke);
        if (i >= n || p[i] != ':')
            return 0;
        vs = js_ws(p, n, i + 1);
        if (vs >= n)
            return 0;
        fn(p, n, ks, ke, vs, ctx);
        i = js_ws(p, n, js_value(p, n, vs));
        if (i < n && p[i] == '}')
            return i + 1;
        if (i >= n || p[i] != ',')
            return 0;
        i = js_ws(p, n, i + 1);
    }
    return 0;
}

struct js_scan {
    bool ok, stream, seq, error, err_code;
    struct sc_js_reply *r;
};

/* The non-negative integer at p[i] (digits up to n, capped), 0 when none. */
static int64_t
js_uint(const char *p, size_t n, size_t i)
{
    int64_t v = 0;

    for (; i < n && p[i] >= '0' && p[i] <= '9' && v < INT64_MAX / 10 - 10; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

static void
js_error_member(const char *p, size_t n, size_t ks, size_t ke, size_t vs, void *ctx)
{
    struct js_scan *sc = ctx;

    if (js_key_is(p, ks, ke, "code")) {
        sc->r->code = js_uint(p, n, vs);
    } else if (js_key_is(p, ks, ke, "err_code")) {
        sc->err_code = true;
        sc->r->err_code = js_uint(p, n, vs);
    } else if (js_key_is(p, ks, ke, "description") && p[vs] == '"') {
        size_t end = js_string(p, n, vs);
        sc->r->desc = p + vs + 1;
        sc->r->desc_len = end > vs + 1 ? end - vs - 2 : 0;
    }
}

static void
js_top_member(const char *p, size_t n, size_t ks, size_t ke, size_t vs, void *ctx)
{
    struct js_scan *sc = ctx;

    if (js_key_is(p, ks, ke, "ok"))
        sc->ok = true;
    else if (js_key_is(p, ks, ke, "stream") && p[vs] == '"')
        sc->stream = true;
    else if (js_key_is(p, ks, ke, "seq") && (p[vs] >= '0' && p[vs] <= '9'))
        sc->seq = true;
    else if (js_key_is(p, ks, ke, "error") && p[vs] == '{')
        sc->error = js_object(p, n, vs, js_error_member, sc) != 0;
}

sc_js_reply_kind
sc_js_reply_classify(const char *body, size_t len, struct sc_js_reply *r)
{
    struct js_scan sc = {false, false, false, false, false, r};
    size_t i = js_ws(body, len, 0);

    memset(r, 0, sizeof(*r));
    if (!body || i >= len || body[i] != '{')
        return SC_JS_NOT;
    if (js_object(body, len, i, js_top_member, &sc) == 0 || sc.ok)
        return SC_JS_NOT;
    if (sc.error && sc.err_code)
        return SC_JS_ERROR;
    if (sc.stream && sc.seq)
        return SC_JS_PUBACK;
    return SC_JS_NOT;
}

/*
 * reply_js() handles a JetStream answer to the retry publish of t (kind k,
 * error fields in *jr). Who holds the failure: until the answer comes the
 * sidecar does (t is retrying, its timeout runs); with outcome stored the
 * PubAck is the success of the hand-off: the stream holds the task from
 * then on (the sidecar forgets it unless keep_completed), and a consumer
 * that fails it again files a new failure envelope (or an advisory of
 * DESIGN section 16 does). A JetStream error
 * (stream full, storage, ...) is a failed attempt classified from the
 * server's description, with error_type "jetstream <code>". With outcome
 * reply the server's answer is never the worker's: the attempt keeps
 * waiting on the same inbox for the worker's reply or the timeout (a
 * JetStream error is logged at warn).
 */
static void
reply_js(struct sc_daemon *d, struct dlq_task *t, bool stored, sc_js_reply_kind k,
         const struct sc_js_reply *jr)
{
    char err[600], et[32];
    int n;

    if (!stored) {
        if (k == SC_JS_ERROR)
            sc_log(SC_LOG_WARN, "retry: the stream refused the publish; waiting for a worker",
                   "task_id", t->id, "code", sc_log_int(jr->code), "err_code",
                   sc_log_int(jr->err_code), NULL);
        else
            sc_log(SC_LOG_DEBUG, "retry: PubAck ignored, waiting for the worker's reply",
                   "task_id", t->id, NULL);
        return;
    }
    if (k == SC_JS_PUBACK) {
        dlq_machine_succeeded(&d->m, t, sc_now_wall_ms(), sc_now_mono_ms());
        return;
    }
    n = snprintf(err, sizeof(err), "jetstream refused the retry (err_code %lld): %.*s",
                 (long long)jr->err_code, (int)(jr->desc_len < 500 ? jr->desc_len : 500),
                 jr->desc ? jr->desc : "");
    snprintf(et, sizeof(et), "jetstream %lld", (long long)jr->code);
    dlq_machine_reply_failed(&d->m, t, err, (size_t)n < sizeof(err) ? (size_t)n : sizeof(err) - 1,
                             et, strlen(et), sc_now_wall_ms(), sc_now_mono_ms());
}

void
sc_on_reply(struct sc_daemon *d, natsMsg *m)
{
    const char *subj = natsMsg_GetSubject(m);
    const char *inbox = sc_conn_inbox(d->conn);
    size_t plen = strlen(inbox);
    const char *p;
    const char *end;
    unsigned long idx;
    unsigned long long token;
    struct dlq_task *t;
    bool stored;

    if (strncmp(subj, inbox, plen) != 0 || subj[plen] != '.')
        return;
    /* "<inbox>.<idx>.<16 lowercase hex digits>", as the machine writes it; parsed by hand (per reply) */
    p = subj + plen + 1;
    for (idx = 0, end = p; *end >= '0' && *end <= '9' && idx <= UINT32_MAX; end++)
        idx = idx * 10 + (unsigned long)(*end - '0');
    if (end == p || *end != '.')
        return;
    p = end + 1;
    token = 0;
    for (end = p; end - p < 17; end++) {
        int v = *end >= '0' && *end <= '9' ? *end - '0' : *end >= 'a' && *end <= 'f' ? *end - 'a' + 10 : -1;
        if (v < 0)
            break;
        token = token << 4 | (unsigned long long)v;
    }
    if (end - p != 16 || *end != '\0')
        return;
    if (idx > UINT32_MAX || !(t = dlq_machine_flight(&d->m, (uint32_t)idx, token, &stored))) {
        if (idx < d->m.flights_used)
            sc_log(SC_LOG_DEBUG, "late reply ignored", "subject", subj, NULL);
        return;
    }
    sc_dispatch_apply_reply(d, t, stored, m);
}

/*
 * outcome_succeeded() decodes the worker's outcome (len bytes at body,
 * borrowed) into *out with d's codec and, when it says ok, marks t
 * succeeded. True when it did (the reply is handled); false leaves *out
 * for the caller's failure path (its strings point into body or d's codec
 * arena: codec_decode_outcome()). Loop thread.
 */
static bool
outcome_succeeded(struct sc_daemon *d, struct dlq_task *t, const char *body, size_t len,
                  struct codec_outcome *out)
{
    codec_decode_outcome(d->codec, body, len, out);
    if (!out->ok)
        return false;
    dlq_machine_succeeded(&d->m, t, sc_now_wall_ms(), sc_now_mono_ms());
    return true;
}

void
sc_dispatch_apply_reply(struct sc_daemon *d, struct dlq_task *t, bool stored, natsMsg *m)
{
    const char *val = NULL;
    struct codec_outcome out;
    bool no_responders = natsMsg_IsNoResponders(m);
    const char *body = natsMsg_GetData(m);
    size_t len = (size_t)natsMsg_GetDataLength(m);

    /* Any answer but "no responders" says someone listens on the retry subject (workers.c). */
    sc_workers_answer(d, t->retry_subject, no_responders);
    if (no_responders) {
        dlq_machine_deferred(&d->m, t, "no responders", sc_now_wall_ms(), sc_now_mono_ms());
        return;
    }
    if (natsMsgHeader_Get(m, CODEC_HDR_SERVICE_ERROR, &val) == NATS_OK && val) {
        const char *code = NULL;
        char buf[1100];
        if (natsMsgHeader_Get(m, CODEC_HDR_SERVICE_ERROR_CODE, &code) == NATS_OK && code)
            snprintf(buf, sizeof(buf), "%s %.1000s", code, val);
        else
            snprintf(buf, sizeof(buf), "%.1000s", val);
        /* Classify the worker's error alone: the envelope's old error_type no longer applies. */
        dlq_machine_reply_failed(&d->m, t, buf, strlen(buf), NULL, 0, sc_now_wall_ms(),
                                 sc_now_mono_ms());
        return;
    }
    /*
     * Retries that want a worker's reply: the outcome first, since the usual
     * {"ok":true} is recognised by its bytes, and a body with "ok" is never
     * the server's answer (sc_js_reply_classify() says so too). With a
     * stored outcome the PubAck is the usual answer: it is looked for first.
     */
    if (!stored && outcome_succeeded(d, t, body, len, &out))
        return;
    {
        /* The server's answer to a publish into a stream is never the worker's (DESIGN section 6). */
        struct sc_js_reply jr;
        sc_js_reply_kind k = sc_js_reply_classify(body, len, &jr);
        if (k != SC_JS_NOT) {
            reply_js(d, t, stored, k, &jr);
            return;
        }
    }
    if (stored && outcome_succeeded(d, t, body, len, &out))
        return;
    /* The reply's error_type, or none: the envelope's old one no longer applies. */
    dlq_machine_reply_failed(&d->m, t, out.error.ptr, out.error.ptr ? out.error.len : 0,
                             out.error_type.ptr, out.error_type.len, sc_now_wall_ms(),
                             sc_now_mono_ms());
}
