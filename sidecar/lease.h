/* lease.h - the cluster's lease planner: from the members seen, the lease table and what this member holds, the actions to take now (pure: no NATS, no libevent, clock passed in). */
#ifndef DLQ_SIDECAR_LEASE_H
#define DLQ_SIDECAR_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The protocol (docs/cluster.md): partition p has one owner at a time, the
 * member whose id the key lease.<p> of the cluster bucket holds. The
 * desired owner of p comes from the sticky assignment (sc_lease_assign()),
 * or is sorted(live member ids)[p mod n] without one. A member renews
 * what it holds; gives back (once its owner quiesced it) what it holds that
 * another live member desires and says it wants (the "wants" of its member
 * record: the partitions it desires and does not hold); acquires the free
 * partitions it desires; and acquires any partition seen free for longer
 * than lease_ms whatever it desires (so that no partition stays ownerless
 * while views differ). Without the "wants" condition an orphan taken by a
 * member that does not desire it would be given back at its next renewal
 * while the member that desires it does not take it (a member whose view
 * differs, or one that runs but cannot write): free for lease_ms, taken,
 * given back, again and again.
 *
 * Validity: a create or update of lease.<p> sent at monotonic time t0 that
 * succeeds makes p valid here until t0 + lease_ms - guard. The server ages
 * the key out lease_ms after it stored it, which is after t0, so this member
 * stops before anyone else can acquire. sc_lease_plan() reports LOST for a
 * held partition once now reaches valid_until, answer or none.
 *
 * The layouts below are public because the driver (cluster.c) embeds the
 * table and fills it; only lease.c and cluster.c touch the fields.
 */

#define SC_LEASE_MAX_PARTITIONS 4096 /* cluster.partitions' upper bound */
#define SC_LEASE_MAX_MEMBERS 256     /* live members considered; more are ignored (logged) */
#define SC_LEASE_ID_MAX 64           /* bytes of a member id */

/* What the planner asks for one partition (a bit set). */
typedef enum {
    SC_LEASE_NONE = 0,
    SC_LEASE_ACQUIRE = 1 << 0, /* create lease.<p> (free, and desired here or orphaned) */
    SC_LEASE_RENEW = 1 << 1,   /* update lease.<p> with the expected revision */
    SC_LEASE_RELEASE = 1 << 2, /* another live member desires it: quiesce, then delete */
    SC_LEASE_LOST = 1 << 3,    /* held, and now >= valid_until: stop at once */
} sc_lease_action;

/* One partition: what the last read of the bucket showed, and what this member holds. */
struct sc_lease_slot {
    /* the view */
    char owner[SC_LEASE_ID_MAX + 1]; /* the id lease.<p> holds; "" when free (absent or deleted) */
    uint64_t view_rev;               /* the key's revision in the view (0 when absent) */
    int64_t free_since;              /* mono ms since the key is seen free without a break; -1 when owned */
    /* this member's hold */
    bool held;                       /* this member owns the lease */
    uint64_t revision;               /* the lease revision of the last create/update answered OK */
    int64_t valid_until;             /* mono ms: dispatching stops here (held only) */
    int64_t held_since;              /* mono ms the hold began (held only) */
    int64_t unanswered_t0;           /* mono ms the earliest create/update without an answer was sent; -1 none */
};

/*
 * A live member as the last read of the bucket showed it: its id and the
 * partitions it wants (a bitmap of the table's partitions, bit p at
 * wants[p / 8] & (1 << p % 8); NULL: none). Both borrowed.
 */
struct sc_lease_member {
    const char *id;
    const uint8_t *wants;
};

/*
 * The table the planner reads: me, the live members (members[0..nmembers),
 * sorted by id and unique, me included; the driver keeps them so with
 * sc_lease_members_sort()), the slots (partitions of them) and the lease.
 */
struct sc_lease_table {
    const char *me;
    const struct sc_lease_member *members;
    size_t nmembers;
    struct sc_lease_slot *slots;
    size_t partitions;
    int64_t lease_ms;
    /*
     * partitions entries the planner fills with the sticky assignment
     * (sc_lease_assign()) at every sc_lease_plan() and sc_lease_wants();
     * NULL: the plain one, members[p mod n].
     */
    long *assign;
};

/* sc_lease_guard_ms() is the safety margin: lease_ms / 5. Pure. */
int64_t sc_lease_guard_ms(int64_t lease_ms);

/* sc_lease_slot_init() sets s to "free since now, not held" (no view yet: free_since = now). Pure. */
void sc_lease_slot_init(struct sc_lease_slot *s, int64_t now);

/*
 * sc_lease_members_sort() sorts m[0..*n) by id (strcmp) and drops repeats
 * (the first of equal ids stays), updating *n. Pure.
 */
void sc_lease_members_sort(struct sc_lease_member *m, size_t *n);

/* SC_LEASE_WANTS_BYTES(p) is the size of a wants bitmap of p partitions. */
#define SC_LEASE_WANTS_BYTES(p) (((p) + 7) / 8)

/* sc_lease_bit() reads bit p of a wants bitmap (false for NULL); sc_lease_set_bit() sets it. Pure. */
bool sc_lease_bit(const uint8_t *bits, size_t p);
void sc_lease_set_bit(uint8_t *bits, size_t p);

