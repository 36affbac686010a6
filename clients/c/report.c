/* report.c - a service's side: publish failure envelopes to the sidecar, through JetStream when a stream takes them. */
#include "client-internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

struct dlq_client {
    natsConnection *nc;
    jsCtx *js;
    char prefix[256];
    dlq_client_durable durable;
    int64_t timeout_ms;
    pthread_mutex_t mu; /* guards async_* */
    unsigned async_errors;
    char async_last[200];
};

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A report published with js_PublishAsync that JetStream refused (nats.c's thread). */
static void
on_async_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    struct dlq_client *c = closure;

    (void)js;
    pthread_mutex_lock(&c->mu);
    c->async_errors++;
    snprintf(c->async_last, sizeof(c->async_last), "%s (err_code %d): %s",
             natsStatus_GetText(pae->Err), (int)pae->ErrCode, pae->ErrText ? pae->ErrText : "");
    pthread_mutex_unlock(&c->mu);
}

dlq_client_status
dlq_client_new(natsConnection *nc, const struct dlq_client_options *opts, struct dlq_client **out,
               struct dlq_client_error *err)
{
    struct dlq_client *c;
    jsOptions jo;
    const char *prefix = opts && opts->prefix ? opts->prefix : "dlq";
    natsStatus ns;

    dlq_client_clear_error(err);
    if (out)
        *out = NULL;
    if (!nc || !out)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL,
                                    "dlq_client_new: NULL connection or out");
    if (strlen(prefix) >= sizeof(c->prefix) || !dlq_client_subject_ok(prefix, false))
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL,
                                    "prefix: \"%.64s\" is not a subject prefix", prefix);
    if (opts && (opts->durable < DLQ_CLIENT_DURABLE_AUTO || opts->durable > DLQ_CLIENT_DURABLE_NEVER))
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL, "durable: unknown mode %d",
                                    (int)opts->durable);
    c = calloc(1, sizeof(*c));
    if (!c)
        return dlq_client_set_error(err, DLQ_CLIENT_ENOMEM, NULL, NULL, "out of memory");
    c->nc = nc;
    snprintf(c->prefix, sizeof(c->prefix), "%s", prefix);
    c->durable = opts ? opts->durable : DLQ_CLIENT_DURABLE_AUTO;
    c->timeout_ms = opts && opts->ack_timeout_ms > 0 ? opts->ack_timeout_ms : 5000;
    pthread_mutex_init(&c->mu, NULL);
    jsOptions_Init(&jo);
    jo.Wait = c->timeout_ms;
    jo.PublishAsync.ErrHandler = on_async_error;
    jo.PublishAsync.ErrHandlerClosure = c;
    if ((ns = natsConnection_JetStream(&c->js, nc, &jo)) != NATS_OK) {
        dlq_client_set_error(err, DLQ_CLIENT_ENATS, NULL, NULL, "JetStream context: %s",
                             natsStatus_GetText(ns));
        pthread_mutex_destroy(&c->mu);
        free(c);
        return DLQ_CLIENT_ENATS;
    }
    *out = c;
    return DLQ_CLIENT_OK;
}

