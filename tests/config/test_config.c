/* test_config.c - unit tests of config/: defaults, layers, precedence, validation, YAML safety, print. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#ifndef CONFIG_EXAMPLE
#error "CONFIG_EXAMPLE must name config/dlq-sidecar.example.yaml"
#endif
#ifndef CONFIG_FIXTURES
#error "CONFIG_FIXTURES must name tests/config"
#endif

#define ERRLEN 512

/* Helpers. */

static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* config_print() into a new string. */
static char *
printed(const struct config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    config_print(cfg, f);
    fclose(f);
    return buf;
}

/* Writes text to a new temporary file; the caller unlinks and frees the path. */
static char *
temp_file(const char *text)
{
    char *path = strdup("/tmp/test_config_XXXXXX");
    int fd;

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void
expect_get(const struct config *cfg, const char *key, const char *want)
{
    char got[8192];

    assert_int_equal(config_get(cfg, key, got, sizeof(got)), SC_OK);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got '%s', want '%s'", key, got, want);
}

static void
expect_err_contains(const char *err, const char *want)
{
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' does not contain '%s'", err, want);
}

static sc_status
load_text(struct config *cfg, const char *text, char *err)
{
    return config_load_yaml(cfg, text, strlen(text), err, ERRLEN);
}

/* Defaults. */

static void
test_defaults(void **state)
{
    static const struct {
        const char *key, *value;
    } want[] = {
        {"enabled", "true"},
        {"nats.url", "nats://127.0.0.1:4222"},
        {"nats.name", "dlq-sidecar"},
        {"nats.user", ""},
        {"nats.password", ""},
        {"nats.token", ""},
        {"nats.creds_file", ""},
        {"nats.reconnect_wait_ms", "2000"},
        {"nats.inbox_prefix", "_INBOX"},
        {"subjects.prefix", "dlq"},
        {"subjects.queue_group", "dlq-sidecar"},
        {"strategy", "automatic"},
        {"max_size", "10000"},
        {"default_retry_policy", "auto"},
        {"default_max_retries", "3"},
        {"retry_processor_enabled", "true"},
        {"history.max_entries", "20"},
        {"backoff.linear_step_ms", "300000"},
        {"backoff.exp_base_ms", "60000"},
        {"backoff.max_delay_ms", "3600000"},
        {"backoff.jitter", "0.1"},
        {"retry.timeout_ms", "30000"},
        {"retry.outcome", "reply"},
        {"retry.subject_template", "dlq.retry.{service}"},
        {"retry.allowed_subjects", "dlq.retry.>"},
        {"retry.stored_subjects", ""},
        {"retry.max_in_flight", "1000"},
        {"retry.max_per_second", "10000"},
        {"timer.tick_ms", "10"},
        {"store.backend", "memory"},
        {"store.keep_completed", "false"},
        {"store.journal_max", "100000"},
        {"store.ack", "accepted"},
        {"store.spill_dir", ""},
        {"store.spill_max_bytes", "268435456"},
        {"store.opensearch.url", "http://127.0.0.1:9200"},
        {"store.opensearch.index", "dlq-tasks"},
        {"store.opensearch.username", ""},
        {"store.opensearch.password", ""},
        {"store.opensearch.ca_file", ""},
        {"store.opensearch.insecure", "false"},
        {"store.opensearch.bulk_max_docs", "1000"},
        {"store.opensearch.bulk_max_bytes", "5242880"},
        {"store.opensearch.flush_ms", "200"},
        {"events.enabled", "true"},
        {"http.listen", "127.0.0.1:9464"},
        {"http.max_connections", "64"},
        {"http.request_timeout_ms", "10000"},
        {"log.level", "info"},
        {"log.format", "logfmt"},
        {"shutdown.drain_ms", "5000"},
        {"limits.max_envelope_bytes", "1048576"},
        {"limits.max_depth", "32"},
        {"limits.max_task_id_len", "256"},
        {"classifier.replace_builtin", "false"},
    };
    struct config cfg;
    size_t i;

    (void)state;
    config_init(&cfg);
    for (i = 0; i < SC_ARRAY_LEN(want); i++)
        expect_get(&cfg, want[i].key, want[i].value);
    /* The struct itself, as the sidecar reads it. */
    assert_true(cfg.enabled);
    assert_string_equal(cfg.nats_url, "nats://127.0.0.1:4222");
    assert_string_equal(cfg.nats_tls_key, "");
    assert_int_equal(cfg.strategy, POLICY_STRATEGY_AUTOMATIC);
    assert_false(cfg.has_default_retry_policy);
    assert_int_equal(cfg.default_max_retries, 3);
    assert_int_equal(cfg.history_max, 20);
    assert_int_equal(cfg.backoff.exp_base_ms, 60000);
    assert_true(cfg.backoff.jitter > 0.0999 && cfg.backoff.jitter < 0.1001);
    assert_int_equal(cfg.retry_outcome, CONFIG_OUTCOME_REPLY);
    assert_int_equal(cfg.retry_allowed_count, 1);
    assert_string_equal(cfg.retry_allowed_subjects[0], "dlq.retry.>");
    assert_null(cfg.retry_allowed_subjects[1]);
    assert_int_equal(cfg.store_backend, CONFIG_STORE_MEMORY);
    assert_int_equal(cfg.log_level, CONFIG_LOG_INFO);
    assert_int_equal(cfg.log_format, CONFIG_LOG_LOGFMT);
    assert_int_equal(cfg.log_task_lines_per_s, 1000);
    assert_int_equal(cfg.limits.max_envelope_bytes, 1024 * 1024);
    assert_int_equal(cfg.limits.max_depth, 32);
    assert_int_equal(cfg.nrules, 0);
    assert_false(cfg.rules_replace_builtin);
    assert_false(cfg.saw_retry_interval_seconds);
    /* Every string key is non-NULL. */
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        char buf[8192];
        if (ki->type == CONFIG_TYPE_STRING || ki->type == CONFIG_TYPE_SECRET)
            assert_int_equal(config_get(&cfg, ki->path, buf, sizeof(buf)), SC_OK);
    }
    config_destroy(&cfg);
    config_destroy(&cfg); /* zeroed: safe again */
}

/* Every default lies within its key's range: setting it back is accepted. */
static void
test_defaults_valid(void **state)
{
    struct config cfg;
    char val[8192], err[ERRLEN];
    size_t i;

    (void)state;
    config_init(&cfg);
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        if (config_get(&cfg, ki->path, val, sizeof(val)) != SC_OK)
            continue;
        if (config_set(&cfg, ki->path, val, err, sizeof(err)) != SC_OK)
            fail_msg("default of %s refused: %s", ki->path, err);
    }
    config_destroy(&cfg);
}

/* The key table: unique paths and env names, contiguous sections, sane rows. */
static void
test_key_table(void **state)
{
    static const struct {
        const char *path, *env;
    } envs[] = {
        {"nats.url", "DLQ_NATS_URL"},
        {"backoff.exp_base_ms", "DLQ_BACKOFF_EXP_BASE_MS"},
        {"store.opensearch.bulk_max_docs", "DLQ_STORE_OPENSEARCH_BULK_MAX_DOCS"},
        {"max_size", "DLQ_MAX_SIZE"},
    };
    size_t n = config_key_count(), i, j;
    char a[256], b[256];

    (void)state;
    assert_int_equal(n, 130); /* every field of struct config, plus the deprecated key */
    assert_null(config_key_get(n));
    for (i = 0; i < SC_ARRAY_LEN(envs); i++) {
        assert_int_equal(config_env_name(envs[i].path, a, sizeof(a)), strlen(envs[i].env));
        assert_string_equal(a, envs[i].env);
    }
    for (i = 0; i < n; i++) {
        const struct config_key_info *ki = config_key_get(i);
        assert_non_null(ki->help);
        assert_true(strlen(ki->help) > 5);
        assert_ptr_equal(config_key_find(ki->path), ki);
        if (ki->type == CONFIG_TYPE_INT)
            assert_true(ki->min < ki->max);
        if (ki->type == CONFIG_TYPE_ENUM)
            assert_non_null(ki->names);
        config_env_name(ki->path, a, sizeof(a));
        for (j = i + 1; j < n; j++) {
            const struct config_key_info *kj = config_key_get(j);
            assert_string_not_equal(ki->path, kj->path);
            config_env_name(kj->path, b, sizeof(b));
            assert_string_not_equal(a, b);
        }
    }
    /* A section, once left, never comes back (config_print() nests in table order). */
    for (i = 0; i + 1 < n; i++) {
        const char *p = config_key_get(i)->path, *dot = strrchr(p, '.');
        size_t sl;
        if (dot == NULL)
            continue;
        sl = (size_t)(dot - p) + 1;
        if (strncmp(config_key_get(i + 1)->path, p, sl) == 0)
            continue;
        for (j = i + 1; j < n; j++) {
            if (strncmp(config_key_get(j)->path, p, sl) == 0)
                fail_msg("%s is separated from its section by %s", config_key_get(j)->path,
                         config_key_get(i + 1)->path);
        }
    }
    assert_null(config_key_find("nats"));
    assert_null(config_key_find("nope"));
}

/* Enum names agree with policy/'s names, value for value. */
static void
test_enum_names_match_policy(void **state)
{
    const struct config_key_info *st = config_key_find("strategy");
    const struct config_key_info *rp = config_key_find("default_retry_policy");
    int i;

    (void)state;
    for (i = 0; i < POLICY_STRATEGY_COUNT; i++)
        assert_string_equal(st->names[i], policy_strategy_name((policy_strategy)i));
    assert_null(st->names[POLICY_STRATEGY_COUNT]);
    assert_string_equal(rp->names[0], "auto");
    for (i = 0; i < POLICY_RETRY_COUNT; i++)
        assert_string_equal(rp->names[i + 1], policy_retry_name((policy_retry)i));
    assert_null(rp->names[POLICY_RETRY_COUNT + 1]);
}

/* Not only equal: the enum keys list policy/'s own tables, the one copy of each. */
static void
test_enum_names_are_policys(void **state)
{
    (void)state;
    assert_ptr_equal(config_key_find("strategy")->names, policy_strategy_names);
    assert_ptr_equal(config_key_find("default_retry_policy")->names, policy_retry_auto_names);
}

/* Precedence. */

