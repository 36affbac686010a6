/* test_persist.c - unit tests of persist/: batches, the task document's fields, persist_new(), the HTTP client, and the OpenSearch backend's protocol logic against a scripted local HTTP server on the same loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "persist-internal.h"

/* ---- batches ---------------------------------------------------------------------------------- */

static sc_status
test_action(struct sc_buf *b, const char *id, size_t id_len, uint64_t version, bool del)
{
    return sc_buf_appendf(b, "%s %.*s %llu\n", del ? "D" : "I", (int)id_len, id,
                          (unsigned long long)version);
}

static void
test_batch_limits(void **state)
{
    struct persist_batch b;
    struct sc_buf *buf;
    char doc[200];

    (void)state;
    memset(doc, 'x', sizeof doc);
    /* By count. */
    persist_batch_init(&b, 3, 1 << 20, test_action);
    for (int i = 0; i < 3; i++) {
        assert_non_null(buf = persist_batch_put_begin(&b, "a", 1, (uint64_t)i));
        sc_buf_append(buf, "{}", 2);
        assert_int_equal(persist_batch_put_end(&b), SC_OK);
    }
    assert_true(persist_batch_full(&b));
    assert_null(persist_batch_put_begin(&b, "b", 1, 9));
    assert_int_equal(persist_batch_delete(&b, "b", 1, 9), SC_EFULL);
    assert_int_equal(persist_batch_count(&b), 3);
    assert_string_equal(b.body.data, "I a 0\n{}\nI a 1\n{}\nI a 2\n{}\n");
    persist_batch_destroy(&b);

    /* By bytes: the item that would pass the limit is taken back; alone it may pass it. */
    persist_batch_init(&b, 100, 300, test_action);
    assert_non_null(buf = persist_batch_put_begin(&b, "one", 3, 1));
    sc_buf_append(buf, doc, 200);
    assert_int_equal(persist_batch_put_end(&b), SC_OK);
    assert_non_null(buf = persist_batch_put_begin(&b, "two", 3, 2));
    sc_buf_append(buf, doc, 200);
    assert_int_equal(persist_batch_put_end(&b), SC_EFULL);
    assert_int_equal(persist_batch_count(&b), 1);
    /* An item taken back makes the batch full: the rest must follow at once (issue 10, item 8). */
    assert_true(persist_batch_full(&b));
    assert_null(persist_batch_put_begin(&b, "small", 5, 3));
    b.stopped = false; /* (to go on testing the byte limit below) */
    assert_int_equal(persist_batch_delete(&b, "gone", 4, 7), SC_OK);
    assert_int_equal(persist_batch_count(&b), 2);
    assert_int_equal(b.items[1].del, true);
    assert_memory_equal(persist_batch_item_id(&b, 1), "gone", 4);
    persist_batch_reset(&b);
    assert_non_null(buf = persist_batch_put_begin(&b, "big", 3, 3));
    sc_buf_append(buf, doc, 200);
    sc_buf_append(buf, doc, 200);
    assert_int_equal(persist_batch_put_end(&b), SC_OK); /* alone: allowed past max_bytes */
    persist_batch_reset(&b);
    assert_false(persist_batch_full(&b));
    assert_non_null(buf = persist_batch_put_begin(&b, "x", 1, 3));
    persist_batch_put_abort(&b);
    assert_false(persist_batch_full(&b)); /* alone: not full, the next may still fit */
    assert_int_equal(persist_batch_count(&b), 0);
    assert_int_equal(b.body.len, 0);
    assert_int_equal(persist_batch_put_end(&b), SC_EINVAL);
    persist_batch_destroy(&b);
}

/* ---- SHA-256 and the _id of an id ------------------------------------------------------------- */

