/* http.c - the HTTP listener on the loop: /healthz, /readyz, /metrics and the admin API under /api/v1/, with a connection cap, a deadline per connection and file descriptors kept in reserve. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "admin.h"
#include "console.h"
#include "audit.h"
#include "daemon.h"
#include "fanout.h"
#include "http.h"
#include "httpauth.h"
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
 *
 * The admin API (/api/v1/<verb>) reads a body of at most HTTP_API_MAX_BODY
 * bytes (Content-Length only) and calls the admin dispatcher in process
 * through sc_fanout_ask(): outside cluster mode the answer is ready before
 * that call returns; in cluster mode the connection waits (at most
 * HTTP_API_WAITING_MAX of them at once, each holding a ticket) for the
 * members' merged answer, and a connection that goes away cancels its
 * ticket, so that no answer is written to a freed connection.
 */

#define HTTP_MAX_HEADER_BYTES 8192 /* request line and headers; more gets 431 */
#define HTTP_MAX_BODY_BYTES 1024   /* a declared body above this gets 413 (we read none) */
#define HTTP_BODY_MAX (64u << 20)  /* largest response we build */
#define HTTP_FD_RESERVE 64         /* fds below RLIMIT_NOFILE that HTTP never takes */
#define HTTP_BACKLOG 128
#define HTTP_ACCEPT_PAUSE_MS 100   /* listener rests this long after an EMFILE-like error */
#define HTTP_WARN_EVERY_MS 10000   /* rate limit of the refusal warnings */
#define HTTP_API_MAX_BODY 65536    /* an admin request body above this gets 413 */
#define HTTP_API_WAITING_MAX 32    /* API requests waiting for a cluster's answer; more get 503 */
#define HTTP_API_GRACE_MS 1000     /* after a timed-out API answer, time left to write it */
#define HTTP_API_PREFIX "/api/v1/"

/* The embedded OpenAPI document (openapi.json, generated at build time by CMake). */
extern const char sc_openapi_json[];
extern const size_t sc_openapi_json_len;

struct http_conn {
    struct sc_http *hs;
    struct bufferevent *bev;   /* owns the socket (BEV_OPT_CLOSE_ON_FREE); NULL once closed */
    struct event *deadline;    /* fires request_timeout_ms after accept; never re-armed */
    size_t scanned;            /* input bytes already searched for the end of the headers */
    bool answering;            /* the answer is queued; close when it is written */
    bool linger;               /* the client may still be sending: drain before closing */
    bool draining;             /* answer written, write side shut: discarding input until EOF */
    bool local;                /* the peer is on loopback (127.0.0.0/8, ::1) */
    bool head;                 /* the request is a HEAD: answer without a body */
    bool late;                 /* the deadline fired once already (API timeout answered) */
    size_t body_len;           /* an API request's body still to come (Content-Length), 0: none */
    char verb[24];             /* the API verb whose body is being read */
    char principal[SC_AUDIT_PRINCIPAL_LEN]; /* who the request is, for the audit (audit.h) */
    bool viewer;               /* the request came with the viewer's token */
    uint64_t ticket;           /* sc_fanout_ask() ticket while a cluster answer is awaited, 0: none */
    const char *role;          /* the API caller's role, sent as X-DLQ-Role; NULL: none */
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
    size_t api_waiting;        /* connections holding a ticket */
    size_t cap;                /* http.max_connections, lowered to fit under the fd limit */
    int fd_ceiling;            /* an accepted fd at or above this is closed at once */
    struct sc_buf body;        /* reused for every response */
    struct sc_buf req;         /* reused for every API request body */
    struct sc_http_stats st;
    int64_t warned_mono;       /* last refusal warning */
    uint64_t warned_refused;   /* refusals already reported */
};

/* ---- connection life ------------------------------------------------------------------------ */