static void
test_precedence(void **state)
{
    static const struct {
        bool file, env, flag, flag_first;
        const char *want;
    } cases[] = {
        {false, false, false, false, "nats://127.0.0.1:4222"},
        {true, false, false, false, "nats://file:1"},
        {true, true, false, false, "nats://env:2"},
        {true, true, true, false, "nats://flag:3"},
        {true, true, true, true, "nats://flag:3"},
        {false, true, true, true, "nats://flag:3"},
        {true, false, true, true, "nats://flag:3"},
        {false, true, false, false, "nats://env:2"},
    };
    char *path = temp_file("nats:\n  url: nats://file:1\nmax_size: 500\n");
    char cfgarg[300], err[ERRLEN];
    size_t i;

    (void)state;
    snprintf(cfgarg, sizeof(cfgarg), "--config=%s", path);
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        struct config cfg;
        struct config_cli cli;
        char *argv[8], *envp[4];
        int argc = 0, envc = 0;
        argv[argc++] = "dlq-sidecar";
        if (cases[i].flag && cases[i].flag_first) {
            argv[argc++] = "--nats.url";
            argv[argc++] = "nats://flag:3";
        }
        if (cases[i].file)
            argv[argc++] = cfgarg;
        if (cases[i].flag && !cases[i].flag_first)
            argv[argc++] = "--nats.url=nats://flag:3";
        argv[argc] = NULL;
        envp[envc++] = "HOME=/root";
        if (cases[i].env)
            envp[envc++] = "DLQ_NATS_URL=nats://env:2";
        envp[envc] = NULL;
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, argc, argv, envp, &cli, err, sizeof(err)), SC_OK);
        assert_string_equal(cfg.nats_url, cases[i].want);
        assert_int_equal(cfg.max_size, cases[i].file ? 500 : 10000);
        assert_true(cases[i].file ? cli.config_file != NULL : cli.config_file == NULL);
        config_destroy(&cfg);
    }
    unlink(path);
    free(path);
}

/* DLQ_CONFIG names the file unless --config does; the file is read before env and flags. */
static void
test_config_env_file(void **state)
{
    char *p1 = temp_file("max_size: 111\ntimer.tick_ms: 5\n");
    char *p2 = temp_file("max_size: 222\n");
    char env1[300], err[ERRLEN];
    struct config cfg;

    (void)state;
    snprintf(env1, sizeof(env1), "DLQ_CONFIG=%s", p1);
    {
        char *argv[] = {"x", NULL};
        char *envp[] = {env1, "DLQ_TIMER_TICK_MS=7", NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 1, argv, envp, NULL, err, sizeof(err)), SC_OK);
        assert_int_equal(cfg.max_size, 111);
        assert_int_equal(cfg.timer_tick_ms, 7);
        config_destroy(&cfg);
    }
    {
        char *argv[] = {"x", "--timer.tick_ms", "9", "--config", p2, NULL};
        char *envp[] = {env1, NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 5, argv, envp, NULL, err, sizeof(err)), SC_OK);
        assert_int_equal(cfg.max_size, 222);
        assert_int_equal(cfg.timer_tick_ms, 9);
        config_destroy(&cfg);
    }
    {
        /* An empty DLQ_CONFIG means no file; an empty --config is an error. */
        char *argv[] = {"x", NULL};
        char *argv2[] = {"x", "--config=", NULL};
        char *envp[] = {"DLQ_CONFIG=", NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 1, argv, envp, NULL, err, sizeof(err)), SC_OK);
        assert_int_equal(cfg.max_size, 10000);
        assert_int_equal(config_load(&cfg, 2, argv2, NULL, NULL, err, sizeof(err)), SC_EINVAL);
        expect_err_contains(err, "--config: empty file name");
        config_destroy(&cfg);
    }
    {
        char *argv[] = {"x", "--config", "/nonexistent/dlq.yaml", NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 3, argv, NULL, NULL, err, sizeof(err)), SC_ENOTFOUND);
        expect_err_contains(err, "/nonexistent/dlq.yaml");
        config_destroy(&cfg);
    }
    unlink(p1);
    unlink(p2);
    free(p1);
    free(p2);
}

/* Command-line shapes. */
static void
test_cli(void **state)
{
    static const struct {
        const char *args[6];
        sc_status want;
        const char *err; /* substring, or NULL */
        bool help, version, print;
    } cases[] = {
        {{"--help"}, SC_OK, NULL, true, false, false},
        {{"--bogus", "-h"}, SC_OK, NULL, true, false, false},
        {{"--version"}, SC_OK, NULL, false, true, false},
        {{"--print-config"}, SC_OK, NULL, false, false, true},
        {{"--nats.urll", "x"}, SC_EINVAL, "--nats.urll: unknown flag", false, false, false},
        {{"--nats.url"}, SC_EINVAL, "--nats.url: missing value", false, false, false},
        {{"--nats.url", "--print-config"}, SC_EINVAL, "--nats.url: missing value", false, false,
         false},
        {{"stray"}, SC_EINVAL, "'stray': unexpected argument", false, false, false},
        {{"--config"}, SC_EINVAL, "--config: missing file name", false, false, false},
        {{"--max_size", "-5"}, SC_EINVAL, "max_size: -5 is out of range 100-10000000", false,
         false, false},
        {{"--max_size=12x"}, SC_EINVAL, "max_size: '12x' is not an integer", false, false, false},
        {{"--classifier.rules", "x"}, SC_EINVAL, "classifier.rules: can only be set in the config file",
         false, false, false},
        {{"--events.enabled", "--max_size", "100"}, SC_OK, NULL, false, false, false},
    };
    size_t i;

    (void)state;
    /* On error cli stays cleared (out-params are set only on success). */
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        struct config cfg;
        struct config_cli cli = {.help = true, .version = true, .print_config = true};
        char *argv[8], err[ERRLEN];
        int argc = 0, j;
        argv[argc++] = "dlq-sidecar";
        for (j = 0; j < 6 && cases[i].args[j] != NULL; j++)
            argv[argc++] = (char *)cases[i].args[j];
        argv[argc] = NULL;
        config_init(&cfg);
        cfg.events_enabled = false;
        assert_int_equal(config_load(&cfg, argc, argv, NULL, &cli, err, sizeof(err)),
                         cases[i].want);
        if (cases[i].err != NULL)
            expect_err_contains(err, cases[i].err);
        assert_int_equal(cli.help, cases[i].help);
        assert_int_equal(cli.version, cases[i].version);
        assert_int_equal(cli.print_config, cases[i].print);
        config_destroy(&cfg);
    }
    {
        /* A bool flag without a value is true; a value may follow as a word. */
        struct config cfg;
        char *argv[] = {"x", "--events.enabled", "--store.keep_completed", "yes",
                        "--log.level=DEBUG", "--default_max_retries", "7", NULL};
        char err[ERRLEN];
        config_init(&cfg);
        cfg.events_enabled = false;
        assert_int_equal(config_load(&cfg, 7, argv, NULL, NULL, err, sizeof(err)), SC_OK);
        assert_true(cfg.events_enabled);
        assert_true(cfg.store_keep_completed);
        assert_int_equal(cfg.log_level, CONFIG_LOG_DEBUG);
        assert_int_equal(cfg.default_max_retries, 7);
        config_destroy(&cfg);
    }
}

/* Environment: DLQ_* only, unknown names refused, DLQ_CONFIG reserved. */
static void
test_env(void **state)
{
    struct config cfg;
    char err[ERRLEN];

    (void)state;
    {
        char *envp[] = {"PATH=/bin", "DLQX=1", "DLQ_BACKOFF_EXP_BASE_MS=1234",
                        "DLQ_STORE_OPENSEARCH_BULK_MAX_DOCS=77",
                        "DLQ_RETRY_ALLOWED_SUBJECTS= a.> , b.*.c ,d", "DLQ_DEFAULT_RETRY_POLICY=",
                        NULL};
        char *argv[] = {"x", NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 1, argv, envp, NULL, err, sizeof(err)), SC_OK);
        assert_int_equal(cfg.backoff.exp_base_ms, 1234);
        assert_int_equal(cfg.os_bulk_max_docs, 77);
        assert_int_equal(cfg.retry_allowed_count, 3);
        assert_string_equal(cfg.retry_allowed_subjects[0], "a.>");
        assert_string_equal(cfg.retry_allowed_subjects[1], "b.*.c");
        assert_string_equal(cfg.retry_allowed_subjects[2], "d");
        assert_null(cfg.retry_allowed_subjects[3]);
        assert_false(cfg.has_default_retry_policy);
        config_destroy(&cfg);
    }
    {
        char *envp[] = {"DLQ_NATS_URLL=x", NULL};
        char *argv[] = {"x", NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 1, argv, envp, NULL, err, sizeof(err)), SC_EINVAL);
        expect_err_contains(err, "DLQ_NATS_URLL");
        config_destroy(&cfg);
    }
    {
        char *envp[] = {"DLQ_BACKOFF_JITTER=1.5", NULL};
        char *argv[] = {"x", NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 1, argv, envp, NULL, err, sizeof(err)), SC_EINVAL);
        expect_err_contains(err, "backoff.jitter: 1.5 is out of range 0-1");
        expect_err_contains(err, "DLQ_BACKOFF_JITTER");
        config_destroy(&cfg);
    }
    {
        char *envp[] = {"DLQ_CLASSIFIER_RULES=x", NULL};
        char *argv[] = {"x", NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 1, argv, envp, NULL, err, sizeof(err)), SC_EINVAL);
        expect_err_contains(err, "file");
        config_destroy(&cfg);
    }
}

/* Values by type: accepted forms and what config_get() reads back. */
static void
test_good_values(void **state)
{
    static const struct {
        const char *key, *value, *want;
    } cases[] = {
        {"enabled", "false", "false"},
        {"enabled", "TRUE", "true"},
        {"enabled", "no", "false"},
        {"enabled", "Yes", "true"},
        {"enabled", "off", "false"},
        {"enabled", "ON", "true"},
        {"enabled", "0", "false"},
        {"enabled", "1", "true"},
        {"max_size", "100", "100"},
        {"cluster.member_id", "host-1_a=", "host-1_a="},
        {"cluster.member_id", "", ""},
        {"cluster.bucket", "dlq-cluster_2", "dlq-cluster_2"},
        {"max_size", "0000123", "123"},
        {"max_size", "10000000", "10000000"},
        {"default_max_retries", "0", "0"},
        {"backoff.max_delay_ms", "2592000000", "2592000000"},
        {"backoff.jitter", "0", "0"},
        {"backoff.jitter", "1", "1"},
        {"backoff.jitter", "0.25", "0.25"},
        {"backoff.jitter", "5e-1", "0.5"},
        {"backoff.jitter", ".3", "0.3"},
        {"strategy", "Manual", "manual"},
        {"strategy", "disabled", "disabled"},
        {"default_retry_policy", "EXPONENTIAL", "exponential"},
        {"default_retry_policy", "auto", "auto"},
        {"default_retry_policy", "", "auto"},
        {"retry.outcome", "none", "none"},
        {"retry.outcome", "Stored", "stored"},
        {"retry.stored_subjects", "jobs.stream.>,x.*", "jobs.stream.>,x.*"},
        {"store.backend", "opensearch", "opensearch"},
        {"log.level", "warn", "warn"},
        {"log.format", "JSON", "json"},
        {"nats.url", "nats://a:1, nats://b:2", "nats://a:1, nats://b:2"},
        {"nats.name", "ünïcödé name", "ünïcödé name"},
        {"nats.password", "p@ss:w0rd\"", "p@ss:w0rd\""},
        {"subjects.prefix", "my-dlq_1", "my-dlq_1"},
        {"nats.inbox_prefix", "_INBOX_dlq-sidecar", "_INBOX_dlq-sidecar"},
        {"nats.inbox_prefix", "_I.dlq.a-1", "_I.dlq.a-1"},
        {"nats.inbox_prefix", "1234567890123456789012345678901234567890123456789012345678901234",
         "1234567890123456789012345678901234567890123456789012345678901234"},
        {"retry.subject_template", "jobs.{service}.again", "jobs.{service}.again"},
        {"retry.subject_template", "fixed", "fixed"},
        {"retry.allowed_subjects", "a.*.c,x.>", "a.*.c,x.>"},
        {"retry.allowed_subjects", "", ""},
        {"retry.allowed_subjects", ">", ">"},
        {"retention.categories", "network:exhausted=1d,validation:archived=0,transient:completed=90",
         "network:exhausted=1d,validation:archived=0,transient:completed=90"},
        {"retention.categories", "permanent:exhausted=3650d", "permanent:exhausted=3650d"},
        {"alerts.slack.url", "", ""},
        {"alerts.slack.url", "https://hooks.slack.com/services/T/B/X",
         "https://hooks.slack.com/services/T/B/X"},
        {"store.opensearch.index", "dlq-tasks-2024.01", "dlq-tasks-2024.01"},
        {"http.listen", "", ""},
        {"http.listen", "0.0.0.0:1", "0.0.0.0:1"},
        {"http.listen", "localhost:65535", "localhost:65535"},
        {"http.listen", "[::1]:9464", "[::1]:9464"},
        {"limits.max_depth", "1000", "1000"},
        {"limits.max_metadata_keys", "0", "0"},
    };
    struct config cfg;
    char err[ERRLEN];
    size_t i;

    (void)state;
    config_init(&cfg);
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        if (config_set(&cfg, cases[i].key, cases[i].value, err, sizeof(err)) != SC_OK)
            fail_msg("%s=%s refused: %s", cases[i].key, cases[i].value, err);
        expect_get(&cfg, cases[i].key, cases[i].want);
    }
    assert_int_equal(config_set(&cfg, "default_retry_policy", "immediate", err, sizeof(err)),
                     SC_OK);
    assert_true(cfg.has_default_retry_policy);
    assert_int_equal(cfg.default_retry_policy, POLICY_IMMEDIATE);
    assert_int_equal(config_set(&cfg, "limits.max_error_len", "1048576", err, sizeof(err)), SC_OK);
    assert_int_equal(cfg.limits.max_error_len, 1048576);
    config_destroy(&cfg);
}

