/* conn.c - the NATS connection (socket I/O on nats.c's own threads): options, callbacks, subscriptions and the hand-off of their messages to the loop thread. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/thread.h>

#include "codec.h"
#include "conn.h"
#include "list.h"
#include "log.h"

#define HANDOFF_BATCH 256
#define SERVERS_MAX 64
#define BIG_PENDING_BYTES (512 * 1024 * 1024)
#define CALLBACK_WAIT_MS 5000 /* longest wait for one of nats.c's last callbacks at close */
/*
 * nats.c's socket buffers (its default is 32 KiB). A publish from the loop
 * (an event a failure, a retry) that finds the write buffer full writes the
 * socket itself, on the loop thread; at 200,000 events a second 32 KiB
 * filled in under a millisecond, before nats.c's flusher thread (which
 * writes what gathered about once a millisecond) came round. With 1 MiB the
 * flusher does the writes. Two buffers of it per connection.
 */
#define IO_BUF_BYTES (1 << 20)
#define INBOX_MAX (CONFIG_INBOX_PREFIX_MAX + 32) /* "<nats.inbox_prefix>.<22-byte nuid>" and its NUL */

/*
 * Who holds a message on its way in, and at shutdown (the ingest
 * subscription's failures are the ones that matter):
 *
 *  1. The server routes it to this connection (a queue group picks one
 *     member). Until the loop thread reads the socket it sits in the
 *     server's and the kernel's buffers.
 *  2. nats.c, reading on the loop thread, appends it to the subscription's
 *     pending list (bounded by its pending limits; past them nats.c drops
 *     it and counts it as a slow-consumer drop, sc_conn_sub_dropped()).
 *  3. nats.c's delivery thread takes it off the list and calls on_msg(),
 *     which counts it (delivered), runs the subscription's prep function
 *     into a free slot if it has one (sc_conn_subscribe_prepared(); waiting
 *     while every slot is in use) and pushes it into the hand-off ring
 *     (waiting while the ring is full, so the backlog stays in step 2).
 *  4. The loop pops it in on_wake() and hands it to the subscription's
 *     handler (taken). From here the handler's owner has it.
 *
 * sc_conn_sub_drain() drains a subscription: nats.c sends UNSUB and
 * confirms it with a flush on its own thread (from then on the server
 * routes new messages to the other members, or drops a plain publish when
 * there is none), while steps 2-4 go on for everything already routed
 * here. When the delivery thread has handed over its last message it calls
 * on_sub_complete(), which pushes an end marker into the ring behind it;
 * the loop reaching the marker means every message routed here was taken
 * (SC_CONN_DRAIN_DONE, and the owner's done callback). If the owner's
 * deadline runs out first, whatever is still in steps 2-3 is lost:
 * sc_conn_sub_tally() gives received by nats.c (pending + delivered) and
 * taken, for the owner to count the difference.
 *
 * Every subscription has a completion callback (on_sub_complete(), set
 * when it is made): nats.c 3.4.1 calls it on the subscription's own
 * delivery thread once that thread left its loop for good, after its last
 * on_msg() returned: when a drain is over, when the subscription is
 * unsubscribed, and when the connection closes (natsSub_deliverMsgs(),
 * sub.c). It is the delivery thread's last touch of the sc_conn_sub, of its
 * slots and of the ring. sc_conn_free() closes in this order, and at each
 * step a message has one holder:
 *
 *  a. handoff_close(): the ring takes nothing more. A message in the ring
 *     stays the ring's; one that a delivery thread pushes from now on (or
 *     was waiting to push, in handoff_push() or slot_take()) is destroyed
 *     there by that thread, which holds it until then.
 *  b. natsConnection_Close(): nats.c closes every subscription. What still
 *     waits in a pending list (step 2) is nats.c's and freed by it; a
 *     delivery thread inside on_msg() or the prep function holds its
 *     message until a. destroys it, and then calls on_sub_complete() (its
 *     end marker is refused by the closed ring), which sets complete_done.
 *  c. The wait: at most CALLBACK_WAIT_MS in all for the closed callback and
 *     every subscription's complete_done. Only then are the subscriptions
 *     and their slots freed, and handoff_destroy() destroys the messages
 *     left in the ring (the ring held them). A subscription whose
 *     completion did not come is named in a warning and left allocated,
 *     with the ring and the connection (its thread may still touch them):
 *     a leak at exit instead of a use after free, and never a hang.
 *
 * So no message is lost uncounted by the ring, and none is touched after
 * it or its subscription was freed.
 */

/* One subscription: its handler, and the counts and drain state of the hand-off. */
struct sc_conn_sub {
    struct sc_list link;      /* in conn->subs */
    struct sc_conn *conn;
    natsSubscription *ns;
    sc_conn_handler fn;
    void *ctx;
    uint64_t delivered;       /* messages nats.c handed to on_msg(): use __atomic */
    uint64_t taken;           /* messages handed to fn: loop thread */
    sc_conn_drain_state drain; /* loop thread */
    sc_conn_drained_fn drained;
    void *drained_ctx;
    volatile int complete_done; /* on_sub_complete() ran: the delivery thread is done with sub; use __atomic */
    bool ended;               /* the loop took sub's end marker: loop thread */
    bool channel;             /* sc_conn_channel_open(): no natsSubscription, fed by sc_conn_deliver() */
    bool retire;              /* sc_conn_sub_retire(): freed by the conn once its drain is done */
    bool stuck;               /* sc_conn_free(): the completion did not come in time; left allocated */
    volatile int chan_closed; /* sc_conn_channel_close() was called: use __atomic (under in.mu) */
    /* sc_conn_subscribe_prepared(): the prep function and its slots (none: prep.fn NULL). */
    struct sc_conn_prep prep;
    unsigned char *slots;     /* prep.nslots * prep.slot_size bytes */
    uint32_t *free_slots;     /* indices of the slots not in use: under in.mu */
    size_t nfree;             /* under in.mu */
    int32_t hand;             /* slot the delivery thread holds for its next message (-1: none) */
};

/* One slot of the ring: a message of sub, or (msg NULL) the end marker of sub's drain. */
struct handoff_item {
    natsMsg *msg;
    struct sc_conn_sub *sub;
    int32_t slot; /* sub's prep slot filled for msg (-1: none) */
};

/* The bounded hand-off ring: nats.c threads push, the loop pops. */
struct handoff {
    pthread_mutex_t mu;
    pthread_cond_t notfull;
    struct handoff_item *items;
    size_t cap, head, len;
    bool wake_pending;
    bool closed;
    struct event *wake;
};

