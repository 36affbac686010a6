/* jetstream.c - JetStream sources (the failure stream, the advisory capture stream): set up a stream and its shared pull consumer, fetch on a thread of its own, and send the ack/nak replies. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jetstream.h"
#include "persist.h"
#include "log.h"

#define API_WAIT_MS 5000     /* longest wait for one JetStream API answer */
#define FETCH_WAIT_MS 1000   /* one pull request's expiry: also how soon the thread sees a stop */
#define RETRY_SETUP_MS 1000  /* between set-up attempts while NATS or JetStream is away */
#define FETCH_ERROR_MS 200   /* after a failed pull request */
#define FETCH_ERRORS_MAX 5   /* failed pull requests in a row before the set-up is done again */
#define NS_PER_MS 1000000LL

/*
 * Why a thread and not the pull protocol driven from the loop: nats.c 3.4.1
 * offers the pull consumer only as the blocking natsSubscription_Fetch()
 * (it handles the request, the 404/408/409 status messages, heartbeats and
 * reconnects). Blocking is fine on a thread of our own, and the batch then
 * goes through the same bounded ring as core NATS messages, so the loop
 * never waits and sees one kind of hand-off. The ring's back-pressure
 * stops the thread, and max_ack_pending stops the server.
 */
struct sc_js {
    struct sc_conn *conn;          /* borrowed */
    struct sc_js_spec spec;        /* copied; its strings and subjects point into names */
    char *names;                   /* owned: the spec's strings, one allocation */
    const char **subjects;         /* owned array of spec.nsubjects pointers into names */
    struct sc_conn_sub *chan;      /* the channel to the loop (owned by conn) */
    jsCtx *ctx;
    natsSubscription *sub;         /* the bound pull subscription: fetch thread only once started */
    pthread_t thread;
    bool thread_started;
    volatile int stop;             /* use __atomic */
    volatile int ready;            /* set up and fetching: use __atomic */
    int64_t paused_until;          /* mono ms: use __atomic */
    uint64_t fetched, fetch_errors, setup_errors; /* written by the fetch thread: use __atomic */
    uint64_t acks, naks, pauses;   /* loop thread */
    unsigned errors_in_row;        /* failed pull requests since the last good one: fetch thread */
    int64_t stream_created;        /* the stream's creation time at the last set-up, UTC ns */
    int64_t last_warn_mono;        /* the last fetch warning logged (one per 10 s): fetch thread */
};

/* ---- subjects --------------------------------------------------------------------------------- */

/* next_token() sets *tok and *len to the token of p and returns what follows its '.', or NULL at the end. */
static const char *
next_token(const char *p, const char **tok, size_t *len)
{
    const char *dot = strchr(p, '.');

    *tok = p;
    *len = dot ? (size_t)(dot - p) : strlen(p);
    return dot ? dot + 1 : NULL;
}

bool
sc_js_subject_covers(const char *s, const char *t)
{
    while (s && t) {
        const char *st, *tt;
        size_t sl, tl;

        s = next_token(s, &st, &sl);
        t = next_token(t, &tt, &tl);
        if (sl == 1 && st[0] == '>')
            return true;
        if (tl == 1 && tt[0] == '>')
            return false; /* t goes on with any number of tokens, s does not */
        if (sl == 1 && st[0] == '*')
            continue;
        if (tl == 1 && tt[0] == '*')
            return false;
        if (sl != tl || memcmp(st, tt, sl) != 0)
            return false;
    }
    return !s && !t;
}

/* ---- set-up ----------------------------------------------------------------------------------- */

static void
api_error(char *err, size_t errlen, const char *what, const char *name, natsStatus s, jsErrCode je)
{
    const char *last = nats_GetLastError(NULL);

    snprintf(err, errlen, "jetstream: %s %s: %s (err_code %d)%s%s", what, name,
             natsStatus_GetText(s), (int)je, last && *last ? ": " : "", last ? last : "");
}

/*
 * The first subject of the existing stream si that the spec's owned pattern
 * does not cover (the stream captures what is not the sidecar's); NULL: none.
 */
static const char *
foreign_subject(const struct sc_js *js, const jsStreamInfo *si)
{
    const char *owned = js->spec.owned ? js->spec.owned : js->subjects[0];

    for (int i = 0; si->Config && i < si->Config->SubjectsLen; i++)
        if (!sc_js_subject_covers(owned, si->Config->Subjects[i]))
            return si->Config->Subjects[i];
    return NULL;
}

