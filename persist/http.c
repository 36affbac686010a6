/* http.c - an HTTP client on libcurl's multi interface, driven by the caller's libevent loop (never blocks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "list.h"
#include "persist.h"

#define CONNECT_TIMEOUT_MS 5000L
#define FREE_HANDLES_MAX 8

/* One request: an easy handle reused across requests, its body and its response. */
struct http_req {
    struct persist_http *h;
    CURL *easy;
    struct curl_slist *hdrs;
    struct sc_buf body;    /* the request body (copied) */
    struct sc_buf resp;    /* the response body, capped */
    bool too_big;          /* the response passed its cap */
    persist_http_cb cb;
    void *ctx;
    char errbuf[CURL_ERROR_SIZE];
    struct sc_list link;   /* in h->active while curl runs it, else in h->idle */
};

/* One socket curl asked us to watch. */
struct http_sock {
    struct persist_http *h;
    curl_socket_t fd;
    struct event *ev;
    struct http_sock *next; /* graveyard link */
};

struct persist_http {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct sc_list active;   /* struct http_req, curl running them, newest first */
    struct sc_list idle;     /* struct http_req kept for reuse, most recent first */
    size_t nactive, nidle;
    struct http_sock *dead;  /* sockets removed by curl, freed outside their own callback */
    char *ca_file;
    char *username, *password;
    bool insecure;
};

static bool curl_ready;

static void check_done(struct persist_http *h);

/* Frees sockets that curl removed; never called from the removed socket's own event. */
static void
bury_dead(struct persist_http *h)
{
    struct http_sock *s;

    while ((s = h->dead)) {
        h->dead = s->next;
        event_free(s->ev);
        free(s);
    }
}

static void
on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    struct http_sock *s = arg;
    struct persist_http *h = s->h;
    int flags = 0, running = 0;

    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    check_done(h);
}

static void
on_timer_event(evutil_socket_t fd, short what, void *arg)
{
    struct persist_http *h = arg;
    int running = 0;

    (void)fd;
    (void)what;
    bury_dead(h);
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

/* CURLMOPT_SOCKETFUNCTION: watch, change or forget one socket. */
static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct persist_http *h = userp;
    struct http_sock *s = socketp;
    short ev = EV_PERSIST;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            event_del(s->ev);
            curl_multi_assign(h->multi, fd, NULL);
            s->next = h->dead;
            h->dead = s;
        }
        return 0;
    }
    if (what & CURL_POLL_IN)
        ev |= EV_READ;
    if (what & CURL_POLL_OUT)
        ev |= EV_WRITE;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->h = h;
        s->fd = fd;
        s->ev = event_new(h->base, fd, ev, on_sock_event, s);
        if (!s->ev) {
            free(s);
            return -1;
        }
        curl_multi_assign(h->multi, fd, s);
    } else {
        event_del(s->ev);
        event_assign(s->ev, h->base, fd, ev, on_sock_event, s);
    }
    event_add(s->ev, NULL);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: (re)arm or stop the one timer curl wants. */
static int
on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    struct persist_http *h = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(h->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(h->timer, &tv);
    return 0;
}

static size_t
on_write(char *p, size_t size, size_t n, void *userp)
{
    struct http_req *r = userp;
    size_t len = size * n;

    if (r->too_big)
        return 0;
    if (sc_buf_append(&r->resp, p, len) != SC_OK) {
        r->too_big = true;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    return len;
}

static void
unlink_active(struct persist_http *h, struct http_req *r)
{
    sc_list_remove(&r->link);
    h->nactive--;
}

/* Returns r's handle to the idle list (or frees it past FREE_HANDLES_MAX). */
static void
recycle(struct persist_http *h, struct http_req *r)
{
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    r->cb = NULL;
    r->ctx = NULL;
    if (h->nidle >= FREE_HANDLES_MAX) {
        curl_easy_cleanup(r->easy);
        sc_buf_destroy(&r->body);
        sc_buf_destroy(&r->resp);
        free(r);
        return;
    }
    /* Keep the storage of modest buffers for the next request; drop big ones. */
    if (r->body.cap > 8u * 1024 * 1024)
        sc_buf_destroy(&r->body);
    if (r->resp.cap > 8u * 1024 * 1024)
        sc_buf_destroy(&r->resp);
    sc_buf_reset(&r->body);
    sc_buf_reset(&r->resp);
    sc_list_push_front(&h->idle, &r->link);
    h->nidle++;
}

/* Reports every finished transfer to its callback. */
static void
check_done(struct persist_http *h)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(h->multi, &left))) {
        struct http_req *r = NULL;
        long status = 0;
        char why[CURL_ERROR_SIZE + 64];
        const char *error = NULL;
        persist_http_cb cb;
        void *ctx;
        CURL *easy;
        CURLcode result;

        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg is not to be read once its handle is removed: copy what is needed first. */
        easy = msg->easy_handle;
        result = msg->data.result;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(h->multi, easy);
        if (!r)
            continue;
        if (result == CURLE_OK) {
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
            if (!status)
                error = "no HTTP status in the response";
        } else if (r->too_big) {
            snprintf(why, sizeof(why), "response larger than %zu bytes", r->resp.max);
            error = why;
        } else {
            snprintf(why, sizeof(why), "%s%s%s", curl_easy_strerror(result),
                     r->errbuf[0] ? ": " : "", r->errbuf);
            error = why;
        }
        unlink_active(h, r);
        cb = r->cb;
        ctx = r->ctx;
        /* The callback may start new requests: the handle goes back first. */
        if (status) {
            /* The body must live through the callback: hand it over without copying. */
            struct sc_buf resp = r->resp;
            sc_buf_init(&r->resp, PERSIST_HTTP_MAX_RESPONSE);
            recycle(h, r);
            cb(ctx, status, resp.data ? resp.data : "", resp.len, NULL);
            sc_buf_destroy(&resp);
        } else {
            recycle(h, r);
            cb(ctx, 0, "", 0, error);
        }
    }
}