struct sc_conn {
    const struct config *cfg; /* borrowed */
    struct event_base *base;
    natsConnection *nc;
    char inbox[INBOX_MAX];    /* "<nats.inbox_prefix>.<nuid>" */
    struct handoff in;
    struct sc_list subs;      /* struct sc_conn_sub, in subscription order */
    uint64_t published, publish_errors; /* loop thread */
    uint64_t barrier_sent, barrier_seen; /* round trips to the server (sc_conn_flushed()): loop thread */
    uint64_t published_at_barrier;       /* published when the last round trip was sent */
    void *prepared;           /* sc_conn_prepared(): loop thread */
    int64_t max_payload;      /* sc_conn_max_payload()'s cache (0: none): loop thread */
    uint64_t mp_epoch;        /* disconnects when it was read: valid while they are the same */
    uint64_t reconnects;      /* written on nats.c threads: use __atomic */
    uint64_t disconnects;     /* written on nats.c threads: use __atomic */
    volatile int connected;   /* written on nats.c threads: use __atomic */
    volatile int closing;     /* sc_conn_free() closes the connection: use __atomic */
    volatile int closed;      /* set by the closed callback: use __atomic */
};

/* ---- the hand-off ring ----------------------------------------------------------------------- */

static void on_wake(evutil_socket_t fd, short what, void *arg);
static void sub_free(struct sc_conn_sub *sub);

/* The subject of sub, for a log line ("" when nats.c has none). */
static const char *
subject_of(const struct sc_conn_sub *sub)
{
    const char *subj = sub->ns ? natsSubscription_GetSubject(sub->ns) : NULL;

    return subj ? subj : "";
}
static sc_status barrier_open(struct sc_conn *c, char *err, size_t errlen);

static sc_status
handoff_init(struct sc_conn *c, size_t cap)
{
    struct handoff *h = &c->in;

    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->notfull, NULL);
    h->cap = cap;
    h->items = sc_xcalloc(cap, sizeof(*h->items));
    h->wake = event_new(c->base, -1, 0, on_wake, c);
    return h->wake ? SC_OK : SC_ENOMEM;
}

/* Closes the ring: a delivery thread waiting in handoff_push() (or arriving later) lets go. */
static void
handoff_close(struct handoff *h)
{
    if (!h->items)
        return;
    pthread_mutex_lock(&h->mu);
    h->closed = true;
    pthread_cond_broadcast(&h->notfull);
    pthread_mutex_unlock(&h->mu);
}

static void
handoff_destroy(struct handoff *h)
{
    if (!h->items)
        return;
    handoff_close(h); /* waits out any delivery thread still inside handoff_push() */
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
 * Runs on a nats.c delivery thread (or a channel's feeding thread): queue
 * msg of sub for the loop. When the ring is full the thread waits, which
 * leaves further messages in the subscription's pending buffer (nats.c's
 * own bounded queue). False (msg destroyed) once the ring or the channel
 * is closed.
 */
static bool
handoff_push(struct handoff *h, natsMsg *msg, struct sc_conn_sub *sub)
{
    bool wake = false;

    pthread_mutex_lock(&h->mu);
    while (h->len == h->cap && !h->closed && !sub->chan_closed)
        pthread_cond_wait(&h->notfull, &h->mu);
    if (h->closed || sub->chan_closed) {
        pthread_mutex_unlock(&h->mu);
        natsMsg_Destroy(msg);
        return false;
    }
    h->items[(h->head + h->len) % h->cap] = (struct handoff_item){msg, sub, -1};
    if (msg && sub->prep.fn && sub->hand >= 0) {
        /* the slot goes with msg; the next message's is taken under the same lock */
        h->items[(h->head + h->len) % h->cap].slot = sub->hand;
        sub->hand = sub->nfree ? (int32_t)sub->free_slots[--sub->nfree] : -1;
    }
    h->len++;
    if (!h->wake_pending) {
        h->wake_pending = true;
        wake = true;
    }
    /*
     * Under the lock: handoff_destroy() takes it before freeing the event,
     * so a delivery thread can never wake a freed event.
     */
    if (wake)
        event_active(h->wake, EV_READ, 0);
    pthread_mutex_unlock(&h->mu);
    return true;
}

/*
 * Delivery thread of a prepared subscription: takes a free slot into
 * sub->hand, waiting while all are in use. False once the ring or the
 * channel is closed (no slot).
 */
static bool
slot_take(struct handoff *h, struct sc_conn_sub *sub)
{
    pthread_mutex_lock(&h->mu);
    while (!sub->nfree && !h->closed && !sub->chan_closed)
        pthread_cond_wait(&h->notfull, &h->mu);
    if (sub->nfree && !h->closed && !sub->chan_closed)
        sub->hand = (int32_t)sub->free_slots[--sub->nfree];
    pthread_mutex_unlock(&h->mu);
    return sub->hand >= 0;
}

/* Loop thread: gives the n items' prep slots back (one lock), wakes a waiting delivery thread. */
static void
slots_release(struct handoff *h, const struct handoff_item *batch, size_t n)
{
    bool any = false;

    for (size_t i = 0; i < n && !any; i++)
        any = batch[i].slot >= 0;
    if (!any)
        return;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < n; i++)
        if (batch[i].slot >= 0)
            batch[i].sub->free_slots[batch[i].sub->nfree++] = (uint32_t)batch[i].slot;
    pthread_cond_broadcast(&h->notfull);
    pthread_mutex_unlock(&h->mu);
}

/* The loop reached sub's end marker: every message routed to it was taken. */
static void
drain_done(struct sc_conn_sub *sub)
{
    if (sub->drain != SC_CONN_DRAIN_RUNNING)
        return;
    sub->drain = SC_CONN_DRAIN_DONE;
    if (sub->drained)
        sub->drained(sub->drained_ctx);
}

