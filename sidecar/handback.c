/* handback.c - cluster mode (handback.h): replies to attempts of partitions this member lost are handed to the partitions' owners, who settle the attempts instead of sending them again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "codec.h"
#include "daemon.h"
#include "dispatch.h"
#include "handback.h"
#include "mirror.h"
#include "serving.h"

#define HB_SWEEP_MS 250
#define HB_RESEND_MS 500   /* a copy nobody answered is sent again after this */
#define HB_EXTRA_MS 2000   /* a copy waits for an owner lease_ms * 2 + this */
#define HB_HDRS_MAX 32     /* headers of a reply carried along (pairs) */
#define HB_RECENT_MAX 16384 /* replies applied here kept until their partition's writes are answered */

#define HB_HDR_TASK "Dlq-Fwd-Task-Id"
#define HB_HDR_ATTEMPT "Dlq-Fwd-Attempt"
#define HB_HDR_STORED "Dlq-Fwd-Stored"
#define HB_HDR_KIND "Dlq-Fwd-Kind" /* "notes": lines "<retry_count> <next_retry_at> <task id>" */
#define HB_NOTES_MAX 65536         /* bytes of notes per message */

/* One attempt of a partition lost here, and the reply to hand back once it comes. */
struct hb_orphan {
    uint32_t idx;      /* the machine's flight slot the attempt was sent with */
    uint64_t token;    /* and its token (both in the reply subject) */
    char *id;
    int32_t attempt;
    bool stored;       /* retry.outcome stored: the PubAck is the outcome */
    uint32_t p;
    int64_t expires;   /* mono ms: forgotten then when no reply came */
    bool notes;        /* body: the tasks of p not sent here (pending), not a reply */
    /* The reply, once it came (body NULL before): */
    char *body;
    size_t blen;
    char **hdrs;                 /* owned copies, pairs (nh strings) */
    size_t nh;
    uint64_t fwd_token;          /* in the copy's reply subject */
    int64_t next_send;
};

struct sc_handback {
    struct hb_orphan **o; /* attempts of lost partitions, and replies being handed back */
    size_t n, cap;
    struct hb_orphan **rec; /* replies applied here whose writes may not be stored yet */
    size_t nrec, rcap;
    uint32_t *nrec_of;      /* per partition: how many of rec */
    struct event *sweep;
    char prefix[112]; /* "<inbox>.hbk" */
    struct sc_handback_stats st;
};

static void
orphan_free(struct hb_orphan *o)
{
    free(o->id);
    free(o->body);
    for (size_t i = 0; i < o->nh; i++)
        free(o->hdrs[i]);
    free(o->hdrs);
    free(o);
}

static void
orphan_remove(struct sc_handback *h, size_t i)
{
    orphan_free(h->o[i]);
    h->o[i] = h->o[--h->n];
}

static void
push(struct hb_orphan ***v, size_t *n, size_t *cap, struct hb_orphan *o)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = sc_xrealloc(*v, *cap * sizeof(**v));
    }
    (*v)[(*n)++] = o;
}

static struct hb_orphan *
orphan_find(const struct sc_handback *h, uint32_t idx, uint64_t token)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->o[i]->idx == idx && h->o[i]->token == token)
            return h->o[i];
    return NULL;
}

/* Remembers t's attempt in flight (flight slot idx) unless it is remembered already. */
static struct hb_orphan *
orphan_add(struct sc_daemon *d, struct dlq_task *t, uint32_t idx, uint32_t p)
{
    struct sc_handback *h = d->handback;
    const struct dlq_flight *f = &d->m.flights[idx];
    struct hb_orphan *o = orphan_find(h, idx, f->token);

    if (o)
        return o;
    o = sc_xcalloc(1, sizeof(*o));
    o->idx = idx;
    o->token = f->token;
    o->id = sc_xstrndup(t->id, t->id_len);
    o->attempt = f->attempt;
    o->stored = f->stored;
    o->p = p;
    o->expires = f->sent_mono + d->cfg->retry_timeout_ms + d->cfg->cluster_lease_ms;
    push(&h->o, &h->n, &h->cap, o);
    return o;
}

