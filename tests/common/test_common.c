/* test_common.c - cmocka unit tests of common/: RFC 3339 time, capped buffers, UTF-8, JSON strings, base64, the JSON writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

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

/*
 * A held clock: the same reading until released, however much time passes
 * (it would fail if sc_held_*() read the clock while held), and the clock
 * again once released.
 */
static void
test_clock_hold(void **state)
{
    struct timespec pause = {0, 3 * 1000 * 1000};
    int64_t w, m;

    (void)state;
    sc_clock_hold();
    w = sc_held_wall_ms();
    m = sc_held_mono_ms();
    assert_true(w > 1600000000000LL);
    nanosleep(&pause, NULL);
    assert_int_equal(sc_held_wall_ms(), w);
    assert_int_equal(sc_held_mono_ms(), m);
    assert_true(sc_now_mono_ms() >= m + 3); /* the clock itself moved on */
    sc_clock_release();
    assert_true(sc_held_mono_ms() >= m + 3);
    assert_true(sc_held_wall_ms() >= w);
    sc_clock_hold(); /* holding again takes a new reading */
    assert_true(sc_held_mono_ms() >= m + 3);
    m = sc_held_mono_ms();
    nanosleep(&pause, NULL);
    assert_int_equal(sc_held_mono_ms(), m); /* held again */
    sc_clock_release();
    assert_true(sc_held_mono_ms() >= m + 3);
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

/* ---- UTF-8 ----------------------------------------------------------------------------------- */

#define S(lit) lit, sizeof(lit) - 1

/* One sequence at the start of bytes: its length (0: not UTF-8) and code point. */
static const struct {
    const char *name;
    const char *s;
    size_t n;
    size_t len;
    uint32_t cp;
} seqs[] = {
    {"ascii", S("A"), 1, 0x41},
    {"NUL", "\0", 1, 1, 0},
    {"DEL", S("\x7f"), 1, 0x7f},
    {"smallest 2-byte", S("\xc2\x80"), 2, 0x80},
    {"largest 2-byte", S("\xdf\xbf"), 2, 0x7ff},
    {"smallest 3-byte", S("\xe0\xa0\x80"), 3, 0x800},
    {"before the surrogates", S("\xed\x9f\xbf"), 3, 0xd7ff},
    {"after the surrogates", S("\xee\x80\x80"), 3, 0xe000},
    {"largest 3-byte", S("\xef\xbf\xbf"), 3, 0xffff},
    {"smallest 4-byte", S("\xf0\x90\x80\x80"), 4, 0x10000},
    {"U+10FFFF", S("\xf4\x8f\xbf\xbf"), 4, 0x10ffff},
    {"only the first sequence", S("\xc3\xa9\xc3\xa9"), 2, 0xe9},
    {"overlong NUL", S("\xc0\x80"), 0, 0xfffd},
    {"overlong '/'", S("\xc0\xaf"), 0, 0xfffd},
    {"overlong 2-byte C1", S("\xc1\xbf"), 0, 0xfffd},
    {"overlong 3-byte NUL", S("\xe0\x80\x80"), 0, 0xfffd},
    {"overlong 3-byte U+07FF", S("\xe0\x9f\xbf"), 0, 0xfffd},
    {"overlong 4-byte NUL", S("\xf0\x80\x80\x80"), 0, 0xfffd},
    {"overlong 4-byte U+FFFF", S("\xf0\x8f\xbf\xbf"), 0, 0xfffd},
    {"high surrogate", S("\xed\xa0\x80"), 0, 0xfffd},
    {"low surrogate", S("\xed\xbf\xbf"), 0, 0xfffd},
    {"surrogate pair (CESU-8)", S("\xed\xa0\xbd\xed\xb8\x80"), 0, 0xfffd},
    {"past U+10FFFF", S("\xf4\x90\x80\x80"), 0, 0xfffd},
    {"lead 0xf5", S("\xf5\x80\x80\x80"), 0, 0xfffd},
    {"lead 0xff", S("\xff"), 0, 0xfffd},
    {"lone continuation", S("\x80"), 0, 0xfffd},
    {"last continuation", S("\xbf"), 0, 0xfffd},
    {"truncated 2-byte", S("\xc3"), 0, 0xfffd},
    {"truncated 3-byte", S("\xe2\x82"), 0, 0xfffd},
    {"truncated 4-byte", S("\xf0\x9f\x98"), 0, 0xfffd},
    {"bad second byte", S("\xc3\x28"), 0, 0xfffd},
    {"bad third byte", S("\xe2\x82\x28"), 0, 0xfffd},
    {"bad fourth byte", S("\xf0\x9f\x98\x28"), 0, 0xfffd},
};

static void
test_utf8_next(void **state)
{
    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(seqs); k++) {
        uint32_t cp = 12345;
        size_t len = sc_utf8_next(seqs[k].s, seqs[k].n, &cp);

        print_message("utf8 %s: %zu U+%04X\n", seqs[k].name, len, (unsigned)cp);
        assert_int_equal(len, seqs[k].len);
        assert_int_equal(cp, seqs[k].cp);
    }
    /* n bounds the read: a whole sequence past n is truncated. */
    {
        uint32_t cp;
        assert_int_equal(sc_utf8_next("\xe2\x82\xac", 2, &cp), 0);
        assert_int_equal(sc_utf8_next("\xe2\x82\xac", 3, &cp), 3);
        assert_int_equal(cp, 0x20ac);
    }
}

