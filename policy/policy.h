/* policy.h - error classification, retry policies, backoff with jitter and ingest strategies. */
#ifndef DLQ_POLICY_H
#define DLQ_POLICY_H

#include "common.h"

/* Error categories of DESIGN section 7, in that order. */
typedef enum {
    POLICY_CAT_TRANSIENT = 0,
    POLICY_CAT_NETWORK,
    POLICY_CAT_RESOURCE,
    POLICY_CAT_PERMISSION,
    POLICY_CAT_VALIDATION,
    POLICY_CAT_PERMANENT,
    POLICY_CAT_COUNT
} policy_category;

/* Retry policies. */
typedef enum {
    POLICY_NEVER = 0,
    POLICY_LINEAR,
    POLICY_EXPONENTIAL,
    POLICY_IMMEDIATE,
    POLICY_RETRY_COUNT
} policy_retry;

/* Ingest strategies (DESIGN section 7). */
typedef enum {
    POLICY_STRATEGY_AUTOMATIC = 0,
    POLICY_STRATEGY_SELECTIVE,
    POLICY_STRATEGY_MANUAL,
    POLICY_STRATEGY_DISABLED,
    POLICY_STRATEGY_COUNT
} policy_strategy;

/*
 * Retry priorities (issue 17): when retry.max_in_flight or
 * retry.max_per_second hold retries back, high goes before normal before
 * low in a 6:3:1 share (no level starves).
 */
typedef enum {
    POLICY_PRIO_HIGH = 0,
    POLICY_PRIO_NORMAL,
    POLICY_PRIO_LOW,
    POLICY_PRIO_COUNT
} policy_priority;

/*
 * policy_priority_names[p] is p's name ("high", "normal", "low");
 * [POLICY_PRIO_COUNT] is NULL. policy_priority_weights[p] is p's share of
 * the retries dispatched while a limit holds some back (6, 3, 1). Static,
 * read-only; any thread.
 */
extern const char *const policy_priority_names[POLICY_PRIO_COUNT + 1];
extern const int policy_priority_weights[POLICY_PRIO_COUNT];

/*
 * Name <-> value. *_name() returns a static lower-case name ("network",
 * "exponential", "selective"), or "unknown". *_parse() matches len bytes at s
 * case-insensitively, sets *out and returns SC_OK, or returns SC_EINVAL and
 * leaves *out unchanged. Any thread.
 */
const char *policy_category_name(policy_category c);
sc_status policy_category_parse(const char *s, size_t len, policy_category *out);
const char *policy_retry_name(policy_retry p);
sc_status policy_retry_parse(const char *s, size_t len, policy_retry *out);
const char *policy_strategy_name(policy_strategy s);
sc_status policy_strategy_parse(const char *s, size_t len, policy_strategy *out);
const char *policy_priority_name(policy_priority p);
sc_status policy_priority_parse(const char *s, size_t len, policy_priority *out);

/*
 * The name tables behind those functions, the one copy of each (config/
 * lists them as the allowed values of its enum keys). Each is indexed by
 * its enum and ends with a NULL entry: policy_category_names[POLICY_CAT_COUNT]
 * and policy_strategy_names[POLICY_STRATEGY_COUNT] are NULL.
 * policy_retry_auto_names is "auto" (no fixed policy: the category's
 * default, policy_default_retry()) followed by the policy_retry names, so
 * policy_retry_auto_names[1 + p] names p and [1 + POLICY_RETRY_COUNT] is
 * NULL; policy_retry_parse() does not accept "auto". Static, read-only;
 * any thread.
 */
extern const char *const policy_category_names[POLICY_CAT_COUNT + 1];
extern const char *const policy_retry_auto_names[POLICY_RETRY_COUNT + 2];
extern const char *const policy_strategy_names[POLICY_STRATEGY_COUNT + 1];

/*
 * policy_default_retry() is the category's default policy: exponential for
 * transient and network, linear for resource, never for the rest.
 */
policy_retry policy_default_retry(policy_category c);

/* policy_category_retryable() is true when the category's default policy is not never. */
bool policy_category_retryable(policy_category c);

