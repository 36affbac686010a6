/* classify.c - the error classifier: ordered PCRE2 rules, user rules first, then the built-in table. */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "policy.h"
#include "policy-internal.h"

#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * NUM() matches HTTP-style status codes as whole numbers: a word on its own,
 * not part of a decimal or grouped number, and not a quantity followed by a
 * unit of time or size, so "HTTP 400", "400 Bad Request" and "status=400."
 * match while "order 14001", "HTTP 4001", "1.400 s", "400.5 ms", "1,400
 * rows", "timeout after 400 ms", "503 bytes" and "429 s" do not ("400ms"
 * is no whole word anyway).
 */
#define NUM_UNITS                                                                                  \
    "(?:[mn]s|s|secs?|seconds?|(?:milli|micro|nano)seconds?|mins?|minutes?|h|hrs?|hours?"        \
    "|days?|b|bytes?|[kmgt]i?b|[kmgt]bytes|octets?)"
#define NUM(codes) "(?<!\\d[.,])\\b(?:" codes ")\\b(?![.,]\\d)(?!\\s?-?" NUM_UNITS "\\b)"

/*
 * The built-in rules, tried in this order after the user's rules (all of
 * them on both error_type and error, case-insensitively):
 *
 *  #  id                     category    matches
 *  1  transient.rate_limit   transient   rate limit(ed/ing), ratelimit, too many requests,
 *                                        throttled/throttling, 429
 *  2  network.gateway        network     502, 504, bad gateway, gateway timeout
 *  3  transient.unavailable  transient   503, service unavailable, overloaded
 *  4  validation.bad_request validation  400, 422, bad request, unprocessable
 *  5  resource.memory        resource    out of memory (OutOfMemoryError), OOM, OOMKilled,
 *                                        ENOMEM, MemoryError, cannot allocate memory
 *  6  resource.disk          resource    ENOSPC, no space left, disk full, EDQUOT
 *  7  resource.files         resource    too many open files, EMFILE, ENFILE
 *  8  resource.quota         resource    quota (QuotaExceeded, disk quota exceeded, ...)
 *  9  permission.denied      permission  401, 403, unauthorized/unauthorised, forbidden,
 *                                        access denied, permission denied, PermissionError,
 *                                        not authorized, not permitted, authentication
 *                                        failed, invalid credentials, EACCES, EPERM
 * 10  network.dns            network     name resolution, getaddrinfo, ENOTFOUND,
 *                                        EAI_AGAIN/NONAME/NODATA/FAIL, no such host,
 *                                        unknown host (UnknownHostException), could not /
 *                                        couldn't resolve host, name or service not known,
 *                                        nodename nor servname, NXDOMAIN, DNS
 * 11  network.connection     network     connection refused/reset/aborted/closed/failed/
 *                                        error (ConnectionResetError, ...), ECONNREFUSED,
 *                                        ECONNRESET, ECONNABORTED, reset by peer, broken
 *                                        pipe, EPIPE, network/host (is) unreachable, no
 *                                        route to host, ENETUNREACH, EHOSTUNREACH,
 *                                        ENETDOWN, EHOSTDOWN, ENETRESET
 * 12  network.timeout        network     timeout, timed out, time-out (TimeoutError,
 *                                        ReadTimeout, ETIMEDOUT), deadline exceeded
 * 13  transient.temporary    transient   temporary, temporarily, try again, EAGAIN, EBUSY,
 *                                        unavailable
 * 14  validation.invalid     validation  invalid, malformed, schema, validation
 *                                        (ValidationError), ValueError, EINVAL
 *     (none matched)         permanent   rule id "default"
 *
 * Why this order: an explicit signal beats a word that merely appears in the
 * text. A rate limit wins over everything, since APIs send it as 403 or with
 * "quota" too. Status codes come next, because the server that sent them
 * knows best: "503 Service Unavailable: upstream request timeout" is
 * transient and "400 Bad Request for url: https://h/timeout" is validation.
 * Errno-style resource exhaustion beats the generic words, and quota comes
 * before permission because APIs answer 403 for quota. DNS comes before
 * connection and before "temporary" ("Temporary failure in name resolution"
 * is a DNS failure). The loosest words, "temporary" and "invalid", come last.
 */