/* Writes cp (< 0x110000) as UTF-8 the plain way; returns the length. */
static size_t
encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Every code point reads back from its shortest form; surrogates never do; nor do overlong forms. */
static void
test_utf8_every_code_point(void **state)
{
    char b[4];

    (void)state;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        size_t n = encode(cp, b), got;
        uint32_t back;

        got = sc_utf8_next(b, n, &back);
        if (cp >= 0xd800 && cp <= 0xdfff) {
            assert_int_equal(got, 0);
            continue;
        }
        assert_int_equal(got, n);
        assert_int_equal(back, cp);
        if (cp < 0x800 && cp >= 0x80) { /* the same value one byte longer */
            b[0] = (char)(0xe0);
            b[1] = (char)(0x80 | cp >> 6);
            b[2] = (char)(0x80 | (cp & 0x3f));
            assert_int_equal(sc_utf8_next(b, 3, &back), 0);
        }
    }
}

static void
test_utf8_valid(void **state)
{
    static const char bad[] = "a\"b\\c\n\x01\xff\xc3\x28\xed\xa0\x80\xf4\x90\x80\x80 \xc3\xa9 \xf0\x9f\x98\x80";

    (void)state;
    /* From persist's tests (persist_utf8_valid() is now sc_utf8_valid(..., SC_UTF8_NO_NUL)). */
    assert_false(sc_utf8_valid(bad, sizeof bad - 1, SC_UTF8_NO_NUL));
    assert_true(sc_utf8_valid("h\xc3\xa9llo \xf0\x9f\x98\x80", 11, SC_UTF8_NO_NUL));
    assert_false(sc_utf8_valid("a\0b", 3, SC_UTF8_NO_NUL));        /* NUL */
    /* the eight-at-a-time ASCII path: what follows a run of 8 or more is still checked */
    assert_true(sc_utf8_valid("0123456789abcdef\xc3\xa9xyz", 21, SC_UTF8_NO_NUL));
    assert_false(sc_utf8_valid("0123456789\0bcdefgh", 19, SC_UTF8_NO_NUL));
    assert_true(sc_utf8_valid("0123456789\0bcdefgh", 19, SC_UTF8_ANY));
    assert_false(sc_utf8_valid("0123456789abcdefgh\xff", 19, SC_UTF8_ANY));
    assert_false(sc_utf8_valid("0123456789abcdef\xc3", 17, SC_UTF8_ANY));
    assert_false(sc_utf8_valid("0123456789abcdef\x7f", 17, SC_UTF8_NO_CONTROL));
    assert_true(sc_utf8_valid("01234567", 8, SC_UTF8_NO_CONTROL));
    assert_false(sc_utf8_valid("\xc0\x80", 2, SC_UTF8_NO_NUL));    /* overlong */
    assert_false(sc_utf8_valid("\xed\xa0\x80", 3, SC_UTF8_NO_NUL)); /* surrogate */
    assert_false(sc_utf8_valid("\xe2\x82", 2, SC_UTF8_NO_NUL));    /* truncated */
    /* What each rule lets through. */
    assert_true(sc_utf8_valid(NULL, 0, SC_UTF8_NO_CONTROL));
    assert_true(sc_utf8_valid("a\0b", 3, SC_UTF8_ANY));
    assert_true(sc_utf8_valid("a\tb\x7f", 4, SC_UTF8_NO_NUL));
    assert_false(sc_utf8_valid("a\tb", 3, SC_UTF8_NO_CONTROL));
    assert_false(sc_utf8_valid("a\x1f", 2, SC_UTF8_NO_CONTROL));
    assert_false(sc_utf8_valid("a\x7f", 2, SC_UTF8_NO_CONTROL));
    assert_false(sc_utf8_valid("a\0", 2, SC_UTF8_NO_CONTROL));
    assert_true(sc_utf8_valid("\xc2\x85 \xe2\x80\xa8 \xef\xbf\xbf", 10, SC_UTF8_NO_CONTROL));
    for (size_t k = 0; k < SC_ARRAY_LEN(seqs); k++) {
        bool whole = seqs[k].len == seqs[k].n;
        if (seqs[k].len == 0)
            assert_false(sc_utf8_valid(seqs[k].s, seqs[k].n, SC_UTF8_ANY));
        else if (whole)
            assert_true(sc_utf8_valid(seqs[k].s, seqs[k].n, SC_UTF8_ANY));
    }
}

