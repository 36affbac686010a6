/* test_vectors.c - cmocka: codec/ against the shared test vectors of tests/vectors/manifest.json (envelopes and outcomes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "codec.h"
#include "policy.h"
#include "vectors.h"

/* Prints what differs and fails the test. */
#define VCHECK(cond, name, ...)                                                               \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "vector %s: %s: ", (name), #cond);                              \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
            fail();                                                                           \
        }                                                                                     \
    } while (0)

/* Lower-case hex of len bytes into a new string. */
static char *
hex(const void *p, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = p;
    char *out = malloc(2 * len + 1);

    assert_non_null(out);
    for (size_t k = 0; k < len; k++) {
        out[2 * k] = digits[b[k] >> 4];
        out[2 * k + 1] = digits[b[k] & 15];
    }
    out[2 * len] = '\0';
    return out;
}

/* Checks an optional string field: JSON null means absent (ptr NULL). */
static void
check_str(const char *vname, const char *field, const json_t *want, struct codec_str got)
{
    if (json_is_null(want) || !want) {
        VCHECK(got.ptr == NULL, vname, "%s: want absent, got \"%.*s\"", field, (int)got.len,
               got.ptr);
        return;
    }
    VCHECK(json_is_string(want), vname, "%s: manifest value is not a string", field);
    VCHECK(got.ptr != NULL, vname, "%s: want \"%s\", got absent", field, json_string_value(want));
    VCHECK(got.len == json_string_length(want) &&
               memcmp(got.ptr, json_string_value(want), got.len) == 0,
           vname, "%s: want \"%s\", got \"%.*s\"", field, json_string_value(want), (int)got.len,
           got.ptr);
}

/* Checks a byte-range field against its expected hex (null: absent). */
static void
check_hex(const char *vname, const char *field, const json_t *want, struct codec_str got)
{
    char *h;

    if (json_is_null(want)) {
        VCHECK(got.ptr == NULL, vname, "%s: want absent, got %zu bytes", field, got.len);
        return;
    }
    VCHECK(got.ptr != NULL, vname, "%s: want %s, got absent", field, json_string_value(want));
    h = hex(got.ptr, got.len);
    VCHECK(strcmp(h, json_string_value(want)) == 0, vname, "%s: want %s, got %s", field,
           json_string_value(want), h);
    free(h);
}

/* Checks a decoded envelope against the manifest's "expect" object. */
static void
check_envelope(const char *vname, const json_t *e, const struct codec_envelope *env)
{
    const json_t *mr = json_object_get(e, "max_retries");
    const json_t *fa = json_object_get(e, "failed_at_ms");
    const json_t *unknown = json_object_get(e, "unknown");
    size_t k;
    const json_t *u;

    check_str(vname, "task_id", json_object_get(e, "task_id"), env->task_id);
    check_hex(vname, "task", json_object_get(e, "task_hex"), env->task);
    check_str(vname, "error", json_object_get(e, "error"), env->error);
    check_str(vname, "error_type", json_object_get(e, "error_type"), env->error_type);
    check_str(vname, "error_category", json_object_get(e, "error_category"), env->error_category);
    check_str(vname, "retry_policy", json_object_get(e, "retry_policy"), env->retry_policy);
    check_str(vname, "retry_subject", json_object_get(e, "retry_subject"), env->retry_subject);
    check_hex(vname, "repos", json_object_get(e, "repos_hex"), env->repos);
    check_hex(vname, "metadata", json_object_get(e, "metadata_hex"), env->metadata);
    VCHECK(env->has_max_retries == !json_is_null(mr), vname, "max_retries presence");
    if (!json_is_null(mr))
        VCHECK(env->max_retries == json_integer_value(mr), vname, "max_retries: want %lld, got %d",
               (long long)json_integer_value(mr), env->max_retries);
    VCHECK(env->has_failed_at == !json_is_null(fa), vname, "failed_at presence");
    if (!json_is_null(fa))
        VCHECK(env->failed_at_ms == json_integer_value(fa), vname, "failed_at: want %lld, got %lld",
               (long long)json_integer_value(fa), (long long)env->failed_at_ms);
    VCHECK(env->enqueue == json_is_true(json_object_get(e, "enqueue")), vname, "enqueue");
    VCHECK(env->unknown_keys == json_integer_value(json_object_get(e, "unknown_keys")), vname,
           "unknown_keys: got %u", env->unknown_keys);
    json_array_foreach(unknown, k, u) {
        assert_true(k < CODEC_UNKNOWN_NAMES);
        check_str(vname, "unknown key name", u, env->unknown[k]);
    }
}

