/* test_common.c - cmocka unit tests of common/: RFC 3339 parsing and formatting, capped buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static const struct {
    const char *text;
    bool ok;
    int64_t ms;
} parses[] = {
    {"1970-01-01T00:00:00Z", true, 0},
    {"1970-01-01T00:00:00.001Z", true, 1},
    {"1969-12-31T23:59:59.999Z", true, -1},
    {"2023-09-12T12:34:56.789Z", true, 1694522096789LL},
    {"2023-09-12t12:34:56.789z", true, 1694522096789LL},
    {"2023-09-12 12:34:56.789Z", true, 1694522096789LL},
    {"2023-09-12T14:34:56.789+02:00", true, 1694522096789LL},
    {"2023-09-12T07:04:56.789-05:30", true, 1694522096789LL},
    {"2023-09-12T12:34:56.7891234Z", true, 1694522096789LL},
    {"2023-09-12T12:34:56.5Z", true, 1694522096500LL},
    {"2024-02-29T00:00:00Z", true, 1709164800000LL},
    {"2000-02-29T00:00:00Z", true, 951782400000LL},
    {"2016-12-31T23:59:60Z", true, 1483228800000LL},
    {"0000-01-01T00:00:00Z", true, -62167219200000LL},
    {"9999-12-31T23:59:59.999Z", true, 253402300799999LL},
    {"1900-02-29T00:00:00Z", false, 0},
    {"2023-02-29T00:00:00Z", false, 0},
    {"2023-04-31T00:00:00Z", false, 0},
    {"2023-13-01T00:00:00Z", false, 0},
    {"2023-00-01T00:00:00Z", false, 0},
    {"2023-01-00T00:00:00Z", false, 0},
    {"2023-01-01T24:00:00Z", false, 0},
    {"2023-01-01T00:60:00Z", false, 0},
    {"2023-01-01T00:00:61Z", false, 0},
    {"2023-01-01T00:00:00", false, 0},
    {"2023-01-01T00:00:00.Z", false, 0},
    {"2023-01-01T00:00:00.1234567890Z", false, 0},
    {"2023-01-01T00:00:00+0100", false, 0},
    {"2023-01-01T00:00:00+24:00", false, 0},
    {"2023-01-01T00:00:00Zx", false, 0},
    {"2023-01-01", false, 0},
    {"2023-1-01T00:00:00Z", false, 0},
    {"20230101T000000Z", false, 0},
    {"", false, 0},
    {"yesterday", false, 0},
    {"2023-01-01T00:00:00.", false, 0},
    {"2023-01-01T00:00:00+01:", false, 0},
};

static void
test_parse_rfc3339(void **state)
{
    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(parses); k++) {
        int64_t ms = 12345;
        sc_status s = sc_parse_rfc3339(parses[k].text, strlen(parses[k].text), &ms);
        print_message("parse %s\n", parses[k].text);
        assert_int_equal(s, parses[k].ok ? SC_OK : SC_EPROTO);
        assert_int_equal(ms, parses[k].ms);
    }
}

/* Every prefix of a valid time is refused and never read past its length. */
static void
test_parse_prefixes(void **state)
{
    const char *full = "2023-09-12T14:34:56.789+02:00";
    char buf[64];

    (void)state;
    for (size_t n = 0; n < strlen(full); n++) {
        int64_t ms = 7;
        /* The byte after the prefix would complete it; it must not be looked at. */
        memcpy(buf, full, n);
        buf[n] = 'Z';
        assert_int_equal(sc_parse_rfc3339(buf, n, &ms), SC_EPROTO);
        assert_int_equal(ms, 0);
    }
}

static const struct {
    int64_t ms;
    const char *text;
} formats[] = {
    {0, "1970-01-01T00:00:00.000Z"},
    {1, "1970-01-01T00:00:00.001Z"},
    {-1, "1969-12-31T23:59:59.999Z"},
    {1694522096789LL, "2023-09-12T12:34:56.789Z"},
    {1709164800000LL, "2024-02-29T00:00:00.000Z"},
    {-62167219200000LL, "0000-01-01T00:00:00.000Z"},
    {253402300799999LL, "9999-12-31T23:59:59.999Z"},
};

