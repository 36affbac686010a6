/* conn.c - the NATS connection (socket I/O on nats.c's own threads), its subscriptions, and the hand-off of messages to the loop thread. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/thread.h>

#include "sidecar-internal.h"

#define HANDOFF_BATCH 256
#define DRAIN_NATS_MARGIN_MS 60000 /* nats.c's drain timeout: shutdown.drain_ms plus this */

/*
 * Who holds a failure message on its way in, and at shutdown.
 *
 *  1. The server routes it to this connection (the ingest queue group picks
 *     one member). Until the loop thread reads the socket it sits in the
 *     server's and the kernel's buffers.
 *  2. nats.c, reading on the loop thread, appends it to the subscription's
 *     pending list (bounded: 1,000,000 messages / 512 MiB; past that nats.c
 *     drops it and counts it as a slow-consumer drop, lifetime_stats
 *     ingest_slow_consumer_dropped).
 *  3. nats.c's delivery thread takes it off the list and calls on_failed(),
 *     which counts it (ingest_delivered) and pushes it into the hand-off ring
 *     (waiting while the ring is full, so the backlog stays in step 2).
 *  4. The loop pops it in on_wake() and sc_ingest() takes it (c.received):
 *     stored on the queue, or refused with a 400/503 and an event. From here
 *     the queue and the store own it.
 *
 * On SIGTERM sc_conn_drain_ingest() drains the subscription: nats.c sends
 * UNSUB and confirms it with a flush on its own thread (from then on the
 * server routes new failures to the other members, or drops a plain
 * publish when there is none), while steps 2-4 go on for everything
 * already routed here. When the delivery thread has handed over its last
 * message it calls on_ingest_drained(), which pushes an end marker into the
 * ring behind it; the loop reaching the marker means every failure routed
 * to this sidecar was taken, and only then may the loop stop (dispatch.c's
 * tick asks sc_conn_ingest_drained()). If shutdown.drain_ms runs out first,
 * or a second signal stops at once, whatever is still in steps 2-3 is lost:
 * sc_conn_ingest_account() counts it as received by nats.c (pending +
 * delivered) minus taken (c.received), and logs it.
 */

static void on_wake(evutil_socket_t fd, short what, void *arg);

sc_status
sc_handoff_init(struct sc_daemon *d, size_t cap)
{
    struct sc_handoff *h = &d->in;

    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->notfull, NULL);
    h->cap = cap;
    h->items = sc_xcalloc(cap, sizeof(*h->items));
    h->wake = event_new(d->base, -1, 0, on_wake, d);
    return h->wake ? SC_OK : SC_ENOMEM;
}

void
sc_handoff_destroy(struct sc_daemon *d)
{
    struct sc_handoff *h = &d->in;

    if (!h->items)
        return;
    /* Wait out any delivery thread still inside handoff_push(). */
    pthread_mutex_lock(&h->mu);
    h->closed = true;
    pthread_mutex_unlock(&h->mu);
    while (h->len) {
        natsMsg_Destroy(h->items[h->head].msg);
        h->head = (h->head + 1) % h->cap;
        h->len--;
    }
    free(h->items);
    h->items = NULL;
    if (h->wake)
        event_free(h->wake);
    pthread_cond_destroy(&h->notfull);
    pthread_mutex_destroy(&h->mu);
}

/*
 * Runs on a nats.c delivery thread: queue the message for the loop. When
 * the ring is full the thread waits, which leaves further messages in the
 * subscription's pending buffer (nats.c's own bounded queue).
 */
static void
handoff_push(struct sc_daemon *d, natsMsg *msg, sc_in_kind kind)
{
    struct sc_handoff *h = &d->in;
    bool wake = false;

    pthread_mutex_lock(&h->mu);
    while (h->len == h->cap && !h->closed)
        pthread_cond_wait(&h->notfull, &h->mu);
    if (h->closed) {
        pthread_mutex_unlock(&h->mu);
        natsMsg_Destroy(msg);
        return;
    }
    h->items[(h->head + h->len) % h->cap] = (struct sc_inmsg){msg, kind};
    h->len++;
    if (!h->wake_pending) {
        h->wake_pending = true;
        wake = true;
    }
    /*
     * Under the lock: sc_handoff_destroy() takes it before freeing the
     * event, so a delivery thread can never wake a freed event.
     */
    if (wake)
        event_active(h->wake, EV_READ, 0);
    pthread_mutex_unlock(&h->mu);
}

