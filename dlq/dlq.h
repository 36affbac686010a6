/* dlq.h - the dead-letter queue proper: the task table, the timer wheels, the in-flight slots and the one state machine of DESIGN section 10. */
#ifndef DLQ_DLQ_H
#define DLQ_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "common.h"
#include "list.h"
#include "config.h"
#include "policy.h"

/*
 * This module knows nothing of NATS, libevent or the store: time comes in
 * as arguments (wall ms since the epoch, monotonic ms), randomness through
 * a port, and every effect (a retry published, an event, a task to store,
 * a log line, a metric) leaves through struct dlq_ports, which the daemon
 * fills in. Every status change of DESIGN section 10 happens in machine.c
 * (ingest's half in intake.c); docs/machine.md lists the transitions.
 */

/* ---- the timer wheel (wheel.c) ---------------------------------------------------------------- */

/*
 * Invariants (see docs/wheel.md):
 * - time is in integer ms of a monotonic clock that the caller passes in;
 *   the wheel never reads a clock, so tests drive time by hand; any int64_t
 *   is a valid time (negative, or as far out as INT64_MAX);
 * - an entry due at t fires in the first dlq_wheel_run() whose now >= t and
 *   never earlier; entries are kept at tick granularity (a slot holds one
 *   tick) and the current tick's slot is checked entry by entry, so with a
 *   run every tick an entry fires at most one tick late;
 * - entries fire earliest tick first; within one tick the order is
 *   unspecified. Entries due before the wheel's current tick (scheduled in
 *   the past) count as due at the current tick and fire on the next run;
 * - schedule and cancel are O(1) and never allocate: the entry is embedded
 *   in its owner (a task) and linked into a slot list;
 * - the wheel holds 11 levels of 64 slots; level k slots span 64^k ticks, so
 *   the levels cover all 2^64 ticks and no entry is ever out of range.
 *   Advancing skips empty ticks (a jump of years over a sparse wheel costs a
 *   few steps per level); an entry moves down (cascades) at most once per
 *   level.
 *
 * The layout of struct dlq_wheel_entry is public because owners embed it;
 * only the wheel touches its fields.
 */
struct dlq_wheel_entry {
    struct dlq_wheel_entry *next;
    struct dlq_wheel_entry *prev; /* NULL when not scheduled */
    int64_t due;                 /* ms, monotonic */
};

struct dlq_wheel; /* opaque */

/*
 * Called for each entry that fires, after it has been unlinked (it may be
 * re-scheduled inside). The callback must not call dlq_wheel_run() or
 * dlq_wheel_free() on the wheel that is running it.
 */
typedef void (*dlq_wheel_cb)(struct dlq_wheel_entry *e, void *ctx);

/*
 * dlq_wheel_new() returns a wheel whose clock starts at now_ms, with a tick of
 * tick_ms (1-1000; values outside are clamped). Never returns NULL (aborts
 * on OOM). dlq_wheel_free() frees it (NULL is a no-op) without touching
 * entries still linked; the owners must not cancel them afterwards (re-init
 * them with dlq_wheel_entry_init() to reuse them). One thread (the loop) at a
 * time.
 */
struct dlq_wheel *dlq_wheel_new(int64_t tick_ms, int64_t now_ms);
void dlq_wheel_free(struct dlq_wheel *w);

/* dlq_wheel_entry_init() marks e as not scheduled. Call once before first use. */
void dlq_wheel_entry_init(struct dlq_wheel_entry *e);

/* dlq_wheel_entry_scheduled() is true while e is linked in a wheel. */
static inline int
dlq_wheel_entry_scheduled(const struct dlq_wheel_entry *e)
{
    return e->prev != NULL;
}

/*
 * dlq_wheel_schedule() files e to fire at due_ms (monotonic ms; a time in the
 * past fires on the next run). An e already scheduled in w is moved; one
 * scheduled in another wheel must be cancelled there first (the wheel is
 * not recorded in the entry). O(1), no allocation. Loop thread.
 */
void dlq_wheel_schedule(struct dlq_wheel *w, struct dlq_wheel_entry *e, int64_t due_ms);

/* dlq_wheel_cancel() unlinks e if scheduled; O(1), safe on an unscheduled entry. Loop thread. */
void dlq_wheel_cancel(struct dlq_wheel *w, struct dlq_wheel_entry *e);

/*
 * dlq_wheel_run() advances the wheel to now_ms and calls cb(e, ctx) for due
 * entries (due <= now_ms), at most max of them (0 means no limit), earliest
 * tick first. Due entries past the limit stay due and fire first in the next
 * run (this is how a backlog after a stall drains at a bounded rate).
 * Returns how many fired. Cost: O(levels) per tick that holds entries or
 * cascades, plus O(1) per entry fired or cascaded; empty ticks are skipped.
 * Loop thread; cb may schedule or cancel any entry, including e and others
 * due in the same tick. An entry that cb files at or before the current tick
 * fires in the next run, not this one (a callback re-arming itself cannot
 * loop); one filed at a later tick that is already due may fire in this run.
 * A now_ms earlier than a previous run's is allowed and fires nothing early.
 */
size_t dlq_wheel_run(struct dlq_wheel *w, int64_t now_ms, size_t max, dlq_wheel_cb cb, void *ctx);

/*
 * dlq_wheel_next_due() returns a time (monotonic ms) at or before the earliest
 * scheduled entry's due time and never before the start of the wheel's
 * current tick, for arming the loop timer; INT64_MAX when the wheel is
 * empty. It is exact (the earliest due itself) unless an entry of the
 * earliest slot was cancelled since that slot was last scanned, in which
 * case the timer may wake once early and find nothing due. It never makes
 * the loop spin: a run at the returned time either fires something or
 * leaves dlq_wheel_next_due() later than its now_ms. Called from inside a
 * callback it returns the start of the current tick. O(levels).
 */
int64_t dlq_wheel_next_due(const struct dlq_wheel *w);

/* dlq_wheel_count() returns the number of scheduled entries. O(1). */
size_t dlq_wheel_count(const struct dlq_wheel *w);

/* ---- tasks and the queue (queue.c) ---------------------------------------------------------- */

/* Task states of DESIGN section 10; "parked" is pending with no next retry. */
typedef enum {
    DLQ_TASK_PENDING = 0,
    DLQ_TASK_RETRYING,
    DLQ_TASK_EXHAUSTED,
    DLQ_TASK_COMPLETED,
    DLQ_TASK_ARCHIVED,
    DLQ_TASK_STATUS_COUNT
} dlq_task_status;

/* What a history entry records. */
typedef enum {
    DLQ_OUT_FAILED = 0, /* a failure envelope arrived (an episode's first failure, or a repeat) */
    DLQ_OUT_RETRY_FAILED,
    DLQ_OUT_TIMEOUT,
    DLQ_OUT_SUCCEEDED,
    DLQ_OUT_DEFERRED,
    DLQ_OUT_REFUSED, /* the retry subject was refused: parked */
    DLQ_OUT_EXHAUSTED,
    DLQ_OUT_MANUAL, /* an operator scheduled a retry */
    DLQ_OUT_ARCHIVED,
    DLQ_OUT_EDITED, /* an operator replaced the payload (the admin edit verb) */
    DLQ_OUT_OPERATOR, /* a note of an operator's action: its error text says "<verb> by <principal>" */
} dlq_outcome_kind;

const char *dlq_task_status_name(dlq_task_status s);
const char *dlq_outcome_name(dlq_outcome_kind k);

/* One bounded-history entry. error (may be NULL) is a reference into the queue's string pool. */
struct dlq_attempt {
    int64_t at_ms; /* wall */
    int32_t attempt;
    uint8_t outcome; /* dlq_outcome_kind */
    const char *error;
};

