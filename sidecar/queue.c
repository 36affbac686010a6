/* queue.c - the in-memory task table: a hash by task_id, status counts, seq order and bounded history. */
#include <stdlib.h>
#include <string.h>

#include "sidecar-internal.h"

static uint64_t hash_seed;

const char *
sc_task_status_name(sc_task_status s)
{
    static const char *const names[] = {"pending", "retrying", "exhausted", "completed", "archived"};
    return (unsigned)s < SC_ARRAY_LEN(names) ? names[s] : "unknown";
}

const char *
sc_outcome_name(sc_outcome_kind k)
{
    static const char *const names[] = {"failed",    "retry_failed", "timeout",
                                        "succeeded", "deferred",     "refused",
                                        "exhausted", "manual_retry", "archived"};
    return (unsigned)k < SC_ARRAY_LEN(names) ? names[k] : "unknown";
}

/*
 * A seeded multiply-xorshift hash over 8-byte words. The seed is random per
 * process so that task ids chosen by a client cannot be aimed at one chain
 * without knowing it.
 */
static uint32_t
id_hash(const char *p, size_t len)
{
    uint64_t h = hash_seed ^ (len * 0x9e3779b97f4a7c15ULL);

    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, p, len);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    }
    h ^= h >> 29;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (uint32_t)h;
}

void
sc_queue_init(struct sc_queue *q, size_t hist_cap)
{
    memset(q, 0, sizeof(*q));
    if (!hash_seed)
        hash_seed = (uint64_t)sc_now_wall_ms() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)q;
    q->nbuckets = 1024;
    q->buckets = sc_xcalloc(q->nbuckets, sizeof(*q->buckets));
    q->next_seq = 1;
    q->hist_cap = hist_cap ? hist_cap : 1;
}

static void
task_free(struct sc_task *t)
{
    for (unsigned i = 0; i < t->hist_len; i++)
        free(t->hist[i].error);
    free(t->hist);
    free(t->id);
    free(t->subject);
    free(t->retry_subject);
    free(t->payload);
    free(t->error);
    free(t->error_type);
    free(t->rule_id);
    free(t->park_reason);
    free(t->metadata);
    free(t->repos);
    free(t);
}

void
sc_queue_destroy(struct sc_queue *q)
{
    struct sc_task *t = q->head, *next;

    for (; t; t = next) {
        next = t->onext;
        task_free(t);
    }
    free(q->buckets);
    memset(q, 0, sizeof(*q));
}

struct sc_task *
sc_queue_find(struct sc_queue *q, const char *id, size_t len)
{
    uint32_t h = id_hash(id, len);
    struct sc_task *t = q->buckets[h & (q->nbuckets - 1)];

    for (; t; t = t->hnext)
        if (t->hash == h && t->id_len == len && memcmp(t->id, id, len) == 0)
            return t;
    return NULL;
}

static void
grow(struct sc_queue *q)
{
    size_t n = q->nbuckets * 2;
    struct sc_task **b = sc_xcalloc(n, sizeof(*b));

    for (size_t i = 0; i < q->nbuckets; i++) {
        struct sc_task *t = q->buckets[i], *next;
        for (; t; t = next) {
            next = t->hnext;
            t->hnext = b[t->hash & (n - 1)];
            b[t->hash & (n - 1)] = t;
        }
    }
    free(q->buckets);
    q->buckets = b;
    q->nbuckets = n;
}

struct sc_task *
sc_queue_add(struct sc_queue *q, const char *id, size_t len, int64_t now_wall)
{
    struct sc_task *t = sc_xcalloc(1, sizeof(*t));
    size_t b;

    sc_wheel_entry_init(&t->timer);
    t->id = sc_xstrndup(id, len);
    t->id_len = len;
    t->hash = id_hash(id, len);
    t->seq = q->next_seq++;
    t->version = 1;
    t->status = SC_TASK_PENDING;
    t->created_at = now_wall;
    t->updated_at = now_wall;
    t->episode = 1;
    if (q->count >= q->nbuckets)
        grow(q);
    b = t->hash & (q->nbuckets - 1);
    t->hnext = q->buckets[b];
    q->buckets[b] = t;
    t->oprev = q->tail;
    if (q->tail)
        q->tail->onext = t;
    else
        q->head = t;
    q->tail = t;
    q->count++;
    q->counts[SC_TASK_PENDING]++;
    return t;
}