/* The loop reached the drain's end marker: every failure routed here was taken. */
static void
ingest_drain_done(struct sc_daemon *d)
{
    if (d->ingest_drain != SC_DRAIN_RUNNING)
        return;
    d->ingest_drain = SC_DRAIN_DONE;
    sc_log(SC_LOG_INFO, "ingest drained: every failure buffered for this sidecar was taken",
           "taken", sc_log_int((int64_t)(d->c.received - d->ingest_received_at_stop)), "ms",
           sc_log_int(sc_now_mono_ms() - d->ingest_drain_started_mono), NULL);
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_handoff *h = &d->in;
    struct sc_inmsg batch[HANDOFF_BATCH];
    size_t n = 0;
    bool more;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&h->mu);
    while (n < HANDOFF_BATCH && h->len) {
        batch[n++] = h->items[h->head];
        h->head = (h->head + 1) % h->cap;
        h->len--;
    }
    more = h->len > 0;
    if (!more)
        h->wake_pending = false;
    pthread_cond_broadcast(&h->notfull);
    pthread_mutex_unlock(&h->mu);

    for (size_t i = 0; i < n; i++) {
        switch (batch[i].kind) {
        case SC_IN_FAILED: sc_ingest(d, batch[i].msg); break;
        case SC_IN_REPLY: sc_on_reply(d, batch[i].msg); break;
        case SC_IN_ADMIN: sc_admin(d, batch[i].msg); break;
        case SC_IN_MICRO: sc_micro(d, batch[i].msg); break;
        case SC_IN_DRAINED: ingest_drain_done(d); break;
        }
    }
    /*
     * natsMsg_Destroy() hands each message to nats.c's collector thread and
     * wakes it when its list was empty: destroying the batch in one run
     * costs about one wake-up per batch instead of one per message.
     */
    for (size_t i = 0; i < n; i++)
        natsMsg_Destroy(batch[i].msg);
    /*
     * Let timers and sockets run between batches: the next batch is a zero
     * timeout, which runs after the loop has polled its sockets and run its
     * timers. event_active() here would run it in the same pass, and under a
     * long backlog (a flood, a sanitizer build) the NATS socket would go
     * unread until the ring ran dry: past the server's write deadline the
     * server cuts the connection as a slow consumer and drops what it held.
     */
    if (more) {
        static const struct timeval now = {0, 0};
        event_add(h->wake, &now);
    }
}

static void
on_failed(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct sc_daemon *d = closure;

    (void)nc;
    (void)sub;
    __atomic_add_fetch(&d->ingest_delivered, 1, __ATOMIC_RELAXED);
    handoff_push(d, msg, SC_IN_FAILED);
}

/*
 * Runs on the ingest subscription's delivery thread after its last
 * on_failed() returned: the drain is over (or the subscription was
 * closed). The end marker goes behind the last failure in the ring. Last
 * touch of d: sc_conn_close() waits for ingest_cb_done before d is freed.
 */
static void
on_ingest_drained(void *closure)
{
    struct sc_daemon *d = closure;

    handoff_push(d, NULL, SC_IN_DRAINED);
    __atomic_store_n(&d->ingest_cb_done, 1, __ATOMIC_RELEASE);
}

static void
on_reply_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    handoff_push(closure, msg, SC_IN_REPLY);
}

static void
on_admin_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    handoff_push(closure, msg, SC_IN_ADMIN);
}

static void
on_micro_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    handoff_push(closure, msg, SC_IN_MICRO);
}

