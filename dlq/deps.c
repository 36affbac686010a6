/* deps.c - task dependencies (issue 17): held tasks, the index of what they wait for, cycles, release and parking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq-internal.h"

/*
 * The index: a chained hash from a dependency's id to the held tasks that
 * wait for it. It exists once a task first waits (m->deps_ix), so a task
 * without depends_on, and every transition of a table where none waits,
 * pays one NULL or zero test.
 */
struct dep_entry {
    struct dep_entry *next;
    uint64_t h;
    char *id; /* owned, NUL-terminated */
    uint32_t len;
    uint32_t n, cap;
    struct dlq_task **v; /* the tasks waiting for id */
};

struct dlq_dep_index {
    struct dep_entry **b;
    size_t nb;      /* a power of 2 */
    size_t entries; /* ids waited for */
    size_t held;    /* tasks held */
};

/* The most tasks a cycle search visits; a longer chain of waits is refused as too long. */
#define DEPS_WALK_MAX 4096

static uint64_t
id_hash(const char *id, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)id[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static struct dep_entry **
ix_slot(struct dlq_dep_index *ix, const char *id, size_t len, uint64_t h)
{
    struct dep_entry **p = &ix->b[h & (ix->nb - 1)];

    while (*p && !((*p)->h == h && (*p)->len == len && memcmp((*p)->id, id, len) == 0))
        p = &(*p)->next;
    return p;
}

static void
ix_grow(struct dlq_dep_index *ix)
{
    size_t nb = ix->nb * 2;
    struct dep_entry **b = sc_xcalloc(nb, sizeof(*b));

    for (size_t i = 0; i < ix->nb; i++) {
        struct dep_entry *e = ix->b[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = b[e->h & (nb - 1)];
            b[e->h & (nb - 1)] = e;
        }
    }
    free(ix->b);
    ix->b = b;
    ix->nb = nb;
}

/* Files t under dep's id (one of the ids it waits for); dep->slot says where. */
static void
ix_add(struct dlq_machine *m, struct dlq_dep *dep, struct dlq_task *t)
{
    struct dlq_dep_index *ix = m->deps_ix;
    const char *id = dep->id;
    size_t len = dep->len;
    uint64_t h = id_hash(id, len);
    struct dep_entry **p, *e;

    if (!ix) {
        ix = m->deps_ix = sc_xcalloc(1, sizeof(*ix));
        ix->nb = 64;
        ix->b = sc_xcalloc(ix->nb, sizeof(*ix->b));
    }
    p = ix_slot(ix, id, len, h);
    if (!*p) {
        e = sc_xcalloc(1, sizeof(*e));
        e->h = h;
        e->len = (uint32_t)len;
        e->id = sc_xmalloc(len + 1);
        memcpy(e->id, id, len);
        e->id[len] = '\0';
        *p = e;
        if (++ix->entries > ix->nb)
            ix_grow(ix);
        p = ix_slot(ix, id, len, h);
    }
    e = *p;
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 2;
        e->v = sc_xrealloc(e->v, e->cap * sizeof(*e->v));
    }
    dep->slot = e->n;
    e->v[e->n++] = t;
}

static void
entry_free(struct dep_entry *e)
{
    free(e->id);
    free(e->v);
    free(e);
}

/* Takes the entry of id out of the index (NULL when none waits for id); the caller frees it. */
static struct dep_entry *
ix_take(struct dlq_machine *m, const char *id, size_t len)
{
    struct dlq_dep_index *ix = m->deps_ix;
    struct dep_entry **p, *e;

    if (!ix || !ix->entries)
        return NULL;
    p = ix_slot(ix, id, len, id_hash(id, len));
    if (!(e = *p))
        return NULL;
    *p = e->next;
    ix->entries--;
    return e;
}

/*
 * Unfiles t from under dep's id: at dep->slot, the last of the list moved
 * into its place (and told so). A scan of the list instead made clearing
 * many dependents of one id quadratic (red team: 50,000 took 6 s under
 * ASan, a million would take most of an hour).
 */
