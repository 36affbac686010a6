/* cluster.c - cluster mode: the member record and partition leases in a JetStream KV bucket (KV calls on a thread of their own, decisions on the loop through lease.c), and the hooks that hand partitions to the daemon. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <nats/nats.h>

#include "cluster.h"
#include "daemon.h"
#include "lease.h"
#include "log.h"
#include "persist.h"

#define NS_PER_MS 1000000LL
#define API_WAIT_MIN_MS 250     /* a KV call's wait: lease_ms / 4 within these bounds */
#define API_WAIT_MAX_MS 5000
#define JOB_TIMEOUTS_MAX 2      /* unanswered calls in one job before the rest is skipped */
#define RENEW_TRY_MIN_MS 250    /* a renewal's try waits lease_ms / 12, at least this and at most api_wait_ms */
#define RENEW_PAUSE_MS 100      /* between two tries of one renewal */
#define MEMBER_VALUE_MAX 65536  /* bytes of a member record read back; longer ones are ignored */
#define CLOSE_WAIT_MS 5000      /* sc_cluster_close(): the last job's wait */
#define SETUP_WARN_MS 10000     /* a failing bucket set-up is logged once per this */
#define NUDGE_GAP_MS 200        /* extra read rounds asked by nudges are at least this far apart */

/*
 * The hand-off between the loop and the cluster thread is one job at a
 * time, embedded in struct sc_cluster. The loop fills it while no job is
 * out (busy false), then posts it under mu; the thread runs it (the KV
 * calls, writing the answers into the same struct) and marks it done under
 * mu, then wakes the loop with event_active(). Between post and done only
 * the thread touches the job; otherwise only the loop does: the mutex
 * orders the two. Who holds a lease meanwhile: the bucket; the loop only
 * believes it until valid_until, whatever the thread is doing.
 */
enum cl_op_kind { OP_CREATE = 0, OP_UPDATE, OP_DELETE };
enum cl_op_result { CL_OK = 0, CL_REFUSED, CL_FAILED, CL_UNANSWERED };

struct cl_op {
    uint32_t p;
    uint8_t kind;   /* enum cl_op_kind */
    uint8_t result; /* enum cl_op_result: written by the thread */
    uint64_t rev;   /* in: the expected revision (update, delete); out: the new one */
    int64_t t0;     /* mono ms the call was sent: written by the thread */
    int64_t until;  /* update: mono ms the lease stops being believed here; tries end before it */
    int64_t prior_t0; /* update: an earlier round's unanswered try of it was sent then (-1: none) */
};

struct cl_job {
    bool timer;             /* a renew round (member record written, renewals) */
    bool member_put;        /* write member.<me> with the record below */
    bool member_delete;     /* delete member.<me> (leaving) */
    bool read_view;         /* read the bucket after the calls */
    bool followup;          /* a round (renew or nudged): plan again on the fresh read at once */
    bool nudge;             /* publish <prefix>.cluster.nudge after the calls (docs/cluster.md) */
    struct sc_buf record;   /* the member record (JSON) */
    struct cl_op *ops;      /* partitions entries at most */
    size_t nops;
    /* answers */
    bool setup_ok;
    sc_status setup_status;
    char setup_err[512];
    bool view_ok;
    char (*owner)[SC_LEASE_ID_MAX + 1]; /* per partition: lease.<p>'s value, "" when free */
    uint64_t *owner_rev;
    size_t nmembers;
    char (*member_id)[SC_LEASE_ID_MAX + 1]; /* SC_LEASE_MAX_MEMBERS */
    uint8_t *member_wants;                  /* SC_LEASE_MAX_MEMBERS bitmaps */
    uint64_t bad_records;                   /* member records that could not be read */
};

/*
 * The loop's own state of one partition, besides the lease slot.
 *
 * Suspended: the hold ran out here (not renewed in time) but nothing says
 * the lease moved on: the key may still hold this member's id at the
 * revision last renewed (a renewal stalled by a leader election of the
 * bucket, a starved thread). The daemon stops at once (suspended(): not
 * valid, nothing dispatched) but keeps the partition's tasks, and the renew
 * rounds try an update at that revision (a "resume"). The update succeeds
 * only if nobody wrote the key since and it has not aged out on the server
 * (an expired key's last sequence is 0): then no other member can have
 * acquired p in between, and the daemon goes on with what it holds
 * (resumed()). A refusal, a read showing the key free or another's, or
 * susp_until ends the suspension with lost(). Who holds p meanwhile: the
 * bucket (this member's key, or nobody's); the daemon only its memory.
 */
struct cl_part {
    bool release_asked; /* release_requested() was called */
    bool quiesced;      /* sc_cluster_released() came: give it back, dispatch nothing */
    bool suspended;     /* the hold ran out here; resumes are tried (above) */
    uint64_t susp_rev;  /* the revision last renewed: what a resume expects */
    int64_t susp_until; /* mono ms: the suspension ends with lost() then */
};

struct sc_cluster {
    struct sc_daemon *d;      /* borrowed */
    char me[SC_LEASE_ID_MAX + 1];
    char bucket[256];
    uint32_t partitions;
    int64_t lease_ms, replicas, api_wait_ms;
    int64_t started_wall;
    size_t wants_bytes;
    /* loop thread */
    struct sc_lease_table t;
    struct sc_lease_slot *slots;
    struct cl_part *parts;
    uint8_t *actions;
    long *assign; /* the sticky assignment (lease.h), per partition */
    struct sc_lease_member members[SC_LEASE_MAX_MEMBERS + 1];
    char (*mid)[SC_LEASE_ID_MAX + 1];      /* the members' ids, SC_LEASE_MAX_MEMBERS + 1 */
    uint8_t *mwants;                       /* their wants, as many bitmaps */
    uint8_t *my_wants;
    uint8_t *published;   /* the wants of the last member record put */
    bool record_put;      /* a member record was put since the start */
    bool viewed;          /* a read of the bucket was applied since the start */
    bool read_asked;      /* a nudge asked for a read round (sc_lease_nudge_at() apart) */
    int64_t last_nudged;  /* mono ms the last nudged read round was posted; -1 none */
    char nudge_subject[160];
    struct sc_cluster_hooks hooks;
    struct event *timer_ev, *wake_ev, *expire_ev, *nudge_ev;
    bool busy, timer_pending, in_apply, want_kick, ready, closing;
    bool in_plan; /* kick() is planning: a hook may not post a job of its own */
    int64_t last_setup_warn;
    uint64_t renewals, failures, gained, lost, released, bad_records;
    uint64_t suspended, resumed; /* holds run out here and suspended; of them resumed */
    /* the hand-off */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool posted, done, stop;  /* under mu */
    bool hurry;               /* under mu: closing, a renewal tries once more at most */
    struct cl_job job;
    pthread_t thread;
    bool thread_started;
    /* the cluster thread (and main before it starts) */
    jsCtx *js;
    kvStore *kv;
};