static void
hex32(const unsigned char md[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void
test_sha256(void **state)
{
    unsigned char md[32];
    char hex[65], *m = malloc(1000000);

    (void)state;
    /* FIPS 180-4 examples and the NIST one-million-'a' vector; lengths around the padding edge. */
    persist_sha256("", 0, md);
    hex32(md, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    persist_sha256("abc", 3, md);
    hex32(md, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    persist_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, md);
    hex32(md, hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    memset(m, 'a', 1000000);
    persist_sha256(m, 1000000, md);
    hex32(md, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    persist_sha256(m, 55, md); /* the last length whose padding fits one block */
    hex32(md, hex);
    assert_string_equal(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    persist_sha256(m, 64, md);
    hex32(md, hex);
    assert_string_equal(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
    free(m);
}

/* A KV key as nats.c accepts it: [-/_=.A-Za-z0-9], no leading, trailing or double dot. */
static bool
kv_key_valid(const char *k, size_t len)
{
    if (len == 0 || k[0] == '.' || k[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = k[i];
        if (c == '.' && i + 1 < len && k[i + 1] == '.')
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '/' || c == '_' || c == '=' || c == '.'))
            return false;
    }
    return true;
}

static void
test_kv_key(void **state)
{
    struct sc_buf b, seen;
    char id[400];
    uint64_t rng = 42;

    (void)state;
    sc_buf_init(&b, 1 << 20);
    /* FNV-1a 64 test vectors (the partition of an id). */
    assert_true(sc_fnv1a64("", 0) == 0xcbf29ce484222325ULL);
    assert_true(sc_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(sc_fnv1a64("foobar", 6) == 0x85944171f73967e8ULL);
    /* Plain ids are kept, after the partition. */
    assert_int_equal(persist_kv_key(&b, "order-42", 8, 0), SC_OK);
    assert_string_equal(b.data, "order-42");
    sc_buf_reset(&b);
    persist_kv_key(&b, "orders.v2.7", 11, 32);
    snprintf(id, sizeof id, "%u.orders.v2.7", (unsigned)(sc_fnv1a64("orders.v2.7", 11) % 32));
    assert_string_equal(b.data, id);
    for (unsigned k = 0; k < 64; k++) { /* the partition in decimal, as "%u." writes it (up to 4096) */
        char one[16], want[64];
        int n = snprintf(one, sizeof one, "t%u", k * 7919);
        sc_buf_reset(&b);
        assert_int_equal(persist_kv_key(&b, one, (size_t)n, 4096), SC_OK);
        snprintf(want, sizeof want, "%u.%s", (unsigned)(sc_fnv1a64(one, (size_t)n) % 4096), one);
        assert_string_equal(b.data, want);
    }
    /* What a key cannot hold: base64url after '=' (no padding), or a hash after '=='. */
    sc_buf_reset(&b);
    persist_kv_key(&b, "\xc3\xbcn\xc3\xaf/1", 7, 0);
    assert_string_equal(b.data, "=w7xuw68vMQ");
    sc_buf_reset(&b);
    persist_kv_key(&b, "a..b", 4, 0);
    assert_string_equal(b.data, "=YS4uYg");
    sc_buf_reset(&b);
    persist_kv_key(&b, ".a", 2, 0);
    assert_int_equal(b.data[0], '=');
    memset(id, 'x', sizeof id);
    sc_buf_reset(&b);
    persist_kv_key(&b, id, PERSIST_KV_PLAIN_MAX, 0);
    assert_int_equal(b.len, PERSIST_KV_PLAIN_MAX); /* the longest plain id */
    id[0] = '=';
    sc_buf_reset(&b);
    persist_kv_key(&b, id, PERSIST_KV_B64_MAX, 0);
    assert_int_equal(b.len, 1 + (PERSIST_KV_B64_MAX * 4 + 2) / 3);
    sc_buf_reset(&b);
    persist_kv_key(&b, id, PERSIST_KV_B64_MAX + 1, 0);
    assert_int_equal(b.len, 2 + 64);
    assert_memory_equal(b.data, "==", 2);
    /* Random ids: every key valid, distinct ids distinct keys. */
    sc_buf_init(&seen, 64u << 20);
    for (int i = 0; i < 3000; i++) {
        size_t len = 1 + (size_t)(i % 250);
        for (size_t k = 0; k < len; k++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            id[k] = i % 3 == 0 ? "ab.-_Z9"[(rng >> 33) % 7] : (char)((rng >> 33) & 0xff);
        }
        snprintf(id + len, 12, "#%d", i); /* distinct */
        len += strlen(id + len);
        sc_buf_reset(&b);
        assert_int_equal(persist_kv_key(&b, id, len, 32), SC_OK);
        if (!kv_key_valid(b.data, b.len))
            fail_msg("id %d: invalid key %s", i, b.data);
        sc_buf_append(&seen, b.data, b.len + 1);
    }
    /* No two keys equal: sort-free check by scanning (3000^2/2 comparisons, fine). */
    {
        const char *keys[3000];
        size_t n = 0, off = 0;
        while (off < seen.len && n < 3000) {
            keys[n++] = seen.data + off;
            off += strlen(seen.data + off) + 1;
        }
        assert_int_equal(n, 3000);
        for (size_t x = 0; x < n; x++)
            for (size_t y = x + 1; y < n; y++)
                if (strcmp(keys[x], keys[y]) == 0)
                    fail_msg("ids %zu and %zu share the key %s", x, y, keys[x]);
    }
    sc_buf_destroy(&seen);
    sc_buf_destroy(&b);
}

static void
test_doc_id(void **state)
{
    struct sc_buf b;
    char id[1100], id2[1100];

    (void)state;
    sc_buf_init(&b, 1 << 20);
    /* Taken as it is. */
    assert_int_equal(persist_opensearch_doc_id(&b, "order-42", 8), SC_OK);
    assert_string_equal(b.data, "order-42");
    memset(id, 'x', sizeof id);
    sc_buf_reset(&b);
    persist_opensearch_doc_id(&b, id, 512); /* 512 bytes: the limit, still as it is */
    assert_int_equal(b.len, 512);
    /* Mapped: past 512 bytes, empty, not UTF-8, or looking like a mapped id. */
    sc_buf_reset(&b);
    persist_opensearch_doc_id(&b, id, 513);
    assert_int_equal(b.len, 66);
    assert_memory_equal(b.data, "h:", 2);
    memcpy(id2, id, sizeof id2);
    id2[600] = 'y'; /* equal up to byte 600: a different _id */
    {
        struct sc_buf c;
        sc_buf_init(&c, 1 << 20);
        persist_opensearch_doc_id(&c, id2, 700);
        sc_buf_reset(&b);
        persist_opensearch_doc_id(&b, id, 700);
        assert_int_equal(c.len, 66);
        assert_true(memcmp(b.data, c.data, 66) != 0);
        sc_buf_reset(&c);
        persist_opensearch_doc_id(&c, id, 700); /* the same id: the same _id (deletes find it) */
        assert_memory_equal(b.data, c.data, 66);
        sc_buf_destroy(&c);
    }
    sc_buf_reset(&b);
    persist_opensearch_doc_id(&b, "", 0);
    assert_string_equal(b.data, "h:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sc_buf_reset(&b);
    persist_opensearch_doc_id(&b, "a\xff", 2);
    assert_int_equal(b.len, 66);
    sc_buf_reset(&b);
    persist_opensearch_doc_id(&b, "abc", 3);
    assert_string_equal(b.data, "abc");
    sc_buf_reset(&b);
    persist_opensearch_doc_id(&b, "h:abc", 5); /* could be taken for a mapped id: mapped */
    assert_int_equal(b.len, 66);
    assert_true(strcmp(b.data, "h:abc") != 0);
    sc_buf_destroy(&b);
}

/* ---- a scripted HTTP server on the test's loop ------------------------------------------------ */

struct canned {
    int status;
    const char *body;
};

struct server {
    struct event_base *base;
    struct evhttp *http;
    int port;
    char url[64];
    /* The next responses, in order; past the end: 200 "{}". */
    struct canned script[32];
    int nscript, next;
    /* What came: method, path and body of each request. */
    char seen[64][4096];
    int nseen;
    int delay_ms; /* answer after this long (0: now) */
};

struct delayed {
    struct evhttp_request *req;
    struct canned c;
    struct event *ev;
};

static void
send_canned(struct evhttp_request *req, const struct canned *c)
{
    struct evbuffer *b = evbuffer_new();

    evbuffer_add(b, c->body, strlen(c->body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, c->status, "scripted", b);
    evbuffer_free(b);
}

static void
on_delayed(evutil_socket_t fd, short what, void *arg)
{
    struct delayed *dl = arg;

    (void)fd;
    (void)what;
    send_canned(dl->req, &dl->c);
    event_free(dl->ev);
    free(dl);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *m;
    struct canned c = {200, "{}"};

    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: m = "GET"; break;
    case EVHTTP_REQ_PUT: m = "PUT"; break;
    case EVHTTP_REQ_DELETE: m = "DELETE"; break;
    default: m = "POST"; break;
    }
    if (s->nseen < 64) {
        int n = snprintf(s->seen[s->nseen], sizeof s->seen[0], "%s %s ", m, evhttp_request_get_uri(req));
        size_t room = sizeof s->seen[0] - (size_t)n - 1;
        evbuffer_copyout(in, s->seen[s->nseen] + n, len < room ? len : room);
        s->seen[s->nseen][n + (len < room ? len : room)] = '\0';
        s->nseen++;
    }
    if (s->next < s->nscript)
        c = s->script[s->next++];
    if (s->delay_ms) {
        struct delayed *dl = calloc(1, sizeof *dl);
        struct timeval tv = {s->delay_ms / 1000, (s->delay_ms % 1000) * 1000};
        dl->req = req;
        dl->c = c;
        dl->ev = evtimer_new(s->base, on_delayed, dl);
        evtimer_add(dl->ev, &tv);
        return;
    }
    send_canned(req, &c);
}

static void
server_start(struct server *s, struct event_base *base)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;

    memset(s, 0, sizeof *s);
    s->base = base;
    s->http = evhttp_new(base);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(s->http, on_request, s);
    bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    assert_non_null(bs);
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.sin_port);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
}

static void
script(struct server *s, int status, const char *body)
{
    s->script[s->nscript].status = status;
    s->script[s->nscript].body = body;
    s->nscript++;
}

/* Runs the loop until *flag becomes true or timeout_ms pass (in slices of 20 ms). */
static void
run_until(struct event_base *base, const bool *flag, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    struct timeval tv = {0, 20000};

    do {
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    } while (!*(const volatile bool *)flag && sc_now_mono_ms() < deadline);
}

/* A port nothing listens on. */
static int
closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;

    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* ---- the HTTP client -------------------------------------------------------------------------- */

struct got {
    bool done;
    long status;
    char body[4096];
    char error[512];
    int calls;
};

static void
on_got(void *ctx, long status, const char *body, size_t len, const char *error)
{
    struct got *g = ctx;

    g->calls++;
    g->done = true;
    g->status = status;
    snprintf(g->body, sizeof g->body, "%.*s", (int)len, body);
    snprintf(g->error, sizeof g->error, "%s", error ? error : "");
}

static void
test_http_client(void **state)
{
    struct event_base *base = event_base_new();
    struct server s;
    struct persist_http *h;
    struct got g = {0}, many[50];
    char url[128];
    bool all = false;

    (void)state;
    server_start(&s, base);
    h = persist_http_new(base, NULL);
    assert_non_null(h);

    script(&s, 201, "{\"created\":true}");
    snprintf(url, sizeof url, "%s/idx/_doc/1", s.url);
    assert_int_equal(persist_http_request(h, "PUT", url, "application/json", "{\"a\":1}", 7, 5000,
                                          on_got, &g), SC_OK);
    assert_int_equal(persist_http_pending(h), 1);
    run_until(base, &g.done, 5000);
    assert_true(g.done);
    assert_int_equal(g.status, 201);
    assert_string_equal(g.body, "{\"created\":true}");
    assert_string_equal(s.seen[0], "PUT /idx/_doc/1 {\"a\":1}");
    assert_int_equal(persist_http_pending(h), 0);

    /* Fifty at once, on reused handles. */
    memset(many, 0, sizeof many);
    for (int i = 0; i < 50; i++)
        assert_int_equal(persist_http_request(h, i % 2 ? "GET" : "DELETE", url, NULL, NULL, 0, 5000,
                                              on_got, &many[i]), SC_OK);
    for (int k = 0; k < 250 && !all; k++) {
        bool none = false;
        run_until(base, &none, 20);
        all = true;
        for (int i = 0; i < 50; i++)
            all = all && many[i].done;
    }
    assert_true(all);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(many[i].status, 200);
        assert_int_equal(many[i].calls, 1);
    }

    /* Refused: status 0 with a reason. */
    memset(&g, 0, sizeof g);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", closed_port());
    assert_int_equal(persist_http_request(h, "GET", url, NULL, NULL, 0, 5000, on_got, &g), SC_OK);
    run_until(base, &g.done, 5000);
    assert_int_equal(g.status, 0);
    assert_true(strlen(g.error) > 0);

    /* A timeout. */
    memset(&g, 0, sizeof g);
    s.delay_ms = 1500;
    snprintf(url, sizeof url, "%s/slow", s.url);
    assert_int_equal(persist_http_request(h, "GET", url, NULL, NULL, 0, 200, on_got, &g), SC_OK);
    run_until(base, &g.done, 5000);
    assert_int_equal(g.status, 0);
    assert_non_null(strstr(g.error, "imeout"));

    /* Freed with a request in flight: no callback. */
    memset(&g, 0, sizeof g);
    assert_int_equal(persist_http_request(h, "GET", url, NULL, NULL, 0, 5000, on_got, &g), SC_OK);
    persist_http_free(h);
    {
        bool none = false;
        run_until(base, &none, 1700); /* let the delayed answer go out to nobody */
    }
    assert_int_equal(g.calls, 0);
    evhttp_free(s.http);
    event_base_free(base);
}

/* ---- the OpenSearch backend's logic ----------------------------------------------------------- */

struct owner {
    struct persist *p;
    /* pending records: ids "r0".."r9" with versions, and their latest results */
    bool dirty[10];
    uint64_t version[10];
    persist_result last[10];
    int results;
    int loaded;
    char loaded_ids[8][16];
    persist_state state;
    int state_changes;
};

static void
o_fill(void *ctx, struct persist_batch *b)
{
    struct owner *o = ctx;
    char id[8];

    for (int i = 0; i < 10; i++) {
        struct sc_buf *buf;
        if (!o->dirty[i])
            continue;
        snprintf(id, sizeof id, "r%d", i);
        if (!(buf = persist_batch_put_begin(b, id, strlen(id), o->version[i])))
            return;
        sc_buf_appendf(buf, "{\"n\":%d}", i);
        if (persist_batch_put_end(b) != SC_OK)
            return;
        o->dirty[i] = false;
    }
}

static void
o_result(void *ctx, const struct persist_item *it, persist_result r, const char *reason)
{
    struct owner *o = ctx;
    int i = it->id[1] - '0';

    (void)reason;
    o->last[i] = r;
    o->results++;
    if (r == PERSIST_ITEM_RETRY) {
        o->dirty[i] = true;
        persist_kick(o->p, false);
    }
}

static void
o_loaded(void *ctx, const char *id, size_t id_len, uint64_t version, json_t *src)
{
    struct owner *o = ctx;

    (void)version;
    assert_true(json_is_object(src));
    if (o->loaded < 8)
        snprintf(o->loaded_ids[o->loaded], sizeof o->loaded_ids[0], "%.*s", (int)id_len, id);
    o->loaded++;
}

static void
o_state(void *ctx, persist_state s, const char *error)
{
    struct owner *o = ctx;

    (void)error;
    o->state = s;
    o->state_changes++;
}

static void
test_opensearch_protocol(void **state)
{
    struct event_base *base = event_base_new();
    struct server s;
    struct owner o;
    struct persist_owner own = {&o, o_fill, o_result, o_loaded, o_state, NULL};
    struct persist_opensearch_opts opt;
    struct persist_stats st;
    char err[256];
    bool ok;

    (void)state;
    memset(&o, 0, sizeof o);
    server_start(&s, base);
    memset(&opt, 0, sizeof opt);
    opt.urls = s.url;
    opt.index = "dlq-unit";
    opt.bulk_max_docs = 100;
    opt.bulk_max_bytes = 1 << 20;
    opt.flush_ms = 10;
    opt.properties = "{\"n\":{\"type\":\"long\"}}";
    opt.load_query = "{\"match_all\":{}}";
    opt.load_sort = "[{\"n\":\"asc\"}]";
    opt.request_timeout_ms = 5000;

    /* Bad options are refused with a message. */
    opt.index = "Bad/Name";
    assert_int_equal(persist_opensearch_new(base, &opt, &own, &o.p, err, sizeof err), SC_EINVAL);
    assert_non_null(strstr(err, "store.opensearch.index"));
    opt.index = "dlq-unit";

    assert_int_equal(persist_opensearch_new(base, &opt, &own, &o.p, err, sizeof err), SC_OK);
    /* Start-up: template, index (already there), its mapping, health, refresh, one page of two hits. */
    script(&s, 200, "{\"acknowledged\":true}");
    script(&s, 400, "{\"error\":{\"type\":\"resource_already_exists_exception\",\"reason\":\"x\"}}");
    script(&s, 200, "{\"acknowledged\":true}");
    script(&s, 200, "{\"status\":\"green\"}");
    script(&s, 200, "{}");
    script(&s, 200, "{\"hits\":{\"hits\":[{\"_id\":\"a\",\"_version\":5,\"_source\":{\"n\":1},\"sort\":[1]},"
                    "{\"_id\":\"b\",\"_version\":6,\"_source\":{\"n\":2},\"sort\":[2]}]}}");
    assert_int_equal(persist_start(o.p), SC_OK);
    ok = false;
    for (int k = 0; k < 250 && o.p->state == PERSIST_STARTING; k++)
        run_until(base, &ok, 20);
    assert_int_equal(o.p->state, PERSIST_OK);
    assert_int_equal(o.loaded, 2);
    assert_string_equal(o.loaded_ids[1], "b");
    assert_non_null(strstr(s.seen[0], "PUT /_index_template/dlq-unit "));
    assert_non_null(strstr(s.seen[0], "\"index_patterns\":[\"dlq-unit*\"]"));
    assert_non_null(strstr(s.seen[0], "\"dynamic\":\"strict\""));
    assert_non_null(strstr(s.seen[0], "\"number_of_replicas\":0"));
    assert_non_null(strstr(s.seen[2], "PUT /dlq-unit/_mapping {\"properties\":{\"n\":"));
    assert_non_null(strstr(s.seen[5], "\"sort\":[{\"n\":\"asc\"}]"));

    /* A bulk of three: 201, 429, 400 -> OK, RETRY (sent again alone), REJECTED. */
    o.dirty[1] = o.dirty[2] = o.dirty[3] = true;
    o.version[1] = 11;
    o.version[2] = 12;
    o.version[3] = 13;
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":201}},"
                    "{\"index\":{\"status\":429,\"error\":{\"type\":\"es_rejected_execution_exception\",\"reason\":\"busy\"}}},"
                    "{\"index\":{\"status\":400,\"error\":{\"type\":\"mapper_parsing_exception\",\"reason\":\"bad\"}}}]}");
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":201}}]}");
    persist_kick(o.p, true);
    for (int k = 0; k < 250 && o.results < 4; k++)
        run_until(base, &ok, 20);
    assert_int_equal(o.results, 4);
    assert_int_equal(o.last[1], PERSIST_ITEM_OK);
    assert_int_equal(o.last[2], PERSIST_ITEM_OK); /* after its retry */
    assert_int_equal(o.last[3], PERSIST_ITEM_REJECTED);
    assert_non_null(strstr(s.seen[6], "POST /dlq-unit/_bulk"));
    assert_non_null(strstr(s.seen[6], "{\"index\":{\"_id\":\"r1\",\"version\":11,\"version_type\":\"external\"}}\n{\"n\":1}\n"));
    assert_non_null(strstr(s.seen[7], "\"_id\":\"r2\""));
    assert_null(strstr(s.seen[7], "\"_id\":\"r1\""));
    assert_null(strstr(s.seen[7], "\"_id\":\"r3\""));

    /* 503 for the whole request: degraded, the item comes back, then a replay after a backoff. */
    o.dirty[4] = true;
    o.version[4] = 14;
    script(&s, 503, "{\"error\":{\"type\":\"unavailable\",\"reason\":\"down\"}}");
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":409,\"error\":{\"type\":\"version_conflict_engine_exception\",\"reason\":\"newer\"}}}]}");
    int64_t t0 = sc_now_mono_ms();
    persist_kick(o.p, true);
    for (int k = 0; k < 250 && o.p->state != PERSIST_DEGRADED; k++)
        run_until(base, &ok, 20);
    assert_int_equal(o.p->state, PERSIST_DEGRADED);
    persist_get_stats(o.p, &st);
    assert_non_null(strstr(st.last_error, "503"));
    for (int k = 0; k < 250 && o.p->state != PERSIST_OK; k++)
        run_until(base, &ok, 20);
    assert_int_equal(o.p->state, PERSIST_OK);
    assert_true(sc_now_mono_ms() - t0 >= 350); /* backoff, not a tight loop */
    assert_int_equal(o.last[4], PERSIST_ITEM_STALE);
    persist_get_stats(o.p, &st);
    assert_int_equal(st.failed_batches, 1);
    assert_int_equal(st.stale, 1);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.loaded, 2);

    /* 413 for a lone item: REJECTED (not sent again), the store stays OK. */
    o.dirty[5] = true;
    o.version[5] = 15;
    o.results = 0;
    script(&s, 413, "{\"error\":{\"type\":\"content_too_long\",\"reason\":\"too large\"}}");
    persist_kick(o.p, true);
    for (int k = 0; k < 250 && o.results < 1; k++)
        run_until(base, &ok, 20);
    assert_int_equal(o.results, 1);
    assert_int_equal(o.last[5], PERSIST_ITEM_REJECTED);
    assert_false(o.dirty[5]);
    assert_int_equal(o.p->state, PERSIST_OK);
    persist_get_stats(o.p, &st);
    assert_int_equal(st.rejected, 2);
    assert_non_null(strstr(st.last_error, "413"));

    /* 413 for two items: split, one each, then OK; the owner hears of each item once. */
    o.dirty[6] = o.dirty[7] = true;
    o.version[6] = 16;
    o.version[7] = 17;
    o.results = 0;
    script(&s, 413, "{\"error\":{\"type\":\"content_too_long\",\"reason\":\"too large\"}}");
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":201}}]}");
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":201}}]}");
    persist_kick(o.p, true);
    for (int k = 0; k < 250 && o.results < 2; k++)
        run_until(base, &ok, 20);
    assert_int_equal(o.last[6], PERSIST_ITEM_OK);
    assert_int_equal(o.last[7], PERSIST_ITEM_OK);
    assert_int_equal(o.results, 2);
    assert_int_equal(s.nseen, 14);
    assert_non_null(strstr(s.seen[11], "\"_id\":\"r6\""));
    assert_non_null(strstr(s.seen[11], "\"_id\":\"r7\""));
    assert_non_null(strstr(s.seen[12], "\"_id\":\"r6\""));
    assert_null(strstr(s.seen[12], "\"_id\":\"r7\""));
    assert_non_null(strstr(s.seen[13], "\"_id\":\"r7\""));

    persist_free(o.p);
    evhttp_free(s.http);
    event_base_free(base);
}

