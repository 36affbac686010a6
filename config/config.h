/* config.h - the sidecar's configuration: defaults, YAML file, DLQ_* environment, flags, validation. */
#ifndef DLQ_CONFIG_H
#define DLQ_CONFIG_H

#include <stdio.h>

#include "codec.h"
#include "common.h"
#include "policy.h"

/* One classifier rule from `classifier.rules` (strings owned by the config). */
struct config_rule {
    char *id;
    char *pattern;
    policy_category category;
    policy_match_field field;
};

/*
 * One retry template from `templates` (file only; issue 17): the retry
 * configuration an envelope naming it gets for each field the envelope does
 * not give itself. Strings owned by the config.
 */
struct config_template {
    char *name;          /* 1-64 characters of A-Z a-z 0-9 _ . -, unique */
    bool has_policy;
    policy_retry policy; /* policy: never, linear, exponential, immediate */
    bool has_max_retries;
    int max_retries;     /* max_retries: 0-100 */
    char *backoff;       /* backoff: delays as policy_delays_format() writes them; NULL: none */
    bool has_priority;
    policy_priority priority; /* priority: high, normal, low */
    char *retry_subject; /* retry_subject: a NATS subject without wildcards; NULL: none */
};

/* Most templates the file may name. */
#define CONFIG_MAX_TEMPLATES 256

/* retry.outcome: reply (the worker answers), none (a publish is a success), stored (a JetStream PubAck is). */
typedef enum { CONFIG_OUTCOME_REPLY = 0, CONFIG_OUTCOME_NONE, CONFIG_OUTCOME_STORED } config_outcome;
typedef enum { CONFIG_STORE_MEMORY = 0, CONFIG_STORE_OPENSEARCH, CONFIG_STORE_JETSTREAM } config_store;
/* config_store_name() returns the name store.backend gives s ("memory", "opensearch"; static), "unknown" outside the enum. Any thread. */
const char *config_store_name(config_store s);
/* store.ack: what an ingest answer waits for (README "Acknowledgements"). */
typedef enum { CONFIG_ACK_ACCEPTED = 0, CONFIG_ACK_DURABLE } config_store_ack;
/* ingest.mode: core (a queue-group subscription) or jetstream (the DLQ_FAILED stream, DESIGN section 16). */
typedef enum { CONFIG_INGEST_CORE = 0, CONFIG_INGEST_JETSTREAM } config_ingest_mode;
/* ingest.stream_storage: where the stream keeps its messages. */
typedef enum { CONFIG_STORAGE_FILE = 0, CONFIG_STORAGE_MEMORY } config_storage;
typedef enum { CONFIG_LOG_DEBUG = 0, CONFIG_LOG_INFO, CONFIG_LOG_WARN, CONFIG_LOG_ERROR } config_log_level;
typedef enum { CONFIG_LOG_LOGFMT = 0, CONFIG_LOG_JSON } config_log_format;

/*
 * The effective configuration. Its layout is public: the sidecar reads the
 * fields directly. Every char * is owned by the struct (NUL-terminated, never
 * NULL; "" when empty) and freed by config_destroy(). Times are integer ms.
 * Key names in comments are the YAML paths (env: DLQ_ + upper case, '.' -> '_').
 */