void
dlq_client_free(struct dlq_client *c)
{
    if (!c)
        return;
    dlq_client_flush(c, 0, NULL);
    jsCtx_Destroy(c->js);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Maps a nats.c status of a publish or request to ours, with its text in err. */
static dlq_client_status
nats_error(struct dlq_client_error *err, natsStatus ns, const char *what)
{
    if (ns == NATS_TIMEOUT)
        return dlq_client_set_error(err, DLQ_CLIENT_ETIMEOUT, NULL, NULL,
                                    "%s: no acknowledgement in time", what);
    if (ns == NATS_NO_RESPONDERS)
        return dlq_client_set_error(err, DLQ_CLIENT_ENORESPONDERS, NULL, NULL,
                                    "%s: no responders (no sidecar or stream listens)", what);
    if (ns == NATS_NO_MEMORY)
        return dlq_client_set_error(err, DLQ_CLIENT_ENOMEM, NULL, NULL, "%s: out of memory", what);
    return dlq_client_set_error(err, DLQ_CLIENT_ENATS, NULL, NULL, "%s: %s (%s)", what,
                                natsStatus_GetText(ns), nats_GetLastError(NULL));
}

/* Publishes msg through JetStream (c->js), waiting for the PubAck or not. */
static dlq_client_status
publish_js(struct dlq_client *c, natsMsg **msg, const char *msg_id, bool wait,
           struct dlq_client_ack *ack, struct dlq_client_error *err)
{
    jsPubOptions po;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus ns;

    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = c->timeout_ms;
    if (!wait) {
        ns = js_PublishMsgAsync(c->js, msg, &po);
        return ns == NATS_OK ? DLQ_CLIENT_OK : nats_error(err, ns, "JetStream publish");
    }
    ns = js_PublishMsg(&pa, c->js, *msg, &po, &jerr);
    if (ns != NATS_OK) {
        /* No stream captures the subject: nats.c says no responders (with err_code 10076). */
        if (jerr && ns != NATS_NO_RESPONDERS) {
            dlq_client_set_error(err, DLQ_CLIENT_EREFUSED, NULL, NULL,
                                 "JetStream refused the failure (err_code %d): %s", (int)jerr,
                                 nats_GetLastError(NULL));
            if (err)
                err->code = (int)jerr;
            return DLQ_CLIENT_EREFUSED;
        }
        return nats_error(err, ns, "JetStream publish (no stream captures the subject?)");
    }
    if (ack) {
        ack->durable = true;
        snprintf(ack->stream, sizeof(ack->stream), "%s", pa->Stream ? pa->Stream : "");
        ack->seq = pa->Sequence;
        ack->duplicate = pa->Duplicate;
        ack->stored = -1;
    }
    jsPubAck_Destroy(pa);
    return DLQ_CLIENT_OK;
}

/*
 * Reads the answer to a report (a request on the failure subject) into *ack,
 * or the refusal into err. Whoever takes the subject answers: the sidecar
 * ({"ok":..}, DESIGN section 3), or a JetStream stream that captures it,
 * with its PubAck ({"stream":..,"seq":..,"duplicate":..}: durable) or its
 * error ({"error":{"code":..,"err_code":..,"description":..}}, no "ok").
 */
static dlq_client_status
read_ack(const char *body, int len, struct dlq_client_ack *ack, struct dlq_client_error *err)
{
    json_t *root = json_loadb(body, (size_t)len, 0, NULL), *v, *e;
    dlq_client_status s = DLQ_CLIENT_EPROTO;

    if (!json_is_object(root)) {
        s = dlq_client_set_error(err, DLQ_CLIENT_EPROTO, NULL, NULL,
                                 "the answer is not a JSON object: %.*s", len > 100 ? 100 : len, body);
        goto done;
    }
    v = json_object_get(root, "ok");
    e = json_object_get(root, "error");
    if (!v) {
        const char *stream = json_string_value(json_object_get(root, "stream"));
        json_int_t jerr = json_integer_value(json_object_get(e, "err_code"));

        if (stream && *stream && !e) {
            if (ack) {
                ack->durable = true;
                snprintf(ack->stream, sizeof(ack->stream), "%s", stream);
                ack->seq = (uint64_t)json_integer_value(json_object_get(root, "seq"));
                ack->duplicate = json_is_true(json_object_get(root, "duplicate"));
                ack->stored = -1;
            }
            s = DLQ_CLIENT_OK;
        } else if (jerr) {
            const char *d = json_string_value(json_object_get(e, "description"));
            s = dlq_client_set_error(err, DLQ_CLIENT_EREFUSED, NULL, NULL,
                                     "JetStream refused the failure (err_code %d): %s", (int)jerr,
                                     d ? d : "(no description)");
            if (err)
                err->code = (int)jerr;
        } else {
            s = dlq_client_set_error(err, DLQ_CLIENT_EPROTO, NULL, NULL,
                                     "the answer is neither an acknowledgement nor a PubAck: %.*s",
                                     len > 100 ? 100 : len, body);
        }
        goto done;
    }
    if (json_is_false(v)) {
        const char *m = json_string_value(json_object_get(e, "message"));
        s = dlq_client_set_error(err, DLQ_CLIENT_EREFUSED, NULL, NULL, "the sidecar refused: %s",
                                 m ? m : "(no message)");
        if (err)
            err->code = (int)json_integer_value(json_object_get(e, "code"));
        goto done;
    }
    if (!json_is_true(v)) {
        s = dlq_client_set_error(err, DLQ_CLIENT_EPROTO, NULL, NULL,
                                 "the answer has no boolean ok: %.*s", len > 100 ? 100 : len, body);
        goto done;
    }
    if (ack) {
        const char *st = json_string_value(json_object_get(root, "status"));
        const char *next = json_string_value(json_object_get(root, "next_retry_at"));
        json_t *stored = json_object_get(root, "stored");
        ack->durable = false;
        snprintf(ack->status, sizeof(ack->status), "%s", st ? st : "");
        snprintf(ack->next_retry_at, sizeof(ack->next_retry_at), "%s", next ? next : "");
        ack->stored = json_is_boolean(stored) ? json_is_true(stored) : -1;
        ack->unknown_keys = (unsigned)json_array_size(json_object_get(root, "unknown_keys"));
    }
    s = DLQ_CLIENT_OK;

done:
    json_decref(root);
    return s;
}

/*
 * Publishes msg (with Nats-Msg-Id unless DURABLE_NEVER) on the failure
 * subject: a request whose one answer is read by read_ack(), or a plain
 * publish. No JetStream API call: a stream that captures the subject
 * answers the request itself.
 */
static dlq_client_status
publish_request(struct dlq_client *c, natsMsg *msg, bool wait, struct dlq_client_ack *ack,
                struct dlq_client_error *err)
{
    natsMsg *reply = NULL;
    natsStatus ns;
    dlq_client_status s;

    if (!wait) {
        ns = natsConnection_PublishMsg(c->nc, msg);
        return ns == NATS_OK ? DLQ_CLIENT_OK : nats_error(err, ns, "publish");
    }
    ns = natsConnection_RequestMsg(&reply, c->nc, msg, c->timeout_ms);
    if (ns != NATS_OK)
        return nats_error(err, ns, "request");
    s = read_ack(natsMsg_GetData(reply), natsMsg_GetDataLength(reply), ack, err);
    natsMsg_Destroy(reply);
    return s;
}

dlq_client_status
dlq_client_report(struct dlq_client *c, const char *service, const struct dlq_client_failure *f,
                  bool wait, struct dlq_client_ack *ack, struct dlq_client_error *err)
{
    dlq_client_status s;
    msgpack_sbuffer sb;
    natsMsg *msg = NULL;
    char subject[4200], msg_id[320];
    int64_t max_payload;
    natsStatus ns;

    dlq_client_clear_error(err);
    if (ack) {
        memset(ack, 0, sizeof(*ack));
        ack->stored = -1;
    }
    if (!c || !f)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL,
                                    "dlq_client_report: NULL client or failure");
    if (!service || (size_t)snprintf(subject, sizeof(subject), "%s.failed.%s", c->prefix, service) >=
                        sizeof(subject) ||
        !dlq_client_subject_ok(subject, false))
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL,
                                    "service: \"%.64s\" is not subject tokens (e.g. \"orders\")",
                                    service ? service : "(null)");
    max_payload = natsConnection_GetMaxPayload(c->nc);
    msgpack_sbuffer_init(&sb);
    if ((s = dlq_client_encode(f, max_payload > 0 ? (size_t)max_payload : 0, &sb, err)))
        goto done;
    if ((ns = natsMsg_Create(&msg, subject, NULL, sb.data, (int)sb.size)) != NATS_OK) {
        s = nats_error(err, ns, "message");
        goto done;
    }
    if (c->durable != DLQ_CLIENT_DURABLE_NEVER) {
        if (f->msg_id)
            snprintf(msg_id, sizeof(msg_id), "%s", f->msg_id);
        else
            snprintf(msg_id, sizeof(msg_id), "%s:%lld", f->task_id,
                     (long long)(f->has_failed_at ? f->failed_at_ms : wall_ms()));
    }
    if (c->durable == DLQ_CLIENT_DURABLE_ALWAYS) {
        s = publish_js(c, &msg, msg_id, wait, ack, err);
        goto done;
    }
    if (c->durable == DLQ_CLIENT_DURABLE_AUTO &&
        (ns = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id)) != NATS_OK) {
        s = nats_error(err, ns, "message header");
        goto done;
    }
    s = publish_request(c, msg, wait, ack, err);

done:
    natsMsg_Destroy(msg);
    msgpack_sbuffer_destroy(&sb);
    return s;
}

dlq_client_status
dlq_client_flush(struct dlq_client *c, int64_t timeout_ms, struct dlq_client_error *err)
{
    jsPubOptions po;
    natsStatus ns;
    unsigned failed;
    char last[sizeof(c->async_last)];

    dlq_client_clear_error(err);
    if (!c)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL, "dlq_client_flush: NULL client");
    if (timeout_ms <= 0)
        timeout_ms = c->timeout_ms;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms;
    ns = js_PublishAsyncComplete(c->js, &po);
    if (ns == NATS_OK)
        ns = natsConnection_FlushTimeout(c->nc, timeout_ms);
    pthread_mutex_lock(&c->mu);
    failed = c->async_errors;
    c->async_errors = 0;
    memcpy(last, c->async_last, sizeof(last));
    pthread_mutex_unlock(&c->mu);
    if (ns != NATS_OK)
        return nats_error(err, ns, "flush");
    if (failed)
        return dlq_client_set_error(err, DLQ_CLIENT_EREFUSED, NULL, NULL,
                                    "%u report(s) refused by JetStream; the last: %s", failed, last);
    return DLQ_CLIENT_OK;
}
