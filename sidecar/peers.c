/* peers.c - finds another sidecar serving this prefix outside cluster mode: pings $SRV.PING.dlq-sidecar from the loop and lists the duplicates that answer. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "daemon.h"
#include "micro.h"
#include "peers.h"

#define PEERS_ANSWER_MAX 16384   /* bytes of one ping answer looked at (ours are ~300) */
#define PEERS_ID_MAX 64
#define PEERS_HOST_MAX 128
#define PEERS_MODE_MAX 16
#define PEERS_LOG_EVERY_MS 60000 /* the error line is repeated at most once a minute */
#define PEERS_PING_TYPE "io.nats.micro.v1.ping_response"

/* One other instance on our prefix, outside cluster mode. */
struct peer {
    bool used;
    char id[PEERS_ID_MAX];
    char host[PEERS_HOST_MAX];
    char mode[PEERS_MODE_MAX];
    int64_t first_wall;    /* first answer, ms since the epoch */
    int64_t last_mono;     /* latest answer */
    int64_t last_log_mono; /* latest error line about it */
};

/* The discovery state of one daemon: owned by d->peers, loop thread only after sc_peers_open(). */
struct sc_peers {
    struct sc_daemon *d;
    struct event *timer;        /* one-shot, re-armed every round */
    char reply[96];             /* "<inbox>.peers": where the answers come */
    struct sc_peers_stats st;
    struct sc_lograte log_overflow, log_invalid;
    struct peer dup[SC_PEERS_MAX];
};

/*
 * copy_token() copies at most outlen - 1 bytes of s into out, each byte
 * outside printable ASCII (space included) replaced by '_': what another
 * instance reports goes into logs and JSON, and may be forged.
 */
static void
copy_token(char *out, size_t outlen, const char *s)
{
    size_t i = 0;

    for (; s && s[i] && i + 1 < outlen; i++)
        out[i] = (s[i] > ' ' && s[i] < 0x7f) ? s[i] : '_';
    out[i] = '\0';
}

/* Reads the string member key of obj, or NULL when absent or not a string (borrowed from obj). */
static const char *
member_str(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void
log_duplicate(struct sc_peers *p, struct peer *e, int64_t now)
{
    e->last_log_mono = now;
    sc_log(SC_LOG_ERROR,
           "another dlq-sidecar serves this prefix outside cluster mode: both take the same "
           "failures and retry each task twice; stop one of them (to run several, use cluster mode)",
           "prefix", p->d->cfg->subjects_prefix, "id", sc_micro_id(p->d), "other_id", e->id,
           "other_host", e->host, "other_ingest_mode", e->mode, "seen_for_s",
           sc_log_int((sc_now_wall_ms() - e->first_wall) / 1000), NULL);
}

/* Notes one answer from duplicate id (host and mode may be NULL) at now: a new one is logged at once. */
static void
note_duplicate(struct sc_peers *p, const char *id, const char *host, const char *mode, int64_t now)
{
    struct peer *e = NULL, *free_slot = NULL;
    uint64_t suppressed;

    for (size_t i = 0; i < SC_PEERS_MAX && !e; i++) {
        if (p->dup[i].used && strcmp(p->dup[i].id, id) == 0)
            e = &p->dup[i];
        else if (!p->dup[i].used && !free_slot)
            free_slot = &p->dup[i];
    }
    if (e) {
        e->last_mono = now;
        return;
    }
    if (!free_slot) {
        if (sc_lograte_take(&p->log_overflow, now, PEERS_LOG_EVERY_MS, &suppressed))
            sc_log(SC_LOG_ERROR, "more duplicate dlq-sidecars on this prefix than are listed",
                   "listed", sc_log_int(SC_PEERS_MAX), "other_id", id, NULL);
        return;
    }
    e = free_slot;
    memset(e, 0, sizeof(*e));
    e->used = true;
    copy_token(e->id, sizeof(e->id), id);
    copy_token(e->host, sizeof(e->host), host);
    copy_token(e->mode, sizeof(e->mode), mode);
    e->first_wall = sc_now_wall_ms();
    e->last_mono = now;
    p->st.duplicates++;
    log_duplicate(p, e, now);
}

/*
 * look_at() reads one ping answer (len bytes at data): another dlq-sidecar
 * instance is counted; one on our prefix, unless both are in cluster mode,
 * is a duplicate. Returns false when the answer is not a dlq-sidecar ping
 * response at all.
 */
static bool
look_at(struct sc_peers *p, const char *data, size_t len, int64_t now)
{
    struct sc_daemon *d = p->d;
    json_t *j = len <= PEERS_ANSWER_MAX ? json_loadb(data, len, 0, NULL) : NULL;
    const json_t *md;
    const char *type, *name, *id, *prefix, *cluster;
    bool ok = false;

    if (!j)
        return false;
    type = member_str(j, "type");
    name = member_str(j, "name");
    id = member_str(j, "id");
    if (!type || strcmp(type, PEERS_PING_TYPE) != 0 || !name || strcmp(name, SC_MICRO_NAME) != 0 ||
        !id || !*id || strlen(id) >= PEERS_ID_MAX)
        goto done;
    ok = true;
    if (strcmp(id, sc_micro_id(d)) == 0)
        goto done; /* ourselves (not expected: we never answer into our own inbox) */
    p->st.answers++;
    md = json_object_get(j, "metadata");
    prefix = member_str(md, "subjects.prefix");
    cluster = member_str(md, "cluster");
    if (!prefix || strcmp(prefix, d->cfg->subjects_prefix) != 0)
        goto done;
    /* Two cluster members share a prefix by design; a lone sidecar beside a cluster does not. */
    if (cluster && strcmp(cluster, "true") == 0 && sc_micro_clustered(d))
        goto done;
    note_duplicate(p, id, member_str(md, "host"), member_str(md, "ingest.mode"), now);
done:
    json_decref(j);
    return ok;
}

/* The handler of "<inbox>.peers" (conn.h): one answer to our ping. */
static void
on_answer(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    struct sc_peers *p = d->peers;
    int64_t now = sc_now_mono_ms();
    uint64_t suppressed;

    if (!p)
        return;
    if (!look_at(p, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), now)) {
        p->st.invalid++;
        if (sc_lograte_take(&p->log_invalid, now, PEERS_LOG_EVERY_MS, &suppressed))
            sc_log(SC_LOG_WARN, "service discovery: an answer that is not a dlq-sidecar ping response",
                   "bytes", sc_log_int(natsMsg_GetDataLength(m)), "suppressed",
                   sc_log_int((int64_t)suppressed), NULL);
    }
}