/* Frees c's socket and timer (the socket closes now) and c itself. */
static void
conn_free(struct http_conn *c)
{
    if (c->ticket) /* freed at stop while a cluster answer was awaited */
        sc_fanout_cancel(c->hs->d, c->ticket);
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
    if (c->ticket) {
        sc_fanout_cancel(hs->d, c->ticket);
        c->ticket = 0;
        hs->api_waiting--;
    }
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
                        "Cache-Control: no-store\r\nConnection: close\r\n%s%s%s%s\r\n",
                        code, reason, ctype, b->len, extra_header ? extra_header : "",
                        c->role ? "X-DLQ-Role: " : "", c->role ? c->role : "", c->role ? "\r\n" : "");
    if (!head && b->data && b->len)
        evbuffer_add(out, b->data, b->len);
    c->answering = true;
    /* c->linger may be set already: a request whose declared body is left unread */
    c->linger = c->linger || code == 400 || code == 411 || code == 413 || code == 431 ||
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

/*
 * A web console asset (console.h). Without credentials configured the
 * console, like the API, is for loopback clients only (403); with them the
 * page loads for anyone and asks for a token before it reads anything.
 */
static void
serve_console(struct http_conn *c, bool head, const struct sc_console_asset *a)
{
    const struct config *cfg = c->hs->d->cfg;
    bool auth = (cfg->http_auth_operator_token && *cfg->http_auth_operator_token) ||
                (cfg->http_auth_viewer_token && *cfg->http_auth_viewer_token);
    char hdrs[512]; /* sc_console_headers and the ETag */

    if (!auth && !c->local) {
        c->hs->st.api_forbidden++;
        answer_text(c, head, 403, "Forbidden",
                    "the console answers loopback clients only (no credentials are configured)", NULL);
        return;
    }
    snprintf(hdrs, sizeof(hdrs), "%sETag: %s\r\n", sc_console_headers, a->etag);
    sc_buf_append(&c->hs->body, a->data, a->len);
    answer(c, head, 200, "OK", a->ctype, hdrs);
}

/* Routes a GET or HEAD of path (len bytes, query removed). */
static void
serve(struct http_conn *c, bool head, const char *path, size_t len)
{
    struct sc_http *hs = c->hs;
    struct sc_buf *b = &hs->body;
    const struct sc_console_asset *a;

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
    } else if ((a = sc_console_find(path, len)) != NULL) {
        serve_console(c, head, a);
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

/* ---- the admin API ------------------------------------------------------------------------- */

/* The reason phrase of the statuses this file answers. */
static const char *
reason_of(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return code >= 500 ? "Server Error" : "Error";
    }
}

/* An API error answer: {"error":{"code":N,"message":"..."}} with HTTP status N. */
static void
api_error(struct http_conn *c, int code, const char *message, const char *extra_header)
{
    struct sc_buf *b = &c->hs->body;

    sc_buf_reset(b);
    sc_buf_appendf(b, "{\"error\":{\"code\":%d,\"message\":", code);
    sc_json_quote(b, message, strlen(message));
    sc_buf_append(b, "}}\n", 3);
    answer(c, c->head, code, reason_of(code), "application/json", extra_header);
}

/* The admin verb named by len bytes at p, as admin.c spells it (static), or NULL. */
static const char *
verb_of(const char *p, size_t len)
{
    const char *v;

    for (size_t i = 0; (v = sc_admin_verb_name(i)) != NULL; i++)
        if (strlen(v) == len && memcmp(v, p, len) == 0)
            return v;
    return NULL;
}

/*
 * The admin dispatcher's answer (sc_fanout_answer_fn): code is 200 or the
 * error's code, len bytes at body the JSON reply. Runs inside
 * sc_fanout_ask() or later on the loop (cluster mode); never after c was
 * closed (conn_close() cancels the ticket).
 */
static void
on_api_answer(void *ctx, int code, const char *body, size_t len)
{
    struct http_conn *c = ctx;
    struct sc_buf *b = &c->hs->body;

    if (c->ticket) {
        c->ticket = 0;
        c->hs->api_waiting--;
    }
    if (!c->bev || c->answering || c->draining)
        return;
    sc_buf_reset(b);
    sc_buf_append(b, body, len);
    sc_buf_appendc(b, '\n');
    answer(c, c->head, code, reason_of(code), "application/json", NULL);
}

