/* test_codec.c - cmocka unit tests of codec/: envelopes, hostile bytes, JSON rendering, subjects, outcomes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <msgpack.h>

#include "codec-internal.h"
#include "codec.h"

/* Byte-string literals with their length (they may hold NULs). */
#define B(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* A map of {task_id: "t-1", task: {"x": 1}} plus, when key is set, key: value (raw bytes). */
static size_t
envelope(uint8_t *out, size_t cap, const char *key, const uint8_t *val, size_t vlen)
{
    static const uint8_t head[] = "\xa7task_id\xa3t-1\xa4task\x81\xa1x\x01";
    size_t n = 0, klen = key ? strlen(key) : 0;

    assert_true(sizeof(head) - 1 + klen + vlen + 8 <= cap);
    out[n++] = key ? 0x83 : 0x82;
    memcpy(out + n, head, sizeof(head) - 1);
    n += sizeof(head) - 1;
    if (key) {
        assert_true(klen < 32);
        out[n++] = (uint8_t)(0xa0 | klen);
        memcpy(out + n, key, klen);
        n += klen;
        memcpy(out + n, val, vlen);
        n += vlen;
    }
    return n;
}

/* Decodes len bytes copied into a heap block of exactly that size (so ASan sees any over-read). */
static sc_status
decode_exact(struct codec *c, const void *buf, size_t len, bool is_json, struct codec_envelope *env)
{
    void *copy = malloc(len ? len : 1);
    sc_status s;

    assert_non_null(copy);
    if (len)
        memcpy(copy, buf, len);
    s = codec_decode(c, copy, len, is_json, env);
    /* The views must not be used after the input dies; tests that read them use codec_decode(). */
    free(copy);
    return s;
}

/* A full envelope using every contract key, packed with msgpack-c. */
static void
pack_full(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    static const char ts[12] = {0x00, (char)0xf4, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00,
                                0x65, 0x00, 0x00, 0x00};

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 13);
    msgpack_pack_str_with_body(&pk, "task_id", 7);
    msgpack_pack_str_with_body(&pk, "order-42", 8);
    msgpack_pack_str_with_body(&pk, "task", 4);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "items", 5);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, -300);
    msgpack_pack_double(&pk, 2.5);
    msgpack_pack_str_with_body(&pk, "blob", 4);
    msgpack_pack_bin_with_body(&pk, "\x00\x01\x02", 3);
    msgpack_pack_str_with_body(&pk, "error", 5);
    msgpack_pack_str_with_body(&pk, "connection reset by peer", 24);
    msgpack_pack_str_with_body(&pk, "error_type", 10);
    msgpack_pack_str_with_body(&pk, "ConnectionError", 15);
    msgpack_pack_str_with_body(&pk, "error_category", 14);
    msgpack_pack_str_with_body(&pk, "network", 7);
    msgpack_pack_str_with_body(&pk, "retry_policy", 12);
    msgpack_pack_str_with_body(&pk, "linear", 6);
    msgpack_pack_str_with_body(&pk, "max_retries", 11);
    msgpack_pack_int(&pk, 5);
    msgpack_pack_str_with_body(&pk, "retry_subject", 13);
    msgpack_pack_str_with_body(&pk, "dlq.retry.orders", 16);
    msgpack_pack_str_with_body(&pk, "repos", 5);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, "a/b", 3);
    msgpack_pack_str_with_body(&pk, "c/d", 3);
    msgpack_pack_str_with_body(&pk, "metadata", 8);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "host", 4);
    msgpack_pack_str_with_body(&pk, "web-1", 5);
    msgpack_pack_str_with_body(&pk, "failed_at", 9);
    msgpack_pack_ext_with_body(&pk, ts, sizeof(ts), -1);
    msgpack_pack_str_with_body(&pk, "enqueue", 7);
    msgpack_pack_true(&pk);
    msgpack_pack_str_with_body(&pk, "x-extra", 7);
    msgpack_pack_nil(&pk);
}

static const char full_json[] =
    "{\"task_id\":\"order-42\",\"task\":{\"items\":[1,-300,2.5],\"blob\":\"AAEC\"},"
    "\"error\":\"connection reset by peer\",\"error_type\":\"ConnectionError\","
    "\"error_category\":\"network\",\"retry_policy\":\"linear\",\"max_retries\":5,"
    "\"retry_subject\":\"dlq.retry.orders\",\"repos\":[\"a/b\",\"c/d\"],"
    "\"metadata\":{\"host\":\"web-1\"},\"failed_at\":\"2023-09-12T12:34:56.789Z\","
    "\"enqueue\":true,\"x-extra\":null}";

static bool
str_eq(struct codec_str s, const char *want)
{
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static void
test_limits_default(void **state)
{
    struct codec_limits l;
    struct codec *c;

    (void)state;
    codec_limits_default(&l);
    assert_int_equal(l.max_envelope_bytes, 1024 * 1024);
    assert_int_equal(l.max_depth, 32);
    assert_int_equal(l.max_task_id_len, 256);
    assert_int_equal(l.max_error_len, 4096);
    assert_int_equal(l.max_metadata_keys, 64);
    assert_int_equal(l.max_metadata_bytes, 16384);
    assert_int_equal(l.max_repos, 64);
    assert_int_equal(l.max_string_len, 1024);
    l.max_depth = 7;
    c = codec_new(&l);
    assert_int_equal(codec_limits_get(c)->max_depth, 7);
    assert_int_equal(codec_limits_get(c)->max_error_len, 4096);
    codec_free(c);
    c = codec_new(NULL);
    assert_int_equal(codec_limits_get(c)->max_depth, 32);
    assert_int_equal(codec_limits_get(c)->max_string_len, 1024);
    codec_free(c);
    codec_free(NULL);
}

static void
test_full_envelope(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    msgpack_sbuffer sb;
    json_t *task;
    struct sc_buf out;
    uint64_t seen;

    (void)state;
    pack_full(&sb);
    assert_int_equal(codec_decode(c, sb.data, sb.size, false, &env), SC_OK);
    assert_string_equal(env.reason, "");
    assert_string_equal(env.why, "");
    assert_true(str_eq(env.task_id, "order-42"));
    assert_true(str_eq(env.error, "connection reset by peer"));
    assert_false(env.error_truncated);
    assert_true(str_eq(env.error_type, "ConnectionError"));
    assert_true(str_eq(env.error_category, "network"));
    assert_true(str_eq(env.retry_policy, "linear"));
    assert_true(str_eq(env.retry_subject, "dlq.retry.orders"));
    assert_true(env.has_max_retries);
    assert_int_equal(env.max_retries, 5);
    assert_true(env.has_failed_at);
    assert_int_equal(env.failed_at_ms, 0x65000000LL * 1000 + 16);
    assert_true(env.enqueue);
    assert_int_equal(env.unknown_keys, 1);
    assert_non_null(env.repos.ptr);
    assert_int_equal((uint8_t)env.repos.ptr[0], 0x92);
    assert_non_null(env.metadata.ptr);
    assert_int_equal((uint8_t)env.metadata.ptr[0], 0x81);

    /* The task's bytes are a slice of the input. */
    assert_true(env.task.ptr > sb.data && env.task.ptr < sb.data + sb.size);
    sc_buf_init(&out, 1 << 20);
    assert_int_equal(codec_render_json(env.task.ptr, env.task.len, 32, &out), SC_OK);
    assert_string_equal(out.data, "{\"items\":[1,-300,2.5],\"blob\":{\"$bin\":\"AAEC\"}}");
    sc_buf_destroy(&out);

    /* The JSON form decodes to the same fields. */
    assert_int_equal(codec_decode(c, full_json, strlen(full_json), false, &env), SC_OK);
    assert_true(str_eq(env.task_id, "order-42"));
    assert_true(str_eq(env.retry_subject, "dlq.retry.orders"));
    assert_int_equal(env.max_retries, 5);
    assert_int_equal(env.failed_at_ms, 1694522096789LL);
    assert_true(env.enqueue);
    assert_int_equal(env.unknown_keys, 1);
    sc_buf_init(&out, 1 << 20);
    assert_int_equal(codec_render_json(env.task.ptr, env.task.len, 32, &out), SC_OK);
    task = json_loads(out.data, 0, NULL);
    assert_non_null(task);
    seen = (uint64_t)json_integer_value(json_array_get(json_object_get(task, "items"), 1));
    assert_int_equal((int64_t)seen, -300);
    assert_string_equal(json_string_value(json_object_get(task, "blob")), "AAEC");
    json_decref(task);
    sc_buf_destroy(&out);
    msgpack_sbuffer_destroy(&sb);
    codec_free(c);
}

/* Raw bytes that must be refused, with the reason. */
static const struct {
    const char *name;
    const uint8_t *buf;
    size_t len;
    const char *reason;
} hostile[] = {
    {"array32 of 4G", B("\xdd\xff\x00\x00\x00"), "truncated"},
    {"map32 of 4G", B("\xdf\xff\x00\x00\x00"), "truncated"},
    {"map32 header cut", B("\xdf\xff\xff"), "truncated"},
    {"str32 of 4G", B("\xdb\xff\xff\xff\xff"), "truncated"},
    {"bin32 of 4G", B("\xc6\xff\xff\xff\xff"), "truncated"},
    {"ext32 of 4G", B("\xc9\xff\xff\xff\xff\x01"), "truncated"},
    {"reserved byte", B("\xc1"), "bad_msgpack"},
    {"map with reserved key", B("\x81\xc1\x01"), "bad_msgpack"},
    {"empty", B(""), "not_a_map"},
    {"an integer", B("\x05"), "not_a_map"},
    {"an array", B("\x92\x01\x02"), "not_a_map"},
    {"map of 8 pairs, 1 byte", B("\x88\x01"), "truncated"},
    {"array owing more than it has", B("\x81\xa1k\x9f\x01\x02"), "truncated"},
    {"nested owing", B("\x81\xa1k\x92\x92\x01\x02"), "truncated"},
    {"trailing byte", B("\x82\xa7task_id\xa1t\xa4task\xc0\x00"), "trailing_bytes"},
    {"int key", B("\x82\x01\x02\xa4task\xc0"), "bad_type"},
    {"float32 cut", B("\x81\xa4task\xca\x00\x00"), "truncated"},
};

static void
test_hostile(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(hostile); k++) {
        sc_status s = decode_exact(c, hostile[k].buf, hostile[k].len, false, &env);
        print_message("hostile %s: %s (%s)\n", hostile[k].name, env.reason, env.why);
        assert_int_equal(s, SC_EPROTO);
        assert_string_equal(env.reason, hostile[k].reason);
        assert_true(env.why[0] != '\0');
        assert_null(env.task_id.ptr);
        assert_null(env.task.ptr);
    }
    /* The two 5-byte payloads of the issue, also through the public checker. */
    assert_int_equal(codec_msgpack_check("\xdd\xff\x00\x00\x00", 5, 32, NULL), SC_EPROTO);
    assert_int_equal(codec_msgpack_check("\xdf\xff\x00\x00\x00", 5, 32, NULL), SC_EPROTO);
    codec_free(c);
}