/* Forgets duplicates not heard from for SC_PEERS_HOLD_PERIODS periods; repeats the error line for the others. */
static void
sweep(struct sc_peers *p, int64_t now)
{
    for (size_t i = 0; i < SC_PEERS_MAX; i++) {
        struct peer *e = &p->dup[i];
        if (!e->used)
            continue;
        if (now - e->last_mono > (int64_t)SC_PEERS_HOLD_PERIODS * SC_PEERS_PERIOD_MS) {
            sc_log(SC_LOG_WARN, "the other dlq-sidecar on this prefix is gone (no answer to service discovery)",
                   "prefix", p->d->cfg->subjects_prefix, "other_id", e->id, "other_host", e->host,
                   "silent_ms", sc_log_int(now - e->last_mono), NULL);
            e->used = false;
            p->st.duplicates--;
        } else if (now - e->last_log_mono >= PEERS_LOG_EVERY_MS) {
            log_duplicate(p, e, now);
        }
    }
}

/* The round: sweep, then ping every dlq-sidecar (while connected and not stopping), then re-arm. */
static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sc_peers *p = arg;
    struct sc_daemon *d = p->d;
    struct timeval tv = {SC_PEERS_PERIOD_MS / 1000, (SC_PEERS_PERIOD_MS % 1000) * 1000};

    (void)fd;
    (void)what;
    sweep(p, sc_now_mono_ms());
    /* No new ping while stopping: the exit waits until the server has read every publish. */
    if (!d->stopping && sc_conn_connected(d->conn) &&
        sc_conn_publish(d->conn, "$SRV.PING." SC_MICRO_NAME, p->reply, "", 0, NULL) == SC_OK)
        p->st.pings++;
    evtimer_add(p->timer, &tv);
}

sc_status
sc_peers_open(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_peers *p;
    struct timeval now = {0, 0};
    sc_status s;

    if (d->peers)
        return SC_OK;
    p = sc_xcalloc(1, sizeof(*p));
    p->d = d;
    snprintf(p->reply, sizeof(p->reply), "%s.peers", sc_conn_inbox(d->conn));
    d->peers = p;
    s = sc_conn_subscribe(d->conn, p->reply, NULL, 0, on_answer, d, NULL, err, errlen);
    if (s)
        return s;
    p->timer = evtimer_new(d->base, on_timer, p);
    if (!p->timer) {
        snprintf(err, errlen, "libevent: evtimer_new failed");
        return SC_EIO;
    }
    evtimer_add(p->timer, &now); /* the first round as soon as the loop runs */
    return SC_OK;
}

void
sc_peers_close(struct sc_daemon *d)
{
    if (!d->peers)
        return;
    if (d->peers->timer)
        event_free(d->peers->timer);
    free(d->peers);
    d->peers = NULL;
}

struct sc_peers_stats
sc_peers_get_stats(const struct sc_daemon *d)
{
    struct sc_peers_stats z = {0};
    return d->peers ? d->peers->st : z;
}

void
sc_peers_json(const struct sc_daemon *d, struct sc_jw *w, const char *key)
{
    sc_jw_open(w, key, '[');
    for (size_t i = 0; d->peers && i < SC_PEERS_MAX; i++) {
        const struct peer *e = &d->peers->dup[i];
        if (!e->used)
            continue;
        sc_jw_open(w, NULL, '{');
        sc_jw_str(w, "id", e->id);
        sc_jw_str(w, "host", e->host);
        sc_jw_str(w, "ingest_mode", e->mode);
        sc_jw_time(w, "since", e->first_wall);
        sc_jw_close(w, '}');
    }
    sc_jw_close(w, ']');
}

const char *
sc_peers_reason(const struct sc_daemon *d, char *out, size_t outlen)
{
    out[0] = '\0';
    for (size_t i = 0; d->peers && i < SC_PEERS_MAX; i++) {
        const struct peer *e = &d->peers->dup[i];
        if (!e->used)
            continue;
        snprintf(out, outlen,
                 "another dlq-sidecar (id %s%s%s) serves prefix %s outside cluster mode: one "
                 "sidecar per prefix; to run several, use cluster mode",
                 e->id, e->host[0] ? ", host " : "", e->host, d->cfg->subjects_prefix);
        break;
    }
    return out;
}