/*
 * Bits of dlq_task.pooled: which string fields point into the queue's pool of
 * shared, reference-counted strings (dlq_task_set_str()) rather than at their
 * own malloc'd copy (a field assigned directly, as the store's loader does).
 */
#define DLQ_TS_SUBJECT 0x01u
#define DLQ_TS_RETRY_SUBJECT 0x02u
#define DLQ_TS_ERROR 0x04u
#define DLQ_TS_ERROR_TYPE 0x08u
#define DLQ_TS_RULE 0x10u
#define DLQ_TS_BACKOFF 0x20u

/*
 * One dead-lettered task. Owned by the queue. The task, its id and (when it
 * fits the room reserved at dlq_queue_add_room()) its payload are one
 * allocation; subject, retry_subject, error, error_type, rule_id and backoff are
 * pooled (see pooled) or owned; every other pointer field is owned by the
 * task. Times are wall-clock ms since the epoch, 0 meaning "none". The
 * wheel entry serves two purposes: while pending it is the due time of the
 * next attempt, while retrying the reply timeout. category, policy, status
 * and parked feed the queue's counts: change them only through
 * dlq_queue_set_status() and dlq_queue_set_class().
 */
/*
 * What few tasks have, in an allocation of its own so that the many tasks
 * without any pay a pointer: for a task filed from a JetStream advisory
 * (DESIGN section 16) the largest advisory capture-stream sequence ingested
 * for it (0: none; a redelivery at or below it is no new failure) and the
 * original's headers (DLQ_HDRS bytes, republished with a retry); for an
 * edited task (admin edit) the payload before the first edit; for a task
 * with a delay list of its own (issue 17) that list.
 */
/*
 * A task's dependencies (issue 17, README "Dependencies"): the ids its
 * envelope's depends_on named, in order, and which of them it still waits
 * for. waiting > 0 means the task is held: pending, not in a due wheel,
 * its park_reason "waiting for <id>", indexed under each id it waits for
 * (struct dlq_machine.deps_ix). Owned by the task's origin.
 */
struct dlq_dep {
    char *id;      /* owned, NUL-terminated */
    uint32_t len;
    uint32_t slot; /* while waiting: the task's place in the index's list of id (deps.c) */
    bool waiting;  /* not yet satisfied (completed or unknown) */
};

struct dlq_deps {
    uint32_t n;       /* 1..CODEC_DEPENDS_MAX */
    uint32_t waiting; /* entries with waiting set */
    struct dlq_dep e[];
};

struct dlq_origin {
    uint64_t adv_seq;
    struct dlq_deps *deps;              /* owned: its depends_on (issue 17), NULL: none */
    char *backoff;                      /* pooled (DLQ_TS_BACKOFF): the task's own delay list, an
                                           envelope's or its template's, as policy_delays_format()
                                           writes it (NULL: none) */
    char *orig_payload;                 /* owned: the payload before the first edit (NULL: none) */
    uint32_t orig_payload_len;
    bool orig_payload_raw;              /* orig_payload is raw bytes, not MessagePack */
    size_t headers_len;
    char headers[];
};

struct dlq_task {
    struct dlq_wheel_entry timer;
    struct sc_list order;               /* in q->order: all tasks in seq order */
    uint64_t seq;                       /* unique, grows: list order and cursors */
    uint64_t version;                   /* grows on every change (external versioning) */
    char *id;                           /* in the task's own allocation, NUL-terminated */
    char *payload;                      /* the task's MessagePack bytes (in the task when they fit) */
    uint32_t id_len;
    uint32_t hash;
    uint32_t payload_len;
    uint32_t payload_room;              /* bytes reserved for the payload after the id */
    uint32_t metadata_len;              /* bytes at metadata (an envelope is far below 4 GiB) */
    uint32_t repos_len;                 /* bytes at repos */
    char *subject;                      /* the failure subject */
    char *retry_subject;                /* NULL when refused (then parked) */
    char *error;
    char *error_type;                   /* NULL when absent */
    char *rule_id;                      /* classifier rule, or "envelope" */
    char *park_reason;                  /* why parked beyond policy never; NULL otherwise */
    char *metadata;                     /* MessagePack map bytes or NULL */
    char *repos;                        /* MessagePack array bytes or NULL */
    struct dlq_origin *origin;          /* an advisory's or an edit's extras, or NULL */
    uint32_t bytes;                     /* counted against max_bytes */
    uint8_t category;                   /* policy_category */
    uint8_t policy;                     /* policy_retry */
    uint8_t status;                     /* dlq_task_status */
    uint8_t pooled;                     /* DLQ_TS_* bits */
    uint8_t priority;                   /* policy_priority: which due-time wheel holds it */
    bool policy_override;               /* the envelope chose the policy */
    bool max_retries_own;               /* max_retries came from an envelope or an operator, not
                                           default_max_retries (which a SIGHUP may change) */
    bool parked;                        /* pending with no automatic retry */
    int32_t max_retries;
    int32_t retry_count;                /* attempts that ended in failure or timeout */
    int32_t defer_streak;               /* no-responders deferrals in a row */
    int32_t episode;                    /* 1 + times reopened after completed/archived */
    uint32_t flight_slot;               /* in-flight table slot + 1, 0 when not in flight */
    int64_t episode_id;                 /* the episode's start, us since the epoch: the time the
                                           stream stored the failure that opened it (JetStream),
                                           else unique and growing within the process
                                           (dlq_queue_new_episode()); stored, so Nats-Msg-Id
                                           survives a restart and a takeover */
    uint64_t stream_seq;                /* the largest JetStream sequence ingested for it (0:
                                           none): a redelivery at or below it is no new failure */
    int64_t created_at, updated_at, last_attempt_at, next_retry_at, first_failed_at;
    struct dlq_attempt *hist;            /* ring of hist_alloc entries, grown 1, 2, 4 ... to the cap;
                                           the first lives in the task's own allocation */
    uint16_t hist_len, hist_head, hist_alloc;
    /* Three flags in one byte (bit-fields: the loop thread alone writes a task). */
    bool payload_raw : 1;               /* payload is the original message's bytes, not MessagePack
                                           (a JetStream advisory, DESIGN section 16) */
    bool payload_missing : 1;           /* the original was gone when fetched: no payload, parked */
    bool circuit_held : 1;              /* held by its retry subject's open circuit (dlq_ports.gate) */
    /* The store mirror's (sidecar/mirror.c), opaque here and left alone by this module: */
    struct sc_list dirty;               /* linked while the task has changes not yet stored */
    struct sc_mirror_ack *store_acks;   /* ingest acks waiting for this task's write */
};

/* Filter of DESIGN section 8 (any field unset matches everything). */
struct dlq_filter {
    int status;          /* -1 any, else dlq_task_status; parked handled by want_parked */
    int want_parked;     /* -1 any, 0 not parked, 1 parked only */
    int category;        /* -1 any */
    const char *subject; /* NULL any; exact failure subject or a pattern with wildcards */
    int64_t older_than_ms; /* 0 any; created_at <= now - older_than_ms */
    uint64_t group;        /* 0 any; else dlq_task_group() must equal it */
    const char *error;      /* NULL any; a substring of the last error (bytes, case-sensitive) */
    const char *error_type; /* NULL any; the error type exactly (none never matches) */
    const char *id_prefix;  /* NULL any; the task id starts with it */
};

bool dlq_filter_match(const struct dlq_filter *f, const struct dlq_task *t, int64_t now_wall);

/* ---- failure fingerprints (fingerprint.c) ------------------------------------------------------ */

/* The normalised error bytes a fingerprint covers; an error differing only past them groups with its prefix. */
#define DLQ_FINGERPRINT_TEXT 1024