struct config {
    bool enabled;                  /* enabled */
    /* nats.* */
    char *nats_url;                /* nats.url, comma-separated */
    char *nats_name;               /* nats.name, connection name, default "dlq-sidecar" */
    char *nats_user;               /* nats.user */
    char *nats_password;           /* nats.password (secret) */
    char *nats_token;              /* nats.token (secret) */
    char *nats_creds_file;         /* nats.creds_file */
    char *nats_nkey_seed_file;     /* nats.nkey_seed_file */
    char *nats_nkey;               /* nats.nkey: the public user nkey that goes with the seed file */
    char *nats_tls_ca;             /* nats.tls_ca */
    char *nats_tls_cert;           /* nats.tls_cert */
    char *nats_tls_key;            /* nats.tls_key */
    int64_t nats_reconnect_wait_ms; /* nats.reconnect_wait_ms, 10-60000, default 2000 */
    char *nats_inbox_prefix;       /* nats.inbox_prefix, default "_INBOX" (CONFIG_INBOX_PREFIX_MAX bytes at most) */
    /* subjects.* */
    char *subjects_prefix;         /* subjects.prefix, one NATS token, default "dlq" */
    char *subjects_queue_group;    /* subjects.queue_group, default "dlq-sidecar" */
    /* ingest.* (DESIGN section 16) */
    config_ingest_mode ingest_mode; /* ingest.mode: core (default) or jetstream */
    char *ingest_stream;           /* ingest.stream, default "DLQ_FAILED" */
    int64_t ingest_stream_replicas; /* ingest.stream_replicas, 1-5, default 1 */
    config_storage ingest_stream_storage; /* ingest.stream_storage: file (default) or memory */
    int64_t ingest_stream_max_age_s; /* ingest.stream_max_age_s, 0 (no limit)-3,153,600,000 */
    int64_t ingest_stream_max_bytes; /* ingest.stream_max_bytes, 0 (no limit)-1 PiB */
    char *ingest_consumer;         /* ingest.consumer, the durable pull consumer, default "dlq-sidecar" */
    int64_t ingest_max_ack_pending; /* ingest.max_ack_pending, 1-1,000,000, default 10000 */
    int64_t ingest_ack_wait_ms;    /* ingest.ack_wait_ms, 1000-3,600,000, default 30000 */
    int64_t ingest_fetch_batch;    /* ingest.fetch_batch, 1-10,000, default 256 */
    int64_t ingest_nak_delay_ms;   /* ingest.nak_delay_ms, 10-3,600,000, default 1000 */
    /* advisories.* (DESIGN section 16): JetStream advisories as a second source of failures */
    char **advisories_streams;     /* advisories.streams: NULL-terminated stream names; empty: off */
    size_t advisories_count;
    char *advisories_stream;       /* advisories.stream, the capture stream, default "DLQ_ADVISORIES" */
    char *advisories_consumer;     /* advisories.consumer, default "dlq-sidecar-advisories" */
    /* cluster.* (DESIGN section 18, docs/cluster.md): partitions owned through leases */
    bool cluster_enabled;          /* cluster.enabled, default false */
    int64_t cluster_partitions;    /* cluster.partitions, 1-4096, default 32 (fixed for a deployment) */
    int64_t cluster_lease_ms;      /* cluster.lease_ms, 1000-600,000, default 10000 */
    char *cluster_bucket;          /* cluster.bucket, the lease KV bucket, default "DLQ_CLUSTER" */
    int64_t cluster_replicas;      /* cluster.replicas, 1-5, default 1 */
    char *cluster_member_id;       /* cluster.member_id: "" = <hostname>-<pid>-<random> */
    /* strategy and queue */
    policy_strategy strategy;      /* strategy */
    int64_t max_size;              /* max_size, 100-10,000,000 */
    int64_t max_bytes;             /* max_bytes: stored task bytes, 1 MiB-1 TiB, default 1 GiB */
    bool has_default_retry_policy; /* default_retry_policy set (else per category) */
    policy_retry default_retry_policy;
    int default_max_retries;       /* default_max_retries, 0-100, default 3 */
    bool retry_processor_enabled;  /* retry_processor_enabled */
    int64_t history_max;           /* history.max_entries, 1-1000, default 20 */
    struct policy_backoff backoff; /* backoff.* */
    char **backoff_categories;     /* backoff.categories: NULL-terminated "<category> <delay> ..." */
    size_t backoff_categories_count;
    char **backoff_subjects;       /* backoff.subjects: NULL-terminated "<pattern> <delay> ..." */
    size_t backoff_subjects_count;
    char **priority_subjects;      /* priority.subjects: NULL-terminated "<pattern> <priority>" */
    size_t priority_subjects_count;
    /* retry.* */
    int64_t retry_timeout_ms;      /* retry.timeout_ms, 10-3,600,000 */
    config_outcome retry_outcome;  /* retry.outcome */
    char *retry_subject_template;  /* retry.subject_template, "{service}" is replaced */
    char **retry_allowed_subjects; /* retry.allowed_subjects: NULL-terminated array */
    size_t retry_allowed_count;
    char **retry_stored_subjects;  /* retry.stored_subjects: NULL-terminated; these use outcome stored */
    size_t retry_stored_count;
    int64_t retry_max_in_flight;   /* retry.max_in_flight, 1-1,000,000 */
    int64_t retry_max_per_second;  /* retry.max_per_second, 1-10,000,000 */
    int64_t circuit_breaker_failures;    /* circuit_breaker.failures, 0 (off)-1,000,000, default 0 */
    int64_t circuit_breaker_cooldown_ms; /* circuit_breaker.cooldown_ms, 100-86,400,000, default 30000 */
    int64_t timer_tick_ms;         /* timer.tick_ms, 1-1000 */
    /* store.* */
    config_store store_backend;    /* store.backend */
    bool store_keep_completed;     /* store.keep_completed */
    int64_t store_journal_max;     /* store.journal_max, 1000-10,000,000, default 100000 */
    config_store_ack store_ack;    /* store.ack: accepted (default) or durable */
    char *store_spill_dir;         /* store.spill_dir: "" (no spill file) or a directory */
    int64_t store_spill_max_bytes; /* store.spill_max_bytes, 1 MiB-1 TiB, default 256 MiB */
    char *os_url;                  /* store.opensearch.url */
    char *os_index;                /* store.opensearch.index */
    char *os_username;             /* store.opensearch.username */
    char *os_password;             /* store.opensearch.password (secret) */
    char *os_ca_file;              /* store.opensearch.ca_file */
    bool os_insecure;              /* store.opensearch.insecure */
    int64_t os_bulk_max_docs;      /* store.opensearch.bulk_max_docs, 1-100,000 */
    int64_t os_bulk_max_bytes;     /* store.opensearch.bulk_max_bytes, 1024-104,857,600 */
    int64_t os_flush_ms;           /* store.opensearch.flush_ms, 1-60,000 */
    char *kv_bucket;               /* store.jetstream.bucket, default "DLQ_TASKS" */
    int64_t kv_replicas;           /* store.jetstream.replicas, 1-5, default 1 */
    config_storage kv_storage;     /* store.jetstream.storage: file (default) or memory */
    int64_t kv_batch_max;          /* store.jetstream.batch_max, 1-100,000, default 1000 */
    int64_t kv_flush_ms;           /* store.jetstream.flush_ms, 1-60,000, default 20 */
    int64_t kv_timeout_ms;         /* store.jetstream.timeout_ms, 100-600,000, default 5000 */
    /* events, http, log, shutdown */
    bool events_enabled;           /* events.enabled */
    char *http_listen;             /* http.listen, "host:port" or "" */
    int64_t http_max_connections;  /* http.max_connections, 1-65536, default 64 */
    int64_t http_request_timeout_ms; /* http.request_timeout_ms, 100-600,000, default 10000 */
    char *http_auth_operator_token; /* http.auth.operator_token (secret): every admin API verb; "" none */
    char *http_auth_viewer_token;   /* http.auth.viewer_token (secret): the admin API's reads; "" none */
    char **http_auth_users;        /* http.auth.users: NULL-terminated "name:role:crypt-hash" entries */
    size_t http_auth_users_count;
    int64_t audit_keep;            /* audit.keep, 0-100,000, default 1000: audit records kept in memory */
    config_log_level log_level;    /* log.level */
    config_log_format log_format;  /* log.format */
    int64_t log_task_lines_per_s;  /* log.task_lines_per_s */
    /* alerts.* (sidecar/alerts.c) */
    bool alerts_enabled;           /* alerts.enabled */
    int64_t alerts_check_interval_ms; /* alerts.check_interval_ms, 10-3,600,000, default 5000 */
    double alerts_utilization_percent; /* alerts.utilization_percent, 0-100, default 80 */
    int64_t alerts_exhausted_count; /* alerts.exhausted_count, 0-10,000,000, default 100 */
    double alerts_success_rate;    /* alerts.success_rate, 0-1: fires below it, default 0.5 */
    int64_t alerts_window_s;       /* alerts.window_s, 1-604,800, default 300 */
    int64_t alerts_min_retries;    /* alerts.min_retries, 1-1,000,000, default 10 */
    int64_t alerts_no_workers_after_s; /* alerts.no_workers_after_s, 1-604,800, default 60 */
    char **alerts_webhook_urls;    /* alerts.webhook_urls: NULL-terminated array of http(s) URLs */
    size_t alerts_webhook_count;
    int64_t alerts_webhook_timeout_ms; /* alerts.webhook_timeout_ms, 100-300,000, default 5000 */
    int64_t alerts_webhook_retries; /* alerts.webhook_retries, 0-20, default 5 */
    int64_t alerts_webhook_backoff_ms; /* alerts.webhook_backoff_ms, 10-600,000, default 1000 */
    char *alerts_slack_url;        /* alerts.slack.url: "" or a Slack incoming-webhook URL (secret) */
    char *alerts_pagerduty_url;    /* alerts.pagerduty.url: the Events API v2 enqueue URL */
    char *alerts_pagerduty_routing_key; /* alerts.pagerduty.routing_key: "" (off) or the key (secret) */
    char *alerts_opsgenie_url;     /* alerts.opsgenie.url: the Alert API's base URL */
    char *alerts_opsgenie_api_key; /* alerts.opsgenie.api_key: "" (off) or the GenieKey (secret) */
    /* retention.* (dlq/machine.c's sweep); 0: kept until an operator acts */
    int64_t retention_exhausted_s; /* retention.exhausted_s, 0-315,360,000: then archived */
    int64_t retention_completed_s; /* retention.completed_s, 0-315,360,000: then removed */
    int64_t retention_archived_s;  /* retention.archived_s, 0-315,360,000: then removed */
    char **retention_categories;   /* retention.categories: "<category>:<status>=<duration>" entries */
    size_t retention_category_count;
    int64_t retention_check_interval_ms; /* retention.check_interval_ms, 100-3,600,000, default 60000 */
    /* secrets.* (codec/ masking, persist/ sealing) */
    char **secrets_mask_keys;      /* secrets.mask_keys: NULL-terminated array of key patterns */
    size_t secrets_mask_count;
    char *secrets_key_file;        /* secrets.encryption_key_file: "" none */
    char **secrets_old_key_files;  /* secrets.encryption_old_key_files: NULL-terminated array */
    size_t secrets_old_key_count;
    int64_t shutdown_drain_ms;     /* shutdown.drain_ms, 0-600,000 */
    /* limits.* -> codec */
    struct codec_limits limits;
    /* classifier.* */
    struct config_rule *rules;     /* classifier.rules (file only), nrules entries */
    size_t nrules;
    bool rules_replace_builtin;    /* classifier.replace_builtin */
    /* templates (file only) */
    struct config_template *templates; /* templates: ntemplates entries */
    size_t ntemplates;
    /* deprecated */
    bool saw_retry_interval_seconds; /* retry_interval_seconds was given: warn */
};