/* Bad values: refused with a message naming key, value and what is allowed; the value is kept. */
static void
test_bad_values(void **state)
{
    static const struct {
        const char *key, *value, *err;
    } cases[] = {
        {"enabled", "maybe", "enabled: 'maybe' is not a boolean (true/false)"},
        {"enabled", "", "enabled: '' is not a boolean (true/false)"},
        {"enabled", "truee", "enabled: 'truee' is not a boolean"},
        {"max_size", "99", "max_size: 99 is out of range 100-10000000"},
        {"max_size", "10000001", "max_size: 10000001 is out of range 100-10000000"},
        {"max_size", "12abc", "max_size: '12abc' is not an integer (100-10000000)"},
        {"max_size", "", "max_size: '' is not an integer"},
        {"max_size", " 500", "max_size: ' 500' is not an integer"},
        {"max_size", "500 ", "max_size: '500 ' is not an integer"},
        {"max_size", "+500", "max_size: '+500' is not an integer"},
        {"max_size", "0x200", "max_size: '0x200' is not an integer"},
        {"max_size", "1e3", "max_size: '1e3' is not an integer"},
        {"max_size", "5.0", "max_size: '5.0' is not an integer"},
        {"max_size", "-", "max_size: '-' is not an integer"},
        {"max_size", "1_000", "max_size: '1_000' is not an integer"},
        {"max_size", "99999999999999999999", "max_size: 99999999999999999999 is out of range"},
        {"max_size", "-99999999999999999999", "max_size: -99999999999999999999 is out of range"},
        {"max_size", "9223372036854775808", "is out of range 100-10000000"},
        {"max_size", "999999999999999999999x", "is not an integer"},
        {"backoff.jitter", "1.5", "backoff.jitter: 1.5 is out of range 0-1"},
        {"backoff.jitter", "-0.1", "backoff.jitter: -0.1 is out of range 0-1"},
        {"backoff.jitter", "nan", "backoff.jitter: 'nan' is not a number (0-1)"},
        {"backoff.jitter", "inf", "backoff.jitter: 'inf' is not a number"},
        {"backoff.jitter", "1e999", "backoff.jitter: '1e999' is not a number"},
        {"backoff.jitter", "0x1p-1", "is not a number"},
        {"backoff.jitter", "0.5.5", "is not a number"},
        {"backoff.jitter", "", "backoff.jitter: '' is not a number"},
        {"backoff.categories", "network 1s 0s",
         "backoff.categories: 'network 1s 0s' is not a category followed by 1-32 delays of 1ms-7d"},
        {"backoff.categories", "network", "backoff.categories: 'network' is not a category"},
        {"backoff.categories", "sometimes 1s", "backoff.categories: 'sometimes 1s' is not a category"},
        {"backoff.categories", "network 8d", "is not a category followed by 1-32 delays of 1ms-7d"},
        {"backoff.categories", "network -1s", "is not a category followed by 1-32 delays"},
        {"backoff.subjects", "dlq.failed.x 1s soon",
         "backoff.subjects: 'dlq.failed.x 1s soon' is not a subject pattern followed by 1-32 delays"},
        {"backoff.subjects", "dlq..x 1s", "backoff.subjects: 'dlq..x 1s' is not a subject pattern"},
        {"priority.subjects", "dlq.failed.x urgent",
         "priority.subjects: 'dlq.failed.x urgent' is not a subject pattern followed by high, normal or low"},
        {"priority.subjects", "dlq.failed.x", "is not a subject pattern followed by high"},
        {"priority.subjects", "dlq.failed.x high low", "is not a subject pattern followed by high"},
        {"strategy", "sometimes", "strategy: 'sometimes' is not one of automatic, selective, manual, disabled"},
        {"default_retry_policy", "forever",
         "default_retry_policy: 'forever' is not one of auto, never, linear, exponential, immediate"},
        {"retry.outcome", "", "retry.outcome: '' is not one of reply, none, stored"},
        {"store.backend", "redis", "store.backend: 'redis' is not one of memory, opensearch"},
        {"store.ack", "stored", "store.ack: 'stored' is not one of accepted, durable"},
        {"store.spill_max_bytes", "1000", "store.spill_max_bytes: 1000 is out of range 1048576-1099511627776"},
        {"log.level", "trace", "log.level: 'trace' is not one of debug, info, warn, error"},
        {"log.format", "text", "log.format: 'text' is not one of logfmt, json"},
        {"subjects.prefix", "a.b", "subjects.prefix: 'a.b' is not one NATS token"},
        {"subjects.prefix", "a*", "subjects.prefix: 'a*' is not one NATS token"},
        {"subjects.prefix", ">", "is not one NATS token"},
        {"subjects.prefix", "a b", "is not one NATS token"},
        {"subjects.prefix", "", "subjects.prefix: '' is not one NATS token"},
        {"subjects.queue_group", "a b", "subjects.queue_group: 'a b' is not a queue group name"},
        /* a '"' in a JetStream name would end its string in nats.c's API request (unescaped JSON) */
        {"ingest.stream", "X\"Y", "ingest.stream: 'X\"Y' is not a JetStream name"},
        {"ingest.consumer", "c\",\"x\":\"", "is not a JetStream name"},
        {"advisories.streams", "[\"ORDERS\"]", "is not a JetStream name"},
        {"advisories.stream", "A\"", "is not a JetStream name"},
        {"advisories.consumer", "\"", "is not a JetStream name"},
        {"nats.inbox_prefix", "_INBOX.>",
         "nats.inbox_prefix: '_INBOX.>' is not a subject prefix of 1-64 bytes: tokens of A-Z a-z "
         "0-9 _ - joined by '.', no wildcard (e.g. _INBOX_dlq-sidecar)"},
        {"nats.inbox_prefix", "", "nats.inbox_prefix: '' is not a subject prefix"},
        {"nats.inbox_prefix", "_INBOX.", "is not a subject prefix"},
        {"nats.inbox_prefix", "a..b", "is not a subject prefix"},
        {"nats.inbox_prefix", ".a", "is not a subject prefix"},
        {"nats.inbox_prefix", "a b", "is not a subject prefix"},
        {"nats.inbox_prefix", "a*", "is not a subject prefix"},
        {"nats.inbox_prefix", "12345678901234567890123456789012345678901234567890123456789012345",
         "is not a subject prefix"},
        {"nats.url", "", "nats.url: '' is not a comma-separated list of URLs"},
        {"nats.url", "nats://a:1,,nats://b:2", "is not a comma-separated list of URLs"},
        {"nats.url", "nats://a b", "is not a comma-separated list of URLs"},
        {"nats.name", "tab\there", "nats.name: 'tab\\x09here' contains control characters"},
        {"nats.name", "bad\xff", "contains control characters or invalid UTF-8"},
        {"nats.name", "over\xc0\xaflong", "invalid UTF-8"},
        {"nats.name", "del\x7f", "control characters"},
        {"retry.subject_template", "dlq.retry.*", "retry.subject_template: 'dlq.retry.*' is not a NATS subject"},
        {"retry.subject_template", "dlq..x", "is not a NATS subject"},
        {"retry.subject_template", "", "is not a NATS subject"},
        {"retry.allowed_subjects", "a.>.b", "retry.allowed_subjects: 'a.>.b' is not a NATS subject pattern"},
        {"retry.allowed_subjects", "a,,b", "retry.allowed_subjects: an entry is empty"},
        {"retry.allowed_subjects", "a.*x", "is not a NATS subject pattern"},
        {"retention.categories", "network:exhausted=3651d",
         "retention.categories: 'network:exhausted=3651d' is not "
         "<category>:<exhausted|completed|archived>=<duration> (a category of the classifier; a "
         "duration of 0-315360000 s, or with s, m, h or d)"},
        {"retention.categories", "sometimes:exhausted=1d", "is not <category>:"},
        {"retention.categories", "network:pending=1d", "is not <category>:"},
        {"retention.categories", "network:exhausted=", "is not <category>:"},
        {"retention.categories", "network:exhausted=1w", "is not <category>:"},
        {"retention.categories", "network:exhausted=-1", "is not <category>:"},
        {"retention.categories", "network=1d", "is not <category>:"},
        {"retention.exhausted_s", "-1", "retention.exhausted_s: -1 is out of range 0-315360000"},
        {"retention.check_interval_ms", "99",
         "retention.check_interval_ms: 99 is out of range 100-3600000"},
        {"alerts.slack.url", "ftp://hooks.slack.com/services/T/B/X",
         "alerts.slack.url: the value is not empty or an http:// or https:// URL"},
        {"alerts.pagerduty.url", "events.pagerduty.com",
         "alerts.pagerduty.url: 'events.pagerduty.com' is not an http:// or https:// URL"},
        {"store.opensearch.index", "Upper", "store.opensearch.index: 'Upper' is not an OpenSearch index name"},
        {"store.opensearch.index", "a/b", "is not an OpenSearch index name"},
        {"store.opensearch.index", "-x", "is not an OpenSearch index name"},
        {"store.opensearch.index", "", "is not an OpenSearch index name"},
        {"http.listen", "nohost", "http.listen: 'nohost' is not host:port (or empty to disable)"},
        {"http.listen", "h:0", "is not host:port"},
        {"http.listen", "h:65536", "is not host:port"},
        {"http.listen", ":80", "is not host:port"},
        {"http.listen", "h:", "is not host:port"},
        {"http.listen", "[::1:80", "is not host:port"},
        {"http.listen", "::1:80", "is not host:port"},
        {"http.listen", "a b:80", "is not host:port"},
        {"http.listen", "h:80x", "is not host:port"},
        {"cluster.bucket", "A.B", "cluster.bucket: 'A.B' is not a KV bucket name (A-Z a-z 0-9 _ -)"},
        {"cluster.bucket", "", "is not a KV bucket name"},
        {"cluster.member_id", "a.b", "cluster.member_id: 'a.b' is not empty, or 1-64 of A-Z a-z 0-9 _ - ="},
        {"cluster.member_id", "a b", "is not empty, or 1-64"},
        {"cluster.member_id", "x*", "is not empty, or 1-64"},
        {"cluster.member_id", "12345678901234567890123456789012345678901234567890123456789012345",
         "is not empty, or 1-64"},
        {"cluster.partitions", "0", "cluster.partitions: 0 is out of range 1-4096"},
        {"cluster.lease_ms", "999", "cluster.lease_ms: 999 is out of range 1000-600000"},
        {"classifier.rules", "", "classifier.rules: can only be set in the config file"},
        {"nats.urll", "x", "nats.urll: unknown key"},
        {"nats", "x", "nats: unknown key"},
    };
    struct config cfg;
    char err[ERRLEN], before[8192], after[8192];
    size_t i;

    (void)state;
    config_init(&cfg);
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        bool known = config_key_find(cases[i].key) != NULL &&
                     config_get(&cfg, cases[i].key, before, sizeof(before)) == SC_OK;
        err[0] = '\0';
        if (config_set(&cfg, cases[i].key, cases[i].value, err, sizeof(err)) != SC_EINVAL)
            fail_msg("%s=%s accepted", cases[i].key, cases[i].value);
        expect_err_contains(err, cases[i].err);
        assert_null(strchr(err, '\n'));
        if (known) {
            assert_int_equal(config_get(&cfg, cases[i].key, after, sizeof(after)), SC_OK);
            assert_string_equal(before, after);
        }
    }
    config_destroy(&cfg);
}

