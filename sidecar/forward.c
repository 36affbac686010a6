/* forward.c - cluster mode's ingest routing (forward.h): failures of a partition this member does not own go to their owner over core NATS; the owner's answer is relayed to the stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "daemon.h"
#include "forward.h"

#define FWD_SWEEP_MS 250
#define FWD_WAIT_MIN_MS 6000      /* above the owner's longest hold of an ack (5 s) */

#define FWD_HDRS_MAX 64                   /* headers of a failure carried along (pairs) */

/* One forwarded failure waiting for its owner's answer. */
struct fwd_slot {
    char *ack;          /* the stream's ack subject; NULL when the slot is free */
    uint64_t token;     /* in the reply subject: a late or forged answer finds no match */
    int64_t deadline;   /* mono ms */
    uint32_t next_free;
};

struct sc_forward {
    struct fwd_slot *slots;
    uint32_t cap, free_head, used;
    struct event *sweep;
    int64_t wait_ms;
    char prefix[96];               /* "<inbox>.fwd" */
    struct sc_forward_stats st;
};

#define FWD_NONE UINT32_MAX

/* ---- slots ------------------------------------------------------------------------------------ */

static uint32_t
slot_take(struct sc_forward *f, const char *ack, uint64_t token, int64_t now)
{
    uint32_t i = f->free_head;

    if (i == FWD_NONE)
        return FWD_NONE;
    f->free_head = f->slots[i].next_free;
    f->slots[i].ack = sc_xstrdup(ack);
    f->slots[i].token = token;
    f->slots[i].deadline = now + f->wait_ms;
    f->used++;
    return i;
}

static void
slot_free(struct sc_forward *f, uint32_t i)
{
    free(f->slots[i].ack);
    f->slots[i].ack = NULL;
    f->slots[i].next_free = f->free_head;
    f->free_head = i;
    f->used--;
}

/* Naks slot i's message (it waits in the stream) and frees the slot. */
static void
slot_nak(struct sc_daemon *d, uint32_t i)
{
    struct sc_forward *f = d->forward;

    sc_js_nak(d->js, d->conn, f->slots[i].ack, d->cfg->ingest_nak_delay_ms);
    f->st.naked++;
    slot_free(f, i);
}

/* ---- the forwarding member -------------------------------------------------------------------- */

bool
sc_forward_route(struct sc_daemon *d, natsMsg *m, uint32_t p, uint64_t stream_seq,
                 int64_t stream_time_ns)
{
    struct sc_forward *f = d->forward;
    const char *hdrs[2 * FWD_HDRS_MAX + 7], **keys = NULL;
    char subject[160], reply[160], seq[24], ts[24];
    uint64_t token = d->m.ports.token(d->m.ports.ctx);
    int nkeys = 0;
    size_t nh = 0;
    uint32_t i;

    if (!f || !natsMsg_GetReply(m))
        return false;
    i = slot_take(f, natsMsg_GetReply(m), token, sc_now_mono_ms());
    if (i == FWD_NONE) {
        sc_js_nak(d->js, d->conn, natsMsg_GetReply(m), d->cfg->ingest_nak_delay_ms);
        f->st.naked++;
        return true;
    }
    /* The failure's own headers go along (Nats-Msg-Id, Content-Type, an application's). */
    if (natsMsgHeader_Keys(m, &keys, &nkeys) == NATS_OK) {
        for (int k = 0; k < nkeys && nh < 2 * FWD_HDRS_MAX; k++) {
            const char *v = NULL;
            /* A publisher's own Dlq-Fwd-* would stand in for ours: never carried along. */
            if (strncasecmp(keys[k], "Dlq-Fwd-", 8) != 0 &&
                natsMsgHeader_Get(m, keys[k], &v) == NATS_OK && v) {
                hdrs[nh++] = keys[k];
                hdrs[nh++] = v;
            }
        }
    }
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)stream_seq);
    hdrs[nh++] = SC_FWD_HDR_SUBJECT;
    hdrs[nh++] = natsMsg_GetSubject(m);
    hdrs[nh++] = SC_FWD_HDR_SEQ;
    hdrs[nh++] = seq;
    snprintf(ts, sizeof(ts), "%lld", (long long)stream_time_ns);
    hdrs[nh++] = SC_FWD_HDR_TIME;
    hdrs[nh++] = ts;
    hdrs[nh] = NULL;
    snprintf(subject, sizeof(subject), "%s.cluster.part.%u", d->cfg->subjects_prefix, p);
    snprintf(reply, sizeof(reply), "%s.%u.%016llx", f->prefix, i, (unsigned long long)token);
    if (sc_publish(d, subject, reply, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), hdrs)) {
        slot_nak(d, i);
    } else {
        f->st.forwarded++;
    }
    free((void *)keys);
    return true;
}

