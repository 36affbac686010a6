/* queue.c - the in-memory task table: an open-addressing id table, counts, seq order, bounded history and a pool of shared strings. */
#include <stdlib.h>
#include <string.h>

#include "dlq.h"

static uint64_t hash_seed;

const char *
dlq_task_status_name(dlq_task_status s)
{
    static const char *const names[] = {"pending", "retrying", "exhausted", "completed", "archived"};
    return (unsigned)s < SC_ARRAY_LEN(names) ? names[s] : "unknown";
}

const char *
dlq_outcome_name(dlq_outcome_kind k)
{
    static const char *const names[] = {"failed",    "retry_failed", "timeout",
                                        "succeeded", "deferred",     "refused",
                                        "exhausted", "manual_retry", "archived",
                                        "edited", "operator"};
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
    return (uint32_t)sc_hash64(hash_seed, p, len);
}

void
dlq_queue_init(struct dlq_queue *q, size_t hist_cap)
{
    memset(q, 0, sizeof(*q));
    if (!hash_seed)
        hash_seed = sc_random_u64();
    sc_list_init(&q->order);
    q->nslots = 1024;
    q->tags = sc_xcalloc(q->nslots, 1);
    q->slots = sc_xcalloc(q->nslots, sizeof(*q->slots));
    q->next_seq = 1;
    q->hist_cap = hist_cap ? (hist_cap < UINT16_MAX ? hist_cap : UINT16_MAX) : 1;
    q->npool = 256;
    q->pool = sc_xcalloc(q->npool, sizeof(*q->pool));
}

/* ---- the string pool ----------------------------------------------------------------------------
 *
 * Task fields that repeat across tasks (subjects, error texts, rule ids) are
 * kept once: each distinct string is one reference-counted entry of a
 * chained hash, freed when its last reference goes. A field points at the
 * entry's text, so readers see a plain NUL-terminated string.
 */
struct dlq_pstr {
    struct dlq_pstr *next;
    uint64_t error_hash; /* dlq_error_hash() of the text once error_hashed (a task's group asked) */
    uint32_t hash;
    uint32_t refs;
    uint32_t len;
    bool error_hashed;
    uint8_t json_plain; /* 0 not worked out yet, 1 plain JSON text (sc_json_plain_len()), 2 not */
    char s[];
};

static struct dlq_pstr *
pstr_of(const char *s)
{
    return (struct dlq_pstr *)(void *)(s - offsetof(struct dlq_pstr, s));
}