/* Connection state callbacks run on nats.c threads: log and set atomics only. */
static void
on_disconnected(natsConnection *nc, void *closure)
{
    struct sc_daemon *d = closure;

    (void)nc;
    __atomic_store_n(&d->nats_connected, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&d->disconnects, 1, __ATOMIC_RELAXED);
    /* nats.c reports our own natsConnection_Close() as a disconnect too: not worth a warning. */
    if (__atomic_load_n(&d->nats_closing, __ATOMIC_ACQUIRE))
        sc_log(SC_LOG_DEBUG, "nats disconnected (closing)", NULL);
    else
        sc_log(SC_LOG_WARN, "nats disconnected", NULL);
}

static void
on_reconnected(natsConnection *nc, void *closure)
{
    struct sc_daemon *d = closure;
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    __atomic_store_n(&d->nats_connected, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&d->reconnects, 1, __ATOMIC_RELAXED);
    sc_log(SC_LOG_INFO, "nats reconnected", "url", url, NULL);
}

static void
on_connected(natsConnection *nc, void *closure)
{
    struct sc_daemon *d = closure;
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    __atomic_store_n(&d->nats_connected, 1, __ATOMIC_RELAXED);
    sc_log(SC_LOG_INFO, "nats connected", "url", url, NULL);
}

static void
on_closed(natsConnection *nc, void *closure)
{
    struct sc_daemon *d = closure;

    (void)nc;
    __atomic_store_n(&d->nats_connected, 0, __ATOMIC_RELAXED);
    sc_log(SC_LOG_INFO, "nats connection closed", NULL);
    /* Last touch of d: sc_conn_close() waits for this before d is freed. */
    __atomic_store_n(&d->nats_closed, 1, __ATOMIC_RELEASE);
}