/* What the command line asked for besides configuration keys. */
struct config_cli {
    const char *config_file; /* --config FILE (borrowed from argv), NULL when absent */
    bool print_config;       /* --print-config */
    bool help;               /* --help / -h */
    bool version;            /* --version */
};

/*
 * config_init() fills cfg with every default (allocating the strings). Never
 * fails (aborts on OOM). config_destroy() frees what cfg owns and zeroes it;
 * it is safe on a zeroed struct. Any thread.
 */
void config_init(struct config *cfg);
void config_destroy(struct config *cfg);

/*
 * config_load() builds the effective configuration with the precedence
 * flags > environment > file > defaults: cfg must come from config_init().
 * argv (argc entries, argv[0] the program) holds `--config FILE`,
 * `--print-config`, `--help`, `--version` and one flag per key,
 * `--<key> VALUE` or `--<key>=VALUE` with the YAML path as key
 * (`--nats.url nats://h:4222`, `--backoff.jitter=0.2`). envp is a
 * NULL-terminated "NAME=VALUE" array (NULL: none); only DLQ_* names are read.
 * Returns SC_OK; SC_EINVAL for a bad key or value, an unknown flag or key,
 * or a malformed file, with err (errlen bytes) naming the key, the value and
 * what is allowed, e.g. "backoff.jitter: 1.5 is out of range 0-1"; SC_ENOTFOUND
 * when the config file cannot be read. cli (may be NULL) receives the non-key
 * flags. On error cfg holds a partial but destroyable result. The file is the
 * one named by --config, else by the DLQ_CONFIG variable, else none; it is
 * read first, then the environment, then the flags, whatever their order in
 * argv. A boolean flag may omit its value (`--events.enabled` means true).
 * When --help or --version is present, config_load() fills cli and returns
 * SC_OK without reading the file or the environment. Main thread.
 */
