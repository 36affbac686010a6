/* http.c - the operations listener on the loop: /healthz, /readyz and /metrics, with a connection cap, a deadline per connection and file descriptors kept in reserve. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "daemon.h"
#include "http.h"
#include "list.h"
#include "metrics.h"
#include "peers.h"

/*
 * Why not evhttp: libevent 2.1.12 (Debian 12) has no evhttp_set_max_connections
 * (2.2 only), does not export evhttp_get_request (so an accepted socket cannot
 * be handed to it after a check), tells nothing about a connection before its
 * headers are complete, and its timeout is an idle timeout that every byte
 * resets. A trickling client therefore held a socket forever, and at
 * RLIMIT_NOFILE its listener spun on EMFILE. The three endpoints need one GET
 * each, so this file reads one request per connection itself, answers with
 * "Connection: close" and owns every connection from accept to close.
 *
 * Who holds a connection at each moment: the listener callback owns the
 * accepted socket until it either closes it (over the cap, or too close to
 * the fd limit) or wraps it in a struct http_conn on hs->conns; from then on
 * the conn owns socket and deadline timer, and exactly one path ends it
 * (answer written, client gone, or the deadline): conn_close() moves it to
 * hs->dead (socket closed at once), and the reap event frees it outside its
 * own callbacks. sc_http_stop() frees all.
 */

#define HTTP_MAX_HEADER_BYTES 8192 /* request line and headers; more gets 431 */
#define HTTP_MAX_BODY_BYTES 1024   /* a declared body above this gets 413 (we read none) */
#define HTTP_BODY_MAX (64u << 20)  /* largest response we build */
#define HTTP_FD_RESERVE 64         /* fds below RLIMIT_NOFILE that HTTP never takes */
#define HTTP_BACKLOG 128
#define HTTP_ACCEPT_PAUSE_MS 100   /* listener rests this long after an EMFILE-like error */
#define HTTP_WARN_EVERY_MS 10000   /* rate limit of the refusal warnings */

struct http_conn {
    struct sc_http *hs;
    struct bufferevent *bev;   /* owns the socket (BEV_OPT_CLOSE_ON_FREE); NULL once closed */
    struct event *deadline;    /* fires request_timeout_ms after accept; never re-armed */
    size_t scanned;            /* input bytes already searched for the end of the headers */
    bool answering;            /* the answer is queued; close when it is written */
    bool linger;               /* the client may still be sending: drain before closing */
    bool draining;             /* answer written, write side shut: discarding input until EOF */
    struct sc_list link;       /* on hs->conns (oldest first), then on hs->dead */
};

struct sc_http {
    struct sc_daemon *d;
    struct evconnlistener *lst;
    struct event *resume;      /* re-enables the listener after an accept error */
    struct event *reap;        /* frees the connections on dead */
    struct sc_list conns;      /* open connections (nconns of them), oldest first */
    struct sc_list dead;       /* closed, waiting for the reap event */
    size_t nconns;
    size_t cap;                /* http.max_connections, lowered to fit under the fd limit */
    int fd_ceiling;            /* an accepted fd at or above this is closed at once */
    struct sc_buf body;        /* reused for every response */
    struct sc_http_stats st;
    int64_t warned_mono;       /* last refusal warning */
    uint64_t warned_refused;   /* refusals already reported */
};

/* ---- connection life ------------------------------------------------------------------------ */

/* Frees c's socket and timer (the socket closes now) and c itself. */
static void
conn_free(struct http_conn *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->deadline)
        event_free(c->deadline);
    free(c);
}

/*
 * conn_close() ends c: the socket is closed at once (the fd is free for the
 * next accept) and the struct goes to hs->dead, freed by the reap event, so
 * that no callback frees the object it runs for.
 */
static void
conn_close(struct http_conn *c)
{
    struct sc_http *hs = c->hs;

    if (!c->bev)
        return;
    bufferevent_free(c->bev);
    c->bev = NULL;
    event_del(c->deadline);
    sc_list_remove(&c->link);
    hs->nconns--;
    sc_list_push_back(&hs->dead, &c->link);
    event_active(hs->reap, EV_TIMEOUT, 0);
}