static void
on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    const char *subj = sub ? natsSubscription_GetSubject(sub) : "";

    (void)nc;
    (void)closure;
    sc_log(SC_LOG_WARN, "nats async error", "error", natsStatus_GetText(err), "subject", subj, NULL);
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        if ((ns = (call)) != NATS_OK) {                                                            \
            what = #call;                                                                          \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

sc_status
sc_conn_open(struct sc_daemon *d, char *err, size_t errlen)
{
    struct config *cfg = d->cfg;
    natsOptions *opts = NULL;
    natsInbox *inbox = NULL;
    natsStatus ns = NATS_OK;
    const char *what = "";
    char *urls = NULL, *save = NULL, *tok;
    const char *servers[64];
    int nservers = 0;
    char subj[512];
    sc_status s = SC_EIO;

    CHECK(natsOptions_Create(&opts));
    urls = sc_xstrdup(cfg->nats_url);
    for (tok = strtok_r(urls, ",", &save); tok && nservers < 64; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (*tok)
            servers[nservers++] = tok;
    }
    if (nservers == 0) {
        snprintf(err, errlen, "nats.url: '%s' holds no URL", cfg->nats_url);
        s = SC_EINVAL;
        goto done;
    }
    CHECK(natsOptions_SetServers(opts, servers, nservers));
    CHECK(natsOptions_SetName(opts, cfg->nats_name));
    if (*cfg->nats_user)
        CHECK(natsOptions_SetUserInfo(opts, cfg->nats_user, cfg->nats_password));
    if (*cfg->nats_token)
        CHECK(natsOptions_SetToken(opts, cfg->nats_token));
    if (*cfg->nats_creds_file)
        CHECK(natsOptions_SetUserCredentialsFromFiles(opts, cfg->nats_creds_file, NULL));
    if (*cfg->nats_nkey_seed_file)
        CHECK(natsOptions_SetNKeyFromSeed(opts, cfg->nats_nkey, cfg->nats_nkey_seed_file));
    if (*cfg->nats_tls_ca) {
        CHECK(natsOptions_SetSecure(opts, true));
        CHECK(natsOptions_LoadCATrustedCertificates(opts, cfg->nats_tls_ca));
    }
    if (*cfg->nats_tls_cert || *cfg->nats_tls_key) {
        CHECK(natsOptions_SetSecure(opts, true));
        CHECK(natsOptions_LoadCertificatesChain(opts, cfg->nats_tls_cert, cfg->nats_tls_key));
    }
    CHECK(natsOptions_SetMaxReconnect(opts, -1));
    CHECK(natsOptions_SetReconnectWait(opts, cfg->nats_reconnect_wait_ms));
    CHECK(natsOptions_SetReconnectJitter(opts, 100, 1000));
    CHECK(natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024));
    CHECK(natsOptions_SetMaxPendingMsgs(opts, 1000000));
    CHECK(natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, d));
    CHECK(natsOptions_SetDisconnectedCB(opts, on_disconnected, d));
    CHECK(natsOptions_SetReconnectedCB(opts, on_reconnected, d));
    CHECK(natsOptions_SetClosedCB(opts, on_closed, d));
    CHECK(natsOptions_SetErrorHandler(opts, on_async_error, d));
    /*
     * No natsOptions_SetEventLoop(): nats.c's libevent adapter keeps the
     * protocol parser across a reconnect (nats.c issue 1007, still in 3.4.1),
     * so the half-read message of a connection cut in the middle of a flood
     * (a slow-consumer cut) is glued onto the new connection's first bytes:
     * the next failure was lost as "invalid" and the connection fell into a
     * reconnect loop (tests/integration/test_reconnect.c, slow_consumer_cut).
     * nats.c's own read and flush threads reset the parser on every
     * reconnect. Nothing changes for the loop: messages still reach it
     * through the hand-off ring, and publishing from it never blocks (the
     * flusher thread writes).
     */

    ns = natsConnection_Connect(&d->nc, opts);
    if (ns == NATS_OK) {
        char url[256] = "";
        natsConnection_GetConnectedUrl(d->nc, url, sizeof(url));
        __atomic_store_n(&d->nats_connected, 1, __ATOMIC_RELAXED);
        sc_log(SC_LOG_INFO, "nats connected", "url", url, NULL);
    } else if (ns == NATS_NOT_YET_CONNECTED) {
        sc_log(SC_LOG_WARN, "nats not reachable yet; retrying in the background", "url",
               cfg->nats_url, NULL);
    } else {
        what = "natsConnection_Connect";
        goto done;
    }
    ns = NATS_OK;

    CHECK(natsInbox_Create(&inbox));
    snprintf(d->reply_prefix, sizeof(d->reply_prefix), "%s", (const char *)inbox);
    snprintf(subj, sizeof(subj), "%s.failed.>", cfg->subjects_prefix);
    CHECK(natsConnection_QueueSubscribe(&d->sub_failed, d->nc, subj, cfg->subjects_queue_group,
                                        on_failed, d));
    CHECK(natsSubscription_SetPendingLimits(d->sub_failed, 1000000, 512 * 1024 * 1024));
    snprintf(subj, sizeof(subj), "%s.*.*", d->reply_prefix);
    CHECK(natsConnection_Subscribe(&d->sub_reply, d->nc, subj, on_reply_msg, d));
    CHECK(natsSubscription_SetPendingLimits(d->sub_reply, 1000000, 512 * 1024 * 1024));
    snprintf(subj, sizeof(subj), "%s.admin.*", cfg->subjects_prefix);
    CHECK(natsConnection_Subscribe(&d->sub_admin, d->nc, subj, on_admin_msg, d));
    if ((ns = sc_micro_open(d, on_micro_msg)) != NATS_OK) {
        what = "sc_micro_open";
        goto done;
    }
    s = SC_OK;

done:
    if (s == SC_EIO)
        snprintf(err, errlen, "nats: %s: %s", what, natsStatus_GetText(ns));
    natsInbox_Destroy(inbox);
    natsOptions_Destroy(opts);
    free(urls);
    return s;
}