/* Takes up to HANDOFF_BATCH items off the ring into batch; returns how many, *more when some are left. */
static size_t
handoff_pop(struct handoff *h, struct handoff_item *batch, bool *more)
{
    size_t n = 0;

    pthread_mutex_lock(&h->mu);
    while (n < HANDOFF_BATCH && h->len) {
        batch[n++] = h->items[h->head];
        h->head = (h->head + 1) % h->cap;
        h->len--;
    }
    *more = h->len > 0;
    if (!*more)
        h->wake_pending = false;
    pthread_cond_broadcast(&h->notfull);
    pthread_mutex_unlock(&h->mu);
    return n;
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct sc_conn *c = arg;
    struct handoff_item batch[HANDOFF_BATCH];
    bool more, held = false;
    size_t n;

    (void)fd;
    (void)what;
    n = handoff_pop(&c->in, batch, &more);
    sc_log_hold(); /* one write(2) for the batch's per-task lines (log.h) */
    for (size_t i = 0; i < n; i++) /* conn.h: sc_conn_ahead_fn */
        if (batch[i].msg && batch[i].slot >= 0 && batch[i].sub->prep.ahead)
            batch[i].sub->prep.ahead(batch[i].sub->prep.ahead_ctx,
                                     batch[i].sub->slots +
                                         (size_t)batch[i].slot * batch[i].sub->prep.slot_size);
    for (size_t i = 0; i < n; i++) {
        struct sc_conn_sub *sub = batch[i].sub;
        /*
         * One clock reading for each run of prepared messages (the ingest,
         * common.h): what ingest stamps on a task (created, updated, due
         * times, its event's "at", its version) is at most as old as the
         * run's handlers take (about a millisecond for a full batch of
         * failures) -- the lag a failure already has in the ring. Any other
         * handler (admin verbs, worker replies, the end of a drain) reads
         * the clock itself, and the run after it takes a new reading: a
         * slow verb before a failure in one batch must not leave the
         * failure stamped before what the verb did to the same task.
         */
        bool wants_hold = batch[i].msg && sub->prep.fn;
        if (wants_hold != held) {
            if (wants_hold)
                sc_clock_hold();
            else
                sc_clock_release();
            held = wants_hold;
        }
        if (!batch[i].msg) {
            sub->ended = true;
            drain_done(sub);
            continue;
        }
        sub->taken++;
        c->prepared = batch[i].slot >= 0 ? sub->slots + (size_t)batch[i].slot * sub->prep.slot_size
                                         : NULL;
        sub->fn(sub->ctx, batch[i].msg);
        c->prepared = NULL;
    }
    if (held)
        sc_clock_release();
    sc_log_flush();
    /*
     * natsMsg_Destroy() hands each message to nats.c's collector thread and
     * wakes it when its list was empty: destroying the batch in one run
     * costs about one wake-up per batch instead of one per message.
     */
    for (size_t i = 0; i < n; i++)
        natsMsg_Destroy(batch[i].msg);
    slots_release(&c->in, batch, n); /* prepared subscriptions are never freed before c */
    /*
     * Let timers and sockets run between batches: the next batch is a zero
     * timeout, which runs after the loop has polled its sockets and run its
     * timers. event_active() here would run it in the same pass, and under a
     * long backlog (a flood, a sanitizer build) every timer (the wheel's
     * tick, reply timeouts) and socket would wait until the ring ran dry.
     */
    if (more) {
        static const struct timeval now = {0, 0};
        event_add(c->in.wake, &now);
    }
}

/* nats.c's message callback of every subscription: a delivery thread. */
static void
on_msg(natsConnection *nc, natsSubscription *ns, natsMsg *msg, void *closure)
{
    struct sc_conn_sub *sub = closure;

    (void)nc;
    (void)ns;
    __atomic_add_fetch(&sub->delivered, 1, __ATOMIC_RELAXED);
    if (sub->prep.fn && (sub->hand >= 0 || slot_take(&sub->conn->in, sub)))
        sub->prep.fn(sub->prep.ctx, msg, sub->slots + (size_t)sub->hand * sub->prep.slot_size);
    handoff_push(&sub->conn->in, msg, sub);
}

/*
 * nats.c's completion callback of every subscription: runs on its delivery
 * thread after its last on_msg() returned (a drain is over, an
 * unsubscribe, or the connection's close). The end marker goes behind the
 * last message in the ring (refused once the ring is closed). Last touch
 * of sub: sc_conn_free() and reap_retired() wait for complete_done before
 * freeing it.
 */
static void
on_sub_complete(void *closure)
{
    struct sc_conn_sub *sub = closure;

    handoff_push(&sub->conn->in, NULL, sub);
    __atomic_store_n(&sub->complete_done, 1, __ATOMIC_RELEASE);
}

/* ---- the connection -------------------------------------------------------------------------- */

/* Connection state callbacks run on nats.c threads: log and set atomics only. */
static void
on_disconnected(natsConnection *nc, void *closure)
{
    struct sc_conn *c = closure;

    (void)nc;
    __atomic_store_n(&c->connected, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->disconnects, 1, __ATOMIC_RELAXED);
    /* nats.c reports our own natsConnection_Close() as a disconnect too: not worth a warning. */
    if (__atomic_load_n(&c->closing, __ATOMIC_ACQUIRE))
        sc_log(SC_LOG_DEBUG, "nats disconnected (closing)", NULL);
    else
        sc_log(SC_LOG_WARN, "nats disconnected", NULL);
}

static void
on_reconnected(natsConnection *nc, void *closure)
{
    struct sc_conn *c = closure;
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    __atomic_store_n(&c->connected, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->reconnects, 1, __ATOMIC_RELAXED);
    sc_log(SC_LOG_INFO, "nats reconnected", "url", url, NULL);
}

static void
on_connected(natsConnection *nc, void *closure)
{
    struct sc_conn *c = closure;
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    __atomic_store_n(&c->connected, 1, __ATOMIC_RELAXED);
    sc_log(SC_LOG_INFO, "nats connected", "url", url, NULL);
}

static void
on_closed(natsConnection *nc, void *closure)
{
    struct sc_conn *c = closure;

    (void)nc;
    __atomic_store_n(&c->connected, 0, __ATOMIC_RELAXED);
    sc_log(SC_LOG_INFO, "nats connection closed", NULL);
    /* Last touch of c: sc_conn_free() waits for this before c is freed. */
    __atomic_store_n(&c->closed, 1, __ATOMIC_RELEASE);
}

static void
on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    const char *subj = sub ? natsSubscription_GetSubject(sub) : "";
    const char *detail = "";

    (void)closure;
    /* A permissions violation names its subject only in the server's text (nats.c keeps it as the last error). */
    if (err == NATS_NOT_PERMITTED)
        natsConnection_GetLastError(nc, &detail);
    sc_log(SC_LOG_WARN, "nats async error", "error", natsStatus_GetText(err), "subject", subj,
           "detail", detail ? detail : "", NULL);
}