struct persist_http *
persist_http_new(struct event_base *base, const struct persist_http_opts *o)
{
    struct persist_http *h;

    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return NULL;
        curl_ready = true;
    }
    h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    sc_list_init(&h->active);
    sc_list_init(&h->idle);
    h->base = base;
    h->multi = curl_multi_init();
    h->timer = evtimer_new(base, on_timer_event, h);
    if (!h->multi || !h->timer) {
        persist_http_free(h);
        return NULL;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 4L);
    if (o) {
        h->insecure = o->insecure;
        if (o->ca_file && *o->ca_file)
            h->ca_file = sc_xstrdup(o->ca_file);
        if (o->username && *o->username) {
            h->username = sc_xstrdup(o->username);
            h->password = sc_xstrdup(o->password ? o->password : "");
        }
    }
    return h;
}

void
persist_http_free(struct persist_http *h)
{
    struct sc_list *n;

    if (!h)
        return;
    while ((n = sc_list_first(&h->active)) != NULL) {
        struct http_req *r = SC_LIST_ENTRY(n, struct http_req, link);
        curl_multi_remove_handle(h->multi, r->easy);
        unlink_active(h, r);
        recycle(h, r);
    }
    while ((n = sc_list_pop_front(&h->idle)) != NULL) {
        struct http_req *r = SC_LIST_ENTRY(n, struct http_req, link);
        curl_easy_cleanup(r->easy);
        sc_buf_destroy(&r->body);
        sc_buf_destroy(&r->resp);
        free(r);
    }
    if (h->multi)
        curl_multi_cleanup(h->multi); /* removes the remaining sockets through on_socket */
    bury_dead(h);
    if (h->timer)
        event_free(h->timer);
    free(h->ca_file);
    free(h->username);
    free(h->password);
    free(h);
}

/* Takes an idle request or makes one. */
static struct http_req *
take_req(struct persist_http *h)
{
    struct sc_list *n = sc_list_pop_front(&h->idle);
    struct http_req *r;

    if (n) {
        r = SC_LIST_ENTRY(n, struct http_req, link);
        h->nidle--;
        curl_easy_reset(r->easy);
        r->too_big = false;
        r->errbuf[0] = '\0';
        return r;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    sc_list_init(&r->link);
    r->easy = curl_easy_init();
    if (!r->easy) {
        free(r);
        return NULL;
    }
    r->h = h;
    sc_buf_init(&r->body, SIZE_MAX / 2);
    sc_buf_init(&r->resp, PERSIST_HTTP_MAX_RESPONSE);
    return r;
}

/* Sets the method of r's transfer and, when it has one, its body (r->body). */
static void
set_method(struct http_req *r, const char *method)
{
    CURL *e = r->easy;

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0 && !r->body.len) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        if (r->body.len || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.data ? r->body.data : "");
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
        }
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
}

/* Sets h's basic-auth credentials and TLS settings on the easy handle e. */
static void
set_credentials(const struct persist_http *h, CURL *e)
{
    if (h->username) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, h->username);
        curl_easy_setopt(e, CURLOPT_PASSWORD, h->password);
    }
    if (h->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    if (h->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

sc_status
persist_http_request(struct persist_http *h, const char *method, const char *url,
                     const char *content_type, const void *body, size_t len, long timeout_ms,
                     persist_http_cb cb, void *ctx)
{
    return persist_http_request_hdr(h, method, url, content_type, NULL, body, len, timeout_ms, cb,
                                    ctx);
}

sc_status
persist_http_request_hdr(struct persist_http *h, const char *method, const char *url,
                         const char *content_type, const char *header, const void *body,
                         size_t len, long timeout_ms, persist_http_cb cb, void *ctx)
{
    struct http_req *r;
    CURL *e;
    char ct[256];
    sc_status s = SC_ENOMEM;

    if (!h || !method || !url || !cb)
        return SC_EINVAL;
    r = take_req(h);
    if (!r)
        return SC_ENOMEM;
    e = r->easy;
    sc_buf_reset(&r->body);
    sc_buf_reset(&r->resp);
    if (body && len && sc_buf_append(&r->body, body, len) != SC_OK)
        goto fail;
    r->cb = cb;
    r->ctx = ctx;
    r->hdrs = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    if (!r->hdrs)
        goto fail;
    if (content_type) {
        struct curl_slist *n;
        snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
        n = curl_slist_append(r->hdrs, ct);
        if (!n)
            goto fail;
        r->hdrs = n;
    }
    if (header && header[0]) {
        struct curl_slist *n = curl_slist_append(r->hdrs, header);
        if (!n)
            goto fail;
        r->hdrs = n;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 30000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms > 0 && timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    set_method(r, method);
    set_credentials(h, e);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        s = SC_EIO;
        goto fail;
    }
    sc_list_push_front(&h->active, &r->link);
    h->nactive++;
    return SC_OK;

fail:
    recycle(h, r);
    return s;
}

size_t
persist_http_pending(const struct persist_http *h)
{
    return h ? h->nactive : 0;
}