void
sc_conn_drain_ingest(struct sc_daemon *d)
{
    natsStatus ns;

    if (d->ingest_drain != SC_DRAIN_NONE)
        return;
    d->ingest_drain_started_mono = sc_now_mono_ms();
    d->ingest_received_at_stop = d->c.received;
    if (!d->sub_failed) {
        d->ingest_drain = SC_DRAIN_DONE;
        return;
    }
    ns = natsSubscription_SetOnCompleteCB(d->sub_failed, on_ingest_drained, d);
    if (ns != NATS_OK) {
        /* The subscription is gone already: nothing is left to take, and no callback will come. */
        sc_log(SC_LOG_WARN, "ingest: cannot drain the subscription", "error",
               natsStatus_GetText(ns), NULL);
        __atomic_store_n(&d->ingest_cb_done, 1, __ATOMIC_RELEASE);
        d->ingest_drain = SC_DRAIN_DONE;
        return;
    }
    d->ingest_drain = SC_DRAIN_RUNNING;
    /*
     * nats.c's timeout must never fire first: on its expiry nats.c closes
     * the subscription and frees what it still holds without a count, and
     * its flush (by default 10 s, the same timeout when one is given) would
     * on failure make it drop, uncounted, whatever still arrives behind a
     * long backlog. shutdown.drain_ms bounds the wait instead, and
     * sc_conn_ingest_account() counts what is left then.
     */
    ns = natsSubscription_DrainTimeout(d->sub_failed, d->cfg->shutdown_drain_ms + DRAIN_NATS_MARGIN_MS);
    if (ns != NATS_OK) {
        sc_log(SC_LOG_WARN, "ingest: drain refused; failures still buffered will be counted as dropped",
               "error", natsStatus_GetText(ns), NULL);
        d->ingest_drain = SC_DRAIN_DONE;
    }
}

bool
sc_conn_ingest_drained(const struct sc_daemon *d)
{
    return d->ingest_drain != SC_DRAIN_RUNNING;
}

uint64_t
sc_conn_ingest_account(struct sc_daemon *d)
{
    int pending = 0;
    int64_t delivered = 0, slow = 0;
    uint64_t arrived, dropped = 0;

    if (d->ingest_drain == SC_DRAIN_NONE || !d->sub_failed)
        return 0;
    /*
     * The loop no longer runs, so nothing new arrives: pending + delivered,
     * read under the subscription's lock, is every failure nats.c received.
     * Once the drain completed nats.c closed the subscription; then every
     * message went through on_failed(), which counted it.
     */
    if (natsSubscription_GetStats(d->sub_failed, &pending, NULL, NULL, NULL, &delivered, &slow) ==
        NATS_OK)
        arrived = (uint64_t)pending + (uint64_t)delivered;
    else
        arrived = __atomic_load_n(&d->ingest_delivered, __ATOMIC_ACQUIRE);
    if (arrived > d->c.received)
        dropped = arrived - d->c.received;
    d->c.ingest_dropped += dropped;
    sc_log(dropped ? SC_LOG_WARN : SC_LOG_INFO,
           dropped ? "ingest closed: failures received from NATS were not taken before exit"
                   : "ingest closed: every failure received from NATS was taken",
           "received", sc_log_int((int64_t)d->c.received), "enqueued",
           sc_log_int((int64_t)d->c.enqueued), "invalid", sc_log_int((int64_t)d->c.invalid),
           "refused_full", sc_log_int((int64_t)d->c.refused_full), "dropped",
           sc_log_int((int64_t)dropped), "drained",
           d->ingest_drain == SC_DRAIN_DONE ? "true" : "false", NULL);
    return dropped;
}