/* The first of js's subjects that no subject of the existing stream si covers; NULL: all covered. */
static const char *
uncovered(const struct sc_js *js, const jsStreamInfo *si)
{
    for (size_t k = 0; k < js->spec.nsubjects; k++) {
        bool covered = false;
        for (int i = 0; si->Config && i < si->Config->SubjectsLen; i++)
            covered = covered || sc_js_subject_covers(si->Config->Subjects[i], js->subjects[k]);
        if (!covered)
            return js->subjects[k];
    }
    return NULL;
}

/*
 * An existing stream that misses some of js's subjects: with spec.extend
 * they are added to it (a stream the sidecar owns, e.g. advisories.streams
 * grew), else SC_EINVAL.
 */
static sc_status
extend_stream(struct sc_js *js, jsOptions *o, jsStreamInfo *si, const char *missing, char *err,
              size_t errlen)
{
    const struct sc_js_spec *sp = &js->spec;
    jsStreamInfo *ni = NULL;
    jsStreamConfig sc;
    const char **subjects;
    int n = si->Config ? si->Config->SubjectsLen : 0;
    jsErrCode je = 0;
    natsStatus s;

    if (!sp->extend || !si->Config) {
        snprintf(err, errlen,
                 "jetstream: the existing stream %s does not capture %s (%s names a stream "
                 "whose subjects must cover them)", sp->stream, missing, sp->stream_key);
        return SC_EINVAL;
    }
    subjects = sc_xcalloc((size_t)n + sp->nsubjects, sizeof(*subjects));
    for (int i = 0; i < n; i++)
        subjects[i] = si->Config->Subjects[i];
    for (size_t k = 0; k < sp->nsubjects; k++) {
        bool have = false;
        for (int i = 0; i < n && !have; i++)
            have = sc_js_subject_covers(subjects[i], js->subjects[k]);
        if (!have)
            subjects[n++] = js->subjects[k];
    }
    sc = *si->Config;
    sc.Subjects = subjects;
    sc.SubjectsLen = n;
    s = js_UpdateStream(&ni, js->ctx, &sc, o, &je);
    free(subjects);
    if (s != NATS_OK) {
        api_error(err, errlen, "update stream", sp->stream, s, je);
        return SC_EIO;
    }
    jsStreamInfo_Destroy(ni);
    sc_log(SC_LOG_INFO, "jetstream: stream subjects added", "stream", sp->stream, "subject",
           missing, NULL);
    return SC_OK;
}

/*
 * Creates the stream when it is missing; an existing one must cover js's
 * subjects (extend_stream()). Sets *created to the stream's creation time
 * (UTC ns) and *made when it was created here.
 */