static void
on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct sc_http *hs = arg;
    struct sc_list *n;

    (void)fd;
    (void)what;
    while ((n = sc_list_pop_front(&hs->dead)) != NULL)
        conn_free(SC_LIST_ENTRY(n, struct http_conn, link));
}

/* Warns about refused connections at most every HTTP_WARN_EVERY_MS. */
static void
warn_refused(struct sc_http *hs, const char *why)
{
    int64_t now = sc_now_mono_ms();
    uint64_t total = hs->st.refused_cap + hs->st.refused_fds;

    if (hs->warned_mono && now - hs->warned_mono < HTTP_WARN_EVERY_MS)
        return;
    sc_log(SC_LOG_WARN, "http: connections refused", "reason", why, "refused",
           sc_log_int((int64_t)(total - hs->warned_refused)), "open",
           sc_log_int((int64_t)hs->nconns), "max_connections", sc_log_int((int64_t)hs->cap), NULL);
    hs->warned_mono = now;
    hs->warned_refused = total;
}

/* ---- the answer ----------------------------------------------------------------------------- */

/* Queues the whole answer (status, headers, body unless HEAD) and stops reading. */
static void
answer(struct http_conn *c, bool head, int code, const char *reason, const char *ctype,
       const char *extra_header)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const struct sc_buf *b = &c->hs->body;

    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                        code, reason, ctype, b->len, extra_header ? extra_header : "");
    if (!head && b->data && b->len)
        evbuffer_add(out, b->data, b->len);
    c->answering = true;
    c->linger = code == 400 || code == 413 || code == 431 ||
                evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_enable(c->bev, EV_WRITE);
}

/* A plain-text error answer. */
static void
answer_text(struct http_conn *c, bool head, int code, const char *reason, const char *text,
            const char *extra_header)
{
    sc_buf_reset(&c->hs->body);
    sc_buf_appendf(&c->hs->body, "%s\n", text);
    answer(c, head, code, reason, "text/plain; charset=utf-8", extra_header);
}

/*
 * /readyz: ready when NATS is connected, the subscriptions are live (in
 * jetstream mode: the ingest stream and consumer set up), the
 * store's state is "ok", no other sidecar serves the prefix outside
 * cluster mode (peers.h: then "reason" says so and "duplicate_sidecars"
 * lists them) and no shutdown has begun; 503 otherwise.
 */
static void
serve_readyz(struct http_conn *c, bool head)
{
    struct sc_daemon *d = c->hs->d;
    struct sc_buf *b = &c->hs->body;
    bool up = sc_conn_connected(d->conn);
    bool subs = sc_conn_subscribed(d->conn) && (!d->js || sc_js_get_stats(d->js).ready);
    bool alone = sc_peers_get_stats(d).duplicates == 0;
    const char *backend, *pstate;
    char reason[512];
    uint64_t queued;
    bool store_ok, ready;
    struct sc_jw w;

    pstate = sc_persistence_state(d, &backend, &queued);
    store_ok = strcmp(pstate, "ok") == 0;
    ready = up && subs && store_ok && alone && !d->stopping;
    sc_buf_appendf(b,
                   "{\"status\":\"%s\",\"nats\":\"%s\",\"subscriptions\":\"%s\","
                   "\"persistence\":",
                   ready ? "ready" : d->stopping ? "stopping" : "not ready",
                   up ? "connected" : "disconnected", subs ? "live" : "down");
    sc_json_quote(b, pstate, strlen(pstate));
    sc_buf_appendf(b, ",\"stopping\":%s", d->stopping ? "true" : "false");
    sc_jw_init(&w, b);
    w.first = false; /* members were written above */
    if (!alone)
        sc_jw_str(&w, "reason", sc_peers_reason(d, reason, sizeof(reason)));
    sc_peers_json(d, &w, "duplicate_sidecars");
    sc_buf_append(b, "}\n", 2);
    answer(c, head, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", "application/json",
           NULL);
}