/* Runs the loop until the owner has n results (or 5 s pass). */
static void
wait_results(struct event_base *base, struct owner *o, int n)
{
    bool no = false;

    for (int k = 0; k < 250 && o->results < n; k++)
        run_until(base, &no, 20);
}

/*
 * Issue 10, items 2 and 9: a batch refused as a whole for one item is split
 * until that item stands alone (it alone is rejected, the rest written); a
 * failure of the cluster in the middle of a split hands everything left back;
 * a whole-request 429 cluster_block_exception is a write block (degraded).
 */
static void
test_opensearch_split(void **state)
{
    struct event_base *base = event_base_new();
    struct server s;
    struct owner o;
    struct persist_owner own = {&o, o_fill, o_result, o_loaded, o_state, NULL};
    struct persist_opensearch_opts opt;
    struct persist_stats st;
    char err[256];
    bool no = false;
    static const char v400[] = "{\"error\":{\"type\":\"action_request_validation_exception\","
                               "\"reason\":\"Validation Failed: 1: id is too long\"},\"status\":400}";

    (void)state;
    memset(&o, 0, sizeof o);
    server_start(&s, base);
    memset(&opt, 0, sizeof opt);
    opt.urls = s.url;
    opt.index = "dlq-split";
    opt.bulk_max_docs = 100;
    opt.bulk_max_bytes = 1 << 20;
    opt.flush_ms = 10;
    opt.properties = "{\"n\":{\"type\":\"long\"}}";
    opt.request_timeout_ms = 5000;
    assert_int_equal(persist_opensearch_new(base, &opt, &own, &o.p, err, sizeof err), SC_OK);
    script(&s, 200, "{\"acknowledged\":true}");
    script(&s, 200, "{\"acknowledged\":true}");
    script(&s, 200, "{\"status\":\"green\"}");
    assert_int_equal(persist_start(o.p), SC_OK);
    for (int k = 0; k < 250 && o.p->state == PERSIST_STARTING; k++)
        run_until(base, &no, 20);
    assert_int_equal(o.p->state, PERSIST_OK);
    assert_int_equal(s.nseen, 3);

    /* Four items, r2 at fault: 4 -> [r0 r1] ok, [r2 r3] -> [r2] rejected, [r3] ok. */
    for (int i = 0; i < 4; i++) {
        o.dirty[i] = true;
        o.version[i] = (uint64_t)(20 + i);
    }
    script(&s, 400, v400);
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":201}},{\"index\":{\"status\":201}}]}");
    script(&s, 400, v400);
    script(&s, 400, v400);
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":201}}]}");
    persist_kick(o.p, true);
    wait_results(base, &o, 4);
    assert_int_equal(o.results, 4); /* each item once, when the split is over */
    assert_int_equal(o.last[0], PERSIST_ITEM_OK);
    assert_int_equal(o.last[1], PERSIST_ITEM_OK);
    assert_int_equal(o.last[2], PERSIST_ITEM_REJECTED);
    assert_int_equal(o.last[3], PERSIST_ITEM_OK);
    for (int i = 0; i < 4; i++)
        assert_false(o.dirty[i]);
    assert_int_equal(o.p->state, PERSIST_OK);
    assert_int_equal(s.nseen, 8);
    assert_true(strstr(s.seen[3], "\"_id\":\"r0\"") && strstr(s.seen[3], "\"_id\":\"r3\""));
    assert_true(strstr(s.seen[4], "\"_id\":\"r1\"") && !strstr(s.seen[4], "\"_id\":\"r2\""));
    assert_true(strstr(s.seen[5], "\"_id\":\"r2\"") && strstr(s.seen[5], "\"_id\":\"r3\""));
    assert_true(strstr(s.seen[6], "\"_id\":\"r2\"") && !strstr(s.seen[6], "\"_id\":\"r3\""));
    assert_true(strstr(s.seen[7], "\"_id\":\"r3\"") && !strstr(s.seen[7], "\"_id\":\"r2\""));
    /* Each part carries exactly its items' lines. */
    assert_non_null(strstr(s.seen[7], "_bulk?filter_path"));
    assert_non_null(strstr(s.seen[7], "{\"index\":{\"_id\":\"r3\",\"version\":23,"
                                      "\"version_type\":\"external\"}}\n{\"n\":3}\n"));
    persist_get_stats(o.p, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.written, 3);
    assert_int_equal(st.batches, 5);
    assert_int_equal(st.failed_batches, 3);
    assert_non_null(strstr(st.last_error, "r2 rejected: HTTP 400"));

    /* A 503 in the middle of a split: what is left goes back, degraded, then written. */
    o.results = 0;
    o.dirty[5] = o.dirty[6] = true;
    o.version[5] = 25;
    o.version[6] = 26;
    script(&s, 400, v400);
    script(&s, 503, "{\"error\":{\"type\":\"unavailable\",\"reason\":\"down\"}}");
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":201}},{\"index\":{\"status\":201}}]}");
    persist_kick(o.p, true);
    wait_results(base, &o, 2);
    assert_int_equal(o.last[5], PERSIST_ITEM_RETRY);
    assert_int_equal(o.last[6], PERSIST_ITEM_RETRY);
    assert_int_equal(o.p->state, PERSIST_DEGRADED);
    wait_results(base, &o, 4);
    assert_int_equal(o.last[5], PERSIST_ITEM_OK);
    assert_int_equal(o.last[6], PERSIST_ITEM_OK);
    assert_int_equal(o.p->state, PERSIST_OK);

    /* A whole-request 429 cluster_block_exception: degraded with the block named, not throttled. */
    o.results = 0;
    o.dirty[7] = true;
    o.version[7] = 27;
    script(&s, 429, "{\"error\":{\"type\":\"cluster_block_exception\",\"reason\":\"index [dlq-split] "
                    "blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, "
                    "index has read-only-allow-delete block];\"},\"status\":429}");
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":201}}]}");
    persist_kick(o.p, true);
    wait_results(base, &o, 1);
    assert_int_equal(o.last[7], PERSIST_ITEM_RETRY);
    assert_int_equal(o.p->state, PERSIST_DEGRADED);
    persist_get_stats(o.p, &st);
    assert_non_null(strstr(st.last_error, "cluster_block_exception"));
    wait_results(base, &o, 2);
    assert_int_equal(o.last[7], PERSIST_ITEM_OK);
    assert_int_equal(o.p->state, PERSIST_OK);

    /* A plain whole-request 429 stays throttling: ok throughout. */
    o.results = 0;
    o.state_changes = 0;
    o.dirty[8] = true;
    o.version[8] = 28;
    script(&s, 429, "{\"error\":{\"type\":\"rejected_execution_exception\",\"reason\":\"busy\"},"
                    "\"status\":429}");
    script(&s, 200, "{\"items\":[{\"index\":{\"status\":201}}]}");
    persist_kick(o.p, true);
    wait_results(base, &o, 2);
    assert_int_equal(o.last[8], PERSIST_ITEM_OK);
    assert_int_equal(o.state_changes, 0);

    persist_free(o.p);
    evhttp_free(s.http);
    event_base_free(base);
}