static void
test_metadata_hostile(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    uint8_t buf[256];
    size_t n;

    (void)state;
    /* metadata: a map32 declaring 4294967295 pairs, then a little data. */
    n = envelope(buf, sizeof(buf), "metadata", B("\xdf\xff\xff\xff\xff\xa1k\x01"));
    assert_int_equal(decode_exact(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "truncated");
    assert_non_null(strstr(env.why, "metadata"));
    /* Same as the last bytes of the message. */
    n = envelope(buf, sizeof(buf), "metadata", B("\xdf\xff\xff\xff\xff"));
    assert_int_equal(decode_exact(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "truncated");
    codec_free(c);
}

static void
test_too_deep(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    size_t n = 1000 * 1000, used = 7;
    uint8_t *buf = malloc(n);
    char *json;
    struct sc_buf out;
    uint8_t ok[64], bad[64];

    (void)state;
    assert_non_null(buf);
    memset(buf, 0x91, n);
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_deep");
    assert_int_equal(codec_msgpack_check(buf, n, 32, &used), SC_EPROTO);
    assert_int_equal(used, 0);
    assert_int_equal(codec_msgpack_check(buf, n, 100000, NULL), SC_EPROTO);
    sc_buf_init(&out, 1 << 20);
    assert_int_equal(codec_render_json(buf, n, 32, &out), SC_EPROTO);
    assert_int_equal(codec_render_json(buf, n, 5000, &out), SC_EPROTO);
    sc_buf_destroy(&out);
    /* The same inside a map value. */
    buf[0] = 0x81;
    buf[1] = 0xa1;
    buf[2] = 'k';
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_deep");
    free(buf);

    /* Exactly at the limit: envelope (1) + 31 nested arrays as the task = 32 levels. */
    memset(ok, 0x91, sizeof(ok));
    memcpy(ok, "\x82\xa7task_id\xa1t\xa4task", 16);
    ok[16 + 30] = 0x90;
    assert_int_equal(codec_decode(c, ok, 16 + 31, false, &env), SC_OK);
    memcpy(bad, ok, sizeof(bad));
    bad[16 + 30] = 0x91;
    bad[16 + 31] = 0x90;
    assert_int_equal(codec_decode(c, bad, 16 + 32, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_deep");

    /* JSON: deeper than jansson's own parser allows, and deeper than ours. */
    json = malloc(n + 1);
    assert_non_null(json);
    memcpy(json, "{\"a\":", 5);
    memset(json + 5, '[', n - 5);
    json[n] = '\0';
    assert_int_equal(codec_decode(c, json, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_deep");
    strcpy(json, "{\"task_id\":\"t\",\"task\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}");
    assert_int_equal(codec_decode(c, json, strlen(json), false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_deep");
    free(json);
    codec_free(c);
}

static void
test_truncated_everywhere(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    msgpack_sbuffer sb;
    size_t jlen = strlen(full_json);

    (void)state;
    pack_full(&sb);
    assert_int_equal(decode_exact(c, sb.data, sb.size, false, &env), SC_OK);
    for (size_t k = 0; k < sb.size; k++) {
        assert_int_equal(decode_exact(c, sb.data, k, false, &env), SC_EPROTO);
        assert_true(env.reason[0] != '\0');
        assert_int_equal(codec_msgpack_check(sb.data, k, 32, NULL), SC_EPROTO);
    }
    for (size_t k = 0; k < jlen; k++) {
        assert_int_not_equal(decode_exact(c, full_json, k, false, &env), SC_OK);
        assert_int_not_equal(decode_exact(c, full_json, k, true, &env), SC_OK);
    }
    msgpack_sbuffer_destroy(&sb);
    codec_free(c);
}

/* max_retries (and the other typed keys): value bytes -> result. */
static const struct {
    const char *key;
    const uint8_t *val;
    size_t vlen;
    const char *reason; /* "" for SC_OK */
    const char *why;    /* NULL: not checked */
    bool has;
    int value;
} typed[] = {
    {"max_retries", B("\x00"), "", NULL, true, 0},
    {"max_retries", B("\x64"), "", NULL, true, 100},
    {"max_retries", B("\xcc\x07"), "", NULL, true, 7},
    {"max_retries", B("\xd3\x00\x00\x00\x00\x00\x00\x00\x03"), "", NULL, true, 3},
    {"max_retries", B("\x65"), "out_of_range", "max_retries: 101 is out of range 0-100", false, 0},
    {"max_retries", B("\xff"), "out_of_range", "max_retries: -1 is out of range 0-100", false, 0},
    {"max_retries", B("\xd0\xff"), "out_of_range", "max_retries: -1 is out of range 0-100", false, 0},
    {"max_retries", B("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), "out_of_range",
     "max_retries: 18446744073709551615 is out of range 0-100", false, 0},
    {"max_retries", B("\xc0"), "", NULL, false, 0},
    {"max_retries", B("\xa1" "3"), "bad_type", "max_retries: must be an integer 0-100", false, 0},
    {"max_retries", B("\xcb\x40\x08\x00\x00\x00\x00\x00\x00"), "bad_type",
     "max_retries: must be an integer 0-100", false, 0},
    {"max_retries", B("\xc3"), "bad_type", "max_retries: must be an integer 0-100", false, 0},
    {NULL, NULL, 0, "", NULL, false, 0}, /* absent */
};

static void
test_max_retries(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    uint8_t buf[256];

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(typed); k++) {
        size_t n = envelope(buf, sizeof(buf), typed[k].key, typed[k].val, typed[k].vlen);
        sc_status s = codec_decode(c, buf, n, false, &env);
        print_message("max_retries row %zu: %s %s\n", k, env.reason, env.why);
        assert_int_equal(s, typed[k].reason[0] ? SC_EPROTO : SC_OK);
        assert_string_equal(env.reason, typed[k].reason);
        if (typed[k].why)
            assert_string_equal(env.why, typed[k].why);
        assert_int_equal(env.has_max_retries, typed[k].has);
        if (typed[k].has)
            assert_int_equal(env.max_retries, typed[k].value);
    }
    codec_free(c);
}

static const struct {
    const char *json;
    const char *reason;
    const char *why;
    bool has;
    int value;
} json_typed[] = {
    {"{\"task_id\":\"t\",\"task\":{},\"max_retries\":0}", "", "", true, 0},
    {"{\"task_id\":\"t\",\"task\":{},\"max_retries\":100}", "", "", true, 100},
    {"{\"task_id\":\"t\",\"task\":{},\"max_retries\":-1}", "out_of_range",
     "max_retries: -1 is out of range 0-100", false, 0},
    {"{\"task_id\":\"t\",\"task\":{},\"max_retries\":null}", "", "", false, 0},
    {"{\"task_id\":\"t\",\"task\":{},\"max_retries\":\"3\"}", "bad_type",
     "max_retries: must be an integer 0-100", false, 0},
    {"{\"task_id\":\"t\",\"task\":{},\"max_retries\":3.5}", "bad_type",
     "max_retries: must be an integer 0-100", false, 0},
    {"{\"task_id\":\"t\",\"task\":{}}", "", "", false, 0},
    {"  \n{\"task_id\":\"t\",\"task\":{},\"max_retries\":2}  ", "", "", true, 2},
    {"{\"task_id\":\"t\",\"task\":{},\"max_retries\":1,\"max_retries\":2}", "duplicate_key", NULL,
     false, 0},
    {"{\"task_id\":\"t\",\"task\":{}} x", "trailing_bytes", NULL, false, 0},
    {"{\"task_id\":\"t\",\"task\":{},}", "bad_json", NULL, false, 0},
    {"{\"task_id\":\"t\",\"task\":", "truncated", NULL, false, 0},
    {"{\"task\":{}}", "task_id_missing", "task_id: missing", false, 0},
    {"{\"task_id\":\"t\"}", "task_missing", "task: missing", false, 0},
    {"{\"task_id\":\"\",\"task\":1}", "task_id_missing", NULL, false, 0},
    {"{\"task_id\":\"a\\u0000b\",\"task\":1}", "bad_chars", NULL, false, 0},
    {"{\"task_id\":7,\"task\":1}", "bad_type", NULL, false, 0},
    {"{\"task_id\":\"t\",\"task\":1,\"enqueue\":\"yes\"}", "bad_type", NULL, false, 0},
    {"{\"task_id\":\"t\",\"task\":1,\"failed_at\":\"yesterday\"}", "bad_timestamp", NULL, false, 0},
    {"{\"task_id\":\"t\",\"task\":1,\"repos\":[\"a\",2]}", "bad_type", NULL, false, 0},
    {"{\"task_id\":\"t\",\"task\":1,\"metadata\":[]}", "bad_type", NULL, false, 0},
};

static void
test_json_envelopes(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(json_typed); k++) {
        const char *j = json_typed[k].json;
        sc_status s = codec_decode(c, j, strlen(j), false, &env);
        print_message("json row %zu: %s %s\n", k, env.reason, env.why);
        assert_int_equal(s, json_typed[k].reason[0] ? SC_EPROTO : SC_OK);
        assert_string_equal(env.reason, json_typed[k].reason);
        if (json_typed[k].why)
            assert_string_equal(env.why, json_typed[k].why);
        assert_int_equal(env.has_max_retries, json_typed[k].has);
        if (json_typed[k].has)
            assert_int_equal(env.max_retries, json_typed[k].value);
        /* is_json forces the JSON parser even without the leading '{' check. */
        s = codec_decode(c, j, strlen(j), true, &env);
        assert_string_equal(env.reason, json_typed[k].reason);
    }
    /* The shell example of DESIGN section 4. */
    {
        const char *j = "{\"task_id\":\"42\",\"task\":{},\"error\":\"boom\"}";
        assert_int_equal(codec_decode(c, j, strlen(j), false, &env), SC_OK);
        assert_true(str_eq(env.task_id, "42"));
        assert_true(str_eq(env.error, "boom"));
        assert_int_equal(env.task.len, 1);
        assert_int_equal((uint8_t)env.task.ptr[0], 0x80);
    }
    /* JSON that is not an object; MessagePack when is_json says JSON. */
    assert_int_equal(codec_decode(c, "[1]", 3, true, &env), SC_EPROTO);
    assert_string_equal(env.reason, "not_a_map");
    assert_int_equal(codec_decode(c, "\x81\xa1k\x01", 4, true, &env), SC_EPROTO);
    assert_string_equal(env.reason, "bad_utf8");
    assert_int_equal(codec_decode(c, "\x01\x02", 2, true, &env), SC_EPROTO);
    assert_string_equal(env.reason, "bad_json");
    assert_int_equal(codec_decode(c, "{\"a\":\"\xff\"}", 8, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "bad_utf8");
    codec_free(c);
}

/* Tasks in unusual but valid encodings: the exact bytes must come back. */
static const struct {
    const uint8_t *task;
    size_t len;
} tasks[] = {
    {B("\xcc\x05")},                         /* 5 as uint8, not a fixint */
    {B("\xd9\x03" "abc")},                   /* str8 for a short string */
    {B("\xde\x00\x01\xa1" "a\xc0")},         /* map16 of one pair */
    {B("\xdc\x00\x02\xc2\xc3")},             /* array16 */
    {B("\xc0")},                             /* nil */
    {B("\xc4\x00")},                         /* empty bin */
    {B("\xd8\x01" "0123456789abcdef")},      /* fixext16 */
    {B("\x82\x01\x02\x01\x03")},             /* duplicate non-string keys */
    {B("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x01")}, /* a NaN with payload */
};

static void
test_task_bytes_exact(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    uint8_t buf[256];

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(tasks); k++) {
        /* {"task_id": "t-1", "task": {"x": 1}, "task" ...} would be a duplicate; use a fresh map. */
        size_t n = 0;
        buf[n++] = 0x82;
        memcpy(buf + n, "\xa7task_id\xa1t\xa4task", 15);
        n += 15;
        memcpy(buf + n, tasks[k].task, tasks[k].len);
        n += tasks[k].len;
        assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
        assert_int_equal(env.task.len, tasks[k].len);
        assert_ptr_equal(env.task.ptr, (const char *)buf + 16);
        assert_memory_equal(env.task.ptr, tasks[k].task, tasks[k].len);
    }
    codec_free(c);
}

static const struct {
    const uint8_t *val;
    size_t vlen;
    const char *reason;
    int64_t ms;
} failed_at[] = {
    {B("\xd6\xff\x65\x00\x00\x00"), "", 0x65000000LL * 1000},
    /* timestamp 64: nsec 5000000 (5 ms) << 34 | 1700000000 s */
    {B("\xd7\xff\x01\x31\x2d\x00\x65\x53\xf1\x00"), "", 1700000000005LL},
    /* timestamp 96: nsec 999000000, seconds -1 */
    {B("\xc7\x0c\xff\x3b\x8b\x87\xc0\xff\xff\xff\xff\xff\xff\xff\xff"), "", -1},
    {B("\xcf\x00\x00\x01\x8a\x8a\x5e\x2f\x15"), "", 1694538542869LL},
    {B("\xd3\xff\xff\xff\xff\xff\xff\xfc\x18"), "", -1000},
    {B("\x00"), "", 0},
    {B("\xb8" "2023-09-12T12:34:56.789Z"), "", 1694522096789LL},
    {B("\xb9" "2023-09-12T14:34:56+02:00"), "", 1694522096000LL},
    {B("\xa9" "yesterday"), "bad_timestamp", 0},
    {B("\xb3" "2023-02-29T00:00:00Z"), "bad_timestamp", 0},
    {B("\xd7\xff\xff\xff\xff\xfc\x00\x00\x00\x00"), "bad_timestamp", 0}, /* nsec > 999999999 */
    {B("\xd5\xff\x00\x00"), "bad_timestamp", 0},                         /* 2 data bytes */
    {B("\xd6\x05\x65\x00\x00\x00"), "bad_type", 0},                      /* another ext */
    {B("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff"), "bad_timestamp", 0},     /* past year 9999 */
    {B("\xcb\x42\x78\xab\x0c\x6d\x11\x50\x00"), "bad_type", 0},          /* a float */
    {B("\xc0"), "", 0},                                                  /* nil: receipt time */
};

static void
test_failed_at(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    uint8_t buf[256];

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(failed_at); k++) {
        size_t n = envelope(buf, sizeof(buf), "failed_at", failed_at[k].val, failed_at[k].vlen);
        sc_status s = codec_decode(c, buf, n, false, &env);
        print_message("failed_at row %zu: %s %s\n", k, env.reason, env.why);
        assert_int_equal(s, failed_at[k].reason[0] ? SC_EPROTO : SC_OK);
        assert_string_equal(env.reason, failed_at[k].reason);
        if (!s && failed_at[k].val[0] != 0xc0) {
            assert_true(env.has_failed_at);
            assert_int_equal(env.failed_at_ms, failed_at[k].ms);
        } else {
            assert_false(env.has_failed_at);
        }
    }
    codec_free(c);
}

static void
test_error_field(void **state)
{
    struct codec_limits l;
    struct codec *c;
    struct codec_envelope env;
    uint8_t *buf = malloc(20000);
    char text[8000];
    size_t n, mlen = strlen(CODEC_TRUNC_MARKER);

    (void)state;
    assert_non_null(buf);
    codec_limits_default(&l);
    l.max_error_len = 100;
    c = codec_new(&l);

    /* absent, nil, empty: "" with a non-NULL pointer */
    n = envelope(buf, 20000, NULL, NULL, 0);
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_non_null(env.error.ptr);
    assert_int_equal(env.error.len, 0);
    n = envelope(buf, 20000, "error", B("\xc0"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_non_null(env.error.ptr);
    assert_int_equal(env.error.len, 0);
    n = envelope(buf, 20000, "error", B("\xa0"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_non_null(env.error.ptr);
    assert_int_equal(env.error.len, 0);
    /* bin is text too */
    n = envelope(buf, 20000, "error", B("\xc4\x04" "boom"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_true(str_eq(env.error, "boom"));
    /* other types are refused */
    n = envelope(buf, 20000, "error", B("\x05"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "bad_type");

    /* exactly max_error_len: kept whole and borrowed */
    memset(text, 'a', 100);
    n = envelope(buf, 20000, "error", B("\xd9\x64"));
    memcpy(buf + n, text, 100);
    assert_int_equal(codec_decode(c, buf, n + 100, false, &env), SC_OK);
    assert_false(env.error_truncated);
    assert_int_equal(env.error.len, 100);
    assert_ptr_equal(env.error.ptr, (const char *)buf + n);

    /* 5000 bytes: cut, marker, at most max_error_len */
    memset(text, 'b', 5000);
    n = envelope(buf, 20000, "error", B("\xda\x13\x88"));
    memcpy(buf + n, text, 5000);
    assert_int_equal(codec_decode(c, buf, n + 5000, false, &env), SC_OK);
    assert_true(env.error_truncated);
    assert_int_equal(env.error.len, 100);
    assert_memory_equal(env.error.ptr, text, 100 - mlen);
    assert_memory_equal(env.error.ptr + 100 - mlen, CODEC_TRUNC_MARKER, mlen);
    assert_true(env.error.ptr < (const char *)buf || env.error.ptr >= (const char *)buf + 20000);

    /* multi-byte text: never cut inside a character */
    for (size_t shift = 0; shift < 4; shift++) {
        size_t len = 0;
        for (size_t k = 0; k < shift; k++)
            text[len++] = 'x';
        while (len + 4 <= 300) {
            memcpy(text + len, "\xe2\x82\xac", 3); /* U+20AC */
            len += 3;
            memcpy(text + len, "\xf0\x9f\x98\x80", 4); /* U+1F600 */
            len += 4;
        }
        n = envelope(buf, 20000, "error", B("\xda\x00\x00"));
        buf[n - 2] = (uint8_t)(len >> 8);
        buf[n - 1] = (uint8_t)len;
        memcpy(buf + n, text, len);
        assert_int_equal(codec_decode(c, buf, n + len, false, &env), SC_OK);
        assert_true(env.error_truncated);
        assert_true(env.error.len <= 100);
        assert_true(env.error.len >= 100 - 3);
        assert_true(sc_utf8_valid(env.error.ptr, env.error.len, SC_UTF8_ANY));
        assert_memory_equal(env.error.ptr + env.error.len - mlen, CODEC_TRUNC_MARKER, mlen);
        assert_memory_equal(env.error.ptr, text, env.error.len - mlen);
    }
    codec_free(c);

    /* A limit shorter than the marker: the marker alone. */
    l.max_error_len = 4;
    c = codec_new(&l);
    n = envelope(buf, 20000, "error", B("\xa5" "hello"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_true(env.error_truncated);
    assert_true(str_eq(env.error, CODEC_TRUNC_MARKER));
    codec_free(c);
    free(buf);
}

/* Contract refusals of the other keys, MessagePack form. */
static const struct {
    const char *name;
    const uint8_t *buf;
    size_t len;
    const char *reason;
    const char *why; /* NULL: not checked */
} refusals[] = {
    {"no task_id", B("\x81\xa4task\xc0"), "task_id_missing", "task_id: missing"},
    {"no task", B("\x81\xa7task_id\xa1t"), "task_missing", "task: missing"},
    {"task_id nil", B("\x82\xa7task_id\xc0\xa4task\xc0"), "task_id_missing", NULL},
    {"task_id empty", B("\x82\xa7task_id\xa0\xa4task\xc0"), "task_id_missing", "task_id: empty"},
    {"task_id int", B("\x82\xa7task_id\x01\xa4task\xc0"), "bad_type", NULL},
    {"task_id bin", B("\x82\xa7task_id\xc4\x01t\xa4task\xc0"), "bad_type", NULL},
    {"task_id bad utf-8", B("\x82\xa7task_id\xa2\xc3\x28\xa4task\xc0"), "bad_utf8", NULL},
    {"task_id overlong", B("\x82\xa7task_id\xa2\xc0\xaf\xa4task\xc0"), "bad_utf8", NULL},
    {"task_id newline", B("\x82\xa7task_id\xa3" "a\nb\xa4task\xc0"), "bad_chars", NULL},
    {"task_id DEL", B("\x82\xa7task_id\xa1\x7f\xa4task\xc0"), "bad_chars", NULL},
    {"task_id C1", B("\x82\xa7task_id\xa2\xc2\x85\xa4task\xc0"), "bad_chars", NULL},
    {"duplicate task_id", B("\x83\xa7task_id\xa1t\xa4task\xc0\xa7task_id\xa1u"), "duplicate_key",
     "task_id: duplicate key"},
    {"bin key", B("\x82\xc4\x07task_id\xa1t\xa4task\xc0"), "bad_type", NULL},
    {"error_type int", B("\x83\xa7task_id\xa1t\xa4task\xc0\xaa" "error_type\x01"), "bad_type", NULL},
    {"retry_subject map", B("\x83\xa7task_id\xa1t\xa4task\xc0\xadretry_subject\x80"), "bad_type", NULL},
    {"retry_policy bool", B("\x83\xa7task_id\xa1t\xa4task\xc0\xacretry_policy\xc3"), "bad_type", NULL},
    {"error_category arr", B("\x83\xa7task_id\xa1t\xa4task\xc0\xae" "error_category\x90"), "bad_type", NULL},
    {"repos str", B("\x83\xa7task_id\xa1t\xa4task\xc0\xa5repos\xa1x"), "bad_type", NULL},
    {"repos nested", B("\x83\xa7task_id\xa1t\xa4task\xc0\xa5repos\x91\x90"), "bad_type", NULL},
    {"metadata array", B("\x83\xa7task_id\xa1t\xa4task\xc0\xa8metadata\x90"), "bad_type", NULL},
    {"enqueue int", B("\x83\xa7task_id\xa1t\xa4task\xc0\xa7" "enqueue\x01"), "bad_type", NULL},
};

static void
test_refusals(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(refusals); k++) {
        sc_status s = decode_exact(c, refusals[k].buf, refusals[k].len, false, &env);
        print_message("refusal %s: %s (%s)\n", refusals[k].name, env.reason, env.why);
        assert_int_equal(s, SC_EPROTO);
        assert_string_equal(env.reason, refusals[k].reason);
        if (refusals[k].why)
            assert_string_equal(env.why, refusals[k].why);
    }
    codec_free(c);
}

static void
test_limits_enforced(void **state)
{
    struct codec_limits l;
    struct codec *c;
    struct codec_envelope env;
    uint8_t buf[4096];
    size_t n;

    (void)state;
    codec_limits_default(&l);
    l.max_envelope_bytes = 200;
    l.max_task_id_len = 4;
    l.max_metadata_keys = 2;
    l.max_metadata_bytes = 20;
    l.max_repos = 2;
    l.max_string_len = 8;
    c = codec_new(&l);

    memset(buf, 0, sizeof(buf));
    assert_int_equal(codec_decode(c, buf, 201, false, &env), SC_ETOOBIG);
    assert_string_equal(env.reason, "too_big");
    assert_int_equal(codec_decode(c, "{", 201, true, &env), SC_ETOOBIG);

    n = envelope(buf, sizeof(buf), NULL, NULL, 0); /* task_id "t-1": 3 bytes */
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_int_equal(codec_decode(c, B("\x82\xa7task_id\xa5" "abcde\xa4task\xc0"), false, &env),
                     SC_EPROTO);
    assert_string_equal(env.reason, "too_big");
    assert_string_equal(env.why, "task_id: 5 bytes, at most 4");

    n = envelope(buf, sizeof(buf), "metadata", B("\x82\xa1" "a\x01\xa1" "b\x02"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_int_equal(env.metadata.len, 7);
    n = envelope(buf, sizeof(buf), "metadata", B("\x83\xa1" "a\x01\xa1" "b\x02\xa1" "c\x03"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_many_keys");
    n = envelope(buf, sizeof(buf), "metadata", B("\x81\xa1" "a\xb4" "01234567890123456789"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_big");

    n = envelope(buf, sizeof(buf), "repos", B("\x92\xa1" "a\xa1" "b"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_int_equal(env.repos.len, 5);
    n = envelope(buf, sizeof(buf), "repos", B("\x93\xa1" "a\xa1" "b\xa1" "c"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_big");
    n = envelope(buf, sizeof(buf), "repos", B("\x91\xa9" "123456789"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_big");

    n = envelope(buf, sizeof(buf), "error_type", B("\xa8" "12345678"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_true(str_eq(env.error_type, "12345678"));
    n = envelope(buf, sizeof(buf), "retry_subject", B("\xa9" "123456789"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_EPROTO);
    assert_string_equal(env.reason, "too_big");

    /* unknown keys are counted, whatever their values */
    n = envelope(buf, sizeof(buf), "zz", B("\x81\x01\x91\x02"));
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_int_equal(env.unknown_keys, 1);
    codec_free(c);
}

/* MessagePack value -> exact JSON text. */
static const struct {
    const char *name;
    const uint8_t *mp;
    size_t len;
    const char *json;
} renders[] = {
    {"nested", B("\x82\xa1" "a\x93\x01\xff\x92\xc2\xc3\xa1" "b\x81\xa1" "c\xc0"),
     "{\"a\":[1,-1,[false,true]],\"b\":{\"c\":null}}"},
    {"empty containers", B("\x92\x90\x80"), "[[],{}]"},
    {"bin", B("\xc4\x03\x01\x02\x03"), "{\"$bin\":\"AQID\"}"},
    {"bin padding", B("\xc4\x04\x01\x02\x03\x04"), "{\"$bin\":\"AQIDBA==\"}"},
    {"empty bin", B("\xc4\x00"), "{\"$bin\":\"\"}"},
    {"ext", B("\xd4\x05\xff"), "{\"$ext\":5,\"data\":\"/w==\"}"},
    {"ext negative", B("\xc7\x02\x80\x41\x42"), "{\"$ext\":-128,\"data\":\"QUI=\"}"},
    {"timestamp 32", B("\xd6\xff\x00\x00\x00\x00"), "\"1970-01-01T00:00:00.000Z\""},
    {"timestamp 64", B("\xd7\xff\x01\x31\x2d\x00\x65\x53\xf1\x00"), "\"2023-11-14T22:13:20.005Z\""},
    {"bad timestamp", B("\xd5\xff\x00\x01"), "{\"$ext\":-1,\"data\":\"AAE=\"}"},
    {"invalid utf-8", B("\xa4" "a\xff\xc3" "b"), "\"a\xef\xbf\xbd\xef\xbf\xbd" "b\""},
    {"surrogate", B("\xa3\xed\xa0\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
    {"utf-8 kept", B("\xa6\xc3\xa9\xe2\x82\xac\x21"), "\"\xc3\xa9\xe2\x82\xac!\""},
    {"controls", B("\xa8\n\t\"\\\x01\x7f\xc2\x85"), "\"\\n\\t\\\"\\\\\\u0001\\u007f\\u0085\""},
    {"NaN", B("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), "null"},
    {"inf32", B("\xca\x7f\x80\x00\x00"), "null"},
    {"-inf", B("\xcb\xff\xf0\x00\x00\x00\x00\x00\x00"), "null"},
    {"float64", B("\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a"), "0.1"},
    {"float32", B("\xca\x3d\xcc\xcc\xcd"), "0.1"},
    {"float 2.5", B("\xcb\x40\x04\x00\x00\x00\x00\x00\x00"), "2.5"},
    {"int64 min", B("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"), "-9223372036854775808"},
    {"uint64 max", B("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), "18446744073709551615.0"},
    {"int key", B("\x81\x01\xa1x"), "{\"1\":\"x\"}"},
    {"nil key", B("\x81\xc0\x01"), "{\"null\":1}"},
    {"array key", B("\x81\x92\x01\xa1\x22\xc3"), "{\"$mp:kgGhIg==\":true}"},
    {"bin key", B("\x81\xc4\x01\x00\x02"), "{\"$mp:xAEA\":2}"},
    {"bool key", B("\x81\xc3\x02"), "{\"true\":2}"},
    {"str with NUL", B("\xa3" "a\x00" "b"), "\"a\\u0000b\""},
    {"key with NUL", B("\x81\xa3" "a\x00" "b\xa1\x00"), "{\"a\xef\xbf\xbd" "b\":\"\\u0000\"}"},
};

static void
test_render_json(void **state)
{
    struct sc_buf out;

    (void)state;
    sc_buf_init(&out, 1 << 20);
    for (size_t k = 0; k < SC_ARRAY_LEN(renders); k++) {
        json_error_t jerr;
        json_t *j;

        sc_buf_reset(&out);
        assert_int_equal(codec_render_json(renders[k].mp, renders[k].len, 32, &out), SC_OK);
        print_message("render %s: %s\n", renders[k].name, out.data);
        assert_string_equal(out.data, renders[k].json);
        j = json_loadb(out.data, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!j)
            print_message("jansson: %s\n", jerr.text);
        assert_non_null(j);
        json_decref(j);
    }
    sc_buf_destroy(&out);
}

/*
 * Keys nested inside keys: a container key is rendered as "$mp:<base64>" of
 * its bytes, so the text parses and stays linear in the input (escaping it
 * as JSON text would double at every level).
 */
static void
test_render_key_in_key(void **state)
{
    /* { { {"q\"": [1, "\\"]} : 3 } : 4 } */
    static const uint8_t mp[] = "\x81\x81\x81\xa2q\"\x92\x01\xa1\\\x03\x04";
    struct sc_buf out;
    json_t *j;

    (void)state;
    sc_buf_init(&out, 1 << 20);
    assert_int_equal(codec_render_json(mp, sizeof(mp) - 1, 32, &out), SC_OK);
    print_message("key in key: %s\n", out.data);
    assert_string_equal(out.data, "{\"$mp:gYGicSKSAaFcAw==\":4}");
    j = json_loads(out.data, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "$mp:gYGicSKSAaFcAw==")), 4);
    json_decref(j);
    sc_buf_destroy(&out);
}

/* Renders mp masked (codec_render_json_masked()) and checks the text and that it parses. */
static void
check_masked(const uint8_t *mp, size_t len, const char *want)
{
    struct sc_buf out;
    json_t *j;

    sc_buf_init(&out, 1 << 20);
    assert_int_equal(codec_render_json_masked(mp, len, 32, &out), SC_OK);
    print_message("masked: %s\n", out.data);
    assert_string_equal(out.data, want);
    j = json_loadb(out.data, out.len, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    json_decref(j);
    sc_buf_destroy(&out);
}

/*
 * secrets.mask_keys: substrings and globs, case-insensitive, at any depth
 * (maps in maps, maps in arrays), a masked container skipped whole, only
 * str keys matched, and codec_render_json() itself never masks.
 */
static void
test_render_masked(void **state)
{
    static const char *const pats[] = {"password", "TOKEN", "x-*-key", "pi?", NULL, ""};
    struct sc_buf out;

    (void)state;
    codec_mask_set(pats, SC_ARRAY_LEN(pats));
    assert_true(codec_mask_key("password", 8));
    assert_true(codec_mask_key("DB_Password_2", 13));
    assert_true(codec_mask_key("accessToken", 11));
    assert_true(codec_mask_key("X-Api-Key", 9));
    assert_false(codec_mask_key("x-api-key-2", 11)); /* a glob is the whole key */
    assert_true(codec_mask_key("PIN", 3));
    assert_false(codec_mask_key("pins", 4));
    assert_false(codec_mask_key("user", 4));
    assert_false(codec_mask_key("passw", 5));
    assert_false(codec_mask_key("", 0));
    /* {"password":"hunter2","user":"bob"} */
    check_masked(B("\x82\xa8password\xa7hunter2\xa4user\xa3" "bob"),
                 "{\"password\":\"***\",\"user\":\"bob\"}");
    /* {"a":{"Token":{"x":[1,2]},"n":1},"l":[{"pin":5},{"ok":"v"}],"z":2} */
    check_masked(B("\x83\xa1" "a\x82\xa5Token\x81\xa1x\x92\x01\x02\xa1n\x01"
                   "\xa1l\x92\x81\xa3pin\x05\x81\xa2ok\xa1v\xa1z\x02"),
                 "{\"a\":{\"Token\":\"***\",\"n\":1},\"l\":[{\"pin\":\"***\"},{\"ok\":\"v\"}],\"z\":2}");
    /* a masked value that is the last of its maps closes them all: {"a":{"token":[[1]]}} */
    check_masked(B("\x81\xa1" "a\x81\xa5token\x91\x91\x01"), "{\"a\":{\"token\":\"***\"}}");
    /* non-string keys are never matched: {1:"x", bin "token": "y", ["token"]: "z"} */
    check_masked(B("\x83\x01\xa1x\xc4\x05token\xa1y\x91\xa5token\xa1z"),
                 "{\"1\":\"x\",\"$mp:xAV0b2tlbg==\":\"y\",\"$mp:kaV0b2tlbg==\":\"z\"}");
    /* a scalar and an array of scalars have no keys */
    check_masked(B("\xa8password"), "\"password\"");
    /* codec_render_json() (the store's own records) never masks */
    sc_buf_init(&out, 1 << 20);
    assert_int_equal(codec_render_json(B("\x81\xa8password\xa1p"), 32, &out), SC_OK);
    assert_string_equal(out.data, "{\"password\":\"p\"}");
    /* a malformed value under a masked key is still refused (the walk checks it first) */
    sc_buf_reset(&out);
    assert_int_equal(codec_render_json_masked(B("\x81\xa5token\x92\x01"), 32, &out), SC_EPROTO);
    /* deep input stays bounded by max_depth: 40 nested {"token": ...} past 32 is refused */
    {
        uint8_t deep[40 * 7 + 1];
        size_t n = 0;
        static const uint8_t level[] = {0x81, 0xa5, 't', 'o', 'k', 'e', 'n'};
        for (int i = 0; i < 40; i++) {
            memcpy(deep + n, level, sizeof(level));
            n += sizeof(level);
        }
        deep[n++] = 0x01;
        sc_buf_reset(&out);
        assert_int_equal(codec_render_json_masked(deep, n, 32, &out), SC_EPROTO);
        sc_buf_reset(&out);
        assert_int_equal(codec_render_json_masked(deep, n, 1000, &out), SC_OK);
        assert_string_equal(out.data, "{\"token\":\"***\"}");
    }
    /* a huge map of secrets: linear, the output capped */
    {
        size_t pairs = 50000, n = 0; /* 700 kB rendered, under the 1 MiB cap */
        uint8_t *big = malloc(5 + pairs * 8);
        struct sc_buf small;
        assert_non_null(big);
        big[n++] = 0xdf;
        big[n++] = (uint8_t)(pairs >> 24);
        big[n++] = (uint8_t)(pairs >> 16);
        big[n++] = (uint8_t)(pairs >> 8);
        big[n++] = (uint8_t)pairs;
        static const uint8_t pair[] = {0xa5, 't', 'o', 'k', 'e', 'n', 0xa1, 'v'};
        for (size_t i = 0; i < pairs; i++) {
            memcpy(big + n, pair, sizeof(pair));
            n += sizeof(pair);
        }
        sc_buf_reset(&out);
        assert_int_equal(codec_render_json_masked(big, n, 32, &out), SC_OK);
        assert_int_equal(out.len, 2 + pairs * strlen("\"token\":\"***\"") + (pairs - 1));
        sc_buf_init(&small, 4096);
        assert_int_equal(codec_render_json_masked(big, n, 32, &small), SC_ETOOBIG);
        sc_buf_destroy(&small);
        free(big);
    }
    /* codec_jw_msgpack() masks: the rendered views (admin get, the store's document) */
    {
        struct sc_jw w;
        sc_buf_reset(&out);
        sc_jw_init(&w, &out);
        sc_jw_open(&w, NULL, '{');
        codec_jw_msgpack(&w, "metadata", "\x81\xa8password\xa1p", 12, 32);
        sc_jw_close(&w, '}');
        assert_int_equal(w.st, SC_OK);
        assert_string_equal(out.data, "{\"metadata\":{\"password\":\"***\"}}");
    }
    sc_buf_destroy(&out);
    codec_mask_set(NULL, 0);
    assert_false(codec_mask_key("password", 8));
}

static void
test_render_errors(void **state)
{
    struct sc_buf out;
    uint8_t deep[40];

    (void)state;
    sc_buf_init(&out, 8);
    assert_int_equal(codec_render_json(B("\xa9" "123456789"), 32, &out), SC_ETOOBIG);
    sc_buf_destroy(&out);
    sc_buf_init(&out, 1 << 20);
    assert_int_equal(codec_render_json(B("\x92\x01"), 32, &out), SC_EPROTO);
    assert_int_equal(codec_render_json(B("\x01\x02"), 32, &out), SC_EPROTO);
    assert_int_equal(codec_render_json(B("\xc1"), 32, &out), SC_EPROTO);
    assert_int_equal(codec_render_json(B(""), 32, &out), SC_EPROTO);
    memset(deep, 0x91, sizeof(deep));
    deep[9] = 0x90; /* 10 levels */
    sc_buf_reset(&out);
    assert_int_equal(codec_render_json(deep, 10, 10, &out), SC_OK);
    assert_string_equal(out.data, "[[[[[[[[[[]]]]]]]]]]");
    assert_int_equal(codec_render_json(deep, 10, 9, &out), SC_EPROTO);
    /* Malformed nesting of keys fails cleanly, not with a crash. */
    {
        uint8_t keys[300];
        memset(keys, 0x81, sizeof(keys));
        keys[sizeof(keys) - 1] = 0xa1;
        sc_buf_destroy(&out);
        sc_buf_init(&out, 1 << 16);
        /* 299 nested maps used as keys of each other, never closed: malformed */
        assert_int_equal(codec_render_json(keys, sizeof(keys), 1000, &out), SC_EPROTO);
    }
    {
        /*
         * 80 maps as keys of each other, closed properly: rendered in
         * output linear in the input (the old nested escaping needed 2^80
         * backslashes).
         */
        uint8_t keys[300];
        size_t n = 0;
        for (int k = 0; k < 80; k++)
            keys[n++] = 0x81;
        keys[n++] = 0xa1;
        keys[n++] = '"';
        for (int k = 0; k < 80; k++)
            keys[n++] = 0x01;
        sc_buf_reset(&out);
        assert_int_equal(codec_render_json(keys, n, 1000, &out), SC_OK);
        assert_true(out.len < 4 * n);
        json_t *j = json_loadb(out.data, out.len, 0, NULL);
        assert_non_null(j);
        json_decref(j);
    }
    sc_buf_destroy(&out);
}

static void
test_check(void **state)
{
    size_t used = 99;

    (void)state;
    assert_int_equal(codec_msgpack_check(B("\x92\x01\xa1x\xff"), 32, &used), SC_OK);
    assert_int_equal(used, 4);
    assert_int_equal(codec_msgpack_check(B("\xc0"), 0, &used), SC_OK);
    assert_int_equal(used, 1);
    assert_int_equal(codec_msgpack_check(B("\x90"), 0, &used), SC_EPROTO);
    assert_int_equal(used, 0);
    assert_int_equal(codec_msgpack_check(B("\x90"), 1, &used), SC_OK);
    assert_int_equal(codec_msgpack_check(NULL, 0, 32, &used), SC_EPROTO);
    assert_int_equal(codec_msgpack_check(B("\xd8\x01" "0123456789abcde"), 32, &used), SC_EPROTO);
    assert_int_equal(codec_msgpack_check(B("\xcf\x00\x00\x00\x00\x00\x00\x00"), 32, &used), SC_EPROTO);
}

static const struct {
    const char *s;
    bool valid;         /* publishing */
    bool valid_pattern; /* allow_wildcards */
} subjects[] = {
    {"dlq.retry.orders", true, true},
    {"a", true, true},
    {"orders-v2_x.\xc3\xa9t\xc3\xa9", true, true},
    {"svc 6\r\nHi\r\nPUB x 0\r\n", false, false},
    {"a.*", false, true},
    {">", false, true},
    {"a.>", false, true},
    {"a.>.b", false, false},
    {"a.b*", false, false},
    {"a.*b", false, false},
    {"a.>b", false, false},
    {"a b", false, false},
    {"", false, false},
    {"a..b", false, false},
    {".a", false, false},
    {"a.", false, false},
    {".", false, false},
    {"a\tb", false, false},
    {"a\x7f", false, false},
    {"a\x01", false, false},
};

static void
test_subject_valid(void **state)
{
    char big[5000];

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(subjects); k++) {
        const char *s = subjects[k].s;
        print_message("subject %zu\n", k);
        assert_int_equal(codec_subject_valid(s, strlen(s), false), subjects[k].valid);
        assert_int_equal(codec_subject_valid(s, strlen(s), true), subjects[k].valid_pattern);
    }
    assert_false(codec_subject_valid("a\0b", 3, false));
    assert_false(codec_subject_valid(NULL, 0, false));
    /* 4096 bytes is the cap */
    memset(big, 'a', sizeof(big));
    assert_true(codec_subject_valid(big, 4096, false));
    assert_false(codec_subject_valid(big, 4097, false));
    /* 256 tokens is the cap */
    for (size_t k = 0; k < 256; k++) {
        big[2 * k] = 'a';
        big[2 * k + 1] = '.';
    }
    assert_true(codec_subject_valid(big, 511, false));
    big[511] = '.';
    big[512] = 'a';
    assert_false(codec_subject_valid(big, 513, false));
    /* a length shorter than the text */
    assert_true(codec_subject_valid("ab.c d", 4, false));
}

static const struct {
    const char *pattern;
    const char *subject;
    bool match;
} matches[] = {
    {"dlq.retry.>", "dlq.retry.orders", true},
    {"dlq.retry.>", "dlq.retry.orders.eu", true},
    {"dlq.retry.>", "dlq.retry", false},
    {"dlq.retry.>", "dlq.retryx.orders", false},
    {"dlq.*.orders", "dlq.retry.orders", true},
    {"dlq.*.orders", "dlq.retry.x.orders", false},
    {"dlq.*", "dlq", false},
    {"dlq.*", "dlq.a.b", false},
    {"*", "a", true},
    {">", "a.b.c", true},
    {"a.b", "a.b", true},
    {"a.b", "a.bc", false},
    {"a.b", "a", false},
    {"a", "a.b", false},
    {"a.*", "a.", false},
    {"a.>", "a.", false},
    {"a.b*", "a.b*", true},
    {"x", "", false},
};

static void
test_subject_match(void **state)
{
    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(matches); k++) {
        print_message("match %s ~ %s\n", matches[k].pattern, matches[k].subject);
        assert_int_equal(codec_subject_match(matches[k].pattern, matches[k].subject,
                                             strlen(matches[k].subject)),
                         matches[k].match);
    }
    assert_true(codec_subject_match("dlq.retry.>", "dlq.retry.a.zzz", 11));
    assert_false(codec_subject_match(NULL, "a", 1));
}

static const struct {
    const char *name;
    const uint8_t *buf;
    size_t len;
    bool ok;
    const char *error;
    const char *error_type; /* NULL: absent */
} outcomes[] = {
    {"empty", B(""), true, "", NULL},
    {"blank", B(" \r\n"), true, "", NULL},
    {"json ok", B("{\"ok\":true}"), true, "", NULL},
    {"json ok with error", B("{\"ok\":true,\"error\":\"x\"}"), true, "", NULL},
    {"json failure", B("{\"ok\":false,\"error\":\"boom\",\"error_type\":\"TimeoutError\"}"), false,
     "boom", "TimeoutError"},
    {"json bare failure", B(" {\"ok\":false}"), false, "", NULL},
    {"json error null", B("{\"ok\":false,\"error\":null}"), false, "", NULL},
    {"json error object", B("{\"ok\":false,\"error\":{\"code\":500,\"message\":\"db down\"}}"), false,
     "db down", NULL},
    {"json error object no message", B("{\"ok\":false,\"error\":{\"code\":500}}"), false,
     "{\"code\":500}", NULL},
    {"json error number", B("{\"ok\":false,\"error\":503}"), false, "503", NULL},
    {"msgpack ok", B("\x81\xa2ok\xc3"), true, "", NULL},
    {"msgpack failure", B("\x83\xa2ok\xc2\xa5" "error\xa3" "bad\xaa" "error_type\xa4" "HTTP"), false,
     "bad", "HTTP"},
    {"msgpack bin error", B("\x82\xa2ok\xc2\xa5" "error\xc4\x02hi"), false, "hi", NULL},
    {"ok as string", B("{\"ok\":\"yes\"}"), false, "unrecognised reply", NULL},
    {"ok as int", B("\x81\xa2ok\x01"), false, "unrecognised reply", NULL},
    {"no ok", B("{\"status\":\"done\"}"), false, "unrecognised reply", NULL},
    {"json error only", B("{\"error\":\"boom\"}"), false, "unrecognised reply", NULL},
    {"msgpack array", B("\x93\x01\x02\x03"), false, "unrecognised reply", NULL},
    {"msgpack int", B("\x05"), false, "unrecognised reply", NULL},
    {"bad json", B("{\"ok\":tru"), false, "malformed reply", NULL},
    /* the same 11 and 5 bytes as the parser-free {"ok":true} path, one byte off */
    {"near ok json", B("{\"ok\":trux}"), false, "malformed reply", NULL},
    {"near ok key", B("{\"oK\":true}"), false, "unrecognised reply", NULL},
    {"near ok msgpack", B("\x81\xa2ok\xc2"), false, "", NULL},
    {"ok json spaced", B("{\"ok\": true}"), true, "", NULL},
    {"hostile msgpack", B("\xdd\xff\x00\x00\x00"), false, "malformed reply", NULL},
    {"text", B("hello"), false, "malformed reply", NULL},
    {"trailing", B("\x81\xa2ok\xc3\x00"), false, "malformed reply", NULL},
    {"reserved", B("\xc1"), false, "malformed reply", NULL},
};

static void
test_outcome(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_outcome o;

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(outcomes); k++) {
        void *copy = malloc(outcomes[k].len ? outcomes[k].len : 1);
        memcpy(copy, outcomes[k].buf, outcomes[k].len);
        assert_int_equal(codec_decode_outcome(c, copy, outcomes[k].len, &o), SC_OK);
        print_message("outcome %s: ok=%d error=%.*s\n", outcomes[k].name, o.ok, (int)o.error.len,
                      o.error.ptr);
        assert_int_equal(o.ok, outcomes[k].ok);
        assert_true(str_eq(o.error, outcomes[k].error));
        if (outcomes[k].error_type)
            assert_true(str_eq(o.error_type, outcomes[k].error_type));
        else
            assert_null(o.error_type.ptr);
        free(copy);
    }
    assert_int_equal(codec_decode_outcome(c, NULL, 0, &o), SC_OK);
    assert_true(o.ok);
    codec_free(c);
}

static void
test_outcome_truncation(void **state)
{
    struct codec_limits l;
    struct codec *c;
    struct codec_outcome o;
    char body[600];
    int n;

    (void)state;
    codec_limits_default(&l);
    l.max_error_len = 50;
    l.max_string_len = 5;
    c = codec_new(&l);
    n = snprintf(body, sizeof(body), "{\"ok\":false,\"error\":\"%0300d\",\"error_type\":\"ABCDEFGH\"}", 7);
    assert_int_equal(codec_decode_outcome(c, body, (size_t)n, &o), SC_OK);
    assert_false(o.ok);
    assert_int_equal(o.error.len, 50);
    assert_memory_equal(o.error.ptr + 50 - strlen(CODEC_TRUNC_MARKER), CODEC_TRUNC_MARKER,
                        strlen(CODEC_TRUNC_MARKER));
    assert_true(str_eq(o.error_type, "ABCDE"));
    n = snprintf(body, sizeof(body), "{\"ok\":false,\"error\":[\"%0300d\"]}", 7);
    assert_int_equal(codec_decode_outcome(c, body, (size_t)n, &o), SC_OK);
    assert_int_equal(o.error.len, 50);
    assert_memory_equal(o.error.ptr, "[\"00", 4);
    codec_free(c);
}

static void
test_memory_flat(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    msgpack_sbuffer sb;
    uint8_t *longerr = malloc(6000);
    size_t cap, n;

    (void)state;
    assert_non_null(longerr);
    pack_full(&sb);
    n = envelope(longerr, 6000, "error", B("\xda\x13\x88"));
    memset(longerr + n, 'e', 5000);
    n += 5000;
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < (round ? 100000 : 1000); k++) {
            switch (k % 5) {
            case 0:
                assert_int_equal(codec_decode(c, sb.data, sb.size, false, &env), SC_OK);
                break;
            case 1:
                assert_int_equal(codec_decode(c, longerr, n, false, &env), SC_OK);
                assert_true(env.error_truncated);
                break;
            case 2:
                assert_int_equal(codec_decode(c, sb.data, sb.size - 1 - (size_t)(k % 7), false, &env),
                                 SC_EPROTO);
                break;
            case 3:
                assert_int_equal(codec_decode(c, "\xdf\xff\xff\xff\xff", 5, false, &env), SC_EPROTO);
                break;
            default:
                assert_int_equal(codec_decode(c, full_json, strlen(full_json), false, &env), SC_OK);
                break;
            }
        }
        if (round == 0)
            cap = codec_arena_capacity(c);
    }
    assert_true(cap > 0);
    assert_int_equal(codec_arena_capacity(c), cap);
    msgpack_sbuffer_destroy(&sb);
    free(longerr);
    codec_free(c);
}

/* Issue 10: an integer past INT64_MAX (up to UINT64_MAX) in a JSON envelope is a uint64, kept exactly. */
static void
test_json_big_uint(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    struct codec_mp_item it;

    (void)state;
    {
        const char *j = "{\"task_id\":\"u\",\"task\":12345678901234567890,\"error\":\"x\"}";
        assert_int_equal(codec_decode(c, j, strlen(j), false, &env), SC_OK);
        assert_null(codec_msgpack_head((const uint8_t *)env.task.ptr, env.task.len, &it));
        assert_int_equal(it.kind, CODEC_MP_UINT);
        assert_true(it.u == 12345678901234567890ULL);
        assert_int_equal(env.task.len, 9); /* 0xcf and 8 bytes: a MessagePack uint64 */
        assert_int_equal((uint8_t)env.task.ptr[0], 0xcf);
    }
    /* Inside containers, beside ordinary numbers, in keys' company, and at the very limit. */
    {
        const char *j = "{\"task\":{\"a\":[1,18446744073709551615,-3,9223372036854775808,"
                        "\"12345678901234567890\",2.5e0],\"b\":9223372036854775807},"
                        "\"task_id\":\"u2\",\"max_retries\":3}";
        static const uint8_t want[] =
            "\x82\xa1" "a\x96\x01\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xfd"
            "\xcf\x80\x00\x00\x00\x00\x00\x00\x00"
            "\xb4" "12345678901234567890"
            "\xcb\x40\x04\x00\x00\x00\x00\x00\x00"
            "\xa1" "b\xcf\x7f\xff\xff\xff\xff\xff\xff\xff";
        assert_int_equal(codec_decode(c, j, strlen(j), false, &env), SC_OK);
        assert_int_equal(env.task.len, sizeof(want) - 1);
        assert_memory_equal(env.task.ptr, want, sizeof(want) - 1);
        assert_true(env.has_max_retries && env.max_retries == 3);
    }
    /* Digits inside strings (escaped quotes and backslashes included) are not numbers. */
    {
        const char *j = "{\"task_id\":\"a\\\"18446744073709551615\\\\\",\"task\":[\"9223372036854775808\","
                        "{\"12345678901234567890\":12345678901234567890}]}";
        static const uint8_t want[] = "\x92\xb3" "9223372036854775808"
                                      "\x81\xb4" "12345678901234567890"
                                      "\xcf\xab\x54\xa9\x8c\xeb\x1f\x0a\xd2";
        assert_int_equal(codec_decode(c, j, strlen(j), false, &env), SC_OK);
        assert_true(str_eq(env.task_id, "a\"18446744073709551615\\"));
        assert_int_equal(env.task.len, sizeof(want) - 1);
        assert_memory_equal(env.task.ptr, want, sizeof(want) - 1);
    }
    /* Still refused: past UINT64_MAX, and the same digits as a negative number. */
    {
        const char *j = "{\"task_id\":\"u\",\"task\":18446744073709551616}";
        assert_int_equal(codec_decode(c, j, strlen(j), false, &env), SC_EPROTO);
        j = "{\"task_id\":\"u\",\"task\":-12345678901234567890}";
        assert_int_equal(codec_decode(c, j, strlen(j), false, &env), SC_EPROTO);
    }
    /* A big number as max_retries is a number out of range, not a JSON error. */
    {
        const char *j = "{\"task_id\":\"u\",\"task\":1,\"max_retries\":12345678901234567890}";
        assert_int_equal(codec_decode(c, j, strlen(j), false, &env), SC_EPROTO);
        assert_string_equal(env.reason, "out_of_range");
    }
    codec_free(c);
}

/* Issue 10: unknown envelope keys are named (the first CODEC_UNKNOWN_NAMES), in MessagePack and JSON. */
static void
test_unknown_key_names(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    uint8_t buf[128];
    size_t n = envelope(buf, sizeof buf, "eror", B("\xa4" "boom"));

    (void)state;
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_int_equal(env.unknown_keys, 1);
    assert_true(str_eq(env.unknown[0], "eror"));
    {
        const char *j = "{\"task_id\":\"j\",\"task\":{},\"eror\":\"boom\",\"retry_polcy\":\"never\"}";
        assert_int_equal(codec_decode(c, j, strlen(j), false, &env), SC_OK);
        assert_int_equal(env.unknown_keys, 2);
        assert_true(str_eq(env.unknown[0], "eror"));
        assert_true(str_eq(env.unknown[1], "retry_polcy"));
    }
    {
        char j[1024];
        size_t o = (size_t)snprintf(j, sizeof j, "{\"task_id\":\"j\",\"task\":1");
        for (int k = 0; k < CODEC_UNKNOWN_NAMES + 3; k++)
            o += (size_t)snprintf(j + o, sizeof j - o, ",\"x%d\":%d", k, k);
        snprintf(j + o, sizeof j - o, "}");
        assert_int_equal(codec_decode(c, j, strlen(j), false, &env), SC_OK);
        assert_int_equal(env.unknown_keys, CODEC_UNKNOWN_NAMES + 3);
        assert_true(str_eq(env.unknown[CODEC_UNKNOWN_NAMES - 1], "x7"));
    }
    /* Known keys only: nothing named. */
    n = envelope(buf, sizeof buf, NULL, NULL, 0);
    assert_int_equal(codec_decode(c, buf, n, false, &env), SC_OK);
    assert_int_equal(env.unknown_keys, 0);
    assert_null(env.unknown[0].ptr);
    codec_free(c);
}

/* Issue 10: text that is neither MessagePack nor JSON says so, instead of "not an integer". */
static void
test_neither_msgpack_nor_json(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    static const char *const texts[] = {"not json at all", "[1,2]", "42", "hello\nworld", "\"str\""};

    (void)state;
    for (size_t k = 0; k < SC_ARRAY_LEN(texts); k++) {
        assert_int_equal(decode_exact(c, texts[k], strlen(texts[k]), false, &env), SC_EPROTO);
        print_message("%s -> %s: %s\n", texts[k], env.reason, env.why);
        assert_string_equal(env.reason, "not_a_map");
        assert_non_null(strstr(env.why, "neither MessagePack nor JSON"));
        assert_null(strstr(env.why, "integer"));
    }
    /* The start of the body is quoted, control characters escaped. */
    assert_int_equal(codec_decode(c, "hello\nworld", 11, false, &env), SC_EPROTO);
    assert_non_null(strstr(env.why, "hello\\nworld"));
    /* One whole MessagePack value that is not a map keeps the precise message. */
    assert_int_equal(codec_decode(c, "\x05", 1, false, &env), SC_EPROTO);
    assert_string_equal(env.why, "envelope: expected a map, not an integer");
    codec_free(c);
}

/* JSON text -> MessagePack (the KV store's records) -> JSON again: the same value as jansson reads it. */
static void
test_json_msgpack_round_trip(void **state)
{
    static const char *const good[] = {
        "{}", "[]", "0", "-1", "\"x\"", "true", "null",
        "{\"a\":1,\"b\":[1,2,{\"c\":null}],\"d\":{},\"e\":[],\"f\":false,\"g\":true}",
        "{\"s\":\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\u20ac \\ud83d\\ude00\"}",
        "{\"n\":[0,-0,1.5,-2.5e-3,1e-7,9223372036854775807,-9223372036854775808]}",
        "{\"utf8\":\"h\xc3\xa9llo \xe2\x82\xac\",\"nested\":[[[[[\"deep\"]]]]]}",
        "  {\"ws\" : [ 1 , 2 ] }  ",
    };
    static const char *const bad[] = {
        "", "{", "}", "[1,]", "{\"a\"}", "{\"a\":}", "{\"a\" 1}", "[1 2]", "\"open",
        "\"bad \\x escape\"", "tru", "{} {}", "{\"a\":1,}", "[\"\\u12g4\"]", "nul", "{1:2}",
    };
    struct codec_limits lim;
    struct codec *c;
    struct sc_buf out;

    (void)state;
    codec_limits_default(&lim);
    c = codec_new(&lim);
    sc_buf_init(&out, 1 << 20);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *mp;
        size_t len, used;
        json_t *want = json_loads(good[i], JSON_DECODE_ANY, NULL), *got;
        assert_non_null(want);
        if (codec_json_msgpack(c, good[i], strlen(good[i]), &mp, &len) != SC_OK)
            fail_msg("refused: %s", good[i]);
        assert_int_equal(codec_msgpack_check(mp, len, 64, &used), SC_OK);
        assert_int_equal(used, len); /* exactly one value */
        sc_buf_reset(&out);
        assert_int_equal(codec_render_json(mp, len, 64, &out), SC_OK);
        got = json_loadb(out.data, out.len, JSON_DECODE_ANY, NULL);
        if (!json_equal(want, got)) {
            char *a = json_dumps(want, JSON_ENCODE_ANY), *b = json_dumps(got, JSON_ENCODE_ANY);
            fail_msg("%s: %s != %s", good[i], a, b ? b : "(null)");
        }
        json_decref(want);
        json_decref(got);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *mp;
        size_t len;
        if (codec_json_msgpack(c, bad[i], strlen(bad[i]), &mp, &len) == SC_OK)
            fail_msg("accepted: '%s'", bad[i]);
        assert_null(mp);
    }
    /* An unsigned integer past INT64_MAX stays an exact uint64 (jansson cannot read it back). */
    {
        const char *mp;
        size_t len;
        static const unsigned char want[] = {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        assert_int_equal(codec_json_msgpack(c, "18446744073709551615", 20, &mp, &len), SC_OK);
        assert_int_equal(len, sizeof(want));
        assert_memory_equal(mp, want, sizeof(want));
    }
    /* Deeper than the codec's depth: refused, not a crash. */
    {
        char deep[4000];
        size_t n = 0;
        const char *mp;
        size_t len;
        for (int i = 0; i < 1500; i++)
            deep[n++] = '[';
        for (int i = 0; i < 1500; i++)
            deep[n++] = ']';
        assert_int_not_equal(codec_json_msgpack(c, deep, n, &mp, &len), SC_OK);
    }
    sc_buf_destroy(&out);
    codec_free(c);
}


/* depends_on (issue 17): 1-32 distinct task ids, none the task's own; anything else names depends_on. */
static void
test_depends_on(void **state)
{
    struct codec *c = codec_new(NULL);
    struct codec_envelope env;
    static const char ok[] = "{\"task_id\":\"b\",\"task\":1,\"depends_on\":[\"a\",\"c\"]}";
    static const char *const bad[] = {
        "{\"task_id\":\"b\",\"task\":1,\"depends_on\":\"a\"}",
        "{\"task_id\":\"b\",\"task\":1,\"depends_on\":[]}",
        "{\"task_id\":\"b\",\"task\":1,\"depends_on\":[7]}",
        "{\"task_id\":\"b\",\"task\":1,\"depends_on\":[\"\"]}",
        "{\"task_id\":\"b\",\"task\":1,\"depends_on\":[\"a\",\"a\"]}",
        "{\"task_id\":\"b\",\"task\":1,\"depends_on\":[\"x\\u0007\"]}",
        "{\"depends_on\":[\"b\"],\"task_id\":\"b\",\"task\":1}",
    };
    char many[512];
    size_t n;

    (void)state;
    assert_int_equal(decode_exact(c, ok, strlen(ok), false, &env), SC_OK);
    assert_int_equal(codec_decode(c, ok, strlen(ok), false, &env), SC_OK);
    assert_int_equal(env.depends_n, 2);
    assert_int_equal(env.depends_on[1].len, 1);
    assert_memory_equal(env.depends_on[1].ptr, "c", 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_not_equal(decode_exact(c, bad[i], strlen(bad[i]), false, &env), SC_OK);
        assert_string_equal(env.reason, "bad_depends_on");
        assert_non_null(strstr(env.why, "depends_on"));
    }
    n = (size_t)snprintf(many, sizeof(many), "{\"task_id\":\"b\",\"task\":1,\"depends_on\":[");
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%s\"t%d\"", i ? "," : "", i);
    snprintf(many + n, sizeof(many) - n, "]}");
    assert_int_not_equal(decode_exact(c, many, strlen(many), false, &env), SC_OK);
    assert_string_equal(env.why, "depends_on: 33 task ids, at most 32");
    codec_free(c);
}

#define ZEROS16 "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
#define ZEROS256 ZEROS16 ZEROS16 ZEROS16 ZEROS16 ZEROS16 ZEROS16 ZEROS16 ZEROS16 \
    ZEROS16 ZEROS16 ZEROS16 ZEROS16 ZEROS16 ZEROS16 ZEROS16 ZEROS16

/* The JSON path of a rendered view (persist_dw_msgpack() before codec_msgpack_view()): its length. */
static size_t
view_by_json(struct codec *c, const void *p, size_t len, unsigned depth, struct sc_buf *text,
             uint8_t *out, size_t cap)
{
    struct sc_jw jw;
    const char *mp;
    size_t n;

    sc_buf_reset(text);
    sc_jw_init(&jw, text); /* as persist_dw_msgpack() does */
    codec_jw_msgpack(&jw, NULL, p, len, depth);
    assert_int_equal(jw.st, SC_OK);
    if (codec_json_msgpack(c, text->data, text->len, &mp, &n) != SC_OK)
        return SIZE_MAX;
    assert_true(n <= cap);
    memcpy(out, mp, n);
    return n;
}

/* One random MessagePack value (the kinds a task's fields hold, and some the direct path leaves). */
static void
random_value(msgpack_packer *pk, unsigned *seed, unsigned depth)
{
    static const char *const texts[] = {"", "id", "password", "api_key", "Token", "ünï", "a\"b\\c\nd",
                                        "\x01\x7f\xc2\x80", "bad\xff", "nul\0x", "x_secret_y",
                                        "a-long-enough-string-to-take-a-str8-header-0123456789"};
    unsigned r = (unsigned)rand_r(seed) % (depth > 4 ? 9 : 12);
    const char *t = texts[(unsigned)rand_r(seed) % SC_ARRAY_LEN(texts)];
    size_t tl = strcmp(t, "nul") == 0 ? 5 : strlen(t);

    switch (r) {
    case 0: msgpack_pack_nil(pk); break;
    case 1: msgpack_pack_true(pk); break;
    case 2: msgpack_pack_uint64(pk, (uint64_t)rand_r(seed) << (rand_r(seed) % 40)); break;
    case 3: msgpack_pack_int64(pk, -(int64_t)rand_r(seed) * (1 + rand_r(seed) % 1000)); break;
    case 4: msgpack_pack_str_with_body(pk, t, tl); break;
    case 5: msgpack_pack_str_with_body(pk, t, tl); break;
    case 6: msgpack_pack_uint64(pk, UINT64_MAX - (uint64_t)(rand_r(seed) % 3)); break;
    case 7: msgpack_pack_double(pk, rand_r(seed) % 2 ? 1.0 : 0.1); break;
    case 8: msgpack_pack_bin_with_body(pk, "\x00\x01\xff", (size_t)rand_r(seed) % 4); break;
    case 9:
    case 10: {
        unsigned n = (unsigned)rand_r(seed) % 5;
        msgpack_pack_map(pk, n);
        for (unsigned i = 0; i < n; i++) {
            const char *k = texts[(unsigned)rand_r(seed) % SC_ARRAY_LEN(texts)];
            if (rand_r(seed) % 16 == 0)
                msgpack_pack_int64(pk, 7); /* a key that is not text */
            else
                msgpack_pack_str_with_body(pk, k, strcmp(k, "nul") == 0 ? 5 : strlen(k));
            random_value(pk, seed, depth + 1);
        }
        break;
    }
    default: {
        unsigned n = (unsigned)rand_r(seed) % 5;
        msgpack_pack_array(pk, n);
        for (unsigned i = 0; i < n; i++)
            random_value(pk, seed, depth + 1);
        break;
    }
    }
}

/*
 * codec_msgpack_view() writes the same bytes as rendering the masked JSON
 * view and converting it (the KV store's records depend on it), and leaves
 * to that path what it does not do.
 */
static void
test_msgpack_view_same_bytes(void **state)
{
    static const char *const pats[] = {"password", "*key", "tok?n", "secret"};
    static const struct {
        const uint8_t *mp;
        size_t len;
        bool direct;
    } cases[] = {
        {B("\xc0"), true},
        {B("\x83\xa2id\x2a\xa8password\x92\x01\x02\xa1s\xd9\x03""abc"), true},
        {B("\x81\xa7""api_key\x81\xa1x\xcb\x3f\xf0\0\0\0\0\0\0"), true}, /* masked: what it holds is not looked at */
        {B("\x82\xa1n\xd0\xff\xa1u\xcd\x01\x00"), true},                 /* int8 -1, uint16 256: smallest forms */
        {B("\x81\xa1""f\xca\x3f\x80\0\0"), false},                          /* float32 1.0 reads back as 1 */
        {B("\x81\xa1u\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), false},      /* past INT64_MAX: a float64 */
        {B("\x81\x01\xa1x"), false},                                      /* an integer key */
        {B("\x81\xa3\xff\xfe\x00\xa1x"), false},                          /* a key that is not text */
        {B("\x92\xc4\x01\x00\xc4\x00"), true},                          /* bin: {"$bin":"AA=="} */
        {B("\x81\xa4""blob\xc5\x01\x00" ZEROS256), true},               /* bin, a str8 of base64 */
        {B("\x81\xc4\x01\x00\xa1x"), false},                             /* a bin key */
        {B("\x91\xc7\x01\x05\x00"), false},                              /* ext */
        {B("\x92\x01"), false},                                           /* truncated: null */
        {B("\x81\xa1x\xa3n\x00l"), false},                                /* NUL in text */
    };
    struct codec *c = codec_new(NULL);
    struct sc_buf text;
    static uint8_t want[1 << 16];
    unsigned seed = 13, direct = 0;
    const char *got;
    size_t n, glen;

    (void)state;
    sc_buf_init(&text, 1 << 20);
    codec_mask_set(pats, SC_ARRAY_LEN(pats));
    for (size_t k = 0; k < SC_ARRAY_LEN(cases); k++) {
        n = view_by_json(c, cases[k].mp, cases[k].len, 32, &text, want, sizeof(want));
        assert_int_equal(codec_msgpack_view(c, cases[k].mp, cases[k].len, 32, &got, &glen),
                         cases[k].direct ? SC_OK : SC_EINVAL);
        if (cases[k].direct) {
            assert_int_equal(glen, n);
            assert_memory_equal(got, want, n);
        }
    }
    /* NULL: nil, as the JSON path's "null" */
    n = view_by_json(c, NULL, 0, 32, &text, want, sizeof(want));
    assert_int_equal(codec_msgpack_view(c, NULL, 0, 32, &got, &glen), SC_OK);
    assert_int_equal(glen, n);
    assert_memory_equal(got, want, n);
    /* deeper than max_depth: the JSON path renders null */
    assert_int_equal(codec_msgpack_view(c, "\x91\x91\x90", 3, 2, &got, &glen), SC_EINVAL);
    for (int round = 0; round < 20000; round++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        random_value(&pk, &seed, 0);
        n = view_by_json(c, sb.data, sb.size, 32, &text, want, sizeof(want));
        if (codec_msgpack_view(c, sb.data, sb.size, 32, &got, &glen) == SC_OK) {
            direct++;
            assert_int_equal(glen, n);
            assert_memory_equal(got, want, n);
        }
        msgpack_sbuffer_destroy(&sb);
    }
    print_message("msgpack view: %u of 20000 random values written directly, all equal\n", direct);
    assert_true(direct > 5000);
    codec_mask_set(NULL, 0);
    sc_buf_destroy(&text);
    codec_free(c);
}

/* Strings at every header size and integers on the fast and slow paths: the bytes msgpack-c's packer writes. */
static void
test_json_msgpack_bytes(void **state)
{
    static const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536};
    static const char *const ints[] = {"0", "7", "-1", "-0", "127", "128", "-33", "65536", "-05",
                                       "999999999999999999", "-999999999999999999",
                                       "1000000000000000000", "-9223372036854775808",
                                       "18446744073709551615"};
    struct codec_limits lim;
    struct codec *c;
    msgpack_sbuffer want;
    msgpack_packer pk;
    char *json = malloc(2 * 65536 + 8), *text = malloc(65536 + 1);

    (void)state;
    assert_non_null(json);
    assert_non_null(text);
    codec_limits_default(&lim);
    lim.max_envelope_bytes = 1 << 20;
    c = codec_new(&lim);
    msgpack_sbuffer_init(&want);
    msgpack_packer_init(&pk, &want, msgpack_sbuffer_write);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int escaped = 0; escaped < 2; escaped++) {
            const char *mp;
            size_t len, n = 0;
            json[n++] = '"';
            for (size_t j = 0; j < lens[i]; j++) {
                text[j] = (char)('a' + j % 26);
                if (escaped && j % 100 == 50) { /* "\n" in the text, a newline in the value */
                    text[j] = '\n';
                    json[n++] = '\\';
                    json[n++] = 'n';
                } else {
                    json[n++] = text[j];
                }
            }
            json[n++] = '"';
            msgpack_sbuffer_clear(&want);
            msgpack_pack_str(&pk, lens[i]);
            msgpack_pack_str_body(&pk, text, lens[i]);
            assert_int_equal(codec_json_msgpack(c, json, n, &mp, &len), SC_OK);
            assert_int_equal(len, want.size);
            assert_memory_equal(mp, want.data, len);
            assert_int_equal(mp[len], '\0');
        }
    }
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        const char *mp;
        size_t len;
        msgpack_sbuffer_clear(&want);
        if (ints[i][0] == '-')
            msgpack_pack_int64(&pk, strtoll(ints[i], NULL, 10));
        else
            msgpack_pack_uint64(&pk, strtoull(ints[i], NULL, 10));
        assert_int_equal(codec_json_msgpack(c, ints[i], strlen(ints[i]), &mp, &len), SC_OK);
        assert_int_equal(len, want.size);
        assert_memory_equal(mp, want.data, len);
    }
    msgpack_sbuffer_destroy(&want);
    codec_free(c);
    free(json);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_default),
        cmocka_unit_test(test_full_envelope),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_metadata_hostile),
        cmocka_unit_test(test_too_deep),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_max_retries),
        cmocka_unit_test(test_json_envelopes),
        cmocka_unit_test(test_task_bytes_exact),
        cmocka_unit_test(test_failed_at),
        cmocka_unit_test(test_error_field),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits_enforced),
        cmocka_unit_test(test_render_json),
        cmocka_unit_test(test_render_key_in_key),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_subject_valid),
        cmocka_unit_test(test_subject_match),
        cmocka_unit_test(test_outcome),
        cmocka_unit_test(test_outcome_truncation),
        cmocka_unit_test(test_memory_flat),
        cmocka_unit_test(test_json_big_uint),
        cmocka_unit_test(test_unknown_key_names),
        cmocka_unit_test(test_neither_msgpack_nor_json),
        cmocka_unit_test(test_json_msgpack_round_trip),
        cmocka_unit_test(test_json_msgpack_bytes),
        cmocka_unit_test(test_msgpack_view_same_bytes),
        cmocka_unit_test(test_render_masked),
        cmocka_unit_test(test_depends_on),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
