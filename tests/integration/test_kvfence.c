/* test_kvfence.c - integration: the KV store's cluster mode against a real nats-server 2.15.3: a partition claimed by a second instance fences the first one's writes on the server (DESIGN section 18). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "harness.h"
#include "persist.h"

#define PARTS 4

/* One store instance as the sidecar drives it: its own connection, loop, dirty set and answers. */
struct inst {
    const char *name;
    struct event_base *base;
    natsConnection *nc;
    natsSubscription *sub;
    char prefix[128];
    struct persist *p;
    struct event *poll;
    /* what fill() puts: records (id, version, value) written once each */
    char ids[256][32];
    uint64_t versions[256];
    size_t nputs, next_put;
    /* what came back */
    size_t ok, fenced, retry, busy, other;
    int claimed[PARTS]; /* 1 ok, -1 failed, 0 not yet */
    size_t loaded;
    uint64_t loaded_versions[64];
};

/* The partition of id among PARTS, as the store computes it. */
static unsigned
dlq_fnv_part(const char *id)
{
    return (unsigned)(sc_fnv1a64(id, strlen(id)) % PARTS);
}

static sc_status
i_publish(void *ctx, const char *subject, const char *reply, const void *body, size_t len,
          const char *const *headers)
{
    struct inst *x = ctx;
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, reply, body, (int)len);

    for (size_t i = 0; s == NATS_OK && headers && headers[i]; i += 2)
        s = natsMsgHeader_Set(m, headers[i], headers[i + 1]);
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(x->nc, m);
    natsMsg_Destroy(m);
    return s == NATS_OK ? SC_OK : SC_EIO;
}

static void
i_fill(void *ctx, struct persist_batch *b)
{
    struct inst *x = ctx;

    while (x->next_put < x->nputs) {
        size_t i = x->next_put;
        struct sc_buf *buf = persist_batch_put_begin(b, x->ids[i], strlen(x->ids[i]), x->versions[i]);
        if (!buf)
            return;
        sc_buf_appendf(buf, "{\"task_id\":\"%s\",\"status\":\"pending\",\"version\":%llu,\"by\":\"%s\"}",
                       x->ids[i], (unsigned long long)x->versions[i], x->name);
        if (persist_batch_put_end(b) != SC_OK)
            return;
        x->next_put++;
    }
}

static void
i_result(void *ctx, const struct persist_item *it, persist_result r, const char *reason)
{
    struct inst *x = ctx;

    switch (r) {
    case PERSIST_ITEM_OK: x->ok++; break;
    case PERSIST_ITEM_FENCED: x->fenced++; break;
    case PERSIST_ITEM_RETRY:
        /*
         * Written again, as the sidecar's mirror does. The store sends one
         * write of a partition per batch (the server checks one write
         * against a fence at a time): the others come back busy, not failed.
         */
        if (reason && strstr(reason, "in flight"))
            x->busy++;
        else
            x->retry++;
        if (x->nputs < SC_ARRAY_LEN(x->ids)) {
            snprintf(x->ids[x->nputs], sizeof x->ids[0], "%.*s", (int)it->id_len, it->id);
            x->versions[x->nputs++] = it->version;
        }
        break;
    default: x->other++; break;
    }
}

static void
i_loaded(void *ctx, const char *key, size_t key_len, uint64_t version, json_t *src)
{
    struct inst *x = ctx;

    (void)key;
    (void)key_len;
    (void)src;
    if (x->loaded < 64)
        x->loaded_versions[x->loaded] = version;
    x->loaded++;
}

static void
i_state(void *ctx, persist_state s, const char *error)
{
    (void)ctx;
    (void)s;
    (void)error;
}

static void
i_claimed(void *ctx, unsigned partition, bool ok, const char *error)
{
    struct inst *x = ctx;

    (void)error;
    x->claimed[partition] = ok ? 1 : -1;
}

/* Answers arrive on a synchronous subscription; the loop polls it every millisecond. */
static void
i_poll(evutil_socket_t fd, short what, void *arg)
{
    struct inst *x = arg;
    natsMsg *m = NULL;

    (void)fd;
    (void)what;
    while (natsSubscription_NextMsg(&m, x->sub, 0) == NATS_OK) {
        persist_kv_reply(x->p, natsMsg_GetSubject(m), natsMsg_GetData(m),
                         (size_t)natsMsg_GetDataLength(m), natsMsg_IsNoResponders(m) ? 503 : 0);
        natsMsg_Destroy(m);
    }
}

static void
inst_open(struct inst *x, const char *name, const char *url)
{
    struct persist_owner own = {x, i_fill, i_result, i_loaded, i_state, i_claimed};
    struct persist_kv_opts o;
    struct timeval ms = {0, 1000};
    natsInbox *inbox = NULL;
    char sub[160], err[256];

    memset(x, 0, sizeof(*x));
    x->name = name;
    x->base = event_base_new();
    x->nc = it_connect(url, name);
    IT_CHECK(x->base && x->nc, "%s: loop and connection", name);
    IT_CHECK(natsInbox_Create(&inbox) == NATS_OK, "inbox");
    snprintf(x->prefix, sizeof x->prefix, "%s.kv", (const char *)inbox);
    natsInbox_Destroy(inbox);
    snprintf(sub, sizeof sub, "%s.>", x->prefix);
    IT_CHECK(natsConnection_SubscribeSync(&x->sub, x->nc, sub) == NATS_OK, "subscribe");
    memset(&o, 0, sizeof o);
    o.nc = x->nc;
    o.bucket = "FENCE_TASKS";
    o.replicas = 1;
    o.batch_max = 16;
    o.flush_ms = 1;
    o.timeout_ms = 5000;
    o.partitions = PARTS;
    o.fenced = true;
    o.member = name;
    o.reply_prefix = x->prefix;
    o.publish = i_publish;
    o.publish_ctx = x;
    IT_CHECK(persist_kv_new(x->base, &o, &own, &x->p, err, sizeof err) == SC_OK, "%s", err);
    x->poll = event_new(x->base, -1, EV_PERSIST, i_poll, x);
    event_add(x->poll, &ms);
    IT_CHECK(persist_start(x->p) == SC_OK, "start");
}

