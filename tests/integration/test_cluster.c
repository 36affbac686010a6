/* test_cluster.c - integration: cluster leases (cluster.enabled) with 3 sidecars on a 3-node nats-server 2.15.3 cluster (R3 bucket): balance, kill -9, a SIGSTOP zombie, scale 1 -> 3 -> 1, a bucket whose TTL differs, and failures flowing through a kill -9 of a sidecar or of a nats-server node. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dlq.h"
#include "harness.h"

#ifdef IT_CLUSTER_OPENSEARCH
/* This build runs only the failover test, on the OpenSearch store: the other tests stay compiled. */
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

#define NS 3             /* sidecars */
#define P 32             /* cluster.partitions (the default) */
#define LEASE_MS 2500
#define PAUSE_MAX_MS 12000 /* a SIGSTOP ends by then: below retry.timeout_ms */
#define POLL_WAIT_MS 300 /* how long one health round waits for the replies */
#define SETTLE_MS (IT_WAIT_MS + 4 * LEASE_MS) /* generous: a loaded 2-core machine */
#define MAX_SAMPLES 400000

/* One "I own p" a sidecar reported: since (its lease's start) and at (when it answered), CLOCK_MONOTONIC ms. */
struct sample {
    int member;
    int p;
    int64_t since, at;
};

struct world {
    char dir[IT_PATH_MAX];
    struct it_cluster cl;
    struct it_daemon sc[NS];
    natsConnection *nc;
    bool passed;
    struct sample *samples;
    size_t nsamples;
    /* the last health round */
    bool seen[NS];
    int owned[NS];
    int owner_of[P]; /* -1 none; -2 reported by two */
    int64_t until_of[P]; /* the owner's lease valid until (CLOCK_MONOTONIC ms); 0 none */
    json_t *last[NS];
    bool killed[NS]; /* kill -9 on purpose: its exit status is not checked */
    const char *flag, *flag2; /* more flags for the sidecars started from now on (NULL: none; flag2 only after flag) */
    int seq;          /* this world's number in the process (its OpenSearch index) */
    bool store_paused; /* pause_store() stopped it: world_free() resumes it */
};

