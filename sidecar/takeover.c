/* takeover.c - the cluster hooks (takeover.h): a partition gained is claimed from the store and served, one lost is forgotten at once, one asked for is quiesced and given back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "daemon.h"
#include "forward.h"
#include "handback.h"
#include "ingest.h"
#include "mirror.h"
#include "serving.h"
#include "takeover.h"

#define RELEASE_POLL_MS 100
#define RELEASE_EXTRA_MS 2000 /* past retry.timeout_ms: a release stops waiting for attempts in flight (never for writes) */

typedef enum {
    P_NONE = 0,  /* not this member's */
    P_CLAIMING,  /* the lease is held; the store fences it and loads its tasks */
    P_SERVING,   /* claimed: failures taken, tasks dispatched while the lease is valid */
    P_RELEASING, /* asked back: nothing new, waiting for in-flight attempts and writes */
    P_SUSPENDED, /* the hold ran out, the lease may still be ours: nothing dispatched, tasks kept */
} part_state;

struct sc_takeover {
    uint32_t partitions;
    unsigned char *state;       /* part_state per partition */
    int64_t *release_deadline;  /* mono ms, while releasing */
    struct event *poll;
    bool poll_armed;
    uint64_t claimed, released, lost;
};

static struct sc_takeover *
tk(const struct sc_daemon *d)
{
    return d->takeover;
}

/* Forgets partition p here: no more writes, its tasks dropped, not served. */
static void
forget(struct sc_daemon *d, uint32_t p)
{
    struct sc_takeover *t = tk(d);
    size_t n;

    sc_ingest_unserve(d, p);
    sc_handback_keep(d, p); /* replies to its attempts (in flight, or applied, unstored) go to its next owner */
    sc_mirror_release(d, p);
    n = dlq_machine_forget_partition(&d->m, p, t->partitions);
    t->state[p] = P_NONE;
    sc_serving_mark(d, p, SC_SERVING_NONE);
    sc_log(SC_LOG_INFO, "cluster: partition forgotten here", "partition", sc_log_int(p), "tasks",
           sc_log_int((int64_t)n), NULL);
}

/* The store's claim of p is over (mirror.h). */
static void
on_claimed(void *ctx, unsigned partition, bool ok)
{
    struct sc_daemon *d = ctx;
    struct sc_takeover *t = tk(d);
    char err[256];

    if (partition >= t->partitions || !ok)
        return; /* a failed claim is tried again by the store */
    if (t->state[partition] != P_CLAIMING) {
        /* Lost (or given back) while the claim ran: what it loaded is not this member's. */
        dlq_machine_forget_partition(&d->m, partition, t->partitions);
        sc_mirror_release(d, partition);
        return;
    }
    t->state[partition] = P_SERVING;
    sc_serving_mark(d, partition, SC_SERVING_ON);
    t->claimed++;
    if (sc_ingest_serve(d, partition, err, sizeof(err)))
        sc_log(SC_LOG_ERROR, "cluster: cannot serve a partition's forwarded failures", "partition",
               sc_log_int(partition), "error", err, NULL);
    sc_log(SC_LOG_INFO, "cluster: partition served here", "partition", sc_log_int(partition),
           "tasks_total", sc_log_int((int64_t)dlq_queue_active(&d->m.q)), NULL);
}

static void
on_gained(void *ctx, uint32_t p, uint64_t lease_revision)
{
    struct sc_daemon *d = ctx;
    struct sc_takeover *t = tk(d);
    sc_status s;

    (void)lease_revision; /* the store's fence is its own revision: docs/cluster.md */
    if (p >= t->partitions || t->state[p] == P_CLAIMING || t->state[p] == P_SERVING)
        return;
    t->state[p] = P_CLAIMING;
    if ((s = sc_mirror_claim(d, p, on_claimed, d)))
        sc_log(SC_LOG_ERROR, "cluster: the store cannot claim a partition", "partition",
               sc_log_int(p), "error", sc_status_str(s), NULL);
}

static void
on_lost(void *ctx, uint32_t p)
{
    struct sc_daemon *d = ctx;
    struct sc_takeover *t = tk(d);

    if (p >= t->partitions || t->state[p] == P_NONE)
        return;
    t->lost++;
    if (t->state[p] == P_CLAIMING) {
        t->state[p] = P_NONE;
        sc_mirror_release(d, p); /* the claim is stale now: it puts no fence, loads nothing */
        return;
    }
    forget(d, p);
}