sc_status config_load(struct config *cfg, int argc, char **argv, char **envp,
                      struct config_cli *cli, char *err, size_t errlen);

/*
 * config_load_yaml() applies len bytes of YAML text at text over cfg (the
 * file layer alone; used by config_load() and the fuzzer). Errors as
 * config_load(). Any thread, one cfg at a time.
 */
sc_status config_load_yaml(struct config *cfg, const char *text, size_t len, char *err,
                           size_t errlen);

/*
 * config_set() sets one key (YAML path, e.g. "retry.timeout_ms") from its
 * text form, validating it. Errors as config_load(). Any thread.
 */
sc_status config_set(struct config *cfg, const char *key, const char *value, char *err,
                     size_t errlen);

/*
 * config_get() writes the value of key (YAML path) into out (outlen bytes,
 * NUL-terminated) in the text form config_set() accepts: "true"/"false",
 * decimal integers, the shortest decimal that reads back as the same double,
 * enum names in lower case ("auto" for an unset default_retry_policy),
 * strings as they are (secrets unmasked), lists joined with ",". Returns
 * SC_OK; SC_ENOTFOUND for an unknown key; SC_EINVAL for classifier.rules,
 * templates and retry_interval_seconds, which have no text form; SC_ETOOBIG when out is too
 * small (out then holds a truncated value). Any thread.
 */
