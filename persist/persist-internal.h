/* persist-internal.h - the batch layout shared by persist/'s files and its unit tests. */
#ifndef DLQ_PERSIST_INTERNAL_H
#define DLQ_PERSIST_INTERNAL_H

#include "persist.h"

/* One item of a batch: its id lives in ids at id_off, its lines in body from body_off. */
struct persist_batch_item {
    size_t id_off, id_len;
    size_t body_off;
    uint64_t version;
    bool del;
};

/*
 * Writes the line that introduces an item into body (a _bulk action line
 * for OpenSearch). Returns SC_OK or sc_buf_append()'s errors.
 */
typedef sc_status (*persist_action_fn)(struct sc_buf *body, const char *id, size_t id_len,
                                       uint64_t version, bool del);

/*
 * The most bytes of one _bulk body, whatever max_bytes says (a lone item may
 * pass max_bytes up to it): below OpenSearch's default http.max_content_length
 * of 100 MiB, which answers 413 to a larger request.
 */
#define PERSIST_BULK_BODY_MAX ((size_t)99 * 1024 * 1024)

/*
 * A batch: the request body being built (action line, document line, ...),
 * the items in order, and the limits. Reused across batches (no allocation
 * in steady state). Invariant: body.len <= max_bytes unless the batch holds
 * exactly one item.
 */
struct persist_batch {
    struct sc_buf body;
    struct sc_buf ids;
    struct persist_batch_item *items;
    size_t count, cap;
    size_t max_docs, max_bytes;
    persist_action_fn action;
    size_t mark;      /* body.len before the open put, while open */
    size_t ids_mark;
    bool open;
    bool stopped;     /* an item was taken back (it did not fit): the batch is full */
    /* persist_batch_exclusive(): at most one item per partition (0: off) */
    unsigned excl;
    unsigned char *excl_used; /* excl bytes: the partitions with an item */
    size_t excl_count;
    bool excl_skipped; /* an item was refused for its partition: full, the next batch at once */
    uint32_t open_p;  /* the open item's partition */
    bool msgpack;     /* documents are MessagePack records (the KV store), not JSON text */
};

/* persist_batch_init() prepares b with limits and an action writer; persist_batch_destroy() frees it. */
void persist_batch_init(struct persist_batch *b, size_t max_docs, size_t max_bytes,
                        persist_action_fn action);
void persist_batch_destroy(struct persist_batch *b);
/* persist_batch_reset() empties b, keeping its storage (and its exclusivity). */
void persist_batch_reset(struct persist_batch *b);
/*
 * persist_batch_exclusive() lets b take at most one item per partition of
 * partitions (FNV-1a 64 of the id mod partitions; 0 turns it off): the KV
 * store in cluster mode, whose every write checks its partition's fence,
 * which a clustered server checks for one write at a time. b is full once
 * every partition has its item. Loop thread.
 */
void persist_batch_exclusive(struct persist_batch *b, unsigned partitions);
/* persist_batch_item_id() returns item i's id (not NUL-terminated). */
const char *persist_batch_item_id(const struct persist_batch *b, size_t i);

/* Sets p->state and tells the owner when it changed. */
void persist_set_state(struct persist *p, persist_state s, const char *error);

#endif