/* ---- JSON strings ---------------------------------------------------------------------------- */

/* From codec's tests (codec_json_string() is now sc_json_quote()). */
static void
test_json_quote(void **state)
{
    struct sc_buf out;

    (void)state;
    sc_buf_init(&out, 64);
    assert_int_equal(sc_json_quote(&out, "a\"b\\c\n\x01\xff", 8), SC_OK);
    assert_string_equal(out.data, "\"a\\\"b\\\\c\\n\\u0001\xef\xbf\xbd\"");
    sc_buf_reset(&out);
    assert_int_equal(sc_json_quote(&out, "", 0), SC_OK);
    assert_string_equal(out.data, "\"\"");
    sc_buf_reset(&out);
    assert_int_equal(sc_json_quote(&out, "0123456789012345678901234567890123456789012345678901234567890123456789", 70),
                     SC_ETOOBIG);
    sc_buf_destroy(&out);
}

/* From persist's tests (persist_json_string() is now sc_json_quote()). */
static void
test_json_quote_parses(void **state)
{
    struct sc_buf b;
    static const char bad[] = "a\"b\\c\n\x01\xff\xc3\x28\xed\xa0\x80\xf4\x90\x80\x80 \xc3\xa9 \xf0\x9f\x98\x80";
    json_t *j;

    (void)state;
    sc_buf_init(&b, 1 << 20);
    assert_int_equal(sc_json_quote(&b, bad, sizeof bad - 1), SC_OK);
    j = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
    assert_non_null(j); /* always parses */
    assert_true(json_is_string(j));
    assert_non_null(strstr(json_string_value(j), "\xc3\xa9")); /* valid text kept */
    assert_non_null(strstr(json_string_value(j), "\xef\xbf\xbd")); /* invalid replaced */
    assert_non_null(strstr(json_string_value(j), "\xf0\x9f\x98\x80"));
    json_decref(j);
    sc_buf_destroy(&b);
}