/* Runs verb with len bytes of data (empty, or the JSON request) and answers when the reply comes. */
static void
api_call(struct http_conn *c, const char *verb, const char *data, size_t len)
{
    struct sc_http *hs = c->hs;
    uint64_t t;

    if (len > HTTP_API_MAX_BODY) {
        api_error(c, 413, "request: larger than the admin API takes", NULL);
        return;
    }
    if (hs->api_waiting >= HTTP_API_WAITING_MAX) {
        hs->st.api_busy++;
        api_error(c, 503, "too many admin requests waiting for the cluster; try again", NULL);
        return;
    }
    if (c->viewer && strcmp(verb, "get") == 0) {
        /* The raw bytes (payload_b64: no masking, README "Secrets") are the operator's. */
        json_t *req = len ? json_loadb(data, len, 0, NULL) : NULL;
        bool raw = json_is_true(json_object_get(req, "payload"));
        json_decref(req);
        if (raw) {
            hs->st.api_forbidden++;
            api_error(c, 403, "payload: the raw bytes (payload_b64) need the operator role", NULL);
            return;
        }
    }
    hs->st.api_requests++;
    t = sc_fanout_ask(hs->d, verb, data ? data : "", (int)len, c->principal, on_api_answer, c);
    if (t && !c->answering) {
        c->ticket = t;
        hs->api_waiting++;
        bufferevent_disable(c->bev, EV_READ); /* nothing more to read while the cluster answers */
    }
}

/* Value of one hex digit, -1 when x is none. */
static int
hexval(char x)
{
    if (x >= '0' && x <= '9')
        return x - '0';
    if (x >= 'a' && x <= 'f')
        return x - 'a' + 10;
    if (x >= 'A' && x <= 'F')
        return x - 'A' + 10;
    return -1;
}

/* Decodes len bytes of a query component (%XX, '+' as space) into out (NUL-terminated); false when malformed or holding a NUL. */
static bool
query_decode(const char *p, size_t len, struct sc_buf *out)
{
    sc_buf_reset(out);
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (len - i < 3 || hexval(p[i + 1]) < 0 || hexval(p[i + 2]) < 0)
                return false;
            ch = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
            i += 2;
        }
        if (ch == '\0' || sc_buf_appendc(out, ch) != SC_OK)
            return false;
    }
    return sc_buf_appendc(out, '\0') == SC_OK;
}

/*
 * Turns a GET's query (len bytes after '?') into the JSON request of its
 * verb in hs->req: each key=value becomes a string member, except limit
 * and older_than_s, which become numbers when they read as one (else
 * strings, which the verb refuses). Returns NULL on success, or the reason
 * for a 400.
 */
static const char *
query_to_json(struct sc_http *hs, const char *q, size_t len)
{
    json_t *o = json_object();
    struct sc_buf key, val;
    const char *p = q, *end = q + len, *why = NULL;
    char *text;

    sc_buf_init(&key, 4096);
    sc_buf_init(&val, 8192);
    while (p < end && !why) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *eq;
        size_t n;
        json_t *v;
        if (!amp)
            amp = end;
        n = (size_t)(amp - p);
        eq = memchr(p, '=', n);
        if (n == 0) {
            p = amp + 1;
            continue;
        }
        if (!eq || !query_decode(p, (size_t)(eq - p), &key) ||
            !query_decode(eq + 1, (size_t)(amp - eq - 1), &val) || key.len <= 1) {
            why = "query: each parameter must be key=value (percent-encoded text)";
            break;
        }
        if (json_object_get(o, key.data)) {
            why = "query: a parameter is given twice";
            break;
        }
        v = NULL;
        if (!strcmp(key.data, "limit") || !strcmp(key.data, "older_than_s")) {
            char *e;
            double x;
            errno = 0;
            x = strtod(val.data, &e);
            if (val.len > 1 && !*e && !errno && x == x) {
                if (!strcmp(key.data, "limit") && x >= -1e15 && x <= 1e15 && x == (double)(long long)x)
                    v = json_integer((json_int_t)x);
                else
                    v = json_real(x);
            }
        }
        if (!v)
            v = json_stringn(val.data, val.len - 1);
        if (!v) {
            why = "query: a value is not UTF-8 text";
            break;
        }
        json_object_set_new(o, key.data, v);
        p = amp + 1;
    }
    if (!why) {
        text = json_object_size(o) ? json_dumps(o, JSON_COMPACT) : NULL;
        sc_buf_reset(&hs->req);
        if (text)
            sc_buf_append(&hs->req, text, strlen(text));
        free(text);
    }
    sc_buf_destroy(&key);
    sc_buf_destroy(&val);
    json_decref(o);
    return why;
}

