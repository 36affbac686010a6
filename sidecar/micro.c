/* micro.c - NATS service discovery (ADR-32, io.nats.micro.v1): $SRV.PING, $SRV.INFO and $SRV.STATS for the admin API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "daemon.h"
#include "fanout.h"
#include "micro.h"
#include "serving.h"

#define MICRO_NAME SC_MICRO_NAME
#define MICRO_DESCRIPTION "Dead-letter queue for NATS: admin request/reply API"
#define MICRO_ID_MAX 64
#define MICRO_HOST_MAX 256
#define MICRO_LAST_ERROR_MAX 256
#define MICRO_VERBS 3  /* PING, INFO, STATS */
#define MICRO_FORMS 3  /* $SRV.V, $SRV.V.<name>, $SRV.V.<name>.<id> */
#define MICRO_MAX_ENDPOINTS 32

/* Statistics of one endpoint (one admin verb), as ADR-32 reports them. */
struct micro_endpoint {
    uint64_t requests;   /* every request answered, errors included */
    uint64_t errors;     /* requests answered with an error */
    int64_t total_ns;    /* time spent handling them */
    char last_error[MICRO_LAST_ERROR_MAX];
};

/* The discovery state of one daemon: owned by d->micro, loop thread only after sc_micro_open(). */
struct sc_micro {
    char id[MICRO_ID_MAX];
    char host[MICRO_HOST_MAX]; /* gethostname(), "" when unknown */
    const char *names[MICRO_MAX_ENDPOINTS]; /* the admin verbs (borrowed, static) */
    size_t nnames;
    struct micro_endpoint ep[MICRO_MAX_ENDPOINTS];
};

static const char *const verbs[MICRO_VERBS] = {"PING", "INFO", "STATS"};

/*
 * make_id() writes a process-unique id into out: the NUID of a fresh inbox
 * ("_INBOX.<nuid>" minus the prefix), 22 characters of [0-9A-Za-z], which is
 * a valid subject token as ADR-32 needs. Falls back to pid and time.
 */
static void
make_id(char *out, size_t outlen)
{
    natsInbox *inbox = NULL;
    const char *p;

    if (natsInbox_Create(&inbox) == NATS_OK && (p = strrchr((const char *)inbox, '.')) != NULL &&
        p[1]) {
        snprintf(out, outlen, "%s", p + 1);
    } else {
        snprintf(out, outlen, "p%ldt%lld", (long)getpid(), (long long)sc_now_wall_ms());
    }
    natsInbox_Destroy(inbox);
}

static void on_request(void *ctx, natsMsg *m);

sc_status
sc_micro_open(struct sc_daemon *d, const char *const *endpoints, size_t n, char *err,
              size_t errlen)
{
    struct sc_micro *m;
    sc_status s = SC_OK;
    char subj[256];

    if (d->micro)
        return SC_OK;
    m = sc_xcalloc(1, sizeof(*m));
    make_id(m->id, sizeof(m->id));
    if (gethostname(m->host, sizeof(m->host) - 1) != 0)
        m->host[0] = '\0';
    for (size_t i = 0; i < n && i < MICRO_MAX_ENDPOINTS; i++)
        m->names[m->nnames++] = endpoints[i];
    d->micro = m;
    for (size_t v = 0; v < MICRO_VERBS && s == SC_OK; v++) {
        for (int form = 0; form < MICRO_FORMS && s == SC_OK; form++) {
            if (form == 0)
                snprintf(subj, sizeof(subj), "$SRV.%s", verbs[v]);
            else if (form == 1)
                snprintf(subj, sizeof(subj), "$SRV.%s.%s", verbs[v], MICRO_NAME);
            else
                snprintf(subj, sizeof(subj), "$SRV.%s.%s.%s", verbs[v], MICRO_NAME, m->id);
            s = sc_conn_subscribe(d->conn, subj, NULL, 0, on_request, d, NULL, err, errlen);
        }
    }
    return s;
}

void
sc_micro_close(struct sc_daemon *d)
{
    free(d->micro);
    d->micro = NULL;
}

void
sc_micro_record(struct sc_daemon *d, size_t verb, int64_t elapsed_ns, int error_code,
                const char *error_message)
{
    struct micro_endpoint *e;

    if (!d->micro || verb >= MICRO_MAX_ENDPOINTS)
        return;
    e = &d->micro->ep[verb];
    e->requests++;
    e->total_ns += elapsed_ns > 0 ? elapsed_ns : 0;
    if (error_code) {
        e->errors++;
        snprintf(e->last_error, sizeof(e->last_error), "%d:%s", error_code,
                 error_message ? error_message : "error");
    }
}

const char *
sc_micro_id(const struct sc_daemon *d)
{
    return d->micro ? d->micro->id : "";
}

bool
sc_micro_clustered(const struct sc_daemon *d)
{
    return d->cfg->cluster_enabled;
}