static sc_status
ensure_stream(struct sc_js *js, jsOptions *o, int64_t *created, bool *made, char *err, size_t errlen)
{
    const struct sc_js_spec *sp = &js->spec;
    jsStreamInfo *si = NULL;
    jsStreamConfig sc;
    const char *missing;
    jsErrCode je = 0;
    natsStatus s;
    sc_status st = SC_OK;

    s = js_GetStreamInfo(&si, js->ctx, sp->stream, o, &je);
    if (s == NATS_OK) {
        const char *other = foreign_subject(js, si);
        if (other) {
            snprintf(err, errlen,
                     "jetstream: the existing stream %s also captures %s (%s must name a stream "
                     "that captures only %s: another application's stream would lose its "
                     "messages to the sidecar, or answer the sidecar's own requests)",
                     sp->stream, other, sp->stream_key,
                     sp->owned ? sp->owned : js->subjects[0]);
            jsStreamInfo_Destroy(si);
            return SC_EINVAL;
        }
        if ((missing = uncovered(js, si)) != NULL)
            st = extend_stream(js, o, si, missing, err, errlen);
        *created = si->Created;
        *made = false;
        jsStreamInfo_Destroy(si);
        return st;
    }
    if (s != NATS_NOT_FOUND && je != JSStreamNotFoundErr) {
        api_error(err, errlen, "stream info", sp->stream, s, je);
        return SC_EIO;
    }
    jsStreamConfig_Init(&sc);
    sc.Name = sp->stream;
    sc.Subjects = js->subjects;
    sc.SubjectsLen = (int)sp->nsubjects;
    sc.Retention = js_WorkQueuePolicy; /* an acked message is the sidecar's: the stream lets it go */
    sc.Storage = sp->memory ? js_MemoryStorage : js_FileStorage;
    sc.Replicas = sp->replicas;
    sc.MaxAge = sp->max_age_s * 1000 * NS_PER_MS;
    sc.MaxBytes = sp->max_bytes > 0 ? sp->max_bytes : -1;
    je = 0;
    s = js_AddStream(&si, js->ctx, &sc, o, &je);
    if (s != NATS_OK && sp->replicas > 1 && sp->replicas_key &&
        persist_js_unplaceable(nats_GetLastError(NULL))) {
        /* the configuration asks for more JetStream servers than there are: fix it, not retry */
        snprintf(err, errlen,
                 "%s: %lld replicas for the stream %s, but the NATS servers cannot place them "
                 "(%s, err_code %d; allowed: 1 on a single server, at most the JetStream servers "
                 "of the cluster)",
                 sp->replicas_key, (long long)sp->replicas, sp->stream,
                 persist_js_unplaceable(nats_GetLastError(NULL)), (int)je);
        return SC_EINVAL;
    }
    if (s != NATS_OK) {
        api_error(err, errlen, "create stream", sp->stream, s, je);
        return SC_EIO;
    }
    *created = si->Created;
    *made = true;
    jsStreamInfo_Destroy(si);
    sc_log(SC_LOG_INFO, "jetstream: stream created", "stream", sp->stream, "subjects",
           js->subjects[0], NULL);
    return SC_OK;
}

/* Fills cc with the consumer the configuration asks for. */
static void
consumer_config(const struct sc_js *js, jsConsumerConfig *cc)
{
    const struct sc_js_spec *sp = &js->spec;

    jsConsumerConfig_Init(cc);
    cc->Durable = sp->consumer;
    cc->AckPolicy = js_AckExplicit;
    cc->AckWait = sp->ack_wait_ms * NS_PER_MS;
    cc->MaxDeliver = -1; /* a full queue naks: a failure must never run out of deliveries */
    cc->MaxAckPending = sp->max_ack_pending;
    /* One subject: filtered on it. Several (nats.c 3.4.1 has no FilterSubjects): the whole stream. */
    cc->FilterSubject = sp->nsubjects == 1 ? js->subjects[0] : NULL;
    cc->DeliverPolicy = js_DeliverAll;
}

/*
 * Creates the durable consumer when it is missing; an existing one must be a
 * pull consumer with explicit acks (SC_EINVAL otherwise); its ack wait and
 * max_ack_pending follow the configuration.
 */
static sc_status
ensure_consumer(struct sc_js *js, jsOptions *o, char *err, size_t errlen)
{
    const struct sc_js_spec *sp = &js->spec;
    jsConsumerInfo *ci = NULL;
    jsConsumerConfig cc;
    jsErrCode je = 0;
    natsStatus s;

    consumer_config(js, &cc);
    s = js_GetConsumerInfo(&ci, js->ctx, sp->stream, sp->consumer, o, &je);
    if (s == NATS_OK) {
        const jsConsumerConfig *have = ci->Config;
        const char *hf = have && have->FilterSubject ? have->FilterSubject : "";
        const char *wf = cc.FilterSubject ? cc.FilterSubject : "";
        bool fits = have && (!have->DeliverSubject || !*have->DeliverSubject) &&
                    have->AckPolicy == js_AckExplicit && strcmp(hf, wf) == 0;
        /* A limited max_deliver would drop what the sidecar naked while its queue was full. */
        bool same = fits && have->AckWait == cc.AckWait && have->MaxAckPending == cc.MaxAckPending &&
                    have->MaxDeliver <= 0;
        jsConsumerInfo_Destroy(ci);
        if (!fits) {
            snprintf(err, errlen,
                     "jetstream: the existing consumer %s on %s is not a pull consumer with "
                     "explicit acks filtered on '%s' (%s names a consumer of the sidecar's own)",
                     sp->consumer, sp->stream, wf, sp->consumer_key);
            return SC_EINVAL;
        }
        if (same)
            return SC_OK;
        s = js_UpdateConsumer(&ci, js->ctx, sp->stream, &cc, o, &je);
        if (s != NATS_OK) {
            api_error(err, errlen, "update consumer", sp->consumer, s, je);
            return SC_EIO;
        }
        jsConsumerInfo_Destroy(ci);
        return SC_OK;
    }
    if (s != NATS_NOT_FOUND && je != JSConsumerNotFoundErr) {
        api_error(err, errlen, "consumer info", sp->consumer, s, je);
        return SC_EIO;
    }
    je = 0;
    s = js_AddConsumer(&ci, js->ctx, sp->stream, &cc, o, &je);
    if (s != NATS_OK) {
        api_error(err, errlen, "create consumer", sp->consumer, s, je);
        return SC_EIO;
    }
    jsConsumerInfo_Destroy(ci);
    return SC_OK;
}