/* Routes a GET or HEAD of path (len bytes, query removed). */
static void
serve(struct http_conn *c, bool head, const char *path, size_t len)
{
    struct sc_http *hs = c->hs;
    struct sc_buf *b = &hs->body;

#define PATH_IS(s) (len == sizeof(s) - 1 && memcmp(path, s, len) == 0)
    sc_buf_reset(b);
    if (PATH_IS("/healthz")) {
        sc_buf_appendf(b, "{\"status\":\"alive\",\"version\":\"%s\"}\n", DLQ_VERSION);
        answer(c, head, 200, "OK", "application/json", NULL);
    } else if (PATH_IS("/readyz")) {
        serve_readyz(c, head);
    } else if (PATH_IS("/metrics")) {
        struct sc_http_stats st = hs->st;
        st.open = hs->nconns;
        st.max_connections = hs->cap;
        sc_metrics_render(hs->d, &st, b);
        answer(c, head, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL);
    } else if (PATH_IS("/")) {
        sc_buf_appendf(b, "dlq-sidecar %s: /healthz /readyz /metrics\n", DLQ_VERSION);
        answer(c, head, 200, "OK", "text/plain; charset=utf-8", NULL);
    } else {
        answer_text(c, head, 404, "Not Found", "not found", NULL);
    }
#undef PATH_IS
}

/* ---- the request ---------------------------------------------------------------------------- */

/* Length of the line at p (up to '\n', without "\r\n"), and the start of the next in *next. */
static size_t
line_at(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n;

    if (!nl)
        nl = end;
    n = (size_t)(nl - p);
    if (n > 0 && p[n - 1] == '\r')
        n--;
    *next = nl < end ? nl + 1 : end;
    return n;
}

/* Is the header line (n bytes at p) "name: ..." (name any case)? Sets *value to what follows. */
static bool
header_is(const char *p, size_t n, const char *name, const char **value, size_t *vlen)
{
    size_t nl = strlen(name), i;

    if (n <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0)
        return false;
    for (i = nl + 1; i < n && (p[i] == ' ' || p[i] == '\t'); i++)
        ;
    *value = p + i;
    *vlen = n - i;
    while (*vlen > 0 && (p[i + *vlen - 1] == ' ' || p[i + *vlen - 1] == '\t'))
        (*vlen)--;
    return true;
}

/*
 * Parses the complete head (hl bytes at h: request line, headers, blank line)
 * and queues the answer. The body, if any, is never read: a declared body
 * over HTTP_MAX_BODY_BYTES (or one of unknown length) is refused with 413.
 */
static void
handle_request(struct http_conn *c, const char *h, size_t hl)
{
    const char *end = h + hl, *p, *next, *sp1, *sp2, *target, *v, *q;
    size_t n, tlen, vlen;
    bool get, head;
    long long clen = 0;

    n = line_at(h, end, &next);
    sp1 = memchr(h, ' ', n);
    sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(h + n - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp2 == sp1 + 1 || (size_t)(h + n - sp2 - 1) < 8 ||
        memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        answer_text(c, false, 400, "Bad Request", "bad request line", NULL);
        return;
    }
    get = sp1 - h == 3 && memcmp(h, "GET", 3) == 0;
    head = sp1 - h == 4 && memcmp(h, "HEAD", 4) == 0;
    for (p = next; p < end; p = next) {
        n = line_at(p, end, &next);
        if (n == 0)
            break;
        if (header_is(p, n, "Content-Length", &v, &vlen)) {
            char num[24];
            char *e;
            if (vlen == 0 || vlen >= sizeof(num)) {
                clen = -1;
            } else {
                memcpy(num, v, vlen);
                num[vlen] = '\0';
                errno = 0;
                clen = strtoll(num, &e, 10);
                if (errno || *e || clen < 0)
                    clen = -1;
            }
        } else if (header_is(p, n, "Transfer-Encoding", &v, &vlen)) {
            clen = -1; /* a body of unknown length */
        }
    }
    if (!get && !head) {
        answer_text(c, false, 405, "Method Not Allowed", "method not allowed",
                    "Allow: GET, HEAD\r\n");
        return;
    }
    if (clen < 0 || clen > HTTP_MAX_BODY_BYTES) {
        answer_text(c, head, 413, "Content Too Large", "request body not accepted", NULL);
        return;
    }
    /* origin-form "/path?query" or absolute-form "http://host/path?query" */
    target = sp1 + 1;
    tlen = (size_t)(sp2 - target);
    if (tlen > 7 && strncasecmp(target, "http://", 7) == 0) {
        q = memchr(target + 7, '/', tlen - 7);
        tlen = q ? tlen - (size_t)(q - target) : 1;
        target = q ? q : "/";
    }
    q = memchr(target, '?', tlen);
    if (q)
        tlen = (size_t)(q - target);
    if (tlen == 0) {
        target = "/";
        tlen = 1;
    }
    serve(c, head, target, tlen);
}