/*
 * policy_should_store() applies an ingest strategy (DESIGN section 7):
 * automatic -> always; selective -> only when the effective policy is not
 * never; manual -> only when enqueue is set; disabled -> never.
 */
bool policy_should_store(policy_strategy s, policy_retry effective, bool enqueue);

/* Which text of a failure a rule looks at. */
typedef enum {
    POLICY_MATCH_ANY = 0,  /* error_type or error */
    POLICY_MATCH_ERROR_TYPE,
    POLICY_MATCH_ERROR,
    POLICY_MATCH_COUNT
} policy_match_field;

/*
 * policy_match_field_names[f] is f's name as the configuration spells it
 * ("any", "error_type", "error"); [POLICY_MATCH_COUNT] is NULL. Static,
 * read-only; any thread.
 */
extern const char *const policy_match_field_names[POLICY_MATCH_COUNT + 1];

/*
 * Limits on classification rules, checked by policy_classifier_new():
 * POLICY_RULE_ID_MAX is the longest id in bytes, POLICY_PATTERN_MAX the
 * longest pattern in bytes, POLICY_RULES_MAX the most user rules.
 */
#define POLICY_RULE_ID_MAX 64
#define POLICY_PATTERN_MAX 4096
#define POLICY_RULES_MAX 1024

/* One classification rule, as config/ hands it over (strings borrowed during the call). */
struct policy_rule_spec {
    const char *id;      /* unique, shown as classifier_rule; 1-64 chars [A-Za-z0-9_.-] */
    const char *pattern; /* PCRE2 pattern, matched case-insensitively (UTF mode off) */
    policy_category category;
    policy_match_field field;
};

struct policy_classifier; /* opaque: compiled rules plus a reusable match block */

/*
 * policy_classifier_new() compiles the rules: user rules first (in order),
 * then the built-in rules unless replace_builtin. nrules may be 0. On success
 * sets *out and returns SC_OK. Returns SC_EINVAL when a pattern does not
 * compile or an id is bad or repeated; then err (errlen bytes, may be NULL)
 * holds "classifier.rules[2].pattern: missing ) at offset 7"-style text
 * (indexes are 0-based). A user id equal to a built-in rule's id (unless
 * replace_builtin) or to "default" counts as repeated. Patterns that ask for
 * UTF mode with (*UTF) are refused. Beyond the POLICY_* limits above: SC_EINVAL.
 * Free with policy_classifier_free() (NULL is a no-op). Build on any thread;
 * a classifier is then used by one thread at a time.
 */
sc_status policy_classifier_new(const struct policy_rule_spec *rules, size_t nrules,
                                bool replace_builtin, struct policy_classifier **out,
                                char *err, size_t errlen);
void policy_classifier_free(struct policy_classifier *pc);

/*
 * policy_classify() returns the category of the first rule that matches
 * error_type (len etlen, may be NULL/0) or error (len elen, may be NULL/0),
 * case-insensitively, and sets *rule_id (may be NULL) to its id (static or
 * owned by pc; lives as long as pc). When nothing matches: POLICY_CAT_PERMANENT
 * with rule id "default". Bytes need not be valid UTF-8 or NUL-terminated.
 * An absent text (NULL or 0 bytes) matches no rule; a match that runs into
 * PCRE2's match limit counts as no match. Answers are cached per pc (up to
 * 8,192 recent (error_type, error) pairs of at most 512 bytes together; a
 * new classifier starts empty), so a repeated text costs one hash and one
 * compare. No allocation in steady state (the match block and the cache's
 * slots are reused). Never fails. Thread: the one using pc.
 */
policy_category policy_classify(struct policy_classifier *pc, const char *error_type, size_t etlen,
                                const char *error, size_t elen, const char **rule_id);

/* policy_classifier_count() returns how many rules pc holds (built-ins included). */
size_t policy_classifier_count(const struct policy_classifier *pc);

/*
 * Backoff parameters, all in integer milliseconds except jitter, a fraction
 * in [0, 1]. Delays never overflow or go negative for any attempt number or
 * any values, including max_delay_ms = INT64_MAX. A negative step, base or
 * cap counts as 0; a jitter above 1 counts as 1, below 0 or NaN as 0.
 */