/* Is the peer at sa on loopback (127.0.0.0/8, ::1, or ::ffff:127.x.y.z)? */
static bool
peer_is_loopback(const struct sockaddr *sa)
{
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const unsigned char *a = in6->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return memcmp(a, mapped, 12) == 0 && a[12] == 127;
    }
    return false;
}

/* Who a request is, for the admin API (http.auth.*). */
enum api_role { ROLE_NONE, ROLE_VIEWER, ROLE_OPERATOR };

/* Is len bytes at p the token t (set)? Compares every byte whatever the first difference. */
static bool
token_is(const char *p, size_t len, const char *t)
{
    size_t tl = t ? strlen(t) : 0;
    unsigned char diff = 0;

    if (tl == 0 || len != tl)
        return false;
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(p[i] ^ t[i]);
    return diff == 0;
}

/*
 * The role of an "Authorization" header value (len bytes at v, NULL: none):
 * Bearer <token> (http.auth.*_token) or Basic <base64 user:password>
 * (http.auth.users, httpauth.c); writes who it is into principal (psize
 * bytes): "token:operator", "token:viewer" or "http:<user>".
 */
static enum api_role
role_of(const struct config *cfg, const char *v, size_t len, char *principal, size_t psize)
{
    char user[72];

    if (v && len > 6 && strncasecmp(v, "Basic ", 6) == 0) {
        sc_httpauth_role r = sc_httpauth_basic(cfg, v + 6, len - 6, user, sizeof(user));
        if (r == SC_HTTPAUTH_NONE)
            return ROLE_NONE;
        snprintf(principal, psize, "http:%s", user);
        return r == SC_HTTPAUTH_OPERATOR ? ROLE_OPERATOR : ROLE_VIEWER;
    }
    if (!v || len <= 7 || strncasecmp(v, "Bearer ", 7) != 0)
        return ROLE_NONE;
    v += 7;
    len -= 7;
    if (token_is(v, len, cfg->http_auth_operator_token)) {
        snprintf(principal, psize, "token:operator");
        return ROLE_OPERATOR;
    }
    if (token_is(v, len, cfg->http_auth_viewer_token)) {
        snprintf(principal, psize, "token:viewer");
        return ROLE_VIEWER;
    }
    return ROLE_NONE;
}

/* The request methods this file tells apart. */
enum http_method { M_OTHER, M_GET, M_HEAD, M_POST };

/* Headers the admin API reads; each value borrowed from the request head (NULL: absent). */
struct api_headers {
    const char *authz, *origin, *host;
    size_t alen, olen, hlen;
    bool expect_continue; /* Expect: 100-continue */
    bool authz_twice;     /* more than one Authorization header: whose credentials would count? */
};

/*
 * Is the Host header (len bytes at h: name[:port]) a loopback name:
 * localhost, an address in 127.0.0.0/8, or [::1]? A page that reaches the
 * listener through a rebound DNS name sends its own name here.
 */
