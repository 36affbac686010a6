/* http.c - the operations listener on the loop (libevent evhttp): /healthz, /readyz and /metrics. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "sidecar-internal.h"

#define HTTP_MAX_HEADERS 8192       /* bytes of request headers */
#define HTTP_MAX_BODY 1024          /* bytes of a request body (we take none) */
#define HTTP_IDLE_TIMEOUT_S 15      /* idle or slow connections are closed */
#define HTTP_BODY_MAX (64u << 20)   /* largest response we build */

struct sc_http {
    struct sc_daemon *d;
    struct evhttp *srv;
    struct sc_buf body; /* reused for every response */
};

static void
reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
      const struct sc_buf *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();

    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (out && body->data && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        evbuffer_add(out, body->data, body->len);
    evhttp_send_reply(req, code, reason, out);
    if (out)
        evbuffer_free(out);
}

/*
 * /readyz: ready when NATS is connected, the subscriptions are live, the
 * store's state is "ok" and no shutdown has begun; 503 otherwise.
 */
static void
serve_readyz(struct sc_http *hs, struct evhttp_request *req)
{
    struct sc_daemon *d = hs->d;
    struct sc_buf *b = &hs->body;
    bool up = __atomic_load_n(&d->nats_connected, __ATOMIC_RELAXED);
    bool subs = d->sub_failed && d->sub_reply && d->sub_admin &&
                natsSubscription_IsValid(d->sub_failed) && natsSubscription_IsValid(d->sub_reply) &&
                natsSubscription_IsValid(d->sub_admin);
    const char *backend, *pstate;
    uint64_t queued;
    bool store_ok, ready;

    pstate = sc_persistence_state(d, &backend, &queued);
    store_ok = strcmp(pstate, "ok") == 0;
    ready = up && subs && store_ok && !d->stopping;
    sc_buf_appendf(b,
                   "{\"status\":\"%s\",\"nats\":\"%s\",\"subscriptions\":\"%s\","
                   "\"persistence\":",
                   ready ? "ready" : d->stopping ? "stopping" : "not ready",
                   up ? "connected" : "disconnected", subs ? "live" : "down");
    sc_json_quote(b, pstate, strlen(pstate));
    sc_buf_appendf(b, ",\"stopping\":%s}\n", d->stopping ? "true" : "false");
    reply(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", "application/json", b);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct sc_http *hs = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct sc_buf *b = &hs->body;

    sc_buf_reset(b);
    if (!path || !*path)
        path = "/";
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        sc_buf_appendf(b, "method not allowed\n");
        reply(req, 405, "Method Not Allowed", "text/plain; charset=utf-8", b);
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        sc_buf_appendf(b, "{\"status\":\"alive\",\"version\":\"%s\"}\n", DLQ_VERSION);
        reply(req, 200, "OK", "application/json", b);
    } else if (strcmp(path, "/readyz") == 0) {
        serve_readyz(hs, req);
    } else if (strcmp(path, "/metrics") == 0) {
        sc_metrics_render(hs->d, b);
        reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
    } else if (strcmp(path, "/") == 0) {
        sc_buf_appendf(b, "dlq-sidecar %s: /healthz /readyz /metrics\n", DLQ_VERSION);
        reply(req, 200, "OK", "text/plain; charset=utf-8", b);
    } else {
        sc_buf_appendf(b, "not found\n");
        reply(req, 404, "Not Found", "text/plain; charset=utf-8", b);
    }
}

/* Splits "host:port" / "[v6]:port" into host (brackets removed) and port. */
static bool
split_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    const char *h = s;
    size_t hl;
    long p;
    char *end;

    if (!colon)
        return false;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        h = s + 1;
        hl -= 2;
    }
    if (hl == 0 || hl >= hostlen)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno || *end || p <= 0 || p > 65535)
        return false;
    *port = (uint16_t)p;
    return true;
}

sc_status
sc_http_start(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_http *hs = NULL;
    char host[256];
    uint16_t port = 0;
    sc_status s = SC_EIO;

    if (!d->cfg->http_listen || !*d->cfg->http_listen)
        return SC_OK;
    if (!split_listen(d->cfg->http_listen, host, sizeof(host), &port)) {
        snprintf(err, errlen, "http.listen: '%s' is not host:port", d->cfg->http_listen);
        return SC_EINVAL;
    }
    hs = sc_xcalloc(1, sizeof(*hs));
    hs->d = d;
    sc_buf_init(&hs->body, HTTP_BODY_MAX);
    hs->srv = evhttp_new(d->base);
    if (!hs->srv) {
        snprintf(err, errlen, "http.listen: evhttp_new failed");
        goto done;
    }
    evhttp_set_max_headers_size(hs->srv, HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(hs->srv, HTTP_MAX_BODY);
    evhttp_set_timeout(hs->srv, HTTP_IDLE_TIMEOUT_S);
    evhttp_set_allowed_methods(hs->srv, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(hs->srv, on_request, hs);
    errno = 0;
    if (!evhttp_bind_socket_with_handle(hs->srv, host, port)) {
        snprintf(err, errlen, "http.listen: cannot listen on %s: %s", d->cfg->http_listen,
                 errno ? strerror(errno) : "address not usable");
        goto done;
    }
    sc_log(SC_LOG_INFO, "http listening", "address", d->cfg->http_listen, "paths",
           "/healthz,/readyz,/metrics", NULL);
    d->http = hs;
    hs = NULL;
    s = SC_OK;

done:
    if (hs) {
        if (hs->srv)
            evhttp_free(hs->srv);
        sc_buf_destroy(&hs->body);
        free(hs);
    }
    return s;
}

void
sc_http_stop(struct sc_daemon *d)
{
    struct sc_http *hs = d->http;

    if (!hs)
        return;
    evhttp_free(hs->srv);
    sc_buf_destroy(&hs->body);
    free(hs);
    d->http = NULL;
}