/* One envelope vector: the MessagePack file, and the JSON twin where it is an envelope too. */
static void
run_envelope(struct codec *c, const json_t *v)
{
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *mp = json_string_value(json_object_get(v, "msgpack"));
    const char *js = json_string_value(json_object_get(v, "json"));
    bool valid = json_is_true(json_object_get(v, "valid"));
    struct codec_envelope env;
    uint8_t *buf;
    size_t len;
    sc_status s;

    assert_non_null(name);
    assert_non_null(mp);
    buf = vectors_read(mp, &len, false);
    s = codec_decode(c, buf, len, false, &env);
    if (valid) {
        VCHECK(s == SC_OK, name, "refused: %s (%s)", env.reason, env.why);
        check_envelope(name, json_object_get(v, "expect"), &env);
    } else if (strcmp(json_string_value(json_object_get(v, "stage")), "intake") == 0) {
        /* Decoded, then refused by the sidecar's contract check (dlq/intake.c: the policy name). */
        policy_retry p;
        VCHECK(s == SC_OK, name, "refused by the decoder: %s (%s)", env.reason, env.why);
        assert_string_equal(json_string_value(json_object_get(v, "field")), "retry_policy");
        VCHECK(policy_retry_parse(env.retry_policy.ptr, env.retry_policy.len, &p) != SC_OK, name,
               "retry_policy \"%.*s\" was accepted", (int)env.retry_policy.len, env.retry_policy.ptr);
    } else {
        const char *reason = json_string_value(json_object_get(v, "reason"));
        const char *why = json_string_value(json_object_get(v, "why"));
        VCHECK(s == SC_EPROTO, name, "want refusal %s, got status %d", reason, (int)s);
        VCHECK(strcmp(env.reason, reason) == 0, name, "reason: want %s, got %s (%s)", reason,
               env.reason, env.why);
        VCHECK(strcmp(env.why, why) == 0, name, "why: want \"%s\", got \"%s\"", why, env.why);
    }
    free(buf);

    if (!js || (valid && !json_is_true(json_object_get(v, "json_envelope"))))
        return;
    buf = vectors_read(js, &len, false);
    s = codec_decode(c, buf, len, false, &env);
    if (valid) {
        VCHECK(s == SC_OK, name, "JSON twin refused: %s (%s)", env.reason, env.why);
        check_envelope(name, json_object_get(v, "expect"), &env);
    } else if (strcmp(json_string_value(json_object_get(v, "stage")), "codec") == 0) {
        const char *reason = json_string_value(json_object_get(v, "reason"));
        VCHECK(s == SC_EPROTO, name, "JSON twin: want refusal %s, got status %d", reason, (int)s);
        VCHECK(strcmp(env.reason, reason) == 0, name, "JSON twin reason: want %s, got %s (%s)",
               reason, env.reason, env.why);
        if (json_is_true(json_object_get(v, "json_why")))
            VCHECK(strcmp(env.why, json_string_value(json_object_get(v, "why"))) == 0, name,
                   "JSON twin why: got \"%s\"", env.why);
    }
    free(buf);
}

/* Every envelope of the manifest, valid and invalid, as MessagePack and as JSON. */
static void
test_envelope_vectors(void **state)
{
    json_t *m = vectors_manifest(), *v;
    struct codec *c = codec_new(NULL);
    size_t k, nvalid = 0, ninvalid = 0;

    (void)state;
    json_array_foreach(json_object_get(m, "envelopes"), k, v) {
        run_envelope(c, v);
        if (json_is_true(json_object_get(v, "valid")))
            nvalid++;
        else
            ninvalid++;
    }
    /* A manifest that lost its entries must not pass quietly. */
    assert_true(nvalid >= 10);
    assert_true(ninvalid >= 20);
    codec_free(c);
    json_decref(m);
}

/* Every outcome of the manifest: codec_decode_outcome() gives the expected meaning. */
static void
test_outcome_vectors(void **state)
{
    json_t *m = vectors_manifest(), *v;
    struct codec *c = codec_new(NULL);
    size_t k;

    (void)state;
    assert_true(json_array_size(json_object_get(m, "outcomes")) >= 10);
    json_array_foreach(json_object_get(m, "outcomes"), k, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        struct codec_outcome out;
        size_t len;
        uint8_t *buf = vectors_read(json_string_value(json_object_get(v, "file")), &len, false);

        assert_int_equal(codec_decode_outcome(c, buf, len, &out), SC_OK);
        VCHECK(out.ok == json_is_true(json_object_get(v, "ok")), name, "ok: got %d (error %.*s)",
               out.ok, (int)out.error.len, out.error.ptr);
        if (!out.ok) {
            check_str(name, "error", json_object_get(v, "error"), out.error);
            check_str(name, "error_type", json_object_get(v, "error_type"), out.error_type);
        }
        free(buf);
    }
    codec_free(c);
    json_decref(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_vectors),
        cmocka_unit_test(test_outcome_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