/*
 * p's hold ran out (cluster.h, suspended()). Served: it stops at once
 * (sc_serving() is false without a valid lease anyway; the mark keeps it
 * so), its forwarded failures wait in the stream, but its tasks, their
 * unwritten changes (the fence still ours: they land unless another member
 * claimed p, then the store refuses them) and its held acks stay.
 * Replies to its attempts meanwhile are handed back (handback.c: the lease
 * is not valid) to whoever serves p next: this member once resumed, which
 * applies them as their owner. A claim under way or a release is simply
 * lost: nothing of it is kept. Who holds each task meanwhile: the store
 * (what landed) and this member's memory, until resumed() or lost().
 */
static void
on_suspended(void *ctx, uint32_t p)
{
    struct sc_daemon *d = ctx;
    struct sc_takeover *t = tk(d);

    if (p >= t->partitions || t->state[p] == P_NONE || t->state[p] == P_SUSPENDED)
        return;
    if (t->state[p] != P_SERVING) {
        on_lost(ctx, p);
        return;
    }
    t->state[p] = P_SUSPENDED;
    sc_ingest_unserve(d, p);
    sc_serving_mark(d, p, SC_SERVING_HELD);
    sc_log(SC_LOG_INFO, "cluster: partition suspended here: nothing dispatched until its lease is resumed",
           "partition", sc_log_int(p), NULL);
}

/*
 * The lease of a suspended p was renewed at the revision it had (cluster.h,
 * resumed()): nobody else held p meanwhile, so what this member holds is
 * still the newest state: served again at once, without a new claim (the
 * fence is ours). A p that is not suspended here is claimed as gained.
 */
static void
on_resumed(void *ctx, uint32_t p, uint64_t lease_revision)
{
    struct sc_daemon *d = ctx;
    struct sc_takeover *t = tk(d);
    char err[256];

    if (p >= t->partitions)
        return;
    if (t->state[p] != P_SUSPENDED) {
        on_gained(ctx, p, lease_revision);
        return;
    }
    t->state[p] = P_SERVING;
    sc_serving_mark(d, p, SC_SERVING_ON);
    if (sc_ingest_serve(d, p, err, sizeof(err)))
        sc_log(SC_LOG_ERROR, "cluster: cannot serve a partition's forwarded failures", "partition",
               sc_log_int(p), "error", err, NULL);
    sc_log(SC_LOG_INFO, "cluster: partition resumed here", "partition", sc_log_int(p), NULL);
}

/*
 * Whether releasing partition p may end now: its writes are all stored
 * (waited for as long as it takes: the lease is renewed meanwhile, and the
 * next owner must load the last state), and its attempts in flight got
 * their outcome or retry.timeout_ms (+2 s) passed (an attempt cut off goes
 * out again from the next owner with the same Nats-Msg-Id).
 */
static bool
release_done(struct sc_daemon *d, uint32_t p, int64_t now)
{
    struct sc_takeover *t = tk(d);

    if (sc_mirror_partition_pending(d, p, t->partitions) > 0)
        return false;
    return now >= t->release_deadline[p] ||
           dlq_machine_partition_in_flight(&d->m, p, t->partitions) == 0;
}

static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_takeover *t = tk(d);
    int64_t now = sc_now_mono_ms();
    bool more = false;
    struct timeval tv = {0, RELEASE_POLL_MS * 1000};

    (void)fd;
    (void)what;
    t->poll_armed = false;
    for (uint32_t p = 0; p < t->partitions; p++) {
        if (t->state[p] != P_RELEASING)
            continue;
        if (!release_done(d, p, now)) {
            more = true;
            continue;
        }
        forget(d, p);
        t->released++;
        sc_cluster_released(d, p);
    }
    if (more) {
        evtimer_add(t->poll, &tv);
        t->poll_armed = true;
    }
}

/*
 * Another member wants p. Never answered from inside this hook (the lease
 * layer is planning): the poll answers, at once when nothing is in flight.
 */