/* ---- the cluster thread: KV calls only ------------------------------------------------------- */

/*
 * Binds the bucket, creating it when missing; an existing one must have
 * lease_ms as its TTL (SC_EINVAL). Any thread that may block.
 */
static sc_status
kv_setup(struct sc_cluster *c, char *err, size_t errlen)
{
    kvStore *made = NULL;
    kvStatus *st = NULL;
    jsCtx *slow = NULL;
    jsOptions o;
    natsStatus s;
    int64_t ttl;

    if (c->kv)
        return SC_OK;
    jsOptions_Init(&o);
    o.Wait = c->api_wait_ms; /* the lease calls' wait */
    if (!c->js && (s = natsConnection_JetStream(&c->js, sc_conn_nats(c->d->conn), &o)) != NATS_OK) {
        snprintf(err, errlen, "cluster: jetstream context: %s", natsStatus_GetText(s));
        return SC_EIO;
    }
    s = js_KeyValue(&c->kv, c->js, c->bucket);
    if (s == NATS_NOT_FOUND) {
        /* Making an R3 stream can take seconds on a busy cluster: a context that waits longer. */
        kvConfig kc;
        o.Wait = API_WAIT_MAX_MS;
        kvConfig_Init(&kc);
        kc.Bucket = c->bucket;
        kc.Description = "dlq-sidecar cluster: member records and partition leases";
        kc.History = 1;
        kc.TTL = c->lease_ms * NS_PER_MS;
        kc.Replicas = (int)c->replicas;
        kc.StorageType = js_FileStorage;
        s = natsConnection_JetStream(&slow, sc_conn_nats(c->d->conn), &o);
        if (s == NATS_OK)
            s = js_CreateKeyValue(&made, slow, &kc);
        kvStore_Destroy(made);
        jsCtx_Destroy(slow);
        if (s != NATS_OK && c->replicas > 1 && persist_js_unplaceable(nats_GetLastError(NULL))) {
            snprintf(err, errlen,
                     "cluster.replicas: %lld replicas for the bucket %s, but the NATS servers "
                     "cannot place them (%s; allowed: 1 on a single server, at most the JetStream "
                     "servers of the cluster)", (long long)c->replicas, c->bucket,
                     persist_js_unplaceable(nats_GetLastError(NULL)));
            return SC_EINVAL;
        }
        if (s == NATS_OK) {
            sc_log(SC_LOG_INFO, "cluster: bucket created", "bucket", c->bucket, "lease_ms",
                   sc_log_int(c->lease_ms), "replicas", sc_log_int(c->replicas), NULL);
            s = js_KeyValue(&c->kv, c->js, c->bucket);
        }
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "cluster: bucket %s: %s (%s)", c->bucket, natsStatus_GetText(s),
                 nats_GetLastError(NULL));
        c->kv = NULL;
        return SC_EIO;
    }
    if ((s = kvStore_Status(&st, c->kv)) != NATS_OK) {
        snprintf(err, errlen, "cluster: bucket %s status: %s", c->bucket, natsStatus_GetText(s));
        kvStore_Destroy(c->kv);
        c->kv = NULL;
        return SC_EIO;
    }
    ttl = kvStatus_TTL(st);
    kvStatus_Destroy(st);
    if (ttl != c->lease_ms * NS_PER_MS) {
        snprintf(err, errlen,
                 "cluster.lease_ms: %lld differs from the TTL of the existing bucket %s (%lld ms): "
                 "the TTL is the lease, so every member must use the bucket's (or delete the "
                 "bucket while no member runs)",
                 (long long)c->lease_ms, c->bucket, (long long)(ttl / NS_PER_MS));
        kvStore_Destroy(c->kv);
        c->kv = NULL;
        return SC_EINVAL;
    }
    return SC_OK;
}

/* What a create/update/delete answer means for the lease (see enum cl_op_result). */
static uint8_t
classify(natsStatus s)
{
    const char *last;

    if (s == NATS_OK)
        return CL_OK;
    if (s == NATS_ERR) { /* the server answered with an API error: nothing was stored */
        last = nats_GetLastError(NULL);
        return last && strstr(last, "wrong last sequence") ? CL_REFUSED : CL_FAILED;
    }
    if (s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_CLOSED || s == NATS_INVALID_ARG)
        return CL_FAILED; /* never reached a server */
    return CL_UNANSWERED; /* a timeout, a lost connection: it may have been stored */
}

/* Deletes key if its last revision is rev (a DEL marker with Nats-Expected-Last-Subject-Sequence). */
static natsStatus
delete_at(struct sc_cluster *c, const char *key, uint64_t rev)
{
    char subj[512];
    natsMsg *m = NULL;
    jsPubOptions po;
    jsErrCode je = 0;
    natsStatus s;

    snprintf(subj, sizeof(subj), "$KV.%s.%s", c->bucket, key);
    jsPubOptions_Init(&po);
    po.ExpectLastSubjectSeq = rev;
    po.MaxWait = c->api_wait_ms;
    s = natsMsg_Create(&m, subj, NULL, NULL, 0);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
    if (s == NATS_OK)
        s = js_PublishMsg(NULL, c->js, m, &po, &je);
    natsMsg_Destroy(m);
    return s;
}

/*
 * Updates key to my id if its last revision is rev, waiting wait_ms for the
 * PubAck (a KV update with a wait of its own); *newrev is the new revision.
 */
static natsStatus
update_at(struct sc_cluster *c, const char *key, uint64_t rev, int64_t wait_ms, uint64_t *newrev)
{
    char subj[512];
    natsMsg *m = NULL;
    jsPubOptions po;
    jsPubAck *pa = NULL;
    jsErrCode je = 0;
    natsStatus s;

    snprintf(subj, sizeof(subj), "$KV.%s.%s", c->bucket, key);
    jsPubOptions_Init(&po);
    po.ExpectLastSubjectSeq = rev;
    po.MaxWait = wait_ms;
    s = natsMsg_Create(&m, subj, NULL, c->me, (int)strlen(c->me));
    if (s == NATS_OK)
        s = js_PublishMsg(&pa, c->js, m, &po, &je);
    if (s == NATS_OK)
        *newrev = pa->Sequence;
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return s;
}

/* True when key holds my id now; *rev is its revision. */
static bool
key_is_mine(struct sc_cluster *c, const char *key, uint64_t *rev)
{
    kvEntry *e = NULL;
    bool mine;

    if (kvStore_Get(&e, c->kv, key) != NATS_OK)
        return false;
    mine = kvEntry_ValueLen(e) == (int)strlen(c->me) &&
           memcmp(kvEntry_Value(e), c->me, strlen(c->me)) == 0;
    *rev = kvEntry_Revision(e);
    kvEntry_Destroy(e);
    return mine;
}

