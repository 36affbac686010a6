/* config.c - the key table and all it drives: defaults, validation, setters, get, print, --help. */
#include "config-internal.h"

#include <crypt.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allowed names of config/'s own enum keys, in enum order (policy/ owns the names of its enums). */
static const char *const outcome_names[] = {"reply", "none", "stored", NULL};
static const char *const store_names[] = {"memory", "opensearch", "jetstream", NULL};

const char *
config_store_name(config_store s)
{
    return (size_t)s < SC_ARRAY_LEN(store_names) - 1 ? store_names[s] : "unknown";
}
static const char *const store_ack_names[] = {"accepted", "durable", NULL};
static const char *const ingest_mode_names[] = {"core", "jetstream", NULL};
static const char *const storage_names[] = {"file", "memory", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_names[] = {"logfmt", "json", NULL};

static bool check_urls(const char *s, size_t len);
static bool check_token(const char *s, size_t len);
static bool check_name(const char *s, size_t len);
static bool check_template(const char *s, size_t len);
/* What check_js_name() accepts, as a key's allowed range says it. */
#define JS_NAME_WHAT "a JetStream name (no whitespace, '.', '*', '>', '/', '\\' or '\"')"

static bool check_js_name(const char *s, size_t len);
static bool check_bucket(const char *s, size_t len);
static bool check_pattern(const char *s, size_t len);
static bool check_index(const char *s, size_t len);
static bool check_listen(const char *s, size_t len);
static bool check_webhook(const char *s, size_t len);
static bool check_webhook_opt(const char *s, size_t len);
static bool check_retention(const char *s, size_t len);
static bool check_member_id(const char *s, size_t len);
static bool check_inbox_prefix(const char *s, size_t len);
static bool check_category_delays(const char *s, size_t len);
static bool check_subject_delays(const char *s, size_t len);
static bool check_subject_priority(const char *s, size_t len);
static bool check_auth_user(const char *s, size_t len);
static bool check_mask_key(const char *s, size_t len);

#define F(field) offsetof(struct config, field)

#define K_BOOL(p, field, d, h)                                                                   \
    {.info = {.path = p, .type = CONFIG_TYPE_BOOL, .help = h}, .off = F(field), .def = d}
#define K_INT(p, field, w, lo, hi, d, h)                                                         \
    {.info = {.path = p, .type = CONFIG_TYPE_INT, .min = lo, .max = hi, .help = h},              \
     .off = F(field), .width = w, .def = d}
#define K_DBL(p, field, lo, hi, d, h)                                                            \
    {.info = {.path = p, .type = CONFIG_TYPE_DOUBLE, .dmin = lo, .dmax = hi, .help = h},         \
     .off = F(field), .def = d}
#define K_STR(p, field, chk, wh, d, h)                                                           \
    {.info = {.path = p, .type = CONFIG_TYPE_STRING, .help = h}, .off = F(field), .check = chk, \
     .what = wh, .def = d}
#define K_SECRET(p, field, h)                                                                    \
    {.info = {.path = p, .type = CONFIG_TYPE_SECRET, .help = h}, .off = F(field), .def = ""}
#define K_ENUM(p, field, kind, nm, d, h)                                                         \
    {.info = {.path = p, .type = CONFIG_TYPE_ENUM, .names = nm, .help = h}, .off = F(field),    \
     .ekind = kind, .def = d}

/*
 * The table. Keys that share a section are contiguous (config_print() nests
 * them in that order). A NULL default means codec_limits_default() or
 * policy_backoff_default() provides it.
 */
static const struct config_key keys[] = {
    K_BOOL("enabled", enabled, "true",
           "master switch of the original design: false stores nothing"),
    K_STR("nats.url", nats_url, check_urls, "a comma-separated list of URLs",
          "nats://127.0.0.1:4222", "NATS server URLs, comma-separated"),
    K_STR("nats.name", nats_name, NULL, NULL, "dlq-sidecar", "connection name shown by the server"),
    K_STR("nats.user", nats_user, NULL, NULL, "", "user name for user/password authentication"),
    K_SECRET("nats.password", nats_password, "password for user/password authentication"),
    K_SECRET("nats.token", nats_token, "token authentication"),
    K_STR("nats.creds_file", nats_creds_file, NULL, NULL, "",
          "credentials file (JWT and NKey seed)"),
    K_STR("nats.nkey_seed_file", nats_nkey_seed_file, NULL, NULL, "",
          "NKey seed file (with nats.nkey)"),
    K_STR("nats.nkey", nats_nkey, NULL, NULL, "",
          "the user's public NKey that goes with nats.nkey_seed_file"),
    K_STR("nats.tls_ca", nats_tls_ca, NULL, NULL, "", "CA certificates file for TLS"),
    K_STR("nats.tls_cert", nats_tls_cert, NULL, NULL, "", "client certificate file for TLS"),
    K_STR("nats.tls_key", nats_tls_key, NULL, NULL, "", "client private key file for TLS"),
    K_INT("nats.reconnect_wait_ms", nats_reconnect_wait_ms, CONFIG_W_I64, 10, 60000, "2000",
          "wait between reconnect attempts, ms"),
    K_STR("nats.inbox_prefix", nats_inbox_prefix, check_inbox_prefix,
          "a subject prefix of 1-64 bytes: tokens of A-Z a-z 0-9 _ - joined by '.', no wildcard "
          "(e.g. _INBOX_dlq-sidecar)",
          "_INBOX",
          "prefix of every inbox of the sidecar (retry replies, cluster answers, nats.c's own "
          "requests): give it one that only the sidecar's NATS user may subscribe to"),
    K_STR("subjects.prefix", subjects_prefix, check_token,
          "one NATS token (no '.', '*', '>' or whitespace)", "dlq",
          "first token of the failed, admin, events and invalid subjects"),
    K_STR("subjects.queue_group", subjects_queue_group, check_name,
          "a queue group name (no whitespace)", "dlq-sidecar",
          "queue group of the ingest subscription"),
    K_ENUM("ingest.mode", ingest_mode, CONFIG_E_INGEST_MODE, ingest_mode_names, "core",
           "core: a queue-group subscription (a failure published while no sidecar runs is lost); "
           "jetstream: the ingest.stream stream and a shared durable pull consumer (nothing is lost)"),
    K_STR("ingest.stream", ingest_stream, check_js_name,
          JS_NAME_WHAT, "DLQ_FAILED",
          "jetstream mode: the stream over <prefix>.failed.> (created when missing)"),
    K_INT("ingest.stream_replicas", ingest_stream_replicas, CONFIG_W_I64, 1, 5, "1",
          "jetstream mode: replicas of a stream the sidecar creates"),
    K_ENUM("ingest.stream_storage", ingest_stream_storage, CONFIG_E_STORAGE, storage_names, "file",
           "jetstream mode: storage of a stream the sidecar creates"),
    K_INT("ingest.stream_max_age_s", ingest_stream_max_age_s, CONFIG_W_I64, 0, 3153600000LL, "0",
          "jetstream mode: oldest message a created stream keeps, s (0: no limit)"),
    K_INT("ingest.stream_max_bytes", ingest_stream_max_bytes, CONFIG_W_I64, 0,
          1125899906842624LL, "0", "jetstream mode: most bytes a created stream keeps (0: no limit)"),
    K_STR("ingest.consumer", ingest_consumer, check_js_name,
          JS_NAME_WHAT, "dlq-sidecar",
          "jetstream mode: the durable pull consumer every sidecar shares"),
    K_INT("ingest.max_ack_pending", ingest_max_ack_pending, CONFIG_W_I64, 1, 1000000, "10000",
          "jetstream mode: most failures delivered and not yet acknowledged (backpressure)"),
    K_INT("ingest.ack_wait_ms", ingest_ack_wait_ms, CONFIG_W_I64, 1000, 3600000, "30000",
          "jetstream mode: time before an unacknowledged failure is delivered again, ms"),
    K_INT("ingest.fetch_batch", ingest_fetch_batch, CONFIG_W_I64, 1, 10000, "256",
          "jetstream mode: most failures asked for per pull request"),
    K_INT("ingest.nak_delay_ms", ingest_nak_delay_ms, CONFIG_W_I64, 10, 3600000, "1000",
          "jetstream mode: delay before a failure that could not be taken (full queue, store "
          "unavailable) is delivered again, ms"),
    {.info = {.path = "advisories.streams",
              .type = CONFIG_TYPE_LIST,
              .help = "streams whose MAX_DELIVERIES and MSG_TERMINATED advisories become tasks "
                      "(empty: off)"},
     .off = F(advisories_streams),
     .aux = F(advisories_count),
     .check = check_js_name,
     .what = JS_NAME_WHAT,
     .def = ""},
    K_STR("advisories.stream", advisories_stream, check_js_name,
          JS_NAME_WHAT, "DLQ_ADVISORIES",
          "the stream that captures the advisories of advisories.streams (created when missing)"),
    K_STR("advisories.consumer", advisories_consumer, check_js_name,
          JS_NAME_WHAT, "dlq-sidecar-advisories",
          "the durable pull consumer of advisories.stream every sidecar shares"),
    K_BOOL("cluster.enabled", cluster_enabled, "false",
           "run as one member of a cluster: partitions of the tasks owned through leases in cluster.bucket"),
    K_INT("cluster.partitions", cluster_partitions, CONFIG_W_I64, 1, 4096, "32",
          "partitions of the tasks (FNV-1a 64 of the task id mod this); the same on every member, fixed for a deployment"),
    K_INT("cluster.lease_ms", cluster_lease_ms, CONFIG_W_I64, 1000, 600000, "10000",
          "lease time, ms: the bucket's TTL; renewed every third of it; a dead member's partitions move after about this long"),
    K_STR("cluster.bucket", cluster_bucket, check_bucket, "a KV bucket name (A-Z a-z 0-9 _ -)",
          "DLQ_CLUSTER", "the KV bucket of member records and leases (created when missing)"),
    K_INT("cluster.replicas", cluster_replicas, CONFIG_W_I64, 1, 5, "1",
          "replicas of a cluster.bucket the sidecar creates"),
    K_STR("cluster.member_id", cluster_member_id, check_member_id,
          "empty, or 1-64 of A-Z a-z 0-9 _ - =", "",
          "this member's id, unique in the cluster (empty: <hostname>-<pid>-<random>)"),
    K_ENUM("strategy", strategy, CONFIG_E_STRATEGY, policy_strategy_names, "automatic",
           "which failures are stored"),
    K_INT("max_size", max_size, CONFIG_W_I64, 100, 10000000, "10000",
          "most tasks held; new failures are refused beyond it"),
    K_INT("max_bytes", max_bytes, CONFIG_W_I64, 1048576, 1099511627776LL, "1073741824",
          "most bytes of stored tasks (payload, error, metadata); new failures are refused beyond it"),
    {.info = {.path = "default_retry_policy",
              .type = CONFIG_TYPE_ENUM,
              .names = policy_retry_auto_names,
              .help = "retry policy of every task; auto: by error category"},
     .off = F(default_retry_policy),
     .aux = F(has_default_retry_policy),
     .ekind = CONFIG_E_RETRY_AUTO,
     .def = "auto"},
    K_INT("default_max_retries", default_max_retries, CONFIG_W_INT, 0, 100, "3",
          "failed attempts before a task is exhausted"),
    K_BOOL("retry_processor_enabled", retry_processor_enabled, "true",
           "false pauses automatic retries (dlq.admin.resume restarts them)"),
    K_INT("history.max_entries", history_max, CONFIG_W_I64, 1, 1000, "20",
          "attempts kept in each task's history"),
    K_INT("backoff.linear_step_ms", backoff.linear_step_ms, CONFIG_W_I64, 1, 86400000, NULL,
          "linear policy: delay step per attempt, ms"),
    K_INT("backoff.exp_base_ms", backoff.exp_base_ms, CONFIG_W_I64, 1, 86400000, NULL,
          "exponential policy: first delay, doubled per attempt, ms"),
    K_INT("backoff.max_delay_ms", backoff.max_delay_ms, CONFIG_W_I64, 1, 2592000000, NULL,
          "cap of every delay, ms"),
    K_DBL("backoff.jitter", backoff.jitter, 0.0, 1.0, NULL,
          "delays vary randomly by +/- this fraction"),
    {.info = {.path = "backoff.categories",
              .type = CONFIG_TYPE_LIST,
              .help = "delay lists by error category: \"<category> <delay> ...\" (the last delay "
                      "repeats); replaces the formula of linear, exponential and immediate"},
     .off = F(backoff_categories),
     .aux = F(backoff_categories_count),
     .check = check_category_delays,
     .what = "a category followed by 1-32 delays of 1ms-7d (\"network 1s 10s 1m 10m\")",
     .def = ""},
    {.info = {.path = "backoff.subjects",
              .type = CONFIG_TYPE_LIST,
              .help = "delay lists by failure subject pattern: \"<pattern> <delay> ...\", the "
                      "first match wins over backoff.categories"},
     .off = F(backoff_subjects),
     .aux = F(backoff_subjects_count),
     .check = check_subject_delays,
     .what = "a subject pattern followed by 1-32 delays of 1ms-7d (\"dlq.failed.orders.> 1s 10s\")",
     .def = ""},
    {.info = {.path = "priority.subjects",
              .type = CONFIG_TYPE_LIST,
              .help = "retry priority by failure subject pattern: \"<pattern> <high|normal|low>\", the "
                      "first match wins; others are normal"},
     .off = F(priority_subjects),
     .aux = F(priority_subjects_count),
     .check = check_subject_priority,
     .what = "a subject pattern followed by high, normal or low (\"dlq.failed.payments.> high\")",
     .def = ""},
    K_INT("retry.timeout_ms", retry_timeout_ms, CONFIG_W_I64, 10, 3600000, "30000",
          "time a worker has to reply to a retry, ms"),
    K_ENUM("retry.outcome", retry_outcome, CONFIG_E_OUTCOME, outcome_names, "reply",
           "reply: workers reply with the outcome; none: a publish counts as success; "
           "stored: a JetStream PubAck counts as success"),
    K_STR("retry.subject_template", retry_subject_template, check_template,
          "a NATS subject without wildcards ({service} is replaced)", "dlq.retry.{service}",
          "retry subject when the envelope names none"),
    {.info = {.path = "retry.allowed_subjects",
              .type = CONFIG_TYPE_LIST,
              .help = "subject patterns an envelope's retry_subject must match"},
     .off = F(retry_allowed_subjects),
     .aux = F(retry_allowed_count),
     .check = check_pattern,
     .what = "a NATS subject pattern",
     .def = "dlq.retry.>"},
    {.info = {.path = "retry.stored_subjects",
              .type = CONFIG_TYPE_LIST,
              .help = "retry subject patterns captured by a JetStream stream: their outcome is "
                      "stored (the PubAck) whatever retry.outcome says"},
     .off = F(retry_stored_subjects),
     .aux = F(retry_stored_count),
     .check = check_pattern,
     .what = "a NATS subject pattern",
     .def = ""},
    K_INT("retry.max_in_flight", retry_max_in_flight, CONFIG_W_I64, 1, 1000000, "1000",
          "most retries awaiting an outcome at once"),
    K_INT("retry.max_per_second", retry_max_per_second, CONFIG_W_I64, 1, 10000000, "10000",
          "most retries published per second"),
    K_INT("circuit_breaker.failures", circuit_breaker_failures, CONFIG_W_I64, 0, 1000000, "0",
          "failed or timed-out retries in a row on one retry subject that open its circuit (its retries "
          "are held, not charged); 0: no circuit breaker"),
    K_INT("circuit_breaker.cooldown_ms", circuit_breaker_cooldown_ms, CONFIG_W_I64, 100, 86400000,
          "30000", "how long an open circuit holds its subject's retries before one probe goes, ms"),
    K_INT("timer.tick_ms", timer_tick_ms, CONFIG_W_I64, 1, 1000, "10", "timer wheel tick, ms"),
    K_ENUM("store.backend", store_backend, CONFIG_E_STORE, store_names, "memory",
           "where tasks are persisted (memory: lost on restart; opensearch; jetstream: a KV bucket)"),
    K_BOOL("store.keep_completed", store_keep_completed, "false",
           "keep completed tasks instead of removing them"),
    K_INT("store.journal_max", store_journal_max, CONFIG_W_I64, 1000, 10000000, "100000",
          "deletes of removed tasks kept while the store is unreachable (oldest dropped past it)"),
    K_ENUM("store.ack", store_ack, CONFIG_E_STORE_ACK, store_ack_names, "accepted",
           "accepted: answers while the store is degraded say \"stored\":false; durable: refuse (503) instead"),
    K_STR("store.spill_dir", store_spill_dir, NULL, NULL, "",
          "directory of the spill file that keeps unstored writes across a restart (empty: none)"),
    K_INT("store.spill_max_bytes", store_spill_max_bytes, CONFIG_W_I64, 1048576, 1099511627776LL,
          "268435456", "largest spill file, bytes; writes past it are counted as not stored"),
    K_STR("store.opensearch.url", os_url, check_urls, "a comma-separated list of URLs",
          "http://127.0.0.1:9200", "OpenSearch URLs, comma-separated"),
    K_STR("store.opensearch.index", os_index, check_index,
          "an OpenSearch index name (lower case, no \\ / * ? \" < > | , # : or space)",
          "dlq-tasks", "index of the tasks (template dlq-tasks*)"),
    K_STR("store.opensearch.username", os_username, NULL, NULL, "", "basic auth user"),
    K_SECRET("store.opensearch.password", os_password, "basic auth password"),
    K_STR("store.opensearch.ca_file", os_ca_file, NULL, NULL, "", "CA certificates file for TLS"),
    K_BOOL("store.opensearch.insecure", os_insecure, "false", "skip TLS certificate verification"),
    K_INT("store.opensearch.bulk_max_docs", os_bulk_max_docs, CONFIG_W_I64, 1, 100000, "1000",
          "most documents per _bulk request"),
    K_INT("store.opensearch.bulk_max_bytes", os_bulk_max_bytes, CONFIG_W_I64, 1024, 104857600,
          "5242880", "most bytes per _bulk request"),
    K_INT("store.opensearch.flush_ms", os_flush_ms, CONFIG_W_I64, 1, 60000, "200",
          "longest a write waits before a _bulk flush, ms"),
    K_STR("store.jetstream.bucket", kv_bucket, check_bucket,
          "a KV bucket name (A-Z a-z 0-9 _ -)", "DLQ_TASKS",
          "KV bucket of the tasks (store.backend: jetstream); made when missing"),
    K_INT("store.jetstream.replicas", kv_replicas, CONFIG_W_I64, 1, 5, "1",
          "replicas of the bucket when the sidecar makes it"),
    K_ENUM("store.jetstream.storage", kv_storage, CONFIG_E_STORAGE, storage_names, "file",
           "storage of the bucket when the sidecar makes it: file or memory"),
    K_INT("store.jetstream.batch_max", kv_batch_max, CONFIG_W_I64, 1, 100000, "1000",
          "most writes published back to back before their answers are awaited"),
    K_INT("store.jetstream.flush_ms", kv_flush_ms, CONFIG_W_I64, 1, 60000, "20",
          "longest a write waits before its batch is sent, ms"),
    K_INT("store.jetstream.timeout_ms", kv_timeout_ms, CONFIG_W_I64, 100, 600000, "5000",
          "longest wait for JetStream's answers to a batch (and for each setup call), ms"),
    K_BOOL("events.enabled", events_enabled, "true",
           "publish lifecycle events on <prefix>.events.*"),
    K_STR("http.listen", http_listen, check_listen, "host:port (or empty to disable)",
          "127.0.0.1:9464",
          "address of /healthz, /readyz, /metrics, the admin API (/api/v1/) and the web console (/); "
          "empty disables"),
    K_INT("http.max_connections", http_max_connections, CONFIG_W_I64, 1, 65536, "64",
          "most HTTP connections open at once (also kept below the fd limit); more are closed at once"),
    K_INT("http.request_timeout_ms", http_request_timeout_ms, CONFIG_W_I64, 100, 600000, "10000",
          "time from accept to the last byte of the answer; slower connections are cut, ms"),
    K_SECRET("http.auth.operator_token", http_auth_operator_token,
             "bearer token of the admin API's operator role (every verb); set, the API needs a token from any peer"),
    K_SECRET("http.auth.viewer_token", http_auth_viewer_token,
             "bearer token of the admin API's viewer role (reads only); set, the API needs a token from any peer"),
    {.info = {.path = "http.auth.users",
              .type = CONFIG_TYPE_LIST,
              .help = "basic-auth users of the admin API, name:role:hash (role viewer or operator, "
                      "hash a crypt(3) string: yescrypt $y$, sha512 $6$ ...); set, the API needs "
                      "credentials from any peer"},
     .off = F(http_auth_users),
     .aux = F(http_auth_users_count),
     .check = check_auth_user,
     .what = "name:role:hash (name 1-64 of A-Z a-z 0-9 _ . @ -, role viewer or operator, hash a "
             "whole crypt(3) hash such as yescrypt $y$... or sha512 $6$..., sha-crypt rounds at "
             "most 100000, bcrypt cost at most 12)",
     .def = ""},
    K_INT("audit.keep", audit_keep, CONFIG_W_I64, 0, 100000, "1000",
          "audit records of admin actions kept in memory for the audit verb (0: none)"),
    K_ENUM("log.level", log_level, CONFIG_E_LEVEL, level_names, "info",
           "least severe level logged"),
    K_ENUM("log.format", log_format, CONFIG_E_FORMAT, format_names, "logfmt", "log line format"),
    K_INT("log.task_lines_per_s", log_task_lines_per_s, CONFIG_W_I64, 0, 100000000, "1000",
          "most per-task lines (info, debug) logged a second; more are counted and summed up; 0: no limit"),
    K_BOOL("alerts.enabled", alerts_enabled, "true",
           "check the alert thresholds and publish <prefix>.events.alert"),
    K_INT("alerts.check_interval_ms", alerts_check_interval_ms, CONFIG_W_I64, 10, 3600000, "5000",
          "how often the thresholds are checked, ms"),
    K_DBL("alerts.utilization_percent", alerts_utilization_percent, 0.0, 100.0, "80",
          "queue_utilization fires when the queue is fuller than this, percent of max_size"),
    K_INT("alerts.exhausted_count", alerts_exhausted_count, CONFIG_W_I64, 0, 10000000, "100",
          "exhausted_tasks fires when more tasks than this are exhausted"),
    K_DBL("alerts.success_rate", alerts_success_rate, 0.0, 1.0, "0.5",
          "retry_success_rate fires when less than this fraction of the window's retries succeed"),
    K_INT("alerts.window_s", alerts_window_s, CONFIG_W_I64, 1, 604800, "300",
          "window of the retry success rate, s"),
    K_INT("alerts.min_retries", alerts_min_retries, CONFIG_W_I64, 1, 1000000, "10",
          "retry outcomes the window needs before its success rate is judged"),
    K_INT("alerts.no_workers_after_s", alerts_no_workers_after_s, CONFIG_W_I64, 1, 604800, "60",
          "retry_subjects_without_workers fires when a retry subject has had no worker for longer than this, s"),
    {.info = {.path = "alerts.webhook_urls",
              .type = CONFIG_TYPE_LIST,
              .help = "URLs that receive each alert change as a JSON POST"},
     .off = F(alerts_webhook_urls),
     .aux = F(alerts_webhook_count),
     .check = check_webhook,
     .what = "an http:// or https:// URL",
     .def = ""},
    K_INT("alerts.webhook_timeout_ms", alerts_webhook_timeout_ms, CONFIG_W_I64, 100, 300000,
          "5000", "time one webhook POST may take, ms"),
    K_INT("alerts.webhook_retries", alerts_webhook_retries, CONFIG_W_I64, 0, 20, "5",
          "retries of a failed webhook POST"),
    K_INT("alerts.webhook_backoff_ms", alerts_webhook_backoff_ms, CONFIG_W_I64, 10, 600000, "1000",
          "wait before the first webhook retry, doubled for each next one, ms"),
    {.info = {.path = "alerts.slack.url",
              .type = CONFIG_TYPE_SECRET,
              .help = "Slack incoming-webhook URL that receives each alert change as a Slack "
                      "message (text and blocks); empty: none (a secret: masked when shown)"},
     .off = F(alerts_slack_url),
     .check = check_webhook_opt,
     .what = "empty or an http:// or https:// URL",
     .def = ""},
    K_STR("alerts.pagerduty.url", alerts_pagerduty_url, check_webhook, "an http:// or https:// URL",
          "https://events.pagerduty.com/v2/enqueue",
          "PagerDuty Events API v2 URL (used when alerts.pagerduty.routing_key is set)"),
    K_SECRET("alerts.pagerduty.routing_key", alerts_pagerduty_routing_key,
             "PagerDuty integration (routing) key; set, each alert triggers and resolves one "
             "PagerDuty alert (dedup_key dlq-sidecar/<prefix>/<alert>)"),
    K_STR("alerts.opsgenie.url", alerts_opsgenie_url, check_webhook, "an http:// or https:// URL",
          "https://api.opsgenie.com",
          "Opsgenie API base URL (https://api.eu.opsgenie.com for EU accounts; used when "
          "alerts.opsgenie.api_key is set)"),
    K_SECRET("alerts.opsgenie.api_key", alerts_opsgenie_api_key,
             "Opsgenie API integration key (sent as Authorization: GenieKey); set, each alert "
             "creates and closes one Opsgenie alert (alias dlq-sidecar/<prefix>/<alert>)"),
    K_INT("retention.exhausted_s", retention_exhausted_s, CONFIG_W_I64, 0, 315360000, "0",
          "an exhausted task untouched this long is archived (evented expired), s; 0: kept"),
    K_INT("retention.completed_s", retention_completed_s, CONFIG_W_I64, 0, 315360000, "0",
          "a completed task kept by store.keep_completed is removed this long after it "
          "completed (evented expired), s; 0: kept"),
    K_INT("retention.archived_s", retention_archived_s, CONFIG_W_I64, 0, 315360000, "0",
          "an archived task kept by store.keep_completed is removed this long after it was "
          "archived (evented expired), s; 0: kept"),
    {.info = {.path = "retention.categories",
              .type = CONFIG_TYPE_LIST,
              .help = "per-category overrides of the three above: <category>:<status>=<duration> "
                      "(status exhausted, completed or archived; duration seconds or with s, m, h, "
                      "d; 0: kept)"},
     .off = F(retention_categories),
     .aux = F(retention_category_count),
     .check = check_retention,
     .what = "<category>:<exhausted|completed|archived>=<duration> (a category of the classifier; "
             "a duration of 0-315360000 s, or with s, m, h or d)",
     .def = ""},
    K_INT("retention.check_interval_ms", retention_check_interval_ms, CONFIG_W_I64, 100, 3600000,
          "60000", "how often tasks are checked against retention.*, ms"),
    {.info = {.path = "secrets.mask_keys",
              .type = CONFIG_TYPE_LIST,
              .help = "map keys whose values every rendered view shows as \"***\": a case-insensitive "
                      "substring of the key, or a glob of the whole key when it holds * or ?"},
     .off = F(secrets_mask_keys),
     .aux = F(secrets_mask_count),
     .check = check_mask_key,
     .what = "1-128 printable bytes",
     .def = "password,passwd,secret,token,authorization,api_key,apikey,private_key,cookie"},
    K_STR("secrets.encryption_key_file", secrets_key_file, NULL, NULL, "",
          "file of the AES-256-GCM key that seals stored payload and metadata bytes: 32 raw bytes "
          "or 64 hex digits (empty: stored in the clear)"),
    {.info = {.path = "secrets.encryption_old_key_files",
              .type = CONFIG_TYPE_LIST,
              .help = "former key files, read to open records sealed before a key rotation"},
     .off = F(secrets_old_key_files),
     .aux = F(secrets_old_key_count),
     .check = check_mask_key,
     .what = "a file path",
     .def = ""},
    K_INT("shutdown.drain_ms", shutdown_drain_ms, CONFIG_W_I64, 0, 600000, "5000",
          "on SIGTERM, the ingest drain and in-flight retries get this long, then the store flush (at least 2000), ms"),
    K_INT("limits.max_envelope_bytes", limits.max_envelope_bytes, CONFIG_W_SIZE, 1024, 67108864,
          NULL, "largest failure message accepted, bytes"),
    K_INT("limits.max_depth", limits.max_depth, CONFIG_W_UINT, 1, 1000, NULL,
          "deepest nesting of arrays and maps in an envelope"),
    K_INT("limits.max_task_id_len", limits.max_task_id_len, CONFIG_W_SIZE, 1, 1024, NULL,
          "longest task_id, bytes"),
    K_INT("limits.max_error_len", limits.max_error_len, CONFIG_W_SIZE, 64, 1048576, NULL,
          "longest error text kept (longer is truncated), bytes"),
    K_INT("limits.max_metadata_keys", limits.max_metadata_keys, CONFIG_W_SIZE, 0, 10000, NULL,
          "most keys in an envelope's metadata"),
    K_INT("limits.max_metadata_bytes", limits.max_metadata_bytes, CONFIG_W_SIZE, 0, 16777216,
          NULL, "largest encoded metadata, bytes"),
    K_INT("limits.max_repos", limits.max_repos, CONFIG_W_SIZE, 0, 10000, NULL,
          "most entries in an envelope's repos"),
    K_INT("limits.max_string_len", limits.max_string_len, CONFIG_W_SIZE, 16, 1048576, NULL,
          "longest other string field (error_type, retry_subject ...), bytes"),
    K_BOOL("classifier.replace_builtin", rules_replace_builtin, "false",
           "use only classifier.rules, not the built-in rules"),
    {.info = {.path = "classifier.rules",
              .type = CONFIG_TYPE_RULES,
              .help = "classification rules tried before the built-in ones (file only)",
              .file_only = true},
     .off = F(rules),
     .aux = F(nrules)},
    {.info = {.path = "templates",
              .type = CONFIG_TYPE_TEMPLATES,
              .help = "named retry configurations an envelope picks with \"template\" (file only)",
              .file_only = true},
     .off = F(templates),
     .aux = F(ntemplates)},
    {.info = {.path = "retry_interval_seconds",
              .type = CONFIG_TYPE_INT,
              .min = 0,
              .max = 86400,
              .help = "deprecated: the timer wheel replaced polling; accepted and ignored",
              .deprecated = true},
     .off = F(saw_retry_interval_seconds)},
};

_Static_assert(SC_ARRAY_LEN(keys) <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

#define NKEYS SC_ARRAY_LEN(keys)

/* Text helpers. */

static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static char
lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool
equal_nocase(const char *a, size_t alen, const char *b)
{
    size_t i;

    for (i = 0; i < alen; i++) {
        if (b[i] == '\0' || lower(a[i]) != lower(b[i]))
            return false;
    }
    return b[alen] == '\0';
}

bool
config_text_ok(const char *s, size_t len)
{
    return sc_utf8_valid(s, len, SC_UTF8_NO_CONTROL);
}

/* Appends byte c at out[*o] when it fits (one byte kept for the NUL); *o counts every byte. */
static void
redact_put(char *out, size_t outlen, size_t *o, char c)
{
    if (*o + 1 < outlen)
        out[*o] = c;
    (*o)++;
}

/* Does a URL (one element of a list or of a log value) end at c? */
static bool
element_end(char c)
{
    return c == ',' || c == '"' || c == '\'' || is_space(c);
}

/* Copies in[from, to) through redact_put(). */
static void
redact_copy(const char *in, size_t from, size_t to, char *out, size_t outlen, size_t *o)
{
    for (size_t j = from; j < to; j++)
        redact_put(out, outlen, o, in[j]);
}

/*
 * Masks one element in[i, e). Its user info runs from after the scheme's
 * "://" (or from its start when it has none) to its LAST '@': nats.c and
 * libcurl take a password with an unescaped '/', '#' or '@', so a path
 * holding an '@' is masked too rather than risk showing a password. An
 * element without a scheme is masked only as user:password@host (an
 * e-mail address is not a URL).
 */
static void
redact_element(const char *in, size_t i, size_t e, char *out, size_t outlen, size_t *o)
{
    size_t at, u = i, j;
    bool scheme = false;

    for (at = e; at > i && in[at - 1] != '@'; at--)
        ;
    if (at == i) {
        redact_copy(in, i, e, out, outlen, o);
        return;
    }
    at--; /* the last '@' */
    for (j = i; j + 3 <= at; j++)
        if (memcmp(in + j, "://", 3) == 0) {
            u = j + 3;
            scheme = true;
            break;
        }
    for (j = u; j < at && in[j] != ':'; j++)
        ;
    if (!scheme && j == at) { /* user@host without a scheme: nothing secret */
        redact_copy(in, i, e, out, outlen, o);
        return;
    }
    redact_copy(in, i, j < at ? j + 1 : u, out, outlen, o); /* up to "user:" */
    redact_copy("***", 0, 3, out, outlen, o);
    redact_copy(in, at, e, out, outlen, o); /* from the '@' on */
}

/*
 * Masks one element in[i, e) as redact_element() does, and the query of a
 * URL with a scheme too: a webhook's "?token=..." is a credential, so what
 * follows the '?' up to a '#' becomes "***". The query starts at the first
 * '?' after the scheme's "://" and after the last '@' (what comes before
 * that '@' is user info, masked already).
 */
static void
redact_url(const char *in, size_t i, size_t e, char *out, size_t outlen, size_t *o)
{
    size_t from = e, q, f;

    for (size_t j = i; j + 3 <= e; j++)
        if (memcmp(in + j, "://", 3) == 0) {
            from = j + 3;
            break;
        }
    for (size_t j = e; j > from; j--)
        if (in[j - 1] == '@') {
            from = j;
            break;
        }
    for (q = from; q < e && in[q] != '?'; q++)
        ;
    redact_element(in, i, q, out, outlen, o);
    if (q == e)
        return;
    for (f = q + 1; f < e && in[f] != '#'; f++)
        ;
    redact_put(out, outlen, o, '?');
    if (f > q + 1)
        redact_copy("***", 0, 3, out, outlen, o);
    redact_copy(in, f, e, out, outlen, o); /* the fragment, if any */
}

size_t
config_redact(const char *in, size_t len, char *out, size_t outlen)
{
    size_t i = 0, o = 0, e;

    while (i < len) {
        if (element_end(in[i])) {
            redact_put(out, outlen, &o, in[i++]);
            continue;
        }
        for (e = i; e < len && !element_end(in[e]); e++)
            ;
        redact_url(in, i, e, out, outlen, &o);
        i = e;
    }
    if (outlen > 0)
        out[o < outlen ? o : outlen - 1] = '\0';
    return o;
}

void
config_show(char *out, size_t outlen, const char *raw, size_t rawlen)
{
    static const char hex[] = "0123456789abcdef";
    enum { most = 64 };
    char v[most + 1]; /* the excerpt's bytes; config_redact() still reads all of raw */
    size_t i, o = 0, len;

    if (outlen == 0)
        return;
    /*
     * Never echo a password given inside a URL. Only the first `most` bytes
     * of the masked text are shown, so they are all that is kept: the whole
     * value is still masked (its last '@' may be far on), but nothing is
     * allocated.
     */
    len = config_redact(raw, rawlen, v, sizeof(v));
    for (i = 0; i < len && i < most && o + 5 < outlen; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (i < len && o + 4 <= outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

void
config_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Validators for string values. */

/* Subjects follow codec_subject_valid()'s rules: one definition for the config and the wire. */
static bool
subject_ok(const char *s, size_t len, bool wild)
{
    return codec_subject_valid(s, len, wild);
}

/* Comma-separated entries, each non-empty once trimmed and without inner whitespace. */
static bool
check_urls(const char *s, size_t len)
{
    size_t i = 0;

    if (len == 0)
        return false;
    while (i <= len) {
        size_t a = i, b;
        while (i < len && s[i] != ',')
            i++;
        b = i;
        while (a < b && is_space(s[a]))
            a++;
        while (b > a && is_space(s[b - 1]))
            b--;
        if (a == b)
            return false;
        for (; a < b; a++) {
            if (is_space(s[a]))
                return false;
        }
        i++;
    }
    return true;
}

static bool
check_token(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return false;
    for (i = 0; i < len; i++) {
        if (s[i] == '.' || s[i] == '*' || s[i] == '>' || is_space(s[i]))
            return false;
    }
    return true;
}

static bool
check_name(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return false;
    for (i = 0; i < len; i++) {
        if (is_space(s[i]))
            return false;
    }
    return true;
}

/*
 * A stream or consumer name: printable, no whitespace, '.', '*', '>', '/', '\\' or '"' (nats.c
 * writes names into its JetStream API requests' JSON unescaped), at most 255 bytes.
 */
static bool
check_js_name(const char *s, size_t len)
{
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (is_space(s[i]) || s[i] == '.' || s[i] == '*' || s[i] == '>' || s[i] == '/' ||
            s[i] == '\\' || s[i] == '"' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    return true;
}

/* A KV bucket name: 1-255 of A-Z a-z 0-9 _ - (nats.c's rule). */
static bool
check_bucket(const char *s, size_t len)
{
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/*
 * An inbox prefix (nats.inbox_prefix): 1-64 bytes, one or more tokens of
 * A-Z a-z 0-9 _ - joined by single dots (no wildcard, no empty token), so
 * that "<prefix>.<nuid>.<more>" is always a valid subject and fits the
 * sidecar's subject buffers.
 */
static bool
check_inbox_prefix(const char *s, size_t len)
{
    if (len == 0 || len > CONFIG_INBOX_PREFIX_MAX || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.' && s[i + 1] == '.')
            return false;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* A member id: empty (generated), or 1-64 characters valid in one token of a KV key. */
static bool
check_member_id(const char *s, size_t len)
{
    if (len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '='))
            return false;
    }
    return true;
}

/* The template with every "{service}" replaced by one token must be a literal subject. */
static bool
check_template(const char *s, size_t len)
{
    static const char ph[] = "{service}";
    const size_t phl = sizeof(ph) - 1;
    char buf[CONFIG_MAX_STRING];
    size_t i = 0, o = 0;

    while (i < len) {
        if (len - i >= phl && memcmp(s + i, ph, phl) == 0) {
            buf[o++] = 's';
            i += phl;
        } else {
            buf[o++] = s[i++];
        }
    }
    return subject_ok(buf, o, false);
}

static bool
check_pattern(const char *s, size_t len)
{
    return subject_ok(s, len, true);
}

/* The length of the first blank-separated word of len bytes at s (a delay entry's name). */
static size_t
first_word(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len && s[i] != ' ' && s[i] != '\t')
        i++;
    return i;
}

/* "<category> <delay> ...": a category name, then a delay list (policy_delays_parse()). */
static bool
check_category_delays(const char *s, size_t len)
{
    size_t w = first_word(s, len);
    struct policy_delays d;
    policy_category c;

    return policy_category_parse(s, w, &c) == SC_OK &&
           policy_delays_parse(s + w, len - w, &d, NULL, 0) == SC_OK;
}

/* "<subject pattern> <delay> ...": a NATS subject pattern, then a delay list. */
static bool
check_subject_delays(const char *s, size_t len)
{
    size_t w = first_word(s, len);
    struct policy_delays d;

    return w > 0 && subject_ok(s, w, true) && policy_delays_parse(s + w, len - w, &d, NULL, 0) == SC_OK;
}

/* The blank-separated word after the first one of len bytes at s: *word and its length. */
static size_t
second_word(const char *s, size_t len, const char **word)
{
    size_t i = first_word(s, len), a;

    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    a = i;
    while (i < len && s[i] != ' ' && s[i] != '\t')
        i++;
    *word = s + a;
    return i == len ? i - a : 0; /* 0: nothing, or more than two words */
}

/* "<subject pattern> <priority>". */
static bool
check_subject_priority(const char *s, size_t len)
{
    size_t w = first_word(s, len), n;
    const char *p;
    policy_priority prio;

    n = second_word(s, len, &p);
    return w > 0 && subject_ok(s, w, true) && policy_priority_parse(p, n, &prio) == SC_OK;
}

policy_priority
config_priority_for(const struct config *cfg, const char *subject, size_t subject_len)
{
    char pat[CONFIG_MAX_STRING + 1];

    for (size_t i = 0; subject && i < cfg->priority_subjects_count; i++) {
        const char *e = cfg->priority_subjects[i], *p;
        size_t len = strlen(e), w = first_word(e, len), n = second_word(e, len, &p);
        policy_priority prio;

        memcpy(pat, e, w);
        pat[w] = '\0';
        if (codec_subject_match(pat, subject, subject_len) &&
            policy_priority_parse(p, n, &prio) == SC_OK)
            return prio;
    }
    return POLICY_PRIO_NORMAL;
}

const char *
config_delays_for(const struct config *cfg, const char *subject, size_t subject_len,
                  policy_category cat, struct policy_delays *out)
{
    char pat[CONFIG_MAX_STRING + 1];
    size_t i, w;

    for (i = 0; subject && i < cfg->backoff_subjects_count; i++) {
        const char *e = cfg->backoff_subjects[i];
        size_t len = strlen(e);

        w = first_word(e, len);
        memcpy(pat, e, w);
        pat[w] = '\0';
        if (codec_subject_match(pat, subject, subject_len) &&
            policy_delays_parse(e + w, len - w, out, NULL, 0) == SC_OK)
            return "subject";
    }
    for (i = 0; i < cfg->backoff_categories_count; i++) {
        const char *e = cfg->backoff_categories[i];
        size_t len = strlen(e);
        policy_category c;

        w = first_word(e, len);
        if (policy_category_parse(e, w, &c) == SC_OK && c == cat &&
            policy_delays_parse(e + w, len - w, out, NULL, 0) == SC_OK)
            return "category";
    }
    return NULL;
}

static bool
check_index(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > 255 || s[0] == '-' || s[0] == '_' || s[0] == '+')
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (i = 0; i < len; i++) {
        if ((s[i] >= 'A' && s[i] <= 'Z') || strchr("\\/*?\"<>|,#: ", s[i]) != NULL)
            return false;
    }
    return true;
}

/*
 * An http.auth.users entry: name:role:hash, the name 1-64 of A-Z a-z 0-9
 * _ . @ -, the role viewer or operator, the hash a crypt(3) string whose
 * method libxcrypt knows ($y$, $6$, $5$, $2b$ ...; not the old DES form).
 */
static bool
check_auth_user(const char *s, size_t len)
{
    char hash[CONFIG_MAX_STRING + 1];
    const char *end = s + len, *c1 = memchr(s, ':', len), *c2, *role;
    size_t n;
    int cs;

    if (!c1 || c1 == s || c1 - s > 64)
        return false;
    for (const char *p = s; p < c1; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '@' && *p != '-')
            return false;
    role = c1 + 1;
    c2 = memchr(role, ':', (size_t)(end - role));
    if (!c2 || !((c2 - role == 6 && memcmp(role, "viewer", 6) == 0) ||
                 (c2 - role == 8 && memcmp(role, "operator", 8) == 0)))
        return false;
    n = (size_t)(end - (c2 + 1));
    if (n < 4 || n > CONFIG_MAX_STRING || c2[1] != '$')
        return false;
    memcpy(hash, c2 + 1, n);
    hash[n] = '\0';
    cs = crypt_checksalt(hash);
    if (cs != CRYPT_SALT_OK && cs != CRYPT_SALT_METHOD_LEGACY)
        return false;
    {
        /*
         * A whole hash, not a setting: its last '$' part holds the hash (22+
         * characters in every method: a salt alone never matches any password).
         * A cost that stalls the loop is refused: sha-crypt rounds at most
         * 100,000 (5,000 by default, about 2 ms), bcrypt cost at most 12.
         */
        const char *last = strrchr(hash, '$'), *r = strstr(hash, "$rounds=");
        if (!last || strlen(last + 1) < 22)
            return false;
        if (r && (hash[1] == '5' || hash[1] == '6') && strtoll(r + 8, NULL, 10) > 100000)
            return false;
        if (hash[1] == '2' && strlen(hash) > 6 && atoi(hash + 4) > 12)
            return false;
    }
    return true;
}

/* secrets.mask_keys entries (and key file paths): 1-128 bytes, no control character. */
static bool
check_mask_key(const char *s, size_t len)
{
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* An http:// or https:// URL with a host and no whitespace. */
static bool
check_webhook(const char *s, size_t len)
{
    size_t i, skip;

    if (len > 7 && strncmp(s, "http://", 7) == 0)
        skip = 7;
    else if (len > 8 && strncmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return false;
    if (s[skip] == '/')
        return false;
    for (i = skip; i < len; i++) {
        if (is_space(s[i]))
            return false;
    }
    return true;
}

/* "<category>:<status>=<duration>", as config_retention_parse() reads it. */
static bool
check_retention(const char *s, size_t len)
{
    return config_retention_parse(s, len, NULL, NULL, NULL) == SC_OK;
}

/*
 * "", what check_webhook() accepts, or the mask --print-config shows for a
 * secret (so its output loads again; the sidecar then refuses to start).
 */
static bool
check_webhook_opt(const char *s, size_t len)
{
    return len == 0 || check_webhook(s, len) || (len == 8 && memcmp(s, "********", 8) == 0);
}

/* "" or host:port with a port 1-65535; an IPv6 host goes in brackets. */
static bool
check_listen(const char *s, size_t len)
{
    size_t colon, i, hlen;
    unsigned long port = 0;

    if (len == 0)
        return true;
    for (colon = len; colon > 0 && s[colon - 1] != ':'; colon--)
        ;
    if (colon == 0)
        return false;
    colon--;
    hlen = colon;
    if (hlen == 0 || len - colon - 1 == 0 || len - colon - 1 > 5)
        return false;
    for (i = colon + 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    if (port == 0 || port > 65535)
        return false;
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']')
            return false;
        for (i = 1; i < hlen - 1; i++) {
            char c = s[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.' || c == '%'))
                return false;
        }
        return true;
    }
    for (i = 0; i < hlen; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

/* The table. */

size_t
config_key_count(void)
{
    return NKEYS;
}

const struct config_key_info *
config_key_get(size_t i)
{
    return i < NKEYS ? &keys[i].info : NULL;
}

const struct config_key *
config_key_lookup(const char *path, size_t len)
{
    size_t i;

    for (i = 0; i < NKEYS; i++) {
        if (strlen(keys[i].info.path) == len && memcmp(keys[i].info.path, path, len) == 0)
            return &keys[i];
    }
    return NULL;
}

const struct config_key_info *
config_key_find(const char *path)
{
    const struct config_key *k = config_key_lookup(path, strlen(path));

    return k != NULL ? &k->info : NULL;
}

bool
config_key_is_section(const char *path, size_t len)
{
    size_t i;

    if (len == 0)
        return false;
    for (i = 0; i < NKEYS; i++) {
        const char *p = keys[i].info.path;
        if (strlen(p) > len && memcmp(p, path, len) == 0 && p[len] == '.')
            return true;
    }
    return false;
}

size_t
config_key_index(const struct config_key *k)
{
    return (size_t)(k - keys);
}

size_t
config_env_name(const char *path, char *out, size_t outlen)
{
    size_t n = 0, i;

    for (i = 0; path[i] != '\0'; i++)
        ;
    n = 4 + i;
    if (outlen == 0)
        return n;
    snprintf(out, outlen, "DLQ_%s", path);
    for (i = 4; out[i] != '\0'; i++) {
        if (out[i] == '.')
            out[i] = '_';
        else if (out[i] >= 'a' && out[i] <= 'z')
            out[i] = (char)(out[i] - 'a' + 'A');
    }
    return n;
}

/* Is name (nlen bytes, e.g. "DLQ_NATS_URL") the environment name of path? */
static bool
env_matches(const char *path, const char *name, size_t nlen)
{
    size_t i;

    if (nlen < 4 || memcmp(name, "DLQ_", 4) != 0)
        return false;
    name += 4;
    nlen -= 4;
    for (i = 0; i < nlen; i++) {
        char want = path[i];
        if (want == '\0')
            return false;
        if (want == '.')
            want = '_';
        else if (want >= 'a' && want <= 'z')
            want = (char)(want - 'a' + 'A');
        if (name[i] != want)
            return false;
    }
    return path[nlen] == '\0';
}

const struct config_key *
config_key_for_env(const char *name, size_t nlen)
{
    size_t i;

    for (i = 0; i < NKEYS; i++) {
        if (env_matches(keys[i].info.path, name, nlen))
            return &keys[i];
    }
    return NULL;
}

/* Field access. */

static void *
field(struct config *cfg, size_t off)
{
    return (char *)cfg + off;
}

static const void *
cfield(const struct config *cfg, size_t off)
{
    return (const char *)cfg + off;
}

static int64_t
int_get(const struct config *cfg, const struct config_key *k)
{
    const void *p = cfield(cfg, k->off);

    switch (k->width) {
    case CONFIG_W_I64: return *(const int64_t *)p;
    case CONFIG_W_INT: return *(const int *)p;
    case CONFIG_W_SIZE: return (int64_t)*(const size_t *)p;
    case CONFIG_W_UINT: return *(const unsigned *)p;
    case CONFIG_W_NONE: break;
    }
    return 0;
}

/* n is within the key's range, which fits the field's type. */
static void
int_put(struct config *cfg, const struct config_key *k, int64_t n)
{
    void *p = field(cfg, k->off);

    switch (k->width) {
    case CONFIG_W_I64: *(int64_t *)p = n; break;
    case CONFIG_W_INT: *(int *)p = (int)n; break;
    case CONFIG_W_SIZE: *(size_t *)p = (size_t)n; break;
    case CONFIG_W_UINT: *(unsigned *)p = (unsigned)n; break;
    case CONFIG_W_NONE: break;
    }
}

/* Index into k->info.names of the current value. */
static size_t
enum_get(const struct config *cfg, const struct config_key *k)
{
    const void *p = cfield(cfg, k->off);

    switch (k->ekind) {
    case CONFIG_E_STRATEGY: return (size_t)*(const policy_strategy *)p;
    case CONFIG_E_RETRY_AUTO:
        if (!*(const bool *)cfield(cfg, k->aux))
            return 0;
        return (size_t)*(const policy_retry *)p + 1;
    case CONFIG_E_OUTCOME: return (size_t)*(const config_outcome *)p;
    case CONFIG_E_STORE: return (size_t)*(const config_store *)p;
    case CONFIG_E_STORE_ACK: return (size_t)*(const config_store_ack *)p;
    case CONFIG_E_INGEST_MODE: return (size_t)*(const config_ingest_mode *)p;
    case CONFIG_E_STORAGE: return (size_t)*(const config_storage *)p;
    case CONFIG_E_LEVEL: return (size_t)*(const config_log_level *)p;
    case CONFIG_E_FORMAT: return (size_t)*(const config_log_format *)p;
    case CONFIG_E_NONE: break;
    }
    return 0;
}

/* Name of k's current value; "unknown" if the field holds something no name stands for. */
static const char *
enum_name(const struct config *cfg, const struct config_key *k)
{
    size_t v = enum_get(cfg, k), i;

    for (i = 0; i <= v; i++) {
        if (k->info.names[i] == NULL)
            return "unknown";
    }
    return k->info.names[v];
}

static void
enum_put(struct config *cfg, const struct config_key *k, size_t i)
{
    void *p = field(cfg, k->off);

    switch (k->ekind) {
    case CONFIG_E_STRATEGY: *(policy_strategy *)p = (policy_strategy)i; break;
    case CONFIG_E_RETRY_AUTO:
        *(bool *)field(cfg, k->aux) = i > 0;
        *(policy_retry *)p = i > 0 ? (policy_retry)(i - 1) : POLICY_NEVER;
        break;
    case CONFIG_E_OUTCOME: *(config_outcome *)p = (config_outcome)i; break;
    case CONFIG_E_STORE: *(config_store *)p = (config_store)i; break;
    case CONFIG_E_STORE_ACK: *(config_store_ack *)p = (config_store_ack)i; break;
    case CONFIG_E_INGEST_MODE: *(config_ingest_mode *)p = (config_ingest_mode)i; break;
    case CONFIG_E_STORAGE: *(config_storage *)p = (config_storage)i; break;
    case CONFIG_E_LEVEL: *(config_log_level *)p = (config_log_level)i; break;
    case CONFIG_E_FORMAT: *(config_log_format *)p = (config_log_format)i; break;
    case CONFIG_E_NONE: break;
    }
}

/* Parsing text values. */

/* Plain decimal with an optional '-': 0 ok, -1 not an integer, 1 overflow. */
static int
parse_int(const char *s, size_t len, int64_t *out)
{
    bool neg = false;
    uint64_t n = 0, lim;
    size_t i = 0;

    if (len > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len)
        return -1;
    lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return -1;
        d = (unsigned)(s[i] - '0');
        if (n > (lim - d) / 10) {
            for (i++; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                    return -1;
            }
            return 1;
        }
        n = n * 10 + d;
    }
    if (neg)
        *out = n == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)n;
    else
        *out = (int64_t)n;
    return 0;
}

static bool
parse_double(const char *s, size_t len, double *out)
{
    char buf[64], *end;
    size_t i;
    bool digit = false;

    if (len == 0 || len >= sizeof(buf))
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            digit = true;
        else if (c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E')
            return false;
    }
    if (!digit)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    *out = strtod(buf, &end);
    if (*out == 0.0)
        *out = 0.0; /* no "-0" */
    return end == buf + len && isfinite(*out);
}

static int
parse_bool(const char *s, size_t len)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    size_t i;

    for (i = 0; i < SC_ARRAY_LEN(yes); i++) {
        if (equal_nocase(s, len, yes[i]))
            return 1;
        if (equal_nocase(s, len, no[i]))
            return 0;
    }
    return -1;
}

void
config_join_names(char *out, size_t outlen, const char *const *names)
{
    size_t o = 0, i;

    out[0] = '\0';
    for (i = 0; names[i] != NULL && o < outlen; i++) {
        int n = snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", names[i]);
        if (n < 0)
            break;
        o += (size_t)n;
    }
}

static void
list_free(char **items)
{
    size_t i;

    if (items == NULL)
        return;
    for (i = 0; items[i] != NULL; i++)
        free(items[i]);
    free(items);
}

void
config_list_replace(struct config *cfg, const struct config_key *k, char **items, size_t n)
{
    char ***slot = field(cfg, k->off);

    list_free(*slot);
    *slot = items;
    *(size_t *)field(cfg, k->aux) = n;
}

/*
 * The setters below show a refused value through config_show() only when
 * they refuse it: masking and quoting every value that loads (each default,
 * each file value) was most of what config_init() and a load cost.
 */

/* Formats "<path>: '<shown value>' <rest>" into err: what most refusals say. */
static sc_status
refuse_value(const struct config_key *k, const char *v, size_t len, const char *rest, char *err,
             size_t errlen)
{
    char shown[300];

    if (k->info.type == CONFIG_TYPE_SECRET) { /* never echo a secret */
        config_errf(err, errlen, "%s: the value %s", k->info.path, rest);
        return SC_EINVAL;
    }
    config_show(shown, sizeof(shown), v, len);
    config_errf(err, errlen, "%s: '%s' %s", k->info.path, shown, rest);
    return SC_EINVAL;
}

sc_status
config_list_check(const struct config_key *k, const char *v, size_t len, char *const *prev,
                  size_t nprev, char *err, size_t errlen)
{
    char rest[200];

    if (len == 0) {
        config_errf(err, errlen, "%s: an entry is empty", k->info.path);
        return SC_EINVAL;
    }
    if (len > CONFIG_MAX_STRING) {
        config_errf(err, errlen, "%s: an entry is longer than %d bytes", k->info.path,
                    CONFIG_MAX_STRING);
        return SC_EINVAL;
    }
    if (!config_text_ok(v, len) || (k->check != NULL && !k->check(v, len))) {
        snprintf(rest, sizeof(rest), "is not %s", k->what != NULL ? k->what : "valid text");
        return refuse_value(k, v, len, rest, err, errlen);
    }
    if (k->check == check_auth_user) { /* one entry per user: which hash and role would count? */
        size_t nl = (size_t)((const char *)memchr(v, ':', len) - v);
        for (size_t i = 0; i < nprev; i++)
            if (strncmp(prev[i], v, nl) == 0 && prev[i][nl] == ':') {
                config_errf(err, errlen, "%s: the user '%.*s' is given twice (one entry per user)",
                            k->info.path, (int)nl, v);
                return SC_EINVAL;
            }
    }
    return SC_OK;
}

/* Splits comma-separated text into a new list (entries trimmed). */
static sc_status
list_set_text(struct config *cfg, const struct config_key *k, const char *v, size_t len,
              char *err, size_t errlen)
{
    sc_status s = SC_EINVAL;
    char **items = NULL;
    size_t n = 0, i = 0, cap = 1;

    for (i = 0; i < len; i++) {
        if (v[i] == ',')
            cap++;
    }
    if (cap > CONFIG_MAX_LIST) {
        config_errf(err, errlen, "%s: more than %d entries", k->info.path, CONFIG_MAX_LIST);
        goto done;
    }
    items = sc_xcalloc(cap + 1, sizeof(*items));
    i = 0;
    while (len > 0 && i <= len) {
        size_t a = i, b;
        while (i < len && v[i] != ',')
            i++;
        b = i;
        while (a < b && is_space(v[a]))
            a++;
        while (b > a && is_space(v[b - 1]))
            b--;
        if (config_list_check(k, v + a, b - a, items, n, err, errlen) != SC_OK)
            goto done;
        items[n++] = sc_xstrndup(v + a, b - a);
        i++;
    }
    config_list_replace(cfg, k, items, n);
    items = NULL;
    s = SC_OK;
done:
    list_free(items);
    return s;
}

static void
rules_free(struct config_rule *rules, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(rules[i].id);
        free(rules[i].pattern);
    }
    free(rules);
}

static void
templates_free(struct config_template *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].backoff);
        free(t[i].retry_subject);
    }
    free(t);
}

void
config_templates_replace(struct config *cfg, struct config_template *tpls, size_t n)
{
    templates_free(cfg->templates, cfg->ntemplates);
    cfg->templates = tpls;
    cfg->ntemplates = n;
}

bool
config_template_name_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > 64)
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

const struct config_template *
config_template_find(const struct config *cfg, const char *name, size_t len)
{
    for (size_t i = 0; name && i < cfg->ntemplates; i++) {
        if (strlen(cfg->templates[i].name) == len && memcmp(cfg->templates[i].name, name, len) == 0)
            return &cfg->templates[i];
    }
    return NULL;
}

void
config_rules_replace(struct config *cfg, struct config_rule *rules, size_t n)
{
    rules_free(cfg->rules, cfg->nrules);
    cfg->rules = rules;
    cfg->nrules = n;
}

static sc_status
set_bool(struct config *cfg, const struct config_key *k, const char *v, size_t len, char *err,
         size_t errlen)
{
    int r = parse_bool(v, len);

    if (r < 0)
        return refuse_value(k, v, len, "is not a boolean (true/false)", err, errlen);
    *(bool *)field(cfg, k->off) = r == 1;
    return SC_OK;
}

static sc_status
set_int(struct config *cfg, const struct config_key *k, const char *v, size_t len, char *err,
        size_t errlen)
{
    const struct config_key_info *ki = &k->info;
    char shown[300];
    int64_t n;
    int r = parse_int(v, len, &n);

    if (r < 0) {
        config_show(shown, sizeof(shown), v, len);
        config_errf(err, errlen, "%s: '%s' is not an integer (%" PRId64 "-%" PRId64 ")", ki->path,
                    shown, ki->min, ki->max);
        return SC_EINVAL;
    }
    if (r > 0 || n < ki->min || n > ki->max) {
        config_show(shown, sizeof(shown), v, len);
        config_errf(err, errlen, "%s: %s is out of range %" PRId64 "-%" PRId64, ki->path, shown,
                    ki->min, ki->max);
        return SC_EINVAL;
    }
    if (ki->deprecated)
        cfg->saw_retry_interval_seconds = true;
    else
        int_put(cfg, k, n);
    return SC_OK;
}

static sc_status
set_double(struct config *cfg, const struct config_key *k, const char *v, size_t len, char *err,
           size_t errlen)
{
    const struct config_key_info *ki = &k->info;
    char shown[300];
    double d;

    if (!parse_double(v, len, &d)) {
        config_show(shown, sizeof(shown), v, len);
        config_errf(err, errlen, "%s: '%s' is not a number (%g-%g)", ki->path, shown, ki->dmin,
                    ki->dmax);
        return SC_EINVAL;
    }
    if (d < ki->dmin || d > ki->dmax) {
        config_show(shown, sizeof(shown), v, len);
        config_errf(err, errlen, "%s: %s is out of range %g-%g", ki->path, shown, ki->dmin,
                    ki->dmax);
        return SC_EINVAL;
    }
    *(double *)field(cfg, k->off) = d;
    return SC_OK;
}

static sc_status
set_enum(struct config *cfg, const struct config_key *k, const char *v, size_t len, char *err,
         size_t errlen)
{
    char names[200], rest[220];
    size_t i;

    if (len == 0 && k->ekind == CONFIG_E_RETRY_AUTO) {
        enum_put(cfg, k, 0);
        return SC_OK;
    }
    for (i = 0; k->info.names[i] != NULL; i++) {
        if (equal_nocase(v, len, k->info.names[i])) {
            enum_put(cfg, k, i);
            return SC_OK;
        }
    }
    config_join_names(names, sizeof(names), k->info.names);
    snprintf(rest, sizeof(rest), "is not one of %s", names);
    return refuse_value(k, v, len, rest, err, errlen);
}

/* STRING and SECRET keys: checked, then copied (the old value is freed). */
static sc_status
set_string(struct config *cfg, const struct config_key *k, const char *v, size_t len, char *err,
           size_t errlen)
{
    char **slot = field(cfg, k->off), rest[200];

    if (k->check != NULL && !k->check(v, len)) {
        snprintf(rest, sizeof(rest), "is not %s", k->what);
        return refuse_value(k, v, len, rest, err, errlen);
    }
    free(*slot);
    *slot = sc_xstrndup(v, len);
    return SC_OK;
}

sc_status
config_key_set(struct config *cfg, const struct config_key *k, const char *v, size_t len,
               char *err, size_t errlen)
{
    const struct config_key_info *ki = &k->info;

    if (ki->type == CONFIG_TYPE_RULES || ki->type == CONFIG_TYPE_TEMPLATES) {
        config_errf(err, errlen, "%s: can only be set in the config file", ki->path);
        return SC_EINVAL;
    }
    if (ki->type == CONFIG_TYPE_LIST)
        return list_set_text(cfg, k, v, len, err, errlen);
    if (len > CONFIG_MAX_STRING) {
        config_errf(err, errlen, "%s: the value is longer than %d bytes", ki->path,
                    CONFIG_MAX_STRING);
        return SC_EINVAL;
    }
    if (!config_text_ok(v, len))
        return refuse_value(k, v, len, "contains control characters or invalid UTF-8", err,
                            errlen);
    switch (ki->type) {
    case CONFIG_TYPE_BOOL: return set_bool(cfg, k, v, len, err, errlen);
    case CONFIG_TYPE_INT: return set_int(cfg, k, v, len, err, errlen);
    case CONFIG_TYPE_DOUBLE: return set_double(cfg, k, v, len, err, errlen);
    case CONFIG_TYPE_ENUM: return set_enum(cfg, k, v, len, err, errlen);
    case CONFIG_TYPE_STRING:
    case CONFIG_TYPE_SECRET: return set_string(cfg, k, v, len, err, errlen);
    case CONFIG_TYPE_LIST:
    case CONFIG_TYPE_RULES:
    case CONFIG_TYPE_TEMPLATES: break;
    }
    return SC_EINVAL;
}

/*
 * The defaults are parsed from the table's text once, into `defaults`, and
 * config_init() copies that: parsing and checking ~80 values for every
 * config_init() was most of what a config load cost (and of the config
 * fuzzer's time, which starts two configs per input). Built under
 * pthread_once(), so any thread may call config_init(); never freed.
 */
static struct config defaults;
static pthread_once_t defaults_once = PTHREAD_ONCE_INIT;

static void
defaults_build(void)
{
    char err[CONFIG_ERR_MAX];
    size_t i;

    codec_limits_default(&defaults.limits);
    policy_backoff_default(&defaults.backoff);
    for (i = 0; i < NKEYS; i++) {
        if (keys[i].def == NULL)
            continue;
        if (config_key_set(&defaults, &keys[i], keys[i].def, strlen(keys[i].def), err,
                           sizeof(err))) {
            fprintf(stderr, "config_init: bad default: %s\n", err);
            abort();
        }
    }
}

/* A copy of the NULL-terminated list items (n entries); NULL stays NULL. */
static char **
list_copy(char *const *items, size_t n)
{
    char **copy;
    size_t i;

    if (items == NULL)
        return NULL;
    copy = sc_xcalloc(n + 1, sizeof(*copy));
    for (i = 0; i < n; i++)
        copy[i] = sc_xstrdup(items[i]);
    return copy;
}

void
config_init(struct config *cfg)
{
    size_t i;

    pthread_once(&defaults_once, defaults_build);
    *cfg = defaults;
    for (i = 0; i < NKEYS; i++) {
        const struct config_key *k = &keys[i];
        if (k->info.type == CONFIG_TYPE_STRING || k->info.type == CONFIG_TYPE_SECRET) {
            char **slot = field(cfg, k->off);
            if (*slot != NULL)
                *slot = sc_xstrdup(*slot);
        } else if (k->info.type == CONFIG_TYPE_LIST) {
            char ***slot = field(cfg, k->off);
            *slot = list_copy(*slot, *(const size_t *)cfield(cfg, k->aux));
        }
    }
    cfg->rules = NULL; /* the defaults have none */
    cfg->nrules = 0;
    cfg->templates = NULL;
    cfg->ntemplates = 0;
}

void
config_destroy(struct config *cfg)
{
    size_t i;

    for (i = 0; i < NKEYS; i++) {
        const struct config_key *k = &keys[i];
        if (k->info.type == CONFIG_TYPE_STRING || k->info.type == CONFIG_TYPE_SECRET)
            free(*(char **)field(cfg, k->off));
    }
    list_free(cfg->retry_allowed_subjects);
    list_free(cfg->retry_stored_subjects);
    list_free(cfg->backoff_categories);
    list_free(cfg->backoff_subjects);
    list_free(cfg->priority_subjects);
    list_free(cfg->advisories_streams);
    list_free(cfg->alerts_webhook_urls);
    list_free(cfg->retention_categories);
    list_free(cfg->http_auth_users);
    list_free(cfg->secrets_mask_keys);
    list_free(cfg->secrets_old_key_files);
    rules_free(cfg->rules, cfg->nrules);
    templates_free(cfg->templates, cfg->ntemplates);
    memset(cfg, 0, sizeof(*cfg));
}

sc_status
config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    const struct config_key *k;
    char shown[300];

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    k = config_key_lookup(key, strlen(key));
    if (k == NULL) {
        config_show(shown, sizeof(shown), key, strlen(key));
        config_errf(err, errlen, "%s: unknown key", shown);
        return SC_EINVAL;
    }
    if (value == NULL)
        value = "";
    return config_key_set(cfg, k, value, strlen(value), err, errlen);
}