static void
on_release_requested(void *ctx, uint32_t p)
{
    struct sc_daemon *d = ctx;
    struct sc_takeover *t = tk(d);
    struct timeval tv = {0, 0};

    if (p >= t->partitions)
        return;
    if (t->state[p] == P_SERVING)
        sc_ingest_unserve(d, p); /* new failures of it wait for the next owner */
    if (t->state[p] == P_SERVING)
        sc_serving_mark(d, p, SC_SERVING_HELD); /* no new failure or attempt; its writes still go */
    /* A claim still running: on_claimed() forgets what it loads (the state is no longer CLAIMING). */
    t->state[p] = P_RELEASING;
    t->release_deadline[p] = sc_now_mono_ms() + d->cfg->retry_timeout_ms + RELEASE_EXTRA_MS;
    if (!t->poll_armed) {
        evtimer_add(t->poll, &tv);
        t->poll_armed = true;
    }
}

sc_status
sc_takeover_check(const struct config *cfg, char *err, size_t errlen)
{
    const char *ingest = cfg->ingest_mode == CONFIG_INGEST_JETSTREAM ? NULL : "ingest.mode: jetstream";
    const char *store = cfg->store_backend == CONFIG_STORE_JETSTREAM ||
                                cfg->store_backend == CONFIG_STORE_OPENSEARCH
                            ? NULL
                            : "store.backend: jetstream or opensearch";

    if (!cfg->cluster_enabled || (!ingest && !store))
        return SC_OK;
    snprintf(err, errlen,
             "cluster.enabled: true needs %s%s%s (failures wait in the stream until their "
             "partition's owner stored them; the members share the tasks through the store)",
             ingest ? ingest : "", ingest && store ? " and " : "", store ? store : "");
    return SC_EINVAL;
}

sc_status
sc_takeover_open(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_takeover *t;
    sc_status s;
    struct sc_cluster_hooks h = {on_gained, on_lost, on_release_requested, d, on_suspended, on_resumed};

    if (!d->cluster)
        return SC_OK;
    if ((s = sc_takeover_check(d->cfg, err, errlen)))
        return s;
    t = sc_xcalloc(1, sizeof(*t));
    d->takeover = t;
    t->partitions = (uint32_t)d->cfg->cluster_partitions;
    t->state = sc_xcalloc(t->partitions, 1);
    t->release_deadline = sc_xcalloc(t->partitions, sizeof(*t->release_deadline));
    t->poll = evtimer_new(d->base, on_poll, d);
    if (!t->poll) {
        snprintf(err, errlen, "libevent: cannot create the takeover timer");
        return SC_EIO;
    }
    sc_serving_open(d);
    sc_cluster_set_hooks(d, &h);
    return SC_OK;
}

void
sc_takeover_close(struct sc_daemon *d)
{
    struct sc_takeover *t = tk(d);

    if (!t)
        return;
    if (t->poll)
        event_free(t->poll);
    free(t->state);
    free(t->release_deadline);
    free(t);
    d->takeover = NULL;
    sc_serving_close(d);
}

void
sc_takeover_json(const struct sc_daemon *d, struct sc_jw *w)
{
    const struct sc_takeover *t = tk(d);
    struct sc_forward_stats fs = sc_forward_get_stats(d);
    struct sc_handback_stats hs = sc_handback_get_stats(d);
    uint64_t n[5] = {0, 0, 0, 0, 0};

    if (!t)
        return;
    for (uint32_t p = 0; p < t->partitions; p++)
        n[t->state[p]]++;
    sc_jw_open(w, "takeover", '{');
    sc_jw_uint(w, "claiming", n[P_CLAIMING]);
    sc_jw_uint(w, "serving", n[P_SERVING]);
    sc_jw_uint(w, "releasing", n[P_RELEASING]);
    sc_jw_uint(w, "claimed", t->claimed);
    sc_jw_uint(w, "released", t->released);
    sc_jw_uint(w, "lost", t->lost);
    sc_jw_uint(w, "forwarded", fs.forwarded);
    sc_jw_uint(w, "forward_acks", fs.relayed_acks);
    sc_jw_uint(w, "forward_naks", fs.naked);
    sc_jw_uint(w, "forwarded_in", fs.served);
    sc_jw_uint(w, "forwarded_refused", fs.refused);
    sc_jw_uint(w, "forward_waiting", fs.waiting);
    sc_jw_uint(w, "replies_handed_back", hs.handed);
    sc_jw_uint(w, "replies_taken_back", hs.applied);
    sc_jw_uint(w, "replies_unclaimed", hs.dropped);
    sc_jw_uint(w, "notes_handed_back", hs.notes);
    sc_jw_uint(w, "tasks_let_go", hs.released);
    sc_jw_close(w, '}');
}