static void
ix_del(struct dlq_machine *m, const struct dlq_dep *dep, struct dlq_task *t)
{
    struct dlq_dep_index *ix = m->deps_ix;
    struct dep_entry **p, *e;
    uint32_t i = dep->slot;

    if (!ix)
        return;
    p = ix_slot(ix, dep->id, dep->len, id_hash(dep->id, dep->len));
    if (!(e = *p))
        return;
    if (i >= e->n || e->v[i] != t)
        for (i = 0; i < e->n && e->v[i] != t; i++)
            ;
    if (i < e->n) {
        struct dlq_task *moved = e->v[--e->n];
        struct dlq_deps *md = dlq_task_deps(moved);
        e->v[i] = moved;
        for (uint32_t k = 0; moved != t && md && k < md->n; k++)
            if (md->e[k].waiting && md->e[k].slot == e->n && md->e[k].len == dep->len &&
                memcmp(md->e[k].id, dep->id, dep->len) == 0) {
                md->e[k].slot = i;
                break;
            }
    }
    if (e->n == 0) {
        *p = e->next;
        ix->entries--;
        entry_free(e);
    }
}

/* The first id t still waits for (t held). */
static const struct dlq_dep *
first_waiting(const struct dlq_deps *d)
{
    for (uint32_t i = 0; i < d->n; i++)
        if (d->e[i].waiting)
            return &d->e[i];
    return NULL;
}

void
dlq_deps_reason(struct dlq_task *t)
{
    const struct dlq_dep *w = first_waiting(dlq_task_deps(t));
    char why[64 + DLQ_RETRY_ID_MAX];
    int n = snprintf(why, sizeof(why), "waiting for %s", w ? w->id : "?");

    dlq_set_str(&t->park_reason, why, (size_t)n < sizeof(why) ? (size_t)n : sizeof(why) - 1);
}

void
dlq_deps_unhold(struct dlq_machine *m, struct dlq_task *t)
{
    struct dlq_deps *d = dlq_task_deps(t);

    if (!d || !d->waiting)
        return;
    for (uint32_t i = 0; i < d->n; i++)
        if (d->e[i].waiting) {
            ix_del(m, &d->e[i], t);
            d->e[i].waiting = false;
        }
    d->waiting = 0;
    if (m->deps_ix)
        m->deps_ix->held--;
    free(t->park_reason);
    t->park_reason = NULL;
}

/* Takes t off its due wheel and files it in the index under each id it still waits for. */
static void
index_held(struct dlq_machine *m, struct dlq_task *t, struct dlq_deps *d)
{
    if (dlq_wheel_entry_scheduled(&t->timer))
        dlq_wheel_cancel(m->wheels[t->priority % POLICY_PRIO_COUNT], &t->timer);
    for (uint32_t i = 0; i < d->n; i++)
        if (d->e[i].waiting)
            ix_add(m, &d->e[i], t);
    m->deps_ix->held++;
}

void
dlq_deps_hold(struct dlq_machine *m, struct dlq_task *t)
{
    struct dlq_deps *d = dlq_task_deps(t);

    index_held(m, t, d);
    dlq_deps_reason(t);
    m->ports.changed(m->ports.ctx, t);
}

int
dlq_deps_state(struct dlq_machine *m, const char *id, size_t len, const char **kind)
{
    const struct dlq_task *d = dlq_queue_find(&m->q, id, len);

    if (!d || d->status == DLQ_TASK_COMPLETED)
        return 0; /* unknown: never failed here (README "Dependencies") */
    if (d->status == DLQ_TASK_EXHAUSTED || d->status == DLQ_TASK_ARCHIVED) {
        *kind = dlq_task_status_name((dlq_task_status)d->status);
        return -1;
    }
    return 1;
}