sc_status config_get(const struct config *cfg, const char *key, char *out, size_t outlen);

/*
 * config_print() writes the effective configuration to f as YAML that
 * config_load_yaml() accepts, with secrets (passwords, tokens) shown as
 * "********" when set and the passwords inside URLs of every string and
 * list value masked as config_redact() does. Any thread.
 */
void config_print(const struct config *cfg, FILE *f);

/*
 * config_redact() copies len bytes of text at in to out (outlen bytes,
 * always NUL-terminated when outlen > 0, truncated when short) with the
 * secret of every URL's user info replaced by "***": "nats://u:p@h" becomes
 * "nats://u:***@h", and user info without a ':' (a token) is replaced whole
 * ("nats://t@h" keeps "nats:" and "@h" around "***"), and so is the query
 * of a URL with a scheme ("https://h/hook?token=t#x" becomes
 * "https://h/hook?***#x": a webhook's token). A URL is anything of the form
 * scheme "://" authority; its authority ends at '/', '?', '#', ',',
 * whitespace, a quote or the end. Text without such a URL is copied as it
 * is. Returns the length the full result needs without the NUL (as
 * snprintf does: out may be NULL when outlen is 0). Any thread.
 */
size_t config_redact(const char *in, size_t len, char *out, size_t outlen);

/*
 * config_delays_for() finds the configured delay list of a task whose
 * failure subject is the subject_len bytes at subject (may be NULL: no
 * subject match) and whose category is cat: the first backoff.subjects
 * entry whose pattern matches the subject, else the first
 * backoff.categories entry for cat. Sets *out and returns "subject" or
 * "category" (static), or returns NULL when none applies (*out unchanged).
 * Any thread that may read cfg.
 */
