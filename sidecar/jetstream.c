/* jetstream.c - durable ingest on JetStream: sets up the failure stream and the shared pull consumer, fetches on a thread of its own, and sends the ack/nak replies. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jetstream.h"
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
    const struct config *cfg;      /* borrowed */
    struct sc_conn_sub *chan;      /* the channel to the loop (owned by conn) */
    char subject[300];             /* "<prefix>.failed.>" */
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

/* Creates the stream when it is missing; an existing one must cover js->subject (SC_EINVAL). */
static sc_status
ensure_stream(struct sc_js *js, jsOptions *o, char *err, size_t errlen)
{
    const struct config *cfg = js->cfg;
    jsStreamInfo *si = NULL;
    jsStreamConfig sc;
    const char *subjects[1] = {js->subject};
    jsErrCode je = 0;
    natsStatus s;
    sc_status st = SC_OK;

    s = js_GetStreamInfo(&si, js->ctx, cfg->ingest_stream, o, &je);
    if (s == NATS_OK) {
        bool covered = false;
        for (int i = 0; si->Config && i < si->Config->SubjectsLen; i++)
            covered = covered || sc_js_subject_covers(si->Config->Subjects[i], js->subject);
        if (!covered) {
            snprintf(err, errlen,
                     "jetstream: the existing stream %s does not capture %s (ingest.stream names "
                     "a stream whose subjects must cover the failure subjects)",
                     cfg->ingest_stream, js->subject);
            st = SC_EINVAL;
        }
        jsStreamInfo_Destroy(si);
        return st;
    }
    if (s != NATS_NOT_FOUND && je != JSStreamNotFoundErr) {
        api_error(err, errlen, "stream info", cfg->ingest_stream, s, je);
        return SC_EIO;
    }
    jsStreamConfig_Init(&sc);
    sc.Name = cfg->ingest_stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_WorkQueuePolicy; /* an acked failure is the sidecar's: the stream lets it go */
    sc.Storage = cfg->ingest_stream_storage == CONFIG_STORAGE_MEMORY ? js_MemoryStorage
                                                                      : js_FileStorage;
    sc.Replicas = cfg->ingest_stream_replicas;
    sc.MaxAge = cfg->ingest_stream_max_age_s * 1000 * NS_PER_MS;
    sc.MaxBytes = cfg->ingest_stream_max_bytes > 0 ? cfg->ingest_stream_max_bytes : -1;
    je = 0;
    s = js_AddStream(&si, js->ctx, &sc, o, &je);
    if (s != NATS_OK) {
        api_error(err, errlen, "create stream", cfg->ingest_stream, s, je);
        return SC_EIO;
    }
    jsStreamInfo_Destroy(si);
    sc_log(SC_LOG_INFO, "jetstream: stream created", "stream", cfg->ingest_stream, "subjects",
           js->subject, NULL);
    return SC_OK;
}

/* Fills cc with the consumer the configuration asks for. */
static void
consumer_config(const struct sc_js *js, jsConsumerConfig *cc)
{
    const struct config *cfg = js->cfg;

    jsConsumerConfig_Init(cc);
    cc->Durable = cfg->ingest_consumer;
    cc->AckPolicy = js_AckExplicit;
    cc->AckWait = cfg->ingest_ack_wait_ms * NS_PER_MS;
    cc->MaxDeliver = -1; /* a full queue naks: a failure must never run out of deliveries */
    cc->MaxAckPending = cfg->ingest_max_ack_pending;
    cc->FilterSubject = js->subject;
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
    const struct config *cfg = js->cfg;
    jsConsumerInfo *ci = NULL;
    jsConsumerConfig cc;
    jsErrCode je = 0;
    natsStatus s;

    consumer_config(js, &cc);
    s = js_GetConsumerInfo(&ci, js->ctx, cfg->ingest_stream, cfg->ingest_consumer, o, &je);
    if (s == NATS_OK) {
        const jsConsumerConfig *have = ci->Config;
        bool fits = have && (!have->DeliverSubject || !*have->DeliverSubject) &&
                    have->AckPolicy == js_AckExplicit;
        bool same = fits && have->AckWait == cc.AckWait && have->MaxAckPending == cc.MaxAckPending;
        jsConsumerInfo_Destroy(ci);
        if (!fits) {
            snprintf(err, errlen,
                     "jetstream: the existing consumer %s on %s is not a pull consumer with "
                     "explicit acks (ingest.consumer)", cfg->ingest_consumer, cfg->ingest_stream);
            return SC_EINVAL;
        }
        if (same)
            return SC_OK;
        s = js_UpdateConsumer(&ci, js->ctx, cfg->ingest_stream, &cc, o, &je);
        if (s != NATS_OK) {
            api_error(err, errlen, "update consumer", cfg->ingest_consumer, s, je);
            return SC_EIO;
        }
        jsConsumerInfo_Destroy(ci);
        return SC_OK;
    }
    if (s != NATS_NOT_FOUND && je != JSConsumerNotFoundErr) {
        api_error(err, errlen, "consumer info", cfg->ingest_consumer, s, je);
        return SC_EIO;
    }
    je = 0;
    s = js_AddConsumer(&ci, js->ctx, cfg->ingest_stream, &cc, o, &je);
    if (s != NATS_OK) {
        api_error(err, errlen, "create consumer", cfg->ingest_consumer, s, je);
        return SC_EIO;
    }
    jsConsumerInfo_Destroy(ci);
    return SC_OK;
}