struct dlq_task **
dlq_deps_take(struct dlq_machine *m, const char *id, size_t len, size_t *n)
{
    struct dep_entry *e = ix_take(m, id, len);
    struct dlq_task **v;

    *n = 0;
    if (!e)
        return NULL;
    for (uint32_t i = 0; i < e->n; i++) {
        struct dlq_deps *d = dlq_task_deps(e->v[i]);
        for (uint32_t k = 0; d && k < d->n; k++)
            if (d->e[k].waiting && d->e[k].len == len && memcmp(d->e[k].id, id, len) == 0) {
                d->e[k].waiting = false;
                if (--d->waiting == 0)
                    m->deps_ix->held--; /* its last entry is e, out of the index */
            }
    }
    v = e->v;
    *n = e->n;
    e->v = NULL;
    entry_free(e);
    return v;
}

size_t
dlq_deps_resolvable(struct dlq_machine *m, char ***ids, const char ***kinds)
{
    struct dlq_dep_index *ix = m->deps_ix;
    size_t n = 0;

    *ids = NULL;
    *kinds = NULL;
    if (!ix || !ix->entries)
        return 0;
    *ids = sc_xmalloc(ix->entries * sizeof(**ids));
    *kinds = sc_xmalloc(ix->entries * sizeof(**kinds));
    for (size_t b = 0; b < ix->nb; b++)
        for (struct dep_entry *e = ix->b[b]; e; e = e->next) {
            const char *kind = NULL;
            if (dlq_deps_state(m, e->id, e->len, &kind) == 1)
                continue;
            (*ids)[n] = sc_xmalloc(e->len + 1);
            memcpy((*ids)[n], e->id, e->len + 1);
            (*kinds)[n++] = kind;
        }
    return n;
}

size_t
dlq_machine_deps_waiting(const struct dlq_machine *m)
{
    return m->deps_ix ? m->deps_ix->held : 0;
}

/* Slots of the cycle search's set of tasks seen: a power of 2 past twice DEPS_WALK_MAX. */
#define DEPS_SET_SLOTS 16384

/*
 * Adds t to the open-addressed set of DEPS_SET_SLOTS slots; false when it
 * is there already. A set, not a scan of the tasks seen: a wide graph of
 * held tasks (each waiting for 32 others) made every walk 4,096 x 32 scans
 * of up to 4,096 (red team: 0.5 s of one core per envelope).
 */
static bool
seen_add(const struct dlq_task **set, const struct dlq_task *t)
{
    size_t i = (size_t)(((uintptr_t)t >> 4) * 0x9E3779B97F4A7C15ULL >> 32) & (DEPS_SET_SLOTS - 1);

    while (set[i]) {
        if (set[i] == t)
            return false;
        i = (i + 1) & (DEPS_SET_SLOTS - 1);
    }
    set[i] = t;
    return true;
}

/*
 * Whether a task of id (len bytes) that waits for the ids of env closes a
 * cycle: a breadth-first walk from those ids through held tasks' waits.
 * On a cycle, writes it into why ("a -> b -> a") and returns true; a walk
 * past DEPS_WALK_MAX tasks also refuses (why says so).
 */