/* Publishes o's reply to the owner of its partition (asked again by the sweep until answered). */
static void
send_copy(struct sc_daemon *d, struct hb_orphan *o, int64_t now)
{
    struct sc_handback *h = d->handback;
    const char *hdrs[2 * HB_HDRS_MAX + 7];
    char subject[160], reply[160], att[16];
    size_t nh = 0;

    for (size_t i = 0; i < o->nh; i++)
        hdrs[nh++] = o->hdrs[i];
    if (o->notes) {
        hdrs[nh++] = HB_HDR_KIND;
        hdrs[nh++] = "notes";
    } else {
        snprintf(att, sizeof(att), "%d", (int)o->attempt);
        hdrs[nh++] = HB_HDR_TASK;
        hdrs[nh++] = o->id;
        hdrs[nh++] = HB_HDR_ATTEMPT;
        hdrs[nh++] = att;
        hdrs[nh++] = HB_HDR_STORED;
        hdrs[nh++] = o->stored ? "1" : "0";
    }
    hdrs[nh] = NULL;
    snprintf(subject, sizeof(subject), "%s.cluster.outcome.%u", d->cfg->subjects_prefix, o->p);
    snprintf(reply, sizeof(reply), "%s.%016llx", h->prefix, (unsigned long long)o->fwd_token);
    sc_publish(d, subject, reply, o->body, o->blen, hdrs); /* a failed publish is tried again */
    o->next_send = now + HB_RESEND_MS;
}

/* Whether m is no outcome at all: "no responders" (nobody got the attempt) or a PubAck of a reply-mode attempt. */
static bool
not_an_outcome(natsMsg *m, bool stored)
{
    const char *val = NULL;
    struct sc_js_reply jr;

    if (natsMsg_IsNoResponders(m))
        return true;
    if (stored || (natsMsgHeader_Get(m, CODEC_HDR_SERVICE_ERROR, &val) == NATS_OK && val))
        return false;
    return sc_js_reply_classify(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &jr) != SC_JS_NOT;
}

/* Copies m's body and headers (but a sender's Dlq-Fwd-*) into o. */
static void
copy_reply(struct hb_orphan *o, natsMsg *m)
{
    const char **keys = NULL;
    int nkeys = 0;

    o->blen = (size_t)natsMsg_GetDataLength(m);
    o->body = sc_xmalloc(o->blen + 1);
    memcpy(o->body, natsMsg_GetData(m), o->blen);
    if (natsMsgHeader_Keys(m, &keys, &nkeys) == NATS_OK && nkeys > 0) {
        o->hdrs = sc_xcalloc(2 * (size_t)(nkeys < HB_HDRS_MAX ? nkeys : HB_HDRS_MAX), sizeof(*o->hdrs));
        for (int k = 0; k < nkeys && o->nh < 2 * HB_HDRS_MAX; k++) {
            const char *v = NULL;
            if (strncasecmp(keys[k], "Dlq-Fwd-", 8) != 0 &&
                natsMsgHeader_Get(m, keys[k], &v) == NATS_OK && v) {
                o->hdrs[o->nh++] = sc_xstrdup(keys[k]);
                o->hdrs[o->nh++] = sc_xstrdup(v);
            }
        }
        free((void *)keys);
    }
}

/* Starts handing o's reply (o->body set, o in h->o) back to its partition's owner. */
static void
hand_back(struct sc_daemon *d, struct hb_orphan *o, int64_t now)
{
    o->fwd_token = d->m.ports.token(d->m.ports.ctx);
    o->expires = now + 2 * d->cfg->cluster_lease_ms + HB_EXTRA_MS;
    d->handback->st.handed++;
    send_copy(d, o, now);
}

/*
 * Keeps a copy of reply m, about to be applied here to t's attempt, until
 * p's writes are all answered (the sweep): if p is lost before, its change
 * may never be stored (a pause, a stalled store: the next owner's fence
 * refuses it), and the copy is handed back instead.
 */
static void
recent_add(struct sc_daemon *d, struct dlq_task *t, bool stored, uint32_t p, natsMsg *m,
           int64_t now)
{
    struct sc_handback *h = d->handback;
    struct hb_orphan *o;

    if (h->nrec >= HB_RECENT_MAX)
        return; /* a lost lease may send these attempts again (same Nats-Msg-Id) */
    o = sc_xcalloc(1, sizeof(*o));
    o->id = sc_xstrndup(t->id, t->id_len);
    o->attempt = t->retry_count + 1;
    o->stored = stored;
    o->p = p;
    o->expires = now + d->cfg->retry_timeout_ms + d->cfg->cluster_lease_ms;
    copy_reply(o, m);
    push(&h->rec, &h->nrec, &h->rcap, o);
    h->nrec_of[p]++;
}

/* Drops (or, with back, hands back) the kept replies of partition p. */
static void
recent_settle(struct sc_daemon *d, uint32_t p, bool back, int64_t now)
{
    struct sc_handback *h = d->handback;

    for (size_t i = 0; i < h->nrec && h->nrec_of[p];) {
        struct hb_orphan *o = h->rec[i];
        if (o->p != p) {
            i++;
            continue;
        }
        h->rec[i] = h->rec[--h->nrec];
        h->nrec_of[p]--;
        if (!back) {
            orphan_free(o);
            continue;
        }
        push(&h->o, &h->n, &h->cap, o);
        hand_back(d, o, now);
    }
}