/* Long and huge values are refused with a bounded, one-line message. */
static void
test_long_values(void **state)
{
    struct config cfg;
    char err[ERRLEN];
    char *big = malloc(100001);
    size_t i;

    (void)state;
    assert_non_null(big);
    memset(big, 'a', 100000);
    big[100000] = '\0';
    config_init(&cfg);
    assert_int_equal(config_set(&cfg, "nats.name", big, err, sizeof(err)), SC_EINVAL);
    expect_err_contains(err, "nats.name: the value is longer than 4096 bytes");
    assert_int_equal(config_set(&cfg, "max_size", big, err, sizeof(err)), SC_EINVAL);
    big[4096] = '\0';
    assert_int_equal(config_set(&cfg, "nats.name", big, err, sizeof(err)), SC_OK);
    assert_int_equal(strlen(cfg.nats_name), 4096);
    /* 1001 list entries. */
    for (i = 0; i < 2001; i++)
        big[i] = (i % 2) ? ',' : 'a';
    big[2001] = '\0';
    assert_int_equal(config_set(&cfg, "retry.allowed_subjects", big, err, sizeof(err)), SC_EINVAL);
    expect_err_contains(err, "more than 1000 entries");
    big[1999] = '\0';
    assert_int_equal(config_set(&cfg, "retry.allowed_subjects", big, err, sizeof(err)), SC_OK);
    assert_int_equal(cfg.retry_allowed_count, 1000);
    /* A tiny error buffer truncates, never overflows; a NULL one is fine. */
    assert_int_equal(config_set(&cfg, "max_size", "1", err, 8), SC_EINVAL);
    assert_int_equal(strlen(err), 7);
    assert_int_equal(config_set(&cfg, "max_size", "1", NULL, 0), SC_EINVAL);
    config_destroy(&cfg);
    free(big);
}

/* Every INT key: min-1 and max+1 refused naming key and range; min and max accepted. */
static void
test_int_ranges(void **state)
{
    struct config cfg;
    char v[64], want[256], err[ERRLEN];
    size_t i, checked = 0;

    (void)state;
    config_init(&cfg);
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        int64_t bad[2], good[2];
        int j;
        if (ki->type != CONFIG_TYPE_INT)
            continue;
        bad[0] = ki->min - 1;
        bad[1] = ki->max + 1;
        good[0] = ki->min;
        good[1] = ki->max;
        for (j = 0; j < 2; j++) {
            snprintf(v, sizeof(v), "%" PRId64, bad[j]);
            snprintf(want, sizeof(want), "%s: %s is out of range %" PRId64 "-%" PRId64, ki->path,
                     v, ki->min, ki->max);
            assert_int_equal(config_set(&cfg, ki->path, v, err, sizeof(err)), SC_EINVAL);
            assert_string_equal(err, want);
            snprintf(v, sizeof(v), "%" PRId64, good[j]);
            if (config_set(&cfg, ki->path, v, err, sizeof(err)) != SC_OK)
                fail_msg("%s=%s refused: %s", ki->path, v, err);
            if (!ki->deprecated)
                expect_get(&cfg, ki->path, v);
        }
        checked++;
    }
    assert_int_equal(checked, 59);
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        if (ki->type != CONFIG_TYPE_DOUBLE)
            continue;
        snprintf(v, sizeof(v), "%g", ki->dmin - 0.001);
        assert_int_equal(config_set(&cfg, ki->path, v, err, sizeof(err)), SC_EINVAL);
        expect_err_contains(err, "is out of range");
        snprintf(v, sizeof(v), "%g", ki->dmax + 0.001);
        assert_int_equal(config_set(&cfg, ki->path, v, err, sizeof(err)), SC_EINVAL);
        expect_err_contains(err, ki->path);
    }
    config_destroy(&cfg);
}

/* Every ENUM key accepts each of its names in any case, and refuses others listing them. */
static void
test_enum_values(void **state)
{
    struct config cfg;
    char err[ERRLEN], upper[64];
    size_t i, j, k;

    (void)state;
    config_init(&cfg);
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        if (ki->type != CONFIG_TYPE_ENUM)
            continue;
        for (j = 0; ki->names[j] != NULL; j++) {
            assert_int_equal(config_set(&cfg, ki->path, ki->names[j], err, sizeof(err)), SC_OK);
            expect_get(&cfg, ki->path, ki->names[j]);
            for (k = 0; ki->names[j][k] != '\0' && k + 1 < sizeof(upper); k++)
                upper[k] = (char)(ki->names[j][k] >= 'a' && ki->names[j][k] <= 'z'
                                      ? ki->names[j][k] - 32
                                      : ki->names[j][k]);
            upper[k] = '\0';
            assert_int_equal(config_set(&cfg, ki->path, upper, err, sizeof(err)), SC_OK);
            expect_get(&cfg, ki->path, ki->names[j]);
        }
        assert_int_equal(config_set(&cfg, ki->path, "zzz", err, sizeof(err)), SC_EINVAL);
        expect_err_contains(err, ki->path);
        expect_err_contains(err, "'zzz' is not one of ");
        expect_err_contains(err, ki->names[0]);
    }
    config_destroy(&cfg);
}

/* Secrets. */

static void
test_secrets_masked(void **state)
{
    static const char *const secrets[] = {"nats.password", "nats.token",
                                          "store.opensearch.password"};
    struct config cfg;
    char err[ERRLEN], *out;
    size_t i;

    (void)state;
    config_init(&cfg);
    out = printed(&cfg);
    assert_null(strstr(out, "********"));
    assert_non_null(strstr(out, "  password: \"\"\n"));
    free(out);
    for (i = 0; i < SC_ARRAY_LEN(secrets); i++) {
        char val[64];
        assert_int_equal(config_key_find(secrets[i])->type, CONFIG_TYPE_SECRET);
        snprintf(val, sizeof(val), "TopSecret%zu", i);
        assert_int_equal(config_set(&cfg, secrets[i], val, err, sizeof(err)), SC_OK);
        expect_get(&cfg, secrets[i], val); /* config_get() does not mask */
    }
    assert_int_equal(config_set(&cfg, "nats.user", "alice", err, sizeof(err)), SC_OK);
    out = printed(&cfg);
    assert_null(strstr(out, "TopSecret"));
    assert_non_null(strstr(out, "  password: \"********\"\n"));
    assert_non_null(strstr(out, "  token: \"********\"\n"));
    assert_non_null(strstr(out, "    password: \"********\"\n"));
    assert_non_null(strstr(out, "  user: \"alice\"\n"));
    free(out);
    /* The crypt(3) hashes of http.auth.users are masked too; the names and roles stay. */
    assert_int_equal(config_set(&cfg, "http.auth.users",
                                "alice:operator:$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/,"
                                "bob:viewer:$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/",
                                err, sizeof(err)),
                     SC_OK);
    out = printed(&cfg);
    assert_null(strstr(out, "$6$"));
    assert_non_null(strstr(out, "    users: [\"alice:operator:********\", \"bob:viewer:********\"]\n"));
    free(out);
    /* Only the secrets are masked: passwords, tokens and the alert hooks' keys and Slack URL. */
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        if (ki->type == CONFIG_TYPE_SECRET)
            assert_true(strstr(ki->path, "password") != NULL || strstr(ki->path, "token") != NULL ||
                        strcmp(ki->path, "alerts.pagerduty.routing_key") == 0 ||
                        strcmp(ki->path, "alerts.opsgenie.api_key") == 0 ||
                        strcmp(ki->path, "alerts.slack.url") == 0);
    }
    config_destroy(&cfg);
}

/* Passwords inside URLs. */

static void
expect_redacted(const char *in, const char *want)
{
    char out[256];
    size_t n = config_redact(in, strlen(in), out, sizeof(out));

    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
    assert_int_equal(config_redact(in, strlen(in), NULL, 0), strlen(want));
}