static void
pool_grow(struct dlq_queue *q)
{
    size_t n = q->npool * 2;
    struct dlq_pstr **b = sc_xcalloc(n, sizeof(*b));

    for (size_t i = 0; i < q->npool; i++) {
        struct dlq_pstr *e = q->pool[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(q->pool);
    q->pool = b;
    q->npool = n;
}

/* pool_get() returns a new reference to the pooled copy of the len bytes at p (no NUL inside). */
static const char *
pool_get(struct dlq_queue *q, const char *p, size_t len)
{
    uint32_t h = id_hash(p, len);
    struct dlq_pstr *e = q->pool[h & (q->npool - 1)];

    for (; e; e = e->next) {
        if (e->hash == h && e->len == len && memcmp(e->s, p, len) == 0 && e->refs < UINT32_MAX) {
            e->refs++;
            return e->s;
        }
    }
    if (q->nstr >= q->npool)
        pool_grow(q);
    e = sc_xmalloc(sizeof(*e) + len + 1);
    e->hash = h;
    e->refs = 1;
    e->len = (uint32_t)len;
    e->error_hashed = false;
    e->json_plain = 0;
    memcpy(e->s, p, len);
    e->s[len] = '\0';
    e->next = q->pool[h & (q->npool - 1)];
    q->pool[h & (q->npool - 1)] = e;
    q->nstr++;
    return e->s;
}

/* pool_put() drops one reference to a pooled string (NULL is a no-op). */
static void
pool_put(struct dlq_queue *q, const char *s)
{
    struct dlq_pstr *e, **pp;

    if (!s)
        return;
    e = pstr_of(s);
    if (--e->refs > 0)
        return;
    for (size_t i = 0; i < sizeof(q->recent) / sizeof(q->recent[0]); i++)
        if (q->recent[i] == e)
            q->recent[i] = NULL;
    for (pp = &q->pool[e->hash & (q->npool - 1)]; *pp && *pp != e; pp = &(*pp)->next)
        ;
    if (*pp)
        *pp = e->next;
    q->nstr--;
    free(e);
}

/*
 * pool_get_recent() is pool_get() that first tries the string the same
 * field of the last task got (slot: the field's DLQ_TS_* bit): failures
 * come in runs from one subject, with one rule, retry subject and error
 * type, so most lookups are one compare instead of a hash.
 */
static const char *
pool_get_recent(struct dlq_queue *q, const char *p, size_t len, unsigned slot)
{
    struct dlq_pstr *e = q->recent[slot];
    const char *s;

    if (e && e->len == len && memcmp(e->s, p, len) == 0 && e->refs < UINT32_MAX) {
        e->refs++;
        return e->s;
    }
    s = pool_get(q, p, len);
    q->recent[slot] = pstr_of(s);
    return s;
}

/* pool_get_text() is pool_get() for text: NUL bytes become spaces (as dlq_set_text()). */
static const char *
pool_get_text(struct dlq_queue *q, const char *p, size_t len)
{
    char *tmp;
    const char *r;

    if (!memchr(p, '\0', len))
        return pool_get(q, p, len);
    tmp = sc_xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        tmp[i] = p[i] ? p[i] : ' ';
    r = pool_get(q, tmp, len);
    free(tmp);
    return r;
}

static void origin_new(struct dlq_task *t, size_t len);
static void origin_trim(struct dlq_task *t);

static char **
task_field(struct dlq_task *t, unsigned which)
{
    switch (which) {
    case DLQ_TS_SUBJECT:
        return &t->subject;
    case DLQ_TS_RETRY_SUBJECT:
        return &t->retry_subject;
    case DLQ_TS_ERROR:
        return &t->error;
    case DLQ_TS_ERROR_TYPE:
        return &t->error_type;
    case DLQ_TS_BACKOFF: /* in the extras: NULL when t has none */
        return t->origin ? &t->origin->backoff : NULL;
    default:
        return &t->rule_id;
    }
}

void
dlq_task_set_str(struct dlq_queue *q, struct dlq_task *t, unsigned which, const char *p, size_t len)
{
    char **f;
    const char *v = NULL;

    if (which == DLQ_TS_BACKOFF && !t->origin) {
        if (!p)
            return; /* none, and none to drop */
        origin_new(t, 0);
    }
    f = task_field(t, which);
    if (p)
        v = which & (DLQ_TS_ERROR | DLQ_TS_ERROR_TYPE) && memchr(p, '\0', len)
                ? pool_get_text(q, p, len)
                : pool_get_recent(q, p, len, (unsigned)__builtin_ctz(which) & 7u);
    if (t->pooled & which)
        pool_put(q, *f);
    else
        free(*f);
    *f = (char *)v; /* pooled: never written through, released with pool_put() */
    if (v)
        t->pooled |= (uint8_t)which;
    else
        t->pooled &= (uint8_t)~which;
    if (which == DLQ_TS_BACKOFF && !v)
        origin_trim(t);
}

uint64_t
dlq_task_fingerprint(const struct dlq_task *t)
{
    uint64_t eh;

    if (t->error && (t->pooled & DLQ_TS_ERROR)) {
        struct dlq_pstr *e = pstr_of(t->error);
        if (!e->error_hashed) {
            e->error_hash = dlq_error_hash(e->s, e->len);
            e->error_hashed = true;
        }
        eh = e->error_hash;
    } else {
        eh = dlq_error_hash(t->error, t->error ? strlen(t->error) : 0);
    }
    return dlq_fingerprint_mix(t->subject, t->subject ? strlen(t->subject) : 0, eh);
}

bool
dlq_task_str_plain(const struct dlq_task *t, unsigned which, const char *s, size_t *len)
{
    struct dlq_pstr *e;
    const char *own = which == DLQ_TS_SUBJECT      ? t->subject
                      : which == DLQ_TS_ERROR      ? t->error
                      : which == DLQ_TS_ERROR_TYPE ? t->error_type
                      : which == DLQ_TS_RETRY_SUBJECT ? t->retry_subject
                      : which == DLQ_TS_RULE       ? t->rule_id
                                                   : NULL;

    if (!s) {
        *len = 0;
        return true;
    }
    if (!(t->pooled & which) || s != own) {
        *len = strlen(s);
        return sc_json_plain_len(s, *len) == *len;
    }
    e = pstr_of(s);
    *len = e->len;
    if (!e->json_plain)
        e->json_plain = sc_json_plain_len(e->s, e->len) == e->len ? 1 : 2;
    return e->json_plain == 1;
}

uint64_t
dlq_task_group(const struct dlq_task *t)
{
    return dlq_fingerprint_group(dlq_task_fingerprint(t), t->category);
}

/* The payload room of t: right after its id in the same allocation. */
static char *
inline_payload(struct dlq_task *t)
{
    return t->id + t->id_len + 1;
}

/*
 * A task's allocation is the struct, its first history entry (most tasks
 * never hold more than one or two: a separate ring would cost a malloc and
 * a 32-byte chunk per task), its id and its payload room, in that order.
 */
static struct dlq_attempt *
inline_hist(struct dlq_task *t)
{
    return (struct dlq_attempt *)(t + 1);
}

void
dlq_task_set_payload(struct dlq_task *t, const char *p, size_t len)
{
    if (t->payload != inline_payload(t))
        free(t->payload);
    if (len <= t->payload_room) {
        t->payload = inline_payload(t);
        memcpy(t->payload, p, len);
    } else {
        t->payload = sc_xmalloc(len ? len : 1);
        memcpy(t->payload, p, len);
    }
    t->payload_len = (uint32_t)len;
}

static void
task_free(struct dlq_queue *q, struct dlq_task *t)
{
    for (unsigned i = 0; i < t->hist_len; i++)
        pool_put(q, t->hist[(t->hist_head + i) % t->hist_alloc].error);
    if (t->hist != inline_hist(t))
        free(t->hist);
    for (unsigned which = DLQ_TS_SUBJECT; which <= DLQ_TS_BACKOFF; which <<= 1) {
        char **f = task_field(t, which);
        if (!f)
            continue;
        if (t->pooled & which)
            pool_put(q, *f);
        else
            free(*f);
    }
    if (t->payload != inline_payload(t))
        free(t->payload);
    if (t->origin) {
        free(t->origin->orig_payload);
        dlq_deps_free(t->origin->deps);
    }
    free(t->park_reason);
    free(t->metadata);
    free(t->repos);
    free(t->origin);
    free(t);
}

void
dlq_queue_destroy(struct dlq_queue *q)
{
    struct sc_list *it, *tmp;

    SC_LIST_FOREACH_SAFE(it, tmp, &q->order)
        task_free(q, SC_LIST_ENTRY(it, struct dlq_task, order));
    free(q->tags);
    free(q->slots);
    for (size_t i = 0; i < q->npool; i++) {
        struct dlq_pstr *e = q->pool[i], *enext;
        for (; e; e = enext) {
            enext = e->next;
            free(e);
        }
    }
    free(q->pool);
    memset(q, 0, sizeof(*q));
}

static bool
status_active(unsigned s)
{
    return s == DLQ_TASK_PENDING || s == DLQ_TASK_RETRYING || s == DLQ_TASK_EXHAUSTED;
}

/* count_in()/count_out() add t to and take it out of the per-status, category and policy counts. */
static void
count_in(struct dlq_queue *q, const struct dlq_task *t)
{
    q->counts[t->status]++;
    q->by_status_cat[t->status][t->category]++;
    if (t->parked) {
        q->parked++;
        q->parked_cat[t->category]++;
    }
    if (status_active(t->status))
        q->active_policy[t->policy]++;
}

static void
count_out(struct dlq_queue *q, const struct dlq_task *t)
{
    q->counts[t->status]--;
    q->by_status_cat[t->status][t->category]--;
    if (t->parked) {
        q->parked--;
        q->parked_cat[t->category]--;
    }
    if (status_active(t->status))
        q->active_policy[t->policy]--;
}

/* The tag of hash h: never 0 (0 marks an empty slot). */
static inline uint8_t
id_tag(uint32_t h)
{
    return (uint8_t)(0x80 | (h >> 25));
}

uint32_t
dlq_queue_id_hash(const char *id, size_t len)
{
    return id_hash(id, len);
}

void
dlq_queue_prefetch(const struct dlq_queue *q, uint32_t h)
{
    size_t i = h & (q->nslots - 1);

    __builtin_prefetch(&q->tags[i]);
    __builtin_prefetch(&q->slots[i]);
}

struct dlq_task *
dlq_queue_find(struct dlq_queue *q, const char *id, size_t len)
{
    return dlq_queue_find_hashed(q, id, len, id_hash(id, len));
}

struct dlq_task *
dlq_queue_find_hashed(struct dlq_queue *q, const char *id, size_t len, uint32_t h)
{
    uint8_t tag = id_tag(h);
    size_t mask = q->nslots - 1;

    for (size_t i = h & mask; q->tags[i]; i = (i + 1) & mask) {
        struct dlq_task *t = q->slots[i];
        if (q->tags[i] == tag && t->hash == h && t->id_len == len && memcmp(t->id, id, len) == 0)
            return t;
    }
    return NULL;
}

/* Puts t in the first empty slot of its probe run; the table has one (it is at most half full). */
static void
slot_put(uint8_t *tags, struct dlq_task **slots, size_t mask, struct dlq_task *t)
{
    size_t i = t->hash & mask;

    while (tags[i])
        i = (i + 1) & mask;
    tags[i] = id_tag(t->hash);
    slots[i] = t;
}

static void
grow(struct dlq_queue *q)
{
    size_t n = q->nslots * 2;
    uint8_t *tags = sc_xcalloc(n, 1);
    struct dlq_task **slots = sc_xcalloc(n, sizeof(*slots));

    for (size_t i = 0; i < q->nslots; i++)
        if (q->tags[i])
            slot_put(tags, slots, n - 1, q->slots[i]);
    free(q->tags);
    free(q->slots);
    q->tags = tags;
    q->slots = slots;
    q->nslots = n;
}

/*
 * Takes t out of the id table: empties its slot, then moves back each later
 * task of the run whose home slot does not lie between the hole and it, so
 * every task stays reachable from its home without tombstones.
 */
static void
slot_delete(struct dlq_queue *q, const struct dlq_task *t)
{
    size_t mask = q->nslots - 1, hole = t->hash & mask, j;

    while (q->tags[hole] && q->slots[hole] != t)
        hole = (hole + 1) & mask;
    if (!q->tags[hole])
        return; /* not in the table */
    for (j = (hole + 1) & mask; q->tags[j]; j = (j + 1) & mask) {
        size_t home = q->slots[j]->hash & mask;
        /* j's task may fill the hole when its home is not in (hole, j] (cyclically). */
        bool stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
        if (!stays) {
            q->tags[hole] = q->tags[j];
            q->slots[hole] = q->slots[j];
            hole = j;
        }
    }
    q->tags[hole] = 0;
    q->slots[hole] = NULL;
}

struct dlq_task *
dlq_queue_add_room(struct dlq_queue *q, const char *id, size_t len, size_t room, int64_t now_wall)
{
    return dlq_queue_add_hashed(q, id, len, id_hash(id, len), room, now_wall);
}

struct dlq_task *
dlq_queue_add_hashed(struct dlq_queue *q, const char *id, size_t len, uint32_t h, size_t room,
                     int64_t now_wall)
{
    struct dlq_task *t = sc_xmalloc(sizeof(*t) + sizeof(struct dlq_attempt) + len + 1 + room);

    memset(t, 0, sizeof(*t));
    dlq_wheel_entry_init(&t->timer);
    t->hist = inline_hist(t);
    t->hist_alloc = 1;
    t->id = (char *)(t->hist + 1);
    memcpy(t->id, id, len);
    t->id[len] = '\0';
    t->id_len = (uint32_t)len;
    t->payload_room = (uint32_t)room;
    t->hash = h;
    t->seq = q->next_seq++;
    t->version = 1;
    t->status = DLQ_TASK_PENDING;
    t->created_at = now_wall;
    t->updated_at = now_wall;
    t->episode = 1;
    t->priority = POLICY_PRIO_NORMAL;
    dlq_queue_new_episode(q, t, now_wall);
    if ((q->count + 1) * 2 > q->nslots)
        grow(q);
    slot_put(q->tags, q->slots, q->nslots - 1, t);
    sc_list_init(&t->dirty);
    sc_list_push_back(&q->order, &t->order);
    q->count++;
    count_in(q, t);
    return t;
}

struct dlq_task *
dlq_queue_add(struct dlq_queue *q, const char *id, size_t len, int64_t now_wall)
{
    return dlq_queue_add_room(q, id, len, 0, now_wall);
}

void
dlq_queue_new_episode(struct dlq_queue *q, struct dlq_task *t, int64_t now_wall)
{
    int64_t id = now_wall > 0 && now_wall < INT64_MAX / 1000 ? now_wall * 1000 : 0;

    if (id <= q->last_episode_id)
        id = q->last_episode_id + 1;
    q->last_episode_id = id;
    t->episode_id = id;
}

void
dlq_queue_episode_seen(struct dlq_queue *q, int64_t episode_id)
{
    if (episode_id > q->last_episode_id)
        q->last_episode_id = episode_id;
}

void
dlq_queue_remove(struct dlq_queue *q, struct dlq_task *t)
{
    slot_delete(q, t);
    sc_list_remove(&t->order);
    q->count--;
    q->bytes -= t->bytes;
    count_out(q, t);
    task_free(q, t);
}

void
dlq_queue_set_status(struct dlq_queue *q, struct dlq_task *t, dlq_task_status s, bool parked)
{
    parked = parked && s == DLQ_TASK_PENDING;
    count_out(q, t);
    t->status = (uint8_t)s;
    t->parked = parked;
    count_in(q, t);
    if (!parked) {
        free(t->park_reason);
        t->park_reason = NULL;
    }
}

void
dlq_queue_set_class(struct dlq_queue *q, struct dlq_task *t, policy_category c, policy_retry p)
{
    if (t->category == c && t->policy == p)
        return;
    count_out(q, t);
    t->category = (uint8_t)c;
    t->policy = (uint8_t)p;
    count_in(q, t);
}

bool
dlq_queue_filter_count(const struct dlq_queue *q, const struct dlq_filter *f, size_t *n)
{
    size_t x = 0;

    if (f->subject || f->older_than_ms > 0 || f->group || f->error || f->error_type || f->id_prefix)
        return false;
    if (f->want_parked == 1) {
        if (f->status >= 0 && f->status != DLQ_TASK_PENDING)
            x = 0;
        else
            x = f->category >= 0 ? q->parked_cat[f->category] : q->parked;
    } else if (f->want_parked == 0) {
        return false;
    } else if (f->status >= 0) {
        x = f->category >= 0 ? q->by_status_cat[f->status][f->category] : q->counts[f->status];
    } else if (f->category >= 0) {
        for (int s = 0; s < DLQ_TASK_STATUS_COUNT; s++)
            x += q->by_status_cat[s][f->category];
    } else {
        x = q->count;
    }
    *n = x;
    return true;
}

size_t
dlq_queue_active_category(const struct dlq_queue *q, policy_category c)
{
    return q->by_status_cat[DLQ_TASK_PENDING][c] + q->by_status_cat[DLQ_TASK_RETRYING][c] +
           q->by_status_cat[DLQ_TASK_EXHAUSTED][c];
}

void
dlq_queue_history(struct dlq_queue *q, struct dlq_task *t, dlq_outcome_kind k, int32_t attempt,
                 int64_t at, const char *error, size_t error_len)
{
    struct dlq_attempt *a;

    /*
     * Grow 1, 2, 4 ... up to the cap: most tasks never hold more than a few
     * entries. Until the ring reaches the cap it never wraps (hist_head stays
     * 0), so readers may index it modulo the cap either way.
     */
    if (t->hist_len == t->hist_alloc && t->hist_alloc < q->hist_cap) {
        size_t n = t->hist_alloc ? (size_t)t->hist_alloc * 2 : 1;
        if (n > q->hist_cap)
            n = q->hist_cap;
        if (t->hist == inline_hist(t)) { /* the first entry moves out of the task's allocation */
            struct dlq_attempt *ring = sc_xmalloc(n * sizeof(*ring));
            memcpy(ring, t->hist, (size_t)t->hist_len * sizeof(*ring));
            t->hist = ring;
        } else {
            t->hist = sc_xrealloc(t->hist, n * sizeof(*t->hist));
        }
        t->hist_alloc = (uint16_t)n;
    }
    if (t->hist_len < t->hist_alloc) {
        a = &t->hist[(t->hist_head + t->hist_len) % t->hist_alloc];
        t->hist_len++;
    } else {
        a = &t->hist[t->hist_head];
        t->hist_head = (uint16_t)((t->hist_head + 1) % t->hist_alloc);
        pool_put(q, a->error);
    }
    a->at_ms = at;
    a->attempt = attempt;
    a->outcome = (uint8_t)k;
    if (error && error == t->error && (t->pooled & DLQ_TS_ERROR) && error_len == pstr_of(error)->len &&
        pstr_of(error)->refs < UINT32_MAX) {
        pstr_of(error)->refs++; /* the task's own pooled error (the usual entry): no hash, no lookup */
        a->error = error;
    } else {
        a->error = error ? pool_get_text(q, error, error_len) : NULL;
    }
}

size_t
dlq_queue_active(const struct dlq_queue *q)
{
    return q->counts[DLQ_TASK_PENDING] + q->counts[DLQ_TASK_RETRYING] + q->counts[DLQ_TASK_EXHAUSTED];
}

void
dlq_set_str(char **field, const char *p, size_t len)
{
    free(*field);
    *field = p ? sc_xstrndup(p, len) : NULL;
}

void
dlq_set_text(char **field, const char *p, size_t len)
{
    dlq_set_str(field, p, len);
    if (*field)
        for (size_t i = 0; i < len; i++)
            if ((*field)[i] == '\0')
                (*field)[i] = ' ';
}

/* origin_new() gives t an empty origin with room for len header bytes (t has none). */
static void
origin_new(struct dlq_task *t, size_t len)
{
    t->origin = sc_xmalloc(sizeof(*t->origin) + (len ? len : 1));
    t->origin->adv_seq = 0;
    t->origin->deps = NULL;
    t->origin->backoff = NULL;
    t->origin->orig_payload = NULL;
    t->origin->orig_payload_len = 0;
    t->origin->orig_payload_raw = false;
    t->origin->headers_len = 0;
}

/* origin_trim() frees t's origin when nothing is left in it. */
static void
origin_trim(struct dlq_task *t)
{
    struct dlq_origin *o = t->origin;

    if (o && !o->adv_seq && !o->backoff && !o->orig_payload && !o->headers_len && !o->deps) {
        free(o);
        t->origin = NULL;
    }
}

/* Resizes t's origin to hold len header bytes (freed when nothing is left in it). */
static void
origin_resize(struct dlq_task *t, uint64_t adv_seq, const char *p, size_t len)
{
    if (!t->origin) {
        if (!len && !adv_seq)
            return;
        origin_new(t, len);
    } else if (t->origin->headers_len != len) {
        t->origin = sc_xrealloc(t->origin, sizeof(*t->origin) + (len ? len : 1));
    }
    t->origin->adv_seq = adv_seq;
    t->origin->headers_len = len;
    if (len && p != t->origin->headers)
        memmove(t->origin->headers, p, len);
    origin_trim(t);
}

void
dlq_task_set_headers(struct dlq_task *t, const char *p, size_t len)
{
    origin_resize(t, dlq_task_adv_seq(t), p, p ? len : 0);
}

void
dlq_task_set_adv_seq(struct dlq_task *t, uint64_t seq)
{
    size_t len = t->origin ? t->origin->headers_len : 0;

    origin_resize(t, seq, len ? t->origin->headers : NULL, len); /* same size: kept in place */
}

const char *
dlq_task_headers(const struct dlq_task *t, size_t *len)
{
    *len = t->origin ? t->origin->headers_len : 0;
    return *len ? t->origin->headers : NULL;
}

uint64_t
dlq_task_adv_seq(const struct dlq_task *t)
{
    return t->origin ? t->origin->adv_seq : 0;
}

void
dlq_task_set_orig_payload(struct dlq_task *t, const char *p, size_t len, bool raw)
{
    if (t->origin) {
        free(t->origin->orig_payload);
        t->origin->orig_payload = NULL;
        t->origin->orig_payload_len = 0;
    }
    if (!p) {
        origin_trim(t);
        return;
    }
    if (!t->origin)
        origin_new(t, 0);
    t->origin->orig_payload = sc_xmalloc(len ? len : 1);
    memcpy(t->origin->orig_payload, p, len);
    t->origin->orig_payload_len = (uint32_t)len;
    t->origin->orig_payload_raw = raw;
}

const char *
dlq_task_orig_payload(const struct dlq_task *t, uint32_t *len, bool *raw)
{
    const char *p = t->origin ? t->origin->orig_payload : NULL;

    *len = p ? t->origin->orig_payload_len : 0;
    *raw = p && t->origin->orig_payload_raw;
    return p;
}

/* The length of t's field s (its DLQ_TS_* which): a pooled string's is kept with it. */
static size_t
field_len(const struct dlq_task *t, unsigned which, const char *s)
{
    return !s ? 0 : (t->pooled & which) ? pstr_of(s)->len : strlen(s);
}

void
dlq_task_account(struct dlq_queue *q, struct dlq_task *t)
{
    size_t b = sizeof(*t) + t->id_len + t->payload_len + t->metadata_len +
               t->repos_len +
               (t->origin ? sizeof(*t->origin) + t->origin->headers_len + t->origin->orig_payload_len : 0);

    b += field_len(t, DLQ_TS_ERROR, t->error);
    b += field_len(t, DLQ_TS_ERROR_TYPE, t->error_type);
    b += field_len(t, DLQ_TS_SUBJECT, t->subject);
    b += field_len(t, DLQ_TS_RETRY_SUBJECT, t->retry_subject);
    q->bytes = q->bytes - t->bytes + b;
    t->bytes = (uint32_t)b;
}

bool
dlq_filter_match(const struct dlq_filter *f, const struct dlq_task *t, int64_t now_wall)
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
    if (f->id_prefix && (strlen(f->id_prefix) > t->id_len ||
                         memcmp(t->id, f->id_prefix, strlen(f->id_prefix)) != 0))
        return false;
    if (f->error_type && (!t->error_type || strcmp(t->error_type, f->error_type) != 0))
        return false;
    if (f->error && *f->error && (!t->error || !strstr(t->error, f->error)))
        return false;
    if (f->group && dlq_task_group(t) != f->group) /* last: it hashes the subject */
        return false;
    return true;
}

void
dlq_task_set_deps(struct dlq_task *t, struct dlq_deps *d)
{
    if (t->origin) {
        dlq_deps_free(t->origin->deps);
        t->origin->deps = NULL;
    }
    if (!d) {
        origin_trim(t);
        return;
    }
    if (!t->origin)
        origin_new(t, 0);
    t->origin->deps = d;
}

struct dlq_deps *
dlq_deps_new(const struct codec_str *ids, uint32_t n)
{
    struct dlq_deps *d = sc_xmalloc(sizeof(*d) + n * sizeof(d->e[0]));

    d->n = n;
    d->waiting = 0;
    for (uint32_t i = 0; i < n; i++) {
        d->e[i].id = sc_xmalloc(ids[i].len + 1);
        memcpy(d->e[i].id, ids[i].ptr, ids[i].len);
        d->e[i].id[ids[i].len] = '\0';
        d->e[i].len = (uint32_t)ids[i].len;
        d->e[i].waiting = false;
    }
    return d;
}

void
dlq_deps_free(struct dlq_deps *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < d->n; i++)
        free(d->e[i].id);
    free(d);
}