bool
sc_handback_reply(struct sc_daemon *d, natsMsg *m)
{
    struct sc_handback *h = d->handback;
    const char *subj = natsMsg_GetSubject(m), *inbox;
    size_t plen;
    char *end;
    unsigned long idx;
    unsigned long long token;
    struct dlq_task *t;
    struct hb_orphan *o;
    bool stored;
    int64_t now;

    if (!h)
        return false;
    inbox = sc_conn_inbox(d->conn);
    plen = strlen(inbox);
    if (strncmp(subj, inbox, plen) != 0 || subj[plen] != '.')
        return false;
    idx = strtoul(subj + plen + 1, &end, 10);
    if (end == subj + plen + 1 || *end != '.' || strlen(end + 1) != 16 || idx > UINT32_MAX)
        return false;
    token = strtoull(end + 1, &end, 16);
    if (*end)
        return false;
    now = sc_now_mono_ms();
    t = dlq_machine_flight(&d->m, (uint32_t)idx, token, &stored);
    if (t) {
        uint32_t p = dlq_partition_of(t->id, t->id_len, (uint32_t)d->cfg->cluster_partitions);
        if (not_an_outcome(m, stored))
            return false; /* nothing to settle: the usual path */
        if (sc_cluster_may_dispatch(d, p, now)) {
            recent_add(d, t, stored, p, m, now); /* applied here: kept until stored */
            return false;
        }
        o = orphan_add(d, t, (uint32_t)idx, p);
    } else if (!(o = orphan_find(h, (uint32_t)idx, token))) {
        return false; /* a late reply: sc_on_reply() ignores it */
    }
    if (o->body || not_an_outcome(m, o->stored))
        return true; /* handed back already, or nothing a worker said */
    copy_reply(o, m);
    hand_back(d, o, now);
    return true;
}

/* Hands one message of notes (b->len bytes) back for partition p; empties b. */
static void
notes_flush(struct sc_daemon *d, uint32_t p, struct sc_buf *b, int64_t now)
{
    struct sc_handback *h = d->handback;
    struct hb_orphan *o;

    if (!b->len)
        return;
    o = sc_xcalloc(1, sizeof(*o));
    o->notes = true;
    o->id = sc_xstrdup("");
    o->p = p;
    o->blen = b->len;
    o->body = sc_xmalloc(b->len);
    memcpy(o->body, b->data, b->len);
    sc_buf_reset(b);
    push(&h->o, &h->n, &h->cap, o);
    hand_back(d, o, now);
    h->st.handed--; /* counted as notes, not replies */
    h->st.notes++;
}

/*
 * The tasks of p waiting here, not sent (pending, not parked): the next
 * owner holds such a task when it loads it due (it may have been sent
 * without its write landing: dlq_machine_restore()); these notes let it go
 * at once.
 */
static void
send_notes(struct sc_daemon *d, uint32_t p, int64_t now)
{
    uint32_t parts = (uint32_t)d->cfg->cluster_partitions;
    struct sc_buf b;
    char line[64];

    sc_buf_init(&b, 2 * HB_NOTES_MAX);
    for (struct dlq_task *t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t)) {
        int n;
        if (t->status != DLQ_TASK_PENDING || t->parked || !t->retry_subject ||
            dlq_partition_of(t->id, t->id_len, parts) != p || memchr(t->id, '\n', t->id_len))
            continue;
        n = snprintf(line, sizeof(line), "%d %lld ", (int)t->retry_count,
                     (long long)t->next_retry_at);
        sc_buf_append(&b, line, (size_t)n);
        sc_buf_append(&b, t->id, t->id_len);
        sc_buf_appendc(&b, '\n');
        if (b.len >= HB_NOTES_MAX)
            notes_flush(d, p, &b, now);
    }
    notes_flush(d, p, &b, now);
    sc_buf_destroy(&b);
}

/* Reads a decimal number of at most 18 digits (optionally negative) that ends at end or at stop; false otherwise. */
static bool
hb_number(const char *s, const char *end, char stop, long long *out, const char **next)
{
    bool neg = s < end && *s == '-';
    long long v = 0;
    int digits = 0;

    for (s += neg; s < end && *s >= '0' && *s <= '9' && digits < 18; s++, digits++)
        v = v * 10 + (*s - '0');
    if (!digits || (s < end && *s != stop))
        return false;
    *out = neg ? -v : v;
    *next = s;
    return true;
}

