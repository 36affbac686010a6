/* policy.c - the name tables of the policy enums (priorities too), default retry policies and ingest decisions. */
#include "policy.h"

const char *const policy_category_names[POLICY_CAT_COUNT + 1] = {
    [POLICY_CAT_TRANSIENT] = "transient",
    [POLICY_CAT_NETWORK] = "network",
    [POLICY_CAT_RESOURCE] = "resource",
    [POLICY_CAT_PERMISSION] = "permission",
    [POLICY_CAT_VALIDATION] = "validation",
    [POLICY_CAT_PERMANENT] = "permanent",
    [POLICY_CAT_COUNT] = NULL,
};

const char *const policy_retry_auto_names[POLICY_RETRY_COUNT + 2] = {
    [0] = "auto",
    [1 + POLICY_NEVER] = "never",
    [1 + POLICY_LINEAR] = "linear",
    [1 + POLICY_EXPONENTIAL] = "exponential",
    [1 + POLICY_IMMEDIATE] = "immediate",
    [1 + POLICY_RETRY_COUNT] = NULL,
};

/* The policy_retry names alone, indexed by the enum. */
static const char *const *const retry_names = policy_retry_auto_names + 1;

const char *const policy_strategy_names[POLICY_STRATEGY_COUNT + 1] = {
    [POLICY_STRATEGY_AUTOMATIC] = "automatic",
    [POLICY_STRATEGY_SELECTIVE] = "selective",
    [POLICY_STRATEGY_MANUAL] = "manual",
    [POLICY_STRATEGY_DISABLED] = "disabled",
    [POLICY_STRATEGY_COUNT] = NULL,
};

const char *const policy_priority_names[POLICY_PRIO_COUNT + 1] = {
    [POLICY_PRIO_HIGH] = "high",
    [POLICY_PRIO_NORMAL] = "normal",
    [POLICY_PRIO_LOW] = "low",
    [POLICY_PRIO_COUNT] = NULL,
};

const int policy_priority_weights[POLICY_PRIO_COUNT] = {6, 3, 1};

const char *const policy_match_field_names[POLICY_MATCH_COUNT + 1] = {
    [POLICY_MATCH_ANY] = "any",
    [POLICY_MATCH_ERROR_TYPE] = "error_type",
    [POLICY_MATCH_ERROR] = "error",
    [POLICY_MATCH_COUNT] = NULL,
};

/* ASCII-only lower case, so that the locale never changes what parses. */
static char
ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/*
 * Looks len bytes at s up in names (n entries, lower case) without regard to
 * ASCII case. Returns the index, or -1 when nothing matches exactly.
 */
static int
lookup(const char *const *names, int n, const char *s, size_t len)
{
    int i;
    size_t k;

    if (s == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        const char *name = names[i];

        for (k = 0; k < len && name[k] != '\0'; k++) {
            if (ascii_lower(s[k]) != name[k])
                break;
        }
        if (k == len && name[k] == '\0')
            return i;
    }
    return -1;
}

/*
 * NAMES_BOTH_WAYS defines <type>_name() and <type>_parse() over one name
 * table (names, n entries): the table serves both directions, so a name
 * is spelt once. Out of range names "unknown"; a parse that matches no
 * name (or has no out) is SC_EINVAL.
 */
#define NAMES_BOTH_WAYS(type, names, n)                                                          \
    const char *type##_name(type v)                                                             \
    {                                                                                           \
        return (int)v < 0 || (int)v >= (n) ? "unknown" : (names)[v];                            \
    }                                                                                           \
    sc_status type##_parse(const char *s, size_t len, type *out)                                \
    {                                                                                           \
        int i = lookup((names), (n), s, len);                                                   \
        if (i < 0 || out == NULL)                                                               \
            return SC_EINVAL;                                                                   \
        *out = (type)i;                                                                         \
        return SC_OK;                                                                           \
    }

NAMES_BOTH_WAYS(policy_category, policy_category_names, POLICY_CAT_COUNT)
NAMES_BOTH_WAYS(policy_retry, retry_names, POLICY_RETRY_COUNT)
NAMES_BOTH_WAYS(policy_strategy, policy_strategy_names, POLICY_STRATEGY_COUNT)
NAMES_BOTH_WAYS(policy_priority, policy_priority_names, POLICY_PRIO_COUNT)

policy_retry
policy_default_retry(policy_category c)
{
    switch (c) {
    case POLICY_CAT_TRANSIENT:
    case POLICY_CAT_NETWORK:
        return POLICY_EXPONENTIAL;
    case POLICY_CAT_RESOURCE:
        return POLICY_LINEAR;
    default:
        return POLICY_NEVER;
    }
}

bool
policy_category_retryable(policy_category c)
{
    return policy_default_retry(c) != POLICY_NEVER;
}

bool
policy_should_store(policy_strategy s, policy_retry effective, bool enqueue)
{
    switch (s) {
    case POLICY_STRATEGY_AUTOMATIC:
        return true;
    case POLICY_STRATEGY_SELECTIVE:
        return effective != POLICY_NEVER && (int)effective >= 0 && effective < POLICY_RETRY_COUNT;
    case POLICY_STRATEGY_MANUAL:
        return enqueue;
    default:
        return false;
    }
}