#define CHECK(call)                                                                                \
    do {                                                                                           \
        if ((ns = (call)) != NATS_OK) {                                                            \
            what = #call;                                                                          \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/*
 * Sets opts from cfg's nats.* settings: servers (the comma-separated
 * nats.url), name, credentials and TLS. Returns SC_OK, SC_EINVAL (no URL)
 * or SC_EIO, with err set.
 */
static sc_status
set_identity(natsOptions *opts, const struct config *cfg, char *err, size_t errlen)
{
    natsStatus ns = NATS_OK;
    const char *what = "";
    char *urls = sc_xstrdup(cfg->nats_url), *save = NULL, *tok;
    const char *servers[SERVERS_MAX];
    int nservers = 0;
    sc_status s = SC_EIO;

    for (tok = strtok_r(urls, ",", &save); tok && nservers < SERVERS_MAX;
         tok = strtok_r(NULL, ",", &save)) {
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
    /* nats.c's own inboxes (its request and JetStream replies) get the same private prefix. */
    CHECK(natsOptions_SetCustomInboxPrefix(opts, cfg->nats_inbox_prefix));
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
    s = SC_OK;

done:
    if (s == SC_EIO)
        snprintf(err, errlen, "nats: %s: %s", what, natsStatus_GetText(ns));
    free(urls);
    return s;
}

/* Sets opts's reconnect policy, buffers, callbacks and the loop. Returns SC_OK or SC_EIO with err set. */
static sc_status
set_behaviour(natsOptions *opts, struct sc_conn *c, char *err, size_t errlen)
{
    natsStatus ns = NATS_OK;
    const char *what = "";
    sc_status s = SC_EIO;

    CHECK(natsOptions_SetMaxReconnect(opts, -1));
    CHECK(natsOptions_SetReconnectWait(opts, c->cfg->nats_reconnect_wait_ms));
    CHECK(natsOptions_SetReconnectJitter(opts, 100, 1000));
    CHECK(natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024));
    CHECK(natsOptions_SetMaxPendingMsgs(opts, 1000000));
    CHECK(natsOptions_SetIOBufSize(opts, IO_BUF_BYTES));
    CHECK(natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, c));
    CHECK(natsOptions_SetDisconnectedCB(opts, on_disconnected, c));
    CHECK(natsOptions_SetReconnectedCB(opts, on_reconnected, c));
    CHECK(natsOptions_SetClosedCB(opts, on_closed, c));
    CHECK(natsOptions_SetErrorHandler(opts, on_async_error, c));
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
    s = SC_OK;

done:
    if (s == SC_EIO)
        snprintf(err, errlen, "nats: %s: %s", what, natsStatus_GetText(ns));
    return s;
}

/* Connects with opts (or starts retrying in the background) and makes the inbox. */
static sc_status
connect_nats(struct sc_conn *c, natsOptions *opts, char *err, size_t errlen)
{
    natsInbox *inbox = NULL;
    const char *nuid;
    natsStatus ns = natsConnection_Connect(&c->nc, opts);
    const char *what = "natsConnection_Connect";
    sc_status s = SC_EIO;

    if (ns == NATS_OK) {
        char url[256] = "";
        natsConnection_GetConnectedUrl(c->nc, url, sizeof(url));
        __atomic_store_n(&c->connected, 1, __ATOMIC_RELAXED);
        sc_log(SC_LOG_INFO, "nats connected", "url", url, NULL);
    } else if (ns == NATS_NOT_YET_CONNECTED) {
        sc_log(SC_LOG_WARN, "nats not reachable yet; retrying in the background", "url",
               c->cfg->nats_url, NULL);
    } else {
        goto done;
    }
    /* natsInbox_Create() says "_INBOX.<nuid>": keep the nuid, put nats.inbox_prefix before it. */
    CHECK(natsInbox_Create(&inbox));
    nuid = strrchr((const char *)inbox, '.');
    snprintf(c->inbox, sizeof(c->inbox), "%s.%s", c->cfg->nats_inbox_prefix,
             nuid ? nuid + 1 : (const char *)inbox);
    s = SC_OK;

done:
    if (s == SC_EIO)
        snprintf(err, errlen, "nats: %s: %s", what, natsStatus_GetText(ns));
    natsInbox_Destroy(inbox);
    return s;
}

static bool under(const char *subject, const char *prefix);

/*
 * nats.inbox_prefix must lie apart from the sidecar's own subjects and the
 * retry subjects: an inbox under "dlq.failed" would take the workers'
 * replies in as failures, one under "dlq.retry" would hand its private
 * answers to every worker. SC_EINVAL (err names the key, both values and
 * what is allowed) or SC_OK.
 */
static sc_status
check_inbox_apart(const struct config *cfg, char *err, size_t errlen)
{
    const char *inbox = cfg->nats_inbox_prefix, *prefix = cfg->subjects_prefix;
    char probe[CONFIG_INBOX_PREFIX_MAX + 8];
    const char *clash = NULL;

    if (under(inbox, prefix) || under(prefix, inbox))
        clash = "subjects.prefix";
    snprintf(probe, sizeof(probe), "%s.x.y", inbox);
    for (size_t i = 0; !clash && i < cfg->retry_allowed_count; i++)
        if (codec_subject_match(cfg->retry_allowed_subjects[i], probe, strlen(probe)))
            clash = "retry.allowed_subjects";
    if (!clash)
        return SC_OK;
    snprintf(err, errlen,
             "nats.inbox_prefix: '%s' overlaps %s ('%s'): the sidecar's inboxes must lie apart "
             "from its own subjects and the retry subjects (allowed: a prefix outside them, e.g. "
             "_INBOX_dlq-sidecar)",
             inbox, clash, !strcmp(clash, "subjects.prefix") ? prefix : "a retry pattern");
    return SC_EINVAL;
}

sc_status
sc_conn_new(struct event_base *base, const struct config *cfg, size_t ring_cap,
            struct sc_conn **out, char *err, size_t errlen)
{
    struct sc_conn *c;
    natsOptions *opts = NULL;
    sc_status s = SC_EIO;

    *out = NULL;
    if ((s = check_inbox_apart(cfg, err, errlen)))
        return s;
    s = SC_EIO;
    c = sc_xcalloc(1, sizeof(*c));
    c->cfg = cfg;
    c->base = base;
    sc_list_init(&c->subs);
    if (handoff_init(c, ring_cap)) {
        snprintf(err, errlen, "libevent: cannot create the wake event");
        s = SC_ENOMEM;
        goto done;
    }
    if (natsOptions_Create(&opts) != NATS_OK) {
        snprintf(err, errlen, "nats: natsOptions_Create failed");
        goto done;
    }
    if ((s = set_identity(opts, cfg, err, errlen)) || (s = set_behaviour(opts, c, err, errlen)) ||
        (s = connect_nats(c, opts, err, errlen)) || (s = barrier_open(c, err, errlen)))
        goto done;
    *out = c;
    c = NULL;

done:
    natsOptions_Destroy(opts);
    sc_conn_free(c);
    return s;
}