struct policy_backoff {
    int64_t linear_step_ms; /* default 300000 */
    int64_t exp_base_ms;    /* default 60000 */
    int64_t max_delay_ms;   /* default 3600000 */
    double jitter;          /* default 0.1 */
};

/* policy_backoff_default() fills b with the defaults above. */
void policy_backoff_default(struct policy_backoff *b);

/*
 * A random source: returns a uniformly distributed 64-bit value. Tests inject
 * a fixed or scripted one; ctx is passed through.
 */
typedef uint64_t (*policy_rand_fn)(void *ctx);

/*
 * policy_backoff_raw() is the delay in ms before attempt n (n >= 1; n < 1 is
 * taken as 1) with no jitter: immediate 0, linear step*n, exponential
 * base*2^(n-1), each capped at max_delay_ms (saturating, never overflowing).
 * never returns -1 (no automatic retry). Any thread.
 */
int64_t policy_backoff_raw(const struct policy_backoff *b, policy_retry p, int64_t n);

/*
 * policy_backoff_delay() is policy_backoff_raw() jittered by a uniform factor
 * in [1 - jitter, 1 + jitter] drawn from rnd(ctx) (rnd NULL: a thread-local
 * xorshift seeded from the clock), then clamped to [0, max_delay_ms].
 * Returns -1 for never. Any thread (rnd permitting).
 */
int64_t policy_backoff_delay(const struct policy_backoff *b, policy_retry p, int64_t n,
                             policy_rand_fn rnd, void *ctx);

/*
 * A backoff delay list (issue 17): delays before attempts 1, 2, ... n; the
 * last one repeats for every later attempt. n is 0 (no list: the policy's
 * formula applies) to SC_DELAYS_MAX; each delay is in [1, SC_DELAY_MAX_MS] ms.
 */
struct policy_delays {
    uint32_t n;
    int64_t ms[SC_DELAYS_MAX];
};

/* Longest text policy_delays_format() writes: 32 x "604800000," plus the NUL. */
#define POLICY_DELAYS_TEXT_MAX 384

/*
 * policy_delays_parse() reads len bytes at s as delays separated by commas
 * and/or blanks ("1s, 10s 1m,10m"; each as sc_parse_duration_ms(): a bare
 * integer is ms). Sets *out and returns SC_OK; returns SC_EINVAL for no
 * delay at all, more than SC_DELAYS_MAX, text that is no duration or a
 * delay outside 1 ms - 7 d; err (errlen bytes, may be NULL) then says which
 * entry ("entry 3: '0s' is out of range 1ms-7d", entries counted from 0).
 * Any thread.
 */
sc_status policy_delays_parse(const char *s, size_t len, struct policy_delays *out, char *err,
                              size_t errlen);

/*
 * policy_delays_format() writes d as integer ms joined by "," ("1000,10000")
 * into out (outlen bytes, NUL-terminated; POLICY_DELAYS_TEXT_MAX always
 * suffices) and returns the length without the NUL. This is the form a task
 * keeps, and policy_delays_parse() reads it back. Any thread.
 */
size_t policy_delays_format(const struct policy_delays *d, char *out, size_t outlen);

/*
 * policy_delays_raw() is the delay in ms before attempt n (n < 1 taken as 1)
 * with no jitter: d->ms[n - 1], or the last delay once n passes d->n.
 * Returns -1 when d is NULL or empty. Any thread.
 */
int64_t policy_delays_raw(const struct policy_delays *d, int64_t n);

/*
 * policy_delays_delay() is policy_delays_raw() jittered by a uniform factor
 * in [1 - jitter, 1 + jitter] (jitter as struct policy_backoff's: clamped to
 * [0, 1]; rnd as policy_backoff_delay()), then clamped to
 * [0, SC_DELAY_MAX_MS]. backoff.max_delay_ms does not cap a list: its
 * delays are explicit. Returns -1 when d is NULL or empty. Any thread.
 */
int64_t policy_delays_delay(const struct policy_delays *d, int64_t n, double jitter,
                            policy_rand_fn rnd, void *ctx);

#endif
