/* doc.c - the task record as a JSON document in a store: exact-bytes fields, their reading back, and OpenSearch's mapping of it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist-internal.h"

/* ---- writing fields --------------------------------------------------------------------------- */

void
persist_doc_str(struct sc_jw *w, const char *k, const char *v, size_t len)
{
    char raw[PERSIST_DOC_KEY_MAX + 8];

    sc_jw_strn(w, k, v, len);
    if (!v || sc_utf8_valid(v, len, SC_UTF8_NO_NUL))
        return;
    /* JSON text cannot carry these bytes: their exact copy goes beside it. */
    snprintf(raw, sizeof(raw), "%s_raw", k);
    persist_doc_bytes(w, raw, v, len);
}

void
persist_doc_bytes(struct sc_jw *w, const char *k, const void *p, size_t len)
{
    sc_jw_key(w, k);
    if (!p) {
        sc_jw_raw(w, "null", 4);
        return;
    }
    sc_jw_raw(w, "\"", 1);
    if (!w->st)
        w->st = sc_base64_encode(w->b, p, len);
    sc_jw_raw(w, "\"", 1);
}

/* ---- reading fields back ---------------------------------------------------------------------- */

char *
persist_doc_get_str(const json_t *src, const char *k, size_t *len, struct sc_buf *tmp)
{
    char raw[PERSIST_DOC_KEY_MAX + 8];
    json_t *v;

    snprintf(raw, sizeof(raw), "%s_raw", k);
    v = json_object_get(src, raw);
    if (json_is_string(v)) {
        sc_buf_reset(tmp);
        if (sc_base64_decode(json_string_value(v), json_string_length(v), tmp) == SC_OK) {
            *len = tmp->len;
            return sc_xstrndup(tmp->data ? tmp->data : "", tmp->len);
        }
    }
    v = json_object_get(src, k);
    if (!json_is_string(v)) {
        *len = 0;
        return NULL;
    }
    *len = json_string_length(v);
    return sc_xstrndup(json_string_value(v), *len);
}

bool
persist_doc_get_bytes(const json_t *src, const char *k, char **out, size_t *len,
                      struct sc_buf *tmp)
{
    json_t *v = json_object_get(src, k);

    *out = NULL;
    *len = 0;
    if (!json_is_string(v))
        return false;
    sc_buf_reset(tmp);
    if (sc_base64_decode(json_string_value(v), json_string_length(v), tmp) != SC_OK)
        return false;
    *out = sc_xmalloc(tmp->len ? tmp->len : 1);
    if (tmp->len)
        memcpy(*out, tmp->data, tmp->len);
    *len = tmp->len;
    return true;
}

int64_t
persist_doc_get_int(const json_t *src, const char *k)
{
    json_t *v = json_object_get(src, k);

    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

int64_t
persist_doc_get_time(const json_t *src, const char *k)
{
    json_t *v = json_object_get(src, k);
    int64_t ms = 0;

    if (json_is_string(v))
        sc_parse_rfc3339(json_string_value(v), json_string_length(v), &ms);
    return ms;
}

/* ---- OpenSearch's view of the task document --------------------------------------------------- */

/*
 * The mapping of a task document: explicit and strict. Free-form values
 * (metadata, the task, history) are objects with "enabled": false: kept in
 * _source, never parsed into fields, so they cannot grow the mapping. Raw
 * bytes (the _raw twins of persist_doc_str(), the _mp copies) are binary
 * fields (base64, not indexed). A field the store mirror writes must be
 * named here, or OpenSearch refuses the document ("dynamic": "strict").
 */
const char persist_task_properties[] =
    "{\"schema\":{\"type\":\"integer\"},"
    "\"task_id\":{\"type\":\"keyword\"},"
    "\"task_id_raw\":{\"type\":\"binary\"},"
    "\"status\":{\"type\":\"keyword\"},"
    "\"parked\":{\"type\":\"boolean\"},"
    "\"subject\":{\"type\":\"keyword\",\"ignore_above\":4096},"
    "\"subject_raw\":{\"type\":\"binary\"},"
    "\"retry_subject\":{\"type\":\"keyword\",\"ignore_above\":4096},"
    "\"retry_subject_raw\":{\"type\":\"binary\"},"
    "\"park_reason\":{\"type\":\"text\"},"
    "\"park_reason_raw\":{\"type\":\"binary\"},"
    "\"error\":{\"type\":\"text\",\"fields\":{\"keyword\":{\"type\":\"keyword\",\"ignore_above\":1024}}},"
    "\"error_raw\":{\"type\":\"binary\"},"
    "\"error_type\":{\"type\":\"keyword\",\"ignore_above\":1024},"
    "\"error_type_raw\":{\"type\":\"binary\"},"
    "\"error_category\":{\"type\":\"keyword\"},"
    "\"classifier_rule\":{\"type\":\"keyword\"},"
    "\"classifier_rule_raw\":{\"type\":\"binary\"},"
    "\"retry_policy\":{\"type\":\"keyword\"},"
    "\"priority\":{\"type\":\"keyword\"},"
    "\"policy_override\":{\"type\":\"boolean\"},"
    "\"retry_count\":{\"type\":\"integer\"},"
    "\"max_retries\":{\"type\":\"integer\"},"
    "\"defer_streak\":{\"type\":\"integer\"},"
    "\"episode\":{\"type\":\"integer\"},"
    "\"episode_id\":{\"type\":\"long\"},"
    "\"stream_seq\":{\"type\":\"long\"},"
    "\"adv_seq\":{\"type\":\"long\"},"
    "\"max_retries_own\":{\"type\":\"boolean\"},"
    "\"backoff_ms\":{\"type\":\"long\"},"
    "\"depends_on\":{\"type\":\"keyword\"},"
    "\"waiting_for\":{\"type\":\"keyword\"},"
    "\"created_at\":{\"type\":\"date\"},"
    "\"updated_at\":{\"type\":\"date\"},"
    "\"last_attempt_at\":{\"type\":\"date\"},"
    "\"next_retry_at\":{\"type\":\"date\"},"
    "\"first_failed_at\":{\"type\":\"date\"},"
    "\"seq\":{\"type\":\"long\"},"
    "\"version\":{\"type\":\"long\"},"
    "\"partition\":{\"type\":\"integer\"},"
    "\"history\":{\"type\":\"object\",\"enabled\":false},"
    "\"metadata\":{\"type\":\"object\",\"enabled\":false},"
    "\"metadata_mp\":{\"type\":\"binary\"},"
    "\"repos\":{\"type\":\"keyword\",\"ignore_above\":1024},"
    "\"repos_mp\":{\"type\":\"binary\"},"
    "\"task\":{\"type\":\"object\",\"enabled\":false},"
    "\"task_mp\":{\"type\":\"binary\"},"
    "\"payload_raw\":{\"type\":\"boolean\"},"
    "\"payload_missing\":{\"type\":\"boolean\"},"
    "\"sealed\":{\"type\":\"boolean\"},"
    "\"headers_raw\":{\"type\":\"binary\"},"
    "\"task_size\":{\"type\":\"long\"},"
    "\"original_mp\":{\"type\":\"binary\"},"
    "\"original_raw\":{\"type\":\"boolean\"}}";

/* Non-terminal tasks (DESIGN section 10), in their original order. */
const char persist_task_load_query[] =
    "{\"terms\":{\"status\":[\"pending\",\"retrying\",\"exhausted\"]}}";
const char persist_task_load_sort[] = "[{\"seq\":\"asc\"},{\"task_id\":\"asc\"}]";