struct builtin_rule {
    const char *id;
    policy_category category;
    const char *pattern;
};

static const struct builtin_rule builtin_rules[] = {
    {"transient.rate_limit", POLICY_CAT_TRANSIENT,
     "rate[ _-]?limit|too[ _-]?many[ _-]?requests|throttl|" NUM("429")},
    {"network.gateway", POLICY_CAT_NETWORK,
     NUM("502|504") "|bad[ _-]?gateway|gateway[ _-]?time[ _-]?out"},
    {"transient.unavailable", POLICY_CAT_TRANSIENT,
     NUM("503") "|service[ _-]?unavailable|overloaded"},
    {"validation.bad_request", POLICY_CAT_VALIDATION,
     NUM("400|422") "|bad[ _-]?request|unprocessable"},
    {"resource.memory", POLICY_CAT_RESOURCE,
     "out[ _-]?of[ _-]?memory|\\bOOM(?:[ _-]?kill(?:ed|er)?)?\\b|\\bENOMEM\\b|MemoryError"
     "|cannot allocate memory"},
    {"resource.disk", POLICY_CAT_RESOURCE,
     "\\bENOSPC\\b|no space left|disk[ _-]?(?:is[ _-]?)?full|\\bEDQUOT\\b"},
    {"resource.files", POLICY_CAT_RESOURCE,
     "too[ _-]?many[ _-]?open[ _-]?files|\\bE[MN]FILE\\b"},
    {"resource.quota", POLICY_CAT_RESOURCE,
     "quota"},
    {"permission.denied", POLICY_CAT_PERMISSION,
     NUM("401|403") "|unauthori[sz]ed|forbidden|access[ _-]?denied|permission[ _-]?denied"
     "|PermissionError|not[ _-]?authori[sz]ed|not[ _-]?permitted|authentication[ _-]?failed"
     "|invalid[ _-]?credentials|\\bEACCES\\b|\\bEPERM\\b"},
    {"network.dns", POLICY_CAT_NETWORK,
     "name[ _-]?resolution|getaddrinfo|\\bENOTFOUND\\b|\\bEAI_(?:AGAIN|NONAME|NODATA|FAIL)\\b"
     "|no such host|unknown[ _-]?host|(?:could ?not|couldn'?t) resolve (?:host|proxy)"
     "|name or service not known|nodename nor servname|\\bNXDOMAIN\\b|\\bDNS\\b"},
    {"network.connection", POLICY_CAT_NETWORK,
     "connection[ _-]?(?:refused|reset|aborted|closed|failed|error)"
     "|\\bECONN(?:REFUSED|RESET|ABORTED)\\b|reset by peer|broken[ _-]?pipe|\\bEPIPE\\b"
     "|(?:network|host)[ _-]?(?:is[ _-]?)?unreachable|no route to host"
     "|\\bE(?:NET|HOST)(?:UNREACH|DOWN)\\b|\\bENETRESET\\b"},
    {"network.timeout", POLICY_CAT_NETWORK,
     "time[_-]?out|timed[ _-]?out|deadline[ _-]?exceeded"},
    {"transient.temporary", POLICY_CAT_TRANSIENT,
     "temporar(?:y|ily)|try[ _-]?again|\\bEAGAIN\\b|\\bEBUSY\\b|unavailable"},
    {"validation.invalid", POLICY_CAT_VALIDATION,
     "invalid|malformed|schema|validation|ValueError|\\bEINVAL\\b"},
};

#define BUILTIN_COUNT SC_ARRAY_LEN(builtin_rules)

/* The id reported when no rule matches; no rule may take it. */
static const char default_rule_id[] = "default";