void
sc_conn_close(struct sc_daemon *d)
{
    struct sc_handoff *h = &d->in;
    bool wait_drain_cb = d->ingest_drain != SC_DRAIN_NONE && d->sub_failed;

    if (h->items) {
        pthread_mutex_lock(&h->mu);
        h->closed = true;
        pthread_cond_broadcast(&h->notfull);
        pthread_mutex_unlock(&h->mu);
    }
    if (d->nc) {
        __atomic_store_n(&d->nats_closing, 1, __ATOMIC_RELEASE);
        natsConnection_Close(d->nc);
        /* The closed callback runs on a nats.c thread and touches d: wait for it (at most 5 s). */
        for (int i = 0; i < 5000 && !__atomic_load_n(&d->nats_closed, __ATOMIC_ACQUIRE); i++) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        /* So does the drain's completion callback, once the close ended the delivery thread. */
        for (int i = 0; wait_drain_cb && i < 5000 &&
                        !__atomic_load_n(&d->ingest_cb_done, __ATOMIC_ACQUIRE);
             i++) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    natsSubscription_Destroy(d->sub_failed);
    natsSubscription_Destroy(d->sub_reply);
    natsSubscription_Destroy(d->sub_admin);
    d->sub_failed = d->sub_reply = d->sub_admin = NULL;
    sc_micro_close(d);
    natsConnection_Destroy(d->nc);
    d->nc = NULL;
}

/* Copies a header value with control characters replaced by spaces (no CR/LF can reach the wire). */
static const char *
header_safe(const char *v, char *buf, size_t buflen)
{
    size_t i = 0;

    for (; v[i] && i + 1 < buflen; i++)
        buf[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? ' ' : v[i];
    buf[i] = '\0';
    return buf;
}

sc_status
sc_publish(struct sc_daemon *d, const char *subject, const char *reply, const void *body,
           size_t len, const char *const *headers)
{
    natsMsg *m = NULL;
    natsStatus ns;
    char val[4200]; /* task ids (<= 1024 bytes) and subjects (<= 4000) pass whole */

    if (len > INT32_MAX)
        return SC_ETOOBIG;
    if (!headers) {
        ns = reply ? natsConnection_PublishRequest(d->nc, subject, reply, body, (int)len)
                   : natsConnection_Publish(d->nc, subject, body, (int)len);
    } else {
        ns = natsMsg_Create(&m, subject, reply, body, (int)len);
        for (size_t i = 0; ns == NATS_OK && headers[i]; i += 2)
            ns = natsMsgHeader_Set(m, headers[i], header_safe(headers[i + 1], val, sizeof(val)));
        if (ns == NATS_OK)
            ns = natsConnection_PublishMsg(d->nc, m);
        natsMsg_Destroy(m);
    }
    if (ns != NATS_OK) {
        d->c.publish_errors++;
        sc_log(SC_LOG_DEBUG, "publish failed", "subject", subject, "error", natsStatus_GetText(ns), NULL);
        return ns == NATS_MAX_PAYLOAD ? SC_ETOOBIG : SC_EIO;
    }
    d->c.published++;
    return SC_OK;
}

void
sc_respond(struct sc_daemon *d, natsMsg *req, const char *body, size_t len, int error_code,
           const char *error_message)
{
    const char *reply = natsMsg_GetReply(req);
    const char *hdrs[5] = {NULL};
    char code[16], small[256];
    size_t plen = strlen(d->reply_prefix);

    if (!reply || !*reply)
        return;
    /* Never answer onto a wildcard, or into our own retry inbox (a forged reply). */
    if (!codec_subject_valid(reply, strlen(reply), false) ||
        (strncmp(reply, d->reply_prefix, plen) == 0 && (reply[plen] == '.' || reply[plen] == '\0')))
        return;
    if (error_code) {
        snprintf(code, sizeof(code), "%d", error_code);
        hdrs[0] = CODEC_HDR_SERVICE_ERROR;
        hdrs[1] = error_message ? error_message : "error";
        hdrs[2] = CODEC_HDR_SERVICE_ERROR_CODE;
        hdrs[3] = code;
    }
    if (sc_publish(d, reply, NULL, body, len, error_code ? hdrs : NULL) == SC_ETOOBIG) {
        /* Every request gets a JSON answer, even when the real one cannot fit. */
        int n = snprintf(small, sizeof(small),
                         "{\"error\":{\"code\":400,\"message\":\"reply of %zu bytes exceeds the "
                         "server's max_payload\"}}",
                         len);
        hdrs[0] = CODEC_HDR_SERVICE_ERROR;
        hdrs[1] = "reply exceeds max_payload";
        hdrs[2] = CODEC_HDR_SERVICE_ERROR_CODE;
        hdrs[3] = "400";
        hdrs[4] = NULL;
        sc_publish(d, reply, NULL, small, (size_t)n, hdrs);
    }
}

void
sc_conn_global_init(void)
{
    evthread_use_pthreads(); /* nats.c's delivery threads wake the loop (event_active) */
}