/*
 * dlq_fingerprint_normalise() writes the error text of len bytes at in,
 * with its variable parts normalised away, to out (cap bytes; not
 * NUL-terminated): every word (a run of ASCII letters and digits) that
 * holds a digit, or is a run of at least 8 hex letters, becomes '#', and
 * such words joined by . : - _ / , (an address, a UUID, a version, a
 * date) become one '#'; runs of white space become one space, leading and
 * trailing space goes. So "timeout after 30s on 10.0.0.7:5432 (req 9f3a)"
 * reads "timeout after # on # (req #)". Returns the length of the whole
 * result, which may exceed cap (only cap bytes are written). Pure; any thread.
 */
size_t dlq_fingerprint_normalise(const char *in, size_t len, char *out, size_t cap);

/*
 * dlq_error_hash() hashes the normalised error (elen bytes at error; NULL
 * as "", only its first 64 KiB are read and the first DLQ_FINGERPRINT_TEXT
 * normalised bytes count) into 64 bits (FNV-1a). O(min(elen, 64 KiB)).
 * dlq_fingerprint_mix() hashes the failure subject (slen bytes; NULL as "")
 * with an error hash; dlq_fingerprint() is the two together. Pure; any thread.
 */
uint64_t dlq_error_hash(const char *error, size_t elen);
uint64_t dlq_fingerprint_mix(const char *subject, size_t slen, uint64_t error_hash);
uint64_t dlq_fingerprint(const char *subject, size_t slen, const char *error, size_t elen);

/*
 * dlq_fingerprint_group() mixes a fingerprint with a category
 * (policy_category) into the group id shown to people: never 0 (0 means
 * "any" in struct dlq_filter). Pure; any thread.
 */
uint64_t dlq_fingerprint_group(uint64_t fp, unsigned category);

/*
 * dlq_task_fingerprint() is dlq_fingerprint() of t's subject and error
 * (queue.c): the error's hash is worked out once per distinct error text
 * and kept with the text in the string pool, so a task holds none and
 * ingest pays nothing; O(length of the subject) after the first.
 * dlq_task_group() is t's group id: that mixed with its category. Loop thread.
 */
uint64_t dlq_task_fingerprint(const struct dlq_task *t);
uint64_t dlq_task_group(const struct dlq_task *t);

/*
 * dlq_task_str_plain() tells whether s, the value of t's string field which
 * (a DLQ_TS_* bit: t->subject, t->error ...) or any other string, is one a
 * JSON string holds as it is (sc_json_plain_len()), and sets *len to its
 * length (0 for NULL, which is plain). For a pooled field's own value both
 * are kept with the pooled text, worked out once per distinct string (an
 * event per task asks for them). Loop thread.
 */
bool dlq_task_str_plain(const struct dlq_task *t, unsigned which, const char *s, size_t *len);

/* dlq_group_hex() writes group as 16 lowercase hex digits and a NUL to out. */
void dlq_group_hex(uint64_t group, char out[17]);

/*
 * dlq_group_parse() reads exactly 16 hex digits (len bytes at s, either
 * case) into *out; false (out untouched) for anything else, 0 included.
 */
bool dlq_group_parse(const char *s, size_t len, uint64_t *out);

/* One string of the queue's pool (queue.c): shared by every task field that holds the same bytes. */
struct dlq_pstr;

/* Held tasks by the ids they wait for (deps.c). */
struct dlq_dep_index;

struct dlq_queue {
    /*
     * The id table: open addressing with linear probing, at most half full.
     * tags[i] is 0 for an empty slot, else 0x80 | 7 bits of the slot's task
     * hash, so a probe reads one byte per slot that is not its task;
     * slots[i] is the task. Deletion shifts the run back (no tombstones).
     */
    uint8_t *tags;
    struct dlq_task **slots;
    size_t nslots;                      /* a power of 2 */
    size_t count;                       /* every record held */
    size_t counts[DLQ_TASK_STATUS_COUNT];
    size_t parked;
    size_t by_status_cat[DLQ_TASK_STATUS_COUNT][POLICY_CAT_COUNT]; /* parked included in pending */
    size_t parked_cat[POLICY_CAT_COUNT];
    size_t active_policy[POLICY_RETRY_COUNT]; /* active tasks (dlq_queue_active()) per policy */
    size_t bytes;                       /* sum of the tasks' bytes */
    struct sc_list order;               /* every task, by seq (dlq_queue_first() ...) */
    uint64_t next_seq;
    int64_t last_episode_id;            /* the largest episode id issued or loaded */
    size_t hist_cap;
    struct dlq_pstr **pool;              /* the string pool: a chained hash of nstr strings */
    size_t npool, nstr;
    struct dlq_pstr *recent[8];          /* per task string (DLQ_TS_* bit): the last one set, until freed */
};

/*
 * dlq_queue_first() is q's oldest task (lowest seq), or NULL when q is
 * empty; dlq_queue_last() its newest. dlq_queue_next() is the task after t
 * in seq order (NULL after the newest), dlq_queue_prev() the one before.
 * O(1); borrowed pointers. A walker that removes t takes its next first.
 */
static inline struct dlq_task *
dlq_queue_entry(const struct dlq_queue *q, struct sc_list *n)
{
    return n && n != &q->order ? SC_LIST_ENTRY(n, struct dlq_task, order) : NULL;
}

static inline struct dlq_task *
dlq_queue_first(const struct dlq_queue *q)
{
    return dlq_queue_entry(q, q->order.next);
}

static inline struct dlq_task *
dlq_queue_last(const struct dlq_queue *q)
{
    return dlq_queue_entry(q, q->order.prev);
}

static inline struct dlq_task *
dlq_queue_next(const struct dlq_queue *q, const struct dlq_task *t)
{
    return dlq_queue_entry(q, t->order.next);
}

static inline struct dlq_task *
dlq_queue_prev(const struct dlq_queue *q, const struct dlq_task *t)
{
    return dlq_queue_entry(q, t->order.prev);
}

void dlq_queue_init(struct dlq_queue *q, size_t hist_cap);
/* Frees every task. */
void dlq_queue_destroy(struct dlq_queue *q);
struct dlq_task *dlq_queue_find(struct dlq_queue *q, const char *id, size_t len);
/*
 * dlq_queue_id_hash() is the id table's hash of the len bytes at id (seeded
 * per process: the first dlq_queue_init() sets the seed, so call it after
 * that). It reads nothing else: any thread, e.g. where a failure is decoded
 * before the loop takes it. dlq_queue_find_hashed() is dlq_queue_find() with
 * h = dlq_queue_id_hash(id, len) already worked out (one hash for the
 * lookup and the insert that may follow). dlq_queue_prefetch() asks the CPU
 * to bring in the id table's home slot of h (a hint: reads nothing, so any
 * h is safe), so that a lookup a little later does not wait on the cache
 * miss a large table has for most ids. Loop thread, but for the hash.
 */
uint32_t dlq_queue_id_hash(const char *id, size_t len);
struct dlq_task *dlq_queue_find_hashed(struct dlq_queue *q, const char *id, size_t len, uint32_t h);
void dlq_queue_prefetch(const struct dlq_queue *q, uint32_t h);
/*
 * dlq_queue_add_room() creates and links a new pending task (category 0,
 * policy 0) with a copy of id, reserving room bytes in the same allocation
 * for the payload (dlq_task_set_payload()); dlq_queue_add() reserves none;
 * dlq_queue_add_hashed() is dlq_queue_add_room() with id's
 * dlq_queue_id_hash() h already worked out. Never fail (abort on OOM). Loop
 * thread.
 */
struct dlq_task *dlq_queue_add_room(struct dlq_queue *q, const char *id, size_t len, size_t room,
                                  int64_t now_wall);
struct dlq_task *dlq_queue_add_hashed(struct dlq_queue *q, const char *id, size_t len, uint32_t h,
                                      size_t room, int64_t now_wall);
