/* test_policy.c - unit tests of policy/: names, strategies, the classifier and backoff with jitter. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "policy-internal.h"

/* ---- names, defaults and strategies ---------------------------------------------------- */

static void
test_category_names(void **state)
{
    static const struct {
        policy_category c;
        const char *name;
    } cases[] = {
        {POLICY_CAT_TRANSIENT, "transient"},   {POLICY_CAT_NETWORK, "network"},
        {POLICY_CAT_RESOURCE, "resource"},     {POLICY_CAT_PERMISSION, "permission"},
        {POLICY_CAT_VALIDATION, "validation"}, {POLICY_CAT_PERMANENT, "permanent"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        policy_category got = POLICY_CAT_COUNT;
        char upper[32];
        size_t k;

        assert_string_equal(policy_category_name(cases[i].c), cases[i].name);
        assert_int_equal(policy_category_parse(cases[i].name, strlen(cases[i].name), &got), SC_OK);
        assert_int_equal(got, cases[i].c);
        for (k = 0; cases[i].name[k] != '\0'; k++)
            upper[k] = (char)(cases[i].name[k] - 'a' + 'A');
        got = POLICY_CAT_COUNT;
        assert_int_equal(policy_category_parse(upper, k, &got), SC_OK);
        assert_int_equal(got, cases[i].c);
    }
    assert_string_equal(policy_category_name(POLICY_CAT_COUNT), "unknown");
    assert_string_equal(policy_category_name((policy_category)-1), "unknown");
}

static void
test_parse_errors(void **state)
{
    policy_category c = POLICY_CAT_RESOURCE;
    policy_retry p = POLICY_LINEAR;
    policy_strategy s = POLICY_STRATEGY_MANUAL;

    (void)state;
    /* len bounds the text: "networkX" read as 7 bytes is "network". */
    assert_int_equal(policy_category_parse("networkX", 7, &c), SC_OK);
    assert_int_equal(c, POLICY_CAT_NETWORK);
    c = POLICY_CAT_RESOURCE;
    assert_int_equal(policy_category_parse("networkX", 8, &c), SC_EINVAL);
    assert_int_equal(policy_category_parse("net", 3, &c), SC_EINVAL);
    assert_int_equal(policy_category_parse("", 0, &c), SC_EINVAL);
    assert_int_equal(policy_category_parse(NULL, 0, &c), SC_EINVAL);
    assert_int_equal(policy_category_parse("net\0work", 8, &c), SC_EINVAL);
    assert_int_equal(c, POLICY_CAT_RESOURCE); /* unchanged on error */

    assert_int_equal(policy_retry_parse("nevermore", 9, &p), SC_EINVAL);
    assert_int_equal(policy_retry_parse("ne", 2, &p), SC_EINVAL);
    assert_int_equal(p, POLICY_LINEAR);
    assert_int_equal(policy_strategy_parse("auto", 4, &s), SC_EINVAL);
    assert_int_equal(policy_strategy_parse("automatically", 13, &s), SC_EINVAL);
    assert_int_equal(s, POLICY_STRATEGY_MANUAL);
}

/* The exported tables are the ones *_name() read, indexed by the enum and NULL-terminated. */
static void
test_name_tables(void **state)
{
    policy_retry p = POLICY_LINEAR;
    int i;

    (void)state;
    for (i = 0; i < POLICY_CAT_COUNT; i++)
        assert_ptr_equal(policy_category_names[i], policy_category_name((policy_category)i));
    assert_null(policy_category_names[POLICY_CAT_COUNT]);
    for (i = 0; i < POLICY_STRATEGY_COUNT; i++)
        assert_ptr_equal(policy_strategy_names[i], policy_strategy_name((policy_strategy)i));
    assert_null(policy_strategy_names[POLICY_STRATEGY_COUNT]);
    assert_string_equal(policy_retry_auto_names[0], "auto");
    for (i = 0; i < POLICY_RETRY_COUNT; i++)
        assert_ptr_equal(policy_retry_auto_names[1 + i], policy_retry_name((policy_retry)i));
    assert_null(policy_retry_auto_names[1 + POLICY_RETRY_COUNT]);
    assert_int_equal(policy_retry_parse("auto", 4, &p), SC_EINVAL); /* "auto" is no policy */
    assert_int_equal(p, POLICY_LINEAR);
    assert_string_equal(policy_match_field_names[POLICY_MATCH_ANY], "any");
    assert_string_equal(policy_match_field_names[POLICY_MATCH_ERROR_TYPE], "error_type");
    assert_string_equal(policy_match_field_names[POLICY_MATCH_ERROR], "error");
    assert_null(policy_match_field_names[POLICY_MATCH_COUNT]);
}

static void
test_retry_and_strategy_names(void **state)
{
    static const struct {
        policy_retry p;
        const char *name;
        const char *mixed;
    } retries[] = {
        {POLICY_NEVER, "never", "Never"},
        {POLICY_LINEAR, "linear", "LINEAR"},
        {POLICY_EXPONENTIAL, "exponential", "ExPoNeNtIaL"},
        {POLICY_IMMEDIATE, "immediate", "immediatE"},
    };
    static const struct {
        policy_strategy s;
        const char *name;
        const char *mixed;
    } strategies[] = {
        {POLICY_STRATEGY_AUTOMATIC, "automatic", "Automatic"},
        {POLICY_STRATEGY_SELECTIVE, "selective", "SELECTIVE"},
        {POLICY_STRATEGY_MANUAL, "manual", "mAnUaL"},
        {POLICY_STRATEGY_DISABLED, "disabled", "Disabled"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < SC_ARRAY_LEN(retries); i++) {
        policy_retry got = POLICY_RETRY_COUNT;

        assert_string_equal(policy_retry_name(retries[i].p), retries[i].name);
        assert_int_equal(policy_retry_parse(retries[i].mixed, strlen(retries[i].mixed), &got),
                         SC_OK);
        assert_int_equal(got, retries[i].p);
    }
    for (i = 0; i < SC_ARRAY_LEN(strategies); i++) {
        policy_strategy got = POLICY_STRATEGY_COUNT;

        assert_string_equal(policy_strategy_name(strategies[i].s), strategies[i].name);
        assert_int_equal(
            policy_strategy_parse(strategies[i].mixed, strlen(strategies[i].mixed), &got), SC_OK);
        assert_int_equal(got, strategies[i].s);
    }
    assert_string_equal(policy_retry_name(POLICY_RETRY_COUNT), "unknown");
    assert_string_equal(policy_strategy_name(POLICY_STRATEGY_COUNT), "unknown");
}

static void
test_default_retry(void **state)
{
    static const struct {
        policy_category c;
        policy_retry want;
        bool retryable;
    } cases[] = {
        {POLICY_CAT_TRANSIENT, POLICY_EXPONENTIAL, true},
        {POLICY_CAT_NETWORK, POLICY_EXPONENTIAL, true},
        {POLICY_CAT_RESOURCE, POLICY_LINEAR, true},
        {POLICY_CAT_PERMISSION, POLICY_NEVER, false},
        {POLICY_CAT_VALIDATION, POLICY_NEVER, false},
        {POLICY_CAT_PERMANENT, POLICY_NEVER, false},
        {POLICY_CAT_COUNT, POLICY_NEVER, false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        assert_int_equal(policy_default_retry(cases[i].c), cases[i].want);
        assert_int_equal(policy_category_retryable(cases[i].c), cases[i].retryable);
    }
}

/* The four ingest strategies against every effective policy, with and without enqueue. */
static void
test_should_store(void **state)
{
    static const struct {
        policy_strategy s;
        policy_retry effective;
        bool enqueue;
        bool want;
    } cases[] = {
        {POLICY_STRATEGY_AUTOMATIC, POLICY_NEVER, false, true},
        {POLICY_STRATEGY_AUTOMATIC, POLICY_EXPONENTIAL, false, true},
        {POLICY_STRATEGY_AUTOMATIC, POLICY_LINEAR, true, true},
        {POLICY_STRATEGY_SELECTIVE, POLICY_NEVER, false, false},
        {POLICY_STRATEGY_SELECTIVE, POLICY_NEVER, true, false},
        {POLICY_STRATEGY_SELECTIVE, POLICY_LINEAR, false, true},
        {POLICY_STRATEGY_SELECTIVE, POLICY_EXPONENTIAL, false, true},
        {POLICY_STRATEGY_SELECTIVE, POLICY_IMMEDIATE, false, true},
        {POLICY_STRATEGY_MANUAL, POLICY_EXPONENTIAL, false, false},
        {POLICY_STRATEGY_MANUAL, POLICY_NEVER, false, false},
        {POLICY_STRATEGY_MANUAL, POLICY_NEVER, true, true},
        {POLICY_STRATEGY_MANUAL, POLICY_LINEAR, true, true},
        {POLICY_STRATEGY_DISABLED, POLICY_EXPONENTIAL, false, false},
        {POLICY_STRATEGY_DISABLED, POLICY_EXPONENTIAL, true, false},
        {POLICY_STRATEGY_DISABLED, POLICY_NEVER, true, false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        if (policy_should_store(cases[i].s, cases[i].effective, cases[i].enqueue) != cases[i].want)
            fail_msg("case %zu: %s/%s/enqueue=%d: want %d", i, policy_strategy_name(cases[i].s),
                     policy_retry_name(cases[i].effective), cases[i].enqueue, cases[i].want);
    }
}

/* ---- classifier ------------------------------------------------------------------------- */

struct classify_case {
    const char *error_type; /* NULL: absent */
    const char *error;      /* NULL: absent */
    policy_category want;
    const char *rule;
};

static const struct classify_case builtin_cases[] = {
    /* the cases the design asks for */
    {NULL, "400 Client Error: Bad Request for url: https://x/y", POLICY_CAT_VALIDATION,
     "validation.bad_request"},
    {NULL, "Provider error: 400 Bad Request\n", POLICY_CAT_VALIDATION, "validation.bad_request"},
    {"HTTP 429", NULL, POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    {NULL, "ECONNRESET", POLICY_CAT_NETWORK, "network.connection"},
    {NULL, "order 14001 failed", POLICY_CAT_PERMANENT, "default"},
    {NULL, "HTTP 4001", POLICY_CAT_PERMANENT, "default"},
    {"TimeoutError", NULL, POLICY_CAT_NETWORK, "network.timeout"},
    {"ValueError", NULL, POLICY_CAT_VALIDATION, "validation.invalid"},
    /* transient */
    {NULL, "Rate limit exceeded, retry in 30s", POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    {NULL, "request was rate-limited", POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    {NULL, "429 Too Many Requests", POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    {"TooManyRequestsError", NULL, POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    {"ThrottlingException", "Rate exceeded", POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    {NULL, "403 Forbidden: API rate limit exceeded", POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    {"HTTP 503", NULL, POLICY_CAT_TRANSIENT, "transient.unavailable"},
    {NULL, "503 Service Unavailable: upstream request timeout", POLICY_CAT_TRANSIENT,
     "transient.unavailable"},
    {NULL, "ServiceUnavailable", POLICY_CAT_TRANSIENT, "transient.unavailable"},
    {NULL, "The service is temporarily down", POLICY_CAT_TRANSIENT, "transient.temporary"},
    {NULL, "Resource temporarily unavailable", POLICY_CAT_TRANSIENT, "transient.temporary"},
    {NULL, "temporary glitch", POLICY_CAT_TRANSIENT, "transient.temporary"},
    {NULL, "EAGAIN", POLICY_CAT_TRANSIENT, "transient.temporary"},
    /* network */
    {NULL, "connection refused", POLICY_CAT_NETWORK, "network.connection"},
    {"ConnectionRefusedError", "[Errno 111] Connection refused", POLICY_CAT_NETWORK,
     "network.connection"},
    {NULL, "read ECONNRESET", POLICY_CAT_NETWORK, "network.connection"},
    {NULL, "connect ECONNREFUSED 127.0.0.1:5432", POLICY_CAT_NETWORK, "network.connection"},
    {NULL, "Connection reset by peer", POLICY_CAT_NETWORK, "network.connection"},
    {"ConnectionAbortedError", NULL, POLICY_CAT_NETWORK, "network.connection"},
    {"BrokenPipeError", "[Errno 32] Broken pipe", POLICY_CAT_NETWORK, "network.connection"},
    {NULL, "Network is unreachable", POLICY_CAT_NETWORK, "network.connection"},
    {NULL, "connect ETIMEDOUT 10.0.0.1:443", POLICY_CAT_NETWORK, "network.timeout"},
    {NULL, "Read timed out. (read timeout=30)", POLICY_CAT_NETWORK, "network.timeout"},
    {"ReadTimeout", NULL, POLICY_CAT_NETWORK, "network.timeout"},
    {NULL, "rpc error: code = DeadlineExceeded", POLICY_CAT_NETWORK, "network.timeout"},
    {NULL, "Temporary failure in name resolution", POLICY_CAT_NETWORK, "network.dns"},
    {NULL, "getaddrinfo EAI_AGAIN api.example.com", POLICY_CAT_NETWORK, "network.dns"},
    {NULL, "getaddrinfo ENOTFOUND db.internal", POLICY_CAT_NETWORK, "network.dns"},
    {NULL, "dial tcp: lookup db on 10.0.0.2:53: no such host", POLICY_CAT_NETWORK, "network.dns"},
    {"java.net.UnknownHostException", NULL, POLICY_CAT_NETWORK, "network.dns"},
    {NULL, "Could not resolve host: example.invalid", POLICY_CAT_NETWORK, "network.dns"},
    {NULL, "502 Bad Gateway", POLICY_CAT_NETWORK, "network.gateway"},
    {NULL, "504 Gateway Timeout", POLICY_CAT_NETWORK, "network.gateway"},
    {"HTTP 502", NULL, POLICY_CAT_NETWORK, "network.gateway"},
    {NULL, "upstream answered 504", POLICY_CAT_NETWORK, "network.gateway"},
    /* resource */
    {"MemoryError", NULL, POLICY_CAT_RESOURCE, "resource.memory"},
    {NULL, "java.lang.OutOfMemoryError: Java heap space", POLICY_CAT_RESOURCE, "resource.memory"},
    {NULL, "out of memory", POLICY_CAT_RESOURCE, "resource.memory"},
    {NULL, "worker OOMKilled", POLICY_CAT_RESOURCE, "resource.memory"},
    {NULL, "OOM", POLICY_CAT_RESOURCE, "resource.memory"},
    {NULL, "mmap: Cannot allocate memory (ENOMEM)", POLICY_CAT_RESOURCE, "resource.memory"},
    {NULL, "write /data/x: no space left on device", POLICY_CAT_RESOURCE, "resource.disk"},
    {"ENOSPC", NULL, POLICY_CAT_RESOURCE, "resource.disk"},
    {NULL, "disk full", POLICY_CAT_RESOURCE, "resource.disk"},
    {NULL, "Quota exceeded for project p1", POLICY_CAT_RESOURCE, "resource.quota"},
    {NULL, "403 Forbidden: quotaExceeded", POLICY_CAT_RESOURCE, "resource.quota"},
    {NULL, "accept: Too many open files", POLICY_CAT_RESOURCE, "resource.files"},
    {"EMFILE", NULL, POLICY_CAT_RESOURCE, "resource.files"},
    /* permission */
    {NULL, "401 Unauthorized", POLICY_CAT_PERMISSION, "permission.denied"},
    {"HTTP 403", NULL, POLICY_CAT_PERMISSION, "permission.denied"},
    {NULL, "403 Forbidden", POLICY_CAT_PERMISSION, "permission.denied"},
    {NULL, "Access denied for user 'app'@'10.0.0.3'", POLICY_CAT_PERMISSION, "permission.denied"},
    {NULL, "open /etc/x: permission denied", POLICY_CAT_PERMISSION, "permission.denied"},
    {"PermissionError", NULL, POLICY_CAT_PERMISSION, "permission.denied"},
    {NULL, "EACCES: open '/x'", POLICY_CAT_PERMISSION, "permission.denied"},
    {"EPERM", NULL, POLICY_CAT_PERMISSION, "permission.denied"},
    {NULL, "401 Unauthorized: invalid token", POLICY_CAT_PERMISSION, "permission.denied"},
    /* validation */
    {NULL, "HTTP 400", POLICY_CAT_VALIDATION, "validation.bad_request"},
    {NULL, "status=400.", POLICY_CAT_VALIDATION, "validation.bad_request"},
    {NULL, "422 Unprocessable Entity", POLICY_CAT_VALIDATION, "validation.bad_request"},
    {NULL, "400 Bad Request for url: https://h/timeout", POLICY_CAT_VALIDATION,
     "validation.bad_request"},
    {NULL, "invalid email address", POLICY_CAT_VALIDATION, "validation.invalid"},
    {NULL, "JSON schema mismatch at /items/0", POLICY_CAT_VALIDATION, "validation.invalid"},
    {"ValidationError", NULL, POLICY_CAT_VALIDATION, "validation.invalid"},
    {NULL, "malformed payload", POLICY_CAT_VALIDATION, "validation.invalid"},
    /* numbers only as whole words, not inside other numbers */
    {NULL, "took 1.400 s then crashed", POLICY_CAT_PERMANENT, "default"},
    {NULL, "processed 1,400 rows then crashed", POLICY_CAT_PERMANENT, "default"},
    {NULL, "latency 400.5 ms", POLICY_CAT_PERMANENT, "default"},
    {NULL, "item 5030 failed", POLICY_CAT_PERMANENT, "default"},
    {NULL, "code 4290", POLICY_CAT_PERMANENT, "default"},
    /* a number with a unit of time or size is a quantity, not a status code */
    {NULL, "upstream timeout after 400 ms", POLICY_CAT_NETWORK, "network.timeout"},
    {NULL, "upstream timeout after 400ms", POLICY_CAT_NETWORK, "network.timeout"},
    {NULL, "read 503 bytes then the peer went away", POLICY_CAT_PERMANENT, "default"},
    {NULL, "backed off 429 s", POLICY_CAT_PERMANENT, "default"},
    {NULL, "waited 502 seconds for the lock", POLICY_CAT_PERMANENT, "default"},
    {NULL, "a 400-byte frame was cut", POLICY_CAT_PERMANENT, "default"},
    {NULL, "body of 401 KB refused", POLICY_CAT_PERMANENT, "default"},
    {NULL, "took 403 MS", POLICY_CAT_PERMANENT, "default"},
    {NULL, "HTTP 400 after 503 ms", POLICY_CAT_VALIDATION, "validation.bad_request"},
    {NULL, "status 503 (took 12 ms)", POLICY_CAT_TRANSIENT, "transient.unavailable"},
    {NULL, "400 Bad Request", POLICY_CAT_VALIDATION, "validation.bad_request"},
    {NULL, "503 Service Unavailable", POLICY_CAT_TRANSIENT, "transient.unavailable"},
    {NULL, "429 Too Many Requests", POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    /* nothing known */
    {NULL, "404 Client Error: Not Found for url: https://x/y", POLICY_CAT_PERMANENT, "default"},
    {"NullPointerException", "boom", POLICY_CAT_PERMANENT, "default"},
    {NULL, "", POLICY_CAT_PERMANENT, "default"},
    {"", "", POLICY_CAT_PERMANENT, "default"},
    {NULL, NULL, POLICY_CAT_PERMANENT, "default"},
    /* both texts: the first rule in order wins, whichever text it matched */
    {"HTTP 429", "connection reset", POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    {"ValueError", "connection reset", POLICY_CAT_NETWORK, "network.connection"},
    /* case-insensitivity */
    {"timeouterror", NULL, POLICY_CAT_NETWORK, "network.timeout"},
    {"VALUEERROR", NULL, POLICY_CAT_VALIDATION, "validation.invalid"},
    {NULL, "econnreset", POLICY_CAT_NETWORK, "network.connection"},
    {NULL, "CONNECTION REFUSED", POLICY_CAT_NETWORK, "network.connection"},
    {NULL, "bAd ReQuEsT", POLICY_CAT_VALIDATION, "validation.bad_request"},
    {NULL, "PeRmIsSiOn DeNiEd", POLICY_CAT_PERMISSION, "permission.denied"},
    {NULL, "RATE LIMITED", POLICY_CAT_TRANSIENT, "transient.rate_limit"},
    {NULL, "No Space Left On Device", POLICY_CAT_RESOURCE, "resource.disk"},
};

static void
run_cases(struct policy_classifier *pc, const struct classify_case *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const struct classify_case *c = &cases[i];
        const char *rule = NULL;
        policy_category got;

        got = policy_classify(pc, c->error_type, c->error_type ? strlen(c->error_type) : 0,
                              c->error, c->error ? strlen(c->error) : 0, &rule);
        assert_non_null(rule);
        if (got != c->want || strcmp(rule, c->rule) != 0)
            fail_msg("case %zu (type \"%s\", error \"%s\"): got %s/%s, want %s/%s", i,
                     c->error_type ? c->error_type : "(null)", c->error ? c->error : "(null)",
                     policy_category_name(got), rule, policy_category_name(c->want), c->rule);
    }
}

static void
test_classify_builtin(void **state)
{
    struct policy_classifier *pc = NULL;
    char err[256];

    (void)state;
    assert_int_equal(policy_classifier_new(NULL, 0, false, &pc, err, sizeof err), SC_OK);
    assert_non_null(pc);
    assert_string_equal(err, "");
    run_cases(pc, builtin_cases, SC_ARRAY_LEN(builtin_cases));
    policy_classifier_free(pc);
}

/* The built-in ids are a contract (they show up as classifier_rule): this is their order. */
static void
test_builtin_ids(void **state)
{
    static const char *const want[] = {
        "transient.rate_limit", "network.gateway",    "transient.unavailable",
        "validation.bad_request", "resource.memory",  "resource.disk",
        "resource.files",       "resource.quota",     "permission.denied",
        "network.dns",          "network.connection", "network.timeout",
        "transient.temporary",  "validation.invalid",
    };
    struct policy_classifier *pc = NULL;
    size_t i;

    (void)state;
    assert_int_equal(policy_builtin_count(), SC_ARRAY_LEN(want));
    for (i = 0; i < SC_ARRAY_LEN(want); i++)
        assert_string_equal(policy_builtin_id(i), want[i]);
    assert_null(policy_builtin_id(SC_ARRAY_LEN(want)));

    assert_int_equal(policy_classifier_new(NULL, 0, false, &pc, NULL, 0), SC_OK);
    assert_int_equal(policy_classifier_count(pc), SC_ARRAY_LEN(want));
    policy_classifier_free(pc);
    assert_int_equal(policy_classifier_count(NULL), 0);
}

/* Lengths are honoured exactly: no NUL needed, NULs and invalid UTF-8 are plain bytes. */
static void
test_classify_raw_bytes(void **state)
{
    static const char bad_utf8[] = "\xff\xfe\xc3(\x80 connection refused \xed\xa0\x80\xc0";
    static const char with_nul[] = "x\0ECONNRESET";
    struct policy_classifier *pc = NULL;
    const char *rule = NULL;
    unsigned char all[256];
    char *exact;
    size_t i;

    (void)state;
    assert_int_equal(policy_classifier_new(NULL, 0, false, &pc, NULL, 0), SC_OK);

    /* exactly len bytes on the heap, no NUL after them: ASan catches any overread */
    exact = malloc(10);
    assert_non_null(exact);
    memcpy(exact, "ECONNRESET", 10);
    assert_int_equal(policy_classify(pc, NULL, 0, exact, 10, &rule), POLICY_CAT_NETWORK);
    assert_string_equal(rule, "network.connection");
    assert_int_equal(policy_classify(pc, exact, 10, NULL, 0, &rule), POLICY_CAT_NETWORK);
    free(exact);

    /* "HTTP 4290" read as 8 bytes is "HTTP 429" */
    assert_int_equal(policy_classify(pc, "HTTP 4290", 8, NULL, 0, &rule), POLICY_CAT_TRANSIENT);
    assert_string_equal(rule, "transient.rate_limit");
    assert_int_equal(policy_classify(pc, "HTTP 4290", 9, NULL, 0, &rule), POLICY_CAT_PERMANENT);
    assert_string_equal(rule, "default");

    assert_int_equal(policy_classify(pc, NULL, 0, bad_utf8, sizeof bad_utf8 - 1, &rule),
                     POLICY_CAT_NETWORK);
    assert_string_equal(rule, "network.connection");
    assert_int_equal(policy_classify(pc, NULL, 0, with_nul, sizeof with_nul - 1, &rule),
                     POLICY_CAT_NETWORK);
    assert_int_equal(policy_classify(pc, NULL, 0, with_nul, 1, &rule), POLICY_CAT_PERMANENT);

    /* a non-NULL pointer with length 0 is absent text */
    assert_int_equal(policy_classify(pc, "ECONNRESET", 0, "ECONNRESET", 0, &rule),
                     POLICY_CAT_PERMANENT);
    assert_string_equal(rule, "default");

    for (i = 0; i < sizeof all; i++)
        all[i] = (unsigned char)i;
    assert_int_equal(policy_classify(pc, NULL, 0, (const char *)all, sizeof all, &rule),
                     POLICY_CAT_PERMANENT);
    assert_string_equal(rule, "default");

    /* rule_id may be NULL; a NULL classifier answers "default" */
    assert_int_equal(policy_classify(pc, NULL, 0, "ENOSPC", 6, NULL), POLICY_CAT_RESOURCE);
    rule = NULL;
    assert_int_equal(policy_classify(NULL, NULL, 0, "ENOSPC", 6, &rule), POLICY_CAT_PERMANENT);
    assert_string_equal(rule, "default");
    policy_classifier_free(pc);
}

/* User rules come first, so a user rule overrides a built-in that would also match. */
static void
test_user_rule_overrides_builtin(void **state)
{
    static const struct policy_rule_spec rules[] = {
        {"orders.retry_400", "order service .*\\b400\\b", POLICY_CAT_TRANSIENT, POLICY_MATCH_ERROR},
        {"acme.type", "^AcmeError$", POLICY_CAT_RESOURCE, POLICY_MATCH_ERROR_TYPE},
        {"acme.text", "flux capacitor", POLICY_CAT_NETWORK, POLICY_MATCH_ERROR},
        {"acme.any", "\\bwidget\\b", POLICY_CAT_PERMISSION, POLICY_MATCH_ANY},
        {"my-timeouts_are.fatal", "timeout", POLICY_CAT_PERMANENT, POLICY_MATCH_ERROR_TYPE},
    };
    static const struct classify_case cases[] = {
        {NULL, "order service returned 400 Bad Request", POLICY_CAT_TRANSIENT, "orders.retry_400"},
        {NULL, "ORDER SERVICE SAYS 400", POLICY_CAT_TRANSIENT, "orders.retry_400"},
        {NULL, "billing returned 400 Bad Request", POLICY_CAT_VALIDATION, "validation.bad_request"},
        /* the field is honoured */
        {"order service 400", NULL, POLICY_CAT_VALIDATION, "validation.bad_request"},
        {"AcmeError", NULL, POLICY_CAT_RESOURCE, "acme.type"},
        {"acmeerror", "x", POLICY_CAT_RESOURCE, "acme.type"},
        {NULL, "AcmeError", POLICY_CAT_PERMANENT, "default"},
        {NULL, "the flux capacitor broke", POLICY_CAT_NETWORK, "acme.text"},
        {"Flux Capacitor", NULL, POLICY_CAT_PERMANENT, "default"},
        {"widget", NULL, POLICY_CAT_PERMISSION, "acme.any"},
        {NULL, "bad widget", POLICY_CAT_PERMISSION, "acme.any"},
        {NULL, "widgets", POLICY_CAT_PERMANENT, "default"},
        {"TimeoutError", NULL, POLICY_CAT_PERMANENT, "my-timeouts_are.fatal"},
        {NULL, "read timeout", POLICY_CAT_NETWORK, "network.timeout"},
        /* the built-ins still follow */
        {NULL, "ECONNRESET", POLICY_CAT_NETWORK, "network.connection"},
    };
    struct policy_classifier *pc = NULL;
    char err[256];

    (void)state;
    assert_int_equal(policy_classifier_new(rules, SC_ARRAY_LEN(rules), false, &pc, err, sizeof err),
                     SC_OK);
    assert_int_equal(policy_classifier_count(pc), SC_ARRAY_LEN(rules) + policy_builtin_count());
    run_cases(pc, cases, SC_ARRAY_LEN(cases));
    policy_classifier_free(pc);
}

static void
test_replace_builtin(void **state)
{
    static const struct policy_rule_spec rules[] = {
        /* with replace_builtin a user rule may take a built-in's id */
        {"network.timeout", "deadline", POLICY_CAT_NETWORK, POLICY_MATCH_ANY},
        {"only.mine", "^E[A-Z]+$", POLICY_CAT_RESOURCE, POLICY_MATCH_ERROR_TYPE},
    };
    static const struct classify_case cases[] = {
        {NULL, "deadline passed", POLICY_CAT_NETWORK, "network.timeout"},
        {"ECONNRESET", NULL, POLICY_CAT_RESOURCE, "only.mine"},
        {NULL, "ECONNRESET", POLICY_CAT_PERMANENT, "default"},
        {NULL, "HTTP 429", POLICY_CAT_PERMANENT, "default"},
        {"TimeoutError", NULL, POLICY_CAT_PERMANENT, "default"},
        {NULL, "400 Bad Request", POLICY_CAT_PERMANENT, "default"},
    };
    static const struct classify_case empty_cases[] = {
        {NULL, "ECONNRESET", POLICY_CAT_PERMANENT, "default"},
        {"ValueError", "HTTP 503", POLICY_CAT_PERMANENT, "default"},
    };
    struct policy_classifier *pc = NULL;

    (void)state;
    assert_int_equal(policy_classifier_new(rules, SC_ARRAY_LEN(rules), true, &pc, NULL, 0), SC_OK);
    assert_int_equal(policy_classifier_count(pc), 2);
    run_cases(pc, cases, SC_ARRAY_LEN(cases));
    policy_classifier_free(pc);

    pc = NULL;
    assert_int_equal(policy_classifier_new(NULL, 0, true, &pc, NULL, 0), SC_OK);
    assert_int_equal(policy_classifier_count(pc), 0);
    run_cases(pc, empty_cases, SC_ARRAY_LEN(empty_cases));
    policy_classifier_free(pc);
    policy_classifier_free(NULL);
}

/* A bad rule set: SC_EINVAL, *out stays NULL, and err names the rule's index and key. */
static void
test_bad_rules(void **state)
{
    static char long_id[POLICY_RULE_ID_MAX + 2];
    static char max_id[POLICY_RULE_ID_MAX + 1];
    static char long_pattern[POLICY_PATTERN_MAX + 2];
    static const struct policy_rule_spec ok = {"ok.rule", "fine", POLICY_CAT_NETWORK,
                                               POLICY_MATCH_ANY};
    struct {
        struct policy_rule_spec spec; /* becomes rules[2], after two good rules */
        bool replace_builtin;
        const char *want; /* substring of err */
    } cases[] = {
        {{"bad.pattern", "(unclosed", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].pattern: missing closing parenthesis at offset 9"},
        {{"bad.pattern", "a{2,1}", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].pattern: "},
        {{"utf", "(*UTF)x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].pattern: "},
        {{"null.pattern", NULL, POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].pattern: missing"},
        {{"long.pattern", long_pattern, POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].pattern: longer than 4096 bytes"},
        {{"ok.rule", "x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].id: \"ok.rule\" repeats classifier.rules[0].id"},
        {{"ok.rule", "x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, true,
         "classifier.rules[2].id: \"ok.rule\" repeats classifier.rules[0].id"},
        {{"network.timeout", "x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].id: \"network.timeout\" is a built-in rule's id"},
        {{"default", "x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, true,
         "classifier.rules[2].id: \"default\" is reserved"},
        {{"", "x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false, "classifier.rules[2].id: must be"},
        {{NULL, "x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].id: must be"},
        {{"has space", "x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].id: must be"},
        {{"caf\xc3\xa9", "x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].id: must be"},
        {{long_id, "x", POLICY_CAT_NETWORK, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].id: must be 1-64 characters"},
        {{"bad.category", "x", POLICY_CAT_COUNT, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].category: "},
        {{"bad.category", "x", (policy_category)-1, POLICY_MATCH_ANY}, false,
         "classifier.rules[2].category: "},
        {{"bad.field", "x", POLICY_CAT_NETWORK, (policy_match_field)3}, false,
         "classifier.rules[2].field: "},
    };
    struct policy_rule_spec rules[3];
    struct policy_classifier *pc;
    char err[256];
    size_t i;

    (void)state;
    memset(long_id, 'a', POLICY_RULE_ID_MAX + 1);
    memset(max_id, 'b', POLICY_RULE_ID_MAX);
    memset(long_pattern, 'p', POLICY_PATTERN_MAX + 1);
    rules[0] = ok;
    rules[1] = ok;
    rules[1].id = max_id; /* exactly 64 characters is fine */

    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        pc = (struct policy_classifier *)&err; /* anything non-NULL: must be cleared */
        rules[2] = cases[i].spec;
        memset(err, 'x', sizeof err);
        assert_int_equal(policy_classifier_new(rules, 3, cases[i].replace_builtin, &pc, err,
                                               sizeof err),
                         SC_EINVAL);
        assert_null(pc);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: err \"%s\" lacks \"%s\"", i, err, cases[i].want);
    }

    /* the same rules, made good, build */
    rules[2] = ok;
    rules[2].id = "ok.third";
    pc = NULL;
    assert_int_equal(policy_classifier_new(rules, 3, false, &pc, err, sizeof err), SC_OK);
    assert_int_equal(policy_classifier_count(pc), 3 + policy_builtin_count());
    policy_classifier_free(pc);

    /* the first bad rule is the one reported */
    rules[0].pattern = "[";
    rules[2].pattern = ")";
    assert_int_equal(policy_classifier_new(rules, 3, false, &pc, err, sizeof err), SC_EINVAL);
    assert_non_null(strstr(err, "classifier.rules[0].pattern: "));

    /* err may be NULL or short (always NUL-terminated), rules NULL needs nrules 0 */
    assert_int_equal(policy_classifier_new(rules, 3, false, &pc, NULL, 0), SC_EINVAL);
    memset(err, 'x', sizeof err);
    assert_int_equal(policy_classifier_new(rules, 3, false, &pc, err, 8), SC_EINVAL);
    assert_string_equal(err, "classif");
    assert_int_equal(policy_classifier_new(NULL, 1, false, &pc, err, sizeof err), SC_EINVAL);
    assert_null(pc);
    assert_int_equal(policy_classifier_new(rules, POLICY_RULES_MAX + 1, false, &pc, err,
                                           sizeof err),
                     SC_EINVAL);
    assert_non_null(strstr(err, "at most 1024"));
    assert_int_equal(policy_classifier_new(NULL, 0, false, NULL, err, sizeof err), SC_EINVAL);
}

/* After a warm-up, classifying allocates nothing: the match block and its frames are reused. */
static void
test_classify_no_alloc(void **state)
{
    static const struct policy_rule_spec rules[] = {
        {"backtrack", "(a|b|ab)*qz", POLICY_CAT_RESOURCE, POLICY_MATCH_ANY},
        {"lookaround", "(?<=x)(\\w+)(?=y)", POLICY_CAT_RESOURCE, POLICY_MATCH_ERROR},
    };
    struct policy_classifier *pc = NULL;
    char long_text[4096];
    size_t before, round, i;

    (void)state;
    memset(long_text, 'a', sizeof long_text);
    memcpy(long_text + sizeof long_text - 11, " ECONNRESET", 11);
    assert_int_equal(policy_classifier_new(rules, 2, false, &pc, NULL, 0), SC_OK);
    for (round = 0; round < 3; round++) {
        if (round == 2)
            before = policy_classifier_allocs(pc);
        for (i = 0; i < SC_ARRAY_LEN(builtin_cases); i++) {
            const struct classify_case *c = &builtin_cases[i];

            (void)policy_classify(pc, c->error_type, c->error_type ? strlen(c->error_type) : 0,
                                  c->error, c->error ? strlen(c->error) : 0, NULL);
        }
        assert_int_equal(policy_classify(pc, NULL, 0, long_text, sizeof long_text, NULL),
                         POLICY_CAT_NETWORK);
    }
    assert_true(before > 0); /* the counter does see PCRE2's allocations */
    assert_int_equal(policy_classifier_allocs(pc), before);
    policy_classifier_free(pc);
}

/*
 * The classification cache answers exactly what the rules answer: every
 * built-in case again from the cache, then 30,000 texts (many more than the
 * cache holds, so sets evict) each asked three times of one classifier and
 * once of another that therefore always runs the rules. A new classifier
 * starts with an empty cache.
 */
static void
test_classify_cache(void **state)
{
    struct policy_classifier *pc = NULL, *pc2 = NULL;
    uint64_t hits = 0, misses = 0;
    char text[96], etype[32];
    const char *rule = NULL, *rule2 = NULL;
    size_t i;

    (void)state;
    assert_int_equal(policy_classifier_new(NULL, 0, false, &pc, NULL, 0), SC_OK);
    assert_int_equal(policy_classifier_new(NULL, 0, false, &pc2, NULL, 0), SC_OK);
    run_cases(pc, builtin_cases, SC_ARRAY_LEN(builtin_cases));
    policy_classifier_cache_stats(pc, &hits, &misses);
    assert_true(misses > 0);
    run_cases(pc, builtin_cases, SC_ARRAY_LEN(builtin_cases)); /* now from the cache */
    policy_classifier_cache_stats(pc, &hits, &misses);
    assert_true(hits >= SC_ARRAY_LEN(builtin_cases) / 2); /* most, unless a set overflowed */
    /* the expected answers first, from pc2; then pc answers 30,000 times with evictions */
    for (i = 0; i < 30000 + 7919; i++) {
        static const char *const forms[] = {"job %zu: connection refused", "HTTP %zu",
                                            "upstream timeout after %zu ms", "item %zu invalid",
                                            "%zu", "svc %zu failed"};
        static policy_category want[7919];
        static const char *want_rule[7919];
        size_t k = i % 7919; /* texts repeat across rounds */
        int n = snprintf(text, sizeof text, forms[k % SC_ARRAY_LEN(forms)], k);
        int en = snprintf(etype, sizeof etype, "E%zu", k % 3);
        const char *et = k % 5 ? etype : NULL;
        policy_category got;

        if (i < 7919) {
            want[k] = policy_classify(pc2, et, et ? (size_t)en : 0, text, (size_t)n, &rule2);
            want_rule[k] = rule2;
            continue;
        }
        got = policy_classify(pc, et, et ? (size_t)en : 0, text, (size_t)n, &rule);
        if (got != want[k] || strcmp(rule, want_rule[k]) != 0)
            fail_msg("\"%s\": cache says %s/%s, rules say %s/%s", text, policy_category_name(got),
                     rule, policy_category_name(want[k]), want_rule[k]);
    }
    policy_classifier_free(pc2);
    pc2 = NULL;
    assert_int_equal(policy_classifier_new(NULL, 0, false, &pc2, NULL, 0), SC_OK);
    policy_classifier_cache_stats(pc2, &hits, &misses);
    assert_true(hits == 0 && misses == 0);
    policy_classifier_free(pc2);
    policy_classifier_free(pc);
}

/* A pattern that backtracks catastrophically hits the match limit and counts as no match. */
static void
test_classify_match_limit(void **state)
{
    static const struct policy_rule_spec rules[] = {
        {"slow", "^(a+)+$", POLICY_CAT_RESOURCE, POLICY_MATCH_ERROR},
    };
    struct policy_classifier *pc = NULL;
    const char *rule = NULL;
    char text[64];

    (void)state;
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '!';
    assert_int_equal(policy_classifier_new(rules, 1, false, &pc, NULL, 0), SC_OK);
    assert_int_equal(policy_classify(pc, NULL, 0, text, sizeof text, &rule), POLICY_CAT_PERMANENT);
    assert_string_equal(rule, "default");
    assert_int_equal(policy_classify(pc, NULL, 0, text, sizeof text - 1, &rule),
                     POLICY_CAT_RESOURCE);
    assert_string_equal(rule, "slow");
    policy_classifier_free(pc);
}

/* ---- backoff ---------------------------------------------------------------------------- */

static uint64_t
fixed_rand(void *ctx)
{
    return *(const uint64_t *)ctx;
}

/* splitmix64: a deterministic, well-spread test source. */
static uint64_t
test_rand(void *ctx)
{
    uint64_t *s = ctx;
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void
test_backoff_default_values(void **state)
{
    struct policy_backoff b;

    (void)state;
    memset(&b, 0xff, sizeof b);
    policy_backoff_default(&b);
    assert_int_equal(b.linear_step_ms, 300000);
    assert_int_equal(b.exp_base_ms, 60000);
    assert_int_equal(b.max_delay_ms, 3600000);
    assert_true(b.jitter == 0.1);
}

struct backoff_case {
    int64_t step, base, max;
    policy_retry p;
    int64_t n;
    int64_t want;
};

#define DEF_STEP 300000
#define DEF_BASE 60000
#define DEF_MAX 3600000
#define BIG INT64_MAX

static const struct backoff_case backoff_cases[] = {
    /* defaults: the four policies */
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_NEVER, 1, -1},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_NEVER, 1000, -1},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_IMMEDIATE, 1, 0},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_IMMEDIATE, 64, 0},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, 1, 300000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, 2, 600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, 3, 900000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, 12, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, 13, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, 63, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, 64, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, 1000, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, INT64_MAX, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, 1, 60000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, 2, 120000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, 3, 240000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, 6, 1920000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, 7, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, 63, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, 64, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, 1000, 3600000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, INT64_MAX, 3600000},
    /* n < 1 is taken as 1 */
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_LINEAR, 0, 300000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, -7, 60000},
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_EXPONENTIAL, INT64_MIN, 60000},
    /* max_delay INT64_MAX: exact until the product would overflow, then saturated */
    {DEF_STEP, DEF_BASE, BIG, POLICY_LINEAR, 1, 300000},
    {DEF_STEP, DEF_BASE, BIG, POLICY_LINEAR, 2, 600000},
    {DEF_STEP, DEF_BASE, BIG, POLICY_LINEAR, 63, 18900000},
    {DEF_STEP, DEF_BASE, BIG, POLICY_LINEAR, 64, 19200000},
    {DEF_STEP, DEF_BASE, BIG, POLICY_LINEAR, 1000, 300000000},
    {DEF_STEP, DEF_BASE, BIG, POLICY_LINEAR, INT64_MAX, INT64_MAX},
    {DEF_STEP, DEF_BASE, BIG, POLICY_EXPONENTIAL, 1, 60000},
    {DEF_STEP, DEF_BASE, BIG, POLICY_EXPONENTIAL, 2, 120000},
    {DEF_STEP, DEF_BASE, BIG, POLICY_EXPONENTIAL, 48, INT64_C(8444249301319680000)},
    {DEF_STEP, DEF_BASE, BIG, POLICY_EXPONENTIAL, 49, INT64_MAX},
    {DEF_STEP, DEF_BASE, BIG, POLICY_EXPONENTIAL, 63, INT64_MAX},
    {DEF_STEP, DEF_BASE, BIG, POLICY_EXPONENTIAL, 64, INT64_MAX},
    {DEF_STEP, DEF_BASE, BIG, POLICY_EXPONENTIAL, 1000, INT64_MAX},
    {DEF_STEP, DEF_BASE, BIG, POLICY_EXPONENTIAL, INT64_MAX, INT64_MAX},
    {DEF_STEP, DEF_BASE, BIG, POLICY_IMMEDIATE, 1000, 0},
    {DEF_STEP, DEF_BASE, BIG, POLICY_NEVER, 1, -1},
    {1, 1, BIG, POLICY_EXPONENTIAL, 63, INT64_C(4611686018427387904)},
    {1, 1, BIG, POLICY_EXPONENTIAL, 64, INT64_MAX},
    {1, 1, BIG, POLICY_LINEAR, INT64_MAX, INT64_MAX},
    {1, 1, BIG, POLICY_LINEAR, INT64_MAX - 1, INT64_MAX - 1},
    /* base and step INT64_MAX */
    {BIG, BIG, DEF_MAX, POLICY_LINEAR, 1, 3600000},
    {BIG, BIG, DEF_MAX, POLICY_LINEAR, 2, 3600000},
    {BIG, BIG, DEF_MAX, POLICY_EXPONENTIAL, 1, 3600000},
    {BIG, BIG, DEF_MAX, POLICY_EXPONENTIAL, 2, 3600000},
    {BIG, BIG, DEF_MAX, POLICY_EXPONENTIAL, 64, 3600000},
    {BIG, BIG, BIG, POLICY_LINEAR, 1, INT64_MAX},
    {BIG, BIG, BIG, POLICY_LINEAR, 2, INT64_MAX},
    {BIG, BIG, BIG, POLICY_EXPONENTIAL, 1, INT64_MAX},
    {BIG, BIG, BIG, POLICY_EXPONENTIAL, 2, INT64_MAX},
    {BIG, BIG, BIG, POLICY_EXPONENTIAL, 1000, INT64_MAX},
    /* negative parameters count as 0 */
    {-5, -5, DEF_MAX, POLICY_LINEAR, 3, 0},
    {-5, -5, DEF_MAX, POLICY_EXPONENTIAL, 3, 0},
    {DEF_STEP, DEF_BASE, -1, POLICY_LINEAR, 3, 0},
    {DEF_STEP, DEF_BASE, INT64_MIN, POLICY_EXPONENTIAL, 64, 0},
    {0, 0, DEF_MAX, POLICY_EXPONENTIAL, 64, 0},
    /* a value outside the enum is never retried */
    {DEF_STEP, DEF_BASE, DEF_MAX, POLICY_RETRY_COUNT, 1, -1},
};

/* Exact raw delays, and with jitter 0 the jittered delay is the same number. */
static void
test_backoff_exact(void **state)
{
    uint64_t seed = 1;
    size_t i;

    (void)state;
    for (i = 0; i < SC_ARRAY_LEN(backoff_cases); i++) {
        const struct backoff_case *c = &backoff_cases[i];
        struct policy_backoff b = {c->step, c->base, c->max, 0.0};
        int64_t raw = policy_backoff_raw(&b, c->p, c->n);
        int64_t d = policy_backoff_delay(&b, c->p, c->n, test_rand, &seed);

        if (raw != c->want || d != c->want)
            fail_msg("case %zu (%s n=%" PRId64 "): raw %" PRId64 ", delay %" PRId64
                     ", want %" PRId64,
                     i, policy_retry_name(c->p), c->n, raw, d, c->want);
    }
}

/*
 * Every policy, every attempt number worth trying, with defaults and with the
 * largest values, jittered by the extreme random values: never negative,
 * never above the cap, -1 only for never.
 */
static void
test_backoff_bounds(void **state)
{
    static const int64_t ns[] = {INT64_MIN, -1, 0, 1, 2, 3, 47, 48, 49, 62, 63, 64, 65, 1000,
                                 INT64_MAX - 1, INT64_MAX};
    static const struct policy_backoff params[] = {
        {DEF_STEP, DEF_BASE, DEF_MAX, 0.1},
        {DEF_STEP, DEF_BASE, BIG, 0.1},
        {BIG, BIG, DEF_MAX, 0.1},
        {BIG, BIG, BIG, 0.1},
        {BIG, BIG, BIG, 1.0},
        {1, 1, BIG, 1.0},
        {DEF_STEP, DEF_BASE, BIG, 1.0},
        {DEF_STEP, DEF_BASE, BIG - 1, 0.5},
        {3, 7, 1, 1.0},
        {DEF_STEP, DEF_BASE, DEF_MAX, 5.0},  /* counts as 1 */
        {DEF_STEP, DEF_BASE, DEF_MAX, -0.5}, /* counts as 0 */
        {DEF_STEP, DEF_BASE, DEF_MAX, NAN},  /* counts as 0 */
    };
    static const uint64_t rands[] = {0, 1, UINT64_C(1) << 63, UINT64_MAX, UINT64_MAX >> 1,
                                     UINT64_C(0x123456789abcdef0)};
    size_t pi, ni, ri;
    int p;

    (void)state;
    for (pi = 0; pi < SC_ARRAY_LEN(params); pi++) {
        const struct policy_backoff *b = &params[pi];

        for (p = 0; p < POLICY_RETRY_COUNT; p++) {
            for (ni = 0; ni < SC_ARRAY_LEN(ns); ni++) {
                int64_t raw = policy_backoff_raw(b, (policy_retry)p, ns[ni]);

                if (p == POLICY_NEVER) {
                    assert_int_equal(raw, -1);
                } else if (raw < 0 || raw > b->max_delay_ms) {
                    fail_msg("params %zu %s n=%" PRId64 ": raw %" PRId64, pi,
                             policy_retry_name((policy_retry)p), ns[ni], raw);
                }
                for (ri = 0; ri < SC_ARRAY_LEN(rands); ri++) {
                    uint64_t r = rands[ri];
                    int64_t d = policy_backoff_delay(b, (policy_retry)p, ns[ni], fixed_rand, &r);

                    if (p == POLICY_NEVER) {
                        assert_int_equal(d, -1);
                    } else if (d < 0 || d > b->max_delay_ms) {
                        fail_msg("params %zu %s n=%" PRId64 " rand %zu: delay %" PRId64, pi,
                                 policy_retry_name((policy_retry)p), ns[ni], ri, d);
                    }
                    if (p == POLICY_IMMEDIATE)
                        assert_int_equal(d, 0);
                    if (!(b->jitter > 0))
                        assert_int_equal(d, raw);
                }
            }
        }
    }
}

/* Scripted random values land on the band's edges and middle exactly. */
static void
test_backoff_jitter_edges(void **state)
{
    static const struct {
        struct policy_backoff b;
        policy_retry p;
        int64_t n;
        uint64_t r;
        int64_t want;
    } cases[] = {
        {{DEF_STEP, DEF_BASE, DEF_MAX, 0.1}, POLICY_EXPONENTIAL, 1, 0, 54000},
        {{DEF_STEP, DEF_BASE, DEF_MAX, 0.1}, POLICY_EXPONENTIAL, 1, UINT64_C(1) << 63, 60000},
        {{DEF_STEP, DEF_BASE, DEF_MAX, 0.1}, POLICY_EXPONENTIAL, 1, UINT64_MAX, 66000},
        {{DEF_STEP, DEF_BASE, DEF_MAX, 0.1}, POLICY_LINEAR, 2, 0, 540000},
        {{DEF_STEP, DEF_BASE, DEF_MAX, 0.1}, POLICY_LINEAR, 2, UINT64_MAX, 660000},
        {{DEF_STEP, DEF_BASE, DEF_MAX, 0.25}, POLICY_EXPONENTIAL, 3, UINT64_C(3) << 62, 270000},
        /* the cap clamps the upper half of the band */
        {{DEF_STEP, DEF_BASE, DEF_MAX, 0.1}, POLICY_EXPONENTIAL, 10, 0, 3240000},
        {{DEF_STEP, DEF_BASE, DEF_MAX, 0.1}, POLICY_EXPONENTIAL, 10, UINT64_MAX, 3600000},
        /* jitter 1 reaches 0 at the bottom */
        {{DEF_STEP, DEF_BASE, DEF_MAX, 1.0}, POLICY_EXPONENTIAL, 1, 0, 0},
        {{DEF_STEP, DEF_BASE, DEF_MAX, 1.0}, POLICY_EXPONENTIAL, 1, UINT64_MAX, 120000},
        /* immediate stays 0 */
        {{DEF_STEP, DEF_BASE, DEF_MAX, 1.0}, POLICY_IMMEDIATE, 1, UINT64_MAX, 0},
        /* no double rounding of large delays: the offset is 0, d comes back exact */
        {{1, (INT64_C(1) << 53) + 1, BIG, 0.1}, POLICY_EXPONENTIAL, 1, UINT64_C(1) << 63,
         (INT64_C(1) << 53) + 1},
        {{1, BIG - 1, BIG - 1, 0.1}, POLICY_EXPONENTIAL, 1, UINT64_C(1) << 63, BIG - 1},
        {{1, BIG, BIG, 1.0}, POLICY_EXPONENTIAL, 64, UINT64_MAX, BIG},
        {{1, BIG, BIG, 1.0}, POLICY_EXPONENTIAL, 64, 0, 0},
        {{1, BIG, BIG, 0.5}, POLICY_EXPONENTIAL, 64, 0, INT64_C(4611686018427387903)},
    };
    size_t i;

    (void)state;
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        uint64_t r = cases[i].r;
        int64_t d = policy_backoff_delay(&cases[i].b, cases[i].p, cases[i].n, fixed_rand, &r);

        if (d != cases[i].want)
            fail_msg("case %zu: delay %" PRId64 ", want %" PRId64, i, d, cases[i].want);
    }
}

/*
 * 10,000 jittered delays of one attempt cover the whole band
 * [d(1 - j), d(1 + j)]: the extremes come within 1% of the band's width of
 * its edges, and each of 10 equal buckets gets its share.
 */
static void
check_spread(const struct policy_backoff *b, policy_retry p, int64_t n, policy_rand_fn rnd,
             void *ctx)
{
    enum { SAMPLES = 10000, BUCKETS = 10 };
    int64_t d = policy_backoff_raw(b, p, n);
    int64_t lo = d - (int64_t)((double)d * b->jitter + 0.5);
    int64_t hi = d + (int64_t)((double)d * b->jitter + 0.5);
    int64_t width = hi - lo, min = INT64_MAX, max = INT64_MIN;
    size_t count[BUCKETS] = {0};
    int i;

    assert_true(width > 0);
    for (i = 0; i < SAMPLES; i++) {
        int64_t v = policy_backoff_delay(b, p, n, rnd, ctx);
        int64_t k;

        if (v < lo || v > hi)
            fail_msg("sample %d: %" PRId64 " outside [%" PRId64 ", %" PRId64 "]", i, v, lo, hi);
        min = v < min ? v : min;
        max = v > max ? v : max;
        k = (v - lo) * BUCKETS / width;
        count[k < BUCKETS ? k : BUCKETS - 1]++;
    }
    assert_true(min - lo <= width / 100);
    assert_true(hi - max <= width / 100);
    for (i = 0; i < BUCKETS; i++) {
        if (count[i] < SAMPLES / BUCKETS * 8 / 10 || count[i] > SAMPLES / BUCKETS * 12 / 10)
            fail_msg("bucket %d holds %zu of %d samples", i, count[i], SAMPLES);
    }
}

static void
test_backoff_jitter_spread(void **state)
{
    struct policy_backoff b;
    uint64_t seed = 42;

    (void)state;
    policy_backoff_default(&b);
    check_spread(&b, POLICY_EXPONENTIAL, 1, test_rand, &seed); /* [54000, 66000] */
    check_spread(&b, POLICY_LINEAR, 3, test_rand, &seed);      /* [810000, 990000] */
    b.jitter = 0.5;
    check_spread(&b, POLICY_EXPONENTIAL, 2, test_rand, &seed); /* [60000, 180000] */
    /* the built-in source, too */
    b.jitter = 0.1;
    check_spread(&b, POLICY_EXPONENTIAL, 1, NULL, NULL);
    /* huge delays as well */
    b.max_delay_ms = INT64_MAX;
    b.exp_base_ms = INT64_C(1) << 60;
    check_spread(&b, POLICY_EXPONENTIAL, 1, test_rand, &seed);
}

/* At the cap, the upper half of the band piles up on the cap and nothing passes it. */
static void
test_backoff_jitter_at_cap(void **state)
{
    struct policy_backoff b;
    uint64_t seed = 7;
    int i, at_cap = 0;

    (void)state;
    policy_backoff_default(&b);
    for (i = 0; i < 10000; i++) {
        int64_t v = policy_backoff_delay(&b, POLICY_EXPONENTIAL, 1000, test_rand, &seed);

        assert_true(v >= 3240000 && v <= 3600000);
        at_cap += v == 3600000;
    }
    assert_true(at_cap > 4500 && at_cap < 5500);
}


/* ---- delay lists (issue 17) ------------------------------------------------------------------- */

/* Durations: a bare integer is ms; ms, s, m, h, d units; nothing else. */
static void
test_duration_parse(void **state)
{
    static const struct {
        const char *text;
        sc_status st;
        int64_t ms;
    } cases[] = {
        {"1500", SC_OK, 1500},      {"250ms", SC_OK, 250},        {"1s", SC_OK, 1000},
        {"10m", SC_OK, 600000},     {"2h", SC_OK, 7200000},       {"7d", SC_OK, 604800000},
        {"0", SC_OK, 0},            {"", SC_EPROTO, 0},           {"s", SC_EPROTO, 0},
        {"-1s", SC_EPROTO, 0},      {"1.5s", SC_EPROTO, 0},       {"1 s", SC_EPROTO, 0},
        {"10S", SC_EPROTO, 0},      {"1w", SC_EPROTO, 0},         {"1sec", SC_EPROTO, 0},
        {"99999999999999999999", SC_ETOOBIG, 0}, {"999999999999999999d", SC_ETOOBIG, 0},
    };
    (void)state;
    for (size_t i = 0; i < SC_ARRAY_LEN(cases); i++) {
        int64_t ms = -7;
        sc_status st = sc_parse_duration_ms(cases[i].text, strlen(cases[i].text), &ms);
        assert_int_equal(st, cases[i].st);
        assert_int_equal(ms, cases[i].st == SC_OK ? cases[i].ms : -7);
    }
}

/* A list reads commas and blanks as separators, refuses what is not 1-32 delays of 1 ms - 7 d. */
static void
test_delays_parse(void **state)
{
    struct policy_delays d;
    char err[200], text[POLICY_DELAYS_TEXT_MAX], big[400];
    size_t n;

    (void)state;
    assert_int_equal(policy_delays_parse("1s, 10s 1m,10m", 14, &d, err, sizeof(err)), SC_OK);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.ms[0], 1000);
    assert_int_equal(d.ms[3], 600000);
    n = policy_delays_format(&d, text, sizeof(text));
    assert_string_equal(text, "1000,10000,60000,600000");
    assert_int_equal(n, strlen(text));
    /* the stored form reads back the same */
    assert_int_equal(policy_delays_parse(text, n, &d, NULL, 0), SC_OK);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.ms[2], 60000);

    assert_int_equal(policy_delays_parse("", 0, &d, err, sizeof(err)), SC_EINVAL);
    assert_string_equal(err, "no delay given");
    assert_int_equal(policy_delays_parse("1s 0s", 5, &d, err, sizeof(err)), SC_EINVAL);
    assert_string_equal(err, "entry 1: '0s' is out of range 1ms-7d");
    assert_int_equal(policy_delays_parse("1s 8d", 5, &d, err, sizeof(err)), SC_EINVAL);
    assert_string_equal(err, "entry 1: '8d' is out of range 1ms-7d");
    assert_int_equal(policy_delays_parse("1s soon", 7, &d, err, sizeof(err)), SC_EINVAL);
    assert_non_null(strstr(err, "entry 1: 'soon' is not a delay"));
    assert_int_equal(policy_delays_parse("-5", 2, &d, err, sizeof(err)), SC_EINVAL);
    /* 32 delays pass, 33 do not */
    big[0] = '\0';
    for (int i = 0; i < 32; i++)
        strcat(big, "1s ");
    assert_int_equal(policy_delays_parse(big, strlen(big), &d, err, sizeof(err)), SC_OK);
    assert_int_equal(d.n, 32);
    strcat(big, "1s");
    assert_int_equal(policy_delays_parse(big, strlen(big), &d, err, sizeof(err)), SC_EINVAL);
    assert_string_equal(err, "more than 32 delays");
    /* the longest form fits POLICY_DELAYS_TEXT_MAX */
    d.n = 32;
    for (int i = 0; i < 32; i++)
        d.ms[i] = SC_DELAY_MAX_MS;
    n = policy_delays_format(&d, text, sizeof(text));
    assert_int_equal(n, 32 * 9 + 31);
}

/* Attempt n takes the n-th delay; past the end the last repeats; jitter as the policy says. */
static void
test_delays_sequence(void **state)
{
    struct policy_delays d = {.n = 3, .ms = {1000, 10000, 60000}};
    uint64_t seed = 11;

    (void)state;
    assert_int_equal(policy_delays_raw(&d, 0), 1000);
    assert_int_equal(policy_delays_raw(&d, 1), 1000);
    assert_int_equal(policy_delays_raw(&d, 2), 10000);
    assert_int_equal(policy_delays_raw(&d, 3), 60000);
    assert_int_equal(policy_delays_raw(&d, 4), 60000);
    assert_int_equal(policy_delays_raw(&d, INT64_MAX), 60000);
    assert_int_equal(policy_delays_raw(NULL, 1), -1);
    d.n = 0;
    assert_int_equal(policy_delays_raw(&d, 1), -1);
    assert_int_equal(policy_delays_delay(&d, 1, 0.1, NULL, NULL), -1);
    d.n = 3;
    assert_int_equal(policy_delays_delay(&d, 2, 0.0, test_rand, &seed), 10000);
    for (int i = 0; i < 1000; i++) {
        int64_t v = policy_delays_delay(&d, 5, 0.1, test_rand, &seed);
        assert_true(v >= 54000 && v <= 66000);
    }
    /* a list is not capped by max_delay_ms, only clamped to 7 days after jitter */
    d.ms[2] = SC_DELAY_MAX_MS;
    for (int i = 0; i < 1000; i++)
        assert_true(policy_delays_delay(&d, 3, 1.0, test_rand, &seed) <= SC_DELAY_MAX_MS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_category_names),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_name_tables),
        cmocka_unit_test(test_retry_and_strategy_names),
        cmocka_unit_test(test_default_retry),
        cmocka_unit_test(test_should_store),
        cmocka_unit_test(test_classify_builtin),
        cmocka_unit_test(test_builtin_ids),
        cmocka_unit_test(test_classify_raw_bytes),
        cmocka_unit_test(test_user_rule_overrides_builtin),
        cmocka_unit_test(test_replace_builtin),
        cmocka_unit_test(test_bad_rules),
        cmocka_unit_test(test_classify_no_alloc),
        cmocka_unit_test(test_classify_cache),
        cmocka_unit_test(test_classify_match_limit),
        cmocka_unit_test(test_backoff_default_values),
        cmocka_unit_test(test_backoff_exact),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_backoff_jitter_edges),
        cmocka_unit_test(test_backoff_jitter_spread),
        cmocka_unit_test(test_backoff_jitter_at_cap),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_delays_parse),
        cmocka_unit_test(test_delays_sequence),
    };

    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