const char *config_delays_for(const struct config *cfg, const char *subject, size_t subject_len,
                              policy_category cat, struct policy_delays *out);

/*
 * config_template_find() returns the template named by the len bytes at
 * name (exact, case-sensitive), or NULL. Borrowed from cfg. Any thread that
 * may read cfg.
 */
const struct config_template *config_template_find(const struct config *cfg, const char *name,
                                                   size_t len);

/*
 * config_priority_for() is the priority of a failure on the subject_len
 * bytes at subject (may be NULL) by priority.subjects: the first entry
 * whose pattern matches, else POLICY_PRIO_NORMAL. Any thread that may read
 * cfg.
 */
policy_priority config_priority_for(const struct config *cfg, const char *subject,
                                    size_t subject_len);

/* config_usage() writes --help text listing every flag and key with its default and range. */
void config_usage(FILE *f, const char *prog);

/*
 * The key table, read-only, for --help, documentation and tests. Every key of
 * struct config has one row; the same row drives the file, the environment,
 * the flags, config_print() and config_usage().
 */
typedef enum {
    CONFIG_TYPE_BOOL = 0, /* true/false/yes/no/on/off/1/0, any case */
    CONFIG_TYPE_INT,      /* plain decimal integer in [min, max] */
    CONFIG_TYPE_DOUBLE,   /* decimal number in [dmin, dmax] */
    CONFIG_TYPE_STRING,   /* UTF-8 text without control characters, at most 4096 bytes */
    CONFIG_TYPE_SECRET,   /* a string that config_print() masks */
    CONFIG_TYPE_ENUM,     /* one of names[], any case */
    CONFIG_TYPE_LIST,     /* strings: a YAML sequence, or comma-separated text */
    CONFIG_TYPE_RULES,    /* classifier rules: a YAML sequence of maps, file only */
    CONFIG_TYPE_TEMPLATES, /* retry templates: a YAML mapping of name to map, file only */
} config_type;

struct config_key_info {
    const char *path;         /* YAML path and flag name, e.g. "backoff.jitter" */
    config_type type;
    int64_t min, max;         /* CONFIG_TYPE_INT: allowed range, inclusive */
    double dmin, dmax;        /* CONFIG_TYPE_DOUBLE: allowed range, inclusive */
    const char *const *names; /* CONFIG_TYPE_ENUM: allowed names, NULL-terminated; else NULL */
    const char *help;         /* one line, no trailing period */
    bool file_only;           /* only the YAML file may set it (classifier.rules) */
    bool deprecated;          /* accepted and validated, then ignored (retry_interval_seconds) */
};

/*
 * config_key_count() is the number of keys; config_key_get() returns row i
 * (i < count; NULL otherwise) and config_key_find() the row whose path is
 * path (NULL when unknown). Rows are static. Any thread.
 */
size_t config_key_count(void);
const struct config_key_info *config_key_get(size_t i);
const struct config_key_info *config_key_find(const char *path);

/*
 * config_env_name() writes the environment name of path ("nats.url" ->
 * "DLQ_NATS_URL") into out (outlen bytes, NUL-terminated, truncated if
 * short) and returns the length it needs without the NUL. Any thread.
 */
size_t config_env_name(const char *path, char *out, size_t outlen);

/*
 * config_retention_parse() reads one retention.categories entry (len bytes
 * at s): "<category>:<status>=<duration>", category a classifier category
 * name, status exhausted (0), completed (1) or archived (2), duration
 * digits with an optional s, m, h or d, at most 315,360,000 s. Sets the
 * outputs that are not NULL. Returns SC_OK or SC_EINVAL (malformed or out
 * of range). Any thread.
 */
sc_status config_retention_parse(const char *s, size_t len, int *category, int *status,
                                 int64_t *seconds);

/* Largest config file or YAML text config_load()/config_load_yaml() accept. */
#define CONFIG_MAX_FILE_BYTES (1024 * 1024)

/* Longest nats.inbox_prefix, bytes: "<prefix>.<22-byte nuid>" then fits the sidecar's inbox buffer. */
#define CONFIG_INBOX_PREFIX_MAX 64

#endif
