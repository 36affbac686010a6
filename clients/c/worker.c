/* worker.c - a worker's side: serve a retry subject, run the handler, reply the outcome of DESIGN section 6. */
#include "client-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The failure a handler describes; reused for every retry of one worker (no allocation per retry). */
struct dlq_client_reply {
    bool failed;                        /* dlq_client_reply_fail() was called */
    bool has_type;
    char error[DLQC_MAX_ERROR + 1];     /* valid UTF-8 */
    char error_type[DLQC_MAX_STRING + 1];
    char scratch[DLQC_MAX_ERROR + 2];   /* the formatted message before it is cleaned */
};

/* Escaped JSON of an error at its widest: every byte as \u00XX (6 bytes), plus the frame. */
#define REPLY_BODY_MAX (6 * (DLQC_MAX_ERROR + DLQC_MAX_STRING) + 64)

struct dlq_client_worker {
    natsConnection *nc;
    natsSubscription *sub;
    dlq_client_handler handler;
    void *closure;
    struct dlq_client_reply reply; /* used by the subscription's one delivery thread */
    char body[REPLY_BODY_MAX];
};

int
dlq_client_reply_fail(struct dlq_client_reply *reply, const char *error_type, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!reply)
        return DLQ_CLIENT_RETRY_FAILED;
    reply->failed = true;
    reply->has_type = error_type != NULL;
    if (error_type)
        dlq_client_text_copy(error_type, strlen(error_type), reply->error_type,
                             sizeof(reply->error_type), DLQC_MAX_STRING, NULL);
    reply->error[0] = '\0';
    if (!fmt)
        return DLQ_CLIENT_RETRY_FAILED;
    va_start(ap, fmt);
    n = vsnprintf(reply->scratch, sizeof(reply->scratch), fmt, ap);
    va_end(ap);
    if (n < 0)
        reply->scratch[0] = '\0';
    /* scratch holds one byte more than the limit: a longer message gets the marker. */
    dlq_client_text_copy(reply->scratch, strlen(reply->scratch), reply->error, sizeof(reply->error),
                         DLQC_MAX_ERROR, DLQC_TRUNC_MARKER);
    return DLQ_CLIENT_RETRY_FAILED;
}

/* Appends s as a JSON string (valid UTF-8 expected) to buf at *o; false when it does not fit. */
static bool
json_string(char *buf, size_t cap, size_t *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    if (*o + 1 >= cap)
        return false;
    buf[(*o)++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7];
        size_t n = 0;
        switch (*p) {
        case '"': memcpy(esc, "\\\"", n = 2); break;
        case '\\': memcpy(esc, "\\\\", n = 2); break;
        case '\n': memcpy(esc, "\\n", n = 2); break;
        case '\r': memcpy(esc, "\\r", n = 2); break;
        case '\t': memcpy(esc, "\\t", n = 2); break;
        case '\b': memcpy(esc, "\\b", n = 2); break;
        case '\f': memcpy(esc, "\\f", n = 2); break;
        default:
            if (*p < 0x20) {
                esc[0] = '\\';
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hex[*p >> 4];
                esc[5] = hex[*p & 15];
                n = 6;
            } else {
                esc[0] = (char)*p;
                n = 1;
            }
        }
        if (*o + n + 1 >= cap)
            return false;
        memcpy(buf + *o, esc, n);
        *o += n;
    }
    if (*o + 1 >= cap)
        return false;
    buf[(*o)++] = '"';
    return true;
}

/* Appends the literal text t to buf at *o; false when it does not fit. */
static bool
append(char *buf, size_t cap, size_t *o, const char *t)
{
    size_t n = strlen(t);

    if (*o + n + 1 > cap)
        return false;
    memcpy(buf + *o, t, n + 1); /* with its NUL, which the next append overwrites */
    *o += n;
    return true;
}

/* True when s is valid UTF-8 throughout. */
static bool
utf8_ok(const char *s)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t len = strlen(s);

    for (size_t k = 0; k < len;) {
        uint32_t cp;
        size_t n = dlq_client_utf8_next(p + k, len - k, &cp);
        if (!n)
            return false;
        k += n;
    }
    return true;
}

size_t
dlq_client_reply_encode(bool ok, const char *error, const char *error_type, char *buf, size_t cap)
{
    size_t o = 0;

    if (!buf || cap == 0)
        return 0;
    buf[0] = '\0';
    if (ok) {
        if (!append(buf, cap, &o, "{\"ok\":true}"))
            return 0;
        buf[o] = '\0';
        return o;
    }
    if (!error)
        error = "";
    if (!utf8_ok(error) || (error_type && !utf8_ok(error_type)))
        return 0;
    if (!append(buf, cap, &o, "{\"ok\":false,\"error\":") || !json_string(buf, cap, &o, error))
        return 0;
    if (error_type &&
        (!append(buf, cap, &o, ",\"error_type\":") || !json_string(buf, cap, &o, error_type)))
        return 0;
    if (!append(buf, cap, &o, "}"))
        return 0;
    buf[o] = '\0';
    return o;
}

/* A header's value, or NULL when absent. */
static const char *
header(natsMsg *msg, const char *name)
{
    const char *v = NULL;

    return natsMsgHeader_Get(msg, name, &v) == NATS_OK ? v : NULL;
}