static void
test_redact(void **state)
{
    char small[12];

    (void)state;
    expect_redacted("nats://u:p@host:4222", "nats://u:***@host:4222");
    expect_redacted("nats://tok@host", "nats://***@host");
    expect_redacted("nats://host:4222", "nats://host:4222");
    /* The last '@' ends the user info: a password may hold '/', '#' or '@' unescaped. */
    expect_redacted("http://u:pw@a:9200,https://v:pw2@b/x@y",
                    "http://u:***@a:9200,https://v:***@y");
    expect_redacted("nats://alice:pa/ss@127.0.0.1:4222", "nats://alice:***@127.0.0.1:4222");
    expect_redacted("nats://alice:pa#s?s@h", "nats://alice:***@h");
    /* nats.c takes a URL without a scheme: user:password@host is masked there too. */
    expect_redacted("bob:s3cret@127.0.0.1:4223", "bob:***@127.0.0.1:4223");
    expect_redacted("url=bob:s3cret@h,nats://c:d@h2", "url=bob:***@h,nats://c:***@h2");
    expect_redacted("nats://a:b@h1, nats://c:d@h2", "nats://a:***@h1, nats://c:***@h2");
    expect_redacted("tls://u:p:q@h", "tls://u:***@h");       /* the first ':' ends the user */
    expect_redacted("http://u:p@x@h/", "http://u:***@h/");   /* the last '@' ends the user info */
    expect_redacted("http://:@h", "http://:***@h");
    expect_redacted("no url here: a@b", "no url here: a@b");
    expect_redacted("url=\"nats://u:p@h\" x", "url=\"nats://u:***@h\" x");
    expect_redacted("", "");
    /* A URL's query may be a credential (a webhook's token): masked, its fragment kept. */
    expect_redacted("https://hooks.example.com/alert?token=abc123", "https://hooks.example.com/alert?***");
    expect_redacted("https://u:p@h/x?k=v#frag", "https://u:***@h/x?***#frag");
    expect_redacted("https://a/x?t=1,https://b/y?t=2", "https://a/x?***,https://b/y?***");
    expect_redacted("url=\"https://h/p?sig=s3cret\" x", "url=\"https://h/p?***\" x");
    expect_redacted("https://h/x?", "https://h/x?");
    expect_redacted("http://h?q@x/", "http://***@x/"); /* the last '@' still ends the user info */
    expect_redacted("is it? no url", "is it? no url");
    /* Truncated output stays terminated and never shows the secret. */
    assert_int_equal(config_redact("nats://u:secret@h", 17, small, sizeof(small)), 14);
    assert_string_equal(small, "nats://u:**");
    /* len bounds the input: the '@' past it is not seen, and nothing after it leaks. */
    assert_int_equal(config_redact("nats://u:p@h", 9, small, sizeof(small)), 9);
    assert_string_equal(small, "nats://u:");
}

/* --print-config and error messages never show a password given inside a URL. */
static void
test_url_passwords_masked(void **state)
{
    struct config cfg;
    char err[ERRLEN], *out;

    (void)state;
    config_init(&cfg);
    assert_int_equal(config_set(&cfg, "nats.url", "nats://alice:Hunter2@n1:4222,nats://tk5ecr3t@n2",
                                err, sizeof(err)),
                     SC_OK);
    assert_int_equal(config_set(&cfg, "store.opensearch.url", "https://admin:Os3cret@os:9200", err,
                                sizeof(err)),
                     SC_OK);
    assert_int_equal(config_set(&cfg, "alerts.webhook_urls",
                                "https://hook:Wh00k@alerts.example/x,http://plain.example/y", err,
                                sizeof(err)),
                     SC_OK);
    expect_get(&cfg, "nats.url", "nats://alice:Hunter2@n1:4222,nats://tk5ecr3t@n2"); /* unmasked */
    out = printed(&cfg);
    assert_null(strstr(out, "Hunter2"));
    assert_null(strstr(out, "tk5ecr3t"));
    assert_null(strstr(out, "Os3cret"));
    assert_null(strstr(out, "Wh00k"));
    assert_non_null(strstr(out, "  url: \"nats://alice:***@n1:4222,nats://***@n2\"\n"));
    assert_non_null(strstr(out, "    url: \"https://admin:***@os:9200\"\n"));
    assert_non_null(
        strstr(out, "[\"https://hook:***@alerts.example/x\", \"http://plain.example/y\"]"));
    free(out);
    /* A value refused by validation is echoed masked. */
    assert_int_equal(config_set(&cfg, "nats.url", "nats://bob:Sw0rdf1sh@h x", err, sizeof(err)),
                     SC_EINVAL);
    assert_null(strstr(err, "Sw0rdf1sh"));
    expect_err_contains(err, "nats://bob:***@h");
    assert_int_equal(config_set(&cfg, "alerts.webhook_urls", "ftp://u:Ftpw0rd@h", err, sizeof(err)),
                     SC_EINVAL);
    assert_null(strstr(err, "Ftpw0rd"));
    config_destroy(&cfg);
}

/* Printing. */

/* Compares every key's text form (and the rules) of two configs. */
static void
expect_same(const struct config *a, const struct config *b, bool secrets_masked)
{
    char va[8192], vb[8192];
    size_t i;

    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        if (config_get(a, ki->path, va, sizeof(va)) != SC_OK)
            continue;
        assert_int_equal(config_get(b, ki->path, vb, sizeof(vb)), SC_OK);
        if (ki->type == CONFIG_TYPE_SECRET && secrets_masked && va[0] != '\0')
            strcpy(va, "********");
        else if (secrets_masked) {
            char masked[8192];
            config_redact(va, strlen(va), masked, sizeof(masked));
            strcpy(va, masked);
        }
        if (strcmp(va, vb) != 0)
            fail_msg("%s: '%s' became '%s'", ki->path, va, vb);
    }
    assert_int_equal(a->nrules, b->nrules);
    for (i = 0; i < a->nrules; i++) {
        assert_string_equal(a->rules[i].id, b->rules[i].id);
        assert_string_equal(a->rules[i].pattern, b->rules[i].pattern);
        assert_int_equal(a->rules[i].category, b->rules[i].category);
        assert_int_equal(a->rules[i].field, b->rules[i].field);
    }
}

static void
roundtrip(const struct config *a)
{
    struct config b;
    char err[ERRLEN], *p1, *p2;

    p1 = printed(a);
    assert_null(strstr(p1, " \n"));
    config_init(&b);
    {
        /* The users' masked hashes ("name:role:********") do not load: b takes a's users as they are. */
        char *text = strdup(p1), *u = strstr(text, "\n    users: ["), users[8192];
        if (u) {
            char *eol = strchr(u + 1, '\n'), *end = u + strlen("\n    users: [");
            *end++ = ']';
            memmove(end, eol, strlen(eol) + 1);
        }
        if (load_text(&b, text, err) != SC_OK)
            fail_msg("printed config does not load: %s\n%s", err, text);
        assert_int_equal(config_get(a, "http.auth.users", users, sizeof(users)), SC_OK);
        assert_int_equal(config_set(&b, "http.auth.users", users, err, sizeof(err)), SC_OK);
        free(text);
    }
    expect_same(a, &b, true);
    p2 = printed(&b);
    assert_string_equal(p1, p2);
    free(p1);
    free(p2);
    config_destroy(&b);
}

static void
test_print_roundtrip(void **state)
{
    static const struct {
        const char *key, *value;
    } sets[] = {
        {"nats.name", "quote\" back\\slash ünï \xe2\x80\xa8 sep \xc2\x85 nel \xef\xbb\xbf bom"},
        {"nats.user", "- leading dash: and colon # hash"},
        {"nats.tls_ca", "null"},
        {"nats.creds_file", "~"},
        {"nats.nkey_seed_file", "123"},
        {"nats.tls_cert", "true"},
        {"nats.password", "pw"},
        {"backoff.jitter", "0.123456789012345"},
        {"default_retry_policy", "never"},
        {"retry.allowed_subjects", "a.>,b.*.c"},
        {"http.listen", ""},
    };
    struct config cfg;
    char err[ERRLEN], *text;
    size_t i, len;

    (void)state;
    config_init(&cfg);
    roundtrip(&cfg);
    for (i = 0; i < SC_ARRAY_LEN(sets); i++) {
        if (config_set(&cfg, sets[i].key, sets[i].value, err, sizeof(err)) != SC_OK)
            fail_msg("%s refused: %s", sets[i].key, err);
    }
    roundtrip(&cfg);
    assert_int_equal(config_set(&cfg, "retry.allowed_subjects", "", err, sizeof(err)), SC_OK);
    roundtrip(&cfg);
    config_destroy(&cfg);

    /* Every key at a non-default value, rules included. */
    text = slurp(CONFIG_FIXTURES "/full.yaml", &len);
    config_init(&cfg);
    if (config_load_yaml(&cfg, text, len, err, sizeof(err)) != SC_OK)
        fail_msg("full.yaml: %s", err);
    roundtrip(&cfg);
    config_destroy(&cfg);
    free(text);
}

/* full.yaml sets every key away from its default: checks each layer reached the struct. */
static void
test_full_file(void **state)
{
    struct config cfg, def;
    char err[ERRLEN], *text, va[8192], vb[8192];
    size_t i, len;

    (void)state;
    text = slurp(CONFIG_FIXTURES "/full.yaml", &len);
    config_init(&cfg);
    config_init(&def);
    if (config_load_yaml(&cfg, text, len, err, sizeof(err)) != SC_OK)
        fail_msg("full.yaml: %s", err);
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        if (config_get(&cfg, ki->path, va, sizeof(va)) != SC_OK)
            continue;
        assert_int_equal(config_get(&def, ki->path, vb, sizeof(vb)), SC_OK);
        if (strcmp(va, vb) == 0)
            fail_msg("full.yaml leaves %s at its default", ki->path);
    }
    assert_false(cfg.enabled);
    assert_string_equal(cfg.nats_name, "sidecar-\"quoted\" \\ back ünïcödé");
    assert_string_equal(cfg.nats_password, "s3cret");
    assert_string_equal(cfg.subjects_prefix, "failq");
    assert_int_equal(cfg.strategy, POLICY_STRATEGY_SELECTIVE);
    assert_true(cfg.has_default_retry_policy);
    assert_int_equal(cfg.default_retry_policy, POLICY_LINEAR);
    assert_int_equal(cfg.backoff.max_delay_ms, 2592000000LL);
    assert_int_equal(cfg.retry_allowed_count, 2);
    assert_string_equal(cfg.retry_allowed_subjects[1], "jobs.>");
    assert_int_equal(cfg.store_backend, CONFIG_STORE_OPENSEARCH);
    assert_string_equal(cfg.os_url, "https://os1:9200,https://os2:9200");
    assert_true(cfg.os_insecure);
    assert_int_equal(cfg.log_level, CONFIG_LOG_DEBUG);
    assert_int_equal(cfg.log_format, CONFIG_LOG_JSON);
    assert_int_equal(cfg.log_task_lines_per_s, 50);
    assert_int_equal(cfg.limits.max_depth, 1000);
    assert_int_equal(cfg.limits.max_string_len, 16);
    assert_true(cfg.rules_replace_builtin);
    config_destroy(&cfg);
    config_destroy(&def);
    free(text);
}