/* Waits until deadline (sc_now_mono_ms()) for *flag to be set by one of nats.c's threads; true when it was. */
static bool
wait_flag(volatile int *flag, int64_t deadline)
{
    while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
        struct timespec ts = {0, 1000000};
        if (sc_now_mono_ms() >= deadline)
            return false;
        nanosleep(&ts, NULL);
    }
    return true;
}

void
sc_conn_free(struct sc_conn *c)
{
    struct sc_list *it, *tmp;
    size_t stuck = 0;

    if (!c)
        return;
    handoff_close(&c->in); /* step a. of the close (top of the file) */
    if (c->nc) {
        /* One deadline for every wait: many subscriptions must not add up to a hang. */
        int64_t deadline = sc_now_mono_ms() + CALLBACK_WAIT_MS;
        __atomic_store_n(&c->closing, 1, __ATOMIC_RELEASE);
        natsConnection_Close(c->nc); /* step b. */
        /* Step c.: the closed callback runs on a nats.c thread and touches c. */
        if (!wait_flag(&c->closed, deadline)) {
            sc_log(SC_LOG_WARN, "nats: no closed callback in time; the connection is left allocated",
                   NULL);
            stuck++;
        }
        /* So does every subscription's delivery thread until its completion callback ran. */
        SC_LIST_FOREACH(it, &c->subs) {
            struct sc_conn_sub *sub = SC_LIST_ENTRY(it, struct sc_conn_sub, link);
            if (sub->channel || wait_flag(&sub->complete_done, deadline))
                continue;
            sc_log(SC_LOG_WARN,
                   "nats: a subscription's delivery thread did not return in time; it is left "
                   "allocated",
                   "subject", subject_of(sub), "wait_ms",
                   sc_log_int(CALLBACK_WAIT_MS), NULL);
            sub->stuck = true;
            stuck++;
        }
    }
    SC_LIST_FOREACH_SAFE(it, tmp, &c->subs) {
        struct sc_conn_sub *sub = SC_LIST_ENTRY(it, struct sc_conn_sub, link);
        sc_list_remove(&sub->link);
        if (!sub->stuck)
            sub_free(sub);
    }
    natsConnection_Destroy(c->nc); /* nats.c counts references: its threads keep theirs */
    if (stuck)
        return; /* a thread of nats.c may still use the ring and c: left allocated, see above */
    handoff_destroy(&c->in);
    free(c);
}

void
sc_conn_global_init(void)
{
    evthread_use_pthreads(); /* nats.c's delivery threads wake the loop (event_active) */
}

/* ---- subscriptions --------------------------------------------------------------------------- */

static void
sub_free(struct sc_conn_sub *sub)
{
    natsSubscription_Destroy(sub->ns);
    free(sub->slots);
    free(sub->free_slots);
    free(sub);
}

/*
 * Frees the retired subscriptions whose drain is over: the loop took their
 * end marker (so no message of theirs, nor the marker, is left in the
 * ring) and nats.c's completion callback has returned. Loop thread.
 */
static void
reap_retired(struct sc_conn *c)
{
    struct sc_list *it, *tmp;

    SC_LIST_FOREACH_SAFE(it, tmp, &c->subs) {
        struct sc_conn_sub *sub = SC_LIST_ENTRY(it, struct sc_conn_sub, link);
        /* a prepared one waits for sc_conn_free(): on_wake() gives slots back after the batch */
        if (!sub->retire || sub->prep.fn || !sub->ended ||
            !__atomic_load_n(&sub->complete_done, __ATOMIC_ACQUIRE))
            continue;
        sc_list_remove(&sub->link);
        sub_free(sub);
    }
}

sc_status
sc_conn_subscribe(struct sc_conn *c, const char *subject, const char *queue, int max_pending,
                  sc_conn_handler fn, void *ctx, struct sc_conn_sub **out, char *err,
                  size_t errlen)
{
    return sc_conn_subscribe_prepared(c, subject, queue, max_pending, NULL, fn, ctx, out, err,
                                      errlen);
}

sc_status
sc_conn_subscribe_prepared(struct sc_conn *c, const char *subject, const char *queue,
                           int max_pending, const struct sc_conn_prep *prep, sc_conn_handler fn,
                           void *ctx, struct sc_conn_sub **out, char *err, size_t errlen)
{
    struct sc_conn_sub *sub;
    natsStatus ns;

    if (out)
        *out = NULL;
    if (prep && (!prep->fn || !prep->slot_size || !prep->nslots || prep->nslots > 65536)) {
        snprintf(err, errlen, "subscribe %s: bad prep slots", subject);
        return SC_EINVAL;
    }
    reap_retired(c); /* a partition's subscription given up earlier (cluster mode) */
    sub = sc_xcalloc(1, sizeof(*sub));
    sub->conn = c;
    sub->fn = fn;
    sub->ctx = ctx;
    sub->hand = -1;
    if (prep) {
        /* slots whole multiples of 8 bytes, so that every slot stays aligned */
        sub->prep = *prep;
        sub->prep.slot_size = (prep->slot_size + 7) & ~(size_t)7;
        sub->slots = sc_xcalloc(sub->prep.nslots, sub->prep.slot_size);
        sub->free_slots = sc_xcalloc(sub->prep.nslots, sizeof(*sub->free_slots));
        for (size_t i = 0; i < sub->prep.nslots; i++)
            sub->free_slots[i] = (uint32_t)(sub->prep.nslots - 1 - i);
        sub->nfree = sub->prep.nslots;
    }
    if (queue && *queue)
        ns = natsConnection_QueueSubscribe(&sub->ns, c->nc, subject, queue, on_msg, sub);
    else
        ns = natsConnection_Subscribe(&sub->ns, c->nc, subject, on_msg, sub);
    if (ns != NATS_OK) {
        snprintf(err, errlen, "nats: subscribe %s: %s", subject, natsStatus_GetText(ns));
        sub_free(sub); /* nats.c gave up before the server had the SUB: nothing was delivered */
        return SC_EIO;
    }
    /*
     * The delivery thread runs from here: the completion callback (its
     * last touch of sub) is set before anything can close the
     * subscription, so that every way it ends is waited for.
     */
    ns = natsSubscription_SetOnCompleteCB(sub->ns, on_sub_complete, sub);
    if (ns == NATS_OK && max_pending > 0)
        ns = natsSubscription_SetPendingLimits(sub->ns, max_pending, BIG_PENDING_BYTES);
    if (ns != NATS_OK) {
        snprintf(err, errlen, "nats: subscribe %s: %s", subject, natsStatus_GetText(ns));
        /*
         * Its delivery thread may be inside on_msg(): unsubscribed and
         * retired, it is freed once its completion came (reap_retired(),
         * sc_conn_free()), never here.
         */
        natsSubscription_Unsubscribe(sub->ns);
        sub->retire = true;
        sc_list_push_back(&c->subs, &sub->link);
        return SC_EIO;
    }
    sc_list_push_back(&c->subs, &sub->link);
    if (out)
        *out = sub;
    return SC_OK;
}