struct dlq_task *dlq_queue_add(struct dlq_queue *q, const char *id, size_t len, int64_t now_wall);
/*
 * dlq_queue_new_episode() gives t a new episode id (DESIGN section 5): the
 * episode's start now_wall (ms) in microseconds, raised to one more than
 * the last id issued or seen when the clock has not moved on, so that no
 * two episodes of this process share an id, even of a task id whose old
 * record was removed. dlq_queue_add_room() calls it for every new task.
 * dlq_queue_episode_seen() records an id loaded from the store, so that
 * later ids are larger. Loop thread.
 */
void dlq_queue_new_episode(struct dlq_queue *q, struct dlq_task *t, int64_t now_wall);
void dlq_queue_episode_seen(struct dlq_queue *q, int64_t episode_id);
/* Unlinks and frees t (the caller cancels its timer first). */
void dlq_queue_remove(struct dlq_queue *q, struct dlq_task *t);
/* Moves t to status s, keeping the counts right. */
void dlq_queue_set_status(struct dlq_queue *q, struct dlq_task *t, dlq_task_status s, bool parked);
/* dlq_queue_set_class() sets t's category and policy, keeping the per-category and per-policy counts right. */
void dlq_queue_set_class(struct dlq_queue *q, struct dlq_task *t, policy_category c, policy_retry p);
/*
 * dlq_queue_filter_count() sets *n to the number of tasks matching f from the
 * counts, O(1), and returns true, when f tests only status, parked and
 * category; false (n untouched) when it needs a walk (subject, older_than).
 */
bool dlq_queue_filter_count(const struct dlq_queue *q, const struct dlq_filter *f, size_t *n);
/* dlq_queue_active_category() is the number of active tasks of category c (O(1)). */
size_t dlq_queue_active_category(const struct dlq_queue *q, policy_category c);
/*
 * Records one history entry (error, len bytes, may be NULL: taken from the
 * string pool), evicting the oldest past the cap; the ring grows 1, 2, 4 ...
 * entries up to the cap.
 */
void dlq_queue_history(struct dlq_queue *q, struct dlq_task *t, dlq_outcome_kind k, int32_t attempt,
                      int64_t at, const char *error, size_t error_len);
/* Active tasks: the ones that count against max_size (pending, retrying, exhausted). */
size_t dlq_queue_active(const struct dlq_queue *q);
/*
 * dlq_task_set_str() sets the string field of t that which (one DLQ_TS_* bit)
 * names to the len bytes at p (NULL: no value), shared through the queue's
 * string pool; error and error_type are text (NUL bytes become spaces).
 * The old value is released. Never fails (aborts on OOM). Loop thread.
 */
void dlq_task_set_str(struct dlq_queue *q, struct dlq_task *t, unsigned which, const char *p,
                     size_t len);
/*
 * dlq_task_delays() finds t's delay list (issue 17) in the order of
 * precedence: its own (t->backoff: from its envelope or template), else the
 * configuration's for its failure subject, else for its category
 * (config_delays_for()). Sets *out and returns "task", "subject" or
 * "category" (static), or returns NULL when none applies and the policy's
 * formula does. Reads cfg as it is now (a SIGHUP's lists apply to every
 * task without one of its own). Loop thread.
 */
const char *dlq_task_delays(const struct config *cfg, const struct dlq_task *t,
                            struct policy_delays *out);

/*
 * dlq_task_set_payload() sets t's payload to a copy of the len bytes at p,
 * in the task's own allocation when they fit its room. Loop thread.
 */
void dlq_task_set_payload(struct dlq_task *t, const char *p, size_t len);
/*
 * dlq_task_set_headers() sets t's original headers to a copy of the len
 * bytes at p (DLQ_HDRS; NULL or 0: none), keeping its adv_seq;
 * dlq_task_set_adv_seq() sets the advisory sequence. Either allocates
 * t->origin when needed (aborts on OOM) and frees it once both are empty.
 * dlq_task_headers() is t's headers (borrowed, *len set; NULL: none),
 * dlq_task_adv_seq() its advisory sequence (0: none). Loop thread.
 */
void dlq_task_set_headers(struct dlq_task *t, const char *p, size_t len);
void dlq_task_set_adv_seq(struct dlq_task *t, uint64_t seq);
const char *dlq_task_headers(const struct dlq_task *t, size_t *len);
uint64_t dlq_task_adv_seq(const struct dlq_task *t);

/*
 * dlq_task_set_orig_payload() keeps a copy of the len bytes at p (raw: not
 * MessagePack) as t's payload before its first edit (p NULL: none kept).
 * dlq_task_orig_payload() is that copy (borrowed; NULL: none), *len and
 * *raw set. Loop thread.
 */
void dlq_task_set_orig_payload(struct dlq_task *t, const char *p, size_t len, bool raw);
const char *dlq_task_orig_payload(const struct dlq_task *t, uint32_t *len, bool *raw);

/* dlq_task_backoff() is t's own delay list as text ("1s 10s 1m"; borrowed), NULL when it has none (dlq_task_set_str(DLQ_TS_BACKOFF) sets it). Any thread that may read t. */
static inline const char *
dlq_task_backoff(const struct dlq_task *t)
{
    return t->origin ? t->origin->backoff : NULL;
}
/*
 * dlq_task_set_deps() gives t the dependency list d (taken: owned by t
 * afterwards; NULL: none), freeing the one it had. The caller unindexes a
 * held task first (dlq_deps_unhold()). dlq_task_deps() is t's list
 * (borrowed; NULL: none); dlq_task_held() tells whether t waits for one of
 * them. Loop thread (reads: any thread that may read t).
 */
void dlq_task_set_deps(struct dlq_task *t, struct dlq_deps *d);

static inline struct dlq_deps *
dlq_task_deps(const struct dlq_task *t)
{
    return t->origin ? t->origin->deps : NULL;
}

static inline bool
dlq_task_held(const struct dlq_task *t)
{
    return t->origin && t->origin->deps && t->origin->deps->waiting > 0;
}

/*
 * dlq_deps_new() builds a list of the n (1..CODEC_DEPENDS_MAX) ids at ids
 * (copied), none waiting. Never fails (aborts on OOM); free with
 * dlq_deps_free() (NULL is a no-op). Any thread.
 */
struct dlq_deps *dlq_deps_new(const struct codec_str *ids, uint32_t n);
void dlq_deps_free(struct dlq_deps *d);

/* dlq_task_account() recomputes t->bytes from its fields and keeps q->bytes in step. */
void dlq_task_account(struct dlq_queue *q, struct dlq_task *t);
/* Replaces *field with a copy of len bytes at p (NULL p stores NULL). */
void dlq_set_str(char **field, const char *p, size_t len);
/* dlq_set_text() is dlq_set_str() for text: NUL bytes become spaces, so C string functions see it all. */
void dlq_set_text(char **field, const char *p, size_t len);


/* Lifetime counters (DESIGN section 8's lifetime_stats plus a few). Loop thread only. */
struct dlq_counters {
    uint64_t enqueued, retry_success, retry_failed, retry_timeouts, deferred, exhausted,
        manual_retries, archived, cleared, invalid, refused_full, skipped, unknown_keys,
        failures_while_retrying, duplicates, attempts; /* published, publish_errors: the conn's */
    uint64_t redelivered; /* JetStream deliveries of a failure already taken (no new failure) */
    uint64_t advisories;      /* advisories filed through dlq_ingest_foreign() (stored or not) */
    uint64_t payload_missing; /* of them, tasks filed without their original (gone) */
    uint64_t received; /* failure messages taken from the ingest subject, valid or not */
    uint64_t ingest_dropped; /* failure messages nats.c had received but that were never taken (shutdown) */
    uint64_t dispatched[POLICY_PRIO_COUNT]; /* attempts published, by the task's priority */
    uint64_t expired_archived; /* exhausted tasks archived by retention.* */
    uint64_t expired_removed;  /* completed or archived tasks removed by retention.* */
};