/*
 * Renews one lease, trying again while the lease is still believed here:
 * a stream leader election after a node's loss leaves the bucket
 * unanswering for a few seconds, and one long wait would outlast the
 * lease (every member would lose every partition at once). Each try waits
 * lease_ms / 12 (the last ones what is left before op->until). A try that
 * went unanswered, in this round or an earlier one (op->prior_t0), may
 * have landed: when a later one is refused ("wrong last sequence") the key
 * is read, and my id at a newer revision is that write, valid from the
 * first unanswered try's t0 (it was stored at or after it). Cluster thread.
 */
static void
renew_op(struct sc_cluster *c, struct cl_op *op, const char *key)
{
    int64_t wait = c->lease_ms / 12, first_t0 = op->prior_t0;
    uint64_t rev = 0;

    wait = wait < RENEW_TRY_MIN_MS ? RENEW_TRY_MIN_MS : wait > c->api_wait_ms ? c->api_wait_ms : wait;
    for (;;) {
        int64_t left = op->until - sc_now_mono_ms();
        natsStatus s;
        bool hurry;

        op->t0 = sc_now_mono_ms();
        /* the last tries wait only what is left: an answer after `until` is of no use */
        s = update_at(c, key, op->rev, left > wait || left <= 0 ? wait : left, &rev);
        op->result = classify(s);
        if (op->result == CL_OK) {
            op->rev = rev;
            return;
        }
        if (op->result == CL_REFUSED) {
            if (first_t0 >= 0 && key_is_mine(c, key, &rev) && rev > op->rev) {
                op->result = CL_OK; /* an unanswered try landed */
                op->rev = rev;
                op->t0 = first_t0;
            }
            return;
        }
        if (s == NATS_ERR)
            return; /* another API error: nothing stored, trying again will not help */
        if (op->result == CL_UNANSWERED && first_t0 < 0)
            first_t0 = op->t0;
        pthread_mutex_lock(&c->mu);
        hurry = c->hurry;
        pthread_mutex_unlock(&c->mu);
        if (hurry || op->until - sc_now_mono_ms() < RENEW_PAUSE_MS + RENEW_TRY_MIN_MS)
            break;
        {
            struct timespec ts = {0, RENEW_PAUSE_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (first_t0 >= 0) { /* some try may have landed: the loop keeps its t0 (sc_lease_unanswered()) */
        op->result = CL_UNANSWERED;
        op->t0 = first_t0;
    }
}

/* Runs one create/update/delete of a lease key, recording t0, the answer and the new revision. */
static void
run_op(struct sc_cluster *c, struct cl_op *op)
{
    char key[32];
    uint64_t rev = 0;
    int len = (int)strlen(c->me);
    natsStatus s;

    snprintf(key, sizeof(key), "lease.%u", op->p);
    op->t0 = sc_now_mono_ms();
    if (op->kind == OP_UPDATE) {
        renew_op(c, op, key);
        return;
    }
    if (op->kind == OP_CREATE)
        s = kvStore_Create(&rev, c->kv, key, c->me, len);
    else
        s = delete_at(c, key, op->rev);
    op->result = classify(s);
    if (op->result == CL_OK && op->kind != OP_DELETE)
        op->rev = rev;
}

/* Reads one member record (its wants) into slot i of the job; false when malformed. */
static bool
read_record(struct cl_job *j, size_t i, size_t wants_bytes, uint32_t partitions, kvEntry *e)
{
    uint8_t *wants = j->member_wants + i * wants_bytes;
    json_t *v, *arr;
    size_t k;
    json_t *x;
    bool ok;

    memset(wants, 0, wants_bytes);
    if (kvEntry_ValueLen(e) > MEMBER_VALUE_MAX)
        return false;
    v = json_loadb((const char *)kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
    arr = json_object_get(v, "wants");
    ok = json_is_object(v) && (!arr || json_is_array(arr));
    json_array_foreach(arr, k, x) {
        json_int_t p = json_integer_value(x);
        if (json_is_integer(x) && p >= 0 && p < (json_int_t)partitions)
            sc_lease_set_bit(wants, (size_t)p);
    }
    json_decref(v);
    return ok;
}

/* Takes one entry of the bucket into the job's view. */
static void
view_entry(struct sc_cluster *c, struct cl_job *j, kvEntry *e)
{
    const char *key = kvEntry_Key(e);
    bool put = kvEntry_Operation(e) == kvOp_Put;
    char *end = NULL;

    if (strncmp(key, "lease.", 6) == 0) {
        unsigned long p = strtoul(key + 6, &end, 10);
        int n = kvEntry_ValueLen(e);
        if (!end || *end || p >= c->partitions || !put || n <= 0 || n > SC_LEASE_ID_MAX)
            return; /* a delete marker: free; another deployment's partition count: ignored */
        memcpy(j->owner[p], kvEntry_Value(e), (size_t)n);
        j->owner[p][n] = '\0';
        j->owner_rev[p] = kvEntry_Revision(e);
    } else if (strncmp(key, "member.", 7) == 0 && put && j->nmembers < SC_LEASE_MAX_MEMBERS &&
               strlen(key + 7) <= SC_LEASE_ID_MAX) {
        snprintf(j->member_id[j->nmembers], SC_LEASE_ID_MAX + 1, "%s", key + 7);
        if (!read_record(j, j->nmembers, c->wants_bytes, c->partitions, e))
            j->bad_records++;
        j->nmembers++;
    }
}

/* Reads every key of the bucket (a watcher's initial values, then stops). */
static bool
read_view(struct sc_cluster *c, struct cl_job *j)
{
    kvWatcher *w = NULL;
    kvWatchOptions wo;
    kvEntry *e = NULL;
    natsStatus s;

    for (uint32_t p = 0; p < c->partitions; p++) {
        j->owner[p][0] = '\0';
        j->owner_rev[p] = 0;
    }
    j->nmembers = 0;
    kvWatchOptions_Init(&wo);
    wo.Timeout = c->api_wait_ms;
    if (kvStore_WatchAll(&w, c->kv, &wo) != NATS_OK)
        return false;
    while ((s = kvWatcher_Next(&e, w, c->api_wait_ms)) == NATS_OK && e) {
        view_entry(c, j, e);
        kvEntry_Destroy(e);
        e = NULL;
    }
    kvWatcher_Destroy(w);
    return s == NATS_OK;
}

/* Runs the job: set-up when needed, the lease calls, the member record, the read. */
static void
run_job(struct sc_cluster *c, struct cl_job *j)
{
    char key[SC_LEASE_ID_MAX + 16];
    unsigned timeouts = 0;

    j->view_ok = false;
    j->setup_status = kv_setup(c, j->setup_err, sizeof(j->setup_err));
    j->setup_ok = j->setup_status == SC_OK;
    if (!j->setup_ok) {
        for (size_t i = 0; i < j->nops; i++)
            j->ops[i].result = CL_FAILED;
        return;
    }
    for (size_t i = 0; i < j->nops; i++) {
        if (timeouts >= JOB_TIMEOUTS_MAX) {
            j->ops[i].result = CL_FAILED; /* not sent */
            continue;
        }
        run_op(c, &j->ops[i]);
        timeouts += j->ops[i].result == CL_UNANSWERED;
    }
    snprintf(key, sizeof(key), "member.%s", c->me);
    if (j->member_put)
        kvStore_Put(NULL, c->kv, key, j->record.data, (int)j->record.len);
    if (j->member_delete)
        kvStore_Delete(c->kv, key);
    if (j->nudge && natsConnection_Status(sc_conn_nats(c->d->conn)) == NATS_CONN_STATUS_CONNECTED) {
        /* after the writes: a member that reads on it sees them */
        natsConnection *nc = sc_conn_nats(c->d->conn);
        natsConnection_Publish(nc, c->nudge_subject, c->me, (int)strlen(c->me));
        if (j->member_delete)
            natsConnection_FlushTimeout(nc, c->api_wait_ms); /* leaving: the connection closes next */
    }
    if (j->read_view && timeouts < JOB_TIMEOUTS_MAX)
        j->view_ok = read_view(c, j);
}

static void *
thread_main(void *arg)
{
    struct sc_cluster *c = arg;

    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->posted && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (!c->posted)
            break; /* stop, nothing left to run */
        pthread_mutex_unlock(&c->mu);
        run_job(c, &c->job);
        pthread_mutex_lock(&c->mu);
        c->posted = false;
        c->done = true;
        pthread_cond_broadcast(&c->cv);
        if (c->wake_ev)
            event_active(c->wake_ev, EV_READ, 0);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- the loop: apply answers, plan, post ---------------------------------------------------- */

static void arm_expiry(struct sc_cluster *c, int64_t now);
static void kick(struct sc_cluster *c, bool timer);

/* The hold of p ended (run out, refused, given back): tell the daemon unless it gave it back itself. */
static void
hold_ended(struct sc_cluster *c, uint32_t p, bool tell, const char *why)
{
    bool quiesced = c->parts[p].quiesced;

    c->parts[p] = (struct cl_part){0};
    if (quiesced)
        return; /* sc_cluster_released(): the daemon already let go */
    c->lost++;
    sc_log(SC_LOG_INFO, "cluster: partition lost", "partition", sc_log_int(p), "why", why, NULL);
    if (tell && c->hooks.lost && !c->closing)
        c->hooks.lost(c->hooks.ctx, p);
}

/*
 * p's hold ran out here (its local deadline passed, answer or none): the
 * hold is dropped at once (sc_cluster_may_dispatch() was already false).
 * When the daemon can suspend (the suspended and resumed hooks) and p is
 * not being given back, p is suspended (struct cl_part) rather than lost:
 * the daemon keeps its tasks while resumes are tried until the key can
 * have aged out on the server (valid_until + guard) and one round more.
 */
static void
hold_lapsed(struct sc_cluster *c, uint32_t p, int64_t now)
{
    struct cl_part *cp = &c->parts[p];
    uint64_t rev = c->slots[p].revision;
    int64_t until = c->slots[p].valid_until + sc_lease_guard_ms(c->lease_ms) + c->lease_ms / 3;

    sc_lease_dropped(&c->t, p);
    c->failures++;
    if (!c->hooks.suspended || !c->hooks.resumed || c->closing || cp->release_asked || cp->quiesced ||
        now >= until) { /* noticed too late (a process stopped that long): the key may be gone */
        hold_ended(c, p, true, "not renewed in time");
        return;
    }
    *cp = (struct cl_part){.suspended = true, .susp_rev = rev, .susp_until = until};
    c->suspended++;
    sc_log(SC_LOG_INFO, "cluster: partition suspended: not renewed in time; trying to resume it",
           "partition", sc_log_int(p), "revision", sc_log_int((int64_t)rev), "for_ms",
           sc_log_int(until - now), NULL);
    c->hooks.suspended(c->hooks.ctx, p);
}

/* The suspension of p ends without a resume (why): the daemon forgets p. */
static void
forsake(struct sc_cluster *c, uint32_t p, const char *why)
{
    c->parts[p] = (struct cl_part){0};
    c->lost++;
    sc_log(SC_LOG_INFO, "cluster: partition lost", "partition", sc_log_int(p), "why", why, NULL);
    if (c->hooks.lost && !c->closing)
        c->hooks.lost(c->hooks.ctx, p);
}

static void
announce_gain(struct sc_cluster *c, uint32_t p, int64_t now)
{
    bool resumed = c->parts[p].suspended;

    if (!sc_lease_valid(&c->t, p, now)) { /* an answer that came too late to be of use */
        sc_lease_dropped(&c->t, p);
        return; /* a suspension goes on: the next round tries again */
    }
    c->parts[p] = (struct cl_part){0};
    if (resumed) {
        /* The key kept my id at the revision renewed last: nobody held p since. */
        c->resumed++;
        sc_log(SC_LOG_INFO, "cluster: partition resumed: the lease was still this member's",
               "partition", sc_log_int(p), "revision", sc_log_int((int64_t)c->slots[p].revision),
               NULL);
        if (!c->closing)
            c->hooks.resumed(c->hooks.ctx, p, c->slots[p].revision);
        return;
    }
    c->gained++;
    sc_log(SC_LOG_DEBUG, "cluster: partition gained", "partition", sc_log_int(p), "revision",
           sc_log_int((int64_t)c->slots[p].revision), NULL);
    if (c->hooks.gained && !c->closing)
        c->hooks.gained(c->hooks.ctx, p, c->slots[p].revision);
}

/* Applies the answers of the job's lease calls to the table. */
static void
apply_ops(struct sc_cluster *c, int64_t now)
{
    for (size_t i = 0; i < c->job.nops; i++) {
        const struct cl_op *op = &c->job.ops[i];
        bool renew = op->kind == OP_UPDATE;
        if (op->kind == OP_DELETE) {
            if (sc_lease_dropped(&c->t, op->p)) {
                c->released++;
                hold_ended(c, op->p, false, "released");
            }
            continue;
        }
        c->renewals += renew && op->result == CL_OK;
        c->failures += renew && op->result != CL_OK;
        if (op->result == CL_OK) {
            if (sc_lease_won(&c->t, op->p, op->rev, op->t0))
                announce_gain(c, op->p, now);
        } else if (op->result == CL_REFUSED) {
            if (sc_lease_refused(&c->t, op->p))
                hold_ended(c, op->p, true, "renewal refused: the lease moved on");
            else if (c->parts[op->p].suspended)
                forsake(c, op->p, "resume refused: the lease moved on or aged out");
        } else if (op->result == CL_UNANSWERED)
            sc_lease_unanswered(&c->t, op->p, op->t0);
    }
}

/* Takes the job's read of the bucket as the view: members (me always among them) and leases. */
static void
apply_view(struct sc_cluster *c, int64_t now)
{
    struct cl_job *j = &c->job;
    size_t n = 0;
    bool me_seen = false;

    for (size_t i = 0; i < j->nmembers; i++) {
        memcpy(c->mid[n], j->member_id[i], sizeof(c->mid[n]));
        memcpy(c->mwants + n * c->wants_bytes, j->member_wants + i * c->wants_bytes, c->wants_bytes);
        c->members[n] = (struct sc_lease_member){.id = c->mid[n], .wants = c->mwants + n * c->wants_bytes};
        me_seen = me_seen || strcmp(c->mid[n], c->me) == 0;
        n++;
    }
    if (!me_seen) /* my record not written yet, or aged out: I am live all the same */
        c->members[n++] = (struct sc_lease_member){.id = c->me, .wants = c->my_wants};
    sc_lease_members_sort(c->members, &n);
    c->t.nmembers = n;
    if (j->bad_records > c->bad_records)
        sc_log(SC_LOG_WARN, "cluster: member records that cannot be read (counted as members without wants)",
               "bucket", c->bucket, "count", sc_log_int((int64_t)j->bad_records), NULL);
    c->bad_records = j->bad_records;
    c->viewed = true;
    for (uint32_t p = 0; p < c->partitions; p++)
        if (sc_lease_view(&c->t, p, j->owner[p], j->owner_rev[p], now))
            announce_gain(c, p, now);
}

/* The job came back: apply it, then post what it left to do. Loop thread. */
static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct sc_cluster *c = arg;
    int64_t now = sc_now_mono_ms();
    bool done, followup;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&c->mu);
    done = c->done;
    c->done = false;
    pthread_mutex_unlock(&c->mu);
    if (!done)
        return;
    c->busy = false;
    c->in_apply = true;
    followup = c->job.followup;
    if (!c->job.setup_ok) {
        c->ready = false;
        if (now - c->last_setup_warn >= SETUP_WARN_MS || c->last_setup_warn == 0) {
            sc_log(c->job.setup_status == SC_EINVAL ? SC_LOG_ERROR : SC_LOG_WARN,
                   "cluster: bucket not set up; retrying", "error", c->job.setup_err, NULL);
            c->last_setup_warn = now;
        }
    }
    apply_ops(c, now);
    if (c->job.view_ok)
        apply_view(c, now);
    c->ready = c->job.setup_ok && c->job.view_ok;
    c->in_apply = false;
    arm_expiry(c, now);
    if (c->timer_pending)
        kick(c, true);
    else if ((followup && c->job.view_ok) || c->want_kick || c->read_asked)
        kick(c, false); /* acquisitions and releases the new view calls for, at once */
}

/* The renew round. Loop thread. */
static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kick(arg, true);
}

/* A hold's local deadline: stop at once, answer or none. Loop thread. */
static void
on_expire(evutil_socket_t fd, short what, void *arg)
{
    struct sc_cluster *c = arg;
    int64_t now = sc_now_mono_ms();
    bool done, lapsed = false;

    (void)fd;
    (void)what;
    /* A job answered but not applied yet may hold the renewals that keep these holds. */
    pthread_mutex_lock(&c->mu);
    done = c->done;
    pthread_mutex_unlock(&c->mu);
    if (done && !c->in_apply) {
        on_wake(-1, 0, c); /* applies it, re-arms this event */
        now = sc_now_mono_ms();
    }
    for (uint32_t p = 0; p < c->partitions; p++)
        if (c->slots[p].held && now >= c->slots[p].valid_until) {
            hold_lapsed(c, p, now);
            lapsed = true;
        }
    arm_expiry(c, now);
    if (lapsed && !c->busy)
        kick(c, false); /* the resumes go out now, not at the next round */
}

/* Arms the expiry event at the earliest valid_until of the holds. */
static void
arm_expiry(struct sc_cluster *c, int64_t now)
{
    int64_t first = INT64_MAX;
    struct timeval tv;

    for (uint32_t p = 0; p < c->partitions; p++)
        if (c->slots[p].held && c->slots[p].valid_until < first)
            first = c->slots[p].valid_until;
    if (first == INT64_MAX) {
        event_del(c->expire_ev);
        return;
    }
    first = first > now ? first - now : 0;
    tv.tv_sec = (time_t)(first / 1000);
    tv.tv_usec = (suseconds_t)(first % 1000) * 1000;
    event_add(c->expire_ev, &tv);
}

/*
 * A nudge on <prefix>.cluster.nudge (body: the sender's member id): another
 * member put a record asking for more, gave leases back or left. Sets up
 * one extra read round (no renewal, no record unless its wants grew), at
 * once or NUDGE_GAP_MS after the last one: a forged nudge costs at most a
 * read of the bucket per NUDGE_GAP_MS. Loop thread.
 */
static void
on_nudge(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    struct sc_cluster *c = d->cluster;
    size_t mlen;
    int64_t now, wait;
    struct timeval tv;

    if (!c || c->closing || evtimer_pending(c->nudge_ev, NULL))
        return; /* a read round is set up already */
    mlen = strlen(c->me);
    if (natsMsg_GetDataLength(m) == (int)mlen && memcmp(natsMsg_GetData(m), c->me, mlen) == 0)
        return; /* my own */
    now = sc_now_mono_ms();
    wait = sc_lease_nudge_at(c->last_nudged, now, NUDGE_GAP_MS) - now;
    tv.tv_sec = (time_t)(wait / 1000);
    tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
    evtimer_add(c->nudge_ev, &tv);
}

/* The read round a nudge set up. Loop thread. */
static void
on_nudge_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sc_cluster *c = arg;

    (void)fd;
    (void)what;
    c->last_nudged = sc_now_mono_ms();
    c->read_asked = true;
    kick(c, false);
}

/* Writes this member's record: id, start time, the partitions it owns and those it wants. */
static void
write_record(struct sc_cluster *c, int64_t now, struct sc_buf *b)
{
    struct sc_jw w;

    sc_buf_reset(b);
    sc_jw_init(&w, b);
    sc_jw_open(&w, NULL, '{');
    sc_jw_str(&w, "id", c->me);
    sc_jw_time(&w, "started_at", c->started_wall);
    sc_jw_open(&w, "partitions", '[');
    for (uint32_t p = 0; p < c->partitions; p++)
        if (sc_lease_valid(&c->t, p, now))
            sc_jw_int(&w, NULL, p);
    sc_jw_close(&w, ']');
    sc_lease_wants(&c->t, c->my_wants);
    sc_jw_open(&w, "wants", '[');
    for (uint32_t p = 0; p < c->partitions; p++)
        if (sc_lease_bit(c->my_wants, p))
            sc_jw_int(&w, NULL, p);
    sc_jw_close(&w, ']');
    sc_jw_close(&w, '}');
}

/* Acts on the plan's verdict for p (loss, release request) and queues its call in the job. */
static void
plan_partition(struct sc_cluster *c, uint32_t p, unsigned act, bool timer)
{
    struct cl_part *cp = &c->parts[p];
    struct cl_job *j = &c->job;

    if (act & SC_LEASE_LOST) {
        hold_lapsed(c, p, sc_now_mono_ms());
        return;
    }
    if ((act & SC_LEASE_RELEASE) && !cp->release_asked && !cp->quiesced) {
        cp->release_asked = true;
        sc_log(SC_LOG_DEBUG, "cluster: partition wanted elsewhere: quiescing", "partition",
               sc_log_int(p), NULL);
        if (c->hooks.release_requested)
            c->hooks.release_requested(c->hooks.ctx, p);
        else
            cp->quiesced = true; /* nothing to quiesce until the daemon says otherwise */
    }
    if (c->slots[p].held && cp->quiesced)
        j->ops[j->nops++] = (struct cl_op){.p = p, .kind = OP_DELETE, .rev = c->slots[p].revision};
    else if ((act & SC_LEASE_RENEW) && timer)
        j->ops[j->nops++] = (struct cl_op){.p = p, .kind = OP_UPDATE, .rev = c->slots[p].revision,
                                           .until = c->slots[p].valid_until,
                                           .prior_t0 = c->slots[p].unanswered_t0};
    else if (act & SC_LEASE_ACQUIRE)
        j->ops[j->nops++] = (struct cl_op){.p = p, .kind = OP_CREATE};
}

/*
 * Ends the suspensions that can no longer resume (struct cl_part): past
 * susp_until, or the last read shows the key free (aged out: anybody may
 * take it now) or another member's. Before planning, so that the plan may
 * acquire p again at once (a fresh claim: the store is read again). Loop
 * thread.
 */
static void
end_suspensions(struct sc_cluster *c, int64_t now)
{
    for (uint32_t p = 0; p < c->partitions; p++) {
        const char *owner = c->slots[p].owner;
        if (!c->parts[p].suspended || c->slots[p].held)
            continue;
        if (now >= c->parts[p].susp_until)
            forsake(c, p, "not resumed in time");
        else if (!owner[0])
            forsake(c, p, "the lease aged out before it could be resumed");
        else if (strcmp(owner, c->me) != 0)
            forsake(c, p, "another member holds the lease");
    }
}

/*
 * Queues a resume of each suspended partition: an update of lease.<p> at
 * the revision renewed last, tried again until susp_until or one round
 * from now (renew_op()). Loop thread.
 */
static void
add_resumes(struct sc_cluster *c, int64_t now)
{
    struct cl_job *j = &c->job;

    for (uint32_t p = 0; p < c->partitions; p++) {
        const struct cl_part *cp = &c->parts[p];
        const struct sc_lease_slot *sl = &c->slots[p];
        int64_t until = now + c->lease_ms / 3;
        uint64_t rev = cp->susp_rev;
        if (!cp->suspended || sl->held || j->nops >= c->partitions)
            continue;
        /*
         * A renewal of mine that went unanswered landed after all (the read
         * shows my id at a newer revision): the chain goes on from it. While
         * held, only renewals (updates in the chain) are sent for p.
         */
        if (sl->unanswered_t0 >= 0 && sl->view_rev > rev && strcmp(sl->owner, c->me) == 0)
            rev = sl->view_rev;
        j->ops[j->nops++] = (struct cl_op){.p = p, .kind = OP_UPDATE, .rev = rev,
                                           .until = until < cp->susp_until ? until : cp->susp_until,
                                           .prior_t0 = c->slots[p].unanswered_t0};
    }
}

/*
 * Plans at now and posts a job: on the renew round (timer) the member
 * record and every renewal; otherwise only acquisitions and releases, and
 * the member record when its wants grew (or none was put since the start):
 * then it nudges the others. A read round a nudge asked for (read_asked)
 * is posted even with nothing to do; otherwise nothing is posted without
 * a call to make. Before the first read only a read goes out. A job out
 * already: the round waits for it.
 */
static void
kick(struct sc_cluster *c, bool timer)
{
    struct cl_job *j = &c->job;
    int64_t now = sc_now_mono_ms();
    bool read, grew, put, deletes = false;

    if (c->closing)
        return; /* sc_cluster_close() posts the last job itself */
    if (c->busy || c->in_apply) {
        c->timer_pending = c->timer_pending || timer;
        c->want_kick = c->want_kick || c->in_apply || !timer;
        return;
    }
    read = c->read_asked;
    c->timer_pending = false;
    c->want_kick = false;
    c->read_asked = false;
    j->nops = 0;
    end_suspensions(c, now); /* before the plan: it may acquire p again at once */
    sc_lease_plan(&c->t, now, c->actions);
    c->in_plan = true; /* a hook that answers at once (sc_cluster_released()) must not plan again */
    for (uint32_t p = 0; p < c->partitions && (c->viewed || timer); p++)
        plan_partition(c, p, c->actions[p], timer);
    c->in_plan = false;
    add_resumes(c, now); /* last: a held lease's renewal never waits behind a resume */
    arm_expiry(c, now);
    for (size_t i = 0; i < j->nops; i++)
        deletes = deletes || j->ops[i].kind == OP_DELETE;
    sc_lease_wants(&c->t, c->my_wants);
    grew = sc_lease_wants_grew(c->published, c->my_wants, c->partitions);
    put = timer || (c->viewed && (grew || !c->record_put));
    if (!timer && !read && !put && j->nops == 0)
        return;
    j->timer = timer;
    j->followup = timer || read;
    j->member_put = put;
    j->member_delete = false;
    j->nudge = (put && grew) || deletes; /* holders give back at once, the wanting take at once */
    j->read_view = true;
    if (put) {
        write_record(c, now, &j->record);
        memcpy(c->published, c->my_wants, c->wants_bytes);
        c->record_put = true;
    }
    c->busy = true;
    pthread_mutex_lock(&c->mu);
    c->posted = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* ---- set-up and the public calls ------------------------------------------------------------- */

/* The default member id: <hostname>-<pid>-<8 hex random>, hostname cut and cleaned to a token. */
static void
default_member_id(char *out, size_t outlen)
{
    char host[256] = "host";
    uint32_t r = 0;

    if (gethostname(host, sizeof(host)) != 0 || !host[0])
        snprintf(host, sizeof(host), "host");
    host[40] = '\0';
    for (char *h = host; *h; h++)
        if (!((*h >= 'A' && *h <= 'Z') || (*h >= 'a' && *h <= 'z') || (*h >= '0' && *h <= '9') ||
              *h == '_' || *h == '-'))
            *h = '-';
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint32_t)sc_hash64((uint64_t)sc_now_wall_ms(), host, strlen(host));
    snprintf(out, outlen, "%s-%ld-%08x", host, (long)getpid(), (unsigned)r);
}

/* Allocates the tables of c for its partition count. */
static void
alloc_tables(struct sc_cluster *c, int64_t now)
{
    size_t P = c->partitions;

    c->wants_bytes = SC_LEASE_WANTS_BYTES(P);
    c->slots = sc_xcalloc(P, sizeof(*c->slots));
    c->parts = sc_xcalloc(P, sizeof(*c->parts));
    c->actions = sc_xcalloc(P, 1);
    c->mid = sc_xcalloc(SC_LEASE_MAX_MEMBERS + 1, sizeof(*c->mid));
    c->mwants = sc_xcalloc(SC_LEASE_MAX_MEMBERS + 1, c->wants_bytes);
    c->my_wants = sc_xcalloc(1, c->wants_bytes);
    c->published = sc_xcalloc(1, c->wants_bytes);
    for (size_t p = 0; p < P; p++)
        sc_lease_slot_init(&c->slots[p], now);
    c->members[0] = (struct sc_lease_member){.id = c->me, .wants = c->my_wants};
    c->assign = sc_xcalloc(P, sizeof(*c->assign));
    c->t = (struct sc_lease_table){.me = c->me, .members = c->members, .nmembers = 1,
                                   .slots = c->slots, .partitions = P, .lease_ms = c->lease_ms,
                                   .assign = c->assign};
    c->job.ops = sc_xcalloc(P, sizeof(*c->job.ops));
    c->job.owner = sc_xcalloc(P, sizeof(*c->job.owner));
    c->job.owner_rev = sc_xcalloc(P, sizeof(*c->job.owner_rev));
    c->job.member_id = sc_xcalloc(SC_LEASE_MAX_MEMBERS, sizeof(*c->job.member_id));
    c->job.member_wants = sc_xcalloc(SC_LEASE_MAX_MEMBERS, c->wants_bytes);
    sc_buf_init(&c->job.record, 16 * (size_t)P + 1024);
}

static void
free_cluster(struct sc_cluster *c)
{
    if (c->timer_ev)
        event_free(c->timer_ev);
    if (c->wake_ev)
        event_free(c->wake_ev);
    if (c->expire_ev)
        event_free(c->expire_ev);
    if (c->nudge_ev)
        event_free(c->nudge_ev);
    kvStore_Destroy(c->kv);
    jsCtx_Destroy(c->js);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    sc_buf_destroy(&c->job.record);
    free(c->job.ops);
    free(c->job.owner);
    free(c->job.owner_rev);
    free(c->job.member_id);
    free(c->job.member_wants);
    free(c->slots);
    free(c->parts);
    free(c->actions);
    free(c->assign);
    free(c->mid);
    free(c->mwants);
    free(c->my_wants);
    free(c->published);
    free(c);
}

sc_status
sc_cluster_open(struct sc_daemon *d, char *err, size_t errlen)
{
    const struct config *cfg = d->cfg;
    struct sc_cluster *c;
    struct timeval tv;
    int64_t now = sc_now_mono_ms(), renew;
    sc_status st;

    d->cluster = NULL;
    if (!cfg->cluster_enabled)
        return SC_OK;
    c = sc_xcalloc(1, sizeof(*c));
    c->d = d;
    if (cfg->cluster_member_id[0])
        snprintf(c->me, sizeof(c->me), "%s", cfg->cluster_member_id);
    else
        default_member_id(c->me, sizeof(c->me));
    snprintf(c->bucket, sizeof(c->bucket), "%s", cfg->cluster_bucket);
    c->partitions = (uint32_t)cfg->cluster_partitions;
    c->lease_ms = cfg->cluster_lease_ms;
    c->replicas = cfg->cluster_replicas;
    c->api_wait_ms = c->lease_ms / 4 < API_WAIT_MIN_MS   ? API_WAIT_MIN_MS
                     : c->lease_ms / 4 > API_WAIT_MAX_MS ? API_WAIT_MAX_MS
                                                         : c->lease_ms / 4;
    c->started_wall = sc_now_wall_ms();
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    alloc_tables(c, now);
    /*
     * Reachable now: a bucket that does not fit stops start-up here. Any
     * other failure (a timeout while a new cluster elects its leaders, no
     * JetStream yet) is the thread's to retry: health says ready false.
     */
    if (sc_conn_connected(d->conn) && (st = kv_setup(c, err, errlen)) != SC_OK) {
        if (st == SC_EINVAL) {
            free_cluster(c);
            return st;
        }
        sc_log(SC_LOG_WARN, "cluster: bucket not set up yet; retrying", "error", err, NULL);
        err[0] = '\0';
    }
    c->wake_ev = event_new(d->base, -1, 0, on_wake, c);
    c->timer_ev = event_new(d->base, -1, EV_PERSIST, on_timer, c);
    c->expire_ev = event_new(d->base, -1, 0, on_expire, c);
    c->nudge_ev = event_new(d->base, -1, 0, on_nudge_timer, c);
    c->last_nudged = -1;
    snprintf(c->nudge_subject, sizeof(c->nudge_subject), "%s.cluster.nudge", cfg->subjects_prefix);
    if (pthread_create(&c->thread, NULL, thread_main, c) != 0) {
        snprintf(err, errlen, "cluster: cannot start the cluster thread");
        free_cluster(c);
        return SC_EIO;
    }
    c->thread_started = true;
    renew = c->lease_ms / 3;
    tv.tv_sec = (time_t)(renew / 1000);
    tv.tv_usec = (suseconds_t)(renew % 1000) * 1000;
    event_add(c->timer_ev, &tv);
    d->cluster = c;
    if (sc_conn_subscribe(d->conn, c->nudge_subject, NULL, 0, on_nudge, d, NULL, err, errlen) != SC_OK) {
        sc_log(SC_LOG_WARN, "cluster: cannot subscribe the nudges; joins and leaves wait for the "
               "renew rounds", "error", err, NULL);
        err[0] = '\0';
    }
    sc_log(SC_LOG_INFO, "cluster: member started", "member_id", c->me, "bucket", c->bucket,
           "partitions", sc_log_int(c->partitions), "lease_ms", sc_log_int(c->lease_ms), NULL);
    c->read_asked = true;
    kick(c, false); /* the first read at once; the record (its wants) and acquisitions follow on it */
    return SC_OK;
}

void
sc_cluster_set_hooks(struct sc_daemon *d, const struct sc_cluster_hooks *h)
{
    if (d->cluster && h)
        d->cluster->hooks = *h;
}

void
sc_cluster_released(struct sc_daemon *d, uint32_t p)
{
    struct sc_cluster *c = d->cluster;

    if (!c || p >= c->partitions || !c->slots[p].held || c->parts[p].quiesced)
        return;
    c->parts[p].quiesced = true;
    if (c->in_plan)
        return; /* called from release_requested() while planning: the delete joins this job */
    kick(c, false); /* give it back now (or once the job out comes back) */
}

bool
sc_cluster_is_member(const struct sc_daemon *d, const char *id)
{
    const struct sc_cluster *c = d->cluster;

    if (!c || !id)
        return false;
    for (size_t i = 0; i < c->t.nmembers; i++)
        if (strcmp(c->t.members[i].id, id) == 0)
            return true;
    return false;
}

bool
sc_cluster_may_dispatch(const struct sc_daemon *d, uint32_t p, int64_t now_mono)
{
    const struct sc_cluster *c = d->cluster;

    if (!c)
        return true;
    return sc_lease_valid(&c->t, p, now_mono) && !c->parts[p].quiesced;
}

uint64_t
sc_cluster_lease_revision(const struct sc_daemon *d, uint32_t p)
{
    const struct sc_cluster *c = d->cluster;

    if (!c || p >= c->partitions || !c->slots[p].held)
        return 0;
    return c->slots[p].revision;
}

struct sc_cluster_stats
sc_cluster_get_stats(const struct sc_daemon *d)
{
    const struct sc_cluster *c = d->cluster;
    struct sc_cluster_stats st = {.member_id = ""};
    int64_t now = sc_now_mono_ms();

    if (!c)
        return st;
    st.enabled = true;
    st.ready = c->ready;
    st.member_id = c->me;
    st.partitions = c->partitions;
    st.members = c->t.nmembers;
    for (uint32_t p = 0; p < c->partitions; p++)
        st.partitions_owned += sc_cluster_may_dispatch(d, p, now);
    st.lease_renewals = c->renewals;
    st.lease_failures = c->failures;
    st.gained = c->gained;
    st.lost = c->lost;
    st.released = c->released;
    st.suspended = c->suspended;
    st.resumed = c->resumed;
    return st;
}

/* Writes the leases held (health's detail): partition, revision, since and until in mono ms. */
static void
leases_json(const struct sc_daemon *d, struct sc_jw *w, int64_t now)
{
    const struct sc_cluster *c = d->cluster;

    sc_jw_int(w, "mono_ms", now);
    sc_jw_open(w, "owned", '[');
    for (uint32_t p = 0; p < c->partitions; p++)
        if (sc_cluster_may_dispatch(d, p, now))
            sc_jw_int(w, NULL, p);
    sc_jw_close(w, ']');
    sc_jw_open(w, "leases", '[');
    for (uint32_t p = 0; p < c->partitions; p++) {
        if (!sc_cluster_may_dispatch(d, p, now))
            continue;
        sc_jw_open(w, NULL, '{');
        sc_jw_int(w, "partition", p);
        sc_jw_uint(w, "revision", c->slots[p].revision);
        sc_jw_int(w, "since_mono_ms", c->slots[p].held_since);
        sc_jw_int(w, "valid_until_mono_ms", c->slots[p].valid_until);
        sc_jw_close(w, '}');
    }
    sc_jw_close(w, ']');
}

void
sc_cluster_json(const struct sc_daemon *d, struct sc_jw *w, bool detail)
{
    struct sc_cluster_stats st = sc_cluster_get_stats(d);

    sc_jw_open(w, "cluster", '{');
    sc_jw_bool(w, "enabled", st.enabled);
    if (st.enabled) {
        sc_jw_str(w, "member_id", st.member_id);
        sc_jw_bool(w, "ready", st.ready);
        sc_jw_int(w, "partitions", st.partitions);
        sc_jw_int(w, "members", (int64_t)st.members);
        sc_jw_int(w, "partitions_owned", (int64_t)st.partitions_owned);
        sc_jw_uint(w, "lease_renewals", st.lease_renewals);
        sc_jw_uint(w, "lease_failures", st.lease_failures);
        sc_jw_uint(w, "partitions_gained", st.gained);
        sc_jw_uint(w, "partitions_lost", st.lost);
        sc_jw_uint(w, "partitions_released", st.released);
        sc_jw_uint(w, "partitions_suspended", st.suspended);
        sc_jw_uint(w, "partitions_resumed", st.resumed);
        if (detail)
            leases_json(d, w, sc_now_mono_ms());
    }
    sc_jw_close(w, '}');
}

/* Waits (main thread, loop stopped) until no job is out, at most ms; true when none is. */
static bool
wait_idle(struct sc_cluster *c, int64_t ms)
{
    struct timespec ts;
    bool idle;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (c->posted && pthread_cond_timedwait(&c->cv, &c->mu, &ts) == 0)
        ;
    idle = !c->posted;
    pthread_mutex_unlock(&c->mu);
    return idle;
}

/* Posts the leaving job: every hold given back with its revision, and the record deleted. */
static void
leave(struct sc_cluster *c)
{
    struct cl_job *j = &c->job;

    j->nops = 0;
    for (uint32_t p = 0; p < c->partitions; p++)
        if (c->slots[p].held)
            j->ops[j->nops++] = (struct cl_op){.p = p, .kind = OP_DELETE, .rev = c->slots[p].revision};
    j->timer = false;
    j->member_put = false;
    j->member_delete = true;
    j->read_view = false;
    j->followup = false;
    j->nudge = true; /* the others take the leases now, not at their next round */
    pthread_mutex_lock(&c->mu);
    c->posted = true;
    c->done = false;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void
sc_cluster_close(struct sc_daemon *d)
{
    struct sc_cluster *c = d->cluster;
    size_t given = 0;

    if (!c)
        return;
    c->closing = true;
    if (c->timer_ev)
        event_del(c->timer_ev);
    if (c->nudge_ev)
        event_del(c->nudge_ev);
    pthread_mutex_lock(&c->mu);
    c->hurry = true; /* a renewal out now stops trying again */
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started && wait_idle(c, CLOSE_WAIT_MS)) {
        on_wake(-1, 0, c); /* the last answers, if the loop did not take them */
        leave(c);
        wait_idle(c, CLOSE_WAIT_MS);
        for (size_t i = 0; i < c->job.nops; i++)
            given += c->job.ops[i].result == CL_OK;
        sc_log(SC_LOG_INFO, "cluster: left; leases given back", "member_id", c->me, "given_back",
               sc_log_int((int64_t)given), "held", sc_log_int((int64_t)c->job.nops), NULL);
    }
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started)
        pthread_join(c->thread, NULL);
    d->cluster = NULL;
    free_cluster(c);
}