void *
sc_conn_prepared(struct sc_conn *c)
{
    return c->prepared;
}

sc_status
sc_conn_channel_open(struct sc_conn *c, sc_conn_handler fn, void *ctx, struct sc_conn_sub **out)
{
    struct sc_conn_sub *sub = sc_xcalloc(1, sizeof(*sub));

    sub->conn = c;
    sub->hand = -1;
    sub->fn = fn;
    sub->ctx = ctx;
    sub->channel = true;
    sc_list_push_back(&c->subs, &sub->link);
    *out = sub;
    return SC_OK;
}

bool
sc_conn_deliver(struct sc_conn_sub *s, natsMsg *msg)
{
    if (!handoff_push(&s->conn->in, msg, s))
        return false;
    __atomic_add_fetch(&s->delivered, 1, __ATOMIC_RELAXED);
    return true;
}

void
sc_conn_channel_close(struct sc_conn_sub *s)
{
    struct handoff *h = &s->conn->in;

    pthread_mutex_lock(&h->mu);
    s->chan_closed = 1;
    pthread_cond_broadcast(&h->notfull);
    pthread_mutex_unlock(&h->mu);
}

natsConnection *
sc_conn_nats(struct sc_conn *c)
{
    return c ? c->nc : NULL;
}

void
sc_conn_sub_drain(struct sc_conn_sub *s, int64_t timeout_ms, sc_conn_drained_fn done, void *ctx)
{
    natsStatus ns;

    if (!s || s->drain != SC_CONN_DRAIN_NONE)
        return;
    s->drained = done;
    s->drained_ctx = ctx;
    if (!natsSubscription_IsValid(s->ns)) {
        /* Closed already: nothing is left to take (its completion callback came or comes anyway). */
        sc_log(SC_LOG_WARN, "nats: cannot drain the subscription: it is closed", "subject",
               subject_of(s), NULL);
        s->drain = SC_CONN_DRAIN_DONE;
        return;
    }
    s->drain = SC_CONN_DRAIN_RUNNING;
    ns = natsSubscription_DrainTimeout(s->ns, timeout_ms);
    if (ns != NATS_OK) {
        sc_log(SC_LOG_WARN, "nats: drain refused; messages still buffered will be counted as dropped",
               "subject", natsSubscription_GetSubject(s->ns), "error", natsStatus_GetText(ns), NULL);
        s->drain = SC_CONN_DRAIN_DONE;
    }
}

void
sc_conn_sub_retire(struct sc_conn_sub *s, int64_t timeout_ms)
{
    if (!s)
        return;
    s->retire = true;
    sc_conn_sub_drain(s, timeout_ms, NULL, NULL);
}

sc_conn_drain_state
sc_conn_sub_drain_state(const struct sc_conn_sub *s)
{
    return s ? s->drain : SC_CONN_DRAIN_NONE;
}

void
sc_conn_sub_tally(struct sc_conn_sub *s, uint64_t *arrived, uint64_t *taken)
{
    int pending = 0;
    int64_t delivered = 0;

    *arrived = *taken = 0;
    if (!s)
        return;
    /*
     * The loop no longer runs, so nothing new arrives: pending + delivered,
     * read under the subscription's lock, is every message nats.c received.
     * Once a drain completed nats.c closed the subscription; then every
     * message went through on_msg(), which counted it.
     */
    if (natsSubscription_GetStats(s->ns, &pending, NULL, NULL, NULL, &delivered, NULL) == NATS_OK)
        *arrived = (uint64_t)pending + (uint64_t)delivered;
    else
        *arrived = __atomic_load_n(&s->delivered, __ATOMIC_ACQUIRE);
    *taken = s->taken;
}

int64_t
sc_conn_sub_dropped(struct sc_conn_sub *s)
{
    int64_t slow = 0;

    if (!s || natsSubscription_GetDropped(s->ns, &slow) != NATS_OK)
        return 0;
    return slow;
}

/*
 * The barrier: a message to this connection's own "<inbox>.barrier" that
 * the server hands back in order. Once it is back, the server has read
 * every byte published before it. This matters at exit: nats.c closes its
 * socket with SO_LINGER 0 (a reset), which throws away whatever still sits
 * in the kernel's send buffer, so nats.c's own empty buffer is not enough.
 */
static void
on_barrier(void *ctx, natsMsg *msg)
{
    struct sc_conn *c = ctx;
    uint64_t seq = strtoull(natsMsg_GetData(msg) ? natsMsg_GetData(msg) : "0", NULL, 10);

    if (seq > c->barrier_seen)
        c->barrier_seen = seq;
}

/* Subscribes the barrier subject (after the inbox exists). */
static sc_status
barrier_open(struct sc_conn *c, char *err, size_t errlen)
{
    char subj[INBOX_MAX + 16];

    snprintf(subj, sizeof(subj), "%s.barrier", c->inbox);
    return sc_conn_subscribe(c, subj, NULL, 0, on_barrier, c, NULL, err, errlen);
}

bool
sc_conn_flushed(struct sc_conn *c)
{
    char subj[INBOX_MAX + 16], body[24];
    int n;

    if (!c)
        return true;
    if (natsConnection_Buffered(c->nc) > 0)
        return false;
    /* Disconnected: nothing can reach the server now; nats.c's buffer is all there is. */
    if (!sc_conn_connected(c))
        return true;
    if (c->barrier_seen == c->barrier_sent && c->barrier_sent && c->published == c->published_at_barrier)
        return true;
    if (c->barrier_seen != c->barrier_sent)
        return false; /* one round trip at a time */
    snprintf(subj, sizeof(subj), "%s.barrier", c->inbox);
    n = snprintf(body, sizeof(body), "%llu", (unsigned long long)(c->barrier_sent + 1));
    if (natsConnection_Publish(c->nc, subj, body, n) != NATS_OK)
        return false;
    c->barrier_sent++;
    c->published_at_barrier = c->published;
    return false;
}