static void
test_memory_backend(void **state)
{
    struct owner o;
    struct persist_owner own = {&o, o_fill, o_result, o_loaded, o_state, NULL};
    struct persist *p;
    struct persist_stats st;

    (void)state;
    memset(&o, 0, sizeof o);
    p = persist_memory_new(&own);
    assert_int_equal(persist_start(p), SC_OK);
    assert_int_equal(o.state, PERSIST_OK);
    persist_kick(p, true);
    assert_false(persist_busy(p));
    persist_get_stats(p, &st);
    assert_string_equal(st.backend, "memory");
    assert_string_equal(persist_state_name(st.state), "ok");
    persist_free(p);
    persist_free(NULL);
}

/* persist_new() picks the backend by name, the OpenSearch one with the task document's schema; persist_durable() tells them apart. */
static void
test_persist_new(void **state)
{
    struct event_base *base = event_base_new();
    struct owner o;
    struct persist_owner own = {&o, o_fill, o_result, o_loaded, o_state, NULL};
    struct persist_opts opts;
    struct persist *p = NULL;
    char err[256] = "";

    (void)state;
    memset(&o, 0, sizeof o);
    memset(&opts, 0, sizeof opts);
    opts.backend = "memory";
    assert_int_equal(persist_new(base, &opts, &own, &p, err, sizeof err), SC_OK);
    assert_non_null(p);
    assert_false(persist_durable(p));
    persist_free(p);

    opts.backend = "opensearch";
    opts.opensearch.urls = "http://127.0.0.1:1";
    opts.opensearch.index = "dlq-test";
    opts.opensearch.bulk_max_docs = 10;
    opts.opensearch.bulk_max_bytes = 4096;
    assert_int_equal(persist_new(base, &opts, &own, &p, err, sizeof err), SC_OK);
    assert_true(persist_durable(p));
    persist_free(p);

    opts.backend = "nowhere";
    p = (struct persist *)&o; /* cleared on entry */
    assert_int_equal(persist_new(base, &opts, &own, &p, err, sizeof err), SC_EINVAL);
    assert_null(p);
    assert_non_null(strstr(err, "nowhere"));
    assert_false(persist_durable(NULL));
    event_base_free(base);
}

