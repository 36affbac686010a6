/* test_dispatch.c - unit tests of dispatch's pure parts: the JetStream reply scan (PubAck, API error, worker replies). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "dispatch.h"

/* classify() runs the scan on a heap copy of exactly strlen(s) bytes (no NUL after it: ASan sees overreads). */
static sc_js_reply_kind
classify(const char *s, struct sc_js_reply *r)
{
    size_t n = strlen(s);
    char *copy = malloc(n ? n : 1);
    sc_js_reply_kind k;

    assert_non_null(copy);
    memcpy(copy, s, n); /* NOLINT(bugprone-not-null-terminated-result): no NUL, on purpose */
    k = sc_js_reply_classify(copy, n, r);
    free(copy);
    return k;
}

/* The server's PubAcks, with and without domain and duplicate, are recognised. */
static void
test_puback(void **state)
{
    struct sc_js_reply r;

    (void)state;
    assert_int_equal(classify("{\"stream\":\"RETRY\",\"seq\":1}", &r), SC_JS_PUBACK);
    assert_int_equal(classify(" {\"stream\":\"R\",\"domain\":\"hub\",\"seq\":18446744073709551615,"
                              "\"duplicate\":true}\r\n", &r),
                     SC_JS_PUBACK);
    assert_int_equal(classify("{ \"seq\" : 7 , \"stream\" : \"a\\\"b\" }", &r), SC_JS_PUBACK);
}

/* JetStream API errors are recognised, with code, err_code and description. */
static void
test_error(void **state)
{
    struct sc_js_reply r;
    const char *e = "{\"error\":{\"code\":503,\"err_code\":10077,\"description\":\"maximum messages exceeded\"}}";

    (void)state;
    assert_int_equal(classify(e, &r), SC_JS_ERROR);
    assert_int_equal(r.code, 503);
    assert_int_equal(r.err_code, 10077);
    assert_int_equal(r.desc_len, strlen("maximum messages exceeded"));
    assert_int_equal(classify("{\"error\":{\"code\":400,\"err_code\":10060,\"description\":\"expected "
                              "stream does not match\"},\"stream\":\"X\",\"seq\":0}", &r),
                     SC_JS_ERROR);
    assert_int_equal(r.err_code, 10060);
}

/* Worker replies, and anything malformed, are not JetStream's. */
static void
test_not_jetstream(void **state)
{
    static const char *const bodies[] = {
        "",
        "{}",
        "{\"ok\":true}",
        "{\"ok\":false,\"error\":\"boom\"}",
        "{\"ok\":false,\"stream\":\"R\",\"seq\":1}",       /* a worker that says ok */
        "{\"ok\":true,\"error\":{\"code\":1,\"err_code\":2}}", /* ditto */
        "{\"error\":{\"code\":500,\"message\":\"worker\"}}",  /* no err_code: a worker's error */
        "{\"stream\":\"R\"}",                                /* no seq */
        "{\"stream\":1,\"seq\":1}",                          /* stream not a string */
        "{\"stream\":\"R\",\"seq\":\"1\"}",                  /* seq not a number */
        "{\"stream\":\"R\",\"seq\":1",                       /* truncated */
        "{\"stream\":\"R\" \"seq\":1}",                      /* no comma */
        "{\"stream\":\"R\",\"seq\":1}}",                     /* (trailing bytes are ignored: still a PubAck) */
        "{\"error\":{\"code\":5",                            /* truncated inside */
        "{\"stream\":\"unterminated",
        "[{\"stream\":\"R\",\"seq\":1}]",
        "\x81\xa2ok\xc3",                                  /* MessagePack {"ok":true} */
        "not json at all",
        "{\"a\":[1,{\"b\":\"}\"}],\"stream\":\"R\"}",
    };
    struct sc_js_reply r;

    (void)state;
    for (size_t i = 0; i < SC_ARRAY_LEN(bodies); i++) {
        sc_js_reply_kind k = classify(bodies[i], &r);
        if (i == 12)
            assert_int_equal(k, SC_JS_PUBACK);
        else if (k != SC_JS_NOT)
            fail_msg("body %zu (%s) read as JetStream's (%d)", i, bodies[i], (int)k);
    }
    assert_int_equal(sc_js_reply_classify(NULL, 0, &r), SC_JS_NOT);
}

/* Random bytes and random cuts of real answers never read past the body (run under ASan). */
static void
test_random_bytes(void **state)
{
    static const char alphabet[] = "{}[]\":,\\ 0123456789abcdeoksqrt";
    const char *real = "{\"error\":{\"code\":503,\"err_code\":10077,\"description\":\"x\\\"y\"},"
                       "\"stream\":\"R\",\"seq\":12}";
    struct sc_js_reply r;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    char buf[64];

    (void)state;
    for (size_t cut = 0; cut <= strlen(real); cut++) {
        char *copy = malloc(cut ? cut : 1);
        assert_non_null(copy);
        memcpy(copy, real, cut);
        (void)sc_js_reply_classify(copy, cut, &r);
        free(copy);
    }
    for (int i = 0; i < 200000; i++) {
        size_t n;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        n = (size_t)(x % sizeof(buf));
        for (size_t k = 0; k < n; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[k] = alphabet[x % (sizeof(alphabet) - 1)];
        }
        char *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, buf, n);
        (void)sc_js_reply_classify(copy, n, &r);
        free(copy);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_puback),
        cmocka_unit_test(test_error),
        cmocka_unit_test(test_not_jetstream),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