/* An owner's answer (or a "no responders" status) to a forwarded failure. */
static void
on_answer(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    struct sc_forward *f = d->forward;
    const char *subj = natsMsg_GetSubject(m), *data = natsMsg_GetData(m);
    size_t plen = strlen(f->prefix);
    int len = natsMsg_GetDataLength(m);
    unsigned long long token;
    unsigned i;

    if (strncmp(subj, f->prefix, plen) != 0 ||
        sscanf(subj + plen, ".%u.%16llx", &i, &token) != 2 || i >= f->cap || !f->slots[i].ack ||
        f->slots[i].token != token)
        return; /* late (the slot was naked at its deadline) or forged */
    if (!natsMsg_IsNoResponders(m) && len >= 4 && memcmp(data, "+ACK", 4) == 0) {
        sc_js_ack(d->js, d->conn, f->slots[i].ack);
        f->st.relayed_acks++;
        slot_free(f, i);
        return;
    }
    /* -NAK from the owner, nobody serving the partition (a takeover), or garbage: it waits in the stream. */
    slot_nak(d, i);
}

static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sc_daemon *d = arg;
    struct sc_forward *f = d->forward;
    int64_t now = sc_now_mono_ms();

    (void)fd;
    (void)what;
    if (!f->used)
        return;
    for (uint32_t i = 0; i < f->cap; i++)
        if (f->slots[i].ack && f->slots[i].deadline <= now)
            slot_nak(d, i);
}

/* ---- counted for the owning member (ingest.c serves the forwarded failures) -------------------- */

void
sc_forward_count_in(struct sc_daemon *d, bool refused)
{
    if (!d->forward)
        return;
    if (refused)
        d->forward->st.refused++;
    else
        d->forward->st.served++;
}

/* ---- life ------------------------------------------------------------------------------------- */

sc_status
sc_forward_open(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_forward *f;
    struct timeval tv = {0, FWD_SWEEP_MS * 1000};
    char subj[128];
    int64_t wait = d->cfg->ingest_ack_wait_ms - 2000;

    if (!d->cluster)
        return SC_OK;
    f = sc_xcalloc(1, sizeof(*f));
    d->forward = f;
    f->cap = (uint32_t)d->cfg->ingest_max_ack_pending;
    f->slots = sc_xcalloc(f->cap, sizeof(*f->slots));
    for (uint32_t i = 0; i < f->cap; i++)
        f->slots[i].next_free = i + 1 < f->cap ? i + 1 : FWD_NONE;
    f->free_head = 0;
    f->wait_ms = wait > FWD_WAIT_MIN_MS ? wait : FWD_WAIT_MIN_MS;
    snprintf(f->prefix, sizeof(f->prefix), "%s.fwd", sc_conn_inbox(d->conn));
    snprintf(subj, sizeof(subj), "%s.*.*", f->prefix);
    f->sweep = event_new(d->base, -1, EV_PERSIST, on_sweep, d);
    if (!f->sweep) {
        snprintf(err, errlen, "libevent: cannot create the forwarding timer");
        return SC_EIO;
    }
    event_add(f->sweep, &tv);
    return sc_conn_subscribe(d->conn, subj, NULL, 0, on_answer, d, NULL, err, errlen);
}

void
sc_forward_close(struct sc_daemon *d)
{
    struct sc_forward *f = d->forward;

    if (!f)
        return;
    for (uint32_t i = 0; i < f->cap; i++)
        if (f->slots[i].ack)
            slot_nak(d, i); /* the stream delivers it again, to whoever owns it */
    if (f->sweep)
        event_free(f->sweep);
    free(f->slots);
    free(f);
    d->forward = NULL;
}

struct sc_forward_stats
sc_forward_get_stats(const struct sc_daemon *d)
{
    struct sc_forward_stats s = {0};

    if (d->forward) {
        s = d->forward->st;
        s.waiting = d->forward->used;
    }
    return s;
}