/*
 * Matching limits, so that a user pattern prone to catastrophic backtracking
 * cannot stall the loop thread on a hostile error text: PCRE2's match limit
 * (backtracking steps per start position), the interpreter's heap for
 * backtracking frames (KiB), and the JIT stack (bytes).
 */
#define MATCH_LIMIT 1000000
#define HEAP_LIMIT_KIB 8192
#define JIT_STACK_START (32 * 1024)
#define JIT_STACK_MAX (1024 * 1024)

struct policy_rule {
    char id[POLICY_RULE_ID_MAX + 1];
    pcre2_code *code;
    policy_category category;
    policy_match_field field;
};

/*
 * The classification cache. A failure's category is a pure function of its
 * (error_type, error) texts for one classifier, and failure texts repeat, so
 * policy_classify() keeps the last answers in a 2-way set-associative table
 * of CACHE_SETS x 2 slots indexed by a hash seeded per classifier. A hit
 * compares the whole texts; a miss evicts the set's older way (no chains,
 * nothing a sender can grow). Texts longer than CACHE_KEY_MAX together are
 * not cached. Each slot's key buffer is allocated on its first use and then
 * reused, so steady state allocates nothing. The cache lives and dies with
 * the classifier: a reload (a new classifier) starts empty.
 */
#define CACHE_SETS 4096
#define CACHE_KEY_MAX 512

struct cache_slot {
    uint64_t h;
    uint32_t etlen, elen; /* error_type then error in key */
    int32_t rule;         /* index into rules; -1: no rule matched ("default") */
    uint8_t has_et;       /* error_type was present (not NULL) */
    uint8_t used;
    char *key;            /* CACHE_KEY_MAX bytes once used */
};

struct policy_classifier {
    struct cache_slot *cache; /* 2 * CACHE_SETS slots, allocated on the first classify */
    uint64_t cache_seed;
    uint64_t cache_hits, cache_misses;
    struct policy_rule *rules; /* nrules entries in match order */
    size_t nrules;
    pcre2_general_context *gctx; /* our allocator, counting into allocs */
    pcre2_match_context *mctx;   /* limits and the JIT stack */
    pcre2_jit_stack *jit_stack;  /* NULL when JIT is not available */
    pcre2_match_data *md;        /* reused by every match */
    size_t allocs;
};

static void *
pcre_alloc(PCRE2_SIZE n, void *data)
{
    struct policy_classifier *pc = data;

    pc->allocs++;
    return malloc(n);
}

static void
pcre_free(void *p, void *data)
{
    (void)data;
    free(p);
}