/* The task document's fields: text keeps its exact bytes in a _raw twin when JSON cannot carry them; bytes go as base64. */
static void
test_doc_fields(void **state)
{
    struct sc_buf b, tmp;
    struct sc_jw w;
    json_t *j;
    char *v, *bytes;
    size_t len;

    (void)state;
    sc_buf_init(&b, 4096);
    sc_buf_init(&tmp, 4096);
    sc_jw_init(&w, &b);
    sc_jw_open(&w, NULL, '{');
    persist_doc_str(&w, "a", "plain", 5);
    persist_doc_str(&w, "b", "x\xff\0y", 4);
    persist_doc_str(&w, "c", NULL, 0);
    persist_doc_bytes(&w, "d", "\x81\xa1k", 3);
    persist_doc_bytes(&w, "e", NULL, 0);
    sc_jw_int(&w, "n", 7);
    sc_jw_time(&w, "t", 1000);
    sc_jw_close(&w, '}');
    assert_int_equal(w.st, SC_OK);
    assert_string_equal(b.data, "{\"a\":\"plain\",\"b\":\"x\xef\xbf\xbd\\u0000y\",\"b_raw\":\"eP8AeQ==\","
                                "\"c\":null,\"d\":\"gaFr\",\"e\":null,\"n\":7,"
                                "\"t\":\"1970-01-01T00:00:01.000Z\"}");
    j = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL); /* \u0000 in b */
    assert_non_null(j);
    v = persist_doc_get_str(j, "a", &len, &tmp);
    assert_int_equal(len, 5);
    assert_string_equal(v, "plain");
    free(v);
    v = persist_doc_get_str(j, "b", &len, &tmp);
    assert_int_equal(len, 4);
    assert_memory_equal(v, "x\xff\0y", 4);
    free(v);
    assert_null(persist_doc_get_str(j, "c", &len, &tmp));
    assert_int_equal(len, 0);
    assert_true(persist_doc_get_bytes(j, "d", &bytes, &len, &tmp));
    assert_int_equal(len, 3);
    assert_memory_equal(bytes, "\x81\xa1k", 3);
    free(bytes);
    assert_false(persist_doc_get_bytes(j, "e", &bytes, &len, &tmp));
    assert_null(bytes);
    assert_int_equal(persist_doc_get_int(j, "n"), 7);
    assert_int_equal(persist_doc_get_int(j, "a"), 0);
    assert_int_equal(persist_doc_get_time(j, "t"), 1000);
    assert_int_equal(persist_doc_get_time(j, "missing"), 0);
    json_decref(j);
    /* The mapping and the load query are JSON OpenSearch takes. */
    assert_non_null(j = json_loads(persist_task_properties, 0, NULL));
    assert_non_null(json_object_get(j, "task_id_raw"));
    json_decref(j);
    assert_non_null(j = json_loads(persist_task_load_query, 0, NULL));
    json_decref(j);
    assert_non_null(j = json_loads(persist_task_load_sort, 0, NULL));
    json_decref(j);
    sc_buf_destroy(&b);
    sc_buf_destroy(&tmp);
}

