/* batch.c - what every backend shares below persist_new(): write batches and the state setter. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "persist-internal.h"

/* ---- batches ---------------------------------------------------------------------------------- */

void
persist_batch_init(struct persist_batch *b, size_t max_docs, size_t max_bytes,
                   persist_action_fn action)
{
    memset(b, 0, sizeof(*b));
    /* One document may pass max_bytes alone, up to what a request may carry. */
    sc_buf_init(&b->body, PERSIST_BULK_BODY_MAX);
    sc_buf_init(&b->ids, SIZE_MAX / 2);
    b->max_docs = max_docs ? max_docs : 1;
    b->max_bytes = max_bytes ? max_bytes : 1024;
    if (b->max_bytes > PERSIST_BULK_BODY_MAX)
        b->max_bytes = PERSIST_BULK_BODY_MAX;
    b->action = action;
}

void
persist_batch_destroy(struct persist_batch *b)
{
    sc_buf_destroy(&b->body);
    sc_buf_destroy(&b->ids);
    free(b->items);
    free(b->excl_used);
    memset(b, 0, sizeof(*b));
}

void
persist_batch_reset(struct persist_batch *b)
{
    sc_buf_reset(&b->body);
    sc_buf_reset(&b->ids);
    b->count = 0;
    b->open = false;
    b->stopped = false;
    if (b->excl_used)
        memset(b->excl_used, 0, b->excl);
    b->excl_count = 0;
    b->excl_skipped = false;
}

void
persist_batch_exclusive(struct persist_batch *b, unsigned partitions)
{
    free(b->excl_used);
    b->excl_used = partitions ? sc_xcalloc(partitions, 1) : NULL;
    b->excl = partitions;
    b->excl_count = 0;
}

/* The partition of id in an exclusive batch. */
static uint32_t
excl_partition(const struct persist_batch *b, const char *id, size_t id_len)
{
    return (uint32_t)(sc_fnv1a64(id, id_len) % b->excl);
}

bool
persist_batch_accepts(struct persist_batch *b, const char *id, size_t id_len)
{
    if (!b->excl || !b->excl_used[excl_partition(b, id, id_len)])
        return true;
    b->excl_skipped = true; /* something waits: the next batch goes at once */
    return false;
}

bool
persist_batch_msgpack(const struct persist_batch *b)
{
    return b->msgpack;
}

const char *
persist_batch_item_id(const struct persist_batch *b, size_t i)
{
    return b->ids.data + b->items[i].id_off;
}

size_t
persist_batch_count(const struct persist_batch *b)
{
    return b->count;
}

/*
 * Full also once an item was taken back for want of room: the owner stops
 * filling there, and what it keeps must go in the next batch at once, not
 * wait for an unrelated change (issue 10, item 8).
 */
bool
persist_batch_has_room(const struct persist_batch *b)
{
    return !b->stopped && b->count < b->max_docs && b->body.len < b->max_bytes &&
           (!b->excl || b->excl_count < b->excl);
}

bool
persist_batch_full(const struct persist_batch *b)
{
    return !persist_batch_has_room(b) || (b->excl && b->excl_skipped);
}

/* Appends the item record and its action line; leaves b->mark at the item's start. */
static sc_status
begin_item(struct persist_batch *b, const char *id, size_t id_len, uint64_t version, bool del)
{
    struct persist_batch_item *it;
    sc_status s;

    if (b->open)
        return SC_EINVAL;
    if (!persist_batch_has_room(b) || !persist_batch_accepts(b, id, id_len))
        return SC_EFULL;
    if (b->excl)
        b->open_p = excl_partition(b, id, id_len);
    if (b->count == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 64;
        b->items = sc_xrealloc(b->items, ncap * sizeof(*b->items));
        b->cap = ncap;
    }
    b->mark = b->body.len;
    b->ids_mark = b->ids.len;
    if ((s = sc_buf_append(&b->ids, id, id_len)) || (s = b->action(&b->body, id, id_len, version, del))) {
        b->body.len = b->mark;
        b->ids.len = b->ids_mark;
        if (b->count > 0)
            b->stopped = true; /* the next batch may take it */
        return s;
    }
    it = &b->items[b->count];
    it->id_off = b->ids_mark;
    it->body_off = b->mark;
    it->id_len = id_len;
    it->version = version;
    it->del = del;
    b->open = true;
    return SC_OK;
}

/*
 * Closes the open item (a document line gets its '\n'): keeps it when the
 * batch stays within max_bytes or it is the batch's only item, else takes
 * it back (SC_EFULL). SC_ETOOBIG when it passes the body's hard cap.
 */
static sc_status
end_item(struct persist_batch *b, bool newline)
{
    sc_status s = SC_OK;

    if (!b->open)
        return SC_EINVAL;
    b->open = false;
    if (newline && sc_buf_appendc(&b->body, '\n') != SC_OK)
        s = b->count > 0 ? SC_EFULL : SC_ETOOBIG; /* with others, it may fit in the next batch */
    else if (b->count > 0 && b->body.len > b->max_bytes)
        s = SC_EFULL;
    if (s) {
        b->body.len = b->mark;
        if (b->body.data)
            b->body.data[b->mark] = '\0';
        b->ids.len = b->ids_mark;
        if (s == SC_EFULL)
            b->stopped = true;
        return s;
    }
    b->count++;
    if (b->excl) {
        b->excl_used[b->open_p] = 1;
        b->excl_count++;
    }
    return SC_OK;
}

struct sc_buf *
persist_batch_put_begin(struct persist_batch *b, const char *id, size_t id_len, uint64_t version)
{
    if (begin_item(b, id, id_len, version, false) != SC_OK)
        return NULL;
    return &b->body;
}

sc_status
persist_batch_put_end(struct persist_batch *b)
{
    return end_item(b, true);
}

void
persist_batch_put_abort(struct persist_batch *b)
{
    if (!b->open)
        return;
    b->open = false;
    b->body.len = b->mark;
    if (b->body.data)
        b->body.data[b->mark] = '\0';
    b->ids.len = b->ids_mark;
    if (b->count > 0)
        b->stopped = true; /* as persist.h says: with other items, the batch is full */
}

sc_status
persist_batch_delete(struct persist_batch *b, const char *id, size_t id_len, uint64_t version)
{
    sc_status s;

    if ((s = begin_item(b, id, id_len, version, true)))
        return s;
    return end_item(b, false);
}

/* ---- the backend's state --------------------------------------------------------------------- */

void
persist_set_state(struct persist *p, persist_state s, const char *error)
{
    if (p->state == s)
        return;
    p->state = s;
    if (p->owner.state)
        p->owner.state(p->owner.ctx, s, error);
}