/* Sets up the stream, the consumer and the bound pull subscription (js->sub). */
static sc_status
setup(struct sc_js *js, char *err, size_t errlen)
{
    const struct config *cfg = js->cfg;
    jsOptions o;
    jsSubOptions so;
    jsErrCode je = 0;
    natsStatus s;
    sc_status st;

    jsOptions_Init(&o);
    o.Wait = API_WAIT_MS;
    if (!js->ctx && (s = natsConnection_JetStream(&js->ctx, sc_conn_nats(js->conn), &o)) != NATS_OK) {
        api_error(err, errlen, "context", "", s, 0);
        return SC_EIO;
    }
    if ((st = ensure_stream(js, &o, err, errlen)) || (st = ensure_consumer(js, &o, err, errlen)))
        return st;
    jsSubOptions_Init(&so);
    so.Stream = cfg->ingest_stream;
    so.Consumer = cfg->ingest_consumer;
    s = js_PullSubscribe(&js->sub, js->ctx, js->subject, cfg->ingest_consumer, &o, &so, &je);
    if (s != NATS_OK) {
        api_error(err, errlen, "pull subscribe", cfg->ingest_consumer, s, je);
        js->sub = NULL;
        return SC_EIO;
    }
    __atomic_store_n(&js->ready, 1, __ATOMIC_RELEASE);
    sc_log(SC_LOG_INFO, "jetstream: ingest ready", "stream", cfg->ingest_stream, "consumer",
           cfg->ingest_consumer, "subjects", js->subject, NULL);
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

    s = natsSubscription_Fetch(&list, js->sub, (int)js->cfg->ingest_fetch_batch, FETCH_WAIT_MS, &je);
    if (s == NATS_TIMEOUT)
        return true; /* nothing to fetch */
    if (s != NATS_OK) {
        __atomic_add_fetch(&js->fetch_errors, 1, __ATOMIC_RELAXED);
        if (!stopping(js) && sc_now_mono_ms() - js->last_warn_mono >= 10000) {
            sc_log(SC_LOG_WARN, "jetstream: fetch failed (logged once per 10 s)", "error",
                   natsStatus_GetText(s), NULL);
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
                           "jetstream: ingest not set up; retrying", "error", err, NULL);
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

sc_status
sc_js_open(struct sc_conn *c, const struct config *cfg, sc_conn_handler fn, void *ctx,
           struct sc_js **out, char *err, size_t errlen)
{
    struct sc_js *js = sc_xcalloc(1, sizeof(*js));
    sc_status st;

    *out = NULL;
    js->conn = c;
    js->cfg = cfg;
    snprintf(js->subject, sizeof(js->subject), "%s.failed.>", cfg->subjects_prefix);
    sc_conn_channel_open(c, fn, ctx, &js->chan);
    /* Reachable now: a stream or consumer that does not fit stops start-up here. */
    if (sc_conn_connected(c) && (st = setup(js, err, errlen)) != SC_OK) {
        sc_js_close(js);
        return st;
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