/* A header holding a decimal int in [lo, INT_MAX]; dflt when absent or unreadable. */
static int
header_int(natsMsg *msg, const char *name, int lo, int dflt)
{
    const char *v = header(msg, name);
    char *end;
    long n;

    if (!v || !*v)
        return dflt;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || *end || n < lo || n > INT_MAX)
        return dflt;
    return (int)n;
}

/* The subscription's callback (nats.c's delivery thread of this subscription): one retry. */
static void
on_retry(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct dlq_client_worker *w = closure;
    struct dlq_client_retry r;
    const char *reply_to = natsMsg_GetReply(msg);
    int result;
    size_t len;

    (void)sub;
    memset(&r, 0, sizeof(r));
    r.subject = natsMsg_GetSubject(msg);
    r.task = natsMsg_GetData(msg);
    r.task_len = (size_t)natsMsg_GetDataLength(msg);
    if (!r.task)
        r.task = "";
    r.task_id = header(msg, "Dlq-Task-Id");
    r.attempt = header_int(msg, "Dlq-Attempt", 1, 0);
    r.max_retries = header_int(msg, "Dlq-Max-Retries", 0, -1);
    r.error_category = header(msg, "Dlq-Error-Category");
    r.original_subject = header(msg, "Dlq-Original-Subject");
    r.first_failed_at = header(msg, "Dlq-First-Failed-At");
    r.episode = header(msg, "Dlq-Episode");
    r.msg_id = header(msg, "Nats-Msg-Id");
    r.msg = msg;

    w->reply.failed = false;
    w->reply.has_type = false;
    w->reply.error[0] = '\0';
    result = w->handler(&r, &w->reply, w->closure);
    if (result != DLQ_CLIENT_RETRY_OK && result != DLQ_CLIENT_RETRY_FAILED)
        dlq_client_reply_fail(&w->reply, "dlq.InvalidHandlerResult",
                              "worker handler returned an invalid result %d", result);
    else if (result == DLQ_CLIENT_RETRY_FAILED && !w->reply.failed)
        dlq_client_reply_fail(&w->reply, NULL, "worker handler failed without a message");
    else if (result == DLQ_CLIENT_RETRY_FAILED && !w->reply.error[0])
        snprintf(w->reply.error, sizeof(w->reply.error), "worker handler failed without a message");

    if (reply_to && *reply_to) {
        if (result == DLQ_CLIENT_RETRY_OK)
            len = dlq_client_reply_encode(true, NULL, NULL, w->body, sizeof(w->body));
        else
            len = dlq_client_reply_encode(false, w->reply.error,
                                          w->reply.has_type ? w->reply.error_type : NULL, w->body,
                                          sizeof(w->body));
        /* Cannot happen (the texts were cleaned and the body is sized for them); never reply success for it. */
        if (len == 0)
            len = dlq_client_reply_encode(false, "worker reply could not be encoded",
                                          "dlq.InvalidHandlerResult", w->body, sizeof(w->body));
        natsConnection_Publish(nc, reply_to, w->body, (int)len);
    }
    natsMsg_Destroy(msg);
}

dlq_client_status
dlq_client_serve(natsConnection *nc, const char *subject, const char *queue,
                 dlq_client_handler handler, void *closure, struct dlq_client_worker **out,
                 struct dlq_client_error *err)
{
    struct dlq_client_worker *w;
    natsStatus ns;

    dlq_client_clear_error(err);
    if (out)
        *out = NULL;
    if (!nc || !handler || !out)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL,
                                    "dlq_client_serve: NULL connection, handler or out");
    if (!dlq_client_subject_ok(subject, true))
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL,
                                    "subject: \"%.64s\" is not a NATS subject",
                                    subject ? subject : "(null)");
    if (queue && (!*queue || strpbrk(queue, " \t\r\n.*>")))
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL,
                                    "queue: \"%.64s\" is not a queue group name", queue);
    w = calloc(1, sizeof(*w));
    if (!w)
        return dlq_client_set_error(err, DLQ_CLIENT_ENOMEM, NULL, NULL, "out of memory");
    w->nc = nc;
    w->handler = handler;
    w->closure = closure;
    if (queue)
        ns = natsConnection_QueueSubscribe(&w->sub, nc, subject, queue, on_retry, w);
    else
        ns = natsConnection_Subscribe(&w->sub, nc, subject, on_retry, w);
    if (ns != NATS_OK) {
        free(w);
        return dlq_client_set_error(err, DLQ_CLIENT_ENATS, NULL, NULL, "subscribe %s: %s", subject,
                                    natsStatus_GetText(ns));
    }
    /* The subscription is known to the server once this returns (a retry right after is not missed). */
    natsConnection_FlushTimeout(nc, 5000);
    *out = w;
    return DLQ_CLIENT_OK;
}

void
dlq_client_worker_free(struct dlq_client_worker *w)
{
    if (!w)
        return;
    if (natsSubscription_Drain(w->sub) == NATS_OK)
        natsSubscription_WaitForDrainCompletion(w->sub, 10000);
    else
        natsSubscription_Unsubscribe(w->sub);
    natsSubscription_Destroy(w->sub);
    free(w);
}
