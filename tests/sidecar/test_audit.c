/* test_audit.c - unit tests of the audit's pure parts: the NATS principal from a reply subject, the empty ring's answer, and basic-auth credentials checked against crypt(3) hashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit.h"
#include "common.h"
#include "config.h"
#include "httpauth.h"

/* sha512-crypt of "hunter2" (openssl passwd -6 -salt Kx9sQ2 hunter2). */
#define HASH "$6$Kx9sQ2$YkgOJA1zjgBhry8o3iUwaufpVW0b8bwKm1W6Tfz9w857iekMU1xFpfP6MN.ZBWoFaF0sOLeF6TXw.8ME.xchu/"

/* A per-user inbox prefix names the user; anything else is plain "nats". */
static void
test_nats_principal(void **state)
{
    static const char *const cases[][2] = {
        {"_INBOX_alice.abc123.7", "nats:alice"},
        {"_INBOX_dlq-operator.x", "nats:dlq-operator"},
        {"_INBOX.abc.1", "nats"},
        {"_INBOX_.abc", "nats"},
        {"_INBOX_alice", "nats"},            /* no token after the prefix */
        {"_INBOX_al ice.x", "nats"},         /* white space: not a subject token */
        {"_INBOX_a\"b.x", "nats"},           /* a quote would spoil the log line */
        {"reply.somewhere", "nats"},
        {"", "nats"},
        {"_INBOX_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x", "nats"}, /* 68 bytes */
    };
    char buf[SC_AUDIT_PRINCIPAL_LEN];

    (void)state;
    for (size_t i = 0; i < SC_ARRAY_LEN(cases); i++)
        assert_string_equal(sc_audit_nats_principal(cases[i][0], buf, sizeof(buf)), cases[i][1]);
    assert_string_equal(sc_audit_nats_principal(NULL, buf, sizeof(buf)), "nats");
}

/* A ring that keeps nothing, or has nothing yet, answers an empty list. */
static void
test_empty_ring(void **state)
{
    struct sc_buf b;
    struct sc_audit *a = sc_audit_new(0), *b2 = sc_audit_new(3);

    (void)state;
    sc_buf_init(&b, 1024);
    sc_audit_list(a, 10, &b);
    assert_int_equal(b.len, strlen("{\"records\":[]}"));
    assert_memory_equal(b.data, "{\"records\":[]}", b.len);
    sc_buf_reset(&b);
    sc_audit_list(b2, 10, &b);
    assert_memory_equal(b.data, "{\"records\":[]}", b.len);
    sc_buf_reset(&b);
    sc_audit_list(NULL, 10, &b);
    assert_memory_equal(b.data, "{\"records\":[]}", b.len);
    sc_buf_destroy(&b);
    sc_audit_free(a);
    sc_audit_free(b2);
    sc_audit_free(NULL);
}

/* base64 of s into out (a test helper). */
static const char *
b64(const char *s, char *out, size_t len)
{
    struct sc_buf b;

    sc_buf_init(&b, 1024);
    assert_int_equal(sc_base64_encode(&b, s, strlen(s)), SC_OK);
    snprintf(out, len, "%.*s", (int)b.len, b.data);
    sc_buf_destroy(&b);
    return out;
}

/* The right password gives the user's role and name; anything else gives nothing. */
static void
test_basic(void **state)
{
    struct config cfg;
    char err[512], enc[256], user[72];

    (void)state;
    config_init(&cfg);
    assert_int_equal(config_set(&cfg, "http.auth.users", "alice:operator:" HASH ",bob:viewer:" HASH,
                                err, sizeof(err)),
                     SC_OK);
    b64("alice:hunter2", enc, sizeof(enc));
    assert_int_equal(sc_httpauth_basic(&cfg, enc, strlen(enc), user, sizeof(user)), SC_HTTPAUTH_OPERATOR);
    assert_string_equal(user, "alice");
    b64("bob:hunter2", enc, sizeof(enc));
    assert_int_equal(sc_httpauth_basic(&cfg, enc, strlen(enc), user, sizeof(user)), SC_HTTPAUTH_VIEWER);
    assert_string_equal(user, "bob");
    static const char *const bad[] = {"alice:hunter3", "alice:", "carol:hunter2", ":hunter2",
                                      "alicehunter2", "alice:hunter2\n", "ALICE:hunter2"};
    for (size_t i = 0; i < SC_ARRAY_LEN(bad); i++) {
        b64(bad[i], enc, sizeof(enc));
        assert_int_equal(sc_httpauth_basic(&cfg, enc, strlen(enc), user, sizeof(user)), SC_HTTPAUTH_NONE);
        assert_string_equal(user, "");
    }
    assert_int_equal(sc_httpauth_basic(&cfg, "!!!!", 4, user, sizeof(user)), SC_HTTPAUTH_NONE);
    assert_int_equal(sc_httpauth_basic(&cfg, "", 0, user, sizeof(user)), SC_HTTPAUTH_NONE);
    config_destroy(&cfg);
}

/* Bad entries are refused naming the key; good ones of every method pass. */
static void
test_users_config(void **state)
{
    static const char *const bad[] = {
        "alice:admin:" HASH, "alice:operator:plain", ":viewer:" HASH, "al ice:viewer:" HASH,
        "alice:viewer", "alice:viewer:", "alice:viewer:$zz$abc$def",
        /* a salt without its hash; a cost that would stall the loop on every request */
        "alice:viewer:$6$x", "alice:viewer:$6$Kx9sQ2$",
        "alice:viewer:$6$rounds=999999999$Kx9sQ2$YkgOJA1zjgBhry8o3iUwaufpVW0b8bwKm1W6Tfz9w857iekMU1xFpfP6MN.ZBWoFaF0sOLeF6TXw.8ME.xchu/",
    };
    static const char *const good[] = {
        "alice:operator:" HASH,
        "carol:viewer:$6$rounds=20000$Kx9sQ2$YkgOJA1zjgBhry8o3iUwaufpVW0b8bwKm1W6Tfz9w857iekMU1xFpfP6MN.ZBWoFaF0sOLeF6TXw.8ME.xchu/",
        "bob@example.com:viewer:$y$j9T$F5Jx5fExrKuJdZ2sHUVYs/$nFTmG4yV1D2kYoWcF6W4G2ikv5tJlSu4nKqx.nNBdr1",
    };
    struct config cfg;
    char err[512];

    (void)state;
    config_init(&cfg);
    for (size_t i = 0; i < SC_ARRAY_LEN(bad); i++) {
        assert_int_equal(config_set(&cfg, "http.auth.users", bad[i], err, sizeof(err)), SC_EINVAL);
        assert_non_null(strstr(err, "http.auth.users:"));
        assert_non_null(strstr(err, "name:role:hash"));
    }
    for (size_t i = 0; i < SC_ARRAY_LEN(good); i++)
        if (config_set(&cfg, "http.auth.users", good[i], err, sizeof(err)) != SC_OK)
            fail_msg("%s refused: %s", good[i], err);
    config_destroy(&cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nats_principal),
        cmocka_unit_test(test_empty_ring),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_users_config),
    };
    return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