static void
test_format_rfc3339(void **state)
{
    char out[SC_RFC3339_LEN];

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(formats); k++) {
        int64_t back;
        assert_int_equal(sc_format_rfc3339(formats[k].ms, out), 24);
        assert_string_equal(out, formats[k].text);
        assert_int_equal(sc_parse_rfc3339(out, strlen(out), &back), SC_OK);
        assert_int_equal(back, formats[k].ms);
    }
    assert_int_equal(sc_format_rfc3339(-62167219200001LL, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(sc_format_rfc3339(253402300800000LL, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(sc_format_rfc3339(INT64_MAX, out), 0);
    assert_int_equal(sc_format_rfc3339(INT64_MIN, out), 0);
}

static void
test_round_trip(void **state)
{
    char out[SC_RFC3339_LEN];

    (void)state;
    /* A spread of times across the representable range. */
    for (int64_t ms = -62167219200000LL; ms < 253402300799999LL; ms += 987654321987LL) {
        int64_t back;
        assert_int_equal(sc_format_rfc3339(ms, out), 24);
        assert_int_equal(sc_parse_rfc3339(out, 24, &back), SC_OK);
        assert_int_equal(back, ms);
    }
}

static void
test_buf(void **state)
{
    struct sc_buf b;
    char big[1000];

    (void)state;
    sc_buf_init(&b, 10);
    assert_null(b.data);
    assert_int_equal(sc_buf_append(&b, "hello", 5), SC_OK);
    assert_int_equal(sc_buf_appendc(&b, ' '), SC_OK);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.data, "hello ");
    /* 6 + 5 > 10: refused, nothing appended */
    assert_int_equal(sc_buf_append(&b, "world", 5), SC_ETOOBIG);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.data, "hello ");
    assert_int_equal(sc_buf_append(&b, "worl", 4), SC_OK);
    assert_int_equal(b.len, 10);
    assert_int_equal(sc_buf_appendc(&b, '!'), SC_ETOOBIG);
    assert_int_equal(sc_buf_append(&b, "", 0), SC_OK);
    assert_int_equal(sc_buf_append(&b, "x", SIZE_MAX), SC_ETOOBIG);
    assert_string_equal(b.data, "hello worl");
    sc_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(sc_buf_appendf(&b, "%d-%s", 42, "ab"), SC_OK);
    assert_string_equal(b.data, "42-ab");
    assert_int_equal(sc_buf_appendf(&b, "%s", "123456"), SC_ETOOBIG);
    assert_string_equal(b.data, "42-ab");
    sc_buf_destroy(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);

    /* With no cap at all, len + n + 1 must not wrap around. */
    sc_buf_init(&b, SIZE_MAX);
    assert_int_equal(sc_buf_append(&b, "x", SIZE_MAX), SC_ETOOBIG);
    assert_int_equal(sc_buf_append(&b, "x", 1), SC_OK);
    assert_int_equal(sc_buf_append(&b, "x", SIZE_MAX - 1), SC_ETOOBIG);
    assert_string_equal(b.data, "x");
    sc_buf_destroy(&b);

    /* appendf longer than its small stack buffer */
    sc_buf_init(&b, 4096);
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(sc_buf_appendf(&b, "<%s>", big), SC_OK);
    assert_int_equal(b.len, 1001);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[1000], '>');
    assert_int_equal(b.data[1001], '\0');
    assert_int_equal(sc_buf_appendf(&b, "%s%s%s%s", big, big, big, big), SC_ETOOBIG);
    assert_int_equal(b.len, 1001);
    assert_int_equal(b.data[1001], '\0');
    sc_buf_destroy(&b);
    sc_buf_destroy(&b);
}

static void
test_misc(void **state)
{
    int64_t a, b;
    char *s;

    (void)state;
    assert_string_equal(sc_status_str(SC_OK), "ok");
    assert_string_equal(sc_status_str(SC_EPROTO), "eproto");
    assert_string_equal(sc_status_str(SC_EUNAVAIL), "eunavail");
    assert_string_equal(sc_status_str((sc_status)999), "unknown");
    a = sc_now_mono_ms();
    b = sc_now_mono_ms();
    assert_true(b >= a);
    assert_true(sc_now_wall_ms() > 1600000000000LL);
    s = sc_xstrndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
    s = sc_xstrdup("xyz");
    assert_string_equal(s, "xyz");
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rfc3339),
        cmocka_unit_test(test_parse_prefixes),
        cmocka_unit_test(test_format_rfc3339),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_misc),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