/*
 * Looks for the end of the headers in c's input, from where the previous
 * call stopped (each byte is searched once, however slowly it trickles in).
 * Returns the head's length, 0 when it is not complete yet.
 */
static size_t
head_length(struct http_conn *c, struct evbuffer *in)
{
    size_t len = evbuffer_get_length(in);
    struct evbuffer_ptr from, crlf, lf;
    size_t start = c->scanned > 3 ? c->scanned - 3 : 0;
    size_t found = 0;

    if (evbuffer_ptr_set(in, &from, start, EVBUFFER_PTR_SET) == 0) {
        crlf = evbuffer_search(in, "\r\n\r\n", 4, &from);
        lf = evbuffer_search(in, "\n\n", 2, &from);
        if (crlf.pos >= 0 && (lf.pos < 0 || crlf.pos <= lf.pos))
            found = (size_t)crlf.pos + 4;
        else if (lf.pos >= 0)
            found = (size_t)lf.pos + 2;
    }
    c->scanned = len;
    return found;
}

static void
on_read(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char head[HTTP_MAX_HEADER_BYTES];
    size_t hl;

    if (c->draining) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (c->answering)
        return;
    hl = head_length(c, in);
    if (hl == 0 || hl > sizeof(head)) {
        if (evbuffer_get_length(in) >= sizeof(head) || hl > sizeof(head)) {
            c->hs->st.too_large++;
            answer_text(c, false, 431, "Request Header Fields Too Large", "request head too large",
                        NULL);
        }
        return;
    }
    evbuffer_remove(in, head, hl);
    c->hs->st.requests++;
    handle_request(c, head, hl);
}

/*
 * The output is empty: the whole answer went out. Closing a socket with
 * unread input makes the kernel send a reset, which can destroy the answer
 * before the client reads it; so when the client may still be sending (a
 * refused head or body), shut the write side and discard its input until it
 * closes (a lingering close, bounded by the deadline).
 */
static void
on_write(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;

    if (!c->answering)
        return;
    if (!c->linger) {
        conn_close(c);
        return;
    }
    c->answering = false;
    c->draining = true;
    shutdown(bufferevent_getfd(bev), SHUT_WR);
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_disable(bev, EV_WRITE);
    bufferevent_enable(bev, EV_READ);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    struct http_conn *c = arg;

    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_close(c);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;

    (void)fd;
    (void)what;
    c->hs->st.timed_out++;
    conn_close(c);
}

/* ---- accepting ------------------------------------------------------------------------------ */

/*
 * At the cap, the oldest connection that has not sent its whole request head
 * makes room for the new one: idle or trickling sockets (one client holding
 * every slot) can then never keep a health probe out, since a probe sends its
 * head at once and is answered before it is the oldest. Returns false when
 * every open connection is being answered (then the new one is refused).
 */