/* ---- reading the connection ------------------------------------------------------------------ */

bool
sc_conn_connected(const struct sc_conn *c)
{
    return c && __atomic_load_n(&c->connected, __ATOMIC_RELAXED);
}

uint64_t
sc_conn_epoch(const struct sc_conn *c)
{
    return c ? __atomic_load_n(&c->disconnects, __ATOMIC_RELAXED) : 0;
}

struct sc_conn_stats
sc_conn_get_stats(const struct sc_conn *c)
{
    struct sc_conn_stats st = {0};

    if (!c)
        return st;
    st.connected = sc_conn_connected(c);
    st.reconnects = __atomic_load_n(&c->reconnects, __ATOMIC_RELAXED);
    st.disconnects = __atomic_load_n(&c->disconnects, __ATOMIC_RELAXED);
    st.published = c->published;
    st.publish_errors = c->publish_errors;
    return st;
}

const char *
sc_conn_inbox(const struct sc_conn *c)
{
    return c ? c->inbox : "";
}

int64_t
sc_conn_max_payload(struct sc_conn *c)
{
    uint64_t epoch;
    int64_t v;

    if (!c)
        return 0;
    /*
     * Asked for every failure taken in: nats.c's getter takes the connection's
     * lock, which its reader and flusher threads hold while they work, so the
     * value is kept until the connection is next lost (a reconnect may reach a
     * server with another max_payload; on_disconnected() counts the loss).
     */
    epoch = __atomic_load_n(&c->disconnects, __ATOMIC_ACQUIRE);
    if (c->max_payload > 0 && c->mp_epoch == epoch)
        return c->max_payload;
    v = natsConnection_GetMaxPayload(c->nc);
    c->max_payload = 0;
    if (v > 0 && __atomic_load_n(&c->connected, __ATOMIC_ACQUIRE) &&
        __atomic_load_n(&c->disconnects, __ATOMIC_ACQUIRE) == epoch) {
        c->max_payload = v;
        c->mp_epoch = epoch;
    }
    return v;
}

bool
sc_conn_subscribed(const struct sc_conn *c)
{
    struct sc_list *it;

    if (!c || sc_list_empty(&c->subs))
        return false;
    SC_LIST_FOREACH(it, &c->subs) {
        const struct sc_conn_sub *sub = SC_LIST_ENTRY(it, struct sc_conn_sub, link);
        if (!sub->channel && !sub->retire && !natsSubscription_IsValid(sub->ns))
            return false; /* a retired one is closed on purpose */
    }
    return true;
}

/* ---- publishing ------------------------------------------------------------------------------ */

/* The longest header value published; longer ones are cut here (on both paths of sc_conn_publish()). */
#define HEADER_VALUE_MAX 4199

/*
 * A header value with control characters replaced by spaces (no CR/LF can
 * reach the wire): v itself when it has none and fits buf (the usual case,
 * no copy), else its copy in buf.
 */
static const char *
header_safe(const char *v, char *buf, size_t buflen)
{
    size_t i = 0;

    while (v[i] && (unsigned char)v[i] >= 0x20 && v[i] != 0x7f)
        i++;
    if (!v[i] && i + 1 < buflen)
        return v;
    for (i = 0; v[i] && i + 1 < buflen; i++)
        buf[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? ' ' : v[i];
    buf[i] = '\0';
    return buf;
}

/*
 * A header name of len bytes as nats.c writes it: printable ASCII but space
 * and ':', not empty. Eight bytes at a time as ctl_free() does.
 */
static bool
header_name_ok(const char *n, size_t len)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t k = 0;

    if (!len)
        return false;
    for (; len - k >= 8; k += 8) {
        uint64_t w, d, q;
        memcpy(&w, n + k, 8);
        d = w ^ (ones * 0x7f);
        q = w ^ (ones * ':');
        if ((((w - ones * 0x21) & ~w) | ((d - ones) & ~d) | ((q - ones) & ~q) | w) & highs)
            return false;
    }
    for (; k < len; k++)
        if ((unsigned char)n[k] <= 0x20 || (unsigned char)n[k] >= 0x7f || n[k] == ':')
            return false;
    return true;
}

/*
 * ctl_free() is how many of the len bytes at s, from the first, are not
 * control characters (below 0x20, or 0x7f): eight at a time while it can
 * (the "has a byte less than n" and "has a zero byte" word tests, exact as
 * yes/no answers). len when there is none, the usual case.
 */
static size_t
ctl_free(const char *s, size_t len)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t k = 0;

    while (len - k >= 8) {
        uint64_t w, d;
        memcpy(&w, s + k, 8);
        d = w ^ (ones * 0x7f);
        if ((((w - ones * 0x20) & ~w) | ((d - ones) & ~d)) & highs)
            break;
        k += 8;
    }
    while (k < len && (unsigned char)s[k] >= 0x20 && s[k] != 0x7f)
        k++;
    return k;
}

/*
 * header_block() writes the header pairs (as sc_conn_publish() takes them,
 * at least one pair) into out (size bytes) the way nats.c 3.4.1 puts
 * headers on the wire, "name: value\r\n" each, but without the last pair's
 * ": value\r\n". sc_conn_publish() hands that text to natsMsgHeader_Add()
 * as one key with the last value: nats.c writes a key as it is (it only
 * turns CR and LF in values into spaces, msg.c natsMsgHeader_encode()), so
 * the bytes on the wire are the same as with one natsMsgHeader_Add() per
 * pair, and nats.c keeps one map entry instead of eight (a malloc, two
 * strdup() and a hash insert each, encoded, then freed on its collector
 * thread: about 1.6k instructions a pair). Values lose their control
 * characters as header_safe() makes them. Returns the length, or 0 when a
 * name is not header_name_ok() or the text does not fit: the caller then
 * adds the pairs one by one, as before (and also when nats.c refuses the
 * block as a key, should a later nats.c check keys). A nats.c that changed
 * keys on the way out would break the wire format: integration_retry's
 * test_headers_on_the_wire reads the retry as raw bytes to catch it.
 */