/* Text form of a value (config_get()). */

/* Appends text to out at *o (capacity outlen); false when it did not fit. */
static bool
put_text(char *out, size_t outlen, size_t *o, const char *text)
{
    size_t n = strlen(text);

    if (*o < outlen) {
        size_t room = outlen - *o - 1;
        memcpy(out + *o, text, n < room ? n : room);
        out[*o + (n < room ? n : room)] = '\0';
    }
    *o += n;
    return *o < outlen;
}

static void
double_text(double d, char *buf, size_t buflen)
{
    int prec;

    if (d > -1e15 && d < 1e15 && d == (double)(long long)d) { /* whole: 80, not 8e+01 */
        snprintf(buf, buflen, "%.0f", d);
        return;
    }
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, buflen, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
}

sc_status
config_get(const struct config *cfg, const char *key, char *out, size_t outlen)
{
    const struct config_key *k = config_key_lookup(key, strlen(key));
    char num[40];
    size_t o = 0, i;
    bool fit = true;

    if (outlen > 0)
        out[0] = '\0';
    if (k == NULL)
        return SC_ENOTFOUND;
    switch (k->info.type) {
    case CONFIG_TYPE_BOOL:
        fit = put_text(out, outlen, &o, *(const bool *)cfield(cfg, k->off) ? "true" : "false");
        break;
    case CONFIG_TYPE_INT:
        if (k->info.deprecated)
            return SC_EINVAL;
        snprintf(num, sizeof(num), "%" PRId64, int_get(cfg, k));
        fit = put_text(out, outlen, &o, num);
        break;
    case CONFIG_TYPE_DOUBLE:
        double_text(*(const double *)cfield(cfg, k->off), num, sizeof(num));
        fit = put_text(out, outlen, &o, num);
        break;
    case CONFIG_TYPE_ENUM: fit = put_text(out, outlen, &o, enum_name(cfg, k)); break;
    case CONFIG_TYPE_STRING:
    case CONFIG_TYPE_SECRET: {
        const char *str = *(char *const *)cfield(cfg, k->off);
        fit = put_text(out, outlen, &o, str != NULL ? str : "");
        break;
    }
    case CONFIG_TYPE_LIST: {
        char *const *items = *(char **const *)cfield(cfg, k->off);
        size_t n = *(const size_t *)cfield(cfg, k->aux);
        for (i = 0; i < n && items != NULL; i++) {
            fit = (i == 0 || put_text(out, outlen, &o, ",")) && fit;
            fit = put_text(out, outlen, &o, items[i]) && fit;
        }
        break;
    }
    case CONFIG_TYPE_RULES:
    case CONFIG_TYPE_TEMPLATES: return SC_EINVAL;
    }
    return fit ? SC_OK : SC_ETOOBIG;
}