static bool
evict_oldest(struct sc_http *hs)
{
    struct http_conn *c, *oldest = NULL;
    struct sc_list *n;

    SC_LIST_FOREACH(n, &hs->conns) { /* oldest first */
        c = SC_LIST_ENTRY(n, struct http_conn, link);
        if (!c->answering && !c->draining) {
            oldest = c;
            break;
        }
    }
    if (!oldest)
        return false;
    hs->st.evicted++;
    conn_close(oldest);
    return true;
}

static void
on_accept(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen,
          void *arg)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n";
    struct sc_http *hs = arg;
    struct http_conn *c;
    struct timeval tv;
    int64_t ms = hs->d->cfg->http_request_timeout_ms;
    ssize_t w;

    (void)lst;
    (void)sa;
    (void)salen;
    hs->st.accepted++;
    /*
     * The kernel hands out the lowest free fd: one at or above the ceiling
     * means fewer than HTTP_FD_RESERVE are left for NATS and the store.
     */
    if (fd < hs->fd_ceiling && hs->nconns >= hs->cap)
        evict_oldest(hs);
    if (fd >= hs->fd_ceiling || hs->nconns >= hs->cap) {
        bool fds = fd >= hs->fd_ceiling;
        if (fds)
            hs->st.refused_fds++;
        else
            hs->st.refused_cap++;
        w = send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL); /* best effort */
        (void)w;
        evutil_closesocket(fd);
        warn_refused(hs, fds ? "too close to the file descriptor limit" : "max_connections");
        return;
    }
    c = sc_xcalloc(1, sizeof(*c));
    c->hs = hs;
    evutil_make_socket_nonblocking(fd);
    c->bev = bufferevent_socket_new(hs->d->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->deadline = evtimer_new(hs->d->base, on_deadline, c);
    if (!c->bev || !c->deadline) {
        if (!c->bev)
            evutil_closesocket(fd);
        conn_free(c);
        return;
    }
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, HTTP_MAX_HEADER_BYTES);
    bufferevent_enable(c->bev, EV_READ);
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    evtimer_add(c->deadline, &tv);
    sc_list_push_back(&hs->conns, &c->link);
    hs->nconns++;
}

static void
on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct sc_http *hs = arg;

    (void)fd;
    (void)what;
    evconnlistener_enable(hs->lst);
}

/*
 * accept(2) failed. EMFILE and friends are not retried by libevent: the
 * listening socket stays readable and the loop would spin; rest the
 * listener for HTTP_ACCEPT_PAUSE_MS instead.
 */
static void
on_accept_error(struct evconnlistener *lst, void *arg)
{
    struct sc_http *hs = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, HTTP_ACCEPT_PAUSE_MS * 1000};

    hs->st.accept_errors++;
    evconnlistener_disable(lst);
    event_add(hs->resume, &tv);
    if (!hs->warned_mono || sc_now_mono_ms() - hs->warned_mono >= HTTP_WARN_EVERY_MS) {
        sc_log(SC_LOG_WARN, "http: accept failed; listener paused", "error",
               evutil_socket_error_to_string(err), "pause_ms", sc_log_int(HTTP_ACCEPT_PAUSE_MS),
               NULL);
        hs->warned_mono = sc_now_mono_ms();
    }
}

/* ---- start and stop ------------------------------------------------------------------------- */

/* Splits "host:port" / "[v6]:port" into host (brackets removed) and port. */
static bool
split_listen(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
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
    snprintf(port, portlen, "%ld", p);
    return true;
}

/*
 * Sets hs->fd_ceiling and hs->cap from RLIMIT_NOFILE (the soft limit, left
 * as the operator set it) and http.max_connections; lowest_fd is the next fd
 * the kernel would hand out now.
 */