/* One outstanding retry: slot i of the in-flight table. */
struct dlq_flight {
    struct dlq_task *task; /* NULL when free */
    uint64_t token;       /* random per attempt: a reply must carry it (no forged or stale replies) */
    uint32_t next_free;   /* free-list link (index + 1), 0 = end */
    int32_t attempt;
    int64_t sent_mono;
    uint64_t epoch;       /* d->disconnects when sent: a change means the retry may be lost */
    bool stored;          /* outcome stored: the JetStream PubAck is the success (DESIGN section 6) */
};

/*
 * The headers of a retry message (DESIGN section 5), formatted into the
 * struct's own buffers: kv is the NULL-terminated name/value list that
 * sc_publish() takes. The task id is copied (at most DLQ_RETRY_ID_MAX bytes).
 */
#define DLQ_RETRY_ID_MAX 1024
#define DLQ_HDR_EPISODE "Dlq-Episode" /* the episode id (DESIGN section 5) */
/*
 * DLQ_HDRS: the headers of an original message kept with a task (an
 * advisory's, DESIGN section 16) are opaque to the sidecar's transport
 * here: a sequence of "name" NUL "value" NUL pairs, at most DLQ_HDRS_MAX
 * pairs and DLQ_HDRS_BYTES bytes (the source drops what passes the caps).
 */
#define DLQ_HDRS_MAX 32
#define DLQ_HDRS_BYTES 16384
struct dlq_retry_hdrs {
    char id[DLQ_RETRY_ID_MAX + 1];
    char msgid[DLQ_RETRY_ID_MAX + 48];
    char attempt[SC_INT_LEN], maxr[SC_INT_LEN], episode[SC_INT_LEN], first[SC_RFC3339_LEN];
    const char *kv[20 + 2 * DLQ_HDRS_MAX];
};

/*
 * dlq_retry_headers_extra() appends the pairs of a DLQ_HDRS blob (len bytes
 * at p, borrowed: must live as long as h is used; NULL: none) to h's list
 * after the retry headers, and returns the bytes they add on the wire. A
 * malformed tail (no NUL) is ignored. Any thread.
 */
size_t dlq_retry_headers_extra(struct dlq_retry_hdrs *h, const char *p, size_t len);

/*
 * dlq_retry_headers() fills h for attempt `attempt` of the task with id
 * (id_len bytes, not NUL-terminated, at most DLQ_RETRY_ID_MAX), budget
 * max_retries, category cat, failure subject orig_subject (borrowed: lives
 * as long as h is used), first failure first_failed_at (wall ms) and
 * episode episode_id, and returns the bytes the headers take on the wire
 * ("NATS/1.0" line, one "Name: value" line each, blank line): what counts
 * against the server's max_payload with the body. dispatch publishes with
 * it; ingest sizes a task with it (dlq_retry_headers_max()). Any thread.
 */
size_t dlq_retry_headers(struct dlq_retry_hdrs *h, const char *id, size_t id_len, int32_t attempt,
                        int32_t max_retries, policy_category cat, const char *orig_subject,
                        int64_t first_failed_at, int64_t episode_id);
/*
 * dlq_retry_headers_max() is the most bytes the retry headers of a task with
 * this id and failure subject can ever take (any attempt, budget, category,
 * time and episode), computed with dlq_retry_headers(): a task whose payload
 * plus this fits max_payload at ingest can always be published. Any thread.
 */
size_t dlq_retry_headers_max(const char *id, size_t id_len, const char *orig_subject);

/* ---- the state machine (machine.c, intake.c) ------------------------------------------------- */

/* What the publish port answers. */
typedef enum {
    DLQ_PUB_OK = 0, /* handed to the transport */
    DLQ_PUB_TOOBIG, /* it can never fit (the server's max_payload): the task is parked */
    DLQ_PUB_FAILED, /* not sent now (buffer full, connection gone): deferred, not an attempt */
} dlq_pub_result;

/* Log levels of the log port (the same order as the daemon's). */
typedef enum { DLQ_LOG_DEBUG = 0, DLQ_LOG_INFO, DLQ_LOG_WARN, DLQ_LOG_ERROR } dlq_log_level;
#define DLQ_LOG_KV_MAX 16 /* the most name/value strings of one log line */

/* Histograms the observe port feeds. */
typedef enum {
    DLQ_HIST_RETRY_LATENESS = 0, /* a retry went out this long after its due time */
    DLQ_HIST_TIME_TO_SUCCESS,    /* first failure of the episode to the successful retry */
} dlq_hist;

/*
 * The machine's effects, filled in by its owner (the daemon, or a test).
 * Every function gets ctx first; all are called on the loop thread, from
 * inside a machine call, and must not call back into the machine. Task
 * pointers are borrowed for the call. Every member must be set.
 */
/* How an attempt ended, for the circuit breaker (dlq_ports.verdict). */
typedef enum { DLQ_END_OK = 0, DLQ_END_FAILED, DLQ_END_NONE } dlq_attempt_end;

struct dlq_ports {
    void *ctx;
    /*
     * publish() sends one retry: len bytes of body to subject, reply subject
     * reply (NULL: none), headers a NULL-terminated name/value list
     * (struct dlq_retry_hdrs.kv). All borrowed for the call.
     */
    dlq_pub_result (*publish)(void *ctx, const char *subject, const char *reply, const void *body,
                              size_t len, const char *const *headers);
    /*
     * connected() tells whether the transport is up now, and sets *epoch to
     * its count of disconnections: a retry sent under another epoch than the
     * one current at its timeout may have been lost (deferred, not charged).
     */
    bool (*connected)(void *ctx, uint64_t *epoch);
    /* event() emits <prefix>.events.<kind> for t (DESIGN section 9); error NULL: t's own. */
    void (*event)(void *ctx, const char *kind, const struct dlq_task *t, int32_t attempt,
                  const char *error);
    /* changed() marks t changed for the store (after the change); removed() just before t is freed. */
    void (*changed)(void *ctx, struct dlq_task *t);
    void (*removed)(void *ctx, struct dlq_task *t);
    /*
     * forgotten() is removed() for dlq_machine_forget(): t leaves this
     * instance without any change (another one owns it now): the owner
     * drops what it holds of t and writes nothing of it.
     */
    void (*forgotten)(void *ctx, struct dlq_task *t);
    /*
     * may_dispatch() tells whether t's attempt may go out now (cluster mode:
     * this instance holds a valid lease on t's partition, DESIGN section 18).
     * When false, t is held DLQ_HOLD_MS in the due wheel: no attempt, no
     * event, no change.
     */
    bool (*may_dispatch)(void *ctx, const struct dlq_task *t);
    /*
     * admit() is asked before a failure sent as a request is stored: NULL to
     * go on, or why it must be refused with 503 (the store cannot take it).
     */
    const char *(*admit)(void *ctx);
    /*
     * log_enabled() is asked once per line before it is built: false drops
     * it (the port may count it); true means log() follows at once with
     * that line. log() writes it; kv is a NULL-terminated list of
     * name/value strings (borrowed).
     */
    void (*log)(void *ctx, dlq_log_level level, const char *msg, const char *const *kv);
    bool (*log_enabled)(void *ctx, dlq_log_level level);
    /* observe() records ms milliseconds in histogram h. */
    void (*observe)(void *ctx, dlq_hist h, int64_t ms);
    /* rand() is a random 64-bit value for jitter; token() one for reply tokens (unguessable). */
    uint64_t (*rand)(void *ctx);
    uint64_t (*token)(void *ctx);
    /*
     * The circuit breaker of t's retry subject (may be NULL: none).
     * gate() is asked before a due t is published: 0 to go, else the
     * monotonic ms until which t is held (no attempt charged, next_retry_at
     * moves there). verdict() tells how an attempt that went out ended:
     * DLQ_END_OK (success), DLQ_END_FAILED (failure reply or
     * timeout) or DLQ_END_NONE (deferred: no responders, lost
     * connection); it returns true when the circuit closed on it, and the
     * machine then sends the tasks gate() held for that subject.
     */
    int64_t (*gate)(void *ctx, const struct dlq_task *t, int64_t now_mono);
    bool (*verdict)(void *ctx, const struct dlq_task *t, dlq_attempt_end v, int64_t now_mono);
};