/* Sets every key to some valid value other than its default. */
static void
mutate_all(struct config *cfg)
{
    static const char *const strings[] = {"x", "nats://other:1", "127.0.0.2:1", "other-index",
                                          "http://other:1/x"};
    struct config def;
    char v[8192], d[8192], err[ERRLEN];
    size_t i, j;

    config_init(&def);
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        bool done = false;
        if (config_get(&def, ki->path, d, sizeof(d)) != SC_OK)
            continue;
        switch (ki->type) {
        case CONFIG_TYPE_BOOL: snprintf(v, sizeof(v), "%s", strcmp(d, "true") ? "true" : "false"); break;
        case CONFIG_TYPE_INT:
            snprintf(v, sizeof(v), "%" PRId64, strtoll(d, NULL, 10) == ki->min ? ki->max : ki->min);
            break;
        case CONFIG_TYPE_DOUBLE: snprintf(v, sizeof(v), "%s", strcmp(d, "1") ? "1" : "0"); break;
        case CONFIG_TYPE_ENUM: snprintf(v, sizeof(v), "%s", ki->names[strcmp(d, ki->names[0]) ? 0 : 1]); break;
        case CONFIG_TYPE_LIST:
            snprintf(v, sizeof(v), "%s",
                     strstr(ki->path, "url")                   ? "http://other:1/x"
                     : strstr(ki->path, "streams")             ? "OTHER"
                     : strstr(ki->path, "retention")           ? "network:exhausted=1d"
                     : strstr(ki->path, "users")               ? "bob:viewer:$6$Kx9sQ2$YkgOJA1zjgBhry8o3iUwaufpVW0b8bwKm1W6Tfz9w857iekMU1xFpfP6MN.ZBWoFaF0sOLeF6TXw.8ME.xchu/"
                     : strcmp(ki->path, "backoff.categories") == 0 ? "network 1s 2m"
                     : strcmp(ki->path, "backoff.subjects") == 0   ? "other.> 1s 2m"
                     : strcmp(ki->path, "priority.subjects") == 0  ? "other.> high"
                                                                   : "other.>");
            break;
        default:
            for (j = 0; j < SC_ARRAY_LEN(strings) && !done; j++) {
                if (strcmp(strings[j], d) != 0 &&
                    config_set(cfg, ki->path, strings[j], err, sizeof(err)) == SC_OK)
                    done = true;
            }
            assert_true(done);
            continue;
        }
        if (config_set(cfg, ki->path, v, err, sizeof(err)) != SC_OK)
            fail_msg("mutate %s=%s: %s", ki->path, v, err);
    }
    assert_int_equal(load_text(cfg, "classifier.rules: [{id: a, pattern: b, category: network}]",
                               err),
                     SC_OK);
    config_destroy(&def);
}

/* The example file loads and sets every key, each to its default. */
static void
test_example_loads(void **state)
{
    struct config cfg, def;
    char err[ERRLEN], *text, *p1, *p2;
    size_t len, i;

    (void)state;
    text = slurp(CONFIG_EXAMPLE, &len);
    config_init(&cfg);
    config_init(&def);
    mutate_all(&cfg);
    if (config_load_yaml(&cfg, text, len, err, sizeof(err)) != SC_OK)
        fail_msg("example: %s", err);
    expect_same(&def, &cfg, false);
    p1 = printed(&def);
    p2 = printed(&cfg);
    assert_string_equal(p1, p2);
    assert_int_equal(cfg.nrules, 0);
    assert_string_equal(cfg.nats_url, "nats://127.0.0.1:4222");
    assert_int_equal(cfg.store_backend, CONFIG_STORE_MEMORY);
    assert_string_equal(cfg.http_listen, "127.0.0.1:9464");
    /* Every key but the deprecated one is documented in the example. */
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        const char *leaf = strrchr(ki->path, '.');
        char pat[128];
        snprintf(pat, sizeof(pat), "%s:", leaf != NULL ? leaf + 1 : ki->path);
        assert_non_null(strstr(text, pat));
    }
    /* Through config_load() too. */
    {
        char arg[1024];
        char *argv[] = {"x", arg, NULL};
        config_destroy(&cfg);
        config_init(&cfg);
        snprintf(arg, sizeof(arg), "--config=%s", CONFIG_EXAMPLE);
        assert_int_equal(config_load(&cfg, 2, argv, NULL, NULL, err, sizeof(err)), SC_OK);
        expect_same(&def, &cfg, false);
    }
    free(p1);
    free(p2);
    free(text);
    config_destroy(&cfg);
    config_destroy(&def);
}

/* The YAML file layer. */

/* templates: a mapping of name to {policy, max_retries, backoff, retry_subject}; print reads back. */
static void
test_templates(void **state)
{
    static const char text[] =
        "templates:\n"
        "  billing:\n"
        "    policy: linear\n"
        "    max_retries: 7\n"
        "    backoff: [1s, 10s, \"1m\", 600000]\n"
        "    retry_subject: dlq.retry.billing\n"
        "    priority: high\n"
        "  quick: {backoff: 100ms 200ms}\n"
        "  empty: {}\n";
    const struct config_template *t;
    struct config cfg, back;
    char err[ERRLEN], *p;

    (void)state;
    config_init(&cfg);
    assert_int_equal(load_text(&cfg, text, err), SC_OK);
    assert_int_equal(cfg.ntemplates, 3);
    t = config_template_find(&cfg, "billing", 7);
    assert_non_null(t);
    assert_true(t->has_policy);
    assert_int_equal(t->policy, POLICY_LINEAR);
    assert_true(t->has_max_retries);
    assert_int_equal(t->max_retries, 7);
    assert_string_equal(t->backoff, "1000,10000,60000,600000");
    assert_string_equal(t->retry_subject, "dlq.retry.billing");
    assert_true(t->has_priority);
    assert_int_equal(t->priority, POLICY_PRIO_HIGH);
    t = config_template_find(&cfg, "quick", 5);
    assert_non_null(t);
    assert_false(t->has_policy || t->has_max_retries);
    assert_string_equal(t->backoff, "100,200");
    assert_null(t->retry_subject);
    t = config_template_find(&cfg, "empty", 5);
    assert_non_null(t);
    assert_null(t->backoff);
    assert_null(config_template_find(&cfg, "Billing", 7));
    assert_null(config_template_find(&cfg, "bill", 4));
    /* --print-config shows them, and what it prints loads back the same */
    p = printed(&cfg);
    assert_non_null(strstr(p, "backoff: [1000, 10000, 60000, 600000]"));
    config_init(&back);
    assert_int_equal(load_text(&back, p, err), SC_OK);
    assert_int_equal(back.ntemplates, 3);
    t = config_template_find(&back, "billing", 7);
    assert_non_null(t);
    assert_int_equal(t->policy, POLICY_LINEAR);
    assert_int_equal(t->max_retries, 7);
    assert_string_equal(t->backoff, "1000,10000,60000,600000");
    assert_string_equal(t->retry_subject, "dlq.retry.billing");
    assert_int_equal(t->priority, POLICY_PRIO_HIGH);
    free(p);
    config_destroy(&back);
    /* file only; null clears */
    assert_int_equal(config_set(&cfg, "templates", "x", err, sizeof(err)), SC_EINVAL);
    assert_string_equal(err, "templates: can only be set in the config file");
    assert_int_equal(load_text(&cfg, "templates:\n", err), SC_OK);
    assert_int_equal(cfg.ntemplates, 0);
    config_destroy(&cfg);
}

/* A bad template stops the load with its name, its key and what is allowed. */
static void
test_templates_bad(void **state)
{
    static const struct {
        const char *text, *err;
    } cases[] = {
        {"templates: {a: {policy: sometimes}}",
         "templates.a.policy: 'sometimes' is not one of never, linear, exponential, immediate"},
        {"templates: {a: {max_retries: 101}}", "templates.a.max_retries: '101' is out of range 0-100"},
        {"templates: {a: {max_retries: -1}}", "templates.a.max_retries: '-1' is out of range 0-100"},
        {"templates: {a: {backoff: [1s, 0]}}", "templates.a.backoff[1]: '0' is out of range 1ms-7d"},
        {"templates: {a: {backoff: [1s, 8d]}}", "templates.a.backoff[1]: '8d' is out of range 1ms-7d"},
        {"templates: {a: {backoff: [soon]}}", "templates.a.backoff[0]: 'soon' is not a delay"},
        {"templates: {a: {backoff: []}}", "templates.a.backoff: empty, give 1-32 delays"},
        {"templates: {a: {backoff: \"1s -1s\"}}", "templates.a.backoff: entry 1: '-1s' is not a delay"},
        {"templates: {a: {backoff: [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}}",
         "templates.a.backoff: more than 32 delays"},
        {"templates: {a: {retry_subject: 'dlq.retry.*'}}",
         "templates.a.retry_subject: 'dlq.retry.*' is not a NATS subject without wildcards"},
        {"templates: {a: {priority: urgent}}", "templates.a.priority: 'urgent' is not one of high, normal, low"},
        {"templates: {a: {colour: red}}", "templates.a.colour: unknown key"},
        {"templates: {a: {policy: linear, policy: never}}", "templates.a.policy: duplicate key"},
        {"templates: {a: {}, a: {}}", "templates.a: duplicate template"},
        {"templates: {'a b': {}}", "templates.a b: the name is not 1-64 characters"},
        {"templates: {a: linear}", "templates.a: expected a mapping {policy, max_retries, backoff, priority, retry_subject}"},
        {"templates: [a]", "templates: expected a single value, not a list"},
        {"templates: x", "templates: expected a mapping of name"},
    };
    char err[ERRLEN];

    (void)state;
    for (size_t i = 0; i < SC_ARRAY_LEN(cases); i++) {
        struct config cfg;
        config_init(&cfg);
        assert_int_equal(load_text(&cfg, cases[i].text, err), SC_EINVAL);
        if (!strstr(err, cases[i].err))
            fail_msg("%s: want '%s' in '%s'", cases[i].text, cases[i].err, err);
        config_destroy(&cfg);
    }
}

static void
test_rules(void **state)
{
    static const char text[] =
        "classifier:\n"
        "  replace_builtin: yes\n"
        "  rules:\n"
        "    - id: card-declined\n"
        "      pattern: 'card declined'\n"
        "      category: permanent\n"
        "    - {id: busy, pattern: \"\\\\bbusy\\\\b\", category: TRANSIENT, field: error}\n"
        "    - id: t\n"
        "      field: Error_Type\n" /* names of values: any ASCII case */
        "      category: network\n"
        "      pattern: ETIMEDOUT\n";
    struct config cfg;
    char err[ERRLEN];

    (void)state;
    config_init(&cfg);
    assert_int_equal(load_text(&cfg, text, err), SC_OK);
    assert_true(cfg.rules_replace_builtin);
    assert_int_equal(cfg.nrules, 3);
    assert_string_equal(cfg.rules[0].id, "card-declined");
    assert_string_equal(cfg.rules[0].pattern, "card declined");
    assert_int_equal(cfg.rules[0].category, POLICY_CAT_PERMANENT);
    assert_int_equal(cfg.rules[0].field, POLICY_MATCH_ANY);
    assert_string_equal(cfg.rules[1].id, "busy");
    assert_string_equal(cfg.rules[1].pattern, "\\bbusy\\b");
    assert_int_equal(cfg.rules[1].category, POLICY_CAT_TRANSIENT);
    assert_int_equal(cfg.rules[1].field, POLICY_MATCH_ERROR);
    assert_int_equal(cfg.rules[2].category, POLICY_CAT_NETWORK);
    assert_int_equal(cfg.rules[2].field, POLICY_MATCH_ERROR_TYPE);
    /* A later file replaces the rules; null or [] clears them. */
    assert_int_equal(load_text(&cfg, "classifier.rules: [{id: z, pattern: z, category: resource}]", err), SC_OK);
    assert_int_equal(cfg.nrules, 1);
    assert_int_equal(load_text(&cfg, "classifier.rules:\n", err), SC_OK);
    assert_int_equal(cfg.nrules, 0);
    assert_null(cfg.rules);
    config_destroy(&cfg);
}