static size_t
header_block(const char *const *headers, char *out, size_t size)
{
    size_t n = 0;

    for (size_t i = 0; headers[i]; i += 2) {
        const char *name = headers[i], *v = headers[i + 1];
        size_t nl = strlen(name), vl;
        bool last = !headers[i + 2];

        if (!header_name_ok(name, nl) || n + nl + 1 > size)
            return 0;
        memcpy(out + n, name, nl);
        n += nl;
        if (last)
            break;
        if (n + 2 > size)
            return 0;
        out[n++] = ':';
        out[n++] = ' ';
        vl = strlen(v);
        if (vl > HEADER_VALUE_MAX)
            vl = HEADER_VALUE_MAX; /* cut as header_safe() cuts on the pair-by-pair path */
        if (n + vl + 3 > size)
            return 0;
        memcpy(out + n, v, vl);
        if (ctl_free(v, vl) < vl)
            for (size_t k = 0; k < vl; k++)
                if ((unsigned char)v[k] < 0x20 || v[k] == 0x7f)
                    out[n + k] = ' ';
        n += vl;
        out[n++] = '\r';
        out[n++] = '\n';
    }
    out[n] = '\0';
    return n;
}

sc_status
sc_conn_publish(struct sc_conn *c, const char *subject, const char *reply, const void *body,
                size_t len, const char *const *headers)
{
    natsMsg *m = NULL;
    natsStatus ns;
    char val[HEADER_VALUE_MAX + 1]; /* task ids (<= 1024 bytes) and subjects (<= 4000) pass whole */
    char block[8192]; /* a retry's headers (header_block()); longer ones go pair by pair */

    if (!c)
        return SC_EIO;
    if (len > INT32_MAX)
        return SC_ETOOBIG;
    if (!headers) {
        ns = reply ? natsConnection_PublishRequest(c->nc, subject, reply, body, (int)len)
                   : natsConnection_Publish(c->nc, subject, body, (int)len);
    } else {
        size_t last = 0;
        while (headers[last] && headers[last + 2])
            last += 2;
        bool whole = headers[0] && header_block(headers, block, sizeof(block)) > 0;
        ns = natsMsg_Create(&m, subject, reply, body, (int)len);
        if (ns == NATS_OK && whole &&
            natsMsgHeader_Add(m, block, header_safe(headers[last + 1], val, sizeof(val))) != NATS_OK) {
            /* a nats.c that checks its keys: a fresh message, pair by pair */
            natsMsg_Destroy(m);
            m = NULL;
            whole = false;
            ns = natsMsg_Create(&m, subject, reply, body, (int)len);
        }
        /*
         * A name nats.c would write as it is but no parser could read back (a
         * bare LF, a control byte: an advisory's original kept them, and a
         * worker reading headers line by line would see a header of the
         * sender's choice) is left out.
         */
        for (size_t i = 0; ns == NATS_OK && !whole && headers[i]; i += 2)
            if (header_name_ok(headers[i], strlen(headers[i])))
                ns = natsMsgHeader_Add(m, headers[i], header_safe(headers[i + 1], val, sizeof(val)));
        if (ns == NATS_OK)
            ns = natsConnection_PublishMsg(c->nc, m);
        natsMsg_Destroy(m);
    }
    if (ns != NATS_OK) {
        c->publish_errors++;
        sc_log(SC_LOG_DEBUG, "publish failed", "subject", subject, "error", natsStatus_GetText(ns), NULL);
        return ns == NATS_MAX_PAYLOAD ? SC_ETOOBIG : SC_EIO;
    }
    c->published++;
    return SC_OK;
}

/* under() tells whether subject is prefix itself or lies below it ("<prefix>.<more>"). */
static bool
under(const char *subject, const char *prefix)
{
    size_t n = strlen(prefix);

    return strncmp(subject, prefix, n) == 0 && (subject[n] == '.' || subject[n] == '\0');
}

/*
 * member_reply() tells whether reply, under this sidecar's own inbox prefix,
 * has the shape of a member's question: "<prefix>.<nuid>.adm.<more>" (an
 * admin fan-out) or "<prefix>.<nuid>.fwd.<more>" (a forwarded failure).
 */
static bool
member_reply(const char *reply, const char *prefix)
{
    size_t n = strlen(prefix);
    const char *p, *dot;

    if (reply[n] != '.')
        return false; /* the prefix itself */
    p = reply + n + 1;
    dot = strchr(p, '.');
    return dot && dot > p && (strncmp(dot + 1, "adm.", 4) == 0 || strncmp(dot + 1, "fwd.", 4) == 0);
}

bool
sc_conn_reply_ok(const struct sc_conn *c, const char *reply)
{
    const char *prefix;
    size_t len;

    if (!c || !reply || !*reply)
        return false;
    len = strlen(reply);
    if (!codec_subject_valid(reply, len, false) || reply[0] == '$' || under(reply, c->inbox) ||
        under(reply, c->cfg->subjects_prefix))
        return false;
    /*
     * A prefix of the sidecar's own (nats.inbox_prefix, as docs/nats-auth.conf
     * sets it) holds its members' inboxes only: there a reply must be a
     * member's question; any other is one of a member's own inboxes (nats.c's
     * requests, the pull consumer's), which no answer may reach. With the
     * shared "_INBOX" every client's inbox is there too, and no user is kept
     * apart anyway.
     */
    prefix = c->cfg->nats_inbox_prefix;
    if (strcmp(prefix, "_INBOX") != 0 && under(reply, prefix) && !member_reply(reply, prefix))
        return false;
    for (size_t i = 0; i < c->cfg->retry_allowed_count; i++)
        if (codec_subject_match(c->cfg->retry_allowed_subjects[i], reply, len))
            return false;
    return true;
}

void
sc_conn_respond(struct sc_conn *c, natsMsg *req, const char *body, size_t len, int error_code,
                const char *error_message)
{
    sc_conn_respond_to(c, natsMsg_GetReply(req), body, len, error_code, error_message);
}

void
sc_conn_respond_to(struct sc_conn *c, const char *reply, const char *body, size_t len,
                   int error_code, const char *error_message)
{
    const char *hdrs[5] = {NULL};
    char code[16], small[256];

    if (!sc_conn_reply_ok(c, reply))
        return;
    if (error_code) {
        snprintf(code, sizeof(code), "%d", error_code);
        hdrs[0] = CODEC_HDR_SERVICE_ERROR;
        hdrs[1] = error_message ? error_message : "error";
        hdrs[2] = CODEC_HDR_SERVICE_ERROR_CODE;
        hdrs[3] = code;
    }
    if (sc_conn_publish(c, reply, NULL, body, len, error_code ? hdrs : NULL) == SC_ETOOBIG) {
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
        sc_conn_publish(c, reply, NULL, small, (size_t)n, hdrs);
    }
}