/* ---- sealing (secrets.encryption_key_file) ---------------------------------------------------- */

/* Writes len bytes to a new temporary file; returns its path (static, one at a time per slot). */
static const char *
key_file(int slot, const void *p, size_t len)
{
    static char paths[4][64];
    int fd;

    snprintf(paths[slot], sizeof(paths[slot]), "/tmp/dlq-key-XXXXXX");
    fd = mkstemp(paths[slot]);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, len), (ssize_t)len);
    close(fd);
    return paths[slot];
}

/* Round trip, tamper, wrong key, old key, key files of every size. */
static void
test_seal(void **state)
{
    static const unsigned char k1[32] = {1, 2, 3}, k2[32] = {9, 8, 7};
    const unsigned char both[2][32] = {{9, 8, 7}, {1, 2, 3}}; /* k2 current, k1 old */
    struct persist_keyring *a = persist_keyring_new(&k1, 1), *b = persist_keyring_new(&k2, 1);
    struct persist_keyring *ab = persist_keyring_new(both, 2), *kr = NULL;
    static const char msg[] = "\x81\xa8password\xa7hunter2";
    struct sc_buf sealed, sealed2, open;
    char err[256];
    char *old[1];

    (void)state;
    sc_buf_init(&sealed, 1 << 20);
    sc_buf_init(&sealed2, 1 << 20);
    sc_buf_init(&open, 1 << 20);
    assert_null(persist_keyring_new(&k1, 0));
    /* round trip: shape, no plaintext inside, a fresh nonce each time */
    assert_int_equal(persist_seal(a, msg, sizeof(msg) - 1, &sealed), SC_OK);
    assert_int_equal(sealed.len, sizeof(msg) - 1 + persist_seal_overhead());
    assert_int_equal(persist_seal_overhead(), 33);
    assert_int_equal((unsigned char)sealed.data[0], 1);
    assert_true(persist_sealed(sealed.data, sealed.len));
    for (size_t i = 0; i + 7 <= sealed.len; i++)
        assert_memory_not_equal(sealed.data + i, "hunter2", 7);
    assert_int_equal(persist_seal(a, msg, sizeof(msg) - 1, &sealed2), SC_OK);
    assert_memory_not_equal(sealed.data + 5, sealed2.data + 5, 12);
    assert_int_equal(persist_open(a, sealed.data, sealed.len, &open), SC_OK);
    assert_int_equal(open.len, sizeof(msg) - 1);
    assert_memory_equal(open.data, msg, open.len);
    /* empty plaintext */
    sc_buf_reset(&sealed2);
    sc_buf_reset(&open);
    assert_int_equal(persist_seal(a, "", 0, &sealed2), SC_OK);
    assert_int_equal(persist_open(a, sealed2.data, sealed2.len, &open), SC_OK);
    assert_int_equal(open.len, 0);
    /* wrong key: no key of that id */
    sc_buf_reset(&open);
    assert_int_equal(persist_open(b, sealed.data, sealed.len, &open), SC_ENOTFOUND);
    assert_int_equal(open.len, 0);
    assert_int_equal(persist_open(NULL, sealed.data, sealed.len, &open), SC_ENOTFOUND);
    /* old key: the keyring of k2 (current) and k1 (old) opens k1's value, seals with k2 */
    assert_int_equal(persist_open(ab, sealed.data, sealed.len, &open), SC_OK);
    assert_memory_equal(open.data, msg, open.len);
    sc_buf_reset(&sealed2);
    assert_int_equal(persist_seal(ab, msg, sizeof(msg) - 1, &sealed2), SC_OK);
    sc_buf_reset(&open);
    assert_int_equal(persist_open(a, sealed2.data, sealed2.len, &open), SC_ENOTFOUND);
    assert_int_equal(persist_open(b, sealed2.data, sealed2.len, &open), SC_OK);
    /* tamper: any byte of the header, the ciphertext or the tag */
    for (size_t i = 0; i < sealed.len; i++) {
        sc_status st;
        sealed.data[i] ^= 0x20;
        sc_buf_reset(&open);
        st = persist_open(a, sealed.data, sealed.len, &open);
        assert_true(st == SC_EPROTO || st == SC_ENOTFOUND);
        assert_int_equal(open.len, 0);
        sealed.data[i] ^= 0x20;
    }
    /* cut short, and not sealed at all */
    assert_int_equal(persist_open(a, sealed.data, sealed.len - 1, &open), SC_EPROTO);
    assert_int_equal(persist_open(a, sealed.data, 10, &open), SC_EPROTO);
    assert_int_equal(persist_open(a, msg, sizeof(msg) - 1, &open), SC_EPROTO);
    /* key files: 32 raw bytes, 64 hex digits (newline allowed), anything else refused by name */
    assert_int_equal(persist_keyring_load("", NULL, 0, &kr, err, sizeof(err)), SC_OK);
    assert_null(kr);
    old[0] = (char *)key_file(1, "0102030000000000000000000000000000000000000000000000000000000000\n", 65);
    assert_int_equal(persist_keyring_load(key_file(0, k2, 32), old, 1, &kr, err, sizeof(err)), SC_OK);
    sc_buf_reset(&open);
    assert_int_equal(persist_open(kr, sealed.data, sealed.len, &open), SC_OK); /* k1, from hex */
    persist_keyring_free(kr);
    kr = NULL;
    assert_int_equal(persist_keyring_load(key_file(2, k2, 31), NULL, 0, &kr, err, sizeof(err)), SC_EINVAL);
    print_message("%s\n", err);
    assert_non_null(strstr(err, "secrets.encryption_key_file"));
    assert_non_null(strstr(err, "31 bytes"));
    old[0] = (char *)key_file(3, "zz02030000000000000000000000000000000000000000000000000000000000", 64);
    assert_int_equal(persist_keyring_load(key_file(2, k2, 32), old, 1, &kr, err, sizeof(err)), SC_EINVAL);
    assert_non_null(strstr(err, "secrets.encryption_old_key_files"));
    assert_int_equal(persist_keyring_load("/nonexistent/key", NULL, 0, &kr, err, sizeof(err)), SC_ENOTFOUND);
    assert_null(kr);
    for (int i = 0; i < 4; i++)
        unlink(key_file(i, "", 0));
    persist_keyring_free(a);
    persist_keyring_free(b);
    persist_keyring_free(ab);
    persist_keyring_free(NULL);
    sc_buf_destroy(&sealed);
    sc_buf_destroy(&sealed2);
    sc_buf_destroy(&open);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_limits),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_doc_id),
        cmocka_unit_test(test_kv_key),
        cmocka_unit_test(test_http_client),
        cmocka_unit_test(test_opensearch_protocol),
        cmocka_unit_test(test_opensearch_split),
        cmocka_unit_test(test_memory_backend),
        cmocka_unit_test(test_persist_new),
        cmocka_unit_test(test_doc_fields),
        cmocka_unit_test(test_seal),
    };

    return cmocka_run_group_tests_name("persist", tests, NULL, NULL);
}