/*
 * sc_lease_wants() fills wants (SC_LEASE_WANTS_BYTES(partitions) bytes)
 * with the partitions desired here and not held: what this member's record
 * publishes so that their holders give them back. Pure.
 */
void sc_lease_wants(const struct sc_lease_table *t, uint8_t *wants);

/*
 * sc_lease_wants_grew() tells whether wants has a partition that before has
 * not (both SC_LEASE_WANTS_BYTES(partitions) bytes; before NULL: an empty
 * set): a member record that asks for more than the last one did. Its
 * holders should hear of it at once rather than at their next round (the
 * driver nudges them, docs/cluster.md "Joining and leaving"). Pure.
 */
bool sc_lease_wants_grew(const uint8_t *before, const uint8_t *wants, size_t partitions);

/*
 * sc_lease_nudge_at() is the mono ms at which an extra read round asked for
 * at now may run, so that extra rounds are at least gap_ms apart: now when
 * the last one ran at last (mono ms; < 0: never) gap_ms or more ago, else
 * last + gap_ms. Pure.
 */
int64_t sc_lease_nudge_at(int64_t last, int64_t now, int64_t gap_ms);

/*
 * sc_lease_desired() is the index in t->members of p's desired owner: with
 * t->assign, what the last sc_lease_assign() gave it; without,
 * members[p mod nmembers]. -1 when nmembers is 0. Pure.
 */
long sc_lease_desired(const struct sc_lease_table *t, size_t p);

/*
 * sc_lease_assign() fills t->assign (when set) with the sticky assignment:
 * member i (by rank in the sorted ids) may own quota_i = P/n partitions,
 * plus one for the first P mod n ranks. Walking the partitions in order, a
 * partition stays with its current owner (this member for what it holds,
 * else the view's owner) while that owner is live and under its quota; the
 * rest go, in order, to the first members by rank still under their quota.
 * Every member computes the same from the same view, so only what must
 * move moves: after a member dies, its partitions; when one joins, the
 * shares the others give it. Each member ends with floor or ceil of P/n.
 * O(partitions log members). Pure.
 */
void sc_lease_assign(const struct sc_lease_table *t);

/*
 * sc_lease_view() records that a read of the bucket at now showed lease.<p>
 * held by owner (NUL-terminated, "" or NULL when free) at revision rev.
 * free_since starts at now when the key becomes free and is kept while it
 * stays free. When owner is me, the slot is not held and a create/update
 * sent at unanswered_t0 never got its answer, the write went through after
 * all: the slot is adopted (held, revision rev, valid until
 * unanswered_t0 + lease - guard) and true is returned (the caller announces
 * the gain) unless that time has passed. A view showing me at a revision
 * other than the one held, with no write unanswered, changes nothing (the
 * next renew finds out). Pure.
 */
bool sc_lease_view(struct sc_lease_table *t, size_t p, const char *owner, uint64_t rev,
                   int64_t now);

/*
 * sc_lease_plan_one() is the action set (sc_lease_action bits) for
 * partition p at now:
 *  - held and now >= valid_until: LOST (nothing else);
 *  - held: RENEW, plus RELEASE when the desired owner is another member
 *    and its record says it wants p;
 *  - not held, free in the view: ACQUIRE when desired here, or when free
 *    for lease_ms or longer (an orphan);
 *  - not held, owned in the view (by anyone, this member's id included):
 *    NONE (the key ages out if its owner is gone).
 * Pure.
 */
unsigned sc_lease_plan_one(const struct sc_lease_table *t, size_t p, int64_t now);

/* sc_lease_plan() fills actions[0..partitions) with sc_lease_plan_one() of each. Pure. */
void sc_lease_plan(const struct sc_lease_table *t, int64_t now, uint8_t *actions);

/*
 * The answers of the bucket, applied to the hold (pure):
 * sc_lease_won() - a create or update of p sent at t0 succeeded with
 *   revision rev: held, revision rev, valid until max(valid_until,
 *   t0 + lease - guard); unanswered_t0 cleared. Returns true when p was
 *   not held before (a gain to announce), false for a renewal.
 * sc_lease_refused() - the bucket refused it (the key is not at the
 *   expected revision: someone else holds it, or it aged out): not held.
 *   Returns true when p was held (a loss to announce).
 * sc_lease_unanswered() - it was sent at t0 and no answer came (timeout,
 *   connection lost): the hold keeps its valid_until (which runs out),
 *   and t0 is kept as unanswered_t0 if none is older.
 * sc_lease_dropped() - the hold ends here (lost at valid_until, or given
 *   back): not held. Returns true when p was held.
 */
bool sc_lease_won(struct sc_lease_table *t, size_t p, uint64_t rev, int64_t t0);
bool sc_lease_refused(struct sc_lease_table *t, size_t p);
void sc_lease_unanswered(struct sc_lease_table *t, size_t p, int64_t t0);
bool sc_lease_dropped(struct sc_lease_table *t, size_t p);

/*
 * sc_lease_valid() tells whether this member may dispatch p's tasks at now:
 * held and now < valid_until. Pure.
 */
bool sc_lease_valid(const struct sc_lease_table *t, size_t p, int64_t now);

/* sc_lease_owned() counts the partitions valid at now. Pure. */
size_t sc_lease_owned(const struct sc_lease_table *t, int64_t now);

#endif