static struct world *
world_new(const char *name, size_t nodes)
{
    struct world *w = calloc(1, sizeof(*w));
    const char *tmp = getenv("TMPDIR");
    static int worlds;

    assert_non_null(w);
    w->samples = calloc(MAX_SAMPLES, sizeof(*w->samples));
    assert_non_null(w->samples);
    w->seq = worlds++;
    snprintf(w->dir, sizeof(w->dir), "%s/dlq-it-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    assert_non_null(mkdtemp(w->dir));
    for (size_t i = 0; i < NS; i++)
        w->sc[i].exit_status = -1;
    IT_CHECK(it_cluster_start(&w->cl, w->dir, nodes) == 0, "a %zu-node cluster starts", nodes);
    w->nc = it_connect(w->cl.urls, "it-cluster-client"); /* every node: one may be killed */
    assert_non_null(w->nc);
    return w;
}

/*
 * Stops every sidecar with SIGTERM and checks that each exited 0 (a clean
 * stop: the leases given back, and no sanitizer report, which would change
 * the status), except those killed on purpose.
 */
static void
stop_all(struct world *w)
{
    for (int i = 0; i < NS; i++) {
        if (w->sc[i].pid <= 0 && w->sc[i].exit_status < 0)
            continue;
        int st = it_daemon_stop(&w->sc[i]);
        IT_CHECK(w->killed[i] || st == 0, "s%d exits 0 at SIGTERM, got %d", i, st);
    }
}

static int pause_store(struct world *w, bool stop);

static void
world_free(struct world *w)
{
    if (w->store_paused)
        pause_store(w, false); /* a check failed while the store was paused */
    for (size_t i = 0; i < NS; i++) {
        if (w->sc[i].pid > 0)
            kill(w->sc[i].pid, SIGCONT);
        it_daemon_stop(&w->sc[i]);
        if (!w->passed && w->sc[i].log[0])
            it_print_tail("sidecar log", w->sc[i].log, 40);
        json_decref(w->last[i]);
    }
    natsConnection_Destroy(w->nc);
    it_cluster_stop(&w->cl);
    if (w->passed && !getenv("DLQ_IT_KEEP")) { /* DLQ_IT_KEEP=1: keep the logs of a passing run too */
        char cmd[IT_PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", w->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", w->dir);
    } else
        fprintf(stderr, "kept %s\n", w->dir);
    free(w->samples);
    free(w);
}

/* Whether this is a quick (sanitized) run: DLQ_TEST_QUICK set and not "0". */
static bool
quick_run(void)
{
    const char *q = getenv("DLQ_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* Starts sidecar i (member id s<i>) on the cluster, its log in <dir>/s<i>/, with extra flags. */
static void
start_sidecar(struct world *w, int i, const char *lease)
{
    char sdir[IT_PATH_MAX + 32], id[48];
    bool r3 = w->cl.n >= 3;
#ifdef IT_CLUSTER_OPENSEARCH
    /* test_it_cluster_os: the same members on the OpenSearch store (label opensearch) */
    char os_url[1024], os_index[96];
    snprintf(os_url, sizeof(os_url), "store.opensearch.url=%s", getenv("DLQ_TEST_OPENSEARCH_URL"));
    /* an index per world: the next test must not load this one's tasks */
    snprintf(os_index, sizeof(os_index), "store.opensearch.index=dlq-it-cluster-%d-%d", (int)getpid(),
             w->seq);
    const char *store[] = {"store.backend=opensearch", os_url, os_index};
#else
    const char *store[] = {"store.backend=jetstream",
                           r3 ? "store.jetstream.replicas=3" : "store.jetstream.replicas=1",
                           "log.level=info"};
#endif
    const char *extra[] = {"cluster.enabled=true", lease,
                           r3 ? "cluster.replicas=3" : "cluster.replicas=1", id,
                           "nats.reconnect_wait_ms=100", "log.level=info",
                           /* a worker's answer may take long on a loaded 2-core machine (TSan) */
                           "retry.timeout_ms=15000",
                           /* cluster mode shares the tasks through the store and the stream */
                           store[0], store[1], store[2],
                           "ingest.mode=jetstream", r3 ? "ingest.stream_replicas=3" : "ingest.stream_replicas=1",
                           /* sanitized: the last writes after a node's kill may take long to land */
                           quick_run() ? "shutdown.drain_ms=15000" : "shutdown.drain_ms=5000",
                           w->flag, w->flag2, NULL};

    snprintf(sdir, sizeof(sdir), "%s/s%d", w->dir, i);
    mkdir(sdir, 0755);
    snprintf(id, sizeof(id), "cluster.member_id=s%d", i);
    IT_CHECK(it_daemon_start(&w->sc[i], sdir, w->cl.urls, extra) == 0, "sidecar s%d starts", i);
}

/* Reads one health reply into the round and the samples. */
static void
take_reply(struct world *w, json_t *h)
{
    const char *id = it_json_str(h, "cluster.member_id");
    const json_t *leases = it_json_get(h, "cluster.leases");
    int64_t at = it_json_int(h, "cluster.mono_ms");
    int i;
    size_t k;
    json_t *l;

    if (!id || id[0] != 's' || (i = atoi(id + 1)) < 0 || i >= NS || !json_is_array(leases))
        return;
    w->seen[i] = true;
    json_decref(w->last[i]);
    w->last[i] = json_incref(h);
    json_array_foreach(leases, k, l) {
        int p = (int)it_json_int(l, "partition");
        if (p < 0 || p >= P)
            continue;
        w->owned[i]++;
        w->owner_of[p] = w->owner_of[p] == -1 ? i : -2;
        w->until_of[p] = it_json_int(l, "valid_until_mono_ms");
        if (w->nsamples < MAX_SAMPLES)
            w->samples[w->nsamples++] = (struct sample){
                .member = i, .p = p, .since = it_json_int(l, "since_mono_ms"), .at = at};
    }
}

/*
 * Asks every live sidecar for its own answer to verb (dlq.cluster.admin.<verb>:
 * each member answers for itself; dlq.admin.<verb> is taken by one of them)
 * and puts each member's reply into r[0..max). Returns how many answered;
 * the caller json_decref()s each.
 */
static size_t
member_gather(struct world *w, const char *verb, json_t **r, size_t max)
{
    char subj[64];
    size_t n;

    snprintf(subj, sizeof(subj), "dlq.cluster.admin.%s", verb);
    n = it_gather_json(w->nc, subj, NULL, POLL_WAIT_MS, r, max);
    for (size_t i = 0; i < n; i++) {
        json_t *inner = json_incref(json_object_get(r[i], "reply"));
        json_decref(r[i]);
        r[i] = inner ? inner : json_object();
    }
    return n;
}

/* One health round: every live sidecar's answer. Returns how many answered. */
static size_t
poll(struct world *w)
{
    json_t *r[NS + 4];
    size_t n = member_gather(w, "health", r, NS + 4);

    memset(w->seen, 0, sizeof(w->seen));
    memset(w->owned, 0, sizeof(w->owned));
    for (size_t p = 0; p < P; p++) {
        w->owner_of[p] = -1;
        w->until_of[p] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        take_reply(w, r[i]);
        json_decref(r[i]);
    }
    return n;
}

/* Whether the last round shows the members of mask (bit i: s<i>) owning all P, each within +-1 of P/n, once each. */
static bool
balanced(const struct world *w, unsigned mask)
{
    int n = 0, total = 0;

    for (int i = 0; i < NS; i++)
        n += (mask >> i) & 1;
    for (int i = 0; i < NS; i++) {
        if (!((mask >> i) & 1))
            continue;
        if (!w->seen[i] || w->owned[i] < P / n || w->owned[i] > (P + n - 1) / n)
            return false;
        total += w->owned[i];
    }
    for (int p = 0; p < P; p++)
        if (w->owner_of[p] < 0 || !((mask >> w->owner_of[p]) & 1))
            return false;
    return total == P;
}

/* Whether the last round shows every partition owned by exactly one member of mask (balance aside). */
static bool
all_owned(const struct world *w, unsigned mask)
{
    for (int p = 0; p < P; p++)
        if (w->owner_of[p] < 0 || !((mask >> w->owner_of[p]) & 1))
            return false;
    return true;
}

/* Polls until all_owned(mask) or timeout_ms; returns the ms it took, or -1. */
static int64_t
wait_owned(struct world *w, unsigned mask, int64_t timeout_ms)
{
    int64_t start = sc_now_mono_ms();

    while (sc_now_mono_ms() - start < timeout_ms) {
        poll(w);
        if (all_owned(w, mask))
            return sc_now_mono_ms() - start;
    }
    return -1;
}

/* Polls until balanced(mask) or timeout_ms; returns the ms it took, or -1 (the last round printed). */
static int64_t
wait_balanced(struct world *w, unsigned mask, int64_t timeout_ms)
{
    int64_t start = sc_now_mono_ms();

    while (sc_now_mono_ms() - start < timeout_ms) {
        poll(w);
        if (balanced(w, mask))
            return sc_now_mono_ms() - start;
    }
    for (int i = 0; i < NS; i++)
        fprintf(stderr, "  s%d: seen %d owned %d\n", i, w->seen[i], w->owned[i]);
    return -1;
}

/*
 * The fencing check: from the samples, each ownership episode (member,
 * partition, since) is known to have lasted from since to its last report;
 * two episodes of one partition at different members must never overlap.
 * Returns the overlaps found (each printed).
 */
static size_t
overlaps(const struct world *w)
{
    size_t bad = 0;

    for (int p = 0; p < P; p++) {
        /* The episodes of p: the latest report of each (member, since). */
        enum { MAXE = 4096 };
        static struct sample ep[MAXE];
        size_t ne = 0;
        for (size_t k = 0; k < w->nsamples; k++) {
            const struct sample *s = &w->samples[k];
            size_t e;
            if (s->p != p)
                continue;
            for (e = 0; e < ne; e++)
                if (ep[e].member == s->member && ep[e].since == s->since)
                    break;
            if (e == ne && ne < MAXE)
                ep[ne++] = *s;
            else if (e < ne && s->at > ep[e].at)
                ep[e].at = s->at;
        }
        for (size_t a = 0; a < ne; a++)
            for (size_t b = a + 1; b < ne; b++)
                if (ep[a].member != ep[b].member && ep[a].since <= ep[b].at &&
                    ep[b].since <= ep[a].at) {
                    fprintf(stderr, "OVERLAP partition %d: s%d [%lld, %lld] and s%d [%lld, %lld]\n", p,
                            ep[a].member, (long long)ep[a].since, (long long)ep[a].at, ep[b].member,
                            (long long)ep[b].since, (long long)ep[b].at);
                    bad++;
                }
    }
    return bad;
}

/* 3 sidecars share the 32 partitions 10-11 each; kill -9 of one: the other two own all 32 again. */
static void
test_balance_and_kill(void **state)
{
    struct world *w = world_new("cluster-kill", 3);
    int64_t ms, t0;

    (void)state;
    for (int i = 0; i < NS; i++)
        start_sidecar(w, i, "cluster.lease_ms=2500");
    ms = wait_balanced(w, 7, SETTLE_MS);
    IT_CHECK(ms >= 0, "3 sidecars own the 32 partitions, 10-11 each");
    printf("cluster: 3 sidecars balanced %d/%d/%d after %lld ms from start\n", w->owned[0],
           w->owned[1], w->owned[2], (long long)ms);
    /* Stable: partitions move only when membership changes. */
    int64_t gained = it_json_int(w->last[0], "cluster.partitions_gained") +
                     it_json_int(w->last[1], "cluster.partitions_gained") +
                     it_json_int(w->last[2], "cluster.partitions_gained");
    it_sleep_ms(2 * LEASE_MS);
    poll(w);
    IT_CHECK(balanced(w, 7), "still balanced");
    IT_CHECK(it_json_int(w->last[0], "cluster.partitions_gained") +
                     it_json_int(w->last[1], "cluster.partitions_gained") +
                     it_json_int(w->last[2], "cluster.partitions_gained") ==
                 gained,
             "no partition moved while membership stayed the same");
    IT_CHECK(it_json_int(w->last[0], "cluster.lease_renewals") > 0, "leases are renewed");

    t0 = sc_now_mono_ms();
    kill(w->sc[2].pid, SIGKILL);
    w->killed[2] = true;
    ms = wait_balanced(w, 3, SETTLE_MS);
    IT_CHECK(ms >= 0, "after kill -9 of s2, s0 and s1 own all 32");
    printf("cluster: takeover after kill -9: %lld ms (lease_ms %d); s0 %d, s1 %d\n",
           (long long)(sc_now_mono_ms() - t0), LEASE_MS, w->owned[0], w->owned[1]);
    IT_CHECK(overlaps(w) == 0, "no partition was valid at two sidecars at once (%zu samples)",
             w->nsamples);
    stop_all(w);
    w->passed = true;
    world_free(w);
}

/*
 * s2 stopped (SIGSTOP) for longer than its lease: the others take its
 * partitions; once resumed it reports none of its old ones (it sees that
 * its leases ran out) and gets its share back; no partition is ever
 * reported valid by two sidecars in overlapping intervals.
 */
static void
test_zombie(void **state)
{
    struct world *w = world_new("cluster-zombie", 3);
    int64_t ms, t_stop, t_cont;
    bool answered = false;

    (void)state;
    for (int i = 0; i < NS; i++)
        start_sidecar(w, i, "cluster.lease_ms=2500");
    IT_CHECK(wait_balanced(w, 7, SETTLE_MS) >= 0, "3 sidecars balanced");
    int64_t lost_before = it_json_int(w->last[2], "cluster.partitions_lost");

    t_stop = sc_now_mono_ms();
    kill(w->sc[2].pid, SIGSTOP);
    ms = wait_balanced(w, 3, SETTLE_MS);
    IT_CHECK(ms >= 0, "while s2 is stopped, s0 and s1 own all 32");
    printf("cluster: s2 stopped; its partitions owned by the others after %lld ms (lease_ms %d)\n",
           (long long)ms, LEASE_MS);
    while (sc_now_mono_ms() - t_stop < 2 * LEASE_MS)
        poll(w);
    t_cont = sc_now_mono_ms();
    kill(w->sc[2].pid, SIGCONT);
    /* Its first answers: nothing held from before the stop. */
    for (int64_t end = t_cont + IT_WAIT_MS; !answered && sc_now_mono_ms() < end;) {
        poll(w);
        if (!w->seen[2])
            continue;
        answered = true;
        const json_t *leases = it_json_get(w->last[2], "cluster.leases");
        size_t k;
        json_t *l;
        json_array_foreach(leases, k, l)
            IT_CHECK(it_json_int(l, "since_mono_ms") >= t_cont,
                     "s2 reports partition %lld held since %lld, before it resumed at %lld",
                     (long long)it_json_int(l, "partition"),
                     (long long)it_json_int(l, "since_mono_ms"), (long long)t_cont);
    }
    IT_CHECK(answered, "s2 answers after SIGCONT");
    ms = wait_balanced(w, 7, SETTLE_MS);
    IT_CHECK(ms >= 0, "s2 rejoins and gets its share back");
    printf("cluster: s2 resumed; balanced again after %lld ms\n", (long long)ms);
    IT_CHECK(it_json_int(w->last[2], "cluster.partitions_lost") > lost_before,
             "s2 counted its leases as lost");
    IT_CHECK(overlaps(w) == 0, "no partition was valid at two sidecars at once (%zu samples)",
             w->nsamples);
    stop_all(w);
    w->passed = true;
    world_free(w);
}

/* Polls /readyz on 127.0.0.1:port until it answers 200 or 10 s pass; the last answer's start is in body. */
static int
wait_ready_http(int port, char *body, size_t bodylen)
{
    struct it_http_resp r;
    int code = -1;

    for (int k = 0; k < 50; k++) {
        code = it_http_get(port, "/readyz", &r) == 0 ? r.status : -1;
        snprintf(body, bodylen, "%s", r.body ? r.body : "(no answer)");
        it_http_resp_free(&r);
        if (code == 200)
            break;
        it_sleep_ms(200);
    }
    return code;
}

/*
 * Scale 1 -> 3 -> 1: the newcomers get their share; the leavers give theirs
 * back at SIGTERM. s0 stays ready throughout (/readyz): the partitions'
 * subscriptions it gives up are retired, not "down".
 */
static void
test_scale(void **state)
{
    struct world *w = world_new("cluster-scale", 3);
    int64_t ms, t0;
    char http[64], body[1024];
    int port = it_free_port();

    (void)state;
    snprintf(http, sizeof(http), "http.listen=127.0.0.1:%d", port);
    w->flag = http;
    start_sidecar(w, 0, "cluster.lease_ms=2500");
    w->flag = NULL;
    IT_CHECK(wait_balanced(w, 1, SETTLE_MS) >= 0, "s0 alone owns all 32");
    t0 = sc_now_mono_ms();
    start_sidecar(w, 1, "cluster.lease_ms=2500");
    start_sidecar(w, 2, "cluster.lease_ms=2500");
    ms = wait_balanced(w, 7, SETTLE_MS);
    IT_CHECK(ms >= 0, "1 -> 3: balanced");
    printf("cluster: scale 1 -> 3 balanced after %lld ms\n", (long long)(sc_now_mono_ms() - t0));
    IT_CHECK(it_json_int(w->last[0], "cluster.partitions_released") >= 20,
             "s0 gave back what the newcomers wanted");
    IT_CHECK(wait_ready_http(port, body, sizeof(body)) == 200,
             "s0 is ready after giving partitions back: %s", body);
    t0 = sc_now_mono_ms();
    IT_CHECK(it_daemon_stop(&w->sc[1]) == 0, "s1 stops cleanly");
    IT_CHECK(it_daemon_stop(&w->sc[2]) == 0, "s2 stops cleanly");
    ms = wait_balanced(w, 1, SETTLE_MS);
    IT_CHECK(ms >= 0, "3 -> 1: s0 owns all 32 again");
    printf("cluster: scale 3 -> 1 (SIGTERM, leases given back) s0 owns all after %lld ms "
           "(lease_ms %d)\n", (long long)(sc_now_mono_ms() - t0), LEASE_MS);
    IT_CHECK(wait_ready_http(port, body, sizeof(body)) == 200,
             "s0 is ready after taking them again: %s", body);
    IT_CHECK(overlaps(w) == 0, "no partition was valid at two sidecars at once (%zu samples)",
             w->nsamples);
    stop_all(w);
    w->passed = true;
    world_free(w);
}

/*
 * Joining and leaving do not wait for the renew rounds: with lease_ms
 * 30000 (a round every 10 s) a second member gets its 16 partitions, and
 * after its SIGTERM the first owns all 32 again, each well within one
 * round: the member that asks for more, gives leases back or leaves
 * nudges the others (<prefix>.cluster.nudge), which read the bucket at
 * once (docs/cluster.md, "Joining and leaving"). Before the nudges a join
 * took up to about two rounds (20 s here) and a leave up to one. Forged
 * nudges in between (300 in 3 s) move nothing and cost no lease.
 */
static void
test_join_leave_fast(void **state)
{
    enum { LONG_LEASE_MS = 30000 };
    struct world *w = world_new("cluster-join", 3);
    int64_t t0, join_ms, leave_ms, gained[2], released[2];

    (void)state;
    start_sidecar(w, 0, "cluster.lease_ms=30000");
    IT_CHECK(wait_balanced(w, 1, SETTLE_MS) >= 0, "s0 alone owns all 32");
    t0 = sc_now_mono_ms();
    start_sidecar(w, 1, "cluster.lease_ms=30000");
    IT_CHECK(wait_balanced(w, 3, 2 * LONG_LEASE_MS) >= 0, "s1 joins: 16 each");
    join_ms = sc_now_mono_ms() - t0;
    printf("cluster: lease_ms %d: a second member started, 16 each after %lld ms\n", LONG_LEASE_MS,
           (long long)join_ms);
    IT_CHECK(join_ms < LONG_LEASE_MS / 3, "16 each within a renew round (%d ms): took %lld ms",
             LONG_LEASE_MS / 3, (long long)join_ms);
    /* Forged nudges (any client on a NATS without authorization): extra reads, nothing moves. */
    for (int i = 0; i < 2; i++) {
        gained[i] = it_json_int(w->last[i], "cluster.partitions_gained");
        released[i] = it_json_int(w->last[i], "cluster.partitions_released");
    }
    for (int k = 0; k < 300; k++) {
        IT_CHECK(natsConnection_PublishString(w->nc, "dlq.cluster.nudge", k % 2 ? "s0" : "x") ==
                     NATS_OK, "publish a nudge");
        if (k % 10 == 9)
            it_sleep_ms(100);
    }
    IT_CHECK(wait_balanced(w, 3, SETTLE_MS) >= 0, "16 each after 300 forged nudges");
    for (int i = 0; i < 2; i++) {
        IT_CHECK(it_json_int(w->last[i], "cluster.partitions_gained") == gained[i] &&
                     it_json_int(w->last[i], "cluster.partitions_released") == released[i],
                 "s%d: no partition moved on forged nudges", i);
        IT_CHECK(it_json_int(w->last[i], "cluster.lease_failures") == 0, "s%d lost no lease", i);
    }
    t0 = sc_now_mono_ms();
    IT_CHECK(it_daemon_stop(&w->sc[1]) == 0, "s1 stops cleanly");
    IT_CHECK(wait_balanced(w, 1, 2 * LONG_LEASE_MS) >= 0, "s0 owns all 32 again");
    leave_ms = sc_now_mono_ms() - t0;
    printf("cluster: lease_ms %d: SIGTERM of the second, s0 owns all 32 after %lld ms\n",
           LONG_LEASE_MS, (long long)leave_ms);
    IT_CHECK(leave_ms < LONG_LEASE_MS / 3, "all 32 at s0 within a renew round (%d ms): took %lld ms",
             LONG_LEASE_MS / 3, (long long)leave_ms);
    IT_CHECK(it_json_int(w->last[0], "cluster.lease_failures") == 0, "s0 lost no lease");
    IT_CHECK(overlaps(w) == 0, "no partition was valid at two sidecars at once (%zu samples)",
             w->nsamples);
    stop_all(w);
    w->passed = true;
    world_free(w);
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/*
 * Takeover time over 10 kills: each round kill -9s one sidecar (in turn),
 * waits until the other two own all 32, starts it again (same member id:
 * it waits for its old leases to age out) and waits until 3 are balanced.
 * Prints p50 and max; checks every takeover completes and never overlaps.
 */
static void
test_takeover_repeated(void **state)
{
    enum { KILLS = 10 };
    struct world *w = world_new("cluster-kills", 3);
    int64_t took[KILLS], bal[KILLS];

    (void)state;
    for (int i = 0; i < NS; i++)
        start_sidecar(w, i, "cluster.lease_ms=2500");
    IT_CHECK(wait_balanced(w, 7, SETTLE_MS) >= 0, "3 sidecars balanced");
    for (int k = 0; k < KILLS; k++) {
        int v = k % NS;
        int64_t t0 = sc_now_mono_ms();
        kill(w->sc[v].pid, SIGKILL);
        it_daemon_stop(&w->sc[v]); /* reaps it */
        IT_CHECK(wait_owned(w, 7u & ~(1u << v), SETTLE_MS) >= 0, "kill %d: the other two own all 32", k);
        took[k] = sc_now_mono_ms() - t0;
        IT_CHECK(wait_balanced(w, 7u & ~(1u << v), SETTLE_MS) >= 0, "kill %d: 16 each", k);
        bal[k] = sc_now_mono_ms() - t0;
        start_sidecar(w, v, "cluster.lease_ms=2500");
        IT_CHECK(wait_balanced(w, 7, SETTLE_MS) >= 0, "kill %d: s%d back, 3 balanced", k, v);
    }
    qsort(took, KILLS, sizeof(took[0]), cmp_i64);
    qsort(bal, KILLS, sizeof(bal[0]), cmp_i64);
    printf("cluster: takeover after kill -9 over %d kills (lease_ms %d, renew every %d ms; a health "
           "round takes up to %d ms): all 32 owned again p50 %lld ms, max %lld ms, min %lld ms; "
           "balanced 16/16 p50 %lld ms, max %lld ms\n",
           KILLS, LEASE_MS, LEASE_MS / 3, POLL_WAIT_MS, (long long)took[KILLS / 2],
           (long long)took[KILLS - 1], (long long)took[0], (long long)bal[KILLS / 2],
           (long long)bal[KILLS - 1]);
    IT_CHECK(overlaps(w) == 0, "no partition was valid at two sidecars at once (%zu samples)",
             w->nsamples);
    stop_all(w);
    w->passed = true;
    world_free(w);
}

/* An existing bucket whose TTL is not cluster.lease_ms stops start-up with exit 2, naming the key. */
static void
test_ttl_mismatch(void **state)
{
    struct world *w = world_new("cluster-ttl", 1);
    char buf[8192];
    FILE *f;
    size_t n;

    (void)state;
    start_sidecar(w, 0, "cluster.lease_ms=2500");
    IT_CHECK(wait_balanced(w, 1, SETTLE_MS) >= 0, "s0 owns all 32 (the bucket made with TTL 2500)");
    IT_CHECK(it_daemon_stop(&w->sc[0]) == 0, "s0 stops cleanly");
    start_sidecar(w, 1, "cluster.lease_ms=4000");
    for (int64_t end = sc_now_mono_ms() + IT_WAIT_MS; it_daemon_alive(&w->sc[1]) && sc_now_mono_ms() < end;)
        it_sleep_ms(50);
    IT_CHECK(w->sc[1].exit_status == 2, "exit status 2, got %d", w->sc[1].exit_status);
    f = fopen(w->sc[1].log, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    IT_CHECK(strstr(buf, "cluster.lease_ms: 4000 differs from the TTL of the existing bucket "
                         "DLQ_CLUSTER (2500 ms)") != NULL,
             "the log names the key and both values:\n%s", buf);
    /* The tasks bucket's keys were made with 32 partitions: a member with 16 does not join. */
    w->flag = "cluster.partitions=16";
    start_sidecar(w, 2, "cluster.lease_ms=2500");
    for (int64_t end = sc_now_mono_ms() + IT_WAIT_MS; it_daemon_alive(&w->sc[2]) && sc_now_mono_ms() < end;)
        it_sleep_ms(50);
    IT_CHECK(w->sc[2].exit_status == 2, "exit status 2, got %d", w->sc[2].exit_status);
    f = fopen(w->sc[2].log, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    IT_CHECK(strstr(buf, "holds keys made with cluster.partitions 32; this sidecar has 16") != NULL &&
                 !strstr(buf, "partition gained"),
             "the log names the key and both values, and nothing was taken:\n%s", buf);
    w->passed = true;
    world_free(w);
}

/* ---- failures flowing through a kill -9: nothing lost, an attempt seen twice only with its Nats-Msg-Id ---- */

/* What the worker saw: one entry per retry message. */
struct seen_retry {
    int task;      /* t-<task> */
    int attempt;
    char msgid[96];
};

struct worker {
    pthread_mutex_t mu;
    struct seen_retry *seen;
    size_t n, cap;
    unsigned char *done; /* per task: a success was answered */
    int ntasks;
};

/* The worker: fails each task's first attempt, succeeds afterwards (a nats.c thread). */
static void
on_retry(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    struct worker *wk = closure;
    const char *id = NULL, *att = NULL, *msgid = NULL;
    int task = -1, attempt = 0;

    (void)sub;
    natsMsgHeader_Get(m, "Dlq-Task-Id", &id);
    natsMsgHeader_Get(m, "Dlq-Attempt", &att);
    natsMsgHeader_Get(m, "Nats-Msg-Id", &msgid);
    if (id && strncmp(id, "t-", 2) == 0)
        task = atoi(id + 2);
    if (att)
        attempt = atoi(att);
    pthread_mutex_lock(&wk->mu);
    if (task >= 0 && task < wk->ntasks && wk->n < wk->cap) {
        struct seen_retry *r = &wk->seen[wk->n++];
        r->task = task;
        r->attempt = attempt;
        snprintf(r->msgid, sizeof(r->msgid), "%s", msgid ? msgid : "");
        if (attempt >= 2)
            wk->done[task] = 1;
    }
    pthread_mutex_unlock(&wk->mu);
    if (natsMsg_GetReply(m)) {
        const char *body = attempt <= 1 ? "{\"ok\":false,\"error\":\"connection refused\"}"
                                        : "{\"ok\":true}";
        natsConnection_PublishString(nc, natsMsg_GetReply(m), body);
    }
    natsMsg_Destroy(m);
}

static size_t
worker_done(struct worker *wk)
{
    size_t n = 0;

    pthread_mutex_lock(&wk->mu);
    for (int i = 0; i < wk->ntasks; i++)
        n += wk->done[i];
    pthread_mutex_unlock(&wk->mu);
    return n;
}

/* The sum of queue_size over the live sidecars' stats (one gather). */
static int64_t
queued_total(struct world *w)
{
    json_t *r[NS + 4];
    size_t n = member_gather(w, "stats", r, NS + 4);
    int64_t q = 0;

    for (size_t i = 0; i < n; i++) {
        q += it_json_int(r[i], "queue_size");
        json_decref(r[i]);
    }
    return q;
}

/*
 * Publishes a "connection refused" failure of task id (linear policy, retried
 * on retry_subject) into the stream on subject, with the id as Nats-Msg-Id,
 * and checks the stream took it, trying again for IT_WAIT_MS (a stream
 * leader election after a kill).
 */
static void
publish_failure(jsCtx *js, const char *subject, const char *id, const char *retry_subject)
{
    struct it_envelope env;
    struct sc_buf b;
    jsPubOptions po;
    natsStatus s = NATS_ERR;

    it_envelope_init(&env);
    env.task_id = id;
    env.error = "connection refused";
    env.retry_policy = "linear";
    env.retry_subject = retry_subject;
    sc_buf_init(&b, 1 << 20);
    IT_CHECK(it_envelope_pack(&env, &b) == 0, "pack");
    /* A publish whose answer a reconnect lost may be stored: the stream drops the copy. */
    jsPubOptions_Init(&po);
    po.MsgId = id;
    /* A stream leader election after a kill (seen: 5 s of no responders): again. */
    for (int64_t end = sc_now_mono_ms() + IT_WAIT_MS; sc_now_mono_ms() < end;) {
        jsPubAck *pa = NULL;
        s = js_Publish(&pa, js, subject, b.data, (int)b.len, &po, NULL);
        jsPubAck_Destroy(pa);
        if (s == NATS_OK)
            break;
        it_sleep_ms(100);
    }
    IT_CHECK(s == NATS_OK, "publish %s: %s", id, natsStatus_GetText(s));
    sc_buf_destroy(&b);
}


static int
failover_n(void)
{
    const char *e = getenv("DLQ_TEST_FAILOVER_N");
    const char *q = getenv("DLQ_TEST_QUICK");

    if (e && atoi(e) > 0)
        return atoi(e);
    return q && *q && strcmp(q, "0") != 0 ? 1500 : 4000;
}

/* What failover_run() kills mid-run. */
enum victim {
    VICTIM_SIDECAR, /* kill -9 of sidecar s1 */
    VICTIM_SERVER,  /* kill -9 of a nats-server node that sidecars are connected to */
    VICTIM_PAUSE,   /* SIGSTOP of sidecar s1 past its lease (not past retry.timeout_ms), then SIGCONT */
    VICTIM_BLIP,    /* SIGSTOP of sidecar s1 past its holds' local deadline, short of the server's expiry */
};

#define BLIP_TRIES 3 /* blips until one made s1 suspend a partition (a renewal just before the stop may outlast it) */

/*
 * node_of_sidecar() reads sidecar i's log and returns the index in w->cl of
 * the node named by its last "nats connected" or "nats reconnected" line
 * (the node its one connection is on), or -1 when there is none or the URL
 * is of no node. Main thread.
 */
static int
node_of_sidecar(const struct world *w, int i)
{
    FILE *f = fopen(w->sc[i].log, "r");
    char line[4096];
    int node = -1;

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        const char *u;
        if ((!strstr(line, "nats connected") && !strstr(line, "nats reconnected")) ||
            !(u = strstr(line, "url=")))
            continue;
        u += 4 + (u[4] == '"');
        for (size_t k = 0; k < w->cl.n; k++) {
            size_t l = strlen(w->cl.node[k].url);
            if (strncmp(u, w->cl.node[k].url, l) == 0 && (u[l] < '0' || u[l] > '9'))
                node = (int)k;
        }
    }
    fclose(f);
    return node;
}

/* The R3 streams of cluster mode: the failures, the tasks bucket (not on OpenSearch), the lease bucket. */
#ifdef IT_CLUSTER_OPENSEARCH
static const char *const cluster_streams[] = {"DLQ_FAILED", "KV_DLQ_CLUSTER"};
#else
static const char *const cluster_streams[] = {"DLQ_FAILED", "KV_DLQ_TASKS", "KV_DLQ_CLUSTER"};
#endif

/*
 * stream_peer() asks js for stream's info and tells whether server name
 * ("n0", ...) leads it (returns 2), is a replica that is current, online and
 * without lag (1), or neither, or the info could not be had (0). Any thread.
 */
static int
stream_peer(jsCtx *js, const char *stream, const char *name)
{
    jsStreamInfo *si = NULL;
    int r = 0;

    if (js_GetStreamInfo(&si, js, stream, NULL, NULL) != NATS_OK || !si->Cluster)
        goto done;
    if (si->Cluster->Leader && strcmp(si->Cluster->Leader, name) == 0) {
        r = 2;
        goto done;
    }
    for (int k = 0; k < si->Cluster->ReplicasLen; k++) {
        const jsPeerInfo *pi = si->Cluster->Replicas[k];
        if (pi->Name && strcmp(pi->Name, name) == 0 && pi->Current && !pi->Offline && pi->Lag == 0)
            r = 1;
    }
done:
    jsStreamInfo_Destroy(si);
    return r;
}

/*
 * lease_leader_to() asks the lease bucket's stream KV_DLQ_CLUSTER to move
 * its leader to node k (a stepdown with a preferred placement) unless it is
 * there, and waits up to 10 s for it. True when n<k> leads it. Main thread.
 */
static bool
lease_leader_to(struct world *w, jsCtx *js, int k)
{
    char name[24], body[96];
    natsMsg *reply = NULL;
    int64_t t0 = sc_now_mono_ms();

    snprintf(name, sizeof(name), "n%d", k);
    if (stream_peer(js, "KV_DLQ_CLUSTER", name) == 2)
        return true;
    snprintf(body, sizeof(body), "{\"placement\":{\"preferred\":\"%s\"}}", name);
    if (natsConnection_RequestString(&reply, w->nc, "$JS.API.STREAM.LEADER.STEPDOWN.KV_DLQ_CLUSTER",
                                     body, IT_WAIT_MS) == NATS_OK)
        natsMsg_Destroy(reply);
    while (sc_now_mono_ms() - t0 < 10000) {
        if (stream_peer(js, "KV_DLQ_CLUSTER", name) == 2)
            return true;
        it_sleep_ms(200);
    }
    return false;
}

/*
 * pick_node() chooses the nats-server node to kill among those some
 * sidecar is connected to (node_of_sidecar()), first moving the lease
 * bucket's leader to the node with the most sidecars: the leader of the lease
 * bucket KV_DLQ_CLUSTER if a sidecar is on it (every member's renewals wait
 * for its election), else the one leading the most of cluster_streams
 * (leader elections on top of the reconnects), ties going to the one with
 * more sidecars. Prints the choice. Returns the node's
 * index (at least one sidecar is on it), or fails the test when no
 * sidecar's node is known.
 */
static int
pick_node(struct world *w, jsCtx *js)
{
    int conns[IT_CLUSTER_MAX] = {0}, leads[IT_CLUSTER_MAX] = {0}, score[IT_CLUSTER_MAX] = {0};
    int best = -1;
    char led[IT_CLUSTER_MAX][64] = {{0}};

    for (int i = 0; i < NS; i++) {
        int k = node_of_sidecar(w, i);
        if (k >= 0)
            conns[k]++;
    }
    /* the worst case: the lease bucket led by the node with the most sidecars */
    for (size_t k = 0; k < w->cl.n; k++)
        if (conns[k] > 0 && (best < 0 || conns[k] > conns[best]))
            best = (int)k;
    if (best >= 0 && !lease_leader_to(w, js, best))
        printf("cluster: KV_DLQ_CLUSTER's leader could not be moved to n%d\n", best);
    best = -1;
    for (size_t k = 0; k < w->cl.n; k++) {
        char name[24];
        snprintf(name, sizeof(name), "n%zu", k);
        for (size_t s = 0; s < SC_ARRAY_LEN(cluster_streams); s++)
            if (stream_peer(js, cluster_streams[s], name) == 2) {
                leads[k]++;
                snprintf(led[k] + strlen(led[k]), sizeof(led[k]) - strlen(led[k]), " %s",
                         cluster_streams[s]);
            }
        /* the lease bucket's leader first: its election stalls every member's renewals */
        score[k] = (stream_peer(js, "KV_DLQ_CLUSTER", name) == 2) * 100 + leads[k] * 10 + conns[k];
        if (conns[k] > 0 && (best < 0 || score[k] > score[best]))
            best = (int)k;
    }
    IT_CHECK(best >= 0, "the node of some sidecar is known from its log");
    printf("cluster: nats-server n%d has %d of %d sidecars and leads%s (n0/n1/n2: %d/%d/%d "
           "sidecars)\n", best, conns[best], NS, leads[best] ? led[best] : " no R3 stream",
           conns[0], conns[1], conns[2]);
    return best;
}

/*
 * The watch after the kill: a thread of its own polls health (poll(), the
 * world's round fields are its own until joined) until the victim's loss is
 * repaired, so that the main thread keeps publishing meanwhile.
 */
struct recovery {
    struct world *w;
    enum victim v;
    int victim;      /* the sidecar or node killed */
    unsigned on_node; /* bit i: s<i> was connected to the node killed (or is the sidecar killed) */
    int64_t t_kill;  /* CLOCK_MONOTONIC ms */
    int64_t took_ms; /* from the kill until repaired; -1 when not within the timeout */
    int lease_ms;    /* the sidecars' cluster.lease_ms */
    int blips;       /* VICTIM_BLIP: the blips made (at most BLIP_TRIES) */
    int64_t suspended; /* VICTIM_BLIP: s1's partitions_suspended after the last blip */
    pthread_t th;
};

/*
 * repaired() tells whether the last round shows the loss repaired: a
 * sidecar killed: the other two own all P; a node killed: all three answer,
 * own all P, and every lease was written (renewed or taken) after the kill
 * (valid until at least t_kill + lease - guard), i.e. the lease bucket
 * answers again through the surviving nodes.
 */
static bool
repaired(const struct recovery *r)
{
    const struct world *w = r->w;

    if (r->v == VICTIM_BLIP)
        return w->seen[r->victim] && all_owned(w, 7);
    if (r->v != VICTIM_SERVER)
        return all_owned(w, 7u & ~(1u << r->victim));
    for (int i = 0; i < NS; i++)
        if (!w->seen[i])
            return false;
    if (!all_owned(w, 7))
        return false;
    for (int p = 0; p < P; p++)
        if (w->until_of[p] < r->t_kill + LEASE_MS - LEASE_MS / 5)
            return false;
    return true;
}

/* s<i>'s cluster.<key> in its stats (one gather), or -1 when it does not answer. */
static int64_t
member_stat(struct world *w, int i, const char *key)
{
    json_t *r[NS + 4];
    size_t n = member_gather(w, "stats", r, NS + 4);
    char id[8], path[96];
    int64_t v = -1;

    snprintf(id, sizeof(id), "s%d", i);
    snprintf(path, sizeof(path), "cluster.%s", key);
    for (size_t k = 0; k < n; k++) {
        const char *m = it_json_str(r[k], "cluster.member_id");
        if (m && strcmp(m, id) == 0)
            v = it_json_int(r[k], path);
        json_decref(r[k]);
    }
    return v;
}

/* The latest local deadline of s<i>'s holds in a fresh health round (0: none). */
static int64_t
holds_deadline(struct world *w, int i)
{
    int64_t latest = 0;

    for (int k = 0; k < 50; k++) {
        poll(w);
        if (w->seen[i] && all_owned(w, 7))
            break;
    }
    for (int p = 0; p < P; p++)
        if (w->owner_of[p] == i && w->until_of[p] > latest)
            latest = w->until_of[p];
    return latest;
}

/*
 * The blips of VICTIM_BLIP (the watch thread): SIGSTOP of s1 just after
 * one of its renew rounds (found from its holds' deadlines: a round at t0
 * makes them t0 + lease - guard, and the rounds come every lease/3), and
 * SIGCONT lease/15 past the latest deadline: its holds ran out on its own
 * clock, but the keys live on the server until at least deadline + guard
 * (lease/5), so s1 must resume them (renewals at their last revisions)
 * rather than lose them. A round that comes late (a loaded host) can still
 * renew between the health round and the stop (nothing runs out): then
 * again, up to BLIP_TRIES times. Sets r->took_ms to the time from the last
 * blip's stop until s1 owns partitions again.
 */
static void
blips(struct recovery *r)
{
    struct world *w = r->w;
    const int64_t third = r->lease_ms / 3, valid = r->lease_ms - r->lease_ms / 5;

    for (r->blips = 0; r->blips < BLIP_TRIES; r->blips++) {
        int64_t latest = holds_deadline(w, r->victim), next, t_stop, t_cont;
        IT_CHECK(latest > 0, "s%d owns partitions before the blip", r->victim);
        /* its next round after now, an eighth of a round for its answers, then a fresh look */
        for (next = latest - valid + third; next < sc_now_mono_ms(); next += third)
            ;
        while (sc_now_mono_ms() < next + third / 8)
            it_sleep_ms(10);
        latest = holds_deadline(w, r->victim);
        if (sc_now_mono_ms() - (latest - valid) > third - third / 5) {
            printf("cluster: blip %d: s%d's round came late; again\n", r->blips + 1, r->victim);
            continue; /* the round we saw is not its last: another may be under way */
        }
        kill(w->sc[r->victim].pid, SIGSTOP);
        t_stop = sc_now_mono_ms();
        t_cont = latest + r->lease_ms / 15;
        while (sc_now_mono_ms() < t_cont)
            it_sleep_ms(10);
        kill(w->sc[r->victim].pid, SIGCONT);
        printf("cluster: blip %d: s%d stopped %lld ms, %lld ms after its last round, until %lld ms "
               "past its holds' deadline\n", r->blips + 1, r->victim,
               (long long)(sc_now_mono_ms() - t_stop), (long long)(t_stop - (latest - valid)),
               (long long)(sc_now_mono_ms() - latest));
        r->took_ms = -1;
        while (sc_now_mono_ms() - t_stop < 2 * SETTLE_MS) {
            poll(w);
            if (repaired(r)) {
                r->took_ms = sc_now_mono_ms() - t_stop;
                break;
            }
        }
        if ((r->suspended = member_stat(w, r->victim, "partitions_suspended")) > 0 || r->took_ms < 0) {
            r->blips++;
            return;
        }
    }
}

/* The watch thread (struct recovery): polls until repaired() or 2 * SETTLE_MS pass. */
static void *
recovery_main(void *arg)
{
    struct recovery *r = arg;

    r->took_ms = -1;
    if (r->v == VICTIM_BLIP) {
        blips(r);
        return NULL;
    }
    /* A pause ends before retry.timeout_ms (15 s): its attempts' replies still count. */
    while (sc_now_mono_ms() - r->t_kill < (r->v == VICTIM_PAUSE ? PAUSE_MAX_MS : 2 * SETTLE_MS)) {
        poll(r->w);
        if (repaired(r)) {
            r->took_ms = sc_now_mono_ms() - r->t_kill;
            break;
        }
    }
    if (r->v == VICTIM_PAUSE)
        kill(r->w->sc[r->victim].pid, SIGCONT);
    return NULL;
}

/*
 * kill_victim() kills what v names with SIGKILL once a health round shows
 * every sidecar answering and all P owned: sidecar s1, or the node
 * pick_node() chooses (whose sidecars reconnect to the others: they have
 * every node's URL). Marks in part_hit[p] the partitions whose owner
 * died (a sidecar) or was on the killed node. Starts r's watch thread.
 * Main thread, before any other poll().
 */
static void
kill_victim(struct world *w, enum victim v, jsCtx *js, unsigned char part_hit[P],
            struct recovery *r)
{
    unsigned on_node = 0; /* bit i: s<i> was connected to the node killed */

    for (int k = 0; k < 50; k++) {
        poll(w);
        if (w->seen[0] && w->seen[1] && w->seen[2] && all_owned(w, 7))
            break;
    }
    IT_CHECK(w->seen[0] && w->seen[1] && w->seen[2] && all_owned(w, 7),
             "a full health round before the kill");
    *r = (struct recovery){.w = w, .v = v, .lease_ms = r->lease_ms};
    if (v != VICTIM_SERVER) {
        r->victim = 1;
        on_node = 1u << 1;
    } else {
        r->victim = pick_node(w, js);
        for (int i = 0; i < NS; i++)
            if (node_of_sidecar(w, i) == r->victim)
                on_node |= 1u << i;
    }
    for (int p = 0; p < P; p++)
        part_hit[p] = w->owner_of[p] >= 0 && ((on_node >> w->owner_of[p]) & 1);
    r->on_node = on_node;
    r->t_kill = sc_now_mono_ms();
    if (v == VICTIM_SIDECAR) {
        kill(w->sc[1].pid, SIGKILL);
        w->killed[1] = true;
    } else if (v == VICTIM_PAUSE) {
        kill(w->sc[1].pid, SIGSTOP); /* recovery_main() sends SIGCONT */
    } else if (v == VICTIM_BLIP) {
        /* blips() stops and continues it from the watch thread */
    } else {
        it_cluster_stop_node(&w->cl, (size_t)r->victim, SIGKILL);
    }
    IT_CHECK(pthread_create(&r->th, NULL, recovery_main, r) == 0, "the watch thread starts");
}

/*
 * publish_failures() publishes n failures t-0 .. t-(n-1) to the stream at a
 * steady rate, each with its task id as Nats-Msg-Id, calling kill_victim()
 * after 2/5 of them. Main thread; fails the test when a publish fails.
 */
static void
publish_failures(struct world *w, enum victim v, jsCtx *js, int n, unsigned char part_hit[P],
                 struct recovery *r)
{
    int64_t t0 = sc_now_mono_ms();

    for (int i = 0; i < n; i++) {
        char id[32];

        if (i == n * 2 / 5) {
            int hit = 0;
            kill_victim(w, v, js, part_hit, r);
            for (int p = 0; p < P; p++)
                hit += part_hit[p];
            printf("cluster: %s of %s%d after %d of %d failures (%d partitions were owned "
                   "by %s)\n", v == VICTIM_PAUSE ? "SIGSTOP" : v == VICTIM_BLIP ? "blip" : "kill -9",
                   v != VICTIM_SERVER ? "sidecar s" : "nats-server n", r->victim, i, n, hit,
                   v != VICTIM_SERVER ? "it" : "sidecars connected to it");
        }
        snprintf(id, sizeof(id), "t-%d", i);
        publish_failure(js, "dlq.failed.orders", id, "dlq.retry.orders");
        if (i % 50 == 49)
            it_sleep_ms(20); /* a steady rate, not one burst */
    }
    printf("cluster: %d failures published in %lld ms\n", n, (long long)(sc_now_mono_ms() - t0));
}

/*
 * print_story() prints, as the reason of a duplicate, every sidecar's log
 * lines about task id (its sends, outcomes, intake) and about its
 * partition p (gained, served, suspended, resumed, lost, forgotten), in
 * each log's order. Main thread.
 */
static void
print_story(const struct world *w, const char *id, int p)
{
    char tk[48], pk[32], line[2048];

    snprintf(tk, sizeof(tk), "task_id=%s ", id);
    snprintf(pk, sizeof(pk), "partition=%d ", p);
    for (int i = 0; i < NS; i++) {
        FILE *f = fopen(w->sc[i].log, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof(line), f)) {
            const char *pp = strstr(line, pk);
            if (strstr(line, tk) || (pp && strstr(line, "cluster:") && (pp == line || pp[-1] == ' ')))
                printf("  s%d| %s", i, line);
        }
        fclose(f);
    }
}

/*
 * count_dups() counts the retries the worker saw again for a (task,
 * attempt) it had seen already (each later sighting one), those of
 * partitions not in part_hit (the first 5 with their sidecars' log lines:
 * print_story()), and those whose Nats-Msg-Id differs from the first
 * sighting's; prints the first ones. Returns how many retries the
 * worker saw. Main thread; takes the worker's lock (its callback still runs).
 */
static size_t
count_dups(const struct world *w, struct worker *wk, const unsigned char part_hit[P], size_t *dups,
           size_t *dups_other, size_t *dups_msgid)
{
    size_t seen;

    *dups = *dups_other = *dups_msgid = 0;
    pthread_mutex_lock(&wk->mu);
    seen = wk->n;
    for (size_t b = 1; b < seen; b++)
        for (size_t a = 0; a < b; a++) {
            const struct seen_retry *x = &wk->seen[a], *y = &wk->seen[b];
            char id[32];
            if (x->task != y->task || x->attempt != y->attempt)
                continue;
            (*dups)++;
            snprintf(id, sizeof(id), "t-%d", x->task);
            if (!part_hit[dlq_partition_of(id, strlen(id), P)] && ++*dups_other <= 5) {
                printf("cluster: attempt %d of %s (partition %d, not the victim's) came twice; why:\n",
                       x->attempt, id, (int)dlq_partition_of(id, strlen(id), P));
                print_story(w, id, (int)dlq_partition_of(id, strlen(id), P));
            }
            if (strcmp(x->msgid, y->msgid) != 0)
                (*dups_msgid)++;
            if (*dups <= 10 || (strcmp(x->msgid, y->msgid) != 0 && *dups_msgid <= 10))
                printf("cluster: attempt seen twice: %s attempt %d Nats-Msg-Id %s / %s\n", id,
                       x->attempt, x->msgid, y->msgid);
            break; /* against the first sighting only */
        }
    pthread_mutex_unlock(&wk->mu);
    return seen;
}

/*
 * print_member_stats() prints each live sidecar's forwarding, hand-back and
 * lease counters (one gather) and returns the partitions they lost; sets
 * *handed_back (when not NULL) to the replies to attempts of partitions
 * they lost that they handed to the owners (handback.h).
 */
static int64_t
print_member_stats(struct world *w, int64_t *handed_back, int64_t *deferred)
{
    json_t *r[NS + 4];
    size_t nr = member_gather(w, "stats", r, NS + 4);
    int64_t lost = 0, handed = 0, def = 0;

    for (size_t i = 0; i < nr; i++) {
        printf("cluster: %s: forwarded %lld, acks relayed %lld, naked %lld, forwarded in %lld, "
               "refused %lld, enqueued %lld; partitions gained %lld, lost %lld, released %lld, "
               "lease failures %lld; queued %lld, retry timeouts %lld, deferred %lld\n",
               it_json_str(r[i], "cluster.member_id"),
               (long long)it_json_int(r[i], "takeover.forwarded"),
               (long long)it_json_int(r[i], "takeover.forward_acks"),
               (long long)it_json_int(r[i], "takeover.forward_naks"),
               (long long)it_json_int(r[i], "takeover.forwarded_in"),
               (long long)it_json_int(r[i], "takeover.forwarded_refused"),
               (long long)it_json_int(r[i], "lifetime_stats.enqueued"),
               (long long)it_json_int(r[i], "cluster.partitions_gained"),
               (long long)it_json_int(r[i], "cluster.partitions_lost"),
               (long long)it_json_int(r[i], "cluster.partitions_released"),
               (long long)it_json_int(r[i], "cluster.lease_failures"),
               (long long)it_json_int(r[i], "queue_size"),
               (long long)it_json_int(r[i], "lifetime_stats.retry_timeouts"),
               (long long)it_json_int(r[i], "lifetime_stats.deferred"));
        printf("cluster: %s: replies handed back %lld, taken back %lld, unclaimed %lld; notes "
               "handed back %lld, tasks they let go %lld\n",
               it_json_str(r[i], "cluster.member_id"),
               (long long)it_json_int(r[i], "takeover.replies_handed_back"),
               (long long)it_json_int(r[i], "takeover.replies_taken_back"),
               (long long)it_json_int(r[i], "takeover.replies_unclaimed"),
               (long long)it_json_int(r[i], "takeover.notes_handed_back"),
               (long long)it_json_int(r[i], "takeover.tasks_let_go"));
        printf("cluster: %s: holds run out and suspended %lld, resumed %lld (lost: %lld)\n",
               it_json_str(r[i], "cluster.member_id"),
               (long long)it_json_int(r[i], "cluster.partitions_suspended"),
               (long long)it_json_int(r[i], "cluster.partitions_resumed"),
               (long long)it_json_int(r[i], "cluster.partitions_lost"));
        lost += it_json_int(r[i], "cluster.partitions_lost");
        handed += it_json_int(r[i], "takeover.replies_handed_back");
        def += it_json_int(r[i], "lifetime_stats.deferred");
        json_decref(r[i]);
    }
    if (handed_back)
        *handed_back = handed;
    if (deferred)
        *deferred = def;
    return lost;
}

/*
 * wait_rejoined() restarts node k (same ports, same store) and waits until
 * it leads or is a current replica of every R3 stream of cluster_streams.
 * Returns the ms it took from the restart, or -1 (what was missing printed).
 */
static int64_t
wait_rejoined(struct world *w, jsCtx *js, int k)
{
    char name[24];
    int64_t t0 = sc_now_mono_ms();

    snprintf(name, sizeof(name), "n%d", k);
    IT_CHECK(it_server_restart(&w->cl.node[k]) == 0, "nats-server %s starts again", name);
    IT_CHECK(it_cluster_wait_js(w->cl.node[k].url, 2 * IT_WAIT_MS) == 0,
             "JetStream answers through %s again", name);
    while (sc_now_mono_ms() - t0 < 2 * IT_WAIT_MS) {
        size_t ok = 0;
        for (size_t s = 0; s < SC_ARRAY_LEN(cluster_streams); s++)
            ok += stream_peer(js, cluster_streams[s], name) > 0;
        if (ok == SC_ARRAY_LEN(cluster_streams))
            return sc_now_mono_ms() - t0;
        it_sleep_ms(200);
    }
    for (size_t s = 0; s < SC_ARRAY_LEN(cluster_streams); s++)
        fprintf(stderr, "  %s: %s is %s\n", cluster_streams[s], name,
                stream_peer(js, cluster_streams[s], name) ? "current" : "not current");
    return -1;
}

/*
 * failover_run() is the failover world: 3 sidecars on a 3-node cluster (R3
 * stream, R3 buckets), failures published at a steady rate to the stream,
 * a worker that fails each task's first attempt and succeeds on the
 * second; kill -9 of what v names mid-run (a node is started again once
 * the failures are published). Every task is completed; the surviving
 * sidecars stay alive; every (task, attempt) reached the worker once,
 * except attempts in flight at the kill, which came again with the same
 * Nats-Msg-Id: counted and printed; every sidecar left exits 0 at SIGTERM.
 * name names the temp dir. Main thread; fails the test on any miss.
 */
static void
failover_run(const char *name, enum victim v)
{
    struct world *w = world_new(name, 3);
    const int n = failover_n();
    struct worker wk = {.ntasks = n};
    struct recovery rec;
    natsConnection *pub, *wc;
    natsSubscription *sub = NULL;
    jsCtx *js = NULL;
    unsigned char part_hit[P] = {0};
    int64_t t0 = sc_now_mono_ms(), deadline, rejoin_ms = -1;
    size_t seen, dups, dups_other, dups_msgid;

    pthread_mutex_init(&wk.mu, NULL);
    wk.cap = (size_t)n * 6;
    wk.seen = calloc(wk.cap, sizeof(*wk.seen));
    wk.done = calloc((size_t)n, 1);
    assert_non_null(wk.seen);
    assert_non_null(wk.done);
    /*
     * Sanitized runs (quick) are several times slower on 2 cores: a lease
     * renewal can take longer than 2.5 s / 4, and a lease lost under load
     * sends in-flight attempts again (as documented). 6 s keeps the lease to
     * round-trip ratio of a real deployment's 10 s. A node's kill: the
     * default 10 s. The lease bucket's leader election
     * (2.4-3.5 s measured here, up to nats-server's 9 s election timeout)
     * must fit in what a lease tolerates (docs/cluster.md, "Sizing
     * lease_ms"), or every member's keys age out and every partition
     * moves at once (shorter elections only suspend the holds).
     */
    int lease_ms = v == VICTIM_SERVER ? 10000 : quick_run() || v == VICTIM_BLIP ? 6000 : LEASE_MS;
    char lease[40];

    rec.lease_ms = lease_ms; /* a blip needs a guard (lease/5) wider than a loaded host's stalls */
    snprintf(lease, sizeof(lease), "cluster.lease_ms=%d", lease_ms);
    for (int i = 0; i < NS; i++)
        start_sidecar(w, i, lease);
    IT_CHECK(wait_balanced(w, 7, SETTLE_MS) >= 0, "3 sidecars own the 32 partitions");
    /* Every node's URL: the worker and the publisher reconnect to a survivor of a node's kill. */
    wc = it_connect(w->cl.urls, "it-worker");
    pub = it_connect(w->cl.urls, "it-publisher");
    assert_non_null(wc);
    assert_non_null(pub);
    IT_CHECK(natsConnection_QueueSubscribe(&sub, wc, "dlq.retry.orders", "workers", on_retry, &wk) ==
                 NATS_OK, "worker subscribes");
    natsSubscription_SetPendingLimits(sub, -1, -1);
    IT_CHECK(natsConnection_JetStream(&js, pub, NULL) == NATS_OK, "JetStream context");

    publish_failures(w, v, js, n, part_hit, &rec);
    IT_CHECK(pthread_join(rec.th, NULL) == 0, "the watch thread ends");
    IT_CHECK(rec.took_ms >= 0, "the loss of %s%d is repaired (see repaired())",
             v != VICTIM_SERVER ? "sidecar s" : "nats-server n", rec.victim);
    if (v == VICTIM_BLIP)
        printf("cluster: after %d blip(s) s1 suspended %lld partitions; all %d owned again %lld ms "
               "after the last stop (lease_ms %d)\n", rec.blips, (long long)rec.suspended, P,
               (long long)rec.took_ms, lease_ms);
    else if (v != VICTIM_SERVER)
        printf("cluster: s0 and s2 own all %d partitions %lld ms after the kill (lease_ms %d)\n",
               P, (long long)rec.took_ms, lease_ms);
    else
        printf("cluster: all %d partitions owned with leases written after the kill %lld ms after "
               "it (lease_ms %d)\n", P, (long long)rec.took_ms, lease_ms);
    if (v == VICTIM_SERVER) {
        for (int i = 0; i < NS; i++)
            IT_CHECK(!((rec.on_node >> i) & 1) || node_of_sidecar(w, i) != rec.victim,
                     "s%d, connected to n%d at the kill, reconnected to another node", i,
                     rec.victim);
        rejoin_ms = wait_rejoined(w, js, rec.victim);
        IT_CHECK(rejoin_ms >= 0, "n%d rejoins: current in every R3 stream", rec.victim);
        printf("cluster: nats-server n%d restarted; current in the 3 R3 streams after %lld ms\n",
               rec.victim, (long long)rejoin_ms);
    }

    deadline = sc_now_mono_ms() + 120000 + (int64_t)n * 5; /* DLQ_TEST_FAILOVER_N=100000: 10 min more */
    while (worker_done(&wk) < (size_t)n && sc_now_mono_ms() < deadline)
        it_sleep_ms(200);
    IT_CHECK(worker_done(&wk) == (size_t)n, "%zu of %d tasks completed", worker_done(&wk), n);
    /*
     * The worker's "ok" is a core-NATS reply: one sent through the killed
     * node is lost, and its owner learns the outcome only when
     * retry.timeout_ms (15 s) ends and the attempt after it succeeds. So the
     * queues may drain up to that long (plus its backoff) after the worker
     * saw every task done.
     */
    deadline = sc_now_mono_ms() + 15000 + 30000;
    while (queued_total(w) != 0 && sc_now_mono_ms() < deadline)
        it_sleep_ms(200);
    if (queued_total(w) != 0)
        print_member_stats(w, NULL, NULL);
    IT_CHECK(queued_total(w) == 0, "tasks left in the sidecars after every one completed");
    for (int i = 0; i < NS; i++)
        IT_CHECK(w->killed[i] || it_daemon_alive(&w->sc[i]), "s%d is alive", i);

    IT_CHECK(overlaps(w) == 0, "no partition was valid at two sidecars at once (%zu samples)",
             w->nsamples);
    seen = count_dups(w, &wk, part_hit, &dups, &dups_other, &dups_msgid);
    printf("cluster: %d tasks completed, %zu retries seen, %zu of them an attempt seen before (in "
           "flight at the kill)\n", n, seen, dups);
    int64_t handed_back = 0, deferred = 0;
    /* partitions lost for good: a hold that ran out and could not be resumed (cluster.h) */
    int64_t survivors_lost = print_member_stats(w, &handed_back, &deferred);
    IT_CHECK(dups_msgid == 0, "%zu attempts came twice with different Nats-Msg-Ids", dups_msgid);
    /*
     * A paused owner is alive: the next owner sends its attempts out at
     * their deadline only, and the replies that come to the paused one are
     * handed back to it (docs/cluster.md, "Attempts of a lost lease"). A
     * blip shorter than the server's expiry: its holds are resumed, nothing
     * moves.
     */
    if (v == VICTIM_PAUSE || v == VICTIM_BLIP)
        IT_CHECK(dups == 0, "%zu attempts of a paused owner reached the worker twice", dups);
    if (v == VICTIM_PAUSE)
        IT_CHECK(handed_back > 0, "the paused owner handed replies back (%lld)",
                 (long long)handed_back);
    if (v == VICTIM_BLIP) {
        int64_t resumed = member_stat(w, 1, "partitions_resumed");
        IT_CHECK(rec.suspended > 0 && resumed > 0,
                 "s1's holds ran out in one of %d blips and were resumed (suspended %lld, resumed "
                 "%lld)", BLIP_TRIES, (long long)rec.suspended, (long long)resumed);
    }
    printf("cluster: %zu of the attempts seen twice were of partitions %s; the members lost %lld "
           "partitions for good\n", dups_other,
           v != VICTIM_SERVER ? "the stopped member did not own"
                               : "owned by sidecars not connected to the killed node",
           (long long)survivors_lost);
    /*
     * kill -9 of a sidecar: the survivors' partitions are either kept
     * (renewed, or suspended and resumed when a renewal came late) or given
     * back gracefully (in-flight outcomes and writes first): none of their
     * attempts may come twice, whatever the load.
     */
    if (v == VICTIM_SIDECAR)
        IT_CHECK(dups_other == 0, "%zu attempts of partitions s1 did not own came twice (why: above)",
                 dups_other);
    /*
     * kill -9 of a nats-server node: a hold that ran out during the
     * buckets' elections is resumed when the lease key outlived them, so
     * no partition's attempts are sent again by a next owner. Two causes
     * remain (docs/cluster.md, "Attempts of a lost lease"):
     *  - a retry out while the sidecar's connection moved to another node
     *    whose reply was lost with it: at its deadline the sidecar cannot
     *    know whether a worker got it, and sends the same attempt (same
     *    Nats-Msg-Id) again, a deferral (lifetime_stats.deferred, which
     *    also counts "no responders" while the workers' interest moves):
     *    at most that many;
     *  - a partition lost for good (its key aged out before the lease
     *    bucket answered again): its next owner loads a store that may lack
     *    the last writes; then any number, printed.
     */
    if (v == VICTIM_SERVER) {
        printf("cluster: %zu attempts came twice; the sidecars deferred %lld retries (sent again "
               "after a reconnect: at most that many twice) and lost %lld partitions for good\n",
               dups, (long long)deferred, (long long)survivors_lost);
        IT_CHECK(survivors_lost > 0 || (int64_t)dups <= deferred,
                 "%zu attempts came twice, more than the %lld retries deferred across the "
                 "reconnect, though every hold was kept or resumed", dups, (long long)deferred);
    }

    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(pub);
    natsConnection_Destroy(wc);
    free(wk.seen);
    free(wk.done);
    pthread_mutex_destroy(&wk.mu);
    stop_all(w);
    printf("cluster: %s run took %lld ms\n", name, (long long)(sc_now_mono_ms() - t0));
    w->passed = true;
    world_free(w);
}

/* ---- admin from any member -------------------------------------------------------------------- */

/* A merged admin reply (dlq.admin.<verb>, taken by one member); NULL when none came. */
static json_t *
ask(struct world *w, const char *verb, const char *body)
{
    char subj[64];

    snprintf(subj, sizeof(subj), "dlq.admin.%s", verb);
    return it_request_json(w->nc, subj, body, IT_REQUEST_MS);
}

/* The member index (0..NS) of answered_by "s<i>", or -1. */
static int
answered_by(const json_t *r)
{
    const char *by = it_json_str(r, "answered_by");
    return by && by[0] == 's' && by[1] >= '0' && by[1] < '0' + NS && !by[2] ? by[1] - '0' : -1;
}

/*
 * Walks every page of dlq.admin.list (limit per page) and checks that no
 * task comes twice, every page says total, and the walk sees want tasks
 * ("a-<i>", i < n). Returns the member that answered the first page.
 */
static int
list_walk(struct world *w, int n, int want, int limit)
{
    unsigned char *seen = calloc((size_t)n, 1);
    char body[512], *cursor = NULL;
    int count = 0, first = -1;

    assert_non_null(seen);
    for (int page = 0; page < n + 2; page++) {
        json_t *r, *t;
        size_t i;
        if (cursor) {
            json_t *b = json_pack("{s:i,s:s}", "limit", limit, "cursor", cursor);
            char *text = json_dumps(b, JSON_COMPACT);
            snprintf(body, sizeof(body), "%s", text);
            free(text);
            json_decref(b);
        } else {
            snprintf(body, sizeof(body), "{\"limit\":%d}", limit);
        }
        r = ask(w, "list", body);
        IT_CHECK(r && !json_object_get(r, "error"), "list page %d: %s", page, it_json_dump(r));
        if (page == 0)
            first = answered_by(r);
        IT_CHECK(it_json_int(r, "total") == want, "page %d says total %lld, want %d", page,
                 (long long)it_json_int(r, "total"), want);
        IT_CHECK(json_array_size(json_object_get(r, "partitions_missing")) == 0,
                 "partitions missing in a steady cluster: %s", it_json_dump(r));
        json_array_foreach(json_object_get(r, "tasks"), i, t) {
            const char *id = it_json_str(t, "task_id");
            int k = id && !strncmp(id, "a-", 2) ? atoi(id + 2) : -1;
            IT_CHECK(k >= 0 && k < n, "a task of no one's: %s", id ? id : "(null)");
            IT_CHECK(!seen[k], "%s listed twice (page %d)", id, page);
            seen[k] = 1;
            count++;
        }
        free(cursor);
        cursor = json_is_string(json_object_get(r, "next_cursor"))
                     ? strdup(it_json_str(r, "next_cursor")) : NULL;
        json_decref(r);
        if (!cursor)
            break;
    }
    IT_CHECK(!cursor, "the walk did not end");
    IT_CHECK(count == want, "the walk saw %d tasks, want %d", count, want);
    free(seen);
    return first;
}

/*
 * 3 sidecars share 32 partitions and n tasks. dlq.admin.* is a queue
 * group: whichever member takes a request asks the others and merges.
 * stats and a full list walk taken by each of the 3 give the same totals,
 * with no task repeated or skipped; get and a single-task archive reach
 * the owner; a clear without confirm counts every member's tasks. After
 * kill -9 of one member, replies name its partitions in partitions_missing
 * instead of pretending, until they are owned again.
 */
static void
test_admin_everywhere(void **state)
{
    struct world *w = world_new("cluster-admin", 3);
    const char *q = getenv("DLQ_TEST_QUICK");
    const int n = q && *q && strcmp(q, "0") != 0 ? 300 : 1000;
    bool stats_by[NS] = {false}, walk_by[NS] = {false};
    natsConnection *pub;
    jsCtx *js = NULL;
    json_t *r;
    int64_t deadline;

    (void)state;
    w->flag = "backoff.linear_step_ms=600000"; /* the tasks wait: a set that does not move */
    /*
     * The window where the dead member's partitions have no owner lasts
     * about lease_ms, and the test must see one reply inside it. A request
     * the servers still route to the dying member costs a whole request
     * timeout (4 s) before the next one goes: with 2.5 s leases the window
     * could close unseen (2 runs in 4 failed so on a loaded machine), so
     * every run gets 6 s.
     */
    for (int i = 0; i < NS; i++)
        start_sidecar(w, i, "cluster.lease_ms=6000");
    IT_CHECK(wait_balanced(w, 7, SETTLE_MS) >= 0, "3 sidecars own the 32 partitions");
    pub = it_connect(w->cl.node[2].url, "it-publisher");
    assert_non_null(pub);
    IT_CHECK(natsConnection_JetStream(&js, pub, NULL) == NATS_OK, "JetStream context");
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "a-%d", i);
        publish_failure(js, "dlq.failed.adm", id, "dlq.retry.adm");
    }
    /* Every task stored by its owner: the merged stats count them all. */
    deadline = sc_now_mono_ms() + 60000;
    for (;;) {
        r = ask(w, "stats", NULL);
        int64_t size = it_json_int(r, "queue_size");
        json_decref(r);
        if (size == n || sc_now_mono_ms() > deadline)
            break;
        it_sleep_ms(200);
    }
    /* Each member takes some of the requests (the queue group picks): all give the same totals. */
    for (int round = 0; round < 60; round++) {
        int by;
        r = ask(w, "stats", NULL);
        IT_CHECK(r && !json_object_get(r, "error"), "stats: %s", it_json_dump(r));
        IT_CHECK(it_json_int(r, "queue_size") == n, "stats by %s: queue_size %lld, want %d",
                 it_json_str(r, "answered_by"), (long long)it_json_int(r, "queue_size"), n);
        IT_CHECK(it_json_int(r, "status_breakdown.pending") == n, "stats: %s", it_json_dump(r));
        IT_CHECK(it_json_int(r, "members_answered") == NS, "stats: %s", it_json_dump(r));
        IT_CHECK(json_array_size(json_object_get(r, "partitions_missing")) == 0, "stats: %s",
                 it_json_dump(r));
        IT_CHECK(json_array_size(json_object_get(r, "members")) == NS, "stats: %s", it_json_dump(r));
        by = answered_by(r);
        json_decref(r);
        IT_CHECK(by >= 0, "stats names the member that answered");
        stats_by[by] = true;
        by = list_walk(w, n, n, 37);
        IT_CHECK(by >= 0, "list names the member that answered");
        walk_by[by] = true;
        if (stats_by[0] && stats_by[1] && stats_by[2] && walk_by[0] && walk_by[1] && walk_by[2])
            break;
    }
    for (int i = 0; i < NS; i++)
        IT_CHECK(stats_by[i] && walk_by[i], "s%d took a stats and a list walk in 60 rounds", i);

    /* dlqctl members: every member, and the partitions it serves (32 in all, each once). */
    {
        char cmd[IT_PATH_MAX + 256], out[1 << 16];
        size_t len = 0, got, i;
        int owner_count[P] = {0};
        json_t *all, *a;
        snprintf(cmd, sizeof(cmd), "'%s' -s '%s' --json members", DLQCTL_BIN, w->cl.node[0].url);
        FILE *pf = popen(cmd, "r");
        IT_CHECK(pf != NULL, "run %s", cmd);
        while ((got = fread(out + len, 1, sizeof(out) - 1 - len, pf)) > 0)
            len += got;
        out[len] = '\0';
        IT_CHECK(pclose(pf) == 0, "dlqctl members exits 0: %s", out);
        all = json_loads(out, 0, NULL);
        IT_CHECK(json_array_size(all) == NS, "dlqctl members shows %zu members: %s",
                 json_array_size(all), out);
        json_array_foreach(all, i, a) {
            size_t j;
            json_t *p;
            json_array_foreach(json_object_get(a, "partitions"), j, p)
                if (json_integer_value(p) >= 0 && json_integer_value(p) < P)
                    owner_count[json_integer_value(p)]++;
        }
        for (int p = 0; p < P; p++)
            IT_CHECK(owner_count[p] == 1, "partition %d served by %d members: %s", p, owner_count[p], out);
        json_decref(all);
    }

    /* One task: get and archive reach its owner, whoever takes the request. */
    r = ask(w, "get", "{\"task_id\":\"a-7\"}");
    IT_CHECK(r && !strcmp(it_json_str(r, "status") ? it_json_str(r, "status") : "", "pending"),
             "get a-7: %s", it_json_dump(r));
    json_decref(r);
    r = ask(w, "get", "{\"task_id\":\"nobody\"}");
    IT_CHECK(r && it_json_int(r, "error.code") == 404, "get of no task: %s", it_json_dump(r));
    json_decref(r);
    /* Two archived: a list counts kept tasks too (the harness keeps completed and archived ones). */
    r = ask(w, "archive", "{\"task_id\":\"a-7\"}");
    IT_CHECK(r && it_json_int(r, "archived") == 1, "archive a-7: %s", it_json_dump(r));
    json_decref(r);
    {
        /* The second of the same partition, so that one member holds both. */
        char body[64];
        int j;
        for (j = 8; j < n; j++) {
            int len = snprintf(body, sizeof(body), "a-%d", j);
            if (dlq_partition_of(body, (size_t)len, P) == dlq_partition_of("a-7", 3, P))
                break;
        }
        IT_CHECK(j < n, "a task of a-7's partition");
        snprintf(body, sizeof(body), "{\"task_id\":\"a-%d\"}", j);
        r = ask(w, "archive", body);
        IT_CHECK(r && it_json_int(r, "archived") == 1, "archive a-%d: %s", j, it_json_dump(r));
        json_decref(r);
    }
    r = ask(w, "stats", NULL);
    IT_CHECK(it_json_int(r, "queue_size") == n - 2, "after the archives: %s", it_json_dump(r));
    json_decref(r);
    list_walk(w, n, n, 1000);
    /* A filter reaches every member: the count is the cluster's. */
    r = ask(w, "clear", "{\"status\":\"pending\"}");
    IT_CHECK(r && it_json_int(r, "error.code") == 400 && it_json_int(r, "error.would_clear") == n - 2,
             "clear without confirm: %s", it_json_dump(r));
    json_decref(r);

    /*
     * The archive's write reaches the store within flush_ms of the answer: a
     * kill -9 before that brings the task back (never the reverse: nothing
     * is lost). Wait for every member's store to catch up first.
     */
    deadline = sc_now_mono_ms() + 30000;
    for (int64_t queued = 1; queued != 0 && sc_now_mono_ms() < deadline; it_sleep_ms(50)) {
        r = ask(w, "stats", NULL);
        queued = it_json_int(r, "persistence.queued_writes");
        json_decref(r);
    }
    /* kill -9 of s2: its partitions have no owner for a while, and the replies say so. */
    kill(w->sc[2].pid, SIGKILL);
    w->killed[2] = true;
    bool named = false, whole = false;
    char seen[2048] = "";
    size_t seen_len = 0;
    deadline = sc_now_mono_ms() + SETTLE_MS;
    while (sc_now_mono_ms() < deadline && !whole) {
        /* 4 s: the member that takes it waits 3 s for the dead one; lost with the dead one: next */
        r = it_request_json(w->nc, "dlq.admin.stats", NULL, 4000);
        size_t missing = json_array_size(json_object_get(r, "partitions_missing"));
        if (seen_len < sizeof(seen) - 64) /* what each reply said, for a failure's message */
            seen_len += (size_t)snprintf(seen + seen_len, sizeof(seen) - seen_len,
                                         " [%lld ms: missing %zu, answered %lld, queue %lld]",
                                         (long long)(sc_now_mono_ms() - (deadline - SETTLE_MS)),
                                         missing, (long long)it_json_int(r, "members_answered"),
                                         (long long)it_json_int(r, "queue_size"));
        if (missing > 0 && it_json_int(r, "members_answered") < NS && it_json_int(r, "queue_size") < n - 2)
            named = true;
        if (named && missing == 0 && it_json_int(r, "queue_size") == n - 2)
            whole = true;
        json_decref(r);
        it_sleep_ms(100);
    }
    IT_CHECK(named, "no reply named the dead member's partitions (partitions_missing):%s", seen);
    IT_CHECK(whole, "its partitions were not owned again with every task:%s", seen);
    list_walk(w, n, n, 100); /* the archived one too: the harness keeps completed tasks */
    printf("cluster: admin from each of 3 members: %d tasks, the same totals; a dead member's "
           "partitions named until taken over\n", n);

    natsConnection_Destroy(pub);
    jsCtx_Destroy(js);
    stop_all(w);
    w->passed = true;
    world_free(w);
}

/*
 * The "no workers" state in cluster mode: each member knows the retry
 * subjects of the tasks it retries; the merged stats lists the union of
 * them (tasks chosen so that both members own some).
 */
static void
test_no_workers_merged(void **state)
{
    struct world *w = world_new("cluster-noworkers", 1);
    natsConnection *pub;
    jsCtx *js = NULL;
    char id[32], subj[64], retry[64];
    int have = 0, owners = 0;

    (void)state;
    for (int i = 0; i < 2; i++)
        start_sidecar(w, i, "cluster.lease_ms=2500");
    IT_CHECK(wait_balanced(w, 3, SETTLE_MS) >= 0, "2 sidecars own the 32 partitions");
    pub = it_connect(w->cl.node[0].url, "it-publisher");
    assert_non_null(pub);
    IT_CHECK(natsConnection_JetStream(&js, pub, NULL) == NATS_OK, "JetStream context");
    /* 8 subjects, their tasks spread over both members. */
    for (int i = 0; have < 8 && i < 1000; i++) {
        int len = snprintf(id, sizeof(id), "nw-%d", i);
        int o = w->owner_of[dlq_partition_of(id, (size_t)len, P)];
        if (o < 0 || o > 1 || (have >= 4 && owners != 3 && (owners & (1 << o))))
            continue; /* past half, only the member that has none yet */
        owners |= 1 << o;
        snprintf(subj, sizeof(subj), "dlq.failed.nw%d", have);
        snprintf(retry, sizeof(retry), "dlq.retry.nw%d", have);
        publish_failure(js, subj, id, retry);
        have++;
    }
    IT_CHECK(have == 8 && owners == 3, "8 tasks on both members (%d, owners %d)", have, owners);
    json_t *r = NULL;
    int64_t deadline = sc_now_mono_ms() + SETTLE_MS;
    do {
        json_decref(r);
        it_sleep_ms(200);
        r = ask(w, "stats", NULL);
    } while (it_json_int(r, "retry_subjects_without_workers_count") != 8 && sc_now_mono_ms() < deadline);
    char *dump = it_json_dump(json_object_get(r, "retry_subjects_without_workers"));
    IT_CHECK(it_json_int(r, "retry_subjects_without_workers_count") == 8 &&
                 json_array_size(json_object_get(r, "retry_subjects_without_workers")) == 8,
             "the union of both members' subjects: %s", dump);
    for (int i = 0; i < 8; i++) {
        snprintf(retry, sizeof(retry), "dlq.retry.nw%d", i);
        IT_CHECK(strcmp(json_string_value(json_array_get(json_object_get(r, "retry_subjects_without_workers"),
                                                         (size_t)i)), retry) == 0,
                 "sorted, %s at %d: %s", retry, i, dump);
    }
    free(dump);
    json_decref(r);
    natsConnection_Destroy(pub);
    jsCtx_Destroy(js);
    stop_all(w);
    w->passed = true;
    world_free(w);
}

/*
 * The circuit breakers and retry effectiveness in cluster mode: each member
 * opens the circuits of the retry subjects it retries to (a worker that
 * fails everything, circuit_breaker.failures 1); the merged stats lists the
 * union, and its success rate is worked out from the summed counts (tasks
 * that succeed on both members: 1.0, not the members' sum).
 */
static void
test_breaker_merged(void **state)
{
    struct world *w = world_new("cluster-breaker", 1);
    natsConnection *pub;
    jsCtx *js = NULL;
    char id[32], subj[64], retry[64];
    int have = 0, owners = 0, good = 0, gowners = 0;

    (void)state;
    w->flag = "cluster.lease_ms=2500";
    for (int i = 0; i < 2; i++)
        start_sidecar(w, i, "circuit_breaker.failures=1");
    IT_CHECK(wait_balanced(w, 3, SETTLE_MS) >= 0, "2 sidecars own the 32 partitions");
    struct it_recorder *bad = it_recorder_new(w->nc, "dlq.retry.cb.>", NULL, 64, false);
    struct it_recorder *ok = it_recorder_new(w->nc, "dlq.retry.ok.>", NULL, 64, false);
    assert_non_null(bad);
    assert_non_null(ok);
    it_recorder_set_plan(bad, NULL, 0, (struct it_step){IT_ACT_FAIL, "connection refused", NULL});
    it_recorder_set_plan(ok, NULL, 0, (struct it_step){IT_ACT_OK, NULL, NULL});
    pub = it_connect(w->cl.node[0].url, "it-publisher");
    assert_non_null(pub);
    IT_CHECK(natsConnection_JetStream(&js, pub, NULL) == NATS_OK, "JetStream context");
    /* 4 failing subjects and 4 succeeding tasks, each set on both members. */
    for (int i = 0; (have < 4 || good < 4) && i < 1000; i++) {
        int len = snprintf(id, sizeof(id), "cbm-%d", i);
        int o = w->owner_of[dlq_partition_of(id, (size_t)len, P)];
        bool failing = have < 4;
        int *n = failing ? &have : &good, *own = failing ? &owners : &gowners;
        if (o < 0 || o > 1 || (*n >= 2 && *own != 3 && (*own & (1 << o))))
            continue;
        *own |= 1 << o;
        snprintf(subj, sizeof(subj), failing ? "dlq.failed.cb%d" : "dlq.failed.ok%d", *n);
        snprintf(retry, sizeof(retry), failing ? "dlq.retry.cb.%d" : "dlq.retry.ok.%d", *n);
        publish_failure(js, subj, id, retry);
        (*n)++;
    }
    IT_CHECK(have == 4 && good == 4 && owners == 3 && gowners == 3, "tasks on both members (%d %d, owners %d %d)",
             have, good, owners, gowners);
    json_t *r = NULL;
    int64_t deadline = sc_now_mono_ms() + SETTLE_MS;
    do {
        json_decref(r);
        it_sleep_ms(200);
        r = ask(w, "stats", NULL);
    } while ((json_array_size(json_object_get(r, "circuits")) != 4 ||
              it_json_int(r, "retry_effectiveness.by_category.network.succeeded") != 4) &&
             sc_now_mono_ms() < deadline);
    char *dump = it_json_dump(r);
    json_t *circuits = json_object_get(r, "circuits");
    IT_CHECK(json_array_size(circuits) == 4 && it_json_int(r, "circuits_open") == 4,
             "the union of both members' circuits: %.4000s", dump);
    for (int i = 0; i < 4; i++) {
        json_t *c = json_array_get(circuits, (size_t)i);
        snprintf(retry, sizeof(retry), "dlq.retry.cb.%d", i);
        IT_CHECK(strcmp(it_json_str(c, "subject"), retry) == 0 && strcmp(it_json_str(c, "state"), "open") == 0,
                 "sorted and open, %s at %d: %.4000s", retry, i, dump);
    }
    IT_CHECK(it_json_int(r, "retry_effectiveness.by_category.network.succeeded") == 4 &&
                 json_number_value(it_json_get(r, "retry_effectiveness.by_category.network.success_rate")) == 1.0,
             "merged effectiveness: 4 succeeded, success rate 1: %.4000s", dump);
    free(dump);
    json_decref(r);
    it_recorder_free(bad);
    it_recorder_free(ok);
    natsConnection_Destroy(pub);
    jsCtx_Destroy(js);
    stop_all(w);
    w->passed = true;
    world_free(w);
}

/*
 * pause_store() stops (on false: resumes) the store with SIGSTOP (SIGCONT):
 * the one nats-server node (the tasks bucket, and the leases with it), or
 * in the OpenSearch build the OpenSearch node (DLQ_TEST_OPENSEARCH_CTL's
 * pause and resume). Returns 0, or -1. Main thread.
 */
static int
pause_store(struct world *w, bool stop)
{
#ifdef IT_CLUSTER_OPENSEARCH
    const char *ctl = getenv("DLQ_TEST_OPENSEARCH_CTL");
    char cmd[IT_PATH_MAX + 16];

    if (!ctl || !*ctl)
        return -1;
    snprintf(cmd, sizeof(cmd), "'%s' %s", ctl, stop ? "pause" : "resume");
    if (system(cmd) != 0)
        return -1;
#else
    if (kill(w->cl.node[0].pid, stop ? SIGSTOP : SIGCONT) != 0)
        return -1;
#endif
    w->store_paused = stop;
    return 0;
}

/*
 * A member stopped while its store is slow: the store (pause_store()) is
 * paused while attempt 1 of every task goes out (the records' writes wait),
 * s1 gets SIGTERM, and the store resumes only once s1's drain of in-flight
 * attempts has ended, so that its last writes wait for the store in the
 * flush (persist_stopping()). s1 must store them and give its partitions
 * back: exit 0 (3 would say writes were neither stored nor spilled: no
 * spill_dir here). s0 then owns all 32 and completes every task; no (task,
 * attempt) reached the worker twice (a write lost would make s0 send
 * attempt 1 again).
 */
static void
test_stop_slow_store(void **state)
{
    enum { N = 60 };
    struct world *w = world_new("cluster-slowstop", 1);
    struct worker wk = {.ntasks = N};
    const int drain_ms = 5000; /* flag2 below */
    natsConnection *wc;
    natsSubscription *sub = NULL;
    jsCtx *js = NULL;
    unsigned char part_hit[P];
    size_t seen, dups, dups_other, dups_msgid;
    int owners = 0, st = -1;

    (void)state;
    pthread_mutex_init(&wk.mu, NULL);
    wk.cap = (size_t)N * 6;
    wk.seen = calloc(wk.cap, sizeof(*wk.seen));
    wk.done = calloc(N, 1);
    assert_non_null(wk.seen);
    assert_non_null(wk.done);
    /* attempt 1 about 2 s after a failure is taken: while the node is paused */
    w->flag = "backoff.linear_step_ms=2000";
    w->flag2 = "shutdown.drain_ms=5000"; /* also when sanitized: the pause below outlasts it */
    /* longer than the pause: s0 keeps its partitions throughout */
    for (int i = 0; i < 2; i++)
        start_sidecar(w, i, "cluster.lease_ms=20000");
    int64_t ms = wait_balanced(w, 3, SETTLE_MS + 20000); /* a partition released waits for its TTL */
    IT_CHECK(ms >= 0, "2 sidecars own the 32 partitions");
    printf("cluster: slow stop: 2 sidecars balanced after %lld ms (lease_ms 20000)\n", (long long)ms);
    for (int p = 0; p < P; p++)
        part_hit[p] = w->owner_of[p] == 1;
    wc = it_connect(w->cl.urls, "it-worker");
    assert_non_null(wc);
    IT_CHECK(natsConnection_QueueSubscribe(&sub, wc, "dlq.retry.orders", "workers", on_retry, &wk) ==
                 NATS_OK, "worker subscribes");
    IT_CHECK(natsConnection_Flush(wc) == NATS_OK, "flush");
    IT_CHECK(natsConnection_JetStream(&js, w->nc, NULL) == NATS_OK, "JetStream context");
    for (int i = 0; i < N; i++) {
        char id[32];
        int len = snprintf(id, sizeof(id), "t-%d", i);
        int o = w->owner_of[dlq_partition_of(id, (size_t)len, P)];
        owners |= o >= 0 ? 1 << o : 0;
        publish_failure(js, "dlq.failed.orders", id, "dlq.retry.orders");
    }
    IT_CHECK(owners == 3, "tasks on both members (owners %d)", owners);
    int64_t deadline = sc_now_mono_ms() + IT_WAIT_MS;
    while (queued_total(w) != N && sc_now_mono_ms() < deadline)
        it_sleep_ms(50);
    IT_CHECK(queued_total(w) == N, "both members hold the %d tasks", N);

    IT_CHECK(pause_store(w, true) == 0, "SIGSTOP the store");
    it_sleep_ms(3000); /* attempt 1 goes out; its writes wait for the store */
    IT_CHECK(kill(w->sc[1].pid, SIGTERM) == 0, "SIGTERM s1");
    /*
     * The store resumes 2 s into the flush, which waits up to drain_ms for
     * it (after that, exit 3 is right: the writes were neither stored nor
     * spilled). With nats-server paused the attempts' replies wait too, so
     * the flush starts when the drain of in-flight attempts ends (drain_ms);
     * with OpenSearch paused the worker has answered and it starts at once.
     */
#ifdef IT_CLUSTER_OPENSEARCH
    it_sleep_ms(2000);
#else
    it_sleep_ms(drain_ms + 2000);
#endif
    IT_CHECK(pause_store(w, false) == 0, "SIGCONT the store");
    for (int64_t end = sc_now_mono_ms() + drain_ms + IT_WAIT_MS;
         it_daemon_alive(&w->sc[1]) && sc_now_mono_ms() < end;)
        it_sleep_ms(50);
    st = w->sc[1].exit_status;
    IT_CHECK(st == 0, "s1 exits 0 at SIGTERM with its store paused, got %d (3: writes neither "
             "stored nor spilled)", st);
    IT_CHECK(wait_owned(w, 1, SETTLE_MS) >= 0, "s0 owns all 32 after s1 left");

    deadline = sc_now_mono_ms() + 60000;
    while (worker_done(&wk) < (size_t)N && sc_now_mono_ms() < deadline)
        it_sleep_ms(200);
    IT_CHECK(worker_done(&wk) == (size_t)N, "%zu of %d tasks completed", worker_done(&wk), N);
    deadline = sc_now_mono_ms() + IT_WAIT_MS;
    while (queued_total(w) != 0 && sc_now_mono_ms() < deadline)
        it_sleep_ms(200);
    IT_CHECK(queued_total(w) == 0, "no task left after every one completed");
    seen = count_dups(w, &wk, part_hit, &dups, &dups_other, &dups_msgid);
    printf("cluster: slow stop: s1 exited %d; %d tasks completed, %zu retries seen, %zu of them an "
           "attempt seen before\n", st, N, seen, dups);
    IT_CHECK(dups == 0, "%zu attempts reached the worker twice (a write of s1 lost at its stop)",
             dups);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(wc);
    free(wk.seen);
    free(wk.done);
    pthread_mutex_destroy(&wk.mu);
    stop_all(w);
    w->passed = true;
    world_free(w);
}

/*
 * store.spill_dir in cluster mode stops start-up with exit 2, naming the
 * key: the spill file would be replayed at the member's next start, after
 * the next owners went on from the store (seen: the tasks they completed
 * came back and their attempts reached the worker again).
 */
static void
test_spill_refused(void **state)
{
    struct world *w = world_new("cluster-spill", 1);
    char spill[IT_PATH_MAX + 40], buf[8192];
    FILE *f;
    size_t n;

    (void)state;
    snprintf(spill, sizeof(spill), "store.spill_dir=%s", w->dir);
    w->flag = spill;
    start_sidecar(w, 0, "cluster.lease_ms=2500");
    for (int64_t end = sc_now_mono_ms() + IT_WAIT_MS; it_daemon_alive(&w->sc[0]) && sc_now_mono_ms() < end;)
        it_sleep_ms(50);
    IT_CHECK(w->sc[0].exit_status == 2, "exit status 2, got %d", w->sc[0].exit_status);
    f = fopen(w->sc[0].log, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    IT_CHECK(strstr(buf, "store.spill_dir: not in cluster mode") != NULL && !strstr(buf, "partition gained"),
             "the log names the key, and nothing was taken:\n%s", buf);
    w->passed = true;
    world_free(w);
}

/*
 * kill -9 of one sidecar mid-run (failover_run()): the killed member's
 * partitions are taken by the other two.
 */
static void
test_failover_tasks(void **state)
{
    (void)state;
    failover_run("cluster-tasks", VICTIM_SIDECAR);
}

/*
 * kill -9 of one nats-server node mid-run (failover_run()), one that
 * sidecars are connected to: they reconnect to the other two nodes, the R3
 * streams elect new leaders where it led, every partition is owned again
 * with leases written after the kill; the node is restarted once the
 * failures are published and must become current again in every R3 stream.
 */
/*
 * SIGSTOP of one sidecar mid-run for longer than its lease and shorter
 * than retry.timeout_ms (failover_run()): the other two take its
 * partitions while it is alive with attempts out; its attempts' replies
 * are handed back to them, so no (task, attempt) reaches the worker twice.
 */
static void
test_failover_pause(void **state)
{
    (void)state;
    failover_run("cluster-pause", VICTIM_PAUSE);
}

static void
test_failover_server_kill(void **state)
{
    (void)state;
    failover_run("cluster-nkill", VICTIM_SERVER);
}

/*
 * SIGSTOP of one sidecar mid-run just past its holds' local deadline,
 * SIGCONT before the lease keys can age out on the server
 * (failover_run()): it suspends its partitions at once, resumes them with
 * renewals at their last revisions, and goes on with the tasks it holds:
 * no partition moves and no (task, attempt) reaches the worker twice.
 */
static void
test_failover_blip(void **state)
{
    (void)state;
    failover_run("cluster-blip", VICTIM_BLIP);
}

int
main(void)
{
#ifdef IT_CLUSTER_OPENSEARCH
    /* the failover cases that involve the store: kill -9, a zombie, a node's kill, scale 1 -> 3 -> 1 */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_tasks),
        cmocka_unit_test(test_zombie),
        cmocka_unit_test(test_failover_pause),
        cmocka_unit_test(test_failover_server_kill),
        cmocka_unit_test(test_scale),
        cmocka_unit_test(test_stop_slow_store),
    };
    if (!getenv("DLQ_TEST_OPENSEARCH_URL")) {
        fprintf(stderr, "test_it_cluster_os: DLQ_TEST_OPENSEARCH_URL must be set; failing rather than skipping\n");
        return 1;
    }
#else
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_balance_and_kill),
        cmocka_unit_test(test_zombie),
        cmocka_unit_test(test_scale),
        cmocka_unit_test(test_join_leave_fast),
        cmocka_unit_test(test_takeover_repeated),
        cmocka_unit_test(test_ttl_mismatch),
        cmocka_unit_test(test_failover_tasks),
        cmocka_unit_test(test_admin_everywhere),
        cmocka_unit_test(test_failover_server_kill),
        cmocka_unit_test(test_failover_pause),
        cmocka_unit_test(test_failover_blip),
        cmocka_unit_test(test_no_workers_merged),
        cmocka_unit_test(test_breaker_merged),
        cmocka_unit_test(test_stop_slow_store),
        cmocka_unit_test(test_spill_refused),
    };
#endif
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getenv("DLQ_TEST_ONLY")) /* one test by name, for a quick look */
        cmocka_set_test_filter(getenv("DLQ_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