/* Notes from the former owner of p: its tasks not sent go out now (or at their due time). */
static void
take_notes(struct sc_daemon *d, uint32_t p, natsMsg *m)
{
    const char *s = natsMsg_GetData(m), *end = s + natsMsg_GetDataLength(m);
    int64_t now = sc_now_wall_ms(), mono = sc_now_mono_ms();
    uint32_t parts = (uint32_t)d->cfg->cluster_partitions;

    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s)), *id;
        long long rc, due;
        struct dlq_task *t;
        if (!nl)
            break;
        /* "<retry_count> <due wall ms> <task id>": numbers bounded, anything else skipped */
        if (hb_number(s, nl, ' ', &rc, &id) && rc >= 0 && rc <= INT32_MAX && id < nl &&
            hb_number(id + 1, nl, ' ', &due, &id) && id < nl) {
            id++;
            if ((t = dlq_queue_find(&d->m.q, id, (size_t)(nl - id))) &&
                dlq_partition_of(t->id, t->id_len, parts) == p &&
                dlq_machine_release_due(&d->m, t, (int32_t)rc, due, now, mono))
                d->handback->st.released++;
        }
        s = nl + 1;
    }
}

void
sc_handback_keep(struct sc_daemon *d, uint32_t p)
{
    uint32_t parts = (uint32_t)d->cfg->cluster_partitions;
    int64_t now = sc_now_mono_ms();

    if (!d->handback)
        return;
    /* Given back (every write answered, the lease valid): nothing to hand back. Lost: all of it. */
    recent_settle(d, p,
                  !sc_cluster_may_dispatch(d, p, now) || sc_mirror_partition_pending(d, p, parts) > 0,
                  now);
    send_notes(d, p, now);
    for (struct dlq_task *t = dlq_queue_first(&d->m.q); t; t = dlq_queue_next(&d->m.q, t))
        if (t->status == DLQ_TASK_RETRYING && t->flight_slot &&
            dlq_partition_of(t->id, t->id_len, parts) == p)
            orphan_add(d, t, t->flight_slot - 1, p);
}

/* An owner's answer to a copy: the attempt is settled (or was already past): forgotten here. */
static void
on_answer(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    struct sc_handback *h = d->handback;
    const char *subj = natsMsg_GetSubject(m);
    size_t plen = strlen(h->prefix);
    unsigned long long token;
    char *end;

    if (natsMsg_IsNoResponders(m) || strncmp(subj, h->prefix, plen) != 0 || subj[plen] != '.' ||
        natsMsg_GetDataLength(m) < 3 || memcmp(natsMsg_GetData(m), "+OK", 3) != 0)
        return; /* nobody serves the partition yet: the sweep asks again */
    token = strtoull(subj + plen + 1, &end, 16);
    if (*end)
        return;
    for (size_t i = 0; i < h->n; i++)
        if (h->o[i]->body && h->o[i]->fwd_token == token) {
            orphan_remove(h, i);
            return;
        }
}

/* A copy from a former owner: applied when this member serves the partition (else no answer). */
static void
on_copy(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    struct sc_handback *h = d->handback;
    const char *reply = natsMsg_GetReply(m), *id = NULL, *att = NULL, *st = NULL;
    const char *att_end;
    long long attempt;
    const char *tail = strrchr(natsMsg_GetSubject(m), '.');
    unsigned long p = tail ? strtoul(tail + 1, NULL, 10) : (unsigned long)d->serving_n;
    size_t ilen = strlen(d->cfg->nats_inbox_prefix);
    struct dlq_task *t;

    /* Members share nats.inbox_prefix: a former owner's reply is "<prefix>.<nuid>.hbk.<token>". */
    if (!reply || strncmp(reply, d->cfg->nats_inbox_prefix, ilen) != 0 || reply[ilen] != '.' ||
        !strstr(reply, ".hbk."))
        return;
    if (p >= d->serving_n || !sc_serving_held(d, (uint32_t)p) ||
        !sc_cluster_may_dispatch(d, (uint32_t)p, sc_now_mono_ms()))
        return; /* not this member's (or still loading it): its owner answers */
    if (natsMsgHeader_Get(m, HB_HDR_KIND, &st) == NATS_OK && st && strcmp(st, "notes") == 0) {
        take_notes(d, (uint32_t)p, m);
        sc_publish(d, reply, NULL, "+OK", 3, NULL);
        return;
    }
    st = NULL;
    if (natsMsgHeader_Get(m, HB_HDR_TASK, &id) != NATS_OK || !id ||
        natsMsgHeader_Get(m, HB_HDR_ATTEMPT, &att) != NATS_OK || !att)
        return;
    natsMsgHeader_Get(m, HB_HDR_STORED, &st);
    t = dlq_queue_find(&d->m.q, id, strlen(id));
    if (t && dlq_partition_of(t->id, t->id_len, (uint32_t)d->cfg->cluster_partitions) == p &&
        !t->parked && hb_number(att, att + strlen(att), '\0', &attempt, &att_end) &&
        attempt == (long long)t->retry_count + 1 &&
        (t->status == DLQ_TASK_PENDING || t->status == DLQ_TASK_RETRYING)) {
        h->st.applied++;
        sc_log(SC_LOG_DEBUG, "cluster: an attempt settled by its former owner's reply", "task_id",
               t->id, "attempt", att, NULL);
        sc_dispatch_apply_reply(d, t, st && st[0] == '1', m);
    }
    sc_publish(d, reply, NULL, "+OK", 3, NULL); /* applied, or stale: nothing to settle */
}