/* ---- "did retrying help" (effect.c) ---------------------------------------------------------- */

/* Attempts-to-success buckets (1, 2, 3, 4, 5-9, 10+) and recovery-time buckets (the last is +Inf). */
#define DLQ_EFFECT_ATTEMPT_BUCKETS 6
#define DLQ_EFFECT_TIME_BUCKETS 18
/* Most failure subjects counted (memory stays bounded; more are counted as untracked), and listed. */
#define DLQ_EFFECT_SUBJECTS 1024
#define DLQ_EFFECT_LISTED 50

extern const int64_t dlq_effect_time_le[DLQ_EFFECT_TIME_BUCKETS - 1];
extern const char *const dlq_effect_attempt_names[DLQ_EFFECT_ATTEMPT_BUCKETS];

/* How retried tasks of one category or failure subject ended (lifetime counts). */
struct dlq_effect_counts {
    uint64_t succeeded;                            /* completed by a retry */
    uint64_t exhausted;                            /* exhausted after at least one retry */
    uint64_t attempts[DLQ_EFFECT_ATTEMPT_BUCKETS]; /* succeeded, by the attempt that did it */
    uint64_t recovery[DLQ_EFFECT_TIME_BUCKETS];    /* succeeded, by first failure -> success, ms */
    uint64_t attempts_sum;                         /* sum of the attempts that succeeded */
    uint64_t recovery_sum_ms;
    int64_t recovery_max_ms;
};

struct dlq_effect_subject {
    char *subject; /* owned */
    struct dlq_effect_counts c;
};

struct dlq_effect {
    struct dlq_effect_counts cat[POLICY_CAT_COUNT];
    struct dlq_effect_subject *s; /* sorted by subject (strcmp), n used of cap */
    size_t n, cap;
    uint64_t untracked;           /* outcomes of subjects past DLQ_EFFECT_SUBJECTS */
};

/*
 * dlq_effect_succeeded() counts t (its category and failure subject)
 * completed by attempt attempt (1-based), ms after its first failure;
 * dlq_effect_exhausted() counts t exhausted (nothing when it was never
 * retried). The machine calls them at those transitions. A subject past
 * DLQ_EFFECT_SUBJECTS is counted in its category only. Loop thread.
 */
void dlq_effect_succeeded(struct dlq_effect *e, const struct dlq_task *t, int32_t attempt, int64_t ms);
void dlq_effect_exhausted(struct dlq_effect *e, const struct dlq_task *t);

/*
 * dlq_effect_quantile() estimates the q-quantile (0-1) of c's recovery
 * times, ms: the upper bound of the bucket it falls in (never above the
 * largest seen); -1 when nothing succeeded. Pure.
 */
int64_t dlq_effect_quantile(const struct dlq_effect_counts *c, double q);

/*
 * dlq_effect_json() writes the stats key "retry_effectiveness":
 * {"by_category":{<category>:{succeeded, exhausted, success_rate (null
 * when none), attempts_to_success:{"1".."10+"}, recovery_p50_ms,
 * recovery_p90_ms (null when none)}}, "by_subject":{<the DLQ_EFFECT_LISTED
 * subjects with most outcomes>: the same}, "subjects", "subjects_untracked"}.
 * dlq_effect_render() appends the /metrics families (per category only:
 * bounded). Loop thread.
 */
void dlq_effect_json(const struct dlq_effect *e, struct sc_jw *w);
void dlq_effect_render(const struct dlq_effect *e, struct sc_buf *b);

/* dlq_effect_destroy() frees e's subjects and zeroes it. */
void dlq_effect_destroy(struct dlq_effect *e);

/*
 * The state machine and what it owns: the two wheels (due times of pending
 * tasks; reply timeouts of retrying tasks: a task's timer is in the
 * timeout wheel exactly while it is retrying) and the in-flight slots. The
 * layout is public because the daemon embeds it and its views read it;
 * change it only through dlq_machine_* and dlq_queue_* calls. It owns
 * the task table q (every task, and the tasks' strings) and the lifetime
 * counters c.
 */
struct dlq_machine {
    struct config *cfg;                   /* borrowed; a reload changes it in place */
    struct policy_classifier *classifier; /* borrowed; replaced by dlq_machine_reload() */
    struct dlq_queue q;                   /* the task table */
    struct dlq_counters c;                /* the lifetime counters */
    struct dlq_effect effect;             /* did retrying help (effect.c) */
    const char *reply_prefix;             /* borrowed: "_INBOX.<nuid>", filled before the first run */
    size_t hdr_base;                      /* dlq_retry_headers_max() of an empty id and subject: the
                                             id adds 2 x its length, the subject its length */
    struct dlq_ports ports;
    struct dlq_wheel *wheels[POLICY_PRIO_COUNT]; /* due times of pending tasks, one wheel per
                                                     priority (rate-limited, shared 6:3:1) */
    int64_t credit[POLICY_PRIO_COUNT];    /* smooth weighted round robin between the wheels */
    struct dlq_wheel *twheel;              /* reply timeouts of retrying tasks */
    struct dlq_dep_index *deps_ix;        /* held tasks by the ids they wait for (deps.c); NULL
                                             until a task first waits: tasks without depends_on
                                             never touch it */
    struct dlq_flight *flights;
    uint32_t flights_cap, flights_used, free_head;
    size_t inflight;                      /* outstanding retries */
    double tokens;                        /* rate limiter (retries per second) */
    int32_t budget_default;               /* the default_max_retries every active task on the
                                             default budget holds (dlq_machine_reload()) */
    int64_t last_run_mono;
    int64_t now_mono;                     /* the monotonic time of the call being handled */
    int64_t missing_log_mono;             /* the last payload_missing warning (one per 10 s) */
    int64_t expire_mono;                  /* the last retention sweep */
    char ints[8][SC_INT_LEN];             /* formatted numbers for log lines */
    unsigned next_int;
};

/*
 * dlq_machine_init() sets m up with an empty task table (histories of at
 * most cfg->history_max attempts), zero counters, the configuration cfg,
 * classifier pc and ports (copied); the wheels start at now_mono with
 * cfg->timer_tick_ms ticks. reply_prefix (borrowed, may be filled later)
 * starts the reply subjects of retries. Never fails (aborts on OOM).
 * dlq_machine_destroy() frees the wheels, the slots and every task (no
 * port is called). Loop thread (or main before the loop runs).
 */
void dlq_machine_init(struct dlq_machine *m, struct config *cfg, struct policy_classifier *pc,
                      const char *reply_prefix, const struct dlq_ports *ports, int64_t now_mono);
void dlq_machine_destroy(struct dlq_machine *m);

/*
 * dlq_machine_run() runs the wheels at now_mono (now_wall the same instant
 * on the wall clock): reply timeouts always, due retries unless run_due is
 * false (paused or stopping: due tasks stay due, keeping their
 * next_retry_at), at most cfg->retry_max_per_second (a token bucket of two
 * ticks) and up to cfg->retry_max_in_flight outstanding. When those limits
 * leave room for fewer retries than are due, the priorities share it 6:3:1
 * (high:normal:low, policy_priority_weights) among those with due tasks.
 * Every cfg->retention_check_interval_ms (when a retention.* key is set) it
 * also sweeps the tasks against retention.* (also while paused): an
 * exhausted task untouched for longer than its retention is archived, a
 * completed or archived one kept by store.keep_completed is removed; each
 * evented "expired" and counted (c.expired_archived, c.expired_removed).
 * Loop thread, once a tick.
 */