/*
 * Tells the loop, through the channel and ahead of the new stream's first
 * message, that the stream was made anew: its sequences started over, so
 * what tasks recorded of the old one must not make a new failure look like
 * a redelivery. The marker is a message without a reply subject (every
 * JetStream delivery has one) carrying SC_JS_HDR_MADE_ANEW.
 */
static void
announce_made_anew(struct sc_js *js)
{
    natsMsg *m = NULL;

    if (natsMsg_Create(&m, js->subjects[0], NULL, NULL, 0) != NATS_OK ||
        natsMsgHeader_Set(m, SC_JS_HDR_MADE_ANEW, js->spec.stream) != NATS_OK) {
        natsMsg_Destroy(m);
        return;
    }
    sc_conn_deliver(js->chan, m);
}

/* Sets up the stream, the consumer and the bound pull subscription (js->sub). */
static sc_status
setup(struct sc_js *js, char *err, size_t errlen)
{
    const struct sc_js_spec *sp = &js->spec;
    jsOptions o;
    jsSubOptions so;
    jsErrCode je = 0;
    natsStatus s;
    sc_status st;
    int64_t created = 0;
    bool made = false;

    jsOptions_Init(&o);
    o.Wait = API_WAIT_MS;
    if (!js->ctx && (s = natsConnection_JetStream(&js->ctx, sc_conn_nats(js->conn), &o)) != NATS_OK) {
        api_error(err, errlen, "context", "", s, 0);
        return SC_EIO;
    }
    if ((st = ensure_stream(js, &o, &created, &made, err, errlen))) {
        /* A stream being made by another sidecar of a cluster (R3) answers late: try again. */
        return st == SC_EIO && strstr(err, "Timeout") ? SC_EUNAVAIL : st;
    }
    /* The shared consumer may be in the making by another sidecar right now (a cluster). */
    if ((st = ensure_consumer(js, &o, err, errlen)))
        return st == SC_EIO ? SC_EUNAVAIL : st;
    /* Made here (tasks loaded from a store may hold an older stream's), or replaced meanwhile. */
    if (made || (js->stream_created && created != js->stream_created))
        announce_made_anew(js);
    js->stream_created = created;
    jsSubOptions_Init(&so);
    so.Stream = sp->stream;
    so.Consumer = sp->consumer;
    s = js_PullSubscribe(&js->sub, js->ctx, js->subjects[0], sp->consumer, &o, &so, &je);
    if (s != NATS_OK) {
        api_error(err, errlen, "pull subscribe", sp->consumer, s, je);
        js->sub = NULL;
        return SC_EUNAVAIL;
    }
    __atomic_store_n(&js->ready, 1, __ATOMIC_RELEASE);
    sc_log(SC_LOG_INFO, "jetstream: source ready", "source", sp->what, "stream", sp->stream,
           "consumer", sp->consumer, "subject", js->subjects[0], NULL);
    return SC_OK;
}

/* ---- the fetch thread ------------------------------------------------------------------------- */

static void
sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static bool
stopping(struct sc_js *js)
{
    return __atomic_load_n(&js->stop, __ATOMIC_ACQUIRE) != 0;
}

/* Sleeps up to ms in short steps, returning early on a stop. */
static void
wait_ms(struct sc_js *js, int64_t ms)
{
    for (int64_t left = ms; left > 0 && !stopping(js); left -= 50)
        sleep_ms(left < 50 ? left : 50);
}