/* Printing. */

/* Writes s as a YAML double-quoted scalar that reads back byte for byte. */
static void
put_quoted(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), i = 0, n;
    uint32_t cp;

    fputc('"', f);
    while (i < len) {
        n = sc_utf8_next(p + i, len - i, &cp);
        if (n == 0) {
            /* Never stored (values are checked), but stay well-formed: U+FFFD. */
            fputs("\\uFFFD", f);
            i++;
            continue;
        }
        if (cp == '"' || cp == '\\') {
            fputc('\\', f);
            fputc((int)cp, f);
        } else if ((cp >= 0x20 && cp < 0x7f) ||
                   (cp >= 0xa0 && cp <= 0xd7ff && cp != 0x2028 && cp != 0x2029) ||
                   (cp >= 0xe000 && cp <= 0xfffd && cp != 0xfeff) || cp >= 0x10000) {
            fwrite(p + i, 1, n, f);
        } else {
            fprintf(f, "\\u%04X", (unsigned)cp);
        }
        i += n;
    }
    fputc('"', f);
}

/* put_quoted() of s with the passwords inside its URLs masked (config_redact()). */
static void
put_redacted(FILE *f, const char *s)
{
    size_t len = strlen(s), n = config_redact(s, len, NULL, 0);
    char *masked = sc_xmalloc(n + 1);

    config_redact(s, len, masked, n + 1);
    put_quoted(f, masked);
    free(masked);
}