void dlq_machine_run(struct dlq_machine *m, int64_t now_wall, int64_t now_mono, bool run_due);

/*
 * dlq_machine_scheduled() is the number of pending tasks with a due time
 * (all priorities); dlq_machine_next_due() the earliest of them as
 * dlq_wheel_next_due() says it (monotonic ms; INT64_MAX when none). Loop
 * thread.
 */
size_t dlq_machine_scheduled(const struct dlq_machine *m);
int64_t dlq_machine_next_due(const struct dlq_machine *m);

/*
 * dlq_machine_flight() returns the task whose retry went out in slot idx
 * with reply token token, and sets *stored (its outcome is the JetStream
 * PubAck); NULL for a late, stale or forged reply. Loop thread.
 */
struct dlq_task *dlq_machine_flight(struct dlq_machine *m, uint32_t idx, uint64_t token,
                                   bool *stored);

/*
 * Outcomes of the retry in flight for t (t from dlq_machine_flight()):
 * dlq_machine_succeeded() completes it (removed unless store.keep_completed;
 * t may be freed on return). dlq_machine_reply_failed() charges a failed
 * attempt with error (len bytes, text) and error_type (etlen bytes, NULL:
 * none), classifies it again and schedules the next attempt, or exhausts
 * it. dlq_machine_deferred() is a retry that reached no one (no responders):
 * backed off and sent again, not charged; why is static text. Loop thread.
 */
void dlq_machine_succeeded(struct dlq_machine *m, struct dlq_task *t, int64_t now_wall,
                           int64_t now_mono);
void dlq_machine_reply_failed(struct dlq_machine *m, struct dlq_task *t, const char *error,
                              size_t len, const char *error_type, size_t etlen, int64_t now_wall,
                              int64_t now_mono);
void dlq_machine_deferred(struct dlq_machine *m, struct dlq_task *t, const char *why,
                          int64_t now_wall, int64_t now_mono);

/*
 * dlq_machine_retry() is an operator's retry: t goes out at the next run
 * (an exhausted task gets one more attempt of budget; a task held by its
 * dependencies is released, dlq_machine_deps_release()), counted in
 * manual_retries. Returns SC_OK, or SC_ECONFLICT (nothing changed) when t
 * is retrying, completed or archived, or has no usable retry subject.
 * Loop thread.
 */
sc_status dlq_machine_retry(struct dlq_machine *m, struct dlq_task *t, int64_t now_wall,
                            int64_t now_mono);

/*
 * dlq_machine_edit() replaces the bytes the next retry of t publishes with
 * the len bytes at p (copied; raw: they are not MessagePack, which get and
 * the store then keep as bytes). The payload before the first edit is kept
 * in t->orig_payload (later edits keep that one); the history gets an
 * "edited" entry. A retrying task keeps its attempt (the edit goes out with
 * the next one). Returns SC_OK, or SC_ECONFLICT (nothing changed) when t is
 * completed or archived. Loop thread.
 */
sc_status dlq_machine_edit(struct dlq_machine *m, struct dlq_task *t, const char *p, size_t len,
                           bool raw, int64_t now_wall);

/*
 * dlq_machine_archive() archives t (pending, parked, retrying or
 * exhausted: a late reply is then ignored); removed unless
 * store.keep_completed, so t may be freed on return. Returns SC_OK or
 * SC_ECONFLICT (already completed or archived: nothing changed).
 * dlq_machine_clear() removes and frees t whatever its status, with the
 * "cleared" event. Loop thread.
 */
sc_status dlq_machine_archive(struct dlq_machine *m, struct dlq_task *t, int64_t now_wall);
void dlq_machine_clear(struct dlq_machine *m, struct dlq_task *t);

/*
 * dlq_machine_restore() files a task rebuilt from the store or the spill
 * file (every field set, status still pending) under status st as it was
 * stored (parked: it was parked). A retrying task's attempt has no known
 * outcome: it is due now and goes out again with the same attempt and
 * Nats-Msg-Id (and is marked changed). A pending task is due at its
 * next_retry_at (now when none or past). Cluster mode (a partition taken
 * over; docs/cluster.md, "Attempts of a lost lease"): a retrying task is
 * due at its attempt's deadline, last_attempt_at + retry.timeout_ms, and a
 * pending one already due at now + retry.timeout_ms (its former owner may
 * have sent it without its write landing); the former owner's hand-back
 * (dlq_machine_release_due()) brings either forward. Loop thread.
 *
 * dlq_machine_release_due() brings pending task t, held that way, forward
 * to due_wall (wall ms; now_wall when earlier) when its retry_count is
 * retry_count, as the former owner said it was not sent. Returns true when
 * t was moved (not marked changed: the store keeps its due time). Loop
 * thread.
 */
bool dlq_machine_release_due(struct dlq_machine *m, struct dlq_task *t, int32_t retry_count,
                             int64_t due_wall, int64_t now_wall, int64_t now_mono);
void dlq_machine_restore(struct dlq_machine *m, struct dlq_task *t, dlq_task_status st, bool parked,
                         int64_t now_wall, int64_t now_mono);

/*
 * dlq_machine_reload() takes a reloaded classifier pc (borrowed; the old
 * one is the caller's) and applies cfg->default_max_retries (already
 * changed in place) to every task that took the default: its budget
 * follows, and a scheduled task whose failed attempts reach it is
 * exhausted now, with its event. A task retrying keeps its attempt; its
 * outcome is judged against the new budget; a parked task only has its
 * budget changed; exhausted tasks are left as they are. O(tasks). Loop
 * thread.
 */
/*
 * dlq_machine_forget_seqs() is told that a JetStream stream was made anew
 * (its sequences start over at 1): every task forgets the sequence it
 * recorded of it, the failure stream's (advisory false: stream_seq) or the
 * advisory capture stream's (advisory true: adv_seq), so that a new
 * failure is never taken for a redelivery of the old stream's message;
 * each such task is marked changed for the store. Returns how many tasks
 * held one. O(tasks). Loop thread.
 */
size_t dlq_machine_forget_seqs(struct dlq_machine *m, bool advisory);

/*
 * Dependencies (issue 17; README "Dependencies"; the index in deps.c,
 * what a dependency's end does in machine.c).
 *
 * dlq_machine_deps_waiting() is the number of held tasks (O(1)).
 * dlq_machine_deps_check() looks every id a held task waits for up again
 * (after a load from the store or a partition claim: a dependency may have
 * finished, or been removed, while its dependent's record was behind):
 * completed or unknown satisfies, exhausted or archived parks the
 * dependent; a task whose wait is over is scheduled at max(now, its
 * next_retry_at). O(held tasks x their ids). dlq_machine_deps_release()
 * ends t's wait as an operator's override (dlq_machine_retry() calls it:
 * admin retry by task_id, edit with retry): the history notes the ids it
 * waited for ("dependencies overridden by <by, NULL: an operator>: was
 * waiting for <ids>"); t is not scheduled here. Returns false when t was
 * not held.
 * Loop thread.
 */
size_t dlq_machine_deps_waiting(const struct dlq_machine *m);
void dlq_machine_deps_check(struct dlq_machine *m, int64_t now_wall, int64_t now_mono);
bool dlq_machine_deps_release(struct dlq_machine *m, struct dlq_task *t, const char *by,
                              int64_t now_wall);

/* How long a task whose partition may not dispatch waits before it is asked again, ms. */
#define DLQ_HOLD_MS 500