/* Pulls one batch and hands it to the loop; false when the subscription must be set up again. */
static bool
fetch_once(struct sc_js *js)
{
    natsMsgList list = {0};
    jsErrCode je = 0;
    natsStatus s;

    /* No more than the server may have unacked: a larger batch would wait out its expiry. */
    int64_t batch = js->spec.fetch_batch < js->spec.max_ack_pending ? js->spec.fetch_batch
                                                                     : js->spec.max_ack_pending;
    int waiting = 0;

    /*
     * nats.c before 3.10 (Debian 12 ships 3.4.1) writes past its array of
     * `batch` messages in natsSubscription_Fetch() when messages of an earlier
     * pull request already wait in the subscription and make up more than half
     * of the batch (nats.c #749, fixed in 3.10: it compares the count with the
     * batch it has already reduced). The result was a heap overflow, then
     * "double free or corruption" in natsMsgList_Destroy() and SIGABRT, seen
     * in bench/run.sh --scenarios cluster under sustained ingest. A batch of 1
     * cannot overflow, so leftovers are taken one at a time; the next pull
     * without leftovers asks for the full batch again.
     */
    if (natsSubscription_GetPending(js->sub, &waiting, NULL) == NATS_OK && waiting > 0)
        batch = 1;

    s = natsSubscription_Fetch(&list, js->sub, (int)batch, FETCH_WAIT_MS, &je);
    if (s == NATS_TIMEOUT)
        return true; /* nothing to fetch */
    if (s != NATS_OK) {
        __atomic_add_fetch(&js->fetch_errors, 1, __ATOMIC_RELAXED);
        if (!stopping(js) && sc_now_mono_ms() - js->last_warn_mono >= 10000) {
            sc_log(SC_LOG_WARN, "jetstream: fetch failed (logged once per 10 s)", "source",
                   js->spec.what, "error", natsStatus_GetText(s), NULL);
            js->last_warn_mono = sc_now_mono_ms();
        }
        natsMsgList_Destroy(&list);
        wait_ms(js, FETCH_ERROR_MS);
        /*
         * The consumer or its subscription is gone (deleted by an operator,
         * the stream recreated, the subscription closed), or pulls keep
         * failing for a reason nats.c does not name: set it all up again.
         */
        return ++js->errors_in_row < FETCH_ERRORS_MAX && s != NATS_NOT_FOUND &&
               s != NATS_INVALID_SUBSCRIPTION && je != JSConsumerNotFoundErr;
    }
    js->errors_in_row = 0;
    __atomic_add_fetch(&js->fetched, (uint64_t)list.Count, __ATOMIC_RELAXED);
    for (int i = 0; i < list.Count; i++) {
        natsMsg *m = list.Msgs[i];
        list.Msgs[i] = NULL;
        if (js->spec.prepare && stopping(js)) {
            natsMsg_Destroy(m); /* not acked: back to the stream after the ack wait */
            continue;
        }
        if (js->spec.prepare)
            m = js->spec.prepare(js->spec.pctx, js->ctx, m); /* owns m, returns what to deliver */
        if (m)
            sc_conn_deliver(js->chan, m); /* owns m now; false: closing, and m goes back to the stream */
    }
    natsMsgList_Destroy(&list);
    return true;
}

static void *
fetch_main(void *arg)
{
    struct sc_js *js = arg;
    char err[512];
    int64_t last_warn = 0;

    while (!stopping(js)) {
        int64_t until = __atomic_load_n(&js->paused_until, __ATOMIC_RELAXED);
        if (!js->sub) {
            sc_status st = sc_conn_connected(js->conn) ? setup(js, err, sizeof(err)) : SC_EIO;
            if (st != SC_OK) {
                __atomic_add_fetch(&js->setup_errors, 1, __ATOMIC_RELAXED);
                if (sc_conn_connected(js->conn) && sc_now_mono_ms() - last_warn >= 10000) {
                    sc_log(st == SC_EINVAL ? SC_LOG_ERROR : SC_LOG_WARN,
                           "jetstream: source not set up; retrying", "source", js->spec.what,
                           "error", err, NULL);
                    last_warn = sc_now_mono_ms();
                }
                wait_ms(js, RETRY_SETUP_MS);
            }
            continue;
        }
        if (until > sc_now_mono_ms()) {
            wait_ms(js, until - sc_now_mono_ms() < 50 ? until - sc_now_mono_ms() : 50);
            continue;
        }
        if (!fetch_once(js)) {
            js->errors_in_row = 0;
            __atomic_store_n(&js->ready, 0, __ATOMIC_RELEASE);
            natsSubscription_Destroy(js->sub);
            js->sub = NULL;
        }
    }
    return NULL;
}