static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_handback *h = d->handback;
    int64_t now = sc_now_mono_ms();

    (void)fd;
    (void)what;
    /* Replies applied here: forgotten once their partition's writes are all answered. */
    for (uint32_t p = 0; p < (uint32_t)d->cfg->cluster_partitions; p++)
        if (h->nrec_of[p] && sc_cluster_may_dispatch(d, p, now) &&
            sc_mirror_partition_pending(d, p, (uint32_t)d->cfg->cluster_partitions) == 0)
            recent_settle(d, p, false, now);
    for (size_t i = 0; i < h->nrec;) {
        if (now >= h->rec[i]->expires) { /* past the attempt's deadline: the next owner sends it anyway */
            h->nrec_of[h->rec[i]->p]--;
            orphan_free(h->rec[i]);
            h->rec[i] = h->rec[--h->nrec];
            continue;
        }
        i++;
    }
    for (size_t i = 0; i < h->n;) {
        struct hb_orphan *o = h->o[i];
        if (now >= o->expires) {
            if (o->body && o->notes) {
                sc_log(SC_LOG_WARN, "cluster: no owner took a lost partition's notes; its due tasks wait retry.timeout_ms",
                       "partition", sc_log_int(o->p), NULL);
            } else if (o->body) {
                h->st.dropped++;
                sc_log(SC_LOG_WARN, "cluster: no owner took an attempt's reply; the attempt goes out again",
                       "task_id", o->id, "partition", sc_log_int(o->p), NULL);
            }
            orphan_remove(h, i);
            continue;
        }
        if (o->body && now >= o->next_send)
            send_copy(d, o, now);
        i++;
    }
}

sc_status
sc_handback_open(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_handback *h;
    struct timeval tv = {0, HB_SWEEP_MS * 1000};
    char subj[160];
    sc_status s;

    if (!d->cluster)
        return SC_OK;
    h = sc_xcalloc(1, sizeof(*h));
    d->handback = h;
    h->nrec_of = sc_xcalloc((size_t)d->cfg->cluster_partitions, sizeof(*h->nrec_of));
    snprintf(h->prefix, sizeof(h->prefix), "%s.hbk", sc_conn_inbox(d->conn));
    h->sweep = event_new(d->base, -1, EV_PERSIST, on_sweep, d);
    if (!h->sweep) {
        snprintf(err, errlen, "libevent: cannot create the hand-back timer");
        return SC_EIO;
    }
    event_add(h->sweep, &tv);
    snprintf(subj, sizeof(subj), "%s.*", h->prefix);
    if ((s = sc_conn_subscribe(d->conn, subj, NULL, 0, on_answer, d, NULL, err, errlen)))
        return s;
    snprintf(subj, sizeof(subj), "%s.cluster.outcome.*", d->cfg->subjects_prefix);
    return sc_conn_subscribe(d->conn, subj, NULL, 0, on_copy, d, NULL, err, errlen);
}

void
sc_handback_close(struct sc_daemon *d)
{
    struct sc_handback *h = d->handback;

    if (!h)
        return;
    if (h->sweep)
        event_free(h->sweep);
    for (size_t i = 0; i < h->n; i++)
        orphan_free(h->o[i]);
    for (size_t i = 0; i < h->nrec; i++)
        orphan_free(h->rec[i]);
    free(h->o);
    free(h->rec);
    free(h->nrec_of);
    free(h);
    d->handback = NULL;
}

struct sc_handback_stats
sc_handback_get_stats(const struct sc_daemon *d)
{
    struct sc_handback_stats s = {0};

    if (d->handback)
        s = d->handback->st;
    return s;
}