/* put_quoted() of an http.auth.users entry "name:role:hash" as "name:role:********". */
static void
put_user_masked(FILE *f, const char *s)
{
    const char *c1 = strchr(s, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    char *shown;

    if (!c2) { /* not an entry check_auth_user() took: show nothing of it */
        put_quoted(f, "********");
        return;
    }
    shown = sc_xmalloc((size_t)(c2 - s) + 10);
    memcpy(shown, s, (size_t)(c2 - s) + 1);
    memcpy(shown + (c2 - s) + 1, "********", 9);
    put_quoted(f, shown);
    free(shown);
}

static void
put_double(FILE *f, double d)
{
    char buf[40];

    double_text(d, buf, sizeof(buf));
    fputs(buf, f);
}

/* Writes k's value as YAML; rules go on their own lines below a key indented by indent. */
static void
put_value(FILE *f, const struct config *cfg, const struct config_key *k, bool mask, int indent)
{
    const char *str;
    size_t i;

    switch (k->info.type) {
    case CONFIG_TYPE_BOOL:
        fputs(*(const bool *)cfield(cfg, k->off) ? "true" : "false", f);
        break;
    case CONFIG_TYPE_INT: fprintf(f, "%" PRId64, int_get(cfg, k)); break;
    case CONFIG_TYPE_DOUBLE: put_double(f, *(const double *)cfield(cfg, k->off)); break;
    case CONFIG_TYPE_ENUM: fputs(enum_name(cfg, k), f); break;
    case CONFIG_TYPE_STRING:
    case CONFIG_TYPE_SECRET:
        str = *(char *const *)cfield(cfg, k->off);
        if (str == NULL)
            str = "";
        if (mask && k->info.type == CONFIG_TYPE_SECRET && str[0] != '\0')
            str = "********";
        if (mask)
            put_redacted(f, str);
        else
            put_quoted(f, str);
        break;
    case CONFIG_TYPE_LIST: {
        char *const *items = *(char **const *)cfield(cfg, k->off);
        size_t n = *(const size_t *)cfield(cfg, k->aux);
        fputc('[', f);
        for (i = 0; i < n && items != NULL; i++) {
            if (i > 0)
                fputs(", ", f);
            if (mask && k->check == check_auth_user) /* name:role shown, the crypt(3) hash masked as a secret */
                put_user_masked(f, items[i]);
            else if (mask)
                put_redacted(f, items[i]);
            else
                put_quoted(f, items[i]);
        }
        fputc(']', f);
        break;
    }
    case CONFIG_TYPE_RULES:
        if (cfg->nrules == 0) {
            fputs("[]", f);
            break;
        }
        for (i = 0; i < cfg->nrules; i++) {
            const struct config_rule *r = &cfg->rules[i];
            fprintf(f, "\n%*s- {id: ", indent + 2, "");
            put_quoted(f, r->id);
            fputs(", pattern: ", f);
            put_quoted(f, r->pattern);
            fprintf(f, ", category: %s, field: %s}", policy_category_name(r->category),
                    (unsigned)r->field < POLICY_MATCH_COUNT ? policy_match_field_names[r->field]
                                                            : "any");
        }
        break;
    case CONFIG_TYPE_TEMPLATES:
        if (cfg->ntemplates == 0) {
            fputs("{}", f);
            break;
        }
        for (i = 0; i < cfg->ntemplates; i++) {
            const struct config_template *t = &cfg->templates[i];
            const char *sep = "";
            fprintf(f, "\n%*s", indent + 2, "");
            put_quoted(f, t->name);
            fputs(": {", f);
            if (t->has_policy) {
                fprintf(f, "policy: %s", policy_retry_name(t->policy));
                sep = ", ";
            }
            if (t->has_max_retries) {
                fprintf(f, "%smax_retries: %d", sep, t->max_retries);
                sep = ", ";
            }
            if (t->backoff) {
                fprintf(f, "%sbackoff: [", sep);
                for (const char *c = t->backoff; *c; c++) {
                    if (*c == ',')
                        fputs(", ", f);
                    else
                        fputc(*c, f);
                }
                fputc(']', f);
                sep = ", ";
            }
            if (t->has_priority) {
                fprintf(f, "%spriority: %s", sep, policy_priority_name(t->priority));
                sep = ", ";
            }
            if (t->retry_subject) {
                fprintf(f, "%sretry_subject: ", sep);
                put_quoted(f, t->retry_subject);
            }
            fputc('}', f);
        }
        break;
    }
}

/* Number of '.'-separated components of p. */
static size_t
depth_of(const char *p)
{
    size_t n = 1;

    for (; *p != '\0'; p++)
        n += *p == '.';
    return n;
}

/* Length of component i of p, and its start in *start. */
static size_t
component(const char *p, size_t i, const char **start)
{
    const char *e;

    while (i-- > 0)
        p = strchr(p, '.') + 1;
    e = strchr(p, '.');
    *start = p;
    return e != NULL ? (size_t)(e - p) : strlen(p);
}

void
config_print(const struct config *cfg, FILE *f)
{
    const char *prev = NULL;
    size_t i, j;

    fputs("# dlq-sidecar effective configuration (secrets masked)\n", f);
    for (i = 0; i < NKEYS; i++) {
        const struct config_key *k = &keys[i];
        const char *path = k->info.path, *c, *pc;
        size_t nd = depth_of(path), common = 0, cl;
        if (k->info.deprecated)
            continue;
        /* Sections shared with the previous key stay open. */
        if (prev != NULL) {
            size_t pd = depth_of(prev);
            while (common + 1 < nd && common + 1 < pd) {
                cl = component(path, common, &c);
                if (component(prev, common, &pc) != cl || memcmp(c, pc, cl) != 0)
                    break;
                common++;
            }
        }
        for (j = common; j + 1 < nd; j++) {
            cl = component(path, j, &c);
            fprintf(f, "%*s%.*s:\n", (int)(2 * j), "", (int)cl, c);
        }
        cl = component(path, nd - 1, &c);
        fprintf(f, "%*s%.*s:", (int)(2 * (nd - 1)), "", (int)cl, c);
        if ((k->info.type != CONFIG_TYPE_RULES || cfg->nrules == 0) &&
            (k->info.type != CONFIG_TYPE_TEMPLATES || cfg->ntemplates == 0))
            fputc(' ', f);
        put_value(f, cfg, k, true, (int)(2 * (nd - 1)));
        fputc('\n', f);
        prev = path;
    }
}

static const char *
type_hint(const struct config_key *k)
{
    switch (k->info.type) {
    case CONFIG_TYPE_BOOL: return "BOOL";
    case CONFIG_TYPE_INT: return "N";
    case CONFIG_TYPE_DOUBLE: return "X";
    case CONFIG_TYPE_STRING:
    case CONFIG_TYPE_SECRET: return "TEXT";
    case CONFIG_TYPE_ENUM: return "NAME";
    case CONFIG_TYPE_LIST: return "A,B,...";
    case CONFIG_TYPE_RULES:
    case CONFIG_TYPE_TEMPLATES: return "(file only)";
    }
    return "";
}

void
config_usage(FILE *f, const char *prog)
{
    struct config d;
    char env[CONFIG_MAX_PATH + 8], names[200], flag[CONFIG_MAX_PATH + 32];
    size_t i;

    config_init(&d);
    fprintf(f,
            "Usage: %s [--config FILE] [--print-config] [--KEY VALUE | --KEY=VALUE ...]\n"
            "       %s --help | --version\n"
            "\n"
            "  --config FILE    read the YAML configuration FILE (also DLQ_CONFIG=FILE)\n"
            "  --print-config   print the effective configuration (secrets masked) and exit\n"
            "  -h, --help       print this help and exit\n"
            "  --version        print the version and exit\n"
            "\n"
            "Configuration keys. Each is a flag --KEY, an environment variable DLQ_KEY\n"
            "(upper case, '.' -> '_') and a YAML path in the file (nested maps or dotted\n"
            "keys). Precedence: flags > environment > file > defaults. Lists are\n"
            "comma-separated in flags and the environment. Booleans: true/false, yes/no,\n"
            "on/off, 1/0.\n"
            "\n",
            prog, prog);
    for (i = 0; i < NKEYS; i++) {
        const struct config_key *k = &keys[i];
        const struct config_key_info *ki = &k->info;
        config_env_name(ki->path, env, sizeof(env));
        if (ki->file_only) {
            snprintf(flag, sizeof(flag), "%s %s", ki->path, type_hint(k));
            fprintf(f, "  %s\n      %s", flag, ki->help);
        } else {
            snprintf(flag, sizeof(flag), "--%s %s", ki->path, type_hint(k));
            fprintf(f, "  %-44s %s\n      %s", flag, env, ki->help);
        }
        switch (ki->type) {
        case CONFIG_TYPE_INT: fprintf(f, "; %" PRId64 "-%" PRId64, ki->min, ki->max); break;
        case CONFIG_TYPE_DOUBLE: fprintf(f, "; %g-%g", ki->dmin, ki->dmax); break;
        case CONFIG_TYPE_ENUM:
            config_join_names(names, sizeof(names), ki->names);
            fprintf(f, "; one of %s", names);
            break;
        case CONFIG_TYPE_RULES:
            fputs("; a sequence of {id, pattern, category, field: any|error|error_type}", f);
            break;
        case CONFIG_TYPE_TEMPLATES:
            fputs("; a mapping of name: {policy, max_retries, backoff: [delays], priority, retry_subject}", f);
            break;
        default: break;
        }
        if (!ki->deprecated && ki->type != CONFIG_TYPE_RULES && ki->type != CONFIG_TYPE_TEMPLATES) {
            fputs(" (default ", f);
            put_value(f, &d, k, true, 0);
            fputc(')', f);
        }
        fputc('\n', f);
    }
    config_destroy(&d);
}

sc_status
config_retention_parse(const char *s, size_t len, int *category, int *status, int64_t *seconds)
{
    static const char *const statuses[] = {"exhausted", "completed", "archived"};
    const char *colon = memchr(s, ':', len), *eq = memchr(s, '=', len), *end = s + len;
    policy_category c;
    int st = -1;
    int64_t v = 0, unit = 1;
    const char *p;

    if (!colon || !eq || eq < colon)
        return SC_EINVAL;
    if (policy_category_parse(s, (size_t)(colon - s), &c) != SC_OK)
        return SC_EINVAL;
    for (int i = 0; i < 3; i++) {
        if ((size_t)(eq - colon - 1) == strlen(statuses[i]) &&
            memcmp(colon + 1, statuses[i], strlen(statuses[i])) == 0)
            st = i;
    }
    if (st < 0 || eq + 1 == end)
        return SC_EINVAL;
    switch (end[-1]) {
    case 's': unit = 1; end--; break;
    case 'm': unit = 60; end--; break;
    case 'h': unit = 3600; end--; break;
    case 'd': unit = 86400; end--; break;
    default: break;
    }
    if (eq + 1 == end || end - (eq + 1) > 10)
        return SC_EINVAL;
    for (p = eq + 1; p < end; p++) {
        if (*p < '0' || *p > '9')
            return SC_EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v * unit > 315360000)
        return SC_EINVAL;
    if (category)
        *category = (int)c;
    if (status)
        *status = st;
    if (seconds)
        *seconds = v * unit;
    return SC_OK;
}