static bool
host_is_loopback(const char *h, size_t len)
{
    char name[64];
    const char *end = h + len, *colon;
    struct in_addr a4;
    size_t n;

    if (len > 0 && h[0] == '[') {
        const char *rb = memchr(h, ']', len);
        return rb && rb - h == 4 && memcmp(h + 1, "::1", 3) == 0 &&
               (rb + 1 == end || rb[1] == ':');
    }
    colon = memchr(h, ':', len);
    n = colon ? (size_t)(colon - h) : len;
    if (n == 0 || n >= sizeof(name))
        return false;
    memcpy(name, h, n);
    name[n] = '\0';
    if (strcasecmp(name, "localhost") == 0)
        return true;
    return inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/*
 * api_route() answers a request under /api/ (path of plen bytes, query of
 * qlen bytes or NULL; clen the declared body: -1 invalid, -2 chunked;
 * hd the headers it reads). Access:
 * with no http.auth token or user set, loopback peers only (403, principal
 * "local"); with one set, any peer with a token or a user's password (401
 * without), and the viewer role reads only (403 for the other verbs);
 * never another origin's page (403).
 * Returns true when the request's body must be read first (c->body_len set).
 */
static bool
api_route(struct http_conn *c, enum http_method m, const char *path, size_t plen, const char *q,
          size_t qlen, long long clen, const struct api_headers *hd)
{
    struct sc_http *hs = c->hs;
    const struct config *cfg = hs->d->cfg;
    const size_t pre = sizeof(HTTP_API_PREFIX) - 1;
    bool tokens = (cfg->http_auth_operator_token && *cfg->http_auth_operator_token) ||
                  (cfg->http_auth_viewer_token && *cfg->http_auth_viewer_token);
    bool auth = tokens || cfg->http_auth_users_count > 0;
    enum api_role role;
    const char *authz = hd->authz;
    const char *verb;
    bool reads;

    c->linger = clen != 0; /* refused with its body unread: drain it after the answer */
    snprintf(c->principal, sizeof(c->principal), "local");
    if (hd->authz_twice) {
        api_error(c, 400, "Authorization: given more than once (send one)", NULL);
        return false;
    }
    if (!auth && !c->local) {
        /* No credentials configured: the API is for loopback only (README, "HTTP API"). */
        hs->st.api_forbidden++;
        api_error(c, 403, "the admin API answers loopback clients only (no credentials are configured)",
                  NULL);
        return false;
    }
    /*
     * A web page must not drive the API with the browser as its proxy:
     * without tokens, a page's form POST (no preflight) from the user's own
     * machine would come from loopback. So a request from another origin
     * (Origin is not http://<Host>) is refused, and, without tokens, one
     * whose Host is not a loopback name (a DNS name rebound to 127.0.0.1).
     */
    if (hd->origin && (!hd->host || hd->olen != 7 + hd->hlen ||
                       strncasecmp(hd->origin, "http://", 7) != 0 ||
                       strncasecmp(hd->origin + 7, hd->host, hd->hlen) != 0)) {
        hs->st.api_forbidden++;
        api_error(c, 403, "cross-origin requests are refused (Origin is not this listener)", NULL);
        return false;
    }
    if (!auth && hd->host && !host_is_loopback(hd->host, hd->hlen)) {
        hs->st.api_forbidden++;
        api_error(c, 403, "Host is not a loopback name (localhost, 127.0.0.0/8, [::1]) and no token is "
                          "configured", NULL);
        return false;
    }
    /* Credentials are checked after the cheap refusals: a basic-auth password costs its hash's time. */
    role = auth ? role_of(cfg, authz, hd->alen, c->principal, sizeof(c->principal)) : ROLE_OPERATOR;
    if (role == ROLE_NONE) {
        hs->st.api_unauthorized++;
        api_error(c, 401,
                  authz ? "the credentials are not http.auth's (a token, or a user and its password)"
                        : "send Authorization: Bearer <token> or Basic <user:password>",
                  cfg->http_auth_users_count == 0 ? "WWW-Authenticate: Bearer realm=\"dlq-sidecar\"\r\n"
                  : tokens ? "WWW-Authenticate: Basic realm=\"dlq-sidecar\"\r\n"
                             "WWW-Authenticate: Bearer realm=\"dlq-sidecar\"\r\n"
                           : "WWW-Authenticate: Basic realm=\"dlq-sidecar\"\r\n");
        return false;
    }
    c->role = role == ROLE_OPERATOR ? "operator" : "viewer";
    if (plen == sizeof(HTTP_API_PREFIX "openapi.json") - 1 &&
        memcmp(path, HTTP_API_PREFIX "openapi.json", plen) == 0) {
        if (m != M_GET && m != M_HEAD) {
            api_error(c, 405, "method not allowed (GET, HEAD)", "Allow: GET, HEAD\r\n");
            return false;
        }
        sc_buf_reset(&hs->body);
        sc_buf_append(&hs->body, sc_openapi_json, sc_openapi_json_len);
        answer(c, c->head, 200, "OK", "application/json", NULL);
        return false;
    }
    verb = plen > pre && memcmp(path, HTTP_API_PREFIX, pre) == 0 ? verb_of(path + pre, plen - pre)
                                                                : NULL;
    if (!verb) {
        api_error(c, 404, "no such path (see /api/v1/openapi.json)", NULL);
        return false;
    }
    c->viewer = role == ROLE_VIEWER;
    reads = !sc_admin_verb_mutates(verb);
    if (!reads && role == ROLE_VIEWER) {
        hs->st.api_forbidden++;
        api_error(c, 403, "the viewer role may only read (health, stats, list, get, classify, groups, audit)", NULL);
        return false;
    }
    if (reads ? (m == M_OTHER) : (m != M_POST)) {
        api_error(c, 405, reads ? "method not allowed (GET, HEAD, POST)" : "method not allowed (POST)",
                  reads ? "Allow: GET, HEAD, POST\r\n" : "Allow: POST\r\n");
        return false;
    }
    if (clen == -2) {
        api_error(c, 411, "request: send the body with a Content-Length", NULL);
        return false;
    }
    if (clen < 0) {
        api_error(c, 400, "request: Content-Length is not a number", NULL);
        return false;
    }
    if (clen > HTTP_API_MAX_BODY || (m != M_POST && clen > HTTP_MAX_BODY_BYTES)) {
        api_error(c, 413, "request: body larger than the admin API takes (65536 bytes)", NULL);
        return false;
    }
    if (m != M_POST) {
        const char *why = query_to_json(hs, q ? q : "", q ? qlen : 0);
        if (why) {
            api_error(c, 400, why, NULL);
            return false;
        }
        api_call(c, verb, hs->req.data, hs->req.len);
        return false;
    }
    if (clen == 0) {
        api_call(c, verb, "", 0);
        return false;
    }
    c->linger = false; /* the body is read */
    snprintf(c->verb, sizeof(c->verb), "%s", verb);
    c->body_len = (size_t)clen;
    if (hd->expect_continue)
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return true;
}

/*
 * Parses the complete head (hl bytes at h: request line, headers, blank line)
 * and queues the answer, or (an admin API POST with a body) sets c->body_len
 * and returns true: the body is read next. Outside /api/ the body, if any,
 * is never read: a declared body over HTTP_MAX_BODY_BYTES (or one of
 * unknown length) is refused with 413.
 */
static bool
handle_request(struct http_conn *c, const char *h, size_t hl)
{
    const char *end = h + hl, *p, *next, *sp1, *sp2, *target, *v, *q;
    size_t n, tlen, vlen, qlen = 0;
    enum http_method m = M_OTHER;
    struct api_headers hd = {0};
    long long clen = 0;

    n = line_at(h, end, &next);
    sp1 = memchr(h, ' ', n);
    sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(h + n - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp2 == sp1 + 1 || (size_t)(h + n - sp2 - 1) < 8 ||
        memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        answer_text(c, false, 400, "Bad Request", "bad request line", NULL);
        return false;
    }
    if (sp1 - h == 3 && memcmp(h, "GET", 3) == 0)
        m = M_GET;
    else if (sp1 - h == 4 && memcmp(h, "HEAD", 4) == 0)
        m = M_HEAD;
    else if (sp1 - h == 4 && memcmp(h, "POST", 4) == 0)
        m = M_POST;
    c->head = m == M_HEAD;
    for (p = next; p < end; p = next) {
        n = line_at(p, end, &next);
        if (n == 0)
            break;
        if (header_is(p, n, "Content-Length", &v, &vlen)) {
            char num[24];
            char *e;
            if (clen == -2) {
                continue; /* chunked wins */
            } else if (vlen == 0 || vlen >= sizeof(num)) {
                clen = -1;
            } else {
                long long x;
                memcpy(num, v, vlen);
                num[vlen] = '\0';
                errno = 0;
                x = strtoll(num, &e, 10);
                clen = (errno || *e || x < 0 || num[0] == '-' || num[0] == '+' || num[0] == ' ' ||
                        clen == -1 || (clen > 0 && x != clen))
                           ? -1
                           : x;
            }
        } else if (header_is(p, n, "Transfer-Encoding", &v, &vlen)) {
            clen = -2; /* a body of unknown length */
        } else if (header_is(p, n, "Authorization", &v, &vlen)) {
            hd.authz_twice = hd.authz_twice || hd.authz != NULL;
            hd.authz = v;
            hd.alen = vlen;
        } else if (header_is(p, n, "Origin", &v, &vlen)) {
            hd.origin = v;
            hd.olen = vlen;
        } else if (header_is(p, n, "Host", &v, &vlen)) {
            hd.host = v;
            hd.hlen = vlen;
        } else if (header_is(p, n, "Expect", &v, &vlen)) {
            hd.expect_continue = vlen == 12 && strncasecmp(v, "100-continue", 12) == 0;
        }
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
    if (q) {
        qlen = tlen - (size_t)(q - target) - 1;
        tlen = (size_t)(q - target);
        q++;
    }
    if (tlen == 0) {
        target = "/";
        tlen = 1;
    }
    if (tlen >= 5 && memcmp(target, "/api/", 5) == 0)
        return api_route(c, m, target, tlen, q, qlen, clen, &hd);
    if (m != M_GET && m != M_HEAD) {
        answer_text(c, false, 405, "Method Not Allowed", "method not allowed",
                    "Allow: GET, HEAD\r\n");
        return false;
    }
    if (clen < 0 || clen > HTTP_MAX_BODY_BYTES) {
        answer_text(c, c->head, 413, "Content Too Large", "request body not accepted", NULL);
        return false;
    }
    serve(c, c->head, target, tlen);
    return false;
}

/*
 * An API request's body is being read: once all c->body_len bytes are in,
 * take them and run the verb. Bytes past the body are left unread.
 */
static void
take_body(struct http_conn *c, struct evbuffer *in)
{
    struct sc_buf *r = &c->hs->req;

    if (evbuffer_get_length(in) < c->body_len)
        return;
    char chunk[4096];
    size_t left = c->body_len;

    sc_buf_reset(r);
    while (left > 0) {
        int n = evbuffer_remove(in, chunk, left < sizeof(chunk) ? left : sizeof(chunk));
        if (n <= 0)
            break;
        sc_buf_append(r, chunk, (size_t)n); /* fits: body_len <= HTTP_API_MAX_BODY < max */
        left -= (size_t)n;
    }
    c->body_len = 0;
    api_call(c, c->verb, r->data, r->len);
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
    if (c->answering || c->ticket)
        return;
    if (c->body_len) {
        take_body(c, in);
        return;
    }
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
    if (handle_request(c, head, hl)) {
        /* read the body: up to its length, never more (the high watermark) */
        bufferevent_setwatermark(bev, EV_READ, 0, c->body_len);
        take_body(c, in);
    }
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
    if (c->ticket && !c->late) {
        /* still waiting for the cluster's answer: say so, and leave a moment to write it */
        struct timeval tv = {HTTP_API_GRACE_MS / 1000, (HTTP_API_GRACE_MS % 1000) * 1000};
        sc_fanout_cancel(c->hs->d, c->ticket);
        c->ticket = 0;
        c->hs->api_waiting--;
        c->late = true;
        c->hs->st.timed_out++;
        api_error(c, 503, "timed out waiting for the admin answer", NULL);
        evtimer_add(c->deadline, &tv);
        return;
    }
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
        if (!c->answering && !c->draining && !c->ticket) { /* a ticket: its request is complete */
            oldest = c;
            break;
        }
    }
    /*
     * Else the oldest draining one: its answer is written already (it only
     * lingers so that a refused body does not turn into a reset). Without
     * this, clients that each send a refused request's head and one byte of
     * its body held every slot, /healthz included, until their deadline.
     */
    SC_LIST_FOREACH(n, &hs->conns) {
        if (oldest)
            break;
        c = SC_LIST_ENTRY(n, struct http_conn, link);
        if (c->draining)
            oldest = c;
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
    c->local = peer_is_loopback(sa);
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
    sc_buf_destroy(&hs->req);
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
    sc_buf_init(&hs->req, HTTP_API_MAX_BODY + 1);
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
           "/,/healthz,/readyz,/metrics,/api/v1/", "max_connections", sc_log_int((int64_t)hs->cap),
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