static void
set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* True when id is 1 to POLICY_RULE_ID_MAX characters of [A-Za-z0-9_.-]. */
static bool
id_valid(const char *id)
{
    size_t i;

    if (id == NULL)
        return false;
    for (i = 0; id[i] != '\0'; i++) {
        char c = id[i];

        if (i >= POLICY_RULE_ID_MAX)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return i > 0;
}

static bool
builtin_has(const char *id)
{
    size_t i;

    for (i = 0; i < BUILTIN_COUNT; i++) {
        if (strcmp(builtin_rules[i].id, id) == 0)
            return true;
    }
    return false;
}

/* Index of the rule of pc with this id, or -1. */
static long
rule_find(const struct policy_classifier *pc, const char *id)
{
    size_t i;

    for (i = 0; i < pc->nrules; i++) {
        if (strcmp(pc->rules[i].id, id) == 0)
            return (long)i;
    }
    return -1;
}

/*
 * Compiles pattern and appends it as the next rule of pc (whose rules array
 * has room). label names the rule in err ("classifier.rules[2]"). Returns
 * SC_OK, SC_EINVAL (the pattern does not compile or is too long) or
 * SC_ENOMEM.
 */
static sc_status
rule_add(struct policy_classifier *pc, pcre2_compile_context *cctx, const char *label,
         const char *id, const char *pattern, policy_category category,
         policy_match_field field, char *err, size_t errlen)
{
    struct policy_rule *r = &pc->rules[pc->nrules];
    PCRE2_UCHAR msg[160];
    PCRE2_SIZE erroff = 0;
    int errcode = 0;

    if (pattern == NULL) {
        set_err(err, errlen, "%s.pattern: missing", label);
        return SC_EINVAL;
    }
    if (strnlen(pattern, POLICY_PATTERN_MAX + 1) > POLICY_PATTERN_MAX) {
        set_err(err, errlen, "%s.pattern: longer than %d bytes", label, POLICY_PATTERN_MAX);
        return SC_EINVAL;
    }
    r->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                            PCRE2_CASELESS | PCRE2_NEVER_UTF | PCRE2_NEVER_UCP, &errcode,
                            &erroff, cctx);
    if (r->code == NULL) {
        if (errcode == PCRE2_ERROR_HEAP_FAILED) {
            set_err(err, errlen, "%s.pattern: out of memory", label);
            return SC_ENOMEM;
        }
        if (pcre2_get_error_message(errcode, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", errcode);
        set_err(err, errlen, "%s.pattern: %s at offset %zu", label, (const char *)msg,
                (size_t)erroff);
        return SC_EINVAL;
    }
    /* JIT is an optimisation: when it fails the interpreter runs the rule. */
    if (pc->jit_stack != NULL)
        (void)pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->category = category;
    r->field = field;
    pc->nrules++;
    return SC_OK;
}

/*
 * Checks user rule i (not its pattern) against the rules added so far.
 * Returns SC_OK or SC_EINVAL with err set.
 */
static sc_status
spec_check(const struct policy_classifier *pc, const struct policy_rule_spec *spec,
           const char *label, bool replace_builtin, char *err, size_t errlen)
{
    long k;

    if (!id_valid(spec->id)) {
        set_err(err, errlen, "%s.id: must be 1-%d characters of A-Z, a-z, 0-9, '_', '.', '-'",
                label, POLICY_RULE_ID_MAX);
        return SC_EINVAL;
    }
    if (strcmp(spec->id, default_rule_id) == 0) {
        set_err(err, errlen, "%s.id: \"%s\" is reserved for failures that no rule matches", label,
                default_rule_id);
        return SC_EINVAL;
    }
    k = rule_find(pc, spec->id);
    if (k >= 0) {
        set_err(err, errlen, "%s.id: \"%s\" repeats classifier.rules[%ld].id", label, spec->id, k);
        return SC_EINVAL;
    }
    if (!replace_builtin && builtin_has(spec->id)) {
        set_err(err, errlen,
                "%s.id: \"%s\" is a built-in rule's id; pick another or set "
                "classifier.replace_builtin",
                label, spec->id);
        return SC_EINVAL;
    }
    if ((int)spec->category < 0 || spec->category >= POLICY_CAT_COUNT) {
        set_err(err, errlen, "%s.category: %d is not a category", label, (int)spec->category);
        return SC_EINVAL;
    }
    if ((int)spec->field < 0 || spec->field > POLICY_MATCH_ERROR) {
        set_err(err, errlen, "%s.field: %d is not error_type, error or both", label,
                (int)spec->field);
        return SC_EINVAL;
    }
    return SC_OK;
}

sc_status
policy_classifier_new(const struct policy_rule_spec *rules, size_t nrules, bool replace_builtin,
                      struct policy_classifier **out, char *err, size_t errlen)
{
    struct policy_classifier *pc = NULL;
    pcre2_compile_context *cctx = NULL;
    sc_status s = SC_EINVAL;
    char label[64];
    size_t i, total;
    uint32_t jit = 0;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL) {
        set_err(err, errlen, "classifier: no place for the result");
        goto done;
    }
    *out = NULL;
    if (rules == NULL && nrules > 0) {
        set_err(err, errlen, "classifier.rules: %zu rules but no array", nrules);
        goto done;
    }
    if (nrules > POLICY_RULES_MAX) {
        set_err(err, errlen, "classifier.rules: %zu rules, at most %d allowed", nrules,
                POLICY_RULES_MAX);
        goto done;
    }

    total = nrules + (replace_builtin ? 0 : BUILTIN_COUNT);
    pc = sc_xcalloc(1, sizeof *pc);
    pc->rules = sc_xcalloc(total > 0 ? total : 1, sizeof *pc->rules);

    pc->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, pc);
    if (pc->gctx != NULL) {
        cctx = pcre2_compile_context_create(pc->gctx);
        pc->mctx = pcre2_match_context_create(pc->gctx);
        pc->md = pcre2_match_data_create(1, pc->gctx); /* the whole match only: no captures */
    }
    if (cctx == NULL || pc->mctx == NULL || pc->md == NULL) {
        s = SC_ENOMEM;
        set_err(err, errlen, "classifier: out of memory");
        goto done;
    }
    pcre2_set_match_limit(pc->mctx, MATCH_LIMIT);
    pcre2_set_heap_limit(pc->mctx, HEAP_LIMIT_KIB);
    if (pcre2_config(PCRE2_CONFIG_JIT, &jit) >= 0 && jit != 0) {
        pc->jit_stack = pcre2_jit_stack_create(JIT_STACK_START, JIT_STACK_MAX, pc->gctx);
        if (pc->jit_stack != NULL)
            pcre2_jit_stack_assign(pc->mctx, NULL, pc->jit_stack);
    }

    for (i = 0; i < nrules; i++) {
        snprintf(label, sizeof label, "classifier.rules[%zu]", i);
        s = spec_check(pc, &rules[i], label, replace_builtin, err, errlen);
        if (s != SC_OK)
            goto done;
        s = rule_add(pc, cctx, label, rules[i].id, rules[i].pattern, rules[i].category,
                     rules[i].field, err, errlen);
        if (s != SC_OK)
            goto done;
    }
    if (!replace_builtin) {
        for (i = 0; i < BUILTIN_COUNT; i++) {
            snprintf(label, sizeof label, "classifier.builtin[%s]", builtin_rules[i].id);
            s = rule_add(pc, cctx, label, builtin_rules[i].id, builtin_rules[i].pattern,
                         builtin_rules[i].category, POLICY_MATCH_ANY, err, errlen);
            if (s != SC_OK)
                goto done;
        }
    }

    *out = pc;
    pc = NULL;
    s = SC_OK;
done:
    pcre2_compile_context_free(cctx);
    policy_classifier_free(pc);
    return s;
}