static bool
find_cycle(struct dlq_machine *m, const struct codec_envelope *env, char *why, size_t whylen)
{
    const char *self = env->task_id.ptr;
    size_t self_len = env->task_id.len;
    struct dlq_task **seen = sc_xmalloc(DEPS_WALK_MAX * sizeof(*seen));
    int *parent = sc_xmalloc(DEPS_WALK_MAX * sizeof(*parent));
    const struct dlq_task **set = sc_xcalloc(DEPS_SET_SLOTS, sizeof(*set));
    size_t n = 0, head = 0;
    bool found = false;

    for (uint32_t i = 0; i < env->depends_n && n < DEPS_WALK_MAX; i++) {
        struct dlq_task *d = dlq_queue_find(&m->q, env->depends_on[i].ptr, env->depends_on[i].len);
        if (d && dlq_task_held(d) && seen_add(set, d)) {
            seen[n] = d;
            parent[n++] = -1;
        }
    }
    while (head < n && !found) {
        struct dlq_task *t = seen[head];
        const struct dlq_deps *d = dlq_task_deps(t);
        for (uint32_t k = 0; k < d->n && !found; k++) {
            struct dlq_task *w;
            bool dup = false;
            if (!d->e[k].waiting)
                continue;
            if (d->e[k].len == self_len && memcmp(d->e[k].id, self, self_len) == 0) {
                /* self -> seen[root] ... -> t -> self, written from the root down. */
                int chain[64], c = 0;
                size_t o;
                for (int j = (int)head; j >= 0 && c < 64; j = parent[j])
                    chain[c++] = j;
                o = (size_t)snprintf(why, whylen, "depends_on: cycle %.*s", (int)(self_len > 128 ? 128 : self_len), self);
                for (int j = c - 1; j >= 0 && o < whylen; j--)
                    o += (size_t)snprintf(why + o, whylen - o, " -> %s", seen[chain[j]]->id);
                if (o < whylen)
                    snprintf(why + o, whylen - o, " -> %.*s", (int)(self_len > 128 ? 128 : self_len), self);
                found = true;
                break;
            }
            w = dlq_queue_find(&m->q, d->e[k].id, d->e[k].len);
            if (!w || !dlq_task_held(w))
                continue;
            dup = !seen_add(set, w);
            if (dup)
                continue;
            if (n == DEPS_WALK_MAX) {
                snprintf(why, whylen, "depends_on: the chain of waiting tasks passes %d; refused",
                         DEPS_WALK_MAX);
                found = true;
                break;
            }
            seen[n] = w;
            parent[n++] = (int)head;
        }
        head++;
    }
    free(seen);
    free(parent);
    free(set);
    return found;
}

bool
dlq_deps_admit(struct dlq_machine *m, const struct codec_envelope *env, struct dlq_decision *out)
{
    if (!env->depends_n)
        return true;
    if (m->cfg->cluster_enabled) {
        uint32_t parts = (uint32_t)m->cfg->cluster_partitions;
        uint32_t own = dlq_partition_of(env->task_id.ptr, env->task_id.len, parts);
        for (uint32_t i = 0; i < env->depends_n; i++) {
            uint32_t p = dlq_partition_of(env->depends_on[i].ptr, env->depends_on[i].len, parts);
            if (p == own)
                continue;
            out->verdict = DLQ_IN_INVALID;
            out->reason = "bad_depends_on";
            snprintf(out->why, sizeof(out->why),
                     "depends_on[%u]: '%.*s' is in cluster partition %u, the task in %u: in cluster "
                     "mode a task may depend only on tasks of its own partition",
                     i, (int)(env->depends_on[i].len > 64 ? 64 : env->depends_on[i].len),
                     env->depends_on[i].ptr, p, own);
            return false;
        }
    }
    if (m->deps_ix && m->deps_ix->held && find_cycle(m, env, out->why, sizeof(out->why))) {
        out->verdict = DLQ_IN_INVALID;
        out->reason = "dependency_cycle";
        return false;
    }
    return true;
}

void
dlq_deps_restored(struct dlq_machine *m, struct dlq_task *t)
{
    struct dlq_deps *d = dlq_task_deps(t);

    if (!d || !d->waiting)
        return;
    if (t->status != DLQ_TASK_PENDING || t->parked) {
        for (uint32_t i = 0; i < d->n; i++)
            d->e[i].waiting = false;
        d->waiting = 0;
        return;
    }
    index_held(m, t, d);
    if (!t->park_reason)
        dlq_deps_reason(t);
}

void
dlq_deps_destroy(struct dlq_machine *m)
{
    struct dlq_dep_index *ix = m->deps_ix;

    if (!ix)
        return;
    for (size_t b = 0; b < ix->nb; b++) {
        struct dep_entry *e = ix->b[b], *next;
        for (; e; e = next) {
            next = e->next;
            entry_free(e);
        }
    }
    free(ix->b);
    free(ix);
    m->deps_ix = NULL;
}