/* ---- the source ------------------------------------------------------------------------------- */

/* Copies spec into js: its strings into one allocation js->names, its subjects into js->subjects. */
static void
copy_spec(struct sc_js *js, const struct sc_js_spec *spec)
{
    const char *strs[4] = {spec->what, spec->stream, spec->consumer, spec->stream_key};
    const char **dst[4] = {&js->spec.what, &js->spec.stream, &js->spec.consumer,
                           &js->spec.stream_key};
    size_t total = 0, o = 0;

    js->spec = *spec;
    for (size_t i = 0; i < 4; i++)
        total += strlen(strs[i] ? strs[i] : "") + 1;
    for (size_t k = 0; k < spec->nsubjects; k++)
        total += strlen(spec->subjects[k]) + 1;
    js->names = sc_xcalloc(1, total);
    js->subjects = sc_xcalloc(spec->nsubjects ? spec->nsubjects : 1, sizeof(*js->subjects));
    for (size_t i = 0; i < 4; i++) {
        size_t n = strlen(strs[i] ? strs[i] : "") + 1;
        memcpy(js->names + o, strs[i] ? strs[i] : "", n);
        *dst[i] = js->names + o;
        o += n;
    }
    for (size_t k = 0; k < spec->nsubjects; k++) {
        size_t n = strlen(spec->subjects[k]) + 1;
        memcpy(js->names + o, spec->subjects[k], n);
        js->subjects[k] = js->names + o;
        o += n;
    }
    js->spec.subjects = js->subjects;
    js->spec.consumer_key = spec->consumer_key; /* static text */
}

void
sc_js_ingest_spec(const struct config *cfg, char *subject, size_t subject_len,
                  const char **subjects, struct sc_js_spec *spec)
{
    snprintf(subject, subject_len, "%s.failed.>", cfg->subjects_prefix);
    subjects[0] = subject;
    memset(spec, 0, sizeof(*spec));
    spec->what = "ingest";
    spec->stream = cfg->ingest_stream;
    spec->stream_key = "ingest.stream";
    spec->subjects = subjects;
    spec->nsubjects = 1;
    spec->memory = cfg->ingest_stream_storage == CONFIG_STORAGE_MEMORY;
    spec->replicas = cfg->ingest_stream_replicas;
    spec->replicas_key = "ingest.stream_replicas";
    spec->max_age_s = cfg->ingest_stream_max_age_s;
    spec->max_bytes = cfg->ingest_stream_max_bytes;
    spec->consumer = cfg->ingest_consumer;
    spec->consumer_key = "ingest.consumer";
    spec->ack_wait_ms = cfg->ingest_ack_wait_ms;
    spec->max_ack_pending = cfg->ingest_max_ack_pending;
    spec->fetch_batch = cfg->ingest_fetch_batch;
}

int
sc_js_core_capture_warn(struct sc_conn *c, const char *subject, int64_t wait_ms)
{
    jsCtx *ctx = NULL;
    jsOptions o;
    jsStreamNamesList *names = NULL;
    char list[512] = "";
    int n = 0;

    if (!sc_conn_connected(c))
        return 0;
    jsOptions_Init(&o);
    o.Wait = wait_ms;
    o.Stream.Info.SubjectsFilter = subject;
    if (natsConnection_JetStream(&ctx, sc_conn_nats(c), &o) != NATS_OK)
        return 0;
    if (js_StreamNames(&names, ctx, &o, NULL) == NATS_OK && names) {
        for (int i = 0; i < names->Count; i++) {
            size_t len = strlen(list);
            snprintf(list + len, sizeof(list) - len, "%s%s", i ? "," : "", names->List[i]);
        }
        n = names->Count;
    }
    jsStreamNamesList_Destroy(names);
    jsCtx_Destroy(ctx);
    if (n > 0)
        sc_log(SC_LOG_WARN,
               "ingest: a JetStream stream captures the failure subjects while ingest.mode is core: "
               "it answers the services' requests with its PubAck before the sidecar can, and keeps "
               "every failure; delete it or set ingest.mode: jetstream",
               "subject", subject, "streams", list, NULL);
    return n;
}