void
policy_classifier_free(struct policy_classifier *pc)
{
    size_t i;

    if (pc == NULL)
        return;
    for (i = 0; i < pc->nrules; i++)
        pcre2_code_free(pc->rules[i].code);
    pcre2_match_data_free(pc->md);
    pcre2_jit_stack_free(pc->jit_stack);
    pcre2_match_context_free(pc->mctx);
    pcre2_general_context_free(pc->gctx);
    if (pc->cache != NULL) {
        for (i = 0; i < 2 * CACHE_SETS; i++)
            free(pc->cache[i].key);
        free(pc->cache);
    }
    free(pc->rules);
    free(pc);
}

/*
 * True when code matches the len bytes at s. Absent text matches nothing.
 * Errors count as no match; only a JIT stack overflow is run again by the
 * interpreter, which has its own limits.
 */
static bool
text_matches(struct policy_classifier *pc, const pcre2_code *code, const char *s, size_t len)
{
    int rc;

    if (s == NULL || len == 0)
        return false;
    rc = pcre2_match(code, (PCRE2_SPTR)s, (PCRE2_SIZE)len, 0, 0, pc->md, pc->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(code, (PCRE2_SPTR)s, (PCRE2_SIZE)len, 0, PCRE2_NO_JIT, pc->md,
                         pc->mctx);
    return rc >= 0;
}

/* The answer of rule index k (-1: no rule) as policy_classify() returns it. */
static policy_category
answer(const struct policy_classifier *pc, int32_t k, const char **rule_id)
{
    if (k < 0) {
        if (rule_id != NULL)
            *rule_id = default_rule_id;
        return POLICY_CAT_PERMANENT;
    }
    if (rule_id != NULL)
        *rule_id = pc->rules[k].id;
    return pc->rules[k].category;
}

/* Runs the rules in order; returns the index of the first that matches, or -1. */
static int32_t
match_rules(struct policy_classifier *pc, const char *error_type, size_t etlen, const char *error,
            size_t elen)
{
    for (size_t i = 0; i < pc->nrules; i++) {
        const struct policy_rule *r = &pc->rules[i];

        if ((r->field != POLICY_MATCH_ERROR && text_matches(pc, r->code, error_type, etlen)) ||
            (r->field != POLICY_MATCH_ERROR_TYPE && text_matches(pc, r->code, error, elen)))
            return (int32_t)i;
    }
    return -1;
}

policy_category
policy_classify(struct policy_classifier *pc, const char *error_type, size_t etlen,
                const char *error, size_t elen, const char **rule_id)
{
    struct cache_slot *set, *slot;
    uint64_t h;
    int32_t k;

    if (pc == NULL)
        return answer(pc, -1, rule_id);
    if (error_type == NULL)
        etlen = 0;
    if (error == NULL)
        elen = 0;
    if (etlen > CACHE_KEY_MAX || elen > CACHE_KEY_MAX - etlen)
        return answer(pc, match_rules(pc, error_type, etlen, error, elen), rule_id);
    if (pc->cache == NULL) {
        pc->cache = sc_xcalloc(2 * CACHE_SETS, sizeof *pc->cache);
        pc->cache_seed = sc_random_u64();
    }
    h = sc_hash64(sc_hash64(pc->cache_seed ^ (error_type != NULL), error_type, etlen), error,
                   elen);
    set = &pc->cache[(h % CACHE_SETS) * 2];
    for (int w = 0; w < 2; w++) {
        slot = &set[w];
        if (slot->used && slot->h == h && slot->etlen == etlen && slot->elen == elen &&
            slot->has_et == (error_type != NULL) &&
            (etlen == 0 || memcmp(slot->key, error_type, etlen) == 0) &&
            (elen == 0 || memcmp(slot->key + etlen, error, elen) == 0)) {
            pc->cache_hits++;
            return answer(pc, slot->rule, rule_id);
        }
    }
    pc->cache_misses++;
    k = match_rules(pc, error_type, etlen, error, elen);
    /* The newest answer takes way 0; the one it displaces moves to way 1 (least recent out). */
    {
        struct cache_slot old = set[1];

        set[1] = set[0];
        set[0] = old;
    }
    slot = &set[0];
    if (slot->key == NULL)
        slot->key = sc_xmalloc(CACHE_KEY_MAX);
    if (etlen > 0)
        memcpy(slot->key, error_type, etlen);
    if (elen > 0)
        memcpy(slot->key + etlen, error, elen);
    slot->h = h;
    slot->etlen = (uint32_t)etlen;
    slot->elen = (uint32_t)elen;
    slot->has_et = error_type != NULL;
    slot->rule = k;
    slot->used = 1;
    return answer(pc, k, rule_id);
}

size_t
policy_classifier_count(const struct policy_classifier *pc)
{
    return pc != NULL ? pc->nrules : 0;
}

size_t
policy_classifier_allocs(const struct policy_classifier *pc)
{
    return pc != NULL ? pc->allocs : 0;
}

void
policy_classifier_cache_stats(const struct policy_classifier *pc, uint64_t *hits, uint64_t *misses)
{
    *hits = pc != NULL ? pc->cache_hits : 0;
    *misses = pc != NULL ? pc->cache_misses : 0;
}

size_t
policy_builtin_count(void)
{
    return BUILTIN_COUNT;
}

const char *
policy_builtin_id(size_t i)
{
    return i < BUILTIN_COUNT ? builtin_rules[i].id : NULL;
}