/* Input -> the exact quoted text (value, then as an object key). */
static const struct {
    const char *name;
    const char *s;
    size_t n;
    const char *json;
    const char *key;
} quotes[] = {
    {"short escapes", S("\"\\\n\r\t\b\f"), "\"\\\"\\\\\\n\\r\\t\\b\\f\"", NULL},
    {"other C0", S("\x01\x0b\x1f"), "\"\\u0001\\u000b\\u001f\"", NULL},
    {"NUL", S("a\0b"), "\"a\\u0000b\"", "\"a\xef\xbf\xbd" "b\""},
    {"DEL", S("\x7f"), "\"\\u007f\"", NULL},
    {"C1 controls", S("\xc2\x80\xc2\x85\xc2\x9f"), "\"\\u0080\\u0085\\u009f\"", NULL},
    {"first after C1", S("\xc2\xa0"), "\"\xc2\xa0\"", NULL},
    {"line separators kept", S("\xe2\x80\xa8\xe2\x80\xa9"), "\"\xe2\x80\xa8\xe2\x80\xa9\"", NULL},
    {"'/' and space kept", S("a/ b"), "\"a/ b\"", NULL},
    {"each bad byte once", S("a\xff\xc3" "b"), "\"a\xef\xbf\xbd\xef\xbf\xbd" "b\"", NULL},
    {"overlong", S("\xc0\xaf"), "\"\xef\xbf\xbd\xef\xbf\xbd\"", NULL},
    {"surrogate", S("\xed\xa0\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", NULL},
    {"past U+10FFFF", S("\xf4\x90\x80\x80"),
     "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", NULL},
    {"truncated at the end", S("ok\xe2\x82"), "\"ok\xef\xbf\xbd\xef\xbf\xbd\"", NULL},
    {"4-byte kept", S("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"", NULL},
};

static void
test_json_quote_exact(void **state)
{
    struct sc_buf out;

    (void)state;
    sc_buf_init(&out, 1024);
    for (size_t k = 0; k < SC_ARRAY_LEN(quotes); k++) {
        const char *key = quotes[k].key ? quotes[k].key : quotes[k].json;

        print_message("quote %s\n", quotes[k].name);
        sc_buf_reset(&out);
        assert_int_equal(sc_json_quote(&out, quotes[k].s, quotes[k].n), SC_OK);
        assert_string_equal(out.data, quotes[k].json);
        sc_buf_reset(&out);
        assert_int_equal(sc_json_quote_key(&out, quotes[k].s, quotes[k].n), SC_OK);
        assert_string_equal(out.data, key);
    }
    /* Every C0 control and DEL comes out escaped, never raw. */
    for (int c = 0; c < 0x80; c++) {
        char in = (char)c;
        sc_buf_reset(&out);
        assert_int_equal(sc_json_quote(&out, &in, 1), SC_OK);
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            assert_int_equal(out.data[1], '\\');
        else
            assert_int_equal(out.len, 3);
    }
    sc_buf_destroy(&out);
}

/*
 * Long strings are scanned eight bytes at a time: a byte that needs care at
 * any position of a 16-byte string comes out exactly as it does alone.
 */
static void
test_json_quote_words(void **state)
{
    static const unsigned char special[] = {0x00, 0x01, 0x1f, '"', '\\', 0x7f, 0x80, 0xc3, 0xff, 0x20, 0x7e};
    struct sc_buf out, one, want;

    (void)state;
    sc_buf_init(&out, 1024);
    sc_buf_init(&one, 64);
    sc_buf_init(&want, 1024);
    for (size_t c = 0; c < sizeof(special); c++) {
        char in[16];
        sc_buf_reset(&one);
        assert_int_equal(sc_json_quote(&one, (const char *)&special[c], 1), SC_OK);
        for (size_t pos = 0; pos < sizeof(in); pos++) {
            memset(in, 'a', sizeof(in));
            in[pos] = (char)special[c];
            sc_buf_reset(&want);
            sc_buf_append(&want, "\"", 1);
            sc_buf_append(&want, in, pos);
            sc_buf_append(&want, one.data + 1, one.len - 2); /* the byte alone, without its quotes */
            sc_buf_append(&want, in + pos + 1, sizeof(in) - pos - 1);
            sc_buf_append(&want, "\"", 1);
            sc_buf_reset(&out);
            assert_int_equal(sc_json_quote(&out, in, sizeof(in)), SC_OK);
            assert_string_equal(out.data, want.data);
        }
    }
    sc_buf_destroy(&out);
    sc_buf_destroy(&one);
    sc_buf_destroy(&want);
}

/* A value written into a full buffer goes as far as the cap, then SC_ETOOBIG. */
static void
test_json_quote_cap(void **state)
{
    struct sc_buf out;

    (void)state;
    sc_buf_init(&out, 5);
    assert_int_equal(sc_json_quote(&out, "abcdef", 6), SC_ETOOBIG);
    assert_int_equal(out.len, 5);
    assert_string_equal(out.data, "\"abcd");
    sc_buf_reset(&out);
    assert_int_equal(sc_json_quote(&out, "\n\n\n", 3), SC_ETOOBIG);
    assert_string_equal(out.data, "\"\\n\\n");
    sc_buf_reset(&out);
    assert_int_equal(sc_json_quote(&out, "abc", 3), SC_OK); /* exactly the cap */
    assert_string_equal(out.data, "\"abc\"");
    sc_buf_destroy(&out);
}

/* Any bytes: the text parses, and valid UTF-8 comes back unchanged. */
static void
test_json_quote_round_trip(void **state)
{
    static const unsigned char alphabet[] = {0x00, 0x01, 0x1f, ' ',  '"',  '\\', 'a',  0x7f,
                                             0x80, 0xbf, 0xc2, 0xc3, 0xe0, 0xed, 0xef, 0xf0,
                                             0xf4, 0xff, 0xa0, 0x9f, 0x8f, 0x90, 0xa9, 0xb8};
    struct sc_buf out;
    uint64_t x = 88172645463325252ULL;
    char in[12];

    (void)state;
    sc_buf_init(&out, 1024);
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)round % sizeof(in);
        json_error_t jerr;
        json_t *j;

        for (size_t k = 0; k < n; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            in[k] = (char)alphabet[x % sizeof(alphabet)];
        }
        sc_buf_reset(&out);
        assert_int_equal(sc_json_quote(&out, in, n), SC_OK);
        j = json_loadb(out.data, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!j)
            print_message("jansson: %s in %s\n", jerr.text, out.data);
        assert_non_null(j);
        if (sc_utf8_valid(in, n, SC_UTF8_ANY)) {
            assert_int_equal(json_string_length(j), n);
            assert_memory_equal(json_string_value(j), in, n);
        }
        json_decref(j);
    }
    sc_buf_destroy(&out);
}

/* ---- base64 ---------------------------------------------------------------------------------- */

/* From persist's tests (persist_base64_*() are now sc_base64_*()). */
static void
test_base64(void **state)
{
    struct sc_buf e, d;
    unsigned char in[300];

    (void)state;
    sc_buf_init(&e, 1 << 20);
    sc_buf_init(&d, 1 << 20);
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(i * 131 + 7);
    for (size_t n = 0; n <= sizeof in; n++) {
        sc_buf_reset(&e);
        sc_buf_reset(&d);
        assert_int_equal(sc_base64_encode(&e, in, n), SC_OK);
        assert_int_equal(e.len, (n + 2) / 3 * 4);
        assert_int_equal(sc_base64_decode(e.data ? e.data : "", e.len, &d), SC_OK);
        assert_int_equal(d.len, n);
        if (n)
            assert_memory_equal(d.data, in, n);
    }
    sc_buf_reset(&e);
    sc_base64_encode(&e, "foobar", 6);
    assert_string_equal(e.data, "Zm9vYmFy");
    sc_buf_reset(&e);
    sc_base64_encode(&e, "fo", 2);
    assert_string_equal(e.data, "Zm8=");
    {   /* past the cap: as much as fits, then SC_ETOOBIG (the in-place path needs room for all) */
        struct sc_buf small;
        sc_buf_init(&small, 5);
        assert_int_equal(sc_base64_encode(&small, "foobar", 6), SC_ETOOBIG);
        assert_int_equal(small.len, 5);
        assert_memory_equal(small.data, "Zm9vY", 5);
        sc_buf_destroy(&small);
    }
    sc_buf_reset(&d);
    assert_int_equal(sc_base64_decode("Zm8", 3, &d), SC_OK); /* no padding */
    assert_int_equal(d.len, 2);
    assert_int_equal(sc_base64_decode("Zm9v!mFy", 8, &d), SC_EPROTO);
    assert_int_equal(sc_base64_decode("Z", 1, &d), SC_EPROTO);
    /* padded standard base64 only (payload_b64) */
    assert_true(sc_base64_padded("Zm8=", 4));
    assert_true(sc_base64_padded("Zg==", 4));
    assert_true(sc_base64_padded("Zm9vYmFy", 8));
    assert_true(sc_base64_padded("", 0));
    assert_false(sc_base64_padded("Zm8", 3));
    assert_false(sc_base64_padded("Zg", 2));
    assert_false(sc_base64_padded("Zm9v====", 8));
    assert_false(sc_base64_padded("Zm=v", 4));
    assert_false(sc_base64_padded("====", 4));
    sc_buf_destroy(&e);
    sc_buf_destroy(&d);
}

/* Padding, the RFC 4648 vectors, and what is refused. */
static void
test_base64_padding(void **state)
{
    static const struct {
        const char *in, *out;
    } vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                   {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                   {"foobar", "Zm9vYmFy"}};
    static const struct {
        const char *in;
        const char *out; /* NULL: SC_EPROTO */
    } decodes[] = {
        {"Zg==", "f"}, {"Zg=", "f"},     {"Zg", "f"},       {"Zg===", "f"}, {"Zm8=", "fo"},
        {"Zm8", "fo"}, {"", ""},         {"=", ""},         {"Z===", NULL}, {"Zg=a", NULL},
        {"Z", NULL},   {"Zm9vY", NULL},  {"Zm9 v", NULL},   {"Zm-_", NULL}, {"Zm9v\n", NULL},
        {"/+8=", "\xff\xef"},
    };
    struct sc_buf b;

    (void)state;
    sc_buf_init(&b, 1 << 10);
    for (size_t k = 0; k < SC_ARRAY_LEN(vectors); k++) {
        sc_buf_reset(&b);
        assert_int_equal(sc_base64_encode(&b, vectors[k].in, strlen(vectors[k].in)), SC_OK);
        assert_string_equal(b.data ? b.data : "", vectors[k].out);
    }
    for (size_t k = 0; k < SC_ARRAY_LEN(decodes); k++) {
        sc_status want = decodes[k].out ? SC_OK : SC_EPROTO;

        print_message("base64 decode '%s'\n", decodes[k].in);
        sc_buf_reset(&b);
        assert_int_equal(sc_base64_decode(decodes[k].in, strlen(decodes[k].in), &b), want);
        if (decodes[k].out) {
            assert_int_equal(b.len, strlen(decodes[k].out));
            if (b.len)
                assert_memory_equal(b.data, decodes[k].out, b.len);
        }
    }
    /* Nothing to encode touches nothing; a cap cuts the text where it falls. */
    sc_buf_destroy(&b);
    sc_buf_init(&b, 6);
    assert_int_equal(sc_base64_encode(&b, NULL, 0), SC_OK);
    assert_null(b.data);
    assert_int_equal(sc_base64_encode(&b, "foobar", 6), SC_ETOOBIG);
    assert_string_equal(b.data, "Zm9vYm");
    sc_buf_destroy(&b);
}

/* The JSON writer: commas, nesting, every value kind, and the sticky error at the cap. */
static void
test_jw(void **state)
{
    struct sc_buf b;
    struct sc_jw w;

    (void)state;
    sc_buf_init(&b, 4096);
    sc_jw_init(&w, &b);
    sc_jw_open(&w, NULL, '{');
    sc_jw_str(&w, "s", "a\"b");
    sc_jw_strn(&w, "n", "xy\0z", 4);
    sc_jw_str(&w, "z", NULL);
    sc_jw_int(&w, "i", -42);
    sc_jw_uint(&w, "u", UINT64_MAX);
    sc_jw_bool(&w, "t", true);
    sc_jw_bool(&w, "f", false);
    sc_jw_null(&w, "nil");
    sc_jw_time(&w, "at", 1);
    sc_jw_time(&w, "never", 0);
    sc_jw_fmt(&w, "pct", "%.2f", 12.5);
    sc_jw_open(&w, "o", '{');
    sc_jw_close(&w, '}');
    sc_jw_open(&w, "a", '[');
    sc_jw_open(&w, NULL, '{');
    sc_jw_int(&w, "k", 1);
    sc_jw_close(&w, '}');
    sc_jw_open(&w, NULL, '{');
    sc_jw_int(&w, "k", 2);
    sc_jw_close(&w, '}');
    sc_jw_close(&w, ']');
    sc_jw_key(&w, "raw");
    sc_jw_raw(&w, "[1]", 3);
    sc_jw_close(&w, '}');
    assert_int_equal(w.st, SC_OK);
    {
        /* The hand-written decimals at their edges. */
        struct sc_buf e;
        struct sc_jw we;
        sc_buf_init(&e, 4096);
        sc_jw_init(&we, &e);
        sc_jw_open(&we, NULL, '[');
        sc_jw_int(&we, NULL, INT64_MIN);
        sc_jw_int(&we, NULL, INT64_MAX);
        sc_jw_int(&we, NULL, 0);
        sc_jw_int(&we, NULL, -7);
        sc_jw_uint(&we, NULL, 0);
        sc_jw_uint(&we, NULL, 10);
        sc_jw_close(&we, ']');
        assert_string_equal(e.data, "[-9223372036854775808,9223372036854775807,0,-7,0,10]");
        sc_buf_destroy(&e);
    }
    assert_string_equal(b.data, "{\"s\":\"a\\\"b\",\"n\":\"xy\\u0000z\",\"z\":null,\"i\":-42,"
                                "\"u\":18446744073709551615,\"t\":true,\"f\":false,\"nil\":null,"
                                "\"at\":\"1970-01-01T00:00:00.001Z\",\"never\":null,\"pct\":12.50,"
                                "\"o\":{},\"a\":[{\"k\":1},{\"k\":2}],\"raw\":[1]}");
    sc_buf_destroy(&b);

    /* Past the cap: the first failure sticks and nothing more is written. */
    sc_buf_init(&b, 8);
    sc_jw_init(&w, &b);
    sc_jw_raw(&w, "{", 1);
    sc_jw_int(&w, "abc", 1);
    assert_int_equal(w.st, SC_OK);
    sc_jw_str(&w, "longer", "value");
    assert_int_equal(w.st, SC_ETOOBIG);
    sc_jw_raw(&w, "}", 1);
    assert_int_equal(w.st, SC_ETOOBIG);
    assert_true(b.len <= 8);
    sc_buf_destroy(&b);
}

/* sc_random_u64(): never 0, and 64 draws are 64 different values (the kernel's source, not a clock). */
static void
test_random(void **state)
{
    uint64_t seen[64];

    (void)state;
    for (int i = 0; i < 64; i++) {
        seen[i] = sc_random_u64();
        assert_true(seen[i] != 0);
        for (int k = 0; k < i; k++)
            assert_true(seen[k] != seen[i]);
    }
}

/* sc_find_str(): found at its index, absent at its insertion point, in an array of structs. */
static void
test_find_str(void **state)
{
    struct row {
        const char *name;
        int v;
    } rows[] = {{"a.b", 1}, {"a.c", 2}, {"b", 3}, {"d.e.f", 4}};

    (void)state;
    assert_int_equal(sc_find_str(rows, 4, sizeof(rows[0]), "a.b"), 0);
    assert_int_equal(sc_find_str(rows, 4, sizeof(rows[0]), "b"), 2);
    assert_int_equal(sc_find_str(rows, 4, sizeof(rows[0]), "d.e.f"), 3);
    assert_int_equal(sc_find_str(rows, 4, sizeof(rows[0]), "a"), -1);
    assert_int_equal(sc_find_str(rows, 4, sizeof(rows[0]), "c"), -4);
    assert_int_equal(sc_find_str(rows, 4, sizeof(rows[0]), "z"), -5);
    assert_int_equal(sc_find_str(rows, 0, sizeof(rows[0]), "a"), -1);
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
        cmocka_unit_test(test_clock_hold),
        cmocka_unit_test(test_utf8_next),
        cmocka_unit_test(test_utf8_every_code_point),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_json_quote),
        cmocka_unit_test(test_json_quote_parses),
        cmocka_unit_test(test_json_quote_exact),
        cmocka_unit_test(test_json_quote_words),
        cmocka_unit_test(test_json_quote_cap),
        cmocka_unit_test(test_json_quote_round_trip),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_base64_padding),
        cmocka_unit_test(test_jw),
        cmocka_unit_test(test_find_str),
        cmocka_unit_test(test_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