sc_status
sc_js_open(struct sc_conn *c, const struct sc_js_spec *spec, sc_conn_handler fn, void *ctx,
           struct sc_js **out, char *err, size_t errlen)
{
    struct sc_js *js = sc_xcalloc(1, sizeof(*js));
    sc_status st;

    *out = NULL;
    js->conn = c;
    copy_spec(js, spec);
    sc_conn_channel_open(c, fn, ctx, &js->chan);
    /*
     * Reachable now: a stream or consumer that does not fit, or no
     * JetStream, stops start-up here. A consumer another sidecar is making
     * at this very moment (a cluster starting) is tried again by the fetch
     * thread, as when NATS is not reachable yet.
     */
    if (sc_conn_connected(c) && (st = setup(js, err, errlen)) != SC_OK) {
        if (st != SC_EUNAVAIL) {
            sc_js_close(js);
            return st;
        }
        sc_log(SC_LOG_WARN, "jetstream: set-up failed; trying again in the background", "source",
               spec->what, "error", err, NULL);
        err[0] = '\0';
    }
    if (pthread_create(&js->thread, NULL, fetch_main, js) != 0) {
        snprintf(err, errlen, "jetstream: cannot start the fetch thread");
        sc_js_close(js);
        return SC_EIO;
    }
    js->thread_started = true;
    *out = js;
    return SC_OK;
}

void
sc_js_stop(struct sc_js *js)
{
    if (js)
        __atomic_store_n(&js->stop, 1, __ATOMIC_RELEASE);
}

void
sc_js_close(struct sc_js *js)
{
    if (!js)
        return;
    sc_js_stop(js);
    sc_conn_channel_close(js->chan); /* a thread waiting for room in the ring lets go */
    if (js->thread_started)
        pthread_join(js->thread, NULL);
    natsSubscription_Destroy(js->sub); /* does not delete the durable consumer */
    jsCtx_Destroy(js->ctx);
    free(js->subjects);
    free(js->names);
    free(js);
}

void
sc_js_pause(struct sc_js *js, int64_t ms)
{
    int64_t now = sc_now_mono_ms();

    if (!js)
        return;
    if (__atomic_load_n(&js->paused_until, __ATOMIC_RELAXED) <= now)
        js->pauses++; /* a new pause, not one more refusal within it */
    __atomic_store_n(&js->paused_until, now + ms, __ATOMIC_RELAXED);
}

void
sc_js_ack(struct sc_js *js, struct sc_conn *c, const char *ack_subject)
{
    if (!ack_subject || !*ack_subject)
        return;
    sc_conn_publish(c, ack_subject, NULL, "+ACK", 4, NULL);
    if (js)
        js->acks++;
}

void
sc_js_nak(struct sc_js *js, struct sc_conn *c, const char *ack_subject, int64_t delay_ms)
{
    char body[64];
    int n;

    if (!ack_subject || !*ack_subject)
        return;
    n = snprintf(body, sizeof(body), "-NAK {\"delay\":%lld}", (long long)(delay_ms * NS_PER_MS));
    sc_conn_publish(c, ack_subject, NULL, body, (size_t)n, NULL);
    if (js)
        js->naks++;
}

bool
sc_js_made_anew(natsMsg *m)
{
    const char *v = NULL;

    const char *reply = natsMsg_GetReply(m);

    return (!reply || !*reply) && natsMsgHeader_Get(m, SC_JS_HDR_MADE_ANEW, &v) == NATS_OK;
}

struct sc_js_stats
sc_js_get_stats(const struct sc_js *js)
{
    struct sc_js_stats st = {0};

    if (!js)
        return st;
    st.ready = __atomic_load_n(&js->ready, __ATOMIC_ACQUIRE) != 0;
    st.fetched = __atomic_load_n(&js->fetched, __ATOMIC_RELAXED);
    st.fetch_errors = __atomic_load_n(&js->fetch_errors, __ATOMIC_RELAXED);
    st.setup_errors = __atomic_load_n(&js->setup_errors, __ATOMIC_RELAXED);
    st.acks = js->acks;
    st.naks = js->naks;
    st.pauses = js->pauses;
    return st;
}