static void
inst_close(struct inst *x)
{
    persist_free(x->p);
    event_free(x->poll);
    natsSubscription_Destroy(x->sub);
    natsConnection_Destroy(x->nc);
    event_base_free(x->base);
}

/* Runs x's loop until cond holds or 10 s pass. */
#define RUN_UNTIL(x, cond)                                                                      \
    do {                                                                                        \
        int64_t until_ = sc_now_mono_ms() + 10000;                                              \
        while (!(cond) && sc_now_mono_ms() < until_)                                            \
            event_base_loop((x)->base, EVLOOP_ONCE);                                            \
        IT_CHECK(cond, "%s: timed out waiting for %s", (x)->name, #cond);                       \
    } while (0)

/* Queues writes of n ids of partition p ("<tag>-<k>") at version and kicks the store. */
static void
put_ids(struct inst *x, unsigned p, const char *tag, size_t n, uint64_t version)
{
    for (unsigned k = 0; n > 0 && k < 10000; k++) {
        char id[32];
        snprintf(id, sizeof id, "%s-%u", tag, k);
        if (dlq_fnv_part(id) != p)
            continue;
        snprintf(x->ids[x->nputs], sizeof x->ids[0], "%s", id);
        x->versions[x->nputs++] = version;
        n--;
    }
    persist_kick(x->p, true);
}

static void
test_claim_fences_the_former_owner(void **state)
{
    struct it_server srv;
    char dir[] = "/tmp/dlq-it-kvfence-XXXXXX";
    struct inst a, b;

    (void)state;
    IT_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    memset(&srv, 0, sizeof srv);
    IT_CHECK(it_server_start(&srv, dir, true) == 0, "nats-server -js");
    inst_open(&a, "member-a", srv.url);
    inst_open(&b, "member-b", srv.url);
    /* Cluster mode loads nothing at start; a write of an unclaimed partition is never sent. */
    RUN_UNTIL(&a, a.p->state == PERSIST_OK);
    put_ids(&a, 1, "early", 1, 10);
    RUN_UNTIL(&a, a.fenced == 1);
    IT_CHECK(a.ok == 0, "a write without a claim went out");

    /* a claims partition 1 and writes there. */
    IT_CHECK(persist_claim(a.p, 1) == SC_OK, "claim");
    RUN_UNTIL(&a, a.claimed[1] == 1);
    struct persist_stats st0, st1;
    persist_get_stats(a.p, &st0);
    put_ids(&a, 1, "t", 5, 100);
    RUN_UNTIL(&a, a.ok == 5);
    /* A clustered server checks one write against a fence at a time: one per partition per batch. */
    persist_get_stats(a.p, &st1);
    IT_CHECK(st1.batches - st0.batches >= 5 && a.busy == 0,
             "5 writes of one partition: %llu batches, %zu busy; want 5 or more batches, none busy",
             (unsigned long long)(st1.batches - st0.batches), a.busy);

    /* b claims partition 1: it loads what a wrote, and its fence now refuses a's writes. */
    RUN_UNTIL(&b, b.p->state == PERSIST_OK);
    IT_CHECK(persist_claim(b.p, 1) == SC_OK, "claim");
    RUN_UNTIL(&b, b.claimed[1] == 1);
    IT_CHECK(b.loaded == 5, "b loaded %zu records of partition 1, want 5", b.loaded);
    put_ids(&a, 1, "t", 5, 200); /* a zombie owner writing after the takeover */
    RUN_UNTIL(&a, a.fenced == 1 + 5);
    IT_CHECK(a.ok == 5 && a.retry == 0 && a.other == 0, "a: ok %zu retry %zu other %zu", a.ok,
             a.retry, a.other);
    put_ids(&b, 1, "t", 5, 300);
    RUN_UNTIL(&b, b.ok == 5);
    IT_CHECK(b.fenced == 0, "the new owner was fenced");

    /* What the bucket holds is b's: a third instance claiming it reads version 300 for each. */
    {
        struct inst c;
        inst_open(&c, "member-c", srv.url);
        RUN_UNTIL(&c, c.p->state == PERSIST_OK);
        IT_CHECK(persist_claim(c.p, 1) == SC_OK, "claim");
        RUN_UNTIL(&c, c.claimed[1] == 1);
        IT_CHECK(c.loaded == 5, "c loaded %zu", c.loaded);
        for (size_t i = 0; i < c.loaded; i++)
            IT_CHECK(c.loaded_versions[i] == 300, "record %zu holds version %llu, not the owner's 300",
                     i, (unsigned long long)c.loaded_versions[i]);
        inst_close(&c);
    }
    /* A released partition writes nothing. */
    persist_release(b.p, 1);
    put_ids(&b, 1, "t", 2, 400);
    RUN_UNTIL(&b, b.fenced == 2);
    inst_close(&a);
    inst_close(&b);
    it_server_stop(&srv, SIGTERM);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_fences_the_former_owner),
    };

    evthread_use_pthreads(); /* the store's loader wakes the loop */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