/*
 * dlq_machine_forget() drops t from this instance without changing it:
 * off the wheels (an attempt in flight is abandoned: its late reply finds
 * no slot), ports.forgotten(), then out of the table and freed; no event,
 * no counter. dlq_machine_forget_partition() does it to every task of
 * partition p of partitions and returns how many; O(tasks).
 * dlq_machine_partition_in_flight() counts the tasks of partition p that
 * are retrying (an attempt awaits its outcome); O(tasks). Loop thread.
 */
void dlq_machine_forget(struct dlq_machine *m, struct dlq_task *t);
size_t dlq_machine_forget_partition(struct dlq_machine *m, uint32_t p, uint32_t partitions);
size_t dlq_machine_partition_in_flight(struct dlq_machine *m, uint32_t p, uint32_t partitions);

/*
 * dlq_machine_reload() takes classifier pc (borrowed; the caller frees the
 * old one) after a SIGHUP changed m->cfg in place. When
 * cfg->default_max_retries differs from the budget the tasks were given,
 * every active task on the default budget (not max_retries_own) takes the
 * new one and is marked changed at now_wall, and one that waits with its
 * budget spent is exhausted now: O(tasks) on the loop. When the default
 * did not change nothing is walked (every such task already holds it:
 * ingest, the store's load and takeover give it the default of the
 * moment), so a reload of the rules alone costs no walk of a large queue.
 * Loop thread.
 */
void dlq_machine_reload(struct dlq_machine *m, struct policy_classifier *pc, int64_t now_wall,
                        int64_t now_mono);

/* What became of a failure handed to dlq_ingest(). */
typedef enum {
    DLQ_IN_STORED = 0, /* stored (new, reopened, or a repeat of a known task) */
    DLQ_IN_SKIPPED,    /* not stored by the strategy (or dlq disabled): answered ok */
    DLQ_IN_INVALID,    /* breaks the contract: reason and why say how (400) */
    DLQ_IN_REFUSED,    /* cannot be taken now: queue full, or the store refused (503) */
    DLQ_IN_REDELIVERED, /* a JetStream redelivery of a failure task already holds: no change */
} dlq_verdict;

/* One failure to take in: a decoded envelope and where it came from. */
struct dlq_failure {
    const struct codec_envelope *env; /* borrowed for the call */
    const char *subject;              /* the failure subject (NUL-terminated, valid) */
    const char *service;              /* the {service} of retry.subject_template */
    int64_t max_payload;              /* the transport's cap on one message; <= 0 none */
    bool wants_answer;                /* a request: the admit port is asked */
    uint64_t stream_seq;              /* JetStream: the message's stream sequence; 0 for core NATS */
    int64_t stream_time_us;           /* JetStream: when the stream stored it, us since the epoch
                                         (0: core NATS): an episode it opens takes it as its id,
                                         so a redelivery handled by another member or after a
                                         restart keeps the same Nats-Msg-Id */
    /* An advisory (dlq_ingest_foreign() fills these; zero for an envelope): */
    uint64_t adv_seq;                 /* the advisory's capture-stream sequence (redelivery) */
    bool payload_raw;                 /* env->task is raw bytes, not MessagePack */
    bool payload_missing;             /* no payload: the task is parked */
    const char *headers;              /* DLQ_HDRS bytes (borrowed), NULL none */
    size_t headers_len;
    const char *missing_why;          /* with payload_missing: why it is parked (text) */
    bool has_id_hash;                 /* id_hash is dlq_queue_id_hash() of env->task_id */
    uint32_t id_hash;
};

/*
 * A failure that is not an envelope: a consumer of another stream gave up
 * on a message (a JetStream advisory, DESIGN section 16). Every pointer is
 * borrowed for the call.
 */
struct dlq_foreign {
    const char *id;              /* the task id (1..max_task_id_len bytes) */
    size_t id_len;
    const char *payload;         /* the original message's bytes, republished as they are */
    size_t payload_len;
    bool payload_missing;        /* the original is gone: payload empty, the task is parked */
    const char *missing_why;     /* with payload_missing: why (text), e.g. "no message 7" */
    const char *headers;         /* the original's headers (DLQ_HDRS), NULL none */
    size_t headers_len;
    const char *error;           /* e.g. "max deliveries exceeded (3)" */
    const char *error_type;      /* "jetstream.max_deliveries" or "jetstream.terminated" */
    const char *retry_subject;   /* the original subject; NULL when unknown (payload missing) */
    const char *subject;         /* the failure subject: the original's, or the advisory's */
    uint64_t seq;                /* the advisory's capture-stream sequence (redelivery) */
    int64_t max_payload;         /* the transport's cap on one message; <= 0 none */
};

/*
 * The decision on one failure. task (STORED) is the task, valid until the
 * next machine call; status and next_retry_at (wall ms, 0 none) are what the
 * answer reports. reason (INVALID: static, e.g. "too_big"; REFUSED: NULL)
 * and why (text) explain a refusal; refused_full is set for a full queue.
 * unknown_keys is set once the envelope's unknown keys were counted.
 */
struct dlq_decision {
    dlq_verdict verdict;
    struct dlq_task *task;
    const char *status;
    int64_t next_retry_at;
    const char *reason;
    bool refused_full;
    unsigned unknown_keys; /* keys outside the contract, counted: the caller warns */
    char why[256];
};

/*
 * dlq_ingest() takes one failure (DESIGN sections 4, 6, 7): resolves its
 * retry subject, classifies it, applies the strategy and the queue's caps,
 * then files it: a new task or a reopened episode is scheduled (or parked:
 * policy never, retry subject refused), a repeat of a pending task keeps
 * its schedule unless the repeat changed what it rests on, a repeat while
 * retrying fails the attempt in flight, an exhausted task only has its
 * record updated. A JetStream failure whose stream_seq is at or below the
 * one its task recorded is a redelivery (REDELIVERED, counted as
 * redelivered): nothing changes, and it is never refused. Counts enqueued, duplicates, skipped, refused_full,
 * failures_while_retrying; emits enqueued/skipped/refused. Fills *out; the
 * caller answers and logs refusals. Every source of failures (core NATS,
 * JetStream, HTTP) calls this. Loop thread.
 */
void dlq_ingest(struct dlq_machine *m, const struct dlq_failure *f, int64_t now_wall,
                int64_t now_mono, struct dlq_decision *out);

/*
 * dlq_ingest_foreign() takes a failure that is not an envelope (an
 * advisory, struct dlq_foreign) through the same decision as dlq_ingest():
 * a task of id x->id with the payload and headers x holds (republished
 * with its retries), error and error_type x's, the category from the
 * classifier, the retry subject x->retry_subject (checked against
 * retry.allowed_subjects like an envelope's). With payload_missing the
 * task is filed parked (park_reason says why, event "enqueued"), counted
 * in payload_missing: never dropped. An advisory sequence at or below the
 * one the task recorded is a redelivery (REDELIVERED). Never asks the
 * admit port (nobody waits for an answer; the caller acks the advisory
 * once the task is accepted). Fills *out. Loop thread.
 */
void dlq_ingest_foreign(struct dlq_machine *m, const struct dlq_foreign *x, int64_t now_wall,
                        int64_t now_mono, struct dlq_decision *out);

/* ---- cluster partitions (partition.c) --------------------------------------------------------- */

/*
 * dlq_partition_of() is the partition of the task id of len bytes at id
 * among partitions (cluster.partitions, DESIGN section 18): FNV-1a 64 of
 * the id's bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
 * mod partitions, in [0, partitions). Fixed for a deployment: every
 * sidecar, and every tool that routes by partition, must compute the same.
 * Returns 0 when partitions is 0. Pure; any thread.
 */
uint32_t dlq_partition_of(const char *id, size_t len, uint32_t partitions);

#endif