static void
test_rules_bad(void **state)
{
    static const struct {
        const char *text, *err;
    } cases[] = {
        {"classifier.rules: [{id: a, category: network}]", "line 1: classifier.rules[0]: missing pattern"},
        {"classifier.rules: [{pattern: a, category: network}]", "classifier.rules[0]: missing id"},
        {"classifier.rules: [{id: a, pattern: a}]", "classifier.rules[0]: missing category"},
        {"classifier.rules:\n  - {id: a, pattern: a, category: network}\n  - {id: b, pattern: b, category: flaky}",
         "line 3: classifier.rules[1].category: 'flaky' is not one of transient, network, resource, "
         "permission, validation, permanent"},
        {"classifier.rules: [{id: a, pattern: a, category: network, field: body}]",
         "classifier.rules[0].field: 'body' is not one of any, error, error_type"},
        {"classifier.rules: [{id: a, pattern: a, category: network, weight: 3}]",
         "classifier.rules[0].weight: unknown key"},
        {"classifier.rules: [{id: a, id: b, pattern: a, category: network}]",
         "classifier.rules[0].id: duplicate key"},
        {"classifier.rules: [{id: a, pattern: a, category: network}, {id: a, pattern: b, category: network}]",
         "classifier.rules[1].id: 'a' is already used by rule 0"},
        {"classifier.rules: [{id: 'a b', pattern: a, category: network}]",
         "classifier.rules[0].id: 'a b' is not 1-64 characters"},
        {"classifier.rules: [{id: '', pattern: a, category: network}]", "is not 1-64 characters"},
        {"classifier.rules: [{id: a, pattern: '', category: network}]", "classifier.rules[0].pattern: empty"},
        {"classifier.rules: [{id: a, pattern: \"\\t\", category: network}]", "control characters"},
        {"classifier.rules: [{id: a, pattern: [x], category: network}]", "classifier.rules[0].pattern: expected text"},
        {"classifier.rules: [{id: a, pattern: {x: 1}, category: network}]", "expected text"},
        {"classifier.rules: [a, b]", "classifier.rules[0]: expected a mapping"},
        {"classifier.rules: [[a]]", "classifier.rules[0]: expected a mapping"},
        {"classifier.rules: nope", "classifier.rules: expected a sequence of rules"},
        {"classifier.rules: {id: a}", "classifier.rules: expected a sequence of rules"},
        {"classifier: {rules: [], rules: []}", "classifier.rules: duplicate key"},
    };
    struct config cfg;
    char err[ERRLEN];
    size_t i;

    (void)state;
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        config_init(&cfg);
        if (load_text(&cfg, cases[i].text, err) != SC_EINVAL)
            fail_msg("accepted: %s", cases[i].text);
        expect_err_contains(err, cases[i].err);
        config_destroy(&cfg);
    }
}

/* More than 1000 rules or list entries are refused. */
static void
test_yaml_list_caps(void **state)
{
    struct config cfg;
    char err[ERRLEN], *text = malloc(200000);
    size_t o, i;

    (void)state;
    assert_non_null(text);
    for (int n = 1000; n <= 1001; n++) {
        o = (size_t)sprintf(text, "classifier.rules:\n");
        for (i = 0; i < (size_t)n; i++)
            o += (size_t)sprintf(text + o, "- {id: r%zu, pattern: p, category: network}\n", i);
        config_init(&cfg);
        assert_int_equal(load_text(&cfg, text, err), n == 1000 ? SC_OK : SC_EINVAL);
        if (n == 1000)
            assert_int_equal(cfg.nrules, 1000);
        else
            expect_err_contains(err, "classifier.rules: more than 1000 rules");
        config_destroy(&cfg);

        o = (size_t)sprintf(text, "retry.allowed_subjects:\n");
        for (i = 0; i < (size_t)n; i++)
            o += (size_t)sprintf(text + o, "- s%zu.>\n", i);
        config_init(&cfg);
        assert_int_equal(load_text(&cfg, text, err), n == 1000 ? SC_OK : SC_EINVAL);
        if (n == 1000) {
            assert_int_equal(cfg.retry_allowed_count, 1000);
            assert_string_equal(cfg.retry_allowed_subjects[999], "s999.>");
            assert_null(cfg.retry_allowed_subjects[1000]);
        } else {
            expect_err_contains(err, "retry.allowed_subjects: more than 1000 entries");
        }
        config_destroy(&cfg);
    }
    free(text);
}

static void
test_yaml_forms(void **state)
{
    struct config cfg;
    char err[ERRLEN];

    (void)state;
    config_init(&cfg);
    /* Empty documents and empty sections are fine. */
    assert_int_equal(load_text(&cfg, "", err), SC_OK);
    assert_int_equal(load_text(&cfg, "---\n", err), SC_OK);
    assert_int_equal(load_text(&cfg, "# nothing\n", err), SC_OK);
    assert_int_equal(load_text(&cfg, "~\n", err), SC_OK);
    assert_int_equal(load_text(&cfg, "nats:\nstore:\n  opensearch:\n", err), SC_OK);
    assert_int_equal(load_text(&cfg, "{}", err), SC_OK);
    /* Nested, dotted and mixed. */
    assert_int_equal(load_text(&cfg, "nats: {url: 'nats://n:1'}\n", err), SC_OK);
    assert_string_equal(cfg.nats_url, "nats://n:1");
    assert_int_equal(load_text(&cfg, "nats.url: nats://d:2\n", err), SC_OK);
    assert_string_equal(cfg.nats_url, "nats://d:2");
    assert_int_equal(load_text(&cfg, "store:\n  opensearch.flush_ms: 9\nstore.opensearch:\n  bulk_max_docs: 8\n", err), SC_OK);
    assert_int_equal(cfg.os_flush_ms, 9);
    assert_int_equal(cfg.os_bulk_max_docs, 8);
    /* Null string values mean empty; quoted "null" is text. */
    assert_int_equal(load_text(&cfg, "nats.user: alice\n", err), SC_OK);
    assert_int_equal(load_text(&cfg, "nats.user:\n", err), SC_OK);
    assert_string_equal(cfg.nats_user, "");
    assert_int_equal(load_text(&cfg, "nats.user: ~\nnats.token: \"null\"\n", err), SC_OK);
    assert_string_equal(cfg.nats_user, "");
    assert_string_equal(cfg.nats_token, "null");
    /* Lists: a sequence, a comma-separated scalar, or null/[] for empty. */
    assert_int_equal(load_text(&cfg, "retry:\n  allowed_subjects:\n    - a.>\n    - b.*\n", err), SC_OK);
    assert_int_equal(cfg.retry_allowed_count, 2);
    assert_int_equal(load_text(&cfg, "retry.allowed_subjects: 'x.>, y.>, z'\n", err), SC_OK);
    assert_int_equal(cfg.retry_allowed_count, 3);
    assert_string_equal(cfg.retry_allowed_subjects[1], "y.>");
    assert_int_equal(load_text(&cfg, "retry.allowed_subjects: []\n", err), SC_OK);
    assert_int_equal(cfg.retry_allowed_count, 0);
    assert_non_null(cfg.retry_allowed_subjects);
    assert_null(cfg.retry_allowed_subjects[0]);
    assert_int_equal(load_text(&cfg, "retry.allowed_subjects:\n", err), SC_OK);
    assert_int_equal(cfg.retry_allowed_count, 0);
    /* YAML scalars are read as text: quoted numbers and booleans work. */
    assert_int_equal(load_text(&cfg, "max_size: '150'\nenabled: \"off\"\n", err), SC_OK);
    assert_int_equal(cfg.max_size, 150);
    assert_false(cfg.enabled);
    /* Anchors without aliases are harmless. */
    assert_int_equal(load_text(&cfg, "nats: &n {name: a}\n", err), SC_OK);
    /* Windows line ends and a BOM. */
    assert_int_equal(load_text(&cfg, "\xef\xbb\xbfmax_size: 160\r\ntimer.tick_ms: 3\r\n", err), SC_OK);
    assert_int_equal(cfg.max_size, 160);
    assert_int_equal(cfg.timer_tick_ms, 3);
    config_destroy(&cfg);
}

static void
test_yaml_refused(void **state)
{
    static const struct {
        const char *text, *err;
    } cases[] = {
        {"nats:\n  urll: x\n", "line 2: nats.urll: unknown key"},
        {"nats.urll: x\n", "line 1: nats.urll: unknown key"},
        {"enabled: true\nbogus: 1\n", "line 2: bogus: unknown key"},
        {"bogus: {a: 1}\n", "line 1: bogus: unknown key"},
        {"bogus: [1]\n", "line 1: bogus: unknown key"},
        {"nats: {url: {x: 1}}\n", "nats.url: expected a single value, not a mapping"},
        {"nats: {url: [a]}\n", "nats.url: expected a single value, not a list"},
        {"nats: 5\n", "line 1: nats: expected a mapping of keys"},
        {"nats: [a]\n", "nats: expected a mapping of keys"},
        {"retry.allowed_subjects: {a: b}\n", "retry.allowed_subjects: expected a list"},
        {"retry.allowed_subjects: [[a]]\n", "entries must be text, not lists"},
        {"retry.allowed_subjects: [{a: b}]\n", "entries must be text, not mappings"},
        {"retry.allowed_subjects: ['a b']\n", "retry.allowed_subjects: 'a b' is not a NATS subject pattern"},
        {"retry.allowed_subjects: ['']\n", "retry.allowed_subjects: an entry is empty"},
        {"nats.url: a\nnats:\n  url: b\n", "line 3: nats.url: duplicate key"},
        {"max_size: 1\n", "line 1: max_size: 1 is out of range 100-10000000"},
        {"\n\nbackoff:\n  jitter: 1.5\n", "line 4: backoff.jitter: 1.5 is out of range 0-1"},
        {"log: {level: loud}\n", "log.level: 'loud' is not one of debug, info, warn, error"},
        {"enabled: maybe\n", "enabled: 'maybe' is not a boolean (true/false)"},
        {"max_size:\n", "max_size: '' is not an integer"},
        {"hello\n", "line 1: the top level must be a mapping of keys"},
        {"- a\n- b\n", "line 1: the top level must be a mapping of keys"},
        {"? [a]\n: b\n", "mapping keys must be plain text"},
        {"{[a]: b}\n", "mapping keys must be plain text"},
        {"max_size: 200\n---\nmax_size: 300\n", "line 2: only one YAML document is allowed"},
        {"nats: {url: &u 'nats://x:1'}\nnats.name: *u\n", "line 2: aliases (*name) are not supported"},
        {"\"\": 1\n", "line 1: : unknown key"},
        {"\"nats\\0url\": x\n", "unknown key"},
        {"nats.name: \"a\\0b\"\n", "nats.name: 'a\\x00b' contains control characters"},
        {"nats.name: \"a\\u0001\"\n", "contains control characters"},
    };
    struct config cfg;
    char err[ERRLEN];
    size_t i;

    (void)state;
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        config_init(&cfg);
        err[0] = '\0';
        if (load_text(&cfg, cases[i].text, err) != SC_EINVAL)
            fail_msg("accepted: %s", cases[i].text);
        expect_err_contains(err, cases[i].err);
        assert_null(strchr(err, '\n'));
        config_destroy(&cfg);
    }
}