/* Writes the fields every response starts with: type, name, id, version, metadata. */
static void
identity(struct sc_daemon *d, struct sc_jw *w, const char *type)
{
    sc_jw_open(w, NULL, '{');
    sc_jw_str(w, "type", type);
    sc_jw_str(w, "name", MICRO_NAME);
    sc_jw_str(w, "id", d->micro->id);
    sc_jw_str(w, "version", DLQ_VERSION);
    sc_jw_open(w, "metadata", '{');
    sc_jw_str(w, "subjects.prefix", d->cfg->subjects_prefix);
    sc_jw_str(w, "subjects.queue_group", d->cfg->subjects_queue_group);
    sc_jw_str(w, "ingest.mode", d->cfg->ingest_mode == CONFIG_INGEST_JETSTREAM ? "jetstream" : "core");
    sc_jw_str(w, "cluster", sc_micro_clustered(d) ? "true" : "false");
    sc_jw_str(w, "host", d->micro->host);
    if (sc_micro_clustered(d)) {
        /* Which member this is and the partitions it serves now ("0,3,6"; "" for none). */
        struct sc_cluster_stats cs = sc_cluster_get_stats(d);
        struct sc_buf *b = &d->scratch;
        sc_buf_reset(b);
        sc_serving_list(d, sc_now_mono_ms(), b);
        sc_buf_appendc(b, '\0');
        sc_jw_str(w, "cluster.member_id", cs.member_id ? cs.member_id : "");
        sc_jw_str(w, "cluster.partitions", b->data);
    }
    sc_jw_close(w, '}');
}

/* Writes the name, subject and queue group of endpoint i (an admin verb). */
static void
endpoint_head(struct sc_daemon *d, struct sc_jw *w, size_t i)
{
    char subj[256];

    snprintf(subj, sizeof(subj), "%s.admin.%s", d->cfg->subjects_prefix, d->micro->names[i]);
    sc_jw_open(w, NULL, '{');
    sc_jw_str(w, "name", d->micro->names[i]);
    sc_jw_str(w, "subject", subj);
    /*
     * Outside cluster mode one instance serves a prefix: no queue group. In
     * cluster mode one member takes each request and asks the others (fanout.h).
     */
    sc_jw_str(w, "queue_group", sc_micro_clustered(d) ? SC_ADMIN_QUEUE : "");
}

static void
write_ping(struct sc_daemon *d, struct sc_buf *b)
{
    struct sc_jw w;

    sc_jw_init(&w, b);
    identity(d, &w, "io.nats.micro.v1.ping_response");
    sc_jw_close(&w, '}');
}

static void
write_info(struct sc_daemon *d, struct sc_buf *b)
{
    size_t n = d->micro->nnames;
    struct sc_jw w;

    sc_jw_init(&w, b);
    identity(d, &w, "io.nats.micro.v1.info_response");
    sc_jw_str(&w, "description", MICRO_DESCRIPTION);
    sc_jw_open(&w, "endpoints", '[');
    for (size_t i = 0; i < n && i < MICRO_MAX_ENDPOINTS; i++) {
        endpoint_head(d, &w, i);
        sc_jw_null(&w, "metadata");
        sc_jw_close(&w, '}');
    }
    sc_jw_close(&w, ']');
    sc_jw_close(&w, '}');
}

static void
write_stats(struct sc_daemon *d, struct sc_buf *b)
{
    size_t n = d->micro->nnames;
    char started[SC_RFC3339_LEN];
    struct sc_jw w;

    sc_format_rfc3339(d->started_wall, started);
    sc_jw_init(&w, b);
    identity(d, &w, "io.nats.micro.v1.stats_response");
    sc_jw_str(&w, "started", started);
    sc_jw_open(&w, "endpoints", '[');
    for (size_t i = 0; i < n && i < MICRO_MAX_ENDPOINTS; i++) {
        const struct micro_endpoint *e = &d->micro->ep[i];
        endpoint_head(d, &w, i);
        sc_jw_uint(&w, "num_requests", e->requests);
        sc_jw_uint(&w, "num_errors", e->errors);
        sc_jw_str(&w, "last_error", e->last_error);
        sc_jw_int(&w, "processing_time", e->total_ns);
        sc_jw_int(&w, "average_processing_time",
                  e->requests ? e->total_ns / (int64_t)e->requests : 0);
        sc_jw_close(&w, '}');
    }
    sc_jw_close(&w, ']');
    sc_jw_close(&w, '}');
}

/*
 * on_request() answers $SRV.<VERB>[.<name>[.<id>]] (ctx is the daemon).
 * The subscriptions are exact, so the subject's second token is the verb;
 * a request without a reply subject is ignored. The request body is
 * ignored as ADR-32 says.
 */
static void
on_request(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    const char *subj = natsMsg_GetSubject(m);
    const char *reply = natsMsg_GetReply(m);
    struct sc_buf *b = &d->out;

    if (!d->micro || !reply || !*reply || strncmp(subj, "$SRV.", 5) != 0)
        return;
    subj += 5;
    sc_buf_reset(b);
    if (strncmp(subj, "PING", 4) == 0 && (subj[4] == '\0' || subj[4] == '.')) {
        write_ping(d, b);
    } else if (strncmp(subj, "INFO", 4) == 0 && (subj[4] == '\0' || subj[4] == '.')) {
        write_info(d, b);
    } else if (strncmp(subj, "STATS", 5) == 0 && (subj[5] == '\0' || subj[5] == '.')) {
        write_stats(d, b);
    } else {
        return;
    }
    sc_conn_respond(d->conn, m, b->data, b->len, 0, NULL);
}
