/* store.c - the generic store calls, the choice of a backend (persist_new()) and the memory backend (which keeps nothing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist-internal.h"

const char *
persist_state_name(persist_state s)
{
    switch (s) {
    case PERSIST_STARTING: return "starting";
    case PERSIST_OK: return "ok";
    case PERSIST_DEGRADED: return "degraded";
    }
    return "unknown";
}

const char *
persist_result_name(persist_result r)
{
    switch (r) {
    case PERSIST_ITEM_OK: return "ok";
    case PERSIST_ITEM_STALE: return "stale";
    case PERSIST_ITEM_RETRY: return "retry";
    case PERSIST_ITEM_REJECTED: return "rejected";
    case PERSIST_ITEM_FENCED: return "fenced";
    }
    return "unknown";
}

/* ---- generic calls ---------------------------------------------------------------------------- */

sc_status
persist_start(struct persist *p)
{
    return p->ops->start(p);
}

void
persist_kick(struct persist *p, bool urgent)
{
    p->ops->kick(p, urgent);
}

void
persist_stopping(struct persist *p)
{
    if (p->ops->stopping)
        p->ops->stopping(p);
}

sc_status
persist_claim(struct persist *p, unsigned partition)
{
    return p->ops->claim ? p->ops->claim(p, partition) : SC_EINVAL;
}

void
persist_release(struct persist *p, unsigned partition)
{
    if (p->ops->release)
        p->ops->release(p, partition);
}

void
persist_refence(struct persist *p, unsigned partition)
{
    if (p->ops->refence)
        p->ops->refence(p, partition);
}

bool
persist_busy(const struct persist *p)
{
    return p->ops->busy(p);
}

void
persist_get_stats(const struct persist *p, struct persist_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->backend = p->ops->name;
    out->state = p->state;
    p->ops->stats(p, out);
}

void
persist_free(struct persist *p)
{
    if (p)
        p->ops->destroy(p);
}

/* ---- the memory backend ----------------------------------------------------------------------- */

static sc_status
mem_start(struct persist *p)
{
    persist_set_state(p, PERSIST_OK, NULL);
    return SC_OK;
}

static void
mem_kick(struct persist *p, bool urgent)
{
    (void)p;
    (void)urgent;
}

static bool
mem_busy(const struct persist *p)
{
    (void)p;
    return false;
}

static void
mem_stats(const struct persist *p, struct persist_stats *out)
{
    (void)p;
    (void)out;
}

static void
mem_destroy(struct persist *p)
{
    free(p);
}

static const struct persist_ops memory_ops = {
    .name = "memory",
    .start = mem_start,
    .kick = mem_kick,
    .busy = mem_busy,
    .stats = mem_stats,
    .destroy = mem_destroy,
    .durable = false,
};

struct persist *
persist_memory_new(const struct persist_owner *owner)
{
    struct persist *p = sc_xcalloc(1, sizeof(*p));

    p->ops = &memory_ops;
    if (owner)
        p->owner = *owner;
    p->state = PERSIST_STARTING;
    return p;
}

bool
persist_durable(const struct persist *p)
{
    return p && p->ops->durable;
}

sc_status
persist_new(struct event_base *base, const struct persist_opts *o,
            const struct persist_owner *owner, struct persist **out, char *err, size_t errlen)
{
    struct persist_opensearch_opts os;

    *out = NULL;
    if (strcmp(o->backend, "memory") == 0) {
        *out = persist_memory_new(owner);
        return SC_OK;
    }
    if (strcmp(o->backend, "jetstream") == 0)
        return persist_kv_new(base, &o->kv, owner, out, err, errlen);
    if (strcmp(o->backend, "opensearch") != 0) {
        snprintf(err, errlen, "store.backend: unknown backend '%s'", o->backend);
        return SC_EINVAL;
    }
    os = o->opensearch;
    if (!os.properties)
        os.properties = persist_task_properties;
    if (!os.load_query)
        os.load_query = persist_task_load_query;
    if (!os.load_sort)
        os.load_sort = persist_task_load_sort;
    return persist_opensearch_new(base, &os, owner, out, err, errlen);
}