/* Malformed YAML: the parser's message with the line it stopped at. */
static void
test_yaml_malformed(void **state)
{
    static const struct {
        const char *text;
        size_t len; /* 0: strlen */
        const char *prefix;
    } cases[] = {
        {"retry:\n  allowed_subjects: ['a.>', 'b.>'\nmax_size: 5\n", 0, "line 3: "},
        {"max_size: 200\nnats:\n  url: \"unterminated\n", 0, "line 4: found unexpected end of stream"},
        {"nats:\n  url: a\n name: b\n", 0, "line 3: did not find expected key"},
        {"nats:\n\turl: x\n", 0, "line 2: "},
        {"max_size: 200\nnats:\n  url: a: b\n", 0, "line 3: mapping values are not allowed"},
        {"enabled: true\nnats: {url: x\n", 0, "line 3: "},
        {"max_size: 200\nlog: {level: info]\n", 0, "line 2: did not find expected ',' or '}'"},
        {"enabled: true\nmax_size: 5\xff\n", 0, "line 2: "},
        {"enabled: true\n\nmax_size: 5\0\n", 27, "line 3: "},
        {"%YAML 9.9\n---\na: 1\n", 0, "line 1: "},
        {"a: !<tag\n", 0, "line 1: "},
    };
    struct config cfg;
    char err[ERRLEN];
    size_t i;

    (void)state;
    for (i = 0; i < SC_ARRAY_LEN(cases); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        config_init(&cfg);
        err[0] = '\0';
        assert_int_equal(config_load_yaml(&cfg, cases[i].text, len, err, sizeof(err)), SC_EINVAL);
        if (strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) != 0)
            fail_msg("case %zu: '%s' does not start with '%s'", i, err, cases[i].prefix);
        assert_true(strlen(err) > strlen(cases[i].prefix) + 5);
        config_destroy(&cfg);
    }
    /* With a file, the message starts with its name. */
    {
        char *path = temp_file("max_size: 200\nlog: {level: info\n");
        char *argv[] = {"x", "--config", path, NULL};
        char want[300];
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 3, argv, NULL, NULL, err, sizeof(err)), SC_EINVAL);
        snprintf(want, sizeof(want), "%s:3: ", path);
        if (strncmp(err, want, strlen(want)) != 0)
            fail_msg("'%s' does not start with '%s'", err, want);
        config_destroy(&cfg);
        unlink(path);
        free(path);
    }
}

/* Hostile documents: deep nesting, alias bombs, huge input. All refused quickly. */
static void
test_yaml_hostile(void **state)
{
    static const char laughs[] =
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    struct config cfg;
    char err[ERRLEN], *big;
    size_t n = 200000, i;

    (void)state;
    config_init(&cfg);
    assert_int_equal(load_text(&cfg, laughs, err), SC_EINVAL);
    assert_int_equal(load_text(&cfg, "retry.allowed_subjects: &x [a]\nnats: {url: *x}\n", err),
                     SC_EINVAL);
    big = malloc(CONFIG_MAX_FILE_BYTES + 2);
    assert_non_null(big);
    /* Deep flow nesting at the top and inside a list. */
    memset(big, '[', n);
    assert_int_equal(config_load_yaml(&cfg, big, n, err, sizeof(err)), SC_EINVAL);
    memcpy(big, "retry.allowed_subjects: ", 24);
    assert_int_equal(config_load_yaml(&cfg, big, n, err, sizeof(err)), SC_EINVAL);
    memset(big, '{', n);
    assert_int_equal(config_load_yaml(&cfg, big, n, err, sizeof(err)), SC_EINVAL);
    /* Deep block nesting of known sections is bounded too. */
    for (i = 0; i < 40; i++)
        memcpy(big + 6 * i, "nats: ", 6); /* NOLINT(bugprone-not-null-terminated-result): a prefix */
    big[240] = 'x';
    assert_int_equal(config_load_yaml(&cfg, big, 241, err, sizeof(err)), SC_EINVAL);
    /* Larger than 1 MiB. */
    memset(big, ' ', CONFIG_MAX_FILE_BYTES + 1);
    assert_int_equal(config_load_yaml(&cfg, big, CONFIG_MAX_FILE_BYTES + 1, err, sizeof(err)),
                     SC_EINVAL);
    expect_err_contains(err, "larger than 1048576 bytes");
    assert_int_equal(config_load_yaml(&cfg, big, CONFIG_MAX_FILE_BYTES, err, sizeof(err)), SC_OK);
    /* Many keys of one section (each known key once; repeats of sections are fine). */
    for (i = 0, n = 0; n + 16 < CONFIG_MAX_FILE_BYTES; i++)
        n += (size_t)sprintf(big + n, "nats: {}\n");
    assert_int_equal(config_load_yaml(&cfg, big, n, err, sizeof(err)), SC_OK);
    /* The config still works. */
    assert_int_equal(config_set(&cfg, "max_size", "300", err, sizeof(err)), SC_OK);
    free(big);
    config_destroy(&cfg);
}

/* A file that fails halfway leaves a destroyable config holding what came before. */
static void
test_partial(void **state)
{
    struct config cfg;
    char err[ERRLEN];

    (void)state;
    config_init(&cfg);
    assert_int_equal(load_text(&cfg,
                               "max_size: 300\n"
                               "retry.allowed_subjects: [a.>, b.>, 'bad one']\n"
                               "classifier.rules: [{id: a, pattern: p, category: network}, {id: b}]\n",
                               err),
                     SC_EINVAL);
    assert_int_equal(cfg.max_size, 300);
    assert_int_equal(cfg.retry_allowed_count, 1);
    assert_string_equal(cfg.retry_allowed_subjects[0], "dlq.retry.>");
    config_destroy(&cfg);
    config_init(&cfg);
    assert_int_equal(load_text(&cfg,
                               "classifier.rules: [{id: a, pattern: p, category: network}, {id: b}]\n",
                               err),
                     SC_EINVAL);
    assert_int_equal(cfg.nrules, 0);
    config_destroy(&cfg);
}

/* The deprecated key: accepted in all layers with a range, flagged, never printed. */
static void
test_deprecated(void **state)
{
    struct config cfg;
    char err[ERRLEN], *out;

    (void)state;
    config_init(&cfg);
    assert_int_equal(load_text(&cfg, "retry_interval_seconds: 60\n", err), SC_OK);
    assert_true(cfg.saw_retry_interval_seconds);
    out = printed(&cfg);
    assert_null(strstr(out, "retry_interval_seconds"));
    free(out);
    assert_int_equal(config_get(&cfg, "retry_interval_seconds", err, sizeof(err)), SC_EINVAL);
    config_destroy(&cfg);

    config_init(&cfg);
    assert_int_equal(load_text(&cfg, "retry_interval_seconds: soon\n", err), SC_EINVAL);
    expect_err_contains(err, "retry_interval_seconds: 'soon' is not an integer");
    assert_false(cfg.saw_retry_interval_seconds);
    config_destroy(&cfg);

    {
        char *argv[] = {"x", NULL};
        char *envp[] = {"DLQ_RETRY_INTERVAL_SECONDS=30", NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 1, argv, envp, NULL, err, sizeof(err)), SC_OK);
        assert_true(cfg.saw_retry_interval_seconds);
        config_destroy(&cfg);
    }
    {
        char *argv[] = {"x", "--retry_interval_seconds=5", NULL};
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, 2, argv, NULL, NULL, err, sizeof(err)), SC_OK);
        assert_true(cfg.saw_retry_interval_seconds);
        config_destroy(&cfg);
    }
    assert_true(config_key_find("retry_interval_seconds")->deprecated);
}

/* config_get() edge cases. */
static void
test_get(void **state)
{
    struct config cfg;
    char out[8];

    (void)state;
    config_init(&cfg);
    assert_int_equal(config_get(&cfg, "nope", out, sizeof(out)), SC_ENOTFOUND);
    assert_int_equal(config_get(&cfg, "classifier.rules", out, sizeof(out)), SC_EINVAL);
    assert_int_equal(config_get(&cfg, "nats.url", out, sizeof(out)), SC_ETOOBIG);
    assert_string_equal(out, "nats://");
    assert_int_equal(config_get(&cfg, "max_size", out, 6), SC_OK);
    assert_string_equal(out, "10000");
    assert_int_equal(config_get(&cfg, "max_size", out, 5), SC_ETOOBIG);
    assert_int_equal(config_set(&cfg, "backoff.jitter", "-0", NULL, 0), SC_OK);
    expect_get(&cfg, "backoff.jitter", "0");
    /* A field the sidecar set to a value no name stands for reads "unknown", never past the names. */
    cfg.log_level = (config_log_level)42;
    expect_get(&cfg, "log.level", "unknown");
    config_destroy(&cfg);
}

/* --help lists every key with its flag, env name, range and default. */
static void
test_usage(void **state)
{
    char *buf = NULL, env[200], flag[200];
    size_t len = 0, i;
    FILE *f = open_memstream(&buf, &len);

    (void)state;
    assert_non_null(f);
    config_usage(f, "dlq-sidecar");
    fclose(f);
    assert_non_null(strstr(buf, "Usage: dlq-sidecar"));
    assert_non_null(strstr(buf, "--print-config"));
    assert_non_null(strstr(buf, "DLQ_CONFIG"));
    assert_non_null(strstr(buf, "100-10000000 (default 10000)"));
    assert_non_null(strstr(buf, "one of reply, none, stored (default reply)"));
    assert_non_null(strstr(buf, "0-1 (default 0.1)"));
    for (i = 0; i < config_key_count(); i++) {
        const struct config_key_info *ki = config_key_get(i);
        snprintf(flag, sizeof(flag), ki->file_only ? "\n  %s (file only)\n" : "\n  --%s ", ki->path);
        assert_non_null(strstr(buf, flag));
        assert_non_null(strstr(buf, ki->help));
        if (!ki->file_only) {
            config_env_name(ki->path, env, sizeof(env));
            assert_non_null(strstr(buf, env));
        }
    }
    /* No line ends in a space (the print too). */
    assert_null(strstr(buf, " \n"));
    free(buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_defaults_valid),
        cmocka_unit_test(test_key_table),
        cmocka_unit_test(test_enum_names_match_policy),
        cmocka_unit_test(test_enum_names_are_policys),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_config_env_file),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_good_values),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_long_values),
        cmocka_unit_test(test_int_ranges),
        cmocka_unit_test(test_enum_values),
        cmocka_unit_test(test_secrets_masked),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_url_passwords_masked),
        cmocka_unit_test(test_print_roundtrip),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_example_loads),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_rules_bad),
        cmocka_unit_test(test_yaml_list_caps),
        cmocka_unit_test(test_yaml_forms),
        cmocka_unit_test(test_yaml_refused),
        cmocka_unit_test(test_yaml_malformed),
        cmocka_unit_test(test_yaml_hostile),
        cmocka_unit_test(test_partial),
        cmocka_unit_test(test_deprecated),
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_templates_bad),
        cmocka_unit_test(test_usage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