void
sc_queue_remove(struct sc_queue *q, struct sc_task *t)
{
    struct sc_task **pp = &q->buckets[t->hash & (q->nbuckets - 1)];

    while (*pp && *pp != t)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = t->hnext;
    if (t->oprev)
        t->oprev->onext = t->onext;
    else
        q->head = t->onext;
    if (t->onext)
        t->onext->oprev = t->oprev;
    else
        q->tail = t->oprev;
    q->count--;
    q->bytes -= t->bytes;
    q->counts[t->status]--;
    if (t->parked)
        q->parked--;
    task_free(t);
}

void
sc_queue_set_status(struct sc_queue *q, struct sc_task *t, sc_task_status s, bool parked)
{
    parked = parked && s == SC_TASK_PENDING;
    q->counts[t->status]--;
    if (t->parked)
        q->parked--;
    t->status = s;
    t->parked = parked;
    q->counts[s]++;
    if (parked)
        q->parked++;
    else {
        free(t->park_reason);
        t->park_reason = NULL;
    }
}

void
sc_queue_history(struct sc_queue *q, struct sc_task *t, sc_outcome_kind k, int32_t attempt,
                 int64_t at, const char *error, size_t error_len)
{
    struct sc_attempt *a;

    if (!t->hist)
        t->hist = sc_xcalloc(q->hist_cap, sizeof(*t->hist));
    if (t->hist_len < q->hist_cap) {
        a = &t->hist[(t->hist_head + t->hist_len) % q->hist_cap];
        t->hist_len++;
    } else {
        a = &t->hist[t->hist_head];
        t->hist_head = (uint16_t)((t->hist_head + 1) % q->hist_cap);
        free(a->error);
    }
    a->at_ms = at;
    a->attempt = attempt;
    a->outcome = (uint8_t)k;
    a->error = error ? sc_xstrndup(error, error_len) : NULL;
}

size_t
sc_queue_active(const struct sc_queue *q)
{
    return q->counts[SC_TASK_PENDING] + q->counts[SC_TASK_RETRYING] + q->counts[SC_TASK_EXHAUSTED];
}

void
sc_set_str(char **field, const char *p, size_t len)
{
    free(*field);
    *field = p ? sc_xstrndup(p, len) : NULL;
}

void
sc_set_text(char **field, const char *p, size_t len)
{
    sc_set_str(field, p, len);
    if (*field)
        for (size_t i = 0; i < len; i++)
            if ((*field)[i] == '\0')
                (*field)[i] = ' ';
}

void
sc_task_account(struct sc_queue *q, struct sc_task *t)
{
    size_t b = sizeof(*t) + t->id_len + t->payload_len + t->metadata_len + t->repos_len;

    b += t->error ? strlen(t->error) : 0;
    b += t->error_type ? strlen(t->error_type) : 0;
    b += t->subject ? strlen(t->subject) : 0;
    b += t->retry_subject ? strlen(t->retry_subject) : 0;
    q->bytes = q->bytes - t->bytes + b;
    t->bytes = b;
}

bool
sc_filter_match(const struct sc_filter *f, const struct sc_task *t, int64_t now_wall)
{
    if (f->status >= 0 && (int)t->status != f->status)
        return false;
    if (f->want_parked >= 0 && (int)t->parked != f->want_parked)
        return false;
    if (f->category >= 0 && (int)t->category != f->category)
        return false;
    if (f->subject && !codec_subject_match(f->subject, t->subject, strlen(t->subject)))
        return false;
    if (f->older_than_ms > 0 && t->created_at > now_wall - f->older_than_ms)
        return false;
    return true;
}