static void
size_budget(struct sc_http *hs, int lowest_fd)
{
    struct rlimit rl;
    int64_t limit = 1 << 20, room;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)limit)
        limit = (int64_t)rl.rlim_cur;
    /* One below the reserve: the fd of a connection refused at accept lives a moment too. */
    hs->fd_ceiling = (int)(limit - HTTP_FD_RESERVE - 1);
    room = hs->fd_ceiling - lowest_fd;
    hs->cap = (size_t)hs->d->cfg->http_max_connections;
    if (room < (int64_t)hs->cap) {
        hs->cap = room > 0 ? (size_t)room : 0;
        sc_log(SC_LOG_WARN, "http: max_connections lowered to fit under the file descriptor limit",
               "max_connections", sc_log_int(hs->d->cfg->http_max_connections), "effective",
               sc_log_int((int64_t)hs->cap), "rlimit_nofile", sc_log_int(limit), "reserve",
               sc_log_int(HTTP_FD_RESERVE), NULL);
    }
}

/* Frees hs and everything it holds (connections included). */
static void
http_free(struct sc_http *hs)
{
    struct sc_list *n;

    if (!hs)
        return;
    if (hs->lst)
        evconnlistener_free(hs->lst);
    while ((n = sc_list_pop_front(&hs->conns)) != NULL)
        conn_free(SC_LIST_ENTRY(n, struct http_conn, link));
    while ((n = sc_list_pop_front(&hs->dead)) != NULL)
        conn_free(SC_LIST_ENTRY(n, struct http_conn, link));
    if (hs->resume)
        event_free(hs->resume);
    if (hs->reap)
        event_free(hs->reap);
    sc_buf_destroy(&hs->body);
    free(hs);
}

sc_status
sc_http_start(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_http *hs = NULL;
    struct evutil_addrinfo hints, *ai = NULL;
    char host[256], port[8];
    sc_status s = SC_EIO;
    int rc, fd;

    if (!d->cfg->http_listen || !*d->cfg->http_listen)
        return SC_OK;
    if (!split_listen(d->cfg->http_listen, host, sizeof(host), port, sizeof(port))) {
        snprintf(err, errlen, "http.listen: '%s' is not host:port", d->cfg->http_listen);
        return SC_EINVAL;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    rc = evutil_getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "http.listen: cannot resolve %s: %s", d->cfg->http_listen,
                 evutil_gai_strerror(rc));
        return SC_EINVAL;
    }
    hs = sc_xcalloc(1, sizeof(*hs));
    sc_list_init(&hs->conns);
    sc_list_init(&hs->dead);
    hs->d = d;
    sc_buf_init(&hs->body, HTTP_BODY_MAX);
    hs->resume = evtimer_new(d->base, on_resume, hs);
    hs->reap = event_new(d->base, -1, 0, on_reap, hs);
    if (!hs->resume || !hs->reap) {
        snprintf(err, errlen, "http.listen: libevent cannot create an event");
        goto done;
    }
    errno = 0;
    hs->lst = evconnlistener_new_bind(d->base, on_accept, hs,
                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                          LEV_OPT_REUSEABLE,
                                      HTTP_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
    if (!hs->lst) {
        snprintf(err, errlen, "http.listen: cannot listen on %s: %s", d->cfg->http_listen,
                 errno ? strerror(errno) : "address not usable");
        goto done;
    }
    evconnlistener_set_error_cb(hs->lst, on_accept_error);
    fd = dup(evconnlistener_get_fd(hs->lst)); /* the lowest free fd now */
    if (fd >= 0)
        close(fd);
    size_budget(hs, fd >= 0 ? fd : evconnlistener_get_fd(hs->lst) + 1);
    sc_log(SC_LOG_INFO, "http listening", "address", d->cfg->http_listen, "paths",
           "/healthz,/readyz,/metrics", "max_connections", sc_log_int((int64_t)hs->cap),
           "request_timeout_ms", sc_log_int(d->cfg->http_request_timeout_ms), "fd_ceiling",
           sc_log_int(hs->fd_ceiling), NULL);
    d->http = hs;
    hs = NULL;
    s = SC_OK;

done:
    http_free(hs);
    evutil_freeaddrinfo(ai);
    return s;
}

void
sc_http_stop(struct sc_daemon *d)
{
    http_free(d->http);
    d->http = NULL;
}
